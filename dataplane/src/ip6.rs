//! IPv6 forwarding (RFC 8200), ICMPv6 (RFC 4443) and neighbour discovery (RFC 4861).
//!
//! ```text
//!  ip6-input ─┬─ multicast dst ─► NS (solicited-node) / NA (all-nodes) ─► ndp, else drop
//!             ├─ our address ──► NS ─► NA reply / NA ─► learn / echo ─► reply / else drop
//!             └─ forward ──────► hop limit (ICMPv6 time exceeded) ─► ip6-lookup ─► neighbour
//!                                          ─┬─► tx
//!                                           └─► hold + NS to the solicited-node group
//! ```
//!
//! This module routes; IPv6 Service traffic (NAT66, its flow table and steering) is claimed
//! before it by the worker's `svc6` stage, which sends what it translates through
//! [`Ip6State::output_to`]. The immutable part ([`Ip6Tables`]) lives in
//! [`Tables::ip6`](crate::tables::Tables); the learned part ([`Ip6State`]: neighbour cache, hold
//! queue, ICMPv6 rate limit, counters) lives in each worker. Like the rest of the worker nothing
//! here reads a clock or allocates after start-up: buffers come from the caller's pool.

use crate::drop::DropReason;
use crate::lpm::{Bits, PrefixTable};
use crate::mbuf::{Mbuf, PoolCache};
use crate::neighbor::NeighborCache;
use crate::port::PortId;
use crate::route::RouteError;
use crate::tables::Tables;
use crate::time::Instant;
use crate::wire::icmpv6::{self, msg_type, ndisc_flags, ndisc_option};
use crate::wire::{
    EtherType, EthernetFrame, Icmpv6Packet, IpProtocol, Ipv6Packet, Ipv6Repr, MacAddr,
};
use core::time::Duration;
use hashbrown::HashMap;
use std::net::Ipv6Addr;

/// Length of an untagged Ethernet header.
const L2: usize = 14;
/// Length of the fixed IPv6 header.
const IP6: usize = 40;
/// The IPv6 minimum link MTU: an ICMPv6 error never exceeds it (RFC 4443 §2.4 (c)).
pub const MIN_MTU: usize = 1280;
/// Bytes of the offending packet an ICMPv6 error quotes.
pub const ICMP6_QUOTE_MAX: usize = MIN_MTU - IP6 - 8;
/// Length of an NS or NA with one link-layer address option.
const NDP_LEN: usize = 24 + 8;
/// NDP messages must arrive with this hop limit (RFC 4861 §7.1), and are sent with it.
const NDP_HOP_LIMIT: u8 = 255;
/// Hop limit of packets the node originates (echo replies, errors).
const HOP_LIMIT: u8 = 64;
/// Neighbour solicitation retry period and give-up time for held frames.
pub const NS_RETRY: Duration = Duration::from_secs(1);
pub const NS_GIVE_UP: Duration = Duration::from_secs(3);
/// `ff02::1`, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

// ---- routing -----------------------------------------------------------------------------------

/// Where a routed IPv6 packet goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop6 {
    pub port: PortId,
    /// Gateway, or `None` for a connected destination.
    pub via: Option<Ipv6Addr>,
    /// The port address used as source for traffic the node originates on this route.
    pub src: Ipv6Addr,
}

impl NextHop6 {
    /// The address whose link-layer address the frame must be sent to.
    pub fn neighbor_for(&self, dst: Ipv6Addr) -> Ipv6Addr {
        self.via.unwrap_or(dst)
    }
}

/// A port's IPv6 address with its prefix length: gives a connected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAddress6 {
    pub port: PortId,
    pub address: Ipv6Addr,
    pub prefix_len: u8,
}

/// A configured IPv6 static route, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute6 {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub via: Option<Ipv6Addr>,
    pub port: Option<PortId>,
}

/// A configured static IPv6 neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticNeighbor6 {
    pub address: Ipv6Addr,
    pub mac: MacAddr,
    /// The port the neighbour is on; required for link-local addresses (the same `fe80::1`
    /// can be a different router on every link), else the port of its connected prefix.
    pub port: Option<PortId>,
}

/// Netmask for an IPv6 prefix length (0..=128).
pub fn netmask6(prefix_len: u8) -> u128 {
    u128::mask(prefix_len)
}

/// `fe80::/10`.
pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node multicast group of `a` (`ff02::1:ffXX:XXXX`, RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `a` is a solicited-node multicast group.
pub fn is_solicited_node(a: Ipv6Addr) -> bool {
    let o = a.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// The Ethernet group address of an IPv6 multicast address (`33:33:` + its last 32 bits).
pub fn multicast_mac(a: Ipv6Addr) -> MacAddr {
    let o = a.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// An immutable IPv6 longest-prefix-match table (same scheme as [`crate::route::RouteTable`]:
/// one hash probe per distinct prefix length present, longest first).
#[derive(Debug, Clone, Default)]
pub struct Route6Table {
    prefixes: PrefixTable<u128, NextHop6>,
}

impl Route6Table {
    /// Builds the table from port addresses (connected routes) and static routes. A route `via`
    /// a gateway leaves through the port whose connected prefix holds it; a link-local gateway
    /// needs the port named. Two static routes for one prefix are an error (`index` is the
    /// route's position in `statics`).
    pub fn build(
        addrs: &[PortAddress6],
        statics: &[StaticRoute6],
    ) -> Result<Route6Table, RouteError> {
        let mut table = Route6Table::default();
        for a in addrs {
            let hop = NextHop6 {
                port: a.port,
                via: None,
                src: a.address,
            };
            table.insert(a.address, a.prefix_len, hop);
        }
        let connected = table.clone();
        let port_src = |port: PortId| {
            // Prefer a global address as the source of what we originate on a port.
            let mut on_port = addrs.iter().filter(|a| a.port == port);
            let first = on_port.clone().next().map(|a| a.address);
            on_port
                .find(|a| !is_link_local(a.address))
                .map(|a| a.address)
                .or(first)
        };
        let mut seen: Vec<(u128, u8)> = Vec::new();
        for (index, r) in statics.iter().enumerate() {
            let err = |reason: String| RouteError { index, reason };
            if r.prefix_len > 128 {
                return Err(err(format!("prefix length {} > 128", r.prefix_len)));
            }
            let key = (u128::from(r.prefix) & netmask6(r.prefix_len), r.prefix_len);
            if seen.contains(&key) {
                return Err(err(format!(
                    "duplicate route for {}/{}",
                    Ipv6Addr::from(key.0),
                    r.prefix_len
                )));
            }
            seen.push(key);
            let hop = match (r.via, r.port) {
                (Some(via), Some(port)) if is_link_local(via) => {
                    let Some(src) = port_src(port) else {
                        return Err(err("the route's port has no IPv6 address".into()));
                    };
                    NextHop6 {
                        port,
                        via: Some(via),
                        src,
                    }
                }
                (Some(via), _) if is_link_local(via) => {
                    return Err(err(format!(
                        "the link-local gateway {via} needs the route's port named"
                    )))
                }
                (Some(via), port) => {
                    let Some(c) = connected.lookup(via) else {
                        return Err(err(format!(
                            "gateway {via} is not on any port's connected prefix"
                        )));
                    };
                    if port.is_some_and(|p| p != c.port) {
                        return Err(err(format!(
                            "gateway {via} is reached through another port than the one named"
                        )));
                    }
                    NextHop6 {
                        port: c.port,
                        via: Some(via),
                        src: c.src,
                    }
                }
                (None, Some(port)) => {
                    let Some(src) = port_src(port) else {
                        return Err(err("the route's port has no IPv6 address".into()));
                    };
                    NextHop6 {
                        port,
                        via: None,
                        src,
                    }
                }
                (None, None) => return Err(err("a route needs `via` or `port`".into())),
            };
            table.insert(r.prefix, r.prefix_len, hop);
        }
        Ok(table)
    }

    fn insert(&mut self, prefix: Ipv6Addr, len: u8, hop: NextHop6) {
        self.prefixes.insert(u128::from(prefix), len, hop);
    }

    /// The longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv6Addr) -> Option<&NextHop6> {
        self.prefixes.lookup(u128::from(dst))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---- tables ------------------------------------------------------------------------------------

/// What an [`Ip6TablesError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip6Item {
    Route,
    Neighbor,
}

/// Why the IPv6 tables could not be built; `index` is the position of the route or neighbour in
/// the list given to [`Ip6Tables::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip6TablesError {
    pub item: Ip6Item,
    pub index: usize,
    pub reason: String,
}

impl core::fmt::Display for Ip6TablesError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self.item {
            Ip6Item::Route => "IPv6 route",
            Ip6Item::Neighbor => "IPv6 neighbor",
        };
        write!(f, "{what} {}: {}", self.index, self.reason)
    }
}

impl std::error::Error for Ip6TablesError {}

/// The node's IPv6 configuration as the workers read it (part of [`Tables`]).
#[derive(Debug, Clone, Default)]
pub struct Ip6Tables {
    pub routes: Route6Table,
    /// Static neighbours; learned ones live in each worker's [`Ip6State`].
    /// Static neighbours by (port, address): link-local addresses repeat across links.
    pub neighbors: HashMap<(PortId, Ipv6Addr), MacAddr>,
    /// IPv6 addresses with prefix lengths, per port (index = port id).
    pub port_addresses: Vec<Vec<(Ipv6Addr, u8)>>,
    /// The node's own IPv6 addresses (every port address, plus extra node addresses).
    pub local: Vec<Ipv6Addr>,
}

impl Ip6Tables {
    /// Builds the tables for `ports` ports. A static neighbour must be link-local or on a
    /// connected prefix.
    pub fn build(
        ports: usize,
        addrs: &[PortAddress6],
        statics: &[StaticRoute6],
        neighbors: &[StaticNeighbor6],
        node_addresses: &[Ipv6Addr],
    ) -> Result<Ip6Tables, Ip6TablesError> {
        let mut port_addresses = vec![Vec::new(); ports];
        for (index, a) in addrs.iter().enumerate() {
            let Some(list) = port_addresses.get_mut(usize::from(a.port)) else {
                return Err(Ip6TablesError {
                    item: Ip6Item::Route,
                    index,
                    reason: format!("address {} is on unknown port {}", a.address, a.port),
                });
            };
            list.push((a.address, a.prefix_len));
        }
        let routes = Route6Table::build(addrs, statics).map_err(|e| Ip6TablesError {
            item: Ip6Item::Route,
            index: e.index,
            reason: e.reason,
        })?;
        let mut map = HashMap::new();
        for (index, n) in neighbors.iter().enumerate() {
            let err = |reason: String| Ip6TablesError {
                item: Ip6Item::Neighbor,
                index,
                reason,
            };
            let connected = routes
                .lookup(n.address)
                .filter(|h| h.via.is_none())
                .map(|h| h.port);
            let port = match (n.port, connected) {
                (Some(p), Some(c)) if p != c && !is_link_local(n.address) => {
                    return Err(err(format!(
                        "{} is on another port's connected prefix",
                        n.address
                    )))
                }
                (Some(p), _) => p,
                (None, Some(_)) if is_link_local(n.address) => {
                    return Err(err(format!("link-local {} needs `port`", n.address)))
                }
                (None, Some(c)) => c,
                (None, None) if is_link_local(n.address) => {
                    return Err(err(format!("link-local {} needs `port`", n.address)))
                }
                (None, None) => {
                    return Err(err(format!(
                        "{} is not on any port's connected prefix",
                        n.address
                    )))
                }
            };
            map.insert((port, n.address), n.mac);
        }
        let mut local: Vec<Ipv6Addr> = Vec::new();
        for a in node_addresses
            .iter()
            .copied()
            .chain(addrs.iter().map(|a| a.address))
        {
            if !local.contains(&a) {
                local.push(a);
            }
        }
        Ok(Ip6Tables {
            routes,
            neighbors: map,
            port_addresses,
            local,
        })
    }

    /// Whether `addr` is one of the node's own IPv6 addresses.
    #[inline]
    pub fn is_local(&self, addr: Ipv6Addr) -> bool {
        self.local.contains(&addr)
    }

    /// The port's first non-link-local IPv6 address, else its first one.
    pub fn port_address(&self, port: PortId) -> Option<Ipv6Addr> {
        let list = self.port_addresses.get(usize::from(port))?;
        list.iter()
            .find(|(a, _)| !is_link_local(*a))
            .or_else(|| list.first())
            .map(|(a, _)| *a)
    }

    /// Whether the port has any IPv6 address.
    pub fn port_enabled(&self, port: PortId) -> bool {
        self.port_addresses
            .get(usize::from(port))
            .is_some_and(|l| !l.is_empty())
    }
}

// ---- per-worker state --------------------------------------------------------------------------

/// Sizes and limits of one worker's IPv6 state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip6Config {
    pub neighbor_max: usize,
    /// Frames held while their next hop is being resolved.
    pub hold_max: usize,
    /// ICMPv6 errors per second (a burst of a tenth of that is allowed).
    pub icmp_rate: u32,
}

impl Default for Ip6Config {
    fn default() -> Self {
        Ip6Config {
            neighbor_max: 4096,
            hold_max: 256,
            icmp_rate: 1000,
        }
    }
}

/// Counters the IPv6 path keeps for the worker to add to its own (see [`Ip6State::take_counters`]).
/// `drops` holds what is not reported through an [`Ip6Verdict::Drop`]: frames that timed out in
/// the hold queue, and the reason of frames that were answered with an ICMPv6 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip6Counters {
    pub drops: [u64; DropReason::COUNT],
    pub ns_sent: u64,
    pub na_sent: u64,
    /// Echo replies and errors.
    pub icmp_sent: u64,
}

impl Default for Ip6Counters {
    fn default() -> Self {
        Ip6Counters {
            drops: [0; DropReason::COUNT],
            ns_sent: 0,
            na_sent: 0,
            icmp_sent: 0,
        }
    }
}

impl Ip6Counters {
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

/// A worker's learned IPv6 neighbours, by (port, address): link-local addresses repeat across
/// links.
pub type Neighbor6Cache = NeighborCache<(PortId, Ipv6Addr)>;

/// What the worker does with the frame after [`Ip6State::input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip6Verdict {
    /// The frame was rewritten in place (forwarded, or turned into a reply): send it on the port.
    Tx(PortId),
    /// Count the reason and free the frame.
    Drop(DropReason),
    /// Consumed without an error (an NA learned from, an error about an error): free it.
    Free,
    /// The frame moved into the hold queue; the caller's `Mbuf` was swapped for an empty buffer
    /// from the pool, which it frees like after `Free`.
    Held,
    /// For the node and not handled here (not neighbour discovery, not an echo request), or an
    /// advertisement to the node that was learned from: the worker hands it unchanged to the
    /// kernel through the port's host port. Without one it drops it with the reason, or frees
    /// it when there is none.
    Host(Option<DropReason>),
}

struct Held6 {
    nh: Ipv6Addr,
    port: PortId,
    m: Mbuf,
    since: Instant,
    asked: Instant,
}

/// A parsed, validated NS or NA.
struct Ndp {
    solicit: bool,
    src: Ipv6Addr,
    target: Ipv6Addr,
    /// Source link-layer option (NS) or target link-layer option (NA).
    lladdr: Option<MacAddr>,
    flags: u8,
    eth_src: MacAddr,
}

/// The facts about a received packet the pipeline decides on.
struct Meta {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop: u8,
    eth_src: MacAddr,
}

/// One worker's IPv6 state: learned neighbours, the hold queue, the ICMPv6 rate limit and
/// counters. See the module doc for the pipeline.
pub struct Ip6State {
    cfg: Ip6Config,
    neigh: Neighbor6Cache,
    held: Vec<Held6>,
    icmp_tokens: u32,
    icmp_refill: Instant,
    counters: Ip6Counters,
    now: Instant,
}

impl Ip6State {
    /// All tables are allocated here, once.
    pub fn new(cfg: Ip6Config) -> Ip6State {
        Ip6State {
            cfg,
            neigh: Neighbor6Cache::new(cfg.neighbor_max),
            held: Vec::with_capacity(cfg.hold_max),
            icmp_tokens: (cfg.icmp_rate / 10).max(1),
            icmp_refill: Instant::ZERO,
            counters: Ip6Counters::default(),
            now: Instant::ZERO,
        }
    }

    /// The learned neighbours.
    pub fn neighbors(&self) -> &Neighbor6Cache {
        &self.neigh
    }

    /// Frames waiting for a next hop to be resolved.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The counters since the last call, which resets them.
    pub fn take_counters(&mut self) -> Ip6Counters {
        core::mem::take(&mut self.counters)
    }

    /// The counters since the last [`Self::take_counters`].
    pub fn counters(&self) -> &Ip6Counters {
        &self.counters
    }

    /// Processes one received IPv6 frame (untagged Ethernet, EtherType 0x86dd) that arrived on
    /// `in_port`. Frames the node sends besides the one returned (neighbour solicitations,
    /// held frames released by an advertisement) go through `tx`, which hands a frame back when
    /// it cannot queue it (counted `tx-full` in [`Ip6Counters`] and freed here).
    pub fn input(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        now: Instant,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        self.now = now;
        let Some(pinfo) = t.ports.get(usize::from(in_port)) else {
            return Ip6Verdict::Drop(DropReason::EthNotForUs);
        };
        let port_mac = pinfo.mac;
        let Ok(eth) = EthernetFrame::new_checked(&m[..]) else {
            return Ip6Verdict::Drop(DropReason::EthMalformed);
        };
        let eth_src = eth.src_addr();
        let meta = {
            let Ok(ip) = Ipv6Packet::new_checked(&m[L2..]) else {
                return Ip6Verdict::Drop(DropReason::Ip6Malformed);
            };
            let total = IP6 + usize::from(ip.payload_len());
            (
                Meta {
                    src: ip.src_addr(),
                    dst: ip.dst_addr(),
                    next: u8::from(ip.next_header()),
                    hop: ip.hop_limit(),
                    eth_src,
                },
                total,
            )
        };
        let (meta, total) = meta;
        // Ethernet padding is not part of the packet.
        m.set_len(L2 + total);

        if meta.src.is_multicast() || t.ip6.is_local(meta.src) {
            return Ip6Verdict::Drop(DropReason::Ip6BadSource);
        }
        let icmp = meta.next == u8::from(IpProtocol::Icmpv6);
        if meta.dst.is_multicast() {
            if icmp && is_ndp_type(&m[L2 + IP6..]) {
                return self.ndp_input(t, m, in_port, port_mac, false, pool, tx);
            }
            return Ip6Verdict::Drop(DropReason::Ip6Multicast);
        }
        if meta.src.is_unspecified() {
            return Ip6Verdict::Drop(DropReason::Ip6BadSource);
        }
        if t.ip6.is_local(meta.dst) {
            if icmp {
                if is_ndp_type(&m[L2 + IP6..]) {
                    return self.ndp_input(t, m, in_port, port_mac, true, pool, tx);
                }
                let echo = Icmpv6Packet::new_checked(&m[L2 + IP6..])
                    .is_ok_and(|p| p.msg_type() == msg_type::ECHO_REQUEST && p.msg_code() == 0);
                if echo {
                    return self.echo_reply(t, m, in_port, &meta, pool, tx);
                }
            }
            return Ip6Verdict::Host(Some(DropReason::Ip6Local));
        }
        self.forward(t, m, in_port, &meta, pool, tx)
    }

    /// Learns from a copy of an NS or NA (another worker received it) without answering, and
    /// releases frames held for the advertised neighbour. Anything else is ignored.
    pub fn learn_only(
        &mut self,
        t: &Tables,
        frame: &[u8],
        in_port: PortId,
        now: Instant,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) {
        self.now = now;
        if t.ports.get(usize::from(in_port)).is_none() {
            return;
        }
        if let Ok(Some(ndp)) = parse_ndp(frame) {
            self.ndp_learn(t, &ndp, in_port, pool, tx);
        }
    }

    /// Periodic work: retrying neighbour solicitations every second and dropping frames held
    /// for three seconds (`neigh-timeout`). Cheap when nothing is held.
    pub fn timers(
        &mut self,
        t: &Tables,
        now: Instant,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) {
        self.now = now;
        if self.held.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.held.len() {
            if now.saturating_since(self.held[i].since) >= NS_GIVE_UP {
                let h = self.held.remove(i);
                self.counters.drops[DropReason::NeighTimeout as usize] += 1;
                pool.free(h.m);
            } else {
                i += 1;
            }
        }
        for i in 0..self.held.len() {
            let (nh, port, asked) = (self.held[i].nh, self.held[i].port, self.held[i].asked);
            if now.saturating_since(asked) >= NS_RETRY {
                for h in self
                    .held
                    .iter_mut()
                    .filter(|h| h.nh == nh && h.port == port)
                {
                    h.asked = now;
                }
                self.send_ns(t, nh, port, pool, tx);
            }
        }
    }

    // ---- ndp -----------------------------------------------------------------------------------

    /// `to_node`: the packet's destination is one of the node's unicast addresses.
    #[allow(clippy::too_many_arguments)]
    fn ndp_input(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        port_mac: MacAddr,
        to_node: bool,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        let ndp = match parse_ndp(&m[..]) {
            Ok(Some(n)) => n,
            Ok(None) => return Ip6Verdict::Drop(DropReason::Ip6Multicast),
            Err(r) => return Ip6Verdict::Drop(r),
        };
        let for_us = t.ip6.is_local(ndp.target);
        self.ndp_learn(t, &ndp, in_port, pool, tx);
        if !ndp.solicit {
            // An NA to the node answers the kernel's own solicitation: it goes up too.
            return if to_node {
                Ip6Verdict::Host(None)
            } else {
                Ip6Verdict::Free
            };
        }
        if !for_us {
            return Ip6Verdict::Drop(DropReason::Ip6NsNotForUs);
        }
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
        m.set_len(L2 + IP6 + NDP_LEN);
        write_eth(m, eth_dst, port_mac);
        let repr = Ipv6Repr {
            src_addr: ndp.target,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: NDP_LEN,
            hop_limit: NDP_HOP_LIMIT,
        };
        let buf = &mut m[L2..];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut *buf));
        let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[IP6..]);
        icmp.set_msg_type(msg_type::NEIGHBOR_ADVERT);
        icmp.set_msg_code(0);
        icmp.set_ndisc_flags(flags);
        icmp.set_ndisc_target(&ndp.target);
        icmp.set_ndisc_link_layer_option(ndisc_option::TARGET_LINK_LAYER_ADDR, port_mac);
        icmp.fill_checksum(&ndp.target, &dst);
        self.counters.na_sent += 1;
        Ip6Verdict::Tx(in_port)
    }

    /// Neighbour cache updates from a validated NS or NA (RFC 4861 §7.2.3, §7.2.5, simplified:
    /// no NUD states, an entry is fresh for [`NEIGHBOR_LIFETIME`]).
    fn ndp_learn(
        &mut self,
        t: &Tables,
        ndp: &Ndp,
        port: PortId,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) {
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
        let waiting = self.held.iter().any(|h| h.nh == ip && h.port == port);
        let known = self.neigh.get((port, ip));
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
        self.neigh.learn((port, ip), mac, self.now);
        if waiting {
            self.release_held(t, port, ip, mac, pool, tx);
        }
    }

    fn release_held(
        &mut self,
        t: &Tables,
        port: PortId,
        nh: Ipv6Addr,
        mac: MacAddr,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) {
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].nh != nh || self.held[i].port != port {
                i += 1;
                continue;
            }
            let mut h = self.held.remove(i);
            let src = t
                .ports
                .get(usize::from(h.port))
                .map_or(MacAddr::default(), |p| p.mac);
            write_eth(&mut h.m, mac, src);
            if let Err(m) = tx(h.port, h.m) {
                self.counters.drops[DropReason::TxFull as usize] += 1;
                pool.free(m);
            }
        }
    }

    fn send_ns(
        &mut self,
        t: &Tables,
        nh: Ipv6Addr,
        port: PortId,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) {
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
        let Some(mut m) = pool.alloc() else {
            self.counters.drops[DropReason::NoBuffer as usize] += 1;
            return;
        };
        let dst = solicited_node(nh);
        m.set_len(L2 + IP6 + NDP_LEN);
        write_eth(&mut m, multicast_mac(dst), pinfo.mac);
        let repr = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: NDP_LEN,
            hop_limit: NDP_HOP_LIMIT,
        };
        let buf = &mut m[L2..];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut *buf));
        let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[IP6..]);
        icmp.set_msg_type(msg_type::NEIGHBOR_SOLICIT);
        icmp.set_msg_code(0);
        icmp.set_ndisc_flags(0);
        icmp.set_ndisc_target(&nh);
        icmp.set_ndisc_link_layer_option(ndisc_option::SOURCE_LINK_LAYER_ADDR, pinfo.mac);
        icmp.fill_checksum(&src, &dst);
        match tx(port, m) {
            Ok(()) => self.counters.ns_sent += 1,
            Err(m) => {
                self.counters.drops[DropReason::TxFull as usize] += 1;
                pool.free(m);
            }
        }
    }

    // ---- local ---------------------------------------------------------------------------------

    fn echo_reply(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        meta: &Meta,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        if !Icmpv6Packet::new_unchecked(&m[L2 + IP6..]).verify_checksum(&meta.src, &meta.dst) {
            return Ip6Verdict::Drop(DropReason::L4Malformed);
        }
        {
            let mut ip = Ipv6Packet::new_unchecked(&mut m[L2..]);
            ip.set_src_addr(&meta.dst);
            ip.set_dst_addr(&meta.src);
            ip.set_hop_limit(HOP_LIMIT);
        }
        let mut icmp = Icmpv6Packet::new_unchecked(&mut m[L2 + IP6..]);
        icmp.set_msg_type(msg_type::ECHO_REPLY);
        icmp.fill_checksum(&meta.dst, &meta.src);
        self.counters.icmp_sent += 1;
        self.output_local(t, m, in_port, meta, pool, tx)
    }

    /// Routes a packet the node originates back to `meta.src` (no hop limit change). A
    /// link-local source that no route covers is answered on the link it came from.
    fn output_local(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        meta: &Meta,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        match t.ip6.routes.lookup(meta.src).copied() {
            Some(hop) if !is_link_local(meta.src) || hop.port == in_port => {
                self.output(t, m, hop, meta.src, pool, tx)
            }
            _ if is_link_local(meta.src) => {
                let Some(p) = t.ports.get(usize::from(in_port)) else {
                    return Ip6Verdict::Drop(DropReason::Ip6NoRoute);
                };
                write_eth(m, meta.eth_src, p.mac);
                Ip6Verdict::Tx(in_port)
            }
            _ => Ip6Verdict::Drop(DropReason::Ip6NoRoute),
        }
    }

    // ---- entry points for the Service path (NAT66) ----------------------------------------------

    /// Sends a packet the worker has already rewritten (NAT66) towards `dst`: route lookup and
    /// next-hop resolution, holding the frame while the neighbour is asked. The caller has
    /// checked and decremented the hop limit.
    pub fn output_to(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        dst: Ipv6Addr,
        now: Instant,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        self.now = now;
        if is_link_local(dst) {
            return Ip6Verdict::Drop(DropReason::Ip6LinkLocal);
        }
        match t.ip6.routes.lookup(dst).copied() {
            Some(hop) => self.output(t, m, hop, dst, pool, tx),
            None => Ip6Verdict::Drop(DropReason::Ip6NoRoute),
        }
    }

    /// Answers a packet to a Service without endpoints with ICMPv6 port unreachable from the
    /// Service address `from` (kube-proxy's REJECT); `reason` is counted.
    #[allow(clippy::too_many_arguments)]
    pub fn port_unreachable(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        from: Ipv6Addr,
        reason: DropReason,
        now: Instant,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        self.now = now;
        let Ok(eth) = EthernetFrame::new_checked(&m[..]) else {
            return Ip6Verdict::Drop(DropReason::EthMalformed);
        };
        let eth_src = eth.src_addr();
        let Ok(ip) = Ipv6Packet::new_checked(&m[L2..]) else {
            return Ip6Verdict::Drop(DropReason::Ip6Malformed);
        };
        let meta = Meta {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            next: u8::from(ip.next_header()),
            hop: ip.hop_limit(),
            eth_src,
        };
        let code = icmpv6::msg_code::PORT_UNREACHABLE;
        let ty = msg_type::DST_UNREACHABLE;
        self.icmp_error_from(
            t,
            m,
            in_port,
            &meta,
            Some(from),
            (ty, code),
            reason,
            pool,
            tx,
        )
    }

    // ---- forward -------------------------------------------------------------------------------

    fn forward(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        meta: &Meta,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        // RFC 4291 §2.5.6: link-local packets never leave their link.
        if is_link_local(meta.src) || is_link_local(meta.dst) {
            return Ip6Verdict::Drop(DropReason::Ip6LinkLocal);
        }
        if meta.hop <= 1 {
            return self.icmp_error(
                t,
                m,
                in_port,
                meta,
                icmpv6::msg_type::TIME_EXCEEDED,
                0,
                DropReason::Ip6HopLimitExceeded,
                pool,
                tx,
            );
        }
        let Some(hop) = t.ip6.routes.lookup(meta.dst).copied() else {
            return Ip6Verdict::Drop(DropReason::Ip6NoRoute);
        };
        // No header checksum in IPv6: the hop limit is just written.
        Ipv6Packet::new_unchecked(&mut m[L2..]).set_hop_limit(meta.hop - 1);
        self.output(t, m, hop, meta.dst, pool, tx)
    }

    /// Resolves the next hop and writes the Ethernet header, or holds the frame.
    fn output(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        hop: NextHop6,
        dst: Ipv6Addr,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        let Some(pinfo) = t.ports.get(usize::from(hop.port)) else {
            return Ip6Verdict::Drop(DropReason::Ip6NoRoute);
        };
        let nh = hop.neighbor_for(dst);
        let mac = match t.ip6.neighbors.get(&(hop.port, nh)) {
            Some(mac) => Some(*mac),
            None => self.neigh.lookup((hop.port, nh), self.now),
        };
        match mac {
            Some(mac) => {
                write_eth(m, mac, pinfo.mac);
                Ip6Verdict::Tx(hop.port)
            }
            None => self.hold(t, m, nh, hop.port, pool, tx),
        }
    }

    fn hold(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        nh: Ipv6Addr,
        port: PortId,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        if self.held.len() >= self.cfg.hold_max {
            return Ip6Verdict::Drop(DropReason::NeighUnresolved);
        }
        let Some(empty) = pool.alloc() else {
            return Ip6Verdict::Drop(DropReason::NoBuffer);
        };
        let frame = core::mem::replace(m, empty);
        let asked = self
            .held
            .iter()
            .find(|h| h.nh == nh && h.port == port)
            .map(|h| h.asked);
        self.held.push(Held6 {
            nh,
            port,
            m: frame,
            since: self.now,
            asked: asked.unwrap_or(self.now),
        });
        if asked.is_none() {
            self.send_ns(t, nh, port, pool, tx);
        }
        Ip6Verdict::Held
    }

    // ---- icmpv6 errors -------------------------------------------------------------------------

    /// Turns the frame into an ICMPv6 error about itself, sent back to its source; `reason` is
    /// counted as the original frame's drop reason (as IPv4 does).
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        meta: &Meta,
        ty: u8,
        code: u8,
        reason: DropReason,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        self.icmp_error_from(t, m, in_port, meta, None, (ty, code), reason, pool, tx)
    }

    /// [`Self::icmp_error`] sent from `from` (a Service address) instead of the node's address
    /// towards the source.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error_from(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        in_port: PortId,
        meta: &Meta,
        from: Option<Ipv6Addr>,
        (ty, code): (u8, u8),
        reason: DropReason,
        pool: &mut PoolCache,
        tx: &mut dyn FnMut(PortId, Mbuf) -> Result<(), Mbuf>,
    ) -> Ip6Verdict {
        let src = from.or_else(|| {
            t.ip6
                .routes
                .lookup(meta.src)
                .map(|h| h.src)
                .or_else(|| t.ip6.port_address(in_port))
        });
        let Some(src) = src else {
            return Ip6Verdict::Drop(reason);
        };
        self.counters.drops[reason as usize] += 1;
        // Never an error about an error (RFC 4443 §2.4 (e)), nor about what we cannot inspect.
        if !may_answer_with_error(&m[L2..]) {
            return Ip6Verdict::Free;
        }
        if !self.icmp_allowed() {
            return Ip6Verdict::Drop(DropReason::IcmpRateLimited);
        }
        let quote_len = (m.len() - L2).min(ICMP6_QUOTE_MAX);
        let icmp_len = 8 + quote_len;
        m.set_len(L2 + IP6 + icmp_len);
        m.buffer_mut().copy_within(L2..L2 + quote_len, L2 + IP6 + 8);
        let repr = Ipv6Repr {
            src_addr: src,
            dst_addr: meta.src,
            next_header: IpProtocol::Icmpv6,
            payload_len: icmp_len,
            hop_limit: HOP_LIMIT,
        };
        let buf = &mut m[L2..];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut *buf));
        let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[IP6..]);
        icmp.set_msg_type(ty);
        icmp.set_msg_code(code);
        icmp.set_rest_of_header(0);
        icmp.fill_checksum(&src, &meta.src);
        self.counters.icmp_sent += 1;
        self.output_local(t, m, in_port, meta, pool, tx)
    }

    fn icmp_allowed(&mut self) -> bool {
        let rate = self.cfg.icmp_rate;
        let burst = (rate / 10).max(1);
        let elapsed = self.now.saturating_since(self.icmp_refill);
        let add = (elapsed.as_nanos() * u128::from(rate) / 1_000_000_000) as u32;
        if add > 0 {
            self.icmp_tokens = self.icmp_tokens.saturating_add(add).min(burst);
            self.icmp_refill = self.now;
        }
        if self.icmp_tokens == 0 {
            return false;
        }
        self.icmp_tokens -= 1;
        true
    }
}

/// Writes an untagged IPv6 Ethernet header at the start of the frame.
fn write_eth(m: &mut Mbuf, dst: MacAddr, src: MacAddr) {
    let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(EtherType::Ipv6);
}

fn is_ndp_type(icmp: &[u8]) -> bool {
    matches!(
        icmp.first(),
        Some(&(msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT))
    )
}

/// Whether an untagged Ethernet frame is an IPv6 neighbour solicitation or advertisement (the
/// frames a worker should copy to the others so that every neighbour cache learns).
pub fn is_ndp(frame: &[u8]) -> bool {
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

/// Whether an ICMPv6 error may be sent about this IPv6 packet: not when it is itself an ICMPv6
/// error (RFC 4443 §2.4 (e)), nor when its upper layer cannot be found (a non-first fragment,
/// truncated or too many extension headers).
fn may_answer_with_error(pkt: &[u8]) -> bool {
    let Some(&first) = pkt.get(6) else {
        return false;
    };
    let mut next = first;
    let mut off = IP6;
    for _ in 0..8 {
        match IpProtocol::from(next) {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let (Some(&n), Some(&len)) = (pkt.get(off), pkt.get(off + 1)) else {
                    return false;
                };
                next = n;
                off += (usize::from(len) + 1) * 8;
            }
            IpProtocol::Ipv6Frag => {
                let (Some(&n), Some(&hi), Some(&lo)) =
                    (pkt.get(off), pkt.get(off + 2), pkt.get(off + 3))
                else {
                    return false;
                };
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    return false;
                }
                next = n;
                off += 8;
            }
            IpProtocol::Icmpv6 => {
                return pkt.get(off).is_some_and(|&ty| !icmpv6::is_error(ty));
            }
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::mbuf::Pool;
    use crate::tables::PortInfo;
    use proptest::prelude::*;
    use std::sync::Arc;

    const MAC0: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);
    const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn port(name: &str, mac: MacAddr) -> PortInfo {
        PortInfo {
            name: name.into(),
            mac,
            addresses: vec![],
        }
    }

    /// Port 0: fd00::1/64 (MAC0); port 1: fd01::1/64 (MAC1); fd10::/48 via fd01::fe (static
    /// neighbour GW); ::/0 via fd00::fffe (not resolved).
    fn tables() -> Tables {
        let addrs = [
            PortAddress6 {
                port: 0,
                address: ip("fd00::1"),
                prefix_len: 64,
            },
            PortAddress6 {
                port: 1,
                address: ip("fd01::1"),
                prefix_len: 64,
            },
        ];
        let statics = [
            StaticRoute6 {
                prefix: ip("fd10::"),
                prefix_len: 48,
                via: Some(ip("fd01::fe")),
                port: None,
            },
            StaticRoute6 {
                prefix: ip("::"),
                prefix_len: 0,
                via: Some(ip("fd00::fffe")),
                port: None,
            },
        ];
        let neighbors = [StaticNeighbor6 {
            address: ip("fd01::fe"),
            mac: GW,
            port: None,
        }];
        Tables {
            ports: vec![port("p0", MAC0), port("p1", MAC1)],
            ip6: Ip6Tables::build(2, &addrs, &statics, &neighbors, &[]).unwrap(),
            ..Tables::default()
        }
    }

    struct Rig {
        t: Tables,
        st: Ip6State,
        pool: Arc<Pool>,
        cache: PoolCache,
        out: Vec<(PortId, Mbuf)>,
    }

    impl Rig {
        fn new(cfg: Ip6Config) -> Rig {
            let pool = Pool::new(64);
            Rig {
                t: tables(),
                st: Ip6State::new(cfg),
                cache: PoolCache::new(pool.clone()),
                pool,
                out: Vec::new(),
            }
        }

        fn input(&mut self, frame: &[u8], port: PortId, now: Instant) -> (Ip6Verdict, Mbuf) {
            let mut m = self.cache.alloc().unwrap();
            assert!(m.copy_from(frame));
            let out = &mut self.out;
            let v = self
                .st
                .input(&self.t, &mut m, port, now, &mut self.cache, &mut |p, f| {
                    out.push((p, f));
                    Ok(())
                });
            (v, m)
        }

        fn timers(&mut self, now: Instant) {
            let out = &mut self.out;
            self.st.timers(&self.t, now, &mut self.cache, &mut |p, f| {
                out.push((p, f));
                Ok(())
            });
        }
    }

    /// Independent ICMPv6 checksum check (RFC 4443 §2.3 over the RFC 8200 §8.1 pseudo header).
    fn icmp6_checksum_ok(ip_pkt: &[u8]) -> bool {
        let plen = usize::from(u16::from_be_bytes([ip_pkt[4], ip_pkt[5]]));
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip_pkt[8..40]);
        pseudo.extend_from_slice(&(plen as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(&ip_pkt[40..40 + plen]);
        if pseudo.len() % 2 == 1 {
            pseudo.push(0);
        }
        let mut sum: u32 = pseudo
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    fn frame(
        eth_dst: MacAddr,
        eth_src: MacAddr,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop: u8,
        next: IpProtocol,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0u8; L2 + IP6 + payload.len()];
        f[0..6].copy_from_slice(&eth_dst.0);
        f[6..12].copy_from_slice(&eth_src.0);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: next,
            payload_len: payload.len(),
            hop_limit: hop,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut f[L2..]));
        f[L2 + IP6..].copy_from_slice(payload);
        f
    }

    fn icmp_frame(
        eth_dst: MacAddr,
        eth_src: MacAddr,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop: u8,
        icmp: &[u8],
    ) -> Vec<u8> {
        let mut f = frame(eth_dst, eth_src, src, dst, hop, IpProtocol::Icmpv6, icmp);
        Icmpv6Packet::new_unchecked(&mut f[L2 + IP6..]).fill_checksum(&src, &dst);
        f
    }

    fn ns(target: Ipv6Addr, sll: Option<MacAddr>) -> Vec<u8> {
        let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&target.octets());
        if let Some(mac) = sll {
            b.extend_from_slice(&[1, 1]);
            b.extend_from_slice(&mac.0);
        }
        b
    }

    fn na(target: Ipv6Addr, flags: u8, tll: MacAddr) -> Vec<u8> {
        let mut b = vec![136, 0, 0, 0, flags, 0, 0, 0];
        b.extend_from_slice(&target.octets());
        b.extend_from_slice(&[2, 1]);
        b.extend_from_slice(&tll.0);
        b
    }

    fn udp_frame(dst_mac: MacAddr, src: &str, dst: &str, hop: u8, len: usize) -> Vec<u8> {
        let mut udp = vec![0u8; len];
        udp[..8].copy_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, len as u8, 0, 0]);
        for (i, b) in udp[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        frame(dst_mac, HOST, ip(src), ip(dst), hop, IpProtocol::Udp, &udp)
    }

    #[test]
    fn test_route_longest_prefix_match() {
        let t = tables();
        let r = &t.ip6.routes;
        assert_eq!(r.len(), 4);
        let h = r.lookup(ip("fd10:0:0:5::1")).unwrap();
        assert_eq!(
            (h.port, h.via, h.src),
            (1, Some(ip("fd01::fe")), ip("fd01::1"))
        );
        let h = r.lookup(ip("fd00::77")).unwrap();
        assert_eq!((h.port, h.via), (0, None));
        assert_eq!(h.neighbor_for(ip("fd00::77")), ip("fd00::77"));
        let h = r.lookup(ip("2001:db8::1")).unwrap();
        assert_eq!((h.port, h.via), (0, Some(ip("fd00::fffe"))));
        // A /128 beats everything.
        let addrs = [PortAddress6 {
            port: 0,
            address: ip("fd00::1"),
            prefix_len: 64,
        }];
        let host = StaticRoute6 {
            prefix: ip("fd00::42"),
            prefix_len: 128,
            via: Some(ip("fd00::2")),
            port: None,
        };
        let r = Route6Table::build(&addrs, std::slice::from_ref(&host)).unwrap();
        assert_eq!(r.lookup(ip("fd00::42")).unwrap().via, Some(ip("fd00::2")));
        assert_eq!(r.lookup(ip("fd00::43")).unwrap().via, None);
        assert!(r.lookup(ip("fd01::1")).is_none());
        // Errors name the route.
        let e = Route6Table::build(&addrs, &[host.clone(), host.clone()]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.reason.contains("duplicate route for fd00::42/128"), "{e}");
        let far = StaticRoute6 {
            via: Some(ip("fd99::1")),
            ..host.clone()
        };
        let e = Route6Table::build(&addrs, &[far]).unwrap_err();
        assert!(e.reason.contains("fd99::1"), "{e}");
        let ll = StaticRoute6 {
            via: Some(ip("fe80::1")),
            ..host.clone()
        };
        assert!(Route6Table::build(&addrs, std::slice::from_ref(&ll)).is_err());
        let r = Route6Table::build(
            &addrs,
            &[StaticRoute6 {
                port: Some(0),
                ..ll
            }],
        )
        .unwrap();
        let h = r.lookup(ip("fd00::42")).unwrap();
        assert_eq!((h.via, h.src), (Some(ip("fe80::1")), ip("fd00::1")));
        // Neighbours must be on a connected prefix (or link-local).
        let bad = [StaticNeighbor6 {
            address: ip("fd55::1"),
            mac: GW,
            port: None,
        }];
        let e = Ip6Tables::build(1, &addrs, &[], &bad, &[]).unwrap_err();
        assert_eq!((e.item, e.index), (Ip6Item::Neighbor, 0));
        assert!(e.to_string().contains("fd55::1"), "{e}");
    }

    #[test]
    fn test_ns_gets_na_reply_bytes() {
        let mut rig = Rig::new(Ip6Config::default());
        let target = ip("fd00::1");
        let group = solicited_node(target);
        assert_eq!(group, ip("ff02::1:ff00:1"));
        let f = icmp_frame(
            multicast_mac(group),
            HOST,
            ip("fe80::99"),
            group,
            255,
            &ns(target, Some(HOST)),
        );
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Tx(0));
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
            rig.st
                .neighbors()
                .lookup((0, ip("fe80::99")), Instant::ZERO),
            Some(HOST)
        );
        assert_eq!(rig.st.counters().na_sent, 1);

        // Duplicate address detection: answered to all nodes, not solicited.
        let f = icmp_frame(
            multicast_mac(group),
            HOST,
            Ipv6Addr::UNSPECIFIED,
            group,
            255,
            &ns(target, None),
        );
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Tx(0));
        assert_eq!(&m[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(Ipv6Packet::new_unchecked(&m[L2..]).dst_addr(), ALL_NODES);
        assert_eq!(m[L2 + IP6 + 4], 0xa0);
        assert!(icmp6_checksum_ok(&m[L2..]));

        // Not ours, wrong hop limit, bad checksum.
        let f = icmp_frame(
            multicast_mac(group),
            HOST,
            ip("fe80::99"),
            group,
            255,
            &ns(ip("fd00::2"), Some(HOST)),
        );
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Ip6Verdict::Drop(DropReason::Ip6NsNotForUs)
        );
        let f = icmp_frame(
            multicast_mac(group),
            HOST,
            ip("fe80::99"),
            group,
            64,
            &ns(target, Some(HOST)),
        );
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Ip6Verdict::Drop(DropReason::Ip6NdpInvalid)
        );
        let mut f = icmp_frame(
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
            Ip6Verdict::Drop(DropReason::Ip6NdpInvalid)
        );
    }

    #[test]
    fn test_na_releases_held_frame() {
        let mut rig = Rig::new(Ip6Config::default());
        let before = rig.pool.available();
        let f = udp_frame(MAC1, "fd01::99", "fd00::5", 64, 20);
        let (v, m) = rig.input(&f, 1, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Held);
        assert!(m.is_empty());
        rig.cache.free(m);
        assert_eq!(rig.st.held(), 1);
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
        rig.cache.free(ns_frame);
        // A second frame for the same neighbour does not solicit again.
        let (v, m) = rig.input(&f, 1, Instant::from_micros(10));
        assert_eq!(v, Ip6Verdict::Held);
        rig.cache.free(m);
        assert!(rig.out.is_empty());

        // The advertisement releases both, rewritten for fd00::5's MAC.
        let n5 = MacAddr([2, 0, 0, 0, 0, 5]);
        let adv = icmp_frame(
            MAC0,
            n5,
            ip("fd00::5"),
            ip("fd00::1"),
            255,
            &na(
                ip("fd00::5"),
                ndisc_flags::SOLICITED | ndisc_flags::OVERRIDE,
                n5,
            ),
        );
        let (v, m) = rig.input(&adv, 0, Instant::from_micros(20));
        // Addressed to the node: learned here, then for the kernel's host port if there is one.
        assert_eq!(v, Ip6Verdict::Host(None));
        rig.cache.free(m);
        assert_eq!(rig.st.held(), 0);
        assert_eq!(rig.out.len(), 2);
        for (p, out) in rig.out.drain(..) {
            assert_eq!(p, 0);
            assert_eq!(&out[..6], &n5.0);
            assert_eq!(&out[6..12], &MAC0.0);
            assert_eq!(out[L2 + 7], 63);
            assert_eq!(&out[L2 + IP6..], &f[L2 + IP6..]);
            rig.cache.free(out);
        }
        assert_eq!(
            rig.st
                .neighbors()
                .lookup((0, ip("fd00::5")), Instant::from_secs(1)),
            Some(n5)
        );
        // The next frame goes straight out.
        let (v, m) = rig.input(&f, 1, Instant::from_secs(1));
        assert_eq!(v, Ip6Verdict::Tx(0));
        rig.cache.free(m);
        rig.cache.flush();
        assert_eq!(rig.pool.available(), before);
    }

    #[test]
    fn test_forward_decrements_hop_limit() {
        let mut rig = Rig::new(Ip6Config::default());
        let f = udp_frame(MAC0, "fd00::99", "fd10::7", 64, 30);
        let mut padded = f.clone();
        padded.extend_from_slice(&[0xee; 6]);
        let (v, m) = rig.input(&padded, 0, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Tx(1));
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
        let mut rig = Rig::new(Ip6Config::default());
        rig.st.neigh.learn((0, ip("fd00::99")), HOST, Instant::ZERO);
        let f = udp_frame(MAC0, "fd00::99", "fd10::7", 1, 30);
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Tx(0));
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
        assert_eq!(
            rig.st
                .counters()
                .drop_count(DropReason::Ip6HopLimitExceeded),
            1
        );

        // A big packet is quoted up to the 1280-byte minimum MTU.
        let big = udp_frame(MAC0, "fd00::99", "fd10::7", 1, 1400);
        let (v, m) = rig.input(&big, 0, Instant::from_secs(1));
        assert_eq!(v, Ip6Verdict::Tx(0));
        assert_eq!(m.len() - L2, MIN_MTU);
        assert_eq!(&m[L2 + IP6 + 8..], &big[L2..L2 + ICMP6_QUOTE_MAX]);
        assert!(icmp6_checksum_ok(&m[L2..]));

        // Never an error about an error.
        let err = icmp_frame(
            MAC0,
            HOST,
            ip("fd00::99"),
            ip("fd10::7"),
            1,
            &[1, 0, 0, 0, 0, 0, 0, 0, 0x60, 0, 0, 0],
        );
        let (v, _) = rig.input(&err, 0, Instant::from_secs(2));
        assert_eq!(v, Ip6Verdict::Free);
        // ... but an echo request is answered.
        let echo = icmp_frame(
            MAC0,
            HOST,
            ip("fd00::99"),
            ip("fd10::7"),
            1,
            &[128, 0, 0, 0, 0, 1, 0, 1],
        );
        assert_eq!(
            rig.input(&echo, 0, Instant::from_secs(3)).0,
            Ip6Verdict::Tx(0)
        );
    }

    #[test]
    fn test_time_exceeded_rate_limit() {
        let mut rig = Rig::new(Ip6Config {
            icmp_rate: 10,
            ..Ip6Config::default()
        });
        rig.st.neigh.learn((0, ip("fd00::99")), HOST, Instant::ZERO);
        let f = udp_frame(MAC0, "fd00::99", "fd10::7", 1, 30);
        assert_eq!(rig.input(&f, 0, Instant::ZERO).0, Ip6Verdict::Tx(0));
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Ip6Verdict::Drop(DropReason::IcmpRateLimited)
        );
        assert_eq!(rig.input(&f, 0, Instant::from_secs(1)).0, Ip6Verdict::Tx(0));
    }

    #[test]
    fn test_echo_reply() {
        let mut rig = Rig::new(Ip6Config::default());
        rig.st.neigh.learn((0, ip("fd00::99")), HOST, Instant::ZERO);
        let req = [128, 0, 0, 0, 0x12, 0x34, 0, 7, 0xaa, 0xbb, 0xcc];
        let f = icmp_frame(MAC0, HOST, ip("fd00::99"), ip("fd00::1"), 60, &req);
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Tx(0));
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
        let f = icmp_frame(MAC1, HOST, ip("fe80::99"), ip("fd01::1"), 64, &req);
        let (v, m) = rig.input(&f, 1, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Tx(1));
        assert_eq!(&m[..6], &HOST.0);
        assert!(icmp6_checksum_ok(&m[L2..]));
        // Other traffic to the node is not handled: the kernel's, or dropped.
        let f = udp_frame(MAC0, "fd00::99", "fd00::1", 64, 20);
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Ip6Verdict::Host(Some(DropReason::Ip6Local))
        );
    }

    #[test]
    fn test_hold_times_out_with_retries() {
        let mut rig = Rig::new(Ip6Config::default());
        let before = rig.pool.available();
        let f = udp_frame(MAC0, "fd00::99", "2001:db8::1", 64, 20);
        let (v, m) = rig.input(&f, 0, Instant::ZERO);
        assert_eq!(v, Ip6Verdict::Held);
        rig.cache.free(m);
        // Solicits the default gateway.
        assert_eq!(rig.out.len(), 1);
        assert_eq!(&rig.out[0].1[..6], &[0x33, 0x33, 0xff, 0, 0xff, 0xfe]);
        rig.timers(Instant::from_micros(500_000));
        assert_eq!(rig.out.len(), 1);
        rig.timers(Instant::from_secs(1));
        assert_eq!(rig.out.len(), 2, "retried after 1 s");
        rig.timers(Instant::from_micros(2_999_999));
        assert_eq!(rig.st.held(), 1);
        rig.timers(Instant::from_secs(3));
        assert_eq!(rig.st.held(), 0);
        let c = rig.st.take_counters();
        assert_eq!(c.drop_count(DropReason::NeighTimeout), 1);
        assert_eq!(c.ns_sent, 3);
        assert_eq!(rig.st.counters().ns_sent, 0, "taken");
        for (_, m) in rig.out.drain(..) {
            rig.cache.free(m);
        }
        rig.cache.flush();
        assert_eq!(rig.pool.available(), before);
    }

    #[test]
    fn test_tx_refusal_is_counted_and_freed() {
        let mut rig = Rig::new(Ip6Config::default());
        let before = rig.pool.available();
        let f = udp_frame(MAC0, "fd00::99", "fd00::5", 64, 20);
        let mut m = rig.cache.alloc().unwrap();
        m.copy_from(&f);
        let v = rig.st.input(
            &rig.t,
            &mut m,
            0,
            Instant::ZERO,
            &mut rig.cache,
            &mut |_, m| Err(m),
        );
        assert_eq!(v, Ip6Verdict::Held);
        rig.cache.free(m);
        assert_eq!(rig.st.counters().drop_count(DropReason::TxFull), 1);
        assert_eq!(rig.st.counters().ns_sent, 0);
        rig.timers(Instant::from_secs(3));
        rig.cache.flush();
        assert_eq!(rig.pool.available(), before);
    }

    #[test]
    fn test_hold_queue_full_and_learn_only() {
        let mut rig = Rig::new(Ip6Config {
            hold_max: 1,
            ..Ip6Config::default()
        });
        let f = udp_frame(MAC0, "fd00::99", "fd00::5", 64, 20);
        assert_eq!(rig.input(&f, 0, Instant::ZERO).0, Ip6Verdict::Held);
        assert_eq!(
            rig.input(&f, 0, Instant::ZERO).0,
            Ip6Verdict::Drop(DropReason::NeighUnresolved)
        );
        rig.out.clear();
        let n5 = MacAddr([2, 0, 0, 0, 0, 5]);
        let adv = icmp_frame(
            MAC0,
            n5,
            ip("fd00::5"),
            ip("fd00::1"),
            255,
            &na(
                ip("fd00::5"),
                ndisc_flags::SOLICITED | ndisc_flags::OVERRIDE,
                n5,
            ),
        );
        assert!(is_ndp(&adv));
        assert!(!is_ndp(&f));
        let out = &mut rig.out;
        rig.st.learn_only(
            &rig.t,
            &adv,
            0,
            Instant::ZERO,
            &mut rig.cache,
            &mut |p, m| {
                out.push((p, m));
                Ok(())
            },
        );
        assert_eq!(rig.out.len(), 1);
        assert_eq!(rig.st.held(), 0);
    }

    #[test]
    fn test_drops() {
        let mut rig = Rig::new(Ip6Config::default());
        let cases = [
            (
                udp_frame(MAC0, "fd00::99", "fd77::1", 64, 20),
                Ip6Verdict::Held, // the default gateway is unresolved
            ),
            (
                udp_frame(MAC0, "fe80::99", "fd10::1", 64, 20),
                Ip6Verdict::Drop(DropReason::Ip6LinkLocal),
            ),
            (
                udp_frame(MAC0, "fd00::99", "ff02::1", 64, 20),
                Ip6Verdict::Drop(DropReason::Ip6Multicast),
            ),
            (
                udp_frame(MAC0, "ff02::1", "fd10::1", 64, 20),
                Ip6Verdict::Drop(DropReason::Ip6BadSource),
            ),
            (
                udp_frame(MAC0, "fd00::1", "fd10::1", 64, 20),
                Ip6Verdict::Drop(DropReason::Ip6BadSource),
            ),
            (
                udp_frame(MAC0, "::", "fd10::1", 64, 20),
                Ip6Verdict::Drop(DropReason::Ip6BadSource),
            ),
        ];
        for (f, want) in &cases[1..] {
            assert_eq!(rig.input(f, 0, Instant::ZERO).0, *want);
        }
        assert_eq!(rig.input(&cases[0].0, 0, Instant::ZERO).0, cases[0].1);
        // Without a default route, no route.
        rig.t.ip6.routes = Route6Table::build(
            &[PortAddress6 {
                port: 0,
                address: ip("fd00::1"),
                prefix_len: 64,
            }],
            &[],
        )
        .unwrap();
        assert_eq!(
            rig.input(&cases[0].0, 0, Instant::ZERO).0,
            Ip6Verdict::Drop(DropReason::Ip6NoRoute)
        );
        let mut short = udp_frame(MAC0, "fd00::99", "fd10::1", 64, 20);
        short.truncate(L2 + 30);
        assert_eq!(
            rig.input(&short, 0, Instant::ZERO).0,
            Ip6Verdict::Drop(DropReason::Ip6Malformed)
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
               let mut rig = Rig::new(Ip6Config { hold_max: 4, ..Ip6Config::default() });
               let group = solicited_node(ip("fd00::1"));
               let base = match which {
                   0 => icmp_frame(multicast_mac(group), HOST, ip("fe80::99"), group, 255,
                                   &ns(ip("fd00::1"), Some(HOST))),
                   1 => icmp_frame(MAC0, HOST, ip("fd00::5"), ip("fd00::1"), 255,
                                   &na(ip("fd00::5"), 0x60, HOST)),
                   2 => udp_frame(MAC0, "fd00::99", "fd10::7", 1, 40),
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
                   rig.cache.free(m);
                   let out = &mut rig.out;
                   rig.st.learn_only(&rig.t, frame, port, Instant::ZERO, &mut rig.cache, &mut |p, m| {
    out.push((p, m));
    Ok(())
    });
                   let _ = is_ndp(frame);
                   let _ = may_answer_with_error(frame);
               }
               rig.timers(Instant::from_secs(5));
               prop_assert_eq!(rig.st.held(), 0);
           }
       }
}
