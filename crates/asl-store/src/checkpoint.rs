//! The log checkpoint: what replaying a prefix of the log decided, saved so that opening a
//! store replays only the records after it (`CURRENT = checkpoint + replay(tail)`).
//!
//! A checkpoint is a *derived cache*, never a source of truth:
//! * it lives in `cache/checkpoint` (deleting `cache/` loses nothing; reindex clears it);
//! * it names the record it covers up to by logseq, byte offset and chain hash, and is used
//!   only when the log holds exactly that record there — a log cut and re-appended by
//!   `repair-log`, or lost to a power cut, makes it stale and it is ignored;
//! * opening over it reads and chain-checks only the log after that record ([`read_log`]);
//!   the records before it were checked when it was written, and `verify` checks them again;
//! * a checkpoint that fails its own checksum or does not decode is ignored too: opening then
//!   replays the whole log, and the next writer writes a new one;
//! * it is only written from a state whose records all decoded: damage found while
//!   replaying the prefix must keep being found and reported, so it is never summarised away.
//!
//! What it holds is the state of the first replay pass (visible segments, retained
//! snapshots, tombstones, retired segments, deleted blocks, the highest ids). The segments
//! themselves are loaded and checked at every open as before, or held as their index runs
//! (`crate::index`), which `verify` checks against them. The exact bytes are in
//! `docs/FORMAT.md` section 10.1.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use sha2::Digest;

use crate::block::BlockId;
use crate::error::{IoContext, Result};
use crate::index::Runs;
use crate::layout::Layout;
use crate::log::Scan;
use crate::records::encode_ref;
use crate::reference::{HashAlgo, Reference};
use crate::snapshot::{Snapshot, SnapshotMeta};
use crate::state::{SegmentInfo, State};

pub const MAGIC: [u8; 8] = *b"ASLCKPT1";
pub const VERSION: u32 = 1;
/// Bytes before the body: magic, version, reserved, logseq, log_offset, record_hash, body_len.
pub const HEADER_SIZE: usize = 8 + 4 + 4 + 8 + 8 + 32 + 8;
/// A writer writes a new checkpoint once this many records follow the last one.
pub const INTERVAL: u64 = 1024;

/// The file a store's checkpoint lives in.
pub fn path(layout: &Layout) -> PathBuf {
    layout.cache().join("checkpoint")
}

/// Where in the log a checkpoint ends: the last record it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    pub logseq: u64,
    /// Byte offset just past that record.
    pub offset: u64,
    /// That record's `record_hash`: the head of the chain.
    pub record_hash: [u8; 32],
}

/// A decoded checkpoint: the position it covers and the first-pass state there.
#[derive(Debug)]
pub struct Checkpoint {
    pub at: LogPosition,
    pub state: State,
}

/// Why checkpoint bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint has {len} bytes, too short for its header and checksum")]
    TooShort { len: usize },
    #[error("checkpoint does not start with magic ASLCKPT1")]
    Magic,
    #[error("checkpoint version {0} is not known (only 1)")]
    Version(u32),
    #[error("checkpoint field {field} is {found}: {allowed}")]
    Field {
        field: &'static str,
        found: u64,
        allowed: &'static str,
    },
    #[error("checkpoint checksum does not match its bytes")]
    Checksum,
    #[error("checkpoint body ends inside {0}")]
    Truncated(&'static str),
    #[error("checkpoint body has {0} bytes after its last section")]
    Trailing(usize),
    #[error("checkpoint holds a bad {what}: {reason}")]
    Value { what: &'static str, reason: String },
}

/// Encodes the first-pass part of `st` as a checkpoint at `at`. Sections are written in a
/// fixed order, each sorted, so the same state always gives the same bytes.
pub fn encode(st: &State, at: &LogPosition) -> Vec<u8> {
    let mut b = Vec::with_capacity(4096 + st.snapshots.len() * 256);
    b.extend_from_slice(&st.max_segment_id.to_le_bytes());
    b.extend_from_slice(&st.max_snapshot_id.to_le_bytes());
    put_len(&mut b, st.segments.len());
    for s in st.segments.values() {
        b.extend_from_slice(&s.segment_id.to_le_bytes());
        b.extend_from_slice(&s.sealed_at.to_le_bytes());
        b.extend_from_slice(&s.record_count.to_le_bytes());
        b.extend_from_slice(&s.checksum);
    }
    put_sorted_ids(&mut b, &st.retired_segments);
    let mut blocks: Vec<&BlockId> = st.deleted_blocks.iter().collect();
    blocks.sort();
    put_len(&mut b, blocks.len());
    for id in blocks {
        b.extend_from_slice(&id.0);
    }
    put_sorted_ids(&mut b, &st.forgotten);
    let mut digests: Vec<&[u8; 32]> = st.tombstones.keys().collect();
    digests.sort();
    let events: usize = st.tombstones.values().map(Vec::len).sum();
    put_len(&mut b, events);
    for d in digests {
        for (seq, dom, hide) in &st.tombstones[d] {
            b.extend_from_slice(d);
            b.extend_from_slice(&seq.to_le_bytes());
            b.extend_from_slice(&dom.to_le_bytes());
            b.push(u8::from(*hide));
        }
    }
    put_len(&mut b, st.snapshots.len());
    for s in st.snapshots.values() {
        b.extend_from_slice(&s.id.to_le_bytes());
        b.extend_from_slice(&s.logseq.to_le_bytes());
        b.extend_from_slice(&encode_ref(s.root.as_ref()));
        // SnapshotMeta holds strings and a JSON value only: it always encodes.
        let meta = serde_json::to_vec(&s.meta).unwrap_or_default();
        put_len(&mut b, meta.len());
        b.extend_from_slice(&meta);
    }

    let mut out = Vec::with_capacity(HEADER_SIZE + b.len() + 32);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&at.logseq.to_le_bytes());
    out.extend_from_slice(&at.offset.to_le_bytes());
    out.extend_from_slice(&at.record_hash);
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(&b);
    let sum: [u8; 32] = sha2::Sha256::digest(&out).into();
    out.extend_from_slice(&sum);
    out
}

fn put_len(b: &mut Vec<u8>, n: usize) {
    b.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_sorted_ids(b: &mut Vec<u8>, ids: &HashSet<u64>) {
    let mut v: Vec<u64> = ids.iter().copied().collect();
    v.sort_unstable();
    put_len(b, v.len());
    for id in v {
        b.extend_from_slice(&id.to_le_bytes());
    }
}

/// A cursor over the body that refuses to read past its end.
struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Body<'a> {
    fn take(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> std::result::Result<&'a [u8], CheckpointError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(CheckpointError::Truncated(what))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> std::result::Result<u8, CheckpointError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> std::result::Result<u32, CheckpointError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self, what: &'static str) -> std::result::Result<u64, CheckpointError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
    fn digest(&mut self, what: &'static str) -> std::result::Result<[u8; 32], CheckpointError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, what)?);
        Ok(a)
    }
    /// A section's entry count, refused when the entries (at least `min_size` bytes each)
    /// could not fit in what is left: a crafted count cannot make the decoder allocate.
    fn count(
        &mut self,
        min_size: usize,
        what: &'static str,
    ) -> std::result::Result<usize, CheckpointError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.bytes.len() - self.pos {
            return Err(CheckpointError::Truncated(what));
        }
        Ok(n)
    }
}

/// Decodes checkpoint bytes into the first-pass state of a store hashing with `algo`.
/// Never panics, whatever the input.
pub fn decode(bytes: &[u8], algo: HashAlgo) -> std::result::Result<Checkpoint, CheckpointError> {
    if bytes.len() < HEADER_SIZE + 32 {
        return Err(CheckpointError::TooShort { len: bytes.len() });
    }
    if bytes[..8] != MAGIC {
        return Err(CheckpointError::Magic);
    }
    let mut h = Body { bytes, pos: 8 };
    let version = h.u32("version")?;
    if version != VERSION {
        return Err(CheckpointError::Version(version));
    }
    let reserved = h.u32("reserved")?;
    if reserved != 0 {
        return Err(CheckpointError::Field {
            field: "reserved",
            found: u64::from(reserved),
            allowed: "must be 0",
        });
    }
    let logseq = h.u64("logseq")?;
    let offset = h.u64("log_offset")?;
    let record_hash = h.digest("record_hash")?;
    let body_len = h.u64("body_len")?;
    let expected = (HEADER_SIZE as u64 + 32).checked_add(body_len);
    if expected != Some(bytes.len() as u64) {
        return Err(CheckpointError::Field {
            field: "body_len",
            found: body_len,
            allowed: "header + body_len + 32 must be the file's length",
        });
    }
    if logseq == 0 {
        return Err(CheckpointError::Field {
            field: "logseq",
            found: 0,
            allowed: "a checkpoint covers at least one record",
        });
    }
    let split = bytes.len() - 32;
    let sum: [u8; 32] = sha2::Sha256::digest(&bytes[..split]).into();
    if sum[..] != bytes[split..] {
        return Err(CheckpointError::Checksum);
    }
    let mut b = Body {
        bytes: &bytes[HEADER_SIZE..split],
        pos: 0,
    };
    let mut st = State {
        algo: Some(algo),
        last_logseq: logseq,
        checkpointed_at: logseq,
        ..State::default()
    };
    st.max_segment_id = b.u64("max_segment_id")?;
    st.max_snapshot_id = b.u64("max_snapshot_id")?;
    let mut segments = BTreeMap::new();
    for _ in 0..b.count(56, "segments")? {
        let info = SegmentInfo {
            segment_id: b.u64("segments")?,
            sealed_at: b.u64("segments")?,
            record_count: b.u64("segments")?,
            checksum: b.digest("segments")?,
        };
        segments.insert(info.segment_id, info);
    }
    st.segments = segments;
    st.retired_segments = ids(&mut b, "retired segments")?;
    for _ in 0..b.count(32, "deleted blocks")? {
        st.deleted_blocks
            .insert(BlockId(b.digest("deleted blocks")?));
    }
    st.forgotten = ids(&mut b, "forgotten snapshots")?;
    let mut tombstones: HashMap<[u8; 32], Vec<(u64, u32, bool)>> = HashMap::new();
    for _ in 0..b.count(45, "tombstones")? {
        let digest = b.digest("tombstones")?;
        let seq = b.u64("tombstones")?;
        let dom = b.u32("tombstones")?;
        let hide = match b.u8("tombstones")? {
            0 => false,
            1 => true,
            n => {
                return Err(CheckpointError::Value {
                    what: "tombstone",
                    reason: format!("hide is {n}, not 0 or 1"),
                });
            }
        };
        tombstones.entry(digest).or_default().push((seq, dom, hide));
    }
    st.tombstones = tombstones;
    for _ in 0..b.count(54, "snapshots")? {
        let id = b.u64("snapshots")?;
        let seq = b.u64("snapshots")?;
        let raw = b.take(34, "snapshots")?;
        let root = if raw.iter().all(|&x| x == 0) {
            None
        } else {
            let r = Reference::from_bytes(raw).map_err(|e| CheckpointError::Value {
                what: "snapshot root",
                reason: e.to_string(),
            })?;
            if r.algo() != algo {
                return Err(CheckpointError::Value {
                    what: "snapshot root",
                    reason: format!("uses {}, the store {}", r.algo().name(), algo.name()),
                });
            }
            Some(r)
        };
        let len = b.u32("snapshot metadata")? as usize;
        let meta: SnapshotMeta = serde_json::from_slice(b.take(len, "snapshot metadata")?)
            .map_err(|e| CheckpointError::Value {
                what: "snapshot metadata",
                reason: e.to_string(),
            })?;
        st.snapshots.insert(
            id,
            Snapshot {
                id,
                logseq: seq,
                root,
                meta,
            },
        );
    }
    if b.pos != b.bytes.len() {
        return Err(CheckpointError::Trailing(b.bytes.len() - b.pos));
    }
    Ok(Checkpoint {
        at: LogPosition {
            logseq,
            offset,
            record_hash,
        },
        state: st,
    })
}

fn ids(b: &mut Body<'_>, what: &'static str) -> std::result::Result<HashSet<u64>, CheckpointError> {
    let mut out = HashSet::new();
    for _ in 0..b.count(8, what)? {
        out.insert(b.u64(what)?);
    }
    Ok(out)
}

/// Reads the log as opening a store does. With a checkpoint that decodes and whose record
/// the log holds where it says: only the records after it, chain-checked from its record on,
/// and the checkpoint's state to replay them over. Otherwise the whole log, and `None`
/// (replay from the first record). The chain before the checkpoint is checked when the
/// checkpoint is written and by `verify`, not at every open: that keeps opening a store of
/// tens of thousands of snapshots from reading and hashing its whole log.
pub fn read_log(layout: &Layout, algo: HashAlgo) -> Result<(Scan, Option<State>)> {
    let storage = layout.storage();
    let ckpt = storage
        .read(&path(layout))
        .ok()
        .and_then(|b| decode(&b, algo).ok());
    if let Some(c) = ckpt {
        let at = c.at;
        let tail = crate::log::read_after(
            storage,
            &layout.log(),
            at.logseq,
            at.offset,
            &at.record_hash,
        )?;
        if let Some(scan) = tail {
            return Ok((scan, Some(c.state)));
        }
    }
    Ok((crate::log::read(storage, &layout.log())?, None))
}

/// Writes `st` as the store's checkpoint at `at`, durably and atomically (temporary file,
/// fsync, rename, fsync of `cache/`). The caller holds the writer lock; `at` is durable in
/// the log already. A state with damaged records is not checkpointed (see the module docs).
pub fn write(layout: &Layout, st: &State, at: &LogPosition) -> Result<bool> {
    if st.record_damage {
        return Ok(false);
    }
    let storage = layout.storage();
    let dir = layout.cache();
    storage.create_dir_all(&dir).at(&dir)?;
    // Temporary files of a checkpoint write that a crash interrupted: the lock holder is
    // the only one who writes them, so any found now are leftovers.
    for e in storage.list(&dir).at(&dir)? {
        if e.is_file && e.name.starts_with(".checkpoint.tmp") {
            let p = dir.join(&e.name);
            storage.remove_file(&p).at(&p)?;
        }
    }
    let file = path(layout);
    crate::storage::write_atomic(storage, &file, &encode(st, at)).at(&file)?;
    Ok(true)
}

/// The first replay pass alone (the retained snapshots and what else the log decides, no
/// index), of the log as [`read_log`] reads it.
pub fn replay_log(layout: &Layout, algo: HashAlgo) -> Result<State> {
    let (scan, base) = read_log(layout, algo)?;
    let base = base.unwrap_or_else(|| State {
        algo: Some(algo),
        ..State::default()
    });
    Ok(State::replay_log_over(base, &scan))
}

/// Opens the state as a store does: the log as [`read_log`] reads it, replayed over the
/// checkpoint or from the first record; large segments through their runs as `runs` says.
pub fn replay(layout: &Layout, algo: HashAlgo, runs: Runs) -> Result<(Scan, State)> {
    let (scan, base) = read_log(layout, algo)?;
    let state = match base {
        Some(base) => State::replay_over(base, layout, &scan, runs)?,
        None => State::replay(layout, algo, &scan, runs)?,
    };
    Ok((scan, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{ArtifactWrite, TypeTag};
    use crate::gc::GcOptions;
    use crate::storage::sim::{Fault, Loss, SimStorage};
    use crate::{InitOptions, SnapshotMeta, Store, Writer};
    use proptest::prelude::*;
    use std::path::Path;
    use std::sync::Arc;

    const ROOT: &str = "/sim/store";

    fn layout(sim: &SimStorage) -> Layout {
        Layout::on(Arc::new(sim.clone()), Path::new(ROOT))
    }

    fn new_store() -> SimStorage {
        let sim = SimStorage::new(Path::new(ROOT));
        Store::init_in(&layout(&sim), &InitOptions::default()).unwrap();
        sim
    }

    fn writer(sim: &SimStorage, interval: u64) -> Writer {
        let mut w = Writer::open_in(layout(sim)).unwrap();
        w.set_background_sealing(false);
        w.set_checkpoint_interval(interval);
        w
    }

    /// How a history's writer holds its index: segments from `run_min` entries on as runs,
    /// and a spill every `spill` pending entries.
    #[derive(Debug, Clone, Copy)]
    struct IndexShape {
        run_min: u64,
        spill: usize,
    }

    fn shaped_writer(sim: &SimStorage, interval: u64, shape: IndexShape) -> Writer {
        let mut w = writer(sim, interval);
        w.set_run_min_records(shape.run_min);
        w.set_spill_records(shape.spill);
        // A block per record, each sealed by the next put: there are sealed ones for a spill
        // to take.
        w.config.block_target_size = 1;
        w
    }

    fn index_shape() -> impl Strategy<Value = IndexShape> {
        (
            prop_oneof![Just(u64::MAX), 1..6u64],
            prop_oneof![Just(usize::MAX), 1..5usize],
        )
            .prop_map(|(run_min, spill)| IndexShape { run_min, spill })
    }

    /// Everything replay decides, in a form that does not depend on the order things were
    /// inserted in (block numbers are resolved to block ids): two states that print the same
    /// give the same answers to every question a reader or writer asks.
    fn fingerprint(st: &State) -> String {
        fn sorted<T: Ord + Clone>(it: impl Iterator<Item = T>) -> Vec<T> {
            let mut v: Vec<T> = it.collect();
            v.sort();
            v
        }
        let index = sorted(st.index.iter().map(|(d, l)| {
            let block = st.blocks[l.block as usize];
            (
                d,
                format!("{:?} {:?}", block, crate::state::Location { block: 0, ..l }),
            )
        }));
        let tombstones = sorted(st.tombstones.iter().map(|(d, v)| (*d, v.clone())));
        format!(
            "last {} maxseg {} maxsnap {}\nsegments {:?}\nsnapshots {:?}\nretired {:?}\ndeleted {:?}\nforgotten {:?}\ntombstones {:?}\nindex {:?}\ndamage {:?} {:?} {}",
            st.last_logseq,
            st.max_segment_id,
            st.max_snapshot_id,
            st.segments,
            st.snapshots,
            sorted(st.retired_segments.iter()),
            sorted(st.deleted_blocks.iter().map(|b| b.0)),
            sorted(st.forgotten.iter()),
            tombstones,
            index,
            st.damage,
            sorted(st.damaged_segments.iter()),
            st.record_damage,
        )
    }

    fn full_replay(sim: &SimStorage) -> State {
        let l = layout(sim);
        let scan = crate::log::read(l.storage(), &l.log()).unwrap();
        State::replay(&l, HashAlgo::Blake3, &scan, Runs::Off).unwrap()
    }

    fn checkpoint_replay(sim: &SimStorage) -> State {
        replay(&layout(sim), HashAlgo::Blake3, Runs::Use).unwrap().1
    }

    fn commit_step(w: &mut Writer, seed: u64, files: u64) -> crate::Result<Reference> {
        let mut last = None;
        for i in 0..files.max(1) {
            let bytes = format!("artifact {seed} {i} {}", "x".repeat((seed % 300) as usize));
            last = Some(
                w.put_bytes(bytes.as_bytes(), TypeTag::BYTES)
                    .map_err(|e| crate::StoreError::internal("put", e.to_string()))?,
            );
        }
        let root = last.map(|p| p.reference);
        let mut meta = SnapshotMeta::now("test");
        meta.label = Some(format!("s{seed}"));
        meta.summary = serde_json::json!({ "files": files });
        w.commit(root, meta)?;
        Ok(root.unwrap_or_else(|| HashAlgo::Blake3.digest(b"")))
    }

    #[test]
    fn opening_over_a_checkpoint_gives_the_state_of_a_full_replay() {
        let sim = new_store();
        let mut w = writer(&sim, 8);
        let mut refs = Vec::new();
        for seed in 0..40 {
            refs.push(commit_step(&mut w, seed, 1 + seed % 3).unwrap());
        }
        w.forget(3).unwrap();
        w.tombstone(refs[5]).unwrap();
        drop(w);
        let l = layout(&sim);
        let bytes = l.storage().read(&path(&l)).unwrap();
        let ckpt = decode(&bytes, HashAlgo::Blake3).unwrap();
        assert!(ckpt.at.logseq >= 72, "checkpoint covers {}", ckpt.at.logseq);
        let via = checkpoint_replay(&sim);
        assert_eq!(
            via.checkpointed_at, ckpt.at.logseq,
            "the checkpoint was used"
        );
        assert_eq!(fingerprint(&via), fingerprint(&full_replay(&sim)));
        let store = Store::open_in(l).unwrap();
        assert_eq!(store.snapshots().len(), 39);
    }

    /// Opening over a checkpoint reads the log from the checkpoint's record on only, and
    /// gives exactly a full replay's state. A flipped byte in a record before it is not seen
    /// by opening (its state was checked when the checkpoint was written) but `verify`, which
    /// reads the whole chain, reports it.
    #[test]
    fn opening_reads_the_log_after_the_checkpoint_and_verify_reads_all_of_it() {
        let sim = new_store();
        let mut w = writer(&sim, 8);
        for seed in 0..20 {
            commit_step(&mut w, seed, 1).unwrap();
        }
        drop(w);
        let l = layout(&sim);
        let (tail, base) = read_log(&l, HashAlgo::Blake3).unwrap();
        let ckpt = base.expect("the checkpoint is used").last_logseq;
        assert_eq!(tail.first_logseq, ckpt + 1);
        let full = crate::log::read(l.storage(), &l.log()).unwrap();
        let suffix: Vec<_> = full.records[ckpt as usize..].to_vec();
        assert_eq!(
            format!("{:?}", tail.records),
            format!("{:?}", suffix),
            "the tail scan gives the full scan's records after the checkpoint"
        );
        assert_eq!(
            (tail.valid_len, tail.last_hash),
            (full.valid_len, full.last_hash)
        );

        let log_path = l.log();
        let mut bytes = l.storage().read(&log_path).unwrap();
        let second = full.records[1].offset as usize;
        bytes[second + 20] ^= 1;
        crate::storage::write_atomic(l.storage(), &log_path, &bytes).unwrap();
        let store = Store::open_in(l.clone()).unwrap();
        assert_eq!(store.snapshots().len(), 20);
        assert!(
            store.log_damage().is_none(),
            "opening does not read record 2"
        );
        let no_children = |_: TypeTag, _: &[u8]| Ok(Vec::new());
        let report = crate::verify::verify(&store, &Default::default(), &no_children);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.object.starts_with("log record 2 ")),
            "{:#?}",
            report.problems
        );
    }

    #[test]
    fn a_damaged_checkpoint_is_ignored_and_the_next_writer_rebuilds_it() {
        let sim = new_store();
        let mut w = writer(&sim, 4);
        for seed in 0..12 {
            commit_step(&mut w, seed, 2).unwrap();
        }
        drop(w);
        let l = layout(&sim);
        let good = l.storage().read(&path(&l)).unwrap();
        let want = fingerprint(&full_replay(&sim));
        for at in [
            0,
            9,
            20,
            60,
            HEADER_SIZE + 3,
            good.len() / 2,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            crate::storage::write_atomic(l.storage(), &path(&l), &bad).unwrap();
            assert!(decode(&bad, HashAlgo::Blake3).is_err(), "byte {at}");
            let via = checkpoint_replay(&sim);
            assert_eq!(
                via.checkpointed_at, 0,
                "byte {at}: the damaged checkpoint was used"
            );
            assert_eq!(fingerprint(&via), want, "byte {at}");
        }
        // The writer knows it has no checkpoint, so its next commit writes one.
        let mut w = writer(&sim, 4);
        assert_eq!(w.state.checkpointed_at, 0);
        commit_step(&mut w, 99, 1).unwrap();
        drop(w);
        let rebuilt = decode(&l.storage().read(&path(&l)).unwrap(), HashAlgo::Blake3).unwrap();
        let via = checkpoint_replay(&sim);
        assert_eq!(via.checkpointed_at, rebuilt.at.logseq);
        assert_eq!(via.last_logseq, rebuilt.at.logseq);
        assert_eq!(fingerprint(&via), fingerprint(&full_replay(&sim)));
    }

    #[test]
    fn a_checkpoint_beyond_the_log_or_of_another_chain_is_stale_and_ignored() {
        let sim = new_store();
        let mut w = writer(&sim, 4);
        for seed in 0..10 {
            commit_step(&mut w, seed, 1).unwrap();
        }
        drop(w);
        // Another store's history of the same length: same logseqs, other hashes.
        let other = new_store();
        let mut w = writer(&other, 4);
        for seed in 100..110 {
            commit_step(&mut w, seed, 1).unwrap();
        }
        drop(w);
        let l = layout(&sim);
        let foreign = layout(&other)
            .storage()
            .read(&path(&layout(&other)))
            .unwrap();
        crate::storage::write_atomic(l.storage(), &path(&l), &foreign).unwrap();
        let via = checkpoint_replay(&sim);
        assert_eq!(via.checkpointed_at, 0);
        assert_eq!(fingerprint(&via), fingerprint(&full_replay(&sim)));
        // The log cut back before the checkpoint's record (as repair-log cuts it).
        drop(writer(&sim, 4));
        let ckpt = decode(&l.storage().read(&path(&l)).unwrap(), HashAlgo::Blake3).unwrap();
        let scan = crate::log::read(l.storage(), &l.log()).unwrap();
        let cut = scan.records[ckpt.at.logseq as usize - 2].offset;
        let mut f = l.storage().open_append(&l.log()).unwrap();
        f.set_len(cut).unwrap();
        f.sync().unwrap();
        drop(f);
        let via = checkpoint_replay(&sim);
        assert_eq!(via.checkpointed_at, 0);
        assert_eq!(fingerprint(&via), fingerprint(&full_replay(&sim)));
    }

    #[test]
    fn a_state_with_undecodable_records_is_not_checkpointed() {
        let mut st = State {
            record_damage: true,
            ..State::default()
        };
        st.last_logseq = 5;
        let sim = new_store();
        let at = LogPosition {
            logseq: 5,
            offset: 500,
            record_hash: [1; 32],
        };
        assert!(!write(&layout(&sim), &st, &at).unwrap());
        assert!(!crate::storage::Storage::exists(&sim, &path(&layout(&sim))));
    }

    /// The state of `docs/vectors/checkpoint.txt`: one of every section.
    fn vector_state() -> (State, LogPosition) {
        let r = |b: u8| Reference::new(HashAlgo::Blake3, [b; 32]);
        let mut st = State {
            algo: Some(HashAlgo::Blake3),
            max_segment_id: 3,
            max_snapshot_id: 2,
            ..State::default()
        };
        st.segments.insert(
            3,
            SegmentInfo {
                segment_id: 3,
                sealed_at: 6,
                record_count: 2,
                checksum: [0xcc; 32],
            },
        );
        st.retired_segments.insert(1);
        st.retired_segments.insert(2);
        st.deleted_blocks.insert(BlockId([0xdd; 32]));
        st.forgotten.insert(1);
        st.add_tombstone(7, 1, &r(0xee), true);
        st.snapshots.insert(
            2,
            Snapshot {
                id: 2,
                logseq: 4,
                root: Some(r(0xaa)),
                meta: SnapshotMeta {
                    kind: "intake".into(),
                    label: Some("v".into()),
                    host: "h".into(),
                    time: "2026-12-07T14:00:00Z".into(),
                    ..SnapshotMeta::default()
                },
            },
        );
        let at = LogPosition {
            logseq: 7,
            offset: 820,
            record_hash: [0x77; 32],
        };
        (st, at)
    }

    /// `docs/vectors/checkpoint.hex` is what [`vector_state`] encodes to; rewritten with
    /// `ASL_WRITE_VECTORS=1` after a deliberate format change.
    #[test]
    fn the_documented_vector_encodes_and_decodes_exactly() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/checkpoint.hex");
        let (st, at) = vector_state();
        let bytes = encode(&st, &at);
        if std::env::var_os("ASL_WRITE_VECTORS").is_some() {
            let lines: Vec<String> = bytes.chunks(32).map(hex::encode).collect();
            std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let want = hex::decode(text.split_whitespace().collect::<String>()).unwrap();
        assert_eq!(hex::encode(&bytes), hex::encode(&want));
        let back = decode(&want, HashAlgo::Blake3).unwrap();
        assert_eq!(back.at, at);
        let expected = State {
            last_logseq: 7,
            ..st
        };
        assert_eq!(fingerprint(&back.state), fingerprint(&expected));
    }

    /// One step of a random history.
    #[derive(Debug, Clone)]
    enum Step {
        Commit {
            seed: u64,
            files: u64,
        },
        Forget(usize),
        Tombstone(usize),
        Lift(usize),
        Gc,
        Checkpoint,
        /// Flips a byte of the checkpoint file (the next writer must rebuild it).
        DamageCheckpoint(usize),
        /// The power goes `after` storage operations into a commit (losing or tearing what
        /// was not synced), and a new writer opens the store.
        Crash {
            after: u64,
            torn: bool,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (any::<u64>(), 1..4u64).prop_map(|(seed, files)| Step::Commit { seed, files }),
            1 => any::<usize>().prop_map(Step::Forget),
            1 => any::<usize>().prop_map(Step::Tombstone),
            1 => any::<usize>().prop_map(Step::Lift),
            1 => Just(Step::Gc),
            1 => Just(Step::Checkpoint),
            1 => any::<usize>().prop_map(Step::DamageCheckpoint),
            2 => (0..40u64, any::<bool>()).prop_map(|(after, torn)| Step::Crash { after, torn }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// After every step of a random history of commits, forgets, tombstones, GC,
        /// checkpoints, damaged checkpoints and power cuts in the middle of a commit: the
        /// writer's own state, the state opened over the checkpoint with the index runs, and
        /// a full replay of the log with every entry in memory are the same. The writer
        /// holds segments as runs from a random size on, and spills its pending entries
        /// every few puts, so that crashes fall between spills, commits and run writes too.
        #[test]
        fn checkpoint_and_tail_equal_a_full_replay_over_random_histories(
            steps in proptest::collection::vec(step(), 1..24),
            interval in 1..6u64,
            shape in index_shape(),
        ) {
            let sim = new_store();
            let mut w = shaped_writer(&sim, interval, shape);
            let mut refs: Vec<Reference> = Vec::new();
            let no_children = |_: TypeTag, _: &[u8]| Ok(Vec::new());
            for (n, s) in steps.iter().enumerate() {
                match s {
                    Step::Commit { seed, files } => refs.push(commit_step(&mut w, *seed, *files).unwrap()),
                    Step::Forget(i) => {
                        let ids: Vec<u64> = w.state.snapshots.keys().copied().collect();
                        if !ids.is_empty() {
                            w.forget(ids[i % ids.len()]).unwrap();
                        }
                    }
                    Step::Tombstone(i) if !refs.is_empty() => w.tombstone(refs[i % refs.len()]).unwrap(),
                    Step::Lift(i) if !refs.is_empty() => w.lift_tombstone(refs[i % refs.len()]).unwrap(),
                    Step::Tombstone(_) | Step::Lift(_) => {}
                    Step::Gc => {
                        w.gc(&GcOptions::default(), &no_children).unwrap();
                    }
                    Step::Checkpoint => {
                        w.checkpoint().unwrap();
                    }
                    Step::DamageCheckpoint(at) => {
                        let l = layout(&sim);
                        if let Ok(mut b) = l.storage().read(&path(&l)) {
                            let i = at % b.len();
                            b[i] ^= 1;
                            crate::storage::write_atomic(l.storage(), &path(&l), &b).unwrap();
                        }
                    }
                    Step::Crash { after, torn } => {
                        sim.arm(sim.ops() + after, Fault::PowerCut);
                        let _ = commit_step(&mut w, 7_000 + n as u64, 2);
                        drop(w);
                        sim.power_cut(if *torn { Loss::Torn(n as u64 * 31 + 1) } else { Loss::All });
                        w = shaped_writer(&sim, interval, shape);
                    }
                }
                let full = fingerprint(&full_replay(&sim));
                prop_assert_eq!(&fingerprint(&w.state), &full, "writer state after step {} {:?}", n, s);
                prop_assert_eq!(&fingerprint(&checkpoint_replay(&sim)), &full, "checkpoint state after step {} {:?}", n, s);
                let (listed, _) = Store::list_snapshots_in(&layout(&sim)).unwrap();
                let replayed: Vec<Snapshot> = full_replay(&sim).snapshots.into_values().collect();
                prop_assert_eq!(listed, replayed, "snapshot listing after step {} {:?}", n, s);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes, HashAlgo::Blake3);
        }

        /// Any single changed byte of a checkpoint is caught (and the checkpoint ignored).
        #[test]
        fn a_checkpoint_with_any_byte_changed_is_refused(at in any::<usize>(), flip in 1..=255u8) {
            let (st, pos) = vector_state();
            let mut b = encode(&st, &pos);
            let i = at % b.len();
            b[i] ^= flip;
            prop_assert!(decode(&b, HashAlgo::Blake3).is_err());
        }
    }
}
