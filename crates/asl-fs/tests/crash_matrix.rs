//! The crash matrix for intake: a real tree (hardlinks, a sparse file, symlinks, xattrs, a
//! non-UTF-8 name…) is taken into a store on [`SimStorage`], which keeps the POSIX durability
//! rules to the letter, with the power cut (or EIO, or ENOSPC) at each storage operation in
//! turn. After each, a new process's view of the store must hold the earlier snapshot and,
//! if the intake's commit became durable, the new one, each with its exact root and every
//! artifact it reaches verifying clean; and the store must take the next intake.
//!
//! The store-level matrix (commit, merge, GC, reindex) is in asl-store's tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use asl_fs::testing::{RescueTreeOptions, build_rescue_tree, compare_trees};
use asl_fs::{IntakeOptions, Progress, RestoreOptions, intake, restore};
use asl_store::storage::sim::{Fault, Loss, SimStorage};
use asl_store::verify::{VerifyOptions, verify};
use asl_store::{InitOptions, Layout, Reference, Store, StoreError, TypeTag, Writer};

const ROOT: &str = "/sim/store";

fn layout(sim: &SimStorage) -> Layout {
    Layout::on(Arc::new(sim.clone()), Path::new(ROOT))
}

fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    match tag {
        TypeTag::TREE => asl_fs::tree_children(bytes).map_err(|e| e.to_string()),
        _ => Ok(vec![]),
    }
}

/// Intakes `src` with one thread (so the storage operations come in the same order on every
/// run) and commits it; returns the root.
fn intake_commit(sim: &SimStorage, src: &Path) -> Result<Reference, String> {
    let mut w = Writer::open_in(layout(sim)).map_err(|e| e.to_string())?;
    w.set_background_sealing(false);
    let opts = IntakeOptions {
        threads: 1,
        ..Default::default()
    };
    let s = intake(&w, &[src.to_path_buf()], &opts, &Progress::new()).map_err(|e| e.to_string())?;
    w.commit(Some(s.root), asl_store::SnapshotMeta::now("intake"))
        .map_err(|e: StoreError| e.to_string())?;
    Ok(s.root)
}

/// A new store on `sim` with 64 KiB blocks, so that a few hundred KiB fill many blocks.
fn new_store() -> SimStorage {
    let sim = SimStorage::new(Path::new(ROOT));
    let opts = InitOptions {
        block_target_size: Some(65_536),
        ..InitOptions::default()
    };
    Store::init_in(&layout(&sim), &opts).unwrap();
    sim
}

/// What the store must show: the committed roots by snapshot id, and the root of the intake
/// under test (there only if its commit became durable; surely if the intake succeeded).
fn check(
    sim: &SimStorage,
    committed: &[(u64, Reference)],
    pending: Reference,
    must_hold_pending: bool,
    next_src: &Path,
) -> Result<(), String> {
    let store = Store::open_in(layout(sim)).map_err(|e| format!("open: {e}"))?;
    let snaps: Vec<(u64, Option<Reference>)> =
        store.snapshots().iter().map(|s| (s.id, s.root)).collect();
    for (id, root) in committed {
        if !snaps.contains(&(*id, Some(*root))) {
            return Err(format!("snapshot {id} lost or changed: {snaps:?}"));
        }
    }
    let extra: Vec<_> = snaps
        .iter()
        .filter(|(id, _)| !committed.iter().any(|(c, _)| c == id))
        .collect();
    match extra.as_slice() {
        [] if must_hold_pending => return Err(format!("the intake succeeded but: {snaps:?}")),
        [] => {}
        [(_, Some(root))] if *root == pending => {}
        _ => return Err(format!("a snapshot that was never committed: {snaps:?}")),
    }
    let v = verify(&store, &VerifyOptions { read_data: true }, &children);
    if !v.ok() {
        return Err(format!("verify: {:#?}", v.problems));
    }
    drop(store);
    intake_commit(sim, next_src).map_err(|e| format!("the next intake: {e}"))?;
    Ok(())
}

/// The rescue tree twice, the second with new files, and a small tree for the intake that
/// follows each crash.
fn source_trees() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = (t.path().join("first"), t.path().join("second"));
    let small = t.path().join("small");
    std::fs::create_dir(&small).unwrap();
    std::fs::write(small.join("after-the-crash"), b"the store takes new data").unwrap();
    for d in [&first, &second] {
        build_rescue_tree(
            d,
            &RescueTreeOptions {
                big_dir_entries: 40,
            },
        );
    }
    // The second differs: new files beside everything the first already stored.
    for i in 0..20u32 {
        let body: Vec<u8> = (0..(i * 2_311 + 500)).map(|k| (k * 31 + i) as u8).collect();
        std::fs::write(second.join(format!("new-{i}")), body).unwrap();
    }
    (t, first, second, small)
}

#[test]
fn an_intake_survives_a_fault_at_every_operation() {
    let (_t, first, second, small) = source_trees();
    let base = new_store();
    let first_root = intake_commit(&base, &first).unwrap();
    let committed = vec![(1u64, first_root)];
    let pending = {
        let probe = base.fork();
        intake_commit(&probe, &second).unwrap()
    };
    let run = |sim: &SimStorage| intake_commit(sim, &second).map(|_| ());
    let ops = base.operations_of(run);
    assert!(ops.len() >= 20, "{ops:?}");
    eprintln!("{} storage operations, each with 5 faults", ops.len());
    let mut failures = Vec::new();
    for op in &ops {
        for (fault, loss) in [
            (Fault::PowerCut, Some(Loss::All)),
            (Fault::PowerCut, Some(Loss::Torn(op.number * 31))),
            (Fault::TornWrite, Some(Loss::All)),
            (Fault::Eio, None),
            (Fault::Enospc, None),
        ] {
            let (sim, out) = base.fork_with_fault(op.number, fault, run);
            sim.free_space();
            if let Some(loss) = loss {
                sim.power_cut(loss);
            }
            if let Err(e) = check(&sim, &committed, pending, out.is_ok(), &small) {
                failures.push(format!("{fault:?}/{loss:?} at {}: {e}", op.what));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing points:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );

    // With no fault, the intake is durable and restores to the source, byte for byte.
    let sim = base.fork();
    run(&sim).unwrap();
    sim.power_cut(Loss::All);
    check(&sim, &committed, pending, true, &first).unwrap();
    let store = Store::open_in(layout(&sim)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    restore(
        &store.reader(),
        &pending,
        None,
        &target,
        &RestoreOptions::default(),
    )
    .unwrap();
    let diffs = compare_trees(&second, &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
