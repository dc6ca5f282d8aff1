//! nodegate control plane.
//!
//! - [`config`]: the `nodegate run --config FILE` YAML, validated into plain values.
//! - [`manifests`]: Kubernetes Service / EndpointSlice manifests from disk into
//!   [`model::ClusterState`].
//! - [`model`]: the control plane's own view of Services and EndpointSlices.
//! - [`snapshot`]: configuration plus cluster state into the data plane's immutable tables,
//!   with every kube-proxy policy decision taken there, once per change.
//! - [`health`]: kube-proxy's proxy health rule and answers (shared state between the sync side
//!   and the health servers); [`metrics`]: `/metrics`; [`http`]: the HTTP/1.1 they speak.
#![forbid(unsafe_code)]

pub mod config;
pub mod health;
pub mod hoststack;
pub mod http;
pub mod manifests;
pub mod metrics;
pub mod model;
pub mod serve;
pub mod snapshot;

pub use config::{
    Cidr, Config, ConfigError, ConntrackConfig, Driver, HealthConfig, IdleConfig, KubernetesConfig,
    MetricsConfig, NeighborConfig, NodeConfig, PortConfig, RouteConfig, SnatConfig, TcpTimeouts,
};
pub use manifests::ManifestError;
pub use model::ClusterState;
