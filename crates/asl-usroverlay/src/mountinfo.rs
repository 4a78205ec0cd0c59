//! Reading `/proc/self/mountinfo`: the kernel's view of what is mounted in this mount
//! namespace. Overlays made by this crate carry a recognisable mount *source*
//! (`asl-usroverlay:NAME`, tmpfs layers `asl-usroverlay-layer:NAME`), so they can be found
//! even when the tool died before it could finish its record.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One line of mountinfo (only the fields this crate uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    pub parent: u64,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// Per-mount options (`ro`/`rw`, `nosuid`, ...).
    pub mount_options: String,
}

/// The mount source tag of the overlay named `name`.
pub fn overlay_source(name: &str) -> String {
    format!("asl-usroverlay:{name}")
}

/// The mount source tag of the tmpfs holding the layers of a transient overlay.
pub fn layer_source(name: &str) -> String {
    format!("asl-usroverlay-layer:{name}")
}

/// Reads the mount table of the calling thread's mount namespace (`thread-self`, not `self`:
/// a helper thread may have a private namespace of its own).
pub fn read() -> Result<Vec<MountEntry>> {
    let path = Path::new("/proc/thread-self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    Ok(parse(&text))
}

/// Parses mountinfo text; malformed lines are skipped (the kernel never writes them).
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point mount_options [optional...] - fstype source super
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let id = l.next()?.parse().ok()?;
    let parent = l.next()?.parse().ok()?;
    let _devno = l.next()?;
    let _root = l.next()?;
    let mount_point = PathBuf::from(unescape(l.next()?));
    let mount_options = l.next()?.to_string();
    let mut r = right.split(' ');
    let fs_type = r.next()?.to_string();
    let source = unescape(r.next()?);
    Some(MountEntry {
        id,
        parent,
        mount_point,
        fs_type,
        source,
        mount_options,
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040` ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts whose mount point is exactly `path`, in the order the kernel lists them (a
/// mount stacked on top of another comes after it).
pub fn at<'a>(table: &'a [MountEntry], path: &Path) -> impl Iterator<Item = &'a MountEntry> {
    table.iter().filter(move |m| m.mount_point == path)
}

/// The overlay of `name` on `path`, if it is mounted.
pub fn find_overlay<'a>(
    table: &'a [MountEntry],
    name: &str,
    path: &Path,
) -> Option<&'a MountEntry> {
    let tag = overlay_source(name);
    at(table, path).find(|m| m.fs_type == "overlay" && m.source == tag)
}

/// The tmpfs layer of `name` on `layer`, if it is mounted.
pub fn find_layer<'a>(table: &'a [MountEntry], name: &str, layer: &Path) -> Option<&'a MountEntry> {
    let tag = layer_source(name);
    at(table, layer).find(|m| m.fs_type == "tmpfs" && m.source == tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:51 / /usr rw,relatime shared:40 - overlay asl-usroverlay:usr rw,lowerdir+=/usr
91 22 0:52 / /run/asl/usroverlay/my\\040dir rw - tmpfs asl-usroverlay-layer:x rw,mode=700
";

    #[test]
    fn parses_fields_and_unescapes_mount_points() {
        let t = parse(SAMPLE);
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].id, 90);
        assert_eq!(t[1].parent, 22);
        assert_eq!(t[1].fs_type, "overlay");
        assert_eq!(t[1].source, "asl-usroverlay:usr");
        assert_eq!(t[2].mount_point, Path::new("/run/asl/usroverlay/my dir"));
        assert!(find_overlay(&t, "usr", Path::new("/usr")).is_some());
        assert!(find_overlay(&t, "usr", Path::new("/opt")).is_none());
        assert!(find_overlay(&t, "other", Path::new("/usr")).is_none());
        assert!(find_layer(&t, "x", Path::new("/run/asl/usroverlay/my dir")).is_some());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse("garbage\n1 2 3\n").is_empty());
    }
}
