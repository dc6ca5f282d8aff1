//! NAT44 rewrites on an IPv4 packet in place, with checksums updated incrementally (RFC 1624).
//!
//! A flow's NAT is fully described by its two conntrack keys ([`crate::conntrack::Flow`]): a
//! packet is rewritten from the tuple it carries to [`Flow::translated`]. Only the fields that
//! change are touched, and each checksum is patched once per changed field. SCTP's CRC32c is not
//! a ones'-complement sum, so SCTP packets get a full recomputation instead.
//!
//! ICMP errors quote the packet that caused them; when that packet belongs to a NATed flow the
//! quote is translated back too ([`translate_icmp_error`]), so the client sees an error about the
//! packet it sent, as Linux's `nf_nat_icmp_reply_translation` does.

use crate::conntrack::{Dir, Flow, FlowKey};
use crate::service::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use crate::wire::checksum::{self, update16, update32};
use crate::wire::{icmpv4, Icmpv4Packet, Ipv4Packet, SctpPacket, TcpPacket, UdpPacket};
use std::net::Ipv4Addr;

/// IP protocol number of ICMPv4.
pub const PROTO_ICMP: u8 = 1;

/// The checksum change one direction of a flow makes, precomputed when the flow is created: the
/// ones'-complement sum of `~old + new` over every 16-bit word the translation rewrites, for the
/// IPv4 header (addresses) and for TCP/UDP (addresses in the pseudo header, and ports). Every
/// packet of that direction then patches each checksum with one addition (RFC 1624 eqn. 3
/// applied to all changed words at once), as VPP's NAT44 does per session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    pub ip: u16,
    pub l4: u16,
}

impl Delta {
    /// The delta for rewriting tuple `from` into `to` (TCP and UDP ports included; other
    /// protocols only use `ip`).
    pub fn new(from: &FlowKey, to: &FlowKey) -> Delta {
        fn word_change(old: u16, new: u16) -> u32 {
            u32::from(!old) + u32::from(new)
        }
        fn addr_change(old: Ipv4Addr, new: Ipv4Addr) -> u32 {
            let (o, n) = (u32::from(old), u32::from(new));
            word_change((o >> 16) as u16, (n >> 16) as u16) + word_change(o as u16, n as u16)
        }
        let mut ip = 0u32;
        if from.src != to.src {
            ip += addr_change(from.src, to.src);
        }
        if from.dst != to.dst {
            ip += addr_change(from.dst, to.dst);
        }
        let mut l4 = ip;
        if from.sport != to.sport {
            l4 += word_change(from.sport, to.sport);
        }
        if from.dport != to.dport {
            l4 += word_change(from.dport, to.dport);
        }
        Delta {
            ip: checksum::fold(ip),
            l4: checksum::fold(l4),
        }
    }
}

/// A stored checksum after adding a precomputed [`Delta`] part.
#[inline]
fn adjust(checksum: u16, delta: u16) -> u16 {
    !checksum::fold(u32::from(!checksum) + u32::from(delta))
}

/// What decrementing the TTL does to the IPv4 header checksum: the TTL/protocol word drops by
/// 0x100, and `~w + (w - 0x100)` is `0xfeff` whatever `w` (for a TTL of at least 1).
const TTL_DECREMENT: u32 = 0xfeff;

/// Translates a transit packet and decrements its TTL (which must be at least 2) in one pass:
/// for TCP and UDP the TTL change joins the precomputed IPv4 checksum delta.
#[inline]
pub fn forward_with(ip: &mut [u8], from: &FlowKey, to: &FlowKey, delta: Delta) {
    let ttl = Ipv4Packet::new_unchecked(&*ip).hop_limit();
    if from.proto == PROTO_TCP || from.proto == PROTO_UDP {
        let delta = Delta {
            ip: checksum::fold(u32::from(delta.ip) + TTL_DECREMENT),
            l4: delta.l4,
        };
        Ipv4Packet::new_unchecked(&mut *ip).set_hop_limit(ttl - 1);
        return rewrite_with(ip, from, to, delta);
    }
    rewrite(ip, from, to);
    decrement_ttl(ip);
}

/// Decrements the TTL (which must be at least 1), patching the header checksum.
pub fn decrement_ttl(ip: &mut [u8]) {
    let mut p = Ipv4Packet::new_unchecked(ip);
    let (ttl, proto) = (p.hop_limit(), u8::from(p.next_header()));
    let c = update16(
        p.checksum(),
        u16::from_be_bytes([ttl, proto]),
        u16::from_be_bytes([ttl - 1, proto]),
    );
    p.set_hop_limit(ttl - 1);
    p.set_checksum(c);
}

/// Translates a later fragment of a flow's datagram (no L4 header: the first fragment carried
/// the ports, and the L4 checksum, which covers the whole datagram, was patched there) and
/// decrements its TTL (which must be at least 2).
pub fn forward_fragment(ip: &mut [u8], from: &FlowKey, to: &FlowKey) {
    rewrite_addresses(ip, from.src, to.src, from.dst, to.dst);
    decrement_ttl(ip);
}

/// [`rewrite`] with the flow's precomputed checksum delta: the fast path for unfragmented TCP
/// and UDP (the pipeline has checked their headers); other protocols take [`rewrite`].
#[inline]
pub fn rewrite_with(ip: &mut [u8], from: &FlowKey, to: &FlowKey, delta: Delta) {
    if from.proto != PROTO_TCP && from.proto != PROTO_UDP {
        return rewrite(ip, from, to);
    }
    let hl = {
        let mut p = Ipv4Packet::new_unchecked(&mut *ip);
        p.set_src_addr(to.src);
        p.set_dst_addr(to.dst);
        let c = p.checksum();
        p.set_checksum(adjust(c, delta.ip));
        p.header_len()
    };
    let l4 = &mut ip[hl..];
    if from.proto == PROTO_TCP {
        let mut t = TcpPacket::new_unchecked(l4);
        t.set_src_port(to.sport);
        t.set_dst_port(to.dport);
        let c = t.checksum();
        t.set_checksum(adjust(c, delta.l4));
    } else {
        let mut u = UdpPacket::new_unchecked(l4);
        u.set_src_port(to.sport);
        u.set_dst_port(to.dport);
        let c = u.checksum();
        // A zero UDP checksum means "none" and stays zero; a computed zero is sent as 0xffff.
        if c != 0 {
            let c = adjust(c, delta.l4);
            u.set_checksum(if c == 0 { 0xffff } else { c });
        }
    }
}

/// Rewrites a whole IPv4 packet (`ip` starts at the IPv4 header and holds `total_len` bytes,
/// already validated) so that its tuple becomes `to`. `from` is the tuple it carries now.
pub fn rewrite(ip: &mut [u8], from: &FlowKey, to: &FlowKey) {
    let (hl, total) = {
        let p = Ipv4Packet::new_unchecked(&*ip);
        (p.header_len(), usize::from(p.total_len()))
    };
    rewrite_addresses(ip, from.src, to.src, from.dst, to.dst);
    let l4 = &mut ip[hl..total];
    rewrite_l4(l4, from, to, false);
}

/// Changes the IPv4 header's addresses, patching its checksum.
fn rewrite_addresses(
    ip: &mut [u8],
    old_src: Ipv4Addr,
    src: Ipv4Addr,
    old_dst: Ipv4Addr,
    dst: Ipv4Addr,
) {
    let mut p = Ipv4Packet::new_unchecked(ip);
    let mut c = p.checksum();
    if old_src != src {
        c = update32(c, old_src.octets(), src.octets());
        p.set_src_addr(src);
    }
    if old_dst != dst {
        c = update32(c, old_dst.octets(), dst.octets());
        p.set_dst_addr(dst);
    }
    p.set_checksum(c);
}

/// Rewrites ports (or the ICMP echo identifier) and patches the L4 checksum for the address and
/// port changes. `quoted` marks an L4 header quoted inside an ICMP error, which may be cut short:
/// fields beyond the quote are left alone.
fn rewrite_l4(l4: &mut [u8], from: &FlowKey, to: &FlowKey, quoted: bool) {
    let addr_delta = |mut c: u16| {
        if from.src != to.src {
            c = update32(c, from.src.octets(), to.src.octets());
        }
        if from.dst != to.dst {
            c = update32(c, from.dst.octets(), to.dst.octets());
        }
        c
    };
    match from.proto {
        PROTO_TCP if l4.len() >= 4 => {
            let mut t = TcpPacket::new_unchecked(&mut *l4);
            t.set_src_port(to.sport);
            t.set_dst_port(to.dport);
            if l4.len() >= 18 {
                let mut t = TcpPacket::new_unchecked(&mut *l4);
                let mut c = addr_delta(t.checksum());
                c = update16(c, from.sport, to.sport);
                c = update16(c, from.dport, to.dport);
                t.set_checksum(c);
            }
        }
        PROTO_UDP if l4.len() >= 4 => {
            let mut u = UdpPacket::new_unchecked(&mut *l4);
            u.set_src_port(to.sport);
            u.set_dst_port(to.dport);
            if l4.len() >= 8 {
                let mut u = UdpPacket::new_unchecked(&mut *l4);
                let old = u.checksum();
                // A zero UDP checksum means "none" and stays zero.
                if old != 0 {
                    let mut c = addr_delta(old);
                    c = update16(c, from.sport, to.sport);
                    c = update16(c, from.dport, to.dport);
                    u.set_checksum(if c == 0 { 0xffff } else { c });
                }
            }
        }
        PROTO_SCTP if l4.len() >= 4 => {
            let mut s = SctpPacket::new_unchecked(&mut *l4);
            s.set_src_port(to.sport);
            s.set_dst_port(to.dport);
            if !quoted && l4.len() >= 12 {
                SctpPacket::new_unchecked(&mut *l4).fill_checksum();
            }
        }
        PROTO_ICMP if l4.len() >= 8 => {
            let mut i = Icmpv4Packet::new_unchecked(&mut *l4);
            let (old_id, new_id) = if i.msg_type() == icmpv4::msg_type::ECHO_REQUEST {
                (from.sport, to.sport)
            } else {
                (from.dport, to.dport)
            };
            if old_id != new_id {
                let c = update16(i.checksum(), old_id, new_id);
                i.set_echo_ident(new_id);
                i.set_checksum(c);
            }
        }
        _ => {}
    }
}

/// Reads the tuple of an IPv4 packet quoted in an ICMP error (`quote` starts at the quoted IPv4
/// header; only its header and the first 8 bytes of L4 are required). For a quoted echo the
/// identifier is placed as in [`FlowKey`].
pub fn quoted_key(quote: &[u8]) -> Option<FlowKey> {
    if quote.len() < 20 || quote[0] >> 4 != 4 {
        return None;
    }
    let p = Ipv4Packet::new_unchecked(quote);
    let hl = p.header_len();
    if hl < 20 || quote.len() < hl + 8 || p.frag_offset() != 0 {
        return None;
    }
    let proto = u8::from(p.next_header());
    let l4 = &quote[hl..];
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        PROTO_ICMP => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            match l4[0] {
                icmpv4::msg_type::ECHO_REQUEST => (id, 0),
                icmpv4::msg_type::ECHO_REPLY => (0, id),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(FlowKey {
        src: p.src_addr(),
        dst: p.dst_addr(),
        sport,
        dport,
        proto,
    })
}

/// Translates an ICMP error travelling in direction `dir` of `flow` (the error was looked up by
/// the reverse of its quoted tuple). `ip` is the whole outer IPv4 packet. The outer source and
/// destination are translated where they are the flow's own addresses (an error from a router
/// in between keeps that router's address), the quote becomes the packet as the far side sent
/// it, and the ICMP checksum is recomputed over the message.
pub fn translate_icmp_error(ip: &mut [u8], flow: &Flow, dir: Dir) {
    let inbound = flow.key(dir);
    let out = flow.translated(dir);
    let (hl, total, src, dst) = {
        let p = Ipv4Packet::new_unchecked(&*ip);
        (
            p.header_len(),
            usize::from(p.total_len()),
            p.src_addr(),
            p.dst_addr(),
        )
    };
    let new_src = if src == inbound.src { out.src } else { src };
    let new_dst = if dst == inbound.dst { out.dst } else { dst };
    rewrite_addresses(ip, src, new_src, dst, new_dst);

    // The quote: as sent it was the translated packet of the other direction, i.e. the reverse
    // of `inbound`; it must become the reverse of `out`.
    let icmp = &mut ip[hl..total];
    let quote_start = 8;
    let quote = &mut icmp[quote_start..];
    let qhl = Ipv4Packet::new_unchecked(&*quote).header_len();
    let q_from = inbound.reverse();
    let q_to = out.reverse();
    rewrite_addresses(quote, q_from.src, q_to.src, q_from.dst, q_to.dst);
    rewrite_l4(&mut quote[qhl..], &q_from, &q_to, true);

    let mut i = Icmpv4Packet::new_unchecked(icmp);
    i.set_checksum(0);
    let c = !checksum::data(i.into_inner());
    Icmpv4Packet::new_unchecked(&mut ip[hl..total]).set_checksum(c);
}

#[cfg(test)]
mod test {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// An etherparse-built IPv4 packet.
    fn build(b: etherparse::PacketBuilderStep<etherparse::UdpHeader>, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    }

    fn ones_complement_ok(bytes: &[u8]) -> bool {
        etherparse::checksum::Sum16BitWords::new()
            .add_slice(bytes)
            .ones_complement()
            == 0
    }

    #[test]
    fn test_echo_identifier_is_translated_with_valid_checksum() {
        let mut f = Vec::new();
        PacketBuilder::ipv4([10, 1, 0, 9], [10, 96, 0, 10], 64)
            .icmpv4_echo_request(0x1234, 7)
            .write(&mut f, b"ping payload")
            .unwrap();
        let from = FlowKey {
            src: ip("10.1.0.9"),
            dst: ip("10.96.0.10"),
            sport: 0x1234,
            dport: 0,
            proto: PROTO_ICMP,
        };
        let to = FlowKey {
            src: ip("10.0.0.1"),
            dst: ip("10.1.0.5"),
            sport: 40000,
            dport: 0,
            proto: PROTO_ICMP,
        };
        rewrite(&mut f, &from, &to);
        let p = SlicedPacket::from_ip(&f).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
            panic!("ICMP expected")
        };
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 40000, seq: 7 })
        );
        assert!(ones_complement_ok(&f[20..]), "ICMP checksum");
        let h = etherparse::Ipv4HeaderSlice::from_slice(&f)
            .unwrap()
            .to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(quoted_key(&f), Some(to));
    }

    #[test]
    fn test_precomputed_delta_matches_word_by_word_update() {
        use proptest::prelude::*;
        proptest!(|(a in any::<[u32; 4]>(), p in any::<[u16; 4]>(), tcp in any::<bool>(),
                    payload in proptest::collection::vec(any::<u8>(), 0..64))| {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let from = FlowKey { src: a[0].into(), dst: a[1].into(), sport: p[0], dport: p[1], proto };
            let to = FlowKey { src: a[2].into(), dst: a[3].into(), sport: p[2], dport: p[3], proto };
            let mut f = Vec::new();
            let b = PacketBuilder::ipv4(from.src.octets(), from.dst.octets(), 64);
            if tcp {
                b.tcp(from.sport, from.dport, 1, 1000).write(&mut f, &payload).unwrap();
            } else {
                b.udp(from.sport, from.dport).write(&mut f, &payload).unwrap();
            }
            let mut slow = f.clone();
            rewrite(&mut slow, &from, &to);
            let mut forwarded = f.clone();
            rewrite_with(&mut f, &from, &to, Delta::new(&from, &to));
            prop_assert_eq!(&f, &slow);
            // Forwarding: the same plus TTL 64 -> 63, with a valid header checksum.
            forward_with(&mut forwarded, &from, &to, Delta::new(&from, &to));
            prop_assert_eq!(forwarded[8], 63);
            prop_assert_eq!(&forwarded[12..], &f[12..]);
            let fh = etherparse::Ipv4HeaderSlice::from_slice(&forwarded).unwrap().to_header();
            prop_assert_eq!(fh.header_checksum, fh.calc_header_checksum());
            let h = etherparse::Ipv4HeaderSlice::from_slice(&f).unwrap().to_header();
            prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
            if tcp {
                let t = etherparse::TcpHeaderSlice::from_slice(&f[20..]).unwrap().to_header();
                prop_assert_eq!(t.checksum, t.calc_checksum_ipv4(&h, &f[40..]).unwrap());
            } else {
                let u = etherparse::UdpHeaderSlice::from_slice(&f[20..]).unwrap().to_header();
                prop_assert_eq!(u.checksum, u.calc_checksum_ipv4(&h, &f[28..]).unwrap());
            }
        });
    }

    #[test]
    fn test_udp_rewrite_keeps_zero_checksum_and_fixes_others() {
        let b = || PacketBuilder::ipv4([198, 51, 100, 7], [10, 0, 0, 1], 64).udp(5000, 30053);
        let from = FlowKey {
            src: ip("198.51.100.7"),
            dst: ip("10.0.0.1"),
            sport: 5000,
            dport: 30053,
            proto: PROTO_UDP,
        };
        let to = FlowKey {
            src: ip("10.2.0.1"),
            dst: ip("10.2.0.5"),
            sport: 32768,
            dport: 53,
            proto: PROTO_UDP,
        };
        let mut with = build(b(), b"query");
        rewrite(&mut with, &from, &to);
        let ih = etherparse::Ipv4HeaderSlice::from_slice(&with)
            .unwrap()
            .to_header();
        let u = etherparse::UdpHeaderSlice::from_slice(&with[20..])
            .unwrap()
            .to_header();
        assert_eq!((u.source_port, u.destination_port), (32768, 53));
        assert_eq!(u.checksum, u.calc_checksum_ipv4(&ih, &with[28..]).unwrap());
        let mut without = build(b(), b"query");
        without[26] = 0;
        without[27] = 0;
        rewrite(&mut without, &from, &to);
        assert_eq!(&without[26..28], &[0, 0], "a zero UDP checksum stays zero");
    }

    #[test]
    fn test_sctp_crc_recomputed() {
        // IPv4 + SCTP common header + one 4-byte chunk header.
        let mut f = vec![0u8; 20 + 16];
        {
            let mut p = Ipv4Packet::new_unchecked(&mut f[..]);
            p.set_version(4);
            p.set_header_len(20);
            p.set_total_len(36);
            p.set_hop_limit(64);
            p.set_next_header(crate::wire::IpProtocol::Sctp);
            p.set_src_addr(ip("10.1.0.9"));
            p.set_dst_addr(ip("10.96.0.30"));
            p.fill_checksum();
        }
        {
            let mut s = SctpPacket::new_unchecked(&mut f[20..]);
            s.set_src_port(4000);
            s.set_dst_port(3868);
            s.fill_checksum();
        }
        let from = FlowKey {
            src: ip("10.1.0.9"),
            dst: ip("10.96.0.30"),
            sport: 4000,
            dport: 3868,
            proto: PROTO_SCTP,
        };
        let to = FlowKey {
            dst: ip("10.1.0.77"),
            dport: 13868,
            ..from
        };
        rewrite(&mut f, &from, &to);
        let s = SctpPacket::new_checked(&f[20..]).unwrap();
        assert_eq!(s.dst_port(), 13868);
        assert!(s.verify_checksum());
        assert!(Ipv4Packet::new_checked(&f[..]).unwrap().verify_checksum());
    }
}
