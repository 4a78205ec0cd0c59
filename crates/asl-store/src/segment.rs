//! Index segments: immutable, sorted arrays of index records.
//!
//! ```text
//! SegmentHeader (64 bytes) | BlockTable (block_count × 32-byte block ids, ascending)
//! | Records: version 1: IndexRecord[record_count] (88 bytes each, ascending by
//!            (hash_id, digest)); version 2: the same bytes transposed into byte planes
//!            (byte k of record i at k × record_count + i) as one zstd frame
//! | SegmentFooter (48 bytes) = checksum [32] (SHA-256 of every byte before the footer)
//!                              | record_count u64 | magic "ASLSEGF1"
//! ```
//! Version 2 is what this code writes: the planes of lengths, offsets, kinds and zero fields
//! compress well, so a segment costs about 40 instead of 88 bytes per entry (the 32-byte
//! digest is the floor). Both versions are read.
//! A segment file is written under `segments/open/`, fsynced and renamed to
//! `segments/<id as 16 hex>.seg`; its entries become visible only when a `SEGMENT_SEAL`
//! record naming its id and checksum is in the log.

use sha2::Digest;

use crate::block::{BlockId, Codec, RecordKind};
use crate::reference::{DIGEST_LEN, HashAlgo, Reference};

pub const MAGIC: [u8; 8] = *b"ASLSEG01";
pub const FOOTER_MAGIC: [u8; 8] = *b"ASLSEGF1";
/// The segment version this code writes; it also reads [`VERSION_PLAIN`].
pub const VERSION: u16 = 2;
/// Version 1: records stored as they are.
pub const VERSION_PLAIN: u16 = 1;
/// zstd level of version-2 record planes (fixed, so a segment's bytes are a function of
/// its records for a given zstd release).
const PLANES_LEVEL: i32 = 3;
/// A version-2 records frame may not claim more than this many decoded bytes per stored
/// byte: real segments stay under 3 (the digests do not compress), and the bound keeps a
/// crafted file from making the decoder allocate without limit.
const MAX_PLANES_RATIO: u64 = 88;
pub const HEADER_SIZE: usize = 64;
pub const RECORD_SIZE: usize = 88;
pub const FOOTER_SIZE: usize = 48;
/// Header flag: the segment was written by garbage collection and replaces others.
pub const FLAG_COMPACTED: u8 = 1;

/// Why a segment file does not decode. Offsets are byte offsets in the file; a record's
/// fields are named by their byte within the 88-byte record (in version 2 the records are
/// only bytes of the decoded frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentDecodeError {
    #[error(
        "segment has only {len} bytes, less than its {HEADER_SIZE}-byte header and \
         {FOOTER_SIZE}-byte footer"
    )]
    TooShort { len: usize },
    #[error("magic {expected} missing at offset {offset}")]
    Magic { expected: &'static str, offset: u64 },
    /// A header field holds a value the format does not allow.
    #[error("{field} at offset {offset} is {found}: {allowed}")]
    Field {
        field: &'static str,
        offset: u64,
        found: u64,
        allowed: &'static str,
    },
    #[error("the checksum in the footer does not match the {body_len} bytes before it")]
    Checksum { body_len: usize },
    #[error("the header says {header} records, the footer {footer}")]
    RecordCount { header: u64, footer: u64 },
    #[error(
        "offsets and counts do not fit the file: {block_count} blocks from offset \
         {blocks_offset}, {record_count} records from offset {records_offset}, \
         {body_len} bytes before the footer"
    )]
    Layout {
        block_count: u64,
        blocks_offset: u64,
        record_count: u64,
        records_offset: u64,
        body_len: u64,
    },
    #[error("the records' zstd frame at offset {offset} does not decode: {message}")]
    Frame { offset: u64, message: String },
    #[error("the records' zstd frame holds {found} bytes, not {record_count} records of 88")]
    FrameLength { found: usize, record_count: u64 },
    #[error("block table entry {index} is not above the one before it")]
    BlockTableOrder { index: usize },
    #[error("record {index}: {field} (byte {byte} of the record) is {found}: {allowed}")]
    RecordField {
        index: usize,
        field: &'static str,
        byte: usize,
        found: u64,
        allowed: &'static str,
    },
    #[error("record {index} is not above the one before it in (hash_id, digest) order")]
    RecordOrder { index: usize },
    #[error("header visibility {header} is not the highest visibility of its records ({highest})")]
    Visibility { header: u8, highest: u8 },
}

/// Whether an entry may be seen outside its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Internal,
    Published,
}

impl Visibility {
    pub fn code(self) -> u8 {
        match self {
            Visibility::Internal => 0,
            Visibility::Published => 1,
        }
    }
    pub fn from_code(c: u8) -> Option<Visibility> {
        match c {
            0 => Some(Visibility::Internal),
            1 => Some(Visibility::Published),
            _ => None,
        }
    }
}

/// One index entry: where an artifact's record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    pub reference: Reference,
    pub kind: RecordKind,
    pub codec: Codec,
    pub visibility: Visibility,
    pub domain_id: u32,
    pub type_tag: u32,
    /// Index into the segment's block table.
    pub block_index: u32,
    pub stored_len: u32,
    /// Decoded length of the record (a chunk's bytes, or the part list's bytes).
    pub raw_len: u32,
    pub block_offset: u64,
    /// Length of the artifact (equal to `raw_len` for a chunk).
    pub artifact_len: u64,
    /// The logseq from which the entry is visible; 0 means "from this segment's seal".
    pub visible_since: u64,
}

impl IndexRecord {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.reference.algo().id().to_le_bytes());
        out.push(self.kind.code());
        out.push(self.codec.code());
        out.push(self.visibility.code());
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&self.domain_id.to_le_bytes());
        out.extend_from_slice(&self.type_tag.to_le_bytes());
        out.extend_from_slice(&self.block_index.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.block_offset.to_le_bytes());
        out.extend_from_slice(&self.artifact_len.to_le_bytes());
        out.extend_from_slice(&self.visible_since.to_le_bytes());
        out.extend_from_slice(self.reference.digest());
    }

    /// Decodes record number `index` (named in errors) from its 88 bytes.
    pub(crate) fn decode(b: &[u8], index: usize) -> Result<IndexRecord, SegmentDecodeError> {
        let le32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let le64 = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let bad = |field, byte, found: u64, allowed| SegmentDecodeError::RecordField {
            index,
            field,
            byte,
            found,
            allowed,
        };
        let hash_id = u16::from_le_bytes([b[0], b[1]]);
        let algo = HashAlgo::from_id(hash_id).ok_or_else(|| {
            bad(
                "hash_id",
                0,
                u64::from(hash_id),
                "not a known hash (1 sha256, 2 blake3)",
            )
        })?;
        let kind = RecordKind::from_code(b[2])
            .ok_or_else(|| bad("kind", 2, u64::from(b[2]), "not 0 (chunk) or 1 (parts)"))?;
        let codec = Codec::from_code(b[3])
            .ok_or_else(|| bad("codec", 3, u64::from(b[3]), "not 0 (none) or 1 (zstd)"))?;
        let visibility = Visibility::from_code(b[4]).ok_or_else(|| {
            bad(
                "visibility",
                4,
                u64::from(b[4]),
                "not 0 (internal) or 1 (published)",
            )
        })?;
        if let Some(i) = (5..8).find(|&i| b[i] != 0) {
            return Err(bad("reserved", i, u64::from(b[i]), "must be 0"));
        }
        if le32(28) != 0 {
            return Err(bad("reserved", 28, u64::from(le32(28)), "must be 0"));
        }
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&b[56..88]);
        let rec = IndexRecord {
            reference: Reference::new(algo, digest),
            kind,
            codec,
            visibility,
            domain_id: le32(8),
            type_tag: le32(12),
            block_index: le32(16),
            stored_len: le32(20),
            raw_len: le32(24),
            block_offset: le64(32),
            artifact_len: le64(40),
            visible_since: le64(48),
        };
        if rec.kind == RecordKind::Chunk && rec.artifact_len != u64::from(rec.raw_len) {
            return Err(bad(
                "artifact_len",
                40,
                rec.artifact_len,
                "a chunk's artifact_len must equal its raw_len",
            ));
        }
        Ok(rec)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub segment_id: u64,
    pub domain_id: u32,
    pub flags: u8,
    pub blocks: Vec<BlockId>,
    pub records: Vec<IndexRecord>,
}

impl Segment {
    /// Builds a segment from records that name their blocks directly: sorts the records,
    /// builds the block table and fills in block indexes.
    pub fn build(
        segment_id: u64,
        domain_id: u32,
        flags: u8,
        mut records: Vec<(BlockId, IndexRecord)>,
    ) -> Segment {
        records.sort_by_key(|a| a.1.reference);
        records.dedup_by(|a, b| a.1.reference == b.1.reference);
        let mut blocks: Vec<BlockId> = records.iter().map(|(b, _)| *b).collect();
        blocks.sort();
        blocks.dedup();
        let records = records
            .into_iter()
            .map(|(b, mut r)| {
                r.block_index = blocks.binary_search(&b).unwrap_or(0) as u32;
                r
            })
            .collect();
        Segment {
            segment_id,
            domain_id,
            flags,
            blocks,
            records,
        }
    }

    /// The block a record lives in.
    pub fn block_of(&self, r: &IndexRecord) -> BlockId {
        self.blocks[r.block_index as usize]
    }

    /// The highest visibility of any record.
    pub fn visibility(&self) -> Visibility {
        self.records
            .iter()
            .map(|r| r.visibility)
            .max()
            .unwrap_or(Visibility::Internal)
    }

    /// Encodes the file in the current [`VERSION`]; returns the bytes and the checksum the
    /// log's seal record carries.
    pub fn encode(&self) -> (Vec<u8>, [u8; 32]) {
        self.encode_version(VERSION)
    }

    /// Encodes the file in `version` (1 or 2).
    pub fn encode_version(&self, version: u16) -> (Vec<u8>, [u8; 32]) {
        let blocks_offset = HEADER_SIZE as u64;
        let records_offset = blocks_offset + (self.blocks.len() * 32) as u64;
        // Version 2's records are compressed: their room is reserved once the frame's size
        // is known, not at 88 bytes a record.
        let plain_len = if version == VERSION_PLAIN {
            self.records.len() * RECORD_SIZE
        } else {
            0
        };
        let mut out = Vec::with_capacity(records_offset as usize + plain_len + FOOTER_SIZE);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // shard_id
        out.extend_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        out.extend_from_slice(&self.segment_id.to_le_bytes());
        out.extend_from_slice(&self.domain_id.to_le_bytes());
        out.push(self.visibility().code());
        out.push(self.flags);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        out.extend_from_slice(&blocks_offset.to_le_bytes());
        out.extend_from_slice(&records_offset.to_le_bytes());
        debug_assert_eq!(out.len(), HEADER_SIZE);
        for b in &self.blocks {
            out.extend_from_slice(&b.0);
        }
        if version == VERSION_PLAIN {
            for r in &self.records {
                r.encode(&mut out);
            }
        } else {
            let planes = to_planes(&self.records);
            // Compressing bytes in memory only fails on allocation failure.
            let frame = zstd::bulk::compress(&planes, PLANES_LEVEL).unwrap_or_else(|e| {
                panic!("zstd could not compress a segment's records in memory: {e}")
            });
            drop(planes);
            out.reserve_exact(frame.len() + FOOTER_SIZE);
            out.extend_from_slice(&frame);
        }
        let checksum: [u8; 32] = sha2::Sha256::digest(&out).into();
        out.extend_from_slice(&checksum);
        out.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        out.extend_from_slice(&FOOTER_MAGIC);
        (out, checksum)
    }

    /// Decodes and checks a segment file. Never panics on arbitrary input.
    pub fn decode(b: &[u8]) -> Result<(Segment, [u8; 32]), SegmentDecodeError> {
        if b.len() < HEADER_SIZE + FOOTER_SIZE {
            return Err(SegmentDecodeError::TooShort { len: b.len() });
        }
        if b[..8] != MAGIC {
            return Err(SegmentDecodeError::Magic {
                expected: "ASLSEG01",
                offset: 0,
            });
        }
        let le16 = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap_or_default());
        let le32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let le64 = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let version = le16(8);
        let field = |field, offset: usize, found: u64, allowed| SegmentDecodeError::Field {
            field,
            offset: offset as u64,
            found,
            allowed,
        };
        if version != VERSION && version != VERSION_PLAIN {
            return Err(field(
                "version",
                8,
                u64::from(version),
                "only versions 1 and 2 are supported",
            ));
        }
        if le32(12) as usize != HEADER_SIZE {
            return Err(field("header_size", 12, u64::from(le32(12)), "must be 64"));
        }
        let footer = &b[b.len() - FOOTER_SIZE..];
        if footer[40..] != FOOTER_MAGIC {
            return Err(SegmentDecodeError::Magic {
                expected: "ASLSEGF1",
                offset: (b.len() - 8) as u64,
            });
        }
        let body = &b[..b.len() - FOOTER_SIZE];
        let checksum: [u8; 32] = sha2::Sha256::digest(body).into();
        if footer[..32] != checksum {
            return Err(SegmentDecodeError::Checksum {
                body_len: body.len(),
            });
        }
        if le16(10) != 0 {
            return Err(field("shard_id", 10, u64::from(le16(10)), "must be 0"));
        }
        if le16(30) != 0 {
            return Err(field("reserved", 30, u64::from(le16(30)), "must be 0"));
        }
        if le32(36) != 0 {
            return Err(field("reserved", 36, u64::from(le32(36)), "must be 0"));
        }
        let segment_id = le64(16);
        let domain_id = le32(24);
        let visibility = b[28];
        let flags = b[29];
        let block_count = le32(32) as u64;
        let record_count = le64(40);
        let blocks_offset = le64(48);
        let records_offset = le64(56);
        let footer_count = u64::from_le_bytes(footer[32..40].try_into().unwrap_or_default());
        if footer_count != record_count {
            return Err(SegmentDecodeError::RecordCount {
                header: record_count,
                footer: footer_count,
            });
        }
        let body_len = body.len() as u64;
        let records_len = record_count.saturating_mul(RECORD_SIZE as u64);
        let stored_len = body_len.saturating_sub(records_offset);
        let lengths_fit = if version == VERSION_PLAIN {
            records_offset.saturating_add(records_len) == body_len
        } else {
            records_offset < body_len && records_len <= stored_len.saturating_mul(MAX_PLANES_RATIO)
        };
        if blocks_offset != HEADER_SIZE as u64
            || records_offset != blocks_offset + block_count.saturating_mul(32)
            || !lengths_fit
        {
            return Err(SegmentDecodeError::Layout {
                block_count,
                blocks_offset,
                record_count,
                records_offset,
                body_len,
            });
        }
        let planes_decoded;
        let plain: &[u8] = if version == VERSION_PLAIN {
            &b[records_offset as usize..body.len()]
        } else {
            let planes = crate::block::zstd_decompress(
                &body[records_offset as usize..],
                records_len as usize,
            )
            .map_err(|e| SegmentDecodeError::Frame {
                offset: records_offset,
                message: e.to_string(),
            })?;
            if planes.len() as u64 != records_len {
                return Err(SegmentDecodeError::FrameLength {
                    found: planes.len(),
                    record_count,
                });
            }
            planes_decoded = from_planes(&planes, record_count as usize);
            &planes_decoded
        };
        let mut blocks = Vec::with_capacity(block_count as usize);
        for i in 0..block_count as usize {
            let s = blocks_offset as usize + i * 32;
            let mut id = [0u8; 32];
            id.copy_from_slice(&b[s..s + 32]);
            blocks.push(BlockId(id));
        }
        if let Some(i) = blocks.windows(2).position(|w| w[0] >= w[1]) {
            return Err(SegmentDecodeError::BlockTableOrder { index: i + 1 });
        }
        let mut records = Vec::with_capacity(record_count as usize);
        for i in 0..record_count as usize {
            let s = i * RECORD_SIZE;
            let r = IndexRecord::decode(&plain[s..s + RECORD_SIZE], i)?;
            if r.block_index as u64 >= block_count {
                return Err(SegmentDecodeError::RecordField {
                    index: i,
                    field: "block_index",
                    byte: 16,
                    found: u64::from(r.block_index),
                    allowed: "past the end of the block table",
                });
            }
            records.push(r);
        }
        if let Some(i) = records
            .windows(2)
            .position(|w| w[0].reference >= w[1].reference)
        {
            return Err(SegmentDecodeError::RecordOrder { index: i + 1 });
        }
        let seg = Segment {
            segment_id,
            domain_id,
            flags,
            blocks,
            records,
        };
        if seg.visibility().code() != visibility {
            return Err(SegmentDecodeError::Visibility {
                header: visibility,
                highest: seg.visibility().code(),
            });
        }
        Ok((seg, checksum))
    }
}

/// The `n` records, encoded, as byte planes: byte k of record i goes to
/// `k * n + i`, so equal fields of neighbouring records sit side by side for zstd.
fn to_planes(records: &[IndexRecord]) -> Vec<u8> {
    let n = records.len();
    let mut planes = vec![0u8; n * RECORD_SIZE];
    // One record encoded at a time: the plain form of all of them is never held.
    let mut rec = Vec::with_capacity(RECORD_SIZE);
    for (i, r) in records.iter().enumerate() {
        rec.clear();
        r.encode(&mut rec);
        for (k, &byte) in rec.iter().enumerate() {
            planes[k * n + i] = byte;
        }
    }
    planes
}

/// The inverse of [`to_planes`]; `planes` holds exactly `n` × [`RECORD_SIZE`] bytes.
fn from_planes(planes: &[u8], n: usize) -> Vec<u8> {
    let mut plain = vec![0u8; planes.len()];
    for (i, rec) in plain.chunks_exact_mut(RECORD_SIZE).enumerate() {
        for (k, byte) in rec.iter_mut().enumerate() {
            *byte = planes[k * n + i];
        }
    }
    plain
}

/// File name of a sealed segment.
pub fn file_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(d: [u8; 32], off: u64) -> IndexRecord {
        IndexRecord {
            reference: Reference::new(HashAlgo::Blake3, d),
            kind: RecordKind::Chunk,
            codec: Codec::Zstd,
            visibility: Visibility::Internal,
            domain_id: 7,
            type_tag: 0,
            block_index: 0,
            stored_len: 10,
            raw_len: 20,
            block_offset: off,
            artifact_len: 20,
            visible_since: 0,
        }
    }

    proptest! {
        #[test]
        fn segments_round_trip(entries in proptest::collection::vec((any::<[u8; 32]>(), any::<u8>(), any::<u64>()), 0..30)) {
            let records = entries.iter().map(|(d, b, o)| (BlockId([*b; 32]), rec(*d, *o))).collect();
            let seg = Segment::build(5, 7, 0, records);
            for version in [VERSION, VERSION_PLAIN] {
                let (bytes, sum) = seg.encode_version(version);
                let (back, sum2) = Segment::decode(&bytes).unwrap();
                prop_assert_eq!(&back, &seg);
                prop_assert_eq!(sum, sum2);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Segment::decode(&bytes);
        }
    }

    #[test]
    fn version_2_records_take_under_half_the_bytes_of_version_1() {
        let records: Vec<_> = (0..2000u32)
            .map(|i| {
                let d: [u8; 32] = sha2::Sha256::digest(i.to_le_bytes()).into();
                let mut r = rec(d, u64::from(i) * 40_000);
                r.stored_len = 20_000 + i % 977;
                r.raw_len = 50_000 + i % 1931;
                r.artifact_len = u64::from(r.raw_len);
                (BlockId([(i % 7) as u8; 32]), r)
            })
            .collect();
        let seg = Segment::build(3, 1, 0, records);
        let (v2, _) = seg.encode();
        let (v1, _) = seg.encode_version(VERSION_PLAIN);
        assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), 2);
        assert!(
            v2.len() * 2 < v1.len(),
            "v2 {} bytes, v1 {}",
            v2.len(),
            v1.len()
        );
        assert_eq!(Segment::decode(&v2).unwrap().0, seg);
        assert_eq!(Segment::decode(&v1).unwrap().0, seg);
    }

    #[test]
    fn a_records_frame_claiming_too_many_records_is_refused() {
        // 100 million zero records compress to a few KiB; the ratio bound refuses them
        // before anything is allocated.
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&0u32.to_le_bytes()); // block_count
        b.extend_from_slice(&0u32.to_le_bytes());
        let n = 100_000_000u64;
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&(HEADER_SIZE as u64).to_le_bytes());
        b.extend_from_slice(&(HEADER_SIZE as u64).to_le_bytes());
        b.extend_from_slice(&zstd::bulk::compress(&vec![0u8; 1 << 20], 19).unwrap());
        let sum: [u8; 32] = sha2::Sha256::digest(&b).into();
        b.extend_from_slice(&sum);
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&FOOTER_MAGIC);
        let err = Segment::decode(&b).unwrap_err();
        assert!(
            matches!(err, SegmentDecodeError::Layout { record_count, .. } if record_count == n),
            "{err}"
        );
    }

    #[test]
    fn non_canonical_headers_are_refused_even_with_a_valid_checksum() {
        let seg = Segment::build(1, 1, 0, vec![(BlockId([1; 32]), rec([9; 32], 16))]);
        let (bytes, _) = seg.encode();
        let field = |field, offset, found| SegmentDecodeError::Field {
            field,
            offset,
            found,
            allowed: "must be 0",
        };
        for (at, value, expected) in [
            (10usize, 1u8, field("shard_id", 10, 1)),
            (
                28,
                1,
                SegmentDecodeError::Visibility {
                    header: 1,
                    highest: 0,
                },
            ),
            (31, 0xfa, field("reserved", 30, 0xfa00)),
            (36, 1, field("reserved", 36, 1)),
        ] {
            let mut b = bytes[..bytes.len() - FOOTER_SIZE].to_vec();
            b[at] = value;
            let sum: [u8; 32] = sha2::Sha256::digest(&b).into();
            b.extend_from_slice(&sum);
            b.extend_from_slice(&(seg.records.len() as u64).to_le_bytes());
            b.extend_from_slice(&FOOTER_MAGIC);
            assert_eq!(
                Segment::decode(&b).unwrap_err(),
                expected,
                "byte {at} = {value}"
            );
        }
    }

    #[test]
    fn record_errors_name_the_record_and_the_field() {
        let seg = Segment::build(
            1,
            1,
            0,
            vec![
                (BlockId([1; 32]), rec([9; 32], 16)),
                (BlockId([1; 32]), rec([10; 32], 16)),
            ],
        );
        let (bytes, _) = seg.encode_version(VERSION_PLAIN);
        let mut b = bytes[..bytes.len() - FOOTER_SIZE].to_vec();
        // Record 1's codec byte (records start after the header and one block id).
        b[HEADER_SIZE + 32 + RECORD_SIZE + 3] = 5;
        let sum: [u8; 32] = sha2::Sha256::digest(&b).into();
        b.extend_from_slice(&sum);
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&FOOTER_MAGIC);
        let err = Segment::decode(&b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "record 1: codec (byte 3 of the record) is 5: not 0 (none) or 1 (zstd)"
        );
        let mut b = bytes.clone();
        b[bytes.len() - FOOTER_SIZE] ^= 1;
        assert_eq!(
            Segment::decode(&b).unwrap_err(),
            SegmentDecodeError::Checksum {
                body_len: bytes.len() - FOOTER_SIZE
            }
        );
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let seg = Segment::build(1, 1, 0, vec![(BlockId([1; 32]), rec([9; 32], 16))]);
        let (bytes, _) = seg.encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(
                Segment::decode(&b).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }
}
