//! Capturing a command or a file import into a store: inputs, run, outputs, receipt, edge,
//! one snapshot.
//!
//! Order matters for "nothing half-done": everything that can be refused (no store, command
//! not found, unreadable input, bad key) is checked before the command runs, and nothing is
//! visible before the final commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use asl_store::{ArtifactWrite, HashAlgo, Reference, SnapshotMeta, TypeTag, Writer};

use crate::error::ProvError;
use crate::launch::{self, RunSpec};
use crate::receipt::*;
use crate::sign::{Key, PerSignature};
use crate::trace::{self, Access, TraceMode};

/// Environment variables whose values enter the receipt and the action digest: the ones
/// known to change what a build produces (Debian's .buildinfo list, trimmed).
pub const ENV_ALLOW: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_COLLATE",
    "LC_MESSAGES",
    "TZ",
    "SOURCE_DATE_EPOCH",
    "CC",
    "CXX",
    "CPP",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "MAKEFLAGS",
    "DEB_BUILD_OPTIONS",
    "ARCH",
];

/// What to capture.
pub struct CaptureOptions {
    /// The command; argv[0] is looked up in `$PATH`.
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
/// path of the build step it wraps, and storing its declared inputs is most of its cost: level
/// 1 is ~20 % cheaper than the store's default 3 on /usr-like input for ~4 % more bytes.
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
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = asl_store::snapshot::rfc3339(d.as_secs() as i64);
    // "...SSZ" -> "...SS.mmmZ"
    format!("{}.{:03}Z", s.trim_end_matches('Z'), d.subsec_millis())
}

/// Stores a declared input or output: a directory as a tree, anything else as its content.
fn put_path(writer: &Writer, cache_dir: &Path, path: &Path) -> Result<FileRef, std::io::Error> {
    let meta = std::fs::metadata(path)?;
    let shown = path.to_string_lossy().into_owned();
    if meta.is_dir() {
        let key = blake3::hash(path.as_os_str().as_encoded_bytes()).to_hex();
        let opts = asl_fs::IntakeOptions {
            stat_cache: Some(cache_dir.join(format!("capture-tree-{}.statcache", &key[..16]))),
            ..Default::default()
        };
        let s = asl_fs::intake(
            writer,
            &[path.to_path_buf()],
            &opts,
            &asl_fs::Progress::new(),
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(e) = s.errors.first() {
            return Err(std::io::Error::other(format!(
                "{} inside it could not be read: {}",
                e.path.display(),
                e.message
            )));
        }
        return Ok(FileRef {
            path: shown,
            kind: "tree".into(),
            reference: s.root.to_string(),
            size: s.bytes_total,
            mode: 0,
        });
    }
    // A plain file: reuse the reference from the stat cache when the file is unchanged and
    // the store still holds it (lazy hashing), otherwise read it.
    let cache_path = cache_dir.join("capture-files.statcache");
    let mut f = std::fs::File::open(path)?;
    let st = f.metadata()?;
    let id = asl_fs::statcache::FileIdentity {
        dev: st.dev(),
        ino: st.ino(),
        size: st.size(),
        mtime: (st.mtime(), st.mtime_nsec() as u32),
        ctime: (st.ctime(), st.ctime_nsec() as u32),
    };
    let mut cache = asl_fs::statcache::StatCache::load(&cache_path);
    if let Some(hit) = cache.get(&id)
        && writer.contains(&hit.content)
    {
        return Ok(FileRef {
            path: shown,
            kind: "file".into(),
            reference: hit.content.to_string(),
            size: st.size(),
            mode: st.mode() & 0o7777,
        });
    }
    let put = writer
        .put_reader(&mut f, TypeTag::BYTES)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    cache.insert(asl_fs::statcache::CachedContent {
        identity: id,
        content: put.reference,
        holes: Vec::new(),
    });
    // The cache is derived: failing to save it only costs a re-read next time.
    let _ = std::fs::create_dir_all(cache_dir).and_then(|_| cache.save(&cache_path));
    Ok(FileRef {
        path: shown,
        kind: "file".into(),
        reference: put.reference.to_string(),
        size: put.len,
        mode: st.mode() & 0o7777,
    })
}

fn uname() -> (String, String) {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    (s(u.release()), s(u.machine()))
}

fn distro() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default()
}

fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
            })
        })
        .unwrap_or_default()
}

/// Builds the context and the allow-listed environment.
fn context(algo: HashAlgo, extra_allow: &[String]) -> (Context, BTreeMap<String, String>) {
    let mut names = Vec::new();
    let mut hashed = BTreeMap::new();
    let mut allowed = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        names.push(k.clone());
        if ENV_ALLOW.contains(&k.as_str()) || extra_allow.contains(&k) {
            allowed.insert(k, v.to_string_lossy().into_owned());
        } else {
            hashed.insert(k, algo.digest(v.as_encoded_bytes()).to_string());
        }
    }
    names.sort();
    // umask is read by setting and restoring it; no other thread creates files now.
    let umask = {
        let m = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        rustix::process::umask(m);
        m.as_raw_mode()
    };
    let (uid, gid) = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let (kernel, arch) = uname();
    (
        Context {
            uid,
            gid,
            user: user_name(uid),
            umask,
            host: asl_store::snapshot::hostname(),
            kernel,
            arch,
            distro: distro(),
            env_names: names,
            env_hashed: hashed,
        },
        allowed,
    )
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

fn abs(cwd: &Path, p: &Path) -> String {
    trace::normalize(cwd, p).to_string_lossy().into_owned()
}

/// What makes two accesses the same: path, operation, rename target.
type AccessKey<'a> = (&'a str, &'a str, Option<&'a str>);

/// Deduplicates accesses and computes the declared-vs-observed difference.
pub fn summarise(
    mode: TraceMode,
    raw: Vec<Access>,
    gaps: Vec<String>,
    cwd: &Path,
    inputs: &[PathBuf],
    outputs: &[PathBuf],
) -> Observation {
    let decl_in: Vec<String> = inputs.iter().map(|p| abs(cwd, p)).collect();
    let decl_out: Vec<String> = outputs.iter().map(|p| abs(cwd, p)).collect();
    let is_declared = |p: &str, d: &[String]| d.iter().any(|x| trace::under(p, x));
    // Borrowed paths and one sort of positions: a file-heavy command yields ~10^5 accesses,
    // and this runs after the command has ended, on the capture's critical path.
    let mut written: BTreeSet<&str> = BTreeSet::new();
    let mut created: BTreeSet<&str> = BTreeSet::new();
    let mut deleted: BTreeSet<&str> = BTreeSet::new();
    // Where the tree itself first made each path (write, create, rename target). Owned
    // keys (there are few): the accesses are moved out of `raw` while this is consulted.
    let mut first_made: HashMap<String, usize> = HashMap::new();
    for (pos, a) in raw.iter().enumerate() {
        let path = a.path.as_str();
        match &*a.op {
            "write" => {
                written.insert(path);
                first_made.entry(path.to_string()).or_insert(pos);
            }
            "create" => {
                created.insert(path);
                first_made.entry(path.to_string()).or_insert(pos);
            }
            "delete" => {
                deleted.insert(path);
            }
            "rename" => {
                deleted.insert(path);
                if let Some(to) = a.to.as_deref() {
                    created.insert(to);
                    written.insert(to);
                    first_made.entry(to.to_string()).or_insert(pos);
                }
            }
            _ => {}
        }
    }
    // Positions sorted by (path, op, to), equal keys by position. Each position carries the
    // 16 path bytes that follow the part all paths share, so that most comparisons read no
    // string: the strings lie all over the heap, and following one costs a cache miss.
    let shared = common_prefix_len(raw.iter().map(|a| a.path.as_bytes()));
    let mut order: Vec<(u128, u32)> = raw
        .iter()
        .enumerate()
        .map(|(i, a)| (sort_prefix(&a.path.as_bytes()[shared..]), i as u32))
        .collect();
    let key = |i: u32| -> AccessKey {
        let a = &raw[i as usize];
        (a.path.as_str(), &*a.op, a.to.as_deref())
    };
    sort_on_two_cores(&mut order, |x, y| {
        x.0.cmp(&y.0)
            .then_with(|| key(x.1).cmp(&key(y.1)))
            .then(x.1.cmp(&y.1))
    });
    // One access per (path, op, to): its earliest occurrence, whose pid is kept.
    let mut kept: Vec<usize> = Vec::with_capacity(order.len());
    let mut last: Option<(u128, u32)> = None;
    for &(prefix, i) in &order {
        if last.is_none_or(|(p, l)| p != prefix || key(l) != key(i)) {
            kept.push(i as usize);
        }
        last = Some((prefix, i));
    }
    // A file created and deleted again within the run is a temporary; so is a file written
    // that is gone by the end (fanotify cannot see the delete).
    let gone = |p: &str| std::fs::symlink_metadata(p).is_err();
    let temporaries: BTreeSet<&str> = created
        .intersection(&deleted)
        .copied()
        .chain(
            written
                .iter()
                .chain(&created)
                .copied()
                .filter(|p| gone(p) && !deleted.contains(p)),
        )
        .collect();
    let undeclared_outputs: Vec<String> = written
        .iter()
        .chain(&created)
        .chain(&deleted)
        .copied()
        .filter(|p| !trace::is_pseudo(p) && !temporaries.contains(p) && !is_declared(p, &decl_out))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    // One pass over the kept accesses, in order, moving each out of `raw` (one cache miss
    // per access instead of one per pass). Inputs are paths read (or executed) before the
    // tree made them itself; paths made first and read afterwards are intermediates.
    let mut raw = raw;
    let mut accesses: Vec<Access> = Vec::with_capacity(kept.len());
    let mut undeclared_inputs: Vec<String> = Vec::new();
    for &i in &kept {
        let a = std::mem::take(&mut raw[i]);
        let input = matches!(&*a.op, "read" | "exec")
            && first_made
                .get(a.path.as_str())
                .is_none_or(|&made| made >= i)
            && !trace::is_pseudo(&a.path)
            && !is_declared(&a.path, &decl_in)
            && !is_declared(&a.path, &decl_out)
            && undeclared_inputs.last() != Some(&a.path);
        if input {
            undeclared_inputs.push(a.path.clone());
        }
        accesses.push(a);
    }
    Observation {
        mode: mode.name().into(),
        blind_spots: mode.blind_spots(),
        gaps,
        accesses,
        undeclared_inputs,
        undeclared_outputs,
    }
}

/// The length of the longest prefix all of `paths` share.
fn common_prefix_len<'a>(mut paths: impl Iterator<Item = &'a [u8]>) -> usize {
    let Some(first) = paths.next() else {
        return 0;
    };
    let mut len = first.len();
    for p in paths {
        len = first[..len]
            .iter()
            .zip(p)
            .take_while(|(a, b)| a == b)
            .count();
    }
    len
}

/// The first 16 bytes of `rest`, zero-padded, as a big-endian number: where two of these
/// differ, they order as the byte strings do. Paths hold no NUL byte, so a path that ends
/// within the 16 bytes still orders before every longer path it begins.
fn sort_prefix(rest: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = rest.len().min(16);
    b[..n].copy_from_slice(&rest[..n]);
    u128::from_be_bytes(b)
}

/// Sorts `v` by a total order, each half on its own core and then one merge: the observation
/// is sorted after the command has ended, when both cores of a small machine are free.
fn sort_on_two_cores<T, F>(v: &mut Vec<T>, cmp: F)
where
    T: Copy + Send,
    F: Fn(&T, &T) -> std::cmp::Ordering + Sync,
{
    if v.len() < 8192 {
        v.sort_unstable_by(&cmp);
        return;
    }
    let mid = v.len() / 2;
    {
        let (a, b) = v.split_at_mut(mid);
        std::thread::scope(|s| {
            s.spawn(|| a.sort_unstable_by(&cmp));
            b.sort_unstable_by(&cmp);
        });
    }
    let (a, b) = v.split_at(mid);
    let mut out = Vec::with_capacity(v.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if cmp(&b[j], &a[i]).is_lt() {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    *v = out;
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
        .state()
        .snapshots
        .values()
        .next_back()
        .map(|s| (s.id, s.logseq))
        .unwrap_or((0, 0))
}

/// The capture's writer: open already, or being opened on another thread.
enum Opening {
    Ready(Box<Writer>),
    Reading(std::thread::JoinHandle<asl_store::Result<Writer>>),
}

impl Opening {
    fn finish(self) -> Result<Writer, String> {
        match self {
            Opening::Ready(w) => Ok(*w),
            Opening::Reading(h) => match h.join() {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the thread reading the store panicked".into()),
            },
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
    // runs: on a store of a few hundred captures, a millisecond or two off every capture.
    let mut inputs = Vec::new();
    let opening = if opts.inputs.is_empty() {
        Opening::Reading(std::thread::spawn(move || locked.open()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_core_sort_sorts_like_the_standard_one() {
        let mut x: u64 = 7;
        let mut v: Vec<u64> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 5000
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_unstable();
        sort_on_two_cores(&mut v, |a, b| a.cmp(b));
        assert_eq!(v, expected);
    }

    fn acc(op: &str, path: &str, pid: i32, to: Option<&str>) -> Access {
        Access {
            op: op.to_string().into(),
            path: path.into(),
            pid,
            to: to.map(str::to_string),
        }
    }

    /// The observation's rules, on a hand-made run in chronological order: intermediates are
    /// not inputs, a read before the write is, duplicates keep the first pid, temporaries are
    /// not outputs, pseudo files and declared paths are not flagged.
    #[test]
    fn summarise_separates_inputs_intermediates_and_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let p = |name: &str| format!("{d}/{name}");
        for f in ["obj.o", "late", "to"] {
            std::fs::write(p(f), b"x").unwrap();
        }
        let raw = vec![
            acc("read", "/in/a.h", 10, None),
            acc("write", &p("obj.o"), 11, None),
            acc("read", &p("obj.o"), 12, None),
            acc("read", "/in/a.h", 13, None),
            acc("read", "/in/b.h", 14, None),
            acc("exec", "/usr/bin/cc", 15, None),
            acc("read", "/proc/self/stat", 15, None),
            acc("create", &p("tmpfile"), 16, None),
            acc("delete", &p("tmpfile"), 16, None),
            acc("read", &p("late"), 17, None),
            acc("write", &p("late"), 18, None),
            acc("rename", &p("from"), 19, Some(&p("to"))),
            acc("read", &p("to"), 20, None),
        ];
        let o = summarise(
            TraceMode::Ptrace,
            raw,
            Vec::new(),
            Path::new("/"),
            &[PathBuf::from("/in/b.h")],
            &[],
        );
        let mut inputs = vec!["/in/a.h".to_string(), "/usr/bin/cc".into(), p("late")];
        inputs.sort();
        assert_eq!(o.undeclared_inputs, inputs);
        let mut outputs = vec![p("obj.o"), p("late"), p("from"), p("to")];
        outputs.sort();
        assert_eq!(o.undeclared_outputs, outputs);
        // Sorted by path, then op; one entry per (path, op, to), with the first pid.
        let keys: Vec<(&str, &str, i32)> = o
            .accesses
            .iter()
            .map(|a| (a.path.as_str(), &*a.op, a.pid))
            .collect();
        let mut expected = vec![
            ("/in/a.h", "read", 10),
            ("/in/b.h", "read", 14),
            ("/proc/self/stat", "read", 15),
            ("/usr/bin/cc", "exec", 15),
        ];
        let owned: Vec<(String, &str, i32)> = vec![
            (p("from"), "rename", 19),
            (p("late"), "read", 17),
            (p("late"), "write", 18),
            (p("obj.o"), "read", 12),
            (p("obj.o"), "write", 11),
            (p("tmpfile"), "create", 16),
            (p("tmpfile"), "delete", 16),
            (p("to"), "read", 20),
        ];
        expected.extend(owned.iter().map(|(a, b, c)| (a.as_str(), *b, *c)));
        expected.sort();
        assert_eq!(keys, expected);
    }

    proptest::proptest! {
        /// Against a plain model (a map from (path, op, to) to the first occurrence): the
        /// same accesses in the same order, with the same pids, and the same undeclared
        /// inputs. Paths share long prefixes and differ around '/', '-' and '0' (the bytes
        /// on either side of '/'), and many are longer than the 16-byte sort prefix, so that
        /// its ties and edges are exercised.
        #[test]
        fn summarise_matches_a_plain_dedup_and_sort(
            picks in proptest::collection::vec(
                (0usize..6, proptest::collection::vec(0usize..5, 1..6), 0usize..3, 0i32..4),
                0..300,
            ),
            prefix in "(/[a-c]{0,3}){0,3}",
        ) {
            const PARTS: [&str; 5] = ["a", "a-b", "a0", "aaaaaaaaaaaaaaaaaaaaaaaa", "a/b"];
            const OPS: [&str; 3] = ["read", "exec", "open_dir"];
            let raw: Vec<Access> = picks
                .iter()
                .map(|(root, parts, op, pid)| {
                    let mut path = format!("/r{root}{prefix}");
                    for p in parts {
                        path.push('/');
                        path.push_str(PARTS[*p]);
                    }
                    acc(OPS[*op], &path, *pid, None)
                })
                .collect();
            let mut model: BTreeMap<(String, String), i32> = BTreeMap::new();
            for a in &raw {
                model.entry((a.path.clone(), a.op.to_string())).or_insert(a.pid);
            }
            let o = summarise(TraceMode::Fanotify, raw, Vec::new(), Path::new("/"), &[], &[]);
            let got: Vec<((String, String), i32)> = o
                .accesses
                .iter()
                .map(|a| ((a.path.clone(), a.op.to_string()), a.pid))
                .collect();
            let want: Vec<((String, String), i32)> = model.clone().into_iter().collect();
            proptest::prop_assert_eq!(got, want);
            let mut inputs: Vec<String> = model
                .keys()
                .filter(|(_, op)| op != "open_dir")
                .map(|(p, _)| p.clone())
                .collect();
            inputs.dedup();
            proptest::prop_assert_eq!(o.undeclared_inputs, inputs);
        }
    }

    #[test]
    fn sort_prefixes_order_as_the_paths_do() {
        let paths = [
            "",
            "a",
            "a/",
            "a-",
            "a0",
            "aaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaab",
            "b",
        ];
        for x in paths {
            for y in paths {
                let (px, py) = (sort_prefix(x.as_bytes()), sort_prefix(y.as_bytes()));
                if px != py {
                    assert_eq!(px.cmp(&py), x.cmp(y), "{x:?} vs {y:?}");
                }
            }
        }
        assert_eq!(
            common_prefix_len(["/usr/a", "/usr/b", "/u"].iter().map(|p| p.as_bytes())),
            2
        );
        assert_eq!(common_prefix_len(std::iter::empty()), 0);
    }
}
