//! The servers of a live run, on the control side (never on a worker's core):
//!
//! - the proxy health server (`/healthz`, `/livez`; kube-proxy's port 10256) and the metrics
//!   server (`/metrics`, `/proxyMode`, `/healthz`; port 10249), on the node's kernel;
//! - one listener per Service `healthCheckNodePort` on the node's kernel (kube-proxy listens on
//!   every address, or on its node-port addresses), following the tables;
//! - the host stack (`crate::hoststack`), which answers the same health checks on the
//!   data-plane ports, on a thread of its own.
//!
//! The kernel-side servers run on one current-thread tokio runtime in a thread of their own.
//! A server that cannot listen (the port is taken) logs why and tries again every
//! [`RETRY`], as kube-proxy does, instead of stopping the data plane. Every connection gets one
//! answer and is closed; one that sends no complete request within [`READ_TIMEOUT`] is dropped.
//!
//! The sync side may run these tasks on its own runtime instead: [`serve_http`],
//! [`serve_health_check_ports`] and [`tick`] are plain futures.

use crate::health::{answer_health_check, ProxyHealth};
use crate::hoststack::{Answer, HostStack};
use crate::http::{parse_request, Parsed, Request, Response};
use crate::metrics::Metrics;
use dataplane::hoststack::StackQueues;
use dataplane::mbuf::Pool;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a server that could not listen waits before trying again.
pub const RETRY: Duration = Duration::from_secs(5);
/// How long a connection may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the listeners of the health-check ports follow the tables.
const PORTS_PERIOD: Duration = Duration::from_millis(200);
/// How often the proxy health is evaluated without a request (for the metrics).
const TICK_PERIOD: Duration = Duration::from_millis(100);

/// What a live run serves.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {
    /// `/healthz` and `/livez` (kube-proxy: `0.0.0.0:10256`).
    pub health_bind: Option<SocketAddr>,
    /// `/metrics`, `/proxyMode` (kube-proxy: `127.0.0.1:10249`).
    pub metrics_bind: Option<SocketAddr>,
    /// The kernel listens on every `healthCheckNodePort` at this address (kube-proxy:
    /// `0.0.0.0`).
    pub node_port_address: Option<IpAddr>,
}

/// Answers one request (runs on the runtime's thread).
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Reads one request head from `stream` and writes the answer `respond` gives, then closes.
async fn serve_connection(
    mut stream: TcpStream,
    respond: impl FnOnce(Option<&Request>, Response) -> Option<Vec<u8>>,
) {
    let mut buf = Vec::with_capacity(1024);
    let parsed = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 2048];
        loop {
            match parse_request(&buf) {
                Parsed::Incomplete => {}
                done => return done,
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Parsed::Incomplete,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let bytes = match parsed {
        Ok(Parsed::Request(req)) => respond(Some(&req), Response::not_found()),
        Ok(Parsed::Bad) => respond(None, Response::bad_request()),
        Ok(Parsed::TooLarge) => respond(None, Response::too_large()),
        Ok(Parsed::Incomplete) | Err(_) => None,
    };
    if let Some(bytes) = bytes {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    }
}

/// Binds `addr`, retrying every [`RETRY`] until it can (logging each failure).
async fn bind_retrying(addr: SocketAddr, what: &str) -> TcpListener {
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(address = %addr, "{what} listening");
                return l;
            }
            Err(e) => {
                tracing::warn!(address = %addr, "{what} cannot listen: {e}; retrying in {} s", RETRY.as_secs());
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The next connection of `listener`; an accept error (out of file descriptors, say) is
/// waited out briefly instead of spinning.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// An HTTP server on `addr` answering every request with `handler` (named `what` in logs).
pub async fn serve_http(addr: SocketAddr, what: &'static str, handler: Handler) {
    let listener = bind_retrying(addr, what).await;
    loop {
        let stream = accept(&listener).await;
        let handler = handler.clone();
        tokio::spawn(serve_connection(stream, move |req, refusal| {
            let now = SystemTime::now();
            Some(match req {
                Some(req) => handler(req).encode(now, req.is_head()),
                None => refusal.encode(now, false),
            })
        }));
    }
}

/// Serves one health-check port on the node's kernel until aborted.
async fn serve_health_check_port(listener: TcpListener, port: u16, health: Arc<ProxyHealth>) {
    loop {
        let stream = accept(&listener).await;
        let health = health.clone();
        tokio::spawn(serve_connection(stream, move |req, refusal| {
            let now = SystemTime::now();
            match req {
                Some(req) => answer_health_check(&health, port, req, now),
                None => Some(refusal.encode(now, false)),
            }
        }));
    }
}

/// Keeps a kernel listener on `address` for every `healthCheckNodePort` of the published
/// tables: opened when a Service gets one, closed when it goes. A port that cannot be bound is
/// logged and retried every [`RETRY`].
pub async fn serve_health_check_ports(address: IpAddr, health: Arc<ProxyHealth>) {
    let mut running: BTreeMap<u16, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut retry_at: BTreeMap<u16, Instant> = BTreeMap::new();
    let mut interval = tokio::time::interval(PORTS_PERIOD);
    loop {
        interval.tick().await;
        let tables = health.publisher().current();
        let wanted: BTreeSet<u16> = tables.health.iter().map(|c| c.port).collect();
        running.retain(|port, task| {
            let keep = wanted.contains(port);
            if !keep {
                task.abort();
                tracing::info!(port, "health check port closed");
            }
            keep
        });
        retry_at.retain(|port, _| wanted.contains(port));
        for &port in &wanted {
            if running.contains_key(&port)
                || retry_at.get(&port).is_some_and(|t| *t > Instant::now())
            {
                continue;
            }
            let addr = SocketAddr::new(address, port);
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    retry_at.remove(&port);
                    tracing::info!(address = %addr, "health check port listening");
                    running.insert(
                        port,
                        tokio::spawn(serve_health_check_port(l, port, health.clone())),
                    );
                }
                Err(e) => {
                    tracing::warn!(address = %addr, "health check port cannot listen: {e}; retrying in {} s", RETRY.as_secs());
                    retry_at.insert(port, Instant::now() + RETRY);
                }
            }
        }
    }
}

/// Evaluates the proxy health every `TICK_PERIOD` (100 ms), so that the sync metrics (last sync,
/// apply latency) follow the workers without anyone asking.
pub async fn tick(health: Arc<ProxyHealth>) {
    let mut interval = tokio::time::interval(TICK_PERIOD);
    loop {
        interval.tick().await;
        health.check(SystemTime::now());
    }
}

/// The host stack's answers: the tables published now and the proxy's health.
struct StackAnswers {
    health: Arc<ProxyHealth>,
}

impl Answer for StackAnswers {
    fn answer(&mut self, port: u16, request: &Request) -> Option<Vec<u8>> {
        answer_health_check(&self.health, port, request, SystemTime::now())
    }

    fn refuse(&mut self, response: Response) -> Vec<u8> {
        response.encode(SystemTime::now(), false)
    }
}

/// The host stack on a thread of its own: follows the tables (address, ports), polls, sleeps
/// 1 ms between polls while it has been busy in the last 100 ms, up to 5 ms otherwise (or less
/// when a TCP timer is due), and 100 ms while the tables have no health check at all (no frame
/// can reach it then; a node without `Local` load balancers should not wake 200 times a
/// second for nothing), until `stop`.
pub fn spawn_host_stack(
    queues: Arc<StackQueues>,
    pool: Arc<Pool>,
    health: Arc<ProxyHealth>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("nodegate-stack".into())
        .spawn(move || {
            let seed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            let clock = dataplane::time::MonotonicClock::new();
            let mut stack = HostStack::new(queues, pool, clock.now(), seed);
            let mut answers = StackAnswers {
                health: health.clone(),
            };
            let mut generation = None;
            let mut has_checks = false;
            let mut last_busy = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let tables = health.publisher().current();
                if generation != Some(tables.generation) {
                    stack.sync(&tables);
                    generation = Some(tables.generation);
                    has_checks = !tables.health.is_empty();
                }
                drop(tables);
                let now = clock.now();
                if stack.poll(now, &mut answers) {
                    last_busy = Instant::now();
                    continue;
                }
                let idle = if last_busy.elapsed() < Duration::from_millis(100) {
                    Duration::from_millis(1)
                } else if has_checks {
                    Duration::from_millis(5)
                } else {
                    Duration::from_millis(100)
                };
                let due = stack.poll_delay(now).unwrap_or(idle);
                std::thread::sleep(due.clamp(Duration::from_micros(100), idle));
            }
        })
}

/// The servers of a live run; [`Servers::stop`] ends them.
pub struct Servers {
    runtime: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
    stack: Option<JoinHandle<()>>,
    stop_stack: Arc<AtomicBool>,
}

impl Servers {
    /// Starts the kernel-side servers of `cfg` (with `metrics` for `/metrics`) and, given its
    /// queues and the workers' pool, the host stack.
    pub fn start(
        cfg: &ServeConfig,
        health: Arc<ProxyHealth>,
        metrics: Arc<Metrics>,
        stack: Option<(Arc<StackQueues>, Arc<Pool>)>,
    ) -> std::io::Result<Servers> {
        let stop_stack = Arc::new(AtomicBool::new(false));
        let stack = match stack {
            Some((queues, pool)) => Some(spawn_host_stack(
                queues,
                pool,
                health.clone(),
                stop_stack.clone(),
            )?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("nodegate-control".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(tick(health.clone()));
                    if let Some(addr) = cfg.health_bind {
                        let h = health.clone();
                        let handler: Handler =
                            Arc::new(move |req: &Request| h.answer(&req.path, SystemTime::now()));
                        tokio::spawn(serve_http(addr, "proxy health server", handler));
                    }
                    if let Some(addr) = cfg.metrics_bind {
                        let handler: Handler =
                            Arc::new(move |req: &Request| metrics.answer(&req.path));
                        tokio::spawn(serve_http(addr, "metrics server", handler));
                    }
                    if let Some(address) = cfg.node_port_address {
                        tokio::spawn(serve_health_check_ports(address, health.clone()));
                    }
                    let _ = rx.await;
                });
            })?;
        Ok(Servers {
            runtime: Some((thread, tx)),
            stack,
            stop_stack,
        })
    }

    /// Stops every server and waits for their threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some((thread, tx)) = self.runtime.take() {
            let _ = tx.send(());
            let _ = thread.join();
        }
        self.stop_stack.store(true, Ordering::Relaxed);
        if let Some(t) = self.stack.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.shutdown();
    }
}
