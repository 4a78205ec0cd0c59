//! The chunker: where FastCDC 2020, with the store's parameters, cuts an artifact.

use fastcdc::v2020::{Normalization, cut, select_masks};

use super::Writer;

impl Writer {
    fn chunk_params(&self) -> (usize, usize, usize, u64, u64) {
        let c = &self.config.chunker;
        let level = match c.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = select_masks(c.avg_size as usize, level);
        (
            c.min_size as usize,
            c.avg_size as usize,
            c.max_size as usize,
            mask_s,
            mask_l,
        )
    }

    /// The length of the first chunk of `data` (all of it when it is short).
    pub(super) fn cut_point(&self, data: &[u8]) -> usize {
        let (min, avg, max, ms, ml) = self.chunk_params();
        cut(data, min, avg, max, ms, ml, ms << 1, ml << 1).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::test_data::*;

    /// The cut points of a fixed xorshift stream with `opts`' chunker, checked against
    /// fastcdc's own whole-buffer iterator.
    fn cuts_of_fixed_stream(opts: &crate::InitOptions) -> Vec<usize> {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open_or_init(&dir.path().join("s"), opts).unwrap();
        let data = pseudo_random(8 << 20, 42);
        let mut rest = &data[..];
        let mut cuts = Vec::new();
        while !rest.is_empty() {
            let n = w.cut_point(rest);
            cuts.push(n);
            rest = &rest[n..];
        }
        // Our incremental cutting must agree with fastcdc's own whole-buffer iterator.
        let c = &w.config().chunker;
        let reference: Vec<usize> = fastcdc::v2020::FastCDC::new(
            &data,
            c.min_size as usize,
            c.avg_size as usize,
            c.max_size as usize,
        )
        .map(|c| c.length)
        .collect();
        assert_eq!(cuts, reference);
        cuts
    }

    #[test]
    fn chunk_cut_points_match_the_golden_vectors() {
        // Pinned cut points (normalisation level 1) over a fixed xorshift stream. If these
        // change, every existing store would dedup against different chunks: a chunker
        // upgrade must not pass unnoticed.
        let small = cuts_of_fixed_stream(&small_chunks());
        assert_eq!(
            &small[..GOLDEN_CUTS_SMALL.len()],
            GOLDEN_CUTS_SMALL,
            "FastCDC cut points changed (16/64/256 KiB)"
        );
        let default = cuts_of_fixed_stream(&Default::default());
        assert_eq!(
            default, GOLDEN_CUTS_DEFAULT,
            "FastCDC cut points changed (128/512/2048 KiB)"
        );
    }

    /// The first 2 MiB of the stream with 16/64/256 KiB chunks.
    const GOLDEN_CUTS_SMALL: &[usize] = &[
        34625, 89372, 16949, 119607, 145954, 104697, 106705, 109539, 32775, 82218, 107730, 78326,
        88558, 76689, 70132, 42713, 61604, 119608, 129674, 34152, 76973, 68810, 144286, 67925,
    ];

    /// The whole 8 MiB stream with the default 128/512/2048 KiB chunks.
    const GOLDEN_CUTS_DEFAULT: &[usize] = &[
        727448, 640745, 916484, 644141, 185818, 660464, 618954, 522961, 544348, 263984, 426743,
        528743, 287988, 337800, 773416, 308571,
    ];
}
