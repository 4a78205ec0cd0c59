//! The store on [`S3Storage`] against moto's S3 server (`moto_server`, started by each test
//! on a free loopback port and killed after): the fast tier, an engine that honours
//! conditional writes. The distributed engine (Garage) is tested end to end in
//! `crates/asl/tests/remote_garage.rs`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asl_remote::s3::client::{Client, Cond};
use asl_remote::s3::{Credentials, Endpoint, LeaseParams, S3Location, S3Storage};
use asl_store::storage::Storage;
use asl_store::{ArtifactRead, ArtifactWrite, Layout, Store, StoreError, TypeTag, Writer};

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts moto_server and creates bucket `asl`.
fn moto() -> Moto {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "this test needs moto_server (moto 5.2.1): `bash scripts/install-deps.sh` installs it",
        );
    let m = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Client::new(endpoint(port))
        .put("", b"", Cond::None)
        .unwrap();
    m
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        url: format!("http://127.0.0.1:{port}"),
        bucket: "asl".into(),
        creds: Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
            region: "us-east-1".into(),
        },
    }
}

fn storage(m: &Moto, prefix: &str) -> Arc<S3Storage> {
    let loc = S3Location {
        endpoint: endpoint(m.port),
        prefix: prefix.into(),
        retry: Duration::from_secs(60),
        lease: LeaseParams {
            ttl: Duration::from_secs(6),
            settle: Duration::from_millis(500),
        },
    };
    Arc::new(S3Storage::connect(&loc).unwrap())
}

fn layout(s: &Arc<S3Storage>) -> Layout {
    let root = s.root().to_path_buf();
    Layout::on(s.clone(), &root)
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_store_in_a_bucket_commits_reopens_and_reads_back() {
    let m = moto();
    let s = storage(&m, "stores/a");
    assert!(s.conditional_writes(), "moto honours If-None-Match");
    let data: Vec<Vec<u8>> = (0..6).map(|i| bytes(i, 700_000)).collect();
    let mut refs = Vec::new();
    {
        let mut w = Writer::open_or_init_in(layout(&s), &Default::default()).unwrap();
        for d in &data {
            refs.push(w.put_bytes(d, TypeTag::BYTES).unwrap().reference);
        }
        w.commit(Some(refs[0]), Default::default()).unwrap();
    }
    // A new process's view: another storage instance, nothing cached.
    let again = storage(&m, "stores/a");
    let store = Store::open_in(layout(&again)).unwrap();
    assert_eq!(store.snapshots().len(), 1);
    for (r, d) in refs.iter().zip(&data) {
        assert_eq!(&store.reader().read_all(r).unwrap(), d);
    }
    // A second writer continues the same log.
    {
        let mut w = Writer::open_in(layout(&again)).unwrap();
        let r = w.put_bytes(b"second", TypeTag::BYTES).unwrap().reference;
        w.commit(Some(r), Default::default()).unwrap();
    }
    let store = Store::open_in(layout(&storage(&m, "stores/a"))).unwrap();
    assert_eq!(store.snapshots().len(), 2);
    // The store's keys are under its prefix only, as FORMAT.md section 14 says.
    let keys = Client::new(endpoint(m.port)).list_all("").unwrap();
    assert!(
        keys.iter().all(|k| k.key.starts_with("stores/a/")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.key == "stores/a/log/asl.log.parts/00000000000000000000")
    );
    assert!(keys.iter().any(|k| k.key == "stores/a/config"));
}

#[test]
fn a_second_writer_is_refused_while_the_lease_is_held() {
    let m = moto();
    let s1 = storage(&m, "");
    let w = Writer::open_or_init_in(layout(&s1), &Default::default()).unwrap();
    let s2 = storage(&m, "");
    match Writer::open_in(layout(&s2)) {
        Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
        Err(e) => panic!("not refused as locked: {e}"),
        Ok(_) => panic!("a second writer opened"),
    }
    drop(w);
    // Released on drop: the next writer gets it at once.
    Writer::open_in(layout(&s2)).unwrap();
}

#[test]
fn two_appenders_racing_for_one_log_position_cannot_both_land() {
    let m = moto();
    let s = storage(&m, "race");
    drop(Writer::open_or_init_in(layout(&s), &Default::default()).unwrap());
    let log = layout(&s).log();
    let other = storage(&m, "race");
    let mut a = s.open_append(&log).unwrap();
    let mut b = other.open_append(&log).unwrap();
    a.write_all(b"from a").unwrap();
    a.sync().unwrap();
    b.write_all(b"from b").unwrap();
    let e = b.sync().unwrap_err();
    assert!(e.to_string().contains("another writer"), "{e}");
    let bytes = storage(&m, "race").read(&log).unwrap();
    assert!(bytes.ends_with(b"from a"));
    assert!(!bytes.windows(6).any(|w| w == b"from b"));
}

#[test]
fn paths_outside_the_store_are_refused() {
    let m = moto();
    let s = storage(&m, "p");
    let e = s.read(Path::new("/etc/passwd")).unwrap_err();
    assert!(e.to_string().contains("outside the store"), "{e}");
}

/// What happens on an engine without conditional writes when the timing assumption fails
/// and another server overwrites the lease: the holder's next renewal sees a stranger's
/// record, and from then on every write of the holder is refused.
#[test]
fn a_writer_whose_lease_was_taken_over_stops_writing() {
    let m = moto();
    let s = storage(&m, "fence");
    let mut w = Writer::open_or_init_in(layout(&s), &Default::default()).unwrap();
    let c = Client::new(endpoint(m.port));
    let key = "fence/locks/writer.lock";
    let (body, _) = c.get(key).unwrap().expect("the lease object");
    let mut rec: serde_json::Value = serde_json::from_slice(&body).unwrap();
    rec["nonce"] = "another-server".into();
    rec["holder"] = "1 elsewhere".into();
    rec["token"] = (rec["token"].as_u64().unwrap() + 1).into();
    c.put(key, &serde_json::to_vec(&rec).unwrap(), Cond::None)
        .unwrap();
    // The holder learns it at its next renewal (a third of the 6 s period); until then its
    // commits still land, after it none does.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    let err = loop {
        n += 1;
        let step = w
            .put_bytes(&bytes(100 + n, 1000), TypeTag::BYTES)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                w.commit(Some(p.reference), Default::default())
                    .map_err(|e| e.to_string())
            });
        match step {
            Err(e) => break e,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "the writer kept committing for a minute after losing its lease"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(err.to_string().contains("lease"), "{err}");
}
