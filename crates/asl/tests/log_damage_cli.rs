//! A damaged log record, through the real binary: readers warn and exit 3 naming the
//! snapshots beyond it; `asl-admin repair-log` keeps a copy, cuts, and re-records every
//! snapshot whose data is intact.

mod common;
mod storetest;

use std::path::{Path, PathBuf};

use asl_store::log;
use asl_store::records::{Event, SNAPSHOT};
use storetest::*;

/// A store with three snapshots (labels a, b, c) of different data.
fn three_snapshots(t: &Path) -> PathBuf {
    let store = t.join("store");
    for (i, label) in ["a", "b", "c"].into_iter().enumerate() {
        let src = t.join(format!("src-{label}"));
        make_files(&src, 3, 50_000, 40 + i as u64);
        let out = asl(
            &["intake", "-q", "--label", label, "--store"],
            &[&store, &src],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(snapshot_ids(&store), [1, 2, 3]);
    store
}

/// The log's records, as the format decodes them.
fn records(store: &Path) -> Vec<log::LogRecord> {
    let bytes = std::fs::read(store.join("log/asl.log")).unwrap();
    let scan = log::scan(&bytes).unwrap();
    assert_eq!(scan.tail, log::Tail::Clean);
    scan.records
}

/// Flips the last byte of the record_hash of snapshot `id`'s record: a complete record,
/// not the tail, whose payload is still what was written.
fn damage_snapshot_record(store: &Path, id: u64) -> u64 {
    let rec = records(store)
        .into_iter()
        .find(|r| {
            r.record_type == SNAPSHOT
                && matches!(Event::decode(r.record_type, &r.payload),
                    Ok(Event::Snapshot { snapshot_id, .. }) if snapshot_id == id)
        })
        .expect("the snapshot's record");
    let end = rec.offset as usize + log::RECORD_OVERHEAD + rec.payload.len();
    flip_byte(&store.join("log/asl.log"), end - 1);
    rec.logseq
}

fn copies_of_the_log(store: &Path) -> Vec<PathBuf> {
    files_under(&store.join("log"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("asl.log.damaged-")
        })
        .collect()
}

#[test]
fn a_damaged_record_makes_readers_exit_3_and_repair_relists_every_intact_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let store = three_snapshots(t.path());
    let before = std::fs::read(store.join("log/asl.log")).unwrap();
    let logseq = damage_snapshot_record(&store, 2);
    let damaged = std::fs::read(store.join("log/asl.log")).unwrap();
    assert_eq!(damaged.len(), before.len());

    // Readers: exit 3, a warning naming the record and the hidden snapshots 2 and 3.
    let s = asl(&["admin", "snapshots", "--store"], &[&store]);
    assert_eq!(s.code, 3, "{}{}", s.stdout, s.stderr);
    assert!(
        s.stderr.contains(&format!("record {logseq} ")),
        "{}",
        s.stderr
    );
    assert!(
        s.stderr.contains("snapshot(s) 2, 3 lie beyond it"),
        "{}",
        s.stderr
    );
    let j = asl(&["admin", "--json", "snapshots", "--store"], &[&store]);
    assert_eq!(j.code, 3);
    assert_eq!(
        j.json().as_array().unwrap().len(),
        1,
        "only snapshot 1 shows"
    );
    for args in [
        &["admin", "show", "1", "--store"][..],
        &["admin", "ls", "1", "--store"][..],
        &["admin", "cat", "1:/f0", "--store"][..],
    ] {
        let o = asl(args, &[&store]);
        assert_eq!(o.code, 3, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("damaged log"), "{args:?}: {}", o.stderr);
    }
    let v = asl(&["admin", "--json", "verify", "--store"], &[&store]);
    assert_eq!(v.code, 3);
    let problems = v.json()["problems"].as_array().unwrap().clone();
    let p = problems
        .iter()
        .find(|p| {
            p["object"]
                .as_str()
                .unwrap()
                .starts_with(&format!("log record {logseq} "))
        })
        .expect("the log record's problem");
    assert_eq!(p["snapshots"], serde_json::json!([2, 3]));
    // A writer refuses the damaged log.
    let src = t.path().join("src-d");
    make_files(&src, 2, 10_000, 99);
    let w = asl(&["intake", "-q", "--store"], &[&store, &src]);
    assert_ne!(w.code, 0, "a writer must not append after damage");
    assert!(w.stderr.contains("asl-admin repair-log"), "{}", w.stderr);

    // Repair: keeps the copy, cuts, relists 2 and 3.
    let r = asl(&["admin", "--json", "repair-log", "--store"], &[&store]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let rj = r.json();
    let ids: Vec<u64> = rj["recorded_snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [2, 3]);
    assert_eq!(rj["dropped"], serde_json::json!([]));
    let copies = copies_of_the_log(&store);
    assert_eq!(copies.len(), 1);
    assert_eq!(std::fs::read(&copies[0]).unwrap(), damaged);
    assert_eq!(rj["copy"].as_str().unwrap(), copies[0].to_str().unwrap());

    // Every snapshot is back, with its label, and everything verifies.
    let s = asl(&["admin", "--json", "snapshots", "--store"], &[&store]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert!(s.stderr.is_empty(), "{}", s.stderr);
    let labels: Vec<String> = s
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["meta"]["label"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(labels, ["a", "b", "c"]);
    let v = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    // The new records chain on: the log scans clean, with fresh logseqs.
    let recs = records(&store);
    assert!(recs.windows(2).all(|w| w[1].logseq == w[0].logseq + 1));
    // A new intake works, and a second repair finds nothing to do.
    let out = asl(
        &["intake", "-q", "--label", "d", "--store"],
        &[&store, &src],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(snapshot_ids(&store), [1, 2, 3, 4]);
    let again = asl(&["admin", "repair-log", "--store"], &[&store]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("nothing to repair"),
        "{}",
        again.stdout
    );
    assert_eq!(copies_of_the_log(&store).len(), 1);
}

#[test]
fn a_snapshot_whose_data_is_gone_is_not_rerecorded_and_repair_says_so() {
    let t = tempfile::tempdir().unwrap();
    let store = three_snapshots(t.path());
    // The segment that made snapshot 3's data visible: the last seal before its record.
    let recs = records(&store);
    let seg_id = recs
        .iter()
        .filter_map(|r| match Event::decode(r.record_type, &r.payload) {
            Ok(Event::SegmentSeal { segment_id, .. }) => Some(segment_id),
            Ok(Event::GcCommit { segment_id, .. }) if segment_id != 0 => Some(segment_id),
            _ => None,
        })
        .next_back()
        .unwrap();
    damage_snapshot_record(&store, 2);
    std::fs::remove_file(
        store
            .join("segments")
            .join(asl_store::segment::file_name(seg_id)),
    )
    .unwrap();

    let r = asl(&["admin", "repair-log", "--store"], &[&store]);
    assert_eq!(r.code, 3, "data was lost: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("not re-recorded: snapshot 3: its data is gone"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("re-recorded snapshots: 2\n"),
        "{}",
        r.stdout
    );
    assert_eq!(copies_of_the_log(&store).len(), 1);
    assert_eq!(snapshot_ids(&store), [1, 2]);
    let v = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}

#[test]
fn a_gc_commit_beyond_the_damage_is_recorded_again_and_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = three_snapshots(t.path());
    let f = asl(&["admin", "forget", "1", "--store"], &[&store]);
    assert_eq!(f.code, 0, "{}", f.stderr);
    let g = asl(&["admin", "gc", "--store"], &[&store]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    let gc_commits = |store: &Path| {
        records(store)
            .iter()
            .filter(|r| r.record_type == asl_store::records::GC_COMMIT)
            .count()
    };
    assert_eq!(gc_commits(&store), 1);
    damage_snapshot_record(&store, 2);

    let r = asl(&["admin", "--json", "repair-log", "--store"], &[&store]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The GC's compacted segment is sealed again; the segments it retired and deleted are
    // passed over, not reported as lost.
    assert_eq!(r.json()["dropped"], serde_json::json!([]), "{}", r.stdout);
    assert_eq!(gc_commits(&store), 1, "the GC commit is recorded again");
    assert_eq!(snapshot_ids(&store), [2, 3], "snapshot 1 stays forgotten");
    let v = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let src = t.path().join("src-a");
    let out = asl(&["intake", "-q", "--store"], &[&store, &src]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}
