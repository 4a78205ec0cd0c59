//! The bloom filter of an index run: most lookups of a digest a run does not hold end here,
//! without reading the run.
//!
//! The bit positions come from the digest itself: a digest is the output of a cryptographic
//! hash, so its first two 64-bit words are as good as two independent hashes (double
//! hashing, position i = h1 + i·h2 mod m). Ten bits per entry and seven positions give about
//! 0.8 % false positives.

use crate::reference::DIGEST_LEN;

/// Bits per entry.
pub const BITS_PER_ENTRY: u64 = 10;
/// Bit positions set and tested per digest.
pub const HASHES: u32 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    /// An empty filter sized for `entries` digests (at least one word).
    pub fn with_entries(entries: u64) -> Bloom {
        let words = (entries * BITS_PER_ENTRY).div_ceil(64).max(1);
        Bloom {
            words: vec![0; words as usize],
        }
    }

    /// A filter from its words, as a run file stores them.
    pub fn from_words(words: Vec<u64>) -> Option<Bloom> {
        (!words.is_empty()).then_some(Bloom { words })
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    fn positions(&self, digest: &[u8; DIGEST_LEN]) -> impl Iterator<Item = u64> + use<> {
        let word = |o: usize| u64::from_le_bytes(digest[o..o + 8].try_into().unwrap_or_default());
        let (h1, h2) = (word(0), word(8) | 1);
        let m = self.words.len() as u64 * 64;
        (0..u64::from(HASHES)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    pub fn insert(&mut self, digest: &[u8; DIGEST_LEN]) {
        for p in self.positions(digest) {
            self.words[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    /// False: the digest was never inserted. True: it may have been.
    pub fn may_contain(&self, digest: &[u8; DIGEST_LEN]) -> bool {
        self.positions(digest)
            .all(|p| self.words[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u64) -> [u8; 32] {
        *blake3::hash(&i.to_le_bytes()).as_bytes()
    }

    #[test]
    fn inserted_digests_are_always_found_and_few_others_are() {
        let mut b = Bloom::with_entries(10_000);
        for i in 0..10_000 {
            b.insert(&digest(i));
        }
        assert!((0..10_000).all(|i| b.may_contain(&digest(i))));
        let false_positives = (10_000..110_000)
            .filter(|i| b.may_contain(&digest(*i)))
            .count();
        // 0.8 % expected; 2 % would mean the positions are not independent.
        assert!(false_positives < 2_000, "{false_positives} of 100000");
    }

    #[test]
    fn an_empty_filter_contains_nothing() {
        let b = Bloom::with_entries(0);
        assert_eq!(b.words().len(), 1);
        assert!(!b.may_contain(&digest(1)));
        assert!(Bloom::from_words(Vec::new()).is_none());
    }
}
