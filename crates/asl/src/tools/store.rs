//! Store tools: `asl-init-store` and `asl-intake`, and the registry entries of the store
//! tools `asl-admin` and `asl-debug`, which live in their own modules. What the store tools
//! share is in `common`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use asl_store::{HashAlgo, InitOptions, Store, Writer};
use clap::{CommandFactory, Parser};

use super::Tool;
use super::common::{OutputArgs, StoreArg, human_bytes, store_error};
use crate::exit::{Code, fail};

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "asl-init-store",
        command: InitStore::command,
        run: init_store,
    },
    Tool {
        name: "asl-intake",
        command: Intake::command,
        run: intake,
    },
    Tool {
        name: "asl-admin",
        command: super::admin::Admin::command,
        run: super::admin::run,
    },
    Tool {
        name: "asl-debug",
        command: super::debug::Debug::command,
        run: super::debug::run,
    },
];

/// Create a new, empty store.
#[derive(Parser, Debug)]
#[command(
    about = "Create a new, empty ASL store",
    long_about = "Create a new, empty ASL store: a content-addressed, deduplicated, verifiable store of \
artifacts (see docs/FORMAT.md). The directory must not exist or be empty.\n\n\
The hash algorithm and domain are fixed for the store's lifetime.",
    after_help = "Examples:\n  asl-init-store --store /mnt/asl/local\n  asl-init-store --store ./pre-image --hash sha256 --domain 7\n  asl-init-store --store ./vm-images --chunk-sizes 16K,64K,256K"
)]
pub struct InitStore {
    #[command(flatten)]
    store: StoreArg,
    /// Hash algorithm of every reference: blake3 (fast, default) or sha256.
    #[arg(long, default_value = "blake3", value_parser = ["blake3", "sha256"])]
    hash: String,
    /// The domain id this store belongs to.
    #[arg(long, default_value_t = 1)]
    domain: u32,
    /// FastCDC chunk sizes MIN,AVG,MAX: powers of two, with a K or M suffix for KiB or MiB
    /// (default 128K,512K,2M). Smaller chunks find more duplicates in files edited in place
    /// and compress worse; fixed for the store's lifetime.
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_chunk_sizes)]
    chunk_sizes: Option<(u32, u32, u32)>,
    #[command(flatten)]
    out: OutputArgs,
}

/// `16K,64K,256K` -> (16384, 65536, 262144). Range and power-of-two rules are the store's.
fn parse_chunk_sizes(s: &str) -> Result<(u32, u32, u32), String> {
    let one = |v: &str| -> Result<u32, String> {
        let v = v.trim();
        let (digits, unit) = match v.char_indices().last() {
            Some((i, 'K' | 'k')) => (&v[..i], 1024),
            Some((i, 'M' | 'm')) => (&v[..i], 1024 * 1024),
            _ => (v, 1),
        };
        digits
            .parse::<u32>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .ok_or_else(|| format!("'{v}' is not a size (e.g. 64K, 2M or 65536)"))
    };
    match s.split(',').collect::<Vec<_>>()[..] {
        [a, b, c] => Ok((one(a)?, one(b)?, one(c)?)),
        _ => Err(format!("'{s}': expected MIN,AVG,MAX, e.g. 16K,64K,256K")),
    }
}

fn init_store(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: InitStore = super::args(m)?;
    let (dir, _) = a.store.resolve();
    let hash = HashAlgo::from_name(&a.hash).unwrap_or(HashAlgo::Blake3);
    let cfg = Store::init(
        &dir,
        &InitOptions {
            hash,
            domain_id: a.domain,
            chunk_sizes: a.chunk_sizes,
            block_target_size: None,
        },
    )
    .map_err(store_error)?;
    #[derive(serde::Serialize)]
    struct Out<'a> {
        store: &'a Path,
        config: &'a asl_store::StoreConfig,
    }
    a.out.emit(
        &Out {
            store: &dir,
            config: &cfg,
        },
        || {
            format!(
                "created store {} (hash {}, domain {}, id {})\n",
                dir.display(),
                cfg.hash,
                cfg.domain_id,
                cfg.store_id
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Take file trees into the store as one snapshot.
#[derive(Parser, Debug)]
#[command(
    about = "Take file trees into the store as one snapshot",
    long_about = "Take one or more file trees into the store as one snapshot.\n\n\
Files are cut into content-defined chunks, deduplicated against everything already stored, \
compressed and packed; the tree (names, types, modes, owners, times, xattrs, links, devices, \
holes, hardlinks) becomes tree artifacts. Unreadable files and I/O errors are recorded in the \
snapshot and counted, and intake goes on (exit code 4). Files that change while read are stored \
as read, flagged and counted; FIFOs, sockets and devices are recorded, never opened; neither \
makes the exit code 4. An unchanged re-intake only stats files (stat cache).\n\n\
One PATH: the snapshot's root is that directory. Several PATHs: the root holds one entry \
per path, named by its last component.\n\n\
The default store is created on first use.",
    after_help = "Exit codes: 0 done, 1 failed (nothing committed), 2 usage, 4 done but some inputs were unreadable.\n\n\
Examples:\n  asl-intake /home\n  asl-intake --label rescue-sda2 --exclude '*.tmp' /mnt/sda2\n  asl-intake --store /mnt/asl/local --json /etc /var/log"
)]
pub struct Intake {
    #[command(flatten)]
    store: StoreArg,
    /// A label for the snapshot (snapshot names accept it).
    #[arg(long, short = 'l')]
    label: Option<String>,
    /// Leave out entries whose path or name matches GLOB (repeatable).
    #[arg(long, short = 'e', value_name = "GLOB")]
    exclude: Vec<String>,
    /// Worker threads [default: number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Do not cross into other filesystems.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Read every file even if the stat cache says it is unchanged.
    #[arg(long)]
    no_stat_cache: bool,
    /// Run as the boot-time intake service: follow /run/asl/mode (see docs/asl-intake.md).
    #[arg(long, conflicts_with_all = ["paths"])]
    service: bool,
    /// Root of the host tree the service reads its configuration from.
    #[arg(long, value_name = "DIR", env = "ASL_ROOT", requires = "service")]
    root: Option<PathBuf>,
    /// The trees to take in.
    #[arg(value_name = "PATH", required_unless_present = "service")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    remote: super::source::RemoteArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// The intake summary printed and recorded in the snapshot.
#[derive(serde::Serialize)]
struct IntakeReport<'a> {
    store: &'a Path,
    snapshot: u64,
    label: Option<&'a str>,
    #[serde(flatten)]
    summary: &'a asl_fs::IntakeSummary,
    dedup_ratio: Option<f64>,
    bytes_stored_compressed: u64,
}

fn intake(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Intake = super::args(m)?;
    if a.service {
        return super::service::run_intake_service(a.root.as_deref(), &a.store, a.out);
    }
    let (dir, is_default) = a.store.resolve();
    // A source that is not there is a mistake to report before anything is created: an
    // intake that failed must not leave a new, empty store behind.
    super::remote::check_sources(&a.paths)?;
    if a.remote.remote.is_some() {
        let paths: Vec<PathBuf> = a
            .paths
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let opts = asl_fs::IntakeOptions {
            threads: a.threads.unwrap_or(0),
            excludes: a.exclude.clone(),
            one_file_system: a.one_file_system,
            // Chosen once the server is known: the cache is kept per server and store.
            stat_cache: None,
            after_open: None,
        };
        return super::remote::intake(
            &a.remote,
            &paths,
            opts,
            !a.no_stat_cache,
            a.label.clone(),
            a.out,
        );
    }
    let mut writer = open_for_intake(&dir, is_default)?;
    let paths: Vec<PathBuf> = a
        .paths
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let opts = asl_fs::IntakeOptions {
        // 0 is the library's "number of cores".
        threads: a.threads.unwrap_or(0),
        excludes: a.exclude.clone(),
        one_file_system: a.one_file_system,
        stat_cache: (!a.no_stat_cache)
            .then(|| asl_fs::statcache::path_for(writer.layout(), &paths)),
        after_open: None,
    };
    let summary = run_with_progress(&writer, &paths, &opts, a.out)?;
    let meta = summary.snapshot_meta(a.label.clone(), &paths);
    let commit = writer
        .commit(Some(summary.root), meta)
        .map_err(store_error)?;
    let report = IntakeReport {
        store: &dir,
        snapshot: commit.snapshot.id,
        label: a.label.as_deref(),
        summary: &summary,
        dedup_ratio: summary
            .dedup_ratio()
            .is_finite()
            .then(|| summary.dedup_ratio()),
        bytes_stored_compressed: commit.new_stored_bytes,
    };
    a.out
        .emit(&report, || intake_text(&report, a.out.verbose))?;
    if !summary.errors.is_empty() {
        if !a.out.json && !a.out.quiet {
            for e in summary
                .errors
                .iter()
                .take(if a.out.verbose { usize::MAX } else { 10 })
            {
                eprintln!(
                    "asl-intake: warning: {}: {:?} failed: {}",
                    e.path.display(),
                    e.op,
                    e.message
                );
            }
        }
        return Ok(Code::Unreadable.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the store for an intake: the default store is created on first use; a named
/// directory is created when it does not exist or is empty, and refused when it holds
/// something that is not a store.
pub fn open_for_intake(dir: &Path, _is_default: bool) -> anyhow::Result<Writer> {
    if !dir.join("config").exists() {
        Store::create_if_absent(dir, &InitOptions::default()).map_err(store_error)?;
    }
    Writer::open(dir).map_err(store_error)
}

pub fn run_with_progress(
    writer: &dyn asl_store::ArtifactWrite,
    paths: &[PathBuf],
    opts: &asl_fs::IntakeOptions,
    out: OutputArgs,
) -> anyhow::Result<asl_fs::IntakeSummary> {
    let progress = asl_fs::Progress::new();
    let show = out.progress();
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if show {
            s.spawn(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                while !done.load(Ordering::Relaxed) {
                    let read = progress.bytes_read.load(Ordering::Relaxed);
                    let secs = bar.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{} files, {} read ({}/s), {} new, {} errors  {}",
                        progress.files.load(Ordering::Relaxed),
                        human_bytes(read),
                        human_bytes((read as f64 / secs) as u64),
                        human_bytes(progress.bytes_new.load(Ordering::Relaxed)),
                        progress.errors.load(Ordering::Relaxed),
                        progress.current_path().display()
                    ));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            });
        }
        let r = asl_fs::intake(writer, paths, opts, &progress);
        done.store(true, Ordering::Relaxed);
        r
    });
    result.map_err(|e| {
        let code = match &e {
            asl_fs::IntakeError::NoPaths
            | asl_fs::IntakeError::BadExclude { .. }
            | asl_fs::IntakeError::DuplicateName { .. } => Code::Usage,
            _ => Code::Failure,
        };
        fail(code, format!("{e}; nothing was committed"))
    })
}

fn intake_text(r: &IntakeReport<'_>, verbose: bool) -> String {
    let s = r.summary;
    let secs = s.seconds.max(0.001);
    let mut t = format!(
        "snapshot {}{} of {} committed to {}\n\
         \x20 files {}  dirs {}  symlinks {}  special {}\n\
         \x20 read {} in {:.2} s ({}/s); {} new ({} after compression); dedup {}\n\
         \x20 errors {}  changed during read {}  stat-cache hits {}\n\
         \x20 root {}\n",
        r.snapshot,
        r.label.map(|l| format!(" ({l})")).unwrap_or_default(),
        human_bytes(s.bytes_total),
        r.store.display(),
        s.files,
        s.dirs,
        s.symlinks,
        s.specials,
        human_bytes(s.bytes_read),
        s.seconds,
        human_bytes((s.bytes_read as f64 / secs) as u64),
        human_bytes(s.bytes_new),
        human_bytes(r.bytes_stored_compressed),
        r.dedup_ratio
            .map(|d| format!("{d:.1}x"))
            .unwrap_or_else(|| "total".into()),
        s.errors.len(),
        s.changed_during_read,
        s.stat_cache_hits,
        s.root,
    );
    if verbose {
        t.push_str(&format!(
            "  chunks {} ({} new), files opened {}\n",
            s.chunks, s.new_chunks, s.files_opened
        ));
    }
    t
}
