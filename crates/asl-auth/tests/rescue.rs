//! The node's side of admission: what it refuses, and what a decision that does not admit
//! lends (nothing).

mod common;

use asl_auth::Entropy;
use asl_auth::admission::decision_path;
use asl_auth::per::validate_with_file;
use asl_auth::policy::DomainPolicy;
use asl_auth::rescue::RescueNode;
use common::{PASS, host, tree};

#[test]
fn a_deferred_or_forged_decision_lends_no_authority_and_is_refused_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let auth = d.path().join("auth");
    let h = host(&auth);
    h.genesis(PASS, &mut Entropy::Os).unwrap();
    let node = RescueNode::init(&d.path().join("node"), 77, PASS, &mut Entropy::Os).unwrap();
    std::fs::write(node.work().join("in.txt"), "x\n").unwrap();
    let step = node
        .run(
            vec!["sh".into(), "-c".into(), "cp in.txt out.txt".into()],
            vec!["in.txt".into()],
            vec!["out.txt".into()],
            Some(node.key("signer", PASS).unwrap()),
        )
        .unwrap();
    let media = d.path().join("usb");
    let common = auth.join("var/lib/asl/common");

    // Publishing before any admission: refused, nothing changed.
    let before = (tree(&node.dir), tree(&common));
    let e = node.publish(&common, PASS, &mut Entropy::Os).unwrap_err();
    assert_eq!(e.rule(), Some("publication.admitted"), "{e}");
    assert_eq!(before, (tree(&node.dir), tree(&common)));

    // Asking for federate is deferred: the decision is genuine but admits nothing.
    node.mint(
        &media,
        vec!["execute".into(), "federate".into()],
        &DomainPolicy::default(),
        PASS,
        &mut Entropy::Os,
    )
    .unwrap();
    assert_eq!(
        h.admit(&media, PASS, &mut Entropy::Os).unwrap().decision,
        "DEFERRED"
    );
    let store = asl_store::Store::open(&node.personal_store()).unwrap();
    let v = validate_with_file(&store, &step.receipt_ref, &decision_path(&media)).unwrap();
    assert!(!v.authoritative);
    assert!(
        v.problems[0].contains("per.admitted") && v.problems[0].contains("DEFERRED"),
        "{:?}",
        v.problems
    );
    drop(store);

    // The same decision edited to ACCEPTED: its signature no longer holds.
    let p = decision_path(&media);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"DEFERRED\"", "\"ACCEPTED\"");
    std::fs::write(&p, text).unwrap();
    let before = (tree(&node.dir), tree(&media));
    let e = node
        .accept(&media, None, PASS, &mut Entropy::Os)
        .unwrap_err();
    assert_eq!(e.rule(), Some("decision.signature"), "{e}");
    assert_eq!(before, (tree(&node.dir), tree(&media)));
    // And an authority root other than the one pinned is refused before anything else.
    let e = node
        .accept(&media, Some(&"00".repeat(32)), PASS, &mut Entropy::Os)
        .unwrap_err();
    assert_eq!(e.rule(), Some("decision.authority-pinned"), "{e}");
    assert_eq!(before, (tree(&node.dir), tree(&media)));
}
