//! Tools of the host part: `asl-preflight`, `asl-config`, `asl-image`. All logic lives in
//! `asl_host`; this module parses arguments and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use asl_host::Root;
use asl_host::image::{self, build::BuildOptions};
use asl_host::overlay::{self, OverlayInputs, Profile};
use asl_host::preflight;
use clap::{Args, CommandFactory, Parser, Subcommand};

use super::Tool;
use crate::exit::{Code, fail};
use crate::{out, outln};

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "asl-preflight",
        command: Preflight::command,
        run: run_preflight,
    },
    Tool {
        name: "asl-config",
        command: Config::command,
        run: run_config,
    },
    Tool {
        name: "asl-image",
        command: Image::command,
        run: run_image,
    },
];

/// `--root DIR`, falling back to `$ASL_ROOT`, then `/`.
#[derive(Args, Debug)]
struct RootArg {
    /// Work on the tree at DIR instead of / (config, /proc, /sys and /run are read below it).
    #[arg(long, value_name = "DIR", env = "ASL_ROOT", default_value = "/")]
    root: PathBuf,
}

impl RootArg {
    fn root(&self) -> Root {
        Root::new(&self.root)
    }
}

#[derive(Parser, Debug)]
#[command(
    about = "Detect network, ZFS and storage at boot and decide the intake mode (/run/asl/mode)",
    long_about = "Detect what this host offers and decide how intake runs.\n\n\
It detects the network (a non-loopback link up with a routable address, a default route), ZFS \
(module loaded, zpool/zfs tools, importable pools listed without importing, imported pools), \
whether local.mount is mounted and writable (checked without writing), and whether \
remote.endpoint answers a TCP connect. The decision table maps mode = auto|local|remote from \
/etc/asl/asl.conf to local, remote or operator, and the result is written atomically to \
/run/asl/mode: the decision on the first line, then key=value facts and the reason.\n\n\
It never imports a pool, mounts, or writes anything but /run/asl/mode. It exits 0 whatever it \
decides (an invalid configuration leads to 'operator'); it fails only when it cannot write \
the mode file.",
    after_help = "Examples:\n  asl-preflight                  decide and write /run/asl/mode\n  \
asl-preflight --dry-run --json show facts and decision, write nothing\n  \
asl-preflight --root /tmp/img  work on another tree"
)]
struct Preflight {
    #[command(flatten)]
    root: RootArg,
    /// Detect and decide, but write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the decision and all facts as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print nothing on success (the mode file is still written).
    #[arg(short, long, conflicts_with = "json")]
    quiet: bool,
}

fn yn(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn run_preflight(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Preflight = super::args(m)?;
    let root = a.root.root();
    let out = preflight::run(&root, &preflight::Env::from_process(), a.dry_run)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else if !a.quiet {
        let f = &out.facts;
        outln!("decision: {}", out.decision)?;
        outln!("reason:   {}", out.reason)?;
        outln!(
            "network:  {} (links: {}, default route: {})",
            if f.network.up { "up" } else { "down" },
            or_dash(&f.network.links),
            yn(f.network.default_route)
        )?;
        let tool = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "not found".into())
        };
        outln!(
            "zfs:      module {}, zpool {}, importable {}, imported {}",
            yn(f.zfs.module),
            tool(&f.zfs.zpool),
            or_dash(&f.zfs.importable),
            or_dash(&f.zfs.imported)
        )?;
        outln!(
            "local:    {} mounted {}{}, writable {}",
            f.local.mount.display(),
            yn(f.local.mounted),
            match (&f.local.fstype, &f.local.source) {
                (Some(t), Some(s)) => format!(" ({t} {s})"),
                _ => String::new(),
            },
            yn(f.local.writable)
        )?;
        outln!(
            "remote:   {}",
            match (&f.remote.endpoint, f.remote.reachable) {
                (None, _) => "not configured".to_string(),
                (Some(e), None) => format!("{e} (not tried)"),
                (Some(e), Some(r)) => format!("{e} reachable {}", yn(r)),
            }
        )?;
        match &out.mode_file {
            Some(p) => outln!("wrote {}", p.display())?,
            None => outln!("dry run: nothing written")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Parser, Debug)]
#[command(
    about = "Check /etc/asl/asl.conf, federation.conf and logging.conf",
    long_about = "Check the host configuration in /etc/asl strictly.\n\n\
Every unknown key, repeated key and bad value is reported as FILE:LINE: message, for all three \
files at once. A missing file means its defaults apply. On success the effective configuration \
is printed. The file format is described in docs/config.md."
)]
struct Config {
    #[command(subcommand)]
    cmd: ConfigCmd,
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Validate the three files and print the effective configuration.
    Check {
        #[command(flatten)]
        root: RootArg,
        /// Print the effective configuration as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn run_config(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Config = super::args(m)?;
    let ConfigCmd::Check { root, json } = a.cmd;
    let root = root.root();
    let report = asl_host::config::check(root.dir()).map_err(|e| {
        let n = e.problems.len();
        fail(
            Code::Failure,
            format!(
                "{n} problem{} in the configuration:\n{e}",
                if n == 1 { "" } else { "s" }
            ),
        )
    })?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for f in &report.files {
        outln!(
            "{}: {}",
            f.path.display(),
            if f.present {
                "ok"
            } else {
                "absent, defaults apply"
            }
        )?;
    }
    let c = &report.asl;
    outln!("mode = {}", c.mode)?;
    outln!("local.mount = {}", c.local_mount.display())?;
    if let Some(p) = &c.local_pool {
        outln!("local.pool = {p}")?;
    }
    outln!("local.create = {}", yn(c.local_create))?;
    if let Some(e) = &c.remote_endpoint {
        outln!("remote.endpoint = {e}")?;
    }
    outln!("remote.timeout = {}ms", c.remote_timeout.as_millis())?;
    if let Some(d) = &c.domain_id {
        outln!("domain.id = {d}")?;
    }
    outln!("federation peers: {}", report.federation.peers.len())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Parser, Debug)]
#[command(
    about = "Generate and check overlay trees; build the bootable ISOs (rescue, authority host)",
    long_about = "Generate the canonical overlay tree of a profile, or check a tree against the \
overlay contract; build the bootable ISO of a profile, or compare two builds.\n\n\
Profiles: rescue (SystemRescue intake overlay: tools, /etc/asl defaults, asl-preflight and \
asl-intake units, empty var/lib/asl/{runtime,cache,locks}, run/asl/sockets, \
mnt/asl/{local,remote}) and auth-host (offline authority host: tools, /etc/asl with mode = \
local, the preflight unit, empty var/lib/asl/{common,personal,pools}, var/log, run/asl, \
mnt/asl/local). With --libasl, the rescue overlay also carries the C library at \
usr/local/lib/libasl.so, where seed 000 puts it.\n\n\
The rescue lint holds a tree to seed 000: the seed's entries are allowed and required (except \
those the seed calls optional, and the library); the project's additions (usr/local/bin/asl, \
further tool links, the multi-user.target.wants links) are allowed and required only when a \
unit of the tree runs them. Units, fstab and mount units are checked against the seed's \
rules: never write to /usr, /bin, /lib; no state in /etc; never auto-mount the crashed root; \
never assume ZFS; never assume the network; never import pools without approval. \
docs/asl-image.md lists every rule next to the seed's words.\n\n\
The overlay is built under a temporary name next to --out and renamed into place, so a failed \
run leaves nothing behind. Set SOURCE_DATE_EPOCH for reproducible mtimes.\n\n\
build (root; packages of scripts/deps/image.apt) makes a Debian bookworm live ISO from the \
configured apt sources: the exact package set is resolved first and the base root is cached by \
it (--cache), then overlay, image layer and build history, squashfs, GRUB for BIOS and UEFI and \
a hybrid ISO that also boots as a disk. Every step runs under asl-capture into FILE.build/store, \
signed by the builder key; the DAG is written to FILE.dag.svg. With --no-history two builds of \
the same inputs are bit-identical; diff-builds names the first step whose outputs differ."
)]
struct Image {
    #[command(subcommand)]
    cmd: ImageCmd,
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// Write the overlay tree of a profile to --out (which must not exist or be empty).
    Overlay {
        /// rescue | auth-host
        #[arg(long, value_parser = parse_profile)]
        profile: Profile,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The executable to install as usr/local/bin/asl (default: this binary).
        #[arg(long, value_name = "FILE")]
        binary: Option<PathBuf>,
        /// The C library to install as usr/local/lib/libasl.so (rescue only), e.g.
        /// target/release/libasl.so; without it the overlay carries no library.
        #[arg(long, value_name = "FILE")]
        libasl: Option<PathBuf>,
    },
    /// Check a tree against a profile's overlay contract; one line per violation.
    Lint {
        /// The overlay tree.
        dir: PathBuf,
        /// rescue | auth-host
        #[arg(long, value_parser = parse_profile)]
        profile: Profile,
        /// Print the violations as a JSON array on stdout ({path, message, rule?}).
        #[arg(long)]
        json: bool,
    },
    /// Build the bootable hybrid ISO of a profile (BIOS and UEFI, CD and disk), every step
    /// under asl-capture.
    Build {
        /// rescue | auth-host
        #[arg(long, value_parser = parse_profile)]
        profile: Profile,
        /// The ISO to write; its build record goes to FILE.build/, its DAG to FILE.dag.svg.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Cache of base roots (keyed by their exact package set), apt state and the default
        /// builder key.
        #[arg(
            long,
            value_name = "DIR",
            env = "ASL_IMAGE_CACHE",
            default_value = "/var/cache/asl-image"
        )]
        cache: PathBuf,
        /// The builder's ed25519 key that signs every receipt [default: CACHE/builder.key,
        /// made on first use].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The asl binary installed into the image (default: this binary).
        #[arg(long, value_name = "FILE")]
        binary: Option<PathBuf>,
        /// Do not seed the build history into the image (var/lib/asl/personal/): the receipts
        /// hold times and paths, so only without them are two builds bit-identical.
        #[arg(long)]
        no_history: bool,
        /// Print a JSON summary on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Compare two builds' receipts and name the first step whose output differs.
    DiffBuilds {
        /// Build A: its ISO (FILE.build/ next to it is read) or its .build directory.
        a: PathBuf,
        /// Build B.
        b: PathBuf,
        /// Print the comparison as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write the image layer of a profile (console login, store mount, network policy) to DIR.
    #[command(hide = true)]
    Layer {
        #[arg(long, value_parser = parse_profile)]
        profile: Profile,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write the systemd units (asl-preflight.service, asl-intake.service) to DIR, or print them.
    Units {
        /// Directory to write the unit files to (default: print them on stdout).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    s.parse()
}

fn run_image(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Image = super::args(m)?;
    match a.cmd {
        ImageCmd::Overlay {
            profile,
            out,
            binary,
            libasl,
        } => {
            if libasl.is_some() && profile != Profile::Rescue {
                return Err(fail(
                    Code::Usage,
                    format!(
                        "--libasl: the {profile} overlay carries no libasl.so (only the rescue \
                         profile, after seed 000, does); leave out --libasl"
                    ),
                ));
            }
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe().context("cannot find the running binary")?,
            };
            let mtime = source_date_epoch()?;
            let tools = super::all()
                .into_iter()
                .map(|t| t.name)
                .filter(|n| *n != "asl-install-links" && *n != "asl-man")
                .map(String::from)
                .collect();
            if !overlay::builds_as_root() {
                eprintln!(
                    "asl-image: warning: not running as root: the files will be owned by your user \
                     and fail `asl-image lint` (run as root, or under fakeroot)"
                );
            }
            overlay::generate(
                profile,
                &out,
                &OverlayInputs {
                    binary,
                    tools,
                    mtime,
                    libasl,
                },
            )?;
            outln!("{}", out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCmd::Lint { dir, profile, json } => {
            let v = overlay::lint(&dir, profile)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for x in &v {
                    outln!("{}", x)?;
                }
            }
            if v.is_empty() {
                if !json {
                    outln!("{}: passes the {profile} overlay contract", dir.display())?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let summary = format!(
                "{}: {} violation{} of the {profile} overlay contract",
                dir.display(),
                v.len(),
                if v.len() == 1 { "" } else { "s" }
            );
            if json {
                // The violations are the JSON answer; an error object after them would make
                // stdout two documents. The summary still goes to stderr, the code stays 1.
                eprintln!("asl-image: error: {summary}");
                Ok(Code::Failure.into())
            } else {
                Err(fail(Code::Failure, summary))
            }
        }
        ImageCmd::Build {
            profile,
            out,
            cache,
            key,
            binary,
            no_history,
            json,
        } => {
            let asl = match binary {
                Some(b) => b,
                None => std::env::current_exe().context("cannot find the running binary")?,
            };
            let asl = std::path::absolute(&asl)
                .with_context(|| format!("cannot resolve {}", asl.display()))?;
            let epoch = source_date_epoch()?.unwrap_or(DEFAULT_EPOCH);
            let o = BuildOptions {
                profile,
                out,
                cache,
                asl,
                key,
                epoch,
                history: !no_history,
                apt_dir: PathBuf::from("/etc/apt"),
            };
            let r = image::build::build(&o, &mut |line| eprintln!("asl-image: {line}"))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                outln!("{}  {}", r.sha256, r.iso.display())?;
                eprintln!(
                    "asl-image: {} bytes, base {} ({} packages), {} steps in {:.0} s; record in {}",
                    r.size,
                    if r.base_cached {
                        "from the cache"
                    } else {
                        "built"
                    },
                    r.packages,
                    r.steps.len(),
                    r.seconds,
                    r.build_dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCmd::DiffBuilds { a, b, json } => {
            let d = image::diff::diff_builds(&a, &b)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&d)?)?;
            } else {
                for s in &d.only_in_a {
                    outln!("step {s}: only in A (skipped)")?;
                }
                for s in &d.only_in_b {
                    outln!("step {s}: only in B (skipped)")?;
                }
                match &d.first_difference {
                    None => outln!(
                        "no difference: the {} steps run by both builds have the same outputs",
                        d.compared.len()
                    )?,
                    Some(f) => {
                        outln!("first difference: step {}", f.step)?;
                        for c in &f.outputs {
                            outln!("  output {}: {} vs {}", c.path, c.a, c.b)?;
                        }
                        if f.inputs.is_empty() {
                            outln!(
                                "  its declared inputs are the same: the step itself is not \
                                 reproducible"
                            )?;
                        }
                        for c in &f.inputs {
                            outln!("  input {} differs: {} vs {}", c.path, c.a, c.b)?;
                        }
                    }
                }
            }
            Ok(if d.first_difference.is_none() {
                ExitCode::SUCCESS
            } else {
                Code::Failure.into()
            })
        }
        ImageCmd::Layer { profile, out } => {
            image::layer::write(profile, &out, source_date_epoch()?)?;
            outln!("{}", out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCmd::Units { out } => {
            for (name, text) in asl_host::units::all() {
                match &out {
                    Some(dir) => write_unit(dir, name, &text)?,
                    None => out!("# --- {name}\n{text}")?,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `SOURCE_DATE_EPOCH` a build uses when none is set: 2025-01-01T00:00:00Z. A constant,
/// not the clock, so that two builds of the same inputs are the same bytes by default.
const DEFAULT_EPOCH: i64 = 1_735_689_600;

fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => Ok(Some(s.trim().parse::<i64>().map_err(|_| {
            fail(
                Code::Usage,
                format!("SOURCE_DATE_EPOCH='{s}' is not a number of seconds"),
            )
        })?)),
        Err(_) => Ok(None),
    }
}

fn write_unit(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    outln!("{}", p.display())?;
    Ok(())
}
