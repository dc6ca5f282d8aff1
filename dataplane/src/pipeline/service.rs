//! **service** (IPv4): steer, ct-lookup, svc-lookup, reject, nat44 and the fragment home, and
//! the pieces both families share (admission, endpoint choice, flow creation, the UDP flush
//! rule).
//!
//! ```text
//!  ip4-input ─► steer ─► ct-lookup ─┬─ hit ─► nat44 ─► ip4-output
//!                 │                  └─ miss ─► svc-lookup ─┬─ Balance ─► ct-create ─► nat44-dnat(+snat) ─► ip4-output
//!   handoff ◄─────┘                                          ├─ Reject ─► tcp-rst / icmp-unreachable
//!                                                            ├─ Drop (policy Local, none here)
//!                                                            └─ none ─► ip4-local / ip4-forward
//! ```
//!
//! Reads [`Ip4Meta`] and the flow tuple `classify_ip4` found. Sets the flow table (a new flow,
//! its state, the SNAT port it claimed) and the packet's addresses, ports and checksums.
//! Next: `handoff` (the flow belongs to another worker), `ip4-output`, `icmp-error` (TTL at
//! the last hop, port unreachable), or back to `ip4-input` for what no flow and no Service
//! claims. The IPv6 half is [`super::service6`].

use super::family::{Family, V4};
use super::ip4_input::fragments_tracked;
use super::{Action, Ip4Meta, Worker, L2};
use crate::conntrack::{tcp_flags, CtError, FlowKey, FlowTable, Tuple, NO_FRONTEND};
use crate::drop::DropReason;
use crate::frag::DatagramId;
use crate::mbuf::Mbuf;
use crate::nat::{self, PROTO_ICMP};
use crate::neighbor::AffinityTable;
use crate::port::PortId;
use crate::service::{
    Address, BackendSet, Frontend, FrontendAction, ServiceTable, PROTO_TCP, PROTO_UDP,
};
use crate::tables::Tables;
use crate::time::Instant;
use crate::wire::{icmpv4, TcpPacket};
use core::time::Duration;

impl Worker {
    /// A packet with a flow tuple: steer, ct-lookup, nat44, svc-lookup.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ip4_flow(
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
            let owner = self.owner_of::<V4>(t, &key);
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
                return self.svc_new_flow::<V4>(t, m, port, (&meta, meta.l4), &key, id, fe, flags);
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
    pub(super) fn fragment_key(
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
        if meta.fragment_resolved {
            return Ok((key, true));
        }
        let first = key
            .filter(|_| !meta.later_fragment)
            .map_or((0, 0), |k| (k.sport, k.dport));
        let key = V4::key(meta.src, meta.dst, first.0, first.1, meta.proto);
        let found =
            self.fragment_ports::<V4>(t, key, u32::from(meta.ident), meta.later_fragment)?;
        Ok((found, true))
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
        if F::is_local(t, dst) {
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
    /// asks for it, or for a hairpin), ct-create and the rewrite of the first packet. `l4` is
    /// where its L4 header starts in the frame.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn svc_new_flow<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        (meta, l4): (&F::Meta, usize),
        key: &F::Key,
        frontend_id: u32,
        fe: &Frontend<F::Addr>,
        flags: u8,
    ) -> Action {
        let (src, dst, sport, _, proto) = F::parts(key);
        let set = match admit(fe, (src, dst), proto, flags) {
            Admit::Balance(set) => set,
            Admit::Drop(r) => return Action::Drop(r),
            Admit::Reject => return self.reject::<F>(t, m, port, (meta, l4), key, flags),
        };
        let now = self.now;
        let (baddr, bport) = {
            let (_, affinity) = F::tables(self);
            choose_backend(affinity, fe, set, src, now, || F::flow_hash(key))
        };
        let Some(hop_src) = F::route_src(t, baddr) else {
            return Action::Drop(F::NO_ROUTE);
        };
        // Hairpin: a client reaching itself through the Service is SNATed (kube-proxy does the
        // same) or its reply would bypass us.
        let snat = fe.snat || src == baddr;
        let reply = F::key(baddr, if snat { hop_src } else { src }, bport, sport, proto);
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
        // TTL is at least 2 here (checked before svc-lookup for everything a Service claims).
        F::rewrite(m, l4, key, &reply.reverse(), delta);
        F::output(self, t, m, baddr)
    }

    /// kube-proxy's REJECT for a Service without endpoints: TCP RST, else ICMP port
    /// unreachable, sent from the Service address.
    fn reject<F: Family>(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        (meta, l4): (&F::Meta, usize),
        key: &F::Key,
        flags: u8,
    ) -> Action {
        self.count(DropReason::SvcRejected);
        let (src, dst, sport, dport, proto) = F::parts(key);
        if proto != PROTO_TCP {
            return F::port_unreachable(self, t, m, port, meta, dst);
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
) -> Admit<'_, A> {
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
