//! Keeping the data plane's tables in step with the cluster.
//!
//! The sources (the manifests directory, the API server watchers of [`crate::watch`]) send
//! [`Update`]s; [`SyncState`] merges them into one [`ClusterState`] and says when a rebuild is
//! due; [`run`] is the control thread's loop that rebuilds with [`crate::snapshot::build`] and
//! publishes the new immutable [`Tables`] to the workers (read-copy-update: a worker switches
//! between two bursts and never waits).
//!
//! - **Per source, last good state.** The manifests directory is replaced as a whole when it
//!   reads cleanly, and kept as it was when a file is bad. A watched object that cannot be
//!   converted keeps its previous version.
//! - **Whole relists.** As kube's reflector store does, the objects of a relist (after a
//!   restart of the watch, a lost connection or `410 Gone`) are collected aside and replace the
//!   resource's objects at once when the relist is complete: the tables never see half a list.
//! - **The API server counts once it has been listed.** Until both Services and EndpointSlices
//!   have been listed completely once, the tables are built from the manifests alone (a
//!   Service without its endpoints would reject its clients); afterwards the API server's
//!   objects are kept through any outage, and win over a manifest of the same name.
//! - **Coalescing.** A change only marks the state dirty. A rebuild runs at once if the last
//!   one is at least `min_sync` old, else when it will be (kube-proxy's `minSyncPeriod`), so a
//!   burst of any size costs at most two rebuilds per `min_sync`. A rebuild that changes
//!   nothing (a relist that found what was there) is not even due.
//!
//! [`SyncStatus`] carries the counters other threads read (metrics, health): atomics written
//! here only, never touched by the workers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dataplane::tables::{TablePublisher, Tables};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::manifests::ObjectError;
use crate::model::{ClusterState, EndpointSlice, Node, Service};

/// Namespace and name of a watched object (namespace empty for a Node).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A watched object after conversion: the object, `None` when kube-proxy ignores it (it then
/// counts as absent), or why it cannot be used.
pub type Converted<T> = Result<Option<T>, ObjectError>;

/// One step of a watch, as kube's watcher reports it (`kube::runtime::watcher::Event`), with the
/// object already converted.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    /// A (re)list starts: the objects of the resource are about to be sent again.
    Init,
    /// An object of the (re)list.
    InitApply(ObjectKey, Converted<T>),
    /// The (re)list is complete: its objects are now the resource's objects.
    InitDone,
    /// An object was added or changed.
    Apply(ObjectKey, Converted<T>),
    /// An object was deleted.
    Delete(ObjectKey),
}

/// The watched resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Service,
    EndpointSlice,
    Node,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Service, Resource::EndpointSlice, Resource::Node];

    pub fn kind(self) -> &'static str {
        match self {
            Resource::Service => "Service",
            Resource::EndpointSlice => "EndpointSlice",
            Resource::Node => "Node",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// What a source tells the control loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The manifests directory read cleanly: its complete content.
    Manifests(ClusterState),
    /// The manifests directory changed but did not read (the source logged why); its last good
    /// content stays.
    ManifestsFailed,
    Services(WatchEvent<Service>),
    EndpointSlices(WatchEvent<EndpointSlice>),
    Nodes(WatchEvent<Node>),
    /// A watch failed (the source logged why); it retries with backoff and the objects stay.
    WatchFailed(Resource),
}

/// The objects of one watched resource, filled like kube's reflector store.
#[derive(Debug)]
struct Store<T> {
    resource: Resource,
    live: BTreeMap<ObjectKey, T>,
    /// Objects of a relist in progress.
    relist: Option<BTreeMap<ObjectKey, T>>,
    /// A relist has completed at least once.
    listed: bool,
}

impl<T: Clone + PartialEq> Store<T> {
    fn new(resource: Resource) -> Store<T> {
        Store {
            resource,
            live: BTreeMap::new(),
            relist: None,
            listed: false,
        }
    }

    /// Applies one event; returns whether the live objects (or readiness) changed, and counts
    /// objects that could not be converted in `invalid`.
    fn apply(&mut self, event: WatchEvent<T>, invalid: &mut u64) -> bool {
        match event {
            WatchEvent::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            WatchEvent::InitApply(key, converted) => {
                let keep = self.live.get(&key).cloned();
                let buffer = self.relist.get_or_insert_with(BTreeMap::new);
                match converted {
                    Ok(Some(object)) => {
                        buffer.insert(key, object);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        *invalid += 1;
                        Self::log_invalid(self.resource, &key, &e, keep.is_some());
                        if let Some(old) = keep {
                            buffer.insert(key, old);
                        }
                    }
                }
                false
            }
            WatchEvent::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let changed = !self.listed || listed != self.live;
                self.live = listed;
                self.listed = true;
                changed
            }
            WatchEvent::Apply(key, Ok(Some(object))) => {
                if self.live.get(&key) == Some(&object) {
                    return false;
                }
                self.live.insert(key, object);
                true
            }
            WatchEvent::Apply(key, Ok(None)) | WatchEvent::Delete(key) => {
                self.live.remove(&key).is_some()
            }
            WatchEvent::Apply(key, Err(e)) => {
                *invalid += 1;
                Self::log_invalid(self.resource, &key, &e, self.live.contains_key(&key));
                false
            }
        }
    }

    fn log_invalid(resource: Resource, key: &ObjectKey, e: &ObjectError, kept: bool) {
        let kind = resource.kind();
        if kept {
            tracing::error!("{kind} {key}: {e}; its last good version stays in the tables");
        } else {
            tracing::error!("{kind} {key}: {e}; ignored until it is fixed");
        }
    }
}

/// The sources' latest states, merged on demand, and when the tables need rebuilding.
#[derive(Debug)]
pub struct SyncState {
    node_name: String,
    min_sync: Duration,
    manifests: ClusterState,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    /// Changes applied since the last rebuild.
    pending: u64,
    last_rebuild: Option<Instant>,
    invalid_objects: u64,
    manifest_failures: u64,
    watch_failures: u64,
}

impl SyncState {
    /// A state whose manifests source holds `manifests` and whose tables were last built from
    /// them at `built` (`None`: not built yet, the first change rebuilds at once). `node_name`
    /// picks this node's Node object.
    pub fn new(
        node_name: &str,
        min_sync: Duration,
        manifests: ClusterState,
        built: Option<Instant>,
    ) -> SyncState {
        SyncState {
            node_name: node_name.to_string(),
            min_sync,
            manifests,
            services: Store::new(Resource::Service),
            slices: Store::new(Resource::EndpointSlice),
            nodes: Store::new(Resource::Node),
            pending: 0,
            last_rebuild: built,
            invalid_objects: 0,
            manifest_failures: 0,
            watch_failures: 0,
        }
    }

    /// Applies an update; returns whether what the tables are built from changed.
    pub fn apply(&mut self, update: Update) -> bool {
        let synced_before = self.api_synced();
        let (changed, api_object) = match update {
            Update::Manifests(state) => {
                let changed = state != self.manifests;
                self.manifests = state;
                (changed, false)
            }
            Update::ManifestsFailed => {
                self.manifest_failures += 1;
                (false, false)
            }
            Update::Services(e) => (self.services.apply(e, &mut self.invalid_objects), true),
            Update::EndpointSlices(e) => (self.slices.apply(e, &mut self.invalid_objects), true),
            Update::Nodes(e) => {
                let ours = match &e {
                    WatchEvent::InitApply(k, _)
                    | WatchEvent::Apply(k, _)
                    | WatchEvent::Delete(k) => k.name == self.node_name,
                    WatchEvent::Init | WatchEvent::InitDone => true,
                };
                // Other Nodes (the watch selects ours only) are not kept.
                (
                    ours && self.nodes.apply(e, &mut self.invalid_objects),
                    false,
                )
            }
            Update::WatchFailed(_) => {
                self.watch_failures += 1;
                (false, false)
            }
        };
        let synced = self.api_synced();
        // Services and EndpointSlices count from the moment both are listed: before, a change
        // to them leaves the tables alone; at that moment, everything listed so far counts.
        let changed = if api_object {
            synced && (changed || !synced_before)
        } else {
            changed
        };
        if changed {
            self.pending += 1;
        }
        changed
    }

    /// Services and EndpointSlices have both been listed completely at least once.
    pub fn api_synced(&self) -> bool {
        self.services.listed && self.slices.listed
    }

    /// Changes applied since the last rebuild.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Watched objects that could not be converted, so far.
    pub fn invalid_objects(&self) -> u64 {
        self.invalid_objects
    }

    /// When the next rebuild should run: `None` when nothing changed, else `now` or the end of
    /// the `min_sync` interval since the last rebuild, whichever is later.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        if self.pending == 0 {
            return None;
        }
        Some(match self.last_rebuild {
            Some(last) => (last + self.min_sync).max(now),
            None => now,
        })
    }

    /// The merged state to build from, and records a rebuild at `now`: pending changes are
    /// cleared. Returns the state and how many changes it folds in.
    pub fn take(&mut self, now: Instant) -> (ClusterState, u64) {
        let changes = std::mem::take(&mut self.pending);
        self.last_rebuild = Some(now);
        (self.merged(), changes)
    }

    /// The manifests, plus (once synced) the API server's Services and EndpointSlices, which
    /// replace manifest objects of the same namespace and name; and this node's Node.
    /// Manifest objects keep their file order, API objects follow sorted by namespace and name.
    pub fn merged(&self) -> ClusterState {
        let mut out = self.manifests.clone();
        if self.api_synced() {
            let key = |ns: &str, name: &str| ObjectKey::new(ns, name);
            let before = out.services.len() + out.endpoint_slices.len();
            out.services
                .retain(|s| !self.services.live.contains_key(&key(&s.namespace, &s.name)));
            out.endpoint_slices
                .retain(|s| !self.slices.live.contains_key(&key(&s.namespace, &s.name)));
            let shadowed = before - out.services.len() - out.endpoint_slices.len();
            if shadowed > 0 {
                tracing::warn!(
                    objects = shadowed,
                    "manifests define Services or EndpointSlices the API server has too; the API server's are used"
                );
            }
            out.services.extend(self.services.live.values().cloned());
            out.endpoint_slices
                .extend(self.slices.live.values().cloned());
        }
        out.node = self
            .nodes
            .live
            .get(&ObjectKey::new("", self.node_name.as_str()))
            .cloned();
        out
    }
}

/// Counters of the control loop, for metrics and health checks. Written by the control thread
/// only, read by anyone ([`SyncStatus::read`]); the workers never touch them.
#[derive(Debug, Default)]
pub struct SyncStatus {
    rebuilds: AtomicU64,
    failed_rebuilds: AtomicU64,
    last_sync_us: AtomicU64,
    last_sync_unix_ms: AtomicU64,
    pending_changes: AtomicU64,
    generation: AtomicU64,
    api_configured: AtomicBool,
    api_synced: AtomicBool,
    watch_failures: AtomicU64,
    manifest_failures: AtomicU64,
    invalid_objects: AtomicU64,
}

/// One reading of [`SyncStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SyncStatusSnapshot {
    /// Tables built and published since start (the start-up build not counted).
    pub rebuilds: u64,
    /// Rebuilds that failed (the previous tables stayed).
    pub failed_rebuilds: u64,
    /// How long the last rebuild took, in microseconds (building and publishing).
    pub last_sync_us: u64,
    /// When the last rebuild was published, in milliseconds since the Unix epoch; 0: none yet.
    pub last_sync_unix_ms: u64,
    /// Changes received and not yet in the published tables.
    pub pending_changes: u64,
    /// Generation of the published tables.
    pub generation: u64,
    /// An API server is watched.
    pub api_configured: bool,
    /// Services and EndpointSlices have been listed completely (kube's "store ready"); stays
    /// true through an outage, when the tables keep the last objects seen.
    pub api_synced: bool,
    /// Watch failures so far (each one retried with backoff).
    pub watch_failures: u64,
    /// Reads of the manifests directory that failed so far.
    pub manifest_failures: u64,
    /// Watched objects that could not be converted so far.
    pub invalid_objects: u64,
}

impl SyncStatus {
    /// A status for a loop watching an API server (`api_configured`) or not.
    pub fn new(api_configured: bool) -> SyncStatus {
        let s = SyncStatus::default();
        s.api_configured.store(api_configured, Ordering::Relaxed);
        s
    }

    /// The current values.
    pub fn read(&self) -> SyncStatusSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SyncStatusSnapshot {
            rebuilds: r(&self.rebuilds),
            failed_rebuilds: r(&self.failed_rebuilds),
            last_sync_us: r(&self.last_sync_us),
            last_sync_unix_ms: r(&self.last_sync_unix_ms),
            pending_changes: r(&self.pending_changes),
            generation: r(&self.generation),
            api_configured: self.api_configured.load(Ordering::Relaxed),
            api_synced: self.api_synced.load(Ordering::Relaxed),
            watch_failures: r(&self.watch_failures),
            manifest_failures: r(&self.manifest_failures),
            invalid_objects: r(&self.invalid_objects),
        }
    }

    /// When the last rebuild was published.
    pub fn last_sync(&self) -> Option<SystemTime> {
        match self.last_sync_unix_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    fn observe(&self, state: &SyncState) {
        self.pending_changes.store(state.pending, Ordering::Relaxed);
        self.api_synced.store(state.api_synced(), Ordering::Relaxed);
        self.watch_failures
            .store(state.watch_failures, Ordering::Relaxed);
        self.manifest_failures
            .store(state.manifest_failures, Ordering::Relaxed);
        self.invalid_objects
            .store(state.invalid_objects, Ordering::Relaxed);
    }
}

/// How often retired snapshots are checked for workers still holding them.
const RETIRE_CHECK: Duration = Duration::from_secs(1);
/// Updates taken from the queue before the loop looks at its timers again.
const DRAIN_MAX: usize = 4096;

/// The control loop: applies the sources' updates as they come, rebuilds and publishes the
/// tables when a rebuild is due, and frees the snapshots the workers have all left. Returns
/// when `stop` resolves, or when every sender of `updates` is gone and the last changes are
/// published.
///
/// A snapshot replaced by a newer one is kept here until no worker holds it any more, so that
/// the memory of old tables (Maglev tables are large) is freed on this thread, not on a
/// worker's fast path when it switches to the new snapshot.
pub async fn run(
    cfg: &Config,
    mut state: SyncState,
    publisher: TablePublisher,
    status: Arc<SyncStatus>,
    health: Option<Arc<crate::health::ProxyHealth>>,
    mut updates: mpsc::Receiver<Update>,
    stop: impl std::future::Future<Output = ()>,
) {
    let health = health.as_deref();
    let mut stop = std::pin::pin!(stop);
    let mut built = Built::default();
    let mut open = true;
    let mut retire_tick = tokio::time::interval(RETIRE_CHECK);
    retire_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status.observe(&state);
    status
        .generation
        .store(publisher.current().generation, Ordering::Relaxed);
    loop {
        let now = tokio::time::Instant::now();
        let due = state
            .due(now.into_std())
            .map(tokio::time::Instant::from_std);
        if !open && due.is_none() {
            return;
        }
        tokio::select! {
            biased;
            () = &mut stop => return,
            received = updates.recv(), if open => match received {
                Some(update) => {
                    let mut changed = state.apply(update);
                    for _ in 1..DRAIN_MAX {
                        match updates.try_recv() {
                            Ok(update) => changed |= state.apply(update),
                            Err(_) => break,
                        }
                    }
                    if let (true, Some(h)) = (changed, health) {
                        // kube-proxy's QueuedUpdate, only for a change the tables need: it
                        // waits for a rebuild from now. An update that changes nothing queues
                        // nothing (else an idle proxy would turn unhealthy).
                        h.queued_update(SystemTime::now());
                    }
                    status.observe(&state);
                }
                None => open = false,
            },
            () = sleep_until(due) => {
                rebuild(cfg, &mut state, &publisher, &status, health, &mut built);
            }
            _ = retire_tick.tick(), if !built.retired.is_empty() => {
                built.retired.retain(|t| Arc::strong_count(t) > 1);
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the rebuilds carry from one to the next.
#[derive(Default)]
struct Built {
    /// Replaced snapshots some worker may still hold; freed here, off the workers.
    retired: Vec<Arc<Tables>>,
    /// The warnings of the last build (said again only when they change).
    warnings: Vec<String>,
    /// The backend sets of the last build.
    cache: crate::snapshot::BuildCache,
}

/// Builds and publishes the tables of the merged state; on failure the published tables stay.
fn rebuild(
    cfg: &Config,
    state: &mut SyncState,
    publisher: &TablePublisher,
    status: &SyncStatus,
    health: Option<&crate::health::ProxyHealth>,
    built: &mut Built,
) {
    let Built {
        retired,
        warnings,
        cache,
    } = built;
    let started = Instant::now();
    let (merged, changes) = state.take(tokio::time::Instant::now().into_std());
    match crate::snapshot::build_cached(cfg, &merged, cache) {
        Ok((tables, new_warnings)) => {
            // Warnings are about the cluster state; say them when they change, not every sync.
            if new_warnings != *warnings {
                for w in new_warnings.iter().filter(|w| !warnings.contains(w)) {
                    tracing::warn!("{w}");
                }
                *warnings = new_warnings;
            }
            let frontends = tables.services.len() + tables.services6.len();
            retired.push(publisher.current());
            let generation = publisher.publish(tables);
            retired.retain(|t| Arc::strong_count(t) > 1);
            let took = started.elapsed();
            if let Some(h) = health {
                h.published(generation, took, SystemTime::now());
                // `/healthz` fails while this node is being deleted or drained.
                h.set_node_eligible(merged.node.as_ref().is_none_or(|n| {
                    crate::health::node_eligible(
                        n.deleting,
                        n.to_be_deleted
                            .then_some(crate::health::TO_BE_DELETED_TAINT)
                            .into_iter(),
                    )
                }));
            }
            status.rebuilds.fetch_add(1, Ordering::Relaxed);
            status.generation.store(generation, Ordering::Relaxed);
            status
                .last_sync_us
                .store(took.as_micros() as u64, Ordering::Relaxed);
            let unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            status.last_sync_unix_ms.store(unix_ms, Ordering::Relaxed);
            tracing::info!(
                generation,
                changes,
                services = merged.services.len(),
                endpoint_slices = merged.endpoint_slices.len(),
                frontends,
                took_us = took.as_micros() as u64,
                "tables published"
            );
        }
        Err(e) => {
            status.failed_rebuilds.fetch_add(1, Ordering::Relaxed);
            tracing::error!("{e}; the last good tables keep forwarding");
        }
    }
    status.observe(state);
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::{Endpoint, EndpointPort, Protocol, ServicePort, ServiceType, TargetPort};
    use std::net::Ipv4Addr;

    const SECOND: Duration = Duration::from_secs(1);

    fn svc(name: &str, ip: [u8; 4], port: u16) -> Service {
        Service {
            namespace: "default".into(),
            name: name.into(),
            service_type: ServiceType::ClusterIp,
            cluster_ips: vec![Ipv4Addr::from(ip).into()],
            ports: vec![ServicePort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port,
                node_port: None,
                target_port: TargetPort::Number(8080),
            }],
            external_ips: vec![],
            load_balancer_ips: vec![],
            external_policy_local: false,
            internal_policy_local: false,
            affinity_timeout_secs: None,
            health_check_node_port: None,
            load_balancer_source_ranges: vec![],
        }
    }

    fn slice(service: &str, addrs: &[[u8; 4]]) -> EndpointSlice {
        EndpointSlice {
            namespace: "default".into(),
            name: format!("{service}-1"),
            service_name: service.into(),
            ports: vec![EndpointPort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
            endpoints: addrs
                .iter()
                .map(|a| Endpoint {
                    addresses: vec![Ipv4Addr::from(*a).into()],
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: Some("node-b".into()),
                    zone: None,
                    zone_hints: vec![],
                    node_hints: vec![],
                })
                .collect(),
        }
    }

    fn node(name: &str, zone: Option<&str>) -> Node {
        Node {
            name: name.into(),
            zone: zone.map(str::to_string),
            deleting: false,
            to_be_deleted: false,
            pod_cidrs: vec![],
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    fn apply_svc(s: Service) -> Update {
        Update::Services(WatchEvent::Apply(key(&s.name.clone()), Ok(Some(s))))
    }

    fn names(state: &ClusterState) -> Vec<&str> {
        state.services.iter().map(|s| s.name.as_str()).collect()
    }

    /// A state whose API server has listed `services` and no EndpointSlices.
    fn synced(services: Vec<Service>) -> SyncState {
        let mut st = SyncState::new("node-a", SECOND, ClusterState::default(), None);
        st.apply(Update::Services(WatchEvent::Init));
        for s in services {
            st.apply(Update::Services(WatchEvent::InitApply(
                key(&s.name.clone()),
                Ok(Some(s)),
            )));
        }
        st.apply(Update::Services(WatchEvent::InitDone));
        st.apply(Update::EndpointSlices(WatchEvent::Init));
        st.apply(Update::EndpointSlices(WatchEvent::InitDone));
        st
    }

    #[test]
    fn test_burst_of_10000_updates_is_coalesced() {
        let t0 = Instant::now();
        let mut st = synced(vec![]);
        let mut now = t0;
        let mut rebuilds = 0;
        st.take(now);
        // 10,000 updates of 100 Services, one every 100 µs (one second in all), with the
        // control loop rebuilding whenever a rebuild is due.
        for i in 0..10_000u32 {
            now = t0 + Duration::from_micros(100 * u64::from(i));
            let port = 1 + (i / 100) as u16;
            st.apply(apply_svc(svc(
                &format!("s{}", i % 100),
                [10, 96, 0, (i % 100) as u8],
                port,
            )));
            if st.due(now).is_some_and(|at| at <= now) {
                st.take(now);
                rebuilds += 1;
            }
        }
        // What is left is applied when the interval ends.
        let at = st.due(now).expect("the last changes are pending");
        assert!(at <= now + SECOND);
        let (merged, changes) = st.take(at);
        rebuilds += 1;
        assert!(rebuilds <= 3, "{rebuilds} rebuilds for 10,000 updates");
        assert!(changes > 0);
        assert_eq!(merged.services.len(), 100);
        assert!(merged.services.iter().all(|s| s.ports[0].port == 100));
        assert_eq!(st.due(at + SECOND), None);
    }

    #[test]
    fn test_rebuild_waits_for_min_sync_after_the_last_one() {
        let t0 = Instant::now();
        let mut st = synced(vec![]);
        // The first change after a quiet time rebuilds at once.
        assert_eq!(st.due(t0), Some(t0));
        st.take(t0);
        assert_eq!(st.due(t0), None);
        st.apply(apply_svc(svc("a", [10, 96, 0, 1], 80)));
        assert_eq!(st.due(t0 + SECOND / 10), Some(t0 + SECOND));
        assert_eq!(st.due(t0 + 2 * SECOND), Some(t0 + 2 * SECOND));
        assert_eq!(st.pending(), 1);
        // The same object again is no change.
        st.take(t0 + SECOND);
        st.apply(apply_svc(svc("a", [10, 96, 0, 1], 80)));
        assert_eq!(st.pending(), 0);
        assert_eq!(st.due(t0 + 3 * SECOND), None);
    }

    #[test]
    fn test_api_objects_count_once_services_and_slices_are_listed() {
        let mut st = SyncState::new("node-a", SECOND, ClusterState::default(), None);
        st.apply(Update::Services(WatchEvent::Init));
        st.apply(Update::Services(WatchEvent::InitApply(
            key("web"),
            Ok(Some(svc("web", [10, 96, 0, 1], 80))),
        )));
        assert!(!st.apply(Update::Services(WatchEvent::InitDone)));
        // Services without their endpoints would reject clients: not yet.
        assert!(st.merged().services.is_empty());
        assert_eq!(st.due(Instant::now()), None);
        assert!(!st.apply(apply_svc(svc("db", [10, 96, 0, 2], 5432))));
        st.apply(Update::EndpointSlices(WatchEvent::Init));
        st.apply(Update::EndpointSlices(WatchEvent::InitApply(
            key("web-1"),
            Ok(Some(slice("web", &[[10, 1, 0, 5]]))),
        )));
        assert!(st.apply(Update::EndpointSlices(WatchEvent::InitDone)));
        assert!(st.api_synced());
        let merged = st.merged();
        assert_eq!(names(&merged), ["db", "web"]);
        assert_eq!(merged.endpoint_slices.len(), 1);
    }

    #[test]
    fn test_relist_replaces_the_objects_when_complete() {
        let mut st = synced(vec![
            svc("a", [10, 96, 0, 1], 80),
            svc("b", [10, 96, 0, 2], 80),
        ]);
        st.take(Instant::now());
        // A relist after 410 Gone: `b` was deleted while the watch was gone, `c` added.
        st.apply(Update::Services(WatchEvent::Init));
        st.apply(Update::Services(WatchEvent::InitApply(
            key("a"),
            Ok(Some(svc("a", [10, 96, 0, 1], 80))),
        )));
        // Half a list is never what the tables are built from.
        assert_eq!(names(&st.merged()), ["a", "b"]);
        assert_eq!(st.pending(), 0);
        st.apply(Update::Services(WatchEvent::InitApply(
            key("c"),
            Ok(Some(svc("c", [10, 96, 0, 3], 80))),
        )));
        assert!(st.apply(Update::Services(WatchEvent::InitDone)));
        assert_eq!(names(&st.merged()), ["a", "c"]);
        // A relist that finds what was there changes nothing.
        st.take(Instant::now());
        st.apply(Update::Services(WatchEvent::Init));
        for s in [svc("a", [10, 96, 0, 1], 80), svc("c", [10, 96, 0, 3], 80)] {
            st.apply(Update::Services(WatchEvent::InitApply(
                key(&s.name.clone()),
                Ok(Some(s)),
            )));
        }
        assert!(!st.apply(Update::Services(WatchEvent::InitDone)));
        assert_eq!(st.due(Instant::now()), None);
    }

    #[test]
    fn test_api_loss_keeps_the_objects() {
        let mut st = synced(vec![svc("a", [10, 96, 0, 1], 80)]);
        st.take(Instant::now());
        for _ in 0..5 {
            // What a watcher reports while the API server is unreachable: a relist starts,
            // the list fails.
            st.apply(Update::Services(WatchEvent::Init));
            assert!(!st.apply(Update::WatchFailed(Resource::Service)));
        }
        assert_eq!(names(&st.merged()), ["a"]);
        assert_eq!(st.pending(), 0);
        assert_eq!(st.watch_failures, 5);
    }

    #[test]
    fn test_manifests_and_api_are_merged_api_wins() {
        let manifests = ClusterState {
            services: vec![
                svc("edge", [10, 96, 1, 1], 80),
                svc("web", [10, 96, 1, 2], 80),
            ],
            endpoint_slices: vec![
                slice("edge", &[[10, 1, 0, 1]]),
                slice("web", &[[10, 1, 0, 2]]),
            ],
            node: None,
        };
        let mut st = SyncState::new("node-a", SECOND, manifests, None);
        // Before the API server has listed, the manifests alone.
        assert_eq!(names(&st.merged()), ["edge", "web"]);
        st.apply(Update::Services(WatchEvent::Init));
        for s in [
            svc("web", [10, 96, 0, 2], 8080),
            svc("api", [10, 96, 0, 3], 80),
        ] {
            st.apply(Update::Services(WatchEvent::InitApply(
                key(&s.name.clone()),
                Ok(Some(s)),
            )));
        }
        st.apply(Update::Services(WatchEvent::InitDone));
        st.apply(Update::EndpointSlices(WatchEvent::Init));
        st.apply(Update::EndpointSlices(WatchEvent::InitApply(
            key("web-1"),
            Ok(Some(slice("web", &[[10, 2, 0, 2]]))),
        )));
        st.apply(Update::EndpointSlices(WatchEvent::InitDone));
        let merged = st.merged();
        assert_eq!(names(&merged), ["edge", "api", "web"]);
        let web = merged.services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(
            web.ports[0].port, 8080,
            "the API server's web, not the manifest's"
        );
        assert_eq!(merged.endpoint_slices.len(), 2);
        let web_slice = merged
            .endpoint_slices
            .iter()
            .find(|s| s.service_name == "web")
            .unwrap();
        assert_eq!(
            web_slice.endpoints[0].addresses,
            [Ipv4Addr::new(10, 2, 0, 2)]
        );
        // A manifests change is merged with what the API server said.
        let mut manifests = st.manifests.clone();
        manifests.services.push(svc("late", [10, 96, 1, 9], 80));
        assert!(st.apply(Update::Manifests(manifests)));
        assert_eq!(names(&st.merged()), ["edge", "late", "api", "web"]);
    }

    #[test]
    fn test_bad_manifests_keep_the_last_good_state() {
        let good = ClusterState {
            services: vec![svc("a", [10, 96, 0, 1], 80)],
            ..Default::default()
        };
        let mut st = SyncState::new("node-a", SECOND, good.clone(), None);
        assert!(!st.apply(Update::Manifests(good.clone())));
        assert!(!st.apply(Update::ManifestsFailed));
        assert_eq!(st.merged(), good);
        assert_eq!(st.due(Instant::now()), None);
        assert_eq!(st.manifest_failures, 1);
        // Fixed, with a second Service.
        let mut fixed = good.clone();
        fixed.services.push(svc("b", [10, 96, 0, 2], 80));
        assert!(st.apply(Update::Manifests(fixed)));
        assert_eq!(names(&st.merged()), ["a", "b"]);
        // And emptied: an empty directory means no Services.
        assert!(st.apply(Update::Manifests(ClusterState::default())));
        assert!(st.merged().services.is_empty());
    }

    #[test]
    fn test_invalid_object_keeps_its_last_good_version() {
        let bad = || {
            Err(ObjectError {
                field: "spec.ports[0].protocol".into(),
                reason: "unsupported protocol `QUIC`".into(),
            })
        };
        let mut st = synced(vec![svc("a", [10, 96, 0, 1], 80)]);
        assert!(!st.apply(Update::Services(WatchEvent::Apply(key("a"), bad()))));
        assert!(!st.apply(Update::Services(WatchEvent::Apply(key("new"), bad()))));
        assert_eq!(names(&st.merged()), ["a"]);
        // In a relist too.
        st.apply(Update::Services(WatchEvent::Init));
        st.apply(Update::Services(WatchEvent::InitApply(key("a"), bad())));
        st.apply(Update::Services(WatchEvent::InitApply(key("new"), bad())));
        st.apply(Update::Services(WatchEvent::InitDone));
        assert_eq!(names(&st.merged()), ["a"]);
        assert_eq!(st.invalid_objects(), 4);
        // An object kube-proxy ignores (ExternalName...) counts as deleted.
        assert!(st.apply(Update::Services(WatchEvent::Apply(key("a"), Ok(None)))));
        assert!(st.merged().services.is_empty());
    }

    #[test]
    fn test_this_nodes_node_is_kept() {
        let mut st = synced(vec![]);
        st.take(Instant::now());
        st.apply(Update::Nodes(WatchEvent::Init));
        st.apply(Update::Nodes(WatchEvent::InitApply(
            ObjectKey::new("", "node-a"),
            Ok(Some(node("node-a", Some("zone-1")))),
        )));
        assert!(st.apply(Update::Nodes(WatchEvent::InitDone)));
        assert_eq!(st.merged().node, Some(node("node-a", Some("zone-1"))));
        // Another node (the watch should not send it) is not ours.
        assert!(!st.apply(Update::Nodes(WatchEvent::Apply(
            ObjectKey::new("", "node-b"),
            Ok(Some(node("node-b", None))),
        ))));
        let mut draining = node("node-a", Some("zone-1"));
        draining.to_be_deleted = true;
        assert!(st.apply(Update::Nodes(WatchEvent::Apply(
            ObjectKey::new("", "node-a"),
            Ok(Some(draining.clone())),
        ))));
        assert_eq!(st.merged().node, Some(draining));
        assert!(st.apply(Update::Nodes(WatchEvent::Delete(ObjectKey::new(
            "", "node-a"
        )))));
        assert_eq!(st.merged().node, None);
    }

    fn loop_config() -> Config {
        Config::parse(
            "node: {name: node-a}\nports:\n  - {name: p0, driver: memory, addresses: [\"10.0.0.1/24\"]}\nkubernetes: {min_sync_ms: 1000}\n",
            std::path::Path::new("/virtual/c.yaml"),
        )
        .unwrap()
    }

    /// The control loop on a burst of 10,000 Service updates sent as fast as they go: a few
    /// rebuilds, and the published tables hold the last version of every Service.
    #[tokio::test(start_paused = true)]
    async fn test_loop_coalesces_a_burst_and_publishes_the_end_state() {
        let cfg = loop_config();
        let (initial, _) = crate::snapshot::build(&cfg, &ClusterState::default()).unwrap();
        let publisher = TablePublisher::new(initial);
        let status = Arc::new(SyncStatus::new(true));
        let (tx, rx) = mpsc::channel(1024);
        let state = SyncState::new("node-a", SECOND, ClusterState::default(), None);
        let sender = tokio::spawn(async move {
            for u in [
                Update::Services(WatchEvent::Init),
                Update::Services(WatchEvent::InitDone),
                Update::EndpointSlices(WatchEvent::Init),
                Update::EndpointSlices(WatchEvent::InitDone),
            ] {
                tx.send(u).await.unwrap();
            }
            for i in 0..10_000u32 {
                let s = svc(
                    &format!("s{}", i % 100),
                    [10, 96, 0, (i % 100) as u8],
                    1 + (i / 100) as u16,
                );
                tx.send(apply_svc(s)).await.unwrap();
                if i % 1000 == 0 {
                    // Spread over a few hundred milliseconds.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        run(
            &cfg,
            state,
            publisher.clone(),
            status.clone(),
            None,
            rx,
            std::future::pending(),
        )
        .await;
        sender.await.unwrap();
        let s = status.read();
        assert!((1..=3).contains(&s.rebuilds), "{s:?}");
        assert_eq!(s.pending_changes, 0);
        assert_eq!(s.generation, s.rebuilds);
        assert!(s.api_synced && s.last_sync_unix_ms > 0);
        let tables = publisher.current();
        assert_eq!(tables.services.len(), 100);
        for i in 0..100u8 {
            let fe = tables.services.lookup(
                dataplane::service::PROTO_TCP,
                Ipv4Addr::new(10, 96, 0, i),
                100,
            );
            assert!(fe.is_some(), "s{i} at its last port");
        }
    }

    /// Stopping the loop ends it even with changes pending.
    #[tokio::test(start_paused = true)]
    async fn test_loop_stops_on_request() {
        let cfg = loop_config();
        let (initial, _) = crate::snapshot::build(&cfg, &ClusterState::default()).unwrap();
        let publisher = TablePublisher::new(initial);
        let (_tx, rx) = mpsc::channel(16);
        let state = SyncState::new("node-a", SECOND, ClusterState::default(), None);
        let status = Arc::new(SyncStatus::new(false));
        run(
            &cfg,
            state,
            publisher.clone(),
            status.clone(),
            None,
            rx,
            async {},
        )
        .await;
        assert_eq!(publisher.current().generation, 0);
        assert_eq!(status.read().rebuilds, 0);
    }
}
