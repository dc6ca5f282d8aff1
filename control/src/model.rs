//! The control plane's own view of Kubernetes Services and EndpointSlices.
//!
//! Manifests on disk and the API server watchers are turned into these plain values;
//! `snapshot` turns them into the data plane's immutable tables. Only what nodegate acts on is
//! kept, already validated: addresses are parsed, protocols are known, defaults are applied.

use std::net::IpAddr;

/// L4 protocol of a Service port (`spec.ports[].protocol`, default TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// `spec.type` of a Service. `ExternalName` Services are dropped while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

/// `spec.ports[].targetPort`: a number, or the name of a container port. With EndpointSlices the
/// endpoint port is taken from the slice (matched by the Service port's name), so this is kept
/// for information and for slices that carry no port list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`, empty when the Service has a single unnamed port.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    /// Allocated node port (NodePort and LoadBalancer Services), if any.
    pub node_port: Option<u16>,
    pub target_port: TargetPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub service_type: ServiceType,
    /// Cluster IPs of either family (`spec.clusterIPs`, or `spec.clusterIP`): one per family
    /// for a dual-stack Service. Empty for headless Services.
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.externalTrafficPolicy: Local`.
    pub external_policy_local: bool,
    /// `spec.internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// `spec.sessionAffinity: ClientIP` with its timeout in seconds (default 10800).
    pub affinity_timeout_secs: Option<u32>,
    /// `spec.healthCheckNodePort`, set for LoadBalancer/NodePort Services with Local policy.
    pub health_check_node_port: Option<u16>,
    /// `spec.loadBalancerSourceRanges` (prefixes of either family, network address and
    /// length): only these clients may use the load balancer IPs. Empty: anyone.
    pub load_balancer_source_ranges: Vec<(IpAddr, u8)>,
}

/// A port of an EndpointSlice (`ports[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// Empty when unnamed.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// One endpoint of a slice. Conditions follow the API's defaults: `ready` unset means true,
/// `serving` unset means `ready`, `terminating` unset means false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Of the slice's address family (an `IPv4` or `IPv6` EndpointSlice).
    pub addresses: Vec<IpAddr>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// `hints.forZones[].name`: the zones whose nodes should use this endpoint (topology-aware
    /// routing, set by the EndpointSlice controller for `trafficDistribution: PreferClose`).
    pub zone_hints: Vec<String>,
    /// `hints.forNodes[].name` (`trafficDistribution: PreferSameNode`).
    pub node_hints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// The owning Service, from the `kubernetes.io/service-name` label.
    pub service_name: String,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// This node's `Node` object (the one named `node.name`): what health checks and
/// topology-aware routing need of it. Only the API server gives it; manifests do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The `topology.kubernetes.io/zone` label.
    pub zone: Option<String>,
    /// `metadata.deletionTimestamp` is set: the Node is being deleted.
    pub deleting: bool,
    /// The cluster autoscaler tainted it `ToBeDeletedByClusterAutoscaler`: it is being drained
    /// before removal (kube-proxy's health check then reports it unhealthy for load balancers).
    pub to_be_deleted: bool,
    /// `spec.podCIDRs`: this node's pods' prefixes (the kernel side routes them).
    pub pod_cidrs: Vec<(IpAddr, u8)>,
}

/// Everything the manifests and the API server say about Services, and this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// This node's `Node` object, once the API server has sent it.
    pub node: Option<Node>,
}
