//! `asl-preflight`: detect what this host offers, decide the intake mode, write `/run/asl/mode`.
//!
//! Detection only reads (all paths under the [`Root`]):
//! * **network** — a non-loopback link in `/sys/class/net/*` whose `operstate` is `up` (or
//!   `unknown` with `carrier` 1, as tun/wireguard links report) that has a routable address
//!   (an IPv4 route in `/proc/net/route` or a global IPv6 address in `/proc/net/if_inet6`), and
//!   a default route via an up link (`/proc/net/route` or `/proc/net/ipv6_route`).
//! * **ZFS** — module loaded (`/sys/module/zfs`), `zpool`/`zfs` on `PATH`; with module and
//!   `zpool` present: importable pools (`zpool import` with no pool argument only *lists*) and
//!   imported pools (`zpool list -H -o name`).
//! * **local store** — the last `/proc/self/mountinfo` entry whose mount point is `local.mount`:
//!   mounted or not, file-system type and source (the dataset for ZFS), writable = mounted
//!   read-write and `access(W_OK)` succeeds — checked without writing anything.
//! * **remote** — `remote.endpoint` configured; when the network is up, one TCP connect with
//!   `remote.timeout` (name resolution is bounded by the same timeout).
//!
//! The decision table (documented in `docs/asl-preflight.md`):
//!
//! | `mode`  | local ready | remote ready | decision   |
//! |---------|-------------|--------------|------------|
//! | auto    | yes         | –            | `local`    |
//! | auto    | no          | yes          | `remote`   |
//! | auto    | no          | no           | `operator` |
//! | local   | yes         | –            | `local`    |
//! | local   | no          | –            | `operator` |
//! | remote  | –           | yes          | `remote`   |
//! | remote  | –           | no           | `operator` |
//! | invalid configuration | – | –         | `operator` |
//!
//! *Local ready*: `local.mount` is mounted, writable, and — when `local.pool` is set — the
//! mounted source is a dataset of that pool. *Remote ready*: an endpoint is configured, the
//! network is up and the connect succeeded.
//!
//! Preflight never imports a pool, mounts, or writes anything but the mode file.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Root;
use crate::config::{AslConf, Endpoint, Mode};
use crate::modefile::{self, Decision, ModeFileError, ModeRecord};

/// What preflight takes from its process environment (kept explicit so tests can vary it).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The `PATH` searched for `zpool` and `zfs`.
    pub path: Option<OsString>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            path: std::env::var_os("PATH"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworkFacts {
    /// Non-loopback links that are up and have a routable address.
    pub links: Vec<String>,
    pub default_route: bool,
    pub up: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ZfsFacts {
    pub module: bool,
    pub zpool: Option<PathBuf>,
    pub zfs: Option<PathBuf>,
    pub importable: Vec<String>,
    pub imported: Vec<String>,
    /// The ZFS dataset mounted at `local.mount`, if that mount is ZFS.
    pub dataset: Option<String>,
    /// A `zpool` command that failed for a reason other than "nothing to import".
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LocalFacts {
    pub mount: PathBuf,
    pub exists: bool,
    pub mounted: bool,
    pub fstype: Option<String>,
    pub source: Option<String>,
    pub writable: bool,
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteFacts {
    pub endpoint: Option<String>,
    /// `None` when not tried (no endpoint, or the network is down).
    pub reachable: Option<bool>,
    pub error: Option<String>,
}

/// Everything preflight found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub mode: Option<Mode>,
    /// The configuration error, when asl.conf could not be used.
    pub config_error: Option<String>,
    pub network: NetworkFacts,
    pub zfs: ZfsFacts,
    pub local: LocalFacts,
    pub remote: RemoteFacts,
}

/// The result of a preflight run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub decision: Decision,
    pub reason: String,
    pub facts: Facts,
    /// Where the decision was written; `None` with `--dry-run`.
    pub mode_file: Option<PathBuf>,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Network detection; see the module docs for the rule.
pub fn detect_network(root: &Root) -> NetworkFacts {
    let mut up_links = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.join("/sys/class/net")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            // ARPHRD_LOOPBACK = 772.
            if name == "lo" || read_trim(&dir.join("type")).as_deref() == Some("772") {
                continue;
            }
            let oper = read_trim(&dir.join("operstate")).unwrap_or_default();
            let carrier = read_trim(&dir.join("carrier")).unwrap_or_default();
            if oper == "up" || (oper == "unknown" && carrier == "1") {
                up_links.push(name);
            }
        }
    }
    up_links.sort();
    let mut addressed = Vec::new();
    let mut default_route = false;
    // /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    if let Some(t) = read_trim(&root.join("/proc/net/route")) {
        for l in t.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || !up_links.iter().any(|u| u == f[0]) {
                continue;
            }
            let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
            if flags & 1 == 0 {
                continue; // RTF_UP not set
            }
            addressed.push(f[0].to_string());
            if f[1] == "00000000" && f[7] == "00000000" {
                default_route = true;
            }
        }
    }
    // /proc/net/if_inet6: address ifindex prefixlen scope flags name; scope 00 = global.
    if let Some(t) = read_trim(&root.join("/proc/net/if_inet6")) {
        for l in t.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 6 && f[3] == "00" && up_links.iter().any(|u| u == f[5]) {
                addressed.push(f[5].to_string());
            }
        }
    }
    // /proc/net/ipv6_route: dest plen src splen nexthop metric refcnt use flags iface.
    if let Some(t) = read_trim(&root.join("/proc/net/ipv6_route")) {
        for l in t.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let flags = u32::from_str_radix(f[8], 16).unwrap_or(0);
            let reject = flags & 0x0200 != 0;
            if f[0].chars().all(|c| c == '0')
                && f[1] == "00"
                && !reject
                && up_links.iter().any(|u| u == f[9])
            {
                default_route = true;
            }
        }
    }
    let links: Vec<String> = up_links
        .into_iter()
        .filter(|u| addressed.contains(u))
        .collect();
    NetworkFacts {
        up: !links.is_empty() && default_route,
        links,
        default_route,
    }
}

fn find_on_path(path: Option<&OsStr>, name: &str) -> Option<PathBuf> {
    let path = path?;
    for dir in std::env::split_paths(path) {
        let p = dir.join(name);
        if let Ok(m) = std::fs::metadata(&p)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return Some(p);
        }
    }
    None
}

/// Output of a bounded command run.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs a command with a deadline; a command that hangs (a pool scan on a dying disk) is
/// killed rather than blocking boot.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Ran, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = err.as_mut() {
            let _ = o.read_to_end(&mut s);
        }
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not finish within {}s and was killed",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Ok(Ran {
        ok: status.success(),
        stdout,
        stderr,
    })
}

const ZPOOL_LIMIT: Duration = Duration::from_secs(30);

/// ZFS detection. Runs `zpool import` (no pool argument: lists only) and `zpool list`.
pub fn detect_zfs(root: &Root, env: &Env) -> ZfsFacts {
    let mut z = ZfsFacts {
        module: root.join("/sys/module/zfs").is_dir(),
        zpool: find_on_path(env.path.as_deref(), "zpool"),
        zfs: find_on_path(env.path.as_deref(), "zfs"),
        ..ZfsFacts::default()
    };
    let (true, Some(zpool)) = (z.module, z.zpool.clone()) else {
        return z;
    };
    match run_bounded(Command::new(&zpool).arg("import"), ZPOOL_LIMIT) {
        Ok(r) => {
            z.importable = r
                .stdout
                .lines()
                .filter_map(|l| l.trim().strip_prefix("pool:"))
                .map(|p| p.trim().to_string())
                .collect();
            if !r.ok && !r.stderr.contains("no pools available") {
                z.error = Some(format!("zpool import: {}", first_line(&r.stderr)));
            }
        }
        Err(e) => z.error = Some(format!("zpool import: {e}")),
    }
    match run_bounded(
        Command::new(&zpool).args(["list", "-H", "-o", "name"]),
        ZPOOL_LIMIT,
    ) {
        Ok(r) if r.ok => {
            z.imported = r
                .stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        }
        Ok(r) => {
            z.error
                .get_or_insert(format!("zpool list: {}", first_line(&r.stderr)));
        }
        Err(e) => {
            z.error.get_or_insert(format!("zpool list: {e}"));
        }
    }
    z
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim()
        .to_string()
}

/// Local mount detection, without writing.
pub fn detect_local(root: &Root, conf: &AslConf) -> LocalFacts {
    let real = root.join(&conf.local_mount);
    let mut l = LocalFacts {
        mount: conf.local_mount.clone(),
        exists: real.is_dir(),
        pool: conf.local_pool.clone(),
        ..LocalFacts::default()
    };
    let mut ro = false;
    let table = asl_mountinfo::read(&root.join("/proc/self/mountinfo")).unwrap_or_default();
    // Later entries are mounted on top of earlier ones: the last one is visible.
    if let Some(m) = table.iter().rfind(|m| m.mount_point == conf.local_mount) {
        l.mounted = true;
        l.fstype = Some(m.fs_type.clone());
        l.source = Some(m.source.clone());
        ro = m.is_read_only();
    }
    if l.mounted && !ro && l.exists {
        // access(2) answers "may I write here" (including EROFS) without creating anything.
        l.writable = rustix::fs::access(&real, rustix::fs::Access::WRITE_OK).is_ok();
    }
    l
}

/// Tries one TCP connect to the endpoint, name resolution included, within `limit`.
pub fn probe_endpoint(ep: &Endpoint, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let target = (ep.host.clone(), ep.port);
    // getaddrinfo has no timeout: resolve on a helper thread and stop waiting at the deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(target.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
    });
    let addrs = match rx.recv_timeout(limit) {
        Ok(Ok(a)) if !a.is_empty() => a,
        Ok(Ok(_)) => return Err(format!("{} resolves to no address", ep.host)),
        Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", ep.host)),
        Err(_) => {
            return Err(format!(
                "resolving {} took longer than {:?}",
                ep.host, limit
            ));
        }
    };
    let mut last = String::new();
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("connect to {a}: {e}"),
        }
    }
    if last.is_empty() {
        last = format!("no answer within {limit:?}");
    }
    Err(last)
}

/// Runs every detection for a configuration.
pub fn detect(root: &Root, conf: &AslConf, env: &Env) -> Facts {
    let network = detect_network(root);
    let mut zfs = detect_zfs(root, env);
    let local = detect_local(root, conf);
    if local.fstype.as_deref() == Some("zfs") {
        zfs.dataset = local.source.clone();
    }
    let mut remote = RemoteFacts {
        endpoint: conf.remote_endpoint.as_ref().map(|e| e.url.clone()),
        ..RemoteFacts::default()
    };
    if let Some(ep) = &conf.remote_endpoint
        && network.up
    {
        match probe_endpoint(ep, conf.remote_timeout) {
            Ok(()) => remote.reachable = Some(true),
            Err(e) => {
                remote.reachable = Some(false);
                remote.error = Some(e);
            }
        }
    }
    Facts {
        mode: Some(conf.mode),
        config_error: None,
        network,
        zfs,
        local,
        remote,
    }
}

fn list(v: &[String]) -> String {
    v.join(",")
}

/// Why the local store is not usable, or `Ok` with a description of it.
fn local_ready(f: &Facts) -> Result<String, String> {
    let l = &f.local;
    let m = l.mount.display();
    let mut why = if !l.exists {
        format!("local.mount {m} does not exist")
    } else if !l.mounted {
        format!("local.mount {m} is not mounted")
    } else if !l.writable {
        format!("local.mount {m} is mounted read-only or not writable")
    } else {
        let src = l.source.clone().unwrap_or_default();
        let fstype = l.fstype.clone().unwrap_or_default();
        match &l.pool {
            Some(pool) if fstype != "zfs" || src.split('/').next() != Some(pool.as_str()) => {
                format!(
                    "local.mount {m} is mounted from {fstype} {src}, not from local.pool {pool}"
                )
            }
            _ => {
                return Ok(format!(
                    "local.mount {m} is mounted ({fstype} {src}) and writable"
                ));
            }
        }
    };
    // Say what ZFS offers, so the operator knows the next step.
    let z = &f.zfs;
    if !z.module {
        why.push_str("; ZFS module not loaded (/sys/module/zfs absent)");
    } else if z.zpool.is_none() {
        why.push_str("; ZFS module loaded but no zpool on PATH");
    } else {
        let waiting: Vec<&String> = z
            .importable
            .iter()
            .filter(|p| l.pool.as_ref().is_none_or(|want| want == *p))
            .collect();
        if let Some(p) = waiting.first() {
            why.push_str(&format!(
                "; pool {p} is importable but not imported (preflight never imports: run 'zpool import {p}', mount it, then rerun asl-preflight)"
            ));
        } else if let Some(pool) = &l.pool {
            if z.imported.contains(pool) {
                why.push_str(&format!(
                    "; pool {pool} is imported but no dataset of it is mounted at {m}"
                ));
            } else {
                why.push_str(&format!("; pool {pool} is neither imported nor importable"));
            }
        } else if z.importable.is_empty() && z.imported.is_empty() {
            why.push_str("; no ZFS pool imported or importable");
        }
        if let Some(e) = &z.error {
            why.push_str(&format!("; {e}"));
        }
    }
    Err(why)
}

fn remote_ready(f: &Facts) -> Result<String, String> {
    let r = &f.remote;
    let Some(ep) = &r.endpoint else {
        return Err("no remote.endpoint configured".into());
    };
    if !f.network.up {
        let what = if f.network.links.is_empty() {
            "no non-loopback link is up with a routable address"
        } else {
            "no default route"
        };
        return Err(format!("network is down ({what}); {ep} not tried"));
    }
    match r.reachable {
        Some(true) => Ok(format!("remote endpoint {ep} is reachable")),
        _ => Err(format!(
            "remote endpoint {ep} is unreachable: {}",
            r.error.as_deref().unwrap_or("not tried")
        )),
    }
}

/// The decision table (module docs). Pure: the same facts give the same answer.
pub fn decide(f: &Facts) -> (Decision, String) {
    if let Some(e) = &f.config_error {
        return (Decision::Operator, format!("configuration is invalid: {e}"));
    }
    let mode = f.mode.unwrap_or(Mode::Auto);
    let local = local_ready(f);
    let remote = remote_ready(f);
    match (mode, local, remote) {
        (Mode::Auto | Mode::Local, Ok(l), _) => (Decision::Local, l),
        (Mode::Auto, Err(l), Ok(r)) => (Decision::Remote, format!("{r}; local not usable: {l}")),
        (Mode::Remote, _, Ok(r)) => (Decision::Remote, r),
        (Mode::Auto, Err(l), Err(r)) => (
            Decision::Operator,
            format!("mode=auto and nothing usable: local: {l}; remote: {r}"),
        ),
        (Mode::Local, Err(l), _) => (Decision::Operator, format!("mode=local but {l}")),
        (Mode::Remote, _, Err(r)) => (Decision::Operator, format!("mode=remote but {r}")),
    }
}

fn yn(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn opt_path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "none".into())
}

/// The facts as `key=value` lines of the mode file, in a fixed order.
pub fn fact_lines(f: &Facts) -> Vec<(String, String)> {
    let mut v: Vec<(&str, String)> = vec![
        (
            "mode",
            f.mode
                .map(|m| m.to_string())
                .unwrap_or_else(|| "invalid".into()),
        ),
        ("network", if f.network.up { "up" } else { "down" }.into()),
        ("network.links", list(&f.network.links)),
        ("network.default_route", yn(f.network.default_route)),
        ("zfs.module", yn(f.zfs.module)),
        ("zfs.zpool", opt_path(&f.zfs.zpool)),
        ("zfs.zfs", opt_path(&f.zfs.zfs)),
        ("zfs.importable", list(&f.zfs.importable)),
        ("zfs.imported", list(&f.zfs.imported)),
        ("zfs.dataset", f.zfs.dataset.clone().unwrap_or_default()),
        ("local.mount", f.local.mount.display().to_string()),
        ("local.mounted", yn(f.local.mounted)),
        ("local.fstype", f.local.fstype.clone().unwrap_or_default()),
        ("local.source", f.local.source.clone().unwrap_or_default()),
        ("local.writable", yn(f.local.writable)),
        ("local.pool", f.local.pool.clone().unwrap_or_default()),
        (
            "remote.endpoint",
            f.remote.endpoint.clone().unwrap_or_default(),
        ),
        (
            "remote.reachable",
            match f.remote.reachable {
                Some(b) => yn(b),
                None => "untested".into(),
            },
        ),
    ];
    if let Some(e) = &f.zfs.error {
        v.push(("zfs.error", e.clone()));
    }
    if let Some(e) = &f.remote.error {
        v.push(("remote.error", e.clone()));
    }
    if let Some(e) = &f.config_error {
        v.push(("config.error", e.clone()));
    }
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A whole preflight run: load asl.conf (an invalid one leads to `operator`), detect, decide,
/// and unless `dry_run` write the mode file atomically. The only error is failing to write it.
pub fn run(root: &Root, env: &Env, dry_run: bool) -> Result<Outcome, ModeFileError> {
    let (conf, config_error) = match AslConf::load(root) {
        Ok(c) => (c, None),
        // Keep detecting with defaults so the mode file still tells the operator what exists.
        Err(e) => (AslConf::default(), Some(e.to_string())),
    };
    let mut facts = detect(root, &conf, env);
    if config_error.is_some() {
        facts.mode = None;
        facts.config_error = config_error;
    }
    let (decision, reason) = decide(&facts);
    let record = ModeRecord {
        decision,
        facts: fact_lines(&facts),
        reason: reason.clone(),
    };
    let mode_file = if dry_run {
        None
    } else {
        Some(modefile::write_atomic(root, &record)?)
    };
    Ok(Outcome {
        decision,
        reason,
        facts,
        mode_file,
    })
}

/// The mode-file record of an outcome (what `run` writes).
pub fn record(o: &Outcome) -> ModeRecord {
    ModeRecord {
        decision: o.decision,
        facts: fact_lines(&o.facts),
        reason: o.reason.clone(),
    }
}
