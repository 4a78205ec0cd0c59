//! Countersigning the receipts a node brings (mode ADMISSION, PER/SIGNATURE/1).

use super::*;

impl AuthHost {
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
}
