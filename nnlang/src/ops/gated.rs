//! `lstm(hidden, output)` and `gru(hidden, output)`: the gated recurrences over a sequence
//! (PyTorch's `nn.LSTM` and `nn.GRU`, one layer, one direction: their parameter names,
//! layouts and gate orders, so that checkpoints load in PyTorch unchanged). They run where
//! `rnn` runs — fixed-length and ragged batches (padding changes nothing), stacked, with
//! per-step layers and losses after them, and under `bptt` with their states carried from
//! one window to the next (the LSTM carries `h` and `c`). Kernels: `kernels/gated.rs`.

use super::args::Args;
use super::rnn::{onnx_rnn, OnnxCell, RnnOutput};
use super::rule::{bias, sequence, weight, ParamSpec, RuleResult};
use super::tensor::{Dim, Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Role, Step};

use serde::Serialize;

/// Which gated recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// Long short-term memory: gates `i, f, g, o`, a cell state beside the hidden one.
    Lstm,
    /// Gated recurrent unit: gates `r, z, n`.
    Gru,
}

impl Cell {
    /// The layer's name in source.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
        }
    }
    /// Gate blocks in the weights (`4h` or `3h` rows).
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// `lstm(hidden, output)` or `gru(hidden, output)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gated {
    /// Which recurrence.
    pub cell: Cell,
    /// State size.
    pub hidden: usize,
    /// Every step's state or the last.
    pub output: RnnOutput,
    /// Where the LSTM's forget-gate block of `bias_ih` starts (0: all biases start at zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub forget_bias: f64,
}

/// Whether a setting is at its default of zero (left out of the IR's JSON).
pub(super) fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Gated {
    /// `lstm` and `gru`.
    pub const LAYERS: &'static [Layer] = &[
        Layer {
            name: "lstm",
            args: &[("hidden", true), ("output", false), ("forget_bias", false)],
            example: "`lstm(hidden = 128, output = sequence, forget_bias = 1)`",
            merge: false,
            positional_error: None,
            build: build_lstm,
        },
        Layer {
            name: "gru",
            args: &[("hidden", true), ("output", false)],
            example: "`gru(hidden = 128, output = sequence)`",
            merge: false,
            positional_error: None,
            build: build_gru,
        },
    ];

    /// `(steps, hidden)` of a fixed-length run; `None` on a sequence of variable length.
    fn sizes(&self, c: &StepCx) -> Option<(usize, usize)> {
        let steps = *c.in_dims?.first()?;
        Some((steps, self.hidden))
    }
}

/// The layer's settings from its arguments.
pub(super) fn settings(cell: Cell, a: &Args) -> Result<Gated, Diagnostic> {
    let hidden = a.required_int("hidden")?;
    let output = match a.symbol("output", &["sequence", "last"])? {
        Some("last") => RnnOutput::Last,
        _ => RnnOutput::Sequence,
    };
    // Only `lstm` declares `forget_bias`: a GRU has no forget gate, and the argument is
    // refused there as any unknown one is.
    let forget_bias = match cell {
        Cell::Lstm => a.number_in("forget_bias", -100.0, 100.0, false, "[-100, 100]")?.map_or(0.0, |v| v.0),
        Cell::Gru => 0.0,
    };
    Ok(Gated { cell, hidden, output, forget_bias })
}

fn parts(cell: Cell, a: &Args) -> Result<Op, Diagnostic> {
    settings(cell, a).map(Op::Gated)
}

fn build_lstm(a: &Args) -> Result<Op, Diagnostic> {
    parts(Cell::Lstm, a)
}

fn build_gru(a: &Args) -> Result<Op, Diagnostic> {
    parts(Cell::Gru, a)
}

/// PyTorch's four tensors of one direction (`suffix` `_reverse` for the other): `[g·h,
/// features]`, `[g·h, h]`, `[g·h]`, `[g·h]`; an LSTM's `forget_bias` starts the forget
/// gate's block (`h..2h`) of `bias_ih` there.
pub(super) fn gated_params(
    layer: &str,
    suffix: &str,
    (gates, forget_bias): (usize, f64),
    features: usize,
    h: usize,
) -> Vec<ParamSpec> {
    let gh = gates * h;
    let mut b_ih = bias(layer, &format!("bias_ih_l0{suffix}"), &[gh]);
    if forget_bias != 0.0 {
        b_ih.role = Role::GateBias { from: h, len: h, init: forget_bias };
    }
    vec![
        // Each gate's unit reads the input (or the state): fan-in `features` (or `h`).
        weight(layer, &format!("weight_ih_l0{suffix}"), &[gh, features], features, gh),
        weight(layer, &format!("weight_hh_l0{suffix}"), &[gh, h], h, gh),
        b_ih,
        bias(layer, &format!("bias_hh_l0{suffix}"), &[gh]),
    ]
}

impl Rules for Gated {
    /// Only the batch splits it (its kernel walks whole sequences); smooth everywhere.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Share, StepFacts};
        StepFacts { share: Share::Batch, kink: None, meeting: 0 }
    }
    /// ONNX's `LSTM` / `GRU`, forward.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let cell = if self.cell == Cell::Lstm { OnnxCell::Lstm } else { OnnxCell::Gru };
        let y = onnx_rnn(g, cx, self.hidden, cell, self.output, None)?;
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    /// PyTorch's own `nn.LSTM` / `nn.GRU` (`batch_first`): the same tensors under the same names.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let f = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let class = if self.cell == Cell::Lstm { "LSTM" } else { "GRU" };
        let init = c.init(format!("nn.{class}({f}, {}, batch_first=True)", self.hidden));
        let pick = if self.output == RnnOutput::Last { "[:, -1]" } else { "" };
        Some(super::PyLayer::with(init, format!("{}({})[0]{pick}", c.module, c.x)))
    }
    fn kind(&self) -> &'static str {
        self.cell.name()
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("hidden", self.hidden.to_string()), ("output", self.output.name().to_string())];
        if self.forget_bias != 0.0 {
            v.push(("forget_bias", crate::diag::fmt_f64(self.forget_bias)));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (steps, features) = sequence(cx.id, &cx.one(), self.cell.name())?;
        let out = match self.output {
            RnnOutput::Sequence => Shape(vec![steps, Dim::Fixed(self.hidden)]),
            RnnOutput::Last => Shape::fixed(&[self.hidden]),
        };
        Ok((out, gated_params(cx.name, "", (self.cell.gates(), self.forget_bias), features, self.hidden)))
    }
    /// Per step: the products `2·g·h·(features + h)`, and the gates' arithmetic (`~10·h`).
    fn flops(&self, cx: &FlopsCx) -> Elems {
        let (h, g) = (self.hidden as u64, self.cell.gates() as u64);
        let per = 2 * g * h * (cx.input_last() + h) + 10 * h;
        if cx.input_elems().per_step > 0 {
            Elems { fixed: 0, per_step: per, per_step_sq: 0 }
        } else {
            let steps = cx.input_dims().first().copied().unwrap_or(1);
            Elems { fixed: per * steps, per_step: 0, per_step_sq: 0 }
        }
    }
    /// On fixed-length sequences (`[steps, features]` with a number of steps); a variable
    /// length is refused by the planner.
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    /// The gates of every step (`4h` per step, for the GRU its three gates and `W_hn h + b_hn`),
    /// the LSTM's cell states, a workspace (the LSTM's cell-state gradient while training, the
    /// GRU's recurrent projections of one step), and for `output = last` every state and
    /// (training) their gradients.
    fn scratch(&self, c: &StepCx, max_batch: usize) -> Vec<Scratch> {
        let Some((steps, h)) = self.sizes(c) else { return Vec::new() };
        let per_step = |n: usize| Scratch::PerRow(steps.saturating_mul(n).saturating_mul(h));
        let mut v = vec![per_step(4)];
        v.push(match self.cell {
            // The cell states, and a tail of `5h` per row: the recurrent product's workspace.
            Cell::Lstm => Scratch::PerRow(steps.saturating_mul(h).saturating_add(5 * h)),
            // Not used: the GRU keeps no cell state (a placeholder keeps the indices alike).
            Cell::Gru => Scratch::Fixed(0),
        });
        // The LSTM's backward step: `h` for the cell state's gradient and `5h` for the recurrent
        // products; the GRU's steps: `3h` for one step's recurrent projections and `4h` for the
        // products.
        v.push(Scratch::Fixed(max_batch.saturating_mul(h).saturating_mul(7)));
        if self.output == RnnOutput::Last {
            v.push(per_step(1));
            if c.training {
                v.push(per_step(1));
            }
        }
        v
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let Some((steps, _)) = self.sizes(c) else { return Vec::new() };
        let (x, gates, cs, ws) = (c.inputs[0], c.scratch[0], c.scratch[1], c.scratch[2]);
        let [wih, whh, bih, bhh] = [c.params[0], c.params[1], c.params[2], c.params[3]];
        let hs = if self.output == RnnOutput::Last { c.scratch[3] } else { c.value };
        let h0 = c.carry.first().copied();
        let mut v = vec![match self.cell {
            Cell::Lstm => {
                let c0 = c.carry.get(1).copied();
                Step::Lstm { steps, reverse: false, x, wih, whh, bih, bhh, gates, cs, hs, h0, c0 }
            }
            Cell::Gru => Step::Gru { steps, reverse: false, x, wih, whh, bih, bhh, gates, hs, ws, h0 },
        }];
        if self.output == RnnOutput::Last {
            v.push(Step::RnnLast { steps, hs, y: c.value });
        }
        v
    }
    // Forward ran the recurrence and kept its gates, so now through time from the last
    // step: each step's gate gradients from the state's and the cell's, the state's gradient
    // one step back through W_hh; then the parameters' and the input's gradients from every
    // step's gate gradients at once.
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some((steps, _)) = self.sizes(c) else { return Vec::new() };
        let (x, gates, cs, ws) = (c.inputs[0], c.scratch[0], c.scratch[1], c.scratch[2]);
        let (wih, whh) = (c.params[0], c.params[1]);
        let [dwih, dwhh, dbih, dbhh] = [grads[0], grads[1], grads[2], grads[3]];
        let dx = dx(0, false).into_opt();
        let h0 = c.carry.first().copied();
        let (hs, dhs, mut v) = match self.output {
            RnnOutput::Sequence => (c.value, dy, Vec::new()),
            RnnOutput::Last => {
                let (hs, dhs) = (c.scratch[3], c.scratch[4]);
                (hs, dhs, vec![Step::RnnLastBackward { steps, dy, dhs }])
            }
        };
        v.push(match self.cell {
            Cell::Lstm => {
                let c0 = c.carry.get(1).copied();
                let (reverse, gs) = (false, gates);
                Step::LstmBackward {
                    steps,
                    reverse,
                    x,
                    wih,
                    whh,
                    gates: gs,
                    cs,
                    hs,
                    dhs,
                    ws,
                    dwih,
                    dwhh,
                    dbih,
                    dbhh,
                    dx,
                    h0,
                    c0,
                }
            }
            Cell::Gru => Step::GruBackward {
                steps,
                reverse: false,
                x,
                wih,
                whh,
                gates,
                hs,
                dhs,
                ws,
                dwih,
                dwhh,
                dbih,
                dbhh,
                dx,
                h0,
            },
        });
        v
    }
    fn backward_reads(&self) -> Reads {
        // The inputs (for dW_ih) and every state.
        Reads { input: true, output: true }
    }
    fn elementwise(&self) -> bool {
        false
    }
    fn carries(&self) -> Vec<usize> {
        // The hidden state (and the LSTM's cell state), from one window of a stream to the next.
        match self.cell {
            Cell::Lstm => vec![self.hidden, self.hidden],
            Cell::Gru => vec![self.hidden],
        }
    }
    // The last states of the run into the carried buffers (padding keeps each sequence's own).
    fn save_carried(&self, c: &StepCx) -> Vec<Step> {
        let (Some(&y), Some((steps, _))) = (c.carry.first(), self.sizes(c)) else { return Vec::new() };
        let hs = if self.output == RnnOutput::Last { c.scratch[3] } else { c.value };
        let mut v = vec![Step::RnnLast { steps, hs, y }];
        if let (Cell::Lstm, Some(&yc)) = (self.cell, c.carry.get(1)) {
            v.push(Step::RnnLast { steps, hs: c.scratch[1], y: yc });
        }
        v
    }
    fn per_step(&self) -> bool {
        false
    }
}
