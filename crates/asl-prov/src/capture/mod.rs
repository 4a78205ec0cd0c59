//! Capturing a command or a file import into a store: inputs, run, outputs, receipt, edge,
//! one snapshot.
//!
//! Order matters for "nothing half-done": everything that can be refused (no store, command
//! not found, unreadable input, bad key) is checked before the command runs, and nothing is
//! visible before the final commit.
//!
//! This module runs the command and assembles and commits the receipt; `host` gathers the
//! facts about the host, `access` classifies what the command did against what was
//! declared, `declared` stores the declared inputs and outputs, and `file` imports a
//! single file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use asl_store::{ArtifactWrite, Reference, SnapshotMeta, TypeTag, Writer};

use crate::error::ProvError;
use crate::launch::{self, RunSpec};
use crate::receipt::*;
use crate::sign::{Key, PerSignature};
use crate::trace::{self, TraceMode};

mod access;
mod declared;
mod file;
mod host;

pub use access::summarise;
use declared::put_path;
pub use file::capture_file;
pub use host::ENV_ALLOW;
use host::context;

/// What to capture.
pub struct CaptureOptions {
    /// The command; `argv[0]` is looked up in `$PATH`.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub outputs: Vec<PathBuf>,
    pub trace: TraceMode,
    /// More variable names whose values are recorded.
    pub env_allow: Vec<String>,
    pub sign: Option<Key>,
    /// Copy the command's stdout/stderr to ours while it runs.
    pub echo: bool,
    pub label: Option<String>,
    /// zstd level of everything this capture stores; `None`: [`CAPTURE_COMPRESSION_LEVEL`].
    pub compression_level: Option<i32>,
    /// How a fanotify observer keeps out of the command's way (other modes ignore it).
    pub observer_policy: trace::ObserverPolicy,
}

/// The zstd level a capture stores at unless told otherwise. A capture sits on the critical
/// path of the build step it wraps, and storing its declared inputs is most of its cost: the
/// lowest level trades a few percent of size for markedly less CPU than the store's default.
pub const CAPTURE_COMPRESSION_LEVEL: i32 = 1;

/// The result of a capture.
pub struct Captured {
    pub receipt: Receipt,
    pub receipt_bytes: Vec<u8>,
    pub receipt_ref: Reference,
    pub edge_ref: Reference,
    pub signature: Option<(Reference, PerSignature)>,
    pub snapshot_id: u64,
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

fn now_rfc3339_ms() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// The mechanism `Auto` stands for here.
pub fn effective_mode(mode: TraceMode) -> TraceMode {
    match mode {
        TraceMode::Auto if trace::fanotify::available() => TraceMode::Fanotify,
        TraceMode::Auto if trace::ptrace::supported() => TraceMode::Ptrace,
        TraceMode::Auto => TraceMode::None,
        m => m,
    }
}

/// Copies everything from `r` to a file and, optionally, to one of our own streams.
fn tee(
    mut r: std::fs::File,
    mut file: std::fs::File,
    echo: Option<i32>,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return file.flush(),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&buf[..n])?;
            match echo {
                Some(1) => {
                    let _ = std::io::stdout().write_all(&buf[..n]);
                }
                Some(_) => {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                }
                None => {}
            }
        }
    })
}

fn os_pipe() -> Result<(std::fs::File, std::fs::File), ProvError> {
    let (r, w) = crate::child::pipe()?;
    Ok((r.into(), w.into()))
}

/// The id and logseq of the store's newest snapshot, (0, 0) when there is none: what a
/// receipt signature binds the receipt to.
fn latest_snapshot(writer: &Writer) -> (u64, u64) {
    writer
        .latest_snapshot()
        .map(|s| (s.id, s.logseq))
        .unwrap_or((0, 0))
}

/// The capture's writer: open already, or being opened on another thread.
enum Opening {
    Ready(Box<Writer>),
    Reading(OpeningThread),
}

impl Opening {
    fn finish(self) -> Result<Writer, String> {
        match self {
            Opening::Ready(w) => Ok(*w),
            Opening::Reading(t) => t.join(),
        }
    }
}

/// The thread opening the writer. A capture that fails before it needs the writer (the
/// program cannot be executed, say) still waits for it when this is dropped: the writer holds
/// the store's lock, and a detached thread would hold it past the capture's return, refusing
/// the caller's next writer.
struct OpeningThread(Option<std::thread::JoinHandle<asl_store::Result<Writer>>>);

impl OpeningThread {
    fn join(mut self) -> Result<Writer, String> {
        match self.0.take().map(|h| h.join()) {
            Some(Ok(r)) => r.map_err(|e| e.to_string()),
            Some(Err(_)) | None => Err("the thread reading the store panicked".into()),
        }
    }
}

impl Drop for OpeningThread {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// Runs and captures a command into the store at `store_dir` (which must exist).
pub fn capture(store_dir: &Path, opts: &CaptureOptions) -> Result<Captured, ProvError> {
    let started_at = now_rfc3339_ms();
    let t0 = Instant::now();
    if opts.argv.is_empty() {
        return Err(ProvError::Usage(
            "no command given: use --cmd \"...\" or -- PROGRAM ARGS...".into(),
        ));
    }
    if !store_dir.join("config").exists() {
        return Err(ProvError::NotFound(format!(
            "no store at {}: create it with `asl-init-store --store {}`",
            store_dir.display(),
            store_dir.display()
        )));
    }
    let program = launch::resolve_program(&opts.argv[0], &opts.cwd)?;
    let mode = effective_mode(opts.trace);
    if mode == TraceMode::Fanotify && !trace::fanotify::available() {
        return Err(ProvError::Usage(
            "--trace fanotify needs root (CAP_SYS_ADMIN); use --trace ptrace or auto".into(),
        ));
    }
    if mode == TraceMode::Ptrace && !trace::ptrace::supported() {
        return Err(ProvError::Usage(
            "--trace ptrace is only supported on x86_64; use --trace none".into(),
        ));
    }
    let level = opts.compression_level.unwrap_or(CAPTURE_COMPRESSION_LEVEL);
    if !asl_store::config::ZSTD_LEVELS.contains(&level) {
        return Err(asl_store::StoreError::BadCompressionLevel(level).into());
    }
    // The lock first: another writer may hold it, and then nothing must run.
    let locked = Writer::lock(store_dir)?;
    let algo = locked.config().algo();
    let cache_dir = locked.layout().cache();
    let domain_id = locked.config().domain_id;
    // The log and index are read before the run when declared inputs are to be stored (their
    // state as the command found it), and otherwise on another thread while the command
    // runs, so that reading a store with many captures does not add to the capture's time.
    let mut inputs = Vec::new();
    let opening = if opts.inputs.is_empty() {
        Opening::Reading(OpeningThread(Some(std::thread::spawn(move || {
            locked.open()
        }))))
    } else {
        let mut writer = locked.open()?;
        writer.set_compression_level(level)?;
        for p in &opts.inputs {
            let full = opts.cwd.join(p);
            let mut r = put_path(&writer, &cache_dir, &full).map_err(|e| ProvError::Input {
                path: p.clone(),
                source: e,
            })?;
            r.path = p.to_string_lossy().into_owned();
            inputs.push(r);
        }
        Opening::Ready(Box::new(writer))
    };
    let hash_inputs_ms = ms(t0.elapsed());

    let (ctx, env) = context(algo, &opts.env_allow);
    let action = Action {
        argv: opts.argv.clone(),
        cwd: opts.cwd.to_string_lossy().into_owned(),
        env,
        inputs,
    };
    let action_digest = action_digest(algo, &action).map_err(ProvError::Fs)?;

    // Run, teeing stdout/stderr into anonymous temporary files.
    let out_file = tempfile::tempfile().map_err(|e| ProvError::Os("temporary file".into(), e))?;
    let err_file = tempfile::tempfile().map_err(|e| ProvError::Os("temporary file".into(), e))?;
    let (out_r, out_w) = os_pipe()?;
    let (err_r, err_w) = os_pipe()?;
    let clone = |f: &std::fs::File| f.try_clone().map_err(|e| ProvError::Os("dup".into(), e));
    let t_out = tee(out_r, clone(&out_file)?, opts.echo.then_some(1));
    let t_err = tee(err_r, clone(&err_file)?, opts.echo.then_some(2));
    let t_run = Instant::now();
    let outcome = {
        let spec = RunSpec {
            program: &program,
            argv: &opts.argv,
            cwd: &opts.cwd,
            stdout: &out_w,
            stderr: &err_w,
            observer: opts.observer_policy,
        };
        let r = launch::run(&spec, mode);
        drop(out_w);
        drop(err_w);
        r
    };
    // The tee threads end when the last writer (the whole tree) has closed the pipes.
    let tee_out = t_out.join();
    let tee_err = t_err.join();
    let outcome = outcome?;
    for t in [tee_out, tee_err] {
        match t {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ProvError::Os("saving the command's output".into(), e)),
            Err(_) => return Err(ProvError::Fs("the output copier panicked".into())),
        }
    }
    let run_ms = ms(t_run.elapsed());
    let finished_at = now_rfc3339_ms();
    let mut writer = opening.finish().map_err(|e| {
        let (code, signal) = trace::split_status(outcome.status);
        let ended = match (code, signal) {
            (Some(c), _) => format!("exited with {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            (None, None) => "ended".into(),
        };
        ProvError::Fs(format!(
            "the command ran and {ended}, but the store could not be read to record it \
             (nothing was committed): {e}"
        ))
    })?;
    writer.set_compression_level(level)?;
    let base_snapshot = latest_snapshot(&writer);

    let t_store = Instant::now();
    let blob = |mut f: std::fs::File| -> Result<Blob, ProvError> {
        use std::io::Seek;
        f.rewind()
            .map_err(|e| ProvError::Os("rewinding output".into(), e))?;
        let p = writer.put_reader(&mut f, TypeTag::BYTES)?;
        Ok(Blob {
            reference: p.reference.to_string(),
            size: p.len,
        })
    };
    let stdout = blob(out_file)?;
    let stderr = blob(err_file)?;
    let mut outputs = Vec::new();
    let mut missing_outputs = Vec::new();
    for p in &opts.outputs {
        let full = opts.cwd.join(p);
        if std::fs::symlink_metadata(&full).is_err() {
            missing_outputs.push(p.to_string_lossy().into_owned());
            continue;
        }
        let mut r = put_path(&writer, &cache_dir, &full).map_err(|e| ProvError::Output {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        r.path = p.to_string_lossy().into_owned();
        outputs.push(r);
    }
    let store_outputs_ms = ms(t_store.elapsed());

    let (exit_code, signal) = trace::split_status(outcome.status);
    let ru = &outcome.rusage;
    let tv_ms = |t: libc::timeval| (t.tv_sec as u64) * 1000 + (t.tv_usec as u64) / 1000;
    let observed = summarise(
        outcome.mode,
        outcome.accesses,
        outcome.gaps,
        &opts.cwd,
        &opts.inputs,
        &opts.outputs,
    );
    let receipt = Receipt {
        format: RECEIPT_FORMAT.into(),
        kind: "command".into(),
        action,
        action_digest,
        run: Some(RunRecord {
            exit_code,
            signal,
            core_dumped: libc::WIFSIGNALED(outcome.status) && libc::WCOREDUMP(outcome.status),
            success: exit_code == Some(0),
            stdout,
            stderr,
            rusage: Rusage {
                user_ms: tv_ms(ru.ru_utime),
                sys_ms: tv_ms(ru.ru_stime),
                max_rss_kib: ru.ru_maxrss.max(0) as u64,
            },
            processes: outcome.processes,
            program: program.to_string_lossy().into_owned(),
        }),
        file: None,
        outputs,
        missing_outputs,
        observed,
        context: ctx,
        timing: Timing {
            started_at,
            finished_at,
            hash_inputs_ms,
            run_ms,
            store_outputs_ms,
        },
        tool: tool_info(),
    };
    finish(
        &mut writer,
        receipt,
        "capture",
        opts.sign.as_ref(),
        domain_id,
        base_snapshot,
        opts.label.clone(),
    )
}

pub fn tool_info() -> ToolInfo {
    ToolInfo {
        name: "asl-capture".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Stores the receipt, its signature and the edge, and commits them as one snapshot whose
/// root is the edge.
fn finish(
    writer: &mut Writer,
    receipt: Receipt,
    edge_type: &str,
    key: Option<&Key>,
    domain_id: u32,
    base_snapshot: (u64, u64),
    label: Option<String>,
) -> Result<Captured, ProvError> {
    let algo = writer.algo();
    let receipt_bytes = receipt.encode().map_err(ProvError::Fs)?;
    let receipt_ref = writer
        .put_bytes(&receipt_bytes, TypeTag::RECEIPT)?
        .reference;
    let signature = match key {
        Some(k) => {
            let payload = crate::sign::payload_for(
                &receipt,
                &receipt_ref.to_string(),
                domain_id,
                base_snapshot,
            );
            let sig = PerSignature::create(k, algo, payload).map_err(ProvError::Fs)?;
            let bytes = crate::canon::encode(&sig).map_err(ProvError::Fs)?;
            let r = writer.put_bytes(&bytes, TypeTag::BYTES)?.reference;
            Some((r, sig))
        }
        None => None,
    };
    let edge = Edge {
        format: EDGE_FORMAT.into(),
        edge_type: edge_type.into(),
        from: receipt
            .action
            .inputs
            .iter()
            .map(|i| i.reference.clone())
            .collect(),
        to: receipt
            .outputs
            .iter()
            .map(|o| o.reference.clone())
            .collect(),
        payload: receipt_ref.to_string(),
        signatures: signature.iter().map(|(r, _)| r.to_string()).collect(),
    };
    let edge_ref = writer
        .put_bytes(&edge.encode().map_err(ProvError::Fs)?, TypeTag::EDGE)?
        .reference;
    let mut meta = SnapshotMeta::now(edge_type);
    meta.label = label;
    meta.paths = receipt.outputs.iter().map(|o| o.path.clone()).collect();
    meta.summary = serde_json::json!({
        "receipt": receipt_ref.to_string(),
        "action_digest": receipt.action_digest,
        "exit_status": receipt.exit_status(),
    });
    let commit = writer.commit(Some(edge_ref), meta)?;
    Ok(Captured {
        receipt,
        receipt_bytes,
        receipt_ref,
        edge_ref,
        signature,
        snapshot_id: commit.snapshot.id,
    })
}
