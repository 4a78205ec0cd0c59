//! Restore: a stored tree back onto a filesystem, under one target directory.
//!
//! Safety: the target must be empty (or absent). Everything is created relative to
//! directory file descriptors (`mkdirat`, `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `symlinkat`,
//! `mknodat`, `linkat`), names are validated (no `/`, `.`, `..`, NUL) and directories are
//! opened with `O_NOFOLLOW`, so a restore never writes outside its target and never follows
//! a symlink — neither one it created nor one planted in the target while it runs.
//!
//! Integrity: every artifact is verified by the store as it is read. A damaged or missing
//! artifact is reported with the path it belongs to (a partly written file is removed) and
//! the restore goes on with the rest.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel as chan;
use rustix::fs::{CWD, FileType, Mode, OFlags};

use asl_store::{AccessError, ArtifactRead, Reference};

use crate::browse::{BrowseError, lookup, read_tree};
use crate::sys;
use crate::tree::{Entry, Hole, Kind, Tree, validate_name};

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore owners (uid/gid). `None`: when running as root.
    pub owners: Option<bool>,
    /// Do not restore extended attributes.
    pub no_xattrs: bool,
    /// Threads writing file contents. `None`: one per CPU, right when reads cost CPU; a store
    /// across a network wants more, since each thread mostly waits for its answer.
    pub threads: Option<usize>,
}

/// Something that could not be restored exactly.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreIssue {
    /// Path relative to the target.
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    pub message: String,
    /// The artifact concerned, for integrity problems.
    pub reference: Option<Reference>,
}

fn ser_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub specials: u64,
    pub hardlinks: u64,
    pub bytes_written: u64,
    /// Entries the intake could not take in (error entries): nothing to restore.
    pub not_taken_in: Vec<RestoreIssue>,
    /// Failures to create or set something (permissions, unsupported xattrs, ...).
    pub errors: Vec<RestoreIssue>,
    /// Damaged or missing artifacts (exit code 3).
    pub integrity_errors: Vec<RestoreIssue>,
    pub seconds: f64,
}

/// Why a restore did not start (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore target {0} exists and is not empty; choose an empty or new directory")]
    TargetNotEmpty(PathBuf),
    #[error("restore target {0} exists and is not a directory")]
    TargetNotDirectory(PathBuf),
    #[error("cannot use restore target {path}: {source}")]
    Target {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Browse(#[from] BrowseError),
}

/// Restores the tree `tree` — or, with `subpath`, the entry at that path inside it — under
/// `target`. A directory's contents become the target's contents; a single non-directory
/// entry is created inside the target under its own name.
pub fn restore(
    store: &dyn ArtifactRead,
    tree: &Reference,
    subpath: Option<&[u8]>,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    let started = Instant::now();
    // Resolve first: a wrong path must not leave a created target behind.
    let entry = lookup(store, tree, subpath.unwrap_or(b""))?;
    prepare_target(target)?;
    let ctarget =
        sys::cstring(target.as_os_str().as_bytes()).map_err(|e| RestoreError::Target {
            path: target.to_path_buf(),
            source: e,
        })?;
    let root = sys::open_at(CWD, &ctarget, OFlags::RDONLY | OFlags::DIRECTORY, 0).map_err(|e| {
        RestoreError::Target {
            path: target.to_path_buf(),
            source: e,
        }
    })?;
    let policy = Policy {
        owners: opts.owners.unwrap_or_else(sys::is_root),
        xattrs: !opts.no_xattrs,
        root: sys::is_root(),
        creator: creator_ids(&root),
        umask: sys::current_umask(),
    };
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let root = Arc::new(root);
    // Each queued job holds an open file and its directory: 128 stays far below the usual
    // 1024-descriptor limit while keeping the workers fed.
    let (job_tx, job_rx) = chan::bounded::<FileJob>(128);
    let (res_tx, res_rx) = chan::unbounded::<Issues>();
    let mut s = RestoreSummary::default();
    let mut main_issues = Issues::default();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let rx = job_rx.clone();
            let tx = res_tx.clone();
            let policy = &policy;
            scope.spawn(move || {
                let mut issues = Issues::default();
                for job in rx.iter() {
                    write_file(store, policy, job, &mut issues);
                }
                let _ = tx.send(issues);
            });
        }
        drop(res_tx);
        drop(job_rx);
        let mut r = Restorer {
            store,
            policy: &policy,
            target_fd: root.as_fd(),
            links: HashMap::new(),
            s: &mut s,
            issues: &mut main_issues,
            jobs: job_tx,
        };
        let mut rel = Vec::new();
        if entry.kind == Kind::Dir && entry.name.is_empty() {
            if let Some(t) = entry.content {
                r.dir_contents(&root, &t, &mut rel);
            }
        } else if entry.kind == Kind::Dir {
            // S:PATH naming a directory: its contents into the target, its metadata onto it.
            match entry.content {
                Some(t) => r.dir_contents(&root, &t, &mut rel),
                None => r.not_taken_in(&rel, &entry),
            }
            set_dir_metadata(r.policy, &root, &entry, &rel, r.issues);
        } else {
            let tree = Arc::new(Tree {
                entries: vec![entry.clone()],
            });
            r.entry(&root, &tree, 0, &mut rel);
        }
        drop(r);
        for issues in res_rx.iter() {
            main_issues.merge(issues);
        }
    });
    s.files = main_issues.files;
    s.bytes_written = main_issues.bytes;
    s.errors = main_issues.errors;
    s.integrity_errors = main_issues.integrity;
    s.errors.sort_by(|a, b| a.path.cmp(&b.path));
    s.integrity_errors.sort_by(|a, b| a.path.cmp(&b.path));
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

fn prepare_target(target: &Path) -> Result<(), RestoreError> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let mut it = std::fs::read_dir(target).map_err(|e| RestoreError::Target {
                path: target.to_path_buf(),
                source: e,
            })?;
            if it.next().is_some() {
                return Err(RestoreError::TargetNotEmpty(target.to_path_buf()));
            }
            Ok(())
        }
        Ok(_) => Err(RestoreError::TargetNotDirectory(target.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(target)
            .map_err(|e| RestoreError::Target {
                path: target.to_path_buf(),
                source: e,
            }),
        Err(e) => Err(RestoreError::Target {
            path: target.to_path_buf(),
            source: e,
        }),
    }
}

/// What may be restored besides contents and modes.
struct Policy {
    owners: bool,
    xattrs: bool,
    root: bool,
    /// The (uid, gid) a file created during this restore gets, when that is known: then a
    /// `chown` to the same ids is skipped. `None` when the target directory is set-group-ID
    /// (new files would take its group instead).
    creator: Option<(u32, u32)>,
    /// The process umask, when it could be read: a file created with its mode's permission
    /// bits and no special bits the umask clears needs no `chmod` afterwards.
    umask: Option<u32>,
}

/// The owner of files this process creates under `target`. Directories made by the restore
/// are `0700` until their contents are done, so only the target's own set-group-ID bit could
/// hand new files another group.
fn creator_ids(target: &OwnedFd) -> Option<(u32, u32)> {
    let st = sys::fstat(target).ok()?;
    if Mode::from_raw_mode(st.st_mode).contains(Mode::SGID) {
        return None;
    }
    Some(sys::effective_ids())
}

impl Policy {
    /// Whether a file created with `create_mode(e)` still needs `chown`.
    fn needs_chown(&self, e: &Entry) -> bool {
        self.owners && self.creator != Some((e.uid, e.gid))
    }

    /// Whether a file created with `create_mode(e)` still needs `chmod`.
    fn needs_chmod(&self, e: &Entry) -> bool {
        match self.umask {
            Some(umask) => e.mode & 0o7777 != create_mode(e) & !umask,
            None => true,
        }
    }
}

/// The mode a regular file is created with: its permission bits, never the special ones
/// (set-user-ID and set-group-ID are set last, after `chown` would have cleared them).
fn create_mode(e: &Entry) -> u32 {
    e.mode & 0o777
}

impl Policy {
    fn wanted_xattr(&self, name: &[u8]) -> bool {
        // Without root only user.* can be set; other namespaces would fail on every entry.
        self.xattrs && (self.root || name.starts_with(b"user."))
    }
}

/// Problems and counts gathered by one thread, merged at the end.
#[derive(Default)]
struct Issues {
    errors: Vec<RestoreIssue>,
    integrity: Vec<RestoreIssue>,
    files: u64,
    bytes: u64,
}

impl Issues {
    fn error(&mut self, rel: &[u8], what: &str, e: impl std::fmt::Display) {
        self.errors.push(RestoreIssue {
            path: rel_path(rel),
            message: format!("{what}: {e}"),
            reference: None,
        });
    }

    fn integrity(&mut self, rel: &[u8], reference: Option<Reference>, e: impl std::fmt::Display) {
        self.integrity.push(RestoreIssue {
            path: rel_path(rel),
            message: e.to_string(),
            reference,
        });
    }

    fn merge(&mut self, o: Issues) {
        self.errors.extend(o.errors);
        self.integrity.extend(o.integrity);
        self.files += o.files;
        self.bytes += o.bytes;
    }
}

/// A created, still empty file whose content and metadata a worker writes. Files are created
/// by the walking thread: a hardlink group's other names are linked right after, and a
/// directory's own metadata, set once its walk is done, is not changed by a later creation.
struct FileJob {
    fd: OwnedFd,
    /// Its directory, to remove the file again if its content turns out damaged.
    dir: Arc<OwnedFd>,
    tree: Arc<Tree>,
    index: usize,
    rel: Vec<u8>,
}

fn create_file(dir: BorrowedFd<'_>, name: &CStr, e: &Entry) -> std::io::Result<OwnedFd> {
    sys::open_at(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        create_mode(e),
    )
}

fn write_file(store: &dyn ArtifactRead, policy: &Policy, job: FileJob, out: &mut Issues) {
    let e = &job.tree.entries[job.index];
    let rel = &job.rel;
    let Some(content) = e.content else { return };
    let fd = job.fd;
    let raw = fd.as_fd();
    let mut sink = FileSink {
        fd: raw,
        pos: 0,
        holes: &e.holes,
        hole_ix: 0,
        written: 0,
        end: 0,
    };
    if let Err(err) = store.read_to(&content, &mut sink) {
        drop(fd);
        // A partly written file must not look restored.
        if let Ok(name) = sys::cstring(&e.name) {
            let _ = sys::unlink_at(&*job.dir, &name);
        }
        if is_integrity(&err) {
            out.integrity(rel, Some(content), err);
        } else {
            out.error(rel, "writing content", err);
        }
        return;
    }
    out.bytes += sink.written;
    // Only a file that ends in a hole (or whose content is shorter than recorded) is not
    // already at its size.
    if sink.end != e.size
        && let Err(err) = sys::ftruncate(raw, e.size)
    {
        out.error(rel, "set size", err);
    }
    if policy.needs_chown(e)
        && let Err(err) = sys::fchown(raw, e.uid, e.gid)
    {
        out.error(rel, "chown", err);
    }
    set_xattrs_fd(policy, raw, e, rel, out);
    if policy.needs_chmod(e)
        && let Err(err) = sys::fchmod(raw, e.mode)
    {
        out.error(rel, "chmod", err);
    }
    if let Err(err) = sys::futimens(raw, e.mtime_sec, e.mtime_nsec) {
        out.error(rel, "set mtime", err);
    }
    out.files += 1;
}

/// Owner, xattrs, mode, then mtime — after the contents, so their creation does not
/// change the directory's mtime afterwards.
fn set_dir_metadata(policy: &Policy, fd: &OwnedFd, e: &Entry, rel: &[u8], out: &mut Issues) {
    let raw = fd.as_fd();
    if policy.owners
        && let Err(err) = sys::fchown(raw, e.uid, e.gid)
    {
        out.error(rel, "chown", err);
    }
    set_xattrs_fd(policy, raw, e, rel, out);
    if let Err(err) = sys::fchmod(raw, e.mode) {
        out.error(rel, "chmod", err);
    }
    if let Err(err) = sys::futimens(raw, e.mtime_sec, e.mtime_nsec) {
        out.error(rel, "set mtime", err);
    }
}

fn set_xattrs_fd(policy: &Policy, fd: BorrowedFd<'_>, e: &Entry, rel: &[u8], out: &mut Issues) {
    for (n, v) in &e.xattrs {
        if policy.wanted_xattr(n)
            && let Err(err) = sys::fsetxattr(fd, n, v)
        {
            out.error(rel, &format!("xattr {}", String::from_utf8_lossy(n)), err);
        }
    }
}

/// The walk of the tree: creates directories and non-file entries itself, creates each file
/// empty and hands it to the workers for its content and metadata.
struct Restorer<'a, 's> {
    store: &'a dyn ArtifactRead,
    policy: &'a Policy,
    target_fd: BorrowedFd<'s>,
    /// Hardlink group → target-relative path of its first restored member.
    links: HashMap<u64, CString>,
    s: &'s mut RestoreSummary,
    issues: &'s mut Issues,
    jobs: chan::Sender<FileJob>,
}

fn rel_path(rel: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(rel))
}

fn is_integrity(e: &AccessError) -> bool {
    e.is_integrity()
}

impl Restorer<'_, '_> {
    fn not_taken_in(&mut self, rel: &[u8], e: &Entry) {
        let message = match &e.error {
            Some(err) => format!(
                "not taken in: {} failed: {}",
                err.op,
                sys::strerror(err.errno)
            ),
            None => "not taken in".to_string(),
        };
        self.s.not_taken_in.push(RestoreIssue {
            path: rel_path(rel),
            message,
            reference: None,
        });
    }

    fn dir_contents(&mut self, dir: &Arc<OwnedFd>, tree: &Reference, rel: &mut Vec<u8>) {
        let t = match read_tree(self.store, tree) {
            Ok(t) => Arc::new(t),
            Err(BrowseError::Store { reference, source }) if !is_integrity(&source) => {
                return self
                    .issues
                    .error(rel, "reading tree", format!("{reference}: {source}"));
            }
            Err(e) => return self.issues.integrity(rel, Some(*tree), e),
        };
        let base = rel.len();
        for i in 0..t.entries.len() {
            rel.truncate(base);
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&t.entries[i].name);
            self.entry(dir, &t, i, rel);
        }
        rel.truncate(base);
    }

    fn entry(&mut self, dir: &Arc<OwnedFd>, tree: &Arc<Tree>, index: usize, rel: &mut Vec<u8>) {
        let e = &tree.entries[index];
        // Decoded trees only hold valid names; checked again because this is the one place
        // where a bad name would write outside the target.
        if let Err(why) = validate_name(&e.name) {
            return self
                .issues
                .integrity(rel, None, format!("refused entry name: {why}"));
        }
        let Ok(name) = sys::cstring(&e.name) else {
            return;
        };
        let dfd = dir.as_fd();
        if e.kind != Kind::Dir
            && e.hardlink_group != 0
            && let Some(first) = self.links.get(&e.hardlink_group)
        {
            match sys::link_at(self.target_fd, first, dfd, &name) {
                Ok(()) => {
                    self.s.hardlinks += 1;
                    return;
                }
                Err(err) => self.issues.error(rel, "linking to its hardlink group", err),
            }
        }
        let done = match e.kind {
            Kind::Dir => {
                self.dir(dfd, &name, e, rel);
                false
            }
            Kind::File => self.file(dir, &name, tree, index, rel),
            Kind::Symlink => self.symlink(dfd, &name, e, rel),
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                self.special(dfd, &name, e, rel)
            }
            Kind::Unknown => {
                self.not_taken_in(rel, e);
                false
            }
        };
        if done
            && e.hardlink_group != 0
            && let Ok(p) = sys::cstring(rel)
        {
            self.links.insert(e.hardlink_group, p);
        }
    }

    fn dir(&mut self, dir: BorrowedFd<'_>, name: &CStr, e: &Entry, rel: &mut Vec<u8>) {
        if let Err(err) = sys::mkdir_at(dir, name, 0o700) {
            return self.issues.error(rel, "mkdir", err);
        }
        let fd = match sys::open_at(dir, name, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
            Ok(fd) => Arc::new(fd),
            Err(err) => return self.issues.error(rel, "open directory", err),
        };
        self.s.dirs += 1;
        match e.content {
            Some(t) => self.dir_contents(&fd, &t, rel),
            None => self.not_taken_in(rel, e),
        }
        set_dir_metadata(self.policy, &fd, e, rel, self.issues);
    }

    fn file(
        &mut self,
        dir: &Arc<OwnedFd>,
        name: &CStr,
        tree: &Arc<Tree>,
        index: usize,
        rel: &[u8],
    ) -> bool {
        let e = &tree.entries[index];
        if e.content.is_none() {
            self.not_taken_in(rel, e);
            return false;
        }
        let fd = match create_file(dir.as_fd(), name, e) {
            Ok(fd) => fd,
            Err(err) => {
                self.issues.error(rel, "create", err);
                return false;
            }
        };
        let job = FileJob {
            fd,
            dir: Arc::clone(dir),
            tree: Arc::clone(tree),
            index,
            rel: rel.to_vec(),
        };
        if let Err(chan::SendError(job)) = self.jobs.send(job) {
            // No worker left (cannot happen while the scope runs): write it here.
            write_file(self.store, self.policy, job, self.issues);
        }
        true
    }

    fn symlink(&mut self, dir: BorrowedFd<'_>, name: &CStr, e: &Entry, rel: &[u8]) -> bool {
        if e.link_target.is_empty() {
            self.not_taken_in(rel, e);
            return false;
        }
        let Ok(target) = sys::cstring(&e.link_target) else {
            return false;
        };
        if let Err(err) = sys::symlink_at(&target, dir, name) {
            self.issues.error(rel, "symlink", err);
            return false;
        }
        self.s.symlinks += 1;
        self.finish_at(dir, name, e, rel, false);
        true
    }

    fn special(&mut self, dir: BorrowedFd<'_>, name: &CStr, e: &Entry, rel: &[u8]) -> bool {
        let (fmt, dev) = match e.kind {
            Kind::Fifo => (FileType::Fifo, 0),
            Kind::Socket => (FileType::Socket, 0),
            Kind::CharDevice => (
                FileType::CharacterDevice,
                sys::makedev(e.rdev_major, e.rdev_minor),
            ),
            _ => (
                FileType::BlockDevice,
                sys::makedev(e.rdev_major, e.rdev_minor),
            ),
        };
        if let Err(err) = sys::mknod_at(dir, name, fmt.as_raw_mode() | (e.mode & 0o777), dev) {
            self.issues.error(rel, "mknod", err);
            return false;
        }
        self.s.specials += 1;
        self.finish_at(dir, name, e, rel, true);
        true
    }

    /// Owner, xattrs, mode and mtime of an entry that cannot be opened safely (symlinks,
    /// FIFOs, sockets, devices), set through its directory without following it.
    fn finish_at(&mut self, dir: BorrowedFd<'_>, name: &CStr, e: &Entry, rel: &[u8], chmod: bool) {
        if self.policy.owners
            && let Err(err) = sys::lchown_at(dir, name, e.uid, e.gid)
        {
            self.issues.error(rel, "chown", err);
        }
        if !e.xattrs.is_empty() {
            // There is no lsetxattrat: reach the entry through our own directory fd.
            let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            p.extend_from_slice(name.to_bytes());
            if let Ok(path) = sys::cstring(&p) {
                for (n, v) in &e.xattrs {
                    if self.policy.wanted_xattr(n)
                        && let Err(err) = sys::lsetxattr(&path, n, v)
                    {
                        self.issues.error(
                            rel,
                            &format!("xattr {}", String::from_utf8_lossy(n)),
                            err,
                        );
                    }
                }
            }
        }
        if chmod && let Err(err) = sys::chmod_at(dir, name, e.mode) {
            self.issues.error(rel, "chmod", err);
        }
        if let Err(err) = sys::lutimens_at(dir, name, e.mtime_sec, e.mtime_nsec) {
            self.issues.error(rel, "set mtime", err);
        }
    }
}

/// Writes a file's logical bytes, skipping the recorded holes (left unallocated; the final
/// `ftruncate` sets the size). Bytes inside a hole that are not zero are written anyway, so
/// the restored content always equals the verified artifact.
struct FileSink<'a> {
    fd: BorrowedFd<'a>,
    pos: u64,
    holes: &'a [Hole],
    hole_ix: usize,
    written: u64,
    /// Where the last byte actually written ends: the file's size so far.
    end: u64,
}

impl Write for FileSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            while let Some(h) = self.holes.get(self.hole_ix) {
                if h.offset + h.len <= self.pos {
                    self.hole_ix += 1;
                } else {
                    break;
                }
            }
            let (n, in_hole) = match self.holes.get(self.hole_ix) {
                Some(h) if h.offset <= self.pos => (
                    ((h.offset + h.len - self.pos) as usize).min(rest.len()),
                    true,
                ),
                Some(h) => (((h.offset - self.pos) as usize).min(rest.len()), false),
                None => (rest.len(), false),
            };
            let part = &rest[..n];
            if !in_hole || part.iter().any(|&b| b != 0) {
                sys::pwrite_all(self.fd, part, self.pos)?;
                self.written += n as u64;
                self.end = self.pos + n as u64;
            }
            self.pos += n as u64;
            rest = &rest[n..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
