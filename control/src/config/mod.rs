//! The `nodegate run --config FILE` YAML file.
//!
//! The file is read into private serde "raw" structs (unknown fields rejected), then validated
//! into the plain public values below. Every error names the file, the dotted path of the
//! offending field (`ports[0].addresses[1]`) and the reason. Relative paths in the file (`rx`,
//! `tx`, `kubernetes.manifests`, `kubernetes.kubeconfig`) are resolved against the directory of the config file.
//!
//! ```yaml
//! node: { name: node-a, addresses: ["10.0.0.1"] }
//! workers: 1                 # 1..=64, default 1
//! cpus: [2]                  # optional, one per worker
//! ports:
//!   - name: eth0
//!     driver: pcap           # pcap | memory | af_xdp | af_packet | tap | dpdk
//!     rx: in.pcap
//!     tx: out.pcap
//!     mac: "02:00:00:00:00:01"
//!     addresses: ["10.0.0.1/16", "fd00::1/64"]   # IPv4 and IPv6, mixed
//!     # host_interface: nghost0   # live drivers: TAP for the kernel's own traffic
//! routes:
//!   - { prefix: "0.0.0.0/0", via: "10.0.255.254" }
//!   - { prefix: "::/0", via: "fd00::fffe" }
//! neighbors:
//!   - { address: "10.0.255.254", mac: "02:00:00:00:00:fe" }
//!   - { address: "fd00::fffe", mac: "02:00:00:00:00:fe" }
//! kubernetes: { manifests: manifests, kubeconfig: /etc/nodegate/kubeconfig, min_sync_ms: 1000 }
//! conntrack: { max_flows: 1048576, max_flows6: 262144, timeouts: { tcp_established: 432000, udp: 30 }, affinity_max: 65536 }
//! snat: { ports: "20000-29999" }
//! dpdk: { eal_args: ["--no-huge", "-m", "256"], mbufs: 16383, descriptors: 1024 }
//! health: { bind: "0.0.0.0:10256", timeout_secs: 60, node_port_address: "0.0.0.0", host_stack: true }
//! metrics: { bind: "127.0.0.1:10249" }
//! ```
//!
//! Each section of the file has its own module here, which shows its schema, holds its values
//! and validates it: `node` (node:), `ports` (ports:), `routes` (routes:, neighbors:),
//! `kubernetes` (kubernetes:), `conntrack` (conntrack:, snat:), `serve` (health:, metrics:),
//! `dpdk` (dpdk:); `values` holds what several share (prefixes, MACs). This module reads the
//! file, runs the sections in order and checks what spans them (workers and CPUs, idle).
//!
//! IPv6 entries share the YAML lists with IPv4 ones but land in separate fields
//! ([`PortConfig::addresses6`], [`Config::routes6`], [`Config::neighbors6`]); each IPv6 route and
//! neighbour remembers its position in the YAML list so later errors name the right field.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

mod conntrack;
mod dpdk;
mod kubernetes;
mod node;
mod ports;
mod routes;
mod serve;
mod values;

pub use conntrack::{ConntrackConfig, SnatConfig, TcpTimeouts};
use conntrack::{RawConntrack, RawSnat};
use dpdk::RawDpdk;
pub use dpdk::{DpdkConfig, DEFAULT_EAL_ARGS};
use kubernetes::RawKubernetes;
pub use kubernetes::{
    ApiMode, ApiSource, KubernetesConfig, DEFAULT_MIN_SYNC_MS, DEFAULT_NODE_PORT_RANGE,
    MAX_MIN_SYNC_MS,
};
use node::RawNode;
pub use node::{NodeConfig, NodePortAddresses};
use ports::{check_port_ref, check_unicast_mac, RawPort};
pub use ports::{DpdkBus, DpdkDevice, Driver, PortConfig, XdpMode};
pub use routes::{Neighbor6Config, NeighborConfig, Route6Config, RouteConfig};
use routes::{RawNeighbor, RawRoute};
pub use serve::{HealthConfig, MetricsConfig};
use serve::{RawHealth, RawMetrics};
pub use values::{Cidr, Cidr6, CidrParseError};
use values::{Ipv4, Mac, RawAnyCidr, RawAnyIp, RawDriver};

/// Most ports a configuration may declare.
pub const MAX_PORTS: usize = 32;

/// Most worker threads a configuration may ask for.
pub const MAX_WORKERS: usize = 64;

/// A validated `nodegate run` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this configuration was read from (as given to [`Config::load`]).
    pub file: PathBuf,
    pub node: NodeConfig,
    /// Number of forwarding workers, 1..=64.
    pub workers: usize,
    /// CPU to pin each worker to; same length as `workers` when given.
    pub cpus: Option<Vec<usize>>,
    pub ports: Vec<PortConfig>,
    /// IPv4 static routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// IPv4 static neighbours, in file order.
    pub neighbors: Vec<NeighborConfig>,
    /// IPv6 static routes (the IPv6 entries of the YAML `routes` list).
    pub routes6: Vec<Route6Config>,
    /// IPv6 static neighbours (the IPv6 entries of the YAML `neighbors` list).
    pub neighbors6: Vec<Neighbor6Config>,
    pub kubernetes: KubernetesConfig,
    pub conntrack: ConntrackConfig,
    pub snat: SnatConfig,
    pub idle: IdleConfig,
    /// The DPDK environment; used only when a port has `driver: dpdk`.
    pub dpdk: DpdkConfig,
    /// kube-proxy's health servers (live runs).
    pub health: HealthConfig,
    /// kube-proxy's metrics server (live runs).
    pub metrics: MetricsConfig,
}

/// `idle:` — how a live worker waits when its queues are empty: it busy-polls `spin` times, then
/// sleeps `sleep_us` microseconds between polls, so a small node is not starved by idle workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleConfig {
    pub spin: u32,
    pub sleep_us: u64,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            spin: 1024,
            sleep_us: 50,
        }
    }
}

/// A configuration that could not be read, parsed or validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the offending field (`ports[0].addresses[1]`), `(document)` for YAML
    /// syntax errors, `(file)` for I/O errors.
    pub field: String,
    pub reason: String,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            field: "(file)".to_string(),
            reason: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `file` names it in errors and its parent
    /// directory is the base of relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let err = |field: String, reason: String| ConfigError {
            file: file.to_path_buf(),
            field,
            reason,
        };
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| err("(document)".to_string(), e.to_string()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let (field, reason) = path_error(e.path(), e.inner().to_string());
            err(field, reason)
        })?;
        let base = file.parent().unwrap_or_else(|| Path::new(""));
        let mut config = raw
            .validate(base)
            .map_err(|(field, reason)| err(field, reason))?;
        config.file = file.to_path_buf();
        Ok(config)
    }
}

/// Turns a serde_path_to_error path and message into (field, reason); a "missing field" error
/// is reported at the missing field itself rather than at its parent.
pub(crate) fn path_error(path: &serde_path_to_error::Path, reason: String) -> (String, String) {
    let mut field = path.to_string();
    if field == "." {
        field.clear();
    }
    if let Some(rest) = reason.strip_prefix("missing field `") {
        if let Some(name) = rest.strip_suffix('`') {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
            return (field, "required field is missing".to_string());
        }
    }
    if field.is_empty() {
        field = "(document)".to_string();
    }
    (field, reason)
}

/// The YAML list position of the `k`-th IPv4 entry, given the positions of the IPv6 entries
/// (ascending) in the same list.
pub(crate) fn yaml_index(k: usize, v6: impl Iterator<Item = usize>) -> usize {
    let mut pos = k;
    for i in v6 {
        if i <= pos {
            pos += 1;
        } else {
            break;
        }
    }
    pos
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    workers: Option<usize>,
    cpus: Option<Vec<usize>>,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    neighbors: Vec<RawNeighbor>,
    kubernetes: Option<RawKubernetes>,
    conntrack: Option<RawConntrack>,
    snat: Option<RawSnat>,
    idle: Option<RawIdle>,
    dpdk: Option<RawDpdk>,
    health: Option<RawHealth>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdle {
    spin: Option<u32>,
    sleep_us: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Validation.

type Invalid = (String, String);

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Invalid> {
    Err((field.into(), reason.into()))
}

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

impl RawConfig {
    fn validate(self, base: &Path) -> Result<Config, Invalid> {
        let node = node::validate(self.node)?;

        // workers / cpus
        let workers = self.workers.unwrap_or(1);
        if !(1..=MAX_WORKERS).contains(&workers) {
            return invalid(
                "workers",
                format!("{workers} is out of range 1..={MAX_WORKERS}"),
            );
        }
        if let Some(cpus) = &self.cpus {
            if cpus.len() != workers {
                return invalid(
                    "cpus",
                    format!(
                        "{} CPUs listed for {workers} worker(s); give exactly one CPU per worker",
                        cpus.len()
                    ),
                );
            }
            let mut seen = HashSet::new();
            for (i, cpu) in cpus.iter().enumerate() {
                if !seen.insert(*cpu) {
                    return invalid(format!("cpus[{i}]"), format!("CPU {cpu} is listed twice"));
                }
            }
        }

        let (ports, port_index) = ports::validate(self.ports, base)?;
        let (routes, routes6) = routes::validate_routes(self.routes, &port_index)?;
        let (neighbors, neighbors6) = routes::validate_neighbors(self.neighbors, &port_index)?;
        let kubernetes = kubernetes::validate(self.kubernetes, base)?;
        let conntrack = conntrack::validate(self.conntrack)?;

        // idle
        let mut idle = IdleConfig::default();
        if let Some(raw) = self.idle {
            idle.spin = raw.spin.unwrap_or(idle.spin);
            idle.sleep_us = raw.sleep_us.unwrap_or(idle.sleep_us);
            if idle.sleep_us > 100_000 {
                return Err((
                    "idle.sleep_us".to_string(),
                    format!("{} µs is more than 100 ms of added latency", idle.sleep_us),
                ));
            }
        }

        // dpdk
        let dpdk = match self.dpdk {
            Some(raw) => dpdk::validate_dpdk(raw)?,
            None => DpdkConfig::default(),
        };

        let snat = conntrack::validate_snat(self.snat, kubernetes.node_port_range)?;
        let (health, metrics) = serve::validate(self.health, self.metrics)?;

        Ok(Config {
            file: PathBuf::new(),
            node,
            workers,
            cpus: self.cpus,
            ports,
            routes,
            neighbors,
            routes6,
            neighbors6,
            kubernetes,
            conntrack,
            snat,
            idle,
            dpdk,
            health,
            metrics,
        })
    }
}

/// An inclusive port range `MIN-MAX` with MIN below MAX (`example` shows the form).
fn parse_range(s: &str, example: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port range `{s}` (expected `MIN-MAX`, e.g. `{example}`)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let min: u16 = a.trim().parse().map_err(|_| bad())?;
    let max: u16 = b.trim().parse().map_err(|_| bad())?;
    if min >= max {
        return Err(format!(
            "range `{s}` is empty or reversed; the minimum must be below the maximum"
        ));
    }
    Ok((min, max))
}
