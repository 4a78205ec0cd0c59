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

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::config::{AslConf, FederationConf, LoggingConf};
use crate::units;

pub mod rules;

use rules::{Finding, Rule};

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
    fn state_roots(self) -> &'static [&'static str] {
        match self {
            Profile::Rescue => &["var/lib/asl", "mnt", "run"],
            Profile::AuthHost => &["var/lib/asl", "var/log", "mnt", "run"],
        }
    }

    /// Tool names generation always links to the binary: the contract's tools and the
    /// programs the profile's units run.
    fn generated_tools(self) -> Vec<String> {
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

    fn units(self) -> Vec<&'static str> {
        self.contract()
            .iter()
            .filter(|e| e.kind == Kind::Unit)
            .filter_map(|e| e.path.strip_prefix("etc/systemd/system/"))
            .collect()
    }

    fn configs(self) -> [(&'static str, String); 3] {
        let asl = match self {
            Profile::Rescue => "# /etc/asl/asl.conf: rescue intake (generated by asl-image; reference: docs/config.md)\n\
# Declarative only: no state, no secrets.\n\
mode = auto              # auto | local | remote\n\
local.mount = /mnt/asl/local\n\
local.create = no        # never create a store on a disk the operator did not prepare\n\
# local.pool = rescuepool\n\
# remote.endpoint = https://asl-backend.example.org\n\
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
    fn dirs(self) -> BTreeSet<PathBuf> {
        dirs_of(self.contract())
    }
}

fn dirs_of(entries: impl IntoIterator<Item = Entry>) -> BTreeSet<PathBuf> {
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

/// What goes into an overlay besides data: the binary and its tool names.
#[derive(Debug, Clone)]
pub struct OverlayInputs {
    /// The multicall executable, copied to `usr/local/bin/asl`.
    pub binary: PathBuf,
    /// Tool names linked to it (the profile's required tools are always added).
    pub tools: Vec<String>,
    /// When set, every mtime is clamped to this (`SOURCE_DATE_EPOCH`), for reproducible trees.
    pub mtime: Option<i64>,
    /// The C library (`libasl.so` as cargo builds it), copied to `usr/local/lib/libasl.so`
    /// where seed 000 puts it. Only the rescue profile carries it.
    pub libasl: Option<PathBuf>,
}

/// Refuses anything but an ELF shared object, so that a wrong path (the static archive, the
/// header, the binary) fails the build instead of shipping under the library's name.
fn check_shared_library(path: &Path) -> Result<(), OverlayError> {
    let not = |why: &str| OverlayError::NotASharedLibrary {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(not("not a regular file"));
    }
    let mut head = [0u8; 18];
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    if f.read_exact(&mut head).is_err() || head[..4] != *b"\x7fELF" {
        return Err(not("no ELF header"));
    }
    // e_type at offset 16, in the byte order EI_DATA (offset 5) names: 1 little, 2 big.
    let e_type = match head[5] {
        1 => u16::from_le_bytes([head[16], head[17]]),
        2 => u16::from_be_bytes([head[16], head[17]]),
        _ => return Err(not("unknown ELF byte order")),
    };
    const ET_DYN: u16 = 3;
    if e_type != ET_DYN {
        return Err(not("an ELF file, but not a shared object"));
    }
    Ok(())
}

/// Writes the profile's overlay to `out` (which must not exist or be an empty directory). The
/// tree is built next to `out` under a temporary name and renamed into place, so a failure
/// never leaves a half-made overlay at `out`.
pub fn generate(profile: Profile, out: &Path, inputs: &OverlayInputs) -> Result<(), OverlayError> {
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => {
            let mut rd = std::fs::read_dir(out).map_err(io(out))?;
            if rd.next().is_some() {
                return Err(OverlayError::OutExists(out.to_path_buf()));
            }
        }
        Ok(_) => return Err(OverlayError::OutExists(out.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(out)(e)),
    }
    let name = out
        .file_name()
        .ok_or_else(|| OverlayError::NotADirectory(out.to_path_buf()))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp = parent.join(format!(".{name}.asl-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = build(profile, &tmp, inputs).and_then(|()| {
        if out.exists() {
            std::fs::remove_dir(out).map_err(io(out))?;
        }
        std::fs::rename(&tmp, out).map_err(io(out))
    });
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    built
}

fn mkdir(p: &Path) -> Result<(), OverlayError> {
    std::fs::create_dir_all(p).map_err(io(p))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(io(p))
}

fn write_file(p: &Path, content: &[u8], mode: u32) -> Result<(), OverlayError> {
    std::fs::write(p, content).map_err(io(p))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))
}

fn build(profile: Profile, t: &Path, inputs: &OverlayInputs) -> Result<(), OverlayError> {
    mkdir(t)?;
    let library = match &inputs.libasl {
        Some(lib) => {
            if !profile.contract().iter().any(|e| e.kind == Kind::Library) {
                return Err(OverlayError::NoLibraryInProfile(profile));
            }
            check_shared_library(lib)?;
            Some(lib)
        }
        None => None,
    };
    // The library's directory only when the library goes in: an empty usr/local/lib says
    // nothing.
    let entries = profile
        .contract()
        .into_iter()
        .filter(|e| library.is_some() || !matches!(e.kind, Kind::Library | Kind::LibraryLink));
    for d in dirs_of(entries) {
        mkdir(&t.join(d))?;
    }
    let bin = t.join("usr/local/bin");
    let asl = bin.join("asl");
    std::fs::copy(&inputs.binary, &asl).map_err(io(&inputs.binary))?;
    std::fs::set_permissions(&asl, std::fs::Permissions::from_mode(0o755)).map_err(io(&asl))?;
    let mut tools: BTreeSet<String> = inputs.tools.iter().cloned().collect();
    tools.extend(profile.generated_tools());
    tools.remove("asl");
    for tool in tools {
        if tool.is_empty() || tool.contains('/') {
            continue;
        }
        let link = bin.join(&tool);
        // Hard links: one inode, so the image carries the binary once.
        std::fs::hard_link(&asl, &link).map_err(io(&link))?;
    }
    if let Some(lib) = library {
        let dest = t.join(LIBASL);
        std::fs::copy(lib, &dest).map_err(io(lib))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644))
            .map_err(io(&dest))?;
        // The file name the seed gives is the link-time name; programs linked with -lasl
        // record the soname and load that, so it goes in too, as install-libasl.sh does.
        let soname = t.join(LIBASL_SONAME);
        std::os::unix::fs::symlink("libasl.so", &soname).map_err(io(&soname))?;
    }
    for (path, content) in profile.configs() {
        write_file(&t.join(path), content.as_bytes(), 0o644)?;
    }
    let sys = t.join("etc/systemd/system");
    for (name, content) in units::all() {
        if profile.units().contains(&name) {
            write_file(&sys.join(name), content.as_bytes(), 0o644)?;
            // What `systemctl enable` does, without needing systemctl at build time.
            let link = sys.join("multi-user.target.wants").join(name);
            std::os::unix::fs::symlink(format!("../{name}"), &link).map_err(io(&link))?;
        }
    }
    // As root the files are already root's; chown anyway so a umask or setgid parent
    // directory cannot leak another group into the image.
    let is_root = builds_as_root();
    walk(t, &mut |p, _| {
        if is_root {
            std::os::unix::fs::lchown(p, Some(0), Some(0)).map_err(io(p))?;
        }
        if let Some(secs) = inputs.mtime {
            set_mtime(p, secs).map_err(io(p))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Whether the image is built as root, as the C library answers: under fakeroot, whose
/// preloaded library answers `geteuid` with 0, it is, and that is how `asl-image` builds a
/// root-owned image without privileges (the chowns go through the C library too, and
/// fakeroot records them). rustix asks the kernel directly and would see through fakeroot,
/// so this one call stays on libc.
pub fn builds_as_root() -> bool {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

fn set_mtime(p: &Path, secs: i64) -> std::io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    // SYMLINK_NOFOLLOW: symlinks get their own time, targets untouched.
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Visits every entry under `dir` (not following symlinks), deepest first so that directory
/// times set by `f` are not disturbed by later changes inside them.
fn walk(
    dir: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<(), OverlayError>,
) -> Result<(), OverlayError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if m.is_dir() {
            walk(&p, f)?;
        }
        f(&p, &m)?;
    }
    let m = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    f(dir, &m)
}

/// One breach of the overlay contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Path relative to the overlay root (`.` for the root itself).
    pub path: PathBuf,
    pub message: String,
    /// The seed rule broken, when the violation is one of them (`"assumes-zfs"` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
}

/// A problem of one entry before it becomes a [`Violation`].
struct Problem {
    message: String,
    rule: Option<Rule>,
}

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem {
            message,
            rule: None,
        }
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        Problem::from(message.to_string())
    }
}

impl From<Finding> for Problem {
    fn from(f: Finding) -> Problem {
        Problem {
            message: f.message(),
            rule: Some(f.rule),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Where seed 000 puts the C library (docs/libasl.md); optional in the rescue profile.
const LIBASL: &str = "usr/local/lib/libasl.so";
/// Its soname (crates/asl-ffi/build.rs sets it), which programs linked with `-lasl` load.
const LIBASL_SONAME: &str = "usr/local/lib/libasl.so.0";

const KEY_NAMES: &[&str] = &["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];
const KEY_SUFFIXES: &[&str] = &[".key", ".p12", ".pfx", ".jks", ".sops.yaml", ".sops.json"];

/// Why a file looks like a secret, if it does.
fn secret_reason(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    if KEY_NAMES.contains(&name.as_str()) || KEY_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Some(format!(
            "'{name}' is named like a private key or secret bundle"
        ));
    }
    let mut buf = Vec::new();
    let f = std::fs::File::open(path).ok()?;
    f.take(1 << 20).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    for l in text.lines() {
        if l.starts_with("-----BEGIN") && l.contains("PRIVATE KEY") {
            return Some(format!("contains a private key ('{}')", l.trim()));
        }
    }
    None
}

fn under(rel: &Path, roots: &'static [&'static str]) -> Option<&'static str> {
    roots
        .iter()
        .find(|r| rel.starts_with(r) && rel != Path::new(r))
        .copied()
}

/// Checks an overlay tree against the profile's contract. Returns every violation (empty =
/// passes); an error only when the tree cannot be read at all.
pub fn lint(dir: &Path, profile: Profile) -> Result<Vec<Violation>, OverlayError> {
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(OverlayError::NotADirectory(dir.to_path_buf()));
    }
    let contract = profile.contract();
    let dirs = profile.dirs();
    let mut found: Vec<(PathBuf, Vec<Problem>, bool)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut visit = |p: &Path, m: &std::fs::Metadata| -> Result<(), OverlayError> {
        let rel = p.strip_prefix(dir).unwrap_or(p).to_path_buf();
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        seen.insert(rel.clone());
        let (specific, generic) = check_entry(dir, &rel, p, m, profile, &contract, &dirs);
        found.push((rel, specific, generic));
        Ok(())
    };
    walk(dir, &mut visit)?;
    let mut out = Vec::new();
    // A directory that is not part of the contract is only reported when nothing inside it
    // already is, so one stray file gives one message.
    let reported: Vec<PathBuf> = found
        .iter()
        .filter(|(_, s, g)| !s.is_empty() || *g)
        .map(|(r, _, _)| r.clone())
        .collect();
    for (rel, specific, generic) in found {
        let stray = specific.is_empty() && generic;
        for p in specific {
            out.push(Violation {
                path: rel.clone(),
                message: p.message,
                rule: p.rule,
            });
        }
        if stray {
            let inside = reported.iter().any(|r| *r != rel && r.starts_with(&rel));
            if !inside {
                out.push(Violation {
                    message: format!("not part of the {profile} overlay contract"),
                    path: rel,
                    rule: None,
                });
            }
        }
    }
    for e in contract.iter().filter(|e| e.required) {
        if !seen.contains(Path::new(e.path)) {
            let message = match e.origin {
                Origin::Seed(words) => format!("missing (seed 000 lists it: \"{words}\")"),
                Origin::Project(why) => format!("missing (the project adds it: {why})"),
                Origin::Profile => format!("missing (the {profile} profile requires it)"),
            };
            out.push(Violation {
                path: PathBuf::from(e.path),
                message,
                rule: None,
            });
        }
    }
    out.extend(tools_units_need(dir, &contract, &seen));
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
    out.dedup_by(|a, b| a.path == b.path && a.message == b.message);
    Ok(out)
}

/// The tools the tree's units run from `/usr/local/bin` must be there. The seed names no
/// program for its units, so such a tool is required only because a unit of the tree runs it,
/// and the message says which unit and line. Tools the contract already requires are left to
/// that check.
fn tools_units_need(dir: &Path, contract: &[Entry], seen: &BTreeSet<PathBuf>) -> Vec<Violation> {
    let mut out = Vec::new();
    for unit in contract.iter().filter(|e| e.kind == Kind::Unit) {
        let Ok(text) = std::fs::read_to_string(dir.join(unit.path)) else {
            continue;
        };
        for (prog, line) in rules::programs(&text) {
            let Some(rel) = prog.strip_prefix('/').map(PathBuf::from) else {
                continue;
            };
            if !rel.starts_with("usr/local/bin") || seen.contains(&rel) {
                continue;
            }
            if contract
                .iter()
                .any(|e| e.required && Path::new(e.path) == rel)
            {
                continue;
            }
            out.push(Violation {
                path: rel,
                message: format!(
                    "missing: {} runs it ({line}); seed 000 does not list this tool, the unit \
                     needs it",
                    unit.path
                ),
                rule: None,
            });
        }
    }
    out
}

/// Trees the overlay never writes to but where the contract puts a file (seed 000 ❌ Writing to
/// /usr, /bin, /lib).
const SYSTEM_TREES: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64"];

/// Returns the specific problems of one entry and whether it is outside the contract.
fn check_entry(
    root: &Path,
    rel: &Path,
    real: &Path,
    m: &std::fs::Metadata,
    profile: Profile,
    contract: &[Entry],
    dirs: &BTreeSet<PathBuf>,
) -> (Vec<Problem>, bool) {
    let mut v: Vec<Problem> = Vec::new();
    let ft = m.file_type();
    let mode = m.mode();
    if m.uid() != 0 || m.gid() != 0 {
        v.push(
            format!(
                "owned by {}:{}; overlay files must be owned by root:root",
                m.uid(),
                m.gid()
            )
            .into(),
        );
    }
    if !ft.is_symlink() && !ft.is_dir() && mode & 0o6000 != 0 {
        v.push(
            format!(
                "setuid/setgid bit set (mode {:o}); the overlay ships no privileged executables",
                mode & 0o7777
            )
            .into(),
        );
    }
    if !ft.is_symlink() && mode & 0o002 != 0 && !(ft.is_dir() && mode & 0o1000 != 0) {
        v.push(format!("world-writable (mode {:o})", mode & 0o7777).into());
    }
    if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
        v.push("is a device node, FIFO or socket; an overlay holds only files, directories and symlinks".into());
        return (v, false);
    }
    if rel == Path::new(".") {
        return (v, false);
    }
    if let Some(state) = under(rel, profile.state_roots()) {
        if !ft.is_dir() {
            v.push(format!(
                "only empty directories may live under {state}/ (state is created at runtime, never shipped)"
            ).into());
        }
        return (v, false);
    }
    let seed_rules = profile == Profile::Rescue;
    let entry = contract.iter().find(|e| Path::new(e.path) == rel);
    if ft.is_dir() && entry.is_none_or(|e| e.kind == Kind::Dir) {
        return (v, !dirs.contains(rel));
    }
    let executable = ft.is_file() && mode & 0o111 != 0;
    let parent = rel.parent().unwrap_or(Path::new(""));
    match entry.map(|e| e.kind) {
        Some(Kind::Library) => {
            if !ft.is_file() || executable {
                v.push("libasl.so must be a regular file without exec bits (mode 0644)".into());
            }
            return (v, false);
        }
        Some(Kind::LibraryLink) => {
            if !ft.is_symlink() || std::fs::read_link(real).ok() != Some(PathBuf::from("libasl.so"))
            {
                v.push("must be a symlink to libasl.so (the library's soname)".into());
            }
            return (v, false);
        }
        Some(Kind::Config) => {
            if !ft.is_file() {
                v.push("must be a regular file".into());
            } else {
                v.extend(config_problems(rel, real).into_iter().map(Problem::from));
            }
            return (v, false);
        }
        Some(Kind::Unit) => {
            if !ft.is_file() {
                v.push("must be a regular file".into());
            } else if seed_rules {
                v.extend(unit_problems(real));
            }
            return (v, false);
        }
        Some(Kind::WantsLink) => {
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned());
            let expect = name.map(|n| PathBuf::from(format!("../{n}")));
            if !ft.is_symlink() || std::fs::read_link(real).ok() != expect {
                v.push(
                    format!(
                        "symlink must point to {}",
                        expect.map(|e| e.display().to_string()).unwrap_or_default()
                    )
                    .into(),
                );
            }
            return (v, false);
        }
        Some(Kind::Tool) | Some(Kind::Dir) | None => {}
    }
    if parent == Path::new("usr/local/bin") {
        if ft.is_dir() {
            v.push("a directory; usr/local/bin holds only the tools".into());
        } else if ft.is_symlink() {
            let ok = std::fs::read_link(real).ok().is_some_and(|t| {
                t.components().count() == 1 && root.join(parent).join(&t).is_file()
            });
            if !ok {
                v.push("symlink does not point to a tool in usr/local/bin".into());
            }
        } else if !executable {
            v.push("not executable; usr/local/bin holds only the tools".into());
        }
        return (v, false);
    }
    let system_tree = SYSTEM_TREES.iter().find(|t| rel.starts_with(t));
    if executable {
        let mut p = Problem::from(
            "executable outside usr/local/bin; tools belong in usr/local/bin and the overlay never writes to usr/bin, bin or lib",
        );
        if seed_rules && system_tree.is_some() {
            p.message.push_str(&format!(
                " (rule {}; seed 000 {})",
                Rule::WritesSystemTree.id(),
                Rule::WritesSystemTree.seed_wording()
            ));
            p.rule = Some(Rule::WritesSystemTree);
        }
        v.push(p);
    }
    if ft.is_file()
        && let Some(why) = secret_reason(real)
    {
        v.push(format!("{why}; no private keys or secrets in the overlay").into());
        return (v, false);
    }
    if seed_rules && v.is_empty() {
        // Outside the contract, and what it would do on the rescue system: both said at once.
        v.extend(
            seed_rule_problems(rel, real, ft, system_tree.copied())
                .into_iter()
                .map(|mut p| {
                    p.message =
                        format!("not part of the {profile} overlay contract: {}", p.message);
                    p
                }),
        );
    }
    let generic = v.is_empty();
    (v, generic)
}

/// The seed's rules for an entry outside the contract: what it would do on the rescue system.
fn seed_rule_problems(
    rel: &Path,
    real: &Path,
    ft: std::fs::FileType,
    system_tree: Option<&str>,
) -> Vec<Problem> {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let finding = |rule: Rule, detail: String| Problem::from(Finding { rule, detail });
    if rel.starts_with("etc/systemd") {
        if name.ends_with(".mount") || name.ends_with(".automount") {
            return vec![finding(
                Rule::MountsCrashedRoot,
                "a mount unit: it mounts a filesystem at boot; mounting is the operator's step"
                    .into(),
            )];
        }
        if ft.is_file() {
            return unit_problems(real);
        }
        return Vec::new();
    }
    if rel == Path::new("etc/fstab") && ft.is_file() {
        let text = std::fs::read_to_string(real).unwrap_or_default();
        return rules::check_fstab(&text)
            .into_iter()
            .map(Problem::from)
            .collect();
    }
    if rel == Path::new("etc/zfs/zpool.cache") {
        return vec![finding(
            Rule::ImportsPools,
            "a ZFS pool cache: zfs-import-cache.service imports every pool it lists at boot".into(),
        )];
    }
    if rel.starts_with("etc/asl") {
        return vec![finding(
            Rule::StateInEtc,
            "etc/asl holds only asl.conf, federation.conf and logging.conf (declarative \
             configuration, no state); state goes to /var/lib/asl or /run/asl"
                .into(),
        )];
    }
    if let Some(tree) = system_tree
        && !ft.is_dir()
    {
        return vec![finding(
            Rule::WritesSystemTree,
            format!(
                "the overlay writes nothing under {tree}/ but its tools (usr/local/bin) and \
                 the library (usr/local/lib/libasl.so)"
            ),
        )];
    }
    Vec::new()
}

fn unit_problems(real: &Path) -> Vec<Problem> {
    match std::fs::read(real).map(String::from_utf8) {
        Ok(Ok(text)) => rules::check_unit(&text)
            .into_iter()
            .map(Problem::from)
            .collect(),
        Ok(Err(_)) => vec!["is not valid UTF-8".into()],
        Err(e) => vec![format!("cannot read: {e}").into()],
    }
}

fn config_problems(rel: &Path, real: &Path) -> Vec<String> {
    let text = match std::fs::read(real).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(_)) => return vec!["is not valid UTF-8".into()],
        Err(e) => return vec![format!("cannot read: {e}")],
    };
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned());
    let r = match name.as_deref() {
        Some("asl.conf") => AslConf::parse(&text, rel).err(),
        Some("federation.conf") => FederationConf::parse(&text, rel).err(),
        _ => LoggingConf::parse(&text, rel).err(),
    };
    // The violation already names the file; keep "line N: message".
    r.map(|e| {
        e.problems
            .into_iter()
            .map(|p| match p.line {
                Some(l) => format!("line {l}: {}", p.message),
                None => p.message,
            })
            .collect()
    })
    .unwrap_or_default()
}
