//! Genesis: the authority made once (mode GENESIS).

use super::*;

impl AuthHost {
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
            put_json(&w, "env-claims/genesis.claim", &EnvironmentClaim::here())?,
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
}

/// An environment claim (ENC-ASL-AUTH-HOST/1 `env-claims/`): what the authority was made
/// on, as the host states it. A claim, not a proof: it is signed only as part of the
/// genesis receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvironmentClaim {
    pub arch: String,
    pub format: String,
    pub kernel: String,
    /// `/etc/os-release` of the running system, as read (empty when absent).
    pub os_release: String,
    pub tool: String,
    pub tool_version: String,
}

impl EnvironmentClaim {
    fn here() -> EnvironmentClaim {
        EnvironmentClaim {
            arch: std::env::consts::ARCH.into(),
            format: "asl-env-claim/1".into(),
            kernel: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            os_release: std::fs::read_to_string("/etc/os-release").unwrap_or_default(),
            tool: "asl-auth-host".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}
