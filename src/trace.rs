//! One-line, tcpdump-like descriptions of frames, for `nodegate run --trace`.

use dataplane::wire::{
    icmpv4, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, Icmpv4Packet, IpProtocol,
    Ipv4Packet, Ipv6Packet, SctpPacket, TcpPacket, UdpPacket,
};
use std::fmt::Write;

/// Describes a frame; never panics, whatever the bytes.
pub fn describe(frame: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("malformed Ethernet ({} bytes)", frame.len());
    };
    let mut s = format!("{} > {} ", eth.src_addr(), eth.dst_addr());
    match eth.ethertype() {
        EtherType::Arp => {
            match ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) {
                Ok(a) if a.operation == ArpOperation::Request => {
                    let _ = write!(
                        s,
                        "ARP who-has {} tell {}",
                        a.target_protocol_addr, a.source_protocol_addr
                    );
                }
                Ok(a) => {
                    let _ = write!(
                        s,
                        "ARP {} is-at {}",
                        a.source_protocol_addr, a.source_hardware_addr
                    );
                }
                Err(_) => s.push_str("ARP malformed"),
            }
        }
        EtherType::Ipv4 => describe_ipv4(eth.payload(), &mut s),
        EtherType::Ipv6 => match Ipv6Packet::new_checked(eth.payload()) {
            Ok(p) => {
                let _ = write!(
                    s,
                    "IPv6 {} > {} next {} hlim {}",
                    p.src_addr(),
                    p.dst_addr(),
                    p.next_header(),
                    p.hop_limit()
                );
            }
            Err(_) => s.push_str("IPv6 malformed"),
        },
        other => {
            let _ = write!(s, "ethertype {other}");
        }
    }
    s
}

fn describe_ipv4(bytes: &[u8], s: &mut String) {
    let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
        s.push_str("IPv4 malformed");
        return;
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let l4 = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => match TcpPacket::new_checked(l4) {
            Ok(t) => {
                let mut f = String::new();
                for (on, c) in [
                    (t.syn(), 'S'),
                    (t.fin(), 'F'),
                    (t.rst(), 'R'),
                    (t.psh(), 'P'),
                    (t.ack(), '.'),
                ] {
                    if on {
                        f.push(c);
                    }
                }
                let _ = write!(
                    s,
                    "TCP {src}:{} > {dst}:{} [{f}] len {}",
                    t.src_port(),
                    t.dst_port(),
                    t.payload().len()
                );
            }
            Err(_) => s.push_str("TCP malformed"),
        },
        IpProtocol::Udp => match UdpPacket::new_checked(l4) {
            Ok(u) => {
                let _ = write!(
                    s,
                    "UDP {src}:{} > {dst}:{} len {}",
                    u.src_port(),
                    u.dst_port(),
                    u.payload().len()
                );
            }
            Err(_) => s.push_str("UDP malformed"),
        },
        IpProtocol::Sctp => match SctpPacket::new_checked(l4) {
            Ok(p) => {
                let _ = write!(s, "SCTP {src}:{} > {dst}:{}", p.src_port(), p.dst_port());
            }
            Err(_) => s.push_str("SCTP malformed"),
        },
        IpProtocol::Icmp => match Icmpv4Packet::new_checked(l4) {
            Ok(i) => {
                let what = match (i.msg_type(), i.msg_code()) {
                    (icmpv4::msg_type::ECHO_REQUEST, _) => {
                        format!("echo request id {}", i.echo_ident())
                    }
                    (icmpv4::msg_type::ECHO_REPLY, _) => {
                        format!("echo reply id {}", i.echo_ident())
                    }
                    (icmpv4::msg_type::DST_UNREACHABLE, icmpv4::msg_code::PORT_UNREACHABLE) => {
                        "port unreachable".into()
                    }
                    (icmpv4::msg_type::DST_UNREACHABLE, c) => format!("unreachable code {c}"),
                    (icmpv4::msg_type::TIME_EXCEEDED, _) => "time exceeded".into(),
                    (t, c) => format!("type {t} code {c}"),
                };
                let _ = write!(s, "ICMP {src} > {dst} {what}");
            }
            Err(_) => s.push_str("ICMP malformed"),
        },
        other => {
            let _ = write!(s, "IPv4 {src} > {dst} proto {other}");
        }
    }
    let _ = write!(s, " ttl {}", ip.hop_limit());
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn describe_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = describe(&bytes);
        }
    }
}
