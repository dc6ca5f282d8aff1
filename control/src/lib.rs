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
#![forbid(unsafe_code)]

pub mod config;
pub mod manifests;
pub mod model;
pub mod snapshot;
pub mod sync;
pub mod watch;

pub use config::{
    ApiMode, ApiSource, Cidr, Config, ConfigError, ConntrackConfig, Driver, IdleConfig,
    KubernetesConfig, NeighborConfig, NodeConfig, PortConfig, RouteConfig, SnatConfig, TcpTimeouts,
};
pub use manifests::ManifestError;
pub use model::ClusterState;
