//! Reading declared outputs back from the store: the files of a stored tree, which replay
//! compares with what it rebuilt and export lists in an in-toto link.

use std::collections::BTreeMap;

use asl_store::{ArtifactRead, Reference};

use crate::error::ProvError;

/// Files of a stored tree: relative path → content reference.
pub(crate) fn tree_files(
    reader: &dyn ArtifactRead,
    r: Reference,
) -> Result<BTreeMap<String, Reference>, ProvError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), r)];
    while let Some((prefix, tr)) = stack.pop() {
        let tree =
            asl_fs::browse::read_tree(reader, &tr).map_err(|e| ProvError::Fs(e.to_string()))?;
        for e in tree.entries {
            let name = format!("{prefix}{}", String::from_utf8_lossy(&e.name));
            match (e.kind, e.content) {
                (asl_fs::Kind::Dir, Some(c)) => stack.push((format!("{name}/"), c)),
                (asl_fs::Kind::File, Some(c)) => {
                    out.insert(name, c);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
