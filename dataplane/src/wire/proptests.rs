//! Property tests over all views: no getter panics after `new_checked`, and
//! RFC 1624 incremental checksum updates agree with full recomputation.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::arp::{ArpPacket, ArpRepr};
use super::checksum;
use super::ethernet::{EthernetFrame, EthernetRepr};
use super::icmpv4::{self, Icmpv4Packet};
use super::icmpv6::{self, Icmpv6Packet};
use super::ipv4::{Ipv4Packet, Ipv4Repr};
use super::ipv6::{Ipv6Packet, Ipv6Repr};
use super::sctp::SctpPacket;
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::IpProtocol;

/// Arbitrary bytes, sometimes with a chosen byte written at a chosen offset
/// so that version/type/EtherType checks are passed more often.
fn bytes_with(patches: &'static [(usize, &'static [u8])]) -> impl Strategy<Value = Vec<u8>> {
    (
        vec(any::<u8>(), 0..200),
        proptest::option::of(0..patches.len()),
        any::<u8>(),
    )
        .prop_map(move |(mut bytes, patch, low)| {
            if let Some(i) = patch {
                let (at, values) = patches[i];
                for (k, v) in values.iter().enumerate() {
                    if let Some(b) = bytes.get_mut(at + k) {
                        *b = *v;
                    }
                }
                // randomise a length-ish byte right after the patch
                if let Some(b) = bytes.get_mut(at + values.len()) {
                    *b = low % 64;
                }
            }
            bytes
        })
}

fn exercise_ethernet(bytes: &[u8]) {
    let _ = EthernetRepr::parse(&EthernetFrame::new_unchecked(bytes));
    if let Ok(f) = EthernetFrame::new_checked(bytes) {
        black_box((f.dst_addr(), f.src_addr(), f.ethertype(), f.tag_count()));
        black_box((
            f.header_len(),
            f.vlan_id(),
            f.payload_ethertype(),
            f.payload(),
        ));
        black_box(EthernetRepr::parse(&f).unwrap());
    }
}

fn exercise_arp(bytes: &[u8]) {
    let _ = ArpRepr::parse(&ArpPacket::new_unchecked(bytes));
    if let Ok(p) = ArpPacket::new_checked(bytes) {
        black_box((p.hardware_type(), p.protocol_type(), p.hardware_len()));
        black_box((p.protocol_len(), p.operation(), p.source_hardware_addr()));
        black_box((p.source_protocol_addr(), p.target_hardware_addr()));
        black_box((p.target_protocol_addr(), ArpRepr::parse(&p).is_ok()));
    }
}

fn exercise_ipv4(bytes: &[u8]) {
    let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(bytes));
    if let Ok(p) = Ipv4Packet::new_checked(bytes) {
        black_box((
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
        ));
        black_box((p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset()));
        black_box((p.hop_limit(), p.next_header(), p.checksum(), p.src_addr()));
        black_box((p.dst_addr(), p.options(), p.header(), p.verify_checksum()));
        black_box((p.payload(), Ipv4Repr::parse(&p).unwrap()));
    }
}

fn exercise_ipv6(bytes: &[u8]) {
    let _ = Ipv6Repr::parse(&Ipv6Packet::new_unchecked(bytes));
    if let Ok(p) = Ipv6Packet::new_checked(bytes) {
        black_box((
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        ));
        black_box((p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr()));
        black_box((p.payload(), Ipv6Repr::parse(&p).unwrap()));
    }
}

fn exercise_tcp(bytes: &[u8]) {
    if let Ok(p) = TcpPacket::new_checked(bytes) {
        black_box((p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()));
        black_box((
            p.header_len(),
            p.flags(),
            p.fin(),
            p.syn(),
            p.rst(),
            p.psh(),
        ));
        black_box((
            p.ack(),
            p.urg(),
            p.ece(),
            p.cwr(),
            p.window_len(),
            p.checksum(),
        ));
        black_box((p.urgent_at(), p.options(), p.payload()));
        black_box(p.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST));
        black_box(p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED));
    }
}

fn exercise_udp(bytes: &[u8]) {
    if let Ok(p) = UdpPacket::new_checked(bytes) {
        black_box((
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.is_empty(),
            p.checksum(),
        ));
        black_box(p.payload());
        black_box(p.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST));
        black_box(p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED));
    }
}

fn exercise_sctp(bytes: &[u8]) {
    if let Ok(p) = SctpPacket::new_checked(bytes) {
        black_box((
            p.src_port(),
            p.dst_port(),
            p.verification_tag(),
            p.checksum(),
        ));
        black_box((p.payload(), p.verify_checksum()));
    }
}

fn exercise_icmpv4(bytes: &[u8]) {
    if let Ok(p) = Icmpv4Packet::new_checked(bytes) {
        black_box((p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident()));
        black_box((p.echo_seq_no(), p.rest_of_header(), p.next_hop_mtu()));
        black_box((
            p.data(),
            p.verify_checksum(),
            icmpv4::is_error(p.msg_type()),
        ));
    }
}

fn exercise_icmpv6(bytes: &[u8]) {
    if let Ok(p) = Icmpv6Packet::new_checked(bytes) {
        black_box((p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident()));
        black_box((p.echo_seq_no(), p.data(), p.ndisc_target(), p.ndisc_flags()));
        black_box(p.verify_checksum(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED));
        black_box(icmpv6::is_error(p.msg_type()));
        // the walk must terminate: each step consumes >= 8 bytes or stops
        let steps = p.ndisc_options().count();
        assert!(steps <= bytes.len() / 8 + 1);
        black_box(p.ndisc_link_layer_option(1));
        black_box(p.ndisc_link_layer_option(2));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ethernet_never_panics(bytes in bytes_with(&[(12, &[0x81, 0x00]), (12, &[0x88, 0xa8, 0, 0, 0x81, 0x00])])) {
        exercise_ethernet(&bytes);
    }

    #[test]
    fn arp_never_panics(bytes in bytes_with(&[(0, &[0, 1, 8, 0, 6, 4])])) {
        exercise_arp(&bytes);
    }

    #[test]
    fn ipv4_never_panics(bytes in bytes_with(&[(0, &[0x45, 0, 0]), (0, &[0x4f, 0, 0]), (0, &[0x46])])) {
        exercise_ipv4(&bytes);
    }

    #[test]
    fn ipv6_never_panics(bytes in bytes_with(&[(0, &[0x60, 0, 0, 0, 0])])) {
        exercise_ipv6(&bytes);
    }

    #[test]
    fn tcp_never_panics(bytes in bytes_with(&[(12, &[0x50]), (12, &[0xf0])])) {
        exercise_tcp(&bytes);
    }

    #[test]
    fn udp_never_panics(bytes in bytes_with(&[(4, &[0])])) {
        exercise_udp(&bytes);
    }

    #[test]
    fn sctp_never_panics(bytes in vec(any::<u8>(), 0..200)) {
        exercise_sctp(&bytes);
    }

    #[test]
    fn icmpv4_never_panics(bytes in vec(any::<u8>(), 0..200)) {
        exercise_icmpv4(&bytes);
    }

    #[test]
    fn icmpv6_never_panics(bytes in bytes_with(&[
        (0, &[135]), (0, &[136]), (0, &[133]), (0, &[134]), (0, &[137]),
        (24, &[1]), (24, &[2]), (24, &[1, 0]),
    ])) {
        exercise_icmpv6(&bytes);
        // also with an NDP type forced, so the option walk runs on garbage
        let mut forced = bytes.clone();
        if let Some(b) = forced.first_mut() {
            *b = icmpv6::msg_type::NEIGHBOR_ADVERT;
        }
        exercise_icmpv6(&forced);
    }

    /// Every view on the same arbitrary bytes.
    #[test]
    fn all_views_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        exercise_ethernet(&bytes);
        exercise_arp(&bytes);
        exercise_ipv4(&bytes);
        exercise_ipv6(&bytes);
        exercise_tcp(&bytes);
        exercise_udp(&bytes);
        exercise_sctp(&bytes);
        exercise_icmpv4(&bytes);
        exercise_icmpv6(&bytes);
    }
}

/// Which field of a generated IPv4 + TCP/UDP packet gets rewritten.
#[derive(Debug, Clone, Copy)]
enum Rewrite {
    SrcAddr(Ipv4Addr),
    DstAddr(Ipv4Addr),
    SrcPort(u16),
    DstPort(u16),
}

fn rewrite_strategy() -> impl Strategy<Value = Rewrite> {
    prop_oneof![
        any::<u32>().prop_map(|a| Rewrite::SrcAddr(Ipv4Addr::from(a))),
        any::<u32>().prop_map(|a| Rewrite::DstAddr(Ipv4Addr::from(a))),
        any::<u16>().prop_map(Rewrite::SrcPort),
        any::<u16>().prop_map(Rewrite::DstPort),
    ]
}

/// Builds IPv4 + TCP or UDP with correct checksums.
fn build_packet(
    tcp: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    seq: u32,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let l4_header = if tcp { 20 } else { 8 };
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: if tcp {
            IpProtocol::Tcp
        } else {
            IpProtocol::Udp
        },
        payload_len: l4_header + payload.len(),
        hop_limit: ttl,
    };
    let mut bytes = vec![0u8; repr.buffer_len() + repr.payload_len];
    let mut ip = Ipv4Packet::new_unchecked(&mut bytes[..]);
    repr.emit(&mut ip);
    let l4 = ip.payload_mut();
    if tcp {
        let mut t = TcpPacket::new_unchecked(l4);
        t.set_src_port(ports.0);
        t.set_dst_port(ports.1);
        t.set_seq_number(seq);
        t.set_ack_number(!seq);
        t.set_header_len(20);
        t.set_flags(super::tcp::flags::ACK);
        t.set_window_len(seq as u16);
        t.payload_mut().copy_from_slice(payload);
        t.fill_checksum_v4(src, dst);
    } else {
        let mut u = UdpPacket::new_unchecked(l4);
        u.set_src_port(ports.0);
        u.set_dst_port(ports.1);
        u.set_len((8 + payload.len()) as u16);
        u.payload_mut().copy_from_slice(payload);
        u.fill_checksum_v4(src, dst);
    }
    bytes
}

/// The UDP adaptation of an incrementally updated checksum (module docs of
/// `checksum` and `udp`): a stored 0 means "none" and is left alone; a
/// result of 0 is transmitted as 0xffff.
fn udp_update(stored: u16, update: impl FnOnce(u16) -> u16) -> u16 {
    if stored == 0 {
        return 0;
    }
    match update(stored) {
        0 => 0xffff,
        v => v,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn incremental_update_matches_recompute(
        tcp in any::<bool>(),
        src in any::<u32>(),
        dst in any::<u32>(),
        ports in any::<(u16, u16)>(),
        seq in any::<u32>(),
        ttl in any::<u8>(),
        payload in vec(any::<u8>(), 0..64),
        rewrite in rewrite_strategy(),
    ) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let mut bytes = build_packet(tcp, src, dst, ports, seq, ttl, &payload);
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        prop_assert!(ip.verify_checksum());

        // Rewrite in place with incremental updates.
        let (new_src, new_dst) = match rewrite {
            Rewrite::SrcAddr(a) => (a, dst),
            Rewrite::DstAddr(a) => (src, a),
            _ => (src, dst),
        };
        let (old_addr, new_addr) = match rewrite {
            Rewrite::SrcAddr(a) => (Some(src), a),
            Rewrite::DstAddr(a) => (Some(dst), a),
            _ => (None, src),
        };
        if let Some(old) = old_addr {
            let c = checksum::update32(ip.checksum(), old.octets(), new_addr.octets());
            ip.set_src_addr(new_src);
            ip.set_dst_addr(new_dst);
            ip.set_checksum(c);
        }
        let ip_csum = ip.checksum();
        let l4 = ip.payload_mut();
        if tcp {
            let mut t = TcpPacket::new_checked(l4).unwrap();
            let c = match rewrite {
                Rewrite::SrcAddr(_) | Rewrite::DstAddr(_) => checksum::update32(
                    t.checksum(), old_addr.unwrap().octets(), new_addr.octets()),
                Rewrite::SrcPort(p) => {
                    let c = checksum::update16(t.checksum(), t.src_port(), p);
                    t.set_src_port(p);
                    c
                }
                Rewrite::DstPort(p) => {
                    let c = checksum::update16(t.checksum(), t.dst_port(), p);
                    t.set_dst_port(p);
                    c
                }
            };
            t.set_checksum(c);
            prop_assert!(t.verify_checksum_v4(new_src, new_dst));
            t.fill_checksum_v4(new_src, new_dst);
            prop_assert_eq!(t.checksum(), c, "TCP incremental != recomputed");
        } else {
            let mut u = UdpPacket::new_checked(l4).unwrap();
            let stored = u.checksum();
            let c = match rewrite {
                Rewrite::SrcAddr(_) | Rewrite::DstAddr(_) => udp_update(stored, |s| {
                    checksum::update32(s, old_addr.unwrap().octets(), new_addr.octets())
                }),
                Rewrite::SrcPort(p) => {
                    let old = u.src_port();
                    u.set_src_port(p);
                    udp_update(stored, |s| checksum::update16(s, old, p))
                }
                Rewrite::DstPort(p) => {
                    let old = u.dst_port();
                    u.set_dst_port(p);
                    udp_update(stored, |s| checksum::update16(s, old, p))
                }
            };
            u.set_checksum(c);
            prop_assert!(u.verify_checksum_v4(new_src, new_dst));
            prop_assert!(c != 0);
            u.fill_checksum_v4(new_src, new_dst);
            prop_assert_eq!(u.checksum(), c, "UDP incremental != recomputed");
        }

        // IPv4 header: incremental result equals a full recomputation.
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        prop_assert!(ip.verify_checksum());
        ip.fill_checksum();
        prop_assert_eq!(ip.checksum(), ip_csum, "IPv4 incremental != recomputed");
    }

    /// TTL decrement (the forwarding hot path) via update16 on word 8..10.
    #[test]
    fn ttl_decrement_matches_recompute(
        src in any::<u32>(), dst in any::<u32>(), ttl in 1u8.., payload in vec(any::<u8>(), 0..16),
    ) {
        let mut bytes = build_packet(false, src.into(), dst.into(), (1, 2), 0, ttl, &payload);
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        let proto = u8::from(ip.next_header());
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update16(ip.checksum(), old, new);
        ip.set_hop_limit(ttl - 1);
        ip.set_checksum(c);
        prop_assert!(ip.verify_checksum());
        ip.fill_checksum();
        prop_assert_eq!(ip.checksum(), c);
    }

    /// Generic data: update16 on any word of data that is not all zero
    /// equals recomputation bit for bit.
    #[test]
    fn update16_generic(
        mut words in vec(any::<u16>(), 1..40), index in any::<prop::sample::Index>(), new in any::<u16>(),
    ) {
        words[0] |= 0x4500; // never all-zero data (see checksum module docs)
        let to_bytes = |w: &[u16]| w.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
        let full = !checksum::data(&to_bytes(&words));
        let i = index.index(words.len());
        let old = words[i];
        words[i] = new;
        if i == 0 { words[0] |= 0x4500; }
        let inc = checksum::update16(full, old, words[i]);
        prop_assert_eq!(inc, !checksum::data(&to_bytes(&words)));
    }
}

/// The biased strategies above must actually produce packets that pass
/// `new_checked`, or the "never panics" properties would test little.
#[test]
fn strategies_reach_valid_packets() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    fn count_ok(strategy: impl Strategy<Value = Vec<u8>>, check: impl Fn(&[u8]) -> bool) -> usize {
        let mut runner = TestRunner::deterministic();
        (0..2000)
            .filter(|_| check(&strategy.new_tree(&mut runner).unwrap().current()))
            .count()
    }

    let eth = count_ok(bytes_with(&[(12, &[0x88, 0xa8, 0, 0, 0x81, 0x00])]), |b| {
        EthernetFrame::new_checked(b).is_ok_and(|f| f.header_len() == 22)
    });
    let ipv4 = count_ok(bytes_with(&[(0, &[0x45, 0, 0])]), |b| {
        Ipv4Packet::new_checked(b).is_ok()
    });
    let ipv6 = count_ok(bytes_with(&[(0, &[0x60, 0, 0, 0, 0])]), |b| {
        Ipv6Packet::new_checked(b).is_ok()
    });
    let tcp = count_ok(bytes_with(&[(12, &[0x50])]), |b| {
        TcpPacket::new_checked(b).is_ok()
    });
    let udp = count_ok(bytes_with(&[(4, &[0])]), |b| {
        UdpPacket::new_checked(b).is_ok()
    });
    let ndp = count_ok(bytes_with(&[(24, &[1])]), |b| {
        let mut b = b.to_vec();
        if let Some(t) = b.first_mut() {
            *t = icmpv6::msg_type::NEIGHBOR_SOLICIT;
        }
        Icmpv6Packet::new_checked(&b[..]).is_ok_and(|p| p.ndisc_options().any(|o| o.is_ok()))
    });
    for (name, n) in [
        ("eth", eth),
        ("ipv4", ipv4),
        ("ipv6", ipv6),
        ("tcp", tcp),
        ("udp", udp),
        ("ndp", ndp),
    ] {
        assert!(n >= 50, "{name}: only {n} of 2000 inputs were valid");
    }
}
