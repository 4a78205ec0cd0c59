//! PER signatures validated against a DAM (PER/SIGNATURE/1 §validation).
//!
//! A receipt is authoritative for a domain when at least one of its signatures passes every
//! rule: `per.signature` (the ed25519 signature over the canonical payload holds),
//! `per.receipt-match` (the payload names this receipt, its sorted inputs and its action
//! digest), `per.domain` (the payload's domain is the DAM's), `per.key-in-dam` (the key is a
//! principal of the DAM), `per.role-execute` (that principal holds `execute`) and
//! `per.snapshot-visible` (the payload's snapshot id and log position are a snapshot of the
//! store the receipt is read from). The DAM itself must be valid first (`dam.*` rules).

use asl_prov::Receipt;
use asl_prov::sign::PerSignature;
use asl_store::{ArtifactRead, Reference, Store};
use serde::Serialize;

use crate::authority::{AuthorityBundle, DomainAuthorityManifest};
use crate::error::{AuthError, Result};

/// Checks one signature; the error is the rule that failed and why.
pub fn check_signature(
    sig: &PerSignature,
    receipt: &Receipt,
    receipt_ref: &str,
    dam: &DomainAuthorityManifest,
    visible: impl Fn(u64, u64) -> bool,
) -> std::result::Result<(), (&'static str, String)> {
    sig.check().map_err(|e| ("per.signature", e))?;
    if sig.payload.per_artifact_id != receipt_ref
        || sig.payload.program_id != receipt.action_digest
        || sig.payload.input_artifact_ids != receipt.sorted_input_refs()
    {
        return Err((
            "per.receipt-match",
            format!(
                "the signature is over receipt {} with other inputs or action digest, not over \
                 {receipt_ref}",
                sig.payload.per_artifact_id
            ),
        ));
    }
    if sig.payload.domain_id != dam.domain_id {
        return Err((
            "per.domain",
            format!(
                "signed for domain {} but the DAM is domain {}'s",
                sig.payload.domain_id, dam.domain_id
            ),
        ));
    }
    let Some(p) = dam.principal(&sig.public_key) else {
        return Err((
            "per.key-in-dam",
            format!(
                "key {} is not a principal of the DAM of domain {} (version {})",
                sig.keyid, dam.domain_id, dam.version
            ),
        ));
    };
    if !dam.holds(&sig.public_key, "execute") {
        return Err((
            "per.role-execute",
            format!(
                "principal {} holds {} but not execute",
                p.principal_id,
                if p.roles.is_empty() {
                    "no role".to_string()
                } else {
                    p.roles.join(", ")
                }
            ),
        ));
    }
    if !visible(sig.payload.snapshot_id, sig.payload.logseq) {
        return Err((
            "per.snapshot-visible",
            format!(
                "snapshot {} at log position {} is not visible in this store",
                sig.payload.snapshot_id, sig.payload.logseq
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureVerdict {
    pub keyid: String,
    pub public_key: String,
    pub ok: bool,
    /// The rule that failed.
    pub rule: Option<String>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DamVerdict {
    pub receipt: String,
    pub domain_id: u32,
    pub dam_hash: String,
    pub dam_version: u32,
    /// At least one signature passes every rule, and the DAM is valid.
    pub authoritative: bool,
    pub signatures: Vec<SignatureVerdict>,
    /// Why it is not authoritative, rule first.
    pub problems: Vec<String>,
}

/// Validates the receipt `receipt_ref` of `store` against `bundle`.
pub fn validate_in_store(
    store: &Store,
    receipt_ref: &Reference,
    bundle: &AuthorityBundle,
) -> Result<DamVerdict> {
    let dam = &bundle.dam.dam;
    let mut v = DamVerdict {
        receipt: receipt_ref.to_string(),
        domain_id: dam.domain_id,
        dam_hash: bundle.dam.hash()?,
        dam_version: dam.version,
        authoritative: false,
        signatures: vec![],
        problems: vec![],
    };
    if let Err(e) = bundle.validate() {
        v.problems.push(format!("the DAM is not valid: {e}"));
        return Ok(v);
    }
    let reader = store.reader();
    let receipt =
        Receipt::decode(&reader.read_all(receipt_ref)?).map_err(|e| AuthError::Decode {
            what: receipt_ref.to_string(),
            kind: "receipt",
            reason: e,
        })?;
    let visible = |id: u64, logseq: u64| {
        store
            .snapshots()
            .iter()
            .any(|s| s.id == id && s.logseq == logseq)
    };
    let g = asl_prov::graph::Graph::load(store, None)?;
    let mut seen = std::collections::HashSet::new();
    for s in g.steps.iter().filter(|s| s.receipt_ref == *receipt_ref) {
        let edge =
            asl_prov::Edge::decode(&reader.read_all(&s.edge)?).map_err(|e| AuthError::Decode {
                what: s.edge.to_string(),
                kind: "TGK edge",
                reason: e,
            })?;
        for sr in &edge.signatures {
            if !seen.insert(sr.clone()) {
                continue;
            }
            let sref: Reference =
                sr.parse()
                    .map_err(|e: asl_store::ParseReferenceError| AuthError::Decode {
                        what: sr.clone(),
                        kind: "reference",
                        reason: e.to_string(),
                    })?;
            let sig =
                PerSignature::decode(&reader.read_all(&sref)?).map_err(|e| AuthError::Decode {
                    what: sref.to_string(),
                    kind: "receipt signature",
                    reason: e,
                })?;
            let r = check_signature(&sig, &receipt, &receipt_ref.to_string(), dam, visible);
            v.signatures.push(SignatureVerdict {
                keyid: sig.keyid.clone(),
                public_key: sig.public_key.clone(),
                ok: r.is_ok(),
                rule: r.as_ref().err().map(|(rule, _)| rule.to_string()),
                problem: r.err().map(|(rule, why)| format!("{rule}: {why}")),
            });
        }
    }
    v.authoritative = v.signatures.iter().any(|s| s.ok);
    if !v.authoritative {
        if v.signatures.is_empty() {
            v.problems.push(
                "per.signed: the receipt has no signature, so it is informational only".into(),
            );
        }
        for s in &v.signatures {
            if let Some(p) = &s.problem {
                v.problems
                    .push(format!("signature by key {}: {p}", s.keyid));
            }
        }
    }
    Ok(v)
}

/// Validates against the DAM in `file`: an authority bundle, or an admission decision
/// (docs/AUTHORITY.md §5.3), whose admitted bundle is used once the decision itself checks
/// out and admits the domain.
pub fn validate_with_file(
    store: &Store,
    receipt_ref: &Reference,
    file: &std::path::Path,
) -> Result<DamVerdict> {
    let (bundle, decision) = crate::host::load_dam_file(file)?;
    let mut v = validate_in_store(store, receipt_ref, &bundle)?;
    if let Some(d) = decision {
        let problem = match d.validate(None) {
            Err(e) => Some(format!("the admission decision is not valid: {e}")),
            Ok(()) if !crate::admission::is_admitted(&d.record.record.decision) => Some(format!(
                "per.admitted: the decision on domain {} is {}",
                d.record.record.domain_id, d.record.record.decision
            )),
            Ok(()) => None,
        };
        if let Some(p) = problem {
            v.authoritative = false;
            v.problems.insert(0, p);
        }
    }
    Ok(v)
}
