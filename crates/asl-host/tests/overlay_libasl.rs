//! The rescue overlay may carry libasl.so where seed 000 puts it (usr/local/lib), as a plain
//! library file; anywhere else, executable, or in another profile it breaks the contract.
//! `asl-image overlay` installs the library cargo builds there, with its soname link, and a C
//! program linked against the overlay loads it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
        libasl: None,
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

/// The libasl.so cargo built for this test run (asl-ffi is a dev-dependency for this): beside
/// the test executable, in deps/.
fn built_libasl() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.with_file_name("libasl.so");
    assert!(
        p.is_file(),
        "{} is missing: cargo builds it (asl-ffi's cdylib) before the tests",
        p.display()
    );
    p
}

fn generate_with_library(
    profile: Profile,
    libasl: PathBuf,
) -> (
    tempfile::TempDir,
    PathBuf,
    Result<(), overlay::OverlayError>,
) {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("fake-asl");
    std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = t.path().join("overlay");
    let r = overlay::generate(
        profile,
        &out,
        &OverlayInputs {
            binary: bin,
            tools: Vec::new(),
            mtime: None,
            libasl: Some(libasl),
        },
    );
    (t, out, r)
}

#[test]
fn the_rescue_overlay_carries_the_built_libasl_and_a_c_program_loads_it() {
    let lib = built_libasl();
    let (t, out, r) = generate_with_library(Profile::Rescue, lib.clone());
    r.unwrap();
    assert_eq!(lint(&out, Profile::Rescue), vec![]);
    let shipped = out.join("usr/local/lib/libasl.so");
    let m = std::fs::symlink_metadata(&shipped).unwrap();
    assert!(m.is_file());
    assert_eq!(m.permissions().mode() & 0o7777, 0o644);
    assert!(
        std::fs::read(&shipped).unwrap() == std::fs::read(&lib).unwrap(),
        "the shipped library differs from {}",
        lib.display()
    );
    assert_eq!(
        std::fs::read_link(out.join("usr/local/lib/libasl.so.0")).unwrap(),
        Path::new("libasl.so")
    );

    // A C program linked against the overlay's library, as a user of the rescue system links
    // one, loads it from there by its soname.
    let src = t.path().join("version.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include \"asl.h\"\nint main(void) { printf(\"%s\\n\", asl_version()); return 0; }\n",
    )
    .unwrap();
    let prog = t.path().join("version");
    let libdir = out.join("usr/local/lib");
    let o = Command::new("gcc")
        .arg(&src)
        .arg("-I")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../asl-ffi/include"))
        .arg("-L")
        .arg(&libdir)
        .args(["-lasl", "-o"])
        .arg(&prog)
        .output()
        .expect("gcc not found (scripts/deps/ffi.apt lists it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(&prog)
        .env("LD_LIBRARY_PATH", &libdir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );

    // Without the soname link the same program does not start: the link is what makes the
    // seed's file name usable.
    std::fs::remove_file(libdir.join("libasl.so.0")).unwrap();
    let o = Command::new(&prog)
        .env("LD_LIBRARY_PATH", &libdir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("libasl.so.0"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn generate_refuses_a_libasl_that_is_not_a_shared_library_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let header = t.path().join("asl.h");
    std::fs::write(&header, "/* not a library */\n").unwrap();
    let (_t, out, r) = generate_with_library(Profile::Rescue, header.clone());
    let e = r.unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: is not a shared library (no ELF header)",
            header.display()
        )),
        "{e}"
    );
    assert!(!out.exists());

    // A static archive is not one either.
    let archive = t.path().join("libasl.a");
    std::fs::write(&archive, "!<arch>\n").unwrap();
    let (_t, out, r) = generate_with_library(Profile::Rescue, archive);
    assert!(r.unwrap_err().to_string().contains("no ELF header"));
    assert!(!out.exists());
}

#[test]
fn the_authority_overlay_refuses_a_library() {
    let (_t, out, r) = generate_with_library(Profile::AuthHost, built_libasl());
    let e = r.unwrap_err();
    assert!(
        e.to_string()
            .contains("the auth-host overlay carries no libasl.so"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn the_soname_link_must_point_to_the_library() {
    let (_t, out) = generated(Profile::Rescue);
    add_library(&out, "usr/local/lib/libasl.so", 0o644);
    std::os::unix::fs::symlink("/usr/lib/libasl.so", out.join("usr/local/lib/libasl.so.0"))
        .unwrap();
    let v = lint(&out, Profile::Rescue);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].path, Path::new("usr/local/lib/libasl.so.0"));
    assert!(v[0].message.contains("symlink to libasl.so"), "{}", v[0]);
}
