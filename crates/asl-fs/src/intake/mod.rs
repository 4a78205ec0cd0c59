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
//! 3. **Trees** (the calling thread, as results come in): a directory is encoded and stored
//!    as `TypeTag::TREE` as soon as its last entry is final, and its entries are then
//!    dropped, so memory follows the work in flight, not the size of the tree. Directories
//!    holding a multiply-linked file, and their ancestors, wait for the end: their hardlink
//!    groups are numbered once every member is known.
//!
//! Every entry's metadata comes from the walk, every content from exactly one read, and
//! entries are ordered by name: the root reference depends only on the input tree, never on
//! the thread count or on scheduling.
//!
//! Each stage is a module (`walk`, `read`, `trees`); this one holds the public API, the
//! state the stages share (`Walk`'s nodes, the jobs and their outcomes) and [`intake()`],
//! which wires them together.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use asl_store::{AccessError, ArtifactWrite, Put, Reference};
use crossbeam_channel as chan;
use globset::GlobSet;

use crate::statcache::{CacheWriter, FileIdentity, StatCache};
use crate::tree::{Entry, EntryError, Hole, Kind, Operation, TreeError};

mod nodes;
mod read;
mod trees;
mod walk;

use nodes::Nodes;

use read::worker;
use walk::build_excludes;

/// Jobs the walk may queue ahead of the workers.
const QUEUE_LEN: usize = 4096;

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
    /// The most walked entries held in memory at once: the directories being worked on, the
    /// files in the readers' queue and subtrees waiting for hardlink numbering, not the
    /// whole tree (a finished directory's entries are dropped once its tree is stored).
    pub entries_held_peak: u64,
    /// Set when the stat cache could not be written (the intake itself is complete).
    pub stat_cache_warning: Option<String>,
    pub seconds: f64,
}

impl IntakeSummary {
    /// The metadata of the snapshot that commits this intake: kind `intake`, the label, the
    /// paths as given, and the figures `asl-admin show` prints. Every front end commits an
    /// intake with it, so that snapshots read the same whoever made them.
    pub fn snapshot_meta(
        &self,
        label: Option<String>,
        paths: &[PathBuf],
    ) -> asl_store::SnapshotMeta {
        let mut meta = asl_store::SnapshotMeta::now("intake");
        meta.label = label;
        meta.paths = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        meta.summary = serde_json::json!({
            "files": self.files,
            "dirs": self.dirs,
            "bytes_total": self.bytes_total,
            "bytes_new": self.bytes_new,
            "errors": self.errors.len(),
            "changed_during_read": self.changed_during_read,
        });
        meta
    }

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
    /// The entry is final: its content is known (or known to be missing), and for a
    /// directory its tree is stored.
    done: bool,
    /// Directories: every child is recorded (the directory was read, or will not be).
    read_done: bool,
    /// Directories, once `read_done`: children not `done` yet.
    waiting: u32,
    /// Directories: the subtree holds a multiply-linked file, so the tree is built at the end
    /// (hardlink groups are numbered over the whole intake).
    deferred: bool,
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
            done: false,
            read_done: false,
            waiting: 0,
            deferred: false,
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
    // The new cache goes to disk entry by entry; a cache that cannot even be started is a
    // warning, as one that cannot be finished.
    let (new_cache, mut stat_cache_warning) = match &opts.stat_cache {
        Some(p) => match CacheWriter::create(p) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(cache_warning(p, &e))),
        },
        None => (None, None),
    };

    let mut walk = Walk {
        nodes: Nodes::default(),
        totals: Totals::default(),
        counts: Counts::default(),
        fatal: None,
        excludes,
        one_file_system: opts.one_file_system,
        old_cache: &old_cache,
        new_cache,
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
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let rx = job_rx.clone();
            let tx = res_tx.clone();
            let shared = &shared;
            scope.spawn(move || worker(shared, rx, tx));
        }
        drop(res_tx);
        drop(job_rx);
        walk.run(&tops, &job_tx, &shared, &res_rx);
        drop(job_tx);
        // Every outcome up to the last worker's end.
        for o in res_rx.iter() {
            walk.take_outcome(o);
        }
    });
    if let Some(e) = walk.fatal.take() {
        return Err(e);
    }
    walk.resolve_hardlinks();
    // The stat cache is complete once every outcome is in; writing it (megabytes and an
    // fsync) happens beside the tree building, the single-threaded tail of an intake.
    let new_cache = walk.new_cache.take();
    let (root, finish_warning) = std::thread::scope(|scope| {
        let saver = scope.spawn(|| {
            let p = opts.stat_cache.as_ref()?;
            new_cache?.finish().err().map(|e| cache_warning(p, &e))
        });
        let root = walk.build_trees(&tops);
        let warning = saver
            .join()
            .unwrap_or_else(|_| Some("the stat cache writer panicked".into()));
        (root, warning)
    });
    let root = root?;
    stat_cache_warning = stat_cache_warning.or(finish_warning);
    // Entries still held (the root, deferred subtrees) are counted here, the others were
    // counted when they were retired.
    let mut counts = walk.counts;
    for i in walk.nodes.live().filter(|&i| i != 0) {
        counts.add(&walk.nodes[i].entry);
    }
    let totals = &walk.totals;
    let mut s = IntakeSummary {
        root,
        files: counts.files,
        dirs: counts.dirs,
        symlinks: counts.symlinks,
        specials: counts.specials,
        bytes_total: counts.bytes_total,
        bytes_read: totals.bytes_read,
        bytes_new: totals.bytes_new,
        bytes_stored: totals.bytes_stored,
        chunks: totals.chunks,
        new_chunks: totals.new_chunks,
        files_opened: totals.opened,
        stat_cache_hits: walk.cache_hits,
        excluded: walk.excluded,
        changed_during_read: counts.changed_during_read,
        errors: std::mem::take(&mut walk.errors),
        stat_cache_warning,
        entries_held_peak: walk.nodes.peak() as u64,
        seconds: 0.0,
    };
    s.errors.sort_by(|a, b| a.path.cmp(&b.path));
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

/// What the summary counts of the entries, gathered as they are retired.
#[derive(Default, Clone, Copy)]
struct Counts {
    files: u64,
    dirs: u64,
    symlinks: u64,
    specials: u64,
    bytes_total: u64,
    changed_during_read: u64,
}

impl Counts {
    fn add(&mut self, e: &Entry) {
        match e.kind {
            Kind::File => {
                self.files += 1;
                self.bytes_total += e.size;
                self.changed_during_read += u64::from(e.changed_during_read);
            }
            Kind::Dir => self.dirs += 1,
            Kind::Symlink => self.symlinks += 1,
            Kind::Unknown => {}
            _ => self.specials += 1,
        }
    }
}

fn cache_warning(path: &Path, e: &std::io::Error) -> String {
    format!("cannot write the stat cache {}: {e}", path.display())
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

/// The state of one intake: the live walked entries and what the walk learned about them. The
/// walk fills it, the trees stage turns it into tree artifacts as directories complete.
struct Walk<'a> {
    nodes: Nodes,
    totals: Totals,
    /// Counts of the entries already retired.
    counts: Counts,
    /// The first failure of the store; the intake fails with it and the walk stops.
    fatal: Option<IntakeError>,
    excludes: Option<GlobSet>,
    one_file_system: bool,
    old_cache: &'a StatCache,
    /// The stat cache this intake makes, written as files complete (`None`: no cache).
    new_cache: Option<CacheWriter>,
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
