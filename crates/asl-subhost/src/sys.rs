//! The seam between boot ordering and the kernel (as youki does it): every privileged operation
//! the root preparation needs goes through [`Sys`]. [`LinuxSys`] performs them; the unit tests use
//! a recorder to check the order, and the end-to-end tests check the real thing.

use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::thread::LinkNameSpaceType;

use crate::error::{Error, Result, errno, sys};

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

/// The privileged operations of subhost root preparation.
pub trait Sys {
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
