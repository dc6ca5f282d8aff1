//! nodegate control plane.
//!
//! - [`config`]: the `nodegate run --config FILE` YAML, validated into plain values.
//! - [`manifests`]: Kubernetes Service / EndpointSlice manifests from disk into
//!   [`model::ClusterState`], and the conversion of watched objects.
//! - [`model`]: the control plane's own view of Services, EndpointSlices and this Node.
//! - [`snapshot`]: configuration plus cluster state into the data plane's immutable tables,
//!   with every kube-proxy policy decision taken there, once per change.
//! - [`sync`]: the control loop that merges the sources, coalesces changes, rebuilds and
//!   publishes the tables; [`sync::SyncStatus`] is what metrics and health read of it.
//! - [`watch`]: the sources: the API server watchers and the manifests directory poller.
//! - [`health`]: kube-proxy's proxy health rule and answers (shared state between the sync side
//!   and the health servers); [`metrics`]: `/metrics`; [`http`]: the HTTP/1.1 they speak.
#![forbid(unsafe_code)]

pub mod config;
mod fields;
pub mod health;
pub mod hoststack;
pub mod http;
pub mod manifests;
pub mod metrics;
pub mod model;
pub mod serve;
pub mod snapshot;
pub mod sync;
pub mod watch;

pub use config::{
    ApiMode, ApiSource, Cidr, Config, ConfigError, ConntrackConfig, Driver, HealthConfig,
    IdleConfig, KubernetesConfig, MetricsConfig, NeighborConfig, NodeConfig, PortConfig,
    RouteConfig, SnatConfig, TcpTimeouts,
};
pub use manifests::ManifestError;
pub use model::ClusterState;
