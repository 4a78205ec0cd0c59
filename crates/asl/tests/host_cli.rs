//! End-to-end tests of the host tools through the real binary: asl-preflight, asl-config,
//! asl-image.

mod common;
#[path = "../../asl-host/tests/common/mod.rs"]
mod fake_root;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{asl, text};
use fake_root::FakeRoot;

#[test]
fn preflight_writes_the_mode_file_and_reports_json() {
    let fr = FakeRoot::new();
    fr.conf("mode = auto\n");
    let o = asl()
        .args(["preflight", "--json", "--root"])
        .arg(fr.path())
        .env("PATH", fr.bin.path())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "operator");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("ZFS module not loaded"),
        "{out}"
    );
    let mode = std::fs::read_to_string(fr.path().join("run/asl/mode")).unwrap();
    assert!(mode.starts_with("operator\n"), "{mode}");
}

#[test]
fn preflight_dry_run_writes_nothing_and_asl_root_selects_the_tree() {
    let fr = FakeRoot::new();
    fr.conf("mode = local\n");
    fr.mounted("/mnt/asl/local", "ext4", "/dev/sdb1", "rw");
    let o = asl()
        .args(["asl-preflight", "--dry-run"])
        .env("ASL_ROOT", fr.path())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.starts_with("decision: local\n"), "{out}");
    assert!(out.contains("dry run: nothing written"), "{out}");
    assert!(!fr.path().join("run/asl/mode").exists());
}

#[test]
fn preflight_exits_nonzero_only_when_it_cannot_write() {
    let fr = FakeRoot::new();
    fr.conf("mode = nonsense\n");
    let o = asl()
        .args(["preflight", "-q", "--root"])
        .arg(fr.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "an invalid config is a decision, not a failure"
    );
    std::fs::remove_file(fr.path().join("run/asl/mode")).unwrap();
    std::fs::remove_dir(fr.path().join("run/asl")).unwrap();
    fr.write("run/asl", "a file where the directory should be");
    let o = asl()
        .args(["preflight", "--root"])
        .arg(fr.path())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("run/asl/mode"), "{err}");
}

#[test]
fn config_check_reports_each_bad_file_line() {
    let cases = [
        (
            "mode = auto\nlocal.mnt = /x\n",
            "asl.conf:2: unknown key 'local.mnt'",
        ),
        (
            "mode = sometimes\n",
            "asl.conf:1: mode: 'sometimes' is not a mode",
        ),
        (
            "# c\n\nlocal.mount = mnt/asl\n",
            "asl.conf:3: local.mount: 'mnt/asl' is a relative path",
        ),
        (
            "remote.endpoint = backend:443\n",
            "asl.conf:1: remote.endpoint: endpoint 'backend:443' has no scheme",
        ),
    ];
    for (conf, want) in cases {
        let fr = FakeRoot::new();
        fr.conf(conf);
        let o = asl()
            .args(["config", "check", "--root"])
            .arg(fr.path())
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{conf}: {err}");
        assert!(err.contains(want), "{conf}: {err}");
        assert!(
            err.contains(&fr.path().join("etc/asl").display().to_string()),
            "{err}"
        );
    }
    let fr = FakeRoot::new();
    fr.conf("mode = remote\nremote.endpoint = https://backend\n");
    let o = asl()
        .args(["asl-config", "check", "--json", "--root"])
        .arg(fr.path())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["asl"]["mode"], "remote");
    assert_eq!(v["asl"]["remote_endpoint"], "https://backend");
}

#[test]
fn image_overlay_of_the_real_binary_passes_lint_and_its_tools_run() {
    let t = tempfile::tempdir().unwrap();
    for profile in ["rescue", "auth-host"] {
        let out = t.path().join(profile);
        let o = asl()
            .args(["image", "overlay", "--profile", profile, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
        let o = asl()
            .args(["asl-image", "lint", "--profile", profile])
            .arg(&out)
            .output()
            .unwrap();
        let (stdout, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{profile}: {stdout}{err}");
        // The copied binary answers to its link names.
        let fr = FakeRoot::new();
        let o = Command::new(out.join("usr/local/bin/asl-preflight"))
            .args(["--dry-run", "--root"])
            .arg(fr.path())
            .output()
            .unwrap();
        let (stdout, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(stdout.starts_with("decision: "), "{stdout}");
    }
}

#[test]
fn image_lint_names_each_violating_file() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let o = asl()
        .args(["image", "overlay", "--profile", "rescue", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    std::fs::write(out.join("var/lib/asl/locks/stale.lock"), "1").unwrap();
    std::fs::create_dir_all(out.join("usr/bin")).unwrap();
    std::fs::write(out.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        out.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let o = asl()
        .args(["image", "lint", "--profile", "rescue"])
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}{err}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("usr/bin/tool: executable outside usr/local/bin")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("var/lib/asl/locks/stale.lock: only empty directories")),
        "{stdout}"
    );
    assert!(
        err.contains("2 violations of the rescue overlay contract"),
        "{err}"
    );
}

#[test]
fn image_refuses_an_unknown_profile_as_a_usage_error() {
    let o = asl()
        .args(["image", "lint", "--profile", "desktop", "/tmp"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown profile 'desktop'"), "{err}");
}

#[test]
fn image_units_writes_both_units() {
    let t = tempfile::tempdir().unwrap();
    let o = asl()
        .args(["image", "units", "--out"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let intake = std::fs::read_to_string(t.path().join("asl-intake.service")).unwrap();
    assert!(intake.contains("ExecStart=/usr/local/bin/asl-intake --service"));
    assert!(Path::new(&t.path().join("asl-preflight.service")).is_file());
}

#[test]
fn image_lint_names_the_file_and_the_seed_rule_of_a_unit_that_assumes_zfs() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let o = asl()
        .args(["image", "overlay", "--profile", "rescue", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    let unit = out.join("etc/systemd/system/asl-intake.service");
    let text_before = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &unit,
        text_before.replace("[Service]\n", "[Service]\nExecStartPre=zpool import -a\n"),
    )
    .unwrap();
    let o = asl()
        .args(["image", "lint", "--profile", "rescue"])
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}{err}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (rule, words) in [
        ("assumes-zfs", "❌ Assuming ZFS exists"),
        ("imports-pools", "Never auto-import pools"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(
                "etc/systemd/system/asl-intake.service: line 9: ExecStartPre runs `zpool import -a`"
            ) && l.contains(&format!("rule {rule}"))
                && l.contains(words)),
            "{stdout}"
        );
    }
    let o = asl()
        .args(["image", "lint", "--json", "--profile", "rescue"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut rules: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(rules, ["assumes-zfs", "imports-pools"]);
}

#[test]
fn image_overlay_carries_the_library_given_with_libasl() {
    let t = tempfile::tempdir().unwrap();
    // A real shared object, as gcc makes one, with the soname libasl's build gives it.
    let src = t.path().join("lib.c");
    std::fs::write(&src, "int asl_stand_in(void) { return 7; }\n").unwrap();
    let lib = t.path().join("libasl.so");
    let o = Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libasl.so.0", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("gcc not found (scripts/deps/ffi.apt lists it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = t.path().join("o");
    let o = asl()
        .args(["image", "overlay", "--profile", "rescue", "--libasl"])
        .arg(&lib)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    assert_eq!(
        std::fs::read(out.join("usr/local/lib/libasl.so")).unwrap(),
        std::fs::read(&lib).unwrap()
    );
    let o = asl()
        .args(["image", "lint", "--profile", "rescue"])
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{err}");

    // Not a library: refused, naming the file, and nothing is written.
    let out2 = t.path().join("o2");
    let o = asl()
        .args(["image", "overlay", "--profile", "rescue", "--libasl"])
        .arg(&src)
        .arg("--out")
        .arg(&out2)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: is not a shared library", src.display())),
        "{err}"
    );
    assert!(!out2.exists());

    // The authority host carries no library: a usage error.
    let o = asl()
        .args(["image", "overlay", "--profile", "auth-host", "--libasl"])
        .arg(&lib)
        .arg("--out")
        .arg(t.path().join("o3"))
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--libasl: the auth-host overlay carries no libasl.so"),
        "{err}"
    );
}
