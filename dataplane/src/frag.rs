//! IP fragments of translated flows, without reassembly.
//!
//! Only the first fragment of a datagram carries the TCP or UDP header, so only it can be
//! matched to a flow (or balanced to an endpoint) by its ports. Like Cilium's fragment map, the
//! data plane remembers the ports of every first fragment it sees under the datagram's identity
//! (source, destination, protocol, IP identification) for a short while; the later fragments of
//! the same datagram take the flow of those ports and have their addresses translated (the L4
//! checksum, which covers the whole datagram, was patched in the first fragment with the same
//! delta). IPv6 works the same way with the Fragment extension header's 32-bit identification
//! ([`FragId6`]). A later fragment that arrives before its first, or long after it, finds nothing and
//! is handled as a packet without ports (routed, or given to the kernel when it is for the
//! node), as before.
//!
//! The table is direct-mapped with a fixed number of slots: a new datagram takes its slot over,
//! nothing is allocated after construction, and nothing needs sweeping (an entry is valid until
//! [`FRAG_TIMEOUT`] after its first fragment).

use crate::hash::{flow_hash, flow_hash6};
use crate::time::Instant;
use core::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How long the ports of a first fragment stand for its datagram's later fragments. The
/// fragments of a datagram travel back to back; the IP identification of a busy pair of hosts
/// comes round again within seconds.
pub const FRAG_TIMEOUT: Duration = Duration::from_secs(2);

/// What ties the fragments of one datagram together, per address family.
pub trait DatagramId: Copy + Eq {
    /// The identity of no datagram (an empty slot; never valid, as its time is 0).
    const NONE: Self;
    /// Spreads datagrams over slots and over workers (every fragment of one datagram gives the
    /// same value).
    fn hash(&self) -> u64;
}

/// An IPv4 datagram's identity: what every fragment of it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragId {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ident: u16,
}

impl DatagramId for FragId {
    const NONE: Self = FragId {
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        proto: 0,
        ident: 0,
    };

    fn hash(&self) -> u64 {
        flow_hash(
            u32::from(self.src),
            u32::from(self.dst),
            self.ident,
            0,
            self.proto,
        )
    }
}

/// An IPv6 datagram's identity (the Fragment header's identification is 32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragId6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub proto: u8,
    pub ident: u32,
}

impl DatagramId for FragId6 {
    const NONE: Self = FragId6 {
        src: Ipv6Addr::UNSPECIFIED,
        dst: Ipv6Addr::UNSPECIFIED,
        proto: 0,
        ident: 0,
    };

    fn hash(&self) -> u64 {
        flow_hash6(
            u128::from(self.src),
            u128::from(self.dst),
            (self.ident >> 16) as u16,
            self.ident as u16,
            self.proto,
        )
    }
}

#[derive(Clone, Copy)]
struct Slot<I> {
    id: I,
    ports: (u16, u16),
    until: Instant,
}

/// First fragments' ports by datagram, one table per worker and address family.
pub struct FragTable<I: DatagramId = FragId> {
    slots: Box<[Slot<I>]>,
    mask: usize,
}

impl<I: DatagramId> FragTable<I> {
    /// A table of `slots` slots (rounded up to a power of two).
    pub fn new(slots: usize) -> FragTable<I> {
        let n = slots.max(1).next_power_of_two();
        let empty = Slot {
            id: I::NONE,
            ports: (0, 0),
            until: Instant::from_nanos(0),
        };
        FragTable {
            slots: vec![empty; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// Remembers the ports of `id`'s first fragment until `now + FRAG_TIMEOUT`.
    pub fn insert(&mut self, id: I, ports: (u16, u16), now: Instant) {
        let i = id.hash() as usize & self.mask;
        self.slots[i] = Slot {
            id,
            ports,
            until: now + FRAG_TIMEOUT,
        };
    }

    /// The ports of a fragment of datagram `id`: a first fragment's own (`first`), remembered for
    /// the later ones; for a later fragment (`first` is `None`) the remembered ones, if any.
    pub fn ports_of(
        &mut self,
        id: I,
        first: Option<(u16, u16)>,
        now: Instant,
    ) -> Option<(u16, u16)> {
        match first {
            Some(ports) => {
                self.insert(id, ports, now);
                Some(ports)
            }
            None => self.lookup(&id, now),
        }
    }

    /// The ports of `id`'s first fragment, if seen within the timeout.
    pub fn lookup(&self, id: &I, now: Instant) -> Option<(u16, u16)> {
        let s = &self.slots[id.hash() as usize & self.mask];
        (s.id == *id && now < s.until).then_some(s.ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ident: u16) -> FragId {
        FragId {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(10, 96, 0, 10),
            proto: 17,
            ident,
        }
    }

    #[test]
    fn test_ports_stand_for_the_datagram_until_the_timeout() {
        let mut t: FragTable = FragTable::new(100);
        assert_eq!(t.slots.len(), 128);
        let t0 = Instant::from_nanos(1_000);
        assert_eq!(t.lookup(&id(7), t0), None);
        t.insert(id(7), (40000, 53), t0);
        assert_eq!(t.lookup(&id(7), t0), Some((40000, 53)));
        // Another datagram of the same pair, or the same identification from elsewhere: no.
        assert_eq!(t.lookup(&id(8), t0), None);
        let mut other = id(7);
        other.src = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(t.lookup(&other, t0), None);
        other = id(7);
        other.proto = 6;
        assert_eq!(t.lookup(&other, t0), None);
        // Expired.
        assert_eq!(t.lookup(&id(7), t0 + FRAG_TIMEOUT), None);
        // A newer first fragment of the same identity wins.
        t.insert(id(7), (40001, 53), t0);
        assert_eq!(t.lookup(&id(7), t0), Some((40001, 53)));
    }

    #[test]
    fn test_ipv6_datagrams_are_told_apart_by_their_32_bit_identification() {
        let mut t: FragTable<FragId6> = FragTable::new(64);
        let id = |ident| FragId6 {
            src: "2001:db8::1".parse().unwrap(),
            dst: "fd00::10".parse().unwrap(),
            proto: 17,
            ident,
        };
        let now = Instant::from_nanos(5);
        t.insert(id(0x1_0000), (1000, 53), now);
        assert_eq!(t.lookup(&id(0x1_0000), now), Some((1000, 53)));
        assert_eq!(t.lookup(&id(0), now), None, "the high half counts");
        assert_eq!(t.lookup(&FragId6::NONE, now), None);
    }

    #[test]
    fn test_slot_sizes_are_what_the_worker_budgets() {
        assert_eq!(core::mem::size_of::<Slot<FragId>>(), 24);
        assert_eq!(core::mem::size_of::<Slot<FragId6>>(), 56);
    }

    #[test]
    fn test_a_new_datagram_takes_a_colliding_slot_over() {
        let mut t: FragTable = FragTable::new(1);
        let now = Instant::from_nanos(0);
        t.insert(id(1), (1, 2), now);
        t.insert(id(2), (3, 4), now);
        assert_eq!(t.lookup(&id(1), now), None);
        assert_eq!(t.lookup(&id(2), now), Some((3, 4)));
    }
}
