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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::quiet::Quiet;
use super::{Access, ProcessRecord, TraceMode};
use crate::error::ProvError;
use crate::launch::{RunOutcome, RunSpec, check_exec, wait_top};

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
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| ProvError::Os(format!("reading /proc/{pid}/mountinfo"), e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mp), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else {
            continue;
        };
        out.push((unescape(mp), fstype.to_string()));
    }
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len() + 1
            && b.get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn kill_and_reap(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = wait_top(pid);
}

pub(crate) fn observe(
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
    // the fanotify descriptors would have the kernel wake this thread for every single event
    // (an inter-processor wakeup charged to the traced command: ~4 % of a `tar` of
    // /usr/share in a profile); the queues are unlimited, so nothing is lost by batching.
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
        // One vector for all, sized once, so its memory is touched once. Fresh pages cost a
        // fault each: two vectors appended one to the other took ~450 more faults for 43 k
        // accesses.
        let mut all: Vec<Access> = Vec::new();
        all.resize_with(self.list.len(), Access::default);
        // This runs after the command has ended, on the capture's critical path, when both
        // cores of a small machine are free: a long list is converted in two halves at once
        // (a `tar` of /usr/share, 43 k events: 9-15 ms before, 5-8 ms after).
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

/// Reads every queued event; resolves each event's descriptor to a path and closes it.
fn drain(fan: &OwnedFd, buf: &mut [u8], events: &mut EventLog, gaps: &mut Vec<String>) {
    let meta_len = std::mem::size_of::<libc::fanotify_event_metadata>();
    loop {
        let n = match rustix::io::read(fan, &mut *buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let mut off = 0;
        while off + meta_len <= n {
            // SAFETY: the kernel wrote whole metadata records; read_unaligned copes with the
            // byte buffer's alignment.
            let m: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
            if m.event_len == 0 {
                break;
            }
            if m.mask & libc::FAN_Q_OVERFLOW != 0 {
                gaps.push("the fanotify queue overflowed: some accesses were lost".into());
            }
            if m.fd >= 0 {
                let path = std::fs::read_link(format!("/proc/self/fd/{}", m.fd))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // SAFETY: the event's descriptor is ours to close.
                unsafe { libc::close(m.fd) };
                if !path.is_empty() {
                    events.push_path(m.pid, m.mask, path);
                }
            }
            off += m.event_len as usize;
        }
    }
}

/// Closes the fanotify groups without making this process wait for it.
///
/// The last close of a group that had marks waits for the kernel's mark reaper, which waits
/// for an SRCU grace period: 0.1 ms to over 10 ms here. Closed on a thread of ours, that wait
/// often outlasted the receipt's assembly, and the process's exit then waited for the thread
/// (a capture of W1 ended 2–12 ms later than one with `--trace none`). So the last reference
/// goes to a short-lived child process: this thread starts it, drops its own copies, and only
/// then lets the child close its copies and exit; this thread reaps it, and if the process
/// exits first, init (or the nearest subreaper) does. Started from its own thread, the child
/// is invisible to a ptrace observer's `wait4(-1, __WNOTHREAD)` on another thread.
///
/// The child shares this process's memory (`CLONE_VM`; posix_spawn's child does too, though
/// there the parent waits, `CLONE_VFORK`) and gets its own copy of the descriptor table. A
/// fork instead copied the page tables, under the address-space lock that the receipt's
/// assembly on the other thread needed for its page faults, and each page either side then
/// wrote cost a copy. A W1 capture (`perf stat`, 15 runs, the command's own processes
/// included) took 3,330 page faults with the fork and 2,530 with this child, about 1.6 ms of
/// CPU here. The child runs [`closer`] on a stack of its own, with signals blocked.
fn close_groups_elsewhere(groups: Vec<OwnedFd>) {
    std::thread::spawn(move || {
        let Ok((go_r, go_w)) = crate::launch::pipe() else {
            return;
        };
        // Descriptors the child keeps, ascending, prepared before the clone (the child
        // allocates nothing).
        let mut job = CloserJob {
            keep: [-1; 4],
            keep_len: groups.len() + 1,
            go_r: go_r.as_raw_fd(),
            go_w: go_w.as_raw_fd(),
            // Where closing one by one stops if close_range is missing (Linux < 5.9).
            // SAFETY: sysconf has no preconditions.
            open_max: unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(1024, 65536) as u32,
        };
        debug_assert!(job.keep_len <= job.keep.len());
        for (k, fd) in job.keep.iter_mut().zip(
            groups
                .iter()
                .map(AsRawFd::as_raw_fd)
                .chain([go_r.as_raw_fd()]),
        ) {
            *k = fd;
        }
        job.keep[..job.keep_len].sort_unstable();
        const STACK: usize = 64 * 1024;
        // SAFETY: an anonymous private mapping, unmapped below once the child is reaped.
        let stack = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if stack == libc::MAP_FAILED {
            return;
        }
        // Signals blocked in the child from its first instruction: a handler of ours must not
        // run there, on shared memory (glibc keeps its two internal signals, which have no
        // handler of ours; SIGKILL and SIGSTOP cannot be blocked). This thread's mask is
        // restored at once.
        // SAFETY: sigset operations on locals; pthread_sigmask on the calling thread.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: the child runs `closer` on its own stack, which stays mapped until the
        // child is reaped (or, should the process end first, for as long as the child holds
        // the address space); `job` lives in this frame, which outlasts the child likewise.
        let pid = unsafe {
            libc::clone(
                closer,
                stack.cast::<u8>().add(STACK).cast(),
                libc::CLONE_VM | libc::SIGCHLD,
                (&raw mut job).cast(),
            )
        };
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(groups);
        drop(go_w);
        drop(go_r);
        if pid > 0 {
            let mut status = 0;
            // SAFETY: reaping our own child.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        // SAFETY: the mapping made above; the child that ran on it has been reaped (or was
        // never started).
        unsafe { libc::munmap(stack, STACK) };
    });
}

/// What the closer child of [`close_groups_elsewhere`] needs, prepared before it starts.
struct CloserJob {
    /// The descriptors it keeps (the groups and `go_r`), ascending, in `keep[..keep_len]`.
    keep: [i32; 4],
    keep_len: usize,
    /// The pipe whose EOF tells it that the parent has dropped its copies of the groups.
    go_r: i32,
    go_w: i32,
    open_max: u32,
}

/// The closer child: keeps only the groups and the pipe's read end, waits for EOF on it,
/// closes the groups (the slow close) and exits. It shares the parent's memory and thread-
/// local storage, so it makes raw system calls that leave `errno` alone ([`raw3`]) and reads
/// nothing but `job`.
extern "C" fn closer(job: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `job` points at the CloserJob prepared by close_groups_elsewhere, which stays
    // alive while this child runs; everything below is a system call on descriptor numbers.
    unsafe {
        let job = &*(job as *const CloserJob);
        let sys = |n: libc::c_long, a: usize, b: usize, c: usize| raw3(n, a, b, c);
        // `keep` holds `keep_len` descriptors; the other slots are -1.
        let kept = || job.keep.iter().take(job.keep_len).map(|&fd| fd as u32);
        // The pipe's write end first: EOF must not depend on close_range.
        sys(libc::SYS_close, job.go_w as usize, 0, 0);
        // Everything else but `keep`: the caller's pipes above all.
        let close_range = |lo: u32, hi: u32| {
            if sys(libc::SYS_close_range, lo as usize, hi as usize, 0) != 0 {
                for fd in lo..=hi.min(job.open_max) {
                    sys(libc::SYS_close, fd as usize, 0, 0);
                }
            }
        };
        let mut lo = 0u32;
        for fd in kept() {
            if fd > lo {
                close_range(lo, fd - 1);
            }
            lo = fd + 1;
        }
        close_range(lo, u32::MAX);
        // EOF once the parent thread has dropped its copies of the groups. The signals a
        // handler could catch are blocked, so no read ends early; one that fails for another
        // reason ends the wait.
        let mut b = 0u8;
        while sys(libc::SYS_read, job.go_r as usize, (&raw mut b) as usize, 1) > 0 {}
        for fd in kept() {
            sys(libc::SYS_close, fd as usize, 0, 0);
        }
        sys(libc::SYS_exit, 0, 0, 0);
    }
    0
}

/// A system call with up to three arguments; returns the kernel's result (a negative errno
/// on failure) and, unlike libc's `syscall`, never writes `errno`, which a `CLONE_VM` child
/// shares with the thread that started it.
///
/// # Safety
/// As for the system call made.
#[cfg(target_arch = "x86_64")]
unsafe fn raw3(n: libc::c_long, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 Linux system call convention; rcx and r11 are clobbered.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// See the x86-64 version.
///
/// # Safety
/// As for the system call made.
#[cfg(target_arch = "aarch64")]
unsafe fn raw3(n: libc::c_long, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the AArch64 Linux system call convention (number in x8, svc #0).
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            options(nostack),
        );
    }
    ret
}

/// Elsewhere libc's `syscall`, whose `errno` write on a failure may land in the starting
/// thread's; that thread only reads it after a failed `waitpid`.
///
/// # Safety
/// As for the system call made.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw3(n: libc::c_long, a: usize, b: usize, c: usize) -> isize {
    // SAFETY: as for the system call made.
    unsafe { libc::syscall(n, a, b, c) as isize }
}

/// How long events may queue before they are read (see the wait loop in `observe`).
const BATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

fn init(report: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is owned below.
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
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fan) })
}

fn mark(fan: &OwnedFd, path: &CString, mask: u64) -> std::io::Result<()> {
    // SAFETY: valid C string; fan is ours.
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
    // SAFETY: the buffer holds 8 + handle.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            handle.as_ptr(),
            buf.as_mut_ptr().add(2).cast::<u8>(),
            handle.len(),
        );
    }
    // SAFETY: valid file_handle buffer; root has CAP_DAC_READ_SEARCH.
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
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    fd_path(&fd)
}

thread_local! {
    /// This process's `/proc/self/fd`, opened once: reading a descriptor's link relative to
    /// it skips the walk through `/proc/self/fd` (2.0 to 1.55 µs per directory here, and a
    /// file-heavy command visits thousands).
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
    let meta_len = std::mem::size_of::<libc::fanotify_event_metadata>();
    loop {
        let n = match rustix::io::read(fan, &mut *buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let mut off = 0;
        while off + meta_len <= n {
            // SAFETY: the kernel wrote whole records; read_unaligned copes with alignment.
            let m: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
            let len = m.event_len as usize;
            if len < meta_len || off + len > n {
                break;
            }
            if m.mask & libc::FAN_Q_OVERFLOW != 0 {
                gaps.push("the fanotify queue overflowed: some accesses were lost".into());
            }
            let rec = &buf[off + m.metadata_len as usize..off + len];
            // info header (type u8, pad u8, len u16), fsid (2 x i32), handle_bytes u32,
            // handle_type i32, handle, then the NUL-terminated name.
            if rec.len() >= 20 && rec[0] == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                let rd =
                    |o: usize| i32::from_ne_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
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
            off += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Children of every thread of this process.
    fn children() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

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
    fn groups_closed_elsewhere_are_closed_everywhere_and_the_closer_is_reaped() {
        // Pipe write ends stand in for the groups: the read ends see EOF only once every
        // copy, the closer process's included, is closed.
        let (r1, w1) = crate::launch::pipe().unwrap();
        let (r2, w2) = crate::launch::pipe().unwrap();
        let before = children();
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while children().iter().any(|c| !before.contains(c)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the closer process was not reaped: {:?}",
                children()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
