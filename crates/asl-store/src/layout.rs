//! Where each file of a store lives (see `docs/FORMAT.md`), and reading its configuration.
//!
//! Both the read-only [`crate::Store`] and the [`crate::Writer`] start from a [`Layout`]; it
//! depends on neither.

use std::path::{Path, PathBuf};

use crate::config::StoreConfig;
use crate::error::{Result, StoreError};

/// The files and directories of a store (see `docs/FORMAT.md`).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
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
}

pub(crate) fn load_config(layout: &Layout) -> Result<StoreConfig> {
    let path = layout.config();
    if !path.exists() {
        return Err(StoreError::NotAStore(layout.root.clone()));
    }
    StoreConfig::load(&path)
}
