//! The committed man pages are generated from `--help`; this keeps them from drifting.

use std::path::Path;

#[test]
fn committed_man_pages_match_the_tools_help() {
    let out = tempfile::tempdir().unwrap();
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_asl"))
        .args(["man", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/man");
    let mut stale = Vec::new();
    for e in std::fs::read_dir(out.path()).unwrap() {
        let e = e.unwrap();
        let fresh = std::fs::read(e.path()).unwrap();
        let old = std::fs::read(committed.join(e.file_name())).unwrap_or_default();
        if fresh != old {
            stale.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    assert!(
        stale.is_empty(),
        "docs/man is out of date for {stale:?}; regenerate with `asl man --out docs/man`"
    );
}

#[test]
fn every_tool_has_a_page_in_docs() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_asl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let mut missing = Vec::new();
    for line in help.lines().filter(|l| l.starts_with("  ")) {
        let Some(tool) = line.split_whitespace().next() else {
            continue;
        };
        // Tools documented together with a sibling, and the binary's own helpers.
        let page = match tool {
            "overlay-go" | "overlay-stop" | "overlay-list" => tool,
            "asl-why" | "asl-used-by" | "asl-key" => "asl-capture",
            "asl-install-links" | "asl-man" => continue,
            t => t,
        };
        if !docs.join(format!("{page}.md")).exists() {
            missing.push(tool.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "tools without a page in docs/: {missing:?}"
    );
}

#[test]
fn the_authority_config_example_in_the_docs_is_the_file_the_tests_use() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let page = std::fs::read_to_string(docs.join("AUTHORITY.md")).unwrap();
    let file = std::fs::read_to_string(docs.join("examples/auth-host-config.yaml")).unwrap();
    assert!(
        page.contains(&format!("```yaml\n{file}```\n")),
        "docs/AUTHORITY.md's example config differs from docs/examples/auth-host-config.yaml"
    );
}
