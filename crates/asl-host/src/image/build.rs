//! The build pipeline of `asl-image build`.
//!
//! Layout next to the ISO `OUT`:
//! * `OUT.build/store/` — the build store: every step's receipt, signed with the builder key,
//!   and every declared input and output;
//! * `OUT.build/receipts/NN-STEP/` — each step's `receipt.json`, `.ref`, `.sig.json`;
//! * `OUT.build/log/NN-STEP.log` — the step's own output;
//! * `OUT.build/steps.json` — the steps in order (what `diff-builds` reads);
//! * `OUT.dag.svg` — the provenance DAG of the build store.
//!
//! Steps, each one `asl-capture` run: `apt-update` (the private apt lists in the cache),
//! `resolve` (the exact package set), `bootstrap` (mmdebstrap; only when the cache has no base
//! for that set), `overlay`, `lint`, `layer`, `history` (unless disabled), `rootfs` (squashfs,
//! kernel, initramfs), `bootloader`, `iso`.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::base::{self, Cache};
use super::{ImageError, boot, sources, which};
use crate::overlay::Profile;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub profile: Profile,
    /// The ISO to write.
    pub out: PathBuf,
    /// The cache of base roots, apt state and the default builder key.
    pub cache: PathBuf,
    /// The `asl` multicall binary: installed into the image, and run for every capture.
    pub asl: PathBuf,
    /// The builder's signing key; made in the cache on first use when not given.
    pub key: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH` of every step.
    pub epoch: i64,
    /// Seed the build history into the image (`var/lib/asl/personal/`).
    pub history: bool,
    /// Where the apt sources are read from (`/etc/apt`).
    pub apt_dir: PathBuf,
}

/// One step as run.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: String,
    /// The receipt's reference.
    pub receipt: String,
    /// The receipt directory, relative to the build directory.
    pub dir: String,
    pub seconds: f64,
}

/// The summary `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub profile: String,
    pub iso: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub base_key: String,
    pub base_cached: bool,
    pub packages: usize,
    pub build_dir: PathBuf,
    pub dag: Option<PathBuf>,
    pub history: bool,
    pub source_date_epoch: i64,
    pub steps: Vec<StepRecord>,
    pub seconds: f64,
}

/// The external tools, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("mmdebstrap", "mmdebstrap"),
    ("tar", "tar"),
    ("mksquashfs", "squashfs-tools"),
    ("grub-mkimage", "grub-common"),
    ("mkfs.fat", "dosfstools"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
    ("xorriso", "xorriso"),
];
const FILES: &[(&str, &str)] = &[
    ("/usr/lib/grub/i386-pc/boot_hybrid.img", "grub-pc-bin"),
    ("/usr/lib/grub/x86_64-efi/linux.mod", "grub-efi-amd64-bin"),
];

/// Checks that every tool the build runs is installed; the error names its package.
pub fn check_tools() -> Result<(), ImageError> {
    for (tool, package) in TOOLS {
        if which(tool).is_none() {
            return Err(ImageError::MissingTool { tool, package });
        }
    }
    for (path, package) in FILES {
        if !Path::new(path).exists() {
            return Err(ImageError::MissingFile { path, package });
        }
    }
    Ok(())
}

/// `OUT.build`, the directory of a build's record.
pub fn build_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".build");
    PathBuf::from(s)
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

struct Runner<'a> {
    o: &'a BuildOptions,
    build: PathBuf,
    work: PathBuf,
    store: PathBuf,
    key: PathBuf,
    steps: Vec<StepRecord>,
    progress: &'a mut dyn FnMut(&str),
}

impl Runner<'_> {
    /// Runs `argv` under `asl-capture` with the declared inputs and outputs.
    fn step(
        &mut self,
        name: &str,
        inputs: &[&Path],
        outputs: &[&Path],
        argv: &[OsString],
    ) -> Result<(), ImageError> {
        let n = self.steps.len() + 1;
        let id = format!("{n:02}-{name}");
        let dir = self.build.join("receipts").join(&id);
        let log = self.build.join("log").join(format!("{id}.log"));
        (self.progress)(&format!("step {id}: {}", argv[0].to_string_lossy()));
        let logf = std::fs::File::create(&log).map_err(ImageError::io(&log))?;
        let logf2 = logf.try_clone().map_err(ImageError::io(&log))?;
        let mut c = Command::new(&self.o.asl);
        c.arg("capture")
            .arg("--store")
            .arg(&self.store)
            .arg("--sign")
            .arg(&self.key)
            .args(["--trace", "none", "-q", "--label"])
            .arg(format!("image-{id}"))
            .arg("--outdir")
            .arg(&dir);
        for i in inputs {
            c.arg("--artifact-inputs").arg(i);
        }
        for p in outputs {
            c.arg("--output").arg(p);
        }
        c.arg("--").args(argv);
        c.current_dir(&self.work)
            .env("SOURCE_DATE_EPOCH", self.o.epoch.to_string())
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2);
        let t = Instant::now();
        let st = c.status().map_err(ImageError::io(&self.o.asl))?;
        let seconds = t.elapsed().as_secs_f64();
        if !st.success() {
            return Err(ImageError::Step {
                step: id,
                status: st.to_string(),
                tail: tail(&log, 25),
                log,
            });
        }
        for p in outputs {
            if !p.exists() {
                return Err(ImageError::StepOutput {
                    step: id,
                    message: format!("declared output {} was not made", p.display()),
                });
            }
        }
        let rp = dir.join("receipt.ref");
        let receipt = std::fs::read_to_string(&rp)
            .map_err(ImageError::io(&rp))?
            .trim()
            .to_string();
        (self.progress)(&format!("step {id}: done in {seconds:.1} s"));
        self.steps.push(StepRecord {
            step: name.into(),
            receipt,
            dir: format!("receipts/{id}"),
            seconds,
        });
        Ok(())
    }

    /// Runs a helper of the `asl` binary that is not a build step (store, key, DAG).
    fn asl(&self, args: &[OsString]) -> Result<(), ImageError> {
        let out = Command::new(&self.o.asl)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(ImageError::io(&self.o.asl))?;
        if !out.status.success() {
            return Err(ImageError::StepOutput {
                step: args[0].to_string_lossy().into_owned(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

fn tail(p: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn write(p: &Path, text: &str) -> Result<(), ImageError> {
    std::fs::write(p, text).map_err(ImageError::io(p))
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(p).map_err(ImageError::io(p))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(ImageError::io(p))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Builds the ISO of `o.profile` at `o.out`. `progress` receives one line per event.
pub fn build(o: &BuildOptions, progress: &mut dyn FnMut(&str)) -> Result<BuildReport, ImageError> {
    let started = Instant::now();
    if !rustix::process::geteuid().is_root() {
        return Err(ImageError::NotRoot);
    }
    check_tools()?;
    let src = sources::bookworm_sources(&o.apt_dir)?;
    let cache = Cache::new(&o.cache);
    let _lock = cache.lock()?;

    let out = std::path::absolute(&o.out).map_err(ImageError::io(&o.out))?;
    let build = build_dir(&out);
    if build.exists() {
        std::fs::remove_dir_all(&build).map_err(ImageError::io(&build))?;
    }
    let work = build.join("work");
    for d in [
        work.join("apt"),
        work.join("scripts"),
        work.join("boot-cfg"),
        build.join("receipts"),
        build.join("log"),
    ] {
        std::fs::create_dir_all(&d).map_err(ImageError::io(&d))?;
    }
    let key = match &o.key {
        Some(k) => k.clone(),
        None => cache.default_key(),
    };
    let mut r = Runner {
        o,
        build: build.clone(),
        work: work.clone(),
        store: build.join("store"),
        key: key.clone(),
        steps: Vec::new(),
        progress,
    };
    if !key.exists() {
        (r.progress)(&format!("making the builder key {}", key.display()));
        r.asl(&[
            "key".into(),
            "generate".into(),
            key.clone().into_os_string(),
        ])?;
    }
    r.asl(&[
        "init-store".into(),
        "--store".into(),
        r.store.clone().into_os_string(),
    ])?;

    // The apt sources, the scripts and the boot configuration are inputs of the steps.
    let sources_list = work.join("apt/sources.list");
    write(&sources_list, &src)?;
    let scripts = work.join("scripts");
    write(&scripts.join("rootfs.sh"), boot::ROOTFS_SH)?;
    write(&scripts.join("bootloader.sh"), boot::BOOTLOADER_SH)?;
    write(&scripts.join("iso.sh"), boot::ISO_SH)?;
    let cfg = work.join("boot-cfg");
    write(&cfg.join("grub.cfg"), &boot::grub_cfg(o.profile))?;
    write(&cfg.join("embedded.cfg"), &boot::embedded_cfg(o.profile))?;

    // apt-update, resolve: the exact package set, against a private, empty apt state.
    let apt = cache.apt_dir();
    let lists = apt.join("lists");
    for d in [lists.join("partial"), apt.join("cache/archives/partial")] {
        std::fs::create_dir_all(&d).map_err(ImageError::io(&d))?;
    }
    let status = apt.join("status");
    write(&status, "")?;
    let aptopts: Vec<OsString> = vec![
        format!("-oDir::State::Lists={}", lists.display()).into(),
        format!("-oDir::Cache={}", apt.join("cache").display()).into(),
        format!("-oDir::State::status={}", status.display()).into(),
        format!("-oDir::Etc::SourceList={}", sources_list.display()).into(),
        "-oDir::Etc::SourceParts=/nonexistent".into(),
        "-oAPT::Architectures=amd64".into(),
        "-oAPT::Install-Recommends=false".into(),
    ];
    let mut argv = os(&["apt-get", "update", "-q"]);
    argv.extend(aptopts.iter().cloned());
    r.step("apt-update", &[&sources_list], &[], &argv)?;

    let resolved = work.join("resolve.txt");
    let mut argv = os(&["sh", "-c", "out=$1; shift; exec \"$@\" > \"$out\"", "sh"]);
    argv.push(resolved.clone().into_os_string());
    argv.extend(os(&["apt-get", "--simulate", "install"]));
    argv.extend(aptopts.iter().cloned());
    argv.extend(base::install_patterns().into_iter().map(OsString::from));
    r.step("resolve", &[&sources_list, &lists], &[&resolved], &argv)?;
    let sim = std::fs::read_to_string(&resolved).map_err(ImageError::io(&resolved))?;
    let set = base::package_set(&sim);
    if set.is_empty() {
        return Err(ImageError::StepOutput {
            step: "resolve".into(),
            message: format!("no package to install in {}", resolved.display()),
        });
    }
    let packages = work.join("packages.txt");
    write(&packages, &(set.join("\n") + "\n"))?;
    let key_hex = base::key(&set);
    (r.progress)(&format!(
        "base: {} packages, key {}",
        set.len(),
        &key_hex[..16]
    ));

    // bootstrap, only for a package set the cache does not hold.
    let base_cached = cache.has(&key_hex);
    let entry = cache.entry(&key_hex);
    if base_cached {
        (r.progress)(&format!("base: cached in {}", entry.display()));
    } else {
        let partial = cache.partial(&key_hex);
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(ImageError::io(&partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(ImageError::io(&partial))?;
        let tar = partial.join("rootfs.tar");
        let mut argv = os(&[
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            "--format=tar",
            "--aptopt=APT::Install-Recommends \"false\"",
        ]);
        argv.extend(base::BOOTSTRAP_HOOKS.iter().map(OsString::from));
        argv.push(format!("--include={}", set.join(",")).into());
        argv.push(sources::SUITE.into());
        argv.push(tar.clone().into_os_string());
        argv.push(sources_list.clone().into_os_string());
        r.step("bootstrap", &[&sources_list, &packages], &[&tar], &argv)?;
        std::fs::copy(&packages, partial.join("packages.txt")).map_err(ImageError::io(&partial))?;
        std::fs::rename(&partial, &entry).map_err(ImageError::io(&entry))?;
    }
    let base_tar = entry.join("rootfs.tar");

    // overlay (checked by lint), layer, history.
    let profile = o.profile.to_string();
    let overlay = work.join("overlay");
    let mut argv = os(&["asl", "image", "overlay", "--profile", &profile, "--out"]);
    argv[0] = o.asl.clone().into_os_string();
    argv.push(overlay.clone().into_os_string());
    argv.push("--binary".into());
    argv.push(o.asl.clone().into_os_string());
    r.step("overlay", &[&o.asl], &[&overlay], &argv)?;
    let mut argv = vec![o.asl.clone().into_os_string()];
    argv.extend(os(&["image", "lint"]));
    argv.push(overlay.clone().into_os_string());
    argv.extend(os(&["--profile", &profile]));
    r.step("lint", &[&overlay], &[], &argv)?;
    let layer_dir = work.join("layer");
    let mut argv = vec![o.asl.clone().into_os_string()];
    argv.extend(os(&["image", "layer", "--profile", &profile, "--out"]));
    argv.push(layer_dir.clone().into_os_string());
    r.step("layer", &[], &[&layer_dir], &argv)?;
    let mut layers = vec![overlay.clone(), layer_dir.clone()];
    if o.history {
        let hist = work.join("history");
        let personal = hist.join("var/lib/asl/personal");
        let mut argv = os(&[
            "sh",
            "-c",
            "set -eu; p=$1; mkdir -p \"$p/per\" \"$p/scripts\" \"$p/binaries\"; \
             cp -a \"$2\"/. \"$p/per/\"; cp -a \"$3\"/. \"$p/scripts/\"; \
             cp \"$4\" \"$p/binaries/asl\"; cp \"$5\" \"$p/packages.txt\"",
            "sh",
        ]);
        for p in [
            &personal,
            &build.join("receipts"),
            &scripts,
            &o.asl,
            &packages,
        ] {
            argv.push(p.clone().into_os_string());
        }
        r.step(
            "history",
            &[&build.join("receipts"), &scripts, &o.asl, &packages],
            &[&hist],
            &argv,
        )?;
        layers.push(hist);
    }

    // rootfs: squashfs, kernel, initramfs.
    let iso = work.join("iso");
    let root = work.join("rootfs");
    let live = iso.join("live");
    let (sq, vmlinuz, initrd) = (
        live.join("filesystem.squashfs"),
        live.join("vmlinuz"),
        live.join("initrd.img"),
    );
    let mut argv = os(&["sh"]);
    argv.push(scripts.join("rootfs.sh").into_os_string());
    for p in [&base_tar, &root, &iso] {
        argv.push(p.clone().into_os_string());
    }
    argv.extend(layers.iter().map(|p| p.clone().into_os_string()));
    let script = scripts.join("rootfs.sh");
    let mut inputs: Vec<&Path> = vec![&script, &base_tar];
    inputs.extend(layers.iter().map(|p| p.as_path()));
    r.step("rootfs", &inputs, &[&sq, &vmlinuz, &initrd], &argv)?;
    std::fs::remove_dir_all(&root).map_err(ImageError::io(&root))?;

    // bootloader, iso.
    let vol = boot::volume_id(o.profile);
    let script = scripts.join("bootloader.sh");
    let bootdir = iso.join("boot");
    let marker = live.join(format!("{vol}.marker"));
    let mut argv = os(&["sh"]);
    argv.push(script.clone().into_os_string());
    argv.push(cfg.clone().into_os_string());
    argv.push(iso.clone().into_os_string());
    argv.push(vol.into());
    r.step("bootloader", &[&script, &cfg], &[&bootdir, &marker], &argv)?;

    let script = scripts.join("iso.sh");
    let mut argv = os(&["sh"]);
    argv.push(script.clone().into_os_string());
    argv.push(iso.clone().into_os_string());
    argv.push(vol.into());
    argv.push(out.clone().into_os_string());
    // The ISO's inputs are the earlier steps' outputs themselves (not the staging directory
    // around them), so that asl-why leads from the ISO back through every step.
    r.step(
        "iso",
        &[&script, &sq, &vmlinuz, &initrd, &bootdir, &marker],
        &[&out],
        &argv,
    )?;

    // The DAG next to the ISO, and the step list diff-builds reads.
    let dag = sibling(&out, ".dag.svg");
    (r.progress)(&format!("rendering {}", dag.display()));
    r.asl(&[
        "dag".into(),
        "--store".into(),
        r.store.clone().into_os_string(),
        "--format".into(),
        "svg".into(),
        "--out".into(),
        dag.clone().into_os_string(),
    ])?;
    let steps_json = build.join("steps.json");
    let text = serde_json::to_string_pretty(&r.steps).expect("steps serialise");
    write(&steps_json, &(text + "\n"))?;
    std::fs::remove_dir_all(&work).map_err(ImageError::io(&work))?;

    let sha256 = sha256_file(&out)?;
    let size = std::fs::metadata(&out).map_err(ImageError::io(&out))?.len();
    Ok(BuildReport {
        profile,
        iso: out,
        sha256,
        size,
        base_key: key_hex,
        base_cached,
        packages: set.len(),
        build_dir: build,
        dag: Some(dag),
        history: o.history,
        source_date_epoch: o.epoch,
        steps: r.steps,
        seconds: started.elapsed().as_secs_f64(),
    })
}
