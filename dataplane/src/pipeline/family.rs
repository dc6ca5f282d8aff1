//! What the Service path needs to know about an address family, and nothing more: the
//! protocols make the flow tuple, the NAT rewrite, the output and the error messages
//! different; the rest of the path (steer, svc-lookup, admission, endpoint choice, SNAT, flow
//! creation, reject, the UDP flush) is written once over [`Family`] and monomorphised for
//! [`V4`] and [`V6`], as the flow, service, neighbour and fragment tables already are.

use super::ip4_input::Ip4Meta;
use super::ip6_input::{Ip6Meta, HOP_LIMIT, IP6};
use super::service::Fragment;
use super::{Action, Worker, L2};
use crate::conntrack::{Dir, Flow, FlowKey, FlowTable, Tuple};
use crate::drop::DropReason;
use crate::frag::{DatagramId, FragId, FragId6, FragTable};
use crate::hash::{addr_hash, addr_hash6, flow_hash, flow_hash6};
use crate::mbuf::Mbuf;
use crate::nat::{self, Delta};
use crate::nat66::{self, FlowKey6};
use crate::neighbor::AffinityTable;
use crate::port::PortId;
use crate::route::{RouteAddr, RouteTable};
use crate::service::{Address, ServiceTable};
use crate::tables::Tables;
use crate::wire::{icmpv4, icmpv6, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};
use crate::wire::{EtherType, MacAddr, TcpPacket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address family's side of the Service path.
pub(super) trait Family {
    type Addr: Address + RouteAddr + Into<IpAddr>;
    type Key: Tuple;
    /// What the family's input stage found out about the packet (for the errors it answers).
    type Meta;
    /// A datagram's identity, which every one of its fragments carries.
    type Frag: DatagramId;

    /// The key of a packet from `src`:`sport` to `dst`:`dport`.
    fn key(src: Self::Addr, dst: Self::Addr, sport: u16, dport: u16, proto: u8) -> Self::Key;
    /// (source, destination, source port, destination port, protocol).
    fn parts(k: &Self::Key) -> (Self::Addr, Self::Addr, u16, u16, u8);
    /// The worker's flow and affinity tables of this family.
    fn tables(w: &mut Worker) -> (&mut FlowTable<Self::Key>, &mut AffinityTable<Self::Addr>);
    fn services(t: &Tables) -> &ServiceTable<Self::Addr>;
    /// The worker's table of first fragments' ports.
    fn frags(w: &mut Worker) -> &mut FragTable<Self::Frag>;
    /// The identity of the datagram `ident` from `src` to `dst`.
    fn frag_id(src: Self::Addr, dst: Self::Addr, proto: u8, ident: u32) -> Self::Frag;
    fn is_local(t: &Tables, a: Self::Addr) -> bool;
    fn addr_hash(a: Self::Addr) -> u64;
    fn flow_hash(k: &Self::Key) -> u64;
    fn routes(t: &Tables) -> &RouteTable<Self::Addr>;
    /// The kernel side's service loopback address in this family.
    fn loopback(t: &Tables) -> Option<Self::Addr>;
    /// kube-proxy's `clusterCIDR` prefixes in this family.
    fn cluster(t: &Tables) -> &[(Self::Addr, u8)];
    /// The link-layer address of the neighbour `nh` on `port`: a static one, else a learned
    /// one that has not expired.
    fn neighbour(w: &mut Worker, t: &Tables, port: PortId, nh: Self::Addr) -> Option<MacAddr>;
    const NO_ROUTE: DropReason;
    /// For a node address, with no host interface to take it to the kernel.
    const LOCAL: DropReason;
    /// A fragment the Service path cannot translate.
    const FRAGMENT: DropReason;
    /// A packet a flow claims with no hop left that gets no answer (an ICMP error).
    const HOP_EXCEEDED: DropReason;
    const ETHERTYPE: EtherType;
    /// Rewrites a packet of the flow from tuple `from` to `to` with the flow's `delta`, and
    /// decrements its TTL or hop limit (at least 2). `l4` is where its L4 header starts in
    /// the frame.
    fn rewrite(m: &mut Mbuf, l4: usize, from: &Self::Key, to: &Self::Key, delta: Delta);
    /// Rewrites the addresses of a later fragment of the flow (it has no L4 header) and
    /// decrements its TTL or hop limit.
    fn rewrite_fragment(m: &mut Mbuf, from: &Self::Key, to: &Self::Key);
    /// Translates an ICMP error about a packet of `flow` (travelling in direction `dir`) back
    /// for the side that sent the packet, decrements its TTL or hop limit (at least 2), and
    /// returns its new destination.
    fn translate_icmp_error(m: &mut Mbuf, flow: &Flow<Self::Key>, dir: Dir) -> Self::Addr;
    /// ICMP(v6) time exceeded about the packet, which arrived with no hop left.
    fn time_exceeded(
        w: &mut Worker,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Self::Meta,
    ) -> Action;
    /// Where the L4 header starts in the frame.
    fn l4(meta: &Self::Meta) -> usize;
    /// The TTL or hop limit as the packet arrived.
    fn hop(meta: &Self::Meta) -> u8;
    /// Whether the packet is a fragment, and which.
    fn fragment(meta: &Self::Meta) -> Fragment;
    /// What the input stage does with a packet no flow and no Service claims: deliver it to
    /// the node or forward it (`ip4_no_l4`, `ip6_input`).
    fn unclaimed(
        w: &mut Worker,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Self::Meta,
    ) -> Action;
    /// ip4-output / ip6-output for a packet the node rewrote or built.
    fn output(w: &mut Worker, t: &Tables, m: &mut Mbuf, dst: Self::Addr) -> Action;
    /// ICMP(v6) port unreachable from `from` (the Service address) about the packet.
    fn port_unreachable(
        w: &mut Worker,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Self::Meta,
        from: Self::Addr,
    ) -> Action;
    /// Makes the frame an IP packet from `src` to `dst` carrying 20 bytes of zeroed TCP
    /// header; returns where the TCP header starts.
    fn write_tcp_packet(m: &mut Mbuf, src: Self::Addr, dst: Self::Addr) -> usize;
    fn tcp_checksum(tcp: &mut TcpPacket<&mut [u8]>, src: Self::Addr, dst: Self::Addr);
}

/// IPv4: NAT44 ([`crate::nat`]).
pub(super) enum V4 {}
/// IPv6: NAT66 ([`crate::nat66`]).
pub(super) enum V6 {}

impl Family for V4 {
    type Addr = Ipv4Addr;
    type Key = FlowKey;
    type Meta = Ip4Meta;
    type Frag = FragId;
    const NO_ROUTE: DropReason = DropReason::Ip4NoRoute;
    const LOCAL: DropReason = DropReason::Ip4Local;
    const FRAGMENT: DropReason = DropReason::Ip4Fragment;
    const HOP_EXCEEDED: DropReason = DropReason::Ip4TtlExceeded;
    const ETHERTYPE: EtherType = EtherType::Ipv4;

    #[inline(always)]
    fn key(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }
    #[inline(always)]
    fn parts(k: &FlowKey) -> (Ipv4Addr, Ipv4Addr, u16, u16, u8) {
        (k.src, k.dst, k.sport, k.dport, k.proto)
    }
    #[inline(always)]
    fn tables(w: &mut Worker) -> (&mut FlowTable<FlowKey>, &mut AffinityTable<Ipv4Addr>) {
        (&mut w.ct, &mut w.affinity)
    }
    #[inline(always)]
    fn services(t: &Tables) -> &ServiceTable<Ipv4Addr> {
        &t.services
    }
    fn frags(w: &mut Worker) -> &mut FragTable<FragId> {
        &mut w.frags
    }
    fn frag_id(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ident: u32) -> FragId {
        // IPv4's identification is 16 bits; `ident` came from one.
        FragId {
            src,
            dst,
            proto,
            ident: ident as u16,
        }
    }
    #[inline(always)]
    fn is_local(t: &Tables, a: Ipv4Addr) -> bool {
        t.is_local(a)
    }
    #[inline(always)]
    fn addr_hash(a: Ipv4Addr) -> u64 {
        addr_hash(u32::from(a))
    }
    #[inline(always)]
    fn flow_hash(k: &FlowKey) -> u64 {
        flow_hash(
            u32::from(k.src),
            u32::from(k.dst),
            k.sport,
            k.dport,
            k.proto,
        )
    }
    #[inline(always)]
    fn routes(t: &Tables) -> &RouteTable {
        &t.routes
    }
    fn loopback(t: &Tables) -> Option<Ipv4Addr> {
        t.kernel.loopback4
    }
    fn cluster(t: &Tables) -> &[(Ipv4Addr, u8)] {
        &t.kernel.cluster4
    }
    #[inline(always)]
    fn neighbour(w: &mut Worker, t: &Tables, _port: PortId, nh: Ipv4Addr) -> Option<MacAddr> {
        match t.neighbors.get(&nh) {
            Some(mac) => Some(*mac),
            None => w.neigh.lookup(nh, w.now),
        }
    }
    #[inline(always)]
    fn rewrite(m: &mut Mbuf, _l4: usize, from: &FlowKey, to: &FlowKey, delta: Delta) {
        nat::forward_with(&mut m[L2..], from, to, delta);
    }
    fn rewrite_fragment(m: &mut Mbuf, from: &FlowKey, to: &FlowKey) {
        nat::forward_fragment(&mut m[L2..], from, to);
    }
    fn translate_icmp_error(m: &mut Mbuf, flow: &Flow, dir: Dir) -> Ipv4Addr {
        nat::translate_icmp_error(&mut m[L2..], flow, dir);
        nat::decrement_ttl(&mut m[L2..]);
        Ipv4Packet::new_unchecked(&m[L2..]).dst_addr()
    }
    #[inline(always)]
    fn l4(meta: &Ip4Meta) -> usize {
        meta.l4
    }
    #[inline(always)]
    fn hop(meta: &Ip4Meta) -> u8 {
        meta.ttl
    }
    #[inline(always)]
    fn fragment(meta: &Ip4Meta) -> Fragment {
        Fragment::of(meta.fragmented, meta.later_fragment)
    }
    #[inline(always)]
    fn unclaimed(w: &mut Worker, t: &Tables, m: &mut Mbuf, port: PortId, meta: &Ip4Meta) -> Action {
        w.ip4_no_l4(t, m, port, meta)
    }
    fn time_exceeded(
        w: &mut Worker,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip4Meta,
    ) -> Action {
        w.icmp_error(
            t,
            m,
            port,
            meta,
            (icmpv4::msg_type::TIME_EXCEEDED, 0),
            DropReason::Ip4TtlExceeded,
        )
    }
    #[inline(always)]
    fn output(w: &mut Worker, t: &Tables, m: &mut Mbuf, dst: Ipv4Addr) -> Action {
        w.route_output::<V4>(t, m, dst)
    }
    fn port_unreachable(
        w: &mut Worker,
        t: &Tables,
        m: &mut Mbuf,
        _port: PortId,
        meta: &Ip4Meta,
        from: Ipv4Addr,
    ) -> Action {
        w.icmp_error_from(
            t,
            m,
            meta,
            from,
            (
                icmpv4::msg_type::DST_UNREACHABLE,
                icmpv4::msg_code::PORT_UNREACHABLE,
            ),
            None,
        )
    }
    fn write_tcp_packet(m: &mut Mbuf, src: Ipv4Addr, dst: Ipv4Addr) -> usize {
        let repr = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: 20,
            hop_limit: 64,
        };
        m.set_len(L2 + 20 + 20);
        let buf = &mut m[L2..];
        buf.fill(0);
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut *buf));
        L2 + 20
    }
    fn tcp_checksum(tcp: &mut TcpPacket<&mut [u8]>, src: Ipv4Addr, dst: Ipv4Addr) {
        tcp.fill_checksum_v4(src, dst);
    }
}

impl Family for V6 {
    type Addr = Ipv6Addr;
    type Key = FlowKey6;
    type Meta = Ip6Meta;
    type Frag = FragId6;
    const NO_ROUTE: DropReason = DropReason::Ip6NoRoute;
    const LOCAL: DropReason = DropReason::Ip6Local;
    const FRAGMENT: DropReason = DropReason::Ip6Fragment;
    const HOP_EXCEEDED: DropReason = DropReason::Ip6HopLimitExceeded;
    const ETHERTYPE: EtherType = EtherType::Ipv6;

    #[inline(always)]
    fn key(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, proto: u8) -> FlowKey6 {
        FlowKey6 {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }
    #[inline(always)]
    fn parts(k: &FlowKey6) -> (Ipv6Addr, Ipv6Addr, u16, u16, u8) {
        (k.src, k.dst, k.sport, k.dport, k.proto)
    }
    #[inline(always)]
    fn tables(w: &mut Worker) -> (&mut FlowTable<FlowKey6>, &mut AffinityTable<Ipv6Addr>) {
        (&mut w.ct6, &mut w.affinity6)
    }
    #[inline(always)]
    fn services(t: &Tables) -> &ServiceTable<Ipv6Addr> {
        &t.services6
    }
    fn frags(w: &mut Worker) -> &mut FragTable<FragId6> {
        &mut w.frags6
    }
    fn frag_id(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, ident: u32) -> FragId6 {
        FragId6 {
            src,
            dst,
            proto,
            ident,
        }
    }
    #[inline(always)]
    fn is_local(t: &Tables, a: Ipv6Addr) -> bool {
        t.ip6.is_local(a)
    }
    #[inline(always)]
    fn addr_hash(a: Ipv6Addr) -> u64 {
        addr_hash6(u128::from(a))
    }
    #[inline(always)]
    fn flow_hash(k: &FlowKey6) -> u64 {
        flow_hash6(
            u128::from(k.src),
            u128::from(k.dst),
            k.sport,
            k.dport,
            k.proto,
        )
    }
    #[inline(always)]
    fn routes(t: &Tables) -> &RouteTable<Ipv6Addr> {
        &t.ip6.routes
    }
    fn loopback(t: &Tables) -> Option<Ipv6Addr> {
        t.kernel.loopback6
    }
    fn cluster(t: &Tables) -> &[(Ipv6Addr, u8)] {
        &t.kernel.cluster6
    }
    #[inline(always)]
    fn neighbour(w: &mut Worker, t: &Tables, port: PortId, nh: Ipv6Addr) -> Option<MacAddr> {
        match t.ip6.neighbors.get(&(port, nh)) {
            Some(mac) => Some(*mac),
            None => w.neigh6.lookup((port, nh), w.now),
        }
    }
    #[inline(always)]
    fn rewrite(m: &mut Mbuf, l4: usize, from: &FlowKey6, to: &FlowKey6, delta: Delta) {
        nat66::forward_with(&mut m[L2..], l4 - L2, from, to, delta);
    }
    fn rewrite_fragment(m: &mut Mbuf, _from: &FlowKey6, to: &FlowKey6) {
        nat66::forward_addresses(&mut m[L2..], to);
    }
    fn translate_icmp_error(m: &mut Mbuf, flow: &Flow<FlowKey6>, dir: Dir) -> Ipv6Addr {
        nat66::translate_icmp_error(&mut m[L2..], flow, dir)
    }
    #[inline(always)]
    fn l4(meta: &Ip6Meta) -> usize {
        L2 + usize::from(meta.l4)
    }
    #[inline(always)]
    fn hop(meta: &Ip6Meta) -> u8 {
        meta.hop
    }
    #[inline(always)]
    fn fragment(meta: &Ip6Meta) -> Fragment {
        match meta.fragment {
            Some((_, later)) => Fragment::of(true, later),
            None => Fragment::Whole,
        }
    }
    #[inline(always)]
    fn unclaimed(w: &mut Worker, t: &Tables, m: &mut Mbuf, port: PortId, meta: &Ip6Meta) -> Action {
        w.ip6_input(t, m, port, meta)
    }
    fn time_exceeded(
        w: &mut Worker,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        _meta: &Ip6Meta,
    ) -> Action {
        w.icmp6_error(
            t,
            m,
            port,
            (Ip6Meta::addrs(m).0, None),
            (icmpv6::msg_type::TIME_EXCEEDED, 0),
            Some(DropReason::Ip6HopLimitExceeded),
        )
    }
    #[inline(always)]
    fn output(w: &mut Worker, t: &Tables, m: &mut Mbuf, dst: Ipv6Addr) -> Action {
        w.ip6_output(t, m, dst)
    }
    fn port_unreachable(
        w: &mut Worker,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        _meta: &Ip6Meta,
        from: Ipv6Addr,
    ) -> Action {
        w.icmp6_error(
            t,
            m,
            port,
            (Ip6Meta::addrs(m).0, Some(from)),
            (
                icmpv6::msg_type::DST_UNREACHABLE,
                icmpv6::msg_code::PORT_UNREACHABLE,
            ),
            None,
        )
    }
    fn write_tcp_packet(m: &mut Mbuf, src: Ipv6Addr, dst: Ipv6Addr) -> usize {
        let repr = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: 20,
            hop_limit: HOP_LIMIT,
        };
        m.set_len(L2 + IP6 + 20);
        let buf = &mut m[L2..];
        buf.fill(0);
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut *buf));
        L2 + IP6
    }
    fn tcp_checksum(tcp: &mut TcpPacket<&mut [u8]>, src: Ipv6Addr, dst: Ipv6Addr) {
        tcp.fill_checksum_v6(&src, &dst);
    }
}
