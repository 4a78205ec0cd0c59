//! Overlay generation and the contract lint: both profiles pass, each forbidden case fails
//! with a message naming the file, and the generated units pass `systemd-analyze verify`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use asl_host::overlay::{self, OverlayInputs, Profile, Violation};

/// A stand-in for the multicall binary: any executable file will do for the library.
fn inputs(dir: &Path) -> OverlayInputs {
    let bin = dir.join("fake-asl");
    std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    OverlayInputs {
        binary: bin,
        tools: vec!["asl-capture".into()],
        mtime: None,
        libasl: None,
    }
}

fn generated(profile: Profile) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("overlay");
    overlay::generate(profile, &out, &inputs(t.path())).unwrap();
    (t, out)
}

fn lint(dir: &Path, profile: Profile) -> Vec<Violation> {
    overlay::lint(dir, profile).unwrap()
}

/// Asserts exactly one violation, for `path`, whose message contains `what`.
fn one_violation(v: &[Violation], path: &str, what: &str) {
    assert_eq!(v.len(), 1, "expected one violation, got: {v:#?}");
    assert_eq!(v[0].path, Path::new(path), "{v:#?}");
    assert!(v[0].message.contains(what), "{}", v[0]);
}

#[test]
fn both_generated_overlays_pass_lint() {
    for p in Profile::ALL {
        let (_t, out) = generated(p);
        assert_eq!(lint(&out, p), vec![], "profile {p}");
    }
}

#[test]
fn rescue_overlay_has_the_seed_layout() {
    let (_t, out) = generated(Profile::Rescue);
    // Remote intake: an empty client key slot only root can read, a place for a site CA, and
    // asl.conf naming both.
    let slot = std::fs::metadata(out.join("etc/asl/keys")).unwrap();
    assert_eq!(slot.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::read_dir(out.join("etc/asl/keys")).unwrap().count(),
        0
    );
    assert!(out.join("etc/asl/ca").is_dir());
    let conf = std::fs::read_to_string(out.join("etc/asl/asl.conf")).unwrap();
    assert!(
        conf.contains("remote.key = /etc/asl/keys/client.key"),
        "{conf}"
    );
    for d in [
        "var/lib/asl/runtime",
        "var/lib/asl/cache",
        "var/lib/asl/locks",
        "run/asl/sockets",
        "mnt/asl/local",
        "mnt/asl/remote",
    ] {
        let p = out.join(d);
        assert!(p.is_dir(), "{d}");
        assert_eq!(std::fs::read_dir(&p).unwrap().count(), 0, "{d} not empty");
    }
    for f in [
        "asl",
        "asl-preflight",
        "asl-intake",
        "asl-admin",
        "asl-debug",
    ] {
        let m = std::fs::metadata(out.join("usr/local/bin").join(f)).unwrap();
        assert!(m.permissions().mode() & 0o111 != 0, "{f} not executable");
    }
    for f in ["asl.conf", "federation.conf", "logging.conf"] {
        assert!(out.join("etc/asl").join(f).is_file(), "{f}");
    }
    let wants = out.join("etc/systemd/system/multi-user.target.wants/asl-intake.service");
    assert_eq!(
        std::fs::read_link(wants).unwrap(),
        Path::new("../asl-intake.service")
    );
    // The shipped configuration parses under the strict parser.
    asl_host::config::check(&out).unwrap();
}

#[test]
fn a_profile_overlay_fails_the_other_profiles_lint() {
    let (_t, out) = generated(Profile::AuthHost);
    let v = lint(&out, Profile::Rescue);
    assert!(
        v.iter()
            .any(|v| v.path == Path::new("var/lib/asl/runtime") && v.message.contains("missing")),
        "{v:#?}"
    );
}

#[test]
fn a_file_in_var_lib_asl_fails_lint() {
    let (_t, out) = generated(Profile::Rescue);
    std::fs::write(out.join("var/lib/asl/cache/leftover.blk"), "state").unwrap();
    one_violation(
        &lint(&out, Profile::Rescue),
        "var/lib/asl/cache/leftover.blk",
        "only empty directories",
    );
}

#[test]
fn a_private_key_in_etc_asl_fails_lint() {
    let (_t, out) = generated(Profile::Rescue);
    std::fs::write(
        out.join("etc/asl/domain-authority"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    one_violation(
        &lint(&out, Profile::Rescue),
        "etc/asl/domain-authority",
        "private key",
    );
    // Named like a key is enough, whatever the content.
    let (_t2, out2) = generated(Profile::AuthHost);
    std::fs::write(out2.join("etc/asl/host.key"), "opaque").unwrap();
    one_violation(
        &lint(&out2, Profile::AuthHost),
        "etc/asl/host.key",
        "private key",
    );
}

#[test]
fn a_setuid_binary_fails_lint() {
    let (_t, out) = generated(Profile::Rescue);
    let tool = out.join("usr/local/bin/asl-admin");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // asl-admin is a hard link of asl: both names carry the bit, each is reported.
    let v = lint(&out, Profile::Rescue);
    assert!(!v.is_empty());
    assert!(v.iter().all(|v| v.message.contains("setuid")), "{v:#?}");
    assert!(
        v.iter()
            .any(|v| v.path == Path::new("usr/local/bin/asl-admin")),
        "{v:#?}"
    );
}

#[test]
fn a_binary_in_usr_bin_fails_lint() {
    let (_t, out) = generated(Profile::Rescue);
    std::fs::create_dir_all(out.join("usr/bin")).unwrap();
    let f = out.join("usr/bin/helper");
    std::fs::write(&f, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    one_violation(
        &lint(&out, Profile::Rescue),
        "usr/bin/helper",
        "executable outside usr/local/bin",
    );
}

#[test]
fn other_contract_breaches_fail_lint() {
    let (_t, out) = generated(Profile::Rescue);
    // Not root-owned.
    std::os::unix::fs::chown(out.join("etc/asl/logging.conf"), Some(1000), Some(1000)).unwrap();
    // A config the strict parser rejects.
    std::fs::write(
        out.join("etc/asl/asl.conf"),
        "mode = auto\nlocal.mount = mnt\n",
    )
    .unwrap();
    // A required file removed.
    std::fs::remove_file(out.join("etc/systemd/system/asl-preflight.service")).unwrap();
    // Something the contract does not list.
    std::fs::write(out.join("etc/motd"), "hello").unwrap();
    // World-writable.
    std::fs::set_permissions(
        out.join("etc/asl/federation.conf"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let v = lint(&out, Profile::Rescue);
    let has = |p: &str, what: &str| {
        v.iter()
            .any(|x| x.path == Path::new(p) && x.message.contains(what))
    };
    assert!(has("etc/asl/logging.conf", "owned by 1000:1000"), "{v:#?}");
    assert!(has("etc/asl/asl.conf", "line 2: local.mount"), "{v:#?}");
    assert!(
        has("etc/systemd/system/asl-preflight.service", "missing"),
        "{v:#?}"
    );
    assert!(
        has("etc/motd", "not part of the rescue overlay contract"),
        "{v:#?}"
    );
    assert!(has("etc/asl/federation.conf", "world-writable"), "{v:#?}");
    assert_eq!(v.len(), 5, "{v:#?}");
}

#[test]
fn generate_refuses_a_non_empty_output_and_leaves_it_alone() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("overlay");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), "x").unwrap();
    let e = overlay::generate(Profile::Rescue, &out, &inputs(t.path())).unwrap_err();
    assert!(e.to_string().contains("not an empty directory"), "{e}");
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep")]);
    // A missing binary fails without leaving a half-made tree behind.
    let out2 = t.path().join("overlay2");
    let mut bad = inputs(t.path());
    bad.binary = t.path().join("does-not-exist");
    assert!(overlay::generate(Profile::Rescue, &out2, &bad).is_err());
    assert!(!out2.exists());
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("asl-image"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn source_date_epoch_makes_mtimes_reproducible() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("overlay");
    let mut i = inputs(t.path());
    i.mtime = Some(1_700_000_000);
    overlay::generate(Profile::Rescue, &out, &i).unwrap();
    for p in ["usr/local/bin/asl", "etc/asl/asl.conf", "var/lib/asl", "."] {
        assert_eq!(
            std::fs::symlink_metadata(out.join(p)).unwrap().mtime(),
            1_700_000_000,
            "{p}"
        );
    }
    let link = out.join("etc/systemd/system/multi-user.target.wants/asl-intake.service");
    assert_eq!(
        std::fs::symlink_metadata(link).unwrap().mtime(),
        1_700_000_000
    );
}

/// Runs `systemd-analyze verify --root=R` on the units. systemd needs its own unit directory
/// (targets such as multi-user.target) inside the root, so the host's is copied next to the
/// overlay into a scratch root.
fn systemd_verify(overlay_dir: &Path, units: &[&str]) -> (bool, String) {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(overlay_dir)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let sys = Path::new("/lib/systemd/system");
    assert!(
        sys.is_dir(),
        "systemd is not installed (scripts/deps/host.apt lists it)"
    );
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(sys)
        .arg(root.join("usr/lib/systemd/system"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut cmd = Command::new("systemd-analyze");
    // --man=no: the overlay ships no man pages (the image build adds them), so the
    // Documentation=man:... lines cannot be resolved inside the root.
    cmd.arg("verify")
        .arg("--man=no")
        .arg(format!("--root={}", root.display()));
    for u in units {
        cmd.arg(u);
    }
    let out = cmd
        .output()
        .expect("systemd-analyze not found (scripts/deps/host.apt lists systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn generated_units_pass_systemd_analyze_verify() {
    for p in Profile::ALL {
        let (_t, out) = generated(p);
        let units: &[&str] = match p {
            Profile::Rescue => &["asl-preflight.service", "asl-intake.service"],
            Profile::AuthHost => &["asl-preflight.service"],
        };
        let (ok, text) = systemd_verify(&out, units);
        assert!(ok, "profile {p}: {text}");
        // Warnings (unknown keys, bad values) do not change the exit code; none may mention ours.
        assert!(!text.contains("asl-"), "profile {p}: {text}");
    }
}

#[test]
fn systemd_analyze_verify_catches_a_unit_whose_tool_is_missing() {
    // Proves the verify step above can fail: without the tool link, ExecStart is not executable.
    let (_t, out) = generated(Profile::Rescue);
    std::fs::remove_file(out.join("usr/local/bin/asl-intake")).unwrap();
    let (ok, text) = systemd_verify(&out, &["asl-intake.service"]);
    assert!(!ok, "{text}");
    assert!(text.contains("/usr/local/bin/asl-intake"), "{text}");
}
