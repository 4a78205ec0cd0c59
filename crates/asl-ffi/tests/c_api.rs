//! libasl.so from the outside, as its users see it: a C program compiled with gcc, Python's
//! ctypes, the CLI reading what they wrote (and the reverse), valgrind, the dynamic symbol
//! table, the header and the installed pkg-config file.
//!
//! Every tool used here is listed in scripts/deps (gcc, valgrind, python3, pkg-config,
//! binutils, cbindgen); a missing one fails the test, it is not skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// target/debug (or the profile directory the tests run from).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The library cargo built for this test run: beside the test executable, in deps/ (the
/// copy in target/<profile>/ is refreshed by `cargo build` only).
fn libasl() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let p = exe.with_file_name("libasl.so");
    assert!(
        p.exists(),
        "{} is missing: cargo builds it (crate-type rlib + cdylib) before the tests",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install what scripts/deps lists)"))
}

fn ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&ok_raw(cmd)).into_owned()
}

fn ok_raw(cmd: &mut Command) -> Vec<u8> {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A directory holding libasl.so.0 (the soname programs load) and libasl.so (the name they
/// link with), both pointing at the library cargo built.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libasl-ffi-lib");
        std::fs::create_dir_all(&dir).expect("lib dir");
        for name in ["libasl.so.0", "libasl.so"] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(libasl(), &link).expect("symlink");
        }
        dir
    })
}

/// The C test program, compiled once with warnings as errors.
fn c_test() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let exe = lib_dir().join("asl_test");
        ok(Command::new("gcc")
            .args([
                "-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread", "-o",
            ])
            .arg(&exe)
            .arg("-I")
            .arg(crate_dir().join("include"))
            .arg(crate_dir().join("tests/c/asl_test.c"))
            .arg("-L")
            .arg(lib_dir())
            .arg("-lasl"));
        exe
    })
}

fn with_lib(mut cmd: Command) -> Command {
    cmd.env("LD_LIBRARY_PATH", lib_dir());
    cmd
}

fn c_cmd(args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = with_lib(Command::new(c_test()));
    cmd.args(args);
    cmd
}

/// The CLI of this workspace; built here when the workspace has not built it yet.
fn asl_cli() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let exe = profile_dir().join("asl");
        if !exe.exists() {
            ok(Command::new(env!("CARGO")).args(["build", "--locked", "-p", "asl"]));
        }
        assert!(exe.exists(), "{} was not built", exe.display());
        exe
    })
}

fn cli(store: &Path, args: &[&str]) -> String {
    ok(Command::new(asl_cli()).args(args).arg("--store").arg(store))
}

/// The value of the first `KEY value` line.
fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"))
}

fn functions_in_header() -> Vec<String> {
    let header = std::fs::read_to_string(crate_dir().join("include/asl.h")).expect("asl.h");
    let mut names: Vec<String> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("typedef") && !l.starts_with("//"))
        .filter_map(|l| {
            // `asl_status asl_put(...` / `const char *asl_version(void);`: the name is the
            // last word before the parenthesis.
            let before = &l[..l.find('(')?];
            let name = before.rsplit([' ', '*']).next()?;
            name.starts_with("asl_").then(|| name.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_c_program_calls_every_function_of_the_header_and_each_call_works() {
    let functions = functions_in_header();
    assert!(
        functions.len() >= 25,
        "functions found in asl.h: {functions:?}"
    );
    let source = std::fs::read_to_string(crate_dir().join("tests/c/asl_test.c")).expect("C");
    let missing: Vec<&String> = functions
        .iter()
        .filter(|f| !source.contains(&format!("{f}(")))
        .collect();
    assert!(missing.is_empty(), "the C test never calls {missing:?}");

    let work = tempfile::tempdir().expect("tempdir");
    let out = ok(&mut c_cmd(&["api".as_ref(), work.path().as_os_str()]));
    assert!(out.contains("API OK"), "{out}");
}

#[test]
fn one_handle_is_shared_by_threads_that_put_get_and_race_its_close() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = ok(&mut c_cmd(&["threads".as_ref(), work.path().as_os_str()]));
    assert!(out.contains("THREADS OK 400"), "{out}");
}

#[test]
fn a_store_written_through_c_reads_back_with_the_cli() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = ok(&mut c_cmd(&["api".as_ref(), work.path().as_os_str()]));
    let store = work.path().join("store");

    let snaps: serde_json::Value =
        serde_json::from_str(&cli(&store, &["admin", "snapshots", "--json"])).expect("json");
    let labels: Vec<&str> = snaps
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["meta"]["label"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(labels, ["c-put", "c-intake", "c-capture"]);
    let intake = &snaps[1];
    assert_eq!(
        intake["id"].as_u64().map(|i| i.to_string()).as_deref(),
        Some(value(&out, "INTAKE_SNAPSHOT"))
    );
    assert_eq!(intake["root"].as_str(), Some(value(&out, "INTAKE_ROOT")));

    // The bytes put through C, read by the CLI.
    let put = ok(Command::new(asl_cli())
        .args(["debug", "artifact", value(&out, "PUT_REF")])
        .arg("--store")
        .arg(&store));
    assert_eq!(put, "hello, libasl");
    assert_eq!(
        cli(&store, &["admin", "cat", "c-intake:hello.txt"]),
        "hello from C\n"
    );

    // The CLI restores the tree C took in exactly as C restored it.
    let by_cli = work.path().join("by-cli");
    cli(
        &store,
        &[
            "admin",
            "restore",
            "c-intake",
            "--target",
            by_cli.to_str().expect("utf8"),
            "--no-owners",
            "-q",
        ],
    );
    ok(Command::new("diff")
        .arg("-r")
        .arg(&by_cli)
        .arg(work.path().join("restored")));
    ok(Command::new("diff")
        .arg("-r")
        .arg(&by_cli)
        .arg(work.path().join("tree")));
    cli(&store, &["admin", "verify", "--read-data"]);
}

#[test]
fn a_store_written_by_the_cli_reads_back_through_c() {
    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store");
    let file = work.path().join("data.bin");
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).expect("write");
    cli(&store, &["init-store", "-q"]);
    cli(
        &store,
        &[
            "intake",
            "-q",
            "--label",
            "by-cli",
            file.to_str().expect("utf8"),
        ],
    );
    let ls: serde_json::Value =
        serde_json::from_str(&cli(&store, &["admin", "ls", "--json", "by-cli:"])).expect("json");
    let reference = ls[0]["content"].as_str().expect("content reference");

    let out = ok(&mut c_cmd(&[
        "read".as_ref(),
        store.as_os_str(),
        reference.as_ref(),
        file.as_os_str(),
    ]));
    assert!(out.contains("CLI_SNAPSHOTS 1"), "{out}");
    assert!(out.contains(&format!("READ OK {}", bytes.len())), "{out}");
}

#[test]
fn python_ctypes_puts_gets_and_lists_snapshots_in_both_directions() {
    let work = tempfile::tempdir().expect("tempdir");
    let script = crate_dir().join("tests/python/test_ctypes.py");
    let lib = lib_dir().join("libasl.so.0");

    // Python writes, the CLI reads.
    let store = work.path().join("py-store");
    let out = ok(Command::new("python3")
        .arg(&script)
        .arg(&lib)
        .arg("write")
        .arg(&store));
    assert!(out.contains("PY WRITE OK"), "{out}");
    let put = ok_raw(
        Command::new(asl_cli())
            .args(["debug", "artifact", value(&out, "PUT_REF")])
            .arg("--store")
            .arg(&store),
    );
    assert_eq!(put, b"put from python\x00with a NUL and \xff bytes");
    let snaps: serde_json::Value =
        serde_json::from_str(&cli(&store, &["admin", "snapshots", "--json"])).expect("json");
    assert_eq!(snaps[0]["meta"]["label"], "py-put");

    // The CLI writes, Python reads.
    let cli_store = work.path().join("cli-store");
    let dir = work.path().join("tree");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("a.txt"), "from the CLI\n").expect("write");
    cli(&cli_store, &["intake", "-q", dir.to_str().expect("utf8")]);
    let ls: serde_json::Value =
        serde_json::from_str(&cli(&cli_store, &["admin", "ls", "--json", "latest:"]))
            .expect("json");
    let reference = ls[0]["content"].as_str().expect("content");
    let out = ok(Command::new("python3")
        .arg(&script)
        .arg(&lib)
        .arg("read")
        .arg(&cli_store)
        .arg(reference)
        .arg(dir.join("a.txt")));
    assert!(out.contains("PY READ OK 1"), "{out}");
}

#[test]
fn bad_input_gives_its_status_and_message_and_never_a_crash() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = ok(&mut c_cmd(&["bad".as_ref(), work.path().as_os_str()]));
    assert!(out.contains("BAD OK"), "{out}");
    // Each kind of bad input the issue names, with its code and a message naming the object.
    for (code, needle) in [
        ("ASL_E_NULL", "dir is NULL"),
        ("ASL_E_NULL", "data is NULL"),
        ("ASL_E_HANDLE", "closed or was never opened"),
        ("ASL_E_UTF8", "is not valid UTF-8"),
        ("ASL_E_LOCKED", "is locked by a running writer (pid"),
        ("ASL_E_CORRUPT", "is damaged"),
        ("ASL_E_FORMAT", "invalid store configuration"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("BAD {code} ")) && l.contains(needle)),
            "no {code} line with '{needle}' in:\n{out}"
        );
    }
    // A path that is not UTF-8 is a valid Linux path: the store there works.
    assert!(out.contains("NON_UTF8_STORE ok"), "{out}");
}

#[test]
fn a_store_locked_by_another_process_gives_asl_e_locked() {
    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store");
    cli(&store, &["init-store", "-q"]);
    // flock(1) holds the writer lock file as a running asl writer does.
    let lock = store.join("locks/writer.lock");
    std::fs::write(&lock, "4242 elsewhere\n").expect("lock file");
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .expect("flock (util-linux)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let script = r#"
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.asl_last_error.restype = ctypes.c_char_p
h = ctypes.c_void_p()
st = lib.asl_store_open(sys.argv[2].encode(), 1, ctypes.byref(h))
print(st, lib.asl_last_error().decode())
"#;
    let out = ok(Command::new("python3")
        .args(["-c", script])
        .arg(lib_dir().join("libasl.so.0"))
        .arg(&store));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.starts_with("7 "), "expected ASL_E_LOCKED (7): {out}");
    assert!(
        out.contains("locked by a running writer (pid 4242 on elsewhere)"),
        "{out}"
    );
}

/// Runs the C test under valgrind's memcheck: any invalid access, or memory definitely or
/// indirectly lost, fails. ("Possibly lost" blocks are the process-lifetime handle registry
/// and the main thread's handle, held through interior pointers; they are not leaks.)
fn under_valgrind(mode: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let mut cmd = with_lib(Command::new("valgrind"));
    cmd.args([
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
        "--error-exitcode=99",
    ])
    .arg(c_test())
    .arg(mode)
    .arg(work.path());
    let out = run(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "valgrind {mode}: {}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(
        stderr.contains("definitely lost: 0 bytes")
            || stderr.contains("All heap blocks were freed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("indirectly lost: 0 bytes")
            || stderr.contains("All heap blocks were freed"),
        "{stderr}"
    );
}

#[test]
fn valgrind_finds_no_leak_and_no_invalid_access_in_every_call() {
    under_valgrind("api");
}

#[test]
fn valgrind_finds_no_leak_and_no_invalid_access_on_bad_input() {
    under_valgrind("bad");
}

#[test]
fn valgrind_finds_no_invalid_access_with_threads_sharing_a_handle() {
    under_valgrind("threads");
}

#[test]
fn the_soname_and_the_version_of_every_symbol_are_the_published_ones() {
    let lib = libasl();
    let dynamic = ok(Command::new("readelf").arg("-d").arg(&lib));
    assert!(
        dynamic.contains("Library soname: [libasl.so.0]"),
        "{dynamic}"
    );

    // Every function of the header is exported at version ASL_0.1, and nothing else is.
    let syms = ok(Command::new("readelf").args(["--dyn-syms", "-W"]).arg(&lib));
    let mut exported: Vec<String> = syms
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num: Value Size Type Bind Vis Ndx Name
            (f.len() >= 8 && f[4] == "GLOBAL" && f[6] != "UND").then(|| f[7].to_string())
        })
        .collect();
    exported.sort();
    let expected: Vec<String> = functions_in_header()
        .into_iter()
        .map(|f| format!("{f}@@ASL_0.1"))
        .collect();
    assert_eq!(exported, expected, "exported symbols:\n{syms}");

    let objdump = ok(Command::new("objdump").arg("-T").arg(&lib));
    for f in functions_in_header() {
        assert!(
            objdump
                .lines()
                .any(|l| l.contains(" ASL_0.1") && l.trim_end().ends_with(&format!(" {f}"))),
            "objdump -T shows no {f} at ASL_0.1:\n{objdump}"
        );
    }
    let versions = ok(Command::new("readelf").arg("-V").arg(&lib));
    assert!(versions.contains("Name: ASL_0.1"), "{versions}");
}

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let generated = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("asl-generated.h");
    let manifest_root = crate_dir().join("../..");
    ok(Command::new("cbindgen")
        .current_dir(&manifest_root)
        .args(["--quiet", "--config"])
        .arg(crate_dir().join("cbindgen.toml"))
        .args(["--crate", "asl-ffi", "--output"])
        .arg(&generated));
    let want = std::fs::read_to_string(crate_dir().join("include/asl.h")).expect("asl.h");
    let got = std::fs::read_to_string(&generated).expect("generated header");
    assert!(
        want == got,
        "crates/asl-ffi/include/asl.h differs from cbindgen's output ({}); regenerate it as \
         cbindgen.toml says",
        generated.display()
    );
}

#[test]
fn the_installed_library_header_and_pkg_config_file_build_the_documented_example() {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("root");
    ok(Command::new("bash")
        .arg(crate_dir().join("../../scripts/install-libasl.sh"))
        .env("DESTDIR", &root)
        .env("PREFIX", "/usr/local")
        .env("LIBASL_SO", libasl()));
    let lib = root.join("usr/local/lib");
    assert_eq!(
        std::fs::read_link(lib.join("libasl.so.0")).expect("soname link"),
        Path::new(&format!("libasl.so.{}", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        std::fs::read_link(lib.join("libasl.so")).expect("link"),
        Path::new("libasl.so.0")
    );

    // The man page is installed and names every function of the header.
    let man = std::fs::read_to_string(root.join("usr/local/share/man/man3/libasl.3"))
        .expect("installed libasl.3");
    for f in functions_in_header() {
        assert!(
            man.contains(&format!("{f}(")),
            "libasl.3 does not document {f}"
        );
    }

    let flags = ok(Command::new("pkg-config")
        .args(["--cflags", "--libs", "asl"])
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
        .env("PKG_CONFIG_SYSROOT_DIR", &root));
    let flags: Vec<&str> = flags.split_whitespace().collect();
    assert!(flags.contains(&"-lasl"), "{flags:?}");

    // The example of docs/libasl.md is this file, verbatim.
    let example = std::fs::read_to_string(crate_dir().join("examples/example.c")).expect("c");
    let doc = std::fs::read_to_string(crate_dir().join("../../docs/libasl.md")).expect("doc");
    assert!(
        doc.contains(&example),
        "docs/libasl.md does not quote crates/asl-ffi/examples/example.c verbatim"
    );
    let exe = work.path().join("example");
    ok(Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(crate_dir().join("examples/example.c"))
        .args(&flags)
        .arg("-o")
        .arg(&exe));
    let needed = ok(Command::new("readelf").arg("-d").arg(&exe));
    assert!(needed.contains("Shared library: [libasl.so.0]"), "{needed}");

    let dir = work.path().join("tree");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("f"), "x").expect("write");
    let out = ok(Command::new(&exe)
        .arg(work.path().join("store"))
        .arg(&dir)
        .env("LD_LIBRARY_PATH", &lib));
    assert!(out.contains(": taken in by example.c"), "{out}");
    assert!(out.contains("snapshot 1  intake   example"), "{out}");
    assert!(out.contains("snapshot 2  note     -"), "{out}");
}
