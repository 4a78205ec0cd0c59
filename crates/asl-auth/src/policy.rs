//! The DomainPolicy (ASL/POLICY-HASH/1) and its canonical hash.
//!
//! Canonical bytes, as the spec lays down: fields in the fixed order below, integers
//! big-endian, booleans one byte `0x00`/`0x01`, arrays sorted lexicographically and prefixed
//! by their length (u32), strings as u32 length + UTF-8, no optional fields (every field is
//! present, defaults explicit), `reserved0` last and zero. The policy hash is
//! `sha256:<hex of SHA-256(canonical bytes)>`; `policy.hash` holds that text and a newline.

use serde::{Deserialize, Serialize};

use crate::entropy::sha256_tag;
use crate::error::{AuthError, Result};

/// The roles of ASL/DAM/1.
pub const ROLES: [&str; 5] = ["produce", "execute", "publish", "federate", "audit"];

pub const POLICY_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicationPolicy {
    pub require_signature: bool,
    pub allowed_roles: Vec<String>,
    pub snapshot_required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionPolicy {
    pub per_signature_required: bool,
    pub allowed_roles: Vec<String>,
    pub deterministic_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationPolicy {
    pub export_published_only: bool,
    pub require_snapshot: bool,
    pub trusted_domains: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    pub gc_unpublished_allowed: bool,
    pub min_snapshot_retention: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisibilityPolicy {
    pub internal_hidden: bool,
    pub published_read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainPolicy {
    pub version: u32,
    pub publication_policy: PublicationPolicy,
    pub execution_policy: ExecutionPolicy,
    pub federation_policy: FederationPolicy,
    pub retention_policy: RetentionPolicy,
    pub visibility_policy: VisibilityPolicy,
    pub reserved0: u32,
}

impl Default for DomainPolicy {
    /// The conservative policy genesis uses when config.yaml has no `policy.rules`:
    /// publication needs a PER signature by a principal with `execute` or `publish`, under a
    /// snapshot; execution receipts must be signed by `execute`; only published state is
    /// exported; unpublished data is kept (no GC) for at least 30 snapshots.
    fn default() -> Self {
        DomainPolicy {
            version: POLICY_VERSION,
            publication_policy: PublicationPolicy {
                require_signature: true,
                allowed_roles: vec!["execute".into(), "publish".into()],
                snapshot_required: true,
            },
            execution_policy: ExecutionPolicy {
                per_signature_required: true,
                allowed_roles: vec!["execute".into()],
                deterministic_only: true,
            },
            federation_policy: FederationPolicy {
                export_published_only: true,
                require_snapshot: true,
                trusted_domains: vec![],
            },
            retention_policy: RetentionPolicy {
                gc_unpublished_allowed: false,
                min_snapshot_retention: 30,
            },
            visibility_policy: VisibilityPolicy {
                internal_hidden: true,
                published_read_only: true,
            },
            reserved0: 0,
        }
    }
}

struct Canon(Vec<u8>);

impl Canon {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn strings(&mut self, v: &[String]) {
        let mut v: Vec<&String> = v.iter().collect();
        v.sort();
        self.u32(v.len() as u32);
        for s in v {
            self.u32(s.len() as u32);
            self.0.extend_from_slice(s.as_bytes());
        }
    }
    fn u32s(&mut self, v: &[u32]) {
        let mut v = v.to_vec();
        v.sort_unstable();
        self.u32(v.len() as u32);
        for x in v {
            self.u32(x);
        }
    }
}

impl DomainPolicy {
    /// Checks what the spec requires of a policy: a supported version, known roles, no
    /// duplicates, `reserved0 = 0`. The error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |d: String| AuthError::refused("policy.valid", d);
        if self.version != POLICY_VERSION {
            return Err(bad(format!(
                "version {} is not supported (expected {POLICY_VERSION})",
                self.version
            )));
        }
        if self.reserved0 != 0 {
            return Err(bad("reserved0 must be 0".into()));
        }
        for (field, roles) in [
            (
                "publication_policy.allowed_roles",
                &self.publication_policy.allowed_roles,
            ),
            (
                "execution_policy.allowed_roles",
                &self.execution_policy.allowed_roles,
            ),
        ] {
            for r in roles {
                if !ROLES.contains(&r.as_str()) {
                    return Err(bad(format!(
                        "{field}: '{r}' is not a role (roles: {})",
                        ROLES.join(", ")
                    )));
                }
            }
            let mut s = roles.clone();
            s.sort();
            s.dedup();
            if s.len() != roles.len() {
                return Err(bad(format!("{field} lists a role twice")));
            }
        }
        Ok(())
    }

    /// The canonical bytes (see the module documentation).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut c = Canon(Vec::with_capacity(128));
        c.u32(self.version);
        let p = &self.publication_policy;
        c.bool(p.require_signature);
        c.strings(&p.allowed_roles);
        c.bool(p.snapshot_required);
        let e = &self.execution_policy;
        c.bool(e.per_signature_required);
        c.strings(&e.allowed_roles);
        c.bool(e.deterministic_only);
        let f = &self.federation_policy;
        c.bool(f.export_published_only);
        c.bool(f.require_snapshot);
        c.u32s(&f.trusted_domains);
        let r = &self.retention_policy;
        c.bool(r.gc_unpublished_allowed);
        c.u32(r.min_snapshot_retention);
        let v = &self.visibility_policy;
        c.bool(v.internal_hidden);
        c.bool(v.published_read_only);
        c.u32(self.reserved0);
        c.0
    }

    /// `sha256:<hex>` of the canonical bytes.
    pub fn hash(&self) -> String {
        sha256_tag(&self.canonical_bytes())
    }
}

/// The content of `policy.hash`: the hash and a newline.
pub fn policy_hash_file(hash: &str) -> String {
    format!("{hash}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_has_a_pinned_hash() {
        // A change of the canonical encoding changes every policy hash ever issued: this
        // vector is in docs/AUTHORITY.md and must not move.
        let p = DomainPolicy::default();
        assert_eq!(p.canonical_bytes().len(), 66);
        assert_eq!(
            p.hash(),
            "sha256:ed8623ab55e32996c609a290e7b43e3c43a28cbb7c780fe88211a6de00676a3e"
        );
        let mut q = p.clone();
        q.publication_policy.allowed_roles.reverse();
        assert_eq!(p.hash(), q.hash(), "arrays are sorted before hashing");
        q.retention_policy.min_snapshot_retention = 31;
        assert_ne!(p.hash(), q.hash());
    }

    #[test]
    fn a_policy_with_an_unknown_role_is_refused_naming_the_field() {
        let mut p = DomainPolicy::default();
        p.execution_policy.allowed_roles.push("root".into());
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("execution_policy.allowed_roles") && e.contains("policy.valid"));
    }
}
