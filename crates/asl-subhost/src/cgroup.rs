//! cgroup v2: one cgroup per subhost at `<cgroup2 mount>/asl-subhost/NAME`, for accounting
//! (memory in `overlay-list`, every process found at stop) and optional limits (MEMORY_MAX,
//! CPU_MAX, PIDS_MAX written to memory.max, cpu.max, pids.max).
//!
//! Hosts with the hybrid layout (v1 controllers plus a v2 tree at /sys/fs/cgroup/unified) get
//! accounting only: asking for a limit whose controller is not available in v2 is an error that
//! says so, rather than a limit silently not applied.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::config::Limits;
use crate::error::{Error, Result, sys};

pub const PARENT: &str = "asl-subhost";

/// Mount point of the cgroup v2 hierarchy, if any.
pub fn v2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.lines() {
        // Fields: ... mount point (5th) ... " - " fstype source options
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mp = pre.split_whitespace().nth(4)?;
        let mp = PathBuf::from(mp.replace("\\040", " "));
        // Prefer the canonical location when several exist.
        if mp == Path::new("/sys/fs/cgroup") {
            return Some(mp);
        }
        found.get_or_insert(mp);
    }
    found
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(sys(format!("write `{value}` to {}", path.display())))
}

/// Creates the subhost's cgroup and applies the limits. None when the host has no cgroup v2 and
/// no limit is asked for.
pub fn create(name: &str, limits: &Limits) -> Result<Option<PathBuf>> {
    let Some(root) = v2_root() else {
        if limits.any() {
            return Err(Error::Other(
                "MEMORY_MAX/CPU_MAX/PIDS_MAX need a cgroup v2 hierarchy, and none is mounted"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let parent = root.join(PARENT);
    if !parent.is_dir() {
        std::fs::create_dir(&parent)
            .or_else(|e| if parent.is_dir() { Ok(()) } else { Err(e) })
            .map_err(sys(format!("create cgroup {}", parent.display())))?;
    }
    let wanted: Vec<(&str, &str, &String)> = [
        ("memory", "memory.max", &limits.memory_max),
        ("cpu", "cpu.max", &limits.cpu_max),
        ("pids", "pids.max", &limits.pids_max),
    ]
    .into_iter()
    .filter_map(|(c, f, v)| v.as_ref().map(|v| (c, f, v)))
    .collect();
    if !wanted.is_empty() {
        let available =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        for (ctl, _, _) in &wanted {
            if !available.split_whitespace().any(|a| a == *ctl) {
                return Err(Error::Other(format!(
                    "the cgroup v2 controller `{ctl}` is not available on this host ({} lists \
                     `{}`); on a hybrid cgroup layout it belongs to cgroup v1. Remove the limit \
                     or boot the host with the unified cgroup hierarchy",
                    root.join("cgroup.controllers").display(),
                    available.trim()
                )));
            }
            write(&root.join("cgroup.subtree_control"), &format!("+{ctl}"))?;
            write(&parent.join("cgroup.subtree_control"), &format!("+{ctl}"))?;
        }
    }
    let dir = parent.join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left over by a subhost that died without cleanup: reuse it only if it is empty.
            if !procs(&dir).is_empty() {
                return Err(Error::Other(format!(
                    "cgroup {} already has processes; is subhost {name} running outside \
                     overlay-boot's control?",
                    dir.display()
                )));
            }
        }
        Err(e) => {
            return Err(Error::Sys {
                what: format!("create cgroup {}", dir.display()),
                source: e,
            });
        }
    }
    for (_, file, value) in wanted {
        if let Err(e) = write(&dir.join(file), value) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
    }
    Ok(Some(dir))
}

/// PIDs (host view) in the cgroup.
pub fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Memory used by the subhost in bytes: memory.current when the memory controller is on, else
/// the resident set sizes of its processes added up (an approximation: shared pages count twice).
pub fn memory(dir: &Path) -> Option<u64> {
    if let Ok(v) = std::fs::read_to_string(dir.join("memory.current"))
        && let Ok(n) = v.trim().parse()
    {
        return Some(n);
    }
    let page = rustix::param::page_size().max(4096) as u64;
    let pids = procs(dir);
    if pids.is_empty() {
        return None;
    }
    Some(
        pids.iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/statm")).ok())
            .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>()
            * page,
    )
}

/// Removes the cgroup, killing what is left in it first. A missing cgroup is not an error.
pub fn remove(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut killed = false;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Sys {
                    what: format!("remove cgroup {}", dir.display()),
                    source: e,
                });
            }
            Err(_) => {
                // A just emptied cgroup needs a moment; processes entered with overlay-go may
                // still be there. Kill those rather than leave the cgroup behind.
                if !killed {
                    for pid in procs(dir).into_iter().filter_map(Pid::from_raw) {
                        let _ = kill_process(pid, Signal::KILL);
                    }
                    killed = true;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
