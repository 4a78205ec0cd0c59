//! The VM harness: boots a built ISO in qemu-system-x86_64 and talks to it over the serial
//! console.
//!
//! * KVM when `/dev/kvm` can run a guest (probed once: a firmware-only guest must stay up for
//!   three seconds), TCG otherwise; `ASL_VM_ACCEL=kvm|tcg` forces one.
//! * BIOS (SeaBIOS, machine `pc`) or UEFI (OVMF, machine `q35`, a private copy of the vars).
//! * The serial console is qemu's stdio: a thread copies it to a log file and a buffer the
//!   test waits on. Every wait has a hard timeout; on a timeout, and whenever a test panics
//!   with a VM alive, the end of the serial log is printed.
//! * Drop kills qemu and waits for it, so no process outlives its test; the VM's private
//!   files live in a temporary directory removed with it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Firmware {
    Bios,
    Uefi,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Net {
    None,
    /// QEMU user networking: the guest gets 10.0.2.15 by DHCP, and 10.0.2.2 is the host's
    /// loopback.
    User,
}

pub struct Spec {
    pub iso: PathBuf,
    pub firmware: Firmware,
    /// Raw disk images with the virtio serial each gets (`/dev/disk/by-id/virtio-SERIAL`).
    pub disks: Vec<(PathBuf, String)>,
    pub net: Net,
    pub memory_mib: u32,
}

impl Spec {
    pub fn new(iso: &Path, firmware: Firmware) -> Spec {
        Spec {
            iso: iso.into(),
            firmware,
            disks: Vec::new(),
            net: Net::None,
            memory_mib: 1536,
        }
    }
}

pub struct Vm {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    buf: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub log: PathBuf,
    started: Instant,
    _dir: tempfile::TempDir,
    next_cmd: u32,
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Whether KVM can run a guest here.
pub fn accel() -> &'static str {
    static A: OnceLock<&'static str> = OnceLock::new();
    A.get_or_init(|| match std::env::var("ASL_VM_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ => {
            if std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_err()
            {
                return "tcg";
            }
            // A /dev/kvm that opens may still fail to run a vCPU (seen here: "failed to set
            // MSR"); a guest with no boot device sits in the firmware, so staying up means
            // KVM works.
            let mut c = Command::new("qemu-system-x86_64")
                .args([
                    "-accel",
                    "kvm",
                    "-cpu",
                    "host",
                    "-display",
                    "none",
                    "-nodefaults",
                    "-m",
                    "64",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start qemu-system-x86_64 (Debian package qemu-system-x86)");
            std::thread::sleep(Duration::from_secs(3));
            let alive = c.try_wait().ok().flatten().is_none();
            let _ = c.kill();
            let _ = c.wait();
            if alive { "kvm" } else { "tcg" }
        }
    })
}

impl Vm {
    /// Starts the VM; `name` names its log (`target/vm-logs/NAME.log`).
    pub fn start(name: &str, spec: &Spec) -> Vm {
        assert!(
            spec.iso.is_file(),
            "{}: no ISO (scripts/test-vm.sh builds them)",
            spec.iso.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{name}.log"));
        let mut c = Command::new("qemu-system-x86_64");
        let accel = accel();
        c.args(["-accel", accel]);
        if accel == "kvm" {
            c.args(["-cpu", "host"]);
        }
        c.args(["-m", &spec.memory_mib.to_string(), "-smp", "2"]);
        c.args(["-display", "none", "-vga", "none", "-monitor", "none"]);
        c.args(["-serial", "stdio", "-no-reboot"]);
        match spec.firmware {
            Firmware::Bios => {
                c.args(["-machine", "pc"]);
            }
            Firmware::Uefi => {
                let vars = dir.path().join("vars.fd");
                std::fs::copy(OVMF_VARS, &vars)
                    .unwrap_or_else(|e| panic!("{OVMF_VARS}: {e} (Debian package ovmf)"));
                c.args(["-machine", "q35"]);
                c.arg("-drive")
                    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
                c.arg("-drive")
                    .arg(format!("if=pflash,format=raw,file={}", vars.display()));
            }
        }
        c.arg("-drive").arg(format!(
            "file={},if=none,id=cd,media=cdrom,readonly=on,format=raw",
            spec.iso.display()
        ));
        c.args(["-device", "ide-cd,drive=cd,bootindex=0"]);
        for (i, (img, serial)) in spec.disks.iter().enumerate() {
            c.arg("-drive")
                .arg(format!("file={},if=none,id=d{i},format=raw", img.display()));
            c.arg("-device")
                .arg(format!("virtio-blk-pci,drive=d{i},serial={serial}"));
        }
        match spec.net {
            Net::None => {
                c.args(["-nic", "none"]);
            }
            Net::User => {
                c.args(["-nic", "user,model=virtio-net-pci"]);
            }
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .expect("start qemu-system-x86_64 (Debian package qemu-system-x86)");
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let mut logf = std::fs::File::create(&log).unwrap();
        let b = buf.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match out.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = logf.write_all(&chunk[..n]);
                        b.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                }
            }
            let mut rest = Vec::new();
            let _ = err.read_to_end(&mut rest);
            if !rest.is_empty() {
                let _ = logf.write_all(b"\n--- qemu stderr ---\n");
                let _ = logf.write_all(&rest);
                b.lock().unwrap().extend_from_slice(&rest);
            }
        });
        eprintln!(
            "vm {name}: qemu ({accel}, {:?}) started, serial log {}",
            spec.firmware,
            log.display()
        );
        Vm {
            name: name.into(),
            stdin: child.stdin.take(),
            child: Some(child),
            buf,
            reader: Some(reader),
            log,
            started: Instant::now(),
            _dir: dir,
            next_cmd: 1,
        }
    }

    /// The serial output so far, as text.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    fn tail(&self, lines: usize) -> String {
        let s = self.console();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the console holds `needle` after byte offset `from`; returns the offset
    /// just past it. Panics with the end of the serial log on timeout or when qemu exits.
    pub fn wait_for_from(&mut self, from: usize, needle: &str, timeout: Duration) -> usize {
        let t = Instant::now();
        loop {
            {
                let b = self.buf.lock().unwrap();
                if b.len() > from
                    && let Some(i) = find(&b[from..], needle.as_bytes())
                {
                    let end = from + i + needle.len();
                    eprintln!(
                        "vm {}: saw {needle:?} at {:.0} s",
                        self.name,
                        self.started.elapsed().as_secs_f64()
                    );
                    return end;
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(st) = exited {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "vm {}: qemu exited ({st}) before {needle:?} appeared; serial log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.tail(80)
                );
            }
            if t.elapsed() > timeout {
                panic!(
                    "vm {}: {needle:?} did not appear within {} s; serial log {}:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log.display(),
                    self.tail(80)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> usize {
        self.wait_for_from(0, needle, timeout)
    }

    /// Types a line on the serial console.
    pub fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("vm stdin");
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        s.flush().unwrap();
    }

    /// Runs a shell command at the console's root shell and returns its exit status and its
    /// output (between two markers the shell prints, not the echoed command line).
    pub fn sh(&mut self, cmd: &str, timeout: Duration) -> (i32, String) {
        let n = self.next_cmd;
        self.next_cmd += 1;
        let from = self.buf.lock().unwrap().len();
        // The markers are built by the shell (printf with arguments), so the echo of the typed
        // line never matches them.
        self.send(&format!(
            "printf '%s-%s\\n' ASL-BEGIN {n}; {cmd}; printf '%s-%s rc=%s\\n' ASL-END {n} $?"
        ));
        let begin = self.wait_for_from(from, &format!("ASL-BEGIN-{n}\r\n"), timeout);
        let end_tag = format!("ASL-END-{n} rc=");
        let end = self.wait_for_from(begin, &end_tag, timeout);
        // Wait for the status digits and the newline.
        // (the serial line ends lines with \r\n)
        let nl = self.wait_for_from(end, "\r\n", Duration::from_secs(10));
        let b = self.buf.lock().unwrap();
        let out = String::from_utf8_lossy(&b[begin..end - end_tag.len()]).into_owned();
        let rc = String::from_utf8_lossy(&b[end..nl])
            .trim()
            .parse()
            .unwrap_or(-1);
        (rc, out.replace('\r', ""))
    }

    /// Waits for the root shell the console logs into.
    pub fn wait_for_shell(&mut self, timeout: Duration) {
        self.wait_for("root@", timeout);
        // The prompt is there; make sure the shell reads input (the first line may be eaten
        // while agetty hands over).
        std::thread::sleep(Duration::from_secs(1));
        let (rc, _) = self.sh("true", timeout);
        assert_eq!(rc, 0);
    }

    /// Waits for qemu to exit by itself (the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!(
                    "vm {}: powered off at {:.0} s",
                    self.name,
                    self.started.elapsed().as_secs_f64()
                );
                self.child = None;
                return st;
            }
            if t.elapsed() > timeout {
                panic!(
                    "vm {}: did not power off within {} s; serial log {}:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log.display(),
                    self.tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stdin = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "vm {}: serial log {} (last lines):\n{}",
                self.name,
                self.log.display(),
                self.tail(40)
            );
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The ISO of a profile, built once per run by scripts/test-vm.sh.
pub fn iso(profile: &str) -> PathBuf {
    let var = match profile {
        "rescue" => "ASL_VM_RESCUE_ISO",
        _ => "ASL_VM_AUTH_ISO",
    };
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{var} is not set: run the VM tests through scripts/test-vm.sh, which builds the ISOs"
        ),
    }
}
