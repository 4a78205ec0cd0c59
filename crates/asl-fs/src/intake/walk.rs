//! Stage 1, the walk: reads each directory once, `lstat`s every entry, records metadata,
//! symlink targets and xattrs into `Walk::nodes`, answers unchanged files from
//! the stat cache and queues every other regular file for the readers.

use std::ffi::{CStr, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crossbeam_channel as chan;
use globset::{Glob, GlobSet, GlobSetBuilder};
use rustix::fs::{CWD, FileType, OFlags, Stat};

use super::{FileOutcome, IntakeError, IntakeErrorRecord, Job, Node, Shared, Walk};
use crate::statcache::FileIdentity;
use crate::sys;
use crate::tree::{Entry, EntryError, Kind, Operation};

pub(super) fn build_excludes(patterns: &[String]) -> Result<Option<GlobSet>, IntakeError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| IntakeError::BadExclude {
            pattern: p.clone(),
            message: e.kind().to_string(),
        })?;
        b.add(g);
    }
    b.build().map(Some).map_err(|e| IntakeError::BadExclude {
        pattern: patterns.join(" "),
        message: e.to_string(),
    })
}

/// A directory still to be read: its node and the device it must stay on.
struct PendingDir {
    node: u32,
    root_dev: u64,
}

impl<'a> Walk<'a> {
    /// Records the given paths as children of node 0. Returns their node indices.
    pub(super) fn top_level(&mut self, paths: &[PathBuf]) -> Result<Vec<(u32, Stat)>, IntakeError> {
        let mut tops: Vec<(Vec<u8>, PathBuf, Stat)> = Vec::new();
        for p in paths {
            let c = sys::cstring(p.as_os_str().as_bytes()).map_err(|e| IntakeError::Path {
                path: p.clone(),
                source: e,
            })?;
            let st = sys::lstat_at(CWD, &c).map_err(|e| IntakeError::Path {
                path: p.clone(),
                source: e,
            })?;
            let name = match p.file_name() {
                Some(n) => n.as_bytes().to_vec(),
                None if paths.len() == 1 && is_dir(&st) => b"root".to_vec(),
                None => return Err(IntakeError::NoName { path: p.clone() }),
            };
            tops.push((name, p.clone(), st));
        }
        tops.sort_by(|a, b| a.0.cmp(&b.0));
        for w in tops.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(IntakeError::DuplicateName {
                    a: w[0].1.clone(),
                    b: w[1].1.clone(),
                    name: String::from_utf8_lossy(&w[0].0).into_owned(),
                });
            }
        }
        self.nodes[0].first_child = 1;
        self.nodes[0].child_count = tops.len() as u32;
        let mut out = Vec::new();
        for (name, path, st) in tops {
            let idx = self.nodes.len() as u32;
            self.nodes
                .push(Node::new(Entry::new(name, Kind::Unknown), 0));
            self.dir_paths
                .insert(idx, path.as_os_str().as_bytes().to_vec());
            out.push((idx, st));
        }
        for (idx, st) in &out {
            self.fill_from_stat(*idx, st);
        }
        Ok(out)
    }

    pub(super) fn path_of(&self, idx: u32) -> PathBuf {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut i = idx;
        loop {
            if let Some(p) = self.dir_paths.get(&i) {
                let mut full = p.clone();
                for part in parts.iter().rev() {
                    full.push(b'/');
                    full.extend_from_slice(part);
                }
                return PathBuf::from(OsStr::from_bytes(&full));
            }
            if i == 0 {
                break;
            }
            parts.push(self.nodes[i as usize].entry.name.clone());
            i = self.nodes[i as usize].parent;
        }
        parts.reverse();
        PathBuf::from(OsStr::from_bytes(&parts.join(&b'/')))
    }

    fn record_error(&mut self, idx: u32, op: Operation, err: &std::io::Error) {
        let errno = err.raw_os_error().unwrap_or(0);
        self.nodes[idx as usize].entry.error = Some(EntryError { op, errno });
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        let path = self.path_of(idx);
        self.errors.push(IntakeErrorRecord {
            path,
            op,
            errno,
            message: err.to_string(),
        });
    }

    /// Fills an entry's metadata from its `lstat`.
    fn fill_from_stat(&mut self, idx: u32, st: &Stat) {
        let e = &mut self.nodes[idx as usize].entry;
        e.kind = kind_of(st.st_mode);
        e.mode = st.st_mode & 0o7777;
        e.uid = st.st_uid;
        e.gid = st.st_gid;
        e.mtime_sec = st.st_mtime;
        e.mtime_nsec = st.st_mtime_nsec as u32;
        match e.kind {
            Kind::File | Kind::Symlink => e.size = st.st_size as u64,
            Kind::CharDevice | Kind::BlockDevice => {
                e.rdev_major = sys::major(st.st_rdev);
                e.rdev_minor = sys::minor(st.st_rdev);
            }
            _ => {}
        }
        if e.kind != Kind::Dir && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            let n = &mut self.nodes[idx as usize];
            n.link_key = Some(key);
            let slot = self.links.entry(key).or_insert((idx, 0));
            slot.1 += 1;
            if slot.0 != idx {
                n.link_first = Some(slot.0);
            }
            self.defer_ancestors(idx);
        }
        self.progress.entries.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn run(
        &mut self,
        tops: &[(u32, Stat)],
        jobs: &chan::Sender<Job>,
        shared: &Shared<'_>,
        outcomes: &chan::Receiver<FileOutcome>,
    ) {
        let mut pending: Vec<PendingDir> = Vec::new();
        for &(idx, st) in tops.iter().rev() {
            let path = self.dir_paths[&idx].clone();
            self.after_stat(idx, &st, &path, None, st.st_dev, jobs, &mut pending);
        }
        while let Some(d) = pending.pop() {
            if shared.abort.load(Ordering::Relaxed) || self.fatal.is_some() {
                break;
            }
            self.read_dir(d, jobs, &mut pending);
            // The outcomes that have arrived are applied between two directories, not all at
            // the end: they are never all held at once, and finished directories are stored
            // and dropped early.
            for o in outcomes.try_iter() {
                self.take_outcome(o);
            }
        }
    }

    /// Reads one directory: names, lstat of each, then per-kind work.
    fn read_dir(&mut self, d: PendingDir, jobs: &chan::Sender<Job>, pending: &mut Vec<PendingDir>) {
        let path = self.dir_paths[&d.node].clone();
        self.progress.set_current(&path);
        self.progress.dirs.fetch_add(1, Ordering::Relaxed);
        let Ok(cpath) = sys::cstring(&path) else {
            return;
        };
        let dir = match sys::open_at(
            CWD,
            &cpath,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) => {
                self.record_error(d.node, Operation::Opendir, &e);
                self.dir_listed(d.node);
                return;
            }
        };
        let mut names: Vec<Vec<u8>> = Vec::new();
        let read = sys::read_dir_names(&dir, &mut self.dir_buf, |n| names.push(n.to_vec()));
        if let Err(e) = read {
            // Keep what was read: a partial listing beats none in a rescue.
            self.record_error(d.node, Operation::Readdir, &e);
        }
        names.sort_unstable();
        let mut child_path = path.clone();
        child_path.push(b'/');
        let base_len = child_path.len();
        if let Some(ex) = &self.excludes {
            let before = names.len();
            names.retain(|n| {
                child_path.truncate(base_len);
                child_path.extend_from_slice(n);
                let full = Path::new(OsStr::from_bytes(&child_path));
                !(ex.is_match(full) || ex.is_match(Path::new(OsStr::from_bytes(n))))
            });
            self.excluded += (before - names.len()) as u64;
        }
        let first = self.nodes.len() as u32;
        self.nodes[d.node as usize].first_child = first;
        self.nodes[d.node as usize].child_count = names.len() as u32;
        let mut stats = Vec::with_capacity(names.len());
        for name in names {
            let idx = self.nodes.len() as u32;
            let cname = sys::cstring(&name);
            self.nodes
                .push(Node::new(Entry::new(name, Kind::Unknown), d.node));
            let st = cname.and_then(|c| sys::lstat_at(&dir, &c).map(|st| (c, st)));
            match st {
                Ok((c, st)) => {
                    self.fill_from_stat(idx, &st);
                    stats.push(Some((c, st)));
                }
                Err(e) => {
                    self.progress.entries.fetch_add(1, Ordering::Relaxed);
                    self.record_error(idx, Operation::Lstat, &e);
                    self.nodes[idx as usize].done = true;
                    stats.push(None);
                }
            }
        }
        let mut subdirs = Vec::new();
        for (i, s) in stats.into_iter().enumerate() {
            let Some((cname, st)) = s else { continue };
            let idx = first + i as u32;
            child_path.truncate(base_len);
            child_path.extend_from_slice(cname.to_bytes());
            let before = pending.len();
            self.after_stat(
                idx,
                &st,
                &child_path,
                Some((&dir, &cname)),
                d.root_dev,
                jobs,
                pending,
            );
            subdirs.extend(pending.drain(before..));
        }
        // Pushed in reverse so that directories are read in name order (not required for
        // determinism, but it keeps the walk's memory and the progress display tidy).
        pending.extend(subdirs.into_iter().rev());
        self.dir_listed(d.node);
    }

    /// Per-entry work after its lstat: xattrs, symlink target, file job or cache hit,
    /// directory scheduling.
    #[allow(clippy::too_many_arguments)]
    fn after_stat(
        &mut self,
        idx: u32,
        st: &Stat,
        path: &[u8],
        at: Option<(&OwnedFd, &CStr)>,
        root_dev: u64,
        jobs: &chan::Sender<Job>,
        pending: &mut Vec<PendingDir>,
    ) {
        let kind = self.nodes[idx as usize].entry.kind;
        // Final now unless a reader or a directory read is still to come (set below).
        self.nodes[idx as usize].done = true;
        let Ok(cpath) = sys::cstring(path) else {
            if kind == Kind::Dir {
                self.nodes[idx as usize].done = false;
                self.dir_listed(idx);
            }
            return;
        };
        match sys::lxattrs(&cpath) {
            Ok(x) => self.nodes[idx as usize].entry.xattrs = x,
            Err(e) => self.record_error(idx, Operation::Xattr, &e),
        }
        match kind {
            Kind::Symlink => {
                let target = match at {
                    Some((dir, name)) => sys::readlink_at(dir, name, st.st_size as usize),
                    None => sys::readlink_at(CWD, &cpath, st.st_size as usize),
                };
                match target {
                    Ok(t) if !t.is_empty() => {
                        let e = &mut self.nodes[idx as usize].entry;
                        e.size = t.len() as u64;
                        e.link_target = t;
                    }
                    Ok(_) => {}
                    Err(e) => self.record_error(idx, Operation::Readlink, &e),
                }
            }
            Kind::Dir => {
                self.dir_paths.insert(idx, path.to_vec());
                self.nodes[idx as usize].done = false;
                if self.one_file_system && st.st_dev != root_dev {
                    // A mount point: recorded as an empty directory, not descended into.
                    self.dir_listed(idx);
                    return;
                }
                pending.push(PendingDir {
                    node: idx,
                    root_dev,
                });
            }
            Kind::File => {
                if self.nodes[idx as usize].link_first.is_some() {
                    // Content comes from the group's first member.
                    return;
                }
                let id = FileIdentity::from_stat(st);
                if let Some(hit) = self.old_cache.get(&id)
                    && self.store.contains(&hit.content)
                {
                    let e = &mut self.nodes[idx as usize].entry;
                    e.content = Some(hit.content);
                    e.holes = hit.holes.clone();
                    if let Some(cache) = self.new_cache.as_mut() {
                        cache.add(&hit);
                    }
                    self.cache_hits += 1;
                    self.progress.files.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // The only blocking point of the walk: a full queue means the workers are
                // the bottleneck, as they should be.
                self.nodes[idx as usize].done = false;
                let _ = jobs.send(Job {
                    node: idx,
                    path: cpath,
                    pre: id,
                });
            }
            _ => {}
        }
    }
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

pub(crate) fn kind_of(mode: u32) -> Kind {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::Fifo => Kind::Fifo,
        FileType::Socket => Kind::Socket,
        FileType::CharacterDevice => Kind::CharDevice,
        FileType::BlockDevice => Kind::BlockDevice,
        FileType::Unknown => Kind::Unknown,
    }
}
