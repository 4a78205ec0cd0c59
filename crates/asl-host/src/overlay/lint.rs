//! The lint: every breach of a profile's contract and of seed 000's rules, one [`Violation`]
//! each, naming the file.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::generate::walk;
use super::*;

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
