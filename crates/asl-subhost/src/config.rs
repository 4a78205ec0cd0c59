//! The subhost configuration file, in overlay-boot's format.
//!
//! The format is not a shell script and is never sourced. For each variable the *first* line that
//! begins exactly with `VAR=` (flush left) gives its value; the rest of the line is trimmed. A value
//! that begins with `!` is a command: it is split on whitespace (no shell syntax), run with the
//! working directory BASE (the directory of the file for BASE itself), and the first line of its
//! output becomes the value. `SHARE=` may repeat. Everything else in the file is ignored, except
//! that unknown variables, repeated variables and indented assignments produce warnings, because
//! each of them is almost always a mistake the original tool silently swallowed.
//!
//! Parsing ([`parse`]) is pure; [`RawConfig::resolve`] runs the `!` commands and applies the
//! defaults; [`Config::check`] looks at the file system. Nothing here changes the system.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cable::{self, CableSpec};
use crate::error::ConfigError;

/// Variables of overlay-boot 1.6.4, in the order they are resolved (BASE first: it is the working
/// directory of every other `!command`).
pub const CLASSIC_VARS: &[&str] = &[
    "BASE",
    "NAME",
    "LOG",
    "CABLES",
    "INIT",
    "LIVE",
    "LOWER",
    "UPPER",
    "WORK",
    "PREMOUNT",
    "POSTMOUNT",
    "START",
    "RAM_SIZE",
    "SHARE",
];

/// Variables this implementation adds (all optional; absent means "as overlay-boot did").
pub const NEW_VARS: &[&str] = &[
    "MEMORY_MAX",
    "CPU_MAX",
    "PIDS_MAX",
    "DROP_CAPS",
    "NO_NEW_PRIVS",
    "READONLY_SYS",
    "SERVICE_TIMEOUT",
    "OVERLAY_OPTIONS",
];

/// Longest subhost name: NAME plus a cable index must fit the 15 characters of an interface name.
pub const MAX_NAME_LEN: usize = 12;

/// The default START of overlay-boot.
pub const DEFAULT_START: &str = "networking ssh";

/// Where overlay-boot installed its default hook programs. A configuration that names one of them
/// explicitly gets the built-in equivalent when the file is not installed.
const CLASSIC_HOOK_DIR: &str = "/var/lib/overlay-boot";

/// One `VAR=value` line as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub var: String,
    pub value: String,
    /// 1-based line number, for error messages.
    pub line: usize,
}

/// Something in the file that is accepted but probably wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The file after parsing: the effective assignment of every variable, before `!` commands run.
#[derive(Debug, Clone)]
pub struct RawConfig {
    pub path: PathBuf,
    /// First assignment of each variable (SHARE excluded).
    pub vars: HashMap<String, Assignment>,
    /// Every SHARE line, in order.
    pub shares: Vec<Assignment>,
    pub warnings: Vec<Warning>,
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(path, &text))
}

fn assignment_var(line: &str) -> Option<(&str, &str)> {
    let eq = line.find('=')?;
    let var = &line[..eq];
    let mut chars = var.chars();
    let first = chars.next()?;
    if !(first.is_ascii_uppercase() || first == '_')
        || !chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    Some((var, &line[eq + 1..]))
}

/// Parses configuration text. Never fails: problems are warnings or surface in `resolve`.
pub fn parse(path: &Path, text: &str) -> RawConfig {
    let mut vars: HashMap<String, Assignment> = HashMap::new();
    let mut shares = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let Some((var, value)) = assignment_var(line) else {
            let trimmed = line.trim_start();
            if trimmed.len() != line.len() && assignment_var(trimmed).is_some() {
                warnings.push(Warning {
                    line: n,
                    message: "indented assignment ignored: variables must start in column 1".into(),
                });
            }
            continue;
        };
        let a = Assignment {
            var: var.to_string(),
            value: value.trim().to_string(),
            line: n,
        };
        if var == "SHARE" {
            shares.push(a);
            continue;
        }
        if !CLASSIC_VARS.contains(&var) && !NEW_VARS.contains(&var) {
            warnings.push(Warning {
                line: n,
                message: format!("unknown variable {var} ignored"),
            });
            continue;
        }
        if let Some(first) = vars.get(var) {
            warnings.push(Warning {
                line: n,
                message: format!(
                    "{var} already set on line {}; this line is ignored (first assignment wins)",
                    first.line
                ),
            });
            continue;
        }
        vars.insert(var.to_string(), a);
    }
    RawConfig {
        path: path.to_path_buf(),
        vars,
        shares,
        warnings,
    }
}

/// How a hook (PREMOUNT, POSTMOUNT, INIT) is carried out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Hook {
    /// This crate's own implementation (the default).
    Builtin,
    /// Nothing at all (`none`).
    Nothing,
    /// A command line, split on whitespace, run with `CONFIG` set to the configuration file.
    Command(Vec<String>),
}

/// How LIVE, the root of the running subhost, comes to be (decided by UPPER/LOWER/LIVE equality,
/// exactly as overlay-boot does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RootKind {
    /// UPPER differs from LOWER: an overlay of LOWER with UPPER on LIVE.
    Overlay,
    /// UPPER equals LOWER but not LIVE: UPPER bind-mounted on LIVE.
    Bind,
    /// All three equal: LIVE is used as it is.
    Premounted,
}

/// A host path made visible inside the subhost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Share {
    pub host: PathBuf,
    /// Absolute path inside the subhost.
    pub inside: PathBuf,
    pub line: usize,
}

/// cgroup v2 limits; each value is written verbatim to the file of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    pub memory_max: Option<String>,
    pub cpu_max: Option<String>,
    pub pids_max: Option<String>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.memory_max.is_some() || self.cpu_max.is_some() || self.pids_max.is_some()
    }
}

/// Optional hardening; the default is overlay-boot's posture (none of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hardening {
    /// Capability numbers removed from the bounding set of everything started inside.
    pub drop_caps: Vec<u32>,
    pub no_new_privs: bool,
    /// Mount /sys read-only and make /proc/sys read-only.
    pub readonly_sys: bool,
}

/// A fully resolved configuration: every `!command` has run and every default is applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    pub conf: PathBuf,
    pub name: String,
    pub base: PathBuf,
    pub log: PathBuf,
    pub cables: Vec<CableSpec>,
    pub init: Hook,
    pub live: PathBuf,
    /// Overlay lower layers (LOWER may list several, separated by `:`, uppermost first).
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub premount: Hook,
    pub postmount: Hook,
    /// Services to start in order; empty for `none`.
    pub start: Vec<String>,
    /// Size of the tmpfs on /run; `None` for `none`.
    pub ram_size: Option<String>,
    pub shares: Vec<Share>,
    pub limits: Limits,
    pub hardening: Hardening,
    pub service_timeout: Duration,
    /// Extra overlayfs mount options (OVERLAY_OPTIONS, comma-separated), e.g. `volatile`.
    pub overlay_options: Vec<String>,
    /// Every resolved `VAR=value`, for the log (overlay-boot echoed them too).
    pub resolved: Vec<(String, String)>,
}

/// Resolution in progress: what relative paths and `!commands` are taken from, and every
/// `VAR=value` resolved so far (for the log).
struct Resolver<'a> {
    raw: &'a RawConfig,
    conf_dir: PathBuf,
    base: Option<PathBuf>,
    resolved: Vec<(String, String)>,
}

impl Resolver<'_> {
    fn err(&self, line: Option<usize>, var: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            conf: self.raw.path.clone(),
            line,
            var: var.to_string(),
            message: message.into(),
        }
    }

    /// The value of VAR after running a `!command`, or None when the file does not set it.
    fn value(&self, var: &str) -> Result<Option<(String, usize)>, ConfigError> {
        let Some(a) = self.raw.vars.get(var) else {
            return Ok(None);
        };
        let Some(cmd) = a.value.strip_prefix('!') else {
            return Ok(Some((a.value.clone(), a.line)));
        };
        let cwd = self.base.as_deref().unwrap_or(&self.conf_dir);
        let value = run_value_command(cmd, cwd, &self.raw.path)
            .map_err(|reason| self.err(Some(a.line), var, reason))?;
        Ok(Some((value, a.line)))
    }

    /// A path value; relative paths are taken from BASE (the conf file's directory for BASE).
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            return normalize(p);
        }
        normalize(&self.base.as_deref().unwrap_or(&self.conf_dir).join(p))
    }
}

/// Lexically removes `.` components and trailing slashes (not `..`: that needs the file system).
fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// The program of a command line: a relative path with a `/` (`./mkimg`, `bin/x`) is taken
/// from `dir` (BASE), as overlay-boot's `cd BASE` did; a bare name is looked up in PATH.
pub fn program_path(dir: &Path, prog: &str) -> PathBuf {
    let p = Path::new(prog);
    if !p.is_absolute() && prog.contains('/') {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

/// Runs the command of a `!` value and returns the first line of its output.
fn run_value_command(cmd: &str, cwd: &Path, conf: &Path) -> Result<String, String> {
    let argv: Vec<&str> = cmd.split_whitespace().collect();
    let Some((prog, args)) = argv.split_first() else {
        return Err("`!` is not followed by a command".into());
    };
    let out = Command::new(program_path(cwd, prog))
        .args(args)
        .current_dir(cwd)
        .env("CONFIG", conf)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run `{cmd}` in {}: {e}", cwd.display()))?;
    if !out.status.success() {
        return Err(format!("command `{cmd}` failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if first.is_empty() {
        return Err(format!("command `{cmd}` printed nothing"));
    }
    Ok(first)
}

/// Checks a subhost name: 1 to 12 characters from `[A-Za-z0-9_.-]`, not starting with `.` or
/// `-`. The name becomes a file name, an interface name prefix and a cgroup name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "`{name}` has {} characters; at most {MAX_NAME_LEN} are allowed so that NAME plus a \
             cable number fits an interface name (15 characters)",
            name.len()
        ));
    }
    if name.starts_with(['.', '-'])
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "`{name}` may only contain letters, digits, `_`, `.` and `-`, and may not start \
             with `.` or `-`"
        ));
    }
    Ok(())
}

fn parse_hook(value: &str, default_file: &str) -> Hook {
    match value {
        "" | "builtin" => Hook::Builtin,
        "none" => Hook::Nothing,
        v => {
            let argv: Vec<String> = v.split_whitespace().map(String::from).collect();
            let classic = format!("{CLASSIC_HOOK_DIR}/{default_file}");
            if argv.len() == 1 && argv[0] == classic && !Path::new(&classic).exists() {
                return Hook::Builtin;
            }
            Hook::Command(argv)
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Checks a tmpfs `size=` value: digits with an optional k/m/g suffix or `%`.
fn valid_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    !digits.is_empty() && v.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A value as resolved, with the line that set it (None for a default).
type Value = (String, Option<usize>);

/// Every variable but BASE, NAME and SHARE, as resolved in [`CLASSIC_VARS`] then [`NEW_VARS`]
/// order (the order their `!commands` run in).
struct Values {
    log: Value,
    cables: Value,
    init: Value,
    live: Value,
    lower: Value,
    upper: Value,
    work: Value,
    premount: Value,
    postmount: Value,
    start: Value,
    ram_size: Value,
    memory_max: Value,
    cpu_max: Value,
    pids_max: Value,
    drop_caps: Value,
    no_new_privs: Value,
    readonly_sys: Value,
    service_timeout: Value,
    overlay_options: Value,
}

impl Resolver<'_> {
    /// BASE, which every other value is resolved against; required.
    fn resolve_base(&mut self) -> Result<PathBuf, ConfigError> {
        let Some((base, _)) = self.value("BASE")? else {
            return Err(ConfigError::Invalid {
                conf: self.raw.path.clone(),
                line: None,
                var: "BASE".into(),
                message: "missing: BASE= is required (the subhost's directory, relative to the \
                          configuration file; `BASE=.` is the usual value)"
                    .into(),
            });
        };
        let base = self.path(&base);
        self.resolved
            .push(("BASE".to_string(), base.display().to_string()));
        self.base = Some(base.clone());
        Ok(base)
    }

    /// NAME, by default the file name without `.conf`.
    fn resolve_name(&mut self) -> Result<String, ConfigError> {
        let name = match self.value("NAME")? {
            Some((n, line)) => {
                check_name(&n).map_err(|m| self.err(Some(line), "NAME", m))?;
                n
            }
            None => {
                let stem = self
                    .raw
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let n = stem.strip_suffix(".conf").unwrap_or(&stem).to_string();
                check_name(&n).map_err(|m| {
                    self.err(
                        None,
                        "NAME",
                        format!("the default name from the file name is unusable: {m}; set NAME="),
                    )
                })?;
                n
            }
        };
        self.resolved.push(("NAME".into(), name.clone()));
        Ok(name)
    }

    /// The value of VAR, or `default` when the file does not set it; recorded for the log.
    fn get(&mut self, var: &str, default: String) -> Result<Value, ConfigError> {
        let v = match self.value(var)? {
            Some((v, line)) => (v, Some(line)),
            None => (default, None),
        };
        self.resolved.push((var.to_string(), v.0.clone()));
        Ok(v)
    }

    /// Runs the `!commands` of every other variable, in order, and applies the defaults.
    fn resolve_values(&mut self, name: &str) -> Result<Values, ConfigError> {
        Ok(Values {
            log: self.get("LOG", format!("/var/log/subhost/{name}.log"))?,
            cables: self.get("CABLES", String::new())?,
            init: self.get("INIT", "builtin".into())?,
            live: self.get("LIVE", "live".into())?,
            lower: self.get("LOWER", "/".into())?,
            upper: self.get("UPPER", "root".into())?,
            work: self.get("WORK", "work".into())?,
            premount: self.get("PREMOUNT", "builtin".into())?,
            postmount: self.get("POSTMOUNT", "builtin".into())?,
            start: self.get("START", DEFAULT_START.into())?,
            ram_size: self.get("RAM_SIZE", "50M".into())?,
            memory_max: self.get("MEMORY_MAX", String::new())?,
            cpu_max: self.get("CPU_MAX", String::new())?,
            pids_max: self.get("PIDS_MAX", String::new())?,
            drop_caps: self.get("DROP_CAPS", String::new())?,
            no_new_privs: self.get("NO_NEW_PRIVS", "no".into())?,
            readonly_sys: self.get("READONLY_SYS", "no".into())?,
            service_timeout: self.get("SERVICE_TIMEOUT", "30".into())?,
            overlay_options: self.get("OVERLAY_OPTIONS", String::new())?,
        })
    }

    fn lower(&self, (v, line): &Value) -> Result<Vec<PathBuf>, ConfigError> {
        let lower: Vec<PathBuf> = v
            .split(':')
            .filter(|s| !s.is_empty())
            .map(|p| self.path(p))
            .collect();
        if lower.is_empty() {
            return Err(self.err(*line, "LOWER", "is empty"));
        }
        Ok(lower)
    }

    fn ram_size(&self, (v, line): &Value) -> Result<Option<String>, ConfigError> {
        match v.as_str() {
            "none" => Ok(None),
            v if valid_size(v) => Ok(Some(v.to_string())),
            v => Err(self.err(
                *line,
                "RAM_SIZE",
                format!("`{v}` is not a tmpfs size (e.g. 50M, 1G, 10%) or `none`"),
            )),
        }
    }

    /// Every SHARE line, in order; recorded for the log.
    fn shares(&mut self) -> Result<Vec<Share>, ConfigError> {
        let raw = self.raw;
        let mut shares = Vec::new();
        for a in &raw.shares {
            if a.value.starts_with('!') {
                return Err(self.err(
                    Some(a.line),
                    "SHARE",
                    "`!command` values are not allowed for SHARE",
                ));
            }
            let (host, inside) = match a.value.split_once(':') {
                Some((h, i)) => (h.trim(), i.trim()),
                None => (a.value.as_str(), a.value.as_str()),
            };
            if host.is_empty() || inside.is_empty() {
                return Err(self.err(
                    Some(a.line),
                    "SHARE",
                    "expected `SHARE= DIR` or `SHARE= HOSTDIR:SUBHOSTDIR`",
                ));
            }
            let host = self.path(host);
            let inside = Path::new("/").join(inside);
            shares.push(Share {
                host,
                inside: normalize(&inside),
                line: a.line,
            });
            self.resolved.push(("SHARE".into(), a.value.clone()));
        }
        Ok(shares)
    }

    /// MEMORY_MAX, PIDS_MAX and CPU_MAX, checked in that order; empty means no limit.
    fn limits(&self, v: &Values) -> Result<Limits, ConfigError> {
        let check_limit = |(value, line): &Value, var: &str, ok: fn(&str) -> bool| {
            if value.is_empty() || ok(value) {
                Ok(())
            } else {
                Err(self.err(*line, var, format!("`{value}` is not a valid value")))
            }
        };
        check_limit(&v.memory_max, "MEMORY_MAX", |v| v == "max" || valid_size(v))?;
        check_limit(&v.pids_max, "PIDS_MAX", |v| {
            v == "max" || v.bytes().all(|b| b.is_ascii_digit())
        })?;
        check_limit(&v.cpu_max, "CPU_MAX", |v| {
            let mut it = v.split_whitespace();
            let quota = it.next().unwrap_or("");
            let period_ok = it
                .next()
                .is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()));
            (quota == "max" || (!quota.is_empty() && quota.bytes().all(|b| b.is_ascii_digit())))
                && period_ok
                && it.next().is_none()
        })?;
        let opt = |(v, _): &Value| if v.is_empty() { None } else { Some(v.clone()) };
        Ok(Limits {
            memory_max: opt(&v.memory_max),
            cpu_max: opt(&v.cpu_max),
            pids_max: opt(&v.pids_max),
        })
    }

    /// DROP_CAPS, NO_NEW_PRIVS and READONLY_SYS.
    fn hardening(&self, v: &Values) -> Result<Hardening, ConfigError> {
        let (caps, caps_line) = &v.drop_caps;
        let mut drop_caps = Vec::new();
        for c in caps.split(|c: char| c.is_whitespace() || c == ',') {
            if c.is_empty() {
                continue;
            }
            let n = crate::caps::by_name(c).ok_or_else(|| {
                self.err(
                    *caps_line,
                    "DROP_CAPS",
                    format!("unknown capability `{c}` (use names like cap_sys_module)"),
                )
            })?;
            drop_caps.push(n);
        }
        let yes_no = |(value, line): &Value, var: &str| {
            parse_bool(value).ok_or_else(|| self.err(*line, var, "expected yes or no"))
        };
        Ok(Hardening {
            drop_caps,
            no_new_privs: yes_no(&v.no_new_privs, "NO_NEW_PRIVS")?,
            readonly_sys: yes_no(&v.readonly_sys, "READONLY_SYS")?,
        })
    }

    fn service_timeout(&self, (v, line): &Value) -> Result<Duration, ConfigError> {
        v.parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| self.err(*line, "SERVICE_TIMEOUT", "expected whole seconds > 0"))
    }

    /// OVERLAY_OPTIONS: extra overlayfs options, never the layers.
    fn overlay_options(&self, (v, line): &Value) -> Result<Vec<String>, ConfigError> {
        let mut overlay_options = Vec::new();
        for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let key = o.split('=').next().unwrap_or("");
            if matches!(
                key,
                "lowerdir" | "upperdir" | "workdir" | "lowerdir+" | "datadir+"
            ) || o.contains(char::is_whitespace)
            {
                return Err(self.err(
                    *line,
                    "OVERLAY_OPTIONS",
                    format!("`{o}` cannot be given here (layers come from LOWER, UPPER and WORK)"),
                ));
            }
            overlay_options.push(o.to_string());
        }
        Ok(overlay_options)
    }
}

fn start_services(v: &str) -> Vec<String> {
    if v.trim() == "none" {
        Vec::new()
    } else {
        v.split_whitespace().map(String::from).collect()
    }
}

impl RawConfig {
    /// Runs the `!` commands, applies the defaults and checks every value's syntax.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let conf_dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let conf_dir = std::path::absolute(&conf_dir).unwrap_or(conf_dir);
        let mut r = Resolver {
            raw: self,
            conf_dir,
            base: None,
            resolved: Vec::new(),
        };
        let base = r.resolve_base()?;
        let name = r.resolve_name()?;
        let v = r.resolve_values(&name)?;

        let cables =
            cable::parse_cables(&name, &v.cables.0).map_err(|m| r.err(v.cables.1, "CABLES", m))?;
        let lower = r.lower(&v.lower)?;
        let start = start_services(&v.start.0);
        let ram_size = r.ram_size(&v.ram_size)?;
        let shares = r.shares()?;
        let limits = r.limits(&v)?;
        let hardening = r.hardening(&v)?;
        let service_timeout = r.service_timeout(&v.service_timeout)?;
        let overlay_options = r.overlay_options(&v.overlay_options)?;

        Ok(Config {
            conf: std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone()),
            name,
            base,
            log: r.path(&v.log.0),
            cables,
            init: parse_hook(&v.init.0, "overlay-init"),
            live: r.path(&v.live.0),
            lower,
            upper: r.path(&v.upper.0),
            work: r.path(&v.work.0),
            premount: parse_hook(&v.premount.0, "overlay-premount"),
            postmount: parse_hook(&v.postmount.0, "overlay-postmount"),
            start,
            ram_size,
            shares,
            limits,
            hardening,
            service_timeout,
            overlay_options,
            resolved: r.resolved,
        })
    }
}

impl Config {
    /// Decides the root variant the way overlay-boot does, by comparing the paths.
    pub fn root_kind(&self) -> RootKind {
        let same = |a: &Path, b: &Path| {
            a == b
                || match (a.canonicalize(), b.canonicalize()) {
                    (Ok(x), Ok(y)) => x == y,
                    _ => false,
                }
        };
        let lower = &self.lower[0];
        if self.lower.len() > 1 || !same(&self.upper, lower) {
            RootKind::Overlay
        } else if !same(&self.upper, &self.live) {
            RootKind::Bind
        } else {
            RootKind::Premounted
        }
    }

    fn fs_err(&self, var: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            conf: self.conf.clone(),
            line: None,
            var: var.into(),
            message,
        }
    }

    fn need_dir(&self, var: &str, p: &Path) -> Result<std::fs::Metadata, ConfigError> {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => Ok(m),
            Ok(_) => Err(self.fs_err(var, format!("{} is not a directory", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.fs_err(
                var,
                format!(
                    "directory {} does not exist; create it (mkdir -p {})",
                    p.display(),
                    p.display()
                ),
            )),
            Err(e) => Err(self.fs_err(var, format!("cannot examine {}: {e}", p.display()))),
        }
    }

    fn need_program(&self, var: &str, hook: &Hook) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let Hook::Command(argv) = hook else {
            return Ok(());
        };
        let prog = Path::new(&argv[0]);
        let found = if prog.is_absolute() || argv[0].contains('/') {
            let p = if prog.is_absolute() {
                prog.to_path_buf()
            } else {
                self.base.join(prog)
            };
            std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        } else {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|d| {
                    std::fs::metadata(d.join(prog))
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
            })
        };
        if found {
            Ok(())
        } else {
            Err(self.fs_err(
                var,
                format!("program `{}` is not an executable file", argv[0]),
            ))
        }
    }

    /// Checks everything that can be checked on the host before anything is created: the
    /// directories exist, UPPER and WORK share a file system, hooks are executable, SHARE
    /// sources exist, and paths can be written into overlay mount options.
    pub fn check(&self) -> Result<(), ConfigError> {
        use std::os::unix::fs::MetadataExt;
        self.need_dir("BASE", &self.base)?;
        self.need_dir("LIVE", &self.live)?;
        match self.root_kind() {
            RootKind::Overlay => {
                for l in &self.lower {
                    self.need_dir("LOWER", l)?;
                }
                let up = self.need_dir("UPPER", &self.upper)?;
                let wk = self.need_dir("WORK", &self.work)?;
                if up.dev() != wk.dev() {
                    return Err(self.fs_err(
                        "WORK",
                        format!(
                            "{} is on a different file system than UPPER {}; overlayfs needs \
                             WORK and UPPER on the same file system",
                            self.work.display(),
                            self.upper.display()
                        ),
                    ));
                }
                if self.work.starts_with(&self.upper) || self.upper.starts_with(&self.work) {
                    return Err(self.fs_err(
                        "WORK",
                        format!(
                            "{} and UPPER {} must not contain each other",
                            self.work.display(),
                            self.upper.display()
                        ),
                    ));
                }
                let all = self.lower.iter().chain([&self.upper, &self.work]);
                for p in all {
                    let s = p.to_string_lossy();
                    if s.contains([',', ':', '\\']) {
                        return Err(self.fs_err(
                            "LOWER/UPPER/WORK",
                            format!(
                                "path {s} contains `,`, `:` or `\\`, which overlay mount \
                                 options cannot carry; use a path without them"
                            ),
                        ));
                    }
                }
            }
            RootKind::Bind => {
                self.need_dir("UPPER", &self.upper)?;
            }
            RootKind::Premounted => {}
        }
        for s in &self.shares {
            if std::fs::symlink_metadata(&s.host).is_err() {
                return Err(ConfigError::Invalid {
                    conf: self.conf.clone(),
                    line: Some(s.line),
                    var: "SHARE".into(),
                    message: format!("{} does not exist on the host", s.host.display()),
                });
            }
        }
        self.need_program("PREMOUNT", &self.premount)?;
        self.need_program("POSTMOUNT", &self.postmount)?;
        self.need_program("INIT", &self.init)?;
        Ok(())
    }
}

/// Derives the subhost name a configuration file will have, running only NAME's `!command` (and
/// BASE's, which is its working directory). Used by overlay-stop, which must not run the rest.
pub fn name_of(path: &Path) -> Result<String, ConfigError> {
    let raw = load(path)?;
    let mut only = raw.clone();
    only.vars.retain(|k, _| k == "NAME" || k == "BASE");
    only.shares.clear();
    // START and friends default to values that need no commands, so resolving is cheap here.
    match only.resolve() {
        Ok(c) => Ok(c.name),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawConfig {
        parse(Path::new("/srv/sub/web.conf"), text)
    }

    #[test]
    fn first_assignment_wins_and_later_ones_warn() {
        let r = raw("BASE=/a\nBASE=/b\n");
        assert_eq!(r.vars["BASE"].value, "/a");
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].line, 2);
    }

    #[test]
    fn only_flush_left_assignments_count() {
        let r = raw("  BASE=/indented\n# BASE=/comment\nBASE=/real\n");
        assert_eq!(r.vars["BASE"].value, "/real");
        assert!(r.warnings.iter().any(|w| w.line == 1));
    }

    #[test]
    fn values_are_trimmed_and_may_contain_quotes_and_equals() {
        let r = raw("START=   a 'b' c=d   \n");
        assert_eq!(r.vars["START"].value, "a 'b' c=d");
    }

    #[test]
    fn unknown_variables_warn_with_their_line() {
        let r = raw("BASE=.\nFOO=1\n");
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].line, 2);
        assert!(r.warnings[0].message.contains("FOO"));
    }

    #[test]
    fn share_may_repeat_in_order() {
        let r = raw("SHARE= /a\nSHARE= /b:/c\n");
        let v: Vec<_> = r.shares.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(v, ["/a", "/b:/c"]);
    }

    #[test]
    fn defaults_follow_overlay_boot() {
        let c = raw("BASE=.\n").resolve().unwrap();
        assert_eq!(c.name, "web");
        assert_eq!(c.base, Path::new("/srv/sub"));
        assert_eq!(c.live, Path::new("/srv/sub/live"));
        assert_eq!(c.upper, Path::new("/srv/sub/root"));
        assert_eq!(c.work, Path::new("/srv/sub/work"));
        assert_eq!(c.lower, [PathBuf::from("/")]);
        assert_eq!(c.start, ["networking", "ssh"]);
        assert_eq!(c.ram_size.as_deref(), Some("50M"));
        assert_eq!(c.log, Path::new("/var/log/subhost/web.log"));
        assert_eq!(c.init, Hook::Builtin);
        assert!(c.cables.is_empty());
        assert_eq!(c.service_timeout, Duration::from_secs(30));
    }

    #[test]
    fn relative_paths_are_taken_from_base() {
        let c = raw("BASE=sub\nLIVE=mnt\nUPPER=/abs/up\nLOWER=a:b\n")
            .resolve()
            .unwrap();
        assert_eq!(c.base, Path::new("/srv/sub/sub"));
        assert_eq!(c.live, Path::new("/srv/sub/sub/mnt"));
        assert_eq!(c.upper, Path::new("/abs/up"));
        assert_eq!(
            c.lower,
            [
                PathBuf::from("/srv/sub/sub/a"),
                PathBuf::from("/srv/sub/sub/b")
            ]
        );
    }

    #[test]
    fn missing_base_is_an_error_naming_base() {
        let e = raw("NAME=x\n").resolve().unwrap_err().to_string();
        assert!(e.contains("BASE"), "{e}");
        assert!(e.contains("web.conf"), "{e}");
    }

    #[test]
    fn name_longer_than_twelve_is_rejected_with_its_line() {
        let e = raw("BASE=.\n\nNAME=abcdefghijklm\n")
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:"), "{e}");
        assert!(e.contains("13 characters"), "{e}");
    }

    #[test]
    fn names_with_slashes_or_spaces_are_rejected() {
        assert!(check_name("a/b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("web-1.x_y").is_ok());
    }

    #[test]
    fn bang_values_run_in_base_and_take_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker"), "").unwrap();
        let conf = dir.path().join("t.conf");
        // `printf` gets `one\ntwo` as one word (no shell parsing of the line) and prints two
        // lines; only the first counts. `ls` runs in BASE, where `marker` sorts first.
        let text = "BASE=.\nSTART=!ls\nLIVE=!printf one\\ntwo\n";
        let c = parse(&conf, text).resolve().unwrap();
        assert_eq!(c.start, ["marker"]);
        assert_eq!(c.live, dir.path().join("one"));
    }

    #[test]
    fn failing_bang_command_names_variable_and_line() {
        let e = raw("BASE=/\nLOWER=!false\n")
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:") && e.contains("LOWER") && e.contains("false"),
            "{e}"
        );
    }

    #[test]
    fn bang_command_without_output_is_an_error() {
        let e = raw("BASE=/\nUPPER=!true\n")
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("printed nothing"), "{e}");
    }

    #[test]
    fn share_with_bang_is_rejected() {
        let e = raw("BASE=/\nSHARE=!echo /x\n").resolve().unwrap_err();
        assert!(e.to_string().contains("SHARE"));
    }

    #[test]
    fn share_forms_map_host_to_inside() {
        let c = raw("BASE=/b\nSHARE= /data\nSHARE= rel:/srv/x\n")
            .resolve()
            .unwrap();
        assert_eq!(c.shares[0].host, Path::new("/data"));
        assert_eq!(c.shares[0].inside, Path::new("/data"));
        assert_eq!(c.shares[1].host, Path::new("/b/rel"));
        assert_eq!(c.shares[1].inside, Path::new("/srv/x"));
    }

    #[test]
    fn start_none_means_no_services() {
        let c = raw("BASE=.\nSTART=none\n").resolve().unwrap();
        assert!(c.start.is_empty());
    }

    #[test]
    fn ram_size_none_and_bad_values() {
        assert_eq!(
            raw("BASE=.\nRAM_SIZE=none\n").resolve().unwrap().ram_size,
            None
        );
        assert!(raw("BASE=.\nRAM_SIZE=lots\n").resolve().is_err());
    }

    #[test]
    fn new_variables_parse_limits_and_hardening() {
        let c = raw(
            "BASE=.\nMEMORY_MAX=256M\nCPU_MAX=50000 100000\nPIDS_MAX=64\n\
             DROP_CAPS=cap_sys_module, CAP_SYS_RAWIO\nNO_NEW_PRIVS=yes\nREADONLY_SYS=yes\n",
        )
        .resolve()
        .unwrap();
        assert_eq!(c.limits.memory_max.as_deref(), Some("256M"));
        assert_eq!(c.limits.cpu_max.as_deref(), Some("50000 100000"));
        assert_eq!(c.limits.pids_max.as_deref(), Some("64"));
        assert_eq!(c.hardening.drop_caps, [16, 17]);
        assert!(c.hardening.no_new_privs && c.hardening.readonly_sys);
    }

    #[test]
    fn bad_new_variables_are_rejected_with_their_line() {
        for (text, line) in [
            ("BASE=.\nPIDS_MAX=many\n", ":2:"),
            ("BASE=.\nCPU_MAX=half\n", ":2:"),
            ("BASE=.\nDROP_CAPS=cap_fly\n", ":2:"),
            ("BASE=.\nNO_NEW_PRIVS=perhaps\n", ":2:"),
            ("BASE=.\nSERVICE_TIMEOUT=0\n", ":2:"),
        ] {
            let e = raw(text).resolve().unwrap_err().to_string();
            assert!(e.contains(line), "{text}: {e}");
        }
    }

    #[test]
    fn overlay_options_pass_through_but_not_layers() {
        let c = raw("BASE=.\nOVERLAY_OPTIONS=volatile, metacopy=on\n")
            .resolve()
            .unwrap();
        assert_eq!(c.overlay_options, ["volatile", "metacopy=on"]);
        let e = raw("BASE=.\nOVERLAY_OPTIONS=upperdir=/x\n")
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains(":2:"));
    }

    #[test]
    fn hooks_builtin_none_and_commands() {
        let c = raw("BASE=.\nPREMOUNT=none\nPOSTMOUNT=/bin/echo hi\n")
            .resolve()
            .unwrap();
        assert_eq!(c.premount, Hook::Nothing);
        assert_eq!(
            c.postmount,
            Hook::Command(vec!["/bin/echo".into(), "hi".into()])
        );
        assert_eq!(c.init, Hook::Builtin);
    }

    #[test]
    fn classic_default_hook_paths_map_to_builtin_when_not_installed() {
        let c = raw("BASE=.\nINIT=/var/lib/overlay-boot/overlay-init\n")
            .resolve()
            .unwrap();
        assert_eq!(c.init, Hook::Builtin);
    }

    #[test]
    fn root_kind_follows_path_equality() {
        let c = raw("BASE=/x\n").resolve().unwrap();
        assert_eq!(c.root_kind(), RootKind::Overlay);
        let c = raw("BASE=/x\nUPPER=/t\nLOWER=/t\n").resolve().unwrap();
        assert_eq!(c.root_kind(), RootKind::Bind);
        let c = raw("BASE=/x\nUPPER=/t\nLOWER=/t\nLIVE=/t/\n")
            .resolve()
            .unwrap();
        assert_eq!(c.root_kind(), RootKind::Premounted);
    }

    #[test]
    fn check_rejects_missing_live_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["root", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let c = parse(&dir.path().join("s.conf"), "BASE=.\n")
            .resolve()
            .unwrap();
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("LIVE") && e.contains("live"), "{e}");
        std::fs::create_dir(dir.path().join("live")).unwrap();
        c.check().unwrap();
    }

    #[test]
    fn check_rejects_work_on_another_file_system() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["root", "live"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        // /proc is certainly another file system than the temporary directory.
        let text = "BASE=.\nWORK=/proc/self\n";
        let c = parse(&dir.path().join("s.conf"), text).resolve().unwrap();
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("different file system"), "{e}");
    }

    #[test]
    fn name_of_runs_only_what_the_name_needs() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("n.conf");
        std::fs::write(&conf, "BASE=.\nNAME=!echo picked\nLOWER=!false\n").unwrap();
        assert_eq!(name_of(&conf).unwrap(), "picked");
    }
}
