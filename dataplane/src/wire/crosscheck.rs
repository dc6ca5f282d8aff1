//! Cross-checks against etherparse, an independent implementation: packets
//! built by etherparse are read with our views, and packets emitted with our
//! reprs and setters are parsed (and their checksums recomputed) by
//! etherparse.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader, VlanHeader};
use proptest::collection::vec;
use proptest::prelude::*;

use super::ethernet::{EthernetFrame, EthernetRepr, MacAddr};
use super::icmpv4::Icmpv4Packet;
use super::icmpv6::Icmpv6Packet;
use super::ipv4::{Ipv4Packet, Ipv4Repr};
use super::ipv6::{Ipv6Packet, Ipv6Repr};
use super::tcp::{self, TcpPacket};
use super::udp::UdpPacket;
use super::{EtherType, IpProtocol};

fn ipv4_of(h: &NetHeaders) -> &etherparse::Ipv4Header {
    match h {
        NetHeaders::Ipv4(h, _) => h,
        _ => panic!("expected IPv4"),
    }
}

fn ipv6_of(h: &NetHeaders) -> &etherparse::Ipv6Header {
    match h {
        NetHeaders::Ipv6(h, _) => h,
        _ => panic!("expected IPv6"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// etherparse builds Ethernet/IPv4/TCP; our views read every field.
    #[test]
    fn etherparse_ipv4_tcp_to_views(
        macs in any::<([u8; 6], [u8; 6])>(),
        addrs in any::<([u8; 4], [u8; 4])>(),
        ttl in any::<u8>(),
        ports in any::<(u16, u16)>(),
        seq in any::<u32>(), ack in any::<u32>(), win in any::<u16>(),
        flags in any::<(bool, bool, bool, bool)>(),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let mut b = PacketBuilder::ethernet2(macs.0, macs.1)
            .ipv4(addrs.0, addrs.1, ttl)
            .tcp(ports.0, ports.1, seq, win)
            .ack(ack);
        if flags.0 { b = b.syn(); }
        if flags.1 { b = b.fin(); }
        if flags.2 { b = b.psh(); }
        if flags.3 { b = b.rst(); }
        let mut bytes = Vec::new();
        b.write(&mut bytes, &payload).unwrap();
        let hdrs = PacketHeaders::from_ethernet_slice(&bytes).unwrap();

        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(frame.src_addr(), MacAddr(macs.0));
        prop_assert_eq!(frame.dst_addr(), MacAddr(macs.1));
        prop_assert_eq!(frame.ethertype(), EtherType::Ipv4);
        prop_assert_eq!(frame.vlan_id(), None);

        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let eh = ipv4_of(hdrs.net.as_ref().unwrap());
        prop_assert!(ip.verify_checksum());
        prop_assert_eq!(ip.checksum(), eh.header_checksum);
        prop_assert_eq!(ip.checksum(), eh.calc_header_checksum());
        prop_assert_eq!(ip.header_len(), eh.header_len());
        prop_assert_eq!(ip.total_len(), eh.total_len);
        prop_assert_eq!(ip.ident(), eh.identification);
        prop_assert_eq!(ip.dont_frag(), eh.dont_fragment);
        prop_assert_eq!(ip.more_frags(), eh.more_fragments);
        prop_assert_eq!(ip.frag_offset(), eh.fragment_offset.value() * 8);
        prop_assert_eq!(ip.hop_limit(), eh.time_to_live);
        prop_assert_eq!(u8::from(ip.next_header()), eh.protocol.0);
        prop_assert_eq!(ip.src_addr(), Ipv4Addr::from(eh.source));
        prop_assert_eq!(ip.dst_addr(), Ipv4Addr::from(eh.destination));
        prop_assert_eq!(ip.dscp(), eh.dscp.value());
        prop_assert_eq!(ip.ecn(), eh.ecn.value());

        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        let TransportHeader::Tcp(et) = hdrs.transport.as_ref().unwrap() else { panic!() };
        prop_assert_eq!(t.src_port(), et.source_port);
        prop_assert_eq!(t.dst_port(), et.destination_port);
        prop_assert_eq!(t.seq_number(), et.sequence_number);
        prop_assert_eq!(t.ack_number(), et.acknowledgment_number);
        prop_assert_eq!(t.header_len(), et.header_len());
        prop_assert_eq!(
            (t.fin(), t.syn(), t.rst(), t.psh(), t.ack(), t.urg(), t.ece(), t.cwr()),
            (et.fin, et.syn, et.rst, et.psh, et.ack, et.urg, et.ece, et.cwr)
        );
        prop_assert_eq!(t.window_len(), et.window_size);
        prop_assert_eq!(t.checksum(), et.checksum);
        prop_assert_eq!(t.urgent_at(), et.urgent_pointer);
        prop_assert_eq!(t.payload(), &payload[..]);
        prop_assert!(t.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
    }

    /// etherparse builds double-tagged Ethernet/IPv6/UDP; our views read it.
    #[test]
    fn etherparse_qinq_ipv6_udp_to_views(
        macs in any::<([u8; 6], [u8; 6])>(),
        vids in (0u16..4096, 0u16..4096),
        addrs in any::<([u8; 16], [u8; 16])>(),
        hop in any::<u8>(),
        ports in any::<(u16, u16)>(),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let b = PacketBuilder::ethernet2(macs.0, macs.1)
            .double_vlan(vids.0.try_into().unwrap(), vids.1.try_into().unwrap())
            .ipv6(addrs.0, addrs.1, hop)
            .udp(ports.0, ports.1);
        let mut bytes = Vec::new();
        b.write(&mut bytes, &payload).unwrap();
        let hdrs = PacketHeaders::from_ethernet_slice(&bytes).unwrap();

        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let Some(VlanHeader::Double(ev)) = hdrs.vlan.as_ref() else { panic!() };
        prop_assert_eq!(u16::from(frame.ethertype()), {
            let raw = [bytes[12], bytes[13]];
            u16::from_be_bytes(raw)
        });
        prop_assert!(matches!(frame.ethertype(), EtherType::Vlan | EtherType::QinQ));
        prop_assert_eq!(frame.vlan_id(), Some(ev.outer.vlan_id.value()));
        prop_assert_eq!(frame.header_len(), 22);
        prop_assert_eq!(frame.payload_ethertype(), EtherType::Ipv6);

        let ip = Ipv6Packet::new_checked(frame.payload()).unwrap();
        let eh = ipv6_of(hdrs.net.as_ref().unwrap());
        prop_assert_eq!(ip.traffic_class(), eh.traffic_class);
        prop_assert_eq!(ip.flow_label(), eh.flow_label.value());
        prop_assert_eq!(ip.payload_len(), eh.payload_length);
        prop_assert_eq!(u8::from(ip.next_header()), eh.next_header.0);
        prop_assert_eq!(ip.hop_limit(), eh.hop_limit);
        prop_assert_eq!(ip.src_addr(), Ipv6Addr::from(eh.source));
        prop_assert_eq!(ip.dst_addr(), Ipv6Addr::from(eh.destination));

        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        let TransportHeader::Udp(eu) = hdrs.transport.as_ref().unwrap() else { panic!() };
        prop_assert_eq!(u.src_port(), eu.source_port);
        prop_assert_eq!(u.dst_port(), eu.destination_port);
        prop_assert_eq!(u.len(), eu.length);
        prop_assert_eq!(u.checksum(), eu.checksum);
        prop_assert_eq!(u.payload(), &payload[..]);
        prop_assert!(u.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()));
    }

    /// We emit Ethernet/IPv4/UDP|TCP; etherparse parses it and agrees on
    /// every field and on the checksums it recomputes itself.
    #[test]
    fn views_ipv4_to_etherparse(
        macs in any::<([u8; 6], [u8; 6])>(),
        addrs in any::<(u32, u32)>(),
        ttl in any::<u8>(),
        ports in any::<(u16, u16)>(),
        seq in any::<u32>(),
        use_tcp in any::<bool>(),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let (src, dst) = (Ipv4Addr::from(addrs.0), Ipv4Addr::from(addrs.1));
        let eth = EthernetRepr {
            src_addr: MacAddr(macs.0),
            dst_addr: MacAddr(macs.1),
            ethertype: EtherType::Ipv4,
        };
        let l4_len = if use_tcp { tcp::HEADER_LEN } else { super::udp::HEADER_LEN } + payload.len();
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: if use_tcp { IpProtocol::Tcp } else { IpProtocol::Udp },
            payload_len: l4_len,
            hop_limit: ttl,
        };
        // zeroed: the TCP reserved bits are not written by any setter
        let mut bytes = vec![0; eth.buffer_len() + ip.buffer_len() + l4_len];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        eth.emit(&mut frame);
        let mut ipp = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut ipp);
        if use_tcp {
            let mut t = TcpPacket::new_unchecked(ipp.payload_mut());
            t.set_src_port(ports.0);
            t.set_dst_port(ports.1);
            t.set_seq_number(seq);
            t.set_ack_number(seq ^ 0x5555_5555);
            t.set_header_len(tcp::HEADER_LEN);
            t.set_flags(tcp::flags::SYN | tcp::flags::ACK);
            t.set_window_len(1024);
            t.set_urgent_at(0);
            t.payload_mut().copy_from_slice(&payload);
            t.fill_checksum_v4(src, dst);
        } else {
            let mut u = UdpPacket::new_unchecked(ipp.payload_mut());
            u.set_src_port(ports.0);
            u.set_dst_port(ports.1);
            u.set_len(l4_len as u16);
            u.payload_mut().copy_from_slice(&payload);
            u.fill_checksum_v4(src, dst);
        }

        let hdrs = PacketHeaders::from_ethernet_slice(&bytes).unwrap();
        let etherparse::LinkHeader::Ethernet2(el) = hdrs.link.as_ref().unwrap() else { panic!() };
        prop_assert_eq!(el.source, macs.0);
        prop_assert_eq!(el.destination, macs.1);
        let eh = ipv4_of(hdrs.net.as_ref().unwrap());
        prop_assert_eq!(eh.header_checksum, eh.calc_header_checksum());
        prop_assert_eq!(eh.source, src.octets());
        prop_assert_eq!(eh.destination, dst.octets());
        prop_assert_eq!(eh.time_to_live, ttl);
        prop_assert!(eh.dont_fragment);
        prop_assert_eq!(usize::from(eh.total_len), 20 + l4_len);
        prop_assert_eq!(hdrs.payload.slice(), &payload[..]);
        match hdrs.transport.as_ref().unwrap() {
            TransportHeader::Tcp(et) => {
                prop_assert!(use_tcp);
                prop_assert_eq!((et.source_port, et.destination_port), ports);
                prop_assert_eq!(et.sequence_number, seq);
                prop_assert!(et.syn && et.ack && !et.fin);
                prop_assert_eq!(et.checksum, et.calc_checksum_ipv4(eh, &payload).unwrap());
            }
            TransportHeader::Udp(eu) => {
                prop_assert!(!use_tcp);
                prop_assert_eq!((eu.source_port, eu.destination_port), ports);
                prop_assert_eq!(usize::from(eu.length), l4_len);
                prop_assert_eq!(eu.checksum, eu.calc_checksum_ipv4(eh, &payload).unwrap());
            }
            _ => panic!("unexpected transport"),
        }

        // Round trip through our own reprs.
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&frame), Ok(eth));
        let ipp = Ipv4Packet::new_checked(frame.payload()).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&ipp), Ok(ip));
    }

    /// We emit IPv6/UDP and IPv6/ICMPv6 echo; etherparse agrees.
    #[test]
    fn views_ipv6_to_etherparse(
        addrs in any::<(u128, u128)>(),
        hop in any::<u8>(),
        ports in any::<(u16, u16)>(),
        echo in any::<(u16, u16)>(),
        use_icmp in any::<bool>(),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let (src, dst) = (Ipv6Addr::from(addrs.0), Ipv6Addr::from(addrs.1));
        let l4_len = 8 + payload.len();
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: if use_icmp { IpProtocol::Icmpv6 } else { IpProtocol::Udp },
            payload_len: l4_len,
            hop_limit: hop,
        };
        let mut bytes = vec![0xa5; ip.buffer_len() + l4_len];
        let mut ipp = Ipv6Packet::new_unchecked(&mut bytes[..]);
        ip.emit(&mut ipp);
        if use_icmp {
            let mut p = Icmpv6Packet::new_unchecked(ipp.payload_mut());
            p.set_msg_type(super::icmpv6::msg_type::ECHO_REQUEST);
            p.set_msg_code(0);
            p.set_echo_ident(echo.0);
            p.set_echo_seq_no(echo.1);
            p.data_mut().copy_from_slice(&payload);
            p.fill_checksum(&src, &dst);
        } else {
            let mut u = UdpPacket::new_unchecked(ipp.payload_mut());
            u.set_src_port(ports.0);
            u.set_dst_port(ports.1);
            u.set_len(l4_len as u16);
            u.payload_mut().copy_from_slice(&payload);
            u.fill_checksum_v6(&src, &dst);
        }
        let hdrs = PacketHeaders::from_ip_slice(&bytes).unwrap();
        let eh = ipv6_of(hdrs.net.as_ref().unwrap());
        prop_assert_eq!(eh.source, src.octets());
        prop_assert_eq!(eh.destination, dst.octets());
        prop_assert_eq!(eh.hop_limit, hop);
        prop_assert_eq!(usize::from(eh.payload_length), l4_len);
        match hdrs.transport.as_ref().unwrap() {
            TransportHeader::Icmpv6(ei) => {
                prop_assert!(use_icmp);
                prop_assert_eq!(
                    ei.icmp_type,
                    etherparse::Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader { id: echo.0, seq: echo.1 })
                );
                prop_assert_eq!(ei.checksum, ei.icmp_type.calc_checksum(eh.source, eh.destination, &payload).unwrap());
            }
            TransportHeader::Udp(eu) => {
                prop_assert!(!use_icmp);
                prop_assert_eq!((eu.source_port, eu.destination_port), ports);
                prop_assert_eq!(eu.checksum, eu.calc_checksum_ipv6(eh, &payload).unwrap());
            }
            _ => panic!("unexpected transport"),
        }
        let ipp = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&ipp), Ok(ip));
    }

    /// ICMPv4 echo both ways.
    #[test]
    fn icmpv4_echo_both_ways(
        addrs in any::<([u8; 4], [u8; 4])>(),
        echo in any::<(u16, u16)>(),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let b = PacketBuilder::ipv4(addrs.0, addrs.1, 64).icmpv4_echo_request(echo.0, echo.1);
        let mut bytes = Vec::new();
        b.write(&mut bytes, &payload).unwrap();
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let p = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        prop_assert_eq!(p.msg_type(), super::icmpv4::msg_type::ECHO_REQUEST);
        prop_assert_eq!((p.echo_ident(), p.echo_seq_no()), echo);
        prop_assert_eq!(p.data(), &payload[..]);
        prop_assert!(p.verify_checksum());

        // and emit our own reply, parsed by etherparse
        let mut out = vec![0u8; 8 + payload.len()];
        let mut r = Icmpv4Packet::new_unchecked(&mut out[..]);
        r.set_msg_type(super::icmpv4::msg_type::ECHO_REPLY);
        r.set_msg_code(0);
        r.set_echo_ident(echo.0);
        r.set_echo_seq_no(echo.1);
        r.data_mut().copy_from_slice(&payload);
        r.fill_checksum();
        let s = etherparse::Icmpv4Slice::from_slice(&out).unwrap();
        prop_assert_eq!(
            s.icmp_type(),
            etherparse::Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: echo.0, seq: echo.1 })
        );
        prop_assert_eq!(s.checksum(), s.icmp_type().calc_checksum(&payload));
    }
}

/// A single-tagged frame built by etherparse.
#[test]
fn test_single_vlan() {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(100.try_into().unwrap())
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000);
    let mut bytes = Vec::new();
    b.write(&mut bytes, b"hello").unwrap();
    let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
    assert_eq!(frame.ethertype(), EtherType::Vlan);
    assert_eq!(frame.vlan_id(), Some(100));
    assert_eq!(frame.header_len(), 18);
    assert_eq!(frame.payload_ethertype(), EtherType::Ipv4);
    let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(u.payload(), b"hello");
    assert!(u.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
}
