//! `asl-debug`: every on-disk structure of a store, decoded.

use std::process::ExitCode;

use asl_store::block::{self, BlockId, RecordKind};
use asl_store::records::{self, Event};
use asl_store::segment::{self, Segment};
use asl_store::{ArtifactRead, Reference};
use clap::{Parser, Subcommand};
use serde_json::json;

use super::common::{StoreToolArgs, open_store, store_error};
use crate::exit::{Code, fail};

#[derive(Parser, Debug)]
#[command(
    about = "Decode the store's on-disk structures: log, segments, blocks, artifacts",
    long_about = "Decode the store's on-disk structures (docs/FORMAT.md): log records, index \
segments, blocks with their trailers, artifacts and index lookups. Read-only.",
    after_help = "Examples:\n  asl-debug log --from 10\n  asl-debug segment 1 --json\n  asl-debug block 3f2a...\n  asl-debug lookup b3:8e0c..."
)]
pub struct Debug {
    #[command(flatten)]
    common: StoreToolArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The log's records, decoded.
    Log {
        /// First logseq to show.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// One index segment (id as decimal or as its 16-hex file name).
    Segment { id: String },
    /// One block: header, trailer entries.
    Block { id: String },
    /// An artifact's bytes to stdout (verified).
    Artifact { reference: String },
    /// Where the index places an artifact, and its part list.
    Lookup { reference: String },
}

pub fn run(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Debug = super::args(m)?;
    let StoreToolArgs {
        store: store_arg,
        out,
    } = a.common;
    let store = open_store(&store_arg)?;
    match a.cmd {
        Cmd::Log { from } => {
            let scan = asl_store::log::read(store.layout().storage(), &store.layout().log())
                .map_err(store_error)?;
            let recs: Vec<serde_json::Value> = scan
                .records
                .iter()
                .filter(|r| r.logseq >= from)
                .map(|r| {
                    json!({
                        "logseq": r.logseq,
                        "offset": r.offset,
                        "type": r.record_type,
                        "type_name": records::type_name(r.record_type),
                        "payload_len": r.payload.len(),
                        "record_hash": hex(&r.record_hash),
                        "payload": event_json(r.record_type, &r.payload),
                    })
                })
                .collect();
            let tail = format!("{:?}", scan.tail);
            out.emit(&json!({ "records": recs, "tail": tail }), || {
                let mut t = String::new();
                for r in &recs {
                    t.push_str(&format!(
                        "{:>6} @{:<8} {:<16} {}\n",
                        r["logseq"],
                        r["offset"],
                        r["type_name"].as_str().unwrap_or(""),
                        r["payload"]
                    ));
                }
                t.push_str(&format!("tail: {tail}\n"));
                t
            })?;
        }
        Cmd::Segment { id } => {
            let n = id
                .parse::<u64>()
                .ok()
                .or_else(|| u64::from_str_radix(id.trim_end_matches(".seg"), 16).ok())
                .ok_or_else(|| fail(Code::Usage, format!("'{id}' is not a segment id")))?;
            let path = store.layout().segments().join(segment::file_name(n));
            let bytes = store
                .layout()
                .storage()
                .read(&path)
                .map_err(|e| fail(Code::Failure, format!("{}: {e}", path.display())))?;
            let (seg, checksum) = Segment::decode(&bytes)
                .map_err(|e| fail(Code::Integrity, format!("segment {}: {e}", path.display())))?;
            let v = segment_json(&seg, &bytes, &checksum, store.segment(n));
            out.emit(&v, || serde_json::to_string_pretty(&v).unwrap_or_default())?;
        }
        Cmd::Block { id } => {
            let bid = BlockId::parse(&id)
                .ok_or_else(|| fail(Code::Usage, format!("'{id}' is not a 64-hex block id")))?;
            let path = bid.path(&store.layout().blocks());
            let bytes = store
                .layout()
                .storage()
                .read(&path)
                .map_err(|e| fail(Code::Failure, format!("{}: {e}", path.display())))?;
            let entries = block::decode_trailer(&bytes)
                .map_err(|e| fail(Code::Integrity, format!("block {id}: {e}")))?;
            let actual = store.config().algo().digest(&bytes);
            let v = json!({
                "block": bid.hex(),
                "path": path,
                "size": bytes.len(),
                "hash_matches_name": actual.digest() == &bid.0,
                "records": entries.iter().map(|e| json!({
                    "reference": e.reference.to_string(),
                    "kind": e.kind,
                    "codec": e.codec,
                    "type_tag": e.type_tag,
                    "offset": e.offset,
                    "stored_len": e.stored_len,
                    "raw_len": e.raw_len,
                })).collect::<Vec<_>>(),
            });
            out.emit(&v, || {
                let mut t = format!(
                    "block {} ({} bytes, hash {})\n",
                    bid,
                    bytes.len(),
                    if actual.digest() == &bid.0 {
                        "ok"
                    } else {
                        "MISMATCH"
                    }
                );
                for e in &entries {
                    t.push_str(&format!(
                        "  @{:<9} {:>7} -> {:>7} {:?}/{:?} tag {} {}\n",
                        e.offset, e.stored_len, e.raw_len, e.kind, e.codec, e.type_tag, e.reference
                    ));
                }
                t
            })?;
        }
        Cmd::Artifact { reference } => {
            let r = parse_ref(&reference)?;
            let mut stdout = crate::output::stdout();
            store.reader().read_to(&r, &mut stdout).map_err(|e| {
                // A reference the index lacks was mistyped or never stored: not damage. A
                // missing or damaged block file behind an indexed one is.
                let code = match e {
                    asl_store::AccessError::NotFound(_) => Code::Failure,
                    ref e if e.is_integrity() => Code::Integrity,
                    _ => Code::Failure,
                };
                fail(code, e.to_string())
            })?;
            // The bytes after the last newline are still buffered; their write can fail too.
            std::io::Write::flush(&mut stdout)?;
        }
        Cmd::Lookup { reference } => {
            let r = parse_ref(&reference)?;
            let reader = store.reader();
            let loc = reader
                .locate(&r)
                .ok_or_else(|| fail(Code::Failure, format!("{r} is not in the index")))?;
            let block = reader.block_id(&loc);
            let parts = if loc.kind == RecordKind::Parts {
                reader
                    .part_list(&loc)
                    .map(|pl| {
                        pl.parts
                            .iter()
                            .map(|(len, d)| json!({ "len": len, "reference": Reference::new(r.algo(), *d).to_string() }))
                            .collect::<Vec<_>>()
                    })
                    .ok()
            } else {
                None
            };
            let v = json!({
                "reference": r.to_string(),
                "kind": loc.kind,
                "codec": loc.codec,
                "visibility": loc.visibility,
                "domain_id": loc.domain_id,
                "type_tag": loc.type_tag,
                "block": block.hex(),
                "offset": loc.offset,
                "stored_len": loc.stored_len,
                "raw_len": loc.raw_len,
                "artifact_len": loc.artifact_len,
                "visible_since": loc.visible_since,
                "parts": parts,
            });
            out.emit(&v, || serde_json::to_string_pretty(&v).unwrap_or_default())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_ref(s: &str) -> anyhow::Result<Reference> {
    s.parse::<Reference>()
        .map_err(|e| fail(Code::Usage, e.to_string()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn event_json(t: u32, payload: &[u8]) -> serde_json::Value {
    match Event::decode(t, payload) {
        Err(e) => json!({ "error": e.to_string() }),
        Ok(Event::SegmentSeal {
            segment_id,
            record_count,
            checksum,
        }) => {
            json!({ "segment_id": segment_id, "record_count": record_count, "checksum": hex(&checksum) })
        }
        Ok(Event::Tombstone {
            domain_id,
            reference,
        })
        | Ok(Event::TombstoneLift {
            domain_id,
            reference,
        }) => {
            json!({ "domain_id": domain_id, "reference": reference.to_string() })
        }
        Ok(Event::Snapshot {
            snapshot_id,
            root,
            meta,
        }) => json!({
            "snapshot_id": snapshot_id,
            "root": root.map(|r| r.to_string()),
            "meta": serde_json::from_slice::<serde_json::Value>(&meta).unwrap_or(json!(null)),
        }),
        Ok(Event::SnapshotForget { snapshot_id }) => json!({ "snapshot_id": snapshot_id }),
        Ok(Event::GcCommit {
            segment_id,
            record_count,
            checksum,
            retired,
            deleted_blocks,
        }) => json!({
            "segment_id": segment_id,
            "record_count": record_count,
            "checksum": hex(&checksum),
            "retired": retired,
            "deleted_blocks": deleted_blocks.iter().map(|b| hex(b)).collect::<Vec<_>>(),
        }),
        Ok(Event::Unknown(t)) => json!({ "unknown_type": t, "skipped": true }),
    }
}

fn segment_json(
    seg: &Segment,
    bytes: &[u8],
    checksum: &[u8; 32],
    sealed: Option<&asl_store::SegmentInfo>,
) -> serde_json::Value {
    json!({
        // 2: records stored as zstd-compressed byte planes; 1: as they are (FORMAT.md §7).
        "version": u16::from_le_bytes([bytes[8], bytes[9]]),
        "size": bytes.len(),
        "segment_id": seg.segment_id,
        "domain_id": seg.domain_id,
        "flags": seg.flags,
        "checksum": hex(checksum),
        "visible": sealed.is_some(),
        "sealed_at": sealed.map(|s| s.sealed_at),
        "blocks": seg.blocks.iter().map(|b| b.hex()).collect::<Vec<_>>(),
        "records": seg.records.iter().map(|r| json!({
            "reference": r.reference.to_string(),
            "kind": r.kind,
            "codec": r.codec,
            "visibility": r.visibility,
            "domain_id": r.domain_id,
            "type_tag": r.type_tag,
            "block": seg.block_of(r).hex(),
            "offset": r.block_offset,
            "stored_len": r.stored_len,
            "raw_len": r.raw_len,
            "artifact_len": r.artifact_len,
            "visible_since": r.visible_since,
        })).collect::<Vec<_>>(),
    })
}
