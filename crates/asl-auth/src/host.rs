//! The authority host (ASL/AUTH-HOST/1): genesis, admission, countersigning, maintenance.
//!
//! The authority's state lives in the store of its `authority` domain. Each operation
//! commits one snapshot whose root is the operation's edge; the operation's outputs include
//! a new [`AuthorityState`] artifact that lists, by reference, every key, certificate, DAM,
//! policy and admission the authority holds. The newest snapshot of kind `authority` is the
//! current state; older snapshots keep theirs (nothing is revoked live). Every check runs
//! before the writer is opened, so a refusal changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use asl_prov::sign::{Key, PerSignature};
use asl_store::{ArtifactRead, InitOptions, Reference, Store, Writer};
use serde::{Deserialize, Serialize};

use crate::admission::{
    self, ADMIT_ROLE, AdmissionDecision, AdmissionRecord, AdmissionRequest, DECISION_FORMAT,
    RECORD_FORMAT, SignedRecord,
};
use crate::authority::{
    AuthorityBundle, DomainAuthorityManifest, OfflineRootSet, SignedCertificate, SignedDam,
};
use crate::config::{LoadedConfig, parse_domain_id, under};
use crate::entropy::{Entropy, canonical};
use crate::error::{AuthError, Result};
use crate::ops::{Named, Operation, Recorded, put_bytes, put_json, read_json, record};
use crate::policy::{DomainPolicy, policy_hash_file};
use crate::sealed::{PublicKeyArtifact, SealedKey, new_key};

pub const STATE_FORMAT: &str = "asl-authority-state/1";
/// The role an authority principal needs to countersign receipts.
pub const COUNTERSIGN_ROLE: &str = "audit";

/// The roles the principal of a domain of each config type holds at genesis.
fn roles_for(kind: &str) -> &'static [&'static str] {
    match kind {
        "authority" => &["audit", "execute", "federate", "produce", "publish"],
        "courtesy" => &["audit", "produce", "publish"],
        _ => &["audit", "execute", "produce", "publish"],
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEntry {
    pub bundle: Reference,
    pub dam_hash: String,
    pub dam_version: u32,
    pub id: u32,
    /// Config type: `authority`, `courtesy`, `private`.
    pub kind: String,
    pub root_public: String,
    pub root_sealed: Reference,
    pub signer_public: String,
    pub signer_sealed: Reference,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionEntry {
    pub admitted_scope: Vec<String>,
    /// The applicant's bundle as admitted.
    pub bundle: Reference,
    pub dam_hash: String,
    pub decision: String,
    pub domain_id: u32,
    pub record: Reference,
    pub request_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityState {
    pub admissions: Vec<AdmissionEntry>,
    pub config: Reference,
    /// Per-receipt countersignature artifacts, by receipt id.
    pub countersigned: BTreeMap<String, Reference>,
    pub domains: BTreeMap<String, DomainEntry>,
    /// Decisions made so far (the next record's `decision_epoch` is this + 1).
    pub epoch: u64,
    pub format: String,
    pub policy: Reference,
    pub policy_hash: String,
    pub root_public: Reference,
    pub root_sealed: Reference,
    pub root_set: Reference,
}

/// An authority host: its root directory (`/`, or a directory standing for it) and config.
pub struct AuthHost {
    pub root: PathBuf,
    pub config: LoadedConfig,
}

/// What genesis made.
#[derive(Debug, Clone, Serialize)]
pub struct GenesisReport {
    pub authority_store: PathBuf,
    pub policy_hash: String,
    pub root_key: String,
    pub root_public: Reference,
    pub root_sealed: Reference,
    pub domains: BTreeMap<String, DomainEntry>,
    pub state: Reference,
    pub receipt: Reference,
    pub snapshot: u64,
}

/// What an admission decided.
#[derive(Debug, Clone, Serialize)]
pub struct AdmitReport {
    pub domain_id: u32,
    pub decision: String,
    pub rule: Option<String>,
    pub reason: String,
    pub admitted_scope: Vec<String>,
    pub decision_epoch: u64,
    pub record: Reference,
    pub decision_file: PathBuf,
    pub receipt: Reference,
    pub snapshot: u64,
}

/// What countersigning did.
#[derive(Debug, Clone, Serialize)]
pub struct CountersignReport {
    pub countersigned: Vec<CountersignedReceipt>,
    pub receipt: Reference,
    pub snapshot: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountersignedReceipt {
    pub receipt: String,
    pub domain_id: u32,
    pub file: PathBuf,
}

/// The receipts a node brings for countersigning: `asl-receipts/*.json` on the media.
pub const RECEIPT_BUNDLE_FORMAT: &str = "asl-receipt-bundle/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBundle {
    pub format: String,
    /// The receipt's bytes (canonical JSON), as text.
    pub receipt: String,
    pub signatures: Vec<PerSignature>,
}

pub fn receipts_dir(media: &Path) -> PathBuf {
    media.join("asl-receipts")
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| AuthError::io(parent, e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AuthError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| AuthError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AuthError::io(path, e))
}

impl AuthHost {
    /// Loads `config` (a path on the real system, already resolved by the caller).
    pub fn open(root: &Path, config: &Path) -> Result<AuthHost> {
        Ok(AuthHost {
            root: root.to_path_buf(),
            config: LoadedConfig::load(config)?,
        })
    }

    pub fn path(&self, p: &str) -> PathBuf {
        under(&self.root, p)
    }

    pub fn authority_store(&self) -> PathBuf {
        self.path(&self.config.authority_domain().1.path)
    }

    fn log(&self, entropy: &Entropy, line: &str) -> Result<()> {
        use std::io::Write;
        let Some(p) = &self.config.config.logging.path else {
            return Ok(());
        };
        let p = self.path(p);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| AuthError::io(parent, e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| AuthError::io(&p, e))?;
        writeln!(f, "{} INFO {line}", entropy.now()).map_err(|e| AuthError::io(&p, e))
    }

    /// Creates the authority: the layout, the offline root key, the policy, and for every
    /// configured domain its store, root and signing keys, `domain_root` certificate and DAM.
    /// Refuses (rule `genesis.once`) when any of it exists already.
    pub fn genesis(&self, passphrase: &[u8], entropy: &mut Entropy) -> Result<GenesisReport> {
        let cfg = &self.config.config;
        let auth_store = self.authority_store();
        let hash_file = self.path(&cfg.policy.hash_file);
        if auth_store.join("config").exists() || hash_file.exists() {
            return Err(AuthError::refused(
                "genesis.once",
                format!(
                    "genesis has run already ({} or {} exists); the authority is made once \
                     (rotate keys with `asl-auth-host rotate`)",
                    auth_store.display(),
                    hash_file.display()
                ),
            ));
        }
        for (name, d) in &cfg.domains {
            let p = self.path(&d.path);
            if std::fs::read_dir(&p).is_ok_and(|mut r| r.next().is_some()) {
                return Err(AuthError::refused(
                    "genesis.once",
                    format!(
                        "the store directory {} of domain {name} is not empty",
                        p.display()
                    ),
                ));
            }
        }
        if passphrase.is_empty() {
            return Err(AuthError::Usage("the passphrase is empty".into()));
        }
        let policy = self.config.policy();
        policy.validate()?;
        let policy_hash = policy.hash();

        // Keys and records, in a fixed order so fixed entropy gives fixed ids.
        let root = new_key(entropy)?;
        let root_sealed = SealedKey::seal(&root, "offline-root", passphrase, entropy)?;
        let root_set = OfflineRootSet::single(&root);
        struct Made {
            name: String,
            id: u32,
            kind: String,
            droot: Key,
            droot_sealed: SealedKey,
            signer: Key,
            signer_sealed: SealedKey,
            bundle: AuthorityBundle,
        }
        let mut made = Vec::new();
        for (name, d) in &cfg.domains {
            let id = parse_domain_id(&d.id).map_err(AuthError::Usage)?;
            let droot = new_key(entropy)?;
            let droot_sealed = SealedKey::seal(&droot, "domain-root", passphrase, entropy)?;
            let signer = new_key(entropy)?;
            let signer_sealed = SealedKey::seal(&signer, "principal", passphrase, entropy)?;
            let dam = DomainAuthorityManifest::new(
                id,
                1,
                &droot,
                &[(&signer, roles_for(&d.kind))],
                &policy_hash,
            );
            let cert =
                SignedCertificate::domain_root(&root, &droot.public_hex(), id, &policy_hash)?;
            let bundle =
                AuthorityBundle::new(root_set.clone(), vec![cert], SignedDam::sign(dam, &droot)?);
            made.push(Made {
                name: name.clone(),
                id,
                kind: d.kind.clone(),
                droot,
                droot_sealed,
                signer,
                signer_sealed,
                bundle,
            });
        }

        // The authority store first: its existence is what makes genesis "done".
        let config_bytes =
            std::fs::read(&self.config.file).map_err(|e| AuthError::io(&self.config.file, e))?;
        let (auth_name, auth_domain) = self.config.authority_domain();
        let auth_id = parse_domain_id(&auth_domain.id).map_err(AuthError::Usage)?;
        Store::init(
            &auth_store,
            &InitOptions {
                domain_id: auth_id,
                ..InitOptions::default()
            },
        )?;
        let mut w = Writer::open(&auth_store)?;
        let config_art = put_bytes(&w, "etc/asl-auth-host/config.yaml", &config_bytes)?;
        let policy_art = put_json(&w, "policy/domain-policy.json", &policy)?;
        let policy_hash_art = put_bytes(
            &w,
            "policy/policy.hash",
            policy_hash_file(&policy_hash).as_bytes(),
        )?;
        let root_pub = put_json(
            &w,
            "keys/root.pub",
            &PublicKeyArtifact::of(&root, "offline-root"),
        )?;
        let root_enc = put_json(&w, "keys/root.priv.enc", &root_sealed)?;
        let root_set_art = put_json(&w, "keys/root-set.json", &root_set)?;
        let mut outputs = vec![
            policy_art.clone(),
            policy_hash_art,
            root_pub.clone(),
            root_enc.clone(),
            root_set_art.clone(),
        ];
        let mut domains = BTreeMap::new();
        for m in &made {
            let n = &m.name;
            outputs.push(put_json(
                &w,
                &format!("domains/{n}/root.pub"),
                &PublicKeyArtifact::of(&m.droot, "domain-root"),
            )?);
            let rs = put_json(&w, &format!("domains/{n}/root.priv.enc"), &m.droot_sealed)?;
            outputs.push(put_json(
                &w,
                &format!("domains/{n}/signer.pub"),
                &PublicKeyArtifact::of(&m.signer, "principal"),
            )?);
            let ss = put_json(
                &w,
                &format!("domains/{n}/signer.priv.enc"),
                &m.signer_sealed,
            )?;
            outputs.push(put_json(
                &w,
                &format!("domains/{n}/certificate.json"),
                &m.bundle.certificates[0],
            )?);
            outputs.push(put_json(
                &w,
                &format!("domains/{n}/dam.json"),
                &m.bundle.dam,
            )?);
            let b = put_json(&w, &format!("domains/{n}/bundle.json"), &m.bundle)?;
            domains.insert(
                n.clone(),
                DomainEntry {
                    bundle: b.reference,
                    dam_hash: m.bundle.dam.hash()?,
                    dam_version: 1,
                    id: m.id,
                    kind: m.kind.clone(),
                    root_public: m.droot.public_hex(),
                    root_sealed: rs.reference,
                    signer_public: m.signer.public_hex(),
                    signer_sealed: ss.reference,
                },
            );
            outputs.extend([rs, ss, b]);
        }
        let state = AuthorityState {
            admissions: vec![],
            config: config_art.reference,
            countersigned: BTreeMap::new(),
            domains: domains.clone(),
            epoch: 0,
            format: STATE_FORMAT.into(),
            policy: policy_art.reference,
            policy_hash: policy_hash.clone(),
            root_public: root_pub.reference,
            root_sealed: root_enc.reference,
            root_set: root_set_art.reference,
        };
        let state_art = put_json(&w, "state.json", &state)?;
        outputs.push(state_art.clone());
        let auth_signer = &made
            .iter()
            .find(|m| m.name == auth_name)
            .ok_or_else(|| AuthError::Internal("the authority domain was not made".into()))?
            .signer;
        let rec = record(
            &mut w,
            Operation {
                tool: "asl-auth-host",
                name: "genesis",
                kind: "authority",
                args: vec![],
                inputs: vec![config_art],
                outputs,
                summary: serde_json::json!({
                    "state": state_art.reference.to_string(),
                    "policy_hash": policy_hash,
                }),
            },
            Some(auth_signer),
            entropy,
        )?;
        drop(w);

        // Each other domain's store, with its DAM visible in its first snapshot.
        for m in &made {
            if m.name == auth_name {
                continue;
            }
            let p = self.path(&cfg.domains[&m.name].path);
            Store::init(
                &p,
                &InitOptions {
                    domain_id: m.id,
                    ..InitOptions::default()
                },
            )?;
            let mut dw = Writer::open(&p)?;
            let b = put_json(&dw, "authority/bundle.json", &m.bundle)?;
            let pol = put_json(&dw, "authority/domain-policy.json", &policy)?;
            record(
                &mut dw,
                Operation {
                    tool: "asl-auth-host",
                    name: "install-dam",
                    kind: "authority",
                    args: vec![m.name.clone()],
                    inputs: vec![],
                    outputs: vec![b, pol],
                    summary: serde_json::json!({"dam_hash": m.bundle.dam.hash()?}),
                },
                Some(&m.signer),
                entropy,
            )?;
        }
        // The seed's layout: pools next to the domain stores.
        let pools = self.path("/var/lib/asl/pools");
        std::fs::create_dir_all(&pools).map_err(|e| AuthError::io(&pools, e))?;
        // Exports of the public and sealed key artifacts, named as ENC-ASL-AUTH-HOST/1 does.
        if let Some(dir) = &cfg.certificates.root_offline_path {
            let dir = self.path(dir);
            write_file(
                &dir.join("root.pub"),
                &canonical(&PublicKeyArtifact::of(&root, "offline-root"))?,
                0o644,
            )?;
            write_file(&dir.join("root.priv.enc"), &canonical(&root_sealed)?, 0o600)?;
        }
        if let Some(dir) = &cfg.certificates.domain_authority_path {
            let dir = self.path(dir);
            for m in &made {
                write_file(
                    &dir.join(format!("{}.dam.json", m.name)),
                    &canonical(&m.bundle)?,
                    0o644,
                )?;
            }
        }
        write_file(&hash_file, policy_hash_file(&policy_hash).as_bytes(), 0o644)?;
        self.log(
            entropy,
            &format!(
                "genesis: policy {policy_hash}, {} domains, receipt {}",
                made.len(),
                rec.receipt
            ),
        )?;
        Ok(GenesisReport {
            authority_store: auth_store,
            policy_hash,
            root_key: root.public_hex(),
            root_public: state.root_public,
            root_sealed: state.root_sealed,
            domains,
            state: state_art.reference,
            receipt: rec.receipt,
            snapshot: rec.snapshot_id,
        })
    }

    /// The current authority state: from the newest `authority` snapshot of the store.
    pub fn state(&self) -> Result<(Store, AuthorityState, Reference)> {
        let p = self.authority_store();
        if !p.join("config").exists() {
            return Err(AuthError::NotFound(format!(
                "no authority store at {}: run genesis first (init-asl-host)",
                p.display()
            )));
        }
        let store = Store::open(&p)?;
        let state_ref = store
            .snapshots()
            .into_iter()
            .rev()
            .filter(|s| s.meta.kind == "authority")
            .find_map(|s| {
                s.meta
                    .summary
                    .get("state")?
                    .as_str()?
                    .parse::<Reference>()
                    .ok()
            })
            .ok_or_else(|| {
                AuthError::NotFound(format!(
                    "the authority store {} has no authority state snapshot",
                    p.display()
                ))
            })?;
        let state: AuthorityState = read_json(&store.reader(), &state_ref, "authority state")?;
        // The policy file on disk must still be the one the state pins.
        let hf = self.path(&self.config.config.policy.hash_file);
        let on_disk = std::fs::read_to_string(&hf).map_err(|e| AuthError::io(&hf, e))?;
        if on_disk.trim() != state.policy_hash {
            return Err(AuthError::refused(
                "policy.pinned",
                format!(
                    "{} holds {} but the authority state pins policy {}",
                    hf.display(),
                    on_disk.trim(),
                    state.policy_hash
                ),
            ));
        }
        Ok((store, state, state_ref))
    }

    fn authority_entry<'a>(&self, state: &'a AuthorityState) -> Result<(&'a str, &'a DomainEntry)> {
        let (name, _) = self.config.authority_domain();
        state
            .domains
            .get_key_value(name)
            .map(|(n, d)| (n.as_str(), d))
            .ok_or_else(|| AuthError::NotFound(format!("the authority state has no domain {name}")))
    }

    fn open_signer(
        &self,
        store: &Store,
        entry: &DomainEntry,
        name: &str,
        passphrase: &[u8],
    ) -> Result<Key> {
        let sealed: SealedKey = read_json(&store.reader(), &entry.signer_sealed, "sealed key")?;
        sealed.open(
            passphrase,
            &format!("domains/{name}/signer.priv.enc ({})", entry.signer_sealed),
        )
    }

    /// Admission (ASL/DAP/1) of the request on `media`.
    pub fn admit(
        &self,
        media: &Path,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<AdmitReport> {
        let (store, state, state_ref) = self.state()?;
        let req_path = admission::request_path(media);
        let request = AdmissionRequest::load(&req_path)?;
        let request_hash = request.hash()?;
        if let Some(prev) = state
            .admissions
            .iter()
            .find(|a| a.request_hash == request_hash)
        {
            return Err(AuthError::refused(
                "dap.replay",
                format!(
                    "request {request_hash} was decided already ({} for domain {}, record {}); \
                     a new request needs a new request id",
                    prev.decision, prev.domain_id, prev.record
                ),
            ));
        }
        request.validate()?;
        let (auth_name, auth_entry) = self.authority_entry(&state)?;
        let signer = self.open_signer(&store, auth_entry, auth_name, passphrase)?;
        let auth_bundle: AuthorityBundle =
            read_json(&store.reader(), &auth_entry.bundle, "authority bundle")?;
        let dam_hash = request.body.bundle.dam.hash()?;
        let id = request.body.domain_id;
        let taken = state
            .domains
            .iter()
            .find(|(_, d)| d.id == id)
            .map(|(n, _)| format!("the authority's domain {n}"))
            .or_else(|| {
                state
                    .admissions
                    .iter()
                    .find(|a| {
                        a.domain_id == id
                            && a.dam_hash != dam_hash
                            && admission::is_admitted(&a.decision)
                    })
                    .map(|a| format!("admitted with another DAM ({})", a.dam_hash))
            });
        let v = admission::decide(&request, taken, &state.policy_hash);
        let epoch = state.epoch + 1;
        let rec = AdmissionRecord {
            admitted_scope: v.admitted_scope.clone(),
            dam_hash: dam_hash.clone(),
            decision: v.decision.into(),
            decision_epoch: epoch,
            domain_id: id,
            format: RECORD_FORMAT.into(),
            policy_hash: request.body.bundle.dam.dam.policy_hash.clone(),
            reason: v.reason.clone(),
            request_hash: request_hash.clone(),
            rule: v.rule.map(String::from),
        };
        let signed = SignedRecord {
            public_key: signer.public_hex(),
            signature: signer.sign(&canonical(&rec)?),
            record: rec,
        };
        let decision = AdmissionDecision {
            admitted: request.body.bundle.clone(),
            authority: auth_bundle,
            format: DECISION_FORMAT.into(),
            record: signed.clone(),
        };

        let mut w = Writer::open(&self.authority_store())?;
        let req_art = put_json(&w, "admission/request.json", &request)?;
        let bundle_art = put_json(
            &w,
            &format!("admission/{id}/bundle.json"),
            &request.body.bundle,
        )?;
        let rec_art = put_json(&w, &format!("admission/{id}/record.json"), &signed)?;
        let mut new_state = state.clone();
        new_state.epoch = epoch;
        new_state.admissions.push(AdmissionEntry {
            admitted_scope: v.admitted_scope.clone(),
            bundle: bundle_art.reference,
            dam_hash,
            decision: v.decision.into(),
            domain_id: id,
            record: rec_art.reference,
            request_hash: request_hash.clone(),
        });
        let state_art = put_json(&w, "state.json", &new_state)?;
        let prev_state = Named {
            name: "state.json".into(),
            reference: state_ref,
            size: 0,
        };
        let recorded = record(
            &mut w,
            Operation {
                tool: "asl-auth-host",
                name: "admit",
                kind: "authority",
                args: vec![],
                inputs: vec![req_art, prev_state_sized(&store, prev_state)?],
                outputs: vec![bundle_art, rec_art.clone(), state_art.clone()],
                summary: serde_json::json!({
                    "state": state_art.reference.to_string(),
                    "domain_id": id,
                    "decision": v.decision,
                    "request_hash": request_hash,
                }),
            },
            Some(&signer),
            entropy,
        )?;
        drop(w);
        let out = admission::decision_path(media);
        write_file(
            &out,
            &serde_json::to_vec_pretty(&decision)
                .map_err(|e| AuthError::Internal(e.to_string()))?,
            0o644,
        )?;
        self.log(
            entropy,
            &format!(
                "admit: domain {id} {} (epoch {epoch}), record {}",
                v.decision, rec_art.reference
            ),
        )?;
        Ok(AdmitReport {
            domain_id: id,
            decision: v.decision.into(),
            rule: v.rule.map(String::from),
            reason: v.reason,
            admitted_scope: v.admitted_scope,
            decision_epoch: epoch,
            record: rec_art.reference,
            decision_file: out,
            receipt: recorded.receipt,
            snapshot: recorded.snapshot_id,
        })
    }

    /// Countersigns every receipt bundle on `media` (`asl-receipts/*.json`): each must be
    /// signed by a key the admitted DAM of its domain lists with `execute`. One bad bundle
    /// refuses them all, and nothing is written.
    pub fn countersign(
        &self,
        media: &Path,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<CountersignReport> {
        let (store, state, state_ref) = self.state()?;
        let dir = receipts_dir(media);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| AuthError::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.to_string_lossy().ends_with(".countersig.json")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(AuthError::NotFound(format!(
                "no receipt bundles (*.json) in {}",
                dir.display()
            )));
        }
        let reader = store.reader();
        let mut checked = Vec::new();
        for f in &files {
            let bytes = std::fs::read(f).map_err(|e| AuthError::io(f, e))?;
            let b: ReceiptBundle =
                serde_json::from_slice(&bytes).map_err(|e| AuthError::Decode {
                    what: f.display().to_string(),
                    kind: "receipt bundle",
                    reason: e.to_string(),
                })?;
            let receipt =
                asl_prov::Receipt::decode(b.receipt.as_bytes()).map_err(|e| AuthError::Decode {
                    what: f.display().to_string(),
                    kind: "receipt",
                    reason: e,
                })?;
            let sig = b.signatures.first().cloned().ok_or_else(|| {
                AuthError::refused(
                    "per.signed",
                    format!("{}: the receipt carries no signature", f.display()),
                )
            })?;
            let domain_id = sig.payload.domain_id;
            let adm = state
                .admissions
                .iter()
                .rev()
                .find(|a| a.domain_id == domain_id && admission::is_admitted(&a.decision))
                .ok_or_else(|| {
                    AuthError::refused(
                        "per.admitted",
                        format!(
                            "{}: domain {domain_id} is not admitted by this authority",
                            f.display()
                        ),
                    )
                })?;
            let bundle: AuthorityBundle = read_json(&reader, &adm.bundle, "authority bundle")?;
            let algo = sig
                .payload
                .per_artifact_id
                .parse::<Reference>()
                .map_err(|e| {
                    AuthError::refused("per.receipt-match", format!("{}: {e}", f.display()))
                })?
                .algo();
            let receipt_ref = algo.digest(b.receipt.as_bytes()).to_string();
            crate::per::check_signature(&sig, &receipt, &receipt_ref, &bundle.dam.dam, |_, _| true)
                .map_err(|(rule, detail)| {
                    AuthError::refused(rule, format!("{}: {detail}", f.display()))
                })?;
            checked.push((f.clone(), b, sig, receipt_ref, domain_id, algo));
        }
        let (auth_name, auth_entry) = self.authority_entry(&state)?;
        let signer = self.open_signer(&store, auth_entry, auth_name, passphrase)?;
        drop(reader);
        let mut w = Writer::open(&self.authority_store())?;
        let mut new_state = state.clone();
        let mut inputs = vec![prev_state_sized(
            &store,
            Named {
                name: "state.json".into(),
                reference: state_ref,
                size: 0,
            },
        )?];
        let mut outputs = Vec::new();
        let mut done = Vec::new();
        let mut writes = Vec::new();
        for (f, b, sig, receipt_ref, domain_id, algo) in checked {
            let counter = PerSignature::create(&signer, algo, sig.payload.clone())
                .map_err(AuthError::Internal)?;
            inputs.push(put_bytes(
                &w,
                &format!("countersign/{receipt_ref}/receipt.json"),
                b.receipt.as_bytes(),
            )?);
            let c = put_json(
                &w,
                &format!("countersign/{receipt_ref}/countersig.json"),
                &counter,
            )?;
            new_state
                .countersigned
                .insert(receipt_ref.clone(), c.reference);
            outputs.push(c);
            let out = f.with_extension("countersig.json");
            writes.push((out.clone(), canonical(&counter)?));
            done.push(CountersignedReceipt {
                receipt: receipt_ref,
                domain_id,
                file: out,
            });
        }
        let state_art = put_json(&w, "state.json", &new_state)?;
        outputs.push(state_art.clone());
        let rec = record(
            &mut w,
            Operation {
                tool: "asl-auth-host",
                name: "countersign",
                kind: "authority",
                args: vec![],
                inputs,
                outputs,
                summary: serde_json::json!({
                    "state": state_art.reference.to_string(),
                    "receipts": done.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>(),
                }),
            },
            Some(&signer),
            entropy,
        )?;
        drop(w);
        for (p, bytes) in writes {
            write_file(&p, &bytes, 0o644)?;
        }
        self.log(
            entropy,
            &format!(
                "countersign: {} receipt(s), receipt {}",
                done.len(),
                rec.receipt
            ),
        )?;
        Ok(CountersignReport {
            countersigned: done,
            receipt: rec.receipt,
            snapshot: rec.snapshot_id,
        })
    }

    /// Rotates a domain's keys: a new domain root key and signer, a new certificate by the
    /// offline root, and a DAM of the next version, referenced from a new snapshot. Older
    /// snapshots keep the old DAM (there is no live revocation).
    pub fn rotate(
        &self,
        domain: &str,
        passphrase: &[u8],
        entropy: &mut Entropy,
    ) -> Result<(DomainEntry, Recorded)> {
        let (store, state, state_ref) = self.state()?;
        let old = state.domains.get(domain).cloned().ok_or_else(|| {
            AuthError::NotFound(format!(
                "no domain '{domain}' in the authority state (domains: {})",
                state.domains.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let reader = store.reader();
        let root_sealed: SealedKey = read_json(&reader, &state.root_sealed, "sealed key")?;
        let root = root_sealed.open(
            passphrase,
            &format!("keys/root.priv.enc ({})", state.root_sealed),
        )?;
        let root_set: OfflineRootSet = read_json(&reader, &state.root_set, "offline root set")?;
        let (auth_name, auth_entry) = self.authority_entry(&state)?;
        let droot = new_key(entropy)?;
        let signer = new_key(entropy)?;
        let version = old.dam_version + 1;
        let dam = DomainAuthorityManifest::new(
            old.id,
            version,
            &droot,
            &[(&signer, roles_for(&old.kind))],
            &state.policy_hash,
        );
        let cert =
            SignedCertificate::domain_root(&root, &droot.public_hex(), old.id, &state.policy_hash)?;
        let bundle = AuthorityBundle::new(root_set, vec![cert], SignedDam::sign(dam, &droot)?);
        let droot_sealed = SealedKey::seal(&droot, "domain-root", passphrase, entropy)?;
        let signer_sealed = SealedKey::seal(&signer, "principal", passphrase, entropy)?;
        // The operation is signed by the authority's signer: the new one when the authority
        // domain itself rotates.
        let op_signer = if domain == auth_name {
            Key::from_seed(signer.seed())
        } else {
            self.open_signer(&store, auth_entry, auth_name, passphrase)?
        };
        drop(reader);
        let mut w = Writer::open(&self.authority_store())?;
        let rs = put_json(
            &w,
            &format!("domains/{domain}/root.priv.enc"),
            &droot_sealed,
        )?;
        let ss = put_json(
            &w,
            &format!("domains/{domain}/signer.priv.enc"),
            &signer_sealed,
        )?;
        let b = put_json(&w, &format!("domains/{domain}/bundle.json"), &bundle)?;
        let entry = DomainEntry {
            bundle: b.reference,
            dam_hash: bundle.dam.hash()?,
            dam_version: version,
            id: old.id,
            kind: old.kind.clone(),
            root_public: droot.public_hex(),
            root_sealed: rs.reference,
            signer_public: signer.public_hex(),
            signer_sealed: ss.reference,
        };
        let mut new_state = state.clone();
        new_state.domains.insert(domain.into(), entry.clone());
        let state_art = put_json(&w, "state.json", &new_state)?;
        let rec = record(
            &mut w,
            Operation {
                tool: "asl-auth-host",
                name: "rotate",
                kind: "authority",
                args: vec![domain.into()],
                inputs: vec![prev_state_sized(
                    &store,
                    Named {
                        name: "state.json".into(),
                        reference: state_ref,
                        size: 0,
                    },
                )?],
                outputs: vec![rs, ss, b, state_art.clone()],
                summary: serde_json::json!({
                    "state": state_art.reference.to_string(),
                    "domain": domain,
                    "dam_version": version,
                }),
            },
            Some(&op_signer),
            entropy,
        )?;
        self.log(
            entropy,
            &format!("rotate: domain {domain} to DAM version {version}"),
        )?;
        Ok((entry, rec))
    }

    /// Audits the authority store: the store's own verification, then every bundle and
    /// admission record the state names. Returns the problems found (empty: all good).
    pub fn audit(&self, entropy: &Entropy) -> Result<Vec<String>> {
        let (store, state, state_ref) = self.state()?;
        let mut problems = Vec::new();
        let children = |tag: asl_store::TypeTag, bytes: &[u8]| {
            crate::ops::children(tag, bytes).map_err(|e| e.to_string())
        };
        let report = asl_store::verify::verify(
            &store,
            &asl_store::verify::VerifyOptions { read_data: true },
            &children,
        );
        for p in &report.problems {
            problems.push(format!("store: {}: {}", p.object, p.reason));
        }
        let reader = store.reader();
        let pol: DomainPolicy = read_json(&reader, &state.policy, "domain policy")?;
        if pol.hash() != state.policy_hash {
            problems.push(format!(
                "policy artifact {} hashes to {}, not {}",
                state.policy,
                pol.hash(),
                state.policy_hash
            ));
        }
        for (name, d) in &state.domains {
            let b: AuthorityBundle = read_json(&reader, &d.bundle, "authority bundle")?;
            if let Err(e) = b.validate() {
                problems.push(format!("domain {name}: {e}"));
            }
            if b.dam.dam.policy_hash != state.policy_hash {
                problems.push(format!(
                    "domain {name}: DAM policy {} is not the pinned {}",
                    b.dam.dam.policy_hash, state.policy_hash
                ));
            }
        }
        let (_, auth_entry) = self.authority_entry(&state)?;
        for a in &state.admissions {
            let r: SignedRecord = read_json(&reader, &a.record, "admission record")?;
            if asl_prov::sign::verify(&r.public_key, &canonical(&r.record)?, &r.signature).is_err()
            {
                problems.push(format!("admission record {}: signature fails", a.record));
            }
            if !state
                .domains
                .values()
                .any(|d| d.signer_public == r.public_key)
                && auth_entry.signer_public != r.public_key
            {
                problems.push(format!(
                    "admission record {}: signed by a key the authority never held",
                    a.record
                ));
            }
        }
        // The audit is an operation too; its receipt is unsigned (an audit needs no
        // passphrase) and is not written into a store that failed its own verification.
        if report.problems.is_empty() {
            drop(reader);
            let input = prev_state_sized(
                &store,
                Named {
                    name: "state.json".into(),
                    reference: state_ref,
                    size: 0,
                },
            )?;
            let mut w = Writer::open(&self.authority_store())?;
            record(
                &mut w,
                Operation {
                    tool: "asl-auth-host",
                    name: "audit",
                    kind: "authority",
                    args: vec![],
                    inputs: vec![input],
                    outputs: vec![],
                    summary: serde_json::json!({ "problems": problems }),
                },
                None,
                entropy,
            )?;
        }
        Ok(problems)
    }

    /// Seals the current state in a snapshot of its own, signed by the authority: a point
    /// to pin and replay from.
    pub fn seal(&self, passphrase: &[u8], entropy: &mut Entropy) -> Result<Recorded> {
        let (store, state, state_ref) = self.state()?;
        let (auth_name, auth_entry) = self.authority_entry(&state)?;
        let signer = self.open_signer(&store, auth_entry, auth_name, passphrase)?;
        let st = prev_state_sized(
            &store,
            Named {
                name: "state.json".into(),
                reference: state_ref,
                size: 0,
            },
        )?;
        let mut w = Writer::open(&self.authority_store())?;
        let rec = record(
            &mut w,
            Operation {
                tool: "asl-auth-host",
                name: "seal",
                kind: "authority",
                args: vec![],
                inputs: vec![],
                outputs: vec![st],
                summary: serde_json::json!({"state": state_ref.to_string(), "epoch": state.epoch}),
            },
            Some(&signer),
            entropy,
        )?;
        self.log(
            entropy,
            &format!("seal: state {state_ref} in snapshot {}", rec.snapshot_id),
        )?;
        Ok(rec)
    }
}

/// A previous state as an input, with its size.
fn prev_state_sized(store: &Store, mut n: Named) -> Result<Named> {
    n.size = store.reader().artifact_len(&n.reference).unwrap_or(0);
    Ok(n)
}

/// Loads an admission decision's admitted bundle, or a bare bundle, from a file: what
/// `asl-capture verify --dam` takes.
pub fn load_dam_file(path: &Path) -> Result<(AuthorityBundle, Option<AdmissionDecision>)> {
    let bytes = std::fs::read(path).map_err(|e| AuthError::io(path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| AuthError::Decode {
        what: path.display().to_string(),
        kind: "DAM file",
        reason: e.to_string(),
    })?;
    match v.get("format").and_then(|f| f.as_str()) {
        Some(DECISION_FORMAT) => {
            let d = AdmissionDecision::load(path)?;
            Ok((d.admitted.clone(), Some(d)))
        }
        _ => Ok((
            AuthorityBundle::decode(&bytes, &path.display().to_string())?,
            None,
        )),
    }
}

/// The ids of the countersigning role, for documentation and checks.
pub fn roles_note() -> (&'static str, &'static str) {
    (ADMIT_ROLE, COUNTERSIGN_ROLE)
}
