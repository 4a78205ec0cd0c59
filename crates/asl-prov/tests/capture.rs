//! End-to-end tests of capture against the real kernel: real processes, real tracing
//! (ptrace + seccomp, fanotify as root), a real store.

use std::path::{Path, PathBuf};

use asl_prov::capture::{CaptureOptions, capture};
use asl_prov::graph::{self, Graph};
use asl_prov::receipt::Receipt;
use asl_prov::trace::TraceMode;
use asl_store::{InitOptions, Reference, Store};

fn new_store(dir: &Path) -> PathBuf {
    let s = dir.join("store");
    Store::init(&s, &InitOptions::default()).unwrap();
    s
}

fn opts(
    cwd: &Path,
    argv: &[&str],
    inputs: &[&str],
    outputs: &[&str],
    trace: TraceMode,
) -> CaptureOptions {
    CaptureOptions {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: cwd.to_path_buf(),
        inputs: inputs.iter().map(PathBuf::from).collect(),
        outputs: outputs.iter().map(PathBuf::from).collect(),
        trace,
        env_allow: Vec::new(),
        sign: None,
        echo: false,
        label: None,
        compression_level: None,
        observer_policy: Default::default(),
    }
}

/// Two C files sharing a header, compiled and linked.
fn c_project(dir: &Path) -> PathBuf {
    let src = dir.join("proj");
    std::fs::create_dir_all(src.join("include")).unwrap();
    std::fs::write(
        src.join("include/shared.h"),
        "#define ANSWER 42\nint helper(void);\n",
    )
    .unwrap();
    std::fs::write(
        src.join("helper.c"),
        "#include \"shared.h\"\nint helper(void) { return ANSWER; }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("main.c"),
        "#include \"shared.h\"\nint main(void) { return helper() - ANSWER; }\n",
    )
    .unwrap();
    src
}

const BUILD: &str =
    "gcc -Iinclude -c helper.c && gcc -Iinclude -c main.c && gcc -o app helper.o main.o";

fn gcc_build(trace: TraceMode) {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let src = c_project(dir.path());
    let mut digests = Vec::new();
    for _ in 0..2 {
        for o in ["helper.o", "main.o", "app"] {
            let _ = std::fs::remove_file(src.join(o));
        }
        let c = capture(
            &store,
            &opts(
                &src,
                &["/bin/sh", "-c", BUILD],
                &["helper.c", "main.c", "include"],
                &["helper.o", "main.o", "app"],
                trace,
            ),
        )
        .unwrap();
        let r = &c.receipt;
        assert_eq!(r.run.as_ref().unwrap().exit_code, Some(0), "{r:?}");
        assert_eq!(r.observed.mode, trace.name());
        let read: Vec<&str> = r
            .observed
            .accesses
            .iter()
            .filter(|a| a.op == "read")
            .map(|a| a.path.as_str())
            .collect();
        for f in ["helper.c", "main.c", "include/shared.h"] {
            let p = src.join(f);
            assert!(
                read.contains(&p.to_str().unwrap()),
                "{f} not observed as read: {read:?}"
            );
        }
        let outs: Vec<&str> = r.outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(outs, ["helper.o", "main.o", "app"]);
        assert!(r.missing_outputs.is_empty());
        // The declared sources are not "undeclared"; the objects are declared outputs.
        // (System headers such as /usr/include/stdc-predef.h are rightly undeclared.)
        let in_project = |p: &String| p.starts_with(src.to_str().unwrap());
        assert!(
            !r.observed.undeclared_inputs.iter().any(in_project),
            "{:?}",
            r.observed.undeclared_inputs
        );
        assert!(
            !r.observed
                .undeclared_outputs
                .iter()
                .any(|p| p.ends_with(".o"))
        );
        digests.push(r.action_digest.clone());
    }
    assert_eq!(
        digests[0], digests[1],
        "the action digest must not depend on the run"
    );
}

#[test]
fn gcc_build_under_ptrace_observes_every_source_and_header_and_keeps_the_action_digest() {
    gcc_build(TraceMode::Ptrace);
}

#[test]
fn gcc_build_under_fanotify_observes_every_source_and_header_and_keeps_the_action_digest() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root (CI runs as root)"
    );
    gcc_build(TraceMode::Fanotify);
}

#[test]
fn ptrace_sees_probes_of_absent_files_deletes_and_renames() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let cwd = dir.path();
    let c = capture(
        &store,
        &opts(
            cwd,
            &[
                "/bin/sh",
                "-c",
                "test -e nothere; echo x > a; mv a b; rm b; echo y > kept",
            ],
            &[],
            &[],
            TraceMode::Ptrace,
        ),
    )
    .unwrap();
    let has = |p: &str, op: &str| {
        let path = cwd.join(p);
        c.receipt
            .observed
            .accesses
            .iter()
            .any(|a| a.path == path.to_str().unwrap() && a.op == op)
    };
    assert!(has("nothere", "probe_absent"));
    assert!(has("a", "rename"));
    assert!(has("b", "delete"));
    assert!(has("kept", "create"));
    // `kept` is written outside the (empty) declared outputs; a/b were temporaries.
    let kept = cwd.join("kept");
    assert_eq!(
        c.receipt.observed.undeclared_outputs,
        vec![kept.to_string_lossy().into_owned()]
    );
}

#[test]
fn a_read_of_an_undeclared_file_is_flagged_and_a_failing_exit_code_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let cwd = dir.path();
    std::fs::write(cwd.join("declared.txt"), "a").unwrap();
    std::fs::write(cwd.join("sneaky.txt"), "b").unwrap();
    for trace in [TraceMode::Ptrace, TraceMode::Fanotify] {
        let c = capture(
            &store,
            &opts(
                cwd,
                &["/bin/sh", "-c", "cat declared.txt sneaky.txt; exit 3"],
                &["declared.txt"],
                &[],
                trace,
            ),
        )
        .unwrap();
        let sneaky = cwd.join("sneaky.txt").to_string_lossy().into_owned();
        let declared = cwd.join("declared.txt").to_string_lossy().into_owned();
        assert!(
            c.receipt.observed.undeclared_inputs.contains(&sneaky),
            "{trace:?}"
        );
        assert!(
            !c.receipt.observed.undeclared_inputs.contains(&declared),
            "{trace:?}"
        );
        let run = c.receipt.run.as_ref().unwrap();
        assert_eq!(run.exit_code, Some(3));
        assert!(!run.success);
        assert_eq!(c.receipt.exit_status(), 3);
        // stdout was stored.
        let st = Store::open(&store).unwrap();
        let out = asl_store::ArtifactRead::read_all(
            &st.reader(),
            &run.stdout.reference.parse::<Reference>().unwrap(),
        )
        .unwrap();
        assert_eq!(out, b"ab");
    }
}

#[test]
fn a_command_killed_by_a_signal_records_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let c = capture(
        &store,
        &opts(
            dir.path(),
            &["/bin/sh", "-c", "kill -TERM $$"],
            &[],
            &[],
            TraceMode::None,
        ),
    )
    .unwrap();
    let run = c.receipt.run.as_ref().unwrap();
    assert_eq!(run.signal, Some(libc::SIGTERM));
    assert_eq!(c.receipt.exit_status(), 128 + libc::SIGTERM);
}

fn snapshot_count(store: &Path) -> usize {
    Store::open(store).unwrap().snapshots().len()
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let cwd = dir.path();
    // No store.
    let e = capture(
        &cwd.join("nostore"),
        &opts(cwd, &["true"], &[], &[], TraceMode::None),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("no store at"), "{e}");
    // Command not found.
    let e = capture(
        &store,
        &opts(cwd, &["no-such-command-xyz"], &[], &[], TraceMode::None),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("no-such-command-xyz"), "{e}");
    // Unreadable declared input: the command must not even run.
    let marker = cwd.join("ran");
    let e = capture(
        &store,
        &opts(
            cwd,
            &["touch", marker.to_str().unwrap()],
            &["missing.c"],
            &[],
            TraceMode::None,
        ),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("missing.c"), "{e}");
    assert!(
        !marker.exists(),
        "the command ran although an input was unreadable"
    );
    // A store another writer holds, and a compression level out of range: refused before
    // the command runs (the store's log is otherwise read while it runs).
    for (holder, level) in [(true, None), (false, Some(99))] {
        let other = holder.then(|| asl_store::Writer::open(&store).unwrap());
        let mut o = opts(
            cwd,
            &["touch", marker.to_str().unwrap()],
            &[],
            &[],
            TraceMode::None,
        );
        o.compression_level = level;
        let e = capture(&store, &o).err().unwrap();
        let text = e.to_string();
        assert!(
            text.contains(if holder { "locked" } else { "99" }),
            "{text}"
        );
        assert!(!marker.exists(), "the command ran: {text}");
        drop(other);
    }
    // Invalid key file.
    std::fs::write(cwd.join("bad.key"), "not a key").unwrap();
    let e = asl_prov::sign::Key::load(&cwd.join("bad.key"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("bad.key"), "{e}");
    assert_eq!(snapshot_count(&store), 0);
    let st = Store::open(&store).unwrap();
    assert!(
        st.counts().index_entries == 0,
        "nothing may be visible after refused captures"
    );
}

/// Seed 003: a pre-image store, three chained steps, the DAG.
#[test]
fn seed_003_three_chained_steps_are_connected_in_the_dag() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let cwd = dir.path();
    std::fs::write(cwd.join("source.txt"), "hello\n").unwrap();
    let steps: [(&str, &str, &str); 3] = [
        (
            "tr a-z A-Z < source.txt > step1.txt",
            "source.txt",
            "step1.txt",
        ),
        ("rev < step1.txt > step2.txt", "step1.txt", "step2.txt"),
        ("sha256sum step2.txt > step3.txt", "step2.txt", "step3.txt"),
    ];
    let mut receipts = Vec::new();
    for (cmd, input, output) in steps {
        let c = capture(
            &store,
            &opts(
                cwd,
                &["/bin/sh", "-c", cmd],
                &[input],
                &[output],
                TraceMode::Ptrace,
            ),
        )
        .unwrap();
        assert_eq!(c.receipt.exit_status(), 0);
        receipts.push(c);
    }
    let st = Store::open(&store).unwrap();
    let g = Graph::load(&st, None).unwrap();
    assert_eq!(g.steps.len(), 3);
    let d = graph::dag(&g, None, None).unwrap();
    for w in receipts.windows(2) {
        let out = &w[0].receipt.outputs[0].reference;
        let next_in = &w[1].receipt.action.inputs[0].reference;
        assert_eq!(
            out, next_in,
            "step output must be the next step's input artifact"
        );
        let produced = d
            .links
            .iter()
            .any(|l| l.from == w[0].receipt_ref.to_string() && &l.to == out && l.kind == "output");
        let consumed = d
            .links
            .iter()
            .any(|l| &l.from == out && l.to == w[1].receipt_ref.to_string() && l.kind == "input");
        assert!(produced && consumed, "{:?}", d.links);
    }
    // why(step3 output) walks back to step 1; used-by(source) names step 1.
    let last: Reference = receipts[2].receipt.outputs[0].reference.parse().unwrap();
    let why = graph::why(&g, &last, 8);
    for c in &receipts {
        assert!(why.contains(&c.receipt_ref.to_string()), "{why}");
    }
    let src: Reference = receipts[0].receipt.action.inputs[0]
        .reference
        .parse()
        .unwrap();
    assert!(graph::used_by(&g, &src).contains(&receipts[0].receipt_ref.to_string()));
    // Rendered forms carry every step.
    let dot = graph::to_dot(&d);
    let svg = graph::to_svg(&d);
    for c in &receipts {
        assert!(dot.contains(&c.receipt_ref.to_string()));
        assert!(svg.contains(&c.receipt_ref.to_string()));
    }
    // GC/verify reach everything from the snapshot roots through `children`.
    let report = asl_store::verify::verify(
        &st,
        &asl_store::verify::VerifyOptions::default(),
        &asl_prov::children,
    );
    assert!(report.ok(), "{:?}", report.problems);
    let root = st.resolve_snapshot("latest").unwrap().root.unwrap();
    let mut reached = std::collections::HashSet::new();
    let missing = asl_store::reach::walk(&st.reader(), &[root], &asl_prov::children, |r| {
        reached.insert(*r);
    });
    assert!(missing.is_empty(), "{missing:?}");
    assert!(reached.contains(&receipts[2].receipt_ref));
    for r in receipts[2].receipt.references().unwrap() {
        assert!(
            reached.contains(&r),
            "{r} not reachable from the snapshot root"
        );
    }
}

#[test]
fn replay_of_a_deterministic_step_matches_and_of_a_clock_step_names_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let cwd = dir.path();
    std::fs::write(cwd.join("in.txt"), "abc\n").unwrap();
    let det = capture(
        &store,
        &opts(
            cwd,
            &["/bin/sh", "-c", "sort in.txt > out.txt"],
            &["in.txt"],
            &["out.txt"],
            TraceMode::None,
        ),
    )
    .unwrap();
    let clock = capture(
        &store,
        &opts(
            cwd,
            &[
                "/bin/sh",
                "-c",
                "date +%s%N > stamp.txt; cp in.txt copy.txt",
            ],
            &["in.txt"],
            &["stamp.txt", "copy.txt"],
            TraceMode::None,
        ),
    )
    .unwrap();
    let st = Store::open(&store).unwrap();
    let r1 = asl_prov::replay::replay(&st, &det.receipt_ref, false).unwrap();
    assert!(r1.matches, "{r1:?}");
    let r2 = asl_prov::replay::replay(&st, &clock.receipt_ref, false).unwrap();
    assert!(!r2.matches);
    let differing: Vec<&str> = r2
        .outputs
        .iter()
        .filter(|o| !o.matches)
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(differing, ["stamp.txt"]);
}

#[test]
fn a_signed_receipt_verifies_and_an_untrusted_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let cwd = dir.path();
    std::fs::write(cwd.join("in.txt"), "abc\n").unwrap();
    let mut o = opts(
        cwd,
        &["cp", "in.txt", "out.txt"],
        &["in.txt"],
        &["out.txt"],
        TraceMode::None,
    );
    let key = asl_prov::sign::Key::generate().unwrap();
    let public = key.public_hex();
    o.sign = Some(key);
    let c = capture(&store, &o).unwrap();
    let st = Store::open(&store).unwrap();
    let ok = asl_prov::verify::verify_in_store(&st, &c.receipt_ref, std::slice::from_ref(&public))
        .unwrap();
    assert!(ok.ok(), "{ok:?}");
    assert_eq!(ok.signatures.len(), 1);
    let other = asl_prov::sign::Key::generate().unwrap().public_hex();
    let bad = asl_prov::verify::verify_in_store(&st, &c.receipt_ref, &[other]).unwrap();
    assert!(!bad.ok());
    // The receipt decodes back to what was captured.
    let bytes = asl_store::ArtifactRead::read_all(&st.reader(), &c.receipt_ref).unwrap();
    assert_eq!(Receipt::decode(&bytes).unwrap(), c.receipt);
}

#[test]
fn a_file_import_records_identity_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let f = dir.path().join("tool.sh");
    std::fs::write(&f, "#!/bin/sh\necho hi\n").unwrap();
    let c = asl_prov::capture::capture_file(&store, &f, None, None).unwrap();
    let imp = c.receipt.file.as_ref().unwrap();
    assert_eq!(imp.digest_before, imp.digest_after);
    assert!(!imp.changed_during_import);
    assert_eq!(imp.size, 18);
    assert_eq!(c.receipt.outputs[0].reference, imp.digest_after);
}

/// The command gets the descriptors its caller passed (those without close-on-exec, like a
/// shell would) and none that the capturing process opened for itself. (A forked child holds
/// the close-on-exec ones until its exec; the store's lock is unlocked explicitly for that
/// reason, see `asl_store::lock`.)
#[test]
fn the_command_gets_passed_descriptors_and_none_of_the_capturing_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let held = std::fs::File::create(dir.path().join("held")).unwrap(); // close-on-exec
    use std::os::fd::AsRawFd;
    let passed_fd = rustix::io::fcntl_dupfd_cloexec(&held, 200).unwrap();
    rustix::io::fcntl_setfd(&passed_fd, rustix::io::FdFlags::empty()).unwrap();
    let own_fd = rustix::io::fcntl_dupfd_cloexec(&held, 220).unwrap();
    let (passed, own) = (passed_fd.as_raw_fd(), own_fd.as_raw_fd());
    assert!(passed >= 200 && own >= 220);
    for trace in [TraceMode::None, TraceMode::Ptrace, TraceMode::Fanotify] {
        let c = capture(
            &store,
            &opts(dir.path(), &["/bin/ls", "/proc/self/fd"], &[], &[], trace),
        )
        .unwrap();
        let run = c.receipt.run.as_ref().unwrap();
        let st = Store::open(&store).unwrap();
        let out = asl_store::ArtifactRead::read_all(
            &st.reader(),
            &run.stdout.reference.parse::<Reference>().unwrap(),
        )
        .unwrap();
        let fds: Vec<i32> = String::from_utf8(out)
            .unwrap()
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(
            fds.contains(&passed),
            "{trace:?}: {passed} not passed: {fds:?}"
        );
        assert!(!fds.contains(&own), "{trace:?}: {own} leaked: {fds:?}");
    }
    drop((passed_fd, own_fd));
}

/// The capture's compression level applies to everything it stores, the declared inputs
/// (stored before the run) included: a level-1 and a level-19 capture of the same
/// compressible input store it in different sizes, and the store's own level (3) is
/// neither.
#[test]
fn declared_inputs_are_stored_at_the_captures_level() {
    let stored_len = |level: Option<i32>| {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(dir.path());
        // One chunk (under the 128 KiB minimum chunk), so that its record is the artifact.
        let text: String = (0..3_000)
            .map(|i| format!("line {i} of a build log, value {}\n", i % 97))
            .collect();
        std::fs::write(dir.path().join("in.txt"), text).unwrap();
        let mut o = opts(dir.path(), &["true"], &["in.txt"], &[], TraceMode::None);
        o.compression_level = level;
        let c = capture(&store, &o).unwrap();
        let r: Reference = c.receipt.action.inputs[0].reference.parse().unwrap();
        let st = Store::open(&store).unwrap();
        st.reader().locate(&r).unwrap().stored_len
    };
    let (one, three, nineteen) = (
        stored_len(Some(1)),
        stored_len(Some(3)),
        stored_len(Some(19)),
    );
    assert_ne!(
        one, three,
        "level 1 stored the input as the store's level 3 does"
    );
    assert_ne!(
        nineteen, three,
        "level 19 stored the input as the store's level 3 does"
    );
}

/// Past 8 k events the fanotify observer converts them on two cores: every file read is
/// still there, once, and sorted.
#[test]
fn fanotify_keeps_every_access_of_a_many_file_command() {
    every_read_of_many_files_is_recorded(9_000, false);
}

/// The observer yields to the command while it runs (SCHED_IDLE on an idle machine; the
/// policy changes themselves are unit-tested in `trace::quiet`). Busy loops that start as
/// the command runs take the idle cores away: the capture still ends and records every
/// read.
#[test]
fn fanotify_keeps_every_access_when_the_machine_turns_busy() {
    every_read_of_many_files_is_recorded(3_000, true);
}

/// Captures `cat` of `n` files under fanotify (beside busy loops on every core if `busy`)
/// and checks that the receipt lists each file read, in order.
fn every_read_of_many_files_is_recorded(n: usize, busy: bool) {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let files = dir.path().join("many");
    std::fs::create_dir(&files).unwrap();
    for i in 0..n {
        std::fs::write(files.join(format!("f{i:05}")), b"x").unwrap();
    }
    // The command waits a little first, so that the loops start while it runs.
    let script = if busy {
        "sleep 0.05; cat many/* > /dev/null"
    } else {
        "cat many/* > /dev/null"
    };
    let o = opts(
        dir.path(),
        &["sh", "-c", script],
        &[],
        &[],
        TraceMode::Fanotify,
    );
    /// Stops the busy loops when dropped, also should the capture panic.
    struct Stop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = Stop(stop.clone());
    let loops: Vec<_> = (0..if busy { cores() } else { 0 })
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let c = capture(&store, &o);
    drop(stopper);
    for l in loops {
        l.join().unwrap();
    }
    let c = c.unwrap();
    let prefix = format!("{}/f", files.display());
    let reads: Vec<&str> = c
        .receipt
        .observed
        .accesses
        .iter()
        .filter(|a| a.op == "read" && a.path.starts_with(&prefix))
        .map(|a| a.path.as_str())
        .collect();
    let expected: Vec<String> = (0..n)
        .map(|i| files.join(format!("f{i:05}")).display().to_string())
        .collect();
    assert_eq!(reads, expected);
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A program that exists but cannot be executed is refused with the kernel's reason under
/// every mechanism, and nothing is committed: the child's exec failure reaches the parent.
#[test]
fn an_unexecutable_program_is_refused_with_its_errno_under_every_mechanism() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let bad = dir.path().join("bad");
    std::fs::write(&bad, b"not a program\n\0\x01").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    for trace in [TraceMode::None, TraceMode::Ptrace, TraceMode::Fanotify] {
        let e = capture(&store, &opts(dir.path(), &["./bad"], &[], &[], trace))
            .err()
            .unwrap_or_else(|| panic!("{trace:?}: the capture succeeded"));
        match e {
            asl_prov::ProvError::Exec { program, source } => {
                assert_eq!(program, dir.path().join("./bad"), "{trace:?}");
                assert_eq!(
                    source.raw_os_error(),
                    Some(rustix::io::Errno::NOEXEC.raw_os_error()),
                    "{trace:?}"
                );
            }
            other => panic!("{trace:?}: {other}"),
        }
    }
    assert_eq!(snapshot_count(&store), 0);
}
