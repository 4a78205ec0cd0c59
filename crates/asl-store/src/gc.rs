//! Garbage collection: keep what retained snapshots reach, drop the rest.
//!
//! 1. **Mark** every artifact reachable from a retained snapshot's root (part lists and
//!    typed children followed).
//! 2. **Plan** per block: no live record → delete; live bytes below the repack threshold →
//!    copy the live records into new blocks; otherwise keep.
//! 3. **Write** the new blocks and one compacted segment holding every live entry (each with
//!    its original `visible_since`, so old snapshots still see exactly what they saw).
//! 4. **Commit** with one `GC_COMMIT` log record (fsynced) that retires every older segment
//!    and names the deleted blocks.
//! 5. **Delete** retired segments, deleted blocks and the files no log record refers to
//!    (sealed blocks and segments a killed or out-of-space writer left, see
//!    [`crate::unreferenced`]).
//!
//! A crash before step 4 leaves only invisible new files; a crash after it leaves files the
//! next writer deletes (it replays the same GC_COMMIT). Either way the store verifies.
//!
//! The space freed is measured, not planned: the bytes of every file deleted (including the
//! temporary files opening the writer removed) minus the bytes of every file written (new
//! blocks, the compacted segment, the log's growth). It is what `du` sees change.

use std::collections::{HashMap, HashSet};

use crate::Children;
use crate::block::{self, BlockId, OpenBlock};
use crate::error::{IoContext, Result, StoreError};
use crate::layout::Layout;
use crate::reach;
use crate::records::Event;
use crate::reference::Reference;
use crate::segment::{FLAG_COMPACTED, IndexRecord, Segment};
use crate::state::State;
use crate::storage::ReadFile;
use crate::store::Store;
use crate::unreferenced::{self, FileTally, Leftover};
use crate::writer::Writer;

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// Repack a block when less than this fraction of its bytes is live.
    pub repack_below: f64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            repack_below: 0.5,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub snapshots_retained: usize,
    pub artifacts_live: usize,
    pub artifacts_dropped: usize,
    pub blocks_kept: usize,
    pub blocks_deleted: usize,
    pub blocks_repacked: usize,
    pub blocks_written: usize,
    /// Sealed blocks no visible segment named (left by a killed writer), deleted.
    pub orphan_blocks_deleted: usize,
    /// Every unreferenced file removed (orphan blocks, and the temporary and unsealed files
    /// that opening the writer removed) and their bytes.
    pub unreferenced_removed: FileTally,
    pub segments_retired: usize,
    /// The bytes of the blocks the index referred to before.
    pub bytes_before: u64,
    /// Bytes of the files deleted (a dry run: that would be deleted).
    pub bytes_deleted: u64,
    /// Bytes of the files written: new blocks, the compacted segment, the log's growth (a dry
    /// run: an estimate of the new blocks only).
    pub bytes_written: u64,
    /// `bytes_deleted - bytes_written`: what the store shrank by. Negative when a collection
    /// that drops only index entries writes more than it deletes.
    pub bytes_freed: i64,
}

impl GcReport {
    fn settle(&mut self) {
        self.bytes_freed = self.bytes_deleted as i64 - self.bytes_written as i64;
    }
}

/// What marking and planning found: the part of a collection that only reads.
struct Plan {
    report: GcReport,
    live: HashSet<[u8; 32]>,
    delete: Vec<BlockId>,
    repack: HashSet<u32>,
    /// The live records' bytes the new blocks will hold.
    repack_estimate: u64,
    /// The bytes of the blocks to delete or repack.
    planned_deletion: u64,
}

/// Steps 1 and 2: mark what retained snapshots reach and decide per block.
fn plan(layout: &Layout, state: &State, opts: &GcOptions, children: Children<'_>) -> Result<Plan> {
    if let Some(d) = state.damage.first() {
        return Err(StoreError::corrupt(
            d.object.clone(),
            format!(
                "{}; garbage collection refuses to run on a damaged store (run asl-admin verify)",
                d.reason
            ),
        ));
    }
    let mut report = GcReport {
        dry_run: opts.dry_run,
        snapshots_retained: state.snapshots.len(),
        ..GcReport::default()
    };

    // 1. Mark. Each snapshot is walked at its own position, so a tombstoned artifact that
    // an older snapshot still sees stays alive.
    let mut live: HashSet<[u8; 32]> = HashSet::new();
    for snap in state.snapshots.values() {
        let Some(root) = snap.root else { continue };
        let reader = crate::Reader::new(layout, state, Some(snap.logseq));
        let missing = reach::walk(&reader, &[root], children, |r| {
            live.insert(*r.digest());
        });
        if let Some(m) = missing.first() {
            return Err(StoreError::corrupt(
                format!("artifact {}", m.reference),
                format!(
                    "reachable from snapshot {} but {}; garbage collection stopped (run asl-admin verify)",
                    snap.id, m.reason
                ),
            ));
        }
    }
    report.artifacts_live = live.len();
    report.artifacts_dropped = state.index.len() - live.len().min(state.index.len());

    // 2. Plan per block.
    let mut live_bytes: HashMap<u32, u64> = HashMap::new();
    for (d, loc) in state.index.iter() {
        if live.contains(&d) {
            *live_bytes.entry(loc.block).or_default() += u64::from(loc.stored_len);
        }
    }
    let mut delete: Vec<BlockId> = Vec::new();
    let mut repack: HashSet<u32> = HashSet::new();
    let mut repack_estimate = 0u64;
    let mut planned_deletion = 0u64;
    for (n, id) in state.blocks.iter().enumerate() {
        let n = n as u32;
        let path = id.path(&layout.blocks());
        let size = layout.storage().len(&path).unwrap_or(0);
        report.bytes_before += size;
        match live_bytes.get(&n) {
            None => {
                delete.push(*id);
                planned_deletion += size;
            }
            Some(&lb) if (lb as f64) < opts.repack_below * size as f64 => {
                repack.insert(n);
                repack_estimate += lb;
                planned_deletion += size;
            }
            Some(_) => report.blocks_kept += 1,
        }
    }
    report.blocks_deleted = delete.len();
    report.blocks_repacked = repack.len();
    Ok(Plan {
        report,
        live,
        delete,
        repack,
        repack_estimate,
        planned_deletion,
    })
}

/// A dry run's figures: the unreferenced files and blocks to delete, less the repacked
/// records and their trailers to write (the index segment is not counted).
fn estimate(plan: Plan, state: &State, leftovers: &[unreferenced::LeftoverFile]) -> GcReport {
    let mut report = plan.report;
    for f in leftovers {
        report.unreferenced_removed.add(f.bytes);
        report.bytes_deleted += f.bytes;
    }
    report.bytes_deleted += plan.planned_deletion;
    let live_records = state
        .index
        .iter()
        .filter(|(d, l)| plan.live.contains(d) && plan.repack.contains(&l.block))
        .count() as u64;
    if !plan.repack.is_empty() {
        report.bytes_written = plan.repack_estimate
            + live_records * block::ENTRY_SIZE as u64
            + block::HEADER_SIZE
            + block::FOOTER_SIZE as u64;
    }
    report.settle();
    report
}

/// Plans a collection of `store` and changes nothing: what `gc --dry-run` prints. It takes
/// no lock, so it runs while a writer holds the store; the files such a writer has not
/// committed yet are then counted as unreferenced, as [`Store::unreferenced`] counts them.
pub fn dry_run(store: &Store, opts: &GcOptions, children: Children<'_>) -> Result<GcReport> {
    let opts = GcOptions {
        dry_run: true,
        ..opts.clone()
    };
    let mut plan = plan(store.layout(), store.state(), &opts, children)?;
    let leftovers = unreferenced::list(store.layout(), store.state())?;
    plan.report.orphan_blocks_deleted = leftovers
        .iter()
        .filter(|f| matches!(f.kind, Leftover::SealedBlock(_)))
        .count();
    Ok(estimate(plan, store.state(), &leftovers))
}

impl Writer {
    /// Collects garbage; see the module documentation for the steps.
    pub fn gc(&mut self, opts: &GcOptions, children: Children<'_>) -> Result<GcReport> {
        self.refuse_if_spilled("garbage collection")?;
        let mut plan = plan(&self.layout, &self.state, opts, children)?;

        // Unreferenced files: what opening the writer already removed, and what is left. A
        // block this writer sealed for puts not yet committed is not named by the log either,
        // but its commit will name it: it stays.
        self.join_sealing()?;
        let own = self.session_blocks();
        let leftovers: Vec<unreferenced::LeftoverFile> =
            unreferenced::list(&self.layout, &self.state)?
                .into_iter()
                .filter(|f| match f.kind {
                    Leftover::SealedBlock(id) => !own.contains(&id),
                    Leftover::UnsealedSegment(_) => true,
                    // This writer's own open files: opening removed every earlier one.
                    Leftover::OpenBlock | Leftover::OpenSegment => false,
                })
                .collect();
        plan.report.orphan_blocks_deleted = leftovers
            .iter()
            .filter(|f| matches!(f.kind, Leftover::SealedBlock(_)))
            .count();
        plan.report.unreferenced_removed = self.removed_at_open;
        plan.report.bytes_deleted = self.removed_at_open.bytes;
        // Counted once: a later gc of this writer must not claim it again.
        self.removed_at_open = FileTally::default();

        if opts.dry_run {
            return Ok(estimate(plan, &self.state, &leftovers));
        }
        let Plan {
            mut report,
            live,
            delete,
            repack,
            ..
        } = plan;
        let nothing_dead = report.artifacts_dropped == 0 && delete.is_empty() && repack.is_empty();
        if nothing_dead {
            // The log already says what it keeps, and opening made that durable.
            self.remove_leftovers(&leftovers, &mut report)?;
            report.settle();
            return Ok(report);
        }

        // 3. Copy live records out of blocks being repacked, then list the compacted entries.
        let mut moved: HashMap<[u8; 32], (BlockId, u64)> = HashMap::new();
        let mut written: Vec<BlockId> = Vec::new();
        {
            let mut live_in_repacked: Vec<([u8; 32], crate::state::Location)> = self
                .state
                .index
                .iter()
                .filter(|(d, l)| live.contains(d) && repack.contains(&l.block))
                .collect();
            // Block order, then offset: sequential reads, deterministic output.
            live_in_repacked.sort_by_key(|(_, l)| (l.block, l.offset));
            let mut open: Option<OpenBlock> = None;
            let mut batch: Vec<[u8; 32]> = Vec::new();
            let mut files: HashMap<u32, std::sync::Arc<dyn ReadFile>> = HashMap::new();
            for (d, loc) in live_in_repacked {
                let id = self.state.blocks[loc.block as usize];
                let path = id.path(&self.layout.blocks());
                if let std::collections::hash_map::Entry::Vacant(e) = files.entry(loc.block) {
                    e.insert(self.layout.storage().open(&path).at(&path)?);
                }
                let stored =
                    block::read_stored(&*files[&loc.block], &path, loc.offset, loc.stored_len)?;
                if open.as_ref().is_some_and(|b| {
                    b.data_len() + stored.len() as u64 > u64::from(self.config.block_target_size)
                }) && let Some(b) = open.take()
                {
                    let (bid, entries) = b.seal(&self.layout.blocks())?;
                    for (dd, e) in batch.drain(..).zip(entries) {
                        moved.insert(dd, (bid, e.offset));
                    }
                    written.push(bid);
                }
                if open.is_none() {
                    open = Some(OpenBlock::create(
                        self.layout.storage_arc(),
                        &self.layout.blocks_open(),
                        self.algo,
                        &format!("gc-{}", written.len()),
                    )?);
                }
                if let Some(b) = open.as_mut() {
                    b.append(
                        Reference::new(self.algo, d),
                        loc.kind,
                        loc.codec,
                        loc.type_tag,
                        &stored,
                        loc.raw_len,
                    )?;
                }
                batch.push(d);
            }
            if let Some(b) = open.take() {
                let (bid, entries) = b.seal(&self.layout.blocks())?;
                for (dd, e) in batch.drain(..).zip(entries) {
                    moved.insert(dd, (bid, e.offset));
                }
                written.push(bid);
            }
        }
        report.blocks_written = written.len();
        let mut records = Vec::with_capacity(live.len());
        for (d, loc) in self.state.index.iter() {
            if !live.contains(&d) {
                continue;
            }
            let (block, offset) = moved
                .get(&d)
                .copied()
                .unwrap_or((self.state.blocks[loc.block as usize], loc.offset));
            records.push((
                block,
                IndexRecord {
                    reference: Reference::new(self.algo, d),
                    kind: loc.kind,
                    codec: loc.codec,
                    visibility: loc.visibility,
                    domain_id: loc.domain_id,
                    type_tag: loc.type_tag,
                    block_index: 0,
                    stored_len: loc.stored_len,
                    raw_len: loc.raw_len,
                    block_offset: offset,
                    artifact_len: loc.artifact_len,
                    visible_since: loc.visible_since,
                },
            ));
        }

        // 4. Commit: the compacted segment, then the GC_COMMIT naming what goes.
        let mut deleted: Vec<BlockId> = delete;
        deleted.extend(repack.iter().map(|n| self.state.blocks[*n as usize]));
        // A new block whose bytes equal a deleted one's (or a leftover's) has the same name:
        // keep it. Such a file was there before, so it is not counted as written either.
        let written_set: HashSet<BlockId> = written.iter().copied().collect();
        let existed: HashSet<BlockId> = deleted
            .iter()
            .copied()
            .chain(leftovers.iter().filter_map(|f| match f.kind {
                Leftover::SealedBlock(id) => Some(id),
                _ => None,
            }))
            .collect();
        for id in written_set.difference(&existed) {
            report.bytes_written += self.block_len(id)?;
        }
        deleted.retain(|b| !written_set.contains(b));
        let log_before = self.log_len()?;
        let (retired, segment_bytes) =
            self.commit_compacted(records, deleted.iter().map(|b| b.0).collect())?;
        report.segments_retired = retired.len();
        report.bytes_written += segment_bytes + (self.log_len()? - log_before);

        // 5. Delete, then replay so the in-memory state matches the log. A leftover that is
        // also retired or deleted by this commit was counted with it.
        report.bytes_deleted += self.remove_files(&retired, &deleted)?;
        let leftovers: Vec<_> = leftovers
            .into_iter()
            .filter(|f| match f.kind {
                Leftover::UnsealedSegment(id) => !retired.contains(&id),
                Leftover::SealedBlock(id) => !deleted.contains(&id) && !written_set.contains(&id),
                _ => true,
            })
            .collect();
        self.remove_leftovers(&leftovers, &mut report)?;
        self.reload()?;
        report.settle();
        Ok(report)
    }

    /// Deletes the unreferenced files listed before the commit, counting what they held.
    fn remove_leftovers(
        &self,
        leftovers: &[unreferenced::LeftoverFile],
        report: &mut GcReport,
    ) -> Result<()> {
        for f in leftovers {
            let bytes = unreferenced::remove(self.layout.storage(), &f.path)?;
            report.unreferenced_removed.add(bytes);
            report.bytes_deleted += bytes;
        }
        Ok(())
    }

    /// The length of sealed block `id`, as written.
    fn block_len(&self, id: &BlockId) -> Result<u64> {
        let p = id.path(&self.layout.blocks());
        self.layout.storage().len(&p).at(&p)
    }

    fn log_len(&self) -> Result<u64> {
        let p = self.layout.log();
        self.layout.storage().len(&p).at(&p)
    }

    /// Writes `records` as one compacted segment (none when there are no records), then logs
    /// the GC_COMMIT that makes it the only visible segment: every segment visible now is
    /// retired and `deleted_blocks` are gone. Returns the retired segment ids (their files and
    /// the blocks are still to be deleted) and the bytes of the segment file written.
    fn commit_compacted(
        &mut self,
        records: Vec<(BlockId, IndexRecord)>,
        deleted_blocks: Vec<[u8; 32]>,
    ) -> Result<(Vec<u64>, u64)> {
        let segment_id = self.state.max_segment_id + 1;
        let seg = Segment::build(segment_id, self.config.domain_id, FLAG_COMPACTED, records);
        let (checksum, segment_bytes) = if seg.records.is_empty() {
            ([0u8; 32], 0)
        } else {
            let checksum = self.write_segment(&seg)?;
            let p = self
                .layout
                .segments()
                .join(crate::segment::file_name(segment_id));
            (checksum, self.layout.storage().len(&p).at(&p)?)
        };
        let retired: Vec<u64> = self.state.segments.keys().copied().collect();
        self.append(&[Event::GcCommit {
            segment_id: if seg.records.is_empty() {
                0
            } else {
                segment_id
            },
            record_count: seg.records.len() as u64,
            checksum,
            retired: retired.clone(),
            deleted_blocks,
        }])?;
        Ok((retired, segment_bytes))
    }

    /// Every sealed block file under `blocks/<hh>/`, sorted by id.
    fn sealed_block_files(&self) -> Result<Vec<(BlockId, std::path::PathBuf)>> {
        let mut out = Vec::new();
        let blocks = self.layout.blocks();
        let storage = self.layout.storage();
        for shard in storage.list(&blocks).at(&blocks)? {
            if shard.name.len() != 2 || !shard.is_dir {
                continue;
            }
            let dir = blocks.join(&shard.name);
            for f in storage.list(&dir).at(&dir)? {
                if let Some(id) = f.name.strip_suffix(".blk").and_then(BlockId::parse) {
                    out.push((id, dir.join(&f.name)));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes segment and block files (those already gone are skipped); returns the bytes
    /// they held.
    fn remove_files(&self, segments: &[u64], blocks: &[BlockId]) -> Result<u64> {
        let mut bytes = 0;
        for s in segments {
            let p = self.layout.segments().join(crate::segment::file_name(*s));
            bytes += unreferenced::remove(self.layout.storage(), &p)?;
        }
        for b in blocks {
            bytes += unreferenced::remove(self.layout.storage(), &b.path(&self.layout.blocks()))?;
        }
        Ok(bytes)
    }
}

/// What [`Writer::reindex`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReindexReport {
    pub blocks_scanned: usize,
    pub blocks_unreadable: Vec<String>,
    pub entries: usize,
    /// Entries found in blocks that the old index did not have (recovered).
    pub recovered: usize,
    pub segments_retired: usize,
    pub caches_cleared: bool,
}

impl Writer {
    /// Rebuilds the on-disk index from the blocks alone: every sealed block's trailer is read
    /// and all its records become entries of one new segment, which replaces every existing
    /// segment (missing or damaged ones included) through a `GC_COMMIT`. Derived caches under
    /// `cache/` are deleted. Entries the old index knew keep their `visible_since`; entries
    /// recovered only from blocks become visible from logseq 1.
    pub fn reindex(&mut self) -> Result<ReindexReport> {
        self.refuse_if_spilled("reindex")?;
        let mut rep = ReindexReport::default();
        let mut records: HashMap<[u8; 32], (BlockId, IndexRecord)> = HashMap::new();
        let files = self.sealed_block_files()?;
        for (id, path) in files {
            rep.blocks_scanned += 1;
            let trailer = self
                .layout
                .storage()
                .read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| block::decode_trailer(&b).map_err(|e| e.to_string()));
            let entries = match trailer {
                Ok(e) => e,
                Err(e) => {
                    rep.blocks_unreadable.push(format!("block {id}: {e}"));
                    continue;
                }
            };
            for e in entries {
                if e.reference.algo() != self.algo {
                    continue;
                }
                let d = *e.reference.digest();
                let old = self.state.index.get(&d);
                let artifact_len = match e.kind {
                    block::RecordKind::Chunk => u64::from(e.raw_len),
                    // The length of a composite is in its part list; read it.
                    block::RecordKind::Parts => match old {
                        Some(l) => l.artifact_len,
                        None => {
                            let f = self.layout.storage().open(&path).at(&path)?;
                            let stored = block::read_stored(&*f, &path, e.offset, e.stored_len)?;
                            match block::decode_record(e.codec, &stored, e.raw_len)
                                .and_then(|raw| block::PartList::decode(&raw))
                            {
                                Ok(pl) => pl.total_len,
                                Err(_) => continue,
                            }
                        }
                    },
                };
                if old.is_none() && !records.contains_key(&d) {
                    rep.recovered += 1;
                }
                let rec = IndexRecord {
                    reference: e.reference,
                    kind: e.kind,
                    codec: e.codec,
                    visibility: old.map_or(crate::segment::Visibility::Internal, |l| l.visibility),
                    domain_id: old.map_or(self.config.domain_id, |l| l.domain_id),
                    type_tag: e.type_tag,
                    block_index: 0,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                    block_offset: e.offset,
                    artifact_len,
                    visible_since: old.map_or(1, |l| l.visible_since),
                };
                records.entry(d).or_insert((id, rec));
            }
        }
        rep.entries = records.len();
        let (retired, _) = self.commit_compacted(records.into_values().collect(), Vec::new())?;
        rep.segments_retired = retired.len();
        self.remove_files(&retired, &[])?;
        let cache = self.layout.cache();
        let storage = self.layout.storage();
        if storage.exists(&cache) {
            storage.remove_dir_all(&cache).at(&cache)?;
        }
        storage.create_dir_all(&cache).at(&cache)?;
        rep.caches_cleared = true;
        self.reload()?;
        Ok(rep)
    }
}
