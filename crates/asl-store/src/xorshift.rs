//! A fixed xorshift byte stream: the incompressible, reproducible test data of the unit
//! tests and of `tests/*.rs` (which include this file by path).

/// `len` bytes of the xorshift stream started from `seed`; the same for the same seed.
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
