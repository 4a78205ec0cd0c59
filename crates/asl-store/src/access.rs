//! The two narrow interfaces other crates use to put artifacts into a store and read them back.
//!
//! `asl-fs` (trees, intake, restore), provenance and the remote client are written against
//! these traits, not against the store's internals. [`crate::Writer`] and [`crate::Reader`]
//! implement them on a real store; [`MemoryStore`] implements both in memory for unit tests of
//! logic that sits on top of the store.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;

use crate::reference::{HashAlgo, Reference};

/// What kind of artifact a put stores. The store treats bytes as opaque; the tag only tells
/// garbage collection which decoder lists an artifact's children (`TypeTag::BYTES` has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TypeTag(pub u32);

impl TypeTag {
    /// Plain bytes (file contents, stdout, ...): no children.
    pub const BYTES: TypeTag = TypeTag(0);
    /// A directory tree artifact (asl-fs); children are listed by `asl_fs`'s tree decoder.
    pub const TREE: TypeTag = TypeTag(1);
    /// An execution receipt (PER).
    pub const RECEIPT: TypeTag = TypeTag(2);
    /// A TGK edge.
    pub const EDGE: TypeTag = TypeTag(3);
}

/// The result of storing one artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    /// The artifact's reference: the hash of all its bytes.
    pub reference: Reference,
    /// Its length in bytes.
    pub len: u64,
    /// Bytes of new chunk data this put added to the store (0 when everything deduplicated);
    /// counted before compression.
    pub new_bytes: u64,
    /// Chunks the artifact was cut into, and how many of them were new.
    pub chunks: u32,
    pub new_chunks: u32,
}

impl Put {
    /// An artifact stored as one chunk, `new` when that chunk was not in the store yet.
    pub fn one_chunk(reference: Reference, len: u64, new: bool) -> Put {
        Put {
            reference,
            len,
            new_bytes: if new { len } else { 0 },
            chunks: 1,
            new_chunks: u32::from(new),
        }
    }
}

/// Errors of the access traits.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Reading the *source* failed (an unreadable file during intake). Nothing was committed
    /// for this artifact; the caller decides whether to record the error and go on.
    #[error("reading the source failed: {0}")]
    Source(#[source] std::io::Error),
    /// Writing to the *destination* of a read failed.
    #[error("writing the output failed: {0}")]
    Sink(#[source] std::io::Error),
    #[error("artifact {0} is not in the store")]
    NotFound(Reference),
    /// The bytes read back do not hash to the reference asked for.
    #[error("artifact {reference} is damaged: its bytes hash to {actual}")]
    Corrupt {
        reference: Reference,
        actual: Reference,
    },
    /// Any other store failure, already described.
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl AccessError {
    /// Whether this error means the store's data is damaged or lost (exit code 3), rather
    /// than an operational failure: a hash mismatch, an artifact the index lacks, or a store
    /// error that is itself an integrity problem (a missing or damaged block file, which the
    /// reader reports through [`AccessError::Store`]).
    pub fn is_integrity(&self) -> bool {
        match self {
            AccessError::Corrupt { .. } | AccessError::NotFound(_) => true,
            AccessError::Store(e) => e
                .downcast_ref::<crate::StoreError>()
                .is_some_and(crate::StoreError::is_integrity),
            AccessError::Source(_) | AccessError::Sink(_) => false,
        }
    }
}

/// Putting artifacts into a store. Implementations are safe to call from many threads at
/// once: intake runs one put per worker thread.
pub trait ArtifactWrite: Sync {
    /// The hash algorithm references are made with.
    fn algo(&self) -> HashAlgo;
    /// Stores `data` as one artifact.
    fn put_bytes(&self, data: &[u8], tag: TypeTag) -> Result<Put, AccessError>;
    /// Stores everything `source` yields as one artifact, streaming (memory stays bounded by
    /// the chunk size, whatever the artifact's size). A read error returns
    /// [`AccessError::Source`].
    fn put_reader(&self, source: &mut dyn Read, tag: TypeTag) -> Result<Put, AccessError>;
    /// Whether the artifact is already stored (visible or written by this writer).
    fn contains(&self, reference: &Reference) -> bool;
}

/// Reading artifacts back. Every read verifies the bytes against the reference.
pub trait ArtifactRead: Sync {
    /// Writes the artifact's bytes to `out` and returns their length. The hash is checked as
    /// the bytes stream; on a mismatch [`AccessError::Corrupt`] is returned (the bytes already
    /// written must then be discarded by the caller).
    fn read_to(&self, reference: &Reference, out: &mut dyn Write) -> Result<u64, AccessError>;
    /// The artifact's length, or `None` when it is not in the store.
    fn artifact_len(&self, reference: &Reference) -> Option<u64>;
    /// Reads a whole (small) artifact into memory.
    fn read_all(&self, reference: &Reference) -> Result<Vec<u8>, AccessError> {
        let mut v = Vec::new();
        self.read_to(reference, &mut v)?;
        Ok(v)
    }
}

/// An in-memory store for unit tests of code built on the access traits. No chunking, no
/// persistence; concurrency-safe.
pub struct MemoryStore {
    algo: HashAlgo,
    artifacts: Mutex<HashMap<Reference, (TypeTag, Vec<u8>)>>,
}

impl MemoryStore {
    pub fn new(algo: HashAlgo) -> MemoryStore {
        MemoryStore {
            algo,
            artifacts: Mutex::new(HashMap::new()),
        }
    }

    /// Number of distinct artifacts stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type tag an artifact was stored with.
    pub fn tag(&self, reference: &Reference) -> Option<TypeTag> {
        self.lock().get(reference).map(|(t, _)| *t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Reference, (TypeTag, Vec<u8>)>> {
        // A panic in another test thread must not hide this test's result.
        self.artifacts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ArtifactWrite for MemoryStore {
    fn algo(&self) -> HashAlgo {
        self.algo
    }

    fn put_bytes(&self, data: &[u8], tag: TypeTag) -> Result<Put, AccessError> {
        let reference = self.algo.digest(data);
        let mut map = self.lock();
        let new = !map.contains_key(&reference);
        if new {
            map.insert(reference, (tag, data.to_vec()));
        }
        Ok(Put::one_chunk(reference, data.len() as u64, new))
    }

    fn put_reader(&self, source: &mut dyn Read, tag: TypeTag) -> Result<Put, AccessError> {
        let mut data = Vec::new();
        source.read_to_end(&mut data).map_err(AccessError::Source)?;
        self.put_bytes(&data, tag)
    }

    fn contains(&self, reference: &Reference) -> bool {
        self.lock().contains_key(reference)
    }
}

impl ArtifactRead for MemoryStore {
    fn read_to(&self, reference: &Reference, out: &mut dyn Write) -> Result<u64, AccessError> {
        let data = self
            .lock()
            .get(reference)
            .map(|(_, d)| d.clone())
            .ok_or(AccessError::NotFound(*reference))?;
        out.write_all(&data).map_err(AccessError::Sink)?;
        Ok(data.len() as u64)
    }

    fn artifact_len(&self, reference: &Reference) -> Option<u64> {
        self.lock().get(reference).map(|(_, d)| d.len() as u64)
    }
}
