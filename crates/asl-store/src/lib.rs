//! # asl-store — the ASL artifact store
//!
//! A content-addressed, deduplicated, verifiable store of immutable artifacts on a local
//! filesystem. Artifact bytes are cut by content-defined chunking (FastCDC 2020), compressed
//! (zstd) and packed into immutable, self-describing **blocks**. An index maps every
//! [`Reference`] to its location; index entries live in **segments** that become visible only
//! when a `SEGMENT_SEAL` record is appended to the hash-chained **log** (ENC-ASL-LOG v1).
//! **Snapshots** anchor a log position; readers opened at a snapshot see exactly that state.
//!
//! * [`Store`] opens a store read-only; [`Writer`] opens it for writing (one at a time,
//!   enforced by a lock) and commits snapshots.
//! * [`Writer`] implements [`ArtifactWrite`] and [`Reader`] implements [`ArtifactRead`]:
//!   the two interfaces the rest of the toolkit is written against.
//! * [`verify`] checks a store, [`gc`] collects what no retained snapshot reaches, and
//!   [`Store::unreferenced`] counts the files an interrupted writer left, which `gc` removes.
//! * A complete log record that fails its check hides everything after it: [`Store::log_damage`]
//!   says which snapshots, and [`repair::repair_log`] cuts the log there and re-records
//!   what the data on disk still proves (it never runs implicitly).
//!
//! The exact on-disk format is in `docs/FORMAT.md`. What this crate does *not* do: it knows
//! nothing of file trees, receipts or remote hosts — those build on the access traits, and
//! tell GC and verify how to find an artifact's children through a [`Children`] function.

pub mod access;
pub mod block;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod gc;
pub mod index;
mod layout;
mod lock;
pub mod log;
pub(crate) mod merge;
pub mod reach;
pub mod reader;
pub mod records;
pub mod reference;
pub mod repair;
pub mod segment;
pub mod snapshot;
pub(crate) mod state;
pub mod storage;
pub mod store;
pub mod unreferenced;
pub mod verify;
pub mod writer;
#[cfg(test)]
mod xorshift;

pub use access::{AccessError, ArtifactRead, ArtifactWrite, MemoryStore, Put, TypeTag};
pub use config::StoreConfig;
pub use error::{Result, StoreError};
pub use layout::Layout;
pub use reader::Reader;
pub use reference::{DIGEST_LEN, HashAlgo, Hasher, ParseReferenceError, Reference};
pub use snapshot::{Snapshot, SnapshotMeta};
pub use state::{Location, LogDamage, SegmentInfo};
pub use store::{InitOptions, Store, StoreCounts};
pub use unreferenced::{FileTally, Unreferenced};
pub use writer::{Commit, LockedStore, Writer};

/// Lists the references an artifact of type `tag` holds, given its bytes. GC and verify
/// follow these edges from snapshot roots; artifacts of [`TypeTag::BYTES`] are leaves and are
/// never read for this. Unknown tags should return an empty list.
pub type Children<'a> =
    &'a (dyn Fn(TypeTag, &[u8]) -> std::result::Result<Vec<Reference>, String> + Sync);
