//! Proxy health, as kube-proxy defines it, and the answers of its health servers.
//!
//! [`ProxyHealth`] is the state shared by whoever changes the tables (the sync side: watchers,
//! table builds, the Node object) and the servers that report on it (`/healthz`, `/livez` on
//! port 10256, every Service's `healthCheckNodePort`). Its rule is kube-proxy's
//! `ProxyHealthServer`: the proxy is *unhealthy* when a change has been waiting longer than
//! the timeout (kube-proxy: twice its sync period) without being in effect. In nodegate a
//! change is in effect when every worker forwards with a table that holds it: each worker
//! records the generation it runs (`TablePublisher::applied`), so a worker that stopped
//! polling shows up here after the timeout even though the table was published. A worker
//! that stopped polling while nothing changes shows up too: each worker counts its timer
//! ticks (`TablePublisher::heartbeats`), and a count that has not moved for the timeout makes
//! the proxy unhealthy (kube-proxy has no workers; a stuck one must not pass for healthy).
//!
//! As in kube-proxy, only a change that needs new tables is *queued*: an update that finds
//! nothing to change (the manifests directory read again, a relist that found what was
//! there, a bad manifest or an unreachable API server, where the last good tables stay) queues
//! nothing, so an idle proxy stays healthy for ever.
//!
//! Who calls what:
//!
//! - the sync side calls [`ProxyHealth::queued_update`] when it learns of a change (kube-proxy's
//!   `QueuedUpdate`), then [`ProxyHealth::published`] right after `TablePublisher::publish`
//!   (with the time the build took), and [`ProxyHealth::set_node_eligible`] from the Node
//!   object ([`node_eligible`]);
//! - the servers call [`ProxyHealth::check`] for each answer (and a timer calls it too, so that
//!   metrics follow without requests), which also notices when every worker has switched.
//!
//! A table published without [`ProxyHealth::published`] is noticed by [`ProxyHealth::check`]
//! (pending from the moment it was first seen), so nothing stays healthy by omission.

use crate::http::{json_string, rfc3339_nano, Request, Response, JSON};
use crate::metrics::{unix_seconds, SyncMetrics};
use dataplane::service::HealthCheck;
use dataplane::tables::TablePublisher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The taint the cluster autoscaler puts on a node before deleting it; kube-proxy's `/healthz`
/// fails on such a node so that load balancers drain it first.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Whether a Node may receive load-balancer traffic (kube-proxy's `NodeEligible`): not being
/// deleted and not tainted [`TO_BE_DELETED_TAINT`].
pub fn node_eligible<'a>(
    being_deleted: bool,
    mut taint_keys: impl Iterator<Item = &'a str>,
) -> bool {
    !being_deleted && !taint_keys.any(|k| k == TO_BE_DELETED_TAINT)
}

/// The shared proxy health state. All methods take `&self`; the lock inside is taken only by
/// the control plane (never by a worker), briefly.
pub struct ProxyHealth {
    publisher: TablePublisher,
    timeout: Duration,
    metrics: SyncMetrics,
    state: Mutex<State>,
}

#[derive(Debug, Clone)]
struct State {
    node_eligible: bool,
    /// The oldest change learnt of and not yet published.
    queued_since: Option<SystemTime>,
    /// The oldest change published (or learnt of) and not yet run by every worker.
    pending_since: Option<SystemTime>,
    /// When the newest generation was published, and how long its build took.
    published_at: Option<SystemTime>,
    build: Duration,
    /// The newest generation this state knows was published.
    generation: u64,
    /// When every worker was last seen running the newest generation.
    last_updated: Option<SystemTime>,
    /// Each worker's last heartbeat count and when it was first seen at that count.
    beats: Vec<(u64, SystemTime)>,
    /// The stalled workers last logged.
    stalled: Vec<usize>,
}

/// What [`ProxyHealth::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// No change has waited longer than the timeout (node eligibility not included: the
    /// `serviceProxyHealthy` of health checks and `/livez`).
    pub healthy: bool,
    pub node_eligible: bool,
    /// When every worker last ran the newest tables (`None`: never).
    pub last_updated: Option<SystemTime>,
    /// Workers whose heartbeat has not moved for the timeout (stuck or dead): the proxy is
    /// unhealthy while there is one, changes pending or not.
    pub stalled: Vec<usize>,
    pub current_time: SystemTime,
    /// The newest published generation, and the one each worker runs.
    pub generation: u64,
    pub applied: Vec<u64>,
}

impl ProxyHealth {
    /// The health of a proxy whose workers read from `publisher`; the tables published now are
    /// taken as in effect at `now` (they were built before the workers started).
    pub fn new(publisher: TablePublisher, timeout: Duration, now: SystemTime) -> ProxyHealth {
        let generation = publisher.current().generation;
        let metrics = SyncMetrics::default();
        metrics.last_sync.set(unix_seconds(now));
        ProxyHealth {
            publisher,
            timeout,
            metrics,
            state: Mutex::new(State {
                node_eligible: true,
                queued_since: None,
                pending_since: None,
                published_at: None,
                build: Duration::ZERO,
                generation,
                last_updated: Some(now),
                beats: Vec::new(),
                stalled: Vec::new(),
            }),
        }
    }

    /// The metrics kept as the tables change and health is reported.
    pub fn metrics(&self) -> &SyncMetrics {
        &self.metrics
    }

    pub fn publisher(&self) -> &TablePublisher {
        &self.publisher
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A change that needs new tables has arrived (kube-proxy's `QueuedUpdate`); it is
    /// pending until a table holding it runs in every worker.
    pub fn queued_update(&self, now: SystemTime) {
        let mut st = self.state();
        st.queued_since.get_or_insert(now);
        self.metrics.last_queued.set(unix_seconds(now));
    }

    /// Tables of `generation` were just published; building them took `build`.
    pub fn published(&self, generation: u64, build: Duration, now: SystemTime) {
        let mut st = self.state();
        let since = st.pending_since.or(st.queued_since).unwrap_or(now);
        st.pending_since = Some(since);
        st.queued_since = None;
        st.published_at = Some(now);
        st.build = build;
        st.generation = st.generation.max(generation);
    }

    /// Sets whether the node may receive load-balancer traffic (see [`node_eligible`]). The
    /// node is eligible until told otherwise, as kube-proxy's is while it starts.
    pub fn set_node_eligible(&self, eligible: bool) {
        self.state().node_eligible = eligible;
    }

    /// Evaluates the rule at `now`: notices new generations and workers that switched, and
    /// reports.
    pub fn check(&self, now: SystemTime) -> HealthReport {
        let published = self.publisher.current().generation;
        let applied = self.publisher.applied();
        let beats = self.publisher.heartbeats();
        let mut st = self.state();
        // A worker polls its timers every 10 ms; one whose count has not moved for the timeout
        // is stuck, though no change is waiting for it.
        if st.beats.len() != beats.len() {
            st.beats = beats.iter().map(|&b| (b, now)).collect();
        }
        let mut stalled = Vec::new();
        for (w, (&b, seen)) in beats.iter().zip(st.beats.iter_mut()).enumerate() {
            if seen.0 != b {
                *seen = (b, now);
            } else if now.duration_since(seen.1).unwrap_or_default() >= self.timeout {
                stalled.push(w);
            }
        }
        if stalled != st.stalled {
            if stalled.is_empty() {
                tracing::info!("every worker polls again");
            } else {
                tracing::error!(
                    workers = %stalled
                        .iter()
                        .map(|w| w.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    timeout_secs = self.timeout.as_secs(),
                    "workers stopped polling; the proxy reports unhealthy"
                );
            }
            st.stalled = stalled.clone();
        }
        if published > st.generation {
            // Published without `published()`: pending from now on.
            let since = st.pending_since.or(st.queued_since).unwrap_or(now);
            st.pending_since = Some(since);
            st.queued_since = None;
            st.published_at.get_or_insert(now);
            st.generation = published;
        }
        let everywhere = applied.iter().all(|&g| g >= st.generation);
        if everywhere {
            if let Some(since) = st.pending_since.take() {
                let at = st.published_at.take().unwrap_or(since);
                let apply = now.duration_since(at).unwrap_or_default();
                self.metrics.apply_duration.observe(apply.as_secs_f64());
                self.metrics
                    .sync_duration
                    .observe((st.build + apply).as_secs_f64());
                self.metrics.last_sync.set(unix_seconds(now));
                st.build = Duration::ZERO;
                st.last_updated = Some(now);
            }
        }
        let oldest = match (st.pending_since, st.queued_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let late =
            oldest.is_some_and(|t| now.duration_since(t).unwrap_or_default() >= self.timeout);
        HealthReport {
            healthy: !late && stalled.is_empty(),
            node_eligible: st.node_eligible,
            last_updated: st.last_updated,
            stalled,
            current_time: now,
            generation: st.generation,
            applied,
        }
    }

    /// The proxy health server (port 10256): `/healthz` and `/livez`, any method; other paths
    /// 404. Answers are counted in the metrics by status code.
    pub fn answer(&self, path: &str, now: SystemTime) -> Response {
        let livez = match path {
            "/healthz" => false,
            "/livez" => true,
            _ => return Response::not_found(),
        };
        let r = proxy_health_response(&self.check(now), livez);
        self.metrics.count_answer(livez, r.status);
        r
    }
}

/// The bytes answering `request` on health-check port `port`, from the tables published now and
/// the proxy's health at `now`; `None` when the port is no Service's (the connection is closed
/// without an answer, as kube-proxy's handler for a health check being closed writes none).
pub fn answer_health_check(
    health: &ProxyHealth,
    port: u16,
    request: &Request,
    now: SystemTime,
) -> Option<Vec<u8>> {
    let tables = health.publisher().current();
    let check = tables.health.lookup(port)?;
    let healthy = health.check(now).healthy;
    Some(service_health_response(check, healthy).encode(now, request.is_head()))
}

/// kube-proxy's answer to `/healthz` (`livez` false) or `/livez`: 200 when healthy (for
/// `/healthz`, also only while the node is eligible), else 503; its JSON body, with
/// `lastUpdated` the current time when healthy (kube-proxy's compatibility rule) and the real
/// time of the last sync in `status.IPv4` (one status for both families: one sync builds both
/// tables).
pub fn proxy_health_response(r: &HealthReport, livez: bool) -> Response {
    let healthy = if livez {
        r.healthy
    } else {
        r.healthy && r.node_eligible
    };
    let now = rfc3339_nano(Some(r.current_time));
    let last = if healthy {
        now.clone()
    } else {
        rfc3339_nano(r.last_updated)
    };
    let mut body = format!("{{\"lastUpdated\":\"{last}\",\"currentTime\":\"{now}\"");
    if !livez {
        body.push_str(&format!(",\"nodeEligible\":{}", r.node_eligible));
    }
    body.push_str(&format!(",\"healthy\":{}", r.healthy));
    if r.last_updated.is_some() {
        body.push_str(&format!(
            ",\"status\":{{\"IPv4\":{{\"lastUpdated\":\"{}\",\"healthy\":{}}}}}",
            rfc3339_nano(r.last_updated),
            r.healthy
        ));
    }
    body.push('}');
    Response::new(if healthy { 200 } else { 503 }, JSON, body)
}

/// kube-proxy's answer on a Service's `healthCheckNodePort`, whatever the path and method: 200
/// when the node has a ready endpoint of the Service and the proxy is healthy, else 503; the
/// local endpoint count in `X-Load-Balancing-Endpoint-Weight` and in the JSON body, which is
/// kube-proxy's byte for byte (tab-indented, no final newline).
pub fn service_health_response(check: &HealthCheck, proxy_healthy: bool) -> Response {
    let n = check.local_endpoints;
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {n},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        json_string(&check.namespace),
        json_string(&check.name)
    );
    let status = if n != 0 && proxy_healthy { 200 } else { 503 };
    Response::new(status, JSON, body).header("X-Load-Balancing-Endpoint-Weight", n.to_string())
}

#[cfg(test)]
mod test {
    use super::*;
    use dataplane::tables::Tables;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_441_700 + secs)
    }

    fn check(n: u32) -> HealthCheck {
        HealthCheck {
            namespace: "default".into(),
            name: "web".into(),
            port: 32000,
            local_endpoints: n,
        }
    }

    #[test]
    fn test_service_health_answer_is_kube_proxys() {
        let date = at(0);
        let ok = service_health_response(&check(2), true).encode(date, false);
        assert_eq!(
            String::from_utf8(ok).unwrap(),
            "HTTP/1.1 200 OK\r\n\
             Content-Type: application/json\r\n\
             X-Content-Type-Options: nosniff\r\n\
             X-Load-Balancing-Endpoint-Weight: 2\r\n\
             Date: Mon, 23 Nov 2026 13:48:20 GMT\r\n\
             Content-Length: 114\r\n\
             Connection: close\r\n\
             \r\n\
             {\n\
             \t\"service\": {\n\
             \t\t\"namespace\": \"default\",\n\
             \t\t\"name\": \"web\"\n\
             \t},\n\
             \t\"localEndpoints\": 2,\n\
             \t\"serviceProxyHealthy\": true\n\
             }"
        );
        // No local endpoint: 503, weight 0.
        let none = service_health_response(&check(0), true);
        assert_eq!(none.status, 503);
        assert_eq!(
            none.headers,
            vec![("X-Load-Balancing-Endpoint-Weight", "0".to_string())]
        );
        assert!(String::from_utf8(none.body)
            .unwrap()
            .ends_with("\t\"localEndpoints\": 0,\n\t\"serviceProxyHealthy\": true\n}"));
        // Local endpoints but the proxy unhealthy: 503 too, the count still reported.
        let sick = service_health_response(&check(3), false);
        assert_eq!(sick.status, 503);
        assert!(String::from_utf8(sick.body)
            .unwrap()
            .ends_with("\t\"localEndpoints\": 3,\n\t\"serviceProxyHealthy\": false\n}"));
    }

    fn report(healthy: bool, eligible: bool, last: Option<SystemTime>) -> HealthReport {
        HealthReport {
            healthy,
            node_eligible: eligible,
            last_updated: last,
            current_time: UNIX_EPOCH + Duration::new(1_795_441_759, 500_000_000),
            generation: 1,
            applied: vec![1],
            stalled: vec![],
        }
    }

    #[test]
    fn test_healthz_and_livez_answers_are_kube_proxys() {
        let last = Some(UNIX_EPOCH + Duration::new(1_795_441_700, 250_000_000));
        let r = proxy_health_response(&report(true, true, last), false);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/json");
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"lastUpdated\":\"2026-11-23T13:49:19.5Z\",\"currentTime\":\"2026-11-23T13:49:19.5Z\",\
             \"nodeEligible\":true,\"healthy\":true,\
             \"status\":{\"IPv4\":{\"lastUpdated\":\"2026-11-23T13:48:20.25Z\",\"healthy\":true}}}"
        );
        // Unhealthy: the real last update, 503.
        let r = proxy_health_response(&report(false, true, last), false);
        assert_eq!(r.status, 503);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"lastUpdated\":\"2026-11-23T13:48:20.25Z\",\"currentTime\":\"2026-11-23T13:49:19.5Z\",\
             \"nodeEligible\":true,\"healthy\":false,\
             \"status\":{\"IPv4\":{\"lastUpdated\":\"2026-11-23T13:48:20.25Z\",\"healthy\":false}}}"
        );
        // A node being deleted: /healthz 503 although the proxy is healthy; /livez 200 and
        // without nodeEligible.
        let r = proxy_health_response(&report(true, false, last), false);
        assert_eq!(r.status, 503);
        assert!(String::from_utf8(r.body)
            .unwrap()
            .contains("\"nodeEligible\":false,\"healthy\":true"));
        let r = proxy_health_response(&report(true, false, last), true);
        assert_eq!(r.status, 200);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"lastUpdated\":\"2026-11-23T13:49:19.5Z\",\"currentTime\":\"2026-11-23T13:49:19.5Z\",\
             \"healthy\":true,\
             \"status\":{\"IPv4\":{\"lastUpdated\":\"2026-11-23T13:48:20.25Z\",\"healthy\":true}}}"
        );
        // Never synced: Go's zero time, no status.
        let r = proxy_health_response(&report(false, true, None), true);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"lastUpdated\":\"0001-01-01T00:00:00Z\",\"currentTime\":\"2026-11-23T13:49:19.5Z\",\"healthy\":false}"
        );
    }

    #[test]
    fn test_node_eligibility_follows_deletion_and_the_autoscaler_taint() {
        assert!(node_eligible(false, std::iter::empty()));
        assert!(node_eligible(
            false,
            ["node.kubernetes.io/unschedulable"].into_iter()
        ));
        assert!(!node_eligible(true, std::iter::empty()));
        assert!(!node_eligible(
            false,
            ["x", TO_BE_DELETED_TAINT].into_iter()
        ));
    }

    #[test]
    fn test_stuck_worker_makes_the_proxy_unhealthy_after_the_timeout() {
        let publisher = TablePublisher::new(Tables::default());
        let mut w0 = publisher.reader();
        let mut w1 = publisher.reader();
        let timeout = Duration::from_secs(60);
        let h = ProxyHealth::new(publisher.clone(), timeout, at(0));
        // Both workers poll (their heartbeats move) throughout: worker 1 is stuck on its old
        // table only.
        let beat = |a: &dataplane::tables::TableReader, b: &dataplane::tables::TableReader| {
            a.heartbeat();
            b.heartbeat();
        };
        beat(&w0, &w1);
        let r = h.check(at(1));
        assert!(r.healthy && r.node_eligible);
        assert_eq!(r.last_updated, Some(at(0)));

        // A change arrives and is published; worker 0 switches, worker 1 is stuck.
        h.queued_update(at(10));
        let g = publisher.publish(Tables::default());
        h.published(g, Duration::from_millis(5), at(11));
        w0.refresh();
        beat(&w0, &w1);
        let r = h.check(at(12));
        assert!(r.healthy, "late only after the timeout");
        assert_eq!((r.generation, r.applied.clone()), (1, vec![1, 0]));
        beat(&w0, &w1);
        assert!(h.check(at(69)).healthy);
        // Pending since the change arrived (10 s), not since it was published.
        beat(&w0, &w1);
        let r = h.check(at(70));
        assert!(!r.healthy);
        assert_eq!(r.last_updated, Some(at(0)));
        assert_eq!(h.answer("/healthz", at(70)).status, 503);
        assert_eq!(h.answer("/livez", at(70)).status, 503);

        // The worker catches up: healthy again, and the sync counts as done now.
        w1.refresh();
        beat(&w0, &w1);
        let r = h.check(at(71));
        assert!(r.healthy);
        assert_eq!(r.last_updated, Some(at(71)));
        let text = crate::metrics::Metrics::new(h.metrics(), None).encode();
        assert!(
            text.contains("\nnodegate_table_apply_duration_seconds_count 1\n"),
            "{text}"
        );
        beat(&w0, &w1);
        assert_eq!(h.answer("/healthz", at(71)).status, 200);
        assert_eq!(h.answer("/other", at(71)).status, 404);

        // A queued change that is never published is late too (the sync is stuck).
        h.queued_update(at(100));
        beat(&w0, &w1);
        assert!(h.check(at(159)).healthy);
        beat(&w0, &w1);
        assert!(!h.check(at(160)).healthy);
        let g = publisher.publish(Tables::default());
        h.published(g, Duration::ZERO, at(161));
        beat(&w0, &w1);
        assert!(!h.check(at(161)).healthy, "not yet in every worker");
        w0.refresh();
        w1.refresh();
        beat(&w0, &w1);
        assert!(h.check(at(162)).healthy);
    }

    #[test]
    fn test_publishing_behind_its_back_is_noticed() {
        let publisher = TablePublisher::new(Tables::default());
        let stuck = publisher.reader();
        let h = ProxyHealth::new(publisher.clone(), Duration::from_secs(60), at(0));
        publisher.publish(Tables::default());
        stuck.heartbeat();
        assert!(h.check(at(5)).healthy);
        stuck.heartbeat();
        assert!(h.check(at(64)).healthy);
        stuck.heartbeat();
        let r = h.check(at(65));
        assert!(!r.healthy, "pending since first seen at 5 s");
        assert!(r.stalled.is_empty(), "late, not stalled");
    }

    #[test]
    fn test_ineligible_node_fails_healthz_only() {
        let publisher = TablePublisher::new(Tables::default());
        let h = ProxyHealth::new(publisher, Duration::from_secs(60), at(0));
        h.set_node_eligible(false);
        let r = h.check(at(1));
        assert!(r.healthy && !r.node_eligible);
        assert_eq!(h.answer("/healthz", at(1)).status, 503);
        assert_eq!(h.answer("/livez", at(1)).status, 200);
        h.set_node_eligible(true);
        assert_eq!(h.answer("/healthz", at(2)).status, 200);
    }

    #[test]
    fn test_idle_proxy_stays_healthy_past_the_timeout() {
        // Nothing queued, workers polling: healthy at any age (the 60 s bug was an update that
        // changed nothing being queued).
        let publisher = TablePublisher::new(Tables::default());
        let w = publisher.reader();
        let h = ProxyHealth::new(publisher.clone(), Duration::from_secs(2), at(0));
        for t in (0..600).step_by(1) {
            w.heartbeat();
            let r = h.check(at(t));
            assert!(r.healthy, "at {t} s");
            assert_eq!(h.answer("/healthz", at(t)).status, 200);
            assert_eq!(h.answer("/livez", at(t)).status, 200);
        }
    }

    #[test]
    fn test_a_worker_that_stops_polling_fails_the_proxy_with_nothing_pending() {
        let publisher = TablePublisher::new(Tables::default());
        let (w0, w1) = (publisher.reader(), publisher.reader());
        let h = ProxyHealth::new(publisher.clone(), Duration::from_secs(10), at(0));
        for t in 0..10 {
            w0.heartbeat();
            w1.heartbeat();
            assert!(h.check(at(t)).healthy);
        }
        // Worker 1 stops (its thread is stuck); worker 0 goes on.
        for t in 10..19 {
            w0.heartbeat();
            assert!(h.check(at(t)).healthy, "not yet at {t} s");
        }
        w0.heartbeat();
        let r = h.check(at(19));
        assert!(!r.healthy);
        assert_eq!(r.stalled, vec![1]);
        assert_eq!(h.answer("/livez", at(19)).status, 503);
        // It polls again: healthy at once.
        w0.heartbeat();
        w1.heartbeat();
        let r = h.check(at(20));
        assert!(r.healthy && r.stalled.is_empty());
    }
}
