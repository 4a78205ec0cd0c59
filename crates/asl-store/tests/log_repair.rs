//! `repair::repair_log` on real stores: which cut records it records again and which it drops.

use std::path::Path;

use asl_store::log::{self, RECORD_OVERHEAD};
use asl_store::records::{SNAPSHOT, TOMBSTONE};
use asl_store::repair::repair_log;
use asl_store::{ArtifactWrite, Reference, SnapshotMeta, Store, TypeTag, Writer};

fn no_children(_: TypeTag, _: &[u8]) -> Result<Vec<Reference>, String> {
    Ok(vec![])
}

/// Flips the last byte of the `nth` (0-based) record of type `record_type`.
fn damage(store: &Path, record_type: u32, nth: usize) {
    let path = store.join("log/asl.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let rec = log::scan(&bytes)
        .unwrap()
        .records
        .into_iter()
        .filter(|r| r.record_type == record_type)
        .nth(nth)
        .unwrap();
    bytes[rec.offset as usize + RECORD_OVERHEAD + rec.payload.len() - 1] ^= 1;
    std::fs::write(&path, bytes).unwrap();
}

fn snapshot(w: &mut Writer, data: &[u8]) -> Reference {
    let r = w.put_bytes(data, TypeTag::BYTES).unwrap().reference;
    w.commit(Some(r), SnapshotMeta::now("test")).unwrap();
    r
}

fn ids(store: &Path) -> Vec<u64> {
    Store::open(store)
        .unwrap()
        .snapshots()
        .iter()
        .map(|s| s.id)
        .collect()
}

#[test]
fn a_tombstone_after_the_damaged_record_is_recorded_again() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    let x = snapshot(&mut w, b"first");
    snapshot(&mut w, b"second");
    w.tombstone(x).unwrap();
    snapshot(&mut w, b"third");
    drop(w);
    damage(&path, SNAPSHOT, 1);
    assert_eq!(ids(&path), [1]);
    assert_eq!(
        Store::open(&path)
            .unwrap()
            .log_damage()
            .unwrap()
            .hidden_snapshots,
        [2, 3]
    );

    let rep = repair_log(&path, &no_children).unwrap();
    assert!(rep.dropped.is_empty(), "{:?}", rep.dropped);
    assert_eq!(rep.other_records, 1);
    assert_eq!(ids(&path), [1, 2, 3]);
    let store = Store::open(&path).unwrap();
    assert!(store.log_damage().is_none());
    assert!(store.reader().locate(&x).is_none(), "the tombstone holds");
}

#[test]
fn a_tombstone_in_the_damaged_record_itself_is_dropped_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    let x = snapshot(&mut w, b"first");
    w.tombstone(x).unwrap();
    snapshot(&mut w, b"second");
    drop(w);
    damage(&path, TOMBSTONE, 0);
    assert_eq!(
        Store::open(&path)
            .unwrap()
            .log_damage()
            .unwrap()
            .hidden_snapshots,
        [2]
    );

    let rep = repair_log(&path, &no_children).unwrap();
    assert_eq!(rep.dropped.len(), 1, "{:?}", rep.dropped);
    assert!(
        rep.dropped[0].reason.contains("tombstone"),
        "{:?}",
        rep.dropped
    );
    assert_eq!(rep.other_records, 0);
    assert_eq!(ids(&path), [1, 2]);
    let copy = rep.copy.unwrap();
    assert!(copy.starts_with(path.join("log")));
    assert!(Store::open(&path).unwrap().reader().locate(&x).is_some());
    // A writer opens the repaired store.
    let mut w = Writer::open(&path).unwrap();
    snapshot(&mut w, b"fourth");
}

#[test]
fn a_sound_log_is_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    snapshot(&mut w, b"first");
    drop(w);
    let before = std::fs::read(path.join("log/asl.log")).unwrap();
    let rep = repair_log(&path, &no_children).unwrap();
    assert!(rep.damage.is_none() && rep.copy.is_none());
    assert_eq!(std::fs::read(path.join("log/asl.log")).unwrap(), before);
    assert_eq!(std::fs::read_dir(path.join("log")).unwrap().count(), 1);
}

#[test]
fn repair_takes_the_writer_lock() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("s");
    let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
    snapshot(&mut w, b"first");
    let err = repair_log(&path, &no_children).unwrap_err();
    assert!(matches!(err, asl_store::StoreError::Locked { .. }), "{err}");
}
