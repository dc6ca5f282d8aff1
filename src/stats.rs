//! Counters gathered from the workers: the `--stats-json` file and the summary `run` prints.
//! The schema is documented in `docs/configuration.md`.

use dataplane::drop::DropReason;
use dataplane::pipeline::Worker;
use dataplane::tables::Tables;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortStats {
    pub name: String,
    pub rx: u64,
    pub tx: u64,
    /// Frames handed to the kernel through the port's `host_interface` (0 without one).
    pub punted: u64,
    /// Frames the kernel sent on the port's `host_interface`, queued to leave by the port.
    pub from_host: u64,
    /// The port driver's own counters, summed over the workers' queues (live runs; see
    /// docs/configuration.md).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub driver: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkerReport {
    pub id: usize,
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
    /// Every drop reason, zero or not, so the schema does not depend on the traffic.
    pub drops: BTreeMap<&'static str, u64>,
    pub flows: usize,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub flows_refused_full: u64,
    /// Flows that were not assured (half-open, unreplied), dropped to give their slot to a new
    /// flow in a full table.
    pub flows_early_dropped: u64,
    /// Flows that were not assured, dropped to give their SNAT port to a new flow.
    pub snat_ports_reclaimed: u64,
    pub handoff_in: u64,
    pub handoff_out: u64,
    pub arp_replies: u64,
    pub arp_requests: u64,
    pub icmp_sent: u64,
    pub tcp_resets_sent: u64,
    pub nd_solicitations: u64,
    pub nd_advertisements: u64,
    /// UDP flows removed because their endpoint left (kube-proxy's conntrack clean-up).
    pub udp_flows_flushed: u64,
    /// Later IPv4 fragments whose first fragment was not seen (handled as packets without
    /// ports).
    pub fragments_unmatched: u64,
    /// Frames handed to the kernel (exception path), all ports.
    pub punted: u64,
    /// Frames from the kernel sent out, all ports.
    pub from_host: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableReport {
    pub generation: u64,
    /// Frontends of both address families.
    pub frontends: usize,
    /// Of which IPv6.
    pub frontends6: usize,
    pub routes: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    pub workers: Vec<WorkerReport>,
    pub total: WorkerReport,
    pub tables: TableReport,
}

impl Stats {
    pub fn gather(workers: &[Worker], tables: &Tables) -> Stats {
        let mut ports: Vec<PortStats> = tables
            .ports
            .iter()
            .map(|p| PortStats {
                name: p.name.clone(),
                rx: 0,
                tx: 0,
                punted: 0,
                from_host: 0,
                driver: Default::default(),
            })
            .collect();
        let mut reports = Vec::new();
        for w in workers {
            let s = w.stats();
            for (i, p) in ports.iter_mut().enumerate() {
                p.rx += s.rx.get(i).copied().unwrap_or(0);
                p.tx += s.tx.get(i).copied().unwrap_or(0);
                p.punted += s.punted.get(i).copied().unwrap_or(0);
                p.from_host += s.from_host.get(i).copied().unwrap_or(0);
            }
            // Both families' flow tables, as the live mirror counts them.
            let ct = w.flows().stats() + w.flows6().stats();
            reports.push(WorkerReport {
                id: w.id(),
                rx: s.rx.iter().sum(),
                tx: s.tx.iter().sum(),
                dropped: s.drops.iter().sum(),
                drops: DropReason::ALL
                    .iter()
                    .map(|r| (r.name(), s.drop_count(*r)))
                    .collect(),
                flows: w.flows().len() + w.flows6().len(),
                flows_created: ct.created,
                flows_expired: ct.expired,
                flows_refused_full: ct.refused_full,
                flows_early_dropped: ct.early_dropped,
                snat_ports_reclaimed: ct.snat_reclaimed,
                handoff_in: s.handoff_in,
                handoff_out: s.handoff_out,
                arp_replies: s.arp_replies,
                arp_requests: s.arp_requests,
                icmp_sent: s.icmp_sent,
                tcp_resets_sent: s.tcp_resets_sent,
                nd_solicitations: s.nd_solicitations,
                nd_advertisements: s.nd_advertisements,
                udp_flows_flushed: s.udp_flows_flushed,
                fragments_unmatched: s.fragments_unmatched,
                punted: s.punted.iter().sum(),
                from_host: s.from_host.iter().sum(),
            });
        }
        let mut total = WorkerReport {
            id: usize::MAX,
            rx: 0,
            tx: 0,
            dropped: 0,
            drops: DropReason::ALL.iter().map(|r| (r.name(), 0)).collect(),
            flows: 0,
            flows_created: 0,
            flows_expired: 0,
            flows_refused_full: 0,
            flows_early_dropped: 0,
            snat_ports_reclaimed: 0,
            handoff_in: 0,
            handoff_out: 0,
            arp_replies: 0,
            arp_requests: 0,
            icmp_sent: 0,
            tcp_resets_sent: 0,
            nd_solicitations: 0,
            nd_advertisements: 0,
            udp_flows_flushed: 0,
            fragments_unmatched: 0,
            punted: 0,
            from_host: 0,
        };
        for r in &reports {
            total.rx += r.rx;
            total.tx += r.tx;
            total.dropped += r.dropped;
            for (k, v) in &r.drops {
                *total.drops.entry(k).or_default() += v;
            }
            total.flows += r.flows;
            total.flows_created += r.flows_created;
            total.flows_expired += r.flows_expired;
            total.flows_refused_full += r.flows_refused_full;
            total.flows_early_dropped += r.flows_early_dropped;
            total.snat_ports_reclaimed += r.snat_ports_reclaimed;
            total.handoff_in += r.handoff_in;
            total.handoff_out += r.handoff_out;
            total.arp_replies += r.arp_replies;
            total.arp_requests += r.arp_requests;
            total.icmp_sent += r.icmp_sent;
            total.tcp_resets_sent += r.tcp_resets_sent;
            total.nd_solicitations += r.nd_solicitations;
            total.nd_advertisements += r.nd_advertisements;
            total.udp_flows_flushed += r.udp_flows_flushed;
            total.fragments_unmatched += r.fragments_unmatched;
            total.punted += r.punted;
            total.from_host += r.from_host;
        }
        Stats {
            ports,
            workers: reports,
            total,
            tables: TableReport {
                generation: tables.generation,
                frontends: tables.services.len() + tables.services6.len(),
                frontends6: tables.services6.len(),
                routes: tables.routes.len(),
            },
        }
    }

    /// Adds one queue's driver counters to port `port` (ports beyond the data ports, such as
    /// host interfaces, are not reported).
    pub fn add_driver_counters(&mut self, port: usize, counters: &[(&'static str, u64)]) {
        if let Some(p) = self.ports.get_mut(port) {
            for &(name, value) in counters {
                *p.driver.entry(name).or_default() += value;
            }
        }
    }

    /// A short human summary.
    pub fn summary(&self) -> String {
        let t = &self.total;
        let mut s = String::new();
        for p in &self.ports {
            s.push_str(&format!(
                "port {:<8} rx {:>8}  tx {:>8}",
                p.name, p.rx, p.tx
            ));
            if p.punted + p.from_host > 0 {
                s.push_str(&format!(
                    "  to kernel {:>8}  from kernel {:>8}",
                    p.punted, p.from_host
                ));
            }
            for (name, value) in p.driver.iter().filter(|(_, v)| **v > 0) {
                s.push_str(&format!("  {name} {value}"));
            }
            s.push('\n');
        }
        s.push_str(&format!(
            "flows: {} live, {} created, {} expired, {} refused (table full), {} dropped early and {} SNAT ports reclaimed (from half-open or unreplied flows)\n",
            t.flows,
            t.flows_created,
            t.flows_expired,
            t.flows_refused_full,
            t.flows_early_dropped,
            t.snat_ports_reclaimed
        ));
        s.push_str(&format!(
            "sent by the node: {} ARP replies, {} ARP requests, {} neighbour advertisements, \
             {} neighbour solicitations, {} ICMP, {} TCP RST\n",
            t.arp_replies,
            t.arp_requests,
            t.nd_advertisements,
            t.nd_solicitations,
            t.icmp_sent,
            t.tcp_resets_sent
        ));
        s.push_str(&format!("dropped: {}\n", t.dropped));
        for r in DropReason::ALL {
            let n = t.drops.get(r.name()).copied().unwrap_or(0);
            if n > 0 {
                s.push_str(&format!(
                    "  {:<24} {:>8}  {}\n",
                    r.name(),
                    n,
                    r.description()
                ));
            }
        }
        s
    }
}
