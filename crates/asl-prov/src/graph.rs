//! The provenance graph: every TGK edge of a snapshot, indexed both ways (a derived,
//! in-memory index rebuilt from the store's type-tagged index — nothing extra on disk), and
//! the questions asked of it: why does this artifact exist, what used it, and the DAG.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use asl_store::{ArtifactRead, Reference, Snapshot, Store, TypeTag};
use serde::Serialize;

use crate::error::ProvError;
use crate::receipt::{Edge, Receipt, parse_ref};

/// One capture as seen from the graph.
#[derive(Debug, Clone)]
pub struct Step {
    pub edge: Reference,
    pub receipt_ref: Reference,
    pub receipt: Receipt,
    pub from: Vec<Reference>,
    pub to: Vec<Reference>,
}

/// All steps of a snapshot and the two lookups.
pub struct Graph {
    pub steps: Vec<Step>,
    /// Artifact → steps that consumed it.
    pub consumers: HashMap<Reference, Vec<usize>>,
    /// Artifact → steps that produced it.
    pub producers: HashMap<Reference, Vec<usize>>,
    /// Receipt or edge reference → its step.
    pub by_receipt: HashMap<Reference, usize>,
}

fn decode_err(what: &Reference, kind: &'static str, reason: String) -> ProvError {
    ProvError::Decode {
        what: what.to_string(),
        kind,
        reason,
    }
}

impl Graph {
    /// Reads every edge visible at `snapshot` (the latest state when `None`).
    pub fn load(store: &Store, snapshot: Option<&Snapshot>) -> Result<Graph, ProvError> {
        let reader = match snapshot {
            Some(s) => store.reader_at(s),
            None => store.reader(),
        };
        let mut edge_refs: Vec<Reference> = reader.artifacts_of_type(TypeTag::EDGE);
        edge_refs.sort();
        let mut g = Graph {
            steps: Vec::new(),
            consumers: HashMap::new(),
            producers: HashMap::new(),
            by_receipt: HashMap::new(),
        };
        for er in edge_refs {
            let bytes = reader.read_all(&er)?;
            let edge = Edge::decode(&bytes).map_err(|e| decode_err(&er, "TGK edge", e))?;
            let rr = parse_ref(&edge.payload).map_err(|e| decode_err(&er, "TGK edge", e))?;
            let rbytes = reader.read_all(&rr)?;
            let receipt = Receipt::decode(&rbytes).map_err(|e| decode_err(&rr, "receipt", e))?;
            let parse_all = |v: &[String]| -> Result<Vec<Reference>, ProvError> {
                v.iter()
                    .map(|s| parse_ref(s).map_err(|e| decode_err(&er, "TGK edge", e)))
                    .collect()
            };
            let step = Step {
                edge: er,
                receipt_ref: rr,
                from: parse_all(&edge.from)?,
                to: parse_all(&edge.to)?,
                receipt,
            };
            let i = g.steps.len();
            for f in &step.from {
                g.consumers.entry(*f).or_default().push(i);
            }
            for t in &step.to {
                g.producers.entry(*t).or_default().push(i);
            }
            g.by_receipt.insert(rr, i);
            g.by_receipt.insert(er, i);
            g.steps.push(step);
        }
        Ok(g)
    }

    /// A human name for an artifact: the path it had in a receipt, else its short digest.
    pub fn label(&self, r: &Reference) -> String {
        for s in &self.steps {
            let rs = r.to_string();
            if let Some(f) = s
                .receipt
                .outputs
                .iter()
                .chain(&s.receipt.action.inputs)
                .find(|f| f.reference == rs)
            {
                return f.path.clone();
            }
        }
        r.short()
    }
}

/// One line per step: `argv` and exit status.
pub fn describe_step(s: &Step) -> String {
    let status = match &s.receipt.run {
        Some(r) => match (r.exit_code, r.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown status".into(),
        },
        None => "file import".into(),
    };
    let what = match &s.receipt.file {
        Some(f) => format!("import of {}", f.source),
        None => s.receipt.action.argv.join(" "),
    };
    format!(
        "receipt {} ({status}, {}): {what}",
        s.receipt_ref, s.receipt.timing.started_at
    )
}

/// "Why does REF exist": the steps that produced it, then (recursively, up to `depth`
/// levels) the steps that produced their inputs.
pub fn why(g: &Graph, r: &Reference, depth: usize) -> String {
    let mut out = String::new();
    let mut seen = BTreeSet::new();
    why_rec(g, r, depth, 0, &mut seen, &mut out);
    if out.is_empty() {
        out = format!("{r} was not produced by any captured step (no TGK edge leads to it)\n");
    }
    out
}

fn why_rec(
    g: &Graph,
    r: &Reference,
    depth: usize,
    level: usize,
    seen: &mut BTreeSet<usize>,
    out: &mut String,
) {
    let pad = "  ".repeat(level);
    let Some(ps) = g.producers.get(r) else {
        if level > 0 {
            out.push_str(&format!(
                "{pad}{} ({}) is a source: no step produced it\n",
                g.label(r),
                r.short()
            ));
        }
        return;
    };
    for &i in ps {
        let s = &g.steps[i];
        out.push_str(&format!(
            "{pad}{} ({}) was produced by {}\n",
            g.label(r),
            r.short(),
            describe_step(s)
        ));
        if !seen.insert(i) || level + 1 > depth {
            continue;
        }
        for f in &s.from {
            why_rec(g, f, depth, level + 1, seen, out);
        }
    }
}

/// "What used REF": the steps that consumed it and what they produced.
pub fn used_by(g: &Graph, r: &Reference) -> String {
    let Some(cs) = g.consumers.get(r) else {
        return format!("{r} was not used as a declared input by any captured step\n");
    };
    let mut out = String::new();
    for &i in cs {
        let s = &g.steps[i];
        out.push_str(&format!(
            "{} ({}) was used by {}\n",
            g.label(r),
            r.short(),
            describe_step(s)
        ));
        for t in &s.to {
            out.push_str(&format!("  -> produced {} ({})\n", g.label(t), t.short()));
        }
    }
    out
}

/// A node of the rendered DAG.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// `artifact` or `receipt`.
    pub kind: String,
    pub label: String,
}

/// A link of the rendered DAG: `input` (artifact → receipt) or `output` (receipt → artifact).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dag {
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
}

/// The DAG of all steps, or of the steps within `depth` hops (up and down) of `root`
/// (an artifact, receipt or edge reference).
pub fn dag(g: &Graph, root: Option<&Reference>, depth: Option<usize>) -> Result<Dag, ProvError> {
    let chosen: BTreeSet<usize> = match root {
        None => (0..g.steps.len()).collect(),
        Some(r) => {
            let mut set = BTreeSet::new();
            let mut queue: VecDeque<(Reference, usize)> = VecDeque::new();
            let start_known = g.by_receipt.contains_key(r)
                || g.producers.contains_key(r)
                || g.consumers.contains_key(r);
            if !start_known {
                return Err(ProvError::NotFound(format!(
                    "{r} is not an artifact, receipt or edge of any captured step in this snapshot"
                )));
            }
            if let Some(&i) = g.by_receipt.get(r) {
                set.insert(i);
                for a in g.steps[i].from.iter().chain(&g.steps[i].to) {
                    queue.push_back((*a, 1));
                }
            } else {
                queue.push_back((*r, 0));
            }
            let max = depth.unwrap_or(usize::MAX);
            let mut visited = BTreeSet::new();
            while let Some((a, d)) = queue.pop_front() {
                if !visited.insert(a) || d > max {
                    continue;
                }
                let near = g
                    .producers
                    .get(&a)
                    .into_iter()
                    .chain(g.consumers.get(&a))
                    .flatten();
                for &i in near {
                    if set.insert(i) {
                        for b in g.steps[i].from.iter().chain(&g.steps[i].to) {
                            queue.push_back((*b, d + 1));
                        }
                    }
                }
            }
            set
        }
    };
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut links = Vec::new();
    for &i in &chosen {
        let s = &g.steps[i];
        let rid = s.receipt_ref.to_string();
        let argv = match &s.receipt.file {
            Some(f) => format!("import {}", f.source),
            None => s.receipt.action.argv.join(" "),
        };
        let short: String = argv.chars().take(60).collect();
        nodes.insert(
            rid.clone(),
            Node {
                id: rid.clone(),
                kind: "receipt".into(),
                label: short,
            },
        );
        for f in &s.from {
            nodes.entry(f.to_string()).or_insert_with(|| Node {
                id: f.to_string(),
                kind: "artifact".into(),
                label: g.label(f),
            });
            links.push(Link {
                from: f.to_string(),
                to: rid.clone(),
                kind: "input".into(),
            });
        }
        for t in &s.to {
            nodes.entry(t.to_string()).or_insert_with(|| Node {
                id: t.to_string(),
                kind: "artifact".into(),
                label: g.label(t),
            });
            links.push(Link {
                from: rid.clone(),
                to: t.to_string(),
                kind: "output".into(),
            });
        }
    }
    links.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    links.dedup();
    Ok(Dag {
        nodes: nodes.into_values().collect(),
        links,
    })
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Graphviz DOT.
pub fn to_dot(d: &Dag) -> String {
    let mut s =
        String::from("digraph provenance {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n");
    for n in &d.nodes {
        let shape = if n.kind == "receipt" {
            "box, style=filled, fillcolor=\"#e8eef8\""
        } else {
            "ellipse"
        };
        s.push_str(&format!(
            "  \"{}\" [label=\"{}\", shape={shape}, tooltip=\"{}\"];\n",
            esc(&n.id),
            esc(&n.label),
            esc(&n.id)
        ));
    }
    for l in &d.links {
        s.push_str(&format!("  \"{}\" -> \"{}\";\n", esc(&l.from), esc(&l.to)));
    }
    s.push_str("}\n");
    s
}

/// SVG drawn here: nodes in layers by longest path from the sources, links as lines.
pub fn to_svg(d: &Dag) -> String {
    let idx: HashMap<&str, usize> = d
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut layer = vec![0usize; d.nodes.len()];
    // Longest-path layering; the graph is a DAG, so |nodes| rounds settle it.
    for _ in 0..d.nodes.len() {
        let mut changed = false;
        for l in &d.links {
            let (Some(&a), Some(&b)) = (idx.get(l.from.as_str()), idx.get(l.to.as_str())) else {
                continue;
            };
            if layer[b] < layer[a] + 1 {
                layer[b] = layer[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let (w, h, gapx, gapy) = (240.0f64, 36.0f64, 30.0f64, 60.0f64);
    let mut rows: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in layer.iter().enumerate() {
        rows.entry(*l).or_default().push(i);
    }
    let mut pos = vec![(0.0f64, 0.0f64); d.nodes.len()];
    let mut width: f64 = 0.0;
    for (r, members) in &rows {
        for (k, &i) in members.iter().enumerate() {
            pos[i] = (
                gapx + k as f64 * (w + gapx),
                gapy / 2.0 + *r as f64 * (h + gapy),
            );
        }
        width = width.max(gapx + members.len() as f64 * (w + gapx));
    }
    let height = gapy / 2.0 + rows.len() as f64 * (h + gapy);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"monospace\" font-size=\"11\">\n<defs><marker id=\"a\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n"
    );
    for l in &d.links {
        let (Some(&a), Some(&b)) = (idx.get(l.from.as_str()), idx.get(l.to.as_str())) else {
            continue;
        };
        s.push_str(&format!(
            "<line x1=\"{:.0}\" y1=\"{:.0}\" x2=\"{:.0}\" y2=\"{:.0}\" stroke=\"#555\" marker-end=\"url(#a)\"/>\n",
            pos[a].0 + w / 2.0,
            pos[a].1 + h,
            pos[b].0 + w / 2.0,
            pos[b].1
        ));
    }
    for (i, n) in d.nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let (rx, fill) = if n.kind == "receipt" {
            (2, "#e8eef8")
        } else {
            (16, "#ffffff")
        };
        let label: String = n.label.chars().take(34).collect();
        s.push_str(&format!(
            "<g><title>{}</title><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"#333\"/><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text></g>\n",
            xml(&n.id),
            x + w / 2.0,
            y + h / 2.0 + 4.0,
            xml(&label)
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// SVG through Graphviz `dot` when it is installed, else [`to_svg`].
pub fn render_svg(d: &Dag) -> (String, &'static str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if let Ok(mut child) = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        let dot = to_dot(d);
        let wrote = child
            .stdin
            .take()
            .map(|mut i| i.write_all(dot.as_bytes()).is_ok())
            .unwrap_or(false);
        if let Ok(out) = child.wait_with_output()
            && wrote
            && out.status.success()
            && !out.stdout.is_empty()
        {
            return (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                "graphviz",
            );
        }
    }
    (to_svg(d), "builtin")
}
