//! Merging small index segments at commit, so that opening a store stays cheap.
//!
//! Every commit with new entries adds a segment, and opening a store reads and checksums
//! every visible one. A provenance store commits once per captured command, a few entries
//! each, so without merging the cost of opening it would grow with every capture, and a
//! capture opens its store. So a commit may fold small segments into the segment it writes
//! anyway, with the same GC_COMMIT record garbage collection uses (retiring exactly the folded
//! segments, deleting no block).
//!
//! Policy (tiered, like a log-structured merge): a segment of fewer than
//! [`SMALL_SEGMENT_RECORDS`] entries is in tier ⌊log₈ record_count⌋. When a tier holds
//! [`MERGE_FANIN`] segments, the next commit folds them all into its own segment, which then
//! belongs to a higher tier. An entry is rewritten at most once per tier (four times), and at
//! most 4 × 8 healthy small segments are visible at any time. Larger segments (an intake's)
//! are never merged here; `asl-admin gc` compacts everything.
//!
//! Folded entries keep their visibility position, so a reader opened at an older snapshot
//! sees exactly what it saw. A segment that does not load (missing, damaged) is never folded,
//! and does not count towards its tier: retiring it would hide the damage from `verify`.
//! The retired files are deleted by the next writer to open the store, not by this commit;
//! a reader that read the log before the commit and finds a segment file gone reads the log
//! again (`Store::open`).

use crate::block::BlockId;
use crate::segment::IndexRecord;
use crate::state::{SegmentInfo, load_segment};
use crate::writer::Writer;

/// Segments with at least this many entries are never merged at commit.
pub const SMALL_SEGMENT_RECORDS: u64 = 4096;
/// How many segments of one tier trigger a merge.
pub const MERGE_FANIN: usize = 8;

fn tier(record_count: u64) -> Option<u32> {
    (record_count < SMALL_SEGMENT_RECORDS).then(|| record_count.max(1).ilog(8))
}

/// The visible segments a commit should fold into its own, lowest tier first; empty when no
/// tier is full. Segments known to be damaged do not count: eight of them in one tier would
/// otherwise stop every higher tier from merging.
pub(crate) fn plan(
    segments: &std::collections::BTreeMap<u64, SegmentInfo>,
    damaged: &std::collections::HashSet<u64>,
) -> Vec<SegmentInfo> {
    let mut tiers: std::collections::BTreeMap<u32, Vec<SegmentInfo>> = Default::default();
    for info in segments
        .values()
        .filter(|i| !damaged.contains(&i.segment_id))
    {
        if let Some(t) = tier(info.record_count) {
            tiers.entry(t).or_default().push(*info);
        }
    }
    tiers
        .into_values()
        .find(|v| v.len() >= MERGE_FANIN)
        .unwrap_or_default()
}

impl Writer {
    /// The entries of the segments `plan` chose, each with its visibility position made
    /// explicit, and the ids of the segments they came from. A segment that does not load is
    /// left out (and stays visible, so that `verify` still reports it).
    pub(crate) fn entries_to_merge(
        &self,
        infos: &[SegmentInfo],
    ) -> (Vec<(BlockId, IndexRecord)>, Vec<u64>) {
        let mut out = Vec::new();
        let mut ids = Vec::new();
        for info in infos {
            let path = self
                .layout()
                .segments()
                .join(crate::segment::file_name(info.segment_id));
            let Ok(seg) = load_segment(self.layout().storage(), &path, info) else {
                continue;
            };
            ids.push(info.segment_id);
            for r in &seg.records {
                let mut r2 = *r;
                if r2.visible_since == 0 {
                    r2.visible_since = info.sealed_at;
                }
                out.push((seg.block_of(r), r2));
            }
        }
        // `Segment::build` keeps the first of equal references after a stable sort: ordering
        // by visibility first keeps the earliest, as replay does across segments.
        out.sort_by_key(|(_, r)| r.visible_since);
        (out, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, n: u64) -> SegmentInfo {
        SegmentInfo {
            segment_id: id,
            sealed_at: id,
            record_count: n,
            checksum: [0; 32],
        }
    }

    #[test]
    fn tiers_are_powers_of_eight_below_the_small_limit() {
        assert_eq!(tier(0), Some(0));
        assert_eq!(tier(7), Some(0));
        assert_eq!(tier(8), Some(1));
        assert_eq!(tier(63), Some(1));
        assert_eq!(tier(64), Some(2));
        assert_eq!(tier(4095), Some(3));
        assert_eq!(tier(4096), None);
    }

    #[test]
    fn the_lowest_full_tier_is_merged_and_large_segments_never() {
        let none = std::collections::HashSet::new();
        let mut segs: std::collections::BTreeMap<u64, SegmentInfo> = Default::default();
        for id in 1..=7 {
            segs.insert(id, info(id, 5));
        }
        for id in 10..=20 {
            segs.insert(id, info(id, 100_000));
        }
        assert!(
            plan(&segs, &none).is_empty(),
            "seven small and many large: nothing"
        );
        for id in 30..=37 {
            segs.insert(id, info(id, 20));
        }
        let p: Vec<u64> = plan(&segs, &none).iter().map(|i| i.segment_id).collect();
        assert_eq!(p, (30..=37).collect::<Vec<_>>());
        segs.insert(8, info(8, 1));
        let p: Vec<u64> = plan(&segs, &none).iter().map(|i| i.segment_id).collect();
        assert_eq!(p, (1..=8).collect::<Vec<_>>(), "tier 0 first");
        let damaged: std::collections::HashSet<u64> = [3].into();
        let p: Vec<u64> = plan(&segs, &damaged).iter().map(|i| i.segment_id).collect();
        assert_eq!(
            p,
            (30..=37).collect::<Vec<_>>(),
            "a damaged one does not count"
        );
    }
}
