use std::path::{Component, Path, PathBuf};

/// The file-system root the host tools work on: `/` on a live system, another directory for
/// tests and image building (`--root DIR` / `ASL_ROOT`).
///
/// Paths named by configuration (`/etc/asl/asl.conf`, `local.mount = /mnt/asl/local`, ...) are
/// always absolute *inside* the root; [`Root::join`] maps them to the real location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root(dir.into())
    }

    /// The real root directory.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// Whether this is the live system (`/`).
    pub fn is_host(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// Maps an absolute in-root path to the real path. `..` components are dropped rather than
    /// followed, so a configured path can never name something outside the root.
    pub fn join(&self, inner: impl AsRef<Path>) -> PathBuf {
        let mut out = self.0.clone();
        for c in inner.as_ref().components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }
}

impl Default for Root {
    fn default() -> Root {
        Root::new("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_maps_absolute_paths_under_the_root_and_ignores_dotdot() {
        let r = Root::new("/tmp/x");
        assert_eq!(
            r.join("/etc/asl/asl.conf"),
            Path::new("/tmp/x/etc/asl/asl.conf")
        );
        assert_eq!(r.join("/../../etc"), Path::new("/tmp/x/etc"));
        assert!(Root::default().is_host());
        assert!(!r.is_host());
    }
}
