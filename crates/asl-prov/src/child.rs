//! The wrapped command's process: forked by hand with the setup its tracer needs between
//! fork and exec, then exec'd and waited for.
//!
//! The child is forked by hand (not through `std::process::Command`) because both tracing
//! mechanisms need the child to stop *between* fork and exec until the parent has set up
//! the observation: ptrace needs `PTRACE_TRACEME` + a stop before the seccomp filter is
//! installed, fanotify needs the child's private mount namespace to exist before the parent
//! marks its mounts. `Command::spawn` blocks until exec, so it cannot be used for that.
//! Everything the child does between fork and exec is async-signal-safe (raw syscalls on
//! memory prepared before the fork).
//!
//! A leaf: the tracers call into it, and it knows nothing of them.

use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::mount::MountPropagationFlags;
use rustix::thread::UnshareFlags;

use crate::error::ProvError;

/// The command, prepared for the exec: everything the child needs, made before the fork.
pub(crate) struct Exec<'a> {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    stdout: &'a std::fs::File,
    stderr: &'a std::fs::File,
}

impl<'a> Exec<'a> {
    /// `program` with `argv` in `cwd`, this process's environment, and stdout and stderr
    /// going to the files given.
    pub(crate) fn new(
        program: &Path,
        argv: &[String],
        cwd: &Path,
        stdout: &'a std::fs::File,
        stderr: &'a std::fs::File,
    ) -> Result<Exec<'a>, ProvError> {
        Ok(Exec {
            program: cstr(program.as_os_str().as_bytes(), "the program path")?,
            argv: argv
                .iter()
                .map(|a| cstr(a.as_bytes(), "an argument"))
                .collect::<Result<_, _>>()?,
            env: std::env::vars_os()
                .map(|(k, v)| {
                    let mut b = k.as_bytes().to_vec();
                    b.push(b'=');
                    b.extend_from_slice(v.as_bytes());
                    cstr(&b, "an environment variable")
                })
                .collect::<Result<_, _>>()?,
            cwd: cstr(cwd.as_os_str().as_bytes(), "the working directory")?,
            stdout,
            stderr,
        })
    }
}

/// What the child does between fork and exec.
pub(crate) enum ChildSetup<'a> {
    None,
    /// Unshare the mount namespace, report ready on the first fd, wait for a byte on the
    /// second.
    Fanotify {
        ready: BorrowedFd<'a>,
        go: BorrowedFd<'a>,
    },
    /// PTRACE_TRACEME, stop, then install this seccomp filter.
    Ptrace {
        filter: Vec<libc::sock_filter>,
    },
}

fn cstr(b: &[u8], what: &str) -> Result<CString, ProvError> {
    CString::new(b).map_err(|_| ProvError::Usage(format!("{what} contains a NUL byte")))
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), ProvError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ProvError::Os("pipe2".into(), e.into()))
}

/// Forks the child with `setup` and lets it exec; returns its pid and the read end of the
/// close-on-exec pipe on which it reports an exec failure (see [`check_exec`]).
pub(crate) fn start(exec: &Exec<'_>, setup: &ChildSetup<'_>) -> Result<(i32, OwnedFd), ProvError> {
    // The child reports an exec failure (errno) through this close-on-exec pipe.
    let (err_r, err_w) = pipe()?;
    let pid = fork_child(exec, &err_w, setup)?;
    Ok((pid, err_r))
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

/// Kills the child `pid` and reaps it: a run given up on.
pub(crate) fn kill_and_reap(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = wait_top(pid);
}

/// Forks the child, which runs `setup` and then execs `exec`; returns its pid. The child
/// reports a failure before the exec as its errno on `err_w`.
fn fork_child(exec: &Exec<'_>, err_w: &OwnedFd, setup: &ChildSetup<'_>) -> Result<i32, ProvError> {
    let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = exec.env.iter().map(|a| a.as_ptr()).collect();
    env.push(std::ptr::null());
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
    // Child. Only async-signal-safe calls from here on (see above): rustix's are system
    // calls made directly, which neither allocate nor lock.
    let die = |e: rustix::io::Errno| -> ! {
        let _ = rustix::io::write(err_w, &e.raw_os_error().to_ne_bytes());
        exit_child()
    };
    if let Err(e) = rustix::stdio::dup2_stdout(exec.stdout)
        .and_then(|()| rustix::stdio::dup2_stderr(exec.stderr))
        .and_then(|()| rustix::process::chdir(exec.cwd.as_c_str()))
    {
        die(e);
    }
    match setup {
        ChildSetup::None => {}
        ChildSetup::Fanotify { ready, go } => {
            // A private copy of the mount tree: the parent marks these copies, so only
            // accesses made from this namespace (the command's process tree) are seen.
            // SAFETY: unshare is unsafe because it changes what other threads of the process
            // share; this forked child has no other thread.
            if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) } {
                die(e);
            }
            if let Err(e) = rustix::mount::mount_change(
                c"/",
                MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM,
            ) {
                die(e);
            }
            let _ = rustix::io::write(ready, &[1]);
            let mut g = [0u8];
            if !matches!(rustix::io::read(go, &mut g), Ok(1)) {
                // The parent gave up: do not run unobserved.
                exit_child();
            }
        }
        ChildSetup::Ptrace { .. } => {
            // SAFETY: PTRACE_TRACEME takes no pointer (the other arguments are ignored).
            if unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) } != 0 {
                die(last_errno());
            }
            // Stop until the tracer has set its options.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::STOP,
            );
            if let Err(e) = rustix::thread::set_no_new_privs(true) {
                die(e);
            }
            let prog = libc::sock_fprog {
                len: filter_len as u16,
                filter: filter_ptr as *mut libc::sock_filter,
            };
            // SAFETY: `prog` points at the filter, made before the fork and alive until the
            // exec; the kernel copies the program and keeps no pointer to it.
            let r = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                    0,
                    0,
                )
            };
            if r != 0 {
                die(last_errno());
            }
        }
    }
    // SAFETY: the program and every element of `argv` and `env` are NUL-terminated strings
    // made before the fork, and both arrays end with a null pointer; execve only reads them.
    unsafe { libc::execve(exec.program.as_ptr(), argv.as_ptr(), env.as_ptr()) };
    die(last_errno())
}

/// The errno of the libc call that has just failed.
fn last_errno() -> rustix::io::Errno {
    rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
        .unwrap_or(rustix::io::Errno::INVAL)
}

/// Ends the forked child at once: no atexit handler or destructor of the parent's runs in it.
fn exit_child() -> ! {
    // SAFETY: _exit takes a status only and does not return; unlike `exit` it runs nothing of
    // the parent's (atexit handlers, stdio buffers), which is what a forked child needs.
    unsafe { libc::_exit(127) }
}
