//! **ip6-input**, **ip6-local**, **ip6-forward** and **ip6-output**: IPv6 forwarding (RFC 8200),
//! the mirror of the `ip4-*` stages.
//!
//! ```text
//!  ip6-input ─┬─ multicast dst ─► NS (solicited-node) / NA (all-nodes) ─► nd-input, else drop
//!             ├─ flow tuple ───► service (steer, ct-lookup, svc-lookup, nat66) ─► ip6-output
//!             ├─ our address ──► nd-input / echo ─► reply / else host-punt
//!             └─ ip6-forward ──► hop limit (ICMPv6 time exceeded) ─► ip6-output ─► neighbour
//! ```
//!
//! `classify_ip6` (the burst pass) reads the fixed header once, trims Ethernet padding and
//! finds the flow tuple after the extension headers a host may send ([`nat66::flow_key`]); it
//! sets [`Ip6Meta`], which every later IPv6 stage reads instead of parsing again. The flow
//! table line of a tuple is prefetched over the burst as for IPv4.

use super::family::V6;
use super::service::{fragments_tracked, FlowPacket};
use super::{Action, Arrival, Class, Worker, L2};
use crate::drop::DropReason;
use crate::ip6::is_link_local;
use crate::mbuf::Mbuf;
use crate::nat66::{self, FlowKey6};
use crate::port::PortId;
use crate::tables::Tables;
use crate::wire::icmpv6::{self, msg_type};
use crate::wire::{EtherType, Icmpv6Packet, IpProtocol, Ipv6Packet, MacAddr};
use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub(super) const IP6: usize = 40;
/// Hop limit of packets the node originates (echo replies, errors, resets).
pub(super) const HOP_LIMIT: u8 = 64;

/// What `classify_ip6` found of a packet's flow tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tuple6 {
    /// None the Service path handles (ICMPv6, ESP/AH, a routing header still routing, a chain
    /// cut short): routed, not load balanced.
    None,
    /// A whole TCP or UDP packet whose own lengths do not fit.
    Malformed,
    /// `Ip6Meta::key` is the tuple (ports 0 for a later fragment).
    Found,
    /// An ICMPv6 error quoting a TCP, UDP or SCTP packet (its tuple is read from the quote).
    IcmpError,
}

/// The parts of an IPv6 packet the pipeline decides on, read once by `classify_ip6`. Small on
/// purpose (the burst pass keeps one per frame, IPv4's beside it): the addresses and ports stay
/// in the packet, at offsets known from here ([`Ip6Meta::key`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ip6Meta {
    /// The fixed header's next header.
    pub next: u8,
    /// The L4 protocol after the extension headers (with `tuple == Found`).
    pub proto: u8,
    pub hop: u8,
    /// TCP flags (0 for other protocols and later fragments).
    pub flags: u8,
    /// Where the L4 header starts, from the IPv6 header (40 without extension headers).
    pub l4: u16,
    /// For a fragment: the datagram's identification, and whether this is a later fragment.
    pub fragment: Option<(u32, bool)>,
    pub tuple: Tuple6,
}

impl Ip6Meta {
    /// The packet's (source, destination).
    #[inline]
    pub fn addrs(m: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
        let ip = Ipv6Packet::new_unchecked(&m[L2..]);
        (ip.src_addr(), ip.dst_addr())
    }

    /// The flow tuple (with `tuple == Found`; ports 0 for a later fragment, which has none).
    #[inline]
    pub fn key(&self, m: &[u8]) -> FlowKey6 {
        let (src, dst) = Ip6Meta::addrs(m);
        let (sport, dport) = match self.fragment {
            Some((_, true)) => (0, 0),
            _ => {
                let at = L2 + usize::from(self.l4);
                match m.get(at..at + 4) {
                    Some(p) => (
                        u16::from_be_bytes([p[0], p[1]]),
                        u16::from_be_bytes([p[2], p[3]]),
                    ),
                    None => (0, 0),
                }
            }
        };
        FlowKey6 {
            src,
            dst,
            sport,
            dport,
            proto: self.proto,
        }
    }

    /// Whether the burst pass prefetches the flow-table lines of this packet's tuple (a whole
    /// packet's: a fragment's tuple is known only on its datagram's home worker).
    #[inline]
    pub fn prefetchable(&self) -> bool {
        self.tuple == Tuple6::Found && self.fragment.is_none()
    }
}

/// ip6-input's parsing: header checks, padding trimmed, flow tuple found.
pub(super) fn classify_ip6(m: &mut Mbuf) -> Class {
    let (mut meta, total) = {
        let Ok(ip) = Ipv6Packet::new_checked(&m[L2..]) else {
            return Class::Drop(DropReason::Ip6Malformed);
        };
        let meta = Ip6Meta {
            next: u8::from(ip.next_header()),
            proto: u8::from(ip.next_header()),
            hop: ip.hop_limit(),
            flags: 0,
            l4: IP6 as u16,
            fragment: None,
            tuple: Tuple6::None,
        };
        (meta, IP6 + usize::from(ip.payload_len()))
    };
    // Ethernet padding is not part of the packet.
    m.set_len(L2 + total);
    if meta.next == u8::from(IpProtocol::Icmpv6) {
        if nat66::icmp_error_quote(&m[L2..]).is_some() {
            meta.tuple = Tuple6::IcmpError;
        }
        return Class::Ip6 {
            meta,
            fragment_ports: None,
        };
    }
    match nat66::flow_key(&m[L2..]) {
        Ok(p) => {
            meta.proto = p.key.proto;
            meta.flags = p.flags;
            meta.l4 = p.l4 as u16;
            meta.fragment = p.fragment;
            meta.tuple = Tuple6::Found;
        }
        Err(nat66::NoFlow6::Malformed) => meta.tuple = Tuple6::Malformed,
        Err(nat66::NoFlow6::Other) => {}
    }
    Class::Ip6 {
        meta,
        fragment_ports: None,
    }
}

impl Worker {
    /// ip6-input for what no Service flow claimed: neighbour discovery, the node's own
    /// packets, forwarding.
    pub(super) fn ip6_input(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip6Meta,
    ) -> Action {
        let (src, dst) = Ip6Meta::addrs(m);
        if src.is_multicast() || t.ip6.is_local(src) {
            return Action::Drop(DropReason::Ip6BadSource);
        }
        let icmp = meta.next == u8::from(IpProtocol::Icmpv6);
        if dst.is_multicast() {
            if icmp && super::nd_input::is_ndp_type(&m[L2 + IP6..]) {
                return self.nd_input(t, m, port, false);
            }
            return Action::Drop(DropReason::Ip6Multicast);
        }
        if src.is_unspecified() {
            return Action::Drop(DropReason::Ip6BadSource);
        }
        if t.ip6.is_local(dst) {
            if icmp {
                if super::nd_input::is_ndp_type(&m[L2 + IP6..]) {
                    return self.nd_input(t, m, port, true);
                }
                let echo = Icmpv6Packet::new_checked(&m[L2 + IP6..])
                    .is_ok_and(|p| p.msg_type() == msg_type::ECHO_REQUEST && p.msg_code() == 0);
                if echo {
                    return self.ip6_echo_reply(t, m, port, src, dst);
                }
            }
            return self.punt_or(port, Action::Drop(DropReason::Ip6Local));
        }
        self.ip6_forward(t, m, port, meta)
    }

    /// ip6-local: an echo request to the node is answered.
    fn ip6_echo_reply(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Action {
        if !Icmpv6Packet::new_unchecked(&m[L2 + IP6..]).verify_checksum(&src, &dst) {
            return Action::Drop(DropReason::L4Malformed);
        }
        {
            let mut ip = Ipv6Packet::new_unchecked(&mut m[L2..]);
            ip.set_src_addr(&dst);
            ip.set_dst_addr(&src);
            ip.set_hop_limit(HOP_LIMIT);
        }
        let mut icmp = Icmpv6Packet::new_unchecked(&mut m[L2 + IP6..]);
        icmp.set_msg_type(msg_type::ECHO_REPLY);
        icmp.fill_checksum(&dst, &src);
        self.stats.icmp_sent += 1;
        self.ip6_output_local(t, m, port, src)
    }

    /// Routes a packet the node originates back to `dst`, the source of the frame it answers
    /// (no hop limit change). A link-local destination that no route covers is answered on the
    /// link it came from, to the frame's Ethernet source.
    pub(super) fn ip6_output_local(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        dst: Ipv6Addr,
    ) -> Action {
        match t.ip6.routes.lookup(dst).copied() {
            Some(hop) if !is_link_local(dst) || hop.port == in_port => {
                self.hop_output::<V6>(t, m, hop, dst)
            }
            _ if is_link_local(dst) => {
                let Some(p) = t.ports.get(usize::from(in_port)) else {
                    return Action::Drop(DropReason::Ip6NoRoute);
                };
                let mut eth_src = [0u8; 6];
                eth_src.copy_from_slice(&m[6..12]);
                super::write_eth(m, MacAddr(eth_src), p.mac, EtherType::Ipv6);
                Action::Tx(in_port)
            }
            _ => Action::Drop(DropReason::Ip6NoRoute),
        }
    }

    /// ip6-forward: the hop limit (ICMPv6 time exceeded at the last hop) and the route.
    fn ip6_forward(&mut self, t: &Tables, m: &mut Mbuf, port: PortId, meta: &Ip6Meta) -> Action {
        let (src, dst) = Ip6Meta::addrs(m);
        // RFC 4291 §2.5.6: link-local packets never leave their link.
        if is_link_local(src) || is_link_local(dst) {
            return Action::Drop(DropReason::Ip6LinkLocal);
        }
        if meta.hop <= 1 {
            return self.icmp6_error(
                t,
                m,
                port,
                (src, None),
                (icmpv6::msg_type::TIME_EXCEEDED, 0),
                Some(DropReason::Ip6HopLimitExceeded),
            );
        }
        let Some(hop) = t.ip6.routes.lookup(dst).copied() else {
            return Action::Drop(DropReason::Ip6NoRoute);
        };
        // No header checksum in IPv6: the hop limit is just written.
        Ipv6Packet::new_unchecked(&mut m[L2..]).set_hop_limit(meta.hop - 1);
        self.hop_output::<V6>(t, m, hop, dst)
    }

    /// ip6-output for a packet the Service path rewrote or built: route lookup and next-hop
    /// resolution. The caller has checked and decremented the hop limit.
    pub(super) fn ip6_output(&mut self, t: &Tables, m: &mut Mbuf, dst: Ipv6Addr) -> Action {
        if is_link_local(dst) {
            return Action::Drop(DropReason::Ip6LinkLocal);
        }
        self.route_output::<V6>(t, m, dst)
    }
}

impl Worker {
    /// ip6-input's hand-over to the Service path (`service`): a packet with a flow tuple, after
    /// the fragment step, as a [`FlowPacket`]; an ICMPv6 error by the quoted flow's tuple.
    /// What no flow and no Service claims (or carries no TCP/UDP/SCTP tuple) goes on through
    /// [`Worker::ip6_input`]: routed or handed to the node. `fragment_ports` are the ports a
    /// fragment's home worker already found.
    #[inline(always)]
    pub(super) fn ip6_service(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip6Meta,
        arrival: Arrival,
        fragment_ports: Option<(u16, u16)>,
    ) -> Action {
        if t.services6.is_empty() && self.ct6.is_empty() {
            return self.ip6_input(t, m, port, meta);
        }
        match meta.tuple {
            Tuple6::None => return self.ip6_input(t, m, port, meta),
            Tuple6::Malformed => return Action::Drop(DropReason::L4Malformed),
            Tuple6::IcmpError => {
                let claimed = nat66::icmp_error_quote(&m[L2..]).and_then(|quoted| {
                    let key = quoted.reverse();
                    self.flow_icmp_error::<V6>(t, m, &key, (meta.hop, false), arrival.steered)
                });
                return match claimed {
                    Some(action) => action,
                    None => self.ip6_input(t, m, port, meta),
                };
            }
            Tuple6::Found => {}
        }
        let mut key = meta.key(m);
        if key.dst.is_multicast() || key.src.is_multicast() || is_link_local(key.dst) {
            return self.ip6_input(t, m, port, meta);
        }
        let (mut steered, mut hash) = (arrival.steered, arrival.hash);
        if let Some((ident, later)) = meta.fragment {
            if !fragments_tracked(key.proto) {
                return self.ip6_input(t, m, port, meta);
            }
            match self.fragment_key6(t, key, ident, later, fragment_ports) {
                Ok(Some(k)) => (key, steered, hash) = (k, true, None),
                Ok(None) => return self.ip6_input(t, m, port, meta),
                Err(action) => return action,
            }
        }
        let p = FlowPacket {
            meta,
            key,
            flags: meta.flags,
            hash,
            steered,
            kernel: false,
        };
        self.flow::<V6>(t, m, port, p)
    }

    /// The tuple of a TCP or UDP fragment, as `fragment_key` for IPv4: the datagram's
    /// home worker keeps its first fragment's ports for the later ones, then the fragment goes
    /// to its flow's owner. `fragment_ports` are the ports a home worker already found.
    #[cold]
    #[inline(never)]
    fn fragment_key6(
        &mut self,
        t: &Tables,
        key: FlowKey6,
        ident: u32,
        later: bool,
        fragment_ports: Option<(u16, u16)>,
    ) -> Result<Option<FlowKey6>, Action> {
        if let Some((sport, dport)) = fragment_ports {
            return Ok(Some(FlowKey6 {
                sport,
                dport,
                ..key
            }));
        }
        self.fragment_ports::<V6>(t, key, ident, later)
    }
}

#[cfg(test)]
mod test {
    use super::super::nd_input::is_ndp;
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig};
    use crate::drop::DropReason;
    use crate::ip6::{multicast_mac, solicited_node, ICMP6_QUOTE_MAX, MIN_MTU};
    use crate::time::Instant;
    use crate::wire::{Icmpv6Packet, IpProtocol, Ipv6Packet};
    use proptest::prelude::*;

    #[test]
    fn test_forward_decrements_hop_limit() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let f = udp6_frame(MAC0, "fd00::99", "fd10::7", 64, 30);
        let mut padded = f.clone();
        padded.extend_from_slice(&[0xee; 6]);
        let (v, m) = rig.input(&padded, 0, Instant::ZERO);
        assert_eq!(v, Action::Tx(1));
        assert_eq!(m.len(), f.len(), "Ethernet padding trimmed");
        assert_eq!(&m[..6], &GW.0);
        assert_eq!(&m[6..12], &MAC1.0);
        let mut expected = f.clone();
        expected[..12].copy_from_slice(&m[..12]);
        expected[L2 + 7] = 63;
        assert_eq!(&m[..], &expected[..]);
    }

    #[test]
    fn test_time_exceeded() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        rig.w.neigh6.learn((0, ip("fd00::99")), HOST, Instant::ZERO);
        let f = udp6_frame(MAC0, "fd00::99", "fd10::7", 1, 30);
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Action::Tx(0));
        assert_eq!(&m[..6], &HOST.0);
        let p = Ipv6Packet::new_checked(&m[L2..]).unwrap();
        assert_eq!(p.src_addr(), ip("fd00::1"));
        assert_eq!(p.dst_addr(), ip("fd00::99"));
        assert_eq!(p.next_header(), IpProtocol::Icmpv6);
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.msg_code()), (3, 0));
        assert_eq!(&p.payload()[4..8], &[0, 0, 0, 0]);
        assert_eq!(icmp.data(), &f[L2..]);
        assert!(icmp6_checksum_ok(&m[L2..]));
        assert_eq!(rig.drops(DropReason::Ip6HopLimitExceeded), 1);

        // A big packet is quoted up to the 1280-byte minimum MTU.
        let big = udp6_frame(MAC0, "fd00::99", "fd10::7", 1, 1400);
        let (v, m) = rig.input(&big, 0, Instant::from_secs(1));
        assert_eq!(v, Action::Tx(0));
        assert_eq!(m.len() - L2, MIN_MTU);
        assert_eq!(&m[L2 + IP6 + 8..], &big[L2..L2 + ICMP6_QUOTE_MAX]);
        assert!(icmp6_checksum_ok(&m[L2..]));

        // Never an error about an error.
        let err = icmp6_frame(
            MAC0,
            HOST,
            ip("fd00::99"),
            ip("fd10::7"),
            1,
            &[1, 0, 0, 0, 0, 0, 0, 0, 0x60, 0, 0, 0],
        );
        let (v, _) = rig.input(&err, 0, Instant::from_secs(2));
        assert_eq!(v, Action::Free);
        // ... but an echo request is answered.
        let echo = icmp6_frame(
            MAC0,
            HOST,
            ip("fd00::99"),
            ip("fd10::7"),
            1,
            &[128, 0, 0, 0, 0, 1, 0, 1],
        );
        assert_eq!(rig.input(&echo, 0, Instant::from_secs(3)).0, Action::Tx(0));
    }

    #[test]
    fn test_time_exceeded_rate_limit() {
        let mut rig = Rig::new(WorkerConfig {
            icmp_rate: 10,
            ..WorkerConfig::new(0, 1)
        });
        rig.w.neigh6.learn((0, ip("fd00::99")), HOST, Instant::ZERO);
        let f = udp6_frame(MAC0, "fd00::99", "fd10::7", 1, 30);
        assert_eq!(rig.input(&f, 0, Instant::ZERO).0, Action::Tx(0));
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Drop(DropReason::IcmpRateLimited)
        );
        assert_eq!(rig.input(&f, 0, Instant::from_secs(1)).0, Action::Tx(0));
    }

    #[test]
    fn test_echo_reply() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        rig.w.neigh6.learn((0, ip("fd00::99")), HOST, Instant::ZERO);
        let req = [128, 0, 0, 0, 0x12, 0x34, 0, 7, 0xaa, 0xbb, 0xcc];
        let f = icmp6_frame(MAC0, HOST, ip("fd00::99"), ip("fd00::1"), 60, &req);
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Action::Tx(0));
        assert_eq!(&m[..6], &HOST.0);
        assert_eq!(&m[6..12], &MAC0.0);
        let p = Ipv6Packet::new_checked(&m[L2..]).unwrap();
        assert_eq!(
            (p.src_addr(), p.dst_addr()),
            (ip("fd00::1"), ip("fd00::99"))
        );
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.payload()[0], 129);
        assert_eq!(&p.payload()[4..], &req[4..]);
        assert!(icmp6_checksum_ok(&m[L2..]));
        // From a link-local source: answered on the link it came from.
        let f = icmp6_frame(MAC1, HOST, ip("fe80::99"), ip("fd01::1"), 64, &req);
        let (v, m) = rig.input(&f, 1, Instant::ZERO);
        assert_eq!(v, Action::Tx(1));
        assert_eq!(&m[..6], &HOST.0);
        assert!(icmp6_checksum_ok(&m[L2..]));
        // Other traffic to the node is not handled: the kernel's, or dropped.
        let f = udp6_frame(MAC0, "fd00::99", "fd00::1", 64, 20);
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Drop(DropReason::Ip6Local)
        );
    }

    #[test]
    fn test_drops() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let cases = [
            (
                udp6_frame(MAC0, "fd00::99", "fd77::1", 64, 20),
                Action::Free, // held: the default gateway is unresolved (checked below)
            ),
            (
                udp6_frame(MAC0, "fe80::99", "fd10::1", 64, 20),
                Action::Drop(DropReason::Ip6LinkLocal),
            ),
            (
                udp6_frame(MAC0, "fd00::99", "ff02::1", 64, 20),
                Action::Drop(DropReason::Ip6Multicast),
            ),
            (
                udp6_frame(MAC0, "ff02::1", "fd10::1", 64, 20),
                Action::Drop(DropReason::Ip6BadSource),
            ),
            (
                udp6_frame(MAC0, "fd00::1", "fd10::1", 64, 20),
                Action::Drop(DropReason::Ip6BadSource),
            ),
            (
                udp6_frame(MAC0, "::", "fd10::1", 64, 20),
                Action::Drop(DropReason::Ip6BadSource),
            ),
        ];
        for (f, want) in &cases[1..] {
            assert_eq!(rig.input(f, 0, Instant::ZERO).0, *want);
        }
        let held = rig.input(&cases[0].0, 0, Instant::ZERO).0;
        assert!(matches!(held, Action::Hold { .. }), "{held:?}");
        // Without a default route, no route.
        let mut t = rig.tables();
        t.ip6.routes = crate::ip6::Route6Table::build(
            &[crate::ip6::PortAddress6 {
                port: 0,
                address: ip("fd00::1"),
                prefix_len: 64,
            }],
            &[],
        )
        .unwrap();
        rig.publish(t);
        assert_eq!(
            rig.input(&cases[0].0, 0, Instant::ZERO).0,
            Action::Drop(DropReason::Ip6NoRoute)
        );
        let mut short = udp6_frame(MAC0, "fd00::99", "fd10::1", 64, 20);
        short.truncate(L2 + 30);
        assert_eq!(
            rig.input(&short, 0, Instant::ZERO).0,
            Action::Drop(DropReason::Ip6Malformed)
        );
    }

    proptest! {
        #[test]
        fn prop_malformed_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            which in 0usize..4,
            port in 0u16..3,
        ) {
            let mut rig = Rig::new(WorkerConfig { hold_max: 4, ..WorkerConfig::new(0, 1) });
            let group = solicited_node(ip("fd00::1"));
            let base = match which {
                0 => icmp6_frame(multicast_mac(group), HOST, ip("fe80::99"), group, 255,
                                &ns(ip("fd00::1"), Some(HOST))),
                1 => icmp6_frame(MAC0, HOST, ip("fd00::5"), ip("fd00::1"), 255,
                                &na(ip("fd00::5"), 0x60, HOST)),
                2 => udp6_frame(MAC0, "fd00::99", "fd10::7", 1, 40),
                _ => {
                    let mut f = vec![0x02, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x99, 0x86, 0xdd];
                    f.extend_from_slice(&bytes);
                    f
                }
            };
            let mut f = base;
            for (at, b) in flips {
                if let Some(x) = f.get_mut(at) {
                    *x = b;
                }
            }
            let len = f.len().min(bytes.len().max(1) + 20);
            for frame in [&f[..], &f[..len]] {
                let (_, m) = rig.input(frame, port, Instant::ZERO);
                rig.free(m);
                rig.learn_only(frame, port, Instant::ZERO);
                let _ = is_ndp(frame);
            }
            rig.timers(Instant::from_secs(5));
            prop_assert_eq!(rig.w.held(), 0);
            rig.free_all();
        }
    }
}
