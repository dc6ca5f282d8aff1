//! The routing table of both address families: connected and static routes, longest-prefix
//! match. One type, [`RouteTable<A>`], for IPv4 ([`RouteTable`]) and IPv6
//! ([`crate::ip6::Route6Table`]); what the families make different (address width, IPv6's
//! link-scoped gateways) is in [`RouteAddr`].
//!
//! The table is built once per snapshot and never changed in place. A small table (an edge
//! node's handful of routes) is searched linearly, longest prefix first, one compare per route
//! in two or three cache lines; a larger one walks the prefix lengths present, longest first,
//! with one hash probe each ([`PrefixTable`]). Flows cache nothing that could go stale.

use crate::lpm::{Bits, PrefixTable};
use crate::port::PortId;
use crate::wire::MacAddr;
use core::fmt::{Debug, Display};
use std::net::{Ipv4Addr, Ipv6Addr};

/// An address family's addresses as the route table sees them.
pub trait RouteAddr: Copy + Eq + Debug + Display {
    /// The address as an integer, most significant bit first.
    type Bits: Bits + Debug;
    fn bits(self) -> Self::Bits;
    fn from_bits(b: Self::Bits) -> Self;
    /// A gateway address that names a router only together with its link (IPv6 `fe80::/10`):
    /// a route through it must name its port.
    fn link_scoped(self) -> bool;
    /// "IPv4" or "IPv6", for messages.
    const FAMILY: &'static str;
}

impl RouteAddr for Ipv4Addr {
    type Bits = u32;
    #[inline(always)]
    fn bits(self) -> u32 {
        u32::from(self)
    }
    fn from_bits(b: u32) -> Ipv4Addr {
        Ipv4Addr::from(b)
    }
    fn link_scoped(self) -> bool {
        false
    }
    const FAMILY: &'static str = "IPv4";
}

impl RouteAddr for Ipv6Addr {
    type Bits = u128;
    #[inline(always)]
    fn bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(b: u128) -> Ipv6Addr {
        Ipv6Addr::from(b)
    }
    fn link_scoped(self) -> bool {
        crate::ip6::is_link_local(self)
    }
    const FAMILY: &'static str = "IPv6";
}

/// Where a routed packet goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop<A = Ipv4Addr> {
    /// Egress port.
    pub port: PortId,
    /// Gateway, or `None` for a connected destination (the destination is the next hop).
    pub via: Option<A>,
    /// The port address used as source for traffic the node originates or SNATs on this route.
    pub src: A,
    /// The gateway's link-layer address when it is a static neighbour, resolved when the table
    /// is built so the fast path skips the neighbour lookup ([`RouteTable::resolve_static`]).
    pub gateway_mac: Option<MacAddr>,
}

impl<A: Copy> NextHop<A> {
    /// The address whose link-layer address the frame must be sent to.
    #[inline]
    pub fn neighbor_for(&self, dst: A) -> A {
        self.via.unwrap_or(dst)
    }
}

/// A configured static route, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute<A = Ipv4Addr> {
    pub prefix: A,
    pub prefix_len: u8,
    pub via: Option<A>,
    pub port: Option<PortId>,
}

/// A port address with its prefix length, e.g. `10.0.0.1/16`: gives a connected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAddress<A = Ipv4Addr> {
    pub port: PortId,
    pub address: A,
    pub prefix_len: u8,
}

/// Why a static route could not be installed; `index` is its position in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub index: usize,
    pub reason: String,
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "route {}: {}", self.index, self.reason)
    }
}

impl std::error::Error for RouteError {}

/// Netmask for a prefix length (0..=32).
pub fn netmask(prefix_len: u8) -> u32 {
    u32::mask(prefix_len)
}

/// Whether `addr` lies in `prefix/len` (either family).
pub fn prefix_contains<A: RouteAddr>(prefix: A, len: u8, addr: A) -> bool {
    let m = A::Bits::mask(len);
    prefix.bits() & m == addr.bits() & m
}

/// Up to this many routes are searched linearly (one compare each, all in two or three cache
/// lines), which beats a hash probe per prefix length on an edge node's handful of routes.
const LINEAR_MAX: usize = 16;

/// An immutable longest-prefix-match table of one address family.
#[derive(Debug, Clone)]
pub struct RouteTable<A: RouteAddr = Ipv4Addr> {
    prefixes: PrefixTable<A::Bits, NextHop<A>>,
    /// The same routes, longest prefix first, when there are few: `(mask, network, hop)`.
    linear: Vec<(A::Bits, A::Bits, NextHop<A>)>,
}

impl<A: RouteAddr> Default for RouteTable<A> {
    fn default() -> Self {
        RouteTable {
            prefixes: PrefixTable::default(),
            linear: Vec::new(),
        }
    }
}

impl<A: RouteAddr> RouteTable<A> {
    /// Builds the table from port addresses (connected routes) and static routes. A static route
    /// `via` a gateway goes out of the port whose connected prefix holds the gateway; a static
    /// route may name its port instead (or as well), and must when its gateway is link-scoped
    /// (IPv6 link-local). A later static route for the same prefix replaces a connected one;
    /// two static routes for one prefix are an error.
    pub fn build(addrs: &[PortAddress<A>], statics: &[StaticRoute<A>]) -> Result<Self, RouteError> {
        let mut table = RouteTable::default();
        for a in addrs {
            let hop = NextHop {
                port: a.port,
                via: None,
                src: a.address,
                gateway_mac: None,
            };
            table.insert(a.address, a.prefix_len, hop);
        }
        let connected = table.clone();
        let port_src = |port: PortId| {
            // Prefer an address of global scope as the source of what we originate on a port.
            let mut on_port = addrs.iter().filter(|a| a.port == port);
            let first = on_port.clone().next().map(|a| a.address);
            on_port
                .find(|a| !a.address.link_scoped())
                .map(|a| a.address)
                .or(first)
        };
        let width = <A::Bits as Bits>::WIDTH;
        let mut seen: Vec<(A::Bits, u8)> = Vec::new();
        for (index, r) in statics.iter().enumerate() {
            let err = |reason: String| RouteError { index, reason };
            if r.prefix_len > width {
                return Err(err(format!("prefix length {} > {width}", r.prefix_len)));
            }
            let key = (r.prefix.bits() & A::Bits::mask(r.prefix_len), r.prefix_len);
            if seen.contains(&key) {
                return Err(err(format!(
                    "duplicate route for {}/{}",
                    A::from_bits(key.0),
                    r.prefix_len
                )));
            }
            seen.push(key);
            let on_port = |port: PortId, via: Option<A>| match port_src(port) {
                Some(src) => Ok(NextHop {
                    port,
                    via,
                    src,
                    gateway_mac: None,
                }),
                None => Err(err(format!(
                    "the route's port has no {} address",
                    A::FAMILY
                ))),
            };
            let hop = match (r.via, r.port) {
                (Some(via), Some(port)) if via.link_scoped() => on_port(port, Some(via))?,
                (Some(via), None) if via.link_scoped() => {
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
                    NextHop {
                        port: c.port,
                        via: Some(via),
                        src: c.src,
                        gateway_mac: None,
                    }
                }
                (None, Some(port)) => on_port(port, None)?,
                (None, None) => return Err(err("a route needs `via` or `port`".into())),
            };
            table.insert(r.prefix, r.prefix_len, hop);
        }
        if table.len() <= LINEAR_MAX {
            table.linear = table
                .prefixes
                .iter()
                .map(|(mask, net, hop)| (mask, net, *hop))
                .collect();
        }
        Ok(table)
    }

    /// Records the link-layer address of every gateway that `static_mac` knows (the static
    /// neighbours, by port and address), so forwarding through it needs no neighbour lookup.
    pub fn resolve_static(&mut self, static_mac: impl Fn(PortId, A) -> Option<MacAddr>) {
        let fill = |hop: &mut NextHop<A>| {
            hop.gateway_mac = hop.via.and_then(|via| static_mac(hop.port, via));
        };
        self.prefixes.values_mut().for_each(fill);
        self.linear.iter_mut().for_each(|(_, _, hop)| fill(hop));
    }

    fn insert(&mut self, prefix: A, len: u8, hop: NextHop<A>) {
        self.prefixes.insert(prefix.bits(), len, hop);
    }

    /// The longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, dst: A) -> Option<&NextHop<A>> {
        let d = dst.bits();
        if !self.linear.is_empty() {
            return self
                .linear
                .iter()
                .find(|(mask, net, _)| d & *mask == *net)
                .map(|(_, _, hop)| hop);
        }
        self.prefixes.lookup(d)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn table() -> RouteTable {
        let addrs = [
            PortAddress {
                port: 0,
                address: ip("10.0.0.1"),
                prefix_len: 16,
            },
            PortAddress {
                port: 1,
                address: ip("192.168.1.1"),
                prefix_len: 24,
            },
        ];
        let statics = [
            StaticRoute {
                prefix: ip("0.0.0.0"),
                prefix_len: 0,
                via: Some(ip("10.0.255.254")),
                port: None,
            },
            StaticRoute {
                prefix: ip("10.1.0.0"),
                prefix_len: 16,
                via: Some(ip("10.0.0.2")),
                port: None,
            },
            StaticRoute {
                prefix: ip("10.1.2.0"),
                prefix_len: 24,
                via: Some(ip("192.168.1.9")),
                port: None,
            },
        ];
        RouteTable::build(&addrs, &statics).unwrap()
    }

    #[test]
    fn test_longest_prefix_wins() {
        let t = table();
        assert_eq!(t.len(), 5);
        let h = t.lookup(ip("10.1.2.3")).unwrap();
        assert_eq!(
            (h.port, h.via, h.src),
            (1, Some(ip("192.168.1.9")), ip("192.168.1.1"))
        );
        let h = t.lookup(ip("10.1.3.3")).unwrap();
        assert_eq!((h.port, h.via), (0, Some(ip("10.0.0.2"))));
        let h = t.lookup(ip("10.0.7.7")).unwrap();
        assert_eq!((h.port, h.via), (0, None));
        assert_eq!(h.neighbor_for(ip("10.0.7.7")), ip("10.0.7.7"));
        let h = t.lookup(ip("8.8.8.8")).unwrap();
        assert_eq!(h.via, Some(ip("10.0.255.254")));
    }

    #[test]
    fn test_linear_and_hashed_lookups_agree() {
        let addrs = [PortAddress {
            port: 0,
            address: ip("10.0.0.1"),
            prefix_len: 8,
        }];
        // 40 routes: above the linear limit, so the hashed levels answer.
        let statics: Vec<StaticRoute> = (0..40u8)
            .map(|i| StaticRoute {
                prefix: Ipv4Addr::new(10, i, 0, 0),
                prefix_len: 16 + (i % 3) * 4,
                via: Some(Ipv4Addr::new(10, 0, 0, 2 + i)),
                port: None,
            })
            .collect();
        let big = RouteTable::build(&addrs, &statics).unwrap();
        assert!(big.linear.is_empty());
        let small = RouteTable::build(&addrs, &statics[..10]).unwrap();
        assert!(!small.linear.is_empty());
        for i in 0..10u8 {
            for host in [0u8, 1, 77, 255] {
                let d = Ipv4Addr::new(10, i, host, 9);
                assert_eq!(small.lookup(d), big.lookup(d), "{d}");
            }
        }
        assert_eq!(small.lookup(ip("11.0.0.1")), None);
    }

    #[test]
    fn test_ipv6_linear_and_hashed_lookups_agree() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let addrs = [PortAddress {
            port: 0,
            address: v6("2001:db8::1"),
            prefix_len: 32,
        }];
        let statics: Vec<StaticRoute<Ipv6Addr>> = (0..40u16)
            .map(|i| StaticRoute {
                prefix: Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 0),
                prefix_len: 48 + (i % 3) as u8 * 8,
                via: Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2 + i)),
                port: None,
            })
            .collect();
        let big = RouteTable::build(&addrs, &statics).unwrap();
        assert!(big.linear.is_empty());
        let small = RouteTable::build(&addrs, &statics[..10]).unwrap();
        assert!(!small.linear.is_empty());
        for i in 0..10u16 {
            for host in [0u16, 1, 0xffff] {
                let d = Ipv6Addr::new(0x2001, 0xdb8, i, host, 0, 0, 0, 9);
                assert_eq!(small.lookup(d), big.lookup(d), "{d}");
            }
        }
        assert_eq!(small.lookup(v6("2001:db9::1")), None);
    }

    #[test]
    fn test_a_link_local_gateway_needs_its_port() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let addrs = [
            PortAddress {
                port: 1,
                address: v6("fe80::1"),
                prefix_len: 64,
            },
            PortAddress {
                port: 1,
                address: v6("2001:db8::1"),
                prefix_len: 64,
            },
        ];
        let mut route = StaticRoute {
            prefix: Ipv6Addr::UNSPECIFIED,
            prefix_len: 0,
            via: Some(v6("fe80::99")),
            port: None,
        };
        let e = RouteTable::build(&addrs, std::slice::from_ref(&route)).unwrap_err();
        assert!(e.reason.contains("needs the route's port"), "{e}");
        route.port = Some(1);
        let t = RouteTable::build(&addrs, &[route]).unwrap();
        let hop = t.lookup(v6("2001:db8:5::5")).unwrap();
        // The source of what leaves by a link-local gateway is the port's global address.
        assert_eq!((hop.port, hop.src), (1, v6("2001:db8::1")));
    }

    #[test]
    fn test_static_gateways_are_resolved_in_place() {
        let mut t = table();
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        t.resolve_static(|_, a| (a == ip("10.0.0.2")).then_some(mac));
        assert_eq!(t.lookup(ip("10.1.3.3")).unwrap().gateway_mac, Some(mac));
        assert_eq!(t.lookup(ip("8.8.8.8")).unwrap().gateway_mac, None);
        assert_eq!(
            t.lookup(ip("10.0.7.7")).unwrap().gateway_mac,
            None,
            "connected"
        );
    }

    #[test]
    fn test_no_default_route_misses() {
        let addrs = [PortAddress {
            port: 0,
            address: ip("10.0.0.1"),
            prefix_len: 24,
        }];
        let t = RouteTable::build(&addrs, &[]).unwrap();
        assert!(t.lookup(ip("10.0.1.1")).is_none());
        assert!(t.lookup(ip("10.0.0.200")).is_some());
    }

    #[test]
    fn test_unreachable_gateway_is_an_error() {
        let addrs = [PortAddress {
            port: 0,
            address: ip("10.0.0.1"),
            prefix_len: 24,
        }];
        let statics = [StaticRoute {
            prefix: ip("0.0.0.0"),
            prefix_len: 0,
            via: Some(ip("172.16.0.1")),
            port: None,
        }];
        let e = RouteTable::build(&addrs, &statics).unwrap_err();
        assert_eq!(e.index, 0);
        assert!(e.reason.contains("172.16.0.1"), "{e}");
    }
}
