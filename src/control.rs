//! The control thread of a live run: a single-threaded tokio runtime, pinned to a CPU no worker
//! uses, running the sources (API server watchers, manifests directory) and the control loop
//! ([`control::sync::run`]) that rebuilds the tables and publishes them to the workers.
//!
//! The workers never wait for it: they pick up a new snapshot between two bursts, and forward
//! with the last one whatever happens here (API server gone, bad manifest, a slow rebuild).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use control::config::{ApiSource, Config};
use control::model::ClusterState;
use control::sync::{SyncState, SyncStatus, Update};
use dataplane::tables::TablePublisher;

/// Updates queued between the sources and the control loop; a full queue makes the watchers
/// wait (the API server then buffers for us).
const UPDATE_QUEUE: usize = 8192;

/// The running control thread; [`ControlThread::stop`] ends it.
pub struct ControlThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    status: Arc<SyncStatus>,
}

impl ControlThread {
    /// Starts the thread (pinned to `cpu` when given) with the manifests state the current
    /// tables were built from, and the API server `api`. Returns once the API server client
    /// exists (it has not connected yet: an unreachable server is retried in the background),
    /// or with the reason it could not be made (an unreadable kubeconfig, no in-cluster
    /// credentials).
    pub fn start(
        cfg: &Config,
        manifests: ClusterState,
        api: ApiSource,
        publisher: TablePublisher,
        health: Option<Arc<control::health::ProxyHealth>>,
        cpu: Option<usize>,
    ) -> Result<ControlThread, String> {
        let status = Arc::new(SyncStatus::new(api != ApiSource::None));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let cfg = cfg.clone();
        let thread_status = status.clone();
        let thread = std::thread::Builder::new()
            .name("nodegate-control".to_string())
            .spawn(move || {
                match cpu {
                    Some(cpu) if ffi::pin_current_thread(cpu) => {
                        tracing::info!(cpu, "control thread pinned")
                    }
                    Some(cpu) => tracing::warn!(cpu, "could not pin the control thread"),
                    None => tracing::warn!(
                        "every CPU runs a worker: the control thread is not pinned and shares them"
                    ),
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("nodegate-control")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(control_loop(
                    cfg,
                    manifests,
                    api,
                    Outputs {
                        publisher,
                        health,
                        status: thread_status,
                    },
                    ready_tx,
                    stop_rx,
                ));
                // Watch connections and blocking reads are abandoned, not awaited.
                runtime.shutdown_timeout(Duration::from_millis(500));
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        let mut control = ControlThread {
            stop: Some(stop_tx),
            thread: Some(thread),
            status,
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(control),
            Ok(Err(e)) => {
                control.join();
                Err(e)
            }
            Err(_) => {
                control.join();
                Err("the control thread ended while starting".to_string())
            }
        }
    }

    /// The control loop's counters (rebuilds, last sync, pending changes, API server state).
    pub fn status(&self) -> &Arc<SyncStatus> {
        &self.status
    }

    /// Stops the sources and the loop (nothing is published after it returns) and joins the
    /// thread.
    pub fn stop(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the control thread panicked");
            }
        }
    }
}

impl Drop for ControlThread {
    fn drop(&mut self) {
        self.join();
    }
}

/// Where the control loop's results go: the tables to the workers, its progress to the proxy
/// health state and to the counters.
struct Outputs {
    publisher: TablePublisher,
    health: Option<Arc<control::health::ProxyHealth>>,
    status: Arc<SyncStatus>,
}

/// The thread's body: makes the client, reports readiness, starts the sources and runs the
/// loop until `stop`.
async fn control_loop(
    cfg: Config,
    manifests: ClusterState,
    api: ApiSource,
    out: Outputs,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Outputs {
        publisher,
        health,
        status,
    } = out;
    let client = match control::watch::api::client(&api).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Update>(UPDATE_QUEUE);
    if let Some(client) = client {
        tokio::spawn(control::watch::api::watch(
            client,
            cfg.node.name.clone(),
            tx.clone(),
        ));
    }
    let dir: Option<PathBuf> = cfg.kubernetes.manifests.clone();
    if let Some(dir) = dir {
        tokio::spawn(control::watch::dir::poll(
            dir,
            control::watch::dir::POLL_INTERVAL,
            tx.clone(),
        ));
    }
    drop(tx);
    tracing::info!(
        api = %api,
        manifests = %crate::run::or_none(cfg.kubernetes.manifests.as_ref().map(|d| d.display())),
        min_sync_ms = cfg.kubernetes.min_sync.as_millis() as u64,
        "control thread running"
    );
    let _ = ready.send(Ok(()));
    // The start-up tables count as a build long ago: the first change is applied at once.
    let state = SyncState::new(&cfg.node.name, cfg.kubernetes.min_sync, manifests, None);
    control::sync::run(&cfg, state, publisher, status, health, rx, async {
        let _ = stop.await;
    })
    .await;
}

/// The CPU for the control thread: the first one the process may use that no worker is pinned
/// to (`None` when the workers have them all).
pub fn control_cpu(worker_cpus: &[usize]) -> Option<usize> {
    ffi::available_cpus()
        .into_iter()
        .find(|c| !worker_cpus.contains(c))
}
