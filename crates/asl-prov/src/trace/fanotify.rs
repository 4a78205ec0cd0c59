//! The fanotify observer (needs CAP_SYS_ADMIN).
//!
//! The child unshares its mount namespace before exec, which gives it private *copies* of
//! every mount. The parent marks those copies (reached through `/proc/PID/root/...`) and
//! nothing else, so every event comes from the command's own process tree — no pid
//! filtering, no race with short-lived processes. Events: open (read), open for exec, close
//! after write.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
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
    // SAFETY: killing and reaping our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
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
    // SAFETY: reading one byte into a local.
    let n = unsafe { libc::read(ready_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    if n != 1 {
        // The child failed before exec; it wrote the errno to the error pipe.
        check_exec(&err_r, pid, spec.program)?;
        let _ = wait_top(pid);
        return Err(ProvError::Trace(
            "the child exited before fanotify was set up".into(),
        ));
    }
    // SAFETY: plain syscall; the returned descriptor is owned below.
    let fan = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF
                | libc::FAN_CLOEXEC
                | libc::FAN_NONBLOCK
                | libc::FAN_UNLIMITED_QUEUE,
            (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
        )
    };
    if fan < 0 {
        let e = std::io::Error::last_os_error();
        kill_and_reap(pid);
        return Err(ProvError::Os(
            "fanotify_init (needs CAP_SYS_ADMIN)".into(),
            e,
        ));
    }
    // SAFETY: fan is a fresh descriptor.
    let fan = unsafe { OwnedFd::from_raw_fd(fan) };
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
    for (mp, fstype) in &mounts {
        if SKIP_FS.contains(&fstype.as_str()) {
            continue;
        }
        let path = format!("/proc/{pid}/root{}", if mp == "/" { "" } else { mp });
        let Ok(c) = CString::new(path) else { continue };
        // SAFETY: valid C string; fan is ours.
        let r = unsafe {
            libc::fanotify_mark(
                fan.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r == 0 {
            marked += 1;
        } else {
            gaps.push(format!(
                "mount {mp} ({fstype}) could not be marked: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    if marked == 0 {
        kill_and_reap(pid);
        return Err(ProvError::Trace("fanotify could mark no mount".into()));
    }
    // SAFETY: pidfd_open on our own child; the descriptor is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        let e = std::io::Error::last_os_error();
        kill_and_reap(pid);
        return Err(ProvError::Os("pidfd_open".into(), e));
    }
    // SAFETY: fresh descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // Let the child exec.
    // SAFETY: writing one byte from a local.
    unsafe { libc::write(go_w.as_raw_fd(), b.as_ptr().cast(), 1) };
    drop(go_w);
    check_exec(&err_r, pid, spec.program)?;

    let mut events: Vec<(i32, u64, String)> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: fan.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: valid array of two pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            kill_and_reap(pid);
            return Err(ProvError::Os("poll".into(), e));
        }
        drain(&fan, &mut buf, &mut events, &mut gaps);
        if fds[1].revents != 0 {
            break;
        }
    }
    let (status, rusage) = wait_top(pid)?;
    // Every event of the finished tree is queued by now.
    drain(&fan, &mut buf, &mut events, &mut gaps);

    let mut written: HashMap<String, ()> = HashMap::new();
    for (_, mask, path) in &events {
        if mask & libc::FAN_CLOSE_WRITE != 0 {
            written.insert(path.clone(), ());
        }
    }
    let mut accesses = Vec::new();
    for (p, mask, path) in events {
        let op = if mask & libc::FAN_CLOSE_WRITE != 0 {
            "write"
        } else if mask & libc::FAN_OPEN_EXEC != 0 {
            "exec"
        } else if written.contains_key(&path) {
            // The open that preceded a write: not a read we can tell apart.
            continue;
        } else if mask & libc::FAN_ONDIR != 0 || std::path::Path::new(&path).is_dir() {
            "open_dir"
        } else {
            "read"
        };
        accesses.push(Access {
            path,
            op: op.into(),
            pid: p,
            to: None,
        });
    }
    Ok(RunOutcome {
        status,
        rusage,
        mode: TraceMode::Fanotify,
        processes: vec![ProcessRecord::top(pid, spec.argv, spec.program, status)],
        accesses,
        gaps,
    })
}

/// Reads every queued event; resolves each event's descriptor to a path and closes it.
fn drain(
    fan: &OwnedFd,
    buf: &mut [u8],
    events: &mut Vec<(i32, u64, String)>,
    gaps: &mut Vec<String>,
) {
    let meta_len = std::mem::size_of::<libc::fanotify_event_metadata>();
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(fan.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        let n = n as usize;
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
                    events.push((m.pid, m.mask, path));
                }
            }
            off += m.event_len as usize;
        }
    }
}
