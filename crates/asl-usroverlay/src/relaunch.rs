//! Running this program again from a copy that lives outside the overlay it is about to
//! unmount.
//!
//! On a merged-/usr system (`/lib -> usr/lib`, Debian 12 and most distributions) every
//! dynamically linked program started after an overlay was put on `/usr` maps its dynamic
//! loader and libc *through that overlay* — and so does the `asl` binary when it is installed
//! below `/usr`. A mapped file holds its mount, so the tool's own `umount2` of the overlay
//! fails with `EBUSY` although nobody else uses it.
//!
//! The way out keeps the unmount strict (the kernel decides atomically whether anybody else
//! uses the overlay): the tool re-executes itself from copies of exactly the files it maps
//! from that mount — read through `/proc/self/map_files`, i.e. the bytes now running, even if
//! the overlay has replaced the files since — and then unmounts as usual. The copies live on
//! a tmpfs that is created with `fsmount` and never attached anywhere: it is reachable only
//! through a descriptor this process holds, no other process can see it, and the kernel frees
//! it when the process exits, so nothing is left behind even if the tool is killed.
//!
//! The copy is started through its dynamic loader (`ld.so --library-path DIR --argv0 ARGV0
//! PROGRAM ARGS…`, glibc 2.33 or later), which finds the libraries in the copy by file name.
//! If some mapping still comes from the overlay after the relaunch (a library whose file name
//! is not its soname), the unmount fails as before and the refusal names this process and the
//! file it maps. The environment variable [`RELAUNCHED_ENV`] marks the relaunched process so
//! it never relaunches twice.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{Mode as FsMode, OFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, fsconfig_create, fsconfig_set_string, fsmount,
    fsopen,
};

use crate::error::{Error, Result};
use crate::holders::mount_id_of_fd;

/// Set in the environment of the relaunched process.
pub const RELAUNCHED_ENV: &str = "ASL_USROVERLAY_RELAUNCHED";

/// `AT_BASE` in the auxiliary vector: where the dynamic loader is mapped (0 for a static
/// program).
const AT_BASE: u64 = 7;

/// One file this process maps from the mount in question.
struct Mapped {
    /// The path `/proc/self/maps` shows (without " (deleted)").
    path: PathBuf,
    /// The mapping's start address, which tells the loader apart.
    start: u64,
    /// Open for reading, through `/proc/self/map_files`: the very file that is mapped.
    file: fs::File,
}

fn sys(op: &'static str, path: &Path, e: rustix::io::Errno) -> Error {
    Error::sys(op, path, e)
}

/// The files this process maps from mount `mount_id`, one entry per file.
fn mapped_from(mount_id: u64) -> Result<Vec<Mapped>> {
    let maps_path = Path::new("/proc/self/maps");
    let maps = fs::read_to_string(maps_path).map_err(|e| Error::io("read", maps_path, e))?;
    let mut out: Vec<Mapped> = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode   path
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(rest)) = (fields.next(), fields.nth(4)) else {
            continue;
        };
        let shown = rest.trim_start();
        let path = PathBuf::from(shown.strip_suffix(" (deleted)").unwrap_or(shown));
        if !path.is_absolute() || out.iter().any(|m| m.path == path) {
            continue;
        }
        let Some(start) = range
            .split('-')
            .next()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        let entry = PathBuf::from(format!("/proc/self/map_files/{range}"));
        let Ok(file) = fs::File::open(&entry) else {
            continue;
        };
        if mount_id_of_fd(file.as_fd()) == Some(mount_id) {
            out.push(Mapped { path, start, file });
        }
    }
    Ok(out)
}

/// Where the dynamic loader is mapped, from the auxiliary vector.
fn loader_base() -> Option<u64> {
    let auxv = fs::read("/proc/self/auxv").ok()?;
    auxv.chunks_exact(16).find_map(|pair| {
        let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
        let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
        (key == AT_BASE && value != 0).then_some(value)
    })
}

/// The loader's path as mapped (whether or not it is on the mount).
fn loader_path(base: u64) -> Option<PathBuf> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let start = u64::from_str_radix(line.split('-').next()?, 16).ok()?;
        let path = line.splitn(6, ' ').nth(5)?.trim_start();
        (start == base && path.starts_with('/')).then(|| PathBuf::from(path))
    })
}

/// A tmpfs that is never attached to any path; its root descriptor is inherited across exec
/// (no close-on-exec), so the relaunched loader finds the copies as `/proc/self/fd/N/…`.
fn detached_tmpfs() -> Result<OwnedFd> {
    let what = Path::new("a private tmpfs for the relaunch copy");
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| sys("create", what, e))?;
    fsconfig_set_string(fs.as_fd(), "source", "asl-usroverlay-relaunch")
        .and_then(|()| fsconfig_set_string(fs.as_fd(), "mode", "0700"))
        .and_then(|()| fsconfig_create(fs.as_fd()))
        .map_err(|e| sys("create", what, e))?;
    fsmount(
        fs.as_fd(),
        FsMountFlags::empty(),
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(|e| sys("mount", what, e))
}

/// Copies `m` into the directory `dir` under its file name.
fn copy_into(dir: &OwnedFd, m: &mut Mapped) -> Result<String> {
    let name = m
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::io(
                "copy for the relaunch",
                &m.path,
                io::Error::other("no usable file name"),
            )
        })?
        .to_string();
    let fd = rustix::fs::openat(
        dir,
        name.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        FsMode::from_raw_mode(0o700),
    )
    .map_err(|e| sys("copy for the relaunch", &m.path, e))?;
    let mut dst = fs::File::from(fd);
    io::copy(&mut m.file, &mut dst).map_err(|e| Error::io("copy for the relaunch", &m.path, e))?;
    Ok(name)
}

/// If this process maps files from mount `mount_id`, replaces it with a copy that does not
/// (see the module documentation). Returns `Ok(())` without doing anything when there is
/// nothing to do or this process is already the relaunched one; on success it does not return.
pub(crate) fn relaunch_outside(mount_id: u64) -> Result<()> {
    if std::env::var_os(RELAUNCHED_ENV).is_some() {
        return Ok(());
    }
    let mut mapped = mapped_from(mount_id)?;
    if mapped.is_empty() {
        return Ok(());
    }
    let exe_link = Path::new("/proc/self/exe");
    let exe = fs::read_link(exe_link).map_err(|e| Error::io("read", exe_link, e))?;
    let undeleted = exe
        .to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map(PathBuf::from);
    let exe = undeleted.unwrap_or(exe);
    let base = loader_base();
    let loader = base.and_then(loader_path);

    let dir = detached_tmpfs()?;
    let dir_path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut program = exe.clone();
    let mut loader_copy = loader.clone();
    for m in &mut mapped {
        let name = copy_into(&dir, m)?;
        if m.path == exe {
            program = dir_path.join(&name);
        }
        if Some(m.start) == base {
            loader_copy = Some(dir_path.join(&name));
        }
    }
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = if args.is_empty() {
        exe.clone().into_os_string()
    } else {
        args.remove(0)
    };
    let mut cmd = match &loader_copy {
        Some(ld) => {
            let mut c = Command::new(ld);
            c.arg("--library-path")
                .arg(&dir_path)
                .arg("--argv0")
                .arg(&argv0)
                .arg(&program);
            c
        }
        None => {
            let mut c = Command::new(&program);
            c.arg0(&argv0);
            c
        }
    };
    cmd.args(&args).env(RELAUNCHED_ENV, "1");
    let err = cmd.exec();
    drop(dir);
    Err(Error::io(
        "relaunch from a private copy of",
        loader_copy.unwrap_or(program),
        err,
    ))
}
