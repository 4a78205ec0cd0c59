//! The test vectors of `docs/vectors/`: one small store's block, segment, log and tree, in
//! hex, built here with the real encoders and decoded with the real decoders.
//!
//! A second implementation checks itself against these files; this test makes sure they stay
//! what the code writes and reads, so any change of an on-disk byte fails here. Run with
//! `ASL_WRITE_VECTORS=1` to rewrite the files after a deliberate format change (and describe
//! the change in `docs/FORMAT.md` and `docs/vectors/README.md`).
//!
//! The chunker's vector (`docs/vectors/chunker-default.txt`) is checked by the store's unit
//! test `writer::chunking::tests::chunk_cut_points_match_the_golden_vectors`, which reaches the
//! private cut function.

use std::path::{Path, PathBuf};

use asl_fs::{Entry, Hole, Kind, Tree, decode_tree, encode_tree, tree_children};
use asl_store::block::{self, BlockId, Codec, OpenBlock, RecordKind};
use asl_store::log::{self, Tail};
use asl_store::records::Event;
use asl_store::segment::{self, IndexRecord, Segment, Visibility};
use asl_store::{HashAlgo, Reference, SnapshotMeta};
use sha2::Digest;

const HELLO: &[u8] = b"hello, world\n";
const ZEROS_LEN: usize = 4096;
/// The zstd frame of 4096 zero bytes as the vectors store it. A reader must decode it to the
/// zeros; the writer's zstd library may compress the same input to other bytes, which is why
/// the block is built from these stored bytes rather than by compressing again.
const ZEROS_FRAME_HEX: &str = "28b52ffd60000f4d00001000000100fbf70116";

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors")
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(32) {
        for b in line {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("a hex digit pair"))
        .collect()
}

/// Compares `bytes` with `docs/vectors/<name>` (or writes it under `ASL_WRITE_VECTORS`) and
/// returns the file's bytes.
fn check_vector(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = vectors_dir().join(name);
    if std::env::var_os("ASL_WRITE_VECTORS").is_some() {
        std::fs::write(&path, to_hex(bytes)).expect("write a vector");
    }
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let committed = from_hex(&text);
    assert!(
        committed == bytes,
        "{name}: the encoder no longer writes the committed vector (an on-disk byte changed).\n\
         committed {}\n encoded  {}",
        to_hex(&committed),
        to_hex(bytes)
    );
    committed
}

/// The snapshot's tree: a small file and a sparse file of 4096 zeros.
fn vector_tree() -> Tree {
    let mut hello = Entry::new(b"hello.txt".to_vec(), Kind::File);
    hello.mode = 0o644;
    hello.uid = 1000;
    hello.gid = 1000;
    hello.mtime_sec = 1_767_225_600; // 2026-01-01T00:00:00Z
    hello.mtime_nsec = 500_000_000;
    hello.size = HELLO.len() as u64;
    hello.content = Some(HashAlgo::Blake3.digest(HELLO));
    let mut zeros = Entry::new(b"zeros".to_vec(), Kind::File);
    zeros.mode = 0o600;
    zeros.mtime_sec = 1_767_225_600;
    zeros.size = ZEROS_LEN as u64;
    zeros.holes = vec![Hole {
        offset: 0,
        len: ZEROS_LEN as u64,
    }];
    zeros.content = Some(HashAlgo::Blake3.digest(&[0u8; ZEROS_LEN]));
    Tree {
        entries: vec![hello, zeros],
    }
}

/// The records of the block, in the order an intake puts them (contents before the tree):
/// (reference, codec, type tag, stored bytes, raw length).
fn block_records(tree_bytes: &[u8]) -> Vec<(Reference, Codec, u32, Vec<u8>, u32)> {
    vec![
        (
            HashAlgo::Blake3.digest(HELLO),
            Codec::None,
            0,
            HELLO.to_vec(),
            HELLO.len() as u32,
        ),
        (
            HashAlgo::Blake3.digest(&[0u8; ZEROS_LEN]),
            Codec::Zstd,
            0,
            from_hex(ZEROS_FRAME_HEX),
            ZEROS_LEN as u32,
        ),
        (
            HashAlgo::Blake3.digest(tree_bytes),
            Codec::None,
            1,
            tree_bytes.to_vec(),
            tree_bytes.len() as u32,
        ),
    ]
}

fn seal_block(records: &[(Reference, Codec, u32, Vec<u8>, u32)]) -> (BlockId, Vec<u8>) {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let open = scratch.path().join("open");
    std::fs::create_dir(&open).expect("create blocks/open");
    let mut b = OpenBlock::create(
        std::sync::Arc::new(asl_store::storage::Local),
        &open,
        HashAlgo::Blake3,
        "0",
    )
    .expect("create a block");
    for (reference, codec, tag, stored, raw_len) in records {
        b.append(
            *reference,
            RecordKind::Chunk,
            *codec,
            *tag,
            stored,
            *raw_len,
        )
        .expect("append a record");
    }
    let (id, _) = b.seal(scratch.path()).expect("seal the block");
    let bytes = std::fs::read(id.path(scratch.path())).expect("read the sealed block");
    (id, bytes)
}

fn vector_segment(id: BlockId, entries: &[block::BlockEntry]) -> Segment {
    let records = entries
        .iter()
        .map(|e| {
            (
                id,
                IndexRecord {
                    reference: e.reference,
                    kind: e.kind,
                    codec: e.codec,
                    visibility: Visibility::Internal,
                    domain_id: 1,
                    type_tag: e.type_tag,
                    block_index: 0,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                    block_offset: e.offset,
                    artifact_len: u64::from(e.raw_len),
                    visible_since: 0,
                },
            )
        })
        .collect();
    Segment::build(1, 1, 0, records)
}

fn vector_meta() -> SnapshotMeta {
    SnapshotMeta {
        kind: "intake".into(),
        label: Some("vectors".into()),
        host: "example".into(),
        time: "2026-01-01T00:00:00Z".into(),
        paths: vec!["/srv/example".into()],
        summary: serde_json::json!({
            "files": 2,
            "dirs": 0,
            "bytes_total": 4109,
            "bytes_new": 4109,
            "errors": 0,
            "changed_during_read": 0,
        }),
        commit_key: None,
    }
}

#[test]
fn tree_vector_is_what_the_tree_codec_writes_and_reads() {
    let tree = vector_tree();
    let bytes = encode_tree(&tree).expect("encode the tree");
    let committed = check_vector("tree.hex", &bytes);
    assert_eq!(decode_tree(&committed).expect("decode the tree"), tree);
    assert_eq!(
        tree_children(&committed).expect("list the tree's references"),
        vec![
            HashAlgo::Blake3.digest(HELLO),
            HashAlgo::Blake3.digest(&[0u8; ZEROS_LEN])
        ]
    );
}

#[test]
fn block_vector_is_what_the_block_writer_seals_and_reads() {
    let tree_bytes = encode_tree(&vector_tree()).expect("encode the tree");
    let records = block_records(&tree_bytes);
    let (id, bytes) = seal_block(&records);
    let committed = check_vector("block.hex", &bytes);
    // The block id is the hash of the file, as its sealed name says.
    assert_eq!(id.0, *HashAlgo::Blake3.digest(&committed).digest());
    let entries = block::decode_trailer(&committed).expect("decode the trailer");
    assert_eq!(entries.len(), records.len());
    let mut offset = block::HEADER_SIZE;
    for (e, (reference, codec, tag, stored, raw_len)) in entries.iter().zip(&records) {
        assert_eq!(
            (e.reference, e.kind, e.codec, e.type_tag, e.offset),
            (*reference, RecordKind::Chunk, *codec, *tag, offset)
        );
        assert_eq!((e.stored_len as usize, e.raw_len), (stored.len(), *raw_len));
        let start = e.offset as usize;
        let raw = block::decode_record(
            e.codec,
            &committed[start..start + e.stored_len as usize],
            e.raw_len,
        )
        .expect("decode a record");
        // Every chunk's raw bytes hash to its reference.
        assert_eq!(HashAlgo::Blake3.digest(&raw), e.reference);
        offset += u64::from(e.stored_len);
    }
}

#[test]
fn segment_vector_is_what_the_segment_writer_writes_and_reads() {
    let tree_bytes = encode_tree(&vector_tree()).expect("encode the tree");
    let (id, block_bytes) = seal_block(&block_records(&tree_bytes));
    let entries = block::decode_trailer(&block_bytes).expect("decode the trailer");
    let seg = vector_segment(id, &entries);

    // Version 1 has exactly one encoding: compare every byte.
    let (v1, _) = seg.encode_version(segment::VERSION_PLAIN);
    let committed_v1 = check_vector("segment-v1.hex", &v1);
    let (decoded, _) = Segment::decode(&committed_v1).expect("decode the version 1 segment");
    assert_eq!(decoded, seg);

    // Version 2 (what writers write) holds a zstd frame another zstd may encode differently,
    // so the committed bytes must decode to the segment and keep the header the encoder
    // writes; the log vector's seal pins their checksum.
    let path = vectors_dir().join("segment.hex");
    let (v2, _) = seg.encode();
    if std::env::var_os("ASL_WRITE_VECTORS").is_some() {
        std::fs::write(&path, to_hex(&v2)).expect("write a vector");
    }
    let committed_v2 = from_hex(&std::fs::read_to_string(&path).expect("read segment.hex"));
    let (decoded, checksum) = Segment::decode(&committed_v2).expect("decode the segment");
    assert_eq!(decoded, seg);
    assert_eq!(
        committed_v2[..segment::HEADER_SIZE],
        v2[..segment::HEADER_SIZE]
    );
    let body = committed_v2.len() - segment::FOOTER_SIZE;
    assert_eq!(
        checksum,
        <[u8; 32]>::from(sha2::Sha256::digest(&committed_v2[..body]))
    );
    assert_eq!(decoded.block_of(&decoded.records[0]), id);
}

#[test]
fn log_vector_is_what_the_log_writer_appends_and_reads() {
    let tree_bytes = encode_tree(&vector_tree()).expect("encode the tree");
    // The seal carries the checksum of the committed segment vector (when rewriting the
    // vectors, of the segment as encoded now, which the segment test writes).
    let seg_bytes = if std::env::var_os("ASL_WRITE_VECTORS").is_some() {
        let (id, block_bytes) = seal_block(&block_records(&tree_bytes));
        let entries = block::decode_trailer(&block_bytes).expect("decode the trailer");
        vector_segment(id, &entries).encode().0
    } else {
        from_hex(
            &std::fs::read_to_string(vectors_dir().join("segment.hex")).expect("read segment.hex"),
        )
    };
    let (seg, checksum) = Segment::decode(&seg_bytes).expect("decode the segment vector");
    let meta = serde_json::to_vec(&vector_meta()).expect("serialize the snapshot meta");
    let events = [
        Event::SegmentSeal {
            segment_id: seg.segment_id,
            record_count: seg.records.len() as u64,
            checksum,
        },
        Event::Snapshot {
            snapshot_id: 1,
            root: Some(HashAlgo::Blake3.digest(&tree_bytes)),
            meta: meta.clone(),
        },
    ];
    let mut bytes = log::encode_header().to_vec();
    let mut prev = [0u8; 32];
    for (i, ev) in events.iter().enumerate() {
        let (t, p) = ev.encode();
        let (b, h) = log::encode_record(&prev, i as u64 + 1, t, &p);
        bytes.extend_from_slice(&b);
        prev = h;
    }
    let committed = check_vector("log.hex", &bytes);
    let scan = log::scan(&committed).expect("scan the log");
    assert_eq!(scan.tail, Tail::Clean);
    assert_eq!(scan.valid_len, committed.len() as u64);
    let decoded: Vec<Event> = scan
        .records
        .iter()
        .map(|r| Event::decode(r.record_type, &r.payload).expect("decode a record"))
        .collect();
    assert_eq!(decoded, events);
    assert_eq!(
        scan.records.iter().map(|r| r.logseq).collect::<Vec<_>>(),
        [1, 2]
    );
    let parsed: SnapshotMeta = serde_json::from_slice(&meta).expect("parse the meta");
    assert_eq!(parsed, vector_meta());
}
