//! A worker: one poll-mode loop's worth of state and the pipeline it runs over each burst.
//!
//! ```text
//!  rx burst ─► eth-input ─┬─► arp-input ──────────────────────────────► tx (reply) / learn
//!                         ├─► ip6-input ─► steer ─► … the same Service stages (nat66) … / ip6-forward
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
//!  stack-input (what the host stack sends) ─► ip-output ─► tx batch of the routed port
//! ```
//!
//! The Service stages (steer to svc-lookup, NAT, reject) are written once, generic over the
//! address family (`service.rs`, `family::Family`), and so is ip-output (`neighbour.rs`):
//! each family's input file only builds the packet's facts (`FlowPacket`) and enters them.
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

mod arp_input;
mod eth_input;
mod family;
mod host;
mod icmp;
mod ip4_input;
mod ip6_input;
mod nd_input;
mod neighbour;
mod service;
mod setup;
#[cfg(test)]
mod test_rig;
mod timers;
#[cfg(test)]
pub(crate) use test_rig::tables as test_tables;

pub use icmp::IcmpLimiter;
pub use neighbour::{RESOLVE_GIVE_UP, RESOLVE_RETRY};
pub use setup::{Fabric, Handoff, WorkerConfig, WorkerStats};

use crate::conntrack::{FlowKey, FlowTable};
use crate::drop::DropReason;
use crate::frag::{FragId6, FragTable};
use crate::mbuf::{Mbuf, Pool, PoolCache};
use crate::mirror::{StatsMirror, MIRROR_PERIOD};
use crate::nat66::FlowKey6;
use crate::neighbor::{AffinityTable, NeighborCache};
use crate::port::{Port, PortId, BURST};
use crate::tables::{TableReader, Tables};
use crate::time::Instant;
use crate::wire::{EtherType, EthernetFrame, MacAddr};
use core::time::Duration;
use ip4_input::{Ip4Class, Ip4Meta};
use ip6_input::Ip6Meta;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Length of an untagged Ethernet header: the IPv4 header starts here.
const L2: usize = 14;
/// Frames a worker's transmit batch for one port can hold before it must be flushed.
const TX_BATCH: usize = 1024;
/// Expired flows looked for per timer tick.
const SWEEP_BUDGET: usize = 256;
/// IPv4 datagrams whose first fragment's ports a worker remembers at once (24 bytes a slot; a
/// quarter as many IPv6 ones, 56 bytes a slot).
const FRAG_SLOTS: usize = 4096;
/// How often timers run.
const TIMER_PERIOD: Duration = Duration::from_millis(10);

/// What happens to a frame after classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Tx(PortId),
    Drop(DropReason),
    /// Consumed without being an error (an ARP reply we learned from).
    Free,
    Handoff(usize),
    /// A fragment handed to the owner of the flow its ports name.
    HandoffFragment(usize, (u16, u16)),
    /// The next hop `nh` on `port` is being resolved: the frame waits (`neighbour`).
    Hold {
        nh: IpAddr,
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
        meta: Ip6Meta,
        fragment_ports: Option<(u16, u16)>,
    },
    Ip4(Ip4Class),
}

/// How a frame reached the decision: from the burst pass, which computed (and prefetched)
/// its flow hash, or handed over by another worker, already on its owner and maybe only to
/// learn a neighbour from.
#[derive(Clone, Copy)]
struct Arrival {
    hash: Option<u64>,
    steered: bool,
    learn: bool,
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
    /// IPv6 neighbours, by (port, address): link-local addresses repeat across links.
    neigh6: NeighborCache<(PortId, Ipv6Addr)>,
    /// Frames of both families waiting for their next hop (`neighbour`).
    held: Vec<neighbour::Held>,
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
    /// One ICMP error rate limit for both families.
    icmp: IcmpLimiter,
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
            neigh6: NeighborCache::new(cfg.neighbor_max),
            held: Vec::with_capacity(cfg.hold_max),
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
            icmp: IcmpLimiter::new(cfg.icmp_rate),
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

    /// This worker's IPv6 flow table.
    pub fn flows6(&self) -> &FlowTable<FlowKey6> {
        &self.ct6
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
                self.host_input(port, data, burst, now);
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
        // Which flow table a frame's lines were prefetched from (4, 6, or 0: none).
        let mut prefetched = [0u8; BURST];
        while !burst.is_empty() {
            let n = burst.len().min(BURST);
            for (i, m) in burst[..n].iter_mut().enumerate() {
                let class = self.classify(&t, m, port);
                prefetched[i] = match &class {
                    Class::Ip4(Ip4Class { key: Some(k), .. }) => {
                        hashes[i] = self.ct.prefetch(k);
                        4
                    }
                    Class::Ip6 { meta, .. } if meta.prefetchable() => {
                        hashes[i] = self.ct6.prefetch(&meta.key(m));
                        6
                    }
                    _ => 0,
                };
                classes[i] = class;
            }
            for i in 0..n {
                match prefetched[i] {
                    4 => self.ct.prefetch_slot(hashes[i]),
                    6 => self.ct6.prefetch_slot(hashes[i]),
                    _ => {}
                }
            }
            for (i, mut m) in burst.drain(..n).enumerate() {
                let arrival = Arrival {
                    hash: Some(hashes[i]),
                    steered: false,
                    learn: false,
                };
                let action = self.decide(&t, &mut m, port, classes[i], arrival);
                self.apply(&t, m, port, action);
            }
        }
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
        if let Some(PortRole::Host { data }) = self.roles.get(usize::from(port)).copied() {
            // One of the kernel's frames, handed to the worker that owns its flow.
            let action = self.host_frame(t, &mut m, data, steered);
            self.apply_from_host(t, m, port, data, action);
            return;
        }
        let mut class = self.classify(t, &mut m, port);
        if let Class::Ip6 {
            fragment_ports: f, ..
        } = &mut class
        {
            *f = fragment_ports;
        }
        if let (Some((sport, dport)), Class::Ip4(Ip4Class { meta, key, .. })) =
            (fragment_ports, &mut class)
        {
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
        let arrival = Arrival {
            hash: None,
            steered,
            learn,
        };
        let action = self.decide(t, &mut m, port, class, arrival);
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

    /// Decides what happens to a classified frame.
    fn decide(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        class: Class,
        arrival: Arrival,
    ) -> Action {
        match class {
            Class::Drop(r) => Action::Drop(r),
            Class::Host(r) => self.punt_or(port, Action::Drop(r)),
            Class::Arp => {
                if self.cfg.workers > 1 && !arrival.steered {
                    self.copy_to_other_workers(m, port);
                }
                self.arp_input(t, m, port, arrival.learn)
            }
            Class::Ip6 {
                meta,
                fragment_ports,
            } => {
                if arrival.learn {
                    self.nd_learn_only(t, &m[..], port);
                    return Action::Free;
                }
                if self.cfg.workers > 1 && !arrival.steered && nd_input::is_ndp(m) {
                    self.copy_to_other_workers(m, port);
                }
                let arrival = Arrival {
                    hash: arrival.hash.filter(|_| meta.prefetchable()),
                    ..arrival
                };
                self.ip6_service(t, m, port, &meta, arrival, fragment_ports)
            }
            // One call site: the Service path stays inlined into the burst loop.
            Class::Ip4(c) => self.ip4_service(t, m, port, c, arrival),
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
}

/// Writes an untagged Ethernet header at the start of the frame.
#[inline]
fn write_eth(m: &mut Mbuf, dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
}
