//! Helpers of the asl-auth integration tests: a host root with config.yaml, a media
//! directory, and a digest of a directory tree for "nothing changed" checks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use asl_auth::AuthHost;

pub const PASS: &[u8] = b"correct horse battery staple";

/// The example config of docs/AUTHORITY.md.
pub fn config_text() -> String {
    include_str!("../../../../docs/examples/auth-host-config.yaml").to_string()
}

/// A host root under `root` with the sample config.
pub fn host(root: &Path) -> AuthHost {
    let cfg = root.join("etc/asl-auth-host/config.yaml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, config_text()).unwrap();
    AuthHost::open(root, &cfg).unwrap()
}

/// Every file and directory under `dir` with the bytes of the files: equal before and after
/// means nothing changed.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), vec![]);
                stack.push(p);
            } else if ft.is_file() {
                out.insert(rel, std::fs::read(&p).unwrap());
            } else {
                out.insert(rel, b"<other>".to_vec());
            }
        }
    }
    out
}
