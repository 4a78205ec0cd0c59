//! Spilling: a session's index entries written out as segments before its commit, so that
//! the memory of a writer does not grow with the size of what it is putting.
//!
//! Every put adds an entry to the session's map of pending records (about 100 bytes). A
//! first intake of millions of files would hold millions of them until the commit, and the
//! commit would then build one segment of all of them. Instead, once [`SPILL_RECORDS`]
//! entries are pending, the put that crossed the mark writes those whose blocks are sealed
//! as a segment of their own (durably, under its sealed name) and its index run, and keeps
//! only the run open to answer "is this digest stored already?".
//!
//! A spilled segment is invisible until the commit appends its `SEGMENT_SEAL` (before the
//! commit's own segment and its `SNAPSHOT`, in the same append). A crash before that leaves
//! a segment file no record names, which the next writer removes like any unsealed segment.
//! Spilling needs runs (a lookup must not load the segment back); on storage without cheap
//! random reads nothing is spilled.

use super::Writer;
use crate::block::BlockId;
use crate::error::{Result, StoreError};
use crate::index::Run;
use crate::reference::Reference;
use crate::segment::{IndexRecord, Segment};
use crate::state::SegmentInfo;

/// Pending entries that make a put spill.
pub const SPILL_RECORDS: usize = 1 << 18;

/// A segment written by a spill, sealed by the next commit.
#[derive(Debug)]
pub(super) struct Spilled {
    pub info: SegmentInfo,
    pub run: Run,
}

impl Writer {
    /// Whether a spilled segment of this session holds `reference`.
    pub(super) fn spilled_holds(&self, reference: &Reference) -> bool {
        let spilled = self.spilled.read().unwrap_or_else(|p| p.into_inner());
        spilled
            .iter()
            .any(|s| matches!(s.run.get(reference.digest()), Ok(Some(_))))
    }

    /// Refuses `operation` (GC, reindex) while this session has spilled segments: those
    /// would see the segments as unreferenced files, and write one with a colliding id.
    pub(crate) fn refuse_if_spilled(&self, operation: &'static str) -> Result<()> {
        let segments = self.spilled.read().unwrap_or_else(|p| p.into_inner()).len();
        if segments == 0 {
            return Ok(());
        }
        Err(StoreError::SessionSpilled {
            operation,
            segments,
        })
    }

    /// Spills the pending entries whose blocks are sealed, when there are enough of them and
    /// no other put is spilling. The entries leave the pending map here; if writing them
    /// fails, the session is marked failed and its commit refused.
    pub(super) fn spill_if_due(&self) -> Result<()> {
        if self.spill_records == usize::MAX {
            return Ok(());
        }
        let (id, records) = {
            let mut s = self.lock_session();
            if s.spilling || s.pending.len() < self.spill_records.max(s.spill_retry_at) {
                return Ok(());
            }
            let mut taken: Vec<([u8; 32], super::Pending, BlockId)> = Vec::new();
            let sealed = std::mem::take(&mut s.sealed);
            s.pending.retain(|digest, p| {
                let Some(p) = p else { return true };
                let Some(Some(block)) = sealed.get(p.block_seq as usize) else {
                    return true;
                };
                taken.push((*digest, *p, *block));
                false
            });
            s.sealed = sealed;
            // Too few of them are in sealed blocks yet (blocks of tiny records still being
            // sealed): they go back, and the next look is a quarter of the mark later, so
            // that puts do not scan the whole map one after the other.
            if taken.len() < self.spill_records / 4 {
                for (digest, p, _) in taken {
                    s.pending.insert(digest, Some(p));
                }
                s.spill_retry_at = s.pending.len() + self.spill_records / 4;
                return Ok(());
            }
            let records: Vec<(BlockId, IndexRecord)> = taken
                .iter()
                .map(|(digest, p, block)| (*block, self.index_record(digest, p)))
                .collect();
            drop(taken);
            s.spilling = true;
            let spilled = self.spilled.read().unwrap_or_else(|p| p.into_inner()).len();
            (self.state.max_segment_id + 1 + spilled as u64, records)
        };
        let written = self.write_spill(id, records);
        let mut s = self.lock_session();
        s.spilling = false;
        match written {
            Ok(spilled) => {
                self.spilled
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(spilled);
                Ok(())
            }
            Err(e) => {
                s.failed.get_or_insert_with(|| e.to_string());
                Err(e)
            }
        }
    }

    fn write_spill(&self, id: u64, records: Vec<(BlockId, IndexRecord)>) -> Result<Spilled> {
        let segment = Segment::build(id, self.config.domain_id, 0, records);
        let checksum = self.write_segment(&segment)?;
        let info = SegmentInfo {
            segment_id: id,
            sealed_at: 0,
            record_count: segment.records.len() as u64,
            checksum,
        };
        let run = crate::index::run::build(&self.layout, &segment, &info).map_err(|e| {
            let path = crate::index::run::path(&self.layout.index_runs(), id);
            match e {
                // A full disk, say: named as any other write of the store is.
                crate::index::run::RunError::Io(e) => StoreError::io(path, e),
                e => StoreError::internal(format!("index run {}", path.display()), e.to_string()),
            }
        })?;
        Ok(Spilled { info, run })
    }
}

#[cfg(test)]
mod tests {
    use crate::access::{ArtifactRead, ArtifactWrite, TypeTag};
    use crate::snapshot::SnapshotMeta;
    use crate::{Store, Writer};

    /// A writer that spills every 40 pending entries, with blocks of a few records sealed as
    /// soon as they fill, so that there are sealed ones to spill.
    fn spilling_writer(path: &std::path::Path) -> Writer {
        let mut w = Writer::open_or_init(path, &Default::default()).unwrap();
        w.set_background_sealing(false);
        w.config.block_target_size = 2000;
        w.set_spill_records(40);
        w
    }

    fn artifact(i: u32) -> Vec<u8> {
        format!("artifact {i} {}", "y".repeat(i as usize % 200)).into_bytes()
    }

    /// A session of many puts never holds more than the spill mark (and a few unsealed
    /// blocks' worth) of pending entries; its commit seals every spilled segment before its
    /// own, and what it put reads back, through the runs and through a full replay alike.
    #[test]
    fn a_long_session_spills_and_its_commit_seals_every_spilled_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = spilling_writer(&path);
        let mut refs = Vec::new();
        let mut most_pending = 0;
        for i in 0..600 {
            refs.push(w.put_bytes(&artifact(i), TypeTag::BYTES).unwrap().reference);
            most_pending = most_pending.max(w.lock_session().pending.len());
        }
        let spilled = w.spilled.read().unwrap().len();
        assert!(spilled >= 5, "{spilled} spills");
        assert!(most_pending < 80, "{most_pending} entries pending at most");
        // A put of something spilled is a duplicate, not a new record.
        let again = w.put_bytes(&artifact(3), TypeTag::BYTES).unwrap();
        assert_eq!(again.new_chunks, 0);
        let c = w.commit(Some(refs[0]), SnapshotMeta::now("t")).unwrap();
        assert_eq!(c.new_records, 600);
        assert_eq!(w.segments().count(), spilled + 1);
        drop(w);
        let s = Store::open(&path).unwrap();
        assert!(s.state().index.run_segments().count() >= spilled);
        let full = Store::open_replaying_whole_log_in(crate::Layout::new(&path)).unwrap();
        assert_eq!(full.state().index.run_segments().count(), 0);
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(s.reader().read_all(r).unwrap(), artifact(i as u32));
            assert_eq!(full.reader().read_all(r).unwrap(), artifact(i as u32));
        }
        assert_eq!(s.state().index.len(), 600);
        assert_eq!(full.state().index.len(), 600);
    }

    /// GC and reindex refuse to run over a session's spilled segments, which they would
    /// take for unreferenced files; once the session is committed they run.
    #[test]
    fn gc_refuses_while_the_session_has_spilled_segments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut w = spilling_writer(&path);
        let refs: Vec<_> = (0..200)
            .map(|i| w.put_bytes(&artifact(i), TypeTag::BYTES).unwrap().reference)
            .collect();
        let no_children = |_: TypeTag, _: &[u8]| Ok(Vec::new());
        let e = w.gc(&Default::default(), &no_children).unwrap_err();
        assert!(matches!(e, crate::StoreError::SessionSpilled { .. }), "{e}");
        assert!(w.reindex().is_err());
        w.commit(Some(refs[0]), SnapshotMeta::now("t")).unwrap();
        w.gc(&Default::default(), &no_children).unwrap();
        assert_eq!(w.reader().read_all(&refs[0]).unwrap(), artifact(0));
    }

    /// A session that spilled and was dropped without commit leaves segment files and runs
    /// that no record names: the next writer removes them and none of it is visible.
    #[test]
    fn spilled_segments_of_a_session_never_committed_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let w = spilling_writer(&path);
        let mut refs = Vec::new();
        for i in 0..300 {
            refs.push(w.put_bytes(&artifact(i), TypeTag::BYTES).unwrap().reference);
        }
        assert!(!w.spilled.read().unwrap().is_empty());
        drop(w);
        let count = |sub: &str| std::fs::read_dir(path.join(sub)).map_or(0, |d| d.count());
        assert!(count("cache/index") > 0);
        let w = Writer::open(&path).unwrap();
        assert_eq!(w.segments().count(), 0);
        assert_eq!(count("cache/index"), 0);
        assert_eq!(count("segments"), 1, "only segments/open is left");
        assert!(refs.iter().all(|r| w.reader().artifact_len(r).is_none()));
    }
}
