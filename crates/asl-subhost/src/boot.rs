//! `overlay-boot`: from a configuration file to a running subhost, and the supervisor that stays
//! with it.
//!
//! Order (each step undone if a later one fails, so a failed boot leaves nothing behind):
//! resolve and check the configuration; take NAME's lock; refuse if NAME is running; check the
//! cables' bridges exist and their host ends do not; run a custom INIT on the host; then, in the
//! supervisor: cgroup, netns (lo up), cables by netlink, and `clone3` of PID 1 into new mount, PID,
//! IPC and UTS namespaces, directly into the cgroup. PID 1 joins the netns, builds the root
//! ([`crate::root`]), pivots into it and runs the init phase ([`crate::init`]); its `READY` on a
//! pipe makes the supervisor write the state file and report success. The supervisor then waits
//! for PID 1 to exit and removes cables, netns, cgroup and state.
//!
//! Without `--foreground` the supervisor is a detached child and the command returns when the
//! subhost is ready (exit 0) or has failed (non-zero, with the reason). With it, the command is
//! the supervisor (for systemd: `Type=notify`, SIGTERM stops the subhost gracefully).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, WaitOptions};

use crate::cable::{CableNames, CableSpec};
use crate::config::{Config, Hardening, Hook, RawConfig};
use crate::error::{Error, Result, errno, last, sys};
use crate::init::InitSpec;
use crate::netlink::Netlink;
use crate::process::{Pidfd, ProcId, exit_now};
use crate::root::RootPlan;
use crate::state::{Lock, State};
use crate::sys::Sys;
use crate::{cgroup, log, netns};

/// How to boot.
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    /// Stay attached as the supervisor until the subhost stops.
    pub foreground: bool,
}

/// A subhost that has become ready.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Booted {
    pub name: String,
    /// Host PID of the subhost's PID 1.
    pub init_pid: i32,
    pub log: PathBuf,
    /// From the start of the command to the READY of PID 1.
    pub boot_ms: f64,
}

/// What was created for a subhost, and its removal. Dropping it without `done` removes it all,
/// which is how every failed boot cleans up.
#[derive(Debug)]
pub struct Teardown {
    pub name: String,
    pub links: Vec<String>,
    pub netns_created: bool,
    pub cgroup: Option<PathBuf>,
    done: bool,
}

impl Teardown {
    pub fn new(name: &str) -> Teardown {
        Teardown {
            name: name.to_string(),
            links: Vec::new(),
            netns_created: false,
            cgroup: None,
            done: false,
        }
    }

    pub fn from_state(s: &State) -> Teardown {
        Teardown {
            name: s.name.clone(),
            links: s.links.clone(),
            netns_created: s.netns_created,
            cgroup: s.cgroup.clone(),
            done: false,
        }
    }

    /// Removes links (newest first), the netns name, the cgroup. Returns what could not be
    /// removed; missing objects are fine (a netns takes its veths with it).
    pub fn run(&mut self) -> Vec<String> {
        self.run_with(&mut crate::sys::LinuxSys)
    }

    /// [`Teardown::run`] through `sys`: the reverse of the order boot creates things in
    /// (cgroup, netns, then links), going on past whatever cannot be removed.
    fn run_with(&mut self, sys: &mut dyn Sys) -> Vec<String> {
        self.done = true;
        let mut problems = Vec::new();
        if !self.links.is_empty() {
            let newest_first: Vec<&str> = self.links.iter().rev().map(String::as_str).collect();
            problems.extend(sys.delete_links(&newest_first));
        }
        if self.netns_created
            && let Err(e) = sys.delete_netns(&self.name)
        {
            problems.push(e.to_string());
        }
        if let Some(cg) = &self.cgroup
            && let Err(e) = sys.remove_cgroup(cg)
        {
            problems.push(e.to_string());
        }
        problems
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if !self.done {
            for p in self.run() {
                log::line(&self.name, &format!("cleanup: {p}"));
            }
        }
    }
}

/// Runs a custom INIT on the host (cwd BASE, CONFIG set); its output is the init-phase script.
fn run_init_command(cfg: &Config, argv: &[String]) -> Result<String> {
    let out = Command::new(crate::config::program_path(&cfg.base, &argv[0]))
        .args(&argv[1..])
        .current_dir(&cfg.base)
        .env("CONFIG", &cfg.conf)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(sys(format!("run INIT {}", argv[0])))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "INIT `{}` failed ({})",
            argv.join(" "),
            out.status
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Host-side preconditions of the cables, checked before anything is created.
fn check_cables(cfg: &Config, nl: &mut Netlink) -> Result<()> {
    for c in &cfg.cables {
        let names = c.names(&cfg.name);
        if let Some(br) = c.bridge()
            && nl.index(br).map_err(sys("netlink lookup"))?.is_none()
        {
            return Err(Error::Other(format!(
                "{}: CABLES: bridge {br} does not exist on the host; create it first \
                 (ip link add {br} type bridge && ip link set {br} up)",
                cfg.conf.display()
            )));
        }
        if nl
            .index(&names.host)
            .map_err(sys("netlink lookup"))?
            .is_some()
        {
            return Err(Error::Other(format!(
                "{}: CABLES: interface {} already exists on the host; remove it \
                 (ip link del {}) or choose another NAME",
                cfg.conf.display(),
                names.host,
                names.host
            )));
        }
    }
    Ok(())
}

fn vlan_error(what: &str, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        " — this kernel has no VLAN (802.1q) support; load it (modprobe 8021q) or drop the \
         `.N` cable"
    } else {
        ""
    };
    Error::Other(format!("create VLAN {what}: {e}{hint}"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(errno("create a pipe"))
}

/// Reads one line (or up to EOF, when the writer died without writing one).
fn read_line(fd: OwnedFd) -> String {
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while let Ok(1) = f.read(&mut b) {
        if b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The namespaces PID 1 is born in: its own mounts, PIDs, IPC and hostname. The network
/// namespace is not among them: it is the named one the cables were made in, joined later.
const PID1_NAMESPACES: u64 =
    (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;

/// Forks PID 1 of the subhost into [`PID1_NAMESPACES`], straight into the cgroup (directory
/// and open descriptor) when given. Some kernels refuse CLONE_INTO_CGROUP on a hybrid layout;
/// then PID 1 joins the cgroup after the fork. Returns 0 in the child, the child's PID and
/// pidfd in the parent.
fn clone_pid1(
    sys: &mut dyn Sys,
    name: &str,
    cgroup: Option<(&Path, BorrowedFd<'_>)>,
) -> Result<(i32, Option<Pidfd>)> {
    match sys.clone3(PID1_NAMESPACES, cgroup.map(|(_, fd)| fd)) {
        Err(e) if cgroup.is_some() && e.raw_os_error() != Some(libc::ENOMEM) => {
            let (pid, fd) = sys
                .clone3(PID1_NAMESPACES, None)
                .map_err(crate::error::sys("clone the subhost's PID 1"))?;
            if pid != 0
                && let Some((dir, _)) = cgroup
            {
                let _ = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
            }
            log::line(
                name,
                &format!("CLONE_INTO_CGROUP refused ({e}); joined after clone"),
            );
            Ok((pid, fd))
        }
        r => r.map_err(crate::error::sys("clone the subhost's PID 1")),
    }
}

/// What PID 1 does with privilege before it becomes init, in this order: join the netns, build
/// and enter the root ([`crate::root::prepare`]), then narrow its own privileges
/// ([`crate::caps::harden`]). Hardening comes last because building the root needs the very
/// capabilities DROP_CAPS may remove.
fn enter_subhost(
    sys: &mut dyn Sys,
    plan: &RootPlan,
    hardening: &Hardening,
    netns: BorrowedFd<'_>,
) -> Result<()> {
    crate::root::prepare(sys, plan, Some(netns))?;
    crate::caps::harden(sys, hardening)
}

fn block_signals(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: the set is a local that sigemptyset initialises before sigaddset and sigprocmask
    // read it; blocking signals of this single thread has no memory effects. rustix offers no
    // sigprocmask outside its runtime module.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Tells systemd (Type=notify) that the service is ready, when started by it.
fn sd_notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(abs) => SocketAddr::from_abstract_name(abs.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    if let (Ok(addr), Ok(sock)) = (addr, UnixDatagram::unbound()) {
        let msg = format!("READY=1\nMAINPID={}\n", std::process::id());
        let _ = sock.send_to_addr(msg.as_bytes(), &addr);
    }
}

/// Everything the supervisor needs, prepared by the command before it forks.
struct Plan {
    cfg: Config,
    lock: Lock,
    init_script: Option<String>,
    logf: std::fs::File,
    started: Instant,
}

/// Boots the subhost described by `raw`. Detached: returns once it is ready, after calling
/// `on_ready`. Foreground: calls `on_ready` when ready and returns when the subhost has stopped.
pub fn boot(raw: &RawConfig, opts: &BootOptions, on_ready: &mut dyn FnMut(&Booted)) -> Result<()> {
    let started = Instant::now();
    let cfg = raw.resolve()?;
    cfg.check()?;
    let lock = Lock::take(&cfg.name, false)?;
    if let Some(st) = State::read(&cfg.name)? {
        if st.init.alive() {
            return Err(Error::AlreadyRunning {
                name: cfg.name.clone(),
                pid: st.init.pid,
            });
        }
        // The subhost died without its supervisor cleaning up (or the supervisor is finishing
        // right now): wait for it, then remove what is left before booting again.
        if let Some(sup) = st.supervisor.open() {
            sup.wait(Duration::from_secs(10));
        }
        for p in Teardown::from_state(&st).run() {
            log::line(&cfg.name, &format!("cleanup of the previous run: {p}"));
        }
        State::remove(&cfg.name)?;
    }
    let mut nl = Netlink::open().map_err(sys("open a netlink socket"))?;
    check_cables(&cfg, &mut nl)?;
    drop(nl);
    let init_script = match &cfg.init {
        Hook::Command(argv) => Some(run_init_command(&cfg, argv)?),
        _ => None,
    };
    let logf = log::open(&cfg.log).map_err(sys(format!("open LOG {}", cfg.log.display())))?;
    let plan = Plan {
        cfg,
        lock,
        init_script,
        logf,
        started,
    };
    if let Ok(f) = plan.logf.try_clone() {
        log::tee(f);
    }
    if opts.foreground {
        return supervise(plan, true, &mut |b| {
            sd_notify_ready();
            on_ready(b)
        });
    }
    // Detached: this process boots the subhost itself (PID 1 is its child, so readiness takes
    // one hand-over, not three) and leaves a watcher behind that cleans up when PID 1 ends.
    log::echo(false);
    supervise(plan, false, on_ready)
}

/// The detached watcher: own session, stdio on LOG; waits for PID 1 through its pidfd (it is
/// not our child) and forwards SIGTERM/SIGINT to it as a graceful stop; then cleans up.
fn watch_detached(state: &State, pidfd: &Pidfd, sigs: &libc::sigset_t, log: BorrowedFd<'_>) -> i32 {
    let _ = rustix::process::setsid();
    stdio_on_log(log);
    let _ = std::env::set_current_dir("/");
    let name = &state.name;
    // SAFETY: signalfd only reads the set, which block_signals initialised; the signals are
    // blocked already. rustix has no signalfd.
    let sfd = unsafe { libc::signalfd(-1, sigs, libc::SFD_CLOEXEC) };
    // SAFETY: a descriptor signalfd has just returned belongs to no one else.
    let sfd = (sfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(sfd) });
    loop {
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::IN)];
        fds.extend(sfd.as_ref().map(|s| PollFd::new(s, PollFlags::IN)));
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
        if !fds[0].revents().is_empty() {
            break;
        }
        if let Some(sfd) = &sfd
            && !fds[1].revents().is_empty()
        {
            // One signalfd_siginfo record; its first field is the signal number.
            let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
            let got = rustix::io::read(sfd, &mut info).unwrap_or(0);
            let sig = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
            if got > 0 && (sig == libc::SIGTERM || sig == libc::SIGINT) {
                log::line(name, "stop requested by a signal to the supervisor");
                let _ = pidfd.signal(libc::SIGTERM);
            }
        }
    }
    log::line(name, "PID 1 ended");
    finish(state);
    0
}

/// Removes what a subhost whose PID 1 has ended leaves behind.
fn finish(state: &State) {
    let name = &state.name;
    for p in Teardown::from_state(state).run() {
        log::line(name, &format!("cleanup: {p}"));
    }
    if let Err(e) = State::remove(name) {
        log::line(name, &format!("cleanup: {e}"));
    }
    // The lock file goes too, unless overlay-stop holds it (then it removes it).
    if let Ok(lock) = Lock::take(name, false) {
        lock.remove();
    }
    log::line(name, "stopped");
}

/// Puts standard input on /dev/null and standard output and error on LOG, for a process that
/// leaves the command's terminal (the detached watcher, PID 1). Standard error is LOG from then
/// on, so log lines are written there once, not teed as well.
fn stdio_on_log(log: BorrowedFd<'_>) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    let _ = rustix::stdio::dup2_stdout(log);
    let _ = rustix::stdio::dup2_stderr(log);
    log::untee();
    log::echo(true);
}

/// The body of PID 1 after clone: build the root, then be init. Never returns.
fn subhost_pid1(
    plan: &RootPlan,
    spec: &InitSpec,
    netns: OwnedFd,
    ready: OwnedFd,
    log: BorrowedFd<'_>,
) -> ! {
    stdio_on_log(log);
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sys = crate::sys::LinuxSys;
        if let Err(e) = enter_subhost(&mut sys, plan, &spec.hardening, netns.as_fd()) {
            let mut f = std::fs::File::from(ready);
            let _ = writeln!(f, "FAIL {e}");
            return 1;
        }
        // The netns descriptor is not needed once joined.
        drop(netns);
        crate::init::run(spec, ready)
    }))
    .unwrap_or(1);
    exit_now(code)
}

fn exit_text(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    }
}

fn wait_child(pid: i32) -> i32 {
    loop {
        match rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return status.as_raw(),
            Err(Errno::INTR) => {}
            Ok(None) | Err(_) => return 0,
        }
    }
}

/// Brings lo up in the subhost's netns and lays every cable of CABLES, recording each host-side
/// link in `td` as soon as it exists so that a failure further on removes it again.
fn lay_cables(
    cfg: &Config,
    td: &mut Teardown,
    host: &mut Netlink,
    inner: &mut Netlink,
    nsfd: &OwnedFd,
) -> Result<Vec<CableNames>> {
    let name = &cfg.name;
    let lo = inner
        .need_index("lo")
        .map_err(sys("find lo in the subhost"))?;
    inner
        .set_up(lo)
        .map_err(sys("bring lo up in the subhost"))?;
    let mut cable_names = Vec::new();
    for c in &cfg.cables {
        let n = c.names(name);
        match c {
            CableSpec::Veth { mac, .. } => {
                host.add_veth(&n.host, &n.inside, mac.as_ref(), nsfd.as_raw_fd())
                    .map_err(sys(format!(
                        "create veth cable {} <-> {}",
                        n.host, n.inside
                    )))?;
                td.links.push(n.host.clone());
            }
            CableSpec::Vlan { parent, id, .. } => {
                let p = CableSpec::Veth {
                    index: *parent,
                    bridge: None,
                    mac: None,
                }
                .names(name);
                let hp = host
                    .need_index(&p.host)
                    .map_err(sys("find the VLAN's cable"))?;
                host.add_vlan(&n.host, hp, *id)
                    .map_err(|e| vlan_error(&n.host, e))?;
                td.links.push(n.host.clone());
                let ip = inner
                    .need_index(&p.inside)
                    .map_err(sys("find the VLAN's cable in the subhost"))?;
                inner
                    .add_vlan(&n.inside, ip, *id)
                    .map_err(|e| vlan_error(&format!("{} in the subhost", n.inside), e))?;
            }
        }
        let idx = host.need_index(&n.host).map_err(sys("find the new link"))?;
        if let Some(br) = c.bridge() {
            let b = host
                .need_index(br)
                .map_err(sys(format!("find bridge {br}")))?;
            host.set_master(idx, b)
                .map_err(sys(format!("attach {} to bridge {br}", n.host)))?;
        }
        host.set_up(idx)
            .map_err(sys(format!("bring {} up", n.host)))?;
        log::line(name, &format!("cable {} <-> {}", n.host, n.inside));
        cable_names.push(n);
    }
    Ok(cable_names)
}

/// Waits for PID 1's `READY` on the pipe; a `FAIL reason`, or PID 1 ending without a word, is
/// the boot's error.
fn await_ready(ready_r: OwnedFd, pid: i32, name: &str) -> Result<()> {
    let reply = read_line(ready_r);
    let line = reply.lines().next().unwrap_or("").to_string();
    if line != "READY" {
        let status = wait_child(pid);
        let reason = match line.strip_prefix("FAIL ") {
            Some(r) => r.to_string(),
            None => format!("PID 1 ended during boot ({})", exit_text(status)),
        };
        log::line(name, &format!("boot failed: {reason}"));
        return Err(Error::Other(reason));
    }
    Ok(())
}

/// The foreground supervisor's wait for PID 1 (its child); a SIGTERM/SIGINT to the supervisor
/// becomes a graceful stop of the subhost. Returns PID 1's wait status.
fn wait_pid1(pid: i32, pidfd: &Pidfd, sigs: &libc::sigset_t, name: &str) -> i32 {
    loop {
        if let Ok(Some((_, status))) =
            rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::NOHANG)
        {
            break status.as_raw();
        }
        // SAFETY: the set was initialised by block_signals, and with a null siginfo pointer the
        // kernel writes nothing back; only the signal number is needed. rustix has no
        // sigwaitinfo outside its runtime module.
        let sig = unsafe { libc::sigwaitinfo(sigs, std::ptr::null_mut()) };
        if sig == libc::SIGTERM || sig == libc::SIGINT {
            log::line(name, "stop requested by a signal to the supervisor");
            let _ = pidfd.signal(libc::SIGTERM);
        }
    }
}

/// Boots the subhost in this process. Foreground: then waits for PID 1 (our child) and cleans
/// up. Detached: forks the watcher and returns once the subhost is ready.
fn supervise(plan: Plan, foreground: bool, on_ready: &mut dyn FnMut(&Booted)) -> Result<()> {
    let Plan {
        cfg,
        lock,
        init_script,
        logf,
        started,
    } = plan;
    let name = cfg.name.clone();
    log::line(&name, &format!("booting from {}", cfg.conf.display()));
    for (k, v) in cfg.resolved.iter().filter(|(_, v)| !v.is_empty()) {
        log::line(&name, &format!("{k}={v}"));
    }
    let mut td = Teardown::new(&name);
    td.cgroup = cgroup::create(&name, &cfg.limits)?;
    let nsfd = match netns::open(&name)? {
        Some(fd) => {
            log::line(&name, "using the existing network namespace");
            fd
        }
        None => {
            let fd = netns::create(&mut crate::sys::LinuxSys, &name)?;
            td.netns_created = true;
            fd
        }
    };
    let mut host = Netlink::open().map_err(sys("open a netlink socket"))?;
    let mut inner = netns::within(&nsfd, Netlink::open)?;
    let cable_names = lay_cables(&cfg, &mut td, &mut host, &mut inner, &nsfd)?;

    let root_plan = RootPlan::from_config(&cfg);
    let spec = InitSpec {
        name: name.clone(),
        start: cfg.start.clone(),
        init_script,
        service_timeout: cfg.service_timeout,
        hardening: cfg.hardening.clone(),
        conf: cfg.conf.display().to_string(),
    };
    let cgfd = match &td.cgroup {
        Some(dir) => Some(
            std::fs::File::open(dir)
                .map(OwnedFd::from)
                .map_err(sys(format!("open cgroup {}", dir.display())))?,
        ),
        None => None,
    };
    let (ready_r, ready_w) = pipe()?;
    let sigs = block_signals(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
    let cgroup = td.cgroup.as_deref().zip(cgfd.as_ref().map(|f| f.as_fd()));
    let (pid, pidfd) = clone_pid1(&mut crate::sys::LinuxSys, &name, cgroup)?;
    if pid == 0 {
        // The supervisor's descriptors (lock, pipe, sockets, cgroup) must not be kept alive by
        // the subhost.
        drop((ready_r, lock, host, inner, cgfd));
        subhost_pid1(&root_plan, &spec, nsfd, ready_w, logf.as_fd());
    }
    drop(ready_w);
    drop(cgfd);
    drop(inner);
    let Some(pidfd) = pidfd else {
        return Err(Error::Other("clone3 returned no pidfd".into()));
    };
    await_ready(ready_r, pid, &name)?;
    let init = ProcId::of(pid).ok_or_else(|| Error::Other("PID 1 vanished after READY".into()))?;
    let mut state = State {
        format: crate::state::FORMAT,
        name: name.clone(),
        conf: cfg.conf.clone(),
        base: cfg.base.clone(),
        live: cfg.live.clone(),
        log: cfg.log.clone(),
        supervisor: ProcId::of(std::process::id() as i32)
            .ok_or_else(|| Error::Other("cannot read our own start time".into()))?,
        init,
        netns: netns::path(&name),
        netns_created: td.netns_created,
        links: td.links.clone(),
        cables: cable_names,
        cgroup: td.cgroup.clone(),
        ready_ms: log::now_ms(),
        start: cfg.start.clone(),
        service_timeout_s: cfg.service_timeout.as_secs(),
        hardening: cfg.hardening.clone(),
    };
    if !foreground {
        // SAFETY: this process is single-threaded (the crate's contract), so the child may run
        // any code; it only runs the watcher and exits. rustix offers fork only to runtimes.
        let watcher = unsafe { libc::fork() };
        if watcher < 0 {
            let e = last("fork the supervisor");
            let _ = pidfd.signal(libc::SIGKILL);
            wait_child(pid);
            return Err(e);
        }
        if watcher == 0 {
            // The lock belongs to the boot command, which releases it when it exits.
            drop(lock);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                watch_detached(&state, &pidfd, &sigs, logf.as_fd())
            }))
            .unwrap_or(1);
            exit_now(code);
        }
        if let Some(w) = ProcId::of(watcher) {
            state.supervisor = w;
        }
    }
    // From here on the state file describes what to remove; the supervisor removes it.
    td.done = true;
    if let Err(e) = state.write() {
        td.done = false;
        let _ = pidfd.signal(libc::SIGKILL);
        return Err(e);
    }
    let booted = Booted {
        name: name.clone(),
        init_pid: pid,
        log: cfg.log.clone(),
        boot_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    log::line(
        &name,
        &format!("ready in {:.1} ms, PID 1 is host pid {pid}", booted.boot_ms),
    );
    if !foreground {
        on_ready(&booted);
        return Ok(());
    }
    drop(lock);
    on_ready(&booted);

    let status = wait_pid1(pid, &pidfd, &sigs, &name);
    log::line(&name, &format!("PID 1 ended ({})", exit_text(status)));
    finish(&state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::config::RootKind;
    use crate::root::tests::plan;
    use crate::sys::recorder::Recorder;

    fn hardening() -> Hardening {
        Hardening {
            drop_caps: vec![16, 17],
            no_new_privs: true,
            readonly_sys: false,
        }
    }

    #[test]
    fn pid1_gets_new_mount_pid_ipc_and_uts_namespaces_but_joins_the_named_netns() {
        for ns in [
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWIPC,
        ] {
            assert_ne!(PID1_NAMESPACES & ns as u64, 0, "{ns:#x}");
        }
        assert_eq!(PID1_NAMESPACES & libc::CLONE_NEWNET as u64, 0);
        let mut r = Recorder::default();
        let (pid, _) = clone_pid1(&mut r, "web", None).unwrap();
        assert_eq!(pid, 4242);
        assert_eq!(r.calls, [format!("clone3 {PID1_NAMESPACES:#x}")]);
    }

    #[test]
    fn the_hostname_is_set_in_pid1s_new_uts_namespace_and_capabilities_drop_last() {
        let mut r = Recorder::default();
        clone_pid1(&mut r, "web", None).unwrap();
        let netns = std::fs::File::open("/dev/null").unwrap();
        let p = plan(RootKind::Overlay);
        enter_subhost(&mut r, &p, &hardening(), netns.as_fd()).unwrap();
        r.assert_order(&[
            "clone3",
            "setns network namespace web",
            "mount - - / 0x44000",
            "mount overlay",
            "mount devpts",
            "mount - /srv/data /s/live/data",
            "hostname web",
            "pivot_root . .",
            "mount proc",
            "drop caps [16, 17]",
            "no_new_privs",
        ]);
        assert_eq!(r.calls.last().unwrap(), "no_new_privs");
    }

    #[test]
    fn a_failing_root_step_ends_pid1_before_it_drops_anything() {
        let mut r = Recorder::failing_on("pivot_root");
        let netns = std::fs::File::open("/dev/null").unwrap();
        let p = plan(RootKind::Overlay);
        assert!(enter_subhost(&mut r, &p, &hardening(), netns.as_fd()).is_err());
        assert_eq!(r.calls.last().unwrap(), "pivot_root . .");
        assert!(!r.has("drop caps") && !r.has("no_new_privs"));
    }

    #[test]
    fn a_failed_capability_drop_fails_the_boot_naming_it() {
        let mut r = Recorder::failing_on("drop caps");
        let netns = std::fs::File::open("/dev/null").unwrap();
        let p = plan(RootKind::Overlay);
        let e = enter_subhost(&mut r, &p, &hardening(), netns.as_fd()).unwrap_err();
        assert!(e.to_string().starts_with("cannot drop capabilities"), "{e}");
        assert!(!r.has("no_new_privs"));
    }

    #[test]
    fn teardown_removes_in_reverse_order_of_creation_and_goes_on_past_a_failure() {
        let mut td = Teardown::new("web");
        td.cgroup = Some("/cg/asl-subhost/web".into());
        td.netns_created = true;
        td.links = vec!["web0".into(), "web0.7".into(), "web2".into()];
        let mut r = Recorder::failing_on("delete link web0.7");
        let problems = td.run_with(&mut r);
        assert_eq!(
            r.calls,
            [
                "delete link web2",
                "delete link web0.7",
                "delete link web0",
                "delete netns web",
                "remove cgroup /cg/asl-subhost/web",
            ]
        );
        assert_eq!(problems, ["delete link web0.7: injected"]);
    }

    #[test]
    fn teardown_leaves_a_netns_it_did_not_create() {
        let mut td = Teardown::new("web");
        td.links = vec!["web0".into()];
        let mut r = Recorder::default();
        assert!(td.run_with(&mut r).is_empty());
        assert_eq!(r.calls, ["delete link web0"]);
    }

    #[test]
    fn a_refused_clone_into_the_cgroup_is_retried_and_pid1_joins_it_after() {
        let dir = tempfile::tempdir().unwrap();
        let cg = std::fs::File::open(dir.path()).unwrap();
        let mut r = Recorder::failing_on("clone3 0x2c020000 into-cgroup");
        let (pid, _) = clone_pid1(&mut r, "web", Some((dir.path(), cg.as_fd()))).unwrap();
        assert_eq!(pid, 4242);
        assert_eq!(
            r.calls,
            [
                format!("clone3 {PID1_NAMESPACES:#x} into-cgroup"),
                format!("clone3 {PID1_NAMESPACES:#x}"),
            ]
        );
        let procs = std::fs::read_to_string(dir.path().join("cgroup.procs")).unwrap();
        assert_eq!(procs, "4242");
    }
}
