//! The store's `config` file: fixed at creation, read at every open.
//!
//! Everything that changes how bytes are laid out is here (hash, chunker parameters,
//! compression), so that two writers of the same store always produce the same chunks.

use std::path::Path;

use crate::error::{IoContext, Result, StoreError};
use crate::reference::HashAlgo;

/// The newest store format this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The zstd levels a store's `compression_level` (and a writer's session level) may take.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;
/// The value of the `format` field, to recognise a store's config among other JSON files.
pub const FORMAT_NAME: &str = "asl-store";

/// FastCDC 2020 parameters. Power-of-two, even sizes: fastcdc 5 requires even sizes, and
/// 4.0.0 changed cut points for non-power-of-two averages, so we only allow powers of two.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// FastCDC normalisation level (0–3).
    pub normalization: u8,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            algorithm: String::new(),
            // Large chunks: zstd compresses a 512 KiB chunk better than a 64 KiB one (the
            // figures are in bench/results), and an edit still costs at most one 2 MiB chunk.
            min_size: 128 * 1024,
            avg_size: 512 * 1024,
            max_size: 2048 * 1024,
            normalization: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The store format version; a newer one is refused.
    pub version: u32,
    /// Random identity of this store (16 hex digits), chosen at creation.
    pub store_id: String,
    /// The domain every entry of this store belongs to.
    pub domain_id: u32,
    /// `blake3` or `sha256`: the algorithm of every reference in this store.
    pub hash: String,
    pub chunker: ChunkerParams,
    /// `zstd`.
    pub compression: String,
    pub compression_level: i32,
    /// A block is sealed once its data reaches this many bytes.
    pub block_target_size: u32,
}

impl StoreConfig {
    pub fn new(hash: HashAlgo, domain_id: u32) -> StoreConfig {
        let chunker = ChunkerParams {
            algorithm: "fastcdc-2020".into(),
            ..ChunkerParams::default()
        };
        StoreConfig {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            store_id: random_hex16(),
            domain_id,
            hash: hash.name().into(),
            chunker,
            compression: "zstd".into(),
            compression_level: 3,
            block_target_size: 8 * 1024 * 1024,
        }
    }

    /// The hash algorithm (validated at load).
    pub fn algo(&self) -> HashAlgo {
        HashAlgo::from_name(&self.hash).unwrap_or(HashAlgo::Blake3)
    }

    pub fn load(storage: &dyn crate::storage::Storage, path: &Path) -> Result<StoreConfig> {
        let bytes = storage.read(path).at(path)?;
        // Look at the version before the full schema: a newer format may have other fields.
        let raw: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::BadConfig {
                path: path.into(),
                reason: e.to_string(),
            })?;
        if raw.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NAME) {
            return Err(StoreError::BadConfig {
                path: path.into(),
                reason: format!("'format' is not \"{FORMAT_NAME}\""),
            });
        }
        let version = raw.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if version > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: path.into(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let cfg: StoreConfig = serde_json::from_value(raw).map_err(|e| StoreError::BadConfig {
            path: path.into(),
            reason: e.to_string(),
        })?;
        cfg.validate().map_err(|reason| StoreError::BadConfig {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.version == 0 {
            return Err("version 0 is not valid".into());
        }
        if HashAlgo::from_name(&self.hash).is_none() {
            return Err(format!("unknown hash '{}' (blake3 or sha256)", self.hash));
        }
        let c = &self.chunker;
        if c.algorithm != "fastcdc-2020" {
            return Err(format!("unknown chunker '{}'", c.algorithm));
        }
        let pow2 = |v: u32| v.is_power_of_two();
        if !(pow2(c.min_size) && pow2(c.avg_size) && pow2(c.max_size)) {
            return Err("chunk sizes must be powers of two".into());
        }
        let in_range = (64..=1 << 20).contains(&c.min_size)
            && (256..=4 << 20).contains(&c.avg_size)
            && (1024..=16 << 20).contains(&c.max_size)
            && c.min_size < c.avg_size
            && c.avg_size < c.max_size;
        if !in_range {
            return Err("chunk sizes out of range (need min < avg < max)".into());
        }
        if c.normalization > 3 {
            return Err("normalization must be 0..=3".into());
        }
        if self.compression != "zstd" {
            return Err(format!("unknown compression '{}'", self.compression));
        }
        if !ZSTD_LEVELS.contains(&self.compression_level) {
            return Err("compression_level must be 1..=19".into());
        }
        if !(1 << 16..=1 << 30).contains(&self.block_target_size) {
            return Err("block_target_size must be 64 KiB..1 GiB".into());
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// 64 random bits as hex, from the kernel.
pub(crate) fn random_hex16() -> String {
    let mut b = [0u8; 8];
    // getrandom(2) never fails for 8 bytes once the pool is initialised; fall back to time.
    let filled = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    if !matches!(filled, Ok(n) if n == b.len()) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ u64::from(std::process::id())).to_le_bytes();
    }
    hex::encode(b)
}
