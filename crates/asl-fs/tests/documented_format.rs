//! The parts of `docs/FORMAT.md` and `docs/FORMAT-tree.md` that describe behaviour rather
//! than bytes: the wrapper tree of an intake of several paths, the `summary` an intake
//! records, and how snapshot and segment ids are allocated. Each test pins one statement of
//! the docs, so a change of behaviour that leaves them wrong fails here.

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::PathBuf;

use asl_fs::{IntakeOptions, Kind, Progress, decode_tree, intake};
use asl_store::{
    ArtifactRead, ArtifactWrite, HashAlgo, InitOptions, MemoryStore, SnapshotMeta, Writer,
};

#[test]
fn several_paths_are_wrapped_in_a_tree_named_by_their_last_components() {
    let src = tempfile::tempdir().unwrap();
    let www = src.path().join("srv/www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), b"<p>hi</p>").unwrap();
    let conf = src.path().join("app.conf");
    std::fs::write(&conf, b"port = 80\n").unwrap();
    let link = src.path().join("current");
    symlink("srv/www", &link).unwrap();

    let store = MemoryStore::new(HashAlgo::Blake3);
    // Given out of name order and with a trailing slash: the wrapper sorts by name and names
    // each entry after the path's last component.
    let paths = vec![
        link.clone(),
        PathBuf::from(format!("{}/", www.display())),
        conf.clone(),
    ];
    let s = intake(&store, &paths, &IntakeOptions::default(), &Progress::new()).unwrap();
    let wrapper = decode_tree(&store.read_all(&s.root).unwrap()).unwrap();
    let names: Vec<&[u8]> = wrapper.entries.iter().map(|e| &e.name[..]).collect();
    assert_eq!(names, [&b"app.conf"[..], b"current", b"www"]);

    // Each entry is made from the lstat of the given path itself.
    let [conf_e, link_e, www_e] = &wrapper.entries[..] else {
        panic!("three entries")
    };
    assert_eq!(conf_e.kind, Kind::File);
    assert_eq!(conf_e.size, 10);
    assert_eq!(
        conf_e.content,
        Some(HashAlgo::Blake3.digest(b"port = 80\n"))
    );
    assert_eq!(
        link_e.kind,
        Kind::Symlink,
        "a given symlink is not followed"
    );
    assert_eq!(link_e.link_target, b"srv/www");
    assert_eq!(www_e.kind, Kind::Dir);
    let md = std::fs::symlink_metadata(&www).unwrap();
    assert_eq!(www_e.mode, md.mode() & 0o7777);
    assert_eq!(www_e.mtime_sec, md.mtime());
    let inner = decode_tree(&store.read_all(&www_e.content.unwrap()).unwrap()).unwrap();
    assert_eq!(inner.entries[0].name, b"index.html");
    // The wrapper is not counted as a directory; the given one is.
    assert_eq!((s.files, s.dirs, s.symlinks), (2, 1, 1));
}

#[test]
fn one_directory_is_its_own_root_and_one_file_is_wrapped() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), b"x").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let opts = IntakeOptions::default();
    let dir = intake(&store, &[src.path().to_path_buf()], &opts, &Progress::new()).unwrap();
    let root = decode_tree(&store.read_all(&dir.root).unwrap()).unwrap();
    assert_eq!(root.entries.len(), 1);
    assert_eq!(root.entries[0].name, b"a");
    assert_eq!(dir.dirs, 1, "the given directory counts, also as the root");

    let file = intake(&store, &[src.path().join("a")], &opts, &Progress::new()).unwrap();
    let wrapper = decode_tree(&store.read_all(&file.root).unwrap()).unwrap();
    assert_eq!(wrapper.entries.len(), 1);
    assert_eq!(wrapper.entries[0].name, b"a");
    assert_eq!(wrapper.entries[0].kind, Kind::File);
}

#[test]
fn an_intake_snapshot_records_the_documented_metadata() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"hello").unwrap();
    let store = MemoryStore::new(HashAlgo::Blake3);
    let paths = vec![src.path().to_path_buf()];
    let s = intake(&store, &paths, &IntakeOptions::default(), &Progress::new()).unwrap();
    let meta = s.snapshot_meta(Some("nightly".into()), &paths);
    let json: serde_json::Value = serde_json::to_value(&meta).unwrap();
    let members: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut expected = vec!["host", "kind", "label", "paths", "summary", "time"];
    expected.sort();
    let mut members_sorted = members.clone();
    members_sorted.sort();
    assert_eq!(members_sorted, expected);
    assert_eq!(json["kind"], "intake");
    assert_eq!(json["paths"][0], src.path().to_str().unwrap());
    // FORMAT.md 6.3: exactly these six integers.
    assert_eq!(
        json["summary"],
        serde_json::json!({
            "files": 1, "dirs": 1, "bytes_total": 5, "bytes_new": s.bytes_new,
            "errors": 0, "changed_during_read": 0,
        })
    );
    // The time is RFC 3339 UTC to the second: YYYY-MM-DDTHH:MM:SSZ.
    let time = json["time"].as_str().unwrap();
    assert_eq!((time.len(), &time[10..11], &time[19..]), (20, "T", "Z"));
    // Written in the documented member order.
    let bytes = serde_json::to_string(&meta).unwrap();
    let order: Vec<usize> = [
        "\"kind\"",
        "\"label\"",
        "\"host\"",
        "\"time\"",
        "\"paths\"",
        "\"summary\"",
    ]
    .iter()
    .map(|m| bytes.find(m).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{bytes}");
}

#[test]
fn snapshot_and_segment_ids_grow_and_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let mut w = Writer::open_or_init(&store, &InitOptions::default()).unwrap();
    let a = w.put_bytes(b"one", asl_store::TypeTag::BYTES).unwrap();
    let first = w.commit(Some(a.reference), SnapshotMeta::now("t")).unwrap();
    assert_eq!((first.snapshot.id, first.segment_id), (1, Some(1)));
    // A commit without new entries writes no segment.
    let empty = w.commit(None, SnapshotMeta::now("t")).unwrap();
    assert_eq!((empty.snapshot.id, empty.segment_id), (2, None));
    // Forgetting the newest snapshot does not free its id, also after reopening.
    w.forget(2).unwrap();
    drop(w);
    let mut w = Writer::open_or_init(&store, &InitOptions::default()).unwrap();
    let b = w.put_bytes(b"two", asl_store::TypeTag::BYTES).unwrap();
    let next = w.commit(Some(b.reference), SnapshotMeta::now("t")).unwrap();
    assert_eq!((next.snapshot.id, next.segment_id), (3, Some(2)));
    // A segment is named after its id, as 16 hex digits.
    for id in [1u64, 2] {
        let p = store.join("segments").join(format!("{id:016x}.seg"));
        assert!(p.is_file(), "{} missing", p.display());
    }
    // A segment file that no log record names (a crash before the commit) is removed by the
    // next writer, and its id is given out again.
    std::fs::copy(
        store.join("segments/0000000000000002.seg"),
        store.join("segments/0000000000000003.seg"),
    )
    .unwrap();
    drop(w);
    let mut w = Writer::open_or_init(&store, &InitOptions::default()).unwrap();
    assert!(!store.join("segments/0000000000000003.seg").exists());
    let c = w.put_bytes(b"three", asl_store::TypeTag::BYTES).unwrap();
    let last = w.commit(Some(c.reference), SnapshotMeta::now("t")).unwrap();
    assert_eq!((last.snapshot.id, last.segment_id), (4, Some(3)));
}
