//! The index: where the record of every visible digest is, for lookups and for walking.
//!
//! Entries come from the visible segments and live in one of two places:
//! * in memory, for small segments (fewer than [`RUN_MIN_RECORDS`] entries: commit merges
//!   keep at most a few dozen of them, see `crate::merge`), for segments whose run cannot be
//!   used, and on storage where a random read is a network round trip (S3);
//! * on disk, in the segment's *run* ([`run`]): only its block table, bloom filter and page
//!   fences are in memory (about 2 bytes an entry), so an index far larger than memory costs
//!   little to open and to hold. Runs are derived caches under `cache/index/`.
//!
//! Both give the same answers, which the tests check against a state held wholly in memory.
//! When a digest is in more than one segment, the lookup answers with the location from the
//! segment with the lowest id (the one replay saw first) and the earliest visibility of all,
//! exactly as loading every segment into one map in id order does.

pub mod bloom;
pub mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::reference::DIGEST_LEN;
use crate::segment::IndexRecord;
use crate::state::Location;
pub use run::Run;

/// Segments with at least this many entries are held as runs (where runs are used); smaller
/// ones are merged at commit and stay few, so they stay in memory.
pub const RUN_MIN_RECORDS: u64 = crate::merge::SMALL_SEGMENT_RECORDS;

/// Whether opening a store uses index runs, and builds those that are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Every entry in memory (the reference the tests compare runs against).
    Off,
    /// A segment whose run exists and matches is held as that run; the others are loaded
    /// into memory. Readers open stores this way: they never write.
    Use,
    /// As `Use`, and a segment of at least `min_records` entries whose run is missing or
    /// unusable gets one written first (the writer).
    Build { min_records: u64 },
}

#[derive(Debug, Clone, Copy)]
struct MemEntry {
    segment_id: u64,
    loc: Location,
}

#[derive(Debug)]
struct IndexedRun {
    sealed_at: u64,
    run: Run,
    /// The store-wide number of each block of the run's block table.
    blocks: Vec<u32>,
}

impl IndexedRun {
    fn location(&self, r: &IndexRecord) -> Location {
        Location {
            kind: r.kind,
            codec: r.codec,
            visibility: r.visibility,
            domain_id: r.domain_id,
            type_tag: r.type_tag,
            block: self.blocks[r.block_index as usize],
            stored_len: r.stored_len,
            raw_len: r.raw_len,
            offset: r.block_offset,
            artifact_len: r.artifact_len,
            visible_since: if r.visible_since == 0 {
                self.sealed_at
            } else {
                r.visible_since
            },
        }
    }
}

/// The index of a replayed state.
#[derive(Debug, Default)]
pub struct Index {
    mem: HashMap<[u8; DIGEST_LEN], MemEntry>,
    /// In segment id order.
    runs: Vec<IndexedRun>,
    /// Pages of runs that failed their checksum when read (their entries were not found);
    /// `verify` reports the runs.
    damaged_reads: AtomicU64,
}

impl Index {
    /// Adds one entry of segment `segment_id`, loaded into memory. A digest already held
    /// keeps its location and takes the earlier visibility.
    pub(crate) fn insert(&mut self, segment_id: u64, digest: [u8; DIGEST_LEN], loc: Location) {
        self.mem
            .entry(digest)
            .and_modify(|e| {
                if segment_id < e.segment_id {
                    e.segment_id = segment_id;
                    let since = e.loc.visible_since.min(loc.visible_since);
                    e.loc = loc;
                    e.loc.visible_since = since;
                } else {
                    e.loc.visible_since = e.loc.visible_since.min(loc.visible_since);
                }
            })
            .or_insert(MemEntry { segment_id, loc });
    }

    /// Adds the run of a segment sealed at `sealed_at`; `blocks` numbers its block table.
    pub(crate) fn add_run(&mut self, run: Run, sealed_at: u64, blocks: Vec<u32>) {
        let at = self
            .runs
            .partition_point(|r| r.run.segment_id < run.segment_id);
        self.runs.insert(
            at,
            IndexedRun {
                sealed_at,
                run,
                blocks,
            },
        );
    }

    /// The segments held as runs.
    pub fn run_segments(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().map(|r| &r.run)
    }

    /// How many run pages failed their checksum since opening.
    pub fn damaged_reads(&self) -> u64 {
        self.damaged_reads.load(Ordering::Relaxed)
    }

    /// The location of `digest` (visibility is the caller's to judge).
    pub fn get(&self, digest: &[u8; DIGEST_LEN]) -> Option<Location> {
        let mut best = self.mem.get(digest).map(|e| (e.segment_id, e.loc));
        for r in &self.runs {
            let rec = match r.run.get(digest) {
                Ok(Some(rec)) => rec,
                Ok(None) => continue,
                Err(_) => {
                    self.damaged_reads.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            best = Some(combine(best, (r.run.segment_id, r.location(&rec))));
        }
        best.map(|(_, loc)| loc)
    }

    pub fn contains(&self, digest: &[u8; DIGEST_LEN]) -> bool {
        self.get(digest).is_some()
    }

    /// How many distinct digests the index holds. Held wholly in memory this is a count;
    /// with runs it walks them (as `verify` and `stats` do anyway).
    pub fn len(&self) -> usize {
        if self.runs.is_empty() {
            self.mem.len()
        } else {
            self.iter().count()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.runs.iter().all(|r| r.run.record_count == 0)
    }

    /// Every digest once, with its location as [`Index::get`] gives it. In digest order when
    /// runs are held, in no particular order otherwise. Memory: the in-memory entries and one
    /// page per run.
    pub fn iter(&self) -> Box<dyn Iterator<Item = ([u8; DIGEST_LEN], Location)> + '_> {
        if self.runs.is_empty() {
            return Box::new(self.mem.iter().map(|(d, e)| (*d, e.loc)));
        }
        let mut mem: Vec<Item> = self
            .mem
            .iter()
            .map(|(d, e)| (*d, e.segment_id, e.loc))
            .collect();
        mem.sort_unstable_by_key(|e| e.0);
        let mut sources: Vec<Source<'_>> = vec![Box::new(mem.into_iter())];
        for r in &self.runs {
            let damaged = &self.damaged_reads;
            sources.push(Box::new(r.run.records().map_while(move |rec| match rec {
                Ok(rec) => Some((*rec.reference.digest(), r.run.segment_id, r.location(&rec))),
                Err(_) => {
                    damaged.fetch_add(1, Ordering::Relaxed);
                    None
                }
            })));
        }
        Box::new(Merge {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
        })
    }

    /// Bytes of memory the index holds (estimated: entries in memory at their map's size,
    /// runs at what they keep resident).
    pub fn resident_bytes(&self) -> usize {
        let per_entry = DIGEST_LEN + std::mem::size_of::<MemEntry>() + 8;
        self.mem.capacity() * per_entry
            + self
                .runs
                .iter()
                .map(|r| r.run.resident_bytes() + r.blocks.len() * 4)
                .sum::<usize>()
    }
}

/// Two answers for one digest: the lower segment id's location, the earlier visibility.
fn combine(a: Option<(u64, Location)>, b: (u64, Location)) -> (u64, Location) {
    match a {
        None => b,
        Some(a) => {
            let since = a.1.visible_since.min(b.1.visible_since);
            let (id, mut loc) = if b.0 < a.0 { b } else { a };
            loc.visible_since = since;
            (id, loc)
        }
    }
}

type Item = ([u8; DIGEST_LEN], u64, Location);
type Source<'a> = Box<dyn Iterator<Item = Item> + 'a>;

/// Merges sources sorted by digest into one stream with each digest once.
struct Merge<'a> {
    sources: Vec<std::iter::Peekable<Source<'a>>>,
}

impl Iterator for Merge<'_> {
    type Item = ([u8; DIGEST_LEN], Location);
    fn next(&mut self) -> Option<Self::Item> {
        let least = self
            .sources
            .iter_mut()
            .filter_map(|s| s.peek().map(|i| i.0))
            .min()?;
        let mut best = None;
        for s in &mut self.sources {
            while let Some(i) = s.next_if(|i| i.0 == least) {
                best = Some(combine(best, (i.1, i.2)));
            }
        }
        best.map(|(_, loc)| (least, loc))
    }
}
