//! Classifying what a command did: the observed accesses deduplicated and sorted, and the
//! difference between what was declared and what was observed (undeclared inputs and
//! outputs, intermediates and temporaries set apart).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::receipt::Observation;
use crate::trace::{self, Access, TraceMode};

fn abs(cwd: &Path, p: &Path) -> String {
    trace::normalize(cwd, p).to_string_lossy().into_owned()
}

/// What makes two accesses the same: path, operation, rename target.
type AccessKey<'a> = (&'a str, &'a str, Option<&'a str>);

/// Deduplicates accesses and computes the declared-vs-observed difference.
pub fn summarise(
    mode: TraceMode,
    raw: Vec<Access>,
    gaps: Vec<String>,
    cwd: &Path,
    inputs: &[PathBuf],
    outputs: &[PathBuf],
) -> Observation {
    let decl_in: Vec<String> = inputs.iter().map(|p| abs(cwd, p)).collect();
    let decl_out: Vec<String> = outputs.iter().map(|p| abs(cwd, p)).collect();
    let is_declared = |p: &str, d: &[String]| d.iter().any(|x| trace::under(p, x));
    // Borrowed paths and one sort of positions: a file-heavy command yields an access per file
    // it touches, and this runs after the command has ended, on the capture's critical path.
    let mut written: BTreeSet<&str> = BTreeSet::new();
    let mut created: BTreeSet<&str> = BTreeSet::new();
    let mut deleted: BTreeSet<&str> = BTreeSet::new();
    // Where the tree itself first made each path (write, create, rename target). Owned
    // keys (there are few): the accesses are moved out of `raw` while this is consulted.
    let mut first_made: HashMap<String, usize> = HashMap::new();
    for (pos, a) in raw.iter().enumerate() {
        let path = a.path.as_str();
        match &*a.op {
            "write" => {
                written.insert(path);
                first_made.entry(path.to_string()).or_insert(pos);
            }
            "create" => {
                created.insert(path);
                first_made.entry(path.to_string()).or_insert(pos);
            }
            "delete" => {
                deleted.insert(path);
            }
            "rename" => {
                deleted.insert(path);
                if let Some(to) = a.to.as_deref() {
                    created.insert(to);
                    written.insert(to);
                    first_made.entry(to.to_string()).or_insert(pos);
                }
            }
            _ => {}
        }
    }
    // Positions sorted by (path, op, to), equal keys by position. Each position carries the
    // 16 path bytes that follow the part all paths share, so that most comparisons read no
    // string: the strings lie all over the heap, and following one costs a cache miss.
    let shared = common_prefix_len(raw.iter().map(|a| a.path.as_bytes()));
    let mut order: Vec<(u128, u32)> = raw
        .iter()
        .enumerate()
        .map(|(i, a)| (sort_prefix(&a.path.as_bytes()[shared..]), i as u32))
        .collect();
    let key = |i: u32| -> AccessKey {
        let a = &raw[i as usize];
        (a.path.as_str(), &*a.op, a.to.as_deref())
    };
    sort_on_two_cores(&mut order, |x, y| {
        x.0.cmp(&y.0)
            .then_with(|| key(x.1).cmp(&key(y.1)))
            .then(x.1.cmp(&y.1))
    });
    // One access per (path, op, to): its earliest occurrence, whose pid is kept.
    let mut kept: Vec<usize> = Vec::with_capacity(order.len());
    let mut last: Option<(u128, u32)> = None;
    for &(prefix, i) in &order {
        if last.is_none_or(|(p, l)| p != prefix || key(l) != key(i)) {
            kept.push(i as usize);
        }
        last = Some((prefix, i));
    }
    // A file created and deleted again within the run is a temporary; so is a file written
    // that is gone by the end (fanotify cannot see the delete).
    let gone = |p: &str| std::fs::symlink_metadata(p).is_err();
    let temporaries: BTreeSet<&str> = created
        .intersection(&deleted)
        .copied()
        .chain(
            written
                .iter()
                .chain(&created)
                .copied()
                .filter(|p| gone(p) && !deleted.contains(p)),
        )
        .collect();
    let undeclared_outputs: Vec<String> = written
        .iter()
        .chain(&created)
        .chain(&deleted)
        .copied()
        .filter(|p| !trace::is_pseudo(p) && !temporaries.contains(p) && !is_declared(p, &decl_out))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    // One pass over the kept accesses, in order, moving each out of `raw` (one cache miss
    // per access instead of one per pass). Inputs are paths read (or executed) before the
    // tree made them itself; paths made first and read afterwards are intermediates.
    let mut raw = raw;
    let mut accesses: Vec<Access> = Vec::with_capacity(kept.len());
    let mut undeclared_inputs: Vec<String> = Vec::new();
    for &i in &kept {
        let a = std::mem::take(&mut raw[i]);
        let input = matches!(&*a.op, "read" | "exec")
            && first_made
                .get(a.path.as_str())
                .is_none_or(|&made| made >= i)
            && !trace::is_pseudo(&a.path)
            && !is_declared(&a.path, &decl_in)
            && !is_declared(&a.path, &decl_out)
            && undeclared_inputs.last() != Some(&a.path);
        if input {
            undeclared_inputs.push(a.path.clone());
        }
        accesses.push(a);
    }
    Observation {
        mode: mode.name().into(),
        blind_spots: mode.blind_spots(),
        gaps,
        accesses,
        undeclared_inputs,
        undeclared_outputs,
    }
}

/// The length of the longest prefix all of `paths` share.
fn common_prefix_len<'a>(mut paths: impl Iterator<Item = &'a [u8]>) -> usize {
    let Some(first) = paths.next() else {
        return 0;
    };
    let mut len = first.len();
    for p in paths {
        len = first[..len]
            .iter()
            .zip(p)
            .take_while(|(a, b)| a == b)
            .count();
    }
    len
}

/// The first 16 bytes of `rest`, zero-padded, as a big-endian number: where two of these
/// differ, they order as the byte strings do. Paths hold no NUL byte, so a path that ends
/// within the 16 bytes still orders before every longer path it begins.
fn sort_prefix(rest: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = rest.len().min(16);
    b[..n].copy_from_slice(&rest[..n]);
    u128::from_be_bytes(b)
}

/// Sorts `v` by a total order, each half on its own core and then one merge: the observation
/// is sorted after the command has ended, when both cores of a small machine are free.
fn sort_on_two_cores<T, F>(v: &mut Vec<T>, cmp: F)
where
    T: Copy + Send,
    F: Fn(&T, &T) -> std::cmp::Ordering + Sync,
{
    if v.len() < 8192 {
        v.sort_unstable_by(&cmp);
        return;
    }
    let mid = v.len() / 2;
    {
        let (a, b) = v.split_at_mut(mid);
        std::thread::scope(|s| {
            s.spawn(|| a.sort_unstable_by(&cmp));
            b.sort_unstable_by(&cmp);
        });
    }
    let (a, b) = v.split_at(mid);
    let mut out = Vec::with_capacity(v.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if cmp(&b[j], &a[i]).is_lt() {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_two_core_sort_sorts_like_the_standard_one() {
        let mut x: u64 = 7;
        let mut v: Vec<u64> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 5000
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_unstable();
        sort_on_two_cores(&mut v, |a, b| a.cmp(b));
        assert_eq!(v, expected);
    }

    fn acc(op: &str, path: &str, pid: i32, to: Option<&str>) -> Access {
        Access {
            op: op.to_string().into(),
            path: path.into(),
            pid,
            to: to.map(str::to_string),
        }
    }

    /// The observation's rules, on a hand-made run in chronological order: intermediates are
    /// not inputs, a read before the write is, duplicates keep the first pid, temporaries are
    /// not outputs, pseudo files and declared paths are not flagged.
    #[test]
    fn summarise_separates_inputs_intermediates_and_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let p = |name: &str| format!("{d}/{name}");
        for f in ["obj.o", "late", "to"] {
            std::fs::write(p(f), b"x").unwrap();
        }
        let raw = vec![
            acc("read", "/in/a.h", 10, None),
            acc("write", &p("obj.o"), 11, None),
            acc("read", &p("obj.o"), 12, None),
            acc("read", "/in/a.h", 13, None),
            acc("read", "/in/b.h", 14, None),
            acc("exec", "/usr/bin/cc", 15, None),
            acc("read", "/proc/self/stat", 15, None),
            acc("create", &p("tmpfile"), 16, None),
            acc("delete", &p("tmpfile"), 16, None),
            acc("read", &p("late"), 17, None),
            acc("write", &p("late"), 18, None),
            acc("rename", &p("from"), 19, Some(&p("to"))),
            acc("read", &p("to"), 20, None),
        ];
        let o = summarise(
            TraceMode::Ptrace,
            raw,
            Vec::new(),
            Path::new("/"),
            &[PathBuf::from("/in/b.h")],
            &[],
        );
        let mut inputs = vec!["/in/a.h".to_string(), "/usr/bin/cc".into(), p("late")];
        inputs.sort();
        assert_eq!(o.undeclared_inputs, inputs);
        let mut outputs = vec![p("obj.o"), p("late"), p("from"), p("to")];
        outputs.sort();
        assert_eq!(o.undeclared_outputs, outputs);
        // Sorted by path, then op; one entry per (path, op, to), with the first pid.
        let keys: Vec<(&str, &str, i32)> = o
            .accesses
            .iter()
            .map(|a| (a.path.as_str(), &*a.op, a.pid))
            .collect();
        let mut expected = vec![
            ("/in/a.h", "read", 10),
            ("/in/b.h", "read", 14),
            ("/proc/self/stat", "read", 15),
            ("/usr/bin/cc", "exec", 15),
        ];
        let owned: Vec<(String, &str, i32)> = vec![
            (p("from"), "rename", 19),
            (p("late"), "read", 17),
            (p("late"), "write", 18),
            (p("obj.o"), "read", 12),
            (p("obj.o"), "write", 11),
            (p("tmpfile"), "create", 16),
            (p("tmpfile"), "delete", 16),
            (p("to"), "read", 20),
        ];
        expected.extend(owned.iter().map(|(a, b, c)| (a.as_str(), *b, *c)));
        expected.sort();
        assert_eq!(keys, expected);
    }

    proptest::proptest! {
        /// Against a plain model (a map from (path, op, to) to the first occurrence): the
        /// same accesses in the same order, with the same pids, and the same undeclared
        /// inputs. Paths share long prefixes and differ around '/', '-' and '0' (the bytes
        /// on either side of '/'), and many are longer than the 16-byte sort prefix, so that
        /// its ties and edges are exercised.
        #[test]
        fn summarise_matches_a_plain_dedup_and_sort(
            picks in proptest::collection::vec(
                (0usize..6, proptest::collection::vec(0usize..5, 1..6), 0usize..3, 0i32..4),
                0..300,
            ),
            prefix in "(/[a-c]{0,3}){0,3}",
        ) {
            const PARTS: [&str; 5] = ["a", "a-b", "a0", "aaaaaaaaaaaaaaaaaaaaaaaa", "a/b"];
            const OPS: [&str; 3] = ["read", "exec", "open_dir"];
            let raw: Vec<Access> = picks
                .iter()
                .map(|(root, parts, op, pid)| {
                    let mut path = format!("/r{root}{prefix}");
                    for p in parts {
                        path.push('/');
                        path.push_str(PARTS[*p]);
                    }
                    acc(OPS[*op], &path, *pid, None)
                })
                .collect();
            let mut model: BTreeMap<(String, String), i32> = BTreeMap::new();
            for a in &raw {
                model.entry((a.path.clone(), a.op.to_string())).or_insert(a.pid);
            }
            let o = summarise(TraceMode::Fanotify, raw, Vec::new(), Path::new("/"), &[], &[]);
            let got: Vec<((String, String), i32)> = o
                .accesses
                .iter()
                .map(|a| ((a.path.clone(), a.op.to_string()), a.pid))
                .collect();
            let want: Vec<((String, String), i32)> = model.clone().into_iter().collect();
            proptest::prop_assert_eq!(got, want);
            let mut inputs: Vec<String> = model
                .keys()
                .filter(|(_, op)| op != "open_dir")
                .map(|(p, _)| p.clone())
                .collect();
            inputs.dedup();
            proptest::prop_assert_eq!(o.undeclared_inputs, inputs);
        }
    }

    #[test]
    fn sort_prefixes_order_as_the_paths_do() {
        let paths = [
            "",
            "a",
            "a/",
            "a-",
            "a0",
            "aaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaab",
            "b",
        ];
        for x in paths {
            for y in paths {
                let (px, py) = (sort_prefix(x.as_bytes()), sort_prefix(y.as_bytes()));
                if px != py {
                    assert_eq!(px.cmp(&py), x.cmp(y), "{x:?} vs {y:?}");
                }
            }
        }
        assert_eq!(
            common_prefix_len(["/usr/a", "/usr/b", "/u"].iter().map(|p| p.as_bytes())),
            2
        );
        assert_eq!(common_prefix_len(std::iter::empty()), 0);
    }
}
