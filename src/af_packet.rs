//! The `af_packet` port driver over `ffi::af_packet` (TPACKET_V2 rings): works on any Linux
//! interface, copies each frame once between the ring and a pool buffer. Frames whose sender
//! left the TCP/UDP checksum to offload (`TP_STATUS_CSUMNOTREADY`) get it computed here; frames
//! longer than a buffer (GSO super-frames) are dropped and counted.

use dataplane::mbuf::{Mbuf, PoolCache, MBUF_SIZE};
use dataplane::port::Port;

pub struct AfPacketPort {
    sock: ffi::af_packet::AfPacket,
    /// Frames whose TCP/UDP checksum the sender left to offload, completed here.
    pub checksums_completed: u64,
    /// Frames longer than a buffer (GSO super-frames: turn the sender's segmentation offloads
    /// off), dropped.
    pub truncated: u64,
}

impl AfPacketPort {
    pub fn open(interface: &str) -> std::io::Result<AfPacketPort> {
        Ok(AfPacketPort::new(ffi::af_packet::AfPacket::open(
            interface,
        )?))
    }

    /// One worker's socket of a fanout group over `interface`.
    pub fn open_fanout(interface: &str, group: u16) -> std::io::Result<AfPacketPort> {
        Ok(AfPacketPort::new(ffi::af_packet::AfPacket::open_fanout(
            interface, group,
        )?))
    }
}

impl AfPacketPort {
    fn new(sock: ffi::af_packet::AfPacket) -> AfPacketPort {
        AfPacketPort {
            sock,
            checksums_completed: 0,
            truncated: 0,
        }
    }
}

impl Port for AfPacketPort {
    fn rx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut m) = pool.alloc() else { break };
            match self.sock.recv(&mut m.buffer_mut()[..MBUF_SIZE]) {
                Some(r) if r.truncated => {
                    self.truncated += 1;
                    pool.free(m);
                }
                Some(r) => {
                    m.set_len(r.len);
                    if r.checksum_partial && dataplane::wire::offload::complete_l4_checksum(&mut m)
                    {
                        self.checksums_completed += 1;
                    }
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

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("checksums_completed", self.checksums_completed),
            ("truncated", self.truncated),
        ]
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
