//! in-toto interoperability against the real tools: keys made by `openssl` and by
//! securesystemslib imported with `asl-key import` and exported for in-toto; links exported by
//! `asl-capture` compared with what the reference `in-toto-run` records for the same paths and
//! command, and a two-step supply chain verified by the reference `in-toto-verify` under a
//! layout signed by an owner key.

mod common;

use std::path::Path;
use std::process::Command;

use common::{asl, run, transcript};
use serde_json::Value;

/// Fails (never skips) when the reference tools are missing: CI installs them from
/// `scripts/deps/prov.apt` and `scripts/deps/prov.pip`.
fn require_reference_tools() {
    let python = Command::new("python3")
        .args(["-c", "import in_toto, securesystemslib.signer"])
        .output();
    assert!(
        python.map(|o| o.status.success()).unwrap_or(false),
        "python3 with in-toto and securesystemslib is required: pip install -r scripts/deps/prov.pip"
    );
    for tool in ["in-toto-run", "in-toto-verify", "openssl"] {
        let o = Command::new(tool).arg("--version").output();
        assert!(
            o.is_ok(),
            "{tool} is required (scripts/deps/prov.apt, scripts/deps/prov.pip)"
        );
    }
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}", transcript(&o));
    o
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", transcript(o)))
}

fn python(dir: &Path, script: &str, args: &[&str]) -> std::process::Output {
    run(Command::new("python3")
        .current_dir(dir)
        .args(["-c", script])
        .args(args))
}

fn openssl_key(dir: &Path, name: &str) {
    ok(run(Command::new("openssl").current_dir(dir).args([
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        name,
    ])));
}

/// `asl-key import SOURCE FILE --json`: the key id.
fn import(dir: &Path, source: &str, file: &str) -> String {
    let o = ok(run(asl()
        .current_dir(dir)
        .args(["key", "import", "--json", source, file])));
    json_of(&o)["keyid"].as_str().unwrap().to_string()
}

fn export_public(dir: &Path, file: &str, format: &str) -> String {
    let o = ok(run(asl()
        .current_dir(dir)
        .args(["key", "export", "--public", "--format", format, file])));
    String::from_utf8(o.stdout).unwrap()
}

/// Writes a key made by securesystemslib in its two forms: PKCS#8 PEM (`CryptoSigner`) and
/// the JSON key dictionary with the private key; prints the key id and the public key
/// dictionary securesystemslib itself gives.
const SSLIB_KEY: &str = r#"
import copy, json, sys
from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner
signer = CryptoSigner.generate_ed25519()
open(sys.argv[1], "wb").write(signer.private_bytes)
raw = signer._private_key.private_bytes(
    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
legacy = copy.deepcopy(signer.public_key.to_dict())
legacy["keyid_hash_algorithms"] = ["sha256", "sha512"]
legacy["keyval"]["private"] = raw.hex()
open(sys.argv[2], "w").write(json.dumps(legacy))
print(json.dumps({"keyid": signer.public_key.keyid, "public": signer.public_key.to_dict()}))
"#;

#[test]
fn keys_made_by_openssl_and_securesystemslib_are_imported_and_exported_as_in_toto_reads_them() {
    require_reference_tools();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();

    // openssl: the key id is securesystemslib's for the same key, the public PEM is
    // openssl's own byte for byte.
    openssl_key(w, "o.pem");
    let keyid = import(w, "o.pem", "o.key");
    let o = ok(python(
        w,
        "import sys\nfrom cryptography.hazmat.primitives.serialization import load_pem_private_key\n\
         from securesystemslib.signer import CryptoSigner\n\
         print(CryptoSigner(load_pem_private_key(open(sys.argv[1], 'rb').read(), None)).public_key.keyid)",
        &["o.pem"],
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), keyid);
    let o = ok(run(Command::new("openssl")
        .current_dir(w)
        .args(["pkey", "-in", "o.pem", "-pubout"])));
    assert_eq!(
        export_public(w, "o.key", "pem"),
        String::from_utf8(o.stdout).unwrap()
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(w.join("o.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "an imported key file is private");

    // securesystemslib, both forms: the same key id as securesystemslib gives, and the
    // exported dictionary is securesystemslib's public key plus its key id.
    let o = ok(python(w, SSLIB_KEY, &["s.pem", "s.json"]));
    let sslib = json_of(&o);
    for (source, file) in [("s.pem", "s-pem.key"), ("s.json", "s-json.key")] {
        assert_eq!(import(w, source, file), sslib["keyid"], "{source}");
        let mut exported: Value =
            serde_json::from_str(&export_public(w, file, "securesystemslib")).unwrap();
        let id = exported.as_object_mut().unwrap().remove("keyid").unwrap();
        assert_eq!(id, sslib["keyid"]);
        assert_eq!(exported, sslib["public"], "{source}");
    }

    // What cannot be imported is refused naming the file, and nothing is written.
    std::fs::write(w.join("package.txt"), "not a key\n").unwrap();
    ok(run(Command::new("openssl").current_dir(w).args([
        "genpkey",
        "-algorithm",
        "ed25519",
        "-aes-128-cbc",
        "-pass",
        "pass:secret",
        "-out",
        "enc.pem",
    ])));
    let o = ok(run(Command::new("openssl").current_dir(w).args([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ])));
    std::fs::write(w.join("ec.pem"), o.stdout).unwrap();
    for (source, needle) in [
        ("enc.pem", "encrypted"),
        ("ec.pem", "not ed25519"),
        ("o.key", "already an asl key file"),
        ("package.txt", "neither PEM nor JSON"),
    ] {
        let o = run(asl()
            .current_dir(w)
            .args(["key", "import", source, "new.key"]));
        assert_eq!(o.status.code(), Some(1), "{}", transcript(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(source) && err.contains(needle), "{err}");
        assert!(!w.join("new.key").exists());
    }
    // An existing key file is never overwritten.
    let o = run(asl()
        .current_dir(w)
        .args(["key", "import", "s.pem", "o.key"]));
    assert_eq!(o.status.code(), Some(1), "{}", transcript(&o));
    assert_eq!(import(w, "o.pem", "o2.key"), keyid);
}

fn init_store(store: &Path) {
    ok(run(asl().args(["init-store", "--store"]).arg(store)));
}

/// Captures a step with `--outdir per/NAME` and exports it as a link signed with `key`;
/// the link as parsed.
fn capture_and_export(w: &Path, outdir: &str, args: &[&str], key: &str, link: &str) -> Value {
    let o = run(asl()
        .current_dir(w)
        .args([
            "capture", "-q", "--trace", "none", "--store", "store", "--outdir",
        ])
        .arg(format!("per/{outdir}"))
        .args(args));
    assert!(o.status.code().is_some(), "{}", transcript(&o));
    let receipt = std::fs::read_to_string(w.join("per").join(outdir).join("receipt.ref")).unwrap();
    ok(run(asl().current_dir(w).args([
        "capture",
        "--store",
        "store",
        "export",
        receipt.trim(),
        "--format",
        "in-toto-link",
        "--sign",
        key,
        "--out",
        link,
    ])));
    serde_json::from_slice(&std::fs::read(w.join(link)).unwrap()).unwrap()
}

/// The only `NAME.*.link` file `in-toto-run` wrote in `dir`, parsed.
fn in_toto_run_link(dir: &Path, name: &str) -> Value {
    let mut found = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let f = p.file_name().unwrap().to_string_lossy();
            f.starts_with(&format!("{name}.")) && f.ends_with(".link")
        })
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "{found:?}");
    serde_json::from_slice(&std::fs::read(found.remove(0)).unwrap()).unwrap()
}

/// A store and an imported openssl key `k.key` (its PEM `k.pem`) in a fresh directory, and
/// `ref/` for what `in-toto-run` writes.
fn workdir() -> tempfile::TempDir {
    require_reference_tools();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    init_store(&w.join("store"));
    openssl_key(w, "k.pem");
    import(w, "k.pem", "k.key");
    std::fs::create_dir(w.join("ref")).unwrap();
    dir
}

/// stdout and stderr, with a carriage return Python's text mode reads as a newline, and a
/// failing exit: the exported byproducts are what `in-toto-run --record-streams` records for
/// the same command.
#[test]
fn stdout_stderr_and_the_return_value_are_byproducts_as_in_toto_run_records_them() {
    let dir = workdir();
    let w = dir.path();
    let noisy = "printf 'out\\r\\nline\\n'; printf 'err\\n' >&2; exit 3";
    let captured = capture_and_export(w, "noisy", &["--cmd", noisy], "k.key", "noisy.link");
    let o = run(Command::new("in-toto-run").current_dir(w).args([
        "-n",
        "noisy",
        "--signing-key",
        "k.pem",
        "--metadata-directory",
        "ref",
        "--record-streams",
        "--",
        "/bin/sh",
        "-c",
        noisy,
    ]));
    assert!(o.status.code().is_some(), "{}", transcript(&o));
    let reference = in_toto_run_link(&w.join("ref"), "noisy");
    assert_eq!(
        captured["signed"]["byproducts"],
        reference["signed"]["byproducts"]
    );
    assert_eq!(captured["signed"]["byproducts"]["return-value"], 3);
    assert_eq!(captured["signed"]["byproducts"]["stdout"], "out\nline\n");
    // Without --name, a `--cmd` step is named after the command's first word.
    assert_eq!(captured["signed"]["name"], "printf");
}

/// A tree with a link to a file, a relative link up and across, a link to a directory, a link
/// through that one, and a dangling link: `in-toto-run` records the same names and digests as
/// the exported links, as products of the step that made the tree and as materials of the
/// step that read it.
#[test]
fn symlinks_in_a_declared_tree_are_recorded_as_in_toto_run_records_them() {
    let dir = workdir();
    let w = dir.path();
    let make_tree = "mkdir -p tree/sub/deep && echo a > tree/a.txt && echo b > tree/sub/deep/b.txt \
        && ln -s a.txt tree/to-a && ln -s ../to-a tree/sub/up && ln -s sub tree/dir \
        && ln -s dir/deep/b.txt tree/through-dir && ln -s missing tree/dangling";
    let made = capture_and_export(
        w,
        "make",
        &["--output", "tree", "--cmd", make_tree],
        "k.key",
        "make.link",
    );
    let read = capture_and_export(
        w,
        "read",
        &[
            "--artifact-inputs",
            "tree",
            "--output",
            "list.txt",
            "--",
            "sh",
            "-c",
            "find tree | sort > list.txt",
        ],
        "k.key",
        "read.link",
    );
    ok(run(Command::new("in-toto-run").current_dir(w).args([
        "-n",
        "tree",
        "--signing-key",
        "k.pem",
        "--metadata-directory",
        "ref",
        "-m",
        "tree",
        "-x",
    ])));
    let reference = in_toto_run_link(&w.join("ref"), "tree");
    let recorded = &reference["signed"]["materials"];
    for name in [
        "tree/to-a",
        "tree/sub/up",
        "tree/dir/deep/b.txt",
        "tree/through-dir",
    ] {
        assert!(
            made["signed"]["products"].get(name).is_some(),
            "{name} missing from {}",
            made["signed"]["products"]
        );
    }
    assert_eq!(&made["signed"]["products"], recorded);
    assert_eq!(&read["signed"]["materials"], recorded);
}

/// Writes `root.layout` for the two steps, signed with the owner's PKCS#8 key: `package.sh`
/// (by the openssl key) must create both files of the tree, the symlink included; `tar` (by
/// the securesystemslib key) must take exactly those as materials; the inspection requires
/// the final product to be the one `tar` recorded.
const LAYOUT: &str = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from in_toto.models.layout import Inspection, Layout, Step
from in_toto.models.metadata import Metablock
owner, packager, archiver = sys.argv[1:4]
layout = Layout()
layout.set_relative_expiration(days=1)
k1 = layout.add_functionary_key(json.load(open(packager)))
k2 = layout.add_functionary_key(json.load(open(archiver)))
package = Step(name="package.sh")
package.pubkeys = [k1["keyid"]]
package.expected_materials = [["ALLOW", "src/*"], ["DISALLOW", "*"]]
package.expected_products = [
    ["REQUIRE", "tree/app.txt"], ["REQUIRE", "tree/current.txt"],
    ["CREATE", "tree/*"], ["DISALLOW", "*"]]
archive = Step(name="tar")
archive.pubkeys = [k2["keyid"]]
archive.expected_materials = [
    ["REQUIRE", "tree/current.txt"],
    ["MATCH", "tree/*", "WITH", "PRODUCTS", "FROM", "package.sh"], ["DISALLOW", "*"]]
archive.expected_products = [["CREATE", "app.tar"], ["DISALLOW", "*"]]
check = Inspection(name="check")
check.set_run_from_string("true")
check.expected_materials = [
    ["MATCH", "app.tar", "WITH", "PRODUCTS", "FROM", "tar"],
    ["ALLOW", "*.link"], ["ALLOW", "root.layout"], ["ALLOW", "owner.pub"], ["DISALLOW", "*"]]
layout.steps = [package, archive]
layout.inspect = [check]
block = Metablock(signed=layout)
block.create_signature(CryptoSigner(load_pem_private_key(open(owner, "rb").read(), None)))
block.dump("root.layout")
"#;

#[test]
fn a_layout_signed_by_an_owner_key_verifies_two_captured_steps_and_a_tampered_product_fails() {
    require_reference_tools();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    init_store(&w.join("store"));
    // Three keys from outside: the owner's and the packager's by openssl, the archiver's by
    // securesystemslib.
    openssl_key(w, "owner.pem");
    import(w, "owner.pem", "owner.key");
    openssl_key(w, "packager.pem");
    let packager = import(w, "packager.pem", "packager.key");
    ok(python(w, SSLIB_KEY, &["archiver.pem", "archiver.json"]));
    let archiver = import(w, "archiver.json", "archiver.key");

    std::fs::create_dir(w.join("src")).unwrap();
    std::fs::write(w.join("src/app.txt"), "the application\n").unwrap();
    std::fs::write(
        w.join("package.sh"),
        "#!/bin/sh\nmkdir -p tree && cp src/app.txt tree/ && ln -s app.txt tree/current.txt\n",
    )
    .unwrap();
    std::fs::set_permissions(
        w.join("package.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let verify = w.join("verify");
    std::fs::create_dir(&verify).unwrap();
    let link1 = format!("verify/package.sh.{}.link", &packager[..8]);
    let step1 = capture_and_export(
        w,
        "package",
        &[
            "--artifact-inputs",
            "src",
            "--output",
            "tree",
            "--cmd",
            "./package.sh",
        ],
        "packager.key",
        &link1,
    );
    assert_eq!(step1["signed"]["name"], "package.sh", "default step name");
    let link2 = format!("verify/tar.{}.link", &archiver[..8]);
    let step2 = capture_and_export(
        w,
        "archive",
        &[
            "--artifact-inputs",
            "tree",
            "--output",
            "app.tar",
            "--cmd",
            "tar --sort=name --mtime=@0 --owner=0 --group=0 -cf app.tar tree",
        ],
        "archiver.key",
        &link2,
    );
    assert_eq!(step2["signed"]["name"], "tar", "default step name");

    std::fs::write(
        verify.join("owner.pub"),
        export_public(w, "owner.key", "pem"),
    )
    .unwrap();
    for (key, out) in [
        ("packager.key", "packager.pub.json"),
        ("archiver.key", "archiver.pub.json"),
    ] {
        std::fs::write(w.join(out), export_public(w, key, "securesystemslib")).unwrap();
    }
    let o = python(
        &verify,
        LAYOUT,
        &[
            "../owner.pem",
            "../packager.pub.json",
            "../archiver.pub.json",
        ],
    );
    assert!(o.status.success(), "{}", transcript(&o));
    std::fs::copy(w.join("app.tar"), verify.join("app.tar")).unwrap();

    let in_toto_verify = || {
        run(Command::new("in-toto-verify").current_dir(&verify).args([
            "--layout",
            "root.layout",
            "--verification-keys",
            "owner.pub",
            "-v",
        ]))
    };
    let o = in_toto_verify();
    assert!(
        o.status.success(),
        "in-toto-verify refused: {}",
        transcript(&o)
    );

    // A tampered final product is caught.
    let mut tar = std::fs::read(verify.join("app.tar")).unwrap();
    tar[600] ^= 1;
    std::fs::write(verify.join("app.tar"), &tar).unwrap();
    let o = in_toto_verify();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a tampered product verified: {}",
        transcript(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("app.tar"),
        "{}",
        transcript(&o)
    );
}
