//! Status codes, the thread-local error message, and the guard every exported function runs
//! its body in (no panic crosses the boundary).

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ::asl_store::{AccessError, StoreError};

/// What a call did. `ASL_OK` is 0; every other value is a failure (or, for
/// `ASL_E_INCOMPLETE`, a completed call with something to report), and
/// [`asl_last_error`] holds a message that names the object concerned.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum asl_status {
    /// Success.
    ASL_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    ASL_E_NULL = 1,
    /// The store handle is closed, or was never returned by `asl_store_open`.
    ASL_E_HANDLE = 2,
    /// A text argument (label, snapshot name, reference, pattern) is not valid UTF-8.
    /// Paths are bytes, as on Linux, and need not be UTF-8.
    ASL_E_UTF8 = 3,
    /// An argument is invalid otherwise (a malformed reference, a bad pattern, an option out
    /// of range, a call from inside a callback of the same handle).
    ASL_E_USAGE = 4,
    /// The directory holds no store.
    ASL_E_NOT_A_STORE = 5,
    /// `asl_store_init` was given a directory that is not empty.
    ASL_E_EXISTS = 6,
    /// Another writer holds the store's lock (another process, or another handle).
    ASL_E_LOCKED = 7,
    /// Damaged data: a block, segment, log record or artifact failed its check (the CLI's
    /// exit code 3).
    ASL_E_CORRUPT = 8,
    /// The artifact, or the path inside a snapshot, does not exist.
    ASL_E_NOT_FOUND = 9,
    /// No snapshot matches the name, it is ambiguous, or the store has none.
    ASL_E_NO_SNAPSHOT = 10,
    /// A writing call on a handle opened without `ASL_OPEN_WRITE`.
    ASL_E_READ_ONLY = 11,
    /// An operating-system error (the message names the file).
    ASL_E_IO = 12,
    /// A callback of the caller reported an error (a stream read or write).
    ASL_E_CALLBACK = 13,
    /// The caller's buffer is too small; the size needed was stored.
    ASL_E_BUFFER = 14,
    /// The store's format is newer than this library, or its configuration is invalid.
    ASL_E_FORMAT = 15,
    /// The call completed and committed, but some inputs could not be taken in or some
    /// entries not restored (the CLI's exit code 4); the result structure counts them.
    ASL_E_INCOMPLETE = 16,
    /// A bug in the library was caught (a Rust panic); the handle may be unusable.
    ASL_E_INTERNAL = 17,
    /// Any other failure; the message says what.
    ASL_E_FAILED = 18,
}

use asl_status::*;

/// A failure on its way to the caller: the code and the message.
#[derive(Debug)]
pub struct Error {
    pub status: asl_status,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(status: asl_status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    pub fn null(what: &str) -> Error {
        Error::new(ASL_E_NULL, format!("{what} is NULL"))
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ASL_E_USAGE, message)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        let status = match &e {
            StoreError::Io { .. } => ASL_E_IO,
            StoreError::NotAStore(_) => ASL_E_NOT_A_STORE,
            StoreError::AlreadyExists { .. } => ASL_E_EXISTS,
            StoreError::NewerFormat { .. } | StoreError::BadConfig { .. } => ASL_E_FORMAT,
            StoreError::Locked { .. } => ASL_E_LOCKED,
            StoreError::Corrupt { .. } => ASL_E_CORRUPT,
            StoreError::NotFound(_) => ASL_E_NOT_FOUND,
            StoreError::WrongHash { .. }
            | StoreError::BadCompressionLevel(_)
            | StoreError::SessionSpilled { .. } => ASL_E_USAGE,
            StoreError::NoSuchSnapshot(_)
            | StoreError::AmbiguousSnapshot { .. }
            | StoreError::NoSnapshots => ASL_E_NO_SNAPSHOT,
            // Snapshot metadata is strings and JSON values: failing to encode it is a bug.
            StoreError::SnapshotMetaEncoding { .. } | StoreError::Internal { .. } => ASL_E_INTERNAL,
        };
        Error::new(status, e.to_string())
    }
}

impl From<AccessError> for Error {
    fn from(e: AccessError) -> Error {
        let status = match &e {
            AccessError::Source(_) | AccessError::Sink(_) => ASL_E_CALLBACK,
            AccessError::NotFound(_) => ASL_E_NOT_FOUND,
            AccessError::Corrupt { .. } => ASL_E_CORRUPT,
            AccessError::Store(inner) => match inner.downcast_ref::<StoreError>() {
                Some(StoreError::Corrupt { .. }) => ASL_E_CORRUPT,
                Some(StoreError::Io { .. }) => ASL_E_IO,
                _ => ASL_E_FAILED,
            },
        };
        Error::new(status, e.to_string())
    }
}

impl From<asl_fs::BrowseError> for Error {
    fn from(e: asl_fs::BrowseError) -> Error {
        use asl_fs::BrowseError as B;
        let status = match &e {
            B::Store { source, .. } => Error::from_access_ref(source),
            B::Content { source, .. } => Error::from_access_ref(source),
            B::Tree { .. } => ASL_E_CORRUPT,
            B::NotFound { .. } => ASL_E_NOT_FOUND,
            B::BadPath { .. } => ASL_E_USAGE,
            _ => ASL_E_FAILED,
        };
        Error::new(status, e.to_string())
    }
}

impl Error {
    /// The status of an access error seen inside another error. A tree's artifact that is
    /// missing from the index is damage (the snapshot reaches it), not a wrong argument.
    fn from_access_ref(e: &AccessError) -> asl_status {
        match e {
            AccessError::Corrupt { .. } | AccessError::NotFound(_) => ASL_E_CORRUPT,
            AccessError::Store(inner) => match inner.downcast_ref::<StoreError>() {
                Some(StoreError::Corrupt { .. }) => ASL_E_CORRUPT,
                Some(StoreError::Io { .. }) => ASL_E_IO,
                _ => ASL_E_FAILED,
            },
            AccessError::Source(_) | AccessError::Sink(_) => ASL_E_IO,
        }
    }
}

impl From<asl_fs::IntakeError> for Error {
    fn from(e: asl_fs::IntakeError) -> Error {
        use asl_fs::IntakeError as I;
        let status = match &e {
            I::NoPaths | I::BadExclude { .. } | I::DuplicateName { .. } | I::NoName { .. } => {
                ASL_E_USAGE
            }
            I::Path { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ASL_E_NOT_FOUND
            }
            I::Path { .. } => ASL_E_IO,
            I::Store { source, .. } => Error::from_access_ref(source),
            _ => ASL_E_FAILED,
        };
        Error::new(status, format!("{e}; nothing was committed"))
    }
}

impl From<asl_fs::RestoreError> for Error {
    fn from(e: asl_fs::RestoreError) -> Error {
        use asl_fs::RestoreError as R;
        match e {
            R::Browse(b) => Error::from(b),
            R::TargetNotEmpty(_) => Error::new(ASL_E_EXISTS, e.to_string()),
            R::TargetNotDirectory(_) => Error::new(ASL_E_USAGE, e.to_string()),
            R::Target { .. } => Error::new(ASL_E_IO, e.to_string()),
        }
    }
}

impl From<asl_prov::ProvError> for Error {
    fn from(e: asl_prov::ProvError) -> Error {
        use asl_prov::ProvError as P;
        match e {
            P::Store(s) => Error::from(s),
            P::Access(a) => Error::from(a),
            other => {
                let status = if other.is_integrity() {
                    ASL_E_CORRUPT
                } else if other.is_usage() {
                    ASL_E_USAGE
                } else {
                    match &other {
                        P::Input { source, .. }
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            ASL_E_NOT_FOUND
                        }
                        P::Input { .. } | P::Os(..) => ASL_E_IO,
                        P::NotFound(_) => ASL_E_NOT_A_STORE,
                        P::Key { .. } => ASL_E_USAGE,
                        _ => ASL_E_FAILED,
                    }
                };
                Error::new(status, other.to_string())
            }
        }
    }
}

thread_local! {
    /// The message of the last failed call on this thread (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds NUL in practice (it is built from paths and names): should one,
    // the NUL is shown as an escape rather than cut the message short.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|m| *m.borrow_mut() = c);
}

/// Empties the message, without allocating when it is empty already (the common case: a
/// put or get in a loop).
fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|m| {
        if !m.borrow().is_empty() {
            *m.borrow_mut() = CString::default();
        }
    });
}

/// Runs the body of an exported function: converts its error to a status and the
/// thread-local message, and a panic to `ASL_E_INTERNAL`. Every exported function that can
/// fail goes through here.
pub fn guard(body: impl FnOnce() -> Result<()>) -> asl_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            ASL_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error in libasl (a bug; please report it): {what}"
            ));
            ASL_E_INTERNAL
        }
    }
}

/// Runs the body of an exported function that has no status to return: a panic gives
/// `fallback` instead of crossing the boundary.
pub fn no_panic<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The message of the last failed call made by this thread: one line naming the object
/// concerned and, where it helps, what to do. Empty after a successful call.
///
/// The pointer stays valid until this thread's next call into libasl; never NULL; do not
/// free it. Thread-safe: each thread has its own message.
#[unsafe(no_mangle)]
pub extern "C" fn asl_last_error() -> *const c_char {
    // `with` cannot fail here: the key is only unavailable while the thread is being torn
    // down, when no caller can be asking. Should it be, an empty static string is returned.
    no_panic(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|m| m.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

/// The name of a status code (`"ASL_E_LOCKED"`), or `"ASL_E_UNKNOWN"` for a value that is
/// not one. A static string; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn asl_status_name(status: i32) -> *const c_char {
    let name = match status {
        0 => c"ASL_OK",
        1 => c"ASL_E_NULL",
        2 => c"ASL_E_HANDLE",
        3 => c"ASL_E_UTF8",
        4 => c"ASL_E_USAGE",
        5 => c"ASL_E_NOT_A_STORE",
        6 => c"ASL_E_EXISTS",
        7 => c"ASL_E_LOCKED",
        8 => c"ASL_E_CORRUPT",
        9 => c"ASL_E_NOT_FOUND",
        10 => c"ASL_E_NO_SNAPSHOT",
        11 => c"ASL_E_READ_ONLY",
        12 => c"ASL_E_IO",
        13 => c"ASL_E_CALLBACK",
        14 => c"ASL_E_BUFFER",
        15 => c"ASL_E_FORMAT",
        16 => c"ASL_E_INCOMPLETE",
        17 => c"ASL_E_INTERNAL",
        18 => c"ASL_E_FAILED",
        _ => c"ASL_E_UNKNOWN",
    };
    name.as_ptr()
}

/// The library's version (`"0.1.0"`), a static string. The ABI is the soname's: programs
/// built against `libasl.so.0` run with any later `libasl.so.0`.
#[unsafe(no_mangle)]
pub extern "C" fn asl_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: asl_last_error returns a valid NUL-terminated string owned by this thread.
        unsafe { CStr::from_ptr(asl_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_in_a_body_becomes_asl_e_internal_with_its_message() {
        let status = guard(|| panic!("boom in the body"));
        assert_eq!(status, ASL_E_INTERNAL);
        assert!(last().contains("boom in the body"), "{}", last());
    }

    #[test]
    fn an_error_sets_the_message_and_a_success_clears_it() {
        let status = guard(|| Err(Error::new(ASL_E_LOCKED, "store /x is locked")));
        assert_eq!(status, ASL_E_LOCKED);
        assert_eq!(last(), "store /x is locked");
        assert_eq!(guard(|| Ok(())), ASL_OK);
        assert_eq!(last(), "");
    }

    #[test]
    fn every_status_has_a_name_matching_its_variant() {
        for (code, name) in [(0, "ASL_OK"), (7, "ASL_E_LOCKED"), (18, "ASL_E_FAILED")] {
            // SAFETY: asl_status_name returns a static NUL-terminated string.
            let got = unsafe { CStr::from_ptr(asl_status_name(code)) };
            assert_eq!(got.to_str().ok(), Some(name));
        }
        assert_eq!(ASL_E_FAILED as i32, 18);
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(asl_status_name(99)) };
        assert_eq!(unknown.to_str().ok(), Some("ASL_E_UNKNOWN"));
    }
}
