//! Replaying a receipt: materialise its declared inputs from the store into a scratch
//! directory, run the recorded argv there (untraced), and compare each declared output with
//! the recorded one — file by file for trees, so a mismatch names the differing file.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use asl_store::{ArtifactRead, HashAlgo, Reference, Store};
use serde::Serialize;

use crate::error::ProvError;
use crate::launch::{self, RunSpec};
use crate::receipt::{Receipt, parse_ref};
use crate::trace::TraceMode;

#[derive(Debug, Clone, Serialize)]
pub struct OutputCheck {
    /// The output path (a file inside a tree output as `tree/inner/path`).
    pub path: String,
    pub recorded: String,
    pub replayed: Option<String>,
    pub matches: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub receipt: String,
    pub exit_status: i32,
    pub recorded_exit_status: i32,
    pub outputs: Vec<OutputCheck>,
    pub matches: bool,
    /// The scratch directory, when kept.
    pub scratch: Option<String>,
}

fn relative(p: &str) -> Result<PathBuf, ProvError> {
    let path = Path::new(p);
    if path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ProvError::Usage(format!(
            "cannot replay: path {p} is not below the working directory, so it cannot be \
             relocated into a scratch tree (capture with paths relative to the working directory)"
        )));
    }
    Ok(path.to_path_buf())
}

fn hash_file(algo: HashAlgo, p: &Path) -> std::io::Result<Reference> {
    let mut f = std::fs::File::open(p)?;
    let mut h = algo.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// Files of a directory on disk: relative path → content reference.
fn dir_files(algo: HashAlgo, root: &Path) -> BTreeMap<String, Reference> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let (Ok(rel), Ok(r)) = (p.strip_prefix(root), hash_file(algo, &p))
            {
                out.insert(rel.to_string_lossy().into_owned(), r);
            }
        }
    }
    out
}

pub fn replay(
    store: &Store,
    receipt_ref: &Reference,
    keep: bool,
) -> Result<ReplayReport, ProvError> {
    let reader = store.reader();
    let algo = store.config().algo();
    let receipt =
        Receipt::decode(&reader.read_all(receipt_ref)?).map_err(|e| ProvError::Decode {
            what: receipt_ref.to_string(),
            kind: "receipt",
            reason: e,
        })?;
    if receipt.run.is_none() {
        return Err(ProvError::Usage(format!(
            "{receipt_ref} records a file import, not a command: there is nothing to replay"
        )));
    }
    // Check every path before touching the disk.
    for f in receipt.action.inputs.iter().chain(&receipt.outputs) {
        relative(&f.path)?;
    }
    let scratch = tempfile::Builder::new()
        .prefix("asl-replay-")
        .tempdir()
        .map_err(|e| ProvError::Os("creating the scratch directory".into(), e))?;
    let root = scratch.path();
    for i in &receipt.action.inputs {
        let target = root.join(relative(&i.path)?);
        let r = parse_ref(&i.reference).map_err(ProvError::Fs)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ProvError::Os(format!("creating {}", parent.display()), e))?;
        }
        if i.kind == "tree" {
            asl_fs::restore(
                &reader,
                &r,
                None,
                &target,
                &asl_fs::RestoreOptions::default(),
            )
            .map_err(|e| ProvError::Fs(format!("restoring input {}: {e}", i.path)))?;
        } else {
            let mut f = std::fs::File::create(&target)
                .map_err(|e| ProvError::Os(format!("creating {}", target.display()), e))?;
            reader.read_to(&r, &mut f)?;
            if i.mode != 0 {
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(i.mode));
            }
        }
    }
    for o in &receipt.outputs {
        if let Some(parent) = root.join(relative(&o.path)?).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let argv = &receipt.action.argv;
    let program = launch::resolve_program(&argv[0], root)?;
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| ProvError::Os("opening /dev/null".into(), e))?;
    let outcome = launch::run(
        &RunSpec {
            program: &program,
            argv,
            cwd: root,
            stdout: &devnull,
            stderr: &devnull,
            observer: Default::default(),
        },
        TraceMode::None,
    )?;
    let (code, sig) = crate::trace::split_status(outcome.status);
    let exit_status = code.unwrap_or_else(|| 128 + sig.unwrap_or(0));
    let mut checks = Vec::new();
    for o in &receipt.outputs {
        let recorded = parse_ref(&o.reference).map_err(ProvError::Fs)?;
        let path = root.join(relative(&o.path)?);
        if o.kind == "tree" {
            let want = crate::stored::tree_files(&reader, recorded)?;
            let got = if path.is_dir() {
                dir_files(algo, &path)
            } else {
                BTreeMap::new()
            };
            let names: std::collections::BTreeSet<&String> =
                want.keys().chain(got.keys()).collect();
            for n in names {
                let (w, g) = (want.get(n), got.get(n));
                checks.push(OutputCheck {
                    path: format!("{}/{n}", o.path.trim_end_matches('/')),
                    recorded: w.map(|r| r.to_string()).unwrap_or_else(|| "absent".into()),
                    replayed: g.map(|r| r.to_string()),
                    matches: w.is_some() && w == g,
                });
            }
        } else {
            let got = hash_file(algo, &path).ok();
            checks.push(OutputCheck {
                path: o.path.clone(),
                recorded: recorded.to_string(),
                replayed: got.map(|r| r.to_string()),
                matches: got == Some(recorded),
            });
        }
    }
    let matches = checks.iter().all(|c| c.matches) && exit_status == receipt.exit_status();
    let kept = keep.then(|| scratch.keep().to_string_lossy().into_owned());
    Ok(ReplayReport {
        receipt: receipt_ref.to_string(),
        exit_status,
        recorded_exit_status: receipt.exit_status(),
        outputs: checks,
        matches,
        scratch: kept,
    })
}
