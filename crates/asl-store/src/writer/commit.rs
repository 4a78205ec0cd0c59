//! Committing a session: seal its blocks, write its segment, log the snapshot (steps 3 and
//! 4 of the write ordering in [`crate::writer`]).

use super::{Pending, Session, Writer};
use crate::block::BlockId;
use crate::error::{IoContext, Result, StoreError};
use crate::records::Event;
use crate::reference::Reference;
use crate::segment::{self, IndexRecord, Segment, Visibility};
use crate::snapshot::{Snapshot, SnapshotMeta};
use crate::state::SegmentInfo;
use std::io::Write;

/// What a commit did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Commit {
    pub snapshot: Snapshot,
    pub segment_id: Option<u64>,
    pub new_records: u64,
    pub new_raw_bytes: u64,
    pub new_stored_bytes: u64,
}

/// The segment a commit wrote: durable under its sealed name, visible once its log record
/// is appended.
struct NewSegment {
    segment: Segment,
    checksum: [u8; 32],
    /// The small segments folded into it ([`crate::merge`]), retired by its record.
    merged: Vec<u64>,
}

/// A session made durable (step 3), waiting for its log records.
struct SealedSession {
    spilled: Vec<super::spill::Spilled>,
    segment: Option<NewSegment>,
    new_records: u64,
    new_raw_bytes: u64,
    new_stored_bytes: u64,
}

impl SealedSession {
    /// The records that make its segments visible: one `SEGMENT_SEAL` per spilled segment,
    /// in id order, then the last segment's.
    fn seal_events(&self) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .spilled
            .iter()
            .map(|s| Event::SegmentSeal {
                segment_id: s.info.segment_id,
                record_count: s.info.record_count,
                checksum: s.info.checksum,
            })
            .collect();
        events.extend(self.segment.iter().map(NewSegment::seal_event));
        events
    }

    fn last_segment_id(&self) -> Option<u64> {
        match &self.segment {
            Some(s) => Some(s.segment.segment_id),
            None => self.spilled.last().map(|s| s.info.segment_id),
        }
    }
}

impl NewSegment {
    /// The log record that makes the segment visible: `SEGMENT_SEAL`, or `GC_COMMIT` when it
    /// retires the segments merged into it.
    fn seal_event(&self) -> Event {
        let segment_id = self.segment.segment_id;
        let record_count = self.segment.records.len() as u64;
        if self.merged.is_empty() {
            Event::SegmentSeal {
                segment_id,
                record_count,
                checksum: self.checksum,
            }
        } else {
            Event::GcCommit {
                segment_id,
                record_count,
                checksum: self.checksum,
                retired: self.merged.clone(),
                deleted_blocks: Vec::new(),
            }
        }
    }
}

impl Writer {
    /// Commits everything put so far as a new snapshot, in the write ordering of
    /// [`crate::writer`]: blocks sealed, then the segment written, then one log append.
    pub fn commit(&mut self, root: Option<Reference>, meta: SnapshotMeta) -> Result<Commit> {
        // Encoded before anything is sealed or written: metadata that cannot be logged fails
        // the commit with the session intact, rather than committing empty metadata.
        let snapshot_id = self.state.max_snapshot_id + 1;
        let meta_json = encode_meta(snapshot_id, &meta)?;
        // Step 3: every block sealed, then the index entries as a segment.
        let sealed = self.seal_session()?;
        // Step 4: one log append makes the segments and the snapshot visible.
        let mut events = sealed.seal_events();
        events.push(Event::Snapshot {
            snapshot_id,
            root,
            meta: meta_json,
        });
        let seqs = self.append(&events)?;
        // The log is durable: update the in-memory state to match it.
        let (new_records, segment_id) = (sealed.new_records, sealed.last_segment_id());
        let (new_raw_bytes, new_stored_bytes) = (sealed.new_raw_bytes, sealed.new_stored_bytes);
        self.add_sealed_session(sealed, &seqs);
        let snapshot = Snapshot {
            id: snapshot_id,
            logseq: *seqs.last().unwrap_or(&0),
            root,
            meta,
        };
        self.state.max_snapshot_id = snapshot_id;
        self.state.snapshots.insert(snapshot_id, snapshot.clone());
        self.checkpoint_if_due();
        Ok(Commit {
            snapshot,
            segment_id,
            new_records,
            new_raw_bytes,
            new_stored_bytes,
        })
    }

    /// Makes everything put so far durable and visible in CURRENT, without a snapshot:
    /// blocks sealed, one segment written, one `SEGMENT_SEAL` (or merging `GC_COMMIT`)
    /// appended. Returns the number of new index entries (0: nothing was written).
    ///
    /// A server acknowledges an upload only after this, so that what a client was told is
    /// stored survives the server's crash. No snapshot reaches the entries until one whose
    /// tree does is committed; GC drops them if none ever does.
    pub fn flush(&mut self) -> Result<u64> {
        let sealed = self.seal_session()?;
        let events = sealed.seal_events();
        if events.is_empty() {
            return Ok(0);
        }
        let new_records = sealed.new_records;
        let seqs = self.append(&events)?;
        self.add_sealed_session(sealed, &seqs);
        self.checkpoint_if_due();
        Ok(new_records)
    }

    /// Step 3 for the whole session: its blocks sealed, its remaining entries written as a
    /// segment after those it spilled. Refused when a spill failed.
    fn seal_session(&mut self) -> Result<SealedSession> {
        self.seal_session_blocks()?;
        let session = std::mem::take(&mut *self.lock_session());
        let spilled = std::mem::take(&mut *self.spilled.write().unwrap_or_else(|p| p.into_inner()));
        if let Some(why) = &session.failed {
            return Err(StoreError::internal(
                "writer session",
                format!("entries spilled to a segment were lost ({why}); put them again"),
            ));
        }
        let records = self.session_records(&session)?;
        let new_records =
            records.len() as u64 + spilled.iter().map(|s| s.info.record_count).sum::<u64>();
        let first_id = self.state.max_segment_id + 1 + spilled.len() as u64;
        let segment = self.write_commit_segment(records, first_id)?;
        Ok(SealedSession {
            spilled,
            segment,
            new_records,
            new_raw_bytes: session.new_raw_bytes,
            new_stored_bytes: session.new_stored_bytes,
        })
    }

    /// Brings the in-memory state in line with the log once the records of
    /// [`SealedSession::seal_events`] are appended at `seqs` (in that order).
    fn add_sealed_session(&mut self, sealed: SealedSession, seqs: &[u64]) {
        let n = sealed.spilled.len();
        for (s, seq) in sealed.spilled.into_iter().zip(seqs) {
            let info = SegmentInfo {
                sealed_at: *seq,
                ..s.info
            };
            self.state.add_sealed_segment(info);
            self.state.add_run(s.run, info.sealed_at);
        }
        if let (Some(new), Some(seq)) = (&sealed.segment, seqs.get(n)) {
            self.add_committed_segment(new, *seq);
        }
    }

    /// Seals the open block and waits for every block sealing in the background; the next
    /// session numbers its blocks from 0 again.
    fn seal_session_blocks(&self) -> Result<()> {
        let mut slot = self.block.lock().unwrap_or_else(|p| p.into_inner());
        let last = self.seal_block(&mut slot);
        let joined = self.join_sealing();
        last?;
        joined?;
        slot.seq = 0;
        Ok(())
    }

    /// The index entries of the records `session` wrote, each in the block it was sealed in.
    fn session_records(&self, session: &Session) -> Result<Vec<(BlockId, IndexRecord)>> {
        let mut records = Vec::with_capacity(session.pending.len());
        for (digest, p) in &session.pending {
            let p = p.as_ref().ok_or_else(|| {
                StoreError::internal("writer session", "a put was still running at commit")
            })?;
            let block = session
                .sealed
                .get(p.block_seq as usize)
                .copied()
                .flatten()
                .ok_or_else(|| {
                    StoreError::internal("writer session", "record in an unsealed block")
                })?;
            records.push((block, self.index_record(digest, p)));
        }
        Ok(records)
    }

    /// The index entry of a pending record (its block index is filled in by
    /// [`Segment::build`]).
    pub(super) fn index_record(&self, digest: &[u8; 32], p: &Pending) -> IndexRecord {
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
        }
    }

    /// Writes the commit's segment: the new entries plus those of the small segments merged
    /// in. `None` when there are no new entries, so that a commit of nothing stays a log
    /// append (and merges nothing).
    fn write_commit_segment(
        &self,
        mut records: Vec<(BlockId, IndexRecord)>,
        id: u64,
    ) -> Result<Option<NewSegment>> {
        if records.is_empty() {
            return Ok(None);
        }
        let (entries, merged) = self.entries_to_merge(&crate::merge::plan(
            &self.state.segments,
            &self.state.damaged_segments,
        ));
        // Stable sort in Segment::build: the new entries (visible from this commit) come
        // after the older ones they might repeat.
        records.splice(0..0, entries);
        let flags = if merged.is_empty() {
            0
        } else {
            segment::FLAG_COMPACTED
        };
        let segment = Segment::build(id, self.config.domain_id, flags, records);
        let checksum = self.write_segment(&segment)?;
        Ok(Some(NewSegment {
            segment,
            checksum,
            merged,
        }))
    }

    /// Brings the in-memory state in line with a logged segment record at `sealed_at`.
    fn add_committed_segment(&mut self, new: &NewSegment, sealed_at: u64) {
        let seg = &new.segment;
        // The retired files stay until the next writer opens the store (crate::merge).
        for id in &new.merged {
            self.state.segments.remove(id);
            self.state.retired_segments.insert(*id);
        }
        let info = SegmentInfo {
            segment_id: seg.segment_id,
            sealed_at,
            record_count: seg.records.len() as u64,
            checksum: new.checksum,
        };
        self.state.add_sealed_segment(info);
        self.index_segment(seg, &info);
    }

    /// Adds a logged segment's entries to the index: as its run when it is large enough for
    /// one and the run could be written, else in memory.
    pub(crate) fn index_segment(&mut self, seg: &Segment, info: &SegmentInfo) {
        let storage = self.layout.storage();
        if storage.cheap_random_reads()
            && info.record_count >= self.run_min_records
            && crate::index::run::can_index(seg, self.algo)
        {
            // A cache: when it cannot be written the entries are held in memory instead.
            if let Ok(run) = crate::index::run::build(&self.layout, seg, info) {
                self.state.add_run(run, info.sealed_at);
                return;
            }
        }
        self.state.add_segment(seg, info.sealed_at);
    }

    /// Writes a segment file durably under its sealed name; returns its checksum.
    pub(crate) fn write_segment(&self, seg: &Segment) -> Result<[u8; 32]> {
        let (bytes, checksum) = seg.encode();
        let tmp = self
            .layout
            .segments_open()
            .join(format!("{:016x}.tmp", seg.segment_id));
        let storage = self.layout.storage();
        {
            let mut f = storage.create(&tmp).at(&tmp)?;
            f.write_all(&bytes).at(&tmp)?;
            f.sync().at(&tmp)?;
        }
        let dir = self.layout.segments();
        let dest = dir.join(segment::file_name(seg.segment_id));
        storage.rename(&tmp, &dest).at(&dest)?;
        storage.sync_dir(&dir).at(&dir)?;
        Ok(checksum)
    }
}

/// The JSON of a SNAPSHOT record's metadata. `SnapshotMeta` holds only strings and a JSON
/// value, which always encode; the error is returned rather than assumed away all the same.
fn encode_meta(snapshot_id: u64, meta: &SnapshotMeta) -> Result<Vec<u8>> {
    serde_json::to_vec(meta).map_err(|source| StoreError::SnapshotMetaEncoding {
        snapshot_id,
        label: meta.label.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{ArtifactRead, ArtifactWrite, TypeTag};
    use crate::reference::HashAlgo;
    use crate::writer::test_data::*;

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
        for (_, d) in r.part_list(&loc).unwrap().parts {
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

    /// `SnapshotMeta` cannot fail to encode, so the failure itself cannot be provoked; what
    /// is checked is that the error it would give names the snapshot and its label.
    #[test]
    fn a_metadata_encoding_error_names_the_snapshot_and_its_label() {
        let source = serde_json::from_str::<u8>("x").unwrap_err();
        let e = StoreError::SnapshotMetaEncoding {
            snapshot_id: 7,
            label: Some("nightly".into()),
            source,
        };
        let text = e.to_string();
        assert!(text.starts_with("snapshot 7 ('nightly'): "), "{text}");
        assert!(!e.is_integrity());
        let meta = SnapshotMeta::now("test");
        assert_eq!(
            encode_meta(7, &meta).unwrap(),
            serde_json::to_vec(&meta).unwrap()
        );
    }
}
