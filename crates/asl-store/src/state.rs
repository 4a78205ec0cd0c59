//! CURRENT: the store state rebuilt by replaying the log over the sealed segments.
//!
//! Replay runs in two passes. The first walks the log and decides which segments are
//! visible (sealed and not retired by a GC commit), which snapshots are retained and which
//! tombstones apply. The second makes the visible segments' entries the [`Index`]: small
//! segments are loaded into memory, large ones are opened as their runs on disk
//! (`crate::index`), which are derived caches written from the segments.
//! The first pass may start from a log checkpoint ([`crate::checkpoint`]) instead of the
//! first record: [`State::replay_over`] applies only the records after it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::block::{BlockId, Codec, RecordKind};
use crate::error::Result;
use crate::index::{self, Index, Run, Runs};
use crate::layout::Layout;
use crate::log::{LogRecord, Scan, Tail};
use crate::records::Event;
use crate::reference::{HashAlgo, Reference};
use crate::segment::{self, Segment, Visibility};
use crate::snapshot::{Snapshot, SnapshotMeta};
use crate::storage::Storage;

/// Where an artifact's record is, as the index holds it (about 64 bytes per entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub kind: RecordKind,
    pub codec: Codec,
    pub visibility: Visibility,
    pub domain_id: u32,
    pub type_tag: u32,
    /// Index into the block list ([`crate::Store::blocks`], [`crate::Reader::block_id`]).
    pub block: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub offset: u64,
    pub artifact_len: u64,
    pub visible_since: u64,
}

/// A segment made visible by the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub segment_id: u64,
    /// logseq of the record that made it visible (SEGMENT_SEAL or GC_COMMIT).
    pub sealed_at: u64,
    pub record_count: u64,
    pub checksum: [u8; 32],
}

/// The replayed state of a store.
#[derive(Debug, Default)]
pub struct State {
    pub algo: Option<HashAlgo>,
    /// The last logseq replayed (0 for an empty log).
    pub last_logseq: u64,
    pub segments: BTreeMap<u64, SegmentInfo>,
    /// Retained snapshots by id.
    pub snapshots: BTreeMap<u64, Snapshot>,
    /// Forgotten snapshot ids (their data may be collected).
    pub forgotten: HashSet<u64>,
    /// Tombstone events per digest: (logseq, domain, is_tombstone).
    pub tombstones: HashMap<[u8; 32], Vec<(u64, u32, bool)>>,
    pub index: Index,
    pub blocks: Vec<BlockId>,
    pub block_numbers: HashMap<BlockId, u32>,
    /// Segments retired and blocks deleted by GC commits; leftovers of a crash between the
    /// commit and the deletions are removed by the next writer.
    pub retired_segments: HashSet<u64>,
    pub deleted_blocks: HashSet<BlockId>,
    /// The highest segment id and snapshot id ever logged.
    pub max_segment_id: u64,
    pub max_snapshot_id: u64,
    /// Damage found while replaying (a missing or corrupt segment, an undecodable record).
    /// Reads still work for everything else; `verify` reports these.
    pub damage: Vec<Damage>,
    /// Visible segments that did not load (their damage is in `damage`).
    pub damaged_segments: HashSet<u64>,
    /// How the log scan ended.
    pub log_tail: Option<Tail>,
    /// A complete log record that fails its check, and what lies beyond it.
    pub log_damage: Option<LogDamage>,
    /// Whether a replayed record did not decode (a record or snapshot metadata in `damage`).
    /// Such a state is never checkpointed, so that the damage keeps being found.
    pub record_damage: bool,
    /// The logseq the store's checkpoint covers, as far as this state knows (0: none).
    pub checkpointed_at: u64,
}

/// A complete log record failed its check: replay stopped before it, so it and everything
/// after it are hidden until `asl-admin repair-log` runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogDamage {
    /// Byte offset of the damaged record in the log.
    pub at: u64,
    /// The logseq the damaged record claims (untrusted).
    pub logseq: u64,
    pub reason: String,
    /// Snapshot ids named by the records from the damaged one on, as far as they can be
    /// parsed without trusting them (snapshots they forget again are left out).
    pub hidden_snapshots: Vec<u64>,
    /// Bytes at the end of the log whose records could not even be delimited: snapshots in
    /// them are not in `hidden_snapshots`.
    pub unparsed_bytes: u64,
}

impl LogDamage {
    pub(crate) fn from_scan(scan: &Scan) -> Option<LogDamage> {
        let Tail::Damaged { at, logseq, reason } = &scan.tail else {
            return None;
        };
        let mut hidden = Vec::new();
        for rec in &scan.unverified {
            match Event::decode(rec.record_type, &rec.payload) {
                Ok(Event::Snapshot { snapshot_id, .. }) => hidden.push(snapshot_id),
                Ok(Event::SnapshotForget { snapshot_id }) => hidden.retain(|s| *s != snapshot_id),
                _ => {}
            }
        }
        Some(LogDamage {
            at: *at,
            logseq: *logseq,
            reason: reason.clone(),
            hidden_snapshots: hidden,
            unparsed_bytes: scan.unfollowed,
        })
    }
}

/// One damaged object found during replay.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub object: String,
    pub reason: String,
}

impl State {
    /// Replays `scan` (the decoded log) against the segment files of `layout`, from the
    /// first record on.
    pub fn replay(layout: &Layout, algo: HashAlgo, scan: &Scan, runs: Runs) -> Result<State> {
        let base = State {
            algo: Some(algo),
            ..State::default()
        };
        State::replay_over(base, layout, scan, runs)
    }

    /// Replays the records of `scan` after `base.last_logseq` over `base`, the first-pass
    /// state of the records before them (a checkpoint's, or an empty state), then makes the
    /// visible segments the index, through their runs as `runs` says.
    pub fn replay_over(st: State, layout: &Layout, scan: &Scan, runs: Runs) -> Result<State> {
        let mut st = State::replay_log_over(st, scan);
        let storage = layout.storage();
        // Runs are read a page at a time: where a read is a network round trip, every entry
        // stays in memory.
        let runs = if storage.cheap_random_reads() {
            runs
        } else {
            Runs::Off
        };
        let run_dir = layout.index_runs();
        // Pass 2: the visible segments.
        let infos: Vec<SegmentInfo> = st.segments.values().copied().collect();
        for info in infos {
            let run_path = index::run::path(&run_dir, info.segment_id);
            if runs != Runs::Off
                && let Ok(run) = Run::open(storage, &run_path, &info)
            {
                st.add_run(run, info.sealed_at);
                continue;
            }
            let path = layout.segments().join(segment::file_name(info.segment_id));
            match load_segment(storage, &path, &info) {
                Ok(seg) => {
                    let build = matches!(runs, Runs::Build { min_records } if info.record_count >= min_records);
                    if build
                        && st.algo.is_some_and(|a| index::run::can_index(&seg, a))
                        && let Ok(run) = index::run::build(layout, &seg, &info)
                    {
                        st.add_run(run, info.sealed_at);
                    } else {
                        st.add_segment(&seg, info.sealed_at);
                    }
                }
                Err(reason) => {
                    st.damaged_segments.insert(info.segment_id);
                    st.damage.push(Damage {
                        object: format!("segment {}", path.display()),
                        reason,
                    })
                }
            }
        }
        Ok(st)
    }

    /// The first replay pass alone, over `st`: the records of `scan` after `st.last_logseq`
    /// decide which segments, snapshots and tombstones are in force. The index stays empty,
    /// so such a state answers questions about snapshots only (listing them is all it is for).
    pub fn replay_log_over(mut st: State, scan: &Scan) -> State {
        st.log_tail = Some(scan.tail.clone());
        st.log_damage = LogDamage::from_scan(scan);
        // Records are numbered without gaps, so record n is at index n - first_logseq.
        let from = st
            .last_logseq
            .saturating_add(1)
            .saturating_sub(scan.first_logseq);
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        for rec in scan.records.get(from..).unwrap_or_default() {
            st.apply(rec);
        }
        st
    }

    /// The first replay pass for one record: what it changes of the segments, snapshots and
    /// tombstones in force.
    fn apply(&mut self, rec: &LogRecord) {
        let st = self;
        st.last_logseq = rec.logseq;
        let ev = match Event::decode(rec.record_type, &rec.payload) {
            Ok(ev) => ev,
            Err(e) => {
                st.record_damage = true;
                st.damage.push(Damage {
                    object: format!("log record {}", rec.logseq),
                    reason: e.to_string(),
                });
                return;
            }
        };
        match ev {
            Event::SegmentSeal {
                segment_id,
                record_count,
                checksum,
            } => st.add_sealed_segment(SegmentInfo {
                segment_id,
                sealed_at: rec.logseq,
                record_count,
                checksum,
            }),
            Event::Tombstone {
                domain_id,
                reference,
            } => st.add_tombstone(rec.logseq, domain_id, &reference, true),
            Event::TombstoneLift {
                domain_id,
                reference,
            } => st.add_tombstone(rec.logseq, domain_id, &reference, false),
            Event::Snapshot {
                snapshot_id,
                root,
                meta,
            } => {
                st.max_snapshot_id = st.max_snapshot_id.max(snapshot_id);
                let meta = serde_json::from_slice::<SnapshotMeta>(&meta).unwrap_or_else(|e| {
                    st.record_damage = true;
                    st.damage.push(Damage {
                        object: format!("snapshot {snapshot_id} (log record {})", rec.logseq),
                        reason: format!("metadata does not decode: {e}"),
                    });
                    SnapshotMeta::default()
                });
                st.snapshots.insert(
                    snapshot_id,
                    Snapshot {
                        id: snapshot_id,
                        logseq: rec.logseq,
                        root,
                        meta,
                    },
                );
            }
            Event::SnapshotForget { snapshot_id } => {
                st.snapshots.remove(&snapshot_id);
                st.forgotten.insert(snapshot_id);
            }
            Event::GcCommit {
                segment_id,
                record_count,
                checksum,
                retired,
                deleted_blocks,
            } => {
                for s in retired {
                    st.segments.remove(&s);
                    st.retired_segments.insert(s);
                }
                st.deleted_blocks
                    .extend(deleted_blocks.into_iter().map(BlockId));
                if segment_id != 0 {
                    st.add_sealed_segment(SegmentInfo {
                        segment_id,
                        sealed_at: rec.logseq,
                        record_count,
                        checksum,
                    });
                }
            }
            Event::Unknown(_) => {}
        }
    }

    /// Makes a segment visible, as its SEGMENT_SEAL or GC_COMMIT record does (its entries
    /// are loaded separately, by [`State::add_segment`]).
    pub(crate) fn add_sealed_segment(&mut self, info: SegmentInfo) {
        self.max_segment_id = self.max_segment_id.max(info.segment_id);
        self.segments.insert(info.segment_id, info);
    }

    /// Records a TOMBSTONE (`hide`) or TOMBSTONE_LIFT of `reference` logged at `logseq`.
    pub(crate) fn add_tombstone(
        &mut self,
        logseq: u64,
        domain_id: u32,
        reference: &Reference,
        hide: bool,
    ) {
        self.tombstones
            .entry(*reference.digest())
            .or_default()
            .push((logseq, domain_id, hide));
    }

    /// Adds a segment's records to the index, in memory. Entries without their own
    /// `visible_since` become visible at `sealed_at`. When a digest is already indexed the
    /// location of the lower segment id stays (both hold the same bytes) and the earliest
    /// visibility wins.
    pub fn add_segment(&mut self, seg: &Segment, sealed_at: u64) {
        for r in &seg.records {
            let block_id = seg.block_of(r);
            let block = self.block_number(block_id);
            let since = if r.visible_since == 0 {
                sealed_at
            } else {
                r.visible_since
            };
            let loc = Location {
                kind: r.kind,
                codec: r.codec,
                visibility: r.visibility,
                domain_id: r.domain_id,
                type_tag: r.type_tag,
                block,
                stored_len: r.stored_len,
                raw_len: r.raw_len,
                offset: r.block_offset,
                artifact_len: r.artifact_len,
                visible_since: since,
            };
            self.index
                .insert(seg.segment_id, *r.reference.digest(), loc);
        }
    }

    /// Adds a segment held as its run (sealed at `sealed_at`) to the index.
    pub(crate) fn add_run(&mut self, run: Run, sealed_at: u64) {
        let blocks = run.blocks.iter().map(|b| self.block_number(*b)).collect();
        self.index.add_run(run, sealed_at, blocks);
    }

    pub fn block_number(&mut self, id: BlockId) -> u32 {
        if let Some(n) = self.block_numbers.get(&id) {
            return *n;
        }
        let n = self.blocks.len() as u32;
        self.blocks.push(id);
        self.block_numbers.insert(id, n);
        n
    }

    /// The location of `reference` as seen at log position `at` (None: CURRENT).
    pub fn lookup(&self, reference: &Reference, at: Option<u64>) -> Option<Location> {
        if Some(reference.algo()) != self.algo {
            return None;
        }
        let loc = self.index.get(reference.digest())?;
        let pos = at.unwrap_or(u64::MAX);
        if loc.visible_since > pos {
            return None;
        }
        if let Some(events) = self.tombstones.get(reference.digest()) {
            // The last tombstone event of the entry's domain at or before `pos` decides.
            let last = events
                .iter()
                .filter(|(seq, dom, _)| *seq <= pos && *dom == loc.domain_id)
                .max_by_key(|(seq, _, _)| *seq);
            if let Some((seq, _, true)) = last {
                // A tombstone shadows entries that were visible before it.
                if loc.visible_since < *seq {
                    return None;
                }
            }
        }
        Some(loc)
    }

    /// Snapshots in id order.
    pub fn snapshot_list(&self) -> Vec<&Snapshot> {
        self.snapshots.values().collect()
    }

    /// The retained snapshot with the highest id.
    pub fn latest_snapshot(&self) -> Option<&Snapshot> {
        self.snapshots.values().next_back()
    }

    /// Resolves a snapshot name: a numeric id, `latest`, or a label (latest with that label).
    pub fn resolve_snapshot(&self, name: &str) -> Result<&Snapshot> {
        crate::snapshot::resolve(&self.snapshots, name)
    }
}

/// Reads a segment file and checks it against what its seal record logged.
pub(crate) fn load_segment(
    storage: &dyn Storage,
    path: &Path,
    info: &SegmentInfo,
) -> std::result::Result<Segment, String> {
    let bytes = storage
        .read(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let (seg, checksum) = Segment::decode(&bytes).map_err(|e| e.to_string())?;
    if checksum != info.checksum {
        return Err("checksum differs from the one its seal record logged".into());
    }
    if seg.segment_id != info.segment_id || seg.records.len() as u64 != info.record_count {
        return Err("id or record count differs from its seal record".into());
    }
    Ok(seg)
}
