//! End-to-end tests of the `asl-usroverlay` tool: the real binary, run as root inside a
//! throw-away private mount namespace per test (see `asl_usroverlay::testing`), with its
//! state kept below the test's own directories (`--state-root`).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use asl_usroverlay::testing::{Machine, machine, mount_table, tree_snapshot};
use common::{asl, text};
use serde_json::Value;

fn tool(root: &Path, args: &[&str]) -> Command {
    let mut c = asl();
    c.arg("usroverlay").arg("--state-root").arg(root).args(args);
    c.env_remove("ASL_USROVERLAY_CRASH_AT");
    c
}

fn run(root: &Path, args: &[&str]) -> Output {
    tool(root, args).output().expect("running asl")
}

/// Runs and requires exit code 0; returns stdout.
fn ok(root: &Path, args: &[&str]) -> String {
    let o = run(root, args);
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "{args:?} failed ({}): {out}{err}",
        o.status
    );
    out
}

/// Runs and requires exit code `code`; returns stderr.
fn fails(root: &Path, args: &[&str], code: i32) -> String {
    let o = run(root, args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {out}{err}");
    assert!(out.is_empty(), "a failing command printed on stdout: {out}");
    err
}

fn status_json(root: &Path, diff: bool) -> Value {
    let args: &[&str] = if diff {
        &["status", "--diff", "--json"]
    } else {
        &["status", "--json"]
    };
    serde_json::from_str(&ok(root, args)).expect("status --json is JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn fake_tree(m: &Machine, name: &str) -> PathBuf {
    let t = m.disk().join(name);
    fs::create_dir_all(t.join("bin")).unwrap();
    fs::create_dir_all(t.join("share/keep")).unwrap();
    fs::write(t.join("bin/tool"), "tool v1\n").unwrap();
    fs::write(t.join("share/keep/x"), "x\n").unwrap();
    fs::set_permissions(&t, fs::Permissions::from_mode(0o755)).unwrap();
    t
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

#[test]
fn cli_apply_on_usr_then_status_diff_lists_exactly_the_three_changes() {
    machine(
        "cli_apply_on_usr_then_status_diff_lists_exactly_the_three_changes",
        |m| {
            let root = m.state_root();
            let o = run(&root, &["apply"]);
            let (out, err) = text(&o);
            assert!(o.status.success(), "{out}{err}");
            assert!(
                out.contains("applied transient overlay 'usr' on /usr"),
                "{out}"
            );
            assert!(
                err.contains("warning") && err.contains("/var/lib/dpkg"),
                "no package-manager warning: {err}"
            );

            fs::write("/usr/asl-cli-added", "new\n").unwrap();
            fs::write("/usr/share/common-licenses/GPL-3", "replaced\n").unwrap();
            fs::remove_file("/usr/bin/yes").unwrap();

            let human = ok(&root, &["status", "--diff"]);
            let change_lines: Vec<&str> = human.lines().filter(|l| l.starts_with("  ")).collect();
            assert_eq!(
                change_lines,
                vec![
                    "  A /usr/asl-cli-added",
                    "  M /usr/share/common-licenses/GPL-3",
                    "  D /usr/bin/yes"
                ],
                "{human}"
            );
            assert!(
                human.contains("transient") && human.contains("active"),
                "{human}"
            );

            let v = status_json(&root, true);
            let o = &v["overlays"][0];
            assert_eq!(v["overlays"].as_array().unwrap().len(), 1);
            assert_eq!(o["name"], "usr");
            assert_eq!(o["path"], "/usr");
            assert_eq!(o["mode"], "transient");
            assert_eq!(o["state"], "active");
            assert_eq!(o["access_mode"], "read-write");
            assert_eq!(o["persistence"], "transient");
            assert!(o["upper_bytes"].as_u64().unwrap() > 0);
            assert!(o["since"].as_str().unwrap().ends_with('Z'));
            assert_eq!(strings(&o["diff"]["added"]), ["/usr/asl-cli-added"]);
            assert_eq!(
                strings(&o["diff"]["changed"]),
                ["/usr/share/common-licenses/GPL-3"]
            );
            assert_eq!(strings(&o["diff"]["deleted"]), ["/usr/bin/yes"]);
            assert!(strings(&o["diff"]["opaque"]).is_empty());
        },
    );
}

#[test]
fn cli_reset_discards_changes_and_remove_restores_the_original_mount() {
    machine(
        "cli_reset_discards_changes_and_remove_restores_the_original_mount",
        |m| {
            let root = m.state_root();
            let tree = fake_tree(m, "tree");
            let before = (mount_table(), tree_snapshot(&tree));
            ok(&root, &["apply", "--path", s(&tree), "--name", "t"]);
            fs::write(tree.join("bin/tool"), "patched\n").unwrap();
            fs::write(tree.join("added"), "a\n").unwrap();

            let out = ok(&root, &["reset", "t"]);
            assert!(out.contains("changes discarded"), "{out}");
            assert_eq!(tree_snapshot(&tree), before.1, "reset left changes behind");
            fs::write(tree.join("after-reset"), "still writable\n").unwrap();
            let v = status_json(&root, true);
            assert_eq!(v["overlays"][0]["state"], "active");
            assert_eq!(
                strings(&v["overlays"][0]["diff"]["added"]),
                [tree.join("after-reset").display().to_string()]
            );

            let out = ok(&root, &["remove", "t"]);
            assert!(out.contains("original tree"), "{out}");
            assert_eq!((mount_table(), tree_snapshot(&tree)), before);
            assert_eq!(ok(&root, &["status"]).trim(), "no overlays");
        },
    );
}

#[test]
fn cli_hotfix_survives_reboot_via_apply_boot_and_transient_does_not() {
    machine(
        "cli_hotfix_survives_reboot_via_apply_boot_and_transient_does_not",
        |m| {
            let root = m.state_root();
            let tree = m.disk().join("tree");
            m.boot(1, || {
                fake_tree(m, "tree");
                ok(&root, &["apply", "--mode", "hotfix"]);
                ok(&root, &["apply", "--path", s(&tree), "--name", "scratch"]);
                fs::write("/usr/asl-cli-hotfix", "fix\n").unwrap();
                fs::write(tree.join("bin/tool"), "transient\n").unwrap();
            });
            m.boot(2, || {
                let human = ok(&root, &["status"]);
                assert!(
                    human.contains("stale") && human.contains("apply --boot"),
                    "{human}"
                );
                assert!(!human.contains("scratch"), "{human}");
                let out = ok(&root, &["apply", "--boot"]);
                assert!(
                    out.contains("re-applied hotfix overlay 'usr' on /usr"),
                    "{out}"
                );
                assert_eq!(fs::read_to_string("/usr/asl-cli-hotfix").unwrap(), "fix\n");
                assert_eq!(
                    fs::read_to_string(tree.join("bin/tool")).unwrap(),
                    "tool v1\n"
                );
                let v = status_json(&root, false);
                assert_eq!(v["overlays"][0]["state"], "active");
                assert_eq!(v["overlays"][0]["persistence"], "persistent");
            });
        },
    );
}

#[test]
fn cli_read_only_overlay_makes_writes_fail_with_erofs() {
    machine("cli_read_only_overlay_makes_writes_fail_with_erofs", |m| {
        let root = m.state_root();
        let tree = fake_tree(m, "tree");
        ok(&root, &["apply", "--path", s(&tree), "--mode", "read-only"]);
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("echo x > '{}'/bin/tool", tree.display()))
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert!(!o.status.success());
        assert!(err.contains("Read-only file system"), "{err}");
        let e = fs::write(tree.join("new"), "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
        let v = status_json(&root, false);
        assert_eq!(v["overlays"][0]["access_mode"], "read-only");
    });
}

/// The shared shape of the bad-input tests: the command fails with `code` and a message
/// containing every word of `expect`, and neither the mount table nor the state changed.
fn refused_and_untouched(m: &Machine, args: &[&str], code: i32, expect: &[&str]) {
    let root = m.state_root();
    let before = (mount_table(), tree_snapshot(&root));
    let err = fails(&root, args, code);
    for word in expect {
        assert!(err.contains(word), "{args:?}: '{word}' missing in: {err}");
    }
    assert!(err.starts_with("asl-usroverlay: error: "), "{err}");
    assert_eq!(
        (mount_table(), tree_snapshot(&root)),
        before,
        "{args:?} changed something"
    );
}

#[test]
fn cli_apply_to_a_missing_path_fails_with_usage_error_and_changes_nothing() {
    machine(
        "cli_apply_to_a_missing_path_fails_with_usage_error_and_changes_nothing",
        |m| {
            let missing = m.disk().join("no/such");
            for mode in ["transient", "hotfix", "read-only"] {
                refused_and_untouched(
                    m,
                    &["apply", "--path", s(&missing), "--mode", mode],
                    2,
                    &[s(&missing), "does not exist"],
                );
            }
        },
    );
}

#[test]
fn cli_apply_to_a_file_fails_with_usage_error_and_changes_nothing() {
    machine(
        "cli_apply_to_a_file_fails_with_usage_error_and_changes_nothing",
        |m| {
            let tree = fake_tree(m, "tree");
            let file = tree.join("bin/tool");
            refused_and_untouched(
                m,
                &["apply", "--path", s(&file), "--mode", "hotfix"],
                2,
                &[s(&file), "not a directory"],
            );
        },
    );
}

#[test]
fn cli_applying_twice_fails_naming_the_existing_overlay_and_changes_nothing() {
    machine(
        "cli_applying_twice_fails_naming_the_existing_overlay_and_changes_nothing",
        |m| {
            let tree = fake_tree(m, "tree");
            ok(
                &m.state_root(),
                &["apply", "--path", s(&tree), "--name", "tree"],
            );
            fs::write(tree.join("bin/tool"), "patched\n").unwrap();
            refused_and_untouched(
                m,
                &[
                    "apply",
                    "--path",
                    s(&tree),
                    "--mode",
                    "hotfix",
                    "--name",
                    "other",
                ],
                1,
                &[
                    "already has an overlay",
                    "'tree'",
                    "reset tree",
                    "remove tree",
                ],
            );
            assert_eq!(
                fs::read_to_string(tree.join("bin/tool")).unwrap(),
                "patched\n"
            );
        },
    );
}

#[test]
fn cli_removing_an_unknown_name_fails_with_usage_error_and_changes_nothing() {
    machine(
        "cli_removing_an_unknown_name_fails_with_usage_error_and_changes_nothing",
        |m| {
            refused_and_untouched(m, &["remove", "ghost"], 2, &["no overlay named 'ghost'"]);
            let tree = fake_tree(m, "tree");
            ok(
                &m.state_root(),
                &["apply", "--path", s(&tree), "--name", "real"],
            );
            refused_and_untouched(m, &["remove", "ghost"], 2, &["'ghost'", "known: real"]);
            refused_and_untouched(m, &["reset", "ghost"], 2, &["'ghost'"]);
        },
    );
}

#[test]
fn cli_non_root_user_is_refused_and_nothing_is_mounted_or_written() {
    machine(
        "cli_non_root_user_is_refused_and_nothing_is_mounted_or_written",
        |m| {
            let root = m.state_root();
            let tree = fake_tree(m, "tree");
            for args in [
                vec!["apply", "--path", s(&tree)],
                vec!["apply", "--path", s(&tree), "--mode", "hotfix"],
                vec!["apply", "--boot"],
                vec!["remove", "tree"],
            ] {
                let before = (mount_table(), tree_snapshot(&root));
                let o = tool(&root, &args).uid(65534).gid(65534).output().unwrap();
                let (out, err) = text(&o);
                assert_eq!(o.status.code(), Some(1), "{args:?}: {out}{err}");
                assert!(
                    err.contains("needs root") && err.contains("uid 65534"),
                    "{err}"
                );
                assert_eq!((mount_table(), tree_snapshot(&root)), before, "{args:?}");
            }
        },
    );
}

#[test]
fn cli_status_is_truthful_after_the_tool_crashes_and_remove_cleans_stale_entries() {
    machine(
        "cli_status_is_truthful_after_the_tool_crashes_and_remove_cleans_stale_entries",
        |m| {
            let root = m.state_root();
            let (t1, t2) = (fake_tree(m, "t1"), fake_tree(m, "t2"));
            let before = mount_table();
            // Dies after mounting: the overlay is there, the command never finished.
            let o = tool(
                &root,
                &[
                    "apply",
                    "--path",
                    s(&t1),
                    "--mode",
                    "hotfix",
                    "--name",
                    "t1",
                ],
            )
            .env("ASL_USROVERLAY_CRASH_AT", "after-mount")
            .output()
            .unwrap();
            assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{:?}", o.status);
            // Dies after writing its record, before mounting anything.
            let o = tool(
                &root,
                &[
                    "apply",
                    "--path",
                    s(&t2),
                    "--mode",
                    "read-only",
                    "--name",
                    "t2",
                ],
            )
            .env("ASL_USROVERLAY_CRASH_AT", "after-record")
            .output()
            .unwrap();
            assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{:?}", o.status);

            let v = status_json(&root, false);
            let by_name = |n: &str| {
                v["overlays"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["name"] == n)
                    .cloned()
                    .unwrap_or_else(|| panic!("{n} missing in {v}"))
            };
            let (o1, o2) = (by_name("t1"), by_name("t2"));
            assert_eq!(
                (&o1["state"], &o1["mode"]),
                (&"active".into(), &"hotfix".into())
            );
            assert_eq!(
                (&o2["state"], &o2["mode"]),
                (&"stale".into(), &"read-only".into())
            );
            fs::write(t1.join("written-after-crash"), "x").unwrap();

            // An overlay unmounted behind the tool's back is stale too.
            let um = Command::new("umount").arg(&t1).status().unwrap();
            assert!(um.success());
            let human = ok(&root, &["status"]);
            assert!(human.contains("'t1' is stale"), "{human}");

            for n in ["t1", "t2"] {
                let out = ok(&root, &["remove", n]);
                assert!(out.contains("removed the stale entry"), "{out}");
            }
            assert_eq!(ok(&root, &["status"]).trim(), "no overlays");
            assert_eq!(mount_table(), before, "a crashed apply left mounts behind");
            assert_eq!(tree_snapshot(&m.dirs().persistent), Vec::<String>::new());
        },
    );
}

/// Kills the child when dropped, so a failing assertion never leaves it running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cli_reset_of_a_busy_tree_explains_and_force_unmounts_lazily() {
    machine(
        "cli_reset_of_a_busy_tree_explains_and_force_unmounts_lazily",
        |m| {
            let root = m.state_root();
            let tree = fake_tree(m, "tree");
            ok(&root, &["apply", "--path", s(&tree), "--name", "tree"]);
            fs::write(tree.join("bin/tool"), "patched\n").unwrap();
            let user = Reaped(
                Command::new("sleep")
                    .arg("600")
                    .current_dir(&tree)
                    .spawn()
                    .unwrap(),
            );
            let named = format!("pid {} (sleep: cwd {})", user.0.id(), tree.display());
            for cmd in ["reset", "remove"] {
                refused_and_untouched(m, &[cmd, "tree"], 1, &["busy", &named, "--force"]);
            }
            ok(&root, &["reset", "--force", "tree"]);
            assert_eq!(
                fs::read_to_string(tree.join("bin/tool")).unwrap(),
                "tool v1\n"
            );
            ok(&root, &["remove", "--force", "tree"]);
            assert_eq!(ok(&root, &["status"]).trim(), "no overlays");
        },
    );
}

/// Removes a scratch directory when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn cli_install_unit_writes_an_enabled_unit_running_apply_boot_and_uninstall_removes_it() {
    let dir =
        Scratch(std::env::temp_dir().join(format!("asl-usroverlay-units-{}", std::process::id())));
    let root = dir.0.join("state");
    let units = dir.0.join("units");
    let out = ok(&root, &["install-unit", "--unit-dir", s(&units)]);
    assert!(out.contains("asl-usroverlay-boot.service"), "{out}");
    let unit = fs::read_to_string(units.join("asl-usroverlay-boot.service")).unwrap();
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("an ExecStart line");
    assert!(
        exec.contains(" asl-usroverlay --state-root ") && exec.ends_with(" apply --boot"),
        "{exec}"
    );
    let link = units.join("sysinit.target.wants/asl-usroverlay-boot.service");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("../asl-usroverlay-boot.service")
    );
    assert_eq!(ok(&root, &["install-unit", "--print"]), unit);
    ok(
        &root,
        &["install-unit", "--unit-dir", s(&units), "--uninstall"],
    );
    assert!(!units.join("asl-usroverlay-boot.service").exists());
    assert!(fs::symlink_metadata(&link).is_err());
}

/// The unit's command line works when the binary is installed under the tool's own name (a
/// hard link `asl-usroverlay`, as images install it): run as systemd runs it, `@EXE ARGV0
/// ARGS` executing EXE with ARGV0 as `argv[0]`. Found by VM scenario 3b, where the unit
/// failed with "unrecognized subcommand 'asl-usroverlay'".
#[test]
fn the_unit_command_line_runs_under_a_binary_named_after_the_tool() {
    let dir = Scratch(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("usroverlay-link-{}", std::process::id())),
    );
    fs::create_dir_all(&dir.0).unwrap();
    let link = dir.0.join("asl-usroverlay");
    fs::hard_link(env!("CARGO_BIN_EXE_asl"), &link).unwrap();
    let root = dir.0.join("state");
    let o = Command::new(&link)
        .args(["--state-root", s(&root), "install-unit", "--print"])
        .output()
        .unwrap();
    let (unit, err) = text(&o);
    assert!(o.status.success(), "install-unit --print: {err}");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    // No word here needs quoting (the scratch path has no blanks), so words split on blanks.
    // As systemd reads it: a leading '@' makes the second word argv[0].
    let words: Vec<&str> = exec.split_whitespace().collect();
    let (exe, argv0, args) = match words[0].strip_prefix('@') {
        Some(exe) => (exe, words[1], &words[2..]),
        None => (words[0], words[0], &words[1..]),
    };
    assert_eq!(
        Path::new(exe),
        link,
        "the unit runs the binary it was made by"
    );
    let o = Command::new(exe)
        .arg0(argv0)
        .args(args)
        .env_remove("ASL_USROVERLAY_CRASH_AT")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "the unit's command {exec} failed ({}): {out}{err}",
        o.status
    );
}

#[test]
fn cli_help_teaches_modes_examples_and_exit_codes() {
    let o = asl().args(["usroverlay", "--help"]).output().unwrap();
    let (out, _) = text(&o);
    assert!(o.status.success());
    for word in [
        "transient",
        "hotfix",
        "read-only",
        "apply --boot",
        "Exit codes",
        "/var/lib/dpkg",
    ] {
        assert!(out.contains(word), "--help lacks '{word}': {out}");
    }
    let o = asl()
        .args(["usroverlay", "apply", "--boot", "--path", "/opt"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "--boot with --path must be a usage error"
    );
}

/// A private mount namespace made by `unshare -m --propagation private`, kept alive by a
/// `sleep` that started before any overlay existed (so it holds nothing of one); commands
/// enter it with `nsenter`. The test process itself stays on the host, so it sees the host's
/// `/usr` and `/run` throughout.
struct Namespace {
    holder: Reaped,
}

fn link(p: &str) -> Option<PathBuf> {
    fs::read_link(p).ok()
}

/// Waits until process `pid` runs `command` (after its exec), for up to ten seconds.
fn wait_for_command(pid: u32, command: &str) {
    for _ in 0..1000 {
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == command) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("pid {pid} never became {command}");
}

impl Namespace {
    fn new() -> Namespace {
        let holder = Reaped(
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "sleep", "600"])
                .spawn()
                .expect("running unshare"),
        );
        let pid = holder.0.id();
        wait_for_command(pid, "sleep");
        assert_ne!(
            link(&format!("/proc/{pid}/ns/mnt")),
            link("/proc/self/ns/mnt"),
            "unshare did not make a mount namespace"
        );
        Namespace { holder }
    }

    fn pid(&self) -> u32 {
        self.holder.0.id()
    }

    /// `program args…` inside the namespace, working directory `/`.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "--wd=/", "--"])
            .arg(program)
            .args(args)
            .env_remove("ASL_USROVERLAY_CRASH_AT")
            .env_remove("ASL_USROVERLAY_RELAUNCHED");
        c
    }

    /// The tool (`asl usroverlay --state-root ROOT args…`) inside the namespace.
    fn tool(&self, root: &Path, args: &[&str]) -> Output {
        let mut all = vec!["usroverlay", "--state-root", s(root)];
        all.extend_from_slice(args);
        self.command(Path::new(env!("CARGO_BIN_EXE_asl")), &all)
            .output()
            .expect("running nsenter")
    }

    fn ok(&self, root: &Path, args: &[&str]) -> String {
        let o = self.tool(root, args);
        let (out, err) = text(&o);
        assert!(
            o.status.success(),
            "{args:?} in the namespace failed: {out}{err}"
        );
        out
    }

    fn sh(&self, script: &str) -> Output {
        self.command(Path::new("/bin/sh"), &["-c", script])
            .output()
            .expect("running nsenter")
    }

    /// The namespace's mount table, read from the host.
    fn mount_table(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap()
    }
}

/// What the host sees of `/usr`: its mounts, and the files the test changes in the namespace.
fn host_usr() -> (Vec<String>, bool, bool, bool) {
    let mounts = mount_table()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/usr") || l.contains("asl-usroverlay"))
        .map(str::to_string)
        .collect();
    (
        mounts,
        Path::new("/usr/bin/yes").is_file(),
        Path::new("/usr/asl-real-usr-written").exists(),
        Path::new("/usr/local/bin/asl-usroverlay").exists(),
    )
}

/// The records under a state root, as the host sees them.
fn records_under(root: &Path) -> Vec<String> {
    tree_snapshot(root)
        .into_iter()
        .filter(|l| l.contains("overlay.json") || l.contains(".json "))
        .collect()
}

#[test]
fn cli_on_the_real_merged_usr_in_unshare_applies_resets_refuses_busy_and_removes() {
    assert!(
        fs::read_link("/lib").is_ok_and(|t| t == Path::new("usr/lib")),
        "this test is about a merged /usr (/lib -> usr/lib)"
    );
    let scratch = Scratch(
        std::env::temp_dir().join(format!("asl-usroverlay-realusr-{}", std::process::id())),
    );
    let root = scratch.0.join("state");
    let host_before = host_usr();
    assert!(host_before.1, "the test needs /usr/bin/yes");
    let host_status = || ok(&root, &["status"]).trim().to_string();

    let ns = Namespace::new();
    ns.ok(&root, &["apply", "--name", "realusr"]);
    assert!(ns.mount_table().contains("asl-usroverlay:realusr"));
    // The writes: a new file, the tool itself installed below /usr, a deletion.
    let w = ns.sh(&format!(
        "echo written > /usr/asl-real-usr-written && cp '{}' /usr/local/bin/asl-usroverlay && rm /usr/bin/yes",
        env!("CARGO_BIN_EXE_asl")
    ));
    assert!(w.status.success(), "{:?}", text(&w));
    assert_eq!(host_usr(), host_before, "the host's /usr changed");
    // The record lives in the namespace's layer mount: the host has no overlay to show.
    assert_eq!(host_status(), "no overlays");

    let v: Value = serde_json::from_str(&ns.ok(&root, &["status", "--diff", "--json"])).unwrap();
    let o = &v["overlays"][0];
    assert_eq!(
        (&o["name"], &o["state"]),
        (&"realusr".into(), &"active".into())
    );
    assert_eq!(
        strings(&o["diff"]["added"]),
        ["/usr/asl-real-usr-written", "/usr/local/bin/asl-usroverlay"]
    );
    assert_eq!(strings(&o["diff"]["deleted"]), ["/usr/bin/yes"]);

    // Another process holding a file open: reset refuses and names it.
    let user = Reaped(
        ns.command(
            Path::new("/bin/sh"),
            &[
                "-c",
                "exec 3</usr/share/common-licenses/GPL-3; exec sleep 600",
            ],
        )
        .spawn()
        .unwrap(),
    );
    wait_for_command(user.0.id(), "sleep");
    for cmd in ["reset", "remove"] {
        let o = ns.tool(&root, &[cmd, "realusr"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {out}{err}");
        let named = format!("pid {} (sleep", user.0.id());
        assert!(err.contains(&named), "{cmd}: '{named}' missing in: {err}");
        assert!(
            err.contains("fd 3 /usr/share/common-licenses/GPL-3") && err.contains("--force"),
            "{err}"
        );
        assert!(
            !err.contains("this process"),
            "the tool blamed itself: {err}"
        );
    }
    drop(user);
    assert!(ns.mount_table().contains("asl-usroverlay:realusr"));
    assert!(ns.sh("test -e /usr/asl-real-usr-written").status.success());

    // Nothing else uses it now: reset works, run by the copy below the overlay's own /usr
    // (program, loader and libc all mapped through the overlay).
    let o = ns
        .command(
            Path::new("/usr/local/bin/asl-usroverlay"),
            &["--state-root", s(&root), "reset", "realusr"],
        )
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "reset on the real /usr: {out}{err}");
    assert!(out.contains("changes discarded"), "{out}");
    assert!(!ns.sh("test -e /usr/asl-real-usr-written").status.success());
    assert!(ns.sh("test -f /usr/bin/yes").status.success());
    let v: Value = serde_json::from_str(&ns.ok(&root, &["status", "--diff", "--json"])).unwrap();
    assert_eq!(v["overlays"][0]["state"], "active");
    assert!(
        strings(&v["overlays"][0]["diff"]["added"]).is_empty(),
        "{v}"
    );
    assert_eq!(host_usr(), host_before, "the host's /usr changed");

    let out = ns.ok(&root, &["remove", "realusr"]);
    assert!(out.contains("original tree"), "{out}");
    assert!(
        !ns.mount_table().contains("asl-usroverlay"),
        "{}",
        ns.mount_table()
    );
    assert_eq!(ns.ok(&root, &["status"]).trim(), "no overlays");
    assert_eq!(host_usr(), host_before, "the host's /usr changed");
}

#[test]
fn cli_record_of_an_overlay_in_unshare_stays_in_that_namespace_and_ends_with_it() {
    let scratch = Scratch(
        std::env::temp_dir().join(format!("asl-usroverlay-nsrecord-{}", std::process::id())),
    );
    let root = scratch.0.join("state");
    let host_before = host_usr();
    let ns = Namespace::new();
    for mode in ["transient", "read-only"] {
        let name = format!("in-ns-{mode}");
        let tree = scratch.0.join(&name);
        fs::create_dir_all(&tree).unwrap();
        ns.ok(
            &root,
            &["apply", "--path", s(&tree), "--mode", mode, "--name", &name],
        );
    }
    ns.ok(&root, &["apply", "--name", "in-ns-usr"]);
    let v: Value = serde_json::from_str(&ns.ok(&root, &["status", "--json"])).unwrap();
    assert_eq!(v["overlays"].as_array().unwrap().len(), 3, "{v}");
    // The host sees neither the overlays nor their records.
    assert_eq!(ok(&root, &["status"]).trim(), "no overlays");
    assert_eq!(records_under(&root), Vec::<String>::new());

    // The namespace ends with its overlays applied: nothing is left for the host.
    drop(ns);
    assert_eq!(ok(&root, &["status"]).trim(), "no overlays");
    assert_eq!(records_under(&root), Vec::<String>::new());
    assert_eq!(host_usr(), host_before, "the host's /usr changed");
}
