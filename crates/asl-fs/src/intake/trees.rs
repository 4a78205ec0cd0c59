//! Stage 3, the trees: applies the readers' outcomes to the walked entries; stores a
//! directory's tree as soon as its last entry is final and retires its entries; at the end
//! gives later hardlink members their group's content, numbers the groups, and stores the
//! trees that had to wait for that (the directories holding multiply-linked files and their
//! ancestors), children before parents.
//!
//! The result is the same whatever the order of completion: a tree is encoded from its
//! entries only, and the entries it needs are final when it is encoded.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use asl_store::{Reference, TypeTag};
use rustix::fs::Stat;

use super::{FileOutcome, IntakeError, IntakeErrorRecord, Walk};
use crate::statcache::CachedContent;
use crate::tree::{EntryError, Kind, Operation, encode_entries};

impl Walk<'_> {
    /// Applies one reader's outcome; a store failure becomes the intake's failure.
    pub(super) fn take_outcome(&mut self, o: FileOutcome) {
        if let Some(e) = o.fatal {
            let path = self.path_of(o.node);
            self.fatal
                .get_or_insert(IntakeError::Store { path, source: e });
            return;
        }
        let node = o.node;
        self.apply_outcome(o);
        self.entry_done(node);
    }

    fn apply_outcome(&mut self, o: FileOutcome) {
        self.totals.bytes_read += o.bytes_read;
        self.totals.opened += u64::from(o.opened);
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
            self.totals.add_put(&put);
            e.content = Some(put.reference);
            e.size = put.len;
            e.holes = o.holes;
            if let (Some(id), Some(cache)) = (o.cacheable, self.new_cache.as_mut()) {
                cache.add(&CachedContent {
                    identity: id,
                    content: put.reference,
                    holes: e.holes.clone(),
                });
            }
        }
    }

    /// Marks the ancestors of a multiply-linked entry: their trees wait for the end, when the
    /// hardlink groups are numbered.
    pub(super) fn defer_ancestors(&mut self, idx: u32) {
        let mut a = self.nodes[idx as usize].parent;
        while a != 0 && !self.nodes[a as usize].deferred {
            self.nodes[a as usize].deferred = true;
            a = self.nodes[a as usize].parent;
        }
    }

    /// Every child of directory `dir` is recorded: from now on it completes when its last
    /// child does (at once if none is pending).
    pub(super) fn dir_listed(&mut self, dir: u32) {
        let n = &self.nodes[dir as usize];
        let (first, count) = (n.first_child as usize, n.child_count as usize);
        let waiting = (first..first + count)
            .filter(|&c| !self.nodes[c].done)
            .count() as u32;
        let n = &mut self.nodes[dir as usize];
        n.read_done = true;
        n.waiting = waiting;
        if waiting == 0 {
            self.complete_dirs_from(dir);
        }
    }

    /// Entry `idx` became final: its directory may now be complete.
    fn entry_done(&mut self, idx: u32) {
        self.nodes[idx as usize].done = true;
        if idx == 0 {
            return;
        }
        let parent = self.nodes[idx as usize].parent;
        let p = &mut self.nodes[parent as usize];
        if p.read_done {
            p.waiting -= 1;
            if p.waiting == 0 {
                self.complete_dirs_from(parent);
            }
        }
    }

    /// Stores the tree of `dir`, whose children are all final, retires the children, and goes
    /// on up through every ancestor this completes. The synthetic root and deferred
    /// directories are left for [`Walk::build_trees`].
    fn complete_dirs_from(&mut self, dir: u32) {
        let mut d = dir;
        loop {
            if d == 0 || self.nodes[d as usize].deferred || self.fatal.is_some() {
                return;
            }
            if let Err(e) = self.store_tree(d as usize) {
                self.fatal.get_or_insert(e);
                return;
            }
            let n = &self.nodes[d as usize];
            let (first, count) = (n.first_child as usize, n.child_count as usize);
            for c in first..first + count {
                if let Some(child) = self.nodes.remove(c) {
                    self.counts.add(&child.entry);
                    if child.entry.kind == Kind::Dir {
                        self.dir_paths.remove(&(c as u32));
                    }
                }
            }
            self.nodes[d as usize].done = true;
            let parent = self.nodes[d as usize].parent;
            let p = &mut self.nodes[parent as usize];
            if !p.read_done {
                return;
            }
            p.waiting -= 1;
            if p.waiting > 0 {
                return;
            }
            d = parent;
        }
    }

    /// Encodes and stores the tree of directory `i` from its children's entries (none for a
    /// directory that could not be opened, other than the root: it keeps no content).
    fn store_tree(&mut self, i: usize) -> Result<(), IntakeError> {
        let n = &self.nodes[i];
        let readable = !matches!(
            n.entry.error,
            Some(EntryError {
                op: Operation::Opendir,
                ..
            })
        );
        if !readable && i != 0 {
            return Ok(());
        }
        let (first, count) = (n.first_child as usize, n.child_count as usize);
        let bytes = encode_entries((first..first + count).map(|c| &self.nodes[c].entry), count)
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
        self.totals.add_put(&put);
        self.progress
            .bytes_new
            .fetch_add(put.new_bytes, Ordering::Relaxed);
        self.nodes[i].entry.content = Some(put.reference);
        Ok(())
    }

    /// Copies content to later hardlink members and numbers the groups with ≥ 2 members in
    /// depth-first, name-ordered pre-order of the root (the documented canonical numbering).
    pub(super) fn resolve_hardlinks(&mut self) {
        let members: Vec<usize> = self
            .nodes
            .live()
            .filter(|&i| self.nodes[i].link_first.is_some())
            .collect();
        for i in members {
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
            // A completed directory's entries are retired; it holds no hardlink member
            // (those directories are deferred).
            if n.entry.kind == Kind::Dir && n.child_count > 0 && !n.done {
                stack.push((n.first_child, n.first_child + n.child_count));
            }
        }
    }

    /// Stores the trees still missing (the synthetic root, deferred directories), children
    /// before parents, and returns the root.
    pub(super) fn build_trees(&mut self, tops: &[(u32, Stat)]) -> Result<Reference, IntakeError> {
        let mut open: Vec<usize> = self
            .nodes
            .live()
            .filter(|&i| self.nodes[i].entry.kind == Kind::Dir && !self.nodes[i].done)
            .collect();
        // Children have higher numbers than their parents.
        open.reverse();
        for i in open {
            self.store_tree(i)?;
            self.nodes[i].done = true;
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
