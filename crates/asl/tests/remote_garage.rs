//! asl-server with its stores in a real Garage cluster (3 nodes on loopback, replication
//! factor 3 or 1, started and removed by each test): the round trip against a local intake,
//! a node stopped and a node's data wiped (nothing lost with rf=3; with rf=1 verify names
//! what is lost), and two servers on one bucket.
//!
//! These tests need the `garage` binary (`scripts/install-garage.sh`); without it they fail
//! and say so.

mod common;
mod garage_cluster;
mod remotetest;
mod storetest;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use asl_fs::testing::{RescueTreeOptions, build_rescue_tree, compare_trees};
use garage_cluster::Garage;
use remotetest::{ServerProc, asl_out, client_key, free_port, json, spawn_server};
use storetest::make_files;

/// A client key, a Garage cluster, and server.conf files naming the store `main` in the
/// bucket (lease of 6 s) and `disk` in a local directory.
struct Site {
    garage: Garage,
    dir: tempfile::TempDir,
    key: PathBuf,
    public: String,
    /// `store.main.s3.retry_seconds`: how long the server retries a failing Garage request.
    retry_seconds: u64,
}

impl Site {
    fn new() -> Site {
        Site::with_replication(3)
    }

    fn with_replication(rf: usize) -> Site {
        let garage = Garage::start_with(rf);
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = client_key(dir.path());
        Site {
            garage,
            dir,
            key,
            public,
            retry_seconds: 60,
        }
    }

    /// Writes a server.conf listening on `port` and returns its path.
    fn conf(&self, port: u16) -> PathBuf {
        let path = self.dir.path().join(format!("server-{port}.conf"));
        let text = format!(
            "listen = 127.0.0.1:{port}\nplain_http = yes\n\
             store.main.s3.endpoint = {}\nstore.main.s3.bucket = {}\n\
             store.main.s3.prefix = stores/main\nstore.main.s3.region = {}\n\
             store.main.s3.credentials = {}\nstore.main.s3.lease_seconds = 6\n\
             store.main.s3.retry_seconds = {}\n\
             store.disk.path = {}\nkey.client.public = {}\n\
             grant.client.main = read, write, admin\ngrant.client.disk = read, write, admin\n",
            self.garage.endpoint(0),
            garage_cluster::BUCKET,
            garage_cluster::REGION,
            self.garage.credentials_file().display(),
            self.retry_seconds,
            self.dir.path().join("disk-store").display(),
            self.public
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts a server on a new port; Ok once it listens, Err(its stderr) if it ends first.
    fn try_start(&self) -> Result<ServerProc, String> {
        let port = free_port();
        spawn_server(&self.conf(port), port, &[], Duration::from_secs(120))
    }

    fn start(&self) -> ServerProc {
        self.try_start()
            .unwrap_or_else(|e| panic!("asl-server did not start: {e}"))
    }

    /// `asl ARGS --remote URL --key KEY` against store `store` of `server`.
    fn remote(&self, server: &ServerProc, store: &str, args: &[&str]) -> std::process::Output {
        let url = format!("http://127.0.0.1:{}/{store}", server.port);
        let mut cmd = common::asl();
        cmd.args(args)
            .args(["--remote", &url, "--key"])
            .arg(&self.key)
            .stdin(Stdio::null());
        common::run(&mut cmd)
    }

    fn intake(&self, server: &ServerProc, store: &str, src: &Path) -> serde_json::Value {
        let out = self.remote(server, store, &["intake", "--json", src.to_str().unwrap()]);
        assert!(out.status.success(), "{}", common::transcript(&out));
        json(&out)
    }

    fn snapshots(&self, server: &ServerProc, store: &str) -> usize {
        let out = self.remote(server, store, &["admin", "--json", "snapshots"]);
        assert!(out.status.success(), "{}", common::transcript(&out));
        json(&out).as_array().unwrap().len()
    }

    fn verify(&self, server: &ServerProc, store: &str) {
        let out = self.remote(server, store, &["admin", "verify", "--read-data"]);
        assert!(out.status.success(), "{}", common::transcript(&out));
    }

    fn restore_is_exact(&self, server: &ServerProc, store: &str, snap: &str, src: &Path) {
        let target = self
            .dir
            .path()
            .join(format!("restored-{store}-{}", free_port()));
        let out = self.remote(
            server,
            store,
            &[
                "admin",
                "restore",
                snap,
                "--target",
                target.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", common::transcript(&out));
        let diffs = compare_trees(src, &target);
        assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    }
}

#[test]
fn local_remote_and_garage_intakes_give_one_root_and_exact_restores() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    build_rescue_tree(
        &src,
        &RescueTreeOptions {
            big_dir_entries: 200,
        },
    );
    let local = site.dir.path().join("local");
    let local_root = remotetest::local_intake_root(&local, &src);

    let server = site.start();
    let disk = site.intake(&server, "disk", &src);
    let garage = site.intake(&server, "main", &src);
    assert_eq!(disk["root"].as_str().unwrap(), local_root);
    assert_eq!(garage["root"].as_str().unwrap(), local_root);
    // Unchanged: nothing is sent again to the bucket.
    let again = site.intake(&server, "main", &src);
    assert_eq!(again["bytes_sent"], 0, "{again}");

    let target = site.dir.path().join("restored-local");
    let out = asl_out(&[
        "admin",
        "--store",
        local.to_str().unwrap(),
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::transcript(&out));
    let diffs = compare_trees(&src, &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    site.restore_is_exact(&server, "disk", "latest", &src);
    site.restore_is_exact(&server, "main", "1", &src);
    site.verify(&server, "main");

    // A second server process reads the same bucket store from scratch after the first
    // ends: what was acknowledged is in the bucket, not in the first server's memory.
    drop(server);
    let server = site.start();
    assert_eq!(site.snapshots(&server, "main"), 2);
    site.restore_is_exact(&server, "main", "latest", &src);
    site.verify(&server, "main");
}

#[test]
fn an_intake_completes_with_a_node_down_and_a_wiped_node_loses_nothing() {
    let mut site = Site::new();
    let server = site.start();
    let first = site.dir.path().join("first");
    make_files(&first, 16, 1 << 20, 1);
    site.intake(&server, "main", &first);

    // One of the three nodes is killed as the intake starts: with replication factor 3 a
    // quorum of two remains for every write.
    let second = site.dir.path().join("second");
    make_files(&second, 24, 1 << 20, 2);
    let url = format!("http://127.0.0.1:{}/main", server.port);
    let intake = common::asl()
        .args(["intake", "--json", "--remote", &url, "--key"])
        .arg(&site.key)
        .arg(&second)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    site.garage.stop_node(2);
    let out = intake.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", common::transcript(&out));
    site.restore_is_exact(&server, "main", "latest", &second);
    site.garage.start_node(2);

    // A node's data is wiped (every block file it held) and the node stays down; the other
    // two nodes hold a replica of each block, so verify reading every byte is clean and
    // restores are exact: with rf=3, losing one node's data loses nothing.
    assert!(site.garage.data_bytes(1) > 16 << 20, "node 1 held no data");
    site.garage.wipe_node_data(1);
    site.verify(&server, "main");
    site.restore_is_exact(&server, "main", "1", &first);
    site.restore_is_exact(&server, "main", "2", &second);
    assert_eq!(site.snapshots(&server, "main"), 2);
}

#[test]
fn a_lost_node_disk_with_replication_factor_1_is_named_by_verify() {
    let mut site = Site::with_replication(1);
    // A lost block answers 5xx every time: the server gives up on it after 3 s, not 60.
    site.retry_seconds = 3;
    let server = site.start();
    // Six trees, one intake each: six commits, each sealing its own store block of about
    // 256 KiB, which is one Garage block (1 MiB block size) placed on one node by its hash.
    // (Few files: each cat of a lost one waits for Garage and the server to give up.)
    let mut trees = Vec::new();
    for k in 0..6u64 {
        let t = site.dir.path().join(format!("t{k}"));
        make_files(&t, 2, 128 << 10, 100 + k);
        site.intake(&server, "main", &t);
        trees.push(t);
    }

    // The disk of blocks of node 1 or 2 (node 0 is the server's endpoint; its restart is not
    // what this test is about), whichever holds more, is lost and replaced by an empty one.
    // Its metadata survives: the objects are still listed, and exactly those with a block on
    // that node no longer read. (Wiping the metadata as well would, with rf=1, also lose
    // that node's share of Garage's object table: the bucket's listing is one partition on a
    // node chosen by hash of random node ids, so the outcome would be chance, not a test.)
    let victim = if site.garage.data_bytes(1) >= site.garage.data_bytes(2) {
        1
    } else {
        2
    };
    assert!(
        site.garage.data_bytes(victim) > 128 << 10,
        "node {victim} held no blocks"
    );
    site.garage.lose_node_blocks(victim);
    // A new server: the old one still holds pages of the lost blocks in its cache, and what
    // is asked here is what the engine has left.
    drop(server);
    let server = site.start();

    let out = site.remote(
        &server,
        "main",
        &["admin", "--json", "verify", "--read-data"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", common::transcript(&out));
    let rep = json(&out);
    let problems = rep["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{rep}");
    let named: BTreeSet<(u64, String)> = problems
        .iter()
        .flat_map(|p| p["paths"].as_array().unwrap())
        .map(|d| {
            (
                d["snapshot"].as_u64().unwrap(),
                d["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        !named.is_empty(),
        "damage not named by snapshot:path: {rep}"
    );
    // The text names it the same way.
    let text = site.remote(&server, "main", &["admin", "verify", "--read-data"]);
    assert_eq!(text.status.code(), Some(3), "{}", common::transcript(&text));
    let (snap, path) = named.first().unwrap();
    let line = format!("lost: {snap}:{path} (");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&line),
        "no '{line}' in {}",
        common::transcript(&text)
    );

    // What verify names is exactly what no longer reads: every file named (or under a named
    // directory) fails to cat, every other file reads back exact. (The cat fails with exit 1,
    // not 3: Garage breaks the connection of a GET whose block it cannot find, and the server
    // answers 500 for a read its engine failed, as it would for a network fault; only verify,
    // reading every block, tells damage from a passing fault.)
    let (mut lost, mut kept) = (0, 0);
    for (k, tree) in trees.iter().enumerate() {
        let snap = k as u64 + 1;
        for file in storetest::files_under(tree) {
            let path = format!("/{}", file.file_name().unwrap().to_str().unwrap());
            let spec = format!("{snap}:{path}");
            // A lost block makes the server answer 500, which the client would retry for a
            // minute, as for a passing fault.
            let out = site.remote(
                &server,
                "main",
                &["admin", "cat", "--retry-for", "1", &spec],
            );
            let is_named =
                named.contains(&(snap, path.clone())) || named.contains(&(snap, "/".into()));
            if out.status.success() {
                assert!(!is_named, "{spec} is named lost but reads back");
                assert!(
                    out.stdout == std::fs::read(&file).unwrap(),
                    "{spec} differs"
                );
                kept += 1;
            } else {
                assert!(
                    is_named,
                    "{spec} is lost but verify did not name it: {}",
                    common::transcript(&out)
                );
                lost += 1;
            }
        }
    }
    assert!(lost > 0, "verify named damage but every file read back");
    assert!(kept > 0, "every file was lost: the victim held every block");
}

#[test]
fn two_servers_on_one_bucket_store_never_both_write() {
    let site = Site::new();
    let a = site.start();
    let t1 = site.dir.path().join("t1");
    make_files(&t1, 4, 256 << 10, 11);
    site.intake(&a, "main", &t1);

    // While A holds the writer lease, B waits two lease periods and gives up.
    let refused = site.try_start().err().expect("a second server started");
    assert!(refused.to_lowercase().contains("lock"), "{refused}");

    // A killed: its lease expires and B takes the store over with everything A committed.
    drop(a);
    let b = site.start();
    assert_eq!(site.snapshots(&b, "main"), 1);
    let t2 = site.dir.path().join("t2");
    make_files(&t2, 4, 256 << 10, 12);
    site.intake(&b, "main", &t2);
    drop(b);

    // Two servers started at once race for the lease: exactly one wins.
    let (x, y) = std::thread::scope(|s| {
        let x = s.spawn(|| site.try_start());
        let y = s.spawn(|| site.try_start());
        (x.join().unwrap(), y.join().unwrap())
    });
    let winner = match (x, y) {
        (Ok(w), Err(e)) | (Err(e), Ok(w)) => {
            assert!(e.to_lowercase().contains("lock"), "{e}");
            w
        }
        (Ok(_), Ok(_)) => panic!("two servers hold the writer lease of one store"),
        (Err(e1), Err(e2)) => panic!("neither server started:\n{e1}\n{e2}"),
    };
    let t3 = site.dir.path().join("t3");
    make_files(&t3, 4, 256 << 10, 13);
    site.intake(&winner, "main", &t3);
    // Every commit is there, in one line of history: three snapshots, a clean verify.
    assert_eq!(site.snapshots(&winner, "main"), 3);
    site.verify(&winner, "main");
    site.restore_is_exact(&winner, "main", "1", &t1);
    site.restore_is_exact(&winner, "main", "2", &t2);
    site.restore_is_exact(&winner, "main", "3", &t3);
}
