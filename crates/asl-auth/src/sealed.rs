//! Key artifacts: a public key, and a private key sealed under a passphrase.
//!
//! The sealed form derives a 32-byte key from the passphrase with Argon2id (RFC 9106; the
//! `argon2` crate) and encrypts the ed25519 seed with ChaCha20-Poly1305 (RFC 8439; the
//! `chacha20poly1305` crate). The associated data is the canonical JSON of everything in the
//! artifact except the ciphertext, so the public key and the KDF parameters cannot be
//! swapped without the tag failing. Signing itself is asl-prov's ([`asl_prov::sign::Key`]).

use asl_prov::sign::Key;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};

use crate::entropy::{Entropy, canonical};
use crate::error::{AuthError, Result};

pub const PUBLIC_KEY_FORMAT: &str = "asl-auth-public-key/1";
pub const SEALED_KEY_FORMAT: &str = "asl-auth-sealed-key/1";

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (the OWASP minimum for Argon2id).
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// A public-key artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyArtifact {
    pub algorithm: String,
    pub format: String,
    /// asl-key's key id (SHA-256 of the securesystemslib key description).
    pub keyid: String,
    /// `offline-root`, `domain-root` or `principal`.
    pub purpose: String,
    /// Hex ed25519 public key.
    pub public: String,
}

impl PublicKeyArtifact {
    pub fn of(key: &Key, purpose: &str) -> PublicKeyArtifact {
        PublicKeyArtifact {
            algorithm: "ed25519".into(),
            format: PUBLIC_KEY_FORMAT.into(),
            keyid: key.keyid(),
            purpose: purpose.into(),
            public: key.public_hex(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    /// `argon2id`.
    pub name: String,
    pub p_cost: u32,
    /// Hex, 16 bytes.
    pub salt: String,
    pub t_cost: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AeadParams {
    /// `chacha20poly1305`.
    pub name: String,
    /// Hex, 12 bytes.
    pub nonce: String,
}

/// Everything of a sealed key but its ciphertext: the associated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHeader {
    pub aead: AeadParams,
    pub algorithm: String,
    pub format: String,
    pub kdf: KdfParams,
    pub purpose: String,
    pub public: String,
}

/// A passphrase-sealed private-key artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// Hex: the encrypted 32-byte seed followed by the 16-byte tag.
    pub ciphertext: String,
    pub header: SealedHeader,
}

fn derive(passphrase: &[u8], kdf: &KdfParams) -> Result<[u8; 32]> {
    let salt = hex::decode(&kdf.salt)
        .map_err(|_| AuthError::Internal("the KDF salt is not hex".into()))?;
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| AuthError::Internal(format!("Argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(passphrase, &salt, &mut out)
        .map_err(|e| AuthError::Internal(format!("Argon2: {e}")))?;
    Ok(out)
}

impl SealedKey {
    /// Seals `key` under `passphrase`; salt and nonce come from `entropy`.
    pub fn seal(
        key: &Key,
        purpose: &str,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<SealedKey> {
        if passphrase.is_empty() {
            return Err(AuthError::Usage(
                "the passphrase is empty: a sealed key needs one".into(),
            ));
        }
        let header = SealedHeader {
            aead: AeadParams {
                name: "chacha20poly1305".into(),
                nonce: hex::encode(entropy.bytes::<12>()?),
            },
            algorithm: "ed25519".into(),
            format: SEALED_KEY_FORMAT.into(),
            kdf: KdfParams {
                m_cost_kib: M_COST_KIB,
                name: "argon2id".into(),
                p_cost: P_COST,
                salt: hex::encode(entropy.bytes::<16>()?),
                t_cost: T_COST,
            },
            purpose: purpose.into(),
            public: key.public_hex(),
        };
        let k = derive(passphrase, &header.kdf)?;
        let nonce: [u8; 12] = hex_array(&header.aead.nonce)?;
        let cipher = ChaCha20Poly1305::new(&k.into());
        let aad = canonical(&header)?;
        let seed = key.seed();
        let ct = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: &seed,
                    aad: &aad,
                },
            )
            .map_err(|_| AuthError::Internal("ChaCha20-Poly1305 encryption failed".into()))?;
        Ok(SealedKey {
            ciphertext: hex::encode(ct),
            header,
        })
    }

    /// Opens the key; a wrong passphrase (or tampered artifact) is [`AuthError::Passphrase`].
    pub fn open(&self, passphrase: &[u8], what: &str) -> Result<Key> {
        let h = &self.header;
        if h.format != SEALED_KEY_FORMAT
            || h.kdf.name != "argon2id"
            || h.aead.name != "chacha20poly1305"
            || h.algorithm != "ed25519"
        {
            return Err(AuthError::Decode {
                what: what.into(),
                kind: "sealed key",
                reason: format!(
                    "format {} / kdf {} / aead {} / algorithm {} not supported",
                    h.format, h.kdf.name, h.aead.name, h.algorithm
                ),
            });
        }
        let k = derive(passphrase, &h.kdf)?;
        let nonce: [u8; 12] = hex_array(&h.aead.nonce)?;
        let ct = hex::decode(&self.ciphertext).map_err(|_| AuthError::Decode {
            what: what.into(),
            kind: "sealed key",
            reason: "the ciphertext is not hex".into(),
        })?;
        let aad = canonical(h)?;
        let seed = ChaCha20Poly1305::new(&k.into())
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map_err(|_| AuthError::Passphrase { what: what.into() })?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| AuthError::Decode {
            what: what.into(),
            kind: "sealed key",
            reason: "the sealed seed is not 32 bytes".into(),
        })?;
        let key = Key::from_seed(seed);
        if key.public_hex() != h.public {
            return Err(AuthError::Decode {
                what: what.into(),
                kind: "sealed key",
                reason: "the sealed private key does not belong to its stated public key".into(),
            });
        }
        Ok(key)
    }
}

pub(crate) fn hex_array<const N: usize>(s: &str) -> Result<[u8; N]> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| AuthError::Internal(format!("'{s}' is not {N} bytes of hex")))
}

/// A new ed25519 key from `entropy`.
pub fn new_key(entropy: &mut Entropy) -> Result<Key> {
    Ok(Key::from_seed(entropy.bytes::<32>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_with_its_passphrase_only() {
        let mut e = Entropy::fixed([3; 32]);
        let k = new_key(&mut e).unwrap();
        let s = SealedKey::seal(&k, "offline-root", b"correct horse", &mut e).unwrap();
        assert_eq!(
            s.open(b"correct horse", "root").unwrap().public_hex(),
            k.public_hex()
        );
        let err = s.open(b"wrong", "root").err().unwrap();
        assert!(matches!(err, AuthError::Passphrase { .. }), "{err}");
        // The public key is bound by the associated data.
        let mut t = s.clone();
        t.header.public = new_key(&mut e).unwrap().public_hex();
        assert!(matches!(
            t.open(b"correct horse", "root").err().unwrap(),
            AuthError::Passphrase { .. }
        ));
    }
}
