//! `layernorm(eps = 1e-5)`: each vector of the input's last dimension — a dense layer's
//! outputs, a sequence's step, a volume's position — normalized by its own mean and (biased)
//! variance, then `γ·x̂ + β` (PyTorch's `nn.LayerNorm` over the last dimension: `weight`,
//! `bias`; ONNX `LayerNormalization`, opset 17). `rmsnorm(eps = 1e-6)`: divided by its root
//! mean square instead, then `γ·x̂` (PyTorch's `nn.RMSNorm`: `weight` only; ONNX written out,
//! as opset 17 has no RMS normalization). No batch statistics: training and inference
//! compute the same, and padding steps are left out.

use super::args::Args;
use super::rule::{bias, ParamSpec, RuleResult, ShapeError};
use super::tensor::{Dim, Elems};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::{fmt_f64, Diagnostic};
use nnlang_runtime::plan::{ABuf, PBuf, Role, Step};
use serde::Serialize;

/// PyTorch's default ε of `nn.LayerNorm`.
pub const DEFAULT_EPS: f64 = 1e-5;
/// `rmsnorm`'s default ε (PyTorch's `nn.RMSNorm` takes the dtype's epsilon when given none;
/// the export writes this one).
pub const DEFAULT_RMS_EPS: f64 = 1e-6;

/// `layernorm` or `rmsnorm`: normalization of each vector of features.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerNorm {
    /// Added to the variance (mean square) before its square root.
    pub eps: f64,
    /// `rmsnorm`: no centring and no shift.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rms: bool,
}

impl LayerNorm {
    /// `layernorm` and `rmsnorm`.
    pub const LAYERS: &'static [Layer] = &[
        Layer {
            name: "layernorm",
            args: &[("eps", false)],
            example: "`layernorm(eps = 1e-5)`",
            merge: false,
            positional_error: None,
            build,
        },
        Layer {
            name: "rmsnorm",
            args: &[("eps", false)],
            example: "`rmsnorm(eps = 1e-6)`",
            merge: false,
            positional_error: None,
            build: build_rms,
        },
    ];

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
    Ok(Op::LayerNorm(LayerNorm { eps, rms: false }))
}

fn build_rms(a: &Args) -> Result<Op, Diagnostic> {
    let eps = a.number_in("eps", 0.0, 1.0, true, "(0, 1]")?.map_or(DEFAULT_RMS_EPS, |v| v.0);
    Ok(Op::LayerNorm(LayerNorm { eps, rms: true }))
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
        if self.rms {
            // x / √(mean(x²) + ε) · γ, written out (opset 17 has no RMSNormalization).
            let n = cx.name;
            let sq = g.node("Mul", &[&x, &x], vec![], &format!("{n}/square"));
            let axes = vec![super::onnx::Attr::Ints("axes", vec![-1]), super::onnx::Attr::Int("keepdims", 1)];
            let ms = g.node("ReduceMean", &[&sq], axes, &format!("{n}/mean_square"));
            let eps = super::onnx::scalar(g, &format!("{n}/eps"), self.eps as f32);
            let shifted = g.node("Add", &[&ms, &eps], vec![], &format!("{n}/plus_eps"));
            let rms = g.node("Sqrt", &[&shifted], vec![], &format!("{n}/rms"));
            let xh = g.node("Div", &[&x, &rms], vec![], &format!("{n}/normalized"));
            let y = g.node("Mul", &[&xh, &w], vec![], n);
            g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
            return Ok(());
        }
        let b = super::onnx::param_tensor(g, cx.id, "bias", &[c])?;
        let attrs = vec![super::onnx::Attr::Int("axis", -1), super::onnx::Attr::Float("epsilon", self.eps as f32)];
        let y = g.node("LayerNormalization", &[&x, &w, &b], attrs, cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    /// `nn.LayerNorm(c, eps)`: it normalizes the last dimension, as nnlang keeps channels.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let channels = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let kind = if self.rms { "RMSNorm" } else { "LayerNorm" };
        let init = c.init(format!("nn.{kind}({channels}, eps={})", fmt_f64(self.eps)));
        Some(super::PyLayer::with(init, format!("{}({})", c.module, c.x)))
    }
    fn kind(&self) -> &'static str {
        if self.rms {
            "rmsnorm"
        } else {
            "layernorm"
        }
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
                    format!("`{}` normalizes the features of each vector, but its input {s} has none", self.kind()),
                    "no features to normalize",
                )
                .help("put it after a layer with features: `dense(64) -> layernorm -> relu`")])
            }
        };
        let gain = ParamSpec { name: format!("{}.weight", cx.name), shape: vec![c], role: Role::Gain };
        if self.rms {
            return Ok((s, vec![gain]));
        }
        Ok((s, vec![gain, bias(cx.name, "bias", &[c])]))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        // The mean, the variance, and the normalization with its scale and shift.
        let e = cx.input_elems();
        Elems { fixed: 7 * e.fixed, per_step: 7 * e.per_step, per_step_sq: 0 }
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
        let (x, y, stats, eps) = (c.inputs[0], c.value, c.scratch.first().copied(), self.eps);
        match *c.params.as_slice() {
            [gamma] if self.rms => vec![Step::RmsNorm { x, y, gamma, stats, eps }],
            [gamma, beta, ..] => vec![Step::LayerNorm { x, y, gamma, beta, stats, eps }],
            _ => Vec::new(),
        }
    }
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let (Some(&stats), Some(&gamma), Some(&dgamma)) = (c.scratch.first(), c.params.first(), grads.first()) else {
            return Vec::new();
        };
        let (x, dx) = (c.inputs[0], dx(0, false).into_opt());
        match grads.get(1) {
            Some(&dbeta) => vec![Step::LayerNormBackward { x, dy, gamma, dgamma, dbeta, stats, dx }],
            None => vec![Step::RmsNormBackward { x, dy, gamma, dgamma, stats, dx }],
        }
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
