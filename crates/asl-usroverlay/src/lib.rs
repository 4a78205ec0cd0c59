//! Writable (or read-only) overlayfs layers over a read-only tree, normally `/usr`.
//!
//! This is the library behind `asl-usroverlay`; it is meant to be callable from a long-running
//! service as well (every operation is a method of [`Overlays`], takes plain values and returns
//! typed results; nothing prints).
//!
//! # Contract
//! * **Modes** ([`Mode`]): *transient* puts the upper layer on a dedicated tmpfs under the
//!   runtime directory (gone at reboot); *hotfix* keeps it under the persistent directory and
//!   [`Overlays::apply_boot`] mounts it again after a reboot; *read-only* is a transient overlay
//!   mounted read-only (writes fail with `EROFS`).
//! * **Lower layer by descriptor**: the covered directory is opened before anything is mounted
//!   and handed to overlayfs as that descriptor, so the lower is the real tree, never the
//!   overlay itself. The upper directory gets the covered directory's mode, owner and SELinux
//!   label, so the merged root looks exactly like the original.
//! * **One overlay per path**: a second one (ours or anybody's overlayfs) is refused with the
//!   reason; names are unique.
//! * **Record first**: a JSON record ([`OverlayRecord`]) is written atomically before the
//!   overlay is mounted and goes last, and mounts carry the source tag `asl-usroverlay:NAME`.
//!   So whenever the tool dies, [`Overlays::status`] tells from the record plus the kernel's
//!   mount table whether the overlay is *active* or *stale* (recorded, mount gone), and
//!   [`Overlays::remove`] cleans either.
//! * **Records follow mount namespaces**: a transient or read-only overlay's record is written
//!   into its layer tmpfs while that tmpfs is not yet attached, so record and layer appear
//!   together and only in the mount namespace the overlay was applied in (and namespaces
//!   copied from it later). An overlay applied inside `unshare -m` therefore never shows up in
//!   the host's `/run` — not even as a stale entry after the namespace ends. A layer mount
//!   point left without a record (by another namespace) is reused, never removed: removing a
//!   directory that is a mount point elsewhere would detach that namespace's live layer.
//! * **Strict unmounts, even of the tool's own /usr**: `reset` and `remove` unmount without
//!   `MNT_DETACH` unless forced, so the kernel decides atomically that nobody uses the
//!   overlay. On a merged /usr (`/lib -> usr/lib`) the calling program itself maps its dynamic
//!   loader and libc through the overlay and would always be refused; a scan for it before a
//!   lazy unmount could not be atomic (a process can open a file between scan and detach).
//!   So the program first replaces itself by a private copy that maps nothing from the overlay
//!   ([`Overlays::relaunch_outside`], see the `relaunch` module: the mapped files are copied
//!   to a tmpfs that is never attached to any path and freed with the process), then unmounts
//!   strictly. When the kernel refuses, [`Error::Busy`] names the processes holding files on
//!   that mount (pid, command, what they hold; see [`holders`]) and mounts inside it; `force`
//!   stays for an operator who accepts a lazy unmount.
//! * **Nothing half-done on bad input**: every check that can fail on the caller's input runs
//!   before the first write; a failure after that undoes what the call did.
//! * All mutating calls need root and hold an exclusive lock (`RUNTIME/.lock`).
//!
//! What it is not: it does not cover `/etc` or `/var`, so package-manager state (e.g.
//! `/var/lib/dpkg`) written while an overlay is active outlives the overlay; `apply` returns a
//! warning saying so.

mod diff;
mod error;
pub mod holders;
mod mount;
pub mod mountinfo;
mod record;
mod relaunch;
#[doc(hidden)]
pub mod testing;
mod time;
pub mod unit;

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use diff::{Diff, Usage};
pub use error::{Error, Result};
pub use holders::Holder;
pub use record::{Mode, OverlayRecord, RECORD_FORMAT, StateDirs, default_name, validate_name};
pub use relaunch::RELAUNCHED_ENV;
pub use time::rfc3339;

use mount::Unmount;

/// Environment variable naming a point at which the library aborts the process, to test that
/// state stays truthful when the tool crashes: `after-record` (record written, nothing
/// mounted) or `after-mount` (overlay mounted, call not finished). Never set it otherwise.
pub const CRASH_AT_ENV: &str = "ASL_USROVERLAY_CRASH_AT";

fn crash_point(at: &str) {
    if std::env::var_os(CRASH_AT_ENV).is_some_and(|v| v == at) {
        std::process::abort();
    }
}

/// What to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// The directory to cover (default `/usr`).
    pub path: PathBuf,
    pub mode: Mode,
    /// Overlay name; default derived from the path (`/usr` -> `usr`).
    pub name: Option<String>,
    /// tmpfs `size=` for transient/read-only upper layers (e.g. `2G`, `25%`); kernel default
    /// (half of RAM) when absent.
    pub tmpfs_size: Option<String>,
}

impl Default for ApplyRequest {
    fn default() -> ApplyRequest {
        ApplyRequest {
            path: PathBuf::from("/usr"),
            mode: Mode::Transient,
            name: None,
            tmpfs_size: None,
        }
    }
}

/// The result of a successful apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub record: OverlayRecord,
    /// Things the operator should know (package-manager state outside the overlay, ...).
    pub warnings: Vec<String>,
}

/// Whether a recorded overlay is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The overlay is mounted on its path.
    Active,
    /// Recorded, but the mount is gone (unmounted by hand, tool crashed while applying, or —
    /// for hotfix — not yet re-applied after a reboot).
    Stale,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Stale => "stale",
        }
    }
}

/// One overlay as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlayStatus {
    pub record: OverlayRecord,
    pub state: State,
    /// Space taken by the upper layer; `None` when it cannot be read (not root).
    pub usage: Option<Usage>,
}

/// What `apply --boot` did with one recorded overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum BootOutcome {
    /// A hotfix overlay was mounted again.
    Reapplied { name: String, path: PathBuf },
    /// It was mounted already; nothing done.
    AlreadyActive { name: String, path: PathBuf },
    /// A transient/read-only record whose mount is gone (left over from the previous boot
    /// because the runtime directory was not a tmpfs): its state was deleted.
    CleanedStale { name: String, path: PathBuf },
    /// Could not be re-applied; the others were still tried.
    Failed {
        name: String,
        path: PathBuf,
        error: String,
    },
}

/// What `remove` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub record: OverlayRecord,
    /// Whether an overlay had to be unmounted (false for a stale entry).
    pub was_active: bool,
}

/// The overlays recorded in one pair of state directories, and the operations on them.
#[derive(Debug, Clone)]
pub struct Overlays {
    dirs: StateDirs,
}

fn require_root(action: &'static str) -> Result<()> {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot {
            action,
            euid: euid.as_raw(),
        })
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// `p` with its longest existing prefix resolved (symlinks followed), the rest appended.
fn resolve_partially(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = fs::canonicalize(&existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Removes a file, treating "already gone" as success.
fn remove_file_if_present(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", p, e)),
        _ => Ok(()),
    }
}

fn remove_tree_if_present(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", p, e)),
        _ => Ok(()),
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .map_err(|e| Error::io("create", p, e))
}

/// Undo steps of a half-done operation, run in reverse order unless disarmed.
struct Undo(Vec<Box<dyn FnOnce()>>);

impl Undo {
    fn push(&mut self, f: impl FnOnce() + 'static) {
        self.0.push(Box::new(f));
    }
    fn disarm(mut self) {
        self.0.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(f) = self.0.pop() {
            f();
        }
    }
}

/// Holds the state lock; released on drop (closing the descriptor drops the flock).
struct Lock(#[allow(dead_code)] fs::File);

/// An overlay unmounted by [`Overlays::take_down`], its state lock still held.
struct TakenDown {
    _lock: Lock,
    rec: OverlayRecord,
    /// The mount table as it was before the overlay was unmounted.
    table: Vec<mountinfo::MountEntry>,
    was_active: bool,
}

/// Mounts the overlay of `rec` on `path`: the record's upper and work directories over
/// `lower` (the tree, opened before anything covered it), read-only unless its mode writes.
fn mount_layers(rec: &OverlayRecord, path: &Path, lower: BorrowedFd<'_>) -> Result<()> {
    mount::mount_overlay(
        &mountinfo::overlay_source(&rec.name),
        path,
        &mount::OverlayLayers {
            lower,
            upper: &rec.upper(),
            work: &rec.work(),
            passing: mount::LayerPassing::Fd,
        },
        !rec.mode.is_writable(),
    )
}

/// Detaches the tmpfs of a transient or read-only overlay's layer, if it is mounted. Lazily:
/// an overlay unmounted lazily may still be using it.
fn detach_layer(rec: &OverlayRecord, table: &[mountinfo::MountEntry]) -> Result<()> {
    if mountinfo::find_layer(table, &rec.name, &rec.layer).is_some() {
        mount::unmount_path(&rec.layer, Unmount::Lazy)
            .map_err(|e| Error::sys("unmount", &rec.layer, e))?;
    }
    Ok(())
}

impl Overlays {
    /// Overlays recorded in `dirs` (relative directories are taken from the current one).
    pub fn new(dirs: StateDirs) -> Overlays {
        Overlays {
            dirs: StateDirs {
                runtime: absolute(&dirs.runtime),
                persistent: absolute(&dirs.persistent),
            },
        }
    }

    /// The state directories in use.
    pub fn dirs(&self) -> &StateDirs {
        &self.dirs
    }

    fn lock(&self) -> Result<Lock> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dirs.runtime)
            .map_err(|e| Error::io("create", &self.dirs.runtime, e))?;
        let path = self.dirs.lock_file();
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::sys("lock", &path, e))?;
        Ok(Lock(f))
    }

    /// Every recorded overlay, sorted by name.
    pub fn records(&self) -> Result<Vec<OverlayRecord>> {
        record::load_all(&self.dirs)
    }

    fn find(&self, name: &str) -> Result<OverlayRecord> {
        let all = self.records()?;
        let known: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
        all.into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::UnknownName {
                name: name.to_string(),
                known,
            })
    }

    fn is_active(rec: &OverlayRecord, table: &[mountinfo::MountEntry]) -> bool {
        mountinfo::find_overlay(table, &rec.name, &rec.path).is_some()
    }

    /// Resolves and checks the directory to cover.
    fn resolve_target(&self, path: &Path) -> Result<PathBuf> {
        let p = absolute(path);
        let resolved = match fs::canonicalize(&p) {
            Ok(r) => r,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                return Err(Error::PathNotFound { path: p });
            }
            Err(e) => return Err(Error::io("resolve", p, e)),
        };
        let md = fs::metadata(&resolved).map_err(|e| Error::io("stat", &resolved, e))?;
        if !md.is_dir() {
            return Err(Error::NotADirectory { path: p });
        }
        let refuse = |reason: String| Error::PathRefused {
            path: resolved.clone(),
            reason,
        };
        if resolved == Path::new("/") {
            return Err(refuse(
                "covering / would hide the state directories and every mount below it; cover a subtree such as /usr".into(),
            ));
        }
        if resolved.to_str().is_none() {
            return Err(refuse(
                "its name is not valid UTF-8, which the state record cannot hold".into(),
            ));
        }
        for dir in [&self.dirs.runtime, &self.dirs.persistent] {
            let d = resolve_partially(dir);
            if d.starts_with(&resolved) {
                return Err(refuse(format!(
                    "the state directory {} is inside it, and overlayfs cannot keep its upper layer inside the lower one; use --state-root to move the state",
                    d.display()
                )));
            }
            if resolved.starts_with(&d) {
                return Err(refuse(format!(
                    "it is inside the state directory {}",
                    d.display()
                )));
            }
        }
        Ok(resolved)
    }

    /// Refuses a duplicate name or a second overlay on `path`. Reads only.
    fn check_conflicts(&self, name: &str, path: &Path) -> Result<()> {
        let records = self.records()?;
        if let Some(r) = records.iter().find(|r| r.name == name) {
            return Err(Error::NameInUse {
                name: name.to_string(),
                path: r.path.clone(),
            });
        }
        let table = mountinfo::read()?;
        if let Some(r) = records.iter().find(|r| r.path == path) {
            let reason = if Self::is_active(r, &table) {
                format!(
                    "asl-usroverlay '{}' ({}) is mounted there since {}; `reset {}` discards its changes, `remove {}` takes it away",
                    r.name,
                    r.mode,
                    rfc3339(r.since),
                    r.name,
                    r.name
                )
            } else if r.mode == Mode::Hotfix {
                format!(
                    "the hotfix overlay '{}' is recorded for it but not mounted; `apply --boot` mounts it again, `remove {}` deletes it",
                    r.name, r.name
                )
            } else {
                format!(
                    "the stale entry '{}' is recorded for it; `remove {}` cleans it up first",
                    r.name, r.name
                )
            };
            return Err(Error::AlreadyOverlaid {
                path: path.to_path_buf(),
                reason,
            });
        }
        if let Some(m) = mountinfo::at(&table, path)
            .filter(|m| m.fs_type == "overlay")
            .last()
        {
            return Err(Error::AlreadyOverlaid {
                path: path.to_path_buf(),
                reason: format!(
                    "an overlayfs mount (source '{}') not made by asl-usroverlay covers it; stacking another overlay on it is refused (overlayfs nests at most two levels and the new lower would be that overlay)",
                    m.source
                ),
            });
        }
        Ok(())
    }

    /// Covers `req.path` with an overlay. See the crate documentation for the guarantees.
    pub fn apply(&self, req: &ApplyRequest) -> Result<Applied> {
        require_root("apply")?;
        if let Some(n) = &req.name {
            validate_name(n)?;
        }
        if let Some(size) = &req.tmpfs_size {
            validate_tmpfs_size(size)?;
        }
        let path = self.resolve_target(&req.path)?;
        let name = req.name.clone().unwrap_or_else(|| default_name(&path));
        validate_name(&name)?;
        self.check_conflicts(&name, &path)?;

        // Checks are done; from here on this call writes, and undoes its writes on failure.
        let _lock = self.lock()?;
        self.check_conflicts(&name, &path)?;
        let layer = match req.mode {
            Mode::Hotfix => self.dirs.hotfix_layer(&name),
            Mode::Transient | Mode::ReadOnly => self.dirs.transient_layer(&name),
        };
        // A leftover directory without a record: for hotfix what a remove interrupted at its
        // very last step leaves; for a transient layer the mount point of an overlay of
        // another mount namespace (or one that ended). An empty one is removed (hotfix) or
        // reused as the mount point (transient: removing it would detach a live layer mount
        // of another namespace); anything more is somebody's data and is not touched.
        let leftover = fs::symlink_metadata(&layer).is_ok();
        let in_the_way = leftover
            && match req.mode {
                Mode::Hotfix => fs::remove_dir(&layer).is_err(),
                Mode::Transient | Mode::ReadOnly => fs::read_dir(&layer)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true),
            };
        if in_the_way {
            return Err(Error::AlreadyOverlaid {
                path: path.clone(),
                reason: format!(
                    "a state directory {} without a record is in the way (left by an interrupted remove?); delete it by hand",
                    layer.display()
                ),
            });
        }
        // The real tree, taken before anything covers it.
        let lower = mount::open_dir(&path)?;
        let rec = OverlayRecord {
            format: RECORD_FORMAT,
            name: name.clone(),
            path: path.clone(),
            mode: req.mode,
            since: time::now(),
            layer: layer.clone(),
            tmpfs_size: match req.mode {
                Mode::Hotfix => None,
                _ => req.tmpfs_size.clone(),
            },
        };
        let mut undo = Undo(Vec::new());
        match req.mode {
            Mode::Hotfix => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&self.dirs.persistent)
                    .map_err(|e| Error::io("create", &self.dirs.persistent, e))?;
                mkdir(&layer, 0o700)?;
                let l = layer.clone();
                undo.push(move || {
                    let _ = fs::remove_dir_all(&l);
                });
                record::save_in(&layer, &rec)?;
                make_layer_dirs(&layer, &rec.path, &lower)?;
            }
            Mode::Transient | Mode::ReadOnly => {
                if !leftover {
                    mkdir(&layer, 0o700)?;
                    let l = layer.clone();
                    undo.push(move || {
                        let _ = fs::remove_dir(&l);
                    });
                }
                attach_transient_layer(&rec, &lower)?;
                let l = layer.clone();
                undo.push(move || {
                    let _ = mount::unmount_path(&l, Unmount::Lazy);
                });
            }
        }
        crash_point("after-record");
        mount_layers(&rec, &path, lower.as_fd())?;
        crash_point("after-mount");
        undo.disarm();
        Ok(Applied {
            warnings: apply_warnings(&rec),
            record: rec,
        })
    }

    /// Every recorded overlay with its state and upper-layer size.
    pub fn status(&self) -> Result<Vec<OverlayStatus>> {
        let table = mountinfo::read()?;
        let mut out = Vec::new();
        for rec in self.records()? {
            let state = if Self::is_active(&rec, &table) {
                State::Active
            } else {
                State::Stale
            };
            let usage = diff::usage(&rec.upper()).ok();
            out.push(OverlayStatus {
                record: rec,
                state,
                usage,
            });
        }
        Ok(out)
    }

    /// What the overlay `name` changed: added, changed, deleted (whiteouts) and opaque
    /// directories. Needs root: the overlay's xattrs and the tree underneath the mounted
    /// overlay (seen from a private mount namespace of a helper thread) are root-only.
    pub fn diff(&self, name: &str) -> Result<Diff> {
        require_root("status --diff")?;
        let rec = self.find(name)?;
        let upper = rec.upper();
        if !upper.is_dir() {
            return Ok(Diff::default());
        }
        let table = mountinfo::read()?;
        if !Self::is_active(&rec, &table) {
            return diff::diff(&upper, &rec.path, &rec.path);
        }
        mount::in_private_namespace(|| {
            // Peel mounts off the path (ours, and anything stacked on it) until the tree
            // underneath our overlay shows; this namespace is thrown away afterwards.
            for _ in 0..32 {
                let t = mountinfo::read()?;
                if mountinfo::find_overlay(&t, &rec.name, &rec.path).is_none() {
                    return diff::diff(&upper, &rec.path, &rec.path);
                }
                mount::unmount_path(&rec.path, Unmount::Lazy).map_err(|e| {
                    Error::sys("look underneath (private unmount of)", &rec.path, e)
                })?;
            }
            Err(Error::io(
                "look underneath",
                &rec.path,
                io::Error::other("too many mounts stacked on it"),
            ))
        })
    }

    /// If this process itself keeps the mounted overlay `name` busy — on a merged-/usr system
    /// it maps its dynamic loader and libc through an overlay on `/usr` — replaces the process
    /// with a private copy of itself that does not, running the same command line (see
    /// [`RELAUNCHED_ENV`] and the crate documentation). Call it before [`Overlays::reset`] or
    /// [`Overlays::remove`] from a program whose `main` can simply run again. Returns `Ok(())`
    /// when there was nothing to do (not mounted, nothing mapped from it, or this process is
    /// already the relaunched copy); on success it does not return.
    pub fn relaunch_outside(&self, name: &str) -> Result<()> {
        // Without root there is nothing to unmount; reset and remove say so.
        if !rustix::process::geteuid().is_root() {
            return Ok(());
        }
        let rec = self.find(name)?;
        let table = mountinfo::read()?;
        match mountinfo::find_overlay(&table, &rec.name, &rec.path) {
            Some(m) => relaunch::relaunch_outside(m.id),
            None => Ok(()),
        }
    }

    /// The start of `reset` and `remove`: checks that `name` exists before taking the lock
    /// (whose directory an unknown name must not create), reads its record again under the
    /// lock, and unmounts the overlay if it is mounted.
    fn take_down(&self, name: &str, force: bool) -> Result<TakenDown> {
        self.find(name)?;
        let lock = self.lock()?;
        let rec = self.find(name)?;
        let table = mountinfo::read()?;
        let mounted = mountinfo::find_overlay(&table, &rec.name, &rec.path).map(|m| m.id);
        if let Some(id) = mounted {
            Self::unmount_overlay(&rec, id, &table, force)?;
        }
        Ok(TakenDown {
            _lock: lock,
            rec,
            table,
            was_active: mounted.is_some(),
        })
    }

    /// Unmounts the overlay of `rec` (mount `id`). Strictly unless `force`: the kernel refuses
    /// atomically if anything uses it, and then the refusal names who does. A refused strict
    /// unmount is tried again a few times first: a process that only looks (`ps`, `lsof`, our
    /// own holder scan run by another invocation) holds a file on the mount for microseconds,
    /// and that must not turn into a refusal.
    fn unmount_overlay(
        rec: &OverlayRecord,
        id: u64,
        table: &[mountinfo::MountEntry],
        force: bool,
    ) -> Result<()> {
        const BUSY_RETRIES: u32 = 5;
        let how = if force {
            Unmount::Lazy
        } else {
            Unmount::Strict
        };
        let mut result = mount::unmount_path(&rec.path, how);
        for attempt in 1..=BUSY_RETRIES {
            if result != Err(rustix::io::Errno::BUSY) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)));
            result = mount::unmount_path(&rec.path, how);
        }
        match result {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::BUSY) => Err(Error::Busy {
                name: rec.name.clone(),
                path: rec.path.clone(),
                holders: holders::holders_of(id),
                submounts: table
                    .iter()
                    .filter(|m| m.parent == id)
                    .map(|m| m.mount_point.clone())
                    .collect(),
            }),
            Err(e) => Err(Error::sys("unmount", &rec.path, e)),
        }
    }

    /// Mounts the recorded overlay on its path (layers must exist).
    fn mount_recorded(&self, rec: &OverlayRecord) -> Result<()> {
        let path = self.resolve_target(&rec.path)?;
        let table = mountinfo::read()?;
        if let Some(m) = mountinfo::at(&table, &path)
            .filter(|m| m.fs_type == "overlay")
            .last()
        {
            return Err(Error::AlreadyOverlaid {
                path,
                reason: format!("an overlayfs mount (source '{}') covers it", m.source),
            });
        }
        for dir in [rec.upper(), rec.work()] {
            if !dir.is_dir() {
                return Err(Error::io(
                    "find the layer directory",
                    dir,
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
        }
        let lower = mount::open_dir(&path)?;
        mount_layers(rec, &path, lower.as_fd())
    }

    /// Discards every change of overlay `name` and mounts it again, empty, in the same mode.
    /// Files in use make it fail with [`Error::Busy`] naming the processes, unless `force`
    /// (lazy unmount: processes keep what they have open; new opens see the clean overlay).
    pub fn reset(&self, name: &str, force: bool) -> Result<OverlayRecord> {
        require_root("reset")?;
        let TakenDown {
            _lock, rec, table, ..
        } = self.take_down(name, force)?;
        let lower = mount::open_dir(&rec.path)?;
        match rec.mode {
            Mode::Transient | Mode::ReadOnly => {
                // A fresh tmpfs (with the record written into it again) is the cheapest
                // complete wipe; the old one is detached lazily because a lazily unmounted
                // overlay may still use it. Dying between the two leaves no record and no
                // overlay: the same as `remove`.
                detach_layer(&rec, &table)?;
                if !rec.layer.is_dir() {
                    mkdir(&rec.layer, 0o700)?;
                }
                attach_transient_layer(&rec, &lower)?;
            }
            Mode::Hotfix => {
                // Renamed away first so that a crash mid-delete never leaves a half-emptied
                // upper that would be mounted at the next boot.
                let trash = rec.layer.join(format!(".discard-{}", std::process::id()));
                mkdir(&trash, 0o700)?;
                for (dir, to) in [(rec.upper(), "upper"), (rec.work(), "work")] {
                    if dir.exists() {
                        fs::rename(&dir, trash.join(to))
                            .map_err(|e| Error::io("discard", &dir, e))?;
                    }
                }
                remove_tree_if_present(&trash)?;
                make_layer_dirs(&rec.layer, &rec.path, &lower)?;
            }
        }
        drop(lower);
        self.mount_recorded(&rec)?;
        Ok(rec)
    }

    /// Unmounts overlay `name` (if mounted) and deletes all its state, upper layer included.
    /// Works on stale entries too. Busy files: as for [`Overlays::reset`].
    pub fn remove(&self, name: &str, force: bool) -> Result<Removed> {
        require_root("remove")?;
        let TakenDown {
            _lock,
            rec,
            table,
            was_active,
        } = self.take_down(name, force)?;
        // Layers first, the record last: an interrupted remove leaves a stale entry that a
        // second remove finishes. A transient record lives in its layer tmpfs and goes with it.
        match rec.mode {
            Mode::Transient | Mode::ReadOnly => {
                detach_layer(&rec, &table)?;
                match fs::remove_dir(&rec.layer) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(Error::io("remove", &rec.layer, e));
                    }
                    _ => {}
                }
            }
            Mode::Hotfix => {
                remove_tree_if_present(&rec.upper())?;
                remove_tree_if_present(&rec.work())?;
                remove_file_if_present(&rec.file())?;
                remove_tree_if_present(&rec.layer)?;
            }
        }
        Ok(Removed {
            record: rec,
            was_active,
        })
    }

    /// Boot-time pass: mounts every hotfix overlay that is not mounted, and deletes the state
    /// of transient/read-only entries whose mount is gone (leftovers of the previous boot).
    /// One failure does not stop the others; each outcome is returned.
    pub fn apply_boot(&self) -> Result<Vec<BootOutcome>> {
        require_root("apply --boot")?;
        if self.records()?.is_empty() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let table = mountinfo::read()?;
        let mut out = Vec::new();
        for rec in self.records()? {
            let (name, path) = (rec.name.clone(), rec.path.clone());
            if Self::is_active(&rec, &table) {
                out.push(BootOutcome::AlreadyActive { name, path });
                continue;
            }
            let result = match rec.mode {
                Mode::Hotfix => self.mount_recorded(&rec).map(|()| BootOutcome::Reapplied {
                    name: name.clone(),
                    path: path.clone(),
                }),
                Mode::Transient | Mode::ReadOnly => {
                    let cleaned = (|| {
                        detach_layer(&rec, &table)?;
                        remove_tree_if_present(&rec.layer)?;
                        remove_file_if_present(&rec.file())
                    })();
                    cleaned.map(|()| BootOutcome::CleanedStale {
                        name: name.clone(),
                        path: path.clone(),
                    })
                }
            };
            out.push(result.unwrap_or_else(|e| BootOutcome::Failed {
                name,
                path,
                error: e.to_string(),
            }));
        }
        Ok(out)
    }
}

/// Checks a tmpfs `size=` value up front (a number with an optional k/m/g/t/p/e or %
/// suffix), so a typo is a usage error before anything is written rather than a failed mount.
fn validate_tmpfs_size(size: &str) -> Result<()> {
    let digits = size.trim_end_matches(|c: char| "kKmMgGtTpPeE%".contains(c));
    let suffix_len = size.len() - digits.len();
    if digits.is_empty() || suffix_len > 1 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidSize {
            size: size.to_string(),
        });
    }
    Ok(())
}

/// Creates `upper/` (with the covered directory's mode, owner and SELinux label, because the
/// merged root takes its attributes from the upper root) and `work/` (0700) in `layer`.
fn make_layer_dirs(layer: &Path, covered: &Path, lower: &std::os::fd::OwnedFd) -> Result<()> {
    let st = rustix::fs::fstat(lower).map_err(|e| Error::sys("stat", covered, e))?;
    let upper = layer.join("upper");
    let work = layer.join("work");
    mkdir(&upper, 0o700)?;
    mkdir(&work, 0o700)?;
    // chown before chmod: chown clears set-id bits.
    std::os::unix::fs::chown(&upper, Some(st.st_uid), Some(st.st_gid))
        .map_err(|e| Error::io("set the owner of", &upper, e))?;
    fs::set_permissions(&upper, fs::Permissions::from_mode(st.st_mode & 0o7777))
        .map_err(|e| Error::io("set the mode of", &upper, e))?;
    let mut label = [0u8; 512];
    // No label on the lower (or no SELinux at all) means nothing to copy.
    if let Ok(n) = rustix::fs::fgetxattr(lower, "security.selinux", &mut label) {
        for dir in [&upper, &work] {
            rustix::fs::lsetxattr(
                dir,
                "security.selinux",
                &label[..n],
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| Error::sys("copy the SELinux label to", dir, e))?;
        }
    }
    Ok(())
}

/// Mounts the tmpfs of a transient or read-only overlay on its layer directory with the record,
/// `upper/` and `work/` already in it: they are written while the tmpfs is not attached
/// anywhere, so the record appears together with its layer, in this mount namespace only.
fn attach_transient_layer(rec: &OverlayRecord, lower: &std::os::fd::OwnedFd) -> Result<()> {
    let mnt = mount::detached_tmpfs(
        &mountinfo::layer_source(&rec.name),
        &rec.layer,
        rec.tmpfs_size.as_deref(),
    )?;
    let inside = PathBuf::from(format!("/proc/self/fd/{}", mnt.as_raw_fd()));
    record::save_in(&inside, rec)?;
    make_layer_dirs(&inside, &rec.path, lower)?;
    mount::attach_detached(mnt.as_fd(), &rec.layer)
}

/// The package-manager warning: /usr changes made through a package manager are recorded in
/// its database, which lives outside the overlay and outlives it.
fn apply_warnings(rec: &OverlayRecord) -> Vec<String> {
    let candidates = [
        "/var/lib/dpkg",
        "/var/lib/rpm",
        "/var/lib/pacman",
        "/lib/apk/db",
    ];
    let found: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|d| Path::new(d).is_dir() && !Path::new(d).starts_with(&rec.path))
        .collect();
    let which = if found.is_empty() {
        "package-manager state (e.g. /var/lib/dpkg)".to_string()
    } else {
        format!("package-manager state ({})", found.join(", "))
    };
    let when = match rec.mode {
        Mode::Hotfix => "after `reset` or `remove`",
        Mode::Transient | Mode::ReadOnly => "after `reset`, `remove` or a reboot",
    };
    vec![format!(
        "{which} is outside the overlay on {}: packages installed into it stay recorded as installed {when}; reinstall them then to bring the database back in line",
        rec.path.display()
    )]
}
