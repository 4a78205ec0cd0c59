//! Test data shared by the writer's tests.

pub(super) use crate::xorshift::pseudo_random;

/// A store with the small chunks of format version 1's first default (16/64/256 KiB), so
/// that tests see several chunks in a few hundred KiB.
pub(super) fn small_chunks() -> crate::InitOptions {
    crate::InitOptions {
        chunk_sizes: Some((16 * 1024, 64 * 1024, 256 * 1024)),
        ..Default::default()
    }
}
