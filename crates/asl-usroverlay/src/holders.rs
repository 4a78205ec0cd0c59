//! Who keeps a mount busy: the processes whose working directory, root, program, open files or
//! memory mappings lie on it — what `fuser -vm` shows. References are matched by *mount ID*
//! (`statx(STATX_MNT_ID)` of what `/proc/PID/...` points to), so a file of the same file
//! system reached through another mount (the tree underneath an overlay, a bind mount) does
//! not count, and neither does a copy of the mount in another mount namespace.
//!
//! The scan is a snapshot: it explains a refusal, it does not decide one. Whether a mount is
//! busy is decided atomically by the kernel when it is unmounted.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode as FsMode, OFlags, StatxFlags};
use serde::Serialize;

/// A process using files on a mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm`: the command name.
    pub command: String,
    /// What it holds: `cwd PATH`, `root PATH`, `exe PATH`, `fd N PATH`, `mmap PATH`.
    pub uses: Vec<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 3;
        write!(f, "pid {} ({}", self.pid, self.command)?;
        if self.pid == std::process::id() {
            f.write_str(", this process")?;
        }
        if !self.uses.is_empty() {
            write!(
                f,
                ": {}",
                self.uses[..self.uses.len().min(SHOWN)].join(", ")
            )?;
            if self.uses.len() > SHOWN {
                write!(f, " and {} more", self.uses.len() - SHOWN)?;
            }
        }
        f.write_str(")")
    }
}

/// The mount ID of whatever `path` leads to; magic links such as `/proc/PID/cwd` are followed
/// to the exact mount the process holds. `None` when it cannot be opened (the process ended,
/// a pseudo file the kernel does not let us open).
pub fn mount_id_of(path: &Path) -> Option<u64> {
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, FsMode::empty()).ok()?;
    mount_id_of_fd(fd.as_fd())
}

pub(crate) fn mount_id_of_fd(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    let st = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).ok()?;
    (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id)
}

fn link_text(p: &Path) -> String {
    fs::read_link(p)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// What process `pid` holds on mount `mount_id`.
fn uses_of(pid: u32, mount_id: u64) -> Vec<String> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let mut uses = Vec::new();
    for what in ["cwd", "root", "exe"] {
        let p = base.join(what);
        if mount_id_of(&p) == Some(mount_id) {
            uses.push(format!("{what} {}", link_text(&p)));
        }
    }
    let mut fds: Vec<(u64, PathBuf)> = sorted_entries(&base.join("fd"))
        .into_iter()
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    fds.sort();
    for (n, p) in fds {
        if mount_id_of(&p) == Some(mount_id) {
            uses.push(format!("fd {n} {}", link_text(&p)));
        }
    }
    // One line per mapped file, not per mapping (a library has four or five), and not the
    // program again, which is already listed as `exe`.
    let mut mapped: Vec<String> = uses
        .iter()
        .filter_map(|u| u.strip_prefix("exe "))
        .map(str::to_string)
        .collect();
    let already = mapped.len();
    for p in sorted_entries(&base.join("map_files")) {
        let target = link_text(&p);
        if !mapped.contains(&target) && mount_id_of(&p) == Some(mount_id) {
            mapped.push(target);
        }
    }
    uses.extend(
        mapped
            .into_iter()
            .skip(already)
            .map(|t| format!("mmap {t}")),
    );
    uses
}

/// Every process that holds something on mount `mount_id`, by pid. Processes that end during
/// the scan, or whose entries cannot be read, are skipped.
pub fn holders_of(mount_id: u64) -> Vec<Holder> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| {
            let uses = uses_of(pid, mount_id);
            if uses.is_empty() {
                return None;
            }
            let command = fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_else(|_| "?".to_string());
            Some(Holder { pid, command, uses })
        })
        .collect()
}
