//! Helpers for the store tools' end-to-end tests: run the binary, make data, damage stores.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Runs `asl ARGS... PATHS...`.
pub fn asl(args: &[&str], paths: &[&Path]) -> Out {
    let out = crate::common::asl()
        .args(args)
        .args(paths)
        .stdin(Stdio::null())
        .output()
        .expect("run asl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run_ok(cmd: &mut Command) {
    let st = cmd.status().expect("run command");
    assert!(st.success(), "{cmd:?} failed");
}

/// Runs `asl ARGS PATHS` with `ASL_CRASH_AT=trace` and returns every named crash point it
/// passed (`sync:block#3`), in the order passed.
pub fn crash_points(args: &[&str], paths: &[&Path]) -> Vec<String> {
    let out = crate::common::asl()
        .args(args)
        .args(paths)
        .env("ASL_CRASH_AT", "trace")
        .stdin(Stdio::null())
        .output()
        .expect("run asl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("asl-crash-point "))
        .map(str::to_string)
        .collect()
}

/// Runs `asl ARGS PATHS` with `ASL_CRASH_AT=POINT` and asserts that it died of SIGKILL at
/// exactly that point.
pub fn run_until_crash_point(args: &[&str], paths: &[&Path], point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = crate::common::asl()
        .args(args)
        .args(paths)
        .env("ASL_CRASH_AT", point)
        .stdin(Stdio::null())
        .output()
        .expect("run asl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{args:?} did not die at {point}: {}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(&format!(
            "asl-crash-point {point}: killing the process here"
        )),
        "{stderr}"
    );
}

/// Some of `points`: the first and last of each kind, and every `step`-th in between, so a
/// test covers every kind of operation without running once per write.
pub fn spread(points: &[String], step: usize) -> Vec<String> {
    let mut by_kind: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for p in points {
        by_kind
            .entry(p.split('#').next().unwrap_or(p))
            .or_default()
            .push(p);
    }
    let mut out = Vec::new();
    for list in by_kind.values() {
        for (i, p) in list.iter().enumerate() {
            if i == 0 || i + 1 == list.len() || i % step == 0 {
                out.push((*p).clone());
            }
        }
    }
    out
}

/// `n` files `f0..f{n-1}` of pseudo-random bytes.
pub fn make_files(dir: &Path, n: usize, size: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("f{i}")),
            asl_fs::testing::pseudo_random(seed * 1000 + i as u64, size),
        )
        .unwrap();
    }
}

pub fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(p) else {
        return out;
    };
    for e in rd {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

pub fn dir_size(p: &Path) -> u64 {
    files_under(p)
        .iter()
        .map(|f| std::fs::symlink_metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

pub fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// Every file's path, length and content hash (the lock file, which only names its last
/// holder, left out).
pub fn tree_fingerprint(p: &Path) -> BTreeMap<PathBuf, (u64, String)> {
    files_under(p)
        .into_iter()
        .filter(|f| !f.starts_with(p.join("locks")))
        .map(|f| {
            let b = std::fs::read(&f).unwrap_or_default();
            let h = asl_store::HashAlgo::Blake3.digest(&b).to_string();
            (f, (b.len() as u64, h))
        })
        .collect()
}

pub fn snapshot_ids(store: &Path) -> Vec<u64> {
    let out = asl(&["admin", "snapshots", "--json", "--store"], &[store]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}
