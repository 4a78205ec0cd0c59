//! Preflight against generated fake roots (the decision table), against this machine, and the
//! guarantees about what it writes.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use asl_host::modefile::{self, Decision, ModeRecord};
use asl_host::preflight;
use common::FakeRoot;

#[derive(Clone, Copy)]
enum Ep {
    None,
    /// A listener the test keeps open on 127.0.0.1.
    Listening,
    /// A port nothing listens on (connection refused).
    Refused,
}

struct Row {
    name: &'static str,
    conf: &'static str,
    /// eth0 operstate and whether a default route exists; `None` = only loopback.
    link: Option<(&'static str, bool)>,
    zfs_module: bool,
    /// (importable, imported) pools of a fake zpool on PATH; `None` = no zpool.
    zpool: Option<(&'static [&'static str], &'static [&'static str])>,
    /// (fstype, source, options) of a mount at /mnt/asl/local.
    mount: Option<(&'static str, &'static str, &'static str)>,
    endpoint: Ep,
    expect: Decision,
    reason_has: &'static [&'static str],
}

const UP: Option<(&str, bool)> = Some(("up", true));

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "auto, nothing available",
            conf: "mode = auto\n",
            link: None,
            zfs_module: false,
            zpool: None,
            mount: None,
            endpoint: Ep::None,
            expect: Decision::Operator,
            reason_has: &[
                "/mnt/asl/local is not mounted",
                "ZFS module not loaded (/sys/module/zfs absent)",
                "no remote.endpoint configured",
            ],
        },
        Row {
            name: "auto, pool importable but not imported: preflight tells, never imports",
            conf: "mode = auto\n",
            link: None,
            zfs_module: true,
            zpool: Some((&["rescuepool"], &[])),
            mount: None,
            endpoint: Ep::None,
            expect: Decision::Operator,
            reason_has: &[
                "pool rescuepool is importable but not imported",
                "zpool import rescuepool",
            ],
        },
        Row {
            name: "auto, ZFS dataset mounted read-write",
            conf: "mode = auto\n",
            link: None,
            zfs_module: true,
            zpool: Some((&[], &["rescuepool"])),
            mount: Some(("zfs", "rescuepool/asl", "rw")),
            endpoint: Ep::None,
            expect: Decision::Local,
            reason_has: &["mounted (zfs rescuepool/asl) and writable"],
        },
        Row {
            name: "auto, plain disk mounted read-write, no ZFS at all",
            conf: "mode = auto\n",
            link: None,
            zfs_module: false,
            zpool: None,
            mount: Some(("ext4", "/dev/sdb1", "rw")),
            endpoint: Ep::None,
            expect: Decision::Local,
            reason_has: &["mounted (ext4 /dev/sdb1)"],
        },
        Row {
            name: "auto, mounted read-only, endpoint reachable: remote",
            conf: "mode = auto\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: Some(("ext4", "/dev/sdb1", "ro")),
            endpoint: Ep::Listening,
            expect: Decision::Remote,
            reason_has: &["is reachable", "read-only"],
        },
        Row {
            name: "auto, mounted read-only, no endpoint",
            conf: "mode = auto\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: Some(("ext4", "/dev/sdb1", "ro")),
            endpoint: Ep::None,
            expect: Decision::Operator,
            reason_has: &["mounted read-only"],
        },
        Row {
            name: "auto, network up, endpoint refuses",
            conf: "mode = auto\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: None,
            endpoint: Ep::Refused,
            expect: Decision::Operator,
            reason_has: &["is unreachable"],
        },
        Row {
            name: "auto, link up without default route",
            conf: "mode = auto\n",
            link: Some(("up", false)),
            zfs_module: false,
            zpool: None,
            mount: None,
            endpoint: Ep::Listening,
            expect: Decision::Operator,
            reason_has: &["network is down (no default route)"],
        },
        Row {
            name: "auto, link down although a route is listed",
            conf: "mode = auto\n",
            link: Some(("down", true)),
            zfs_module: false,
            zpool: None,
            mount: None,
            endpoint: Ep::Listening,
            expect: Decision::Operator,
            reason_has: &["no non-loopback link is up"],
        },
        Row {
            name: "auto, tun-like link (operstate unknown, carrier 1) counts as up",
            conf: "mode = auto\n",
            link: Some(("unknown", true)),
            zfs_module: false,
            zpool: None,
            mount: None,
            endpoint: Ep::Listening,
            expect: Decision::Remote,
            reason_has: &["is reachable"],
        },
        Row {
            name: "local, mounted, endpoint reachable: local wins",
            conf: "mode = local\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: Some(("ext4", "/dev/sdb1", "rw")),
            endpoint: Ep::Listening,
            expect: Decision::Local,
            reason_has: &["writable"],
        },
        Row {
            name: "local, not mounted, endpoint reachable: never falls back to remote",
            conf: "mode = local\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: None,
            endpoint: Ep::Listening,
            expect: Decision::Operator,
            reason_has: &["mode=local but local.mount /mnt/asl/local is not mounted"],
        },
        Row {
            name: "remote, local mounted, endpoint reachable: remote",
            conf: "mode = remote\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: Some(("ext4", "/dev/sdb1", "rw")),
            endpoint: Ep::Listening,
            expect: Decision::Remote,
            reason_has: &["is reachable"],
        },
        Row {
            name: "remote, no endpoint configured",
            conf: "mode = remote\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: Some(("ext4", "/dev/sdb1", "rw")),
            endpoint: Ep::None,
            expect: Decision::Operator,
            reason_has: &["mode=remote but no remote.endpoint configured"],
        },
        Row {
            name: "local.pool set, but a plain disk is mounted",
            conf: "mode = local\nlocal.pool = tank\n",
            link: None,
            zfs_module: true,
            zpool: Some((&[], &[])),
            mount: Some(("ext4", "/dev/sdb1", "rw")),
            endpoint: Ep::None,
            expect: Decision::Operator,
            reason_has: &[
                "not from local.pool tank",
                "pool tank is neither imported nor importable",
            ],
        },
        Row {
            name: "local.pool set and its dataset mounted",
            conf: "mode = local\nlocal.pool = tank\n",
            link: None,
            zfs_module: true,
            zpool: Some((&[], &["tank"])),
            mount: Some(("zfs", "tank/asl", "rw")),
            endpoint: Ep::None,
            expect: Decision::Local,
            reason_has: &["zfs tank/asl"],
        },
        Row {
            name: "ZFS module loaded but no zpool on PATH",
            conf: "mode = auto\n",
            link: None,
            zfs_module: true,
            zpool: None,
            mount: None,
            endpoint: Ep::None,
            expect: Decision::Operator,
            reason_has: &["ZFS module loaded but no zpool on PATH"],
        },
        Row {
            name: "invalid configuration",
            conf: "mode = sometimes\n",
            link: UP,
            zfs_module: false,
            zpool: None,
            mount: Some(("ext4", "/dev/sdb1", "rw")),
            endpoint: Ep::None,
            expect: Decision::Operator,
            reason_has: &[
                "configuration is invalid",
                "asl.conf:1: mode: 'sometimes' is not a mode",
            ],
        },
    ]
}

#[test]
fn decision_table_over_generated_fake_roots() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = listener.local_addr().unwrap().port();
    let refused_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut failures = Vec::new();
    for row in rows() {
        let fr = FakeRoot::new();
        let mut conf = row.conf.to_string();
        match row.endpoint {
            Ep::None => {}
            Ep::Listening => {
                conf.push_str(&format!("remote.endpoint = http://127.0.0.1:{open_port}\n"))
            }
            Ep::Refused => conf.push_str(&format!(
                "remote.endpoint = http://127.0.0.1:{refused_port}\n"
            )),
        }
        conf.push_str("remote.timeout = 3s\n");
        fr.conf(&conf);
        if let Some((state, default)) = row.link {
            fr.link(state, default);
        }
        if row.zfs_module {
            fr.zfs_module();
        }
        if let Some((importable, imported)) = row.zpool {
            fr.zpool(importable, imported);
        }
        if let Some((fstype, source, opts)) = row.mount {
            fr.mounted("/mnt/asl/local", fstype, source, opts);
        }
        let out = preflight::run(&fr.root(), &fr.env(), false).unwrap();
        let written = modefile::read(&fr.root())
            .unwrap()
            .expect("mode file written");
        let mut problems = Vec::new();
        if written.decision != row.expect || out.decision != row.expect {
            problems.push(format!(
                "decision {} (expected {})",
                written.decision, row.expect
            ));
        }
        for want in row.reason_has {
            if !written.reason.contains(want) {
                problems.push(format!("reason lacks '{want}'"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    reason: {}",
                row.name,
                problems.join("; "),
                written.reason
            ));
        }
    }
    drop(listener);
    assert!(failures.is_empty(), "rows failed:\n{}", failures.join("\n"));
}

#[test]
fn mode_file_lists_the_facts_after_the_decision() {
    let fr = FakeRoot::new();
    fr.conf("mode = auto\n");
    fr.link("up", true);
    fr.zfs_module();
    fr.zpool(&["rescuepool"], &["other"]);
    preflight::run(&fr.root(), &fr.env(), false).unwrap();
    let text = std::fs::read_to_string(fr.path().join("run/asl/mode")).unwrap();
    let rec = ModeRecord::parse(&text, Path::new("mode")).unwrap();
    assert!(text.starts_with("operator\n"), "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("reason="),
        "{text}"
    );
    assert_eq!(rec.fact("network"), Some("up"));
    assert_eq!(rec.fact("network.links"), Some("eth0"));
    assert_eq!(rec.fact("zfs.module"), Some("yes"));
    assert_eq!(rec.fact("zfs.importable"), Some("rescuepool"));
    assert_eq!(rec.fact("zfs.imported"), Some("other"));
    assert_eq!(rec.fact("local.mounted"), Some("no"));
    assert_eq!(rec.fact("remote.reachable"), Some("untested"));
    assert_eq!(rec.fact("zfs.dataset"), Some(""));
    // With a dataset mounted at local.mount, the fact names it.
    fr.mounted("/mnt/asl/local", "zfs", "other/asl", "rw");
    preflight::run(&fr.root(), &fr.env(), false).unwrap();
    let rec = modefile::read(&fr.root()).unwrap().unwrap();
    assert_eq!(rec.fact("zfs.dataset"), Some("other/asl"));
    assert_eq!(rec.decision, Decision::Local);
}

#[test]
fn preflight_changes_nothing_but_the_mode_file_and_never_imports() {
    let fr = FakeRoot::new();
    fr.conf("mode = local\nlocal.pool = rescuepool\n");
    fr.link("up", true);
    fr.zfs_module();
    fr.zpool(&["rescuepool", "other"], &[]);
    let before = fr.listing(&[]);
    assert!(!before.contains_key(Path::new("run/asl/mode")));

    let dry = preflight::run(&fr.root(), &fr.env(), true).unwrap();
    assert!(dry.mode_file.is_none());
    assert_eq!(fr.listing(&[]), before, "--dry-run wrote something");

    let out = preflight::run(&fr.root(), &fr.env(), false).unwrap();
    assert_eq!(out.decision, Decision::Operator);
    assert_eq!(
        out.mode_file.as_deref(),
        Some(fr.path().join("run/asl/mode").as_path())
    );
    assert_eq!(
        fr.listing(&["run/asl/mode"]),
        before,
        "preflight changed more than run/asl/mode"
    );
    // `zpool import` without a pool name only lists; any other call would be a mutation.
    let calls = fr.zpool_calls();
    assert!(!calls.is_empty());
    for c in &calls {
        assert!(
            c == "import" || c == "list -H -o name",
            "unexpected zpool call '{c}'"
        );
    }
}

#[test]
fn a_concurrent_reader_never_sees_a_partial_mode_file() {
    let fr = FakeRoot::new();
    let root = fr.root();
    // A big record makes a non-atomic writer (truncate, then several writes) easy to catch.
    let big = ModeRecord {
        decision: Decision::Operator,
        facts: vec![("mode".into(), "auto".into())],
        reason: "x".repeat(1 << 20),
    };
    let small = ModeRecord {
        decision: Decision::Local,
        facts: vec![("mode".into(), "local".into())],
        reason: "small".into(),
    };
    let (big_text, small_text) = (big.render(), small.render());
    modefile::write_atomic(&root, &small).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let path = fr.path().join("run/asl/mode");
        let (big_text, small_text) = (big_text.clone(), small_text.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let t = std::fs::read_to_string(&path).expect("mode file always present");
                assert!(
                    t == big_text || t == small_text,
                    "partial read of {} bytes",
                    t.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..60 {
        let r = if i % 2 == 0 { &big } else { &small };
        modefile::write_atomic(&root, r).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader saw a partial file");
    assert!(reads > 0);
    // Preflight itself goes through the same writer and leaves no temporary file either.
    preflight::run(&root, &fr.env(), false).unwrap();
    let names: Vec<_> = std::fs::read_dir(fr.path().join("run/asl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["mode".to_string()],
        "temporary files left behind"
    );
}

#[test]
fn preflight_fails_only_when_it_cannot_write_its_result() {
    let fr = FakeRoot::new();
    // run/asl is a file: the mode file cannot be created below it.
    std::fs::remove_dir(fr.path().join("run/asl")).unwrap();
    fr.write("run/asl", "not a directory");
    let e = preflight::run(&fr.root(), &fr.env(), false).unwrap_err();
    assert!(e.to_string().contains("run/asl/mode"), "{e}");
    // A broken configuration is not such a failure: it is a decision.
    let fr = FakeRoot::new();
    fr.conf("bogus = 1\n");
    let out = preflight::run(&fr.root(), &fr.env(), false).unwrap();
    assert_eq!(out.decision, Decision::Operator);
}

#[test]
fn real_detection_on_this_machine() {
    // Dry run: a test must not write to the real /run.
    let out = preflight::run(
        &asl_host::Root::default(),
        &preflight::Env::from_process(),
        true,
    )
    .unwrap();
    assert!(out.mode_file.is_none());
    let zfs_loaded = Path::new("/sys/module/zfs").is_dir();
    assert_eq!(out.facts.zfs.module, zfs_loaded);
    if !zfs_loaded && out.decision != Decision::Local {
        assert!(
            out.reason
                .contains("ZFS module not loaded (/sys/module/zfs absent)"),
            "{}",
            out.reason
        );
    }
    // Cross-check the network fact against /proc/net/route read independently.
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let has_default = route.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo"
    });
    if has_default {
        assert!(out.facts.network.default_route);
    }
    assert!(!out.facts.network.links.iter().any(|l| l == "lo"));
}

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct MountGuard(std::path::PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn real_mounts_are_detected_with_type_source_and_writability() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test mounts a tmpfs: run it as root (CI does)"
    );
    let t = tempfile::tempdir().unwrap();
    let target = t.path().canonicalize().unwrap().join("store");
    std::fs::create_dir(&target).unwrap();
    let conf = asl_host::config::AslConf {
        local_mount: target.clone(),
        ..Default::default()
    };
    let root = asl_host::Root::default();
    let before = preflight::detect_local(&root, &conf);
    assert!(before.exists && !before.mounted && !before.writable);

    rustix::mount::mount(
        "asl-preflight-test",
        &target,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=1m",
    )
    .expect("mount tmpfs");
    let _guard = MountGuard(target.clone());
    let rw = preflight::detect_local(&root, &conf);
    assert!(rw.mounted && rw.writable, "{rw:?}");
    assert_eq!(rw.fstype.as_deref(), Some("tmpfs"));
    assert_eq!(rw.source.as_deref(), Some("asl-preflight-test"));
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "detection wrote into the store"
    );

    rustix::mount::mount_remount(&target, rustix::mount::MountFlags::RDONLY, c"")
        .expect("remount ro");
    let ro = preflight::detect_local(&root, &conf);
    assert!(ro.mounted && !ro.writable, "{ro:?}");
}
