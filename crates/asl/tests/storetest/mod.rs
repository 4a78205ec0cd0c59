//! Helpers for the store tools' end-to-end tests: run the binary, make data, damage stores.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::next;

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

/// Starts `asl ARGS PATHS`, SIGKILLs it after `delay` seconds; returns whether it was still
/// running when killed.
pub fn run_and_kill(args: &[&str], paths: &[&Path], delay: f64) -> bool {
    let mut child = crate::common::asl()
        .args(args)
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn asl");
    std::thread::sleep(Duration::from_secs_f64(delay));
    let running = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    running
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

/// The store as it was after the last command that returned: everything in it was fsynced
/// (the store fsyncs before a commit or a GC returns).
pub struct DurableState {
    log_len: u64,
    files: HashSet<PathBuf>,
}

impl DurableState {
    pub fn capture(store: &Path) -> DurableState {
        DurableState {
            log_len: std::fs::metadata(store.join("log/asl.log")).unwrap().len(),
            files: files_under(store).into_iter().collect(),
        }
    }

    /// Simulates a power cut after a writer was killed: every write that no fsync made
    /// durable is dropped or cut short at random. Durable means: in the state captured
    /// before the writer started, or named (directly, or as a sealed segment's block) by a
    /// log record that survives the cut (SEGMENT_SEAL, or GC_COMMIT of a commit that merged
    /// segments) — the store fsyncs a segment and its blocks before it appends the record,
    /// so those cannot be lost while the record survives.
    pub fn lose_unsynced_writes(&self, store: &Path, rng: &mut u64) {
        let log_path = store.join("log/asl.log");
        let bytes = std::fs::read(&log_path).unwrap();
        let scan = asl_store::log::scan(&bytes).unwrap();
        // Cut the log anywhere between the durable length and its current end.
        let span = bytes.len() as u64 - self.log_len;
        let cut = self.log_len + if span == 0 { 0 } else { next(rng) % (span + 1) };
        let mut new_log = bytes[..cut as usize].to_vec();
        // Records wholly inside what survives were written before the cut.
        let mut survives = cut;
        if next(rng).is_multiple_of(3) && cut < bytes.len() as u64 {
            // The file kept its new length but the unsynced sectors never reached the disk
            // and read as zeros. Disks write whole 512-byte sectors atomically, so the zeros
            // start at a sector boundary past the durable data.
            let z = cut.div_ceil(512) * 512;
            if z < bytes.len() as u64 {
                new_log = bytes.clone();
                new_log[z as usize..].fill(0);
                survives = z;
            }
        }
        std::fs::write(&log_path, &new_log).unwrap();
        let mut protected: HashSet<PathBuf> = HashSet::new();
        for rec in scan
            .records
            .iter()
            .filter(|r| r.offset + 48 + r.payload.len() as u64 <= survives)
        {
            // A commit that folds small segments into its own names it in GC_COMMIT.
            let sealed = match asl_store::records::Event::decode(rec.record_type, &rec.payload) {
                Ok(asl_store::records::Event::SegmentSeal { segment_id, .. }) => Some(segment_id),
                Ok(asl_store::records::Event::GcCommit { segment_id, .. }) if segment_id != 0 => {
                    Some(segment_id)
                }
                _ => None,
            };
            if let Some(segment_id) = sealed {
                let seg = store
                    .join("segments")
                    .join(asl_store::segment::file_name(segment_id));
                if let Ok((s, _)) =
                    asl_store::segment::Segment::decode(&std::fs::read(&seg).unwrap_or_default())
                {
                    for b in &s.blocks {
                        protected.insert(b.path(&store.join("blocks")));
                    }
                }
                protected.insert(seg);
            }
        }
        protected.insert(log_path);
        for f in files_under(store) {
            if self.files.contains(&f) || protected.contains(&f) {
                continue;
            }
            match next(rng) % 3 {
                0 => {
                    let _ = std::fs::remove_file(&f);
                }
                1 => {
                    let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                    let keep = if len == 0 { 0 } else { next(rng) % len };
                    let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                    file.set_len(keep).unwrap();
                }
                _ => {}
            }
        }
    }
}
