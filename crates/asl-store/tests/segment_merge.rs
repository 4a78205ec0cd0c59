//! Small segments merged at commit (crate::merge) on real stores: what every snapshot sees
//! is unchanged, the number of segments stays bounded, retired files go at the next open,
//! and a damaged segment is never merged away.

use asl_store::verify::{VerifyOptions, verify};
use asl_store::{ArtifactRead, ArtifactWrite, Reference, SnapshotMeta, Store, TypeTag, Writer};

fn no_children(_: TypeTag, _: &[u8]) -> Result<Vec<Reference>, String> {
    Ok(vec![])
}

fn segment_files(store: &std::path::Path) -> usize {
    std::fs::read_dir(store.join("segments"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .count()
}

/// `n` commits of three artifacts each (a capture's size); returns each commit's references.
fn small_commits(w: &mut Writer, n: usize, seed: usize) -> Vec<Vec<Reference>> {
    (0..n)
        .map(|i| {
            let refs: Vec<Reference> = (0..3)
                .map(|k| {
                    let body = format!("commit {} artifact {k}", seed + i);
                    w.put_bytes(body.as_bytes(), TypeTag::BYTES)
                        .unwrap()
                        .reference
                })
                .collect();
            w.commit(Some(refs[0]), SnapshotMeta::now("capture"))
                .unwrap();
            refs
        })
        .collect()
}

/// A writer on a new store in a temporary directory (kept alive by the first element).
fn new_store() -> (tempfile::TempDir, std::path::PathBuf, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let w = Writer::open_or_init(&path, &Default::default()).unwrap();
    (dir, path, w)
}

#[test]
fn merging_keeps_what_every_snapshot_sees_and_bounds_the_segment_count() {
    let (_dir, path, mut w) = new_store();
    let commits = small_commits(&mut w, 300, 0);
    // Tiers of 1-7, 8-63, 64-511 and 512-4095 entries, at most 8 segments each.
    let visible = w.segments().count();
    assert!(
        visible <= 32,
        "{visible} segments visible after 300 commits"
    );
    assert!(
        w.segments().any(|s| s.record_count >= 64),
        "entries were merged up more than one tier"
    );
    drop(w);

    let store = Store::open(&path).unwrap();
    let snaps = store.snapshots();
    assert_eq!(snaps.len(), 300);
    for (n, snap) in snaps.iter().enumerate() {
        let reader = store.reader_at(snap);
        // Commit n's artifacts are visible from its snapshot on, and not before.
        for (m, refs) in commits.iter().enumerate() {
            for r in refs {
                assert_eq!(
                    reader.locate(r).is_some(),
                    m <= n,
                    "artifact of commit {m} seen from snapshot {n}"
                );
            }
        }
    }
    let latest = store.reader();
    for (i, refs) in commits.iter().enumerate() {
        let body = latest.read_all(&refs[2]).unwrap();
        assert_eq!(body, format!("commit {i} artifact 2").into_bytes());
    }
    let report = verify(&store, &VerifyOptions::default(), &no_children);
    assert!(report.ok(), "{:#?}", report.problems);
    drop(store);

    // The files of retired segments are left for the next writer, which deletes them.
    let before = segment_files(&path);
    let w = Writer::open(&path).unwrap();
    let visible = w.segments().count();
    drop(w);
    assert!(before > visible, "no retired segment file was left");
    assert_eq!(segment_files(&path), visible);
}

#[test]
fn a_tombstone_still_hides_a_merged_entry_and_only_from_its_position() {
    let (_dir, path, mut w) = new_store();
    let first = small_commits(&mut w, 1, 1000);
    w.tombstone(first[0][1]).unwrap();
    let after_tombstone = w.last_logseq();
    small_commits(&mut w, 40, 0);
    assert!(
        !w.segments().any(|s| s.segment_id == 1),
        "the first segment was merged"
    );
    drop(w);
    let store = Store::open(&path).unwrap();
    let first_snap = store.snapshots()[0].clone();
    assert!(first_snap.logseq < after_tombstone);
    assert!(store.reader_at(&first_snap).locate(&first[0][1]).is_some());
    assert!(store.reader().locate(&first[0][1]).is_none());
    assert!(store.reader().locate(&first[0][0]).is_some());
}

#[test]
fn a_damaged_small_segment_is_not_merged_away() {
    let (_dir, path, mut w) = new_store();
    small_commits(&mut w, 3, 0);
    drop(w);
    let seg = path.join("segments").join(format!("{:016x}.seg", 2));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[70] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();

    let mut w = Writer::open(&path).unwrap();
    small_commits(&mut w, 30, 100);
    assert!(
        w.segments().any(|s| s.segment_id == 2),
        "the damaged segment stays visible"
    );
    assert!(
        !w.segments().any(|s| s.segment_id == 1),
        "merging went on around it"
    );
    drop(w);
    let report = verify(
        &Store::open(&path).unwrap(),
        &VerifyOptions::default(),
        &no_children,
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object.contains("0000000000000002.seg")),
        "{:#?}",
        report.problems
    );
}
