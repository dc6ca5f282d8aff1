//! nodegate control plane.
//!
//! - [`config`]: the `nodegate run --config FILE` YAML, validated into plain values.
//! - [`manifests`]: Kubernetes Service / EndpointSlice manifests from disk into
//!   [`model::ClusterState`].
//! - [`model`]: the control plane's own view of Services and EndpointSlices.
//!
//! This crate never depends on the data plane; it produces plain values that the binary turns
//! into data-plane tables.
#![forbid(unsafe_code)]

pub mod config;
pub mod manifests;
pub mod model;

pub use config::{
    Cidr, Config, ConfigError, ConntrackConfig, Driver, KubernetesConfig, NeighborConfig,
    NodeConfig, PortConfig, RouteConfig, SnatConfig, TcpTimeouts,
};
pub use manifests::ManifestError;
pub use model::ClusterState;
