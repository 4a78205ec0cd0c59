//! Reading an upper layer: what it changed relative to the tree underneath, and how much
//! space it takes.
//!
//! overlayfs records changes in the upper directory like this (mounted with
//! `redirect_dir=off,metacopy=off`, as this crate does):
//! * a new or modified file is a full copy in the upper at the same relative path;
//! * a deleted lower entry is a *whiteout*: a character device 0/0 of the same name;
//! * a directory that replaced a lower one (`rm -r d; mkdir d`) carries the xattr
//!   `trusted.overlay.opaque=y`, hiding everything of the lower directory;
//! * directories merely containing changes are copied up with the lower's metadata.
//!
//! Whether an upper entry is *added* or *changed* depends on the lower tree, so the caller
//! provides a view of it (see `Overlays::diff`).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// What an upper layer changed, as absolute paths in the covered tree, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Entries that do not exist underneath.
    pub added: Vec<PathBuf>,
    /// Entries that replace one underneath (content, type or, for directories, owner/mode).
    pub changed: Vec<PathBuf>,
    /// Entries of the tree underneath hidden by a whiteout.
    pub deleted: Vec<PathBuf>,
    /// Directories that hide the whole directory underneath (its entries are gone unless
    /// listed again as added/changed).
    pub opaque: Vec<PathBuf>,
}

impl Diff {
    /// Total number of listed changes.
    pub fn len(&self) -> usize {
        self.added.len() + self.changed.len() + self.deleted.len() + self.opaque.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Space used by an upper layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Allocated bytes (`st_blocks * 512`) of every entry below the upper directory.
    pub bytes: u64,
    /// Number of entries below the upper directory (whiteouts included).
    pub entries: u64,
}

/// Sums the allocation of everything below `upper`. A missing upper counts as empty.
pub fn usage(upper: &Path) -> Result<Usage> {
    let mut u = Usage::default();
    match fs::symlink_metadata(upper) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(u),
        Err(e) => return Err(Error::io("stat", upper, e)),
        Ok(_) => {}
    }
    let mut stack = vec![upper.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            let p = entry.path();
            let md = fs::symlink_metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
            u.bytes += md.blocks() * 512;
            u.entries += 1;
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok(u)
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// `trusted.overlay.opaque` (or `user.overlay.opaque` for user-xattr mounts) equal to `y`.
/// The value `x` means "may contain xattr whiteouts" and is not opacity.
fn is_opaque(path: &Path) -> Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        let mut buf = [0u8; 8];
        match rustix::fs::lgetxattr(path, name, &mut buf) {
            Ok(n) => {
                if buf[..n] == *b"y" {
                    return Ok(true);
                }
            }
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => {}
            Err(e) => return Err(Error::sys("read overlay xattrs of", path, e)),
        }
    }
    Ok(false)
}

fn lower_meta(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(md) => Ok(Some(md)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // A lower path whose parent is a file: nothing of that name underneath.
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Compares `upper` with the tree at `lower`; paths are reported below `shown_as` (the
/// covered path, which `lower` usually equals).
pub fn diff(upper: &Path, lower: &Path, shown_as: &Path) -> Result<Diff> {
    let mut d = Diff::default();
    walk(upper, lower, shown_as, &mut d)?;
    for list in [&mut d.added, &mut d.changed, &mut d.deleted, &mut d.opaque] {
        list.sort();
    }
    Ok(d)
}

fn walk(upper: &Path, lower: &Path, shown: &Path, d: &mut Diff) -> Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(upper).map_err(|e| Error::io("list", upper, e))? {
        names.push(entry.map_err(|e| Error::io("list", upper, e))?.file_name());
    }
    names.sort();
    for name in names {
        let (u, l, s) = (upper.join(&name), lower.join(&name), shown.join(&name));
        let md = fs::symlink_metadata(&u).map_err(|e| Error::io("stat", &u, e))?;
        let under = lower_meta(&l)?;
        if is_whiteout(&md) {
            // A whiteout with nothing underneath can be left by create+delete of a name
            // that was a whiteout already; it changes nothing visible.
            if under.is_some() {
                d.deleted.push(s);
            }
            continue;
        }
        if md.is_dir() {
            match &under {
                None => d.added.push(s.clone()),
                Some(lm) if !lm.is_dir() => d.changed.push(s.clone()),
                Some(lm) => {
                    if is_opaque(&u)? {
                        d.opaque.push(s.clone());
                    } else if (lm.mode(), lm.uid(), lm.gid()) != (md.mode(), md.uid(), md.gid()) {
                        d.changed.push(s.clone());
                    }
                }
            }
            walk(&u, &l, &s, d)?;
        } else if under.is_some() {
            d.changed.push(s);
        } else {
            d.added.push(s);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_upper_entries_are_added_or_changed_depending_on_the_lower() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("u"), t.path().join("l"));
        fs::create_dir_all(upper.join("sub")).unwrap();
        fs::create_dir_all(lower.join("sub")).unwrap();
        fs::write(lower.join("sub/old"), "1").unwrap();
        fs::write(upper.join("sub/old"), "2").unwrap();
        fs::write(upper.join("sub/new"), "3").unwrap();
        fs::create_dir(upper.join("newdir")).unwrap();
        let d = diff(&upper, &lower, Path::new("/usr")).unwrap();
        assert_eq!(d.changed, vec![PathBuf::from("/usr/sub/old")]);
        assert_eq!(
            d.added,
            vec![PathBuf::from("/usr/newdir"), PathBuf::from("/usr/sub/new")]
        );
        assert!(d.deleted.is_empty() && d.opaque.is_empty());
        let u = usage(&upper).unwrap();
        assert_eq!(u.entries, 4);
    }
}
