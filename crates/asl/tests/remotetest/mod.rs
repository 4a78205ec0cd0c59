//! Helpers of the asl-server end-to-end tests (remote_cli, remote_garage): a server process
//! that dies with the test, free loopback ports, client keys and JSON output. Included as
//! `mod remotetest;` next to `mod common;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::common;

/// A running asl-server, killed (SIGKILL) and waited for when dropped.
pub struct ServerProc {
    pub child: Option<Child>,
    pub port: u16,
}

impl ServerProc {
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `asl server --config CONF` (listening on `port`, as CONF says) with `env`; Ok once
/// it prints its "listening" line, Err(what it printed) when it ends first. Panics when it
/// does neither within `wait`.
pub fn spawn_server(
    conf: &Path,
    port: u16,
    env: &[(&str, &str)],
    wait: Duration,
) -> Result<ServerProc, String> {
    let mut cmd = common::asl();
    cmd.args(["server", "--config"])
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start asl-server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut proc = ServerProc {
        child: Some(child),
        port,
    };
    let deadline = Instant::now() + wait;
    let mut said = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.contains("listening on") => return Ok(proc),
            Ok(l) => said.push(l),
            Err(RecvTimeoutError::Disconnected) => {
                proc.kill();
                return Err(said.join("\n"));
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("asl-server neither listened nor ended in {wait:?}: {said:?}")
            }
        }
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `asl ARGS` with no standard input.
pub fn asl_out(args: &[&str]) -> std::process::Output {
    common::run(common::asl().args(args).stdin(Stdio::null()))
}

pub fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", common::transcript(o)))
}

/// Takes `src` into the local store `store` and returns the snapshot's root: what a remote
/// intake of the same tree must give.
pub fn local_intake_root(store: &Path, src: &Path) -> String {
    let o = asl_out(&[
        "intake",
        "--json",
        "--store",
        store.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::transcript(&o));
    json(&o)["root"].as_str().unwrap().to_string()
}

/// A new client key at `dir/client.key`, and its public half as server.conf wants it.
pub fn client_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("client.key");
    let out = asl_out(&["key", "generate", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::transcript(&out));
    let show = asl_out(&["key", "show", "--json", key.to_str().unwrap()]);
    let public = json(&show)["public"].as_str().unwrap().to_string();
    (key, public)
}
