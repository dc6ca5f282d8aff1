//! `node:` — the node's name, addresses, NodePort addresses and zone.
//!
//! ```yaml
//! node: { name: node-a, addresses: ["10.0.0.1"], node_port_addresses: [primary], zone: z1 }
//! ```

use super::*;

/// `node:` — who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Kubernetes node name (matched against `nodeName` of endpoints). Never empty.
    pub name: String,
    /// The node's own addresses (NodePort destinations). May be empty.
    pub addresses: Vec<Ipv4Addr>,
    /// kube-proxy's `nodePortAddresses`: NodePorts answer only on node addresses inside one of
    /// these prefixes (`None`: on every node and port address).
    pub node_port_addresses: Option<Vec<NodePortAddresses>>,
    /// The node's zone (its `topology.kubernetes.io/zone` label) for topology-aware routing,
    /// when no Node object says otherwise.
    pub zone: Option<String>,
}

/// One entry of `node.node_port_addresses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// IPv4 addresses inside this prefix.
    Prefix(Cidr),
    /// IPv6 addresses inside this prefix.
    Prefix6(Cidr6),
    /// `primary`: the node's own addresses (`node.addresses`), as kube-proxy's keyword; for
    /// IPv6 the first IPv6 port address.
    Primary,
}

impl NodeConfig {
    /// Whether NodePorts listen on `addr` (one of the node's or its ports' addresses).
    pub fn node_port_on(&self, addr: Ipv4Addr) -> bool {
        match &self.node_port_addresses {
            None => true,
            Some(list) => list.iter().any(|e| match e {
                NodePortAddresses::Prefix(c) => c.contains(addr),
                NodePortAddresses::Prefix6(_) => false,
                NodePortAddresses::Primary => self.addresses.contains(&addr),
            }),
        }
    }

    /// [`Self::node_port_on`] for an IPv6 address; `primary` is the node's primary IPv6
    /// address. As in kube-proxy, a list with no entry for IPv6 (only IPv4 prefixes) leaves
    /// every IPv6 address open.
    pub fn node_port_on6(&self, addr: Ipv6Addr, primary: Option<Ipv6Addr>) -> bool {
        let Some(list) = &self.node_port_addresses else {
            return true;
        };
        let mut any6 = false;
        for e in list {
            match e {
                NodePortAddresses::Prefix(_) => {}
                NodePortAddresses::Prefix6(c) => {
                    any6 = true;
                    if c.contains(addr) {
                        return true;
                    }
                }
                NodePortAddresses::Primary => {
                    any6 = true;
                    if primary == Some(addr) {
                        return true;
                    }
                }
            }
        }
        !any6
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    name: String,
    #[serde(default)]
    addresses: Vec<Ipv4>,
    node_port_addresses: Option<Vec<String>>,
    zone: Option<String>,
}

pub(super) fn validate(raw: RawNode) -> Result<NodeConfig, Invalid> {
    if raw.name.trim().is_empty() {
        return invalid("node.name", "must not be empty");
    }
    let node_port_addresses = match raw.node_port_addresses {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return invalid(
                    "node.node_port_addresses",
                    "an empty list would disable every NodePort; leave the key out to listen on every address",
                );
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, entry) in list.iter().enumerate() {
                let e = if entry == "primary" {
                    NodePortAddresses::Primary
                } else if entry.contains(':') {
                    NodePortAddresses::Prefix6(entry.parse().map_err(|e: CidrParseError| {
                        (
                            format!("node.node_port_addresses[{i}]"),
                            format!("{} (or `primary`)", e.0),
                        )
                    })?)
                } else {
                    NodePortAddresses::Prefix(entry.parse().map_err(|e: CidrParseError| {
                        (
                            format!("node.node_port_addresses[{i}]"),
                            format!("{} (or `primary`)", e.0),
                        )
                    })?)
                };
                out.push(e);
            }
            Some(out)
        }
    };
    let node = NodeConfig {
        name: raw.name,
        addresses: raw.addresses.into_iter().map(|a| a.0).collect(),
        node_port_addresses,
        zone: raw.zone.filter(|z| !z.trim().is_empty()),
    };
    Ok(node)
}
