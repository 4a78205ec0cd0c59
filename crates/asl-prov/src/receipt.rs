//! The receipt (PER) and edge formats; see docs/RECEIPT.md.
//!
//! A receipt is canonical JSON (see [`crate::canon`]) stored as a [`TypeTag::RECEIPT`]
//! artifact. Its `action` part holds only what defines the step (argv, cwd, allow-listed
//! environment, declared input references); `action_digest` is the hash of that part alone,
//! so two runs of the same step have the same action digest however their timings,
//! pids or observations differ.

use std::collections::BTreeMap;

use asl_store::{Reference, TypeTag};
use serde::{Deserialize, Serialize};

use crate::trace::{Access, ProcessRecord};

pub const RECEIPT_FORMAT: &str = "asl-per/1";
pub const EDGE_FORMAT: &str = "asl-tgk-edge/1";

/// A declared input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The path as given on the command line.
    pub path: String,
    /// `file` (content artifact) or `tree` (directory tree artifact).
    pub kind: String,
    pub reference: String,
    pub size: u64,
    /// Permission bits of a file (`st_mode & 0o7777`); trees carry their own.
    #[serde(default)]
    pub mode: u32,
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
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub umask: u32,
    pub host: String,
    pub kernel: String,
    pub arch: String,
    pub distro: String,
    /// Every environment variable name.
    pub env_names: Vec<String>,
    /// Variables not on the allow-list: name → hash of the value.
    pub env_hashed: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rusage {
    pub user_ms: u64,
    pub sys_ms: u64,
    pub max_rss_kib: u64,
}

/// The outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Exit code, when the command exited.
    pub exit_code: Option<i32>,
    /// Terminating signal, when it was killed.
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub success: bool,
    pub stdout: Blob,
    pub stderr: Blob,
    pub rusage: Rusage,
    pub processes: Vec<ProcessRecord>,
    /// The program argv[0] resolved to.
    pub program: String,
}

/// A file import (`asl-capture --file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileImport {
    pub source: String,
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Content digest read before storing, and again after.
    pub digest_before: String,
    pub digest_after: String,
    pub sha256: String,
    pub xattr_names: Vec<String>,
    /// The file changed while it was being imported.
    pub changed_during_import: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// `fanotify`, `ptrace` or `none`.
    pub mode: String,
    /// What the mechanism cannot see.
    pub blind_spots: Vec<String>,
    /// What went missing in this very run.
    pub gaps: Vec<String>,
    /// Deduplicated accesses, sorted by path then operation.
    pub accesses: Vec<Access>,
    /// Files read (or executed) that are not under a declared input and were not produced
    /// by the command itself (pseudo file systems excluded).
    pub undeclared_inputs: Vec<String>,
    /// Files written, created, deleted or renamed outside the declared outputs (files the
    /// command created and deleted again are temporaries and not listed).
    pub undeclared_outputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub started_at: String,
    pub finished_at: String,
    pub hash_inputs_ms: u64,
    pub run_ms: u64,
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
    pub format: String,
    /// `command` or `file`.
    pub kind: String,
    pub action: Action,
    pub action_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileImport>,
    pub outputs: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_outputs: Vec<String>,
    pub observed: Observation,
    pub context: Context,
    pub timing: Timing,
    pub tool: ToolInfo,
}

impl Receipt {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        crate::canon::encode(self)
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
    /// `capture` (a command) or `import` (a file import).
    #[serde(rename = "type")]
    pub edge_type: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub payload: String,
    /// Signature artifacts over the receipt (PER/SIGNATURE/1).
    #[serde(default)]
    pub signatures: Vec<String>,
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
pub fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    match tag {
        TypeTag::RECEIPT => Receipt::decode(bytes)?.references(),
        TypeTag::EDGE => Edge::decode(bytes)?.references(),
        _ => Ok(Vec::new()),
    }
}
