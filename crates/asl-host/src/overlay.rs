//! Overlay profiles: the tree merged over a base system to make a rescue intake host (seed 000)
//! or an offline authority host (seed 001), generated as data and checked by a lint.
//!
//! Each profile's contract is a list of [`Entry`]s ([`Profile::contract`]), each saying where
//! it comes from ([`Origin`]) and whether the lint requires it. For the rescue profile the list
//! is seed 000's layout, in the seed's words: allowed, and required unless the seed calls the
//! entry optional (the library at `usr/local/lib/libasl.so` is allowed but not required:
//! nothing in the seed uses it). The project's additions — `usr/local/bin/asl`, further tool
//! links, the `multi-user.target.wants` links — are allowed, and a tool is required only when a
//! unit of the tree runs it, with that unit named in the message.
//!
//! The overlay contract (what [`lint`] enforces, one [`Violation`] per problem, each naming the
//! file):
//! * only the paths the contract lists exist, plus empty directories under its state roots;
//! * every path the contract requires exists;
//! * executables only in `usr/local/bin` (the binary and its tool links); nothing executable or
//!   privileged elsewhere — `usr/bin`, `bin`, `lib` are never written;
//! * the library, where present, is a regular file without exec bits;
//! * nothing but empty directories under `var/lib/asl`, `mnt/` and `run/` (and `var/log` for the
//!   authority host): state is created at runtime, never shipped;
//! * no private keys or secrets under `etc/` (or anywhere else); the three config files parse
//!   strictly;
//! * everything owned by root:root; no setuid/setgid files; nothing world-writable; no device
//!   nodes, FIFOs or sockets; symlinks only where the profile puts them;
//! * rescue only: units, `etc/fstab`, mount units and the pool cache keep seed 000's rules
//!   ([`rules`]): never write to /usr, /bin, /lib; no state in /etc; never auto-mount the
//!   crashed root; never assume ZFS or the network; never import pools without approval.
//!
//! Deviation from seed 001, on purpose: the authority profile puts its tools in
//! `usr/local/bin` rather than `bin/` (on merged-/usr systems such as Debian 12 `bin` is a
//! symlink to `usr/bin`, and copying a real `bin/` directory over it fails), and ships no log
//! file in `var/log` (a log is state; it is created at runtime).

use std::path::{Path, PathBuf};

use crate::config::{AslConf, FederationConf, LoggingConf};
use crate::units;

mod contract;
mod generate;
pub(crate) use generate::set_mtime;
mod lint;
pub mod rules;

pub use contract::{Entry, Kind, Origin, Profile};
pub use generate::{OverlayInputs, builds_as_root, generate};
pub use lint::{Violation, lint};

use rules::{Finding, Rule};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{0}: already exists and is not an empty directory; choose a new --out or remove it")]
    OutExists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "{path}: is not a shared library ({why}); give the libasl.so cargo builds (target/release/libasl.so)"
    )]
    NotASharedLibrary { path: PathBuf, why: String },
    #[error(
        "the {0} overlay carries no libasl.so (only the rescue profile, after seed 000, does); leave out the library"
    )]
    NoLibraryInProfile(Profile),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OverlayError + '_ {
    move |source| OverlayError::Io {
        path: path.to_path_buf(),
        source,
    }
}
