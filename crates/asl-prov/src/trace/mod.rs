//! Observing the file accesses of a command's process tree.
//!
//! Two mechanisms, chosen by [`TraceMode`]:
//! * **ptrace + seccomp** ([`ptrace`]): works unprivileged. A seccomp filter makes only the
//!   file-related syscalls stop (open*, exec*, stat*, access*, readlink*, unlink*, rename*,
//!   mkdir*, link*, symlink*), so the rest of the command runs at full speed. Sees failed
//!   lookups (probes of absent files), every process and its exit.
//! * **fanotify** ([`fanotify`]): needs CAP_SYS_ADMIN. The command runs in a private copy of
//!   the mount tree and only those copies are marked, so the events are exactly the command's
//!   own. Cheap, but sees only opens, reads, writes and execs — no probes, no deletes or
//!   renames (mount marks carry no directory-entry events).
//!
//! With `none` the command runs unobserved. Each mechanism sets up its own child
//! between fork and exec (through `crate::child`, which knows nothing of them) and waits for
//! it; [`RunSpec`] says what to run and [`RunOutcome`] is what every mechanism returns.

pub mod fanotify;
pub(crate) mod none;
pub mod ptrace;
mod quiet;

pub use quiet::{ObserverPolicy, POLICY_VAR};

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which mechanism observes the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// fanotify when running with CAP_SYS_ADMIN, else ptrace, else none.
    Auto,
    Fanotify,
    Ptrace,
    None,
}

impl TraceMode {
    pub fn name(self) -> &'static str {
        match self {
            TraceMode::Auto => "auto",
            TraceMode::Fanotify => "fanotify",
            TraceMode::Ptrace => "ptrace",
            TraceMode::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<TraceMode> {
        Some(match s {
            "auto" => TraceMode::Auto,
            "fanotify" => TraceMode::Fanotify,
            "ptrace" => TraceMode::Ptrace,
            "none" => TraceMode::None,
            _ => return None,
        })
    }

    /// What the mechanism cannot see, recorded in every receipt it produced.
    pub fn blind_spots(self) -> Vec<String> {
        let v: &[&str] = match self {
            TraceMode::Fanotify => &[
                "no stat/access probes and no lookups of absent files",
                "no deletes, renames or directory creation (mount marks carry no directory-entry events)",
                "accesses through file systems that are not mounted in the command's namespace at start (e.g. mounted later) are not seen",
                "process tree: only the top process (pids of children are not attributed)",
            ],
            TraceMode::Ptrace => &[
                "only syscalls of the native ABI (x86_64); 32-bit int 0x80 calls are not decoded",
                "io_uring file operations and access through already open descriptors passed in are not seen",
                "paths are recorded as requested (symlinks not resolved); '..' is resolved lexically",
            ],
            TraceMode::None | TraceMode::Auto => {
                &["nothing observed: only declared inputs and outputs are known"]
            }
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// What to run.
pub struct RunSpec<'a> {
    /// The resolved program (absolute path).
    pub program: &'a Path,
    /// argv, `argv[0]` included.
    pub argv: &'a [String],
    pub cwd: &'a Path,
    /// Where the command's stdout and stderr go.
    pub stdout: &'a std::fs::File,
    pub stderr: &'a std::fs::File,
    /// How a fanotify observer keeps out of the command's way.
    pub observer: ObserverPolicy,
}

/// What came out of a run.
pub struct RunOutcome {
    /// Raw wait status of the top process.
    pub status: i32,
    /// Resource usage of the top process and every descendant it waited for.
    pub rusage: libc::rusage,
    /// The mechanism that actually observed the run.
    pub mode: TraceMode,
    pub processes: Vec<ProcessRecord>,
    pub accesses: Vec<Access>,
    /// Things the mechanism could not see in this run (queue overflow, exited processes ...).
    pub gaps: Vec<String>,
}

/// One observed access.
///
/// Fields are declared in their canonical (sorted) key order, so the canonical encoder writes
/// the many accesses of a file-heavy command without rearranging any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `read`, `write`, `create`, `delete`, `rename`, `exec`, `stat`, `probe_absent`, `open_dir`.
    /// Borrowed from the observers' own constants: a file-heavy command yields an access per
    /// file it touches, and this spares an allocation each.
    pub op: std::borrow::Cow<'static, str>,
    /// Absolute path, lexically normalised.
    pub path: String,
    pub pid: i32,
    /// The new name of a rename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One process of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// The last program the process executed, if seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub pid: i32,
    pub ppid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl ProcessRecord {
    pub(crate) fn top(pid: i32, argv: &[String], program: &Path, status: i32) -> ProcessRecord {
        let (exit_code, signal) = split_status(status);
        ProcessRecord {
            pid,
            ppid: std::process::id() as i32,
            exe: Some(program.to_string_lossy().into_owned()),
            argv: argv.to_vec(),
            exit_code,
            signal,
        }
    }
}

/// Exit code or terminating signal of a raw wait status.
pub fn split_status(status: i32) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}

/// Makes `p` absolute against `base` and resolves `.` and `..` lexically.
pub fn normalize(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Pseudo file systems whose accesses are not inputs or outputs.
pub fn is_pseudo(path: &str) -> bool {
    ["/proc", "/sys", "/dev"].iter().any(|p| under(path, p))
}

/// `path` is `prefix` or lies below it.
pub fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dot_dot_and_relative_paths() {
        assert_eq!(
            normalize(Path::new("/a/b"), Path::new("../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(
            normalize(Path::new("/x"), Path::new("/usr/lib/../include/s.h")),
            PathBuf::from("/usr/include/s.h")
        );
    }

    #[test]
    fn under_matches_whole_components_only() {
        assert!(under("/src/a.c", "/src"));
        assert!(under("/src", "/src/"));
        assert!(!under("/srcx/a.c", "/src"));
    }
}
