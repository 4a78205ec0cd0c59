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

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}
fn u32le(b: &mut &[u8]) -> Option<u32> {
    take(b, 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}
fn u64le(b: &mut &[u8]) -> Option<u64> {
    take(b, 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}
fn arr32(b: &mut &[u8]) -> Option<[u8; 32]> {
    take(b, 32).and_then(|s| s.try_into().ok())
}
fn reference(b: &mut &[u8]) -> Option<Option<Reference>> {
    let raw = take(b, 2 + DIGEST_LEN)?;
    if raw[..2] == [0, 0] {
        // "No reference" is exactly 34 zero bytes; anything else with hash_id 0 is malformed.
        return raw[2..].iter().all(|&x| x == 0).then_some(None);
    }
    Reference::from_bytes(raw).ok().map(Some)
}

/// The 34-byte encoding of an optional reference (hash_id 0 and zero digest for none).
pub fn encode_ref(r: Option<&Reference>) -> [u8; 2 + DIGEST_LEN] {
    r.map(|r| r.to_bytes()).unwrap_or([0u8; 2 + DIGEST_LEN])
}

/// The fields SEGMENT_SEAL and GC_COMMIT begin with: segment id, record count, checksum.
fn sealed_segment(b: &mut &[u8]) -> Option<(u64, u64, [u8; 32])> {
    Some((u64le(b)?, u64le(b)?, arr32(b)?))
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

    /// Decodes a payload of type `t`. `None` means the payload is malformed.
    pub fn decode(t: u32, payload: &[u8]) -> Option<Event> {
        let mut b = payload;
        let ev = match t {
            SEGMENT_SEAL => {
                let (segment_id, record_count, checksum) = sealed_segment(&mut b)?;
                Event::SegmentSeal {
                    segment_id,
                    record_count,
                    checksum,
                }
            }
            TOMBSTONE | TOMBSTONE_LIFT => {
                let domain_id = u32le(&mut b)?;
                let reference = reference(&mut b)??;
                Event::tombstone(domain_id, reference, t == TOMBSTONE)
            }
            SNAPSHOT => {
                let snapshot_id = u64le(&mut b)?;
                let root = reference(&mut b)?;
                let len = u32le(&mut b)? as usize;
                let meta = take(&mut b, len)?.to_vec();
                Event::Snapshot {
                    snapshot_id,
                    root,
                    meta,
                }
            }
            SNAPSHOT_FORGET => Event::SnapshotForget {
                snapshot_id: u64le(&mut b)?,
            },
            GC_COMMIT => {
                let (segment_id, record_count, checksum) = sealed_segment(&mut b)?;
                let n = u32le(&mut b)? as usize;
                if n > b.len() / 8 {
                    return None;
                }
                let retired = (0..n).map(|_| u64le(&mut b)).collect::<Option<Vec<_>>>()?;
                let m = u32le(&mut b)? as usize;
                if m > b.len() / 32 {
                    return None;
                }
                let deleted_blocks = (0..m).map(|_| arr32(&mut b)).collect::<Option<Vec<_>>>()?;
                Event::GcCommit {
                    segment_id,
                    record_count,
                    checksum,
                    retired,
                    deleted_blocks,
                }
            }
            other => return Some(Event::Unknown(other)),
        };
        // Known types must be consumed exactly: trailing bytes mean a different layout.
        if !b.is_empty() {
            return None;
        }
        Some(ev)
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
            prop_assert_eq!(Event::decode(t, &p), Some(ev));
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
            Some(Event::Unknown(0x7777))
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
        assert!(Event::decode(t, &p).is_some());
        p[8 + 5] = 1; // a digest byte of the absent root
        assert_eq!(Event::decode(t, &p), None);
    }

    #[test]
    fn trailing_bytes_in_a_known_payload_are_rejected() {
        let (t, mut p) = Event::SnapshotForget { snapshot_id: 3 }.encode();
        p.push(0);
        assert_eq!(Event::decode(t, &p), None);
    }
}
