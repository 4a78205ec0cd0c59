//! The wire protocol of `asl-server`, version 1.1 (`docs/REMOTE.md` is its specification).
//!
//! Every path starts with `/v1/stores/{store}`. JSON bodies are UTF-8 objects; artifact bytes
//! travel raw. An upload batch is a sequence of frames ([`encode_frame`], [`FrameReader`]):
//!
//! ```text
//! frame := ref_len u8 | reference (ref_len bytes, text form "b3:…") | type_tag u32 LE
//!        | len u64 LE | bytes (len)
//! ```

use serde::{Deserialize, Serialize};

/// The protocol version in every path.
pub const VERSION: &str = "v1";
/// The minor version this side speaks: 1 added the batched read (`POST …/read`). A server
/// reports it in [`StoreInfo::api_minor`]; a server that does not (0) lacks the batched read.
pub const API_MINOR: u32 = 1;

/// At most this many references in one `missing` request.
pub const MAX_MISSING_BATCH: usize = 10_000;
/// At most this many bytes in one buffered request body (JSON or a frame batch).
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// At most this many bytes of one streamed artifact.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 40;
/// At most this many references in one batched read (`POST …/read`).
pub const MAX_READ_BATCH: usize = 1_000;
/// A batched read answers artifacts up to this length; longer ones are read alone (`GET`).
pub const MAX_READ_ARTIFACT: u64 = 4 << 20;
/// A batched read's answer stops after the item that takes it to this many bytes of
/// artifact data: the client asks again for the rest.
pub const MAX_READ_ANSWER: u64 = 16 << 20;

/// `GET /v1/stores/{store}`: what a client needs to make the same references as the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    pub store: String,
    /// The hash algorithm's name (`blake3`, `sha256`).
    pub hash: String,
    pub domain_id: u32,
    /// The caller's rights on this store: `read`, `write`, `admin`.
    pub rights: Vec<String>,
    /// The minor version of the API the server speaks (absent, 0: version 1.0).
    #[serde(default)]
    pub api_minor: u32,
    /// The store's random identity, chosen at its creation (1.1; empty from a 1.0 server):
    /// a store replaced under the same name has another.
    #[serde(default)]
    pub store_id: String,
}

/// `POST /v1/stores/{store}/missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRequest {
    pub refs: Vec<String>,
}

/// The references of the request that the store does not hold, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingResponse {
    pub missing: Vec<String>,
}

/// `POST /v1/stores/{store}/read[?snapshot=ID]`: many artifacts in one request. The answer
/// is a sequence of [`ReadItem`]s ([`encode_read_item`], [`ReadItemReader`]), one per
/// reference in request order, possibly only a prefix of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub refs: Vec<String>,
}

/// What a batched read answers for one reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// The bytes are the artifact's whole content (the client checks their hash).
    Found = 0,
    /// Not visible as of the snapshot asked for.
    NotFound = 1,
    /// Longer than [`MAX_READ_ARTIFACT`]: read it alone.
    TooLarge = 2,
    /// The server could not read it (damage, or another failure): read it alone to learn why.
    Failed = 3,
}

impl ReadStatus {
    fn from_byte(b: u8) -> Option<ReadStatus> {
        Some(match b {
            0 => ReadStatus::Found,
            1 => ReadStatus::NotFound,
            2 => ReadStatus::TooLarge,
            3 => ReadStatus::Failed,
            _ => return None,
        })
    }
}

/// One item of a batched read's answer, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadItem<'a> {
    pub status: ReadStatus,
    /// The artifact for [`ReadStatus::Found`], empty otherwise.
    pub bytes: &'a [u8],
}

/// Appends one item of a batched read's answer to `out`:
/// `status u8 | len u64 LE | bytes (len)`.
pub fn encode_read_item(out: &mut Vec<u8>, status: ReadStatus, bytes: &[u8]) {
    out.push(status as u8);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes a batched read's answer. Never panics on arbitrary input; a broken item ends it.
pub struct ReadItemReader<'a> {
    rest: &'a [u8],
    at: usize,
}

impl<'a> ReadItemReader<'a> {
    pub fn new(answer: &'a [u8]) -> ReadItemReader<'a> {
        ReadItemReader {
            rest: answer,
            at: 0,
        }
    }
}

impl<'a> Iterator for ReadItemReader<'a> {
    type Item = Result<ReadItem<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let at = self.at;
        let item = (|| {
            if self.rest.len() < 9 {
                return Err(FrameError::Truncated {
                    at,
                    need: 9 - self.rest.len(),
                });
            }
            let status = ReadStatus::from_byte(self.rest[0]).ok_or(FrameError::Status {
                at,
                status: self.rest[0],
            })?;
            let mut len = [0u8; 8];
            len.copy_from_slice(&self.rest[1..9]);
            let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
            let body = &self.rest[9..];
            if body.len() < len {
                return Err(FrameError::Truncated {
                    at,
                    need: len - body.len(),
                });
            }
            self.rest = &body[len..];
            self.at += 9 + len;
            Ok(ReadItem {
                status,
                bytes: &body[..len],
            })
        })();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

/// What an upload stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    /// Artifacts received.
    pub artifacts: u64,
    /// Bytes of chunk data the store did not hold before (before compression).
    pub new_bytes: u64,
}

/// `POST /v1/stores/{store}/commit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRequest {
    /// The snapshot's root artifact (a tree, for an intake).
    pub root: String,
    /// Chosen by the client, the same on every retry of one commit: a commit whose key a
    /// snapshot already carries returns that snapshot.
    pub key: String,
    pub meta: asl_store::SnapshotMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitResponse {
    pub snapshot: asl_store::Snapshot,
    /// `false`: an earlier try of the same commit made it.
    pub created: bool,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable word: `unauthenticated`, `forbidden`, `bad-request`, `hash-mismatch`,
    /// `incomplete`, `not-found`, `too-large`, `damaged`, `server`.
    pub kind: String,
    pub message: String,
    /// For `incomplete`: the references a commit lacks (at most 1000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// Appends one upload frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, reference: &str, type_tag: u32, bytes: &[u8]) {
    let r = reference.as_bytes();
    out.push(r.len() as u8);
    out.extend_from_slice(r);
    out.extend_from_slice(&type_tag.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// One decoded upload frame, borrowing from the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub reference: &'a str,
    pub type_tag: u32,
    pub bytes: &'a [u8],
}

/// Why a batch does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame at byte {at}: truncated ({need} more bytes needed)")]
    Truncated { at: usize, need: usize },
    #[error("frame at byte {at}: the reference is not UTF-8")]
    Reference { at: usize },
    #[error("item at byte {at}: unknown status {status}")]
    Status { at: usize, status: u8 },
}

/// Decodes the frames of an upload batch. Never panics on arbitrary input.
pub struct FrameReader<'a> {
    rest: &'a [u8],
    at: usize,
}

impl<'a> FrameReader<'a> {
    pub fn new(batch: &'a [u8]) -> FrameReader<'a> {
        FrameReader { rest: batch, at: 0 }
    }

    fn take(&mut self, n: usize, frame_at: usize) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(FrameError::Truncated {
                at: frame_at,
                need: n - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.at += n;
        Ok(head)
    }
}

impl<'a> Iterator for FrameReader<'a> {
    type Item = Result<Frame<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let at = self.at;
        let mut frame = || -> Result<Frame<'a>, FrameError> {
            let ref_len = self.take(1, at)?[0] as usize;
            let reference = std::str::from_utf8(self.take(ref_len, at)?)
                .map_err(|_| FrameError::Reference { at })?;
            let tag = self.take(4, at)?;
            let type_tag = u32::from_le_bytes([tag[0], tag[1], tag[2], tag[3]]);
            let len = self.take(8, at)?;
            let len = u64::from_le_bytes(len.try_into().unwrap_or_default());
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let bytes = self.take(len, at)?;
            Ok(Frame {
                reference,
                type_tag,
                bytes,
            })
        };
        let out = frame();
        if out.is_err() {
            // A broken frame ends the batch: nothing after it can be found.
            self.rest = &[];
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip(items in proptest::collection::vec(
            ("[a-z0-9:]{0,80}", any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)),
            0..8,
        )) {
            let mut batch = Vec::new();
            for (r, t, b) in &items {
                encode_frame(&mut batch, r, *t, b);
            }
            let got: Vec<Frame<'_>> = FrameReader::new(&batch).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got.len(), items.len());
            for (g, (r, t, b)) in got.iter().zip(&items) {
                prop_assert_eq!(g.reference, r.as_str());
                prop_assert_eq!(g.type_tag, *t);
                prop_assert_eq!(g.bytes, b.as_slice());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_end_after_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut seen_error = false;
            for f in FrameReader::new(&bytes) {
                prop_assert!(!seen_error, "a frame after an error");
                seen_error = f.is_err();
            }
        }

        #[test]
        fn read_items_round_trip_and_arbitrary_answers_never_panic(
            items in proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
            junk in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut answer = Vec::new();
            let statuses = [ReadStatus::Found, ReadStatus::NotFound, ReadStatus::TooLarge, ReadStatus::Failed];
            for (s, b) in &items {
                encode_read_item(&mut answer, statuses[*s as usize], b);
            }
            let got: Vec<ReadItem<'_>> = ReadItemReader::new(&answer).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got.len(), items.len());
            for (g, (s, b)) in got.iter().zip(&items) {
                prop_assert_eq!(g.status, statuses[*s as usize]);
                prop_assert_eq!(g.bytes, b.as_slice());
            }
            let mut seen_error = false;
            for i in ReadItemReader::new(&junk) {
                prop_assert!(!seen_error, "an item after an error");
                seen_error = i.is_err();
            }
        }

        #[test]
        fn a_truncated_batch_is_an_error(body in proptest::collection::vec(any::<u8>(), 1..200), cut in 1usize..200) {
            let mut batch = Vec::new();
            encode_frame(&mut batch, "b3:00", 1, &body);
            let cut = cut.min(batch.len() - 1);
            let last = FrameReader::new(&batch[..batch.len() - cut]).last().unwrap();
            let truncated = matches!(last, Err(FrameError::Truncated { .. }));
            prop_assert!(truncated);
        }
    }
}
