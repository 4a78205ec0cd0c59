//! Maintenance (mode MAINTENANCE): key rotation, audit, sealing.

use super::*;

impl AuthHost {
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
