//! Service frontends and their backends, as the workers see them: an immutable table built by
//! the control plane with every policy decision (traffic policy, terminating fallback, reject or
//! drop) already taken, so the fast path does one hash probe and one Maglev index per new flow.

use crate::maglev::Maglev;
use hashbrown::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// An address family's address as the service tables use it: IPv4 ([`Ipv4Addr`], the default of
/// every type here) or IPv6 ([`Ipv6Addr`]). A dual-stack Service becomes one frontend per family,
/// each with the endpoints of its own family, in two tables.
pub trait Address:
    Copy + Eq + Ord + core::hash::Hash + core::fmt::Debug + core::fmt::Display + Send + Sync + 'static
{
    /// Address length in bits.
    const BITS: u32;
    /// The address as an integer (right-aligned).
    fn to_u128(self) -> u128;
    /// Appends the address's bytes (network order) to `out`.
    fn write_octets(self, out: &mut Vec<u8>);
    /// The address if `ip` is of this family.
    fn of(ip: std::net::IpAddr) -> Option<Self>;
}

impl Address for Ipv4Addr {
    const BITS: u32 = 32;
    #[inline]
    fn to_u128(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn write_octets(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets());
    }
    fn of(ip: std::net::IpAddr) -> Option<Ipv4Addr> {
        match ip {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        }
    }
}

impl Address for Ipv6Addr {
    const BITS: u32 = 128;
    #[inline]
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn write_octets(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets());
    }
    fn of(ip: std::net::IpAddr) -> Option<Ipv6Addr> {
        match ip {
            std::net::IpAddr::V6(a) => Some(a),
            std::net::IpAddr::V4(_) => None,
        }
    }
}

/// IP protocol numbers of the L4 protocols a Service can carry.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

/// What a frontend answers to: protocol, address, port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrontendKey<A = Ipv4Addr> {
    pub proto: u8,
    pub addr: A,
    pub port: u16,
}

/// How traffic reached the Service (kube-proxy treats ClusterIP as internal, the rest external).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendKind {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalIp,
}

impl FrontendKind {
    pub fn name(self) -> &'static str {
        match self {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::LoadBalancer => "LoadBalancer",
            FrontendKind::ExternalIp => "externalIP",
        }
    }
}

/// One endpoint address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend<A = Ipv4Addr> {
    pub addr: A,
    pub port: u16,
    /// The endpoint runs on this node.
    pub local: bool,
}

impl<A: Address> Backend<A> {
    /// Identity bytes for Maglev: address and port.
    pub fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(18);
        self.addr.write_octets(&mut k);
        k.extend_from_slice(&self.port.to_be_bytes());
        k
    }
}

/// The backends one frontend balances over, with their Maglev table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSet<A = Ipv4Addr> {
    backends: Vec<Backend<A>>,
    maglev: Maglev,
}

impl<A: Address> BackendSet<A> {
    /// `None` for an empty list. Backends are sorted and deduplicated first, so the table does
    /// not depend on the order the API server listed them in.
    pub fn new(mut backends: Vec<Backend<A>>) -> Option<BackendSet<A>> {
        backends.sort_by_key(|b| (b.addr, b.port));
        backends.dedup_by_key(|b| (b.addr, b.port));
        if backends.is_empty() {
            return None;
        }
        let keys: Vec<Vec<u8>> = backends.iter().map(Backend::key).collect();
        Some(BackendSet {
            maglev: Maglev::build(&keys),
            backends,
        })
    }

    /// The backend for a flow hash.
    #[inline]
    pub fn pick(&self, hash: u64) -> &Backend<A> {
        &self.backends[self.maglev.lookup(hash)]
    }

    pub fn backends(&self) -> &[Backend<A>] {
        &self.backends
    }

    pub fn contains(&self, addr: A, port: u16) -> bool {
        // Sorted by (address, port) in `new`.
        self.backends
            .binary_search_by_key(&(addr, port), |b| (b.addr, b.port))
            .is_ok()
    }
}

/// `loadBalancerSourceRanges` of a load balancer frontend: the clients allowed to start flows
/// to it. Checked once per new flow, never for packets of an established one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRanges<A = Ipv4Addr> {
    /// (network, mask) in host order.
    prefixes: Vec<(u128, u128)>,
    /// Also allow the load balancer's own address as a source: kube-proxy does when a range
    /// holds one of the node's addresses, for VIP-style load balancers whose traffic from the
    /// node loops back with the VIP as its source.
    allow_frontend_address: bool,
    _family: core::marker::PhantomData<A>,
}

impl<A: Address> SourceRanges<A> {
    /// `None` when `prefixes` is empty (everyone may connect). `node` are the node's addresses.
    pub fn new(prefixes: &[(A, u8)], node: &[A]) -> Option<SourceRanges<A>> {
        if prefixes.is_empty() {
            return None;
        }
        let prefixes: Vec<(u128, u128)> = prefixes
            .iter()
            .map(|&(a, len)| {
                let len = u32::from(len).min(A::BITS);
                let mask = if len == 0 {
                    0
                } else {
                    (u128::MAX >> (128 - A::BITS)) & !((1u128 << (A::BITS - len)).wrapping_sub(1))
                };
                (a.to_u128() & mask, mask)
            })
            .collect();
        let within = |a: A| prefixes.iter().any(|&(n, m)| a.to_u128() & m == n);
        Some(SourceRanges {
            allow_frontend_address: node.iter().any(|&a| within(a)),
            prefixes,
            _family: core::marker::PhantomData,
        })
    }

    /// Whether `src` may start a flow to the frontend at `frontend`.
    pub fn allows(&self, src: A, frontend: A) -> bool {
        let s = src.to_u128();
        self.prefixes.iter().any(|&(n, m)| s & m == n)
            || (self.allow_frontend_address && src == frontend)
    }
}

/// The serving endpoints of a UDP Service port, on any node and in any zone, terminating or
/// not: the endpoints a UDP flow may keep after a table change (kube-proxy's conntrack
/// clean-up, which ignores traffic policies, topology and terminating status so that UDP flows
/// behave as TCP connections do). Empty when the port has no serving endpoint, and then its
/// flows are kept too, as kube-proxy keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingEndpoints<A = Ipv4Addr> {
    /// Sorted, without duplicates.
    endpoints: Arc<[(A, u16)]>,
}

impl<A: Address> Default for ServingEndpoints<A> {
    fn default() -> ServingEndpoints<A> {
        ServingEndpoints {
            endpoints: Arc::new([]),
        }
    }
}

impl<A: Address> ServingEndpoints<A> {
    pub fn new(mut endpoints: Vec<(A, u16)>) -> ServingEndpoints<A> {
        endpoints.sort_unstable();
        endpoints.dedup();
        ServingEndpoints {
            endpoints: endpoints.into(),
        }
    }

    /// Whether a UDP flow translated to `endpoint` may stay: it is serving, or nothing is.
    pub fn keeps(&self, endpoint: (A, u16)) -> bool {
        self.endpoints.is_empty() || self.endpoints.binary_search(&endpoint).is_ok()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// What a new flow to a frontend gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendAction<A = Ipv4Addr> {
    /// DNAT to one of these backends.
    Balance(Arc<BackendSet<A>>),
    /// The Service has no usable endpoint at all: TCP RST or ICMP port unreachable (kube-proxy's
    /// REJECT).
    Reject,
    /// Endpoints exist but the traffic policy allows none of them here (policy Local without a
    /// local endpoint): drop silently, as kube-proxy does.
    Drop,
}

/// A Service port reachable at one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend<A = Ipv4Addr> {
    pub key: FrontendKey<A>,
    pub kind: FrontendKind,
    /// `namespace/name:port` for traces and counters.
    pub service: Arc<str>,
    /// Identifies the Service port (shared by all its frontends) for session affinity.
    pub service_port_id: u32,
    /// SNAT new flows to the egress port's address (external traffic with policy Cluster).
    pub snat: bool,
    /// `sessionAffinity: ClientIP` timeout.
    pub affinity_secs: Option<u32>,
    /// Load balancer frontends of a Service with `loadBalancerSourceRanges`.
    pub source_ranges: Option<Arc<SourceRanges<A>>>,
    pub action: FrontendAction<A>,
    /// What in-cluster clients (the node's kernel and the pods behind it) get instead of
    /// `action`, where it differs: the cluster-wide endpoints of a frontend with
    /// `externalTrafficPolicy: Local` (kube-proxy's short-circuit).
    pub internal: Option<FrontendAction<A>>,
    /// UDP ports only (empty otherwise): whose flows survive a table change.
    pub serving: ServingEndpoints<A>,
}

/// Error building a [`ServiceTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateFrontend<A = Ipv4Addr> {
    pub key: FrontendKey<A>,
    pub first: Arc<str>,
    pub second: Arc<str>,
}

impl<A: Address> core::fmt::Display for DuplicateFrontend<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}:{}/{} is claimed by both {} and {}",
            self.key.addr,
            self.key.port,
            proto_name(self.key.proto),
            self.first,
            self.second
        )
    }
}

/// Name of an L4 protocol number.
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "TCP",
        PROTO_UDP => "UDP",
        PROTO_SCTP => "SCTP",
        1 => "ICMP",
        _ => "other",
    }
}

/// Every frontend of every Service, keyed for the fast path.
#[derive(Debug, Clone)]
pub struct ServiceTable<A = Ipv4Addr> {
    index: HashMap<FrontendKey<A>, u32>,
    frontends: Vec<Frontend<A>>,
}

impl<A: Address> Default for ServiceTable<A> {
    fn default() -> Self {
        ServiceTable {
            index: HashMap::new(),
            frontends: Vec::new(),
        }
    }
}

impl<A: Address> ServiceTable<A> {
    /// Builds the table. Two frontends on the same key are reported; the first one is kept (the
    /// caller decides whether that is fatal).
    pub fn new(frontends: Vec<Frontend<A>>) -> (ServiceTable<A>, Vec<DuplicateFrontend<A>>) {
        let mut table = ServiceTable {
            index: HashMap::with_capacity(frontends.len()),
            frontends: Vec::with_capacity(frontends.len()),
        };
        let mut dups = Vec::new();
        for f in frontends {
            if let Some(&i) = table.index.get(&f.key) {
                dups.push(DuplicateFrontend {
                    key: f.key,
                    first: table.frontends[i as usize].service.clone(),
                    second: f.service.clone(),
                });
                continue;
            }
            table.index.insert(f.key, table.frontends.len() as u32);
            table.frontends.push(f);
        }
        (table, dups)
    }

    #[inline]
    pub fn lookup(&self, proto: u8, addr: A, port: u16) -> Option<(u32, &Frontend<A>)> {
        let key = FrontendKey { proto, addr, port };
        self.index
            .get(&key)
            .map(|&i| (i, &self.frontends[i as usize]))
    }

    pub fn get(&self, id: u32) -> Option<&Frontend<A>> {
        self.frontends.get(id as usize)
    }

    pub fn frontends(&self) -> &[Frontend<A>] {
        &self.frontends
    }

    pub fn len(&self) -> usize {
        self.frontends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty()
    }
}

/// One Service's health check (`externalTrafficPolicy: Local` with a `healthCheckNodePort`), as
/// kube-proxy serves it: the answer is computed when the tables are built, so serving it is a
/// lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// `spec.healthCheckNodePort` (TCP, on every node address).
    pub port: u16,
    /// Distinct addresses of the Service's ready endpoints on this node (terminating ones are
    /// not ready), across all its ports: kube-proxy's `localEndpoints`.
    pub local_endpoints: u32,
}

/// Every health check of the node, by port. Consulted by the data plane only for TCP frames to
/// a node address that no flow and no Service frontend claimed (a binary search on a short list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthChecks {
    by_port: Vec<HealthCheck>,
}

impl HealthChecks {
    /// Builds the table; a second check on a port already taken is returned (the first is kept).
    pub fn new(mut checks: Vec<HealthCheck>) -> (HealthChecks, Vec<HealthCheck>) {
        checks.sort_by_key(|c| c.port);
        let mut by_port: Vec<HealthCheck> = Vec::with_capacity(checks.len());
        let mut dups = Vec::new();
        for c in checks {
            if by_port.last().is_some_and(|l| l.port == c.port) {
                dups.push(c);
            } else {
                by_port.push(c);
            }
        }
        (HealthChecks { by_port }, dups)
    }

    /// The check served on TCP port `port`.
    pub fn lookup(&self, port: u16) -> Option<&HealthCheck> {
        self.by_port
            .binary_search_by_key(&port, |c| c.port)
            .ok()
            .map(|i| &self.by_port[i])
    }

    /// Whether a health check listens on TCP port `port`.
    #[inline]
    pub fn serves(&self, port: u16) -> bool {
        !self.by_port.is_empty() && self.lookup(port).is_some()
    }

    /// Every check, by port.
    pub fn iter(&self) -> impl Iterator<Item = &HealthCheck> {
        self.by_port.iter()
    }

    pub fn len(&self) -> usize {
        self.by_port.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_source_ranges() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(SourceRanges::new(&[], &[a("10.0.0.1")]).is_none());
        let r = SourceRanges::new(&[(a("203.0.113.9"), 28), (a("198.51.100.7"), 32)], &[]).unwrap();
        let lb = a("192.0.2.10");
        assert!(r.allows(a("203.0.113.0"), lb));
        assert!(r.allows(a("203.0.113.15"), lb));
        assert!(!r.allows(a("203.0.113.16"), lb));
        assert!(r.allows(a("198.51.100.7"), lb));
        assert!(!r.allows(a("198.51.100.8"), lb));
        assert!(
            !r.allows(lb, lb),
            "no node address in a range: the VIP is not allowed"
        );
        // A range holding a node address also admits the VIP itself as a source.
        let r = SourceRanges::new(&[(a("10.0.0.0"), 8)], &[a("10.0.0.1")]).unwrap();
        assert!(r.allows(lb, lb));
        assert!(!r.allows(lb, a("192.0.2.11")));
        let all = SourceRanges::new(&[(a("0.0.0.0"), 0)], &[]).unwrap();
        assert!(all.allows(a("1.2.3.4"), lb));
    }

    fn check(name: &str, port: u16, n: u32) -> HealthCheck {
        HealthCheck {
            namespace: "default".into(),
            name: name.into(),
            port,
            local_endpoints: n,
        }
    }

    #[test]
    fn test_health_checks_by_port() {
        let (t, dups) = HealthChecks::new(vec![
            check("b", 32001, 0),
            check("a", 32000, 2),
            check("c", 32001, 1),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(dups, vec![check("c", 32001, 1)]);
        assert_eq!(t.lookup(32000).map(|c| &*c.name), Some("a"));
        assert_eq!(t.lookup(32001).map(|c| c.local_endpoints), Some(0));
        assert!(t.serves(32000) && !t.serves(31999));
        assert!(!HealthChecks::default().serves(32000));
        let ports: Vec<u16> = t.iter().map(|c| c.port).collect();
        assert_eq!(ports, vec![32000, 32001]);
    }
}
