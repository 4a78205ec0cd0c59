//! `asl-image diff-builds A B`: which step's output first differs between two builds.
//!
//! Both builds' receipts are read (`OUT.build/steps.json` gives the order, each
//! `receipts/NN-STEP/receipt.json` the declared inputs and outputs with their content
//! references). Steps are matched by name, in A's order; a step that only one build ran (the
//! bootstrap, when the other found its base in the cache) is listed and skipped. For the
//! first step whose outputs differ, the report also says whether its declared inputs differed:
//! different inputs point upstream (a changed binary, a changed package set), equal inputs
//! point at the step itself (a tool that is not reproducible).
//!
//! References are compared by position, not by path: two builds live in different
//! directories, so their paths differ while the step's code gives the same order.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::ImageError;
use super::build::{StepRecord, build_dir};

/// One declared input or output whose content differs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Changed {
    /// The path in build A.
    pub path: String,
    pub a: String,
    pub b: String,
}

/// The first step whose outputs differ.
#[derive(Debug, Clone, Serialize)]
pub struct StepDiff {
    pub step: String,
    pub outputs: Vec<Changed>,
    pub inputs: Vec<Changed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildDiff {
    /// Steps run in both builds and compared, in order.
    pub compared: Vec<String>,
    /// Steps run in only one of them.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    /// `None` when every compared step has the same outputs.
    pub first_difference: Option<StepDiff>,
}

struct Step {
    name: String,
    inputs: Vec<(String, String)>,
    outputs: Vec<(String, String)>,
}

fn refs(v: &Value, field: &str) -> Vec<(String, String)> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    let s = |k: &str| x.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("path"), s("reference"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn load(iso: &Path) -> Result<Vec<Step>, ImageError> {
    let dir = if iso.is_dir() {
        iso.to_path_buf()
    } else {
        build_dir(iso)
    };
    let p = dir.join("steps.json");
    let bad = |path: &PathBuf, message: String| ImageError::Record {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&p).map_err(ImageError::io(&p))?;
    let steps: Vec<StepRecord> = serde_json::from_str::<Vec<Value>>(&text)
        .map_err(|e| bad(&p, e.to_string()))?
        .into_iter()
        .map(|v| StepRecord {
            step: v["step"].as_str().unwrap_or("").into(),
            receipt: v["receipt"].as_str().unwrap_or("").into(),
            dir: v["dir"].as_str().unwrap_or("").into(),
            seconds: 0.0,
        })
        .collect();
    let mut out = Vec::new();
    for s in steps {
        let rp = dir.join(&s.dir).join("receipt.json");
        let text = std::fs::read_to_string(&rp).map_err(ImageError::io(&rp))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(&rp, e.to_string()))?;
        let inputs = refs(&v["action"], "inputs");
        let outputs = refs(&v, "outputs");
        out.push(Step {
            name: s.step,
            inputs,
            outputs,
        });
    }
    Ok(out)
}

fn changed(a: &[(String, String)], b: &[(String, String)]) -> Vec<Changed> {
    let mut v = Vec::new();
    for i in 0..a.len().max(b.len()) {
        let (pa, ra) = a.get(i).cloned().unwrap_or_default();
        let (pb, rb) = b.get(i).cloned().unwrap_or_default();
        if ra != rb {
            v.push(Changed {
                path: if pa.is_empty() { pb } else { pa },
                a: ra,
                b: rb,
            });
        }
    }
    v
}

/// Compares build A with build B (each given by its ISO or its `.build` directory).
pub fn diff_builds(a: &Path, b: &Path) -> Result<BuildDiff, ImageError> {
    let sa = load(a)?;
    let sb = load(b)?;
    let names_b: Vec<&str> = sb.iter().map(|s| s.name.as_str()).collect();
    let names_a: Vec<&str> = sa.iter().map(|s| s.name.as_str()).collect();
    let mut d = BuildDiff {
        compared: Vec::new(),
        only_in_a: names_a
            .iter()
            .filter(|n| !names_b.contains(n))
            .map(|s| s.to_string())
            .collect(),
        only_in_b: names_b
            .iter()
            .filter(|n| !names_a.contains(n))
            .map(|s| s.to_string())
            .collect(),
        first_difference: None,
    };
    for x in &sa {
        let Some(y) = sb.iter().find(|y| y.name == x.name) else {
            continue;
        };
        d.compared.push(x.name.clone());
        let outputs = changed(&x.outputs, &y.outputs);
        if !outputs.is_empty() {
            d.first_difference = Some(StepDiff {
                step: x.name.clone(),
                outputs,
                inputs: changed(&x.inputs, &y.inputs),
            });
            break;
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, steps: &[(&str, &[&str], &[&str])]) {
        std::fs::create_dir_all(dir).unwrap();
        let mut list = Vec::new();
        for (i, (name, ins, outs)) in steps.iter().enumerate() {
            let rd = format!("receipts/{:02}-{name}", i + 1);
            std::fs::create_dir_all(dir.join(&rd)).unwrap();
            let e = |v: &[&str]| -> Vec<Value> {
                v.iter()
                    .enumerate()
                    .map(|(k, r)| serde_json::json!({"path": format!("/p{k}"), "reference": r}))
                    .collect()
            };
            let receipt = serde_json::json!({"action": {"inputs": e(ins)}, "outputs": e(outs)});
            std::fs::write(dir.join(&rd).join("receipt.json"), receipt.to_string()).unwrap();
            list.push(serde_json::json!({"step": name, "receipt": "r", "dir": rd, "seconds": 1.0}));
        }
        std::fs::write(dir.join("steps.json"), Value::Array(list).to_string()).unwrap();
    }

    #[test]
    fn names_the_first_step_whose_outputs_differ_and_whether_its_inputs_did() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.build"), d.path().join("b.build"));
        record(
            &a,
            &[
                ("resolve", &[], &["x"]),
                ("bootstrap", &["x"], &["t"]),
                ("overlay", &["bin1"], &["o1"]),
                ("iso", &["o1"], &["i1"]),
            ],
        );
        record(
            &b,
            &[
                ("resolve", &[], &["x"]),
                ("overlay", &["bin2"], &["o2"]),
                ("iso", &["o2"], &["i2"]),
            ],
        );
        let r = diff_builds(&a, &b).unwrap();
        assert_eq!(r.only_in_a, vec!["bootstrap"]);
        let f = r.first_difference.unwrap();
        assert_eq!(f.step, "overlay");
        assert_eq!(f.inputs[0].a, "bin1");
        assert_eq!(f.outputs[0].b, "o2");
        assert_eq!(r.compared, vec!["resolve", "overlay"]);
    }

    #[test]
    fn identical_builds_have_no_difference() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.build"), d.path().join("b.build"));
        record(&a, &[("iso", &["o"], &["i"])]);
        record(&b, &[("iso", &["o"], &["i"])]);
        assert!(diff_builds(&a, &b).unwrap().first_difference.is_none());
    }
}
