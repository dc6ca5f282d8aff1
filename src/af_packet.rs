//! The `af_packet` port driver over `ffi::af_packet` (TPACKET_V3 rings): works on any Linux
//! interface, copies each frame once between the ring and a pool buffer.

use dataplane::mbuf::{Mbuf, PoolCache, MBUF_SIZE};
use dataplane::port::Port;

pub struct AfPacketPort {
    sock: ffi::af_packet::AfPacket,
}

impl AfPacketPort {
    pub fn open(interface: &str) -> std::io::Result<AfPacketPort> {
        Ok(AfPacketPort {
            sock: ffi::af_packet::AfPacket::open(interface)?,
        })
    }

    /// One worker's socket of a fanout group over `interface`.
    pub fn open_fanout(interface: &str, group: u16) -> std::io::Result<AfPacketPort> {
        Ok(AfPacketPort {
            sock: ffi::af_packet::AfPacket::open_fanout(interface, group)?,
        })
    }
}

impl Port for AfPacketPort {
    fn rx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut m) = pool.alloc() else { break };
            match self.sock.recv(&mut m.buffer_mut()[..MBUF_SIZE]) {
                Some(len) => {
                    m.set_len(len);
                    burst.push(m);
                    n += 1;
                }
                None => {
                    pool.free(m);
                    break;
                }
            }
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        let mut sent = 0;
        while sent < burst.len() && self.sock.send(&burst[sent]) {
            sent += 1;
        }
        // One kick for the whole burst; frames left in `burst` are counted by the worker.
        let _ = self.sock.flush();
        for m in burst.drain(..sent) {
            pool.free(m);
        }
        sent
    }
}
