//! `layernorm(eps = 1e-5)`: each vector of the input's last dimension — a dense layer's
//! outputs, a sequence's step, a volume's position — normalized by its own mean and (biased)
//! variance, then `γ·x̂ + β` (PyTorch's `nn.LayerNorm` over the last dimension: `weight`,
//! `bias`; ONNX `LayerNormalization`, opset 17). No batch statistics: training and inference
//! compute the same, and padding steps are left out.

use super::args::Args;
use super::rule::{bias, ParamSpec, RuleResult, ShapeError};
use super::tensor::{Dim, Elems};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::{fmt_f64, Diagnostic};
use nnlang_runtime::plan::{ABuf, PBuf, Role, Step};
use serde::Serialize;

/// PyTorch's default ε.
pub const DEFAULT_EPS: f64 = 1e-5;

/// `layernorm`: normalization of each vector of features.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerNorm {
    /// Added to the variance before its square root.
    pub eps: f64,
}

impl LayerNorm {
    /// `layernorm`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "layernorm",
        args: &[("eps", false)],
        example: "`layernorm(eps = 1e-5)`",
        merge: false,
        positional_error: None,
        build,
    }];

    /// Vectors per row of the input (positions of a volume; 1 otherwise, a sequence's steps
    /// being rows of their own).
    fn positions(c: &StepCx) -> usize {
        match (c.in_dims, c.params.first()) {
            (Some(d), Some(g)) if g.len > 0 => d.iter().product::<usize>() / g.len,
            _ => 1,
        }
    }
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    let eps = a.number_in("eps", 0.0, 1.0, true, "(0, 1]")?.map_or(DEFAULT_EPS, |v| v.0);
    Ok(Op::LayerNorm(LayerNorm { eps }))
}

impl Rules for LayerNorm {
    /// Smooth, and row by row: nothing to meet the other workers for.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    /// ONNX's `LayerNormalization` over the last axis (the layout nnlang keeps).
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let src = cx.input()?;
        let c = g.shape(src)?.last().ok_or_else(|| format!("`{}`: its input has no fixed features", cx.name))?;
        let x = g.value(src, super::onnx::Layout::ChannelsLast)?;
        let w = super::onnx::param_tensor(g, cx.id, "weight", &[c])?;
        let b = super::onnx::param_tensor(g, cx.id, "bias", &[c])?;
        let attrs = vec![super::onnx::Attr::Int("axis", -1), super::onnx::Attr::Float("epsilon", self.eps as f32)];
        let y = g.node("LayerNormalization", &[&x, &w, &b], attrs, cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    /// `nn.LayerNorm(c, eps)`: it normalizes the last dimension, as nnlang keeps channels.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let channels = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let init = c.init(format!("nn.LayerNorm({channels}, eps={})", fmt_f64(self.eps)));
        Some(super::PyLayer::with(init, format!("{}({})", c.module, c.x)))
    }
    fn kind(&self) -> &'static str {
        "layernorm"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("eps", fmt_f64(self.eps))]
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let s = cx.one();
        let c = match s.0.last() {
            Some(Dim::Fixed(c)) if s.0.len() > 1 || !s.is_sequence() => *c,
            _ => {
                return Err(vec![ShapeError::new(
                    cx.id,
                    format!("`layernorm` normalizes the features of each vector, but its input {s} has none"),
                    "no features to normalize",
                )
                .help("put it after a layer with features: `dense(64) -> layernorm -> relu`")])
            }
        };
        let gain = ParamSpec { name: format!("{}.weight", cx.name), shape: vec![c], role: Role::Gain };
        Ok((s, vec![gain, bias(cx.name, "bias", &[c])]))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        // The mean, the variance, and the normalization with its scale and shift.
        let e = cx.input_elems();
        Elems { fixed: 7 * e.fixed, per_step: 7 * e.per_step }
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    /// While training, each vector's `[μ, 1/σ]` for the backward step.
    fn scratch(&self, c: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        if c.training {
            vec![Scratch::PerRow(2 * Self::positions(c))]
        } else {
            Vec::new()
        }
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let &[gamma, beta, ..] = c.params.as_slice() else { return Vec::new() };
        let stats = c.scratch.first().copied();
        vec![Step::LayerNorm { x: c.inputs[0], y: c.value, gamma, beta, stats, eps: self.eps }]
    }
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let (Some(&stats), &[gamma, ..], &[dgamma, dbeta, ..]) = (c.scratch.first(), c.params.as_slice(), grads) else {
            return Vec::new();
        };
        let dx = dx(0, false).into_opt();
        vec![Step::LayerNormBackward { x: c.inputs[0], dy, gamma, dgamma, dbeta, stats, dx }]
    }
    fn backward_reads(&self) -> Reads {
        // x̂ is recomputed from the input and the kept statistics.
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
