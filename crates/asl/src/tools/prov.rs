//! Provenance tools: `asl-capture` (run, --file, verify, export, replay), `asl-dag`, and
//! `asl-why`, `asl-used-by`, `asl-key` (the logic `asl-admin why/used-by/key` exposes).
//! Thin: parsing and printing here, everything else in `asl_prov`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use asl_prov::ProvError;
use asl_prov::capture::{CaptureOptions, Captured};
use asl_prov::graph::{self, Graph};
use asl_prov::sign::Key;
use asl_prov::trace::TraceMode;
use clap::{Args, CommandFactory, Parser, Subcommand};

use super::Tool;
use super::common::{OutputArgs, StoreArg, open_store};
use crate::exit::{Code, fail};
use crate::{out, outln};

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "asl-capture",
        command: Capture::command,
        run: capture,
    },
    Tool {
        name: "asl-dag",
        command: Dag::command,
        run: dag,
    },
    Tool {
        name: "asl-why",
        command: Why::command,
        run: why,
    },
    Tool {
        name: "asl-used-by",
        command: UsedBy::command,
        run: used_by,
    },
    Tool {
        name: "asl-key",
        command: KeyCmd::command,
        run: key,
    },
];

/// Maps a library error to the documented exit code.
fn perr(e: ProvError) -> anyhow::Error {
    let code = if e.is_integrity() {
        Code::Integrity
    } else if e.is_usage() {
        Code::Usage
    } else {
        Code::Failure
    };
    fail(code, e.to_string())
}

#[derive(Parser, Debug)]
#[command(
    name = "asl-capture",
    about = "Run a command (or import a file) and record an execution receipt",
    long_about = "Run a command under observation and record an execution receipt (PER) in the store.\n\n\
The declared inputs (--artifact-inputs) are stored before the command runs, its stdout and \
stderr while it runs (they are also shown), the declared outputs (--output) after it ends. \
The receipt records argv, cwd, the environment (names always, values of an allow-list, other \
values hashed), user, host, kernel, the process tree with exit status and resource usage, \
timings, and the file accesses the tracer observed, with the inputs read but not declared and \
the outputs written outside the declared paths. A TGK edge links inputs -> receipt -> outputs; \
all of it becomes visible as one snapshot, or not at all.\n\n\
The command's exit status is passed through (128+N when it was killed by signal N).",
    after_help = "Tracing (--trace): fanotify needs root and sees opens, writes and execs of the \
command's own process tree; ptrace works unprivileged and also sees probes of absent files, \
deletes and renames, at a higher cost; none records only what was declared. auto picks \
fanotify as root, else ptrace.\n\n\
Environment: ASL_OBSERVER_POLICY=auto|idle|batch|normal sets how the fanotify observer keeps \
out of the command's way while it runs (default auto: SCHED_IDLE when a core is idle and the \
process holds CAP_SYS_NICE, else SCHED_BATCH; a caller under any policy other than the normal \
one is left as it is).\n\n\
Exit codes: the command's own exit status; 1 capture failure, 2 usage, 3 verify found a \
problem (verify, replay mismatch).\n\n\
Examples:\n  asl-capture --store S --artifact-inputs src --output build/app -- make app\n  \
asl-capture --store S --cmd \"gcc -o hello hello.c\" --artifact-inputs hello.c --output hello --outdir per/hello\n  \
asl-capture --store S --file ./tool.sh --outdir per/overlay\n  asl-capture --store S verify latest\n  \
asl-capture --store S verify latest --dam /media/usb/asl-admission/decision.json\n  \
asl-capture --store S export latest --format slsa --sign key.json --out prov.dsse.json\n  \
asl-capture --store S replay latest"
)]
struct Capture {
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    out: OutputArgs,
    #[command(subcommand)]
    sub: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The command, run with /bin/sh -c.
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["file", "argv"])]
    cmd: Option<String>,
    /// Import one file instead of running a command (records its identity, digests before
    /// and after, metadata).
    #[arg(long, value_name = "PATH", conflicts_with = "argv")]
    file: Option<PathBuf>,
    /// A declared input (file or directory); repeatable. Stored before the run.
    #[arg(long = "artifact-inputs", visible_alias = "input", value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// A declared output (file or directory); repeatable. Stored after the run.
    #[arg(long, value_name = "PATH")]
    output: Vec<PathBuf>,
    /// Directory that receives receipt.json (the receipt's exact bytes), receipt.ref and,
    /// when signed, receipt.sig.json.
    #[arg(long, value_name = "DIR")]
    outdir: Option<PathBuf>,
    /// How file accesses are observed.
    #[arg(long, value_name = "MODE", default_value = "auto",
          value_parser = ["auto", "fanotify", "ptrace", "none"])]
    trace: String,
    /// Sign the receipt with this key (see asl-key generate; asl-key import converts a key
    /// made elsewhere).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Also record the value of this environment variable (and put it in the action digest).
    #[arg(long = "env-allow", value_name = "NAME")]
    env_allow: Vec<String>,
    /// Label for the snapshot.
    #[arg(long)]
    label: Option<String>,
    /// zstd level (1-19) of what this capture stores. Default 1: a capture runs on the build's
    /// critical path; the store's own level (asl-intake's) is usually 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=19))]
    compression_level: Option<i32>,
    /// The command as separate arguments, after `--`.
    #[arg(last = true, value_name = "ARGV")]
    argv: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Check a receipt (REF, edge, snapshot name, or a receipt.json FILE): action digest,
    /// every artifact it names, signatures.
    Verify {
        /// Receipt reference, edge reference, snapshot id or label, `latest` (the newest
        /// capture), or receipt.json path.
        target: String,
        /// Hex ed25519 public key or key file that must have signed it; repeatable.
        #[arg(long, value_name = "KEY")]
        key: Vec<String>,
        /// Also validate against a domain's DAM (an authority bundle, or the admission
        /// decision.json that carries the admitted one): a signature counts only if it is
        /// good, its key is in the DAM with role execute, and its snapshot and log position
        /// are a snapshot of this store (docs/AUTHORITY.md).
        #[arg(long, value_name = "FILE")]
        dam: Option<PathBuf>,
    },
    /// Export a receipt as an in-toto Statement with a SLSA v1 predicate (DSSE envelope), or
    /// as an in-toto link.
    Export {
        /// The receipt to export: a receipt or edge reference (b3:...), a snapshot id or
        /// label, or `latest`: the newest capture or --file import, even when an intake or
        /// another kind of snapshot came after it.
        target: String,
        #[arg(long, value_parser = ["slsa", "in-toto-link"], default_value = "slsa")]
        format: String,
        /// Sign the export with this key.
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// Step name for the in-toto link [default: the basename of the program; for a --cmd
        /// capture, of the command's first word after any NAME=value assignments].
        #[arg(long)]
        name: Option<String>,
        /// Output file [default: stdout].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Re-run a recorded command on its recorded inputs in a scratch directory and compare
    /// every output's digest.
    Replay {
        /// Receipt reference, edge reference, snapshot id or label, or `latest` (the newest
        /// capture).
        target: String,
        /// Keep the scratch directory (its path is printed).
        #[arg(long)]
        keep: bool,
    },
}

fn capture(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Capture = super::args(m)?;
    let r = &a.run;
    if a.sub.is_some()
        && (r.cmd.is_some()
            || r.file.is_some()
            || !r.argv.is_empty()
            || !r.inputs.is_empty()
            || !r.output.is_empty())
    {
        return Err(fail(
            Code::Usage,
            "verify/export/replay take no --cmd, --file, --artifact-inputs, --output or command",
        ));
    }
    match a.sub {
        Some(Sub::Verify { target, key, dam }) => {
            return verify(&a.store, &a.out, &target, &key, dam.as_deref());
        }
        Some(Sub::Export {
            target,
            format,
            sign,
            name,
            out,
        }) => return export(&a.store, &target, &format, sign, name, out),
        Some(Sub::Replay { target, keep }) => return replay(&a.store, &a.out, &target, keep),
        None => {}
    }
    let r = a.run;
    let (store_dir, _) = a.store.resolve();
    // Checked first, whatever --trace says: a misspelt value is refused before anything is
    // created or run.
    let observer_policy = asl_prov::trace::ObserverPolicy::from_env().map_err(perr)?;
    let key = r.sign.as_deref().map(Key::load).transpose().map_err(perr)?;
    if let Some(d) = &r.outdir {
        std::fs::create_dir_all(d).map_err(|e| {
            fail(
                Code::Failure,
                format!("cannot create --outdir {}: {e}", d.display()),
            )
        })?;
    }
    let captured = if let Some(f) = &r.file {
        if !r.inputs.is_empty() || !r.output.is_empty() {
            return Err(fail(
                Code::Usage,
                "--file imports one file; it takes no --artifact-inputs or --output",
            ));
        }
        asl_prov::capture::capture_file(&store_dir, f, key, r.label).map_err(perr)?
    } else {
        let argv = match (r.cmd, r.argv.is_empty()) {
            (Some(c), _) => vec!["/bin/sh".to_string(), "-c".to_string(), c],
            (None, false) => r.argv,
            (None, true) => {
                return Err(fail(
                    Code::Usage,
                    "nothing to capture: give --cmd \"COMMAND\", -- PROGRAM ARGS..., or --file PATH",
                ));
            }
        };
        let cwd = std::env::current_dir()
            .map_err(|e| fail(Code::Failure, format!("current directory: {e}")))?;
        let opts = CaptureOptions {
            argv,
            cwd,
            inputs: r.inputs,
            outputs: r.output,
            trace: TraceMode::parse(&r.trace).unwrap_or(TraceMode::Auto),
            env_allow: r.env_allow,
            sign: key,
            echo: !a.out.json,
            label: r.label,
            compression_level: r.compression_level,
            observer_policy,
        };
        asl_prov::capture::capture(&store_dir, &opts).map_err(perr)?
    };
    if let Some(d) = &r.outdir {
        write_outdir(d, &captured)?;
    }
    report(&a.out, &captured)?;
    let status = captured.receipt.exit_status();
    // The process ends here: freeing a file-heavy receipt (~10^5 strings) one by one would
    // only delay the exit status the caller is waiting for.
    std::mem::forget(captured);
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}

fn write_outdir(d: &std::path::Path, c: &Captured) -> anyhow::Result<()> {
    let w = |name: &str, bytes: &[u8]| {
        std::fs::write(d.join(name), bytes).map_err(|e| {
            fail(
                Code::Failure,
                format!(
                    "writing {}: {e} (the receipt itself is committed as {})",
                    d.join(name).display(),
                    c.receipt_ref
                ),
            )
        })
    };
    w("receipt.json", &c.receipt_bytes)?;
    w("receipt.ref", format!("{}\n", c.receipt_ref).as_bytes())?;
    if let Some((_, sig)) = &c.signature {
        let bytes = asl_prov::canon::encode(sig).map_err(|e| fail(Code::Failure, e))?;
        w("receipt.sig.json", &bytes)?;
    }
    Ok(())
}

fn report(out: &OutputArgs, c: &Captured) -> std::io::Result<()> {
    let r = &c.receipt;
    let o = &r.observed;
    if out.json {
        let v = serde_json::json!({
            "receipt": c.receipt_ref.to_string(),
            "edge": c.edge_ref.to_string(),
            "snapshot": c.snapshot_id,
            "action_digest": r.action_digest,
            "exit_status": r.exit_status(),
            "trace": o.mode,
            "outputs": r.outputs,
            "missing_outputs": r.missing_outputs,
            "undeclared_inputs": o.undeclared_inputs,
            "undeclared_outputs": o.undeclared_outputs,
            "signed": c.signature.is_some(),
        });
        return outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    if out.quiet {
        return Ok(());
    }
    // Our own report goes to stderr: stdout belongs to the command.
    let mut e = std::io::stderr().lock();
    let _ = writeln!(
        e,
        "asl-capture: receipt {} (snapshot {}, trace {})",
        c.receipt_ref, c.snapshot_id, o.mode
    );
    let _ = writeln!(
        e,
        "asl-capture: action digest {}, exit status {}",
        r.action_digest,
        r.exit_status()
    );
    for m in &r.missing_outputs {
        let _ = writeln!(
            e,
            "asl-capture: warning: declared output {m} was not created"
        );
    }
    let show = |e: &mut std::io::StderrLock<'_>, what: &str, v: &[String]| {
        if v.is_empty() {
            return;
        }
        let _ = writeln!(e, "asl-capture: {} {what}:", v.len());
        let n = if out.verbose { v.len() } else { 10 };
        for p in v.iter().take(n) {
            let _ = writeln!(e, "  {p}");
        }
        if v.len() > n {
            let _ = writeln!(e, "  ... ({} more; -v lists all)", v.len() - n);
        }
    };
    // The command's own tree first: those are the likely missing declarations; system files
    // (compilers, libraries, locale data) follow.
    let cwd = format!("{}/", r.action.cwd.trim_end_matches('/'));
    let mut undeclared = o.undeclared_inputs.clone();
    undeclared.sort_by_key(|p| !p.starts_with(&cwd));
    show(&mut e, "inputs read but not declared", &undeclared);
    show(
        &mut e,
        "paths written outside the declared outputs",
        &o.undeclared_outputs,
    );
    Ok(())
}

fn trusted_keys(keys: &[String]) -> anyhow::Result<Vec<String>> {
    keys.iter()
        .map(|k| {
            if k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(k.to_ascii_lowercase())
            } else {
                Key::load(std::path::Path::new(k))
                    .map(|k| k.public_hex())
                    .map_err(perr)
            }
        })
        .collect()
}

fn verify(
    store: &StoreArg,
    out: &OutputArgs,
    target: &str,
    keys: &[String],
    dam: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let trusted = trusted_keys(keys)?;
    let path = std::path::Path::new(target);
    let (report, dam) = if path.is_file() {
        if dam.is_some() {
            return Err(fail(
                Code::Usage,
                "--dam validates a receipt in a store: name it by reference or snapshot, not by file",
            ));
        }
        let st = open_store(store).ok();
        let report = asl_prov::verify::verify_file(st.as_ref(), path, &trusted).map_err(perr)?;
        (report, None)
    } else {
        let st = open_store(store)?;
        let r = asl_prov::verify::resolve_receipt(&st, target).map_err(perr)?;
        let report = asl_prov::verify::verify_in_store(&st, &r, &trusted).map_err(perr)?;
        (report, dam_verdict(&st, &r, dam)?)
    };
    let shown = VerifiedAgainstDam {
        report: &report,
        dam: dam.as_ref(),
    };
    out.emit(&shown, || {
        let mut s = format!(
            "receipt {}: {}\n  action digest {}\n  {} artifacts checked, {} signature(s)\n",
            report.receipt,
            if report.ok() { "OK" } else { "PROBLEMS FOUND" },
            report.action_digest,
            report.artifacts_checked,
            report.signatures.len()
        );
        for sig in &report.signatures {
            s.push_str(&format!(
                "  signature by key {}: {}\n",
                sig.keyid,
                if sig.ok { "valid" } else { "INVALID" }
            ));
        }
        for p in &report.problems {
            s.push_str(&format!("  problem: {p}\n"));
        }
        if let Some(d) = &dam {
            s.push_str(&dam_text(d));
        }
        s
    })?;
    Ok(
        if report.ok() && dam.as_ref().is_none_or(|d| d.authoritative) {
            Code::Ok
        } else {
            Code::Integrity
        }
        .into(),
    )
}

// --- Validation against a DAM (asl-capture verify --dam): the rules live in asl_auth::per.

/// The verify report, and the DAM verdict when --dam was given.
#[derive(serde::Serialize)]
struct VerifiedAgainstDam<'a> {
    #[serde(flatten)]
    report: &'a asl_prov::verify::VerifyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    dam: Option<&'a asl_auth::per::DamVerdict>,
}

fn dam_verdict(
    st: &asl_store::Store,
    receipt: &asl_store::Reference,
    dam: Option<&std::path::Path>,
) -> anyhow::Result<Option<asl_auth::per::DamVerdict>> {
    let Some(file) = dam else { return Ok(None) };
    let v = asl_auth::per::validate_with_file(st, receipt, file)
        .map_err(|e| fail(Code::Failure, e.to_string()))?;
    Ok(Some(v))
}

fn dam_text(d: &asl_auth::per::DamVerdict) -> String {
    let mut s = format!(
        "  against the DAM of domain {} (version {}, {}): {}\n",
        d.domain_id,
        d.dam_version,
        d.dam_hash,
        if d.authoritative {
            "authoritative"
        } else {
            "NOT AUTHORITATIVE"
        }
    );
    for sig in &d.signatures {
        s.push_str(&format!(
            "    signature by key {}: {}\n",
            sig.keyid,
            sig.problem
                .as_deref()
                .unwrap_or("valid, listed with execute, snapshot visible")
        ));
    }
    for p in &d.problems {
        s.push_str(&format!("    not authoritative: {p}\n"));
    }
    s
}

fn export(
    store: &StoreArg,
    target: &str,
    format: &str,
    sign: Option<PathBuf>,
    name: Option<String>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let key = sign.as_deref().map(Key::load).transpose().map_err(perr)?;
    let st = open_store(store)?;
    let r = asl_prov::verify::resolve_receipt(&st, target).map_err(perr)?;
    let doc = match format {
        "slsa" => asl_prov::export::slsa_envelope(&st, &r, key.as_ref()).map_err(perr)?,
        _ => asl_prov::export::intoto_link(&st, &r, key.as_ref(), name.as_deref()).map_err(perr)?,
    };
    let mut text =
        serde_json::to_string_pretty(&doc).map_err(|e| fail(Code::Failure, e.to_string()))?;
    text.push('\n');
    match out {
        Some(p) => std::fs::write(&p, text)
            .map_err(|e| fail(Code::Failure, format!("writing {}: {e}", p.display())))?,
        None => out!("{text}")?,
    }
    Ok(Code::Ok.into())
}

fn replay(
    store: &StoreArg,
    out: &OutputArgs,
    target: &str,
    keep: bool,
) -> anyhow::Result<ExitCode> {
    let st = open_store(store)?;
    let r = asl_prov::verify::resolve_receipt(&st, target).map_err(perr)?;
    let rep = asl_prov::replay::replay(&st, &r, keep).map_err(perr)?;
    out.emit(&rep, || {
        let mut s = format!(
            "replay of {}: {}\n",
            rep.receipt,
            if rep.matches {
                "MATCH (every output has the recorded digest)"
            } else {
                "MISMATCH"
            }
        );
        for o in &rep.outputs {
            if o.matches {
                s.push_str(&format!("  same     {}\n", o.path));
            } else {
                s.push_str(&format!(
                    "  DIFFERS  {} (recorded {}, replay {})\n",
                    o.path,
                    o.recorded,
                    o.replayed.as_deref().unwrap_or("missing")
                ));
            }
        }
        if let Some(d) = &rep.scratch {
            s.push_str(&format!("  scratch directory kept: {d}\n"));
        }
        s
    })?;
    Ok(if rep.matches {
        Code::Ok
    } else {
        Code::Integrity
    }
    .into())
}

#[derive(Parser, Debug)]
#[command(
    name = "asl-dag",
    about = "Render the provenance DAG of a store as DOT, SVG or JSON",
    long_about = "Render the provenance DAG: artifacts (ellipses) and receipts (boxes), linked \
input -> receipt -> output by the TGK edges of the captures.\n\nWith --root, only the steps \
within --depth hops (up and down) of that artifact, receipt or edge are drawn; otherwise every \
step visible in --snapshot (default: latest). SVG comes from Graphviz `dot` when installed, \
else from a built-in layered layout.",
    after_help = "Examples:\n  asl-dag --store S --out dag.svg\n  asl-dag --store S --root b3:... --depth 2 --format json --out -"
)]
struct Dag {
    #[command(flatten)]
    store: StoreArg,
    /// Artifact, receipt or edge to centre on.
    #[arg(long, value_name = "REF")]
    root: Option<String>,
    /// Snapshot (id, label or latest) whose edges are drawn.
    #[arg(long, value_name = "S", conflicts_with = "root")]
    snapshot: Option<String>,
    /// Hops from --root.
    #[arg(long, value_name = "N")]
    depth: Option<usize>,
    /// Output format [default: from --out's extension, else dot].
    #[arg(long, value_parser = ["dot", "svg", "json"])]
    format: Option<String>,
    /// Output file; `-` is stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    out: PathBuf,
}

fn dag(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Dag = super::args(m)?;
    let st = open_store(&a.store)?;
    let snap = match &a.snapshot {
        Some(s) => Some(
            st.resolve_snapshot(s)
                .map_err(|e| fail(Code::Usage, e.to_string()))?
                .clone(),
        ),
        None => None,
    };
    let g = Graph::load(&st, snap.as_ref()).map_err(perr)?;
    let root = a
        .root
        .as_deref()
        .map(|r| r.parse::<asl_store::Reference>())
        .transpose()
        .map_err(|e| fail(Code::Usage, format!("--root: {e}")))?;
    let d = graph::dag(&g, root.as_ref(), a.depth).map_err(perr)?;
    let format = a.format.clone().unwrap_or_else(|| {
        match a.out.extension().and_then(|e| e.to_str()) {
            Some("svg") => "svg",
            Some("json") => "json",
            _ => "dot",
        }
        .into()
    });
    let text = match format.as_str() {
        "json" => {
            serde_json::to_string_pretty(&d).map_err(|e| fail(Code::Failure, e.to_string()))? + "\n"
        }
        "svg" => graph::render_svg(&d).0,
        _ => graph::to_dot(&d),
    };
    if a.out.as_os_str() == "-" {
        out!("{text}")?;
    } else {
        std::fs::write(&a.out, text)
            .map_err(|e| fail(Code::Failure, format!("writing {}: {e}", a.out.display())))?;
    }
    Ok(Code::Ok.into())
}

#[derive(Parser, Debug)]
#[command(
    name = "asl-why",
    about = "Explain where an artifact came from (the steps that produced it, recursively)"
)]
struct Why {
    #[command(flatten)]
    store: StoreArg,
    /// The artifact.
    reference: String,
    /// How many steps back to follow.
    #[arg(long, default_value_t = 8)]
    depth: usize,
}

fn why(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Why = super::args(m)?;
    let (r, g) = artifact_and_graph(&a.store, &a.reference)?;
    out!("{}", graph::why(&g, &r, a.depth))?;
    Ok(Code::Ok.into())
}

/// The artifact named on the command line and the store's whole provenance graph: what
/// `asl-why` and `asl-used-by` start from. A malformed reference is a usage error, reported
/// before the store is opened.
fn artifact_and_graph(
    store: &StoreArg,
    reference: &str,
) -> anyhow::Result<(asl_store::Reference, Graph)> {
    let r = reference
        .parse()
        .map_err(|e| fail(Code::Usage, format!("{reference}: {e}")))?;
    let st = open_store(store)?;
    let g = Graph::load(&st, None).map_err(perr)?;
    Ok((r, g))
}

#[derive(Parser, Debug)]
#[command(
    name = "asl-used-by",
    about = "List the captured steps that used an artifact as an input, and what they produced"
)]
struct UsedBy {
    #[command(flatten)]
    store: StoreArg,
    reference: String,
}

fn used_by(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: UsedBy = super::args(m)?;
    let (r, g) = artifact_and_graph(&a.store, &a.reference)?;
    out!("{}", graph::used_by(&g, &r))?;
    Ok(Code::Ok.into())
}

#[derive(Parser, Debug)]
#[command(
    name = "asl-key",
    about = "Generate, import, show or export an ed25519 signing key for receipts",
    after_help = "Keys made elsewhere: `asl-key import` reads a PEM PKCS#8 ed25519 key (openssl \
genpkey -algorithm ed25519; securesystemslib's CryptoSigner) or a securesystemslib JSON key and \
writes an asl key file, which --sign then takes. `asl-key export --public` writes the public key \
for in-toto: PEM (in-toto-verify --verification-keys) or a securesystemslib key dictionary (a \
layout's `keys`).\n\n\
Examples:\n  openssl genpkey -algorithm ed25519 -out ci.pem && asl-key import ci.pem ci.key\n  \
asl-key export --public --format pem ci.key --out ci.pub\n  \
asl-key export --public --format securesystemslib ci.key"
)]
struct KeyCmd {
    #[command(subcommand)]
    cmd: KeySub,
}

#[derive(Subcommand, Debug)]
enum KeySub {
    /// Write a new key file (mode 0600; never overwrites).
    Generate { file: PathBuf },
    /// Print the public key and key id of a key file.
    Show {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Convert an ed25519 private key made elsewhere (PEM PKCS#8, securesystemslib JSON) into
    /// a key file (mode 0600; never overwrites).
    Import {
        /// The key to read.
        source: PathBuf,
        /// The key file to write.
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write the public key of a key file in a format other tools read.
    Export {
        /// Export the public key (the private key is never exported).
        #[arg(long, required = true)]
        public: bool,
        /// pem: SubjectPublicKeyInfo, as `openssl pkey -pubout` writes it; securesystemslib:
        /// the JSON key dictionary with its key id.
        #[arg(long, value_parser = ["pem", "securesystemslib"], default_value = "pem")]
        format: String,
        file: PathBuf,
        /// Output file [default: stdout].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn key(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: KeyCmd = super::args(m)?;
    let describe = |file: &std::path::Path, k: &Key, json: bool| {
        if json {
            outln!(
                "{}",
                serde_json::json!({"file": file, "keyid": k.keyid(), "public": k.public_hex(), "algorithm": "ed25519"})
            )
        } else {
            outln!(
                "{} keyid {} public {}",
                file.display(),
                k.keyid(),
                k.public_hex()
            )
        }
    };
    match a.cmd {
        KeySub::Generate { file } => {
            let k = Key::generate().map_err(perr)?;
            k.save(&file).map_err(perr)?;
            describe(&file, &k, false)?;
        }
        KeySub::Import { source, file, json } => {
            let k = Key::import(&source).map_err(perr)?;
            k.save(&file).map_err(perr)?;
            describe(&file, &k, json)?;
        }
        KeySub::Show { file, json } => {
            let k = Key::load(&file).map_err(perr)?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"keyid": k.keyid(), "public": k.public_hex(), "algorithm": "ed25519"})
                )?;
            } else {
                outln!("keyid {}\npublic {}", k.keyid(), k.public_hex())?;
            }
        }
        KeySub::Export {
            public: _,
            format,
            file,
            out,
        } => {
            let k = Key::load(&file).map_err(perr)?;
            let text = match format.as_str() {
                "securesystemslib" => {
                    let v = asl_prov::keyfmt::public_sslib(&k.public_hex());
                    serde_json::to_string_pretty(&v)
                        .map_err(|e| fail(Code::Failure, e.to_string()))?
                        + "\n"
                }
                _ => asl_prov::keyfmt::public_pem(&k.public_bytes())
                    .map_err(|e| fail(Code::Failure, format!("{}: {e}", file.display())))?,
            };
            match out {
                Some(p) => std::fs::write(&p, text)
                    .map_err(|e| fail(Code::Failure, format!("writing {}: {e}", p.display())))?,
                None => out!("{text}")?,
            }
        }
    }
    Ok(Code::Ok.into())
}
