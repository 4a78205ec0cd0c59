//! The stat cache: `(dev, inode, size, mtime, ctime) → (content reference, holes)` so that an
//! unchanged re-intake only stats files.
//!
//! It is a derived cache: deleting or damaging the file loses nothing (the next intake reads
//! everything again), and a hit is only trusted when the store still holds the reference.
//! The file is written atomically (temporary file, fsync, rename) at the end of an intake and
//! holds exactly the files that intake saw, so it never grows with deleted files. An intake
//! writes its entries to a scratch file as files complete ([`CacheWriter`]), so the new cache
//! is never in memory; the old one is, for lookups.
//!
//! Layout (little-endian): magic `ASLSTC01`, u64 entry count, then per entry `dev u64,
//! ino u64, size u64, mtime_sec i64, mtime_nsec u32, ctime_sec i64, ctime_nsec u32,
//! reference (u16 hash id + 32-byte digest), hole count u32, holes (offset u64, len u64)…`,
//! and a trailing 32-byte BLAKE3 of everything before it.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use asl_store::{HashAlgo, Reference};

use crate::tree::Hole;

const MAGIC: &[u8; 8] = b"ASLSTC01";

/// The bytes of an entry without holes: dev, ino, size, mtime (8 + 4), ctime (8 + 4), the
/// 34-byte reference and the hole count.
const ENTRY_MIN: u64 = 8 + 8 + 8 + 12 + 12 + 34 + 4;

/// Where the stat cache of an intake of `paths` lives in a store: one cache per set of input
/// paths, so that intakes of different trees do not evict each other's entries. Every
/// front end (the CLI, libasl) uses this, so that their intakes share the cache.
pub fn path_for(layout: &asl_store::Layout, paths: &[std::path::PathBuf]) -> std::path::PathBuf {
    let mut key = Vec::new();
    for p in paths {
        key.extend_from_slice(p.as_os_str().as_encoded_bytes());
        key.push(0);
    }
    let h = HashAlgo::Blake3.digest(&key);
    layout.cache().join(format!("statcache-{}", h.short()))
}

/// What identifies an unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

impl FileIdentity {
    pub fn from_stat(st: &rustix::fs::Stat) -> FileIdentity {
        FileIdentity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        }
    }
}

/// One cached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedContent {
    pub identity: FileIdentity,
    pub content: Reference,
    pub holes: Vec<Hole>,
}

/// The stat cache, keyed by (dev, inode).
///
/// What was loaded stays in its file: loading checks the whole file and keeps, per entry,
/// a 64-bit key of (dev, inode) and the entry's offset (16 bytes an entry, sorted), and a
/// lookup reads the one entry back. A million files thus cost 16 MB, where decoded entries
/// took 120 MB. Entries inserted later go to a map and win over loaded ones.
#[derive(Debug, Default)]
pub struct StatCache {
    /// (key_of_id, offset of the entry in `source`), sorted.
    loaded: Vec<(u64, u64)>,
    source: Option<Source>,
    map: HashMap<(u64, u64), CachedContent>,
}

/// Where loaded entries are read back from.
#[derive(Debug)]
enum Source {
    File(std::fs::File),
    Bytes(Vec<u8>),
}

impl Source {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        match self {
            Source::File(f) => std::os::unix::fs::FileExt::read_exact_at(f, buf, offset),
            Source::Bytes(b) => {
                let s = usize::try_from(offset)
                    .ok()
                    .and_then(|o| b.get(o..o.checked_add(buf.len())?))
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(s);
                Ok(())
            }
        }
    }
}

fn key_of(c: &CachedContent) -> (u64, u64) {
    (c.identity.dev, c.identity.ino)
}

/// The 64-bit key a loaded entry is found by. Two files may share one (it is a hash); a
/// lookup then reads each and compares the whole identity.
fn key_of_id(dev: u64, ino: u64) -> u64 {
    ino ^ dev.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// Decodes the entry at the start of `b` (its fixed part; the holes follow): the identity,
/// the reference and the hole count.
fn decode_fixed(b: &[u8; ENTRY_MIN as usize]) -> Option<(FileIdentity, Reference, u32)> {
    let u64_ = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
    let u32_ = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
    let identity = FileIdentity {
        dev: u64_(0),
        ino: u64_(8),
        size: u64_(16),
        mtime: (u64_(24) as i64, u32_(32)),
        ctime: (u64_(36) as i64, u32_(44)),
    };
    let content = Reference::from_bytes(&b[48..82]).ok()?;
    Some((identity, content, u32_(82)))
}

/// Reads `n` holes of 16 bytes each.
fn decode_holes(b: &[u8]) -> Vec<Hole> {
    b.chunks_exact(16)
        .map(|h| Hole {
            offset: u64::from_le_bytes(h[..8].try_into().unwrap_or_default()),
            len: u64::from_le_bytes(h[8..].try_into().unwrap_or_default()),
        })
        .collect()
}

impl StatCache {
    pub fn new() -> StatCache {
        StatCache::default()
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.map.is_empty()
    }

    /// The loaded entry at `offset`, read back from the source.
    fn read_entry(&self, offset: u64) -> Option<CachedContent> {
        let source = self.source.as_ref()?;
        let mut fixed = [0u8; ENTRY_MIN as usize];
        source.read_exact_at(&mut fixed, offset).ok()?;
        let (identity, content, nh) = decode_fixed(&fixed)?;
        let mut holes = vec![0u8; nh as usize * 16];
        source.read_exact_at(&mut holes, offset + ENTRY_MIN).ok()?;
        Some(CachedContent {
            identity,
            content,
            holes: decode_holes(&holes),
        })
    }

    /// Every entry, inserted ones first, then the loaded ones no insert replaced, read back
    /// one at a time. A file the intake saw twice (through two input paths) was written
    /// twice and comes twice.
    fn all(&self) -> impl Iterator<Item = CachedContent> + '_ {
        let loaded = self
            .loaded
            .iter()
            .filter_map(|&(_, offset)| self.read_entry(offset))
            .filter(|c| !self.map.contains_key(&key_of(c)));
        self.map.values().cloned().chain(loaded)
    }

    /// Every entry once: for saving small caches and for tests.
    fn entries(&self) -> Vec<CachedContent> {
        let mut seen = std::collections::HashSet::new();
        self.all().filter(|c| seen.insert(key_of(c))).collect()
    }

    /// Loads a cache file. A missing, truncated or damaged file gives an empty cache: the
    /// cache is derived, so the only cost is reading files again. The whole file is checked
    /// as it is read; only a key and an offset per entry are kept.
    pub fn load(path: &Path) -> StatCache {
        let Ok(f) = std::fs::File::open(path) else {
            return StatCache::default();
        };
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return StatCache::default();
        };
        let Some(loaded) = Self::index_from(std::io::BufReader::new(&f), len) else {
            return StatCache::default();
        };
        StatCache {
            loaded,
            source: Some(Source::File(f)),
            map: HashMap::new(),
        }
    }

    /// Every cached content reference: what a client asks a remote store about (in a few
    /// batched requests) before it trusts the cache. Not deduplicated.
    pub fn contents(&self) -> impl Iterator<Item = Reference> + '_ {
        self.all().map(|c| c.content)
    }

    /// The cached content of a file whose identity is unchanged.
    pub fn get(&self, id: &FileIdentity) -> Option<CachedContent> {
        if let Some(c) = self.map.get(&(id.dev, id.ino)) {
            return (c.identity == *id).then(|| c.clone());
        }
        let key = key_of_id(id.dev, id.ino);
        let first = self.loaded.partition_point(|e| e.0 < key);
        self.loaded[first..]
            .iter()
            .take_while(|e| e.0 == key)
            .filter_map(|e| self.read_entry(e.1))
            .find(|c| (c.identity.dev, c.identity.ino) == (id.dev, id.ino))
            .filter(|c| c.identity == *id)
    }

    pub fn insert(&mut self, c: CachedContent) {
        self.map.insert((c.identity.dev, c.identity.ino), c);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.len() * 100);
        self.encode_to(&mut out)
            .expect("writing into a Vec does not fail");
        out
    }

    /// Writes the encoded cache to `out` as it goes, hashing alongside.
    fn encode_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut w = Hashing {
            inner: out,
            hasher: HashAlgo::Blake3.hasher(),
        };
        w.write_all(MAGIC)?;
        let mut items = self.entries();
        w.write_all(&(items.len() as u64).to_le_bytes())?;
        // Sorted for a deterministic file (useful when comparing caches while debugging).
        items.sort_by_key(key_of);
        for c in &items {
            write_entry(&mut w, c)?;
        }
        let sum = w.hasher.finish();
        w.inner.write_all(sum.digest())
    }

    pub fn decode(bytes: &[u8]) -> Option<StatCache> {
        let loaded = Self::index_from(bytes, bytes.len() as u64)?;
        Some(StatCache {
            loaded,
            source: Some(Source::Bytes(bytes.to_vec())),
            map: HashMap::new(),
        })
    }

    /// Checks `len` bytes from `r` (magic, every entry, the exact length, the trailing
    /// BLAKE3 of the rest) and returns each entry's key and offset, sorted; `None` when
    /// anything is wrong.
    fn index_from(r: impl std::io::Read, len: u64) -> Option<Vec<(u64, u64)>> {
        let body_len = len.checked_sub(32).filter(|&b| b >= 16)?;
        let mut r = Hashing {
            inner: &mut r.take(body_len),
            hasher: HashAlgo::Blake3.hasher(),
        };
        let mut head = [0u8; 16];
        r.read_exact(&mut head).ok()?;
        if &head[..8] != MAGIC {
            return None;
        }
        let count = u64::from_le_bytes(head[8..].try_into().ok()?);
        // Room for the entries the count announces, as far as the bytes can hold them (an
        // entry takes at least ENTRY_MIN bytes), so a damaged count cannot make it allocate
        // without bound.
        let mut loaded = Vec::with_capacity(count.min(body_len / ENTRY_MIN) as usize);
        let mut offset = 16u64;
        let mut holes = Vec::new();
        for _ in 0..count {
            let mut fixed = [0u8; ENTRY_MIN as usize];
            r.read_exact(&mut fixed).ok()?;
            let (identity, _, nh) = decode_fixed(&fixed)?;
            let holes_len = u64::from(nh) * 16;
            if holes_len > body_len {
                return None;
            }
            holes.resize(holes_len as usize, 0);
            r.read_exact(&mut holes).ok()?;
            loaded.push((key_of_id(identity.dev, identity.ino), offset));
            offset += ENTRY_MIN + holes_len;
        }
        // The body must end exactly here.
        if r.read(&mut [0u8; 1]).ok()? != 0 {
            return None;
        }
        let computed = r.hasher.finish();
        let inner = r.inner.get_mut();
        let mut sum = [0u8; 32];
        inner.read_exact(&mut sum).ok()?;
        if computed.digest() != &sum {
            return None;
        }
        // Written by an intake the entries are in the order files completed.
        loaded.sort_unstable();
        Some(loaded)
    }

    /// Writes the cache atomically: a temporary file in the same directory, fsync, rename,
    /// fsync of the directory. Creates the parent directory when missing.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomically(path, |f| self.encode_to(f))
    }
}

/// One entry in the file's layout.
fn write_entry(w: &mut impl Write, c: &CachedContent) -> std::io::Result<()> {
    let id = &c.identity;
    let mut rec = Vec::with_capacity(ENTRY_MIN as usize + 16 * c.holes.len());
    rec.extend_from_slice(&id.dev.to_le_bytes());
    rec.extend_from_slice(&id.ino.to_le_bytes());
    rec.extend_from_slice(&id.size.to_le_bytes());
    rec.extend_from_slice(&id.mtime.0.to_le_bytes());
    rec.extend_from_slice(&id.mtime.1.to_le_bytes());
    rec.extend_from_slice(&id.ctime.0.to_le_bytes());
    rec.extend_from_slice(&id.ctime.1.to_le_bytes());
    rec.extend_from_slice(&c.content.to_bytes());
    rec.extend_from_slice(&(c.holes.len() as u32).to_le_bytes());
    for h in &c.holes {
        rec.extend_from_slice(&h.offset.to_le_bytes());
        rec.extend_from_slice(&h.len.to_le_bytes());
    }
    w.write_all(&rec)
}

/// Writes `path` through `fill` into a temporary file next to it, fsyncs it, renames it into
/// place and fsyncs the directory; the temporary file is removed on failure.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent_of(path);
    std::fs::create_dir_all(dir)?;
    let tmp = sibling(path, "tmp");
    let result = (|| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `PATH.KIND.PID`: a scratch file of this process next to `path`.
fn sibling(path: &Path, kind: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{kind}.{}", std::process::id()));
    name.into()
}

/// A new stat cache written while an intake runs, entry by entry, so that it is never held in
/// memory: the entries go to a scratch file next to the cache as they come, and
/// [`CacheWriter::finish`] writes the cache file (header, the entries, checksum) from it
/// atomically. Entries are in the order they came, not sorted (the format does not require
/// an order). A writer dropped without `finish` removes its scratch file and leaves the old
/// cache in place.
pub struct CacheWriter {
    path: std::path::PathBuf,
    scratch: std::path::PathBuf,
    entries: Option<std::io::BufWriter<std::fs::File>>,
    count: u64,
    /// The first write that failed: the cache is then not written at all.
    failed: Option<std::io::Error>,
}

impl CacheWriter {
    /// Starts a cache for `path` (its directory is created when missing). Scratch files of
    /// earlier writers of `path` whose process is gone (a killed intake) are removed.
    pub fn create(path: &Path) -> std::io::Result<CacheWriter> {
        let dir = parent_of(path);
        std::fs::create_dir_all(dir)?;
        remove_stale_scratch(path);
        let scratch = sibling(path, "entries");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&scratch)?;
        Ok(CacheWriter {
            path: path.to_path_buf(),
            scratch,
            entries: Some(std::io::BufWriter::new(f)),
            count: 0,
            failed: None,
        })
    }

    pub fn add(&mut self, c: &CachedContent) {
        if self.failed.is_some() {
            return;
        }
        let Some(w) = self.entries.as_mut() else {
            return;
        };
        match write_entry(w, c) {
            Ok(()) => self.count += 1,
            Err(e) => self.failed = Some(e),
        }
    }

    /// Writes the cache file, replacing the old one; the first failure of any write so far
    /// is returned instead.
    pub fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let entries = self.entries.take().expect("finish runs once");
        let mut entries = entries.into_inner().map_err(|e| e.into_error())?;
        entries.seek(std::io::SeekFrom::Start(0))?;
        let count = self.count;
        write_atomically(&self.path, |f| {
            let mut w = Hashing {
                inner: f,
                hasher: HashAlgo::Blake3.hasher(),
            };
            w.write_all(MAGIC)?;
            w.write_all(&count.to_le_bytes())?;
            std::io::copy(&mut std::io::BufReader::new(&mut entries), &mut w)?;
            let sum = w.hasher.finish();
            w.inner.write_all(sum.digest())
        })
    }
}

/// Removes `PATH.entries.PID` files left by processes that no longer run.
fn remove_stale_scratch(path: &Path) {
    let (Some(name), Ok(list)) = (path.file_name(), std::fs::read_dir(parent_of(path))) else {
        return;
    };
    let mut prefix = name.to_owned();
    prefix.push(".entries.");
    let prefix = prefix.as_encoded_bytes();
    for entry in list.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.as_encoded_bytes().strip_prefix(prefix) else {
            continue;
        };
        let alive = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.scratch);
    }
}

/// A writer or reader that hashes what passes through it.
struct Hashing<'a, W> {
    inner: &'a mut W,
    hasher: asl_store::Hasher,
}

impl<R: std::io::Read> std::io::Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatCache {
        let mut c = StatCache::new();
        for i in 0..3u64 {
            c.insert(CachedContent {
                identity: FileIdentity {
                    dev: 7,
                    ino: i,
                    size: 100 + i,
                    mtime: (1_700_000_000, 5),
                    ctime: (1_700_000_001, 6),
                },
                content: HashAlgo::Blake3.digest(&i.to_le_bytes()),
                holes: if i == 1 {
                    vec![Hole { offset: 0, len: 10 }]
                } else {
                    vec![]
                },
            });
        }
        c
    }

    #[test]
    fn save_writes_exactly_the_encoded_cache_and_load_reads_it_back() {
        let c = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/statcache");
        c.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), c.encode());
        assert_eq!(StatCache::load(&path).encode(), c.encode());
        assert_eq!(StatCache::load(&path).len(), 3);
    }

    #[test]
    fn a_cache_written_entry_by_entry_loads_and_an_unfinished_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("statcache");
        let c = sample();
        let mut w = CacheWriter::create(&path).unwrap();
        for e in &c.entries() {
            w.add(e);
        }
        w.finish().unwrap();
        let loaded = StatCache::load(&path);
        assert_eq!(
            loaded.encode(),
            c.encode(),
            "same entries as the in-memory cache"
        );
        // A writer dropped unfinished (a failed intake) leaves the cache as it was and no
        // scratch file behind.
        let before = std::fs::read(&path).unwrap();
        let mut w = CacheWriter::create(&path).unwrap();
        w.add(&c.entries()[0]);
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // The scratch file of a killed writer (a pid that cannot run: above pid_max) goes at
        // the next start; this process's own would not.
        let stale = dir.path().join("statcache.entries.4294967295");
        std::fs::write(&stale, b"left by a killed intake").unwrap();
        let w = CacheWriter::create(&path).unwrap();
        assert!(!stale.exists());
        assert!(w.scratch.exists());
    }

    #[test]
    fn entries_written_out_of_order_are_found_and_an_insert_wins_over_the_loaded_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("statcache");
        let mut entries: Vec<CachedContent> = sample().entries();
        entries.sort_by_key(|c| std::cmp::Reverse(key_of(c)));
        let mut w = CacheWriter::create(&path).unwrap();
        for e in &entries {
            w.add(e);
        }
        w.finish().unwrap();
        let mut c = StatCache::load(&path);
        assert_eq!(c.len(), 3);
        for e in &entries {
            assert_eq!(c.get(&e.identity).as_ref(), Some(e));
            let mut changed = e.identity;
            changed.size += 1;
            assert_eq!(c.get(&changed), None, "a changed file is not a hit");
        }
        let mut newer = entries[0].clone();
        newer.identity.mtime.0 += 1;
        c.insert(newer.clone());
        assert_eq!(c.get(&newer.identity), Some(newer.clone()));
        assert_eq!(c.get(&entries[0].identity), None);
        assert_eq!(c.len(), 3);
    }

    /// Two files whose (dev, inode) give the same 64-bit key are both found, each as
    /// itself: the key only narrows the search, the identity decides.
    #[test]
    fn files_sharing_a_key_are_told_apart_by_their_identity() {
        let mut c = StatCache::new();
        let ino_b = 5 ^ key_of_id(7, 0) ^ key_of_id(8, 0);
        assert_eq!(key_of_id(7, 5), key_of_id(8, ino_b));
        for (dev, ino, seed) in [(7u64, 5u64, 1u64), (8, ino_b, 2)] {
            c.insert(CachedContent {
                identity: FileIdentity {
                    dev,
                    ino,
                    size: 1,
                    mtime: (2, 3),
                    ctime: (4, 5),
                },
                content: HashAlgo::Blake3.digest(&seed.to_le_bytes()),
                holes: vec![],
            });
        }
        let loaded = StatCache::decode(&c.encode()).unwrap();
        assert_eq!(loaded.loaded.len(), 2);
        assert_eq!(loaded.loaded[0].0, loaded.loaded[1].0);
        for e in c.entries() {
            assert_eq!(loaded.get(&e.identity), Some(e));
        }
    }

    #[test]
    fn an_entry_without_holes_takes_entry_min_bytes() {
        let mut c = StatCache::new();
        let e = sample()
            .entries()
            .into_iter()
            .find(|e| e.holes.is_empty())
            .unwrap();
        c.insert(e);
        // magic, count, the entry, checksum.
        assert_eq!(c.encode().len() as u64, 8 + 8 + ENTRY_MIN + 32);
    }

    #[test]
    fn cache_file_round_trips_and_any_flipped_byte_empties_it() {
        let c = sample();
        let bytes = c.encode();
        let d = StatCache::decode(&bytes).expect("decodes");
        assert_eq!(d.len(), 3);
        assert_eq!(d.encode(), bytes);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(StatCache::decode(&b).is_none(), "flip at {i} accepted");
        }
    }

    #[test]
    fn a_changed_ctime_or_size_misses() {
        let c = sample();
        let mut id = c.map[&(7, 1)].identity;
        assert!(c.get(&id).is_some());
        id.ctime.1 += 1;
        assert!(c.get(&id).is_none());
        id.ctime.1 -= 1;
        id.size += 1;
        assert!(c.get(&id).is_none());
    }

    #[test]
    fn save_is_atomic_and_load_of_a_missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cache/statcache-x");
        assert!(StatCache::load(&p).is_empty());
        sample().save(&p).unwrap();
        assert_eq!(StatCache::load(&p).len(), 3);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("statcache-x")]);
    }
}
