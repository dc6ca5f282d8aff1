//! The IPv6 tables: routes, the node's addresses, static neighbours ([`Ip6Tables`], published in
//! [`Tables::ip6`](crate::tables::Tables)), and the address helpers neighbour discovery needs.
//!
//! The IPv6 stages that use them are in [`crate::pipeline`]: `ip6-input`, `nd-input`,
//! `icmp-error`, `neighbour` and the Service path, written as the IPv4 ones are.

use crate::lpm::Bits;
use crate::port::PortId;
use crate::route::{NextHop, PortAddress, RouteTable, StaticRoute};
use crate::wire::MacAddr;
use hashbrown::HashMap;
use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
const IP6: usize = 40;
/// The IPv6 minimum link MTU: an ICMPv6 error never exceeds it (RFC 4443 §2.4 (c)).
pub const MIN_MTU: usize = 1280;
/// Bytes of the offending packet an ICMPv6 error quotes.
pub const ICMP6_QUOTE_MAX: usize = MIN_MTU - IP6 - 8;
/// `ff02::1`, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

// ---- routing -----------------------------------------------------------------------------------

/// Where a routed IPv6 packet goes next.
pub type NextHop6 = NextHop<Ipv6Addr>;
/// A port's IPv6 address with its prefix length: gives a connected route.
pub type PortAddress6 = PortAddress<Ipv6Addr>;
/// A configured IPv6 static route, before resolution.
pub type StaticRoute6 = StaticRoute<Ipv6Addr>;
/// The IPv6 route table: the same type as IPv4's ([`RouteTable`]).
pub type Route6Table = RouteTable<Ipv6Addr>;

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

/// The node's IPv6 configuration as the workers read it (part of [`Tables`](crate::tables::Tables)).
#[derive(Debug, Clone, Default)]
pub struct Ip6Tables {
    pub routes: Route6Table,
    /// Static neighbours; learned ones live in each worker (`pipeline::Worker`).
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
        let mut routes = routes;
        routes.resolve_static(|port, via| map.get(&(port, via)).copied());
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

#[cfg(test)]
mod test {
    use super::*;

    const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn test_route_longest_prefix_match() {
        let t = crate::pipeline::test_tables();
        let r = &t.ip6.routes;
        assert_eq!(r.len(), 4);
        let h = r.lookup(ip("fd10:0:0:5::1")).unwrap();
        assert_eq!(
            (h.port, h.via, h.src),
            (1, Some(ip("fd01::fe")), ip("fd01::1"))
        );
        // The gateway is a static neighbour: its MAC rides with the route.
        assert_eq!(h.gateway_mac, Some(GW));
        assert_eq!(r.lookup(ip("2001:db8::1")).unwrap().gateway_mac, None);
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
}
