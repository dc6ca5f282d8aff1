//! The queues between the workers and the node's own small TCP/IP stack (the *host stack*,
//! `control::hoststack`, smoltcp), which answers the Services' health checks on the data-plane
//! ports.
//!
//! ```text
//!  worker: ip4-local, TCP to a node address on a health-check port ─► stack port tx ─┐
//!                                                                    to_stack queue ◄─┘ ─► host stack
//!  host stack ─► from_stack queue ─► stack port rx (one worker) ─► ip4-output (route, neighbour) ─► port
//! ```
//!
//! To the workers the stack is one more port ([`StackPort`], numbered after the host ports):
//! frames for it join that port's transmit batch and are flushed once per burst like any other,
//! and what the stack sends is received from it and routed like a packet the node originates.
//! Both directions are bounded lock-free queues of [`Mbuf`]s; a full queue drops the frame and
//! counts it ([`StackCounters`]), nothing waits. The stack speaks IP only: packets it sends sit
//! in their buffer after [`STACK_L2`] bytes left free for the Ethernet header the worker writes.

use crate::mbuf::{Mbuf, PoolCache};
use crate::port::Port;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Frames each direction of the host stack's queues holds.
pub const STACK_DEPTH: usize = 1024;
/// Bytes in front of an IP packet the stack sends: room for the Ethernet header.
pub const STACK_L2: usize = 14;

/// The two queues of the host stack and their counters, shared by the workers and the stack.
#[derive(Debug)]
pub struct StackQueues {
    to_stack: ArrayQueue<Mbuf>,
    from_stack: ArrayQueue<Mbuf>,
    to_stack_frames: AtomicU64,
    to_stack_dropped: AtomicU64,
    from_stack_frames: AtomicU64,
    from_stack_dropped: AtomicU64,
}

/// What went through the host stack's queues, and what a full queue dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackCounters {
    /// Frames the workers queued for the stack.
    pub to_stack: u64,
    /// Frames for the stack dropped because its queue was full.
    pub to_stack_dropped: u64,
    /// Packets the stack queued for the workers to send.
    pub from_stack: u64,
    /// Packets of the stack dropped because the workers' queue was full or no buffer was free.
    pub from_stack_dropped: u64,
}

impl StackQueues {
    /// Queues of `depth` frames each way.
    pub fn new(depth: usize) -> Arc<StackQueues> {
        Arc::new(StackQueues {
            to_stack: ArrayQueue::new(depth.max(1)),
            from_stack: ArrayQueue::new(depth.max(1)),
            to_stack_frames: AtomicU64::new(0),
            to_stack_dropped: AtomicU64::new(0),
            from_stack_frames: AtomicU64::new(0),
            from_stack_dropped: AtomicU64::new(0),
        })
    }

    /// A worker's queue of the stack "port". Every worker gets one, so any of them can hand
    /// frames to the stack; only the one made with `sends` takes what the stack sends (so one
    /// worker, not all, polls that queue).
    pub fn port(self: &Arc<Self>, sends: bool) -> StackPort {
        StackPort {
            queues: self.clone(),
            sends,
        }
    }

    /// The stack side: the next frame for it (an Ethernet frame as received).
    pub fn receive(&self) -> Option<Mbuf> {
        self.to_stack.pop()
    }

    /// The stack side: queues an IP packet (after [`STACK_L2`] free bytes) for the workers to
    /// send; gives the buffer back when the queue is full (counted as dropped).
    pub fn send(&self, m: Mbuf) -> Result<(), Mbuf> {
        match self.from_stack.push(m) {
            Ok(()) => {
                self.from_stack_frames.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(m) => {
                self.from_stack_dropped.fetch_add(1, Ordering::Relaxed);
                Err(m)
            }
        }
    }

    /// Counts a packet of the stack dropped before it reached the queue (no buffer).
    pub fn count_send_dropped(&self) {
        self.from_stack_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the workers' queue has room for another packet of the stack.
    pub fn can_send(&self) -> bool {
        !self.from_stack.is_full()
    }

    pub fn counters(&self) -> StackCounters {
        StackCounters {
            to_stack: self.to_stack_frames.load(Ordering::Relaxed),
            to_stack_dropped: self.to_stack_dropped.load(Ordering::Relaxed),
            from_stack: self.from_stack_frames.load(Ordering::Relaxed),
            from_stack_dropped: self.from_stack_dropped.load(Ordering::Relaxed),
        }
    }
}

/// One worker's queue of the host stack, as a [`Port`]: transmitting hands frames to the stack,
/// receiving takes the packets it sends (on the worker made with `sends` only).
pub struct StackPort {
    queues: Arc<StackQueues>,
    sends: bool,
}

impl Port for StackPort {
    fn rx_burst(&mut self, _pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize {
        if !self.sends {
            return 0;
        }
        let mut n = 0;
        while n < max {
            match self.queues.from_stack.pop() {
                Some(m) => {
                    burst.push(m);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Queues every frame for the stack; the ones a full queue refuses are freed and counted
    /// (`to_stack_dropped`), so the burst always leaves empty. Returns the frames queued.
    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        let (mut queued, mut dropped) = (0u64, 0u64);
        for m in burst.drain(..) {
            match self.queues.to_stack.push(m) {
                Ok(()) => queued += 1,
                Err(m) => {
                    dropped += 1;
                    pool.free(m);
                }
            }
        }
        if queued > 0 {
            self.queues
                .to_stack_frames
                .fetch_add(queued, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.queues
                .to_stack_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        queued as usize
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::mbuf::Pool;

    #[test]
    fn test_stack_port_moves_frames_both_ways_and_counts_drops() {
        let mut pool = PoolCache::new(Pool::new(16));
        let q = StackQueues::new(2);
        let mut sender = q.port(true);
        let mut other = q.port(false);
        let mut burst: Vec<Mbuf> = (0..3).map(|_| pool.alloc().unwrap()).collect();
        assert_eq!(other.tx_burst(&mut pool, &mut burst), 2);
        assert!(burst.is_empty());
        assert_eq!(
            q.counters(),
            StackCounters {
                to_stack: 2,
                to_stack_dropped: 1,
                ..StackCounters::default()
            }
        );
        assert!(q.receive().is_some() && q.receive().is_some() && q.receive().is_none());

        for _ in 0..3 {
            let m = pool.alloc().unwrap();
            if let Err(m) = q.send(m) {
                pool.free(m);
            }
        }
        assert!(!q.can_send());
        let mut got = Vec::new();
        assert_eq!(other.rx_burst(&mut pool, &mut got, 32), 0);
        assert_eq!(sender.rx_burst(&mut pool, &mut got, 32), 2);
        let c = q.counters();
        assert_eq!((c.from_stack, c.from_stack_dropped), (2, 1));
    }
}
