//! **service** (IPv6): steer, ct-lookup, svc-lookup and nat66 for IPv6 Services, the IPv6 entry
//! to the Service path whose family-generic half (new flow, reject, owner, UDP flush) is in
//! [`super::service`].
//!
//! ```text
//!  ip6-input ─► flow tuple? ─► steer ─► ct-lookup ─┬─ hit ─► nat66 ─► ip6-output
//!                  │                                └─ miss ─► svc-lookup ─┬─ Balance ─► ct-create ─► nat66 ─► ip6-output
//!                  │                                                        ├─ Reject ─► tcp-rst / icmp6-unreachable
//!                  │                                                        ├─ Drop (policy Local, none here)
//!                  └─ no (ICMPv6, NDP, ESP/AH) or unclaimed ────────────────┴─ none ─► ip6-input (routing, ip6-local)
//! ```
//!
//! Reads [`Ip6Meta`] (`classify_ip6`'s tuple). Sets the IPv6 flow table and the packet's
//! addresses, ports and checksums. Next: `handoff`, `ip6-output`, `icmp-error` (hop limit at
//! the last hop, port unreachable), or back to `ip6-input` for what no flow and no Service
//! claims (`None`).
//!
//! The tuple is found after the extension headers a host may send (hop-by-hop and destination
//! options, a finished routing header, a fragment header). Fragments of TCP and UDP follow their
//! datagram's first fragment as in IPv4 ([`crate::frag`]): a home worker per datagram keeps the
//! first fragment's ports, and later fragments get their addresses translated.
//!
//! ICMPv6 errors quoting a packet of a Service flow (packet too big above all: IPv6 routers do
//! not fragment) are translated back like IPv4's ([`nat66::translate_icmp_error`]).
//!
//! The same rules as IPv4 ([`super`]): one owner per flow (replies to SNATed flows by SNAT port,
//! new Service flows by client address, the rest by destination), flows keep their endpoint
//! across table changes, stale UDP flows are flushed, and nothing allocates. IPv6 flows live in
//! a table of their own ([`FlowTable<FlowKey6>`]) so IPv4 flows still take one cache line.

use super::family::V6;
use super::ip6_input::{Ip6Meta, Tuple6};
use super::{Action, Worker, L2};
use crate::conntrack::FlowTable;
use crate::drop::DropReason;
use crate::ip6;
use crate::mbuf::Mbuf;
use crate::nat66::{self, FlowKey6};
use crate::port::PortId;
use crate::tables::Tables;
use crate::wire::Ipv6Packet;

impl Worker {
    /// An IPv6 frame that may belong to a Service flow. `None` when no flow and no Service
    /// claims it (or it carries no TCP/UDP/SCTP tuple): the caller routes it or hands it to the
    /// node as before.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ip6_flow(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        meta: &Ip6Meta,
        hash: Option<u64>,
        steered: bool,
        fragment_ports: Option<(u16, u16)>,
    ) -> Option<Action> {
        if t.services6.is_empty() && self.ct6.is_empty() {
            return None;
        }
        match meta.tuple {
            Tuple6::None => return None,
            Tuple6::Malformed => return Some(Action::Drop(DropReason::L4Malformed)),
            Tuple6::IcmpError => {
                let quoted = nat66::icmp_error_quote(&m[L2..])?;
                return self.icmp6_error_of_flow(t, m, quoted, steered);
            }
            Tuple6::Found => {}
        }
        let (mut key, flags, l4) = (meta.key(m), meta.flags, usize::from(meta.l4));
        if key.dst.is_multicast() || key.src.is_multicast() || ip6::is_link_local(key.dst) {
            return None;
        }
        let mut steered = steered;
        let mut hash = hash;
        let later = matches!(meta.fragment, Some((_, true)));
        if let Some((ident, later)) = meta.fragment {
            if !super::ip4_input::fragments_tracked(key.proto) {
                return None;
            }
            match self.fragment_key6(t, key, ident, later, fragment_ports) {
                Ok(Some(k)) => (key, steered, hash) = (k, true, None),
                Ok(None) => return None,
                Err(action) => return Some(action),
            }
        }
        if self.cfg.workers > 1 && !steered {
            let owner = self.owner_of::<V6>(t, &key);
            if owner != self.cfg.id {
                return Some(Action::Handoff(owner));
            }
        }
        let found = match hash {
            Some(h) => self.ct6.lookup_hashed(&key, h, self.now),
            None => self.ct6.lookup(&key, self.now),
        };
        let frontend = match found {
            Some(_) => None,
            // A flow starts with a whole packet or a first fragment.
            None if later => {
                t.services6.lookup(key.proto, key.dst, key.dport)?;
                return Some(Action::Drop(DropReason::Ip6Fragment));
            }
            None => Some(t.services6.lookup(key.proto, key.dst, key.dport)?),
        };
        if meta.hop <= 1 {
            // A flow or a Service claims it, also at one of the node's own addresses (a
            // NodePort): answered with time exceeded, as IPv4 is, and no flow is created.
            return Some(self.icmp6_error(
                t,
                m,
                port,
                key.src,
                None,
                (crate::wire::icmpv6::msg_type::TIME_EXCEEDED, 0),
                Some(DropReason::Ip6HopLimitExceeded),
            ));
        }
        if let Some((slot, dir)) = found {
            self.ct6.update(slot, dir, flags, self.now);
            let flow = self.ct6.get(slot);
            let to = flow.translated(dir);
            if later {
                nat66::forward_addresses(&mut m[L2..], &to);
            } else {
                let delta = flow.delta[dir as usize];
                nat66::forward_with(&mut m[L2..], l4, &key, &to, delta);
            }
            return Some(self.ip6_output(t, m, to.dst));
        }
        let (id, fe) = frontend?;
        Some(self.svc_new_flow::<V6>(t, m, port, (meta, L2 + l4), &key, id, fe, flags))
    }

    /// The tuple of a TCP or UDP fragment, as [`Worker::fragment_key`] for IPv4: the datagram's
    /// home worker keeps its first fragment's ports for the later ones, then the fragment goes
    /// to its flow's owner. `fragment_ports` are the ports a home worker already found.
    #[cold]
    #[inline(never)]
    fn fragment_key6(
        &mut self,
        t: &Tables,
        key: FlowKey6,
        ident: u32,
        later: bool,
        fragment_ports: Option<(u16, u16)>,
    ) -> Result<Option<FlowKey6>, Action> {
        if let Some((sport, dport)) = fragment_ports {
            return Ok(Some(FlowKey6 {
                sport,
                dport,
                ..key
            }));
        }
        self.fragment_ports::<V6>(t, key, ident, later)
    }

    /// An ICMPv6 error about a packet of a Service flow (a router's packet too big or time
    /// exceeded, an endpoint's port unreachable): translated back for the side that sent the
    /// packet, as for IPv4. `None` when no flow claims it: routed or delivered as before.
    fn icmp6_error_of_flow(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        quoted: FlowKey6,
        steered: bool,
    ) -> Option<Action> {
        // The error travels against the quoted packet: its key is the quote's reverse, and it
        // belongs to the worker that owns that flow.
        let key = quoted.reverse();
        if self.cfg.workers > 1 && !steered {
            let owner = self.owner_of::<V6>(t, &key);
            if owner != self.cfg.id {
                return Some(Action::Handoff(owner));
            }
        }
        let (slot, dir) = self.ct6.lookup(&key, self.now)?;
        if Ipv6Packet::new_unchecked(&m[L2..]).hop_limit() <= 1 {
            return Some(Action::Drop(DropReason::Ip6HopLimitExceeded));
        }
        let flow = *self.ct6.get(slot);
        let to = nat66::translate_icmp_error(&mut m[L2..], &flow, dir);
        Some(self.ip6_output(t, m, to))
    }

    /// This worker's IPv6 flow table.
    pub fn flows6(&self) -> &FlowTable<FlowKey6> {
        &self.ct6
    }
}
