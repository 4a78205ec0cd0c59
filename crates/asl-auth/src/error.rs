//! Errors of the authority library. Each names the object it concerns; a refusal names the
//! rule that failed (the rule names are listed in docs/AUTHORITY.md).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// config.yaml is malformed: the file and line, and what is wrong there.
    #[error("{}:{line}: {reason}", .file.display())]
    Config {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    /// An operation was refused by a rule; nothing was changed.
    #[error("refused by rule {rule}: {detail}")]
    Refused { rule: &'static str, detail: String },
    /// The passphrase does not open a sealed private key.
    #[error(
        "the passphrase does not open the sealed private key {what} (nothing was changed; \
         check the passphrase file)"
    )]
    Passphrase { what: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not a valid {kind}: {reason}")]
    Decode {
        what: String,
        kind: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] asl_store::StoreError),
    #[error("store access: {0}")]
    Access(#[from] asl_store::AccessError),
    #[error(transparent)]
    Prov(#[from] asl_prov::ProvError),
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The rule a refusal names, if this is one.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            AuthError::Refused { rule, .. } => Some(rule),
            AuthError::Passphrase { .. } => Some("key.passphrase"),
            _ => None,
        }
    }

    pub(crate) fn refused(rule: &'static str, detail: impl Into<String>) -> AuthError {
        AuthError::Refused {
            rule,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> AuthError {
        AuthError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;
