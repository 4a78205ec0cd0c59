//! Intake of file trees into a snapshot, and restore of a snapshot's tree.

use std::ffi::{CString, c_char, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use ::asl_store::TypeTag;

use crate::args::{self, asl_ref};
use crate::handle::{StoreHandle, asl_store};
use crate::status::{Error, asl_status, guard};

/// Intake flag: do not cross into other filesystems (`asl-intake -x`).
pub const ASL_INTAKE_ONE_FILE_SYSTEM: u32 = 1;
/// Intake flag: read every file even if the stat cache says it is unchanged.
pub const ASL_INTAKE_NO_STAT_CACHE: u32 = 2;
/// Restore flag: do not restore owners (the default restores them when running as root).
pub const ASL_RESTORE_NO_OWNERS: u32 = 1;
/// Restore flag: do not restore extended attributes.
pub const ASL_RESTORE_NO_XATTRS: u32 = 2;

/// How to take trees in. Zero (or NULL) in a field means its default.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct asl_intake_options {
    /// The snapshot's label (NULL: none).
    pub label: *const c_char,
    /// Glob patterns; an entry whose full path or name matches is left out.
    pub excludes: *const *const c_char,
    pub excludes_len: usize,
    /// Worker threads (0: one per core).
    pub threads: u32,
    /// `ASL_INTAKE_*` flags.
    pub flags: u32,
    /// How often the progress callback is called, in milliseconds (0: 100).
    pub progress_interval_ms: u32,
}

/// Counters of a running intake, as the progress callback sees them.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct asl_progress {
    /// Entries of every kind seen so far.
    pub entries: u64,
    /// Regular files whose content is known (read or taken from the stat cache).
    pub files: u64,
    pub dirs: u64,
    pub bytes_read: u64,
    pub bytes_new: u64,
    /// Inputs that could not be read (recorded, and intake goes on).
    pub errors: u64,
    /// The directory or large file being worked on; valid during the callback only.
    pub current_path: *const c_char,
    /// True on the last call, made once the tree is taken in (before the commit).
    pub done: bool,
}

/// Called on the calling thread of `asl_intake`, every `progress_interval_ms` and once at
/// the end. It must not call libasl with the same store handle (such a call returns
/// `ASL_E_USAGE`); other handles are fine.
#[allow(non_camel_case_types)]
pub type asl_progress_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, progress: *const asl_progress)>;

/// What an intake did.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct asl_intake_result {
    pub snapshot_id: u64,
    /// The root tree artifact.
    pub root: asl_ref,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and devices.
    pub specials: u64,
    pub bytes_total: u64,
    pub bytes_read: u64,
    pub bytes_new: u64,
    /// Inputs recorded as unreadable (the status is then `ASL_E_INCOMPLETE`).
    pub errors: u64,
    pub changed_during_read: u64,
    pub stat_cache_hits: u64,
}

/// What a restore did.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct asl_restore_result {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub specials: u64,
    pub hardlinks: u64,
    pub bytes_written: u64,
    /// Entries the intake had recorded as unreadable: nothing to restore for them.
    pub not_taken_in: u64,
    /// Entries that could not be created or set (status `ASL_E_INCOMPLETE`).
    pub errors: u64,
    /// Damaged or missing artifacts (status `ASL_E_CORRUPT`).
    pub integrity_errors: u64,
}

fn snapshot_progress(p: &asl_fs::Progress, done: bool, call: &mut dyn FnMut(&asl_progress)) {
    let current =
        CString::new(p.current_path().as_os_str().as_bytes().to_vec()).unwrap_or_default();
    let snap = asl_progress {
        entries: p.entries.load(Ordering::Relaxed),
        files: p.files.load(Ordering::Relaxed),
        dirs: p.dirs.load(Ordering::Relaxed),
        bytes_read: p.bytes_read.load(Ordering::Relaxed),
        bytes_new: p.bytes_new.load(Ordering::Relaxed),
        errors: p.errors.load(Ordering::Relaxed),
        current_path: current.as_ptr(),
        done,
    };
    call(&snap);
}

/// Takes the trees at `paths` into the store and commits them as one snapshot, as
/// `asl-intake` does: one directory becomes the snapshot's root; several paths (or a file)
/// become entries of a root named by their last components. Relative paths are taken
/// relative to the working directory. Needs a write handle; puts on it from other threads
/// wait until the intake is committed.
///
/// Unreadable inputs are recorded and counted, and the intake goes on: the snapshot is
/// committed and the status is `ASL_E_INCOMPLETE`. `options`, `progress` and `result` may
/// be NULL.
///
/// # Safety
/// `paths` points to `paths_len` NUL-terminated strings; `options` is NULL or points to an
/// `asl_intake_options` whose pointers are valid as documented there; `progress` behaves as
/// `asl_progress_fn` says for `ctx`; `result` is NULL or valid for writing an
/// `asl_intake_result`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_intake(
    store: *mut asl_store,
    paths: *const *const c_char,
    paths_len: usize,
    options: *const asl_intake_options,
    progress: asl_progress_fn,
    ctx: *mut c_void,
    result: *mut asl_intake_result,
) -> asl_status {
    guard(|| {
        // SAFETY: the caller's contract for `paths`.
        let raw = unsafe { args::array(paths, paths_len, "paths") }?;
        if raw.is_empty() {
            return Err(Error::usage("no path given to take in (paths_len is 0)"));
        }
        let paths: Vec<PathBuf> = raw
            .iter()
            .map(|c| {
                let p = PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes()));
                std::path::absolute(&p).unwrap_or(p)
            })
            .collect();
        let o = if options.is_null() {
            None
        } else {
            // SAFETY: not NULL and readable by the contract; plain data.
            Some(unsafe { *options })
        };
        let flags = o.map_or(0, |o| o.flags);
        if flags & !(ASL_INTAKE_ONE_FILE_SYSTEM | ASL_INTAKE_NO_STAT_CACHE) != 0 {
            return Err(Error::usage(format!("unknown intake flags {flags:#x}")));
        }
        let label = match o {
            // SAFETY: the caller's contract for the options' strings.
            Some(o) => unsafe { args::opt_text(o.label, "label") }?.map(str::to_string),
            None => None,
        };
        let excludes = match o {
            Some(o) => {
                // SAFETY: the caller's contract for the options' array.
                let raw = unsafe { args::array(o.excludes, o.excludes_len, "excludes") }?;
                raw.iter()
                    .map(|c| {
                        c.to_str().map(str::to_string).map_err(|_| {
                            Error::new(
                                asl_status::ASL_E_UTF8,
                                format!(
                                    "exclude pattern '{}' is not valid UTF-8",
                                    c.to_string_lossy()
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => Vec::new(),
        };
        let interval = Duration::from_millis(match o.map_or(0, |o| o.progress_interval_ms) {
            0 => 100,
            ms => u64::from(ms),
        });
        if !result.is_null() {
            // Nothing stale stays behind in the caller's structure when the call fails.
            // SAFETY: valid for writes by the contract.
            unsafe { result.write_bytes(0, 1) };
        }

        let h = StoreHandle::get(store)?;
        let mut g = h.write()?;
        let writer = g.writer()?;
        let opts = asl_fs::IntakeOptions {
            threads: o.map_or(0, |o| o.threads as usize),
            excludes,
            one_file_system: flags & ASL_INTAKE_ONE_FILE_SYSTEM != 0,
            stat_cache: (flags & ASL_INTAKE_NO_STAT_CACHE == 0)
                .then(|| asl_fs::statcache::path_for(writer.layout(), &paths)),
            after_open: None,
        };
        let counters = asl_fs::Progress::new();
        let mut report = |p: &asl_progress| {
            if let Some(cb) = progress {
                // SAFETY: the callback and its context are valid by the contract; `p`
                // lives for the call.
                h.in_callback(|| unsafe { cb(ctx, p) });
            }
        };
        // The intake runs on a thread of its own so that the callback runs on the caller's
        // thread, where C code (and Python's ctypes) expects it.
        let (paths_ref, opts_ref, counters_ref) = (&paths, &opts, &counters);
        let summary = std::thread::scope(|s| {
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let worker = s.spawn(move || {
                let r = asl_fs::intake(writer, paths_ref, opts_ref, counters_ref);
                let _ = done_tx.send(());
                r
            });
            while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(interval) {
                snapshot_progress(&counters, false, &mut report);
            }
            let r = worker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            if r.is_ok() {
                snapshot_progress(&counters, true, &mut report);
            }
            r
        })?;

        let meta = summary.snapshot_meta(label, &paths);
        let commit = g.writer_mut()?.commit(Some(summary.root), meta)?;
        g.invalidate();
        let out = asl_intake_result {
            snapshot_id: commit.snapshot.id,
            root: asl_ref::from(summary.root),
            files: summary.files,
            dirs: summary.dirs,
            symlinks: summary.symlinks,
            specials: summary.specials,
            bytes_total: summary.bytes_total,
            bytes_read: summary.bytes_read,
            bytes_new: summary.bytes_new,
            errors: summary.errors.len() as u64,
            changed_during_read: summary.changed_during_read,
            stat_cache_hits: summary.stat_cache_hits,
        };
        // SAFETY: NULL or valid for writes by the contract.
        unsafe { args::put(result, out) };
        if let Some(first) = summary.errors.first() {
            return Err(Error::new(
                asl_status::ASL_E_INCOMPLETE,
                format!(
                    "snapshot {} committed, but {} input(s) could not be read; first: {}: {:?} failed: {}",
                    commit.snapshot.id,
                    summary.errors.len(),
                    first.path.display(),
                    first.op,
                    first.message
                ),
            ));
        }
        Ok(())
    })
}

/// Restores the tree of snapshot `snapshot` (an id, a label or `"latest"`) — or, with
/// `path` (may be NULL), the entry at that path inside it — under `target`, which must not
/// exist or be empty, as `asl-admin restore` does. Restore never writes outside `target`
/// and checks every byte it reads. `result` (may be NULL) is filled in also when the status
/// is `ASL_E_CORRUPT` (damaged artifacts, named in the message) or `ASL_E_INCOMPLETE`
/// (entries that could not be created).
///
/// # Safety
/// `snapshot` and `target` are NUL-terminated strings, `path` is NULL or one; `result` is
/// NULL or valid for writing an `asl_restore_result`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_restore(
    store: *mut asl_store,
    snapshot: *const c_char,
    path: *const c_char,
    target: *const c_char,
    flags: u32,
    result: *mut asl_restore_result,
) -> asl_status {
    guard(|| {
        // SAFETY: the caller's contract for the strings.
        let name = unsafe { args::text(snapshot, "snapshot name") }?;
        // SAFETY: as above.
        let target = unsafe { args::path(target, "target") }?;
        // NULL and "" both mean the whole tree.
        let inner: Vec<u8> = if path.is_null() {
            Vec::new()
        } else {
            // SAFETY: as above.
            unsafe { args::cstr(path, "path") }?.to_bytes().to_vec()
        };
        if flags & !(ASL_RESTORE_NO_OWNERS | ASL_RESTORE_NO_XATTRS) != 0 {
            return Err(Error::usage(format!("unknown restore flags {flags:#x}")));
        }
        let opts = asl_fs::RestoreOptions {
            owners: (flags & ASL_RESTORE_NO_OWNERS != 0).then_some(false),
            no_xattrs: flags & ASL_RESTORE_NO_XATTRS != 0,
            threads: None,
        };
        let h = StoreHandle::get(store)?;
        let summary = h.with_view(|v| {
            let snap = v.store().resolve_snapshot(name)?;
            let reader = v.store().reader_at(snap);
            // A put or capture snapshot's root is another kind of artifact: refused here
            // rather than reported as a damaged tree.
            let root = snap
                .root
                .filter(|r| reader.type_tag(r) == Some(TypeTag::TREE.0))
                .ok_or_else(|| {
                    Error::usage(format!(
                        "snapshot {} has no tree (it is a '{}' snapshot)",
                        snap.id, snap.meta.kind
                    ))
                })?;
            let sub = (!inner.is_empty()).then_some(inner.as_slice());
            Ok(asl_fs::restore(&reader, &root, sub, &target, &opts)?)
        })?;
        let out = asl_restore_result {
            files: summary.files,
            dirs: summary.dirs,
            symlinks: summary.symlinks,
            specials: summary.specials,
            hardlinks: summary.hardlinks,
            bytes_written: summary.bytes_written,
            not_taken_in: summary.not_taken_in.len() as u64,
            errors: summary.errors.len() as u64,
            integrity_errors: summary.integrity_errors.len() as u64,
        };
        // SAFETY: NULL or valid for writes by the contract.
        unsafe { args::put(result, out) };
        if let Some(first) = summary.integrity_errors.first() {
            return Err(Error::new(
                asl_status::ASL_E_CORRUPT,
                format!(
                    "restored to {}, but {} entr(y/ies) are damaged in the store; first: {}: {}",
                    target.display(),
                    summary.integrity_errors.len(),
                    first.path.display(),
                    first.message
                ),
            ));
        }
        if let Some(first) = summary.errors.first() {
            return Err(Error::new(
                asl_status::ASL_E_INCOMPLETE,
                format!(
                    "restored to {}, but {} entr(y/ies) could not be created or set; first: {}: {}",
                    target.display(),
                    summary.errors.len(),
                    first.path.display(),
                    first.message
                ),
            ));
        }
        Ok(())
    })
}
