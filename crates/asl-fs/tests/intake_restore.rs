//! Intake and restore of real directory trees on the real filesystem, against the in-memory
//! store (the store's own tests cover blocks and segments; the CLI tests cover both together).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use asl_fs::testing::{
    RescueTreeOptions, build_rescue_tree, compare_trees, let_ctimes_settle, pseudo_random,
    set_mtime, without_dac_override,
};
use asl_fs::tree::{Kind, Operation};
use asl_fs::{IntakeOptions, IntakeSummary, Progress, RestoreOptions, intake, lookup, restore};
use asl_store::{AccessError, ArtifactRead, ArtifactWrite, HashAlgo, MemoryStore, Reference};
use rustix::io::Errno;

const EACCES: i32 = Errno::ACCESS.raw_os_error();
const EINVAL: i32 = Errno::INVAL.raw_os_error();

fn opts(threads: usize) -> IntakeOptions {
    IntakeOptions {
        threads,
        ..Default::default()
    }
}

/// Takes the directory `dir` into `store` with `threads` readers (0: all cores).
fn intake_dir(store: &dyn ArtifactWrite, dir: &Path, threads: usize) -> IntakeSummary {
    intake(
        store,
        &[dir.to_path_buf()],
        &opts(threads),
        &Progress::new(),
    )
    .unwrap()
}

fn small_rescue_tree(dir: &Path) -> asl_fs::testing::RescueTreeManifest {
    build_rescue_tree(
        dir,
        &RescueTreeOptions {
            big_dir_entries: 2_000,
        },
    )
}

#[test]
fn rescue_tree_round_trips_exactly_through_intake_and_restore() {
    let src = tempfile::tempdir().unwrap();
    let m = build_rescue_tree(src.path(), &RescueTreeOptions::default());
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 0);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(s.files > m.big_dir_entries as u64);
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("restored");
    let r = restore(&store, &s.root, None, &target, &RestoreOptions::default()).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.integrity_errors.is_empty());
    assert!(
        r.hardlinks >= 4,
        "two file groups and one FIFO group: {r:?}"
    );
    let diffs = compare_trees(src.path(), &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // And the restored tree intakes to the very same root.
    let again = intake(
        &store,
        std::slice::from_ref(&target),
        &opts(2),
        &Progress::new(),
    )
    .unwrap();
    assert_eq!(again.root, s.root);
}

#[test]
fn same_tree_gives_same_root_reference_with_1_and_4_threads() {
    let src = tempfile::tempdir().unwrap();
    small_rescue_tree(src.path());
    let mut roots = Vec::new();
    for threads in [1, 4] {
        let store = MemoryStore::new(HashAlgo::Blake3);
        let s = intake_dir(&store, src.path(), threads);
        roots.push(s.root);
    }
    assert_eq!(roots[0], roots[1]);
}

#[test]
fn unchanged_reintake_with_stat_cache_opens_no_file_and_gives_the_same_root() {
    let src = tempfile::tempdir().unwrap();
    small_rescue_tree(src.path());
    let cache = tempfile::tempdir().unwrap();
    let o = IntakeOptions {
        threads: 2,
        stat_cache: Some(cache.path().join("cache/statcache-test")),
        ..Default::default()
    };
    let store = MemoryStore::new(HashAlgo::Blake3);
    let_ctimes_settle();
    let first = intake(&store, &[src.path().to_path_buf()], &o, &Progress::new()).unwrap();
    assert!(first.files_opened > 2_000);
    assert!(first.bytes_read > 3 << 20);
    let second = intake(&store, &[src.path().to_path_buf()], &o, &Progress::new()).unwrap();
    assert_eq!(second.root, first.root);
    assert_eq!(second.files_opened, 0, "{second:?}");
    assert_eq!(second.bytes_read, 0);
    assert_eq!(second.bytes_new, 0);
    assert_eq!(second.stat_cache_hits, first.files_opened);

    // One changed file is read again, and only that one.
    std::fs::write(src.path().join("plain/hello.txt"), b"changed\n").unwrap();
    let third = intake(&store, &[src.path().to_path_buf()], &o, &Progress::new()).unwrap();
    assert_eq!(third.files_opened, 1);
    assert_ne!(third.root, first.root);
}

#[test]
fn stat_cache_hit_is_not_trusted_when_the_store_lacks_the_content() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), b"alpha").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let o = IntakeOptions {
        stat_cache: Some(cache.path().join("sc")),
        ..Default::default()
    };
    let_ctimes_settle();
    let s1 = intake(
        &MemoryStore::new(HashAlgo::Blake3),
        &[src.path().to_path_buf()],
        &o,
        &Progress::new(),
    )
    .unwrap();
    let fresh = MemoryStore::new(HashAlgo::Blake3);
    let s2 = intake(&fresh, &[src.path().to_path_buf()], &o, &Progress::new()).unwrap();
    assert_eq!(s2.files_opened, 1);
    assert_eq!(s2.root, s1.root);
    assert!(fresh.contains(&HashAlgo::Blake3.digest(b"alpha")));
}

#[test]
fn unreadable_file_and_directory_are_recorded_and_intake_goes_on() {
    let src = tempfile::tempdir().unwrap();
    let m = small_rescue_tree(src.path());
    let store = MemoryStore::new(HashAlgo::Blake3);
    // As root, mode 000 stops nothing; without CAP_DAC_OVERRIDE it does (for real, in the
    // kernel's permission check).
    let s = without_dac_override(|| intake_dir(&store, src.path(), 2));
    let mut failed: Vec<(PathBuf, Operation, i32)> = s
        .errors
        .iter()
        .map(|e| (e.path.clone(), e.op, e.errno))
        .collect();
    failed.sort();
    let mut expected = vec![
        (m.unreadable[1].clone(), Operation::Opendir, EACCES),
        (m.unreadable[0].clone(), Operation::Open, EACCES),
    ];
    expected.sort();
    assert_eq!(failed, expected);
    let file = lookup(&store, &s.root, b"modes/no-perms").unwrap();
    assert_eq!(file.kind, Kind::File);
    assert_eq!(file.content, None);
    assert_eq!(
        file.error.map(|e| (e.op, e.errno)),
        Some((Operation::Open, EACCES))
    );
    let dir = lookup(&store, &s.root, b"modes/locked-dir").unwrap();
    assert_eq!(dir.kind, Kind::Dir);
    assert_eq!(dir.error.map(|e| e.op), Some(Operation::Opendir));
    // Everything else was taken in.
    assert!(
        lookup(&store, &s.root, b"plain/medium.bin")
            .unwrap()
            .content
            .is_some()
    );
    // Restoring skips what was not taken in, says so, and restores the rest.
    let dst = tempfile::tempdir().unwrap();
    let t = dst.path().join("t");
    let r = restore(&store, &s.root, None, &t, &RestoreOptions::default()).unwrap();
    assert_eq!(r.not_taken_in.len(), 2, "{:?}", r.not_taken_in);
    assert!(t.join("plain/medium.bin").exists());
    assert!(!t.join("modes/no-perms").exists());
}

#[test]
fn file_changed_while_read_is_flagged_and_its_read_bytes_are_kept() {
    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("growing.log");
    std::fs::write(&big, pseudo_random(9, 2 << 20)).unwrap();
    std::fs::write(src.path().join("stable"), b"stable").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    // The hook runs in the worker right after open: appending there is a real change of the
    // file during its read, at a deterministic point.
    let target = big.clone();
    let o = IntakeOptions {
        threads: 2,
        after_open: Some(Arc::new(move |p: &Path| {
            if p == target {
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(b"appended while being read\n").unwrap();
            }
        })),
        ..Default::default()
    };
    let s = intake(&store, &[src.path().to_path_buf()], &o, &Progress::new()).unwrap();
    assert_eq!(s.changed_during_read, 1);
    let e = lookup(&store, &s.root, b"growing.log").unwrap();
    assert!(e.changed_during_read);
    // The bytes as they were when opened.
    assert_eq!(e.size, 2 << 20);
    assert_eq!(
        e.content,
        Some(HashAlgo::Blake3.digest(&pseudo_random(9, 2 << 20)))
    );
    assert!(
        !lookup(&store, &s.root, b"stable")
            .unwrap()
            .changed_during_read
    );
}

#[test]
fn sparse_file_holes_are_recorded_and_not_read() {
    let src = tempfile::tempdir().unwrap();
    let m = small_rescue_tree(src.path());
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake(
        &store,
        &[m.sparse_files[0].clone()],
        &opts(2),
        &Progress::new(),
    )
    .unwrap();
    let e = lookup(&store, &s.root, b"islands.img").unwrap();
    assert_eq!(e.size, 64 << 20);
    assert!(e.holes.len() >= 2, "{:?}", e.holes);
    let hole_bytes: u64 = e.holes.iter().map(|h| h.len).sum();
    assert!(hole_bytes > 60 << 20);
    assert!(s.bytes_read < 1 << 20, "read {} bytes", s.bytes_read);
    // The content reference is the hash of the full logical bytes.
    let logical = std::fs::read(&m.sparse_files[0]).unwrap();
    assert_eq!(e.content, Some(HashAlgo::Blake3.digest(&logical)));
}

#[test]
fn hardlinks_share_one_content_and_a_group_number() {
    let src = tempfile::tempdir().unwrap();
    small_rescue_tree(src.path());
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 2);
    let get = |p: &[u8]| lookup(&store, &s.root, p).unwrap();
    let (a, b, c, x) = (
        get(b"links/a"),
        get(b"links/b"),
        get(b"links/sub/c"),
        get(b"links/x"),
    );
    assert_ne!(a.hardlink_group, 0);
    assert_eq!(a.hardlink_group, b.hardlink_group);
    assert_eq!(a.hardlink_group, c.hardlink_group);
    assert_ne!(a.hardlink_group, x.hardlink_group);
    assert_eq!(a.content, c.content);
    assert_eq!(get(b"plain/hello.txt").hardlink_group, 0);
}

#[test]
fn fifos_sockets_and_devices_are_recorded_without_being_opened() {
    let src = tempfile::tempdir().unwrap();
    let m = small_rescue_tree(src.path());
    let store = MemoryStore::new(HashAlgo::Blake3);
    // Opening the FIFO for reading would block forever: finishing at all shows it was not.
    let s = intake(
        &store,
        &[src.path().join("special")],
        &opts(2),
        &Progress::new(),
    )
    .unwrap();
    assert_eq!(s.files_opened, 0);
    let get = |p: &[u8]| lookup(&store, &s.root, p).unwrap();
    assert_eq!(get(b"fifo").kind, Kind::Fifo);
    assert_eq!(get(b"fifo").mode, 0o640);
    assert_eq!(get(b"socket").kind, Kind::Socket);
    // Device nodes are only made as root, which CI has.
    assert!(m.as_root, "the rescue tree has device nodes only as root");
    let n = get(b"null");
    assert_eq!(
        (n.kind, n.rdev_major, n.rdev_minor),
        (Kind::CharDevice, 1, 3)
    );
    let b = get(b"loop-blk");
    assert_eq!(
        (b.kind, b.rdev_major, b.rdev_minor),
        (Kind::BlockDevice, 7, 200)
    );
}

#[test]
fn non_utf8_names_are_kept_byte_for_byte() {
    let src = tempfile::tempdir().unwrap();
    small_rescue_tree(src.path());
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake(
        &store,
        &[src.path().join("names")],
        &opts(1),
        &Progress::new(),
    )
    .unwrap();
    let e = lookup(&store, &s.root, b"\xff\xfe-invalid").unwrap();
    assert_eq!(e.name, b"\xff\xfe-invalid");
    let inside = lookup(&store, &s.root, b"\xc0\xaf-dir/inside").unwrap();
    assert_eq!(inside.kind, Kind::File);
}

#[test]
fn several_paths_make_a_synthetic_root_and_duplicate_names_are_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::create_dir(a.path().join("etc")).unwrap();
    std::fs::write(a.path().join("etc/x"), b"x").unwrap();
    std::fs::write(a.path().join("file"), b"f").unwrap();
    std::fs::create_dir(b.path().join("etc")).unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake(
        &store,
        &[a.path().join("file"), a.path().join("etc")],
        &opts(2),
        &Progress::new(),
    )
    .unwrap();
    let names: Vec<Vec<u8>> = asl_fs::ls(&store, &lookup(&store, &s.root, b"").unwrap())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"etc".to_vec(), b"file".to_vec()]);
    assert_eq!(lookup(&store, &s.root, b"etc/x").unwrap().kind, Kind::File);

    // A single file: a root tree with that one entry.
    let one = intake(&store, &[a.path().join("file")], &opts(2), &Progress::new()).unwrap();
    assert_eq!(lookup(&store, &one.root, b"file").unwrap().size, 1);

    let err = intake(
        &store,
        &[a.path().join("etc"), b.path().join("etc")],
        &opts(2),
        &Progress::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, asl_fs::IntakeError::DuplicateName { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("'etc'"));
}

#[test]
fn a_missing_input_path_fails_naming_it() {
    let store = MemoryStore::new(HashAlgo::Blake3);
    let err = intake(
        &store,
        &[PathBuf::from("/nonexistent/asl-input")],
        &opts(1),
        &Progress::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/asl-input"), "{err}");
    assert!(store.is_empty());
}

#[test]
fn excludes_leave_out_matching_names_and_paths() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("keep/cache")).unwrap();
    std::fs::write(src.path().join("keep/a.o"), b"obj").unwrap();
    std::fs::write(src.path().join("keep/a.c"), b"src").unwrap();
    std::fs::write(src.path().join("keep/cache/big"), b"cached").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let o = IntakeOptions {
        excludes: vec!["*.o".into(), "cache".into()],
        ..Default::default()
    };
    let s = intake(&store, &[src.path().to_path_buf()], &o, &Progress::new()).unwrap();
    assert_eq!(s.excluded, 2);
    assert!(lookup(&store, &s.root, b"keep/a.c").is_ok());
    assert!(lookup(&store, &s.root, b"keep/a.o").is_err());
    assert!(lookup(&store, &s.root, b"keep/cache").is_err());
    let bad = IntakeOptions {
        excludes: vec!["a[".into()],
        ..Default::default()
    };
    let err = intake(&store, &[src.path().to_path_buf()], &bad, &Progress::new()).unwrap_err();
    assert!(err.to_string().contains("a["), "{err}");
}

#[test]
fn restore_refuses_a_non_empty_target_and_writes_nothing() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), b"a").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 1);
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(dst.path().join("existing"), b"keep me").unwrap();
    let err = restore(
        &store,
        &s.root,
        None,
        dst.path(),
        &RestoreOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, asl_fs::RestoreError::TargetNotEmpty(_)));
    assert!(err.to_string().contains(&dst.path().display().to_string()));
    let names: Vec<_> = std::fs::read_dir(dst.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // A path that does not exist in the tree creates no target either.
    let t = dst.path().join("new");
    assert!(
        restore(
            &store,
            &s.root,
            Some(b"nope"),
            &t,
            &RestoreOptions::default()
        )
        .is_err()
    );
    assert!(!t.exists());
}

#[test]
fn restore_of_a_subpath_restores_only_that_subtree_or_file() {
    let src = tempfile::tempdir().unwrap();
    small_rescue_tree(src.path());
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 2);
    let dst = tempfile::tempdir().unwrap();
    let t = dst.path().join("sub");
    restore(
        &store,
        &s.root,
        Some(b"symlinks"),
        &t,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert!(compare_trees(&src.path().join("symlinks"), &t).is_empty());
    let t2 = dst.path().join("one");
    let r = restore(
        &store,
        &s.root,
        Some(b"plain/hello.txt"),
        &t2,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert_eq!(r.files, 1);
    assert_eq!(
        std::fs::read(t2.join("hello.txt")).unwrap(),
        b"hello, rescue\n"
    );
    assert_eq!(std::fs::read_dir(&t2).unwrap().count(), 1);
}

/// A store whose reads of one artifact fail verification: stands in for a flipped byte on
/// disk (the real store's own tests flip real bytes; here the subject is restore's reaction).
struct DamagedStore<'a> {
    inner: &'a MemoryStore,
    damaged: Reference,
}

impl ArtifactRead for DamagedStore<'_> {
    fn read_to(&self, r: &Reference, out: &mut dyn Write) -> Result<u64, AccessError> {
        if *r == self.damaged {
            out.write_all(b"garbage").map_err(AccessError::Sink)?;
            return Err(AccessError::Corrupt {
                reference: *r,
                actual: HashAlgo::Blake3.digest(b"garbage"),
            });
        }
        self.inner.read_to(r, out)
    }
    fn artifact_len(&self, r: &Reference) -> Option<u64> {
        self.inner.artifact_len(r)
    }
}

#[test]
fn corrupt_file_artifact_is_reported_by_path_and_restore_goes_on() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("d")).unwrap();
    std::fs::write(src.path().join("d/bad"), b"will be damaged").unwrap();
    std::fs::write(src.path().join("d/good"), b"fine").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 1);
    let damaged = HashAlgo::Blake3.digest(b"will be damaged");
    let ds = DamagedStore {
        inner: &store,
        damaged,
    };
    let dst = tempfile::tempdir().unwrap();
    let t = dst.path().join("t");
    let r = restore(&ds, &s.root, None, &t, &RestoreOptions::default()).unwrap();
    assert_eq!(r.integrity_errors.len(), 1);
    assert_eq!(r.integrity_errors[0].path, PathBuf::from("d/bad"));
    assert_eq!(r.integrity_errors[0].reference, Some(damaged));
    assert!(
        !t.join("d/bad").exists(),
        "a partly written file must be removed"
    );
    assert_eq!(std::fs::read(t.join("d/good")).unwrap(), b"fine");
}

#[test]
fn a_tree_naming_dotdot_is_refused_and_nothing_is_written_outside_the_target() {
    use asl_fs::tree::{Entry, Tree, encode_tree};
    let store = MemoryStore::new(HashAlgo::Blake3);
    let content = store.put_bytes(b"evil", asl_store::TypeTag::BYTES).unwrap();
    let mut e = Entry::new(b"xx".to_vec(), Kind::File);
    e.content = Some(content.reference);
    e.size = 4;
    e.mode = 0o644;
    let mut bytes = encode_tree(&Tree { entries: vec![e] }).unwrap();
    // Forge the name into "..": the encoder would refuse, so patch the bytes.
    let pos = bytes.windows(2).position(|w| w == b"xx").unwrap();
    bytes[pos..pos + 2].copy_from_slice(b"..");
    let forged = store.put_bytes(&bytes, asl_store::TypeTag::TREE).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let t = dst.path().join("inner/t");
    let r = restore(
        &store,
        &forged.reference,
        None,
        &t,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert_eq!(r.integrity_errors.len(), 1, "{r:?}");
    assert_eq!(std::fs::read_dir(&t).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(dst.path().join("inner")).unwrap().count(),
        1
    );
}

#[test]
fn restore_refuses_a_target_holding_a_planted_symlink_and_leaves_its_victim_alone() {
    // A symlink waiting in the target under a name the restore will create: the target is
    // not empty, so nothing is written — in particular not through the link. (During a
    // restore, creations use O_CREAT|O_EXCL|O_NOFOLLOW relative to directory descriptors,
    // which fail on an existing name instead of following it.)
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"data").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 1);
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"original").unwrap();
    let dst = tempfile::tempdir().unwrap();
    let t = dst.path().join("t");
    std::fs::create_dir(&t).unwrap();
    std::os::unix::fs::symlink(&victim, t.join("f")).unwrap();
    assert!(matches!(
        restore(&store, &s.root, None, &t, &RestoreOptions::default()),
        Err(asl_fs::RestoreError::TargetNotEmpty(_))
    ));
    assert_eq!(std::fs::read(&victim).unwrap(), b"original");
}

#[test]
fn browse_lookup_ls_cat_and_diff_work_on_stored_trees() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    std::fs::create_dir_all(root.join("d/e")).unwrap();
    std::fs::write(root.join("d/e/f"), b"one").unwrap();
    std::fs::write(root.join("d/g"), b"gee").unwrap();
    std::fs::write(root.join("gone"), b"x").unwrap();
    std::fs::create_dir(root.join("same")).unwrap();
    std::fs::write(root.join("same/s"), b"s").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let a = intake_dir(&store, root, 1);

    let f = lookup(&store, &a.root, b"/d/e/./f").unwrap();
    let mut out = Vec::new();
    asl_fs::cat(&store, &f, &mut out).unwrap();
    assert_eq!(out, b"one");
    assert!(matches!(
        lookup(&store, &a.root, b"d/../gone"),
        Err(asl_fs::BrowseError::BadPath { .. })
    ));
    assert!(matches!(
        lookup(&store, &a.root, b"d/g/x"),
        Err(asl_fs::BrowseError::NotADirectory { .. })
    ));
    let listed: Vec<_> = asl_fs::ls(&store, &lookup(&store, &a.root, b"d").unwrap())
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    assert_eq!(
        listed,
        vec![(b"e".to_vec(), Kind::Dir), (b"g".to_vec(), Kind::File)]
    );

    std::fs::write(root.join("d/e/f"), b"two").unwrap();
    std::fs::remove_file(root.join("gone")).unwrap();
    std::fs::write(root.join("new"), b"n").unwrap();
    std::fs::set_permissions(
        root.join("d/g"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let b = intake_dir(&store, root, 1);
    let changes: Vec<(String, asl_fs::ChangeKind)> = asl_fs::diff(&store, &a.root, &b.root)
        .unwrap()
        .into_iter()
        .map(|c| (c.path.to_string_lossy().into_owned(), c.kind))
        .collect();
    use asl_fs::ChangeKind::*;
    let has = |p: &str, k| changes.contains(&(p.to_string(), k));
    assert!(has("d/e/f", Modified), "{changes:?}");
    assert!(has("d/g", Metadata), "{changes:?}");
    assert!(has("gone", Removed), "{changes:?}");
    assert!(has("new", Added), "{changes:?}");
    assert!(
        !changes.iter().any(|(p, _)| p.starts_with("same")),
        "{changes:?}"
    );
    assert!(asl_fs::diff(&store, &a.root, &a.root).unwrap().is_empty());
}

#[test]
fn progress_counters_match_the_summary() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(src.path().join(format!("f{i}")), pseudo_random(i, 1000)).unwrap();
    }
    let store = MemoryStore::new(HashAlgo::Blake3);
    let p = Progress::new();
    let s = intake(&store, &[src.path().to_path_buf()], &opts(2), &p).unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(p.files.load(Relaxed), 50);
    assert_eq!(p.bytes_read.load(Relaxed), s.bytes_read);
    assert_eq!(s.bytes_read, 50_000);
    assert_eq!(s.files, 50);
}

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Mounts a filesystem of type `fs` at `at`, unmounted when the guard drops. Needs root,
/// which CI has: without it the test fails here rather than pass untested.
fn mount(fs: &str, at: &Path, data: Option<&std::ffi::CStr>) -> MountGuard {
    rustix::mount::mount(
        "asl-fs-test",
        at,
        fs,
        rustix::mount::MountFlags::empty(),
        data,
    )
    .unwrap_or_else(|e| panic!("mount {fs} at {} (needs root): {e}", at.display()));
    MountGuard(at.to_path_buf())
}

/// Mounts a tmpfs of `size` (e.g. `"1m"`) at `at`, unmounted when the guard drops.
fn mount_tmpfs(at: &Path, size: &str) -> MountGuard {
    let data = std::ffi::CString::new(format!("size={size}")).unwrap();
    mount("tmpfs", at, Some(data.as_c_str()))
}

#[test]
fn one_file_system_records_a_mount_point_as_an_empty_directory() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("outer"), b"outer").unwrap();
    let mnt = src.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _guard = mount_tmpfs(&mnt, "1m");
    std::fs::write(mnt.join("inner"), b"inner").unwrap();

    let store = MemoryStore::new(HashAlgo::Blake3);
    let one = IntakeOptions {
        one_file_system: true,
        ..Default::default()
    };
    let s = intake(&store, &[src.path().to_path_buf()], &one, &Progress::new()).unwrap();
    let m = lookup(&store, &s.root, b"mnt").unwrap();
    assert_eq!(m.kind, Kind::Dir);
    assert!(asl_fs::ls(&store, &m).unwrap().is_empty());
    assert!(lookup(&store, &s.root, b"outer").is_ok());

    let all = intake_dir(&store, src.path(), 1);
    assert!(lookup(&store, &all.root, b"mnt/inner").is_ok());
}

#[test]
fn a_read_error_from_the_kernel_is_recorded_with_its_errno_and_intake_goes_on() {
    // A real failing read: sysfs reports the loopback's link speed as a 4096-byte regular
    // file whose read() fails with EINVAL (lo has no speed). Only read, never written. The
    // test mounts a sysfs of its own, so it does not depend on the host's /sys.
    let sys = tempfile::tempdir().unwrap();
    let _guard = mount("sysfs", sys.path(), None);
    let failing = sys.path().join("devices/virtual/net/lo/speed");
    let src = tempfile::tempdir().unwrap();
    let ok = src.path().join("ok");
    std::fs::write(&ok, b"fine").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake(&store, &[ok, failing.clone()], &opts(2), &Progress::new()).unwrap();
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    let err = &s.errors[0];
    assert_eq!((err.op, err.errno), (Operation::Read, EINVAL));
    assert_eq!(err.path, failing);
    let e = lookup(&store, &s.root, b"speed").unwrap();
    assert_eq!(e.kind, Kind::File);
    assert_eq!(e.content, None);
    assert_eq!(
        e.error.map(|x| (x.op, x.errno)),
        Some((Operation::Read, EINVAL))
    );
    let ok = lookup(&store, &s.root, b"ok").unwrap();
    assert_eq!(ok.content, Some(HashAlgo::Blake3.digest(b"fine")));
}

#[test]
fn creation_order_and_directory_order_do_not_change_the_root_reference() {
    let names: Vec<String> = (0..300)
        .map(|i| format!("n{:03}", (i * 7919) % 300))
        .collect();
    // On tmpfs, readdir returns entries in an order that depends on creation order (ext4's
    // hashed directories would hide a missing sort), so both trees are built on one.
    let base = tempfile::tempdir().unwrap();
    let _guard = mount_tmpfs(base.path(), "4m");
    let mut roots = Vec::new();
    for reverse in [false, true] {
        let d = tempfile::tempdir_in(base.path()).unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let mut order = names.clone();
        if reverse {
            order.reverse();
        }
        for n in &order {
            std::fs::write(sub.join(n), n.as_bytes()).unwrap();
            set_mtime(&sub.join(n), 1_000_000, 0);
        }
        set_mtime(&sub, 2_000_000, 0);
        let store = MemoryStore::new(HashAlgo::Blake3);
        roots.push(intake_dir(&store, d.path(), 3).root);
    }
    assert_eq!(roots[0], roots[1]);
}

#[test]
fn a_file_whose_other_link_is_outside_the_intake_is_not_a_hardlink_group() {
    let outside = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("inside"), b"shared inode").unwrap();
    std::fs::hard_link(src.path().join("inside"), outside.path().join("other")).unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 1);
    let e = lookup(&store, &s.root, b"inside").unwrap();
    assert_eq!(e.hardlink_group, 0);
    assert_eq!(e.content, Some(HashAlgo::Blake3.digest(b"shared inode")));
}

#[test]
fn file_truncated_while_read_is_flagged_and_keeps_the_bytes_that_were_there() {
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("shrinking");
    let data = pseudo_random(11, 3 << 20);
    std::fs::write(&f, &data).unwrap();
    let target = f.clone();
    let o = IntakeOptions {
        threads: 1,
        after_open: Some(Arc::new(move |p: &Path| {
            if p == target {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(1 << 20)
                    .unwrap();
            }
        })),
        ..Default::default()
    };
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake(&store, &[src.path().to_path_buf()], &o, &Progress::new()).unwrap();
    let e = lookup(&store, &s.root, b"shrinking").unwrap();
    assert!(e.changed_during_read);
    assert_eq!(e.size, 1 << 20);
    assert_eq!(e.content, Some(HashAlgo::Blake3.digest(&data[..1 << 20])));
    assert_eq!(s.changed_during_read, 1);
}

#[test]
fn a_finished_directory_is_dropped_so_memory_does_not_follow_the_tree_size() {
    // 120 directories of 100 small files: 12 121 entries in all, about three times the
    // readers' queue (4 096 files), which bounds how far the walk runs ahead.
    let src = tempfile::tempdir().unwrap();
    for d in 0..120 {
        let dir = src.path().join(format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d}/{f}")).unwrap();
        }
    }
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 2);
    assert_eq!((s.files, s.dirs), (12_000, 121));
    assert!(
        s.entries_held_peak < 6_000,
        "{} of 12 122 nodes (entries and the synthetic root) were held at once",
        s.entries_held_peak
    );
    let e = lookup(&store, &s.root, b"d077/f042").unwrap();
    assert_eq!(e.content, Some(HashAlgo::Blake3.digest(b"77/42")));
}

#[test]
fn hardlink_groups_are_numbered_in_name_order_across_waiting_and_finished_directories() {
    // Groups live in b/ and e/ (whose trees wait for the end) while a/, c/ and d/ finish
    // early. Pre-order by name: b/sub/z (group 1) comes before b/x (group 2).
    let src = tempfile::tempdir().unwrap();
    let p = |rel: &str| src.path().join(rel);
    for d in ["a", "b/sub", "c", "d", "e"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    for f in ["a/plain", "c/plain", "d/plain"] {
        std::fs::write(p(f), f).unwrap();
    }
    std::fs::write(p("b/x"), b"group x").unwrap();
    std::fs::hard_link(p("b/x"), p("e/y")).unwrap();
    std::fs::write(p("b/sub/z"), b"group z").unwrap();
    std::fs::hard_link(p("b/sub/z"), p("d/w")).unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let s = intake_dir(&store, src.path(), 2);
    let group = |rel: &[u8]| lookup(&store, &s.root, rel).unwrap().hardlink_group;
    assert_eq!((group(b"b/sub/z"), group(b"d/w")), (1, 1));
    assert_eq!((group(b"b/x"), group(b"e/y")), (2, 2));
    assert_eq!((group(b"a/plain"), group(b"c/plain")), (0, 0));
    let w = lookup(&store, &s.root, b"d/w").unwrap();
    assert_eq!(w.content, Some(HashAlgo::Blake3.digest(b"group z")));
    assert_eq!(s.files, 7);
}
