//! What a training run leaves in its directory besides the curves the command line draws:
//! the weights, the metrics as CSV and the model as trained. Each file is written to a
//! temporary name and renamed into place.

use crate::{Compiled, Model};
use nnlang_runtime::train::EpochStats;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v}"))
}

/// One line per epoch: losses, validation accuracy, rate, speed and update/weight ratios.
pub fn metrics_csv(history: &[EpochStats]) -> String {
    let mut out = String::from(
        "epoch,train_loss,val_loss,val_accuracy,lr,samples_per_sec,seconds,min_update_ratio,max_update_ratio\n",
    );
    for s in history {
        let min = s.ratios.iter().map(|r| r.ratio).fold(f64::INFINITY, f64::min);
        let max = s.ratios.iter().map(|r| r.ratio).fold(0.0, f64::max);
        out.push_str(&format!(
            "{},{},{},{},{},{:.1},{:.3},{},{}\n",
            s.epoch,
            s.train_loss,
            opt(s.val_loss),
            opt(s.val_accuracy),
            s.lr,
            s.samples_per_sec,
            s.seconds,
            if min.is_finite() { format!("{min:e}") } else { String::new() },
            if s.ratios.is_empty() { String::new() } else { format!("{max:e}") },
        ));
    }
    out
}

/// The model's source with each parameter's default replaced by the value it was trained
/// with, under a header saying so.
pub fn resolved_source(source: &str, compiled: &Compiled, model: &Model, note: &str) -> String {
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    if let Some(m) = compiled.file.models.iter().find(|m| m.name.name == model.graph.name) {
        for p in &m.params {
            if let (Some(default), Some((_, v))) =
                (&p.default, model.graph.params.iter().find(|(k, _)| *k == p.name.name))
            {
                edits.push((default.span.start, default.span.end, v.to_string()));
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = source.to_string();
    for (s, e, text) in edits {
        if s <= e && e <= out.len() && out.is_char_boundary(s) && out.is_char_boundary(e) {
            out.replace_range(s..e, &text);
        }
    }
    format!("// {note}\n{out}")
}
