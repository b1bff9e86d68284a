//! Ensembles (`nnlangc ensemble`, and `eval`/`run` with `--ensemble DIR`): several trained
//! models whose predicted probabilities are averaged. An ensemble's directory lists its
//! members in `ensemble.json`: each member's source (the `model.nn` its run saved) and
//! weights, so that members may differ (the best trials of a search).

use super::{infer, load_weights, Error, Session};
use crate::plan::{Loss, Mode};
use nnlang_runtime::data::Table;
use nnlang_runtime::train::{Evaluation, Scores};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One member: the source it was trained from, and its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The `.nn` file it was trained from (its `model.nn`).
    pub source: PathBuf,
    /// Its trained weights.
    pub weights: PathBuf,
}

/// Each member's score and the ensemble's.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Each member's score, in order.
    pub members: Vec<Evaluation>,
    /// The averaged probabilities' score.
    pub ensemble: Evaluation,
}

/// The manifest's name in an ensemble's directory.
pub const MANIFEST: &str = "ensemble.json";

/// Writes `dir/ensemble.json` (paths relative to `dir` where they are inside it).
pub fn write_manifest(dir: &Path, model: &str, members: &[Member]) -> Result<(), Error> {
    let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();
    let v = json!({
        "format": "nnlang-ensemble",
        "version": 1,
        "model": model,
        "members": members.iter().map(|m| json!({"source": rel(&m.source), "weights": rel(&m.weights)})).collect::<Vec<_>>(),
    });
    let path = dir.join(MANIFEST);
    std::fs::write(&path, format!("{v:#}\n"))
        .map_err(|e| Error::Usage(format!("{}: cannot write: {e}", path.display())))
}

/// Reads `dir/ensemble.json`.
pub fn read_manifest(dir: &Path) -> Result<Vec<Member>, Error> {
    let path = dir.join(MANIFEST);
    let bad = |m: String| Error::Input(format!("{}: {m}", path.display()));
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if size > 1 << 20 {
        return Err(bad(format!("{size} bytes: not an ensemble manifest (at most 1 MiB)")));
    }
    let bytes = nnlang_runtime::data::read_maybe_gz(&path).map_err(|e| Error::Input(e.to_string()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not an ensemble manifest ({e})")))?;
    if v.get("format").and_then(Value::as_str) != Some("nnlang-ensemble") {
        return Err(bad("not an ensemble manifest (no `\"format\": \"nnlang-ensemble\"`)".into()));
    }
    let members: Vec<Member> = v
        .get("members")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some(Member {
                        source: dir.join(m.get("source")?.as_str()?),
                        weights: dir.join(m.get("weights")?.as_str()?),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if members.is_empty() {
        return Err(bad("no members".into()));
    }
    if members.len() as i64 > crate::recipe::MAX_MEMBERS {
        return Err(bad(format!("{} members: an ensemble has at most {}", members.len(), crate::recipe::MAX_MEMBERS)));
    }
    Ok(members)
}

/// The outputs of one member on `x` (`rows` examples; its inputs `xs` as f32), with its own
/// plan.
fn outputs(member: &Member, x: &Table, xs: &[f32], model: Option<&str>) -> Result<(Vec<f32>, usize), Error> {
    let s = Session::open(&member.source, &crate::Options::default())?;
    let m = s.model(model)?;
    let plan = s.plan(m, Mode::Inference, 256)?;
    if plan.sequence.is_some_and(|q| q.per_step_output) {
        return Err(Error::Usage(format!(
            "{}: an ensemble averages one prediction per example; this model predicts at every step",
            member.source.display()
        )));
    }
    if plan.inputs[0].cols != x.cols {
        return Err(Error::Input(format!(
            "{}: the member reads {} features per example, the data has {}",
            member.source.display(),
            plan.inputs[0].cols,
            x.cols
        )));
    }
    let mut exec = load_weights(&plan, &member.weights)?;
    if !x.lengths.is_empty() {
        // Sequences: batch by batch with their lengths.
        let mut y = Vec::with_capacity(x.rows() * plan.output.cols);
        for start in (0..x.rows()).step_by(plan.max_batch) {
            let n = plan.max_batch.min(x.rows() - start);
            exec.set_lengths(&x.lengths[start..start + n]);
            exec.run_on(&plan, n, &[&xs[start * x.cols..(start + n) * x.cols]], &[], None)
                .map_err(|e| Error::Input(e.to_string()))?;
            y.extend_from_slice(exec.output(&plan, n));
        }
        return Ok((y, plan.output.cols));
    }
    let y = infer(&plan, &mut exec, xs, x.cols, x.rows()).map_err(|e| Error::Input(e.to_string()))?;
    Ok((y, plan.output.cols))
}

/// Every member's outputs on a data set, their mean, and the values per row.
struct Outputs {
    each: Vec<Vec<f32>>,
    mean: Vec<f32>,
    cols: usize,
}

/// Every member's outputs on `x`, and their mean.
fn all_outputs(members: &[Member], x: &Table, model: Option<&str>) -> Result<Outputs, Error> {
    let mut each: Vec<Vec<f32>> = Vec::new();
    let mut cols = 0;
    // Converted once (inputs kept as bytes), not once per member.
    let xs = x.x_f32();
    if let Some(e) = x.inputs().failure() {
        return Err(Error::Input(e));
    }
    for m in members {
        let (y, c) = outputs(m, x, &xs, model)?;
        if each.first().is_some_and(|f| f.len() != y.len()) {
            return Err(Error::Input(format!(
                "{}: outputs of another shape than the other members'",
                m.source.display()
            )));
        }
        cols = c;
        each.push(y);
    }
    let n = each.len().max(1) as f64;
    let mean = (0..each.first().map_or(0, Vec::len))
        .map(|i| (each.iter().map(|y| f64::from(y[i])).sum::<f64>() / n) as f32)
        .collect();
    Ok(Outputs { each, mean, cols })
}

/// Every member's and the ensemble's loss and accuracy on `set`: the ensemble predicts the
/// mean of its members' probabilities.
pub fn evaluate(members: &[Member], set: &Table, loss: Loss, model: Option<&str>) -> Result<Scored, Error> {
    let Outputs { each, mean, cols } = all_outputs(members, set, model)?;
    let score = |y: &[f32]| {
        let mut sc = Scores::default();
        sc.add(loss, cols, y, &set.y);
        sc.finish(loss)
    };
    Ok(Scored { members: each.iter().map(|y| score(y)).collect(), ensemble: score(&mean) })
}
