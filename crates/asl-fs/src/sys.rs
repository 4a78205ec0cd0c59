//! Thin, safe wrappers over the system calls intake and restore need, all working on raw
//! name bytes (names are not UTF-8) and directory file descriptors.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A NUL-terminated copy of name bytes (names never contain NUL: checked by the caller).
pub fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `lstat` of `name` relative to `dir` (or of an absolute/relative path with `AT_FDCWD`).
pub fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat64> {
    // SAFETY: stat64 is plain old data; fstatat64 fills it or fails.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatat64(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat64> {
    // SAFETY: as above.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat64(fd, &mut st) })?;
    Ok(st)
}

/// Opens with `flags | O_CLOEXEC | O_NOFOLLOW`, relative to `dir`.
pub fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string and flags; the returned fd is owned by us.
    let fd = cvt(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The names in an open directory (without `.` and `..`), with their `d_type`.
/// Consumes the descriptor's position; the descriptor stays owned by the caller.
pub fn read_dir_names(dir: &OwnedFd, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    // fdopendir takes ownership of its fd: give it a duplicate.
    let dup = cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: dup is a valid directory fd; on success the DIR owns it.
    let dirp = unsafe { libc::fdopendir(dup) };
    if dirp.is_null() {
        let e = io::Error::last_os_error();
        unsafe { libc::close(dup) };
        return Err(e);
    }
    let result = loop {
        // SAFETY: errno is thread-local; readdir returns NULL at the end or on error.
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir64(dirp) };
        if ent.is_null() {
            let e = errno();
            break if e == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(e))
            };
        }
        // SAFETY: d_name is NUL-terminated inside the dirent.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        each(name);
    };
    unsafe { libc::closedir(dirp) };
    result
}

pub fn readlink_at(dir: RawFd, name: &CStr, size_hint: usize) -> io::Result<Vec<u8>> {
    let mut cap = size_hint.max(63) + 1;
    loop {
        let mut buf = vec![0u8; cap];
        // SAFETY: buf has cap bytes.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), cap) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < cap {
            buf.truncate(n);
            return Ok(buf);
        }
        cap *= 2;
        if cap > 1 << 20 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
    }
}

/// All extended attributes of `path` (not following a final symlink), sorted by name.
/// Filesystems without xattr support give an empty list.
pub fn lxattrs(path: &CStr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 256];
    let len = loop {
        // SAFETY: buffer of names.len() bytes.
        let n = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        match errno() {
            libc::ERANGE => {
                let n = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                names.resize(n as usize + 1, 0);
            }
            libc::ENOTSUP => return Ok(Vec::new()),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = cstring(name)?;
        let mut val = vec![0u8; 256];
        loop {
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    cname.as_ptr(),
                    val.as_mut_ptr().cast(),
                    val.len(),
                )
            };
            if n >= 0 {
                val.truncate(n as usize);
                break;
            }
            match errno() {
                libc::ERANGE => {
                    let n = unsafe {
                        libc::lgetxattr(path.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0)
                    };
                    if n < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    val.resize(n as usize + 1, 0);
                }
                // Removed between list and get: it no longer exists.
                libc::ENODATA => {
                    val.clear();
                    break;
                }
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        out.push((name.to_vec(), val));
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// Data ranges of a sparse file via SEEK_DATA/SEEK_HOLE: the holes within `[0, size)`.
/// Returns `None` when the filesystem does not report holes.
pub fn holes(fd: RawFd, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut holes = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        // SAFETY: lseek on our own fd.
        let data = unsafe { libc::lseek64(fd, pos as i64, libc::SEEK_DATA) };
        let data = if data < 0 {
            match errno() {
                // No data after pos: the rest is a hole.
                libc::ENXIO => size,
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        } else {
            (data as u64).min(size)
        };
        if data > pos {
            holes.push((pos, data - pos));
        }
        if data >= size {
            break;
        }
        let hole = unsafe { libc::lseek64(fd, data as i64, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        pos = (hole as u64).min(size);
        if pos == data {
            // Should not happen (SEEK_HOLE from data returns a later offset); avoid a loop.
            break;
        }
    }
    Ok(holes)
}

pub fn pread(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::pread64(fd, buf.as_mut_ptr().cast(), buf.len(), offset as i64) };
        if n >= 0 {
            return Ok(n as usize);
        }
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
}

pub fn pwrite_all(fd: RawFd, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid.
        let n = unsafe { libc::pwrite64(fd, buf.as_ptr().cast(), buf.len(), offset as i64) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        buf = &buf[n as usize..];
        offset += n as u64;
    }
    Ok(())
}

pub fn mkdir_at(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) }).map(|_| ())
}

pub fn symlink_at(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(|_| ())
}

pub fn mknod_at(dir: RawFd, name: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    cvt(unsafe { libc::mknodat(dir, name.as_ptr(), mode, dev) }).map(|_| ())
}

pub fn link_at(old_dir: RawFd, old: &CStr, new_dir: RawFd, new: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::linkat(old_dir, old.as_ptr(), new_dir, new.as_ptr(), 0) }).map(|_| ())
}

pub fn unlink_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map(|_| ())
}

/// `fchownat` without following a final symlink.
pub fn lchown_at(dir: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(|_| ())
}

pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchown(fd, uid, gid) }).map(|_| ())
}

pub fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchmod(fd, mode) }).map(|_| ())
}

/// `fchmodat` (never on symlinks: Linux cannot change a symlink's mode).
pub fn chmod_at(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchmodat(dir, name.as_ptr(), mode, 0) }).map(|_| ())
}

fn timespecs(sec: i64, nsec: u32) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    };
    // atime is not recorded: set it equal to mtime so restores are reproducible.
    [t, t]
}

pub fn futimens(fd: RawFd, sec: i64, nsec: u32) -> io::Result<()> {
    let ts = timespecs(sec, nsec);
    cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map(|_| ())
}

pub fn lutimens_at(dir: RawFd, name: &CStr, sec: i64, nsec: u32) -> io::Result<()> {
    let ts = timespecs(sec, nsec);
    cvt(unsafe { libc::utimensat(dir, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
        .map(|_| ())
}

pub fn fsetxattr(fd: RawFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cstring(name)?;
    cvt(unsafe { libc::fsetxattr(fd, n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
        .map(|_| ())
}

pub fn lsetxattr(path: &CStr, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cstring(name)?;
    cvt(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(|_| ())
}

pub fn ftruncate(fd: RawFd, len: u64) -> io::Result<()> {
    cvt(unsafe { libc::ftruncate64(fd, len as i64) }).map(|_| ())
}

pub fn fadvise_sequential(fd: RawFd) {
    // Advisory only: a failure changes nothing.
    unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub fn major(dev: u64) -> u32 {
    libc::major(dev)
}

pub fn minor(dev: u64) -> u32 {
    libc::minor(dev)
}

pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

/// The message of an errno value, as `strerror` gives it.
pub fn strerror(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

/// The effective user and group ids: the owner of files this process creates.
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The process umask, read from `/proc/self/status` (`umask(2)` can only read it by
/// changing it, which would race with other threads creating files). `None` when unknown.
pub fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}
