//! The single writer: puts artifacts (from many threads at once) and commits snapshots.
//!
//! Write ordering, which crash safety rests on:
//! 1. chunk records go into an open block under `blocks/open/`;
//! 2. a full block is fsynced and renamed to its sealed name (and the directory fsynced) by a
//!    thread of its own, so that no put waits for the disk;
//! 3. at commit every sealing thread is joined and the last block sealed, then the new index
//!    entries (and those of small segments merged in, see [`crate::merge`]) are written as a
//!    segment (fsync, rename, directory fsync);
//! 4. one log append of `SEGMENT_SEAL` (`GC_COMMIT` when segments were merged) + `SNAPSHOT`,
//!    then fsync of the log.
//!
//! Nothing is visible before step 4; a crash before it leaves only unreferenced files, which
//! the next writer or GC removes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use fastcdc::v2020::{Normalization, cut, select_masks};

use crate::access::{AccessError, ArtifactWrite, Put, TypeTag};
use crate::block::{BlockId, Codec, OpenBlock, PartList, RecordKind};
use crate::config::StoreConfig;
use crate::error::{IoContext, Result, StoreError};
use crate::layout::{Layout, load_config};
use crate::lock::WriterLock;
use crate::log::{self, LogAppender};
use crate::reader::Reader;
use crate::records::Event;
use crate::reference::{HashAlgo, Reference};
use crate::segment::{self, IndexRecord, Segment, Visibility};
use crate::snapshot::{Snapshot, SnapshotMeta};
use crate::state::State;

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
}

struct BlockSlot {
    block: Option<OpenBlock>,
    seq: u32,
}

/// A full block being sealed in the background: its session-local number and the thread.
type Sealing = (u32, std::thread::JoinHandle<Result<BlockId>>);

/// Blocks that may be sealing at once; a put that fills one more waits for the oldest (only
/// when the disk falls behind the puts).
const MAX_SEALING: usize = 4;

/// What a commit did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Commit {
    pub snapshot: Snapshot,
    pub segment_id: Option<u64>,
    pub new_records: u64,
    pub new_raw_bytes: u64,
    pub new_stored_bytes: u64,
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
    log: LogAppender,
    session: Mutex<Session>,
    block: Mutex<BlockSlot>,
    sealing: Mutex<Vec<Sealing>>,
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
        let scan = log::read(&layout.log())?;
        let log = LogAppender::open(&layout.log(), &scan)?;
        let state = State::replay(&layout.segments(), config.algo(), &scan)?;
        let w = Writer {
            algo: config.algo(),
            layout,
            level: config.compression_level,
            config,
            state,
            log,
            session: Mutex::new(Session::default()),
            block: Mutex::new(BlockSlot {
                block: None,
                seq: 0,
            }),
            sealing: Mutex::new(Vec::new()),
            _lock: lock,
        };
        w.clean_leftovers()?;
        Ok(w)
    }
}

/// The chunk buffer's first size; it doubles while a source fills it, up to two chunks.
const FIRST_READ: usize = 64 * 1024;

thread_local! {
    static CHUNK_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
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
        let layout = Layout::new(dir);
        let config = load_config(&layout)?;
        let lock = WriterLock::acquire(dir, &layout.lock())?;
        Ok(LockedStore {
            layout,
            config,
            lock,
        })
    }

    /// Opens the store in `dir`, creating it first if `dir` does not exist yet.
    pub fn open_or_init(dir: &Path, opts: &crate::InitOptions) -> Result<Writer> {
        if !dir.join("config").exists() {
            crate::Store::init(dir, opts)?;
        }
        Writer::open(dir)
    }

    /// Removes temp files of a crashed writer, segments that were written but never sealed,
    /// and files a committed GC had not yet deleted. All of them are invisible; none is
    /// reachable from the log.
    fn clean_leftovers(&self) -> Result<()> {
        for dir in [self.layout.blocks_open(), self.layout.segments_open()] {
            for e in std::fs::read_dir(&dir).at(&dir)? {
                let e = e.at(&dir)?;
                let _ = std::fs::remove_file(e.path());
            }
        }
        let segdir = self.layout.segments();
        for e in std::fs::read_dir(&segdir).at(&segdir)? {
            let e = e.at(&segdir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let unsealed = id > self.state.max_segment_id;
            if unsealed || self.state.retired_segments.contains(&id) {
                std::fs::remove_file(e.path()).at(e.path())?;
            }
        }
        for b in &self.state.deleted_blocks {
            let p = b.path(&self.layout.blocks());
            if p.exists() && !self.state.block_numbers.contains_key(b) {
                std::fs::remove_file(&p).at(&p)?;
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Compresses the records this writer stores from now on at zstd `level` (1–19) instead
    /// of the store's configured level. The level is not part of any identity (readers
    /// decode any zstd frame), so a writer on a latency-critical path, such as a capture
    /// inside a build, may trade some store size for speed.
    pub fn set_compression_level(&mut self, level: i32) -> Result<()> {
        if !crate::config::ZSTD_LEVELS.contains(&level) {
            return Err(StoreError::BadCompressionLevel(level));
        }
        self.level = level;
        Ok(())
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
    }

    /// Compresses `raw` when that saves space.
    fn encode(&self, raw: &[u8]) -> Result<(Codec, Vec<u8>)> {
        if raw.len() < 64 || looks_incompressible(raw) {
            return Ok((Codec::None, raw.to_vec()));
        }
        let level = self.level;
        let compressed = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().map(|(l, _)| *l) != Some(level) {
                *c = Some((level, zstd::bulk::Compressor::new(level)?));
            }
            match c.as_mut() {
                Some((_, comp)) => comp.compress(raw),
                None => Err(std::io::Error::other("no compressor")),
            }
        });
        let compressed = compressed.map_err(|e| StoreError::io(self.layout.blocks_open(), e))?;
        if compressed.len() < raw.len() {
            Ok((Codec::Zstd, compressed))
        } else {
            Ok((Codec::None, raw.to_vec()))
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
                // Sealed outside this lock (an fsync of 8 MiB took 3-7 ms, during which every
                // other put stood still).
                full = Some((slot.seq, b));
                slot.seq += 1;
            }
            (|| -> Result<(u32, u64)> {
                if slot.block.is_none() {
                    let name = format!("{}-{}", std::process::id(), slot.seq);
                    slot.block = Some(OpenBlock::create(
                        &self.layout.blocks_open(),
                        self.algo,
                        &name,
                    )?);
                }
                let seq = slot.seq;
                let block = slot
                    .block
                    .as_mut()
                    .ok_or_else(|| StoreError::corrupt("open block", "vanished"))?;
                let offset =
                    block.append(reference, kind, codec, tag.0, &stored, raw.len() as u32)?;
                Ok((seq, offset))
            })()
        };
        // The full block holds records of puts that have returned: it is sealed whatever
        // became of this put's own record.
        if let Some((seq, b)) = full {
            self.seal_in_background(seq, b)?;
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
        Ok(true)
    }

    /// Seals the open block (if any) and records its id.
    fn seal_block(&self, slot: &mut BlockSlot) -> Result<()> {
        if let Some(b) = slot.block.take() {
            // The number is used up even if sealing fails: the records of a block that could
            // not be sealed must never resolve to the next block, which would reuse it.
            let seq = slot.seq;
            slot.seq += 1;
            let (id, _) = b.seal(&self.layout.blocks())?;
            self.record_sealed(seq, id);
        }
        Ok(())
    }

    fn record_sealed(&self, seq: u32, id: BlockId) {
        let mut s = self.lock_session();
        let seq = seq as usize;
        if s.sealed.len() <= seq {
            s.sealed.resize(seq + 1, None);
        }
        s.sealed[seq] = Some(id);
    }

    /// Seals a full block on a thread of its own ([`Writer::join_sealing`] collects it), or
    /// here when no thread can be had; then waits for the oldest sealing if too many are.
    fn seal_in_background(&self, seq: u32, block: OpenBlock) -> Result<()> {
        let dir = self.layout.blocks();
        // Shared so that the block is still ours if the thread cannot be started.
        let cell = std::sync::Arc::new(Mutex::new(Some(block)));
        let theirs = cell.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("asl-seal-{seq}"))
            .spawn(move || {
                let block = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
                match block {
                    Some(b) => b.seal(&dir).map(|(id, _)| id),
                    None => Err(StoreError::corrupt("open block", "sealed twice")),
                }
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(_) => {
                let block = cell.lock().unwrap_or_else(|p| p.into_inner()).take();
                let b = block.ok_or_else(|| StoreError::corrupt("open block", "vanished"))?;
                let (id, _) = b.seal(&self.layout.blocks())?;
                self.record_sealed(seq, id);
                return Ok(());
            }
        };
        let oldest = {
            let mut sealing = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
            sealing.push((seq, handle));
            (sealing.len() > MAX_SEALING).then(|| sealing.remove(0))
        };
        match oldest {
            Some(s) => self.finish_sealing(s),
            None => Ok(()),
        }
    }

    fn finish_sealing(&self, (seq, handle): Sealing) -> Result<()> {
        let id = handle
            .join()
            .map_err(|_| StoreError::corrupt("open block", "the sealing thread panicked"))??;
        self.record_sealed(seq, id);
        Ok(())
    }

    /// Waits for every block sealing in the background; the first failure is returned.
    fn join_sealing(&self) -> Result<()> {
        let all = std::mem::take(&mut *self.sealing.lock().unwrap_or_else(|p| p.into_inner()));
        let mut first = Ok(());
        for s in all {
            if let Err(e) = self.finish_sealing(s)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    fn chunk_params(&self) -> (usize, usize, usize, u64, u64) {
        let c = &self.config.chunker;
        let level = match c.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = select_masks(c.avg_size as usize, level);
        (
            c.min_size as usize,
            c.avg_size as usize,
            c.max_size as usize,
            mask_s,
            mask_l,
        )
    }

    /// The length of the first chunk of `data` (all of it when it is short).
    fn cut_point(&self, data: &[u8]) -> usize {
        let (min, avg, max, ms, ml) = self.chunk_params();
        cut(data, min, avg, max, ms, ml, ms << 1, ml << 1).1
    }

    /// Stores an artifact given as a sequence of chunks; `next` yields them in order.
    ///
    /// The type tag belongs to the artifact: a single-chunk artifact's one record carries
    /// it, while the chunks of a composite artifact are plain bytes and the tag goes on its
    /// part list. Whether there is a second chunk is only known once it arrives, so the
    /// first chunk is held back (copied, at most `max_size` bytes) until then.
    fn put_chunks(
        &self,
        tag: TypeTag,
        mut next: impl FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool, AccessError>,
    ) -> Result<Put, AccessError> {
        let mut whole = self.algo.hasher();
        let mut tally = Tally::default();
        let mut held: Option<Vec<u8>> = None;
        let mut total = 0u64;
        loop {
            let mut on_chunk = |chunk: &[u8]| -> Result<()> {
                whole.update(chunk);
                total += chunk.len() as u64;
                if tally.parts.is_empty() && held.is_none() {
                    held = Some(chunk.to_vec());
                    return Ok(());
                }
                if let Some(first) = held.take() {
                    let r = self.store_chunk(&first, TypeTag::BYTES)?;
                    tally.add(&first, r);
                }
                let r = self.store_chunk(chunk, TypeTag::BYTES)?;
                tally.add(chunk, r);
                Ok(())
            };
            if !next(&mut on_chunk)? {
                break;
            }
        }
        let reference = whole.finish();
        if tally.parts.is_empty() {
            // Zero or one chunk: the artifact is that chunk (the empty artifact is stored as
            // one empty chunk); its hash is the whole artifact's, already computed.
            let only = held.take().unwrap_or_default();
            return self.put_one(reference, &only, tag).map_err(store_err);
        }
        self.put_part_list(reference, tally, total, tag)
    }

    /// Stores a composite artifact's part list, its chunks being stored already.
    fn put_part_list(
        &self,
        reference: Reference,
        tally: Tally,
        total: u64,
        tag: TypeTag,
    ) -> Result<Put, AccessError> {
        let list = PartList {
            total_len: total,
            parts: tally.parts.clone(),
        }
        .encode();
        self.store_record(reference, RecordKind::Parts, tag, &list, total)
            .map_err(store_err)?;
        Ok(Put {
            reference,
            len: total,
            new_bytes: tally.new_bytes,
            chunks: tally.parts.len() as u32,
            new_chunks: tally.new_chunks,
        })
    }

    /// Stores a large in-memory artifact on two cores: the cut points are found first (the
    /// chunker is sequential by nature) while another thread hashes the whole artifact, then
    /// each half of the chunks is hashed, compressed and stored on its own thread. The
    /// records are those of the sequential path; only their order within the block may
    /// differ.
    ///
    /// Why: a capture's receipt of a file-heavy command is several MB of JSON, stored after
    /// the command has ended, on the capture's critical path, when the cores are free.
    fn put_bytes_on_two_cores(&self, data: &[u8], tag: TypeTag) -> Result<Put, AccessError> {
        let store_all = |part: &[&[u8]]| -> Result<Vec<(Reference, bool)>> {
            part.iter()
                .map(|c| self.store_chunk(c, TypeTag::BYTES))
                .collect()
        };
        let mut chunks = Vec::new();
        let reference = std::thread::scope(|s| {
            let whole = s.spawn(|| self.algo.digest(data));
            let mut rest = data;
            while !rest.is_empty() {
                let n = self.cut_point(rest);
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            whole.join()
        });
        let panicked = || store_err(StoreError::corrupt("writer", "a put thread panicked"));
        let reference = reference.map_err(|_| panicked())?;
        if let [only] = chunks[..] {
            // One chunk (a configured maximum chunk size above this artifact's size): stored
            // as the sequential path stores it, one record carrying the artifact's tag.
            return self.put_one(reference, only, tag).map_err(store_err);
        }
        let (first, second) = chunks.split_at(chunks.len() / 2);
        let (first, second) = std::thread::scope(|s| {
            let other = s.spawn(|| store_all(second));
            (store_all(first), other.join())
        });
        let second = second.map_err(|_| panicked())?;
        let mut tally = Tally::default();
        for (chunk, r) in chunks.iter().zip(
            first
                .map_err(store_err)?
                .into_iter()
                .chain(second.map_err(store_err)?),
        ) {
            tally.add(chunk, r);
        }
        self.put_part_list(reference, tally, data.len() as u64, tag)
    }

    /// Stores a one-chunk artifact whose hash is `reference`: one chunk record carrying the
    /// artifact's type tag.
    fn put_one(&self, reference: Reference, data: &[u8], tag: TypeTag) -> Result<Put> {
        let new = self.store_record(reference, RecordKind::Chunk, tag, data, data.len() as u64)?;
        Ok(Put::one_chunk(reference, data.len() as u64, new))
    }

    /// Commits everything put so far as a new snapshot.
    pub fn commit(&mut self, root: Option<Reference>, meta: SnapshotMeta) -> Result<Commit> {
        {
            let mut slot = self.block.lock().unwrap_or_else(|p| p.into_inner());
            let last = self.seal_block(&mut slot);
            let joined = self.join_sealing();
            last?;
            joined?;
            slot.seq = 0;
        }
        let session = std::mem::take(&mut *self.lock_session());
        let mut records = Vec::with_capacity(session.pending.len());
        for (digest, p) in &session.pending {
            let p = p.ok_or_else(|| {
                StoreError::corrupt("writer session", "a put was still running at commit")
            })?;
            let block = session
                .sealed
                .get(p.block_seq as usize)
                .copied()
                .flatten()
                .ok_or_else(|| {
                    StoreError::corrupt("writer session", "record in an unsealed block")
                })?;
            records.push((
                block,
                IndexRecord {
                    reference: Reference::new(self.algo, *digest),
                    kind: p.kind,
                    codec: p.codec,
                    visibility: Visibility::Internal,
                    domain_id: self.config.domain_id,
                    type_tag: p.type_tag,
                    block_index: 0,
                    stored_len: p.stored_len,
                    raw_len: p.raw_len,
                    block_offset: p.offset,
                    artifact_len: p.artifact_len,
                    visible_since: 0,
                },
            ));
        }
        let new_records = records.len() as u64;
        // Small segments folded into this commit's own (crate::merge): only when there are
        // new entries, so that a commit of nothing stays a log append.
        let (entries, merged) = if records.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.entries_to_merge(&crate::merge::plan(
                &self.state.segments,
                &self.state.damaged_segments,
            ))
        };
        // Stable sort in Segment::build: the new entries (visible from this commit) come
        // after the older ones they might repeat.
        records.splice(0..0, entries);
        let flags = if merged.is_empty() {
            0
        } else {
            segment::FLAG_COMPACTED
        };
        let mut events = Vec::new();
        let mut segment = None;
        if !records.is_empty() {
            let id = self.state.max_segment_id + 1;
            let seg = Segment::build(id, self.config.domain_id, flags, records);
            let checksum = self.write_segment(&seg)?;
            events.push(if merged.is_empty() {
                Event::SegmentSeal {
                    segment_id: id,
                    record_count: seg.records.len() as u64,
                    checksum,
                }
            } else {
                Event::GcCommit {
                    segment_id: id,
                    record_count: seg.records.len() as u64,
                    checksum,
                    retired: merged.clone(),
                    deleted_blocks: Vec::new(),
                }
            });
            segment = Some(seg);
        }
        let snapshot_id = self.state.max_snapshot_id + 1;
        let meta_json = serde_json::to_vec(&meta).unwrap_or_default();
        events.push(Event::Snapshot {
            snapshot_id,
            root,
            meta: meta_json,
        });
        let seqs = self.append(&events)?;
        // The log is durable: update the in-memory state to match it.
        if let Some(seg) = &segment {
            // The retired files stay until the next writer opens the store (crate::merge).
            for id in &merged {
                self.state.segments.remove(id);
                self.state.retired_segments.insert(*id);
            }
            self.state.max_segment_id = seg.segment_id;
            self.state.segments.insert(
                seg.segment_id,
                crate::state::SegmentInfo {
                    segment_id: seg.segment_id,
                    sealed_at: seqs[0],
                    record_count: seg.records.len() as u64,
                    checksum: match &events[0] {
                        Event::SegmentSeal { checksum, .. } | Event::GcCommit { checksum, .. } => {
                            *checksum
                        }
                        _ => [0; 32],
                    },
                },
            );
            self.state.add_segment(seg, seqs[0]);
        }
        let snapshot = Snapshot {
            id: snapshot_id,
            logseq: *seqs.last().unwrap_or(&0),
            root,
            meta,
        };
        self.state.max_snapshot_id = snapshot_id;
        self.state.snapshots.insert(snapshot_id, snapshot.clone());
        Ok(Commit {
            snapshot,
            segment_id: segment.map(|s| s.segment_id),
            new_records,
            new_raw_bytes: session.new_raw_bytes,
            new_stored_bytes: session.new_stored_bytes,
        })
    }

    /// Writes a segment file durably under its sealed name; returns its checksum.
    pub(crate) fn write_segment(&self, seg: &Segment) -> Result<[u8; 32]> {
        let (bytes, checksum) = seg.encode();
        let tmp = self
            .layout
            .segments_open()
            .join(format!("{:016x}.tmp", seg.segment_id));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).at(&tmp)?;
            f.write_all(&bytes).at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        let dest = self
            .layout
            .segments()
            .join(segment::file_name(seg.segment_id));
        std::fs::rename(&tmp, &dest).at(&dest)?;
        crate::fsutil::sync_dir(&self.layout.segments())?;
        Ok(checksum)
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

    /// Marks a snapshot as no longer retained (its data goes at the next GC).
    pub fn forget(&mut self, snapshot_id: u64) -> Result<()> {
        if !self.state.snapshots.contains_key(&snapshot_id) {
            return Err(StoreError::NoSuchSnapshot(snapshot_id.to_string()));
        }
        self.append(&[Event::SnapshotForget { snapshot_id }])?;
        self.state.snapshots.remove(&snapshot_id);
        self.state.forgotten.insert(snapshot_id);
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
        let event = if hide {
            Event::Tombstone {
                domain_id,
                reference,
            }
        } else {
            Event::TombstoneLift {
                domain_id,
                reference,
            }
        };
        let seqs = self.append(&[event])?;
        self.state
            .tombstones
            .entry(*reference.digest())
            .or_default()
            .push((seqs[0], domain_id, hide));
        Ok(())
    }

    /// Replays the log again (after GC rewrote the index).
    pub(crate) fn reload(&mut self) -> Result<()> {
        let scan = log::read(&self.layout.log())?;
        self.state = State::replay(&self.layout.segments(), self.algo, &scan)?;
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

/// From this size on, `put_bytes` stores the chunks on two threads: about four chunks at the
/// default chunk sizes, so that each thread has work worth its start.
const PARALLEL_PUT_MIN: usize = 2 << 20;

/// The chunks of one artifact as they are stored: its part list and what was new.
#[derive(Default)]
struct Tally {
    parts: Vec<(u32, [u8; 32])>,
    new_bytes: u64,
    new_chunks: u32,
}

impl Tally {
    fn add(&mut self, chunk: &[u8], (r, new): (Reference, bool)) {
        if new {
            self.new_bytes += chunk.len() as u64;
            self.new_chunks += 1;
        }
        self.parts.push((chunk.len() as u32, *r.digest()));
    }
}

/// Whether `raw` is already compressed (or random) so that zstd would only spend time on it:
/// the order-0 entropy of a sample of its bytes is within a hair of 8 bits per byte.
///
/// Why: a fifth of a typical /usr is gzip, PNG or other compressed data, which zstd scans at
/// full cost to save ~0.4 %. Order-0 entropy cannot see repeats, so data made of repeated
/// random blocks would be stored raw; within one chunk that is rare, and the record stays
/// correct either way (the codec is per record).
fn looks_incompressible(raw: &[u8]) -> bool {
    // Below 1 KiB a sample says too little, and zstd's attempt is cheap anyway.
    const MIN: usize = 1024;
    // Above 64 KiB zstd still finds ~0.7 % in gzip files (their headers and stored blocks;
    // measured on /usr/share), and a large record's one attempt costs little next to the many
    // small ones this check saves.
    const MAX: usize = 64 * 1024;
    // Four windows spread over the record: a header or a stored tail does not decide alone.
    const WINDOW: usize = 2048;
    if !(MIN..=MAX).contains(&raw.len()) {
        return false;
    }
    let mut counts = [0u32; 256];
    let mut n = 0usize;
    if raw.len() <= 4 * WINDOW {
        for &b in raw {
            counts[b as usize] += 1;
        }
        n = raw.len();
    } else {
        let step = (raw.len() - WINDOW) / 3;
        for w in 0..4 {
            for &b in &raw[w * step..w * step + WINDOW] {
                counts[b as usize] += 1;
            }
            n += WINDOW;
        }
    }
    // H = log2(n) - sum(c log2 c) / n, with c log2 c from a table (n <= 4 windows).
    static C_LOG2_C: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = C_LOG2_C.get_or_init(|| {
        (0..=4 * WINDOW)
            .map(|c| {
                if c == 0 {
                    0.0
                } else {
                    c as f64 * (c as f64).log2()
                }
            })
            .collect()
    });
    let total = n as f64;
    let sum: f64 = counts.iter().map(|&c| table[c as usize]).sum();
    let entropy = total.log2() - sum / total;
    // A sample of n uniformly random bytes falls short of 8 bits by about 255 / (2 n ln 2)
    // (the estimator's bias); allow that plus a margin for gzip's headers and tables.
    let expected_random = 8.0 - 255.0 / (2.0 * total * std::f64::consts::LN_2);
    entropy > expected_random - 0.03
}

fn store_err(e: StoreError) -> AccessError {
    AccessError::Store(Box::new(e))
}

impl ArtifactWrite for Writer {
    fn algo(&self) -> HashAlgo {
        self.algo
    }

    fn put_bytes(&self, data: &[u8], tag: TypeTag) -> Result<Put, AccessError> {
        if data.len() <= self.config.chunker.min_size as usize {
            // One chunk for certain (most files): hashed once, stored without a copy.
            return self
                .put_one(self.algo.digest(data), data, tag)
                .map_err(store_err);
        }
        if data.len() >= PARALLEL_PUT_MIN {
            return self.put_bytes_on_two_cores(data, tag);
        }
        let mut rest = data;
        self.put_chunks(tag, |on_chunk| {
            if rest.is_empty() {
                return Ok(false);
            }
            let n = self.cut_point(rest);
            on_chunk(&rest[..n]).map_err(store_err)?;
            rest = &rest[n..];
            Ok(true)
        })
    }

    fn put_reader(&self, source: &mut dyn Read, tag: TypeTag) -> Result<Put, AccessError> {
        let max = self.config.chunker.max_size as usize;
        // Twice the largest chunk: the unread rest is moved to the front only once at least
        // `max` bytes were consumed, not after every chunk (that memmove showed in profiles).
        let cap = 2 * max;
        CHUNK_BUF.with(|cell| {
            // A nested put on the same thread (none today) would find the buffer borrowed:
            // give it its own.
            let mut own = Vec::new();
            let mut guard = cell.try_borrow_mut().ok();
            let buf: &mut Vec<u8> = match guard.as_deref_mut() {
                Some(b) => b,
                None => &mut own,
            };
            // Grown only as far as the source fills it: a capture's empty stdout would
            // otherwise zero and fault in 4 MiB (~2 ms, a tenth of a small capture's cost).
            if buf.is_empty() {
                buf.resize(FIRST_READ.min(cap), 0);
            }
            // Left by a store with larger chunks: `filled` must stay within `cap`.
            buf.truncate(cap);
            // buf[start..filled] is read and not yet cut.
            let mut start = 0usize;
            let mut filled = 0usize;
            let mut eof = false;
            self.put_chunks(tag, |on_chunk| {
                // Short of a full window, and no room after `filled` for the rest of it.
                if !eof && filled - start < max && cap - filled < max - (filled - start) {
                    buf.copy_within(start..filled, 0);
                    filled -= start;
                    start = 0;
                }
                while !eof && filled - start < max {
                    if filled == buf.len() {
                        let to = (2 * buf.len()).max(FIRST_READ).min(cap);
                        buf.resize(to, 0);
                    }
                    match source.read(&mut buf[filled..]) {
                        Ok(0) => eof = true,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(AccessError::Source(e)),
                    }
                }
                if filled == start {
                    return Ok(false);
                }
                let n = self.cut_point(&buf[start..filled]);
                on_chunk(&buf[start..start + n]).map_err(store_err)?;
                start += n;
                Ok(true)
            })
        })
    }

    fn contains(&self, reference: &Reference) -> bool {
        self.known(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::ArtifactRead;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn a_session_level_changes_stored_bytes_not_references() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of a log, value {}\n", i, i % 97).into_bytes())
            .collect();
        let stored = |level: Option<i32>| {
            let dir = tempfile::tempdir().unwrap();
            let mut w = Writer::open_or_init(&dir.path().join("s"), &Default::default()).unwrap();
            if let Some(l) = level {
                w.set_compression_level(l).unwrap();
            }
            let p = w.put_bytes(&text, TypeTag::BYTES).unwrap();
            let c = w.commit(Some(p.reference), SnapshotMeta::now("t")).unwrap();
            (p.reference, c.new_stored_bytes)
        };
        let (r3, at3) = stored(None);
        let (r1, at1) = stored(Some(1));
        let (r19, at19) = stored(Some(19));
        assert_eq!(r1, r3);
        assert_eq!(r19, r3);
        // Level 1 trades size for speed; 19 searches differently (on this regular text it
        // does not even win). Either way the session level, not the store's, was used.
        assert!(at3 < at1, "levels 3/1 stored {at3}/{at1} bytes");
        assert_ne!(at19, at3, "level 19 stored the same bytes as level 3");
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open_or_init(&dir.path().join("s"), &Default::default()).unwrap();
        assert!(matches!(
            w.set_compression_level(0),
            Err(StoreError::BadCompressionLevel(0))
        ));
        assert!(w.set_compression_level(20).is_err());
    }

    #[test]
    fn compressed_and_random_data_is_not_recompressed() {
        let random = pseudo_random(60_000, 7);
        assert!(looks_incompressible(&random));
        assert!(looks_incompressible(&random[..1500]), "short random record");
        let text: Vec<u8> = b"The quick brown fox jumps over the lazy dog, again and again. "
            .iter()
            .copied()
            .cycle()
            .take(60_000)
            .collect();
        let packed_random = zstd::bulk::compress(&random, 3).unwrap();
        assert!(
            looks_incompressible(&packed_random),
            "zstd output of random data"
        );
        assert!(!looks_incompressible(&text));
        assert!(!looks_incompressible(&[0u8; 60_000]));
        // Six bits of entropy per byte: compressible by a quarter, so it must be tried.
        let b64: Vec<u8> = random
            .iter()
            .map(|b| {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(*b & 63) as usize]
            })
            .collect();
        assert!(!looks_incompressible(&b64));
        // Too short to judge, or large enough that zstd's one attempt is worth it: tried.
        assert!(!looks_incompressible(&random[..1000]));
        assert!(!looks_incompressible(&pseudo_random(300_000, 7)));
        // A compressible stretch in the middle of random data is seen by the sample.
        let mut mixed = random.clone();
        mixed[20_000..50_000].fill(b'a');
        assert!(!looks_incompressible(&mixed));
    }

    /// A store with the small chunks of format version 1's first default (16/64/256 KiB), so
    /// that tests see several chunks in a few hundred KiB.
    fn small_chunks() -> crate::InitOptions {
        crate::InitOptions {
            chunk_sizes: Some((16 * 1024, 64 * 1024, 256 * 1024)),
            ..Default::default()
        }
    }

    /// The cut points of a fixed xorshift stream with `opts`' chunker, checked against
    /// fastcdc's own whole-buffer iterator.
    fn cuts_of_fixed_stream(opts: &crate::InitOptions) -> Vec<usize> {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open_or_init(&dir.path().join("s"), opts).unwrap();
        let data = pseudo_random(8 << 20, 42);
        let mut rest = &data[..];
        let mut cuts = Vec::new();
        while !rest.is_empty() {
            let n = w.cut_point(rest);
            cuts.push(n);
            rest = &rest[n..];
        }
        // Our incremental cutting must agree with fastcdc's own whole-buffer iterator.
        let c = &w.config().chunker;
        let reference: Vec<usize> = fastcdc::v2020::FastCDC::new(
            &data,
            c.min_size as usize,
            c.avg_size as usize,
            c.max_size as usize,
        )
        .map(|c| c.length)
        .collect();
        assert_eq!(cuts, reference);
        cuts
    }

    #[test]
    fn chunk_cut_points_match_the_golden_vectors() {
        // Pinned cut points (normalisation level 1) over a fixed xorshift stream. If these
        // change, every existing store would dedup against different chunks: a chunker
        // upgrade must not pass unnoticed.
        let small = cuts_of_fixed_stream(&small_chunks());
        assert_eq!(
            &small[..GOLDEN_CUTS_SMALL.len()],
            GOLDEN_CUTS_SMALL,
            "FastCDC cut points changed (16/64/256 KiB)"
        );
        let default = cuts_of_fixed_stream(&Default::default());
        assert_eq!(
            default, GOLDEN_CUTS_DEFAULT,
            "FastCDC cut points changed (128/512/2048 KiB)"
        );
    }

    /// The first 2 MiB of the stream with 16/64/256 KiB chunks.
    const GOLDEN_CUTS_SMALL: &[usize] = &[
        34625, 89372, 16949, 119607, 145954, 104697, 106705, 109539, 32775, 82218, 107730, 78326,
        88558, 76689, 70132, 42713, 61604, 119608, 129674, 34152, 76973, 68810, 144286, 67925,
    ];

    /// The whole 8 MiB stream with the default 128/512/2048 KiB chunks.
    const GOLDEN_CUTS_DEFAULT: &[usize] = &[
        727448, 640745, 916484, 644141, 185818, 660464, 618954, 522961, 544348, 263984, 426743,
        528743, 287988, 337800, 773416, 308571,
    ];

    /// A large in-memory artifact, stored on two threads, is the artifact the streaming
    /// (sequential) path stores: same reference, same part list, same chunk records, and it
    /// reads back. A second put of it adds nothing; one that fits one chunk of a store with
    /// larger chunks is one record carrying the tag, as on the sequential path.
    #[test]
    fn two_core_put_stores_what_the_streaming_put_stores() {
        let put = |data: &[u8], bytes: bool, opts: &crate::InitOptions| {
            let dir = tempfile::tempdir().unwrap();
            let mut w = Writer::open_or_init(&dir.path().join("s"), opts).unwrap();
            let p = if bytes {
                w.put_bytes(data, TypeTag::RECEIPT).unwrap()
            } else {
                w.put_reader(&mut &data[..], TypeTag::RECEIPT).unwrap()
            };
            let again = w.put_bytes(data, TypeTag::RECEIPT).unwrap();
            w.commit(Some(p.reference), SnapshotMeta::now("t")).unwrap();
            let r = crate::Store::open(&dir.path().join("s")).unwrap();
            assert_eq!(r.reader().read_all(&p.reference).unwrap(), data);
            let rec = *r.state().lookup(&p.reference, None).unwrap();
            (p, again, rec.kind, rec.type_tag, r.state().index.len())
        };
        let data = pseudo_random(PARALLEL_PUT_MIN + (3 << 20), 5);
        let small = small_chunks();
        let (par, par_again, par_kind, par_tag, par_entries) = put(&data, true, &small);
        let (seq, _, seq_kind, seq_tag, seq_entries) = put(&data, false, &small);
        assert!(par.chunks > 2, "{} chunks", par.chunks);
        assert_eq!(
            (
                par.reference,
                par.len,
                par.chunks,
                par.new_chunks,
                par.new_bytes
            ),
            (
                seq.reference,
                seq.len,
                seq.chunks,
                seq.new_chunks,
                seq.new_bytes
            )
        );
        assert_eq!(
            (par_kind, par_tag, par_entries),
            (seq_kind, seq_tag, seq_entries)
        );
        assert_eq!(par_kind, RecordKind::Parts);
        assert_eq!((par_again.new_chunks, par_again.new_bytes), (0, 0));
        // In a store whose chunks may reach 16 MiB, this one is a single chunk: one record.
        let large = crate::InitOptions {
            chunk_sizes: Some((1 << 20, 4 << 20, 16 << 20)),
            ..Default::default()
        };
        let (one, _, kind, tag, _) = put(&data[..PARALLEL_PUT_MIN], true, &large);
        assert_eq!(
            (one.chunks, kind, tag),
            (1, RecordKind::Chunk, TypeTag::RECEIPT.0)
        );
    }

    /// One thread's read buffer serves stores of any chunk sizes in turn (larger, then
    /// smaller, then between the two and under the buffer's first size).
    #[test]
    fn one_thread_streams_into_stores_of_different_chunk_sizes() {
        let data = pseudo_random(3 << 20, 21);
        for sizes in [
            None,
            Some((1024, 2048, 4096)),
            Some((4096, 8192, 16384)),
            Some((16 * 1024, 64 * 1024, 256 * 1024)),
            Some((1024, 2048, 4096)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let opts = crate::InitOptions {
                chunk_sizes: sizes,
                ..Default::default()
            };
            let w = Writer::open_or_init(&dir.path().join("s"), &opts).unwrap();
            let a = w.put_bytes(&data, TypeTag::BYTES).unwrap();
            let b = w.put_reader(&mut &data[..], TypeTag::BYTES).unwrap();
            assert_eq!(
                (a.reference, a.chunks),
                (b.reference, b.chunks),
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn streaming_and_in_memory_puts_give_the_same_reference_and_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open_or_init(&dir.path().join("s"), &small_chunks()).unwrap();
        let data = pseudo_random(1 << 20, 7);
        let a = w.put_bytes(&data, TypeTag::BYTES).unwrap();
        // A reader that returns odd-sized pieces must not change the chunking.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let b = w.put_reader(&mut Dribble(&data), TypeTag::BYTES).unwrap();
        assert_eq!(a.reference, b.reference);
        assert_eq!(a.reference, HashAlgo::Blake3.digest(&data));
        assert_eq!(a.chunks, b.chunks);
        assert!(a.chunks > 1);
        assert_eq!(b.new_chunks, 0, "the second put must dedup every chunk");
        // Inputs of at most min_size take put_bytes' one-chunk path: same answer as a stream.
        for len in [0usize, 1, 1000, 16 * 1024] {
            let small = pseudo_random(len, 9);
            let a = w.put_bytes(&small, TypeTag::BYTES).unwrap();
            let b = w.put_reader(&mut Dribble(&small), TypeTag::BYTES).unwrap();
            assert_eq!(
                (a.reference, a.chunks, a.len),
                (b.reference, b.chunks, b.len)
            );
            assert_eq!(a.reference, HashAlgo::Blake3.digest(&small));
        }
        // A small stream leaves a thread's read buffer small (not zeroed to two chunks).
        let buffered = std::thread::scope(|s| {
            s.spawn(|| {
                w.put_reader(&mut Dribble(&data[..5000]), TypeTag::BYTES)
                    .unwrap();
                CHUNK_BUF.with(|b| b.borrow().len())
            })
            .join()
            .unwrap()
        });
        assert!(buffered <= FIRST_READ, "{buffered} bytes buffered");
        // Streams longer than the read buffer (twice max_size) are cut as in memory.
        let long = pseudo_random(3 << 20, 13);
        let a = w.put_bytes(&long, TypeTag::BYTES).unwrap();
        let b = w.put_reader(&mut Dribble(&long), TypeTag::BYTES).unwrap();
        assert_eq!((a.reference, a.chunks), (b.reference, b.chunks));
    }

    fn sealed_blocks(path: &Path) -> usize {
        std::fs::read_dir(path.join("blocks"))
            .unwrap()
            .flatten()
            .filter(|d| d.file_name() != "open")
            .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
            .filter(|f| f.path().extension().is_some_and(|e| e == "blk"))
            .count()
    }

    /// 96 incompressible 20 kB artifacts from four threads into 64 KiB blocks: ~32 blocks
    /// sealed by background threads (more than MAX_SEALING at once, so puts also wait for
    /// the oldest); commit waits for all of them and every artifact reads back.
    #[test]
    fn full_blocks_seal_in_the_background_and_commit_waits_for_every_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
        w.config.block_target_size = 1 << 16;
        let data: Vec<Vec<u8>> = (0..96).map(|i| pseudo_random(20_000, 2 * i + 1)).collect();
        let refs: Vec<Reference> = std::thread::scope(|s| {
            let handles: Vec<_> = data
                .chunks(24)
                .map(|part| {
                    let w = &w;
                    s.spawn(move || {
                        part.iter()
                            .map(|d| w.put_bytes(d, TypeTag::BYTES).unwrap().reference)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let c = w.commit(None, SnapshotMeta::now("test")).unwrap();
        assert_eq!(c.new_records, 96);
        assert_eq!(
            std::fs::read_dir(path.join("blocks/open")).unwrap().count(),
            0,
            "every block is sealed at commit"
        );
        assert!(
            sealed_blocks(&path) >= 30,
            "{} blocks",
            sealed_blocks(&path)
        );
        drop(w);
        let s = crate::Store::open(&path).unwrap();
        for (r, d) in refs.iter().zip(&data) {
            assert_eq!(&s.reader().read_all(r).unwrap(), d);
        }
    }

    /// A block that could not be sealed keeps its number: the next block gets a new one, so
    /// the records of the lost block never resolve to it and no later commit indexes them.
    #[test]
    fn a_block_that_fails_to_seal_never_lends_its_records_to_the_next_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
        let a = w
            .put_bytes(&pseudo_random(5_000, 11), TypeTag::BYTES)
            .unwrap();
        // The open block disappears: sealing it (its rename) fails.
        for f in std::fs::read_dir(path.join("blocks/open")).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        assert!(w.commit(None, SnapshotMeta::now("test")).is_err());
        let b = w
            .put_bytes(&pseudo_random(5_000, 13), TypeTag::BYTES)
            .unwrap();
        match w.commit(Some(b.reference), SnapshotMeta::now("test")) {
            Err(e) => assert!(e.to_string().contains("unsealed"), "{e}"),
            Ok(_) => {
                // Had it committed, `a` would have to read back as itself, not as `b`'s bytes.
                drop(w);
                let s = crate::Store::open(&path).unwrap();
                assert_eq!(
                    s.reader().read_all(&a.reference).unwrap(),
                    pseudo_random(5_000, 11)
                );
            }
        }
    }

    /// A writer dropped without a commit has finished its sealing threads when `drop` returns:
    /// only the last, unfinished block is left open.
    #[test]
    fn a_dropped_writer_leaves_no_block_half_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
        w.config.block_target_size = 1 << 16;
        for i in 0..40 {
            w.put_bytes(&pseudo_random(20_000, 2001 + 2 * i), TypeTag::BYTES)
                .unwrap();
        }
        drop(w);
        assert_eq!(
            std::fs::read_dir(path.join("blocks/open")).unwrap().count(),
            1
        );
        assert!(sealed_blocks(&path) >= 12);
    }

    #[test]
    fn committed_artifacts_read_back_and_uncommitted_ones_are_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
        let big = pseudo_random(700_000, 3);
        let p1 = w.put_bytes(b"small artifact", TypeTag::BYTES).unwrap();
        let p2 = w.put_bytes(&big, TypeTag::TREE).unwrap();
        let p3 = w.put_bytes(b"", TypeTag::BYTES).unwrap();
        assert!(
            crate::Store::open(&path)
                .unwrap()
                .reader()
                .artifact_len(&p1.reference)
                .is_none()
        );
        w.commit(Some(p2.reference), SnapshotMeta::now("test"))
            .unwrap();
        let p4 = w.put_bytes(b"not committed", TypeTag::BYTES).unwrap();
        drop(w);
        let s = crate::Store::open(&path).unwrap();
        let r = s.reader();
        assert_eq!(r.read_all(&p1.reference).unwrap(), b"small artifact");
        assert_eq!(r.read_all(&p2.reference).unwrap(), big);
        assert_eq!(r.read_all(&p3.reference).unwrap(), b"");
        assert_eq!(r.type_tag(&p2.reference), Some(TypeTag::TREE.0));
        assert_eq!(r.type_tag(&p1.reference), Some(TypeTag::BYTES.0));
        // The chunks of a typed composite artifact are plain bytes: only the whole is typed.
        let loc = r.locate(&p2.reference).unwrap();
        for (_, d) in r.part_list(loc).unwrap().parts {
            assert_eq!(r.type_tag(&Reference::new(HashAlgo::Blake3, d)), Some(0));
        }
        assert!(r.artifact_len(&p4.reference).is_none());
        assert_eq!(s.snapshots().len(), 1);
    }

    #[test]
    fn a_reader_at_an_older_snapshot_does_not_see_later_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open_or_init(&path, &Default::default()).unwrap();
        let a = w.put_bytes(b"first", TypeTag::BYTES).unwrap();
        w.commit(Some(a.reference), SnapshotMeta::now("t")).unwrap();
        let b = w.put_bytes(b"second", TypeTag::BYTES).unwrap();
        w.commit(Some(b.reference), SnapshotMeta::now("t")).unwrap();
        let s = crate::Store::open(&path).unwrap();
        let first = s.resolve_snapshot("1").unwrap();
        let r = s.reader_at(first);
        assert!(r.artifact_len(&a.reference).is_some());
        assert!(r.artifact_len(&b.reference).is_none());
        assert!(s.reader().artifact_len(&b.reference).is_some());
    }

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

    #[test]
    fn puts_from_many_threads_store_each_chunk_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = Writer::open_or_init(&path, &small_chunks()).unwrap();
        let data = pseudo_random(600_000, 11);
        let puts: Vec<Put> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| w.put_bytes(&data, TypeTag::BYTES).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(puts.iter().all(|p| p.reference == puts[0].reference));
        let total_new: u32 = puts.iter().map(|p| p.new_chunks).sum();
        assert_eq!(total_new, puts[0].chunks, "a chunk was stored twice");
        let c = w
            .commit(Some(puts[0].reference), SnapshotMeta::now("t"))
            .unwrap();
        assert_eq!(c.new_records, u64::from(puts[0].chunks) + 1);
        drop(w);
        let s = crate::Store::open(&path).unwrap();
        assert_eq!(s.reader().read_all(&puts[0].reference).unwrap(), data);
    }
}
