//! Maps keyed by a worker's slab index (a connection's entry), hashed by one multiply.
//!
//! A slab index is a small integer the worker assigns (a client cannot choose it; the slab
//! reuses freed entries before it grows, so the indices in use stay dense). A
//! multiplicative hash by an odd constant is a bijection on the low bits hashbrown picks a
//! bucket with, so a dense set of indices lands in distinct buckets, and its top bits (the
//! tag hashbrown compares first) are well mixed. SipHash, the standard map's hasher, costs
//! ~20 ns a lookup for resistance to keys an attacker picks, which these are not; a
//! hand-over looks every connection up in several such maps (2.8% of a 200k hand-over's
//! samples were SipHash). Maps keyed by anything a client sends keep the standard hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing's constant (2^64 / φ, odd).
const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The hasher of [`SlabMap`]: one multiply per slab index.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u32 keys are hashed here; other bytes are folded in one at a time all the same.
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(K);
    }
}

/// A map keyed by slab index.
pub type SlabMap<V> = HashMap<u32, V, BuildHasherDefault<IndexHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn dense_indices_take_distinct_low_bits_and_differ_in_the_tag() {
        let b = BuildHasherDefault::<IndexHasher>::default();
        let bits = 14;
        let mask = (1u64 << bits) - 1;
        let mut low = vec![false; 1 << bits];
        let mut tags = [0u32; 128];
        for i in 0..1u32 << bits {
            let h = b.hash_one(i);
            let slot = (h & mask) as usize;
            assert!(!low[slot], "index {i} collides in the low {bits} bits");
            low[slot] = true;
            tags[(h >> 57) as usize] += 1;
        }
        // 16,384 keys over 128 tags: 128 each if uniform; no tag may be starved or crowded.
        let (min, max) = (tags.iter().min().unwrap(), tags.iter().max().unwrap());
        assert!(*min >= 64 && *max <= 192, "tags spread {min}..{max}");
    }

    #[test]
    fn a_slab_map_finds_what_it_holds() {
        let mut m = SlabMap::default();
        for i in (0..10_000u32).step_by(3) {
            m.insert(i, i * 2);
        }
        assert_eq!(m.get(&3000), Some(&6000));
        assert_eq!(m.get(&3001), None);
        assert_eq!(m.len(), 3334);
    }
}
