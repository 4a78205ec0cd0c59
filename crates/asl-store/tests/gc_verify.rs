//! GC and verify on real stores in temporary directories, including space accounting: the
//! files an interrupted writer leaves are counted by `Store::unreferenced` and `verify` (as a
//! warning), and GC frees exactly what the store shrinks by, measured by summing its files.

#[path = "../src/xorshift.rs"]
mod xorshift;

use std::path::Path;

use asl_store::gc::GcOptions;
use asl_store::verify::{VerifyOptions, verify};
use asl_store::{ArtifactRead, ArtifactWrite, Reference, SnapshotMeta, Store, TypeTag, Writer};
use xorshift::pseudo_random;

/// Test "trees": a TREE artifact's bytes are its children's references, one per line.
fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    if tag != TypeTag::TREE {
        return Ok(vec![]);
    }
    std::str::from_utf8(bytes)
        .map_err(|e| e.to_string())?
        .lines()
        .map(|l| l.parse::<Reference>().map_err(|e| e.to_string()))
        .collect()
}

/// Commits a snapshot whose tree holds the given files; returns the file references.
fn snapshot(w: &mut Writer, files: &[Vec<u8>]) -> Vec<Reference> {
    let refs: Vec<Reference> = files
        .iter()
        .map(|f| w.put_bytes(f, TypeTag::BYTES).unwrap().reference)
        .collect();
    let listing: String = refs.iter().map(|r| format!("{r}\n")).collect();
    let tree = w.put_bytes(listing.as_bytes(), TypeTag::TREE).unwrap();
    w.commit(Some(tree.reference), SnapshotMeta::now("test"))
        .unwrap();
    refs
}

/// Verifies the store at `path` and asserts that a problem names an object `names` matches.
fn assert_reported(path: &std::path::Path, names: impl Fn(&str) -> bool) {
    let v = verify(
        &Store::open(path).unwrap(),
        &VerifyOptions::default(),
        &children,
    );
    assert!(
        v.problems.iter().any(|p| names(&p.object)),
        "{:#?}",
        v.problems
    );
}

fn store_bytes(dir: &std::path::Path) -> u64 {
    walk_size(&dir.join("blocks"))
}

fn walk_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn gc_after_forget_removes_unreachable_data_and_keeps_retained_snapshots_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    let shared = pseudo_random(300_000, 1);
    let only_old = pseudo_random(2_000_000, 2);
    let only_new = pseudo_random(500_000, 3);
    let old = snapshot(&mut w, &[shared.clone(), only_old.clone()]);
    let new = snapshot(&mut w, &[shared.clone(), only_new.clone()]);
    let before = store_bytes(&path);
    w.forget(1).unwrap();
    let report = w.gc(&GcOptions::default(), &children).unwrap();
    assert!(report.artifacts_dropped > 0);
    drop(w);
    let after = store_bytes(&path);
    assert!(
        after + 1_500_000 < before,
        "the 2 MB only the forgotten snapshot used was not freed ({before} -> {after})"
    );
    let s = Store::open(&path).unwrap();
    let r = s.reader();
    assert!(
        r.artifact_len(&old[1]).is_none(),
        "forgotten data still indexed"
    );
    assert_eq!(r.read_all(&new[0]).unwrap(), shared);
    assert_eq!(r.read_all(&new[1]).unwrap(), only_new);
    let v = verify(&s, &VerifyOptions { read_data: true }, &children);
    assert!(v.ok(), "{:#?}", v.problems);
    // A further intake after GC works and dedups against the compacted index.
    let mut w = Writer::open(&path).unwrap();
    let p = w.put_bytes(&only_new, TypeTag::BYTES).unwrap();
    assert_eq!(p.new_chunks, 0);
    snapshot(&mut w, &[pseudo_random(10_000, 9)]);
}

#[test]
fn gc_keeps_what_an_older_snapshot_sees_even_if_tombstoned_now() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    let data = pseudo_random(100_000, 5);
    let refs = snapshot(&mut w, std::slice::from_ref(&data));
    w.tombstone(refs[0]).unwrap();
    w.gc(&GcOptions::default(), &children).unwrap();
    drop(w);
    let s = Store::open(&path).unwrap();
    let snap = s.resolve_snapshot("latest").unwrap().clone();
    assert_eq!(s.reader_at(&snap).read_all(&refs[0]).unwrap(), data);
    assert!(s.reader().artifact_len(&refs[0]).is_none());
}

#[test]
fn a_dry_run_gc_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    snapshot(&mut w, &[pseudo_random(1_000_000, 1)]);
    snapshot(&mut w, &[pseudo_random(1_000_000, 2)]);
    w.forget(1).unwrap();
    let log_before = std::fs::read(path.join("log/asl.log")).unwrap();
    let bytes_before = store_bytes(&path);
    let rep = w
        .gc(
            &GcOptions {
                dry_run: true,
                ..Default::default()
            },
            &children,
        )
        .unwrap();
    assert!(
        rep.bytes_freed > 0,
        "the plan should free the forgotten snapshot's data"
    );
    assert_eq!(std::fs::read(path.join("log/asl.log")).unwrap(), log_before);
    assert_eq!(store_bytes(&path), bytes_before);
}

fn one_block(path: &std::path::Path) -> std::path::PathBuf {
    let mut found = None;
    for shard in std::fs::read_dir(path.join("blocks")).unwrap() {
        let shard = shard.unwrap();
        if shard.file_name() == "open" {
            continue;
        }
        for f in std::fs::read_dir(shard.path()).unwrap() {
            found = Some(f.unwrap().path());
        }
    }
    found.expect("no block")
}

fn flip(path: &std::path::Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x55;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_flipped_byte_in_a_block_is_found_by_read_data_naming_block_artifact_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    let refs = snapshot(&mut w, &[pseudo_random(50_000, 1)]);
    drop(w);
    let block = one_block(&path);
    flip(&block, 100);
    let s = Store::open(&path).unwrap();
    let quick = verify(&s, &VerifyOptions { read_data: false }, &children);
    let full = verify(&s, &VerifyOptions { read_data: true }, &children);
    assert!(
        quick.ok(),
        "structure is intact; only data reading finds a data flip"
    );
    assert!(!full.ok());
    let name = block.file_stem().unwrap().to_string_lossy().into_owned();
    let p = full
        .problems
        .iter()
        .find(|p| p.object.contains(&name))
        .expect("block not named");
    assert!(p.artifacts.contains(&refs[0].to_string()), "{p:?}");
    assert_eq!(p.snapshots, vec![1]);
}

#[test]
fn a_flipped_byte_in_a_segment_or_the_log_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    snapshot(&mut w, &[pseudo_random(10_000, 1)]);
    snapshot(&mut w, &[pseudo_random(10_000, 2)]);
    drop(w);
    let seg = path.join("segments").join(format!("{:016x}.seg", 1));
    let seg_bytes = std::fs::read(&seg).unwrap();
    flip(&seg, 70);
    assert_reported(&path, |object| object.contains("0000000000000001.seg"));
    std::fs::write(&seg, seg_bytes).unwrap();

    let log = path.join("log/asl.log");
    let len = std::fs::metadata(&log).unwrap().len() as usize;
    // A byte inside the first record (not the last: see docs/FORMAT.md on torn tails).
    flip(&log, 24 + 20);
    assert_reported(&path, |object| object.starts_with("log record 1"));
    assert!(len > 100);
    // A damaged log is never cut silently by a writer.
    assert!(Writer::open(&path).is_err());
}

#[test]
fn deleting_every_segment_loses_nothing_after_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    let a = snapshot(&mut w, &[pseudo_random(700_000, 1), pseudo_random(100, 2)]);
    let b = snapshot(&mut w, &[pseudo_random(300_000, 3)]);
    drop(w);
    for e in std::fs::read_dir(path.join("segments")).unwrap() {
        let e = e.unwrap();
        if e.path().extension().is_some_and(|x| x == "seg") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let broken = verify(
        &Store::open(&path).unwrap(),
        &VerifyOptions::default(),
        &children,
    );
    assert!(!broken.ok(), "missing segments must be reported");
    let mut w = Writer::open(&path).unwrap();
    let rep = w.reindex().unwrap();
    assert!(rep.recovered > 0);
    drop(w);
    let s = Store::open(&path).unwrap();
    let v = verify(&s, &VerifyOptions { read_data: true }, &children);
    assert!(v.ok(), "{:#?}", v.problems);
    let r = s.reader();
    assert_eq!(r.read_all(&a[0]).unwrap(), pseudo_random(700_000, 1));
    assert_eq!(r.read_all(&b[0]).unwrap(), pseudo_random(300_000, 3));
}

#[test]
fn an_empty_artifact_sharing_its_offset_with_the_next_record_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    // The empty chunk is a zero-length record: the next record starts at the same offset.
    let refs = snapshot(
        &mut w,
        &[Vec::new(), pseudo_random(5_000, 1), pseudo_random(7_000, 2)],
    );
    drop(w);
    let s = Store::open(&path).unwrap();
    let v = verify(&s, &VerifyOptions { read_data: true }, &children);
    assert!(v.ok(), "{:#?}", v.problems);
    assert_eq!(s.reader().read_all(&refs[0]).unwrap(), b"");
}

/// The bytes of every file of the store but the lock file, whose content only names its
/// last holder (each writer rewrites it with its own pid).
fn file_bytes(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            total += file_bytes(&e.path());
        } else if e.file_name() != "writer.lock" {
            total += m.len();
        }
    }
    total
}

/// A writer that puts data and is dropped without commit (as a killed intake would be),
/// plus a segment written but never sealed and a temporary segment file.
fn leave_uncommitted_work(path: &Path) {
    let w = Writer::open(path).unwrap();
    // More than two blocks' worth (8 MiB blocks): sealed blocks and an open one remain.
    for i in 0..20 {
        w.put_bytes(&pseudo_random(1_000_000, 101 + 2 * i), TypeTag::BYTES)
            .unwrap();
    }
    drop(w);
    std::fs::write(path.join("segments/00000000000000ff.seg"), vec![7u8; 3000]).unwrap();
    std::fs::write(
        path.join("segments/open/00000000000000fe.tmp"),
        vec![7u8; 500],
    )
    .unwrap();
}

/// A store with one snapshot, then the leftovers of [`leave_uncommitted_work`]; returns the
/// bytes of the committed files.
fn store_with_leftovers(path: &Path) -> u64 {
    let mut w = Writer::open_or_init(path, &Default::default()).unwrap();
    snapshot(&mut w, &[pseudo_random(300_000, 1)]);
    drop(w);
    let committed = file_bytes(path);
    leave_uncommitted_work(path);
    committed
}

#[test]
fn files_a_dropped_writer_leaves_are_counted_as_a_warning_and_gc_frees_exactly_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let committed = store_with_leftovers(&path);
    let with_leftovers = file_bytes(&path);

    let store = Store::open(&path).unwrap();
    let u = store.unreferenced().unwrap();
    assert!(u.sealed_blocks.files >= 2, "{u:?}");
    assert_eq!(u.unsealed_segments.files, 1, "{u:?}");
    assert_eq!(u.open_segments.files, 1, "{u:?}");
    assert_eq!(u.total.bytes, with_leftovers - committed, "{u:?}");
    assert!(!u.index_damaged);

    // A warning, not damage: nothing a snapshot reaches is lost.
    let v = verify(&store, &VerifyOptions { read_data: true }, &children);
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!(v.unreferenced, u);

    let mut w = Writer::open(&path).unwrap();
    let rep = w.gc(&GcOptions::default(), &children).unwrap();
    assert_eq!(rep.unreferenced_removed, u.total, "{rep:?}");
    assert_eq!(rep.orphan_blocks_deleted as u64, u.sealed_blocks.files);
    assert_eq!(
        rep.bytes_freed,
        (with_leftovers - committed) as i64,
        "{rep:?}"
    );
    drop(w);
    assert_eq!(file_bytes(&path), committed);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.unreferenced().unwrap().total.files, 0);
    assert!(verify(&store, &VerifyOptions { read_data: true }, &children).ok());
}

#[test]
fn a_dry_run_counts_the_leftovers_and_deletes_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let committed = store_with_leftovers(&path);
    let sealed = Store::open(&path)
        .unwrap()
        .unreferenced()
        .unwrap()
        .sealed_blocks;
    let with_leftovers = file_bytes(&path);
    let mut w = Writer::open(&path).unwrap();
    let rep = w
        .gc(
            &GcOptions {
                dry_run: true,
                ..Default::default()
            },
            &children,
        )
        .unwrap();
    drop(w);
    // Opening the writer removed the temporary files, as every writer does; the sealed
    // orphans stay for a real run.
    assert_eq!(
        rep.bytes_freed,
        (with_leftovers - committed) as i64,
        "{rep:?}"
    );
    assert_eq!(file_bytes(&path), committed + sealed.bytes);
}

#[test]
fn a_repack_reports_exactly_what_the_store_shrank_by() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    let files: Vec<Vec<u8>> = (0..8).map(|i| pseudo_random(400_000, 11 + 2 * i)).collect();
    snapshot(&mut w, &files);
    // The second snapshot keeps one file of the first block: that block is mostly dead.
    snapshot(&mut w, &[files[0].clone(), pseudo_random(200_000, 99)]);
    w.forget(1).unwrap();
    let before = file_bytes(&path);
    let rep = w.gc(&GcOptions::default(), &children).unwrap();
    drop(w);
    let after = file_bytes(&path);
    assert!(rep.blocks_repacked >= 1, "{rep:?}");
    assert!(rep.bytes_written > 0, "{rep:?}");
    assert_eq!(rep.bytes_freed, before as i64 - after as i64, "{rep:?}");
    let store = Store::open(&path).unwrap();
    assert!(verify(&store, &VerifyOptions { read_data: true }, &children).ok());
    let mut back = Vec::new();
    store
        .reader()
        .read_to(&asl_store::HashAlgo::Blake3.digest(&files[0]), &mut back)
        .unwrap();
    assert_eq!(back, files[0]);
}

#[test]
fn gc_keeps_the_blocks_of_its_own_uncommitted_puts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    snapshot(&mut w, &[pseudo_random(300_000, 1)]);
    // Sealed blocks of this session: no log record names them until the commit below.
    let data: Vec<Vec<u8>> = (0..20)
        .map(|i| pseudo_random(1_000_000, 201 + 2 * i))
        .collect();
    let rep = {
        for d in &data {
            w.put_bytes(d, TypeTag::BYTES).unwrap();
        }
        w.gc(&GcOptions::default(), &children).unwrap()
    };
    assert_eq!(rep.orphan_blocks_deleted, 0, "{rep:?}");
    snapshot(&mut w, &data);
    drop(w);
    let store = Store::open(&path).unwrap();
    let v = verify(&store, &VerifyOptions { read_data: true }, &children);
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!(store.unreferenced().unwrap().total.files, 0);
}

#[test]
fn blocks_of_a_lost_segment_are_flagged_as_such_and_gc_leaves_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    snapshot(&mut w, &[pseudo_random(300_000, 1)]);
    drop(w);
    for f in std::fs::read_dir(path.join("segments")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "seg") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let before = file_bytes(&path);
    let u = Store::open(&path).unwrap().unreferenced().unwrap();
    // The block only the lost segment named: reindex recovers it, so it must not go.
    assert!(u.index_damaged, "{u:?}");
    assert_eq!(u.sealed_blocks.files, 1, "{u:?}");
    let mut w = Writer::open(&path).unwrap();
    assert!(w.gc(&GcOptions::default(), &children).is_err());
    drop(w);
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn a_read_only_dry_run_plans_what_the_writer_would_and_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let committed = store_with_leftovers(&path);
    let with_leftovers = file_bytes(&path);
    let opts = GcOptions {
        dry_run: true,
        ..Default::default()
    };
    // The writer lock held, as a running intake holds it: the plan needs no lock.
    let lock = std::fs::File::open(path.join("locks/writer.lock")).unwrap();
    lock.lock().unwrap();
    let store = Store::open(&path).unwrap();
    let read_only = asl_store::gc::dry_run(&store, &opts, &children).unwrap();
    assert!(Writer::open(&path).is_err(), "the lock was not held");
    lock.unlock().unwrap();
    assert!(read_only.dry_run);
    // Everything the interrupted writer left is planned for removal, and nothing removed.
    assert_eq!(
        read_only.bytes_freed,
        (with_leftovers - committed) as i64,
        "{read_only:?}"
    );
    assert_eq!(
        file_bytes(&path),
        with_leftovers,
        "a read-only dry run removed files"
    );
    // The same plan as a writer's dry run (which removes the temporary files on opening).
    let mut w = Writer::open(&path).unwrap();
    let by_writer = w.gc(&opts, &children).unwrap();
    assert_eq!(read_only.bytes_freed, by_writer.bytes_freed);
    assert_eq!(read_only.blocks_deleted, by_writer.blocks_deleted);
    assert_eq!(
        read_only.orphan_blocks_deleted,
        by_writer.orphan_blocks_deleted
    );
    assert_eq!(
        read_only.unreferenced_removed,
        by_writer.unreferenced_removed
    );
}

#[test]
fn a_damaged_record_affects_only_the_artifacts_that_use_it_not_its_block_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    // Many small distinct files: all their records land in one block.
    let files: Vec<Vec<u8>> = (0..60).map(|n| pseudo_random(3_000, 100 + n)).collect();
    let refs = snapshot(&mut w, &files);
    drop(w);
    let block = one_block(&path);
    let bytes = std::fs::read(&block).unwrap();
    let trailer = asl_store::block::decode_trailer(&bytes).unwrap();
    let victim = &refs[17];
    let entry = trailer
        .iter()
        .find(|e| &e.reference == victim)
        .expect("the victim's record is in the block");
    assert!(
        trailer.len() >= 20,
        "small files share a block: {}",
        trailer.len()
    );
    flip(
        &block,
        (entry.offset + u64::from(entry.stored_len) / 2) as usize,
    );

    let s = Store::open(&path).unwrap();
    let v = verify(&s, &VerifyOptions { read_data: true }, &children);
    assert!(!v.ok());
    let named: std::collections::BTreeSet<&String> =
        v.problems.iter().flat_map(|p| &p.artifacts).collect();
    assert_eq!(
        named,
        std::collections::BTreeSet::from([&victim.to_string()]),
        "only the file whose record is damaged is affected: {:#?}",
        v.problems
    );
    assert!(
        v.problems.iter().all(|p| p.snapshots == vec![1]),
        "{:#?}",
        v.problems
    );
    // Its neighbours indeed read back intact.
    for (r, f) in refs.iter().zip(&files) {
        if r != victim {
            assert_eq!(&s.reader().read_all(r).unwrap(), f);
        }
    }
}

/// A segment held as its index run is not read when the store opens; verify still reads it
/// and names it when it is damaged, and names a run whose page no longer matches its segment.
/// Deleting the runs loses nothing: the next writer rebuilds them and reads stay exact.
#[test]
fn verify_checks_segments_held_as_runs_and_the_runs_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    // Enough entries for a run at the default size (asl_store::index::RUN_MIN_RECORDS).
    let files: Vec<Vec<u8>> = (0..4200).map(|i| pseudo_random(64, 2 * i + 1)).collect();
    let refs = snapshot(&mut w, &files);
    drop(w);
    let seg = path.join("segments").join(format!("{:016x}.seg", 1));
    let run = path.join("cache/index").join(format!("{:016x}.run", 1));
    assert!(run.exists(), "the commit wrote its run");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.segments_held_as_runs(), 1);
    assert!(verify(&s, &VerifyOptions { read_data: true }, &children).ok());
    drop(s);

    let seg_bytes = std::fs::read(&seg).unwrap();
    flip(&seg, 70);
    assert_reported(&path, |object| object.contains("0000000000000001.seg"));
    std::fs::write(&seg, &seg_bytes).unwrap();

    // A byte of the last page's records: the run opens (its meta section is intact) but the
    // page fails its checksum.
    let len = std::fs::metadata(&run).unwrap().len() as usize;
    flip(&run, len - 40);
    assert_reported(&path, |object| object.contains("0000000000000001.run"));

    std::fs::remove_dir_all(path.join("cache")).unwrap();
    drop(Writer::open(&path).unwrap());
    assert!(run.exists(), "the next writer rebuilt the run");
    let s = Store::open(&path).unwrap();
    assert!(verify(&s, &VerifyOptions { read_data: true }, &children).ok());
    for (r, f) in refs.iter().zip(&files) {
        assert_eq!(&s.reader().read_all(r).unwrap(), f);
    }
}
