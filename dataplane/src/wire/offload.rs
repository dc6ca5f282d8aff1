//! Completing what a sender left to checksum offload.
//!
//! A frame handed over by the kernel with `CHECKSUM_PARTIAL` (AF_PACKET reports it as
//! `TP_STATUS_CSUMNOTREADY`; veth and some NICs produce it when the sender offloads its TX
//! checksum) carries only the pseudo-header sum in its TCP or UDP checksum field. Forwarded as
//! is, the receiver would drop it; [`complete_l4_checksum`] computes the real checksum.

use super::ethernet::EthernetFrame;
use super::ipv4::Ipv4Packet;
use super::ipv6::Ipv6Packet;
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::{EtherType, IpProtocol};

/// Computes the full TCP or UDP checksum of an IPv4 or IPv6 frame (behind up to two VLAN
/// tags) in place. Returns false, changing nothing, for anything else (other protocols, IPv4
/// fragments, IPv6 extension headers, malformed frames).
pub fn complete_l4_checksum(frame: &mut [u8]) -> bool {
    let Ok(mut eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    match eth.payload_ethertype() {
        EtherType::Ipv4 => {
            let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
                return false;
            };
            if ip.more_frags() || ip.frag_offset() != 0 {
                return false;
            }
            let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
            match proto {
                IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload_mut()) {
                    Ok(mut tcp) => tcp.fill_checksum_v4(src, dst),
                    Err(_) => return false,
                },
                IpProtocol::Udp => match UdpPacket::new_checked(ip.payload_mut()) {
                    Ok(mut udp) => udp.fill_checksum_v4(src, dst),
                    Err(_) => return false,
                },
                _ => return false,
            }
        }
        EtherType::Ipv6 => {
            let Ok(mut ip) = Ipv6Packet::new_checked(eth.payload_mut()) else {
                return false;
            };
            let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
            match proto {
                IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload_mut()) {
                    Ok(mut tcp) => tcp.fill_checksum_v6(&src, &dst),
                    Err(_) => return false,
                },
                IpProtocol::Udp => match UdpPacket::new_checked(ip.payload_mut()) {
                    Ok(mut udp) => udp.fill_checksum_v6(&src, &dst),
                    Err(_) => return false,
                },
                _ => return false,
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod test {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(4000, 53);
        let payload = b"partial checksum";
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn test_partial_udp_checksum_is_completed() {
        let good = udp_frame();
        let mut partial = good.clone();
        // What a sender with TX offload leaves: only the (folded, uncomplemented) pseudo-header sum.
        partial[40] = 0x12;
        partial[41] = 0x34;
        assert!(complete_l4_checksum(&mut partial));
        assert_eq!(partial, good);
    }

    #[test]
    fn test_tcp_v6_and_vlan_frames_are_completed() {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .single_vlan(7u16.try_into().unwrap())
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(1234, 80, 1, 1000);
        let mut good = Vec::new();
        b.write(&mut good, b"hello").unwrap();
        let mut partial = good.clone();
        let at = 18 + 40 + 16; // Ethernet + tag, IPv6 header, checksum offset in TCP
        partial[at] ^= 0xff;
        assert!(complete_l4_checksum(&mut partial));
        assert_eq!(partial, good);
    }

    #[test]
    fn test_other_frames_are_left_alone() {
        let mut arp = vec![0xffu8; 14];
        arp[12] = 0x08;
        arp[13] = 0x06;
        let before = arp.clone();
        assert!(!complete_l4_checksum(&mut arp));
        assert_eq!(arp, before);
        assert!(!complete_l4_checksum(&mut [0u8; 3]));
    }
}
