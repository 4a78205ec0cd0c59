//! How the fanotify observer keeps out of the traced command's way while the command runs.
//!
//! The observer reads the kernel's event queues every few milliseconds. Whatever CPU it takes
//! while the command runs is taken from the command: a `tar | cat` keeps both cores of a small
//! machine busy in turns, and 26 ms of extra observer work spread over a 480 ms run made the
//! run 30 ms longer. Under the normal policy its wakeups also preempted the command
//! (`tar | cat` of /usr/share: 1.52x the plain run).
//!
//! So, while the command runs, the observer thread is moved to a quieter policy:
//! * **SCHED_IDLE** when the process holds CAP_SYS_NICE, which it needs to leave that policy
//!   again. The thread then runs on a core the command leaves idle. A `tar | cat` of
//!   /usr/share/doc, 40 alternating rounds: the capture cost 17.5 ms over the plain run
//!   (1.20x), against 21.8 ms (1.25x) under SCHED_BATCH. On a machine kept busy by other
//!   work such a thread barely runs: beside two busy loops the same capture took twice as
//!   long as under SCHED_BATCH. Two guards bring it back to SCHED_BATCH's time there:
//!   * a **watchdog** thread under the normal policy waits for the command's end and moves
//!     the observer back at once, so that the end is noticed and the receipt assembled
//!     without waiting for an idle core;
//!   * when the observer wakes late or a read of the queues takes long ([`starved`]), it
//!     moves itself to SCHED_BATCH for the rest of the run: the events are then read, and
//!     their directories resolved by handle, while those still exist.
//! * **SCHED_BATCH** otherwise: it drops the wakeup preemption yet keeps a fair share of the
//!   machine, and any thread may leave it again.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// How long a read of the queues may be overdue, or may take, before the observer counts as
/// starved. Unloaded, reads come 10-12 ms apart and take at most ~7 ms (43 k events over
/// 480 ms); beside two busy loops, single reads took 80-105 ms.
pub(crate) const STARVED_AFTER: Duration = Duration::from_millis(20);

/// Whether the observer, due every `period`, is being starved: it woke `since_last` after its
/// previous read ended, and its read took `read_took`.
pub(crate) fn starved(period: Duration, since_last: Duration, read_took: Duration) -> bool {
    since_last.saturating_sub(period) > STARVED_AFTER || read_took > STARVED_AFTER
}

/// Whether, by `/proc/loadavg` text `loadavg`, fewer threads than `cores` are runnable
/// besides the caller: a core is idle now. Its fourth field is "runnable/total".
pub(crate) fn cores_left_idle(loadavg: &str, cores: usize) -> bool {
    let runnable = loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').next())
        .and_then(|n| n.parse::<usize>().ok());
    // The caller itself counts as runnable.
    runnable.is_some_and(|n| n.saturating_sub(1) < cores)
}

/// Whether this machine has a core idle now (unknown: no).
fn idle_core_now() -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::fs::read_to_string("/proc/loadavg").is_ok_and(|l| cores_left_idle(&l, cores))
}

/// A thread's scheduling policy and priority.
#[derive(Clone, Copy)]
pub(crate) struct Policy {
    policy: i32,
    param: libc::sched_param,
}

impl Policy {
    pub(crate) fn of(policy: i32) -> Policy {
        Policy {
            policy,
            param: libc::sched_param { sched_priority: 0 },
        }
    }

    /// The policy of thread `tid` (0: the calling thread).
    pub(crate) fn of_thread(tid: i32) -> Option<Policy> {
        // SAFETY: `tid` names a thread or fails; `param` is a valid out-pointer.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        let mut param = libc::sched_param { sched_priority: 0 };
        if policy < 0 || unsafe { libc::sched_getparam(tid, &mut param) } != 0 {
            return None;
        }
        Some(Policy {
            policy: policy & !libc::SCHED_RESET_ON_FORK,
            param,
        })
    }

    #[cfg(test)]
    pub(crate) fn policy(&self) -> i32 {
        self.policy
    }

    /// Applies this policy to thread `tid` (0: the calling thread); false if refused.
    fn apply(&self, tid: i32) -> bool {
        // SAFETY: `tid` names a thread of this process or fails; `param` is valid.
        unsafe { libc::sched_setscheduler(tid, self.policy, &self.param) == 0 }
    }
}

/// Whether this process may raise a thread's scheduling priority (CAP_SYS_NICE in its
/// effective set), as leaving SCHED_IDLE requires.
fn may_leave_idle() -> bool {
    const CAP_SYS_NICE: u32 = 23;
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a version-3 header and the two data words that version fills.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    r == 0 && data[0].effective & (1 << CAP_SYS_NICE) != 0
}

/// The observer thread's quiet policy, in effect from [`Quiet::enter`] to [`Quiet::leave`].
pub(crate) struct Quiet {
    /// The policy to return to; `None` when the thread was left as it was.
    saved: Option<Policy>,
    /// The quiet policy now in effect (SCHED_IDLE or SCHED_BATCH).
    current: i32,
    /// The watchdog and the descriptor whose closing stops it.
    watchdog: Option<(std::thread::JoinHandle<()>, OwnedFd)>,
}

impl Quiet {
    /// Moves the calling thread to its quiet policy until the command, whose pidfd is
    /// `child`, ends. A thread under a policy other than the normal one (a real-time
    /// caller's, say) is left as it is.
    pub(crate) fn enter(child: &OwnedFd) -> Quiet {
        // SCHED_IDLE only where it pays: a machine busy already would starve the observer.
        Quiet::enter_as(child, may_leave_idle() && idle_core_now())
    }

    /// [`Quiet::enter`], with SCHED_IDLE if `idle` (the caller has checked that the thread
    /// may leave it again), else SCHED_BATCH.
    fn enter_as(child: &OwnedFd, idle: bool) -> Quiet {
        let unchanged = Quiet {
            saved: None,
            current: libc::SCHED_OTHER,
            watchdog: None,
        };
        let Some(saved) = Policy::of_thread(0).filter(|p| p.policy == libc::SCHED_OTHER) else {
            return unchanged;
        };
        let watchdog = idle.then(|| start_watchdog(child, saved)).flatten();
        let current = if watchdog.is_some() {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_BATCH
        };
        if !Policy::of(current).apply(0) {
            if let Some((handle, stop)) = watchdog {
                drop(stop);
                let _ = handle.join();
            }
            return unchanged;
        }
        Quiet {
            saved: Some(saved),
            current,
            watchdog,
        }
    }

    /// The policy now in effect for the observer (as last set by it).
    #[cfg(test)]
    pub(crate) fn policy(&self) -> i32 {
        self.current
    }

    /// Called after each read of the queues (see [`starved`]): a starved SCHED_IDLE observer
    /// moves to SCHED_BATCH for the rest of the run.
    pub(crate) fn after_read(&mut self, period: Duration, since_last: Duration, took: Duration) {
        if self.current == libc::SCHED_IDLE
            && starved(period, since_last, took)
            && Policy::of(libc::SCHED_BATCH).apply(0)
        {
            self.current = libc::SCHED_BATCH;
        }
    }

    /// Returns the calling thread to the policy it had before [`Quiet::enter`] and stops the
    /// watchdog.
    pub(crate) fn leave(self) {
        if let Some((handle, stop)) = self.watchdog {
            drop(stop);
            let _ = handle.join();
        }
        if let Some(saved) = self.saved {
            saved.apply(0);
        }
    }
}

/// Starts the thread that returns thread `observer` to `normal` as soon as `child` (a pidfd)
/// is readable, that is when the command has ended. It stops when the returned descriptor is
/// closed. `None` if it could not be started.
fn start_watchdog(
    child: &OwnedFd,
    normal: Policy,
) -> Option<(std::thread::JoinHandle<()>, OwnedFd)> {
    // SAFETY: gettid has no preconditions.
    let observer = unsafe { libc::gettid() };
    // Its own copy: the watchdog may outlive the caller's use of the pidfd.
    let child = child.try_clone().ok()?;
    let (stop_r, stop_w) = crate::launch::pipe().ok()?;
    let handle = std::thread::Builder::new()
        .name("asl-fanotify-watchdog".into())
        .spawn(move || {
            let mut fds = [
                libc::pollfd {
                    fd: child.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop_r.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            loop {
                // SAFETY: a valid array of two pollfds.
                let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break;
            }
            // Both may be ready when the observer stops us right after the command's end:
            // the move then costs one system call and changes nothing.
            if fds[0].revents != 0 {
                normal.apply(observer);
            }
        })
        .ok()?;
    Some((handle, stop_w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starvation_is_lateness_or_a_long_read() {
        let p = ms(10);
        // On time, short reads: unloaded runs.
        assert!(!starved(p, ms(10), ms(1)));
        assert!(!starved(p, ms(12), ms(7)));
        assert!(!starved(p, ms(0), ms(0)));
        // 20 ms late is still tolerated; more is not.
        assert!(!starved(p, ms(30), ms(1)));
        assert!(starved(p, ms(31), ms(1)));
        // A read preempted for long.
        assert!(starved(p, ms(10), ms(21)));
    }

    #[test]
    fn an_idle_core_is_fewer_runnable_threads_than_cores_besides_the_caller() {
        assert!(cores_left_idle("0.00 0.01 0.05 1/82 12205\n", 2));
        assert!(cores_left_idle("0.50 0.01 0.05 2/82 12205", 2));
        assert!(!cores_left_idle("2.00 1.25 0.91 3/87 12212", 2));
        assert!(!cores_left_idle("2.00 1.25 0.91 2/87 12212", 1));
        assert!(cores_left_idle("9.00 1.25 0.91 8/87 12212", 8));
        // Unreadable: assume busy.
        assert!(!cores_left_idle("", 2));
        assert!(!cores_left_idle("0.1 0.1 0.1 x/87 1", 2));
    }

    /// A child that lives until its stdin closes, with its pidfd.
    fn child() -> (std::process::Child, OwnedFd) {
        let c = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // SAFETY: pidfd_open on our own child; the descriptor is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, c.id() as i32, 0) } as i32;
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor.
        (c, unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn own_policy() -> i32 {
        Policy::of_thread(0).unwrap().policy()
    }

    /// Each case runs on a thread of its own: the test harness's thread keeps its policy.
    fn on_own_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn the_observer_is_quiet_while_the_command_runs_and_normal_afterwards() {
        on_own_thread(|| {
            let (mut c, pidfd) = child();
            let mut cases = vec![(false, libc::SCHED_BATCH)];
            if may_leave_idle() {
                cases.push((true, libc::SCHED_IDLE));
            }
            for (idle, expected) in cases {
                let q = Quiet::enter_as(&pidfd, idle);
                assert_eq!(q.policy(), expected);
                assert_eq!(own_policy(), expected);
                q.leave();
                assert_eq!(own_policy(), libc::SCHED_OTHER);
            }
            // Chosen by the machine's state: one of the two, and normal afterwards.
            let q = Quiet::enter(&pidfd);
            assert!([libc::SCHED_IDLE, libc::SCHED_BATCH].contains(&own_policy()));
            assert_eq!(own_policy(), q.policy());
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_OTHER);
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }

    #[test]
    fn the_watchdog_returns_the_observer_to_normal_when_the_command_ends() {
        if !may_leave_idle() {
            eprintln!("skipped: needs CAP_SYS_NICE");
            return;
        }
        on_own_thread(|| {
            let (mut c, pidfd) = child();
            let q = Quiet::enter_as(&pidfd, true);
            assert_eq!(own_policy(), libc::SCHED_IDLE);
            drop(c.stdin.take());
            c.wait().unwrap();
            // The observer does nothing itself: the watchdog moves it.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while own_policy() != libc::SCHED_OTHER && std::time::Instant::now() < deadline {
                std::thread::sleep(ms(1));
            }
            assert_eq!(own_policy(), libc::SCHED_OTHER);
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_OTHER);
        });
    }

    #[test]
    fn a_starved_idle_observer_moves_to_batch_and_back_to_normal_at_the_end() {
        if !may_leave_idle() {
            eprintln!("skipped: needs CAP_SYS_NICE");
            return;
        }
        on_own_thread(|| {
            let (mut c, pidfd) = child();
            let mut q = Quiet::enter_as(&pidfd, true);
            q.after_read(ms(10), ms(11), ms(2));
            assert_eq!(own_policy(), libc::SCHED_IDLE);
            q.after_read(ms(10), ms(80), ms(2));
            assert_eq!(q.policy(), libc::SCHED_BATCH);
            assert_eq!(own_policy(), libc::SCHED_BATCH);
            // Once moved, it stays: a prompt read does not send it back to idle.
            q.after_read(ms(10), ms(10), ms(1));
            assert_eq!(own_policy(), libc::SCHED_BATCH);
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_OTHER);
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }

    #[test]
    fn a_caller_under_another_policy_is_left_alone() {
        on_own_thread(|| {
            assert!(Policy::of(libc::SCHED_BATCH).apply(0));
            let (mut c, pidfd) = child();
            let q = Quiet::enter(&pidfd);
            assert_eq!(own_policy(), libc::SCHED_BATCH);
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_BATCH);
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }
}
