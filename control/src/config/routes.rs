//! `routes:` and `neighbors:` — static routes and neighbours, IPv4 and IPv6 in the same lists.
//!
//! ```yaml
//! routes:
//!   - { prefix: "0.0.0.0/0", via: "10.0.255.254" }
//!   - { prefix: "::/0", via: "fd00::fffe" }
//! neighbors:
//!   - { address: "10.0.255.254", mac: "02:00:00:00:00:fe" }
//! ```

use super::*;

/// `routes[]` — an IPv6 static route (prefix and `via` are IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6Config {
    /// Position in the YAML `routes` list (for error messages: `routes[index]`).
    pub index: usize,
    /// Destination prefix, host bits cleared.
    pub prefix: Cidr6,
    /// Next hop; `None` means directly connected through `port`.
    pub via: Option<Ipv6Addr>,
    /// Outgoing port (a configured port name); required for a link-local `via`.
    pub port: Option<String>,
}

/// `neighbors[]` — a static IPv6 neighbour (NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor6Config {
    /// Position in the YAML `neighbors` list (for error messages: `neighbors[index]`).
    pub index: usize,
    pub address: Ipv6Addr,
    /// Unicast MAC.
    pub mac: [u8; 6],
    /// Port the neighbour is reached through (a configured port name).
    pub port: Option<String>,
}

/// `routes[]` — a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Destination prefix, host bits cleared.
    pub prefix: Cidr,
    /// Next hop; `None` means directly connected through `port`.
    pub via: Option<Ipv4Addr>,
    /// Outgoing port (a configured port name).
    pub port: Option<String>,
}

/// `neighbors[]` — a static ARP entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    pub address: Ipv4Addr,
    /// Unicast MAC.
    pub mac: [u8; 6],
    /// Port the neighbour is reached through (a configured port name).
    pub port: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    prefix: RawAnyCidr,
    via: Option<RawAnyIp>,
    port: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbor {
    address: RawAnyIp,
    mac: Mac,
    port: Option<String>,
}

pub(super) fn validate_routes(
    raw: Vec<RawRoute>,
    port_index: &HashMap<String, usize>,
) -> Result<(Vec<RouteConfig>, Vec<Route6Config>), Invalid> {
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.len());
    let mut routes6: Vec<Route6Config> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let prefix = match r.prefix {
            RawAnyCidr::V4(c) => c.network(),
            RawAnyCidr::V6(c) => {
                routes6.push(validate_route6(i, c.network(), r.via, r.port, &routes6)?);
                check_port_ref(
                    port_index,
                    format!("routes[{i}].port"),
                    &routes6[routes6.len() - 1].port,
                )?;
                continue;
            }
        };
        let via = match r.via {
            None => None,
            Some(RawAnyIp::V4(v)) => Some(v),
            Some(RawAnyIp::V6(v)) => {
                return invalid(
                    format!("routes[{i}].via"),
                    format!("{v} is an IPv6 next hop for the IPv4 prefix {prefix}"),
                )
            }
        };
        if via.is_none() && r.port.is_none() {
            return invalid(
                format!("routes[{i}]"),
                "a route needs `via` (next hop), `port` (directly connected) or both",
            );
        }
        check_port_ref(port_index, format!("routes[{i}].port"), &r.port)?;
        if let Some(v) = via {
            if v.is_unspecified() || v.is_multicast() || v.is_broadcast() {
                return invalid(
                    format!("routes[{i}].via"),
                    format!("{v} is not a usable next hop"),
                );
            }
        }
        if let Some(j) = routes.iter().position(|x| x.prefix == prefix) {
            // Report the YAML position of the earlier route, IPv6 entries counted.
            let j = yaml_index(j, routes6.iter().map(|r| r.index));
            return invalid(
                format!("routes[{i}].prefix"),
                format!("duplicate route for {prefix} (also routes[{j}])"),
            );
        }
        routes.push(RouteConfig {
            prefix,
            via,
            port: r.port,
        });
    }
    Ok((routes, routes6))
}

pub(super) fn validate_neighbors(
    raw: Vec<RawNeighbor>,
    port_index: &HashMap<String, usize>,
) -> Result<(Vec<NeighborConfig>, Vec<Neighbor6Config>), Invalid> {
    let mut neighbors: Vec<NeighborConfig> = Vec::with_capacity(raw.len());
    let mut neighbors6: Vec<Neighbor6Config> = Vec::new();
    for (i, n) in raw.into_iter().enumerate() {
        check_unicast_mac(format!("neighbors[{i}].mac"), &n.mac.0)?;
        check_port_ref(port_index, format!("neighbors[{i}].port"), &n.port)?;
        let address = match n.address {
            RawAnyIp::V4(a) => a,
            RawAnyIp::V6(address) => {
                if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
                    return invalid(
                        format!("neighbors[{i}].address"),
                        format!("{address} is not a usable neighbor address"),
                    );
                }
                if let Some(x) = neighbors6
                    .iter()
                    .find(|x| x.address == address && x.port == n.port)
                {
                    return invalid(
                        format!("neighbors[{i}].address"),
                        format!("duplicate neighbor {address} (also neighbors[{}])", x.index),
                    );
                }
                neighbors6.push(Neighbor6Config {
                    index: i,
                    address,
                    mac: n.mac.0,
                    port: n.port,
                });
                continue;
            }
        };
        if let Some(j) = neighbors
            .iter()
            .position(|x| x.address == address && x.port == n.port)
        {
            let j = yaml_index(j, neighbors6.iter().map(|n| n.index));
            return invalid(
                format!("neighbors[{i}].address"),
                format!("duplicate neighbor {address} (also neighbors[{j}])"),
            );
        }
        neighbors.push(NeighborConfig {
            address,
            mac: n.mac.0,
            port: n.port,
        });
    }
    Ok((neighbors, neighbors6))
}

fn validate_route6(
    i: usize,
    prefix: Cidr6,
    via: Option<RawAnyIp>,
    port: Option<String>,
    seen: &[Route6Config],
) -> Result<Route6Config, Invalid> {
    let via = match via {
        None => None,
        Some(RawAnyIp::V6(v)) => Some(v),
        Some(RawAnyIp::V4(v)) => {
            return invalid(
                format!("routes[{i}].via"),
                format!("{v} is an IPv4 next hop for the IPv6 prefix {prefix}"),
            )
        }
    };
    if via.is_none() && port.is_none() {
        return invalid(
            format!("routes[{i}]"),
            "a route needs `via` (next hop), `port` (directly connected) or both",
        );
    }
    if let Some(v) = via {
        if v.is_unspecified() || v.is_multicast() || v.is_loopback() {
            return invalid(
                format!("routes[{i}].via"),
                format!("{v} is not a usable next hop"),
            );
        }
        if v.is_unicast_link_local() && port.is_none() {
            return invalid(
                format!("routes[{i}].port"),
                format!("the link-local next hop {v} needs `port` (the link it is on)"),
            );
        }
    }
    if let Some(r) = seen.iter().find(|x| x.prefix == prefix) {
        return invalid(
            format!("routes[{i}].prefix"),
            format!("duplicate route for {prefix} (also routes[{}])", r.index),
        );
    }
    Ok(Route6Config {
        index: i,
        prefix,
        via,
        port,
    })
}
