//! `batchnorm(momentum = 0.1, eps = 1e-5)`: batch normalization over the last dimension of
//! its input — a dense layer's features, a convolution's channels (every position of the
//! image counts), a sequence's features (every step inside its sequence counts). Training
//! normalizes with the batch's statistics and moves running averages toward them (state:
//! never trained, never regularized); evaluation, `run`, exports and generated `predict`
//! use the running averages. PyTorch's `BatchNorm1d`/`BatchNorm2d` parameters: `weight`
//! (a gain), `bias`, `running_mean`, `running_var` (unbiased, as PyTorch keeps it).

use super::args::Args;
use super::rule::{bias, RuleResult, ShapeError};
use super::tensor::{Dim, Elems};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::{fmt_f64, Diagnostic};
use nnlang_runtime::plan::{ABuf, PBuf, Role, Step};
use serde::Serialize;

/// PyTorch's default momentum of the running averages.
pub const DEFAULT_MOMENTUM: f64 = 0.1;
/// PyTorch's default ε.
pub const DEFAULT_EPS: f64 = 1e-5;

/// `batchnorm`: normalization of each channel over the batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchNorm {
    /// How far each training step moves the running averages toward the batch's statistics.
    pub momentum: f64,
    /// Added to the variance before its square root.
    pub eps: f64,
    /// Set by `fuse-dense` when a ReLU is its only reader: applied as each value is written,
    /// its derivative taken on the fly in the backward step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub relu: bool,
    /// Set by `fuse-pool` (training) when a max pooling of `f × f` windows at stride `f` that
    /// tile its map exactly is its only reader: only each window's maximum is written (the
    /// value is the pooled map), and the backward step takes the pooled map's gradient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<usize>,
}

/// The tensors of a batch norm named `name` over `c` channels, in PyTorch's names and order:
/// the gain `weight`, `bias`, the state `running_mean`, `running_var`, and the count of
/// batches `num_batches_tracked` (a scalar; PyTorch's is an integer, which loads from a float)
/// — also what a layer that folds it declares, so that checkpoints load as they are.
pub fn params(name: &str, c: usize, momentum: f64) -> Vec<super::rule::ParamSpec> {
    let state = |p: &str, init: f64| super::rule::ParamSpec {
        name: format!("{name}.{p}"),
        shape: vec![c],
        role: Role::State { init, momentum },
    };
    let gain = super::rule::ParamSpec { name: format!("{name}.weight"), shape: vec![c], role: Role::Gain };
    let count =
        super::rule::ParamSpec { name: format!("{name}.num_batches_tracked"), shape: vec![], role: Role::Count };
    vec![gain, bias(name, "bias", &[c]), state("running_mean", 0.0), state("running_var", 1.0), count]
}

impl BatchNorm {
    /// `batchnorm`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "batchnorm",
        args: &[("momentum", false), ("eps", false)],
        example: "`batchnorm(momentum = 0.1, eps = 1e-5)`",
        merge: false,
        positional_error: None,
        build,
    }];

    /// The channels it normalizes: the input's last dimension.
    pub fn channels(shape: &[usize]) -> usize {
        shape.last().copied().unwrap_or(1).max(1)
    }
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    let momentum = a.number_in("momentum", 0.0, 1.0, true, "(0, 1]")?.map_or(DEFAULT_MOMENTUM, |v| v.0);
    let eps = a.number_in("eps", 0.0, 1.0, true, "(0, 1]")?.map_or(DEFAULT_EPS, |v| v.0);
    Ok(Op::BatchNorm(BatchNorm { momentum, eps, relu: false, pool: None }))
}

impl Rules for BatchNorm {
    /// Smooth and cheap however threads share it; a training step meets the other workers of
    /// a shared batch for the batch's sums (`[Σx, Σx², n]` forward, `[Σdy, Σdy·x̂]` backward).
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::StepFacts;
        let meeting = match step {
            Step::BatchNorm { gamma, .. } | Step::BatchNormPool { gamma, .. } => 2 * gamma.len + 1,
            Step::BatchNormBackward { gamma, dx: Some(_), .. }
            | Step::BatchNormPoolBackward { gamma, dx: Some(_), .. }
            | Step::BatchNormBackward { gamma, means: true, .. }
            | Step::BatchNormPoolBackward { gamma, means: true, .. } => 2 * gamma.len,
            _ => 0,
        };
        // A fused ReLU's kink, read off the output.
        let kink = match step {
            Step::BatchNorm { y, relu: true, .. } | Step::BatchNormInfer { y, relu: true, .. } => {
                nnlang_runtime::plan::Kink::of(nnlang_runtime::plan::Act::Relu, *y, true)
            }
            _ => None,
        };
        StepFacts { meeting, kink, ..StepFacts::SMOOTH }
    }
    /// ONNX's `BatchNormalization` (with the running averages) over channel axis 1: an
    /// image's channels first, a sequence's features before its steps; nothing where it is
    /// folded into the convolution or dense layer before it.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let src = cx.input()?;
        if let Some(layer) = g.folded_into(cx.id) {
            // Computed in the layer's weights (`W·s`, `(b − μ)·s + β`): no node of its own.
            return g.alias(cx.id, layer);
        }
        let shape = g.shape(src)?;
        let c = shape.last().ok_or_else(|| format!("`{}`: its input has no fixed features", cx.name))?;
        let mut args = Vec::new();
        for which in ["weight", "bias", "running_mean", "running_var"] {
            args.push(super::onnx::param_tensor(g, cx.id, which, &[c])?);
        }
        let attrs = || vec![super::onnx::Attr::Float("epsilon", self.eps as f32)];
        let with = |x: String| -> Vec<String> { std::iter::once(x).chain(args.iter().cloned()).collect() };
        match shape.rank() {
            3 => {
                let a = with(g.value(src, super::onnx::Layout::ChannelsFirst)?);
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                let y = g.node("BatchNormalization", &refs, attrs(), cx.name);
                g.set(cx.id, y, super::onnx::Layout::ChannelsFirst);
            }
            2 => {
                let x = g.value(src, super::onnx::Layout::ChannelsLast)?;
                let perm = || vec![super::onnx::Attr::Ints("perm", vec![0, 2, 1])];
                let t = g.node("Transpose", &[&x], perm(), &format!("{}/features_first", cx.name));
                let a = with(t);
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                let n = g.node("BatchNormalization", &refs, attrs(), &format!("{}/normalized", cx.name));
                let y = g.node("Transpose", &[&n], perm(), cx.name);
                g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
            }
            _ => {
                let a = with(g.value(src, super::onnx::Layout::ChannelsLast)?);
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                let y = g.node("BatchNormalization", &refs, attrs(), cx.name);
                g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
            }
        }
        Ok(())
    }
    /// `BatchNorm1d` after a dense layer or on a sequence, `BatchNorm2d` after a convolution;
    /// PyTorch normalizes channel axis 1 where nnlang keeps channels last.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let rank = c.in_shape.map_or(1, |s| s.rank());
        let channels = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let kind = if rank == 3 { "BatchNorm2d" } else { "BatchNorm1d" };
        let init =
            c.init(format!("nn.{kind}({channels}, eps={}, momentum={})", fmt_f64(self.eps), fmt_f64(self.momentum)));
        let x = if rank == 1 {
            format!("{}({})", c.module, c.x)
        } else {
            format!("{}({}.movedim(-1, 1)).movedim(1, -1)", c.module, c.x)
        };
        Some(super::PyLayer::with(init, x))
    }
    fn kind(&self) -> &'static str {
        "batchnorm"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("momentum", fmt_f64(self.momentum)), ("eps", fmt_f64(self.eps))];
        if self.relu {
            v.push(("activation", "relu".to_string()));
        }
        if let Some(f) = self.pool {
            v.push(("pool", format!("maxpool(size = {f})")));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let s = cx.one();
        let c = match s.0.last() {
            Some(Dim::Fixed(c)) if s.0.len() > 1 || !s.is_sequence() => *c,
            _ => {
                return Err(vec![ShapeError::new(
                    cx.id,
                    format!("`batchnorm` normalizes the features of each value, but its input {s} has none"),
                    "no features to normalize",
                )
                .help("put it after a layer with features: `dense(64) -> batchnorm -> relu`")])
            }
        };
        let params = params(cx.name, c, self.momentum);
        match (self.pool, s.0.as_slice()) {
            (None, _) => Ok((s, params)),
            // Only `fuse-pool` sets it, where the windows tile the map.
            (Some(f), &[Dim::Fixed(h), Dim::Fixed(w), Dim::Fixed(d)]) if f > 0 && h % f == 0 && w % f == 0 => {
                Ok((super::tensor::Shape::fixed(&[h / f, w / f, d]), params))
            }
            (Some(_), _) => Err(vec![ShapeError::new(
                cx.id,
                format!("a batch norm fused with a max pooling needs a map its windows tile, not {s}"),
                "not a map of whole windows",
            )]),
        }
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        // A subtraction and a multiply-add per value.
        let e = cx.input_elems();
        Elems { fixed: 3 * e.fixed, per_step: 3 * e.per_step, per_step_sq: 0 }
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    /// While training, the batch's statistics kept for the backward step: `[μ (C), 1/σ (C), n]`,
    /// and room after them for the backward step's two means when the convolution before
    /// makes `dx` ([`Step::ConvBnBackward`]).
    fn scratch(&self, c: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        match (c.training, c.params.first()) {
            (true, Some(g)) => vec![Scratch::Fixed(4 * g.len + 1)],
            _ => Vec::new(),
        }
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let (x, y, eps) = (c.inputs[0], c.value, self.eps);
        let &[gamma, beta, mean, var, ..] = c.params.as_slice() else { return Vec::new() };
        let relu = self.relu;
        vec![match (c.scratch.first(), self.pool.and_then(|f| c.geometry(f, f, 0, None))) {
            (Some(&stats), Some(g)) => Step::BatchNormPool { x, y, g, gamma, beta, mean, var, stats, eps, relu },
            (Some(&stats), None) => Step::BatchNorm { x, y, gamma, beta, mean, var, stats, eps, relu },
            (None, _) => Step::BatchNormInfer { x, y, gamma, beta, mean, var, eps, relu },
        }]
    }
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let (Some(&stats), &[gamma, beta, ..], &[dgamma, dbeta, ..]) = (c.scratch.first(), c.params.as_slice(), grads)
        else {
            return Vec::new();
        };
        let dx = dx(0, false).into_opt();
        let (x, relu) = (c.inputs[0], self.relu);
        vec![match self.pool.and_then(|f| c.geometry(f, f, 0, None)) {
            Some(g) => {
                Step::BatchNormPoolBackward { x, dy, g, gamma, beta, dgamma, dbeta, stats, dx, relu, means: false }
            }
            None => Step::BatchNormBackward { x, dy, gamma, beta, dgamma, dbeta, stats, dx, relu, means: false },
        }]
    }
    fn backward_reads(&self) -> Reads {
        // x̂ is recomputed from the input and the kept statistics, and so is a fused ReLU's
        // derivative (where the normalized value was positive): the output is not read.
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
        true
    }
}
