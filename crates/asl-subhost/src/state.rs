//! Runtime state of running subhosts under `/run/subhost/` (gone at reboot, like the subhosts):
//! `NAME.json` (written atomically once the subhost is ready) and `NAME.lock` (held by whoever is
//! booting or stopping NAME). This replaces overlay-boot's `pgrep` guesswork.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cable::CableNames;
use crate::config::Hardening;
use crate::error::{Error, Result, sys};
use crate::process::ProcId;

/// Where state lives.
pub const RUN_DIR: &str = "/run/subhost";
/// The state file format this build writes and reads.
pub const FORMAT: u32 = 1;

/// What a running subhost consists of: everything stop and cleanup must find.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub name: String,
    pub conf: PathBuf,
    pub base: PathBuf,
    pub live: PathBuf,
    pub log: PathBuf,
    /// The host-side process that waits for PID 1 and cleans up after it.
    pub supervisor: ProcId,
    /// The subhost's PID 1, as seen from the host.
    pub init: ProcId,
    /// `/run/netns/NAME`.
    pub netns: PathBuf,
    /// Whether boot created the netns (a pre-existing one is left alone at stop).
    pub netns_created: bool,
    /// Host-side links boot created (veth host ends, VLANs), in creation order.
    pub links: Vec<String>,
    pub cables: Vec<CableNames>,
    pub cgroup: Option<PathBuf>,
    /// UNIX time in milliseconds when the subhost became ready.
    pub ready_ms: u64,
    pub start: Vec<String>,
    /// SERVICE_TIMEOUT in seconds (bounds how long a graceful stop may take).
    pub service_timeout_s: u64,
    pub hardening: Hardening,
}

pub fn state_path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{name}.json"))
}

fn lock_path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{name}.lock"))
}

pub fn ensure_run_dir() -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(RUN_DIR)
        .map_err(sys(format!("create {RUN_DIR}")))
}

impl State {
    /// Reads NAME's state; None if there is none.
    pub fn read(name: &str) -> Result<Option<State>> {
        let p = state_path(name);
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Sys {
                    what: format!("read {}", p.display()),
                    source: e,
                });
            }
        };
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe = serde_json::from_slice(&text)
            .map_err(|e| Error::Other(format!("state file {} is damaged: {e}", p.display())))?;
        if probe.format != FORMAT {
            return Err(Error::Other(format!(
                "state file {} has format {} but this overlay-boot understands {FORMAT}; use the \
                 version that booted the subhost",
                p.display(),
                probe.format
            )));
        }
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Other(format!("state file {} is damaged: {e}", p.display())))
    }

    /// Writes the state atomically (temporary file, then rename).
    pub fn write(&self) -> Result<()> {
        let p = state_path(&self.name);
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Other(format!("encode state: {e}")))?;
        std::fs::write(&tmp, text).map_err(sys(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &p).map_err(sys(format!("rename {}", p.display())))
    }

    pub fn remove(name: &str) -> Result<()> {
        match std::fs::remove_file(state_path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Sys {
                what: format!("remove state of {name}"),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Names of all subhosts with a state file.
    pub fn names() -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(RUN_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".json").map(String::from)
            })
            .collect();
        v.sort();
        v
    }
}

/// An exclusive lock on one subhost name. Dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes NAME's lock; with `wait` false a held lock is `Error::Busy`.
    pub fn take(name: &str, wait: bool) -> Result<Lock> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        ensure_run_dir()?;
        let path = lock_path(name);
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .map_err(sys(format!("open {}", path.display())))?;
            let locked = if wait {
                file.lock().map_err(TryLockError::Error)
            } else {
                file.try_lock()
            };
            match locked {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Busy {
                        name: name.into(),
                        lock: path,
                    });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::Sys {
                        what: format!("lock {}", path.display()),
                        source: e,
                    });
                }
            }
            // Whoever held it before may have removed the file: then this lock is on an orphan
            // inode and means nothing; start over on the current file.
            let held = file.metadata().map(|m| m.ino()).ok();
            let now = std::fs::metadata(&path).map(|m| m.ino()).ok();
            if held.is_some() && held == now {
                return Ok(Lock { file, path });
            }
        }
    }

    /// Removes the lock file while still holding the lock (the subhost is gone).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}
