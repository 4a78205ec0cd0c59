//! `asl-usroverlay`: transient, hotfix and read-only overlays over a read-only tree such as
//! /usr. All logic lives in `asl_usroverlay`; this module parses arguments and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use asl_usroverlay::{
    ApplyRequest, BootOutcome, Diff, Mode, OverlayRecord, OverlayStatus, Overlays, State,
    StateDirs, rfc3339, unit,
};
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};

use super::Tool;
use super::common::human_bytes;
use crate::exit::{Code, fail};
use crate::{out, outln};

pub const TOOLS: &[Tool] = &[Tool {
    name: "asl-usroverlay",
    command: UsrOverlay::command,
    run,
}];

/// Environment variable standing in for `--state-root`.
const STATE_ROOT_ENV: &str = "ASL_USROVERLAY_STATE_ROOT";

#[derive(Parser, Debug)]
#[command(
    about = "Put a transient, hotfix or read-only overlay over a read-only /usr",
    long_about = "Make a read-only tree (default /usr) writable without touching it: an overlayfs \
is mounted over it whose lower layer is the real tree (opened by descriptor before the overlay \
covers it) and whose upper layer collects every change.\n\n\
Modes:\n  \
transient  upper on a tmpfs under /run/asl/usroverlay; gone at reboot (default)\n  \
hotfix     upper under /var/lib/asl/usroverlay; `apply --boot` mounts it again after a reboot\n             \
(`install-unit` installs a systemd unit that does that)\n  \
read-only  like transient, but mounted read-only: writes fail with EROFS\n\n\
`status` lists every overlay with its path, mode, state (active, or stale when the mount is \
gone) and upper-layer size; `status --diff` lists what each one added, changed, deleted and \
which directories it made opaque. `reset` throws the changes away and leaves a clean overlay; \
`remove` unmounts it and deletes its state.\n\n\
The overlay covers only that tree: package-manager state such as /var/lib/dpkg is outside it, \
so packages installed into an overlay stay recorded as installed after it is gone.",
    after_help = "Examples:\n  \
asl-usroverlay apply                          writable /usr until reboot\n  \
asl-usroverlay apply --mode hotfix --name fix persistent /usr changes\n  \
asl-usroverlay status --diff                  what changed\n  \
asl-usroverlay reset usr                      discard changes, keep the overlay\n  \
asl-usroverlay remove usr                     back to the original /usr\n  \
asl-usroverlay install-unit                   re-apply hotfix overlays at every boot\n\n\
Exit codes: 0 ok, 1 failure (not root, busy, already covered, mount failed), 2 usage \
(bad path, unknown name).\n\
Files: /run/asl/usroverlay/NAME/{overlay.json,upper,work} on the overlay's own tmpfs, visible \
only in the mount namespace it was applied in (transient, read-only), \
/var/lib/asl/usroverlay/NAME/{overlay.json,upper,work} (hotfix)."
)]
struct UsrOverlay {
    /// Keep state below DIR (DIR/run/asl/usroverlay, DIR/var/lib/asl/usroverlay) instead of /.
    /// Default: $ASL_USROVERLAY_STATE_ROOT, else /.
    #[arg(long, value_name = "DIR", global = true)]
    state_root: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Mount an overlay over PATH (or, with --boot, re-apply every hotfix overlay).
    Apply(ApplyArgs),
    /// List overlays: path, mode, state, since, upper-layer size (and changes with --diff).
    Status(StatusArgs),
    /// Discard every change of overlay NAME and mount it again, empty, in the same mode.
    Reset(NameArgs),
    /// Unmount overlay NAME (if mounted) and delete its state, changes included.
    Remove(NameArgs),
    /// Install (or remove) the systemd unit that runs `apply --boot` early at boot.
    InstallUnit(UnitArgs),
}

#[derive(Args, Debug)]
struct ApplyArgs {
    /// The directory to cover.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr",
        conflicts_with = "boot"
    )]
    path: PathBuf,
    /// transient (upper on tmpfs, gone at reboot), hotfix (persistent, re-applied at boot) or
    /// read-only (writes fail with EROFS).
    #[arg(long, value_name = "MODE", default_value = "transient", value_parser = parse_mode, conflicts_with = "boot")]
    mode: Mode,
    /// Name of the overlay (letters, digits, '-', '_', '.'). Default: from the path
    /// (/usr -> usr, /usr/local -> usr-local).
    #[arg(long, value_name = "NAME", conflicts_with = "boot")]
    name: Option<String>,
    /// Size limit of the tmpfs holding a transient/read-only upper layer (tmpfs size=, e.g.
    /// 2G or 25%). Default: the kernel's, half of RAM.
    #[arg(long, value_name = "SIZE", conflicts_with = "boot")]
    size: Option<String>,
    /// Boot mode: mount every recorded hotfix overlay that is not mounted, and clean state of
    /// transient overlays left from before the reboot. Exits 1 if any overlay failed.
    #[arg(long)]
    boot: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Also list each overlay's changes: added (A), changed (M), deleted (D, whiteouts) and
    /// opaque directories (O). Needs root.
    #[arg(long)]
    diff: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Show only these overlays.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct NameArgs {
    /// The overlay's name (`status` lists them).
    name: String,
    /// If files in the tree are in use, unmount lazily instead of failing (the failure names
    /// the processes): they keep what they have open, everything opened afterwards sees the
    /// result. The tool's own use of the tree (ld.so and libc on a merged /usr) never needs
    /// it: it continues from a private copy of itself.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct UnitArgs {
    /// systemd unit directory.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
    /// The binary the unit runs. Default: this one.
    #[arg(long, value_name = "PATH")]
    exe: Option<PathBuf>,
    /// Print the unit on stdout and change nothing.
    #[arg(long, conflicts_with = "uninstall")]
    print: bool,
    /// Remove the unit and its enable link instead.
    #[arg(long)]
    uninstall: bool,
}

/// Library errors keep their words; bad input maps to exit code 2.
fn lib_err(e: asl_usroverlay::Error) -> anyhow::Error {
    let code = if e.is_usage() {
        Code::Usage
    } else {
        Code::Failure
    };
    fail(code, e.to_string())
}

fn run(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: UsrOverlay = super::args(m)?;
    let state_root = a
        .state_root
        .clone()
        .or_else(|| std::env::var_os(STATE_ROOT_ENV).map(PathBuf::from));
    let dirs = match &state_root {
        Some(root) => StateDirs::under(root),
        None => StateDirs::system(),
    };
    let overlays = Overlays::new(dirs);
    match a.cmd {
        Cmd::Apply(args) if args.boot => boot(&overlays, args.json),
        Cmd::Apply(args) => apply(&overlays, args),
        Cmd::Status(args) => status(&overlays, args),
        Cmd::Reset(args) => reset(&overlays, args),
        Cmd::Remove(args) => remove(&overlays, args),
        Cmd::InstallUnit(args) => install_unit(&overlays, state_root.as_deref(), args),
    }
}

fn record_json(r: &OverlayRecord) -> Value {
    json!({
        "name": r.name,
        "path": r.path.to_string_lossy(),
        "mode": r.mode,
        // The two axes as bootc reports them, for tools that know those names.
        "access_mode": if r.mode.is_writable() { "read-write" } else { "read-only" },
        "persistence": if r.mode.is_persistent() { "persistent" } else { "transient" },
        "since": rfc3339(r.since),
        "since_unix": r.since,
        "layer": r.layer.to_string_lossy(),
        "upper": r.upper().to_string_lossy(),
    })
}

fn apply(ov: &Overlays, a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let applied = ov
        .apply(&ApplyRequest {
            path: a.path,
            mode: a.mode,
            name: a.name,
            tmpfs_size: a.size,
        })
        .map_err(lib_err)?;
    for w in &applied.warnings {
        eprintln!("asl-usroverlay: warning: {w}");
    }
    let r = &applied.record;
    if a.json {
        let mut v = record_json(r);
        v["warnings"] = json!(applied.warnings);
        outln!("{v:#}")?;
    } else {
        outln!(
            "applied {} overlay '{}' on {} (changes go to {})",
            r.mode,
            r.name,
            r.path.display(),
            r.upper().display()
        )?;
        match r.mode {
            Mode::Transient => outln!(
                "changes are discarded at reboot, or now with `asl-usroverlay reset {}`",
                r.name
            )?,
            Mode::ReadOnly => outln!("the overlay is read-only: writes fail with EROFS")?,
            Mode::Hotfix => outln!(
                "changes persist; after a reboot `asl-usroverlay apply --boot` mounts them again (`asl-usroverlay install-unit` runs it at every boot)"
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn boot(ov: &Overlays, json: bool) -> anyhow::Result<ExitCode> {
    let outcomes = ov.apply_boot().map_err(lib_err)?;
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, BootOutcome::Failed { .. }))
        .count();
    if json {
        let list = serde_json::to_value(&outcomes).context("cannot encode the outcomes")?;
        outln!("{:#}", json!({ "outcomes": list }))?;
    } else {
        if outcomes.is_empty() {
            outln!("no overlays recorded")?;
        }
        for o in &outcomes {
            match o {
                BootOutcome::Reapplied { name, path } => {
                    outln!("re-applied hotfix overlay '{name}' on {}", path.display())?
                }
                BootOutcome::AlreadyActive { name, path } => {
                    outln!("'{name}' on {} is already mounted", path.display())?
                }
                BootOutcome::CleanedStale { name, path } => outln!(
                    "cleaned state of '{name}' ({}), left over from before the reboot",
                    path.display()
                )?,
                BootOutcome::Failed { name, path, error } => eprintln!(
                    "asl-usroverlay: error: cannot re-apply '{name}' on {}: {error}",
                    path.display()
                ),
            }
        }
    }
    Ok(if failed > 0 {
        Code::Failure.into()
    } else {
        ExitCode::SUCCESS
    })
}

/// Paths as JSON strings; a name that is not UTF-8 is shown lossily rather than failing the
/// whole listing.
fn lossy(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn diff_json(d: &Diff) -> Value {
    json!({
        "added": lossy(&d.added),
        "changed": lossy(&d.changed),
        "deleted": lossy(&d.deleted),
        "opaque": lossy(&d.opaque),
    })
}

fn usage_text(s: &OverlayStatus) -> String {
    match s.usage {
        Some(u) => format!("{} in {} entries", human_bytes(u.bytes), u.entries),
        None => "unreadable (not root)".to_string(),
    }
}

fn status(ov: &Overlays, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut all = ov.status().map_err(lib_err)?;
    if !a.names.is_empty() {
        for n in &a.names {
            if !all.iter().any(|s| &s.record.name == n) {
                return Err(lib_err(asl_usroverlay::Error::UnknownName {
                    name: n.clone(),
                    known: all.iter().map(|s| s.record.name.clone()).collect(),
                }));
            }
        }
        all.retain(|s| a.names.contains(&s.record.name));
    }
    let mut diffs = Vec::new();
    if a.diff {
        for s in &all {
            diffs.push(ov.diff(&s.record.name).map_err(lib_err)?);
        }
    }
    if a.json {
        let list: Vec<Value> = all
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut v = record_json(&s.record);
                v["state"] = json!(s.state);
                v["upper_bytes"] = json!(s.usage.map(|u| u.bytes));
                v["upper_entries"] = json!(s.usage.map(|u| u.entries));
                if let Some(d) = diffs.get(i) {
                    v["diff"] = diff_json(d);
                }
                v
            })
            .collect();
        outln!(
            "{:#}",
            json!({ "format": asl_usroverlay::RECORD_FORMAT, "overlays": list })
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        outln!("no overlays")?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|s| {
            [
                s.record.name.clone(),
                s.record.path.display().to_string(),
                s.record.mode.to_string(),
                s.state.as_str().to_string(),
                rfc3339(s.record.since),
                usage_text(s),
            ]
        })
        .collect();
    let header = ["NAME", "PATH", "MODE", "STATE", "SINCE", "UPPER"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s
    };
    outln!("{}", line(&header))?;
    for (i, r) in rows.iter().enumerate() {
        outln!("{}", line(&r.each_ref().map(String::as_str)))?;
        if let Some(d) = diffs.get(i) {
            for (tag, list) in [
                ("A", &d.added),
                ("M", &d.changed),
                ("D", &d.deleted),
                ("O", &d.opaque),
            ] {
                for p in list {
                    outln!("  {tag} {}", p.display())?;
                }
            }
            if d.is_empty() {
                outln!("  (no changes)")?;
            }
        }
    }
    for s in all.iter().filter(|s| s.state == State::Stale) {
        let name = &s.record.name;
        if s.record.mode == Mode::Hotfix {
            outln!(
                "'{name}' is stale: its mount is gone; `asl-usroverlay apply --boot` mounts it again, `asl-usroverlay remove {name}` deletes it"
            )?;
        } else {
            outln!(
                "'{name}' is stale: its mount is gone; `asl-usroverlay remove {name}` cleans up its state"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Before a strict unmount: the tool must not be what keeps the overlay busy (on a merged
/// /usr it maps ld.so and libc through it), so it continues from a private copy of itself.
fn relaunch_unless_forced(ov: &Overlays, a: &NameArgs) -> anyhow::Result<()> {
    if !a.force {
        ov.relaunch_outside(&a.name).map_err(lib_err)?;
    }
    Ok(())
}

fn reset(ov: &Overlays, a: NameArgs) -> anyhow::Result<ExitCode> {
    relaunch_unless_forced(ov, &a)?;
    let r = ov.reset(&a.name, a.force).map_err(lib_err)?;
    if a.json {
        outln!("{:#}", record_json(&r))?;
    } else {
        outln!(
            "reset overlay '{}' on {}: changes discarded, a clean {} overlay is mounted",
            r.name,
            r.path.display(),
            r.mode
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(ov: &Overlays, a: NameArgs) -> anyhow::Result<ExitCode> {
    relaunch_unless_forced(ov, &a)?;
    let removed = ov.remove(&a.name, a.force).map_err(lib_err)?;
    let r = &removed.record;
    if a.json {
        let mut v = record_json(r);
        v["was_active"] = json!(removed.was_active);
        outln!("{v:#}")?;
    } else if removed.was_active {
        outln!(
            "removed overlay '{}': {} shows the original tree again; its state is deleted",
            r.name,
            r.path.display()
        )?;
    } else {
        outln!(
            "removed the stale entry '{}' ({})",
            r.name,
            r.path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn install_unit(ov: &Overlays, state_root: Option<&Path>, a: UnitArgs) -> anyhow::Result<ExitCode> {
    if a.uninstall {
        let gone = unit::uninstall(&a.unit_dir).map_err(lib_err)?;
        outln!(
            "removed {} and {}",
            gone.unit.display(),
            gone.enabled_link.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let exe = match a.exe {
        Some(e) => e,
        None => std::env::current_exe().context("cannot find the running binary")?,
    };
    let text = unit::render(&exe, state_root, &ov.dirs().persistent);
    if a.print {
        out!("{text}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let inst = unit::install(&a.unit_dir, &text).map_err(lib_err)?;
    outln!(
        "installed {} (enabled: {}); run `systemctl daemon-reload` on a running system",
        inst.unit.display(),
        inst.enabled_link.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
