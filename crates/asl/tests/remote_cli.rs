//! Remote intake end to end: a real `asl-server` process (plain HTTP on loopback, and HTTPS
//! with a test CA), real `asl-intake --remote` and `asl-admin --remote` processes, faults
//! made by killing either side at named crash points, and hostile requests signed (or not)
//! by the test itself.

mod common;
mod remotetest;
mod storetest;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use asl_fs::testing::{RescueTreeOptions, build_rescue_tree, compare_trees, pseudo_random};
use asl_remote::auth;
use remotetest::{ServerProc, asl_out, client_key, free_port, json, spawn_server};
use storetest::make_files;

/// A test site: a key, a server.conf for one store `main` (and `other`, which the key may
/// only read), on a free loopback port.
struct Site {
    dir: tempfile::TempDir,
    key: PathBuf,
    public: String,
    port: u16,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = client_key(dir.path());
        let site = Site {
            port: free_port(),
            dir,
            key,
            public,
        };
        site.write_conf("listen = 127.0.0.1:{port}\nplain_http = yes\n");
        site
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("srv-main")
    }

    /// Writes server.conf with `head` (where `{port}` is replaced) before the stores and keys.
    fn write_conf(&self, head: &str) {
        let text = format!(
            "{}store.main.path = {}\nstore.other.path = {}\nkey.client.public = {}\n\
             grant.client.main = read, write\ngrant.client.other = read\n",
            head.replace("{port}", &self.port.to_string()),
            self.store().display(),
            self.dir.path().join("srv-other").display(),
            self.public
        );
        std::fs::write(self.dir.path().join("server.conf"), text).unwrap();
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/main", self.port)
    }

    /// Starts the server (with `env`) and waits for its "listening" line.
    fn start(&self, env: &[(&str, &str)]) -> ServerProc {
        let conf = self.dir.path().join("server.conf");
        spawn_server(&conf, self.port, env, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("asl-server ended before listening: {e}"))
    }

    /// `asl ARGS --remote URL --key KEY`, with `env`.
    fn remote(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = common::asl();
        cmd.args(args)
            .args(["--remote", &self.url(), "--key"])
            .arg(&self.key)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        common::run(&mut cmd)
    }

    /// Restores snapshot `which` through the server into a fresh directory and checks it
    /// equals `src`, file by file.
    fn restore_matches(&self, which: &str, src: &Path) {
        let target = self.dir.path().join(format!("restored-{which}"));
        let rest = self.remote(
            &[
                "admin",
                "restore",
                which,
                "--target",
                target.to_str().unwrap(),
            ],
            &[],
        );
        assert!(rest.status.success(), "{}", common::transcript(&rest));
        let diffs = compare_trees(src, &target);
        assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    }
}

/// Verifies the server's store directly on disk (the server stopped), with read-data.
fn verify_on_disk(store: &Path) {
    let out = asl_out(&[
        "admin",
        "--store",
        store.to_str().unwrap(),
        "verify",
        "--read-data",
    ]);
    assert!(out.status.success(), "{}", common::transcript(&out));
}

fn snapshot_count(store: &Path) -> usize {
    let out = asl_out(&[
        "admin",
        "--json",
        "--store",
        store.to_str().unwrap(),
        "snapshots",
    ]);
    json(&out).as_array().unwrap().len()
}

fn rescue_tree(dir: &Path) {
    build_rescue_tree(
        dir,
        &RescueTreeOptions {
            big_dir_entries: 200,
        },
    );
}

#[test]
fn local_and_remote_intake_give_the_same_root_and_a_remote_restore_is_exact() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    rescue_tree(&src);
    let local = site.dir.path().join("local");
    let local_root = remotetest::local_intake_root(&local, &src);
    let server = site.start(&[]);
    let r = site.remote(&["intake", "--json", src.to_str().unwrap()], &[]);
    assert!(r.status.success(), "{}", common::transcript(&r));
    let rj = json(&r);
    assert_eq!(rj["root"].as_str().unwrap(), local_root);
    assert!(rj["created"].as_bool().unwrap());
    // A second intake of the same tree sends nothing the server has.
    let again = site.remote(&["intake", "--json", src.to_str().unwrap()], &[]);
    assert!(again.status.success(), "{}", common::transcript(&again));
    assert_eq!(
        json(&again)["bytes_sent"],
        0,
        "{}",
        common::transcript(&again)
    );
    // Read back through the server: listing, one file, the whole tree.
    let snaps = site.remote(&["admin", "--json", "snapshots"], &[]);
    assert_eq!(json(&snaps).as_array().unwrap().len(), 2);
    site.restore_matches("1", &src);
    let verify = site.remote(&["admin", "verify", "--read-data"], &[]);
    assert!(verify.status.success(), "{}", common::transcript(&verify));
    drop(server);
    verify_on_disk(&site.store());
}

#[test]
fn a_remote_restore_reads_many_files_per_request_and_is_exact() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    build_rescue_tree(
        &src,
        &RescueTreeOptions {
            big_dir_entries: 3000,
        },
    );
    // One file longer than a batched read takes: it is read alone.
    std::fs::write(src.join("plain/large.bin"), pseudo_random(7, 6 << 20)).unwrap();
    let _server = site.start(&[]);
    let r = site.remote(&["intake", "-q", src.to_str().unwrap()], &[]);
    assert!(r.status.success(), "{}", common::transcript(&r));
    let restore = |spec: &str, target: &Path| {
        let out = site.remote(
            &[
                "admin",
                "--json",
                "restore",
                spec,
                "--target",
                target.to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", common::transcript(&out));
        json(&out)
    };
    let target = site.dir.path().join("restored-all");
    let rep = restore("1", &target);
    let diffs = compare_trees(&src, &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let files = rep["files"].as_u64().unwrap();
    let reads = &rep["remote_reads"];
    let batches = reads["batch_requests"].as_u64().unwrap();
    assert!(files > 3000, "{rep}");
    // Trees and files came in a few dozen requests, not one per file.
    assert!(
        batches * 50 < files,
        "{batches} batched requests for {files} files: {rep}"
    );
    assert!(
        reads["from_batches"].as_u64().unwrap() >= files - 10,
        "{rep}"
    );
    assert!(
        reads["read_alone"].as_u64().unwrap() >= 1,
        "the large file: {rep}"
    );
    // A target that is not empty is refused as for a local restore (before any read-ahead).
    let again = site.remote(
        &[
            "admin",
            "restore",
            "1",
            "--target",
            target.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!again.status.success(), "{}", common::transcript(&again));
    assert!(
        common::transcript(&again).contains("not empty"),
        "{}",
        common::transcript(&again)
    );
    // A directory inside the snapshot: its contents, read ahead as well.
    let sub = site.dir.path().join("restored-big");
    let rep = restore("1:big", &sub);
    let diffs = compare_trees(&src.join("big"), &sub);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert!(
        rep["remote_reads"]["batch_requests"].as_u64().unwrap() < 20,
        "{rep}"
    );
}

/// Waits until files just written are old enough for the stat cache: an intake does not
/// cache a file whose ctime is within 50 ms of its read ("racy git", asl-fs intake/read.rs),
/// and a test's files may be that young. A precondition, not a timing assertion.
fn let_files_age() {
    std::thread::sleep(Duration::from_millis(200));
}

/// `asl-intake --json --remote` of `src` with its stat cache under `cache`.
fn cached_intake(site: &Site, src: &Path, cache: &Path) -> serde_json::Value {
    let out = site.remote(
        &["intake", "--json", src.to_str().unwrap()],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", common::transcript(&out));
    json(&out)
}

#[test]
fn an_unchanged_remote_reintake_reads_no_file_content_and_gives_the_same_root() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    make_files(&src.join("a"), 40, 20_000, 21);
    make_files(&src.join("b"), 40, 3_000, 22);
    let_files_age();
    let cache = site.dir.path().join("cache");
    let _server = site.start(&[]);
    let first = cached_intake(&site, &src, &cache);
    assert_eq!(first["files"], 80, "{first}");
    assert!(
        first["bytes_read"].as_u64().unwrap() >= 40 * 23_000,
        "{first}"
    );
    // The cache is kept per server and store, under the user's cache directory.
    let kept = std::fs::read_dir(cache.join("asl/remote")).unwrap().count();
    assert_eq!(kept, 1, "one stat cache file");
    let again = cached_intake(&site, &src, &cache);
    assert_eq!(again["root"], first["root"], "{again}");
    assert_eq!(again["bytes_read"], 0, "{again}");
    assert_eq!(again["files_opened"], 0, "{again}");
    assert_eq!(again["stat_cache_hits"], 80, "{again}");
    assert_eq!(again["bytes_sent"], 0, "{again}");
    assert_eq!(again["stat_cache_checked"]["contents"], 80, "{again}");
    assert_eq!(again["stat_cache_checked"]["on_server"], 80, "{again}");
    // A changed file is read again (and only it).
    std::fs::write(src.join("a/f3"), b"changed").unwrap();
    let changed = cached_intake(&site, &src, &cache);
    assert_eq!(changed["files_opened"], 1, "{changed}");
    assert_ne!(changed["root"], first["root"], "{changed}");
    // --no-stat-cache reads everything, and gives the same root.
    let full = site.remote(
        &["intake", "--json", "--no-stat-cache", src.to_str().unwrap()],
        &[],
    );
    assert!(full.status.success(), "{}", common::transcript(&full));
    assert_eq!(json(&full)["root"], changed["root"]);
    assert_eq!(json(&full)["files_opened"], 80);
}

#[test]
fn a_replaced_server_store_is_not_trusted_from_the_client_stat_cache() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    make_files(&src, 30, 10_000, 23);
    let_files_age();
    let cache = site.dir.path().join("cache");
    // The store as the server creates it, empty: put back later under the same identity,
    // as a restored-from-old-backup or wiped server would be.
    let server = site.start(&[]);
    drop(server);
    let empty = site.dir.path().join("empty-store");
    copy_dir(&site.store(), &empty);
    let server = site.start(&[]);
    let first = cached_intake(&site, &src, &cache);
    drop(server);
    std::fs::remove_dir_all(site.store()).unwrap();
    copy_dir(&empty, &site.store());
    let server = site.start(&[]);
    let again = cached_intake(&site, &src, &cache);
    // Every cache entry named content the server no longer has: none was trusted, every file
    // was read and sent again, and the snapshot is complete.
    assert_eq!(again["stat_cache_checked"]["contents"], 30, "{again}");
    assert_eq!(again["stat_cache_checked"]["on_server"], 0, "{again}");
    assert_eq!(again["stat_cache_hits"], 0, "{again}");
    assert_eq!(again["files_opened"], 30, "{again}");
    assert!(
        again["bytes_sent"].as_u64().unwrap() >= 30 * 10_000,
        "{again}"
    );
    assert_eq!(again["root"], first["root"], "{again}");
    assert_eq!(again["snapshot"], 1, "{again}");
    site.restore_matches("1", &src);
    drop(server);
    verify_on_disk(&site.store());
}

/// Copies a directory tree of plain files and directories.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

#[test]
fn over_https_the_client_trusts_the_given_ca_and_refuses_an_unknown_one() {
    let site = Site::new();
    let ca =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = site.dir.path().join("server.crt");
    let key = site.dir.path().join("server.key");
    std::fs::write(&cert, ca.cert.pem()).unwrap();
    std::fs::write(&key, ca.signing_key.serialize_pem()).unwrap();
    site.write_conf(&format!(
        "listen = 127.0.0.1:{{port}}\ntls.cert = {}\ntls.key = {}\n",
        cert.display(),
        key.display()
    ));
    let _server = site.start(&[]);
    let src = site.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"over tls").unwrap();
    let url = format!("https://127.0.0.1:{}/main", site.port);
    let run = |ca: Option<&Path>| {
        let mut cmd = common::asl();
        cmd.args(["intake", "--json", "--remote", &url, "--key"])
            .arg(&site.key)
            .arg(&src)
            .stdin(Stdio::null());
        if let Some(ca) = ca {
            cmd.arg("--ca").arg(ca);
        }
        common::run(&mut cmd)
    };
    let ok = run(Some(&cert));
    assert!(ok.status.success(), "{}", common::transcript(&ok));
    let untrusted = run(None);
    assert_eq!(
        untrusted.status.code(),
        Some(1),
        "{}",
        common::transcript(&untrusted)
    );
    let (_, err) = common::text(&untrusted);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("tls") || err.contains("TLS"),
        "{err}"
    );
}

#[test]
fn a_client_killed_before_its_commit_resends_almost_nothing() {
    let site = Site::new();
    let _server = site.start(&[]);
    let src = site.dir.path().join("src");
    make_files(&src, 24, 1 << 20, 7);
    let killed = site.remote(
        &["intake", "-q", src.to_str().unwrap()],
        &[("ASL_CRASH_AT", "remote:commit")],
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9),
        "{}",
        common::transcript(&killed)
    );
    let rerun = site.remote(&["intake", "--json", src.to_str().unwrap()], &[]);
    assert!(rerun.status.success(), "{}", common::transcript(&rerun));
    let sent = json(&rerun)["bytes_sent"].as_u64().unwrap();
    let total = 24u64 << 20;
    assert!(sent * 20 < total, "the rerun sent {sent} of {total} bytes");
}

#[test]
fn a_client_killed_mid_upload_finishes_on_rerun_with_one_exact_snapshot() {
    let site = Site::new();
    let server = site.start(&[]);
    let src = site.dir.path().join("src");
    make_files(&src, 24, 1 << 20, 8);
    // Three batches of 8 MiB; two are sent at once, so the third starts only once one of the
    // first two was answered (durable on the server): it dies with that one stored.
    let killed = site.remote(
        &["intake", "-q", src.to_str().unwrap()],
        &[("ASL_CRASH_AT", "remote:upload#3")],
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9)
    );
    let rerun = site.remote(&["intake", "--json", src.to_str().unwrap()], &[]);
    assert!(rerun.status.success(), "{}", common::transcript(&rerun));
    let sent = json(&rerun)["bytes_sent"].as_u64().unwrap();
    assert!(sent < 24 << 20, "the rerun sent everything again: {sent}");
    site.restore_matches("latest", &src);
    drop(server);
    assert_eq!(snapshot_count(&site.store()), 1);
    verify_on_disk(&site.store());
}

#[test]
fn a_server_killed_mid_upload_lets_the_client_finish_after_its_restart() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    make_files(&src, 24, 1 << 20, 9);
    // The server dies as it makes its second upload durable.
    let mut server = site.start(&[("ASL_CRASH_AT", "rename:segment#2")]);
    let client = common::asl()
        .args(["intake", "--json", "--remote", &site.url(), "--key"])
        .arg(&site.key)
        .arg(&src)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = server.child.take().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // The client keeps retrying; a restarted server takes it from there.
    let _restarted = site.start(&[]);
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", common::transcript(&out));
    drop(_restarted);
    drop(server);
    assert_eq!(snapshot_count(&site.store()), 1);
    verify_on_disk(&site.store());
}

/// What [`raw`] returns: status, the JSON body (null if none), the signed headers sent.
type Answer = (u16, serde_json::Value, Vec<(&'static str, String)>);

/// Sends one request as the test wants it: signed by `key` (or not), with the body `body`
/// (whose signed hash may be `claimed` instead), and returns status and body.
fn raw(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&asl_prov::sign::Key>,
    body: &[u8],
    claimed: Option<&str>,
) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    let mut headers = Vec::new();
    if let Some(k) = key {
        let sha = claimed.map_or_else(|| auth::sha256_hex(body), str::to_string);
        headers = auth::sign(k, method, path, &sha);
        for (n, v) in &headers {
            req = req.header(*n, v);
        }
    }
    let resp = agent.run(req.body(body.to_vec()).unwrap()).unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().read_to_vec().unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        headers,
    )
}

#[test]
fn hostile_requests_are_refused_with_4xx_and_change_nothing() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    make_files(&src, 3, 10_000, 11);
    let server = site.start(&[]);
    let first = site.remote(&["intake", "-q", src.to_str().unwrap()], &[]);
    assert!(first.status.success(), "{}", common::transcript(&first));
    let key = asl_prov::sign::Key::load(&site.key).unwrap();
    let stranger = asl_prov::sign::Key::generate().unwrap();
    let p = site.port;
    let base = "/v1/stores/main";
    let frame = |r: &str, bytes: &[u8]| {
        let mut b = Vec::new();
        asl_remote::api::encode_frame(&mut b, r, 0, bytes);
        b
    };
    let good_ref = asl_store::HashAlgo::Blake3.digest(b"hello").to_string();
    let wrong_ref = asl_store::HashAlgo::Blake3.digest(b"other").to_string();
    let missing_root = asl_store::HashAlgo::Blake3
        .digest(b"never uploaded")
        .to_string();
    let cases: Vec<(&str, Answer, u16)> = vec![
        ("unsigned", raw(p, "GET", base, None, b"", None), 401),
        (
            "unknown key",
            raw(p, "GET", base, Some(&stranger), b"", None),
            401,
        ),
        (
            "body not matching the signed hash",
            raw(
                p,
                "POST",
                &format!("{base}/artifacts"),
                Some(&key),
                &frame(&good_ref, b"hello"),
                Some(&auth::sha256_hex(b"x")),
            ),
            401,
        ),
        (
            "bytes not matching their reference",
            raw(
                p,
                "POST",
                &format!("{base}/artifacts"),
                Some(&key),
                &frame(&wrong_ref, b"hello"),
                None,
            ),
            422,
        ),
        (
            "a truncated frame",
            raw(
                p,
                "POST",
                &format!("{base}/artifacts"),
                Some(&key),
                &frame(&good_ref, b"hello")[..20],
                None,
            ),
            400,
        ),
        (
            "malformed JSON",
            raw(
                p,
                "POST",
                &format!("{base}/missing"),
                Some(&key),
                b"{\"refs\": [",
                None,
            ),
            400,
        ),
        (
            "a reference with path characters",
            raw(
                p,
                "POST",
                &format!("{base}/missing"),
                Some(&key),
                br#"{"refs":["../../etc/passwd"]}"#,
                None,
            ),
            400,
        ),
        (
            "a commit of a root that is not there",
            raw(
                p,
                "POST",
                &format!("{base}/commit"),
                Some(&key),
                format!(r#"{{"root":"{missing_root}","key":"k1","meta":{{"kind":"intake"}}}}"#)
                    .as_bytes(),
                None,
            ),
            409,
        ),
        (
            "a write to a store the key may only read",
            raw(
                p,
                "POST",
                "/v1/stores/other/artifacts",
                Some(&key),
                &frame(&good_ref, b"hello"),
                None,
            ),
            403,
        ),
        (
            "a store that is not served",
            raw(p, "GET", "/v1/stores/nope", Some(&key), b"", None),
            403,
        ),
        (
            "a batched read of more references than allowed",
            raw(
                p,
                "POST",
                &format!("{base}/read"),
                Some(&key),
                &serde_json::to_vec(&serde_json::json!({
                    "refs": vec![good_ref.clone(); asl_remote::api::MAX_READ_BATCH + 1]
                }))
                .unwrap(),
                None,
            ),
            413,
        ),
        (
            "a batched read of a reference with path characters",
            raw(
                p,
                "POST",
                &format!("{base}/read"),
                Some(&key),
                br#"{"refs":["b3:../../etc/passwd"]}"#,
                None,
            ),
            400,
        ),
        (
            "a batched read that is not JSON",
            raw(
                p,
                "POST",
                &format!("{base}/read"),
                Some(&key),
                b"\x00\x01refs",
                None,
            ),
            400,
        ),
        (
            "a batched read as of a snapshot that does not exist",
            raw(
                p,
                "POST",
                &format!("{base}/read?snapshot=99"),
                Some(&key),
                format!(r#"{{"refs":["{good_ref}"]}}"#).as_bytes(),
                None,
            ),
            404,
        ),
        (
            "an oversized batched read",
            raw(
                p,
                "POST",
                &format!("{base}/read"),
                Some(&key),
                &vec![b' '; asl_remote::api::MAX_BATCH_BYTES + 10],
                None,
            ),
            413,
        ),
        (
            "an oversized body",
            raw(
                p,
                "POST",
                &format!("{base}/artifacts"),
                Some(&key),
                &vec![0u8; asl_remote::api::MAX_BATCH_BYTES + 10],
                None,
            ),
            413,
        ),
    ];
    for (what, (status, body, _), want) in &cases {
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
    // A replayed request: the same signed headers again.
    let (status, _, headers) = raw(p, "GET", base, Some(&key), b"", None);
    assert_eq!(status, 200);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("http://127.0.0.1:{p}{base}"));
    for (n, v) in &headers {
        req = req.header(*n, v);
    }
    let replay = agent.run(req.body(Vec::<u8>::new()).unwrap()).unwrap();
    assert_eq!(
        replay.status().as_u16(),
        401,
        "a replayed request was accepted"
    );
    // Nothing changed: one snapshot, the store verifies.
    drop(server);
    assert_eq!(snapshot_count(&site.store()), 1);
    verify_on_disk(&site.store());
}

#[test]
fn a_lost_commit_response_never_makes_two_snapshots() {
    let site = Site::new();
    let src = site.dir.path().join("src");
    make_files(&src, 2, 1000, 12);
    let server = site.start(&[]);
    let key = asl_prov::sign::Key::load(&site.key).unwrap();
    let r = site.remote(&["intake", "--json", src.to_str().unwrap()], &[]);
    let root = json(&r)["root"].as_str().unwrap().to_string();
    // The same commit twice (as a client whose response was lost retries it).
    let body = format!(r#"{{"root":"{root}","key":"retry-1","meta":{{"kind":"intake"}}}}"#);
    let (s1, b1, _) = raw(
        site.port,
        "POST",
        "/v1/stores/main/commit",
        Some(&key),
        body.as_bytes(),
        None,
    );
    let (s2, b2, _) = raw(
        site.port,
        "POST",
        "/v1/stores/main/commit",
        Some(&key),
        body.as_bytes(),
        None,
    );
    assert_eq!((s1, s2), (201, 200), "{b1} {b2}");
    assert_eq!(b1["snapshot"]["id"], b2["snapshot"]["id"]);
    assert_eq!(b2["created"], false);
    drop(server);
    assert_eq!(snapshot_count(&site.store()), 2);
}

#[test]
fn eight_clients_at_once_all_commit_and_share_what_they_have_in_common() {
    let site = Site::new();
    let server = site.start(&[]);
    let shared = pseudo_random(999, 2 << 20);
    let trees: Vec<PathBuf> = (0..8u64)
        .map(|i| {
            let d = site.dir.path().join(format!("tree{i}"));
            make_files(&d, 4, 256 << 10, 100 + i);
            std::fs::write(d.join("shared"), &shared).unwrap();
            d
        })
        .collect();
    let clients: Vec<Child> = trees
        .iter()
        .map(|t| {
            common::asl()
                .args(["intake", "--json", "--remote", &site.url(), "--key"])
                .arg(&site.key)
                .arg(t)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", common::transcript(&out));
    }
    drop(server);
    assert_eq!(snapshot_count(&site.store()), 8);
    verify_on_disk(&site.store());
    // The shared 2 MiB was stored once: the store holds less than the eight trees.
    let blocks: u64 = walk(&site.store().join("blocks"));
    let all = 8 * ((4 * (256 << 10)) + (2 << 20)) as u64;
    assert!(
        blocks < all - 6 * (2 << 20),
        "{blocks} bytes of blocks for {all} bytes of trees"
    );
}

fn walk(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path())
                    } else {
                        e.metadata().unwrap().len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_full_disk_on_the_server_is_a_clear_error_and_the_store_stays_consistent() {
    let site = Site::new();
    // The server's store on a 16 MiB tmpfs the test mounts (CI runs as root).
    let mnt = site.dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a tmpfs needs root");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let store = mnt.join("store");
    let text = std::fs::read_to_string(site.dir.path().join("server.conf"))
        .unwrap()
        .replace(
            &site.store().display().to_string(),
            &store.display().to_string(),
        );
    std::fs::write(site.dir.path().join("server.conf"), text).unwrap();
    let server = site.start(&[]);
    let small = site.dir.path().join("small-src");
    make_files(&small, 2, 100_000, 13);
    assert!(
        site.remote(&["intake", "-q", small.to_str().unwrap()], &[])
            .status
            .success()
    );
    let big = site.dir.path().join("big-src");
    make_files(&big, 12, 2 << 20, 14);
    let out = site.remote(&["intake", "-q", big.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", common::transcript(&out));
    let (_, err) = common::text(&out);
    assert!(err.contains("disk is full"), "{err}");
    drop(server);
    assert_eq!(snapshot_count(&store), 1);
    let v = asl_out(&[
        "admin",
        "--store",
        store.to_str().unwrap(),
        "verify",
        "--read-data",
    ]);
    assert!(v.status.success(), "{}", common::transcript(&v));
}

#[test]
fn server_conf_errors_name_file_and_line_and_plain_http_stays_on_loopback() {
    let site = Site::new();
    site.write_conf("listen = 0.0.0.0:{port}\nplain_http = yes\nbogus = 1\n");
    let conf = site.dir.path().join("server.conf");
    let out = asl_out(&["server", "--check", "--config", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", common::transcript(&out));
    let (_, err) = common::text(&out);
    let name = conf.display().to_string();
    assert!(
        err.contains(&format!("{name}:3: unknown setting 'bogus'")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:1: plain HTTP is served only on a loopback address"
        )),
        "{err}"
    );
}

/// A network namespace joined to the host by a veth pair, removed (with its links) on drop.
struct NetNs {
    name: String,
    host_link: String,
}

impl NetNs {
    /// `10.NET.0.1` on the host side, `10.NET.0.2` inside, a default route to the host.
    fn new(name: &str, net: u8) -> NetNs {
        let ns = NetNs {
            name: name.to_string(),
            host_link: format!("{name}-h"),
        };
        let inner = format!("{name}-n");
        let host_ip = format!("10.{net}.0.1/24");
        let ns_ip = format!("10.{net}.0.2/24");
        let gw = format!("10.{net}.0.1");
        let ip = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("run ip (iproute2)");
            assert!(
                st.success(),
                "ip {args:?} failed (CI runs as root with iproute2)"
            );
        };
        ip(&["netns", "add", name]);
        ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
        ]);
        ip(&["link", "set", &inner, "netns", name]);
        ip(&["addr", "add", &host_ip, "dev", &ns.host_link]);
        ip(&["link", "set", &ns.host_link, "up"]);
        for args in [
            vec!["addr", "add", &ns_ip, "dev", &inner],
            vec!["link", "set", &inner, "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", &gw],
        ] {
            let mut full = vec!["netns", "exec", name, "ip"];
            full.extend(args);
            ip(&full);
        }
        ns
    }

    /// `asl ARGS` inside the namespace.
    fn asl(&self, args: &[&str]) -> std::process::Output {
        common::run(
            Command::new("ip")
                .args(["netns", "exec", &self.name, env!("CARGO_BIN_EXE_asl")])
                .args(args)
                .env_remove("ASL_STORE")
                .env_remove("ASL_ROOT")
                .env_remove("NOTIFY_SOCKET")
                .env("XDG_CACHE_HOME", common::test_cache_home())
                .stdin(Stdio::null()),
        )
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn in_remote_mode_preflight_and_the_intake_service_reach_a_server_across_a_network() {
    let site = Site::new();
    let ns = NetNs::new("aslrs", 213);
    // The server on the host side of the cable, over TLS (plain HTTP stays on loopback).
    let cert = rcgen::generate_simple_self_signed(vec!["10.213.0.1".into()]).unwrap();
    let crt = site.dir.path().join("server.crt");
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    let key_pem = site.dir.path().join("server.key");
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    site.write_conf(&format!(
        "listen = 10.213.0.1:{{port}}\ntls.cert = {}\ntls.key = {}\n",
        crt.display(),
        key_pem.display()
    ));
    let _server = site.start(&[]);
    let url = format!("https://10.213.0.1:{}/main", site.port);
    // The rescue host's root: asl.conf in remote mode, the CA and the client key slot; /sys
    // and /proc are the namespace's own, so preflight sees its network.
    let root = site.dir.path().join("rescue-root");
    std::fs::create_dir_all(root.join("etc/asl/keys")).unwrap();
    std::os::unix::fs::symlink("/sys", root.join("sys")).unwrap();
    std::os::unix::fs::symlink("/proc", root.join("proc")).unwrap();
    std::fs::copy(&crt, root.join("etc/asl/ca.pem")).unwrap();
    std::fs::copy(&site.key, root.join("etc/asl/keys/client.key")).unwrap();
    std::fs::write(
        root.join("etc/asl/asl.conf"),
        format!("mode = remote\nremote.endpoint = {url}\nremote.ca = /etc/asl/ca.pem\n"),
    )
    .unwrap();
    let r = root.to_str().unwrap();
    let pre = ns.asl(&["preflight", "--json", "--root", r]);
    assert!(pre.status.success(), "{}", common::transcript(&pre));
    assert_eq!(
        json(&pre)["decision"],
        "remote",
        "{}",
        common::transcript(&pre)
    );
    let svc = ns.asl(&["intake", "--service", "--json", "--root", r]);
    assert!(svc.status.success(), "{}", common::transcript(&svc));
    assert_eq!(json(&svc)["remote"], url.as_str());
    // The command the service names takes a tree in from inside the namespace.
    let src = site.dir.path().join("src");
    rescue_tree(&src);
    let key = root.join("etc/asl/keys/client.key");
    let ca = root.join("etc/asl/ca.pem");
    let intake = ns.asl(&[
        "intake",
        "--json",
        "--remote",
        &url,
        "--key",
        key.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(intake.status.success(), "{}", common::transcript(&intake));
    // Restored on the host side, through the server: the same tree.
    let target = site.dir.path().join("restored");
    let rest = common::run(
        common::asl()
            .args([
                "admin",
                "restore",
                "latest",
                "--target",
                target.to_str().unwrap(),
            ])
            .args(["--remote", &url, "--key"])
            .arg(&site.key)
            .arg("--ca")
            .arg(&crt)
            .stdin(Stdio::null()),
    );
    assert!(rest.status.success(), "{}", common::transcript(&rest));
    let diffs = compare_trees(&src, &target);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
