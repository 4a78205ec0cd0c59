//! Persistent network namespaces at `/run/netns/NAME`, made the way `ip netns add` makes them (so
//! `ip netns exec NAME ...` works on them), by syscalls instead of a program.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, last, sys};

pub const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn c(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Other(format!("bad path {}", p.display())))
}

fn mount_raw(src: &Path, dst: &Path, flags: libc::c_ulong) -> std::io::Result<()> {
    let s = CString::new(src.as_os_str().as_bytes())?;
    let d = CString::new(dst.as_os_str().as_bytes())?;
    // SAFETY: valid C strings, no data argument.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes /run/netns a shared mount point, as iproute2 does, so that a namespace deleted here is
/// also released in mount namespaces created after it was added.
fn prepare_dir() -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).map_err(sys(format!("create {NETNS_DIR}")))?;
    let shared = (libc::MS_SHARED | libc::MS_REC) as libc::c_ulong;
    if mount_raw(Path::new("none"), dir, shared).is_ok() {
        return Ok(());
    }
    // EINVAL: not a mount point yet. Bind it onto itself, then make it shared.
    mount_raw(dir, dir, (libc::MS_BIND | libc::MS_REC) as libc::c_ulong)
        .map_err(sys(format!("bind {NETNS_DIR} onto itself")))?;
    mount_raw(Path::new("none"), dir, shared).map_err(sys(format!("make {NETNS_DIR} shared")))
}

/// Opens an existing named netns; None if there is none.
pub fn open(name: &str) -> Result<Option<OwnedFd>> {
    match std::fs::File::open(path(name)) {
        Ok(f) => Ok(Some(f.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Sys {
            what: format!("open network namespace {name}"),
            source: e,
        }),
    }
}

/// Creates network namespace NAME and returns a descriptor for it. The calling thread's own
/// network namespace is unchanged afterwards.
pub fn create(name: &str) -> Result<OwnedFd> {
    prepare_dir()?;
    let p = path(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(sys(format!("create {}", p.display())))?;
    let result = (|| {
        let orig = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(sys("open the current network namespace"))?;
        // SAFETY: unshare with a flag constant.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(last("create a network namespace"));
        }
        let bound = mount_raw(
            Path::new("/proc/thread-self/ns/net"),
            &p,
            libc::MS_BIND as libc::c_ulong,
        )
        .map_err(sys(format!("bind network namespace onto {}", p.display())));
        // SAFETY: setns back to the namespace we came from.
        let back = unsafe { libc::setns(orig.as_raw_fd(), libc::CLONE_NEWNET) };
        if back != 0 {
            return Err(last("return to the host network namespace"));
        }
        bound?;
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(sys(format!("open {}", p.display())))
    })();
    if result.is_err() {
        let _ = delete(name);
    }
    result
}

/// Removes the name of network namespace NAME (the namespace itself ends with its last user).
/// A missing name is not an error.
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    let cp = c(&p)?;
    // SAFETY: valid C string. EINVAL (not mounted) and ENOENT are fine: nothing to unmount.
    unsafe { libc::umount2(cp.as_ptr(), libc::MNT_DETACH) };
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Sys {
            what: format!("remove {}", p.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Runs `f` with the calling thread inside netns `fd`, then returns to the original netns.
/// Used to open netlink sockets that stay bound to the subhost's netns.
pub fn within<T>(fd: &OwnedFd, f: impl FnOnce() -> std::io::Result<T>) -> Result<T> {
    let orig = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(sys("open the current network namespace"))?;
    // SAFETY: setns on descriptors we hold.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(last("enter the subhost network namespace"));
    }
    let r = f();
    // SAFETY: as above.
    if unsafe { libc::setns(orig.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(last("return to the host network namespace"));
    }
    r.map_err(sys("netlink in the subhost network namespace"))
}
