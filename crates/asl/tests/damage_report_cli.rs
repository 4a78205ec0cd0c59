//! `asl-admin verify --read-data` names damage exactly: one damaged record in a block shared
//! by many files affects only the files that use it, and every loss is named by
//! `snapshot:path`, as a whole file or as part of a multi-chunk one. Real intake, real
//! blocks, bytes flipped inside the records the blocks' trailers locate.

mod common;
mod storetest;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use asl_store::block::{BlockEntry, RecordKind, decode_trailer};
use asl_store::{Reference, Store};
use storetest::*;

/// Every record of every block, with its block file.
fn records(store: &Path) -> Vec<(PathBuf, BlockEntry)> {
    files_under(&store.join("blocks"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "blk"))
        .flat_map(|b| {
            let t = decode_trailer(&std::fs::read(&b).unwrap()).unwrap();
            t.into_iter().map(move |e| (b.clone(), e))
        })
        .collect()
}

fn content(store: &Store, root: &Reference, path: &str) -> Reference {
    let snap = store.snapshots()[0];
    asl_fs::lookup(&store.reader_at(snap), root, path.as_bytes())
        .unwrap()
        .content
        .unwrap()
}

fn flip_record(block: &Path, e: &BlockEntry) {
    flip_byte(block, (e.offset + u64::from(e.stored_len) / 2) as usize);
}

#[test]
fn one_damaged_record_names_exactly_its_files_by_snapshot_and_path() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    // 40 small files whose records share a block, and one file of many chunks.
    make_files(&src, 40, 2_000, 7);
    std::fs::write(src.join("big"), asl_fs::testing::pseudo_random(99, 4 << 20)).unwrap();
    // A sparse file: a zero chunk and a hole. Intact, so never named though it shares the block.
    let sparse = std::fs::File::create(src.join("sparse")).unwrap();
    std::io::Write::write_all(&mut &sparse, &[0u8; 3_000]).unwrap();
    sparse.set_len(1 << 20).unwrap();
    drop(sparse);
    let store_dir = t.path().join("store");
    assert_eq!(
        asl(&["intake", "-q", "--store"], &[&store_dir, &src]).code,
        0
    );

    let store = Store::open(&store_dir).unwrap();
    let root = store.snapshots()[0].root.unwrap();
    let victim = content(&store, &root, "f17");
    let big = content(&store, &root, "big");
    let zeros = content(&store, &root, "sparse");
    let small: HashSet<Reference> = (0..40)
        .map(|i| content(&store, &root, &format!("f{i}")))
        .chain([zeros])
        .collect();
    drop(store);
    let recs = records(&store_dir);
    let (vb, ve) = recs.iter().find(|(_, e)| e.reference == victim).unwrap();
    let neighbours = recs.iter().filter(|(b, _)| b == vb).count();
    assert!(
        neighbours >= 20,
        "the small files share a block: {neighbours}"
    );
    assert!(
        recs.iter().any(|(b, e)| b == vb && e.reference == zeros),
        "the sparse file's record shares the damaged block"
    );
    // A chunk of `big`: a plain record that is no small file, not `big`'s part list, no tree.
    let (cb, ce) = recs
        .iter()
        .find(|(_, e)| {
            e.kind == RecordKind::Chunk
                && e.raw_len > 10_000
                && !small.contains(&e.reference)
                && e.reference != root
        })
        .expect("a chunk of big");
    assert_ne!(ce.reference, big, "big has many chunks");
    flip_record(vb, ve);
    flip_record(cb, ce);

    let out = asl(
        &["admin", "verify", "--read-data", "--json", "--store"],
        &[&store_dir],
    );
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let rep = out.json();
    let problems = rep["problems"].as_array().unwrap();
    let named: HashSet<String> = problems
        .iter()
        .flat_map(|p| p["artifacts"].as_array().unwrap())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        named,
        HashSet::from([
            victim.to_string(),
            big.to_string(),
            ce.reference.to_string()
        ]),
        "only f17, big and big's damaged chunk are affected: {rep:#}"
    );
    let paths: HashSet<(u64, String, bool)> = problems
        .iter()
        .flat_map(|p| p["paths"].as_array().unwrap())
        .map(|d| {
            (
                d["snapshot"].as_u64().unwrap(),
                d["path"].as_str().unwrap().to_owned(),
                d["whole"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        HashSet::from([(1, "/f17".to_owned(), true), (1, "/big".to_owned(), false)]),
        "{rep:#}"
    );

    let text = asl(
        &["admin", "verify", "--read-data", "--store"],
        &[&store_dir],
    );
    assert_eq!(text.code, 3);
    assert!(
        text.stdout.contains("lost: 1:/f17 (whole file)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("lost: 1:/big (part of the file"),
        "{}",
        text.stdout
    );
}
