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
    self, AdmissionDecision, AdmissionRecord, AdmissionRequest, DECISION_FORMAT, RECORD_FORMAT,
    SignedRecord,
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

mod admit;
mod countersign;
mod genesis;
mod maintenance;

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
