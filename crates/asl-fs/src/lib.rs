//! # asl-fs — file trees ⇄ ASL artifacts
//!
//! Turns directory trees into **tree artifacts** stored in an ASL store and back:
//!
//! * [`tree`]: the canonical tree encoding ([`encode_tree`], [`decode_tree`],
//!   [`tree_children`]); byte layout in `docs/FORMAT-tree.md`.
//! * [`intake()`]: a parallel walk → read → store pipeline with a stat cache; rescue-grade
//!   (unreadable files, I/O errors, files changing while read, non-UTF-8 names, FIFOs,
//!   sockets, devices, sparse files and hardlinks are all recorded, and intake goes on).
//! * [`restore()`]: writes a tree back under a target directory, never outside it, verifying
//!   every artifact it reads.
//! * [`browse`]: `lookup`, `ls`, `cat` and `diff` over stored trees, for the CLI.
//! * [`statcache`]: the derived `(dev, ino, size, mtime, ctime) → content` cache that makes an
//!   unchanged re-intake stat-only.
//! * `testing` (cargo feature `testing`): the generated rescue tree, a comparison of two real
//!   directories on everything restore must keep, and a helper that drops root's DAC override
//!   on one thread — for this crate's tests and the CLI's.
//!
//! Contract: the same input tree gives the same root reference whatever the thread count;
//! restore of an intake gives back type, mode, ownership (as root), mtime, xattrs, link
//! targets, hardlink groups, holes and contents. The crate only talks to a store through
//! [`asl_store::ArtifactWrite`] and [`asl_store::ArtifactRead`]; it knows nothing of blocks,
//! segments or snapshots.

pub mod browse;
pub mod intake;
pub mod restore;
pub mod statcache;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;

pub use browse::{
    BrowseError, Change, ChangeKind, EntryUsing, cat, diff, entries_using, lookup, ls,
};
pub use intake::{IntakeError, IntakeErrorRecord, IntakeOptions, IntakeSummary, Progress, intake};
pub use restore::{RestoreError, RestoreOptions, RestoreSummary, restore};
pub use tree::{
    Entry, EntryError, Hole, Kind, Operation, Tree, TreeError, decode_tree, encode_tree,
    tree_children,
};
