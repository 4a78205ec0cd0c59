//! Verification: is every committed byte where the log says, intact, and reachable?
//!
//! Without `read_data` it checks structure: the log chain, every visible segment against the
//! checksum its seal logged, every index entry against its block's trailer, and that every
//! snapshot's tree is complete. With `read_data` it also re-hashes every block file against
//! its name and every record against its reference, and re-hashes composite artifacts.
//! Every problem names the damaged object and the artifacts and snapshots it touches.
//! Files no log record refers to are counted as a warning, not a problem (see
//! [`crate::unreferenced`]).

use std::collections::{HashMap, HashSet};

use crate::Children;
use crate::access::ArtifactRead;
use crate::block::{self, BlockEntry, RecordKind};
use crate::log::Tail;
use crate::reach;
use crate::reference::Reference;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub read_data: bool,
}

/// One thing found wrong.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// What is damaged: `block <id>`, `segment <file>`, `log record <n>`, `artifact <ref>`.
    pub object: String,
    pub reason: String,
    /// Artifacts whose bytes are affected.
    pub artifacts: Vec<String>,
    /// Snapshots that reach an affected artifact.
    pub snapshots: Vec<u64>,
    /// Where the loss shows inside those snapshots. The store knows no trees, so [`verify`]
    /// leaves this empty; [`name_damaged_paths`], given a tree walker (asl-fs's), fills it.
    pub paths: Vec<DamagedPath>,
    /// The affected artifacts are composites only some of whose parts are damaged: the rest
    /// of their bytes still read back.
    pub partial: bool,
}

impl Problem {
    /// A problem with an object, found before anything is known of what it affects: no
    /// artifacts, snapshots or paths yet (verify fills those in once it has walked the index).
    fn new(object: String, reason: String) -> Problem {
        Problem {
            object,
            reason,
            artifacts: vec![],
            snapshots: vec![],
            paths: vec![],
            partial: false,
        }
    }
}

/// A file or directory of a snapshot that a problem affects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct DamagedPath {
    pub snapshot: u64,
    /// Absolute path inside the snapshot (`/etc/passwd`).
    pub path: String,
    /// `true`: the whole content is lost; `false`: only some chunks of a multi-chunk file.
    pub whole: bool,
    /// The path is a directory: its listing is lost, and with it the way to everything below.
    pub directory: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub read_data: bool,
    pub log_records: u64,
    pub segments: usize,
    pub index_entries: usize,
    pub blocks: usize,
    pub snapshots: usize,
    pub bytes_read: u64,
    /// A crash left an incomplete record at the log's end; the next writer cuts it. Not a
    /// problem by itself.
    pub torn_log_tail: Option<String>,
    /// Files no log record refers to, left by a killed or out-of-space writer (or being
    /// written by a running one). A warning, not a problem: they hold nothing a snapshot
    /// reaches, and `gc` removes them.
    pub unreferenced: crate::Unreferenced,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The entries of the tree under `root` whose content is in `wanted`, as
/// `(path, content, is a directory)`. The store knows no trees: asl-fs's `entries_using` is
/// the one the tools pass.
pub type EntriesUsing<'a> = &'a dyn Fn(
    &dyn ArtifactRead,
    &Reference,
    &HashSet<Reference>,
) -> Vec<(String, Reference, bool)>;

/// Names every loss of `rep` by `snapshot:path`: verify reports damage by artifact, and the
/// operator restores and checks files. One walk per affected snapshot. Shared by the local
/// `asl-admin verify` and asl-server's verify, so that both name the same paths.
pub fn name_damaged_paths(store: &Store, rep: &mut VerifyReport, entries_using: EntriesUsing<'_>) {
    let mut wanted: HashMap<u64, HashSet<Reference>> = HashMap::new();
    for p in &rep.problems {
        let arts: Vec<Reference> = p.artifacts.iter().filter_map(|a| a.parse().ok()).collect();
        for s in &p.snapshots {
            wanted.entry(*s).or_default().extend(arts.iter().copied());
        }
    }
    let mut at: HashMap<(u64, Reference), Vec<(String, bool)>> = HashMap::new();
    for snap in store.snapshots() {
        let (Some(set), Some(root)) = (wanted.get(&snap.id), snap.root) else {
            continue;
        };
        let reader = store.reader_at(snap);
        for (path, content, directory) in entries_using(&reader, &root, set) {
            at.entry((snap.id, content))
                .or_default()
                .push((path, directory));
        }
    }
    for p in &mut rep.problems {
        for a in p
            .artifacts
            .iter()
            .filter_map(|a| a.parse::<Reference>().ok())
        {
            for s in &p.snapshots {
                for (path, directory) in at.get(&(*s, a)).into_iter().flatten() {
                    p.paths.push(DamagedPath {
                        snapshot: *s,
                        path: path.clone(),
                        whole: !p.partial,
                        directory: *directory,
                    });
                }
            }
        }
        p.paths.sort();
        p.paths.dedup();
    }
}

/// Verifies `store`; see the module documentation.
pub fn verify(store: &Store, opts: &VerifyOptions, children: Children<'_>) -> VerifyReport {
    let st = store.state();
    let mut rep = VerifyReport {
        read_data: opts.read_data,
        log_records: st.last_logseq,
        segments: st.segments.len(),
        index_entries: st.index.len(),
        blocks: st.blocks.len(),
        snapshots: st.snapshots.len(),
        ..VerifyReport::default()
    };
    // Problems keyed by damaged artifact digests, to attribute snapshots at the end.
    let mut damaged: Vec<(Problem, HashSet<[u8; 32]>)> = Vec::new();

    match store.unreferenced() {
        Ok(u) => rep.unreferenced = u,
        // A store whose directories cannot be listed cannot be checked either.
        Err(e) => damaged.push((
            Problem::new(
                format!("store directory {}", store.layout().root.display()),
                format!("cannot be listed: {e}"),
            ),
            HashSet::new(),
        )),
    }

    // Opening checked the log's chain from the checkpoint on only: verify checks all of it.
    let full_log = crate::log::read(store.layout().storage(), &store.layout().log());
    let (log_tail, log_damage) = match &full_log {
        Ok(scan) => (Some(&scan.tail), crate::state::LogDamage::from_scan(scan)),
        Err(_) => (st.log_tail.as_ref(), st.log_damage.clone()),
    };
    if let Err(e) = &full_log {
        damaged.push((
            Problem::new(
                "log log/asl.log".into(),
                format!("cannot be read whole: {e}"),
            ),
            HashSet::new(),
        ));
    }
    match log_tail {
        Some(Tail::Torn { at, reason }) => {
            rep.torn_log_tail = Some(format!("at byte {at}: {reason}"));
        }
        Some(Tail::Damaged { at, logseq, reason }) => damaged.push((
            Problem {
                object: format!("log record {logseq} (byte {at} of log/asl.log)"),
                reason: format!(
                    "{reason}; records after it cannot be trusted; run `asl-admin repair-log`"
                ),
                artifacts: vec![],
                // The snapshots the damage hides, as far as the later records still parse.
                snapshots: log_damage
                    .as_ref()
                    .map(|d| d.hidden_snapshots.clone())
                    .unwrap_or_default(),
                paths: vec![],
                partial: false,
            },
            HashSet::new(),
        )),
        _ => {}
    }
    for d in &st.damage {
        damaged.push((
            Problem::new(d.object.clone(), d.reason.clone()),
            HashSet::new(),
        ));
    }
    for p in check_runs(store) {
        damaged.push((p, HashSet::new()));
    }

    // Index entries grouped by block.
    let mut by_block: HashMap<u32, Vec<IndexEntry>> = HashMap::new();
    for (d, l) in st.index.iter() {
        by_block.entry(l.block).or_default().push((d, l));
    }
    let algo = store.config().algo();
    // Blocks are independent: every worker takes the next unchecked one. With `read_data`
    // this is hashing and decompression, so it scales with the cores.
    let blocks: Vec<(&crate::block::BlockId, Vec<IndexEntry>)> = st
        .blocks
        .iter()
        .enumerate()
        .map(|(n, id)| (id, by_block.remove(&(n as u32)).unwrap_or_default()))
        .collect();
    let found = parallel_map(&blocks, |(id, entries)| {
        check_block(store, id, entries, opts.read_data)
    });
    // Chunks found damaged, for composite attribution.
    let mut bad_chunks: HashSet<[u8; 32]> = HashSet::new();
    for (problems, bytes_read) in found {
        rep.bytes_read += bytes_read;
        for (p, affected) in problems {
            bad_chunks.extend(affected.iter().copied());
            damaged.push((p, affected));
        }
    }

    // Composite artifacts: parts present, and with read_data the whole hash.
    let composites: Vec<([u8; 32], crate::state::Location)> = st
        .index
        .iter()
        .filter(|(d, loc)| loc.kind == RecordKind::Parts && !bad_chunks.contains(d))
        .collect();
    let found = parallel_map(&composites, |(d, loc)| {
        check_composite(store, &bad_chunks, d, loc, opts.read_data).map(|(reason, partial)| {
            (
                Problem {
                    object: format!("artifact {}", Reference::new(algo, *d)),
                    reason,
                    artifacts: vec![],
                    snapshots: vec![],
                    paths: vec![],
                    partial,
                },
                HashSet::from([*d]),
            )
        })
    });
    damaged.extend(found.into_iter().flatten());

    // Snapshots: complete trees, and which snapshots each damage touches.
    let all_bad: HashSet<[u8; 32]> = damaged
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    let mut touched: HashMap<[u8; 32], Vec<u64>> = HashMap::new();
    for snap in st.snapshots.values() {
        let Some(root) = snap.root else { continue };
        let reader = store.reader_at(snap);
        let missing = reach::walk(&reader, &[root], children, |r| {
            if all_bad.contains(r.digest()) {
                touched.entry(*r.digest()).or_default().push(snap.id);
            }
        });
        for m in missing {
            if all_bad.contains(m.reference.digest()) {
                touched
                    .entry(*m.reference.digest())
                    .or_default()
                    .push(snap.id);
                continue;
            }
            if let Some(p) = m.parent
                && all_bad.contains(p.digest())
            {
                continue;
            }
            damaged.push((
                Problem {
                    object: format!("artifact {}", m.reference),
                    reason: format!(
                        "{}{}",
                        m.reason,
                        m.parent
                            .map(|p| format!(" (named by {p})"))
                            .unwrap_or_default()
                    ),
                    artifacts: vec![m.reference.to_string()],
                    snapshots: vec![snap.id],
                    paths: vec![],
                    partial: false,
                },
                HashSet::new(),
            ));
        }
    }
    for (mut p, set) in damaged {
        let mut snaps: Vec<u64> = set
            .iter()
            .flat_map(|d| touched.get(d).cloned().unwrap_or_default())
            .collect();
        snaps.extend(p.snapshots.iter().copied());
        snaps.sort_unstable();
        snaps.dedup();
        p.snapshots = snaps;
        let mut arts: Vec<String> = set
            .iter()
            .map(|d| Reference::new(algo, *d).to_string())
            .collect();
        arts.append(&mut p.artifacts);
        arts.sort();
        arts.dedup();
        p.artifacts = arts;
        rep.problems.push(p);
    }
    rep
}

/// An index entry: the digest and where the index says its record is.
type IndexEntry = ([u8; 32], crate::state::Location);

/// Problems found in one place, each with the digests whose bytes it affects.
type Found = Vec<(Problem, HashSet<[u8; 32]>)>;

/// `f` over `items` on every core (items taken in turn, so a slow block does not hold up the
/// rest); results in the order of `items`.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// One block: readable, named by its hash (with `read_data`), its trailer listing every
/// index entry that points into it, and (with `read_data`) every record decoding to its
/// digest. Returns the problems and the bytes read.
fn check_block(
    store: &Store,
    id: &crate::block::BlockId,
    entries: &[IndexEntry],
    read_data: bool,
) -> (Found, u64) {
    let algo = store.config().algo();
    let mut found: Found = Vec::new();
    let affected: HashSet<[u8; 32]> = entries.iter().map(|(d, _)| *d).collect();
    let mut fail = |reason: String, affected: HashSet<[u8; 32]>| {
        found.push((Problem::new(format!("block {id}"), reason), affected));
    };
    let path = id.path(&store.layout().blocks());
    let bytes = match read_block(store.layout().storage(), &path, read_data) {
        Ok(b) => b,
        Err(e) => {
            fail(format!("cannot be read: {e}"), affected);
            return (found, 0);
        }
    };
    let bytes_read = if read_data { bytes.len() as u64 } else { 0 };
    // A failed whole-file hash says only that some byte changed. Which artifacts that costs
    // is decided record by record below: one flipped record must not condemn the hundreds
    // of others sharing the block, which still read back intact.
    let whole_hash = if read_data {
        let actual = algo.digest(&bytes);
        (actual.digest() != &id.0).then(|| hex::encode(actual.digest()))
    } else {
        None
    };
    let trailer = match block::decode_trailer(&bytes) {
        Ok(t) => t,
        Err(e) => {
            // Without the trailer no record can be checked on its own: all are suspect.
            if let Some(actual) = &whole_hash {
                fail(
                    format!("file content hashes to {actual}, not to its name"),
                    affected.clone(),
                );
            }
            fail(format!("trailer unreadable: {e}"), affected);
            return (found, bytes_read);
        }
    };
    // Digests whose own record failed its check.
    let mut bad_records: HashSet<[u8; 32]> = HashSet::new();
    // Keyed by offset *and* digest: an empty record shares its offset with the next one.
    let listed: HashMap<(u64, [u8; 32]), &BlockEntry> = trailer
        .iter()
        .map(|e| ((e.offset, *e.reference.digest()), e))
        .collect();
    for (d, loc) in entries {
        let ok = listed.get(&(loc.offset, *d)).is_some_and(|e| {
            e.stored_len == loc.stored_len
                && e.raw_len == loc.raw_len
                && e.codec == loc.codec
                && e.kind == loc.kind
        });
        if !ok {
            fail(
                format!(
                    "the index places {} at offset {}, but the block's trailer does not list it there",
                    Reference::new(algo, *d),
                    loc.offset
                ),
                HashSet::from([*d]),
            );
            bad_records.insert(*d);
            continue;
        }
        if read_data {
            let start = loc.offset as usize;
            let stored = bytes
                .get(start..start + loc.stored_len as usize)
                .unwrap_or(&[]);
            let problem = match block::decode_record(loc.codec, stored, loc.raw_len) {
                Err(e) => Some(format!(
                    "record of {} does not decode: {e}",
                    Reference::new(algo, *d)
                )),
                Ok(raw) => match loc.kind {
                    RecordKind::Chunk => {
                        let actual = algo.digest(&raw);
                        (actual.digest() != d).then(|| {
                            format!("record of {} hashes to {actual}", Reference::new(algo, *d))
                        })
                    }
                    RecordKind::Parts => block::PartList::decode(&raw)
                        .err()
                        .map(|e| format!("part list of {}: {e}", Reference::new(algo, *d))),
                },
            };
            if let Some(reason) = problem {
                fail(reason, HashSet::from([*d]));
                bad_records.insert(*d);
            }
        }
    }
    if let Some(actual) = whole_hash {
        let reason = if bad_records.is_empty() {
            format!(
                "file content hashes to {actual}, not to its name; every record still \
                 decodes to its reference, so no artifact is affected"
            )
        } else {
            format!(
                "file content hashes to {actual}, not to its name; {} of its {} records \
                 are damaged",
                bad_records.len(),
                entries.len()
            )
        };
        // Put the block's own problem first, as before, naming only the damaged records.
        found.insert(
            0,
            (Problem::new(format!("block {id}"), reason), bad_records),
        );
    }
    (found, bytes_read)
}

/// The segments opening held as index runs (and so did not read): each segment file checked
/// against its seal record, as opening checks the others, and its run against it record by
/// record, so that a run damaged after it was written is found too. One segment in memory at
/// a time.
fn check_runs(store: &Store) -> Vec<Problem> {
    let st = store.state();
    let layout = store.layout();
    let mut problems = Vec::new();
    for run in st.index.run_segments() {
        let Some(info) = st.segments.get(&run.segment_id) else {
            continue;
        };
        let path = layout
            .segments()
            .join(crate::segment::file_name(info.segment_id));
        let seg = match crate::state::load_segment(layout.storage(), &path, info) {
            Ok(seg) => seg,
            Err(reason) => {
                problems.push(Problem::new(format!("segment {}", path.display()), reason));
                continue;
            }
        };
        let run_path = crate::index::run::path(&layout.index_runs(), info.segment_id);
        let differs = run.blocks != seg.blocks
            || run
                .records()
                .map(|r| r.ok())
                .ne(seg.records.iter().map(|r| Some(*r)));
        if differs {
            problems.push(Problem::new(
                format!("index run {}", run_path.display()),
                "does not match its segment (a derived cache: delete it, and the next \
                 writer to open the store rebuilds it)"
                    .to_string(),
            ));
        }
    }
    problems
}

/// One composite artifact: every part in the index and undamaged, and (with `read_data`)
/// its parts' bytes hashing to its reference. `None` when it is sound.
fn check_composite(
    store: &Store,
    bad_chunks: &HashSet<[u8; 32]>,
    d: &[u8; 32],
    loc: &crate::state::Location,
    read_data: bool,
) -> Option<(String, bool)> {
    let st = store.state();
    let reader = store.reader();
    let list = match reader.part_list(loc) {
        Err(e) => return Some((e.to_string(), false)),
        Ok(list) => list,
    };
    let missing = list
        .parts
        .iter()
        .filter(|(_, p)| !st.index.contains(p))
        .count();
    let bad = list
        .parts
        .iter()
        .filter(|(_, p)| bad_chunks.contains(p))
        .count();
    let parts = list.parts.len();
    if missing > 0 {
        Some((
            format!("{missing} of its {parts} parts are missing from the index"),
            missing < parts,
        ))
    } else if bad > 0 {
        Some((
            format!("{bad} of its {parts} parts are damaged"),
            bad < parts,
        ))
    } else if read_data {
        let r = Reference::new(store.config().algo(), *d);
        reader
            .read_to(&r, &mut std::io::sink())
            .err()
            .map(|e| (e.to_string(), false))
    } else {
        None
    }
}

/// Reads a whole block, or just enough of its end for the trailer.
fn read_block(
    storage: &dyn crate::storage::Storage,
    path: &std::path::Path,
    whole: bool,
) -> std::io::Result<Vec<u8>> {
    if whole {
        return storage.read(path);
    }
    let f = storage.open(path)?;
    let len = f.size()?;
    let mut head = [0u8; block::HEADER_SIZE as usize];
    f.read_exact_at(&mut head, 0)?;
    if len < block::HEADER_SIZE + block::FOOTER_SIZE as u64 {
        return Err(std::io::Error::other(
            "block shorter than its header and footer",
        ));
    }
    let mut footer = [0u8; block::FOOTER_SIZE];
    f.read_exact_at(&mut footer, len - block::FOOTER_SIZE as u64)?;
    let entries_offset = u64::from_le_bytes(footer[8..16].try_into().unwrap_or_default());
    if entries_offset > len {
        return Err(std::io::Error::other(
            "trailer offset beyond the end of the file",
        ));
    }
    // Rebuild a sparse image: header, zeros for the data, then the real trailer.
    let mut img = vec![0u8; len as usize];
    img[..head.len()].copy_from_slice(&head);
    f.read_exact_at(&mut img[entries_offset as usize..], entries_offset)?;
    Ok(img)
}
