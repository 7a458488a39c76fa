//! A bit per slab slot — sans-IO: which connections are held ([`super::spacing`]) or owed a
//! deferred run ([`super::deferred`]). 1M slots take 128 KB.

/// A bit per slab slot, grown on demand.
#[derive(Debug, Default)]
pub struct SlotBits {
    words: Vec<u64>,
}

impl SlotBits {
    fn at(idx: u32) -> (usize, u64) {
        ((idx / 64) as usize, 1u64 << (idx % 64))
    }

    /// Whether slot `idx`'s bit is set.
    #[inline]
    pub fn get(&self, idx: u32) -> bool {
        let (word, bit) = Self::at(idx);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Set slot `idx`'s bit; whether it was clear.
    #[inline]
    pub fn set(&mut self, idx: u32) -> bool {
        let (word, bit) = Self::at(idx);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let was = self.words[word] & bit != 0;
        self.words[word] |= bit;
        !was
    }

    /// Clear slot `idx`'s bit; whether it was set.
    #[inline]
    pub fn clear(&mut self, idx: u32) -> bool {
        let (word, bit) = Self::at(idx);
        match self.words.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                *w &= !bit;
                true
            }
            _ => false,
        }
    }

    /// Set every bit that `other` has set (a word at a time).
    pub fn union(&mut self, other: &Self) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    /// Append every set slot to `out`, in order, and clear it.
    pub fn take_all(&mut self, out: &mut Vec<u32>) {
        for (k, w) in self.words.iter_mut().enumerate() {
            let mut bits = std::mem::take(w);
            while bits != 0 {
                out.push(k as u32 * 64 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
    }

    /// Clear every bit.
    pub fn clear_all(&mut self) {
        self.words.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_set_and_cleared_one_slot_at_a_time() {
        let mut b = SlotBits::default();
        assert!(!b.get(70) && !b.clear(70), "nothing set, nothing grown");
        assert!(b.set(70) && !b.set(70), "set once");
        assert!(b.get(70) && !b.get(6) && !b.get(71));
        assert!(b.set(6));
        assert!(b.clear(70) && !b.get(70) && b.get(6));
        b.clear_all();
        assert!(!b.get(6));
    }

    #[test]
    fn a_union_sets_the_other_sets_bits_and_keeps_its_own() {
        let mut a = SlotBits::default();
        let mut b = SlotBits::default();
        a.set(3);
        for i in [0, 64, 200] {
            b.set(i);
        }
        a.union(&b);
        assert!([0, 3, 64, 200].iter().all(|&i| a.get(i)));
        assert!(!a.get(1) && !a.get(199) && !a.get(201));
        let mut shorter = SlotBits::default();
        shorter.set(5);
        a.union(&shorter);
        assert!(
            a.get(5) && a.get(200),
            "a shorter set grows nothing and clears nothing"
        );
    }

    #[test]
    fn take_all_lists_every_set_slot_in_order_and_clears_it() {
        let mut b = SlotBits::default();
        for idx in [130, 0, 63, 64, 7] {
            b.set(idx);
        }
        let mut out = vec![9];
        b.take_all(&mut out);
        assert_eq!(out, [9, 0, 7, 63, 64, 130], "appended, in slot order");
        assert!(![0, 7, 63, 64, 130].iter().any(|&i| b.get(i)), "cleared");
        out.clear();
        b.take_all(&mut out);
        assert!(out.is_empty());
    }
}
