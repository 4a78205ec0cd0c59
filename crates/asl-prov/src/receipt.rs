//! The receipt (PER) and edge formats; see docs/RECEIPT.md.
//!
//! A receipt is canonical JSON (see [`crate::canon`]) stored as a [`TypeTag::RECEIPT`]
//! artifact. Its `action` part holds only what defines the step (argv, cwd, allow-listed
//! environment, declared input references); `action_digest` is the hash of that part alone,
//! so two runs of the same step have the same action digest however their timings,
//! pids or observations differ.
//!
//! Every struct here declares its fields in canonical (sorted) key order. The encoding does
//! not depend on it, but the canonical encoder then writes a receipt in one pass instead of
//! rearranging megabytes of observed accesses; a test keeps the order.

use std::collections::BTreeMap;

use asl_store::{Reference, TypeTag};
use serde::{Deserialize, Serialize};

use crate::trace::{Access, ProcessRecord};

pub const RECEIPT_FORMAT: &str = "asl-per/1";
pub const EDGE_FORMAT: &str = "asl-tgk-edge/1";

/// A declared input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// `file` (content artifact) or `tree` (directory tree artifact).
    pub kind: String,
    /// Permission bits of a file (`st_mode & 0o7777`); trees carry their own.
    #[serde(default)]
    pub mode: u32,
    /// The path as given on the command line.
    pub path: String,
    pub reference: String,
    pub size: u64,
}

/// What defines the step. Its digest is the action digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub argv: Vec<String>,
    pub cwd: String,
    /// Values of allow-listed variables only.
    pub env: BTreeMap<String, String>,
    pub inputs: Vec<FileRef>,
}

/// A stored byte stream (stdout, stderr).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub reference: String,
    pub size: u64,
}

/// Who ran it where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub arch: String,
    pub distro: String,
    /// Variables not on the allow-list: name → hash of the value.
    pub env_hashed: BTreeMap<String, String>,
    /// Every environment variable name.
    pub env_names: Vec<String>,
    pub gid: u32,
    pub host: String,
    pub kernel: String,
    pub uid: u32,
    pub umask: u32,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rusage {
    pub max_rss_kib: u64,
    pub sys_ms: u64,
    pub user_ms: u64,
}

/// The outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub core_dumped: bool,
    /// Exit code, when the command exited.
    pub exit_code: Option<i32>,
    pub processes: Vec<ProcessRecord>,
    /// The program `argv[0]` resolved to.
    pub program: String,
    pub rusage: Rusage,
    /// Terminating signal, when it was killed.
    pub signal: Option<i32>,
    pub stderr: Blob,
    pub stdout: Blob,
    pub success: bool,
}

/// A file import (`asl-capture --file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileImport {
    /// The file changed while it was being imported.
    pub changed_during_import: bool,
    pub dev: u64,
    pub digest_after: String,
    /// Content digest read before storing, and again after.
    pub digest_before: String,
    pub gid: u32,
    pub inode: u64,
    pub mode: u32,
    pub mtime_ns: i64,
    pub sha256: String,
    pub size: u64,
    pub source: String,
    pub uid: u32,
    pub xattr_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Deduplicated accesses, sorted by path then operation.
    pub accesses: Vec<Access>,
    /// What the mechanism cannot see.
    pub blind_spots: Vec<String>,
    /// What went missing in this very run.
    pub gaps: Vec<String>,
    /// `fanotify`, `ptrace` or `none`.
    pub mode: String,
    /// Files read (or executed) that are not under a declared input and were not produced
    /// by the command itself (pseudo file systems excluded).
    pub undeclared_inputs: Vec<String>,
    /// Files written, created, deleted or renamed outside the declared outputs (files the
    /// command created and deleted again are temporaries and not listed).
    pub undeclared_outputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub finished_at: String,
    pub hash_inputs_ms: u64,
    pub run_ms: u64,
    pub started_at: String,
    pub store_outputs_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

/// An execution receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub action: Action,
    pub action_digest: String,
    pub context: Context,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileImport>,
    pub format: String,
    /// `command` or `file`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_outputs: Vec<String>,
    pub observed: Observation,
    pub outputs: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    pub timing: Timing,
    pub tool: ToolInfo,
}

impl Receipt {
    /// The references of the declared inputs, sorted: what a receipt signature binds.
    pub fn sorted_input_refs(&self) -> Vec<String> {
        let mut inputs: Vec<String> = self
            .action
            .inputs
            .iter()
            .map(|i| i.reference.clone())
            .collect();
        inputs.sort();
        inputs
    }

    pub fn encode(&self) -> Result<Vec<u8>, String> {
        crate::canon::encode_sized(self, self.encoded_size_estimate())
    }

    /// Roughly the size of the encoding, a little above it for the usual receipt: what the
    /// observation's lists take (each path plus its JSON framing) and 16 KiB for the rest.
    fn encoded_size_estimate(&self) -> usize {
        let o = &self.observed;
        let access = |a: &Access| a.path.len() + a.to.as_ref().map_or(0, |t| t.len() + 8) + 48;
        let listed = |v: &[String]| v.iter().map(|p| p.len() + 4).sum::<usize>();
        16 * 1024
            + o.accesses.iter().map(access).sum::<usize>()
            + listed(&o.undeclared_inputs)
            + listed(&o.undeclared_outputs)
    }

    pub fn decode(bytes: &[u8]) -> Result<Receipt, String> {
        let r: Receipt = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if r.format != RECEIPT_FORMAT {
            return Err(format!(
                "format '{}' is not '{RECEIPT_FORMAT}' (written by a newer asl-capture?)",
                r.format
            ));
        }
        Ok(r)
    }

    /// Every artifact the receipt names: declared inputs and outputs, stdout, stderr.
    pub fn references(&self) -> Result<Vec<Reference>, String> {
        let mut v = Vec::new();
        for f in self.action.inputs.iter().chain(&self.outputs) {
            v.push(parse_ref(&f.reference)?);
        }
        if let Some(run) = &self.run {
            v.push(parse_ref(&run.stdout.reference)?);
            v.push(parse_ref(&run.stderr.reference)?);
        }
        Ok(v)
    }

    /// Exit status to pass through: the exit code, or 128 + signal.
    pub fn exit_status(&self) -> i32 {
        match &self.run {
            Some(r) => r.exit_code.unwrap_or_else(|| 128 + r.signal.unwrap_or(0)),
            None => 0,
        }
    }
}

/// The action digest: the store's hash over the canonical encoding of the action.
pub fn action_digest(algo: asl_store::HashAlgo, action: &Action) -> Result<String, String> {
    Ok(algo.digest(&crate::canon::encode(action)?).to_string())
}

pub fn parse_ref(s: &str) -> Result<Reference, String> {
    s.parse::<Reference>().map_err(|e| e.to_string())
}

/// A TGK edge: `from` artifacts led, through the `payload` receipt, to the `to` artifacts.
/// One edge per capture; it is the capture snapshot's root, so it keeps the receipt, its
/// inputs, outputs and signatures reachable for GC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub format: String,
    pub from: Vec<String>,
    pub payload: String,
    /// Signature artifacts over the receipt (PER/SIGNATURE/1).
    #[serde(default)]
    pub signatures: Vec<String>,
    pub to: Vec<String>,
    /// `capture` (a command) or `import` (a file import).
    #[serde(rename = "type")]
    pub edge_type: String,
}

impl Edge {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        crate::canon::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Edge, String> {
        let e: Edge = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if e.format != EDGE_FORMAT {
            return Err(format!("format '{}' is not '{EDGE_FORMAT}'", e.format));
        }
        Ok(e)
    }

    pub fn references(&self) -> Result<Vec<Reference>, String> {
        self.from
            .iter()
            .chain(&self.to)
            .chain(std::iter::once(&self.payload))
            .chain(&self.signatures)
            .map(|s| parse_ref(s))
            .collect()
    }
}

/// Every reference a receipt or edge artifact names, for GC and verify. Other tags: none.
/// The references any typed artifact of the toolkit holds (a tree's entries, a receipt's or
/// an edge's artifacts), for GC, verify and a server's completeness check: the one place
/// that knows which decoder lists which type's references.
pub fn artifact_children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    match tag {
        TypeTag::TREE => asl_fs::tree_children(bytes).map_err(|e| e.to_string()),
        _ => children(tag, bytes),
    }
}

pub fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    match tag {
        TypeTag::RECEIPT => Receipt::decode(bytes)?.references(),
        TypeTag::EDGE => Edge::decode(bytes)?.references(),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Access, ProcessRecord};

    fn file_ref(path: &str) -> FileRef {
        FileRef {
            kind: "file".into(),
            mode: 0o644,
            path: path.into(),
            reference: "blake3:00".into(),
            size: 1,
        }
    }

    /// A receipt with a long observation is encoded into one buffer sized up front: no
    /// doubling, and not much more room than it needs.
    #[test]
    fn long_receipts_are_encoded_without_growing_the_buffer() {
        let mut r = sample();
        r.observed.accesses = (0..20_000)
            .map(|i| Access {
                op: if i % 3 == 0 { "write" } else { "read" }.into(),
                path: format!("/usr/share/doc/package-{i}/changelog.Debian.gz"),
                pid: 100_000 + i,
                to: (i % 1000 == 0).then(|| format!("/tmp/renamed-{i}")),
            })
            .collect();
        r.observed.undeclared_inputs = (0..10_000).map(|i| format!("/etc/input-{i}")).collect();
        let estimate = r.encoded_size_estimate();
        let bytes = r.encode().unwrap();
        assert_eq!(bytes, crate::canon::encode_sized(&r, 0).unwrap());
        assert!(
            bytes.len() <= estimate && estimate < bytes.len() + bytes.len() / 4,
            "estimate {estimate} for {} bytes",
            bytes.len()
        );
        assert_eq!(bytes.capacity(), estimate, "the buffer grew");
    }

    /// A receipt with every optional part present.
    fn sample() -> Receipt {
        let blob = Blob {
            reference: "blake3:01".into(),
            size: 2,
        };
        Receipt {
            action: Action {
                argv: vec!["cc".into()],
                cwd: "/src".into(),
                env: [("LANG".to_string(), "C".to_string())]
                    .into_iter()
                    .collect(),
                inputs: vec![file_ref("a.c")],
            },
            action_digest: "blake3:02".into(),
            context: Context {
                arch: "x86_64".into(),
                distro: "d".into(),
                env_hashed: [("K".to_string(), "h".to_string())].into_iter().collect(),
                env_names: vec!["K".into()],
                gid: 0,
                host: "h".into(),
                kernel: "k".into(),
                uid: 0,
                umask: 0o22,
                user: "root".into(),
            },
            file: Some(FileImport {
                changed_during_import: false,
                dev: 1,
                digest_after: "a".into(),
                digest_before: "b".into(),
                gid: 0,
                inode: 2,
                mode: 0o755,
                mtime_ns: -1,
                sha256: "s".into(),
                size: 3,
                source: "/f".into(),
                uid: 0,
                xattr_names: vec!["user.x".into()],
            }),
            format: RECEIPT_FORMAT.into(),
            kind: "command".into(),
            missing_outputs: vec!["gone".into()],
            observed: Observation {
                accesses: vec![Access {
                    op: "rename".into(),
                    path: "/a".into(),
                    pid: 7,
                    to: Some("/b".into()),
                }],
                blind_spots: vec!["x".into()],
                gaps: vec!["y".into()],
                mode: "ptrace".into(),
                undeclared_inputs: vec!["/i".into()],
                undeclared_outputs: vec!["/o".into()],
            },
            outputs: vec![file_ref("a.o")],
            run: Some(RunRecord {
                core_dumped: false,
                exit_code: Some(0),
                processes: vec![ProcessRecord {
                    argv: vec!["cc".into()],
                    exe: Some("/usr/bin/cc".into()),
                    exit_code: Some(0),
                    pid: 7,
                    ppid: 1,
                    signal: Some(9),
                }],
                program: "/usr/bin/cc".into(),
                rusage: Rusage {
                    max_rss_kib: 1,
                    sys_ms: 2,
                    user_ms: 3,
                },
                signal: None,
                stderr: blob.clone(),
                stdout: blob,
                success: true,
            }),
            timing: Timing {
                finished_at: "t1".into(),
                hash_inputs_ms: 1,
                run_ms: 2,
                started_at: "t0".into(),
                store_outputs_ms: 3,
            },
            tool: ToolInfo {
                name: "asl-capture".into(),
                version: "0".into(),
            },
        }
    }

    /// serde writes fields in declaration order; for these structs that order must already be
    /// the canonical one (see the module documentation).
    #[test]
    fn receipt_and_edge_fields_are_declared_in_canonical_order() {
        let receipt = sample();
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&receipt).unwrap()).unwrap(),
            String::from_utf8(receipt.encode().unwrap()).unwrap()
        );
        let edge = Edge {
            edge_type: "capture".into(),
            format: EDGE_FORMAT.into(),
            from: vec!["blake3:00".into()],
            payload: "blake3:01".into(),
            signatures: vec![],
            to: vec!["blake3:02".into()],
        };
        assert_eq!(serde_json::to_vec(&edge).unwrap(), edge.encode().unwrap());
    }
}
