//! A worker's counters as other threads see them while it runs (the metrics server).
//!
//! A worker counts in plain integers that only it touches ([`WorkerStats`]). Every
//! [`MIRROR_PERIOD`] of data-plane time, from its timers and never per frame, it copies them
//! into its [`StatsMirror`]: one relaxed atomic store per counter, no lock, no allocation. A
//! reader sees each counter at most one period old; counters are copied one by one, so two of
//! them may come from consecutive copies.

use crate::conntrack::CtStats;
use crate::drop::DropReason;
use crate::pipeline::WorkerStats;
use core::time::Duration;
use std::sync::atomic::{AtomicU64, Ordering};

/// How often a worker copies its counters into its mirror.
pub const MIRROR_PERIOD: Duration = Duration::from_millis(100);

/// Counters that are not per port or per drop reason, in mirror order.
const FIXED: usize = 16;
/// Per-port counters: rx, tx, punted, from_host.
const PER_PORT: usize = 4;

/// One worker's counters, readable from any thread.
#[derive(Debug)]
pub struct StatsMirror {
    ports: usize,
    cells: Box<[AtomicU64]>,
}

/// What a mirror held when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredStats {
    pub stats: WorkerStats,
    /// Flows in the worker's table.
    pub flows: u64,
    pub flow_stats: CtStats,
    /// The table generation the worker runs.
    pub generation: u64,
    /// How many times the worker has copied its counters (0: never yet).
    pub copies: u64,
}

impl StatsMirror {
    /// A mirror of a worker with `ports` ports, all zero.
    pub fn new(ports: usize) -> StatsMirror {
        let len = FIXED + DropReason::COUNT + PER_PORT * ports;
        StatsMirror {
            ports,
            cells: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn ports(&self) -> usize {
        self.ports
    }

    /// Copies the worker's counters in (the worker's side).
    pub fn store(&self, s: &WorkerStats, flows: usize, ct: CtStats, generation: u64) {
        let fixed = [
            s.handoff_out,
            s.handoff_in,
            s.arp_replies,
            s.arp_requests,
            s.icmp_sent,
            s.tcp_resets_sent,
            s.nd_solicitations,
            s.nd_advertisements,
            flows as u64,
            ct.created,
            ct.expired,
            ct.refused_full,
            generation,
            self.cells[13].load(Ordering::Relaxed).wrapping_add(1),
            ct.early_dropped,
            ct.snat_reclaimed,
        ];
        let mut cells = self.cells.iter();
        for v in fixed.iter().chain(s.drops.iter()) {
            if let Some(c) = cells.next() {
                c.store(*v, Ordering::Relaxed);
            }
        }
        for list in [&s.rx, &s.tx, &s.punted, &s.from_host] {
            for i in 0..self.ports {
                if let Some(c) = cells.next() {
                    c.store(list.get(i).copied().unwrap_or(0), Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads the counters (any thread).
    pub fn load(&self) -> MirroredStats {
        let get = |i: usize| self.cells[i].load(Ordering::Relaxed);
        let mut stats = WorkerStats::new(self.ports);
        stats.handoff_out = get(0);
        stats.handoff_in = get(1);
        stats.arp_replies = get(2);
        stats.arp_requests = get(3);
        stats.icmp_sent = get(4);
        stats.tcp_resets_sent = get(5);
        stats.nd_solicitations = get(6);
        stats.nd_advertisements = get(7);
        for (r, d) in stats.drops.iter_mut().enumerate() {
            *d = get(FIXED + r);
        }
        let base = FIXED + DropReason::COUNT;
        for (k, list) in [
            &mut stats.rx,
            &mut stats.tx,
            &mut stats.punted,
            &mut stats.from_host,
        ]
        .into_iter()
        .enumerate()
        {
            for (i, v) in list.iter_mut().enumerate() {
                *v = get(base + k * self.ports + i);
            }
        }
        MirroredStats {
            stats,
            flows: get(8),
            flow_stats: CtStats {
                created: get(9),
                expired: get(10),
                refused_full: get(11),
                early_dropped: get(14),
                snat_reclaimed: get(15),
            },
            generation: get(12),
            copies: get(13),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_mirror_round_trip() {
        let m = StatsMirror::new(2);
        assert_eq!(m.load().copies, 0);
        let mut s = WorkerStats::new(2);
        s.rx = vec![5, 6];
        s.tx = vec![7, 8];
        s.punted = vec![1, 0];
        s.from_host = vec![0, 2];
        s.drops[DropReason::TxFull as usize] = 3;
        s.handoff_in = 4;
        s.icmp_sent = 9;
        let ct = CtStats {
            created: 10,
            expired: 11,
            refused_full: 12,
            early_dropped: 13,
            snat_reclaimed: 14,
        };
        m.store(&s, 42, ct, 3);
        m.store(&s, 42, ct, 3);
        let got = m.load();
        assert_eq!(got.stats, s);
        assert_eq!(got.flows, 42);
        assert_eq!(got.flow_stats, ct);
        assert_eq!((got.generation, got.copies), (3, 2));
    }
}
