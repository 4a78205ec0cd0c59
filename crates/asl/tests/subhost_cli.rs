//! End-to-end tests of overlay-boot, overlay-go, overlay-stop and overlay-list against the real
//! kernel (root required, as in CI): real namespaces, overlay mounts, veth cables, a bridge and
//! cgroups. Every test owns a subhost name of its own and a guard that stops the subhost and
//! removes its netns, links, cgroup and state even when the test fails. `ip` (iproute2) serves as
//! an independent oracle for links and namespaces.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ASL: &str = env!("CARGO_BIN_EXE_asl");

fn asl(args: &[&str]) -> Output {
    run(Command::new(ASL).args(args))
}

/// Runs a command with a generous deadline so a hung subhost fails the test instead of CI.
fn run(cmd: &mut Command) -> Output {
    run_within(cmd, Duration::from_secs(120))
}

fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let done = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let (d, k) = (done.clone(), killed.clone());
    // A watchdog instead of polling, so that output is read while the command runs.
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if d.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !d.load(Ordering::SeqCst) {
            k.store(true, Ordering::SeqCst);
            // SAFETY: killing the command this test started, which has not been waited for.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("output");
    done.store(true, Ordering::SeqCst);
    if killed.load(Ordering::SeqCst) {
        panic!(
            "timed out after {limit:?}: {cmd:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn cgroup_dir(name: &str) -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|r| Path::new(r).join("asl-subhost").join(name))
        .find(|p| p.parent().is_some_and(|d| d.is_dir()))
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["-o", "link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Removes everything a subhost NAME can leave on the host. Used by guards after a failed test;
/// the tests themselves assert that overlay-stop needed none of it.
fn force_cleanup(name: &str) {
    let _ = asl(&["overlay-stop", name]);
    if let Ok(s) = std::fs::read_to_string(format!("/run/subhost/{name}.json"))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
    {
        for who in ["init", "supervisor"] {
            if let Some(pid) = v[who]["pid"].as_i64() {
                let ticks = v[who]["start_ticks"].as_u64();
                if start_ticks(pid as i32) == ticks && ticks.is_some() {
                    // SAFETY: killing a process this test started (identity checked).
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
    }
    for i in 0..4 {
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{name}{i}")])
            .stderr(Stdio::null())
            .status();
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    if let Some(cg) = cgroup_dir(name) {
        let _ = std::fs::remove_dir(cg);
    }
    let _ = std::fs::remove_file(format!("/run/subhost/{name}.json"));
    let _ = std::fs::remove_file(format!("/run/subhost/{name}.lock"));
}

fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A subhost directory (root/, work/, live/, NAME.conf) and a guard for everything it creates.
struct Subhost {
    name: String,
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Subhost {
    /// `extra` lines are appended to `BASE=. NAME= START=none LOG=`; earlier lines win, so
    /// tests that need another START put it in `first`.
    fn with(name: &str, first: &str, extra: &str) -> Subhost {
        force_cleanup(name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("asl-subhost-{name}-"))
            .tempdir()
            .expect("tempdir");
        for d in ["root", "work", "live"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        let conf = dir.path().join(format!("{name}.conf"));
        let log = dir.path().join("log");
        std::fs::write(
            &conf,
            format!(
                "{first}BASE=.\nNAME={name}\nSTART=none\nLOG={}\n{extra}",
                log.display()
            ),
        )
        .expect("write conf");
        Subhost {
            name: name.into(),
            dir,
            conf,
        }
    }

    fn new(name: &str, extra: &str) -> Subhost {
        Subhost::with(name, "", extra)
    }

    fn conf(&self) -> &str {
        self.conf.to_str().expect("utf-8 path")
    }

    fn boot(&self) -> Output {
        asl(&["overlay-boot", self.conf()])
    }

    fn go(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["overlay-go", self.name.as_str(), "--"];
        args.extend_from_slice(cmd);
        asl(&args)
    }

    fn sh(&self, script: &str) -> String {
        ok(&self.go(&["sh", "-c", script]), script)
    }

    fn stop(&self) -> Output {
        asl(&["overlay-stop", self.conf()])
    }

    fn state(&self) -> serde_json::Value {
        let s = std::fs::read_to_string(format!("/run/subhost/{}.json", self.name))
            .expect("state file of a running subhost");
        serde_json::from_str(&s).expect("state json")
    }

    fn upper(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Subhost {
    fn drop(&mut self) {
        force_cleanup(&self.name);
    }
}

/// Asserts that nothing of subhost `name` is left on the host.
fn assert_gone(name: &str, live: &Path, pids: &[i32]) {
    assert!(!netns_exists(name), "netns {name} left behind");
    for i in 0..4 {
        let l = format!("{name}{i}");
        assert!(!link_exists(&l), "link {l} left behind");
    }
    if let Some(cg) = cgroup_dir(name) {
        assert!(!cg.exists(), "cgroup {} left behind", cg.display());
    }
    assert!(
        !Path::new(&format!("/run/subhost/{name}.json")).exists(),
        "state file left behind"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let live = live.to_str().expect("utf-8");
    assert!(
        !mounts.lines().any(|l| l.contains(live)),
        "a mount on {live} is visible on the host"
    );
    for &pid in pids {
        assert!(!alive(pid), "process {pid} of {name} still exists");
    }
}

/// True if `pid` exists and is not a zombie (a zombie has ended; only its parent's wait is due).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// Whether this kernel can make VLAN links (probed in a throw-away netns, not on the host).
fn kernel_has_vlan() -> bool {
    Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link add v0 type veth peer name v1 && ip link add link v0 name v0.7 type vlan id 7",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pids_of(s: &Subhost) -> Vec<i32> {
    let st = s.state();
    ["init", "supervisor"]
        .iter()
        .filter_map(|w| st[w]["pid"].as_i64().map(|p| p as i32))
        .collect()
}

#[test]
fn boot_with_host_root_runs_our_init_with_own_namespaces_and_hostname_and_writes_to_upper() {
    let s = Subhost::new("aslt-iso", "");
    ok(&s.boot(), "overlay-boot");
    let marker = format!("/asl-written-inside-{}", std::process::id());
    let out = s.sh(&format!(
        "cat /proc/1/comm; hostname; readlink /proc/1/ns/mnt; readlink /proc/1/ns/pid; \
         echo inside > {marker}"
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "subhost-init", "{out}");
    assert_eq!(lines[1], "aslt-iso", "{out}");
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").expect("ns");
    let host_pid = std::fs::read_link("/proc/self/ns/pid").expect("ns");
    assert_ne!(lines[2], host_mnt.to_str().unwrap_or(""), "same mount ns");
    assert_ne!(lines[3], host_pid.to_str().unwrap_or(""), "same pid ns");
    let in_upper = s.upper().join(marker.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(&in_upper).expect("file in UPPER"),
        "inside\n"
    );
    assert!(
        !Path::new(&marker).exists(),
        "the write reached the host root"
    );
    ok(&s.stop(), "overlay-stop");
}

#[test]
fn overlay_go_sees_only_the_subhost_processes() {
    let s = Subhost::new("aslt-go", "");
    ok(&s.boot(), "overlay-boot");
    // The shell lists /proc with a builtin glob, so the only processes are PID 1 and itself.
    let out = s.sh("echo $$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done");
    let mut lines = out.lines();
    let me = lines.next().expect("pid").to_string();
    let mut seen: Vec<String> = lines.map(String::from).collect();
    seen.sort();
    let mut want = vec!["1".to_string(), me];
    want.sort();
    assert_eq!(seen, want, "{out}");
    let code = s.go(&["sh", "-c", "exit 7"]).status.code();
    assert_eq!(code, Some(7), "overlay-go passes the exit status on");
    ok(&s.stop(), "overlay-stop");
}

#[test]
fn stop_removes_every_mount_netns_link_cgroup_and_process() {
    let s = Subhost::new("aslt-stop", "CABLES= = =\n");
    ok(&s.boot(), "overlay-boot");
    assert!(netns_exists("aslt-stop"));
    assert!(link_exists("aslt-stop0") && link_exists("aslt-stop1"));
    // A process started inside must be ended by the stop, too.
    ok(&s.go(&["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"]), "go");
    let pids = pids_of(&s);
    let out = ok(&s.stop(), "overlay-stop");
    assert!(out.contains("stopped"), "{out}");
    assert_gone("aslt-stop", &s.dir.path().join("live"), &pids);
    assert!(s.log().contains("stopped"), "{}", s.log());
}

#[test]
fn stop_of_a_subhost_that_is_not_running_exits_1() {
    let s = Subhost::new("aslt-nrun", "");
    let out = s.stop();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("aslt-nrun is not running"));
}

#[test]
fn two_subhosts_on_one_bridge_ping_each_other_and_mac_and_vlan_work() {
    // Kernels without 8021q (such as some microVM kernels) cannot have the VLAN part; the
    // untagged cable, MAC and bridge are tested everywhere, VLAN where the kernel has it, and
    // `vlan_cable_works_with_802_1q_and_fails_cleanly_without` covers the other case.
    let vlan = kernel_has_vlan();
    if !vlan {
        eprintln!("this kernel has no VLAN support: testing cables without the `.7` spec");
    }
    let v = if vlan { " {br}=.7" } else { "" };
    let br = "asltbr0";
    struct Bridge(&'static str);
    impl Drop for Bridge {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", self.0]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["link", "del", br])
        .stderr(Stdio::null())
        .status();
    ok(
        &run(Command::new("ip").args(["link", "add", br, "type", "bridge"])),
        "add bridge",
    );
    let _guard = Bridge(br);
    ok(
        &run(Command::new("ip").args(["link", "set", br, "up"])),
        "bridge up",
    );

    let v = v.replace("{br}", br);
    let a = Subhost::new("aslt-pa", &format!("CABLES= {br}=02:00:00:00:0a:01{v}\n"));
    let b = Subhost::new("aslt-pb", &format!("CABLES= {br}={v}\n"));
    ok(&a.boot(), "boot a");
    ok(&b.boot(), "boot b");
    assert_eq!(
        a.sh("cat /sys/class/net/eth0/address").trim(),
        "02:00:00:00:0a:01"
    );
    // The host ends are ports of the bridge (sysfs of the host is the oracle).
    let ports: &[&str] = if vlan {
        &["aslt-pa0", "aslt-pb0", "aslt-pa0.7", "aslt-pb0.7"]
    } else {
        &["aslt-pa0", "aslt-pb0"]
    };
    for port in ports {
        assert!(
            Path::new(&format!("/sys/class/net/{br}/brif/{port}")).exists(),
            "{port} not in {br}"
        );
    }
    for (s, n) in [(&a, 1), (&b, 2)] {
        s.sh(&format!(
            "ip link set eth0 up && ip addr add 10.231.0.{n}/24 dev eth0"
        ));
        if vlan {
            s.sh(&format!(
                "ip link set eth0.7 up && ip addr add 10.231.7.{n}/24 dev eth0.7"
            ));
        }
    }
    a.sh("ping -c 1 -W 5 10.231.0.2");
    b.sh("ping -c 1 -W 5 10.231.0.1");
    if vlan {
        // Over VLAN 7: tagged inside, untagged through the host's aslt-p?0.7 bridge ports.
        a.sh("ping -c 1 -W 5 10.231.7.2");
        let neigh = a.sh("ip neigh show dev eth0.7");
        assert!(neigh.contains("10.231.7.2"), "{neigh}");
    }
    let pids = [pids_of(&a), pids_of(&b)].concat();
    ok(&a.stop(), "stop a");
    ok(&b.stop(), "stop b");
    assert_gone("aslt-pa", &a.dir.path().join("live"), &pids);
    assert_gone("aslt-pb", &b.dir.path().join("live"), &[]);
    assert!(!link_exists("aslt-pa0.7"));
}

/// A `.N` cable is a VLAN on both ends where the kernel has 802.1q; where it has not, the boot
/// fails saying so, and leaves nothing behind.
#[test]
fn vlan_cable_works_with_802_1q_and_fails_cleanly_without() {
    let s = Subhost::new("aslt-vlan", "CABLES= = =.7\n");
    if !kernel_has_vlan() {
        assert_rejected(&s, "no VLAN (802.1q) support");
    } else {
        ok(&s.boot(), "overlay-boot");
        assert!(link_exists("aslt-vlan0.7"), "host end of the VLAN");
        let inside = s.sh("ip -d -o link show eth0.7");
        assert!(inside.contains("vlan protocol 802.1Q id 7"), "{inside}");
        let pids = pids_of(&s);
        ok(&s.stop(), "overlay-stop");
        assert_gone("aslt-vlan", &s.dir.path().join("live"), &pids);
        assert!(!link_exists("aslt-vlan0.7"), "VLAN left behind");
    }
}

/// Bad configurations fail with an error naming the problem, and leave nothing behind.
fn assert_rejected(s: &Subhost, needle: &str) {
    let out = s.boot();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert_gone(&s.name, &s.dir.path().join("live"), &[]);
}

#[test]
fn config_without_base_is_rejected() {
    let s = Subhost::new("aslt-bad1", "");
    std::fs::write(&s.conf, "NAME=aslt-bad1\nSTART=none\n").expect("write");
    assert_rejected(&s, "BASE");
}

#[test]
fn name_longer_than_12_characters_is_rejected() {
    let s = Subhost::with("aslt-bad2", "NAME=aslt-much-too-long\n", "");
    assert_rejected(&s, "at most 12");
}

#[test]
fn work_on_another_file_system_is_rejected() {
    // /dev/shm is a tmpfs; the test's UPPER is under /tmp.
    let work = tempfile::Builder::new()
        .prefix("asl-subhost-work-")
        .tempdir_in("/dev/shm")
        .expect("tempdir in /dev/shm");
    let s = Subhost::new("aslt-bad3", &format!("WORK={}\n", work.path().display()));
    let st_tmp = std::fs::metadata(s.upper()).expect("upper");
    let st_run = std::fs::metadata(work.path()).expect("work");
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        st_tmp.dev(),
        st_run.dev(),
        "test premise: different file systems"
    );
    assert_rejected(&s, "different file system");
}

#[test]
fn missing_live_is_rejected() {
    let s = Subhost::new("aslt-bad4", "");
    std::fs::remove_dir(s.dir.path().join("live")).expect("rmdir");
    assert_rejected(&s, "LIVE");
}

#[test]
fn failing_bang_command_is_rejected_with_its_line() {
    let s = Subhost::with("aslt-bad5", "LOWER=!false\n", "");
    assert_rejected(&s, ":1: LOWER");
}

#[test]
fn failure_inside_the_boot_removes_cables_netns_and_cgroup() {
    // POSTMOUNT fails after netns, cables and cgroup exist: all of it must go again.
    let s = Subhost::with("aslt-bad6", "POSTMOUNT=/bin/false\n", "CABLES= =\n");
    assert_rejected(&s, "POSTMOUNT");
}

#[test]
fn booting_a_running_subhost_is_refused_and_leaves_it_running() {
    let s = Subhost::new("aslt-twice", "");
    ok(&s.boot(), "first boot");
    let out = s.boot();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already running"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(s.sh("hostname").trim(), "aslt-twice");
    ok(&s.stop(), "overlay-stop");
}

/// The `CapBnd:` mask of a /proc/PID/status text.
fn cap_bounding_set(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
        .expect("CapBnd")
}

#[test]
fn hardening_drops_capabilities_and_sets_no_new_privs_for_pid1_and_entered_commands() {
    let s = Subhost::new(
        "aslt-hard",
        "DROP_CAPS=cap_sys_module cap_net_raw\nNO_NEW_PRIVS=yes\nREADONLY_SYS=yes\n",
    );
    ok(&s.boot(), "overlay-boot");
    let out = s.sh("grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status; touch /sys/x 2>&1 || true");
    let bnd = cap_bounding_set(&out);
    assert_eq!(bnd & (1 << 16), 0, "cap_sys_module still bounded: {out}");
    assert_eq!(bnd & (1 << 13), 0, "cap_net_raw still bounded: {out}");
    assert_ne!(
        bnd & (1 << 21),
        0,
        "cap_sys_admin was not asked to be dropped"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // PID 1 hardened itself too, so the services it starts inherit the narrowed set.
    let pid1 = s.sh("grep -E '^(CapBnd|NoNewPrivs)' /proc/1/status");
    let bnd1 = cap_bounding_set(&pid1);
    assert_eq!(bnd1 & (1 << 16 | 1 << 13), 0, "PID 1 kept them: {pid1}");
    assert!(pid1.contains("NoNewPrivs:\t1"), "{pid1}");
    ok(&s.stop(), "overlay-stop");
}

#[test]
fn overlay_list_shows_running_subhosts_with_pid_and_cables_as_json() {
    let s = Subhost::new("aslt-list", "CABLES= =\n");
    ok(&s.boot(), "overlay-boot");
    let init = s.state()["init"]["pid"].as_i64().expect("pid");
    let out = ok(&asl(&["overlay-list", "--json"]), "overlay-list");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let me = v
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["name"] == "aslt-list")
        .expect("listed");
    assert_eq!(me["status"], "running");
    assert_eq!(me["init_pid"].as_i64(), Some(init));
    assert_eq!(me["cables"][0]["host"], "aslt-list0");
    assert_eq!(me["cables"][0]["inside"], "eth0");
    assert!(me["uptime_s"].as_f64().is_some());
    let table = ok(&asl(&["overlay-list"]), "overlay-list");
    assert!(
        table.lines().any(|l| l.starts_with("aslt-list ")),
        "{table}"
    );
    ok(&s.stop(), "overlay-stop");
    let out = ok(&asl(&["overlay-list", "--json"]), "overlay-list");
    assert!(!out.contains("\"aslt-list\""), "{out}");
}

#[test]
fn foreground_supervisor_stops_the_subhost_gracefully_on_sigterm() {
    let s = Subhost::new("aslt-fg", "");
    let mut child = Command::new(ASL)
        .args(["overlay-boot", "--foreground", s.conf()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert!(first.contains("is up"), "{first}");
    let pids = pids_of(&s);
    assert_eq!(
        pids[1],
        child.id() as i32,
        "the foreground command is the supervisor"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert_gone("aslt-fg", &s.dir.path().join("live"), &pids);
    assert!(s.log().contains("stop requested"), "{}", s.log());
}

#[test]
fn minbase_subhost_runs_start_services_in_order_and_stops_them_in_reverse() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/minbase.sh");
    // The first run on a machine debootstraps (minutes); later runs reuse the cached tree.
    let out = run_within(
        Command::new("bash").arg(&script),
        Duration::from_secs(20 * 60),
    );
    let minbase = ok(&out, "scripts/minbase.sh").trim().to_string();
    let s = Subhost::with(
        "aslt-minb",
        &format!("LOWER={minbase}\nSTART=/etc/init.d/asl-first asl-second\n"),
        "",
    );
    // Two init scripts in UPPER: the first by absolute path, the second by service name.
    let initd = s.upper().join("etc/init.d");
    std::fs::create_dir_all(&initd).expect("mkdir");
    for svc in ["asl-first", "asl-second"] {
        let path = initd.join(svc);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{svc} $1 $(cat /proc/1/comm)\" >> /var/tmp/asl-services\n"),
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    ok(&s.boot(), "overlay-boot");
    let record = s.upper().join("var/tmp/asl-services");
    assert_eq!(
        std::fs::read_to_string(&record).expect("marker written by the START service"),
        "asl-first start subhost-init\nasl-second start subhost-init\n"
    );
    // The root really is the minbase tree: its os-release, not necessarily the host's.
    let os = s.sh("cat /etc/debian_version");
    assert_eq!(
        os,
        std::fs::read_to_string(Path::new(&minbase).join("etc/debian_version")).expect("read")
    );
    let pids = pids_of(&s);
    ok(&s.stop(), "overlay-stop");
    assert_eq!(
        std::fs::read_to_string(&record).expect("read"),
        "asl-first start subhost-init\nasl-second start subhost-init\n\
         asl-second stop subhost-init\nasl-first stop subhost-init\n"
    );
    assert_gone("aslt-minb", &s.dir.path().join("live"), &pids);
}

#[test]
fn failing_start_service_fails_the_boot_and_leaves_nothing() {
    let s = Subhost::with("aslt-svcf", "START=/bin/false\n", "");
    assert_rejected(&s, "service /bin/false failed to start");
}

#[test]
fn install_unit_writes_the_template_for_this_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(
        &asl(&[
            "overlay-boot",
            "--install-unit",
            dir.path().to_str().expect("utf-8"),
        ]),
        "install-unit",
    );
    let unit = std::fs::read_to_string(dir.path().join("overlay-boot@.service")).expect("unit");
    assert!(out.contains("overlay-boot@.service"));
    let bindir = Path::new(ASL).parent().expect("dir").display().to_string();
    assert!(
        unit.contains(&format!(
            "ExecStart={bindir}/overlay-boot --foreground /etc/subhost/%i.conf"
        )),
        "{unit}"
    );
}

#[test]
fn cgroup_limits_are_applied_or_refused_clearly_when_the_controller_is_missing() {
    let s = Subhost::new("aslt-cg", "MEMORY_MAX=64M\nPIDS_MAX=50\n");
    let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .find(|r| Path::new(r).join("cgroup.controllers").exists())
        .expect("a cgroup v2 hierarchy");
    let controllers =
        std::fs::read_to_string(Path::new(root).join("cgroup.controllers")).expect("read");
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !(has("memory") && has("pids")) {
        // Hybrid hosts (memory and pids bound to cgroup v1): refused, nothing left behind.
        assert_rejected(&s, "is not available on this host");
        return;
    }
    ok(&s.boot(), "overlay-boot");
    let cg = cgroup_dir("aslt-cg").expect("cgroup");
    assert_eq!(
        std::fs::read_to_string(cg.join("memory.max"))
            .expect("memory.max")
            .trim(),
        "67108864"
    );
    assert_eq!(
        std::fs::read_to_string(cg.join("pids.max"))
            .expect("pids.max")
            .trim(),
        "50"
    );
    let pids = pids_of(&s);
    ok(&s.stop(), "overlay-stop");
    assert_gone("aslt-cg", &s.dir.path().join("live"), &pids);
}

#[test]
fn share_binds_a_host_directory_and_a_custom_init_script_runs_inside() {
    let shared = tempfile::tempdir().expect("tempdir");
    std::fs::write(shared.path().join("hello"), "from the host\n").expect("write");
    let s = Subhost::with(
        "aslt-share",
        "INIT=./init.sh\nRAM_SIZE=none\n",
        &format!("SHARE= {}:/mnt/shared\n", shared.path().display()),
    );
    // A classic overlay-init style generator: prints the init-phase script, which ends by
    // exec'ing the reaper, as overlay-boot's scripts do.
    let init = s.dir.path().join("init.sh");
    std::fs::write(
        &init,
        "#!/bin/sh\necho 'echo \"init ran as $$ in $(hostname)\" > /var/tmp/init-marker'\n\
         echo 'exec ${REAPER:-/.reaper} x'\n",
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    ok(&s.boot(), "overlay-boot");
    assert_eq!(s.sh("cat /mnt/shared/hello"), "from the host\n");
    s.sh("echo back > /mnt/shared/written-inside");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("written-inside")).expect("read"),
        "back\n"
    );
    let marker = std::fs::read_to_string(s.upper().join("var/tmp/init-marker")).expect("marker");
    assert!(marker.contains("in aslt-share"), "{marker}");
    // RAM_SIZE=none: no tmpfs on /run inside.
    let mounts = s.sh("cat /proc/self/mounts");
    assert!(
        !mounts.lines().any(|l| l.split(' ').nth(1) == Some("/run")),
        "{mounts}"
    );
    let pids = pids_of(&s);
    ok(&s.stop(), "overlay-stop");
    assert_gone("aslt-share", &s.dir.path().join("live"), &pids);
}

#[test]
fn a_crashed_subhost_is_listed_dead_and_overlay_stop_removes_its_leftovers() {
    let s = Subhost::new("aslt-crash", "CABLES= =\n");
    ok(&s.boot(), "overlay-boot");
    let pids = pids_of(&s);
    // Kill the supervisor first so that nobody cleans up, then PID 1: a crash of both.
    for pid in [pids[1], pids[0]] {
        // SAFETY: processes of the subhost this test booted.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(netns_exists("aslt-crash"), "test premise: leftovers exist");
    let out = ok(&asl(&["overlay-list", "--json"]), "overlay-list");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let me = v
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["name"] == "aslt-crash")
        .expect("listed");
    assert_eq!(me["status"], "dead");
    let out = s.stop();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not running"));
    assert_gone("aslt-crash", &s.dir.path().join("live"), &pids);
}
