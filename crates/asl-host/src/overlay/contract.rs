//! Each profile's contract: the entries an overlay of it may and must hold, and where each
//! comes from (seed 000's list, the project's additions, or the authority profile).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use super::*;

/// An overlay profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The SystemRescue intake overlay (seed 000).
    Rescue,
    /// The offline authority host image overlay (seed 001).
    AuthHost,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Rescue, Profile::AuthHost];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Rescue => "rescue",
            Profile::AuthHost => "auth-host",
        }
    }

    /// Every entry of the profile's contract: what the lint allows, and what it requires.
    /// Generation writes all of them except the library (written only when given).
    pub fn contract(self) -> Vec<Entry> {
        use Kind::*;
        use Origin::{Project, Seed};
        let e = |path, kind, required, origin| Entry {
            path,
            kind,
            required,
            origin,
        };
        match self {
            // Seed 000's layout, entry by entry, in its own words; then what the project adds.
            Profile::Rescue => vec![
                e(
                    "usr/local/bin/asl-intake",
                    Tool,
                    true,
                    Seed("asl-intake: Primary recovery/intake executable"),
                ),
                e(
                    "usr/local/bin/asl-admin",
                    Tool,
                    true,
                    Seed("asl-admin: Inspection, snapshot listing, GC checks"),
                ),
                e(
                    "usr/local/bin/asl-debug",
                    Tool,
                    true,
                    Seed("asl-debug: Low-level validation, block/segment inspection"),
                ),
                e(
                    LIBASL,
                    Library,
                    false,
                    Seed("libasl.so (under usr/local/lib/)"),
                ),
                e(
                    "etc/asl/asl.conf",
                    Config,
                    true,
                    Seed("asl.conf # mode selection, endpoints"),
                ),
                e(
                    "etc/asl/federation.conf",
                    Config,
                    true,
                    Seed("federation.conf # domain + peer config"),
                ),
                e("etc/asl/logging.conf", Config, true, Seed("logging.conf")),
                e(
                    "etc/systemd/system/asl-intake.service",
                    Unit,
                    true,
                    Seed("asl-intake.service: Starts the tool"),
                ),
                e(
                    "etc/systemd/system/asl-preflight.service",
                    Unit,
                    true,
                    Seed("asl-preflight.service: Runs once at boot"),
                ),
                e(
                    "var/lib/asl/runtime",
                    Dir,
                    true,
                    Seed("runtime/ # ephemeral runtime state"),
                ),
                e(
                    "var/lib/asl/cache",
                    Dir,
                    false,
                    Seed("cache/ # optional CAS cache"),
                ),
                e("var/lib/asl/locks", Dir, true, Seed("locks/")),
                e(
                    "run/asl/sockets",
                    Dir,
                    false,
                    Seed("sockets/ # if used (optional)"),
                ),
                e(
                    "mnt/asl/local",
                    Dir,
                    true,
                    Seed("local/ # local ZFS mount target"),
                ),
                e(
                    "mnt/asl/remote",
                    Dir,
                    false,
                    Seed("remote/ # optional remote FS"),
                ),
                e(
                    "etc/asl/keys",
                    Dir,
                    false,
                    Project(
                        "the client key slot of remote intake (asl.conf remote.key): empty in \
                         the image, filled by the operator; the Mozilla TLS roots are built \
                         into the binary, a site CA goes in etc/asl/ca (remote.ca)",
                    ),
                ),
                e(
                    "etc/asl/ca",
                    Dir,
                    false,
                    Project(
                        "site CA certificates for remote.ca (PEM), if the server's is not a public one",
                    ),
                ),
                e(
                    LIBASL_SONAME,
                    LibraryLink,
                    false,
                    Project("the soname programs linked with -lasl load; a symlink to libasl.so"),
                ),
                e(
                    "usr/local/bin/asl",
                    Tool,
                    false,
                    Project("the multicall binary the tool names link to"),
                ),
                e(
                    "etc/systemd/system/multi-user.target.wants/asl-preflight.service",
                    WantsLink,
                    false,
                    Project("enables the unit at boot, as `systemctl enable` does"),
                ),
                e(
                    "etc/systemd/system/multi-user.target.wants/asl-intake.service",
                    WantsLink,
                    false,
                    Project("enables the unit at boot, as `systemctl enable` does"),
                ),
            ],
            // The authority host (seed 001) keeps its contract: everything it ships is required.
            Profile::AuthHost => vec![
                e("usr/local/bin/asl", Tool, true, Origin::Profile),
                e("usr/local/bin/asl-preflight", Tool, true, Origin::Profile),
                e("usr/local/bin/asl-admin", Tool, true, Origin::Profile),
                e("etc/asl/asl.conf", Config, true, Origin::Profile),
                e("etc/asl/federation.conf", Config, true, Origin::Profile),
                e("etc/asl/logging.conf", Config, true, Origin::Profile),
                e(
                    "etc/systemd/system/asl-preflight.service",
                    Unit,
                    true,
                    Origin::Profile,
                ),
                e(
                    "etc/systemd/system/multi-user.target.wants/asl-preflight.service",
                    WantsLink,
                    true,
                    Origin::Profile,
                ),
                e("var/lib/asl/common", Dir, true, Origin::Profile),
                e("var/lib/asl/personal", Dir, true, Origin::Profile),
                e("var/lib/asl/pools", Dir, true, Origin::Profile),
                e("var/log", Dir, true, Origin::Profile),
                e("run/asl", Dir, true, Origin::Profile),
                e("mnt/asl/local", Dir, true, Origin::Profile),
            ],
        }
    }

    /// Directories under which only empty directories may exist.
    pub(super) fn state_roots(self) -> &'static [&'static str] {
        match self {
            Profile::Rescue => &["var/lib/asl", "mnt", "run"],
            Profile::AuthHost => &["var/lib/asl", "var/log", "mnt", "run"],
        }
    }

    /// Tool names generation always links to the binary: the contract's tools and the
    /// programs the profile's units run.
    pub(super) fn generated_tools(self) -> Vec<String> {
        let mut tools: Vec<String> = self
            .contract()
            .iter()
            .filter(|e| e.kind == Kind::Tool)
            .filter_map(|e| e.path.strip_prefix("usr/local/bin/").map(String::from))
            .collect();
        for (name, text) in units::all() {
            if self.units().contains(&name) {
                for (prog, _) in rules::programs(&text) {
                    if let Some(t) = prog.strip_prefix("/usr/local/bin/") {
                        tools.push(t.to_string());
                    }
                }
            }
        }
        tools
    }

    pub(super) fn units(self) -> Vec<&'static str> {
        self.contract()
            .iter()
            .filter(|e| e.kind == Kind::Unit)
            .filter_map(|e| e.path.strip_prefix("etc/systemd/system/"))
            .collect()
    }

    pub(super) fn configs(self) -> [(&'static str, String); 3] {
        let asl = match self {
            Profile::Rescue => "# /etc/asl/asl.conf: rescue intake (generated by asl-image; reference: docs/config.md)\n\
# Declarative only: no state, no secrets.\n\
mode = auto              # auto | local | remote\n\
local.mount = /mnt/asl/local\n\
local.create = no        # never create a store on a disk the operator did not prepare\n\
# local.pool = rescuepool\n\
# remote.endpoint = https://asl-backend.example.org:8443/main\n\
# remote.key = /etc/asl/keys/client.key   # the client key slot (asl-key generate)\n\
# remote.ca = /etc/asl/ca/site.pem        # unset: the Mozilla roots\n\
# domain.id = rescue-domain\n"
                .to_string(),
            Profile::AuthHost => "# /etc/asl/asl.conf: offline authority host (generated by asl-image; reference: docs/config.md)\n\
# Declarative only: no state, no secrets.\n\
mode = local             # offline by design: never use a remote endpoint\n\
local.mount = /mnt/asl/local\n\
local.create = yes       # the authority host initialises its domain stores\n\
# local.pool = authpool\n\
# domain.id = authority-domain\n"
                .to_string(),
        };
        let federation = "# /etc/asl/federation.conf: this host's domain and its peers (reference: docs/config.md)\n\
# domain.id = rescue-domain\n\
# peer.common.endpoint = https://common.example.org\n\
# peer.common.domain = common\n\
# peer.common.key = ed25519:<64 hex digits of the peer's PUBLIC key>\n"
            .to_string();
        let logging = "# /etc/asl/logging.conf (reference: docs/config.md)\n\
level = info             # error | warn | info | debug | trace\n\
target = stderr          # stderr | journal | file\n\
format = text            # text | json\n"
            .to_string();
        [
            ("etc/asl/asl.conf", asl),
            ("etc/asl/federation.conf", federation),
            ("etc/asl/logging.conf", logging),
        ]
    }

    /// Every directory the profile's tree may contain: its empty directories and the parents
    /// of every entry.
    pub(super) fn dirs(self) -> BTreeSet<PathBuf> {
        dirs_of(self.contract())
    }
}

pub(super) fn dirs_of(entries: impl IntoIterator<Item = Entry>) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for e in entries {
        let p = Path::new(e.path);
        if e.kind == Kind::Dir {
            dirs.insert(p.to_path_buf());
        }
        let mut up = p.parent();
        while let Some(d) = up {
            if d.as_os_str().is_empty() {
                break;
            }
            dirs.insert(d.to_path_buf());
            up = d.parent();
        }
    }
    dirs
}

/// What an entry of a profile's contract is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An empty directory (state is created at runtime, never shipped).
    Dir,
    /// An executable in `usr/local/bin` (or a link to one there).
    Tool,
    /// One of the three `/etc/asl` files, checked by the strict parser.
    Config,
    /// A systemd unit, checked against the seed's rules.
    Unit,
    /// `multi-user.target.wants/<unit>`, a symlink to `../<unit>`.
    WantsLink,
    /// The C library, a regular file without exec bits.
    Library,
    /// The library's soname, a symlink to `libasl.so`.
    LibraryLink,
}

/// Why an entry is in a profile's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Seed 000 lists it; the seed's words for it.
    Seed(&'static str),
    /// The project adds it to the seed's list; why.
    Project(&'static str),
    /// Part of the profile as the project defines it (the authority host).
    Profile,
}

/// One entry of a profile's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Relative to the overlay root.
    pub path: &'static str,
    pub kind: Kind,
    /// Whether the lint reports the entry missing. Entries of the seed are required unless the
    /// seed calls them optional (and the library, see `docs/asl-image.md`); the project's
    /// additions are not, except tools our units run (found in the units themselves).
    pub required: bool,
    pub origin: Origin,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Profile, String> {
        match s {
            "rescue" => Ok(Profile::Rescue),
            "auth-host" => Ok(Profile::AuthHost),
            _ => Err(format!("unknown profile '{s}' (rescue | auth-host)")),
        }
    }
}

/// Where seed 000 puts the C library (docs/libasl.md); optional in the rescue profile.
pub(super) const LIBASL: &str = "usr/local/lib/libasl.so";

/// Its soname (crates/asl-ffi/build.rs sets it), which programs linked with `-lasl` load.
pub(super) const LIBASL_SONAME: &str = "usr/local/lib/libasl.so.0";
