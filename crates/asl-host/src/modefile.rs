//! `/run/asl/mode`: the decision preflight hands to the intake service.
//!
//! Format (text, UTF-8, every line ends in `\n`):
//! ```text
//! local                      <- the decision: local | remote | operator
//! mode=auto                  <- then key=value facts, one per line, in a fixed order
//! network=up
//! ...
//! reason=local.mount /mnt/asl/local is mounted (zfs tank/asl) and writable
//! ```
//! `reason` is always the last line. Values never contain a newline (preflight replaces
//! them by spaces). Readers must ignore facts they do not know. The file is replaced
//! atomically (written to a uniquely named temporary file in the same directory, fsynced, renamed), so a
//! reader sees the old or the new file, never a mix.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Root;

/// In-root path of the mode file.
pub const MODE_FILE: &str = "/run/asl/mode";

/// What the intake service should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Intake into the store on `local.mount`.
    Local,
    /// Intake to the remote endpoint.
    Remote,
    /// Nothing usable was found: wait for the operator.
    Operator,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Local => "local",
            Decision::Remote => "remote",
            Decision::Operator => "operator",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parsed content of the mode file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeRecord {
    pub decision: Decision,
    /// `key=value` facts in file order (without `reason`).
    pub facts: Vec<(String, String)>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ModeFileError {
    #[error("{path}: cannot read the mode file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a mode file ({what}); rerun asl-preflight to rewrite it")]
    Malformed { path: PathBuf, what: String },
    #[error("{path}: cannot write the mode file: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl ModeRecord {
    /// The value of a fact, if present.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The file content.
    pub fn render(&self) -> String {
        let mut s = format!("{}\n", self.decision);
        for (k, v) in &self.facts {
            s.push_str(&format!("{}={}\n", one_line(k), one_line(v)));
        }
        s.push_str(&format!("reason={}\n", one_line(&self.reason)));
        s
    }

    /// Parses mode-file text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ModeRecord, ModeFileError> {
        let bad = |what: &str| ModeFileError::Malformed {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if !text.ends_with('\n') {
            return Err(bad("it does not end with a newline"));
        }
        let mut lines = text.lines();
        let decision = match lines.next().map(str::trim) {
            Some("local") => Decision::Local,
            Some("remote") => Decision::Remote,
            Some("operator") => Decision::Operator,
            Some(other) => {
                return Err(bad(&format!(
                    "first line '{other}' is not local, remote or operator"
                )));
            }
            None => return Err(bad("it is empty")),
        };
        let mut facts = Vec::new();
        let mut reason = None;
        for l in lines {
            let Some((k, v)) = l.split_once('=') else {
                return Err(bad(&format!("line '{l}' is not key=value")));
            };
            if k == "reason" {
                reason = Some(v.to_string());
            } else {
                facts.push((k.to_string(), v.to_string()));
            }
        }
        let reason = reason.ok_or_else(|| bad("it has no reason= line"))?;
        Ok(ModeRecord {
            decision,
            facts,
            reason,
        })
    }
}

/// Reads the mode file under `root`; `Ok(None)` when it does not exist (preflight has not run).
pub fn read(root: &Root) -> Result<Option<ModeRecord>, ModeFileError> {
    let path = root.join(MODE_FILE);
    match std::fs::read(&path) {
        Ok(b) => {
            let text = String::from_utf8(b).map_err(|_| ModeFileError::Malformed {
                path: path.clone(),
                what: "not UTF-8".into(),
            })?;
            ModeRecord::parse(&text, &path).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModeFileError::Read { path, source }),
    }
}

/// Replaces `<root>/run/asl/mode` atomically: a uniquely named temporary file in the same
/// directory is written and fsynced, renamed over the mode file, and the directory fsynced.
/// `run/asl` itself is created when missing (systemd's `RuntimeDirectory=asl` normally does
/// that). On error nothing but a leftover-free directory remains: the temp file is removed.
pub fn write_atomic(root: &Root, record: &ModeRecord) -> Result<PathBuf, ModeFileError> {
    let path = root.join(MODE_FILE);
    let werr = |source| ModeFileError::Write {
        path: path.clone(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| werr(std::io::Error::other("mode file has no parent directory")))?;
    std::fs::create_dir_all(dir).map_err(werr)?;
    // Unique per process and call, so concurrent writers never share a temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".mode.{}.{seq}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(record.render().as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(e));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(reason: &str) -> ModeRecord {
        ModeRecord {
            decision: Decision::Operator,
            facts: vec![
                ("mode".into(), "auto".into()),
                ("zfs.module".into(), "no".into()),
            ],
            reason: reason.into(),
        }
    }

    #[test]
    fn render_and_parse_round_trip_with_newlines_flattened() {
        let r = sample("two\nlines");
        let text = r.render();
        assert!(text.starts_with("operator\nmode=auto\n"));
        let back = ModeRecord::parse(&text, Path::new("m")).unwrap();
        assert_eq!(back.reason, "two lines");
        assert_eq!(back.fact("zfs.module"), Some("no"));
        assert_eq!(back.decision, Decision::Operator);
    }

    #[test]
    fn truncated_or_foreign_files_are_rejected() {
        let p = Path::new("m");
        assert!(ModeRecord::parse("local\nmode=auto\nreason=x", p).is_err());
        assert!(ModeRecord::parse("local\nmode=auto\n", p).is_err());
        assert!(ModeRecord::parse("maybe\nreason=x\n", p).is_err());
        assert!(ModeRecord::parse("", p).is_err());
    }

    #[test]
    fn write_atomic_creates_run_asl_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        assert!(read(&root).unwrap().is_none());
        write_atomic(&root, &sample("first")).unwrap();
        write_atomic(&root, &sample("second")).unwrap();
        assert_eq!(read(&root).unwrap().unwrap().reason, "second");
        let names: Vec<_> = std::fs::read_dir(d.path().join("run/asl"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("mode")]);
    }
}
