//! Checking a receipt: its action digest, the artifacts it names, and its signatures.

use std::path::Path;

use asl_store::{ArtifactRead, Reference, Store, TypeTag};
use serde::Serialize;

use crate::error::ProvError;
use crate::receipt::{Edge, Receipt, action_digest, parse_ref};
use crate::sign::PerSignature;

#[derive(Debug, Clone, Serialize)]
pub struct SignatureCheck {
    pub keyid: String,
    pub public_key: String,
    pub ok: bool,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub receipt: String,
    pub action_digest: String,
    pub artifacts_checked: usize,
    pub signatures: Vec<SignatureCheck>,
    /// Everything found wrong; empty means the receipt checks out.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Resolves REF to a receipt reference: a receipt, an edge (its payload), or a snapshot
/// name (an id or a label) whose root is an edge. `latest` is the newest snapshot whose root
/// is an edge, that is the newest capture or file import, not the newest snapshot of any
/// kind: an intake committed after a capture must not make `export latest` fail on a tree.
pub fn resolve_receipt(store: &Store, name: &str) -> Result<Reference, ProvError> {
    let reader = store.reader();
    let r = match name.parse::<Reference>() {
        Ok(r) => r,
        Err(_) if name == "latest" => latest_capture(store)?,
        Err(_) => {
            let snap = store.resolve_snapshot(name).map_err(|_| {
                ProvError::NotFound(format!(
                    "'{name}' is neither a reference (b3:<hex>) nor a snapshot of the store"
                ))
            })?;
            snap.root.ok_or_else(|| {
                ProvError::NotFound(format!("snapshot {} has no root artifact", snap.id))
            })?
        }
    };
    match reader.type_tag(&r).map(TypeTag) {
        Some(TypeTag::RECEIPT) => Ok(r),
        Some(TypeTag::EDGE) => {
            let e = Edge::decode(&reader.read_all(&r)?).map_err(|e| ProvError::Decode {
                what: r.to_string(),
                kind: "TGK edge",
                reason: e,
            })?;
            parse_ref(&e.payload).map_err(|e| ProvError::Decode {
                what: r.to_string(),
                kind: "TGK edge",
                reason: e,
            })
        }
        Some(t) => Err(ProvError::NotFound(format!(
            "{r} is an artifact of type {}, not a receipt or edge",
            t.0
        ))),
        None => Err(ProvError::NotFound(format!("{r} is not in the store"))),
    }
}

/// The root (an edge) of the newest snapshot that holds a capture.
fn latest_capture(store: &Store) -> Result<Reference, ProvError> {
    let reader = store.reader();
    store
        .snapshots()
        .into_iter()
        .rev()
        .filter_map(|s| s.root)
        .find(|root| reader.type_tag(root).map(TypeTag) == Some(TypeTag::EDGE))
        .ok_or_else(|| {
            ProvError::NotFound(
                "'latest' names the newest capture, and no snapshot of the store holds one \
                 (intake snapshots are not captures; record one with asl-capture)"
                    .into(),
            )
        })
}

/// Verifies a receipt stored in `store`. `trusted` (hex public keys), when not empty, is the
/// set of keys a signature must come from, and at least one valid signature is required.
pub fn verify_in_store(
    store: &Store,
    receipt_ref: &Reference,
    trusted: &[String],
) -> Result<VerifyReport, ProvError> {
    let reader = store.reader();
    let bytes = reader.read_all(receipt_ref)?;
    let receipt = Receipt::decode(&bytes).map_err(|e| ProvError::Decode {
        what: receipt_ref.to_string(),
        kind: "receipt",
        reason: e,
    })?;
    let mut problems = Vec::new();
    check_digest(store.config().algo(), &receipt, &mut problems);
    let refs = receipt.references().map_err(|e| ProvError::Decode {
        what: receipt_ref.to_string(),
        kind: "receipt",
        reason: e,
    })?;
    for r in &refs {
        // Reading streams the bytes through the hash check.
        if let Err(e) = reader.read_to(r, &mut std::io::sink()) {
            problems.push(format!("artifact {r} named by the receipt: {e}"));
        }
    }
    // Signatures hang off the edges whose payload is this receipt.
    let g = crate::graph::Graph::load(store, None)?;
    let mut signatures = Vec::new();
    for s in g.steps.iter().filter(|s| s.receipt_ref == *receipt_ref) {
        let edge = Edge::decode(&reader.read_all(&s.edge)?).map_err(|e| ProvError::Decode {
            what: s.edge.to_string(),
            kind: "TGK edge",
            reason: e,
        })?;
        for sr in &edge.signatures {
            let sref = parse_ref(sr).map_err(ProvError::Fs)?;
            let sig =
                PerSignature::decode(&reader.read_all(&sref)?).map_err(|e| ProvError::Decode {
                    what: sref.to_string(),
                    kind: "receipt signature",
                    reason: e,
                })?;
            signatures.push(check_signature(&sig, &receipt, receipt_ref, trusted));
        }
    }
    finish(
        receipt_ref,
        &receipt,
        refs.len(),
        signatures,
        trusted,
        problems,
    )
}

fn check_digest(algo: asl_store::HashAlgo, receipt: &Receipt, problems: &mut Vec<String>) {
    match action_digest(algo, &receipt.action) {
        Ok(d) if d == receipt.action_digest => {}
        Ok(d) => problems.push(format!(
            "action digest {} does not match the action (it hashes to {d})",
            receipt.action_digest
        )),
        Err(e) => problems.push(format!("action cannot be encoded: {e}")),
    }
}

fn check_signature(
    sig: &PerSignature,
    receipt: &Receipt,
    receipt_ref: &Reference,
    trusted: &[String],
) -> SignatureCheck {
    let mut problem = sig.check().err();
    if problem.is_none() {
        let inputs = receipt.sorted_input_refs();
        if sig.payload.per_artifact_id != receipt_ref.to_string() {
            problem = Some(format!(
                "signs receipt {}, not this one",
                sig.payload.per_artifact_id
            ));
        } else if sig.payload.program_id != receipt.action_digest
            || sig.payload.input_artifact_ids != inputs
        {
            problem = Some("the signed inputs or action digest differ from the receipt's".into());
        } else if !trusted.is_empty() && !trusted.contains(&sig.public_key) {
            problem = Some("signed by a key that is not among the trusted keys".into());
        }
    }
    SignatureCheck {
        keyid: sig.keyid.clone(),
        public_key: sig.public_key.clone(),
        ok: problem.is_none(),
        problem,
    }
}

fn finish(
    receipt_ref: &Reference,
    receipt: &Receipt,
    artifacts_checked: usize,
    signatures: Vec<SignatureCheck>,
    trusted: &[String],
    mut problems: Vec<String>,
) -> Result<VerifyReport, ProvError> {
    for s in &signatures {
        if let Some(p) = &s.problem {
            problems.push(format!("signature by key {}: {p}", s.keyid));
        }
    }
    if !trusted.is_empty() && !signatures.iter().any(|s| s.ok) {
        problems.push("no valid signature by a trusted key".into());
    }
    Ok(VerifyReport {
        receipt: receipt_ref.to_string(),
        action_digest: receipt.action_digest.clone(),
        artifacts_checked,
        signatures,
        problems,
    })
}

/// Verifies a receipt file (e.g. `--outdir`'s receipt.json) and the `receipt.sig.json` next
/// to it, if any. With a store, the artifacts it names are checked too.
pub fn verify_file(
    store: Option<&Store>,
    path: &Path,
    trusted: &[String],
) -> Result<VerifyReport, ProvError> {
    let bytes =
        std::fs::read(path).map_err(|e| ProvError::Os(format!("reading {}", path.display()), e))?;
    let receipt = Receipt::decode(&bytes).map_err(|e| ProvError::Decode {
        what: path.display().to_string(),
        kind: "receipt",
        reason: e,
    })?;
    let algo = receipt
        .action_digest
        .parse::<Reference>()
        .map(|r| r.algo())
        .map_err(|e| ProvError::Decode {
            what: path.display().to_string(),
            kind: "receipt",
            reason: e.to_string(),
        })?;
    let receipt_ref = algo.digest(&bytes);
    if let Some(store) = store
        && store.reader().locate(&receipt_ref).is_some()
    {
        return verify_in_store(store, &receipt_ref, trusted);
    }
    let mut problems = Vec::new();
    check_digest(algo, &receipt, &mut problems);
    let mut signatures = Vec::new();
    let sig_path = path.with_file_name("receipt.sig.json");
    if let Ok(sb) = std::fs::read(&sig_path) {
        let sig = PerSignature::decode(&sb).map_err(|e| ProvError::Decode {
            what: sig_path.display().to_string(),
            kind: "receipt signature",
            reason: e,
        })?;
        signatures.push(check_signature(&sig, &receipt, &receipt_ref, trusted));
    }
    finish(&receipt_ref, &receipt, 0, signatures, trusted, problems)
}
