//! The ptrace + seccomp tracer (unprivileged).
//!
//! The child stops itself after `PTRACE_TRACEME`; the parent sets the options (follow
//! fork/vfork/clone, report exec and seccomp stops, kill the tree if the tracer dies) and
//! lets it install a filter that returns `SECCOMP_RET_TRACE` for the file syscalls only.
//! At each seccomp stop the tracer decodes the path arguments (entry), resumes with
//! `PTRACE_SYSCALL` to see the result (exit) and then lets the process run freely again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Access, ProcessRecord, RunOutcome, RunSpec, TraceMode, normalize, split_status};
use crate::child::{self, ChildSetup, Exec};
use crate::error::ProvError;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const OPEN: u64 = 2;
    pub const STAT: u64 = 4;
    pub const LSTAT: u64 = 6;
    pub const ACCESS: u64 = 21;
    pub const EXECVE: u64 = 59;
    pub const RENAME: u64 = 82;
    pub const MKDIR: u64 = 83;
    pub const RMDIR: u64 = 84;
    pub const CREAT: u64 = 85;
    pub const LINK: u64 = 86;
    pub const UNLINK: u64 = 87;
    pub const SYMLINK: u64 = 88;
    pub const READLINK: u64 = 89;
    pub const OPENAT: u64 = 257;
    pub const MKDIRAT: u64 = 258;
    pub const NEWFSTATAT: u64 = 262;
    pub const UNLINKAT: u64 = 263;
    pub const RENAMEAT: u64 = 264;
    pub const LINKAT: u64 = 265;
    pub const SYMLINKAT: u64 = 266;
    pub const READLINKAT: u64 = 267;
    pub const FACCESSAT: u64 = 269;
    pub const RENAMEAT2: u64 = 316;
    pub const EXECVEAT: u64 = 322;
    pub const STATX: u64 = 332;
    pub const OPENAT2: u64 = 437;
    pub const FACCESSAT2: u64 = 439;
    pub const ALL: &[u64] = &[
        OPEN, STAT, LSTAT, ACCESS, EXECVE, RENAME, MKDIR, RMDIR, CREAT, LINK, UNLINK, SYMLINK,
        READLINK, OPENAT, MKDIRAT, NEWFSTATAT, UNLINKAT, RENAMEAT, LINKAT, SYMLINKAT, READLINKAT,
        FACCESSAT, RENAMEAT2, EXECVEAT, STATX, OPENAT2, FACCESSAT2,
    ];
    pub const AUDIT_ARCH: u32 = 0xc000_003e;
}

/// Whether this build can trace with ptrace.
pub fn supported() -> bool {
    cfg!(target_arch = "x86_64")
}

/// The seccomp program: trace the file syscalls of the native ABI, allow everything else.
pub fn seccomp_filter() -> Vec<libc::sock_filter> {
    #[cfg(target_arch = "x86_64")]
    {
        const LD_W_ABS: u16 = 0x20;
        const JEQ_K: u16 = 0x15;
        const RET_K: u16 = 0x06;
        const RET_TRACE: u32 = 0x7ff0_0000;
        const RET_ALLOW: u32 = 0x7fff_0000;
        let n = nr::ALL.len();
        let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        let mut f = vec![
            ins(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
            ins(JEQ_K, 0, (n + 1) as u8, nr::AUDIT_ARCH),
            ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ];
        for (i, s) in nr::ALL.iter().enumerate() {
            f.push(ins(JEQ_K, (n - i) as u8, 0, *s as u32));
        }
        f.push(ins(RET_K, 0, 0, RET_ALLOW));
        f.push(ins(RET_K, 0, 0, RET_TRACE));
        f
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// A syscall seen at entry, completed at exit.
struct Pending {
    nr: u64,
    path: Option<String>,
    path2: Option<String>,
    flags: u64,
    existed: bool,
}

struct Tracee {
    mem: Option<File>,
    pending: Option<Pending>,
}

impl Tracee {
    /// How to resume it: to its syscall-exit stop while a decoded call awaits its result,
    /// else freely.
    fn resume_request(&self) -> libc::c_uint {
        if self.pending.is_some() {
            libc::PTRACE_SYSCALL
        } else {
            libc::PTRACE_CONT
        }
    }
}

fn proc_link(pid: i32, what: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/{what}")).ok()
}

/// Reads a NUL-terminated string from the tracee's memory.
fn read_cstr(mem: &File, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < 8192 {
        // Never read across a page boundary: the next page may be unmapped.
        let room = 4096 - (at % 4096) as usize;
        let mut buf = vec![0u8; room];
        let n = mem.read_at(&mut buf, at).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(z) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..z]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    Some(out)
}

fn base_dir(pid: i32, dirfd: i64) -> PathBuf {
    let l = if dirfd as i32 == libc::AT_FDCWD {
        proc_link(pid, "cwd")
    } else {
        proc_link(pid, &format!("fd/{}", dirfd as i32))
    };
    l.unwrap_or_else(|| PathBuf::from("/"))
}

fn path_arg(t: &Tracee, pid: i32, dirfd: i64, addr: u64) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let raw = read_cstr(t.mem.as_ref()?, addr)?;
    if raw.is_empty() {
        return None; // AT_EMPTY_PATH: an operation on the descriptor itself.
    }
    let p = Path::new(std::ffi::OsStr::from_bytes(&raw));
    let base = base_dir(pid, dirfd);
    Some(normalize(&base, p).to_string_lossy().into_owned())
}

fn getregs(pid: i32) -> Option<libc::user_regs_struct> {
    // SAFETY: user_regs_struct is plain integers, for which all-zero is a valid value.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes one user_regs_struct at the address given, `regs`, live
    // and of that type; for a pid that is not our stopped tracee it fails and writes nothing.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs as *mut _) };
    (r == 0).then_some(regs)
}

fn resume(pid: i32, req: libc::c_uint, sig: i32) {
    // SAFETY: the resume requests take no pointer (the data argument is a signal number); for
    // a pid that is not our stopped tracee they fail (it is gone, which the wait reports).
    unsafe {
        libc::ptrace(req, pid, 0, sig as libc::c_long);
    }
}

#[cfg(target_arch = "x86_64")]
fn decode_entry(t: &Tracee, pid: i32, regs: &libc::user_regs_struct) -> Option<Pending> {
    use nr::*;
    let a = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
    let cwd = libc::AT_FDCWD as i64;
    let nr = regs.orig_rax;
    let (path, path2, flags) = match nr {
        OPEN => (path_arg(t, pid, cwd, a[0]), None, a[1]),
        CREAT => (
            path_arg(t, pid, cwd, a[0]),
            None,
            (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64,
        ),
        OPENAT => (path_arg(t, pid, a[0] as i64, a[1]), None, a[2]),
        OPENAT2 => {
            // struct open_how starts with the u64 flags.
            let mut b = [0u8; 8];
            let flags = t
                .mem
                .as_ref()
                .and_then(|m| m.read_exact_at(&mut b, a[2]).ok())
                .map(|_| u64::from_ne_bytes(b))
                .unwrap_or(0);
            (path_arg(t, pid, a[0] as i64, a[1]), None, flags)
        }
        EXECVE | STAT | LSTAT | ACCESS | READLINK | UNLINK | RMDIR | MKDIR => {
            (path_arg(t, pid, cwd, a[0]), None, 0)
        }
        EXECVEAT | NEWFSTATAT | STATX | FACCESSAT | FACCESSAT2 | READLINKAT | UNLINKAT
        | MKDIRAT => (path_arg(t, pid, a[0] as i64, a[1]), None, 0),
        RENAME => (path_arg(t, pid, cwd, a[0]), path_arg(t, pid, cwd, a[1]), 0),
        RENAMEAT | RENAMEAT2 => (
            path_arg(t, pid, a[0] as i64, a[1]),
            path_arg(t, pid, a[2] as i64, a[3]),
            0,
        ),
        LINK => (None, path_arg(t, pid, cwd, a[1]), 0),
        LINKAT => (None, path_arg(t, pid, a[2] as i64, a[3]), 0),
        SYMLINK => (None, path_arg(t, pid, cwd, a[1]), 0),
        SYMLINKAT => (None, path_arg(t, pid, a[1] as i64, a[2]), 0),
        _ => return None,
    };
    let is_create =
        matches!(nr, OPEN | OPENAT | OPENAT2 | CREAT) && flags & libc::O_CREAT as u64 != 0;
    let existed = is_create
        && path
            .as_deref()
            .is_some_and(|p| std::fs::symlink_metadata(p).is_ok());
    Some(Pending {
        nr,
        path,
        path2,
        flags,
        existed,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn decode_entry(_: &Tracee, _: i32, _: &libc::user_regs_struct) -> Option<Pending> {
    None
}

#[cfg(target_arch = "x86_64")]
fn classify(p: &Pending, ret: i64, pid: i32, out: &mut Vec<Access>) {
    use nr::*;
    let absent = ret == -(libc::ENOENT as i64) || ret == -(libc::ENOTDIR as i64);
    let ok = ret >= 0;
    let mut push = |path: &Option<String>, op: &'static str, to: Option<String>| {
        if let Some(path) = path {
            out.push(Access {
                path: path.clone(),
                op: op.into(),
                pid,
                to,
            });
        }
    };
    match p.nr {
        OPEN | OPENAT | OPENAT2 | CREAT => {
            if absent && p.flags & libc::O_CREAT as u64 == 0 {
                push(&p.path, "probe_absent", None);
            } else if ok {
                let acc = p.flags & libc::O_ACCMODE as u64;
                let op = if p.flags & libc::O_CREAT as u64 != 0 && !p.existed {
                    "create"
                } else if acc == libc::O_WRONLY as u64 || acc == libc::O_RDWR as u64 {
                    "write"
                } else if p.flags & libc::O_DIRECTORY as u64 != 0
                    || p.path.as_deref().is_some_and(|x| Path::new(x).is_dir())
                {
                    "open_dir"
                } else {
                    "read"
                };
                push(&p.path, op, None);
            }
        }
        EXECVE | EXECVEAT => {
            if ok {
                push(&p.path, "exec", None)
            } else if absent {
                push(&p.path, "probe_absent", None)
            }
        }
        STAT | LSTAT | NEWFSTATAT | STATX | ACCESS | FACCESSAT | FACCESSAT2 | READLINK
        | READLINKAT => {
            if ok {
                push(&p.path, "stat", None)
            } else if absent {
                push(&p.path, "probe_absent", None)
            }
        }
        UNLINK | UNLINKAT | RMDIR if ok => push(&p.path, "delete", None),
        MKDIR | MKDIRAT if ok => push(&p.path, "create", None),
        RENAME | RENAMEAT | RENAMEAT2 if ok => push(&p.path, "rename", p.path2.clone()),
        LINK | LINKAT | SYMLINK | SYMLINKAT if ok => push(&p.path2, "create", None),
        _ => {}
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(_: &Pending, _: i64, _: i32, _: &mut Vec<Access>) {}

fn read_cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `exec` traced: the child stops after `PTRACE_TRACEME`, installs the seccomp filter
/// once resumed, and is traced with its whole tree until every process has exited.
pub(crate) fn run(exec: &Exec<'_>, spec: &RunSpec<'_>) -> Result<RunOutcome, ProvError> {
    let filter = seccomp_filter();
    let (pid, err_r) = child::start(exec, &ChildSetup::Ptrace { filter })?;
    observe(pid, err_r, spec)
}

/// Traces the stopped child `pid` until the whole tree has exited.
fn observe(pid: i32, err_r: OwnedFd, spec: &RunSpec<'_>) -> Result<RunOutcome, ProvError> {
    let opts = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_TRACESECCOMP
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_EXITKILL;
    // Wait for the child's self-inflicted SIGSTOP.
    let mut status = 0;
    // SAFETY: `status` is a live int for waitpid to write; it takes no other pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL | libc::__WNOTHREAD) };
    if r != pid || !libc::WIFSTOPPED(status) {
        let _ = child::check_exec(&err_r, pid, spec.program);
        return Err(ProvError::Trace(format!(
            "the child did not stop for tracing (wait status {status:#x})"
        )));
    }
    // SAFETY: PTRACE_SETOPTIONS takes the options as a value, no pointer; it fails for a pid
    // that is not our stopped tracee.
    if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts as libc::c_long) } != 0 {
        let e = std::io::Error::last_os_error();
        child::kill_and_reap(pid);
        return Err(ProvError::Os("PTRACE_SETOPTIONS".into(), e));
    }
    resume(pid, libc::PTRACE_CONT, 0);

    let mut tracees: HashMap<i32, Tracee> = HashMap::new();
    let mut procs: Vec<ProcessRecord> = vec![ProcessRecord {
        pid,
        ppid: std::process::id() as i32,
        exe: None,
        argv: Vec::new(),
        exit_code: None,
        signal: None,
    }];
    let mut index: HashMap<i32, usize> = HashMap::from([(pid, 0)]);
    let mut accesses = Vec::new();
    let mut gaps = Vec::new();
    let mut top_status = None;
    let mut expect_stop: HashSet<i32> = HashSet::new();
    let mut early_stop: HashSet<i32> = HashSet::new();
    // SAFETY: rusage is plain integers, for which all-zero is a valid value.
    let mut top_rusage: libc::rusage = unsafe { std::mem::zeroed() };
    tracees.insert(
        pid,
        Tracee {
            mem: None,
            pending: None,
        },
    );

    loop {
        let mut status = 0;
        // SAFETY: rusage is plain integers, for which all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `ru` are live locals of the types wait4 writes.
        let p = unsafe { libc::wait4(-1, &mut status, libc::__WALL | libc::__WNOTHREAD, &mut ru) };
        if p < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => break,
                _ => return Err(ProvError::Os("waiting for traced processes".into(), e)),
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            let (code, sig) = split_status(status);
            if let Some(i) = index.get(&p) {
                procs[*i].exit_code = code;
                procs[*i].signal = sig;
            }
            tracees.remove(&p);
            if p == pid {
                top_status = Some(status);
                top_rusage = ru;
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        let t = tracees.entry(p).or_insert_with(|| Tracee {
            mem: None,
            pending: None,
        });
        if t.mem.is_none() {
            t.mem = File::open(format!("/proc/{p}/mem")).ok();
        }
        if sig == (libc::SIGTRAP | 0x80) {
            // Syscall-exit stop of a call decoded at its seccomp stop.
            if let Some(pending) = t.pending.take() {
                let ret = getregs(p).map(|r| r.rax as i64).unwrap_or(-1);
                classify(&pending, ret, p, &mut accesses);
            }
            resume(p, libc::PTRACE_CONT, 0);
            continue;
        }
        if sig == libc::SIGTRAP && event != 0 {
            match event {
                libc::PTRACE_EVENT_SECCOMP => {
                    let pending = getregs(p).and_then(|r| decode_entry(t, p, &r));
                    if pending.is_some() {
                        t.pending = pending;
                        resume(p, libc::PTRACE_SYSCALL, 0);
                    } else {
                        resume(p, libc::PTRACE_CONT, 0);
                    }
                }
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                    let mut msg: libc::c_ulong = 0;
                    // SAFETY: PTRACE_GETEVENTMSG writes one unsigned long at the address given,
                    // `msg`; it fails for a pid not stopped at an event and writes nothing.
                    unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, p, 0, &mut msg as *mut _) };
                    let child = msg as i32;
                    let parent_exe = index.get(&p).and_then(|i| procs[*i].exe.clone());
                    let parent_argv = index
                        .get(&p)
                        .map(|i| procs[*i].argv.clone())
                        .unwrap_or_default();
                    if !early_stop.remove(&child) {
                        expect_stop.insert(child);
                    }
                    if let std::collections::hash_map::Entry::Vacant(v) = index.entry(child) {
                        v.insert(procs.len());
                        procs.push(ProcessRecord {
                            pid: child,
                            ppid: p,
                            exe: parent_exe,
                            argv: parent_argv,
                            exit_code: None,
                            signal: None,
                        });
                    } else if let Some(i) = index.get(&child) {
                        procs[*i].ppid = p;
                    }
                    resume(p, t.resume_request(), 0);
                }
                libc::PTRACE_EVENT_EXEC => {
                    // The old /proc/PID/mem belongs to the replaced image.
                    t.mem = File::open(format!("/proc/{p}/mem")).ok();
                    let exe = proc_link(p, "exe").map(|e| e.to_string_lossy().into_owned());
                    let argv = read_cmdline(p);
                    if let Some(i) = index.get(&p) {
                        procs[*i].exe = exe;
                        procs[*i].argv = argv;
                    }
                    resume(p, t.resume_request(), 0);
                }
                _ => {
                    resume(p, t.resume_request(), 0);
                }
            }
            continue;
        }
        // A new child's first stop, or a signal for the tracee: deliver real signals.
        let first = !index.contains_key(&p);
        if first {
            index.insert(p, procs.len());
            procs.push(ProcessRecord {
                pid: p,
                ppid: 0,
                exe: None,
                argv: Vec::new(),
                exit_code: None,
                signal: None,
            });
        }
        // New tracees start with a SIGSTOP of ptrace's own making: swallow exactly that one.
        let deliver = if sig == libc::SIGSTOP && (first || expect_stop.remove(&p)) {
            if first {
                early_stop.insert(p);
            }
            0
        } else {
            sig
        };
        resume(p, t.resume_request(), deliver);
    }
    child::check_exec(&err_r, pid, spec.program)?;
    let Some(status) = top_status else {
        gaps.push("the top process's exit status was not observed".into());
        return Err(ProvError::Trace(
            "the traced command vanished without an exit status".into(),
        ));
    };
    Ok(RunOutcome {
        status,
        rusage: top_rusage,
        mode: TraceMode::Ptrace,
        processes: procs,
        accesses,
        gaps,
    })
}
