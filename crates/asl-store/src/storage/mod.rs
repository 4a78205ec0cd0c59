//! The storage seam: every byte a store keeps durably is read and written through [`Storage`].
//!
//! The store's crash safety rests on the POSIX durability rules, which this trait spells out
//! as its contract:
//! * bytes written to a file are durable only once [`WriteFile::sync`] returned;
//! * a file's *name* (its creation, a rename onto it, its removal) is durable only once
//!   [`Storage::sync_dir`] of the directory holding it returned; the same holds for a
//!   directory made by [`Storage::create_dir_all`], whose parent must be synced;
//! * after a crash, whatever was not durable may be lost, kept, or kept in part.
//!
//! Paths are the store's root joined with the names of `docs/FORMAT.md`, so errors name the
//! real file. Three implementations:
//! * [`Local`], the local file system (what every tool uses);
//! * [`sim::SimStorage`], an in-memory file system that follows the rules above to the
//!   letter and can, at any numbered operation, cut the power (dropping or tearing what is
//!   not durable) or fail with EIO or ENOSPC: the crash matrix runs the store on it;
//! * [`crash_points::CrashPoints`], which wraps [`Local`] and kills the process at a named
//!   operation (`ASL_CRASH_AT`), so a SIGKILL of the real binary at a chosen point can be
//!   reproduced.
//!
//! An object store (S3) can implement the trait too, because the store only ever uses files
//! in three ways: a file is written once from start to end, synced, then renamed to its final
//! name (blocks, segments, the config) — an object PUT at the rename; the log is only
//! appended to and cut — a sequence of objects; everything else is listing, whole or ranged
//! reads, and removal.

pub mod crash_points;
mod local;
pub mod sim;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use local::Local;

/// A file opened for writing: bytes go to its end.
pub trait WriteFile: io::Write + Send + Sync {
    /// Makes every byte written so far, and the file's length, durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len` bytes; later writes go to the new end.
    /// Not durable before [`WriteFile::sync`].
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// A file opened for reading at any offset, from many threads.
pub trait ReadFile: Send + Sync {
    /// Fills `buf` from `offset`; `UnexpectedEof` when the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
}

/// A name in a directory, as [`Storage::list`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    /// A regular file (not a directory, a symlink or anything else).
    pub is_file: bool,
}

/// Held while a lock taken by [`Storage::try_lock`] is held; dropping it releases the lock.
pub trait LockGuard: Send + Sync + Debug {}

/// Why [`Storage::try_lock`] did not take a lock.
#[derive(Debug)]
pub enum LockError {
    /// Another holder has it; what it wrote of itself (`PID HOST`).
    Held(String),
    Io(io::Error),
}

/// The durable storage a store lives in. See the module documentation for the contract.
pub trait Storage: Send + Sync + Debug {
    /// Creates `path` empty for writing, replacing a file of that name.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Creates `path` for writing; fails with `AlreadyExists` when it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens an existing file to append to it.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens an existing file for reading.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path)?;
        let mut buf = vec![0u8; usize::try_from(f.size()?).map_err(io::Error::other)?];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
    /// The length of a file; `NotFound` when there is none (a directory has length 0).
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Whether a file or directory of that name exists.
    fn exists(&self, path: &Path) -> bool {
        self.len(path).is_ok()
    }
    /// The names in a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>>;
    /// Renames a file, replacing what `to` named.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the names in `dir` durable: creations, renames and removals inside it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it (only derived caches are removed this way).
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock named `path` without waiting, recording `holder` in it. The
    /// lock must end with its holder's process, so a killed holder never blocks the next.
    fn try_lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockError>;
    /// Waits for an exclusive lock on the directory `dir` (creating it), which serialises
    /// the creation of a store.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>>;
    /// Whether reading a few KiB at a random offset is cheap (a local disk), so that an
    /// index far larger than memory can be searched on disk (`crate::index`). An object
    /// store answers no: there the whole index is held in memory.
    fn cheap_random_reads(&self) -> bool {
        true
    }
}

/// The storage of stores opened by path: the local file system, with the crash points of
/// `ASL_CRASH_AT` when that variable is set (read once: a process counts its points over
/// every store it opens).
pub fn default_storage() -> Arc<dyn Storage> {
    static DEFAULT: std::sync::OnceLock<Arc<dyn Storage>> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| match crash_points::CrashPoints::from_env() {
            Some(points) => Arc::new(points),
            None => Arc::new(Local),
        })
        .clone()
}

/// Writes `bytes` to `path` atomically and durably: temp file in the same directory, sync,
/// rename, sync of the directory. A crash leaves either the old file or the new one.
pub(crate) fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = storage.create(&tmp)?;
    f.write_all(bytes)?;
    f.sync()?;
    drop(f);
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}

/// Creates `dir` (whose parent exists) durably when it is missing: the directory, then a
/// sync of its parent, so that what is later made durable inside it cannot be lost with it.
pub(crate) fn create_dir_durable(storage: &dyn Storage, dir: &Path) -> io::Result<()> {
    if storage.exists(dir) {
        return Ok(());
    }
    storage.create_dir_all(dir)?;
    storage.sync_dir(dir.parent().unwrap_or(Path::new("/")))
}
