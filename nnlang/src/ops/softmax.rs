//! `softmax`: each row's exponentials over their sum. Before a cross-entropy loss it is fused
//! into the loss (`fuse-softmax-ce`).

use super::args::Args;
use super::rule::RuleResult;
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::Serialize;

/// `softmax`: over the last dimension.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Softmax;

impl Softmax {
    /// `softmax`.
    pub const LAYERS: &'static [Layer] =
        &[Layer { name: "softmax", args: &[], example: "`softmax`", merge: false, positional_error: None, build }];
}

fn build(_: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::Softmax(Softmax))
}

impl Rules for Softmax {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let x = g.value(cx.input()?, super::onnx::Layout::ChannelsLast)?;
        let y = g.node("Softmax", &[&x], vec![super::onnx::Attr::Int("axis", -1)], cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(format!("torch.softmax({}, dim=-1)", c.x)))
    }
    fn kind(&self) -> &'static str {
        "softmax"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        Ok((cx.one(), Vec::new()))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.output.elements().scale(3)
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
        vec![Step::Softmax { x: c.inputs[0], y: c.value }]
    }
    // Forward was y = softmax(x), so now dx (+)= y·(dy − Σ dy·y).
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        match dx(0, false).into_opt() {
            Some((d, write)) => vec![Step::SoftmaxBackward { y: c.value, dy, dx: d, write }],
            None => Vec::new(),
        }
    }
    fn backward_reads(&self) -> Reads {
        Reads { input: false, output: true }
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
