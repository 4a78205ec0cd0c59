//! Blocks: immutable pack files of compressed records, self-describing through a trailer.
//!
//! ```text
//! BlockHeader  = magic "ASLBLK01" | version u32 = 1 | header_size u32 = 16
//! data         = the records' stored bytes, back to back, from offset 16
//! BlockEntry[] = per record, 64 bytes (see `BlockEntry`)
//! BlockFooter  = record_count u32 | reserved u32 = 0 | entries_offset u64 | magic "ASLBLKT1"
//! ```
//! A block's id is the store hash of the whole file; the file is named after it. Blocks are
//! written under `blocks/open/`, fsynced, and renamed into `blocks/<2 hex>/<id>.blk` sealed.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{IoContext, Result, StoreError};
use crate::reference::{DIGEST_LEN, HashAlgo, Hasher, Reference};
use crate::storage::{ReadFile, Storage, WriteFile};

pub const MAGIC: [u8; 8] = *b"ASLBLK01";
pub const TRAILER_MAGIC: [u8; 8] = *b"ASLBLKT1";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: u64 = 16;
pub const ENTRY_SIZE: usize = 64;
pub const FOOTER_SIZE: usize = 24;

/// Why bytes read from a block do not decode: its header or trailer, one of its entries, a
/// record's stored bytes, or a part list. Offsets are byte offsets in the block file (in a
/// part list's decoded bytes for the part-list variants), so that `asl-debug` and `verify`
/// can say exactly where a block is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockDecodeError {
    #[error(
        "block has only {len} bytes, less than its {HEADER_SIZE}-byte header and \
         {FOOTER_SIZE}-byte footer"
    )]
    TooShort { len: usize },
    #[error("magic {expected} missing at offset {offset}")]
    Magic { expected: &'static str, offset: u64 },
    /// A fixed-size field holds a value the format does not allow.
    #[error("{field} at offset {offset} is {found}: {allowed}")]
    Field {
        field: &'static str,
        offset: u64,
        found: u64,
        allowed: &'static str,
    },
    #[error(
        "footer says {count} entries from offset {entries_offset}, which does not fit a block \
         of {len} bytes"
    )]
    TrailerSize {
        count: u32,
        entries_offset: u64,
        len: usize,
    },
    #[error("entry {index}: {problem}")]
    Entry {
        index: usize,
        problem: Box<BlockDecodeError>,
    },
    #[error(
        "record at offset {offset} ({stored_len} bytes) does not start where the previous one \
         ends ({expected}), or runs into the entries at {entries_offset}"
    )]
    NotContiguous {
        offset: u64,
        stored_len: u32,
        expected: u64,
        entries_offset: u64,
    },
    #[error("the records end at offset {end}, but the entries start at {entries_offset}")]
    DataAreaGap { end: u64, entries_offset: u64 },
    #[error("zstd frame of {stored_len} bytes does not decode: {message}")]
    Zstd { stored_len: usize, message: String },
    #[error("record decodes to {found} bytes, its entry says raw_len {raw_len}")]
    RawLength { found: usize, raw_len: u32 },
    #[error("part list has only {len} bytes, less than its 20-byte header")]
    PartListTooShort { len: usize },
    #[error("part list of {count} parts must have {expected} bytes, it has {len}")]
    PartListLength {
        count: u32,
        expected: u64,
        len: usize,
    },
    #[error("part lengths add up to {sum} bytes, the part list's total_len says {total_len}")]
    PartListTotal { sum: u64, total_len: u64 },
}

impl BlockDecodeError {
    /// The same error with its file offsets moved by `by` (an entry decoded on its own
    /// reports offsets within the entry).
    fn shifted(self, by: u64) -> BlockDecodeError {
        match self {
            BlockDecodeError::Field {
                field,
                offset,
                found,
                allowed,
            } => BlockDecodeError::Field {
                field,
                offset: offset + by,
                found,
                allowed,
            },
            other => other,
        }
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Artifact bytes: a whole small artifact, or one chunk of a large one. The digest is
    /// the hash of the decoded bytes.
    Chunk,
    /// The part list of a composite artifact; the digest is the *artifact's* reference (the
    /// hash of the concatenated parts), not the hash of the list.
    Parts,
}

impl RecordKind {
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Chunk => 0,
            RecordKind::Parts => 1,
        }
    }
    pub fn from_code(c: u8) -> Option<RecordKind> {
        match c {
            0 => Some(RecordKind::Chunk),
            1 => Some(RecordKind::Parts),
            _ => None,
        }
    }
}

/// How a record's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    None,
    Zstd,
}

impl Codec {
    pub fn code(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
        }
    }
    pub fn from_code(c: u8) -> Option<Codec> {
        match c {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// One trailer entry (64 bytes):
/// `hash_id u16 | kind u8 | codec u8 | type_tag u32 | offset u64 | stored_len u32 |
///  raw_len u32 | reserved u64 = 0 | digest [32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    pub reference: Reference,
    pub kind: RecordKind,
    pub codec: Codec,
    pub type_tag: u32,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
}

impl BlockEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.reference.algo().id().to_le_bytes());
        out.push(self.kind.code());
        out.push(self.codec.code());
        out.extend_from_slice(&self.type_tag.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(self.reference.digest());
    }

    /// Decodes one 64-byte entry; offsets in the error are within the entry.
    pub fn decode(b: &[u8]) -> std::result::Result<BlockEntry, BlockDecodeError> {
        if b.len() != ENTRY_SIZE {
            return Err(BlockDecodeError::Field {
                field: "entry length",
                offset: 0,
                found: b.len() as u64,
                allowed: "an entry has 64 bytes",
            });
        }
        let le32 =
            |r: std::ops::Range<usize>| u32::from_le_bytes(b[r].try_into().unwrap_or_default());
        let le64 =
            |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().unwrap_or_default());
        let hash_id = u16::from_le_bytes([b[0], b[1]]);
        let algo = HashAlgo::from_id(hash_id).ok_or(BlockDecodeError::Field {
            field: "hash_id",
            offset: 0,
            found: u64::from(hash_id),
            allowed: "not a known hash (1 sha256, 2 blake3)",
        })?;
        let kind = RecordKind::from_code(b[2]).ok_or(BlockDecodeError::Field {
            field: "kind",
            offset: 2,
            found: u64::from(b[2]),
            allowed: "not 0 (chunk) or 1 (parts)",
        })?;
        let codec = Codec::from_code(b[3]).ok_or(BlockDecodeError::Field {
            field: "codec",
            offset: 3,
            found: u64::from(b[3]),
            allowed: "not 0 (none) or 1 (zstd)",
        })?;
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&b[24 + 8..]);
        if le64(24..32) != 0 {
            return Err(BlockDecodeError::Field {
                field: "reserved",
                offset: 24,
                found: le64(24..32),
                allowed: "must be 0",
            });
        }
        Ok(BlockEntry {
            reference: Reference::new(algo, digest),
            kind,
            codec,
            type_tag: le32(4..8),
            offset: le64(8..16),
            stored_len: le32(16..20),
            raw_len: le32(20..24),
        })
    }
}

/// The identity of a sealed block: the store hash of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub [u8; 32]);

impl BlockId {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn parse(s: &str) -> Option<BlockId> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(BlockId(b))
    }
    /// Path of the sealed block under the store's `blocks/` directory.
    pub fn path(&self, blocks_dir: &Path) -> PathBuf {
        let h = self.hex();
        blocks_dir.join(&h[..2]).join(format!("{h}.blk"))
    }
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// A block being written. Not visible to anyone until [`OpenBlock::seal`] renames it.
pub struct OpenBlock {
    storage: Arc<dyn Storage>,
    tmp_path: PathBuf,
    out: BufWriter<Box<dyn WriteFile>>,
    hasher: Hasher,
    len: u64,
    entries: Vec<BlockEntry>,
}

impl OpenBlock {
    /// Starts block `name` in `open_dir` of `storage`.
    pub fn create(
        storage: Arc<dyn Storage>,
        open_dir: &Path,
        algo: HashAlgo,
        name: &str,
    ) -> Result<OpenBlock> {
        let tmp_path = open_dir.join(format!("{name}.tmp"));
        let file = storage.create(&tmp_path).at(&tmp_path)?;
        let mut b = OpenBlock {
            storage,
            tmp_path,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: algo.hasher(),
            len: 0,
            entries: Vec::new(),
        };
        let mut header = Vec::with_capacity(16);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b.write(&header)?;
        Ok(b)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).at(&self.tmp_path)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes of record data written so far (header included).
    pub fn data_len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a record; returns its offset in the block.
    pub fn append(
        &mut self,
        reference: Reference,
        kind: RecordKind,
        codec: Codec,
        type_tag: u32,
        stored: &[u8],
        raw_len: u32,
    ) -> Result<u64> {
        let offset = self.len;
        self.write(stored)?;
        self.entries.push(BlockEntry {
            reference,
            kind,
            codec,
            type_tag,
            offset,
            stored_len: stored.len() as u32,
            raw_len,
        });
        Ok(offset)
    }

    /// Writes the trailer, fsyncs, renames the file to its sealed name and fsyncs the
    /// directory. Returns the id and the records.
    pub fn seal(mut self, blocks_dir: &Path) -> Result<(BlockId, Vec<BlockEntry>)> {
        let entries_offset = self.len;
        let mut trailer = Vec::with_capacity(self.entries.len() * ENTRY_SIZE + FOOTER_SIZE);
        for e in &self.entries {
            e.encode(&mut trailer);
        }
        trailer.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        trailer.extend_from_slice(&0u32.to_le_bytes());
        trailer.extend_from_slice(&entries_offset.to_le_bytes());
        trailer.extend_from_slice(&TRAILER_MAGIC);
        self.write(&trailer)?;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| StoreError::io(&self.tmp_path, e.into_error()))?;
        file.sync().at(&self.tmp_path)?;
        drop(file);
        let id = BlockId(*self.hasher.finish().digest());
        let dest = id.path(blocks_dir);
        let shard = dest.parent().unwrap_or(blocks_dir);
        let storage = &*self.storage;
        crate::storage::create_dir_durable(storage, shard).at(shard)?;
        storage.rename(&self.tmp_path, &dest).at(&dest)?;
        storage.sync_dir(shard).at(shard)?;
        Ok((id, self.entries))
    }
}

/// Decodes a block's trailer from the whole file's bytes (or from its tail, given the file
/// length). Never panics on arbitrary input.
pub fn decode_trailer(bytes: &[u8]) -> std::result::Result<Vec<BlockEntry>, BlockDecodeError> {
    if bytes.len() < HEADER_SIZE as usize + FOOTER_SIZE {
        return Err(BlockDecodeError::TooShort { len: bytes.len() });
    }
    if bytes[..8] != MAGIC {
        return Err(BlockDecodeError::Magic {
            expected: "ASLBLK01",
            offset: 0,
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(BlockDecodeError::Field {
            field: "version",
            offset: 8,
            found: u64::from(version),
            allowed: "only version 1 is supported",
        });
    }
    let header_size = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    if header_size != HEADER_SIZE as u32 {
        return Err(BlockDecodeError::Field {
            field: "header_size",
            offset: 12,
            found: u64::from(header_size),
            allowed: "must be 16",
        });
    }
    let footer_at = (bytes.len() - FOOTER_SIZE) as u64;
    let footer = &bytes[bytes.len() - FOOTER_SIZE..];
    if footer[16..] != TRAILER_MAGIC {
        return Err(BlockDecodeError::Magic {
            expected: "ASLBLKT1",
            offset: footer_at + 16,
        });
    }
    let reserved = u32::from_le_bytes(footer[4..8].try_into().unwrap_or_default());
    if reserved != 0 {
        return Err(BlockDecodeError::Field {
            field: "footer reserved",
            offset: footer_at + 4,
            found: u64::from(reserved),
            allowed: "must be 0",
        });
    }
    let count = u32::from_le_bytes(footer[0..4].try_into().unwrap_or_default());
    let entries_offset = u64::from_le_bytes(footer[8..16].try_into().unwrap_or_default());
    let end = footer_at;
    if entries_offset < HEADER_SIZE
        || entries_offset > end
        || (end - entries_offset) != u64::from(count) * ENTRY_SIZE as u64
    {
        return Err(BlockDecodeError::TrailerSize {
            count,
            entries_offset,
            len: bytes.len(),
        });
    }
    let count = count as usize;
    let mut entries = Vec::with_capacity(count);
    let mut expected = HEADER_SIZE;
    for i in 0..count {
        let start = entries_offset as usize + i * ENTRY_SIZE;
        let in_entry = |problem: BlockDecodeError| BlockDecodeError::Entry {
            index: i,
            problem: Box::new(problem),
        };
        let e = BlockEntry::decode(&bytes[start..start + ENTRY_SIZE])
            .map_err(|p| in_entry(p.shifted(start as u64)))?;
        // Records are contiguous and in order: that is what makes the trailer checkable.
        if e.offset != expected || e.offset + u64::from(e.stored_len) > entries_offset {
            return Err(in_entry(BlockDecodeError::NotContiguous {
                offset: e.offset,
                stored_len: e.stored_len,
                expected,
                entries_offset,
            }));
        }
        expected = e.offset + u64::from(e.stored_len);
        entries.push(e);
    }
    if expected != entries_offset {
        return Err(BlockDecodeError::DataAreaGap {
            end: expected,
            entries_offset,
        });
    }
    Ok(entries)
}

thread_local! {
    /// One decompression context per thread: creating one allocates and clears the context's
    /// tables, work that would otherwise be repeated for every record of a restore and every
    /// segment of a store's opening.
    static DECOMPRESSOR: std::cell::RefCell<std::io::Result<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new());
}

/// Decompresses one zstd frame of at most `capacity` bytes with this thread's context.
pub(crate) fn zstd_decompress(frame: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| match d.borrow_mut().as_mut() {
        Ok(d) => d.decompress(frame, capacity),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    })
}

/// Decodes a record's stored bytes into its raw bytes, checking the length.
pub fn decode_record(
    codec: Codec,
    stored: &[u8],
    raw_len: u32,
) -> std::result::Result<Vec<u8>, BlockDecodeError> {
    let raw = match codec {
        Codec::None => stored.to_vec(),
        Codec::Zstd => {
            zstd_decompress(stored, raw_len as usize).map_err(|e| BlockDecodeError::Zstd {
                stored_len: stored.len(),
                message: e.to_string(),
            })?
        }
    };
    if raw.len() != raw_len as usize {
        return Err(BlockDecodeError::RawLength {
            found: raw.len(),
            raw_len,
        });
    }
    Ok(raw)
}

/// Reads a record's stored bytes from an open block file.
pub fn read_stored(
    file: &dyn ReadFile,
    path: &Path,
    offset: u64,
    stored_len: u32,
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; stored_len as usize];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            StoreError::corrupt(
                format!("block {}", path.display()),
                format!("record at {offset} (+{stored_len}) lies past the end of the file"),
            )
        } else {
            StoreError::io(path, e)
        }
    })?;
    Ok(buf)
}

/// The part list of a composite artifact:
/// `magic "ASLPART1" | total_len u64 | count u32 | count × (len u32 | digest [32])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartList {
    pub total_len: u64,
    pub parts: Vec<(u32, [u8; 32])>,
}

pub const PARTS_MAGIC: [u8; 8] = *b"ASLPART1";

impl PartList {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.parts.len() * 36);
        out.extend_from_slice(&PARTS_MAGIC);
        out.extend_from_slice(&self.total_len.to_le_bytes());
        out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for (len, d) in &self.parts {
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(d);
        }
        out
    }

    pub fn decode(b: &[u8]) -> std::result::Result<PartList, BlockDecodeError> {
        if b.len() < 20 {
            return Err(BlockDecodeError::PartListTooShort { len: b.len() });
        }
        if b[..8] != PARTS_MAGIC {
            return Err(BlockDecodeError::Magic {
                expected: "ASLPART1",
                offset: 0,
            });
        }
        let total_len = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
        let count = u32::from_le_bytes(b[16..20].try_into().unwrap_or_default());
        let expected = 20 + u64::from(count) * 36;
        if b.len() as u64 != expected {
            return Err(BlockDecodeError::PartListLength {
                count,
                expected,
                len: b.len(),
            });
        }
        let count = count as usize;
        let mut parts = Vec::with_capacity(count);
        let mut sum = 0u64;
        for i in 0..count {
            let s = 20 + i * 36;
            let len = u32::from_le_bytes(b[s..s + 4].try_into().unwrap_or_default());
            let mut d = [0u8; 32];
            d.copy_from_slice(&b[s + 4..s + 36]);
            sum += u64::from(len);
            parts.push((len, d));
        }
        if sum != total_len {
            return Err(BlockDecodeError::PartListTotal { sum, total_len });
        }
        Ok(PartList { total_len, parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sealed_block_is_named_by_its_hash_and_its_trailer_lists_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let algo = HashAlgo::Blake3;
        let mut b = OpenBlock::create(std::sync::Arc::new(crate::storage::Local), &open, algo, "x")
            .unwrap();
        let r1 = algo.digest(b"one");
        let r2 = algo.digest(b"two!");
        b.append(r1, RecordKind::Chunk, Codec::None, 0, b"one", 3)
            .unwrap();
        b.append(r2, RecordKind::Chunk, Codec::None, 7, b"two!", 4)
            .unwrap();
        let (id, entries) = b.seal(dir.path()).unwrap();
        let bytes = std::fs::read(id.path(dir.path())).unwrap();
        assert_eq!(algo.digest(&bytes).digest(), &id.0);
        let decoded = decode_trailer(&bytes).unwrap();
        assert_eq!(decoded, entries);
        assert_eq!(decoded[1].type_tag, 7);
        assert_eq!(&bytes[decoded[1].offset as usize..][..4], b"two!");
        assert!(
            std::fs::read_dir(&open).unwrap().next().is_none(),
            "temp file left behind"
        );
    }

    #[test]
    fn trailer_errors_name_the_entry_the_field_and_its_offset_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let algo = HashAlgo::Blake3;
        let mut b = OpenBlock::create(std::sync::Arc::new(crate::storage::Local), &open, algo, "x")
            .unwrap();
        b.append(
            algo.digest(b"one"),
            RecordKind::Chunk,
            Codec::None,
            0,
            b"one",
            3,
        )
        .unwrap();
        b.append(
            algo.digest(b"two"),
            RecordKind::Chunk,
            Codec::None,
            0,
            b"two",
            3,
        )
        .unwrap();
        let (id, _) = b.seal(dir.path()).unwrap();
        let good = std::fs::read(id.path(dir.path())).unwrap();
        let entries_offset = 16 + 3 + 3;

        // Entry 1's codec byte: the error names the entry, the field and the file offset.
        let mut bad = good.clone();
        let at = entries_offset + ENTRY_SIZE + 3;
        bad[at] = 7;
        let err = decode_trailer(&bad).unwrap_err();
        assert_eq!(
            err,
            BlockDecodeError::Entry {
                index: 1,
                problem: Box::new(BlockDecodeError::Field {
                    field: "codec",
                    offset: at as u64,
                    found: 7,
                    allowed: "not 0 (none) or 1 (zstd)",
                }),
            }
        );
        assert_eq!(
            err.to_string(),
            format!("entry 1: codec at offset {at} is 7: not 0 (none) or 1 (zstd)")
        );

        // Entry 1's record offset pointing back into record 0.
        let mut bad = good.clone();
        let at = entries_offset + ENTRY_SIZE + 8;
        bad[at..at + 8].copy_from_slice(&17u64.to_le_bytes());
        assert!(matches!(
            decode_trailer(&bad).unwrap_err(),
            BlockDecodeError::Entry { index: 1, problem }
                if *problem == BlockDecodeError::NotContiguous {
                    offset: 17,
                    stored_len: 3,
                    expected: 19,
                    entries_offset: entries_offset as u64,
                }
        ));

        // The footer's reserved field, at its offset from the start of the file.
        let mut bad = good.clone();
        let at = bad.len() - FOOTER_SIZE + 4;
        bad[at] = 1;
        assert!(matches!(
            decode_trailer(&bad).unwrap_err(),
            BlockDecodeError::Field { field: "footer reserved", offset, found: 1, .. }
                if offset == at as u64
        ));
    }

    #[test]
    fn record_and_part_list_errors_say_what_does_not_add_up() {
        assert_eq!(
            decode_record(Codec::None, b"abc", 4).unwrap_err(),
            BlockDecodeError::RawLength {
                found: 3,
                raw_len: 4
            }
        );
        assert!(matches!(
            decode_record(Codec::Zstd, b"not zstd", 10).unwrap_err(),
            BlockDecodeError::Zstd { stored_len: 8, .. }
        ));
        let mut pl = PartList {
            total_len: 5,
            parts: vec![(2, [1; 32]), (2, [2; 32])],
        }
        .encode();
        assert_eq!(
            PartList::decode(&pl).unwrap_err(),
            BlockDecodeError::PartListTotal {
                sum: 4,
                total_len: 5
            }
        );
        pl.push(0);
        assert_eq!(
            PartList::decode(&pl).unwrap_err(),
            BlockDecodeError::PartListLength {
                count: 2,
                expected: 92,
                len: 93
            }
        );
    }

    proptest! {
        #[test]
        fn part_lists_round_trip(parts in proptest::collection::vec((any::<u32>(), any::<[u8; 32]>()), 0..20)) {
            let total_len = parts.iter().map(|p| u64::from(p.0)).sum();
            let pl = PartList { total_len, parts };
            prop_assert_eq!(PartList::decode(&pl.encode()).unwrap(), pl);
        }

        #[test]
        fn trailer_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_trailer(&bytes);
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&16u32.to_le_bytes());
            b.extend_from_slice(&bytes);
            let _ = decode_trailer(&b);
            let _ = PartList::decode(&bytes);
        }
    }
}
