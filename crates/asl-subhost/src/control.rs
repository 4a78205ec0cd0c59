//! `overlay-stop`, `overlay-go` and `overlay-list`: acting on running subhosts through their state
//! file and pidfds.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::boot::Teardown;
use crate::cable::CableNames;
use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};
use rustix::thread::ThreadNameSpaceType;

use crate::error::{Error, Result, errno, sys};
use crate::state::{Lock, State};
use crate::{cgroup, config, log};

/// Accepts a configuration file (as overlay-boot's tools do) or a plain subhost name.
pub fn name_from_arg(arg: &str) -> Result<String> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(config::name_of(p)?);
    }
    if arg.contains('/') || arg.ends_with(".conf") {
        return Err(Error::Other(format!(
            "configuration file {arg} does not exist"
        )));
    }
    config::check_name(arg).map_err(|m| Error::Other(format!("not a subhost name: {m}")))?;
    Ok(arg.to_string())
}

/// Result of a stop.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stopped {
    pub name: String,
    pub stop_ms: f64,
    /// True when PID 1 had to be killed because the graceful stop took too long.
    pub killed: bool,
}

/// Stops subhost NAME: SIGTERM to its PID 1 (which stops the services in reverse and ends every
/// process), waits, then makes sure cables, netns, cgroup and state are gone. A subhost that is
/// not running is `Error::NotRunning`, after removing whatever a crashed one left behind.
pub fn stop(name: &str) -> Result<Stopped> {
    let t0 = Instant::now();
    let lock = Lock::take(name, false)?;
    let Some(st) = State::read(name)? else {
        lock.remove();
        return Err(Error::NotRunning { name: name.into() });
    };
    let init = st.init.open().filter(|p| !p.exited());
    let Some(init) = init else {
        if let Some(sup) = st.supervisor.open() {
            sup.wait(Duration::from_secs(10));
        }
        for p in Teardown::from_state(&st).run() {
            log::line(name, &format!("cleanup: {p}"));
        }
        State::remove(name)?;
        lock.remove();
        return Err(Error::NotRunning { name: name.into() });
    };
    init.signal(libc::SIGTERM)
        .map_err(sys(format!("signal PID 1 of {name}")))?;
    // PID 1 gives each stop action and the final SIGTERM the service timeout; allow for all.
    let budget = Duration::from_secs(st.service_timeout_s.max(1) * (st.start.len() as u64 + 1) + 5);
    let mut killed = false;
    if !init.wait(budget) {
        killed = true;
        init.signal(libc::SIGKILL)
            .map_err(sys(format!("kill PID 1 of {name}")))?;
        init.wait(Duration::from_secs(10));
    }
    // The supervisor removes everything once PID 1 is gone; wait for it, then check ourselves
    // (it may have been killed).
    if let Some(sup) = st.supervisor.open() {
        sup.wait(Duration::from_secs(10));
    }
    let problems = Teardown::from_state(&st).run();
    State::remove(name)?;
    lock.remove();
    if !problems.is_empty() {
        return Err(Error::Other(format!(
            "subhost {name} stopped, but cleanup failed: {}",
            problems.join("; ")
        )));
    }
    Ok(Stopped {
        name: name.into(),
        stop_ms: t0.elapsed().as_secs_f64() * 1000.0,
        killed,
    })
}

/// Runs `argv` (a shell when empty) inside every namespace of running subhost NAME — network,
/// mount (hence its root), PID, IPC, UTS — and in its cgroup, with its hardening. Returns the
/// command's exit code (128+N when killed by signal N).
pub fn go(name: &str, argv: &[String]) -> Result<i32> {
    let st = State::read(name)?.ok_or_else(|| Error::NotRunning { name: name.into() })?;
    let init = st
        .init
        .open()
        .filter(|p| !p.exited())
        .ok_or_else(|| Error::NotRunning { name: name.into() })?;
    // Opened before entering the mount namespace, where the host's cgroup tree is not visible.
    let (cgroup, procs) = match &st.cgroup {
        Some(dir) => (
            Some(std::fs::File::open(dir).map_err(sys(format!("open cgroup of {name}")))?),
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .ok(),
        ),
        None => (None, None),
    };
    let all = ThreadNameSpaceType::NETWORK
        | ThreadNameSpaceType::MOUNT
        | ThreadNameSpaceType::PROCESS_ID
        | ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION
        | ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME;
    // With a pidfd, setns enters all the listed namespaces of that process atomically.
    rustix::thread::move_into_thread_name_spaces(init.as_fd().as_fd(), all)
        .map_err(errno(format!("enter the namespaces of subhost {name}")))?;
    // The command is born in the subhost's cgroup (and, through the PID namespace entered
    // above, as a member of the subhost).
    let cg = cgroup.as_ref().map(|f| f.as_raw_fd());
    let (pid, _pidfd) = match crate::process::clone3(0, cg) {
        Err(_) if cg.is_some() => {
            let r = crate::process::clone3(0, None).map_err(sys("fork"))?;
            if r.0 == 0
                && let Some(mut f) = procs
            {
                // Fallback: migrate through cgroup.procs ("0" = the writing process).
                use std::io::Write;
                let _ = f.write_all(b"0");
            }
            r
        }
        r => r.map_err(sys("fork"))?,
    };
    if pid == 0 {
        let _ = crate::caps::drop_bounding(&st.hardening.drop_caps);
        if st.hardening.no_new_privs {
            let _ = rustix::thread::set_no_new_privs(true);
        }
        let default_shell = if Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        let (prog, args) = match argv.split_first() {
            Some((p, a)) => (p.as_str(), a),
            None => (default_shell, &[][..]),
        };
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("SUBHOST", name)
            .current_dir("/");
        for keep in ["TERM", "LANG", "LC_ALL", "COLORTERM"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        let e = cmd.exec();
        eprintln!("overlay-go: error: cannot run {prog} in subhost {name}: {e}");
        crate::process::exit_now(127);
    }
    // Like a shell running a foreground job: ^C and ^\ are for the command, not for us.
    // SAFETY: SIG_IGN installs no handler code, so no Rust code can run in signal context;
    // rustix offers sigaction only in its runtime module.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let status = loop {
        match rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => break status.as_raw(),
            Ok(None) | Err(Errno::INTR) => {}
            Err(e) => return Err(errno("wait for the command")(e)),
        }
    };
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

/// One line of `overlay-list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub name: String,
    /// `running`, or `dead` when PID 1 is gone but the state was not cleaned up.
    pub status: &'static str,
    pub init_pid: i32,
    pub supervisor_pid: i32,
    pub conf: String,
    pub uptime_s: Option<f64>,
    pub cables: Vec<CableNames>,
    pub memory_bytes: Option<u64>,
    pub cgroup: Option<String>,
    pub log: String,
}

/// Every subhost with a state file. Unreadable state files are reported, not skipped silently.
pub fn list() -> (Vec<Listed>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for name in State::names() {
        let st = match State::read(&name) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let running = st.init.alive();
        out.push(Listed {
            name: st.name.clone(),
            status: if running { "running" } else { "dead" },
            init_pid: st.init.pid,
            supervisor_pid: st.supervisor.pid,
            conf: st.conf.display().to_string(),
            uptime_s: running.then(|| log::now_ms().saturating_sub(st.ready_ms) as f64 / 1000.0),
            cables: st.cables.clone(),
            memory_bytes: st.cgroup.as_deref().and_then(cgroup::memory),
            cgroup: st.cgroup.as_ref().map(|c| c.display().to_string()),
            log: st.log.display().to_string(),
        });
    }
    (out, problems)
}
