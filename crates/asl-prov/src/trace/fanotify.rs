//! The fanotify observer (needs CAP_SYS_ADMIN).
//!
//! The child unshares its mount namespace before exec, which gives it private *copies* of
//! every mount. The parent marks those copies (reached through `/proc/PID/root/...`) and
//! nothing else, so every event comes from the command's own process tree — no pid
//! filtering, no race with short-lived processes. Events: open (read), open for exec, close
//! after write. Events name the parent directory by file handle plus the file name
//! (FAN_REPORT_DFID_NAME), so no descriptor is opened per event and each directory's path is
//! resolved once; mounts whose file system has no file handles use a classic group.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::quiet::Quiet;
use super::{Access, ProcessRecord, RunOutcome, RunSpec, TraceMode};
use crate::child::{self, ChildSetup, Exec, check_exec, kill_and_reap, wait_top};
use crate::error::ProvError;

/// Pseudo file systems not worth marking: nothing there is an input or an output.
const SKIP_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "autofs",
    "efivarfs",
    "nsfs",
    "rpc_pipefs",
    "devtmpfs",
];

/// Whether fanotify can be used here: it needs CAP_SYS_ADMIN (we check for root).
pub fn available() -> bool {
    rustix::process::geteuid().is_root()
}

/// Mount points of `pid`'s namespace, with their file system types.
fn mounts(pid: i32) -> Result<Vec<(String, String)>, ProvError> {
    let path = format!("/proc/{pid}/mountinfo");
    let table = asl_mountinfo::read(std::path::Path::new(&path))
        .map_err(|e| ProvError::Os(format!("reading {path}"), e))?;
    Ok(table
        .into_iter()
        .map(|m| (m.mount_point.to_string_lossy().into_owned(), m.fs_type))
        .collect())
}

/// Runs `exec` in a private mount namespace whose mounts this process marks before the
/// child may exec, and observes it until it ends.
pub(crate) fn run(exec: &Exec<'_>, spec: &RunSpec<'_>) -> Result<RunOutcome, ProvError> {
    let (ready_r, ready_w) = child::pipe()?;
    let (go_r, go_w) = child::pipe()?;
    let setup = ChildSetup::Fanotify {
        ready: ready_w.as_fd(),
        go: go_r.as_fd(),
    };
    let (pid, err_r) = child::start(exec, &setup)?;
    drop(ready_w);
    drop(go_r);
    observe(pid, ready_r, go_w, err_r, spec)
}

fn observe(
    pid: i32,
    ready_r: OwnedFd,
    go_w: OwnedFd,
    err_r: OwnedFd,
    spec: &RunSpec<'_>,
) -> Result<RunOutcome, ProvError> {
    let mut b = [0u8];
    if !matches!(rustix::io::read(&ready_r, &mut b), Ok(1)) {
        // The child failed before exec; it wrote the errno to the error pipe.
        check_exec(&err_r, pid, spec.program)?;
        let _ = wait_top(pid);
        return Err(ProvError::Trace(
            "the child exited before fanotify was set up".into(),
        ));
    }
    // Preferred group: events name the parent directory by file handle plus the file name, so
    // no descriptor is opened per event and a directory's path is resolved once. Mounts whose
    // file system has no file handles fall back to a classic group (a descriptor per event).
    let fid_fan = init(libc::FAN_REPORT_DFID_NAME).ok();
    let fd_fan = match init(0) {
        Ok(f) => f,
        Err(e) => {
            kill_and_reap(pid);
            return Err(ProvError::Os(
                "fanotify_init (needs CAP_SYS_ADMIN)".into(),
                e,
            ));
        }
    };
    let mut gaps = Vec::new();
    let mounts = match mounts(pid) {
        Ok(m) => m,
        Err(e) => {
            kill_and_reap(pid);
            return Err(e);
        }
    };
    let mask = libc::FAN_OPEN | libc::FAN_OPEN_EXEC | libc::FAN_CLOSE_WRITE;
    let mut marked = 0;
    let mut fd_marks = 0;
    // fsid -> a descriptor on that file system, for open_by_handle_at.
    let mut mount_fds: HashMap<u64, OwnedFd> = HashMap::new();
    for (mp, fstype) in &mounts {
        if SKIP_FS.contains(&fstype.as_str()) {
            continue;
        }
        let path = format!("/proc/{pid}/root{}", if mp == "/" { "" } else { mp });
        let Ok(c) = CString::new(path) else { continue };
        if let Some(fid) = &fid_fan
            && mark(fid, &c, mask).is_ok()
            && let Some((fsid, fd)) = fs_handle_root(&c)
        {
            mount_fds.entry(fsid).or_insert(fd);
            marked += 1;
            continue;
        }
        match mark(&fd_fan, &c, mask) {
            Ok(()) => {
                marked += 1;
                fd_marks += 1;
            }
            Err(e) => gaps.push(format!("mount {mp} ({fstype}) could not be marked: {e}")),
        }
    }
    if marked == 0 {
        kill_and_reap(pid);
        return Err(ProvError::Trace("fanotify could mark no mount".into()));
    }
    let pidfd = match rustix::process::Pid::from_raw(pid)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()))
    {
        Ok(fd) => fd,
        Err(e) => {
            kill_and_reap(pid);
            return Err(ProvError::Os("pidfd_open".into(), e.into()));
        }
    };
    // Let the child exec.
    let _ = rustix::io::write(&go_w, &b);
    drop(go_w);
    check_exec(&err_r, pid, spec.program)?;

    let mut events = EventLog::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut drain_all = |events: &mut EventLog, gaps: &mut Vec<String>| {
        if let Some(f) = &fid_fan {
            drain_fid(f, &mut buf, &mount_fds, events, gaps);
        }
        if fd_marks > 0 {
            // Each classic event carries an open descriptor: small reads keep at most ~170 of
            // them open at once, far below RLIMIT_NOFILE (past it the kernel drops events).
            drain(&fd_fan, &mut buf[..4096], events, gaps);
        }
    };
    // While the command runs, this thread keeps to a quiet scheduling policy (see
    // `quiet`). It waits on the child only, and reads the queues every BATCH_PERIOD. Waiting on
    // the fanotify descriptors would have the kernel wake this thread for every single event,
    // an inter-processor wakeup charged to the traced command; the queues are unlimited, so
    // nothing is lost by batching.
    let batch = rustix::event::Timespec::try_from(BATCH_PERIOD).unwrap_or_default();
    let quiet = Quiet::enter(&pidfd, BATCH_PERIOD, spec.observer);
    loop {
        use rustix::event::{PollFd, PollFlags};
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&batch)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                quiet.leave();
                kill_and_reap(pid);
                return Err(ProvError::Os("poll".into(), e.into()));
            }
        }
        drain_all(&mut events, &mut gaps);
        if !fds[0].revents().is_empty() {
            break;
        }
        quiet.read_done();
    }
    quiet.leave();
    let (status, rusage) = wait_top(pid)?;
    // Every event of the finished tree is queued by now.
    drain_all(&mut events, &mut gaps);
    drop(mount_fds);
    close_groups_elsewhere(fid_fan.into_iter().chain([fd_fan]).collect());

    let accesses = events.into_accesses();
    Ok(RunOutcome {
        status,
        rusage,
        mode: TraceMode::Fanotify,
        processes: vec![ProcessRecord::top(pid, spec.argv, spec.program, status)],
        accesses,
        gaps,
    })
}

/// The events read while the command runs, kept compact: the observer shares the cores with
/// the command, so per event it appends a record and the name's bytes (no allocation, and no
/// hashing when the directory is the previous event's); paths are assembled once the
/// command has ended.
#[derive(Default)]
struct EventLog {
    /// Resolved directories (and, from the classic group, whole paths).
    dirs: Vec<String>,
    /// A directory's identity (fsid, handle size and type, handle) → its index in `dirs`.
    dir_index: HashMap<Vec<u8>, u32>,
    /// The identity and index of the last event's directory.
    last_key: Vec<u8>,
    last_dir: Option<u32>,
    /// Every event's name, back to back.
    names: Vec<u8>,
    list: Vec<RawEvent>,
}

struct RawEvent {
    pid: i32,
    mask: u64,
    dir: u32,
    name: std::ops::Range<usize>,
}

impl EventLog {
    /// The index of the directory with identity `key`, resolving it on first sight.
    fn dir(&mut self, key: &[u8], resolve: impl FnOnce() -> Option<String>) -> Option<u32> {
        if let Some(d) = self.last_dir
            && self.last_key == key
        {
            return Some(d);
        }
        let d = match self.dir_index.get(key) {
            Some(&d) => d,
            None => {
                let d = self.dirs.len() as u32;
                self.dirs.push(resolve()?);
                self.dir_index.insert(key.to_vec(), d);
                d
            }
        };
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.last_dir = Some(d);
        Some(d)
    }

    fn push(&mut self, pid: i32, mask: u64, dir: u32, name: &[u8]) {
        let start = self.names.len();
        self.names.extend_from_slice(name);
        self.list.push(RawEvent {
            pid,
            mask,
            dir,
            name: start..self.names.len(),
        });
    }

    /// A whole path (classic group): a directory entry of its own, with no name.
    fn push_path(&mut self, pid: i32, mask: u64, path: String) {
        let d = self.dirs.len() as u32;
        self.dirs.push(path);
        self.push(pid, mask, d, b"");
    }

    /// The path of event `e`: its directory and name.
    fn path(&self, e: &RawEvent) -> String {
        let d = &self.dirs[e.dir as usize];
        let name = String::from_utf8_lossy(&self.names[e.name.clone()]);
        let mut path = String::with_capacity(d.len() + 1 + name.len());
        path.push_str(d);
        if !(name.is_empty() || name == ".") {
            if d != "/" {
                path.push('/');
            }
            path.push_str(&name);
        }
        path
    }

    /// The paths the tree wrote (and closed). Few; most runs have none, and then no path is
    /// hashed while converting.
    fn written_paths(&self) -> HashSet<String> {
        self.list
            .iter()
            .filter(|e| e.mask & libc::FAN_CLOSE_WRITE != 0)
            .map(|e| self.path(e))
            .collect()
    }

    /// Event `e` as an access; `None` for the open of a path in `written`, which is that
    /// write's own open, not a read we can tell apart.
    fn access(&self, e: &RawEvent, written: &HashSet<String>) -> Option<Access> {
        let path = self.path(e);
        let op = if e.mask & libc::FAN_CLOSE_WRITE != 0 {
            "write"
        } else if e.mask & libc::FAN_OPEN_EXEC != 0 {
            "exec"
        } else if !written.is_empty() && written.contains(&path) {
            return None;
        } else if e.mask & libc::FAN_ONDIR != 0 {
            "open_dir"
        } else {
            "read"
        };
        Some(Access {
            path,
            op: op.into(),
            pid: e.pid,
            to: None,
        })
    }

    /// Every event as an access ([`EventLog::access`]), in the order read.
    fn into_accesses(self) -> Vec<Access> {
        let written = self.written_paths();
        // Fills `out` slot by slot; returns how many slots it filled.
        let convert = |events: &[RawEvent], out: &mut [Access]| -> usize {
            let mut n = 0;
            for a in events.iter().filter_map(|e| self.access(e, &written)) {
                out[n] = a;
                n += 1;
            }
            n
        };
        // One vector for all, sized once, so its memory is touched once: fresh pages cost a
        // fault each, and two vectors appended one to the other would touch them twice.
        let mut all: Vec<Access> = Vec::new();
        all.resize_with(self.list.len(), Access::default);
        // This runs after the command has ended, on the capture's critical path, when both
        // cores of a small machine are free: a long list is converted in two halves at once.
        // A short one is not worth a thread.
        if self.list.len() < 8192 {
            let n = convert(&self.list, &mut all);
            all.truncate(n);
            return all;
        }
        let mid = self.list.len() / 2;
        let (a, b) = self.list.split_at(mid);
        let (first, second) = all.split_at_mut(mid);
        let (n_a, n_b) = std::thread::scope(|s| {
            let other = s.spawn(|| convert(b, second));
            let n_a = convert(a, first);
            // The conversion does not panic; were it to, its panic goes on here.
            let n_b = other
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (n_a, n_b)
        });
        // Each half filled the front of its slots: drop the unfilled ones.
        all.truncate(mid + n_b);
        all.drain(n_a..mid);
        all
    }
}

/// Reads every queued event of `fan` into `buf`, and hands each to `each` with its
/// information records (the bytes after its metadata); notes a queue overflow in `gaps`.
fn read_events(
    fan: &OwnedFd,
    buf: &mut [u8],
    gaps: &mut Vec<String>,
    mut each: impl FnMut(&libc::fanotify_event_metadata, &[u8], &mut Vec<String>),
) {
    let meta_len = std::mem::size_of::<libc::fanotify_event_metadata>();
    loop {
        let n = match rustix::io::read(fan, &mut *buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let mut off = 0;
        while off + meta_len <= n {
            // SAFETY: `off + meta_len <= n` and the kernel wrote `n` bytes, so the bytes read
            // lie in `buf` and are initialised; the metadata is plain integers, valid for any
            // bytes, and read_unaligned needs no alignment.
            let m: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
            let len = m.event_len as usize;
            if len < meta_len || off + len > n {
                break;
            }
            if m.mask & libc::FAN_Q_OVERFLOW != 0 {
                gaps.push("the fanotify queue overflowed: some accesses were lost".into());
            }
            let info = buf
                .get(off + m.metadata_len as usize..off + len)
                .unwrap_or_default();
            each(&m, info, gaps);
            off += len;
        }
    }
}

/// Reads every queued event; resolves each event's descriptor to a path and closes it.
fn drain(fan: &OwnedFd, buf: &mut [u8], events: &mut EventLog, gaps: &mut Vec<String>) {
    read_events(fan, buf, gaps, |m, _, _| {
        if m.fd >= 0 {
            // SAFETY: the kernel opened `m.fd` in this process for this event alone and
            // handed it to us; nothing else owns it, so this OwnedFd is its one owner.
            let fd = unsafe { OwnedFd::from_raw_fd(m.fd) };
            let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            drop(fd);
            if !path.is_empty() {
                events.push_path(m.pid, m.mask, path);
            }
        }
    });
}

/// Closes the fanotify groups on a thread of their own, which nobody waits for.
///
/// The last close of a group that had marks waits for the kernel's mark reaper, which waits
/// for an SRCU grace period. Every event has been read by the time the groups are closed, so
/// the receipt does not depend on the close, and the capture need not wait for it: it goes on
/// assembling and storing the receipt while the close completes. Should the thread not
/// start, the groups are closed here.
fn close_groups_elsewhere(groups: Vec<OwnedFd>) {
    let _ = std::thread::Builder::new()
        .name("asl-fanotify-close".into())
        .spawn(move || drop(groups));
}

/// How long events may queue before they are read (see the wait loop in `observe`).
const BATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

fn init(report: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: fanotify_init takes flags only, no pointer; its result is checked below.
    let fan = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF
                | libc::FAN_CLOEXEC
                | libc::FAN_NONBLOCK
                | libc::FAN_UNLIMITED_QUEUE
                | report,
            (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
        )
    };
    if fan < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fan` is a descriptor fanotify_init has just opened; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fan) })
}

fn mark(fan: &OwnedFd, path: &CString, mask: u64) -> std::io::Result<()> {
    // SAFETY: `path` is NUL-terminated and outlives the call, `fan` is a group we hold open;
    // the kernel only reads the path.
    let r = unsafe {
        libc::fanotify_mark(
            fan.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
            mask,
            libc::AT_FDCWD,
            path.as_ptr(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The fsid of the file system at `path` (as [`fsid`] packs it) and a descriptor on it.
fn fs_handle_root(path: &CString) -> Option<(u64, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    // Not O_PATH: open_by_handle_at refuses path-only descriptors (EBADF).
    let fd = rustix::fs::open(
        path.as_c_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstatvfs(&fd).ok()?;
    Some((st.f_fsid, fd))
}

/// The two 32-bit words of a kernel fsid as one number, the way `statvfs` packs them (first
/// word low), so an event's fsid and a mount's compare.
fn fsid(words: [i32; 2]) -> u64 {
    u64::from(words[0] as u32) | (u64::from(words[1] as u32) << 32)
}

/// Resolves a directory file handle to a path through the file system's descriptor.
fn resolve_dir(mount_fd: &OwnedFd, handle_type: i32, handle: &[u8]) -> Option<String> {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, 4-aligned.
    let mut buf = vec![0u32; 2 + handle.len().div_ceil(4)];
    buf[0] = handle.len() as u32;
    buf[1] = handle_type as u32;
    // The handle's bytes, in memory order, from byte 8 on.
    for (word, chunk) in buf[2..].iter_mut().zip(handle.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *word = u32::from_ne_bytes(b);
    }
    // SAFETY: `buf` is a struct file_handle as the kernel lays it out (handle_bytes,
    // handle_type, then handle_bytes bytes), live and writable for the call; `mount_fd` is
    // open. (Without CAP_DAC_READ_SEARCH the call fails; it does not misbehave.)
    let fd = unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a descriptor open_by_handle_at has just opened; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    fd_path(&fd)
}

thread_local! {
    /// This process's `/proc/self/fd`, opened once: reading a descriptor's link relative to
    /// it skips the path walk through `/proc/self/fd` that each of the many directories a
    /// file-heavy command visits would otherwise cost.
    static PROC_FD_DIR: Option<OwnedFd> = {
        use rustix::fs::{Mode, OFlags};
        rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    };
}

/// The path `fd` refers to, as the kernel names it.
fn fd_path(fd: &OwnedFd) -> Option<String> {
    let relative = PROC_FD_DIR.with(|dir| {
        let dir = dir.as_ref()?;
        let mut buf = [0u8; libc::PATH_MAX as usize];
        let n = rustix::fs::readlinkat_raw(dir, fd.as_raw_fd().to_string(), &mut buf[..]).ok()?;
        // A link as long as the buffer may have been cut short.
        if n >= buf.len() {
            return None;
        }
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    relative.or_else(|| {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    })
}

/// Reads the events of the file-handle group: (dir handle, name) per event, the directory's
/// path resolved once and cached.
fn drain_fid(
    fan: &OwnedFd,
    buf: &mut [u8],
    mount_fds: &HashMap<u64, OwnedFd>,
    events: &mut EventLog,
    gaps: &mut Vec<String>,
) {
    read_events(fan, buf, gaps, |m, rec, gaps| {
        // info header (type u8, pad u8, len u16), fsid (2 x i32), handle_bytes u32,
        // handle_type i32, handle, then the NUL-terminated name.
        if rec.len() >= 20 && rec[0] == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
            let rd = |o: usize| i32::from_ne_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
            let fsid = fsid([rd(4), rd(8)]);
            let hbytes = rd(12) as usize;
            let htype = rd(16);
            if 20 + hbytes <= rec.len() {
                let handle = &rec[20..20 + hbytes];
                let name_raw = &rec[20 + hbytes..];
                let name_end = name_raw
                    .iter()
                    .position(|b| *b == 0)
                    .unwrap_or(name_raw.len());
                let name = &name_raw[..name_end];
                // fsid, handle size, type and handle: the directory's identity.
                let key = &rec[4..20 + hbytes];
                let dir = events.dir(key, || {
                    mount_fds
                        .get(&fsid)
                        .and_then(|mfd| resolve_dir(mfd, htype, handle))
                });
                match dir {
                    Some(d) => events.push(m.pid, m.mask, d, name),
                    None => gaps.push(format!(
                        "an access to '{}' in a directory that could not be resolved (removed during the run?)",
                        String::from_utf8_lossy(name)
                    )),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-core conversion gives what one pass over the events gives, in event order,
    /// whichever half the left-out reads of written paths fall in.
    #[test]
    fn conversion_in_two_halves_is_the_sequential_one() {
        for n in [40, 8191, 8192, 9001, 20000] {
            let mut log = EventLog {
                dirs: vec!["/".into(), "/d".into()],
                ..EventLog::default()
            };
            for i in 0..n {
                // In every block of 35 events one writes /d/w{block % 4}, and three read
                // written paths: reads to leave out lie in both halves.
                let block = i / 35;
                let (mask, dir, name) = match i % 35 {
                    0 => (libc::FAN_CLOSE_WRITE, 1, format!("w{}", block % 4)),
                    10 | 20 => (libc::FAN_OPEN, 1, format!("w{}", block % 4)),
                    30 => (libc::FAN_OPEN, 1, format!("w{}", (block + 1) % 4)),
                    k if k % 11 == 0 => (libc::FAN_OPEN_EXEC, 0, format!("x{i}")),
                    _ => (libc::FAN_OPEN, (i % 2) as u32, format!("r{i}")),
                };
                log.push(i as i32, mask, dir, name.as_bytes());
            }
            // The model: one pass over the events, in order.
            let written = log.written_paths();
            let model: Vec<(String, String, i32)> = log
                .list
                .iter()
                .filter_map(|e| log.access(e, &written))
                .map(|a| (a.op.into_owned(), a.path, a.pid))
                .collect();
            assert!(
                model.len() < n,
                "the model leaves nothing out for {n} events"
            );
            let got: Vec<(String, String, i32)> = log
                .into_accesses()
                .into_iter()
                .map(|a| (a.op.into_owned(), a.path, a.pid))
                .collect();
            assert_eq!(got, model, "{n} events");
        }
    }

    #[test]
    fn groups_closed_elsewhere_are_closed() {
        // Pipe write ends stand in for the groups: the read ends see EOF only once every
        // copy is closed.
        let (r1, w1) = crate::child::pipe().unwrap();
        let (r2, w2) = crate::child::pipe().unwrap();
        close_groups_elsewhere(vec![w1, w2]);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for r in [r1, r2] {
                let mut rest = Vec::new();
                std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut rest).unwrap();
            }
            tx.send(()).unwrap();
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("a copy of a group stayed open");
    }
}
