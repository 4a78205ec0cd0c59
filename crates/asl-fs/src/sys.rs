//! The system calls intake and restore need, on [`rustix`]: they work on raw name bytes (names
//! are not UTF-8) and directory file descriptors, and return `io::Error`s carrying the errno,
//! which is what intake records for an entry and restore reports.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    Advice, AtFlags, FileType, Gid, Mode, OFlags, RawDir, SeekFrom, Stat, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;

/// A NUL-terminated copy of name bytes (names never contain NUL: checked by the caller).
pub fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from(Errno::INVAL))
}

/// `lstat` of `name` relative to `dir` (or of an absolute/relative path with [`rustix::fs::CWD`]).
pub fn lstat_at(dir: impl AsFd, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

/// Opens with `flags | O_CLOEXEC | O_NOFOLLOW`, relative to `dir`.
pub fn open_at(dir: impl AsFd, name: &CStr, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    Ok(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::from_raw_mode(mode),
    )?)
}

/// The room [`read_dir_names`] gives one `getdents64` batch. An entry takes at most about
/// 280 bytes (a 255-byte name and its header), so a batch always holds at least one.
const DIR_BATCH: usize = 32 * 1024;

/// Calls `each` with the name of every entry of an open directory (without `.` and `..`), in
/// the order the filesystem returns them. Names point into `buf`, which the caller keeps from
/// one directory to the next: no allocation per directory or per entry. Reads from the
/// descriptor's position to the end; the descriptor stays owned by the caller.
pub fn read_dir_names(
    dir: &OwnedFd,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    buf.clear();
    buf.reserve(DIR_BATCH);
    let mut entries = RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(entry) => entry,
            // A directory removed while it is read: like readdir(3), the end of it.
            Err(Errno::NOENT) => break,
            Err(e) => return Err(e.into()),
        };
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            each(name);
        }
    }
    Ok(())
}

/// The target of the symlink `name` in `dir`; `size_hint` (its `lstat` size) sizes the
/// buffer so one call usually suffices.
pub fn readlink_at(dir: impl AsFd, name: &CStr, size_hint: usize) -> io::Result<Vec<u8>> {
    let target = rustix::fs::readlinkat(dir, name, Vec::with_capacity(size_hint + 1))?;
    Ok(target.into_bytes())
}

/// All extended attributes of `path` (not following a final symlink), sorted by name.
/// Filesystems without xattr support give an empty list.
pub fn lxattrs(path: &CStr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 256];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let n = rustix::fs::llistxattr_query(path)?;
                names.resize(n + 1, 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = cstring(name)?;
        let mut val = vec![0u8; 256];
        loop {
            match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut val[..]) {
                Ok(n) => {
                    val.truncate(n);
                    break;
                }
                Err(Errno::RANGE) => {
                    let n = rustix::fs::lgetxattr_query(path, cname.as_c_str())?;
                    val.resize(n + 1, 0);
                }
                // Removed between list and get: it no longer exists.
                Err(Errno::NODATA) => {
                    val.clear();
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        out.push((name.to_vec(), val));
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// The holes of a sparse file within `[0, size)`, as `(offset, len)`, found with
/// `SEEK_DATA`/`SEEK_HOLE`. A filesystem that does not report holes gives none.
pub fn holes(fd: impl AsFd, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = fd.as_fd();
    let mut holes = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        let data = match rustix::fs::seek(fd, SeekFrom::Data(pos)) {
            Ok(data) => data.min(size),
            // No data after pos: the rest is a hole.
            Err(Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if data > pos {
            holes.push((pos, data - pos));
        }
        if data >= size {
            break;
        }
        let hole = rustix::fs::seek(fd, SeekFrom::Hole(data))?;
        pos = hole.min(size);
        if pos == data {
            // Should not happen (SEEK_HOLE from data returns a later offset); avoid a loop.
            break;
        }
    }
    Ok(holes)
}

pub fn pread(fd: impl AsFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let fd = fd.as_fd();
    Ok(rustix::io::retry_on_intr(|| {
        rustix::io::pread(fd, &mut *buf, offset)
    })?)
}

pub fn pwrite_all(fd: impl AsFd, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    let fd = fd.as_fd();
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn mkdir_at(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?)
}

pub fn symlink_at(target: &CStr, dir: impl AsFd, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, dir, name)?)
}

/// `mknodat` with `mode` holding both the file type (`S_IF*`) and the permission bits.
pub fn mknod_at(dir: impl AsFd, name: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    let file_type = FileType::from_raw_mode(mode);
    let perm = Mode::from_raw_mode(mode & 0o7777);
    Ok(rustix::fs::mknodat(dir, name, file_type, perm, dev)?)
}

pub fn link_at(old_dir: impl AsFd, old: &CStr, new_dir: impl AsFd, new: &CStr) -> io::Result<()> {
    Ok(rustix::fs::linkat(
        old_dir,
        old,
        new_dir,
        new,
        AtFlags::empty(),
    )?)
}

pub fn unlink_at(dir: impl AsFd, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// The owner ids as the kernel takes them. Unchecked: an id recorded as `u32::MAX` reaches
/// the kernel as it did through libc (where it means "leave unchanged").
fn owner(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw_unchecked(uid)),
        Some(Gid::from_raw_unchecked(gid)),
    )
}

/// `fchownat` without following a final symlink.
pub fn lchown_at(dir: impl AsFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = owner(uid, gid);
    Ok(rustix::fs::chownat(
        dir,
        name,
        uid,
        gid,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

pub fn fchown(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = owner(uid, gid);
    Ok(rustix::fs::fchown(fd, uid, gid)?)
}

pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// `fchmodat` (never on symlinks: Linux cannot change a symlink's mode).
pub fn chmod_at(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )?)
}

fn timestamps(sec: i64, nsec: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    };
    // atime is not recorded: set it equal to mtime so restores are reproducible.
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

pub fn futimens(fd: impl AsFd, sec: i64, nsec: u32) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &timestamps(sec, nsec))?)
}

pub fn lutimens_at(dir: impl AsFd, name: &CStr, sec: i64, nsec: u32) -> io::Result<()> {
    let ts = timestamps(sec, nsec);
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &ts,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

pub fn fsetxattr(fd: impl AsFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cstring(name)?;
    Ok(rustix::fs::fsetxattr(
        fd,
        n.as_c_str(),
        value,
        XattrFlags::empty(),
    )?)
}

pub fn lsetxattr(path: &CStr, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cstring(name)?;
    Ok(rustix::fs::lsetxattr(
        path,
        n.as_c_str(),
        value,
        XattrFlags::empty(),
    )?)
}

pub fn ftruncate(fd: impl AsFd, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

pub fn fadvise_sequential(fd: impl AsFd) {
    // Advisory only: a failure changes nothing.
    let _ = rustix::fs::fadvise(fd, 0, None, Advice::Sequential);
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn major(dev: u64) -> u32 {
    rustix::fs::major(dev)
}

pub fn minor(dev: u64) -> u32 {
    rustix::fs::minor(dev)
}

pub fn makedev(major: u32, minor: u32) -> u64 {
    rustix::fs::makedev(major, minor)
}

/// The message of an errno value, as `strerror` gives it.
pub fn strerror(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

/// The effective user and group ids: the owner of files this process creates.
pub fn effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// The process umask, read from `/proc/self/status` (`umask(2)` can only read it by
/// changing it, which would race with other threads creating files). `None` when unknown.
pub fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}
