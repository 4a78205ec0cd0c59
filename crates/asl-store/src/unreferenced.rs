//! Unreferenced files: what a killed or out-of-space writer leaves behind.
//!
//! A writer makes files durable before the log names them (docs/FORMAT.md §11), so a writer
//! that dies before its commit leaves files that no log record refers to: sealed blocks no
//! visible segment names, temporary files under `blocks/open/` and `segments/open/`, and
//! segment files no SEGMENT_SEAL or GC_COMMIT made visible (or that a GC_COMMIT retired).
//! They hold nothing any snapshot can reach, so losing them loses nothing; they only take
//! space. `stats` and `verify` count them from a read-only [`crate::Store`]; `gc` removes them
//! under the writer lock.
//!
//! Only names the format defines are counted (`blocks/<hh>/<id>.blk`, `segments/<id>.seg`,
//! anything under the two `open/` directories); other files are not the store's and are left
//! alone.

use std::path::{Path, PathBuf};

use crate::block::BlockId;
use crate::error::{IoContext, Result};
use crate::layout::Layout;
use crate::state::State;
use crate::storage::{Entry, Storage};

/// What kind of leftover a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// `blocks/<hh>/<id>.blk` that no visible segment names.
    SealedBlock(BlockId),
    /// Anything under `blocks/open/`.
    OpenBlock,
    /// Anything under `segments/open/`.
    OpenSegment,
    /// `segments/<id>.seg` that is not visible (never sealed, or retired by a GC_COMMIT).
    UnsealedSegment(u64),
}

/// One unreferenced file and its length when it was listed.
#[derive(Debug, Clone)]
pub(crate) struct LeftoverFile {
    pub kind: Leftover,
    pub path: PathBuf,
    pub bytes: u64,
}

/// A number of files and their total length in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileTally {
    pub files: u64,
    pub bytes: u64,
}

impl FileTally {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// The unreferenced files of a store, by kind (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unreferenced {
    /// Sealed blocks that no visible segment names.
    pub sealed_blocks: FileTally,
    /// Temporary block files under `blocks/open/`.
    pub open_blocks: FileTally,
    /// Temporary segment files under `segments/open/`.
    pub open_segments: FileTally,
    /// Segment files the log does not make visible.
    pub unsealed_segments: FileTally,
    /// All of the above together.
    pub total: FileTally,
    /// Some visible segment did not load, so the blocks only it names are counted as
    /// unreferenced although `reindex` would recover their records. `gc` refuses to run then.
    pub index_damaged: bool,
}

impl Unreferenced {
    pub(crate) fn from_files(files: &[LeftoverFile], index_damaged: bool) -> Unreferenced {
        let mut u = Unreferenced {
            index_damaged,
            ..Unreferenced::default()
        };
        for f in files {
            let tally = match f.kind {
                Leftover::SealedBlock(_) => &mut u.sealed_blocks,
                Leftover::OpenBlock => &mut u.open_blocks,
                Leftover::OpenSegment => &mut u.open_segments,
                Leftover::UnsealedSegment(_) => &mut u.unsealed_segments,
            };
            tally.add(f.bytes);
            u.total.add(f.bytes);
        }
        u
    }
}

/// Lists every file of the store at `layout` that the replayed `state` does not refer to.
/// A file that vanishes while it is listed is skipped (a writer or GC removed it).
pub(crate) fn list(layout: &Layout, state: &State) -> Result<Vec<LeftoverFile>> {
    let storage = layout.storage();
    let mut out = Vec::new();
    let blocks = layout.blocks();
    for shard in list_dir(storage, &blocks)? {
        if shard.name.len() != 2 || !shard.is_dir {
            continue;
        }
        let shard_dir = blocks.join(&shard.name);
        for f in list_dir(storage, &shard_dir)? {
            let Some(id) = f.name.strip_suffix(".blk").and_then(BlockId::parse) else {
                continue;
            };
            if !state.block_numbers.contains_key(&id) {
                push(storage, &mut out, Leftover::SealedBlock(id), &shard_dir, &f);
            }
        }
    }
    for (dir, kind) in [
        (layout.blocks_open(), Leftover::OpenBlock),
        (layout.segments_open(), Leftover::OpenSegment),
    ] {
        for f in list_dir(storage, &dir)? {
            push(storage, &mut out, kind, &dir, &f);
        }
    }
    let segments = layout.segments();
    for f in list_dir(storage, &segments)? {
        let Some(id) = f
            .name
            .strip_suffix(".seg")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        if !state.segments.contains_key(&id) {
            push(
                storage,
                &mut out,
                Leftover::UnsealedSegment(id),
                &segments,
                &f,
            );
        }
    }
    Ok(out)
}

fn push(storage: &dyn Storage, out: &mut Vec<LeftoverFile>, kind: Leftover, dir: &Path, e: &Entry) {
    // A directory or anything else that is not a regular file is not a leftover of ours.
    let path = dir.join(&e.name);
    if e.is_file
        && let Ok(bytes) = storage.len(&path)
    {
        out.push(LeftoverFile { kind, path, bytes });
    }
}

/// The entries of `dir`, sorted; a missing directory has none (an older store may lack an
/// `open/` directory until its next writer creates it).
fn list_dir(storage: &dyn Storage, dir: &Path) -> Result<Vec<Entry>> {
    match storage.list(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r.at(dir),
    }
}

/// Removes `path`, returning the bytes it held (0 if it was already gone).
pub(crate) fn remove(storage: &dyn Storage, path: &Path) -> Result<u64> {
    let bytes = match storage.len(path) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(crate::StoreError::io(path, e)),
    };
    match storage.remove_file(path) {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(crate::StoreError::io(path, e)),
    }
}
