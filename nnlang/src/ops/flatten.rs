//! `flatten`: a volume read row-major over height, width, depth as one vector. No step of
//! its own: the value is its input's buffer.

use super::args::Args;
use super::rule::{RuleResult, ShapeError};
use super::tensor::{Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::Serialize;

/// `flatten`: a volume as one vector, row-major over height, width, depth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flatten;

impl Flatten {
    /// `flatten`.
    pub const LAYERS: &'static [Layer] =
        &[Layer { name: "flatten", args: &[], example: "`flatten`", merge: false, positional_error: None, build }];
}

fn build(_: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::Flatten(Flatten))
}

impl Rules for Flatten {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let x = g.value(cx.input()?, super::onnx::Layout::ChannelsLast)?;
        let y = g.node("Flatten", &[&x], vec![super::onnx::Attr::Int("axis", 1)], cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(format!("{x}.reshape({x}.shape[0], -1)", x = c.x)))
    }
    fn kind(&self) -> &'static str {
        "flatten"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let s = cx.one();
        if s.seq().is_some() {
            return Err(vec![ShapeError::new(
                cx.id,
                format!("cannot flatten a sequence of variable length {s}"),
                "variable length",
            )
            .help("reduce the sequence first, e.g. `rnn(64, output = last)`")]);
        }
        // A sequence of known length flattens too: every step's features, one after another.
        let n = s.elements().fixed as usize;
        Ok((Shape::fixed(&[n]), Vec::new()))
    }
    fn flops(&self, _: &FlopsCx) -> Elems {
        Elems::default()
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Alias
    }
    fn scratch(&self, _: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        Vec::new()
    }
    fn forward(&self, _: &StepCx) -> Vec<Step> {
        Vec::new()
    }
    fn backward(&self, _: &StepCx, _: ABuf, _: &[PBuf], _: &mut super::DxFn) -> Vec<Step> {
        Vec::new()
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
