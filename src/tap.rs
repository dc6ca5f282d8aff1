//! The `tap` port driver: frames to and from a TAP interface (`ffi::tap`), one system call per
//! frame. For tests and the exception path, not for speed.

use dataplane::mbuf::{Mbuf, PoolCache, MBUF_SIZE};
use dataplane::port::Port;

pub struct TapPort {
    tap: ffi::tap::Tap,
    /// Bursts cut short because the interface refused a frame (down or queue full).
    pub tx_errors: u64,
}

impl TapPort {
    pub fn open(interface: &str) -> std::io::Result<TapPort> {
        Ok(TapPort {
            tap: ffi::tap::Tap::open(interface)?,
            tx_errors: 0,
        })
    }

    /// One queue of a multi-queue TAP interface (one per worker).
    pub fn open_queue(interface: &str) -> std::io::Result<TapPort> {
        Ok(TapPort {
            tap: ffi::tap::Tap::open_queue(interface)?,
            tx_errors: 0,
        })
    }

    /// The interface, to configure its kernel side (MAC, up).
    pub fn tap(&self) -> &ffi::tap::Tap {
        &self.tap
    }
}

impl Port for TapPort {
    fn rx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut m) = pool.alloc() else { break };
            match self.tap.recv(&mut m.buffer_mut()[..MBUF_SIZE]) {
                Ok(Some(len)) => {
                    m.set_len(len);
                    burst.push(m);
                    n += 1;
                }
                Ok(None) | Err(_) => {
                    pool.free(m);
                    break;
                }
            }
        }
        n
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("tx_errors", self.tx_errors)]
    }

    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        // Stop at the first frame the interface refuses (down, or its queue full): it and the
        // rest stay in `burst`, and the worker counts them as `tx-full`.
        let mut sent = 0;
        while sent < burst.len() {
            if !matches!(self.tap.send(&burst[sent]), Ok(true)) {
                self.tx_errors += 1;
                break;
            }
            sent += 1;
        }
        for m in burst.drain(..sent) {
            pool.free(m);
        }
        sent
    }
}
