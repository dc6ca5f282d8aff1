//! `/metrics` in the Prometheus (OpenMetrics) text format, with kube-proxy's metric names where
//! kube-proxy has one, and what the data plane counts.
//!
//! Two kinds of metric:
//!
//! - [`SyncMetrics`]: kept by the control plane as things happen (table syncs, health checks
//!   answered): `kubeproxy_sync_proxy_rules_duration_seconds`,
//!   `kubeproxy_sync_proxy_rules_last_timestamp_seconds`,
//!   `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds`,
//!   `kubeproxy_network_programming_duration_seconds`, `kubeproxy_proxy_healthz_total`,
//!   `kubeproxy_proxy_livez_total`, and `nodegate_table_apply_duration_seconds`.
//! - [`DataPlaneCollector`]: read when scraped, from the workers' counter mirrors
//!   (`dataplane::mirror`, at most 100 ms old), the host stack's queues and the published
//!   tables: `nodegate_port_*`, `nodegate_worker_*`, `nodegate_flows`, `nodegate_table_*`,
//!   `nodegate_host_stack_*`, `nodegate_health_check_local_endpoints`.
//!
//! Nothing here touches a worker: a scrape reads atomics the workers write from their timers.

use crate::http::{Response, TEXT};
use dataplane::drop::DropReason;
use dataplane::hoststack::StackQueues;
use dataplane::mirror::{MirroredStats, StatsMirror};
use dataplane::tables::TablePublisher;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Content-Type` of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What `/proxyMode` answers (kube-proxy answers `iptables`, `ipvs` or `nftables`).
pub const PROXY_MODE: &str = "nodegate";

type Labels = Vec<(String, String)>;

/// The metrics the control plane keeps itself; cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct SyncMetrics {
    /// `kubeproxy_sync_proxy_rules_duration_seconds`: building a table and having every worker
    /// switch to it.
    pub sync_duration: Histogram,
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`: when every worker last ran the
    /// newest table.
    pub last_sync: Gauge<f64, AtomicU64>,
    /// `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds`: when a change last arrived.
    pub last_queued: Gauge<f64, AtomicU64>,
    /// `kubeproxy_network_programming_duration_seconds`: from an endpoint's change in the
    /// cluster (its slice's `endpoints.kubernetes.io/last-change-trigger-time`) to every worker
    /// forwarding with it; observed by the sync side.
    pub network_programming: Histogram,
    /// `nodegate_table_apply_duration_seconds`: from publishing a table to every worker running
    /// it.
    pub apply_duration: Histogram,
    /// `kubeproxy_proxy_healthz_total{code}`.
    pub healthz: Family<Labels, Counter>,
    /// `kubeproxy_proxy_livez_total{code}`.
    pub livez: Family<Labels, Counter>,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        // kube-proxy's buckets: 0.25 s, 0.5 s, 1 s ... 59 s, 60 s ... 115 s, 120 s ... 300 s.
        let programming: Vec<f64> = linear_buckets(0.25, 0.25, 2)
            .chain(linear_buckets(1.0, 1.0, 59))
            .chain(linear_buckets(60.0, 5.0, 12))
            .chain(linear_buckets(120.0, 30.0, 7))
            .collect();
        SyncMetrics {
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            last_sync: Gauge::default(),
            last_queued: Gauge::default(),
            network_programming: Histogram::new(programming),
            apply_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            healthz: Family::default(),
            livez: Family::default(),
        }
    }
}

impl SyncMetrics {
    /// Counts an answer of `/healthz` (`livez` false) or `/livez` by status code.
    pub fn count_answer(&self, livez: bool, status: u16) {
        let family = if livez { &self.livez } else { &self.healthz };
        family
            .get_or_create(&vec![("code".to_string(), status.to_string())])
            .inc();
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds: building the tables and every worker switching to them",
            self.sync_duration.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced (every worker runs the newest tables)",
            self.last_sync.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            self.last_queued.clone(),
        );
        r.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            self.network_programming.clone(),
        );
        r.register(
            "nodegate_table_apply_duration_seconds",
            "From publishing tables to every worker forwarding with them, in seconds",
            self.apply_duration.clone(),
        );
        r.register(
            "kubeproxy_proxy_healthz",
            "Cumulative proxy healthz HTTP status",
            self.healthz.clone(),
        );
        r.register(
            "kubeproxy_proxy_livez",
            "Cumulative proxy livez HTTP status",
            self.livez.clone(),
        );
    }
}

/// Seconds since the Unix epoch, for timestamp gauges.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// The data plane's counters, read on each scrape.
pub struct DataPlaneCollector {
    publisher: TablePublisher,
    workers: Vec<Arc<StatsMirror>>,
    stack: Option<Arc<StackQueues>>,
}

impl std::fmt::Debug for DataPlaneCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlaneCollector")
            .field("workers", &self.workers.len())
            .field("stack", &self.stack.is_some())
            .finish()
    }
}

impl DataPlaneCollector {
    /// A collector over the workers' mirrors (in worker order) and the host stack's queues.
    pub fn new(
        publisher: TablePublisher,
        workers: Vec<Arc<StatsMirror>>,
        stack: Option<Arc<StackQueues>>,
    ) -> DataPlaneCollector {
        DataPlaneCollector {
            publisher,
            workers,
            stack,
        }
    }
}

/// One metric family: name, help, type, and its samples (labels and value).
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        value.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

impl Collector for DataPlaneCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tables = self.publisher.current();
        let workers: Vec<MirroredStats> = self.workers.iter().map(|m| m.load()).collect();
        let wl = |i: usize| vec![("worker", i.to_string())];

        // Per data port, summed over the workers.
        let port = |pick: fn(&MirroredStats) -> &Vec<u64>| {
            tables
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let n = workers
                        .iter()
                        .map(|w| pick(w).get(i).copied().unwrap_or(0))
                        .sum();
                    (vec![("port", p.name.clone())], counter(n))
                })
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "nodegate_port_rx_frames",
            "Frames received on each data port",
            MetricType::Counter,
            port(|w| &w.stats.rx),
        )?;
        family(
            &mut enc,
            "nodegate_port_tx_frames",
            "Frames transmitted on each data port (the kernel's from its host_interface included)",
            MetricType::Counter,
            port(|w| &w.stats.tx),
        )?;
        family(
            &mut enc,
            "nodegate_port_punted_frames",
            "Frames of each data port handed to the node's kernel through its host_interface",
            MetricType::Counter,
            port(|w| &w.stats.punted),
        )?;
        family(
            &mut enc,
            "nodegate_port_from_host_frames",
            "Frames the node's kernel sent on each data port's host_interface",
            MetricType::Counter,
            port(|w| &w.stats.from_host),
        )?;

        // Per worker.
        let per_worker = |f: &dyn Fn(&MirroredStats) -> u64| {
            workers
                .iter()
                .enumerate()
                .map(|(i, w)| (wl(i), counter(f(w))))
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "nodegate_worker_rx_frames",
            "Frames each worker received, all its ports",
            MetricType::Counter,
            per_worker(&|w| w.stats.rx.iter().sum()),
        )?;
        family(
            &mut enc,
            "nodegate_worker_tx_frames",
            "Frames each worker transmitted, all its ports",
            MetricType::Counter,
            per_worker(&|w| w.stats.tx.iter().sum()),
        )?;
        let drops = workers.iter().enumerate().flat_map(|(i, w)| {
            DropReason::ALL.iter().map(move |r| {
                (
                    vec![
                        ("worker", i.to_string()),
                        ("stage", r.stage().name().to_string()),
                        ("reason", r.name().to_string()),
                    ],
                    counter(w.stats.drop_count(*r)),
                )
            })
        });
        family(
            &mut enc,
            "nodegate_worker_dropped_frames",
            "Frames each worker dropped, by the stage that dropped them and the reason (dataplane/src/drop.rs)",
            MetricType::Counter,
            drops,
        )?;
        family(
            &mut enc,
            "nodegate_worker_handoff_in_frames",
            "Frames each worker took over from another worker (flow owned here)",
            MetricType::Counter,
            per_worker(&|w| w.stats.handoff_in),
        )?;
        family(
            &mut enc,
            "nodegate_worker_handoff_out_frames",
            "Frames each worker handed to the worker owning their flow",
            MetricType::Counter,
            per_worker(&|w| w.stats.handoff_out),
        )?;
        let sent = workers.iter().enumerate().flat_map(|(i, w)| {
            let s = &w.stats;
            [
                ("arp-reply", s.arp_replies),
                ("arp-request", s.arp_requests),
                ("icmp", s.icmp_sent),
                ("tcp-rst", s.tcp_resets_sent),
                ("nd-solicitation", s.nd_solicitations),
                ("nd-advertisement", s.nd_advertisements),
            ]
            .map(|(kind, n)| {
                (
                    vec![("worker", i.to_string()), ("kind", kind.to_string())],
                    counter(n),
                )
            })
        });
        family(
            &mut enc,
            "nodegate_worker_generated_frames",
            "Frames each worker built and sent itself (ARP, ICMP, TCP RST, neighbour discovery)",
            MetricType::Counter,
            sent,
        )?;
        family(
            &mut enc,
            "nodegate_worker_flows",
            "Flows in each worker's table",
            MetricType::Gauge,
            workers
                .iter()
                .enumerate()
                .map(|(i, w)| (wl(i), ConstGauge::new(w.flows as i64))),
        )?;
        family(
            &mut enc,
            "nodegate_worker_flows_created",
            "Flows each worker created",
            MetricType::Counter,
            per_worker(&|w| w.flow_stats.created),
        )?;
        family(
            &mut enc,
            "nodegate_worker_flows_expired",
            "Flows each worker expired",
            MetricType::Counter,
            per_worker(&|w| w.flow_stats.expired),
        )?;
        family(
            &mut enc,
            "nodegate_worker_flows_refused",
            "New flows each worker refused because its table was full of live flows",
            MetricType::Counter,
            per_worker(&|w| w.flow_stats.refused_full),
        )?;
        family(
            &mut enc,
            "nodegate_worker_flows_early_dropped",
            "Flows that were not assured (half-open, unreplied) each worker dropped to give their slot to a new flow",
            MetricType::Counter,
            per_worker(&|w| w.flow_stats.early_dropped),
        )?;
        family(
            &mut enc,
            "nodegate_worker_snat_ports_reclaimed",
            "Flows that were not assured each worker dropped to give their SNAT port to a new flow",
            MetricType::Counter,
            per_worker(&|w| w.flow_stats.snat_reclaimed),
        )?;
        family(
            &mut enc,
            "nodegate_worker_table_generation",
            "Generation of the tables each worker forwards with",
            MetricType::Gauge,
            workers
                .iter()
                .enumerate()
                .map(|(i, w)| (wl(i), ConstGauge::new(w.generation as i64))),
        )?;

        // Node totals and tables.
        let gauge = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
            let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(m)
        };
        gauge(
            &mut enc,
            "nodegate_flows",
            "Flows in every worker's table (the flow table's size)",
            workers.iter().map(|w| w.flows as i64).sum(),
        )?;
        gauge(
            &mut enc,
            "nodegate_table_generation",
            "Generation of the newest published tables",
            tables.generation as i64,
        )?;
        gauge(
            &mut enc,
            "nodegate_service_frontends",
            "Service frontends (address, port, protocol), both address families, in the published tables",
            (tables.services.len() + tables.services6.len()) as i64,
        )?;
        family(
            &mut enc,
            "nodegate_health_check_local_endpoints",
            "Local ready endpoints each healthCheckNodePort reports",
            MetricType::Gauge,
            tables.health.iter().map(|c| {
                (
                    vec![
                        ("namespace", c.namespace.to_string()),
                        ("service", c.name.to_string()),
                        ("port", c.port.to_string()),
                    ],
                    ConstGauge::new(i64::from(c.local_endpoints)),
                )
            }),
        )?;
        if let Some(stack) = &self.stack {
            let c = stack.counters();
            let dir = |d: &str| vec![("direction", d.to_string())];
            family(
                &mut enc,
                "nodegate_host_stack_frames",
                "Frames between the workers and the host stack (in: to the stack, out: from it)",
                MetricType::Counter,
                [
                    (dir("in"), counter(c.to_stack)),
                    (dir("out"), counter(c.from_stack)),
                ],
            )?;
            family(
                &mut enc,
                "nodegate_host_stack_dropped_frames",
                "Frames dropped between the workers and the host stack because a queue was full",
                MetricType::Counter,
                [
                    (dir("in"), counter(c.to_stack_dropped)),
                    (dir("out"), counter(c.from_stack_dropped)),
                ],
            )?;
        }
        Ok(())
    }
}

/// The registry of a run: the sync metrics and the data plane's collector.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(sync: &SyncMetrics, data_plane: Option<DataPlaneCollector>) -> Metrics {
        let mut registry = Registry::default();
        sync.register(&mut registry);
        if let Some(c) = data_plane {
            registry.register_collector(Box::new(c));
        }
        Metrics { registry }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// kube-proxy's metrics server: `/metrics`, `/proxyMode`, and `/healthz` (`ok`, the
    /// process answers), any method; other paths 404.
    pub fn answer(&self, path: &str) -> Response {
        match path {
            "/metrics" => Response::new(200, OPENMETRICS, self.encode()),
            "/proxyMode" => Response::new(200, TEXT, PROXY_MODE),
            "/healthz" => Response::new(200, TEXT, "ok"),
            _ => Response::not_found(),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use dataplane::pipeline::WorkerStats;
    use dataplane::tables::{PortInfo, Tables};
    use dataplane::wire::MacAddr;

    #[test]
    fn test_metrics_text_carries_kube_proxy_and_data_plane_names() {
        let tables = Tables {
            ports: vec![PortInfo {
                name: "eth0".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                addresses: vec![],
            }],
            ..Tables::default()
        };
        let publisher = TablePublisher::new(tables);
        let mirror = Arc::new(StatsMirror::new(2));
        let mut s: WorkerStats = mirror.load().stats;
        s.rx = vec![7, 1];
        s.tx = vec![5, 0];
        s.drops[DropReason::TxFull as usize] = 2;
        mirror.store(&s, 3, Default::default(), 0);
        let stack = StackQueues::new(4);
        let sync = SyncMetrics::default();
        sync.sync_duration.observe(0.002);
        sync.count_answer(false, 200);
        sync.count_answer(true, 503);
        let m = Metrics::new(
            &sync,
            Some(DataPlaneCollector::new(
                publisher,
                vec![mirror],
                Some(stack),
            )),
        );
        let text = m.encode();
        for line in [
            "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
            "kubeproxy_sync_proxy_rules_duration_seconds_count 1",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 1",
            "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
            "# TYPE kubeproxy_network_programming_duration_seconds histogram",
            "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.25\"} 0",
            "kubeproxy_proxy_healthz_total{code=\"200\"} 1",
            "kubeproxy_proxy_livez_total{code=\"503\"} 1",
            "nodegate_port_rx_frames_total{port=\"eth0\"} 7",
            "nodegate_port_tx_frames_total{port=\"eth0\"} 5",
            "nodegate_worker_rx_frames_total{worker=\"0\"} 8",
            "nodegate_worker_dropped_frames_total{worker=\"0\",stage=\"tx\",reason=\"tx-full\"} 2",
            "nodegate_worker_dropped_frames_total{worker=\"0\",stage=\"eth-input\",reason=\"eth-malformed\"} 0",
            "nodegate_worker_flows{worker=\"0\"} 3",
            "nodegate_flows 3",
            "nodegate_table_generation 0",
            "nodegate_host_stack_frames_total{direction=\"in\"} 0",
            "nodegate_host_stack_dropped_frames_total{direction=\"out\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
        let r = m.answer("/proxyMode");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"nodegate"[..]));
        assert_eq!(r.content_type, TEXT);
        assert_eq!(m.answer("/metrics").content_type, OPENMETRICS);
        assert_eq!(m.answer("/healthz").body, b"ok");
        assert_eq!(m.answer("/metricsx").status, 404);
    }
}
