//! Reachability: everything a set of roots leads to, through part lists and typed children.

use std::collections::HashSet;

use crate::Children;
use crate::access::TypeTag;
use crate::block::RecordKind;
use crate::reader::Reader;
use crate::reference::Reference;

/// A reference that a reachable artifact names but the store cannot produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub reference: Reference,
    /// The artifact that names it (None for a root).
    pub parent: Option<Reference>,
    pub reason: String,
}

/// Walks from `roots`, calling `visit` once per reachable artifact (chunks of composite
/// artifacts included). Children of typed artifacts are read through `reader` and listed by
/// `children`. Returns what could not be followed.
pub fn walk(
    reader: &Reader<'_>,
    roots: &[Reference],
    children: Children<'_>,
    mut visit: impl FnMut(&Reference),
) -> Vec<Missing> {
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut stack: Vec<(Reference, Option<Reference>)> = roots.iter().map(|r| (*r, None)).collect();
    let mut missing = Vec::new();
    while let Some((r, parent)) = stack.pop() {
        if !seen.insert(*r.digest()) {
            continue;
        }
        let Some(loc) = reader.locate(&r) else {
            missing.push(Missing {
                reference: r,
                parent,
                reason: "not in the index".into(),
            });
            continue;
        };
        visit(&r);
        if loc.kind == RecordKind::Parts {
            match reader.part_list(&loc) {
                Ok(list) => {
                    for (_, d) in list.parts {
                        stack.push((Reference::new(r.algo(), d), Some(r)));
                    }
                }
                Err(e) => missing.push(Missing {
                    reference: r,
                    parent,
                    reason: format!("part list unreadable: {e}"),
                }),
            }
        }
        let tag = TypeTag(loc.type_tag);
        if tag != TypeTag::BYTES {
            let bytes = match crate::access::ArtifactRead::read_all(reader, &r) {
                Ok(b) => b,
                Err(e) => {
                    missing.push(Missing {
                        reference: r,
                        parent,
                        reason: format!("unreadable: {e}"),
                    });
                    continue;
                }
            };
            match children(tag, &bytes) {
                Ok(kids) => stack.extend(kids.into_iter().map(|k| (k, Some(r)))),
                Err(e) => missing.push(Missing {
                    reference: r,
                    parent,
                    reason: format!("children cannot be listed: {e}"),
                }),
            }
        }
    }
    missing
}

/// Children function for stores that only hold opaque bytes.
pub fn no_children(_: TypeTag, _: &[u8]) -> Result<Vec<Reference>, String> {
    Ok(Vec::new())
}
