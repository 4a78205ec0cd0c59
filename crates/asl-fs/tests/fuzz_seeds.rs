//! Replays every committed fuzz input under `fuzz/seeds/<target>/` through the decoders, with
//! the same property checks the fuzz targets run (`fuzz/src/lib.rs`, compiled in here).
//!
//! The fuzz crate sits outside the workspace and only runs under `scripts/fuzz.sh`, so without
//! this test a decoder change that brings back a past finding (`finding-*`) or breaks a seed
//! would pass `cargo test`. The test lives in asl-fs because the tree decoder is here and
//! asl-fs already depends on asl-store, whose log, segment and block decoders the other
//! targets use.

use std::path::{Path, PathBuf};

#[allow(dead_code)] // MAX_RAW_LEN and the like are used by the fuzz targets, not here
#[path = "../../../fuzz/src/lib.rs"]
mod properties;

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

/// Feeds each file of `fuzz/seeds/<target>/` to `check` (which panics when a decoder panics or
/// a property fails). Seeds written by the generator (`examples/seeds.rs`) are valid encodings
/// and must decode; `finding-*` inputs are past findings and only must not break a property.
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let dir = seeds_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read the seed directory {}: {e}", dir.display()))
        .map(|e| e.expect("list the seed directory").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds under {}", dir.display());
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("read seed {}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| check(&bytes));
        match result {
            Ok(decoded) => assert!(
                decoded || name.starts_with("finding-"),
                "seed {target}/{name} no longer decodes: the generator wrote it as a valid \
                 encoding, so the format or the decoder changed"
            ),
            Err(_) => panic!("seed {target}/{name} panics or breaks a property (message above)"),
        }
    }
}

#[test]
fn log_seeds_replay_without_panic() {
    replay("log", properties::log);
}

#[test]
fn segment_seeds_replay_without_panic() {
    replay("segment", properties::segment);
}

#[test]
fn block_seeds_replay_without_panic() {
    replay("block", properties::block);
}

#[test]
fn tree_seeds_replay_without_panic() {
    replay("tree", properties::tree);
}

#[test]
fn checkpoint_seeds_replay_without_panic() {
    replay("checkpoint", properties::checkpoint);
}
