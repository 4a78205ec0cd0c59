//! Putting an artifact: its chunks stored as records, then either the one chunk carries
//! the artifact's type tag or a part list does; large in-memory artifacts on two cores.

use std::io::Read;

use super::Writer;
use crate::access::{AccessError, ArtifactWrite, Put, TypeTag};
use crate::block::{PartList, RecordKind};
use crate::error::{Result, StoreError};
use crate::reference::{HashAlgo, Reference};

impl Writer {
    /// Stores an artifact given as a sequence of chunks; `next` yields them in order.
    ///
    /// The type tag belongs to the artifact: a single-chunk artifact's one record carries
    /// it, while the chunks of a composite artifact are plain bytes and the tag goes on its
    /// part list. Whether there is a second chunk is only known once it arrives, so the
    /// first chunk is held back (copied, at most `max_size` bytes) until then.
    pub(super) fn put_chunks(
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
        let panicked = || store_err(StoreError::internal("writer", "a put thread panicked"));
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

pub(super) fn store_err(e: StoreError) -> AccessError {
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
        self.put_stream(source, tag)
    }

    fn contains(&self, reference: &Reference) -> bool {
        self.known(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::ArtifactRead;
    use crate::snapshot::SnapshotMeta;
    use crate::writer::test_data::*;

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
            let rec = r.state().lookup(&p.reference, None).unwrap();
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
