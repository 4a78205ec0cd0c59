//! Stage 3, the trees: once every read is in, applies the outcomes to the walked entries,
//! gives later hardlink members their group's content and numbers the groups, then encodes
//! and stores every directory's tree, children before parents.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use asl_store::{Reference, TypeTag};
use rustix::fs::Stat;

use super::{FileOutcome, IntakeError, IntakeErrorRecord, Totals, Walk};
use crate::statcache::CachedContent;
use crate::tree::{EntryError, Kind, Operation, encode_entries};

impl Walk<'_> {
    pub(super) fn apply_outcome(&mut self, o: FileOutcome, totals: &mut Totals) {
        totals.bytes_read += o.bytes_read;
        totals.opened += u64::from(o.opened);
        if let Some((err, message)) = o.error {
            self.nodes[o.node as usize].entry.error = Some(err);
            let path = self.path_of(o.node);
            self.errors.push(IntakeErrorRecord {
                path,
                op: err.op,
                errno: err.errno,
                message,
            });
        }
        let e = &mut self.nodes[o.node as usize].entry;
        e.changed_during_read = o.changed;
        if let Some(put) = o.put {
            totals.add_put(&put);
            e.content = Some(put.reference);
            e.size = put.len;
            e.holes = o.holes;
            if let Some(id) = o.cacheable {
                self.new_cache.insert(CachedContent {
                    identity: id,
                    content: put.reference,
                    holes: e.holes.clone(),
                });
            }
        }
    }

    /// Copies content to later hardlink members and numbers the groups with ≥ 2 members in
    /// depth-first, name-ordered pre-order of the root (the documented canonical numbering).
    pub(super) fn resolve_hardlinks(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(f) = self.nodes[i].link_first {
                let src = &self.nodes[f as usize].entry;
                let (content, holes, size, changed, error) = (
                    src.content,
                    src.holes.clone(),
                    src.size,
                    src.changed_during_read,
                    src.error,
                );
                let e = &mut self.nodes[i].entry;
                if e.kind == Kind::File {
                    e.content = content;
                    e.holes = holes;
                    e.size = size;
                    e.changed_during_read = changed;
                    if e.error.is_none() {
                        e.error = error;
                    }
                }
            }
        }
        let mut ids: HashMap<(u64, u64), u64> = HashMap::new();
        let mut next = 1u64;
        // Stack of (next child, end) ranges: a true pre-order walk in name order.
        let root = &self.nodes[0];
        let mut stack = vec![(root.first_child, root.first_child + root.child_count)];
        while let Some(top) = stack.last_mut() {
            if top.0 >= top.1 {
                stack.pop();
                continue;
            }
            let c = top.0 as usize;
            top.0 += 1;
            if let Some(key) = self.nodes[c].link_key
                && self
                    .links
                    .get(&key)
                    .is_some_and(|&(_, members)| members >= 2)
            {
                let id = *ids.entry(key).or_insert_with(|| {
                    next += 1;
                    next - 1
                });
                self.nodes[c].entry.hardlink_group = id;
            }
            let n = &self.nodes[c];
            if n.entry.kind == Kind::Dir && n.child_count > 0 {
                stack.push((n.first_child, n.first_child + n.child_count));
            }
        }
    }

    /// Encodes and stores every directory's tree, children before parents.
    pub(super) fn build_trees(
        &mut self,
        tops: &[(u32, Stat)],
        totals: &mut Totals,
    ) -> Result<Reference, IntakeError> {
        for i in (0..self.nodes.len()).rev() {
            let n = &self.nodes[i];
            if n.entry.kind != Kind::Dir {
                continue;
            }
            let readable = !matches!(
                n.entry.error,
                Some(EntryError {
                    op: Operation::Opendir,
                    ..
                })
            );
            if !readable && i != 0 {
                continue;
            }
            let (first, count) = (n.first_child as usize, n.child_count as usize);
            let bytes = encode_entries(
                self.nodes[first..first + count].iter().map(|c| &c.entry),
                count,
            )
            .map_err(|source| IntakeError::Tree {
                path: self.path_of(i as u32),
                source,
            })?;
            let put = self
                .store
                .put_bytes(&bytes, TypeTag::TREE)
                .map_err(|source| IntakeError::Store {
                    path: self.path_of(i as u32),
                    source,
                })?;
            totals.add_put(&put);
            self.progress
                .bytes_new
                .fetch_add(put.new_bytes, Ordering::Relaxed);
            self.nodes[i].entry.content = Some(put.reference);
        }
        // One directory given: its tree is the root. Otherwise the synthetic root.
        let root_node = match tops {
            [(idx, _)] if self.nodes[*idx as usize].entry.kind == Kind::Dir => *idx as usize,
            _ => 0,
        };
        match self.nodes[root_node].entry.content {
            Some(r) => Ok(r),
            None => {
                // The one directory given could not be read: an empty root, with the error
                // in the summary.
                let put = self
                    .store
                    .put_bytes(&crate::tree::empty_tree_bytes(), TypeTag::TREE)
                    .map_err(|source| IntakeError::Store {
                        path: self.path_of(root_node as u32),
                        source,
                    })?;
                Ok(put.reference)
            }
        }
    }
}
