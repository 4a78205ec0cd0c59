//! `asl-admin`: inspect, restore, verify and maintain a store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use asl_store::gc::GcOptions;
use asl_store::verify::{VerifyOptions, verify};
use asl_store::{Snapshot, Store};
use clap::{Parser, Subcommand};

use super::common::{
    OutputArgs, StoreArg, StoreToolArgs, check_inner_path, children, human_bytes, open_store,
    open_writer, split_snapshot_path, store_error,
};
use super::source::{RemoteArgs, Source, remote_error};
use crate::exit::{Code, fail};

#[derive(Parser, Debug)]
#[command(
    about = "Inspect, restore, verify and maintain an ASL store",
    long_about = "Inspect, restore, verify and maintain an ASL store.\n\n\
Snapshots are named by id (3 or #3), by label (the newest snapshot with it), or `latest`. \
S:PATH names a path inside a snapshot.",
    after_help = "Exit codes: 0 ok, 1 failure (also a bug in asl), 2 usage, 3 damage found \
(verify, restore, cat, ls, diff; any reading command on a damaged log; see docs/EXIT-CODES.md).\n\n\
With --remote URL, snapshots, show, ls, cat, diff, restore and verify work on a store that \
asl-server serves (docs/REMOTE.md).\n\n\
Examples:\n  asl-admin snapshots\n  asl-admin ls latest:/etc\n  asl-admin --remote https://vault:8443/main --key me.key restore latest --target /mnt/r\n  asl-admin restore rescue-sda2:/home --target /mnt/restore\n  asl-admin verify --read-data\n  asl-admin gc --keep-last 5"
)]
pub struct Admin {
    #[command(flatten)]
    common: StoreToolArgs,
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List retained snapshots.
    Snapshots,
    /// Show one snapshot's metadata.
    Show {
        /// Snapshot name.
        snapshot: String,
    },
    /// List a directory of a snapshot (S or S:PATH).
    Ls {
        /// S[:PATH]
        spec: String,
        /// Long listing: mode, owner, size, time, reference.
        #[arg(short, long)]
        long: bool,
    },
    /// Write a file of a snapshot to stdout (S:PATH).
    Cat {
        /// S:PATH
        spec: String,
    },
    /// List what changed between two snapshots.
    Diff { old: String, new: String },
    /// Restore a snapshot (or S:PATH) into an empty or new directory.
    Restore {
        /// S[:PATH]
        spec: String,
        /// Where to restore; must not exist or be empty.
        #[arg(long, short = 't', value_name = "DIR")]
        target: PathBuf,
        /// Do not restore owners even as root.
        #[arg(long)]
        no_owners: bool,
        /// Do not restore extended attributes.
        #[arg(long)]
        no_xattrs: bool,
    },
    /// Check the store: log chain, segments, index against blocks, snapshot trees.
    Verify {
        /// Also read and re-hash every byte of data.
        #[arg(long)]
        read_data: bool,
    },
    /// Stop retaining a snapshot (its data goes at the next gc).
    Forget {
        /// Snapshot names.
        #[arg(required = true)]
        snapshots: Vec<String>,
    },
    /// Delete data no retained snapshot reaches and files no log record refers to.
    Gc {
        /// First forget all snapshots but the newest N.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Show what would be done; change nothing (read-only: runs while a writer holds the
        /// store).
        #[arg(long)]
        dry_run: bool,
    },
    /// Sizes and counts, and the files no log record refers to (left by an interrupted writer).
    Stats,
    /// Rebuild the index from the blocks alone and drop derived caches.
    Reindex,
    /// Where an artifact came from: the steps that produced it (same as asl-why).
    #[command(disable_help_flag = true)]
    Why {
        /// Arguments of asl-why (REF, --depth N ...; --help for all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// What was made from an artifact (same as asl-used-by).
    #[command(disable_help_flag = true)]
    UsedBy {
        /// Arguments of asl-used-by (REF ...; --help for all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Signing keys for receipts: generate, show (same as asl-key).
    #[command(disable_help_flag = true)]
    Key {
        /// Arguments of asl-key (generate FILE, show FILE ...; --help for all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Repair a damaged log: keep a copy, cut at the damaged record, and re-record every
    /// later snapshot whose data is intact.
    #[command(long_about = "Repair a damaged log.\n\n\
Takes the writer lock, copies the whole log to log/asl.log.damaged-<unix time>, cuts the log \
at the first complete record that fails its check, then appends fresh records for what the \
cut records said and the data still proves: segments whose files decode and whose blocks \
exist, and snapshots whose whole tree reads back and verifies. Prints what it did; exit 3 \
when something cut could not be re-recorded. Never runs implicitly.")]
    RepairLog,
    /// Check the host configuration files under /etc/asl.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Parse asl.conf, federation.conf and logging.conf strictly.
    Check {
        /// Root of the host tree [env: ASL_ROOT].
        #[arg(long, value_name = "DIR", env = "ASL_ROOT", default_value = "/")]
        root: PathBuf,
    },
}

pub fn run(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Admin = super::args(m)?;
    let StoreToolArgs {
        store: store_arg,
        out,
    } = a.common;
    // Every reading subcommand warns about a damaged log and ends with exit 3, even when
    // what it was asked for lies before the damage: the store is not what it seems.
    let log_damaged = std::cell::Cell::new(false);
    let open_store = |arg: &StoreArg| -> anyhow::Result<Store> {
        let store = open_store(arg)?;
        if let Some(d) = store.log_damage() {
            warn_log_damage(d);
            log_damaged.set(true);
        }
        Ok(store)
    };
    let remote = a.remote.connect()?;
    let reading = matches!(
        a.cmd,
        Cmd::Snapshots
            | Cmd::Show { .. }
            | Cmd::Ls { .. }
            | Cmd::Cat { .. }
            | Cmd::Diff { .. }
            | Cmd::Restore { .. }
            | Cmd::Verify { .. }
    );
    if remote.is_some() && !reading {
        return Err(fail(
            Code::Usage,
            "with --remote only snapshots, show, ls, cat, diff, restore and verify work; \
             run the others on the server's host",
        ));
    }
    if let (Some(r), Cmd::Verify { read_data }) = (&remote, &a.cmd) {
        return remote_verify(r, *read_data, out);
    }
    let mut remote = remote;
    let local = remote.is_none();
    let mut take_source = |arg: &StoreArg| -> anyhow::Result<Source> {
        match remote.take() {
            Some(r) => Source::remote(r),
            None => Ok(Source::Local(Box::new(open_store(arg)?))),
        }
    };
    let code = match a.cmd {
        // Listing needs no index: a local store is read without loading it.
        Cmd::Snapshots if local => {
            let (dir, _) = store_arg.resolve();
            let (list, damage) = Store::list_snapshots(&dir).map_err(store_error)?;
            if let Some(d) = &damage {
                warn_log_damage(d);
                log_damaged.set(true);
            }
            snapshots(list.iter().collect(), out)
        }
        Cmd::Snapshots => snapshots(take_source(&store_arg)?.snapshots(), out),
        Cmd::Show { snapshot } => {
            let src = take_source(&store_arg)?;
            let s = src.resolve(&snapshot)?;
            out.emit(s, || show_text(s))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ls { spec, long } => ls(&take_source(&store_arg)?, &spec, long, out),
        Cmd::Cat { spec } => cat(&take_source(&store_arg)?, &spec),
        Cmd::Diff { old, new } => diff(&take_source(&store_arg)?, &old, &new, out),
        Cmd::Restore {
            spec,
            target,
            no_owners,
            no_xattrs,
        } => restore(
            &take_source(&store_arg)?,
            &spec,
            &target,
            no_owners,
            no_xattrs,
            out,
        ),
        Cmd::Verify { read_data } => {
            let store = open_store(&store_arg)?;
            let mut rep = verify(&store, &VerifyOptions { read_data }, &children);
            name_damaged_paths(&store, &mut rep);
            out.emit(&rep, || verify_text(&rep))?;
            if rep.ok() {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(Code::Integrity.into())
            }
        }
        Cmd::Forget { snapshots } => {
            let mut w = open_writer(&store_arg)?;
            let mut ids = Vec::new();
            for name in &snapshots {
                let id = w.resolve_snapshot(name).map_err(store_error)?.id;
                ids.push(id);
            }
            for id in &ids {
                w.forget(*id).map_err(store_error)?;
            }
            out.emit(&serde_json::json!({ "forgotten": ids }), || {
                format!("forgot snapshot(s) {ids:?}; run `asl-admin gc` to free their data\n")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gc { keep_last, dry_run } => {
            let forget_all_but = |mut ids: Vec<u64>| -> Vec<u64> {
                ids.sort_unstable();
                match keep_last {
                    Some(n) => ids[..ids.len().saturating_sub(n)].to_vec(),
                    None => Vec::new(),
                }
            };
            let opts = GcOptions {
                dry_run,
                ..GcOptions::default()
            };
            let (forgotten, rep) = if dry_run {
                // Read-only: a plan needs no lock, so it can be made while an intake runs.
                let store = open_store(&store_arg)?;
                let forgotten = forget_all_but(store.snapshots().iter().map(|s| s.id).collect());
                let rep = asl_store::gc::dry_run(&store, &opts, &children).map_err(store_error)?;
                (forgotten, rep)
            } else {
                let mut w = open_writer(&store_arg)?;
                let forgotten = forget_all_but(w.snapshot_ids());
                for id in &forgotten {
                    w.forget(*id).map_err(store_error)?;
                }
                (forgotten, w.gc(&opts, &children).map_err(store_error)?)
            };
            out.emit(
                &serde_json::json!({ "forgotten": forgotten, "gc": rep }),
                || {
                    format!(
                        "{}{} snapshots retained, {} artifacts live, {} dropped\n\
                     blocks: {} kept, {} deleted, {} repacked into {}\n\
                     unreferenced files {}: {} ({} sealed block{})\n\
                     {}{} {} ({} {}, {} {}; blocks in use held {} before)\n",
                        if dry_run {
                            "dry run (nothing changed): "
                        } else {
                            ""
                        },
                        rep.snapshots_retained,
                        rep.artifacts_live,
                        rep.artifacts_dropped,
                        rep.blocks_kept,
                        rep.blocks_deleted,
                        rep.blocks_repacked,
                        rep.blocks_written,
                        if dry_run { "to remove" } else { "removed" },
                        tally_text(rep.unreferenced_removed),
                        rep.orphan_blocks_deleted,
                        if rep.orphan_blocks_deleted == 1 {
                            ""
                        } else {
                            "s"
                        },
                        if dry_run { "about " } else { "" },
                        signed_bytes(rep.bytes_freed),
                        if dry_run { "would be freed" } else { "freed" },
                        human_bytes(rep.bytes_deleted),
                        if dry_run { "to delete" } else { "deleted" },
                        human_bytes(rep.bytes_written),
                        if dry_run { "to write" } else { "written" },
                        human_bytes(rep.bytes_before)
                    )
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stats => stats(&open_store(&store_arg)?, out),
        Cmd::Reindex => {
            let mut w = open_writer(&store_arg)?;
            let rep = w.reindex().map_err(store_error)?;
            out.emit(&rep, || {
                format!(
                    "index rebuilt from {} blocks: {} entries ({} recovered), {} segments replaced; caches cleared\n{}",
                    rep.blocks_scanned,
                    rep.entries,
                    rep.recovered,
                    rep.segments_retired,
                    rep.blocks_unreadable.iter().map(|b| format!("unreadable: {b}\n")).collect::<String>()
                )
            })?;
            Ok(if rep.blocks_unreadable.is_empty() {
                ExitCode::SUCCESS
            } else {
                Code::Integrity.into()
            })
        }
        Cmd::Why { args } => delegate("asl-why", &store_arg, args),
        Cmd::UsedBy { args } => delegate("asl-used-by", &store_arg, args),
        Cmd::Key { args } => delegate("asl-key", &store_arg, args),
        Cmd::Config {
            cmd: ConfigCmd::Check { root },
        } => match asl_host::config::check(&root) {
            Ok(rep) => {
                out.emit(&rep, || {
                    rep.files
                        .iter()
                        .map(|f| {
                            format!(
                                "{}: {}\n",
                                f.path.display(),
                                if f.present {
                                    "ok"
                                } else {
                                    "absent (defaults apply)"
                                }
                            )
                        })
                        .collect()
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(fail(Code::Failure, e.to_string())),
        },
        Cmd::RepairLog => repair_log(&store_arg, out),
    }?;
    if log_damaged.get() && code == ExitCode::SUCCESS {
        return Ok(Code::Integrity.into());
    }
    Ok(code)
}

/// One warning line on stderr naming the damaged record and the snapshots it hides.
fn warn_log_damage(d: &asl_store::LogDamage) {
    let mut hidden = if d.hidden_snapshots.is_empty() {
        "no snapshot found beyond it".to_string()
    } else {
        format!(
            "snapshot(s) {} lie beyond it and are hidden",
            d.hidden_snapshots
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if d.unparsed_bytes > 0 {
        hidden.push_str(&format!(
            " ({} bytes at the end could not be parsed and may hold more)",
            d.unparsed_bytes
        ));
    }
    eprintln!(
        "asl-admin: warning: damaged log: record {} (byte {} of log/asl.log) fails its check \
         ({}); {hidden}; run `asl-admin repair-log` to re-record what is intact",
        d.logseq, d.at, d.reason
    );
}

fn repair_log(store_arg: &StoreArg, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let (dir, _) = store_arg.resolve();
    let rep = asl_store::repair::repair_log(&dir, &children).map_err(store_error)?;
    out.emit(&rep, || repair_text(&rep))?;
    Ok(if rep.dropped.is_empty() {
        ExitCode::SUCCESS
    } else {
        // Something was cut and could not be recorded again: data was lost.
        Code::Integrity.into()
    })
}

fn repair_text(rep: &asl_store::repair::RepairReport) -> String {
    let Some(d) = &rep.damage else {
        return "the log is sound; nothing to repair\n".into();
    };
    let ids = |v: &mut dyn Iterator<Item = u64>| {
        let s: Vec<String> = v.map(|i| i.to_string()).collect();
        if s.is_empty() {
            "none".to_string()
        } else {
            s.join(", ")
        }
    };
    let mut t = format!(
        "damaged record {} at byte {}: {}\n\
         kept a copy of the log in {}\n\
         cut {} bytes ({} records) from byte {}\n\
         re-sealed segments: {}\n\
         re-recorded snapshots: {}\n\
         other records re-recorded: {}\n",
        d.logseq,
        d.at,
        d.reason,
        rep.copy
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string()),
        rep.cut_bytes,
        rep.cut_records,
        rep.cut_at,
        ids(&mut rep.resealed_segments.iter().copied()),
        ids(&mut rep.recorded_snapshots.iter().map(|s| s.snapshot_id)),
        rep.other_records,
    );
    for x in &rep.dropped {
        t.push_str(&format!("not re-recorded: {}: {}\n", x.object, x.reason));
    }
    t
}

/// Runs another tool for an `asl-admin` subcommand that is that tool, passing on the store
/// given to asl-admin.
fn delegate(
    tool: &str,
    store: &StoreArg,
    args: Vec<std::ffi::OsString>,
) -> anyhow::Result<ExitCode> {
    let t = super::find(tool).ok_or_else(|| {
        fail(
            Code::Failure,
            format!("{tool} is not built into this binary"),
        )
    })?;
    let mut argv: Vec<std::ffi::OsString> = vec![tool.into()];
    // asl-key has no store.
    if tool != "asl-key"
        && let Some(s) = &store.store
    {
        argv.push("--store".into());
        argv.push(s.into());
    }
    argv.extend(args);
    Ok(super::run_tool(t, argv))
}

fn snapshots(list: Vec<&Snapshot>, out: OutputArgs) -> anyhow::Result<ExitCode> {
    out.emit(&list, || {
        let mut t = format!(
            "{:>5}  {:<20}  {:<16}  {:<12}  paths\n",
            "id", "time", "label", "host"
        );
        for s in &list {
            t.push_str(&format!(
                "{:>5}  {:<20}  {:<16}  {:<12}  {}\n",
                s.id,
                s.meta.time,
                s.meta.label.as_deref().unwrap_or("-"),
                s.meta.host,
                s.meta.paths.join(" ")
            ));
        }
        t
    })?;
    Ok(ExitCode::SUCCESS)
}

fn show_text(s: &Snapshot) -> String {
    format!(
        "snapshot {}\n  kind    {}\n  label   {}\n  time    {}\n  host    {}\n  paths   {}\n  root    {}\n  log     position {}\n  summary {}\n",
        s.id,
        s.meta.kind,
        s.meta.label.as_deref().unwrap_or("-"),
        s.meta.time,
        s.meta.host,
        s.meta.paths.join(" "),
        s.root.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
        s.logseq,
        s.meta.summary
    )
}

/// Resolves `S[:PATH]` to the snapshot, its root tree, and the path bytes.
fn snapshot_path<'s>(
    store: &'s Source,
    spec: &'s str,
) -> anyhow::Result<(&'s Snapshot, asl_store::Reference, &'s str)> {
    let (name, path) = split_snapshot_path(spec);
    let path = path.unwrap_or("");
    check_inner_path(path)?;
    let snap = store.resolve(name)?;
    let root = snap
        .root
        .ok_or_else(|| fail(Code::Failure, format!("snapshot {} has no tree", snap.id)))?;
    Ok((snap, root, path))
}

fn browse_error(e: asl_fs::BrowseError) -> anyhow::Error {
    let code = if e.is_integrity() {
        Code::Integrity
    } else if matches!(e, asl_fs::BrowseError::BadPath { .. }) {
        Code::Usage
    } else {
        Code::Failure
    };
    fail(code, e.to_string())
}

/// A browse error for `S:PATH`: damage gets the snapshot and path in front, since the library
/// names only the tree or block it could not read; other errors already name the path.
fn damage_at(snap: &Snapshot, path: &str) -> impl Fn(asl_fs::BrowseError) -> anyhow::Error {
    let at = format!(
        "snapshot {}, {}",
        snap.id,
        if path.is_empty() { "/" } else { path }
    );
    move |e| {
        let damage = e.is_integrity();
        let err = browse_error(e);
        if damage { err.context(at.clone()) } else { err }
    }
}

fn ls(store: &Source, spec: &str, long: bool, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let (snap, root, path) = snapshot_path(store, spec)?;
    let reader = store.reader(Some(snap));
    let entry = asl_fs::lookup(&*reader, &root, path.as_bytes()).map_err(damage_at(snap, path))?;
    let entries = if entry.kind == asl_fs::Kind::Dir {
        asl_fs::ls(&*reader, &entry).map_err(damage_at(snap, path))?
    } else {
        vec![entry]
    };
    out.emit(&entries, || {
        let mut t = String::new();
        for e in &entries {
            let name = String::from_utf8_lossy(&e.name);
            let suffix = match e.kind {
                asl_fs::Kind::Dir => "/".to_string(),
                asl_fs::Kind::Symlink => format!(" -> {}", String::from_utf8_lossy(&e.link_target)),
                _ => String::new(),
            };
            if long {
                t.push_str(&format!(
                    "{}{:04o} {:>5} {:>5} {:>12} {} {}{}{}\n",
                    kind_char(e.kind),
                    e.mode,
                    e.uid,
                    e.gid,
                    e.size,
                    asl_store::snapshot::rfc3339(e.mtime_sec),
                    name,
                    suffix,
                    e.error
                        .as_ref()
                        .map(|er| format!("  [error: {:?} errno {}]", er.op, er.errno))
                        .unwrap_or_default()
                ));
            } else {
                t.push_str(&format!("{name}{suffix}\n"));
            }
        }
        t
    })?;
    Ok(ExitCode::SUCCESS)
}

fn kind_char(k: asl_fs::Kind) -> char {
    match k {
        asl_fs::Kind::Dir => 'd',
        asl_fs::Kind::Symlink => 'l',
        asl_fs::Kind::Fifo => 'p',
        asl_fs::Kind::Socket => 's',
        asl_fs::Kind::CharDevice => 'c',
        asl_fs::Kind::BlockDevice => 'b',
        asl_fs::Kind::File => '-',
        asl_fs::Kind::Unknown => '?',
    }
}

fn cat(store: &Source, spec: &str) -> anyhow::Result<ExitCode> {
    let (snap, root, path) = snapshot_path(store, spec)?;
    if path.is_empty() {
        return Err(fail(Code::Usage, "cat needs S:PATH naming a file"));
    }
    let reader = store.reader(Some(snap));
    let entry = asl_fs::lookup(&*reader, &root, path.as_bytes()).map_err(damage_at(snap, path))?;
    let mut stdout = crate::output::stdout();
    // The library names the file by its own name; the operator needs the whole path.
    asl_fs::cat(&*reader, &entry, &mut stdout)
        .map_err(|e| browse_error(e).context(format!("snapshot {}, {path}", snap.id)))?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn diff(store: &Source, old: &str, new: &str, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let a = store.resolve(old)?;
    let b = store.resolve(new)?;
    let (Some(ra), Some(rb)) = (a.root, b.root) else {
        return Err(fail(Code::Failure, "both snapshots need a tree"));
    };
    let changes = asl_fs::diff(&*store.reader(None), &ra, &rb).map_err(|e| match e {
        // Damage is named as everywhere else: the snapshot and the path in it.
        asl_fs::BrowseError::DiffSide { old, path, source } if source.is_integrity() => {
            let snap = if old { a.id } else { b.id };
            browse_error(*source).context(format!("snapshot {snap}, {path}"))
        }
        e => browse_error(e),
    })?;
    // Paths as the snapshot's absolute paths, the same in text and JSON; the library's are
    // relative to the roots.
    #[derive(serde::Serialize)]
    struct Line {
        path: String,
        kind: asl_fs::ChangeKind,
    }
    let lines: Vec<Line> = changes
        .iter()
        .map(|c| Line {
            path: format!("/{}", c.path.to_string_lossy()),
            kind: c.kind,
        })
        .collect();
    out.emit(&lines, || {
        lines
            .iter()
            .map(|l| {
                let mark = match l.kind {
                    asl_fs::ChangeKind::Added => '+',
                    asl_fs::ChangeKind::Removed => '-',
                    asl_fs::ChangeKind::Modified => 'M',
                    asl_fs::ChangeKind::Metadata => 'U',
                };
                format!("{mark} {}\n", l.path)
            })
            .collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What `restore --json` prints.
#[derive(serde::Serialize)]
struct RestoreReport<'a> {
    #[serde(flatten)]
    summary: &'a asl_fs::RestoreSummary,
    /// From a server: how the artifacts were read (batched or alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_reads: Option<asl_remote::prefetch::PrefetchCounts>,
}

/// Restore threads when the artifacts come from a server.
const REMOTE_RESTORE_THREADS: usize = 8;

fn restore(
    store: &Source,
    spec: &str,
    target: &std::path::Path,
    no_owners: bool,
    no_xattrs: bool,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let (snap, root, path) = snapshot_path(store, spec)?;
    let reader = store.reader(Some(snap));
    let opts = asl_fs::RestoreOptions {
        owners: if no_owners { Some(false) } else { None },
        no_xattrs,
        // From a server, a file not in the read-ahead is a request: eight in flight keep the
        // link (and the server's cores) busy while each waits for its answer.
        threads: matches!(store, Source::Remote { .. }).then_some(REMOTE_RESTORE_THREADS),
    };
    let sub = (!path.is_empty()).then_some(path.as_bytes());
    let run = |from: &dyn asl_store::ArtifactRead| {
        asl_fs::restore(from, &root, sub, target, &opts).map_err(|e| match e {
            asl_fs::RestoreError::Browse(b) => browse_error(b),
            other => fail(Code::Failure, other.to_string()),
        })
    };
    let (summary, remote_reads) = match store {
        Source::Remote { remote, .. } => {
            // The directory whose contents are restored: its files are fetched ahead, many
            // per request. Not for a target the restore will refuse (not empty): planning
            // reads every tree first.
            let refused = std::fs::read_dir(target).is_ok_and(|mut d| d.next().is_some());
            let top = if refused {
                None
            } else if path.is_empty() {
                Some(root)
            } else {
                asl_fs::lookup(&*reader, &root, path.as_bytes())
                    .ok()
                    .filter(|e| e.kind == asl_fs::Kind::Dir)
                    .and_then(|e| e.content)
            };
            let ahead = asl_remote::Prefetch::plan(remote, Some(snap.id), top);
            let summary = std::thread::scope(|s| {
                // Stops the fetchers however the restore ends, so the scope can join them.
                struct StopOnDrop<'p, 'r>(&'p asl_remote::Prefetch<'r>);
                impl Drop for StopOnDrop<'_, '_> {
                    fn drop(&mut self) {
                        self.0.stop();
                    }
                }
                for _ in 0..asl_remote::prefetch::FETCHERS {
                    s.spawn(|| ahead.fetch());
                }
                let _stop = StopOnDrop(&ahead);
                run(&ahead)
            })?;
            (summary, Some(ahead.counts()))
        }
        Source::Local(_) => (run(&*reader)?, None),
    };
    let report = RestoreReport {
        summary: &summary,
        remote_reads,
    };
    // The top directory's own tree unreadable: nothing under it could be restored, and a
    // summary of "0 files" would read as an empty snapshot.
    let top_lost = summary
        .integrity_errors
        .iter()
        .find(|i| i.path.as_os_str().is_empty());
    out.emit(&report, || {
        if let Some(i) = top_lost {
            return format!(
                "nothing restored from snapshot {}{}: its tree is lost: {}\n",
                snap.id,
                if path.is_empty() { String::new() } else { format!(" path {path}") },
                i.message
            );
        }
        let mut t = format!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {} special, {} hardlinks, {} in {:.2} s\n",
            snap.id,
            target.display(),
            summary.files,
            summary.dirs,
            summary.symlinks,
            summary.specials,
            summary.hardlinks,
            human_bytes(summary.bytes_written),
            summary.seconds
        );
        for i in &summary.integrity_errors {
            t.push_str(&format!("DAMAGED {}: {}\n", i.path.display(), i.message));
        }
        for i in &summary.errors {
            t.push_str(&format!("error {}: {}\n", i.path.display(), i.message));
        }
        for i in &summary.not_taken_in {
            t.push_str(&format!("not in snapshot (intake error) {}: {}\n", i.path.display(), i.message));
        }
        t
    })?;
    if !summary.integrity_errors.is_empty() {
        return Ok(Code::Integrity.into());
    }
    if !summary.errors.is_empty() {
        return Ok(Code::Failure.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify --remote`: the server verifies its store; its report is printed as it came.
fn remote_verify(
    remote: &asl_remote::Remote,
    read_data: bool,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let raw = remote.verify(read_data).map_err(remote_error)?;
    // The server's report is the local one (damage named by snapshot:path there), so it is
    // printed the same way.
    let rep: asl_store::verify::VerifyReport = serde_json::from_value(raw).map_err(|e| {
        fail(
            Code::Failure,
            format!("the server's verify report is not one this client reads: {e}"),
        )
    })?;
    out.emit(&rep, || format!("the server {}", verify_text(&rep)))?;
    Ok(if rep.ok() {
        ExitCode::SUCCESS
    } else {
        Code::Integrity.into()
    })
}

/// Names every loss by `snapshot:path` (see [`asl_store::verify::name_damaged_paths`]),
/// walking trees with asl-fs.
fn name_damaged_paths(store: &Store, rep: &mut asl_store::verify::VerifyReport) {
    asl_store::verify::name_damaged_paths(store, rep, &|reader, root, wanted| {
        asl_fs::entries_using(reader, root, wanted)
            .into_iter()
            .map(|e| (e.path, e.content, e.directory))
            .collect()
    });
}

fn verify_text(rep: &asl_store::verify::VerifyReport) -> String {
    let mut t = format!(
        "checked {} log records, {} segments, {} index entries, {} blocks, {} snapshots{}\n",
        rep.log_records,
        rep.segments,
        rep.index_entries,
        rep.blocks,
        rep.snapshots,
        if rep.read_data {
            format!(", {} of data read", human_bytes(rep.bytes_read))
        } else {
            String::new()
        }
    );
    let u = &rep.unreferenced;
    if u.total.files > 0 {
        t.push_str(&format!(
            "warning: {} unreferenced by the log, left by an interrupted writer ({}); no snapshot reaches them, {}\n",
            tally_text(u.total),
            unreferenced_parts(u),
            if u.index_damaged {
                "but some may be the blocks of a damaged segment: run `asl-admin reindex`"
            } else {
                "`asl-admin gc` removes them"
            }
        ));
    }
    if let Some(torn) = &rep.torn_log_tail {
        t.push_str(&format!("note: the log ends in an incomplete record ({torn}) left by a crash; the next writer cuts it\n"));
    }
    for p in &rep.problems {
        t.push_str(&format!("DAMAGED {}: {}\n", p.object, p.reason));
        if !p.artifacts.is_empty() {
            let shown: Vec<_> = p.artifacts.iter().take(5).cloned().collect();
            t.push_str(&format!(
                "  artifacts: {}{}\n",
                shown.join(" "),
                if p.artifacts.len() > 5 {
                    format!(" (+{} more)", p.artifacts.len() - 5)
                } else {
                    String::new()
                }
            ));
        }
        if !p.snapshots.is_empty() {
            t.push_str(&format!("  snapshots: {:?}\n", p.snapshots));
        }
        for d in &p.paths {
            t.push_str(&format!(
                "  lost: {}:{} ({})\n",
                d.snapshot,
                d.path,
                if d.directory {
                    "directory listing: everything below it is out of reach"
                } else if d.whole {
                    "whole file"
                } else {
                    "part of the file: some of its chunks"
                }
            ));
        }
    }
    if rep.ok() {
        t.push_str("no problems found\n");
    } else {
        t.push_str(&format!("{} problem(s) found\n", rep.problems.len()));
    }
    t
}

fn stats(store: &Store, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let counts = store.counts();
    let storage = store.layout().storage();
    let mut block_bytes = 0u64;
    for b in store.blocks() {
        block_bytes += storage.len(&b.path(&store.layout().blocks())).unwrap_or(0);
    }
    let chunk_raw = counts.chunk_raw_bytes;
    let log_bytes = storage.len(&store.layout().log()).unwrap_or(0);
    let unreferenced = store.unreferenced().map_err(store_error)?;
    let v = serde_json::json!({
        "store": store.layout().root,
        "hash": store.config().hash,
        "domain_id": store.config().domain_id,
        "snapshots": counts.snapshots,
        "index_entries": counts.index_entries,
        "segments": counts.segments,
        "blocks": counts.blocks,
        "block_bytes": block_bytes,
        "chunk_bytes_uncompressed": chunk_raw,
        "log_records": counts.log_records,
        "log_bytes": log_bytes,
        "unreferenced": unreferenced,
    });
    out.emit(&v, || {
        format!(
            "store {} ({}, domain {})\n  snapshots {}\n  index entries {} in {} segments\n  blocks {} holding {} ({} before compression)\n  log {} records, {}\n  unreferenced {}\n",
            store.layout().root.display(),
            store.config().hash,
            store.config().domain_id,
            counts.snapshots,
            counts.index_entries,
            counts.segments,
            counts.blocks,
            human_bytes(block_bytes),
            human_bytes(chunk_raw),
            counts.log_records,
            human_bytes(log_bytes),
            if unreferenced.total.files == 0 {
                "none".to_string()
            } else {
                format!(
                    "{} ({}), left by an interrupted writer; {}",
                    tally_text(unreferenced.total),
                    unreferenced_parts(&unreferenced),
                    if unreferenced.index_damaged {
                        "a segment is damaged: run `asl-admin verify`, then `reindex`"
                    } else {
                        "`asl-admin gc` removes them"
                    }
                )
            }
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `3 files, 24.0 MiB`.
fn tally_text(t: asl_store::FileTally) -> String {
    format!(
        "{} file{}, {}",
        t.files,
        if t.files == 1 { "" } else { "s" },
        human_bytes(t.bytes)
    )
}

/// The kinds of unreferenced files present: `2 sealed blocks, 1 open block file`.
fn unreferenced_parts(u: &asl_store::Unreferenced) -> String {
    [
        (u.sealed_blocks, "sealed block"),
        (u.open_blocks, "open block file"),
        (u.open_segments, "open segment file"),
        (u.unsealed_segments, "unsealed segment"),
    ]
    .iter()
    .filter(|(t, _)| t.files > 0)
    .map(|(t, what)| format!("{} {what}{}", t.files, if t.files == 1 { "" } else { "s" }))
    .collect::<Vec<_>>()
    .join(", ")
}

/// A byte count that may be negative (a GC that wrote more than it deleted).
fn signed_bytes(n: i64) -> String {
    if n < 0 {
        format!("-{}", human_bytes(n.unsigned_abs()))
    } else {
        human_bytes(n.unsigned_abs())
    }
}
