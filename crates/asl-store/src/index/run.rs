//! Index runs (`cache/index/<segment id as 16 hex>.run`): a segment's entries in a form that
//! is searched on disk instead of loaded into memory.
//!
//! A segment (version 2) is one compressed frame: to answer a lookup it must be decoded
//! whole. Its run holds the same records uncompressed, in pages, with what it takes to find
//! the one page a digest could be in: the block table, a bloom filter and the first digest of
//! every page (the *fences*). Opening a run reads only those (about 2 bytes per entry); a
//! lookup reads at most one page. A run is derived: it is written from a segment that was
//! checked against its seal record, names that segment's id and checksum, and is used only
//! for a visible segment with the same. Deleting it loses nothing.
//!
//! ```text
//! Header (128 bytes)
//!   0  magic "ASLIRUN1"        8  version u32 (1)        12 page_records u32
//!   16 segment_id u64          24 record_count u64       32 block_count u64
//!   40 bloom_words u64         48 bloom_hashes u32 (7)   52 reserved u32 (0)
//!   56 segment_checksum [32]   88 meta_checksum [32]     120 reserved [8] (0)
//! Meta: block table (block_count × 32) | bloom (bloom_words × u64 LE)
//!       | fences (page_count × 32: the digest of each page's first record)
//! Pages: page_count × (records × 88 | BLAKE3 of those record bytes [32]); every page holds
//!        page_records records but the last, which holds the rest.
//! ```
//! `meta_checksum` is the BLAKE3 hash of header bytes 0..88 followed by the meta section;
//! records are index records as in a version-1 segment (`docs/FORMAT.md` §7), sorted by
//! digest, all of the store's hash algorithm.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bloom::{self, Bloom};
use crate::block::BlockId;
use crate::layout::Layout;
use crate::reference::{DIGEST_LEN, HashAlgo};
use crate::segment::{IndexRecord, RECORD_SIZE, Segment};
use crate::state::SegmentInfo;
use crate::storage::{ReadFile, Storage, WriteFile};

pub const MAGIC: [u8; 8] = *b"ASLIRUN1";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 128;
/// Records per page: 46 × 88 bytes and the page's checksum fill one 4 KiB page.
pub const PAGE_RECORDS: u32 = 46;
const PAGE_SUM: usize = 32;

/// The file of segment `segment_id`'s run in `dir` (`cache/index/`).
pub fn path(dir: &Path, segment_id: u64) -> PathBuf {
    dir.join(format!("{segment_id:016x}.run"))
}

/// Why a run cannot be used (it is then ignored, and its segment loaded instead).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read the run: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a run of this segment: {0}")]
    Mismatch(&'static str),
    #[error("the run's {0} fails its checksum")]
    Checksum(&'static str),
    #[error("record {index} of the run: {reason}")]
    Record { index: u64, reason: String },
}

/// An opened run: its block table, filter and fences in memory, its pages on disk.
pub struct Run {
    file: Arc<dyn ReadFile>,
    pub segment_id: u64,
    pub record_count: u64,
    page_records: u64,
    pub blocks: Vec<BlockId>,
    bloom: Bloom,
    fences: Vec<[u8; DIGEST_LEN]>,
    pages_offset: u64,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("segment_id", &self.segment_id)
            .field("record_count", &self.record_count)
            .finish_non_exhaustive()
    }
}

fn page_count(records: u64, page_records: u64) -> u64 {
    records.div_ceil(page_records)
}

/// Whether a segment can have a run: every record of the store's algorithm, so that the
/// records sort by digest alone.
pub fn can_index(seg: &Segment, algo: HashAlgo) -> bool {
    seg.records.iter().all(|r| r.reference.algo() == algo)
}

/// Writes the run of `seg` (whose file has `checksum`) to `path` through a temporary file
/// and a rename. Not synced: a run torn by a crash fails its checksums and is rebuilt.
pub fn write(
    storage: &dyn Storage,
    path: &Path,
    seg: &Segment,
    checksum: &[u8; 32],
) -> std::io::Result<()> {
    let n = seg.records.len() as u64;
    let per = u64::from(PAGE_RECORDS);
    let mut bloom = Bloom::with_entries(n);
    let mut fences = Vec::with_capacity(page_count(n, per) as usize);
    for (i, r) in seg.records.iter().enumerate() {
        bloom.insert(r.reference.digest());
        if (i as u64).is_multiple_of(per) {
            fences.push(*r.reference.digest());
        }
    }
    let mut meta = Vec::with_capacity(seg.blocks.len() * 32 + bloom.words().len() * 8);
    for b in &seg.blocks {
        meta.extend_from_slice(&b.0);
    }
    for w in bloom.words() {
        meta.extend_from_slice(&w.to_le_bytes());
    }
    for f in &fences {
        meta.extend_from_slice(f);
    }
    let mut h = Vec::with_capacity(HEADER_SIZE);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&PAGE_RECORDS.to_le_bytes());
    h.extend_from_slice(&seg.segment_id.to_le_bytes());
    h.extend_from_slice(&n.to_le_bytes());
    h.extend_from_slice(&(seg.blocks.len() as u64).to_le_bytes());
    h.extend_from_slice(&(bloom.words().len() as u64).to_le_bytes());
    h.extend_from_slice(&bloom::HASHES.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(checksum);
    let mut sum = blake3::Hasher::new();
    sum.update(&h);
    sum.update(&meta);
    h.extend_from_slice(sum.finalize().as_bytes());
    h.extend_from_slice(&[0u8; 8]);
    debug_assert_eq!(h.len(), HEADER_SIZE);

    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut f: Box<dyn WriteFile> = storage.create(&tmp)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut f);
    use std::io::Write;
    out.write_all(&h)?;
    out.write_all(&meta)?;
    drop(meta);
    let mut page = Vec::with_capacity(PAGE_RECORDS as usize * RECORD_SIZE);
    for chunk in seg.records.chunks(PAGE_RECORDS as usize) {
        page.clear();
        for r in chunk {
            r.encode(&mut page);
        }
        out.write_all(&page)?;
        out.write_all(blake3::hash(&page).as_bytes())?;
    }
    out.flush()?;
    drop(out);
    drop(f);
    storage.rename(&tmp, path)
}

/// Writes the run of `seg`, whose seal record is `info`, to the store's `cache/index/`
/// (creating the directories) and opens it: what a writer does for a segment it commits,
/// spills or finds without a run.
pub fn build(layout: &Layout, seg: &Segment, info: &SegmentInfo) -> Result<Run, RunError> {
    let storage = layout.storage();
    crate::storage::create_dir_durable(storage, &layout.cache())?;
    let dir = layout.index_runs();
    storage.create_dir_all(&dir)?;
    let path = path(&dir, info.segment_id);
    write(storage, &path, seg, &info.checksum)?;
    Run::open(storage, &path, info)
}

impl Run {
    /// Opens the run at `path` for the visible segment `info`; refuses a run of another
    /// segment or segment file, and one whose header or meta section fails its checksum.
    pub fn open(storage: &dyn Storage, path: &Path, info: &SegmentInfo) -> Result<Run, RunError> {
        let file = storage.open(path)?;
        let size = file.size()?;
        let mut h = [0u8; HEADER_SIZE];
        if size < HEADER_SIZE as u64 {
            return Err(RunError::Mismatch("shorter than its header"));
        }
        file.read_exact_at(&mut h, 0)?;
        let le32 = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap_or_default());
        let le64 = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or_default());
        if h[..8] != MAGIC || le32(8) != VERSION {
            return Err(RunError::Mismatch("magic or version"));
        }
        let (page_records, segment_id, record_count) = (u64::from(le32(12)), le64(16), le64(24));
        let (block_count, bloom_words) = (le64(32), le64(40));
        if segment_id != info.segment_id
            || record_count != info.record_count
            || h[56..88] != info.checksum
        {
            return Err(RunError::Mismatch("segment id, record count or checksum"));
        }
        if h[120..] != [0u8; 8] || le32(52) != 0 {
            return Err(RunError::Mismatch("reserved bytes"));
        }
        if page_records == 0 || le32(48) != bloom::HASHES || bloom_words == 0 {
            return Err(RunError::Mismatch("page size or filter shape"));
        }
        let pages = page_count(record_count, page_records);
        let meta_len = block_count
            .checked_mul(32)
            .zip(bloom_words.checked_mul(8))
            .zip(pages.checked_mul(32))
            .and_then(|((a, b), c)| a.checked_add(b)?.checked_add(c));
        let pages_len = record_count
            .checked_mul(RECORD_SIZE as u64)
            .and_then(|r| r.checked_add(pages.checked_mul(PAGE_SUM as u64)?));
        let fits = meta_len.zip(pages_len).and_then(|(m, p)| {
            m.checked_add(p)?
                .checked_add(HEADER_SIZE as u64)
                .map(|t| (t == size).then_some(m))
        });
        let Some(Some(meta_len)) = fits else {
            return Err(RunError::Mismatch("length"));
        };
        let mut meta = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut meta, HEADER_SIZE as u64)?;
        let mut sum = blake3::Hasher::new();
        sum.update(&h[..88]);
        sum.update(&meta);
        if sum.finalize().as_bytes()[..] != h[88..120] {
            return Err(RunError::Checksum("header or meta section"));
        }
        let (blocks_b, rest) = meta.split_at(block_count as usize * 32);
        let (bloom_b, fences_b) = rest.split_at(bloom_words as usize * 8);
        let blocks = blocks_b
            .chunks_exact(32)
            .map(|c| BlockId(c.try_into().unwrap_or_default()))
            .collect();
        let words = bloom_b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let bloom = Bloom::from_words(words).ok_or(RunError::Mismatch("filter shape"))?;
        let fences = fences_b
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or_default())
            .collect();
        Ok(Run {
            file,
            segment_id,
            record_count,
            page_records,
            blocks,
            bloom,
            fences,
            pages_offset: HEADER_SIZE as u64 + meta_len,
        })
    }

    fn page_len(&self, page: u64) -> u64 {
        let before = page * self.page_records;
        (self.record_count - before).min(self.page_records)
    }

    /// Reads page `page` and checks it; returns its records' bytes.
    fn read_page(&self, page: u64) -> Result<Vec<u8>, RunError> {
        let full = self.page_records * RECORD_SIZE as u64 + PAGE_SUM as u64;
        let len = self.page_len(page) as usize * RECORD_SIZE;
        let mut b = vec![0u8; len + PAGE_SUM];
        self.file
            .read_exact_at(&mut b, self.pages_offset + page * full)?;
        let (records, sum) = b.split_at(len);
        if blake3::hash(records).as_bytes()[..] != *sum {
            return Err(RunError::Checksum("page"));
        }
        b.truncate(len);
        Ok(b)
    }

    fn decode(&self, b: &[u8], index: u64) -> Result<IndexRecord, RunError> {
        let r = IndexRecord::decode(b, index as usize).map_err(|e| RunError::Record {
            index,
            reason: e.to_string(),
        })?;
        if r.block_index as usize >= self.blocks.len() {
            return Err(RunError::Record {
                index,
                reason: "block index past the block table".into(),
            });
        }
        Ok(r)
    }

    /// The record of `digest`, if the run holds it (`Err`: the page it would be in is
    /// damaged).
    pub fn get(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<IndexRecord>, RunError> {
        if !self.bloom.may_contain(digest) {
            return Ok(None);
        }
        let after = self.fences.partition_point(|f| f <= digest);
        let Some(page) = after.checked_sub(1) else {
            return Ok(None);
        };
        let b = self.read_page(page as u64)?;
        let n = b.len() / RECORD_SIZE;
        let key = |i: usize| &b[i * RECORD_SIZE + 56..(i + 1) * RECORD_SIZE];
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match key(mid).cmp(&digest[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let index = page as u64 * self.page_records + mid as u64;
                    let s = mid * RECORD_SIZE;
                    return self.decode(&b[s..s + RECORD_SIZE], index).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Every record in digest order, reading the pages in order (a damaged page ends the
    /// iteration with its error).
    pub fn records(&self) -> impl Iterator<Item = Result<IndexRecord, RunError>> + '_ {
        let pages = page_count(self.record_count, self.page_records);
        (0..pages).flat_map(move |p| {
            let page = self.read_page(p);
            let first = p * self.page_records;
            let items: Vec<Result<IndexRecord, RunError>> = match page {
                Err(e) => vec![Err(e)],
                Ok(b) => b
                    .chunks_exact(RECORD_SIZE)
                    .enumerate()
                    .map(|(i, r)| self.decode(r, first + i as u64))
                    .collect(),
            };
            items
        })
    }

    /// The bytes of memory the run holds while open (block table, filter, fences).
    pub fn resident_bytes(&self) -> usize {
        self.blocks.len() * 32 + self.bloom.words().len() * 8 + self.fences.len() * 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Codec, RecordKind};
    use crate::reference::Reference;
    use crate::segment::Visibility;
    use crate::storage::sim::SimStorage;
    use proptest::prelude::*;

    fn record(i: u64) -> (BlockId, IndexRecord) {
        let digest = *blake3::hash(&i.to_le_bytes()).as_bytes();
        let block = BlockId([(i % 3) as u8 + 1; 32]);
        (
            block,
            IndexRecord {
                reference: Reference::new(HashAlgo::Blake3, digest),
                kind: RecordKind::Chunk,
                codec: Codec::Zstd,
                visibility: Visibility::Internal,
                domain_id: 4,
                type_tag: (i % 5) as u32,
                block_index: 0,
                stored_len: i as u32 + 1,
                raw_len: i as u32 + 7,
                block_offset: i * 100,
                artifact_len: i + 7,
                visible_since: i % 2 * 9,
            },
        )
    }

    fn built(n: u64) -> (SimStorage, Segment, SegmentInfo) {
        let seg = Segment::build(9, 4, 0, (0..n).map(record).collect());
        let (_, checksum) = seg.encode();
        let sim = SimStorage::new(Path::new("/"));
        sim.create_dir_all(Path::new("/c")).unwrap();
        write(&sim, &path(Path::new("/c"), 9), &seg, &checksum).unwrap();
        let info = SegmentInfo {
            segment_id: 9,
            sealed_at: 3,
            record_count: n,
            checksum,
        };
        (sim, seg, info)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Every record is found with its exact fields, no other digest is, and iterating
        /// gives the segment's records in order: whatever the count (empty, one page, a
        /// partial last page).
        #[test]
        fn a_run_answers_exactly_as_its_segment(n in 0u64..400, probe in 400u64..10_000) {
            let (sim, seg, info) = built(n);
            let run = Run::open(&sim, &path(Path::new("/c"), 9), &info).unwrap();
            prop_assert_eq!(&run.blocks, &seg.blocks);
            for r in &seg.records {
                prop_assert_eq!(run.get(r.reference.digest()).unwrap(), Some(*r));
            }
            let (_, absent) = record(probe);
            prop_assert_eq!(run.get(absent.reference.digest()).unwrap(), None);
            let all: Vec<IndexRecord> = run.records().map(|r| r.unwrap()).collect();
            prop_assert_eq!(all, seg.records.clone());
        }

        /// A changed byte anywhere is caught: by the meta checksum when opening, or by the
        /// page checksum when its page is read, never answered from.
        #[test]
        fn a_run_with_any_byte_changed_is_refused_or_its_page_is(at in any::<usize>(), flip in 1..=255u8) {
            let (sim, seg, info) = built(120);
            let p = path(Path::new("/c"), 9);
            let mut bytes = sim.read(&p).unwrap();
            let at = at % bytes.len();
            bytes[at] ^= flip;
            crate::storage::write_atomic(&sim, &p, &bytes).unwrap();
            if let Ok(run) = Run::open(&sim, &p, &info) {
                let answers: Vec<_> = seg.records.iter().map(|r| run.get(r.reference.digest())).collect();
                prop_assert!(answers.iter().any(|a| a.is_err()), "flip at {} went unseen", at);
                prop_assert!(answers.iter().all(|a| !matches!(a, Ok(Some(r)) if !seg.records.contains(r))));
            }
        }
    }

    #[test]
    fn a_run_of_another_segment_or_file_is_refused() {
        let (sim, _, info) = built(50);
        let p = path(Path::new("/c"), 9);
        let other = SegmentInfo {
            checksum: [7; 32],
            ..info
        };
        assert!(matches!(
            Run::open(&sim, &p, &other),
            Err(RunError::Mismatch(_))
        ));
        let other = SegmentInfo {
            segment_id: 10,
            ..info
        };
        assert!(Run::open(&sim, &p, &other).is_err());
        let bytes = sim.read(&p).unwrap();
        crate::storage::write_atomic(&sim, &p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            Run::open(&sim, &p, &info),
            Err(RunError::Mismatch("length"))
        ));
    }
}
