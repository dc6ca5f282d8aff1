//! IPv4 routing table: connected and static routes, longest-prefix match.
//!
//! The table is built once per snapshot and never changed in place. Lookup walks the prefix
//! lengths present, longest first, with one hash probe each; a node has a handful of distinct
//! lengths, so this is a few probes per packet (and flows cache nothing that could go stale).

use crate::lpm::{Bits, PrefixTable};
use crate::port::PortId;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// Where a routed packet goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Egress port.
    pub port: PortId,
    /// Gateway, or `None` for a connected destination (the destination is the next hop).
    pub via: Option<Ipv4Addr>,
    /// The port address used as source for traffic the node originates or SNATs on this route.
    pub src: Ipv4Addr,
    /// The gateway's link-layer address when it is a static neighbour, resolved when the table
    /// is built so the fast path skips the neighbour lookup ([`RouteTable::resolve_static`]).
    pub gateway_mac: Option<MacAddr>,
}

impl NextHop {
    /// The address whose link-layer address the frame must be sent to.
    pub fn neighbor_for(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.via.unwrap_or(dst)
    }
}

/// A configured static route, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    pub via: Option<Ipv4Addr>,
    pub port: Option<PortId>,
}

/// A port address with its prefix length, e.g. `10.0.0.1/16`: gives a connected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAddress {
    pub port: PortId,
    pub address: Ipv4Addr,
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

/// Whether `addr` lies in `prefix/len`.
pub fn prefix_contains(prefix: Ipv4Addr, len: u8, addr: Ipv4Addr) -> bool {
    let m = netmask(len);
    u32::from(prefix) & m == u32::from(addr) & m
}

/// Up to this many routes are searched linearly (one compare each, all in two or three cache
/// lines), which beats a hash probe per prefix length on an edge node's handful of routes.
const LINEAR_MAX: usize = 16;

/// An immutable longest-prefix-match table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    prefixes: PrefixTable<u32, NextHop>,
    /// The same routes, longest prefix first, when there are few: `(mask, network, hop)`.
    linear: Vec<(u32, u32, NextHop)>,
}

impl RouteTable {
    /// Builds the table from port addresses (connected routes) and static routes. A static route
    /// `via` a gateway goes out of the port whose connected prefix holds the gateway; a static
    /// route may name its port instead (or as well). A later static route for the same prefix
    /// replaces a connected one; two static routes for one prefix are an error.
    pub fn build(addrs: &[PortAddress], statics: &[StaticRoute]) -> Result<RouteTable, RouteError> {
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
        let mut seen: Vec<(u32, u8)> = Vec::new();
        for (index, r) in statics.iter().enumerate() {
            let err = |reason: String| RouteError { index, reason };
            if r.prefix_len > 32 {
                return Err(err(format!("prefix length {} > 32", r.prefix_len)));
            }
            let key = (u32::from(r.prefix) & netmask(r.prefix_len), r.prefix_len);
            if seen.contains(&key) {
                return Err(err(format!(
                    "duplicate route for {}/{}",
                    Ipv4Addr::from(key.0),
                    r.prefix_len
                )));
            }
            seen.push(key);
            let hop = match (r.via, r.port) {
                (Some(via), port) => {
                    let Some(c) = connected.lookup(via) else {
                        return Err(err(format!(
                            "gateway {via} is not on any port's connected prefix"
                        )));
                    };
                    if let Some(p) = port {
                        if p != c.port {
                            return Err(err(format!(
                                "gateway {via} is reached through another port than the one named"
                            )));
                        }
                    }
                    NextHop {
                        port: c.port,
                        via: Some(via),
                        src: c.src,
                        gateway_mac: None,
                    }
                }
                (None, Some(port)) => {
                    let Some(src) = addrs.iter().find(|a| a.port == port).map(|a| a.address) else {
                        return Err(err("the route's port has no IPv4 address".into()));
                    };
                    NextHop {
                        port,
                        via: None,
                        src,
                        gateway_mac: None,
                    }
                }
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
    /// neighbours), so forwarding through it needs no neighbour lookup.
    pub fn resolve_static(&mut self, static_mac: impl Fn(Ipv4Addr) -> Option<MacAddr>) {
        let fill = |hop: &mut NextHop| hop.gateway_mac = hop.via.and_then(&static_mac);
        self.prefixes.values_mut().for_each(fill);
        for (_, _, hop) in &mut self.linear {
            fill(hop);
        }
    }

    fn insert(&mut self, prefix: Ipv4Addr, len: u8, hop: NextHop) {
        self.prefixes.insert(u32::from(prefix), len, hop);
    }

    /// The longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&NextHop> {
        let d = u32::from(dst);
        if !self.linear.is_empty() {
            return self
                .linear
                .iter()
                .find(|(mask, net, _)| d & mask == *net)
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
    fn test_static_gateways_are_resolved_in_place() {
        let mut t = table();
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        t.resolve_static(|a| (a == ip("10.0.0.2")).then_some(mac));
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
