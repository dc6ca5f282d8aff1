//! `nodegate run`: load the configuration and manifests, build the tables, and forward.
//!
//! With pcap ports the run replays every input file in timestamp order (several pcap ports are
//! merged), with the data plane clock following the capture's timestamps, and exits when the
//! input is exhausted; its tables are the ones built at start (replays are deterministic).
//! A live run forwards with the tables built at start and keeps them in step with the
//! manifests directory and the API server from its control thread ([`crate::control`]).

use crate::node::{worker_configs, Node};
use crate::pcap::{PcapReader, PcapTxPort, PcapWriter, Record, ReplayClock};
use crate::stats::Stats;
use control::config::{Config, Driver};
use control::model::ClusterState;
use dataplane::drop::DropReason;
use dataplane::port::{Port, PortId, BURST};
use dataplane::time::Instant;
use dataplane::wire::MacAddr;
use std::path::PathBuf;

/// Buffers in the pool of a replay run.
const REPLAY_POOL: usize = 16 * 1024;
/// Frames whose timestamps lie this close together are processed as one burst.
const BURST_WINDOW_NS: u64 = 1_000_000;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: PathBuf,
    pub stats_json: Option<PathBuf>,
    /// Print every received and transmitted frame, and why a frame was dropped.
    pub trace: bool,
    /// Kubeconfig of the API server (`--kubeconfig`); overrides `kubernetes.kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
}

/// Why a run could not start or finish. Each message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] control::config::ConfigError),
    #[error("{0}")]
    Snapshot(#[from] control::snapshot::SnapshotError),
    #[error("{0}")]
    Start(#[from] crate::preflight::StartError),
    #[error("{0}")]
    Manifest(#[from] control::manifests::ManifestError),
    #[error("{0}")]
    Pcap(#[from] crate::pcap::PcapError),
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("writing a pcap file failed: {0}")]
    Write(String),
    #[error("DPDK: {0}")]
    Dpdk(String),
    /// A command-line option that does not fit this run.
    #[error("{0}")]
    Usage(String),
    /// A worker thread died (a panic: a bug). The run stops in order (ports closed, XDP
    /// programs detached) and nodegate exits with [`WORKER_FAILED_EXIT`], for its supervisor
    /// (systemd, the kubelet) to restart it: a dead worker would otherwise leave a silent
    /// hole, its share of the flows black-holed while the other workers forward.
    #[error(
        "worker {worker} stopped: {reason}; nodegate stopped so that its supervisor restarts it"
    )]
    WorkerFailed { worker: usize, reason: String },
}

/// The exit status of a run whose worker died (EX_SOFTWARE, an internal error).
pub const WORKER_FAILED_EXIT: u8 = 70;

impl RunError {
    /// The process exit status for this error: [`WORKER_FAILED_EXIT`] for a dead worker, 2
    /// for everything that stops a run before it starts.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::WorkerFailed { .. } => WORKER_FAILED_EXIT,
            _ => 2,
        }
    }
}

/// Loads the configuration and the manifests it names (no manifests: no Services).
pub fn load(path: &std::path::Path) -> Result<(Config, ClusterState), RunError> {
    let cfg = Config::load(path)?;
    let state = match &cfg.kubernetes.manifests {
        Some(dir) => control::manifests::load_dir(dir)?,
        None => ClusterState::default(),
    };
    Ok((cfg, state))
}

/// Runs to completion and returns the final counters (also written to `--stats-json`).
pub fn run(opts: &RunOptions) -> Result<Stats, RunError> {
    let (mut cfg, state) = load(&opts.config)?;
    default_macs_from_interfaces(&mut cfg);
    let live = cfg.ports.iter().all(|p| {
        matches!(
            p.driver,
            Driver::Tap | Driver::AfPacket | Driver::AfXdp | Driver::Dpdk
        )
    });
    if live && opts.trace {
        return Err(RunError::Usage(format!(
            "--trace describes the frames of a pcap replay; {} has live ports, whose frames \
             it does not trace (per-frame logging would slow every worker): watch them with \
             tcpdump on the peer interface, and the drop reasons with --stats-json or the \
             metrics",
            cfg.file.display()
        )));
    }
    // Where the API server comes from (live runs only). A kubeconfig that does not read stops
    // the run before any port or device is touched.
    let api = if live {
        let api = cfg.kubernetes.api_source(
            &cfg.file,
            opts.kubeconfig.as_deref(),
            std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        )?;
        control::watch::api::check(&api).map_err(|e| api_error(&cfg, opts, &api, e.0))?;
        Some(api)
    } else {
        None
    };
    // What a user can fix about the ports, before any is touched.
    if live {
        crate::preflight::check(&cfg)?;
    }
    // DPDK devices start before the tables are built: a dpdk port without `mac` has its
    // device's address.
    let dpdk = if live {
        crate::dpdk::DpdkPorts::open(&mut cfg)?
    } else {
        None
    };
    let build_started = std::time::Instant::now();
    let (tables, warnings) = control::snapshot::build(&cfg, &state)?;
    let build_time = build_started.elapsed();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        services = state.services.len(),
        endpoint_slices = state.endpoint_slices.len(),
        frontends = tables.services.len() + tables.services6.len(),
        frontends6 = tables.services6.len(),
        health_checks = tables.health.len(),
        routes = tables.routes.len(),
        "tables built"
    );

    if let Some(api) = api {
        return run_live(&cfg, tables, state, api, build_time, opts, dpdk);
    }
    if opts.kubeconfig.is_some() || cfg.kubernetes.kubeconfig.is_some() {
        tracing::warn!("a replay uses the manifests only: the kubeconfig is not used");
    }

    let clock = ReplayClock::default();
    let write_error = crate::pcap::WriteError::default();
    let mut ports: Vec<Box<dyn Port>> = Vec::new();
    let mut inputs: Vec<(PortId, PcapReader)> = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let field = |reason: String| crate::preflight::StartError {
            file: cfg.file.clone(),
            field: format!("ports[{i}].driver"),
            reason,
        };
        match p.driver {
            Driver::Pcap => {
                let writer = match &p.tx {
                    Some(path) => Some(PcapWriter::create(path).map_err(|e| RunError::Io {
                        path: path.clone(),
                        reason: format!("cannot create: {e}"),
                    })?),
                    None => None,
                };
                if let Some(rx) = &p.rx {
                    inputs.push((i as PortId, PcapReader::open(rx)?));
                }
                ports.push(Box::new(PcapTxPort::new(
                    &p.name,
                    writer,
                    clock.clone(),
                    opts.trace,
                    write_error.clone(),
                )));
                tracing::info!(port = %p.name, driver = "pcap", "port up");
            }
            Driver::Memory => {
                return Err(field(
                    "the memory driver has no outside end; it is for tests and benchmarks".into(),
                )
                .into())
            }
            Driver::Tap | Driver::AfPacket | Driver::AfXdp | Driver::Dpdk => {
                return Err(field(
                    "a run uses pcap ports only or live (af_xdp, af_packet, tap, dpdk) ports only, not both"
                        .into(),
                )
                .into())
            }
        }
    }

    let mut node = Node::new(worker_configs(&cfg), tables, ports, REPLAY_POOL);
    tracing::info!(workers = cfg.workers, "ready");
    let now = replay(&mut node, inputs, &clock, opts.trace, &write_error)?;
    node.run_until_idle(now);
    if let Some(e) = write_error.get() {
        return Err(RunError::Write(e.clone()));
    }

    let (workers, ports, publisher) = node.into_parts();
    let stats = Stats::gather(&workers, &publisher.current());
    drop(ports);
    write_stats(opts, &stats)?;
    Ok(stats)
}

/// Buffers in the pool of a live run.
pub(crate) const LIVE_POOL: usize = 64 * 1024;

/// A live run on TAP, AF_PACKET and DPDK ports: one poll-mode thread per worker, each with its
/// own queue of every port (multi-queue TAP when there are several workers, a fanout group of
/// AF_PACKET sockets, DPDK queues), until SIGINT or SIGTERM. The health and metrics servers
/// and the host stack run beside them (`control::serve`).
fn run_live(
    cfg: &Config,
    tables: dataplane::tables::Tables,
    manifests: ClusterState,
    api: control::config::ApiSource,
    build_time: std::time::Duration,
    opts: &RunOptions,
    mut dpdk: Option<crate::dpdk::DpdkPorts>,
) -> Result<Stats, RunError> {
    ffi::signal::install_stop_handler().map_err(|e| RunError::Io {
        path: cfg.file.clone(),
        reason: format!("cannot install the SIGINT/SIGTERM handler: {e}"),
    })?;
    let n = cfg.workers.max(1);
    // One region of frames for the whole run: the AF_XDP ports' UMEM.
    let pool = dataplane::mbuf::Pool::with_region(LIVE_POOL).map_err(|e| RunError::Io {
        path: cfg.file.clone(),
        reason: format!("cannot allocate the frame pool: {e}"),
    })?;
    // Every interface is ours alone before anything touches one.
    let _owned = take_interfaces(cfg)?;
    let mut queues: Vec<Vec<Box<dyn Port>>> = (0..n).map(|_| Vec::new()).collect();
    // Detached when dropped: after the workers stopped, or on the way out of a failed start.
    let mut programs = Vec::new();
    for port_index in 0..cfg.ports.len() {
        let ports = open_port(cfg, port_index, n, &pool, &mut programs, dpdk.as_mut())?;
        for (q, port) in queues.iter_mut().zip(ports) {
            q.push(port);
        }
    }
    open_host_interfaces(cfg, &tables, &mut queues)?;
    // The host stack's port comes last: every worker may hand it frames, worker 0 sends what
    // it answers.
    let stack = cfg
        .health
        .host_stack
        .then(|| dataplane::hoststack::StackQueues::new(dataplane::hoststack::STACK_DEPTH));
    if let Some(s) = &stack {
        for (w, q) in queues.iter_mut().enumerate() {
            q.push(Box::new(s.port(w == 0)));
        }
    }
    // Data ports, then host ports, then the stack port: every worker has a queue of each.
    let ports = queues.first().map_or(0, Vec::len);
    let mut configs = worker_configs(cfg);
    if stack.is_some() {
        for c in &mut configs {
            c.stack_port = Some((ports - 1) as PortId);
        }
    }
    let parts = crate::node::build_workers(configs, tables, ports, pool);
    let (servers, health) = start_servers(cfg, &parts, build_time, stack)?;
    let cpus = worker_cpus(cfg.cpus.as_deref(), n);
    // The control thread keeps the tables in step with the cluster from a CPU of its own.
    let control = crate::control::ControlThread::start(
        cfg,
        manifests,
        api.clone(),
        parts.publisher.clone(),
        Some(health),
        crate::control::control_cpu(&cpus),
    )
    .map_err(|reason| api_error(cfg, opts, &api, reason))?;
    let fault = crate::node::WorkerFault::from_env().map_err(|reason| RunError::Io {
        path: cfg.file.clone(),
        reason,
    })?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles = crate::node::spawn_workers(
        parts.workers,
        queues,
        Some(cpus),
        crate::node::IdlePolicy {
            spin: cfg.idle.spin,
            sleep: std::time::Duration::from_micros(cfg.idle.sleep_us),
        },
        stop.clone(),
        fault,
    );
    tracing::info!(workers = n, "ready");
    let mut links = crate::preflight::LinkWatch::new(cfg);
    let mut died = None;
    let mut ticks = 0u32;
    while !ffi::signal::stop_requested() {
        std::thread::sleep(std::time::Duration::from_millis(50));
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(20) {
            links.poll();
        }
        // A worker thread ends only when told to, or when it panicked.
        if let Some(w) = handles.iter().position(|h| h.is_finished()) {
            died = Some(w);
            break;
        }
    }
    match died {
        Some(w) => tracing::error!(
            worker = w,
            "a worker thread died; stopping every worker, closing the ports and detaching the XDP programs, then exiting with status {WORKER_FAILED_EXIT} so that the supervisor restarts nodegate"
        ),
        None => tracing::info!("stopping"),
    }
    // Nothing is published once the workers stop.
    control.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failed = None;
    let (workers, ports): (Vec<_>, Vec<_>) = handles
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| match h.join() {
            Ok(parts) => Some(parts),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                failed.get_or_insert(RunError::WorkerFailed {
                    worker: i,
                    reason: format!("panicked: {reason}"),
                });
                None
            }
        })
        .unzip();
    servers.stop();
    let mut stats = Stats::gather(&workers, &parts.publisher.current());
    for worker_ports in &ports {
        for (i, port) in worker_ports.iter().enumerate() {
            stats.add_driver_counters(i, &port.counters());
        }
    }
    // Close every queue, then detach the XDP programs.
    drop(ports);
    drop(programs);
    // The queues are closed: stop and close DPDK ports, clean the EAL up.
    if let Some(d) = dpdk {
        d.close();
    }
    write_stats(opts, &stats)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// Locks every interface the live ports use (their `interface` and `host_interface`), so that
/// a second instance is refused before it touches any (`crate::owner`); a run that did not
/// stop cleanly is taken over with a warning. An af_xdp interface that runs an XDP program
/// that is not nodegate's is refused too: nodegate does not replace what it did not attach.
fn take_interfaces(cfg: &Config) -> Result<Vec<crate::owner::InterfaceLock>, RunError> {
    let mut locks = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let named = [
            (p.interface.as_deref(), "interface"),
            (p.host_interface.as_deref(), "host_interface"),
        ];
        for (name, key) in named {
            let Some(name) = name else { continue };
            let field = format!("ports[{i}].{key}");
            let err = |reason: String| crate::preflight::StartError {
                file: cfg.file.clone(),
                field: field.clone(),
                reason,
            };
            let lock = match crate::owner::InterfaceLock::take(name, &cfg.file) {
                Ok(lock) => lock,
                Err(crate::owner::LockError::Busy { holder }) => {
                    return Err(err(format!(
                        "`{name}` is used by {holder}; stop that run first (one nodegate per interface)"
                    ))
                    .into())
                }
                Err(crate::owner::LockError::Io { path, reason }) => {
                    return Err(err(format!(
                        "cannot take `{name}`: the lock file {} cannot be used: {reason}",
                        path.display()
                    ))
                    .into())
                }
            };
            if let Some(before) = &lock.took_over_from {
                tracing::warn!(
                    interface = name,
                    "taking over `{name}` from {before}, which did not stop cleanly (killed?); its XDP program and TAP queues are replaced"
                );
            }
            if key == "interface" && p.driver == Driver::AfXdp {
                match ffi::af_xdp::attached_program(name) {
                    Ok(Some(prog)) if prog.name != ffi::af_xdp::PROGRAM_NAME => {
                        return Err(err(format!(
                            "`{name}` runs an XDP program that is not nodegate's (id {}, name `{}`); nodegate does not replace it: detach it first (`ip link set dev {name} xdp off`)",
                            prog.id, prog.name
                        ))
                        .into())
                    }
                    Ok(Some(prog)) if lock.took_over_from.is_none() => tracing::warn!(
                        interface = name,
                        program = prog.id,
                        "`{name}` has a nodegate XDP program nobody owns (left by a run that did not stop cleanly); replacing it"
                    ),
                    // Missing interfaces and the like are reported when the port opens.
                    _ => {}
                }
            }
            locks.push(lock);
        }
    }
    Ok(locks)
}

/// Why the API server client could not be made, as a configuration error naming where the
/// configuration came from: `--kubeconfig`, `kubernetes.kubeconfig`, or `kubernetes.api`.
fn api_error(
    cfg: &Config,
    opts: &RunOptions,
    api: &control::config::ApiSource,
    reason: String,
) -> RunError {
    let (file, field) = match (api, &opts.kubeconfig) {
        (control::config::ApiSource::Kubeconfig(_), Some(path)) => {
            (path.clone(), "(kubeconfig from --kubeconfig)".to_string())
        }
        (control::config::ApiSource::Kubeconfig(_), None) => {
            (cfg.file.clone(), "kubernetes.kubeconfig".to_string())
        }
        _ => (cfg.file.clone(), "kubernetes.api".to_string()),
    };
    control::config::ConfigError {
        file,
        field,
        reason,
    }
    .into()
}

/// The health and metrics servers and the host stack of a live run (`control::serve`), over the
/// workers' tables and counters; with the proxy health state the control thread reports to.
fn start_servers(
    cfg: &Config,
    parts: &crate::node::Parts,
    build_time: std::time::Duration,
    stack: Option<std::sync::Arc<dataplane::hoststack::StackQueues>>,
) -> Result<
    (
        control::serve::Servers,
        std::sync::Arc<control::health::ProxyHealth>,
    ),
    RunError,
> {
    use std::sync::Arc;
    let health = Arc::new(control::health::ProxyHealth::new(
        parts.publisher.clone(),
        std::time::Duration::from_secs(u64::from(cfg.health.timeout_secs)),
        std::time::SystemTime::now(),
    ));
    // The first sync: the tables built before the workers started.
    health
        .metrics()
        .sync_duration
        .observe(build_time.as_secs_f64());
    let collector = control::metrics::DataPlaneCollector::new(
        parts.publisher.clone(),
        parts.workers.iter().map(|w| w.mirror()).collect(),
        stack.clone(),
    );
    let metrics = Arc::new(control::metrics::Metrics::new(
        health.metrics(),
        Some(collector),
    ));
    let serve = control::serve::ServeConfig {
        health_bind: cfg.health.bind,
        metrics_bind: cfg.metrics.bind,
        node_port_address: cfg.health.node_port_address,
    };
    let servers = control::serve::Servers::start(
        &serve,
        health.clone(),
        metrics,
        stack.map(|s| (s, parts.pool.clone())),
    )
    .map_err(|e| RunError::Io {
        path: cfg.file.clone(),
        reason: format!("cannot start the health and metrics servers: {e}"),
    })?;
    tracing::info!(
        health = %or_none(cfg.health.bind),
        metrics = %or_none(cfg.metrics.bind),
        health_check_ports = %or_none(cfg.health.node_port_address),
        host_stack = cfg.health.host_stack,
        "servers started"
    );
    Ok((servers, health))
}

/// What to do about an error opening a port, by its kind; for a busy AF_XDP queue, with the
/// processes that hold an AF_XDP socket map (the likely owners).
fn open_hint(e: &std::io::Error, driver: Driver) -> String {
    use std::io::ErrorKind;
    let hint = match (e.kind(), driver) {
        (ErrorKind::ResourceBusy, Driver::AfXdp) => {
            let holders = crate::preflight::xsk_map_holders();
            let holders = if holders.is_empty() {
                String::new()
            } else {
                format!(
                    " (processes with an AF_XDP socket map open: pid {})",
                    holders.join(", pid ")
                )
            };
            return format!("; a queue of it is already bound by another AF_XDP socket (another program, or a nodegate with another NODEGATE_RUN_DIR): stop that one first (`ss --xdp -p` lists AF_XDP sockets where the kernel has XDP socket diagnostics){holders}");
        }
        (ErrorKind::ResourceBusy, _) => "; another program holds it: stop that one first",
        (ErrorKind::PermissionDenied, _) => {
            "; not permitted: run nodegate as root or grant it CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK"
        }
        (ErrorKind::Unsupported, Driver::AfXdp) => {
            "; the interface's driver does not do this XDP mode: use `mode: auto` or `mode: skb`"
        }
        (ErrorKind::OutOfMemory, Driver::AfXdp) => {
            "; the frame memory could not be locked: grant CAP_IPC_LOCK or raise the locked-memory limit (`ulimit -l`, LimitMEMLOCK=)"
        }
        _ => "",
    };
    hint.to_string()
}

/// Whether an open port's link has no carrier yet: then this logs so, and `port up` is logged
/// when the link comes up ([`crate::preflight::LinkWatch`]) instead of now.
fn waits_for_link(p: &control::config::PortConfig, ifname: &str) -> bool {
    let kernel = matches!(p.driver, Driver::AfXdp | Driver::AfPacket);
    if !kernel || crate::preflight::link(ifname) == crate::preflight::Link::Up {
        return false;
    }
    tracing::warn!(
        port = %p.name,
        driver = %p.driver,
        interface = ifname,
        "port open, waiting for the link of `{ifname}` (no carrier)"
    );
    true
}

/// A setting for a log line: its value, or `none`.
pub(crate) fn or_none<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// Opens live port `port_index` for `n` workers: one queue (a `Port`) per worker, logged as
/// `port up`. An af_xdp port's XDP program goes to `programs`.
fn open_port(
    cfg: &Config,
    port_index: usize,
    n: usize,
    pool: &std::sync::Arc<dataplane::mbuf::Pool>,
    programs: &mut Vec<ffi::af_xdp::XdpProgram>,
    dpdk: Option<&mut crate::dpdk::DpdkPorts>,
) -> Result<Vec<Box<dyn Port>>, RunError> {
    let p = &cfg.ports[port_index];
    let ifname = p.interface.as_deref().unwrap_or_default();
    let io = |what: String| {
        move |e: std::io::Error| -> RunError {
            crate::preflight::StartError {
                file: cfg.file.clone(),
                field: format!("ports[{port_index}].interface"),
                reason: format!("cannot open {what}: {e}{}", open_hint(&e, p.driver)),
            }
            .into()
        }
    };
    let ports: Vec<Box<dyn Port>> = match p.driver {
        Driver::AfXdp => {
            let mode = p.mode.unwrap_or_default();
            let opened = crate::af_xdp::open(ifname, p.queues, mode, n, pool)
                .map_err(io(format!("`{ifname}` (af_xdp, {mode} mode)")))?;
            if !waits_for_link(p, ifname) {
                tracing::info!(
                    port = %p.name,
                    driver = "af_xdp",
                    interface = ifname,
                    queues = p.queues,
                    xdp = if opened.program.is_native() { "native" } else { "skb" },
                    zerocopy = opened.zerocopy,
                    "port up"
                );
            }
            programs.push(opened.program);
            return Ok(opened.ports);
        }
        Driver::Dpdk => dpdk
            .expect("dpdk ports are started before a live run")
            .worker_ports(port_index),
        Driver::AfPacket => (0..n)
            .map(|_| {
                let sock = if n == 1 {
                    crate::af_packet::AfPacketPort::open(ifname)
                } else {
                    // One fanout group per port, unique to this process.
                    let group = (std::process::id() as u16).wrapping_add(port_index as u16);
                    crate::af_packet::AfPacketPort::open_fanout(ifname, group)
                };
                sock.map(|s| Box::new(s) as Box<dyn Port>)
                    .map_err(io(format!("`{ifname}` (af_packet)")))
            })
            .collect::<Result<_, _>>()?,
        _ => (0..n)
            .map(|_| {
                let tap = if n == 1 {
                    crate::tap::TapPort::open(ifname)
                } else {
                    crate::tap::TapPort::open_queue(ifname)
                };
                tap.map(|t| Box::new(t) as Box<dyn Port>)
                    .map_err(io(format!("the TAP `{ifname}` (/dev/net/tun)")))
            })
            .collect::<Result<_, _>>()?,
    };
    if !waits_for_link(p, ifname) {
        tracing::info!(port = %p.name, driver = %p.driver, interface = ifname, queues = ports.len(), "port up");
    }
    Ok(ports)
}

/// Live ports on a kernel interface (af_xdp, af_packet) without a configured MAC use the
/// interface's own. A TAP port keeps its generated one: the interface's MAC is the kernel's end
/// of that wire, not ours.
fn default_macs_from_interfaces(cfg: &mut Config) {
    for p in &mut cfg.ports {
        if p.mac.is_some() || !matches!(p.driver, Driver::AfXdp | Driver::AfPacket) {
            continue;
        }
        let Some(ifname) = &p.interface else { continue };
        let path = format!("/sys/class/net/{ifname}/address");
        p.mac = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<MacAddr>().ok())
            .map(|m| m.0);
    }
}

/// The node's exception path: for every port with a `host_interface`, a multi-queue TAP with one
/// queue per worker, appended to each worker's ports after the data ports (the numbering of
/// [`crate::node::host_ports`]). Its kernel side gets the port's MAC, so that frames punted to
/// it (addressed to that MAC) are accepted, and is brought up; addresses and routes on it are
/// the operator's. The TAP is not persistent: it disappears when the workers close its queues.
fn open_host_interfaces(
    cfg: &Config,
    tables: &dataplane::tables::Tables,
    queues: &mut [Vec<Box<dyn Port>>],
) -> Result<(), RunError> {
    for (i, p) in cfg.ports.iter().enumerate() {
        let Some(name) = p.host_interface.as_deref() else {
            continue;
        };
        let io = |what: &str, e: std::io::Error| RunError::Io {
            path: PathBuf::from(format!("/dev/net/tun ({name})")),
            reason: format!("{what} the host interface of port {}: {e}", p.name),
        };
        let mac = tables.ports[i].mac;
        for (w, q) in queues.iter_mut().enumerate() {
            let tap = crate::tap::TapPort::open_queue(name).map_err(|e| io("cannot create", e))?;
            if w == 0 {
                tap.tap()
                    .set_mac(mac.0)
                    .map_err(|e| io("cannot set the MAC address of", e))?;
                tap.tap().set_up().map_err(|e| io("cannot bring up", e))?;
            }
            q.push(Box::new(tap));
        }
        if p.driver == Driver::AfPacket {
            tracing::warn!(
                port = %p.name,
                "af_packet does not take frames away from the kernel: keep its own stack off {} \
                 (no address on it; arp_ignore=8, rp_filter=1, disable_ipv6=1), or it answers \
                 for the node's addresses there too",
                p.interface.as_deref().unwrap_or_default()
            );
        }
        tracing::info!(port = %p.name, host_interface = name, mac = %mac, queues = queues.len(), "host interface up");
    }
    Ok(())
}

/// The CPUs the workers are pinned to: `cpus` from the configuration, or else the last `n`
/// CPUs the process may run on (the first ones are left to the control thread and the rest of
/// the node), wrapping around when there are fewer CPUs than workers.
fn worker_cpus(configured: Option<&[usize]>, n: usize) -> Vec<usize> {
    if let Some(c) = configured {
        return c.to_vec();
    }
    let all = ffi::available_cpus();
    if all.is_empty() {
        return Vec::new();
    }
    let start = all.len().saturating_sub(n);
    (0..n).map(|i| all[(start + i) % all.len()]).collect()
}

fn write_stats(opts: &RunOptions, stats: &Stats) -> Result<(), RunError> {
    if let Some(path) = &opts.stats_json {
        let json = serde_json::to_string_pretty(stats).expect("stats serialise");
        std::fs::write(path, json + "\n").map_err(|e| RunError::Io {
            path: path.clone(),
            reason: format!("cannot write: {e}"),
        })?;
    }
    Ok(())
}

/// Feeds every input to the node in timestamp order; returns the last timestamp.
fn replay(
    node: &mut Node,
    inputs: Vec<(PortId, PcapReader)>,
    clock: &ReplayClock,
    trace: bool,
    write_error: &crate::pcap::WriteError,
) -> Result<Instant, RunError> {
    let mut readers: Vec<(PortId, PcapReader, Option<Record>)> = Vec::new();
    for (port, mut r) in inputs {
        let first = r.next_record()?;
        readers.push((port, r, first));
    }
    let mut now = Instant::ZERO;
    let mut seen = 0u64;
    let mut burst = Vec::with_capacity(BURST);
    while let Some(i) = (0..readers.len())
        .filter(|&i| readers[i].2.is_some())
        .min_by_key(|&i| readers[i].2.as_ref().map(|r| r.time))
    {
        let others_next = (0..readers.len())
            .filter(|&j| j != i)
            .filter_map(|j| readers[j].2.as_ref().map(|r| r.time))
            .min();
        let port = readers[i].0;
        let start = readers[i].2.as_ref().map(|r| r.time).unwrap_or_default();
        let limit = if trace { 1 } else { BURST };
        while burst.len() < limit {
            let Some(rec) = readers[i].2.take() else {
                break;
            };
            if others_next.is_some_and(|o| rec.time > o)
                || rec.time.as_nanos().saturating_sub(start.as_nanos()) > BURST_WINDOW_NS
            {
                readers[i].2 = Some(rec);
                break;
            }
            seen += 1;
            now = now.max(rec.time);
            if trace {
                println!(
                    "#{seen} t={}.{:06} rx {:<6} {}",
                    rec.time.as_nanos() / 1_000_000_000,
                    (rec.time.as_nanos() % 1_000_000_000) / 1000,
                    node_port_name(node, port),
                    crate::trace::describe(&rec.data)
                );
            }
            match node.frame(&rec.data) {
                Some(m) => burst.push(m),
                None => tracing::warn!(
                    frame = seen,
                    len = rec.data.len(),
                    "frame too large for a buffer; skipped"
                ),
            }
            readers[i].2 = readers[i].1.next_record()?;
        }
        clock.set(now);
        let before = trace.then(|| drop_totals(node));
        node.inject(port, &mut burst, now);
        if let Some(e) = write_error.get() {
            return Err(RunError::Write(e.clone()));
        }
        if let Some(before) = before {
            let after = drop_totals(node);
            for r in DropReason::ALL {
                let d = after[*r as usize] - before[*r as usize];
                if d > 0 {
                    println!(
                        "  drop   {} at {} ({})",
                        r.name(),
                        r.stage().name(),
                        r.description()
                    );
                }
            }
        }
    }
    tracing::info!(frames = seen, "input exhausted");
    Ok(now)
}

fn node_port_name(node: &Node, port: PortId) -> String {
    node.publisher()
        .current()
        .ports
        .get(usize::from(port))
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("port{port}"))
}

fn drop_totals(node: &Node) -> [u64; DropReason::COUNT] {
    let mut t = [0; DropReason::COUNT];
    for w in node.workers() {
        for (i, v) in w.stats().drops.iter().enumerate() {
            t[i] += v;
        }
    }
    t
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_workers_default_to_the_last_cpus() {
        assert_eq!(worker_cpus(Some(&[3, 1]), 2), vec![3, 1]);
        let all = ffi::available_cpus();
        let one = worker_cpus(None, 1);
        assert_eq!(one, vec![*all.last().unwrap()]);
        let many = worker_cpus(None, all.len() + 1);
        assert_eq!(many.len(), all.len() + 1);
        assert!(many.iter().all(|c| all.contains(c)));
    }
}
