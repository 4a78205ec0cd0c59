//! The payloads of the log record types this store writes (see `docs/FORMAT.md`).
//!
//! `SEGMENT_SEAL`, `TOMBSTONE` and `TOMBSTONE_LIFT` carry the ENC-ASL-LOG v1 type ids; the
//! others are ours, in ranges the spec leaves free. Readers skip any other type.

use crate::reference::{DIGEST_LEN, HashAlgo, Reference};

pub const SEGMENT_SEAL: u32 = 0x01;
pub const TOMBSTONE: u32 = 0x10;
pub const TOMBSTONE_LIFT: u32 = 0x11;
pub const SNAPSHOT: u32 = 0x20;
pub const SNAPSHOT_FORGET: u32 = 0x21;
pub const GC_COMMIT: u32 = 0x30;

/// The name of a record type, for tools.
pub fn type_name(t: u32) -> &'static str {
    match t {
        SEGMENT_SEAL => "SEGMENT_SEAL",
        TOMBSTONE => "TOMBSTONE",
        TOMBSTONE_LIFT => "TOMBSTONE_LIFT",
        SNAPSHOT => "SNAPSHOT",
        SNAPSHOT_FORGET => "SNAPSHOT_FORGET",
        GC_COMMIT => "GC_COMMIT",
        _ => "UNKNOWN",
    }
}

/// A decoded record payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Segment `segment_id` (with `record_count` records and file checksum `checksum`) is
    /// visible from this record's logseq on.
    SegmentSeal {
        segment_id: u64,
        record_count: u64,
        checksum: [u8; 32],
    },
    /// Entries of `domain_id` for `reference` sealed before this record are hidden.
    Tombstone {
        domain_id: u32,
        reference: Reference,
    },
    /// Lifts an earlier tombstone of the same reference.
    TombstoneLift {
        domain_id: u32,
        reference: Reference,
    },
    /// A snapshot anchored at this record's logseq.
    Snapshot {
        snapshot_id: u64,
        root: Option<Reference>,
        meta: Vec<u8>,
    },
    /// Snapshot `snapshot_id` is no longer retained.
    SnapshotForget { snapshot_id: u64 },
    /// Garbage collection committed: `retired` segments are replaced by the compacted segment
    /// (if `segment_id` is non-zero) and `deleted_blocks` are gone.
    GcCommit {
        segment_id: u64,
        record_count: u64,
        checksum: [u8; 32],
        retired: Vec<u64>,
        deleted_blocks: Vec<[u8; 32]>,
    },
    /// A type this version does not know; skipped.
    Unknown(u32),
}

/// Why the payload of a log record of a known type does not decode. Offsets are byte
/// offsets in the payload; `record` is the type's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    #[error(
        "{record} payload of {len} bytes ends inside {field} at offset {offset} \
         ({needed} bytes needed)"
    )]
    Truncated {
        record: &'static str,
        field: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("{record} payload: {field} at offset {offset} {problem}")]
    Reference {
        record: &'static str,
        field: &'static str,
        offset: usize,
        problem: &'static str,
    },
    #[error("{record} payload has {extra} bytes after its last field, from offset {offset}")]
    TrailingBytes {
        record: &'static str,
        offset: usize,
        extra: usize,
    },
}

/// A payload being decoded field by field; errors name the field and where it starts.
struct Payload<'a> {
    bytes: &'a [u8],
    pos: usize,
    record: &'static str,
}

impl<'a> Payload<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], RecordDecodeError> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < n {
            return Err(RecordDecodeError::Truncated {
                record: self.record,
                field,
                offset: self.pos,
                needed: n,
                len: self.bytes.len(),
            });
        }
        self.pos += n;
        Ok(&rest[..n])
    }
    fn u32le(&mut self, field: &'static str) -> Result<u32, RecordDecodeError> {
        let s = self.take(field, 4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64le(&mut self, field: &'static str) -> Result<u64, RecordDecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(field, 8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn arr32(&mut self, field: &'static str) -> Result<[u8; 32], RecordDecodeError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(field, 32)?);
        Ok(a)
    }
    /// An optional reference: 34 zero bytes mean none.
    fn reference(&mut self, field: &'static str) -> Result<Option<Reference>, RecordDecodeError> {
        let offset = self.pos;
        let raw = self.take(field, 2 + DIGEST_LEN)?;
        let bad = |problem| RecordDecodeError::Reference {
            record: self.record,
            field,
            offset,
            problem,
        };
        if raw[..2] == [0, 0] {
            // "No reference" is exactly 34 zero bytes; anything else with hash_id 0 is malformed.
            return if raw[2..].iter().all(|&x| x == 0) {
                Ok(None)
            } else {
                Err(bad("has hash_id 0 (none) but a non-zero digest"))
            };
        }
        Reference::from_bytes(raw)
            .map(Some)
            .map_err(|_| bad("has an unknown hash_id"))
    }
    fn required_reference(&mut self, field: &'static str) -> Result<Reference, RecordDecodeError> {
        let offset = self.pos;
        self.reference(field)?.ok_or(RecordDecodeError::Reference {
            record: self.record,
            field,
            offset,
            problem: "is absent (all zero) but required",
        })
    }
    /// The fields SEGMENT_SEAL and GC_COMMIT begin with: segment id, record count, checksum.
    fn sealed_segment(&mut self) -> Result<(u64, u64, [u8; 32]), RecordDecodeError> {
        Ok((
            self.u64le("segment_id")?,
            self.u64le("record_count")?,
            self.arr32("checksum")?,
        ))
    }
    /// `count` fields of `size` bytes each must fit in what is left (checked before
    /// allocating for them).
    fn check_room(
        &self,
        field: &'static str,
        count: usize,
        size: usize,
    ) -> Result<(), RecordDecodeError> {
        let needed = count.saturating_mul(size);
        if needed > self.bytes.len() - self.pos {
            return Err(RecordDecodeError::Truncated {
                record: self.record,
                field,
                offset: self.pos,
                needed,
                len: self.bytes.len(),
            });
        }
        Ok(())
    }
}

/// The 34-byte encoding of an optional reference (hash_id 0 and zero digest for none).
pub fn encode_ref(r: Option<&Reference>) -> [u8; 2 + DIGEST_LEN] {
    r.map(|r| r.to_bytes()).unwrap_or([0u8; 2 + DIGEST_LEN])
}

fn put_sealed_segment(p: &mut Vec<u8>, segment_id: u64, record_count: u64, checksum: &[u8; 32]) {
    p.extend_from_slice(&segment_id.to_le_bytes());
    p.extend_from_slice(&record_count.to_le_bytes());
    p.extend_from_slice(checksum);
}

impl Event {
    /// A TOMBSTONE event when `hide`, else a TOMBSTONE_LIFT.
    pub fn tombstone(domain_id: u32, reference: Reference, hide: bool) -> Event {
        if hide {
            Event::Tombstone {
                domain_id,
                reference,
            }
        } else {
            Event::TombstoneLift {
                domain_id,
                reference,
            }
        }
    }

    /// Decodes a payload of type `t`. A type this version does not know decodes as
    /// [`Event::Unknown`]; an error means a known type's payload is malformed (damage).
    pub fn decode(t: u32, payload: &[u8]) -> Result<Event, RecordDecodeError> {
        let mut b = Payload {
            bytes: payload,
            pos: 0,
            record: type_name(t),
        };
        let ev = match t {
            SEGMENT_SEAL => {
                let (segment_id, record_count, checksum) = b.sealed_segment()?;
                Event::SegmentSeal {
                    segment_id,
                    record_count,
                    checksum,
                }
            }
            TOMBSTONE | TOMBSTONE_LIFT => {
                let domain_id = b.u32le("domain_id")?;
                let reference = b.required_reference("reference")?;
                Event::tombstone(domain_id, reference, t == TOMBSTONE)
            }
            SNAPSHOT => {
                let snapshot_id = b.u64le("snapshot_id")?;
                let root = b.reference("root")?;
                let len = b.u32le("meta_len")? as usize;
                let meta = b.take("meta", len)?.to_vec();
                Event::Snapshot {
                    snapshot_id,
                    root,
                    meta,
                }
            }
            SNAPSHOT_FORGET => Event::SnapshotForget {
                snapshot_id: b.u64le("snapshot_id")?,
            },
            GC_COMMIT => {
                let (segment_id, record_count, checksum) = b.sealed_segment()?;
                let n = b.u32le("retired count")? as usize;
                b.check_room("retired", n, 8)?;
                let retired = (0..n)
                    .map(|_| b.u64le("retired"))
                    .collect::<Result<Vec<_>, _>>()?;
                let m = b.u32le("deleted_block count")? as usize;
                b.check_room("deleted_block", m, 32)?;
                let deleted_blocks = (0..m)
                    .map(|_| b.arr32("deleted_block"))
                    .collect::<Result<Vec<_>, _>>()?;
                Event::GcCommit {
                    segment_id,
                    record_count,
                    checksum,
                    retired,
                    deleted_blocks,
                }
            }
            other => return Ok(Event::Unknown(other)),
        };
        // Known types must be consumed exactly: trailing bytes mean a different layout.
        if b.pos != payload.len() {
            return Err(RecordDecodeError::TrailingBytes {
                record: b.record,
                offset: b.pos,
                extra: payload.len() - b.pos,
            });
        }
        Ok(ev)
    }

    /// The record type and payload bytes.
    pub fn encode(&self) -> (u32, Vec<u8>) {
        let mut p = Vec::new();
        let t = match self {
            Event::SegmentSeal {
                segment_id,
                record_count,
                checksum,
            } => {
                put_sealed_segment(&mut p, *segment_id, *record_count, checksum);
                SEGMENT_SEAL
            }
            Event::Tombstone {
                domain_id,
                reference,
            }
            | Event::TombstoneLift {
                domain_id,
                reference,
            } => {
                p.extend_from_slice(&domain_id.to_le_bytes());
                p.extend_from_slice(&reference.to_bytes());
                if matches!(self, Event::Tombstone { .. }) {
                    TOMBSTONE
                } else {
                    TOMBSTONE_LIFT
                }
            }
            Event::Snapshot {
                snapshot_id,
                root,
                meta,
            } => {
                p.extend_from_slice(&snapshot_id.to_le_bytes());
                p.extend_from_slice(&encode_ref(root.as_ref()));
                p.extend_from_slice(&(meta.len() as u32).to_le_bytes());
                p.extend_from_slice(meta);
                SNAPSHOT
            }
            Event::SnapshotForget { snapshot_id } => {
                p.extend_from_slice(&snapshot_id.to_le_bytes());
                SNAPSHOT_FORGET
            }
            Event::GcCommit {
                segment_id,
                record_count,
                checksum,
                retired,
                deleted_blocks,
            } => {
                put_sealed_segment(&mut p, *segment_id, *record_count, checksum);
                p.extend_from_slice(&(retired.len() as u32).to_le_bytes());
                for s in retired {
                    p.extend_from_slice(&s.to_le_bytes());
                }
                p.extend_from_slice(&(deleted_blocks.len() as u32).to_le_bytes());
                for b in deleted_blocks {
                    p.extend_from_slice(b);
                }
                GC_COMMIT
            }
            Event::Unknown(t) => *t,
        };
        (t, p)
    }
}

/// The hash algorithm of a reference must match the store's; used by decoders' callers.
pub fn same_algo(r: &Reference, algo: HashAlgo) -> bool {
    r.algo() == algo
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_ref() -> impl Strategy<Value = Reference> {
        (any::<bool>(), any::<[u8; 32]>()).prop_map(|(s, d)| {
            Reference::new(
                if s {
                    HashAlgo::Sha256
                } else {
                    HashAlgo::Blake3
                },
                d,
            )
        })
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(a, b, c)| {
                Event::SegmentSeal {
                    segment_id: a,
                    record_count: b,
                    checksum: c,
                }
            }),
            (any::<u32>(), any_ref()).prop_map(|(d, r)| Event::Tombstone {
                domain_id: d,
                reference: r
            }),
            (any::<u32>(), any_ref()).prop_map(|(d, r)| Event::TombstoneLift {
                domain_id: d,
                reference: r
            }),
            (
                any::<u64>(),
                proptest::option::of(any_ref()),
                proptest::collection::vec(any::<u8>(), 0..50)
            )
                .prop_map(|(i, r, m)| Event::Snapshot {
                    snapshot_id: i,
                    root: r,
                    meta: m
                }),
            any::<u64>().prop_map(|i| Event::SnapshotForget { snapshot_id: i }),
            (
                any::<u64>(),
                any::<u64>(),
                any::<[u8; 32]>(),
                proptest::collection::vec(any::<u64>(), 0..5),
                proptest::collection::vec(any::<[u8; 32]>(), 0..5)
            )
                .prop_map(|(s, n, c, r, d)| Event::GcCommit {
                    segment_id: s,
                    record_count: n,
                    checksum: c,
                    retired: r,
                    deleted_blocks: d
                }),
        ]
    }

    proptest! {
        #[test]
        fn every_event_round_trips(ev in any_event()) {
            let (t, p) = ev.encode();
            prop_assert_eq!(Event::decode(t, &p), Ok(ev));
        }

        #[test]
        fn decoding_arbitrary_payloads_never_panics(t in 0u32..0x40, p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Event::decode(t, &p);
        }
    }

    #[test]
    fn unknown_types_decode_as_unknown_so_replay_can_skip_them() {
        assert_eq!(
            Event::decode(0x7777, b"whatever"),
            Ok(Event::Unknown(0x7777))
        );
    }

    #[test]
    fn an_absent_root_must_be_all_zero_bytes() {
        let (t, mut p) = Event::Snapshot {
            snapshot_id: 1,
            root: None,
            meta: vec![],
        }
        .encode();
        assert!(Event::decode(t, &p).is_ok());
        p[8 + 5] = 1; // a digest byte of the absent root
        assert_eq!(
            Event::decode(t, &p),
            Err(RecordDecodeError::Reference {
                record: "SNAPSHOT",
                field: "root",
                offset: 8,
                problem: "has hash_id 0 (none) but a non-zero digest",
            })
        );
    }

    #[test]
    fn trailing_bytes_in_a_known_payload_are_rejected() {
        let (t, mut p) = Event::SnapshotForget { snapshot_id: 3 }.encode();
        p.push(0);
        assert_eq!(
            Event::decode(t, &p).unwrap_err().to_string(),
            "SNAPSHOT_FORGET payload has 1 bytes after its last field, from offset 8"
        );
    }

    #[test]
    fn a_short_payload_names_the_field_it_ends_in() {
        let (t, p) = Event::GcCommit {
            segment_id: 2,
            record_count: 1,
            checksum: [3; 32],
            retired: vec![1, 2],
            deleted_blocks: vec![],
        }
        .encode();
        // A count of retired segments larger than the payload holds, caught before allocating.
        let mut big = p.clone();
        big[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Event::decode(t, &big),
            Err(RecordDecodeError::Truncated {
                record: "GC_COMMIT",
                field: "retired",
                offset: 52,
                needed: u32::MAX as usize * 8,
                len: p.len(),
            })
        );
        assert_eq!(
            Event::decode(t, &p[..12]).unwrap_err().to_string(),
            "GC_COMMIT payload of 12 bytes ends inside record_count at offset 8 (8 bytes needed)"
        );
    }
}
