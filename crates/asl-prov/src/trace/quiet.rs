//! How the fanotify observer keeps out of the traced command's way while the command runs.
//!
//! The observer reads the kernel's event queues every few milliseconds. Whatever CPU it takes
//! while the command runs is taken from the command, and under the normal policy its wakeups
//! also preempt the command. So, while the command runs, the observer thread is moved to a
//! quieter policy ([`ObserverPolicy`] chooses how):
//! * **SCHED_IDLE** when a core is idle as the command starts and the process holds
//!   CAP_SYS_NICE (in the initial user namespace), which it needs to leave that policy again.
//!   The thread then runs on a core the command leaves idle. On a machine kept busy by other
//!   work such a thread would barely run, so a **watchdog** thread under the normal policy
//!   * moves the observer back to normal the moment the command ends, so that the end is
//!     noticed and the receipt assembled without waiting for an idle core;
//!   * moves it to SCHED_BATCH for the rest of the run when its last read of the queues
//!     ended too long ago ([`overdue`]): it woke late, or a read is taking long. Starved, the
//!     observer could not notice that itself. The events are then read, and their
//!     directories resolved by handle, while those still exist (mostly: a directory removed
//!     within a few milliseconds of an access can be gone under any policy).
//! * **SCHED_BATCH** otherwise: it drops the wakeup preemption yet keeps a fair share of the
//!   machine, and any thread may leave it again.
//!
//! The policy is the thread's own again when [`Quiet`] is dropped, panics included. A thread
//! under any policy other than the normal one is left as it is. The measurements behind these
//! choices are in docs/BENCHMARKS.md and bench/results.

use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::error::ProvError;

/// How much later than due the observer may be before it counts as starved: above the
/// lateness and read time of an observer that has a core when it needs one, and well below
/// what a read takes when the observer is starved by busy threads.
pub(crate) const STARVED_AFTER: Duration = Duration::from_millis(20);

/// Whether an observer due to read every `period`, whose last read ended `since_read` ago, is
/// starved: it did not wake in time, or the read it is in takes long.
pub(crate) fn overdue(period: Duration, since_read: Duration) -> bool {
    since_read > period + STARVED_AFTER
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

/// The environment variable that chooses how the observer keeps quiet, read by the
/// `asl-capture` tool (see [`ObserverPolicy`]).
pub const POLICY_VAR: &str = "ASL_OBSERVER_POLICY";

/// How the fanotify observer keeps out of the command's way while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ObserverPolicy {
    /// SCHED_IDLE (with the watchdog) when a core is idle and the process may leave that
    /// policy again, else SCHED_BATCH.
    #[default]
    Auto,
    /// SCHED_IDLE (with the watchdog) whenever the process may leave it again, idle core or
    /// not; else SCHED_BATCH. For diagnosis.
    Idle,
    /// SCHED_BATCH.
    Batch,
    /// The caller's policy, unchanged: for a machine where the quiet policies misjudge.
    Normal,
}

impl ObserverPolicy {
    /// Parses a value of [`POLICY_VAR`]; empty is `auto`.
    pub fn parse(value: &str) -> Result<ObserverPolicy, ProvError> {
        match value {
            "" | "auto" => Ok(ObserverPolicy::Auto),
            "idle" => Ok(ObserverPolicy::Idle),
            "batch" => Ok(ObserverPolicy::Batch),
            "normal" => Ok(ObserverPolicy::Normal),
            other => Err(bad_policy(other)),
        }
    }

    /// The policy [`POLICY_VAR`] names (unset: `auto`).
    pub fn from_env() -> Result<ObserverPolicy, ProvError> {
        match std::env::var(POLICY_VAR) {
            Ok(v) => ObserverPolicy::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(ObserverPolicy::Auto),
            Err(std::env::VarError::NotUnicode(v)) => Err(bad_policy(&v.to_string_lossy())),
        }
    }
}

fn bad_policy(value: &str) -> ProvError {
    ProvError::Usage(format!(
        "{POLICY_VAR}={value:?}: expected auto, idle, batch or normal"
    ))
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
    /// SCHED_RESET_ON_FORK: children start under the normal policy. A caller's flag is kept
    /// through the quiet policies and back (without CAP_SYS_NICE it could not be cleared
    /// anyway, and the policy change would be refused).
    reset_on_fork: bool,
    param: libc::sched_param,
}

impl Policy {
    pub(crate) fn of(policy: i32) -> Policy {
        Policy {
            policy,
            reset_on_fork: false,
            param: libc::sched_param { sched_priority: 0 },
        }
    }

    /// Policy `policy` (a non-real-time one), with this policy's SCHED_RESET_ON_FORK flag.
    pub(crate) fn with(&self, policy: i32) -> Policy {
        Policy {
            reset_on_fork: self.reset_on_fork,
            ..Policy::of(policy)
        }
    }

    /// The policy of thread `tid` (0: the calling thread).
    pub(crate) fn of_thread(tid: i32) -> Option<Policy> {
        // SAFETY: sched_getscheduler only reads the policy of thread `tid` (or fails with
        // ESRCH); it takes no pointer.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a live, writable sched_param for the kernel to fill; `tid` as
        // above.
        if policy < 0 || unsafe { libc::sched_getparam(tid, &mut param) } != 0 {
            return None;
        }
        Some(Policy {
            policy: policy & !libc::SCHED_RESET_ON_FORK,
            reset_on_fork: policy & libc::SCHED_RESET_ON_FORK != 0,
            param,
        })
    }

    #[cfg(test)]
    pub(crate) fn policy(&self) -> i32 {
        self.policy
    }

    /// Applies this policy to thread `tid` (0: the calling thread); false if refused.
    fn apply(&self, tid: i32) -> bool {
        let flag = if self.reset_on_fork {
            libc::SCHED_RESET_ON_FORK
        } else {
            0
        };
        // SAFETY: `self.param` is a live sched_param the kernel only reads; for a `tid` that
        // names no thread the call fails.
        unsafe { libc::sched_setscheduler(tid, self.policy | flag, &self.param) == 0 }
    }
}

/// Whether this process may raise a thread's scheduling priority, as leaving SCHED_IDLE
/// requires: CAP_SYS_NICE in its effective set, in the initial user namespace (the kernel
/// checks the capability there; a namespace's root lacks it).
fn may_leave_idle() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::SYS_NICE)
    }) && std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| initial_uid_map(&m))
}

/// Whether `/proc/self/uid_map` text `map` is the initial user namespace's (all ids, as is).
pub(crate) fn initial_uid_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

/// The observer thread's quiet policy, in effect from [`Quiet::enter`] until it is dropped
/// (or [`Quiet::leave`]), on the thread that entered it.
pub(crate) struct Quiet {
    /// The policy to return to; `None` when the thread was left as it was.
    saved: Option<Policy>,
    watchdog: Option<Watchdog>,
    /// When the observer last read its queues (µs since `since`), for the watchdog.
    last_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    since: std::time::Instant,
    /// The policies are the entering thread's: a `Quiet` must not move to another thread.
    _thread: std::marker::PhantomData<*const ()>,
}

/// The watchdog thread and the descriptor whose closing stops it.
struct Watchdog {
    handle: std::thread::JoinHandle<()>,
    stop: OwnedFd,
}

impl Quiet {
    /// Moves the calling thread to its quiet policy, as `policy` chooses, until the command,
    /// whose pidfd is `child`, ends; the thread reads its queues every `period`. A thread
    /// under a policy other than the normal one (a real-time caller's, say) is left as it is.
    pub(crate) fn enter(child: &OwnedFd, period: Duration, policy: ObserverPolicy) -> Quiet {
        let idle = match policy {
            // SCHED_IDLE only where it pays: a machine busy already would starve the observer.
            ObserverPolicy::Auto => may_leave_idle() && idle_core_now(),
            ObserverPolicy::Idle => may_leave_idle(),
            ObserverPolicy::Batch => false,
            ObserverPolicy::Normal => return Quiet::unchanged(),
        };
        Quiet::enter_as(child, period, idle)
    }

    /// A `Quiet` that changes nothing.
    fn unchanged() -> Quiet {
        Quiet {
            saved: None,
            watchdog: None,
            last_read: Default::default(),
            since: std::time::Instant::now(),
            _thread: std::marker::PhantomData,
        }
    }

    /// [`Quiet::enter`], with SCHED_IDLE if `idle` (the caller has checked that the thread
    /// may leave it again), else SCHED_BATCH.
    fn enter_as(child: &OwnedFd, period: Duration, idle: bool) -> Quiet {
        let mut q = Quiet::unchanged();
        let Some(saved) = Policy::of_thread(0).filter(|p| p.policy == libc::SCHED_OTHER) else {
            return q;
        };
        q.watchdog = idle
            .then(|| start_watchdog(child, saved, period, q.last_read.clone(), q.since))
            .flatten();
        let quiet = if q.watchdog.is_some() {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_BATCH
        };
        if saved.with(quiet).apply(0) {
            q.saved = Some(saved);
        }
        q
    }

    /// Tells the watchdog that a read of the queues has just ended.
    pub(crate) fn read_done(&self) {
        self.last_read.store(
            self.since.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Returns the calling thread to the policy it had before [`Quiet::enter`] and stops the
    /// watchdog (what dropping it does).
    pub(crate) fn leave(self) {}
}

impl Drop for Quiet {
    fn drop(&mut self) {
        // The watchdog first: it acts on this thread's id, which must stay ours until it has
        // stopped (this thread is alive here, even while a panic unwinds it).
        if let Some(w) = self.watchdog.take() {
            drop(w.stop);
            let _ = w.handle.join();
        }
        if let Some(saved) = self.saved.take() {
            saved.apply(0);
        }
    }
}

/// Starts the watchdog of the calling (observer) thread, which has the policy `normal` to
/// return to. Under the normal policy itself, it
/// * moves the observer back to `normal` as soon as `child` (a pidfd) is readable, that is
///   when the command has ended;
/// * moves it to SCHED_BATCH when its last read (`last_read`, µs since `since`) is
///   [`overdue`].
///
/// It stops when the returned descriptor is closed. `None` if it could not be started.
fn start_watchdog(
    child: &OwnedFd,
    normal: Policy,
    period: Duration,
    last_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    since: std::time::Instant,
) -> Option<Watchdog> {
    let observer = rustix::thread::gettid().as_raw_nonzero().get();
    // Its own copy: the watchdog may outlive the caller's use of the pidfd.
    let child = child.try_clone().ok()?;
    let (stop_r, stop) = crate::child::pipe().ok()?;
    // Checked at least this often (a little after a read would next be due).
    let check = period + STARVED_AFTER;
    let handle = std::thread::Builder::new()
        .name("asl-fanotify-watchdog".into())
        .spawn(move || {
            let mut batch = false;
            loop {
                use rustix::event::{PollFd, PollFlags, Timespec};
                let mut fds = [
                    PollFd::new(&child, PollFlags::IN),
                    PollFd::new(&stop_r, PollFlags::IN),
                ];
                let timeout = (!batch).then(|| Timespec::try_from(check).unwrap_or_default());
                match rustix::event::poll(&mut fds, timeout.as_ref()) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return,
                }
                if !fds[1].revents().is_empty() {
                    return;
                }
                if !fds[0].revents().is_empty() {
                    normal.apply(observer);
                    return;
                }
                let read_at =
                    Duration::from_micros(last_read.load(std::sync::atomic::Ordering::Relaxed));
                if overdue(period, since.elapsed().saturating_sub(read_at)) {
                    batch = normal.with(libc::SCHED_BATCH).apply(observer);
                }
            }
        })
        .ok()?;
    Some(Watchdog { handle, stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read period long enough that the watchdog never finds a read overdue in a test:
    /// the policies asserted are the ones the test itself caused.
    const LONG: Duration = Duration::from_secs(3600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_observer_is_starved_when_its_last_read_ended_over_20_ms_after_due() {
        let p = ms(10);
        // On time, or a little late.
        assert!(!overdue(p, ms(0)));
        assert!(!overdue(p, ms(12)));
        assert!(!overdue(p, ms(30)));
        // Late, or in a read preempted for long.
        assert!(overdue(p, ms(31)));
        assert!(overdue(p, ms(105)));
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
        let pid = rustix::process::Pid::from_child(&c);
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .expect("pidfd_open");
        (c, fd)
    }

    fn own_policy() -> i32 {
        Policy::of_thread(0).unwrap().policy()
    }

    /// Each case runs on a thread of its own: the test harness's thread keeps its policy.
    fn on_own_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    /// Fails the test unless this process may leave SCHED_IDLE again: the tests of the idle
    /// policy and its watchdog need it, and CI has it (it runs as root).
    fn needs_cap_sys_nice() {
        assert!(
            may_leave_idle(),
            "this test needs CAP_SYS_NICE in the initial user namespace (CI runs as root)"
        );
    }

    /// (`idle` for [`Quiet::enter_as`], the policy it must give): SCHED_BATCH and SCHED_IDLE.
    fn quiet_policies() -> Vec<(bool, i32)> {
        needs_cap_sys_nice();
        vec![(false, libc::SCHED_BATCH), (true, libc::SCHED_IDLE)]
    }

    #[test]
    fn the_observer_is_quiet_while_the_command_runs_and_normal_afterwards() {
        on_own_thread(|| {
            let (mut c, pidfd) = child();
            for (idle, expected) in quiet_policies() {
                let q = Quiet::enter_as(&pidfd, LONG, idle);
                assert_eq!(own_policy(), expected);
                q.leave();
                assert_eq!(own_policy(), libc::SCHED_OTHER);
            }
            // Chosen by the machine's state: one of the two, and normal afterwards.
            let q = Quiet::enter(&pidfd, LONG, ObserverPolicy::Auto);
            assert!([libc::SCHED_IDLE, libc::SCHED_BATCH].contains(&own_policy()));
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_OTHER);
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }

    #[test]
    fn the_watchdog_returns_the_observer_to_normal_when_the_command_ends() {
        needs_cap_sys_nice();
        on_own_thread(|| {
            let (mut c, pidfd) = child();
            let q = Quiet::enter_as(&pidfd, LONG, true);
            assert_eq!(own_policy(), libc::SCHED_IDLE);
            drop(c.stdin.take());
            c.wait().unwrap();
            // The observer does nothing itself: the watchdog moves it.
            await_policy(libc::SCHED_OTHER);
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_OTHER);
        });
    }

    /// Waits (up to 10 s) until the calling thread's policy is `p`.
    fn await_policy(p: i32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while own_policy() != p && std::time::Instant::now() < deadline {
            std::thread::sleep(ms(1));
        }
        assert_eq!(own_policy(), p);
    }

    #[test]
    fn the_watchdog_moves_an_observer_that_does_not_read_to_batch() {
        needs_cap_sys_nice();
        // Both moves keep a caller's SCHED_RESET_ON_FORK flag.
        for flag in [0, libc::SCHED_RESET_ON_FORK] {
            on_own_thread(move || {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: `param` is a live sched_param the kernel only reads.
                let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER | flag, &param) };
                assert_eq!(set, 0);
                let (mut c, pidfd) = child();
                let q = Quiet::enter_as(&pidfd, ms(10), true);
                assert_eq!(raw_policy(), libc::SCHED_IDLE | flag);
                // No read for longer than 10 ms + STARVED_AFTER.
                await_policy(libc::SCHED_BATCH);
                assert_eq!(raw_policy(), libc::SCHED_BATCH | flag);
                // And back to normal at the command's end.
                drop(c.stdin.take());
                c.wait().unwrap();
                await_policy(libc::SCHED_OTHER);
                assert_eq!(raw_policy(), libc::SCHED_OTHER | flag);
                q.leave();
                assert_eq!(raw_policy(), libc::SCHED_OTHER | flag);
            });
        }
    }

    #[test]
    fn a_panic_while_quiet_restores_the_policy() {
        on_own_thread(|| {
            let (mut c, pidfd) = child();
            needs_cap_sys_nice();
            let r = std::panic::catch_unwind(|| {
                let _q = Quiet::enter_as(&pidfd, LONG, true);
                assert_ne!(own_policy(), libc::SCHED_OTHER);
                panic!("in the middle of a read");
            });
            assert!(r.is_err());
            assert_eq!(own_policy(), libc::SCHED_OTHER);
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }

    #[test]
    fn the_policy_variable_takes_four_names_and_refuses_others() {
        use ObserverPolicy as P;
        for (value, policy) in [
            ("", P::Auto),
            ("auto", P::Auto),
            ("idle", P::Idle),
            ("batch", P::Batch),
            ("normal", P::Normal),
        ] {
            assert_eq!(P::parse(value).unwrap(), policy, "{value:?}");
        }
        for bad in ["IDLE", "fifo", " idle"] {
            let e = P::parse(bad).unwrap_err();
            assert!(e.is_usage(), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("ASL_OBSERVER_POLICY") && text.contains(&format!("{bad:?}")),
                "{text}"
            );
        }
    }

    #[test]
    fn a_normal_observer_keeps_the_caller_s_policy() {
        on_own_thread(|| {
            let (mut c, pidfd) = child();
            let q = Quiet::enter(&pidfd, LONG, ObserverPolicy::Normal);
            assert_eq!(own_policy(), libc::SCHED_OTHER);
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_OTHER);
            let q = Quiet::enter(&pidfd, LONG, ObserverPolicy::Batch);
            assert_eq!(own_policy(), libc::SCHED_BATCH);
            q.leave();
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }

    #[test]
    fn only_the_initial_user_namespace_map_counts() {
        assert!(initial_uid_map("         0          0 4294967295\n"));
        assert!(!initial_uid_map("         0       1000          1\n"));
        assert!(!initial_uid_map("0 100000 65536\n"));
        assert!(!initial_uid_map(""));
    }

    /// The raw policy of the calling thread, SCHED_RESET_ON_FORK included.
    fn raw_policy() -> i32 {
        // SAFETY: sched_getscheduler takes no pointer; it only reads this thread's policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_caller_s_reset_on_fork_flag_is_kept_while_quiet_and_after() {
        on_own_thread(|| {
            let flagged = libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK;
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a live sched_param the kernel only reads.
            assert_eq!(unsafe { libc::sched_setscheduler(0, flagged, &param) }, 0);
            let (mut c, pidfd) = child();
            for (idle, expected) in quiet_policies() {
                let q = Quiet::enter_as(&pidfd, LONG, idle);
                assert_eq!(raw_policy(), expected | libc::SCHED_RESET_ON_FORK);
                q.leave();
                assert_eq!(raw_policy(), flagged);
            }
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }

    #[test]
    fn a_caller_under_another_policy_is_left_alone() {
        on_own_thread(|| {
            assert!(Policy::of(libc::SCHED_BATCH).apply(0));
            let (mut c, pidfd) = child();
            let q = Quiet::enter(&pidfd, LONG, ObserverPolicy::Auto);
            assert_eq!(own_policy(), libc::SCHED_BATCH);
            q.leave();
            assert_eq!(own_policy(), libc::SCHED_BATCH);
            drop(c.stdin.take());
            c.wait().unwrap();
        });
    }
}
