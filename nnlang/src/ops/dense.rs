//! `dense(units)` (also written `fc`): `y = W x + b` over the flattened input, or per step of
//! a sequence. The `fuse-dense` pass sets `activation` when an activation is its only reader:
//! `y = f(W x + b)` in one step.

use super::activation::{self, Activation};
use super::args::Args;
use super::rule::{affine_in, bias, weight, RuleResult};
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::Serialize;

/// `dense(units)`: a fully-connected layer (at every step of a sequence).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dense {
    /// Output units.
    pub units: usize,
    /// Set by `fuse-dense`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "activation::ser_opt")]
    pub activation: Option<Activation>,
    /// Set by `fold-batchnorm` (inference): the batch norm after it, applied to its rows as
    /// they are written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<super::conv::Fold>,
}

impl Dense {
    /// `dense` and its alias `fc`.
    pub const LAYERS: &'static [Layer] = &[
        Layer {
            name: "dense",
            args: &[("units", true)],
            example: "`dense(128)`",
            merge: false,
            positional_error: None,
            build,
        },
        Layer {
            name: "fc",
            args: &[("units", true)],
            example: "`fc(128)`",
            merge: false,
            positional_error: None,
            build,
        },
    ];
}

fn build(a: &Args) -> Result<Op, crate::diag::Diagnostic> {
    Ok(Op::Dense(Dense { units: a.required_int("units")?, activation: None, fold: None }))
}

impl Rules for Dense {
    /// Its products split by outputs among threads; a fused activation's kinks read off the
    /// output.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Kink, Share, StepFacts};
        match step {
            Step::Dense { x, y, .. } => StepFacts { share: Share::Products(x.cols + y.cols), kink: None, meeting: 0 },
            Step::DenseAct { f, x, y, .. } | Step::DenseFolded { f, x, y, .. } => {
                StepFacts { share: Share::Products(x.cols + y.cols), kink: Kink::of(*f, *y, true), meeting: 0 }
            }
            _ => StepFacts::SMOOTH,
        }
    }
    /// `Gemm` (`MatMul` + `Add` at every step of a sequence), then the fused activation.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let src = cx.input()?;
        let in_shape = g.shape(src)?;
        let x = g.value(src, super::onnx::Layout::ChannelsLast)?;
        let act = self.activation.unwrap_or(Activation::Identity);
        let pre = if act == Activation::Identity { cx.name.to_string() } else { format!("{}/linear", cx.name) };
        let y = super::onnx::affine(g, cx.id, &x, &in_shape, self.units, &pre)?;
        let y = super::onnx::activation(g, &act, &y, cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let init = c.init(format!("nn.Linear({}, {})", c.fan_in(), self.units));
        let x = format!("{}({})", c.module, c.flat_x());
        Some(super::PyLayer::with(init, activation::pytorch(&self.activation.unwrap_or(Activation::Identity), &x)))
    }
    fn kind(&self) -> &'static str {
        "dense"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("units", self.units.to_string())];
        if let Some(fold) = &self.fold {
            v.push(("fold", fold.name.clone()));
        }
        if let Some(f) = &self.activation {
            v.push(("activation", activation::text(f)));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (fan_in, out) = affine_in(cx.id, &cx.one(), self.units, "dense")?;
        let mut params = vec![
            weight(cx.name, "weight", &[self.units, fan_in], fan_in, self.units),
            bias(cx.name, "bias", &[self.units]),
        ];
        if let Some(fold) = &self.fold {
            params.extend(super::norm::params(&fold.name, self.units, fold.momentum));
        }
        Ok((out, params))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.per_example_or_step(2 * cx.fan_in() * self.units as u64)
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
        let (x, w, b, y) = (c.inputs[0], c.params[0], c.params[1], c.value);
        if let Some(fold) = &self.fold {
            // The batch norm's four tensors follow the layer's own.
            let [gamma, beta, mean, var] = [2, 3, 4, 5].map(|i| c.params[i]);
            let f = self.activation.unwrap_or(Activation::Identity);
            return vec![Step::DenseFolded { f, x, w, b, gamma, beta, mean, var, eps: fold.eps, y }];
        }
        vec![match self.activation {
            None => Step::Dense { x, w, b, y },
            Some(f) => Step::DenseAct { f, x, w, b, y },
        }]
    }
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let d = dx(0, false).into_opt();
        let (x, w, dw, db) = (c.inputs[0], c.params[0], grads[0], grads[1]);
        vec![match self.activation {
            // Forward was y = x·Wᵀ + b, so now dW = dyᵀ·x, db = Σ dy, dx (+)= dy·W.
            None => Step::DenseBackward { x, w, dy, dw, db, dx: d },
            // Forward was y = f(x·Wᵀ + b), so now dz = dy·f'(y) (over dy), then as dense.
            Some(f) => Step::DenseActBackward { f, x, y: c.value, w, dy, dw, db, dx: d },
        }]
    }
    fn backward_reads(&self) -> Reads {
        // The input for dW; the output only for the fused activation's derivative.
        Reads { input: true, output: self.activation.is_some() }
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
