//! The intake service state machine with a fake backend and real mode files.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use asl_host::modefile::{self, Decision, ModeRecord};
use asl_host::service::{
    self, BackendError, IntakeBackend, Notifier, RemoteTarget, ServiceEnd, ServiceError,
    ServiceOptions, Status,
};
use common::FakeRoot;

/// Generous: the service polls every 200 ms; this only bounds a hung test.
const DEADLINE: Duration = Duration::from_secs(5);

struct FakeBackend {
    calls: Sender<(PathBuf, bool)>,
    fail: bool,
}

impl IntakeBackend for FakeBackend {
    fn run_local(&mut self, store_dir: &Path, create_allowed: bool) -> Result<(), BackendError> {
        let _ = self.calls.send((store_dir.to_path_buf(), create_allowed));
        if self.fail {
            Err("store is damaged".into())
        } else {
            Ok(())
        }
    }
    fn run_remote(&mut self, remote: &RemoteTarget) -> Result<(), BackendError> {
        // The URL in place of a directory, the key slot's presence as the flag.
        let _ = self
            .calls
            .send((PathBuf::from(&remote.url), remote.ca.is_some()));
        if self.fail {
            Err("server refused".into())
        } else {
            Ok(())
        }
    }
}

/// A service running on a thread; dropping it stops the service (also when a test fails).
struct Running {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<ServiceEnd, ServiceError>>>,
    statuses: Receiver<Status>,
    calls: Receiver<(PathBuf, bool)>,
}

impl Running {
    fn start(fr: &FakeRoot, notifier: Notifier, fail: bool) -> Running {
        let (st_tx, statuses) = channel();
        let (call_tx, calls) = channel();
        let opts = ServiceOptions::default();
        let stop = opts.stop.clone();
        let root = fr.root();
        let handle = std::thread::spawn(move || {
            let mut backend = FakeBackend {
                calls: call_tx,
                fail,
            };
            service::run(&root, &mut backend, &notifier, &opts, &mut |s| {
                let _ = st_tx.send(s.clone());
            })
        });
        Running {
            stop,
            handle: Some(handle),
            statuses,
            calls,
        }
    }

    fn next_status(&self) -> Status {
        self.statuses
            .recv_timeout(DEADLINE)
            .expect("service reported no status in time")
    }

    fn finish(mut self) -> Result<ServiceEnd, ServiceError> {
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn record(decision: Decision, reason: &str) -> ModeRecord {
    ModeRecord {
        decision,
        facts: vec![("mode".into(), "auto".into())],
        reason: reason.into(),
    }
}

#[test]
fn operator_mode_waits_then_notices_a_changed_mode_file_and_starts_local_intake() {
    let fr = FakeRoot::new();
    fr.conf("mode = auto\nlocal.create = yes\n");
    modefile::write_atomic(&fr.root(), &record(Decision::Operator, "nothing mounted")).unwrap();
    let svc = Running::start(&fr, Notifier::default(), false);
    assert_eq!(
        svc.next_status(),
        Status::Operator("nothing mounted".into())
    );
    // While waiting, the backend is not called.
    assert!(svc.calls.recv_timeout(Duration::from_millis(500)).is_err());

    modefile::write_atomic(&fr.root(), &record(Decision::Local, "mounted")).unwrap();
    let (dir, create) = svc
        .calls
        .recv_timeout(DEADLINE)
        .expect("the changed mode file was not noticed");
    assert_eq!(dir, fr.path().join("mnt/asl/local"));
    assert!(create, "local.create = yes must reach the backend");
    assert_eq!(
        svc.next_status(),
        Status::Local(fr.path().join("mnt/asl/local"))
    );
    match svc.finish() {
        Ok(ServiceEnd::LocalDone { store_dir }) => assert_eq!(store_dir, dir),
        other => panic!("unexpected end: {other:?}"),
    }
}

#[test]
fn a_missing_mode_file_is_waited_for() {
    let fr = FakeRoot::new();
    fr.conf("mode = local\nlocal.mount = /srv/store\n");
    let svc = Running::start(&fr, Notifier::default(), false);
    assert_eq!(svc.next_status(), Status::NoModeFile);
    modefile::write_atomic(&fr.root(), &record(Decision::Local, "ok")).unwrap();
    let (dir, create) = svc
        .calls
        .recv_timeout(DEADLINE)
        .expect("mode file not noticed");
    assert_eq!(dir, fr.path().join("srv/store"));
    assert!(!create, "local.create defaults to no");
}

#[test]
fn operator_reason_changes_are_reported_again() {
    let fr = FakeRoot::new();
    modefile::write_atomic(&fr.root(), &record(Decision::Operator, "first")).unwrap();
    let svc = Running::start(&fr, Notifier::default(), false);
    assert_eq!(svc.next_status(), Status::Operator("first".into()));
    modefile::write_atomic(&fr.root(), &record(Decision::Operator, "second")).unwrap();
    assert_eq!(svc.next_status(), Status::Operator("second".into()));
    // A file that is not a mode file is reported, and the service keeps waiting.
    fr.write("run/asl/mode", "garbage");
    assert!(matches!(svc.next_status(), Status::BadModeFile(_)));
    drop(svc);
}

#[test]
fn remote_mode_hands_the_endpoint_key_slot_and_cas_to_the_backend() {
    let fr = FakeRoot::new();
    fr.write(
        "etc/asl/asl.conf",
        "mode = remote\nremote.endpoint = https://vault:8443/main\nremote.ca = /etc/asl/ca.pem\n",
    );
    modefile::write_atomic(&fr.root(), &record(Decision::Remote, "endpoint reachable")).unwrap();
    let svc = Running::start(&fr, Notifier::default(), false);
    assert_eq!(
        svc.next_status(),
        Status::Remote("https://vault:8443/main".into())
    );
    let (url, has_ca) = svc.calls.recv_timeout(DEADLINE).unwrap();
    assert_eq!(url, PathBuf::from("https://vault:8443/main"));
    assert!(has_ca);
    assert_eq!(
        svc.finish().unwrap(),
        ServiceEnd::RemoteDone {
            url: "https://vault:8443/main".into()
        }
    );
}

#[test]
fn remote_mode_without_an_endpoint_says_what_to_set() {
    let fr = FakeRoot::new();
    modefile::write_atomic(&fr.root(), &record(Decision::Remote, "endpoint reachable")).unwrap();
    let svc = Running::start(&fr, Notifier::default(), false);
    let e = svc.finish().unwrap_err();
    assert!(matches!(e, ServiceError::NoEndpoint { .. }));
    assert!(e.to_string().contains("remote.endpoint"), "{e}");
}

#[test]
fn a_backend_failure_names_the_store_directory() {
    let fr = FakeRoot::new();
    modefile::write_atomic(&fr.root(), &record(Decision::Local, "ok")).unwrap();
    let svc = Running::start(&fr, Notifier::default(), true);
    let e = svc.finish().unwrap_err().to_string();
    assert!(
        e.contains("mnt/asl/local") && e.contains("store is damaged"),
        "{e}"
    );
}

#[test]
fn an_invalid_configuration_stops_local_intake() {
    let fr = FakeRoot::new();
    fr.conf("local.mount = relative\n");
    modefile::write_atomic(&fr.root(), &record(Decision::Local, "ok")).unwrap();
    let svc = Running::start(&fr, Notifier::default(), false);
    let e = svc.finish().unwrap_err().to_string();
    assert!(e.contains("asl.conf:1: local.mount"), "{e}");
}

fn recv_datagram(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("no sd_notify datagram");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn operator_status_is_sent_to_the_notify_socket() {
    let fr = FakeRoot::new();
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    modefile::write_atomic(&fr.root(), &record(Decision::Operator, "no pool")).unwrap();
    let svc = Running::start(&fr, Notifier::to(sock_path.to_str().unwrap()), false);
    let first = recv_datagram(&sock);
    assert!(
        first.starts_with("READY=1\nSTATUS=waiting for the operator: no pool"),
        "{first}"
    );
    modefile::write_atomic(&fr.root(), &record(Decision::Operator, "still no pool")).unwrap();
    let second = recv_datagram(&sock);
    assert!(
        second.starts_with("STATUS=waiting for the operator: still no pool"),
        "{second}"
    );
    drop(svc);
}

#[test]
fn notify_supports_abstract_socket_names() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("asl-host-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    Notifier::to(format!("@{name}"))
        .notify("STATUS=hello")
        .unwrap();
    assert_eq!(recv_datagram(&sock), "STATUS=hello");
    // Without a socket, notifying is a no-op rather than an error.
    Notifier::default().notify("STATUS=x").unwrap();
}

#[test]
fn rerunning_preflight_after_the_operator_mounts_the_store_starts_local_intake() {
    let fr = FakeRoot::new();
    fr.conf("mode = local\n");
    let first = asl_host::preflight::run(&fr.root(), &fr.env(), false).unwrap();
    assert_eq!(first.decision, Decision::Operator);
    let svc = Running::start(&fr, Notifier::default(), false);
    match svc.next_status() {
        Status::Operator(reason) => assert!(reason.contains("not mounted"), "{reason}"),
        other => panic!("expected operator, got {other:?}"),
    }
    // The operator mounts the store and reruns preflight.
    fr.mounted("/mnt/asl/local", "ext4", "/dev/sdb1", "rw");
    let second = asl_host::preflight::run(&fr.root(), &fr.env(), false).unwrap();
    assert_eq!(second.decision, Decision::Local);
    let (dir, _) = svc
        .calls
        .recv_timeout(DEADLINE)
        .expect("the new decision was not noticed");
    assert_eq!(dir, fr.path().join("mnt/asl/local"));
}
