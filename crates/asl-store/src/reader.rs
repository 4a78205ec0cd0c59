//! Reading artifacts back, bounded by a snapshot, verifying every byte.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::access::{AccessError, ArtifactRead, TypeTag};
use crate::block::{self, BlockId, PartList, RecordKind};
use crate::error::{Result, StoreError};
use crate::layout::Layout;
use crate::reference::Reference;
use crate::state::{Location, State};
use crate::storage::ReadFile;

/// Open block files kept by a reader; small files of one directory share blocks, so a few
/// handles serve many reads.
const MAX_OPEN_BLOCKS: usize = 128;

/// A reader of the state as of one log position.
pub struct Reader<'a> {
    layout: &'a Layout,
    state: &'a State,
    at: Option<u64>,
    files: Mutex<HashMap<u32, Arc<dyn ReadFile>>>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(layout: &'a Layout, state: &'a State, at: Option<u64>) -> Reader<'a> {
        Reader {
            layout,
            state,
            at,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The index entry of an artifact, if visible to this reader.
    pub fn locate(&self, reference: &Reference) -> Option<Location> {
        self.state.lookup(reference, self.at)
    }

    /// The id of the block that holds the record at `loc`, a location this reader gave.
    pub fn block_id(&self, loc: &Location) -> BlockId {
        self.state.blocks[loc.block as usize]
    }

    /// Every artifact of type `tag` visible to this reader, in no particular order.
    pub fn artifacts_of_type(&self, tag: TypeTag) -> Vec<Reference> {
        let Some(algo) = self.state.algo else {
            return Vec::new();
        };
        self.state
            .index
            .iter()
            .filter(|(_, loc)| loc.type_tag == tag.0)
            .map(|(d, _)| Reference::new(algo, d))
            .filter(|r| self.locate(r).is_some())
            .collect()
    }

    fn block_file(&self, block: u32) -> Result<(Arc<dyn ReadFile>, std::path::PathBuf)> {
        let id = self.state.blocks[block as usize];
        let path = id.path(&self.layout.blocks());
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = files.get(&block) {
            return Ok((f.clone(), path));
        }
        let f = self.layout.storage().open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::corrupt(format!("block {id}"), "the block file is missing")
            } else {
                StoreError::io(&path, e)
            }
        })?;
        if files.len() >= MAX_OPEN_BLOCKS {
            files.clear();
        }
        files.insert(block, f.clone());
        Ok((f, path))
    }

    /// Reads and decodes the record at `loc` (not verified against any hash).
    pub fn read_record(&self, loc: &Location) -> Result<Vec<u8>> {
        let (file, path) = self.block_file(loc.block)?;
        let stored = block::read_stored(&*file, &path, loc.offset, loc.stored_len)?;
        block::decode_record(loc.codec, &stored, loc.raw_len).map_err(|reason| {
            StoreError::corrupt(
                format!(
                    "block {} record at offset {}",
                    self.state.blocks[loc.block as usize], loc.offset
                ),
                reason.to_string(),
            )
        })
    }

    /// Reads one chunk and checks its hash.
    fn read_chunk(&self, reference: &Reference, loc: &Location) -> Result<Vec<u8>, AccessError> {
        let raw = self.read_record(loc).map_err(store_err)?;
        let actual = reference.algo().digest(&raw);
        if actual != *reference {
            return Err(AccessError::Corrupt {
                reference: *reference,
                actual,
            });
        }
        Ok(raw)
    }

    /// The part list of a composite artifact.
    pub fn part_list(&self, loc: &Location) -> Result<PartList> {
        let raw = self.read_record(loc)?;
        PartList::decode(&raw).map_err(|reason| {
            StoreError::corrupt(
                format!(
                    "part list in block {} at offset {}",
                    self.state.blocks[loc.block as usize], loc.offset
                ),
                reason.to_string(),
            )
        })
    }

    /// The type tag an artifact was stored with.
    pub fn type_tag(&self, reference: &Reference) -> Option<u32> {
        self.locate(reference).map(|l| l.type_tag)
    }
}

fn store_err(e: StoreError) -> AccessError {
    AccessError::Store(Box::new(e))
}

impl ArtifactRead for Reader<'_> {
    fn read_to(&self, reference: &Reference, out: &mut dyn Write) -> Result<u64, AccessError> {
        let loc = self
            .locate(reference)
            .ok_or(AccessError::NotFound(*reference))?;
        match loc.kind {
            RecordKind::Chunk => {
                let raw = self.read_chunk(reference, &loc)?;
                out.write_all(&raw).map_err(AccessError::Sink)?;
                Ok(raw.len() as u64)
            }
            RecordKind::Parts => {
                let parts = self.part_list(&loc).map_err(store_err)?;
                let mut whole = reference.algo().hasher();
                let mut total = 0u64;
                for (_, digest) in &parts.parts {
                    let part = Reference::new(reference.algo(), *digest);
                    let ploc = self.state.lookup(&part, None).ok_or_else(|| {
                        store_err(StoreError::corrupt(
                            format!("artifact {reference}"),
                            format!("its part {part} is missing from the index"),
                        ))
                    })?;
                    let raw = self.read_chunk(&part, &ploc)?;
                    whole.update(&raw);
                    total += raw.len() as u64;
                    out.write_all(&raw).map_err(AccessError::Sink)?;
                }
                let actual = whole.finish();
                if actual != *reference {
                    return Err(AccessError::Corrupt {
                        reference: *reference,
                        actual,
                    });
                }
                Ok(total)
            }
        }
    }

    fn artifact_len(&self, reference: &Reference) -> Option<u64> {
        self.locate(reference).map(|l| l.artifact_len)
    }
}
