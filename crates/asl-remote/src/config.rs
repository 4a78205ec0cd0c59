//! `/etc/asl/server.conf`: what `asl-server` serves, where, and to whom.
//!
//! Lines of `name = value`; `#` starts a comment; blank lines are ignored. Names:
//!
//! | name | value |
//! |---|---|
//! | `listen` | `ADDRESS:PORT` to listen on (default `127.0.0.1:8443`) |
//! | `tls.cert`, `tls.key` | PEM certificate chain and private key (both, or `plain_http`) |
//! | `plain_http` | `yes`: serve plain HTTP; refused unless `listen` is a loopback address |
//! | `store.NAME.path` | the directory of store NAME (created on first start) |
//! | `store.NAME.s3.endpoint` | instead of `path`: the S3 engine, `https://HOST:PORT` (`http://` only on loopback) |
//! | `store.NAME.s3.bucket` | the bucket (it must exist) |
//! | `store.NAME.s3.prefix` | the key prefix of the store in the bucket (default: none) |
//! | `store.NAME.s3.region` | the region signed for (default `us-east-1`; Garage's default is `garage`) |
//! | `store.NAME.s3.credentials` | a file of `access_key = …` and `secret_key = …` lines |
//! | `store.NAME.s3.lease_seconds` | the writer lease period (default 60) |
//! | `store.NAME.s3.retry_seconds` | how long a failing engine request is retried (default 60) |
//! | `key.NAME.public` | an ed25519 public key (64 hex digits, as `asl-key show` prints it) |
//! | `grant.KEY.STORE` | the rights of key KEY on store STORE: `read`, `write`, `admin`, comma-separated |
//!
//! Parsing is strict: an unknown name, a repeated name, a bad value, a grant naming an
//! unknown key or store, or `plain_http` on a non-loopback address is an error naming
//! `file:line`, and every problem of the file is reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A right a key can hold on a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Right {
    /// List snapshots, read trees and artifacts, ask what is missing.
    Read,
    /// Upload artifacts and commit snapshots (implies what an intake needs of `read`).
    Write,
    /// Verify the store on the server.
    Admin,
}

impl Right {
    pub fn name(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Admin => "admin",
        }
    }
}

/// Where a served store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A directory on this machine.
    Dir(PathBuf),
    /// A prefix of an S3 bucket.
    S3(S3Conf),
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Dir(p) => write!(f, "{}", p.display()),
            StoreLocation::S3(s) => {
                write!(f, "s3://{}", s.bucket)?;
                if !s.prefix.is_empty() {
                    write!(f, "/{}", s.prefix)?;
                }
                write!(f, " at {}", s.endpoint)
            }
        }
    }
}

/// A store in an S3 bucket, as server.conf names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Conf {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    /// The file holding `access_key` and `secret_key` (read when the server starts).
    pub credentials: PathBuf,
    pub lease_seconds: u64,
    /// How long transport failures and 5xx answers of the engine are retried.
    pub retry_seconds: u64,
}

impl S3Conf {
    /// Reads the credentials file: `access_key = …` and `secret_key = …`, strictly.
    pub fn load_credentials(&self) -> Result<crate::s3::Credentials, ConfError> {
        let file = &self.credentials;
        let text = std::fs::read_to_string(file).map_err(|e| ConfError {
            problems: vec![format!("{}: cannot read it: {e}", file.display())],
        })?;
        let mut problems = Vec::new();
        let (mut access, mut secret) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("access_key", v)) if !v.is_empty() => access = Some(v.to_string()),
                Some(("secret_key", v)) if !v.is_empty() => secret = Some(v.to_string()),
                _ => problems.push(format!(
                    "{}:{}: expected `access_key = …` or `secret_key = …`",
                    file.display(),
                    i + 1
                )),
            }
        }
        match (access, secret) {
            (Some(access_key), Some(secret_key)) if problems.is_empty() => {
                Ok(crate::s3::Credentials {
                    access_key,
                    secret_key,
                    region: self.region.clone(),
                })
            }
            _ => {
                problems.push(format!(
                    "{}: needs both access_key and secret_key",
                    file.display()
                ));
                Err(ConfError { problems })
            }
        }
    }

    /// The storage location this names, with its credentials read.
    pub fn location(&self) -> Result<crate::s3::S3Location, ConfError> {
        let ttl = std::time::Duration::from_secs(self.lease_seconds);
        Ok(crate::s3::S3Location {
            endpoint: crate::s3::Endpoint {
                url: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                creds: self.load_credentials()?,
            },
            prefix: self.prefix.clone(),
            retry: std::time::Duration::from_secs(self.retry_seconds),
            lease: crate::s3::LeaseParams {
                ttl,
                settle: crate::s3::LeaseParams::default().settle.min(ttl / 4),
            },
        })
    }
}

/// The `store.NAME.s3.*` lines seen so far, with the line of the first.
#[derive(Default)]
struct S3Lines {
    first_line: usize,
    endpoint: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    credentials: Option<PathBuf>,
    lease_seconds: Option<u64>,
    retry_seconds: Option<u64>,
}

/// Whether `url` is `http(s)://HOST[:PORT]` with nothing after, and plain HTTP only to a
/// loopback host (the signature protects the requests, but not the store's bytes from
/// being read on the way).
fn endpoint_problem(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Some(format!("'{url}' is not http(s)://HOST[:PORT]"));
    }
    match scheme {
        "https" => None,
        "http" => {
            let host = rest
                .rsplit_once(':')
                .map_or(rest, |(h, _)| h)
                .trim_matches(['[', ']']);
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            (!loopback).then(|| format!("'{url}': plain http is allowed only to a loopback host"))
        }
        _ => Some(format!("'{url}' is not http(s)://HOST[:PORT]")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConf {
    pub listen: SocketAddr,
    /// `(certificate chain, private key)` PEM files; `None` with `plain_http`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Store name → where it lives.
    pub stores: BTreeMap<String, StoreLocation>,
    /// Public key (hex) → its name in the file.
    pub keys: BTreeMap<String, String>,
    /// `(public key hex, store)` → rights.
    pub grants: BTreeMap<(String, String), BTreeSet<Right>>,
}

impl ServerConf {
    /// The rights of `key` on `store`.
    pub fn rights(&self, key: &str, store: &str) -> BTreeSet<Right> {
        self.grants
            .get(&(key.to_string(), store.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Every problem of a configuration file, each as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfError {
    pub problems: Vec<String>,
}

/// A store or key name: what may follow `store.` or `key.`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ServerConf {
    pub fn load(path: &Path) -> Result<ServerConf, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfError {
            problems: vec![format!("{}: cannot read it: {e}", path.display())],
        })?;
        ServerConf::parse(&text, path)
    }

    /// Parses the text of a server.conf; `file` names it in messages.
    pub fn parse(text: &str, file: &Path) -> Result<ServerConf, ConfError> {
        let mut problems = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut listen: Option<SocketAddr> = None;
        let (mut cert, mut key, mut plain) = (None, None, false);
        let mut stores = BTreeMap::new();
        let mut s3: BTreeMap<String, S3Lines> = BTreeMap::new();
        let mut keys_by_name: BTreeMap<String, String> = BTreeMap::new();
        let mut raw_grants: Vec<(usize, String, String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let mut bad = |m: String| problems.push(format!("{}:{n}: {m}", file.display()));
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                bad(format!("'{line}' is not `name = value`"));
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if let Some(first) = seen.get(name) {
                bad(format!("'{name}' is set again (first on line {first})"));
                continue;
            }
            seen.insert(name.to_string(), n);
            let parts: Vec<&str> = name.split('.').collect();
            match parts.as_slice() {
                ["listen"] => match value.parse::<SocketAddr>() {
                    Ok(a) => listen = Some(a),
                    Err(_) => bad(format!("listen: '{value}' is not ADDRESS:PORT")),
                },
                ["tls", "cert"] => cert = Some(PathBuf::from(value)),
                ["tls", "key"] => key = Some(PathBuf::from(value)),
                ["plain_http"] => match value {
                    "yes" | "true" => plain = true,
                    "no" | "false" => plain = false,
                    _ => bad(format!("plain_http: '{value}' is not yes or no")),
                },
                ["store", s, "path"] if valid_name(s) => {
                    if !value.starts_with('/') {
                        bad(format!("{name}: '{value}' is not an absolute path"));
                    } else {
                        stores.insert(s.to_string(), StoreLocation::Dir(PathBuf::from(value)));
                    }
                }
                ["store", s, "s3", field] if valid_name(s) => {
                    let e = s3.entry(s.to_string()).or_insert_with(|| S3Lines {
                        first_line: n,
                        ..S3Lines::default()
                    });
                    match *field {
                        "endpoint" => match endpoint_problem(value) {
                            None if value.contains("://") => {
                                e.endpoint = Some(value.trim_end_matches('/').to_string());
                            }
                            None => bad(format!("{name}: '{value}' is not http(s)://HOST[:PORT]")),
                            Some(p) => bad(format!("{name}: {p}")),
                        },
                        "bucket" => {
                            let ok = (3..=63).contains(&value.len())
                                && value.bytes().all(|b| {
                                    b.is_ascii_lowercase()
                                        || b.is_ascii_digit()
                                        || b == b'-'
                                        || b == b'.'
                                });
                            if ok {
                                e.bucket = Some(value.to_string());
                            } else {
                                bad(format!("{name}: '{value}' is not a bucket name"));
                            }
                        }
                        "prefix" => {
                            let p = value.trim_matches('/');
                            let ok = p.split('/').all(|c| {
                                !c.is_empty()
                                    && c != "."
                                    && c != ".."
                                    && c.bytes().all(|b| {
                                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
                                    })
                            });
                            if ok || p.is_empty() {
                                e.prefix = Some(p.to_string());
                            } else {
                                bad(format!(
                                    "{name}: '{value}' is not a key prefix (names of letters, \
                                     digits, '-', '_', '.' between '/')"
                                ));
                            }
                        }
                        "region" if !value.is_empty() => e.region = Some(value.to_string()),
                        "credentials" if value.starts_with('/') => {
                            e.credentials = Some(PathBuf::from(value));
                        }
                        "credentials" => bad(format!("{name}: '{value}' is not an absolute path")),
                        "lease_seconds" => match value.parse::<u64>() {
                            Ok(v) if (2..=3600).contains(&v) => e.lease_seconds = Some(v),
                            _ => bad(format!(
                                "{name}: '{value}' is not a number of seconds from 2 to 3600"
                            )),
                        },
                        "retry_seconds" => match value.parse::<u64>() {
                            Ok(v) if (1..=3600).contains(&v) => e.retry_seconds = Some(v),
                            _ => bad(format!(
                                "{name}: '{value}' is not a number of seconds from 1 to 3600"
                            )),
                        },
                        _ => bad(format!(
                            "unknown setting '{name}' (known: store.NAME.s3.endpoint, .bucket, \
                             .prefix, .region, .credentials, .lease_seconds, .retry_seconds)"
                        )),
                    }
                }
                ["key", k, "public"] if valid_name(k) => {
                    let ok = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
                    if ok {
                        keys_by_name.insert(k.to_string(), value.to_ascii_lowercase());
                    } else {
                        bad(format!(
                            "{name}: not an ed25519 public key (64 hex digits, as `asl-key show` prints)"
                        ));
                    }
                }
                ["grant", k, s] if valid_name(k) && valid_name(s) => {
                    raw_grants.push((n, k.to_string(), s.to_string(), value.to_string()));
                }
                _ => bad(format!(
                    "unknown setting '{name}' (known: listen, tls.cert, tls.key, plain_http, \
                     store.NAME.path, store.NAME.s3.*, key.NAME.public, grant.KEY.STORE; \
                     names are letters, \
                     digits, '-' and '_')"
                )),
            }
        }
        for (name, lines) in s3 {
            let n = lines.first_line;
            if stores.contains_key(&name) {
                problems.push(format!(
                    "{}:{n}: store '{name}' has both store.{name}.path and store.{name}.s3.*; choose one",
                    file.display()
                ));
                continue;
            }
            match (lines.endpoint, lines.bucket, lines.credentials) {
                (Some(endpoint), Some(bucket), Some(credentials)) => {
                    stores.insert(
                        name,
                        StoreLocation::S3(S3Conf {
                            endpoint,
                            bucket,
                            prefix: lines.prefix.unwrap_or_default(),
                            region: lines.region.unwrap_or_else(|| "us-east-1".into()),
                            credentials,
                            lease_seconds: lines.lease_seconds.unwrap_or(60),
                            retry_seconds: lines.retry_seconds.unwrap_or(60),
                        }),
                    );
                }
                (endpoint, bucket, credentials) => {
                    let missing: Vec<&str> = [
                        ("endpoint", endpoint.is_none()),
                        ("bucket", bucket.is_none()),
                        ("credentials", credentials.is_none()),
                    ]
                    .into_iter()
                    .filter_map(|(f, m)| m.then_some(f))
                    .collect();
                    problems.push(format!(
                        "{}:{n}: store '{name}' in S3 lacks store.{name}.s3.{}",
                        file.display(),
                        missing.join(", .s3.")
                    ));
                }
            }
        }
        let mut grants = BTreeMap::new();
        for (n, k, s, value) in raw_grants {
            let mut bad = |m: String| problems.push(format!("{}:{n}: {m}", file.display()));
            let Some(public) = keys_by_name.get(&k) else {
                bad(format!("grant.{k}.{s}: no key '{k}' (set key.{k}.public)"));
                continue;
            };
            if !stores.contains_key(&s) {
                bad(format!(
                    "grant.{k}.{s}: no store '{s}' (set store.{s}.path)"
                ));
                continue;
            }
            let mut rights = BTreeSet::new();
            for r in value.split(',').map(str::trim) {
                match r {
                    "read" => rights.insert(Right::Read),
                    "write" => rights.insert(Right::Write),
                    "admin" => rights.insert(Right::Admin),
                    _ => {
                        bad(format!(
                            "grant.{k}.{s}: '{r}' is not a right (read, write, admin)"
                        ));
                        continue;
                    }
                };
            }
            grants.insert((public.clone(), s), rights);
        }
        let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
        let tls = match (cert, key, plain) {
            (Some(c), Some(k), false) => Some((c, k)),
            (None, None, true) => None,
            (_, _, true) => {
                problems.push(format!(
                    "{}: plain_http = yes and tls.cert/tls.key are both set; choose one",
                    file.display()
                ));
                None
            }
            _ => {
                problems.push(format!(
                    "{}: set tls.cert and tls.key (or plain_http = yes on a loopback address)",
                    file.display()
                ));
                None
            }
        };
        if plain && !listen.ip().is_loopback() {
            let line = seen.get("listen").copied().unwrap_or(0);
            problems.push(format!(
                "{}:{line}: plain HTTP is served only on a loopback address, not {listen}",
                file.display()
            ));
        }
        if stores.is_empty() {
            problems.push(format!(
                "{}: no store is configured (store.NAME.path = DIR)",
                file.display()
            ));
        }
        if !problems.is_empty() {
            return Err(ConfError { problems });
        }
        let keys = keys_by_name.into_iter().map(|(n, k)| (k, n)).collect();
        Ok(ServerConf {
            listen,
            tls,
            stores,
            keys,
            grants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    #[test]
    fn a_good_file_parses_and_grants_rights_per_store() {
        let text = format!(
            "listen = 127.0.0.1:9000\nplain_http = yes\nstore.main.path = /srv/asl/main\n\
             key.ops.public = {KEY}\ngrant.ops.main = read, write\n"
        );
        let c = ServerConf::parse(&text, Path::new("server.conf")).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(c.tls.is_none());
        assert_eq!(
            c.rights(KEY, "main"),
            BTreeSet::from([Right::Read, Right::Write])
        );
        assert!(c.rights(KEY, "other").is_empty());
    }

    #[test]
    fn every_problem_is_named_by_file_and_line() {
        let text = format!(
            "listen = 0.0.0.0:9000\nplain_http = yes\nstore.main.path = relative\nbogus = 1\n\
             key.ops.public = {KEY}\ngrant.ops.main = read, fly\ngrant.nobody.main = read\nlisten = 1.2.3.4:1\n"
        );
        let e = ServerConf::parse(&text, Path::new("s.conf")).unwrap_err();
        let all = e.problems.join("\n");
        for want in [
            "s.conf:3: store.main.path: 'relative' is not an absolute path",
            "s.conf:4: unknown setting 'bogus'",
            "s.conf:6: grant.ops.main: no store 'main'",
            "s.conf:7: grant.nobody.main: no key 'nobody'",
            "s.conf:8: 'listen' is set again (first on line 1)",
            "s.conf:1: plain HTTP is served only on a loopback address",
        ] {
            assert!(all.contains(want), "{want} missing from:\n{all}");
        }
    }

    #[test]
    fn an_s3_store_is_named_by_endpoint_bucket_and_credentials() {
        let text = format!(
            "plain_http = yes\nstore.g.s3.endpoint = http://127.0.0.1:3900\nstore.g.s3.bucket = asl\n\
             store.g.s3.prefix = /sites/a/\nstore.g.s3.region = garage\n\
             store.g.s3.credentials = /etc/asl/g.cred\nkey.ops.public = {KEY}\ngrant.ops.g = write\n"
        );
        let c = ServerConf::parse(&text, Path::new("server.conf")).unwrap();
        match &c.stores["g"] {
            StoreLocation::S3(s) => {
                assert_eq!(s.prefix, "sites/a");
                assert_eq!(s.region, "garage");
                assert_eq!(s.lease_seconds, 60);
                assert_eq!(s.retry_seconds, 60);
            }
            other => panic!("{other:?}"),
        }
        assert!(!c.rights(KEY, "g").is_empty());
    }

    #[test]
    fn an_incomplete_or_unsafe_s3_store_is_refused_by_line() {
        let text = "plain_http = yes\nstore.a.s3.endpoint = http://10.0.0.1:3900\n\
                    store.a.s3.bucket = asl\nstore.b.s3.bucket = Bad_Bucket\n\
                    store.c.path = /srv/c\nstore.c.s3.bucket = asl\nstore.a.s3.color = red\n";
        let e = ServerConf::parse(text, Path::new("s.conf")).unwrap_err();
        let all = e.problems.join("\n");
        for want in [
            "s.conf:2: store.a.s3.endpoint: 'http://10.0.0.1:3900': plain http is allowed only to a loopback host",
            "s.conf:4: store.b.s3.bucket: 'Bad_Bucket' is not a bucket name",
            "s.conf:6: store 'c' has both store.c.path and store.c.s3.*",
            "s.conf:7: unknown setting 'store.a.s3.color'",
            "s.conf:2: store 'a' in S3 lacks store.a.s3.endpoint, .s3.credentials",
        ] {
            assert!(all.contains(want), "{want} missing from:\n{all}");
        }
    }
}
