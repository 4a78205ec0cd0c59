//! The seam between boot ordering and the kernel (as youki does it): every privileged operation
//! of a boot whose order matters — creating the network namespace, cloning PID 1 into its
//! namespaces, preparing and entering the root, narrowing PID 1's privileges, and the teardown
//! of what boot created — goes through [`Sys`]. [`LinuxSys`] performs
//! them; the unit tests use a recorder (`sys::recorder`) to check their order, and the end-to-end
//! tests check the real thing.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::error::{Error, Result, errno, sys};
use crate::process::Pidfd;

/// Mount flags used here (values from `linux/mount.h`).
pub mod flags {
    pub const RDONLY: u64 = libc::MS_RDONLY;
    pub const NOSUID: u64 = libc::MS_NOSUID;
    pub const NODEV: u64 = libc::MS_NODEV;
    pub const NOEXEC: u64 = libc::MS_NOEXEC;
    pub const REMOUNT: u64 = libc::MS_REMOUNT;
    pub const BIND: u64 = libc::MS_BIND;
    pub const REC: u64 = libc::MS_REC;
    pub const PRIVATE: u64 = libc::MS_PRIVATE;
    pub const SHARED: u64 = libc::MS_SHARED;
}

/// The privileged operations of a subhost boot.
pub trait Sys {
    /// Moves the calling thread into new namespaces of the kinds in `flags`. The descriptor
    /// table (`UnshareFlags::FILES`) is refused: other threads could be left holding
    /// descriptors of a table they no longer share.
    fn unshare(&mut self, flags: UnshareFlags, what: &str) -> Result<()>;
    /// Forks into new namespaces `flags` (`CLONE_NEW*`), born in `cgroup` when given, as
    /// [`crate::process::clone3`] does. Returns 0 in the child.
    fn clone3(
        &mut self,
        flags: u64,
        cgroup: Option<BorrowedFd<'_>>,
    ) -> io::Result<(i32, Option<Pidfd>)>;
    /// Removes capabilities from the calling process's bounding set (see
    /// [`crate::caps::drop_bounding`]).
    fn drop_bounding_caps(&mut self, caps: &[u32]) -> io::Result<()>;
    /// Sets PR_SET_NO_NEW_PRIVS: nothing executed later gains privileges through set-user-ID
    /// bits or file capabilities.
    fn set_no_new_privs(&mut self) -> io::Result<()>;
    /// Deletes host links `names` in the order given; a missing link is fine. Returns what
    /// could not be deleted.
    fn delete_links(&mut self, names: &[&str]) -> Vec<String>;
    /// Removes the name of network namespace `name` (see [`crate::netns::delete`]).
    fn delete_netns(&mut self, name: &str) -> Result<()>;
    /// Removes a subhost's cgroup, ending what is left in it (see [`crate::cgroup::remove`]).
    fn remove_cgroup(&mut self, dir: &Path) -> Result<()>;
    fn setns(&mut self, fd: BorrowedFd<'_>, nstype: LinkNameSpaceType, what: &str) -> Result<()>;
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> Result<()>;
    /// Detaches (lazily unmounts) `target`.
    fn detach(&mut self, target: &Path) -> Result<()>;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<()>;
    fn chdir(&mut self, dir: &Path) -> Result<()>;
    fn sethostname(&mut self, name: &str) -> Result<()>;
    /// Creates a directory and its parents with `mode` (exact, umask ignored) if missing.
    fn mkdir_p(&mut self, dir: &Path, mode: u32) -> Result<()>;
    /// Creates an empty regular file if nothing exists at `path` (a mount point for a file).
    fn touch(&mut self, path: &Path) -> Result<()>;
    fn mknod_char(&mut self, path: &Path, mode: u32, major: u32, minor: u32) -> Result<()>;
    fn symlink(&mut self, target: &str, link: &Path) -> Result<()>;
    /// Writes a file unless it exists; returns whether it wrote.
    fn write_new(&mut self, path: &Path, contents: &str) -> Result<bool>;
    /// Some(true) for a directory, Some(false) for anything else, None if absent.
    fn is_dir(&self, path: &Path) -> Option<bool>;
    /// Runs a hook program and waits for it; non-zero exit is an error.
    fn run_hook(&mut self, argv: &[String], conf: &Path, cwd: &Path) -> Result<()>;
    /// Removes a directory tree; a missing one is fine.
    fn remove_dir_all(&mut self, path: &Path) -> Result<()>;
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Other(format!("`{s}` contains a NUL byte")))
}

/// The real kernel.
#[derive(Debug, Default)]
pub struct LinuxSys;

impl Sys for LinuxSys {
    fn unshare(&mut self, flags: UnshareFlags, what: &str) -> Result<()> {
        if flags.contains(UnshareFlags::FILES) {
            return Err(Error::Other(format!(
                "{what}: unsharing the descriptor table is not supported"
            )));
        }
        // SAFETY: the descriptor table is not unshared (checked above), which is the only way
        // unshare can leave a thread with descriptors of another table.
        unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(errno(what))
    }

    fn clone3(
        &mut self,
        flags: u64,
        cgroup: Option<BorrowedFd<'_>>,
    ) -> io::Result<(i32, Option<Pidfd>)> {
        crate::process::clone3(flags, cgroup.map(|c| c.as_raw_fd()))
    }

    fn drop_bounding_caps(&mut self, caps: &[u32]) -> io::Result<()> {
        crate::caps::drop_bounding(caps)
    }

    fn set_no_new_privs(&mut self) -> io::Result<()> {
        rustix::thread::set_no_new_privs(true).map_err(io::Error::from)
    }

    fn delete_links(&mut self, names: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        match crate::netlink::Netlink::open() {
            Ok(mut nl) => {
                for l in names {
                    match nl.delete(l) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => problems.push(format!("delete link {l}: {e}")),
                    }
                }
            }
            Err(e) => problems.push(format!("netlink: {e}")),
        }
        problems
    }

    fn delete_netns(&mut self, name: &str) -> Result<()> {
        crate::netns::delete(name)
    }

    fn remove_cgroup(&mut self, dir: &Path) -> Result<()> {
        crate::cgroup::remove(dir)
    }

    fn setns(&mut self, fd: BorrowedFd<'_>, nstype: LinkNameSpaceType, what: &str) -> Result<()> {
        rustix::thread::move_into_link_name_space(fd, Some(nstype))
            .map_err(errno(format!("enter {what}")))
    }

    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> Result<()> {
        let dat = data.map(cstring).transpose()?;
        // Only propagation changes, binds and remounts come without a source or a type, and the
        // kernel ignores both for them; an empty string stands in for the missing one.
        let r = rustix::mount::mount(
            source.unwrap_or(""),
            target,
            fstype.unwrap_or(""),
            MountFlags::from_bits_retain(flags as u32),
            dat.as_deref(),
        );
        r.map_err(|e| {
            let hint = if fstype == Some("overlay") {
                "; the kernel log (dmesg) says why"
            } else {
                ""
            };
            errno(format!(
                "mount {} on {}{}{hint}",
                fstype.or(source).unwrap_or("(flags)"),
                target.display(),
                data.map(|d| format!(" ({d})")).unwrap_or_default()
            ))(e)
        })
    }

    fn detach(&mut self, target: &Path) -> Result<()> {
        rustix::mount::unmount(target, UnmountFlags::DETACH)
            .map_err(errno(format!("unmount {}", target.display())))
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<()> {
        rustix::process::pivot_root(new_root, put_old)
            .map_err(errno(format!("pivot_root to {}", new_root.display())))
    }

    fn chdir(&mut self, dir: &Path) -> Result<()> {
        std::env::set_current_dir(dir).map_err(sys(format!("chdir {}", dir.display())))
    }

    fn sethostname(&mut self, name: &str) -> Result<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(errno(format!("set hostname {name}")))
    }

    fn mkdir_p(&mut self, dir: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(sys(format!("create directory {}", dir.display())))?;
        // The umask may have masked bits such as the sticky bit of /dev/shm.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(sys(format!("chmod {}", dir.display())))
    }

    fn touch(&mut self, path: &Path) -> Result<()> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(());
        }
        std::fs::File::create(path)
            .map(drop)
            .map_err(sys(format!("create {}", path.display())))
    }

    fn mknod_char(&mut self, path: &Path, mode: u32, major: u32, minor: u32) -> Result<()> {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::CharacterDevice,
            Mode::from_raw_mode(mode),
            rustix::fs::makedev(major, minor),
        )
        .map_err(errno(format!("mknod {}", path.display())))?;
        // mknod honours the umask; the device modes must be exact.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(sys(format!("chmod {}", path.display())))
    }

    fn symlink(&mut self, target: &str, link: &Path) -> Result<()> {
        std::os::unix::fs::symlink(target, link)
            .map_err(sys(format!("symlink {} -> {target}", link.display())))
    }

    fn write_new(&mut self, path: &Path, contents: &str) -> Result<bool> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(false);
        }
        if let Some(dir) = path.parent() {
            self.mkdir_p(dir, 0o755)?;
        }
        std::fs::write(path, contents).map_err(sys(format!("write {}", path.display())))?;
        Ok(true)
    }

    fn is_dir(&self, path: &Path) -> Option<bool> {
        std::fs::metadata(path).ok().map(|m| m.is_dir())
    }

    fn remove_dir_all(&mut self, path: &Path) -> Result<()> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Sys {
                what: format!("remove {}", path.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn run_hook(&mut self, argv: &[String], conf: &Path, cwd: &Path) -> Result<()> {
        let Some((prog, args)) = argv.split_first() else {
            return Ok(());
        };
        let status = std::process::Command::new(crate::config::program_path(cwd, prog))
            .args(args)
            .env("CONFIG", conf)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(sys(format!("run {prog}")))?;
        if !status.success() {
            return Err(Error::Other(format!(
                "hook `{}` failed ({status})",
                argv.join(" ")
            )));
        }
        Ok(())
    }
}

/// A [`Sys`] that performs nothing and records every call as one line, to check the order of
/// boot steps. A call whose line starts with `fail_on` fails (after being recorded).
#[cfg(test)]
pub(crate) mod recorder {
    use std::io;
    use std::os::fd::BorrowedFd;
    use std::path::Path;

    use rustix::thread::{LinkNameSpaceType, UnshareFlags};

    use super::Sys;
    use crate::error::{Error, Result};
    use crate::process::Pidfd;

    #[derive(Default)]
    pub(crate) struct Recorder {
        pub calls: Vec<String>,
        pub fail_on: Option<&'static str>,
    }

    impl Recorder {
        pub fn failing_on(prefix: &'static str) -> Recorder {
            Recorder {
                fail_on: Some(prefix),
                ..Default::default()
            }
        }

        fn push(&mut self, s: String) -> Result<()> {
            let fail = self.fail_on.is_some_and(|f| s.starts_with(f));
            self.calls.push(s);
            if fail {
                return Err(Error::Other("injected".into()));
            }
            Ok(())
        }

        fn push_io(&mut self, s: String) -> io::Result<()> {
            self.push(s).map_err(|_| io::Error::other("injected"))
        }

        /// Position of the first call starting with `prefix`; panics if there is none.
        pub fn index(&self, prefix: &str) -> usize {
            self.calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no call {prefix} in {:#?}", self.calls))
        }

        pub fn has(&self, prefix: &str) -> bool {
            self.calls.iter().any(|c| c.starts_with(prefix))
        }

        /// Asserts that calls starting with these prefixes happened in this order.
        pub fn assert_order(&self, prefixes: &[&str]) {
            let idx: Vec<usize> = prefixes.iter().map(|p| self.index(p)).collect();
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "{:#?}", self.calls);
        }
    }

    impl Sys for Recorder {
        fn unshare(&mut self, flags: UnshareFlags, what: &str) -> Result<()> {
            self.push(format!("unshare {:#x} {what}", flags.bits()))
        }
        fn clone3(
            &mut self,
            flags: u64,
            cgroup: Option<BorrowedFd<'_>>,
        ) -> io::Result<(i32, Option<Pidfd>)> {
            let into = if cgroup.is_some() { " into-cgroup" } else { "" };
            self.push_io(format!("clone3 {flags:#x}{into}"))?;
            Ok((4242, None))
        }
        fn drop_bounding_caps(&mut self, caps: &[u32]) -> io::Result<()> {
            self.push_io(format!("drop caps {caps:?}"))
        }
        fn set_no_new_privs(&mut self) -> io::Result<()> {
            self.push_io("no_new_privs".into())
        }
        fn delete_links(&mut self, names: &[&str]) -> Vec<String> {
            let mut problems = Vec::new();
            for l in names {
                if let Err(e) = self.push(format!("delete link {l}")) {
                    problems.push(format!("delete link {l}: {e}"));
                }
            }
            problems
        }
        fn delete_netns(&mut self, name: &str) -> Result<()> {
            self.push(format!("delete netns {name}"))
        }
        fn remove_cgroup(&mut self, dir: &Path) -> Result<()> {
            self.push(format!("remove cgroup {}", dir.display()))
        }
        fn setns(&mut self, _: BorrowedFd<'_>, _: LinkNameSpaceType, what: &str) -> Result<()> {
            self.push(format!("setns {what}"))
        }
        fn mount(
            &mut self,
            s: Option<&str>,
            t: &Path,
            fs: Option<&str>,
            f: u64,
            d: Option<&str>,
        ) -> Result<()> {
            self.push(format!(
                "mount {} {} {} {f:#x} {}",
                fs.unwrap_or("-"),
                s.unwrap_or("-"),
                t.display(),
                d.unwrap_or("-")
            ))
        }
        fn detach(&mut self, t: &Path) -> Result<()> {
            self.push(format!("detach {}", t.display()))
        }
        fn pivot_root(&mut self, n: &Path, o: &Path) -> Result<()> {
            self.push(format!("pivot_root {} {}", n.display(), o.display()))
        }
        fn chdir(&mut self, d: &Path) -> Result<()> {
            self.push(format!("chdir {}", d.display()))
        }
        fn sethostname(&mut self, n: &str) -> Result<()> {
            self.push(format!("hostname {n}"))
        }
        fn mkdir_p(&mut self, d: &Path, m: u32) -> Result<()> {
            self.push(format!("mkdir {} {m:o}", d.display()))
        }
        fn touch(&mut self, p: &Path) -> Result<()> {
            self.push(format!("touch {}", p.display()))
        }
        fn mknod_char(&mut self, p: &Path, _: u32, a: u32, b: u32) -> Result<()> {
            self.push(format!("mknod {} {a}:{b}", p.display()))
        }
        fn symlink(&mut self, t: &str, l: &Path) -> Result<()> {
            self.push(format!("symlink {} {t}", l.display()))
        }
        fn write_new(&mut self, p: &Path, _: &str) -> Result<bool> {
            self.push(format!("write {}", p.display())).map(|_| true)
        }
        fn is_dir(&self, _: &Path) -> Option<bool> {
            Some(true)
        }
        fn run_hook(&mut self, argv: &[String], _: &Path, _: &Path) -> Result<()> {
            self.push(format!("hook {}", argv.join(" ")))
        }
        fn remove_dir_all(&mut self, p: &Path) -> Result<()> {
            self.push(format!("rm -r {}", p.display()))
        }
    }
}
