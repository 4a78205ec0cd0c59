//! Building the bootable images: `asl-image build` and `asl-image diff-builds`.
//!
//! The build orchestrates proven Debian tools (apt-get, mmdebstrap, mksquashfs, grub-mkimage,
//! mkfs.fat, mtools, xorriso) and runs every step under `asl-capture`, so each step leaves a
//! signed receipt in a build store next to the ISO. Nothing here reimplements a file system or
//! a boot loader.
//!
//! * [`sources`] — the configured apt sources for Debian bookworm, as one `sources.list`.
//! * [`base`] — the package set of the base root (resolved to exact `name=version`) and the
//!   cache of base roots keyed by it.
//! * [`layer`] — the image layer: what a bootable host needs beyond the overlay contract
//!   (console login, the store mount by label, network policy, first-boot units).
//! * [`boot`] — GRUB configuration and the scripts that make the boot images and the ISO.
//! * [`build`] — the pipeline itself.
//! * [`diff`] — compares two builds' receipts and names the first step whose output differs.

pub mod base;
pub mod boot;
pub mod build;
pub mod diff;
pub mod layer;
pub mod sources;

use std::path::PathBuf;

/// Everything that can stop a build or a comparison; each names the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "{tool} not found on PATH: install the Debian package {package} (scripts/deps/image.apt)"
    )]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{path} missing: install the Debian package {package} (scripts/deps/image.apt)")]
    MissingFile {
        path: &'static str,
        package: &'static str,
    },
    #[error(
        "no apt source for Debian bookworm is configured (looked in {searched}); add one, e.g. \
         'deb http://deb.debian.org/debian bookworm main' to /etc/apt/sources.list"
    )]
    NoAptSource { searched: String },
    #[error("asl-image build needs root: mmdebstrap --mode=root and the image's file ownership")]
    NotRoot,
    #[error("step {step} failed ({status}); its log is {log}:\n{tail}")]
    Step {
        step: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("step {step}: {message}")]
    StepOutput { step: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a build record: {message}")]
    Record { path: PathBuf, message: String },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }
}

/// Looks a program up on `PATH`.
pub(crate) fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
