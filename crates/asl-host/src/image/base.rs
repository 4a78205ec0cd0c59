//! The base root: a Debian bookworm minbase plus the packages a booted image needs, cached by
//! its exact package set.
//!
//! The set is resolved before anything is built (`apt-get --simulate` against a private apt
//! state that starts empty, so the answer is the whole set, not a difference to the build
//! host), and written as sorted `name=version` lines. The cache key is the SHA-256 of those
//! lines plus the recipe version: a rebuild against the same archive state finds the same key
//! and reuses the root; an archive update that changes any version changes the key. The
//! bootstrap then installs exactly the resolved versions (`--include=name=version`), so what
//! the key says is what the tarball holds.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

/// Bumped whenever the bootstrap recipe (options, hooks) changes what a given package set
/// produces, so old cache entries are not reused for the new recipe.
pub const RECIPE: &str = "asl-image-base/2 mmdebstrap minbase, one initramfs";

/// mmdebstrap hooks of the bootstrap, for time (bench/results/2026-12-07-images-*.md
/// profiles it: two thirds of a cold build went to installing packages):
///
/// * dpkg skips its per-file fsyncs (`force-unsafe-io`) while the root is built: the tarball
///   is written and synced once at the end, so a crash mid-bootstrap loses nothing that
///   matters (the cache entry only appears by rename after the step). The setting is removed
///   again, with its directory's time, so it is not in the image.
/// * The initramfs is made once, at the end, not twice: the kernel's postinst would make one
///   before live-boot's hooks are installed, and live-boot's trigger would make it again.
///   While packages install, `update-initramfs` is diverted to `true`; the customize hook
///   puts it back and runs it once, with live-boot's hooks in place.
pub const BOOTSTRAP_HOOKS: &[&str] = &[
    "--setup-hook=mkdir -p \"$1/etc/dpkg/dpkg.cfg.d\" \
     && echo force-unsafe-io > \"$1/etc/dpkg/dpkg.cfg.d/00asl-unsafe-io\"",
    "--essential-hook=chroot \"$1\" dpkg-divert --quiet --local --rename \
     --add /usr/sbin/update-initramfs && ln -s /bin/true \"$1/usr/sbin/update-initramfs\"",
    "--customize-hook=rm \"$1/usr/sbin/update-initramfs\" \
     && chroot \"$1\" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs \
     && rm -f \"$1/var/lib/dpkg/diversions-old\" \
     && chroot \"$1\" update-initramfs -c -k all",
    "--customize-hook=d=\"$1/etc/dpkg/dpkg.cfg.d\"; t=$(stat -c %Y \"$d\"); \
     rm \"$d/00asl-unsafe-io\" && touch -d \"@$t\" \"$d\"",
];

/// Packages every image gets on top of minbase (Essential + Priority required + apt). Both
/// profiles share them, hence share one cached base.
pub const PACKAGES: &[&str] = &[
    "linux-image-amd64", // the kernel; its initramfs is built by initramfs-tools
    "live-boot",         // boots /live/filesystem.squashfs from the ISO or disk
    "systemd-sysv",      // systemd as init: the units are the point of the image
    "udev",              // /dev/disk/by-label: the store disk is found by its label
    "iproute2",          // ip: VLAN and veth links of subhosts, the operator's network checks
    "kmod",              // modprobe 8021q and friends
    "e2fsprogs",         // mkfs/fsck of store disks
    "zstd",
];

/// The apt patterns that give minbase plus [`PACKAGES`], as mmdebstrap's minbase variant
/// installs them.
pub fn install_patterns() -> Vec<String> {
    let mut v = vec![
        "?essential".to_string(),
        "?priority(required)".to_string(),
        "apt".to_string(),
    ];
    v.extend(PACKAGES.iter().map(|s| s.to_string()));
    v
}

/// Parses `apt-get --simulate install` output into sorted, unique `name=version` lines.
pub fn package_set(simulated: &str) -> Vec<String> {
    let mut v: Vec<String> = simulated
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|rest| {
            // Inst NAME [OLD] (VERSION ARCHIVE [ARCH]) ...
            let name = rest.split_whitespace().next()?;
            let ver = rest.split_once('(')?.1.split_whitespace().next()?;
            Some(format!("{name}={ver}"))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The cache key of a package set: hex SHA-256 over the recipe and the set.
pub fn key(set: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE.as_bytes());
    h.update(b"\n");
    for p in set {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The cache directory layout.
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(dir: &Path) -> Self {
        Cache { dir: dir.into() }
    }
    /// The private apt state (lists, archives) the package set is resolved against.
    pub fn apt_dir(&self) -> PathBuf {
        self.dir.join("apt")
    }
    /// The entry of one package set: `rootfs.tar` and `packages.txt`.
    pub fn entry(&self, key: &str) -> PathBuf {
        self.dir.join("base").join(key)
    }
    /// Where a bootstrap writes before the entry is renamed into place.
    pub fn partial(&self, key: &str) -> PathBuf {
        self.dir.join("base").join(format!("{key}.partial"))
    }
    /// A complete entry has its tarball; a partial one is never renamed into place.
    pub fn has(&self, key: &str) -> bool {
        self.entry(key).join("rootfs.tar").is_file()
    }
    /// The builder's key, made on first use.
    pub fn default_key(&self) -> PathBuf {
        self.dir.join("builder.key")
    }
    /// Takes the cache's lock (held until the returned file is dropped): two builds sharing a
    /// cache must not bootstrap into the same partial entry.
    pub fn lock(&self) -> Result<std::fs::File, ImageError> {
        std::fs::create_dir_all(self.dir.join("base")).map_err(ImageError::io(&self.dir))?;
        let p = self.dir.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(ImageError::io(&p))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| ImageError::io(&p)(e.into()))?;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulate_output_gives_sorted_name_version_lines() {
        let s = "NOTE: x\nInst zstd (1.5.4 Debian:12/stable [amd64])\n\
                 Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []\n\
                 Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n\
                 Inst base-files [12.4] (12.4+deb12u1 Debian:12/stable [amd64])\n";
        assert_eq!(
            package_set(s),
            vec![
                "base-files=12.4+deb12u1",
                "libc6=2.36-9+deb12u14",
                "zstd=1.5.4"
            ]
        );
    }

    #[test]
    fn the_key_changes_with_any_version() {
        let a = vec!["a=1".to_string(), "b=2".to_string()];
        let b = vec!["a=1".to_string(), "b=3".to_string()];
        assert_eq!(key(&a), key(&a.clone()));
        assert_ne!(key(&a), key(&b));
        assert_eq!(key(&a).len(), 64);
    }
}
