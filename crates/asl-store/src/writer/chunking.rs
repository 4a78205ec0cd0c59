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
            default,
            published_vector("chunks"),
            "FastCDC cut points changed (128/512/2048 KiB): docs/vectors/chunker-default.txt"
        );
    }

    /// The published chunker vector (`docs/vectors/chunker-default.txt`), which a second
    /// implementation checks itself against: its numbers and stream head must be what this
    /// code uses.
    const CHUNKER_VECTOR: &str = include_str!("../../../../docs/vectors/chunker-default.txt");

    /// The values of the vector's line `key`, as numbers (or the hex bytes of `head`).
    fn published_vector(key: &str) -> Vec<usize> {
        let line = CHUNKER_VECTOR
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line {key} in chunker-default.txt"));
        line.split_whitespace()
            .skip(1)
            .flat_map(|v| {
                if key == "head" {
                    (0..v.len())
                        .step_by(2)
                        .map(|i| usize::from_str_radix(&v[i..i + 2], 16).unwrap())
                        .collect()
                } else {
                    vec![v.parse().unwrap()]
                }
            })
            .collect()
    }

    #[test]
    fn chunker_vector_describes_the_stream_the_golden_cuts_use() {
        let seed = published_vector("seed")[0] as u64;
        let len = published_vector("length")[0];
        assert_eq!(
            (seed, len),
            (42, 8 << 20),
            "the stream cuts_of_fixed_stream chunks"
        );
        let head: Vec<usize> = pseudo_random(16, seed)
            .into_iter()
            .map(usize::from)
            .collect();
        assert_eq!(head, published_vector("head"));
        assert_eq!(published_vector("chunks").iter().sum::<usize>(), len);
    }

    /// The first 2 MiB of the stream with 16/64/256 KiB chunks.
    const GOLDEN_CUTS_SMALL: &[usize] = &[
        34625, 89372, 16949, 119607, 145954, 104697, 106705, 109539, 32775, 82218, 107730, 78326,
        88558, 76689, 70132, 42713, 61604, 119608, 129674, 34152, 76973, 68810, 144286, 67925,
    ];
}
