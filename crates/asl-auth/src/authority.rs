//! Authority records: the offline root set (ASL/OFFLINE-ROOT-TRUST/1), certificates
//! (ASL/OCS/1), the Domain Authority Manifest (ASL/DAM/1) and the bundle that carries them
//! together, with the validation every receiver runs.
//!
//! Every record is canonical JSON (asl-prov's encoder); a signed record is `{body,
//! signature}` where the ed25519 signature covers the canonical JSON of the body. Hashes are
//! `sha256:<hex>` of the canonical JSON of the body. Validation failures name the rule.

use asl_prov::sign::{Key, verify};
use serde::{Deserialize, Serialize};

use crate::entropy::{canonical, hash_of, sha256_tag};
use crate::error::{AuthError, Result};
use crate::policy::ROLES;

pub const ROOT_SET_FORMAT: &str = "asl-offline-root-set/1";
pub const CERTIFICATE_FORMAT: &str = "asl-authority-certificate/1";
pub const DAM_FORMAT: &str = "asl-dam/1";
pub const BUNDLE_FORMAT: &str = "asl-authority-bundle/1";

/// `PrincipalID = HASH(public_key)`: SHA-256 over the 32 raw public-key bytes.
pub fn principal_id(public_hex: &str) -> String {
    sha256_tag(&hex::decode(public_hex).unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineRootSet {
    pub format: String,
    pub reserved0: u32,
    /// Hex ed25519 public keys, sorted.
    pub root_keys: Vec<String>,
    pub threshold: u8,
    pub version: u32,
}

impl OfflineRootSet {
    pub fn single(root: &Key) -> OfflineRootSet {
        OfflineRootSet {
            format: ROOT_SET_FORMAT.into(),
            reserved0: 0,
            root_keys: vec![root.public_hex()],
            threshold: 1,
            version: 1,
        }
    }

    /// Valid iff keys are unique, `1 <= threshold <= len`, version 1, `reserved0 = 0`.
    pub fn validate(&self) -> Result<()> {
        let mut keys = self.root_keys.clone();
        keys.sort();
        keys.dedup();
        if self.format != ROOT_SET_FORMAT
            || self.version != 1
            || self.reserved0 != 0
            || keys.len() != self.root_keys.len()
            || self.threshold == 0
            || usize::from(self.threshold) > keys.len()
        {
            return Err(AuthError::refused(
                "root-set.valid",
                format!(
                    "the offline root set is invalid (format {}, version {}, {} keys, {} unique, \
                     threshold {}, reserved0 {})",
                    self.format,
                    self.version,
                    self.root_keys.len(),
                    keys.len(),
                    self.threshold,
                    self.reserved0
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityCertificate {
    pub domain_id: u32,
    pub format: String,
    /// Hex public key of the offline root that signed it.
    pub issued_by: String,
    pub policy_hash: String,
    /// Empty for `domain_root`.
    pub roles: Vec<String>,
    pub subject_id: String,
    pub subject_pubkey: String,
    /// `domain_root` or `principal`.
    pub subject_type: String,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCertificate {
    pub certificate: AuthorityCertificate,
    pub signature: String,
}

impl SignedCertificate {
    /// The offline root `root` certifies `subject` as the root key of `domain_id`.
    pub fn domain_root(
        root: &Key,
        subject_pubkey: &str,
        domain_id: u32,
        policy_hash: &str,
    ) -> Result<SignedCertificate> {
        let certificate = AuthorityCertificate {
            domain_id,
            format: CERTIFICATE_FORMAT.into(),
            issued_by: root.public_hex(),
            policy_hash: policy_hash.into(),
            roles: vec![],
            subject_id: principal_id(subject_pubkey),
            subject_pubkey: subject_pubkey.into(),
            subject_type: "domain_root".into(),
            version: 1,
        };
        let signature = root.sign(&canonical(&certificate)?);
        Ok(SignedCertificate {
            certificate,
            signature,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalEntry {
    pub principal_id: String,
    pub public_key: String,
    /// Sorted.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainAuthorityManifest {
    pub domain_id: u32,
    pub format: String,
    pub policy_hash: String,
    /// Sorted by principal id.
    pub principals: Vec<PrincipalEntry>,
    /// Hex public key of the domain root key (certified by a `domain_root` certificate).
    pub root_key: String,
    /// Roles this DAM authorises; empty means all (ASL/DAM/1).
    pub scope: Vec<String>,
    pub version: u32,
}

impl DomainAuthorityManifest {
    pub fn new(
        domain_id: u32,
        version: u32,
        root_key: &Key,
        principals: &[(&Key, &[&str])],
        policy_hash: &str,
    ) -> DomainAuthorityManifest {
        let mut principals: Vec<PrincipalEntry> = principals
            .iter()
            .map(|(k, roles)| {
                let mut roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
                roles.sort();
                PrincipalEntry {
                    principal_id: principal_id(&k.public_hex()),
                    public_key: k.public_hex(),
                    roles,
                }
            })
            .collect();
        principals.sort_by(|a, b| a.principal_id.cmp(&b.principal_id));
        DomainAuthorityManifest {
            domain_id,
            format: DAM_FORMAT.into(),
            policy_hash: policy_hash.into(),
            principals,
            root_key: root_key.public_hex(),
            scope: vec![],
            version,
        }
    }

    /// The principal with this public key, if listed.
    pub fn principal(&self, public_hex: &str) -> Option<&PrincipalEntry> {
        self.principals.iter().find(|p| p.public_key == public_hex)
    }

    /// Whether the key is listed and holds `role` (and the DAM's scope allows it).
    pub fn holds(&self, public_hex: &str, role: &str) -> bool {
        (self.scope.is_empty() || self.scope.iter().any(|s| s == role))
            && self
                .principal(public_hex)
                .is_some_and(|p| p.roles.iter().any(|r| r == role))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDam {
    pub dam: DomainAuthorityManifest,
    /// By the DAM's root key.
    pub signature: String,
}

impl SignedDam {
    pub fn sign(dam: DomainAuthorityManifest, root: &Key) -> Result<SignedDam> {
        let signature = root.sign(&canonical(&dam)?);
        Ok(SignedDam { dam, signature })
    }

    /// `sha256:` of the canonical DAM body: the `dam_hash` of admission records.
    pub fn hash(&self) -> Result<String> {
        hash_of(&self.dam)
    }
}

/// What proves a domain's authority, travelling together: the offline root set, the
/// certificates it signed, and the signed DAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityBundle {
    pub certificates: Vec<SignedCertificate>,
    pub dam: SignedDam,
    pub format: String,
    pub root_set: OfflineRootSet,
}

impl AuthorityBundle {
    pub fn new(
        root_set: OfflineRootSet,
        certificates: Vec<SignedCertificate>,
        dam: SignedDam,
    ) -> AuthorityBundle {
        AuthorityBundle {
            certificates,
            dam,
            format: BUNDLE_FORMAT.into(),
            root_set,
        }
    }

    pub fn decode(bytes: &[u8], what: &str) -> Result<AuthorityBundle> {
        let b: AuthorityBundle = serde_json::from_slice(bytes).map_err(|e| AuthError::Decode {
            what: what.into(),
            kind: "authority bundle",
            reason: e.to_string(),
        })?;
        if b.format != BUNDLE_FORMAT {
            return Err(AuthError::Decode {
                what: what.into(),
                kind: "authority bundle",
                reason: format!("format '{}' is not '{BUNDLE_FORMAT}'", b.format),
            });
        }
        Ok(b)
    }

    /// Validates the chain root set → `domain_root` certificate → DAM (ASL/OCS/1 §"DAM
    /// valid iff"): the first rule that fails is returned.
    pub fn validate(&self) -> Result<()> {
        self.root_set.validate()?;
        let dam = &self.dam.dam;
        if dam.format != DAM_FORMAT || dam.version == 0 {
            return Err(AuthError::refused(
                "dam.format",
                format!(
                    "the DAM has format '{}' version {}",
                    dam.format, dam.version
                ),
            ));
        }
        verify(&dam.root_key, &canonical(dam)?, &self.dam.signature).map_err(|e| {
            AuthError::refused(
                "dam.signature",
                format!(
                    "the DAM of domain {} is not signed by its root key: {e}",
                    dam.domain_id
                ),
            )
        })?;
        for p in &dam.principals {
            if p.principal_id != principal_id(&p.public_key) {
                return Err(AuthError::refused(
                    "dam.principal-id",
                    format!(
                        "principal {} is not the hash of its public key {}",
                        p.principal_id, p.public_key
                    ),
                ));
            }
            if let Some(r) = p.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
                return Err(AuthError::refused(
                    "dam.roles",
                    format!("principal {} has unknown role '{r}'", p.principal_id),
                ));
            }
        }
        // The certificates of the root key, each signed by a distinct key of the root set.
        let mut issuers: Vec<&str> = Vec::new();
        let mut certified_policy = None;
        for sc in &self.certificates {
            let c = &sc.certificate;
            if c.subject_type != "domain_root"
                || c.subject_pubkey != dam.root_key
                || c.domain_id != dam.domain_id
                || !c.roles.is_empty()
                || !self.root_set.root_keys.contains(&c.issued_by)
                || verify(&c.issued_by, &canonical(c)?, &sc.signature).is_err()
            {
                continue;
            }
            if !issuers.contains(&c.issued_by.as_str()) {
                issuers.push(&c.issued_by);
            }
            certified_policy = Some(c.policy_hash.clone());
        }
        if issuers.len() < usize::from(self.root_set.threshold) {
            return Err(AuthError::refused(
                "dam.root-certified",
                format!(
                    "the DAM root key {} of domain {} is not certified: {} valid domain_root \
                     certificate(s) by the offline root set, {} needed",
                    dam.root_key,
                    dam.domain_id,
                    issuers.len(),
                    self.root_set.threshold
                ),
            ));
        }
        if certified_policy.as_deref() != Some(dam.policy_hash.as_str()) {
            return Err(AuthError::refused(
                "dam.policy-hash",
                format!(
                    "the DAM of domain {} carries policy hash {} but its certificate binds {}",
                    dam.domain_id,
                    dam.policy_hash,
                    certified_policy.unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::Entropy;
    use crate::sealed::new_key;

    fn bundle(e: &mut Entropy, policy: &str, cert_policy: &str) -> AuthorityBundle {
        let root = new_key(e).unwrap();
        let droot = new_key(e).unwrap();
        let signer = new_key(e).unwrap();
        let dam = DomainAuthorityManifest::new(7, 1, &droot, &[(&signer, &["execute"])], policy);
        let cert =
            SignedCertificate::domain_root(&root, &droot.public_hex(), 7, cert_policy).unwrap();
        AuthorityBundle::new(
            OfflineRootSet::single(&root),
            vec![cert],
            SignedDam::sign(dam, &droot).unwrap(),
        )
    }

    #[test]
    fn a_certified_dam_validates_and_each_break_names_its_rule() {
        let mut e = Entropy::fixed([5; 32]);
        let good = bundle(&mut e, "sha256:aa", "sha256:aa");
        good.validate().unwrap();
        let rule = |b: &AuthorityBundle| b.validate().unwrap_err().rule().unwrap();
        assert_eq!(
            rule(&bundle(&mut e, "sha256:aa", "sha256:bb")),
            "dam.policy-hash"
        );
        let mut uncert = good.clone();
        uncert.certificates.clear();
        assert_eq!(rule(&uncert), "dam.root-certified");
        let mut other_root = good.clone();
        other_root.root_set = OfflineRootSet::single(&new_key(&mut e).unwrap());
        assert_eq!(rule(&other_root), "dam.root-certified");
        let mut tampered = good.clone();
        tampered.dam.dam.version = 2;
        assert_eq!(rule(&tampered), "dam.signature");
    }
}
