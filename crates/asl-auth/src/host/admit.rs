//! Admission (mode ADMISSION, ASL/DAP/1): deciding a request brought on removable media.

use super::*;

impl AuthHost {
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
}
