//! Test helpers, shared with other crates' tests (cargo feature `testing`):
//!
//! * [`build_rescue_tree`] generates a directory with every odd case of DESIGN §4.
//! * [`compare_trees`] compares two real directories on everything a restore must keep.
//! * [`without_dac_override`] runs code on a thread that lost root's permission bypass, so
//!   that a mode-000 file really is unreadable even for root (capabilities are per thread on
//!   Linux, and threads spawned from that thread inherit the reduced set).
//! * [`pseudo_random`], [`set_mtime`] and [`let_ctimes_settle`]: the small helpers the
//!   tests share, so that each exists once.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::sys;

/// What the rescue tree contains, for tests to assert on.
#[derive(Debug, Clone)]
pub struct RescueTreeManifest {
    pub root: PathBuf,
    /// The big directory and how many entries it holds.
    pub big_dir: PathBuf,
    pub big_dir_entries: usize,
    /// Files and directories with mode 000: unreadable once DAC override is dropped.
    pub unreadable: Vec<PathBuf>,
    /// Paths whose names are not UTF-8.
    pub non_utf8: Vec<PathBuf>,
    pub sparse_files: Vec<PathBuf>,
    /// Whether device nodes, foreign owners and trusted.* xattrs were created (root only).
    pub as_root: bool,
}

/// How big the rescue tree is.
#[derive(Debug, Clone)]
pub struct RescueTreeOptions {
    /// Entries of the big directory. DESIGN §4 names 100k; the default 20k keeps the test
    /// suite fast while still far above any readdir buffer or small-vector threshold.
    pub big_dir_entries: usize,
}

impl Default for RescueTreeOptions {
    fn default() -> Self {
        RescueTreeOptions {
            big_dir_entries: 20_000,
        }
    }
}

fn p(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn write(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).expect("create file in rescue tree");
    f.write_all(data).expect("write file in rescue tree");
}

/// Deterministic pseudo-random bytes (xorshift), so that contents do not dedup by accident.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Waits until fresh ctimes are older than the stat cache's racy margin (50 ms), so the files
/// just written are cacheable. Not a timing assertion: only a precondition of a scenario.
pub fn let_ctimes_settle() {
    std::thread::sleep(std::time::Duration::from_millis(120));
}

/// Sets the mtime (and atime) of `path`, not following a final symlink.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    let c = sys::cstring(path.as_os_str().as_bytes()).expect("path without NUL");
    sys::lutimens_at(rustix::fs::CWD, &c, sec, nsec).expect("set mtime");
}

fn set_xattr(path: &Path, name: &[u8], value: &[u8]) {
    let c = sys::cstring(path.as_os_str().as_bytes()).expect("path without NUL");
    sys::lsetxattr(&c, name, value).expect("set xattr (is the filesystem xattr-capable?)");
}

fn mknod(path: &Path, mode: u32, dev: u64) {
    let c = sys::cstring(path.as_os_str().as_bytes()).expect("path without NUL");
    sys::mknod_at(rustix::fs::CWD, &c, mode, dev).expect("mknod");
}

/// Builds the rescue tree under `dir` (which must exist and be empty). Needs a filesystem
/// with user xattrs and SEEK_HOLE (ext4, xfs, btrfs, tmpfs). Device nodes, foreign owners
/// and `trusted.*` xattrs are created only when running as root.
pub fn build_rescue_tree(dir: &Path, opts: &RescueTreeOptions) -> RescueTreeManifest {
    use std::fs;
    let root = dir.to_path_buf();
    let as_root = sys::is_root();
    let mkdir = |rel: &[u8]| fs::create_dir_all(p(&root, rel)).expect("mkdir in rescue tree");

    // Plain files of several sizes (one spans many chunks).
    mkdir(b"plain");
    write(&p(&root, b"plain/hello.txt"), b"hello, rescue\n");
    write(&p(&root, b"plain/empty"), b"");
    write(&p(&root, b"plain/medium.bin"), &pseudo_random(1, 3 << 20));
    write(
        &p(&root, b"plain/copy-of-medium.bin"),
        &pseudo_random(1, 3 << 20),
    );

    // Names that are not UTF-8, or otherwise awkward.
    mkdir(b"names");
    let mut non_utf8 = Vec::new();
    for name in [
        &b"latin1-caf\xe9"[..],
        b"\xff\xfe-invalid",
        b"new\nline",
        b"tab\there",
        b" leading space",
        b"-dash",
        b"back\\slash",
    ] {
        let mut rel = b"names/".to_vec();
        rel.extend_from_slice(name);
        write(&p(&root, &rel), name);
        if std::str::from_utf8(name).is_err() {
            non_utf8.push(p(&root, &rel));
        }
    }
    let long = vec![b'L'; 255];
    let mut rel = b"names/".to_vec();
    rel.extend_from_slice(&long);
    write(&p(&root, &rel), b"255-byte name");
    mkdir(b"names/\xc0\xaf-dir");
    write(
        &p(&root, b"names/\xc0\xaf-dir/inside"),
        b"in a non-UTF-8 directory",
    );
    non_utf8.push(p(&root, b"names/\xc0\xaf-dir"));

    // A big directory.
    mkdir(b"big");
    let big_dir = p(&root, b"big");
    let mut name = big_dir.as_os_str().as_bytes().to_vec();
    name.push(b'/');
    let base = name.len();
    for i in 0..opts.big_dir_entries {
        name.truncate(base);
        name.extend_from_slice(format!("f{i:06}").as_bytes());
        write(
            Path::new(OsStr::from_bytes(&name)),
            format!("{i}\n").as_bytes(),
        );
    }

    // FIFOs, sockets, devices.
    mkdir(b"special");
    mknod(
        &p(&root, b"special/fifo"),
        FileType::Fifo.as_raw_mode() | 0o640,
        0,
    );
    {
        let sock = p(&root, b"special/socket");
        let l = std::os::unix::net::UnixListener::bind(&sock).expect("bind unix socket");
        drop(l); // the socket file stays
    }
    if as_root {
        mknod(
            &p(&root, b"special/null"),
            FileType::CharacterDevice.as_raw_mode() | 0o666,
            sys::makedev(1, 3),
        );
        mknod(
            &p(&root, b"special/loop-blk"),
            FileType::BlockDevice.as_raw_mode() | 0o660,
            sys::makedev(7, 200),
        );
    }

    // Sparse files: data islands in holes, a file that is one hole.
    mkdir(b"sparse");
    let sparse1 = p(&root, b"sparse/islands.img");
    {
        let f = fs::File::create(&sparse1).expect("create sparse");
        f.set_len(64 << 20).expect("truncate sparse");
        use std::os::unix::fs::FileExt;
        f.write_all_at(&pseudo_random(2, 8192), 0).expect("write");
        f.write_all_at(&pseudo_random(3, 4096), 32 << 20)
            .expect("write");
        f.write_all_at(b"tail", (64 << 20) - 4).expect("write");
    }
    let sparse2 = p(&root, b"sparse/all-hole.img");
    fs::File::create(&sparse2)
        .and_then(|f| f.set_len(16 << 20))
        .expect("create hole file");

    // Hardlink groups (one spanning directories) and a lone file with a link outside? No:
    // everything stays inside the tree so that the groups are complete.
    mkdir(b"links/sub");
    write(&p(&root, b"links/a"), b"group one\n");
    fs::hard_link(p(&root, b"links/a"), p(&root, b"links/b")).expect("link");
    fs::hard_link(p(&root, b"links/a"), p(&root, b"links/sub/c")).expect("link");
    write(&p(&root, b"links/x"), b"group two\n");
    fs::hard_link(p(&root, b"links/x"), p(&root, b"links/y")).expect("link");
    mknod(
        &p(&root, b"links/fifo1"),
        FileType::Fifo.as_raw_mode() | 0o600,
        0,
    );
    fs::hard_link(p(&root, b"links/fifo1"), p(&root, b"links/fifo2")).expect("link fifo");

    // Symlinks: dangling, absolute, to a directory, a loop.
    mkdir(b"symlinks");
    let sl = |target: &[u8], rel: &[u8]| {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), p(&root, rel)).expect("symlink")
    };
    sl(b"does-not-exist", b"symlinks/dangling");
    sl(b"/etc/passwd", b"symlinks/absolute");
    sl(b"../plain", b"symlinks/to-dir");
    sl(b"loop", b"symlinks/loop");
    sl(b"\xff-non-utf8-target", b"symlinks/odd-target");

    // Extended attributes.
    mkdir(b"xattrs/dir");
    write(&p(&root, b"xattrs/file"), b"has xattrs\n");
    set_xattr(&p(&root, b"xattrs/file"), b"user.comment", b"hello");
    set_xattr(&p(&root, b"xattrs/file"), b"user.binary", b"\x00\xff\x00");
    set_xattr(&p(&root, b"xattrs/file"), b"user.empty", b"");
    set_xattr(&p(&root, b"xattrs/dir"), b"user.on-dir", b"yes");
    if as_root {
        set_xattr(&p(&root, b"xattrs/file"), b"trusted.asl-test", b"root only");
        set_xattr(&p(&root, b"symlinks/dangling"), b"trusted.on-link", b"1");
    }

    // Odd modes and owners.
    mkdir(b"modes");
    let chmod = |rel: &[u8], mode: u32| {
        fs::set_permissions(p(&root, rel), fs::Permissions::from_mode(mode)).expect("chmod")
    };
    write(&p(&root, b"modes/setuid"), b"#!/bin/sh\n");
    write(&p(&root, b"modes/setgid"), b"#!/bin/sh\n");
    mkdir(b"modes/sticky");
    write(&p(&root, b"modes/no-perms"), b"mode 000\n");
    mkdir(b"modes/locked-dir");
    write(
        &p(&root, b"modes/locked-dir/inside"),
        b"behind a mode 000 directory\n",
    );
    if as_root {
        write(&p(&root, b"modes/owned-1000"), b"uid 1000\n");
        write(&p(&root, b"modes/owned-nobody"), b"uid 65534\n");
        std::os::unix::fs::lchown(p(&root, b"modes/owned-1000"), Some(1000), Some(1000))
            .expect("chown");
        std::os::unix::fs::lchown(p(&root, b"modes/owned-nobody"), Some(65534), Some(65534))
            .expect("chown");
        std::os::unix::fs::lchown(p(&root, b"symlinks/absolute"), Some(1000), Some(100))
            .expect("chown symlink");
    }
    chmod(b"modes/setuid", 0o4755);
    chmod(b"modes/setgid", 0o2750);
    chmod(b"modes/sticky", 0o1777);
    chmod(b"modes/no-perms", 0o000);
    chmod(b"modes/locked-dir", 0o000);

    // Deep nesting.
    let mut deep = b"deep".to_vec();
    for _ in 0..40 {
        deep.extend_from_slice(b"/d");
    }
    mkdir(&deep);
    deep.extend_from_slice(b"/bottom");
    write(&p(&root, &deep), b"40 levels down\n");

    // Timestamps: before 1970, with nanoseconds, far future.
    mkdir(b"times");
    write(&p(&root, b"times/old"), b"1969\n");
    write(&p(&root, b"times/nanos"), b"ns\n");
    write(&p(&root, b"times/future"), b"2200\n");
    set_mtime(&p(&root, b"times/old"), -86_400 * 365, 5);
    set_mtime(&p(&root, b"times/nanos"), 1_700_000_000, 123_456_789);
    set_mtime(&p(&root, b"times/future"), 7_258_118_400, 0);
    set_mtime(&p(&root, b"symlinks/to-dir"), 1_600_000_000, 42);

    // Last: directory mtimes that are not "now" (after their contents exist).
    set_mtime(&p(&root, b"times"), 1_500_000_000, 1);
    set_mtime(&p(&root, b"modes/sticky"), 1_400_000_000, 2);

    RescueTreeManifest {
        unreadable: vec![p(&root, b"modes/no-perms"), p(&root, b"modes/locked-dir")],
        root,
        big_dir,
        big_dir_entries: opts.big_dir_entries,
        non_utf8,
        sparse_files: vec![sparse1, sparse2],
        as_root,
    }
}

/// Runs `f` on a new thread whose effective capabilities lack `CAP_DAC_OVERRIDE` and
/// `CAP_DAC_READ_SEARCH`: file modes then apply even to root. Threads `f` spawns inherit
/// the reduced set; no other thread of the process is affected.
pub fn without_dac_override<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            drop_dac_capabilities().expect("drop CAP_DAC_OVERRIDE for this thread");
            f()
        })
        .join()
        .expect("thread without DAC override panicked")
    })
}

fn drop_dac_capabilities() -> std::io::Result<()> {
    use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
    let mut caps = capabilities(None)?;
    caps.effective -= CapabilitySet::DAC_OVERRIDE | CapabilitySet::DAC_READ_SEARCH;
    set_capabilities(None, caps)?;
    Ok(())
}

/// What [`compare_trees`] looks at, per path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    kind: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    link_target: Option<Vec<u8>>,
    /// The first path (in walk order) of this inode within the tree, when hardlinked.
    hardlink_first: Option<Vec<u8>>,
    holes: Vec<(u64, u64)>,
    content: Option<String>,
}

/// Compares two directory trees on type, mode, uid, gid, size, mtime (ns), device numbers,
/// xattrs, symlink targets, hardlink groups, holes (SEEK_HOLE) and content hashes. The two
/// roots' own metadata is not compared (a tree artifact does not record its root's).
/// Returns one line per difference; empty means identical.
pub fn compare_trees(a: &Path, b: &Path) -> Vec<String> {
    let (ma, mb) = (observe(a), observe(b));
    let mut diffs = Vec::new();
    for (path, oa) in &ma {
        let shown = String::from_utf8_lossy(path);
        match mb.get(path) {
            None => diffs.push(format!("{shown}: only in {}", a.display())),
            Some(ob) if ob != oa => {
                diffs.push(format!("{shown}: differs:\n  a: {oa:?}\n  b: {ob:?}"));
            }
            Some(_) => {}
        }
    }
    for path in mb.keys() {
        if !ma.contains_key(path) {
            diffs.push(format!(
                "{}: only in {}",
                String::from_utf8_lossy(path),
                b.display()
            ));
        }
    }
    diffs
}

fn observe(root: &Path) -> BTreeMap<Vec<u8>, Observed> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            p(root, &rel)
        };
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        for name in names {
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(&name);
            let path = p(root, &r);
            let m = std::fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
            let kind = FileType::from_raw_mode(m.mode());
            let cpath = sys::cstring(path.as_os_str().as_bytes()).expect("no NUL");
            let mut o = Observed {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if kind == FileType::Directory {
                    0
                } else {
                    m.size()
                },
                mtime: (m.mtime(), m.mtime_nsec()),
                rdev: m.rdev(),
                xattrs: sys::lxattrs(&cpath)
                    .unwrap_or_else(|e| panic!("xattrs {shown}: {e}", shown = path.display())),
                link_target: None,
                hardlink_first: None,
                holes: Vec::new(),
                content: None,
            };
            if kind != FileType::Directory && m.nlink() > 1 {
                let first = inodes
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| r.clone());
                o.hardlink_first = Some(first.clone());
            }
            match kind {
                FileType::Symlink => {
                    o.link_target = Some(
                        std::fs::read_link(&path)
                            .expect("readlink")
                            .as_os_str()
                            .as_bytes()
                            .to_vec(),
                    );
                }
                FileType::RegularFile => {
                    let f = std::fs::File::open(&path)
                        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                    o.holes = sys::holes(&f, m.size()).expect("SEEK_HOLE");
                    let mut h = blake3::Hasher::new();
                    h.update_reader(&f).expect("read file");
                    o.content = Some(h.finalize().to_hex().to_string());
                }
                FileType::Directory => stack.push(r.clone()),
                _ => {}
            }
            out.insert(r, o);
        }
    }
    // A hardlink "group" of one member within the tree is not a group.
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for o in out.values() {
        if let Some(f) = &o.hardlink_first {
            *counts.entry(f.clone()).or_default() += 1;
        }
    }
    for o in out.values_mut() {
        if o.hardlink_first.as_ref().is_some_and(|f| counts[f] < 2) {
            o.hardlink_first = None;
        }
    }
    out
}
