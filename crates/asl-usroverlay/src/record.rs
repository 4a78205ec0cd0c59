//! State records: one small JSON file per overlay, written atomically *before* anything is
//! mounted, so that whatever point the tool dies at, `status` finds the overlay by its record
//! and `remove` can clean it up.
//!
//! Every record is `LAYER/overlay.json`, next to the overlay's `upper/` and `work/`. For a
//! hotfix overlay LAYER is a directory under the persistent directory. For a transient or
//! read-only overlay LAYER is the overlay's own tmpfs, mounted on a directory under the
//! runtime directory, and the record is written into that tmpfs *before* it is attached: the
//! record is visible exactly in the mount namespaces where the layer mount is, and goes away
//! with it — at reboot, at `remove`, and when a private mount namespace the overlay was
//! applied in ends (a record in the host's `/run` would outlive it as a host-wide stale
//! entry).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The record format this build writes and understands. Newer records are refused.
pub const RECORD_FORMAT: u32 = 1;

/// File name of a record inside its layer directory.
pub(crate) const RECORD_FILE: &str = "overlay.json";

/// Where state lives. Both directories can be moved under a prefix so tests and image builds
/// never touch the live system's `/run` or `/var/lib`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDirs {
    /// Runtime state (records of transient/read-only overlays, their tmpfs). Default
    /// `/run/asl/usroverlay`.
    pub runtime: PathBuf,
    /// Persistent state (hotfix records, upper and work directories). Default
    /// `/var/lib/asl/usroverlay`.
    pub persistent: PathBuf,
}

impl StateDirs {
    /// The live system's directories.
    pub fn system() -> StateDirs {
        StateDirs::under(Path::new("/"))
    }

    /// The same layout below `root` (`ROOT/run/asl/usroverlay`, `ROOT/var/lib/asl/usroverlay`).
    pub fn under(root: &Path) -> StateDirs {
        StateDirs {
            runtime: root.join("run/asl/usroverlay"),
            persistent: root.join("var/lib/asl/usroverlay"),
        }
    }

    pub(crate) fn transient_layer(&self, name: &str) -> PathBuf {
        self.runtime.join(name)
    }

    pub(crate) fn hotfix_layer(&self, name: &str) -> PathBuf {
        self.persistent.join(name)
    }

    pub(crate) fn lock_file(&self) -> PathBuf {
        self.runtime.join(".lock")
    }
}

/// How an overlay behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Writable; the upper layer lives on a tmpfs under the runtime directory and is gone at
    /// reboot.
    Transient,
    /// Writable; the upper layer lives under the persistent directory and `apply --boot`
    /// mounts it again after a reboot.
    Hotfix,
    /// Mounted read-only (upper on a tmpfs like transient): the tree looks the same but no
    /// process can write to it.
    ReadOnly,
}

impl Mode {
    /// The name used on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Transient => "transient",
            Mode::Hotfix => "hotfix",
            Mode::ReadOnly => "read-only",
        }
    }

    /// Whether the overlay survives a reboot.
    pub fn is_persistent(self) -> bool {
        self == Mode::Hotfix
    }

    /// Whether processes can write through the overlay.
    pub fn is_writable(self) -> bool {
        self != Mode::ReadOnly
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "transient" => Ok(Mode::Transient),
            "hotfix" => Ok(Mode::Hotfix),
            "read-only" | "readonly" | "ro" => Ok(Mode::ReadOnly),
            other => Err(format!(
                "unknown mode '{other}' (expected transient, hotfix or read-only)"
            )),
        }
    }
}

/// What is known about one overlay, as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayRecord {
    /// [`RECORD_FORMAT`] at the time of writing.
    pub format: u32,
    pub name: String,
    /// The covered directory (absolute, symlinks resolved).
    pub path: PathBuf,
    pub mode: Mode,
    /// When the overlay was first applied, seconds since the Unix epoch.
    pub since: u64,
    /// Directory holding the record, `upper/` and `work/` (for transient/read-only: the mount
    /// point of the tmpfs that holds them).
    pub layer: PathBuf,
    /// tmpfs `size=` option given at apply time (transient/read-only only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<String>,
}

impl OverlayRecord {
    /// The upper directory: everything written through the overlay ends up here.
    pub fn upper(&self) -> PathBuf {
        self.layer.join("upper")
    }

    /// overlayfs's work directory (same file system as the upper).
    pub fn work(&self) -> PathBuf {
        self.layer.join("work")
    }

    /// Where this record is stored.
    pub(crate) fn file(&self) -> PathBuf {
        self.layer.join(RECORD_FILE)
    }
}

/// Writes `bytes` to `path` so that a reader sees the old or the new content, never a mix:
/// temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = path.with_extension("json.tmp");
    let res = (|| -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("write state record", path, e)
    })
}

/// Writes `rec` to `dir/overlay.json` (`dir` is its layer directory, or the not yet attached
/// layer tmpfs as `/proc/self/fd/N`).
pub(crate) fn save_in(dir: &Path, rec: &OverlayRecord) -> Result<()> {
    let file = dir.join(RECORD_FILE);
    let mut json = serde_json::to_vec_pretty(rec).map_err(|e| Error::BadRecord {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    write_atomic(&file, &json)
}

fn load(path: &Path) -> Result<OverlayRecord> {
    let bytes = fs::read(path).map_err(|e| Error::io("read state record", path, e))?;
    // Read the format first so a newer record gets "use a newer tool", not a parse error.
    #[derive(Deserialize)]
    struct Probe {
        format: u32,
    }
    let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| Error::BadRecord {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if probe.format > RECORD_FORMAT {
        return Err(Error::NewerFormat {
            path: path.into(),
            found: probe.format,
            supported: RECORD_FORMAT,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::BadRecord {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Every record in both directories, sorted by name. Missing directories mean "no overlays";
/// a layer directory without a record (the mount point of a transient layer that is not
/// mounted in this namespace) is not an overlay.
pub(crate) fn load_all(dirs: &StateDirs) -> Result<Vec<OverlayRecord>> {
    let mut out = Vec::new();
    for dir in [&dirs.runtime, &dirs.persistent] {
        for entry in read_dir_sorted(dir)? {
            let file = dir.join(&entry).join(RECORD_FILE);
            if entry.to_string_lossy().starts_with('.') || !file.exists() {
                continue;
            }
            out.push(load(&file)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        names.push(entry.file_name());
    }
    names.sort();
    Ok(names)
}

/// Checks an overlay name: it becomes a file name and part of the mount source tag, so it is
/// limited to a safe alphabet.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 64 {
        return bad("it is longer than 64 bytes");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("it may not start with '.' or '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// The default name for an overlay on `path`: its components joined by '-' (`/usr` -> `usr`,
/// `/usr/local` -> `usr-local`), with other characters replaced by '_'.
pub fn default_name(path: &Path) -> String {
    let mut s = String::new();
    for c in path.components() {
        if let std::path::Component::Normal(part) = c {
            if !s.is_empty() {
                s.push('-');
            }
            for ch in part.to_string_lossy().chars() {
                s.push(
                    if ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.') {
                        ch
                    } else {
                        '_'
                    },
                );
            }
        }
    }
    let s = s.trim_start_matches(['.', '-']).to_string();
    if s.is_empty() {
        "root".to_string()
    } else {
        s.chars().take(64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_joins_components_and_sanitises() {
        assert_eq!(default_name(Path::new("/usr")), "usr");
        assert_eq!(default_name(Path::new("/usr/local")), "usr-local");
        assert_eq!(default_name(Path::new("/opt/my app")), "opt-my_app");
        assert_eq!(default_name(Path::new("/.hidden")), "hidden");
        assert!(validate_name(&default_name(Path::new("/a b/ü"))).is_ok());
    }

    #[test]
    fn names_that_could_escape_the_state_directory_are_rejected() {
        for bad in ["", "../x", "a/b", ".lock", "-x", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(validate_name("usr-hotfix_1.2").is_ok());
    }

    #[test]
    fn records_round_trip_and_newer_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = StateDirs::under(dir.path());
        fs::create_dir_all(dirs.transient_layer("usr")).unwrap();
        fs::create_dir_all(dirs.transient_layer("future")).unwrap();
        let rec = OverlayRecord {
            format: RECORD_FORMAT,
            name: "usr".into(),
            path: "/usr".into(),
            mode: Mode::ReadOnly,
            since: 42,
            layer: dirs.transient_layer("usr"),
            tmpfs_size: Some("1G".into()),
        };
        save_in(&rec.layer, &rec).unwrap();
        assert_eq!(load_all(&dirs).unwrap(), vec![rec.clone()]);

        let newer = serde_json::to_string(&serde_json::json!({"format": 99})).unwrap();
        fs::write(dirs.transient_layer("future").join(RECORD_FILE), newer).unwrap();
        match load_all(&dirs) {
            Err(Error::NewerFormat { found: 99, .. }) => {}
            other => panic!("expected NewerFormat, got {other:?}"),
        }
    }
}
