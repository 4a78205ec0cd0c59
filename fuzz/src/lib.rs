//! The properties the fuzz targets check, one function per decoder family.
//!
//! Each function takes arbitrary bytes, runs the decoders on them and panics (which libFuzzer
//! reports as a crash) when a decoder panics or a property fails. They return whether the
//! input itself decoded, which the seed generator (`examples/seeds.rs`) uses to make sure every
//! committed seed gets the fuzzer past the magic numbers and checksums.
//!
//! Two of the formats are protected by SHA-256 (the log's record chain, the segment's
//! checksum): random mutations almost never survive those, so the targets also decode a
//! *repaired* copy of the input whose hashes were recomputed. That is what lets the fuzzer
//! reach the record and payload decoders behind them.

use asl_store::block::{self, Codec, PartList, RecordKind};
use asl_store::checkpoint;
use asl_store::index;
use asl_store::log::{self, Tail};
use asl_store::records::Event;
use asl_store::segment::{self, Segment};
use sha2::Digest;

/// The largest `raw_len` handed to the zstd decoder: it allocates that much up front.
pub const MAX_RAW_LEN: u32 = 1 << 20;

/// Log: `scan` never panics; the valid prefix it reports is exactly what the encoder writes
/// for the records it returned, and scanning that prefix again is clean (what a writer does
/// after cutting a torn tail); every record payload decodes without panicking. The input is
/// also re-chained (logseqs and record hashes recomputed) and must then scan clean.
pub fn log(data: &[u8]) -> bool {
    let decoded = check_log_scan(data);
    check_log_rechained(data);
    decoded
}

fn check_log_scan(data: &[u8]) -> bool {
    let Ok(scan) = log::scan(data) else {
        return false;
    };
    let valid = usize::try_from(scan.valid_len).expect("valid_len fits in usize");
    assert!(valid <= data.len(), "valid_len {valid} past the end");
    if scan.tail == Tail::Clean {
        assert_eq!(valid, data.len(), "a clean scan covers every byte");
    }
    // Re-encode the records with the real encoder: the result must be the valid prefix.
    let mut rebuilt = log::encode_header().to_vec();
    let mut prev = [0u8; 32];
    for r in &scan.records {
        assert_eq!(
            r.offset as usize,
            rebuilt.len(),
            "record {} offset",
            r.logseq
        );
        let (bytes, hash) = log::encode_record(&prev, r.logseq, r.record_type, &r.payload);
        assert_eq!(hash, r.record_hash, "record {} hash", r.logseq);
        rebuilt.extend_from_slice(&bytes);
        prev = hash;
        check_event(r.record_type, &r.payload);
    }
    assert_eq!(prev, scan.last_hash, "last_hash is the last record's hash");
    assert!(
        rebuilt == data[..valid],
        "re-encoded records differ from the valid prefix ({} vs {valid} bytes, tail {:?})",
        rebuilt.len(),
        scan.tail
    );
    if scan.tail != Tail::Clean {
        // A writer cuts the log at valid_len and appends after it: that prefix must be clean.
        let again = log::scan(&data[..valid]).expect("the valid prefix scans");
        assert_eq!(again.tail, Tail::Clean, "the valid prefix is clean");
        assert_eq!(again.records, scan.records);
        assert_eq!(again.last_hash, scan.last_hash);
    }
    true
}

/// Reads the input as a log whose logseqs and hashes may be wrong, rebuilds it with the
/// encoder from the (type, payload) pairs of its complete records, and checks the scan.
fn check_log_rechained(data: &[u8]) -> bool {
    if data.len() < log::HEADER_SIZE {
        return false;
    }
    let mut rest = &data[log::HEADER_SIZE..];
    let mut records = Vec::new();
    while rest.len() >= 16 {
        let record_type = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(rest[12..16].try_into().unwrap_or_default()) as usize;
        let Some(total) = len.checked_add(log::RECORD_OVERHEAD) else {
            break;
        };
        if rest.len() < total {
            break;
        }
        records.push((record_type, &rest[16..16 + len]));
        rest = &rest[total..];
    }
    let mut built = log::encode_header().to_vec();
    let mut prev = [0u8; 32];
    for (i, (t, p)) in records.iter().enumerate() {
        let (bytes, hash) = log::encode_record(&prev, i as u64 + 1, *t, p);
        built.extend_from_slice(&bytes);
        prev = hash;
    }
    let scan = log::scan(&built).expect("an encoded log scans");
    assert_eq!(scan.tail, Tail::Clean, "an encoded log scans clean");
    assert_eq!(scan.records.len(), records.len());
    for (r, (t, p)) in scan.records.iter().zip(&records) {
        assert_eq!(r.record_type, *t);
        assert_eq!(r.payload, *p);
    }
    check_log_scan(&built)
}

/// A record payload decodes without panicking; a known type that decodes re-encodes to the
/// same payload (its layout has exactly one encoding).
fn check_event(record_type: u32, payload: &[u8]) {
    if let Ok(ev) = Event::decode(record_type, payload)
        && !matches!(ev, Event::Unknown(_))
    {
        let (t, p) = ev.encode();
        assert_eq!(t, record_type, "event type");
        assert!(
            p == payload,
            "event {ev:?} re-encodes to different bytes: {} vs {}",
            hex(&p),
            hex(payload)
        );
    }
}

/// Segment: `decode` never panics; a version-1 segment it accepts re-encodes to the same bytes
/// with the same checksum, a version-2 one to the same header and records (its zstd frame may
/// come out differently). The input is also decoded with its footer checksum recomputed.
pub fn segment(data: &[u8]) -> bool {
    let decoded = check_segment(data);
    if data.len() >= segment::HEADER_SIZE + segment::FOOTER_SIZE {
        let mut fixed = data.to_vec();
        let body = fixed.len() - segment::FOOTER_SIZE;
        let sum: [u8; 32] = sha2::Sha256::digest(&fixed[..body]).into();
        fixed[body..body + 32].copy_from_slice(&sum);
        check_segment(&fixed);
    }
    decoded
}

fn check_segment(data: &[u8]) -> bool {
    let Ok((seg, sum)) = Segment::decode(data) else {
        return false;
    };
    let version = u16::from_le_bytes([data[8], data[9]]);
    let (bytes, sum2) = seg.encode_version(version);
    if version == segment::VERSION_PLAIN {
        // Version 1 is canonical: one byte string per segment.
        assert!(
            bytes == data,
            "decoded segment re-encodes to different bytes:\n in  {}\n out {}",
            hex(data),
            hex(&bytes)
        );
        assert_eq!(sum, sum2, "checksum");
    } else {
        // Version 2 holds a zstd frame, which other encoders may write differently; the
        // header and the decoded records are still canonical, and the log's seal pins the
        // exact bytes.
        let (again, _) = Segment::decode(&bytes).expect("re-encoded segment decodes");
        assert_eq!(again, seg, "re-encoded segment decodes to other records");
        assert_eq!(bytes[..64], data[..64], "header re-encodes differently");
    }
    for r in &seg.records {
        // block_index was checked by decode, so this lookup must not panic.
        let _ = seg.block_of(r);
    }
    true
}

/// Block: `decode_trailer`, `PartList::decode` and `decode_record` never panic; a part list
/// that decodes re-encodes to the same bytes; every record of a block whose trailer decodes
/// lies inside the data area, and records that decode have their stated raw length. The
/// input is also given to zstd `decode_record` with `raw_len` from its first 4 bytes.
pub fn block(data: &[u8]) -> bool {
    let mut decoded = false;
    if let Ok(entries) = block::decode_trailer(data) {
        decoded = true;
        check_block_layout(data, &entries);
        for e in &entries {
            let start = usize::try_from(e.offset).expect("offset fits");
            let stored = &data[start..start + e.stored_len as usize];
            if e.raw_len <= MAX_RAW_LEN
                && let Ok(raw) = block::decode_record(e.codec, stored, e.raw_len)
            {
                assert_eq!(raw.len(), e.raw_len as usize);
                if e.codec == Codec::None {
                    assert_eq!(raw, stored);
                }
                if e.kind == RecordKind::Parts {
                    check_part_list(&raw);
                }
            }
        }
    }
    decoded |= check_part_list(data);
    if data.len() >= 4 {
        let raw_len =
            u32::from_le_bytes(data[..4].try_into().unwrap_or_default()) % (MAX_RAW_LEN + 1);
        if let Ok(raw) = block::decode_record(Codec::Zstd, &data[4..], raw_len) {
            assert_eq!(raw.len(), raw_len as usize);
            decoded = true;
        }
    }
    decoded
}

/// A block whose trailer decodes is exactly the header, the records' bytes and the trailer
/// the encoder writes for those entries.
fn check_block_layout(data: &[u8], entries: &[block::BlockEntry]) {
    let mut expected = block::MAGIC.to_vec();
    expected.extend_from_slice(&block::VERSION.to_le_bytes());
    expected.extend_from_slice(&(block::HEADER_SIZE as u32).to_le_bytes());
    let entries_offset = entries
        .last()
        .map_or(block::HEADER_SIZE, |e| e.offset + u64::from(e.stored_len));
    let entries_offset = usize::try_from(entries_offset).expect("offset fits");
    expected.extend_from_slice(&data[block::HEADER_SIZE as usize..entries_offset]);
    for e in entries {
        e.encode(&mut expected);
    }
    expected.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    expected.extend_from_slice(&0u32.to_le_bytes());
    expected.extend_from_slice(&(entries_offset as u64).to_le_bytes());
    expected.extend_from_slice(&block::TRAILER_MAGIC);
    assert!(
        expected == *data,
        "block re-encodes to different bytes:\n in  {}\n out {}",
        hex(data),
        hex(&expected)
    );
}

fn check_part_list(data: &[u8]) -> bool {
    let Ok(pl) = PartList::decode(data) else {
        return false;
    };
    assert_eq!(
        pl.parts.iter().map(|p| u64::from(p.0)).sum::<u64>(),
        pl.total_len
    );
    assert!(
        pl.encode() == data,
        "part list re-encodes to different bytes"
    );
    true
}

/// Tree: `decode_tree` never panics, and a tree it accepts re-encodes to the same bytes (the
/// format is canonical); `tree_children` lists exactly the entries' references.
pub fn tree(data: &[u8]) -> bool {
    let Ok(tree) = asl_fs::decode_tree(data) else {
        assert!(asl_fs::tree_children(data).is_err());
        return false;
    };
    match asl_fs::encode_tree(&tree) {
        Ok(bytes) => assert!(
            bytes == data,
            "decoded tree re-encodes to different bytes:\n in  {}\n out {}",
            hex(data),
            hex(&bytes)
        ),
        Err(e) => panic!("a decoded tree does not encode: {e}"),
    }
    let children: Vec<_> = tree.entries.iter().filter_map(|e| e.content).collect();
    assert_eq!(asl_fs::tree_children(data).ok(), Some(children));
    true
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Log checkpoint (`cache/checkpoint`): `checkpoint::decode` never panics, for either hash; a
/// checkpoint that decodes re-encodes to bytes that decode again, to the same position, and
/// re-encode to themselves (the encoding is canonical up to the JSON of snapshot metadata,
/// which is re-serialised). The input is decoded twice: as is, and with its trailing SHA-256
/// recomputed, so that mutations reach the section decoders behind the checksum.
pub fn checkpoint(data: &[u8]) -> bool {
    let decoded = check_checkpoint(data);
    if data.len() >= checkpoint::HEADER_SIZE + 32 {
        let mut fixed = data.to_vec();
        let body = fixed.len() - 32;
        let sum: [u8; 32] = sha2::Sha256::digest(&fixed[..body]).into();
        fixed[body..].copy_from_slice(&sum);
        check_checkpoint(&fixed);
    }
    decoded
}

fn check_checkpoint(data: &[u8]) -> bool {
    let _ = checkpoint::decode(data, asl_store::HashAlgo::Sha256);
    let Ok(c) = checkpoint::decode(data, asl_store::HashAlgo::Blake3) else {
        return false;
    };
    let once = checkpoint::encode(&c.state, &c.at);
    let again = checkpoint::decode(&once, asl_store::HashAlgo::Blake3)
        .expect("a re-encoded checkpoint decodes");
    assert_eq!(again.at, c.at, "position changed through re-encoding");
    let twice = checkpoint::encode(&again.state, &again.at);
    assert!(
        once == twice,
        "re-encoding is not stable:\n 1st {}\n 2nd {}",
        hex(&once),
        hex(&twice)
    );
    true
}

/// Index run (`cache/index/<id>.run`): `Run::open` never panics, for the segment the header
/// names; the input is also opened with its meta checksum recomputed, so that mutations reach
/// the block table, filter and fences behind it. An opened run's every record reads back in
/// order (or ends at a damaged page), and a lookup of each record's digest never panics and
/// never answers with a record of another digest.
pub fn index_run(data: &[u8]) -> bool {
    let opened = check_run(data);
    if data.len() >= index::run::HEADER_SIZE {
        let le32 = |o: usize| {
            u64::from(u32::from_le_bytes(
                data[o..o + 4].try_into().unwrap_or_default(),
            ))
        };
        let le64 = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap_or_default());
        let per = le32(12);
        let pages = if per == 0 { 0 } else { le64(24).div_ceil(per) };
        let meta_len = le64(32)
            .saturating_mul(32)
            .saturating_add(le64(40).saturating_mul(8))
            .saturating_add(pages.saturating_mul(32));
        let end = (index::run::HEADER_SIZE as u64).saturating_add(meta_len);
        if let Ok(end) = usize::try_from(end)
            && end <= data.len()
        {
            let mut fixed = data.to_vec();
            let mut sum = blake3::Hasher::new();
            sum.update(&fixed[..88]);
            sum.update(&fixed[index::run::HEADER_SIZE..end]);
            let h = *sum.finalize().as_bytes();
            fixed[88..120].copy_from_slice(&h);
            check_run(&fixed);
        }
    }
    opened
}

fn check_run(data: &[u8]) -> bool {
    use asl_store::storage::Storage;
    if data.len() < index::run::HEADER_SIZE {
        return false;
    }
    let le64 = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap_or_default());
    let info = asl_store::SegmentInfo {
        segment_id: le64(16),
        sealed_at: 1,
        record_count: le64(24),
        checksum: data[56..88].try_into().unwrap_or_default(),
    };
    let root = std::path::Path::new("/fuzz");
    let sim = asl_store::storage::sim::SimStorage::new(root);
    let path = root.join("x.run");
    let mut f = sim.create(&path).expect("create in memory");
    std::io::Write::write_all(&mut f, data).expect("write in memory");
    drop(f);
    let Ok(run) = index::Run::open(&sim, &path, &info) else {
        return false;
    };
    for rec in run.records().take(10_000) {
        let Ok(rec) = rec else { break };
        if let Ok(Some(found)) = run.get(rec.reference.digest()) {
            assert_eq!(
                found.reference.digest(),
                rec.reference.digest(),
                "a lookup answered with another digest's record"
            );
        }
    }
    true
}
