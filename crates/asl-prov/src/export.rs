//! Exports for the in-toto ecosystem.
//!
//! * [`slsa_envelope`]: an in-toto v1 Statement whose predicate is SLSA Provenance v1,
//!   wrapped in a DSSE envelope (signed over the DSSE pre-authentication encoding).
//! * [`intoto_link`]: an in-toto v0.9 link (Metablock), signed over securesystemslib's
//!   canonical JSON — what `in-toto-verify` and the Python API load.
//!
//! Subjects, materials and products carry SHA-256 (what in-toto checks) computed from the
//! stored artifacts; directory trees are expanded to their files. A link records what
//! `in-toto-run` would have recorded for the same declared paths: symlinks to files under
//! the symlink's own path with the digest of the file they lead to, stdout and stderr as
//! byproducts beside the return value.

use std::collections::BTreeMap;

use asl_store::{ArtifactRead, Reference, Store};
use serde_json::{Value, json};
use sha2::Digest;

use crate::error::ProvError;
use crate::receipt::{FileRef, Receipt, parse_ref};
use crate::sign::Key;
use crate::stored::TreeNode;

pub const BUILD_TYPE: &str = "https://asl.invalid/asl-capture/v1";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

fn sha256_of(reader: &dyn ArtifactRead, r: &Reference) -> Result<String, ProvError> {
    struct H(sha2::Sha256);
    impl std::io::Write for H {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = H(sha2::Sha256::new());
    reader.read_to(r, &mut h)?;
    Ok(hex::encode(h.0.finalize()))
}

/// path → sha256 for a declared file, or for every file of a declared tree.
fn files_of(
    reader: &dyn ArtifactRead,
    f: &FileRef,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ProvError> {
    let r = parse_ref(&f.reference).map_err(ProvError::Fs)?;
    if f.kind != "tree" {
        out.insert(f.path.clone(), sha256_of(reader, &r)?);
        return Ok(());
    }
    let prefix = f.path.trim_end_matches('/');
    for (name, c) in crate::stored::tree_files(reader, r)? {
        out.insert(format!("{prefix}/{name}"), sha256_of(reader, &c)?);
    }
    Ok(())
}

fn load(store: &Store, r: &Reference) -> Result<Receipt, ProvError> {
    Receipt::decode(&store.reader().read_all(r)?).map_err(|e| ProvError::Decode {
        what: r.to_string(),
        kind: "receipt",
        reason: e,
    })
}

/// The in-toto Statement with the SLSA v1 predicate.
pub fn slsa_statement(store: &Store, r: &Reference) -> Result<Value, ProvError> {
    let receipt = load(store, r)?;
    let reader = store.reader();
    let mut subjects = BTreeMap::new();
    for o in &receipt.outputs {
        files_of(&reader, o, &mut subjects)?;
    }
    let mut deps = BTreeMap::new();
    for i in &receipt.action.inputs {
        files_of(&reader, i, &mut deps)?;
    }
    let subject: Vec<Value> = subjects
        .iter()
        .map(|(n, d)| json!({"name": n, "digest": {"sha256": d}}))
        .collect();
    let resolved: Vec<Value> = deps
        .iter()
        .map(|(n, d)| json!({"name": n, "digest": {"sha256": d}}))
        .collect();
    let mut byproducts = Vec::new();
    if let Some(run) = &receipt.run {
        for (name, b) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            let br = parse_ref(&b.reference).map_err(ProvError::Fs)?;
            byproducts.push(json!({"name": name, "digest": {"sha256": sha256_of(&reader, &br)?}}));
        }
    }
    Ok(json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subject,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "argv": receipt.action.argv,
                    "cwd": receipt.action.cwd,
                    "env": receipt.action.env,
                },
                "internalParameters": {
                    "actionDigest": receipt.action_digest,
                    "trace": receipt.observed.mode,
                    "undeclaredInputs": receipt.observed.undeclared_inputs,
                },
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {
                    "id": format!("asl-capture://{}", receipt.context.host),
                    "version": {"asl-capture": receipt.tool.version},
                },
                "metadata": {
                    "invocationId": r.to_string(),
                    "startedOn": receipt.timing.started_at,
                    "finishedOn": receipt.timing.finished_at,
                },
                "byproducts": byproducts,
            }
        }
    }))
}

/// The Statement in a DSSE envelope, signed when `key` is given.
pub fn slsa_envelope(store: &Store, r: &Reference, key: Option<&Key>) -> Result<Value, ProvError> {
    let statement = slsa_statement(store, r)?;
    let payload = serde_json::to_vec(&statement).map_err(|e| ProvError::Fs(e.to_string()))?;
    let signatures: Vec<Value> = key
        .map(|k| {
            let sig = hex::decode(k.sign(&pae(PAYLOAD_TYPE, &payload))).unwrap_or_default();
            json!({"keyid": k.keyid(), "sig": base64(&sig)})
        })
        .into_iter()
        .collect();
    Ok(json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": base64(&payload),
        "signatures": signatures,
    }))
}

/// The declared paths of one side of a step (its inputs, or its outputs) as stored: every
/// file, directory and symlink under its absolute, lexically normalised path.
///
/// Listed as `in-toto-run` walks the same paths (`os.walk` following symlinked directories):
/// a symlink to a file is recorded under its own name with the file's digest, a symlink to a
/// directory is walked under its own name, a dangling one is left out. A symlink is resolved
/// as the kernel would resolve it in the captured tree, but only through what was declared on
/// the same side: the store holds nothing else, so a link leading out of it is left out, and
/// a directory link leading back into its own ancestry (a loop) is not walked again.
struct Declared {
    nodes: BTreeMap<String, TreeNode>,
    /// (name in the link, absolute path) of every declared path, in declaration order.
    roots: Vec<(String, String)>,
}

/// Symlinks followed in one resolution before giving up, as the kernel's MAXSYMLINKS.
const MAX_SYMLINK_HOPS: usize = 40;

/// `path` made absolute against `cwd` and normalised lexically (`.`, `..`, repeated `/`).
fn absolute(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Declared {
    fn load(reader: &dyn ArtifactRead, cwd: &str, refs: &[FileRef]) -> Result<Self, ProvError> {
        let mut d = Declared {
            nodes: BTreeMap::new(),
            roots: Vec::new(),
        };
        for f in refs {
            let r = parse_ref(&f.reference).map_err(ProvError::Fs)?;
            let root = absolute(cwd, &f.path);
            d.roots.push((normalised_name(&f.path), root.clone()));
            if f.kind != "tree" {
                d.nodes.insert(root, TreeNode::File(r));
                continue;
            }
            d.nodes.insert(root.clone(), TreeNode::Dir);
            let base = root.trim_end_matches('/');
            for (name, node) in crate::stored::tree_nodes(reader, r)? {
                d.nodes.insert(format!("{base}/{name}"), node);
            }
        }
        Ok(d)
    }

    /// The absolute path a symlink at `link` with `target` leads to, when it leads to a
    /// declared file or directory. Dangling links, loops and paths outside what was declared
    /// give `None`.
    fn resolve(&self, link: &str, target: &str) -> Option<String> {
        use std::collections::VecDeque;
        // Components resolved so far (no symlinks among them), and those still to walk.
        let mut current: Vec<String> = link
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        current.pop();
        let mut pending = VecDeque::new();
        let follow = |current: &mut Vec<String>, pending: &mut VecDeque<String>, t: &str| {
            if t.starts_with('/') {
                current.clear();
            }
            for c in t.split('/').rev() {
                pending.push_front(c.to_string());
            }
        };
        follow(&mut current, &mut pending, target);
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => current.push(c),
            }
            match self.nodes.get(&format!("/{}", current.join("/"))) {
                Some(TreeNode::Symlink(t)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return None;
                    }
                    current.pop();
                    follow(&mut current, &mut pending, t);
                }
                // A file with more path after it: ENOTDIR.
                Some(TreeNode::File(_)) if !pending.is_empty() => return None,
                _ => {}
            }
        }
        let path = format!("/{}", current.join("/"));
        self.nodes.contains_key(&path).then_some(path)
    }

    /// The entries directly in the directory at `dir`.
    fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a TreeNode)> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(&prefix))
            .filter(move |(p, _)| !p[dir.trim_end_matches('/').len() + 1..].contains('/'))
    }

    /// Records the files under the directory at `dir`, named under `shown`; `ancestry` holds
    /// the directories being walked, so that a link back into them is not walked again.
    fn walk<'a>(
        &'a self,
        dir: &str,
        shown: &str,
        ancestry: &mut Vec<String>,
        out: &mut BTreeMap<String, &'a Reference>,
    ) {
        for (path, node) in self.children(dir) {
            let name = &path[path.rfind('/').map_or(0, |i| i + 1)..];
            let shown = match shown {
                "." => name.to_string(),
                s => format!("{}/{name}", s.trim_end_matches('/')),
            };
            let (path, node) = match node {
                TreeNode::Symlink(t) => match self.resolve(path, t) {
                    Some(p) => match self.nodes.get_key_value(&p) {
                        Some(found) => found,
                        None => continue,
                    },
                    None => continue,
                },
                _ => (path, node),
            };
            match node {
                TreeNode::File(r) => {
                    out.insert(shown, r);
                }
                TreeNode::Dir if !ancestry.contains(path) => {
                    ancestry.push(path.clone());
                    self.walk(path, &shown, ancestry, out);
                    ancestry.pop();
                }
                _ => {}
            }
        }
    }

    /// name → SHA-256, as `in-toto-run` records the same paths.
    fn digests(&self, reader: &dyn ArtifactRead) -> Result<BTreeMap<String, String>, ProvError> {
        let mut files = BTreeMap::new();
        for (shown, root) in &self.roots {
            match self.nodes.get(root) {
                Some(TreeNode::File(r)) => {
                    files.insert(shown.clone(), r);
                }
                Some(TreeNode::Dir) => self.walk(root, shown, &mut vec![root.clone()], &mut files),
                _ => {}
            }
        }
        let mut out = BTreeMap::new();
        for (name, r) in files {
            out.insert(name, sha256_of(reader, r)?);
        }
        Ok(out)
    }
}

/// A declared path as `in-toto-run` names it: `os.path.normpath` of what was given.
fn normalised_name(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let body = parts.join("/");
    match (path.starts_with('/'), body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// The step name of a link exported without `--name`: the basename of the program. For a
/// `--cmd` capture (`/bin/sh -c SCRIPT`) that is the first word of the script, after any
/// `NAME=value` assignments; a word ends at a blank or at one of `;&|<>()`. `step` when
/// there is no such word.
pub fn default_step_name(argv: &[String]) -> String {
    let program = match argv {
        [sh, c, script, ..] if sh == "/bin/sh" && c == "-c" => script
            .split(|ch: char| ch.is_whitespace() || ";&|<>()".contains(ch))
            .filter(|w| !w.is_empty())
            .find(|w| !is_assignment(w))
            .unwrap_or_default(),
        [program, ..] => program.as_str(),
        [] => "",
    };
    match program.rsplit('/').next() {
        Some(base) if !base.is_empty() => base.to_string(),
        _ => "step".into(),
    }
}

/// `NAME=value` in shell terms: a name of letters, digits and `_`, not starting with a digit.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A captured stream as `in-toto-run` records it: text, with `\r\n` and `\r` read as `\n`
/// (Python's universal newlines); bytes that are not UTF-8 become U+FFFD.
fn stream_text(
    reader: &dyn ArtifactRead,
    blob: &crate::receipt::Blob,
) -> Result<String, ProvError> {
    let r = parse_ref(&blob.reference).map_err(ProvError::Fs)?;
    let bytes = reader.read_all(&r)?;
    Ok(String::from_utf8_lossy(&bytes)
        .replace("\r\n", "\n")
        .replace('\r', "\n"))
}

/// An in-toto v0.9 link for the step.
pub fn intoto_link(
    store: &Store,
    r: &Reference,
    key: Option<&Key>,
    name: Option<&str>,
) -> Result<Value, ProvError> {
    let receipt = load(store, r)?;
    let reader = store.reader();
    let cwd = receipt.action.cwd.as_str();
    let materials = Declared::load(&reader, cwd, &receipt.action.inputs)?.digests(&reader)?;
    let products = Declared::load(&reader, cwd, &receipt.outputs)?.digests(&reader)?;
    let digests = |m: BTreeMap<String, String>| -> Value {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, json!({"sha256": v})))
                .collect(),
        )
    };
    let step = name
        .map(str::to_string)
        .unwrap_or_else(|| default_step_name(&receipt.action.argv));
    let mut byproducts = serde_json::Map::new();
    byproducts.insert("return-value".into(), json!(receipt.exit_status()));
    if let Some(run) = &receipt.run {
        byproducts.insert("stdout".into(), json!(stream_text(&reader, &run.stdout)?));
        byproducts.insert("stderr".into(), json!(stream_text(&reader, &run.stderr)?));
    }
    let signed = json!({
        "_type": "link",
        "name": step,
        "command": receipt.action.argv,
        "materials": digests(materials),
        "products": digests(products),
        "byproducts": byproducts,
        "environment": {"workdir": receipt.action.cwd, "asl_receipt": r.to_string()},
    });
    let signatures: Vec<Value> = match key {
        Some(k) => {
            let bytes = crate::canon::olpc(&signed).map_err(ProvError::Fs)?;
            vec![json!({"keyid": k.keyid(), "sig": k.sign(&bytes)})]
        }
        None => Vec::new(),
    };
    Ok(json!({"signed": signed, "signatures": signatures}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn the_default_step_name_is_the_program_s_basename() {
        let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (argv, name) in [
            (sh("gcc -o hello hello.c && echo done"), "gcc"),
            (sh("  /usr/bin/make -C src"), "make"),
            (sh("CC=clang LANG=C ./build.sh --fast"), "build.sh"),
            (sh("(cd src; make)"), "cd"),
            (sh("tar -cf x.tar x|gzip"), "tar"),
            (sh(""), "step"),
            (argv(&["/usr/bin/sort", "-r", "in.txt"]), "sort"),
            (argv(&["make"]), "make"),
            (argv(&["/bin/sh", "script.sh"]), "sh"),
            (argv(&[]), "step"),
        ] {
            assert_eq!(default_step_name(&argv), name, "{argv:?}");
        }
    }

    #[test]
    fn declared_names_are_normalised_as_python_normpath_does() {
        for (p, n) in [
            ("./tree/", "tree"),
            ("a//b/./c", "a/b/c"),
            ("a/../b", "b"),
            (".", "."),
            ("../x", "../x"),
            ("/abs/./p/", "/abs/p"),
        ] {
            assert_eq!(normalised_name(p), n, "{p}");
        }
    }

    #[test]
    fn symlinks_resolve_through_declared_paths_only() {
        let f = |n: u8| TreeNode::File(Reference::new(asl_store::HashAlgo::Blake3, [n; 32]));
        let mut nodes = BTreeMap::new();
        for (p, node) in [
            ("/w/t", TreeNode::Dir),
            ("/w/t/a", f(1)),
            ("/w/t/sub", TreeNode::Dir),
            ("/w/t/sub/b", f(2)),
            ("/w/t/to-a", TreeNode::Symlink("a".into())),
            ("/w/t/sub/up", TreeNode::Symlink("../to-a".into())),
            ("/w/t/abs", TreeNode::Symlink("/w/t/sub/b".into())),
            ("/w/t/dir", TreeNode::Symlink("sub".into())),
            ("/w/t/via-dir", TreeNode::Symlink("dir/b".into())),
            ("/w/t/dangling", TreeNode::Symlink("nothing".into())),
            ("/w/t/out", TreeNode::Symlink("/etc/passwd".into())),
            ("/w/t/loop", TreeNode::Symlink("loop".into())),
            ("/w/t/file-as-dir", TreeNode::Symlink("a/x".into())),
            ("/w/in.txt", f(3)),
            ("/w/t/sibling", TreeNode::Symlink("../in.txt".into())),
            ("/w/t/sub/back", TreeNode::Symlink("..".into())),
        ] {
            nodes.insert(p.to_string(), node);
        }
        let d = Declared {
            nodes,
            roots: vec![("t".into(), "/w/t".into())],
        };
        let target = |link: &str| match d.nodes.get(link) {
            Some(TreeNode::Symlink(t)) => d.resolve(link, t),
            _ => panic!("{link}"),
        };
        assert_eq!(target("/w/t/to-a").as_deref(), Some("/w/t/a"));
        assert_eq!(target("/w/t/sub/up").as_deref(), Some("/w/t/a"));
        assert_eq!(target("/w/t/abs").as_deref(), Some("/w/t/sub/b"));
        assert_eq!(target("/w/t/via-dir").as_deref(), Some("/w/t/sub/b"));
        assert_eq!(target("/w/t/sibling").as_deref(), Some("/w/in.txt"));
        assert_eq!(target("/w/t/dir").as_deref(), Some("/w/t/sub"));
        for none in ["/w/t/dangling", "/w/t/out", "/w/t/loop", "/w/t/file-as-dir"] {
            assert_eq!(target(none), None, "{none}");
        }
        // The walk: files and links to files under their own names, linked directories
        // walked under the link's name, a link back to an ancestor not walked again.
        let mut files = BTreeMap::new();
        d.walk("/w/t", "t", &mut vec!["/w/t".into()], &mut files);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "t/a",
                "t/abs",
                "t/dir/b",
                "t/dir/up",
                "t/sibling",
                "t/sub/b",
                "t/sub/up",
                "t/to-a",
                "t/via-dir"
            ]
        );
    }

    #[test]
    fn pae_follows_the_dsse_spec() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }
}
