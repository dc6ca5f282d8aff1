//! **neighbour**: one hold queue for frames whose next hop is being resolved, both families.
//!
//! Reads the frame `ip-output` could not address ([`Action::Hold`]: the next
//! hop and the port). Sets the hold queue and asks the neighbour (`arp-input`'s
//! `send_arp_request` or `nd-input`'s `send_ns`) the first time a next hop is waited for. Next:
//! when `arp-input` or `nd-input` learns the neighbour, its frames get their Ethernet header and
//! go to `tx`; the timers ask again every [`RESOLVE_RETRY`] and drop what waited
//! [`RESOLVE_GIVE_UP`] (`neigh-timeout`). The queue holds at most `hold_max` frames of either
//! family (`neigh-unresolved` beyond that).
//!
//! Also **ip-output**, written once for both families ([`Worker::route_output`],
//! [`Worker::hop_output`]): the route lookup, the next hop's link-layer address (the route's
//! static gateway, a static neighbour, then a learned one) and the Ethernet header, or a hold.

use super::family::Family;
use super::{Action, Worker, TX_BATCH};
use crate::drop::DropReason;
use crate::mbuf::Mbuf;
use crate::port::PortId;
use crate::route::NextHop;
use crate::tables::Tables;
use crate::time::Instant;
use crate::wire::{EtherType, MacAddr};
use core::time::Duration;
use std::net::IpAddr;

/// How often an unanswered next hop is asked again, and when its frames are given up.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(1);
pub const RESOLVE_GIVE_UP: Duration = Duration::from_secs(3);

/// A frame waiting for the link-layer address of `nh` on `port`.
pub(super) struct Held {
    pub nh: IpAddr,
    pub port: PortId,
    pub m: Mbuf,
    pub since: Instant,
    pub asked: Instant,
}

impl Worker {
    /// ip-output for a packet whose TTL or hop limit is already set: the route to `dst`, then
    /// [`Worker::hop_output`]. Always inlined: as a call it cost the established path 17
    /// instructions a frame (1.8 %) in saved registers and the call itself.
    #[inline(always)]
    pub(super) fn route_output<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        dst: F::Addr,
    ) -> Action {
        match F::routes(t).lookup(dst).copied() {
            Some(hop) => self.hop_output::<F>(t, m, hop, dst),
            None => Action::Drop(F::NO_ROUTE),
        }
    }

    /// Resolves the next hop of `dst` through `hop` and writes the Ethernet header (`tx`), or
    /// holds the frame until the neighbour answers.
    #[inline(always)]
    pub(super) fn hop_output<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        hop: NextHop<F::Addr>,
        dst: F::Addr,
    ) -> Action {
        let Some(src) = t.ports.get(usize::from(hop.port)).map(|p| p.mac) else {
            return Action::Drop(F::NO_ROUTE);
        };
        let nh = hop.neighbor_for(dst);
        let mac = match hop.gateway_mac {
            Some(mac) => Some(mac),
            None => F::neighbour(self, t, hop.port, nh),
        };
        match mac {
            Some(mac) => {
                super::write_eth(m, mac, src, F::ETHERTYPE);
                Action::Tx(hop.port)
            }
            None if F::is_local(t, nh) => self.up_to_kernel::<F>(m, hop.port, src),
            None => Action::Hold {
                nh: nh.into(),
                port: hop.port,
            },
        }
    }

    /// A packet for one of the node's own addresses (a reply translated back for a client in
    /// the node's kernel): to the kernel, through the host port of `port`, addressed to its
    /// MAC, which is the port's (`src`). Out of line: only the kernel's flows come here.
    #[cold]
    #[inline(never)]
    fn up_to_kernel<F: Family>(&mut self, m: &mut Mbuf, port: PortId, mac: MacAddr) -> Action {
        let Some(super::PortRole::Data { host: Some(h) }) =
            self.roles.get(usize::from(port)).copied()
        else {
            return Action::Drop(F::LOCAL);
        };
        let mut eth_src = [0u8; 6];
        eth_src.copy_from_slice(&m[6..12]);
        super::write_eth(m, mac, MacAddr(eth_src), F::ETHERTYPE);
        Action::Punt(h)
    }

    /// Holds `m` until `nh` on `port` answers; asks it when nothing waits for it yet.
    pub(super) fn hold(&mut self, t: &Tables, nh: IpAddr, port: PortId, m: Mbuf) {
        if self.held.len() >= self.cfg.hold_max {
            self.count(DropReason::NeighUnresolved);
            self.pool.free(m);
            return;
        }
        let asked = self
            .held
            .iter()
            .find(|h| h.nh == nh && h.port == port)
            .map(|h| h.asked);
        self.held.push(Held {
            nh,
            port,
            m,
            since: self.now,
            asked: asked.unwrap_or(self.now),
        });
        if asked.is_none() {
            self.solicit(t, nh, port);
        }
    }

    /// Whether a held frame waits for `nh` on `port` (an answer from it is then learned).
    pub(super) fn is_waited_for(&self, nh: IpAddr, port: PortId) -> bool {
        self.held.iter().any(|h| h.nh == nh && h.port == port)
    }

    /// Sends every frame held for `nh` on `port`, now that its address is `mac`.
    pub(super) fn release_held(&mut self, t: &Tables, nh: IpAddr, port: PortId, mac: MacAddr) {
        let ethertype = match nh {
            IpAddr::V4(_) => EtherType::Ipv4,
            IpAddr::V6(_) => EtherType::Ipv6,
        };
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].nh != nh || self.held[i].port != port {
                i += 1;
                continue;
            }
            let mut h = self.held.remove(i);
            // Tables published since the frame was held may have fewer ports.
            let Some(src) = t.ports.get(usize::from(h.port)).map(|p| p.mac) else {
                self.count(DropReason::TxFull);
                self.pool.free(h.m);
                continue;
            };
            super::write_eth(&mut h.m, mac, src, ethertype);
            self.enqueue_tx(h.port, h.m);
        }
    }

    /// The neighbour timers: frames held for [`RESOLVE_GIVE_UP`] are dropped, next hops not
    /// asked for [`RESOLVE_RETRY`] are asked again. Cheap when nothing is held.
    pub(super) fn neighbour_timers(&mut self, t: &Tables, now: Instant) {
        // (`Vec::extract_if` needs Rust 1.87; the MSRV is 1.85.)
        let mut i = 0;
        while i < self.held.len() {
            if now.saturating_since(self.held[i].since) >= RESOLVE_GIVE_UP {
                let h = self.held.remove(i);
                self.count(DropReason::NeighTimeout);
                self.pool.free(h.m);
            } else {
                i += 1;
            }
        }
        for i in 0..self.held.len() {
            let (nh, port, asked) = (self.held[i].nh, self.held[i].port, self.held[i].asked);
            if now.saturating_since(asked) >= RESOLVE_RETRY {
                for h in self
                    .held
                    .iter_mut()
                    .filter(|h| h.nh == nh && h.port == port)
                {
                    h.asked = now;
                }
                self.solicit(t, nh, port);
            }
        }
    }

    /// Frames waiting for a next hop to be resolved.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Asks `nh` on `port` for its link-layer address (ARP request or neighbour solicitation).
    fn solicit(&mut self, t: &Tables, nh: IpAddr, port: PortId) {
        match nh {
            IpAddr::V4(a) => self.send_arp_request(t, a, port),
            IpAddr::V6(a) => self.send_ns(t, a, port),
        }
    }

    /// Queues a frame other than the one being decided (one the node generated, a released
    /// held frame, the kernel's) on `port`'s batch; when the batch is full it is counted
    /// `tx-full` and freed.
    pub(super) fn enqueue_tx(&mut self, port: PortId, m: Mbuf) -> bool {
        match self.tx.get_mut(usize::from(port)) {
            Some(batch) if batch.len() < TX_BATCH => {
                batch.push(m);
                true
            }
            _ => {
                self.count(DropReason::TxFull);
                self.pool.free(m);
                false
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::super::nd_input::is_ndp;
    use super::super::test_rig::*;
    use super::super::{Action, Arrival, WorkerConfig};
    use crate::drop::DropReason;
    use crate::time::Instant;
    use crate::wire::MacAddr;

    #[test]
    fn test_hold_times_out_with_retries() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let before = rig.pool.available();
        let f = udp6_frame(MAC0, "fd00::99", "2001:db8::1", 64, 20);
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert!(matches!(v, Action::Hold { .. }), "{v:?}");
        rig.free(m);
        // Solicits the default gateway.
        assert_eq!(rig.out.len(), 1);
        assert_eq!(&rig.out[0].1[..6], &[0x33, 0x33, 0xff, 0, 0xff, 0xfe]);
        rig.timers(Instant::from_micros(500_000));
        assert_eq!(rig.out.len(), 1);
        rig.timers(Instant::from_secs(1));
        assert_eq!(rig.out.len(), 2, "retried after 1 s");
        // (The worker's timers run every 10 ms.)
        rig.timers(Instant::from_micros(2_990_000));
        assert_eq!(rig.w.held(), 1);
        rig.timers(Instant::from_secs(3));
        assert_eq!(rig.w.held(), 0);
        assert_eq!(rig.drops(DropReason::NeighTimeout), 1);
        assert_eq!(rig.w.stats.nd_solicitations, 3);
        rig.free_all();
        assert_eq!(rig.pool.available(), before);
    }

    #[test]
    fn test_tx_refusal_is_counted_and_freed() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let before = rig.pool.available();
        // Port 0's transmit batch is full: the solicitation cannot be queued.
        for _ in 0..super::super::TX_BATCH {
            let m = rig.w.pool.alloc().unwrap();
            rig.w.tx[0].push(m);
        }
        let f = udp6_frame(MAC0, "fd00::99", "fd00::5", 64, 20);
        let mut m = rig.w.pool.alloc().unwrap();
        m.copy_from(&f);
        let t = rig.w.tables.get().clone();
        let class = rig.w.classify(&t, &mut m, 0);
        let v = rig.w.decide(
            &t,
            &mut m,
            0,
            class,
            Arrival {
                hash: None,
                steered: false,
                learn: false,
            },
        );
        assert!(matches!(v, Action::Hold { .. }), "{v:?}");
        rig.w.apply(&t, m, 0, v);
        assert_eq!(rig.drops(DropReason::TxFull), 1);
        assert_eq!(rig.w.stats.nd_solicitations, 0);
        let full: Vec<_> = rig.w.tx[0].drain(..).collect();
        for m in full {
            rig.w.pool.free(m);
        }
        rig.timers(Instant::from_secs(3));
        rig.free_all();
        assert_eq!(rig.pool.available(), before);
    }

    #[test]
    fn test_hold_queue_full_and_learn_only() {
        let mut rig = Rig::new(WorkerConfig {
            hold_max: 1,
            ..WorkerConfig::new(0, 1)
        });
        let f = udp6_frame(MAC0, "fd00::99", "fd00::5", 64, 20);
        assert!(matches!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Hold { .. }
        ));
        // The queue is full: the frame is dropped when it would be held.
        assert!(matches!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Hold { .. }
        ));
        assert_eq!(rig.drops(DropReason::NeighUnresolved), 1);
        rig.out.clear();
        let n5 = MacAddr([2, 0, 0, 0, 0, 5]);
        let adv = advert(ip("fd00::5"), n5);
        assert!(is_ndp(&adv));
        assert!(!is_ndp(&f));
        assert_eq!(rig.learn_only(&adv, 0, Instant::ZERO), Action::Free);
        assert_eq!(rig.out.len(), 1);
        assert_eq!(rig.w.held(), 0);
    }
}
