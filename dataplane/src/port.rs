//! The port abstraction: burst receive and transmit over reusable buffers, shaped like ixy's
//! device trait. Drivers live elsewhere (the memory driver here, pcap in the binary, kernel-bypass
//! drivers in `ffi`); the pipeline only sees [`Port`].

use crate::mbuf::{Mbuf, PoolCache};
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Index of a port in the configuration (and in every per-port table).
pub type PortId = u16;

/// Frames moved per burst by workers and drivers.
pub const BURST: usize = 32;

/// One queue of a network port, owned by one worker.
pub trait Port: Send {
    /// Receives up to `max` frames, appending them to `burst`; returns how many arrived.
    /// Buffers come from `pool` (or are the driver's own, moved in).
    fn rx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize;

    /// Transmits frames from the front of `burst`, removing the ones sent (their buffers go back
    /// to `pool` or into the driver). Frames the driver could not take stay in `burst`.
    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize;

    /// The driver's own counters (ring overruns, offload fix-ups, ...), by name, for the final
    /// statistics. Read once, when the port is closed; never on the fast path.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// An in-process port: two bounded lock-free rings. The test or benchmark holds the
/// [`MemoryPeer`] end, injects frames into `rx` and collects what the data plane sends.
pub struct MemoryPort {
    rx: Arc<ArrayQueue<Mbuf>>,
    tx: Arc<ArrayQueue<Mbuf>>,
}

/// The far end of a [`MemoryPort`].
#[derive(Clone)]
pub struct MemoryPeer {
    rx: Arc<ArrayQueue<Mbuf>>,
    tx: Arc<ArrayQueue<Mbuf>>,
}

impl MemoryPort {
    /// A port whose rings hold `depth` frames each, and its peer.
    pub fn pair(depth: usize) -> (MemoryPort, MemoryPeer) {
        let rx = Arc::new(ArrayQueue::new(depth.max(1)));
        let tx = Arc::new(ArrayQueue::new(depth.max(1)));
        (
            MemoryPort {
                rx: rx.clone(),
                tx: tx.clone(),
            },
            MemoryPeer { rx, tx },
        )
    }
}

impl MemoryPeer {
    /// Offers a frame to the data plane; gives it back if the ring is full.
    pub fn inject(&self, m: Mbuf) -> Result<(), Mbuf> {
        self.rx.push(m)
    }

    /// Takes the next frame the data plane transmitted.
    pub fn collect(&self) -> Option<Mbuf> {
        self.tx.pop()
    }

    /// Frames waiting to be received by the data plane.
    pub fn pending_rx(&self) -> usize {
        self.rx.len()
    }
}

impl Port for MemoryPort {
    fn rx_burst(&mut self, _pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.rx.pop() {
                Some(m) => {
                    burst.push(m);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        // One producer per port queue: the room seen here cannot shrink before the pushes.
        let room = self.tx.capacity() - self.tx.len();
        let n = room.min(burst.len());
        for m in burst.drain(..n) {
            if let Err(m) = self.tx.push(m) {
                pool.free(m);
            }
        }
        n
    }
}
