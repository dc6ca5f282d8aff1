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
}

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

/// The mode of an af_xdp port (`mode:`), parsed once here; the driver gets this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// The best the driver takes: zero-copy, else native with copies, else generic (SKB).
    #[default]
    Auto,
    /// Generic XDP (after the kernel built an skb) and copies: works on every interface.
    Skb,
    /// The program runs in the driver; frames are copied into the UMEM.
    Native,
    /// The program runs in the driver and the NIC writes frames into the UMEM directly.
    ZeroCopy,
}

impl XdpMode {
    /// Every mode with its name in the configuration.
    pub const ALL: [(XdpMode, &'static str); 4] = [
        (XdpMode::Auto, "auto"),
        (XdpMode::Skb, "skb"),
        (XdpMode::Native, "native"),
        (XdpMode::ZeroCopy, "zerocopy"),
    ];
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = XdpMode::ALL
            .iter()
            .find(|(m, _)| m == self)
            .map(|(_, n)| *n);
        f.write_str(name.unwrap_or("auto"))
    }
}

impl std::str::FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<XdpMode, String> {
        XdpMode::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                format!("unknown af_xdp mode `{s}`, expected one of `auto`, `skb`, `native`, `zerocopy`")
            })
    }
}

/// Packet I/O driver of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// Read from / write to pcap files.
    Pcap,
    /// In-memory rings (tests, benchmarks).
    Memory,
    AfXdp,
    AfPacket,
    Tap,
    Dpdk,
}

impl Driver {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Pcap => "pcap",
            Driver::Memory => "memory",
            Driver::AfXdp => "af_xdp",
            Driver::AfPacket => "af_packet",
            Driver::Tap => "tap",
            Driver::Dpdk => "dpdk",
        }
    }

    /// Whether the driver attaches to a host interface (and so needs `interface`).
    pub fn needs_interface(self) -> bool {
        matches!(
            self,
            Driver::AfXdp | Driver::AfPacket | Driver::Tap | Driver::Dpdk
        )
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Driver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pcap" => Driver::Pcap,
            "memory" => Driver::Memory,
            "af_xdp" => Driver::AfXdp,
            "af_packet" => Driver::AfPacket,
            "tap" => Driver::Tap,
            "dpdk" => Driver::Dpdk,
            other => {
                return Err(format!(
                    "unknown driver `{other}`, expected one of `pcap`, `memory`, `af_xdp`, \
                     `af_packet`, `tap`, `dpdk`"
                ))
            }
        })
    }
}

/// `ports[]` — one network port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Unique name, referenced by `routes[].port` and `neighbors[].port`.
    pub name: String,
    pub driver: Driver,
    /// The port's own MAC (unicast); `None` lets the driver choose.
    pub mac: Option<[u8; 6]>,
    /// IPv4 interface addresses with their prefix length (host bits kept).
    pub addresses: Vec<Cidr>,
    /// IPv6 interface addresses (the IPv6 entries of the same YAML `addresses` list).
    pub addresses6: Vec<Cidr6>,
    /// pcap input file, resolved against the config file's directory.
    pub rx: Option<PathBuf>,
    /// pcap output file, resolved against the config file's directory.
    pub tx: Option<PathBuf>,
    /// Host interface (required for af_xdp, af_packet, tap, dpdk).
    pub interface: Option<String>,
    /// The node's exception path: a TAP interface of this name that `nodegate run` creates for
    /// the kernel. Frames for the node that the data plane does not handle itself (SSH, kubelet,
    /// BGP...) are handed to the kernel through it, and what the kernel sends on it leaves by
    /// this port. Live drivers only (af_xdp, af_packet, tap, dpdk).
    pub host_interface: Option<String>,
    /// Number of queues, >= 1 (default 1).
    pub queues: u16,
    /// af_xdp only (`None`: not given, which is [`XdpMode::Auto`]).
    pub mode: Option<XdpMode>,
    /// The device of a `dpdk` port, parsed from `interface`.
    pub dpdk_device: Option<DpdkDevice>,
}

/// The bus a DPDK device sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DpdkBus {
    /// A NIC bound to vfio-pci (or another driver DPDK can use), probed with `-a ADDRESS`.
    Pci,
    /// A virtual device (`net_af_packet`, `net_tap`, `net_af_xdp`, ...), probed with `--vdev`.
    Vdev,
}

/// A `dpdk` port's `interface`: a PCI address (`0000:03:00.0`) or a vdev spec
/// (`net_af_packet0,iface=veth0`), either followed by `,key=value` device arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DpdkDevice {
    pub bus: DpdkBus,
    /// The ethdev name DPDK gives the device: the PCI address in its long form
    /// (`0000:03:00.0`), or the vdev name (`net_af_packet0`).
    pub name: String,
    /// What the device is probed with: `name` followed by the device arguments, if any.
    pub devargs: String,
}

impl FromStr for DpdkDevice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "`{s}` is not a DPDK device: {why} (expected a PCI address such as `0000:03:00.0` \
                 or a vdev such as `net_af_packet0,iface=veth0`)"
            )
        };
        if s.chars().any(char::is_whitespace) {
            return Err(bad("it contains white space"));
        }
        let (head, args) = match s.split_once(',') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        if let Some(args) = args {
            if args.split(',').any(|a| a.is_empty() || a.starts_with('=')) {
                return Err(bad("an empty device argument"));
            }
        }
        let (bus, name) = if let Some(pci) = parse_pci_address(head) {
            (DpdkBus::Pci, pci)
        } else if let Some(driver) = head.strip_prefix("net_") {
            if driver.is_empty() || !head.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(bad(
                    "a vdev name is `net_` and a driver name with an instance number",
                ));
            }
            (DpdkBus::Vdev, head.to_string())
        } else {
            return Err(bad(
                "neither a PCI address nor a vdev name starting with `net_`",
            ));
        };
        let devargs = match args {
            Some(a) => format!("{name},{a}"),
            None => name.clone(),
        };
        Ok(DpdkDevice { bus, name, devargs })
    }
}

/// `[DDDD:]BB:DD.F` in hexadecimal, returned in DPDK's long form `dddd:bb:dd.f`.
fn parse_pci_address(s: &str) -> Option<String> {
    let hex = |t: &str, max_len: usize| -> Option<u32> {
        if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(t, 16).ok()
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (domain, bus, devfn) = match parts.as_slice() {
        [d, b, f] => (hex(d, 4)?, *b, *f),
        [b, f] => (0, *b, *f),
        _ => return None,
    };
    let bus = hex(bus, 2)?;
    let (dev, func) = devfn.split_once('.')?;
    let (dev, func) = (hex(dev, 2)?, hex(func, 1)?);
    if dev > 0x1f || func > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func}"))
}

/// An IPv4 address with a prefix length, `10.0.0.1/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub address: Ipv4Addr,
    /// 0..=32.
    pub prefix_len: u8,
}

impl Cidr {
    /// The netmask as a host-order integer (`/16` => `0xffff_0000`).
    pub fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The same prefix with the host bits cleared (`10.0.0.1/16` => `10.0.0.0/16`).
    pub fn network(&self) -> Cidr {
        Cidr {
            address: Ipv4Addr::from(u32::from(self.address) & self.mask()),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.address) & self.mask())
    }
}

/// Error of [`Cidr::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrParseError(String);

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| {
            CidrParseError(format!(
                "invalid IPv4 CIDR `{s}`: {why} (expected e.g. `10.0.0.1/16`)"
            ))
        };
        let (addr, len) = s.split_once('/').ok_or_else(|| err("missing `/prefix`"))?;
        let address: Ipv4Addr = addr.parse().map_err(|_| err("bad IPv4 address"))?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 2 {
            return Err(err("bad prefix length"));
        }
        let prefix_len: u8 = len.parse().map_err(|_| err("bad prefix length"))?;
        if prefix_len > 32 {
            return Err(err("prefix length must be 0..=32"));
        }
        Ok(Cidr {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// An IPv6 address with a prefix length, `fd00::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr6 {
    pub address: Ipv6Addr,
    /// 0..=128.
    pub prefix_len: u8,
}

impl Cidr6 {
    /// The netmask as an integer (`/64` => the upper 64 bits set).
    pub fn mask(&self) -> u128 {
        if self.prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix_len.min(128)))
        }
    }

    /// The same prefix with the host bits cleared (`fd00::1/64` => `fd00::/64`).
    pub fn network(&self) -> Cidr6 {
        Cidr6 {
            address: Ipv6Addr::from(u128::from(self.address) & self.mask()),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        (u128::from(ip) & self.mask()) == (u128::from(self.address) & self.mask())
    }
}

impl FromStr for Cidr6 {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| {
            CidrParseError(format!(
                "invalid IPv6 CIDR `{s}`: {why} (expected e.g. `fd00::1/64`)"
            ))
        };
        let (addr, len) = s.split_once('/').ok_or_else(|| err("missing `/prefix`"))?;
        let address: Ipv6Addr = addr.parse().map_err(|_| err("bad IPv6 address"))?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
            return Err(err("bad prefix length"));
        }
        let prefix_len: u8 = len.parse().map_err(|_| err("bad prefix length"))?;
        if prefix_len > 128 {
            return Err(err("prefix length must be 0..=128"));
        }
        Ok(Cidr6 {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// `routes[]` — an IPv6 static route (prefix and `via` are IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6Config {
    /// Position in the YAML `routes` list (for error messages: `routes[index]`).
    pub index: usize,
    /// Destination prefix, host bits cleared.
    pub prefix: Cidr6,
    /// Next hop; `None` means directly connected through `port`.
    pub via: Option<Ipv6Addr>,
    /// Outgoing port (a configured port name); required for a link-local `via`.
    pub port: Option<String>,
}

/// `neighbors[]` — a static IPv6 neighbour (NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor6Config {
    /// Position in the YAML `neighbors` list (for error messages: `neighbors[index]`).
    pub index: usize,
    pub address: Ipv6Addr,
    /// Unicast MAC.
    pub mac: [u8; 6],
    /// Port the neighbour is reached through (a configured port name).
    pub port: Option<String>,
}

/// `routes[]` — a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Destination prefix, host bits cleared.
    pub prefix: Cidr,
    /// Next hop; `None` means directly connected through `port`.
    pub via: Option<Ipv4Addr>,
    /// Outgoing port (a configured port name).
    pub port: Option<String>,
}

/// `neighbors[]` — a static ARP entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    pub address: Ipv4Addr,
    /// Unicast MAC.
    pub mac: [u8; 6],
    /// Port the neighbour is reached through (a configured port name).
    pub port: Option<String>,
}

/// kube-proxy's `minSyncPeriod` default: at most one table rebuild per second.
pub const DEFAULT_MIN_SYNC_MS: u64 = 1000;
/// Longest `kubernetes.min_sync_ms` accepted (one minute).
pub const MAX_MIN_SYNC_MS: u64 = 60_000;

/// `kubernetes:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// Directory of Service / EndpointSlice manifests, resolved against the config file's
    /// directory.
    pub manifests: Option<PathBuf>,
    /// Kubeconfig file for the API server, resolved against the config file's directory
    /// (`--kubeconfig` overrides it).
    pub kubeconfig: Option<PathBuf>,
    /// Whether and how to find the API server when no kubeconfig is named.
    pub api: ApiMode,
    /// Least time between two table rebuilds (kube-proxy's `minSyncPeriod`): changes arriving
    /// meanwhile are applied together by the next one.
    pub min_sync: std::time::Duration,
    /// The cluster's NodePort range (the API server's `--service-node-port-range`), inclusive:
    /// `snat.ports` must stay out of it.
    pub node_port_range: (u16, u16),
}

/// The API server's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            manifests: None,
            kubeconfig: None,
            api: ApiMode::Auto,
            min_sync: std::time::Duration::from_millis(DEFAULT_MIN_SYNC_MS),
            node_port_range: DEFAULT_NODE_PORT_RANGE,
        }
    }
}

/// `kubernetes.api`: where the API server's address and credentials come from when no
/// kubeconfig is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMode {
    /// A named kubeconfig, else the in-cluster configuration when running in a pod
    /// (`KUBERNETES_SERVICE_HOST` set), else no API server (manifests only).
    Auto,
    /// What kubectl would use: `$KUBECONFIG` or `~/.kube/config`, else the in-cluster
    /// configuration (kube's `Config::infer`).
    Infer,
    /// Never watch the API server, even in a pod: a clusterless node served by manifests.
    Off,
}

/// Where the API server watchers get their client configuration, as decided by
/// [`KubernetesConfig::api_source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    /// No API server: the tables come from the manifests only.
    None,
    /// This kubeconfig file, its current context.
    Kubeconfig(PathBuf),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA under
    /// `/var/run/secrets/kubernetes.io/serviceaccount`).
    InCluster,
    /// kube's `Config::infer`: `$KUBECONFIG` or `~/.kube/config`, else in-cluster.
    Infer,
}

impl std::fmt::Display for ApiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiSource::None => f.write_str("none"),
            ApiSource::Kubeconfig(path) => write!(f, "kubeconfig {}", path.display()),
            ApiSource::InCluster => f.write_str("in-cluster service account"),
            ApiSource::Infer => f.write_str("inferred ($KUBECONFIG, ~/.kube/config or in-cluster)"),
        }
    }
}

impl KubernetesConfig {
    /// Decides where the API server comes from: `cli_kubeconfig` (`--kubeconfig`) first, then
    /// `kubeconfig`, then `api`; `in_pod` says whether the in-cluster environment
    /// (`KUBERNETES_SERVICE_HOST`) is there. A kubeconfig with `api: off` is a contradiction and
    /// an error naming the field.
    pub fn api_source(
        &self,
        file: &Path,
        cli_kubeconfig: Option<&Path>,
        in_pod: bool,
    ) -> Result<ApiSource, ConfigError> {
        let kubeconfig = cli_kubeconfig
            .map(Path::to_path_buf)
            .or(self.kubeconfig.clone());
        match (self.api, kubeconfig) {
            (ApiMode::Off, Some(k)) => Err(ConfigError {
                file: file.to_path_buf(),
                field: "kubernetes.api".to_string(),
                reason: format!(
                    "`off` does not watch the API server, but a kubeconfig ({}) is given",
                    k.display()
                ),
            }),
            (ApiMode::Off, None) => Ok(ApiSource::None),
            (_, Some(k)) => Ok(ApiSource::Kubeconfig(k)),
            (ApiMode::Infer, None) => Ok(ApiSource::Infer),
            (ApiMode::Auto, None) if in_pod => Ok(ApiSource::InCluster),
            (ApiMode::Auto, None) => Ok(ApiSource::None),
        }
    }
}

/// TCP connection-tracking timeouts in seconds (Linux nf_conntrack defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimeouts {
    pub syn_sent: u32,
    pub syn_recv: u32,
    pub established: u32,
    pub fin_wait: u32,
    pub close_wait: u32,
    pub last_ack: u32,
    pub time_wait: u32,
    pub close: u32,
    pub unacknowledged: u32,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        TcpTimeouts {
            syn_sent: 120,
            syn_recv: 60,
            established: 432_000,
            fin_wait: 120,
            close_wait: 60,
            last_ack: 30,
            time_wait: 120,
            close: 10,
            unacknowledged: 300,
        }
    }
}

/// `conntrack:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Capacity of the flow table, >= 16 (default 1_048_576).
    pub max_flows: usize,
    /// Capacity of the IPv6 flow table (IPv6 Services), >= 16 (default a quarter of
    /// `max_flows`: an IPv6 flow takes 128 bytes, an IPv4 one 64).
    pub max_flows6: usize,
    pub tcp: TcpTimeouts,
    /// UDP flow seen in one direction only (default 30).
    pub udp_secs: u32,
    /// UDP flow seen in both directions (default 120).
    pub udp_stream_secs: u32,
    /// ICMP (default 30).
    pub icmp_secs: u32,
    /// SCTP, one generic established-like timeout (default 3600).
    pub sctp_secs: u32,
    /// Capacity of the session-affinity table, >= 1 (default 65536).
    pub affinity_max: usize,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_flows: 1_048_576,
            max_flows6: 262_144,
            tcp: TcpTimeouts::default(),
            udp_secs: 30,
            udp_stream_secs: 120,
            icmp_secs: 30,
            sctp_secs: 3600,
            affinity_max: 65_536,
        }
    }
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

/// The EAL arguments of a run without a `dpdk.eal_args` list: no huge pages (256 MiB of
/// ordinary memory), no shared files, no telemetry socket, so that runs in different network
/// namespaces on one machine cannot collide. Production nodes with huge pages set their own.
pub const DEFAULT_EAL_ARGS: &[&str] = &[
    "--no-huge",
    "-m",
    "256",
    "--no-shconf",
    "--no-telemetry",
    "--file-prefix=nodegate",
];

/// EAL options that select devices: nodegate derives them from `ports[].interface`.
const EAL_DEVICE_OPTIONS: &[&str] = &[
    "-a",
    "--allow",
    "-b",
    "--block",
    "-w",
    "--pci-whitelist",
    "--pci-blacklist",
    "--vdev",
    "--no-pci",
];

/// `dpdk:` — the DPDK environment of `dpdk` ports (ignored when there are none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkConfig {
    /// EAL arguments (memory, lcores, logging), [`DEFAULT_EAL_ARGS`] unless given. The device
    /// arguments (`--vdev`, `-a`, `--no-pci`) are derived from the ports and are not allowed here.
    pub eal_args: Vec<String>,
    /// Buffers in each port's rte_mbuf pool; `None` sizes it from its queues and descriptors.
    pub mbufs: Option<u32>,
    /// RX and TX descriptors per queue (rounded to what the device supports), default 1024.
    pub descriptors: u16,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            eal_args: DEFAULT_EAL_ARGS.iter().map(|s| s.to_string()).collect(),
            mbufs: None,
            descriptors: 1024,
        }
    }
}

/// `snat:` — source ports used when masquerading, inclusive range.
///
/// The default, 20000-29999, stays out of the kernel's ephemeral ports (Linux's
/// `ip_local_port_range`, 32768-60999 by default) and of the NodePort range (30000-32767): the
/// node's kernel shares the node addresses through its `host_interface`, and a reply to one of
/// its own connections on a port that is also a live SNAT port would be taken for the SNATed
/// flow's. (Calico's eBPF data plane picks the same range for the same reason.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnatConfig {
    pub port_min: u16,
    pub port_max: u16,
}

impl Default for SnatConfig {
    fn default() -> Self {
        SnatConfig {
            port_min: 20000,
            port_max: 29999,
        }
    }
}

/// `health:` — what kube-proxy's health servers do, nodegate's do (live runs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Where the proxy health server (`/healthz`, `/livez`) listens, on the node's kernel;
    /// kube-proxy's `--healthz-bind-address`. `None` (`bind: ""`): not served.
    pub bind: Option<SocketAddr>,
    /// How long a table change may wait to be in effect in every worker before the proxy is
    /// unhealthy; kube-proxy's is twice its sync period, 2 x 30 s.
    pub timeout_secs: u32,
    /// Where the node's kernel listens on each Service's `healthCheckNodePort` (kube-proxy:
    /// every address, or its `--nodeport-addresses`). `None` (`node_port_address: ""`): only the
    /// data-plane ports answer.
    pub node_port_address: Option<IpAddr>,
    /// Whether the data-plane ports answer health checks themselves (the host stack).
    pub host_stack: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            bind: Some(SocketAddr::from(([0, 0, 0, 0], 10256))),
            timeout_secs: 60,
            node_port_address: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            host_stack: true,
        }
    }
}

/// `metrics:` — kube-proxy's metrics server (`/metrics`, `/proxyMode`, `/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// kube-proxy's `--metrics-bind-address`; `None` (`bind: ""`): not served.
    pub bind: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 10249))),
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

// ---------------------------------------------------------------------------------------------
// Raw serde structs.

struct Mac([u8; 6]);

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<dataplane::wire::MacAddr>()
            .map(|m| Mac(m.0))
            .map_err(|_| {
                de::Error::custom(format!(
                    "invalid MAC address `{s}` (expected six hex octets like `02:00:00:00:00:01`)"
                ))
            })
    }
}

/// An IPv4 or IPv6 prefix: IPv6 when the text holds a `:`.
enum RawAnyCidr {
    V4(Cidr),
    V6(Cidr6),
}

impl<'de> Deserialize<'de> for RawAnyCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains(':') {
            s.parse().map(RawAnyCidr::V6).map_err(de::Error::custom)
        } else {
            s.parse().map(RawAnyCidr::V4).map_err(de::Error::custom)
        }
    }
}

/// An IPv4 or IPv6 address: IPv6 when the text holds a `:`.
enum RawAnyIp {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl<'de> Deserialize<'de> for RawAnyIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains(':') {
            s.parse().map(RawAnyIp::V6).map_err(|_| {
                de::Error::custom(format!(
                    "invalid IPv6 address `{s}` (expected e.g. `fd00::1`)"
                ))
            })
        } else {
            s.parse().map(RawAnyIp::V4).map_err(|_| {
                de::Error::custom(format!(
                    "invalid IPv4 address `{s}` (expected e.g. `10.0.0.1`)"
                ))
            })
        }
    }
}

struct RawDriver(Driver);

impl<'de> Deserialize<'de> for RawDriver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(RawDriver).map_err(de::Error::custom)
    }
}

struct Ipv4(Ipv4Addr);

impl<'de> Deserialize<'de> for Ipv4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Ipv4).map_err(|_| {
            de::Error::custom(format!(
                "invalid IPv4 address `{s}` (expected e.g. `10.0.0.1`)"
            ))
        })
    }
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
struct RawNode {
    name: String,
    #[serde(default)]
    addresses: Vec<Ipv4>,
    node_port_addresses: Option<Vec<String>>,
    zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    driver: RawDriver,
    mac: Option<Mac>,
    #[serde(default)]
    addresses: Vec<RawAnyCidr>,
    rx: Option<PathBuf>,
    tx: Option<PathBuf>,
    interface: Option<String>,
    host_interface: Option<String>,
    queues: Option<u16>,
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: RawAnyCidr,
    via: Option<RawAnyIp>,
    port: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: RawAnyIp,
    mac: Mac,
    port: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    manifests: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    api: Option<String>,
    min_sync_ms: Option<u64>,
    node_port_range: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    max_flows: Option<usize>,
    max_flows6: Option<usize>,
    timeouts: Option<RawTimeouts>,
    affinity_max: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp_syn_sent: Option<u32>,
    tcp_syn_recv: Option<u32>,
    tcp_established: Option<u32>,
    tcp_fin_wait: Option<u32>,
    tcp_close_wait: Option<u32>,
    tcp_last_ack: Option<u32>,
    tcp_time_wait: Option<u32>,
    tcp_close: Option<u32>,
    tcp_unacknowledged: Option<u32>,
    udp: Option<u32>,
    udp_stream: Option<u32>,
    icmp: Option<u32>,
    sctp: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdle {
    spin: Option<u32>,
    sleep_us: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpdk {
    eal_args: Option<Vec<String>>,
    mbufs: Option<u32>,
    descriptors: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    bind: Option<String>,
    timeout_secs: Option<u32>,
    node_port_address: Option<String>,
    host_stack: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    bind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnat {
    ports: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validation.

type Invalid = (String, String);

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Invalid> {
    Err((field.into(), reason.into()))
}

fn is_multicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

fn check_unicast_mac(field: String, mac: &[u8; 6]) -> Result<(), Invalid> {
    if is_multicast_mac(mac) {
        return invalid(
            field,
            format!(
                "{} is a multicast/broadcast MAC address; a unicast one is required",
                dataplane::wire::MacAddr(*mac)
            ),
        );
    }
    if *mac == [0; 6] {
        return invalid(field, "the all-zero MAC address is not allowed");
    }
    Ok(())
}

/// Linux's rules for an interface name (`dev_valid_name`): 1 to 15 bytes (`IFNAMSIZ` - 1), not
/// `.` or `..`, and no `/`, `:` or whitespace.
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name `{name}` has {} bytes; Linux allows 1 to 15",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name `{name}` contains {c:?}; Linux forbids `/`, `:` and whitespace"
        ));
    }
    Ok(())
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
        // node
        if self.node.name.trim().is_empty() {
            return invalid("node.name", "must not be empty");
        }
        let node_port_addresses = match self.node.node_port_addresses {
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
        let node = NodeConfig {
            name: self.node.name,
            addresses: self.node.addresses.into_iter().map(|a| a.0).collect(),
            node_port_addresses,
            zone: self.node.zone.filter(|z| !z.trim().is_empty()),
        };

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

        // ports
        if self.ports.is_empty() {
            return invalid("ports", "at least one port is required");
        }
        if self.ports.len() > MAX_PORTS {
            return invalid(
                "ports",
                format!(
                    "{} ports configured; at most {MAX_PORTS} are supported",
                    self.ports.len()
                ),
            );
        }
        let mut port_index: HashMap<String, usize> = HashMap::new();
        let mut ports = Vec::with_capacity(self.ports.len());
        for (i, p) in self.ports.into_iter().enumerate() {
            let at = |f: &str| format!("ports[{i}].{f}");
            if p.name.trim().is_empty() {
                return invalid(at("name"), "must not be empty");
            }
            if let Some(prev) = port_index.get(&p.name) {
                return invalid(
                    at("name"),
                    format!("duplicate port name `{}` (also ports[{prev}])", p.name),
                );
            }
            port_index.insert(p.name.clone(), i);
            let driver = p.driver.0;
            if let Some(mac) = &p.mac {
                check_unicast_mac(at("mac"), &mac.0)?;
            }
            let mut addresses: Vec<Cidr> = Vec::with_capacity(p.addresses.len());
            let mut addresses6: Vec<Cidr6> = Vec::new();
            for (j, a) in p.addresses.into_iter().enumerate() {
                let c = match a {
                    RawAnyCidr::V4(c) => c,
                    RawAnyCidr::V6(c) => {
                        let ip = c.address;
                        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                            return invalid(
                                format!("ports[{i}].addresses[{j}]"),
                                format!("{c} is not a usable interface address"),
                            );
                        }
                        if addresses6.iter().any(|x| x.address == ip) {
                            return invalid(
                                format!("ports[{i}].addresses[{j}]"),
                                format!("address {ip} is listed twice"),
                            );
                        }
                        addresses6.push(c);
                        continue;
                    }
                };
                let ip = c.address;
                if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                    return invalid(
                        format!("ports[{i}].addresses[{j}]"),
                        format!("{c} is not a usable interface address"),
                    );
                }
                if addresses.iter().any(|x| x.address == ip) {
                    return invalid(
                        format!("ports[{i}].addresses[{j}]"),
                        format!("address {ip} is listed twice"),
                    );
                }
                addresses.push(c);
            }
            if driver == Driver::Pcap && p.rx.is_none() && p.tx.is_none() {
                return invalid(
                    format!("ports[{i}]"),
                    "a pcap port needs `rx` (input file), `tx` (output file) or both",
                );
            }
            if driver.needs_interface()
                && p.interface.as_deref().is_none_or(|s| s.trim().is_empty())
            {
                return invalid(
                    at("interface"),
                    format!("the {driver} driver needs `interface` (a host interface name)"),
                );
            }
            if let Some(host) = &p.host_interface {
                check_interface_name(host).map_err(|r| (at("host_interface"), r))?;
                if !driver.needs_interface() {
                    return invalid(
                        at("host_interface"),
                        format!(
                            "the {driver} driver has no live traffic to share with the kernel; \
                             `host_interface` is for the af_xdp, af_packet, tap and dpdk drivers"
                        ),
                    );
                }
            }
            let dpdk_device = match (driver, &p.interface) {
                (Driver::Dpdk, Some(iface)) => {
                    let dev: DpdkDevice = iface.parse().map_err(|r| (at("interface"), r))?;
                    if let Some(j) = ports.iter().position(|q: &PortConfig| {
                        q.dpdk_device.as_ref().is_some_and(|d| d.name == dev.name)
                    }) {
                        return invalid(
                            at("interface"),
                            format!("device `{}` is also ports[{j}]", dev.name),
                        );
                    }
                    Some(dev)
                }
                _ => None,
            };
            let queues = p.queues.unwrap_or(1);
            if queues == 0 {
                return invalid(at("queues"), "must be at least 1");
            }
            let mode = match &p.mode {
                Some(_) if driver != Driver::AfXdp => {
                    return invalid(
                        at("mode"),
                        format!("the {driver} driver has no modes; `mode` is for af_xdp"),
                    );
                }
                Some(mode) => match mode.parse::<XdpMode>() {
                    Ok(m) => Some(m),
                    Err(reason) => return invalid(at("mode"), reason),
                },
                None => None,
            };
            ports.push(PortConfig {
                name: p.name,
                driver,
                mac: p.mac.map(|m| m.0),
                addresses,
                addresses6,
                rx: p.rx.map(|x| resolve(base, x)),
                tx: p.tx.map(|x| resolve(base, x)),
                interface: p.interface,
                host_interface: p.host_interface,
                queues,
                mode,
                dpdk_device,
            });
        }

        // Host interfaces: neither shared between ports nor one of the ports' own interfaces.
        for (i, p) in ports.iter().enumerate() {
            let Some(host) = p.host_interface.as_deref() else {
                continue;
            };
            let clash = ports.iter().enumerate().find_map(|(j, q)| {
                if j < i && q.host_interface.as_deref() == Some(host) {
                    Some(format!("ports[{j}].host_interface"))
                } else if q.interface.as_deref() == Some(host) {
                    Some(format!("ports[{j}].interface"))
                } else {
                    None
                }
            });
            if let Some(other) = clash {
                return invalid(
                    format!("ports[{i}].host_interface"),
                    format!("interface `{host}` is already used (also {other})"),
                );
            }
        }

        let check_port_ref = |field: String, name: &Option<String>| -> Result<(), Invalid> {
            match name {
                Some(n) if !port_index.contains_key(n) => {
                    let mut known: Vec<&str> = port_index.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    invalid(
                        field,
                        format!(
                            "unknown port `{n}` (configured ports: {})",
                            known.join(", ")
                        ),
                    )
                }
                _ => Ok(()),
            }
        };

        // routes
        let mut routes: Vec<RouteConfig> = Vec::with_capacity(self.routes.len());
        let mut routes6: Vec<Route6Config> = Vec::new();
        for (i, r) in self.routes.into_iter().enumerate() {
            let prefix = match r.prefix {
                RawAnyCidr::V4(c) => c.network(),
                RawAnyCidr::V6(c) => {
                    routes6.push(validate_route6(i, c.network(), r.via, r.port, &routes6)?);
                    check_port_ref(
                        format!("routes[{i}].port"),
                        &routes6[routes6.len() - 1].port,
                    )?;
                    continue;
                }
            };
            let via = match r.via {
                None => None,
                Some(RawAnyIp::V4(v)) => Some(v),
                Some(RawAnyIp::V6(v)) => {
                    return invalid(
                        format!("routes[{i}].via"),
                        format!("{v} is an IPv6 next hop for the IPv4 prefix {prefix}"),
                    )
                }
            };
            if via.is_none() && r.port.is_none() {
                return invalid(
                    format!("routes[{i}]"),
                    "a route needs `via` (next hop), `port` (directly connected) or both",
                );
            }
            check_port_ref(format!("routes[{i}].port"), &r.port)?;
            if let Some(v) = via {
                if v.is_unspecified() || v.is_multicast() || v.is_broadcast() {
                    return invalid(
                        format!("routes[{i}].via"),
                        format!("{v} is not a usable next hop"),
                    );
                }
            }
            if let Some(j) = routes.iter().position(|x| x.prefix == prefix) {
                // Report the YAML position of the earlier route, IPv6 entries counted.
                let j = yaml_index(j, routes6.iter().map(|r| r.index));
                return invalid(
                    format!("routes[{i}].prefix"),
                    format!("duplicate route for {prefix} (also routes[{j}])"),
                );
            }
            routes.push(RouteConfig {
                prefix,
                via,
                port: r.port,
            });
        }

        // neighbours
        let mut neighbors: Vec<NeighborConfig> = Vec::with_capacity(self.neighbors.len());
        let mut neighbors6: Vec<Neighbor6Config> = Vec::new();
        for (i, n) in self.neighbors.into_iter().enumerate() {
            check_unicast_mac(format!("neighbors[{i}].mac"), &n.mac.0)?;
            check_port_ref(format!("neighbors[{i}].port"), &n.port)?;
            let address = match n.address {
                RawAnyIp::V4(a) => a,
                RawAnyIp::V6(address) => {
                    if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
                        return invalid(
                            format!("neighbors[{i}].address"),
                            format!("{address} is not a usable neighbor address"),
                        );
                    }
                    if let Some(x) = neighbors6
                        .iter()
                        .find(|x| x.address == address && x.port == n.port)
                    {
                        return invalid(
                            format!("neighbors[{i}].address"),
                            format!("duplicate neighbor {address} (also neighbors[{}])", x.index),
                        );
                    }
                    neighbors6.push(Neighbor6Config {
                        index: i,
                        address,
                        mac: n.mac.0,
                        port: n.port,
                    });
                    continue;
                }
            };
            if let Some(j) = neighbors
                .iter()
                .position(|x| x.address == address && x.port == n.port)
            {
                let j = yaml_index(j, neighbors6.iter().map(|n| n.index));
                return invalid(
                    format!("neighbors[{i}].address"),
                    format!("duplicate neighbor {address} (also neighbors[{j}])"),
                );
            }
            neighbors.push(NeighborConfig {
                address,
                mac: n.mac.0,
                port: n.port,
            });
        }

        // kubernetes
        let mut kubernetes = KubernetesConfig::default();
        if let Some(k) = self.kubernetes {
            kubernetes.manifests = k.manifests.map(|m| resolve(base, m));
            if let Some(path) = k.kubeconfig {
                if path.as_os_str().is_empty() {
                    return invalid("kubernetes.kubeconfig", "must not be empty");
                }
                kubernetes.kubeconfig = Some(resolve(base, path));
            }
            if let Some(api) = k.api {
                kubernetes.api = match api.as_str() {
                    "auto" => ApiMode::Auto,
                    "infer" => ApiMode::Infer,
                    "off" => ApiMode::Off,
                    other => {
                        return invalid(
                            "kubernetes.api",
                            format!("unknown mode `{other}`, expected `auto`, `infer` or `off`"),
                        )
                    }
                };
            }
            if let Some(ms) = k.min_sync_ms {
                if ms > MAX_MIN_SYNC_MS {
                    return invalid(
                        "kubernetes.min_sync_ms",
                        format!("{ms} is above the maximum {MAX_MIN_SYNC_MS} (one minute)"),
                    );
                }
                kubernetes.min_sync = std::time::Duration::from_millis(ms);
            }
            if let Some(range) = k.node_port_range {
                kubernetes.node_port_range = parse_range(&range, "30000-32767")
                    .map_err(|r| ("kubernetes.node_port_range".to_string(), r))?;
            }
        }
        if kubernetes.api == ApiMode::Off {
            if let Some(k) = &kubernetes.kubeconfig {
                return invalid(
                    "kubernetes.api",
                    format!(
                        "`off` does not watch the API server, but kubernetes.kubeconfig is {}",
                        k.display()
                    ),
                );
            }
        }

        // conntrack
        let mut conntrack = ConntrackConfig::default();
        if let Some(c) = self.conntrack {
            if let Some(m) = c.max_flows {
                if m < 16 {
                    return invalid(
                        "conntrack.max_flows",
                        format!("{m} is below the minimum 16"),
                    );
                }
                conntrack.max_flows = m;
                conntrack.max_flows6 = (m / 4).max(16);
            }
            if let Some(m) = c.max_flows6 {
                if m < 16 {
                    return invalid(
                        "conntrack.max_flows6",
                        format!("{m} is below the minimum 16"),
                    );
                }
                conntrack.max_flows6 = m;
            }
            if let Some(m) = c.affinity_max {
                if m < 1 {
                    return invalid("conntrack.affinity_max", "must be at least 1");
                }
                conntrack.affinity_max = m;
            }
            if let Some(t) = c.timeouts {
                let tcp = &mut conntrack.tcp;
                let slots: [(&str, Option<u32>, &mut u32); 13] = [
                    ("tcp_syn_sent", t.tcp_syn_sent, &mut tcp.syn_sent),
                    ("tcp_syn_recv", t.tcp_syn_recv, &mut tcp.syn_recv),
                    ("tcp_established", t.tcp_established, &mut tcp.established),
                    ("tcp_fin_wait", t.tcp_fin_wait, &mut tcp.fin_wait),
                    ("tcp_close_wait", t.tcp_close_wait, &mut tcp.close_wait),
                    ("tcp_last_ack", t.tcp_last_ack, &mut tcp.last_ack),
                    ("tcp_time_wait", t.tcp_time_wait, &mut tcp.time_wait),
                    ("tcp_close", t.tcp_close, &mut tcp.close),
                    (
                        "tcp_unacknowledged",
                        t.tcp_unacknowledged,
                        &mut tcp.unacknowledged,
                    ),
                    ("udp", t.udp, &mut conntrack.udp_secs),
                    ("udp_stream", t.udp_stream, &mut conntrack.udp_stream_secs),
                    ("icmp", t.icmp, &mut conntrack.icmp_secs),
                    ("sctp", t.sctp, &mut conntrack.sctp_secs),
                ];
                for (name, value, slot) in slots {
                    if let Some(v) = value {
                        if v == 0 {
                            return invalid(
                                format!("conntrack.timeouts.{name}"),
                                "a timeout must be at least 1 second",
                            );
                        }
                        *slot = v;
                    }
                }
            }
        }

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
            Some(raw) => validate_dpdk(raw)?,
            None => DpdkConfig::default(),
        };

        // snat
        let mut snat = SnatConfig::default();
        if let Some(ports) = self.snat.and_then(|s| s.ports) {
            snat = parse_port_range(&ports).map_err(|r| ("snat.ports".to_string(), r))?;
        }
        let (np_min, np_max) = kubernetes.node_port_range;
        if snat.port_min <= np_max && np_min <= snat.port_max {
            return invalid(
                "snat.ports",
                format!(
                    "{}-{} overlaps the NodePort range {np_min}-{np_max} (kubernetes.node_port_range): \
                     a new connection to a NodePort could be taken for the reply of a SNATed flow; \
                     choose ports outside it (the default is 20000-29999)",
                    snat.port_min, snat.port_max
                ),
            );
        }

        // health, metrics
        let mut health = HealthConfig::default();
        if let Some(raw) = self.health {
            if let Some(b) = raw.bind {
                health.bind = parse_bind(&b).map_err(|r| ("health.bind".to_string(), r))?;
            }
            if let Some(t) = raw.timeout_secs {
                if !(1..=3600).contains(&t) {
                    return invalid(
                        "health.timeout_secs",
                        format!("{t} is out of range 1..=3600"),
                    );
                }
                health.timeout_secs = t;
            }
            if let Some(a) = raw.node_port_address {
                health.node_port_address = if a.is_empty() {
                    None
                } else {
                    Some(a.parse().map_err(|_| {
                        (
                            "health.node_port_address".to_string(),
                            format!(
                                "invalid IP address `{a}` (expected e.g. `0.0.0.0`, or \"\" for none)"
                            ),
                        )
                    })?)
                };
            }
            health.host_stack = raw.host_stack.unwrap_or(health.host_stack);
        }
        let mut metrics = MetricsConfig::default();
        if let Some(b) = self.metrics.and_then(|m| m.bind) {
            metrics.bind = parse_bind(&b).map_err(|r| ("metrics.bind".to_string(), r))?;
        }
        if let (Some(h), Some(m)) = (health.bind, metrics.bind) {
            if h.port() == m.port()
                && (h.ip() == m.ip() || h.ip().is_unspecified() || m.ip().is_unspecified())
            {
                return invalid("metrics.bind", format!("{m} collides with health.bind {h}"));
            }
        }

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

/// A server's `ADDRESS:PORT` (`[::]:10256` for IPv6), or `""` for no server.
fn parse_bind(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("`{s}` has port 0; give the port to listen on")),
        Ok(a) => Ok(Some(a)),
        Err(_) => Err(format!(
            "invalid address `{s}` (expected ADDRESS:PORT such as `0.0.0.0:10256` or `[::]:10256`, \
             or \"\" for no server)"
        )),
    }
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

fn validate_route6(
    i: usize,
    prefix: Cidr6,
    via: Option<RawAnyIp>,
    port: Option<String>,
    seen: &[Route6Config],
) -> Result<Route6Config, Invalid> {
    let via = match via {
        None => None,
        Some(RawAnyIp::V6(v)) => Some(v),
        Some(RawAnyIp::V4(v)) => {
            return invalid(
                format!("routes[{i}].via"),
                format!("{v} is an IPv4 next hop for the IPv6 prefix {prefix}"),
            )
        }
    };
    if via.is_none() && port.is_none() {
        return invalid(
            format!("routes[{i}]"),
            "a route needs `via` (next hop), `port` (directly connected) or both",
        );
    }
    if let Some(v) = via {
        if v.is_unspecified() || v.is_multicast() || v.is_loopback() {
            return invalid(
                format!("routes[{i}].via"),
                format!("{v} is not a usable next hop"),
            );
        }
        if v.is_unicast_link_local() && port.is_none() {
            return invalid(
                format!("routes[{i}].port"),
                format!("the link-local next hop {v} needs `port` (the link it is on)"),
            );
        }
    }
    if let Some(r) = seen.iter().find(|x| x.prefix == prefix) {
        return invalid(
            format!("routes[{i}].prefix"),
            format!("duplicate route for {prefix} (also routes[{}])", r.index),
        );
    }
    Ok(Route6Config {
        index: i,
        prefix,
        via,
        port,
    })
}

fn validate_dpdk(raw: RawDpdk) -> Result<DpdkConfig, Invalid> {
    let mut dpdk = DpdkConfig::default();
    if let Some(args) = raw.eal_args {
        for (i, a) in args.iter().enumerate() {
            if a.is_empty() {
                return invalid(format!("dpdk.eal_args[{i}]"), "must not be empty");
            }
            let option = a.split_once('=').map_or(a.as_str(), |(o, _)| o);
            // `-a0000:03:00.0` is `-a` too.
            let short = |o: &str| o.len() == 2 && a.starts_with(o);
            if EAL_DEVICE_OPTIONS.iter().any(|o| *o == option || short(o)) {
                return invalid(
                    format!("dpdk.eal_args[{i}]"),
                    format!(
                        "`{a}` selects devices; nodegate derives the device options from \
                         `ports[].interface` (a PCI address or a vdev spec)"
                    ),
                );
            }
        }
        dpdk.eal_args = args;
    }
    if let Some(m) = raw.mbufs {
        if !(1024..=(1 << 22)).contains(&m) {
            return invalid(
                "dpdk.mbufs",
                format!("{m} is out of range 1024..={}", 1 << 22),
            );
        }
        dpdk.mbufs = Some(m);
    }
    if let Some(d) = raw.descriptors {
        if !(32..=16384).contains(&d) {
            return invalid(
                "dpdk.descriptors",
                format!("{d} is out of range 32..=16384"),
            );
        }
        dpdk.descriptors = d;
    }
    Ok(dpdk)
}

fn parse_port_range(s: &str) -> Result<SnatConfig, String> {
    let (port_min, port_max) = parse_range(s, "20000-29999")?;
    if port_min < 1024 {
        return Err(format!(
            "range `{s}` starts below 1024; SNAT ports must be 1024..=65535"
        ));
    }
    Ok(SnatConfig { port_min, port_max })
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
