//! The walked entries of one intake, numbered in walk order, of which only the live ones are
//! kept: a directory's children are retired once its tree is stored, so memory follows the
//! entries still being worked on (the directories on the walk's path, the files in the
//! readers' queue, the subtrees waiting for hardlinks), not the size of the input.
//!
//! Numbers are never reused: a directory's children keep their contiguous range
//! `first_child..first_child + child_count` for as long as they live. Storage is a list of
//! chunks of [`CHUNK`] slots; a chunk whose slots are all retired is freed.

use std::ops::{Index, IndexMut};

use super::Node;

/// Slots per chunk: large enough that the chunk list stays short, small enough that the few
/// long-lived entries (a top directory's children) pin little memory.
const CHUNK: usize = 1024;

struct Chunk {
    slots: Vec<Option<Node>>,
    live: usize,
}

#[derive(Default)]
pub(super) struct Nodes {
    chunks: Vec<Option<Chunk>>,
    next: u32,
    live: usize,
    peak: usize,
}

impl Nodes {
    /// The number the next pushed node gets (the count of nodes ever pushed).
    pub(super) fn len(&self) -> usize {
        self.next as usize
    }

    pub(super) fn push(&mut self, node: Node) -> u32 {
        let idx = self.next;
        let c = idx as usize / CHUNK;
        if c == self.chunks.len() {
            self.chunks.push(Some(Chunk {
                slots: Vec::with_capacity(CHUNK),
                live: 0,
            }));
        }
        let chunk = self.chunks[c]
            .as_mut()
            .expect("the chunk being filled is never freed");
        chunk.slots.push(Some(node));
        chunk.live += 1;
        self.next += 1;
        self.live += 1;
        self.peak = self.peak.max(self.live);
        idx
    }

    pub(super) fn get(&self, idx: usize) -> Option<&Node> {
        self.chunks
            .get(idx / CHUNK)?
            .as_ref()?
            .slots
            .get(idx % CHUNK)?
            .as_ref()
    }

    fn get_mut(&mut self, idx: usize) -> Option<&mut Node> {
        self.chunks
            .get_mut(idx / CHUNK)?
            .as_mut()?
            .slots
            .get_mut(idx % CHUNK)?
            .as_mut()
    }

    /// Retires a node: it is gone for good.
    pub(super) fn remove(&mut self, idx: usize) -> Option<Node> {
        let c = idx / CHUNK;
        let chunk = self.chunks.get_mut(c)?.as_mut()?;
        let node = chunk.slots.get_mut(idx % CHUNK)?.take()?;
        chunk.live -= 1;
        self.live -= 1;
        if chunk.live == 0 && chunk.slots.len() == CHUNK {
            self.chunks[c] = None;
        }
        Some(node)
    }

    /// The most nodes that were live at once.
    pub(super) fn peak(&self) -> usize {
        self.peak
    }

    /// The numbers of the live nodes, ascending.
    pub(super) fn live(&self) -> impl Iterator<Item = usize> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().flat_map(move |chunk| {
                chunk
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.is_some())
                    .map(move |(i, _)| c * CHUNK + i)
            })
        })
    }

    #[cfg(test)]
    fn chunks_held(&self) -> usize {
        self.chunks.iter().filter(|c| c.is_some()).count()
    }
}

impl Index<usize> for Nodes {
    type Output = Node;

    fn index(&self, idx: usize) -> &Node {
        self.get(idx)
            .unwrap_or_else(|| panic!("intake node {idx} used after it was retired"))
    }
}

impl IndexMut<usize> for Nodes {
    fn index_mut(&mut self, idx: usize) -> &mut Node {
        self.get_mut(idx)
            .unwrap_or_else(|| panic!("intake node {idx} used after it was retired"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Entry, Kind};

    fn node(i: usize) -> Node {
        Node::new(Entry::new(format!("n{i}").into_bytes(), Kind::File), 0)
    }

    #[test]
    fn numbers_are_stable_and_a_retired_chunk_is_freed() {
        let mut nodes = Nodes::default();
        for i in 0..3 * CHUNK {
            assert_eq!(nodes.push(node(i)) as usize, i);
        }
        assert_eq!(nodes.chunks_held(), 3);
        for i in 0..CHUNK {
            assert!(nodes.remove(i).is_some());
        }
        assert!(nodes.remove(5).is_none(), "a retired node is gone");
        assert!(nodes.get(5).is_none());
        assert_eq!(nodes.chunks_held(), 2, "the first chunk is freed");
        assert_eq!(
            nodes[CHUNK + 7].entry.name,
            format!("n{}", CHUNK + 7).into_bytes()
        );
        // The chunk still being filled stays, even when everything in it is retired.
        nodes.push(node(3 * CHUNK));
        assert!(nodes.remove(3 * CHUNK).is_some());
        assert_eq!(nodes.chunks_held(), 3);
        assert_eq!(nodes.len(), 3 * CHUNK + 1);
        assert_eq!(nodes.peak(), 3 * CHUNK);
        let live: Vec<usize> = nodes.live().collect();
        assert_eq!(live, (CHUNK..3 * CHUNK).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "used after it was retired")]
    fn a_retired_node_cannot_be_used() {
        let mut nodes = Nodes::default();
        nodes.push(node(0));
        nodes.remove(0);
        let _ = &nodes[0];
    }
}
