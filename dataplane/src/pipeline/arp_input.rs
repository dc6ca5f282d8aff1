//! **arp-input**: ARP (RFC 826) by Linux's rules, the mirror of `nd-input`.
//!
//! Reads an ARP frame from `eth-input`, or a copy another worker made (`learn_only`: every
//! worker's neighbour cache learns). Sets the IPv4 neighbour cache (`neigh`) and releases the
//! frames held for the sender (`neighbour`). Next: a reply to a request for a node address goes
//! out of the port it came in (`tx`); replies to the node also go up to the kernel
//! (`host-punt`); the rest ends here. `send_arp_request` is what `neighbour` calls to resolve
//! an IPv4 next hop.

use super::{Action, Worker, L2};
use crate::drop::DropReason;
use crate::mbuf::Mbuf;
use crate::port::PortId;
use crate::tables::Tables;
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, EtherType, MacAddr};
use std::net::{IpAddr, Ipv4Addr};

impl Worker {
    /// Answers requests for the node's addresses and learns neighbours, by Linux's rules
    /// (`arp_process`, `arp_accept` off): only requests and replies count; a sender is learned
    /// only when it is a unicast address on one of the port's connected prefixes, not one of
    /// the node's, with a unicast, non-zero MAC; a request for us creates its sender's entry, a
    /// reply or gratuitous ARP only refreshes an entry that exists or that nodegate asked for
    /// (a frame is held for it). So spoofed frames cannot plant or move arbitrary entries.
    pub(super) fn arp_input(
        &mut self,
        t: &Tables,
        m: &mut Mbuf,
        port: PortId,
        learn_only: bool,
    ) -> Action {
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
            let waiting = self.is_waited_for(IpAddr::V4(sender), port);
            if (request && for_us) || waiting || self.neigh.knows(sender) {
                self.neigh.learn(sender, sha, self.now);
                if waiting {
                    self.release_held(t, IpAddr::V4(sender), port, sha);
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
            super::write_eth(m, sha, mac, EtherType::Arp);
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

    pub(super) fn send_arp_request(&mut self, t: &Tables, nh: Ipv4Addr, port: PortId) {
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
        super::write_eth(&mut m, MacAddr::BROADCAST, pinfo.mac, EtherType::Arp);
        req.emit(&mut ArpPacket::new_unchecked(&mut m[L2..L2 + 28]));
        if self.enqueue_tx(port, m) {
            self.stats.arp_requests += 1;
        }
    }
}

/// Whether `addr` is the directed broadcast address of the prefix `a/len` (none for /31 and
/// /32, RFC 3021).
fn is_subnet_broadcast(a: Ipv4Addr, len: u8, addr: Ipv4Addr) -> bool {
    len < 31 && u32::from(addr) == u32::from(a) | !crate::route::netmask(len)
}

#[cfg(test)]
mod test {
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig};
    use crate::drop::DropReason;
    use crate::time::Instant;
    use crate::wire::{ArpOperation, ArpPacket, ArpRepr, MacAddr};
    use std::net::Ipv4Addr;

    /// An ARP frame; a reply goes to `to` (the port's MAC), a request to everyone.
    fn arp(op: ArpOperation, sha: MacAddr, spa: [u8; 4], tpa: [u8; 4], to: MacAddr) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 28];
        let dst = if op == ArpOperation::Request {
            MacAddr::BROADCAST
        } else {
            to
        };
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&sha.0);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        ArpRepr {
            operation: op,
            source_hardware_addr: sha,
            source_protocol_addr: spa.into(),
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: tpa.into(),
        }
        .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
        f
    }

    #[test]
    fn a_request_for_the_node_is_answered_and_its_sender_learned() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let req = arp(
            ArpOperation::Request,
            HOST,
            [10, 0, 0, 99],
            [10, 0, 0, 1],
            MAC0,
        );
        let (a, m) = rig.input(&req, 0, Instant::ZERO);
        assert_eq!(a, Action::Tx(0));
        let reply = ArpRepr::parse(&ArpPacket::new_checked(&m[14..]).unwrap()).unwrap();
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!(reply.source_hardware_addr, MAC0);
        assert_eq!(reply.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(reply.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 99));
        assert_eq!(&m[..6], &HOST.0, "sent to the asker");
        let learned = rig
            .w
            .neigh
            .lookup(Ipv4Addr::new(10, 0, 0, 99), Instant::ZERO);
        assert_eq!(learned, Some(HOST));
        rig.free(m);
        // For another address: not answered, not learned.
        let req = arp(
            ArpOperation::Request,
            HOST,
            [10, 0, 0, 98],
            [10, 0, 0, 50],
            MAC0,
        );
        assert_eq!(
            rig.input(&req, 0, Instant::ZERO).0,
            Action::Drop(DropReason::ArpNotForUs)
        );
        assert_eq!(
            rig.w
                .neigh
                .lookup(Ipv4Addr::new(10, 0, 0, 98), Instant::ZERO),
            None
        );
    }

    #[test]
    fn unsolicited_replies_plant_nothing_and_a_wanted_one_releases_held_frames() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let n7 = MacAddr([2, 0, 0, 0, 0, 7]);
        // A reply nobody asked for does not create an entry (spoofing).
        let reply = arp(ArpOperation::Reply, n7, [10, 1, 0, 7], [10, 1, 0, 1], MAC1);
        assert_eq!(rig.input(&reply, 1, Instant::ZERO).0, Action::Free);
        assert_eq!(
            rig.w
                .neigh
                .lookup(Ipv4Addr::new(10, 1, 0, 7), Instant::ZERO),
            None
        );
        // A frame for 10.1.0.7 is held and an ARP request goes out of port 1.
        let f = udp4_frame(MAC0, [10, 0, 0, 99], [10, 1, 0, 7], 64, b"hello");
        assert!(matches!(
            rig.input(&f, 0, Instant::ZERO).0,
            Action::Hold { .. }
        ));
        assert_eq!(rig.w.held(), 1);
        assert_eq!(rig.out.len(), 1);
        assert_eq!(
            (rig.out[0].0, &rig.out[0].1[12..14]),
            (1, &[0x08, 0x06][..])
        );
        rig.free_all();
        // Now the reply is wanted: learned, and the held frame leaves with its MAC.
        assert_eq!(rig.input(&reply, 1, Instant::ZERO).0, Action::Free);
        assert_eq!(rig.w.held(), 0);
        assert_eq!(rig.out.len(), 1);
        let (port, out) = &rig.out[0];
        assert_eq!((*port, &out[..6], &out[6..12]), (1, &n7.0[..], &MAC1.0[..]));
        // A sender that claims a node address or a broadcast is refused.
        let bogus = arp(
            ArpOperation::Request,
            n7,
            [10, 0, 0, 1],
            [10, 0, 0, 1],
            MAC0,
        );
        assert_eq!(
            rig.input(&bogus, 0, Instant::ZERO).0,
            Action::Drop(DropReason::ArpBadSender)
        );
        let bogus = arp(
            ArpOperation::Request,
            n7,
            [10, 0, 0, 255],
            [10, 0, 0, 1],
            MAC0,
        );
        assert_eq!(
            rig.input(&bogus, 0, Instant::ZERO).0,
            Action::Drop(DropReason::ArpBadSender)
        );
        rig.free_all();
    }
}
