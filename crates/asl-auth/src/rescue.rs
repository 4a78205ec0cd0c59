//! The rescue operation (ASL/RESCUE-OP/1) on a rescue node.
//!
//! A node directory holds: `node.json` (the personal domain id), `keys/` (the personal
//! offline root, domain root and signing keys, sealed under the passphrase), `intake/` (a
//! store for untrusted input, domain 0: nothing there is signed or trusted), `personal/`
//! (the store of the new personal domain) and `work/` (where intake lands and processing
//! runs). Phases, each leaving a receipt: intake (a capture into `intake/`), processing
//! (signed captures into `personal/`), minting (copy of the sealed intake captures into
//! `personal/`, DAM, certificate, admission request and receipt bundles to the media),
//! acceptance (the authority's decision and countersignatures taken in), publication
//! (copy of what the policy allows into a common store). [`status`] reads all of it back.

use std::path::{Path, PathBuf};

use asl_prov::Edge;
use asl_prov::capture::{CaptureOptions, Captured};
use asl_prov::sign::{Key, PerSignature};
use asl_prov::trace::TraceMode;
use asl_store::{ArtifactRead, ArtifactWrite, InitOptions, Reference, Store, TypeTag, Writer};
use serde::{Deserialize, Serialize};

use crate::admission::{self, AdmissionDecision, AdmissionRequest};
use crate::authority::{
    AuthorityBundle, DomainAuthorityManifest, OfflineRootSet, SignedCertificate, SignedDam,
};
use crate::entropy::{Entropy, canonical};
use crate::error::{AuthError, Result};
use crate::host::{COUNTERSIGN_ROLE, RECEIPT_BUNDLE_FORMAT, ReceiptBundle, receipts_dir};
use crate::ops::{
    Named, Operation, copy_closure, outputs_named, put_json, read_json as read_json_artifact,
    record,
};
use crate::policy::DomainPolicy;
use crate::sealed::{PublicKeyArtifact, SealedKey, new_key};

pub const NODE_FORMAT: &str = "asl-rescue-node/1";
/// The roles the node's signing key holds in its DAM.
pub const NODE_ROLES: [&str; 3] = ["execute", "produce", "publish"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    pub domain_id: u32,
    pub format: String,
}

/// A rescue node directory.
pub struct RescueNode {
    pub dir: PathBuf,
    pub domain_id: u32,
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| AuthError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| AuthError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, kind: &'static str) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| AuthError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| AuthError::Decode {
        what: path.display().to_string(),
        kind,
        reason: e.to_string(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub artifact: String,
    pub path: String,
    pub receipt: String,
    pub rule: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    pub common: PathBuf,
    pub published: Vec<(String, String)>,
    pub refused: Vec<Refusal>,
    pub receipt: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: &'static str,
    pub done: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node: PathBuf,
    pub domain_id: u32,
    /// The furthest phase reached.
    pub stage: String,
    pub phases: Vec<Phase>,
}

impl RescueNode {
    pub fn intake_store(&self) -> PathBuf {
        self.dir.join("intake")
    }
    pub fn personal_store(&self) -> PathBuf {
        self.dir.join("personal")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.priv.enc"))
    }

    /// Creates a node for personal domain `domain_id` (rule `rescue.init-once`).
    pub fn init(
        dir: &Path,
        domain_id: u32,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<RescueNode> {
        if dir.join("node.json").exists() {
            return Err(AuthError::refused(
                "rescue.init-once",
                format!("{} is a rescue node already", dir.display()),
            ));
        }
        if domain_id == 0 {
            return Err(AuthError::Usage(
                "domain id 0 is the untrusted intake area's; choose another".into(),
            ));
        }
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).map_err(|e| AuthError::io(&keys, e))?;
        let node = RescueNode {
            dir: dir.to_path_buf(),
            domain_id,
        };
        let mut publics = Vec::new();
        let mut signer = None;
        for (name, purpose) in [
            ("offline-root", "offline-root"),
            ("domain-root", "domain-root"),
            ("signer", "principal"),
        ] {
            let k = new_key(entropy)?;
            let sealed = SealedKey::seal(&k, purpose, passphrase, entropy)?;
            write_new(&node.key_path(name), &canonical(&sealed)?, 0o600)?;
            let public = PublicKeyArtifact::of(&k, purpose);
            write_new(
                &keys.join(format!("{name}.pub")),
                &canonical(&public)?,
                0o644,
            )?;
            publics.push((name, public));
            if name == "signer" {
                signer = Some(k);
            }
        }
        Store::init(
            &node.intake_store(),
            &InitOptions {
                domain_id: 0,
                ..InitOptions::default()
            },
        )?;
        Store::init(
            &node.personal_store(),
            &InitOptions {
                domain_id,
                ..InitOptions::default()
            },
        )?;
        std::fs::create_dir_all(node.work()).map_err(|e| AuthError::io(node.work(), e))?;
        let mut w = Writer::open(&node.personal_store())?;
        let outputs = publics
            .iter()
            .map(|(n, p)| put_json(&w, &format!("keys/{n}.pub"), p))
            .collect::<Result<Vec<_>>>()?;
        record(
            &mut w,
            Operation {
                tool: "asl-rescue",
                name: "init",
                kind: "rescue",
                args: vec![domain_id.to_string()],
                inputs: vec![],
                outputs,
                summary: serde_json::json!({"domain_id": domain_id}),
            },
            signer.as_ref(),
            entropy,
        )?;
        write_new(
            &dir.join("node.json"),
            &canonical(&NodeFile {
                domain_id,
                format: NODE_FORMAT.into(),
            })?,
            0o644,
        )?;
        Ok(node)
    }

    pub fn open(dir: &Path) -> Result<RescueNode> {
        let f: NodeFile = read_json(&dir.join("node.json"), "rescue node file").map_err(|e| match e {
            AuthError::Io { .. } => AuthError::NotFound(format!(
                "{} is not a rescue node: make one with `asl-rescue --node {} init --domain-id N`",
                dir.display(),
                dir.display()
            )),
            e => e,
        })?;
        Ok(RescueNode {
            dir: dir.to_path_buf(),
            domain_id: f.domain_id,
        })
    }

    pub fn key(&self, name: &str, passphrase: &[u8]) -> Result<Key> {
        let p = self.key_path(name);
        let sealed: SealedKey = read_json(&p, "sealed key")?;
        sealed.open(passphrase, &p.display().to_string())
    }

    /// Intake: copies `src` into `work/intake-N` as a capture into the untrusted intake store.
    pub fn intake(&self, src: &Path) -> Result<(Captured, PathBuf)> {
        let meta = std::fs::symlink_metadata(src).map_err(|e| AuthError::io(src, e))?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(AuthError::Usage(format!(
                "{} is neither a directory nor a regular file",
                src.display()
            )));
        }
        let n = Store::open(&self.intake_store())?.snapshots().len() + 1;
        let rel = PathBuf::from(format!("intake-{n}"));
        let opts = CaptureOptions {
            argv: vec![
                "cp".into(),
                "-a".into(),
                "--".into(),
                src.to_string_lossy().into_owned(),
                rel.to_string_lossy().into_owned(),
            ],
            cwd: self.work(),
            inputs: vec![],
            outputs: vec![rel.clone()],
            trace: TraceMode::None,
            env_allow: vec![],
            sign: None,
            echo: false,
            label: Some("untrusted-intake".into()),
            compression_level: None,
            observer_policy: Default::default(),
        };
        let c = asl_prov::capture::capture(&self.intake_store(), &opts)?;
        if c.receipt.exit_status() != 0 {
            return Err(AuthError::Usage(format!(
                "copying {} failed (exit {}); the failed intake is recorded in {}",
                src.display(),
                c.receipt.exit_status(),
                self.intake_store().display()
            )));
        }
        Ok((c, self.work().join(rel)))
    }

    /// Processing: runs `argv` in `work/` as a capture into the personal store, signed by the
    /// node's key unless `sign` is false.
    pub fn run(
        &self,
        argv: Vec<String>,
        inputs: Vec<PathBuf>,
        outputs: Vec<PathBuf>,
        key: Option<Key>,
    ) -> Result<Captured> {
        let opts = CaptureOptions {
            argv,
            cwd: self.work(),
            inputs,
            outputs,
            trace: TraceMode::None,
            env_allow: vec![],
            sign: key,
            echo: false,
            label: Some("process".into()),
            compression_level: None,
            observer_policy: Default::default(),
        };
        Ok(asl_prov::capture::capture(&self.personal_store(), &opts)?)
    }

    /// The node's authority bundle for its current keys and `policy`, with its domain root
    /// and signing keys.
    pub fn bundle(
        &self,
        passphrase: &[u8],
        policy: &DomainPolicy,
    ) -> Result<(AuthorityBundle, Key, Key)> {
        let root = self.key("offline-root", passphrase)?;
        let droot = self.key("domain-root", passphrase)?;
        let signer = self.key("signer", passphrase)?;
        let ph = policy.hash();
        let dam =
            DomainAuthorityManifest::new(self.domain_id, 1, &droot, &[(&signer, &NODE_ROLES)], &ph);
        let cert = SignedCertificate::domain_root(&root, &droot.public_hex(), self.domain_id, &ph)?;
        let bundle = AuthorityBundle::new(
            OfflineRootSet::single(&root),
            vec![cert],
            SignedDam::sign(dam, &droot)?,
        );
        Ok((bundle, droot, signer))
    }

    /// Minting: copies the sealed intake captures into the personal store, makes the DAM and
    /// the admission request, and writes the request and the signed receipts to `media`.
    pub fn mint(
        &self,
        media: &Path,
        scope: Vec<String>,
        policy: &DomainPolicy,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<(AdmissionRequest, Vec<PathBuf>)> {
        let (bundle, droot, signer) = self.bundle(passphrase, policy)?;
        let request = AdmissionRequest::new(bundle.clone(), &droot, scope, entropy)?;
        let intake = Store::open(&self.intake_store())?;
        let intake_reader = intake.reader();
        let personal = Store::open(&self.personal_store())?;
        // The signed captures of the personal store, as bundles for the authority.
        let g = asl_prov::graph::Graph::load(&personal, None)?;
        let preader = personal.reader();
        let mut receipt_bundles = Vec::new();
        for s in &g.steps {
            if s.receipt.kind != "command" {
                continue;
            }
            let edge = Edge::decode(&preader.read_all(&s.edge)?).map_err(AuthError::Internal)?;
            if edge.signatures.is_empty() {
                continue;
            }
            let mut sigs = Vec::new();
            for sr in &edge.signatures {
                let r: Reference = sr.parse().map_err(|e: asl_store::ParseReferenceError| {
                    AuthError::Internal(e.to_string())
                })?;
                sigs.push(
                    PerSignature::decode(&preader.read_all(&r)?).map_err(AuthError::Internal)?,
                );
            }
            let text = String::from_utf8(preader.read_all(&s.receipt_ref)?)
                .map_err(|e| AuthError::Internal(e.to_string()))?;
            receipt_bundles.push((
                s.receipt_ref,
                ReceiptBundle {
                    format: RECEIPT_BUNDLE_FORMAT.into(),
                    receipt: text,
                    signatures: sigs,
                },
            ));
        }
        drop(preader);
        let mut w = Writer::open(&self.personal_store())?;
        let mut outputs = Vec::new();
        let mut copied = 0;
        for snap in intake.snapshots() {
            if let Some(root) = snap.root {
                copied += copy_closure(&intake_reader, &w, &root)?;
                outputs.push(Named {
                    name: format!("intake/snapshot-{}", snap.id),
                    reference: root,
                    size: intake_reader.artifact_len(&root).unwrap_or(0),
                });
            }
        }
        outputs.push(put_json(&w, "authority/bundle.json", &bundle)?);
        outputs.push(put_json(&w, "authority/domain-policy.json", policy)?);
        outputs.push(put_json(&w, "admission/request.json", &request)?);
        record(
            &mut w,
            Operation {
                tool: "asl-rescue",
                name: "mint",
                kind: "rescue",
                args: request.body.requested_scope.clone(),
                inputs: vec![],
                outputs,
                summary: serde_json::json!({
                    "dam_hash": bundle.dam.hash()?,
                    "request_hash": request.hash()?,
                    "copied_artifacts": copied,
                    "receipts_for_countersigning": receipt_bundles.len(),
                }),
            },
            Some(&signer),
            entropy,
        )?;
        drop(w);
        let req_path = admission::request_path(media);
        let parent = req_path.parent().unwrap_or(media);
        std::fs::create_dir_all(parent).map_err(|e| AuthError::io(parent, e))?;
        std::fs::write(
            &req_path,
            serde_json::to_vec_pretty(&request).map_err(|e| AuthError::Internal(e.to_string()))?,
        )
        .map_err(|e| AuthError::io(&req_path, e))?;
        let rdir = receipts_dir(media);
        std::fs::create_dir_all(&rdir).map_err(|e| AuthError::io(&rdir, e))?;
        let mut files = vec![req_path];
        for (r, b) in receipt_bundles {
            let p = rdir.join(format!("{}.json", r.to_string().replace(':', "-")));
            std::fs::write(&p, canonical(&b)?).map_err(|e| AuthError::io(&p, e))?;
            files.push(p);
        }
        Ok((request, files))
    }

    /// Acceptance: checks the authority's decision on `media` and takes it and the
    /// countersignatures into the personal store.
    pub fn accept(
        &self,
        media: &Path,
        pinned_root: Option<&str>,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<(AdmissionDecision, usize)> {
        let decision = AdmissionDecision::load(&admission::decision_path(media))?;
        decision.validate(pinned_root)?;
        let signer = self.key("signer", passphrase)?;
        if decision.admitted.dam.dam.domain_id != self.domain_id
            || decision
                .admitted
                .dam
                .dam
                .principal(&signer.public_hex())
                .is_none()
        {
            return Err(AuthError::refused(
                "rescue.own-dam",
                format!(
                    "the decision is about domain {}'s DAM, not this node's",
                    decision.admitted.dam.dam.domain_id
                ),
            ));
        }
        let personal = Store::open(&self.personal_store())?;
        let g = asl_prov::graph::Graph::load(&personal, None)?;
        let reader = personal.reader();
        // Countersignatures: each by an authority principal with the countersigning role,
        // over a receipt this store holds.
        let mut counters = Vec::new();
        let rdir = receipts_dir(media);
        if let Ok(entries) = std::fs::read_dir(&rdir) {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".countersig.json"))
                .collect();
            paths.sort();
            for p in paths {
                let sig =
                    PerSignature::decode(&std::fs::read(&p).map_err(|e| AuthError::io(&p, e))?)
                        .map_err(|e| AuthError::Decode {
                            what: p.display().to_string(),
                            kind: "countersignature",
                            reason: e,
                        })?;
                sig.check().map_err(|e| {
                    AuthError::refused("countersig.signature", format!("{}: {e}", p.display()))
                })?;
                if !decision
                    .authority
                    .dam
                    .dam
                    .holds(&sig.public_key, COUNTERSIGN_ROLE)
                {
                    return Err(AuthError::refused(
                        "countersig.signer",
                        format!(
                            "{}: key {} is not an authority principal with {COUNTERSIGN_ROLE}",
                            p.display(),
                            sig.keyid
                        ),
                    ));
                }
                let rr: Reference = sig.payload.per_artifact_id.parse().map_err(
                    |e: asl_store::ParseReferenceError| {
                        AuthError::refused("countersig.receipt", e.to_string())
                    },
                )?;
                let step = g
                    .steps
                    .iter()
                    .find(|s| s.receipt_ref == rr)
                    .ok_or_else(|| {
                        AuthError::refused(
                            "countersig.receipt",
                            format!("{}: receipt {rr} is not in this node's store", p.display()),
                        )
                    })?;
                counters.push((sig, step.edge));
            }
        }
        drop(reader);
        let mut w = Writer::open(&self.personal_store())?;
        let mut outputs = vec![put_json(&w, "admission/decision.json", &decision)?];
        for (sig, edge_ref) in &counters {
            let sr = put_json(&w, "countersig.json", sig)?;
            let mut edge =
                Edge::decode(&w.reader().read_all(edge_ref)?).map_err(AuthError::Internal)?;
            if !edge.signatures.contains(&sr.reference.to_string()) {
                edge.signatures.push(sr.reference.to_string());
            }
            let er = w.put_bytes(&edge.encode().map_err(AuthError::Internal)?, TypeTag::EDGE)?;
            outputs.push(sr);
            outputs.push(Named {
                name: "countersigned-edge".into(),
                reference: er.reference,
                size: er.len,
            });
        }
        let r = &decision.record.record;
        record(
            &mut w,
            Operation {
                tool: "asl-rescue",
                name: "accept",
                kind: "rescue",
                args: vec![],
                inputs: vec![],
                outputs: outputs.clone(),
                summary: serde_json::json!({
                    "decision": r.decision,
                    "admitted_scope": r.admitted_scope,
                    "dam_hash": r.dam_hash,
                    "decision_ref": outputs[0].reference.to_string(),
                    "countersignatures": counters.len(),
                }),
            },
            Some(&signer),
            entropy,
        )?;
        Ok((decision, counters.len()))
    }

    /// The decision accepted last, if any.
    pub fn decision(&self, personal: &Store) -> Result<Option<AdmissionDecision>> {
        let Some(r) = personal
            .snapshots()
            .into_iter()
            .rev()
            .filter(|s| s.meta.kind == "rescue" && s.meta.label.as_deref() == Some("accept"))
            .find_map(|s| {
                s.meta
                    .summary
                    .get("decision_ref")?
                    .as_str()?
                    .parse::<Reference>()
                    .ok()
            })
        else {
            return Ok(None);
        };
        Ok(Some(read_json_artifact(
            &personal.reader(),
            &r,
            "admission decision",
        )?))
    }

    /// Publication to the common store at `common`: every output of every capture in the
    /// personal store, each gated by admission and the policy; what passes is copied.
    pub fn publish(
        &self,
        common: &Path,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<PublishReport> {
        let personal = Store::open(&self.personal_store())?;
        let decision = self.decision(&personal)?.ok_or_else(|| {
            AuthError::refused(
                "publication.admitted",
                "no admission decision has been accepted (asl-rescue accept)",
            )
        })?;
        let rec = &decision.record.record;
        if !admission::is_admitted(&rec.decision)
            || !rec.admitted_scope.iter().any(|s| s == "publish")
        {
            return Err(AuthError::refused(
                "publication.admitted",
                format!(
                    "the domain is {} with scope [{}]: publish is not admitted",
                    rec.decision,
                    rec.admitted_scope.join(", ")
                ),
            ));
        }
        let common_store = Store::open(common)?;
        let common_policy = common_policy_hash(&common_store)?;
        if rec.policy_hash != common_policy {
            return Err(AuthError::refused(
                "publication.policy-compatible",
                format!(
                    "the domain's policy {} is not the common domain's {common_policy}",
                    rec.policy_hash
                ),
            ));
        }
        let policy = minted_policy(&personal, &decision.admitted.dam.dam.policy_hash)?;
        let g = asl_prov::graph::Graph::load(&personal, None)?;
        let mut allowed: Vec<(String, Reference, u64)> = Vec::new();
        let mut refused = Vec::new();
        let reader = personal.reader();
        for s in &g.steps {
            if s.receipt.kind != "command" {
                continue;
            }
            let verdict =
                crate::per::validate_in_store(&personal, &s.receipt_ref, &decision.admitted)?;
            let role_ok = verdict.signatures.iter().any(|sv| {
                sv.ok
                    && policy
                        .publication_policy
                        .allowed_roles
                        .iter()
                        .any(|r| decision.admitted.dam.dam.holds(&sv.public_key, r))
            });
            let gate: Option<(String, String)> = if !policy.publication_policy.require_signature {
                None
            } else if !verdict.authoritative {
                Some((
                    "publication.require_signature".into(),
                    verdict.problems.join("; "),
                ))
            } else if !role_ok {
                Some((
                    "publication.allowed_roles".into(),
                    format!(
                        "no valid signature by a principal with {}",
                        policy.publication_policy.allowed_roles.join(" or ")
                    ),
                ))
            } else {
                None
            };
            for o in &s.receipt.outputs {
                match &gate {
                    None => {
                        let r: Reference =
                            o.reference
                                .parse()
                                .map_err(|e: asl_store::ParseReferenceError| {
                                    AuthError::Internal(e.to_string())
                                })?;
                        if !allowed.iter().any(|(_, a, _)| *a == r) {
                            allowed.push((o.path.clone(), r, o.size));
                        }
                    }
                    Some((rule, detail)) => refused.push(Refusal {
                        artifact: o.reference.clone(),
                        path: o.path.clone(),
                        receipt: s.receipt_ref.to_string(),
                        rule: rule.clone(),
                        detail: detail.clone(),
                    }),
                }
            }
        }
        let signer = self.key("signer", passphrase)?;
        let mut report = PublishReport {
            common: common.to_path_buf(),
            published: vec![],
            refused,
            receipt: None,
        };
        if allowed.is_empty() {
            return Ok(report);
        }
        drop(common_store);
        let mut cw = Writer::open(common)?;
        let mut outputs = Vec::new();
        for (path, r, size) in &allowed {
            copy_closure(&reader, &cw, r)?;
            outputs.push(Named {
                name: path.clone(),
                reference: *r,
                size: *size,
            });
            report.published.push((path.clone(), r.to_string()));
        }
        let summary = serde_json::json!({
            "from_domain": self.domain_id,
            "published": report.published.len(),
            "refused": report.refused.len(),
        });
        let rec_common = record(
            &mut cw,
            Operation {
                tool: "asl-rescue",
                name: "publish",
                kind: "rescue",
                args: vec![self.domain_id.to_string()],
                inputs: vec![],
                outputs: outputs.clone(),
                summary: summary.clone(),
            },
            Some(&signer),
            entropy,
        )?;
        drop(cw);
        drop(reader);
        let mut pw = Writer::open(&self.personal_store())?;
        let mut psum = summary;
        psum["common_receipt"] = rec_common.receipt.to_string().into();
        psum["refusals"] = serde_json::to_value(&report.refused).unwrap_or_default();
        record(
            &mut pw,
            Operation {
                tool: "asl-rescue",
                name: "publish",
                kind: "rescue",
                args: vec![common.display().to_string()],
                inputs: vec![],
                outputs,
                summary: psum,
            },
            Some(&signer),
            entropy,
        )?;
        report.receipt = Some(rec_common.receipt.to_string());
        Ok(report)
    }

    /// Where the operation stands.
    pub fn status(&self) -> Result<Status> {
        let intake = Store::open(&self.intake_store())?;
        let personal = Store::open(&self.personal_store())?;
        let snaps = personal.snapshots();
        let count = |label: &str| {
            snaps
                .iter()
                .filter(|s| s.meta.label.as_deref() == Some(label))
                .count()
        };
        let g = asl_prov::graph::Graph::load(&personal, None)?;
        let reader = personal.reader();
        let mut signed = 0;
        let mut countersigned = 0;
        let processing = g
            .steps
            .iter()
            .filter(|s| s.receipt.kind == "command")
            .count();
        for s in g.steps.iter().filter(|s| s.receipt.kind == "command") {
            let e = Edge::decode(&reader.read_all(&s.edge)?).map_err(AuthError::Internal)?;
            if !e.signatures.is_empty() {
                signed += 1;
            }
            if e.signatures.len() > 1 {
                countersigned += 1;
            }
        }
        let decision = self.decision(&personal)?;
        let intakes = intake.snapshots().len();
        let phases = vec![
            Phase {
                phase: "intake",
                done: intakes > 0,
                detail: format!(
                    "{intakes} untrusted intake capture(s) in {}",
                    self.intake_store().display()
                ),
            },
            Phase {
                phase: "processing",
                done: processing > 0,
                detail: format!("{processing} capture(s) in the personal store, {signed} signed"),
            },
            Phase {
                phase: "mint",
                done: count("mint") > 0,
                detail: format!("{} admission request(s) made", count("mint")),
            },
            Phase {
                phase: "admission",
                done: decision
                    .as_ref()
                    .is_some_and(|d| admission::is_admitted(&d.record.record.decision)),
                detail: match &decision {
                    Some(d) => format!(
                        "{} (scope {}), {countersigned} receipt(s) countersigned",
                        d.record.record.decision,
                        d.record.record.admitted_scope.join(", ")
                    ),
                    None => "no decision accepted yet".into(),
                },
            },
            Phase {
                phase: "publication",
                done: count("publish") > 0,
                detail: format!("{} publication(s)", count("publish")),
            },
        ];
        let stage = phases
            .iter()
            .rev()
            .find(|p| p.done)
            .map_or("initialised".to_string(), |p| p.phase.to_string());
        Ok(Status {
            node: self.dir.clone(),
            domain_id: self.domain_id,
            stage,
            phases,
        })
    }
}

/// The policy hash of the common domain: from the DAM genesis installed in its store.
pub fn common_policy_hash(common: &Store) -> Result<String> {
    let Some(r) = outputs_named(common, "install-dam", "authority/bundle.json")?
        .into_iter()
        .next()
    else {
        return Err(AuthError::refused(
            "publication.common-dam",
            "the common store holds no DAM (it was not made by asl-auth-host genesis)",
        ));
    };
    let b = AuthorityBundle::decode(&common.reader().read_all(&r)?, &r.to_string())?;
    Ok(b.dam.dam.policy_hash)
}

/// The DomainPolicy the node minted its DAM with: the `authority/domain-policy.json` output
/// of a mint whose hash is `policy_hash`.
fn minted_policy(personal: &Store, policy_hash: &str) -> Result<DomainPolicy> {
    for r in outputs_named(personal, "mint", "authority/domain-policy.json")? {
        let p: DomainPolicy = read_json_artifact(&personal.reader(), &r, "domain policy")?;
        if p.hash() == policy_hash {
            return Ok(p);
        }
    }
    Err(AuthError::NotFound(format!(
        "the personal store holds no minted policy with hash {policy_hash}"
    )))
}
