//! The per-model summary of `nnlangc check`: each layer's kind, output shape, parameter
//! count and activation memory, and the totals; as a table for people and as JSON.

pub use crate::diag::thousands;
use crate::ir::{Elems, Op};
use crate::shape::Model;
use serde::Serialize;
use std::fmt::Write;

const F32: u64 = 4;

/// One layer of `nnlangc check`'s table.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    /// The layer's name.
    pub name: String,
    /// Its kind (`dense`, `conv`, …).
    pub kind: &'static str,
    /// The names of the values it reads.
    pub inputs: Vec<String>,
    /// Its settings.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Its output's shape.
    pub output_shape: crate::ir::Shape,
    /// Its number of parameters.
    pub params: u64,
    /// Bytes of this layer's output per example (f32); `per_step` bytes more per sequence step.
    pub activation_bytes: Elems,
    /// Floating-point operations of the forward pass per example (a multiply-add is 2).
    pub flops: Elems,
}

/// One input of the model.
#[derive(Clone, Debug, Serialize)]
pub struct InputRow {
    /// The input's name.
    pub name: String,
    /// Its shape.
    pub shape: crate::ir::Shape,
    /// `ids < n`: it holds token ids below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<usize>,
}

/// The model's totals.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    /// Parameters.
    pub params: u64,
    /// Bytes of the parameters (f32).
    pub param_bytes: u64,
    /// Bytes of activations per example (growing with a sequence's steps).
    pub activation_bytes: Elems,
    /// Forward FLOPs per example; a training step costs about three times as much.
    pub flops: Elems,
}

/// What `nnlangc check` prints about a model (and writes with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The model's name.
    pub model: String,
    /// Its parameters' values.
    pub params_values: serde_json::Map<String, serde_json::Value>,
    /// Its inputs.
    pub inputs: Vec<InputRow>,
    /// Its layers, in order.
    pub layers: Vec<LayerRow>,
    /// The name of the layer it returns.
    pub output: Option<String>,
    /// Every parameter tensor.
    pub parameters: Vec<crate::shape::ParamSpec>,
    /// Totals.
    pub totals: Totals,
}

/// The summary of a checked model.
pub fn summarize(model: &Model) -> Summary {
    let g = &model.graph;
    let mut layers = Vec::new();
    let mut inputs = Vec::new();
    let mut parameters = Vec::new();
    let mut act = Elems::default();
    let mut total_flops = Elems::default();
    for id in g.ids() {
        let node = g.node(id);
        let Some(Some(shape)) = model.shapes.shapes.get(id.index()) else { continue };
        let params = &model.shapes.params[id.index()];
        let count: u64 = params.iter().fold(0u64, |n, p| n.saturating_add(p.count()));
        let bytes = shape.elements().scale(F32);
        act = act + bytes;
        parameters.extend(params.iter().cloned());
        if matches!(node.op, Op::Input(_)) {
            inputs.push(InputRow {
                name: node.name.clone(),
                shape: shape.clone(),
                ids: crate::shape::ids_bound(g, id),
            });
        }
        let mut attributes = serde_json::Map::new();
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::to_value(&node.op) {
            m.remove("op");
            attributes = m;
        }
        let input = node.inputs.first().and_then(|i| model.shapes.shapes.get(i.index())).and_then(|s| s.as_ref());
        let f = flops(&node.op, input, shape, node.inputs.len());
        total_flops = total_flops + f;
        layers.push(LayerRow {
            name: node.name.clone(),
            kind: node.op.kind(),
            inputs: node.inputs.iter().map(|i| g.node(*i).name.clone()).collect(),
            attributes,
            output_shape: shape.clone(),
            params: count,
            activation_bytes: bytes,
            flops: f,
        });
    }
    let total: u64 = parameters.iter().fold(0u64, |n, p| n.saturating_add(p.count()));
    let mut params_values = serde_json::Map::new();
    for (k, v) in &g.params {
        params_values.insert(k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null));
    }
    Summary {
        model: g.name.clone(),
        params_values,
        inputs,
        layers,
        output: g.output.map(|o| g.node(o).name.clone()),
        parameters,
        totals: Totals {
            params: total,
            param_bytes: total.saturating_mul(F32),
            activation_bytes: act,
            flops: total_flops,
        },
    }
}

/// Forward FLOPs of one op per example, by the usual counts (each op's rule): a
/// multiply-add is 2; pooling and activations 1 per value read or written.
pub fn flops(op: &Op, input: Option<&crate::ir::Shape>, output: &crate::ir::Shape, n_inputs: usize) -> Elems {
    op.rules().flops(&crate::ops::FlopsCx { input, output, n_inputs })
}

/// `1.2 MFLOP`
pub fn flops_text(e: Elems) -> String {
    let one = |n: u64| {
        let v = n as f64;
        if v >= 1e9 {
            format!("{:.2} G", v / 1e9)
        } else if v >= 1e6 {
            format!("{:.2} M", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.1} k", v / 1e3)
        } else {
            format!("{n} ")
        }
    };
    let mut parts = Vec::new();
    if e.fixed > 0 {
        parts.push(one(e.fixed).trim_end().to_string());
    }
    if e.per_step > 0 {
        parts.push(format!("{}·seq", one(e.per_step).trim_end()));
    }
    if e.per_step_sq > 0 {
        parts.push(format!("{}·seq²", one(e.per_step_sq).trim_end()));
    }
    if parts.is_empty() {
        "0".to_string()
    } else {
        parts.join(" + ")
    }
}

/// `918.5 KiB`
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `1.2 KiB + 512 B·seq`
pub fn elems_bytes(e: Elems) -> String {
    let mut parts = Vec::new();
    if e.fixed > 0 || (e.per_step == 0 && e.per_step_sq == 0) {
        parts.push(bytes(e.fixed));
    }
    if e.per_step > 0 {
        parts.push(format!("{}·seq", bytes(e.per_step)));
    }
    if e.per_step_sq > 0 {
        parts.push(format!("{}·seq²", bytes(e.per_step_sq)));
    }
    parts.join(" + ")
}

/// The table shown by `nnlangc check`.
pub fn to_text(s: &Summary) -> String {
    let header = ["layer", "kind", "output", "params", "activations", "FLOPs"];
    let mut rows: Vec<[String; 6]> = vec![header.map(String::from)];
    for l in &s.layers {
        // An input of token ids says so beside its shape.
        let ids = s.inputs.iter().find(|i| i.name == l.name && l.kind == "input").and_then(|i| i.ids);
        rows.push([
            l.name.clone(),
            l.kind.to_string(),
            match ids {
                Some(n) => format!("{} ids < {n}", l.output_shape),
                None => l.output_shape.to_string(),
            },
            thousands(l.params),
            elems_bytes(l.activation_bytes),
            flops_text(l.flops),
        ]);
    }
    let mut width = [0usize; 6];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let params: Vec<String> = s.params_values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let mut out = format!("model {}({})\n", s.model, params.join(", "));
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (j, c) in r.iter().enumerate() {
            let pad = " ".repeat(width[j] - c.chars().count());
            if j >= 3 {
                let _ = write!(line, "  {pad}{c}");
            } else {
                let _ = write!(line, "  {c}{pad}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if i == 0 {
            let total: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
            let _ = writeln!(out, "  {}", "-".repeat(total));
        }
    }
    // State (running statistics) is stored with the weights but never trained: PyTorch
    // counts it apart too (buffers, not parameters).
    let state: u64 = s.parameters.iter().filter(|p| !p.role.trained()).map(|p| p.count()).sum();
    let of_which = if state > 0 { format!(", {} of them state, not trained", thousands(state)) } else { String::new() };
    let _ = writeln!(
        out,
        "  parameters: {} ({} as f32) in {} tensors{of_which}",
        thousands(s.totals.params),
        bytes(s.totals.param_bytes),
        s.parameters.len()
    );
    let _ = writeln!(
        out,
        "  activations: {} per example (f32, every layer's output)",
        elems_bytes(s.totals.activation_bytes)
    );
    for l in s.layers.iter().filter(|l| l.kind == "attention") {
        let _ = writeln!(out, "  {}", attention_memory(l));
    }
    out
}

/// What an attention layer keeps, for `check`: one head's scores at a time, and per example
/// what the backward step reads.
fn attention_memory(l: &LayerRow) -> String {
    use crate::ir::Dim;
    let d = l.output_shape.last().unwrap_or(0) as u64;
    let heads = l.attributes.get("heads").and_then(|v| v.as_u64()).unwrap_or(1);
    let steps = match l.output_shape.0.first() {
        Some(Dim::Steps { len, .. }) => Some(*len as u64),
        Some(Dim::Seq { max, .. }) => max.map(|m| m as u64),
        _ => None,
    };
    let values = |t: u64| nnlang_runtime::kernels::attention::workspace(t as usize, d as usize, heads as usize) as u64;
    let at = |t: u64| format!("{} at {t} steps", bytes(values(t) * F32));
    let work = steps.map_or("2·seq² + 2·seq·d/heads values".to_string(), at);
    let kept = Elems { fixed: 0, per_step: (4 * d + heads) * F32, per_step_sq: 0 };
    let all = steps.map_or("heads·seq²".to_string(), |t| format!("heads·seq² = {}", bytes(heads * t * t * F32)));
    format!(
        "{}: one head's [seq, seq] scores at a time (a workspace of {work} for the whole batch), recomputed by the backward pass from each query's log-sum-exp; kept per example: {} (Q, K, V, the heads' outputs, the log-sum-exps), not {all} of probabilities",
        l.name,
        match steps {
            Some(t) => format!("{} ({} at {t} steps)", elems_bytes(kept), bytes(kept.per_step * t)),
            None => elems_bytes(kept),
        }
    )
}

/// The memory of one training step, for `nnlangc check`: the planned arena beside the naive
/// sum of every buffer of the unoptimised plan. The loss and batch are the `train` block's,
/// or, without one, what the model's last layer suggests at batch 64.
pub fn memory_report(compiled: &crate::Compiled, model: &Model) -> String {
    use crate::plan::{build_at, Level, Mode};
    let (recipe, from) = match compiled.train_recipe(Some(&model.graph.name)) {
        Some(r) => (r, "its `train` block"),
        None => (crate::spec::TrainRecipe::implied(model), "no `train` block; assumed"),
    };
    let (loss, batch) = (recipe.loss, recipe.batch);
    let name = crate::ops::loss::user_name(loss);
    let optimized = build_at(model, Mode::Training(loss), batch, Level::Full);
    let naive = build_at(model, Mode::Training(loss), batch, Level::None);
    match (optimized, naive) {
        (Ok(p), Ok(n)) => {
            let (planned, naive) = ((p.arena_len as u64).saturating_mul(4), (n.naive_len as u64).saturating_mul(4));
            let saved = if naive > 0 { 100.0 * (1.0 - planned as f64 / naive as f64) } else { 0.0 };
            format!(
                "  training step (batch {batch}, {name}; {from}): arena {} planned, {} if every buffer of the unoptimised plan had its own ({saved:.0}% less); {} steps\n",
                bytes(planned),
                bytes(naive),
                p.steps.len()
            )
        }
        _ => "  training step: not planned (the model has layers that cannot run yet)\n".to_string(),
    }
}
