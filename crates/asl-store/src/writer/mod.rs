//! The single writer: puts artifacts (from many threads at once) and commits snapshots.
//!
//! Write ordering, which crash safety rests on:
//! 1. chunk records go into an open block under `blocks/open/`;
//! 2. a full block is fsynced and renamed to its sealed name (and the directory fsynced) by a
//!    thread of its own, so that no put waits for the disk;
//! 3. at commit every sealing thread is joined and the last block sealed, then the new index
//!    entries (and those of small segments merged in, see `crate::merge`) are written as a
//!    segment (fsync, rename, directory fsync);
//! 4. one log append of `SEGMENT_SEAL` (`GC_COMMIT` when segments were merged) + `SNAPSHOT`,
//!    then fsync of the log.
//!
//! Nothing is visible before step 4; a crash before it leaves only unreferenced files, which
//! the next writer or GC removes.
//!
//! The modules follow that ordering: `put` and `stream` cut an artifact (`chunking`)
//! into records, compressed by the policy of `compression`, that this module places in the
//! open block (step 1); `sealing` seals full blocks (step 2); `commit` does steps 3 and 4.

mod chunking;
mod commit;
mod compression;
mod put;
mod sealing;
mod spill;
mod stream;
#[cfg(test)]
mod test_data;

pub use commit::Commit;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::access::TypeTag;
use crate::block::{BlockId, Codec, OpenBlock, RecordKind};
use crate::config::StoreConfig;
use crate::error::{IoContext, Result, StoreError};
use crate::layout::{Layout, load_config};
use crate::lock::WriterLock;
use crate::log::LogAppender;
use crate::reader::Reader;
use crate::records::Event;
use crate::reference::{HashAlgo, Reference};
use crate::snapshot::Snapshot;
use crate::state::{SegmentInfo, State};
use sealing::Sealing;

/// A record written by this writer and not yet in a sealed segment.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Session-local block number; resolved to a [`BlockId`] when the block is sealed.
    block_seq: u32,
    offset: u64,
    stored_len: u32,
    raw_len: u32,
    codec: Codec,
    kind: RecordKind,
    type_tag: u32,
    artifact_len: u64,
}

#[derive(Default)]
struct Session {
    /// Records written since the last commit. `None` while another thread is writing it:
    /// a second put of the same chunk counts it as present (it will be, or the whole
    /// commit fails).
    pending: HashMap<[u8; 32], Option<Pending>>,
    /// Ids of blocks sealed in this session, by block_seq.
    sealed: Vec<Option<BlockId>>,
    /// Chunk bytes stored since the last commit (before compression) and after.
    new_raw_bytes: u64,
    new_stored_bytes: u64,
    /// A put is writing a spill (`spill`); others go on putting meanwhile.
    spilling: bool,
    /// After a look that found too few entries to spill: the pending count at which to look
    /// again.
    spill_retry_at: usize,
    /// Why a spill failed: its entries left `pending` without reaching a segment, so the
    /// session cannot be committed.
    failed: Option<String>,
}

struct BlockSlot {
    block: Option<OpenBlock>,
    seq: u32,
}

/// The store opened for writing. Holds the writer lock until dropped.
pub struct Writer {
    pub(crate) layout: Layout,
    pub(crate) config: StoreConfig,
    pub(crate) algo: HashAlgo,
    pub(crate) state: State,
    /// The zstd level of this session's records: the store's `compression_level` unless
    /// [`Writer::set_compression_level`] chose another.
    level: i32,
    /// Whether full blocks are sealed on threads of their own (see `sealing`).
    background_sealing: bool,
    /// Records after the last checkpoint that make the next commit write one.
    checkpoint_interval: u64,
    /// Segments of at least this many entries get an index run (`crate::index`) and are
    /// held as it.
    run_min_records: u64,
    log: LogAppender,
    session: Mutex<Session>,
    /// Segments this session spilled, sealed by the next commit (`spill`).
    spilled: std::sync::RwLock<Vec<spill::Spilled>>,
    /// Pending entries that make a put spill (`usize::MAX`: never).
    spill_records: usize,
    block: Mutex<BlockSlot>,
    sealing: Mutex<Vec<Sealing>>,
    /// What opening removed of a crashed writer's leftovers; GC counts it as freed.
    pub(crate) removed_at_open: crate::FileTally,
    _lock: WriterLock,
}

impl Drop for Writer {
    /// A writer dropped without commit still waits for its sealing threads: once the lock is
    /// released, another writer may clean `blocks/open/` under them.
    fn drop(&mut self) {
        let _ = self.join_sealing();
    }
}

/// A store whose writer lock is held and whose configuration is read, as
/// [`Writer::lock`] returns it; [`LockedStore::open`] reads the rest.
pub struct LockedStore {
    layout: Layout,
    config: StoreConfig,
    lock: WriterLock,
}

impl LockedStore {
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Cuts a torn log tail, replays the log, and removes what a crashed writer left
    /// behind.
    pub fn open(self) -> Result<Writer> {
        let LockedStore {
            layout,
            config,
            lock,
        } = self;
        let run_min_records = crate::index::RUN_MIN_RECORDS;
        let spill_records = if layout.storage().cheap_random_reads() {
            spill::SPILL_RECORDS
        } else {
            usize::MAX
        };
        let runs = crate::index::Runs::Build {
            min_records: run_min_records,
        };
        let (scan, state) = crate::checkpoint::replay(&layout, config.algo(), runs)?;
        // Cuts a torn tail, refuses a damaged log.
        let log = LogAppender::open(layout.storage(), &layout.log(), &scan)?;
        let mut w = Writer {
            algo: config.algo(),
            layout,
            level: config.compression_level,
            background_sealing: true,
            checkpoint_interval: crate::checkpoint::INTERVAL,
            run_min_records,
            config,
            state,
            log,
            session: Mutex::new(Session::default()),
            spilled: Default::default(),
            spill_records,
            block: Mutex::new(BlockSlot {
                block: None,
                seq: 0,
            }),
            sealing: Mutex::new(Vec::new()),
            removed_at_open: crate::FileTally::default(),
            _lock: lock,
        };
        w.removed_at_open = w.clean_leftovers()?;
        // A missing, damaged or stale checkpoint is rebuilt here, once its files are tidy.
        w.checkpoint_if_due();
        Ok(w)
    }
}

impl Writer {
    /// Opens `dir` for writing: takes the lock, cuts a torn log tail, removes what a crashed
    /// writer left behind, and replays the log.
    pub fn open(dir: &Path) -> Result<Writer> {
        Writer::lock(dir)?.open()
    }

    /// Takes the writer lock of `dir` (the step another writer can refuse) and reads the
    /// configuration, leaving the log and the index to [`LockedStore::open`]. A caller thus
    /// knows before slow work that the store is its own, and can read the rest on another
    /// thread meanwhile (a capture does while the command runs).
    pub fn lock(dir: &Path) -> Result<LockedStore> {
        Writer::lock_in(Layout::new(dir))
    }

    /// [`Writer::lock`] in the storage of `layout`.
    pub fn lock_in(layout: Layout) -> Result<LockedStore> {
        let config = load_config(&layout)?;
        let lock = WriterLock::acquire(&layout)?;
        Ok(LockedStore {
            layout,
            config,
            lock,
        })
    }

    /// Opens the store in `dir`, creating it first if `dir` does not exist yet.
    pub fn open_or_init(dir: &Path, opts: &crate::InitOptions) -> Result<Writer> {
        Writer::open_or_init_in(Layout::new(dir), opts)
    }

    /// [`Writer::open`] in the storage of `layout`.
    pub fn open_in(layout: Layout) -> Result<Writer> {
        Writer::lock_in(layout)?.open()
    }

    /// [`Writer::open_or_init`] in the storage of `layout`.
    pub fn open_or_init_in(layout: Layout, opts: &crate::InitOptions) -> Result<Writer> {
        crate::Store::create_if_absent_in(&layout, opts)?;
        Writer::open_in(layout)
    }

    /// Removes temp files of a crashed writer, segments that were written but never sealed,
    /// and files a committed GC had not yet deleted. All of them are invisible; none is
    /// reachable from the log. Sealed blocks no segment names are left to GC, which counts
    /// them. Returns what was removed.
    fn clean_leftovers(&mut self) -> Result<crate::FileTally> {
        // The log decides what may go; make what it says durable first.
        self.log.sync()?;
        let storage = self.layout.storage();
        let mut removed = crate::FileTally::default();
        for dir in [self.layout.blocks_open(), self.layout.segments_open()] {
            for e in storage.list(&dir).at(&dir)? {
                // Best effort, as before: a temp file that cannot go now goes next time, and
                // `stats` keeps counting it meanwhile.
                if let Ok(bytes) = crate::unreferenced::remove(storage, &dir.join(&e.name)) {
                    removed.add(bytes);
                }
            }
        }
        let segdir = self.layout.segments();
        for e in storage.list(&segdir).at(&segdir)? {
            let name = e.name;
            let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let unsealed = id > self.state.max_segment_id;
            if unsealed || self.state.retired_segments.contains(&id) {
                removed.add(crate::unreferenced::remove(storage, &segdir.join(&name))?);
            }
        }
        // Index runs of segments no longer visible (retired by GC or a merge, or written
        // for a commit that never reached the log), and run files a crash left half written.
        let rundir = self.layout.index_runs();
        if let Ok(entries) = storage.list(&rundir) {
            for e in entries {
                let visible = e
                    .name
                    .strip_suffix(".run")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .is_some_and(|id| self.state.segments.contains_key(&id));
                if !visible {
                    let _ = storage.remove_file(&rundir.join(&e.name));
                }
            }
        }
        for b in &self.state.deleted_blocks {
            let p = b.path(&self.layout.blocks());
            if storage.exists(&p) && !self.state.block_numbers.contains_key(b) {
                removed.add(crate::unreferenced::remove(storage, &p)?);
            }
        }
        Ok(removed)
    }

    /// The blocks this writer sealed for puts it has not committed yet: no log record names
    /// them, but the commit will.
    pub(crate) fn session_blocks(&self) -> std::collections::HashSet<BlockId> {
        self.lock_session()
            .sealed
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// The ids of the retained snapshots, in order.
    pub fn snapshot_ids(&self) -> Vec<u64> {
        self.state.snapshots.keys().copied().collect()
    }

    /// The retained snapshot with the highest id.
    pub fn latest_snapshot(&self) -> Option<&Snapshot> {
        self.state.latest_snapshot()
    }

    /// The snapshot a name given by a user means: an id, `latest`, or a label.
    pub fn resolve_snapshot(&self, name: &str) -> Result<&Snapshot> {
        self.state.resolve_snapshot(name)
    }

    /// The visible segments, in id order.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentInfo> {
        self.state.segments.values()
    }

    /// The logseq of the last record in the log (0 for an empty log).
    pub fn last_logseq(&self) -> u64 {
        self.state.last_logseq
    }

    /// A reader of the committed state (what this writer has not committed is not visible).
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.layout, &self.state, None)
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self, reference: &Reference) -> bool {
        self.state.lookup(reference, None).is_some()
            || self.lock_session().pending.contains_key(reference.digest())
            || self.spilled_holds(reference)
    }

    /// How many pending entries make a put spill them into a segment (`spill`); tests and
    /// benchmarks set it small. Storage without cheap random reads never spills.
    pub fn set_spill_records(&mut self, records: usize) {
        if self.layout.storage().cheap_random_reads() {
            self.spill_records = records.max(1);
        }
    }

    /// Hashes and stores one chunk record; returns its reference and whether it was new.
    fn store_chunk(&self, chunk: &[u8], tag: TypeTag) -> Result<(Reference, bool)> {
        let r = self.algo.digest(chunk);
        let new = self.store_record(r, RecordKind::Chunk, tag, chunk, chunk.len() as u64)?;
        Ok((r, new))
    }

    /// Writes one record unless the digest is already stored. Returns whether it was new.
    fn store_record(
        &self,
        reference: Reference,
        kind: RecordKind,
        tag: TypeTag,
        raw: &[u8],
        artifact_len: u64,
    ) -> Result<bool> {
        if self.state.lookup(&reference, None).is_some() {
            return Ok(false);
        }
        // Entries a spill is writing are in neither place for a moment: a put of the same
        // digest then stores it once more, which costs a record and nothing else.
        if self.spilled_holds(&reference) {
            return Ok(false);
        }
        {
            let mut s = self.lock_session();
            if s.pending.contains_key(reference.digest()) {
                return Ok(false);
            }
            s.pending.insert(*reference.digest(), None);
        }
        let (codec, stored) = self.encode(raw)?;
        let mut full = None;
        let placed = {
            let mut slot = self.block.lock().unwrap_or_else(|p| p.into_inner());
            let is_full = slot.block.as_ref().is_some_and(|b| {
                b.data_len() + stored.len() as u64 > u64::from(self.config.block_target_size)
            });
            if is_full && let Some(b) = slot.block.take() {
                // Sealed outside this lock: sealing fsyncs a whole block, and every other put
                // would stand still meanwhile.
                full = Some((slot.seq, b));
                slot.seq += 1;
            }
            (|| -> Result<(u32, u64)> {
                if slot.block.is_none() {
                    let name = format!("{}-{}", std::process::id(), slot.seq);
                    slot.block = Some(OpenBlock::create(
                        self.layout.storage_arc(),
                        &self.layout.blocks_open(),
                        self.algo,
                        &name,
                    )?);
                }
                let seq = slot.seq;
                let block = slot
                    .block
                    .as_mut()
                    .ok_or_else(|| StoreError::internal("open block", "vanished"))?;
                let offset =
                    block.append(reference, kind, codec, tag.0, &stored, raw.len() as u32)?;
                Ok((seq, offset))
            })()
        };
        // The full block holds records of puts that have returned: it is sealed whatever
        // became of this put's own record.
        if let Some((seq, b)) = full {
            if self.background_sealing {
                self.seal_in_background(seq, b)?;
            } else {
                let (id, _) = b.seal(&self.layout.blocks())?;
                self.record_sealed(seq, id);
            }
        }
        let (block_seq, offset) = placed?;
        let mut s = self.lock_session();
        s.new_raw_bytes += raw.len() as u64;
        s.new_stored_bytes += stored.len() as u64;
        s.pending.insert(
            *reference.digest(),
            Some(Pending {
                block_seq,
                offset,
                stored_len: stored.len() as u32,
                raw_len: raw.len() as u32,
                codec,
                kind,
                type_tag: tag.0,
                artifact_len,
            }),
        );
        // Checked under the lock already held: most puts never reach the mark.
        let due = s.pending.len() >= self.spill_records;
        drop(s);
        if due {
            self.spill_if_due()?;
        }
        Ok(true)
    }

    /// Appends events to the log durably and advances the state's logseq.
    pub(crate) fn append(&mut self, events: &[Event]) -> Result<Vec<u64>> {
        let encoded: Vec<(u32, Vec<u8>)> = events.iter().map(Event::encode).collect();
        let seqs = self.log.append(&encoded)?;
        if let Some(last) = seqs.last() {
            self.state.last_logseq = *last;
        }
        Ok(seqs)
    }

    /// Writes a checkpoint of the state when [`crate::checkpoint::INTERVAL`] records or more
    /// follow the last one. Callers call it once their state matches the log again (after a
    /// commit, a forget, a tombstone). The checkpoint is a cache: failing to write it loses
    /// nothing (opening replays more of the log), so the failure is not the caller's.
    pub(crate) fn checkpoint_if_due(&mut self) {
        if self.state.last_logseq < self.state.checkpointed_at + self.checkpoint_interval {
            return;
        }
        let _ = self.checkpoint();
    }

    /// How many records after the last checkpoint make the next change write one (at least
    /// 1; [`crate::checkpoint::INTERVAL`] unless set). Tests set it small to checkpoint often.
    pub fn set_checkpoint_interval(&mut self, records: u64) {
        self.checkpoint_interval = records.max(1);
    }

    /// From how many entries on a segment this writer writes gets an index run and is held
    /// as it ([`crate::index::RUN_MIN_RECORDS`] unless set; tests set it small).
    pub fn set_run_min_records(&mut self, records: u64) {
        self.run_min_records = records.max(1);
    }

    /// Writes a checkpoint of the current state now; returns the logseq it covers (`None`:
    /// nothing to cover, or the state holds damaged records and is not checkpointed).
    pub fn checkpoint(&mut self) -> Result<Option<u64>> {
        let Some(at) = self.log.position() else {
            return Ok(None);
        };
        if !crate::checkpoint::write(&self.layout, &self.state, &at)? {
            return Ok(None);
        }
        self.state.checkpointed_at = at.logseq;
        Ok(Some(at.logseq))
    }

    /// Marks a snapshot as no longer retained (its data goes at the next GC).
    pub fn forget(&mut self, snapshot_id: u64) -> Result<()> {
        if !self.state.snapshots.contains_key(&snapshot_id) {
            return Err(StoreError::NoSuchSnapshot(snapshot_id.to_string()));
        }
        self.append(&[Event::SnapshotForget { snapshot_id }])?;
        self.state.snapshots.remove(&snapshot_id);
        self.state.forgotten.insert(snapshot_id);
        self.checkpoint_if_due();
        Ok(())
    }

    /// Hides `reference` (entries of this store's domain sealed before now).
    pub fn tombstone(&mut self, reference: Reference) -> Result<()> {
        self.tombstone_event(reference, true)
    }

    /// Lifts a tombstone of `reference`.
    pub fn lift_tombstone(&mut self, reference: Reference) -> Result<()> {
        self.tombstone_event(reference, false)
    }

    fn tombstone_event(&mut self, reference: Reference, hide: bool) -> Result<()> {
        self.check_algo(&reference)?;
        let domain_id = self.config.domain_id;
        let seqs = self.append(&[Event::tombstone(domain_id, reference, hide)])?;
        self.state
            .add_tombstone(seqs[0], domain_id, &reference, hide);
        self.checkpoint_if_due();
        Ok(())
    }

    /// Replays the log again (after GC rewrote the index).
    pub(crate) fn reload(&mut self) -> Result<()> {
        let runs = crate::index::Runs::Build {
            min_records: self.run_min_records,
        };
        self.state = crate::checkpoint::replay(&self.layout, self.algo, runs)?.1;
        Ok(())
    }

    fn check_algo(&self, reference: &Reference) -> Result<()> {
        if reference.algo() != self.algo {
            return Err(StoreError::WrongHash {
                reference: *reference,
                found: reference.algo().name(),
                expected: self.algo.name(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{ArtifactRead, ArtifactWrite};
    use crate::snapshot::SnapshotMeta;

    #[test]
    fn tombstones_hide_earlier_entries_and_lifting_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
        let a = w.put_bytes(b"to be hidden", TypeTag::BYTES).unwrap();
        w.commit(None, SnapshotMeta::now("t")).unwrap();
        w.tombstone(a.reference).unwrap();
        assert!(w.reader().artifact_len(&a.reference).is_none());
        drop(w);
        assert!(
            crate::Store::open(&path)
                .unwrap()
                .reader()
                .artifact_len(&a.reference)
                .is_none()
        );
        let mut w = Writer::open(&path).unwrap();
        w.lift_tombstone(a.reference).unwrap();
        drop(w);
        let s = crate::Store::open(&path).unwrap();
        assert_eq!(s.reader().read_all(&a.reference).unwrap(), b"to be hidden");
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let w = Writer::open_or_init(&path, &Default::default()).unwrap();
        match Writer::open(&path) {
            Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Locked, got {:?}", other.err()),
        }
        drop(w);
        Writer::open(&path).unwrap();
    }
}
