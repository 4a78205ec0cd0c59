//! Where randomness and time come from. Real operations use the kernel's random source and
//! the clock; test vectors use a fixed seed and a fixed time, so that two runs of genesis
//! with the same inputs produce byte-identical artifacts (docs/AUTHORITY.md, "Fixed entropy").

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::error::{AuthError, Result};

/// A source of random bytes: the kernel, or a deterministic stream expanded from a seed
/// (SHA-256 in counter mode: `SHA-256(seed || counter_be64)`), which is for test vectors only.
pub enum Entropy {
    Os,
    Fixed { seed: [u8; 32], counter: u64 },
}

impl Entropy {
    /// The deterministic stream of `seed`.
    pub fn fixed(seed: [u8; 32]) -> Entropy {
        Entropy::Fixed { seed, counter: 0 }
    }

    pub fn is_fixed(&self) -> bool {
        matches!(self, Entropy::Fixed { .. })
    }

    pub fn fill(&mut self, out: &mut [u8]) -> Result<()> {
        match self {
            Entropy::Os => std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(out))
                .map_err(|e| AuthError::io("/dev/urandom", e)),
            Entropy::Fixed { seed, counter } => {
                for chunk in out.chunks_mut(32) {
                    let mut h = Sha256::new();
                    h.update(*seed);
                    h.update(counter.to_be_bytes());
                    *counter += 1;
                    let block = h.finalize();
                    chunk.copy_from_slice(&block[..chunk.len()]);
                }
                Ok(())
            }
        }
    }

    pub fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        Ok(b)
    }

    /// The current time as RFC 3339 UTC with milliseconds; with fixed entropy, the epoch,
    /// so that operation receipts are reproducible too.
    pub fn now(&self) -> String {
        match self {
            Entropy::Os => format!("{:.3}", jiff::Timestamp::now()),
            Entropy::Fixed { .. } => "1970-01-01T00:00:00.000Z".into(),
        }
    }
}

/// `sha256:<hex>` of `bytes`: the form of every authority hash (policy hash, DAM hash,
/// principal ids, request and record hashes).
pub fn sha256_tag(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The canonical JSON of `value` (asl-prov's encoder: sorted keys, no whitespace).
pub fn canonical<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    asl_prov::canon::encode(value).map_err(AuthError::Internal)
}

/// `sha256:<hex>` of the canonical JSON of `value`.
pub fn hash_of<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(sha256_tag(&canonical(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_seed_gives_the_same_stream_and_another_seed_another() {
        let mut a = Entropy::fixed([1; 32]);
        let mut b = Entropy::fixed([1; 32]);
        let mut c = Entropy::fixed([2; 32]);
        let x: [u8; 48] = a.bytes().unwrap();
        assert_eq!(x, b.bytes::<48>().unwrap());
        assert_ne!(x, c.bytes::<48>().unwrap());
        assert_ne!(a.bytes::<16>().unwrap(), x[..16]);
    }
}
