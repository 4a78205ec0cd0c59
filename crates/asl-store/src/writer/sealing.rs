//! Sealing full blocks: on threads of their own while puts go on, all of them joined at
//! commit (step 2 of the write ordering in [`crate::writer`]).

use std::sync::Mutex;

use super::{BlockSlot, Writer};
use crate::block::{BlockId, OpenBlock};
use crate::error::{Result, StoreError};

/// A full block being sealed in the background: its session-local number and the thread.
pub(super) type Sealing = (u32, std::thread::JoinHandle<Result<BlockId>>);

/// Blocks that may be sealing at once; a put that fills one more waits for the oldest (only
/// when the disk falls behind the puts).
const MAX_SEALING: usize = 4;

impl Writer {
    /// Seals the open block (if any) and records its id.
    pub(super) fn seal_block(&self, slot: &mut BlockSlot) -> Result<()> {
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

    /// Seals full blocks on the thread that filled them (`false`) or on threads of their
    /// own (`true`, the default). Crash tests turn it off, so that the storage operations of
    /// a writer come in the same order on every run and a crash point can be named by its
    /// number; what reaches the disk before a commit is the same either way.
    pub fn set_background_sealing(&mut self, on: bool) {
        self.background_sealing = on;
    }

    pub(super) fn record_sealed(&self, seq: u32, id: BlockId) {
        let mut s = self.lock_session();
        let seq = seq as usize;
        if s.sealed.len() <= seq {
            s.sealed.resize(seq + 1, None);
        }
        s.sealed[seq] = Some(id);
    }

    /// Seals a full block on a thread of its own ([`Writer::join_sealing`] collects it), or
    /// here when no thread can be had; then waits for the oldest sealing if too many are.
    pub(super) fn seal_in_background(&self, seq: u32, block: OpenBlock) -> Result<()> {
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
                    None => Err(StoreError::internal("open block", "sealed twice")),
                }
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(_) => {
                let block = cell.lock().unwrap_or_else(|p| p.into_inner()).take();
                let b = block.ok_or_else(|| StoreError::internal("open block", "vanished"))?;
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
            .map_err(|_| StoreError::internal("open block", "the sealing thread panicked"))??;
        self.record_sealed(seq, id);
        Ok(())
    }

    /// Waits for every block sealing in the background; the first failure is returned.
    pub(crate) fn join_sealing(&self) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::access::{ArtifactRead, ArtifactWrite, TypeTag};
    use crate::reference::Reference;
    use crate::snapshot::SnapshotMeta;
    use crate::writer::test_data::*;

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
}
