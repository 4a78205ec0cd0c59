//! Errors of the provenance library. Each names the object it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProvError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "command '{0}' not found: it is not an executable file in $PATH (or, with a '/', relative to the working directory)"
    )]
    CommandNotFound(String),
    #[error("cannot execute {}: {source}", .program.display())]
    Exec {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Os(String, #[source] std::io::Error),
    #[error("tracing failed: {0}")]
    Trace(String),
    #[error("declared input {}: {source} (nothing was captured; fix the path or its permissions)", .path.display())]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("declared output {}: {reason}", .path.display())]
    Output { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] asl_store::StoreError),
    #[error("store access: {0}")]
    Access(#[from] asl_store::AccessError),
    #[error("{0}")]
    Fs(String),
    #[error("key file {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error("{what} is not a valid {kind}: {reason}")]
    Decode {
        what: String,
        kind: &'static str,
        reason: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// Something was checked and found wrong (bad signature, digest mismatch).
    #[error("{0}")]
    Integrity(String),
}

impl ProvError {
    /// Whether the error means "checked and found wrong" (exit code 3).
    pub fn is_integrity(&self) -> bool {
        match self {
            ProvError::Integrity(_) => true,
            ProvError::Store(e) => e.is_integrity(),
            // A reference the index lacks may be a mistyped argument: not damage here. A
            // missing or damaged block behind an indexed artifact is.
            ProvError::Access(asl_store::AccessError::NotFound(_)) => false,
            ProvError::Access(e) => e.is_integrity(),
            _ => false,
        }
    }

    /// Whether the error is a usage error (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ProvError::Usage(_))
    }
}

pub type Result<T, E = ProvError> = std::result::Result<T, E>;
