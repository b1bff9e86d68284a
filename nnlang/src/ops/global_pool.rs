//! `globalavgpool`, `globalmaxpool`: each channel of a `[height, width, depth]` volume
//! reduced over every position, `[H, W, D] → [D]` — what a ConvNet ends in before its
//! classifier instead of flattening (PyTorch's `AdaptiveAvgPool2d(1)`/`AdaptiveMaxPool2d(1)`
//! and a flatten; ONNX's `GlobalAveragePool`/`GlobalMaxPool`).

use super::args::Args;
use super::rule::{volume, RuleResult};
use super::tensor::{Dim, Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, Kink, PBuf, Share, Step, StepFacts};
use serde::Serialize;

/// `globalavgpool` or `globalmaxpool`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GlobalPool {
    /// The maximum (else the mean).
    pub max: bool,
}

impl GlobalPool {
    /// `globalavgpool` and `globalmaxpool`.
    pub const LAYERS: &'static [Layer] = &[
        Layer {
            name: "globalavgpool",
            args: &[],
            example: "`globalavgpool`",
            merge: false,
            positional_error: None,
            build: avg,
        },
        Layer {
            name: "globalmaxpool",
            args: &[],
            example: "`globalmaxpool`",
            merge: false,
            positional_error: None,
            build: max,
        },
    ];
}

fn avg(_: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::GlobalPool(GlobalPool { max: false }))
}

fn max(_: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::GlobalPool(GlobalPool { max: true }))
}

impl GlobalPool {
    /// The positions of each channel, from the input's `[h, w, d]`.
    fn positions(c: &StepCx) -> usize {
        match c.in_dims {
            Some(&[h, w, _]) => h * w,
            _ => 1,
        }
    }
}

impl Rules for GlobalPool {
    fn kind(&self) -> &'static str {
        if self.max {
            "globalmaxpool"
        } else {
            "globalavgpool"
        }
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let [_, _, d] = volume(cx.id, &cx.one(), self.kind())?;
        Ok((Shape(vec![Dim::Fixed(d)]), Vec::new()))
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
        vec![Step::GlobalPool { max: self.max, positions: Self::positions(c), x: c.inputs[0], y: c.value }]
    }
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some((d, write)) = dx(0, false).into_opt() else { return Vec::new() };
        let (max, positions) = (self.max, Self::positions(c));
        vec![Step::GlobalPoolBackward { max, positions, x: c.inputs[0], y: c.value, dy, dx: d, write }]
    }
    fn backward_reads(&self) -> Reads {
        // The maximum's gradient finds the position that holds the output.
        Reads { input: self.max, output: self.max }
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
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let f = if self.max { "amax" } else { "mean" };
        Some(super::PyLayer::line(format!("{}.{f}(dim=(1, 2))", c.x)))
    }
    /// `GlobalAveragePool`/`GlobalMaxPool` (channels first), then a flatten to `[batch, D]`.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        use super::onnx::{Attr, Layout};
        let x = g.value(cx.input()?, Layout::ChannelsFirst)?;
        let op = if self.max { "GlobalMaxPool" } else { "GlobalAveragePool" };
        let pooled = g.node(op, &[&x], vec![], &format!("{}/pooled", cx.name));
        let y = g.node("Flatten", &[&pooled], vec![Attr::Int("axis", 1)], cx.name);
        g.set(cx.id, y, Layout::ChannelsLast);
        Ok(())
    }
    /// The maximum's kinks: which position wins in each channel.
    fn step_facts(&self, step: &Step) -> StepFacts {
        match step {
            Step::GlobalPool { max: true, x, y, .. } => {
                StepFacts { share: Share::Either, kink: Some(Kink::Across(*x, y.cols)), meeting: 0 }
            }
            _ => StepFacts::SMOOTH,
        }
    }
}
