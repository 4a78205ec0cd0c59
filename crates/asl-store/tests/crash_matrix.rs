//! The crash matrix: commit, segment merge, GC and reindex run on [`SimStorage`], which keeps
//! the POSIX durability rules to the letter. For every storage operation each of them
//! performs, a fresh copy of the store has the power cut at exactly that operation (losing,
//! or tearing, everything not yet fsynced), or the operation fails with EIO or ENOSPC. After
//! each, the store is opened again and must hold every committed snapshot, reading back and
//! verifying clean, and no snapshot that was never committed.
//!
//! The last tests switch off one kind of fsync and show that the matrix then fails: it
//! would catch a missing fsync in the store.
//!
//! A failure names the operation (`17 rename blocks/ab/ab…blk`); arming that number on the
//! same setup reproduces it exactly, since nothing here depends on time or threads.

#[path = "../src/xorshift.rs"]
mod xorshift;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use asl_store::gc::GcOptions;
use asl_store::storage::sim::{Fault, Loss, SimStorage};
use asl_store::verify::{VerifyOptions, verify};
use asl_store::{
    ArtifactRead, ArtifactWrite, InitOptions, Layout, Reference, SnapshotMeta, Store, StoreError,
    TypeTag, Writer,
};
use xorshift::pseudo_random;

const ROOT: &str = "/sim/store";

fn layout(sim: &SimStorage) -> Layout {
    Layout::on(Arc::new(sim.clone()), Path::new(ROOT))
}

/// Test "trees": a TREE artifact's bytes are its children's references, one per line.
fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    if tag != TypeTag::TREE {
        return Ok(vec![]);
    }
    std::str::from_utf8(bytes)
        .map_err(|e| e.to_string())?
        .lines()
        .map(|l| l.parse::<Reference>().map_err(|e| e.to_string()))
        .collect()
}

/// What a snapshot must read back as: its files' bytes, in tree order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    files: Vec<Vec<u8>>,
}

/// Files of snapshot number `seed`: mostly small ones, two larger ones cut into several
/// chunks, and one file shared with every other snapshot (deduplicated).
fn files_for(seed: u64, count: usize) -> Expected {
    let mut files = vec![pseudo_random(9_000, 424_242)];
    for i in 0..count as u64 {
        let len = if i % 9 == 4 {
            150_000
        } else {
            1_000 + (i * 3_917 + seed * 71) as usize % 30_000
        };
        files.push(pseudo_random(len, seed * 1_000 + i + 1));
    }
    Expected { files }
}

/// Puts the files and their tree and commits them as one snapshot.
fn commit(w: &mut Writer, e: &Expected) -> Result<u64, StoreError> {
    let mut listing = String::new();
    for f in &e.files {
        let r = w.put_bytes(f, TypeTag::BYTES).map_err(as_store)?.reference;
        listing.push_str(&format!("{r}\n"));
    }
    let tree = w
        .put_bytes(listing.as_bytes(), TypeTag::TREE)
        .map_err(as_store)?;
    Ok(w.commit(Some(tree.reference), SnapshotMeta::now("test"))?
        .snapshot
        .id)
}

fn as_store(e: asl_store::AccessError) -> StoreError {
    StoreError::Internal {
        what: "put".into(),
        reason: e.to_string(),
    }
}

fn open_writer(sim: &SimStorage) -> Result<Writer, StoreError> {
    let mut w = Writer::open_in(layout(sim))?;
    w.set_background_sealing(false);
    Ok(w)
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

/// The state every crash must preserve: committed snapshots by id, and the one the
/// operation under test is committing (visible only if its log record became durable).
#[derive(Clone, Default)]
struct Model {
    committed: BTreeMap<u64, Expected>,
    pending: Option<Expected>,
}

impl Model {
    /// Checks the store on `sim` as a new process would find it, then that a writer opens
    /// it and commits into it. `must_hold_pending`: the operation returned success, so what
    /// it committed must be there.
    fn check(&self, sim: &SimStorage, must_hold_pending: bool) -> Result<(), String> {
        let store = Store::open_in(layout(sim)).map_err(|e| format!("open: {e}"))?;
        self.check_open(&store, must_hold_pending)?;
        drop(store);
        // A writer must take the store as it is (cutting a torn tail, clearing leftovers).
        let mut w = open_writer(sim).map_err(|e| format!("writer open: {e}"))?;
        let next = files_for(900, 3);
        commit(&mut w, &next).map_err(|e| format!("commit after the crash: {e}"))?;
        drop(w);
        let store = Store::open_in(layout(sim)).map_err(|e| format!("reopen: {e}"))?;
        let v = verify(&store, &VerifyOptions { read_data: true }, &children);
        if !v.ok() {
            return Err(format!("verify after a new commit: {:#?}", v.problems));
        }
        Ok(())
    }

    fn check_open(&self, store: &Store, must_hold_pending: bool) -> Result<(), String> {
        let ids: Vec<u64> = store.snapshots().iter().map(|s| s.id).collect();
        let mut pending_seen = false;
        for snap in store.snapshots() {
            let expected = match self.committed.get(&snap.id) {
                Some(e) => e,
                None => match &self.pending {
                    Some(p) if !pending_seen => {
                        pending_seen = true;
                        p
                    }
                    _ => return Err(format!("snapshot {} was never committed: {ids:?}", snap.id)),
                },
            };
            let reader = store.reader_at(snap);
            let root = snap.root.ok_or("snapshot without a root")?;
            let listing = reader
                .read_all(&root)
                .map_err(|e| format!("snapshot {}: tree: {e}", snap.id))?;
            let refs = children(TypeTag::TREE, &listing)?;
            if refs.len() != expected.files.len() {
                return Err(format!("snapshot {}: {} files", snap.id, refs.len()));
            }
            for (i, (r, want)) in refs.iter().zip(&expected.files).enumerate() {
                let got = reader
                    .read_all(r)
                    .map_err(|e| format!("snapshot {}: file {i}: {e}", snap.id))?;
                if &got != want {
                    return Err(format!("snapshot {}: file {i} differs", snap.id));
                }
            }
        }
        for id in self.committed.keys() {
            if !ids.contains(id) {
                return Err(format!("committed snapshot {id} is lost: {ids:?}"));
            }
        }
        if must_hold_pending && self.pending.is_some() && !pending_seen {
            return Err(format!(
                "the operation succeeded but its snapshot is missing: {ids:?}"
            ));
        }
        let v = verify(store, &VerifyOptions { read_data: true }, &children);
        if !v.ok() {
            return Err(format!("verify: {:#?}", v.problems));
        }
        Ok(())
    }
}

type Run = dyn Fn(&SimStorage) -> Result<(), StoreError>;

/// Walks every operation of `run` on `base` with every fault; returns the failures, each
/// naming the fault and the operation.
fn matrix(base: &SimStorage, model: &Model, run: &Run) -> Vec<String> {
    let ops = base.operations_of(run);
    assert!(ops.len() >= 10, "too few operations to test: {ops:?}");
    let mut failures = Vec::new();
    let mut fail = |fault: &str, what: &str, e: String| {
        failures.push(format!("{fault} at operation {what}: {e}"));
    };
    for op in &ops {
        // The power goes at this operation: everything unsynced is lost, or torn.
        for loss in [Loss::All, Loss::Torn(op.number * 7919)] {
            let (sim, _) = base.fork_with_fault(op.number, Fault::PowerCut, |s| run(s));
            sim.power_cut(loss);
            if let Err(e) = model.check(&sim, false) {
                fail(&format!("power cut ({loss:?})"), &op.what, e);
            }
        }
        let (sim, _) = base.fork_with_fault(op.number, Fault::TornWrite, |s| run(s));
        sim.power_cut(Loss::All);
        if let Err(e) = model.check(&sim, false) {
            fail("torn write", &op.what, e);
        }
        // EIO at this operation: the run may fail, but what it reports as done is done,
        // and the store stays consistent, now and after a power cut.
        let (sim, out) = base.fork_with_fault(op.number, Fault::Eio, |s| run(s));
        if let Err(e) = model.check(&sim.fork(), out.is_ok()) {
            fail("EIO", &op.what, e);
        }
        sim.power_cut(Loss::All);
        if let Err(e) = model.check(&sim, out.is_ok()) {
            fail("EIO then power cut", &op.what, e);
        }
        // The disk fills at this operation and stays full for the rest of the run.
        let (sim, out) = base.fork_with_fault(op.number, Fault::Enospc, |s| run(s));
        sim.free_space();
        if let Err(e) = model.check(&sim, out.is_ok()) {
            fail("ENOSPC", &op.what, e);
        }
    }
    // And with no fault: success means durable.
    let sim = base.fork();
    run(&sim).expect("the run succeeds with no fault");
    sim.power_cut(Loss::All);
    if let Err(e) = model.check(&sim, true) {
        fail("power cut", "after success", e);
    }
    failures
}

fn assert_clean(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} failing points, the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A store with two committed snapshots.
fn store_with_history() -> (SimStorage, Model) {
    let sim = new_store();
    let mut model = Model::default();
    let mut w = open_writer(&sim).unwrap();
    for seed in [1, 2] {
        let e = files_for(seed, 12);
        let id = commit(&mut w, &e).unwrap();
        model.committed.insert(id, e);
    }
    (sim, model)
}

#[test]
fn a_commit_survives_a_fault_at_every_operation() {
    let (base, mut model) = store_with_history();
    let next = files_for(3, 14);
    model.pending = Some(next.clone());
    let run = move |sim: &SimStorage| -> Result<(), StoreError> {
        let mut w = open_writer(sim)?;
        commit(&mut w, &next).map(|_| ())
    };
    assert_clean("commit", &matrix(&base, &model, &run));
}

#[test]
fn a_flush_survives_a_fault_at_every_operation_and_is_durable_without_a_snapshot() {
    let (base, model) = store_with_history();
    let next = files_for(5, 10);
    let refs: Vec<Reference> = next
        .files
        .iter()
        .map(|f| asl_store::HashAlgo::Blake3.digest(f))
        .collect();
    let run = move |sim: &SimStorage| -> Result<(), StoreError> {
        let mut w = open_writer(sim)?;
        for f in &next.files {
            w.put_bytes(f, TypeTag::BYTES).map_err(as_store)?;
        }
        w.flush().map(|_| ())
    };
    assert_clean("flush", &matrix(&base, &model, &run));
    // Once a flush returned, what it stored survives a power cut, visible to the next writer
    // and to no snapshot.
    let sim = base.fork();
    run(&sim).unwrap();
    sim.power_cut(Loss::All);
    let w = open_writer(&sim).unwrap();
    assert!(refs.iter().all(|r| w.contains(r)));
    assert_eq!(
        w.snapshot_ids(),
        model.committed.keys().copied().collect::<Vec<_>>()
    );
}

#[test]
fn a_merging_commit_survives_a_fault_at_every_operation() {
    let sim = new_store();
    let mut model = Model::default();
    let mut w = open_writer(&sim).unwrap();
    // Small commits fill the lowest tier of segments; the next one merges them.
    for seed in 10..18 {
        let e = files_for(seed, 1);
        let id = commit(&mut w, &e).unwrap();
        model.committed.insert(id, e);
    }
    let before = w.segments().count();
    drop(w);
    let next = files_for(18, 1);
    model.pending = Some(next.clone());
    let run = move |sim: &SimStorage| -> Result<(), StoreError> {
        let mut w = open_writer(sim)?;
        commit(&mut w, &next).map(|_| ())
    };
    let probe = sim.fork();
    run(&probe).unwrap();
    let after = Writer::open_in(layout(&probe)).unwrap().segments().count();
    assert!(
        after < before,
        "the commit under test must merge segments ({before} before, {after} after)"
    );
    assert_clean("merging commit", &matrix(&sim, &model, &run));
}

#[test]
fn gc_survives_a_fault_at_every_operation() {
    let (base, mut model) = store_with_history();
    // A third snapshot, then the first is forgotten: GC deletes its blocks and repacks the
    // blocks it shared with the others.
    let mut w = open_writer(&base).unwrap();
    let e = files_for(4, 10);
    let id = commit(&mut w, &e).unwrap();
    model.committed.insert(id, e);
    let first = *model.committed.keys().next().unwrap();
    w.forget(first).unwrap();
    model.committed.remove(&first);
    drop(w);
    let run = |sim: &SimStorage| -> Result<(), StoreError> {
        let mut w = open_writer(sim)?;
        let rep = w.gc(
            &GcOptions {
                dry_run: false,
                repack_below: 0.9,
            },
            &children,
        )?;
        assert!(rep.blocks_deleted + rep.blocks_repacked > 0, "{rep:?}");
        Ok(())
    };
    assert_clean("gc", &matrix(&base, &model, &run));
}

/// The answers a store gives that a checkpoint could change: opened over the checkpoint and
/// by replaying the whole log, they must be the same.
fn same_as_full_replay(sim: &SimStorage) -> Result<(), String> {
    let via = Store::open_in(layout(sim)).map_err(|e| format!("open: {e}"))?;
    let full =
        Store::open_replaying_whole_log_in(layout(sim)).map_err(|e| format!("full open: {e}"))?;
    let segs = |s: &Store| s.segments().copied().collect::<Vec<_>>();
    if via.snapshots() != full.snapshots()
        || segs(&via) != segs(&full)
        || via.counts() != full.counts()
        || via.blocks() != full.blocks()
    {
        return Err(format!(
            "state over the checkpoint (at {}) differs from a full replay",
            via.checkpointed_at()
        ));
    }
    Ok(())
}

#[test]
fn a_commit_that_writes_a_checkpoint_survives_a_fault_at_every_operation() {
    let (base, mut model) = store_with_history();
    let e = files_for(5, 6);
    model.pending = Some(e.clone());
    let run = move |sim: &SimStorage| -> Result<(), StoreError> {
        let mut w = open_writer(sim)?;
        // Every commit is due for a checkpoint: this one writes it after its log append.
        w.set_checkpoint_interval(1);
        commit(&mut w, &e)?;
        Ok(())
    };
    // The run does write one, and it is what the next open starts from.
    let done = base.fork();
    run(&done).unwrap();
    let opened = Store::open_in(layout(&done)).unwrap();
    assert_eq!(opened.checkpointed_at(), opened.counts().log_records);
    assert_clean("checkpointing commit", &matrix(&base, &model, &run));
    // At every crash point, what opens over whatever checkpoint survived equals a full
    // replay of the log that survived.
    let mut failures = Vec::new();
    for op in base.operations_of(&run) {
        for loss in [Loss::All, Loss::Torn(op.number * 104_729)] {
            let (sim, _) = base.fork_with_fault(op.number, Fault::PowerCut, |s| run(s));
            sim.power_cut(loss);
            if let Err(e) = same_as_full_replay(&sim) {
                failures.push(format!("power cut ({loss:?}) at {}: {e}", op.what));
            }
        }
    }
    assert_clean("checkpoint equivalence", &failures);
}

#[test]
fn reindex_survives_a_fault_at_every_operation() {
    let (base, model) = store_with_history();
    let run =
        |sim: &SimStorage| -> Result<(), StoreError> { open_writer(sim)?.reindex().map(|_| ()) };
    assert_clean("reindex", &matrix(&base, &model, &run));
}

/// The matrix has teeth: with the fsync of one kind of file switched off, as if the call
/// were deleted from the store's code, some crash point loses a committed snapshot.
#[test]
fn the_matrix_fails_when_one_fsync_is_switched_off() {
    for (what, pattern) in [
        ("blocks", "blocks/open/"),
        ("segments", "segments/open/"),
        ("the log", "log/asl.log"),
    ] {
        let (base, mut model) = store_with_history();
        base.skip_sync(pattern);
        let next = files_for(3, 14);
        model.pending = Some(next.clone());
        let run = move |sim: &SimStorage| -> Result<(), StoreError> {
            let mut w = open_writer(sim)?;
            commit(&mut w, &next).map(|_| ())
        };
        let failures = matrix(&base, &model, &run);
        assert!(
            !failures.is_empty(),
            "the matrix passed with the fsync of {what} switched off"
        );
    }
}
