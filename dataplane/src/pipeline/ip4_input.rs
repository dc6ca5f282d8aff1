//! **ip4-input**, **ip4-local**, **ip4-forward** and **ip4-output**: IPv4 (RFC 791, RFC 1812),
//! the mirror of the `ip6-*` stages.
//!
//! ```text
//!  ip4-input ─┬─ flow tuple ─► service (steer, ct-lookup, svc-lookup, nat44) ─► ip4-output
//!             ├─ our address ─► ip4-local: echo ─► reply / health check ─► stack / else host-punt
//!             └─ ip4-forward ─► TTL (ICMP time exceeded) ─► ip4-output ─► neighbour
//! ```
//!
//! `classify_ip4` (the burst pass) checks the header and its checksum, trims Ethernet padding
//! and extracts the flow tuple (for an ICMP error, the reverse of its quote's); it sets
//! [`Ip4Meta`], which the later IPv4 stages read instead of parsing again.

use super::family::{Family, V4};
use super::service::{fragments_tracked, FlowPacket};
use super::{Action, Arrival, Class, Worker, L2};
use crate::conntrack::FlowKey;
use crate::drop::DropReason;
use crate::mbuf::Mbuf;
use crate::nat::{self, PROTO_ICMP};
use crate::port::PortId;
use crate::service::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use crate::tables::Tables;
use crate::wire::{icmpv4, Icmpv4Packet, Ipv4Packet, SctpPacket, TcpPacket, UdpPacket};
use std::net::Ipv4Addr;

/// The parts of an IPv4 packet the pipeline decides on.
#[derive(Clone, Copy)]
pub(super) struct Ip4Meta {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub l4: usize,
    /// Any fragment (first or not).
    pub fragmented: bool,
    /// A fragment after the first: no L4 header.
    pub later_fragment: bool,
    /// The IP identification (what ties the fragments of one datagram together).
    pub ident: u16,
    /// A fragment whose flow ports the datagram's home worker found (`key` holds them).
    pub fragment_resolved: bool,
}

/// What `classify_ip4` hands the decision pass.
#[derive(Clone, Copy)]
pub(super) struct Ip4Class {
    pub meta: Ip4Meta,
    /// The flow tuple: the packet's own, or for an ICMP error the reverse of the quote's.
    pub key: Option<FlowKey>,
    /// TCP flags (0 for other protocols).
    pub flags: u8,
    pub icmp_error: bool,
}

impl Worker {
    /// ip4-input's hand-over to the Service path: the fragment step (a fragment's ports come
    /// from its datagram's home worker), then `service` with the packet's [`FlowPacket`] or,
    /// for an ICMP error, the quoted flow's tuple; what neither claims is the node's or
    /// forwarded ([`Worker::ip4_no_l4`]).
    #[inline(always)]
    pub(super) fn ip4_service(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        c: Ip4Class,
        arrival: Arrival,
    ) -> Action {
        let Ip4Class {
            meta,
            key,
            flags,
            icmp_error,
        } = c;
        let (key, steered, hash) = if meta.fragmented {
            match self.fragment_key(t, &meta, key, icmp_error, arrival.steered) {
                // The burst's hash is of the classified tuple: a later fragment's comes from
                // the fragment table.
                Ok((k, steered)) => (k, steered, arrival.hash.filter(|_| k.is_some() && k == key)),
                Err(action) => return action,
            }
        } else {
            (key, arrival.steered, arrival.hash)
        };
        let Some(key) = key else {
            return self.ip4_no_l4(t, m, port, &meta);
        };
        if icmp_error {
            return match self.flow_icmp_error::<V4>(
                t,
                m,
                &key,
                (meta.ttl, meta.fragmented),
                steered,
            ) {
                Some(action) => action,
                None => self.ip4_no_l4(t, m, port, &meta),
            };
        }
        let p = FlowPacket {
            meta: &meta,
            key,
            flags,
            hash,
            steered,
            kernel: false,
        };
        self.flow::<V4>(t, m, port, p)
    }

    /// The flow tuple of a fragment (and whether it is steered already), or where the fragment
    /// must go first. Every fragment of a TCP or UDP datagram goes first to the datagram's home
    /// worker (chosen by its identity, which every fragment carries), which remembers the first
    /// fragment's ports and gives them to the later ones; then, with its ports, the fragment
    /// goes to its flow's owner, which translates it (`Ok((Some, true))`: it is this worker). A
    /// later fragment whose first one was not seen, or of another protocol, has no tuple. Out
    /// of line and cold: fragments are rare, and the burst loop stays as it was for everything
    /// else.
    #[cold]
    #[inline(never)]
    fn fragment_key(
        &mut self,
        t: &Tables,
        meta: &Ip4Meta,
        key: Option<FlowKey>,
        icmp_error: bool,
        steered: bool,
    ) -> Result<(Option<FlowKey>, bool), Action> {
        if icmp_error || !fragments_tracked(meta.proto) {
            return Ok((key.filter(|_| !meta.later_fragment), steered));
        }
        if meta.fragment_resolved {
            return Ok((key, true));
        }
        let first = key
            .filter(|_| !meta.later_fragment)
            .map_or((0, 0), |k| (k.sport, k.dport));
        let key = V4::key(meta.src, meta.dst, first.0, first.1, meta.proto);
        let found =
            self.fragment_ports::<V4>(t, key, u32::from(meta.ident), meta.later_fragment)?;
        Ok((found, true))
    }

    /// Packets that no flow and no Service claims: the node's own, or plain forwarding.
    pub(super) fn ip4_no_l4(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip4Meta,
    ) -> Action {
        if t.is_local(meta.dst) {
            if meta.fragmented {
                // The kernel reassembles its own traffic.
                return self.punt_or(port, Action::Drop(DropReason::Ip4Fragment));
            }
            return self.ip4_local(t, m, port, meta);
        }
        if meta.ttl <= 1 {
            return self.icmp_error(
                t,
                m,
                port,
                meta,
                (icmpv4::msg_type::TIME_EXCEEDED, 0),
                DropReason::Ip4TtlExceeded,
            );
        }
        self.ip4_forward(t, m)
    }

    /// Packets for the node itself that no flow and no Service claims: ICMP echo is answered,
    /// the rest is punted to the kernel (dropped when the port has no host port).
    fn ip4_local(&mut self, t: &Tables, m: &mut Mbuf, port: PortId, meta: &Ip4Meta) -> Action {
        if meta.proto == PROTO_ICMP {
            let is_echo = Icmpv4Packet::new_checked(&m[meta.l4..])
                .is_ok_and(|p| p.msg_type() == icmpv4::msg_type::ECHO_REQUEST && p.msg_code() == 0);
            if is_echo {
                {
                    let mut ip = Ipv4Packet::new_unchecked(&mut m[L2..]);
                    ip.set_src_addr(meta.dst);
                    ip.set_dst_addr(meta.src);
                    ip.set_hop_limit(64);
                    ip.fill_checksum();
                }
                let mut icmp = Icmpv4Packet::new_unchecked(&mut m[meta.l4..]);
                icmp.set_msg_type(icmpv4::msg_type::ECHO_REPLY);
                icmp.fill_checksum();
                self.stats.icmp_sent += 1;
                return self.route_output::<V4>(t, m, meta.src);
            }
        }
        // stack-punt: a Service's health check, served by the host stack. The frame goes,
        // unchanged, to the stack port's transmit batch like any frame to send.
        if meta.proto == PROTO_TCP {
            if let Some(stack) = self.cfg.stack_port {
                let dport = m
                    .get(meta.l4 + 2..meta.l4 + 4)
                    .map_or(0, |p| u16::from_be_bytes([p[0], p[1]]));
                if t.health.serves(dport) {
                    return Action::Tx(stack);
                }
            }
        }
        self.punt_or(port, Action::Drop(DropReason::Ip4Local))
    }

    /// Decrements the TTL and routes a transit packet.
    #[inline]
    pub(super) fn ip4_forward(&mut self, t: &Tables, m: &mut Mbuf) -> Action {
        let (dst, ttl, proto) = {
            let ip = Ipv4Packet::new_unchecked(&m[L2..]);
            (ip.dst_addr(), ip.hop_limit(), u8::from(ip.next_header()))
        };
        if ttl <= 1 {
            return Action::Drop(DropReason::Ip4TtlExceeded);
        }
        let Some(hop) = t.routes.lookup(dst).copied() else {
            return Action::Drop(DropReason::Ip4NoRoute);
        };
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut m[L2..]);
            let old = u16::from_be_bytes([ttl, proto]);
            let new = u16::from_be_bytes([ttl - 1, proto]);
            let c = crate::wire::checksum::update16(ip.checksum(), old, new);
            ip.set_hop_limit(ttl - 1);
            ip.set_checksum(c);
        }
        self.hop_output::<V4>(t, m, hop, dst)
    }
}

/// ip4-input: header, checksum and source checks, padding trimmed, flow tuple extracted.
pub(super) fn classify_ip4(t: &Tables, m: &mut Mbuf) -> Class {
    classify_ip4_from(t, m, false)
}

/// The same for a packet the node's kernel sent (`host-input`), whose source may be one of
/// the node's addresses.
pub(super) fn classify_ip4_from_kernel(t: &Tables, m: &mut Mbuf) -> Class {
    classify_ip4_from(t, m, true)
}

#[inline(always)]
fn classify_ip4_from(t: &Tables, m: &mut Mbuf, kernel: bool) -> Class {
    let (meta, total) = {
        let Ok(ip) = Ipv4Packet::new_checked(&m[L2..]) else {
            return Class::Drop(DropReason::Ip4Malformed);
        };
        if !ip.verify_checksum() {
            return Class::Drop(DropReason::Ip4BadChecksum);
        }
        let meta = Ip4Meta {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            proto: u8::from(ip.next_header()),
            ttl: ip.hop_limit(),
            l4: L2 + ip.header_len(),
            fragmented: ip.more_frags() || ip.frag_offset() != 0,
            later_fragment: ip.frag_offset() != 0,
            ident: ip.ident(),
            fragment_resolved: false,
        };
        (meta, usize::from(ip.total_len()))
    };
    // Ethernet padding is not part of the packet.
    m.set_len(L2 + total);
    let ip4 = |key, flags, icmp_error| {
        Class::Ip4(Ip4Class {
            meta,
            key,
            flags,
            icmp_error,
        })
    };
    if meta.later_fragment {
        return ip4(None, 0, false);
    }
    if meta.src.is_multicast() || meta.src.is_broadcast() || (!kernel && t.is_local(meta.src)) {
        return Class::Drop(DropReason::Ip4BadSource);
    }
    if meta.dst.is_multicast() || meta.dst.is_broadcast() {
        return Class::Host(DropReason::Ip4Local);
    }
    let own = |sport, dport| {
        Some(FlowKey {
            src: meta.src,
            dst: meta.dst,
            sport,
            dport,
            proto: meta.proto,
        })
    };
    let l4 = &m[meta.l4..];
    match meta.proto {
        PROTO_TCP => match TcpPacket::new_checked(l4) {
            Ok(p) => ip4(own(p.src_port(), p.dst_port()), p.flags(), false),
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        // A first fragment holds the UDP header but not the length it gives (the datagram's).
        PROTO_UDP if meta.fragmented => match l4 {
            [a, b, c, d, _, _, _, _, ..] => ip4(
                own(u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
                0,
                false,
            ),
            _ => Class::Drop(DropReason::L4Malformed),
        },
        PROTO_UDP => match UdpPacket::new_checked(l4) {
            Ok(p) => ip4(own(p.src_port(), p.dst_port()), 0, false),
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        PROTO_SCTP => match SctpPacket::new_checked(l4) {
            Ok(p) => ip4(own(p.src_port(), p.dst_port()), 0, false),
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        PROTO_ICMP => match Icmpv4Packet::new_checked(l4) {
            Ok(p) => match p.msg_type() {
                icmpv4::msg_type::ECHO_REQUEST => ip4(own(p.echo_ident(), 0), 0, false),
                icmpv4::msg_type::ECHO_REPLY => ip4(own(0, p.echo_ident()), 0, false),
                ty if icmpv4::is_error(ty) => match nat::quoted_key(p.data()) {
                    Some(q) => ip4(Some(q.reverse()), 0, true),
                    None => ip4(None, 0, false),
                },
                _ => ip4(None, 0, false),
            },
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        _ => ip4(None, 0, false),
    }
}

#[cfg(test)]
mod test {
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig};
    use crate::drop::DropReason;
    use crate::time::Instant;
    use crate::wire::Ipv4Packet;

    #[test]
    fn forwarding_decrements_the_ttl_and_checks_the_header() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let n7 = crate::wire::MacAddr([2, 0, 0, 0, 0, 7]);
        rig.w.neigh.learn([10, 1, 0, 7].into(), n7, Instant::ZERO);
        let f = udp4_frame(MAC0, [10, 0, 0, 99], [10, 1, 0, 7], 64, b"hello");
        let mut padded = f.clone();
        padded.extend_from_slice(&[0xee; 6]);
        let (a, m) = rig.input(&padded, 0, Instant::ZERO);
        assert_eq!(a, Action::Tx(1));
        assert_eq!(m.len(), f.len(), "Ethernet padding trimmed");
        assert_eq!((&m[..6], &m[6..12]), (&n7.0[..], &MAC1.0[..]));
        let ip = Ipv4Packet::new_checked(&m[14..]).unwrap();
        assert_eq!(ip.hop_limit(), 63);
        assert!(ip.verify_checksum(), "checksum updated with the TTL");
        assert_eq!(&m[34..], &f[34..], "payload untouched");
        rig.free(m);

        let t = Instant::ZERO;
        let mut bad = f.clone();
        bad[24] ^= 0xff;
        assert_eq!(
            rig.input(&bad, 0, t).0,
            Action::Drop(DropReason::Ip4BadChecksum)
        );
        assert_eq!(
            rig.input(&f[..20], 0, t).0,
            Action::Drop(DropReason::Ip4Malformed)
        );
        // A source that is ours or a broadcast.
        let ours = udp4_frame(MAC0, [10, 0, 0, 1], [10, 1, 0, 7], 64, b"x");
        assert_eq!(
            rig.input(&ours, 0, t).0,
            Action::Drop(DropReason::Ip4BadSource)
        );
        let bcast = udp4_frame(MAC0, [255, 255, 255, 255], [10, 1, 0, 7], 64, b"x");
        assert_eq!(
            rig.input(&bcast, 0, t).0,
            Action::Drop(DropReason::Ip4BadSource)
        );
        // No route (the rig has only connected prefixes).
        let far = udp4_frame(MAC0, [10, 0, 0, 99], [192, 0, 2, 1], 64, b"x");
        assert_eq!(
            rig.input(&far, 0, t).0,
            Action::Drop(DropReason::Ip4NoRoute)
        );
        // To the node and not echo: the kernel's; without a host port, dropped as ip4-local.
        let local = udp4_frame(MAC0, [10, 0, 0, 99], [10, 0, 0, 1], 64, b"x");
        assert_eq!(
            rig.input(&local, 0, t).0,
            Action::Drop(DropReason::Ip4Local)
        );
        rig.free_all();
    }
}
