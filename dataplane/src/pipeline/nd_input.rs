//! **nd-input**: IPv6 neighbour discovery (RFC 4861), the mirror of `arp-input`.
//!
//! Reads an NS or NA that `ip6-input` found (to a solicited-node group, all nodes, or one of the
//! node's addresses) or a copy another worker made (`learn_only`). Sets the neighbour cache
//! (`neigh6`) and releases frames held for the advertised neighbour (`neighbour`). Next: the NA
//! answering a solicitation for a node address goes out of the port it came in (`tx`); an NA
//! to the node also goes up to the kernel (`host-punt`); anything else ends here. `send_ns` is
//! what `neighbour` calls to resolve an IPv6 next hop.

use super::{Action, Worker, L2};
use crate::drop::DropReason;
use crate::ip6::{is_link_local, is_solicited_node, multicast_mac, netmask6, ALL_NODES};
use crate::mbuf::Mbuf;
use crate::port::PortId;
use crate::tables::Tables;
use crate::wire::icmpv6::{msg_type, ndisc_flags, ndisc_option};
use crate::wire::{
    EtherType, EthernetFrame, Icmpv6Packet, IpProtocol, Ipv6Packet, Ipv6Repr, MacAddr,
};
use std::net::{IpAddr, Ipv6Addr};

/// Length of the fixed IPv6 header.
const IP6: usize = 40;
/// Length of an NS or NA with one link-layer address option.
const NDP_LEN: usize = 24 + 8;
/// NDP messages must arrive with this hop limit (RFC 4861 §7.1), and are sent with it.
const NDP_HOP_LIMIT: u8 = 255;

/// A parsed, validated NS or NA.
pub(super) struct Ndp {
    solicit: bool,
    src: Ipv6Addr,
    target: Ipv6Addr,
    /// Source link-layer option (NS) or target link-layer option (NA).
    lladdr: Option<MacAddr>,
    flags: u8,
    eth_src: MacAddr,
}

impl Worker {
    /// nd-input. `to_node`: the packet's destination is one of the node's unicast addresses.
    pub(super) fn nd_input(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        to_node: bool,
    ) -> Action {
        let ndp = match parse_ndp(&m[..]) {
            Ok(Some(n)) => n,
            Ok(None) => return Action::Drop(DropReason::Ip6Multicast),
            Err(r) => return Action::Drop(r),
        };
        let for_us = t.ip6.is_local(ndp.target);
        self.nd_learn(t, &ndp, in_port);
        if !ndp.solicit {
            // An NA to the node answers the kernel's own solicitation: it goes up too.
            return if to_node {
                self.punt_or(in_port, Action::Free)
            } else {
                Action::Free
            };
        }
        if !for_us {
            return Action::Drop(DropReason::Ip6NsNotForUs);
        }
        let Some(port_mac) = t.ports.get(usize::from(in_port)).map(|p| p.mac) else {
            return Action::Drop(DropReason::EthNotForUs);
        };
        // Neighbor advertisement (RFC 4861 §7.2.4): to the solicitor, or to all nodes when the
        // solicitation came from the unspecified address (duplicate address detection).
        let dad = ndp.src.is_unspecified();
        let (dst, eth_dst) = if dad {
            (ALL_NODES, multicast_mac(ALL_NODES))
        } else {
            (ndp.src, ndp.lladdr.unwrap_or(ndp.eth_src))
        };
        let flags = ndisc_flags::ROUTER
            | ndisc_flags::OVERRIDE
            | if dad { 0 } else { ndisc_flags::SOLICITED };
        let na = Ndp {
            solicit: false,
            src: ndp.target,
            target: ndp.target,
            lladdr: Some(port_mac),
            flags,
            eth_src: port_mac,
        };
        write_ndp(m, eth_dst, dst, &na);
        self.stats.nd_advertisements += 1;
        Action::Tx(in_port)
    }

    /// Learns from a copy of an NS or NA that another worker received, without answering.
    pub(super) fn nd_learn_only(&mut self, t: &Tables, frame: &[u8], in_port: PortId) {
        if t.ports.get(usize::from(in_port)).is_none() {
            return;
        }
        if let Ok(Some(ndp)) = parse_ndp(frame) {
            self.nd_learn(t, &ndp, in_port);
        }
    }

    /// Neighbour cache updates from a validated NS or NA (RFC 4861 §7.2.3, §7.2.5, simplified:
    /// no NUD states, an entry is fresh for the cache's lifetime), by the same rule as ARP's: a
    /// solicitation for us creates its sender's entry, an advertisement only refreshes an entry
    /// that exists or that a held frame waits for.
    fn nd_learn(&mut self, t: &Tables, ndp: &Ndp, port: PortId) {
        let (ip, Some(mac)) = (if ndp.solicit { ndp.src } else { ndp.target }, ndp.lladdr) else {
            return;
        };
        if ip.is_unspecified() || t.ip6.is_local(ip) || mac == MacAddr([0; 6]) {
            return;
        }
        // Only a neighbour of this link: link-local, or on one of the port's own prefixes (a
        // spoofed advertisement cannot plant an off-link address, as Linux's ndisc does not).
        let on_link = is_link_local(ip)
            || t.ip6
                .port_addresses
                .get(usize::from(port))
                .is_some_and(|list| {
                    list.iter()
                        .any(|&(a, len)| (u128::from(a) ^ u128::from(ip)) & netmask6(len) == 0)
                });
        if !on_link {
            return;
        }
        let waiting = self.is_waited_for(IpAddr::V6(ip), port);
        let known = self.neigh6.get((port, ip));
        let wanted = if ndp.solicit {
            t.ip6.is_local(ndp.target) || waiting || known.is_some()
        } else {
            // An NA without the override flag does not replace a different known address.
            let overrides = ndp.flags & ndisc_flags::OVERRIDE != 0;
            waiting || known.is_some_and(|k| k == mac || overrides)
        };
        if !wanted {
            return;
        }
        self.neigh6.learn((port, ip), mac, self.now);
        if waiting {
            self.release_held(t, IpAddr::V6(ip), port, mac);
        }
    }

    /// A neighbour solicitation for `nh` on `port`, to its solicited-node group.
    pub(super) fn send_ns(&mut self, t: &Tables, nh: Ipv6Addr, port: PortId) {
        let Some(pinfo) = t.ports.get(usize::from(port)) else {
            return;
        };
        let src = t
            .ip6
            .routes
            .lookup(nh)
            .filter(|h| h.port == port && !is_link_local(nh))
            .map(|h| h.src)
            .or_else(|| t.ip6.port_address(port));
        let Some(src) = src else {
            return;
        };
        let Some(mut m) = self.pool.alloc() else {
            self.count(DropReason::NoBuffer);
            return;
        };
        let dst = crate::ip6::solicited_node(nh);
        let ns = Ndp {
            solicit: true,
            src,
            target: nh,
            lladdr: Some(pinfo.mac),
            flags: 0,
            eth_src: pinfo.mac,
        };
        write_ndp(&mut m, multicast_mac(dst), dst, &ns);
        if self.enqueue_tx(port, m) {
            self.stats.nd_solicitations += 1;
        }
    }
}

/// Writes `ndp` as a whole frame, from `ndp.eth_src` to `eth_dst` and from `ndp.src` to `dst`,
/// with its one link-layer address option (source for an NS, target for an NA).
fn write_ndp(m: &mut Mbuf, eth_dst: MacAddr, dst: Ipv6Addr, ndp: &Ndp) {
    m.set_len(L2 + IP6 + NDP_LEN);
    super::write_eth(m, eth_dst, ndp.eth_src, EtherType::Ipv6);
    let repr = Ipv6Repr {
        src_addr: ndp.src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: NDP_LEN,
        hop_limit: NDP_HOP_LIMIT,
    };
    let buf = &mut m[L2..];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut *buf));
    let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[IP6..]);
    let (ty, option) = if ndp.solicit {
        (
            msg_type::NEIGHBOR_SOLICIT,
            ndisc_option::SOURCE_LINK_LAYER_ADDR,
        )
    } else {
        (
            msg_type::NEIGHBOR_ADVERT,
            ndisc_option::TARGET_LINK_LAYER_ADDR,
        )
    };
    icmp.set_msg_type(ty);
    icmp.set_msg_code(0);
    icmp.set_ndisc_flags(ndp.flags);
    icmp.set_ndisc_target(&ndp.target);
    if let Some(mac) = ndp.lladdr {
        icmp.set_ndisc_link_layer_option(option, mac);
    }
    icmp.fill_checksum(&ndp.src, &dst);
}

pub(super) fn is_ndp_type(icmp: &[u8]) -> bool {
    matches!(
        icmp.first(),
        Some(&(msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT))
    )
}

/// Whether an untagged Ethernet frame is an IPv6 neighbour solicitation or advertisement (the
/// frames a worker copies to the others so that every neighbour cache learns).
pub(super) fn is_ndp(frame: &[u8]) -> bool {
    let Some(ip) = frame.get(L2..) else {
        return false;
    };
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    eth.ethertype() == EtherType::Ipv6
        && Ipv6Packet::new_checked(ip)
            .is_ok_and(|p| p.next_header() == IpProtocol::Icmpv6 && is_ndp_type(p.payload()))
}

/// Parses and validates an NS or NA (RFC 4861 §7.1.1, §7.1.2). `Ok(None)` when the frame is not
/// one; an invalid one is `ip6-ndp-invalid`.
fn parse_ndp(frame: &[u8]) -> Result<Option<Ndp>, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthMalformed)?;
    let ip = Ipv6Packet::new_checked(&frame[L2..]).map_err(|_| DropReason::Ip6Malformed)?;
    if ip.next_header() != IpProtocol::Icmpv6 || !is_ndp_type(ip.payload()) {
        return Ok(None);
    }
    let invalid = DropReason::Ip6NdpInvalid;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let icmp = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| invalid)?;
    if ip.hop_limit() != NDP_HOP_LIMIT
        || icmp.msg_code() != 0
        || !icmp.verify_checksum(&src, &dst)
        || icmp.ndisc_options().any(|o| o.is_err())
    {
        return Err(invalid);
    }
    let target = icmp.ndisc_target();
    if target.is_multicast() || src.is_multicast() {
        return Err(invalid);
    }
    let solicit = icmp.msg_type() == msg_type::NEIGHBOR_SOLICIT;
    let (lladdr, flags) = if solicit {
        let sll = icmp.ndisc_link_layer_option(ndisc_option::SOURCE_LINK_LAYER_ADDR);
        if src.is_unspecified() && (!is_solicited_node(dst) || sll.is_some()) {
            return Err(invalid);
        }
        (sll, 0)
    } else {
        let flags = icmp.ndisc_flags();
        if src.is_unspecified() || (dst.is_multicast() && flags & ndisc_flags::SOLICITED != 0) {
            return Err(invalid);
        }
        (
            icmp.ndisc_link_layer_option(ndisc_option::TARGET_LINK_LAYER_ADDR),
            flags,
        )
    };
    if lladdr.is_some_and(|m| m.is_multicast()) {
        return Err(invalid);
    }
    Ok(Some(Ndp {
        solicit,
        src,
        target,
        lladdr,
        flags,
        eth_src: eth.src_addr(),
    }))
}

#[cfg(test)]
mod test {
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig};
    use crate::drop::DropReason;
    use crate::ip6::{multicast_mac, solicited_node, ALL_NODES};
    use crate::time::Instant;
    use crate::wire::icmpv6::{msg_type, ndisc_option};
    use crate::wire::{Icmpv6Packet, Ipv6Packet, MacAddr};
    use std::net::Ipv6Addr;

    #[test]
    fn test_ns_gets_na_reply_bytes() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let target = ip("fd00::1");
        let group = solicited_node(target);
        assert_eq!(group, ip("ff02::1:ff00:1"));
        let f = icmp6_frame(
            multicast_mac(group),
            HOST,
            ip("fe80::99"),
            group,
            255,
            &ns(target, Some(HOST)),
        );
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Action::Tx(0));
        #[rustfmt::skip]
        let mut expected: Vec<u8> = vec![
            // Ethernet: to the solicitor, from port 0, IPv6
            0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd,
            // IPv6: payload 32, ICMPv6, hop limit 255
            0x60, 0, 0, 0, 0, 32, 58, 255,
            0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99,
            // NA, code 0, checksum (filled below), flags R|S|O
            136, 0, 0, 0, 0xe0, 0, 0, 0,
            0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            // target link-layer address option
            2, 1, 0x02, 0, 0, 0, 0, 0x01,
        ];
        expected[L2 + IP6 + 2..L2 + IP6 + 4].copy_from_slice(&m[L2 + IP6 + 2..L2 + IP6 + 4]);
        assert_eq!(&m[..], &expected[..]);
        assert!(icmp6_checksum_ok(&m[L2..]));
        // The solicitor was learned.
        assert_eq!(
            rig.w.neigh6.lookup((0, ip("fe80::99")), Instant::ZERO),
            Some(HOST)
        );
        assert_eq!(rig.w.stats.nd_advertisements, 1);

        // Duplicate address detection: answered to all nodes, not solicited.
        let f = icmp6_frame(
            multicast_mac(group),
            HOST,
            Ipv6Addr::UNSPECIFIED,
            group,
            255,
            &ns(target, None),
        );
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Action::Tx(0));
        assert_eq!(&m[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(Ipv6Packet::new_unchecked(&m[L2..]).dst_addr(), ALL_NODES);
        assert_eq!(m[L2 + IP6 + 4], 0xa0);
        assert!(icmp6_checksum_ok(&m[L2..]));

        // Not ours, wrong hop limit, bad checksum.
        let f = icmp6_frame(
            multicast_mac(group),
            HOST,
            ip("fe80::99"),
            group,
            255,
            &ns(ip("fd00::2"), Some(HOST)),
        );
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Drop(DropReason::Ip6NsNotForUs)
        );
        let f = icmp6_frame(
            multicast_mac(group),
            HOST,
            ip("fe80::99"),
            group,
            64,
            &ns(target, Some(HOST)),
        );
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Drop(DropReason::Ip6NdpInvalid)
        );
        let mut f = icmp6_frame(
            multicast_mac(group),
            HOST,
            ip("fe80::99"),
            group,
            255,
            &ns(target, Some(HOST)),
        );
        f[L2 + IP6 + 2] ^= 1;
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Drop(DropReason::Ip6NdpInvalid)
        );
    }

    #[test]
    fn test_na_releases_held_frame() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let before = rig.pool.available();
        let f = udp6_frame(MAC1, "fd01::99", "fd00::5", 64, 20);
        let (v, m) = rig.input(&f, 1, Instant::ZERO);
        assert!(matches!(v, Action::Hold { .. }), "{v:?}");
        assert!(m.is_empty());
        rig.free(m);
        assert_eq!(rig.w.held(), 1);
        // One NS to the solicited-node group of fd00::5, from fd00::1.
        assert_eq!(rig.out.len(), 1);
        let (p, ns_frame) = rig.out.pop().unwrap();
        assert_eq!(p, 0);
        assert_eq!(&ns_frame[..6], &[0x33, 0x33, 0xff, 0, 0, 5]);
        assert_eq!(&ns_frame[6..12], &MAC0.0);
        let nsp = Ipv6Packet::new_checked(&ns_frame[L2..]).unwrap();
        assert_eq!(nsp.src_addr(), ip("fd00::1"));
        assert_eq!(nsp.dst_addr(), ip("ff02::1:ff00:5"));
        assert_eq!(nsp.hop_limit(), 255);
        let icmp = Icmpv6Packet::new_checked(nsp.payload()).unwrap();
        assert_eq!(icmp.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(icmp.ndisc_target(), ip("fd00::5"));
        assert_eq!(
            icmp.ndisc_link_layer_option(ndisc_option::SOURCE_LINK_LAYER_ADDR),
            Some(MAC0)
        );
        assert!(icmp6_checksum_ok(&ns_frame[L2..]));
        rig.free(ns_frame);
        // A second frame for the same neighbour does not solicit again.
        let (v, m) = rig.input(&f, 1, Instant::from_micros(10));
        assert!(matches!(v, Action::Hold { .. }), "{v:?}");
        rig.free(m);
        assert!(rig.out.is_empty());

        // The advertisement releases both, rewritten for fd00::5's MAC.
        let n5 = MacAddr([2, 0, 0, 0, 0, 5]);
        let adv = advert(ip("fd00::5"), n5);
        let (v, m) = rig.input(&adv, 0, Instant::from_micros(20));
        // Addressed to the node: learned here, then for the kernel's host port if there is one.
        assert_eq!(v, Action::Free);
        rig.free(m);
        assert_eq!(rig.w.held(), 0);
        assert_eq!(rig.out.len(), 2);
        let sent: Vec<_> = rig.out.drain(..).collect();
        for (p, out) in sent {
            assert_eq!(p, 0);
            assert_eq!(&out[..6], &n5.0);
            assert_eq!(&out[6..12], &MAC0.0);
            assert_eq!(out[L2 + 7], 63);
            assert_eq!(&out[L2 + IP6..], &f[L2 + IP6..]);
            rig.free(out);
        }
        assert_eq!(
            rig.w
                .neigh6
                .lookup((0, ip("fd00::5")), Instant::from_secs(1)),
            Some(n5)
        );
        // The next frame goes straight out.
        let (v, m) = rig.input(&f, 1, Instant::from_secs(1));
        assert_eq!(v, Action::Tx(0));
        rig.free(m);
        rig.free_all();
        assert_eq!(rig.pool.available(), before);
    }
}
