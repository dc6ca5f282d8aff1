//! `ports:` — the data plane's ports: driver, interface, host interface, queues, af_xdp mode,
//! MAC and addresses of each.
//!
//! ```yaml
//! ports:
//!   - name: eth0
//!     driver: af_xdp         # pcap | memory | af_xdp | af_packet | tap | dpdk
//!     interface: enp1s0
//!     mode: auto             # af_xdp: auto | skb | native | zerocopy
//!     queues: 1
//!     mac: "02:00:00:00:00:01"
//!     addresses: ["10.0.0.1/16", "fd00::1/64"]
//!     host_interface: nghost0
//! ```

use super::*;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
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

fn is_multicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

pub(super) fn check_unicast_mac(field: String, mac: &[u8; 6]) -> Result<(), Invalid> {
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

pub(super) fn validate(
    raw: Vec<RawPort>,
    base: &Path,
) -> Result<(Vec<PortConfig>, HashMap<String, usize>), Invalid> {
    if raw.is_empty() {
        return invalid("ports", "at least one port is required");
    }
    if raw.len() > MAX_PORTS {
        return invalid(
            "ports",
            format!(
                "{} ports configured; at most {MAX_PORTS} are supported",
                raw.len()
            ),
        );
    }
    let mut port_index: HashMap<String, usize> = HashMap::new();
    let mut ports = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
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
        if driver.needs_interface() && p.interface.as_deref().is_none_or(|s| s.trim().is_empty()) {
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
    Ok((ports, port_index))
}

/// That `name`, when given, is one of the configured ports.
pub(super) fn check_port_ref(
    port_index: &HashMap<String, usize>,
    field: String,
    name: &Option<String>,
) -> Result<(), Invalid> {
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
}
