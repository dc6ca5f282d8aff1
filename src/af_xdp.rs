//! The `af_xdp` port driver over `ffi::af_xdp`: the XDP program hands every frame of a queue to
//! that queue's AF_XDP socket, owned by one worker.
//!
//! A worker owns the sockets of queues `w, w + workers, ...`. With fewer queues than workers,
//! the workers without a queue still receive flows through the handoff queues and must be able
//! to transmit: their frames for this port go through a [`TxRelay`] (a bounded lock-free queue)
//! to the worker owning queue `w % queues`, which sends them with its own bursts. No socket is
//! shared, so no lock is taken.

use crossbeam_queue::ArrayQueue;
use dataplane::mbuf::{Mbuf, PoolCache, MBUF_SIZE};
use dataplane::port::{Port, BURST};
use ffi::af_xdp::{Mode, XdpProgram, XskSocket};
use std::sync::Arc;

/// Frames a relay queue holds.
const RELAY_DEPTH: usize = 1024;

/// The queues of one port owned by one worker, plus the relays it sends for.
pub struct AfXdpPort {
    sockets: Vec<XskSocket>,
    /// Round-robin position among `sockets` for receiving.
    next: usize,
    relays: Vec<Arc<ArrayQueue<Mbuf>>>,
}

/// The port as seen by a worker without a queue of its own: transmit only, through the owner.
pub struct TxRelay {
    queue: Arc<ArrayQueue<Mbuf>>,
}

/// Opens `interface` for `workers` workers: attaches the XDP program and opens one socket per
/// queue. Returns the program (keep it: dropping it detaches the program) and one port per
/// worker.
pub fn open(
    interface: &str,
    queues: u16,
    mode: Mode,
    workers: usize,
) -> std::io::Result<(XdpProgram, Vec<Box<dyn Port>>)> {
    let queues = usize::from(queues.max(1));
    let program = XdpProgram::attach(interface, mode, queues as u32)?;
    let mut owners: Vec<AfXdpPort> = (0..workers.min(queues))
        .map(|_| AfXdpPort {
            sockets: Vec::new(),
            next: 0,
            relays: Vec::new(),
        })
        .collect();
    for q in 0..queues {
        let socket = XskSocket::open(&program, q as u32, mode).map_err(|e| {
            std::io::Error::new(e.kind(), format!("queue {q} of `{interface}`: {e}"))
        })?;
        owners[q % workers].sockets.push(socket);
    }
    let mut relays = Vec::new();
    for w in owners.len()..workers {
        let queue = Arc::new(ArrayQueue::new(RELAY_DEPTH));
        owners[w % queues].relays.push(queue.clone());
        relays.push(TxRelay { queue });
    }
    let mut ports: Vec<Box<dyn Port>> = Vec::with_capacity(workers);
    for o in owners {
        ports.push(Box::new(o));
    }
    for r in relays {
        ports.push(Box::new(r));
    }
    Ok((program, ports))
}

impl AfXdpPort {
    /// Whether the sockets run in zero-copy mode.
    pub fn is_zerocopy(&self) -> bool {
        self.sockets.iter().all(|s| s.is_zerocopy())
    }

    /// Sends what the relaying workers queued for this port.
    fn drain_relays(&mut self, pool: &mut PoolCache) {
        let Some(sock) = self.sockets.first_mut() else {
            return;
        };
        let mut sent = false;
        for relay in &self.relays {
            for _ in 0..BURST {
                let Some(m) = relay.pop() else { break };
                // A frame the ring cannot take now is dropped, as a full NIC queue would.
                sent |= sock.send(&m);
                pool.free(m);
            }
        }
        if sent {
            sock.flush();
        }
    }
}

impl Port for AfXdpPort {
    fn rx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize {
        if !self.relays.is_empty() {
            self.drain_relays(pool);
        }
        let mut n = 0;
        for _ in 0..self.sockets.len() {
            let i = self.next;
            self.next = (self.next + 1) % self.sockets.len();
            n += self.sockets[i].recv_burst(max - n, |frame| {
                let Some(mut m) = pool.alloc() else {
                    return false;
                };
                let len = frame.len().min(MBUF_SIZE);
                m.buffer_mut()[..len].copy_from_slice(&frame[..len]);
                m.set_len(len);
                burst.push(m);
                true
            });
            if n >= max {
                break;
            }
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        let Some(sock) = self.sockets.first_mut() else {
            return 0;
        };
        let mut sent = 0;
        while sent < burst.len() && sock.send(&burst[sent]) {
            sent += 1;
        }
        // One kick for the whole burst; frames left in `burst` are counted by the worker.
        sock.flush();
        for m in burst.drain(..sent) {
            pool.free(m);
        }
        sent
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

    #[test]
    fn test_relay_takes_what_fits_and_leaves_the_rest_in_the_burst() {
        let mut pool = PoolCache::new(Pool::new(RELAY_DEPTH + 8));
        let queue = Arc::new(ArrayQueue::new(RELAY_DEPTH));
        let mut relay = TxRelay {
            queue: queue.clone(),
        };
        let mut burst: Vec<Mbuf> = (0..RELAY_DEPTH - 2)
            .map(|_| pool.alloc().unwrap())
            .collect();
        assert_eq!(relay.tx_burst(&mut pool, &mut burst), RELAY_DEPTH - 2);
        assert!(burst.is_empty());
        let mut burst: Vec<Mbuf> = (0..5)
            .map(|i| {
                let mut m = pool.alloc().unwrap();
                m.set_len(i + 1);
                m
            })
            .collect();
        assert_eq!(relay.tx_burst(&mut pool, &mut burst), 2);
        // The frames not taken are the last three, in order.
        assert_eq!(
            burst.iter().map(|m| m.len()).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(queue.len(), RELAY_DEPTH);
        let mut rx = Vec::new();
        assert_eq!(relay.rx_burst(&mut pool, &mut rx, BURST), 0);
    }
}
