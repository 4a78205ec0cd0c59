//! Opening and creating stores; the read-only view.

use std::path::Path;

use crate::block::{BlockId, RecordKind};
use crate::config::StoreConfig;
use crate::error::{IoContext, Result, StoreError};
use crate::index::Runs;
use crate::layout::{Layout, load_config};
use crate::log;
use crate::reader::Reader;
use crate::snapshot::Snapshot;
use crate::state::{SegmentInfo, State};

/// Options for a new store.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub hash: crate::HashAlgo,
    pub domain_id: u32,
    /// FastCDC `(min, avg, max)` chunk sizes; `None`: the defaults of [`crate::config::ChunkerParams`].
    pub chunk_sizes: Option<(u32, u32, u32)>,
    /// The size at which a block is sealed (64 KiB–1 GiB); `None`: the default, 8 MiB.
    pub block_target_size: Option<u32>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            hash: crate::HashAlgo::Blake3,
            domain_id: 1,
            chunk_sizes: None,
            block_target_size: None,
        }
    }
}

/// What a store holds, counted over the index of CURRENT (tombstoned entries included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    /// Retained snapshots.
    pub snapshots: usize,
    pub index_entries: usize,
    /// Visible segments.
    pub segments: usize,
    pub blocks: usize,
    /// The bytes of every chunk record before compression.
    pub chunk_raw_bytes: u64,
    /// The records of the log (its last logseq).
    pub log_records: u64,
}

/// Whether `dir` holds nothing.
fn is_empty_dir(layout: &Layout) -> Result<bool> {
    let dir = &layout.root;
    Ok(layout.storage().list(dir).at(dir)?.is_empty())
}

/// A store opened for reading. Cheap to open; sees the state as of opening.
pub struct Store {
    layout: Layout,
    config: StoreConfig,
    state: State,
}

impl Store {
    /// Creates a new store in `dir` (which must not exist or be empty).
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<StoreConfig> {
        Store::init_in(&Layout::new(dir), opts)
    }

    /// [`Store::init`] in the storage of `layout`.
    pub fn init_in(layout: &Layout, opts: &InitOptions) -> Result<StoreConfig> {
        // Serialises the creation of a store: an exclusive lock on the store directory
        // itself, which exists before any of the store's files do, and which ends with its
        // holder (a killed init leaves no lock behind, only a directory without `config`).
        let _creating = layout.storage().lock_dir(&layout.root).at(&layout.root)?;
        if !is_empty_dir(layout)? {
            return Err(StoreError::AlreadyExists {
                path: layout.root.clone(),
            });
        }
        Store::init_locked(layout, opts)
    }

    /// Creates a store in `dir` unless one is there already (the first use of a store);
    /// returns whether it created it. `dir` may not exist or be empty; a directory that holds
    /// other files is refused ([`StoreError::NotAStore`]).
    ///
    /// Two processes doing this at once (two first intakes) are serialised, so the one that
    /// comes second finds a complete store, never a half-made directory it would call "not a
    /// store".
    pub fn create_if_absent(dir: &Path, opts: &InitOptions) -> Result<bool> {
        Store::create_if_absent_in(&Layout::new(dir), opts)
    }

    /// [`Store::create_if_absent`] in the storage of `layout`.
    pub fn create_if_absent_in(layout: &Layout, opts: &InitOptions) -> Result<bool> {
        let _creating = layout.storage().lock_dir(&layout.root).at(&layout.root)?;
        if layout.storage().exists(&layout.config()) {
            return Ok(false);
        }
        if !is_empty_dir(layout)? {
            return Err(StoreError::NotAStore(layout.root.clone()));
        }
        Store::init_locked(layout, opts)?;
        Ok(true)
    }

    /// Builds the store's files in `layout`, which the caller has locked and found empty.
    fn init_locked(layout: &Layout, opts: &InitOptions) -> Result<StoreConfig> {
        let storage = layout.storage();
        let mut config = StoreConfig::new(opts.hash, opts.domain_id);
        if let Some(size) = opts.block_target_size {
            config.block_target_size = size;
        }
        if let Some((min, avg, max)) = opts.chunk_sizes {
            config.chunker.min_size = min;
            config.chunker.avg_size = avg;
            config.chunker.max_size = max;
        }
        config.validate().map_err(|reason| StoreError::BadConfig {
            path: layout.config(),
            reason,
        })?;
        for d in [
            layout.root.join("log"),
            layout.blocks_open(),
            layout.segments_open(),
            layout.root.join("locks"),
            layout.cache(),
        ] {
            storage.create_dir_all(&d).at(&d)?;
        }
        // Every directory's name must be durable before anything durable goes into it.
        for d in [layout.blocks(), layout.segments()] {
            storage.sync_dir(&d).at(&d)?;
        }
        log::create(storage, &layout.log())?;
        let log_dir = layout.root.join("log");
        storage.sync_dir(&log_dir).at(&log_dir)?;
        // The config is written last: a directory without it is not a store, so a crash
        // during init leaves something `init` can be re-run over (after emptying it). Its
        // directory sync also makes the names of the directories above durable.
        crate::storage::write_atomic(storage, &layout.config(), config.to_json().as_bytes())
            .at(layout.config())?;
        Ok(config)
    }

    /// Opens a store read-only. A torn log tail is ignored (not cut); damage is recorded in
    /// the state for `verify` to report.
    ///
    /// Readers take no lock, so a writer may retire and delete segments between this reading
    /// the log and reading the segments (garbage collection, or a merging commit followed by
    /// the next writer's open). A visible segment whose file is gone while the log has grown
    /// meanwhile is that race, not damage: the log is read again (a few times at most).
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_in(Layout::new(dir))
    }

    /// [`Store::open`] in the storage of `layout`.
    pub fn open_in(layout: Layout) -> Result<Store> {
        let config = load_config(&layout)?;
        let storage = layout.storage();
        let mut attempts = 0;
        loop {
            let (scan, state) = crate::checkpoint::replay(&layout, config.algo(), Runs::Use)?;
            attempts += 1;
            let vanished = state
                .damaged_segments
                .iter()
                .any(|id| !storage.exists(&layout.segments().join(crate::segment::file_name(*id))));
            let grown = || storage.len(&layout.log()).unwrap_or(0) > scan.valid_len;
            if attempts >= 3 || !vanished || !grown() {
                return Ok(Store {
                    layout,
                    config,
                    state,
                });
            }
        }
    }

    /// The retained snapshots of the store in `dir` (in id order) and the log damage that
    /// hides any, read without loading the index: the log's chain is checked and its tail
    /// replayed over the checkpoint as [`Store::open`] does, but no segment is read, so
    /// listing stays cheap however large the index is.
    pub fn list_snapshots(dir: &Path) -> Result<(Vec<Snapshot>, Option<crate::LogDamage>)> {
        Store::list_snapshots_in(&Layout::new(dir))
    }

    /// [`Store::list_snapshots`] in the storage of `layout`.
    pub fn list_snapshots_in(layout: &Layout) -> Result<(Vec<Snapshot>, Option<crate::LogDamage>)> {
        let config = load_config(layout)?;
        let st = crate::checkpoint::replay_log(layout, config.algo())?;
        Ok((st.snapshots.into_values().collect(), st.log_damage))
    }

    /// [`Store::open_in`] without the log checkpoint and without index runs: the whole log
    /// is replayed and every segment loaded into memory. For
    /// checking that a checkpoint gives the same state (tests, benchmarks); every answer
    /// must be the same as [`Store::open_in`]'s.
    pub fn open_replaying_whole_log_in(layout: Layout) -> Result<Store> {
        let config = load_config(&layout)?;
        let scan = log::read(layout.storage(), &layout.log())?;
        let state = State::replay(&layout, config.algo(), &scan, Runs::Off)?;
        Ok(Store {
            layout,
            config,
            state,
        })
    }

    /// The logseq up to which opening took the state from the log checkpoint instead of
    /// replaying records (0: the whole log was replayed).
    pub fn checkpointed_at(&self) -> u64 {
        self.state.checkpointed_at
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
    /// How many visible segments opening held as their index runs instead of loading them
    /// (`crate::index`).
    pub fn segments_held_as_runs(&self) -> usize {
        self.state.index.run_segments().count()
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// The retained snapshots, in id order.
    pub fn snapshots(&self) -> Vec<&Snapshot> {
        self.state.snapshot_list()
    }

    /// The snapshot a name given by a user means: an id, `latest`, or a label.
    pub fn resolve_snapshot(&self, name: &str) -> Result<&Snapshot> {
        self.state.resolve_snapshot(name)
    }

    /// The visible segments, in id order.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentInfo> {
        self.state.segments.values()
    }

    /// Segment `segment_id`, if it is visible.
    pub fn segment(&self, segment_id: u64) -> Option<&SegmentInfo> {
        self.state.segments.get(&segment_id)
    }

    /// Every block the visible index refers to.
    pub fn blocks(&self) -> &[BlockId] {
        &self.state.blocks
    }

    /// A complete log record that fails its check, if any: everything from it on is hidden
    /// from this view. Readers warn about it; `asl-admin repair-log` mends it.
    pub fn log_damage(&self) -> Option<&crate::LogDamage> {
        self.state.log_damage.as_ref()
    }

    /// How many damaged objects opening found (`verify` reports them).
    pub fn damage_count(&self) -> usize {
        self.state.damage.len()
    }

    /// How much the store holds, as of opening.
    pub fn counts(&self) -> StoreCounts {
        let st = &self.state;
        StoreCounts {
            snapshots: st.snapshots.len(),
            index_entries: st.index.len(),
            segments: st.segments.len(),
            blocks: st.blocks.len(),
            chunk_raw_bytes: st
                .index
                .iter()
                .map(|(_, l)| l)
                .filter(|l| l.kind == RecordKind::Chunk)
                .map(|l| u64::from(l.raw_len))
                .sum(),
            log_records: st.last_logseq,
        }
    }

    /// The files no log record refers to (left by a killed or out-of-space writer), listed
    /// now against the log as of opening. While a writer runs, its uncommitted files count
    /// too, until its commit names them.
    pub fn unreferenced(&self) -> Result<crate::Unreferenced> {
        let files = crate::unreferenced::list(&self.layout, &self.state)?;
        Ok(crate::Unreferenced::from_files(
            &files,
            !self.state.damaged_segments.is_empty(),
        ))
    }

    /// A reader of CURRENT.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.layout, &self.state, None)
    }

    /// A reader that sees exactly what snapshot `snapshot` saw.
    pub fn reader_at(&self, snapshot: &Snapshot) -> Reader<'_> {
        Reader::new(&self.layout, &self.state, Some(snapshot.logseq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_created_at_once_in_one_directory_are_made_once_and_always_whole() {
        for round in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("s{round}"));
            let created: Vec<bool> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..6)
                    .map(|_| s.spawn(|| Store::create_if_absent(&path, &InitOptions::default())))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap().unwrap())
                    .collect()
            });
            assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
            Store::open(&path).unwrap();
        }
    }

    #[test]
    fn creating_over_files_that_are_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        assert!(matches!(
            Store::create_if_absent(dir.path(), &InitOptions::default()),
            Err(StoreError::NotAStore(_))
        ));
        assert!(matches!(
            Store::init(dir.path(), &InitOptions::default()),
            Err(StoreError::AlreadyExists { .. })
        ));
    }
}
