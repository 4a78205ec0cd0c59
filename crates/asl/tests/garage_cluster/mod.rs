//! A real Garage cluster for tests: three `garage server` processes on loopback, replication
//! factor 3 (or 1, [`Garage::start_with`]), one bucket and one key. Everything lives in a temporary directory and every
//! process is killed when the cluster is dropped, also when the test fails.
//!
//! The binary is `$ASL_GARAGE`, else `/var/cache/asl-tools/bin/garage` (where
//! `scripts/install-garage.sh` builds it), else `garage` on PATH. Without it the test fails
//! and says how to get it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "asl-test";
pub const REGION: &str = "garage";

struct Node {
    conf: PathBuf,
    data: PathBuf,
    rpc: u16,
    s3: u16,
    id: String,
    child: Option<Child>,
}

pub struct Garage {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    nodes: Vec<Node>,
    pub access_key: String,
    pub secret_key: String,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap();
    hex::encode(b)
}

/// The garage binary, or a failure that says how to get one.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ASL_GARAGE") {
        return PathBuf::from(p);
    }
    let cached = Path::new("/var/cache/asl-tools/bin/garage");
    if cached.exists() {
        return cached.to_path_buf();
    }
    if let Ok(o) = Command::new("garage").arg("--version").output()
        && o.status.success()
    {
        return PathBuf::from("garage");
    }
    panic!(
        "this test needs the Garage S3 engine (garage 2.5.0), which is not installed: run \
         `bash scripts/install-garage.sh` (builds it into /var/cache/asl-tools, about 18 \
         minutes on 2 cores) or set ASL_GARAGE to a garage binary"
    );
}

impl Garage {
    /// Starts three nodes, connects them, applies a layout with replication factor `rf` (1, 2
    /// or 3; with 1, every object's blocks live on one node only, so losing a node's disk loses
    /// data), and makes the bucket and a key that may read and write it.
    pub fn start_with(rf: usize) -> Garage {
        assert!((1..=3).contains(&rf), "replication factor {rf} on 3 nodes");
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        let secret = random_hex(32);
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let base = dir.path().join(format!("n{i}"));
            let (rpc, s3, admin) = (free_port(), free_port(), free_port());
            std::fs::create_dir_all(&base).unwrap();
            let conf = base.join("garage.toml");
            let data = base.join("data");
            std::fs::write(
                &conf,
                format!(
                    "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = {rf}\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                     [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\n[admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"{token}\"\n",
                    meta = base.join("meta").display(),
                    data = data.display(),
                    token = random_hex(24),
                ),
            )
            .unwrap();
            nodes.push(Node {
                conf,
                data,
                rpc,
                s3,
                id: String::new(),
                child: None,
            });
        }
        let mut g = Garage {
            dir,
            bin,
            nodes,
            access_key: String::new(),
            secret_key: String::new(),
        };
        for i in 0..3 {
            g.start_node(i);
        }
        for i in 0..3 {
            let out = g.cli_retry(i, &["node", "id", "-q"]);
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            g.nodes[i].id = id.split('@').next().unwrap().to_string();
        }
        for i in 1..3 {
            let addr = format!("{}@127.0.0.1:{}", g.nodes[i].id, g.nodes[i].rpc);
            g.cli_retry(0, &["node", "connect", &addr]);
        }
        for i in 0..3 {
            let id = g.nodes[i].id.clone();
            let zone = format!("dc{}", i + 1);
            g.cli_retry(0, &["layout", "assign", "-z", &zone, "-c", "1G", &id]);
        }
        g.cli_retry(0, &["layout", "apply", "--version", "1"]);
        g.cli_retry(0, &["bucket", "create", BUCKET]);
        g.cli_retry(0, &["key", "create", "asl-key"]);
        g.cli_retry(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "asl-key",
            ],
        );
        let info = g.cli_retry(0, &["key", "info", "asl-key", "--show-secret"]);
        let text = String::from_utf8_lossy(&info.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.trim_start().to_lowercase().starts_with(name))
                .and_then(|l| l.split_whitespace().last())
                .unwrap_or_else(|| panic!("no '{name}' in `garage key info`:\n{text}"))
                .to_string()
        };
        g.access_key = field("key id");
        g.secret_key = field("secret key");
        g
    }

    /// The S3 endpoint of node `i` (0-based).
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3)
    }

    /// A credentials file for asl-server.
    pub fn credentials_file(&self) -> PathBuf {
        let p = self.dir.path().join("asl.cred");
        std::fs::write(
            &p,
            format!(
                "access_key = {}\nsecret_key = {}\n",
                self.access_key, self.secret_key
            ),
        )
        .unwrap();
        p
    }

    pub fn start_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.conf.with_file_name("server.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&n.conf)
            .arg("server")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage server");
        n.child = Some(child);
    }

    /// Kills node `i` (SIGKILL) and waits for it.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops node `i` and deletes its data directory (every block it held); it stays down.
    /// (Started again on an emptied data directory, Garage 2.5.0 did not serve S3 within a
    /// minute in our runs; that is not what these tests are about.)
    pub fn wipe_node_data(&mut self, i: usize) {
        self.stop_node(i);
        std::fs::remove_dir_all(&self.nodes[i].data).unwrap();
    }

    /// Kills node `i`, deletes every block file of its data directory, and starts it again:
    /// its disk of blocks was lost and replaced, while its metadata (which objects exist and
    /// which blocks make them) survived. Garage's `garage-marker` file is kept, as an operator
    /// restoring the disk would: without it Garage refuses to start on the directory. Returns
    /// once node 0 sees all three nodes healthy.
    pub fn lose_node_blocks(&mut self, i: usize) {
        self.stop_node(i);
        let data = self.nodes[i].data.clone();
        for e in std::fs::read_dir(&data).unwrap() {
            let e = e.unwrap();
            if e.file_name() == "garage-marker" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                std::fs::remove_dir_all(e.path()).unwrap();
            } else {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        self.start_node(i);
        self.wait_healthy();
    }

    /// Waits until node 0 reports no failed node (for up to a minute).
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.cli(0, &["status"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && !text.contains("FAILED") && !text.contains("N/A") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The bytes of block data node `i` holds on disk.
    pub fn data_bytes(&self, i: usize) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p).map_or(0, |rd| {
                rd.filter_map(Result::ok)
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&e.path()),
                        _ => e.metadata().map_or(0, |m| m.len()),
                    })
                    .sum()
            })
        }
        walk(&self.nodes[i].data)
    }

    fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run garage")
    }

    /// Runs a `garage` command against node `i` until it succeeds (a node that has just
    /// started, or a layout just applied, answers errors for a moment), for up to a minute.
    fn cli_retry(&self, i: usize, args: &[&str]) -> Output {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.cli(i, args);
            if out.status.success() {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?} kept failing: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }
}
