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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConf {
    pub listen: SocketAddr,
    /// `(certificate chain, private key)` PEM files; `None` with `plain_http`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Store name → directory.
    pub stores: BTreeMap<String, PathBuf>,
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
                        stores.insert(s.to_string(), PathBuf::from(value));
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
                     store.NAME.path, key.NAME.public, grant.KEY.STORE; names are letters, \
                     digits, '-' and '_')"
                )),
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
}
