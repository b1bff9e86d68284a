//! `softplus`: `y = ln(1 + eˣ)` elementwise (PyTorch's `nn.Softplus` with β = 1), a smooth
//! ReLU. Its backward reads the input (`dx = dy · σ(x)`), so it never runs in place.

use super::args::Args;
use super::rule::RuleResult;
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::Serialize;

/// `softplus`: `ln(1 + eˣ)` elementwise.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Softplus;

impl Softplus {
    /// `softplus`.
    pub const LAYERS: &'static [Layer] =
        &[Layer { name: "softplus", args: &[], example: "`softplus`", merge: false, positional_error: None, build }];
}

fn build(_: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::Softplus(Softplus))
}

impl Rules for Softplus {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        super::onnx::elementwise(g, cx, |g, x, out| g.node("Softplus", &[x], vec![], out))
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(format!("F.softplus({})", c.x)))
    }
    fn kind(&self) -> &'static str {
        "softplus"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        Ok((cx.one(), Vec::new()))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.input_elems()
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
        vec![Step::Softplus { x: c.inputs[0], y: c.value }]
    }
    // Forward was y = ln(1 + eˣ), so now dx (+)= dy · σ(x).
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        match dx(0, false).into_opt() {
            Some((d, write)) => vec![Step::SoftplusBackward { x: c.inputs[0], dy, dx: d, write }],
            None => Vec::new(),
        }
    }
    fn backward_reads(&self) -> Reads {
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
