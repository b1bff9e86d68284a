//! `rnn(hidden, activation, output)`: the Elman recurrence `h_t = g(W x_t + U h_{t-1} + b)`
//! over a sequence, and `bidirectional(rnn(…), merge)`: one such recurrence each way, merged.
//! Both run on fixed-length sequences (`kernels/rnn.rs`: the recurrence either way, and
//! backpropagation through time); sequences of variable length are checked (shapes, PyTorch
//! `nn.RNN` parameters, FLOPs) but not yet runnable.

use super::activation::{self, Activation};
use super::args::{Args, Given};
use super::gated::{gated_params, Cell};
use super::rule::{bias, sequence, weight, ParamSpec, RuleResult};
use super::tensor::{Dim, Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Step, Write};

use serde::Serialize;

/// What an RNN layer returns: every step's state, or only the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnOutput {
    /// The state at every step.
    Sequence,
    /// The state after the last step (of each sequence's own length).
    Last,
}

impl RnnOutput {
    /// The name in source.
    pub fn name(self) -> &'static str {
        match self {
            RnnOutput::Sequence => "sequence",
            RnnOutput::Last => "last",
        }
    }
}

/// How a bidirectional layer combines its two directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Both states side by side, the forward direction's first.
    Concat,
    /// Their sum.
    Add,
    /// Their elementwise product.
    Mul,
}

impl Merge {
    /// The name in source.
    pub fn name(self) -> &'static str {
        match self {
            Merge::Concat => "concat",
            Merge::Add => "add",
            Merge::Mul => "mul",
        }
    }
}

/// `rnn(hidden, activation, output)`: the Elman recurrence over a sequence's steps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rnn {
    /// State size.
    pub hidden: usize,
    /// The function of the recurrence (`tanh` by default).
    #[serde(serialize_with = "activation::ser")]
    pub activation: Activation,
    /// Every step's state or the last.
    pub output: RnnOutput,
}

/// `bidirectional(rnn(…), merge)`: the recurrence both ways, the two states merged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bidirectional {
    /// State size of each direction.
    pub hidden: usize,
    /// The function of both recurrences.
    #[serde(serialize_with = "activation::ser")]
    pub activation: Activation,
    /// Every step's states or the last (the reverse direction's last is its state at the first step).
    pub output: RnnOutput,
    /// How the directions' states combine.
    pub merge: Merge,
    /// The gated recurrence each direction runs (`bidirectional(lstm(…))`); none for `rnn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<Cell>,
    /// An LSTM's `forget_bias`, in both directions.
    #[serde(skip_serializing_if = "super::gated::is_zero")]
    pub forget_bias: f64,
}

impl Rnn {
    /// `rnn`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "rnn",
        args: &[("hidden", true), ("activation", false), ("output", false)],
        example: "`rnn(hidden = 64, activation = tanh, output = sequence)`",
        merge: false,
        positional_error: None,
        build: build_rnn,
    }];
}

impl Bidirectional {
    /// `bidirectional`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "bidirectional",
        args: &[("layer", true), ("merge", false)],
        example: "`bidirectional(lstm(64), merge = concat)`",
        merge: false,
        positional_error: None,
        build: build_bidirectional,
    }];
}

fn rnn_parts(a: &Args) -> Result<Rnn, Diagnostic> {
    let hidden = a.required_int("hidden")?;
    // The state is read off the output in backpropagation through time, and ONNX's `RNN`
    // names the function: both say which functions a recurrence may use.
    let activation = a
        .activation(|f| f.desc().onnx_rnn.is_some(), "a recurrence needs a function ONNX's RNN has")?
        .unwrap_or(Activation::Tanh);
    let output = match a.symbol("output", &["sequence", "last"])? {
        Some("last") => RnnOutput::Last,
        _ => RnnOutput::Sequence,
    };
    Ok(Rnn { hidden, activation, output })
}

fn build_rnn(a: &Args) -> Result<Op, Diagnostic> {
    rnn_parts(a).map(Op::Rnn)
}

fn build_bidirectional(a: &Args) -> Result<Op, Diagnostic> {
    let layer =
        a.get("layer").ok_or_else(|| Diagnostic::error("`bidirectional` needs a recurrence", a.call, "missing"))?;
    let Given::Call(call) = &layer.value else {
        return Err(Diagnostic::error(
            "`bidirectional` wraps a recurrent layer: `rnn(…)`, `lstm(…)` or `gru(…)`",
            layer.span,
            "expected a recurrent layer here",
        )
        .with_help("write `bidirectional(lstm(64), merge = concat)`"));
    };
    let merge = || -> Result<Merge, Diagnostic> {
        Ok(match a.symbol("merge", &["concat", "add", "mul"])? {
            Some("add") => Merge::Add,
            Some("mul") => Merge::Mul,
            _ => Merge::Concat,
        })
    };
    let (hidden, activation, output, cell, forget_bias) = match call.name.as_str() {
        "rnn" => {
            let inner = a.nested(&Rnn::LAYERS[0], layer.span, &call.args)?;
            let Rnn { hidden, activation, output } = rnn_parts(&inner)?;
            (hidden, activation, output, None, 0.0)
        }
        "lstm" | "gru" => {
            let (cell, at) = if call.name == "lstm" { (Cell::Lstm, 0) } else { (Cell::Gru, 1) };
            let inner = a.nested(&super::gated::Gated::LAYERS[at], layer.span, &call.args)?;
            let g = super::gated::settings(cell, &inner)?;
            (g.hidden, Activation::Tanh, g.output, Some(cell), g.forget_bias)
        }
        other => {
            return Err(Diagnostic::error(
                format!("`bidirectional` wraps a recurrent layer (`rnn`, `lstm` or `gru`), found `{other}`"),
                call.name_span,
                "expected `rnn`, `lstm` or `gru`",
            ))
        }
    };
    Ok(Op::Bidirectional(Bidirectional { hidden, activation, output, merge: merge()?, cell, forget_bias }))
}

fn rnn_params(layer: &str, suffix: &str, features: usize, h: usize) -> Vec<ParamSpec> {
    vec![
        weight(layer, &format!("weight_ih_l0{suffix}"), &[h, features], features, h),
        weight(layer, &format!("weight_hh_l0{suffix}"), &[h, h], h, h),
        bias(layer, &format!("bias_ih_l0{suffix}"), &[h]),
        bias(layer, &format!("bias_hh_l0{suffix}"), &[h]),
    ]
}

fn out_shape(output: RnnOutput, steps: Dim, width: usize) -> Shape {
    match output {
        RnnOutput::Sequence => Shape(vec![steps, Dim::Fixed(width)]),
        RnnOutput::Last => Shape::fixed(&[width]),
    }
}

/// FLOPs of `directions` recurrences: per step `2·h·(features + h)` each.
fn rnn_flops(cx: &FlopsCx, hidden: usize, directions: u64) -> Elems {
    let h = hidden as u64;
    let per = directions * 2 * h * (cx.input_last() + h);
    if cx.input_elems().per_step > 0 {
        Elems { fixed: 0, per_step: per, per_step_sq: 0 }
    } else {
        let steps = cx.input_dims().first().copied().unwrap_or(1);
        Elems { fixed: per * steps, per_step: 0, per_step_sq: 0 }
    }
}

impl Rnn {
    /// `(steps, hidden)` of a fixed-length run; `None` on a sequence of variable length.
    fn sizes(&self, c: &StepCx) -> Option<(usize, usize)> {
        let steps = *c.in_dims?.first()?;
        Some((steps, self.hidden))
    }
}

impl Rules for Rnn {
    /// Only the batch splits it (its kernel walks whole sequences); the activation's kinks read
    /// off the states.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        rnn_facts(step)
    }
    /// ONNX's `RNN`, forward.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let y = onnx_rnn(g, cx, self.hidden, OnnxCell::Elman(&self.activation), self.output, None)?;
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    /// The exported file's `Elman` module, with the activation as a module.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let f = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let module = self.activation.desc().pytorch_module;
        let init = c.init(format!("Elman({f}, {}, {module}, False)", self.hidden));
        let output = if self.output == RnnOutput::Last { "'last'" } else { "'sequence'" };
        Some(super::PyLayer::with(init, format!("{}({}, {output})", c.module, c.x)))
    }
    fn kind(&self) -> &'static str {
        "rnn"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hidden", self.hidden.to_string()),
            ("activation", activation::text(&self.activation)),
            ("output", self.output.name().to_string()),
        ]
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (steps, features) = sequence(cx.id, &cx.one(), "rnn")?;
        Ok((out_shape(self.output, steps, self.hidden), rnn_params(cx.name, "", features, self.hidden)))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        rnn_flops(cx, self.hidden, 1)
    }
    /// On fixed-length sequences (`[steps, features]` with a number of steps); a variable
    /// length is refused by the planner.
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    /// A `max_batch × hidden` workspace; for `output = last` every state, and (training)
    /// their gradients.
    fn scratch(&self, c: &StepCx, max_batch: usize) -> Vec<Scratch> {
        let Some((steps, h)) = self.sizes(c) else { return Vec::new() };
        let mut v = vec![Scratch::Fixed(max_batch.saturating_mul(h))];
        if self.output == RnnOutput::Last {
            v.push(Scratch::PerRow(steps.saturating_mul(h)));
            if c.training {
                v.push(Scratch::PerRow(steps.saturating_mul(h)));
            }
        }
        v
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let Some((steps, _)) = self.sizes(c) else { return Vec::new() };
        let (f, x, ws) = (self.activation, c.inputs[0], c.scratch[0]);
        let [wih, whh, bih, bhh] = [c.params[0], c.params[1], c.params[2], c.params[3]];
        match self.output {
            RnnOutput::Sequence => {
                vec![Step::Rnn {
                    f,
                    steps,
                    reverse: false,
                    x,
                    wih,
                    whh,
                    bih,
                    bhh,
                    hs: c.value,
                    ws,
                    h0: c.carry.first().copied(),
                }]
            }
            RnnOutput::Last => {
                let hs = c.scratch[1];
                vec![
                    Step::Rnn { f, steps, reverse: false, x, wih, whh, bih, bhh, hs, ws, h0: c.carry.first().copied() },
                    Step::RnnLast { steps, hs, y: c.value },
                ]
            }
        }
    }
    // Forward was h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), so now through time from
    // the last step: dz_t = dh_t f'(h_t), dh_{t-1} += dz_t W_hh; then the parameters' and the
    // input's gradients from every dz at once.
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some((steps, _)) = self.sizes(c) else { return Vec::new() };
        let (f, x, ws) = (self.activation, c.inputs[0], c.scratch[0]);
        let (wih, whh) = (c.params[0], c.params[1]);
        let [dwih, dwhh, dbih, dbhh] = [grads[0], grads[1], grads[2], grads[3]];
        let d = dx(0, false).into_opt();
        match self.output {
            RnnOutput::Sequence => vec![Step::RnnBackward {
                f,
                steps,
                reverse: false,
                x,
                wih,
                whh,
                hs: c.value,
                dhs: dy,
                ws,
                dwih,
                dwhh,
                dbih,
                dbhh,
                dx: d,
                h0: c.carry.first().copied(),
            }],
            RnnOutput::Last => {
                let (hs, dhs) = (c.scratch[1], c.scratch[2]);
                vec![
                    Step::RnnLastBackward { steps, dy, dhs },
                    Step::RnnBackward {
                        f,
                        steps,
                        reverse: false,
                        x,
                        wih,
                        whh,
                        hs,
                        dhs,
                        ws,
                        dwih,
                        dwhh,
                        dbih,
                        dbhh,
                        dx: d,
                        h0: c.carry.first().copied(),
                    },
                ]
            }
        }
    }
    fn backward_reads(&self) -> Reads {
        // The inputs (for dW_ih) and every state.
        Reads { input: true, output: true }
    }
    fn elementwise(&self) -> bool {
        false
    }
    fn carries(&self) -> Vec<usize> {
        // Its hidden state, from one window of a stream to the next.
        vec![self.hidden]
    }
    // The last state of the run, into the carried buffer (padding keeps each sequence's own).
    fn save_carried(&self, c: &StepCx) -> Vec<Step> {
        let (Some(&y), Some((steps, _))) = (c.carry.first(), self.sizes(c)) else { return Vec::new() };
        let hs = if self.output == RnnOutput::Last { c.scratch.get(1).copied() } else { Some(c.value) };
        hs.map(|hs| vec![Step::RnnLast { steps, hs, y }]).unwrap_or_default()
    }
    fn per_step(&self) -> bool {
        false
    }
}

impl Bidirectional {
    /// A gated layer's own buffers, after the shared ones: each direction's gates (forward,
    /// reverse), then, for the LSTM, each direction's cell states.
    fn gated_bufs(&self, c: &StepCx) -> Vec<ABuf> {
        let first = if c.training { 5 } else { 3 };
        c.scratch[first..].to_vec()
    }
}

impl Rules for Bidirectional {
    /// As `rnn`, for each direction.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        rnn_facts(step)
    }
    /// ONNX's `RNN`, both directions, then the merge.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let cell = match self.cell {
            None => OnnxCell::Elman(&self.activation),
            Some(Cell::Lstm) => OnnxCell::Lstm,
            Some(Cell::Gru) => OnnxCell::Gru,
        };
        let y = onnx_rnn(g, cx, self.hidden, cell, self.output, Some(self.merge))?;
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    /// The exported file's `Elman` module with both directions.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let f = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        if let Some(cell) = self.cell {
            // PyTorch's own module, both directions: its output is every step's two states
            // side by side (the forward's first), in time order.
            let class = if cell == Cell::Lstm { "LSTM" } else { "GRU" };
            let h = self.hidden;
            let init = c.init(format!("nn.{class}({f}, {h}, batch_first=True, bidirectional=True)"));
            let (fw, rv) = match self.output {
                RnnOutput::Sequence => (format!("y[..., :{h}]"), format!("y[..., {h}:]")),
                RnnOutput::Last => (format!("y[:, -1, :{h}]"), format!("y[:, 0, {h}:]")),
            };
            let merged = match self.merge {
                Merge::Concat => format!("torch.cat([{fw}, {rv}], dim=-1)"),
                Merge::Add => format!("{fw} + {rv}"),
                Merge::Mul => format!("{fw} * {rv}"),
            };
            return Some(super::PyLayer::with(init, format!("(lambda y: {merged})({}({})[0])", c.module, c.x)));
        }
        let module = self.activation.desc().pytorch_module;
        let init = c.init(format!("Elman({f}, {}, {module}, True)", self.hidden));
        let output = if self.output == RnnOutput::Last { "'last'" } else { "'sequence'" };
        let merge = match self.merge {
            Merge::Concat => "concat",
            Merge::Add => "add",
            Merge::Mul => "mul",
        };
        Some(super::PyLayer::with(init, format!("{}.both({}, {output}, '{merge}')", c.module, c.x)))
    }
    fn kind(&self) -> &'static str {
        "bidirectional"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("hidden", self.hidden.to_string())];
        match self.cell {
            None => v.push(("activation", activation::text(&self.activation))),
            Some(cell) => v.push(("cell", cell.name().to_string())),
        }
        if self.forget_bias != 0.0 {
            v.push(("forget_bias", crate::diag::fmt_f64(self.forget_bias)));
        }
        v.push(("output", self.output.name().to_string()));
        v.push(("merge", self.merge.name().to_string()));
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (steps, features) = sequence(cx.id, &cx.one(), "bidirectional")?;
        let h = self.hidden;
        let params = match self.cell {
            None => [rnn_params(cx.name, "", features, h), rnn_params(cx.name, "_reverse", features, h)].concat(),
            Some(cell) => {
                let g = (cell.gates(), self.forget_bias);
                [gated_params(cx.name, "", g, features, h), gated_params(cx.name, "_reverse", g, features, h)].concat()
            }
        };
        let width = if self.merge == Merge::Concat { 2 * h } else { h };
        Ok((out_shape(self.output, steps, width), params))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        match self.cell {
            None => rnn_flops(cx, self.hidden, 2),
            // Each direction: the gates' products and arithmetic, as `lstm` and `gru` count them.
            Some(cell) => {
                let one = super::gated::Gated { cell, hidden: self.hidden, output: self.output, forget_bias: 0.0 };
                let e = super::Rules::flops(&one, cx);
                Elems { fixed: 2 * e.fixed, per_step: 2 * e.per_step, per_step_sq: 0 }
            }
        }
    }
    /// On fixed-length sequences, as `rnn`.
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    /// The workspace; each direction's states; (training) their gradients.
    /// For gated directions also each direction's gates (`4h` per step) and, for the LSTM,
    /// cell states, after those; their workspace is `3h` per row.
    fn scratch(&self, c: &StepCx, max_batch: usize) -> Vec<Scratch> {
        let Some(&steps) = c.in_dims.and_then(|d| d.first()) else { return Vec::new() };
        let per_step = |n: usize| Scratch::PerRow(steps.saturating_mul(n).saturating_mul(self.hidden));
        let states = per_step(1);
        // For gated directions, as `lstm` and `gru` take it.
        let ws = if self.cell.is_some() { 7 * self.hidden } else { self.hidden };
        let mut v = vec![Scratch::Fixed(max_batch.saturating_mul(ws)), states, states];
        if c.training {
            v.extend([states, states]);
        }
        if let Some(cell) = self.cell {
            v.extend([per_step(4), per_step(4)]);
            if cell == Cell::Lstm {
                // Each direction's cell states with the recurrent product's workspace after.
                let cells = Scratch::PerRow(steps.saturating_mul(self.hidden).saturating_add(5 * self.hidden));
                v.extend([cells, cells]);
            }
        }
        v
    }
    // Forward runs the recurrence both ways (the reverse one from the last step, its states
    // stored in time order), then merges them step by step (or their final states).
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let Some(&steps) = c.in_dims.and_then(|d| d.first()) else { return Vec::new() };
        let (f, x, ws, hf, hr) = (self.activation, c.inputs[0], c.scratch[0], c.scratch[1], c.scratch[2]);
        let p = &c.params;
        let (merge, last) = (merge_code(self.merge), self.output == RnnOutput::Last);
        let mut v = match self.cell {
            None => vec![
                Step::Rnn {
                    f,
                    steps,
                    reverse: false,
                    x,
                    wih: p[0],
                    whh: p[1],
                    bih: p[2],
                    bhh: p[3],
                    hs: hf,
                    ws,
                    h0: None,
                },
                Step::Rnn {
                    f,
                    steps,
                    reverse: true,
                    x,
                    wih: p[4],
                    whh: p[5],
                    bih: p[6],
                    bhh: p[7],
                    hs: hr,
                    ws,
                    h0: None,
                },
            ],
            Some(cell) => {
                let g = self.gated_bufs(c);
                [(false, 0, hf), (true, 4, hr)]
                    .into_iter()
                    .map(|(reverse, k, hs)| {
                        let d = usize::from(reverse);
                        let (wih, whh, bih, bhh) = (p[k], p[k + 1], p[k + 2], p[k + 3]);
                        match cell {
                            Cell::Lstm => {
                                let (gates, cs) = (g[d], g[2 + d]);
                                Step::Lstm { steps, reverse, x, wih, whh, bih, bhh, gates, cs, hs, h0: None, c0: None }
                            }
                            Cell::Gru => {
                                Step::Gru { steps, reverse, x, wih, whh, bih, bhh, gates: g[d], hs, ws, h0: None }
                            }
                        }
                    })
                    .collect()
            }
        };
        v.push(Step::BiMerge { merge, steps, last, hf, hr, y: c.value });
        v
    }
    // Forward merged the two directions, so now each direction's states' gradient, then
    // backpropagation through time in each, both adding into the input's gradient.
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some(&steps) = c.in_dims.and_then(|d| d.first()) else { return Vec::new() };
        let (f, x, ws, hf, hr) = (self.activation, c.inputs[0], c.scratch[0], c.scratch[1], c.scratch[2]);
        let (dhf, dhr) = (c.scratch[3], c.scratch[4]);
        let (p, g) = (&c.params, grads);
        let d = dx(0, false).into_opt();
        let d2 = d.map(|(b, _)| (b, Write::Accumulate));
        let (merge, last) = (merge_code(self.merge), self.output == RnnOutput::Last);
        let (wih, whh, wih_r, whh_r) = (p[0], p[1], p[4], p[5]);
        if let Some(cell) = self.cell {
            let gb = self.gated_bufs(c);
            let mut v = vec![Step::BiMergeBackward { merge, steps, last, hf, hr, dy, dhf, dhr }];
            for (reverse, k, hs, dhs, dx) in [(false, 0, hf, dhf, d), (true, 4, hr, dhr, d2)] {
                let di = usize::from(reverse);
                let (wih, whh) = (p[k], p[k + 1]);
                let (dwih, dwhh, dbih, dbhh) = (g[k], g[k + 1], g[k + 2], g[k + 3]);
                v.push(match cell {
                    Cell::Lstm => Step::LstmBackward {
                        steps,
                        reverse,
                        x,
                        wih,
                        whh,
                        gates: gb[di],
                        cs: gb[2 + di],
                        hs,
                        dhs,
                        ws,
                        dwih,
                        dwhh,
                        dbih,
                        dbhh,
                        dx,
                        h0: None,
                        c0: None,
                    },
                    Cell::Gru => Step::GruBackward {
                        steps,
                        reverse,
                        x,
                        wih,
                        whh,
                        gates: gb[di],
                        hs,
                        dhs,
                        ws,
                        dwih,
                        dwhh,
                        dbih,
                        dbhh,
                        dx,
                        h0: None,
                    },
                });
            }
            return v;
        }
        vec![
            Step::BiMergeBackward { merge, steps, last, hf, hr, dy, dhf, dhr },
            Step::RnnBackward {
                f,
                steps,
                reverse: false,
                x,
                wih,
                whh,
                hs: hf,
                dhs: dhf,
                ws,
                dwih: g[0],
                dwhh: g[1],
                dbih: g[2],
                dbhh: g[3],
                dx: d,
                h0: None,
            },
            Step::RnnBackward {
                f,
                steps,
                reverse: true,
                x,
                wih: wih_r,
                whh: whh_r,
                hs: hr,
                dhs: dhr,
                ws,
                dwih: g[4],
                dwhh: g[5],
                dbih: g[6],
                dbhh: g[7],
                dx: d2,
                h0: None,
            },
        ]
    }
    fn backward_reads(&self) -> Reads {
        Reads { input: true, output: true }
    }
    fn elementwise(&self) -> bool {
        false
    }
    fn carries(&self) -> Vec<usize> {
        // It reads the future: nothing carries from one window to the next.
        Vec::new()
    }
    fn save_carried(&self, _: &StepCx) -> Vec<Step> {
        Vec::new()
    }
    fn per_step(&self) -> bool {
        false
    }
}

/// The runtime's code for a merge (`kernels::rnn::{CONCAT, ADD, MUL}`).
fn merge_code(m: Merge) -> usize {
    match m {
        Merge::Concat => nnlang_runtime::kernels::rnn::CONCAT,
        Merge::Add => nnlang_runtime::kernels::rnn::ADD,
        Merge::Mul => nnlang_runtime::kernels::rnn::MUL,
    }
}

/// Which ONNX recurrence a layer is written as.
#[derive(Clone, Copy)]
pub(super) enum OnnxCell<'a> {
    /// `RNN`, with the layer's function.
    Elman(&'a Activation),
    /// `LSTM` (PyTorch's gates `i, f, g, o` reordered to ONNX's `i, o, f, c`).
    Lstm,
    /// `GRU` (PyTorch's `r, z, n` reordered to ONNX's `z, r, h`; `linear_before_reset`, as
    /// PyTorch computes `n`).
    Gru,
}

impl OnnxCell<'_> {
    /// The operator, and for each of its gate blocks, which of PyTorch's blocks it is.
    fn op(self) -> (&'static str, &'static [usize]) {
        match self {
            OnnxCell::Elman(_) => ("RNN", &[0]),
            OnnxCell::Lstm => ("LSTM", &[0, 3, 1, 2]),
            OnnxCell::Gru => ("GRU", &[1, 0, 2]),
        }
    }
}

/// `v` (gate blocks of `block` values each, in PyTorch's order) in ONNX's order.
fn reorder(v: &[f32], block: usize, order: &[usize]) -> Vec<f32> {
    order.iter().flat_map(|&k| v[k * block..(k + 1) * block].iter().copied()).collect()
}

/// An ONNX `RNN`, `LSTM` or `GRU` over `[batch, steps, features]` (time-major inside), its
/// output back in nnlang's layout: every step's state, or the last (the backward direction's
/// last is its state at the first step), the two directions merged as `merge` says.
pub(super) fn onnx_rnn(
    g: &mut dyn super::onnx::OnnxGraph,
    cx: &super::onnx::OnnxCx,
    hidden: usize,
    cell: OnnxCell,
    output: RnnOutput,
    merge: Option<Merge>,
) -> Result<String, String> {
    use super::onnx::Attr;
    let (src, name) = (cx.input()?, cx.name);
    let features = g.shape(src)?.last().ok_or_else(|| format!("`{name}`: its input has no fixed width"))?;
    let x = g.value(src, super::onnx::Layout::ChannelsLast)?;
    let dirs: &[&str] = if merge.is_some() { &["", "_reverse"] } else { &[""] };
    let (op, order) = cell.op();
    let gh = order.len() * hidden;
    let (mut w, mut r, mut bias) = (Vec::new(), Vec::new(), Vec::new());
    for sfx in dirs {
        w.extend(reorder(&g.param(cx.id, &format!("weight_ih_l0{sfx}"))?, hidden * features, order));
        r.extend(reorder(&g.param(cx.id, &format!("weight_hh_l0{sfx}"))?, hidden * hidden, order));
        bias.extend(reorder(&g.param(cx.id, &format!("bias_ih_l0{sfx}"))?, hidden, order));
        bias.extend(reorder(&g.param(cx.id, &format!("bias_hh_l0{sfx}"))?, hidden, order));
    }
    let d = dirs.len();
    let w = g.tensor(&format!("{name}.W"), &[d, gh, features], &w);
    let r = g.tensor(&format!("{name}.R"), &[d, gh, hidden], &r);
    let bias = g.tensor(&format!("{name}.B"), &[d, 2 * gh], &bias);
    let xt = g.node("Transpose", &[&x], vec![Attr::Ints("perm", vec![1, 0, 2])], &format!("{name}/time_major"));
    let mut attrs = vec![
        Attr::Int("hidden_size", hidden as i64),
        Attr::Str("direction", if d == 2 { "bidirectional" } else { "forward" }.to_string()),
    ];
    match cell {
        OnnxCell::Elman(act) => {
            let (f, ab) = act.desc().onnx_rnn.ok_or_else(|| format!("`{name}`: ONNX's RNN has no `{}`", act.name()))?;
            attrs.push(Attr::Strs("activations", vec![f.to_string(); d]));
            if let Some((alpha, beta)) = ab {
                attrs.push(Attr::Floats("activation_alpha", vec![alpha; d]));
                if f == "Affine" {
                    attrs.push(Attr::Floats("activation_beta", vec![beta; d]));
                }
            }
        }
        OnnxCell::Lstm => {}
        OnnxCell::Gru => attrs.push(Attr::Int("linear_before_reset", 1)),
    }
    // Each sequence's own length, where the graph has them: the reverse direction then starts
    // at each sequence's end and `Y_h` holds each one's last state, as `run` computes them.
    let lengths = g.lengths();
    let mut ins: Vec<&str> = vec![&xt, &w, &r, &bias];
    ins.extend(lengths.as_deref());
    let outs = g.node_outputs(
        op,
        &ins,
        attrs,
        &[&format!("{name}/Y"), &format!("{name}/Y_h")],
        &format!("{name}/{}", op.to_lowercase()),
    );
    let [ys, yh] = [&outs[0], &outs[1]];
    // [steps, dirs, batch, hidden] → [batch, steps, dirs, hidden]; [dirs, batch, hidden] →
    // [batch, dirs, hidden]: the direction axis sits just before the features.
    let batch_major = format!("{name}/batch_major");
    let (states, dir_axis) = match output {
        RnnOutput::Sequence => {
            (g.node("Transpose", &[ys], vec![Attr::Ints("perm", vec![2, 0, 1, 3])], &batch_major), 2)
        }
        RnnOutput::Last => (g.node("Transpose", &[yh], vec![Attr::Ints("perm", vec![1, 0, 2])], &batch_major), 1),
    };
    Ok(match merge {
        None | Some(Merge::Concat) => {
            let shape: &[i64] = if dir_axis == 2 { &[0, 0, -1] } else { &[0, -1] };
            let s = g.ints(&format!("{name}/shape"), shape);
            g.node("Reshape", &[&states, &s], vec![], name)
        }
        Some(Merge::Add) => {
            let axes = g.ints(&format!("{name}/dir_axis"), &[dir_axis]);
            g.node("ReduceSum", &[&states, &axes], vec![Attr::Int("keepdims", 0)], name)
        }
        Some(Merge::Mul) => {
            g.node("ReduceProd", &[&states], vec![Attr::Ints("axes", vec![dir_axis]), Attr::Int("keepdims", 0)], name)
        }
    })
}

/// An Elman layer's steps: shared by the batch only; the activation's kinks read off the states.
fn rnn_facts(step: &Step) -> nnlang_runtime::plan::StepFacts {
    use nnlang_runtime::plan::{Kink, Share, StepFacts};
    let kink = match step {
        Step::Rnn { f, hs, .. } => Kink::of(*f, *hs, true),
        _ => None,
    };
    StepFacts { share: Share::Batch, kink, meeting: 0 }
}
