//! Writes the seed corpus of every fuzz target under a directory (default `fuzz/seeds`):
//! valid encodings made by the real encoders, so the fuzzer starts past the magic numbers,
//! version fields and checksums. Each seed is checked to decode before it is written.
//!
//! Run: `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/seeds`

use std::path::{Path, PathBuf};

use asl_fs::{Entry, EntryError, Hole, Kind, Operation, Tree};
use asl_store::block::{BlockId, Codec, OpenBlock, PartList, RecordKind};
use asl_store::log;
use asl_store::records::Event;
use asl_store::segment::{FLAG_COMPACTED, IndexRecord, Segment, Visibility};
use asl_store::{HashAlgo, Reference};

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fuzz/seeds"));
    let mut n = 0;
    for (target, seeds, check) in [
        ("log", log_seeds(), asl_fuzz::log as fn(&[u8]) -> bool),
        ("segment", segment_seeds(), asl_fuzz::segment),
        ("block", block_seeds(), asl_fuzz::block),
        ("tree", tree_seeds(), asl_fuzz::tree),
        ("checkpoint", checkpoint_seeds(), asl_fuzz::checkpoint),
        ("index_run", run_seeds(), asl_fuzz::index_run),
    ] {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in seeds {
            assert!(check(&bytes), "seed {target}/{name} does not decode");
            std::fs::write(dir.join(name), &bytes).expect("write a seed");
            n += 1;
        }
    }
    println!("wrote {n} seeds under {}", out.display());
}

fn r(algo: HashAlgo, s: &str) -> Reference {
    algo.digest(s.as_bytes())
}

fn log_bytes(events: &[Event]) -> Vec<u8> {
    let mut out = log::encode_header().to_vec();
    let mut prev = [0u8; 32];
    for (i, ev) in events.iter().enumerate() {
        let (t, p) = ev.encode();
        let (b, h) = log::encode_record(&prev, i as u64 + 1, t, &p);
        out.extend_from_slice(&b);
        prev = h;
    }
    out
}

fn log_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let all = vec![
        Event::SegmentSeal {
            segment_id: 1,
            record_count: 3,
            checksum: [0x5a; 32],
        },
        Event::Tombstone {
            domain_id: 7,
            reference: r(HashAlgo::Blake3, "gone"),
        },
        Event::TombstoneLift {
            domain_id: 7,
            reference: r(HashAlgo::Sha256, "back"),
        },
        Event::Snapshot {
            snapshot_id: 1,
            root: Some(r(HashAlgo::Blake3, "root")),
            meta: br#"{"label":"first"}"#.to_vec(),
        },
        Event::Snapshot {
            snapshot_id: 2,
            root: None,
            meta: Vec::new(),
        },
        Event::SnapshotForget { snapshot_id: 1 },
        Event::GcCommit {
            segment_id: 9,
            record_count: 2,
            checksum: [0x11; 32],
            retired: vec![1, 2, 3],
            deleted_blocks: vec![[0xb1; 32], [0xb2; 32]],
        },
        Event::Unknown(0x7777),
    ];
    let full = log_bytes(&all);
    let mut torn = full.clone();
    torn.truncate(full.len() - 10);
    let mut zero_tail = full.clone();
    zero_tail.extend_from_slice(&[0u8; 40]);
    vec![
        ("empty.log", log_bytes(&[])),
        ("all-types.log", full),
        ("one-seal.log", log_bytes(&all[..1])),
        ("snapshot.log", log_bytes(&all[3..4])),
        ("gc.log", log_bytes(&all[6..7])),
        ("torn.log", torn),
        ("zero-tail.log", zero_tail),
    ]
}

fn index_record(algo: HashAlgo, name: &str, kind: RecordKind, vis: Visibility) -> IndexRecord {
    IndexRecord {
        reference: r(algo, name),
        kind,
        codec: if kind == RecordKind::Chunk {
            Codec::Zstd
        } else {
            Codec::None
        },
        visibility: vis,
        domain_id: 3,
        type_tag: 1,
        block_index: 0,
        stored_len: 40,
        raw_len: 100,
        block_offset: 16,
        artifact_len: if kind == RecordKind::Chunk { 100 } else { 5000 },
        visible_since: 0,
    }
}

fn segment_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let a = BlockId([0xaa; 32]);
    let b = BlockId([0xbb; 32]);
    let two = Segment::build(
        1,
        3,
        0,
        vec![
            (
                a,
                index_record(
                    HashAlgo::Blake3,
                    "x",
                    RecordKind::Chunk,
                    Visibility::Internal,
                ),
            ),
            (
                b,
                index_record(
                    HashAlgo::Blake3,
                    "y",
                    RecordKind::Parts,
                    Visibility::Internal,
                ),
            ),
        ],
    );
    let mut published = vec![
        (
            a,
            index_record(
                HashAlgo::Sha256,
                "p",
                RecordKind::Chunk,
                Visibility::Published,
            ),
        ),
        (
            a,
            index_record(
                HashAlgo::Blake3,
                "q",
                RecordKind::Chunk,
                Visibility::Internal,
            ),
        ),
    ];
    published[1].1.visible_since = 42;
    let compacted = Segment::build(7, 3, FLAG_COMPACTED, published);
    let v1 = asl_store::segment::VERSION_PLAIN;
    vec![
        ("empty.seg", Segment::build(2, 0, 0, Vec::new()).encode().0),
        ("two-blocks.seg", two.encode().0),
        ("compacted.seg", compacted.encode().0),
        // Version 1 (uncompressed records), still read.
        (
            "v1-empty.seg",
            Segment::build(2, 0, 0, Vec::new()).encode_version(v1).0,
        ),
        ("v1-two-blocks.seg", two.encode_version(v1).0),
        ("v1-compacted.seg", compacted.encode_version(v1).0),
    ]
}

/// Seals a real block in a scratch directory and returns its bytes.
fn sealed_block(
    scratch: &Path,
    name: &str,
    records: &[(RecordKind, Codec, Vec<u8>, u32)],
) -> Vec<u8> {
    let open = scratch.join("open");
    std::fs::create_dir_all(&open).expect("create the scratch directory");
    let algo = HashAlgo::Blake3;
    let mut block = OpenBlock::create(asl_store::storage::default_storage(), &open, algo, name)
        .expect("create a block");
    for (i, (kind, codec, stored, raw_len)) in records.iter().enumerate() {
        block
            .append(
                r(algo, &format!("{name}{i}")),
                *kind,
                *codec,
                0,
                stored,
                *raw_len,
            )
            .expect("append a record");
    }
    let (id, _) = block.seal(scratch).expect("seal the block");
    std::fs::read(id.path(scratch)).expect("read the sealed block")
}

fn block_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let scratch = std::env::temp_dir().join(format!("asl-fuzz-seeds-{}", std::process::id()));
    let text = b"the quick brown fox jumps over the lazy dog; ".repeat(8);
    let zstd_text = zstd::bulk::compress(&text, 3).expect("compress");
    let parts = PartList {
        total_len: 300,
        parts: vec![(100, [1; 32]), (200, [2; 32])],
    }
    .encode();
    let mut zstd_with_len = (text.len() as u32).to_le_bytes().to_vec();
    zstd_with_len.extend_from_slice(&zstd_text);
    let seeds = vec![
        ("empty.blk", sealed_block(&scratch, "e", &[])),
        (
            "mixed.blk",
            sealed_block(
                &scratch,
                "m",
                &[
                    (RecordKind::Chunk, Codec::None, b"small".to_vec(), 5),
                    (
                        RecordKind::Chunk,
                        Codec::Zstd,
                        zstd_text.clone(),
                        text.len() as u32,
                    ),
                    (
                        RecordKind::Parts,
                        Codec::None,
                        parts.clone(),
                        parts.len() as u32,
                    ),
                ],
            ),
        ),
        ("two-parts.parts", parts),
        (
            "empty.parts",
            PartList {
                total_len: 0,
                parts: Vec::new(),
            }
            .encode(),
        ),
        ("text.zst", zstd_with_len),
    ];
    // The scratch directory only held the sealed blocks read above.
    let _ = std::fs::remove_dir_all(&scratch);
    seeds
}

fn tree_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut file = Entry::new(b"file".to_vec(), Kind::File);
    file.mode = 0o644;
    file.uid = 1000;
    file.gid = 1000;
    file.mtime_sec = 1_700_000_000;
    file.mtime_nsec = 123_456_789;
    file.size = 10_000;
    file.hardlink_group = 1;
    file.content = Some(r(HashAlgo::Blake3, "file"));
    file.holes = vec![
        Hole {
            offset: 0,
            len: 4096,
        },
        Hole {
            offset: 8192,
            len: 1000,
        },
    ];
    file.xattrs = vec![
        (b"security.capability".to_vec(), vec![1, 0, 0, 2]),
        (b"user.note".to_vec(), b"hello".to_vec()),
    ];
    let mut changed = Entry::new(b"growing.log".to_vec(), Kind::File);
    changed.mode = 0o600;
    changed.size = 3;
    changed.changed_during_read = true;
    changed.content = Some(r(HashAlgo::Sha256, "abc"));
    let mut dir = Entry::new(b"dir".to_vec(), Kind::Dir);
    dir.mode = 0o1777;
    dir.content = Some(r(HashAlgo::Blake3, "dir"));
    let mut link = Entry::new(b"link".to_vec(), Kind::Symlink);
    link.mode = 0o777;
    link.link_target = b"../file".to_vec();
    link.size = 7;
    let mut null = Entry::new(b"null".to_vec(), Kind::CharDevice);
    null.mode = 0o666;
    null.rdev_major = 1;
    null.rdev_minor = 3;
    let mut sda = Entry::new(b"sda".to_vec(), Kind::BlockDevice);
    sda.rdev_major = 8;
    let fifo = Entry::new(b"fifo".to_vec(), Kind::Fifo);
    let sock = Entry::new(b"sock".to_vec(), Kind::Socket);
    let mut lost = Entry::new(b"lost".to_vec(), Kind::Unknown);
    lost.error = Some(EntryError {
        op: Operation::Lstat,
        errno: 13,
    });
    let mut unreadable = Entry::new(b"unreadable".to_vec(), Kind::File);
    unreadable.size = 5;
    unreadable.error = Some(EntryError {
        op: Operation::Open,
        errno: 13,
    });
    let mut all = vec![
        file, changed, dir, link, null, sda, fifo, sock, lost, unreadable,
    ];
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let enc = |entries: Vec<Entry>| asl_fs::encode_tree(&Tree { entries }).expect("encode a tree");
    vec![
        ("empty.tree", enc(Vec::new())),
        ("all-kinds.tree", enc(all.clone())),
        (
            "one-file.tree",
            enc(all.iter().filter(|e| e.name == b"file").cloned().collect()),
        ),
        (
            "one-link.tree",
            enc(all.iter().filter(|e| e.name == b"link").cloned().collect()),
        ),
    ]
}

/// The documented vector, and the checkpoint a real writer leaves after commits, a forget
/// and a tombstone (in a temporary store).
fn checkpoint_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use asl_store::{ArtifactWrite, SnapshotMeta, TypeTag, Writer};
    let vector = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/checkpoint.hex"),
    )
    .expect("read docs/vectors/checkpoint.hex");
    let vector = hex_decode(&vector.split_whitespace().collect::<String>());
    let dir = std::env::temp_dir().join(format!("asl-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = Writer::open_or_init(&dir, &Default::default()).expect("create a store");
    let mut last = None;
    for i in 0..4 {
        let p = w
            .put_bytes(format!("seed artifact {i}").as_bytes(), TypeTag::BYTES)
            .expect("put");
        let mut meta = SnapshotMeta::now("seed");
        meta.label = Some(format!("s{i}"));
        w.commit(Some(p.reference), meta).expect("commit");
        last = Some(p.reference);
    }
    w.forget(1).expect("forget");
    w.tombstone(last.expect("a commit")).expect("tombstone");
    w.checkpoint().expect("write a checkpoint");
    drop(w);
    let written = std::fs::read(dir.join("cache/checkpoint")).expect("read the checkpoint");
    let _ = std::fs::remove_dir_all(&dir);
    vec![("vector.ckpt", vector), ("store.ckpt", written)]
}

/// The index run a real writer leaves for a segment of 100 entries (in a temporary store, its
/// runs made from one entry on), and one of an empty segment.
fn run_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use asl_store::{ArtifactWrite, SnapshotMeta, TypeTag, Writer};
    let dir = std::env::temp_dir().join(format!("asl-fuzz-run-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = Writer::open_or_init(&dir, &Default::default()).expect("create a store");
    w.set_run_min_records(1);
    for i in 0..100 {
        w.put_bytes(format!("seed artifact {i}").as_bytes(), TypeTag::BYTES)
            .expect("put");
    }
    w.commit(None, SnapshotMeta::now("seed")).expect("commit");
    drop(w);
    let hundred =
        std::fs::read(dir.join("cache/index/0000000000000001.run")).expect("read the run");
    let _ = std::fs::remove_dir_all(&dir);
    let empty = Segment::build(3, 1, 0, Vec::new());
    let (_, checksum) = empty.encode();
    let sim = asl_store::storage::sim::SimStorage::new(Path::new("/s"));
    let path = Path::new("/s/empty.run");
    asl_store::index::run::write(&sim, path, &empty, &checksum).expect("write a run");
    let bytes = asl_store::storage::Storage::read(&sim, path).expect("read the run");
    vec![("hundred.run", hundred), ("empty.run", bytes)]
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
