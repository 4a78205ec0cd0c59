//! Typed errors. Every message names the object concerned and, where there is one, what to do.

use std::path::PathBuf;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {var}: {message}", conf.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        conf: PathBuf,
        /// The line of the assignment; None when the value is a default.
        line: Option<usize>,
        var: String,
        message: String,
    },
}

/// Anything that can go wrong booting, entering, stopping or listing a subhost.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("subhost {name} is already running (init pid {pid}); stop it first with overlay-stop")]
    AlreadyRunning { name: String, pid: i32 },
    #[error("subhost {name} is not running")]
    NotRunning { name: String },
    #[error("another overlay-boot or overlay-stop of subhost {name} is in progress (lock {})", lock.display())]
    Busy { name: String, lock: PathBuf },
    /// A system call or file operation failed; `what` says on which object.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    /// The subhost failed while booting; the reason comes from inside.
    #[error("subhost {name} failed to boot: {reason} (log: {})", log.display())]
    BootFailed {
        name: String,
        reason: String,
        log: PathBuf,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A system error re-described as concerning `what` (the caller knows the object better
    /// than the call that failed); other errors are returned unchanged.
    pub(crate) fn concerning(self, what: impl Into<String>) -> Error {
        match self {
            Error::Sys { source, .. } => Error::Sys {
                what: what.into(),
                source,
            },
            other => other,
        }
    }
}

/// Wraps an io::Error with the object it concerns.
pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

/// The last OS error, as an Error naming `what`.
pub(crate) fn last(what: impl Into<String>) -> Error {
    Error::Sys {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

/// Wraps a rustix error with the object it concerns.
pub(crate) fn errno(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> Error {
    let what = what.into();
    move |e| Error::Sys {
        what,
        source: e.into(),
    }
}
