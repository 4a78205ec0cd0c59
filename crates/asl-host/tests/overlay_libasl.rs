//! The rescue overlay may carry libasl.so where seed 000 puts it (usr/local/lib), as a plain
//! library file; anywhere else, executable, or in another profile it breaks the contract.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use asl_host::overlay::{self, OverlayInputs, Profile, Violation};

fn generated(profile: Profile) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("fake-asl");
    std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = t.path().join("overlay");
    let inputs = OverlayInputs {
        binary: bin,
        tools: Vec::new(),
        mtime: None,
    };
    overlay::generate(profile, &out, &inputs).unwrap();
    (t, out)
}

/// Puts a library file at `rel` with `mode`, as scripts/install-libasl.sh installs it.
fn add_library(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::set_permissions(p.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&p, b"\x7fELF stand-in").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn lint(dir: &Path, profile: Profile) -> Vec<Violation> {
    overlay::lint(dir, profile).unwrap()
}

#[test]
fn the_rescue_overlay_accepts_libasl_in_usr_local_lib() {
    let (_t, out) = generated(Profile::Rescue);
    add_library(&out, "usr/local/lib/libasl.so", 0o644);
    assert_eq!(lint(&out, Profile::Rescue), vec![]);
}

#[test]
fn an_executable_libasl_breaks_the_rescue_contract() {
    let (_t, out) = generated(Profile::Rescue);
    add_library(&out, "usr/local/lib/libasl.so", 0o755);
    let v = lint(&out, Profile::Rescue);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].path, Path::new("usr/local/lib/libasl.so"));
    assert!(v[0].message.contains("without exec bits"), "{}", v[0]);
}

#[test]
fn libasl_anywhere_else_or_in_the_authority_overlay_is_outside_the_contract() {
    let (_t, out) = generated(Profile::Rescue);
    add_library(&out, "usr/local/lib/libother.so", 0o644);
    let v = lint(&out, Profile::Rescue);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].path, Path::new("usr/local/lib/libother.so"));
    assert!(
        v[0].message
            .contains("not part of the rescue overlay contract")
    );

    let (_t, out) = generated(Profile::AuthHost);
    add_library(&out, "usr/local/lib/libasl.so", 0o644);
    let v = lint(&out, Profile::AuthHost);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(
        v[0].message
            .contains("not part of the auth-host overlay contract"),
        "{}",
        v[0]
    );
}
