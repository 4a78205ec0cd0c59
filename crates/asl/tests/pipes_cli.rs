//! A closed pipe ends a tool quietly (issue 17 §7, README "A closed pipe ends a tool
//! quietly"): each test runs the real binary into a real `head` that stops reading early, on
//! a store made so that the output is far larger than a pipe's buffer, and checks that the
//! tool was ended by SIGPIPE, as coreutils are, with nothing on stderr.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use asl_store::{SnapshotMeta, Store, Writer};

/// Larger than a pipe's buffer (64 KiB) plus what `head` reads before it exits, with room to
/// spare: the tool must still be writing when the pipe closes.
const MIN_OUTPUT: usize = 512 * 1024;

/// Entries in the directory `ls -l` lists.
const DIR_ENTRIES: usize = 8000;

/// Snapshots in the store, for `snapshots` and `log`.
const SNAPSHOTS: usize = 1200;

/// Size of the file `cat` writes.
const BIG_FILE: usize = 4 << 20;

/// The store every test reads, made once per run of this test binary: one intake of a
/// directory with many entries and a large file, then many snapshots with long metadata.
fn store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pipes_cli");
        if base.exists() {
            std::fs::remove_dir_all(&base).expect("remove the last run's store");
        }
        let src = base.join("src");
        let dir = src.join("many");
        std::fs::create_dir_all(&dir).expect("create the source tree");
        for i in 0..DIR_ENTRIES {
            std::fs::write(dir.join(format!("an-entry-with-a-long-name-{i:05}")), b"x")
                .expect("write a small file");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..BIG_FILE / 8)
            .flat_map(|_| common::next(&mut x).to_le_bytes())
            .collect();
        std::fs::write(src.join("bigfile"), &big).expect("write the large file");

        let store = base.join("store");
        let o = common::run(
            common::asl()
                .arg("intake")
                .arg("--store")
                .arg(&store)
                .arg(&src)
                .stdin(Stdio::null()),
        );
        assert!(o.status.success(), "{}", common::transcript(&o));

        // Snapshots are added through the library: an intake per snapshot would take
        // minutes. Each names many long paths, so that each line of output is long.
        let root = Store::open(&store).expect("open the store").snapshots()[0]
            .root
            .expect("the intake's snapshot has a tree");
        let mut w = Writer::open(&store).expect("open the store for writing");
        for i in 0..SNAPSHOTS {
            let mut meta = SnapshotMeta::now("test");
            meta.label = Some(format!("pipe-{i}"));
            meta.paths = (0..8)
                .map(|p| format!("/srv/a/path/long/enough/to/fill/the/pipe/quickly/{i}/{p}"))
                .collect();
            w.commit(Some(root), meta).expect("commit a snapshot");
        }
        store
    })
}

/// What one `asl ARGS | CONSUMER` pipeline left behind.
struct Piped {
    /// How the tool ended.
    status: ExitStatus,
    /// What the tool wrote to stderr.
    stderr: String,
    /// What the consumer printed.
    consumed: Vec<u8>,
}

/// Runs `asl ARGS --store STORE | CONSUMER`, both real processes joined by a real pipe.
fn pipe_into(args: &[&str], consumer: &[&str]) -> Piped {
    pipe_command(
        common::asl().args(args).arg("--store").arg(store()),
        consumer,
    )
}

/// Runs `TOOL | CONSUMER`, both real processes joined by a real pipe.
fn pipe_command(tool: &mut Command, consumer: &[&str]) -> Piped {
    let mut tool = tool
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start asl");
    let reading_end = tool.stdout.take().expect("asl's stdout is a pipe");
    let head = Command::new(consumer[0])
        .args(&consumer[1..])
        .stdin(reading_end)
        .stdout(Stdio::piped())
        .output()
        .expect("run the consumer");
    assert!(head.status.success(), "{consumer:?} failed: {head:?}");
    let tool = tool.wait_with_output().expect("wait for asl");
    Piped {
        status: tool.status,
        stderr: String::from_utf8_lossy(&tool.stderr).into_owned(),
        consumed: head.stdout,
    }
}

/// The whole output of `asl ARGS --store STORE`, checked to be larger than a pipe holds: a
/// smaller one would be written before `head` closes the pipe, and the test would prove
/// nothing.
fn whole_output(args: &[&str]) -> Vec<u8> {
    let o = common::run(
        common::asl()
            .args(args)
            .arg("--store")
            .arg(store())
            .stdin(Stdio::null()),
    );
    assert!(o.status.success(), "{}", common::transcript(&o));
    assert!(
        o.stdout.len() >= MIN_OUTPUT,
        "`asl {}` prints only {} bytes; the test needs at least {MIN_OUTPUT}",
        args.join(" "),
        o.stdout.len()
    );
    o.stdout
}

/// Runs `asl ARGS | CONSUMER` and asserts that the tool ended as coreutils do when their
/// reader goes: killed by SIGPIPE, nothing on stderr (no message, no panic, no backtrace);
/// and that the consumer got `expected` of the whole output, unchanged.
fn assert_ends_quietly(args: &[&str], consumer: &[&str], expected: fn(&[u8]) -> &[u8]) {
    let whole = whole_output(args);
    let p = pipe_into(args, consumer);
    let what = format!("asl {} | {}", args.join(" "), consumer.join(" "));
    assert!(
        p.stderr.is_empty(),
        "{what}: the tool wrote to stderr:\n{}",
        p.stderr
    );
    assert_eq!(
        p.status.signal(),
        Some(libc::SIGPIPE),
        "{what}: the tool was not ended by SIGPIPE but {:?}",
        p.status
    );
    assert_eq!(
        p.consumed,
        expected(&whole),
        "{what}: the consumer got other bytes"
    );
}

fn first_byte(out: &[u8]) -> &[u8] {
    &out[..1]
}

fn first_line(out: &[u8]) -> &[u8] {
    out.split_inclusive(|b| *b == b'\n').next().unwrap_or(out)
}

#[test]
fn admin_json_snapshots_into_head_ends_quietly() {
    assert_ends_quietly(
        &["admin", "--json", "snapshots"],
        &["head", "-c1"],
        first_byte,
    );
}

#[test]
fn admin_snapshots_text_into_head_ends_quietly() {
    assert_ends_quietly(&["admin", "snapshots"], &["head", "-1"], first_line);
}

#[test]
fn debug_log_into_head_ends_quietly() {
    assert_ends_quietly(&["debug", "log"], &["head", "-1"], first_line);
}

#[test]
fn debug_json_log_into_head_ends_quietly() {
    assert_ends_quietly(&["debug", "--json", "log"], &["head", "-c1"], first_byte);
}

#[test]
fn admin_cat_of_a_large_file_into_head_ends_quietly() {
    assert_ends_quietly(
        &["admin", "cat", "1:/bigfile"],
        &["head", "-c", "10"],
        |out| {
            assert_eq!(out.len(), BIG_FILE, "cat printed the whole file");
            &out[..10]
        },
    );
}

#[test]
fn admin_ls_long_of_a_large_directory_into_head_ends_quietly() {
    assert_ends_quietly(
        &["admin", "ls", "-l", "1:/many"],
        &["head", "-1"],
        first_line,
    );
}

/// The one pipe a closed reader must not end a tool on: `asl-capture` echoes the command's
/// output to its stdout, and the capture has to be recorded whether or not anyone reads the
/// echo (this is why SIGPIPE's default action is not restored at the start of `main`).
#[test]
fn capture_records_its_receipt_when_nobody_reads_the_echoed_output() {
    let t = tempfile::tempdir().expect("temporary directory");
    let store = t.path().join("store");
    let o = common::run(common::asl().arg("init-store").arg("--store").arg(&store));
    assert!(o.status.success(), "{}", common::transcript(&o));
    // About 2 MB of output: far more than the pipe holds once `head` has gone.
    let p = pipe_command(
        common::asl()
            .args(["capture", "-q", "--store"])
            .arg(&store)
            .args(["--", "seq", "1", "300000"]),
        &["head", "-1"],
    );
    assert_eq!(p.consumed, b"1\n");
    assert_eq!(p.status.code(), Some(0), "{:?}: {}", p.status, p.stderr);
    let o = common::run(
        common::asl()
            .args(["admin", "--json", "snapshots", "--store"])
            .arg(&store),
    );
    assert!(o.status.success(), "{}", common::transcript(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["meta"]["kind"], "capture", "{list}");
}
