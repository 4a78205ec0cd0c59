//! Test data shared by the writer's tests.

/// Bytes of a fixed xorshift stream: incompressible, the same for the same `seed`.
pub(super) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
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

/// A store with the small chunks of format version 1's first default (16/64/256 KiB), so
/// that tests see several chunks in a few hundred KiB.
pub(super) fn small_chunks() -> crate::InitOptions {
    crate::InitOptions {
        chunk_sizes: Some((16 * 1024, 64 * 1024, 256 * 1024)),
        ..Default::default()
    }
}
