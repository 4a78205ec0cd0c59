//! The intake service state machine behind `asl-intake --service`.
//!
//! 1. Read `/run/asl/mode` (written by `asl-preflight`).
//! 2. `local` → load asl.conf and hand `local.mount` (under the root) and `local.create` to the
//!    caller's [`IntakeBackend`]; its result ends the service.
//! 3. `remote` → load asl.conf and hand `remote.endpoint`, the client key slot (`remote.key`)
//!    and the trusted CAs (`remote.ca`), under the root, to the backend's
//!    [`IntakeBackend::run_remote`]; its result ends the service.
//! 4. `operator`, a missing or unreadable mode file → report the reason (stderr and, under
//!    systemd, `sd_notify` `STATUS=`), then poll the mode file every [`ServiceOptions::poll`]
//!    (200 ms) and start over at 1 as soon as its content changes — e.g. after the operator
//!    imported a pool and reran `asl-preflight`.
//!
//! The service itself never imports a pool, mounts, or writes to the store: all store access is
//! the backend's, and the backend is told whether creating a store is allowed.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Root;
use crate::config::{AslConf, ConfigError};
use crate::modefile::{self, Decision, MODE_FILE, ModeRecord};

/// Error type a backend may return (an `anyhow::Error` converts into it with `.into()`).
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// What the service calls for local intake. Implemented by the `asl-intake` binary on top of
/// the store; tests use a fake.
pub trait IntakeBackend {
    /// Opens (or, when `create_allowed`, creates) the store in `store_dir` and runs local
    /// intake. Returning ends the service.
    fn run_local(&mut self, store_dir: &Path, create_allowed: bool) -> Result<(), BackendError>;
    /// Reaches the remote store at `remote.endpoint` with the client key and the trusted
    /// CAs of asl.conf. Returning ends the service.
    fn run_remote(&mut self, remote: &RemoteTarget) -> Result<(), BackendError>;
}

/// Where remote intake goes, from asl.conf (paths already under the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    /// `https://HOST:PORT/STORE`
    pub url: String,
    /// The client key slot.
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
}

/// Service knobs; the defaults are what `asl-intake --service` uses.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// How often the mode file is re-read while waiting.
    pub poll: Duration,
    /// Set to stop waiting (the service then returns [`ServiceEnd::Stopped`]).
    pub stop: Arc<AtomicBool>,
}

impl Default for ServiceOptions {
    fn default() -> ServiceOptions {
        ServiceOptions {
            poll: Duration::from_millis(200),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// How the service ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceEnd {
    /// The backend finished local intake into this store directory.
    LocalDone { store_dir: PathBuf },
    /// The backend finished with the remote store at this URL.
    RemoteDone { url: String },
    /// [`ServiceOptions::stop`] was set while waiting.
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(
        "the mode file says remote ({reason}), but asl.conf sets no remote.endpoint; \
         set it (https://HOST:PORT/STORE), then rerun asl-preflight"
    )]
    NoEndpoint { reason: String },
    #[error("remote intake to {url} failed: {source}")]
    Remote {
        url: String,
        #[source]
        source: BackendError,
    },
    #[error("local intake into {store_dir} failed: {source}")]
    Local {
        store_dir: PathBuf,
        #[source]
        source: BackendError,
    },
}

/// Sends `sd_notify` datagrams to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
/// namespace). Without a socket every call is a no-op, so the service runs the same outside
/// systemd.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<String>,
}

impl Notifier {
    /// Uses `$NOTIFY_SOCKET` when set.
    pub fn from_env() -> Notifier {
        Notifier {
            target: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// Uses an explicit socket address (same syntax as `NOTIFY_SOCKET`).
    pub fn to(target: impl Into<String>) -> Notifier {
        Notifier {
            target: Some(target.into()),
        }
    }

    /// Sends one notification, e.g. `"READY=1\nSTATUS=waiting"`. Failing to notify must not
    /// stop the service, so errors are returned for logging only.
    pub fn notify(&self, msg: &str) -> std::io::Result<()> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        let sock = UnixDatagram::unbound()?;
        if let Some(name) = t.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        } else {
            sock.send_to(msg.as_bytes(), t)?;
        }
        Ok(())
    }
}

/// A state the service reports (to stderr by the binary, to systemd as `STATUS=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No mode file yet.
    NoModeFile,
    /// The mode file exists but cannot be used.
    BadModeFile(String),
    /// Waiting for the operator, with preflight's reason.
    Operator(String),
    /// Local intake starts into this directory.
    Local(PathBuf),
    /// Remote intake starts to this URL.
    Remote(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::NoModeFile => write!(
                f,
                "waiting for {MODE_FILE}: asl-preflight has not run yet (start asl-preflight.service or run asl-preflight)"
            ),
            Status::BadModeFile(e) => write!(f, "waiting for a usable mode file: {e}"),
            Status::Operator(r) => write!(
                f,
                "waiting for the operator: {r} (fix it, then run asl-preflight again)"
            ),
            Status::Local(d) => write!(f, "local intake into {}", d.display()),
            Status::Remote(url) => write!(f, "remote intake to {url}"),
        }
    }
}

/// Runs the service until local or remote intake ends, or `opts.stop` is set.
/// `on_status` sees every state change (the binary prints it; tests observe it).
pub fn run(
    root: &Root,
    backend: &mut dyn IntakeBackend,
    notifier: &Notifier,
    opts: &ServiceOptions,
    on_status: &mut dyn FnMut(&Status),
) -> Result<ServiceEnd, ServiceError> {
    let path = root.join(MODE_FILE);
    // Compare raw bytes: any rewrite by preflight (always a rename) changes at least the
    // facts or the reason; an identical rewrite means nothing changed for us either.
    let mut last: Option<Option<Vec<u8>>> = None;
    let mut ready = false;
    loop {
        if opts.stop.load(Ordering::Relaxed) {
            return Ok(ServiceEnd::Stopped);
        }
        let now = std::fs::read(&path).ok();
        if last.as_ref() != Some(&now) {
            last = Some(now.clone());
            let status = match now {
                None => Status::NoModeFile,
                Some(bytes) => match String::from_utf8(bytes)
                    .map_err(|_| "not UTF-8".to_string())
                    .and_then(|t| ModeRecord::parse(&t, &path).map_err(|e| e.to_string()))
                {
                    Err(e) => Status::BadModeFile(e),
                    Ok(rec) => match rec.decision {
                        Decision::Operator => Status::Operator(rec.reason),
                        Decision::Remote => {
                            let conf = AslConf::load(root)?;
                            let Some(ep) = conf.remote_endpoint else {
                                return Err(ServiceError::NoEndpoint { reason: rec.reason });
                            };
                            let target = RemoteTarget {
                                url: ep.url.clone(),
                                key: root.join(&conf.remote_key),
                                ca: conf.remote_ca.as_ref().map(|c| root.join(c)),
                            };
                            let st = Status::Remote(target.url.clone());
                            on_status(&st);
                            let _ = notifier.notify(&format!("READY=1\nSTATUS={st}"));
                            return match backend.run_remote(&target) {
                                Ok(()) => Ok(ServiceEnd::RemoteDone { url: target.url }),
                                Err(source) => Err(ServiceError::Remote {
                                    url: target.url,
                                    source,
                                }),
                            };
                        }
                        Decision::Local => {
                            // Re-read the configuration: the operator may have edited it
                            // before rerunning preflight.
                            let conf = AslConf::load(root)?;
                            let store_dir = root.join(&conf.local_mount);
                            let st = Status::Local(store_dir.clone());
                            on_status(&st);
                            let _ = notifier.notify(&format!("READY=1\nSTATUS={st}"));
                            return match backend.run_local(&store_dir, conf.local_create) {
                                Ok(()) => Ok(ServiceEnd::LocalDone { store_dir }),
                                Err(source) => Err(ServiceError::Local { store_dir, source }),
                            };
                        }
                    },
                },
            };
            on_status(&status);
            // Ready = "the service has decided what to do"; waiting is a ready state.
            let prefix = if ready { "" } else { "READY=1\n" };
            ready = true;
            let _ = notifier.notify(&format!("{prefix}STATUS={status}"));
        }
        std::thread::sleep(opts.poll);
    }
}

/// Reads the current decision without waiting (for status displays).
pub fn current(root: &Root) -> Result<Option<ModeRecord>, modefile::ModeFileError> {
    modefile::read(root)
}
