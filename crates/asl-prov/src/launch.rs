//! Starting the wrapped command: fork, per-mechanism setup in the child, exec, wait.
//!
//! The child is forked by hand (not through `std::process::Command`) because both tracing
//! mechanisms need the child to stop *between* fork and exec until the parent has set up
//! the observation: ptrace needs `PTRACE_TRACEME` + a stop before the seccomp filter is
//! installed, fanotify needs the child's private mount namespace to exist before the parent
//! marks its mounts. `Command::spawn` blocks until exec, so it cannot be used for that.
//! Everything the child does between fork and exec is async-signal-safe (raw syscalls on
//! memory prepared before the fork).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::ProvError;
use crate::trace::{self, Access, ProcessRecord, TraceMode};

/// What to run.
pub struct RunSpec<'a> {
    /// The resolved program (absolute path).
    pub program: &'a Path,
    /// argv, argv[0] included.
    pub argv: &'a [String],
    pub cwd: &'a Path,
    /// Where the command's stdout and stderr go.
    pub stdout: &'a std::fs::File,
    pub stderr: &'a std::fs::File,
    /// How a fanotify observer keeps out of the command's way.
    pub observer: crate::trace::ObserverPolicy,
}

/// What came out of a run.
pub struct RunOutcome {
    /// Raw wait status of the top process.
    pub status: i32,
    /// Resource usage of the top process and every descendant it waited for.
    pub rusage: libc::rusage,
    /// The mechanism that actually observed the run.
    pub mode: TraceMode,
    pub processes: Vec<ProcessRecord>,
    pub accesses: Vec<Access>,
    /// Things the mechanism could not see in this run (queue overflow, exited processes ...).
    pub gaps: Vec<String>,
}

/// What the child does between fork and exec.
pub(crate) enum ChildSetup {
    None,
    /// Unshare the mount namespace, report ready on the first fd, wait for a byte on the
    /// second.
    Fanotify {
        ready: i32,
        go: i32,
    },
    /// PTRACE_TRACEME, stop, then install this seccomp filter.
    Ptrace {
        filter: Vec<libc::sock_filter>,
    },
}

/// Looks `name` up like execvp does: a name with a slash is taken as is (relative to `cwd`),
/// otherwise the first executable regular file in `$PATH`.
pub fn resolve_program(name: &str, cwd: &Path) -> Result<PathBuf, ProvError> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.is_empty() {
        return Err(ProvError::Usage("the command is empty".into()));
    }
    if name.contains('/') {
        let p = cwd.join(name);
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(ProvError::CommandNotFound(name.to_string()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = cwd.join(dir).join(name);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(ProvError::CommandNotFound(name.to_string()))
}

fn cstr(b: &[u8], what: &str) -> Result<CString, ProvError> {
    CString::new(b).map_err(|_| ProvError::Usage(format!("{what} contains a NUL byte")))
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), ProvError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ProvError::Os("pipe2".into(), e.into()))
}

/// Runs the command under `mode` (never `Auto`: the caller decides) and waits for it.
pub fn run(spec: &RunSpec<'_>, mode: TraceMode) -> Result<RunOutcome, ProvError> {
    let program = cstr(spec.program.as_os_str().as_bytes(), "the program path")?;
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes(), "an argument"))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            cstr(&b, "an environment variable")
        })
        .collect::<Result<_, _>>()?;
    let cwd = cstr(spec.cwd.as_os_str().as_bytes(), "the working directory")?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // The child reports an exec failure (errno) through this close-on-exec pipe.
    let (err_r, err_w) = pipe()?;

    match mode {
        TraceMode::None | TraceMode::Auto => {
            let pid = fork_child(
                &program,
                &argv_p,
                &env_p,
                &cwd,
                spec,
                &err_w,
                &ChildSetup::None,
            )?;
            drop(err_w);
            check_exec(&err_r, pid, spec.program)?;
            let (status, rusage) = wait_top(pid)?;
            Ok(RunOutcome {
                status,
                rusage,
                mode: TraceMode::None,
                processes: vec![ProcessRecord::top(pid, spec.argv, spec.program, status)],
                accesses: Vec::new(),
                gaps: Vec::new(),
            })
        }
        TraceMode::Fanotify => {
            let (ready_r, ready_w) = pipe()?;
            let (go_r, go_w) = pipe()?;
            let setup = ChildSetup::Fanotify {
                ready: ready_w.as_raw_fd(),
                go: go_r.as_raw_fd(),
            };
            let pid = fork_child(&program, &argv_p, &env_p, &cwd, spec, &err_w, &setup)?;
            drop(err_w);
            drop(ready_w);
            drop(go_r);
            trace::fanotify::observe(pid, ready_r, go_w, err_r, spec)
        }
        TraceMode::Ptrace => {
            let filter = trace::ptrace::seccomp_filter();
            let pid = fork_child(
                &program,
                &argv_p,
                &env_p,
                &cwd,
                spec,
                &err_w,
                &ChildSetup::Ptrace { filter },
            )?;
            drop(err_w);
            trace::ptrace::observe(pid, err_r, spec)
        }
    }
}

/// Reads the exec-failure pipe: EOF means exec succeeded (the pipe closed on exec).
pub(crate) fn check_exec(err_r: &OwnedFd, pid: i32, program: &Path) -> Result<(), ProvError> {
    let mut buf = [0u8; 4];
    if let Ok(4) = rustix::io::read(err_r, &mut buf) {
        let errno = i32::from_ne_bytes(buf);
        let _ = wait_top(pid);
        return Err(ProvError::Exec {
            program: program.to_path_buf(),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    Ok(())
}

/// Waits for the top process (retrying on EINTR) and returns its status and rusage.
pub(crate) fn wait_top(pid: i32) -> Result<(i32, libc::rusage), ProvError> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain integers, for which all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `ru` are live locals of the types wait4 writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return Ok((status, ru));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(ProvError::Os(format!("waiting for process {pid}"), e));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fork_child(
    program: &CString,
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
    cwd: &CString,
    spec: &RunSpec<'_>,
    err_w: &OwnedFd,
    setup: &ChildSetup,
) -> Result<i32, ProvError> {
    let out_fd = spec.stdout.as_raw_fd();
    let err_fd = spec.stderr.as_raw_fd();
    let err_w = err_w.as_raw_fd();
    let (filter_ptr, filter_len) = match setup {
        ChildSetup::Ptrace { filter } => (filter.as_ptr(), filter.len()),
        _ => (std::ptr::null(), 0),
    };
    // SAFETY: in the child only this thread exists, and locks other threads held (malloc's
    // among them) stay held. So the child makes only async-signal-safe calls, on memory
    // prepared before the fork, and then execs or _exits: it never returns into code that
    // could allocate or take a lock.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ProvError::Os(
            "fork".into(),
            std::io::Error::last_os_error(),
        ));
    }
    if pid > 0 {
        return Ok(pid);
    }
    // Child.
    // SAFETY: every call below is async-signal-safe (dup2, chdir, unshare, mount, read,
    // write, ptrace, raise, prctl, execve, _exit). Every pointer passed (cwd, program, argv,
    // env, the seccomp filter, locals) points at memory made before the fork, alive until
    // execve or _exit; argv and env end with a null pointer.
    unsafe {
        let die = |errno: i32| -> ! {
            let b = errno.to_ne_bytes();
            libc::write(err_w, b.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        let errno = || *libc::__errno_location();
        if libc::dup2(out_fd, 1) < 0 || libc::dup2(err_fd, 2) < 0 {
            die(errno());
        }
        if libc::chdir(cwd.as_ptr()) != 0 {
            die(errno());
        }
        match setup {
            ChildSetup::None => {}
            ChildSetup::Fanotify { ready, go } => {
                // A private copy of the mount tree: the parent marks these copies, so only
                // accesses made from this namespace (the command's process tree) are seen.
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    die(errno());
                }
                if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ) != 0
                {
                    die(errno());
                }
                let b = [1u8];
                libc::write(*ready, b.as_ptr().cast(), 1);
                let mut g = [0u8];
                if libc::read(*go, g.as_mut_ptr().cast(), 1) != 1 {
                    // The parent gave up: do not run unobserved.
                    libc::_exit(127);
                }
            }
            ChildSetup::Ptrace { .. } => {
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                    die(errno());
                }
                libc::raise(libc::SIGSTOP);
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    die(errno());
                }
                let prog = libc::sock_fprog {
                    len: filter_len as u16,
                    filter: filter_ptr as *mut libc::sock_filter,
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                    0,
                    0,
                ) != 0
                {
                    die(errno());
                }
            }
        }
        libc::execve(program.as_ptr(), argv.as_ptr(), env.as_ptr());
        die(errno());
    }
}
