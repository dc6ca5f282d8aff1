//! A worker: one poll-mode loop's worth of state and the pipeline it runs over each burst.
//!
//! ```text
//!  rx burst ─► eth-input ─┬─► arp-input ──────────────────────────────► tx (reply) / learn
//!                         ├─► ip6-input ─► svc6 (IPv6 Services, see `svc6`) / ip6 routing
//!                         └─► ip4-input ─► steer ─► ct-lookup ─┬─ hit ─► nat44 ─► ip4-forward
//!                                            │                  └─ miss ─► svc-lookup
//!                               handoff ◄────┘   svc-lookup ─┬─ Balance ─► ct-create ─► nat44-dnat(+snat) ─► ip4-forward
//!                                                            ├─ Reject ─► tcp-rst / icmp-unreachable
//!                                                            ├─ Drop (policy Local, none here)
//!                                                            └─ none ─► ip4-local (echo) / ip4-forward
//!  ip4-forward ─► ttl ─► ip4-lookup ─► neighbour ─┬─► tx batch per port
//!                                                  └─► hold + ARP request
//!  ip4-local, ip6-local (not echo), ARP replies and NAs to the node ─► host-punt ─► host port
//!  host-input (what the kernel sent on a host port) ─► tx batch of the paired data port, unchanged
//!  ip4-local, TCP to a health-check port ─► stack-punt ─► stack port (the host stack)
//!  stack-input (what the host stack sends) ─► ip4-output ─► tx batch of the routed port
//! ```
//!
//! **Host ports** (the node's exception path): a data port may be paired with a host port, the
//! kernel's side of it (a TAP interface). Frames for the node that nothing here handles are
//! *punted* to it unchanged instead of dropped (`ip4-local`), and every frame read from a host
//! port leaves by its data port unchanged. Host ports are numbered after the data ports
//! ([`WorkerConfig::host_ports`]); without one a port behaves as before.
//!
//! **The stack port** ([`WorkerConfig::stack_port`], after the host ports): the node's own small
//! TCP/IP stack, which serves the Services' health checks (see [`crate::hoststack`]). TCP frames
//! to a node address on a health-check port (`Tables::health`) that no flow and no Service
//! claims go there instead of to the kernel; what the stack sends (IP packets) is routed like
//! any packet the node originates.
//!
//! Every flow is owned by exactly one worker (see `docs/architecture.md`): a frame that reaches
//! the wrong worker is handed to its owner through a lock-free queue before it touches any flow
//! state. Nothing here allocates, locks or reads a clock: buffers come from the pool, tables
//! were sized at start-up, and `now` is passed in once per burst.

mod svc6;

use crate::conntrack::{tcp_flags, CtError, FlowKey, FlowTable, Timeouts, Tuple, NO_FRONTEND};
use crate::drop::DropReason;
use crate::frag::{DatagramId, FragId, FragId6, FragTable};
use crate::hash::{addr_hash, flow_hash};
use crate::ip6::{self, Ip6Config, Ip6State, Ip6Verdict};
use crate::mbuf::{Mbuf, Pool, PoolCache};
use crate::mirror::{StatsMirror, MIRROR_PERIOD};
use crate::nat::{self, PROTO_ICMP};
use crate::nat66::FlowKey6;
use crate::neighbor::{AffinityTable, NeighborCache};
use crate::port::{Port, PortId, BURST};
use crate::route::NextHop;
use crate::service::{
    Address, BackendSet, Frontend, FrontendAction, ServiceTable, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};
use crate::tables::{TableReader, Tables};
use crate::time::Instant;
use crate::wire::{
    icmpv4, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, Icmpv4Packet, IpProtocol,
    Ipv4Packet, Ipv4Repr, MacAddr, SctpPacket, TcpPacket, UdpPacket,
};
use core::time::Duration;
use crossbeam_queue::ArrayQueue;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Length of an untagged Ethernet header: the IPv4 header starts here.
const L2: usize = 14;
/// Frames a worker's transmit batch for one port can hold before it must be flushed.
const TX_BATCH: usize = 1024;
/// Bytes of the offending packet quoted in an ICMP error (RFC 1812 §4.3.2.3: up to 576 total).
const ICMP_QUOTE_MAX: usize = 576 - 28;
/// Expired flows looked for per timer tick.
const SWEEP_BUDGET: usize = 256;
/// IPv4 datagrams whose first fragment's ports a worker remembers at once (24 bytes a slot; a
/// quarter as many IPv6 ones, 56 bytes a slot).
const FRAG_SLOTS: usize = 4096;
/// How often timers run.
const TIMER_PERIOD: Duration = Duration::from_millis(10);
/// ARP retry period and give-up time for held frames.
const ARP_RETRY: Duration = Duration::from_secs(1);
const ARP_GIVE_UP: Duration = Duration::from_secs(3);

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
    fn snat_chunk(&self, w: usize) -> (u16, u16) {
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
    fn snat_owner(&self, port: u16) -> Option<usize> {
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
    queues: Vec<ArrayQueue<Handoff>>,
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

/// What happens to a frame after classification.
enum Action {
    Tx(PortId),
    Drop(DropReason),
    /// Consumed without being an error (an ARP reply we learned from).
    Free,
    Handoff(usize),
    /// A fragment handed to the owner of the flow its ports name.
    HandoffFragment(usize, (u16, u16)),
    Hold {
        nh: Ipv4Addr,
        port: PortId,
    },
    /// host-punt: the frame goes, unchanged, to the kernel through this host port.
    Punt(PortId),
}

/// What a port is to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRole {
    /// A data port; `host` is its host port when the exception path is configured.
    Data { host: Option<PortId> },
    /// The kernel's side of data port `data`.
    Host { data: PortId },
    /// The host stack: receives frames for health-check ports, sends IP packets to be routed.
    Stack,
}

struct Held {
    nh: Ipv4Addr,
    port: PortId,
    m: Mbuf,
    since: Instant,
    asked: Instant,
}

/// The parts of an IPv4 packet the pipeline decides on.
#[derive(Clone, Copy)]
struct Ip4Meta {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    l4: usize,
    /// Any fragment (first or not).
    fragmented: bool,
    /// A fragment after the first: no L4 header.
    later_fragment: bool,
    /// The IP identification (what ties the fragments of one datagram together).
    ident: u16,
    /// A fragment whose flow ports the datagram's home worker found (`key` holds them).
    fragment_resolved: bool,
}

/// What classification found out about a frame. The first pass over a burst classifies every
/// frame and prefetches the flow-table lines it will need; the second pass decides.
#[derive(Clone, Copy)]
enum Class {
    Drop(DropReason),
    /// For the node and of no use to the data plane (IPv4 broadcast or multicast): punted to the
    /// host port, or dropped with the reason when the port has none.
    Host(DropReason),
    Arp,
    /// `fragment_ports`: a fragment its datagram's home worker matched to a flow.
    Ip6 {
        fragment_ports: Option<(u16, u16)>,
    },
    Ip4 {
        meta: Ip4Meta,
        /// The flow tuple: the packet's own, or for an ICMP error the reverse of the quote's.
        key: Option<FlowKey>,
        /// TCP flags (0 for other protocols).
        flags: u8,
        icmp_error: bool,
    },
}

/// One worker's state. See the module doc for the pipeline.
pub struct Worker {
    cfg: WorkerConfig,
    tables: TableReader,
    ct: FlowTable,
    ct6: FlowTable<FlowKey6>,
    affinity: AffinityTable,
    affinity6: AffinityTable<Ipv6Addr>,
    /// First fragments' ports, for the later fragments of their datagrams.
    frags: FragTable,
    frags6: FragTable<FragId6>,
    neigh: NeighborCache,
    held: Vec<Held>,
    ip6: Ip6State,
    /// An IPv6 frame was handled since the IPv6 counters were last merged.
    ip6_seen: bool,
    pool: PoolCache,
    tx: Vec<Vec<Mbuf>>,
    /// Indexed by port id: data port (and its host port) or host port (and its data port).
    roles: Vec<PortRole>,
    rx_burst: Vec<Mbuf>,
    fabric: Arc<Fabric>,
    snat_chunk: (u16, u16),
    /// The SNAT port search's cursor ([`FlowTable::claim_reply`]).
    snat_cursor: u32,
    stats: WorkerStats,
    /// `stats` as other threads see them, copied from the timers every `MIRROR_PERIOD`.
    mirror: Arc<StatsMirror>,
    next_mirror: Instant,
    icmp_tokens: u32,
    icmp_refill: Instant,
    next_timer: Instant,
    /// The table generation the UDP flows were last checked against, and where the check of
    /// the flow table stands (`None`: done).
    udp_checked: (u64, Option<usize>),
    /// Where the check of the IPv6 flow table stands.
    udp6_checked: Option<usize>,
    now: Instant,
}

impl Worker {
    /// A worker for `ports` ports (data ports, then the host ports of `cfg.host_ports`). Every
    /// table is allocated here, once.
    ///
    /// # Panics
    ///
    /// When a pair of `cfg.host_ports` names a port id `>= ports`, or a port twice.
    pub fn new(
        cfg: WorkerConfig,
        tables: TableReader,
        pool: Arc<Pool>,
        fabric: Arc<Fabric>,
        ports: usize,
    ) -> Worker {
        let snat_chunk = cfg.snat_chunk(cfg.id);
        let mut roles = vec![PortRole::Data { host: None }; ports];
        for &(data, host) in &cfg.host_ports {
            let (d, h) = (usize::from(data), usize::from(host));
            assert!(
                d < ports && h < ports && d != h,
                "host port pair ({data}, {host}) outside the {ports} ports"
            );
            assert!(
                roles[d] == PortRole::Data { host: None }
                    && roles[h] == PortRole::Data { host: None },
                "port {data} or {host} paired twice"
            );
            roles[d] = PortRole::Data { host: Some(host) };
            roles[h] = PortRole::Host { data };
        }
        if let Some(stack) = cfg.stack_port {
            let s = usize::from(stack);
            assert!(
                s < ports && roles[s] == PortRole::Data { host: None },
                "stack port {stack} outside the {ports} ports or paired with a data port"
            );
            roles[s] = PortRole::Stack;
        }
        Worker {
            ct: FlowTable::new(cfg.max_flows, cfg.timeouts),
            ct6: FlowTable::new(cfg.max_flows6, cfg.timeouts),
            affinity: AffinityTable::new(cfg.affinity_max),
            affinity6: AffinityTable::new(cfg.affinity_max),
            frags: FragTable::new(FRAG_SLOTS),
            frags6: FragTable::new(FRAG_SLOTS / 4),
            neigh: NeighborCache::new(cfg.neighbor_max),
            held: Vec::with_capacity(cfg.hold_max),
            ip6: Ip6State::new(Ip6Config {
                neighbor_max: cfg.neighbor_max,
                hold_max: cfg.hold_max,
                icmp_rate: cfg.icmp_rate,
            }),
            ip6_seen: false,
            pool: PoolCache::new(pool),
            tx: (0..ports).map(|_| Vec::with_capacity(TX_BATCH)).collect(),
            roles,
            rx_burst: Vec::with_capacity(BURST),
            fabric,
            snat_chunk,
            snat_cursor: 0,
            stats: WorkerStats::new(ports),
            mirror: Arc::new(StatsMirror::new(ports)),
            next_mirror: Instant::ZERO,
            icmp_tokens: (cfg.icmp_rate / 10).max(1),
            icmp_refill: Instant::ZERO,
            next_timer: Instant::ZERO,
            udp_checked: (0, None),
            udp6_checked: None,
            now: Instant::ZERO,
            tables,
            cfg,
        }
    }

    pub fn id(&self) -> usize {
        self.cfg.id
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// This worker's counters as other threads may read them while it runs (copied from the
    /// timers every [`MIRROR_PERIOD`], so at most that old).
    pub fn mirror(&self) -> Arc<StatsMirror> {
        self.mirror.clone()
    }

    pub fn flows(&self) -> &FlowTable {
        &self.ct
    }

    /// The tables this worker forwards with now.
    pub fn tables(&self) -> &Arc<Tables> {
        self.tables.get()
    }

    /// The host port paired with data port `port`, if the exception path is configured for it.
    pub fn host_port(&self, port: PortId) -> Option<PortId> {
        match self.roles.get(usize::from(port)) {
            Some(PortRole::Data { host }) => *host,
            _ => None,
        }
    }

    /// Frames waiting in this worker's transmit batches.
    pub fn tx_pending(&self) -> usize {
        self.tx.iter().map(Vec::len).sum()
    }

    /// The buffer cache, for drivers that need buffers to receive into.
    pub fn pool(&mut self) -> &mut PoolCache {
        &mut self.pool
    }

    /// One turn of a poll-mode loop: receive a burst from each port, take handed-over frames,
    /// run timers, transmit. Returns the number of frames received or taken over.
    pub fn poll(&mut self, ports: &mut [Box<dyn Port>], now: Instant) -> usize {
        let mut work = 0;
        let mut burst = core::mem::take(&mut self.rx_burst);
        for (i, p) in ports.iter_mut().enumerate() {
            let n = p.rx_burst(&mut self.pool, &mut burst, BURST);
            if n > 0 {
                work += n;
                self.process_rx(i as PortId, &mut burst, now);
            }
        }
        self.rx_burst = burst;
        work += self.poll_handoff(now);
        self.timers(now);
        // A UDP clean-up still under way is work: the loop keeps polling until it is done.
        work += usize::from(self.udp_checked.1.is_some() || self.udp6_checked.is_some());
        self.flush(ports);
        work
    }

    /// kube-proxy's UDP conntrack clean-up: after a table change, the UDP flows whose endpoint
    /// no longer serves their Service port (it left the Service or stopped serving), or whose
    /// frontend is gone (the Service was deleted or its address changed), are removed,
    /// [`UDP_CHECK_BUDGET`] flow slots per poll, so their next datagram is balanced anew
    /// instead of going to an endpoint that is not there. As in kube-proxy, a flow to an
    /// endpoint that still serves stays even when new flows would not pick it (terminating,
    /// another node under policy Local, another zone under topology hints), and a port left
    /// with no serving endpoint keeps its flows. TCP flows keep their endpoint until they end.
    fn check_udp_flows(&mut self) {
        self.tables.refresh();
        let generation = self.tables.get().generation;
        if generation != self.udp_checked.0 {
            self.udp_checked = (generation, Some(0));
            self.udp6_checked = (!self.ct6.is_empty()).then_some(0);
        }
        if let Some(from) = self.udp_checked.1 {
            let t = self.tables.get().clone();
            let (removed, next) = self.ct.remove_where_from(from, UDP_CHECK_BUDGET, |f| {
                f.orig.proto == PROTO_UDP
                    && f.frontend != NO_FRONTEND
                    && !keeps_udp_flow(
                        &t.services,
                        (f.orig.proto, f.orig.dst, f.orig.dport),
                        (f.reply.src, f.reply.sport),
                    )
            });
            self.stats.udp_flows_flushed += removed as u64;
            self.udp_checked.1 = next;
        } else if let Some(from) = self.udp6_checked {
            let t = self.tables.get().clone();
            let (removed, next) = self.check_udp_flows6(&t, from);
            self.stats.udp_flows_flushed += removed as u64;
            self.udp6_checked = next;
        }
    }

    /// Runs a received burst through the pipeline; `burst` is left empty.
    ///
    /// Frames go through in groups of [`BURST`]: first every frame of the group is classified
    /// and its flow-index bucket prefetched, then the flow slots are prefetched, then each frame
    /// is decided and rewritten — so the cache misses of a group overlap instead of queueing.
    pub fn process_rx(&mut self, port: PortId, burst: &mut Vec<Mbuf>, now: Instant) {
        match self.roles.get(usize::from(port)).copied() {
            Some(PortRole::Host { data }) => {
                if let Some(c) = self.stats.rx.get_mut(usize::from(port)) {
                    *c += burst.len() as u64;
                }
                self.host_input(data, burst);
                return;
            }
            Some(PortRole::Stack) => {
                if let Some(c) = self.stats.rx.get_mut(usize::from(port)) {
                    *c += burst.len() as u64;
                }
                self.stack_input(port, burst, now);
                return;
            }
            _ => {}
        }
        self.now = now;
        self.tables.refresh();
        let t = self.tables.get().clone();
        if let Some(c) = self.stats.rx.get_mut(usize::from(port)) {
            *c += burst.len() as u64;
        }
        let mut classes = [Class::Drop(DropReason::EthMalformed); BURST];
        let mut hashes = [0u64; BURST];
        while !burst.is_empty() {
            let n = burst.len().min(BURST);
            for (i, m) in burst[..n].iter_mut().enumerate() {
                classes[i] = self.classify(&t, m, port);
                if let Class::Ip4 { key: Some(k), .. } = &classes[i] {
                    hashes[i] = self.ct.prefetch(k);
                }
            }
            for i in 0..n {
                if let Class::Ip4 { key: Some(_), .. } = classes[i] {
                    self.ct.prefetch_slot(hashes[i]);
                }
            }
            for (i, mut m) in burst.drain(..n).enumerate() {
                let action =
                    self.decide(&t, &mut m, port, classes[i], Some(hashes[i]), false, false);
                self.apply(&t, m, port, action);
            }
        }
        self.merge_ip6_counters();
    }

    /// The kernel's frames, read from the host port of `data`: they leave by `data` unchanged,
    /// in the same transmit batch as everything else. Nothing is looked at or learned.
    fn host_input(&mut self, data: PortId, burst: &mut Vec<Mbuf>) {
        let d = usize::from(data);
        for m in burst.drain(..) {
            match self.tx.get_mut(d) {
                Some(batch) if batch.len() < TX_BATCH => {
                    batch.push(m);
                    self.stats.from_host[d] += 1;
                }
                _ => {
                    self.stats.drops[DropReason::TxFull as usize] += 1;
                    self.pool.free(m);
                }
            }
        }
    }

    /// stack-input: IP packets the host stack sends (after `STACK_L2` bytes of room for the
    /// Ethernet header) are routed like any packet the node originates. Only unicast
    /// destinations off the node are accepted.
    fn stack_input(&mut self, port: PortId, burst: &mut Vec<Mbuf>, now: Instant) {
        self.now = now;
        self.tables.refresh();
        let t = self.tables.get().clone();
        for mut m in burst.drain(..) {
            let dst = match m.get(L2..).map(Ipv4Packet::new_checked) {
                Some(Ok(ip)) => ip.dst_addr(),
                _ => {
                    self.count(DropReason::Ip4Malformed);
                    self.pool.free(m);
                    continue;
                }
            };
            let action = if dst.is_broadcast() || dst.is_multicast() || t.is_local(dst) {
                Action::Drop(DropReason::Ip4NoRoute)
            } else {
                self.ip4_output_local(&t, &mut m, dst)
            };
            self.apply(&t, m, port, action);
        }
    }

    /// host-punt: frames for the node that the data plane does not handle go to the kernel
    /// through the host port of the port they arrived on; without one, `otherwise` happens.
    #[inline]
    fn punt_or(&self, port: PortId, otherwise: Action) -> Action {
        match self.roles.get(usize::from(port)) {
            Some(PortRole::Data { host: Some(h) }) => Action::Punt(*h),
            _ => otherwise,
        }
    }

    /// Folds the IPv6 module's counters into this worker's, when it has handled anything.
    fn merge_ip6_counters(&mut self) {
        if !core::mem::take(&mut self.ip6_seen) {
            return;
        }
        let c = self.ip6.take_counters();
        for (d, n) in self.stats.drops.iter_mut().zip(c.drops) {
            *d += n;
        }
        self.stats.icmp_sent += c.icmp_sent;
        self.stats.nd_solicitations += c.ns_sent;
        self.stats.nd_advertisements += c.na_sent;
    }

    /// Processes up to one burst of frames handed over by other workers; returns how many.
    pub fn poll_handoff(&mut self, now: Instant) -> usize {
        self.now = now;
        self.tables.refresh();
        let t = self.tables.get().clone();
        let fabric = self.fabric.clone();
        let q = &fabric.queues[self.cfg.id];
        let mut n = 0;
        while n < BURST {
            let Some(h) = q.pop() else { break };
            n += 1;
            if !h.learn_only {
                self.stats.handoff_in += 1;
            }
            self.process_frame(&t, h.m, h.port, true, h.learn_only, h.fragment_ports);
        }
        self.merge_ip6_counters();
        n
    }

    /// Hands every batched frame to its port; frames a port cannot take are dropped (`tx-full`).
    pub fn flush(&mut self, ports: &mut [Box<dyn Port>]) {
        for (i, port) in ports.iter_mut().enumerate() {
            let Some(batch) = self.tx.get_mut(i) else {
                break;
            };
            if batch.is_empty() {
                continue;
            }
            let sent = port.tx_burst(&mut self.pool, batch);
            self.stats.tx[i] += sent as u64;
            for m in batch.drain(..) {
                self.stats.drops[DropReason::TxFull as usize] += 1;
                self.pool.free(m);
            }
        }
    }

    /// Periodic work: expiring flows, retrying ARP, giving up on unresolved next hops, and a
    /// slice of the UDP clean-up after a table change.
    pub fn timers(&mut self, now: Instant) {
        self.now = now;
        self.check_udp_flows();
        if now < self.next_timer {
            return;
        }
        self.next_timer = now + TIMER_PERIOD;
        // An idle worker still switches to new tables, so that "every worker runs generation N"
        // means what it says (the proxy health check waits for it).
        self.tables.refresh();
        self.tables.heartbeat();
        // A table three quarters full is swept eight times as fast, so that expired flows
        // do not pile up in front of new ones (they are also reclaimed on demand).
        let budget = |len: usize, cap: usize| {
            if len > cap / 4 * 3 {
                SWEEP_BUDGET * 8
            } else {
                SWEEP_BUDGET
            }
        };
        self.ct
            .sweep(now, budget(self.ct.len(), self.ct.capacity()));
        if !self.ct6.is_empty() {
            self.ct6
                .sweep(now, budget(self.ct6.len(), self.ct6.capacity()));
        }
        if now >= self.next_mirror {
            self.next_mirror = now + MIRROR_PERIOD;
            let (s4, s6) = (self.ct.stats(), self.ct6.stats());
            let ct = crate::conntrack::CtStats {
                created: s4.created + s6.created,
                expired: s4.expired + s6.expired,
                refused_full: s4.refused_full + s6.refused_full,
                early_dropped: s4.early_dropped + s6.early_dropped,
                snat_reclaimed: s4.snat_reclaimed + s6.snat_reclaimed,
            };
            self.mirror.store(
                &self.stats,
                self.ct.len() + self.ct6.len(),
                ct,
                self.tables.get().generation,
            );
        }
        if self.ip6.held() > 0 {
            let t = self.tables.get().clone();
            let Worker { ip6, pool, tx, .. } = self;
            ip6.timers(&t, now, pool, &mut |p, f| queue_tx(tx, p, f));
            self.ip6_seen = true;
            self.merge_ip6_counters();
        }
        if self.held.is_empty() {
            return;
        }
        let t = self.tables.get().clone();
        // (`Vec::extract_if` needs Rust 1.87; the MSRV is 1.85.)
        let mut i = 0;
        while i < self.held.len() {
            if now.saturating_since(self.held[i].since) >= ARP_GIVE_UP {
                let h = self.held.remove(i);
                self.stats.drops[DropReason::NeighTimeout as usize] += 1;
                self.pool.free(h.m);
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.held.len() {
            let (nh, port, asked) = (self.held[i].nh, self.held[i].port, self.held[i].asked);
            if now.saturating_since(asked) >= ARP_RETRY {
                for h in self.held.iter_mut().filter(|h| h.nh == nh) {
                    h.asked = now;
                }
                self.send_arp_request(&t, nh, port);
            }
            i += 1;
        }
    }

    fn count(&mut self, r: DropReason) {
        self.stats.drops[r as usize] += 1;
    }

    /// Runs one frame through the whole pipeline (frames handed over by other workers;
    /// `fragment_ports` for a fragment its datagram's home worker matched to a flow).
    fn process_frame(
        &mut self,
        t: &Tables,
        mut m: Mbuf,
        port: PortId,
        steered: bool,
        learn: bool,
        fragment_ports: Option<(u16, u16)>,
    ) {
        let mut class = self.classify(t, &mut m, port);
        if let Class::Ip6 { fragment_ports: f } = &mut class {
            *f = fragment_ports;
        }
        if let (Some((sport, dport)), Class::Ip4 { meta, key, .. }) = (fragment_ports, &mut class) {
            if meta.fragmented {
                meta.fragment_resolved = true;
                *key = Some(FlowKey {
                    src: meta.src,
                    dst: meta.dst,
                    sport,
                    dport,
                    proto: meta.proto,
                });
            }
        }
        let action = self.decide(t, &mut m, port, class, None, steered, learn);
        self.apply(t, m, port, action);
    }

    /// Carries out a decision: the frame is queued for transmission, freed, handed over or held.
    /// Always inlined: it is the per-frame tail of the burst loop, and with a third caller
    /// (stack-input) the compiler stopped inlining it there, which cost 15 instructions a frame.
    #[inline(always)]
    fn apply(&mut self, t: &Tables, m: Mbuf, port: PortId, action: Action) {
        match action {
            Action::Tx(p) => match self.tx.get_mut(usize::from(p)) {
                Some(batch) if batch.len() < TX_BATCH => batch.push(m),
                _ => {
                    self.count(DropReason::TxFull);
                    self.pool.free(m);
                }
            },
            Action::Drop(r) => {
                self.count(r);
                self.pool.free(m);
            }
            Action::Free => self.pool.free(m),
            Action::Handoff(w) | Action::HandoffFragment(w, _) => {
                let fragment_ports = match action {
                    Action::HandoffFragment(_, ports) => Some(ports),
                    _ => None,
                };
                let h = Handoff {
                    m,
                    port,
                    learn_only: false,
                    fragment_ports,
                };
                match self.fabric.queues[w].push(h) {
                    Ok(()) => self.stats.handoff_out += 1,
                    Err(h) => {
                        self.count(DropReason::HandoffFull);
                        self.pool.free(h.m);
                    }
                }
            }
            Action::Hold { nh, port } => self.hold(t, nh, port, m),
            Action::Punt(host) => match self.tx.get_mut(usize::from(host)) {
                Some(batch) if batch.len() < TX_BATCH => {
                    batch.push(m);
                    if let Some(c) = self.stats.punted.get_mut(usize::from(port)) {
                        *c += 1;
                    }
                }
                _ => {
                    self.count(DropReason::TxFull);
                    self.pool.free(m);
                }
            },
        }
    }

    // ---- eth-input -------------------------------------------------------------------------

    /// eth-input and ip4-input's parsing: validates headers and extracts the flow tuple,
    /// changing nothing but the frame's length (Ethernet padding is trimmed).
    fn classify(&self, t: &Tables, m: &mut Mbuf, port: PortId) -> Class {
        let Ok(eth) = EthernetFrame::new_checked(&m[..]) else {
            return Class::Drop(DropReason::EthMalformed);
        };
        let Some(pinfo) = t.ports.get(usize::from(port)) else {
            return Class::Drop(DropReason::EthNotForUs);
        };
        let dst = eth.dst_addr();
        if dst != pinfo.mac && !dst.is_multicast() {
            return Class::Drop(DropReason::EthNotForUs);
        }
        if eth.src_addr() == pinfo.mac {
            return Class::Drop(DropReason::EthSourceIsOurs);
        }
        match eth.ethertype() {
            EtherType::Arp => Class::Arp,
            EtherType::Ipv4 if dst == pinfo.mac => classify_ip4(t, m),
            // Broadcast or multicast IPv4: the kernel's business (DHCP, VRRP...), not ours.
            EtherType::Ipv4 => Class::Host(DropReason::Ip4Local),
            EtherType::Ipv6 => Class::Ip6 {
                fragment_ports: None,
            },
            EtherType::Vlan | EtherType::QinQ => Class::Drop(DropReason::EthVlanTagged),
            _ => Class::Drop(DropReason::EthUnknownType),
        }
    }

    /// Decides what happens to a classified frame; `hash` is the flow hash when the burst pass
    /// already computed it.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        class: Class,
        hash: Option<u64>,
        steered: bool,
        learn: bool,
    ) -> Action {
        match class {
            Class::Drop(r) => Action::Drop(r),
            Class::Host(r) => self.punt_or(port, Action::Drop(r)),
            Class::Arp => {
                if self.cfg.workers > 1 && !steered {
                    self.copy_to_other_workers(m, port);
                }
                self.arp_input(t, m, port, learn)
            }
            Class::Ip6 { fragment_ports } => {
                if self.cfg.workers > 1 && !steered && ip6::is_ndp(m) {
                    self.copy_to_other_workers(m, port);
                }
                if !learn {
                    if let Some(action) = self.ip6_flow(t, m, port, steered, fragment_ports) {
                        return action;
                    }
                }
                self.ip6_input(t, m, port, learn)
            }
            Class::Ip4 {
                meta,
                key,
                flags,
                icmp_error,
            } => {
                let (key, steered, hash) = if meta.fragmented {
                    match self.fragment_key(t, &meta, key, icmp_error, steered) {
                        // The burst's hash is of the classified tuple: a later fragment's
                        // comes from the fragment table.
                        Ok((k, steered)) => (k, steered, hash.filter(|_| k.is_some() && k == key)),
                        Err(action) => return action,
                    }
                } else {
                    (key, steered, hash)
                };
                match key {
                    // One call site: ip4_flow stays inlined into the burst loop.
                    Some(key) => {
                        self.ip4_flow(t, m, port, &meta, key, flags, icmp_error, hash, steered)
                    }
                    None => self.ip4_no_l4(t, m, port, &meta),
                }
            }
        }
    }

    fn copy_to_other_workers(&mut self, m: &Mbuf, port: PortId) {
        for w in 0..self.cfg.workers {
            if w == self.cfg.id {
                continue;
            }
            let Some(mut c) = self.pool.alloc() else {
                self.count(DropReason::NoBuffer);
                return;
            };
            c.copy_from(m);
            let h = Handoff {
                m: c,
                port,
                learn_only: true,
                fragment_ports: None,
            };
            if let Err(h) = self.fabric.queues[w].push(h) {
                self.count(DropReason::HandoffFull);
                self.pool.free(h.m);
            }
        }
    }

    // ---- arp-input -------------------------------------------------------------------------

    /// Answers requests for the node's addresses and learns neighbours, by Linux's rules
    /// (`arp_process`, `arp_accept` off): only requests and replies count; a sender is learned
    /// only when it is a unicast address on one of the port's connected prefixes, not one of
    /// the node's, with a unicast, non-zero MAC; a request for us creates its sender's entry, a
    /// reply or gratuitous ARP only refreshes an entry that exists or that nodegate asked for
    /// (a frame is held for it). So spoofed frames cannot plant or move arbitrary entries.
    fn arp_input(&mut self, t: &Tables, m: &mut Mbuf, port: PortId, learn_only: bool) -> Action {
        let repr = match ArpPacket::new_checked(&m[L2..]).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(_) => return Action::Drop(DropReason::ArpMalformed),
        };
        let request = match repr.operation {
            ArpOperation::Request => true,
            ArpOperation::Reply => false,
            // Counted once, by the worker that received it, not by every copy.
            ArpOperation::Unknown(_) if learn_only => return Action::Free,
            ArpOperation::Unknown(_) => return Action::Drop(DropReason::ArpBadOpcode),
        };
        let target = repr.target_protocol_addr;
        let sender = repr.source_protocol_addr;
        let sha = repr.source_hardware_addr;
        let for_us = t.is_local(target);
        // The MAC an answer goes to, and that would be learned.
        let mac_ok = sha.is_unicast() && sha != MacAddr([0; 6]);
        let prefixes = t
            .ports
            .get(usize::from(port))
            .map_or(&[][..], |p| &p.addresses[..]);
        // A sender no host can be: ours, a broadcast (also a prefix's), a multicast group.
        let bogus = t.is_local(sender)
            || sender.is_broadcast()
            || sender.is_multicast()
            || prefixes
                .iter()
                .any(|&(a, len)| is_subnet_broadcast(a, len, sender));
        let on_link = prefixes
            .iter()
            .any(|&(a, len)| crate::route::prefix_contains(a, len, sender));
        let sender_ok = mac_ok && !bogus && on_link && !sender.is_unspecified();
        if sender_ok {
            let waiting = self.held.iter().any(|h| h.nh == sender);
            if (request && for_us) || waiting || self.neigh.knows(sender) {
                self.neigh.learn(sender, sha, self.now);
                if waiting {
                    self.release_held(t, sender, sha);
                }
            }
        }
        if learn_only {
            return Action::Free;
        }
        if request && for_us {
            // Answered as Linux answers, also a probe (sender 0.0.0.0, RFC 5227) and a sender
            // off the port's prefixes (not learned); not a sender that cannot be addressed or
            // that claims a broadcast, multicast or the node's own address.
            if !mac_ok || bogus {
                return Action::Drop(DropReason::ArpBadSender);
            }
            let mac = t.ports[usize::from(port)].mac;
            let reply = ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: mac,
                source_protocol_addr: target,
                target_hardware_addr: sha,
                target_protocol_addr: sender,
            };
            write_eth(m, sha, mac, EtherType::Arp);
            reply.emit(&mut ArpPacket::new_unchecked(
                &mut m.buffer_mut()[L2..L2 + 28],
            ));
            m.set_len(L2 + 28);
            self.stats.arp_replies += 1;
            return Action::Tx(port);
        }
        match (request, for_us) {
            // The kernel resolves its own neighbours through the host port: it gets the replies
            // to its requests (learned from here too). Requests are answered above and never
            // punted, or the kernel would answer as well.
            (false, true) if sender_ok => self.punt_or(port, Action::Free),
            (false, true) => Action::Drop(DropReason::ArpBadSender),
            (false, false) => Action::Free,
            (true, _) => Action::Drop(DropReason::ArpNotForUs),
        }
    }

    fn send_arp_request(&mut self, t: &Tables, nh: Ipv4Addr, port: PortId) {
        let Some(pinfo) = t.ports.get(usize::from(port)) else {
            return;
        };
        let src = t
            .routes
            .lookup(nh)
            .map(|h| h.src)
            .or_else(|| t.port_address(port))
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let Some(mut m) = self.pool.alloc() else {
            self.count(DropReason::NoBuffer);
            return;
        };
        let req = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: pinfo.mac,
            source_protocol_addr: src,
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: nh,
        };
        m.set_len(L2 + 28);
        write_eth(&mut m, MacAddr::BROADCAST, pinfo.mac, EtherType::Arp);
        req.emit(&mut ArpPacket::new_unchecked(&mut m[L2..L2 + 28]));
        match self.tx.get_mut(usize::from(port)) {
            Some(batch) if batch.len() < TX_BATCH => {
                batch.push(m);
                self.stats.arp_requests += 1;
            }
            _ => {
                self.count(DropReason::TxFull);
                self.pool.free(m);
            }
        }
    }

    fn hold(&mut self, t: &Tables, nh: Ipv4Addr, port: PortId, m: Mbuf) {
        if self.held.len() >= self.cfg.hold_max {
            self.count(DropReason::NeighUnresolved);
            self.pool.free(m);
            return;
        }
        let first = !self.held.iter().any(|h| h.nh == nh);
        let asked = self
            .held
            .iter()
            .find(|h| h.nh == nh)
            .map_or(self.now, |h| h.asked);
        self.held.push(Held {
            nh,
            port,
            m,
            since: self.now,
            asked,
        });
        if first {
            self.send_arp_request(t, nh, port);
        }
    }

    fn release_held(&mut self, t: &Tables, nh: Ipv4Addr, mac: MacAddr) {
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].nh != nh {
                i += 1;
                continue;
            }
            let mut h = self.held.remove(i);
            // Tables published since the frame was held may have fewer ports.
            let Some(src) = t.ports.get(usize::from(h.port)).map(|p| p.mac) else {
                self.stats.drops[DropReason::TxFull as usize] += 1;
                self.pool.free(h.m);
                continue;
            };
            write_eth(&mut h.m, mac, src, EtherType::Ipv4);
            match self.tx.get_mut(usize::from(h.port)) {
                Some(batch) if batch.len() < TX_BATCH => batch.push(h.m),
                _ => {
                    self.stats.drops[DropReason::TxFull as usize] += 1;
                    self.pool.free(h.m);
                }
            }
        }
    }

    // ---- ip6-input -------------------------------------------------------------------------

    /// IPv6 is routed (no Service NAT): see [`crate::ip6`].
    fn ip6_input(&mut self, t: &Tables, m: &mut Mbuf, port: PortId, learn_only: bool) -> Action {
        self.ip6_seen = true;
        let Worker {
            ip6, pool, tx, now, ..
        } = self;
        let mut out = |p: PortId, f: Mbuf| queue_tx(tx, p, f);
        if learn_only {
            ip6.learn_only(t, &m[..], port, *now, pool, &mut out);
            return Action::Free;
        }
        match ip6.input(t, m, port, *now, pool, &mut out) {
            Ip6Verdict::Tx(p) => Action::Tx(p),
            Ip6Verdict::Drop(r) => Action::Drop(r),
            Ip6Verdict::Free | Ip6Verdict::Held => Action::Free,
            Ip6Verdict::Host(r) => self.punt_or(port, r.map_or(Action::Free, Action::Drop)),
        }
    }

    // ---- ip4-input -------------------------------------------------------------------------

    /// A packet with a flow tuple: steer, ct-lookup, nat44, svc-lookup.
    #[allow(clippy::too_many_arguments)]
    fn ip4_flow(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip4Meta,
        key: FlowKey,
        flags: u8,
        icmp_error: bool,
        hash: Option<u64>,
        steered: bool,
    ) -> Action {
        let meta = *meta;
        if self.cfg.workers > 1 && !steered {
            let owner = self.owner_of(t, &key);
            if owner != self.cfg.id {
                return Action::Handoff(owner);
            }
        }

        // Forwarded traffic with no hop left: answer with the packet as it arrived. Traffic to
        // one of the node's own addresses is forwarded too when a flow or a Service (NodePort)
        // claims it, and must not create a flow it cannot send (Linux drops the unconfirmed
        // conntrack entry and answers time exceeded from the forward path).
        let forwarded = |ct: &FlowTable| {
            !t.is_local(meta.dst)
                || ct.contains(&key)
                || (!icmp_error
                    && meta.proto != PROTO_ICMP
                    && t.services.lookup(key.proto, key.dst, key.dport).is_some())
        };
        if meta.ttl <= 1 && forwarded(&self.ct) {
            return self.icmp_error(
                t,
                m,
                port,
                &meta,
                icmpv4::msg_type::TIME_EXCEEDED,
                0,
                DropReason::Ip4TtlExceeded,
            );
        }

        // ct-lookup
        let found = match hash {
            Some(h) => self.ct.lookup_hashed(&key, h, self.now),
            None => self.ct.lookup(&key, self.now),
        };
        if let Some((slot, dir)) = found {
            if meta.fragmented && (icmp_error || !fragments_tracked(meta.proto)) {
                return Action::Drop(DropReason::Ip4Fragment);
            }
            if icmp_error {
                let flow = *self.ct.get(slot);
                nat::translate_icmp_error(&mut m[L2..], &flow, dir);
            } else {
                self.ct.update(slot, dir, flags, self.now);
                let flow = self.ct.get(slot);
                let to = flow.translated(dir);
                // TTL is at least 2 here (checked above for everything a flow claims).
                if meta.later_fragment {
                    // No L4 header: the first fragment's carried the ports and the checksum.
                    nat::forward_fragment(&mut m[L2..], &key, &to);
                } else {
                    nat::forward_with(&mut m[L2..], &key, &to, flow.delta[dir as usize]);
                }
                return self.ip4_output_local(t, m, to.dst);
            }
            return self.ip4_forward(t, m);
        }

        // svc-lookup
        if !icmp_error && meta.proto != PROTO_ICMP {
            if let Some((id, fe)) = t.services.lookup(key.proto, key.dst, key.dport) {
                // A new flow starts with a whole packet or a first fragment (which has the
                // ports and the checksum to translate).
                if meta.later_fragment || (meta.fragmented && !fragments_tracked(meta.proto)) {
                    return Action::Drop(DropReason::Ip4Fragment);
                }
                return self.svc_new_flow(t, m, port, &meta, &key, id, fe, flags);
            }
        }
        self.ip4_no_l4(t, m, port, &meta)
    }

    /// The flow tuple of a fragment (and whether it is steered already), or where the fragment
    /// must go first. Every fragment of a TCP or UDP datagram goes first to the datagram's home
    /// worker (chosen by its identity, which every fragment carries), which remembers the first
    /// fragment's ports and gives them to the later ones; then, with its ports, the fragment
    /// goes to its flow's owner, which translates it (`Ok((Some, true))`: it is this worker). A
    /// later fragment whose first one was not seen, or of another protocol, has no tuple. Out
    /// of line and cold: fragments are rare, and the burst loop stays as it was for everything
    /// else.
    #[cold]
    #[inline(never)]
    fn fragment_key(
        &mut self,
        t: &Tables,
        meta: &Ip4Meta,
        key: Option<FlowKey>,
        icmp_error: bool,
        steered: bool,
    ) -> Result<(Option<FlowKey>, bool), Action> {
        if icmp_error || !fragments_tracked(meta.proto) {
            return Ok((key.filter(|_| !meta.later_fragment), steered));
        }
        let key = if meta.fragment_resolved {
            key
        } else {
            let id = FragId {
                src: meta.src,
                dst: meta.dst,
                proto: meta.proto,
                ident: meta.ident,
            };
            self.fragment_home(id.hash())?;
            let first = key
                .filter(|_| !meta.later_fragment)
                .map(|k| (k.sport, k.dport));
            self.frags
                .ports_of(id, first, self.now)
                .map(|(sport, dport)| FlowKey {
                    src: meta.src,
                    dst: meta.dst,
                    sport,
                    dport,
                    proto: meta.proto,
                })
        };
        let Some(key) = key else {
            self.stats.fragments_unmatched += 1;
            return Ok((None, true));
        };
        if !meta.fragment_resolved && self.cfg.workers > 1 {
            let owner = self.owner_of(t, &key);
            if owner != self.cfg.id {
                return Err(Action::HandoffFragment(owner, (key.sport, key.dport)));
            }
        }
        Ok((Some(key), true))
    }

    /// `Ok` on a fragment's home worker (chosen by `hash`, its datagram's identity), else where
    /// to hand it.
    fn fragment_home(&self, hash: u64) -> Result<(), Action> {
        let home = (hash % self.cfg.workers as u64) as usize;
        if home == self.cfg.id {
            Ok(())
        } else {
            Err(Action::Handoff(home))
        }
    }

    /// Packets that no flow and no Service claims: the node's own, or plain forwarding.
    fn ip4_no_l4(&mut self, t: &Tables, m: &mut Mbuf, port: PortId, meta: &Ip4Meta) -> Action {
        if t.is_local(meta.dst) {
            if meta.fragmented {
                // The kernel reassembles its own traffic.
                return self.punt_or(port, Action::Drop(DropReason::Ip4Fragment));
            }
            return self.ip4_local(t, m, port, meta);
        }
        if meta.ttl <= 1 {
            return self.icmp_error(
                t,
                m,
                port,
                meta,
                icmpv4::msg_type::TIME_EXCEEDED,
                0,
                DropReason::Ip4TtlExceeded,
            );
        }
        self.ip4_forward(t, m)
    }

    /// The worker that owns the flow `key` belongs to (see `docs/architecture.md`):
    /// replies to SNATed flows by SNAT port range, new Service flows by client address, and
    /// everything else (un-SNATed replies, plain traffic) by destination address, which for a
    /// reply is the client.
    fn owner_of(&self, t: &Tables, key: &FlowKey) -> usize {
        let n = self.cfg.workers;
        if t.is_local(key.dst) {
            if let Some(w) = self.cfg.snat_owner(key.dport) {
                return w;
            }
        }
        if key.proto != PROTO_ICMP && t.services.lookup(key.proto, key.dst, key.dport).is_some() {
            return (addr_hash(u32::from(key.src)) % n as u64) as usize;
        }
        (addr_hash(u32::from(key.dst)) % n as u64) as usize
    }

    #[allow(clippy::too_many_arguments)]
    fn svc_new_flow(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip4Meta,
        key: &FlowKey,
        frontend_id: u32,
        fe: &Frontend,
        flags: u8,
    ) -> Action {
        let set = match admit(fe, (key.src, key.dst), key.proto, flags) {
            Admit::Balance(set) => set,
            Admit::Drop(r) => return Action::Drop(r),
            Admit::Reject => {
                self.count(DropReason::SvcRejected);
                return self.reject(t, m, port, meta, key, flags);
            }
        };
        let (baddr, bport) = choose_backend(&self.affinity, fe, set, key.src, self.now, || {
            flow_hash(
                u32::from(key.src),
                u32::from(key.dst),
                key.sport,
                key.dport,
                key.proto,
            )
        });
        let Some(hop) = t.routes.lookup(baddr).copied() else {
            return Action::Drop(DropReason::Ip4NoRoute);
        };
        // Hairpin: a client reaching itself through the Service is SNATed (kube-proxy does the
        // same) or its reply would bypass us.
        let snat = fe.snat || key.src == baddr;
        let reply = FlowKey {
            src: baddr,
            dst: if snat { hop.src } else { key.src },
            sport: bport,
            dport: key.sport,
            proto: key.proto,
        };
        let reply = match reply_tuple(
            &mut self.ct,
            self.snat_chunk,
            &mut self.snat_cursor,
            reply,
            snat,
            self.now,
        ) {
            Ok(reply) => reply,
            Err(r) => return Action::Drop(r),
        };
        // `key` missed in ct-lookup and `reply` was just probed free.
        let new = NewFlow {
            key: *key,
            reply,
            frontend: frontend_id,
            client: key.src,
            backend: (baddr, bport),
            flags,
        };
        let slot = match create_flow(&mut self.ct, &mut self.affinity, fe, new, self.now) {
            Ok(slot) => slot,
            Err(r) => return Action::Drop(r),
        };
        let delta = self.ct.get(slot).delta[0];
        // TTL is at least 2 here (checked in ip4_flow for everything a Service claims).
        nat::forward_with(&mut m[L2..], key, &reply.reverse(), delta);
        self.ip4_output_local(t, m, baddr)
    }

    /// kube-proxy's REJECT for a Service without endpoints: TCP RST, else ICMP port
    /// unreachable, sent from the Service address.
    fn reject(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip4Meta,
        key: &FlowKey,
        flags: u8,
    ) -> Action {
        if key.proto != PROTO_TCP {
            return self.icmp_error_from(
                t,
                m,
                port,
                meta,
                key.dst,
                icmpv4::msg_type::DST_UNREACHABLE,
                icmpv4::msg_code::PORT_UNREACHABLE,
                None,
            );
        }
        if flags & tcp_flags::RST != 0 {
            return Action::Free;
        }
        // ip4-input checked the segment's lengths (`TcpPacket::new_checked`) for a whole
        // packet; a first fragment is checked here, as the answer depends on them.
        let Ok(tcp) = TcpPacket::new_checked(&m[meta.l4..]) else {
            return Action::Drop(DropReason::L4Malformed);
        };
        let (seq, ack, payload) = (
            tcp.seq_number(),
            tcp.ack_number(),
            tcp.payload().len() as u32,
        );
        let (rst_seq, rst_ack, rst_flags) = rst_for(flags, seq, ack, payload);
        let ip_len = 20 + 20;
        let repr = Ipv4Repr {
            src_addr: key.dst,
            dst_addr: key.src,
            next_header: IpProtocol::Tcp,
            payload_len: 20,
            hop_limit: 64,
        };
        m.set_len(L2 + ip_len);
        let buf = &mut m[L2..];
        buf.fill(0);
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut *buf));
        {
            let mut tcp = TcpPacket::new_unchecked(&mut buf[20..]);
            tcp.set_src_port(key.dport);
            tcp.set_dst_port(key.sport);
            tcp.set_seq_number(rst_seq);
            tcp.set_ack_number(rst_ack);
            tcp.set_header_len(20);
            tcp.set_flags(rst_flags);
            tcp.set_window_len(0);
            tcp.fill_checksum_v4(key.dst, key.src);
        }
        self.stats.tcp_resets_sent += 1;
        self.ip4_output_local(t, m, key.src)
    }

    /// Packets for the node itself that no flow and no Service claims: ICMP echo is answered,
    /// the rest is punted to the kernel (dropped when the port has no host port).
    fn ip4_local(&mut self, t: &Tables, m: &mut Mbuf, port: PortId, meta: &Ip4Meta) -> Action {
        if meta.proto == PROTO_ICMP {
            let is_echo = Icmpv4Packet::new_checked(&m[meta.l4..])
                .is_ok_and(|p| p.msg_type() == icmpv4::msg_type::ECHO_REQUEST && p.msg_code() == 0);
            if is_echo {
                {
                    let mut ip = Ipv4Packet::new_unchecked(&mut m[L2..]);
                    ip.set_src_addr(meta.dst);
                    ip.set_dst_addr(meta.src);
                    ip.set_hop_limit(64);
                    ip.fill_checksum();
                }
                let mut icmp = Icmpv4Packet::new_unchecked(&mut m[meta.l4..]);
                icmp.set_msg_type(icmpv4::msg_type::ECHO_REPLY);
                icmp.fill_checksum();
                self.stats.icmp_sent += 1;
                return self.ip4_output_local(t, m, meta.src);
            }
        }
        // stack-punt: a Service's health check, served by the host stack. The frame goes,
        // unchanged, to the stack port's transmit batch like any frame to send.
        if meta.proto == PROTO_TCP {
            if let Some(stack) = self.cfg.stack_port {
                let dport = m
                    .get(meta.l4 + 2..meta.l4 + 4)
                    .map_or(0, |p| u16::from_be_bytes([p[0], p[1]]));
                if t.health.serves(dport) {
                    return Action::Tx(stack);
                }
            }
        }
        self.punt_or(port, Action::Drop(DropReason::Ip4Local))
    }

    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip4Meta,
        ty: u8,
        code: u8,
        reason: DropReason,
    ) -> Action {
        let src = t
            .routes
            .lookup(meta.src)
            .map(|h| h.src)
            .or_else(|| t.port_address(port));
        match src {
            Some(src) => self.icmp_error_from(t, m, port, meta, src, ty, code, Some(reason)),
            None => Action::Drop(reason),
        }
    }

    /// Turns the frame into an ICMP error about itself, sent from `src` back to its source.
    /// `reason`, if given, is counted as the original frame's drop reason.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error_from(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        _port: PortId,
        meta: &Ip4Meta,
        src: Ipv4Addr,
        ty: u8,
        code: u8,
        reason: Option<DropReason>,
    ) -> Action {
        if let Some(r) = reason {
            self.count(r);
        }
        // Never an error about an error, nor about a non-first fragment (RFC 1122 §3.2.2; its
        // bytes are mid-datagram payload, not a header).
        if meta.later_fragment {
            return Action::Free;
        }
        if meta.proto == PROTO_ICMP {
            let is_err = Icmpv4Packet::new_checked(&m[meta.l4..])
                .is_ok_and(|p| icmpv4::is_error(p.msg_type()));
            if is_err {
                return Action::Free;
            }
        }
        if !self.icmp_allowed() {
            return Action::Drop(DropReason::IcmpRateLimited);
        }
        let quote_len = (m.len() - L2).min(ICMP_QUOTE_MAX);
        let mut quote = [0u8; ICMP_QUOTE_MAX];
        quote[..quote_len].copy_from_slice(&m[L2..L2 + quote_len]);
        let repr = Ipv4Repr {
            src_addr: src,
            dst_addr: meta.src,
            next_header: IpProtocol::Icmp,
            payload_len: 8 + quote_len,
            hop_limit: 64,
        };
        m.set_len(L2 + 20 + 8 + quote_len);
        let buf = &mut m[L2..];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut *buf));
        {
            let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[20..]);
            icmp.set_msg_type(ty);
            icmp.set_msg_code(code);
            icmp.set_rest_of_header(0);
            icmp.data_mut()[..quote_len].copy_from_slice(&quote[..quote_len]);
            icmp.fill_checksum();
        }
        self.stats.icmp_sent += 1;
        self.ip4_output_local(t, m, meta.src)
    }

    fn icmp_allowed(&mut self) -> bool {
        let burst = (self.cfg.icmp_rate / 10).max(1);
        let elapsed = self.now.saturating_since(self.icmp_refill);
        let add = elapsed.as_nanos() * u128::from(self.cfg.icmp_rate) / 1_000_000_000;
        let add = u32::try_from(add).unwrap_or(u32::MAX);
        if add > 0 {
            self.icmp_tokens = self.icmp_tokens.saturating_add(add).min(burst);
            self.icmp_refill = self.now;
        }
        if self.icmp_tokens == 0 {
            return false;
        }
        self.icmp_tokens -= 1;
        true
    }

    // ---- ip4-forward / ip4-output ------------------------------------------------------------

    /// Decrements the TTL and routes a transit packet.
    #[inline]
    fn ip4_forward(&mut self, t: &Tables, m: &mut Mbuf) -> Action {
        let (dst, ttl, proto) = {
            let ip = Ipv4Packet::new_unchecked(&m[L2..]);
            (ip.dst_addr(), ip.hop_limit(), u8::from(ip.next_header()))
        };
        if ttl <= 1 {
            return Action::Drop(DropReason::Ip4TtlExceeded);
        }
        let Some(hop) = t.routes.lookup(dst).copied() else {
            return Action::Drop(DropReason::Ip4NoRoute);
        };
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut m[L2..]);
            let old = u16::from_be_bytes([ttl, proto]);
            let new = u16::from_be_bytes([ttl - 1, proto]);
            let c = crate::wire::checksum::update16(ip.checksum(), old, new);
            ip.set_hop_limit(ttl - 1);
            ip.set_checksum(c);
        }
        self.ip4_output(t, m, hop, dst)
    }

    /// Routes a packet the node originates (no TTL change).
    fn ip4_output_local(&mut self, t: &Tables, m: &mut Mbuf, dst: Ipv4Addr) -> Action {
        match t.routes.lookup(dst).copied() {
            Some(hop) => self.ip4_output(t, m, hop, dst),
            None => Action::Drop(DropReason::Ip4NoRoute),
        }
    }

    /// Resolves the next hop and writes the Ethernet header.
    #[inline(always)]
    fn ip4_output(&mut self, t: &Tables, m: &mut Mbuf, hop: NextHop, dst: Ipv4Addr) -> Action {
        let nh = hop.neighbor_for(dst);
        let mac = match hop.gateway_mac {
            Some(mac) => Some(mac),
            None => match t.neighbors.get(&nh) {
                Some(mac) => Some(*mac),
                None => self.neigh.lookup(nh, self.now),
            },
        };
        match mac {
            Some(mac) => {
                let Some(src) = t.ports.get(usize::from(hop.port)).map(|p| p.mac) else {
                    return Action::Drop(DropReason::Ip4NoRoute);
                };
                write_eth(m, mac, src, EtherType::Ipv4);
                Action::Tx(hop.port)
            }
            None => Action::Hold { nh, port: hop.port },
        }
    }
}

/// The protocols whose fragments are matched to flows (the others' are not translated: their
/// checksums cannot be patched from the first fragment alone, or they have no ports).
fn fragments_tracked(proto: u8) -> bool {
    proto == PROTO_TCP || proto == PROTO_UDP
}

/// ip4-input: header, checksum and source checks, padding trimmed, flow tuple extracted.
fn classify_ip4(t: &Tables, m: &mut Mbuf) -> Class {
    let (meta, total) = {
        let Ok(ip) = Ipv4Packet::new_checked(&m[L2..]) else {
            return Class::Drop(DropReason::Ip4Malformed);
        };
        if !ip.verify_checksum() {
            return Class::Drop(DropReason::Ip4BadChecksum);
        }
        let meta = Ip4Meta {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            proto: u8::from(ip.next_header()),
            ttl: ip.hop_limit(),
            l4: L2 + ip.header_len(),
            fragmented: ip.more_frags() || ip.frag_offset() != 0,
            later_fragment: ip.frag_offset() != 0,
            ident: ip.ident(),
            fragment_resolved: false,
        };
        (meta, usize::from(ip.total_len()))
    };
    // Ethernet padding is not part of the packet.
    m.set_len(L2 + total);
    let ip4 = |key, flags, icmp_error| Class::Ip4 {
        meta,
        key,
        flags,
        icmp_error,
    };
    if meta.later_fragment {
        return ip4(None, 0, false);
    }
    if meta.src.is_multicast() || meta.src.is_broadcast() || t.is_local(meta.src) {
        return Class::Drop(DropReason::Ip4BadSource);
    }
    if meta.dst.is_multicast() || meta.dst.is_broadcast() {
        return Class::Host(DropReason::Ip4Local);
    }
    let own = |sport, dport| {
        Some(FlowKey {
            src: meta.src,
            dst: meta.dst,
            sport,
            dport,
            proto: meta.proto,
        })
    };
    let l4 = &m[meta.l4..];
    match meta.proto {
        PROTO_TCP => match TcpPacket::new_checked(l4) {
            Ok(p) => ip4(own(p.src_port(), p.dst_port()), p.flags(), false),
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        // A first fragment holds the UDP header but not the length it gives (the datagram's).
        PROTO_UDP if meta.fragmented => match l4 {
            [a, b, c, d, _, _, _, _, ..] => ip4(
                own(u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
                0,
                false,
            ),
            _ => Class::Drop(DropReason::L4Malformed),
        },
        PROTO_UDP => match UdpPacket::new_checked(l4) {
            Ok(p) => ip4(own(p.src_port(), p.dst_port()), 0, false),
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        PROTO_SCTP => match SctpPacket::new_checked(l4) {
            Ok(p) => ip4(own(p.src_port(), p.dst_port()), 0, false),
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        PROTO_ICMP => match Icmpv4Packet::new_checked(l4) {
            Ok(p) => match p.msg_type() {
                icmpv4::msg_type::ECHO_REQUEST => ip4(own(p.echo_ident(), 0), 0, false),
                icmpv4::msg_type::ECHO_REPLY => ip4(own(0, p.echo_ident()), 0, false),
                ty if icmpv4::is_error(ty) => match nat::quoted_key(p.data()) {
                    Some(q) => ip4(Some(q.reverse()), 0, true),
                    None => ip4(None, 0, false),
                },
                _ => ip4(None, 0, false),
            },
            Err(_) => Class::Drop(DropReason::L4Malformed),
        },
        _ => ip4(None, 0, false),
    }
}

/// Whether `addr` is the directed broadcast address of the prefix `a/len` (none for /31 and
/// /32, RFC 3021).
fn is_subnet_broadcast(a: Ipv4Addr, len: u8, addr: Ipv4Addr) -> bool {
    len < 31 && u32::from(addr) == u32::from(a) | !crate::route::netmask(len)
}

/// Queues a frame the node generated on a port's transmit batch; gives it back when full.
fn queue_tx(tx: &mut [Vec<Mbuf>], port: PortId, m: Mbuf) -> Result<(), Mbuf> {
    match tx.get_mut(usize::from(port)) {
        Some(batch) if batch.len() < TX_BATCH => {
            batch.push(m);
            Ok(())
        }
        _ => Err(m),
    }
}

/// Writes an untagged Ethernet header at the start of the frame.
#[inline]
fn write_eth(m: &mut Mbuf, dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
}

/// Flow slots the UDP clean-up examines per poll.
const UDP_CHECK_BUDGET: usize = 4096;

/// Whether a UDP flow to the frontend (proto, address, port), translated to `endpoint`, may
/// stay after a table change (see [`Worker::check_udp_flows`]).
fn keeps_udp_flow<A: Address>(
    services: &ServiceTable<A>,
    (proto, addr, port): (u8, A, u16),
    endpoint: (A, u16),
) -> bool {
    // A frontend that is gone (its Service deleted, its ClusterIP changed) ends its flows.
    services
        .lookup(proto, addr, port)
        .is_some_and(|(_, fe)| fe.serving.keeps(endpoint))
}

/// What a frontend says to the first packet of a new flow from `src` to `dst`.
enum Admit<'a, A> {
    Balance(&'a BackendSet<A>),
    /// kube-proxy's REJECT: the caller answers (TCP RST, ICMP port unreachable).
    Reject,
    Drop(DropReason),
}

/// The checks every new Service flow passes, in kube-proxy's order: the load balancer's source
/// ranges, the frontend's verdict, and no flow started by a TCP RST.
fn admit<A: Address>(fe: &Frontend<A>, (src, dst): (A, A), proto: u8, flags: u8) -> Admit<'_, A> {
    if let Some(ranges) = &fe.source_ranges {
        if !ranges.allows(src, dst) {
            return Admit::Drop(DropReason::SvcSourceNotAllowed);
        }
    }
    match &fe.action {
        FrontendAction::Balance(_) if proto == PROTO_TCP && flags & tcp_flags::RST != 0 => {
            Admit::Drop(DropReason::CtInvalid)
        }
        FrontendAction::Balance(set) => Admit::Balance(set),
        FrontendAction::Drop => Admit::Drop(DropReason::SvcNoLocalEndpoint),
        FrontendAction::Reject => Admit::Reject,
    }
}

/// The endpoint of a new flow from `client`: the one session affinity remembers while it is
/// still in the set, else Maglev's pick for the flow's `hash`.
fn choose_backend<A: Address>(
    affinity: &AffinityTable<A>,
    fe: &Frontend<A>,
    set: &BackendSet<A>,
    client: A,
    now: Instant,
    hash: impl FnOnce() -> u64,
) -> (A, u16) {
    let remembered = fe.affinity_secs.and_then(|_| {
        affinity
            .lookup(fe.service_port_id, client, now)
            .filter(|(a, p)| set.contains(*a, *p))
    });
    remembered.unwrap_or_else(|| {
        let b = set.pick(hash());
        (b.addr, b.port)
    })
}

/// A Service flow about to be created.
struct NewFlow<K, A> {
    key: K,
    reply: K,
    frontend: u32,
    client: A,
    backend: (A, u16),
    flags: u8,
}

/// Creates the flow (both keys were just seen free) and remembers the client's endpoint when
/// the Service has session affinity.
fn create_flow<K: Tuple, A: Address>(
    ct: &mut FlowTable<K>,
    affinity: &mut AffinityTable<A>,
    fe: &Frontend<A>,
    new: NewFlow<K, A>,
    now: Instant,
) -> Result<u32, DropReason> {
    let slot = match ct.insert_new(new.key, new.reply, new.frontend, new.flags, now) {
        Ok(slot) => slot,
        Err(CtError::Full) => return Err(DropReason::CtFull),
        Err(CtError::Clash) => return Err(DropReason::CtInvalid),
    };
    if let Some(secs) = fe.affinity_secs {
        affinity.record(
            fe.service_port_id,
            new.client,
            new.backend,
            Duration::from_secs(u64::from(secs)),
            now,
        );
    }
    Ok(slot)
}

/// The reply tuple of a new flow ([`FlowTable::claim_reply`] over this worker's SNAT slice);
/// a range with no port to give is `snat-exhausted`.
fn reply_tuple<K: Tuple>(
    ct: &mut FlowTable<K>,
    chunk: (u16, u16),
    cursor: &mut u32,
    reply: K,
    snat: bool,
    now: Instant,
) -> Result<K, DropReason> {
    ct.claim_reply(reply, chunk, cursor, snat, now)
        .map_err(|_| DropReason::SnatExhausted)
}

/// Sequence number, acknowledgement and flags of the RST answering a segment with `flags`,
/// `seq`, `ack` and `payload` bytes (RFC 9293 §3.10.7.1).
fn rst_for(flags: u8, seq: u32, ack: u32, payload: u32) -> (u32, u32, u8) {
    if flags & tcp_flags::ACK != 0 {
        (ack, 0, tcp_flags::RST)
    } else {
        let len = payload
            + u32::from(flags & tcp_flags::SYN != 0)
            + u32::from(flags & tcp_flags::FIN != 0);
        (0, seq.wrapping_add(len), tcp_flags::RST | tcp_flags::ACK)
    }
}
