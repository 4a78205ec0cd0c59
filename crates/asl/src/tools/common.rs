//! What the store tools share: where the store is (`--store`), how results are printed
//! (`--json`, `-q`, `-v`), how store errors map to exit codes, opening a store, naming paths
//! inside snapshots, and printing sizes. Every tool module imports these from here rather than
//! from another tool's module.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use asl_store::{Reference, Store, StoreError, TypeTag, Writer};
use clap::Args;

use crate::exit::{Code, fail};
use crate::{out, outln};

/// `--store`, shared by every store tool.
#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// The store directory [default: $ASL_STORE, else /var/lib/asl/store as root, else
    /// $XDG_DATA_HOME/asl/store].
    #[arg(long, value_name = "DIR", global = true)]
    pub store: Option<PathBuf>,
}

impl StoreArg {
    /// The store directory, and whether it was chosen by default (not named by the user).
    pub fn resolve(&self) -> (PathBuf, bool) {
        if let Some(s) = &self.store {
            return (s.clone(), false);
        }
        if let Some(s) = std::env::var_os("ASL_STORE").filter(|s| !s.is_empty()) {
            return (PathBuf::from(s), false);
        }
        (default_store(), true)
    }
}

/// The default store location (DESIGN §9).
pub fn default_store() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/asl/store");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("asl/store")
}

/// `--json`, `-q`, `-v`.
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

impl OutputArgs {
    /// Prints `value` as JSON, or the text from `text` unless quiet. A failed write to
    /// stdout is returned, for the tool to pass on with `?` (crate::output).
    pub fn emit<T: serde::Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> std::io::Result<()> {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => outln!("{s}")?,
                Err(e) => eprintln!("cannot encode JSON output: {e}"),
            }
        } else if !self.quiet {
            let t = text();
            if !t.is_empty() {
                out!("{t}")?;
                if !t.ends_with('\n') {
                    outln!()?;
                }
            }
        }
        Ok(())
    }

    /// Whether to draw progress on stderr.
    pub fn progress(&self) -> bool {
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }
}

/// `--store` and the output flags together: the arguments of a store tool whose work is in
/// its subcommands (`asl-admin`, `asl-debug`).
#[derive(Args, Debug, Clone)]
pub struct StoreToolArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Converts a store error into one with the right exit code.
pub fn store_error(e: StoreError) -> anyhow::Error {
    let code = if e.is_integrity() {
        Code::Integrity
    } else {
        Code::Failure
    };
    fail(code, e.to_string())
}

/// Opens a store read-only.
pub fn open_store(arg: &StoreArg) -> anyhow::Result<Store> {
    let (dir, _) = arg.resolve();
    Store::open(&dir).map_err(store_error)
}

/// Opens a store for writing.
pub fn open_writer(arg: &StoreArg) -> anyhow::Result<Writer> {
    let (dir, _) = arg.resolve();
    Writer::open(&dir).map_err(store_error)
}

/// The children of typed artifacts, for GC and verify ([`asl_prov::artifact_children`]).
pub fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    asl_prov::artifact_children(tag, bytes)
}

/// Formats a byte count for people, in binary units with one decimal: `0 B`, `1023 B`,
/// `1.5 KiB`, `5.0 MiB`. Every tool prints sizes through this one function, so the same
/// count reads the same in every tool's output.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
/// Parses `S` or `S:PATH`; the path part is split at the first colon.
pub fn split_snapshot_path(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) => (s, Some(p)),
        None => (spec, None),
    }
}

/// Makes sure the path is inside the tree: refuses `..` components with a usage error.
pub fn check_inner_path(p: &str) -> anyhow::Result<()> {
    if p.split('/').any(|c| c == "..") {
        return Err(fail(
            Code::Usage,
            format!("path '{p}' contains '..'; paths inside a snapshot cannot leave it"),
        ));
    }
    Ok(())
}

/// Context for resolving a snapshot name.
pub fn resolve<'s>(store: &'s Store, name: &str) -> anyhow::Result<&'s asl_store::Snapshot> {
    store
        .resolve_snapshot(name)
        .map_err(store_error)
        .with_context(|| format!("in store {}", store.layout().root.display()))
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, store_error};
    use crate::exit::{Code, Failure};

    fn code_of(e: asl_store::StoreError) -> Code {
        let err = store_error(e);
        err.downcast_ref::<Failure>().map(|f| f.code).unwrap()
    }

    #[test]
    fn a_bug_exits_1_and_only_damage_exits_3() {
        let bug = asl_store::StoreError::Internal {
            what: "open block".into(),
            reason: "the sealing thread panicked".into(),
        };
        assert!(
            bug.to_string().contains("a bug in asl, not damage"),
            "{bug}"
        );
        assert_eq!(code_of(bug), Code::Failure);
        let damage = asl_store::StoreError::Corrupt {
            object: "block 71e8".into(),
            reason: "the block file is missing".into(),
        };
        assert_eq!(code_of(damage), Code::Integrity);
    }

    #[test]
    fn human_bytes_prints_the_sizes_the_tools_always_printed() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_bytes(3 * (1 << 30) + (1 << 29)), "3.5 GiB");
        assert_eq!(human_bytes((1 << 50) - 1), "1024.0 TiB");
        assert_eq!(human_bytes(1 << 50), "1.0 PiB");
    }
}
