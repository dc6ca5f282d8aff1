//! The flow table's index: a fixed-size, bucketed hash index sized at start-up.
//!
//! Each bucket is one 64-byte cache line holding seven entries of (signature, value), where the
//! signature is 32 bits of the key's hash and the value names a flow slot and direction. A lookup
//! reads one bucket line (usually) and then the flow slot it points to, where the full key is
//! compared; both lines can be prefetched a burst ahead ([`FlowIndex::prefetch`]). Entries that
//! do not fit their home bucket go to the next ones (at most [`MAX_PROBE`] away), and each
//! bucket counts how many entries passed over it, so a lookup stops at the first bucket nobody
//! overflowed from. Nothing is ever allocated after construction: a key that finds no room
//! within its probe window is refused, and the flow table counts it as full.
//!
//! The hash is keyed with a per-process random seed, so outsiders cannot aim tuples at one
//! bucket.

use crate::conntrack::Tuple;

const WAYS: usize = 7;
/// Buckets an entry may be placed away from its home bucket.
pub const MAX_PROBE: usize = 16;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    sig: [u32; WAYS],
    val: [u32; WAYS],
    /// Entries whose home is this bucket or an earlier one, stored beyond it.
    overflow: u32,
    _pad: u32,
}

const EMPTY: Bucket = Bucket {
    sig: [0; WAYS],
    val: [0; WAYS],
    overflow: 0,
    _pad: 0,
};

/// A fixed-capacity index from flow keys to `u32` values.
pub struct FlowIndex {
    buckets: Vec<Bucket>,
    mask: usize,
    seed: u64,
    len: usize,
}

impl FlowIndex {
    /// An index for `entries` entries at most, at a load of at most one half.
    pub fn with_capacity(entries: usize) -> FlowIndex {
        let want = (entries.max(1) * 2).div_ceil(WAYS).next_power_of_two();
        let mut buckets = Vec::with_capacity(want);
        // Advise before the first write so the kernel can fault in huge pages directly.
        ffi::memory::advise_huge_pages(buckets.spare_capacity_mut());
        buckets.resize(want, EMPTY);
        let seed = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x6e67_u64)
        };
        FlowIndex {
            buckets,
            mask: want - 1,
            seed,
            len: 0,
        }
    }

    /// The seeded hash of a key.
    #[inline]
    pub fn hash<K: Tuple>(&self, k: &K) -> u64 {
        k.hash_seeded(self.seed)
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    #[inline]
    fn sig(hash: u64) -> u32 {
        ((hash >> 32) as u32) | 1
    }

    /// Brings the key's home bucket into the cache.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        ffi::memory::prefetch(&self.buckets[self.home(hash)]);
    }

    /// The first value in the key's home bucket whose signature matches: a guess at where the
    /// key lives, good enough to prefetch.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<u32> {
        let sig = Self::sig(hash);
        let bucket = &self.buckets[self.home(hash)];
        (0..WAYS)
            .find(|&i| bucket.sig[i] == sig)
            .map(|i| bucket.val[i])
    }

    /// The first value whose signature matches and for which `is_match` holds.
    #[inline(always)]
    pub fn find(&self, hash: u64, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let sig = Self::sig(hash);
        let mut b = self.home(hash);
        for _ in 0..MAX_PROBE {
            let bucket = &self.buckets[b];
            for i in 0..WAYS {
                if bucket.sig[i] == sig && is_match(bucket.val[i]) {
                    return Some(bucket.val[i]);
                }
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = (b + 1) & self.mask;
        }
        None
    }

    /// Adds an entry; false when no bucket within the probe window has room.
    pub fn insert(&mut self, hash: u64, val: u32) -> bool {
        let sig = Self::sig(hash);
        let home = self.home(hash);
        let mut b = home;
        for dist in 0..MAX_PROBE {
            if let Some(i) = self.buckets[b].sig.iter().position(|&s| s == 0) {
                self.buckets[b].sig[i] = sig;
                self.buckets[b].val[i] = val;
                let mut p = home;
                for _ in 0..dist {
                    self.buckets[p].overflow += 1;
                    p = (p + 1) & self.mask;
                }
                self.len += 1;
                return true;
            }
            b = (b + 1) & self.mask;
        }
        false
    }

    /// Removes the entry `(hash, val)`; false if it is not there.
    pub fn remove(&mut self, hash: u64, val: u32) -> bool {
        let sig = Self::sig(hash);
        let home = self.home(hash);
        let mut b = home;
        for dist in 0..MAX_PROBE {
            let bucket = &mut self.buckets[b];
            if let Some(i) = (0..WAYS).find(|&i| bucket.sig[i] == sig && bucket.val[i] == val) {
                bucket.sig[i] = 0;
                bucket.val[i] = 0;
                let mut p = home;
                for _ in 0..dist {
                    self.buckets[p].overflow -= 1;
                    p = (p + 1) & self.mask;
                }
                self.len -= 1;
                return true;
            }
            if bucket.overflow == 0 {
                return false;
            }
            b = (b + 1) & self.mask;
        }
        false
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries the index can hold at its design load.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS / 2
    }

    #[cfg(test)]
    fn overflow_total(&self) -> u64 {
        self.buckets.iter().map(|b| u64::from(b.overflow)).sum()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::conntrack::FlowKey;
    use std::net::Ipv4Addr;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::from(i),
            dst: Ipv4Addr::new(10, 96, 0, 1),
            sport: (i % 65_000) as u16,
            dport: 80,
            proto: 6,
        }
    }

    #[test]
    fn test_bucket_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<Bucket>(), 64);
        assert_eq!(core::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn test_insert_find_remove_at_full_design_load() {
        let n = 10_000u32;
        let mut ix = FlowIndex::with_capacity(n as usize);
        let keys: Vec<FlowKey> = (0..n).map(key).collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(ix.insert(ix.hash(k), i as u32), "room for {i}");
        }
        assert_eq!(ix.len(), n as usize);
        for (i, k) in keys.iter().enumerate() {
            let h = ix.hash(k);
            assert_eq!(ix.find(h, |v| keys[v as usize] == *k), Some(i as u32));
        }
        assert_eq!(
            ix.find(ix.hash(&key(n + 1)), |v| keys[v as usize] == key(n + 1)),
            None
        );
        for (i, k) in keys.iter().enumerate() {
            assert!(ix.remove(ix.hash(k), i as u32));
        }
        assert!(ix.is_empty());
        assert_eq!(ix.overflow_total(), 0, "overflow counters return to zero");
    }

    #[test]
    fn test_colliding_keys_overflow_and_come_back() {
        // Force every key into the same home bucket by searching for colliding hashes.
        let mut ix = FlowIndex::with_capacity(4096);
        let target = ix.home(ix.hash(&key(0)));
        let same: Vec<FlowKey> = (0..2_000_000u32)
            .map(key)
            .filter(|k| ix.home(ix.hash(k)) == target)
            .take(WAYS * 3)
            .collect();
        assert_eq!(same.len(), WAYS * 3);
        for (i, k) in same.iter().enumerate() {
            assert!(ix.insert(ix.hash(k), i as u32));
        }
        assert!(ix.overflow_total() > 0);
        for (i, k) in same.iter().enumerate() {
            assert_eq!(
                ix.find(ix.hash(k), |v| same[v as usize] == *k),
                Some(i as u32)
            );
        }
        // Remove the ones in the home bucket: the overflowed ones are still found.
        for (i, k) in same.iter().enumerate().take(WAYS) {
            assert!(ix.remove(ix.hash(k), i as u32));
        }
        for (i, k) in same.iter().enumerate().skip(WAYS) {
            assert_eq!(
                ix.find(ix.hash(k), |v| same[v as usize] == *k),
                Some(i as u32)
            );
        }
    }

    #[test]
    fn test_probe_window_bounds_insertion() {
        let mut ix = FlowIndex::with_capacity(64);
        let target = ix.home(ix.hash(&key(0)));
        let h = ix.hash(&key(0));
        let mut stored = 0;
        while ix.insert(h, stored) {
            stored += 1;
        }
        // Seven per bucket over the home bucket and the window after it, but never more
        // buckets than the index has.
        let buckets = ix.buckets.len().min(MAX_PROBE);
        assert_eq!(stored as usize, WAYS * buckets);
        assert_eq!(ix.home(h), target);
    }
}
