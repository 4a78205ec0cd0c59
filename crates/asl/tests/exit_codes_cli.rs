//! The exit-code contract (docs/EXIT-CODES.md), command by command, on real stores damaged by
//! the test: 3 when a command finds an integrity problem, 1 for an operational failure, and
//! the message naming the object concerned.

mod common;
mod storetest;

use std::path::{Path, PathBuf};

use storetest::*;

/// A store with two snapshots of one tree. Snapshot 1 holds `a.txt`, `big` (300 KB that do not
/// compress) and `sub/c`; snapshot 2 adds `new.txt`. Everything of snapshot 1 is in one block,
/// the data block; what snapshot 2 adds (new.txt, its new root tree) is in a second, small
/// one: the tree block. Deleting the tree block loses snapshot 2's root tree and nothing else.
struct Damaged {
    _dir: tempfile::TempDir,
    store: PathBuf,
    data_block: PathBuf,
    tree_block: PathBuf,
    target: PathBuf,
    /// The reference of `big`'s content.
    big_content: String,
}

fn two_snapshots() -> Damaged {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("big"), asl_fs::testing::pseudo_random(17, 300_000)).unwrap();
    std::fs::write(src.join("sub/c"), b"c\n").unwrap();
    let store = dir.path().join("store");
    let first = asl(&["intake", "-q", "--store"], &[&store, &src]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    std::fs::write(src.join("new.txt"), b"new\n").unwrap();
    let second = asl(&["intake", "-q", "--store"], &[&store, &src]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let mut blocks: Vec<(u64, PathBuf)> = files_under(&store.join("blocks"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "blk"))
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    blocks.sort();
    assert_eq!(
        blocks.len(),
        2,
        "expected a data block and a tree block: {blocks:?}"
    );
    assert!(blocks[1].0 > 250_000 && blocks[0].0 < 10_000, "{blocks:?}");
    let target = dir.path().join("restored");
    let ls = asl(
        &[
            "admin",
            "--json",
            "--store",
            store.to_str().unwrap(),
            "ls",
            "2:/big",
        ],
        &[],
    );
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    let big_content = ls.json()[0]["content"].as_str().unwrap().to_string();
    Damaged {
        big_content,
        store,
        data_block: blocks[1].1.clone(),
        tree_block: blocks[0].1.clone(),
        target,
        _dir: dir,
    }
}

/// The block id as the tools print it: the file name without `.blk`.
fn block_id(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

fn admin(store: &Path, args: &[&str]) -> Out {
    let mut a = vec!["admin", "--store", store.to_str().unwrap()];
    a.extend_from_slice(args);
    asl(&a, &[])
}

fn assert_code(out: &Out, code: i32, what: &str) {
    assert_eq!(
        out.code, code,
        "{what}: exit {} instead of {code}\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
}

fn assert_names(text: &str, needle: &str, what: &str) {
    assert!(
        text.contains(needle),
        "{what} does not name {needle}:\n{text}"
    );
}

#[test]
fn a_missing_block_file_makes_cat_ls_diff_restore_and_verify_exit_3_naming_it() {
    let d = two_snapshots();
    let id = block_id(&d.data_block);
    std::fs::remove_file(&d.data_block).unwrap();

    let cat = admin(&d.store, &["cat", "2:/big"]);
    assert_code(&cat, 3, "cat of a file whose block is missing");
    assert_names(&cat.stderr, &id, "cat");
    assert_names(&cat.stderr, "/big", "cat");
    assert!(
        !cat.stderr.contains("tree artifact"),
        "cat calls a file's content a tree: {}",
        cat.stderr
    );
    let cat_json = admin(&d.store, &["--json", "cat", "2:/big"]);
    assert_code(&cat_json, 3, "cat --json");
    assert_eq!(cat_json.json()["error"]["code"], 3, "{}", cat_json.stdout);

    let ls = admin(&d.store, &["ls", "2:/sub"]);
    assert_code(&ls, 3, "ls of a directory whose tree block is missing");
    assert_names(&ls.stderr, &id, "ls");
    assert_names(&ls.stderr, "snapshot 2, /sub", "ls");

    // asl-debug reads the same content by its reference.
    let debug = asl(
        &[
            "debug",
            "--store",
            d.store.to_str().unwrap(),
            "artifact",
            &d.big_content,
        ],
        &[],
    );
    assert_code(&debug, 3, "asl-debug artifact whose block is missing");
    assert_names(&debug.stderr, &id, "asl-debug artifact");

    let diff = admin(&d.store, &["diff", "1", "2"]);
    assert_code(&diff, 3, "diff of snapshots whose trees are missing");
    assert_names(&diff.stderr, &id, "diff");
    // Snapshot 1's root tree is in the missing block.
    assert_names(&diff.stderr, "snapshot 1, /:", "diff");

    let target = d.target.to_str().unwrap();
    let restore = admin(&d.store, &["restore", "2", "--target", target]);
    assert_code(&restore, 3, "restore with a missing block");
    assert_names(&restore.stdout, "DAMAGED big", "restore");
    assert_names(&restore.stdout, &id, "restore");

    let verify = admin(&d.store, &["verify"]);
    assert_code(&verify, 3, "verify with a missing block");
    assert_names(&verify.stdout, &id, "verify");
    // Every loss by snapshot and path: snapshot 1's root listing (its tree is in the block),
    // and in snapshot 2 (whose root is in the other block) each entry the block held.
    for lost in [
        "lost: 1:/ (directory listing",
        "lost: 2:/big (whole file)",
        "lost: 2:/a.txt (whole file)",
        "lost: 2:/sub (directory listing",
    ] {
        assert_names(&verify.stdout, lost, "verify");
    }
    assert!(!verify.stdout.contains("2:/new.txt"), "{}", verify.stdout);
    let json = admin(&d.store, &["--json", "verify"]);
    assert_code(&json, 3, "verify --json with a missing block");
    let paths = lost_paths(&json.json());
    assert!(paths.contains(&(2, "/big".into(), false)), "{paths:?}");
    assert!(paths.contains(&(2, "/sub".into(), true)), "{paths:?}");
    assert!(paths.contains(&(1, "/".into(), true)), "{paths:?}");
}

/// Every `(snapshot, path, directory)` the problems of a `verify --json` name.
fn lost_paths(v: &serde_json::Value) -> Vec<(u64, String, bool)> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["paths"].as_array().unwrap().iter())
        .map(|p| {
            (
                p["snapshot"].as_u64().unwrap(),
                p["path"].as_str().unwrap().to_string(),
                p["directory"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_missing_segment_makes_verify_and_readers_exit_3_naming_snapshots_and_paths() {
    let d = two_snapshots();
    // Segment 2 holds the index entries of what snapshot 2 added: new.txt and its root tree.
    let seg = d.store.join("segments/0000000000000002.seg");
    std::fs::remove_file(&seg).unwrap();

    let verify = admin(&d.store, &["verify"]);
    assert_code(&verify, 3, "verify with a missing segment");
    assert_names(&verify.stdout, "DAMAGED segment", "verify");
    assert_names(&verify.stdout, "0000000000000002.seg", "verify");
    assert_names(&verify.stdout, "lost: 2:/ (directory listing", "verify");
    assert!(!verify.stdout.contains("lost: 1:"), "{}", verify.stdout);
    let json = admin(&d.store, &["--json", "verify"]);
    assert_code(&json, 3, "verify --json with a missing segment");
    let v = json.json();
    assert!(
        v["problems"].as_array().unwrap().iter().any(|p| p["object"]
            .as_str()
            .unwrap()
            .contains("0000000000000002.seg")),
        "{}",
        json.stdout
    );
    assert_eq!(lost_paths(&v), vec![(2, "/".to_string(), true)]);

    let ls = admin(&d.store, &["ls", "2"]);
    assert_code(&ls, 3, "ls of a snapshot whose index entries are lost");
    assert_names(&ls.stderr, "snapshot 2, /", "ls");
    let target = d.target.to_str().unwrap();
    let restore = admin(&d.store, &["restore", "2", "--target", target]);
    assert_code(
        &restore,
        3,
        "restore of a snapshot whose index entries are lost",
    );
    assert_names(
        &restore.stdout,
        "nothing restored from snapshot 2",
        "restore",
    );
    let diff = admin(&d.store, &["diff", "1", "2"]);
    assert_code(
        &diff,
        3,
        "diff with a snapshot whose index entries are lost",
    );
    assert_names(&diff.stderr, "snapshot 2, /:", "diff");
    // Snapshot 1 does not need the lost segment.
    let old = admin(&d.store, &["cat", "1:/a.txt"]);
    assert_code(&old, 0, "cat from an intact snapshot");
    assert_eq!(old.stdout, "hello\n");
}

#[test]
fn a_flipped_byte_in_a_block_makes_cat_restore_and_verify_exit_3_naming_the_file() {
    let d = two_snapshots();
    let len = std::fs::metadata(&d.data_block).unwrap().len() as usize;
    // The middle of the block is inside big's 300 KB of data.
    flip_byte(&d.data_block, len / 2);

    let cat = admin(&d.store, &["cat", "2:/big"]);
    assert_code(&cat, 3, "cat of a damaged file");
    assert_names(&cat.stderr, "/big", "cat");
    assert_names(&cat.stderr, "damaged", "cat");
    let intact = admin(&d.store, &["cat", "2:/new.txt"]);
    assert_code(&intact, 0, "cat of an intact file");
    assert_eq!(intact.stdout, "new\n");

    let target = d.target.to_str().unwrap();
    let restore = admin(&d.store, &["restore", "2", "--target", target]);
    assert_code(&restore, 3, "restore of a snapshot with a damaged file");
    assert_names(&restore.stdout, "DAMAGED big", "restore");

    let verify = admin(&d.store, &["verify", "--read-data"]);
    assert_code(&verify, 3, "verify --read-data of a damaged block");
    assert_names(&verify.stdout, &block_id(&d.data_block), "verify");
}

#[test]
fn a_lost_root_tree_makes_restore_say_nothing_was_restored_and_exit_3() {
    let d = two_snapshots();
    let id = block_id(&d.tree_block);
    std::fs::remove_file(&d.tree_block).unwrap();

    let target = d.target.to_str().unwrap();
    let restore = admin(&d.store, &["restore", "2", "--target", target]);
    assert_code(&restore, 3, "restore of a snapshot whose root tree is lost");
    assert_names(
        &restore.stdout,
        "nothing restored from snapshot 2",
        "restore",
    );
    assert_names(&restore.stdout, &id, "restore");
    assert!(
        !restore.stdout.contains("0 files"),
        "a lost root reads as an empty snapshot: {}",
        restore.stdout
    );
    let json_target = d.target.with_file_name("restored-json");
    let json = admin(
        &d.store,
        &[
            "--json",
            "restore",
            "2",
            "--target",
            json_target.to_str().unwrap(),
        ],
    );
    assert_code(&json, 3, "restore --json of a lost root tree");
    let j = json.json();
    assert_eq!(j["integrity_errors"][0]["path"], "", "{}", json.stdout);
    assert_names(
        j["integrity_errors"][0]["message"].as_str().unwrap(),
        &id,
        "restore --json",
    );

    let ls = admin(&d.store, &["ls", "2"]);
    assert_code(&ls, 3, "ls of a lost root tree");
    assert_names(&ls.stderr, &id, "ls");
    let cat = admin(&d.store, &["cat", "2:/a.txt"]);
    assert_code(&cat, 3, "cat under a lost root tree");
    assert_names(&cat.stderr, "snapshot 2, /a.txt", "cat");
    assert_names(&cat.stderr, &id, "cat");
    let verify = admin(&d.store, &["verify"]);
    assert_code(&verify, 3, "verify of a lost root tree");
    assert_names(&verify.stdout, "lost: 2:/ (directory listing", "verify");
    let json = admin(&d.store, &["--json", "verify"]);
    assert_code(&json, 3, "verify --json of a lost root tree");
    assert_eq!(lost_paths(&json.json()), vec![(2, "/".to_string(), true)]);
    // Snapshot 1 does not need the lost block.
    let old = admin(&d.store, &["cat", "1:/a.txt"]);
    assert_code(&old, 0, "cat from an intact snapshot");
}

#[test]
fn operational_failures_exit_1_and_name_what_failed() {
    let d = two_snapshots();
    let not_a_store = d.store.join("sub-dir-that-is-no-store");
    std::fs::create_dir(&not_a_store).unwrap();
    let ls = admin(&not_a_store, &["ls", "1"]);
    assert_code(&ls, 1, "ls of a directory that is not a store");
    assert_names(&ls.stderr, "not an ASL store", "ls");

    let unknown = admin(&d.store, &["cat", "99:/a.txt"]);
    assert_code(&unknown, 1, "cat from an unknown snapshot");
    assert_names(&unknown.stderr, "'99'", "cat");

    let missing = admin(&d.store, &["cat", "1:/no-such-file"]);
    assert_code(&missing, 1, "cat of a path the snapshot does not hold");
    assert_names(&missing.stderr, "no-such-file", "cat");

    let unknown_ref = format!("b3:{}", "0".repeat(64));
    let debug = asl(
        &[
            "debug",
            "--store",
            d.store.to_str().unwrap(),
            "artifact",
            &unknown_ref,
        ],
        &[],
    );
    assert_code(&debug, 1, "asl-debug artifact of a reference never stored");
    assert_names(&debug.stderr, &unknown_ref, "asl-debug artifact");

    std::fs::create_dir_all(d.target.join("occupied")).unwrap();
    let target = d.target.to_str().unwrap();
    let restore = admin(&d.store, &["restore", "1", "--target", target]);
    assert_code(&restore, 1, "restore into a non-empty directory");

    // A writer holding the lock: gc fails (1), it is not damage.
    let lock = std::fs::File::open(d.store.join("locks/writer.lock")).unwrap();
    lock.lock().unwrap();
    let gc = admin(&d.store, &["gc"]);
    assert_code(&gc, 1, "gc while a writer holds the lock");
    assert_names(&gc.stderr, "locked", "gc");
    lock.unlock().unwrap();
}

#[test]
fn asl_capture_verify_of_a_receipt_whose_block_is_missing_exits_3_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let init = asl(&["init-store", "-q", "--store"], &[&store]);
    assert_code(&init, 0, "init-store");
    let file = dir.path().join("input");
    std::fs::write(&file, b"captured\n").unwrap();
    let outdir = dir.path().join("out");
    let s = store.to_str().unwrap();
    let capture = asl(
        &[
            "capture",
            "-q",
            "--store",
            s,
            "--file",
            file.to_str().unwrap(),
            "--outdir",
        ],
        &[&outdir],
    );
    assert_code(&capture, 0, "capture --file");
    let receipt = std::fs::read_to_string(outdir.join("receipt.ref")).unwrap();
    let receipt = receipt.trim();
    assert_code(
        &asl(&["capture", "--store", s, "verify", receipt], &[]),
        0,
        "verify of an intact receipt",
    );
    let blocks: Vec<PathBuf> = files_under(&store.join("blocks"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "blk"))
        .collect();
    assert!(!blocks.is_empty());
    for b in &blocks {
        std::fs::remove_file(b).unwrap();
    }
    let verify = asl(&["capture", "--store", s, "verify", receipt], &[]);
    assert_code(&verify, 3, "verify of a receipt whose block is missing");
    assert_names(
        &verify.stderr,
        "the block file is missing",
        "capture verify",
    );
    assert_names(&verify.stderr, &block_id(&blocks[0]), "capture verify");
}
