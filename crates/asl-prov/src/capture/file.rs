//! Importing one file (`asl-capture --file`): its identity, digests before and after storing
//! it, and metadata, recorded in a receipt of kind "file".

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use asl_store::{ArtifactWrite, TypeTag, Writer};

use super::host::context;
use super::{Captured, finish, latest_snapshot, ms, now_rfc3339_ms, summarise, tool_info};
use crate::error::ProvError;
use crate::receipt::*;
use crate::sign::Key;
use crate::trace::{self, TraceMode};

/// Imports one file (`asl-capture --file`): its identity, digests before and after storing
/// it, and metadata.
pub fn capture_file(
    store_dir: &Path,
    path: &Path,
    key: Option<Key>,
    label: Option<String>,
) -> Result<Captured, ProvError> {
    let started_at = now_rfc3339_ms();
    let t0 = Instant::now();
    if !store_dir.join("config").exists() {
        return Err(ProvError::NotFound(format!(
            "no store at {}: create it with `asl-init-store --store {}`",
            store_dir.display(),
            store_dir.display()
        )));
    }
    let input_err = |e: std::io::Error| ProvError::Input {
        path: path.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(input_err)?;
    if !meta.is_file() {
        return Err(ProvError::Usage(format!(
            "{} is not a regular file; --file imports one file (use --artifact-inputs for directories)",
            path.display()
        )));
    }
    let mut writer = Writer::open(store_dir)?;
    let algo = writer.algo();
    let domain_id = writer.config().domain_id;
    let base_snapshot = latest_snapshot(&writer);
    // Pass 1: digests before storing.
    let (before, sha256) = {
        use sha2::Digest;
        let mut f = std::fs::File::open(path).map_err(input_err)?;
        let mut h = algo.hasher();
        let mut s = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(input_err)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            s.update(&buf[..n]);
        }
        (h.finish(), hex::encode(s.finalize()))
    };
    let mut f = std::fs::File::open(path).map_err(input_err)?;
    let put = writer.put_reader(&mut f, TypeTag::BYTES)?;
    let after_meta = std::fs::metadata(path).map_err(input_err)?;
    let changed = put.reference != before
        || after_meta.mtime() != meta.mtime()
        || after_meta.mtime_nsec() != meta.mtime_nsec()
        || after_meta.size() != meta.size();
    let xattr_names = xattr_names(path);
    let (ctx, env) = context(algo, &[]);
    let shown = path.to_string_lossy().into_owned();
    let cwd = std::env::current_dir().unwrap_or_default();
    let action = Action {
        argv: vec!["asl-capture".into(), "--file".into(), shown.clone()],
        cwd: cwd.to_string_lossy().into_owned(),
        env,
        inputs: Vec::new(),
    };
    let action_digest = action_digest(algo, &action).map_err(ProvError::Fs)?;
    let elapsed = ms(t0.elapsed());
    let receipt = Receipt {
        format: RECEIPT_FORMAT.into(),
        kind: "file".into(),
        action,
        action_digest,
        run: None,
        file: Some(FileImport {
            source: trace::normalize(&cwd, path).to_string_lossy().into_owned(),
            dev: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            digest_before: before.to_string(),
            digest_after: put.reference.to_string(),
            sha256,
            xattr_names,
            changed_during_import: changed,
        }),
        outputs: vec![FileRef {
            path: shown,
            kind: "file".into(),
            reference: put.reference.to_string(),
            size: put.len,
            mode: meta.mode() & 0o7777,
        }],
        missing_outputs: Vec::new(),
        observed: summarise(TraceMode::None, Vec::new(), Vec::new(), &cwd, &[], &[]),
        context: ctx,
        timing: Timing {
            started_at,
            finished_at: now_rfc3339_ms(),
            hash_inputs_ms: elapsed,
            run_ms: 0,
            store_outputs_ms: 0,
        },
        tool: tool_info(),
    };
    if changed {
        return Err(ProvError::Input {
            path: path.to_path_buf(),
            source: std::io::Error::other(
                "the file changed while it was being imported; retry when it is quiet",
            ),
        });
    }
    finish(
        &mut writer,
        receipt,
        "import",
        key.as_ref(),
        domain_id,
        base_snapshot,
        label,
    )
}

fn xattr_names(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::listxattr(path, &mut buf[..]) else {
        return Vec::new();
    };
    let mut v: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    v
}
