//! Where each file of a store lives (see `docs/FORMAT.md`), and reading its configuration.
//!
//! Both the read-only [`crate::Store`] and the [`crate::Writer`] start from a [`Layout`]; it
//! depends on neither.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use crate::storage::Storage;

/// The files and directories of a store (see `docs/FORMAT.md`), and the storage they live in.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    storage: Arc<dyn Storage>,
}

impl Layout {
    /// A store at `root` on the local file system ([`crate::storage::default_storage`]).
    pub fn new(root: &Path) -> Layout {
        Layout::on(crate::storage::default_storage(), root)
    }
    /// A store at `root` in `storage`.
    pub fn on(storage: Arc<dyn Storage>, root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            storage,
        }
    }
    /// Where every durable byte of the store is read and written.
    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }
    pub(crate) fn storage_arc(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("log").join("asl.log")
    }
    pub fn blocks(&self) -> PathBuf {
        self.root.join("blocks")
    }
    pub fn blocks_open(&self) -> PathBuf {
        self.root.join("blocks").join("open")
    }
    pub fn segments(&self) -> PathBuf {
        self.root.join("segments")
    }
    pub fn segments_open(&self) -> PathBuf {
        self.root.join("segments").join("open")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("locks").join("writer.lock")
    }
    /// Derived caches (stat cache ...): deleting this directory loses nothing.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// The index runs of large segments (`crate::index::run`), a derived cache.
    pub fn index_runs(&self) -> PathBuf {
        self.cache().join("index")
    }
}

pub(crate) fn load_config(layout: &Layout) -> Result<StoreConfig> {
    let path = layout.config();
    if !layout.storage().exists(&path) {
        return Err(StoreError::NotAStore(layout.root.clone()));
    }
    StoreConfig::load(layout.storage(), &path)
}
