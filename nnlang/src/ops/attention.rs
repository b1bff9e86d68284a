//! `attention(heads, causal = false)`: multi-head scaled dot-product self-attention over a
//! sequence (PyTorch's `nn.MultiheadAttention(d, heads, batch_first = True)`: one packed
//! input projection `in_proj_weight [3d, d]`, `in_proj_bias [3d]`, and `out_proj.weight
//! [d, d]`, `out_proj.bias [d]`). Padding of a ragged batch is never a key and its outputs
//! are never read; `causal = true` hides each step's future. The kernel keeps one head's
//! `[steps, steps]` scores at a time (`runtime/src/kernels/attention.rs`).
//!
//! `positions(n, sinusoidal = false)`: a learned vector for each of the first `n` steps
//! (`weight [n, d]`, PyTorch's `nn.Embedding(n, d)`) added to the sequence, or the fixed
//! sinusoidal encoding.

use super::args::Args;
use super::rule::{bias, weight, ParamSpec, RuleResult, ShapeError};
use super::tensor::{Dim, Elems, NodeId, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Role, Step};
use serde::Serialize;

/// `attention(heads, causal)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attention {
    /// Heads, each of `d / heads` features.
    pub heads: usize,
    /// A step attends only to itself and the steps before it.
    pub causal: bool,
}

/// `positions(n, sinusoidal)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Positions {
    /// The most steps it has a position for.
    pub n: usize,
    /// The fixed sines and cosines rather than a learned table.
    pub sinusoidal: bool,
}

impl Attention {
    /// `attention`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "attention",
        args: &[("heads", true), ("causal", false)],
        example: "`attention(4, causal = true)`",
        merge: false,
        positional_error: None,
        build,
    }];

    /// The steps and the width, when the plan's dimensions are known.
    fn sizes(c: &StepCx) -> Option<(usize, usize)> {
        match c.in_dims? {
            &[t, d] => Some((t, d)),
            _ => None,
        }
    }
}

impl Positions {
    /// `positions`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "positions",
        args: &[("n", true), ("sinusoidal", false)],
        example: "`positions(128)`",
        merge: false,
        positional_error: None,
        build: build_positions,
    }];
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::Attention(Attention { heads: a.required_int("heads")?, causal: a.boolean("causal")?.unwrap_or(false) }))
}

fn build_positions(a: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::Positions(Positions { n: a.required_int("n")?, sinusoidal: a.boolean("sinusoidal")?.unwrap_or(false) }))
}

/// The steps and features of a sequence `[steps, d]`, or the error for what is none.
fn sequence_of(cx: &ShapeCx, kind: &str, what: &str) -> Result<(Dim, usize), Vec<ShapeError>> {
    let s = cx.one();
    match s.0.as_slice() {
        [steps, Dim::Fixed(d)] if steps.is_steps() => Ok((steps.clone(), *d)),
        _ => {
            let mut e = ShapeError::new(
                cx.id,
                format!("`{kind}` {what} a sequence [steps, features], but its input is {s}"),
                format!("input is {s}, not a sequence"),
            );
            e = match s.0.as_slice() {
                [Dim::Fixed(n), Dim::Fixed(f)] => e
                    .note(format!("[{n}, {f}] is an array: its rows are no steps unless declared so"))
                    .help(format!("declare the input as a sequence: `[seq = {n}, {f}]`")),
                [steps] if steps.is_steps() => e.help(format!(
                    "give each step features first: `{} -> embedding(vocab, 64) -> {kind}(…)`",
                    cx.name.split('.').next().unwrap_or("x")
                )),
                _ => e.note("a vector or a volume has no steps; a sequence is declared `[seq <= n, features]`"),
            };
            Err(vec![e])
        }
    }
}

impl Rules for Attention {
    /// Only the batch splits it (each example's steps meet each other); smooth.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Share, StepFacts};
        StepFacts { share: Share::Batch, kink: None, meeting: 0 }
    }
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        super::onnx::attention(g, cx, self.heads, self.causal)
    }
    /// `nn.MultiheadAttention(d, heads, batch_first=True)` with the padding as
    /// `key_padding_mask` (from `forward`'s `lengths`) and, causal, the future as `attn_mask`.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let d = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let init = c.init(format!("nn.MultiheadAttention({d}, {}, batch_first=True)", self.heads));
        let x = c.x;
        let mask = if self.causal {
            format!(", attn_mask=torch.triu(torch.ones({x}.shape[1], {x}.shape[1], dtype=torch.bool, device={x}.device), 1)")
        } else {
            String::new()
        };
        let forward =
            format!("{}({x}, {x}, {x}, key_padding_mask=padding(lengths, {x}){mask}, need_weights=False)[0]", c.module);
        Some(super::PyLayer::with(init, forward))
    }
    fn kind(&self) -> &'static str {
        "attention"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("heads", self.heads.to_string())];
        if self.causal {
            v.push(("causal", "true".to_string()));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (steps, d) = sequence_of(cx, "attention", "relates the steps of")?;
        if d % self.heads != 0 {
            let divisors: Vec<String> = (1..=d).filter(|k| d % k == 0).map(|k| k.to_string()).collect();
            let list = match divisors.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => divisors.join(""),
            };
            return Err(vec![ShapeError::new(
                cx.id,
                format!(
                    "`attention` splits the {d} features of each step among {} heads, which does not divide them",
                    self.heads
                ),
                format!("{} heads do not divide {d} features", self.heads),
            )
            .note(format!(
                "each head reads d/heads features: {d}/{} = {:.2} is not a whole number",
                self.heads,
                d as f64 / self.heads as f64
            ))
            .help(format!("use a number of heads that divides {d}: {list}"))]);
        }
        let name = cx.name;
        let params = vec![
            weight(name, "in_proj_weight", &[3 * d, d], d, 3 * d),
            bias(name, "in_proj_bias", &[3 * d]),
            weight(name, "out_proj.weight", &[d, d], d, d),
            bias(name, "out_proj.bias", &[d]),
        ];
        Ok((Shape(vec![steps, Dim::Fixed(d)]), params))
    }
    /// Per step the projections, `8d²`; per pair of steps the scores and their weighted sum,
    /// `4d`, and the softmax, `~5` per head (a causal layer computes them all and masks).
    fn flops(&self, cx: &FlopsCx) -> Elems {
        let d = cx.input_last();
        let per_step = 8 * d * d;
        let per_pair = 4 * d + 5 * self.heads as u64;
        match cx.input.and_then(|s| s.steps()) {
            Some(t) => {
                let t = t as u64;
                Elems { fixed: per_step * t + per_pair * t * t, per_step: 0, per_step_sq: 0 }
            }
            None => Elems { fixed: 0, per_step, per_step_sq: per_pair },
        }
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    /// `Q K V` (`3d` per step) and the heads' outputs (`d` per step); a workspace of
    /// `3·steps²` for one head's scores, backward their gradient, and one of them transposed,
    /// `3·steps·d` for one example's `Q K V` transposed and `steps·d_h` for a block of a head's
    /// output gradient transposed (`attention::workspace`); while training each
    /// query's log-sum-exp per head, and the gradients of the heads' outputs and of `Q K V`.
    fn scratch(&self, c: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        let Some((t, d)) = Attention::sizes(c) else { return Vec::new() };
        let mut v = vec![
            Scratch::PerRow(3 * t * d),
            Scratch::PerRow(t * d),
            Scratch::Fixed(nnlang_runtime::kernels::attention::workspace(t, d, self.heads)),
        ];
        if c.training {
            v.extend([Scratch::PerRow(self.heads * t), Scratch::PerRow(t * d), Scratch::PerRow(3 * t * d)]);
        }
        v
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let Some((steps, _)) = Attention::sizes(c) else { return Vec::new() };
        let [w_in, b_in, w_out, b_out] = [c.params[0], c.params[1], c.params[2], c.params[3]];
        let (qkv, o, ws, lse) = (c.scratch[0], c.scratch[1], c.scratch[2], c.scratch.get(3).copied());
        let (heads, causal, x, y) = (self.heads, self.causal, c.inputs[0], c.value);
        vec![Step::Attention { heads, causal, steps, x, w_in, b_in, w_out, b_out, qkv, o, lse, ws, y }]
    }
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let (Some((steps, _)), [qkv, o, ws, lse, d_o, dqkv, ..]) = (Attention::sizes(c), c.scratch.as_slice()) else {
            return Vec::new();
        };
        let (w_in, w_out) = (c.params[0], c.params[2]);
        let [dw_in, db_in, dw_out, db_out] = [grads[0], grads[1], grads[2], grads[3]];
        let (heads, causal, x) = (self.heads, self.causal, c.inputs[0]);
        let (qkv, o, ws, lse, d_o, dqkv) = (*qkv, *o, *ws, *lse, *d_o, *dqkv);
        let dx = dx(0, false).into_opt();
        vec![Step::AttentionBackward {
            heads,
            causal,
            steps,
            x,
            w_in,
            w_out,
            qkv,
            o,
            lse,
            ws,
            dy,
            d_o,
            dqkv,
            dw_in,
            db_in,
            dw_out,
            db_out,
            dx,
        }]
    }
    fn backward_reads(&self) -> Reads {
        // The input, for the input projection's weight gradient.
        Reads { input: true, output: false }
    }
    fn elementwise(&self) -> bool {
        false
    }
    fn carries(&self) -> Vec<usize> {
        Vec::new()
    }
    fn save_carried(&self, _: &StepCx) -> Vec<Step> {
        Vec::new()
    }
    fn per_step(&self) -> bool {
        false
    }
}

impl Rules for Positions {
    /// Row by row; the table's gradient sums over the batch, so only the batch splits it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Share, StepFacts};
        StepFacts { share: Share::Batch, kink: None, meeting: 0 }
    }
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        super::onnx::positions(g, cx, self.n, self.sinusoidal)
    }
    /// A learned table as `nn.Embedding(n, d)` whose first rows are added; the sinusoids as
    /// a buffer computed in `__init__` (not saved with the weights).
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let d = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let x = c.x;
        if self.sinusoidal {
            let init = c.init(format!("Sinusoids({}, {d})", self.n));
            return Some(super::PyLayer::with(init, format!("{x} + {}.pe[: {x}.shape[1]]", c.module)));
        }
        let init = c.init(format!("nn.Embedding({}, {d})", self.n));
        Some(super::PyLayer::with(init, format!("{x} + {}.weight[: {x}.shape[1]]", c.module)))
    }
    fn kind(&self) -> &'static str {
        "positions"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("n", self.n.to_string())];
        if self.sinusoidal {
            v.push(("sinusoidal", "true".to_string()));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (steps, d) = sequence_of(cx, "positions", "adds a vector to each step of")?;
        let most = match &steps {
            Dim::Steps { len, .. } => Some(*len),
            Dim::Seq { max, .. } => *max,
            Dim::Fixed(_) => None,
        };
        match most {
            Some(t) if t > self.n => {
                return Err(vec![ShapeError::new(
                    cx.id,
                    format!("`positions({})` has a position for {} steps, but its input has up to {t}", self.n, self.n),
                    format!("{} positions for up to {t} steps", self.n),
                )
                .note(format!("steps {}..{t} would have no position", self.n + 1))
                .help(format!("give a position to every step: `positions({t})`"))]);
            }
            None => {
                return Err(vec![ShapeError::new(
                    cx.id,
                    format!(
                        "`positions({})` needs to know the longest sequence, but its input {} has no bound",
                        self.n,
                        cx.one()
                    ),
                    "sequences of any length",
                )
                .help(format!(
                    "declare the longest sequence: `[{} <= {}, …]`",
                    dim_name(&steps),
                    self.n
                ))]);
            }
            Some(_) => {}
        }
        let params = if self.sinusoidal {
            Vec::new()
        } else {
            vec![ParamSpec {
                name: format!("{}.weight", cx.name),
                shape: vec![self.n, d],
                role: Role::Embedding { dim: d },
            }]
        };
        Ok((Shape(vec![steps, Dim::Fixed(d)]), params))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.per_example_or_step(cx.input_last())
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    fn scratch(&self, _: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        Vec::new()
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let Some(&[steps, _]) = c.in_dims else { return Vec::new() };
        let (x, y) = (c.inputs[0], c.value);
        match c.params.first() {
            Some(&w) => vec![Step::Positions { x, w, y }],
            None => vec![Step::SinusoidalPositions { steps, x, y }],
        }
    }
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some(&[steps, _]) = c.in_dims else { return Vec::new() };
        let mut v: Vec<Step> = grads.first().map(|&dw| Step::PositionsBackward { steps, dy, dw }).into_iter().collect();
        if let Some((d, write)) = dx(0, false).into_opt() {
            v.push(Step::Copy { x: d, x_col: 0, y: dy, write });
        }
        v
    }
    fn backward_reads(&self) -> Reads {
        Reads { input: false, output: false }
    }
    fn elementwise(&self) -> bool {
        false
    }
    fn carries(&self) -> Vec<usize> {
        Vec::new()
    }
    fn save_carried(&self, _: &StepCx) -> Vec<Step> {
        Vec::new()
    }
    fn per_step(&self) -> bool {
        false
    }
}

fn dim_name(d: &Dim) -> String {
    match d {
        Dim::Seq { name, .. } | Dim::Steps { name, .. } => name.clone(),
        Dim::Fixed(_) => "seq".into(),
    }
}

/// A causal `attention` after a layer that has already read each step's future (a
/// bidirectional recurrence, an attention that is not causal) hides nothing: the error, at
/// the attention, naming that layer. `upstream` lists the nodes the attention depends on with
/// their ops.
pub fn check_causal<'a>(
    id: NodeId,
    op: &Op,
    upstream: impl Iterator<Item = (NodeId, &'a Op, &'a str)>,
) -> Option<ShapeError> {
    let Op::Attention(Attention { causal: true, .. }) = op else { return None };
    for (seen, o, name) in upstream {
        let (what, fix) = match o {
            Op::Bidirectional(_) => {
                ("a bidirectional recurrence", format!("read the steps in one direction in `{name}`"))
            }
            Op::Attention(Attention { causal: false, .. }) => {
                ("an attention that is not causal", format!("make `{name}` causal (`causal = true`)"))
            }
            _ => continue,
        };
        return Some(
            ShapeError::new(
                id,
                format!("this causal `attention` reads `{name}`, {what}: every step of its input has already seen the steps after it"),
                "the future it would mask is already in its input",
            )
            .related(seen, format!("`{name}` reads the steps after each one"))
            .note("a causal mask is for predicting each step from the steps before it; here it cannot hide anything")
            .help(format!("{fix}, or drop `causal = true` here")),
        );
    }
    None
}
