//! Signed requests: a client proves itself with an ed25519 key made by `asl-key`.
//!
//! Each request carries four headers:
//! * `x-asl-key`: the public key, 64 hex digits;
//! * `x-asl-time`: seconds since the epoch when it was signed;
//! * `x-asl-nonce`: 32 hex digits, never used twice by the client;
//! * `x-asl-content-sha256`: the SHA-256 of the body, hex (of the empty string for none);
//! * `x-asl-signature`: the ed25519 signature, hex, over [`canonical`].
//!
//! The server accepts a request only if the key is listed in `server.conf`, the time is
//! within [`MAX_SKEW`] of its clock, the `(key, nonce)` pair was not seen within that window
//! (replay protection), the signature verifies, and the body hashes to what was signed (for a
//! streamed upload: checked at its end, before anything is acknowledged).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest;

pub const H_KEY: &str = "x-asl-key";
pub const H_TIME: &str = "x-asl-time";
pub const H_NONCE: &str = "x-asl-nonce";
pub const H_CONTENT: &str = "x-asl-content-sha256";
pub const H_SIGNATURE: &str = "x-asl-signature";

/// How far a request's time may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// The bytes a request's signature covers.
pub fn canonical(
    method: &str,
    path_and_query: &str,
    time: u64,
    nonce: &str,
    content_sha256: &str,
) -> Vec<u8> {
    format!("ASL-REQUEST-1\n{method}\n{path_and_query}\n{time}\n{nonce}\n{content_sha256}\n")
        .into_bytes()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The headers of one signed request, as `(name, value)` pairs.
pub fn sign(
    key: &asl_prov::sign::Key,
    method: &str,
    path_and_query: &str,
    content_sha256: &str,
) -> Vec<(&'static str, String)> {
    let time = now_secs();
    let mut raw = [0u8; 16];
    // A nonce only has to be unique per key: the kernel's random source, or the time and a
    // counter if that cannot be read.
    if rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty()).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        raw[..8].copy_from_slice(&time.to_le_bytes());
        raw[8..].copy_from_slice(&n.to_le_bytes());
    }
    let nonce = hex::encode(raw);
    let sig = key.sign(&canonical(
        method,
        path_and_query,
        time,
        &nonce,
        content_sha256,
    ));
    vec![
        (H_KEY, key.public_hex()),
        (H_TIME, time.to_string()),
        (H_NONCE, nonce),
        (H_CONTENT, content_sha256.to_string()),
        (H_SIGNATURE, sig),
    ]
}

/// Why a request was not authenticated (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request is not signed: header {0} is missing")]
    Missing(&'static str),
    #[error("key {0} is not known to this server")]
    UnknownKey(String),
    #[error("the request's time is {0} s away from the server's clock (at most 300 s)")]
    Skew(u64),
    #[error("the request was replayed (its nonce was used before)")]
    Replayed,
    #[error("the signature does not verify for key {0}")]
    BadSignature(String),
    #[error("header {0} is malformed")]
    Malformed(&'static str),
}

/// The signed headers of a request, as received.
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: String,
    pub time: u64,
    pub nonce: String,
    pub content_sha256: String,
    pub signature: String,
}

impl Claim {
    /// Reads the headers through `get`.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Claim, AuthError> {
        let h = |name: &'static str| get(name).ok_or(AuthError::Missing(name));
        let claim = Claim {
            key: h(H_KEY)?.to_string(),
            time: h(H_TIME)?
                .parse()
                .map_err(|_| AuthError::Malformed(H_TIME))?,
            nonce: h(H_NONCE)?.to_string(),
            content_sha256: h(H_CONTENT)?.to_ascii_lowercase(),
            signature: h(H_SIGNATURE)?.to_string(),
        };
        let hexlen = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hexlen(&claim.key, 64) {
            return Err(AuthError::Malformed(H_KEY));
        }
        if !hexlen(&claim.nonce, 32) {
            return Err(AuthError::Malformed(H_NONCE));
        }
        if !hexlen(&claim.content_sha256, 64) {
            return Err(AuthError::Malformed(H_CONTENT));
        }
        Ok(claim)
    }
}

/// Nonces seen within the skew window, per key: a replay inside the window is refused, and
/// one outside it fails the time check.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(String, String), u64>>,
}

impl ReplayGuard {
    /// Checks `claim` for `method path` against the known `keys` (public hex) and records
    /// its nonce. Returns the key on success.
    pub fn check(
        &self,
        claim: &Claim,
        method: &str,
        path_and_query: &str,
        known: impl Fn(&str) -> bool,
    ) -> Result<(), AuthError> {
        if !known(&claim.key) {
            return Err(AuthError::UnknownKey(claim.key.clone()));
        }
        let now = now_secs();
        let skew = now.abs_diff(claim.time);
        if skew > MAX_SKEW.as_secs() {
            return Err(AuthError::Skew(skew));
        }
        let msg = canonical(
            method,
            path_and_query,
            claim.time,
            &claim.nonce,
            &claim.content_sha256,
        );
        asl_prov::sign::verify(&claim.key, &msg, &claim.signature)
            .map_err(|_| AuthError::BadSignature(claim.key.clone()))?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, t| now.abs_diff(*t) <= 2 * MAX_SKEW.as_secs());
        if seen
            .insert((claim.key.clone(), claim.nonce.clone()), claim.time)
            .is_some()
        {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim_of(headers: &[(&'static str, String)]) -> Claim {
        Claim::from_headers(|n| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        })
        .unwrap()
    }

    #[test]
    fn a_signed_request_verifies_once_and_a_replay_or_a_change_does_not() {
        let key = asl_prov::sign::Key::generate().unwrap();
        let body = sha256_hex(b"body");
        let headers = sign(&key, "POST", "/v1/stores/a/commit", &body);
        let claim = claim_of(&headers);
        let guard = ReplayGuard::default();
        let known = |k: &str| k == key.public_hex();
        guard
            .check(&claim, "POST", "/v1/stores/a/commit", known)
            .unwrap();
        assert_eq!(
            guard.check(&claim, "POST", "/v1/stores/a/commit", known),
            Err(AuthError::Replayed)
        );
        let fresh = claim_of(&sign(&key, "POST", "/v1/stores/a/commit", &body));
        assert!(matches!(
            guard.check(&fresh, "POST", "/v1/stores/b/commit", known),
            Err(AuthError::BadSignature(_))
        ));
        let other = asl_prov::sign::Key::generate().unwrap();
        let stranger = claim_of(&sign(&other, "GET", "/v1/stores/a", &body));
        assert!(matches!(
            guard.check(&stranger, "GET", "/v1/stores/a", known),
            Err(AuthError::UnknownKey(_))
        ));
        let mut old = claim_of(&sign(&key, "GET", "/v1/stores/a", &body));
        old.time -= 1000;
        assert!(matches!(
            guard.check(&old, "GET", "/v1/stores/a", known),
            Err(AuthError::Skew(_))
        ));
    }
}
