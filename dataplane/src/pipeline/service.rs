//! **service**: the Service path, written once for both address families: steer, ct-lookup,
//! nat on a hit, svc-lookup, admission, endpoint choice, SNAT, ct-create and reject on a miss,
//! the fragment home, ICMP errors about flows, and the UDP flush. Monomorphised for
//! [`V4`](super::family::V4) and [`V6`](super::family::V6); what the protocols make different is in [`Family`].
//!
//! ```text
//!  ip4-input / ip6-input ─► steer ─► ct-lookup ─┬─ hit ─► ttl ─► nat44 / nat66 ─► ip-output
//!     (FlowPacket)           │                   └─ miss ─► svc-lookup ─┬─ Balance ─► ttl ─► ct-create ─► nat(+snat) ─► ip-output
//!               handoff ◄────┘                                          ├─ Reject ─► tcp-rst / icmp(6)-unreachable
//!                                                                       ├─ Drop (policy Local, none here)
//!                                                                       └─ none ─► back to the input stage (local / forward)
//!  ICMP error quoting a flow's packet ─► steer ─► ct-lookup ─► translate back ─► ip-output
//! ```
//!
//! Reads a [`FlowPacket`], which the family's input stage fills: the flow tuple, TCP flags,
//! where L4 starts, the TTL or hop limit, the fragment kind, and the burst pass's hash. Sets
//! the flow table (a new flow, its state, the SNAT port it claimed) and the packet's addresses,
//! ports and checksums. Next: `handoff` (the flow belongs to another worker), `ip-output`,
//! `icmp-error` (TTL at the last hop, port unreachable), or `None`: back to the input stage for
//! what no flow and no Service claims.

use super::family::Family;
use super::{Action, Worker};
use crate::conntrack::{tcp_flags, CtError, FlowTable, Tuple, NO_FRONTEND};
use crate::drop::DropReason;
use crate::frag::DatagramId;
use crate::mbuf::Mbuf;
use crate::nat::PROTO_ICMP;
use crate::neighbor::AffinityTable;
use crate::port::PortId;
use crate::route::prefix_contains;
use crate::service::{
    Address, BackendSet, Frontend, FrontendAction, FrontendKind, ServiceTable, PROTO_TCP, PROTO_UDP,
};
use crate::tables::Tables;
use crate::time::Instant;
use crate::wire::TcpPacket;
use core::time::Duration;

/// Whether a packet is a fragment, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fragment {
    Whole,
    /// The first fragment: it has the L4 header.
    First,
    /// A later fragment: no L4 header; its ports came from the first one's.
    Later,
}

impl Fragment {
    pub fn of(fragmented: bool, later: bool) -> Fragment {
        match (fragmented, later) {
            (_, true) => Fragment::Later,
            (true, false) => Fragment::First,
            (false, false) => Fragment::Whole,
        }
    }
}

/// What the Service path reads of a packet with a flow tuple, in one shape for both
/// families (ip4-input or ip6-input fills it).
pub(super) struct FlowPacket<'a, F: Family> {
    /// What the family's input stage found (for the errors the path answers).
    pub meta: &'a F::Meta,
    pub key: F::Key,
    /// TCP flags (0 for other protocols and later fragments).
    pub flags: u8,
    /// The flow hash the burst pass computed (and prefetched) for `key`, if it did.
    pub hash: Option<u64>,
    /// On its owner already: handed over, or placed by its datagram's home worker.
    pub steered: bool,
    /// Sent by the node's kernel (read from a host port): an in-cluster client.
    pub kernel: bool,
}

impl<F: Family> FlowPacket<'_, F> {
    /// Where the L4 header starts in the frame.
    fn l4(&self) -> usize {
        F::l4(self.meta)
    }

    /// The TTL or hop limit as the packet arrived.
    fn hop(&self) -> u8 {
        F::hop(self.meta)
    }

    fn fragment(&self) -> Fragment {
        F::fragment(self.meta)
    }
}

// By hand: a derive would ask `F: Copy` of the family marker.
impl<F: Family> Clone for FlowPacket<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Family> Copy for FlowPacket<'_, F> {}

impl Worker {
    /// The Service path of a packet with a flow tuple. What no flow and no Service claims
    /// goes back to the input stage ([`Family::unclaimed`]: delivered to the node or
    /// forwarded). One call site per family, so it is inlined into the burst loop.
    #[inline(always)]
    pub(super) fn flow<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        p: FlowPacket<F>,
    ) -> Action {
        let key = &p.key;
        // steer
        if self.cfg.workers > 1 && !p.steered {
            let owner = self.owner_of::<F>(t, key);
            if owner != self.cfg.id {
                return Action::Handoff(owner);
            }
        }
        let (_, dst, _, dport, proto) = F::parts(key);
        // ct-lookup
        let now = self.now;
        let (ct, _) = F::tables(self);
        let found = match p.hash {
            Some(h) => ct.lookup_hashed(key, h, now),
            None => ct.lookup(key, now),
        };
        let frontend = match found {
            Some(_) => None,
            None if proto == PROTO_ICMP => return F::unclaimed(self, t, m, port, p.meta),
            // svc-lookup
            None => match F::services(t).lookup(proto, dst, dport) {
                Some(fe) => Some(fe),
                None => return F::unclaimed(self, t, m, port, p.meta),
            },
        };
        // A flow or a Service claims the packet. With no hop left it is answered as it
        // arrived, also at one of the node's own addresses (a NodePort): Linux drops the
        // unconfirmed conntrack entry and answers time exceeded from the forward path. No
        // flow is created.
        if p.hop() <= 1 {
            return F::time_exceeded(self, t, m, port, p.meta);
        }
        let fragment = p.fragment();
        // A fragment of a protocol whose fragments are not matched to flows: its checksum
        // cannot be patched from the first fragment alone.
        if fragment != Fragment::Whole && !fragments_tracked(proto) {
            return Action::Drop(F::FRAGMENT);
        }
        let Some((slot, dir)) = found else {
            // A new flow starts with a whole packet or a first fragment (which has the ports
            // and the checksum to translate).
            if fragment == Fragment::Later {
                return Action::Drop(F::FRAGMENT);
            }
            let Some((id, fe)) = frontend else {
                return F::unclaimed(self, t, m, port, p.meta);
            };
            // By value: only this branch puts the packet's facts in memory, the established
            // path keeps them in registers.
            return self.svc_new_flow(t, m, port, p, id, fe);
        };
        let (ct, _) = F::tables(self);
        ct.update(slot, dir, p.flags, now);
        let flow = ct.get(slot);
        let to = flow.translated(dir);
        if fragment == Fragment::Later {
            // No L4 header: the first fragment's carried the ports and the checksum.
            F::rewrite_fragment(m, key, &to);
        } else {
            F::rewrite(m, p.l4(), key, &to, flow.delta[dir as usize]);
        }
        let (_, to_dst, ..) = F::parts(&to);
        F::output(self, t, m, to_dst)
    }

    /// An ICMP error about a packet of a flow (a router's packet too big or time exceeded,
    /// an endpoint's port unreachable): translated back for the side that sent the packet.
    /// `key` is the reverse of the quoted packet's tuple, the direction the error travels,
    /// and the error belongs to the worker that owns that flow. `None` when no flow claims it.
    pub(super) fn flow_icmp_error<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        key: &F::Key,
        (hop, fragmented): (u8, bool),
        steered: bool,
    ) -> Option<Action> {
        if self.cfg.workers > 1 && !steered {
            let owner = self.owner_of::<F>(t, key);
            if owner != self.cfg.id {
                return Some(Action::Handoff(owner));
            }
        }
        let now = self.now;
        let (ct, _) = F::tables(self);
        let (slot, dir) = ct.lookup(key, now)?;
        if fragmented {
            return Some(Action::Drop(F::FRAGMENT));
        }
        // Never an error about an error.
        if hop <= 1 {
            return Some(Action::Drop(F::HOP_EXCEEDED));
        }
        let flow = *ct.get(slot);
        let dst = F::translate_icmp_error(m, &flow, dir);
        Some(F::output(self, t, m, dst))
    }

    /// The fragment step both families share: on the datagram's home worker (else `Err`: hand
    /// it there), the first fragment's ports are remembered and given to the later ones
    /// (`key` has the ports of a first fragment, 0 for a later one); then the fragment goes to
    /// its flow's owner (`Err` again when that is another worker). `Ok(None)`: a later fragment
    /// whose first one was not seen (`fragments_unmatched`).
    pub(super) fn fragment_ports<F: Family>(
        &mut self,
        t: &Tables,
        key: F::Key,
        ident: u32,
        later: bool,
    ) -> Result<Option<F::Key>, Action> {
        let (src, dst, sport, dport, proto) = F::parts(&key);
        let id = F::frag_id(src, dst, proto, ident);
        self.fragment_home(id.hash())?;
        let first = (!later).then_some((sport, dport));
        let now = self.now;
        let ports = F::frags(self).ports_of(id, first, now);
        let Some((sport, dport)) = ports else {
            self.stats.fragments_unmatched += 1;
            return Ok(None);
        };
        let key = F::key(src, dst, sport, dport, proto);
        if self.cfg.workers > 1 {
            let owner = self.owner_of::<F>(t, &key);
            if owner != self.cfg.id {
                return Err(Action::HandoffFragment(owner, (sport, dport)));
            }
        }
        Ok(Some(key))
    }

    /// `Ok` on a fragment's home worker (chosen by `hash`, its datagram's identity), else where
    /// to hand it.
    pub(super) fn fragment_home(&self, hash: u64) -> Result<(), Action> {
        let home = (hash % self.cfg.workers as u64) as usize;
        if home == self.cfg.id {
            Ok(())
        } else {
            Err(Action::Handoff(home))
        }
    }

    /// The worker that owns the flow `key` belongs to (see `docs/architecture.md`):
    /// replies to SNATed flows by SNAT port range, new Service flows by client address, and
    /// everything else (un-SNATed replies, plain traffic) by destination address, which for a
    /// reply is the client.
    #[inline]
    pub(super) fn owner_of<F: Family>(&self, t: &Tables, key: &F::Key) -> usize {
        let n = self.cfg.workers as u64;
        let (src, dst, _, dport, proto) = F::parts(key);
        if F::is_local(t, dst) || F::loopback(t) == Some(dst) {
            if let Some(w) = self.cfg.snat_owner(dport) {
                return w;
            }
        }
        if proto != PROTO_ICMP && F::services(t).lookup(proto, dst, dport).is_some() {
            return (F::addr_hash(src) % n) as usize;
        }
        (F::addr_hash(dst) % n) as usize
    }

    /// svc-lookup's Balance: admission, the endpoint, the reply tuple (SNAT where the Service
    /// asks for it, or for a hairpin), ct-create and the rewrite of the first packet.
    fn svc_new_flow<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        p: FlowPacket<F>,
        frontend_id: u32,
        fe: &Frontend<F::Addr>,
    ) -> Action {
        let (key, flags) = (&p.key, p.flags);
        let (src, dst, sport, _, proto) = F::parts(key);
        let set = match admit(fe, (src, dst), proto, flags, p.kernel) {
            Admit::Balance(set) => set,
            Admit::Drop(r) => return Action::Drop(r),
            Admit::Reject => return self.reject(t, m, port, &p),
        };
        let now = self.now;
        let (baddr, bport) = {
            let (_, affinity) = F::tables(self);
            choose_backend(affinity, fe, set, src, now, || F::flow_hash(key))
        };
        let Some(hop) = F::routes(t).lookup(baddr).copied() else {
            return Action::Drop(F::NO_ROUTE);
        };
        let (loopback, cluster) = (F::loopback(t), F::cluster(t));
        // An endpoint behind the node's kernel: a pod of this node, or the node itself.
        let behind_kernel = F::is_local(t, hop.neighbor_for(baddr));
        // SNAT where the Service asks for it; for a hairpin (a client reaching itself, or a
        // client and an endpoint both behind the kernel), or its reply would bypass us; and
        // kube-proxy's masquerade of ClusterIP traffic from outside the cluster's prefixes.
        let snat = fe.snat
            || src == baddr
            || (p.kernel && behind_kernel)
            || (fe.kind == FrontendKind::ClusterIp
                && !cluster.is_empty()
                && !cluster.iter().any(|&(a, l)| prefix_contains(a, l, src)));
        // Behind the kernel, the node's own address would be delivered to the kernel itself:
        // the service loopback address is routed back to us instead.
        let snat_src = match loopback {
            Some(l) if behind_kernel => l,
            _ => hop.src,
        };
        let reply = F::key(
            baddr,
            if snat { snat_src } else { src },
            bport,
            sport,
            proto,
        );
        let (chunk, mut cursor) = (self.snat_chunk, self.snat_cursor);
        let (ct, affinity) = F::tables(self);
        let reply = reply_tuple(ct, chunk, &mut cursor, reply, snat, now);
        let reply = match reply {
            Ok(reply) => reply,
            Err(r) => {
                self.snat_cursor = cursor;
                return Action::Drop(r);
            }
        };
        // `key` missed in ct-lookup and `reply` was just probed free.
        let new = NewFlow {
            key: *key,
            reply,
            frontend: frontend_id,
            client: src,
            backend: (baddr, bport),
            flags,
        };
        let created = create_flow(ct, affinity, fe, new, now);
        let delta = created.map(|slot| ct.get(slot).delta[0]);
        self.snat_cursor = cursor;
        let delta = match delta {
            Ok(delta) => delta,
            Err(r) => return Action::Drop(r),
        };
        // TTL is at least 2 here (checked for everything a Service claims).
        F::rewrite(m, p.l4(), key, &reply.reverse(), delta);
        F::output(self, t, m, baddr)
    }

    /// kube-proxy's REJECT for a Service without endpoints: TCP RST, else ICMP port
    /// unreachable, sent from the Service address.
    fn reject<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        p: &FlowPacket<F>,
    ) -> Action {
        self.count(DropReason::SvcRejected);
        let (flags, l4) = (p.flags, p.l4());
        let (src, dst, sport, dport, proto) = F::parts(&p.key);
        if proto != PROTO_TCP {
            return F::port_unreachable(self, t, m, port, p.meta, dst);
        }
        if flags & tcp_flags::RST != 0 {
            return Action::Free;
        }
        // The input stage checked the segment's lengths for a whole packet; a first fragment
        // is checked here, as the answer depends on them.
        let Ok(tcp) = TcpPacket::new_checked(&m[l4..]) else {
            return Action::Drop(DropReason::L4Malformed);
        };
        let (seq, ack, payload) = (
            tcp.seq_number(),
            tcp.ack_number(),
            tcp.payload().len() as u32,
        );
        let (rst_seq, rst_ack, rst_flags) = rst_for(flags, seq, ack, payload);
        let at = F::write_tcp_packet(m, dst, src);
        let mut tcp = TcpPacket::new_unchecked(&mut m[at..]);
        tcp.set_src_port(dport);
        tcp.set_dst_port(sport);
        tcp.set_seq_number(rst_seq);
        tcp.set_ack_number(rst_ack);
        tcp.set_header_len(20);
        tcp.set_flags(rst_flags);
        tcp.set_window_len(0);
        F::tcp_checksum(&mut tcp, dst, src);
        self.stats.tcp_resets_sent += 1;
        F::output(self, t, m, src)
    }

    /// A slice of the UDP clean-up of one family's flow table (see `check_udp_flows`), from
    /// slot `from`: how many flows it removed, and where the next slice starts.
    pub(super) fn check_udp<F: Family>(
        &mut self,
        t: &Tables,
        from: usize,
    ) -> (usize, Option<usize>) {
        let (ct, _) = F::tables(self);
        ct.remove_where_from(from, UDP_CHECK_BUDGET, |f| {
            let (_, dst, _, dport, proto) = F::parts(&f.orig);
            let (bsrc, _, bport, _, _) = F::parts(&f.reply);
            proto == PROTO_UDP
                && f.frontend != NO_FRONTEND
                && !keeps_udp_flow(F::services(t), (proto, dst, dport), (bsrc, bport))
        })
    }
}

/// The protocols whose fragments are matched to flows (the others' are not translated: their
/// checksums cannot be patched from the first fragment alone, or they have no ports).
pub(super) fn fragments_tracked(proto: u8) -> bool {
    proto == PROTO_TCP || proto == PROTO_UDP
}

/// Flow slots the UDP clean-up examines per poll.
pub(super) const UDP_CHECK_BUDGET: usize = 4096;

/// Whether a UDP flow to the frontend (proto, address, port), translated to `endpoint`, may
/// stay after a table change (see [`Worker::check_udp_flows`]).
pub(super) fn keeps_udp_flow<A: Address>(
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
pub(super) enum Admit<'a, A> {
    Balance(&'a BackendSet<A>),
    /// kube-proxy's REJECT: the caller answers (TCP RST, ICMP port unreachable).
    Reject,
    Drop(DropReason),
}

/// The checks every new Service flow passes, in kube-proxy's order: the load balancer's source
/// ranges, the frontend's verdict, and no flow started by a TCP RST.
pub(super) fn admit<A: Address>(
    fe: &Frontend<A>,
    (src, dst): (A, A),
    proto: u8,
    flags: u8,
    kernel: bool,
) -> Admit<'_, A> {
    if let Some(ranges) = &fe.source_ranges {
        if !ranges.allows(src, dst) {
            return Admit::Drop(DropReason::SvcSourceNotAllowed);
        }
    }
    // In-cluster clients of a Local load balancer IP or external IP use every endpoint
    // (kube-proxy's short-circuit).
    let action = match &fe.internal {
        Some(internal) if kernel => internal,
        _ => &fe.action,
    };
    match action {
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
pub(super) fn choose_backend<A: Address>(
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
pub(super) struct NewFlow<K, A> {
    pub key: K,
    pub reply: K,
    pub frontend: u32,
    pub client: A,
    pub backend: (A, u16),
    pub flags: u8,
}

/// Creates the flow (both keys were just seen free) and remembers the client's endpoint when
/// the Service has session affinity.
pub(super) fn create_flow<K: Tuple, A: Address>(
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
pub(super) fn reply_tuple<K: Tuple>(
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
pub(super) fn rst_for(flags: u8, seq: u32, ack: u32, payload: u32) -> (u32, u32, u8) {
    if flags & tcp_flags::ACK != 0 {
        (ack, 0, tcp_flags::RST)
    } else {
        let len = payload
            + u32::from(flags & tcp_flags::SYN != 0)
            + u32::from(flags & tcp_flags::FIN != 0);
        (0, seq.wrapping_add(len), tcp_flags::RST | tcp_flags::ACK)
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod test;
