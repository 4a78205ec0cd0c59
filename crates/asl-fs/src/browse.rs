//! Browsing stored trees: resolve a path, list a directory, read a file, compare two trees.
//! These are the building blocks of `asl-admin ls|cat|diff`.

use std::io::Write;
use std::path::PathBuf;

use asl_store::{AccessError, ArtifactRead, Reference};

use crate::tree::{Entry, Kind, Tree, TreeError, decode_tree};

/// Why a browsing operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    #[error("cannot read tree artifact {reference}: {source}")]
    Store {
        reference: Reference,
        #[source]
        source: AccessError,
    },
    /// A file's content could not be read (not a tree: the message says which it is).
    #[error("cannot read the content of file '{path}' (artifact {reference}): {source}")]
    Content {
        path: String,
        reference: Reference,
        #[source]
        source: Box<AccessError>,
    },
    #[error("artifact {reference} is not a valid tree: {source}")]
    Tree {
        reference: Reference,
        #[source]
        source: TreeError,
    },
    /// A directory of one side of a diff could not be read: `old` says which side, `path` is
    /// the directory's absolute path in that tree.
    #[error("directory '{path}' of the {} tree: {source}", if *old { "old" } else { "new" })]
    DiffSide {
        old: bool,
        path: String,
        #[source]
        source: Box<BrowseError>,
    },
    #[error("'{path}' does not exist in the snapshot")]
    NotFound { path: String },
    #[error("'{path}' is not a directory")]
    NotADirectory { path: String },
    #[error("'{path}' is not a regular file (it is {kind:?})")]
    NotAFile { path: String, kind: Kind },
    #[error("'{path}': its content was not taken in (the intake recorded an error)")]
    NoContent { path: String },
    #[error("invalid path '{path}': {reason}")]
    BadPath { path: String, reason: &'static str },
}

impl BrowseError {
    /// Whether the failure is damage or loss in the store (exit code 3) rather than a
    /// wrong path (exit code 1/2).
    pub fn is_integrity(&self) -> bool {
        match self {
            BrowseError::Store { source, .. } => source.is_integrity(),
            BrowseError::Content { source, .. } => source.is_integrity(),
            BrowseError::Tree { .. } => true,
            BrowseError::DiffSide { source, .. } => source.is_integrity(),
            _ => false,
        }
    }
}

/// Reads and decodes one tree artifact (the store verifies its hash).
pub fn read_tree(store: &dyn ArtifactRead, reference: &Reference) -> Result<Tree, BrowseError> {
    let bytes = store
        .read_all(reference)
        .map_err(|source| BrowseError::Store {
            reference: *reference,
            source,
        })?;
    decode_tree(&bytes).map_err(|source| BrowseError::Tree {
        reference: *reference,
        source,
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Splits a path inside a snapshot into its components. Empty components and `.` are
/// ignored (`/a//b/.` is `a/b`); `..` is refused.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, BrowseError> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(BrowseError::BadPath {
                    path: lossy(path),
                    reason: "'..' is not allowed in a path inside a snapshot",
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Resolves `path` inside the tree `root`. The empty path (or `/`) gives a directory entry
/// with an empty name whose content is `root`. Symlinks inside the tree are not followed.
pub fn lookup(
    store: &dyn ArtifactRead,
    root: &Reference,
    path: &[u8],
) -> Result<Entry, BrowseError> {
    let mut cur = Entry::new(Vec::new(), Kind::Dir);
    cur.content = Some(*root);
    let comps = components(path)?;
    for (i, c) in comps.iter().enumerate() {
        let so_far = || lossy(&comps[..=i].join(&b'/'));
        if cur.kind != Kind::Dir {
            return Err(BrowseError::NotADirectory {
                path: lossy(&comps[..i].join(&b'/')),
            });
        }
        let Some(tree_ref) = cur.content else {
            return Err(BrowseError::NoContent {
                path: lossy(&comps[..i].join(&b'/')),
            });
        };
        let tree = read_tree(store, &tree_ref)?;
        cur = tree
            .get(c)
            .cloned()
            .ok_or_else(|| BrowseError::NotFound { path: so_far() })?;
    }
    Ok(cur)
}

/// Lists a directory entry (as returned by [`lookup`]).
pub fn ls(store: &dyn ArtifactRead, dir: &Entry) -> Result<Vec<Entry>, BrowseError> {
    if dir.kind != Kind::Dir {
        return Err(BrowseError::NotADirectory {
            path: lossy(&dir.name),
        });
    }
    let r = dir.content.ok_or_else(|| BrowseError::NoContent {
        path: lossy(&dir.name),
    })?;
    Ok(read_tree(store, &r)?.entries)
}

/// Writes a file entry's content to `out` (verified by the store as it streams).
pub fn cat(
    store: &dyn ArtifactRead,
    file: &Entry,
    out: &mut dyn Write,
) -> Result<u64, BrowseError> {
    if file.kind != Kind::File {
        return Err(BrowseError::NotAFile {
            path: lossy(&file.name),
            kind: file.kind,
        });
    }
    let r = file.content.ok_or_else(|| BrowseError::NoContent {
        path: lossy(&file.name),
    })?;
    store
        .read_to(&r, out)
        .map_err(|source| BrowseError::Content {
            path: lossy(&file.name),
            reference: r,
            source: Box::new(source),
        })
}

/// What changed at a path between two trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Removed,
    /// Content or type changed.
    Modified,
    /// Only metadata (mode, owner, mtime, xattrs, ...) changed.
    Metadata,
}

/// One difference found by [`diff`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    /// Path relative to the roots, `/`-separated (raw bytes; shown lossily in JSON).
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    pub kind: ChangeKind,
    #[serde(skip)]
    pub old: Option<Entry>,
    #[serde(skip)]
    pub new: Option<Entry>,
}

fn ser_path<S: serde::Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// The differences between trees `a` (old) and `b` (new), in path order. Subtrees with
/// equal references are skipped without being read; an added or removed directory is one
/// change (its contents are not listed).
pub fn diff(
    store: &dyn ArtifactRead,
    a: &Reference,
    b: &Reference,
) -> Result<Vec<Change>, BrowseError> {
    let mut out = Vec::new();
    diff_into(store, a, b, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn diff_into(
    store: &dyn ArtifactRead,
    a: &Reference,
    b: &Reference,
    prefix: &mut Vec<u8>,
    out: &mut Vec<Change>,
) -> Result<(), BrowseError> {
    if a == b {
        return Ok(());
    }
    let side = |old: bool| {
        let path = format!("/{}", String::from_utf8_lossy(prefix));
        move |source| BrowseError::DiffSide {
            old,
            path,
            source: Box::new(source),
        }
    };
    let ta = read_tree(store, a).map_err(side(true))?;
    let tb = read_tree(store, b).map_err(side(false))?;
    let (mut i, mut j) = (0, 0);
    let path_of = |prefix: &[u8], name: &[u8]| {
        let mut p = prefix.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name);
        p
    };
    let to_path = |p: Vec<u8>| -> PathBuf {
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(p).into()
    };
    while i < ta.entries.len() || j < tb.entries.len() {
        let ea = ta.entries.get(i);
        let eb = tb.entries.get(j);
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                let x = &ta.entries[i];
                out.push(Change {
                    path: to_path(path_of(prefix, &x.name)),
                    kind: ChangeKind::Removed,
                    old: Some(x.clone()),
                    new: None,
                });
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let y = &tb.entries[j];
                out.push(Change {
                    path: to_path(path_of(prefix, &y.name)),
                    kind: ChangeKind::Added,
                    old: None,
                    new: Some(y.clone()),
                });
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ta.entries[i], &tb.entries[j]);
                let p = path_of(prefix, &x.name);
                let both_dirs = x.kind == Kind::Dir && y.kind == Kind::Dir;
                let kind = if x.kind != y.kind || (!both_dirs && x.content != y.content) {
                    Some(ChangeKind::Modified)
                } else if !x.same_metadata(y) {
                    Some(ChangeKind::Metadata)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    out.push(Change {
                        path: to_path(p.clone()),
                        kind,
                        old: Some(x.clone()),
                        new: Some(y.clone()),
                    });
                }
                if both_dirs && let (Some(ra), Some(rb)) = (x.content, y.content) {
                    let saved = std::mem::replace(prefix, p);
                    diff_into(store, &ra, &rb, prefix, out)?;
                    *prefix = saved;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// An entry of a stored tree whose content is one of the artifacts asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryUsing {
    /// Absolute path inside the tree (`/etc/passwd`).
    pub path: String,
    pub content: Reference,
    /// The entry is a directory (its tree artifact is the one asked about).
    pub directory: bool,
}

/// Every entry under `root` (files, and directories whose tree artifact is asked about) whose
/// content is in `wanted`, in path order. This is how damage found by artifact is named by
/// path. Trees that cannot be read are passed over: their damage is reported on its own.
pub fn entries_using(
    store: &dyn ArtifactRead,
    root: &Reference,
    wanted: &std::collections::HashSet<Reference>,
) -> Vec<EntryUsing> {
    let mut found = Vec::new();
    if wanted.contains(root) {
        found.push(EntryUsing {
            path: "/".into(),
            content: *root,
            directory: true,
        });
    }
    // Depth first; the same subtree under two names is walked under each, since each is a
    // path the operator will look for.
    let mut todo: Vec<(String, Reference)> = vec![(String::new(), *root)];
    while let Some((dir, tree_ref)) = todo.pop() {
        let Ok(tree) = read_tree(store, &tree_ref) else {
            continue;
        };
        for e in tree.entries {
            let Some(content) = e.content else { continue };
            let path = format!("{dir}/{}", lossy(&e.name));
            if wanted.contains(&content) {
                found.push(EntryUsing {
                    path: path.clone(),
                    content,
                    directory: e.kind == Kind::Dir,
                });
            }
            if e.kind == Kind::Dir {
                todo.push((path, content));
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}
