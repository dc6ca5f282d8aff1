//! `dpdk:` — the EAL arguments and buffer counts of the optional DPDK driver.
//!
//! ```yaml
//! dpdk: { eal_args: ["--no-huge", "-m", "256"], mbufs: 16383, descriptors: 1024 }
//! ```

use super::*;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDpdk {
    eal_args: Option<Vec<String>>,
    mbufs: Option<u32>,
    descriptors: Option<u16>,
}

pub(super) fn validate_dpdk(raw: RawDpdk) -> Result<DpdkConfig, Invalid> {
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
