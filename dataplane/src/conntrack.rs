//! Connection tracking: one bounded flow table per worker.
//!
//! A flow is stored once, in a preallocated slot, and indexed twice: by the tuple its first
//! packet carried (`orig`, as sent by the client) and by the tuple replies will carry (`reply`,
//! as sent by the endpoint after NAT). Every NAT decision is therefore a pair of keys: a packet
//! matching one direction is rewritten to the reverse of the other direction's key.
//!
//! Bounded by construction: slots, the free list and the index ([`crate::flowindex`]) are sized
//! at start-up (on transparent huge pages where the kernel allows), and after start-up no packet
//! allocates. Timeouts follow Linux nf_conntrack's defaults.
//!
//! Under pressure (a SYN flood with random sources fills a table or a SNAT range in
//! milliseconds), the rules are nf_conntrack's: an expired flow is free at once (a lookup, a
//! SNAT port probe or a full table reclaims it on the spot, without waiting for the sweep); when
//! nothing has expired, a flow that is not *assured* ([`Flow::assured`]: half-open, unreplied,
//! picked up mid-stream without a reply yet, or closed) is dropped early to make room, the least
//! recently seen of a bounded window; an assured flow is never evicted. Each reclaim and refusal
//! is counted by reason ([`CtStats`]).

use crate::flowindex::FlowIndex;
use crate::time::Instant;
use core::time::Duration;
use std::net::Ipv4Addr;

/// An IPv4 flow tuple. For ICMP echo the identifier stands in the port of the side that chose
/// it (`sport` of a request, `dport` of a reply), so that a reply's key is the reverse of its
/// request's, as for TCP and UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl core::hash::Hash for FlowKey {
    /// Two word-sized writes instead of five field-by-field ones: this hash is on every packet.
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst)));
        state.write_u64(
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto),
        );
    }
}

impl FlowKey {
    pub fn reverse(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// What a flow table needs of a tuple: IPv4 [`FlowKey`]s and IPv6
/// [`FlowKey6`](crate::nat66::FlowKey6)s each get a table of their own, so an IPv4 flow still
/// fits one cache line.
pub trait Tuple: Copy + Eq + core::fmt::Debug {
    /// A key no packet carries, for empty slots.
    const EMPTY: Self;
    /// The tuple of the other direction.
    fn reverse(&self) -> Self;
    /// The same tuple with destination port `port` (a reply tuple's SNAT port).
    fn with_dport(&self, port: u16) -> Self;
    fn proto(&self) -> u8;
    /// The flow index's hash, keyed with its per-process `seed`.
    fn hash_seeded(&self, seed: u64) -> u64;
    /// The checksum delta of rewriting `from` into `to`.
    fn delta(from: &Self, to: &Self) -> crate::nat::Delta;
}

impl Tuple for FlowKey {
    const EMPTY: FlowKey = FlowKey {
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        sport: 0,
        dport: 0,
        proto: 0,
    };

    #[inline]
    fn reverse(&self) -> FlowKey {
        FlowKey::reverse(self)
    }

    #[inline]
    fn with_dport(&self, port: u16) -> FlowKey {
        FlowKey {
            dport: port,
            ..*self
        }
    }

    #[inline]
    fn proto(&self) -> u8 {
        self.proto
    }

    #[inline]
    fn hash_seeded(&self, seed: u64) -> u64 {
        let a = (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst));
        let b =
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto);
        // One multiply folds the ports in, one SplitMix64 finaliser mixes: every input bit
        // reaches both the bucket bits (low) and the signature bits (high).
        crate::hash::mix64((a ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b)
    }

    #[inline]
    fn delta(from: &FlowKey, to: &FlowKey) -> crate::nat::Delta {
        crate::nat::Delta::new(from, to)
    }
}

impl core::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {}:{} -> {}:{}",
            crate::service::proto_name(self.proto),
            self.src,
            self.sport,
            self.dst,
            self.dport
        )
    }
}

/// Direction of a packet within its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Same direction as the packet that created the flow.
    Orig = 0,
    /// The other way.
    Reply = 1,
}

/// TCP connection states (a subset of nf_conntrack's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

/// Flow timeouts. `Default` gives Linux nf_conntrack's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_syn_recv: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_close_wait: Duration,
    pub tcp_last_ack: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    /// An established TCP flow picked up mid-stream that has not seen a reply yet.
    pub tcp_unacknowledged: Duration,
    /// UDP flow that has not seen a reply.
    pub udp: Duration,
    /// UDP flow that has seen traffic both ways.
    pub udp_stream: Duration,
    pub icmp: Duration,
    pub sctp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(432_000),
            tcp_fin_wait: s(120),
            tcp_close_wait: s(60),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            tcp_unacknowledged: s(300),
            udp: s(30),
            udp_stream: s(120),
            icmp: s(30),
            sctp: s(3600),
        }
    }
}

/// TCP flag bits as they appear in the header's flags byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Marks a flow not created by a Service (never today; kept for plain NAT rules).
pub const NO_FRONTEND: u32 = u32::MAX;

/// One tracked flow: one cache line for IPv4, two for IPv6.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
pub struct Flow<K = FlowKey> {
    pub orig: K,
    pub reply: K,
    pub tcp: TcpState,
    /// A packet in the reply direction has been seen.
    pub replied: bool,
    fin: [bool; 2],
    pub expires: Instant,
    /// Index of the frontend in the service table that created the flow.
    pub frontend: u32,
    /// Checksum deltas of the translation in each direction (index by [`Dir`]).
    pub delta: [crate::nat::Delta; 2],
    live: bool,
}

impl<K: Tuple> Flow<K> {
    const EMPTY: Flow<K> = Flow {
        orig: K::EMPTY,
        reply: K::EMPTY,
        tcp: TcpState::Close,
        replied: false,
        fin: [false; 2],
        expires: Instant::ZERO,
        frontend: NO_FRONTEND,
        delta: [crate::nat::Delta { ip: 0, l4: 0 }; 2],
        live: false,
    };

    /// The tuple a packet in direction `dir` must carry after translation: the reverse of the
    /// other direction's key.
    #[inline]
    pub fn translated(&self, dir: Dir) -> K {
        match dir {
            Dir::Orig => self.reply.reverse(),
            Dir::Reply => self.orig.reverse(),
        }
    }

    /// The key of direction `dir` (the tuple as it arrives).
    #[inline]
    pub fn key(&self, dir: Dir) -> K {
        match dir {
            Dir::Orig => self.orig,
            Dir::Reply => self.reply,
        }
    }

    /// nf_conntrack's ASSURED: the flow has seen a reply and, for TCP, is a connection that
    /// completed its handshake (or was picked up mid-stream and has since seen a reply) and has
    /// not closed. Only flows that are not assured are dropped early to make room: a
    /// half-open connection of a SYN flood is, an established one never.
    #[inline]
    pub fn assured(&self) -> bool {
        self.replied
            && (self.orig.proto() != crate::service::PROTO_TCP
                || matches!(
                    self.tcp,
                    TcpState::Established
                        | TcpState::FinWait
                        | TcpState::CloseWait
                        | TcpState::LastAck
                ))
    }
}

/// Why a flow could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtError {
    /// Every slot holds a live flow.
    Full,
    /// One of the two keys is already in use.
    Clash,
}

/// Counters of one flow table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtStats {
    pub created: u64,
    pub expired: u64,
    /// New flows refused: every slot held an assured flow (none expired, none to drop early).
    pub refused_full: u64,
    /// Flows that were not assured, removed to give their slot to a new flow.
    pub early_dropped: u64,
    /// Flows that were not assured, removed to give their SNAT port to a new flow.
    pub snat_reclaimed: u64,
}

impl core::ops::Add for CtStats {
    type Output = CtStats;
    /// Two tables' counters together (a worker's IPv4 and IPv6 tables).
    fn add(self, o: CtStats) -> CtStats {
        CtStats {
            created: self.created + o.created,
            expired: self.expired + o.expired,
            refused_full: self.refused_full + o.refused_full,
            early_dropped: self.early_dropped + o.early_dropped,
            snat_reclaimed: self.snat_reclaimed + o.snat_reclaimed,
        }
    }
}

/// Slots examined for a flow to reclaim when a slot is needed and none is free: the first
/// expired one, else the least recently seen that is not assured. Small, so that a flood
/// against a full table costs a bounded amount per packet.
const RECLAIM_WINDOW: usize = 32;

/// Random SNAT ports probed for a new flow at most; past [`SNAT_PROBES_BEFORE_RECLAIM`] of them
/// the search stops at the first point where a port held by a flow that is not assured is
/// known (a flood fills the range with such flows: each probe is a cache miss, and 64 of them
/// per packet would make the flood cost the worker its whole core).
const SNAT_PROBES: usize = 64;
const SNAT_PROBES_BEFORE_RECLAIM: usize = 8;

/// Why no reply tuple could be found for a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Every SNAT port probed is held by an assured flow.
    SnatExhausted,
}

/// A worker's flow table (IPv4 by default; `FlowTable<FlowKey6>` for IPv6).
pub struct FlowTable<K = FlowKey> {
    index: FlowIndex,
    slots: Vec<Flow<K>>,
    free: Vec<u32>,
    hand: usize,
    timeouts: Timeouts,
    nanos: TimeoutNanos,
    stats: CtStats,
}

impl<K: Tuple> FlowTable<K> {
    /// A table for `capacity` flows (at least 1), all memory allocated now.
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable<K> {
        let capacity = capacity.clamp(1, u32::MAX as usize / 2);
        let mut slots = Vec::with_capacity(capacity);
        ffi::memory::advise_huge_pages(slots.spare_capacity_mut());
        slots.resize(capacity, Flow::EMPTY);
        FlowTable {
            // Two keys per flow.
            index: FlowIndex::with_capacity(capacity * 2),
            slots,
            free: (0..capacity as u32).rev().collect(),
            hand: 0,
            nanos: TimeoutNanos::new(&timeouts),
            timeouts,
            stats: CtStats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Live flows (some may have expired and not been reclaimed yet).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CtStats {
        self.stats
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Finds the flow a packet with tuple `key` belongs to. An expired flow is removed and
    /// reported as absent.
    #[inline]
    pub fn lookup(&mut self, key: &K, now: Instant) -> Option<(u32, Dir)> {
        let hash = self.index.hash(key);
        self.lookup_hashed(key, hash, now)
    }

    /// The hash [`FlowTable::lookup_hashed`] wants, with the key's index bucket prefetched: call
    /// it for a whole burst before looking any of it up.
    #[inline]
    pub fn prefetch(&self, key: &K) -> u64 {
        let hash = self.index.hash(key);
        self.index.prefetch(hash);
        hash
    }

    /// Prefetches the flow slot the key probably lives in (after [`FlowTable::prefetch`] had
    /// time to bring its bucket in).
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        if let Some(v) = self.index.candidate(hash) {
            ffi::memory::prefetch_all(&self.slots[(v >> 1) as usize]);
        }
    }

    /// [`FlowTable::lookup`] with the hash already computed by [`FlowTable::prefetch`].
    #[inline]
    pub fn lookup_hashed(&mut self, key: &K, hash: u64, now: Instant) -> Option<(u32, Dir)> {
        let v = self.find(key, hash)?;
        let slot = v >> 1;
        if self.slots[slot as usize].expires <= now {
            self.remove(slot);
            self.stats.expired += 1;
            return None;
        }
        let dir = if v & 1 == 0 { Dir::Orig } else { Dir::Reply };
        Some((slot, dir))
    }

    /// Whether a key is in use by a flow (expired or not): SNAT port probing.
    #[inline]
    pub fn contains(&self, key: &K) -> bool {
        self.find(key, self.index.hash(key)).is_some()
    }

    /// The index value (slot << 1 | direction) of `key`.
    #[inline]
    fn find(&self, key: &K, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash, |v| {
            let f = &slots[(v >> 1) as usize];
            f.live
                && if v & 1 == 0 {
                    f.orig == *key
                } else {
                    f.reply == *key
                }
        })
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Flow<K> {
        &self.slots[slot as usize]
    }

    /// Creates a flow; `tcp_flags` is the first packet's (ignored for other protocols).
    pub fn insert(
        &mut self,
        orig: K,
        reply: K,
        frontend: u32,
        tcp_flags: u8,
        now: Instant,
    ) -> Result<u32, CtError> {
        if self.contains(&orig) || self.contains(&reply) {
            return Err(CtError::Clash);
        }
        self.insert_new(orig, reply, frontend, tcp_flags, now)
    }

    /// [`FlowTable::insert`] for a caller that has just seen both keys missing (the pipeline
    /// looked up `orig` and probed `reply`): skips checking again.
    pub fn insert_new(
        &mut self,
        orig: K,
        reply: K,
        frontend: u32,
        tcp_flags: u8,
        now: Instant,
    ) -> Result<u32, CtError> {
        if self.free.is_empty() && !self.reclaim_slot(now) {
            self.stats.refused_full += 1;
            return Err(CtError::Full);
        }
        let Some(slot) = self.free.pop() else {
            self.stats.refused_full += 1;
            return Err(CtError::Full);
        };
        let tcp = if tcp_flags & tcp_flags::SYN != 0 && tcp_flags & tcp_flags::ACK == 0 {
            TcpState::SynSent
        } else {
            // Picked up mid-stream (Linux's nf_conntrack_tcp_loose).
            TcpState::Established
        };
        let mut flow = Flow {
            orig,
            reply,
            tcp,
            replied: false,
            fin: [false; 2],
            expires: now,
            frontend,
            delta: [
                K::delta(&orig, &reply.reverse()),
                K::delta(&reply, &orig.reverse()),
            ],
            live: true,
        };
        flow.expires = self.expiry(&flow, now);
        let (ho, hr) = (self.index.hash(&orig), self.index.hash(&reply));
        if !self.index.insert(ho, slot << 1) {
            self.free.push(slot);
            self.stats.refused_full += 1;
            return Err(CtError::Full);
        }
        if !self.index.insert(hr, (slot << 1) | 1) {
            self.index.remove(ho, slot << 1);
            self.free.push(slot);
            self.stats.refused_full += 1;
            return Err(CtError::Full);
        }
        self.slots[slot as usize] = flow;
        self.stats.created += 1;
        Ok(slot)
    }

    /// Accounts a packet of an existing flow: advances the TCP state and refreshes the timeout.
    #[inline]
    pub fn update(&mut self, slot: u32, dir: Dir, tcp_flags: u8, now: Instant) {
        let flow = &mut self.slots[slot as usize];
        if dir == Dir::Reply {
            flow.replied = true;
        }
        // Most packets are data or ACKs of an established connection: no state change.
        let plain = tcp_flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) == 0;
        if flow.orig.proto() == crate::service::PROTO_TCP
            && !(plain && flow.tcp == TcpState::Established)
        {
            flow.tcp = tcp_next(flow.tcp, dir, tcp_flags, &mut flow.fin);
        }
        let expires = self.expiry(&self.slots[slot as usize], now);
        self.slots[slot as usize].expires = expires;
    }

    /// The instant a flow in `flow`'s state expires if nothing more is seen from `now`.
    #[inline]
    fn expiry(&self, flow: &Flow<K>, now: Instant) -> Instant {
        Instant::from_nanos(now.as_nanos().saturating_add(self.nanos.of(flow)))
    }
}

/// [`Timeouts`] in nanoseconds, so refreshing a flow's expiry on every packet is one add.
#[derive(Debug, Clone, Copy)]
struct TimeoutNanos {
    t: [u64; 13],
}

impl TimeoutNanos {
    fn new(t: &Timeouts) -> TimeoutNanos {
        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
        TimeoutNanos {
            t: [
                ns(t.tcp_syn_sent),
                ns(t.tcp_syn_recv),
                ns(t.tcp_unacknowledged),
                ns(t.tcp_established),
                ns(t.tcp_fin_wait),
                ns(t.tcp_close_wait),
                ns(t.tcp_last_ack),
                ns(t.tcp_time_wait),
                ns(t.tcp_close),
                ns(t.udp_stream),
                ns(t.udp),
                ns(t.sctp),
                ns(t.icmp),
            ],
        }
    }

    #[inline]
    fn of<K: Tuple>(&self, flow: &Flow<K>) -> u64 {
        let i = match flow.orig.proto() {
            crate::service::PROTO_TCP => match flow.tcp {
                TcpState::SynSent => 0,
                TcpState::SynRecv => 1,
                TcpState::Established if !flow.replied => 2,
                TcpState::Established => 3,
                TcpState::FinWait => 4,
                TcpState::CloseWait => 5,
                TcpState::LastAck => 6,
                TcpState::TimeWait => 7,
                TcpState::Close => 8,
            },
            crate::service::PROTO_UDP if flow.replied => 9,
            crate::service::PROTO_UDP => 10,
            crate::service::PROTO_SCTP => 11,
            _ => 12,
        };
        self.t[i]
    }
}

impl<K: Tuple> FlowTable<K> {
    /// When the flow was last seen (its expiry less its state's timeout), in nanoseconds.
    #[inline]
    fn last_seen(&self, f: &Flow<K>) -> u64 {
        f.expires.as_nanos().saturating_sub(self.nanos.of(f))
    }

    /// Frees one slot for a new flow in a full table: the first expired flow within
    /// [`RECLAIM_WINDOW`] slots of the clock hand, else the least recently seen flow there that
    /// is not assured (early drop). `false` when every slot looked at holds an assured flow.
    fn reclaim_slot(&mut self, now: Instant) -> bool {
        let n = self.slots.len();
        let mut victim = None;
        for _ in 0..RECLAIM_WINDOW.min(n) {
            let i = self.hand;
            self.hand = if i + 1 == n { 0 } else { i + 1 };
            let f = &self.slots[i];
            if !f.live {
                continue;
            }
            if f.expires <= now {
                self.remove(i as u32);
                self.stats.expired += 1;
                return true;
            }
            victim = self.older_victim(victim, i as u32, ());
        }
        match victim {
            Some((_, slot, ())) => {
                self.remove(slot);
                self.stats.early_dropped += 1;
                true
            }
            None => false,
        }
    }

    /// The reply tuple for a new flow whose replies would carry `reply`: `reply` itself when
    /// it is free and the flow is not SNATed, else `reply` with a port of `(lo, hi)` that no
    /// live flow's reply uses (ports are unique per reply tuple, as in Linux NAT: one port
    /// serves as many endpoints as there are). Up to `SNAT_PROBES` ports are probed: the
    /// next one of the caller's `cursor` (in order, so that a quiet node's ports are
    /// predictable), then ports spread at random over the whole range, so that a run of used
    /// ports cannot hide the free ones; a port held by an expired flow is free at once; if every
    /// probe is held, the least recently seen flow among them that is not assured gives up its
    /// port (counted in `snat_reclaimed`).
    pub fn claim_reply(
        &mut self,
        reply: K,
        (lo, hi): (u16, u16),
        cursor: &mut u32,
        snat: bool,
        now: Instant,
    ) -> Result<K, ClaimError> {
        if !snat && self.free_or_reclaim(&reply, now).is_ok() {
            return Ok(reply);
        }
        let size = u32::from(hi.max(lo)) - u32::from(lo) + 1;
        let base = *cursor;
        *cursor = cursor.wrapping_add(1);
        let mut victim = None;
        for probe in 0..SNAT_PROBES {
            if probe >= SNAT_PROBES_BEFORE_RECLAIM && victim.is_some() {
                break;
            }
            let offset = if probe == 0 {
                base
            } else {
                crate::hash::mix64(u64::from(base) << 8 | probe as u64) as u32
            };
            let candidate = reply.with_dport(lo + (offset % size) as u16);
            match self.free_or_reclaim(&candidate, now) {
                Ok(()) => return Ok(candidate),
                Err(slot) => victim = self.older_victim(victim, slot, candidate),
            }
        }
        let (_, slot, candidate) = victim.ok_or(ClaimError::SnatExhausted)?;
        self.remove(slot);
        self.stats.snat_reclaimed += 1;
        Ok(candidate)
    }

    /// `Ok` when no live flow uses `key` (an expired one that did is removed now, as
    /// [`FlowTable::lookup`] does), else the slot of the flow that does.
    #[inline]
    fn free_or_reclaim(&mut self, key: &K, now: Instant) -> Result<(), u32> {
        match self.lookup(key, now) {
            None => Ok(()),
            Some((slot, _)) => Err(slot),
        }
    }

    /// `victim` or `slot` (with `what` it stands for), whichever flow was seen less recently,
    /// if `slot`'s flow may be dropped early (it is not assured): the choice of
    /// [`FlowTable::reclaim_slot`] and [`FlowTable::claim_reply`].
    #[inline]
    fn older_victim<T>(
        &self,
        victim: Option<(u64, u32, T)>,
        slot: u32,
        what: T,
    ) -> Option<(u64, u32, T)> {
        let f = &self.slots[slot as usize];
        if f.assured() {
            return victim;
        }
        let seen = self.last_seen(f);
        match victim {
            Some((v, _, _)) if v <= seen => victim,
            _ => Some((seen, slot, what)),
        }
    }

    /// Removes a flow and both its keys.
    pub fn remove(&mut self, slot: u32) {
        let flow = &mut self.slots[slot as usize];
        if !flow.live {
            return;
        }
        flow.live = false;
        let (o, r) = (flow.orig, flow.reply);
        let (ho, hr) = (self.index.hash(&o), self.index.hash(&r));
        self.index.remove(ho, slot << 1);
        self.index.remove(hr, (slot << 1) | 1);
        self.free.push(slot);
    }

    /// Examines up to `budget` slots from the clock hand and removes the expired flows among
    /// them; returns how many were removed. Expired flows are collected a few at a time and
    /// their index buckets prefetched before any is removed, so the removals' cache misses
    /// overlap.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        const BATCH: usize = 16;
        let n = self.slots.len();
        let mut removed = 0;
        let mut found = [0u32; BATCH];
        let mut k = 0;
        for step in 0..budget.min(n) {
            let i = self.hand;
            self.hand = if i + 1 == n { 0 } else { i + 1 };
            let f = &self.slots[i];
            if f.live && f.expires <= now {
                self.index.prefetch(self.index.hash(&f.orig));
                self.index.prefetch(self.index.hash(&f.reply));
                found[k] = i as u32;
                k += 1;
            }
            if k == BATCH || (step + 1 == budget.min(n) && k > 0) {
                for &slot in &found[..k] {
                    self.remove(slot);
                }
                self.stats.expired += k as u64;
                removed += k;
                k = 0;
            }
        }
        removed
    }

    /// Removes every flow `pred` selects (control-plane driven clean-ups); returns the count.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Flow<K>) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            if self.slots[i].live && pred(&self.slots[i]) {
                self.remove(i as u32);
                n += 1;
            }
        }
        n
    }

    /// Like [`FlowTable::remove_where`] over slots `from..from + budget` only, so a clean-up of
    /// a large table can be spread over many bursts. Returns the flows removed and the slot to
    /// continue from (`None` once the end of the table is reached).
    pub fn remove_where_from(
        &mut self,
        from: usize,
        budget: usize,
        mut pred: impl FnMut(&Flow<K>) -> bool,
    ) -> (usize, Option<usize>) {
        let end = from.saturating_add(budget).min(self.slots.len());
        let mut n = 0;
        for i in from..end {
            if self.slots[i].live && pred(&self.slots[i]) {
                self.remove(i as u32);
                n += 1;
            }
        }
        (n, (end < self.slots.len()).then_some(end))
    }

    /// Iterates over live flows.
    pub fn iter(&self) -> impl Iterator<Item = &Flow<K>> {
        self.slots.iter().filter(|f| f.live)
    }
}

/// The TCP state after a packet with `flags` in direction `dir`.
fn tcp_next(state: TcpState, dir: Dir, flags: u8, fin: &mut [bool; 2]) -> TcpState {
    use tcp_flags::*;
    use TcpState::*;
    let (syn, ack, f) = (flags & SYN != 0, flags & ACK != 0, flags & FIN != 0);
    if flags & RST != 0 {
        return Close;
    }
    match state {
        TimeWait | Close if dir == Dir::Orig && syn && !ack => {
            // A new connection reusing the tuple (Linux reopens it, keeping the NAT binding).
            *fin = [false; 2];
            return SynSent;
        }
        SynSent if dir == Dir::Reply && syn => return SynRecv,
        SynSent => return SynSent,
        SynRecv if dir == Dir::Orig && ack && !syn && !f => return Established,
        _ => {}
    }
    if f {
        fin[dir as usize] = true;
    }
    match (fin[0], fin[1]) {
        (true, true) => match state {
            LastAck | TimeWait if ack && !f => TimeWait,
            TimeWait => TimeWait,
            _ => LastAck,
        },
        (true, false) => FinWait,
        (false, true) => CloseWait,
        (false, false) => state,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::service::{PROTO_TCP, PROTO_UDP};
    use tcp_flags::*;

    fn key(sport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::new(192, 168, 1, 10),
            dst: Ipv4Addr::new(10, 96, 0, 10),
            sport,
            dport: 80,
            proto,
        }
    }

    fn reply_of(k: &FlowKey) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::new(10, 1, 0, 5),
            dst: k.src,
            sport: 8080,
            dport: k.sport,
            proto: k.proto,
        }
    }

    #[test]
    fn test_both_directions_find_the_flow() {
        let mut t = FlowTable::new(16, Timeouts::default());
        let k = key(1000, PROTO_TCP);
        let slot = t.insert(k, reply_of(&k), 0, SYN, Instant::ZERO).unwrap();
        assert_eq!(t.lookup(&k, Instant::ZERO), Some((slot, Dir::Orig)));
        assert_eq!(
            t.lookup(&reply_of(&k), Instant::ZERO),
            Some((slot, Dir::Reply))
        );
        let f = t.get(slot);
        let out = f.translated(Dir::Orig);
        assert_eq!((out.dst, out.dport), (Ipv4Addr::new(10, 1, 0, 5), 8080));
        let back = f.translated(Dir::Reply);
        assert_eq!((back.src, back.sport), (k.dst, 80));
        assert_eq!(
            t.insert(k, reply_of(&k), 0, SYN, Instant::ZERO),
            Err(CtError::Clash)
        );
    }

    #[test]
    fn test_flow_fits_one_cache_line() {
        assert_eq!(core::mem::size_of::<Flow>(), 64);
    }

    #[test]
    fn test_tcp_handshake_and_teardown_timeouts() {
        let to = Timeouts::default();
        let mut t = FlowTable::new(4, to);
        let k = key(1, PROTO_TCP);
        let now = Instant::from_secs(100);
        let s = t.insert(k, reply_of(&k), 0, SYN, now).unwrap();
        assert_eq!(t.get(s).tcp, TcpState::SynSent);
        assert_eq!(t.get(s).expires, now + to.tcp_syn_sent);
        t.update(s, Dir::Reply, SYN | ACK, now);
        assert_eq!(t.get(s).tcp, TcpState::SynRecv);
        t.update(s, Dir::Orig, ACK, now);
        assert_eq!(t.get(s).tcp, TcpState::Established);
        assert_eq!(t.get(s).expires, now + to.tcp_established);
        t.update(s, Dir::Orig, FIN | ACK, now);
        assert_eq!(t.get(s).tcp, TcpState::FinWait);
        t.update(s, Dir::Reply, FIN | ACK, now);
        assert_eq!(t.get(s).tcp, TcpState::LastAck);
        t.update(s, Dir::Orig, ACK, now);
        assert_eq!(t.get(s).tcp, TcpState::TimeWait);
        assert_eq!(t.get(s).expires, now + to.tcp_time_wait);
        // Reopened by a new SYN.
        t.update(s, Dir::Orig, SYN, now);
        assert_eq!(t.get(s).tcp, TcpState::SynSent);
        t.update(s, Dir::Reply, RST, now);
        assert_eq!(t.get(s).tcp, TcpState::Close);
        assert_eq!(t.get(s).expires, now + to.tcp_close);
    }

    #[test]
    fn test_udp_timeout_grows_when_replied() {
        let to = Timeouts::default();
        let mut t = FlowTable::new(4, to);
        let k = key(5, PROTO_UDP);
        let s = t.insert(k, reply_of(&k), 0, 0, Instant::ZERO).unwrap();
        assert_eq!(t.get(s).expires, Instant::ZERO + to.udp);
        t.update(s, Dir::Reply, 0, Instant::ZERO);
        assert_eq!(t.get(s).expires, Instant::ZERO + to.udp_stream);
        // Expired on lookup after the timeout.
        let late = Instant::ZERO + to.udp_stream;
        assert_eq!(t.lookup(&k, late), None);
        assert!(t.is_empty());
        assert_eq!(t.stats().expired, 1);
    }

    #[test]
    fn test_full_table_drops_the_least_recently_seen_half_open_flow_never_an_assured_one() {
        let to = Timeouts::default();
        let mut t = FlowTable::new(4, to);
        let tcp = |p| key(p, PROTO_TCP);
        let syn = tcp_flags::SYN;
        // An established connection (handshake done), then three half-open ones seen at 1, 2, 3 s.
        let e = t
            .insert(tcp(1), reply_of(&tcp(1)), 0, syn, Instant::ZERO)
            .unwrap();
        t.update(e, Dir::Reply, syn | tcp_flags::ACK, Instant::ZERO);
        t.update(e, Dir::Orig, tcp_flags::ACK, Instant::ZERO);
        assert!(t.get(e).assured());
        for (p, at) in [(2, 1), (3, 2), (4, 3)] {
            let s = t
                .insert(tcp(p), reply_of(&tcp(p)), 0, syn, Instant::from_secs(at))
                .unwrap();
            assert!(!t.get(s).assured());
        }
        // A SYN-ACK makes a half-open flow recent, not assured.
        let (s2, _) = t.lookup(&tcp(2), Instant::from_secs(4)).unwrap();
        t.update(s2, Dir::Reply, syn | tcp_flags::ACK, Instant::from_secs(4));
        assert!(!t.get(s2).assured());
        // Full: the new flow takes the slot of the least recently seen half-open one (3).
        let now = Instant::from_secs(5);
        t.insert(tcp(5), reply_of(&tcp(5)), 0, syn, now).unwrap();
        assert_eq!(t.stats().early_dropped, 1);
        assert!(!t.contains(&tcp(3)));
        for p in [1, 2, 4, 5] {
            assert!(t.contains(&tcp(p)), "{p}");
        }
        // Until only assured flows are left: then new flows are refused.
        for p in [2, 4, 5] {
            let (s, _) = t.lookup(&tcp(p), now).unwrap();
            t.update(s, Dir::Reply, syn | tcp_flags::ACK, now);
            t.update(s, Dir::Orig, tcp_flags::ACK, now);
        }
        assert_eq!(
            t.insert(tcp(6), reply_of(&tcp(6)), 0, syn, now),
            Err(CtError::Full)
        );
        assert!(
            t.lookup(&tcp(1), now).is_some(),
            "the established flow stays"
        );
        // A flow picked up mid-stream is not assured until it sees a reply.
        let mut m = FlowTable::new(1, to);
        let s = m
            .insert(tcp(7), reply_of(&tcp(7)), 0, tcp_flags::ACK, now)
            .unwrap();
        assert!(!m.get(s).assured());
        m.update(s, Dir::Reply, tcp_flags::ACK, now);
        assert!(m.get(s).assured());
    }

    #[test]
    fn test_snat_ports_are_unique_per_reply_tuple_expired_ones_free_and_half_open_reclaimed() {
        let to = Timeouts::default();
        let mut t = FlowTable::new(64, to);
        let now = Instant::from_secs(1);
        let reply_to = |backend: u8, client: u16| FlowKey {
            src: Ipv4Addr::new(10, 1, 0, backend),
            dst: Ipv4Addr::new(10, 0, 0, 1),
            sport: 8080,
            dport: client,
            proto: PROTO_TCP,
        };
        let range = (20000, 20003);
        let mut cursor = 0;
        let mut flows = Vec::new();
        // Four ports, two endpoints: eight flows, each port used once per endpoint.
        for backend in [5, 6] {
            for c in 0..4u16 {
                let r = t
                    .claim_reply(reply_to(backend, c), range, &mut cursor, true, now)
                    .unwrap();
                let orig = key(40000 + c + u16::from(backend) * 10, PROTO_TCP);
                let s = t.insert(orig, r, 0, tcp_flags::SYN, now).unwrap();
                t.update(s, Dir::Reply, tcp_flags::SYN | tcp_flags::ACK, now);
                t.update(s, Dir::Orig, tcp_flags::ACK, now);
                flows.push((s, r));
            }
        }
        let mut ports: Vec<(u8, u16)> = flows
            .iter()
            .map(|(_, r)| (r.src.octets()[3], r.dport))
            .collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 8, "every port twice, once per endpoint");
        // All four ports of endpoint 5 are held by established flows: exhausted.
        assert_eq!(
            t.claim_reply(reply_to(5, 9), range, &mut cursor, true, now),
            Err(ClaimError::SnatExhausted)
        );
        // One of them closes and its flow expires: its port is free at once, no sweep needed.
        let (s, r) = flows[1];
        t.update(s, Dir::Orig, tcp_flags::RST, now);
        let later = now + to.tcp_close;
        let got = t
            .claim_reply(reply_to(5, 9), range, &mut cursor, true, later)
            .unwrap();
        assert_eq!(got.dport, r.dport);
        assert_eq!(t.stats().expired, 1);
        // A half-open flow holding a port gives it up to a new flow.
        let orig = key(41000, PROTO_TCP);
        let half = t.insert(orig, got, 0, tcp_flags::SYN, later).unwrap();
        assert!(!t.get(half).assured());
        let again = t
            .claim_reply(reply_to(5, 10), range, &mut cursor, true, later)
            .unwrap();
        assert_eq!(again.dport, got.dport);
        assert_eq!(t.stats().snat_reclaimed, 1);
        assert!(!t.contains(&orig));
    }

    #[test]
    fn test_snat_search_finds_the_free_ports_behind_a_long_run_of_used_ones() {
        let to = Timeouts::default();
        let mut t = FlowTable::new(4096, to);
        let now = Instant::from_secs(1);
        let reply = FlowKey {
            src: Ipv4Addr::new(10, 1, 0, 5),
            dst: Ipv4Addr::new(10, 0, 0, 1),
            sport: 8080,
            dport: 0,
            proto: PROTO_TCP,
        };
        // Ports 20000..=21999 in use by established flows, 22000..=22999 free.
        for p in 20000..22000u16 {
            let r = reply.with_dport(p);
            let s = t
                .insert(key(p, PROTO_TCP), r, 0, tcp_flags::ACK, now)
                .unwrap();
            t.update(s, Dir::Reply, tcp_flags::ACK, now);
        }
        let mut cursor = 0;
        let mut found = 0;
        for _ in 0..100 {
            if let Ok(r) = t.claim_reply(reply, (20000, 22999), &mut cursor, true, now) {
                assert!(r.dport >= 22000);
                found += 1;
            }
        }
        assert!(found >= 99, "{found} of 100");
    }

    #[test]
    fn test_full_table_reclaims_expired_then_refuses() {
        let to = Timeouts::default();
        let mut t = FlowTable::new(2, to);
        let a = key(1, PROTO_UDP);
        let b = key(2, PROTO_UDP);
        let c = key(3, PROTO_UDP);
        let sa = t.insert(a, reply_of(&a), 0, 0, Instant::ZERO).unwrap();
        t.update(sa, Dir::Reply, 0, Instant::ZERO);
        let later = Instant::from_secs(20);
        let sb = t.insert(b, reply_of(&b), 0, 0, later).unwrap();
        t.update(sb, Dir::Reply, 0, later);
        // Full of live, assured (replied) flows: refused, nothing evicted.
        assert_eq!(t.insert(c, reply_of(&c), 0, 0, later), Err(CtError::Full));
        assert_eq!(t.stats().refused_full, 1);
        assert!(t.lookup(&a, later).is_some());
        // Once `a` has expired, `c` takes its slot; `b` (still live) stays.
        let after_a = Instant::ZERO + to.udp_stream;
        assert!(t.insert(c, reply_of(&c), 0, 0, after_a).is_ok());
        assert!(t.lookup(&b, after_a).is_some());
        assert!(t.lookup(&c, after_a).is_some());
        assert!(!t.contains(&a));
    }

    #[test]
    fn test_sweep_removes_every_expired_flow_in_batches() {
        let to = Timeouts::default();
        let mut t = FlowTable::new(100, to);
        for i in 0..100u16 {
            let k = key(i, PROTO_UDP);
            // Odd flows are created later and outlive the sweep.
            let at = if i % 2 == 0 {
                Instant::ZERO
            } else {
                Instant::from_secs(20)
            };
            t.insert(k, reply_of(&k), 0, 0, at).unwrap();
        }
        let now = Instant::ZERO + to.udp;
        assert_eq!(
            t.sweep(now, 37),
            19,
            "a budget of 37 slots holds 19 expired flows"
        );
        assert_eq!(t.sweep(now, 1000), 31);
        assert_eq!(t.len(), 50);
        assert_eq!(t.stats().expired, 50);
        for i in 0..100u16 {
            let k = key(i, PROTO_UDP);
            assert_eq!(t.contains(&k), i % 2 == 1, "flow {i}");
        }
    }

    #[test]
    fn test_churn_leaves_the_index_empty() {
        let mut t = FlowTable::new(64, Timeouts::default());
        for i in 0..100_000u32 {
            let k = key((i % 60_000) as u16, PROTO_UDP);
            let s = t.insert(k, reply_of(&k), 0, 0, Instant::ZERO).unwrap();
            t.remove(s);
        }
        assert!(t.is_empty());
        assert!(t.index.is_empty());
    }
}
