//! References: the identity of an artifact, `(hash_id, digest)`.
//!
//! A reference is the hash of an artifact's exact bytes under one registered hash algorithm.
//! It never depends on how the bytes are chunked or stored. Text form: `b3:<64 hex>` for
//! BLAKE3-256, `sha256:<64 hex>` for SHA-256.

use std::fmt;
use std::str::FromStr;

/// Length of every digest this store registers (both algorithms produce 32 bytes).
pub const DIGEST_LEN: usize = 32;

/// The registered hash algorithms (HASH/ASL1 `HashId` values, stored as u16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    /// `0x0001`, HASH-ASL1-256: SHA-256. Mandatory to support.
    Sha256,
    /// `0x0002`: BLAKE3-256. The default for new stores (faster than SHA-256 on chunk-sized
    /// inputs).
    Blake3,
}

impl HashAlgo {
    /// The on-disk `hash_id`.
    pub fn id(self) -> u16 {
        match self {
            HashAlgo::Sha256 => 0x0001,
            HashAlgo::Blake3 => 0x0002,
        }
    }

    pub fn from_id(id: u16) -> Option<HashAlgo> {
        match id {
            0x0001 => Some(HashAlgo::Sha256),
            0x0002 => Some(HashAlgo::Blake3),
            _ => None,
        }
    }

    /// The text prefix of references, without the colon.
    pub fn prefix(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Blake3 => "b3",
        }
    }

    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Blake3 => "blake3",
        }
    }

    pub fn from_name(name: &str) -> Option<HashAlgo> {
        match name {
            "sha256" | "sha-256" => Some(HashAlgo::Sha256),
            "blake3" | "b3" => Some(HashAlgo::Blake3),
            _ => None,
        }
    }

    /// Hashes `data` in one call.
    pub fn digest(self, data: &[u8]) -> Reference {
        let mut h = self.hasher();
        h.update(data);
        h.finish()
    }

    /// An incremental hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlgo::Sha256 => Hasher::Sha256(Box::default()),
            HashAlgo::Blake3 => Hasher::Blake3(Box::default()),
        }
    }
}

/// Incremental hashing of an artifact's bytes.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Box<sha2::Sha256>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => sha2::Digest::update(h.as_mut(), data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    pub fn finish(self) -> Reference {
        match self {
            Hasher::Sha256(h) => {
                let out = sha2::Digest::finalize(*h);
                let mut digest = [0u8; DIGEST_LEN];
                digest.copy_from_slice(&out);
                Reference::new(HashAlgo::Sha256, digest)
            }
            Hasher::Blake3(h) => Reference::new(HashAlgo::Blake3, *h.finalize().as_bytes()),
        }
    }
}

/// The content address of an artifact.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    algo: HashAlgo,
    digest: [u8; DIGEST_LEN],
}

impl Reference {
    pub fn new(algo: HashAlgo, digest: [u8; DIGEST_LEN]) -> Reference {
        Reference { algo, digest }
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// Encodes as 34 bytes: `hash_id` (u16, little-endian) then the digest.
    pub fn to_bytes(&self) -> [u8; 2 + DIGEST_LEN] {
        let mut out = [0u8; 2 + DIGEST_LEN];
        out[..2].copy_from_slice(&self.algo.id().to_le_bytes());
        out[2..].copy_from_slice(&self.digest);
        out
    }

    /// Decodes the 34-byte form written by [`Reference::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Reference, ParseReferenceError> {
        if b.len() != 2 + DIGEST_LEN {
            return Err(ParseReferenceError::Length(b.len()));
        }
        let id = u16::from_le_bytes([b[0], b[1]]);
        let algo = HashAlgo::from_id(id).ok_or(ParseReferenceError::UnknownHashId(id))?;
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&b[2..]);
        Ok(Reference { algo, digest })
    }

    /// The first bytes of the digest in hex, for compact display.
    pub fn short(&self) -> String {
        hex::encode(&self.digest[..6])
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo.prefix(), hex::encode(self.digest))
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseReferenceError {
    #[error("reference '{0}' has no '<algorithm>:' prefix (expected b3:<hex> or sha256:<hex>)")]
    NoPrefix(String),
    #[error("reference '{0}' names an unknown hash algorithm (expected b3 or sha256)")]
    UnknownAlgorithm(String),
    #[error("reference '{0}' does not have 64 hex digits")]
    BadDigest(String),
    #[error("encoded reference has {0} bytes, expected 34")]
    Length(usize),
    #[error("encoded reference has unknown hash id {0:#06x}")]
    UnknownHashId(u16),
}

impl FromStr for Reference {
    type Err = ParseReferenceError;

    fn from_str(s: &str) -> Result<Reference, ParseReferenceError> {
        let (prefix, hexpart) = s
            .split_once(':')
            .ok_or_else(|| ParseReferenceError::NoPrefix(s.to_string()))?;
        let algo = match prefix {
            "b3" | "blake3" => HashAlgo::Blake3,
            "sha256" => HashAlgo::Sha256,
            _ => return Err(ParseReferenceError::UnknownAlgorithm(s.to_string())),
        };
        let mut digest = [0u8; DIGEST_LEN];
        hex::decode_to_slice(hexpart, &mut digest)
            .map_err(|_| ParseReferenceError::BadDigest(s.to_string()))?;
        Ok(Reference { algo, digest })
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_digests_match_the_published_test_vectors() {
        // SHA-256("abc") and BLAKE3("") from the algorithms' specifications.
        assert_eq!(
            HashAlgo::Sha256.digest(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            HashAlgo::Blake3.digest(b"").to_string(),
            "b3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn incremental_hashing_equals_one_shot() {
        for algo in [HashAlgo::Sha256, HashAlgo::Blake3] {
            let mut h = algo.hasher();
            h.update(b"hello ");
            h.update(b"world");
            assert_eq!(h.finish(), algo.digest(b"hello world"));
        }
    }

    #[test]
    fn malformed_text_references_are_rejected_with_the_reason() {
        assert!(matches!(
            "abc".parse::<Reference>(),
            Err(ParseReferenceError::NoPrefix(_))
        ));
        assert!(matches!(
            "md5:00".parse::<Reference>(),
            Err(ParseReferenceError::UnknownAlgorithm(_))
        ));
        assert!(matches!(
            "b3:zz".parse::<Reference>(),
            Err(ParseReferenceError::BadDigest(_))
        ));
    }

    proptest! {
        #[test]
        fn text_and_binary_forms_round_trip(sha in any::<bool>(), digest in any::<[u8; 32]>()) {
            let algo = if sha { HashAlgo::Sha256 } else { HashAlgo::Blake3 };
            let r = Reference::new(algo, digest);
            prop_assert_eq!(r.to_string().parse::<Reference>().unwrap(), r);
            prop_assert_eq!(Reference::from_bytes(&r.to_bytes()).unwrap(), r);
        }
    }
}
