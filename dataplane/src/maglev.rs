//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4).
//!
//! Each backend gets a permutation of the lookup table's slots from two hashes of its identity
//! (`offset`, `skip`); backends take turns claiming their next preferred free slot until the table
//! is full. Adding or removing one backend moves only about 1/N of the slots, so few established
//! affinities change, and every node builds the same table from the same backends. The table size
//! is a prime at least 100x the backend count (≤1% imbalance, as the paper recommends), taken
//! from three steps only (4093, 16381, 65537) so that ordinary scaling keeps the size and with it
//! the consistency; crossing a step (41 or 164 backends) rebuilds the table at the next size and
//! moves most flows, once. Built on the control thread; the workers only index it.

use crate::hash::bytes_hash;

/// Primes used as table sizes, smallest first.
const SIZES: [usize; 3] = [4093, 16381, 65537];

/// Table size for `n` backends.
pub fn table_size_for(n: usize) -> usize {
    let want = n.saturating_mul(100);
    SIZES
        .iter()
        .copied()
        .find(|&s| s >= want)
        .unwrap_or(SIZES[SIZES.len() - 1])
}

/// A Maglev lookup table: slot -> backend index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    slots: Box<[u16]>,
}

impl Maglev {
    /// Builds the table for backends identified by `keys` (e.g. address and port bytes); the
    /// backend index returned by [`Maglev::lookup`] is the position in `keys`. `keys` must hold
    /// between 1 and 65535 entries.
    pub fn build<K: AsRef<[u8]>>(keys: &[K]) -> Maglev {
        let n = keys.len();
        assert!(
            n > 0 && n < usize::from(u16::MAX),
            "maglev: 1..65535 backends"
        );
        let m = table_size_for(n);
        let perms: Vec<(usize, usize)> = keys
            .iter()
            .map(|k| {
                let offset = (bytes_hash(k.as_ref(), 0x6d61_676c) % m as u64) as usize;
                let skip = (bytes_hash(k.as_ref(), 0x6576_3031) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; n];
        let mut slots = vec![u16::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perms.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while slots[c] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                slots[c] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Maglev {
            slots: slots.into_boxed_slice(),
        }
    }

    /// The backend index for a flow hash.
    #[inline]
    pub fn lookup(&self, hash: u64) -> usize {
        usize::from(self.slots[(hash % self.slots.len() as u64) as usize])
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::hash::mix64;

    fn keys(n: usize) -> Vec<[u8; 6]> {
        (0..n)
            .map(|i| {
                let ip = 0x0a01_0000u32 + i as u32;
                let b = ip.to_be_bytes();
                [b[0], b[1], b[2], b[3], 0x1f, 0x90]
            })
            .collect()
    }

    #[test]
    fn test_balanced() {
        let m = Maglev::build(&keys(16));
        let mut counts = [0usize; 16];
        for s in m.slots.iter() {
            counts[usize::from(*s)] += 1;
        }
        let expect = m.size() / 16;
        for c in counts {
            assert!(c.abs_diff(expect) <= expect / 10 + 1, "{counts:?}");
        }
    }

    #[test]
    fn test_adding_a_backend_moves_few_flows() {
        let before = Maglev::build(&keys(10));
        let after = Maglev::build(&keys(11));
        let flows = 20_000u64;
        let moved = (0..flows)
            .filter(|&f| {
                let h = mix64(f);
                before.lookup(h) != after.lookup(h)
            })
            .count();
        // Ideal is 1/11 (9%); Maglev stays close to it. A modulo hash would move ~90%.
        assert!(moved < (flows as usize) * 15 / 100, "moved {moved}");
        assert!(moved > 0);
    }

    #[test]
    fn test_deterministic() {
        assert_eq!(Maglev::build(&keys(5)), Maglev::build(&keys(5)));
        assert_eq!(table_size_for(1), 4093);
        assert_eq!(table_size_for(40), 4093);
        assert_eq!(table_size_for(41), 16381);
        assert_eq!(table_size_for(100_000), 65537);
    }
}
