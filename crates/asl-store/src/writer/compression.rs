//! The compression policy of records: zstd at the session's level, unless the record is
//! small, looks incompressible, or would not shrink.

use std::cell::RefCell;

use super::Writer;
use crate::block::Codec;
use crate::error::{Result, StoreError};

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

impl Writer {
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

    /// Compresses `raw` when that saves space.
    pub(super) fn encode(&self, raw: &[u8]) -> Result<(Codec, Vec<u8>)> {
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
}

/// Whether `raw` is already compressed (or random) so that zstd would only spend time on it:
/// the order-0 entropy of a sample of its bytes is within a hair of 8 bits per byte.
///
/// Why: much of a typical /usr is gzip, PNG or other compressed data, which zstd scans at
/// full cost to save next to nothing. Order-0 entropy cannot see repeats, so data made of repeated
/// random blocks would be stored raw; within one chunk that is rare, and the record stays
/// correct either way (the codec is per record).
fn looks_incompressible(raw: &[u8]) -> bool {
    // Below 1 KiB a sample says too little, and zstd's attempt is cheap anyway.
    const MIN: usize = 1024;
    // Above 64 KiB zstd still finds something to save in gzip files (their headers and
    // stored blocks), and a large record's one attempt costs little next to the many small
    // ones this check saves.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{ArtifactWrite, TypeTag};
    use crate::snapshot::SnapshotMeta;
    use crate::writer::test_data::*;

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
}
