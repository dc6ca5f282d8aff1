//! A whole data plane instance: workers, their handoff fabric, the buffer pool, the ports and
//! the table publisher. Two ways to drive it:
//!
//! - lockstep ([`Node::run_until_idle`], [`Node::inject`]): one thread steps every worker in
//!   turn until no frame is left in flight. Deterministic, so pcap replays and golden tests give
//!   the same output every time, and still exercises handoff between workers.
//! - threaded ([`spawn_workers`]): one poll-mode thread per worker, each optionally pinned to a
//!   CPU, each with its own port queues, running until told to stop.

use control::config::Config;
use dataplane::conntrack::Timeouts;
use dataplane::mbuf::{Mbuf, Pool};
use dataplane::pipeline::{Fabric, Worker, WorkerConfig};
use dataplane::port::{MemoryPeer, MemoryPort, Port, PortId};
use dataplane::tables::{TablePublisher, Tables};
use dataplane::time::{Instant, MonotonicClock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Depth of each worker's inbound handoff queue.
const HANDOFF_DEPTH: usize = 4096;

/// The node's exception path: (data port, host port) for every port with a `host_interface`.
/// Host ports are numbered after the data ports, in configuration order; a live run opens them
/// in that order after the data ports.
pub fn host_ports(cfg: &Config) -> Vec<(PortId, PortId)> {
    let data = cfg.ports.len();
    cfg.ports
        .iter()
        .enumerate()
        .filter(|(_, p)| p.host_interface.is_some())
        .enumerate()
        .map(|(k, (i, _))| (i as PortId, (data + k) as PortId))
        .collect()
}

/// Per-worker settings derived from a configuration.
pub fn worker_configs(cfg: &Config) -> Vec<WorkerConfig> {
    let n = cfg.workers.max(1);
    let ct = &cfg.conntrack;
    let s = |secs: u32| Duration::from_secs(u64::from(secs));
    let timeouts = Timeouts {
        tcp_syn_sent: s(ct.tcp.syn_sent),
        tcp_syn_recv: s(ct.tcp.syn_recv),
        tcp_established: s(ct.tcp.established),
        tcp_fin_wait: s(ct.tcp.fin_wait),
        tcp_close_wait: s(ct.tcp.close_wait),
        tcp_last_ack: s(ct.tcp.last_ack),
        tcp_time_wait: s(ct.tcp.time_wait),
        tcp_close: s(ct.tcp.close),
        tcp_unacknowledged: s(ct.tcp.unacknowledged),
        udp: s(ct.udp_secs),
        udp_stream: s(ct.udp_stream_secs),
        icmp: s(ct.icmp_secs),
        sctp: s(ct.sctp_secs),
    };
    (0..n)
        .map(|id| {
            let mut w = WorkerConfig::new(id, n);
            w.max_flows = (ct.max_flows / n).max(16);
            w.max_flows6 = (ct.max_flows6 / n).max(16);
            w.timeouts = timeouts;
            w.snat_ports = (cfg.snat.port_min, cfg.snat.port_max);
            w.affinity_max = (ct.affinity_max / n).max(1);
            w.host_ports = host_ports(cfg);
            w
        })
        .collect()
}

/// Workers sharing one buffer pool, one handoff fabric and one table publisher.
pub struct Parts {
    pub workers: Vec<Worker>,
    pub publisher: TablePublisher,
    pub pool: Arc<Pool>,
    pub fabric: Arc<Fabric>,
}

/// Builds the workers of an instance with `ports` ports, allocating every table now.
pub fn build_workers(
    configs: Vec<WorkerConfig>,
    tables: Tables,
    ports: usize,
    pool: Arc<Pool>,
) -> Parts {
    let publisher = TablePublisher::new(tables);
    let fabric = Fabric::new(configs.len(), HANDOFF_DEPTH);
    let workers = configs
        .into_iter()
        .map(|c| Worker::new(c, publisher.reader(), pool.clone(), fabric.clone(), ports))
        .collect();
    Parts {
        workers,
        publisher,
        pool,
        fabric,
    }
}

/// A data plane instance driven in lockstep from one thread.
pub struct Node {
    publisher: TablePublisher,
    workers: Vec<Worker>,
    fabric: Arc<Fabric>,
    pool: Arc<Pool>,
    ports: Vec<Box<dyn Port>>,
    next_rx: usize,
}

impl Node {
    /// Builds the workers (allocating every table now) over `ports`.
    pub fn new(
        configs: Vec<WorkerConfig>,
        tables: Tables,
        ports: Vec<Box<dyn Port>>,
        pool_size: usize,
    ) -> Node {
        let parts = build_workers(configs, tables, ports.len(), Pool::new(pool_size));
        let Parts {
            workers,
            publisher,
            pool,
            fabric,
        } = parts;
        Node {
            publisher,
            workers,
            fabric,
            pool,
            ports,
            next_rx: 0,
        }
    }

    /// A node whose ports are in-memory rings; returns the far ends: one per data port, then
    /// one per host port of the first worker's `host_ports`.
    pub fn with_memory_ports(
        configs: Vec<WorkerConfig>,
        tables: Tables,
        pool_size: usize,
    ) -> (Node, Vec<MemoryPeer>) {
        let mut ports: Vec<Box<dyn Port>> = Vec::new();
        let mut peers = Vec::new();
        let hosts = configs.first().map_or(0, |c| c.host_ports.len());
        for _ in 0..tables.ports.len() + hosts {
            let (p, peer) = MemoryPort::pair(4096);
            ports.push(Box::new(p));
            peers.push(peer);
        }
        (Node::new(configs, tables, ports, pool_size), peers)
    }

    pub fn publisher(&self) -> &TablePublisher {
        &self.publisher
    }

    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    pub fn ports_mut(&mut self) -> &mut [Box<dyn Port>] {
        &mut self.ports
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// A buffer holding `frame`, from the pool.
    pub fn frame(&self, frame: &[u8]) -> Option<Mbuf> {
        let mut m = self.pool.get()?;
        m.copy_from(frame).then_some(m)
    }

    /// Gives received frames to the next worker in turn (as a NIC queue would), then lets every
    /// worker run until nothing is in flight.
    pub fn inject(&mut self, port: PortId, frames: &mut Vec<Mbuf>, now: Instant) {
        let w = self.next_rx;
        self.next_rx = (self.next_rx + 1) % self.workers.len();
        self.workers[w].process_rx(port, frames, now);
        self.run_until_idle(now);
    }

    /// Polls every worker (ports, handoffs, timers, transmit) until a full round does no work.
    pub fn run_until_idle(&mut self, now: Instant) {
        loop {
            let mut work = 0;
            for w in &mut self.workers {
                work += w.poll(&mut self.ports, now);
            }
            if work == 0 && self.fabric.pending() == 0 {
                break;
            }
        }
    }

    /// Workers, for statistics at exit.
    pub fn into_parts(self) -> (Vec<Worker>, Vec<Box<dyn Port>>, TablePublisher) {
        (self.workers, self.ports, self.publisher)
    }
}

/// How an idle worker waits: spin for `spin` empty polls, then sleep `sleep` per empty poll.
#[derive(Debug, Clone, Copy)]
pub struct IdlePolicy {
    pub spin: u32,
    pub sleep: Duration,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            spin: 1024,
            sleep: Duration::from_micros(50),
        }
    }
}

/// What a worker thread hands back when it stops: the worker and its port queues.
pub type Stopped = (Worker, Vec<Box<dyn Port>>);

/// A fault to inject into one worker of a live run, for the tests of what nodegate does when a
/// worker fails (`NODEGATE_TEST_WORKER_FAULT=<worker>:<panic|stall>:<after ms>`; never set in
/// production). `panic` panics the worker's thread; `stall` stops it polling for ever, as a
/// worker stuck in a loop would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerFault {
    pub worker: usize,
    pub stall: bool,
    pub after: Duration,
}

impl WorkerFault {
    /// The environment variable that injects a fault.
    pub const VAR: &'static str = "NODEGATE_TEST_WORKER_FAULT";

    /// The fault the environment asks for; `Err` names what does not parse.
    pub fn from_env() -> Result<Option<WorkerFault>, String> {
        match std::env::var(Self::VAR) {
            Ok(v) => Self::parse(&v).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn parse(v: &str) -> Result<WorkerFault, String> {
        let bad = || {
            format!(
                "{}={v}: expected <worker>:<panic|stall>:<after ms>",
                Self::VAR
            )
        };
        let mut parts = v.split(':');
        let worker = parts.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let stall = match parts.next() {
            Some("panic") => false,
            Some("stall") => true,
            _ => return Err(bad()),
        };
        let after = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(WorkerFault {
            worker,
            stall,
            after: Duration::from_millis(after),
        })
    }
}

/// Runs each worker on its own thread with its own port queues until `stop` is set; returns the
/// workers (with their counters) and their ports when they have stopped.
pub fn spawn_workers(
    workers: Vec<Worker>,
    ports: Vec<Vec<Box<dyn Port>>>,
    cpus: Option<Vec<usize>>,
    idle: IdlePolicy,
    stop: Arc<AtomicBool>,
    fault: Option<WorkerFault>,
) -> Vec<JoinHandle<Stopped>> {
    let clock = MonotonicClock::new();
    workers
        .into_iter()
        .zip(ports)
        .enumerate()
        .map(|(i, (mut w, mut ports))| {
            let stop = stop.clone();
            let cpu = cpus.as_ref().and_then(|c| c.get(i).copied());
            std::thread::Builder::new()
                .name(format!("nodegate-w{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        if !ffi::pin_current_thread(cpu) {
                            tracing::warn!(worker = i, cpu, "could not pin worker");
                        }
                    }
                    let mut idle_polls = 0u32;
                    let fault = fault
                        .filter(|f| f.worker == i)
                        .map(|f| (f, std::time::Instant::now() + f.after));
                    while !stop.load(Ordering::Relaxed) {
                        if let Some((f, at)) = fault {
                            if std::time::Instant::now() >= at {
                                if !f.stall {
                                    panic!("{} injected a panic", WorkerFault::VAR);
                                }
                                while !stop.load(Ordering::Relaxed) {
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                                break;
                            }
                        }
                        if w.poll(&mut ports, clock.now()) > 0 {
                            idle_polls = 0;
                        } else {
                            idle_polls = idle_polls.saturating_add(1);
                            if idle_polls > idle.spin {
                                std::thread::sleep(idle.sleep);
                            } else {
                                std::hint::spin_loop();
                            }
                        }
                    }
                    // Drain what is in flight, then hand the worker and its ports back.
                    for _ in 0..16 {
                        w.poll(&mut ports, clock.now());
                    }
                    (w, ports)
                })
                .expect("spawning a worker thread")
        })
        .collect()
}
