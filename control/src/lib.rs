//! nodegate control plane.
//!
//! - [`config`]: the `nodegate run --config FILE` YAML, validated into plain values.
//! - [`manifests`]: Kubernetes Service / EndpointSlice manifests from disk into
//!   [`model::ClusterState`].
//! - [`model`]: the control plane's own view of Services and EndpointSlices.
//! - [`snapshot`]: configuration plus cluster state into the data plane's immutable tables,
//!   with every kube-proxy policy decision taken there, once per change.
#![forbid(unsafe_code)]

pub mod config;
pub mod manifests;
pub mod model;
pub mod snapshot;

pub use config::{
    Cidr, Config, ConfigError, ConntrackConfig, Driver, IdleConfig, KubernetesConfig,
    NeighborConfig, NodeConfig, PortConfig, RouteConfig, SnatConfig, TcpTimeouts,
};
pub use manifests::ManifestError;
pub use model::ClusterState;
