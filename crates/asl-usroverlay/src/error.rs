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
        "{} (overlay '{name}') is busy: processes still use files in it; stop them (see `fuser -vm {}`) or pass --force for a lazy unmount",
        path.display(), path.display()
    )]
    Busy { name: String, path: PathBuf },

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
