//! The rough edges of the command line a new user met (issue 22 §4), each pinned through the
//! real binary.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use common::{asl, run, transcript};

/// What one run of the binary printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    transcript: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.transcript))
    }
}

fn asl_run<S: AsRef<OsStr>>(args: &[S]) -> Run {
    run_cmd(asl().args(args))
}

fn run_cmd(cmd: &mut Command) -> Run {
    let o = run(cmd.stdin(std::process::Stdio::null()));
    let (stdout, stderr) = common::text(&o);
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout,
        stderr,
        transcript: transcript(&o),
    }
}

fn ok<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let r = asl_run(args);
    assert_eq!(r.code, 0, "{}", r.transcript);
    r
}

/// The lines of a `--help` that describe one argument: from the line naming it up to the
/// next argument.
fn help_of_arg(help: &str, arg: &str) -> String {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(arg));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("{arg} not in:\n{help}"));
    let rest = lines.take_while(|l| {
        let t = l.trim_start();
        // Blank lines separate an argument's paragraphs (clap puts `[default: ...]` in one);
        // a section heading is not indented, another argument starts with `-` or `<`.
        t.is_empty() || (l.starts_with(' ') && !t.starts_with('-') && !t.starts_with('<'))
    });
    std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn intake_help_shows_one_default_for_threads() {
    for flag in ["--help", "-h"] {
        let help = ok(&["intake", flag]).stdout;
        let threads = help_of_arg(&help, "--threads");
        assert_eq!(
            threads.matches("[default:").count(),
            1,
            "asl-intake {flag}, --threads:\n{threads}"
        );
        assert!(threads.contains("number of cores"), "{threads}");
    }
    // The default still means every core, and an explicit count still works.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    for extra in [&[][..], &["--threads", "1"][..]] {
        let store = t.path().join(format!("store{}", extra.len()));
        let mut args = vec![OsStr::new("intake"), OsStr::new("-q")];
        args.extend(extra.iter().map(OsStr::new));
        args.extend([OsStr::new("--store"), store.as_os_str(), src.as_os_str()]);
        ok(&args);
    }
}

/// The documented decision: exit 4 means some input could not be read. FIFOs, sockets and
/// devices are recorded as what they are and never opened, so a tree of them exits 0 and
/// counts them as special; an unreadable file in the same tree makes it 4.
#[test]
fn a_tree_with_fifos_sockets_and_devices_exits_0_and_only_unreadable_inputs_exit_4() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), b"data").unwrap();
    let fifo = src.join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo failed");
    let _socket = std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap();
    let st = Command::new("mknod")
        .arg(src.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(st.success(), "mknod needs root (CI runs as root)");
    let store = t.path().join("store");
    let r = asl_run(&[
        OsStr::new("intake"),
        OsStr::new("--json"),
        OsStr::new("--store"),
        store.as_os_str(),
        src.as_os_str(),
    ]);
    assert_eq!(r.code, 0, "{}", r.transcript);
    let j = r.json();
    assert_eq!(j["specials"], 3, "{}", r.transcript);
    assert_eq!(j["errors"].as_array().map(Vec::len), Some(0));
    // Each is recorded as what it is, not as a file read or an error.
    let ls = ok(&[
        OsStr::new("admin"),
        OsStr::new("ls"),
        OsStr::new("-l"),
        OsStr::new("latest"),
        OsStr::new("--store"),
        store.as_os_str(),
    ]);
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with('p') && l.contains("fifo")),
        "{}",
        ls.transcript
    );
    assert!(
        ls.stdout.lines().any(|l| l.starts_with('s')),
        "{}",
        ls.stdout
    );
    assert!(
        ls.stdout.lines().any(|l| l.starts_with('c')),
        "{}",
        ls.stdout
    );

    // The same tree with a file nobody may read, taken in by nobody: exit 4.
    let secret = src.join("secret");
    std::fs::write(&secret, b"x").unwrap();
    chmod(&secret, 0o000);
    chmod(t.path(), 0o777);
    chmod(&src, 0o777);
    let store2 = t.path().join("store2");
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_asl"))
        .args(["intake", "--json", "--store"])
        .arg(&store2)
        .arg(&src)
        .env_remove("ASL_STORE");
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 4, "{}", r.transcript);
    let j = r.json();
    assert_eq!(j["specials"], 3);
    let errors = j["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", r.transcript);
    assert!(errors[0]["path"].as_str().unwrap().ends_with("secret"));
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn capture_export_help_describes_target_and_what_latest_picks() {
    let help = ok(&["capture", "export", "--help"]).stdout;
    let target = help_of_arg(&help, "<TARGET>");
    assert!(target.len() > "  <TARGET>".len() + 10, "{help}");
    assert!(target.contains("latest"), "{target}");
    assert!(target.contains("newest capture"), "{target}");
}

/// Runs `asl TOOL --store STORE ARGS...` in `dir`.
fn in_store(dir: &Path, store: &Path, tool: &str, args: &[&str]) -> Run {
    run_cmd(
        asl()
            .current_dir(dir)
            .args([tool, "--store"])
            .arg(store)
            .args(args),
    )
}

/// A capture, then an intake into the same store: `latest` for verify, export and replay is
/// still the capture, not the newer intake snapshot (whose root is a tree).
#[test]
fn latest_in_capture_export_verify_and_replay_is_the_newest_capture_not_a_later_intake() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let store = w.join("store");
    let asl_ok = |tool: &str, args: &[&str]| {
        let r = in_store(w, &store, tool, args);
        assert_eq!(r.code, 0, "{tool} {args:?}: {}", r.transcript);
        r
    };
    asl_ok("init-store", &[]);
    std::fs::create_dir(w.join("tree")).unwrap();
    std::fs::write(w.join("tree/f"), b"tree").unwrap();
    asl_ok("intake", &["-q", "tree"]);
    // A store with no capture at all: `latest` says what it looks for.
    let r = in_store(w, &store, "capture", &["export", "latest"]);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(r.stderr.contains("newest capture"), "{}", r.transcript);

    let capture = [
        "-q",
        "--trace",
        "none",
        "--label",
        "the-step",
        "--output",
        "out.txt",
        "--cmd",
        "echo made > out.txt",
    ];
    asl_ok("capture", &capture);
    asl_ok("intake", &["-q", "tree"]);
    let snaps = asl_ok("admin", &["snapshots", "--json"]).json();
    let kinds: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["meta"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["intake", "capture", "intake"], "{snaps}");

    let export =
        |name: &str| asl_ok("capture", &["export", name, "--format", "in-toto-link"]).json();
    let latest = export("latest");
    assert_eq!(latest, export("the-step"));
    assert!(
        latest["signed"]["products"]["out.txt"].is_object(),
        "{latest}"
    );
    asl_ok("capture", &["verify", "latest"]);
    let replay = asl_ok("capture", &["replay", "latest", "--json"]).json();
    assert_eq!(replay["matches"], true, "{replay}");
}

#[test]
fn overlay_boot_help_says_where_it_logs_by_default() {
    let help = ok(&["overlay-boot", "--help"]).stdout;
    assert!(help.contains("/var/log/subhost/NAME.log"), "{help}");
}

#[test]
fn stats_prints_hash_and_domain_without_a_stray_space() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    ok(&[
        OsStr::new("init-store"),
        OsStr::new("--domain"),
        OsStr::new("7"),
        OsStr::new("--store"),
        store.as_os_str(),
    ]);
    let r = ok(&[
        OsStr::new("admin"),
        OsStr::new("stats"),
        OsStr::new("--store"),
        store.as_os_str(),
    ]);
    let first = r.stdout.lines().next().unwrap_or_default();
    assert!(first.ends_with("(blake3, domain 7)"), "{first:?}");
}

#[test]
fn diff_json_paths_have_the_leading_slash_of_the_text_output() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("etc/app")).unwrap();
    std::fs::write(src.join("etc/app/conf"), b"old").unwrap();
    std::fs::write(src.join("gone"), b"x").unwrap();
    let store = t.path().join("store");
    let intake = || {
        ok(&[
            OsStr::new("intake"),
            OsStr::new("-q"),
            OsStr::new("--store"),
            store.as_os_str(),
            src.as_os_str(),
        ])
    };
    intake();
    std::fs::write(src.join("etc/app/conf"), b"new content").unwrap();
    std::fs::remove_file(src.join("gone")).unwrap();
    std::fs::write(src.join("etc/new"), b"n").unwrap();
    intake();
    let diff = |json: bool| {
        let mut args = vec![OsStr::new("admin"), OsStr::new("diff"), OsStr::new("1")];
        args.extend([OsStr::new("2"), OsStr::new("--store"), store.as_os_str()]);
        if json {
            args.push(OsStr::new("--json"));
        }
        ok(&args)
    };
    let text: Vec<String> = diff(false)
        .stdout
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect();
    let json: Vec<String> = diff(true)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(json, text);
    for p in ["/etc/app/conf", "/etc/new", "/gone"] {
        assert!(json.iter().any(|j| j == p), "{p} not in {json:?}");
    }
}

/// The error object on stdout: `{"error": {"code": N, "message": M}}` where N is the exit
/// code and M the message of the stderr line.
fn assert_json_error(r: &Run, code: i32) {
    assert_eq!(r.code, code, "{}", r.transcript);
    let j = r.json();
    assert_eq!(j["error"]["code"], code, "{}", r.transcript);
    let message = j["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty());
    assert!(
        r.stderr.contains(message),
        "the JSON message is not the stderr one:\n{}",
        r.transcript
    );
    assert_eq!(j.as_object().map(|o| o.len()), Some(1), "{j}");
}

#[test]
fn a_failed_command_given_json_prints_an_error_object_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let s = store.as_os_str();
    ok(&[OsStr::new("init-store"), OsStr::new("--store"), s]);
    let a = |args: &[&str]| {
        let mut v = vec![OsStr::new("admin"), OsStr::new("--store"), s];
        v.extend(args.iter().map(OsStr::new));
        asl_run(&v)
    };

    // --json after the subcommand, and before it (a global flag of asl-admin).
    let r = a(&["show", "99", "--json"]);
    assert_json_error(&r, 1);
    assert!(r.stdout.contains("no snapshot"), "{}", r.transcript);
    assert_json_error(&a(&["--json", "show", "99"]), 1);
    // A usage error found by the tool (exit 2) and one found while parsing.
    assert_json_error(&a(&["ls", "latest:/a/../..", "--json"]), 2);
    let r = a(&["no-such-subcommand", "--json"]);
    assert_json_error(&r, 2);
    assert!(r.stdout.contains("no-such-subcommand"), "{}", r.transcript);
    // clap's message can span lines; the object carries all of it, not the usage after it.
    let r = a(&["diff", "1", "--json"]);
    assert_eq!(r.code, 2, "{}", r.transcript);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.ends_with("not provided: <NEW>"), "{message:?}");
    // A subcommand's own --json (asl-key show) and a tool's (overlay-boot).
    let missing = t.path().join("missing");
    let r = asl_run(&[
        OsStr::new("key"),
        OsStr::new("show"),
        OsStr::new("--json"),
        missing.as_os_str(),
    ]);
    assert_json_error(&r, 1);
    let conf = t.path().join("nope.conf");
    assert_json_error(
        &asl_run(&[
            OsStr::new("overlay-boot"),
            OsStr::new("--json"),
            conf.as_os_str(),
        ]),
        1,
    );

    // Without --json, stdout stays empty and the stderr line is unchanged.
    let r = a(&["show", "99"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "", "{}", r.transcript);
    assert!(r.stderr.starts_with("asl-admin: error: "), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    // A `--json` after `--` belongs to the captured command, not to asl-capture.
    let r = asl_run(&[
        OsStr::new("capture"),
        OsStr::new("--store"),
        s,
        OsStr::new("--no-such-option"),
        OsStr::new("--"),
        OsStr::new("echo"),
        OsStr::new("--json"),
    ]);
    assert_eq!(r.code, 2, "{}", r.transcript);
    assert_eq!(r.stdout, "", "{}", r.transcript);
}

/// Intakes `src` into `store` and returns the run.
fn intake_into(store: &Path, src: &Path) -> Run {
    asl_run(&[
        OsStr::new("intake"),
        OsStr::new("-q"),
        OsStr::new("--store"),
        store.as_os_str(),
        src.as_os_str(),
    ])
}

#[test]
fn an_intake_of_a_source_that_does_not_exist_exits_1_and_creates_no_store() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let missing = t.path().join("no-such-dir");
    let r = intake_into(&store, &missing);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(
        r.stderr.contains(&*missing.to_string_lossy()),
        "{}",
        r.transcript
    );
    assert!(
        !store.exists(),
        "a failed intake created {}",
        store.display()
    );

    // One missing source among several: the same, nothing created.
    let here = t.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let r = asl_run(&[
        OsStr::new("intake"),
        OsStr::new("--store"),
        store.as_os_str(),
        here.as_os_str(),
        missing.as_os_str(),
    ]);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(
        !store.exists(),
        "a failed intake created {}",
        store.display()
    );
}

#[test]
fn first_intakes_racing_to_create_a_store_never_see_a_half_made_one() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"racing\n").unwrap();
    for round in 0..8 {
        let store = t.path().join(format!("store{round}"));
        let children: Vec<_> = (0..6)
            .map(|_| {
                asl()
                    .args(["intake", "-q", "--store"])
                    .arg(&store)
                    .arg(&src)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("cannot start asl")
            })
            .collect();
        let mut committed = 0;
        for c in children {
            let o = c.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            match o.status.code() {
                Some(0) => committed += 1,
                // Losing the writer lock to the winner is the expected way to lose.
                Some(1) if stderr.contains("is locked by a running writer") => {}
                _ => panic!("round {round}: {}", transcript(&o)),
            }
        }
        assert!(committed >= 1, "round {round}: no intake committed");
        let snaps = ok(&[
            OsStr::new("admin"),
            OsStr::new("--json"),
            OsStr::new("--store"),
            store.as_os_str(),
            OsStr::new("snapshots"),
        ]);
        assert_eq!(snaps.json().as_array().unwrap().len(), committed);
    }
}

/// Every file under `dir` with its length.
fn files_and_sizes(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(files_and_sizes(&e.path()));
        } else {
            out.push((e.path(), m.len()));
        }
    }
    out.sort();
    out
}

#[test]
fn gc_dry_run_works_while_a_writer_holds_the_lock_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"kept\n").unwrap();
    let store = t.path().join("store");
    let r = intake_into(&store, &src);
    assert_eq!(r.code, 0, "{}", r.transcript);
    // What a killed writer leaves: opening a writer would delete it.
    std::fs::write(store.join("blocks/open/killed-writer.tmp"), vec![7u8; 4096]).unwrap();
    let before = files_and_sizes(&store);

    // Held as a running intake holds it.
    let lock = std::fs::File::open(store.join("locks/writer.lock")).unwrap();
    lock.lock().unwrap();
    let r = ok(&[
        OsStr::new("admin"),
        OsStr::new("--json"),
        OsStr::new("--store"),
        store.as_os_str(),
        OsStr::new("gc"),
        OsStr::new("--dry-run"),
    ]);
    let j = r.json();
    assert_eq!(j["gc"]["dry_run"], true, "{}", r.transcript);
    assert!(
        j["gc"]["unreferenced_removed"]["bytes"].as_u64().unwrap() >= 4096,
        "{}",
        r.transcript
    );
    let text = ok(&[
        OsStr::new("admin"),
        OsStr::new("--store"),
        store.as_os_str(),
        OsStr::new("gc"),
        OsStr::new("--dry-run"),
    ]);
    assert!(text.stdout.contains("dry run"), "{}", text.transcript);
    // The real gc still needs the lock.
    let r = asl_run(&[
        OsStr::new("admin"),
        OsStr::new("--store"),
        store.as_os_str(),
        OsStr::new("gc"),
    ]);
    assert_eq!(r.code, 1, "{}", r.transcript);
    assert!(r.stderr.contains("locked"), "{}", r.transcript);
    lock.unlock().unwrap();
    assert_eq!(
        files_and_sizes(&store),
        before,
        "a dry run changed the store"
    );
}
