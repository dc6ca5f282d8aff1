//! The `af_xdp` port driver over `ffi::af_xdp`: the XDP program hands every frame of a queue to
//! that queue's AF_XDP socket, owned by one worker.
//!
//! The sockets' UMEM is the run's buffer pool (`Pool::with_region`), so received frames become
//! `Mbuf`s without a copy and are transmitted from the same memory: the fill ring is topped up
//! with pool buffers, TX takes the frames themselves, completions return them to the pool.
//!
//! A worker owns the sockets of queues `w, w + workers, ...`. With fewer queues than workers,
//! the workers without a queue still receive flows through the handoff queues and must be able
//! to transmit: their frames for this port go through a [`crate::relay`] to the worker owning
//! queue `w % queues`, which sends them with its own bursts. No socket is shared, so no lock is
//! taken.

use crate::relay::{relay, RelayInbox};
use control::config::XdpMode;
use dataplane::mbuf::{Mbuf, Pool, PoolCache};
use dataplane::port::{Port, BURST};
use ffi::af_xdp::{Mode, XdpProgram, XskSocket};
use std::sync::Arc;

/// The queues of one port owned by one worker, plus the relays it sends for.
pub struct AfXdpPort {
    sockets: Vec<XskSocket>,
    /// Round-robin position among `sockets` for receiving.
    next: usize,
    relays: Vec<RelayInbox>,
    /// Relayed frames on their way to the TX ring (capacity BURST, reused).
    relayed: Vec<Mbuf>,
}

/// An opened `af_xdp` port: the attached program (keep it: dropping it detaches the program),
/// one port per worker, and whether the sockets got zero-copy mode.
pub struct Opened {
    pub program: XdpProgram,
    pub ports: Vec<Box<dyn Port>>,
    pub zerocopy: bool,
}

/// Opens `interface` for `workers` workers with `pool`'s region as UMEM: attaches the XDP
/// program, opens one socket per queue and fills its fill ring.
pub fn open(
    interface: &str,
    queues: u16,
    mode: XdpMode,
    workers: usize,
    pool: &Arc<Pool>,
) -> std::io::Result<Opened> {
    let mode = match mode {
        XdpMode::Auto => Mode::Auto,
        XdpMode::Skb => Mode::Skb,
        XdpMode::Native => Mode::Native,
        XdpMode::ZeroCopy => Mode::ZeroCopy,
    };
    let region = pool.region().ok_or_else(|| {
        std::io::Error::other("af_xdp needs a pool in a frame region (Pool::with_region)")
    })?;
    let queues = usize::from(queues.max(1));
    let program = XdpProgram::attach(interface, mode, queues as u32)?;
    let mut owners: Vec<AfXdpPort> = (0..workers.min(queues))
        .map(|_| AfXdpPort {
            sockets: Vec::new(),
            next: 0,
            relays: Vec::new(),
            relayed: Vec::with_capacity(BURST),
        })
        .collect();
    for q in 0..queues {
        let mut socket = match XskSocket::open(&program, q as u32, mode, region) {
            Ok(socket) => socket,
            Err(e) => {
                // Whatever ran on the interface before runs again.
                program.restore_previous();
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("queue {q} of `{interface}`: {e}"),
                ));
            }
        };
        socket.fill(|| pool.get().map(|m| m.into_frame().0));
        owners[q % workers].sockets.push(socket);
    }
    let mut relays = Vec::new();
    for w in owners.len()..workers {
        let (sender, inbox) = relay();
        owners[w % queues].relays.push(inbox);
        relays.push(sender);
    }
    let zerocopy = owners
        .iter()
        .all(|o| o.sockets.iter().all(|s| s.is_zerocopy()));
    let mut ports: Vec<Box<dyn Port>> = Vec::with_capacity(workers);
    for o in owners {
        ports.push(Box::new(o));
    }
    for r in relays {
        ports.push(Box::new(r));
    }
    Ok(Opened {
        program,
        ports,
        zerocopy,
    })
}

/// Queues as many frames from the front of `frames` as `sock` takes now (the rest stay), then
/// kicks it once and returns the frames it finished sending to the pool. Frames that are not
/// in the pool's region (never the case in a live run) are sent from a copy.
fn send_burst(
    sock: &mut XskSocket,
    pool: &mut PoolCache,
    frames: impl Iterator<Item = Mbuf>,
) -> usize {
    let mut sent = 0;
    for m in frames {
        let (frame, len) = m.into_frame();
        let frame = match sock.send(frame, len) {
            Ok(()) => {
                sent += 1;
                continue;
            }
            Err(frame) => frame,
        };
        // Not a region frame: copy it into one.
        let original = Mbuf::from_frame(frame, len);
        if let Some(mut copy) = pool.alloc() {
            if copy.copy_from(&original) {
                let (frame, len) = copy.into_frame();
                match sock.send(frame, len) {
                    Ok(()) => sent += 1,
                    Err(frame) => pool.free(Mbuf::from_frame(frame, 0)),
                }
            } else {
                pool.free(copy);
            }
        }
        pool.free(original);
    }
    sock.flush(|frame| pool.free(Mbuf::from_frame(frame, 0)));
    sent
}

impl AfXdpPort {
    /// Sends what the relaying workers queued for this port.
    fn drain_relays(&mut self, pool: &mut PoolCache) {
        let Some(sock) = self.sockets.first_mut() else {
            return;
        };
        for inbox in &self.relays {
            // A frame the ring cannot take waits in the relay for the next round.
            inbox.take(sock.tx_room().min(BURST), &mut self.relayed);
            if !self.relayed.is_empty() {
                send_burst(sock, pool, self.relayed.drain(..));
            }
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
            let sock = &mut self.sockets[i];
            if sock.fill_room() >= BURST {
                sock.fill(|| pool.alloc().map(|m| m.into_frame().0));
            }
            n += sock.recv_burst(max - n, |frame, len| {
                burst.push(Mbuf::from_frame(frame, len))
            });
            if n >= max {
                break;
            }
        }
        n
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut c = [0u64; 4];
        for s in &self.sockets {
            let st = s.stats().unwrap_or_default();
            c[0] += st.rx_dropped;
            c[1] += st.rx_ring_full;
            c[2] += st.rx_fill_ring_empty;
            c[3] += st.rx_invalid_descs + st.tx_invalid_descs + s.bad_descriptors;
        }
        vec![
            ("xdp_rx_dropped", c[0]),
            ("xdp_rx_ring_full", c[1]),
            ("xdp_fill_ring_empty", c[2]),
            ("xdp_invalid_descriptors", c[3]),
        ]
    }

    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        let Some(sock) = self.sockets.first_mut() else {
            return 0;
        };
        // Frames beyond the ring's room stay in `burst`; the worker counts them.
        let n = sock.tx_room().min(burst.len());
        send_burst(sock, pool, burst.drain(..n))
    }
}
