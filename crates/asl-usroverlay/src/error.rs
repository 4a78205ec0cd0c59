//! Typed errors. Every variant names the object it concerns and, where there is one, the
//! way out, so the CLI can print it as one line.

use std::io;
use std::path::PathBuf;

/// Everything an overlay operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{action} needs root (running as uid {euid}): mounting and unmounting overlays is privileged; run it with sudo or as root"
    )]
    NotRoot { action: &'static str, euid: u32 },

    #[error("{} does not exist; name an existing directory such as /usr", path.display())]
    PathNotFound { path: PathBuf },

    #[error("{} is not a directory; an overlay can only cover a directory tree", path.display())]
    NotADirectory { path: PathBuf },

    #[error("{} cannot be covered: {reason}", path.display())]
    PathRefused { path: PathBuf, reason: String },

    #[error(
        "invalid tmpfs size '{size}': give a number of bytes with an optional k, m, g, t, p, e or % suffix (e.g. 2G, 25%)"
    )]
    InvalidSize { size: String },

    #[error("invalid overlay name '{name}': {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error(
        "an overlay named '{name}' already exists (on {}); pick another --name or `remove {name}` first",
        path.display()
    )]
    NameInUse { name: String, path: PathBuf },

    #[error("{} already has an overlay: {reason}", path.display())]
    AlreadyOverlaid { path: PathBuf, reason: String },

    #[error("no overlay named '{name}'{}", known_list(known))]
    UnknownName { name: String, known: Vec<String> },

    #[error(
        "{} (overlay '{name}') is busy: {}, or pass --force for a lazy unmount (processes keep what they have open)",
        path.display(), busy_reason(path, holders, submounts)
    )]
    Busy {
        name: String,
        path: PathBuf,
        /// The processes found holding files on it (a snapshot taken after the refusal).
        holders: Vec<crate::Holder>,
        /// Mounts inside it, which keep it busy as well.
        submounts: Vec<PathBuf>,
    },

    #[error("overlay '{name}' is not mounted (stale); `remove {name}` cleans its state")]
    NotMounted { name: String },

    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("state record {} is unreadable: {reason}; inspect it, then delete it by hand", path.display())]
    BadRecord { path: PathBuf, reason: String },

    #[error(
        "state record {} has format {found}, newer than this tool understands ({supported}); use a newer asl-usroverlay",
        path.display()
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

fn busy_reason(path: &std::path::Path, holders: &[crate::Holder], submounts: &[PathBuf]) -> String {
    let mut parts = Vec::new();
    if !holders.is_empty() {
        let list: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
        parts.push(format!(
            "in use by {}; stop {}",
            list.join(", "),
            if holders.len() == 1 { "it" } else { "them" }
        ));
    }
    if !submounts.is_empty() {
        let list: Vec<String> = submounts.iter().map(|p| p.display().to_string()).collect();
        parts.push(format!(
            "mounted inside it: {}; unmount {}",
            list.join(", "),
            if submounts.len() == 1 { "it" } else { "them" }
        ));
    }
    if parts.is_empty() {
        // Users that are no process: a loop device or swap file, an NFS export, or a
        // process that let go between the refusal and the scan.
        parts.push(format!(
            "no process was found using it (a loop device, swap file or export may hold it; see `fuser -vm {}`); stop that user and try again",
            path.display()
        ));
    }
    parts.join("; ")
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; there are no overlays (`status` lists them)".to_string()
    } else {
        format!("; known: {} (`status` lists them)", known.join(", "))
    }
}

impl Error {
    /// Whether the error is the caller's input being wrong (exit code 2) rather than the
    /// operation failing (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::PathNotFound { .. }
                | Error::NotADirectory { .. }
                | Error::PathRefused { .. }
                | Error::InvalidName { .. }
                | Error::InvalidSize { .. }
                | Error::UnknownName { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(
        op: &'static str,
        path: impl Into<PathBuf>,
        errno: rustix::io::Errno,
    ) -> Error {
        Error::io(op, path, io::Error::from(errno))
    }
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;
