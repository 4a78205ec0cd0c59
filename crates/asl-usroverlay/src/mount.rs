//! The privileged calls: overlay and tmpfs mounts through the new mount API
//! (fsopen/fsconfig/fsmount/move_mount), unmounts, and a throw-away private mount namespace
//! for looking at the tree *under* an overlay.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{CWD, Mode as FsMode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_fd, fsconfig_set_string, fsmount, fsopen, mount_change,
    move_mount, unmount,
};

use crate::error::{Error, Result};

/// Opens a directory so that it can be handed to overlayfs as a layer. `O_PATH` descriptors
/// are not accepted by `FSCONFIG_SET_FD`, so this is a real read-only open.
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        FsMode::empty(),
    )
    .map_err(|e| Error::sys("open", path, e))
}

/// Drains the messages the kernel queued on a file-system context ("e overlayfs: ..."), so a
/// failed mount can say *why* rather than only "invalid argument".
fn context_log(fs: BorrowedFd<'_>) -> String {
    let mut msgs = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        msgs.push(
            line.trim_start_matches(['e', 'w', 'i', ' '])
                .trim()
                .to_string(),
        );
    }
    msgs.join("; ")
}

fn mount_error(op: &'static str, path: &Path, errno: Errno, fs: Option<BorrowedFd<'_>>) -> Error {
    let detail = fs.map(context_log).unwrap_or_default();
    let source = if detail.is_empty() {
        io::Error::from(errno)
    } else {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("{} ({detail})", io::Error::from(errno)),
        )
    };
    Error::Io {
        op,
        path: path.into(),
        source,
    }
}

/// How layer directories reach overlayfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerPassing {
    /// `FSCONFIG_SET_FD` (Linux 6.13+), falling back to [`LayerPassing::ProcPath`] when the
    /// kernel refuses descriptors.
    Fd,
    /// The path `/proc/self/fd/N`, which resolves to exactly the opened directory and mount
    /// (not to whatever its old path shows now).
    ProcPath,
}

/// The kinds of overlay layer this module sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Lower,
    Upper,
    Work,
}

impl Layer {
    /// The key for a descriptor: a lower layer by descriptor is only accepted as an appended
    /// layer (`lowerdir+`, 6.8+), the others under their plain names.
    fn fd_key(self) -> &'static str {
        match self {
            Layer::Lower => "lowerdir+",
            Layer::Upper => "upperdir",
            Layer::Work => "workdir",
        }
    }

    /// The key for a path. Plain `lowerdir` is understood by every kernel with overlayfs; it
    /// takes a `:`-separated list, and `/proc/self/fd/N` has no `:` in it. (`lowerdir+` would
    /// be accepted on kernels before 6.5 too, but only by the generic option collector, and
    /// then refused by overlayfs at create time.)
    fn path_key(self) -> &'static str {
        match self {
            Layer::Lower => "lowerdir",
            Layer::Upper => "upperdir",
            Layer::Work => "workdir",
        }
    }
}

fn set_layer(
    fs: BorrowedFd<'_>,
    layer: Layer,
    dir: BorrowedFd<'_>,
    how: LayerPassing,
) -> std::result::Result<(), Errno> {
    match how {
        LayerPassing::ProcPath => {
            let via_proc = format!("/proc/self/fd/{}", dir.as_raw_fd());
            fsconfig_set_string(fs, layer.path_key(), &via_proc)
        }
        // Overlayfs without its own option parser (before 6.5) sits behind the generic one,
        // and `fsconfig` answers descriptors there with EOPNOTSUPP; with its own parser but
        // before 6.13 the answer is EINVAL.
        LayerPassing::Fd => match fsconfig_set_fd(fs, layer.fd_key(), dir) {
            Err(Errno::INVAL | Errno::OPNOTSUPP) => {
                set_layer(fs, layer, dir, LayerPassing::ProcPath)
            }
            other => other,
        },
    }
}

/// The layers of one overlay mount.
pub(crate) struct OverlayLayers<'a> {
    /// The covered tree, opened *before* anything is mounted on it.
    pub lower: BorrowedFd<'a>,
    pub upper: &'a Path,
    pub work: &'a Path,
    pub passing: LayerPassing,
}

/// Builds an overlay (detached, tagged with `source`) and moves it onto `target`.
pub(crate) fn mount_overlay(
    source: &str,
    target: &Path,
    layers: &OverlayLayers<'_>,
    read_only: bool,
) -> Result<()> {
    const OP: &str = "mount the overlay on";
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| mount_error(OP, target, e, None))?;
    let upper = open_dir(layers.upper)?;
    let work = open_dir(layers.work)?;
    let configure = || -> std::result::Result<(), Errno> {
        fsconfig_set_string(fs.as_fd(), "source", source)?;
        set_layer(fs.as_fd(), Layer::Lower, layers.lower, layers.passing)?;
        set_layer(fs.as_fd(), Layer::Upper, upper.as_fd(), layers.passing)?;
        set_layer(fs.as_fd(), Layer::Work, work.as_fd(), layers.passing)?;
        // Fixed features so that `status --diff` can read the upper layer plainly (every
        // changed file is a full copy, every renamed directory a copy) and a hotfix upper
        // is mounted with the same options on every boot whatever the kernel defaults are.
        fsconfig_set_string(fs.as_fd(), "redirect_dir", "off")?;
        fsconfig_set_string(fs.as_fd(), "metacopy", "off")?;
        fsconfig_create(fs.as_fd())
    };
    configure().map_err(|e| mount_error(OP, target, e, Some(fs.as_fd())))?;
    // Read-only is a property of the mount, not of the superblock: a private namespace can
    // still remount it read-write (as `ostree admin unlock --transient` allows).
    let attrs = if read_only {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    attach(fs.as_fd(), OP, target, attrs)
}

/// Mounts a fresh tmpfs (tagged with `source`, root mode 0711) on `target`.
#[cfg(test)]
pub(crate) fn mount_tmpfs(source: &str, target: &Path, size: Option<&str>) -> Result<()> {
    let mnt = detached_tmpfs(source, target, size)?;
    attach_detached(mnt.as_fd(), target)
}

/// A fresh tmpfs (tagged with `source`, root mode 0711, nosuid) that is not attached anywhere
/// yet: it can be filled through its root descriptor (or `/proc/self/fd/N`) and then appear on
/// `target` complete, with [`attach_detached`]. Errors name `target`.
pub(crate) fn detached_tmpfs(source: &str, target: &Path, size: Option<&str>) -> Result<OwnedFd> {
    const OP: &str = "mount the layer tmpfs on";
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| mount_error(OP, target, e, None))?;
    let configure = || -> std::result::Result<(), Errno> {
        fsconfig_set_string(fs.as_fd(), "source", source)?;
        // Searchable but not listable: the record in it must be readable for `status`
        // without root (the upper directory has the covered tree's own mode anyway, and
        // work/ is 0700).
        fsconfig_set_string(fs.as_fd(), "mode", "0711")?;
        if let Some(size) = size {
            fsconfig_set_string(fs.as_fd(), "size", size)?;
        }
        fsconfig_create(fs.as_fd())
    };
    configure().map_err(|e| mount_error(OP, target, e, Some(fs.as_fd())))?;
    fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID,
    )
    .map_err(|e| mount_error(OP, target, e, Some(fs.as_fd())))
}

/// Attaches a mount made by [`detached_tmpfs`] on `target`.
pub(crate) fn attach_detached(mnt: BorrowedFd<'_>, target: &Path) -> Result<()> {
    move_mount(
        mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| mount_error("mount the layer tmpfs on", target, e, None))
}

/// The last steps of a new-API mount: turns the created file system context `fs` into a
/// mount with `attrs` and moves it onto `target`. Errors name `op` and `target`.
fn attach(
    fs: BorrowedFd<'_>,
    op: &'static str,
    target: &Path,
    attrs: MountAttrFlags,
) -> Result<()> {
    let mnt = fsmount(fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| mount_error(op, target, e, Some(fs)))?;
    move_mount(
        mnt.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| mount_error(op, target, e, None))
}

/// How to unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unmount {
    /// Fail with `EBUSY` when files are in use.
    Strict,
    /// Detach now; the kernel frees it when the last user goes (`umount -l`).
    Lazy,
}

/// Unmounts the top mount on `target`. `EBUSY` is returned as-is so callers can name the
/// overlay in their message.
pub(crate) fn unmount_path(target: &Path, how: Unmount) -> std::result::Result<(), Errno> {
    let flags = match how {
        Unmount::Strict => UnmountFlags::NOFOLLOW,
        Unmount::Lazy => UnmountFlags::NOFOLLOW | UnmountFlags::DETACH,
    };
    unmount(target, flags)
}

/// Runs `f` on a helper thread that has its own private copy of the mount table, so that it
/// can unmount things to look underneath without anyone else noticing. The copy (and every
/// change made to it) disappears when the thread ends.
pub(crate) fn in_private_namespace<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            // SAFETY: NEWNS (which implies unsharing the fs struct) does not touch the file
            // descriptor table, so descriptors stay valid for every thread.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
                .map_err(|e| Error::sys("create a private mount namespace for", "/", e))?;
            // Without this an unmount here would propagate to the shared mounts it was
            // copied from — i.e. to the real system.
            mount_change(
                "/",
                MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
            )
            .map_err(|e| Error::sys("make mounts private in the helper namespace for", "/", e))?;
            f()
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::machine;
    use std::fs;

    /// The lower layer is the directory opened before, even when its path shows something
    /// else by the time the overlay is mounted — with both ways of passing layers (the path
    /// fallback is what kernels before 6.13 get).
    fn lower_is_the_opened_directory(how: LayerPassing, test: &str) {
        machine(test, |m| {
            let (real, target) = (m.disk().join("real"), m.disk().join("target"));
            let (upper, work) = (m.disk().join("u"), m.disk().join("w"));
            for d in [&real, &target, &upper, &work] {
                fs::create_dir_all(d).unwrap();
            }
            fs::write(real.join("file"), "from the real tree").unwrap();
            let lower = open_dir(&real).unwrap();
            // Cover the real tree: its path now shows an empty tmpfs.
            mount_tmpfs("cover", &real, None).unwrap();
            assert!(!real.join("file").exists());
            let layers = OverlayLayers {
                lower: lower.as_fd(),
                upper: &upper,
                work: &work,
                passing: how,
            };
            mount_overlay("test-overlay", &target, &layers, false).unwrap();
            assert_eq!(
                fs::read_to_string(target.join("file")).unwrap(),
                "from the real tree"
            );
            fs::write(target.join("new"), "n").unwrap();
            assert!(
                upper.join("new").is_file(),
                "writes do not reach the upper dir"
            );
        });
    }

    #[test]
    fn overlay_lower_is_the_opened_directory_when_passed_by_descriptor() {
        lower_is_the_opened_directory(
            LayerPassing::Fd,
            "mount::tests::overlay_lower_is_the_opened_directory_when_passed_by_descriptor",
        );
    }

    #[test]
    fn overlay_lower_is_the_opened_directory_when_passed_by_proc_path() {
        lower_is_the_opened_directory(
            LayerPassing::ProcPath,
            "mount::tests::overlay_lower_is_the_opened_directory_when_passed_by_proc_path",
        );
    }

    #[test]
    fn mount_failures_carry_the_kernel_reason() {
        machine(
            "mount::tests::mount_failures_carry_the_kernel_reason",
            |m| {
                let t = m.disk().join("t");
                fs::create_dir_all(&t).unwrap();
                let err = mount_tmpfs("bad", &t, Some("not-a-size"))
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("size"), "{err}");
            },
        );
    }
}
