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
