//! End to end: the offline authority host and the rescue operation on one machine, with
//! directories standing for the USB media. The authority's commands run in a fresh network
//! namespace (`unshare -n`, as root): the host is offline there, as it must be; the
//! namespace disappears with the process. Every refusal is checked to change nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{run, text, transcript};

/// The example config of docs/AUTHORITY.md.
const CONFIG: &str = include_str!("../../../docs/examples/auth-host-config.yaml");

fn asl() -> Command {
    common::asl()
}

/// The binary in a new, empty network namespace: only a (down) loopback interface.
fn offline() -> Command {
    let mut c = Command::new("unshare");
    c.arg("-n").arg(env!("CARGO_BIN_EXE_asl"));
    c.env_remove("ASL_STORE").env_remove("ASL_ROOT");
    c
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", transcript(&o));
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", transcript(o)))
}

/// Files and directories of a tree, with the files' bytes.
type Files = BTreeMap<String, Vec<u8>>;

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> Files {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(format!("{rel}/"), vec![]);
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

struct World {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    node: std::path::PathBuf,
    usb: std::path::PathBuf,
    pass: std::path::PathBuf,
    wrong: std::path::PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("authority");
    std::fs::create_dir_all(root.join("etc/asl-auth-host")).unwrap();
    std::fs::write(root.join("etc/asl-auth-host/config.yaml"), CONFIG).unwrap();
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "tr0ub4dor&3\n").unwrap();
    World {
        node: tmp.path().join("node"),
        usb: tmp.path().join("usb"),
        root,
        pass,
        wrong,
        _tmp: tmp,
    }
}

impl World {
    fn host(&self, pass: &Path, args: &[&str]) -> Output {
        run(offline()
            .args(["asl-auth-host", "--json", "--root"])
            .arg(&self.root)
            .arg("--passphrase-file")
            .arg(pass)
            .args(args))
    }
    fn rescue(&self, args: &[&str]) -> Output {
        run(asl()
            .args(["asl-rescue", "--json", "--node"])
            .arg(&self.node)
            .arg("--passphrase-file")
            .arg(&self.pass)
            .args(args))
    }
    fn everything(&self) -> [Files; 3] {
        [tree(&self.root), tree(&self.node), tree(&self.usb)]
    }
    /// Runs a command that must be refused by `rule`, and checks that nothing changed.
    fn refused(&self, rule: &str, o: impl FnOnce() -> Output) {
        let before = self.everything();
        let o = o();
        assert_eq!(o.status.code(), Some(1), "{}", transcript(&o));
        assert!(
            text(&o).1.contains(rule),
            "rule {rule} not named: {}",
            transcript(&o)
        );
        assert!(
            before == self.everything(),
            "refusal by {rule} changed something"
        );
    }
}

#[test]
fn rescue_to_admission_to_publication_on_one_machine() {
    let w = world();
    let g = json(&ok(w.host(&w.pass, &["genesis"])));
    let root_key = g["root_key"].as_str().unwrap().to_string();
    w.refused("genesis.once", || w.host(&w.pass, &["genesis"]));
    w.refused("genesis.once", || {
        run(offline()
            .args(["init-asl-host", "--root"])
            .arg(&w.root)
            .arg("--passphrase-file")
            .arg(&w.pass))
    });

    // The rescue node: intake of an old tree, two signed processing steps, one unsigned.
    let old = w._tmp.path().join("old-laptop");
    std::fs::create_dir_all(old.join("data")).unwrap();
    std::fs::write(old.join("notes.txt"), "remember the milk\nand the bread\n").unwrap();
    std::fs::write(old.join("data/values.txt"), "3\n1\n2\n").unwrap();
    ok(w.rescue(&["init", "--domain-id", "42"]));
    let i = json(&ok(w.rescue(&["intake", old.to_str().unwrap()])));
    assert!(i["path"].as_str().unwrap().ends_with("work/intake-1"));
    let step = |args: &[&str]| {
        json(&ok(w.rescue(args)))["receipt"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let upper = step(&[
        "run",
        "--input",
        "intake-1",
        "--output",
        "upper.txt",
        "--",
        "sh",
        "-c",
        "tr a-z A-Z < intake-1/notes.txt > upper.txt",
    ]);
    let count = step(&[
        "run",
        "--input",
        "upper.txt",
        "--output",
        "count.txt",
        "--",
        "sh",
        "-c",
        "wc -l < upper.txt > count.txt",
    ]);
    let draft = step(&[
        "run",
        "--no-sign",
        "--input",
        "intake-1",
        "--output",
        "draft.txt",
        "--",
        "sh",
        "-c",
        "sort intake-1/data/values.txt > draft.txt",
    ]);

    // Minting and admission through the media.
    ok(w.rescue(&["mint", "--media", w.usb.to_str().unwrap()]));
    assert!(w.usb.join("asl-admission/request.json").exists());
    let a = json(&ok(
        w.host(&w.pass, &["admit", "--media", w.usb.to_str().unwrap()])
    ));
    assert_eq!(a["decision"], "ACCEPTED", "{a}");
    w.refused("dap.replay", || {
        w.host(&w.pass, &["admit", "--media", w.usb.to_str().unwrap()])
    });
    w.refused("passphrase", || {
        w.host(
            &w.wrong,
            &["countersign", "--media", w.usb.to_str().unwrap()],
        )
    });
    let c = json(&ok(w.host(
        &w.pass,
        &["countersign", "--media", w.usb.to_str().unwrap()],
    )));
    assert_eq!(c["countersigned"].as_array().unwrap().len(), 2, "{c}");
    ok(w.rescue(&[
        "accept",
        "--media",
        w.usb.to_str().unwrap(),
        "--authority-root",
        &root_key,
    ]));

    // The node's receipts validate against the admitted DAM; the unsigned one does not.
    let decision = w.usb.join("asl-admission/decision.json");
    let personal = w.node.join("personal");
    let verify = |r: &str| {
        run(asl()
            .args(["asl-capture", "--json", "--store"])
            .arg(&personal)
            .args(["verify", r, "--dam"])
            .arg(&decision))
    };
    for r in [&upper, &count] {
        let o = ok(verify(r));
        let v = json(&o);
        assert_eq!(v["dam"]["authoritative"], true, "{v}");
        // The node's signature holds; the authority's countersignature is by a key of the
        // authority's DAM, not of this one, and is named as such.
        let sigs = v["dam"]["signatures"].as_array().unwrap();
        assert_eq!(sigs.len(), 2, "{v}");
        assert_eq!(sigs[0]["ok"], true, "{v}");
        assert_eq!(sigs[1]["rule"], "per.key-in-dam", "{v}");
    }
    let o = verify(&draft);
    assert_eq!(o.status.code(), Some(3), "{}", transcript(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("per.signed"),
        "{}",
        transcript(&o)
    );

    // Publication: the signed steps' outputs go to common; the unsigned step's and the
    // untrusted intake's are refused by rule.
    let common = w.root.join("var/lib/asl/common");
    let o = w.rescue(&["publish", "--common", common.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", transcript(&o));
    let p = json(&o);
    let mut published: Vec<(&str, &str)> = p["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x[0].as_str().unwrap(), x[1].as_str().unwrap()))
        .collect();
    published.sort();
    assert_eq!(
        published.iter().map(|x| x.0).collect::<Vec<_>>(),
        ["count.txt", "upper.txt"],
        "{p}"
    );
    let refused: Vec<(&str, &str)> = p["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["path"].as_str().unwrap(), x["rule"].as_str().unwrap()))
        .collect();
    assert!(
        refused.contains(&("draft.txt", "publication.require_signature")),
        "{p}"
    );
    assert!(
        refused.contains(&("intake-1", "publication.require_signature")),
        "{p}"
    );
    // What was published is in the common store, and the store checks out.
    let id = published[1].1;
    let cat = ok(run(asl()
        .args(["asl-debug", "--store"])
        .arg(&common)
        .args(["artifact", id])));
    assert_eq!(cat.stdout, b"REMEMBER THE MILK\nAND THE BREAD\n");
    ok(run(asl()
        .args(["asl-admin", "--store"])
        .arg(&common)
        .arg("verify")));

    let s = json(&ok(w.rescue(&["status"])));
    assert_eq!(s["stage"], "publication", "{s}");
    assert!(
        s["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["done"] == true),
        "{s}"
    );
    // The authority's own store and records audit clean.
    ok(w.host(&w.pass, &["audit"]));
}

#[test]
fn the_authority_refuses_while_a_network_interface_is_up() {
    let w = world();
    let before = w.everything();
    let script = format!(
        "ip link add asltest0 type veth peer name asltest1 && ip link set asltest0 up && exec {} asl-auth-host --root {} --passphrase-file {} genesis",
        env!("CARGO_BIN_EXE_asl"),
        w.root.display(),
        w.pass.display()
    );
    let o = run(Command::new("unshare").args(["-n", "sh", "-c", &script]));
    assert_eq!(o.status.code(), Some(1), "{}", transcript(&o));
    let err = text(&o).1;
    assert!(
        err.contains("offline.network") && err.contains("asltest0"),
        "{err}"
    );
    assert!(
        before == w.everything(),
        "the refused genesis changed something"
    );
    // The explicit override acts.
    let script = format!("{script} --allow-network");
    let o = run(Command::new("unshare").args(["-n", "sh", "-c", &script]));
    assert!(o.status.success(), "{}", transcript(&o));
}

#[test]
fn a_config_error_names_file_and_line() {
    let w = world();
    let cfg = w.root.join("etc/asl-auth-host/config.yaml");
    std::fs::write(
        &cfg,
        CONFIG.replace("type: \"courtesy\"", "type: \"public\""),
    )
    .unwrap();
    let o = run(offline()
        .args(["asl-auth-host", "--root"])
        .arg(&w.root)
        .arg("check-config"));
    assert_eq!(o.status.code(), Some(2), "{}", transcript(&o));
    assert!(
        text(&o).1.contains(&format!("{}:8:", cfg.display())),
        "{}",
        transcript(&o)
    );
    std::fs::write(
        &cfg,
        CONFIG.replace(
            "  mode: \"admission\"\n",
            "  mode: \"admission\"\n  colour: blue\n",
        ),
    )
    .unwrap();
    let o = ok(run(offline()
        .args(["asl-auth-host", "--root"])
        .arg(&w.root)
        .arg("check-config")));
    assert!(
        text(&o)
            .1
            .contains(&format!("{}:5: unknown field host.colour", cfg.display())),
        "{}",
        transcript(&o)
    );
}

#[test]
fn genesis_with_fixed_entropy_gives_identical_ids_on_two_runs() {
    let (a, b) = (world(), world());
    let seed = "0101010101010101010101010101010101010101010101010101010101010101";
    let ga = json(&ok(a.host(&a.pass, &["--fixed-entropy", seed, "genesis"])));
    let gb = json(&ok(b.host(&b.pass, &["--fixed-entropy", seed, "genesis"])));
    for field in [
        "root_key",
        "root_public",
        "root_sealed",
        "domains",
        "state",
        "receipt",
        "policy_hash",
    ] {
        assert_eq!(ga[field], gb[field], "{field} differs");
    }
    // The same bytes on disk too: the sealed root key and the DAM exports.
    let file = |w: &World, p: &str| std::fs::read(w.root.join(p)).unwrap();
    let sealed = "var/lib/asl-auth-host/offline/root.priv.enc";
    assert_eq!(file(&a, sealed), file(&b, sealed));
    assert_eq!(
        file(&a, "etc/asl-auth-host/policy.hash"),
        file(&b, "etc/asl-auth-host/policy.hash")
    );
}
