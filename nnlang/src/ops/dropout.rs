//! `dropout(keep = p)` or `dropout(drop = q)`: inverted dropout, `y = x · mask` with mask
//! 1/p or 0, drawn anew each training step; the identity (an alias) outside training.

use super::args::Args;
use super::rule::RuleResult;
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::fmt_f64;
use crate::diag::Diagnostic;
use crate::diag::Span;
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::Serialize;

/// `dropout(keep = p)`: inverted dropout while training, nothing at inference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dropout {
    /// The probability of keeping a unit.
    pub keep: f64,
}

impl Dropout {
    /// `dropout`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "dropout",
        args: &[("keep", false), ("drop", false)],
        example: "`dropout(keep = 0.5)`",
        merge: false,
        positional_error: Some(positional),
        build,
    }];
}

fn positional(span: Span) -> Diagnostic {
    Diagnostic::error("`dropout` needs `keep = p` or `drop = q`, not a bare number", span, "keep or drop?")
        .with_note(
            "the notes define p as the probability of KEEPING a unit; PyTorch and Keras take the \
             probability of DROPPING it, so a bare `dropout(0.5)` reads differently to each",
        )
        .with_help("write `dropout(keep = 0.5)` (keep half the units) or `dropout(drop = 0.2)` (drop a fifth)")
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    let keep = a.number_in("keep", 0.0, 1.0, true, "(0, 1]")?;
    let drop = a.number_in("drop", 0.0, 1.0, false, "[0, 1)")?;
    let keep = match (keep, drop) {
        (Some(_), Some((_, s))) => {
            return Err(Diagnostic::error("`dropout` takes `keep` or `drop`, not both", s, "given both")
                .with_note("keep = 1 − drop: one of them says everything"))
        }
        (Some((k, _)), None) => k,
        (None, Some((d, s))) => {
            if d >= 1.0 {
                return Err(Diagnostic::error("`drop` of `dropout` must be below 1", s, "drops every unit"));
            }
            1.0 - d
        }
        (None, None) => return Err(positional(a.call)),
    };
    Ok(Op::Dropout(Dropout { keep }))
}

impl Rules for Dropout {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    /// Nothing at inference: the input's value.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        g.alias(cx.id, cx.input()?)
    }
    /// The identity: an exported module computes what `run` does (no dropout).
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(c.x.to_string()))
    }
    fn kind(&self) -> &'static str {
        "dropout"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("keep", fmt_f64(self.keep))]
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
    fn value(&self, training: bool) -> Value {
        if training {
            Value::Computed
        } else {
            Value::Alias
        }
    }
    /// The mask, when training.
    fn scratch(&self, c: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        if c.training {
            vec![Scratch::PerRow(c.value.cols)]
        } else {
            Vec::new()
        }
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let (Some(&mask), keep) = (c.scratch.first(), self.keep) else { return Vec::new() };
        vec![if c.in_place {
            Step::DropoutInPlace { keep, mask, y: c.value }
        } else {
            Step::Dropout { keep, x: c.inputs[0], mask, y: c.value }
        }]
    }
    // Forward was y = x · mask, so now dx (+)= dy · mask.
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some(&mask) = c.scratch.first() else { return Vec::new() };
        match dx(0, true) {
            super::Dx::New => vec![Step::DropoutBackwardInPlace { mask, d: dy }],
            super::Dx::Into(d, write) => vec![Step::DropoutBackward { mask, dy, dx: d, write }],
            super::Dx::None => Vec::new(),
        }
    }
    fn backward_reads(&self) -> Reads {
        // Only the mask.
        Reads { input: false, output: false }
    }
    fn elementwise(&self) -> bool {
        true
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
