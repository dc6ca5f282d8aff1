//! A longest-prefix-match table over IPv4 (`u32`) or IPv6 (`u128`) prefixes, shared by
//! both families' [`crate::route::RouteTable`].
//!
//! One hash map per prefix length present, longest first: a lookup costs one probe per distinct
//! length, and a node has a handful of lengths. Built once per snapshot, never changed in place.

use core::hash::Hash;
use core::ops::BitAnd;
use hashbrown::HashMap;

/// An address as an unsigned integer, most significant bit first.
pub trait Bits: Copy + Eq + Hash + BitAnd<Output = Self> {
    /// Address width in bits.
    const WIDTH: u8;
    /// The mask of a prefix length (`0..=WIDTH`, clamped).
    fn mask(len: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        }
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    fn mask(len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len.min(128)))
        }
    }
}

#[derive(Debug, Clone)]
struct Level<K, V> {
    len: u8,
    mask: K,
    entries: HashMap<K, V>,
}

/// Prefixes of type `K` mapped to values `V`.
#[derive(Debug, Clone)]
pub struct PrefixTable<K, V> {
    /// Non-empty levels, longest prefix first.
    levels: Vec<Level<K, V>>,
}

impl<K, V> Default for PrefixTable<K, V> {
    fn default() -> Self {
        PrefixTable { levels: Vec::new() }
    }
}

impl<K: Bits, V> PrefixTable<K, V> {
    /// Sets the value of `prefix/len` (host bits are ignored), replacing any previous one.
    pub fn insert(&mut self, prefix: K, len: u8, value: V) {
        let len = len.min(K::WIDTH);
        let mask = K::mask(len);
        let pos = match self.levels.iter().position(|l| l.len <= len) {
            Some(i) if self.levels[i].len == len => i,
            at => {
                let i = at.unwrap_or(self.levels.len());
                let level = Level {
                    len,
                    mask,
                    entries: HashMap::new(),
                };
                self.levels.insert(i, level);
                i
            }
        };
        self.levels[pos].entries.insert(prefix & mask, value);
    }

    /// The value of the longest prefix holding `addr`.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<&V> {
        self.levels
            .iter()
            .find_map(|l| l.entries.get(&(addr & l.mask)))
    }

    /// Every entry as `(mask, network, value)`, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = (K, K, &V)> {
        self.levels
            .iter()
            .flat_map(|l| l.entries.iter().map(move |(net, v)| (l.mask, *net, v)))
    }

    /// Every value, for in-place updates.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.levels.iter_mut().flat_map(|l| l.entries.values_mut())
    }

    pub fn len(&self) -> usize {
        self.levels.iter().map(|l| l.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_longest_prefix_wins_for_both_widths() {
        let mut t4: PrefixTable<u32, &str> = PrefixTable::default();
        t4.insert(0, 0, "default");
        t4.insert(0x0a00_0000, 8, "ten");
        t4.insert(0x0a01_0203, 24, "ten-one-two");
        assert_eq!(t4.lookup(0x0a01_0299), Some(&"ten-one-two"));
        assert_eq!(t4.lookup(0x0a09_0000), Some(&"ten"));
        assert_eq!(t4.lookup(0x0b00_0000), Some(&"default"));
        assert_eq!(t4.len(), 3);
        let order: Vec<u32> = t4.iter().map(|(m, _, _)| m).collect();
        assert_eq!(order, vec![0xffff_ff00, 0xff00_0000, 0]);

        let mut t6: PrefixTable<u128, u8> = PrefixTable::default();
        t6.insert(0xfd00 << 112, 8, 1);
        t6.insert(0xfd00_0000_0000_0001 << 64, 64, 2);
        assert_eq!(t6.lookup((0xfd00_0000_0000_0001 << 64) | 5), Some(&2));
        assert_eq!(t6.lookup(0xfd77 << 112), Some(&1));
        assert_eq!(t6.lookup(0x2001 << 112), None);
        assert_eq!(u128::mask(128), u128::MAX);
        assert_eq!(u32::mask(0), 0);
    }
}
