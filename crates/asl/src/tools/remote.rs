//! Remote stores: the `asl-server` tool, and `asl-intake --remote`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use super::Tool;
use super::common::{OutputArgs, human_bytes};
use super::source::{RemoteArgs, remote_error};
use crate::exit::{Code, fail};

pub const TOOLS: &[Tool] = &[Tool {
    name: "asl-server",
    command: Server::command,
    run: server,
}];

/// Serve stores to remote intakes and readers.
#[derive(Parser, Debug)]
#[command(
    about = "Serve ASL stores over HTTPS to remote intakes and readers",
    long_about = "Serve one or more ASL stores over HTTPS (HTTP/1.1 and HTTP/2), by the API of \
docs/REMOTE.md. Rescue images intake into it (`asl-intake --remote`); operators list, read, \
restore and verify through it (`asl-admin --remote`).\n\n\
The configuration (server.conf, see docs/asl-server.md) names the stores, the address, the \
TLS certificate and the ed25519 public keys (made by asl-key) allowed in, with their rights \
per store: read, write, admin. Every request is signed; unsigned, unknown or replayed \
requests get 401, requests beyond a key's rights 403, and nothing changes.\n\n\
Each store is held open for writing while the server runs: the server is its one writer and \
serialises commits from all clients. An upload is acknowledged only once it is durable.",
    after_help = "Exit codes: 0 stopped by SIGTERM or SIGINT, 1 failed to start, 2 usage or a bad configuration.\n\n\
Examples:\n  asl-server\n  asl-server --config ./server.conf\n  asl-server --check --config /etc/asl/server.conf"
)]
pub struct Server {
    /// The configuration file.
    #[arg(long, value_name = "FILE", default_value = "/etc/asl/server.conf")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    out: OutputArgs,
}

fn server(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Server = super::args(m)?;
    let conf =
        asl_remote::ServerConf::load(&a.config).map_err(|e| fail(Code::Usage, e.to_string()))?;
    if a.check {
        let v = serde_json::json!({
            "config": a.config,
            "listen": conf.listen.to_string(),
            "tls": conf.tls.is_some(),
            "stores": conf
                .stores
                .iter()
                .map(|(n, l)| (n.clone(), l.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "keys": conf.keys.len(),
        });
        a.out.emit(&v, || {
            format!(
                "{}: ok: {} store(s), {} key(s), listening on {}{}\n",
                a.config.display(),
                conf.stores.len(),
                conf.keys.len(),
                conf.listen,
                if conf.tls.is_some() {
                    " (TLS)"
                } else {
                    " (plain HTTP, loopback)"
                }
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let stores: Vec<String> = conf.stores.keys().cloned().collect();
    let tls = conf.tls.is_some();
    let server = asl_remote::Server::open(conf).map_err(|e| fail(Code::Failure, e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(Code::Failure, format!("cannot start the runtime: {e}")))?;
    let quiet = a.out.quiet;
    runtime
        .block_on(server.serve(
            |addr| {
                // The one line a supervisor (or a test) waits for, with the bound port.
                if !quiet {
                    eprintln!(
                        "asl-server: listening on {}://{addr} for store(s) {}",
                        if tls { "https" } else { "http" },
                        stores.join(", ")
                    );
                }
            },
            shutdown_signal(),
        ))
        .map_err(|e| fail(Code::Failure, e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers the server runs until killed.
        _ => std::future::pending::<()>().await,
    }
}

/// What a remote intake printed and returns in `--json`.
#[derive(serde::Serialize)]
struct RemoteIntakeReport<'a> {
    remote: &'a str,
    snapshot: u64,
    label: Option<&'a str>,
    /// `false`: an earlier try of this commit had made the snapshot.
    created: bool,
    #[serde(flatten)]
    summary: &'a asl_fs::IntakeSummary,
    bytes_sent: u64,
    /// How long the server took to check and commit the snapshot, as this client saw it.
    commit_seconds: f64,
    /// The stat cache's contents the server was asked about (absent: no cache used).
    stat_cache_checked: Option<CacheCheck>,
}

#[derive(serde::Serialize)]
struct CacheCheck {
    /// Distinct contents the stat cache named.
    contents: u64,
    /// How many of them the server still held: only these cache entries were trusted.
    on_server: u64,
}

/// Where the stat cache of a remote intake of `paths` lives: under the user's cache
/// directory (`$XDG_CACHE_HOME/asl/remote`, else `~/.cache/asl/remote`), one file per server
/// URL, store identity and set of paths, so that intakes to different servers or stores, or
/// of different trees, do not evict each other. `None` when there is no cache directory.
fn remote_stat_cache_path(r: &asl_remote::Remote, url: &str, paths: &[PathBuf]) -> Option<PathBuf> {
    let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    let base = std::env::var_os("XDG_CACHE_HOME")
        .and_then(nonempty)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(nonempty)
                .map(|h| h.join(".cache"))
        })?;
    let dir = base.join("asl").join("remote");
    // A directory that cannot be made shows as the intake's stat cache warning.
    let _ = std::fs::create_dir_all(&dir);
    let info = r.info();
    let mut key = format!(
        "{url}\0{}\0{}\0{}\0{}\0",
        info.store, info.store_id, info.domain_id, info.hash
    )
    .into_bytes();
    for p in paths {
        key.extend_from_slice(p.as_os_str().as_encoded_bytes());
        key.push(0);
    }
    let h = asl_store::HashAlgo::Blake3.digest(&key);
    Some(dir.join(format!("statcache-{}", h.short())))
}

/// `asl-intake --remote URL PATH...`: the tree is walked and hashed here, only what the
/// server lacks is sent, and the snapshot is committed there.
pub fn intake(
    remote: &RemoteArgs,
    paths: &[PathBuf],
    mut opts: asl_fs::IntakeOptions,
    use_stat_cache: bool,
    label: Option<String>,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let r = remote
        .connect()?
        .ok_or_else(|| fail(Code::Usage, "--remote is missing"))?;
    let writer = asl_remote::RemoteWriter::new(&r).map_err(remote_error)?;
    let url = remote.remote.as_deref().unwrap_or_default();
    let mut cache_checked = None;
    if use_stat_cache && let Some(path) = remote_stat_cache_path(&r, url, paths) {
        // The cache is a hint: its entries are trusted only for what the server still
        // holds, asked here for all of them in a few requests (a store emptied or replaced
        // since then answers "missing", and those files are read again). A commit is refused
        // anyway unless everything it reaches is on the server.
        let cached = asl_fs::statcache::StatCache::load(&path);
        let mut refs: Vec<asl_store::Reference> = cached.contents().collect();
        drop(cached);
        refs.sort_unstable();
        refs.dedup();
        let present = writer.check_present(&refs).map_err(remote_error)?;
        cache_checked = Some(CacheCheck {
            contents: refs.len() as u64,
            on_server: present as u64,
        });
        opts.stat_cache = Some(path);
    }
    let summary = super::store::run_with_progress(&writer, paths, &opts, out)?;
    writer.finish().map_err(remote_error)?;
    let meta = summary.snapshot_meta(label.clone(), paths);
    let key = asl_remote::client::new_commit_key();
    let started = std::time::Instant::now();
    let commit = r.commit(&summary.root, &key, meta).map_err(remote_error)?;
    let commit_seconds = started.elapsed().as_secs_f64();
    let report = RemoteIntakeReport {
        remote: url,
        snapshot: commit.snapshot.id,
        label: label.as_deref(),
        created: commit.created,
        summary: &summary,
        bytes_sent: r.bytes_sent(),
        commit_seconds,
        stat_cache_checked: cache_checked,
    };
    out.emit(&report, || {
        format!(
            "snapshot {}{} of {} committed to {url}\n  files {}  dirs {}  sent {} (the rest the server had)\n  root {}\n",
            report.snapshot,
            label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default(),
            human_bytes(summary.bytes_total),
            summary.files,
            summary.dirs,
            human_bytes(report.bytes_sent),
            summary.root
        )
    })?;
    if !summary.errors.is_empty() {
        return Ok(Code::Unreadable.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// The intake of `paths` must not start when one is missing.
pub fn check_sources(paths: &[PathBuf]) -> anyhow::Result<()> {
    for p in paths {
        if let Err(e) = std::fs::symlink_metadata(p) {
            return Err(fail(
                Code::Failure,
                format!(
                    "cannot take in {}: {e}; nothing was created or committed",
                    Path::new(p).display()
                ),
            ));
        }
    }
    Ok(())
}
