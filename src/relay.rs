//! Transmit relays: how a worker sends on a port whose queues it does not own.
//!
//! A device may have fewer TX queues (AF_XDP sockets, DPDK TX queues) than nodegate has workers.
//! Flows are spread over all workers anyway (handoff), so a worker without a queue of its own
//! hands the frames it wants to send to the worker owning one, through a bounded lock-free
//! single-producer queue per (sender, owner) pair; the owner sends them with its own bursts,
//! each time it polls. No queue is shared and no lock is taken.

use crossbeam_queue::ArrayQueue;
use dataplane::mbuf::{Mbuf, PoolCache};
use dataplane::port::Port;
use std::sync::Arc;

/// Frames a relay holds.
pub const RELAY_DEPTH: usize = 1024;

/// The sending end, as the queue-less worker's port: transmit only.
pub struct TxRelay {
    queue: Arc<ArrayQueue<Mbuf>>,
}

/// The owner's end of one relay.
pub struct RelayInbox {
    queue: Arc<ArrayQueue<Mbuf>>,
}

/// A new relay: the sender's port and the owner's inbox.
pub fn relay() -> (TxRelay, RelayInbox) {
    let queue = Arc::new(ArrayQueue::new(RELAY_DEPTH));
    (
        TxRelay {
            queue: queue.clone(),
        },
        RelayInbox { queue },
    )
}

impl RelayInbox {
    /// Moves up to `max` relayed frames onto `out`.
    pub fn take(&self, max: usize, out: &mut Vec<Mbuf>) {
        for _ in 0..max {
            match self.queue.pop() {
                Some(m) => out.push(m),
                None => break,
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl Port for TxRelay {
    fn rx_burst(&mut self, _pool: &mut PoolCache, _burst: &mut Vec<Mbuf>, _max: usize) -> usize {
        0
    }

    fn tx_burst(&mut self, _pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        // This worker is the relay's only producer, so the room can only grow until we push.
        let n = (self.queue.capacity() - self.queue.len()).min(burst.len());
        for m in burst.drain(..n) {
            let _ = self.queue.push(m);
        }
        n
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use dataplane::mbuf::Pool;
    use dataplane::port::BURST;

    #[test]
    fn test_relay_takes_what_fits_and_leaves_the_rest_in_the_burst() {
        let mut pool = PoolCache::new(Pool::new(RELAY_DEPTH + 8));
        let (mut tx, inbox) = relay();
        let mut burst: Vec<Mbuf> = (0..RELAY_DEPTH - 2)
            .map(|_| pool.alloc().unwrap())
            .collect();
        assert_eq!(tx.tx_burst(&mut pool, &mut burst), RELAY_DEPTH - 2);
        assert!(burst.is_empty());
        let mut burst: Vec<Mbuf> = (0..5)
            .map(|i| {
                let mut m = pool.alloc().unwrap();
                m.set_len(i + 1);
                m
            })
            .collect();
        assert_eq!(tx.tx_burst(&mut pool, &mut burst), 2);
        // The frames not taken are the last three, in order.
        assert_eq!(
            burst.iter().map(|m| m.len()).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let mut rx = Vec::new();
        assert_eq!(tx.rx_burst(&mut pool, &mut rx, BURST), 0);
        // The owner takes them in order, at most as many as it asks for.
        inbox.take(BURST, &mut rx);
        assert_eq!(rx.len(), BURST);
        let mut rest = Vec::new();
        inbox.take(usize::MAX, &mut rest);
        assert_eq!(rest.len(), RELAY_DEPTH - BURST);
        assert_eq!(rest[RELAY_DEPTH - BURST - 1].len(), 2);
        assert!(inbox.is_empty());
    }
}
