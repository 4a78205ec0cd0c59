//! Recording an operation as a receipt, and copying artifacts between stores.
//!
//! Every authority and rescue operation ends in one commit to the store it acts on: the
//! artifacts it made, an execution receipt (asl-prov's `asl-per/1`, kind `authority` or
//! `rescue`, no run record) naming what it consumed as inputs and what it made as outputs,
//! optionally a PER signature, and a TGK edge that is the snapshot's root. The receipt
//! carries no observation (nothing was traced: the operation is this program's own code), and
//! its times come from [`Entropy::now`], so fixed entropy gives identical receipts.

use asl_prov::receipt::{
    Action, Context, EDGE_FORMAT, Edge, FileRef, Observation, RECEIPT_FORMAT, Receipt, Timing,
    ToolInfo,
};
use asl_prov::sign::{Key, PerSignature};
use asl_store::{ArtifactRead, ArtifactWrite, Reference, SnapshotMeta, TypeTag, Writer};

use crate::entropy::{Entropy, canonical};
use crate::error::{AuthError, Result};

/// An artifact an operation consumed or made, under a logical name (`keys/root.pub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub reference: Reference,
    pub size: u64,
}

/// Stores `value` as canonical JSON and names it.
pub fn put_json<T: serde::Serialize>(writer: &Writer, name: &str, value: &T) -> Result<Named> {
    put_bytes(writer, name, &canonical(value)?)
}

pub fn put_bytes(writer: &Writer, name: &str, bytes: &[u8]) -> Result<Named> {
    let p = writer.put_bytes(bytes, TypeTag::BYTES)?;
    Ok(Named {
        name: name.into(),
        reference: p.reference,
        size: p.len,
    })
}

/// Reads an artifact holding canonical JSON of `T`; `kind` names it in errors.
pub fn read_json<T: for<'de> serde::Deserialize<'de>>(
    reader: &dyn ArtifactRead,
    r: &Reference,
    kind: &'static str,
) -> Result<T> {
    serde_json::from_slice(&reader.read_all(r)?).map_err(|e| AuthError::Decode {
        what: r.to_string(),
        kind,
        reason: e.to_string(),
    })
}

/// The references of the outputs named `name` of the operations labelled `label` in
/// `store`, newest first: how a store's own records are found again (the DAM genesis
/// installed, the policy a node minted with).
pub fn outputs_named(store: &asl_store::Store, label: &str, name: &str) -> Result<Vec<Reference>> {
    let reader = store.reader();
    let mut found = Vec::new();
    for s in store.snapshots().into_iter().rev() {
        if s.meta.label.as_deref() != Some(label) {
            continue;
        }
        let Some(root) = s.root else { continue };
        let edge = Edge::decode(&reader.read_all(&root)?).map_err(AuthError::Internal)?;
        let rr: Reference = edge
            .payload
            .parse()
            .map_err(|e: asl_store::ParseReferenceError| {
                AuthError::Internal(format!("edge {root}: {e}"))
            })?;
        let receipt = Receipt::decode(&reader.read_all(&rr)?).map_err(AuthError::Internal)?;
        for o in receipt.outputs.iter().filter(|o| o.path == name) {
            found.push(
                o.reference
                    .parse()
                    .map_err(|e: asl_store::ParseReferenceError| {
                        AuthError::Internal(format!("receipt {rr}: {e}"))
                    })?,
            );
        }
    }
    Ok(found)
}

/// What to record.
pub struct Operation {
    /// `asl-auth-host` or `asl-rescue`.
    pub tool: &'static str,
    /// `genesis`, `admit`, ...
    pub name: &'static str,
    /// Edge type and snapshot kind: `authority` or `rescue`.
    pub kind: &'static str,
    /// Arguments that define the operation (never secrets), after the tool and name.
    pub args: Vec<String>,
    pub inputs: Vec<Named>,
    pub outputs: Vec<Named>,
    /// Extra facts for the snapshot's summary (the operation name and receipt are added).
    pub summary: serde_json::Value,
}

/// What a recorded operation committed.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub receipt: Reference,
    pub edge: Reference,
    pub snapshot_id: u64,
    pub signature: Option<Reference>,
}

fn file_ref(n: &Named) -> FileRef {
    FileRef {
        kind: "file".into(),
        mode: 0o444,
        path: n.name.clone(),
        reference: n.reference.to_string(),
        size: n.size,
    }
}

fn context() -> Context {
    let u = rustix::system::uname();
    Context {
        arch: std::env::consts::ARCH.into(),
        distro: String::new(),
        env_hashed: Default::default(),
        env_names: vec![],
        gid: rustix::process::getgid().as_raw(),
        host: u.nodename().to_string_lossy().into_owned(),
        kernel: u.release().to_string_lossy().into_owned(),
        uid: rustix::process::getuid().as_raw(),
        umask: 0,
        user: String::new(),
    }
}

/// Stores the operation's receipt, signature and edge and commits them as one snapshot.
pub fn record(
    writer: &mut Writer,
    op: Operation,
    signer: Option<&Key>,
    entropy: &Entropy,
) -> Result<Recorded> {
    let algo = writer.algo();
    let now = entropy.now();
    let mut argv = vec![op.tool.to_string(), op.name.to_string()];
    argv.extend(op.args);
    let action = Action {
        argv,
        cwd: "/".into(),
        env: Default::default(),
        inputs: op.inputs.iter().map(file_ref).collect(),
    };
    let action_digest =
        asl_prov::receipt::action_digest(algo, &action).map_err(AuthError::Internal)?;
    let receipt = Receipt {
        action,
        action_digest,
        context: context(),
        file: None,
        format: RECEIPT_FORMAT.into(),
        kind: op.kind.into(),
        missing_outputs: vec![],
        observed: Observation {
            accesses: vec![],
            blind_spots: vec![],
            gaps: vec![],
            mode: "none".into(),
            undeclared_inputs: vec![],
            undeclared_outputs: vec![],
        },
        outputs: op.outputs.iter().map(file_ref).collect(),
        run: None,
        timing: Timing {
            finished_at: now.clone(),
            hash_inputs_ms: 0,
            run_ms: 0,
            started_at: now,
            store_outputs_ms: 0,
        },
        tool: ToolInfo {
            name: op.tool.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    };
    let receipt_bytes = receipt.encode().map_err(AuthError::Internal)?;
    let receipt_ref = writer
        .put_bytes(&receipt_bytes, TypeTag::RECEIPT)?
        .reference;
    let base = writer
        .latest_snapshot()
        .map(|s| (s.id, s.logseq))
        .unwrap_or((0, 0));
    let signature = match signer {
        Some(k) => {
            let payload = asl_prov::sign::payload_for(
                &receipt,
                &receipt_ref.to_string(),
                writer.config().domain_id,
                base,
            );
            let sig = PerSignature::create(k, algo, payload).map_err(AuthError::Internal)?;
            Some(
                writer
                    .put_bytes(&canonical(&sig)?, TypeTag::BYTES)?
                    .reference,
            )
        }
        None => None,
    };
    let edge = Edge {
        format: EDGE_FORMAT.into(),
        from: op.inputs.iter().map(|n| n.reference.to_string()).collect(),
        payload: receipt_ref.to_string(),
        signatures: signature.iter().map(|r| r.to_string()).collect(),
        to: op.outputs.iter().map(|n| n.reference.to_string()).collect(),
        edge_type: op.kind.into(),
    };
    let edge_ref = writer
        .put_bytes(&edge.encode().map_err(AuthError::Internal)?, TypeTag::EDGE)?
        .reference;
    let mut meta = SnapshotMeta::now(op.kind);
    meta.label = Some(op.name.into());
    let mut summary = match op.summary {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    summary.insert("operation".into(), op.name.into());
    summary.insert("receipt".into(), receipt_ref.to_string().into());
    meta.summary = serde_json::Value::Object(summary);
    let commit = writer.commit(Some(edge_ref), meta)?;
    Ok(Recorded {
        receipt: receipt_ref,
        edge: edge_ref,
        snapshot_id: commit.snapshot.id,
        signature,
    })
}

/// The references an artifact of `tag` holds (trees, receipts, edges), as GC follows them.
pub fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>> {
    match tag {
        TypeTag::TREE => {
            asl_fs::tree_children(bytes).map_err(|e| AuthError::Internal(e.to_string()))
        }
        TypeTag::RECEIPT | TypeTag::EDGE => {
            asl_prov::children(tag, bytes).map_err(AuthError::Internal)
        }
        _ => Ok(Vec::new()),
    }
}

/// Copies `root` and everything it reaches from `from` into `to`, keeping each artifact's
/// type tag: the ids stay the same when both stores hash alike. Returns how many artifacts
/// were new in `to`.
pub fn copy_closure(from: &asl_store::Reader<'_>, to: &Writer, root: &Reference) -> Result<usize> {
    let mut stack = vec![*root];
    let mut seen = std::collections::HashSet::new();
    let mut new = 0;
    while let Some(r) = stack.pop() {
        if !seen.insert(r) {
            continue;
        }
        let tag = TypeTag(from.type_tag(&r).ok_or_else(|| {
            AuthError::NotFound(format!("artifact {r} is not in the source store"))
        })?);
        let bytes = from.read_all(&r)?;
        stack.extend(children(tag, &bytes)?);
        if !to.contains(&r) {
            let p = to.put_bytes(&bytes, tag)?;
            if p.reference != r {
                return Err(AuthError::Usage(format!(
                    "artifact {r} gets id {} in the destination store: both stores must use \
                     the same hash algorithm",
                    p.reference
                )));
            }
            new += 1;
        }
    }
    Ok(new)
}
