//! Typed errors of the store. Each names the object it concerns and, where it helps, what to do.

use std::path::PathBuf;

use crate::reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not an ASL store (no 'config' file); create one with asl-init-store")]
    NotAStore(PathBuf),
    #[error("{path} already holds a store or other files; refusing to initialise over it")]
    AlreadyExists { path: PathBuf },
    #[error(
        "{path}: store format version {found} is newer than this binary understands (up to {supported}); use a newer asl"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: invalid store configuration: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error(
        "store {path} is locked by a running writer (pid {pid} on {host}); wait for it to finish"
    )]
    Locked {
        path: PathBuf,
        pid: u32,
        host: String,
    },
    /// An on-disk structure failed its checks. `object` names it (a file, a log record).
    #[error("{object} is damaged: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("artifact {0} is not in the store")]
    NotFound(Reference),
    /// A bug in this program (a thread that panicked, a broken internal invariant), not
    /// damage to the store: it must never be reported as an integrity problem.
    #[error(
        "internal error in {what}: {reason} (a bug in asl, not damage to the store; please report it)"
    )]
    Internal { what: String, reason: String },
    #[error("reference {reference} uses {found}, but this store hashes with {expected}")]
    WrongHash {
        reference: Reference,
        found: &'static str,
        expected: &'static str,
    },
    #[error(
        "no snapshot matches '{0}' (use an id, a label or 'latest'; `asl-admin snapshots` lists them)"
    )]
    NoSuchSnapshot(String),
    #[error("'{name}' matches several snapshots ({ids}); use the id")]
    AmbiguousSnapshot { name: String, ids: String },
    /// The metadata of a snapshot being committed could not be encoded; nothing was logged.
    #[error("snapshot {snapshot_id}{}: its metadata does not encode as JSON: {source}",
        label.as_deref().map(|l| format!(" ('{l}')")).unwrap_or_default())]
    SnapshotMetaEncoding {
        snapshot_id: u64,
        label: Option<String>,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store has no snapshots yet")]
    NoSnapshots,
    /// Garbage collection and reindex rewrite the index; the segments this writer's
    /// uncommitted puts spilled would be lost or collide with what they write.
    #[error(
        "{operation} cannot run while this writer holds {segments} spilled segment(s) of \
         uncommitted puts; commit (or drop the writer) first"
    )]
    SessionSpilled {
        operation: &'static str,
        segments: usize,
    },
    #[error("zstd level {0} is not in 1..=19")]
    BadCompressionLevel(i32),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::Internal {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether this error means damaged data (exit code 3) rather than an operational failure.
    pub fn is_integrity(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a path to an io::Result.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| StoreError::io(path, e))
    }
}
