//! `/etc/asl/asl.conf`, `federation.conf` and `logging.conf`: strict `key = value` parsers.
//!
//! Syntax shared by the three files: one `key = value` per line; blank lines and lines starting
//! with `#` are ignored; a `#` preceded by whitespace starts a trailing comment (so
//! `mode = auto  # auto | local | remote` works, while `#` inside a value such as a URL
//! fragment stays). Keys are case-sensitive; surrounding whitespace is trimmed; values are not
//! quoted. A key given twice, an unknown key, or a bad value is an error naming `file:line`.
//! Every problem of a file is reported, not only the first. A missing file means "all
//! defaults" — the tools must work on a host that ships no configuration.
//!
//! The files hold declarative configuration only: no state, no secrets. There is no key
//! that could carry a password or private key; such a key is "unknown" and rejected.
//! The full reference is `docs/config.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::Root;

/// In-root path of the main configuration file.
pub const ASL_CONF: &str = "/etc/asl/asl.conf";
/// In-root path of the federation configuration (own domain and peers).
pub const FEDERATION_CONF: &str = "/etc/asl/federation.conf";
/// In-root path of the logging configuration.
pub const LOGGING_CONF: &str = "/etc/asl/logging.conf";

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file as the user knows it (the real path, under the root).
    pub file: PathBuf,
    /// 1-based line number, when the problem belongs to a line.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Configuration that cannot be used. Holds every problem found, each naming `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn one(file: &Path, line: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![Problem {
                file: file.to_path_buf(),
                line,
                message: message.into(),
            }],
        }
    }
}

/// `mode` in asl.conf: what the operator wants; preflight turns it into a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Local store if one is mounted and writable, else the remote endpoint if reachable,
    /// else wait for the operator.
    Auto,
    /// Only the local store; otherwise wait for the operator.
    Local,
    /// Only the remote endpoint; otherwise wait for the operator.
    Remote,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Local => "local",
            Mode::Remote => "remote",
        })
    }
}

/// A remote endpoint URL: `http://` or `https://`, a host, an optional port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses and checks an endpoint URL; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!("endpoint '{s}' has no scheme; write it as https://HOST[:PORT][/PATH]")
        })?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => {
                return Err(format!(
                    "endpoint '{s}' has scheme '{scheme}'; only http and https are supported"
                ));
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(format!(
                "endpoint '{s}' contains credentials; configuration files must not hold secrets"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("endpoint '{s}' has an unterminated [IPv6] host"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else if authority.matches(':').count() > 1 {
            return Err(format!(
                "endpoint '{s}' has an IPv6 host without brackets; write it as http://[ADDR]:PORT"
            ));
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("endpoint '{s}' has no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("endpoint '{s}' has a bad port '{p}' (1-65535)"))?,
        };
        Ok(Endpoint {
            url: s.to_string(),
            scheme: scheme.to_string(),
            host,
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.url)
    }
}

/// `/etc/asl/asl.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AslConf {
    /// `mode = auto|local|remote` (default `auto`).
    pub mode: Mode,
    /// `local.mount`: absolute in-root path where the local store is mounted
    /// (default `/mnt/asl/local`). The store lives directly in it.
    pub local_mount: PathBuf,
    /// `local.pool`: the ZFS pool the local store must come from. When set, local intake needs
    /// a dataset of this pool mounted at `local.mount`. Preflight and the service never import
    /// it; they tell the operator to.
    pub local_pool: Option<String>,
    /// `local.create = yes|no` (default `no`): whether intake may create a store on an empty
    /// `local.mount`.
    pub local_create: bool,
    /// `remote.endpoint`: the store an asl-server serves (`https://HOST[:PORT]/STORE`).
    pub remote_endpoint: Option<Endpoint>,
    /// `remote.key` (default `/etc/asl/keys/client.key`): the client key slot, the asl-key
    /// file remote requests are signed with. In-root path.
    pub remote_key: PathBuf,
    /// `remote.ca`: a PEM file of the CA certificates to trust for the endpoint (in-root
    /// path); unset, the Mozilla roots.
    pub remote_ca: Option<PathBuf>,
    /// `remote.timeout` (default `2s`): how long preflight waits for a TCP connect.
    #[serde(serialize_with = "ser_ms")]
    pub remote_timeout: Duration,
    /// `domain.id`: the domain this host writes into.
    pub domain_id: Option<String>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Default for AslConf {
    fn default() -> AslConf {
        AslConf {
            mode: Mode::Auto,
            local_mount: PathBuf::from("/mnt/asl/local"),
            local_pool: None,
            local_create: false,
            remote_endpoint: None,
            remote_key: PathBuf::from("/etc/asl/keys/client.key"),
            remote_ca: None,
            remote_timeout: Duration::from_secs(2),
            domain_id: None,
        }
    }
}

/// One federation peer: `peer.NAME.endpoint`, `peer.NAME.domain`, `peer.NAME.key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub endpoint: Endpoint,
    pub domain: String,
    /// The peer's public key, `ed25519:<64 hex digits>` (public only: no secrets here).
    pub key: Option<String>,
}

/// `/etc/asl/federation.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FederationConf {
    /// `domain.id`: this host's domain as announced to peers; must equal asl.conf's when both
    /// are set.
    pub domain_id: Option<String>,
    pub peers: BTreeMap<String, Peer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Stderr,
    Journal,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

/// `/etc/asl/logging.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggingConf {
    /// `level = error|warn|info|debug|trace` (default `info`).
    pub level: Level,
    /// `target = stderr|journal|file` (default `stderr`; under systemd stderr goes to the
    /// journal anyway).
    pub target: Target,
    /// `file`: absolute path of the log file; required with `target = file`.
    pub file: Option<PathBuf>,
    /// `format = text|json` (default `text`).
    pub format: Format,
}

impl Default for LoggingConf {
    fn default() -> LoggingConf {
        LoggingConf {
            level: Level::Info,
            target: Target::Stderr,
            file: None,
            format: Format::Text,
        }
    }
}

/// Splits a file into `(line number, key, value)` entries, collecting syntax problems and
/// rejecting duplicate keys.
fn entries(text: &str, file: &Path, problems: &mut Vec<Problem>) -> Vec<(usize, String, String)> {
    let mut out: Vec<(usize, String, String)> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let mut push = |m: String| {
            problems.push(Problem {
                file: file.to_path_buf(),
                line: Some(n),
                message: m,
            })
        };
        let Some((k, v)) = line.split_once('=') else {
            push(format!("expected 'key = value', found '{line}'"));
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            push(format!("bad key '{k}'"));
            continue;
        }
        if v.is_empty() {
            push(format!("{k} has an empty value"));
            continue;
        }
        if let Some(first) = seen.insert(k.to_string(), n) {
            push(format!("{k} is set twice (first on line {first})"));
            continue;
        }
        out.push((n, k.to_string(), v.to_string()));
    }
    out
}

fn strip_comment(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('#') {
        return "";
    }
    let b = line.as_bytes();
    for i in 1..b.len() {
        if b[i] == b'#' && b[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("'{v}' is not a boolean (yes|no)")),
    }
}

/// An absolute, normalised path without `.`/`..`.
fn parse_abs_path(v: &str) -> Result<PathBuf, String> {
    let p = Path::new(v);
    if !p.is_absolute() {
        return Err(format!(
            "'{v}' is a relative path; write an absolute path such as /mnt/asl/local"
        ));
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "'{v}' contains '.' or '..'; write the path without them"
        ));
    }
    Ok(p.components().collect())
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("'{v}' is not a duration (e.g. 500ms, 2s, 1m)");
    let (num, unit) = v
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| v.split_at(i))
        .ok_or_else(bad)?;
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(bad()),
    };
    if d.is_zero() || d > Duration::from_secs(600) {
        return Err(format!("'{v}' is out of range (1ms to 10m)"));
    }
    Ok(d)
}

/// A domain identifier: 1–128 characters of `A-Z a-z 0-9 . _ : -`, starting alphanumeric.
pub fn valid_domain_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
}

fn parse_domain_id(v: &str) -> Result<String, String> {
    if valid_domain_id(v) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "'{v}' is not a domain id (1-128 characters of letters, digits, '.', '_', ':', '-')"
        ))
    }
}

fn parse_pool(v: &str) -> Result<String, String> {
    let ok = v.starts_with(|c: char| c.is_ascii_alphabetic())
        && v.len() <= 255
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "'{v}' is not a ZFS pool name (a letter, then letters, digits, '_', '-', '.', ':')"
        ))
    }
}

/// Paths the local store must never be mounted on: the seed forbids writing to the system.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/boot", "/proc", "/sys", "/dev",
];

fn parse_store_mount(v: &str) -> Result<PathBuf, String> {
    let p = parse_abs_path(v)?;
    for d in SYSTEM_DIRS {
        let d = Path::new(d);
        if p == d || (d != Path::new("/") && p.starts_with(d)) {
            return Err(format!(
                "'{v}' is a system directory; the store must live on its own mount such as /mnt/asl/local"
            ));
        }
    }
    Ok(p)
}

/// Runs `f` on a value and records its error at `file:line`.
fn set<T>(
    problems: &mut Vec<Problem>,
    file: &Path,
    line: usize,
    key: &str,
    r: Result<T, String>,
    slot: &mut T,
) {
    match r {
        Ok(v) => *slot = v,
        Err(m) => problems.push(Problem {
            file: file.to_path_buf(),
            line: Some(line),
            message: format!("{key}: {m}"),
        }),
    }
}

fn unknown(problems: &mut Vec<Problem>, file: &Path, line: usize, key: &str, known: &str) {
    problems.push(Problem {
        file: file.to_path_buf(),
        line: Some(line),
        message: format!("unknown key '{key}' (known keys: {known})"),
    });
}

fn finish<T>(value: T, mut problems: Vec<Problem>) -> Result<T, ConfigError> {
    problems.sort_by_key(|p| p.line);
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(ConfigError { problems })
    }
}

/// An absolute path value.
fn absolute_path(v: &str) -> Result<PathBuf, String> {
    if v.starts_with('/') {
        Ok(PathBuf::from(v))
    } else {
        Err(format!("'{v}' is not an absolute path"))
    }
}

impl AslConf {
    /// Parses asl.conf text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<AslConf, ConfigError> {
        let mut p = Vec::new();
        let mut c = AslConf::default();
        for (n, k, v) in entries(text, file, &mut p) {
            match k.as_str() {
                "mode" => {
                    let r = match v.as_str() {
                        "auto" => Ok(Mode::Auto),
                        "local" => Ok(Mode::Local),
                        "remote" => Ok(Mode::Remote),
                        _ => Err(format!("'{v}' is not a mode (auto|local|remote)")),
                    };
                    set(&mut p, file, n, &k, r, &mut c.mode);
                }
                "local.mount" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    parse_store_mount(&v),
                    &mut c.local_mount,
                ),
                "local.pool" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    parse_pool(&v).map(Some),
                    &mut c.local_pool,
                ),
                "local.create" => set(&mut p, file, n, &k, parse_bool(&v), &mut c.local_create),
                "remote.endpoint" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    Endpoint::parse(&v).map(Some),
                    &mut c.remote_endpoint,
                ),
                "remote.key" => set(&mut p, file, n, &k, absolute_path(&v), &mut c.remote_key),
                "remote.ca" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    absolute_path(&v).map(Some),
                    &mut c.remote_ca,
                ),
                "remote.timeout" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    parse_duration(&v),
                    &mut c.remote_timeout,
                ),
                "domain.id" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    parse_domain_id(&v).map(Some),
                    &mut c.domain_id,
                ),
                _ => unknown(
                    &mut p,
                    file,
                    n,
                    &k,
                    "mode, local.mount, local.pool, local.create, remote.endpoint, remote.key, remote.ca, remote.timeout, domain.id",
                ),
            }
        }
        finish(c, p)
    }

    /// Reads `/etc/asl/asl.conf` under `root`; a missing file gives the defaults.
    pub fn load(root: &Root) -> Result<AslConf, ConfigError> {
        load_with(root, ASL_CONF, AslConf::parse).map(|(c, _)| c)
    }
}

impl FederationConf {
    pub fn parse(text: &str, file: &Path) -> Result<FederationConf, ConfigError> {
        let mut p = Vec::new();
        let mut c = FederationConf::default();
        // Peers are assembled from several keys; remember where each was first mentioned.
        type RawPeer = (
            usize,
            Option<Endpoint>,
            Option<String>,
            Option<String>,
            bool,
        );
        let mut raw: BTreeMap<String, RawPeer> = BTreeMap::new();
        for (n, k, v) in entries(text, file, &mut p) {
            if k == "domain.id" {
                set(
                    &mut p,
                    file,
                    n,
                    &k,
                    parse_domain_id(&v).map(Some),
                    &mut c.domain_id,
                );
                continue;
            }
            let peer = k.strip_prefix("peer.").and_then(|r| r.rsplit_once('.'));
            let Some((name, field)) = peer else {
                unknown(
                    &mut p,
                    file,
                    n,
                    &k,
                    "domain.id, peer.NAME.endpoint, peer.NAME.domain, peer.NAME.key",
                );
                continue;
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            {
                p.push(Problem {
                    file: file.to_path_buf(),
                    line: Some(n),
                    message: format!(
                        "peer name '{name}' must be lowercase letters, digits and '-'"
                    ),
                });
                continue;
            }
            let entry = raw
                .entry(name.to_string())
                .or_insert((n, None, None, None, false));
            let before = p.len();
            match field {
                "endpoint" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    Endpoint::parse(&v).map(Some),
                    &mut entry.1,
                ),
                "domain" => set(
                    &mut p,
                    file,
                    n,
                    &k,
                    parse_domain_id(&v).map(Some),
                    &mut entry.2,
                ),
                "key" => {
                    let r = match v.strip_prefix("ed25519:") {
                        Some(h) if h.len() == 64 && h.chars().all(|ch| ch.is_ascii_hexdigit()) => {
                            Ok(Some(v.clone()))
                        }
                        _ => Err(format!(
                            "'{v}' is not a public key; write ed25519:<64 hex digits>"
                        )),
                    };
                    set(&mut p, file, n, &k, r, &mut entry.3)
                }
                _ => unknown(
                    &mut p,
                    file,
                    n,
                    &k,
                    "peer.NAME.endpoint, peer.NAME.domain, peer.NAME.key",
                ),
            }
            // A peer with a bad key gets no extra "missing" message: one message per mistake.
            entry.4 |= p.len() > before;
        }
        for (name, (n, endpoint, domain, key, bad)) in raw {
            match (endpoint, domain) {
                (Some(endpoint), Some(domain)) => {
                    if c.domain_id.as_deref() == Some(domain.as_str()) {
                        p.push(Problem {
                            file: file.to_path_buf(),
                            line: Some(n),
                            message: format!("peer '{name}' has this host's own domain '{domain}'"),
                        });
                    }
                    c.peers.insert(
                        name,
                        Peer {
                            endpoint,
                            domain,
                            key,
                        },
                    );
                }
                (e, _) if !bad => {
                    let missing = if e.is_none() { "endpoint" } else { "domain" };
                    p.push(Problem {
                        file: file.to_path_buf(),
                        line: Some(n),
                        message: format!("peer '{name}' has no peer.{name}.{missing}"),
                    });
                }
                _ => {}
            }
        }
        finish(c, p)
    }

    pub fn load(root: &Root) -> Result<FederationConf, ConfigError> {
        load_with(root, FEDERATION_CONF, FederationConf::parse).map(|(c, _)| c)
    }
}

impl LoggingConf {
    pub fn parse(text: &str, file: &Path) -> Result<LoggingConf, ConfigError> {
        let mut p = Vec::new();
        let mut c = LoggingConf::default();
        let mut target_line = None;
        for (n, k, v) in entries(text, file, &mut p) {
            match k.as_str() {
                "level" => {
                    let r = match v.as_str() {
                        "error" => Ok(Level::Error),
                        "warn" => Ok(Level::Warn),
                        "info" => Ok(Level::Info),
                        "debug" => Ok(Level::Debug),
                        "trace" => Ok(Level::Trace),
                        _ => Err(format!(
                            "'{v}' is not a level (error|warn|info|debug|trace)"
                        )),
                    };
                    set(&mut p, file, n, &k, r, &mut c.level)
                }
                "target" => {
                    target_line = Some(n);
                    let r = match v.as_str() {
                        "stderr" => Ok(Target::Stderr),
                        "journal" => Ok(Target::Journal),
                        "file" => Ok(Target::File),
                        _ => Err(format!("'{v}' is not a target (stderr|journal|file)")),
                    };
                    set(&mut p, file, n, &k, r, &mut c.target)
                }
                "file" => {
                    let r = parse_abs_path(&v).and_then(|f| {
                        if f.starts_with("/var/log") || f.starts_with("/var/lib/asl") || f.starts_with("/run") {
                            Ok(Some(f))
                        } else {
                            Err(format!(
                                "'{v}' is outside /var/log, /var/lib/asl and /run; logs are state and must not go to /etc or /usr"
                            ))
                        }
                    });
                    set(&mut p, file, n, &k, r, &mut c.file)
                }
                "format" => {
                    let r = match v.as_str() {
                        "text" => Ok(Format::Text),
                        "json" => Ok(Format::Json),
                        _ => Err(format!("'{v}' is not a format (text|json)")),
                    };
                    set(&mut p, file, n, &k, r, &mut c.format)
                }
                _ => unknown(&mut p, file, n, &k, "level, target, file, format"),
            }
        }
        if c.target == Target::File && c.file.is_none() && p.is_empty() {
            p.push(Problem {
                file: file.to_path_buf(),
                line: target_line,
                message: "target = file needs 'file = /var/log/asl/asl.log' (an absolute path)"
                    .into(),
            });
        }
        finish(c, p)
    }

    pub fn load(root: &Root) -> Result<LoggingConf, ConfigError> {
        load_with(root, LOGGING_CONF, LoggingConf::parse).map(|(c, _)| c)
    }
}

/// Reads an in-root config file; missing → defaults (and `false`), unreadable → error.
fn load_with<T: Default>(
    root: &Root,
    inner: &str,
    parse: fn(&str, &Path) -> Result<T, ConfigError>,
) -> Result<(T, bool), ConfigError> {
    let path = root.join(inner);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| ConfigError::one(&path, None, "is not valid UTF-8"))?;
            parse(&text, &path).map(|c| (c, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((T::default(), false)),
        Err(e) => Err(ConfigError::one(&path, None, format!("cannot read: {e}"))),
    }
}

/// One configuration file as seen by [`check`].
#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub path: PathBuf,
    /// False when the file does not exist and defaults apply.
    pub present: bool,
}

/// The result of a successful [`check`]: every file and the effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub files: Vec<FileStatus>,
    pub asl: AslConf,
    pub federation: FederationConf,
    pub logging: LoggingConf,
}

/// All configuration of a root, parsed and cross-checked.
pub fn load_all(root: &Root) -> Result<Report, ConfigError> {
    let mut problems = Vec::new();
    let a = load_with(root, ASL_CONF, AslConf::parse).map_err(|e| problems.extend(e.problems));
    let f = load_with(root, FEDERATION_CONF, FederationConf::parse)
        .map_err(|e| problems.extend(e.problems));
    let l =
        load_with(root, LOGGING_CONF, LoggingConf::parse).map_err(|e| problems.extend(e.problems));
    let (Ok((asl, ap)), Ok((federation, fp)), Ok((logging, lp))) = (a, f, l) else {
        return Err(ConfigError { problems });
    };
    if let (Some(a), Some(f)) = (&asl.domain_id, &federation.domain_id)
        && a != f
    {
        let fed_path = root.join(FEDERATION_CONF);
        let text = std::fs::read_to_string(&fed_path).unwrap_or_default();
        let line = text
            .lines()
            .position(|l| strip_comment(l).trim_start().starts_with("domain.id"))
            .map(|i| i + 1);
        problems.push(Problem {
            file: fed_path,
            line,
            message: format!(
                "domain.id '{f}' differs from '{a}' in {}; a host belongs to one domain",
                root.join(ASL_CONF).display()
            ),
        });
        return Err(ConfigError { problems });
    }
    Ok(Report {
        files: vec![
            FileStatus {
                path: root.join(ASL_CONF),
                present: ap,
            },
            FileStatus {
                path: root.join(FEDERATION_CONF),
                present: fp,
            },
            FileStatus {
                path: root.join(LOGGING_CONF),
                present: lp,
            },
        ],
        asl,
        federation,
        logging,
    })
}

/// `asl-config check` / `asl-admin config check`: validates asl.conf, federation.conf and
/// logging.conf under `root`. Errors list every problem as `file:line: message`.
pub fn check(root: &Path) -> Result<Report, ConfigError> {
    load_all(&Root::new(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asl(text: &str) -> Result<AslConf, ConfigError> {
        AslConf::parse(text, Path::new("/etc/asl/asl.conf"))
    }

    fn only_problem(r: Result<impl fmt::Debug, ConfigError>) -> String {
        let e = r.expect_err("must be rejected");
        assert_eq!(e.problems.len(), 1, "{e}");
        e.to_string()
    }

    #[test]
    fn seed_example_with_trailing_comment_parses() {
        let c = asl(
            "# rescue defaults\nmode = auto # auto | local | remote\nlocal.mount = /mnt/asl/local\n\
             remote.endpoint = https://asl-backend\ndomain.id = rescue-domain\n",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(c.local_mount, Path::new("/mnt/asl/local"));
        let e = c.remote_endpoint.unwrap();
        assert_eq!((e.host.as_str(), e.port), ("asl-backend", 443));
        assert_eq!(c.domain_id.as_deref(), Some("rescue-domain"));
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_and_line() {
        let m = only_problem(asl("mode = local\n\nlocal.mnt = /x\n"));
        assert!(
            m.starts_with("/etc/asl/asl.conf:3: unknown key 'local.mnt'"),
            "{m}"
        );
    }

    #[test]
    fn bad_mode_is_an_error_naming_file_and_line() {
        let m = only_problem(asl("mode = sometimes\n"));
        assert!(
            m.starts_with("/etc/asl/asl.conf:1: mode: 'sometimes' is not a mode"),
            "{m}"
        );
    }

    #[test]
    fn relative_mount_path_is_an_error_naming_file_and_line() {
        let m = only_problem(asl("# c\nlocal.mount = mnt/asl/local\n"));
        assert!(
            m.starts_with("/etc/asl/asl.conf:2: local.mount: 'mnt/asl/local' is a relative path"),
            "{m}"
        );
    }

    #[test]
    fn endpoint_without_scheme_is_an_error_naming_file_and_line() {
        let m = only_problem(asl("remote.endpoint = asl-backend:8443\n"));
        assert!(
            m.starts_with(
                "/etc/asl/asl.conf:1: remote.endpoint: endpoint 'asl-backend:8443' has no scheme"
            ),
            "{m}"
        );
    }

    #[test]
    fn every_problem_of_a_file_is_reported() {
        let e = asl(
            "mode = x\nfoo = 1\nmode = local\nlocal.mount = /usr/asl\nremote.endpoint = ftp://h\n",
        )
        .unwrap_err();
        let lines: Vec<_> = e.problems.iter().map(|p| p.line).collect();
        assert_eq!(
            lines,
            vec![Some(1), Some(2), Some(3), Some(4), Some(5)],
            "{e}"
        );
    }

    #[test]
    fn values_are_checked() {
        assert!(asl("local.create = maybe\n").is_err());
        assert!(asl("remote.timeout = 2h\n").is_err());
        assert!(asl("remote.endpoint = https://user:pw@host\n").is_err());
        assert!(asl("remote.endpoint = https://host:0\n").is_err());
        assert!(asl("remote.endpoint = http://::1:80\n").is_err());
        assert!(asl("local.pool = 9pool\n").is_err());
        assert!(asl("local.mount = /\n").is_err());
        assert!(asl("domain.id = has space\n").is_err());
        assert!(asl("just words\n").is_err());
        let c = asl("remote.timeout = 500ms\nlocal.create = yes\nremote.endpoint = http://[::1]:8080/x#frag\n").unwrap();
        assert_eq!(c.remote_timeout, Duration::from_millis(500));
        assert!(c.local_create);
        let e = c.remote_endpoint.unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 8080));
    }

    #[test]
    fn federation_peers_need_endpoint_and_domain() {
        let f = Path::new("federation.conf");
        let c = FederationConf::parse(
            "domain.id = a\npeer.b.endpoint = https://b.example\npeer.b.domain = b\n",
            f,
        )
        .unwrap();
        assert_eq!(c.peers["b"].domain, "b");
        let m = only_problem(FederationConf::parse("peer.b.endpoint = https://b\n", f));
        assert!(
            m.starts_with("federation.conf:1: peer 'b' has no peer.b.domain"),
            "{m}"
        );
        let m = only_problem(FederationConf::parse("peer.b.secret = x\n", f));
        assert!(m.contains("unknown key 'peer.b.secret'"), "{m}");
    }

    #[test]
    fn logging_file_target_needs_an_absolute_file() {
        let f = Path::new("logging.conf");
        let m = only_problem(LoggingConf::parse("level = info\ntarget = file\n", f));
        assert!(m.starts_with("logging.conf:2: target = file needs"), "{m}");
        let m = only_problem(LoggingConf::parse("file = asl.log\n", f));
        assert!(
            m.starts_with("logging.conf:1: file: 'asl.log' is a relative path"),
            "{m}"
        );
        assert!(LoggingConf::parse("target = file\nfile = /var/log/asl/asl.log\n", f).is_ok());
    }

    #[test]
    fn check_reports_missing_files_as_defaults_and_cross_checks_domains() {
        let d = tempfile::tempdir().unwrap();
        let r = check(d.path()).unwrap();
        assert!(r.files.iter().all(|f| !f.present));
        assert_eq!(r.asl, AslConf::default());
        std::fs::create_dir_all(d.path().join("etc/asl")).unwrap();
        std::fs::write(d.path().join("etc/asl/asl.conf"), "domain.id = one\n").unwrap();
        std::fs::write(
            d.path().join("etc/asl/federation.conf"),
            "# x\ndomain.id = two\n",
        )
        .unwrap();
        let m = check(d.path()).unwrap_err().to_string();
        assert!(
            m.contains("federation.conf:2: domain.id 'two' differs from 'one'"),
            "{m}"
        );
    }
}
