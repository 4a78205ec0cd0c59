//! Test support (hidden from the docs; used by this crate's tests and by the CLI tests of the
//! `asl` binary): run a test body as root inside throw-away mount namespaces, so nothing it
//! mounts can reach the host and everything it mounts disappears with the namespace — also
//! when the test fails half-way.
//!
//! Layout: the test process (on the host) creates an empty directory `DIR` and re-executes
//! itself, filtered to the one test, in a child process with a private mount namespace: the
//! *machine*. The machine mounts a tmpfs on `DIR/disk` (its "disk": persists for the whole
//! test) and a tmpfs on `DIR/disk/root/run` (its "/run"). A test that needs reboots calls
//! [`Machine::boot`]: each boot is another child in a fresh namespace copied from the
//! machine's, with a fresh "/run" tmpfs; when it exits, every mount it made is gone, which is
//! what a reboot does to mounts. The host removes `DIR` at the end.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountPropagationFlags, mount_change};

use crate::StateDirs;

/// Which process of a test we are in.
pub const ROLE_ENV: &str = "ASL_USROVERLAY_TEST_ROLE";
/// The test's scratch directory (host side).
pub const DIR_ENV: &str = "ASL_USROVERLAY_TEST_DIR";

/// A test's machine: a private mount namespace with a tmpfs "disk".
pub struct Machine {
    dir: PathBuf,
    test: String,
    boot: Option<u32>,
}

/// Removes the host-side scratch directory even when the test panics.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `unshare(CLONE_NEWNS)` plus making every mount private, so that nothing mounted or
/// unmounted afterwards propagates back to the namespace we came from. Only raw system calls:
/// safe to run between fork and exec.
fn private_namespace() -> std::io::Result<()> {
    // SAFETY: only unsharing FILES can leave another thread with descriptors that are not
    // in its table; NEWNS keeps the descriptor table shared.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    Ok(())
}

/// Re-runs the current test binary, filtered to `test`, in a private mount namespace with
/// `role`; prints its output (libtest shows it when the test fails) and panics unless it
/// succeeded.
fn run_child(test: &str, dir: &Path, role: &str) {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir);
    // SAFETY: between fork and exec only async-signal-safe work is sound; the closure makes
    // two raw system calls and neither allocates nor takes a lock.
    unsafe {
        cmd.pre_exec(private_namespace);
    }
    let out = cmd.output().expect("re-running the test binary");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{role} process of {test} failed: {}",
        out.status
    );
    let marker = dir.join(format!("ran-{}", role.replace(':', "-")));
    assert!(
        marker.exists(),
        "{role} process of {test} ran no test body (is the test name '{test}' right?)"
    );
}

fn mount_tmpfs(target: &Path) {
    fs::create_dir_all(target).expect("creating a tmpfs mount point");
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap_or_else(|e| panic!("mounting a tmpfs on {}: {e}", target.display()));
}

/// Runs `body` as the machine of test `test` (the test's function name). On the host this
/// spawns the machine process and waits for it; inside the machine (or one of its boots) it
/// runs `body`.
pub fn machine(test: &str, body: impl FnOnce(&Machine)) {
    if let Some(n) = std::thread::current().name()
        && n != "main"
    {
        assert!(
            n == test || n.ends_with(&format!("::{test}")),
            "machine() called with test name '{test}' from test '{n}'"
        );
    }
    match std::env::var(ROLE_ENV).ok().as_deref() {
        None => {
            assert!(
                rustix::process::geteuid().is_root(),
                "these tests create mounts and must run as root"
            );
            let dir = std::env::temp_dir().join(format!(
                "asl-usroverlay-{}-{}",
                std::process::id(),
                test
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("creating the scratch directory");
            let guard = ScratchDir(dir);
            run_child(test, &guard.0, "machine");
        }
        Some("machine") => {
            let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("DIR_ENV set"));
            let m = Machine {
                dir,
                test: test.to_string(),
                boot: None,
            };
            mount_tmpfs(&m.disk());
            mount_tmpfs(&m.state_root().join("run"));
            fs::write(m.dir.join("ran-machine"), b"").expect("writing the marker");
            body(&m);
        }
        Some(role) => {
            let n: u32 = role
                .strip_prefix("boot:")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unknown test role {role}"));
            let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("DIR_ENV set"));
            body(&Machine {
                dir,
                test: test.to_string(),
                boot: Some(n),
            });
        }
    }
}

impl Machine {
    /// The machine's disk (a tmpfs that lives as long as the test).
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk")
    }

    /// The prefix for the state directories (`ROOT/run` is a per-boot tmpfs, `ROOT/var/lib`
    /// is on the disk).
    pub fn state_root(&self) -> PathBuf {
        self.disk().join("root")
    }

    /// The state directories below [`Machine::state_root`].
    pub fn dirs(&self) -> StateDirs {
        StateDirs::under(&self.state_root())
    }

    /// Boot number `n` of the machine: runs `f` in a fresh mount namespace copied from the
    /// machine's, with an empty "/run". Boots must be called in order from the machine body.
    pub fn boot(&self, n: u32, f: impl FnOnce()) {
        match self.boot {
            None => run_child(&self.test, &self.dir, &format!("boot:{n}")),
            Some(k) if k == n => {
                mount_tmpfs(&self.state_root().join("run"));
                fs::write(self.dir.join(format!("ran-boot-{n}")), b"").expect("marker");
                f();
            }
            Some(_) => {}
        }
    }
}

/// The mount table of this thread's namespace, verbatim (for "nothing was mounted" checks:
/// any mount or unmount changes it).
pub fn mount_table() -> String {
    let mut s = String::new();
    fs::File::open("/proc/thread-self/mountinfo")
        .and_then(|mut f| f.read_to_string(&mut s))
        .expect("reading mountinfo");
    s
}

/// Every entry below `dir` with type, mode, owner, size and (for files) content, sorted; or
/// `["(absent)"]` if `dir` does not exist (for "nothing was written" checks).
pub fn tree_snapshot(dir: &Path) -> Vec<String> {
    if fs::symlink_metadata(dir).is_err() {
        return vec!["(absent)".into()];
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut names: Vec<OsString> = fs::read_dir(&d)
            .expect("listing")
            .map(|e| e.expect("listing").file_name())
            .collect();
        names.sort();
        for name in names {
            let p = d.join(&name);
            let md = fs::symlink_metadata(&p).expect("stat");
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            let kind = if md.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if md.file_type().is_char_device() {
                format!("chr {}", md.rdev())
            } else if md.is_symlink() {
                format!("link {:?}", fs::read_link(&p).ok())
            } else if md.is_file() {
                format!("file {:?}", fs::read(&p).ok())
            } else {
                "other".into()
            };
            out.push(format!(
                "{rel} {kind} mode={:o} uid={} gid={}",
                md.mode(),
                md.uid(),
                md.gid()
            ));
        }
    }
    out.sort();
    out
}

/// Runs `f` on a thread whose real, effective and saved uid/gid are `id` (setresuid on that
/// thread only: the raw system call affects one thread), i.e. as an unprivileged user.
pub fn as_user<T: Send>(id: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let gid = rustix::process::Gid::from_raw(id);
            // These only change this thread's credentials.
            rustix::thread::set_thread_groups(&[]).expect("dropping groups");
            rustix::thread::set_thread_res_gid(gid, gid, gid).expect("setresgid");
            let uid = rustix::process::Uid::from_raw(id);
            rustix::thread::set_thread_res_uid(uid, uid, uid).expect("setresuid");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
