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
//! Only the few DER shapes of these two structures are parsed; anything else is refused with
//! the reason, never guessed at.

/// The DER of the ed25519 AlgorithmIdentifier: SEQUENCE { OID 1.3.101.112 }.
const ED25519_ALGORITHM: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

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
        let (label, der) = pem_decode(trimmed)?;
        return match label.as_str() {
            "PRIVATE KEY" => pkcs8_seed(&der),
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

/// The seed of an RFC 8410 OneAsymmetricKey: SEQUENCE { INTEGER 0|1, AlgorithmIdentifier
/// ed25519, OCTET STRING { OCTET STRING seed }, [0] attributes OPTIONAL, [1] public key
/// OPTIONAL }.
fn pkcs8_seed(der: &[u8]) -> Result<ImportedSeed, String> {
    let bad = |what: &str| format!("not a PKCS#8 ed25519 key: {what}");
    let (body, rest) = tlv(der, 0x30).map_err(|e| bad(&e))?;
    if !rest.is_empty() {
        return Err(bad("bytes after the key"));
    }
    let (version, body) = tlv(body, 0x02).map_err(|e| bad(&e))?;
    if version != [0] && version != [1] {
        return Err(bad("unknown version"));
    }
    let Some(body) = body.strip_prefix(&ED25519_ALGORITHM[..]) else {
        return Err(
            "the PKCS#8 key is not ed25519 (only ed25519 keys sign receipts; make one with \
             openssl genpkey -algorithm ed25519)"
                .into(),
        );
    };
    let (private, mut body) = tlv(body, 0x04).map_err(|e| bad(&e))?;
    let (seed, tail) = tlv(private, 0x04).map_err(|e| bad(&e))?;
    if !tail.is_empty() {
        return Err(bad("bytes after the private key"));
    }
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| bad("the private key is not 32 bytes"))?;
    let mut stated_public = None;
    while let Some(&tag) = body.first() {
        let (value, rest) = tlv(body, tag).map_err(|e| bad(&e))?;
        match tag {
            // Attributes: nothing in them concerns the key.
            0xa0 => {}
            // The public key as a BIT STRING body: no unused bits, then 32 bytes.
            0x81 => {
                let key = value
                    .strip_prefix(&[0u8][..])
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .ok_or_else(|| bad("the public key is not 32 bytes"))?;
                stated_public = Some(key);
            }
            _ => return Err(bad(&format!("unexpected field (tag {tag:#04x})"))),
        }
        body = rest;
    }
    Ok(ImportedSeed {
        seed,
        stated_public,
        format: "PKCS#8 PEM",
    })
}

/// One DER element with the expected tag: its value and what follows it. Lengths up to
/// 2^16 - 1, which covers every key structure read here.
fn tlv(der: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let (&t, rest) = der.split_first().ok_or("truncated")?;
    if t != tag {
        return Err(format!("expected tag {tag:#04x}, found {t:#04x}"));
    }
    let (&first, rest) = rest.split_first().ok_or("truncated")?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => {
            let (&n, rest) = rest.split_first().ok_or("truncated")?;
            (usize::from(n), rest)
        }
        0x82 => {
            let b = rest.get(..2).ok_or("truncated")?;
            (usize::from(b[0]) << 8 | usize::from(b[1]), &rest[2..])
        }
        _ => return Err("length too long for a key".into()),
    };
    if rest.len() < len {
        return Err("truncated".into());
    }
    Ok(rest.split_at(len))
}

/// The label and the decoded body of the first PEM block in `text`.
fn pem_decode(text: &str) -> Result<(String, Vec<u8>), String> {
    let mut lines = text.lines().map(str::trim);
    let begin = lines.next().unwrap_or_default();
    let label = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or("malformed PEM header")?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == end {
            return Ok((label, base64_decode(&body)?));
        }
        if line.contains(':') {
            return Err(format!(
                "PEM '{label}' has headers: an encrypted legacy key"
            ));
        }
        body.push_str(line);
    }
    Err(format!("PEM '{label}' has no '{end}' line"))
}

/// Standard base64 with padding, as PEM bodies use it.
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let digit = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("'{}' is not a base64 digit", c as char)),
        }
        .into())
    };
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return Err("base64 body is not a multiple of 4 characters".into());
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, quad) in s.chunks(4).enumerate() {
        let last = i + 1 == s.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err("misplaced base64 padding".into());
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | digit(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Ok(out)
}

/// The public key as PEM SubjectPublicKeyInfo (RFC 8410), byte for byte what `openssl pkey
/// -pubout` writes.
pub fn public_pem(public: &[u8; 32]) -> String {
    let mut der = vec![0x30, 0x2a];
    der.extend_from_slice(&ED25519_ALGORITHM);
    der.extend_from_slice(&[0x03, 0x21, 0x00]);
    der.extend_from_slice(public);
    let b64 = crate::export::base64(&der);
    let mut s = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push('\n');
    }
    s.push_str("-----END PUBLIC KEY-----\n");
    s
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
        assert_eq!(public_pem(&public), OPENSSL_PUB);
    }

    #[test]
    fn a_v2_pkcs8_key_states_its_public_key() {
        // RFC 8410 OneAsymmetricKey version 1 (v2): attributes, then the public key.
        let v1 = parse_private(OPENSSL_KEY).unwrap();
        let public = ed25519_dalek::SigningKey::from_bytes(&v1.seed)
            .verifying_key()
            .to_bytes();
        let mut body = vec![0x02, 0x01, 0x01];
        body.extend_from_slice(&ED25519_ALGORITHM);
        body.extend_from_slice(&[0x04, 0x22, 0x04, 0x20]);
        body.extend_from_slice(&v1.seed);
        body.extend_from_slice(&[0xa0, 0x02, 0x30, 0x00, 0x81, 0x21, 0x00]);
        body.extend_from_slice(&public);
        let mut der = vec![0x30, body.len() as u8];
        der.extend_from_slice(&body);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            crate::export::base64(&der)
        );
        let k = parse_private(&pem).unwrap();
        assert_eq!(k.seed, v1.seed);
        assert_eq!(k.stated_public, Some(public));
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
            ("-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n", "no '-----END"),
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

    #[test]
    fn base64_decoding_inverts_the_encoder() {
        for n in 0..10u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&crate::export::base64(&data)).unwrap(), data);
        }
        assert!(base64_decode("Zg=a").is_err());
    }
}
