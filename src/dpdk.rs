//! The `dpdk` port driver (cargo feature `dpdk`) over `ffi::dpdk`: one EAL per process, each
//! `dpdk` port a DPDK ethdev (a NIC bound to vfio-pci, or a vdev such as `net_af_packet` on a
//! host interface), with one RX and one TX queue per worker where the device has that many.
//! Frames are copied once between rte_mbufs and pool buffers.
//!
//! A device with fewer RX queues than workers (most vdevs have one) is read by the first
//! workers only; the others get their flows through the handoff queues, as with any NIC
//! whose hash does not match our flow ownership. On a device with fewer TX queues than workers,
//! the workers without one send through a [`crate::relay`] to a worker that has one: no queue
//! is shared and no lock is taken.
//!
//! Builds without the feature have `dpdk_unavailable.rs` in this module's place.

use crate::relay::{relay, RelayInbox, TxRelay};
use crate::run::RunError;
use control::config::{Config, DpdkBus, Driver};
use dataplane::mbuf::{Mbuf, PoolCache};
use dataplane::port::{Port, BURST};
use dataplane::wire::MacAddr;
use ffi::dpdk::{Eal, EthPort, PortSetup, RxQueue, TxQueue};

/// Per-lcore cache of each port's mbuf pool.
const MBUF_CACHE: u32 = 256;
/// Smallest pool a port gets when `dpdk.mbufs` is not set.
const MIN_MBUFS: u32 = 8191;

/// The DPDK side of a live run: the EAL and every started `dpdk` port.
pub struct DpdkPorts {
    ports: Vec<Started>,
    workers: usize,
    eal: Eal,
}

struct Started {
    index: usize,
    name: String,
    port: EthPort,
    rx_queues: u16,
    tx_queues: u16,
}

impl DpdkPorts {
    /// Initialises the EAL for the `dpdk` ports of `cfg` (their devices are its device
    /// arguments) and starts each with queues for `cfg.workers` workers. A port without
    /// `mac` gets its device's own. `None` when there is no `dpdk` port.
    pub fn open(cfg: &mut Config) -> Result<Option<DpdkPorts>, RunError> {
        if !cfg.ports.iter().any(|p| p.driver == Driver::Dpdk) {
            return Ok(None);
        }
        let args = eal_args(cfg);
        tracing::info!(args = %args.join(" "), "starting the DPDK EAL");
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let eal = Eal::init(&argv).map_err(|e| {
            RunError::Dpdk(format!(
                "cannot initialise the EAL ({e}); its messages above say which argument or \
                 device it refused (arguments: {})",
                args.join(" ")
            ))
        })?;
        let workers = cfg.workers.max(1);
        let mut ports = Vec::new();
        for (index, p) in cfg.ports.iter_mut().enumerate() {
            let Some(dev) = p.dpdk_device.clone() else {
                continue;
            };
            let field = |f: &str, reason: String| -> RunError {
                crate::preflight::StartError {
                    file: cfg.file.clone(),
                    field: format!("ports[{index}].{f}"),
                    reason,
                }
                .into()
            };
            let info = eal.device(&dev.name).map_err(|e| {
                let why = match dev.bus {
                    DpdkBus::Pci => "is it bound to vfio-pci? (dpdk-devbind.py --status)",
                    DpdkBus::Vdev => "the EAL's messages above say why",
                };
                field(
                    "interface",
                    format!(
                        "DPDK has no device `{}` after probing `{}` ({e}); {why}",
                        dev.name, dev.devargs
                    ),
                )
            })?;
            if info.max_rx_queues == 0 || info.max_tx_queues == 0 {
                return Err(field(
                    "interface",
                    format!("device `{}` has no RX or no TX queue", dev.name),
                ));
            }
            let promiscuous = match p.mac {
                None => {
                    if info.mac[0] & 1 == 1 || info.mac == [0; 6] {
                        return Err(field(
                            "mac",
                            format!(
                                "device `{}` has no usable MAC address ({}); set `mac`",
                                dev.name,
                                MacAddr(info.mac)
                            ),
                        ));
                    }
                    p.mac = Some(info.mac);
                    false
                }
                // Another address than the device's: receive everything, the pipeline's
                // eth-input filters on the configured one.
                Some(mac) => mac != info.mac,
            };
            let to_queues = |max: u16| u16::try_from(workers).unwrap_or(u16::MAX).min(max);
            let (rx_queues, tx_queues) =
                (to_queues(info.max_rx_queues), to_queues(info.max_tx_queues));
            let descriptors = cfg.dpdk.descriptors;
            let needed = mbufs_needed(rx_queues, tx_queues, descriptors, workers);
            let mbufs = match cfg.dpdk.mbufs {
                Some(m) if m < needed => {
                    return Err(crate::preflight::StartError {
                        file: cfg.file.clone(),
                        field: "dpdk.mbufs".to_string(),
                        reason: format!(
                            "{m} buffers cannot fill {rx_queues} RX and {tx_queues} TX \
                             queues of {descriptors} descriptors for port `{}` and cache \
                             {workers} workers' buffers; set at least {needed}",
                            p.name
                        ),
                    }
                    .into())
                }
                Some(m) => m,
                // 2^k - 1 buffers is the mempool's optimum.
                None => (needed.max(MIN_MBUFS) + 1).next_power_of_two() - 1,
            };
            let setup = PortSetup {
                rx_queues,
                tx_queues,
                descriptors,
                mbufs,
                mbuf_cache: MBUF_CACHE.min(mbufs / 2),
                promiscuous,
            };
            let port = EthPort::start(&eal, &info, &setup).map_err(|e| {
                RunError::Dpdk(format!(
                    "port `{}` (ports[{index}], device `{}`): {e}",
                    p.name, dev.devargs
                ))
            })?;
            let (rx_desc, tx_desc) = port.descriptors();
            tracing::info!(
                port = %p.name,
                device = %dev.devargs,
                pmd = %info.driver,
                mac = %MacAddr(p.mac.unwrap_or(info.mac)),
                promiscuous,
                rx_queues,
                tx_queues,
                rx_desc,
                tx_desc,
                mbufs,
                "dpdk port started"
            );
            ports.push(Started {
                index,
                name: p.name.clone(),
                port,
                rx_queues,
                tx_queues,
            });
        }
        Ok(Some(DpdkPorts {
            ports,
            workers,
            eal,
        }))
    }

    /// The queues of port `index` (a configuration index), one per worker: worker `w`
    /// reads RX queue `w` if there is one and sends on TX queue `w`, or through a relay to the
    /// worker owning TX queue `w % queues`.
    pub fn worker_ports(&mut self, index: usize) -> Vec<Box<dyn Port>> {
        let s = self
            .ports
            .iter()
            .find(|s| s.index == index)
            .expect("worker_ports of a started dpdk port");
        let n = self.workers;
        let txq = usize::from(s.tx_queues).clamp(1, n);
        // Workers beyond the TX queues relay to worker `w % txq`.
        let mut inboxes: Vec<Vec<RelayInbox>> = (0..txq).map(|_| Vec::new()).collect();
        let mut senders: Vec<Option<TxRelay>> = (0..n).map(|_| None).collect();
        for w in txq..n {
            let (sender, inbox) = relay();
            inboxes[w % txq].push(inbox);
            senders[w] = Some(sender);
        }
        let mut inboxes = inboxes.into_iter();
        (0..n)
            .zip(senders)
            .map(|(w, sender)| {
                let q = u16::try_from(w).expect("at most 64 workers");
                let tx = match sender {
                    Some(sender) => Tx::Relay(sender),
                    None => Tx::Own {
                        queue: s.port.tx_queue(q).expect("fresh queue"),
                        inboxes: inboxes.next().unwrap_or_default(),
                        relayed: Vec::with_capacity(BURST),
                    },
                };
                Box::new(DpdkPort {
                    rx: (q < s.rx_queues).then(|| s.port.rx_queue(q).expect("fresh queue")),
                    tx,
                    spare: Vec::with_capacity(BURST),
                    lens: [0; BURST],
                }) as Box<dyn Port>
            })
            .collect()
    }

    /// Logs each device's counters, then stops and closes the ports and cleans the EAL up
    /// (once the workers, which hold the queues, are gone).
    pub fn close(self) {
        for s in &self.ports {
            match s.port.stats() {
                Ok(st) => tracing::info!(
                    port = %s.name,
                    rx = st.ipackets,
                    tx = st.opackets,
                    missed = st.imissed,
                    rx_errors = st.ierrors,
                    tx_errors = st.oerrors,
                    rx_no_mbuf = st.rx_nombuf,
                    "dpdk port stopped"
                ),
                Err(e) => tracing::warn!(port = %s.name, "dpdk port counters: {e}"),
            }
        }
        let DpdkPorts { ports, eal, .. } = self;
        drop(ports);
        if eal.cleanup() {
            tracing::info!("dpdk EAL cleaned up");
        } else {
            tracing::warn!(
                "the DPDK EAL is still in use; it is cleaned up when the last user goes"
            );
        }
    }
}

/// Buffers a port's pool needs: full RX and TX rings, plus what every worker's lcore cache
/// and bursts in flight can hold.
fn mbufs_needed(rxq: u16, txq: u16, descriptors: u16, workers: usize) -> u32 {
    let rings = (u32::from(rxq) + u32::from(txq)) * u32::from(descriptors);
    let per_worker = MBUF_CACHE * 3 / 2 + 2 * BURST as u32;
    rings + per_worker * workers as u32
}

/// The EAL's arguments: `dpdk.eal_args`, the main lcore on the first CPU we may use unless
/// they name lcores, and the devices of the `dpdk` ports (`-a` for PCI, `--vdev` for
/// virtual devices, `--no-pci` when there is no PCI device, so no other NIC is touched).
pub(crate) fn eal_args(cfg: &Config) -> Vec<String> {
    let user = &cfg.dpdk.eal_args;
    let mut args = Vec::new();
    let names_lcores = user.iter().any(|a| {
        a.starts_with("--lcores")
            || (a.starts_with("-l") && !a.starts_with("--"))
            || (a.starts_with("-c") && !a.starts_with("--"))
    });
    if !names_lcores {
        let cpu = ffi::available_cpus().first().copied().unwrap_or(0);
        args.extend(["-l".to_string(), cpu.to_string()]);
    }
    args.extend(user.iter().cloned());
    let mut pci = false;
    for dev in cfg.ports.iter().filter_map(|p| p.dpdk_device.as_ref()) {
        match dev.bus {
            DpdkBus::Pci => {
                pci = true;
                args.extend(["-a".to_string(), dev.devargs.clone()]);
            }
            DpdkBus::Vdev => args.push(format!("--vdev={}", dev.devargs)),
        }
    }
    if !pci {
        args.push("--no-pci".to_string());
    }
    args
}

/// A TX queue of this worker's own (sending, too, what the relaying workers hand it), or a
/// relay to a worker that has one.
enum Tx {
    Own {
        queue: TxQueue,
        inboxes: Vec<RelayInbox>,
        /// Relayed frames on their way to the queue (capacity BURST, reused).
        relayed: Vec<Mbuf>,
    },
    Relay(TxRelay),
}

/// Sends as much of `burst` as the queue takes, one `rte_eth_tx_burst` per BURST frames; the
/// rest stay in `burst`.
fn send_all(tx: &mut TxQueue, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
    let mut sent = 0;
    while sent < burst.len() {
        let chunk = (burst.len() - sent).min(BURST);
        let s = tx.send(&burst[sent..sent + chunk]);
        sent += s;
        if s < chunk {
            break;
        }
    }
    for m in burst.drain(..sent) {
        pool.free(m);
    }
    sent
}

/// One worker's view of a DPDK port: its RX queue (if the device has one for it) and a
/// TX queue.
pub struct DpdkPort {
    rx: Option<RxQueue>,
    tx: Tx,
    /// Pool buffers waiting for the next received frames.
    spare: Vec<RxBuf>,
    lens: [u16; BURST],
}

/// A pool buffer as a whole (not just its current frame), for the driver to fill.
struct RxBuf(Mbuf);

impl AsMut<[u8]> for RxBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0.buffer_mut()[..]
    }
}

impl Port for DpdkPort {
    fn rx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>, max: usize) -> usize {
        if let Tx::Own {
            queue,
            inboxes,
            relayed,
        } = &mut self.tx
        {
            for inbox in inboxes.iter() {
                inbox.take(BURST, relayed);
                if !relayed.is_empty() {
                    // What the queue cannot take now is dropped, as a full NIC ring would.
                    send_all(queue, pool, relayed);
                    for m in relayed.drain(..) {
                        pool.free(m);
                    }
                }
            }
        }
        let Some(rx) = &mut self.rx else {
            return 0;
        };
        let want = max.min(BURST);
        while self.spare.len() < want {
            match pool.alloc() {
                Some(m) => self.spare.push(RxBuf(m)),
                None => break,
            }
        }
        let k = want.min(self.spare.len());
        let n = rx.recv(&mut self.spare[..k], &mut self.lens);
        for (b, &len) in self.spare.drain(..n).zip(&self.lens) {
            let mut m = b.0;
            m.set_len(usize::from(len));
            burst.push(m);
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        match &mut self.tx {
            Tx::Own { queue, .. } => send_all(queue, pool, burst),
            Tx::Relay(relay) => relay.tx_burst(pool, burst),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::path::Path;

    fn config(ports: &str, extra: &str) -> Config {
        Config::parse(
            &format!("node: {{name: n}}\nworkers: 2\nports:\n{ports}{extra}"),
            Path::new("c.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn test_eal_args_name_the_main_lcore_and_the_devices() {
        let vdev = "  - {name: a, driver: dpdk, interface: \"net_tap0,iface=t0\"}\n";
        let args = eal_args(&config(vdev, ""));
        assert_eq!(args[0], "-l");
        assert!(ffi::available_cpus().contains(&args[1].parse().unwrap()));
        assert!(args.iter().any(|a| a == "--no-huge"), "defaults: {args:?}");
        assert_eq!(
            args[args.len() - 2..],
            ["--vdev=net_tap0,iface=t0", "--no-pci"]
        );

        let pci = "  - {name: b, driver: dpdk, interface: \"3:00.0,x=1\"}\n";
        let args = eal_args(&config(
            &format!("{vdev}{pci}"),
            "dpdk: {eal_args: [\"--in-memory\", \"--lcores=0@(0-1)\"]}\n",
        ));
        assert_eq!(
            args,
            [
                "--in-memory",
                "--lcores=0@(0-1)",
                "--vdev=net_tap0,iface=t0",
                "-a",
                "0000:03:00.0,x=1"
            ]
        );
    }

    #[test]
    fn test_pool_holds_full_rings_and_worker_caches() {
        assert_eq!(mbufs_needed(1, 1, 1024, 1), 2048 + 384 + 64);
        assert_eq!(mbufs_needed(2, 2, 1024, 2), 4096 + 2 * 448);
    }
}
