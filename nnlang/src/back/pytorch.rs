//! A model as a PyTorch module (`nnlangc export --pytorch`): one self-contained Python file
//! whose `nn.Module` computes what `nnlangc run` computes, with nnlang's parameter names, so
//! that the safetensors a run saved load into it unchanged (`load_state_dict`).
//!
//! Inputs keep nnlang's layout (volumes channels last, `[batch, height, width, depth]`);
//! convolutions and pooling permute to PyTorch's channels-first and back, so every flatten
//! and dense layer reads the order nnlang's does. What `train` did to the data
//! (`preprocess.json`) is done inside `forward`. A sequence is read whole (every step).

use crate::ir::{Graph, NodeId};
use crate::ops::PyCx;
use crate::session::data::Preprocess;
use crate::Model;

fn floats(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// Python's keywords: a layer named one of them is reached with `getattr`/`setattr` (its
/// tensors keep their names), a model named one of them gets a suffix `_`.
const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// Names the file itself uses at module level (imports, helper modules): a model class of
/// one of these names would shadow it.
const PYTHON_TAKEN: &[&str] = &["torch", "nn", "F", "Elman", "Local", "Sinusoids", "padding", "load_file"];

/// How Python reaches the module at `parts` below `self`: `self.a.b`, with
/// `getattr(…, "class")` for a part that is a keyword.
fn attribute_path(parts: &[&str]) -> String {
    parts.iter().fold("self".to_string(), |acc, part| {
        if PYTHON_KEYWORDS.contains(part) {
            format!("getattr({acc}, {part:?})")
        } else {
            format!("{acc}.{part}")
        }
    })
}

/// The class name of the model named `name` in the exported file: the name, or with a suffix
/// `_` where Python cannot take it.
pub fn class_name(name: &str) -> String {
    if PYTHON_KEYWORDS.contains(&name) || PYTHON_TAKEN.contains(&name) {
        format!("{name}_")
    } else {
        name.to_string()
    }
}

/// The Python source of `model`, with `pre` (the preprocessing saved with its weights)
/// inside `forward`.
pub fn generate(model: &Model, pre: Option<&Preprocess>) -> Result<String, String> {
    let g: &Graph = &model.graph;
    let shape = |id: NodeId| model.shapes.shapes[id.index()].clone();
    let mut init = Vec::new();
    let mut body = Vec::new();
    let v = |id: NodeId| format!("v{}", id.0);
    let input_names: Vec<String> = g.inputs.iter().map(|&i| format!("v{}", i.0)).collect();
    let mut containers = std::collections::HashSet::new();
    for id in g.ids() {
        let node = g.node(id);
        let ins: Vec<String> = node.inputs.iter().map(|&i| v(i)).collect();
        let x = ins.first().cloned().unwrap_or_default();
        let in_shape = node.inputs.first().and_then(|&i| shape(i));
        let out_shape = shape(id);
        // A layer inside a block's use lives in a container module per use, so that its
        // tensors' names (`stage1.residual_0.conv_0.weight`) are PyTorch's state-dict keys.
        let parts: Vec<&str> = node.name.split('.').collect();
        let (attr, outer) = parts.split_last().map_or(("", &[][..]), |(a, o)| (*a, o));
        for k in 1..=outer.len() {
            let path = outer[..k].join(".");
            if containers.insert(path) {
                let (parent, part) = (attribute_path(&outer[..k - 1]), outer[k - 1]);
                init.push(if PYTHON_KEYWORDS.contains(&part) {
                    format!("setattr({parent}, {part:?}, nn.Module())")
                } else {
                    format!("{parent}.{part} = nn.Module()")
                });
            }
        }
        let module = attribute_path(&parts);
        let parent = attribute_path(outer);
        let cx = PyCx {
            name: &node.name,
            module: &module,
            parent: &parent,
            attr,
            x: &x,
            ins: &ins,
            in_shape: in_shape.as_ref(),
            out_shape: out_shape.as_ref(),
        };
        // Each op writes its own text (`ops::Rules::pytorch`).
        let Some(layer) = node.op.rules().pytorch(&cx) else { continue };
        init.extend(layer.init);
        body.push(format!("        {} = {}", v(id), layer.forward));
    }
    let out = g.output.ok_or("the model has no output")?;
    let mut pre_lines = Vec::new();
    if let Some(p) = pre {
        for x in &input_names {
            if let Some(s) = p.scale {
                pre_lines.push(format!("        {x} = {x} * {s:?}"));
            }
            if p.standardize.is_some() {
                pre_lines.push(format!(
                    "        {x} = ((({x}).reshape({x}.shape[0], -1, self.mean.numel()) - self.mean) / self.std).reshape({x}.shape)"
                ));
            }
        }
    }
    let (mean, std) = match pre.and_then(|p| p.standardize.as_ref()) {
        Some((m, s)) => (floats(m), floats(s)),
        None => ("[]".to_string(), "[]".to_string()),
    };
    let class = &class_name(&g.name);
    let run = &g.name;
    let mut args = input_names.join(", ");
    // Attention masks each sequence's padding: `forward` takes the batch's lengths.
    if g.nodes.iter().any(|n| matches!(n.op, crate::ops::Op::Attention(_))) {
        args.push_str(", lengths=None");
    }
    let mut s = String::new();
    s.push_str(&format!(
        r#""""The nnlang model `{class}` as a PyTorch module, written by `nnlangc export --pytorch`.

Inputs are in nnlang's layout (volumes channels last: [batch, height, width, depth]);
`forward` does what `train` did to the data, then returns what `nnlangc run` writes.
Load the weights a run saved:

    from safetensors.torch import load_file
    model = {class}()
    model.load_state_dict(load_file("runs/{run}/weights.safetensors"))
"""
import torch
from torch import nn
import torch.nn.functional as F


class Elman(nn.Module):
    """nnlang's `rnn` (and, with `bidirectional`, both directions): PyTorch nn.RNN's
    parameters and names, any of nnlang's activations (a module without parameters)."""

    def __init__(self, features, hidden, act, bidirectional):
        super().__init__()
        self.act = act
        self.weight_ih_l0 = nn.Parameter(torch.zeros(hidden, features))
        self.weight_hh_l0 = nn.Parameter(torch.zeros(hidden, hidden))
        self.bias_ih_l0 = nn.Parameter(torch.zeros(hidden))
        self.bias_hh_l0 = nn.Parameter(torch.zeros(hidden))
        if bidirectional:
            self.weight_ih_l0_reverse = nn.Parameter(torch.zeros(hidden, features))
            self.weight_hh_l0_reverse = nn.Parameter(torch.zeros(hidden, hidden))
            self.bias_ih_l0_reverse = nn.Parameter(torch.zeros(hidden))
            self.bias_hh_l0_reverse = nn.Parameter(torch.zeros(hidden))

    def f(self, z):
        return self.act(z)

    def run(self, x, w_ih, w_hh, b_ih, b_hh, reverse):
        steps = x.shape[1]
        h = x.new_zeros(x.shape[0], w_hh.shape[0])
        out = [None] * steps
        for t in (reversed(range(steps)) if reverse else range(steps)):
            h = self.f(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
            out[t] = h
        return torch.stack(out, dim=1)

    def forward(self, x, output):
        hs = self.run(x, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0, False)
        return hs[:, -1] if output == "last" else hs

    def both(self, x, output, merge):
        hf = self.run(x, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0, False)
        hr = self.run(x, self.weight_ih_l0_reverse, self.weight_hh_l0_reverse, self.bias_ih_l0_reverse,
                      self.bias_hh_l0_reverse, True)
        if output == "last":
            hf, hr = hf[:, -1], hr[:, 0]
        if merge == "concat":
            return torch.cat([hf, hr], dim=-1)
        return hf + hr if merge == "add" else hf * hr


class Local(nn.Module):
    """nnlang's locally-connected layer: a filter per output position, weight
    [oh, ow, k, d, f, f], bias [oh, ow, k]; channels last in and out."""

    def __init__(self, depth, filters, size, stride, pad, oh, ow, _unused):
        super().__init__()
        self.size, self.stride, self.pad = size, stride, pad
        self.weight = nn.Parameter(torch.zeros(oh, ow, filters, depth, size, size))
        self.bias = nn.Parameter(torch.zeros(oh, ow, filters))

    def forward(self, x):
        n, oh, ow = x.shape[0], self.weight.shape[0], self.weight.shape[1]
        cols = F.unfold(x.permute(0, 3, 1, 2), self.size, padding=self.pad, stride=self.stride)
        cols = cols.reshape(n, -1, self.size, self.size, oh, ow)
        return torch.einsum("ndyxij,ijkdyx->nijk", cols, self.weight) + self.bias


class Sinusoids(nn.Module):
    """nnlang's `positions(n, sinusoidal = true)`: PE[t, 2i] = sin(t / 10000^(2i/d)),
    PE[t, 2i + 1] = cos(…), a buffer (not saved with the weights)."""

    def __init__(self, n, d):
        super().__init__()
        t = torch.arange(n, dtype=torch.float64)[:, None]
        i = torch.arange(d, dtype=torch.float64)[None, :]
        angle = t / 10000 ** (2 * torch.div(i, 2, rounding_mode="floor") / d)
        pe = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
        self.register_buffer("pe", pe.float(), persistent=False)


def padding(lengths, x):
    """`key_padding_mask` of a batch `x` [batch, steps, …] whose sequences have `lengths`
    (None: every sequence fills the steps): True at the padding."""
    if lengths is None:
        return None
    return torch.arange(x.shape[1], device=x.device)[None, :] >= lengths.to(x.device)[:, None]


class {class}(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor({mean}), persistent=False)
        self.register_buffer("std", torch.tensor({std}), persistent=False)
"#
    ));
    for l in &init {
        s.push_str(&format!("        {l}\n"));
    }
    s.push_str(&format!("\n    def forward(self, {args}):\n"));
    for l in pre_lines.iter().chain(&body) {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(&format!("        return v{}\n", out.0));
    Ok(s)
}
