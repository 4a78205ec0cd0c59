//! The seam between boot ordering and the kernel (as youki does it): every privileged operation
//! the root preparation needs goes through [`Sys`]. [`LinuxSys`] performs them; the unit tests use
//! a recorder to check the order, and the end-to-end tests check the real thing.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result, last, sys};

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
    fn setns(&mut self, fd: RawFd, nstype: i32, what: &str) -> Result<()>;
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

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Other(format!("path {} contains a NUL byte", p.display())))
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Other(format!("`{s}` contains a NUL byte")))
}

/// The real kernel.
#[derive(Debug, Default)]
pub struct LinuxSys;

impl Sys for LinuxSys {
    fn setns(&mut self, fd: RawFd, nstype: i32, what: &str) -> Result<()> {
        // SAFETY: setns on a descriptor we hold; no memory is passed.
        if unsafe { libc::setns(fd, nstype) } != 0 {
            return Err(last(format!("enter {what}")));
        }
        Ok(())
    }

    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> Result<()> {
        let src = source.map(cstring).transpose()?;
        let tgt = cstr(target)?;
        let fst = fstype.map(cstring).transpose()?;
        let dat = data.map(cstring).transpose()?;
        let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: all pointers are NUL-terminated strings alive for the call, or null.
        let r = unsafe {
            libc::mount(
                p(&src),
                tgt.as_ptr(),
                p(&fst),
                flags as libc::c_ulong,
                p(&dat).cast(),
            )
        };
        if r != 0 {
            let hint = if fstype == Some("overlay") {
                "; the kernel log (dmesg) says why"
            } else {
                ""
            };
            return Err(last(format!(
                "mount {} on {}{}{hint}",
                fstype.or(source).unwrap_or("(flags)"),
                target.display(),
                data.map(|d| format!(" ({d})")).unwrap_or_default()
            )));
        }
        Ok(())
    }

    fn detach(&mut self, target: &Path) -> Result<()> {
        let t = cstr(target)?;
        // SAFETY: valid C string.
        if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(last(format!("unmount {}", target.display())));
        }
        Ok(())
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<()> {
        let n = cstr(new_root)?;
        let o = cstr(put_old)?;
        // SAFETY: valid C strings; pivot_root has no libc wrapper.
        if unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) } != 0 {
            return Err(last(format!("pivot_root to {}", new_root.display())));
        }
        Ok(())
    }

    fn chdir(&mut self, dir: &Path) -> Result<()> {
        std::env::set_current_dir(dir).map_err(sys(format!("chdir {}", dir.display())))
    }

    fn sethostname(&mut self, name: &str) -> Result<()> {
        // SAFETY: pointer and length describe `name`.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            return Err(last(format!("set hostname {name}")));
        }
        Ok(())
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
        let p = cstr(path)?;
        // SAFETY: valid C string; makedev is a pure computation.
        let r = unsafe {
            libc::mknod(
                p.as_ptr(),
                libc::S_IFCHR | mode,
                libc::makedev(major, minor),
            )
        };
        if r != 0 {
            return Err(last(format!("mknod {}", path.display())));
        }
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
