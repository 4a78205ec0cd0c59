//! # asl-store — the ASL artifact store
//!
//! A content-addressed, deduplicated, verifiable store of immutable artifacts on a local
//! filesystem. Artifact bytes are cut by content-defined chunking (FastCDC 2020), compressed
//! (zstd) and packed into immutable, self-describing **blocks**. An index maps every
//! [`Reference`] to its location; index entries live in **segments** that become visible only
//! when a `SEGMENT_SEAL` record is appended to the hash-chained **log** (ENC-ASL-LOG v1).
//! **Snapshots** anchor a log position; readers opened at a snapshot see exactly that state.
//!
//! The exact on-disk format is in `docs/FORMAT.md`. What this crate does *not* do: it knows
//! nothing of file trees, receipts or remote hosts — those build on [`ArtifactWrite`] and
//! [`ArtifactRead`].

pub mod access;
pub mod reference;

pub use access::{AccessError, ArtifactRead, ArtifactWrite, MemoryStore, Put, TypeTag};
pub use reference::{DIGEST_LEN, HashAlgo, Hasher, ParseReferenceError, Reference};
