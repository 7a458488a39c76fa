//! A small, fast pseudo-random source for spreading things out in time (drain closes,
//! reconnect delays, heartbeat phases). Not for anything security-related.

/// xorshift64* (Vigna): 64-bit state, full period, good enough to decorrelate timings.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A source seeded from `seed` (any value; zero is mapped to a fixed non-zero state).
    pub const fn new(seed: u64) -> Self {
        let s = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        Self(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::Jitter;

    #[test]
    fn different_seeds_give_different_spread_values() {
        let (mut a, mut b) = (Jitter::new(1), Jitter::new(2));
        let xs: Vec<u64> = (0..1000).map(|_| a.next_u64() % 100).collect();
        assert_ne!(
            xs[..10],
            (0..10).map(|_| b.next_u64() % 100).collect::<Vec<_>>()[..]
        );
        // Roughly uniform over 100 buckets: every bucket hit.
        let mut seen = [false; 100];
        for x in xs {
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let mut z = Jitter::new(0);
        assert_ne!(z.next_u64(), 0);
    }
}
