//! Persistent network namespaces at `/run/netns/NAME`, made the way `ip netns add` makes them (so
//! `ip netns exec NAME ...` works on them), by syscalls instead of a program.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::mount::{MountPropagationFlags, UnmountFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags, move_into_link_name_space};

use crate::error::{Error, Result, errno, sys};
use crate::sys::{Sys, flags};

pub const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Makes /run/netns a shared mount point, as iproute2 does, so that a namespace deleted here is
/// also released in mount namespaces created after it was added.
fn prepare_dir() -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).map_err(sys(format!("create {NETNS_DIR}")))?;
    let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    if rustix::mount::mount_change(dir, shared).is_ok() {
        return Ok(());
    }
    // EINVAL: not a mount point yet. Bind it onto itself, then make it shared.
    rustix::mount::mount_bind_recursive(dir, dir)
        .map_err(errno(format!("bind {NETNS_DIR} onto itself")))?;
    rustix::mount::mount_change(dir, shared).map_err(errno(format!("make {NETNS_DIR} shared")))
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
pub fn create(kernel: &mut dyn Sys, name: &str) -> Result<OwnedFd> {
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
        bind_new(kernel, orig.as_fd(), &p)?;
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(sys(format!("open {}", p.display())))
    })();
    if result.is_err() {
        let _ = delete(name);
    }
    result
}

/// Moves the calling thread into a new network namespace, binds it onto `path` (which keeps it
/// alive), and returns the thread to network namespace `home` — also when the bind failed.
fn bind_new(sys: &mut dyn Sys, home: BorrowedFd<'_>, path: &Path) -> Result<()> {
    sys.unshare(UnshareFlags::NEWNET, "create a network namespace")?;
    let bound = sys
        .mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None,
            flags::BIND,
            None,
        )
        .map_err(|e| e.concerning(format!("bind network namespace onto {}", path.display())));
    sys.setns(
        home,
        LinkNameSpaceType::Network,
        "the host network namespace",
    )
    .map_err(|e| e.concerning("return to the host network namespace"))?;
    bound
}

/// Removes the name of network namespace NAME (the namespace itself ends with its last user).
/// A missing name is not an error.
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    // EINVAL (not mounted) and ENOENT are fine: nothing to unmount.
    let _ = rustix::mount::unmount(&p, UnmountFlags::DETACH);
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
    move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(errno("enter the subhost network namespace"))?;
    let r = f();
    move_into_link_name_space(orig.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(errno("return to the host network namespace"))?;
    r.map_err(sys("netlink in the subhost network namespace"))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::path::Path;

    use crate::sys::recorder::Recorder;

    fn home() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }

    #[test]
    fn a_new_netns_is_unshared_then_bound_then_left_for_the_host_one() {
        let mut r = Recorder::default();
        let h = home();
        super::bind_new(&mut r, h.as_fd(), Path::new("/run/netns/web")).unwrap();
        assert_eq!(
            r.calls,
            [
                "unshare 0x40000000 create a network namespace",
                "mount - /proc/thread-self/ns/net /run/netns/web 0x1000 -",
                "setns the host network namespace",
            ]
        );
    }

    #[test]
    fn a_failed_bind_still_returns_to_the_host_netns_and_names_the_bind() {
        let mut r = Recorder::failing_on("mount");
        let h = home();
        let e = super::bind_new(&mut r, h.as_fd(), Path::new("/run/netns/web")).unwrap_err();
        assert_eq!(r.calls.last().unwrap(), "setns the host network namespace");
        assert!(e.to_string().contains("injected"), "{e}");
    }
}
