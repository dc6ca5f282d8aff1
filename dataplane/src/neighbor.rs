//! Per-worker state that is learned from traffic: the neighbour cache (ARP) and session
//! affinity. Both are bounded hash maps allocated at start-up; when full they stop learning
//! (and count it) rather than grow.

use crate::time::Instant;
use crate::wire::MacAddr;
use core::time::Duration;
use hashbrown::HashMap;
use std::net::Ipv4Addr;

/// How long a learned neighbour is trusted without being heard from.
pub const NEIGHBOR_LIFETIME: Duration = Duration::from_secs(600);

/// A worker's learned neighbours (ARP for IPv4, neighbour discovery for IPv6).
pub struct NeighborCache<A = Ipv4Addr> {
    entries: HashMap<A, (MacAddr, Instant)>,
    capacity: usize,
}

impl<A: Copy + Eq + core::hash::Hash> NeighborCache<A> {
    pub fn new(capacity: usize) -> NeighborCache<A> {
        NeighborCache {
            entries: HashMap::with_capacity(capacity * 2),
            capacity,
        }
    }

    /// The link-layer address of `ip`, if known and fresh.
    #[inline]
    pub fn lookup(&self, ip: A, now: Instant) -> Option<MacAddr> {
        match self.entries.get(&ip) {
            Some((mac, expires)) if *expires > now => Some(*mac),
            _ => None,
        }
    }

    /// Whether an entry (fresh or not) exists for `ip`.
    pub fn knows(&self, ip: A) -> bool {
        self.entries.contains_key(&ip)
    }

    /// The entry for `ip`, fresh or not.
    pub fn get(&self, ip: A) -> Option<MacAddr> {
        self.entries.get(&ip).map(|(m, _)| *m)
    }

    /// Records `ip` at `mac`. Returns false when the cache is full of other live entries.
    pub fn learn(&mut self, ip: A, mac: MacAddr, now: Instant) -> bool {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&ip) {
            self.entries.retain(|_, (_, exp)| *exp > now);
            if self.entries.len() >= self.capacity {
                return false;
            }
        }
        self.entries.insert(ip, (mac, now + NEIGHBOR_LIFETIME));
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `sessionAffinity: ClientIP`: the endpoint each client was last sent to, per Service port.
pub struct AffinityTable<A = Ipv4Addr> {
    entries: HashMap<(u32, A), (A, u16, Instant)>,
    capacity: usize,
}

impl<A: crate::service::Address> AffinityTable<A> {
    pub fn new(capacity: usize) -> AffinityTable<A> {
        AffinityTable {
            entries: HashMap::with_capacity(capacity * 2),
            capacity,
        }
    }

    /// The remembered endpoint for `client` on Service port `svc`, if not expired.
    #[inline]
    pub fn lookup(&self, svc: u32, client: A, now: Instant) -> Option<(A, u16)> {
        match self.entries.get(&(svc, client)) {
            Some(&(addr, port, expires)) if expires > now => Some((addr, port)),
            _ => None,
        }
    }

    /// Remembers (or refreshes) the endpoint. False when full of live entries.
    pub fn record(
        &mut self,
        svc: u32,
        client: A,
        endpoint: (A, u16),
        timeout: Duration,
        now: Instant,
    ) -> bool {
        let key = (svc, client);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.2 > now);
            if self.entries.len() >= self.capacity {
                return false;
            }
        }
        self.entries
            .insert(key, (endpoint.0, endpoint.1, now + timeout));
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_neighbor_expires_and_capacity_holds() {
        let mut n = NeighborCache::new(2);
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let t0 = Instant::ZERO;
        assert!(n.learn(Ipv4Addr::new(10, 0, 0, 2), mac, t0));
        assert!(n.learn(Ipv4Addr::new(10, 0, 0, 3), mac, t0));
        assert!(!n.learn(Ipv4Addr::new(10, 0, 0, 4), mac, t0));
        assert_eq!(n.lookup(Ipv4Addr::new(10, 0, 0, 2), t0), Some(mac));
        let late = t0 + NEIGHBOR_LIFETIME;
        assert_eq!(n.lookup(Ipv4Addr::new(10, 0, 0, 2), late), None);
        // Expired entries make room.
        assert!(n.learn(Ipv4Addr::new(10, 0, 0, 4), mac, late));
    }

    #[test]
    fn test_affinity_timeout() {
        let mut a = AffinityTable::new(8);
        let c = Ipv4Addr::new(192, 168, 0, 1);
        let e = (Ipv4Addr::new(10, 1, 0, 1), 8080);
        a.record(7, c, e, Duration::from_secs(10), Instant::ZERO);
        assert_eq!(a.lookup(7, c, Instant::from_secs(9)), Some(e));
        assert_eq!(a.lookup(8, c, Instant::from_secs(9)), None);
        assert_eq!(a.lookup(7, c, Instant::from_secs(10)), None);
    }
}
