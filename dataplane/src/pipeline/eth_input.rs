//! **eth-input**: the first stage of every frame from a data port.
//!
//! Reads the Ethernet header and the port it came in on. Drops what is not for the node (another
//! unicast MAC, our own source MAC, VLAN tags, unknown EtherTypes). Next: `arp-input`,
//! `ip4-input`'s parsing (`classify_ip4`, unicast only: broadcast and multicast IPv4 goes to
//! `host-punt`) or `ip6-input`'s (`classify_ip6`). What it returns ([`Class`]) is the burst
//! pass's result: the flow tuple of IP packets, whose flow-table lines are prefetched before
//! any frame of the burst is decided.

use super::{ip4_input, ip6_input, Class, Worker};
use crate::drop::DropReason;
use crate::mbuf::Mbuf;
use crate::port::PortId;
use crate::tables::Tables;
use crate::wire::{EtherType, EthernetFrame};

impl Worker {
    /// eth-input and ip4-input's parsing: validates headers and extracts the flow tuple,
    /// changing nothing but the frame's length (Ethernet padding is trimmed).
    pub(super) fn classify(&self, t: &Tables, m: &mut Mbuf, port: PortId) -> Class {
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
            EtherType::Ipv4 if dst == pinfo.mac => ip4_input::classify_ip4(t, m),
            // Broadcast or multicast IPv4: the kernel's business (DHCP, VRRP...), not ours.
            EtherType::Ipv4 => Class::Host(DropReason::Ip4Local),
            EtherType::Ipv6 => ip6_input::classify_ip6(m),
            EtherType::Vlan | EtherType::QinQ => Class::Drop(DropReason::EthVlanTagged),
            _ => Class::Drop(DropReason::EthUnknownType),
        }
    }
}

#[cfg(test)]
mod test {
    use super::super::test_rig::*;
    use super::super::{Action, WorkerConfig};
    use crate::drop::DropReason;
    use crate::time::Instant;
    use crate::wire::MacAddr;

    #[test]
    fn frames_not_for_the_port_are_dropped_by_reason() {
        let mut rig = Rig::new(WorkerConfig::new(0, 1));
        let t = Instant::ZERO;
        let ok = udp4_frame(MAC0, [10, 0, 0, 99], [10, 1, 0, 7], 64, b"x");
        let drop = |r| Action::Drop(r);
        // Another host's unicast MAC.
        let mut other = ok.clone();
        other[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x55]);
        assert_eq!(rig.input(&other, 0, t).0, drop(DropReason::EthNotForUs));
        // Our own MAC as the source (a loop, or a spoofer).
        let mut ours = ok.clone();
        ours[6..12].copy_from_slice(&MAC0.0);
        assert_eq!(rig.input(&ours, 0, t).0, drop(DropReason::EthSourceIsOurs));
        // A VLAN tag, an unknown EtherType, a runt.
        let mut tagged = ok.clone();
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(rig.input(&tagged, 0, t).0, drop(DropReason::EthVlanTagged));
        let mut unknown = ok.clone();
        unknown[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert_eq!(
            rig.input(&unknown, 0, t).0,
            drop(DropReason::EthUnknownType)
        );
        assert_eq!(rig.input(&ok[..10], 0, t).0, drop(DropReason::EthMalformed));
        // A port the tables do not know.
        assert_eq!(rig.input(&ok, 7, t).0, drop(DropReason::EthNotForUs));
        // Broadcast IPv4 is the kernel's: without a host port, dropped as ip4-local.
        let mut bcast = ok.clone();
        bcast[..6].copy_from_slice(&MacAddr::BROADCAST.0);
        assert_eq!(rig.input(&bcast, 0, t).0, drop(DropReason::Ip4Local));
        // The frame for us goes on (routed to port 1, whose neighbour is unresolved: held).
        assert!(matches!(rig.input(&ok, 0, t).0, Action::Hold { .. }));
        rig.free_all();
    }
}
