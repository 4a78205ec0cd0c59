//! Read-ahead for a restore from a server: [`Prefetch`] is an [`ArtifactRead`] as of one
//! snapshot that knows, before the restore starts, which artifacts it will be asked for and
//! in which order, and fetches them with the batched read (`POST …/read`) — a request per
//! few MiB instead of one per file — on several threads, ahead of the restore's writers.
//!
//! Contract:
//! * every byte handed out hashes to the reference it was asked as (checked in
//!   [`Remote::read_many`] or [`RemoteReader`]); the server is not trusted for integrity;
//! * an artifact that the read-ahead does not hold (not planned, too large for a batch, not
//!   visible, damaged, or a batch that failed) is read alone, as without read-ahead, so the
//!   restore sees the same answers and errors;
//! * memory is bounded: fetching pauses while [`WINDOW`] bytes wait to be taken, and a
//!   reader never waits for an artifact that is not yet being fetched while fetching is
//!   paused (it reads it alone instead), so the restore cannot stall on the read-ahead.
//!
//! The plan mirrors the restore's walk (asl_fs::restore): directories depth first in entry
//! order, each regular file's content once per hardlink group. Trees are read level by level
//! with batched reads and kept for the restore's own walk.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

use asl_fs::{Kind, Tree};
use asl_store::{AccessError, ArtifactRead, Reference};

use crate::api;
use crate::client::{Remote, RemoteReader};

/// Bytes fetched ahead and not yet taken, at most (one batch may go past it).
pub const WINDOW: usize = 96 << 20;
/// A batch of the plan: up to this many bytes (by the tree's recorded sizes) …
const BATCH_BYTES: u64 = 4 << 20;
/// … and this many artifacts.
const BATCH_ITEMS: usize = 512;
/// Threads fetching batches: a few requests in flight hide each one's round trip.
pub const FETCHERS: usize = 4;

/// Where the read-ahead stands.
#[derive(Default)]
struct State {
    /// Index of the next batch to fetch.
    next: usize,
    /// Fetched, checked, not yet taken as often as planned.
    ready: HashMap<Reference, Arc<Vec<u8>>>,
    buffered: usize,
    in_flight: HashSet<Reference>,
    /// How many more times the restore will ask for each planned artifact.
    left: HashMap<Reference, u32>,
    stopped: bool,
}

/// Counts of how artifacts were served (for reports and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrefetchCounts {
    /// Batched read requests sent (trees and file contents).
    pub batch_requests: u64,
    /// Artifacts handed out from the read-ahead.
    pub from_batches: u64,
    /// Artifacts read alone (not planned, too large, or not served by a batch).
    pub read_alone: u64,
}

/// An [`ArtifactRead`] with read-ahead; see the module docs.
pub struct Prefetch<'a> {
    alone: RemoteReader<'a>,
    /// Trees read while planning, checked; the restore walks them again.
    trees: HashMap<Reference, Arc<Vec<u8>>>,
    batches: Vec<Vec<Reference>>,
    /// Planned artifact → index of its batch.
    batch_of: HashMap<Reference, usize>,
    state: Mutex<State>,
    changed: Condvar,
    counts: Mutex<PrefetchCounts>,
}

impl<'a> Prefetch<'a> {
    /// Plans the restore of the directory tree `tree` as of `snapshot`, reading its trees.
    /// Without the batched read on the server (API 1.0) the plan is empty and every read goes
    /// alone.
    pub fn plan(remote: &'a Remote, snapshot: Option<u64>, tree: Option<Reference>) -> Self {
        let mut p = Prefetch {
            alone: RemoteReader { remote, snapshot },
            trees: HashMap::new(),
            batches: Vec::new(),
            batch_of: HashMap::new(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            counts: Mutex::new(PrefetchCounts::default()),
        };
        let Some(top) = tree.filter(|_| remote.has_batched_read()) else {
            return p;
        };
        let decoded = p.read_trees(top);
        let mut files = Vec::new();
        let mut groups = HashSet::new();
        plan_files(&decoded, &top, &mut groups, &mut files, 0);
        let mut st = State::default();
        let mut batch: Vec<Reference> = Vec::new();
        let mut batch_bytes = 0u64;
        for (r, size) in files {
            let left = st.left.entry(r).or_insert(0);
            *left += 1;
            if *left > 1 || size > api::MAX_READ_ARTIFACT {
                continue;
            }
            if !batch.is_empty() && (batch_bytes + size > BATCH_BYTES || batch.len() >= BATCH_ITEMS)
            {
                p.batches.push(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            p.batch_of.insert(r, p.batches.len());
            batch.push(r);
            batch_bytes += size;
        }
        if !batch.is_empty() {
            p.batches.push(batch);
        }
        p.state = Mutex::new(st);
        p
    }

    /// Reads every tree under `top`, a level at a time, with batched reads; a tree that does
    /// not come back in a batch is left to the restore (which reads it alone and reports).
    fn read_trees(&mut self, top: Reference) -> HashMap<Reference, Tree> {
        let mut decoded = HashMap::new();
        let mut level = vec![top];
        while !level.is_empty() {
            let got = match self.alone.remote.read_many(self.alone.snapshot, &level) {
                Ok(g) => g,
                Err(_) => break,
            };
            self.count(|c| c.batch_requests += level.len().div_ceil(api::MAX_READ_BATCH) as u64);
            let mut next = Vec::new();
            for (r, bytes) in level.iter().zip(got) {
                let Some(bytes) = bytes else { continue };
                let Ok(tree) = asl_fs::decode_tree(&bytes) else {
                    continue;
                };
                for e in &tree.entries {
                    if e.kind == Kind::Dir
                        && let Some(c) = e.content
                        && !decoded.contains_key(&c)
                        && !self.trees.contains_key(&c)
                    {
                        next.push(c);
                    }
                }
                self.trees.insert(*r, Arc::new(bytes));
                decoded.insert(*r, tree);
            }
            next.sort_unstable();
            next.dedup();
            level = next;
        }
        decoded
    }

    fn count(&self, f: impl FnOnce(&mut PrefetchCounts)) {
        f(&mut self.counts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn counts(&self) -> PrefetchCounts {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches batches until the plan is done or [`Prefetch::stop`] is called. Run it on
    /// [`FETCHERS`] threads beside the restore.
    pub fn fetch(&self) {
        loop {
            let refs = {
                let mut st = self.lock();
                while !st.stopped && st.next < self.batches.len() && st.buffered >= WINDOW {
                    st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.stopped || st.next >= self.batches.len() {
                    self.changed.notify_all();
                    return;
                }
                let i = st.next;
                st.next += 1;
                let refs: Vec<Reference> = self.batches[i]
                    .iter()
                    .filter(|r| st.left.get(r).is_some_and(|n| *n > 0))
                    .copied()
                    .collect();
                st.in_flight.extend(refs.iter().copied());
                refs
            };
            let got = if refs.is_empty() {
                Ok(Vec::new())
            } else {
                self.count(|c| c.batch_requests += 1);
                self.alone.remote.read_many(self.alone.snapshot, &refs)
            };
            let mut st = self.lock();
            // A failed batch leaves its artifacts to be read alone, where the error shows.
            let got = got.unwrap_or_default();
            for r in &refs {
                st.in_flight.remove(r);
            }
            for (r, bytes) in refs.iter().zip(got) {
                if let Some(b) = bytes
                    && st.left.get(r).is_some_and(|n| *n > 0)
                {
                    st.buffered += b.len();
                    st.ready.insert(*r, Arc::new(b));
                }
            }
            self.changed.notify_all();
        }
    }

    /// Ends the fetching threads (after the restore, or when it failed).
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// The read-ahead's bytes for `r` when it has or will soon have them; `None`: read alone.
    fn take(&self, r: &Reference) -> Option<Arc<Vec<u8>>> {
        if !self.batch_of.contains_key(r) {
            return None;
        }
        let mut st = self.lock();
        let out = loop {
            if let Some(b) = st.ready.get(r) {
                break Some(b.clone());
            }
            let coming = st.in_flight.contains(r)
                || (self.batch_of.get(r).is_some_and(|b| *b >= st.next)
                    && !st.stopped
                    && st.buffered < WINDOW);
            if !coming {
                break None;
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        };
        if let Some(n) = st.left.get_mut(r) {
            *n = n.saturating_sub(1);
            if *n == 0
                && let Some(b) = st.ready.remove(r)
            {
                st.buffered -= b.len();
                self.changed.notify_all();
            }
        }
        out
    }
}

/// Appends the file contents the restore of `tree` will read, in the restore's order, with
/// their recorded sizes; a hardlink group's content once.
fn plan_files(
    trees: &HashMap<Reference, Tree>,
    tree: &Reference,
    groups: &mut HashSet<u64>,
    out: &mut Vec<(Reference, u64)>,
    depth: usize,
) {
    // Trees reach a few hundred levels at most; a cycle cannot be stored (a tree names its
    // children by hash), but a bound costs nothing.
    let Some(t) = trees.get(tree).filter(|_| depth < 4096) else {
        return;
    };
    for e in &t.entries {
        match (e.kind, e.content) {
            (Kind::Dir, Some(c)) => plan_files(trees, &c, groups, out, depth + 1),
            (Kind::File, Some(c)) if e.hardlink_group == 0 || groups.insert(e.hardlink_group) => {
                out.push((c, e.size));
            }
            _ => {}
        }
    }
}

impl ArtifactRead for Prefetch<'_> {
    fn read_to(&self, reference: &Reference, out: &mut dyn Write) -> Result<u64, AccessError> {
        let held = self
            .trees
            .get(reference)
            .cloned()
            .or_else(|| self.take(reference));
        match held {
            Some(bytes) => {
                self.count(|c| c.from_batches += 1);
                out.write_all(&bytes).map_err(AccessError::Sink)?;
                Ok(bytes.len() as u64)
            }
            None => {
                self.count(|c| c.read_alone += 1);
                self.alone.read_to(reference, out)
            }
        }
    }

    fn artifact_len(&self, reference: &Reference) -> Option<u64> {
        match self.trees.get(reference) {
            Some(b) => Some(b.len() as u64),
            None => self.alone.artifact_len(reference),
        }
    }
}
