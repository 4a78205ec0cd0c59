//! The append-only log, encoded exactly as ENC-ASL-LOG v1.
//!
//! ```text
//! LogHeader  = magic "ASLLOG01" | version u32 = 1 | header_size u32 = 24 | flags u64 = 0
//! LogRecord  = logseq u64 | record_type u32 | payload_len u32 | payload | record_hash [32]
//! record_hash = SHA-256(prev_record_hash || logseq || record_type || payload_len || payload)
//! ```
//! All integers little-endian; the first record's `prev_record_hash` is 32 zero bytes.
//! `logseq` starts at 1 and increases by one per record.
//!
//! A *torn tail* is what a crash during an append leaves; it is cut off when a writer opens
//! the log. It is recognised as: the last record running past the end of the file; a tail
//! made only of zero bytes; or a last record that fails its checks while everything from a
//! 512-byte sector boundary inside it to the end of the file is zero (the file grew but its
//! last sectors never reached the disk). Anything else that fails the chain is damage and is
//! reported, never silently cut.

use crate::storage::{Storage, WriteFile};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{IoContext, Result, StoreError};

pub const MAGIC: [u8; 8] = *b"ASLLOG01";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 24;
/// Bytes of a record besides its payload: logseq, type, length, hash.
pub const RECORD_OVERHEAD: usize = 8 + 4 + 4 + 32;
/// A payload larger than this is treated as damage (no record type needs more).
pub const MAX_PAYLOAD: u32 = 256 << 20;

/// One decoded log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub logseq: u64,
    pub record_type: u32,
    pub payload: Vec<u8>,
    pub record_hash: [u8; 32],
    /// Byte offset of the record in the log file.
    pub offset: u64,
}

/// Computes a record's chain hash.
pub fn chain_hash(prev: &[u8; 32], logseq: u64, record_type: u32, payload: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(prev);
    h.update(logseq.to_le_bytes());
    h.update(record_type.to_le_bytes());
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

pub fn encode_header() -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    h
}

/// Encodes one record, chained to `prev`; returns the bytes and the new chain hash.
pub fn encode_record(
    prev: &[u8; 32],
    logseq: u64,
    record_type: u32,
    payload: &[u8],
) -> (Vec<u8>, [u8; 32]) {
    let hash = chain_hash(prev, logseq, record_type, payload);
    let mut out = Vec::with_capacity(RECORD_OVERHEAD + payload.len());
    out.extend_from_slice(&logseq.to_le_bytes());
    out.extend_from_slice(&record_type.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&hash);
    (out, hash)
}

/// How a scan of the log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belonged to a valid record.
    Clean,
    /// A crash left an incomplete last record; bytes from `at` on can be cut.
    Torn { at: u64, reason: String },
    /// A record at `at` fails its checks and is followed by more data, or is complete but
    /// wrong: this is damage, not a crash artefact.
    Damaged {
        at: u64,
        logseq: u64,
        reason: String,
    },
}

/// Why a log cannot be scanned at all: its header is wrong. (Damage after the header is not
/// an error of the scan but its [`Tail`].)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogHeaderError {
    #[error("log has only {len} bytes, less than its {HEADER_SIZE}-byte header")]
    TooShort { len: usize },
    #[error("log does not start with magic ASLLOG01")]
    Magic,
    /// A header field holds a value the format does not allow.
    #[error("log header {field} at offset {offset} is {found}: {allowed}")]
    Field {
        field: &'static str,
        offset: u64,
        found: u64,
        allowed: &'static str,
    },
}

/// The result of decoding a log: the whole of it ([`scan`]), or the records after a known
/// one ([`read_after`]).
#[derive(Debug, Clone)]
pub struct Scan {
    /// The logseq of `records[0]`: 1, or the one after the record a tail scan started from.
    pub first_logseq: u64,
    pub records: Vec<LogRecord>,
    /// Length of the valid prefix (header plus intact records).
    pub valid_len: u64,
    /// Chain hash of the last intact record (zeros when there is none).
    pub last_hash: [u8; 32],
    pub tail: Tail,
    /// When the tail is [`Tail::Damaged`]: the records from the damaged one on, as far as
    /// their lengths can still be followed. Neither their hashes nor their logseqs are
    /// checked, so they only say what the damage hides (and what a repair may try to
    /// re-record after checking the data they name); nothing may be replayed from them.
    pub unverified: Vec<LogRecord>,
    /// Bytes at the end of the file that not even the lengths of [`Scan::unverified`] reach
    /// (0 when they reach the end, or when the log is not damaged).
    pub unfollowed: u64,
}

/// Sector size assumed for torn writes: a crash can leave the unsynced sectors of an append
/// reading as zeros, but never part of a sector.
pub const SECTOR: usize = 512;

/// Whether the bytes from some sector boundary strictly inside `(start, end)` to the end of
/// the file are all zero: the signature of an append whose last sectors were lost. `bytes`
/// are the file's from offset `base` to its end; `start` and `end` are offsets in the file.
fn zero_sectors_inside(bytes: &[u8], base: usize, start: usize, end: usize) -> bool {
    let Some(last_nonzero) = bytes.iter().rposition(|&b| b != 0) else {
        return true;
    };
    let zeros_from = (base + last_nonzero + 1).div_ceil(SECTOR) * SECTOR;
    zeros_from > start && zeros_from < end.min(base + bytes.len())
}

/// Decodes a log file's bytes. Never panics, whatever the input.
pub fn scan(bytes: &[u8]) -> std::result::Result<Scan, LogHeaderError> {
    if bytes.len() < HEADER_SIZE {
        return Err(LogHeaderError::TooShort { len: bytes.len() });
    }
    if bytes[..8] != MAGIC {
        return Err(LogHeaderError::Magic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(LogHeaderError::Field {
            field: "version",
            offset: 8,
            found: u64::from(version),
            allowed: "only version 1 is supported",
        });
    }
    let header_size = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default()) as usize;
    if header_size != HEADER_SIZE {
        return Err(LogHeaderError::Field {
            field: "header_size",
            offset: 12,
            found: header_size as u64,
            allowed: "must be 24",
        });
    }
    let flags = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    if flags != 0 {
        return Err(LogHeaderError::Field {
            field: "flags",
            offset: 16,
            found: flags,
            allowed: "must be 0 in version 1",
        });
    }
    Ok(scan_records(bytes, 0, header_size, [0u8; 32], 1))
}

/// Scans the records of `bytes` (a log file's bytes from offset `base` to its end) from file
/// offset `start`, chaining from `prev` and expecting logseq `first`. Never panics.
fn scan_records(bytes: &[u8], base: usize, start: usize, mut prev: [u8; 32], first: u64) -> Scan {
    let mut pos = start;
    let mut records = Vec::new();
    let mut expected_seq = first;
    let tail = loop {
        let rest = &bytes[pos - base..];
        if rest.is_empty() {
            break Tail::Clean;
        }
        if rest.iter().all(|&b| b == 0) {
            break Tail::Torn {
                at: pos as u64,
                reason: format!("{} zero bytes after the last record", rest.len()),
            };
        }
        if rest.len() < 16 {
            break Tail::Torn {
                at: pos as u64,
                reason: "record header incomplete".into(),
            };
        }
        let logseq = u64::from_le_bytes(rest[0..8].try_into().unwrap_or_default());
        let record_type = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default());
        let payload_len = u32::from_le_bytes(rest[12..16].try_into().unwrap_or_default());
        let total = RECORD_OVERHEAD as u64 + u64::from(payload_len);
        if payload_len > MAX_PAYLOAD {
            break Tail::Damaged {
                at: pos as u64,
                logseq,
                reason: format!("payload_len {payload_len} is implausible"),
            };
        }
        if (rest.len() as u64) < total {
            break Tail::Torn {
                at: pos as u64,
                reason: format!("last record needs {total} bytes, {} remain", rest.len()),
            };
        }
        let total = total as usize;
        let payload = &rest[16..16 + payload_len as usize];
        let mut stored = [0u8; 32];
        stored.copy_from_slice(&rest[16 + payload_len as usize..total]);
        let computed = chain_hash(&prev, logseq, record_type, payload);
        if (computed != stored || logseq != expected_seq)
            && zero_sectors_inside(bytes, base, pos, pos + total)
        {
            break Tail::Torn {
                at: pos as u64,
                reason: "last record ends in zeroed sectors (lost at a crash)".into(),
            };
        }
        if computed != stored || logseq != expected_seq {
            let reason = if logseq != expected_seq {
                format!("logseq {logseq} where {expected_seq} was expected")
            } else {
                "record_hash does not match the chain".into()
            };
            break Tail::Damaged {
                at: pos as u64,
                logseq,
                reason,
            };
        }
        records.push(LogRecord {
            logseq,
            record_type,
            payload: payload.to_vec(),
            record_hash: stored,
            offset: pos as u64,
        });
        prev = stored;
        expected_seq += 1;
        pos += total;
    };
    let end = (base + bytes.len()) as u64;
    let unverified = match &tail {
        Tail::Damaged { at, .. } => follow_lengths(bytes, base, *at as usize),
        _ => Vec::new(),
    };
    let unfollowed = match (&tail, unverified.last()) {
        (Tail::Damaged { .. }, Some(r)) => {
            end - (r.offset + (RECORD_OVERHEAD + r.payload.len()) as u64)
        }
        (Tail::Damaged { at, .. }, None) => end - at,
        _ => 0,
    };
    Scan {
        first_logseq: first,
        records,
        unverified,
        unfollowed,
        valid_len: match &tail {
            Tail::Clean => end,
            Tail::Torn { at, .. } | Tail::Damaged { at, .. } => *at,
        },
        last_hash: prev,
        tail,
    }
}

/// Splits `bytes` from `pos` on into records by their `payload_len` alone, stopping at the
/// first one that is implausibly long or runs past the end. `record_hash` is copied, not
/// checked.
fn follow_lengths(bytes: &[u8], base: usize, mut pos: usize) -> Vec<LogRecord> {
    let mut out = Vec::new();
    while let Some(rest) = bytes.get(pos - base..) {
        if rest.len() < RECORD_OVERHEAD || rest.iter().all(|&b| b == 0) {
            break;
        }
        let logseq = u64::from_le_bytes(rest[0..8].try_into().unwrap_or_default());
        let record_type = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default());
        let payload_len = u32::from_le_bytes(rest[12..16].try_into().unwrap_or_default());
        let total = RECORD_OVERHEAD as u64 + u64::from(payload_len);
        if payload_len > MAX_PAYLOAD || (rest.len() as u64) < total {
            break;
        }
        let end = 16 + payload_len as usize;
        let mut record_hash = [0u8; 32];
        record_hash.copy_from_slice(&rest[end..end + 32]);
        out.push(LogRecord {
            logseq,
            record_type,
            payload: rest[16..end].to_vec(),
            record_hash,
            offset: pos as u64,
        });
        pos += total as usize;
    }
    out
}

/// Reads and decodes the log at `path`.
pub fn read(storage: &dyn Storage, path: &Path) -> Result<Scan> {
    let bytes = storage.read(path).at(path)?;
    scan(&bytes).map_err(|e| StoreError::corrupt(path.display().to_string(), e.to_string()))
}

/// Reads and decodes only the records after record `logseq`, which ends at byte `offset`
/// with chain hash `record_hash` (a checkpoint's position): the bytes before it are not
/// read, so their chain is not checked. `None` when the log does not hold that record there
/// (it was cut, or is another log): the caller then reads the whole log.
pub fn read_after(
    storage: &dyn Storage,
    path: &Path,
    logseq: u64,
    offset: u64,
    record_hash: &[u8; 32],
) -> Result<Option<Scan>> {
    let f = storage.open(path).at(path)?;
    let size = f.size().at(path)?;
    if offset < (HEADER_SIZE + RECORD_OVERHEAD) as u64 || offset > size || logseq == 0 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_SIZE];
    f.read_exact_at(&mut header, 0).at(path)?;
    if header != encode_header() {
        return Ok(None);
    }
    // The record's own hash, the last 32 bytes before `offset`, and everything after it.
    let from = offset - 32;
    let len =
        usize::try_from(size - from).map_err(|e| StoreError::internal("log", e.to_string()))?;
    let mut bytes = vec![0u8; len];
    f.read_exact_at(&mut bytes, from).at(path)?;
    if bytes[..32] != record_hash[..] {
        return Ok(None);
    }
    let base = offset as usize;
    Ok(Some(scan_records(
        &bytes[32..],
        base,
        base,
        *record_hash,
        logseq + 1,
    )))
}

/// Creates a new, empty log (header only), durably.
pub fn create(storage: &dyn Storage, path: &Path) -> Result<()> {
    let mut f = storage.create_new(path).at(path)?;
    f.write_all(&encode_header()).at(path)?;
    f.sync().at(path)?;
    Ok(())
}

/// The writer's handle on the log: appends records, each batch made durable with fsync.
pub struct LogAppender {
    path: PathBuf,
    file: Box<dyn WriteFile>,
    /// The length of the log up to its last whole record.
    len: u64,
    /// An append failed: what the file holds past `len` is unknown, so this appender takes
    /// no more records (a new writer reads the log again).
    failed: bool,
    next_seq: u64,
    last_hash: [u8; 32],
}

impl LogAppender {
    /// Opens the log for appending after a scan; cuts a torn tail, refuses a damaged log.
    pub fn open(storage: &dyn Storage, path: &Path, scan: &Scan) -> Result<LogAppender> {
        if let Tail::Damaged { at, logseq, reason } = &scan.tail {
            return Err(StoreError::corrupt(
                format!("{} (record logseq {logseq} at byte {at})", path.display()),
                format!(
                    "{reason}; run `asl-admin verify` for details and `asl-admin repair-log` \
                     to re-record what is intact"
                ),
            ));
        }
        let mut file = storage.open_append(path).at(path)?;
        if let Tail::Torn { at, .. } = scan.tail {
            file.set_len(at).at(path)?;
            file.sync().at(path)?;
        }
        Ok(LogAppender {
            path: path.to_path_buf(),
            file,
            len: scan.valid_len,
            failed: false,
            next_seq: scan
                .records
                .last()
                .map_or(scan.first_logseq, |r| r.logseq + 1),
            last_hash: scan.last_hash,
        })
    }

    /// fsyncs the log as it stands. Before deleting files because the log no longer names
    /// them, a writer makes sure that is durable: a record a killed writer appended but never
    /// fsynced is read back from the page cache and could still be lost to a power cut.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync().at(&self.path)
    }

    /// The last record appended or found, as a checkpoint names it; `None` for a log
    /// without records.
    pub fn position(&self) -> Option<crate::checkpoint::LogPosition> {
        (self.next_seq > 1 && !self.failed).then_some(crate::checkpoint::LogPosition {
            logseq: self.next_seq - 1,
            offset: self.len,
            record_hash: self.last_hash,
        })
    }

    /// The logseq the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends records in one write and fsyncs; returns their logseqs. Either all of them are
    /// durable when this returns Ok, or a crash leaves a torn tail that the next open cuts.
    ///
    /// When the write or the fsync fails, the records are cut off again (as far as the
    /// storage still lets us) and this appender refuses further records: after a failed
    /// fsync nobody knows what reached the disk, and appending behind bytes of unknown state
    /// could put a damaged record in the middle of the log.
    pub fn append(&mut self, records: &[(u32, Vec<u8>)]) -> Result<Vec<u64>> {
        if self.failed {
            return Err(StoreError::io(
                &self.path,
                std::io::Error::other(
                    "an earlier append to the log failed; open the store again to write",
                ),
            ));
        }
        let mut buf = Vec::new();
        let mut seqs = Vec::with_capacity(records.len());
        let mut prev = self.last_hash;
        let mut seq = self.next_seq;
        for (ty, payload) in records {
            let (bytes, hash) = encode_record(&prev, seq, *ty, payload);
            buf.extend_from_slice(&bytes);
            prev = hash;
            seqs.push(seq);
            seq += 1;
        }
        if let Err(e) = self.file.write_all(&buf).and_then(|()| self.file.sync()) {
            self.failed = true;
            let _ = self.file.set_len(self.len).and_then(|()| self.file.sync());
            return Err(StoreError::io(&self.path, e));
        }
        self.len += buf.len() as u64;
        self.last_hash = prev;
        self.next_seq = seq;
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(records: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = encode_header().to_vec();
        let mut prev = [0u8; 32];
        for (i, (t, p)) in records.iter().enumerate() {
            let (b, h) = encode_record(&prev, i as u64 + 1, *t, p);
            out.extend_from_slice(&b);
            prev = h;
        }
        out
    }

    #[test]
    fn header_is_the_documented_24_bytes() {
        let h = encode_header();
        assert_eq!(&h[..8], b"ASLLOG01");
        assert_eq!(u32::from_le_bytes(h[8..12].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 24);
        assert_eq!(&h[16..], &[0u8; 8]);
    }

    #[test]
    fn first_record_chains_from_32_zero_bytes() {
        // Recompute the hash by hand from the spec's formula.
        let bytes = build(&[(1, b"abc".to_vec())]);
        let mut h = sha2::Sha256::new();
        h.update([0u8; 32]);
        h.update(1u64.to_le_bytes());
        h.update(1u32.to_le_bytes());
        h.update(3u32.to_le_bytes());
        h.update(b"abc");
        let expect: [u8; 32] = h.finalize().into();
        assert_eq!(&bytes[bytes.len() - 32..], &expect);
    }

    #[test]
    fn a_record_cut_short_is_a_torn_tail_and_earlier_records_survive() {
        let full = build(&[(1, vec![7; 10]), (0x20, vec![9; 40])]);
        for cut in 1..(RECORD_OVERHEAD + 40) {
            let s = scan(&full[..full.len() - cut]).unwrap();
            assert_eq!(s.records.len(), 1, "cut {cut}");
            assert!(
                matches!(s.tail, Tail::Torn { .. }),
                "cut {cut}: {:?}",
                s.tail
            );
        }
    }

    #[test]
    fn a_header_size_other_than_24_is_refused() {
        let mut b = build(&[(1, vec![1])]);
        b[12] = 25;
        assert!(scan(&b).is_err());
    }

    #[test]
    fn header_errors_name_the_field_and_its_offset() {
        let mut b = build(&[(1, vec![1; 5])]);
        b[12] = 25;
        assert_eq!(
            scan(&b).unwrap_err(),
            LogHeaderError::Field {
                field: "header_size",
                offset: 12,
                found: 25,
                allowed: "must be 24",
            }
        );
        assert_eq!(
            scan(&b[..10]).unwrap_err().to_string(),
            "log has only 10 bytes, less than its 24-byte header"
        );
    }

    #[test]
    fn a_zero_filled_tail_is_torn_not_damage() {
        let mut b = build(&[(1, vec![1; 5])]);
        b.extend_from_slice(&[0u8; 100]);
        let s = scan(&b).unwrap();
        assert_eq!(s.records.len(), 1);
        assert!(matches!(s.tail, Tail::Torn { .. }));
    }

    #[test]
    fn a_flipped_byte_in_any_record_is_damage_at_that_record() {
        let full = build(&[(1, vec![1; 8]), (2, vec![2; 8]), (3, vec![3; 8])]);
        for i in HEADER_SIZE..full.len() {
            let mut b = full.clone();
            b[i] ^= 0x40;
            let s = scan(&b).unwrap();
            assert!(s.records.len() < 3, "flip at {i} went unnoticed");
            assert!(!matches!(s.tail, Tail::Clean), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn records_beyond_damage_are_followed_by_length_but_not_trusted() {
        let full = build(&[(1, vec![1; 8]), (2, vec![2; 8]), (3, vec![3; 8])]);
        let second = HEADER_SIZE + RECORD_OVERHEAD + 8;
        let mut b = full.clone();
        b[second + 16] ^= 1; // the second record's payload
        let s = scan(&b).unwrap();
        assert_eq!(s.records.len(), 1);
        assert!(matches!(s.tail, Tail::Damaged { at, .. } if at as usize == second));
        let seqs: Vec<u64> = s.unverified.iter().map(|r| r.logseq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(s.unverified[1].payload, vec![3; 8]);
        assert_eq!(s.unfollowed, 0);
        // A damaged length hides what follows: it is counted, not guessed at.
        let mut b = full.clone();
        b[second + 15] = 0xff;
        let s = scan(&b).unwrap();
        assert!(s.unverified.is_empty());
        assert_eq!(s.unfollowed as usize, full.len() - second);
        assert!(scan(&full).unwrap().unverified.is_empty());
    }

    #[test]
    fn a_last_record_whose_final_sectors_read_as_zeros_is_torn() {
        // Two records, the second one long enough to span a sector boundary.
        let full = build(&[(1, vec![1; 8]), (0x20, vec![7; 1200])]);
        let second = HEADER_SIZE + RECORD_OVERHEAD + 8;
        for boundary in [512usize, 1024] {
            assert!(boundary > second && boundary < full.len());
            let mut b = full.clone();
            b[boundary..].fill(0);
            let s = scan(&b).unwrap();
            assert_eq!(s.records.len(), 1);
            assert!(matches!(s.tail, Tail::Torn { .. }), "{:?}", s.tail);
        }
        // Zeros that do not start at a sector boundary are damage, not a lost write.
        let mut b = full.clone();
        let n = b.len();
        b[n - 5..].fill(0);
        assert!(matches!(scan(&b).unwrap().tail, Tail::Damaged { .. }));
    }

    #[test]
    fn unknown_record_types_are_kept_for_the_caller_to_skip() {
        let b = build(&[(0xdead, vec![1, 2, 3]), (1, vec![])]);
        let s = scan(&b).unwrap();
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.records[0].record_type, 0xdead);
        assert_eq!(s.tail, Tail::Clean);
    }

    proptest! {
        #[test]
        fn scanning_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = encode_header().to_vec();
            b.extend_from_slice(&bytes);
            let _ = scan(&b);
            let _ = scan(&bytes);
        }

        #[test]
        fn encoded_records_decode_to_the_same_records(recs in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..8)) {
            let b = build(&recs);
            let s = scan(&b).unwrap();
            prop_assert_eq!(s.tail, Tail::Clean);
            prop_assert_eq!(s.records.len(), recs.len());
            for (r, (t, p)) in s.records.iter().zip(&recs) {
                prop_assert_eq!(r.record_type, *t);
                prop_assert_eq!(&r.payload, p);
            }
        }
    }
}
