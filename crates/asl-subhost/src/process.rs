//! Processes tracked across commands: a PID plus its start time (clock ticks since boot, field 22
//! of /proc/PID/stat) identifies a process for good, and a pidfd opened and then re-checked
//! against that start time cannot be fooled by PID reuse. No `pgrep`, no name matching.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A process identity as recorded in the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: i32,
    pub start_ticks: u64,
}

/// Start time of `pid` in clock ticks since boot, or None if there is no such process.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl ProcId {
    pub fn of(pid: i32) -> Option<ProcId> {
        start_ticks(pid).map(|start_ticks| ProcId { pid, start_ticks })
    }

    /// A pidfd for this very process, or None if it has exited (or its PID was reused).
    pub fn open(&self) -> Option<Pidfd> {
        let fd = Pidfd::open(self.pid).ok()?;
        // Checked after opening: from now on the pidfd pins this process, whatever the PID does.
        (start_ticks(self.pid) == Some(self.start_ticks)).then_some(fd)
    }

    pub fn alive(&self) -> bool {
        self.open().is_some_and(|p| !p.exited())
    }
}

/// A process file descriptor.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(Errno::INVAL))?;
        Ok(Pidfd(rustix::process::pidfd_open(
            pid,
            PidfdFlags::empty(),
        )?))
    }

    pub fn from_owned(fd: OwnedFd) -> Pidfd {
        Pidfd(fd)
    }

    pub fn as_fd(&self) -> &OwnedFd {
        &self.0
    }

    pub fn signal(&self, sig: i32) -> io::Result<()> {
        let sig = Signal::from_named_raw(sig).ok_or_else(|| io::Error::from(Errno::INVAL))?;
        match rustix::process::pidfd_send_signal(&self.0, sig) {
            // ESRCH: it has exited already, which is what the caller wants anyway.
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the process exits; true if it did within `timeout`.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // Whole milliseconds, as poll(2) counts them.
            let ms = left.as_millis().min(i32::MAX as u128) as i64;
            let ts = Timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            };
            let mut pfd = [PollFd::new(&self.0, PollFlags::IN)];
            match rustix::event::poll(&mut pfd, Some(&ts)) {
                Ok(n) if n > 0 => return true,
                Ok(_) => return false,
                Err(_) if left.is_zero() => return false,
                Err(Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    }

    pub fn exited(&self) -> bool {
        self.wait(Duration::ZERO)
    }
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks with `clone3`: extra `flags` (namespaces), a pidfd for the child, and, when `cgroup`
/// is given, the child born directly in that cgroup — much cheaper than migrating it later
/// through `cgroup.procs`, which waits for an RCU grace period. Returns 0 in the child.
///
/// The caller must be single-threaded: the child continues in a copy of this process.
pub fn clone3(flags: u64, cgroup: Option<RawFd>) -> io::Result<(i32, Option<Pidfd>)> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(cg) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size passed and lives for the call, as does
    // the `pidfd` it points to. Without a new stack clone3 behaves like fork; the caller
    // guarantees a single thread, so the child may run arbitrary code. rustix has no clone3.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok((0, None));
    }
    // SAFETY: with CLONE_PIDFD the kernel filled `pidfd` with a new descriptor for the child,
    // which nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((r as i32, Some(Pidfd::from_owned(fd))))
}

/// Ends a forked process at once, without unwinding into or running the destructors of the
/// frames it shares with the process it was forked from.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process and touches no memory of it; std offers only exit(), which
    // runs the atexit handlers and flushes the buffers inherited from the parent.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_tracked_and_a_wrong_start_time_is_not() {
        let me = ProcId::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let impostor = ProcId {
            pid: me.pid,
            start_ticks: me.start_ticks + 1,
        };
        assert!(!impostor.alive());
    }

    #[test]
    fn pidfd_reports_exit_of_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let id = ProcId::of(child.id() as i32).unwrap();
        let fd = id.open().unwrap();
        assert!(!fd.exited());
        assert!(fd.wait(Duration::from_secs(10)));
        child.wait().unwrap();
        assert!(!id.alive());
    }
}
