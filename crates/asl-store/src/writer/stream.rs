//! Putting an artifact read from a stream: a per-thread buffer of at most two chunks, grown
//! only as far as the source fills it.

use std::cell::RefCell;
use std::io::Read;

use super::Writer;
use super::put::store_err;
use crate::access::{AccessError, Put, TypeTag};

/// The chunk buffer's first size; it doubles while a source fills it, up to two chunks.
const FIRST_READ: usize = 64 * 1024;

thread_local! {
    static CHUNK_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Writer {
    /// [`ArtifactWrite::put_reader`]: cuts `source` as [`ArtifactWrite::put_bytes`] would
    /// cut the same bytes in memory.
    pub(super) fn put_stream(
        &self,
        source: &mut dyn Read,
        tag: TypeTag,
    ) -> Result<Put, AccessError> {
        let max = self.config.chunker.max_size as usize;
        // Twice the largest chunk: the unread rest is moved to the front only once at least
        // `max` bytes were consumed, not after every chunk (which would copy the rest each time).
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
            // otherwise zero and fault in two whole chunks, a large part of what a small
            // capture costs.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::ArtifactWrite;
    use crate::reference::HashAlgo;
    use crate::writer::test_data::*;

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
}
