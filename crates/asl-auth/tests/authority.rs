//! Genesis, admission and refusals of the authority host, against real stores on disk.

mod common;

use asl_auth::admission::{AdmissionDecision, AdmissionRequest, decision_path, request_path};
use asl_auth::authority::{
    AuthorityBundle, DomainAuthorityManifest, OfflineRootSet, SignedCertificate, SignedDam,
};
use asl_auth::policy::DomainPolicy;
use asl_auth::rescue::RescueNode;
use asl_auth::sealed::new_key;
use asl_auth::{AuthError, Entropy};
use common::{PASS, host, tree};

#[test]
fn genesis_with_fixed_entropy_gives_identical_ids_on_two_runs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let ra = host(a.path())
        .genesis(PASS, &mut Entropy::fixed([9; 32]))
        .unwrap();
    let rb = host(b.path())
        .genesis(PASS, &mut Entropy::fixed([9; 32]))
        .unwrap();
    let rc = host(c.path())
        .genesis(PASS, &mut Entropy::fixed([10; 32]))
        .unwrap();
    assert_eq!(ra.root_public, rb.root_public);
    assert_eq!(ra.root_sealed, rb.root_sealed);
    assert_eq!(ra.domains, rb.domains);
    assert_eq!(ra.state, rb.state);
    assert_eq!(ra.receipt, rb.receipt);
    assert_eq!(ra.policy_hash, rb.policy_hash);
    assert_ne!(ra.root_public, rc.root_public);
    assert_ne!(ra.state, rc.state);
    // The layout of the seed, and the files genesis exports.
    for p in [
        "var/lib/asl/common/config",
        "var/lib/asl/personal/config",
        "var/lib/asl/pools",
        "etc/asl-auth-host/policy.hash",
        "var/lib/asl-auth-host/offline/root.pub",
        "var/lib/asl-auth-host/offline/root.priv.enc",
        "var/lib/asl-auth-host/domains/common.dam.json",
        "var/log/asl-auth-host.log",
    ] {
        assert!(a.path().join(p).exists(), "{p} missing");
    }
    let hash = std::fs::read_to_string(a.path().join("etc/asl-auth-host/policy.hash")).unwrap();
    assert_eq!(hash, format!("{}\n", DomainPolicy::default().hash()));
    // The sealed root key opens with the passphrase only.
    let sealed: asl_auth::sealed::SealedKey = serde_json::from_slice(
        &std::fs::read(a.path().join("var/lib/asl-auth-host/offline/root.priv.enc")).unwrap(),
    )
    .unwrap();
    assert_eq!(sealed.open(PASS, "root").unwrap().public_hex(), ra.root_key);
    assert!(sealed.open(b"nope", "root").is_err());
    // The genesis receipt names what genesis made, and is signed.
    let store = asl_store::Store::open(&ra.authority_store).unwrap();
    let r = asl_prov::verify::verify_in_store(&store, &ra.receipt, &[]).unwrap();
    assert!(
        r.ok() && r.signatures.len() == 1 && r.signatures[0].ok,
        "{:?}",
        r.problems
    );
    use asl_store::ArtifactRead;
    let receipt =
        asl_prov::Receipt::decode(&store.reader().read_all(&ra.receipt).unwrap()).unwrap();
    let names: Vec<&str> = receipt.outputs.iter().map(|o| o.path.as_str()).collect();
    for n in [
        "keys/root.pub",
        "keys/root.priv.enc",
        "policy/policy.hash",
        "env-claims/genesis.claim",
        "domains/common/dam.json",
        "state.json",
    ] {
        assert!(names.contains(&n), "{n} not among {names:?}");
    }
    // Every bundle genesis made validates.
    let h = host(a.path());
    assert!(h.audit(&Entropy::Os).unwrap().is_empty());
}

#[test]
fn genesis_run_twice_is_refused_naming_its_rule_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    h.genesis(PASS, &mut Entropy::Os).unwrap();
    let before = tree(d.path());
    let e = h.genesis(PASS, &mut Entropy::Os).unwrap_err();
    assert_eq!(e.rule(), Some("genesis.once"), "{e}");
    assert_eq!(before, tree(d.path()));
}

#[test]
fn a_wrong_passphrase_is_refused_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    h.genesis(PASS, &mut Entropy::Os).unwrap();
    let before = tree(d.path());
    let e = h.rotate("common", b"wrong", &mut Entropy::Os).unwrap_err();
    assert!(matches!(e, AuthError::Passphrase { .. }), "{e}");
    assert!(e.to_string().contains("root.priv.enc"), "{e}");
    assert_eq!(before, tree(d.path()));
    // The right one rotates: a new DAM version, and the audit still checks out.
    let (entry, _) = h.rotate("common", PASS, &mut Entropy::Os).unwrap();
    assert_eq!(entry.dam_version, 2);
    assert!(h.audit(&Entropy::Os).unwrap().is_empty());
    let before = tree(d.path());
    let e = h.seal(b"wrong", &mut Entropy::Os).unwrap_err();
    assert_eq!(e.rule(), Some("key.passphrase"), "{e}");
    assert_eq!(before, tree(d.path()));
    h.seal(PASS, &mut Entropy::Os).unwrap();
    // Every operation left a receipt: genesis, rotate, audit, seal.
    let store = asl_store::Store::open(&d.path().join("var/lib/asl/personal")).unwrap();
    let ops: Vec<_> = store
        .snapshots()
        .iter()
        .filter_map(|s| s.meta.label.clone())
        .collect();
    assert_eq!(ops, ["genesis", "rotate", "audit", "seal"]);
}

/// A node with a minted request on `media`.
fn minted(
    node_dir: &std::path::Path,
    media: &std::path::Path,
    id: u32,
    scope: &[&str],
) -> RescueNode {
    let n = RescueNode::init(node_dir, id, PASS, &mut Entropy::Os).unwrap();
    n.mint(
        media,
        scope.iter().map(|s| s.to_string()).collect(),
        &DomainPolicy::default(),
        PASS,
        &mut Entropy::Os,
    )
    .unwrap();
    n
}

#[test]
fn an_admission_is_accepted_signed_written_back_and_its_replay_refused() {
    let d = tempfile::tempdir().unwrap();
    let h = host(&d.path().join("auth"));
    h.genesis(PASS, &mut Entropy::Os).unwrap();
    let media = d.path().join("usb");
    minted(
        &d.path().join("node"),
        &media,
        42,
        &["produce", "execute", "publish"],
    );
    let r = h.admit(&media, PASS, &mut Entropy::Os).unwrap();
    assert_eq!(r.decision, "ACCEPTED");
    assert_eq!(r.admitted_scope, ["execute", "produce", "publish"]);
    assert_eq!(r.decision_epoch, 1);
    let decision = AdmissionDecision::load(&decision_path(&media)).unwrap();
    decision.validate(None).unwrap();
    assert_eq!(decision.record.record.decision, "ACCEPTED");
    // The same request again: refused, nothing changed on the host or the media.
    let before = (tree(&d.path().join("auth")), tree(&media));
    let e = h.admit(&media, PASS, &mut Entropy::Os).unwrap_err();
    assert_eq!(e.rule(), Some("dap.replay"), "{e}");
    assert_eq!(before, (tree(&d.path().join("auth")), tree(&media)));
}

/// Writes a request for a hand-made bundle to `media`.
fn request_with(media: &std::path::Path, bundle: AuthorityBundle, droot: &asl_prov::sign::Key) {
    let req =
        AdmissionRequest::new(bundle, droot, vec!["execute".into()], &mut Entropy::Os).unwrap();
    let p = request_path(media);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, serde_json::to_vec(&req).unwrap()).unwrap();
}

#[test]
fn a_dam_with_a_wrong_policy_hash_or_an_uncertified_root_is_refused_and_nothing_changes() {
    let d = tempfile::tempdir().unwrap();
    let auth = d.path().join("auth");
    let h = host(&auth);
    h.genesis(PASS, &mut Entropy::Os).unwrap();
    let e = &mut Entropy::Os;
    let (root, droot, signer) = (
        new_key(e).unwrap(),
        new_key(e).unwrap(),
        new_key(e).unwrap(),
    );
    let good = DomainPolicy::default().hash();
    let dam = |policy: &str| {
        SignedDam::sign(
            DomainAuthorityManifest::new(50, 1, &droot, &[(&signer, &["execute"])], policy),
            &droot,
        )
        .unwrap()
    };
    let cert = SignedCertificate::domain_root(&root, &droot.public_hex(), 50, &good).unwrap();
    let cases = [
        (
            "dam.policy-hash",
            AuthorityBundle::new(
                OfflineRootSet::single(&root),
                vec![cert.clone()],
                dam("sha256:00"),
            ),
        ),
        (
            "dam.root-certified",
            AuthorityBundle::new(
                OfflineRootSet::single(&new_key(e).unwrap()),
                vec![cert.clone()],
                dam(&good),
            ),
        ),
        (
            "dam.root-certified",
            AuthorityBundle::new(OfflineRootSet::single(&root), vec![], dam(&good)),
        ),
    ];
    for (rule, bundle) in cases {
        let media = tempfile::tempdir().unwrap();
        request_with(media.path(), bundle, &droot);
        let before = (tree(&auth), tree(media.path()));
        let err = h.admit(media.path(), PASS, &mut Entropy::Os).unwrap_err();
        assert_eq!(err.rule(), Some(rule), "{err}");
        assert_eq!(
            before,
            (tree(&auth), tree(media.path())),
            "{rule} changed something"
        );
    }
    // A proof made by another key than the DAM root: refused too.
    let media = tempfile::tempdir().unwrap();
    let bundle = AuthorityBundle::new(OfflineRootSet::single(&root), vec![cert], dam(&good));
    request_with(media.path(), bundle, &signer);
    assert_eq!(
        h.admit(media.path(), PASS, &mut Entropy::Os)
            .unwrap_err()
            .rule(),
        Some("dap.proof")
    );
}

#[test]
fn limited_deferred_and_rejected_decisions_name_their_rule() {
    let d = tempfile::tempdir().unwrap();
    let h = host(&d.path().join("auth"));
    h.genesis(PASS, &mut Entropy::Os).unwrap();
    let case = |name: &str, id: u32, scope: &[&str], policy: DomainPolicy| {
        let media = d.path().join(format!("usb-{name}"));
        let n = RescueNode::init(
            &d.path().join(format!("node-{name}")),
            id,
            PASS,
            &mut Entropy::Os,
        )
        .unwrap();
        n.mint(
            &media,
            scope.iter().map(|s| s.to_string()).collect(),
            &policy,
            PASS,
            &mut Entropy::Os,
        )
        .unwrap();
        h.admit(&media, PASS, &mut Entropy::Os).unwrap()
    };
    let mut other = DomainPolicy::default();
    other.retention_policy.min_snapshot_retention = 5;
    let r = case("limited", 60, &["execute", "publish"], other);
    assert_eq!(
        (r.decision.as_str(), r.rule.as_deref()),
        ("ACCEPTED_LIMITED", Some("dap.policy-compatible"))
    );
    assert_eq!(r.admitted_scope, ["execute"]);
    let r = case(
        "deferred",
        61,
        &["execute", "federate"],
        DomainPolicy::default(),
    );
    assert_eq!(
        (r.decision.as_str(), r.rule.as_deref()),
        ("DEFERRED", Some("dap.operator-review"))
    );
    let r = case("rejected", 1, &["execute"], DomainPolicy::default());
    assert_eq!(
        (r.decision.as_str(), r.rule.as_deref()),
        ("REJECTED", Some("dap.domain-unique"))
    );
    assert_eq!(r.decision_epoch, 3);
}
