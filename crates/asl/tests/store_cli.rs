//! End-to-end tests of the store tools (asl-intake, asl-admin, asl-debug, asl-init-store)
//! through the real binary, on real directories. Crash tests kill the real process.

mod common;
mod storetest;

use std::collections::BTreeMap;
use std::path::Path;

use asl_fs::testing::{RescueTreeOptions, build_rescue_tree, compare_trees, pseudo_random};
use storetest::*;

#[test]
fn round_trip_of_a_copy_of_usr_share_is_exact() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("share");
    run_ok(
        std::process::Command::new("cp")
            .args(["-a", "/usr/share"])
            .arg(&src),
    );
    let store = t.path().join("store");
    let out = asl(&["intake", "--json", "--store"], &[&store, &src]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert!(j["files"].as_u64().unwrap() > 1000);
    let v = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_restores_to(&store, "latest", &src, &t.path().join("restored"));
}

#[test]
fn round_trip_of_the_rescue_tree_keeps_every_odd_case() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("rescue");
    let manifest = build_rescue_tree(&src, &RescueTreeOptions::default());
    let store = t.path().join("store");
    let out = asl(&["intake", "--json", "--store"], &[&store, &src]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_restores_to(&store, "latest", &src, &t.path().join("restored"));
    assert!(manifest.big_dir_entries >= 10_000);
    assert!(!manifest.non_utf8.is_empty() && !manifest.sparse_files.is_empty());
}

#[test]
fn the_same_tree_gives_the_same_root_with_one_and_four_threads() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("rescue");
    build_rescue_tree(
        &src,
        &RescueTreeOptions {
            big_dir_entries: 3000,
        },
    );
    let mut roots = Vec::new();
    for threads in ["1", "4"] {
        let store = t.path().join(format!("store{threads}"));
        let out = asl(
            &["intake", "--json", "--threads", threads, "--store"],
            &[&store, &src],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        roots.push(out.json()["root"].as_str().unwrap().to_string());
    }
    assert_eq!(roots[0], roots[1]);
}

#[test]
fn re_intake_adds_almost_nothing_and_one_changed_file_adds_about_its_size() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    make_files(&src, 40, 256 * 1024, 1);
    let store = t.path().join("store");
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &src]).code, 0);
    let first = dir_size(&store);
    // Unchanged, and with the stat cache off: content dedup alone must do it.
    assert_eq!(
        asl(
            &["intake", "-q", "--no-stat-cache", "--store"],
            &[&store, &src]
        )
        .code,
        0
    );
    let second = dir_size(&store);
    assert!(
        (second - first) * 100 < first,
        "re-intake grew the store by {} of {first} bytes",
        second - first
    );
    // A copy with one file replaced by 1 MiB of new data.
    let copy = t.path().join("copy");
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&copy),
    );
    std::fs::write(copy.join("f7"), pseudo_random(777, 1 << 20)).unwrap();
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &copy]).code, 0);
    let third = dir_size(&store);
    let added = third - second;
    assert!(
        (1 << 20) / 2 < added && added < 2 * (1 << 20),
        "one changed 1 MiB file added {added} bytes"
    );
}

#[test]
fn a_flipped_byte_in_a_block_makes_verify_exit_3_naming_block_and_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    make_files(&src, 5, 100_000, 2);
    let store = t.path().join("store");
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &src]).code, 0);
    assert_eq!(
        asl(&["admin", "verify", "--read-data", "--store"], &[&store]).code,
        0
    );
    let block = files_under(&store.join("blocks"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "blk"))
        .unwrap();
    flip_byte(&block, 200);
    let quick = asl(&["admin", "verify", "--store"], &[&store]);
    assert_eq!(
        quick.code, 0,
        "a data byte flip is invisible to a structural check"
    );
    let full = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
    assert_eq!(full.code, 3, "{}", full.stdout);
    let name = block.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(full.stdout.contains(&name), "{}", full.stdout);
    assert!(full.stdout.contains("snapshots: [1]"), "{}", full.stdout);
    // Restore reports the damaged file and exits 3 too.
    let r = asl(
        &["admin", "restore", "1", "--store"],
        &[&store, Path::new("--target"), &t.path().join("r")],
    );
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
}

#[test]
fn a_flipped_byte_in_a_segment_or_a_log_record_makes_verify_exit_3() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    make_files(&src, 3, 10_000, 3);
    let store = t.path().join("store");
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &src]).code, 0);
    assert_eq!(
        asl(
            &["intake", "-q", "--label", "second", "--store"],
            &[&store, &src]
        )
        .code,
        0
    );
    let seg = store.join("segments/0000000000000001.seg");
    let saved = std::fs::read(&seg).unwrap();
    flip_byte(&seg, 100);
    let v = asl(&["admin", "verify", "--store"], &[&store]);
    assert_eq!(v.code, 3);
    assert!(v.stdout.contains("0000000000000001.seg"), "{}", v.stdout);
    std::fs::write(&seg, saved).unwrap();
    assert_eq!(asl(&["admin", "verify", "--store"], &[&store]).code, 0);
    flip_byte(&store.join("log/asl.log"), 40);
    let v = asl(&["admin", "verify", "--store"], &[&store]);
    assert_eq!(v.code, 3);
    assert!(v.stdout.contains("log record 1"), "{}", v.stdout);
}

#[test]
fn deleting_the_index_loses_nothing_after_reindex() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    make_files(&src, 10, 300_000, 4);
    let store = t.path().join("store");
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &src]).code, 0);
    for f in files_under(&store.join("segments")) {
        std::fs::remove_file(f).unwrap();
    }
    std::fs::remove_dir_all(store.join("cache")).unwrap();
    assert_eq!(asl(&["admin", "verify", "--store"], &[&store]).code, 3);
    let r = asl(&["admin", "reindex", "--store"], &[&store]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        asl(&["admin", "verify", "--read-data", "--store"], &[&store]).code,
        0
    );
    assert_restores_to(&store, "latest", &src, &t.path().join("r"));
}

#[test]
fn forget_and_gc_free_unreferenced_data_and_keep_retained_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let a = t.path().join("a");
    let b = t.path().join("b");
    make_files(&a, 8, 500_000, 10);
    make_files(&b, 8, 500_000, 20);
    assert_eq!(
        asl(&["intake", "-q", "--label", "a", "--store"], &[&store, &a]).code,
        0
    );
    assert_eq!(
        asl(&["intake", "-q", "--label", "b", "--store"], &[&store, &b]).code,
        0
    );
    let before = dir_size(&store.join("blocks"));
    assert_eq!(asl(&["admin", "forget", "a", "--store"], &[&store]).code, 0);
    let dry = asl(
        &["admin", "gc", "--dry-run", "--json", "--store"],
        &[&store],
    );
    assert_eq!(dry.code, 0);
    assert_eq!(
        dir_size(&store.join("blocks")),
        before,
        "dry run changed blocks"
    );
    assert_eq!(asl(&["admin", "gc", "--store"], &[&store]).code, 0);
    let after = dir_size(&store.join("blocks"));
    assert!(
        after < before * 6 / 10,
        "gc freed too little: {before} -> {after}"
    );
    assert_eq!(
        asl(&["admin", "verify", "--read-data", "--store"], &[&store]).code,
        0
    );
    assert_restores_to(&store, "b", &b, &t.path().join("r"));
    assert_ne!(
        asl(&["admin", "show", "a", "--store"], &[&store]).code,
        0,
        "forgotten snapshot still listed"
    );
}

/// Intake arguments whose storage operations come in the same order on every run (one
/// worker thread), so that a named crash point means the same place each time.
const INTAKE_ONE_THREAD: &[&str] = &[
    "intake",
    "-q",
    "--no-stat-cache",
    "--threads",
    "1",
    "--store",
];

#[test]
fn the_named_crash_points_of_an_intake_are_the_same_on_every_run() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_files(&src, 12, 1 << 20, 31);
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let first = crash_points(INTAKE_ONE_THREAD, &[&a, &src]);
    let second = crash_points(INTAKE_ONE_THREAD, &[&b, &src]);
    let count = |points: &[String]| {
        let mut by_point = BTreeMap::new();
        for p in points {
            let (name, n) = p.split_once('#').unwrap();
            let n: u64 = n.parse().unwrap();
            let e = by_point.entry(name.to_string()).or_insert(0);
            *e = n.max(*e);
        }
        by_point
    };
    assert_eq!(count(&first), count(&second));
    for kind in [
        "sync:open-block",
        "rename:block",
        "sync:open-segment",
        "rename:segment",
        "sync:log",
    ] {
        assert!(
            first.iter().any(|p| p.starts_with(&format!("{kind}#"))),
            "{kind} missing from {first:?}"
        );
    }
}

#[test]
fn sigkill_at_named_crash_points_of_an_intake_leaves_a_store_that_verifies_and_restores() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_files(&src, 12, 256 << 10, 30);
    let store = t.path().join("store");
    assert_eq!(asl(INTAKE_ONE_THREAD, &[&store, &src]).code, 0);
    // The points of an intake of new data into this store, listed on a copy of it.
    std::fs::write(src.join("extra-0"), pseudo_random(1000, 3 << 20)).unwrap();
    let copy = t.path().join("copy");
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&store)
            .arg(&copy),
    );
    let points = spread(&crash_points(INTAKE_ONE_THREAD, &[&copy, &src]), 4);
    assert!(points.len() >= 10, "{points:?}");
    let mut committed: Vec<(u64, Vec<String>)> = vec![(1, vec![])];
    let mut extras: Vec<String> = Vec::new();
    for (i, point) in points.iter().enumerate() {
        // Each run adds a file, so that every intake has new data to store.
        let name = format!("extra-{i}");
        std::fs::write(src.join(&name), pseudo_random(1000 + i as u64, 3 << 20)).unwrap();
        extras.push(name);
        let snaps_before = snapshot_ids(&store);
        run_until_crash_point(INTAKE_ONE_THREAD, &[&store, &src], point);
        let v = asl(&["admin", "verify", "--store"], &[&store]);
        assert_eq!(v.code, 0, "killed at {point}: {}", v.stdout);
        let snaps = snapshot_ids(&store);
        assert!(
            snaps_before.iter().all(|s| snaps.contains(s)),
            "killed at {point}: a committed snapshot vanished"
        );
        if let Some(new) = snaps.iter().find(|s| !snaps_before.contains(s)) {
            committed.push((*new, extras.clone()));
        }
    }
    assert_every_snapshot_restores(&store, &src, &committed, &extras, t.path());
    // And the store takes a new intake.
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &src]).code, 0);
}

#[test]
fn sigkill_at_named_crash_points_of_gc_leaves_a_store_that_verifies() {
    let t = tempfile::tempdir().unwrap();
    let template = t.path().join("template");
    let a = t.path().join("a");
    let b = t.path().join("b");
    make_files(&a, 20, 256 << 10, 50);
    make_files(&b, 20, 256 << 10, 60);
    for (label, src) in [("a", &a), ("b", &b)] {
        let out = asl(
            &["intake", "-q", "--label", label, "--store"],
            &[&template, src],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(
        asl(&["admin", "forget", "a", "--store"], &[&template]).code,
        0
    );
    let copy_of_template = |to: &Path| {
        run_ok(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(to),
        );
    };
    let listing = t.path().join("listing");
    copy_of_template(&listing);
    let gc: &[&str] = &["admin", "gc", "-q", "--store"];
    let points = spread(&crash_points(gc, &[&listing]), 8);
    assert!(
        points.iter().any(|p| p.starts_with("remove:block")),
        "{points:?}"
    );
    for (i, point) in points.iter().enumerate() {
        let store = t.path().join(format!("s{i}"));
        copy_of_template(&store);
        run_until_crash_point(gc, &[&store], point);
        let v = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
        assert_eq!(v.code, 0, "gc killed at {point}: {}", v.stdout);
        assert_restores_to(&store, "b", &b, &t.path().join(format!("r{i}")));
        // A later gc completes the job.
        assert_eq!(asl(gc, &[&store]).code, 0);
        assert_eq!(asl(&["admin", "verify", "--store"], &[&store]).code, 0);
        std::fs::remove_dir_all(&store).unwrap();
    }
}

#[test]
fn bad_inputs_get_one_clear_line_the_right_exit_code_and_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    make_files(&src, 2, 1000, 70);
    // A directory that is not a store.
    let notstore = t.path().join("notstore");
    std::fs::create_dir(&notstore).unwrap();
    std::fs::write(notstore.join("precious"), b"keep").unwrap();
    let r = asl(&["intake", "--store"], &[&notstore, &src]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not an ASL store"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(files_under(&notstore).len(), 1);
    let r = asl(&["admin", "snapshots", "--store"], &[&notstore]);
    assert_eq!(r.code, 1);

    let store = t.path().join("store");
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &src]).code, 0);
    let before = tree_fingerprint(&store);

    // A store of a newer format version.
    let newer = t.path().join("newer");
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&store)
            .arg(&newer),
    );
    let cfg = std::fs::read_to_string(newer.join("config"))
        .unwrap()
        .replace("\"version\": 1", "\"version\": 99");
    std::fs::write(newer.join("config"), cfg).unwrap();
    let r = asl(&["admin", "snapshots", "--store"], &[&newer]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("newer than this binary"), "{}", r.stderr);
    let r = asl(&["intake", "--store"], &[&newer, &src]);
    assert_eq!(r.code, 1);

    // A store locked by a live writer.
    let w = asl_store::Writer::open(&store).unwrap();
    let r = asl(&["intake", "--store"], &[&store, &src]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("locked by a running writer"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&std::process::id().to_string()),
        "{}",
        r.stderr
    );
    drop(w);

    // A non-empty restore target.
    let target = t.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("mine"), b"x").unwrap();
    let r = asl(
        &["admin", "restore", "latest", "--store"],
        &[&store, Path::new("--target"), &target],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    assert_eq!(files_under(&target).len(), 1);

    // A path with `..`.
    let r = asl(&["admin", "ls", "latest:/a/../..", "--store"], &[&store]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains(".."), "{}", r.stderr);
    let r = asl(
        &["admin", "restore", "latest:../etc", "--store"],
        &[&store, Path::new("--target"), &t.path().join("t2")],
    );
    assert_eq!(r.code, 2);
    assert!(!t.path().join("t2").exists());

    // An unknown snapshot.
    let r = asl(&["admin", "show", "nope", "--store"], &[&store]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no snapshot matches 'nope'"),
        "{}",
        r.stderr
    );

    assert_eq!(
        tree_fingerprint(&store),
        before,
        "a rejected command changed the store"
    );
}

#[test]
fn debug_decodes_the_log_segments_blocks_and_lookups() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    make_files(&src, 3, 300_000, 80);
    let store = t.path().join("store");
    let out = asl(&["intake", "--json", "--store"], &[&store, &src]);
    let root = out.json()["root"].as_str().unwrap().to_string();
    let log = asl(&["debug", "log", "--json", "--store"], &[&store]);
    assert_eq!(log.code, 0);
    let recs = log.json()["records"].as_array().unwrap().clone();
    assert_eq!(recs[0]["type_name"], "SEGMENT_SEAL");
    assert_eq!(recs[1]["type_name"], "SNAPSHOT");
    assert_eq!(recs[1]["payload"]["root"], root.as_str());
    let seg = asl(&["debug", "segment", "1", "--json", "--store"], &[&store]);
    assert_eq!(seg.code, 0, "{}", seg.stderr);
    let segj = seg.json();
    assert_eq!(segj["version"], 2, "new segments are written in version 2");
    let on_disk = std::fs::metadata(store.join("segments/0000000000000001.seg")).unwrap();
    assert_eq!(segj["size"], on_disk.len());
    let block = segj["blocks"][0].as_str().unwrap().to_string();
    let blk = asl(&["debug", "block", &block, "--json", "--store"], &[&store]);
    assert_eq!(blk.json()["hash_matches_name"], true);
    let look = asl(&["debug", "lookup", &root, "--json", "--store"], &[&store]);
    assert_eq!(look.json()["type_tag"], 1);
    let art = asl(&["debug", "artifact", &root, "--store"], &[&store]);
    assert_eq!(art.code, 0);
    let bad = asl(&["debug", "lookup", "b3:00", "--store"], &[&store]);
    assert_eq!(bad.code, 2);
}

#[test]
fn multicall_names_and_help_work() {
    let t = tempfile::tempdir().unwrap();
    let links = t.path().join("bin");
    let r = asl(&["install-links", "--dir"], &[&links]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = std::process::Command::new(links.join("asl-intake"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Take one or more file trees"));
    let none = common::asl().arg("no-such-tool").output().unwrap();
    assert_eq!(none.status.code(), Some(2));
}

/// Restores snapshot `snap` into `target` and checks it equals `src` exactly.
fn assert_restores_to(store: &Path, snap: &str, src: &Path, target: &Path) {
    let r = asl(
        &["admin", "restore", snap, "--store"],
        &[store, Path::new("--target"), target],
    );
    assert_eq!(r.code, 0, "restore of {snap}: {}", r.stderr);
    let diffs = compare_trees(src, target);
    assert!(diffs.is_empty(), "{:?}", &diffs[..diffs.len().min(10)]);
}

/// Verifies every byte, then restores each committed snapshot and checks it holds exactly the
/// base files plus the extra files that existed when it was taken.
fn assert_every_snapshot_restores(
    store: &Path,
    src: &Path,
    committed: &[(u64, Vec<String>)],
    extras: &[String],
    scratch: &Path,
) {
    assert_eq!(
        asl(&["admin", "verify", "--read-data", "--store"], &[store]).code,
        0
    );
    for (snap, files) in committed {
        let target = scratch.join(format!("r{snap}"));
        let r = asl(
            &["admin", "restore", &snap.to_string(), "--store"],
            &[store, Path::new("--target"), &target],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_restored_prefix(src, &target, files, extras);
        std::fs::remove_dir_all(&target).unwrap();
    }
}

/// Checks that `target` equals `src` restricted to the base files plus `present` extras.
fn assert_restored_prefix(src: &Path, target: &Path, present: &[String], all_extras: &[String]) {
    let diffs = compare_trees(src, target);
    let unexpected: Vec<&String> = diffs
        .iter()
        .filter(|d| {
            !all_extras
                .iter()
                .any(|e| !present.contains(e) && d.starts_with(&format!("{e}: only in")))
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    for e in present {
        assert!(target.join(e).exists(), "{e} missing from restore");
    }
}
