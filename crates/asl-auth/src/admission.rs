//! Admission (ASL/DAP/1): the request an applicant writes to removable media, the
//! AdmissionRecord the authority persists and signs, and the decision file written back.
//!
//! Media layout (a directory standing for the USB stick): `asl-admission/request.json` from
//! the applicant, `asl-admission/decision.json` from the authority.

use std::path::{Path, PathBuf};

use asl_prov::sign::{Key, verify};
use serde::{Deserialize, Serialize};

use crate::authority::AuthorityBundle;
use crate::entropy::{Entropy, canonical, hash_of};
use crate::error::{AuthError, Result};
use crate::policy::ROLES;

pub const REQUEST_FORMAT: &str = "asl-admission-request/1";
pub const RECORD_FORMAT: &str = "asl-admission-record/1";
pub const DECISION_FORMAT: &str = "asl-admission-decision/1";

/// The role an authority principal needs to sign admission records.
pub const ADMIT_ROLE: &str = "federate";

pub fn request_path(media: &Path) -> PathBuf {
    media.join("asl-admission/request.json")
}

pub fn decision_path(media: &Path) -> PathBuf {
    media.join("asl-admission/decision.json")
}

/// What the proof of possession signs: the request without its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    pub bundle: AuthorityBundle,
    pub courtesy_lease: Option<String>,
    pub domain_id: u32,
    pub format: String,
    /// 16 random bytes, hex: two requests for the same DAM differ.
    pub request_id: String,
    pub requested_scope: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionRequest {
    pub body: RequestBody,
    /// By the DAM's root key over the canonical JSON of `body`.
    pub proof: String,
}

impl AdmissionRequest {
    /// A request signed by the applicant's domain root key.
    pub fn new(
        bundle: AuthorityBundle,
        domain_root: &Key,
        mut requested_scope: Vec<String>,
        entropy: &mut Entropy,
    ) -> Result<AdmissionRequest> {
        requested_scope.sort();
        let body = RequestBody {
            domain_id: bundle.dam.dam.domain_id,
            bundle,
            courtesy_lease: None,
            format: REQUEST_FORMAT.into(),
            request_id: hex::encode(entropy.bytes::<16>()?),
            requested_scope,
        };
        let proof = domain_root.sign(&canonical(&body)?);
        Ok(AdmissionRequest { body, proof })
    }

    pub fn hash(&self) -> Result<String> {
        hash_of(self)
    }

    pub fn load(path: &Path) -> Result<AdmissionRequest> {
        let bytes = std::fs::read(path).map_err(|e| AuthError::io(path, e))?;
        let r: AdmissionRequest =
            serde_json::from_slice(&bytes).map_err(|e| AuthError::Decode {
                what: path.display().to_string(),
                kind: "admission request",
                reason: e.to_string(),
            })?;
        if r.body.format != REQUEST_FORMAT {
            return Err(AuthError::Decode {
                what: path.display().to_string(),
                kind: "admission request",
                reason: format!("format '{}' is not '{REQUEST_FORMAT}'", r.body.format),
            });
        }
        Ok(r)
    }

    /// Structural validation (DAP step 2): the DAM chain, the domain id, the proof of
    /// possession of the DAM root key. The first failing rule is returned.
    pub fn validate(&self) -> Result<()> {
        self.body.bundle.validate()?;
        if self.body.domain_id != self.body.bundle.dam.dam.domain_id {
            return Err(AuthError::refused(
                "dap.domain-id",
                format!(
                    "the request is for domain {} but its DAM is for domain {}",
                    self.body.domain_id, self.body.bundle.dam.dam.domain_id
                ),
            ));
        }
        verify(
            &self.body.bundle.dam.dam.root_key,
            &canonical(&self.body)?,
            &self.proof,
        )
        .map_err(|e| {
            AuthError::refused(
                "dap.proof",
                format!("the proof of possession of the DAM root key fails: {e}"),
            )
        })
    }
}

/// `ACCEPTED`, `ACCEPTED_LIMITED`, `DEFERRED` or `REJECTED`.
pub fn is_admitted(decision: &str) -> bool {
    decision == "ACCEPTED" || decision == "ACCEPTED_LIMITED"
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionRecord {
    pub admitted_scope: Vec<String>,
    pub dam_hash: String,
    pub decision: String,
    /// A counter of the authority's decisions (not wall time, ASL/DAP/1 §4).
    pub decision_epoch: u64,
    pub domain_id: u32,
    pub format: String,
    pub policy_hash: String,
    /// Why, in words.
    pub reason: String,
    pub request_hash: String,
    /// The rule that limited, deferred or rejected the request; `null` when accepted.
    pub rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    pub public_key: String,
    pub record: AdmissionRecord,
    pub signature: String,
}

/// What the authority writes back to the media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionDecision {
    /// The applicant's bundle, as admitted.
    pub admitted: AuthorityBundle,
    /// The authority's own bundle: the record's signer must be its principal.
    pub authority: AuthorityBundle,
    pub format: String,
    pub record: SignedRecord,
}

impl AdmissionDecision {
    pub fn load(path: &Path) -> Result<AdmissionDecision> {
        let bytes = std::fs::read(path).map_err(|e| AuthError::io(path, e))?;
        let d: AdmissionDecision =
            serde_json::from_slice(&bytes).map_err(|e| AuthError::Decode {
                what: path.display().to_string(),
                kind: "admission decision",
                reason: e.to_string(),
            })?;
        if d.format != DECISION_FORMAT {
            return Err(AuthError::Decode {
                what: path.display().to_string(),
                kind: "admission decision",
                reason: format!("format '{}' is not '{DECISION_FORMAT}'", d.format),
            });
        }
        Ok(d)
    }

    /// Checks the decision as a receiver must: the authority's chain, the record's signature
    /// by an authority principal with `federate`, and that the record is about this DAM.
    /// `pinned_root`, when given, is the authority's offline root the receiver trusts.
    pub fn validate(&self, pinned_root: Option<&str>) -> Result<()> {
        self.authority.validate()?;
        if let Some(root) = pinned_root
            && !self.authority.root_set.root_keys.iter().any(|k| k == root)
        {
            return Err(AuthError::refused(
                "decision.authority-pinned",
                format!("the decision's authority is not rooted in the pinned root key {root}"),
            ));
        }
        if !self
            .authority
            .dam
            .dam
            .holds(&self.record.public_key, ADMIT_ROLE)
        {
            return Err(AuthError::refused(
                "decision.signer",
                format!(
                    "the admission record is signed by key {}, which the authority's DAM does \
                     not list with role {ADMIT_ROLE}",
                    self.record.public_key
                ),
            ));
        }
        verify(
            &self.record.public_key,
            &canonical(&self.record.record)?,
            &self.record.signature,
        )
        .map_err(|e| {
            AuthError::refused(
                "decision.signature",
                format!("the admission record's signature fails: {e}"),
            )
        })?;
        self.admitted.validate()?;
        let r = &self.record.record;
        if r.dam_hash != self.admitted.dam.hash()? || r.domain_id != self.admitted.dam.dam.domain_id
        {
            return Err(AuthError::refused(
                "decision.dam-match",
                "the admission record is about another DAM than the one it carries",
            ));
        }
        Ok(())
    }
}

/// The policy decision of DAP step 3–4 for a structurally valid request.
pub struct Verdict {
    pub decision: &'static str,
    pub admitted_scope: Vec<String>,
    pub rule: Option<&'static str>,
    pub reason: String,
}

/// Decides on a valid request. `taken` says whether the domain id belongs to a configured
/// domain or to another admitted DAM; `policy_hash` is the authority's.
pub fn decide(request: &AdmissionRequest, taken: Option<String>, policy_hash: &str) -> Verdict {
    let scope = &request.body.requested_scope;
    if let Some(who) = taken {
        return Verdict {
            decision: "REJECTED",
            admitted_scope: vec![],
            rule: Some("dap.domain-unique"),
            reason: format!("domain id {} is already {who}", request.body.domain_id),
        };
    }
    if let Some(r) = scope.iter().find(|r| !ROLES.contains(&r.as_str())) {
        return Verdict {
            decision: "REJECTED",
            admitted_scope: vec![],
            rule: Some("dap.scope-known"),
            reason: format!("requested scope '{r}' is not a role ({})", ROLES.join(", ")),
        };
    }
    if scope.is_empty() {
        return Verdict {
            decision: "REJECTED",
            admitted_scope: vec![],
            rule: Some("dap.scope-known"),
            reason: "the request asks for no scope".into(),
        };
    }
    if scope.iter().any(|r| r == "federate") {
        return Verdict {
            decision: "DEFERRED",
            admitted_scope: vec![],
            rule: Some("dap.operator-review"),
            reason: "federate is asked for: federation is decided by an operator, not by \
                     this host; ask again without it, or have the operator review"
                .into(),
        };
    }
    if request.body.bundle.dam.dam.policy_hash != policy_hash {
        let limited: Vec<String> = scope.iter().filter(|r| *r != "publish").cloned().collect();
        return Verdict {
            decision: "ACCEPTED_LIMITED",
            admitted_scope: limited,
            rule: Some("dap.policy-compatible"),
            reason: format!(
                "the domain's policy {} differs from the authority's {policy_hash}: admitted \
                 without publish",
                request.body.bundle.dam.dam.policy_hash
            ),
        };
    }
    Verdict {
        decision: "ACCEPTED",
        admitted_scope: scope.clone(),
        rule: None,
        reason: "valid DAM, certified root, compatible policy".into(),
    }
}
