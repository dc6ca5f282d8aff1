//! Builds the data plane's immutable [`Tables`] from the configuration and the cluster state.
//!
//! Every kube-proxy policy decision is taken here, once per change, so that the workers only
//! look things up: which endpoints a frontend may use (ready first, serving-and-terminating as a
//! fallback), `internalTrafficPolicy` for ClusterIPs, `externalTrafficPolicy` for node ports,
//! load balancer and external IPs (Cluster: any endpoint and SNAT; Local: local endpoints only,
//! client address kept), and what a frontend without a usable endpoint does (reject when the
//! Service has no endpoint at all, drop when the policy filtered them all out). Topology hints
//! (`hints.forNodes`, `hints.forZones`) narrow cluster-wide endpoints as kube-proxy's
//! `topologyModeFromHints` does; `loadBalancerSourceRanges` guard the load balancer IPs;
//! `node.node_port_addresses` says where NodePorts listen. The answers of the Services' health
//! checks (`healthCheckNodePort`: how many ready endpoints the Service has on this node) are
//! computed here too ([`health_checks`]).

use crate::config::{yaml_index, Config};
use crate::model::{
    ClusterState, Endpoint, EndpointSlice, Protocol, Service, ServicePort, ServiceType,
};
use dataplane::ip6::{Ip6Item, Ip6Tables, PortAddress6, StaticNeighbor6, StaticRoute6};
use dataplane::route::{PortAddress, RouteTable, StaticRoute};
use dataplane::service::{
    Address, Backend, BackendSet, Frontend, FrontendAction, FrontendKey, FrontendKind, HealthCheck,
    HealthChecks, ServiceTable, ServingEndpoints, SourceRanges, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};
use dataplane::tables::{KernelSide, PortInfo, Tables};
use dataplane::wire::MacAddr;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Why the data plane's tables could not be built from a configuration and the cluster state
/// (a route through an unknown gateway, more frontends than fit...): names the configuration's
/// file and the field at fault. The last good tables keep forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct SnapshotError {
    pub file: std::path::PathBuf,
    pub field: String,
    pub reason: String,
}

/// Builds the node part (ports, addresses, routes, static neighbours) and the service table.
/// Errors name the configuration field at fault; problems in the cluster state that kube-proxy
/// would also tolerate (two Services claiming one address and port) come back as warnings.
pub fn build(cfg: &Config, state: &ClusterState) -> Result<(Tables, Vec<String>), SnapshotError> {
    build_cached(cfg, state, &mut BuildCache::default())
}

/// The backend sets (each with its Maglev table) of the last build, by backend list: a rebuild
/// after a change to a few Services builds only their tables instead of every one (with 50k
/// Services, a rebuild went from 2.9 s to the parse-and-index part), and Services with the same
/// endpoints share one set. Keep one per control thread and pass it to [`build_cached`].
#[derive(Default)]
pub struct BuildCache {
    v4: SetCache<Ipv4Addr>,
    v6: SetCache<Ipv6Addr>,
}

impl BuildCache {
    /// Sets kept for the next build (those the last successful build used).
    pub fn len(&self) -> usize {
        self.v4.prev.len() + self.v6.prev.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct SetCache<A> {
    /// What the last successful build used.
    prev: HashMap<Vec<Backend<A>>, Arc<BackendSet<A>>>,
    /// What this build uses so far.
    next: HashMap<Vec<Backend<A>>, Arc<BackendSet<A>>>,
}

impl<A> Default for SetCache<A> {
    fn default() -> Self {
        SetCache {
            prev: HashMap::new(),
            next: HashMap::new(),
        }
    }
}

impl<A: Address> SetCache<A> {
    /// The set of `backends` (`None` when empty): this build's, the last build's, or new.
    fn get(&mut self, mut backends: Vec<Backend<A>>) -> Option<Arc<BackendSet<A>>> {
        // The same normal form as `BackendSet::new`, so equal sets have equal keys.
        backends.sort_by_key(|b| (b.addr, b.port));
        backends.dedup_by_key(|b| (b.addr, b.port));
        if backends.is_empty() {
            return None;
        }
        if let Some(set) = self.next.get(&backends) {
            return Some(set.clone());
        }
        let set = match self.prev.remove(&backends) {
            Some(set) => set,
            None => Arc::new(BackendSet::new(backends.clone())?),
        };
        self.next.insert(backends, set.clone());
        Some(set)
    }

    /// The build succeeded: what it used is what the next one starts from.
    fn commit(&mut self) {
        self.prev = std::mem::take(&mut self.next);
    }

    /// The build failed: the last good build's sets stay.
    fn abandon(&mut self) {
        for (k, v) in self.next.drain() {
            self.prev.insert(k, v);
        }
    }
}

/// [`build`] reusing the backend sets of the last build through `cache`.
pub fn build_cached(
    cfg: &Config,
    state: &ClusterState,
    cache: &mut BuildCache,
) -> Result<(Tables, Vec<String>), SnapshotError> {
    let built = build_inner(cfg, state, cache);
    if built.is_ok() {
        cache.v4.commit();
        cache.v6.commit();
    } else {
        cache.v4.abandon();
        cache.v6.abandon();
    }
    built
}

fn build_inner(
    cfg: &Config,
    state: &ClusterState,
    cache: &mut BuildCache,
) -> Result<(Tables, Vec<String>), SnapshotError> {
    let err = |field: String, reason: String| SnapshotError {
        file: cfg.file.clone(),
        field,
        reason,
    };
    let ports: Vec<PortInfo> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| PortInfo {
            name: p.name.clone(),
            mac: MacAddr(p.mac.unwrap_or_else(|| default_mac(i))),
            addresses: p
                .addresses
                .iter()
                .map(|c| (c.address, c.prefix_len))
                .collect(),
        })
        .collect();
    let port_id = |name: &str| {
        cfg.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    };

    let addrs: Vec<PortAddress> = cfg
        .ports
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p.addresses.iter().map(move |c| PortAddress {
                port: i as u16,
                address: c.address,
                prefix_len: c.prefix_len,
            })
        })
        .collect();
    let mut statics: Vec<StaticRoute> = cfg
        .routes
        .iter()
        .map(|r| StaticRoute {
            prefix: r.prefix.address,
            prefix_len: r.prefix.prefix_len,
            via: r.via,
            port: r.port.as_deref().and_then(port_id),
        })
        .collect();
    let mut warnings = Vec::new();
    let kernel = KernelRoutes::new(cfg, state);
    let pods4 = kernel.pods(
        &cfg.node
            .pod_cidrs
            .iter()
            .map(|c| (c.address, c.prefix_len))
            .collect::<Vec<_>>(),
        &mut warnings,
    );
    let pods4 = pods4.map_err(|(f, r)| err(f, r))?;
    let configured4: Vec<(Ipv4Addr, u8)> =
        statics.iter().map(|r| (r.prefix, r.prefix_len)).collect();
    statics.extend(
        kernel
            .routes(
                &pods4,
                &configured4,
                |p| {
                    cfg.ports[usize::from(p)]
                        .addresses
                        .first()
                        .map(|c| c.address)
                },
                &mut warnings,
            )
            .map_err(|(f, r)| err(f, r))?,
    );
    let routes = RouteTable::build(&addrs, &statics).map_err(|e| {
        if e.index >= cfg.routes.len() {
            return err("node.pod_cidrs".into(), e.reason);
        }
        let at = yaml_index(e.index, cfg.routes6.iter().map(|r| r.index));
        err(format!("routes[{at}]"), e.reason)
    })?;

    let mut neighbors = hashbrown::HashMap::new();
    for (i, n) in cfg.neighbors.iter().enumerate() {
        if routes.lookup(n.address).is_none_or(|h| h.via.is_some()) {
            let i = yaml_index(i, cfg.neighbors6.iter().map(|n| n.index));
            return Err(err(
                format!("neighbors[{i}].address"),
                format!("{} is not on any port's connected prefix", n.address),
            ));
        }
        neighbors.insert(n.address, MacAddr(n.mac));
    }
    let mut routes = routes;
    routes.resolve_static(|_, gw| neighbors.get(&gw).copied());

    let mut local: Vec<Ipv4Addr> = cfg.node.addresses.clone();
    for a in &addrs {
        if !local.contains(&a.address) {
            local.push(a.address);
        }
    }

    let pods6 = kernel
        .pods(
            &cfg.node
                .pod_cidrs6
                .iter()
                .map(|c| (c.address, c.prefix_len))
                .collect::<Vec<_>>(),
            &mut warnings,
        )
        .map_err(|(f, r)| err(f, r))?;
    let ip6 = ip6_tables(cfg, &port_id, &kernel, &pods6, &mut warnings)?;
    if kernel.port.is_some() && local.contains(&cfg.node.service_loopback) {
        return Err(err(
            "node.service_loopback_address".into(),
            format!(
                "{} is an address of the node; the kernel would keep the replies",
                cfg.node.service_loopback
            ),
        ));
    }
    let kernel_side = match kernel.port {
        Some(_) => KernelSide {
            loopback4: Some(cfg.node.service_loopback),
            loopback6: Some(cfg.node.service_loopback6),
            cluster4: cfg
                .node
                .cluster_cidrs
                .iter()
                .map(|c| (c.address, c.prefix_len))
                .collect(),
            cluster6: cfg
                .node
                .cluster_cidrs6
                .iter()
                .map(|c| (c.address, c.prefix_len))
                .collect(),
        },
        None => KernelSide {
            cluster4: cfg
                .node
                .cluster_cidrs
                .iter()
                .map(|c| (c.address, c.prefix_len))
                .collect(),
            cluster6: cfg
                .node
                .cluster_cidrs6
                .iter()
                .map(|c| (c.address, c.prefix_len))
                .collect(),
            ..KernelSide::default()
        },
    };

    // NodePorts listen on the node's addresses that `node.node_port_addresses` allows.
    let node_port_addrs: Vec<Ipv4Addr> = local
        .iter()
        .copied()
        .filter(|&a| cfg.node.node_port_on(a))
        .collect();
    let node = NodeView {
        name: &cfg.node.name,
        // The Node object's zone label wins over the configuration's.
        zone: state
            .node
            .as_ref()
            .and_then(|n| n.zone.as_deref())
            .or(cfg.node.zone.as_deref()),
        node_ports: &node_port_addrs,
        addresses: &local,
    };
    let (services, warnings4) = service_table_cached(state, &node, &mut cache.v4);
    warnings.extend(warnings4);

    // IPv6: every port's IPv6 address is the node's (there is no `node.addresses` for IPv6).
    let mut local6: Vec<Ipv6Addr> = Vec::new();
    for a in cfg.ports.iter().flat_map(|p| p.addresses6.iter()) {
        if !local6.contains(&a.address) {
            local6.push(a.address);
        }
    }
    let primary6 = local6.first().copied();
    let node_ports6: Vec<Ipv6Addr> = local6
        .iter()
        .copied()
        .filter(|&a| cfg.node.node_port_on6(a, primary6))
        .collect();
    let node6 = NodeView {
        name: node.name,
        zone: node.zone,
        node_ports: &node_ports6,
        addresses: &local6,
    };
    let (services6, warnings6) = service_table_cached(state, &node6, &mut cache.v6);
    warnings.extend(warnings6);
    let (health, health_warnings) = health_checks(state, &cfg.node.name);
    warnings.extend(health_warnings);
    Ok((
        Tables {
            generation: 0,
            ports,
            local,
            routes,
            neighbors,
            services,
            services6,
            health,
            ip6,
            kernel: kernel_side,
        },
        warnings,
    ))
}

/// The IPv6 part: port addresses, `routes6`, `neighbors6`. Errors name the YAML entry
/// (`routes[i]`, `neighbors[i].address`) by its position in the file's list.
fn ip6_tables(
    cfg: &Config,
    port_id: &dyn Fn(&str) -> Option<u16>,
    kernel: &KernelRoutes,
    pods: &[(Ipv6Addr, u8)],
    warnings: &mut Vec<String>,
) -> Result<Ip6Tables, SnapshotError> {
    let addrs: Vec<PortAddress6> = cfg
        .ports
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p.addresses6.iter().map(move |c| PortAddress6 {
                port: i as u16,
                address: c.address,
                prefix_len: c.prefix_len,
            })
        })
        .collect();
    let mut statics: Vec<StaticRoute6> = cfg
        .routes6
        .iter()
        .map(|r| StaticRoute6 {
            prefix: r.prefix.address,
            prefix_len: r.prefix.prefix_len,
            via: r.via,
            port: r.port.as_deref().and_then(port_id),
        })
        .collect();
    let configured: Vec<(Ipv6Addr, u8)> =
        statics.iter().map(|r| (r.prefix, r.prefix_len)).collect();
    let global6 = |p: u16| {
        let on = &cfg.ports[usize::from(p)].addresses6;
        on.iter()
            .find(|c| !c.address.is_unicast_link_local())
            .map(|c| c.address)
    };
    let routes = kernel
        .routes(pods, &configured, global6, warnings)
        .map_err(|(field, reason)| SnapshotError {
            file: cfg.file.clone(),
            field,
            reason,
        })?;
    statics.extend(routes);
    let neighbors: Vec<StaticNeighbor6> = cfg
        .neighbors6
        .iter()
        .map(|n| StaticNeighbor6 {
            address: n.address,
            mac: MacAddr(n.mac),
            port: n.port.as_deref().and_then(port_id),
        })
        .collect();
    Ip6Tables::build(cfg.ports.len(), &addrs, &statics, &neighbors, &[]).map_err(|e| {
        let field = match e.item {
            Ip6Item::Route => cfg.routes6.get(e.index).map_or_else(
                || "node.pod_cidrs".to_string(),
                |r| format!("routes[{}]", r.index),
            ),
            Ip6Item::Neighbor => cfg.neighbors6.get(e.index).map_or_else(
                || "neighbors".to_string(),
                |n| format!("neighbors[{}].address", n.index),
            ),
        };
        SnapshotError {
            file: cfg.file.clone(),
            field,
            reason: e.reason,
        }
    })
}

/// This node's pod CIDRs, routed to the kernel: through the first port with a `host_interface`,
/// via that port's own address, so that `ip-output` finds no neighbour for it and hands the
/// packet to the kernel (which forwards it to the pod, on the CNI plugin's bridge or veth).
struct KernelRoutes<'a> {
    /// The port whose host interface leads to the pods.
    port: Option<u16>,
    /// The Node object's `spec.podCIDRs`.
    from_node: &'a [(std::net::IpAddr, u8)],
}

impl<'a> KernelRoutes<'a> {
    fn new(cfg: &Config, state: &'a ClusterState) -> KernelRoutes<'a> {
        KernelRoutes {
            port: cfg
                .ports
                .iter()
                .position(|p| p.host_interface.is_some())
                .map(|i| i as u16),
            from_node: state.node.as_ref().map_or(&[][..], |n| &n.pod_cidrs[..]),
        }
    }

    /// The configured pod CIDRs of family `A` and the Node's, without repeats. Configured ones
    /// with no host interface to reach them are an error; the Node's are then left out with a
    /// warning (a node whose pods are nodegate ports needs no route to the kernel).
    fn pods<A: Address + dataplane::route::RouteAddr>(
        &self,
        configured: &[(A, u8)],
        warnings: &mut Vec<String>,
    ) -> Result<Vec<(A, u8)>, (String, String)> {
        let mut out: Vec<(A, u8)> = configured.to_vec();
        let node: Vec<(A, u8)> = self
            .from_node
            .iter()
            .filter_map(|&(ip, len)| A::of(ip).map(|a| (a, len)))
            .collect();
        if self.port.is_none() {
            if !out.is_empty() {
                return Err((
                    "node.pod_cidrs".into(),
                    "no port has a host_interface to reach the pods through".into(),
                ));
            }
            if !node.is_empty() {
                warnings.push(format!(
                    "the Node's spec.podCIDRs ({}) are not routed: no port has a host_interface",
                    node.iter()
                        .map(|(a, l)| format!("{a}/{l}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            return Ok(out);
        }
        for n in node {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Static routes for `pods` via the kernel port's address (`addr`), except prefixes a
    /// configured route already has (that route wins, with a warning).
    fn routes<A: dataplane::route::RouteAddr>(
        &self,
        pods: &[(A, u8)],
        configured: &[(A, u8)],
        addr: impl Fn(u16) -> Option<A>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<StaticRoute<A>>, (String, String)> {
        let Some(port) = self.port else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for &(prefix, prefix_len) in pods {
            if configured.contains(&(prefix, prefix_len)) {
                warnings.push(format!(
                    "pod CIDR {prefix}/{prefix_len}: a configured route has the same prefix and wins"
                ));
                continue;
            }
            let Some(via) = addr(port) else {
                return Err((
                    "node.pod_cidrs".into(),
                    format!(
                        "the port with the host_interface has no {} address to route {prefix}/{prefix_len} to the kernel by",
                        A::FAMILY
                    ),
                ));
            };
            out.push(StaticRoute {
                prefix,
                prefix_len,
                via: Some(via),
                port: Some(port),
            });
        }
        Ok(out)
    }
}

/// A locally administered MAC for a port that has none configured: `02:6e:67:00:00:<i+1>`.
pub fn default_mac(index: usize) -> [u8; 6] {
    [
        0x02,
        0x6e,
        0x67,
        0,
        (index >> 8) as u8,
        (index as u8).wrapping_add(1),
    ]
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
        Protocol::Sctp => PROTO_SCTP,
    }
}

/// One endpoint of one Service port, conditions merged across slices.
#[derive(Debug, Clone)]
struct Candidate<A> {
    addr: A,
    port: u16,
    ready: bool,
    serving_terminating: bool,
    /// `serving` (a ready endpoint serves even where a producer left `serving` unset).
    serving: bool,
    local: bool,
    zone_hints: Vec<String>,
    node_hints: Vec<String>,
    /// Ready and not terminating: counted by the health check.
    ready_not_terminating: bool,
}

/// kube-proxy's topology mode for a Service port's cluster-wide endpoints
/// (`topologyModeFromHints`): when every ready endpoint carries node hints and one names this
/// node, only those; else when every ready endpoint carries zone hints and one names this
/// node's zone, only those; else all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    All,
    SameNode,
    SameZone,
}

fn topology<A: Address>(cands: &[Candidate<A>], node: &NodeView<A>) -> Topology {
    let ready = || cands.iter().filter(|c| c.ready);
    if ready().next().is_none() {
        return Topology::All;
    }
    if ready().all(|c| !c.node_hints.is_empty())
        && ready().any(|c| c.node_hints.iter().any(|n| n == node.name))
    {
        return Topology::SameNode;
    }
    if let Some(zone) = node.zone {
        if ready().all(|c| !c.zone_hints.is_empty())
            && ready().any(|c| c.zone_hints.iter().any(|z| z == zone))
        {
            return Topology::SameZone;
        }
    }
    Topology::All
}

impl Topology {
    fn allows<A: Address>(self, c: &Candidate<A>, node: &NodeView<A>) -> bool {
        match self {
            Topology::All => true,
            Topology::SameNode => c.node_hints.iter().any(|n| n == node.name),
            Topology::SameZone => node
                .zone
                .is_some_and(|zone| c.zone_hints.iter().any(|z| z == zone)),
        }
    }
}

/// The EndpointSlices of each Service, found once per build: looking them up per Service port
/// by scanning every slice made a rebuild quadratic (10k Services: 1.5 s, 50k: minutes).
struct Slices<'a> {
    by_service: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Slices<'a> {
    fn new(state: &'a ClusterState) -> Slices<'a> {
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in &state.endpoint_slices {
            by_service
                .entry((s.namespace.as_str(), s.service_name.as_str()))
                .or_default()
                .push(s);
        }
        Slices { by_service }
    }

    fn of(&self, svc: &'a Service) -> &[&'a EndpointSlice] {
        self.by_service
            .get(&(svc.namespace.as_str(), svc.name.as_str()))
            .map_or(&[], Vec::as_slice)
    }
}

/// The endpoints of `sp` of family `A` from every slice of `svc`, deduplicated by address (a
/// pod can sit in two slices while they are being rebalanced; the most ready copy wins).
fn candidates<'a, A: Address>(
    slices: &Slices<'a>,
    svc: &'a Service,
    sp: &ServicePort,
    node: &str,
) -> Vec<Candidate<A>> {
    let mut by_addr: BTreeMap<(A, u16), Candidate<A>> = BTreeMap::new();
    for slice in slices.of(svc) {
        let Some(port) = slice
            .ports
            .iter()
            .find(|p| p.name == sp.name && p.protocol == sp.protocol)
            .map(|p| p.port)
        else {
            continue;
        };
        for ep in &slice.endpoints {
            // Consumers use the first address only (the API says the rest are ignored).
            let Some(addr) = ep.addresses.first().and_then(|&a| A::of(a)) else {
                continue;
            };
            let c = candidate(ep, addr, port, node);
            by_addr
                .entry((addr, port))
                .and_modify(|old| {
                    old.ready |= c.ready;
                    old.serving_terminating |= c.serving_terminating;
                    old.local |= c.local;
                    for z in &c.zone_hints {
                        if !old.zone_hints.contains(z) {
                            old.zone_hints.push(z.clone());
                        }
                    }
                    for n in &c.node_hints {
                        if !old.node_hints.contains(n) {
                            old.node_hints.push(n.clone());
                        }
                    }
                    old.ready_not_terminating |= c.ready_not_terminating;
                })
                .or_insert(c);
        }
    }
    by_addr.into_values().collect()
}

fn candidate<A>(ep: &Endpoint, addr: A, port: u16, node: &str) -> Candidate<A> {
    Candidate {
        addr,
        port,
        ready: ep.ready,
        serving_terminating: ep.serving && ep.terminating,
        serving: ep.serving || ep.ready,
        local: ep.node_name.as_deref() == Some(node),
        zone_hints: ep.zone_hints.clone(),
        node_hints: ep.node_hints.clone(),
        ready_not_terminating: ep.ready && !ep.terminating,
    }
}

/// The health checks of the node: one per LoadBalancer Service with `externalTrafficPolicy:
/// Local` and a `healthCheckNodePort` (kube-proxy's `NeedsHealthCheck`), each with its count of
/// local endpoints as kube-proxy's `LocalReadyEndpoints` makes it: distinct addresses of
/// endpoints on this node that are ready, over every port of the Service (an endpoint serving
/// ports 80 and 443 counts once); terminating endpoints never count, even while they still
/// serve. Two Services on one port come back as a warning, the first (by namespace and name)
/// keeps it.
pub fn health_checks(state: &ClusterState, node: &str) -> (HealthChecks, Vec<String>) {
    let slices = Slices::new(state);
    let mut checks = Vec::new();
    let mut services: Vec<&Service> = state.services.iter().collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for svc in services {
        let Some(port) = svc.health_check_node_port else {
            continue;
        };
        // Headless Services are not proxied at all (nor could a LoadBalancer be headless).
        if svc.service_type != ServiceType::LoadBalancer
            || !svc.external_policy_local
            || svc.cluster_ips.is_empty()
        {
            continue;
        }
        // A dual-stack pod has one address per family, in two slices: count per family and
        // report the larger, so that it counts once.
        let local_endpoints =
            local_ready::<Ipv4Addr>(&slices, svc, node)
                .max(local_ready::<Ipv6Addr>(&slices, svc, node));
        checks.push(HealthCheck {
            namespace: svc.namespace.as_str().into(),
            name: svc.name.as_str().into(),
            port,
            local_endpoints,
        });
    }
    let (table, dups) = HealthChecks::new(checks);
    let warnings = dups
        .into_iter()
        .map(|d| {
            let first = table
                .lookup(d.port)
                .map_or_else(String::new, |c| format!("{}/{}", c.namespace, c.name));
            format!(
                "healthCheckNodePort {} is claimed by both {first} and {}/{}; keeping the first",
                d.port, d.namespace, d.name
            )
        })
        .collect();
    (table, warnings)
}

/// Distinct addresses of family `A` of the Service's endpoints on `node` that are ready and not
/// terminating, over every port.
fn local_ready<'a, A: Address>(slices: &Slices<'a>, svc: &'a Service, node: &str) -> u32 {
    let mut addrs: Vec<A> = svc
        .ports
        .iter()
        .flat_map(|sp| candidates::<A>(slices, svc, sp, node))
        .filter(|c| c.local && c.ready_not_terminating)
        .map(|c| c.addr)
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs.len() as u32
}

/// Ready endpoints among `cands` (filtered by `keep`), or if there are none the serving and
/// terminating ones (kube-proxy's terminating-endpoint fallback).
fn usable<A: Address>(
    cands: &[Candidate<A>],
    keep: impl Fn(&Candidate<A>) -> bool,
) -> Vec<Backend<A>> {
    let to_backend = |c: &Candidate<A>| Backend {
        addr: c.addr,
        port: c.port,
        local: c.local,
    };
    let ready: Vec<Backend<A>> = cands
        .iter()
        .filter(|c| keep(c) && c.ready)
        .map(to_backend)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    cands
        .iter()
        .filter(|c| keep(c) && c.serving_terminating)
        .map(to_backend)
        .collect()
}

/// What the service table of one address family needs to know about this node.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a, A = Ipv4Addr> {
    /// Endpoints with this `nodeName` are local.
    pub name: &'a str,
    /// `topology.kubernetes.io/zone`, for topology hints.
    pub zone: Option<&'a str>,
    /// Where NodePorts listen.
    pub node_ports: &'a [A],
    /// Every address of the node.
    pub addresses: &'a [A],
}

/// Builds the service table of one address family: the Services' addresses of that family,
/// balanced over their endpoints of that family (kube-proxy runs one proxier per family the
/// same way). A family a Service has no address of gets no frontend for it.
pub fn service_table<A: Address>(
    state: &ClusterState,
    node: &NodeView<A>,
) -> (ServiceTable<A>, Vec<String>) {
    service_table_cached(state, node, &mut SetCache::default())
}

/// The identity session affinity is kept under: a hash of the Service port's namespace, name,
/// port name, protocol and port, the same in every build, so that adding or removing another
/// Service keeps every client's affinity (a positional index would shift). Two ports that
/// collide share entries harmlessly: a remembered endpoint is used only while it is in the
/// port's own backend set.
fn service_port_identity(svc: &Service, sp: &crate::model::ServicePort) -> u32 {
    // FNV-1a, 32 bits: stable across builds and processes (std's hasher is seeded).
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0193);
    };
    feed(svc.namespace.as_bytes());
    feed(svc.name.as_bytes());
    feed(sp.name.as_bytes());
    feed(format!("{:?}", sp.protocol).as_bytes());
    feed(&sp.port.to_be_bytes());
    h
}

fn service_table_cached<A: Address>(
    state: &ClusterState,
    node: &NodeView<A>,
    cache: &mut SetCache<A>,
) -> (ServiceTable<A>, Vec<String>) {
    let slices = Slices::new(state);
    let mut frontends = Vec::new();
    let mut services: Vec<&Service> = state.services.iter().collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for svc in services {
        // Headless Services are DNS-only: kube-proxy programs nothing for them.
        if svc.cluster_ips.is_empty() {
            continue;
        }
        let family = |ips: &[std::net::IpAddr]| -> Vec<A> {
            ips.iter().filter_map(|&ip| A::of(ip)).collect()
        };
        let (cluster_ips, external_ips, lb_ips) = (
            family(&svc.cluster_ips),
            family(&svc.external_ips),
            family(&svc.load_balancer_ips),
        );
        // A Service of the other family only (kube-proxy: not this proxier's).
        if cluster_ips.is_empty() {
            continue;
        }
        let ranges: Vec<(A, u8)> = svc
            .load_balancer_source_ranges
            .iter()
            .filter_map(|&(ip, len)| A::of(ip).map(|a| (a, len)))
            .collect();
        for sp in &svc.ports {
            let service_port_id = service_port_identity(svc, sp);
            let cands = candidates(&slices, svc, sp, node.name);
            // Topology hints narrow the endpoints of cluster-wide traffic, never local ones.
            let topology = topology(&cands, node);
            let cluster = cache.get(usable(&cands, |c| topology.allows(c, node)));
            // kube-proxy: whether the Service has any endpoint at all decides Reject vs Drop.
            let any = !usable(&cands, |_| true).is_empty();
            let local_set = cache.get(usable(&cands, |c| c.local));
            let action = |local_only: bool| {
                let chosen = if local_only { &local_set } else { &cluster };
                match chosen {
                    Some(set) => FrontendAction::Balance(set.clone()),
                    None if !any => FrontendAction::Reject,
                    None => FrontendAction::Drop,
                }
            };
            let name: Arc<str> = if sp.name.is_empty() {
                format!("{}/{}:{}", svc.namespace, svc.name, sp.port).into()
            } else {
                format!("{}/{}:{}", svc.namespace, svc.name, sp.name).into()
            };
            let proto = proto_number(sp.protocol);
            // Each family is filtered by its own ranges; a family without any is open, as in
            // kube-proxy (which splits the ranges by family per proxier).
            let source_ranges = SourceRanges::new(&ranges, node.addresses).map(Arc::new);
            let serving = if proto == PROTO_UDP {
                ServingEndpoints::new(
                    cands
                        .iter()
                        .filter(|c| c.serving)
                        .map(|c| (c.addr, c.port))
                        .collect(),
                )
            } else {
                ServingEndpoints::default()
            };
            let mut add = |kind: FrontendKind, addr: A, port: u16| {
                let internal = kind == FrontendKind::ClusterIp;
                let local_only = if internal {
                    svc.internal_policy_local
                } else {
                    svc.external_policy_local
                };
                frontends.push(Frontend {
                    key: FrontendKey { proto, addr, port },
                    kind,
                    service: name.clone(),
                    service_port_id,
                    snat: !internal && !svc.external_policy_local,
                    affinity_secs: svc.affinity_timeout_secs,
                    // kube-proxy filters sources for the load balancer IPs only.
                    source_ranges: if kind == FrontendKind::LoadBalancer {
                        source_ranges.clone()
                    } else {
                        None
                    },
                    action: action(local_only),
                    // kube-proxy's short-circuit: pods and the node itself reaching a Local
                    // NodePort, load balancer IP or external IP use every endpoint.
                    internal: (!internal && svc.external_policy_local).then(|| action(false)),
                    serving: serving.clone(),
                });
            };
            for &ip in &cluster_ips {
                add(FrontendKind::ClusterIp, ip, sp.port);
            }
            if matches!(
                svc.service_type,
                ServiceType::NodePort | ServiceType::LoadBalancer
            ) {
                if let Some(np) = sp.node_port {
                    for &ip in node.node_ports {
                        add(FrontendKind::NodePort, ip, np);
                    }
                }
            }
            if svc.service_type == ServiceType::LoadBalancer {
                for &ip in &lb_ips {
                    add(FrontendKind::LoadBalancer, ip, sp.port);
                }
            }
            for &ip in &external_ips {
                add(FrontendKind::ExternalIp, ip, sp.port);
            }
        }
    }
    let (table, dups) = ServiceTable::new(frontends);
    let warnings = dups
        .into_iter()
        .map(|d| format!("{d}; keeping the first"))
        .collect();
    (table, warnings)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::{EndpointPort, EndpointSlice, TargetPort};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn service(name: &str, ty: ServiceType, local: bool) -> Service {
        Service {
            namespace: "default".into(),
            name: name.into(),
            service_type: ty,
            cluster_ips: vec![ip("10.96.0.10").into()],
            ports: vec![ServicePort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: Some(30080),
                target_port: TargetPort::Number(8080),
            }],
            external_ips: vec![],
            load_balancer_ips: vec![ip("203.0.113.10").into()],
            external_policy_local: local,
            internal_policy_local: false,
            affinity_timeout_secs: None,
            health_check_node_port: None,
            load_balancer_source_ranges: vec![],
        }
    }

    fn ep(addr: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint {
            addresses: vec![ip(addr).into()],
            ready,
            serving,
            terminating,
            node_name: Some(node.into()),
            zone: None,
            zone_hints: vec![],
            node_hints: vec![],
        }
    }

    fn slice(svc: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            namespace: "default".into(),
            name: format!("{svc}-abc"),
            service_name: svc.into(),
            ports: vec![EndpointPort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
            endpoints,
        }
    }

    fn action_of(t: &ServiceTable, addr: &str, port: u16) -> FrontendAction {
        t.lookup(PROTO_TCP, ip(addr), port)
            .unwrap()
            .1
            .action
            .clone()
    }

    fn addrs(a: &FrontendAction) -> Vec<Ipv4Addr> {
        match a {
            FrontendAction::Balance(s) => s.backends().iter().map(|b| b.addr).collect(),
            _ => vec![],
        }
    }

    fn view<'a>(name: &'a str, addrs: &'a [Ipv4Addr]) -> NodeView<'a> {
        NodeView {
            name,
            zone: None,
            node_ports: addrs,
            addresses: addrs,
        }
    }

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("c.yaml")).unwrap()
    }

    #[test]
    fn test_pod_cidrs_are_routed_to_the_kernel_and_the_nodes_are_added() {
        let text = "node: {name: n, pod_cidrs: [\"10.244.1.0/24\", \"fd00:244:1::/64\"], cluster_cidrs: [\"10.244.0.0/16\"]}\nports:\n  - {name: a, driver: af_packet, interface: eth0, host_interface: nghost0, addresses: [\"10.0.0.1/24\", \"fd00::1/64\"]}\n";
        let cfg = parse(text);
        let state = ClusterState {
            node: Some(crate::model::Node {
                name: "n".into(),
                zone: None,
                deleting: false,
                to_be_deleted: false,
                pod_cidrs: vec![(ip("10.244.1.0").into(), 24), (ip("10.244.9.0").into(), 24)],
            }),
            ..Default::default()
        };
        let (t, warnings) = build(&cfg, &state).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        for pod in ["10.244.1.7", "10.244.9.7"] {
            let hop = t.routes.lookup(ip(pod)).unwrap();
            assert_eq!((hop.port, hop.via), (0, Some(ip("10.0.0.1"))), "{pod}");
        }
        assert_eq!(
            t.routes.len(),
            3,
            "connected and two pod CIDRs, the repeat once"
        );
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let hop = t.ip6.routes.lookup(v6("fd00:244:1::5")).unwrap();
        assert_eq!(hop.via, Some(v6("fd00::1")));
        assert_eq!(t.kernel.loopback4, Some(ip("169.254.42.1")));
        assert_eq!(t.kernel.cluster4, vec![(ip("10.244.0.0"), 16)]);
        assert!(t.kernel.cluster6.is_empty());

        // Without a host interface, configured pod CIDRs are an error and the Node's a warning.
        let cfg = parse("node: {name: n, pod_cidrs: [\"10.244.1.0/24\"]}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\"]}\n");
        let e = build(&cfg, &state).unwrap_err();
        assert_eq!(e.field, "node.pod_cidrs");
        assert!(e.reason.contains("host_interface"), "{e}");
        let cfg = parse("node: {name: n}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\"]}\n");
        let (t, warnings) = build(&cfg, &state).unwrap();
        assert_eq!(t.routes.len(), 1);
        assert_eq!(t.kernel.loopback4, None);
        assert!(warnings[0].contains("spec.podCIDRs"), "{warnings:?}");

        // The service loopback address must not be the node's.
        let cfg = parse("node: {name: n, service_loopback_address: 10.0.0.1}\nports:\n  - {name: a, driver: af_packet, interface: eth0, host_interface: nghost0, addresses: [\"10.0.0.1/24\"]}\n");
        let e = build(&cfg, &ClusterState::default()).unwrap_err();
        assert_eq!(e.field, "node.service_loopback_address");
        // Host bits in a pod CIDR are a configuration error naming the entry.
        let e = Config::parse(
            "node: {name: n, pod_cidrs: [\"10.244.1.1/24\"]}\nports:\n  - {name: a, driver: memory}\n",
            std::path::Path::new("c.yaml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("node.pod_cidrs[0]"), "{e}");
    }

    #[test]
    fn test_ip6_tables_from_config() {
        let cfg = parse(
            "node: {name: n}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\", \"fd00::1/64\"]}\n  - {name: b, driver: memory, addresses: [\"fd01::1/64\"]}\nroutes:\n  - {prefix: \"::/0\", via: \"fd01::fe\"}\n  - {prefix: \"0.0.0.0/0\", via: \"10.0.0.254\"}\nneighbors:\n  - {address: \"fd01::fe\", mac: \"02:00:00:00:00:fe\"}\n",
        );
        let (t, _) = build(&cfg, &ClusterState::default()).unwrap();
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        assert_eq!(t.ip6.routes.len(), 3);
        let hop = t.ip6.routes.lookup(v6("2001:db8::1")).unwrap();
        assert_eq!(
            (hop.port, hop.via, hop.src),
            (1, Some(v6("fd01::fe")), v6("fd01::1"))
        );
        assert_eq!(t.ip6.local, vec![v6("fd00::1"), v6("fd01::1")]);
        assert_eq!(t.ip6.port_address(0), Some(v6("fd00::1")));
        assert_eq!(t.ip6.neighbors.len(), 1);
        // IPv4 is unchanged by the IPv6 entries around it.
        assert_eq!(t.routes.len(), 2);
        assert_eq!(t.local, vec![ip("10.0.0.1")]);
    }

    #[test]
    fn test_dual_stack_service_gets_a_frontend_per_family_with_that_familys_endpoints() {
        use std::net::{IpAddr, Ipv6Addr};
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let cfg = parse(
            "node: {name: node-a, node_port_addresses: [\"10.0.0.0/24\", \"fd00::/64\"]}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\", \"fd00::1/64\", \"fd01::1/64\"]}\n",
        );
        let mut svc = service("web", ServiceType::LoadBalancer, false);
        svc.cluster_ips.push(IpAddr::V6(v6("fd00:96::10")));
        svc.load_balancer_ips.push(IpAddr::V6(v6("2001:db8::10")));
        svc.load_balancer_source_ranges = vec![(IpAddr::V6(v6("2001:db8:c::")), 48)];
        let mut ep6 = ep("10.1.0.5", "node-a", true, true, false);
        ep6.addresses = vec![IpAddr::V6(v6("fd10::5"))];
        let mut slice6 = slice("web", vec![ep6]);
        slice6.name = "web-v6".into();
        // An IPv6-only Service: no IPv4 frontend at all.
        let mut only6 = service("six", ServiceType::ClusterIp, false);
        only6.cluster_ips = vec![IpAddr::V6(v6("fd00:96::20"))];
        only6.load_balancer_ips = vec![];
        let state = ClusterState {
            services: vec![svc, only6],
            endpoint_slices: vec![
                slice("web", vec![ep("10.1.0.5", "node-a", true, true, false)]),
                slice6,
            ],
            ..Default::default()
        };
        let (t, warnings) = build(&cfg, &state).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // IPv4: ClusterIP, NodePort on 10.0.0.1, the LB address; no source ranges of its family.
        assert_eq!(t.services.len(), 3);
        assert_eq!(
            addrs(&action_of(&t.services, "10.96.0.10", 80)),
            [ip("10.1.0.5")]
        );
        let lb4 = t
            .services
            .lookup(PROTO_TCP, ip("203.0.113.10"), 80)
            .unwrap()
            .1;
        assert!(lb4.source_ranges.is_none());
        // IPv6: both ClusterIPs, a NodePort on fd00::1 only (node_port_addresses), the LB.
        let t6 = &t.services6;
        assert_eq!(t6.len(), 4);
        let backends6 =
            |addr: &str, port: u16| match &t6.lookup(PROTO_TCP, v6(addr), port).unwrap().1.action {
                FrontendAction::Balance(s) => {
                    s.backends().iter().map(|b| b.addr).collect::<Vec<_>>()
                }
                other => panic!("{other:?}"),
            };
        assert_eq!(backends6("fd00:96::10", 80), [v6("fd10::5")]);
        assert_eq!(backends6("fd00::1", 30080), [v6("fd10::5")]);
        assert!(t6.lookup(PROTO_TCP, v6("fd01::1"), 30080).is_none());
        let lb6 = t6.lookup(PROTO_TCP, v6("2001:db8::10"), 80).unwrap().1;
        assert!(lb6.snat, "external policy Cluster SNATs in IPv6 too");
        let ranges = lb6.source_ranges.as_ref().unwrap();
        assert!(ranges.allows(v6("2001:db8:c::7"), v6("2001:db8::10")));
        assert!(!ranges.allows(v6("2001:db8:d::7"), v6("2001:db8::10")));
        // The IPv6-only Service has no endpoints of its family: reject.
        assert_eq!(
            t6.lookup(PROTO_TCP, v6("fd00:96::20"), 80)
                .unwrap()
                .1
                .action,
            FrontendAction::Reject
        );
    }

    #[test]
    fn test_in_cluster_clients_of_a_local_load_balancer_and_proxy_mode_ingress() {
        let mut state = ClusterState::default();
        crate::manifests::parse_str(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.60\n  externalTrafficPolicy: Local\n  ports: [{port: 80, nodePort: 30080}]\nstatus:\n  loadBalancer:\n    ingress: [{ip: 192.0.2.10, ipMode: VIP}, {ip: 192.0.2.11, ipMode: Proxy}, {ip: 192.0.2.12}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nports: [{name: \"\", port: 8080, protocol: TCP}]\nendpoints:\n  - addresses: [\"10.244.2.5\"]\n    nodeName: node-b\n",
            std::path::Path::new("web.yaml"),
            &mut state,
        )
        .unwrap();
        let cfg = parse("node: {name: node-a}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\"]}\n");
        let (t, _) = build(&cfg, &state).unwrap();
        for (vip, port) in [("192.0.2.10", 80), ("192.0.2.12", 80), ("10.0.0.1", 30080)] {
            let fe = t.services.lookup(PROTO_TCP, ip(vip), port).unwrap().1;
            // No endpoint on node-a: the wire's clients are dropped, the node's and its
            // pods' use the endpoint on node-b (kube-proxy's short-circuit).
            assert_eq!(fe.action, FrontendAction::Drop, "{vip}");
            match &fe.internal {
                Some(FrontendAction::Balance(set)) => {
                    assert_eq!(set.backends()[0].addr, ip("10.244.2.5"))
                }
                other => panic!("{vip}: {other:?}"),
            }
        }
        // ipMode Proxy: the load balancer's address is left to it, as kube-proxy does.
        assert!(t.services.lookup(PROTO_TCP, ip("192.0.2.11"), 80).is_none());
        // A ClusterIP has no separate in-cluster answer.
        let fe = t
            .services
            .lookup(PROTO_TCP, ip("10.96.0.60"), 80)
            .unwrap()
            .1;
        assert!(fe.internal.is_none());
    }

    #[test]
    fn test_service_without_selector_uses_its_hand_made_endpoint_slices() {
        // kube-proxy does not look at selectors: a Service without one (an external database,
        // say) is balanced over whatever EndpointSlices name it, here one kept by hand.
        let mut state = ClusterState::default();
        crate::manifests::parse_str(
            "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default}\nspec:\n  clusterIP: 10.96.0.50\n  ports: [{port: 5432}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-external\n  namespace: default\n  labels: {kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: staff.example.com}\naddressType: IPv4\nports: [{name: \"\", port: 5432, protocol: TCP}]\nendpoints:\n  - addresses: [\"192.0.2.80\"]\n",
            std::path::Path::new("db.yaml"),
            &mut state,
        )
        .unwrap();
        let cfg = parse("node: {name: node-a}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\"]}\n");
        let (t, _) = build(&cfg, &state).unwrap();
        let fe = t
            .services
            .lookup(PROTO_TCP, ip("10.96.0.50"), 5432)
            .unwrap()
            .1;
        match &fe.action {
            FrontendAction::Balance(set) => {
                assert_eq!(set.backends()[0].addr, ip("192.0.2.80"));
                assert_eq!(set.backends()[0].port, 5432);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_rebuild_reuses_the_backend_sets_of_unchanged_services() {
        let cfg = parse("node: {name: node-a}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\"]}\n");
        let mut a = service("a", ServiceType::ClusterIp, false);
        a.cluster_ips = vec![ip("10.96.0.1").into()];
        let mut b = service("b", ServiceType::ClusterIp, false);
        b.cluster_ips = vec![ip("10.96.0.2").into()];
        let mut state = ClusterState {
            services: vec![a, b],
            endpoint_slices: vec![
                slice("a", vec![ep("10.1.0.1", "node-b", true, true, false)]),
                slice("b", vec![ep("10.1.0.2", "node-b", true, true, false)]),
            ],
            ..Default::default()
        };
        let set = |t: &Tables, vip: &str| match &t
            .services
            .lookup(PROTO_TCP, ip(vip), 80)
            .unwrap()
            .1
            .action
        {
            FrontendAction::Balance(s) => s.clone(),
            other => panic!("{other:?}"),
        };
        let mut cache = BuildCache::default();
        let (t1, _) = build_cached(&cfg, &state, &mut cache).unwrap();
        assert_eq!(cache.len(), 2);
        state.endpoint_slices[1]
            .endpoints
            .push(ep("10.1.0.3", "node-b", true, true, false));
        let (t2, _) = build_cached(&cfg, &state, &mut cache).unwrap();
        assert!(
            Arc::ptr_eq(&set(&t1, "10.96.0.1"), &set(&t2, "10.96.0.1")),
            "unchanged: reused"
        );
        assert!(
            !Arc::ptr_eq(&set(&t1, "10.96.0.2"), &set(&t2, "10.96.0.2")),
            "changed: rebuilt"
        );
        // The same tables as a build from scratch, and the cache holds only what is in use.
        let (fresh, _) = build(&cfg, &state).unwrap();
        for vip in ["10.96.0.1", "10.96.0.2"] {
            assert_eq!(*set(&t2, vip), *set(&fresh, vip));
        }
        assert_eq!(cache.len(), 2);
        // Two Services with the same endpoints share one set.
        state.endpoint_slices[1] = slice("b", vec![ep("10.1.0.1", "node-b", true, true, false)]);
        let (t3, _) = build_cached(&cfg, &state, &mut cache).unwrap();
        assert!(Arc::ptr_eq(&set(&t3, "10.96.0.1"), &set(&t3, "10.96.0.2")));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn test_ip6_errors_name_the_yaml_entry() {
        let base = "node: {name: n}\nports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\", \"fd00::1/64\"]}\n";
        let cases = [
            (
                "routes:\n  - {prefix: \"10.9.0.0/16\", via: \"10.0.0.2\"}\n  - {prefix: \"::/0\", via: \"fd99::1\"}\n",
                "routes[1]",
                "gateway fd99::1 is not on any port's connected prefix",
            ),
            (
                "routes:\n  - {prefix: \"::/0\", via: \"fd00::2\"}\n  - {prefix: \"0.0.0.0/0\", via: \"10.9.9.9\"}\n",
                "routes[1]",
                "gateway 10.9.9.9",
            ),
            (
                "neighbors:\n  - {address: \"10.0.0.2\", mac: \"02:00:00:00:00:02\"}\n  - {address: \"fd55::2\", mac: \"02:00:00:00:00:02\"}\n",
                "neighbors[1].address",
                "fd55::2 is not on any port's connected prefix",
            ),
            (
                "neighbors:\n  - {address: \"fd00::2\", mac: \"02:00:00:00:00:02\"}\n  - {address: \"10.9.0.2\", mac: \"02:00:00:00:00:02\"}\n",
                "neighbors[1].address",
                "10.9.0.2 is not on any port's connected prefix",
            ),
        ];
        for (extra, field, reason) in cases {
            let cfg = parse(&format!("{base}{extra}"));
            let e = build(&cfg, &ClusterState::default()).unwrap_err();
            assert_eq!(e.field, field, "{extra}");
            assert!(e.reason.contains(reason), "{}", e.reason);
        }
    }

    #[test]
    fn test_node_port_addresses_limit_where_node_ports_listen() {
        let state = ClusterState {
            services: vec![service("web", ServiceType::NodePort, false)],
            endpoint_slices: vec![slice(
                "web",
                vec![ep("10.1.0.5", "node-b", true, true, false)],
            )],
            ..Default::default()
        };
        let ports = "ports:\n  - {name: a, driver: memory, addresses: [\"10.0.0.1/24\"]}\n  - {name: b, driver: memory, addresses: [\"192.168.1.1/24\"]}\n";
        let listens = |node: &str| {
            let (t, _) = build(&parse(&format!("{node}{ports}")), &state).unwrap();
            ["10.0.0.1", "192.168.1.1", "172.16.0.1"]
                .into_iter()
                .filter(|a| t.services.lookup(PROTO_TCP, ip(a), 30080).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            listens("node: {name: node-a, addresses: [\"172.16.0.1\"]}\n"),
            ["10.0.0.1", "192.168.1.1", "172.16.0.1"]
        );
        assert_eq!(
            listens("node: {name: node-a, addresses: [\"172.16.0.1\"], node_port_addresses: [\"192.168.0.0/16\"]}\n"),
            ["192.168.1.1"]
        );
        assert_eq!(
            listens("node: {name: node-a, addresses: [\"172.16.0.1\"], node_port_addresses: [primary, \"10.0.0.0/8\"]}\n"),
            ["10.0.0.1", "172.16.0.1"]
        );
        // The ClusterIP is not a node port: untouched.
        let (t, _) = build(
            &parse(&format!(
                "node: {{name: node-a, node_port_addresses: [\"192.168.0.0/16\"]}}\n{ports}"
            )),
            &state,
        )
        .unwrap();
        assert!(t.services.lookup(PROTO_TCP, ip("10.96.0.10"), 80).is_some());
    }

    #[test]
    fn test_topology_hints_narrow_cluster_endpoints_as_kube_proxy_does() {
        let hinted = |addr: &str, node: &str, zones: &[&str], nodes: &[&str]| {
            let mut e = ep(addr, node, true, true, false);
            e.zone_hints = zones.iter().map(|z| z.to_string()).collect();
            e.node_hints = nodes.iter().map(|n| n.to_string()).collect();
            e
        };
        let table = |eps: Vec<Endpoint>, zone: Option<&str>, local: bool| {
            let state = ClusterState {
                services: vec![service("web", ServiceType::NodePort, local)],
                endpoint_slices: vec![slice("web", eps)],
                ..Default::default()
            };
            let addrs = [ip("10.0.0.1")];
            let node = NodeView {
                name: "node-a",
                zone,
                node_ports: &addrs,
                addresses: &addrs,
            };
            service_table(&state, &node).0
        };
        let zoned = || {
            vec![
                hinted("10.1.0.1", "node-b", &["zone-a"], &[]),
                hinted("10.1.0.2", "node-c", &["zone-b"], &[]),
                hinted("10.1.0.3", "node-a", &["zone-b"], &[]),
            ]
        };
        // Every ready endpoint has a zone hint and one is for this zone: only those.
        let t = table(zoned(), Some("zone-a"), false);
        assert_eq!(addrs(&action_of(&t, "10.96.0.10", 80)), [ip("10.1.0.1")]);
        assert_eq!(addrs(&action_of(&t, "10.0.0.1", 30080)), [ip("10.1.0.1")]);
        // No hint for this zone, no zone on the node, or one endpoint without hints: all.
        for (eps, zone) in [
            (zoned(), Some("zone-c")),
            (zoned(), None),
            (
                {
                    let mut e = zoned();
                    e.push(ep("10.1.0.4", "node-d", true, true, false));
                    e
                },
                Some("zone-a"),
            ),
        ] {
            let n = eps.len();
            let t = table(eps, zone, false);
            assert_eq!(addrs(&action_of(&t, "10.96.0.10", 80)).len(), n, "{zone:?}");
        }
        // Hints are for cluster-wide traffic only: policy Local keeps the local endpoint.
        let t = table(zoned(), Some("zone-a"), true);
        assert_eq!(addrs(&action_of(&t, "10.0.0.1", 30080)), [ip("10.1.0.3")]);
        // Node hints (PreferSameNode) win when every endpoint has them.
        let t = table(
            vec![
                hinted("10.1.0.1", "node-b", &["zone-a"], &["node-b"]),
                hinted("10.1.0.3", "node-a", &["zone-a"], &["node-a"]),
            ],
            Some("zone-a"),
            false,
        );
        assert_eq!(addrs(&action_of(&t, "10.96.0.10", 80)), [ip("10.1.0.3")]);
    }

    #[test]
    fn test_the_node_objects_zone_wins_over_the_configured_one() {
        let hinted = |addr: &str, zone: &str| {
            let mut e = ep(addr, "node-b", true, true, false);
            e.zone_hints = vec![zone.to_string()];
            e
        };
        let mut state = ClusterState {
            services: vec![service("web", ServiceType::ClusterIp, false)],
            endpoint_slices: vec![slice(
                "web",
                vec![hinted("10.1.0.1", "zone-a"), hinted("10.1.0.2", "zone-b")],
            )],
            node: None,
        };
        let cfg = parse("node: {name: node-a, zone: zone-a}\nports: [{name: p, driver: memory}]\n");
        let (t, _) = build(&cfg, &state).unwrap();
        assert_eq!(
            addrs(&action_of(&t.services, "10.96.0.10", 80)),
            [ip("10.1.0.1")]
        );
        state.node = Some(crate::model::Node {
            name: "node-a".into(),
            zone: Some("zone-b".into()),
            deleting: false,
            to_be_deleted: false,
            pod_cidrs: vec![],
        });
        let (t, _) = build(&cfg, &state).unwrap();
        assert_eq!(
            addrs(&action_of(&t.services, "10.96.0.10", 80)),
            [ip("10.1.0.2")]
        );
    }

    #[test]
    fn test_every_frontend_kind_is_programmed() {
        let state = ClusterState {
            services: vec![service("web", ServiceType::LoadBalancer, false)],
            endpoint_slices: vec![slice(
                "web",
                vec![ep("10.1.0.5", "node-b", true, true, false)],
            )],
            ..Default::default()
        };
        let (t, warnings) = service_table(
            &state,
            &view("node-a", &[ip("10.0.0.1"), ip("192.168.1.1")]),
        );
        assert!(warnings.is_empty());
        // ClusterIP, two node addresses, one LB address.
        assert_eq!(t.len(), 4);
        let (_, fe) = t.lookup(PROTO_TCP, ip("192.168.1.1"), 30080).unwrap();
        assert_eq!(fe.kind, FrontendKind::NodePort);
        assert!(fe.snat);
        assert_eq!(addrs(&fe.action), vec![ip("10.1.0.5")]);
        let (_, fe) = t.lookup(PROTO_TCP, ip("10.96.0.10"), 80).unwrap();
        assert!(!fe.snat);
        assert!(t.lookup(PROTO_UDP, ip("10.96.0.10"), 80).is_none());
    }

    #[test]
    fn test_local_policy_keeps_client_and_drops_without_local_endpoint() {
        let state = ClusterState {
            services: vec![service("web", ServiceType::NodePort, true)],
            endpoint_slices: vec![slice(
                "web",
                vec![ep("10.1.0.5", "node-b", true, true, false)],
            )],
            ..Default::default()
        };
        let (on_a, _) = service_table(&state, &view("node-a", &[ip("10.0.0.1")]));
        assert_eq!(action_of(&on_a, "10.0.0.1", 30080), FrontendAction::Drop);
        // ClusterIP is internal traffic: still any endpoint.
        assert_eq!(
            addrs(&action_of(&on_a, "10.96.0.10", 80)),
            vec![ip("10.1.0.5")]
        );
        let (on_b, _) = service_table(&state, &view("node-b", &[ip("10.0.0.2")]));
        let (_, fe) = on_b.lookup(PROTO_TCP, ip("10.0.0.2"), 30080).unwrap();
        assert!(!fe.snat);
        assert_eq!(addrs(&fe.action), vec![ip("10.1.0.5")]);
    }

    #[test]
    fn test_no_endpoints_rejects() {
        let state = ClusterState {
            services: vec![service("web", ServiceType::NodePort, true)],
            endpoint_slices: vec![slice(
                "web",
                vec![ep("10.1.0.5", "node-a", false, false, false)],
            )],
            ..Default::default()
        };
        let (t, _) = service_table(&state, &view("node-a", &[ip("10.0.0.1")]));
        assert_eq!(action_of(&t, "10.96.0.10", 80), FrontendAction::Reject);
        assert_eq!(action_of(&t, "10.0.0.1", 30080), FrontendAction::Reject);
    }

    #[test]
    fn test_terminating_fallback_only_without_ready() {
        let eps = vec![
            ep("10.1.0.5", "node-a", false, true, true),
            ep("10.1.0.6", "node-a", true, true, false),
        ];
        let state = ClusterState {
            services: vec![service("web", ServiceType::ClusterIp, false)],
            endpoint_slices: vec![slice("web", eps)],
            ..Default::default()
        };
        let (t, _) = service_table(&state, &view("node-a", &[]));
        assert_eq!(
            addrs(&action_of(&t, "10.96.0.10", 80)),
            vec![ip("10.1.0.6")]
        );
        let state = ClusterState {
            services: vec![service("web", ServiceType::ClusterIp, false)],
            endpoint_slices: vec![slice(
                "web",
                vec![ep("10.1.0.5", "node-a", false, true, true)],
            )],
            ..Default::default()
        };
        let (t, _) = service_table(&state, &view("node-a", &[]));
        assert_eq!(
            addrs(&action_of(&t, "10.96.0.10", 80)),
            vec![ip("10.1.0.5")]
        );
    }

    #[test]
    fn test_duplicate_endpoint_across_slices_counts_once() {
        let state = ClusterState {
            services: vec![service("web", ServiceType::ClusterIp, false)],
            endpoint_slices: vec![
                slice("web", vec![ep("10.1.0.5", "node-a", true, true, false)]),
                slice("web", vec![ep("10.1.0.5", "node-a", false, false, false)]),
            ],
            ..Default::default()
        };
        let (t, _) = service_table(&state, &view("node-a", &[]));
        assert_eq!(
            addrs(&action_of(&t, "10.96.0.10", 80)),
            vec![ip("10.1.0.5")]
        );
    }

    /// A LoadBalancer Service with policy Local, health check on `hc`, ports 80 and 443.
    fn lb_local(name: &str, hc: u16) -> Service {
        let mut s = service(name, ServiceType::LoadBalancer, true);
        s.health_check_node_port = Some(hc);
        s.ports.push(ServicePort {
            name: "https".into(),
            protocol: Protocol::Tcp,
            port: 443,
            node_port: Some(30443),
            target_port: TargetPort::Number(8443),
        });
        s.ports[0].name = "http".into();
        s
    }

    fn two_port_slice(svc: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        let mut sl = slice(svc, endpoints);
        sl.ports = vec![
            EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            },
            EndpointPort {
                name: "https".into(),
                protocol: Protocol::Tcp,
                port: 8443,
            },
        ];
        sl
    }

    #[test]
    fn test_health_check_counts_distinct_local_ready_endpoints() {
        let state = ClusterState {
            services: vec![lb_local("web", 32000)],
            endpoint_slices: vec![
                two_port_slice(
                    "web",
                    vec![
                        // Local and ready: counted once although it serves two ports.
                        ep("10.1.0.5", "node-a", true, true, false),
                        // Local, not ready.
                        ep("10.1.0.6", "node-a", false, false, false),
                        // Local, terminating but still serving: never counted.
                        ep("10.1.0.7", "node-a", false, true, true),
                        // Ready on another node.
                        ep("10.1.0.8", "node-b", true, true, false),
                    ],
                ),
                // The same pod again in a second slice, and a second local ready pod.
                two_port_slice(
                    "web",
                    vec![
                        ep("10.1.0.5", "node-a", true, true, false),
                        ep("10.1.0.9", "node-a", true, true, false),
                    ],
                ),
            ],
            ..Default::default()
        };
        let (t, warnings) = health_checks(&state, "node-a");
        assert!(warnings.is_empty(), "{warnings:?}");
        let c = t.lookup(32000).unwrap();
        assert_eq!((&*c.namespace, &*c.name), ("default", "web"));
        assert_eq!(c.local_endpoints, 2);
        let (on_b, _) = health_checks(&state, "node-b");
        assert_eq!(on_b.lookup(32000).unwrap().local_endpoints, 1);
        let (on_c, _) = health_checks(&state, "node-c");
        assert_eq!(on_c.lookup(32000).unwrap().local_endpoints, 0);
    }

    #[test]
    fn test_ready_and_terminating_endpoint_is_not_counted() {
        // The API sets ready=false on terminating endpoints; a slice saying both is still
        // treated as going away.
        let state = ClusterState {
            services: vec![lb_local("web", 32000)],
            endpoint_slices: vec![two_port_slice(
                "web",
                vec![ep("10.1.0.5", "node-a", true, true, true)],
            )],
            ..Default::default()
        };
        let (t, _) = health_checks(&state, "node-a");
        assert_eq!(t.lookup(32000).unwrap().local_endpoints, 0);
    }

    #[test]
    fn test_only_local_policy_load_balancers_have_health_checks() {
        let mut cluster_policy = lb_local("cluster", 32001);
        cluster_policy.external_policy_local = false;
        let mut node_port = lb_local("nodeport", 32002);
        node_port.service_type = ServiceType::NodePort;
        let mut no_port = lb_local("noport", 32003);
        no_port.health_check_node_port = None;
        let mut headless = lb_local("headless", 32005);
        headless.cluster_ips.clear();
        let state = ClusterState {
            services: vec![
                cluster_policy,
                node_port,
                no_port,
                headless,
                lb_local("web", 32004),
                // Same port as web: web (first by name) keeps it.
                lb_local("zeta", 32004),
            ],
            endpoint_slices: vec![],
            ..Default::default()
        };
        let (t, warnings) = health_checks(&state, "node-a");
        let ports: Vec<(u16, &str)> = t.iter().map(|c| (c.port, &*c.name)).collect();
        assert_eq!(ports, vec![(32004, "web")]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("default/web and default/zeta"),
            "{warnings:?}"
        );
    }

    #[test]
    fn test_headless_is_ignored_and_duplicates_warn() {
        let mut headless = service("dns", ServiceType::ClusterIp, false);
        headless.cluster_ips.clear();
        let mut other = service("web2", ServiceType::ClusterIp, false);
        other.load_balancer_ips.clear();
        let state = ClusterState {
            services: vec![
                headless,
                service("web", ServiceType::ClusterIp, false),
                other,
            ],
            endpoint_slices: vec![],
            ..Default::default()
        };
        let (t, warnings) = service_table(&state, &view("node-a", &[]));
        assert_eq!(t.len(), 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("default/web2"), "{warnings:?}");
    }
}
