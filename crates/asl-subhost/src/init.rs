//! The subhost's PID 1.
//!
//! It runs the init phase — the START services in order (`service S start`, or `S start` for an
//! absolute path), or the script printed by a custom INIT — and reports readiness to the
//! supervisor through a pipe. Then it reaps every orphan until it gets SIGTERM, SIGINT or SIGPWR,
//! when it stops the services in reverse order (each with a timeout), sends SIGTERM to every
//! remaining process, waits, sends SIGKILL, and exits. Unlike overlay-boot's reaper it keeps
//! running with no services at all, and it never ignores a stop request.
//!
//! The ordering is written against [`Supervision`] so that it is unit-tested without processes.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitOptions};

use crate::config::Hardening;

/// What PID 1 needs to know.
#[derive(Debug, Clone)]
pub struct InitSpec {
    pub name: String,
    pub start: Vec<String>,
    /// The script printed by a custom INIT on the host; replaces the START phase.
    pub init_script: Option<String>,
    pub service_timeout: Duration,
    pub hardening: Hardening,
    pub conf: String,
}

/// How one start or stop action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(String),
    TimedOut,
}

/// The process operations of PID 1.
pub trait Supervision {
    /// Runs `action` (`start`/`stop`) of `service` to completion or until `timeout`, when it is
    /// killed. Other children are reaped meanwhile.
    fn run_action(&mut self, service: &str, action: &str, timeout: Duration) -> Outcome;
    /// Sends `signal` to every process of the subhost except PID 1.
    fn signal_all(&mut self, signal: i32);
    /// Reaps until no process but PID 1 is left or `timeout` passes; true if none is left.
    fn wait_empty(&mut self, timeout: Duration) -> bool;
    fn log(&mut self, message: &str);
}

/// Starts services in order. On the first failure returns the services started so far (to be
/// stopped) and the reason.
pub fn start_services<'a>(
    ops: &mut dyn Supervision,
    start: &'a [String],
    timeout: Duration,
) -> Result<Vec<&'a str>, (Vec<&'a str>, String)> {
    let mut started = Vec::new();
    for s in start {
        ops.log(&format!("starting {s}"));
        match ops.run_action(s, "start", timeout) {
            Outcome::Ok => started.push(s.as_str()),
            Outcome::Failed(why) => {
                return Err((started, format!("service {s} failed to start: {why}")));
            }
            Outcome::TimedOut => {
                return Err((
                    started,
                    format!("service {s} did not finish starting within {timeout:?}"),
                ));
            }
        }
    }
    Ok(started)
}

/// Stops the subhost: services in reverse order, then SIGTERM to everything, then SIGKILL to
/// what is still there after `timeout`.
pub fn shutdown(ops: &mut dyn Supervision, started: &[&str], timeout: Duration) {
    for s in started.iter().rev() {
        ops.log(&format!("stopping {s}"));
        match ops.run_action(s, "stop", timeout) {
            Outcome::Ok => {}
            Outcome::Failed(why) => ops.log(&format!("service {s} stop failed: {why}")),
            Outcome::TimedOut => ops.log(&format!(
                "service {s} stop did not finish within {timeout:?}; killed"
            )),
        }
    }
    ops.signal_all(libc::SIGTERM);
    if !ops.wait_empty(timeout) {
        ops.log(&format!(
            "processes left {timeout:?} after SIGTERM; sending SIGKILL"
        ));
        ops.signal_all(libc::SIGKILL);
        ops.wait_empty(Duration::from_secs(5));
    }
}

/// The real PID 1 operations.
struct Pid1 {
    name: String,
    /// Signals that stop the subhost and SIGCHLD; all blocked, taken by sigtimedwait.
    waitset: libc::sigset_t,
    stop_requested: bool,
}

fn exit_reason(status: i32) -> Option<String> {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => None,
            c => Some(format!("exit status {c}")),
        }
    } else if libc::WIFSIGNALED(status) {
        Some(format!("killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Some("stopped".into())
    }
}

impl Pid1 {
    fn new(name: &str) -> Pid1 {
        // SAFETY: both sets are locals that sigfillset/sigemptyset initialise before anything
        // reads them; blocking every signal of this single-threaded PID 1 has no memory
        // effects. rustix offers no sigprocmask outside its runtime module.
        let waitset = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR] {
                libc::sigaddset(&mut set, s);
            }
            set
        };
        Pid1 {
            name: name.to_string(),
            waitset,
            stop_requested: false,
        }
    }

    /// Reaps every exited child; returns the status of `target` if it was among them.
    fn reap(&mut self, target: Option<i32>) -> Option<i32> {
        let mut found = None;
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            if Some(pid.as_raw_nonzero().get()) == target {
                found = Some(status.as_raw());
            }
        }
        found
    }

    /// True when PID 1 has no children left.
    fn childless(&self) -> bool {
        // WNOWAIT only inspects: the child stays to be reaped.
        let r = rustix::process::waitid(
            WaitId::All,
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        );
        r.err() == Some(Errno::CHILD)
    }

    /// Waits up to `timeout` for a signal; notes stop requests. Returns false on timeout.
    fn wait_signal(&mut self, timeout: Option<Duration>) -> bool {
        // Only the signal number is needed, so no siginfo is asked for (a null pointer).
        let info = std::ptr::null_mut();
        // SAFETY: the set was initialised in `new`, the kernel writes no siginfo through a null
        // pointer, and the timespec lives for the call. rustix has no sigtimedwait outside its
        // runtime module.
        let sig = unsafe {
            match timeout {
                Some(t) => {
                    let ts = libc::timespec {
                        tv_sec: t.as_secs() as libc::time_t,
                        tv_nsec: t.subsec_nanos() as libc::c_long,
                    };
                    libc::sigtimedwait(&self.waitset, info, &ts)
                }
                None => libc::sigwaitinfo(&self.waitset, info),
            }
        };
        if sig < 0 {
            return false;
        }
        if sig != libc::SIGCHLD {
            self.stop_requested = true;
        }
        true
    }

    fn command(&self, service: &str, action: &str, fallback: bool) -> Command {
        let mut c = if service.starts_with('/') {
            let mut c = Command::new(service);
            c.arg(action);
            c
        } else if fallback {
            let mut c = Command::new(format!("/etc/init.d/{service}"));
            c.arg(action);
            c
        } else {
            let mut c = Command::new("service");
            c.args([service, action]);
            c
        };
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("SUBHOST", &self.name)
            .stdin(Stdio::null())
            .current_dir("/");
        // SAFETY: the hook runs between fork and exec and only calls setsid, which neither
        // allocates nor takes locks. Each service gets its own session like overlay-boot's
        // `setsid service S start`.
        unsafe {
            c.pre_exec(|| {
                let _ = rustix::process::setsid();
                Ok(())
            });
        }
        c
    }

    fn run_command(&mut self, mut cmd: Command, what: &str, timeout: Duration) -> Outcome {
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("cannot run {what}: {e}")),
        };
        let pid = child.id() as i32;
        // The child is reaped by `reap` below, never through `Child`.
        drop(child);
        let deadline = Instant::now() + timeout;
        let mut killed = false;
        loop {
            if let Some(status) = self.reap(Some(pid)) {
                if killed {
                    return Outcome::TimedOut;
                }
                return match exit_reason(status) {
                    None => Outcome::Ok,
                    Some(r) => Outcome::Failed(r),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !killed {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
                killed = true;
            }
            let wait = if killed {
                Duration::from_millis(100)
            } else {
                left
            };
            self.wait_signal(Some(wait));
        }
    }
}

impl Supervision for Pid1 {
    fn run_action(&mut self, service: &str, action: &str, timeout: Duration) -> Outcome {
        let what = format!("{service} {action}");
        let cmd = self.command(service, action, false);
        match self.run_command(cmd, &what, timeout) {
            Outcome::Failed(why)
                if !service.starts_with('/') && why.contains("No such file or directory") =>
            {
                // No `service` program in the subhost: run the init script directly.
                let cmd = self.command(service, action, true);
                self.run_command(cmd, &what, timeout)
            }
            other => other,
        }
    }

    fn signal_all(&mut self, signal: i32) {
        // SAFETY: kill takes no pointers. From PID 1, pid -1 reaches every process of this PID
        // namespace but itself; rustix has no call for pid -1.
        unsafe { libc::kill(-1, signal) };
    }

    fn wait_empty(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap(None);
            if self.childless() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.wait_signal(Some(left.min(Duration::from_millis(200))));
        }
    }

    fn log(&mut self, message: &str) {
        crate::log::line(&self.name, message);
    }
}

fn report(ready: &mut Option<OwnedFd>, line: &str) {
    if let Some(fd) = ready.take() {
        let mut f = std::fs::File::from(fd);
        let _ = f.write_all(line.as_bytes());
    }
}

/// Runs PID 1 to the end and returns its exit status. `ready` receives `READY` or `FAIL reason`.
pub fn run(spec: &InitSpec, ready: OwnedFd) -> i32 {
    let mut ready = Some(ready);
    let mut p = Pid1::new(&spec.name);
    let _ = rustix::thread::set_name(c"subhost-init");
    rustix::process::umask(Mode::from_raw_mode(0o022));
    let started: Vec<&str> = match &spec.init_script {
        Some(script) => {
            p.log("running the INIT script");
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", script])
                .env("CONFIG", &spec.conf)
                .env("NAME", &spec.name)
                // overlay-init scripts end with `exec ${REAPER:-/.reaper} NAME`; PID 1 is the
                // reaper here, so that last step must be a no-op.
                .env("REAPER", "/bin/true")
                .stdin(Stdio::null());
            match p.run_command(cmd, "INIT script", Duration::from_secs(24 * 3600)) {
                Outcome::Ok => Vec::new(),
                other => {
                    report(&mut ready, &format!("FAIL INIT script: {other:?}\n"));
                    shutdown(&mut p, &[], spec.service_timeout);
                    return 1;
                }
            }
        }
        None => match start_services(&mut p, &spec.start, spec.service_timeout) {
            Ok(s) => s,
            Err((started, why)) => {
                p.log(&why);
                report(&mut ready, &format!("FAIL {why}\n"));
                shutdown(&mut p, &started, spec.service_timeout);
                return 1;
            }
        },
    };
    if p.stop_requested {
        report(&mut ready, "FAIL stopped while booting\n");
        shutdown(&mut p, &started, spec.service_timeout);
        return 1;
    }
    report(&mut ready, "READY\n");
    p.log("ready");
    while !p.stop_requested {
        p.wait_signal(None);
        p.reap(None);
    }
    p.log("stop requested");
    shutdown(&mut p, &started, spec.service_timeout);
    p.log("all processes ended; PID 1 exits");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        events: Vec<String>,
        fail: Option<&'static str>,
        /// Processes survive SIGTERM.
        stubborn: bool,
        alive: bool,
    }

    impl Supervision for Fake {
        fn run_action(&mut self, s: &str, a: &str, _: Duration) -> Outcome {
            self.events.push(format!("{a} {s}"));
            if a == "start" {
                self.alive = true;
            }
            if self.fail == Some(s) {
                Outcome::Failed("exit status 1".into())
            } else {
                Outcome::Ok
            }
        }
        fn signal_all(&mut self, sig: i32) {
            self.events.push(format!("signal {sig}"));
            if sig == libc::SIGKILL || !self.stubborn {
                self.alive = false;
            }
        }
        fn wait_empty(&mut self, _: Duration) -> bool {
            !self.alive
        }
        fn log(&mut self, _: &str) {}
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn services_start_in_order_and_stop_in_reverse_then_term() {
        let mut f = Fake::default();
        let start = names(&["rsyslog", "networking", "/etc/init.d/app"]);
        let started = start_services(&mut f, &start, Duration::from_secs(1)).unwrap();
        shutdown(&mut f, &started, Duration::from_secs(1));
        assert_eq!(
            f.events,
            [
                "start rsyslog",
                "start networking",
                "start /etc/init.d/app",
                "stop /etc/init.d/app",
                "stop networking",
                "stop rsyslog",
                "signal 15",
            ]
        );
    }

    #[test]
    fn processes_ignoring_term_get_kill() {
        let mut f = Fake {
            stubborn: true,
            ..Default::default()
        };
        let start = names(&["a"]);
        let started = start_services(&mut f, &start, Duration::from_secs(1)).unwrap();
        shutdown(&mut f, &started, Duration::from_secs(1));
        assert_eq!(&f.events[f.events.len() - 2..], ["signal 15", "signal 9"]);
    }

    #[test]
    fn a_failed_start_reports_it_and_only_started_services_are_stopped() {
        let mut f = Fake {
            fail: Some("b"),
            ..Default::default()
        };
        let start = names(&["a", "b", "c"]);
        let (started, why) = start_services(&mut f, &start, Duration::from_secs(1)).unwrap_err();
        assert!(why.contains("service b failed"), "{why}");
        shutdown(&mut f, &started, Duration::from_secs(1));
        assert_eq!(f.events, ["start a", "start b", "stop a", "signal 15"]);
    }
}
