//! `config.yaml` of the authority host (ASL/AUTH-HOST-CONFIG/1, research §5.4).
//!
//! Parsed with `serde_yaml_ng` (YAML 1.2 subset of libyaml). Errors name `file:line`: a
//! syntax or type error carries the parser's line; a semantic error (a courtesy domain
//! without a lease, say) names the line of the offending key, found by [`locate`]. Unknown
//! fields are ignored with a warning (the spec's SHOULD), each warning naming its line too.
//!
//! One extension: `policy.rules` may hold the DomainPolicy itself (all fields, as in
//! [`crate::policy::DomainPolicy`]); without it genesis uses the default policy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{AuthError, Result};
use crate::policy::DomainPolicy;

pub const DEFAULT_CONFIG: &str = "/etc/asl-auth-host/config.yaml";

#[derive(Debug, Clone, Deserialize)]
pub struct HostSection {
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// `rescue`, `admission` or `normal`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "normal".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct DomainSection {
    /// The authoritative domain id: a decimal u32, or a UUID whose value fits in 32 bits
    /// (`00000000-0000-0000-0000-000000000001` is domain 1); see docs/AUTHORITY.md.
    pub id: String,
    /// `courtesy`, `private` or `authority`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub path: String,
    #[serde(default)]
    pub snapshot_retention: Option<String>,
    #[serde(default)]
    pub allowed_operations: Vec<String>,
    #[serde(default)]
    pub courtesy_lease: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertificatesSection {
    #[serde(default)]
    pub root_offline_path: Option<String>,
    #[serde(default)]
    pub domain_authority_path: Option<String>,
    #[serde(default)]
    pub sops_bundle_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PolicySection {
    pub hash_file: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: Option<DomainPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoggingSection {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pool {
    pub name: String,
    pub mount_point: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoreSection {
    #[serde(rename = "type", default = "default_store_type")]
    pub kind: String,
    #[serde(default)]
    pub pools: Vec<Pool>,
    #[serde(default)]
    pub enable_snapshotting: bool,
    #[serde(default)]
    pub snapshot_prefix: Option<String>,
}

fn default_store_type() -> String {
    "posix".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HooksSection {
    #[serde(default)]
    pub pre_start: Option<String>,
    #[serde(default)]
    pub post_start: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub host: HostSection,
    pub domains: BTreeMap<String, DomainSection>,
    #[serde(default)]
    pub certificates: CertificatesSection,
    pub policy: PolicySection,
    #[serde(default)]
    pub logging: LoggingSection,
    pub store: Option<StoreSection>,
    #[serde(default)]
    pub hooks: HooksSection,
}

/// A parsed and checked configuration, with the warnings parsing raised.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub file: PathBuf,
    /// `file:line: unknown field a.b (ignored)` and the like.
    pub warnings: Vec<String>,
}

/// The known keys at each level, for the unknown-field warnings.
fn known(path: &[&str]) -> Option<&'static [&'static str]> {
    Some(match path {
        [] => &[
            "host",
            "domains",
            "certificates",
            "policy",
            "logging",
            "store",
            "hooks",
        ],
        ["host"] => &["name", "version", "mode"],
        ["domains"] => return None,
        ["domains", _] => &[
            "id",
            "type",
            "description",
            "path",
            "snapshot_retention",
            "allowed_operations",
            "courtesy_lease",
        ],
        ["certificates"] => &[
            "root_offline_path",
            "domain_authority_path",
            "sops_bundle_path",
        ],
        ["policy"] => &["hash_file", "description", "rules"],
        ["logging"] => &["path", "level"],
        ["store"] => &["type", "pools", "enable_snapshotting", "snapshot_prefix"],
        ["hooks"] => &["pre_start", "post_start"],
        _ => return None,
    })
}

/// The 1-based line of the key at `path` in block-style YAML `text` (0 if not found). Keys
/// are matched by indentation: a line `  name:` is a child of the nearest less-indented key
/// above it.
pub fn locate(text: &str, path: &[&str]) -> usize {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        let body = body.strip_prefix("- ").unwrap_or(body);
        let Some((key, _)) = body.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches('"').trim_matches('\'');
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
            return i + 1;
        }
    }
    0
}

fn unknown_fields(
    v: &serde_yaml_ng::Value,
    path: &mut Vec<String>,
    text: &str,
    file: &Path,
    out: &mut Vec<String>,
) {
    let serde_yaml_ng::Value::Mapping(m) = v else {
        return;
    };
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let allowed = known(&p);
    for (k, child) in m {
        let Some(k) = k.as_str() else { continue };
        path.push(k.to_string());
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(allowed) = allowed
            && !allowed.contains(&k)
        {
            out.push(format!(
                "{}:{}: unknown field {} (ignored)",
                file.display(),
                locate(text, &p),
                p.join(".")
            ));
        } else if p != ["policy", "rules"] {
            unknown_fields(child, path, text, file, out);
        }
        path.pop();
    }
}

/// Parses a domain id: a decimal u32, or a UUID whose value fits in 32 bits.
pub fn parse_domain_id(s: &str) -> std::result::Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let hexdigits: String = s.chars().filter(|c| *c != '-').collect();
    let is_uuid = s.len() == 36
        && hexdigits.len() == 32
        && hexdigits.chars().all(|c| c.is_ascii_hexdigit())
        && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-');
    if !is_uuid {
        return Err(format!(
            "domain id '{s}' is neither a decimal number below 2^32 nor a UUID"
        ));
    }
    let (high, low) = hexdigits.split_at(24);
    if high.chars().any(|c| c != '0') {
        return Err(format!(
            "domain id '{s}' does not fit in 32 bits: store and signature domain ids are u32, \
             so a UUID id must have its first 24 hex digits zero (see docs/AUTHORITY.md)"
        ));
    }
    u32::from_str_radix(low, 16).map_err(|e| format!("domain id '{s}': {e}"))
}

/// Parses a duration `N` followed by `s`, `m`, `h`, `d` or `w`, into seconds.
pub fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "duration '{s}' must end in s, m, h, d or w (e.g. 30d)"
            ));
        }
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("duration '{s}' must be a whole number and a unit (e.g. 30d)"))
}

impl LoadedConfig {
    pub fn load(file: &Path) -> Result<LoadedConfig> {
        let text = std::fs::read_to_string(file).map_err(|e| AuthError::io(file, e))?;
        LoadedConfig::parse(&text, file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<LoadedConfig> {
        let yaml_err = |e: serde_yaml_ng::Error| AuthError::Config {
            file: file.to_path_buf(),
            line: e.location().map_or(0, |l| l.line()),
            reason: e.to_string(),
        };
        let config: Config = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
        let mut warnings = Vec::new();
        unknown_fields(&value, &mut Vec::new(), text, file, &mut warnings);
        let loaded = LoadedConfig {
            config,
            file: file.to_path_buf(),
            warnings,
        };
        loaded.check(text)?;
        Ok(loaded)
    }

    fn at(&self, text: &str, path: &[&str], reason: String) -> AuthError {
        AuthError::Config {
            file: self.file.clone(),
            line: locate(text, path),
            reason,
        }
    }

    /// The semantic rules of the schema.
    fn check(&self, text: &str) -> Result<()> {
        let c = &self.config;
        if !["rescue", "admission", "normal"].contains(&c.host.mode.as_str()) {
            return Err(self.at(
                text,
                &["host", "mode"],
                format!(
                    "host.mode '{}' must be rescue, admission or normal",
                    c.host.mode
                ),
            ));
        }
        if c.domains.is_empty() {
            return Err(self.at(text, &["domains"], "no domains are configured".into()));
        }
        let mut ids = BTreeMap::new();
        let mut authorities = 0;
        for (name, d) in &c.domains {
            let here = |key: &str, reason: String| self.at(text, &["domains", name, key], reason);
            let id = parse_domain_id(&d.id).map_err(|r| here("id", r))?;
            if let Some(other) = ids.insert(id, name) {
                return Err(here(
                    "id",
                    format!("domain {name} has the same id {id} as domain {other}"),
                ));
            }
            match d.kind.as_str() {
                "courtesy" if d.courtesy_lease.is_none() => {
                    return Err(here(
                        "type",
                        format!("domain {name} is a courtesy domain and needs courtesy_lease"),
                    ));
                }
                "authority" if d.courtesy_lease.is_some() => {
                    return Err(here(
                        "courtesy_lease",
                        format!(
                            "domain {name} is an authority domain: courtesy_lease must be omitted"
                        ),
                    ));
                }
                "courtesy" | "private" => {}
                "authority" => authorities += 1,
                other => {
                    return Err(here(
                        "type",
                        format!("domain type '{other}' must be courtesy, private or authority"),
                    ));
                }
            }
            if !d.path.starts_with('/') {
                return Err(here("path", format!("path '{}' must be absolute", d.path)));
            }
            for op in &d.allowed_operations {
                if !["read", "write", "append", "seal", "gc"].contains(&op.as_str()) {
                    return Err(here(
                        "allowed_operations",
                        format!("operation '{op}' must be one of read, write, append, seal, gc"),
                    ));
                }
            }
            for (key, v) in [
                ("snapshot_retention", &d.snapshot_retention),
                ("courtesy_lease", &d.courtesy_lease),
            ] {
                if let Some(v) = v {
                    parse_duration(v).map_err(|r| here(key, r))?;
                }
            }
        }
        if authorities != 1 {
            return Err(self.at(
                text,
                &["domains"],
                format!(
                    "exactly one domain must have type authority (the authority's own store); \
                     found {authorities}"
                ),
            ));
        }
        if let Some(level) = &c.logging.level
            && !["DEBUG", "INFO", "WARN", "ERROR"].contains(&level.as_str())
        {
            return Err(self.at(
                text,
                &["logging", "level"],
                format!("logging.level '{level}' must be DEBUG, INFO, WARN or ERROR"),
            ));
        }
        if let Some(s) = &c.store
            && !["posix", "zfs"].contains(&s.kind.as_str())
        {
            return Err(self.at(
                text,
                &["store", "type"],
                format!("store.type '{}' must be posix or zfs", s.kind),
            ));
        }
        if let Some(rules) = &c.policy.rules {
            rules
                .validate()
                .map_err(|e| self.at(text, &["policy", "rules"], e.to_string()))?;
        }
        Ok(())
    }

    /// The configured policy, or the default one.
    pub fn policy(&self) -> DomainPolicy {
        self.config.policy.rules.clone().unwrap_or_default()
    }

    /// The authority domain: its name and section.
    pub fn authority_domain(&self) -> (&str, &DomainSection) {
        self.config
            .domains
            .iter()
            .find(|(_, d)| d.kind == "authority")
            .map(|(n, d)| (n.as_str(), d))
            .expect("check() ensures exactly one authority domain")
    }
}

/// `path` (absolute in the config) under `root` (`/` on the real host, a directory in tests
/// and image builds).
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = "\
host:
  name: \"asl-auth-host-01\"
  version: \"0.1\"
  mode: \"admission\"
domains:
  common:
    id: \"00000000-0000-0000-0000-000000000001\"
    type: \"courtesy\"
    description: \"Shared courtesy domain\"
    path: \"/var/lib/asl/common\"
    snapshot_retention: 30d
    allowed_operations: [read, write, append, seal]
    courtesy_lease: 7d
  authority:
    id: \"2\"
    type: \"authority\"
    path: \"/var/lib/asl/personal\"
    colour: blue
policy:
  hash_file: \"/etc/asl-auth-host/policy.hash\"
";

    #[test]
    fn the_spec_example_parses_and_unknown_fields_warn_with_their_line() {
        let c = LoadedConfig::parse(SAMPLE, Path::new("config.yaml")).unwrap();
        assert_eq!(parse_domain_id(&c.config.domains["common"].id), Ok(1));
        assert_eq!(
            c.warnings,
            vec!["config.yaml:18: unknown field domains.authority.colour (ignored)"]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad_type = SAMPLE.replace("type: \"courtesy\"", "type: \"public\"");
        let e = LoadedConfig::parse(&bad_type, Path::new("c.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("c.yaml:8: "), "{e}");
        let no_lease = SAMPLE.replace("    courtesy_lease: 7d\n", "");
        let e = LoadedConfig::parse(&no_lease, Path::new("c.yaml")).unwrap_err();
        assert!(
            e.to_string().starts_with("c.yaml:8: ") && e.to_string().contains("courtesy_lease"),
            "{e}"
        );
        let syntax = SAMPLE.replace("  mode: \"admission\"", "  mode: [unclosed");
        let e = LoadedConfig::parse(&syntax, Path::new("c.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("c.yaml:"), "{e}");
        assert!(!e.to_string().starts_with("c.yaml:0:"), "{e}");
        let wide = SAMPLE.replace(
            "\"00000000-0000-0000-0000-000000000001\"",
            "\"10000000-0000-0000-0000-000000000001\"",
        );
        let e = LoadedConfig::parse(&wide, Path::new("c.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("c.yaml:7: "), "{e}");
    }
}
