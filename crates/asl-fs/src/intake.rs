//! Intake: file trees into tree artifacts, in parallel.
//!
//! The pipeline has three stages:
//! 1. **Walk** (the calling thread): reads each directory once, sorts its names, `lstat`s every
//!    entry, reads symlink targets and xattrs, consults the stat cache, and hands every
//!    regular file that must be read to the workers through a bounded queue. The walk stays
//!    ahead of the workers by the queue's length.
//! 2. **Read** (`threads` workers): open (`O_NOATIME` when allowed), read with large buffers
//!    and feed [`ArtifactWrite::put_bytes`]/[`ArtifactWrite::put_reader`], which chunk, hash,
//!    compress and deduplicate. Holes of sparse files are fed as zeros without reading them.
//!    A file whose `stat` differs after reading is flagged "changed during read".
//! 3. **Trees** (the calling thread, after the workers): hardlink groups are numbered, then
//!    directories are encoded bottom-up and stored as `TypeTag::TREE`.
//!
//! Every entry's metadata comes from the walk, every content from exactly one read, and
//! entries are ordered by name: the root reference depends only on the input tree, never on
//! the thread count or on scheduling.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use asl_store::{AccessError, ArtifactWrite, Put, Reference, TypeTag};
use crossbeam_channel as chan;
use globset::{Glob, GlobSet, GlobSetBuilder};
use rustix::fs::{CWD, FileType, OFlags, Stat};

use crate::statcache::{CachedContent, FileIdentity, StatCache};
use crate::sys;
use crate::tree::{Entry, EntryError, Hole, Kind, Operation, TreeError, encode_entries};

/// Files up to this size are read into a per-worker buffer and stored with one `put_bytes`.
const SMALL_FILE: u64 = 1 << 20;
/// Jobs the walk may queue ahead of the workers.
const QUEUE_LEN: usize = 4096;
/// A file whose ctime is this close to the end of its read is not put in the stat cache:
/// a later change within the same timestamp tick would leave (size, mtime, ctime) unchanged
/// and a stale cache hit would follow ("racy git"). Kernel timestamps advance at least every
/// 10 ms (HZ=100); 50 ms leaves a margin for the coarse clock lagging the real one.
const RACY_MARGIN_NS: i128 = 50_000_000;

/// A hook tests use to act on a file at a precise point: called by the worker right after it
/// opened the file and took its first `fstat`, before reading.
pub type OpenHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// How to take a tree in.
#[derive(Clone, Default)]
pub struct IntakeOptions {
    /// Worker threads reading files; 0 = available parallelism.
    pub threads: usize,
    /// Glob patterns; an entry whose full path or whose name matches is left out.
    pub excludes: Vec<String>,
    /// Do not descend into directories on another filesystem (they are recorded, empty).
    pub one_file_system: bool,
    /// Where the stat cache lives (read at the start, rewritten at the end). `None`: no cache.
    pub stat_cache: Option<PathBuf>,
    #[doc(hidden)]
    pub after_open: Option<OpenHook>,
}

impl std::fmt::Debug for IntakeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeOptions")
            .field("threads", &self.threads)
            .field("excludes", &self.excludes)
            .field("one_file_system", &self.one_file_system)
            .field("stat_cache", &self.stat_cache)
            .finish()
    }
}

/// Live counters for a progress display; updated by the walk and the workers.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries of every kind seen by the walk.
    pub entries: AtomicU64,
    /// Regular files whose content is known (read or taken from the stat cache).
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_new: AtomicU64,
    pub errors: AtomicU64,
    current: Mutex<PathBuf>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// The directory or large file being worked on.
    pub fn current_path(&self) -> PathBuf {
        self.current.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn set_current(&self, p: &[u8]) {
        if let Ok(mut c) = self.current.try_lock() {
            c.clear();
            c.push(OsStr::from_bytes(p));
        }
    }
}

/// One input that could not be taken in (fully).
#[derive(Debug, Clone, serde::Serialize)]
pub struct IntakeErrorRecord {
    #[serde(serialize_with = "ser_path_lossy")]
    pub path: PathBuf,
    pub op: Operation,
    pub errno: i32,
    pub message: String,
}

fn ser_path_lossy<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// What an intake did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IntakeSummary {
    /// The root tree artifact.
    pub root: Reference,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and devices.
    pub specials: u64,
    /// Logical bytes of all regular files (holes included).
    pub bytes_total: u64,
    /// Bytes actually read from files (holes and stat-cache hits are not read).
    pub bytes_read: u64,
    /// Bytes of new chunk data the store took (before compression), trees included.
    pub bytes_new: u64,
    /// Bytes offered to the store (file contents and tree artifacts).
    pub bytes_stored: u64,
    pub chunks: u64,
    pub new_chunks: u64,
    /// Files opened for reading (an unchanged re-intake opens none).
    pub files_opened: u64,
    pub stat_cache_hits: u64,
    pub excluded: u64,
    pub changed_during_read: u64,
    pub errors: Vec<IntakeErrorRecord>,
    /// Set when the stat cache could not be written (the intake itself is complete).
    pub stat_cache_warning: Option<String>,
    pub seconds: f64,
}

impl IntakeSummary {
    /// Bytes offered / new bytes (∞ when nothing was new).
    pub fn dedup_ratio(&self) -> f64 {
        if self.bytes_new == 0 {
            f64::INFINITY
        } else {
            self.bytes_stored as f64 / self.bytes_new as f64
        }
    }
}

/// Why an intake could not complete (nothing of it is referenced by a snapshot).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("no path given to take in")]
    NoPaths,
    #[error("cannot take in {path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot be one of several inputs (it has no last path component)")]
    NoName { path: PathBuf },
    #[error(
        "{a} and {b} would both be named '{name}' in the snapshot's root; take them in separately"
    )]
    DuplicateName {
        a: PathBuf,
        b: PathBuf,
        name: String,
    },
    #[error("invalid --exclude pattern '{pattern}': {message}")]
    BadExclude { pattern: String, message: String },
    #[error("the store failed while storing {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: AccessError,
    },
    #[error("cannot encode the tree of {path}: {source}")]
    Tree {
        path: PathBuf,
        #[source]
        source: TreeError,
    },
}

/// One walked entry.
struct Node {
    entry: Entry,
    parent: u32,
    /// Directories: their children are `nodes[first_child..first_child + child_count]`,
    /// sorted by name.
    first_child: u32,
    child_count: u32,
    /// Non-directories with more than one link: (dev, ino).
    link_key: Option<(u64, u64)>,
    /// Later members of a hardlink group take their content from this node.
    link_first: Option<u32>,
}

impl Node {
    fn new(entry: Entry, parent: u32) -> Node {
        Node {
            entry,
            parent,
            first_child: 0,
            child_count: 0,
            link_key: None,
            link_first: None,
        }
    }
}

struct Job {
    node: u32,
    path: CString,
    pre: FileIdentity,
}

/// The outcome of reading one file.
struct FileOutcome {
    node: u32,
    put: Option<Put>,
    holes: Vec<Hole>,
    changed: bool,
    error: Option<(EntryError, String)>,
    bytes_read: u64,
    opened: bool,
    cacheable: Option<FileIdentity>,
    fatal: Option<AccessError>,
}

/// Counters the workers share.
struct Shared<'a> {
    store: &'a dyn ArtifactWrite,
    progress: &'a Progress,
    noatime: AtomicBool,
    abort: AtomicBool,
    after_open: Option<OpenHook>,
}

/// Takes the trees at `paths` into `store` and returns the summary with the root reference.
///
/// One path that is a directory: the root tree is that directory's tree. Otherwise (one
/// file, or several paths) the root tree is a synthetic directory whose entries are the
/// paths' last components. Unreadable inputs below the given paths are recorded as error
/// entries and counted in the summary; only a failure of the store or of a given path itself
/// stops the intake.
pub fn intake(
    store: &dyn ArtifactWrite,
    paths: &[PathBuf],
    opts: &IntakeOptions,
    progress: &Progress,
) -> Result<IntakeSummary, IntakeError> {
    let started = Instant::now();
    if paths.is_empty() {
        return Err(IntakeError::NoPaths);
    }
    let excludes = build_excludes(&opts.excludes)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let old_cache = match &opts.stat_cache {
        Some(p) => StatCache::load(p),
        None => StatCache::new(),
    };

    let mut walk = Walk {
        nodes: Vec::with_capacity(1024),
        excludes,
        one_file_system: opts.one_file_system,
        old_cache: &old_cache,
        new_cache: StatCache::new(),
        links: HashMap::new(),
        errors: Vec::new(),
        excluded: 0,
        cache_hits: 0,
        store,
        progress,
        dir_paths: HashMap::new(),
        dir_buf: Vec::new(),
    };
    // Node 0: the synthetic root holding the given paths.
    walk.nodes
        .push(Node::new(Entry::new(Vec::new(), Kind::Dir), 0));
    let tops = walk.top_level(paths)?;

    let shared = Shared {
        store,
        progress,
        noatime: AtomicBool::new(true),
        abort: AtomicBool::new(false),
        after_open: opts.after_open.clone(),
    };
    let (job_tx, job_rx) = chan::bounded::<Job>(QUEUE_LEN);
    let (res_tx, res_rx) = chan::unbounded::<FileOutcome>();
    let mut outcomes = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let rx = job_rx.clone();
            let tx = res_tx.clone();
            let shared = &shared;
            scope.spawn(move || worker(shared, rx, tx));
        }
        drop(res_tx);
        drop(job_rx);
        walk.run(&tops, &job_tx, &shared);
        drop(job_tx);
        outcomes.extend(res_rx.iter());
    });

    let mut totals = Totals::default();
    let mut fatal = None;
    for o in outcomes {
        if let Some(e) = o.fatal {
            let path = walk.path_of(o.node);
            fatal.get_or_insert(IntakeError::Store { path, source: e });
            continue;
        }
        walk.apply_outcome(o, &mut totals);
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    walk.resolve_hardlinks();
    // The stat cache is complete once every outcome is in; writing it (megabytes and an
    // fsync) happens beside the tree building, the single-threaded tail of an intake.
    let new_cache = std::mem::take(&mut walk.new_cache);
    let (root, stat_cache_warning) = std::thread::scope(|scope| {
        let saver = scope.spawn(|| {
            let p = opts.stat_cache.as_ref()?;
            new_cache
                .save(p)
                .err()
                .map(|e| format!("cannot write the stat cache {}: {e}", p.display()))
        });
        let root = walk.build_trees(&tops, &mut totals);
        let warning = saver
            .join()
            .unwrap_or_else(|_| Some("the stat cache writer panicked".into()));
        (root, warning)
    });
    let root = root?;
    let mut s = IntakeSummary {
        root,
        files: 0,
        dirs: 0,
        symlinks: 0,
        specials: 0,
        bytes_total: 0,
        bytes_read: totals.bytes_read,
        bytes_new: totals.bytes_new,
        bytes_stored: totals.bytes_stored,
        chunks: totals.chunks,
        new_chunks: totals.new_chunks,
        files_opened: totals.opened,
        stat_cache_hits: walk.cache_hits,
        excluded: walk.excluded,
        changed_during_read: 0,
        errors: std::mem::take(&mut walk.errors),
        stat_cache_warning,
        seconds: 0.0,
    };
    for n in walk.nodes.iter().skip(1) {
        match n.entry.kind {
            Kind::File => {
                s.files += 1;
                s.bytes_total += n.entry.size;
                s.changed_during_read += u64::from(n.entry.changed_during_read);
            }
            Kind::Dir => s.dirs += 1,
            Kind::Symlink => s.symlinks += 1,
            Kind::Unknown => {}
            _ => s.specials += 1,
        }
    }
    s.errors.sort_by(|a, b| a.path.cmp(&b.path));
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

fn build_excludes(patterns: &[String]) -> Result<Option<GlobSet>, IntakeError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| IntakeError::BadExclude {
            pattern: p.clone(),
            message: e.kind().to_string(),
        })?;
        b.add(g);
    }
    b.build().map(Some).map_err(|e| IntakeError::BadExclude {
        pattern: patterns.join(" "),
        message: e.to_string(),
    })
}

#[derive(Default)]
struct Totals {
    bytes_read: u64,
    bytes_new: u64,
    bytes_stored: u64,
    chunks: u64,
    new_chunks: u64,
    opened: u64,
}

impl Totals {
    fn add_put(&mut self, p: &Put) {
        self.bytes_new += p.new_bytes;
        self.bytes_stored += p.len;
        self.chunks += u64::from(p.chunks);
        self.new_chunks += u64::from(p.new_chunks);
    }
}

struct Walk<'a> {
    nodes: Vec<Node>,
    excludes: Option<GlobSet>,
    one_file_system: bool,
    old_cache: &'a StatCache,
    new_cache: StatCache,
    /// (dev, ino) of multiply-linked non-directories → (first node, members seen).
    links: HashMap<(u64, u64), (u32, u32)>,
    errors: Vec<IntakeErrorRecord>,
    excluded: u64,
    cache_hits: u64,
    store: &'a dyn ArtifactWrite,
    progress: &'a Progress,
    /// Full paths of directory nodes (as given on the command line + names).
    dir_paths: HashMap<u32, Vec<u8>>,
    /// The buffer directories are read into, reused from one directory to the next.
    dir_buf: Vec<u8>,
}

/// A directory still to be read: its node and the device it must stay on.
struct PendingDir {
    node: u32,
    root_dev: u64,
}

impl<'a> Walk<'a> {
    /// Records the given paths as children of node 0. Returns their node indices.
    fn top_level(&mut self, paths: &[PathBuf]) -> Result<Vec<(u32, Stat)>, IntakeError> {
        let mut tops: Vec<(Vec<u8>, PathBuf, Stat)> = Vec::new();
        for p in paths {
            let c = sys::cstring(p.as_os_str().as_bytes()).map_err(|e| IntakeError::Path {
                path: p.clone(),
                source: e,
            })?;
            let st = sys::lstat_at(CWD, &c).map_err(|e| IntakeError::Path {
                path: p.clone(),
                source: e,
            })?;
            let name = match p.file_name() {
                Some(n) => n.as_bytes().to_vec(),
                None if paths.len() == 1 && is_dir(&st) => b"root".to_vec(),
                None => return Err(IntakeError::NoName { path: p.clone() }),
            };
            tops.push((name, p.clone(), st));
        }
        tops.sort_by(|a, b| a.0.cmp(&b.0));
        for w in tops.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(IntakeError::DuplicateName {
                    a: w[0].1.clone(),
                    b: w[1].1.clone(),
                    name: String::from_utf8_lossy(&w[0].0).into_owned(),
                });
            }
        }
        self.nodes[0].first_child = 1;
        self.nodes[0].child_count = tops.len() as u32;
        let mut out = Vec::new();
        for (name, path, st) in tops {
            let idx = self.nodes.len() as u32;
            self.nodes
                .push(Node::new(Entry::new(name, Kind::Unknown), 0));
            self.dir_paths
                .insert(idx, path.as_os_str().as_bytes().to_vec());
            out.push((idx, st));
        }
        for (idx, st) in &out {
            self.fill_from_stat(*idx, st);
        }
        Ok(out)
    }

    fn path_of(&self, idx: u32) -> PathBuf {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut i = idx;
        loop {
            if let Some(p) = self.dir_paths.get(&i) {
                let mut full = p.clone();
                for part in parts.iter().rev() {
                    full.push(b'/');
                    full.extend_from_slice(part);
                }
                return PathBuf::from(OsStr::from_bytes(&full));
            }
            if i == 0 {
                break;
            }
            parts.push(self.nodes[i as usize].entry.name.clone());
            i = self.nodes[i as usize].parent;
        }
        parts.reverse();
        PathBuf::from(OsStr::from_bytes(&parts.join(&b'/')))
    }

    fn record_error(&mut self, idx: u32, op: Operation, err: &std::io::Error) {
        let errno = err.raw_os_error().unwrap_or(0);
        self.nodes[idx as usize].entry.error = Some(EntryError { op, errno });
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        let path = self.path_of(idx);
        self.errors.push(IntakeErrorRecord {
            path,
            op,
            errno,
            message: err.to_string(),
        });
    }

    /// Fills an entry's metadata from its `lstat`.
    fn fill_from_stat(&mut self, idx: u32, st: &Stat) {
        let e = &mut self.nodes[idx as usize].entry;
        e.kind = kind_of(st.st_mode);
        e.mode = st.st_mode & 0o7777;
        e.uid = st.st_uid;
        e.gid = st.st_gid;
        e.mtime_sec = st.st_mtime;
        e.mtime_nsec = st.st_mtime_nsec as u32;
        match e.kind {
            Kind::File | Kind::Symlink => e.size = st.st_size as u64,
            Kind::CharDevice | Kind::BlockDevice => {
                e.rdev_major = sys::major(st.st_rdev);
                e.rdev_minor = sys::minor(st.st_rdev);
            }
            _ => {}
        }
        if e.kind != Kind::Dir && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            let n = &mut self.nodes[idx as usize];
            n.link_key = Some(key);
            let slot = self.links.entry(key).or_insert((idx, 0));
            slot.1 += 1;
            if slot.0 != idx {
                n.link_first = Some(slot.0);
            }
        }
        self.progress.entries.fetch_add(1, Ordering::Relaxed);
    }

    fn run(&mut self, tops: &[(u32, Stat)], jobs: &chan::Sender<Job>, shared: &Shared<'_>) {
        let mut pending: Vec<PendingDir> = Vec::new();
        for &(idx, st) in tops.iter().rev() {
            let path = self.dir_paths[&idx].clone();
            self.after_stat(idx, &st, &path, None, st.st_dev, jobs, &mut pending);
        }
        while let Some(d) = pending.pop() {
            if shared.abort.load(Ordering::Relaxed) {
                break;
            }
            self.read_dir(d, jobs, &mut pending);
        }
    }

    /// Reads one directory: names, lstat of each, then per-kind work.
    fn read_dir(&mut self, d: PendingDir, jobs: &chan::Sender<Job>, pending: &mut Vec<PendingDir>) {
        let path = self.dir_paths[&d.node].clone();
        self.progress.set_current(&path);
        self.progress.dirs.fetch_add(1, Ordering::Relaxed);
        let Ok(cpath) = sys::cstring(&path) else {
            return;
        };
        let dir = match sys::open_at(
            CWD,
            &cpath,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) => {
                self.record_error(d.node, Operation::Opendir, &e);
                return;
            }
        };
        let mut names: Vec<Vec<u8>> = Vec::new();
        let read = sys::read_dir_names(&dir, &mut self.dir_buf, |n| names.push(n.to_vec()));
        if let Err(e) = read {
            // Keep what was read: a partial listing beats none in a rescue.
            self.record_error(d.node, Operation::Readdir, &e);
        }
        names.sort_unstable();
        let mut child_path = path.clone();
        child_path.push(b'/');
        let base_len = child_path.len();
        if let Some(ex) = &self.excludes {
            let before = names.len();
            names.retain(|n| {
                child_path.truncate(base_len);
                child_path.extend_from_slice(n);
                let full = Path::new(OsStr::from_bytes(&child_path));
                !(ex.is_match(full) || ex.is_match(Path::new(OsStr::from_bytes(n))))
            });
            self.excluded += (before - names.len()) as u64;
        }
        let first = self.nodes.len() as u32;
        self.nodes[d.node as usize].first_child = first;
        self.nodes[d.node as usize].child_count = names.len() as u32;
        let mut stats = Vec::with_capacity(names.len());
        for name in names {
            let idx = self.nodes.len() as u32;
            let cname = sys::cstring(&name);
            self.nodes
                .push(Node::new(Entry::new(name, Kind::Unknown), d.node));
            let st = cname.and_then(|c| sys::lstat_at(&dir, &c).map(|st| (c, st)));
            match st {
                Ok((c, st)) => {
                    self.fill_from_stat(idx, &st);
                    stats.push(Some((c, st)));
                }
                Err(e) => {
                    self.progress.entries.fetch_add(1, Ordering::Relaxed);
                    self.record_error(idx, Operation::Lstat, &e);
                    stats.push(None);
                }
            }
        }
        let mut subdirs = Vec::new();
        for (i, s) in stats.into_iter().enumerate() {
            let Some((cname, st)) = s else { continue };
            let idx = first + i as u32;
            child_path.truncate(base_len);
            child_path.extend_from_slice(cname.to_bytes());
            let before = pending.len();
            self.after_stat(
                idx,
                &st,
                &child_path,
                Some((&dir, &cname)),
                d.root_dev,
                jobs,
                pending,
            );
            subdirs.extend(pending.drain(before..));
        }
        // Pushed in reverse so that directories are read in name order (not required for
        // determinism, but it keeps the walk's memory and the progress display tidy).
        pending.extend(subdirs.into_iter().rev());
    }

    /// Per-entry work after its lstat: xattrs, symlink target, file job or cache hit,
    /// directory scheduling.
    #[allow(clippy::too_many_arguments)]
    fn after_stat(
        &mut self,
        idx: u32,
        st: &Stat,
        path: &[u8],
        at: Option<(&OwnedFd, &CStr)>,
        root_dev: u64,
        jobs: &chan::Sender<Job>,
        pending: &mut Vec<PendingDir>,
    ) {
        let kind = self.nodes[idx as usize].entry.kind;
        let Ok(cpath) = sys::cstring(path) else {
            return;
        };
        match sys::lxattrs(&cpath) {
            Ok(x) => self.nodes[idx as usize].entry.xattrs = x,
            Err(e) => self.record_error(idx, Operation::Xattr, &e),
        }
        match kind {
            Kind::Symlink => {
                let target = match at {
                    Some((dir, name)) => sys::readlink_at(dir, name, st.st_size as usize),
                    None => sys::readlink_at(CWD, &cpath, st.st_size as usize),
                };
                match target {
                    Ok(t) if !t.is_empty() => {
                        let e = &mut self.nodes[idx as usize].entry;
                        e.size = t.len() as u64;
                        e.link_target = t;
                    }
                    Ok(_) => {}
                    Err(e) => self.record_error(idx, Operation::Readlink, &e),
                }
            }
            Kind::Dir => {
                self.dir_paths.insert(idx, path.to_vec());
                if self.one_file_system && st.st_dev != root_dev {
                    // A mount point: recorded as an empty directory, not descended into.
                    return;
                }
                pending.push(PendingDir {
                    node: idx,
                    root_dev,
                });
            }
            Kind::File => {
                if self.nodes[idx as usize].link_first.is_some() {
                    // Content comes from the group's first member.
                    return;
                }
                let id = FileIdentity::from_stat(st);
                if let Some(hit) = self.old_cache.get(&id)
                    && self.store.contains(&hit.content)
                {
                    let e = &mut self.nodes[idx as usize].entry;
                    e.content = Some(hit.content);
                    e.holes = hit.holes.clone();
                    self.new_cache.insert(hit.clone());
                    self.cache_hits += 1;
                    self.progress.files.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // The only blocking point of the walk: a full queue means the workers are
                // the bottleneck, as they should be.
                let _ = jobs.send(Job {
                    node: idx,
                    path: cpath,
                    pre: id,
                });
            }
            _ => {}
        }
    }

    fn apply_outcome(&mut self, o: FileOutcome, totals: &mut Totals) {
        totals.bytes_read += o.bytes_read;
        totals.opened += u64::from(o.opened);
        if let Some((err, message)) = o.error {
            self.nodes[o.node as usize].entry.error = Some(err);
            let path = self.path_of(o.node);
            self.errors.push(IntakeErrorRecord {
                path,
                op: err.op,
                errno: err.errno,
                message,
            });
        }
        let e = &mut self.nodes[o.node as usize].entry;
        e.changed_during_read = o.changed;
        if let Some(put) = o.put {
            totals.add_put(&put);
            e.content = Some(put.reference);
            e.size = put.len;
            e.holes = o.holes;
            if let Some(id) = o.cacheable {
                self.new_cache.insert(CachedContent {
                    identity: id,
                    content: put.reference,
                    holes: e.holes.clone(),
                });
            }
        }
    }

    /// Copies content to later hardlink members and numbers the groups with ≥ 2 members in
    /// depth-first, name-ordered pre-order of the root (the documented canonical numbering).
    fn resolve_hardlinks(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(f) = self.nodes[i].link_first {
                let src = &self.nodes[f as usize].entry;
                let (content, holes, size, changed, error) = (
                    src.content,
                    src.holes.clone(),
                    src.size,
                    src.changed_during_read,
                    src.error,
                );
                let e = &mut self.nodes[i].entry;
                if e.kind == Kind::File {
                    e.content = content;
                    e.holes = holes;
                    e.size = size;
                    e.changed_during_read = changed;
                    if e.error.is_none() {
                        e.error = error;
                    }
                }
            }
        }
        let mut ids: HashMap<(u64, u64), u64> = HashMap::new();
        let mut next = 1u64;
        // Stack of (next child, end) ranges: a true pre-order walk in name order.
        let root = &self.nodes[0];
        let mut stack = vec![(root.first_child, root.first_child + root.child_count)];
        while let Some(top) = stack.last_mut() {
            if top.0 >= top.1 {
                stack.pop();
                continue;
            }
            let c = top.0 as usize;
            top.0 += 1;
            if let Some(key) = self.nodes[c].link_key
                && self
                    .links
                    .get(&key)
                    .is_some_and(|&(_, members)| members >= 2)
            {
                let id = *ids.entry(key).or_insert_with(|| {
                    next += 1;
                    next - 1
                });
                self.nodes[c].entry.hardlink_group = id;
            }
            let n = &self.nodes[c];
            if n.entry.kind == Kind::Dir && n.child_count > 0 {
                stack.push((n.first_child, n.first_child + n.child_count));
            }
        }
    }

    /// Encodes and stores every directory's tree, children before parents.
    fn build_trees(
        &mut self,
        tops: &[(u32, Stat)],
        totals: &mut Totals,
    ) -> Result<Reference, IntakeError> {
        for i in (0..self.nodes.len()).rev() {
            let n = &self.nodes[i];
            if n.entry.kind != Kind::Dir {
                continue;
            }
            let readable = !matches!(
                n.entry.error,
                Some(EntryError {
                    op: Operation::Opendir,
                    ..
                })
            );
            if !readable && i != 0 {
                continue;
            }
            let (first, count) = (n.first_child as usize, n.child_count as usize);
            let bytes = encode_entries(
                self.nodes[first..first + count].iter().map(|c| &c.entry),
                count,
            )
            .map_err(|source| IntakeError::Tree {
                path: self.path_of(i as u32),
                source,
            })?;
            let put = self
                .store
                .put_bytes(&bytes, TypeTag::TREE)
                .map_err(|source| IntakeError::Store {
                    path: self.path_of(i as u32),
                    source,
                })?;
            totals.add_put(&put);
            self.progress
                .bytes_new
                .fetch_add(put.new_bytes, Ordering::Relaxed);
            self.nodes[i].entry.content = Some(put.reference);
        }
        // One directory given: its tree is the root. Otherwise the synthetic root.
        let root_node = match tops {
            [(idx, _)] if self.nodes[*idx as usize].entry.kind == Kind::Dir => *idx as usize,
            _ => 0,
        };
        match self.nodes[root_node].entry.content {
            Some(r) => Ok(r),
            None => {
                // The one directory given could not be read: an empty root, with the error
                // in the summary.
                let put = self
                    .store
                    .put_bytes(&crate::tree::empty_tree_bytes(), TypeTag::TREE)
                    .map_err(|source| IntakeError::Store {
                        path: self.path_of(root_node as u32),
                        source,
                    })?;
                Ok(put.reference)
            }
        }
    }
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

pub(crate) fn kind_of(mode: u32) -> Kind {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::Fifo => Kind::Fifo,
        FileType::Socket => Kind::Socket,
        FileType::CharacterDevice => Kind::CharDevice,
        FileType::BlockDevice => Kind::BlockDevice,
        FileType::Unknown => Kind::Unknown,
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn worker(shared: &Shared<'_>, jobs: chan::Receiver<Job>, results: chan::Sender<FileOutcome>) {
    let mut buf: Vec<u8> = Vec::with_capacity(SMALL_FILE as usize);
    for job in jobs.iter() {
        if shared.abort.load(Ordering::Relaxed) {
            continue;
        }
        let o = read_file(shared, &job, &mut buf);
        if o.fatal.is_some() {
            shared.abort.store(true, Ordering::Relaxed);
        }
        shared.progress.files.fetch_add(1, Ordering::Relaxed);
        if o.error.is_some() {
            shared.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        if results.send(o).is_err() {
            return;
        }
    }
}

fn open_for_reading(shared: &Shared<'_>, path: &CStr) -> std::io::Result<OwnedFd> {
    // O_NONBLOCK: a file replaced by a FIFO after the walk must not block the worker.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    if shared.noatime.load(Ordering::Relaxed) {
        match sys::open_at(CWD, path, flags | OFlags::NOATIME, 0) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                // O_NOATIME needs ownership or CAP_FOWNER: fall back, and stop trying when
                // it is clearly not available to this process.
                if !sys::is_root() {
                    shared.noatime.store(false, Ordering::Relaxed);
                }
            }
            r => return r,
        }
    }
    sys::open_at(CWD, path, flags, 0)
}

fn read_file(shared: &Shared<'_>, job: &Job, buf: &mut Vec<u8>) -> FileOutcome {
    let mut o = FileOutcome {
        node: job.node,
        put: None,
        holes: Vec::new(),
        changed: false,
        error: None,
        bytes_read: 0,
        opened: false,
        cacheable: None,
        fatal: None,
    };
    let fail = |o: &mut FileOutcome, op, e: &std::io::Error| {
        o.error = Some((
            EntryError {
                op,
                errno: e.raw_os_error().unwrap_or(0),
            },
            e.to_string(),
        ));
    };
    let fd = match open_for_reading(shared, &job.path) {
        Ok(fd) => fd,
        Err(e) => {
            fail(&mut o, Operation::Open, &e);
            return o;
        }
    };
    o.opened = true;
    let at_open = match sys::fstat(&fd) {
        Ok(st) => st,
        Err(e) => {
            fail(&mut o, Operation::Open, &e);
            return o;
        }
    };
    if FileType::from_raw_mode(at_open.st_mode) != FileType::RegularFile
        || at_open.st_ino != job.pre.ino
        || at_open.st_dev != job.pre.dev
    {
        // Replaced by something else since the walk: do not read it.
        o.changed = true;
        fail(
            &mut o,
            Operation::Open,
            &std::io::Error::other("replaced by another file between walk and read"),
        );
        return o;
    }
    if let Some(hook) = &shared.after_open {
        hook(Path::new(OsStr::from_bytes(job.path.to_bytes())));
    }
    let size = at_open.st_size as u64;
    let sparse = (at_open.st_blocks as u64).saturating_mul(512) < size;
    let holes = if sparse {
        sys::holes(&fd, size).unwrap_or_default()
    } else {
        Vec::new()
    };
    let raw = fd.as_fd();
    let result = if size <= SMALL_FILE && holes.is_empty() {
        read_small(raw, size, buf).map_or_else(
            |e| Err(AccessError::Source(e)),
            |n| {
                o.bytes_read = n as u64;
                shared
                    .progress
                    .bytes_read
                    .fetch_add(n as u64, Ordering::Relaxed);
                shared.store.put_bytes(&buf[..n], TypeTag::BYTES)
            },
        )
    } else {
        shared.progress.set_current(job.path.to_bytes());
        sys::fadvise_sequential(raw);
        let mut src = FileSource {
            fd: raw,
            pos: 0,
            end: size,
            holes: &holes,
            hole_ix: 0,
            bytes_read: 0,
            progress: shared.progress,
        };
        let r = shared.store.put_reader(&mut src, TypeTag::BYTES);
        o.bytes_read = src.bytes_read;
        r
    };
    let put = match result {
        Ok(p) => p,
        Err(AccessError::Source(e)) => {
            fail(&mut o, Operation::Read, &e);
            return o;
        }
        Err(e) => {
            o.fatal = Some(e);
            return o;
        }
    };
    shared
        .progress
        .bytes_new
        .fetch_add(put.new_bytes, Ordering::Relaxed);
    let after = sys::fstat(raw).ok();
    let after_id = after.as_ref().map(FileIdentity::from_stat);
    o.changed = after_id != Some(job.pre) || put.len != job.pre.size;
    if !o.changed
        && let Some(a) = &after
    {
        let ctime = i128::from(a.st_ctime) * 1_000_000_000 + i128::from(a.st_ctime_nsec);
        if ctime + RACY_MARGIN_NS < now_ns() {
            o.cacheable = Some(job.pre);
        }
    }
    // Holes beyond what was read (the file shrank) are dropped; the content is what was read.
    o.holes = holes
        .into_iter()
        .filter_map(|(off, len)| {
            let end = (off + len).min(put.len);
            (end > off).then_some(Hole {
                offset: off,
                len: end - off,
            })
        })
        .collect();
    o.put = Some(put);
    o
}

/// Reads a whole small file (at most `size` bytes: growth is caught by the stat check).
fn read_small(fd: BorrowedFd<'_>, size: u64, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let size = size as usize;
    // The buffer only grows (to SMALL_FILE at most): no zeroing per file.
    if buf.len() < size {
        buf.resize(size, 0);
    }
    let mut n = 0usize;
    while n < size {
        let r = sys::pread(fd, &mut buf[n..size], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// A file's logical bytes: data read with `pread`, holes produced as zeros without reading.
/// Stops at the size the file had when opened.
struct FileSource<'a> {
    fd: BorrowedFd<'a>,
    pos: u64,
    end: u64,
    holes: &'a [(u64, u64)],
    hole_ix: usize,
    bytes_read: u64,
    progress: &'a Progress,
}

impl std::io::Read for FileSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        while let Some(&(off, len)) = self.holes.get(self.hole_ix) {
            if off + len <= self.pos {
                self.hole_ix += 1;
            } else {
                break;
            }
        }
        let mut max = (self.end - self.pos).min(buf.len() as u64);
        if let Some(&(off, len)) = self.holes.get(self.hole_ix) {
            if off <= self.pos {
                let n = (off + len - self.pos).min(max) as usize;
                buf[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            max = max.min(off - self.pos);
        }
        let n = sys::pread(self.fd, &mut buf[..max as usize], self.pos)?;
        if n == 0 {
            // The file shrank: stop here (the stat comparison flags the change).
            self.end = self.pos;
        }
        self.pos += n as u64;
        self.bytes_read += n as u64;
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
