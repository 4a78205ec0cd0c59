//! [`SimStorage`]: an in-memory file system that keeps the POSIX durability rules to the
//! letter, for crash tests.
//!
//! It keeps two views of the namespace: the *live* one that the running program sees, and the
//! *durable* one that survives a power cut. Bytes written to a file join its durable content
//! at [`super::WriteFile::sync`]; a name (created, renamed, removed) joins the durable view at
//! [`super::Storage::sync_dir`] of its directory; a directory survives only if its own name
//! was made durable in its parent. [`SimStorage::power_cut`] replaces the live view by the
//! durable one, and each file's content by its synced content, optionally keeping a torn part
//! of what was appended after the last sync.
//!
//! Every mutating operation gets a number, from 1. [`SimStorage::arm`] makes operation `n`
//! cut the power (nothing from it on happens), tear a write, or fail with EIO or ENOSPC, so
//! a test can walk every point of an operation without sleeps, and a failing point is
//! reproduced by its number. [`SimStorage::skip_sync`] switches one kind of fsync off, to
//! prove that a test would notice the missing fsync.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Entry, LockError, LockGuard, ReadFile, Storage, WriteFile};

/// What an armed operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The power goes before the operation: it and every later one fail until
    /// [`SimStorage::power_cut`].
    PowerCut,
    /// A write keeps only its first half, then the power goes (any other operation: as
    /// [`Fault::PowerCut`]).
    TornWrite,
    /// The operation fails with EIO; later ones run.
    Eio,
    /// The operation and every later one that needs space (create, write, mkdir) fail with
    /// ENOSPC until [`SimStorage::free_space`].
    Enospc,
}

/// What a power cut does to bytes written after a file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// All of them are lost.
    All,
    /// A part survives, chosen by the seed: a prefix of what was appended, sometimes with the
    /// sectors past a 512-byte boundary read back as zeros.
    Torn(u64),
}

#[derive(Debug, Clone, Default)]
struct Node {
    dir: bool,
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Sim {
    root: PathBuf,
    nodes: Vec<Node>,
    live: BTreeMap<PathBuf, usize>,
    durable: BTreeMap<PathBuf, usize>,
    ops: u64,
    armed: Option<(u64, Fault)>,
    dead: bool,
    full: bool,
    skip_sync: Vec<String>,
    locks: HashMap<PathBuf, String>,
    trace: Vec<String>,
}

/// The in-memory file system; clones share it, [`SimStorage::fork`] copies it.
#[derive(Debug, Clone)]
pub struct SimStorage {
    sim: Arc<Mutex<Sim>>,
}

fn dead() -> io::Error {
    io::Error::other("simulated power cut: the machine is off")
}
fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

/// What an operation needs, for the fault that may be armed on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Grow,
    Write,
    Other,
}

impl Sim {
    /// Numbers an operation and applies an armed fault; `Ok(true)` asks a write to keep only
    /// half its bytes and then cut the power.
    fn step(&mut self, what: &str, path: &Path, op: Op) -> io::Result<bool> {
        if self.dead {
            return Err(dead());
        }
        self.ops += 1;
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        self.trace
            .push(format!("{} {what} {}", self.ops, rel.display()));
        if self.full && op != Op::Other {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::NOSPC.raw_os_error(),
            ));
        }
        match self.armed {
            Some((n, fault)) if n == self.ops => match fault {
                Fault::PowerCut => {
                    self.dead = true;
                    Err(dead())
                }
                Fault::TornWrite if op == Op::Write => Ok(true),
                Fault::TornWrite => {
                    self.dead = true;
                    Err(dead())
                }
                Fault::Eio => Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::IO.raw_os_error(),
                )),
                Fault::Enospc => {
                    if op == Op::Other {
                        Ok(false)
                    } else {
                        self.full = true;
                        Err(io::Error::from_raw_os_error(
                            rustix::io::Errno::NOSPC.raw_os_error(),
                        ))
                    }
                }
            },
            _ => Ok(false),
        }
    }

    /// Whether `path` is the root or one of its ancestors (always there, always durable).
    fn is_base(&self, path: &Path) -> bool {
        self.root.starts_with(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.is_base(path) || self.live.get(path).is_some_and(|&n| self.nodes[n].dir)
    }

    fn parent_must_exist(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.is_dir(p) => Ok(()),
            _ => Err(not_found(path)),
        }
    }

    fn file(&self, path: &Path) -> io::Result<usize> {
        match self.live.get(path) {
            Some(&n) if !self.nodes[n].dir => Ok(n),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn new_node(&mut self, dir: bool) -> usize {
        self.nodes.push(Node {
            dir,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    fn sync_skipped(&self, path: &Path) -> bool {
        let rel = path
            .strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy();
        self.skip_sync.iter().any(|p| rel.contains(p.as_str()))
    }
}

impl SimStorage {
    /// An empty file system in which `root` (and its ancestors) exist durably.
    pub fn new(root: &Path) -> SimStorage {
        SimStorage {
            sim: Arc::new(Mutex::new(Sim {
                root: root.to_path_buf(),
                nodes: Vec::new(),
                live: BTreeMap::new(),
                durable: BTreeMap::new(),
                ops: 0,
                armed: None,
                dead: false,
                full: false,
                skip_sync: Vec::new(),
                locks: HashMap::new(),
                trace: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An independent copy of the file system as it stands (faults and knobs included,
    /// locks and the operation trace not).
    pub fn fork(&self) -> SimStorage {
        let mut copy = self.lock().clone();
        copy.locks.clear();
        copy.trace.clear();
        SimStorage {
            sim: Arc::new(Mutex::new(copy)),
        }
    }

    /// How many mutating operations ran so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The operations so far, one line each: `NUMBER OPERATION PATH` (path from the root).
    pub fn trace(&self) -> Vec<String> {
        self.lock().trace.clone()
    }

    /// Makes operation number `n` (counted from 1 over the life of this file system) fail
    /// by `fault`.
    pub fn arm(&self, n: u64, fault: Fault) {
        self.lock().armed = Some((n, fault));
    }

    /// Switches off the fsync of every file whose path (from the root) contains `pattern`:
    /// the sync returns success and makes nothing durable. For proving a test would notice.
    pub fn skip_sync(&self, pattern: &str) {
        self.lock().skip_sync.push(pattern.to_string());
    }

    /// Ends the ENOSPC state of [`Fault::Enospc`].
    pub fn free_space(&self) {
        self.lock().full = false;
    }

    /// Whether an armed [`Fault::PowerCut`] or [`Fault::TornWrite`] has fired.
    pub fn is_off(&self) -> bool {
        self.lock().dead
    }

    /// Cuts the power and turns it back on: only durable names remain, every file holds its
    /// synced bytes (and, by `loss`, part of what came after), locks are gone, and nothing is
    /// armed any more.
    pub fn power_cut(&self, loss: Loss) {
        let mut s = self.lock();
        let mut rng = match loss {
            Loss::All => 0,
            Loss::Torn(seed) => seed | 1,
        };
        let durable = s.durable.clone();
        // A name survives only if every directory above it (up to the root) survives.
        let survives = |p: &Path| {
            let mut cur = p.parent();
            while let Some(d) = cur {
                if s.root.starts_with(d) {
                    return true;
                }
                match durable.get(d) {
                    Some(&n) if s.nodes[n].dir => {}
                    _ => return false,
                }
                cur = d.parent();
            }
            true
        };
        let live: BTreeMap<PathBuf, usize> = durable
            .iter()
            .filter(|(p, _)| survives(p))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        for node in s.nodes.iter_mut() {
            let synced = node.synced.clone();
            let tail = node
                .data
                .strip_prefix(synced.as_slice())
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            let mut kept = synced;
            if rng != 0 && !tail.is_empty() {
                let keep = (next(&mut rng) % (tail.len() as u64 + 1)) as usize;
                let start = kept.len();
                kept.extend_from_slice(&tail[..keep]);
                if next(&mut rng).is_multiple_of(3) {
                    // The file's new length reached the disk, its last sectors did not.
                    let z = start.div_ceil(512) * 512;
                    if z < kept.len() {
                        kept[z..].fill(0);
                    }
                }
            }
            node.data = kept.clone();
            node.synced = kept;
        }
        s.live = live;
        s.durable = s.live.clone();
        s.locks.clear();
        s.armed = None;
        s.dead = false;
        s.full = false;
    }
}

/// One operation of a run, as [`SimStorage::operations_of`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The number to [`SimStorage::arm`] on a fork of the same file system.
    pub number: u64,
    /// `NUMBER OPERATION PATH`, as in [`SimStorage::trace`].
    pub what: String,
}

impl SimStorage {
    /// Runs `run` on a fork of this file system and lists every operation it performed: the
    /// points a crash test walks. `run` must succeed here, where nothing fails.
    pub fn operations_of<E: std::fmt::Debug>(
        &self,
        run: impl FnOnce(&SimStorage) -> Result<(), E>,
    ) -> Vec<Operation> {
        let probe = self.fork();
        let first = probe.ops() + 1;
        if let Err(e) = run(&probe) {
            panic!("the run fails with no fault injected: {e:?}");
        }
        probe
            .trace()
            .into_iter()
            .zip(first..)
            .map(|(what, number)| Operation { number, what })
            .collect()
    }

    /// Forks this file system, runs `run` on the fork with `fault` armed at operation
    /// `number`, and returns the fork with what `run` returned. A power cut has fired by then
    /// if `fault` was one; [`SimStorage::power_cut`] turns the power back on.
    pub fn fork_with_fault<T>(
        &self,
        number: u64,
        fault: Fault,
        run: impl FnOnce(&SimStorage) -> T,
    ) -> (SimStorage, T) {
        let fork = self.fork();
        fork.arm(number, fault);
        let out = run(&fork);
        (fork, out)
    }
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct SimWrite {
    sim: SimStorage,
    node: usize,
    path: PathBuf,
}

impl io::Write for SimWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.sim.lock();
        let torn = s.step("write", &self.path, Op::Write)?;
        let n = if torn { buf.len() / 2 } else { buf.len() };
        s.nodes[self.node].data.extend_from_slice(&buf[..n]);
        if torn {
            s.dead = true;
            return Err(dead());
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteFile for SimWrite {
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.sim.lock();
        s.step("sync", &self.path, Op::Other)?;
        if !s.sync_skipped(&self.path) {
            let node = &mut s.nodes[self.node];
            node.synced = node.data.clone();
        }
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.sim.lock();
        s.step("set_len", &self.path, Op::Other)?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        s.nodes[self.node].data.resize(len, 0);
        Ok(())
    }
}

struct SimRead {
    sim: SimStorage,
    node: usize,
}

impl ReadFile for SimRead {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let s = self.sim.lock();
        let data = &s.nodes[self.node].data;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(buf.len()) {
            Some(end) if end <= data.len() => {
                buf.copy_from_slice(&data[start..end]);
                Ok(())
            }
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.sim.lock().nodes[self.node].data.len() as u64)
    }
}

#[derive(Debug)]
struct SimLock {
    sim: SimStorage,
    path: PathBuf,
}
impl LockGuard for SimLock {}
impl Drop for SimLock {
    fn drop(&mut self) {
        self.sim.lock().locks.remove(&self.path);
    }
}

#[derive(Debug)]
struct NoLock;
impl LockGuard for NoLock {}

impl SimStorage {
    fn create_node(&self, path: &Path, must_be_new: bool) -> io::Result<Box<dyn WriteFile>> {
        let mut s = self.lock();
        s.step("create", path, Op::Grow)?;
        s.parent_must_exist(path)?;
        if must_be_new && s.live.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        let node = s.new_node(false);
        s.live.insert(path.to_path_buf(), node);
        Ok(Box::new(SimWrite {
            sim: self.clone(),
            node,
            path: path.to_path_buf(),
        }))
    }
}

impl Storage for SimStorage {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.create_node(path, false)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.create_node(path, true)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let s = self.lock();
        if s.dead {
            return Err(dead());
        }
        let node = s.file(path)?;
        Ok(Box::new(SimWrite {
            sim: self.clone(),
            node,
            path: path.to_path_buf(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        let s = self.lock();
        if s.dead {
            return Err(dead());
        }
        let node = s.file(path)?;
        Ok(Arc::new(SimRead {
            sim: self.clone(),
            node,
        }))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        let s = self.lock();
        if s.is_base(path) {
            return Ok(0);
        }
        match s.live.get(path) {
            Some(&n) => Ok(s.nodes[n].data.len() as u64),
            None => Err(not_found(path)),
        }
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        let s = self.lock();
        if s.dead {
            return Err(dead());
        }
        if !s.is_dir(dir) {
            return Err(not_found(dir));
        }
        Ok(s.live
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, &n)| Entry {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                is_dir: s.nodes[n].dir,
                is_file: !s.nodes[n].dir,
            })
            .collect())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step("rename", to, Op::Other)?;
        let node = s.file(from)?;
        s.parent_must_exist(to)?;
        s.live.remove(from);
        s.live.insert(to.to_path_buf(), node);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step("sync_dir", dir, Op::Other)?;
        if !s.is_dir(dir) {
            return Err(not_found(dir));
        }
        let inside = |p: &Path| p.parent() == Some(dir);
        let live: Vec<(PathBuf, usize)> = s
            .live
            .iter()
            .filter(|(p, _)| inside(p))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        s.durable.retain(|p, _| !inside(p));
        s.durable.extend(live);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step("remove", path, Op::Other)?;
        s.file(path)?;
        s.live.remove(path);
        Ok(())
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step("mkdir", dir, Op::Grow)?;
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !s.is_dir(d))
            .map(Path::to_path_buf)
            .collect();
        for d in missing.into_iter().rev() {
            if s.live.contains_key(&d) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: is a file", d.display()),
                ));
            }
            let node = s.new_node(true);
            s.live.insert(d, node);
        }
        Ok(())
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step("remove_dir_all", dir, Op::Other)?;
        if !s.is_dir(dir) {
            return Err(not_found(dir));
        }
        s.live.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }
    fn try_lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockError> {
        let mut s = self.lock();
        if s.dead {
            return Err(LockError::Io(dead()));
        }
        if let Some(who) = s.locks.get(path) {
            return Err(LockError::Held(who.clone()));
        }
        s.locks.insert(path.to_path_buf(), holder.to_string());
        Ok(Box::new(SimLock {
            sim: self.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>> {
        if !self.lock().is_dir(dir) {
            self.create_dir_all(dir)?;
        }
        // One process: nothing to serialise against.
        Ok(Box::new(NoLock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fs() -> (SimStorage, PathBuf) {
        let root = PathBuf::from("/sim/store");
        (SimStorage::new(&root), root)
    }

    #[test]
    fn a_synced_file_without_a_synced_name_is_lost() {
        let (sim, root) = fs();
        let mut f = sim.create(&root.join("a")).unwrap();
        f.write_all(b"hello").unwrap();
        f.sync().unwrap();
        drop(f);
        sim.power_cut(Loss::All);
        assert!(!sim.exists(&root.join("a")));
    }

    #[test]
    fn a_synced_name_without_synced_bytes_comes_back_empty() {
        let (sim, root) = fs();
        let mut f = sim.create(&root.join("a")).unwrap();
        f.write_all(b"hello").unwrap();
        sim.sync_dir(&root).unwrap();
        drop(f);
        sim.power_cut(Loss::All);
        assert_eq!(sim.read(&root.join("a")).unwrap(), b"");
    }

    #[test]
    fn a_rename_is_durable_only_after_its_directory_is_synced() {
        let (sim, root) = fs();
        let mut f = sim.create(&root.join("tmp")).unwrap();
        f.write_all(b"x").unwrap();
        f.sync().unwrap();
        sim.sync_dir(&root).unwrap();
        sim.rename(&root.join("tmp"), &root.join("final")).unwrap();
        let after_rename = sim.fork();
        after_rename.power_cut(Loss::All);
        assert!(after_rename.exists(&root.join("tmp")));
        assert!(!after_rename.exists(&root.join("final")));
        sim.sync_dir(&root).unwrap();
        sim.power_cut(Loss::All);
        assert_eq!(sim.read(&root.join("final")).unwrap(), b"x");
        assert!(!sim.exists(&root.join("tmp")));
    }

    #[test]
    fn a_file_in_a_directory_whose_name_was_never_synced_is_lost() {
        let (sim, root) = fs();
        sim.create_dir_all(&root.join("d")).unwrap();
        let mut f = sim.create(&root.join("d/a")).unwrap();
        f.write_all(b"x").unwrap();
        f.sync().unwrap();
        sim.sync_dir(&root.join("d")).unwrap();
        sim.power_cut(Loss::All);
        assert!(!sim.exists(&root.join("d/a")));
        assert!(!sim.exists(&root.join("d")));
    }

    #[test]
    fn a_torn_power_cut_keeps_a_prefix_of_the_unsynced_tail() {
        let (sim, root) = fs();
        let mut f = sim.create(&root.join("log")).unwrap();
        f.write_all(b"durable|").unwrap();
        f.sync().unwrap();
        sim.sync_dir(&root).unwrap();
        f.write_all(&[7u8; 3000]).unwrap();
        drop(f);
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 1..40 {
            let s = sim.fork();
            s.power_cut(Loss::Torn(seed));
            let got = s.read(&root.join("log")).unwrap();
            assert!(got.starts_with(b"durable|"), "seed {seed}");
            assert!(got[8..].iter().all(|&b| b == 7 || b == 0), "seed {seed}");
            lengths.insert(got.len());
        }
        assert!(lengths.len() > 5, "tears should vary: {lengths:?}");
    }

    #[test]
    fn an_armed_power_cut_stops_every_later_operation() {
        let (sim, root) = fs();
        sim.arm(2, Fault::PowerCut);
        let mut f = sim.create(&root.join("a")).unwrap();
        assert!(f.write_all(b"x").is_err());
        assert!(sim.is_off());
        assert!(sim.sync_dir(&root).is_err());
        sim.power_cut(Loss::All);
        assert!(!sim.is_off());
        assert!(!sim.exists(&root.join("a")));
    }

    #[test]
    fn enospc_lasts_until_space_is_freed_and_eio_fails_one_operation() {
        let (sim, root) = fs();
        sim.arm(1, Fault::Enospc);
        let e = sim.create(&root.join("a")).err().unwrap();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::NOSPC.raw_os_error())
        );
        assert!(sim.create(&root.join("b")).is_err());
        sim.free_space();
        let mut f = sim.create(&root.join("c")).unwrap();
        sim.arm(sim.ops() + 1, Fault::Eio);
        let e = f.write_all(b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::IO.raw_os_error()));
        f.write_all(b"y").unwrap();
        assert_eq!(sim.read(&root.join("c")).unwrap(), b"y");
    }

    #[test]
    fn a_skipped_sync_makes_nothing_durable() {
        let (sim, root) = fs();
        sim.skip_sync("seg");
        let mut f = sim.create(&root.join("a.seg")).unwrap();
        f.write_all(b"x").unwrap();
        f.sync().unwrap();
        sim.sync_dir(&root).unwrap();
        sim.power_cut(Loss::All);
        assert_eq!(sim.read(&root.join("a.seg")).unwrap(), b"");
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped_or_the_power_goes() {
        let (sim, root) = fs();
        let g = sim.try_lock(&root.join("l"), "1 host").unwrap();
        assert!(matches!(
            sim.try_lock(&root.join("l"), "2 host"),
            Err(LockError::Held(h)) if h == "1 host"
        ));
        drop(g);
        let _g = sim.try_lock(&root.join("l"), "3 host").unwrap();
        sim.power_cut(Loss::All);
        assert!(sim.try_lock(&root.join("l"), "4 host").is_ok());
    }
}
