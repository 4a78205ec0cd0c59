//! Named crash points of the real binary: `ASL_CRASH_AT=POINT[#N]` kills the process with
//! SIGKILL just before the N-th (default first) operation at POINT, so that a crash at a
//! chosen place in an intake, a commit or a GC can be reproduced exactly.
//!
//! A point is `OPERATION:FILE`:
//! * OPERATION is `create`, `write`, `sync`, `set_len`, `rename`, `sync_dir`, `remove`, `mkdir`
//!   or `remove_dir_all`;
//! * FILE is the kind of file or directory it concerns (for a rename, its new name): `log`,
//!   `block` (sealed), `open-block` (being written, under `blocks/open/`), `segment`,
//!   `open-segment`, `config`, `lock`, `cache`, or, for directories, `root` (the store's),
//!   `logdir`, `blocks`, `blocks-open`, `shard` (`blocks/<hh>`), `segments`, `segments-open`.
//!
//! A block is fsynced as `sync:open-block` and sealed by `rename:block`; a segment likewise
//! (`sync:open-segment`, `rename:segment`); a commit ends with `write:log` and `sync:log`.
//!
//! Besides storage operations, a remote client passes `remote:upload` before each upload and
//! `remote:commit` before its commit ([`reached`]).
//!
//! `ASL_CRASH_AT=trace` kills nothing and prints every point passed, with its count, to
//! standard error as `asl-crash-point POINT#N`: the list a test walks.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Entry, Local, LockError, LockGuard, ReadFile, Storage, WriteFile};

/// [`Local`] with crash points; see the module documentation. Clones share the counters.
#[derive(Debug, Clone)]
pub struct CrashPoints {
    points: Arc<Points>,
}

#[derive(Debug)]
struct Points {
    /// The point to die at and its count; `None` traces.
    target: Option<(String, u64)>,
    seen: Mutex<HashMap<String, u64>>,
}

/// The kind of file `path` is, by the names of `docs/FORMAT.md`.
pub fn file_kind(path: &Path) -> &'static str {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let grandparent = path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    match (&*grandparent, &*parent, &*name) {
        (_, "log", n) if n.starts_with("asl.log") => "log",
        (_, _, "log") => "logdir",
        (_, _, "blocks") => "blocks",
        (_, _, "segments") => "segments",
        (_, "blocks", "open") => "blocks-open",
        (_, "segments", "open") => "segments-open",
        ("blocks", "open", _) => "open-block",
        ("segments", "open", _) => "open-segment",
        (_, "blocks", n) if n.len() == 2 => "shard",
        (_, _, n) if n.ends_with(".blk") => "block",
        (_, "segments", _) => "segment",
        (_, "locks", _) | (_, _, "locks") => "lock",
        (_, _, n) if n == "config" || n.starts_with(".config.") => "config",
        _ if path.components().any(|c| c.as_os_str() == "cache") => "cache",
        _ => "root",
    }
}

impl CrashPoints {
    /// The crash points `ASL_CRASH_AT` asks for, if it is set: one set per process, shared
    /// by every store it opens and by [`reached`].
    pub fn from_env() -> Option<CrashPoints> {
        static GLOBAL: std::sync::OnceLock<Option<CrashPoints>> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let spec = std::env::var("ASL_CRASH_AT").ok()?;
                Some(CrashPoints::new(&spec))
            })
            .clone()
    }

    /// Crash points for `spec` (`POINT`, `POINT#N` or `trace`).
    pub fn new(spec: &str) -> CrashPoints {
        let target = (spec != "trace").then(|| match spec.rsplit_once('#') {
            Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
            None => (spec.to_string(), 1),
        });
        CrashPoints {
            points: Arc::new(Points {
                target,
                seen: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn pass(&self, operation: &str, path: &Path) {
        self.points.pass(operation, path);
    }

    fn wrap(&self, path: &Path, inner: Box<dyn WriteFile>) -> Box<dyn WriteFile> {
        Box::new(PointedWrite {
            points: self.points.clone(),
            path: path.to_path_buf(),
            inner,
        })
    }
}

/// Passes a named point that is not a storage operation (a remote client's `remote:upload`
/// before each upload, `remote:commit` before its commit): counted, traced and fatal like
/// the others when `ASL_CRASH_AT` names it.
pub fn reached(point: &str) {
    if let Some(points) = CrashPoints::from_env() {
        points.points.pass_point(point.to_string());
    }
}

impl Points {
    /// Counts the point `operation:kind(path)`; dies there if it is the one asked for.
    fn pass(&self, operation: &str, path: &Path) {
        self.pass_point(format!("{operation}:{}", file_kind(path)));
    }

    fn pass_point(&self, point: String) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let n = seen.entry(point.clone()).or_insert(0);
        *n += 1;
        match &self.target {
            None => eprintln!("asl-crash-point {point}#{n}"),
            Some((want, at)) if *want == point && *at == *n => {
                eprintln!("asl-crash-point {point}#{n}: killing the process here");
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
                // SIGKILL cannot be caught; this is not reached.
                std::process::abort();
            }
            Some(_) => {}
        }
    }
}

struct PointedWrite {
    points: Arc<Points>,
    path: std::path::PathBuf,
    inner: Box<dyn WriteFile>,
}

impl io::Write for PointedWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.points.pass("write", &self.path);
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl WriteFile for PointedWrite {
    fn sync(&mut self) -> io::Result<()> {
        self.points.pass("sync", &self.path);
        self.inner.sync()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.points.pass("set_len", &self.path);
        self.inner.set_len(len)
    }
}

impl Storage for CrashPoints {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.pass("create", path);
        Ok(self.wrap(path, Local.create(path)?))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.pass("create", path);
        Ok(self.wrap(path, Local.create_new(path)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(self.wrap(path, Local.open_append(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Local.open(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        Local.read(path)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        Local.len(path)
    }
    fn exists(&self, path: &Path) -> bool {
        Local.exists(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        Local.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.pass("rename", to);
        Local.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.pass("sync_dir", dir);
        Local.sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.pass("remove", path);
        Local.remove_file(path)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.pass("mkdir", dir);
        Local.create_dir_all(dir)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.pass("remove_dir_all", dir);
        Local.remove_dir_all(dir)
    }
    fn try_lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockError> {
        Local.try_lock(path, holder)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>> {
        Local.lock_dir(dir)
    }
}
