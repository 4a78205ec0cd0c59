//! Stage 2, the readers: each worker opens the files the walk queued, reads them (holes of
//! sparse files are fed as zeros without reading) into the store, and reports a
//! `FileOutcome`: content, holes, and whether the file changed while it was read.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use asl_store::{AccessError, TypeTag};
use crossbeam_channel as chan;
use rustix::fs::{CWD, FileType, OFlags};

use super::{FileOutcome, Job, Progress, Shared};
use crate::statcache::FileIdentity;
use crate::sys;
use crate::tree::{EntryError, Hole, Operation};

/// Files up to this size are read into a per-worker buffer and stored with one `put_bytes`.
const SMALL_FILE: u64 = 1 << 20;
/// A file whose ctime is this close to the end of its read is not put in the stat cache:
/// a later change within the same timestamp tick would leave (size, mtime, ctime) unchanged
/// and a stale cache hit would follow ("racy git"). Kernel timestamps advance at least every
/// 10 ms (HZ=100); 50 ms leaves a margin for the coarse clock lagging the real one.
const RACY_MARGIN_NS: i128 = 50_000_000;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

pub(super) fn worker(
    shared: &Shared<'_>,
    jobs: chan::Receiver<Job>,
    results: chan::Sender<FileOutcome>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(SMALL_FILE as usize);
    for job in jobs.iter() {
        if shared.abort.load(Ordering::Relaxed) {
            continue;
        }
        let o = read_file(shared, &job, &mut buf);
        if o.fatal.is_some() {
            shared.abort.store(true, Ordering::Relaxed);
        }
        shared.progress.files.fetch_add(1, Ordering::Relaxed);
        if o.error.is_some() {
            shared.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        if results.send(o).is_err() {
            return;
        }
    }
}

fn open_for_reading(shared: &Shared<'_>, path: &CStr) -> std::io::Result<OwnedFd> {
    // O_NONBLOCK: a file replaced by a FIFO after the walk must not block the worker.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    if shared.noatime.load(Ordering::Relaxed) {
        match sys::open_at(CWD, path, flags | OFlags::NOATIME, 0) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                // O_NOATIME needs ownership or CAP_FOWNER: fall back, and stop trying when
                // it is clearly not available to this process.
                if !sys::is_root() {
                    shared.noatime.store(false, Ordering::Relaxed);
                }
            }
            r => return r,
        }
    }
    sys::open_at(CWD, path, flags, 0)
}

fn read_file(shared: &Shared<'_>, job: &Job, buf: &mut Vec<u8>) -> FileOutcome {
    let mut o = FileOutcome {
        node: job.node,
        put: None,
        holes: Vec::new(),
        changed: false,
        error: None,
        bytes_read: 0,
        opened: false,
        cacheable: None,
        fatal: None,
    };
    let fail = |o: &mut FileOutcome, op, e: &std::io::Error| {
        o.error = Some((
            EntryError {
                op,
                errno: e.raw_os_error().unwrap_or(0),
            },
            e.to_string(),
        ));
    };
    let fd = match open_for_reading(shared, &job.path) {
        Ok(fd) => fd,
        Err(e) => {
            fail(&mut o, Operation::Open, &e);
            return o;
        }
    };
    o.opened = true;
    let at_open = match sys::fstat(&fd) {
        Ok(st) => st,
        Err(e) => {
            fail(&mut o, Operation::Open, &e);
            return o;
        }
    };
    if FileType::from_raw_mode(at_open.st_mode) != FileType::RegularFile
        || at_open.st_ino != job.pre.ino
        || at_open.st_dev != job.pre.dev
    {
        // Replaced by something else since the walk: do not read it.
        o.changed = true;
        fail(
            &mut o,
            Operation::Open,
            &std::io::Error::other("replaced by another file between walk and read"),
        );
        return o;
    }
    if let Some(hook) = &shared.after_open {
        hook(Path::new(OsStr::from_bytes(job.path.to_bytes())));
    }
    let size = at_open.st_size as u64;
    let sparse = (at_open.st_blocks as u64).saturating_mul(512) < size;
    let holes = if sparse {
        sys::holes(&fd, size).unwrap_or_default()
    } else {
        Vec::new()
    };
    let raw = fd.as_fd();
    let result = if size <= SMALL_FILE && holes.is_empty() {
        read_small(raw, size, buf).map_or_else(
            |e| Err(AccessError::Source(e)),
            |n| {
                o.bytes_read = n as u64;
                shared
                    .progress
                    .bytes_read
                    .fetch_add(n as u64, Ordering::Relaxed);
                shared.store.put_bytes(&buf[..n], TypeTag::BYTES)
            },
        )
    } else {
        shared.progress.set_current(job.path.to_bytes());
        sys::fadvise_sequential(raw);
        let mut src = FileSource {
            fd: raw,
            pos: 0,
            end: size,
            holes: &holes,
            hole_ix: 0,
            bytes_read: 0,
            progress: shared.progress,
        };
        let r = shared.store.put_reader(&mut src, TypeTag::BYTES);
        o.bytes_read = src.bytes_read;
        r
    };
    let put = match result {
        Ok(p) => p,
        Err(AccessError::Source(e)) => {
            fail(&mut o, Operation::Read, &e);
            return o;
        }
        Err(e) => {
            o.fatal = Some(e);
            return o;
        }
    };
    shared
        .progress
        .bytes_new
        .fetch_add(put.new_bytes, Ordering::Relaxed);
    let after = sys::fstat(raw).ok();
    let after_id = after.as_ref().map(FileIdentity::from_stat);
    o.changed = after_id != Some(job.pre) || put.len != job.pre.size;
    if !o.changed
        && let Some(a) = &after
    {
        let ctime = i128::from(a.st_ctime) * 1_000_000_000 + i128::from(a.st_ctime_nsec);
        if ctime + RACY_MARGIN_NS < now_ns() {
            o.cacheable = Some(job.pre);
        }
    }
    // Holes beyond what was read (the file shrank) are dropped; the content is what was read.
    o.holes = holes
        .into_iter()
        .filter_map(|(off, len)| {
            let end = (off + len).min(put.len);
            (end > off).then_some(Hole {
                offset: off,
                len: end - off,
            })
        })
        .collect();
    o.put = Some(put);
    o
}

/// Reads a whole small file (at most `size` bytes: growth is caught by the stat check).
fn read_small(fd: BorrowedFd<'_>, size: u64, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let size = size as usize;
    // The buffer only grows (to SMALL_FILE at most): no zeroing per file.
    if buf.len() < size {
        buf.resize(size, 0);
    }
    let mut n = 0usize;
    while n < size {
        let r = sys::pread(fd, &mut buf[n..size], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// A file's logical bytes: data read with `pread`, holes produced as zeros without reading.
/// Stops at the size the file had when opened.
struct FileSource<'a> {
    fd: BorrowedFd<'a>,
    pos: u64,
    end: u64,
    holes: &'a [(u64, u64)],
    hole_ix: usize,
    bytes_read: u64,
    progress: &'a Progress,
}

impl std::io::Read for FileSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        while let Some(&(off, len)) = self.holes.get(self.hole_ix) {
            if off + len <= self.pos {
                self.hole_ix += 1;
            } else {
                break;
            }
        }
        let mut max = (self.end - self.pos).min(buf.len() as u64);
        if let Some(&(off, len)) = self.holes.get(self.hole_ix) {
            if off <= self.pos {
                let n = (off + len - self.pos).min(max) as usize;
                buf[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            max = max.min(off - self.pos);
        }
        let n = sys::pread(self.fd, &mut buf[..max as usize], self.pos)?;
        if n == 0 {
            // The file shrank: stop here (the stat comparison flags the change).
            self.end = self.pos;
        }
        self.pos += n as u64;
        self.bytes_read += n as u64;
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
