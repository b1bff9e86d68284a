//! A model as a PyTorch module (`nnlangc export --pytorch`): one self-contained Python file
//! whose `nn.Module` computes what `nnlangc run` computes, with nnlang's parameter names, so
//! that the safetensors a run saved load into it unchanged (`load_state_dict`).
//!
//! Inputs keep nnlang's layout (volumes channels last, `[batch, height, width, depth]`);
//! convolutions and pooling permute to PyTorch's channels-first and back, so every flatten
//! and dense layer reads the order nnlang's does. What `train` did to the data
//! (`preprocess.json`) is done inside `forward`. A sequence is read whole (every step).

use crate::ir::{Graph, NodeId, Op};
use crate::ops::{Activation, Merge, PoolKind, RnnOutput};
use crate::session::data::Preprocess;
use crate::Model;

/// The activation applied to the Python expression `x` (the runtime's table writes it).
fn act(a: &Activation, x: &str) -> String {
    a.desc().pytorch.replace("{x}", x)
}

fn floats(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", items.join(", "))
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
    for id in g.ids() {
        let node = g.node(id);
        let ins: Vec<String> = node.inputs.iter().map(|&i| v(i)).collect();
        let x = ins.first().cloned().unwrap_or_default();
        let in_shape = node.inputs.first().and_then(|&i| shape(i));
        let Some(line) = layer(&node.op, &node.name, &x, &ins, (in_shape.as_ref(), shape(id)), &mut init)? else {
            continue;
        };
        body.push(format!("        {} = {line}", v(id)));
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
    let class = &g.name;
    let args = input_names.join(", ");
    let mut s = String::new();
    s.push_str(&format!(
        r#""""The nnlang model `{class}` as a PyTorch module, written by `nnlangc export --pytorch`.

Inputs are in nnlang's layout (volumes channels last: [batch, height, width, depth]);
`forward` does what `train` did to the data, then returns what `nnlangc run` writes.
Load the weights a run saved:

    from safetensors.torch import load_file
    model = {class}()
    model.load_state_dict(load_file("runs/{class}/weights.safetensors"))
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

/// One layer's Python: its line of `forward` over `x` (the first input; `ins` all of them),
/// with what `__init__` needs pushed to `init`; `None` for what is no layer (an input, the loss).
fn layer(
    op: &Op,
    name: &str,
    x: &str,
    ins: &[String],
    (in_shape, out_shape): (Option<&crate::ir::Shape>, Option<crate::ir::Shape>),
    init: &mut Vec<String>,
) -> Result<Option<String>, String> {
    let x = x.to_string();
    let seq = in_shape.is_some_and(|s| s.is_sequence());
    Ok(Some(match op {
        Op::Input(_) | Op::Loss(_) => return Ok(None),
        Op::Dense(d) => {
            let fan_in = match in_shape {
                Some(s) if s.is_sequence() => s.last().unwrap_or(0),
                Some(s) => s.elements().fixed as usize,
                None => 0,
            };
            init.push(format!("self.{name} = nn.Linear({fan_in}, {})", d.units));
            let xin = if seq { x.clone() } else { format!("{x}.reshape({x}.shape[0], -1)") };
            act(&d.activation.unwrap_or(Activation::Identity), &format!("self.{name}({xin})"))
        }
        Op::Conv(c) => {
            let depth = in_shape.and_then(|s| s.last()).unwrap_or(0);
            init.push(format!(
                "self.{name} = nn.Conv2d({depth}, {}, {}, stride={}, padding={})",
                c.filters, c.size, c.stride, c.pad
            ));
            act(
                &c.activation.unwrap_or(Activation::Identity),
                &format!("self.{name}({x}.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)"),
            )
        }
        Op::Local(l) => {
            let (Some(s), Some(o)) = (in_shape.cloned(), out_shape) else { return Err(format!("{name}: no shape")) };
            let dims: Vec<String> = s.0.iter().chain(o.0.iter()).map(|d| d.to_string()).collect();
            init.push(format!(
                "self.{name} = Local({}, {}, {}, {}, {}, {}, {}, {})",
                dims.get(2).cloned().unwrap_or_default(),
                l.filters,
                l.size,
                l.stride,
                l.pad,
                dims.get(3).cloned().unwrap_or_default(),
                dims.get(4).cloned().unwrap_or_default(),
                "None"
            ));
            act(&Activation::Identity, &format!("self.{name}({x})"))
        }
        Op::Pool(p) => {
            let nchw = format!("{x}.permute(0, 3, 1, 2)");
            let (f, s) = (p.size, p.stride);
            let pooled = match p.kind {
                PoolKind::Max => format!("F.max_pool2d({nchw}, {f}, {s})"),
                PoolKind::Avg => format!("F.avg_pool2d({nchw}, {f}, {s})"),
                PoolKind::L2 => format!("torch.sqrt(F.avg_pool2d({nchw} * {nchw}, {f}, {s}) * {})", f * f),
            };
            format!("{pooled}.permute(0, 2, 3, 1)")
        }
        Op::Flatten(_) => format!("{x}.reshape({x}.shape[0], -1)"),
        Op::Dropout(_) => x.clone(),
        Op::Activation(a) => act(&a.function, &x),
        Op::Softmax(_) => format!("torch.softmax({x}, dim=-1)"),
        Op::Softplus(_) => format!("F.softplus({x})"),
        Op::BatchNorm(bn) => {
            // PyTorch normalizes channel axis 1; nnlang keeps features last.
            let rank = in_shape.map_or(1, |s| s.rank());
            let c = in_shape.and_then(|s| s.last()).unwrap_or(0);
            let kind = if rank == 3 { "BatchNorm2d" } else { "BatchNorm1d" };
            init.push(format!(
                "self.{name} = nn.{kind}({c}, eps={}, momentum={})",
                crate::diag::fmt_f64(bn.eps),
                crate::diag::fmt_f64(bn.momentum)
            ));
            if rank == 1 {
                format!("self.{name}({x})")
            } else {
                format!("self.{name}({x}.movedim(-1, 1)).movedim(1, -1)")
            }
        }
        Op::Maxout(m) => {
            let fan_in = match in_shape {
                Some(s) if s.is_sequence() => s.last().unwrap_or(0),
                Some(s) => s.elements().fixed as usize,
                None => 0,
            };
            init.push(format!("self.{name} = nn.Linear({fan_in}, {})", m.units * m.pieces));
            let xin = if seq { x.clone() } else { format!("{x}.reshape({x}.shape[0], -1)") };
            format!("self.{name}({xin}).unflatten(-1, ({}, {})).amax(-1)", m.units, m.pieces)
        }
        Op::MaxoutChannels(m) => format!("{x}.unflatten(-1, (-1, {})).amax(-1)", m.pieces),
        Op::Add(_) => ins.join(" + "),
        Op::Concat(_) => format!("torch.cat([{}], dim=-1)", ins.join(", ")),
        Op::Rnn(r) => {
            let f = in_shape.and_then(|s| s.last()).unwrap_or(0);
            init.push(format!("self.{name} = Elman({f}, {}, {}, False)", r.hidden, r.activation.desc().pytorch_module));
            let last = r.output == RnnOutput::Last;
            format!("self.{name}({x}, {})", if last { "'last'" } else { "'sequence'" })
        }
        Op::Bidirectional(b) => {
            let f = in_shape.and_then(|s| s.last()).unwrap_or(0);
            init.push(format!("self.{name} = Elman({f}, {}, {}, True)", b.hidden, b.activation.desc().pytorch_module));
            let last = b.output == RnnOutput::Last;
            let merge = match b.merge {
                Merge::Concat => "concat",
                Merge::Add => "add",
                Merge::Mul => "mul",
            };
            format!("self.{name}.both({x}, {}, '{merge}')", if last { "'last'" } else { "'sequence'" })
        }
    }))
}
