//! Checks a live run makes before it touches any interface, so that what a user can fix is
//! reported as a configuration error (file, field, the fix) rather than as an `errno` from deep
//! inside a driver: an interface that is missing (with the ones that exist), administratively
//! down, or whose link has no carrier (a warning: forwarding starts when it comes up); the
//! capabilities each driver needs; SNAT ports that the node's kernel also hands out.
//!
//! Everything here reads `/sys` and `/proc` of the run's own network namespace and process.

use control::config::{Config, Driver};
use std::path::Path;

/// Linux capability numbers (`linux/capability.h`).
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_IPC_LOCK: u32 = 14;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_BPF: u32 = 39;

/// The state of a kernel interface, from `/sys/class/net/NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Missing,
    /// Administratively down (`ip link set dev NAME down`).
    Down,
    /// Up, but no carrier: cable, peer or switch port.
    NoCarrier,
    Up,
}

/// Where the interfaces of this network namespace are listed.
const SYS_NET: &str = "/sys/class/net";

pub fn link(name: &str) -> Link {
    let dir = Path::new(SYS_NET).join(name);
    let Ok(flags) = std::fs::read_to_string(dir.join("flags")) else {
        return Link::Missing;
    };
    // IFF_UP
    let up =
        u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).is_ok_and(|f| f & 1 != 0);
    if !up {
        return Link::Down;
    }
    // `carrier` reads as an error while the interface is down; 1 when the link is up.
    match std::fs::read_to_string(dir.join("carrier")) {
        Ok(c) if c.trim() == "1" => Link::Up,
        _ => Link::NoCarrier,
    }
}

/// The interfaces of this network namespace, sorted.
fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(SYS_NET)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Why a valid configuration cannot start on this machine: an interface missing, down or busy,
/// a capability missing, a port that would not open. Names the configuration's file and the
/// field (`ports[0].interface`, `snat.ports`) with the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct StartError {
    pub file: std::path::PathBuf,
    pub field: String,
    pub reason: String,
}

/// Every check, in the order a user would fix them. Warnings (no carrier) are logged.
pub fn check(cfg: &Config) -> Result<(), StartError> {
    check_capabilities(cfg)?;
    check_interfaces(cfg)?;
    check_snat_ports(cfg, Path::new("/proc/sys/net/ipv4/ip_local_port_range"))
}

fn error(cfg: &Config, field: String, reason: String) -> StartError {
    StartError {
        file: cfg.file.clone(),
        field,
        reason,
    }
}

/// The interface of every af_xdp and af_packet port exists and is up. (A TAP port's interface
/// is made by nodegate; a dpdk port names a device, not an interface.)
fn check_interfaces(cfg: &Config) -> Result<(), StartError> {
    for (i, p) in cfg.ports.iter().enumerate() {
        if !matches!(p.driver, Driver::AfXdp | Driver::AfPacket) {
            continue;
        }
        let Some(name) = p.interface.as_deref() else {
            continue;
        };
        let field = format!("ports[{i}].interface");
        match link(name) {
            Link::Missing => {
                let have = interfaces();
                return Err(error(
                    cfg,
                    field,
                    format!(
                        "no interface `{name}` in this network namespace; it has: {} \
                         (check the name, or run nodegate in the namespace that holds `{name}`)",
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ),
                ));
            }
            Link::Down => {
                return Err(error(
                    cfg,
                    field,
                    format!("`{name}` is down; bring it up first: `ip link set dev {name} up`"),
                ))
            }
            // Opened anyway: the port logs that it waits for the link, and `port up` when it
            // comes (`LinkWatch`).
            Link::NoCarrier => {}
            Link::Up => {}
        }
        if p.driver == Driver::AfXdp {
            let rx = rx_queues(name);
            if rx > 0 && usize::from(p.queues) > rx {
                return Err(error(
                    cfg,
                    format!("ports[{i}].queues"),
                    format!(
                        "{} queues asked for, but `{name}` has {rx} receive queue{}; ask for at most {rx}, or give it more (`ethtool -L {name} combined N`)",
                        p.queues,
                        if rx == 1 { "" } else { "s" }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The receive queues of an interface (`/sys/class/net/NAME/queues/rx-*`); 0 if unknown.
fn rx_queues(name: &str) -> usize {
    std::fs::read_dir(Path::new(SYS_NET).join(name).join("queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(0)
}

/// The effective capabilities of this process (`CapEff` of `/proc/self/status`).
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        // Unreadable: assume everything, and let the driver report what fails.
        .unwrap_or(u64::MAX)
}

/// Whether this process has capability `cap` in its effective set.
pub fn has_capability(cap: u32) -> bool {
    effective_capabilities() & (1u64 << cap) != 0
}

/// The soft `RLIMIT_MEMLOCK` of this process in bytes (`None`: unlimited).
fn locked_memory_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What a port's driver needs from the kernel: (capability, why), each missing one named.
fn check_capabilities(cfg: &Config) -> Result<(), StartError> {
    let have = effective_capabilities();
    let has = |cap: u32| have & (1u64 << cap) != 0;
    let umem = (crate::run::LIVE_POOL * dataplane::mbuf::MBUF_SIZE) as u64;
    for (i, p) in cfg.ports.iter().enumerate() {
        let mut missing: Vec<String> = Vec::new();
        // Each missing capability once, with the first reason it is needed for.
        let need = |missing: &mut Vec<String>, cap: u32, name: &str, why: &str| {
            if !has(cap) && !missing.iter().any(|m| m.starts_with(&format!("{name} ("))) {
                missing.push(format!("{name} ({why})"));
            }
        };
        match p.driver {
            Driver::AfXdp => {
                need(
                    &mut missing,
                    CAP_NET_ADMIN,
                    "CAP_NET_ADMIN",
                    "to attach the XDP program",
                );
                need(
                    &mut missing,
                    CAP_NET_RAW,
                    "CAP_NET_RAW",
                    "for the AF_XDP sockets",
                );
                if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
                    missing.push("CAP_BPF or CAP_SYS_ADMIN (to load the XDP program)".into());
                }
                if !has(CAP_IPC_LOCK) && locked_memory_limit().is_some_and(|l| l < umem) {
                    missing.push(format!(
                        "CAP_IPC_LOCK (to lock the {} MiB of frame memory; or raise the locked-memory limit, `ulimit -l` / LimitMEMLOCK=, to at least that)",
                        umem >> 20
                    ));
                }
            }
            Driver::AfPacket => need(
                &mut missing,
                CAP_NET_RAW,
                "CAP_NET_RAW",
                "for the AF_PACKET sockets",
            ),
            Driver::Tap => need(
                &mut missing,
                CAP_NET_ADMIN,
                "CAP_NET_ADMIN",
                "to create the TAP interface",
            ),
            _ => {}
        }
        if p.host_interface.is_some() {
            need(
                &mut missing,
                CAP_NET_ADMIN,
                "CAP_NET_ADMIN",
                "to create the host_interface TAP",
            );
        }
        if !missing.is_empty() {
            return Err(error(
                cfg,
                format!("ports[{i}].driver"),
                format!(
                    "{} needs capabilities this process lacks: {}; run nodegate as root, or grant them (systemd AmbientCapabilities=, a container's securityContext.capabilities.add)",
                    p.driver,
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The node's kernel sends from the node's addresses too (through a `host_interface`, or on
/// interfaces of its own): its ephemeral ports (`net.ipv4.ip_local_port_range`) must not be
/// SNAT ports, or a reply to one of its connections could be taken for a SNATed flow's.
fn check_snat_ports(cfg: &Config, range_file: &Path) -> Result<(), StartError> {
    let Some((lo, hi)) = std::fs::read_to_string(range_file).ok().and_then(|s| {
        let mut it = s.split_whitespace().map(|v| v.parse::<u16>());
        Some((it.next()?.ok()?, it.next()?.ok()?))
    }) else {
        return Ok(());
    };
    let (min, max) = (cfg.snat.port_min, cfg.snat.port_max);
    if min <= hi && lo <= max {
        return Err(error(
            cfg,
            "snat.ports".into(),
            format!(
                "{min}-{max} overlaps the kernel's ephemeral ports {lo}-{hi} \
                 (net.ipv4.ip_local_port_range): the node's kernel sends from the node's \
                 addresses too, and a reply to one of its connections could be taken for a \
                 SNATed flow's; choose SNAT ports outside it (the default 20000-29999 is \
                 outside Linux's default 32768-60999), or move the kernel's with `sysctl -w \
                 net.ipv4.ip_local_port_range=\"LOW HIGH\"`"
            ),
        ));
    }
    Ok(())
}

/// The processes of this network namespace, other than this one, that hold an XSKMAP open
/// (`map_type: 17` in an fd's `/proc/PID/fdinfo`): the likely owners of AF_XDP sockets, for a
/// queue that is busy. As `pid (command)`.
pub fn xsk_map_holders() -> Vec<String> {
    let me = std::process::id().to_string();
    let netns = std::fs::read_link("/proc/self/ns/net").ok();
    let mut holders = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return holders;
    };
    for p in procs.filter_map(|e| e.ok()) {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit())
            || pid == me
            || std::fs::read_link(p.path().join("ns/net")).ok() != netns
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        let holds = fds.filter_map(|e| e.ok()).any(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|info| {
                info.lines().any(|l| {
                    l.split_once(':')
                        .is_some_and(|(k, v)| k == "map_type" && v.trim() == "17")
                })
            })
        });
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            holders.push(format!("{pid} ({})", comm.trim()));
        }
    }
    holders.sort();
    holders
}

/// Follows the carrier of the live ports' interfaces, so that a link that comes up or goes
/// down during a run is logged (`port up` only once the link is really up).
pub struct LinkWatch {
    links: Vec<(String, String, Link)>,
}

impl LinkWatch {
    /// The af_xdp and af_packet ports of `cfg`, as they are now.
    pub fn new(cfg: &Config) -> LinkWatch {
        let links = cfg
            .ports
            .iter()
            .filter(|p| matches!(p.driver, Driver::AfXdp | Driver::AfPacket))
            .filter_map(|p| {
                let name = p.interface.clone()?;
                let now = link(&name);
                Some((p.name.clone(), name, now))
            })
            .collect();
        LinkWatch { links }
    }

    /// Logs the links that changed since the last look.
    pub fn poll(&mut self) {
        for (port, name, was) in &mut self.links {
            let now = link(name);
            if now == *was {
                continue;
            }
            match now {
                Link::Up => tracing::info!(port = %port, interface = %name, "link up: port up"),
                Link::NoCarrier => {
                    tracing::warn!(port = %port, interface = %name, "link down: no carrier")
                }
                Link::Down => tracing::warn!(
                    port = %port,
                    interface = %name,
                    "`{name}` was set down; nothing is forwarded on it until `ip link set dev {name} up`"
                ),
                Link::Missing => tracing::error!(
                    port = %port,
                    interface = %name,
                    "`{name}` is gone; restart nodegate once it is back"
                ),
            }
            *was = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "node: {{name: n, addresses: [\"10.0.0.1\"]}}\nports:\n  - {{name: eth0, driver: tap, interface: t0, host_interface: h0, addresses: [\"10.0.0.1/24\"]}}\n{extra}"
        );
        Config::parse(&text, Path::new("/etc/nodegate.yaml")).unwrap()
    }

    #[test]
    fn snat_ports_among_the_kernels_ephemeral_ports_are_refused() {
        let dir = std::env::temp_dir().join(format!("ng-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let range = dir.join("ip_local_port_range");
        std::fs::write(&range, "32768\t60999\n").unwrap();
        assert!(check_snat_ports(&cfg(""), &range).is_ok());
        let e = check_snat_ports(&cfg("snat: {ports: \"33000-34000\"}\n"), &range).unwrap_err();
        assert_eq!(e.field, "snat.ports");
        assert!(
            e.to_string().starts_with(
                "/etc/nodegate.yaml: snat.ports: 33000-34000 overlaps the kernel's ephemeral ports 32768-60999"
            ),
            "{e}"
        );
        // A kernel whose range was moved down onto the default SNAT ports.
        std::fs::write(&range, "10000 25000\n").unwrap();
        assert!(check_snat_ports(&cfg(""), &range).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_interface_is_missing() {
        assert_eq!(link("no-such-if-0"), Link::Missing);
        assert_eq!(link("lo"), Link::Up);
    }
}
