//! What a training run leaves in its directory (the weights, the metrics as CSV, the model as
//! trained, the manifest; the command line adds the curves); the directory itself is
//! [`RunDir`]'s (`super::rundir`).

use crate::{Compiled, Model};
use nnlang_runtime::train::EpochStats;
use std::path::Path;

pub use super::rundir::{RunDir, MANIFEST};

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v}"))
}

/// One line per epoch: losses (data and penalty), training and validation accuracy, rate,
/// speed and update/weight ratios.
pub fn metrics_csv(history: &[EpochStats]) -> String {
    let mut out = String::from(
        "epoch,train_loss,penalty,train_accuracy,val_loss,val_accuracy,lr,samples_per_sec,seconds,min_update_ratio,max_update_ratio\n",
    );
    for s in history {
        let min = s.ratios.iter().map(|r| r.ratio).fold(f64::INFINITY, f64::min);
        let max = s.ratios.iter().map(|r| r.ratio).fold(0.0, f64::max);
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{:.1},{:.3},{},{}\n",
            s.epoch,
            s.train_loss,
            s.penalty,
            opt(s.train_accuracy),
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

/// Inside the model, one line per epoch and layer (activations: mean, spread, dead ReLU
/// units, saturated outputs) or parameter tensor (gradient norm, update/weight ratio).
pub fn layers_csv(history: &[EpochStats]) -> String {
    let mut out = String::from("epoch,name,kind,mean,std,dead_fraction,saturated_fraction,grad_norm,update_ratio\n");
    for s in history {
        for l in &s.layers {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},,\n",
                s.epoch,
                l.name,
                l.function,
                l.mean,
                l.std,
                opt(l.dead),
                opt(l.saturated)
            ));
        }
        for (name, g) in &s.grad_norms {
            let ratio = s.ratios.iter().find(|r| &r.name == name).map(|r| r.ratio);
            out.push_str(&format!("{},{},tensor,,,,,{},{}\n", s.epoch, name, g, opt(ratio)));
        }
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

/// `source` with every relative path of its `data` blocks (relative to `base`, the source's
/// directory) made relative to `dir`, where the source is written: a run's `model.nn` and a
/// search's `best.nn` read the same data from where they are.
pub fn relocate_data_paths(source: &str, base: &Path, dir: &Path) -> String {
    use crate::syntax::ast::{BlockKind, EntryKind, ExprKind};
    let Ok(file) = crate::syntax::parse(source) else { return source.to_string() };
    let absolute = |p: &Path| {
        std::fs::canonicalize(if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (base, dir) = (absolute(base), absolute(dir));
    let mut edits = Vec::new();
    for b in file.blocks.iter().filter(|b| b.kind == BlockKind::Data) {
        for e in &b.entries {
            let EntryKind::Assign(_, v) = &e.kind else { continue };
            let ExprKind::Call { args, .. } = &v.kind else { continue };
            for a in args {
                if let ExprKind::Str(p) = &a.value.kind {
                    if Path::new(p).is_relative() {
                        let to = relative(&dir, &base.join(p));
                        edits.push((a.value.span.start, a.value.span.end, format!("{:?}", to.display().to_string())));
                    }
                }
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = source.to_string();
    for (s, e, t) in edits {
        out.replace_range(s..e, &t);
    }
    out
}

/// `to` as seen from the directory `from` (both absolute): `../examples/data/…`.
fn relative(from: &Path, to: &Path) -> std::path::PathBuf {
    let (a, b): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c);
    }
    out
}
