//! `node:` — the node's name, addresses, NodePort addresses and zone, and what the kernel side
//! needs: this node's pod CIDRs, the cluster's CIDRs, the service loopback addresses.
//!
//! ```yaml
//! node: { name: node-a, addresses: ["10.0.0.1"], node_port_addresses: [primary], zone: z1,
//!         pod_cidrs: ["10.244.1.0/24"], cluster_cidrs: ["10.244.0.0/16"] }
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
    /// This node's pod CIDRs (its Node's `spec.podCIDRs`; the Node object's are added when it
    /// has some): routed to the kernel through the first port with a `host_interface`, where
    /// the CNI plugin attached the pods.
    pub pod_cidrs: Vec<Cidr>,
    pub pod_cidrs6: Vec<Cidr6>,
    /// kube-proxy's `clusterCIDR`: ClusterIP traffic from a source outside these is SNATed.
    pub cluster_cidrs: Vec<Cidr>,
    pub cluster_cidrs6: Vec<Cidr6>,
    /// The source of SNATed flows to endpoints behind the kernel (Cilium's service loopback
    /// address): not one of the node's, routed by the kernel to the host interface.
    pub service_loopback: Ipv4Addr,
    pub service_loopback6: Ipv6Addr,
}

/// The default service loopback addresses: Cilium's IPv4 one, and an address of nodegate's
/// own in the unique local range.
pub const SERVICE_LOOPBACK: Ipv4Addr = Ipv4Addr::new(169, 254, 42, 1);
pub const SERVICE_LOOPBACK6: Ipv6Addr = Ipv6Addr::new(0xfd6e, 0x6761, 0x7465, 0, 0, 0, 0, 1);

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
    #[serde(default)]
    pod_cidrs: Vec<String>,
    #[serde(default)]
    cluster_cidrs: Vec<String>,
    service_loopback_address: Option<String>,
    service_loopback_address6: Option<String>,
}

/// A list of IPv4 and IPv6 prefixes (`node.FIELD`), split by family.
fn prefixes(field: &str, list: &[String]) -> Result<(Vec<Cidr>, Vec<Cidr6>), Invalid> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (i, entry) in list.iter().enumerate() {
        let at = || format!("node.{field}[{i}]");
        if entry.contains(':') {
            let c: Cidr6 = entry.parse().map_err(|e: CidrParseError| (at(), e.0))?;
            if c != c.network() {
                return invalid(
                    at(),
                    format!("{entry} has host bits set; write {}", c.network()),
                );
            }
            v6.push(c);
        } else {
            let c: Cidr = entry.parse().map_err(|e: CidrParseError| (at(), e.0))?;
            if c != c.network() {
                return invalid(
                    at(),
                    format!("{entry} has host bits set; write {}", c.network()),
                );
            }
            v4.push(c);
        }
    }
    Ok((v4, v6))
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
    let (pod_cidrs, pod_cidrs6) = prefixes("pod_cidrs", &raw.pod_cidrs)?;
    let (cluster_cidrs, cluster_cidrs6) = prefixes("cluster_cidrs", &raw.cluster_cidrs)?;
    let addresses: Vec<Ipv4Addr> = raw.addresses.into_iter().map(|a| a.0).collect();
    let service_loopback = match raw.service_loopback_address.as_deref() {
        None => SERVICE_LOOPBACK,
        Some(s) => match s.parse::<Ipv4Addr>() {
            Ok(a) if a.is_unspecified() || a.is_broadcast() || a.is_multicast() => {
                return invalid(
                    "node.service_loopback_address",
                    format!("{a} is not a unicast address"),
                );
            }
            Ok(a) if addresses.contains(&a) => {
                return invalid(
                    "node.service_loopback_address",
                    format!("{a} is a node address; the kernel would keep the replies"),
                );
            }
            Ok(a) => a,
            Err(_) => {
                return invalid(
                    "node.service_loopback_address",
                    format!("`{s}` is not an IPv4 address"),
                )
            }
        },
    };
    let service_loopback6 = match raw.service_loopback_address6.as_deref() {
        None => SERVICE_LOOPBACK6,
        Some(s) => match s.parse::<Ipv6Addr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_loopback() => {
                return invalid(
                    "node.service_loopback_address6",
                    format!("{a} is not a unicast address"),
                );
            }
            Ok(a) => a,
            Err(_) => {
                return invalid(
                    "node.service_loopback_address6",
                    format!("`{s}` is not an IPv6 address"),
                )
            }
        },
    };
    let node = NodeConfig {
        name: raw.name,
        addresses,
        node_port_addresses,
        zone: raw.zone.filter(|z| !z.trim().is_empty()),
        pod_cidrs,
        pod_cidrs6,
        cluster_cidrs,
        cluster_cidrs6,
        service_loopback,
        service_loopback6,
    };
    Ok(node)
}
