//! Repairing a damaged log: cut at the last good record, re-record what the data still proves.
//!
//! A complete log record that fails its check hides every later record: replay cannot trust
//! them, and a writer refuses to append after them. The records beyond the damage are
//! mostly intact, though, and most of what they say can be checked against the data itself:
//! a segment file carries its own checksum, and a snapshot's root reaches artifacts whose
//! hashes are their names. [`repair_log`] therefore
//!
//! 1. takes the writer lock, and keeps a copy of the whole log as
//!    `log/asl.log.damaged-<unix seconds>` (it never overwrites an earlier copy);
//! 2. truncates the log at the damaged record (the last good record's end);
//! 3. re-seals every segment the cut records sealed whose file decodes, has the logged id,
//!    and names only block files that exist; re-records the retirements and block deletions
//!    of cut GC commits whose files are really gone, and the cut tombstones (not one from the
//!    damaged record itself: nothing in the data can confirm it); a sealed segment that a
//!    later cut GC commit retired and deleted is passed over, not counted as lost;
//! 4. re-records every cut snapshot (same id and metadata) whose whole tree reads back and
//!    verifies, after all the segments; snapshots the cut records forget stay forgotten.
//!
//! Everything appended gets fresh logseqs chained to the last good record. What could not
//! be re-recorded is listed in the report with the reason. It never runs implicitly.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Children;
use crate::access::ArtifactRead;
use crate::error::{IoContext, Result};
use crate::log::{self, LogAppender};
use crate::records::Event;
use crate::segment::{self, Segment};
use crate::store::Store;
use crate::writer::Writer;

/// What [`repair_log`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairReport {
    /// The damage found; None: the log was sound and nothing was changed.
    pub damage: Option<crate::LogDamage>,
    /// The copy of the log as it was before the cut.
    pub copy: Option<PathBuf>,
    /// The log's new length before re-recording, and how many bytes were cut.
    pub cut_at: u64,
    pub cut_bytes: u64,
    /// How many records the cut held, as far as their lengths could be followed.
    pub cut_records: usize,
    /// Segments sealed again.
    pub resealed_segments: Vec<u64>,
    /// Snapshots recorded again, in id order, with the logseq of their new record.
    pub recorded_snapshots: Vec<RecordedSnapshot>,
    /// Tombstones, tombstone lifts, forgets and GC commits recorded again.
    pub other_records: usize,
    /// What was cut and not recorded again, and why.
    pub dropped: Vec<Dropped>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedSnapshot {
    pub snapshot_id: u64,
    pub logseq: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Dropped {
    /// `snapshot 3`, `segment 7`, `log record 12`.
    pub object: String,
    pub reason: String,
}

/// Repairs the log of the store in `dir`; see the module documentation. Holds the writer
/// lock throughout, so it fails like any writer while another one runs.
pub fn repair_log(dir: &Path, children: Children<'_>) -> Result<RepairReport> {
    repair_log_in(crate::Layout::new(dir), children)
}

/// [`repair_log`] in the storage of `layout`.
pub fn repair_log_in(layout: crate::Layout, children: Children<'_>) -> Result<RepairReport> {
    let locked = Writer::lock_in(layout.clone())?;
    let storage = layout.storage();
    let log_path = layout.log();
    let bytes = storage.read(&log_path).at(&log_path)?;
    let scan = log::scan(&bytes)
        .map_err(|e| crate::StoreError::corrupt(log_path.display().to_string(), e.to_string()))?;
    let Some(damage) = crate::LogDamage::from_scan(&scan) else {
        return Ok(RepairReport::default());
    };
    let mut rep = RepairReport {
        cut_at: damage.at,
        cut_bytes: bytes.len() as u64 - damage.at,
        cut_records: scan.unverified.len(),
        damage: Some(damage.clone()),
        ..RepairReport::default()
    };

    // 1. Keep the copy, durably, before anything is cut.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let log_dir = log_path.parent().unwrap_or(&layout.root).to_path_buf();
    let copy = (0..)
        .map(|n| {
            let suffix = if n == 0 {
                String::new()
            } else {
                format!(".{n}")
            };
            log_dir.join(format!("asl.log.damaged-{stamp}{suffix}"))
        })
        .find(|p| !storage.exists(p))
        .unwrap_or_else(|| log_dir.join("asl.log.damaged"));
    {
        let mut f = storage.create_new(&copy).at(&copy)?;
        f.write_all(&bytes).at(&copy)?;
        f.sync().at(&copy)?;
    }
    storage.sync_dir(&log_dir).at(&log_dir)?;
    rep.copy = Some(copy);

    // 2. Cut at the damaged record.
    {
        let mut f = storage.open_append(&log_path).at(&log_path)?;
        f.set_len(damage.at).at(&log_path)?;
        f.sync().at(&log_path)?;
    }
    let good = log::read(storage, &log_path)?;
    let mut appender = LogAppender::open(storage, &log_path, &good)?;
    let before = Store::open_in(layout.clone())?;

    // 3. Segments, GC commits and tombstones, in their original order.
    let mut records: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut snapshots: Vec<(u64, Event)> = Vec::new();
    let mut forgotten: BTreeSet<u64> = BTreeSet::new();
    let mut sealed: BTreeSet<u64> = before.segments().map(|s| s.segment_id).collect();
    // Segments a later cut GC commit retired: their files are gone because GC deleted them,
    // which loses nothing (the commit's compacted segment holds what was live in them).
    let superseded: BTreeSet<u64> = scan
        .unverified
        .iter()
        .filter_map(|r| match Event::decode(r.record_type, &r.payload) {
            Ok(Event::GcCommit { retired, .. }) => Some(retired),
            _ => None,
        })
        .flatten()
        .collect();
    if scan.unfollowed > 0 {
        let end = bytes.len() as u64;
        rep.dropped.push(Dropped {
            object: format!("log bytes {}..{end}", end - scan.unfollowed),
            reason: "cannot be split into records (a length field is damaged); whatever \
                     they held is only in the copy"
                .into(),
        });
    }
    for (i, rec) in scan.unverified.iter().enumerate() {
        let damaged = i == 0;
        let what = format!("log record {} (byte {})", rec.logseq, rec.offset);
        let ev = match Event::decode(rec.record_type, &rec.payload) {
            Ok(ev) => ev,
            Err(e) => {
                rep.dropped.push(Dropped {
                    object: what,
                    reason: format!("does not decode: {e}"),
                });
                continue;
            }
        };
        match ev {
            Event::SegmentSeal { segment_id, .. } => {
                let path = layout.segments().join(segment::file_name(segment_id));
                if sealed.contains(&segment_id)
                    || (superseded.contains(&segment_id) && !storage.exists(&path))
                {
                    continue;
                }
                match intact_segment(&layout, segment_id) {
                    Ok((seg, checksum)) => {
                        let (t, p) = Event::SegmentSeal {
                            segment_id,
                            record_count: seg.records.len() as u64,
                            checksum,
                        }
                        .encode();
                        records.push((t, p));
                        sealed.insert(segment_id);
                        rep.resealed_segments.push(segment_id);
                    }
                    Err(reason) => rep.dropped.push(Dropped {
                        object: format!("segment {segment_id}"),
                        reason,
                    }),
                }
            }
            Event::GcCommit {
                segment_id,
                retired,
                deleted_blocks,
                ..
            } => {
                // Only what the disk confirms: a deleted block whose file is gone, a retired
                // segment whose file is gone or whose entries the compacted segment (sealed
                // again below) holds. A merge leaves the retired files for the next writer.
                let deleted_blocks: Vec<[u8; 32]> = deleted_blocks
                    .into_iter()
                    .filter(|b| !storage.exists(&crate::block::BlockId(*b).path(&layout.blocks())))
                    .collect();
                let (mut seg_id, mut count, mut sum) = (0, 0, [0u8; 32]);
                if segment_id != 0 && !sealed.contains(&segment_id) {
                    match intact_segment(&layout, segment_id) {
                        Ok((seg, checksum)) => {
                            seg_id = segment_id;
                            count = seg.records.len() as u64;
                            sum = checksum;
                            sealed.insert(segment_id);
                            rep.resealed_segments.push(segment_id);
                        }
                        Err(reason) => rep.dropped.push(Dropped {
                            object: format!("segment {segment_id}"),
                            reason,
                        }),
                    }
                }
                let retired: Vec<u64> = retired
                    .into_iter()
                    .filter(|s| {
                        seg_id != 0
                            || !storage.exists(&layout.segments().join(segment::file_name(*s)))
                    })
                    .collect();
                for s in &retired {
                    sealed.remove(s);
                }
                records.push(
                    Event::GcCommit {
                        segment_id: seg_id,
                        record_count: count,
                        checksum: sum,
                        retired,
                        deleted_blocks,
                    }
                    .encode(),
                );
                rep.other_records += 1;
            }
            ev @ (Event::Tombstone { .. } | Event::TombstoneLift { .. }) => {
                if damaged {
                    rep.dropped.push(Dropped {
                        object: what,
                        reason: "a tombstone in the damaged record cannot be checked against \
                                 the data; hide it again with the tool that made it if needed"
                            .into(),
                    });
                } else {
                    records.push(ev.encode());
                    rep.other_records += 1;
                }
            }
            ev @ Event::Snapshot { snapshot_id, .. } => {
                snapshots.retain(|(id, _)| *id != snapshot_id);
                snapshots.push((snapshot_id, ev));
            }
            Event::SnapshotForget { snapshot_id } => {
                snapshots.retain(|(id, _)| *id != snapshot_id);
                forgotten.insert(snapshot_id);
            }
            Event::Unknown(t) => rep.dropped.push(Dropped {
                object: what,
                reason: format!("record type {t:#x} is unknown to this version"),
            }),
        }
    }
    // Forgets of snapshots the good prefix retains.
    for id in &forgotten {
        if before.snapshots().iter().any(|s| s.id == *id) {
            records.push(Event::SnapshotForget { snapshot_id: *id }.encode());
            rep.other_records += 1;
        }
    }
    appender.append(&records)?;

    // 4. Snapshots whose data reads back and verifies, against the re-sealed segments.
    let after = Store::open_in(layout.clone())?;
    let mut keep = Vec::new();
    for (id, ev) in snapshots {
        let Event::Snapshot { root, .. } = &ev else {
            continue;
        };
        if after.snapshots().iter().any(|s| s.id == id) {
            rep.dropped.push(Dropped {
                object: format!("snapshot {id}"),
                reason: "a snapshot with this id is already in the log before the damage".into(),
            });
            continue;
        }
        match root {
            None => keep.push((id, ev.encode())),
            Some(root) => match check_tree(&after, root, children) {
                Ok(()) => keep.push((id, ev.encode())),
                Err(reason) => rep.dropped.push(Dropped {
                    object: format!("snapshot {id}"),
                    reason,
                }),
            },
        }
    }
    let payloads: Vec<(u32, Vec<u8>)> = keep.iter().map(|(_, r)| r.clone()).collect();
    let seqs = appender.append(&payloads)?;
    rep.recorded_snapshots = keep
        .iter()
        .zip(seqs)
        .map(|((id, _), logseq)| RecordedSnapshot {
            snapshot_id: *id,
            logseq,
        })
        .collect();
    rep.recorded_snapshots.sort_by_key(|s| s.snapshot_id);
    drop(locked);
    Ok(rep)
}

/// The segment file `segment_id` and its checksum, if it decodes, carries that id, and every
/// block it names exists.
fn intact_segment(
    layout: &crate::Layout,
    segment_id: u64,
) -> std::result::Result<(Segment, [u8; 32]), String> {
    let path = layout.segments().join(segment::file_name(segment_id));
    let bytes = layout
        .storage()
        .read(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (seg, checksum) =
        Segment::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if seg.segment_id != segment_id {
        return Err(format!(
            "{} holds segment {}, not {segment_id}",
            path.display(),
            seg.segment_id
        ));
    }
    for r in &seg.records {
        let block = seg.block_of(r).path(&layout.blocks());
        if !layout.storage().exists(&block) {
            return Err(format!("its block {} is missing", block.display()));
        }
    }
    Ok((seg, checksum))
}

/// Reads every artifact `root` reaches and checks its hash.
fn check_tree(
    store: &Store,
    root: &crate::Reference,
    children: Children<'_>,
) -> std::result::Result<(), String> {
    let reader = store.reader();
    let mut bad = None;
    let missing = crate::reach::walk(&reader, &[*root], children, |r| {
        if bad.is_none()
            && let Err(e) = reader.read_to(r, &mut std::io::sink())
        {
            bad = Some(format!("artifact {r}: {e}"));
        }
    });
    if let Some(m) = missing.first() {
        return Err(format!(
            "its data is gone: artifact {} {}",
            m.reference, m.reason
        ));
    }
    match bad {
        Some(b) => Err(format!("its data does not verify: {b}")),
        None => Ok(()),
    }
}
