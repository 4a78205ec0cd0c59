//! # asl-mountinfo — the kernel's mount table, parsed once
//!
//! Reads `/proc/PID/mountinfo` (proc(5)): one line per mount of a mount namespace,
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```
//!
//! mount id, parent id, major:minor, root of the mount within its file system, mount point,
//! per-mount options, optional fields ended by a lone `-`, file system type, source,
//! superblock options. The kernel escapes space, tab, newline and backslash in paths as
//! three octal digits (`\040`); every other byte of a path is written as it is, so a line
//! need not be UTF-8 and paths are kept as bytes.
//!
//! Preflight (the local store's mount), the capture's fanotify tracer (which file systems to
//! mark) and usroverlay (which overlays are mounted) all read this table; this crate is the
//! one parser they share. It only reads: it mounts and changes nothing, and it knows nothing
//! of what its callers look for.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One mount, as one line of mountinfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    pub parent: u64,
    /// The directory of the file system that is mounted (`/` unless a bind mount of a part).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`ro`/`rw`, `nosuid`, …).
    pub mount_options: String,
    pub fs_type: String,
    /// The mount source (a device, `none`, or a tag a tool chose), unescaped.
    pub source: String,
    /// Options of the file system's superblock; a file system mounted read-only anywhere is
    /// `ro` here for every mount of it.
    pub super_options: String,
}

impl MountEntry {
    /// Whether writes through this mount are refused, by the mount or by its superblock.
    pub fn is_read_only(&self) -> bool {
        let ro = |opts: &str| opts.split(',').any(|o| o == "ro");
        ro(&self.mount_options) || ro(&self.super_options)
    }
}

/// Reads and parses a mountinfo file (`/proc/self/mountinfo`, `/proc/PID/mountinfo`, or a
/// copy under a test root).
pub fn read(path: &Path) -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read(path)?))
}

/// Parses mountinfo text, in the kernel's order (a mount stacked on another comes after it).
/// A malformed line, which the kernel never writes, is skipped.
pub fn parse(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

fn parse_line(line: &[u8]) -> Option<MountEntry> {
    // Six fixed fields, then optional fields up to a lone `-`, then three more. The separator
    // is looked for only after the sixth field: a mount point may itself be `-`.
    let mut f = line.split(|&b| b == b' ');
    let id = number(f.next()?)?;
    let parent = number(f.next()?)?;
    let _device = f.next()?;
    let root = path(f.next()?);
    let mount_point = path(f.next()?);
    let mount_options = text(f.next()?);
    for optional in f.by_ref() {
        if optional == b"-" {
            break;
        }
    }
    let fs_type = text(f.next()?);
    let source = String::from_utf8_lossy(&unescape(f.next()?)).into_owned();
    let super_options = f.next().map(text).unwrap_or_default();
    Some(MountEntry {
        id,
        parent,
        root,
        mount_point,
        mount_options,
        fs_type,
        source,
        super_options,
    })
}

fn number(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

fn path(field: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&unescape(field)))
}

/// Undoes the kernel's octal escapes (`\040` for a space); a backslash not followed by
/// three octal digits stays as it is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                // Three octal digits can name up to 0o777; the kernel only writes bytes.
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the kernel's `seq_path` does to a path in mountinfo.
    fn escape(path: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in path {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
                out.extend_from_slice(format!("\\{b:03o}").as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn parses_every_field_of_a_line_from_proc5() {
        let t = b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n";
        let m = &parse(t)[0];
        assert_eq!((m.id, m.parent), (36, 35));
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert_eq!(m.mount_options, "rw,noatime");
        assert_eq!(
            (m.fs_type.as_str(), m.source.as_str()),
            ("ext3", "/dev/root")
        );
        assert_eq!(m.super_options, "rw,errors=continue");
        assert!(!m.is_read_only());
    }

    #[test]
    fn escapes_are_undone_and_non_utf8_paths_kept_as_bytes() {
        let t = b"1 0 0:1 / /mnt/a\\040b\\134c\xff rw - tmpfs my\\040src ro\n";
        let m = &parse(t)[0];
        assert_eq!(m.mount_point.as_os_str().as_bytes(), b"/mnt/a b\\c\xff");
        assert_eq!(m.source, "my src");
        assert!(m.is_read_only(), "ro superblock");
    }

    #[test]
    fn an_escape_at_the_very_end_of_a_field_is_undone() {
        assert_eq!(unescape(b"/a\\040"), b"/a ");
        assert_eq!(unescape(b"/a\\04"), b"/a\\04");
        assert_eq!(unescape(b"\\"), b"\\");
    }

    #[test]
    fn optional_fields_and_malformed_lines() {
        let t = b"5 1 0:2 / /x rw shared:1 master:2 - overlay ov rw,lowerdir=/a\nnot a line\n\n6 5 0:3 / - rw - tmpfs none rw\n";
        let all = parse(t);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].fs_type, "overlay");
        assert_eq!(
            all[1].mount_point,
            Path::new("-"),
            "a mount point that is a lone dash"
        );
        assert_eq!(all[1].fs_type, "tmpfs");
    }

    #[test]
    fn the_running_kernels_table_has_a_root_mount() {
        let all = read(Path::new("/proc/self/mountinfo")).expect("read mountinfo");
        assert!(
            all.iter().any(|m| m.mount_point == Path::new("/")),
            "{all:?}"
        );
    }

    proptest! {
        #[test]
        fn escaped_paths_round_trip(p in proptest::collection::vec(1u8..=255, 1..64)) {
            // A path holds no NUL byte.
            let mut line = b"7 1 0:3 / ".to_vec();
            line.extend(escape(&p));
            line.extend_from_slice(b" rw - ext4 /dev/x rw");
            let all = parse(&line);
            prop_assert_eq!(all.len(), 1);
            prop_assert_eq!(all[0].mount_point.as_os_str().as_bytes(), &p[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(t in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&t);
        }
    }
}
