//! Ed25519 keys and receipt signatures (PER/SIGNATURE/1).
//!
//! The signed payload is the canonical JSON of `{domain_id, snapshot_id, per_artifact_id,
//! input_artifact_ids (sorted), program_id, logseq}` where `program_id` is the receipt's
//! action digest and `(snapshot_id, logseq)` is the store snapshot the capture started
//! from (the state its inputs were read under). No timestamps, no environment: two nodes
//! signing the same receipt under the same snapshot sign identical bytes.

use std::io::Read;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::ProvError;

pub const KEY_FORMAT: &str = "asl-key/1";
pub const SIGNATURE_FORMAT: &str = "asl-per-signature/1";

/// A private key as stored on disk (JSON, mode 0600).
#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    algorithm: String,
    /// The 32-byte seed, hex.
    private: String,
    public: String,
}

/// A loaded signing key.
pub struct Key {
    signing: SigningKey,
}

impl Key {
    /// A fresh key from the kernel's random source.
    pub fn generate() -> Result<Key, ProvError> {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(|e| ProvError::Os("reading /dev/urandom".into(), e))?;
        Ok(Key {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The key whose 32-byte ed25519 seed (RFC 8032 private key) is `seed`: for keys kept
    /// in another container (the authority's passphrase-sealed key artifacts) and for test
    /// vectors made from fixed entropy.
    pub fn from_seed(seed: [u8; 32]) -> Key {
        Key {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte seed, to be sealed by the caller; never print or store it in the clear.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// Writes the key to `path` (refuses to overwrite; mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), ProvError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let kf = KeyFile {
            format: KEY_FORMAT.into(),
            algorithm: "ed25519".into(),
            private: hex::encode(self.signing.to_bytes()),
            public: self.public_hex(),
        };
        let mut text = serde_json::to_string_pretty(&kf).map_err(|e| ProvError::Key {
            path: path.into(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ProvError::Key {
                path: path.into(),
                reason: format!("cannot create it: {e}"),
            })?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| ProvError::Key {
                path: path.into(),
                reason: format!("cannot write it: {e}"),
            })
    }

    /// Loads a key file written by [`Key::save`].
    pub fn load(path: &Path) -> Result<Key, ProvError> {
        let bad = |reason: String| ProvError::Key {
            path: path.into(),
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let kf: KeyFile = serde_json::from_str(&text).map_err(|e| {
            // A key made elsewhere (openssl, securesystemslib) is converted once, not read
            // here: the asl key file is the one format signing takes.
            if crate::keyfmt::parse_private(&text).is_ok() {
                bad(format!(
                    "not an asl key file but an ed25519 key made elsewhere; convert it with \
                     `asl-key import {} NEW.key` and use NEW.key",
                    path.display()
                ))
            } else {
                bad(format!(
                    "not an asl key file ({e}); make one with `asl-key generate`, or convert \
                     a PKCS#8 PEM or securesystemslib key with `asl-key import`"
                ))
            }
        })?;
        if kf.format != KEY_FORMAT || kf.algorithm != "ed25519" {
            return Err(bad(format!(
                "format '{}' / algorithm '{}' not supported (expected {KEY_FORMAT}, ed25519)",
                kf.format, kf.algorithm
            )));
        }
        let seed: [u8; 32] = hex::decode(&kf.private)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("the private key is not 64 hex digits".into()))?;
        let key = Key {
            signing: SigningKey::from_bytes(&seed),
        };
        if key.public_hex() != kf.public {
            return Err(bad(
                "the public key does not belong to the private key".into()
            ));
        }
        Ok(key)
    }

    /// Reads an ed25519 private key made elsewhere: PEM PKCS#8 (openssl, securesystemslib's
    /// `CryptoSigner`) or a securesystemslib JSON key (see [`crate::keyfmt`]). A public key
    /// stated in the file must belong to the private key.
    pub fn import(path: &Path) -> Result<Key, ProvError> {
        let bad = |reason: String| ProvError::Key {
            path: path.into(),
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let imported = crate::keyfmt::parse_private(&text).map_err(bad)?;
        let key = Key {
            signing: SigningKey::from_bytes(&imported.seed),
        };
        if let Some(stated) = imported.stated_public
            && stated != key.public_bytes()
        {
            return Err(bad(format!(
                "the {} key states a public key that does not belong to its private key",
                imported.format
            )));
        }
        Ok(key)
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// The key id: SHA-256 of the canonical securesystemslib key description, so that
    /// in-toto tools name the key the same way.
    pub fn keyid(&self) -> String {
        keyid_of(&self.public_hex())
    }

    pub fn sign(&self, msg: &[u8]) -> String {
        hex::encode(self.signing.sign(msg).to_bytes())
    }
}

/// Key id of a hex ed25519 public key (see [`Key::keyid`]).
pub fn keyid_of(public_hex: &str) -> String {
    use sha2::Digest;
    let desc = serde_json::json!({
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": public_hex},
    });
    let bytes = crate::canon::encode(&desc).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// Checks an ed25519 signature (strict: rejects malleable and weak-key signatures).
pub fn verify(public_hex: &str, msg: &[u8], sig_hex: &str) -> Result<(), String> {
    let pk: [u8; 32] = hex::decode(public_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or("public key is not 64 hex digits")?;
    let sig: [u8; 64] = hex::decode(sig_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or("signature is not 128 hex digits")?;
    let vk = VerifyingKey::from_bytes(&pk).map_err(|e| format!("bad public key: {e}"))?;
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "signature does not verify".to_string())
}

/// The PER/SIGNATURE/1 payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignaturePayload {
    pub domain_id: u32,
    pub snapshot_id: u64,
    pub per_artifact_id: String,
    pub input_artifact_ids: Vec<String>,
    pub program_id: String,
    pub logseq: u64,
}

/// A signature artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerSignature {
    pub format: String,
    pub algorithm: String,
    pub payload: SignaturePayload,
    pub payload_hash: String,
    pub public_key: String,
    pub keyid: String,
    pub signature: String,
}

impl PerSignature {
    pub fn create(
        key: &Key,
        algo: asl_store::HashAlgo,
        payload: SignaturePayload,
    ) -> Result<PerSignature, String> {
        let bytes = crate::canon::encode(&payload)?;
        Ok(PerSignature {
            format: SIGNATURE_FORMAT.into(),
            algorithm: "ed25519".into(),
            payload_hash: algo.digest(&bytes).to_string(),
            public_key: key.public_hex(),
            keyid: key.keyid(),
            signature: key.sign(&bytes),
            payload,
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<PerSignature, String> {
        let s: PerSignature = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.format != SIGNATURE_FORMAT {
            return Err(format!("format '{}' is not '{SIGNATURE_FORMAT}'", s.format));
        }
        Ok(s)
    }

    /// Checks the signature over the payload it carries.
    pub fn check(&self) -> Result<(), String> {
        if self.algorithm != "ed25519" {
            return Err(format!("algorithm '{}' is not supported", self.algorithm));
        }
        let bytes = crate::canon::encode(&self.payload)?;
        verify(&self.public_key, &bytes, &self.signature)
    }
}

/// The payload a receipt should be signed with.
pub fn payload_for(
    receipt: &crate::receipt::Receipt,
    receipt_ref: &str,
    domain_id: u32,
    snapshot: (u64, u64),
) -> SignaturePayload {
    let inputs = receipt.sorted_input_refs();
    SignaturePayload {
        domain_id,
        snapshot_id: snapshot.0,
        per_artifact_id: receipt_ref.to_string(),
        input_artifact_ids: inputs,
        program_id: receipt.action_digest.clone(),
        logseq: snapshot.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_back_and_its_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        let k = Key::generate().unwrap();
        k.save(&p).unwrap();
        let k2 = Key::load(&p).unwrap();
        assert_eq!(k.public_hex(), k2.public_hex());
        let sig = k2.sign(b"msg");
        assert!(verify(&k.public_hex(), b"msg", &sig).is_ok());
        assert!(verify(&k.public_hex(), b"other", &sig).is_err());
    }

    #[test]
    fn an_imported_key_whose_stated_public_key_differs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sslib.json");
        let k = Key::generate().unwrap();
        let other = Key::generate().unwrap();
        let text = |public: String| {
            serde_json::json!({
                "keytype": "ed25519", "scheme": "ed25519",
                "keyval": {"public": public, "private": hex::encode(k.signing.to_bytes())},
            })
            .to_string()
        };
        std::fs::write(&p, text(k.public_hex())).unwrap();
        assert_eq!(Key::import(&p).unwrap().public_hex(), k.public_hex());
        std::fs::write(&p, text(other.public_hex())).unwrap();
        let e = Key::import(&p).err().unwrap().to_string();
        assert!(
            e.contains("sslib.json") && e.contains("does not belong"),
            "{e}"
        );
    }

    #[test]
    fn signing_with_a_foreign_key_file_says_to_import_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        std::fs::write(
            &p,
            "-----BEGIN PRIVATE KEY-----\n\
             MC4CAQAwBQYDK2VwBCIEIPNw7usTJYGt2EMcMXlbp6QZfNJ1GGYi71ToyPimibM5\n\
             -----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = Key::load(&p).err().unwrap().to_string();
        assert!(e.contains("asl-key import") && e.contains("key.pem"), "{e}");
    }

    #[test]
    fn a_key_file_that_is_not_a_key_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.json");
        std::fs::write(&p, "hello").unwrap();
        let e = Key::load(&p).err().unwrap().to_string();
        assert!(e.contains("bad.json"), "{e}");
    }
}
