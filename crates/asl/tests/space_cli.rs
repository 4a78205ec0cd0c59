//! Space accounting through the real binary: what a killed or out-of-space intake leaves is
//! shown by `stats` and `verify`, and `gc` reports exactly what it freed, checked with `du`.

mod common;
mod storetest;

use std::path::Path;
use std::process::Command;

use storetest::*;

/// The store's size as `du -sb` measures it, less the directories' own sizes (ext4 never
/// shrinks a directory, tmpfs does) and the lock file (each writer rewrites it with its pid).
fn du_bytes(store: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-sb", "--exclude=writer.lock"])
        .arg(store)
        .output()
        .expect("run du (coreutils)");
    assert!(out.status.success(), "du failed: {out:?}");
    let total: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a number");
    total - dir_sizes(store)
}

fn dir_sizes(p: &Path) -> u64 {
    let mut total = std::fs::symlink_metadata(p).unwrap().len();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            total += dir_sizes(&e.path());
        }
    }
    total
}

/// The same measured by summing the files' lengths.
fn file_bytes(store: &Path) -> u64 {
    files_under(store)
        .iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "writer.lock"))
        .map(|f| std::fs::symlink_metadata(f).unwrap().len())
        .sum()
}

/// Runs a real intake of `src` and SIGKILLs it at its named crash point just before it
/// seals block `blocks + 1`: it dies mid-way, after sealing `blocks` blocks, on any machine.
fn kill_intake_after_sealing(store: &Path, src: &Path, blocks: usize) {
    storetest::run_until_crash_point(
        &["intake", "-q", "--store"],
        &[store, src],
        &format!("rename:block#{}", blocks + 1),
    );
}

/// Collects what the store holds apart from leftovers, so that the next `gc` has nothing
/// else to do (an intake stores an artifact no snapshot reaches, which `gc` drops by
/// compacting the index: freed too, but not part of what is checked here).
fn settle(store: &Path) {
    let gc = asl(&["admin", "gc", "-q", "--store"], &[store]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
}

/// Checks what every case shares: `stats` and `verify` show the leftovers as what the
/// store holds beyond `committed` bytes, `gc` frees exactly them, and the store is whole.
fn assert_gc_frees_exactly_the_leftovers(store: &Path, committed: u64) {
    let du_before = du_bytes(store);
    let files_before = file_bytes(store);
    assert_eq!(du_before, files_before);
    assert!(
        files_before > committed,
        "nothing was left behind: {files_before} <= {committed}"
    );
    let leftover = files_before - committed;

    let stats = asl(&["admin", "stats", "--json", "--store"], &[store]);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let u = &stats.json()["unreferenced"];
    assert_eq!(u["total"]["bytes"].as_u64(), Some(leftover), "{u}");
    assert!(u["sealed_blocks"]["files"].as_u64().unwrap() >= 1, "{u}");
    let text = asl(&["admin", "stats", "--store"], &[store]);
    assert!(
        text.stdout.contains("unreferenced") && text.stdout.contains("asl-admin gc"),
        "{}",
        text.stdout
    );

    // A warning, exit 0: the leftovers hold nothing any snapshot reaches.
    let v = asl(&["admin", "verify", "--store"], &[store]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(v.stdout.contains("warning:"), "{}", v.stdout);
    let vj = asl(&["admin", "verify", "--json", "--store"], &[store]);
    assert_eq!(vj.code, 0, "{}", vj.stdout);
    assert_eq!(
        vj.json()["unreferenced"]["total"]["bytes"].as_u64(),
        Some(leftover)
    );

    let gc = asl(&["admin", "gc", "--json", "--store"], &[store]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    let freed = gc.json()["gc"]["bytes_freed"].as_i64().unwrap();
    assert_eq!(freed, leftover as i64, "{}", gc.stdout);
    assert_eq!(
        du_before - du_bytes(store),
        leftover,
        "du disagrees with gc"
    );
    assert_eq!(file_bytes(store), committed);

    let after = asl(&["admin", "stats", "--json", "--store"], &[store]);
    assert_eq!(after.json()["unreferenced"]["total"]["files"], 0);
    let v = asl(&["admin", "verify", "--read-data", "--store"], &[store]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(!v.stdout.contains("warning:"), "{}", v.stdout);
}

#[test]
fn a_killed_intake_leaves_orphans_that_stats_shows_and_gc_frees_exactly() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let small = t.path().join("small");
    make_files(&small, 4, 200_000, 61);
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &small]).code, 0);
    settle(&store);
    let committed = file_bytes(&store);
    // 96 MiB of fresh data: twelve 8 MiB blocks; killed after sealing two.
    let big = t.path().join("big");
    make_files(&big, 96, 1 << 20, 62);
    kill_intake_after_sealing(&store, &big, 2);
    assert_eq!(snapshot_ids(&store), vec![1], "the killed intake committed");
    assert_gc_frees_exactly_the_leftovers(&store, committed);
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &small]).code, 0);
}

#[test]
fn gc_after_a_repack_reports_exactly_what_du_sees_freed() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let a = t.path().join("a");
    make_files(&a, 8, 500_000, 63);
    assert_eq!(
        asl(&["intake", "-q", "--label", "a", "--store"], &[&store, &a]).code,
        0
    );
    // b keeps one file of a's block: after forgetting a, that block is mostly dead.
    let b = t.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(a.join("f0"), b.join("f0")).unwrap();
    make_files(&b.join("new"), 1, 300_000, 64);
    assert_eq!(
        asl(&["intake", "-q", "--label", "b", "--store"], &[&store, &b]).code,
        0
    );
    assert_eq!(asl(&["admin", "forget", "a", "--store"], &[&store]).code, 0);
    let du_before = du_bytes(&store);
    let files_before = file_bytes(&store);
    assert_eq!(du_before, files_before);
    let gc = asl(&["admin", "gc", "--json", "--store"], &[&store]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    let rep = &gc.json()["gc"];
    assert!(rep["blocks_repacked"].as_u64().unwrap() >= 1, "{rep}");
    let freed = rep["bytes_freed"].as_i64().unwrap();
    assert_eq!(freed, du_before as i64 - du_bytes(&store) as i64, "{rep}");
    assert_eq!(freed, files_before as i64 - file_bytes(&store) as i64);
    let v = asl(&["admin", "verify", "--read-data", "--store"], &[&store]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let r = t.path().join("r");
    let out = common::run(
        common::asl()
            .args(["admin", "restore", "b", "--store"])
            .arg(&store)
            .arg("--target")
            .arg(&r),
    );
    assert!(out.status.success(), "{}", common::transcript(&out));
    assert_eq!(
        std::fs::read(r.join("f0")).unwrap(),
        std::fs::read(a.join("f0")).unwrap()
    );
}

/// A tmpfs of a fixed size mounted by the test itself, unmounted however the test ends.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "asl-space-test",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        SmallFs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn an_intake_that_fills_the_disk_leaves_orphans_that_gc_frees_exactly() {
    let t = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount("24m");
    let store = fs.path().join("store");
    let small = t.path().join("small");
    make_files(&small, 4, 200_000, 65);
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &small]).code, 0);
    settle(&store);
    let committed = file_bytes(&store);
    let big = t.path().join("big");
    make_files(&big, 48, 1 << 20, 66);
    let full = asl(&["intake", "-q", "--store"], &[&store, &big]);
    assert_ne!(full.code, 0, "48 MiB fitted in a 24 MiB tmpfs");
    assert!(
        full.stderr.contains("No space left on device"),
        "{}",
        full.stderr
    );
    assert_eq!(snapshot_ids(&store), vec![1], "the failed intake committed");
    assert_gc_frees_exactly_the_leftovers(&store, committed);
    assert_eq!(asl(&["intake", "-q", "--store"], &[&store, &small]).code, 0);
}
