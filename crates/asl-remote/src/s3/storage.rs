//! [`S3Storage`]: a store's storage in an S3 bucket (any S3-compatible engine).
//!
//! How the store's files map to objects (`docs/FORMAT.md`, "Stores in an S3 bucket"):
//! * a file the store writes under a temporary name (a name starting with `.`, ending in
//!   `.tmp`, or in a directory named `open`) stays in this process's memory; the rename to
//!   its final name is one PUT of the whole file. A crash before the rename loses it, which
//!   the storage contract allows: the temporary's name was never made durable;
//! * the log, `log/asl.log`, is a sequence of objects `log/asl.log.parts/NNNNNNNNNNNNNNNNNNNN`
//!   (20 decimal digits). Each [`crate::s3::storage`] sync of the log PUTs the bytes appended
//!   since the last one as the next part, with `If-None-Match: *`; a cut below what is
//!   durable PUTs a *base* part holding the whole log up to the cut. Reading the log is
//!   reading the parts from the last base on;
//! * every other file is one object, PUT at each sync; directories are key prefixes;
//! * the writer lock, `locks/writer.lock`, is a lease object (see [`lease`]).
//!
//! Every PUT is durable when it returns, so syncing a directory does nothing. Log parts and
//! sealed segments are immutable once written, so once read they are kept in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asl_store::storage::{Entry, LockError, LockGuard, ReadFile, Storage, WriteFile};

use super::client::{Client, Cond, S3Error};
use super::lease::{self, Fence, LeaseParams};

/// A log part: a kind byte, the fencing token of the writer that wrote it, then log bytes.
const PART_APPEND: u8 = b'a';
const PART_BASE: u8 = b'b';
const PART_HEADER: usize = 9;

/// Where in a bucket a store is, and how writers share it.
#[derive(Debug, Clone)]
pub struct S3Location {
    pub endpoint: super::client::Endpoint,
    /// Key prefix of the store, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// How long the engine's transport failures and 5xx answers are retried.
    pub retry: Duration,
    pub lease: LeaseParams,
}

pub struct S3Storage {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    /// The store's root as a path: `s3://BUCKET/PREFIX`; errors name files under it.
    root: PathBuf,
    /// `PREFIX/`, or empty.
    prefix: String,
    /// Whether the engine refuses a PUT whose `If-None-Match`/`If-Match` does not hold
    /// (probed when connecting).
    pub(crate) conditional: bool,
    pub(crate) lease: LeaseParams,
    temps: Mutex<HashMap<PathBuf, Arc<Mutex<Vec<u8>>>>>,
    dirs: Mutex<BTreeSet<PathBuf>>,
    /// Objects never rewritten under their key, as read: log parts and sealed segments
    /// (a server re-reads every segment after each commit; they never change).
    parts: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Pages of sealed blocks recently read (see [`super::pages`]).
    pages: super::pages::PageCache,
    /// The writer lease this process holds on the store, which every write checks.
    pub(crate) fence: Mutex<Option<Arc<Fence>>>,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("root", &self.inner.root)
            .field("conditional", &self.inner.conditional)
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// Connects to the bucket and probes whether the engine honours conditional writes.
    pub fn connect(loc: &S3Location) -> io::Result<S3Storage> {
        let mut client = Client::new(loc.endpoint.clone());
        client.retry_for = loc.retry;
        let prefix = loc.prefix.trim_matches('/');
        let root = PathBuf::from(format!(
            "s3://{}{}{}",
            loc.endpoint.bucket,
            if prefix.is_empty() { "" } else { "/" },
            prefix
        ));
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let conditional = probe_conditional(&client, &prefix)?;
        Ok(S3Storage {
            inner: Arc::new(Inner {
                client,
                root,
                prefix,
                conditional,
                lease: loc.lease.clone(),
                temps: Mutex::default(),
                dirs: Mutex::default(),
                parts: Mutex::default(),
                pages: super::pages::PageCache::default(),
                fence: Mutex::default(),
            }),
        })
    }

    /// The store's root path: open the store with `Layout::on(storage, root)`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Whether the engine honours `If-None-Match`/`If-Match` on PUT (then two writers are
    /// kept apart exactly; otherwise by the lease's timing, see `docs/asl-server.md`).
    pub fn conditional_writes(&self) -> bool {
        self.inner.conditional
    }
}

/// PUTs a probe object twice with `If-None-Match: *`: an engine that honours it refuses the
/// second.
fn probe_conditional(client: &Client, prefix: &str) -> io::Result<bool> {
    // At the store's root, where listings skip `.asl-` names: a store being created meanwhile
    // by another server must still find its root empty.
    let key = format!("{prefix}.asl-probe-{}", lease::nonce());
    client.put(&key, b"probe", Cond::Absent)?;
    let honoured = match client.put(&key, b"probe", Cond::Absent) {
        Ok(_) => false,
        Err(S3Error::PreconditionFailed { .. }) => true,
        Err(e) => return Err(e.into()),
    };
    client.delete(&key)?;
    Ok(honoured)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A sealed index segment, `segments/<id>.seg`: written once under its name, never changed.
fn is_sealed_segment(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "seg")
        && path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "segments")
}

/// `blocks/XX/HASH.blk`: a sealed block, named by the hash of its bytes, so never rewritten.
fn is_sealed_block(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "blk")
        && path
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .is_some_and(|d| d == "blocks")
}

fn is_temp(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let in_open = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "open");
    name.starts_with('.') || name.ends_with(".tmp") || in_open
}

impl Inner {
    /// The object key of a path under the root.
    fn key(&self, path: &Path) -> io::Result<String> {
        let rel = path.strip_prefix(&self.root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is outside the store {}",
                    path.display(),
                    self.root.display()
                ),
            )
        })?;
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        Ok(format!("{}{}", self.prefix, rel.join("/")))
    }

    /// The prefix of the keys inside a directory (ends in `/`, or is empty for the root of a
    /// store at the bucket's root).
    fn dir_prefix(&self, dir: &Path) -> io::Result<String> {
        let k = self.key(dir)?;
        Ok(if k.is_empty() || k.ends_with('/') {
            k
        } else {
            format!("{k}/")
        })
    }

    fn is_log(&self, path: &Path) -> bool {
        path == self.root.join("log").join("asl.log")
    }

    fn parts_prefix(&self, log: &Path) -> io::Result<String> {
        Ok(format!("{}.parts/", self.key(log)?))
    }

    /// Refuses a write when this process's writer lease is lost or about to end; returns
    /// the instant after which no request of the write may start.
    fn fence(&self, path: &Path) -> io::Result<Option<Instant>> {
        match &*lock(&self.fence) {
            None => Ok(None),
            Some(f) => f.check(path).map(Some),
        }
    }

    fn put(&self, path: &Path, key: &str, body: &[u8], cond: Cond) -> io::Result<()> {
        let deadline = self.fence(path)?;
        self.client.put_before(key, body, cond, deadline)?;
        Ok(())
    }

    /// The log's parts in order: `(number, key)`.
    fn list_parts(&self, log: &Path) -> io::Result<Vec<(u64, String)>> {
        let prefix = self.parts_prefix(log)?;
        let mut parts: Vec<(u64, String)> = self
            .client
            .list_all(&prefix)?
            .into_iter()
            .filter_map(|o| Some((o.key[prefix.len()..].parse().ok()?, o.key)))
            .collect();
        parts.sort();
        Ok(parts)
    }

    /// The log's bytes and the number of its next part; `NotFound` when it has no part.
    fn read_log(&self, log: &Path) -> io::Result<(Vec<u8>, u64)> {
        let parts = self.list_parts(log)?;
        let Some(last) = parts.last() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no log part", log.display()),
            ));
        };
        let next = last.0 + 1;
        let mut bodies = Vec::with_capacity(parts.len());
        for (_, key) in &parts {
            let cached = lock(&self.parts).get(key).cloned();
            let body = match cached {
                Some(b) => b,
                None => {
                    let (b, _) = self.client.get(key)?.ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{}: log part {key} vanished while read", log.display()),
                        )
                    })?;
                    if b.len() < PART_HEADER || !matches!(b[0], PART_APPEND | PART_BASE) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: log part {key} has no part header", log.display()),
                        ));
                    }
                    let b = Arc::new(b);
                    lock(&self.parts).insert(key.clone(), b.clone());
                    b
                }
            };
            bodies.push(body);
        }
        let from = bodies.iter().rposition(|b| b[0] == PART_BASE).unwrap_or(0);
        let mut out = Vec::new();
        for b in &bodies[from..] {
            out.extend_from_slice(&b[PART_HEADER..]);
        }
        Ok((out, next))
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        if path == self.root || lock(&self.dirs).contains(path) {
            return Ok(true);
        }
        let l = self.client.list(&self.dir_prefix(path)?)?;
        Ok(!l.objects.is_empty() || !l.prefixes.is_empty())
    }
}

/// A temporary file: bytes in memory until the rename.
struct TempFile {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl io::Write for TempFile {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        lock(&self.buf).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteFile for TempFile {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        lock(&self.buf).resize(len as usize, 0);
        Ok(())
    }
}

/// A file kept as one object, PUT whole at every sync.
struct ObjectFile {
    inner: Arc<Inner>,
    path: PathBuf,
    key: String,
    buf: Vec<u8>,
    /// The first sync must not replace an object (the file was made with `create_new`).
    must_be_new: bool,
}

impl io::Write for ObjectFile {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteFile for ObjectFile {
    fn sync(&mut self) -> io::Result<()> {
        let cond = if self.must_be_new {
            Cond::Absent
        } else {
            Cond::None
        };
        self.inner.put(&self.path, &self.key, &self.buf, cond)?;
        self.must_be_new = false;
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.buf.resize(len as usize, 0);
        Ok(())
    }
}

/// The log open for writing: appended bytes become one part at each sync.
struct LogFile {
    inner: Arc<Inner>,
    path: PathBuf,
    parts: String,
    /// Bytes of the log already in parts.
    durable_len: u64,
    pending: Vec<u8>,
    /// After a cut below `durable_len`: the whole log as the next (base) part will hold it.
    base: Option<Vec<u8>>,
    next: u64,
}

impl io::Write for LogFile {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match &mut self.base {
            Some(base) => base.extend_from_slice(b),
            None => self.pending.extend_from_slice(b),
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteFile for LogFile {
    fn sync(&mut self) -> io::Result<()> {
        let (kind, bytes) = match &self.base {
            Some(b) => (PART_BASE, b.as_slice()),
            None if self.pending.is_empty() => return Ok(()),
            None => (PART_APPEND, self.pending.as_slice()),
        };
        let token = lock(&self.inner.fence).as_ref().map_or(0, |f| f.token);
        let mut body = Vec::with_capacity(PART_HEADER + bytes.len());
        body.push(kind);
        body.extend_from_slice(&token.to_le_bytes());
        body.extend_from_slice(bytes);
        let key = format!("{}{:020}", self.parts, self.next);
        match self.inner.put(&self.path, &key, &body, Cond::Absent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(io::Error::other(format!(
                    "{}: part {} was written by another writer meanwhile; this writer stops \
                     (open the store again)",
                    self.path.display(),
                    self.next
                )));
            }
            Err(e) => return Err(e),
        }
        lock(&self.inner.parts).insert(key, Arc::new(body));
        self.next += 1;
        match self.base.take() {
            Some(b) => self.durable_len = b.len() as u64,
            None => {
                self.durable_len += self.pending.len() as u64;
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if let Some(base) = &mut self.base {
            base.resize(len as usize, 0);
        } else if len >= self.durable_len {
            self.pending.resize((len - self.durable_len) as usize, 0);
        } else {
            let (mut all, _) = self.inner.read_log(&self.path)?;
            all.resize(len as usize, 0);
            self.pending.clear();
            self.base = Some(all);
        }
        Ok(())
    }
}

/// A file read with ranged GETs.
struct ObjectRead {
    inner: Arc<Inner>,
    path: PathBuf,
    key: String,
    size: u64,
}

impl ReadFile for ObjectRead {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: read past its end", self.path.display()),
            ));
        }
        let gone = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: gone", self.path.display()),
            )
        };
        if is_sealed_block(&self.path) {
            let short = || {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: short read", self.path.display()),
                )
            };
            return self.inner.pages.read(
                &self.key,
                self.size,
                offset,
                buf,
                |at, len| {
                    self.inner
                        .client
                        .get_range(&self.key, at, len)?
                        .ok_or_else(gone)
                },
                short,
            );
        }
        let got = self
            .inner
            .client
            .get_range(&self.key, offset, buf.len() as u64)?
            .ok_or_else(gone)?;
        if got.len() != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: short read", self.path.display()),
            ));
        }
        buf.copy_from_slice(&got);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
}

/// A file whose bytes were read whole (the log, a temporary).
struct MemRead(Vec<u8>);

impl ReadFile for MemRead {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self
            .0
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such object", path.display()),
    )
}

impl Storage for S3Storage {
    /// Every read is an HTTP request: the index is held in memory, not searched in runs.
    fn cheap_random_reads(&self) -> bool {
        false
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let inner = &self.inner;
        if is_temp(path) {
            let buf = Arc::new(Mutex::new(Vec::new()));
            lock(&inner.temps).insert(path.to_path_buf(), buf.clone());
            return Ok(Box::new(TempFile { buf }));
        }
        if inner.is_log(path) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: the log is only created new and appended to",
                    path.display()
                ),
            ));
        }
        Ok(Box::new(ObjectFile {
            inner: inner.clone(),
            path: path.to_path_buf(),
            key: inner.key(path)?,
            buf: Vec::new(),
            must_be_new: false,
        }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let inner = &self.inner;
        let exists = || io::Error::new(io::ErrorKind::AlreadyExists, path.display().to_string());
        if is_temp(path) {
            if lock(&inner.temps).contains_key(path) {
                return Err(exists());
            }
            return self.create(path);
        }
        if inner.is_log(path) {
            if !inner.list_parts(path)?.is_empty() {
                return Err(exists());
            }
            return Ok(Box::new(LogFile {
                inner: inner.clone(),
                path: path.to_path_buf(),
                parts: inner.parts_prefix(path)?,
                durable_len: 0,
                pending: Vec::new(),
                base: None,
                next: 0,
            }));
        }
        let key = inner.key(path)?;
        if inner.client.head(&key)?.is_some() {
            return Err(exists());
        }
        Ok(Box::new(ObjectFile {
            inner: inner.clone(),
            path: path.to_path_buf(),
            key,
            buf: Vec::new(),
            must_be_new: true,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let inner = &self.inner;
        if let Some(buf) = lock(&inner.temps).get(path) {
            return Ok(Box::new(TempFile { buf: buf.clone() }));
        }
        if inner.is_log(path) {
            let (bytes, next) = inner.read_log(path)?;
            return Ok(Box::new(LogFile {
                inner: inner.clone(),
                path: path.to_path_buf(),
                parts: inner.parts_prefix(path)?,
                durable_len: bytes.len() as u64,
                pending: Vec::new(),
                base: None,
                next,
            }));
        }
        let key = inner.key(path)?;
        let (buf, _) = inner.client.get(&key)?.ok_or_else(|| not_found(path))?;
        Ok(Box::new(ObjectFile {
            inner: inner.clone(),
            path: path.to_path_buf(),
            key,
            buf,
            must_be_new: false,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        let inner = &self.inner;
        if let Some(buf) = lock(&inner.temps).get(path) {
            return Ok(Arc::new(MemRead(lock(buf).clone())));
        }
        if inner.is_log(path) {
            return Ok(Arc::new(MemRead(inner.read_log(path)?.0)));
        }
        let key = inner.key(path)?;
        let sealed = is_sealed_block(path);
        let size = match sealed.then(|| inner.pages.size(&key)).flatten() {
            Some(size) => size,
            None => {
                let size = inner.client.head(&key)?.ok_or_else(|| not_found(path))?;
                if sealed {
                    inner.pages.set_size(&key, size);
                }
                size
            }
        };
        Ok(Arc::new(ObjectRead {
            inner: inner.clone(),
            path: path.to_path_buf(),
            key,
            size,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let inner = &self.inner;
        if let Some(buf) = lock(&inner.temps).get(path) {
            return Ok(lock(buf).clone());
        }
        if inner.is_log(path) {
            return Ok(inner.read_log(path)?.0);
        }
        let key = inner.key(path)?;
        let sealed = is_sealed_segment(path);
        if sealed && let Some(b) = lock(&inner.parts).get(&key) {
            return Ok(b.to_vec());
        }
        let bytes = inner.client.get(&key)?.ok_or_else(|| not_found(path))?.0;
        if sealed {
            lock(&inner.parts).insert(key, Arc::new(bytes.clone()));
        }
        Ok(bytes)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let inner = &self.inner;
        if let Some(buf) = lock(&inner.temps).get(path) {
            return Ok(lock(buf).len() as u64);
        }
        if inner.is_log(path) {
            return Ok(inner.read_log(path)?.0.len() as u64);
        }
        if path != inner.root
            && let Some(size) = inner.client.head(&inner.key(path)?)?
        {
            return Ok(size);
        }
        if inner.is_dir(path)? {
            return Ok(0);
        }
        Err(not_found(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        let inner = &self.inner;
        let prefix = inner.dir_prefix(dir)?;
        let listing = inner.client.list(&prefix)?;
        let mut names: BTreeMap<String, bool> = BTreeMap::new();
        for o in listing.objects {
            let name = &o.key[prefix.len()..];
            if !name.is_empty() && !name.starts_with(".asl-") {
                names.insert(name.to_string(), false);
            }
        }
        for p in listing.prefixes {
            let name = p[prefix.len()..].trim_end_matches('/');
            if inner.is_log(&dir.join(name.trim_end_matches(".parts"))) && name.ends_with(".parts")
            {
                names.insert(name.trim_end_matches(".parts").to_string(), false);
            } else if !name.is_empty() {
                names.insert(name.to_string(), true);
            }
        }
        for p in lock(&inner.temps).keys() {
            if p.parent() == Some(dir)
                && let Some(n) = p.file_name()
            {
                names.insert(n.to_string_lossy().into_owned(), false);
            }
        }
        for p in lock(&inner.dirs).iter() {
            if p.parent() == Some(dir)
                && let Some(n) = p.file_name()
            {
                names
                    .entry(n.to_string_lossy().into_owned())
                    .or_insert(true);
            }
        }
        Ok(names
            .into_iter()
            .map(|(name, is_dir)| Entry {
                name,
                is_dir,
                is_file: !is_dir,
            })
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let inner = &self.inner;
        let to_key = inner.key(to)?;
        let temp = lock(&inner.temps).get(from).cloned();
        if let Some(buf) = temp {
            let bytes = lock(&buf).clone();
            inner.put(to, &to_key, &bytes, Cond::None)?;
            lock(&inner.temps).remove(from);
            return Ok(());
        }
        let from_key = inner.key(from)?;
        let (bytes, _) = inner
            .client
            .get(&from_key)?
            .ok_or_else(|| not_found(from))?;
        inner.put(to, &to_key, &bytes, Cond::None)?;
        inner.fence(from)?;
        inner.client.delete(&from_key)?;
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        // Every PUT and DELETE is durable when it returns.
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let inner = &self.inner;
        if lock(&inner.temps).remove(path).is_some() {
            return Ok(());
        }
        let key = inner.key(path)?;
        if inner.client.head(&key)?.is_none() {
            return Err(not_found(path));
        }
        inner.fence(path)?;
        inner.client.delete(&key)?;
        lock(&inner.parts).remove(&key);
        inner.pages.forget(Some(&key));
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let inner = &self.inner;
        inner.key(dir)?;
        let mut dirs = lock(&inner.dirs);
        let mut d = Some(dir);
        while let Some(p) = d {
            if p == inner.root || !p.starts_with(&inner.root) {
                break;
            }
            dirs.insert(p.to_path_buf());
            d = p.parent();
        }
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let inner = &self.inner;
        let prefix = inner.dir_prefix(dir)?;
        inner.fence(dir)?;
        for o in inner.client.list_all(&prefix)? {
            inner.client.delete(&o.key)?;
        }
        lock(&inner.temps).retain(|p, _| !p.starts_with(dir));
        lock(&inner.dirs).retain(|p| !p.starts_with(dir));
        inner.pages.forget(None);
        Ok(())
    }

    fn try_lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockError> {
        let key = self.inner.key(path).map_err(LockError::Io)?;
        let guard = lease::acquire(&self.inner, path, &key, holder, true)?;
        Ok(Box::new(guard))
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>> {
        let key = format!("{}.asl-lock", self.inner.dir_prefix(dir)?);
        let path = dir.join(".asl-lock");
        let started = Instant::now();
        loop {
            match lease::acquire(&self.inner, &path, &key, "creating the store", false) {
                Ok(g) => return Ok(Box::new(g)),
                Err(LockError::Io(e)) => return Err(e),
                Err(LockError::Held(_)) if started.elapsed() < self.inner.lease.ttl * 3 => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(LockError::Held(h)) => {
                    return Err(io::Error::other(format!(
                        "{}: held by {h} for longer than three lease periods",
                        path.display()
                    )));
                }
            }
        }
    }
}
