//! Ed25519 keys in the formats other tools write and read, so a key made elsewhere can sign
//! receipts and exports, and an asl key can be named in an in-toto layout.
//!
//! Read: PEM PKCS#8 (RFC 8410 `PRIVATE KEY`, as `openssl genpkey -algorithm ed25519` and
//! securesystemslib's `CryptoSigner` write it; the v2 form carrying the public key too), and
//! securesystemslib's JSON key dictionary (`{"keytype": "ed25519", "scheme": "ed25519",
//! "keyval": {"public": HEX, "private": HEX}}`, unencrypted). Written: the public key as PEM
//! SubjectPublicKeyInfo (what `in-toto-verify --verification-keys` and `openssl pkey
//! -pubout` use) and as a securesystemslib public key dictionary (what a layout's `keys`
//! holds).
//!
//! PEM and DER are read and written by ed25519-dalek's `pkcs8` support (the RustCrypto
//! `pkcs8`/`spki` crates), which also checks that a public key stated in a PKCS#8 v2 file
//! belongs to its private key; this module only tells the formats apart and words the errors.

use ed25519_dalek::pkcs8::{self, DecodePrivateKey, EncodePublicKey, spki};

/// What a key file held.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportedSeed {
    /// The 32-byte ed25519 seed (RFC 8032 private key).
    pub seed: [u8; 32],
    /// The public key the file states beside it, to be checked against the seed.
    pub stated_public: Option<[u8; 32]>,
    /// The format, for messages: `PKCS#8 PEM` or `securesystemslib JSON`.
    pub format: &'static str,
}

/// Reads an ed25519 private key from the text of a PEM PKCS#8 file or a securesystemslib
/// JSON key. The error says what the text is and what to do instead.
pub fn parse_private(text: &str) -> Result<ImportedSeed, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with("-----BEGIN ") {
        let label = trimmed
            .lines()
            .next()
            .and_then(|l| l.trim().strip_prefix("-----BEGIN "))
            .and_then(|l| l.strip_suffix("-----"))
            .ok_or("malformed PEM header")?;
        return match label {
            "PRIVATE KEY" => pkcs8_seed(trimmed),
            "ENCRYPTED PRIVATE KEY" => Err(
                "the PKCS#8 key is encrypted; decrypt it first: openssl pkey -in FILE -out PLAIN.pem"
                    .into(),
            ),
            "PUBLIC KEY" => Err("this is a public key; import needs the private key".into()),
            other => Err(format!(
                "PEM '{other}' is not supported (expected 'PRIVATE KEY', PKCS#8 ed25519: \
                 openssl genpkey -algorithm ed25519)"
            )),
        };
    }
    if trimmed.starts_with('{') {
        return sslib_seed(trimmed);
    }
    Err(
        "neither PEM nor JSON; expected a PKCS#8 PEM ed25519 key (openssl genpkey -algorithm \
         ed25519) or a securesystemslib ed25519 key (JSON)"
            .into(),
    )
}

fn sslib_seed(text: &str) -> Result<ImportedSeed, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let field = |name: &str| v.get(name).and_then(|x| x.as_str());
    if field("format") == Some(crate::sign::KEY_FORMAT) {
        return Err("this is already an asl key file: --sign takes it as it is".into());
    }
    let (Some(keytype), Some(scheme)) = (field("keytype"), field("scheme")) else {
        return Err("JSON without 'keytype' and 'scheme': not a securesystemslib key".into());
    };
    if keytype != "ed25519" || scheme != "ed25519" {
        return Err(format!(
            "securesystemslib key of type '{keytype}' / scheme '{scheme}'; only ed25519 is supported"
        ));
    }
    let keyval = |name: &str| {
        v.get("keyval")
            .and_then(|k| k.get(name))
            .and_then(|x| x.as_str())
    };
    let private = keyval("private")
        .filter(|p| !p.is_empty())
        .ok_or("the securesystemslib key has no keyval.private: it is a public key")?;
    let seed = hex32(private).ok_or("keyval.private is not 64 hex digits")?;
    let stated_public = match keyval("public") {
        Some(p) => Some(hex32(p).ok_or("keyval.public is not 64 hex digits")?),
        None => None,
    };
    Ok(ImportedSeed {
        seed,
        stated_public,
        format: "securesystemslib JSON",
    })
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok().and_then(|v| v.try_into().ok())
}

/// The seed of a PEM PKCS#8 ed25519 key (RFC 8410, v1 or v2).
fn pkcs8_seed(pem: &str) -> Result<ImportedSeed, String> {
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| match e {
        pkcs8::Error::PublicKey(spki::Error::OidUnknown { .. }) => {
            "the PKCS#8 key is not ed25519 (only ed25519 keys sign receipts; make one with \
             openssl genpkey -algorithm ed25519)"
                .to_string()
        }
        e => format!("not a PKCS#8 ed25519 key: {e}"),
    })?;
    Ok(ImportedSeed {
        seed: key.to_bytes(),
        // A stated public key has been checked against the seed by the decoder.
        stated_public: None,
        format: "PKCS#8 PEM",
    })
}

/// The public key as PEM SubjectPublicKeyInfo (RFC 8410), byte for byte what `openssl pkey
/// -pubout` writes.
pub fn public_pem(public: &[u8; 32]) -> Result<String, String> {
    ed25519_dalek::VerifyingKey::from_bytes(public)
        .map_err(|e| format!("not an ed25519 public key: {e}"))?
        .to_public_key_pem(spki::der::pem::LineEnding::LF)
        .map_err(|e| format!("cannot encode the public key as PEM: {e}"))
}

/// The public key as a securesystemslib key dictionary, with its key id: what an in-toto
/// layout lists under `keys` and `SSlibKey.from_dict` reads.
pub fn public_sslib(public_hex: &str) -> serde_json::Value {
    serde_json::json!({
        "keyid": crate::sign::keyid_of(public_hex),
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": public_hex},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl genpkey -algorithm ed25519` output and its `openssl pkey -pubout`.
    const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIPNw7usTJYGt2EMcMXlbp6QZfNJ1GGYi71ToyPimibM5\n\
        -----END PRIVATE KEY-----\n";
    const OPENSSL_PUB: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAk2hj5JJPjaREx3FU1Ls6zdXQvL6bj/O5mHLwr+kZgVI=\n\
        -----END PUBLIC KEY-----\n";

    #[test]
    fn an_openssl_pkcs8_key_gives_its_seed_and_the_public_pem_matches_openssl() {
        let k = parse_private(OPENSSL_KEY).unwrap();
        assert_eq!(k.format, "PKCS#8 PEM");
        let public = ed25519_dalek::SigningKey::from_bytes(&k.seed)
            .verifying_key()
            .to_bytes();
        assert_eq!(public_pem(&public).unwrap(), OPENSSL_PUB);
    }

    /// RFC 8410 OneAsymmetricKey version 1 (v2): attributes, then the public key.
    fn v2_pem(seed: &[u8; 32], public: &[u8; 32]) -> String {
        let mut body = vec![0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
        body.extend_from_slice(&[0x04, 0x22, 0x04, 0x20]);
        body.extend_from_slice(seed);
        body.extend_from_slice(&[0xa0, 0x02, 0x30, 0x00, 0x81, 0x21, 0x00]);
        body.extend_from_slice(public);
        let mut der = vec![0x30, body.len() as u8];
        der.extend_from_slice(&body);
        // PEM bodies are lines of 64 characters.
        let b64 = crate::export::base64(&der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn a_v2_pkcs8_key_loads_only_with_its_own_public_key() {
        let v1 = parse_private(OPENSSL_KEY).unwrap();
        let public = ed25519_dalek::SigningKey::from_bytes(&v1.seed)
            .verifying_key()
            .to_bytes();
        let k = parse_private(&v2_pem(&v1.seed, &public)).unwrap();
        assert_eq!(k.seed, v1.seed);
        let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_bytes();
        let e = parse_private(&v2_pem(&v1.seed, &other)).unwrap_err();
        assert!(e.contains("not a PKCS#8 ed25519 key"), "{e}");
    }

    #[test]
    fn a_securesystemslib_json_key_gives_its_seed_and_a_public_key_is_refused() {
        let seed = "f370eeeb132581add8431c31795ba7a4197cd275186622ef54e8c8f8a689b339";
        let public = "936863e4924f8da444c77154d4bb3acdd5d0bcbe9b8ff3b99872f0afe9198152";
        let text = format!(
            r#"{{"keytype": "ed25519", "scheme": "ed25519", "keyid_hash_algorithms": ["sha256", "sha512"],
               "keyval": {{"public": "{public}", "private": "{seed}"}}}}"#
        );
        let k = parse_private(&text).unwrap();
        assert_eq!(hex::encode(k.seed), seed);
        assert_eq!(k.stated_public.map(hex::encode).as_deref(), Some(public));
        let public_only = format!(
            r#"{{"keytype": "ed25519", "scheme": "ed25519", "keyval": {{"public": "{public}"}}}}"#
        );
        assert!(
            parse_private(&public_only)
                .unwrap_err()
                .contains("public key")
        );
    }

    #[test]
    fn other_keys_are_refused_saying_what_they_are() {
        let cases = [
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "public key",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "openssl pkey",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "not supported",
            ),
            // An RSA PKCS#8 key's prefix: another algorithm identifier.
            (
                "-----BEGIN PRIVATE KEY-----\nMBoCAQAwDQYJKoZIhvcNAQEBBQAEBgQEAAAAAA==\n-----END PRIVATE KEY-----\n",
                "not ed25519",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n",
                "not a PKCS#8 ed25519 key",
            ),
            (
                r#"{"keytype": "rsa", "scheme": "rsassa-pss-sha256"}"#,
                "only ed25519",
            ),
            ("hello", "neither PEM nor JSON"),
        ];
        for (text, needle) in cases {
            let e = parse_private(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
