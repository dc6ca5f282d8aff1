//! What a worker is built from and what it reports: its static settings ([`WorkerConfig`]),
//! the queues between workers ([`Fabric`], [`Handoff`]) and its counters ([`WorkerStats`]).

use crate::conntrack::Timeouts;
use crate::drop::DropReason;
use crate::mbuf::Mbuf;
use crate::port::PortId;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Static settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's index, `0..workers`.
    pub id: usize,
    pub workers: usize,
    /// Flow table capacity of this worker.
    pub max_flows: usize,
    /// IPv6 flow table capacity of this worker (IPv6 Services; a flow takes two cache lines).
    pub max_flows6: usize,
    pub timeouts: Timeouts,
    /// The node's SNAT port range, split evenly between the workers.
    pub snat_ports: (u16, u16),
    pub affinity_max: usize,
    pub neighbor_max: usize,
    /// Frames held while their next hop is being resolved.
    pub hold_max: usize,
    /// ICMP errors per second this worker may send (a burst of a tenth of that is allowed).
    pub icmp_rate: u32,
    /// The node's exception path: (data port, host port) pairs. Host port ids come after the
    /// data ports' (`tables.ports.len()..`); each worker owns its own queue of every host port.
    pub host_ports: Vec<(PortId, PortId)>,
    /// The host stack's port (see [`crate::hoststack`]), numbered after the host ports; every
    /// worker has its own queue of it.
    pub stack_port: Option<PortId>,
}

impl WorkerConfig {
    pub fn new(id: usize, workers: usize) -> WorkerConfig {
        WorkerConfig {
            id,
            workers: workers.max(1),
            max_flows: 65_536,
            max_flows6: 16_384,
            timeouts: Timeouts::default(),
            snat_ports: (20000, 29999),
            affinity_max: 65_536,
            neighbor_max: 4096,
            hold_max: 256,
            icmp_rate: 1000,
            host_ports: Vec::new(),
            stack_port: None,
        }
    }

    /// The slice of the SNAT range worker `w` allocates from.
    pub(super) fn snat_chunk(&self, w: usize) -> (u16, u16) {
        let (lo, hi) = (u32::from(self.snat_ports.0), u32::from(self.snat_ports.1));
        let n = self.workers as u32;
        let size = ((hi - lo + 1) / n).max(1);
        let start = lo + size * w as u32;
        let end = if w + 1 == self.workers {
            hi
        } else {
            start + size - 1
        };
        (start.min(hi) as u16, end.min(hi) as u16)
    }

    /// The worker that allocated SNAT port `port`, if it is in the range.
    pub(super) fn snat_owner(&self, port: u16) -> Option<usize> {
        let (lo, hi) = self.snat_ports;
        if port < lo || port > hi {
            return None;
        }
        let size = ((u32::from(hi) - u32::from(lo) + 1) / self.workers as u32).max(1);
        Some((((u32::from(port) - u32::from(lo)) / size) as usize).min(self.workers - 1))
    }
}

/// A frame moved from one worker to another.
pub struct Handoff {
    pub m: Mbuf,
    pub port: PortId,
    /// A copy of an ARP frame sent to every worker so each neighbour cache learns; the
    /// receiving worker only learns from it.
    pub learn_only: bool,
    /// A TCP or UDP fragment its datagram's home worker matched to a flow: the flow's ports
    /// (a fragment after the first carries none). See [`crate::frag`].
    pub fragment_ports: Option<(u16, u16)>,
}

/// The handoff queues of all workers: one bounded multi-producer queue into each worker.
pub struct Fabric {
    pub(super) queues: Vec<ArrayQueue<Handoff>>,
}

impl Fabric {
    pub fn new(workers: usize, depth: usize) -> Arc<Fabric> {
        Arc::new(Fabric {
            queues: (0..workers.max(1))
                .map(|_| ArrayQueue::new(depth.max(1)))
                .collect(),
        })
    }

    /// Frames waiting for any worker.
    pub fn pending(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }
}

/// Counters of one worker: plain integers, only this worker writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Frames received per port.
    pub rx: Vec<u64>,
    /// Frames transmitted per port.
    pub tx: Vec<u64>,
    /// Frames dropped per [`DropReason`] (index by `reason as usize`).
    pub drops: [u64; DropReason::COUNT],
    pub handoff_out: u64,
    pub handoff_in: u64,
    pub arp_replies: u64,
    pub arp_requests: u64,
    pub icmp_sent: u64,
    pub tcp_resets_sent: u64,
    /// IPv6 neighbour solicitations and advertisements sent.
    pub nd_solicitations: u64,
    pub nd_advertisements: u64,
    /// UDP flows removed because the tables no longer offer their translation (the endpoint
    /// left the Service, or the Service went away): kube-proxy's conntrack clean-up.
    pub udp_flows_flushed: u64,
    /// Later fragments of a TCP or UDP datagram whose first fragment was not seen (out of order,
    /// or more than `frag::FRAG_TIMEOUT` late): handled as packets without ports.
    pub fragments_unmatched: u64,
    /// Frames handed to the kernel through the host port, per data port they arrived on.
    pub punted: Vec<u64>,
    /// Frames the kernel sent on the host port, queued on the data port, per data port.
    pub from_host: Vec<u64>,
}

impl WorkerStats {
    pub(crate) fn new(ports: usize) -> WorkerStats {
        WorkerStats {
            rx: vec![0; ports],
            tx: vec![0; ports],
            drops: [0; DropReason::COUNT],
            handoff_out: 0,
            handoff_in: 0,
            arp_replies: 0,
            arp_requests: 0,
            icmp_sent: 0,
            tcp_resets_sent: 0,
            nd_solicitations: 0,
            nd_advertisements: 0,
            udp_flows_flushed: 0,
            fragments_unmatched: 0,
            punted: vec![0; ports],
            from_host: vec![0; ports],
        }
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}
