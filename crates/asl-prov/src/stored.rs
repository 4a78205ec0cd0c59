//! Reading declared artifacts back from the store: the files of a stored tree, which replay
//! compares with what it rebuilt, and its files, directories and symlinks, from which export
//! lists materials and products in an in-toto link.

use std::collections::BTreeMap;

use asl_store::{ArtifactRead, Reference};

use crate::error::ProvError;

/// Files of a stored tree: relative path → content reference.
pub(crate) fn tree_files(
    reader: &dyn ArtifactRead,
    r: Reference,
) -> Result<BTreeMap<String, Reference>, ProvError> {
    Ok(tree_nodes(reader, r)?
        .into_iter()
        .filter_map(|(name, node)| match node {
            TreeNode::File(c) => Some((name, c)),
            _ => None,
        })
        .collect())
}

/// One entry of a stored tree, as far as in-toto's artifact recording cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TreeNode {
    File(Reference),
    Dir,
    /// A symlink and its target, as stored (lossy UTF-8).
    Symlink(String),
}

/// Files, directories and symlinks of a stored tree: relative path → entry. Other kinds
/// (devices, FIFOs, sockets) and unreadable entries are left out: they have no content.
pub(crate) fn tree_nodes(
    reader: &dyn ArtifactRead,
    r: Reference,
) -> Result<BTreeMap<String, TreeNode>, ProvError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), r)];
    while let Some((prefix, tr)) = stack.pop() {
        let tree =
            asl_fs::browse::read_tree(reader, &tr).map_err(|e| ProvError::Fs(e.to_string()))?;
        for e in tree.entries {
            let name = format!("{prefix}{}", String::from_utf8_lossy(&e.name));
            match (e.kind, e.content) {
                (asl_fs::Kind::Dir, Some(c)) => {
                    stack.push((format!("{name}/"), c));
                    out.insert(name, TreeNode::Dir);
                }
                (asl_fs::Kind::File, Some(c)) => {
                    out.insert(name, TreeNode::File(c));
                }
                (asl_fs::Kind::Symlink, _) => {
                    let target = String::from_utf8_lossy(&e.link_target).into_owned();
                    out.insert(name, TreeNode::Symlink(target));
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
