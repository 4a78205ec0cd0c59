//! Reading `/proc/self/mountinfo`: the kernel's view of what is mounted in this mount
//! namespace. Overlays made by this crate carry a recognisable mount *source*
//! (`asl-usroverlay:NAME`, tmpfs layers `asl-usroverlay-layer:NAME`), so they can be found
//! even when the tool died before it could finish its record.

use std::path::Path;

use crate::error::{Error, Result};

/// One line of mountinfo, as the toolkit's shared parser reads it.
pub use asl_mountinfo::MountEntry;

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
    asl_mountinfo::read(path).map_err(|e| Error::io("read", path, e))
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
    fn finds_its_overlays_and_layers_by_source_and_mount_point() {
        let t = asl_mountinfo::parse(SAMPLE.as_bytes());
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
}
