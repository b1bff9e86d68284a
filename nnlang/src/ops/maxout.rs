//! `maxout(units, pieces)`: the maximum over `pieces` affine maps of the flattened input
//! (a dense product into `units · pieces` values, then a group maximum); and `maxout(pieces)`
//! after a convolution: the maximum over each group of `pieces` consecutive channels.

use super::args::Args;
use super::rule::{affine_in, bias, weight, RuleResult, ShapeError};
use super::tensor::{Dim, Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Step, Write};
use serde::Serialize;

/// `maxout(units, pieces)`: the largest of `pieces` affine functions, per unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Maxout {
    /// Output units.
    pub units: usize,
    /// Affine pieces per unit.
    pub pieces: usize,
}

/// `maxout(pieces = p)` on a volume: `[h, w, d]` → `[h, w, d/p]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaxoutChannels {
    /// Consecutive channels per group.
    pub pieces: usize,
}

impl Maxout {
    /// `maxout` (over a dense layer, or over channels).
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "maxout",
        args: &[("units", false), ("pieces", true)],
        example: "`maxout(units = 128, pieces = 2)` (or `maxout(pieces = 2)` after a convolution)",
        merge: false,
        positional_error: None,
        build,
    }];
}

impl MaxoutChannels {
    /// Written `maxout` too: see [`Maxout::LAYERS`].
    pub const LAYERS: &'static [Layer] = &[];
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    let pieces = a.required_int("pieces")?;
    Ok(match a.positive_int("units")? {
        Some(units) => Op::Maxout(Maxout { units, pieces }),
        // Without units: the maximum over groups of channels (after a convolution).
        None => Op::MaxoutChannels(MaxoutChannels { pieces }),
    })
}

impl Rules for Maxout {
    /// Its products split by outputs among threads (as dense); the winner of each group.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Kink, Share, StepFacts};
        match step {
            Step::Dense { x, y, .. } => StepFacts { share: Share::Products(x.cols + y.cols), kink: None, meeting: 0 },
            Step::Maxout { pieces, z, .. } => {
                StepFacts { share: Share::Either, kink: Some(Kink::Winner(*z, *pieces)), meeting: 0 }
            }
            _ => StepFacts::SMOOTH,
        }
    }
    /// The affine map, then `Reshape` + `ReduceMax` over the pieces.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let src = cx.input()?;
        let in_shape = g.shape(src)?;
        let x = g.value(src, super::onnx::Layout::ChannelsLast)?;
        let linear = format!("{}/linear", cx.name);
        let y = super::onnx::affine(g, cx.id, &x, &in_shape, self.units * self.pieces, &linear)?;
        let (u, p) = (self.units as i64, self.pieces as i64);
        let shape = if in_shape.is_sequence() { vec![0, 0, u, p] } else { vec![0, u, p] };
        let y = super::onnx::max_over_pieces(g, &y, shape, cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let init = c.init(format!("nn.Linear({}, {})", c.fan_in(), self.units * self.pieces));
        let x = format!("{}({}).unflatten(-1, ({}, {})).amax(-1)", c.module, c.flat_x(), self.units, self.pieces);
        Some(super::PyLayer::with(init, x))
    }
    fn kind(&self) -> &'static str {
        "maxout"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("units", self.units.to_string()), ("pieces", self.pieces.to_string())]
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (fan_in, out) = affine_in(cx.id, &cx.one(), self.units, "maxout")?;
        let Some(rows) = self.units.checked_mul(self.pieces).filter(|&r| r as u64 <= super::rule::MAX_ELEMENTS) else {
            return Err(vec![ShapeError::new(
                cx.id,
                format!("`maxout(units = {}, pieces = {})` needs more than 2^40 affine maps", self.units, self.pieces),
                "far too large",
            )
            .note("units × pieces is the number of rows of its weight; a number is probably mistyped")]);
        };
        Ok((out, vec![weight(cx.name, "weight", &[rows, fan_in], fan_in, rows), bias(cx.name, "bias", &[rows])]))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.per_example_or_step(
            (2 * cx.fan_in() + 1).saturating_mul((self.units as u64).saturating_mul(self.pieces as u64)),
        )
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    /// The values before the maximum, and (training) their gradient.
    fn scratch(&self, c: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        let z = Scratch::PerRow(self.units.saturating_mul(self.pieces));
        if c.training {
            vec![z, z]
        } else {
            vec![z]
        }
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let z = c.scratch[0];
        vec![
            Step::Dense { x: c.inputs[0], w: c.params[0], b: c.params[1], y: z },
            Step::Maxout { pieces: self.pieces, z, y: c.value },
        ]
    }
    // Forward was z = x·Wᵀ + b, y = max over groups of z, so now dz = dy at the maxima,
    // then as dense.
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let (z, dz) = (c.scratch[0], c.scratch[1]);
        vec![
            Step::MaxoutBackward { pieces: self.pieces, z, y: c.value, dy, dz, write: Write::Assign },
            Step::DenseBackward {
                x: c.inputs[0],
                w: c.params[0],
                dy: dz,
                dw: grads[0],
                db: grads[1],
                dx: dx(0, false).into_opt(),
            },
        ]
    }
    fn backward_reads(&self) -> Reads {
        Reads { input: true, output: true }
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

impl Rules for MaxoutChannels {
    /// The winner of each group of channels.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Kink, Share, StepFacts};
        match step {
            Step::Maxout { pieces, z, .. } => {
                StepFacts { share: Share::Either, kink: Some(Kink::Winner(*z, *pieces)), meeting: 0 }
            }
            _ => StepFacts::SMOOTH,
        }
    }
    /// `Reshape` + `ReduceMax` over each group of channels.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let src = cx.input()?;
        let in_shape = g.shape(src)?;
        let x = g.value(src, super::onnx::Layout::ChannelsLast)?;
        let depth = in_shape.last().ok_or_else(|| format!("`{}`: its input has no fixed depth", cx.name))?;
        let mut shape = vec![0i64; in_shape.rank()];
        shape.push((depth / self.pieces.max(1)) as i64);
        shape.push(self.pieces as i64);
        let y = super::onnx::max_over_pieces(g, &x, shape, cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(format!("{}.unflatten(-1, (-1, {})).amax(-1)", c.x, self.pieces)))
    }
    fn kind(&self) -> &'static str {
        "maxout"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("pieces", self.pieces.to_string())]
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (s, pieces) = (cx.one(), self.pieces);
        match s.last() {
            Some(d) if d % pieces == 0 => {
                let mut dims = s.0.clone();
                if let Some(last) = dims.last_mut() {
                    *last = Dim::Fixed(d / pieces);
                }
                Ok((Shape(dims), Vec::new()))
            }
            Some(d) => Err(vec![ShapeError::new(
                cx.id,
                format!("`maxout(pieces = {pieces})` needs a depth divisible by {pieces}, found {d}"),
                format!("{d} is not a multiple of {pieces}"),
            )
            .help(format!(
                "give the layer before it a multiple of {pieces} filters, e.g. {}",
                (d / pieces + 1) * pieces
            ))]),
            None => Err(vec![ShapeError::new(
                cx.id,
                format!("`maxout` needs a fixed last dimension, found {s}"),
                "variable",
            )]),
        }
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
        vec![Step::Maxout { pieces: self.pieces, z: c.inputs[0], y: c.value }]
    }
    // Forward was y = max over groups of channels of x, so now dx (+)= dy at the maxima.
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        match dx(0, false).into_opt() {
            Some((d, write)) => {
                vec![Step::MaxoutBackward { pieces: self.pieces, z: c.inputs[0], y: c.value, dy, dz: d, write }]
            }
            None => Vec::new(),
        }
    }
    fn backward_reads(&self) -> Reads {
        Reads { input: true, output: true }
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
