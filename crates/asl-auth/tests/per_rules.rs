//! PER signatures validated against a DAM: each failure names its rule, and validation
//! changes nothing.

mod common;

use asl_auth::Entropy;
use asl_auth::authority::{
    AuthorityBundle, DomainAuthorityManifest, OfflineRootSet, SignedCertificate, SignedDam,
};
use asl_auth::per::validate_in_store;
use asl_auth::policy::DomainPolicy;
use asl_auth::rescue::RescueNode;
use asl_auth::sealed::new_key;
use asl_store::{Store, Writer};
use common::{PASS, tree};

fn rule_of(v: &asl_auth::per::DamVerdict) -> Vec<String> {
    v.signatures.iter().filter_map(|s| s.rule.clone()).collect()
}

#[test]
fn receipts_are_authoritative_only_when_every_per_rule_holds() {
    let d = tempfile::tempdir().unwrap();
    let node = RescueNode::init(&d.path().join("node"), 42, PASS, &mut Entropy::Os).unwrap();
    std::fs::write(node.work().join("a.txt"), "hello\n").unwrap();
    let signer = node.key("signer", PASS).unwrap();
    let step = |key, out: &str| {
        node.run(
            vec![
                "sh".into(),
                "-c".into(),
                format!("tr a-z A-Z < a.txt > {out}"),
            ],
            vec!["a.txt".into()],
            vec![out.into()],
            key,
        )
        .unwrap()
    };
    let good = step(Some(signer), "b.txt");
    let stranger = step(Some(new_key(&mut Entropy::Os).unwrap()), "c.txt");
    let (bundle, droot, signer) = node.bundle(PASS, &DomainPolicy::default()).unwrap();
    let store = Store::open(&node.personal_store()).unwrap();
    let before = tree(&node.personal_store());

    let v = validate_in_store(&store, &good.receipt_ref, &bundle).unwrap();
    assert!(v.authoritative, "{:?}", v.problems);
    let v = validate_in_store(&store, &stranger.receipt_ref, &bundle).unwrap();
    assert!(!v.authoritative);
    assert_eq!(rule_of(&v), ["per.key-in-dam"]);
    assert!(v.problems[0].contains("per.key-in-dam"), "{:?}", v.problems);

    // The same key listed without execute.
    let root = node.key("offline-root", PASS).unwrap();
    let ph = DomainPolicy::default().hash();
    let no_exec = AuthorityBundle::new(
        OfflineRootSet::single(&root),
        vec![SignedCertificate::domain_root(&root, &droot.public_hex(), 42, &ph).unwrap()],
        SignedDam::sign(
            DomainAuthorityManifest::new(42, 2, &droot, &[(&signer, &["produce"])], &ph),
            &droot,
        )
        .unwrap(),
    );
    let v = validate_in_store(&store, &good.receipt_ref, &no_exec).unwrap();
    assert_eq!(rule_of(&v), ["per.role-execute"]);
    // A DAM whose root no certificate vouches for is not valid at all.
    let mut uncertified = bundle.clone();
    uncertified.certificates.clear();
    let v = validate_in_store(&store, &good.receipt_ref, &uncertified).unwrap();
    assert!(
        !v.authoritative && v.problems[0].contains("dam.root-certified"),
        "{:?}",
        v.problems
    );
    assert_eq!(
        before,
        tree(&node.personal_store()),
        "validation wrote to the store"
    );
    drop(store);

    // The snapshot the signature binds is no longer a snapshot of the store.
    let (_, sig) = good.signature.clone().unwrap();
    let mut w = Writer::open(&node.personal_store()).unwrap();
    w.forget(sig.payload.snapshot_id).unwrap();
    drop(w);
    let store = Store::open(&node.personal_store()).unwrap();
    let v = validate_in_store(&store, &good.receipt_ref, &bundle).unwrap();
    assert_eq!(rule_of(&v), ["per.snapshot-visible"]);
}
