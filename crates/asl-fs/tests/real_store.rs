//! Intake and restore against the real on-disk store (blocks, segments, log), end to end.

use std::path::Path;

use asl_fs::testing::{RescueTreeOptions, build_rescue_tree, compare_trees, let_ctimes_settle};
use asl_fs::{IntakeOptions, IntakeSummary, Progress, RestoreOptions, intake, restore};
use asl_store::{InitOptions, SnapshotMeta, Store, Writer};

fn intake_into(store: &Path, src: &Path, opts: &IntakeOptions) -> IntakeSummary {
    let mut w = Writer::open_or_init(store, &InitOptions::default()).unwrap();
    let s = intake(&w, &[src.to_path_buf()], opts, &Progress::new()).unwrap();
    w.commit(Some(s.root), SnapshotMeta::now("intake")).unwrap();
    s
}

#[test]
fn rescue_tree_round_trips_through_the_real_store() {
    let src = tempfile::tempdir().unwrap();
    build_rescue_tree(
        src.path(),
        &RescueTreeOptions {
            big_dir_entries: 3_000,
        },
    );
    let store = tempfile::tempdir().unwrap();
    let s = intake_into(store.path(), src.path(), &IntakeOptions::default());
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let st = Store::open(store.path()).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("t");
    let r = restore(
        &st.reader(),
        &s.root,
        None,
        &target,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert!(
        r.errors.is_empty() && r.integrity_errors.is_empty(),
        "{r:?}"
    );
    let diffs = compare_trees(src.path(), &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn one_and_four_threads_into_fresh_real_stores_give_the_same_root() {
    let src = tempfile::tempdir().unwrap();
    build_rescue_tree(
        src.path(),
        &RescueTreeOptions {
            big_dir_entries: 1_000,
        },
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = intake_into(
        a.path(),
        src.path(),
        &IntakeOptions {
            threads: 1,
            ..Default::default()
        },
    );
    let four = intake_into(
        b.path(),
        src.path(),
        &IntakeOptions {
            threads: 4,
            ..Default::default()
        },
    );
    assert_eq!(one.root, four.root);
}

#[test]
fn unchanged_reintake_into_the_real_store_only_stats_and_adds_nothing() {
    let src = tempfile::tempdir().unwrap();
    build_rescue_tree(
        src.path(),
        &RescueTreeOptions {
            big_dir_entries: 1_000,
        },
    );
    let_ctimes_settle();
    let store = tempfile::tempdir().unwrap();
    let opts = IntakeOptions {
        stat_cache: Some(store.path().join("cache/statcache-test")),
        ..Default::default()
    };
    let first = intake_into(store.path(), src.path(), &opts);
    let second = intake_into(store.path(), src.path(), &opts);
    assert_eq!(second.root, first.root);
    assert_eq!(second.files_opened, 0);
    assert_eq!(second.bytes_new, 0);
}
