//! `conv(filters, size, stride, pad)`: 2-D convolution over a `[height, width, depth]`
//! volume, by im2col into a planned workspace and one product per chunk of examples. The
//! `fuse-dense` pass sets `activation` when an activation is its only reader.

use super::activation::{self, Activation};
use super::args::Args;
use super::geometry::window_extent;
use super::rule::{bias, both_extents, volume, weight, RuleResult};
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, Act, Geometry, PBuf, Step};
use serde::Serialize;

/// `conv(filters, size, stride, pad)`: a 2-D convolution over a channels-last volume.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conv {
    /// Output channels.
    pub filters: usize,
    /// The filters' height and width.
    pub size: usize,
    /// The step between windows.
    pub stride: usize,
    /// Resolved from `same` / `valid`.
    pub pad: usize,
    /// Set by `fuse-dense`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "activation::ser_opt")]
    pub activation: Option<Activation>,
}

/// The arguments of a window layer (conv, local).
pub const WINDOW_ARGS: &[(&str, bool)] = &[("filters", true), ("size", true), ("stride", false), ("pad", false)];

impl Conv {
    /// `conv`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "conv",
        args: WINDOW_ARGS,
        example: "`conv(filters = 32, size = 3, stride = 1, pad = same)`",
        merge: false,
        positional_error: None,
        build,
    }];
}

/// `(filters, size, stride, pad)` of a window layer.
pub fn window_args(a: &Args) -> Result<(usize, usize, usize, usize), Diagnostic> {
    let filters = a.required_int("filters")?;
    let size = a.required_int("size")?;
    let stride = a.positive_int("stride")?.unwrap_or(1);
    let pad = a.padding(size)?;
    Ok((filters, size, stride, pad))
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    let (filters, size, stride, pad) = window_args(a)?;
    Ok(Op::Conv(Conv { filters, size, stride, pad, activation: None }))
}

/// Elements of an im2col workspace: whole examples' patches up to about 1 MiB.
pub fn workspace(g: &Geometry, max_batch: usize) -> usize {
    let per = g.oh * g.ow * g.d * g.f * g.f;
    let examples = (WORKSPACE / per.max(1)).clamp(1, max_batch.max(1));
    examples * per
}

const WORKSPACE: usize = 256 * 1024;

/// A forward and (training) a backward im2col workspace.
pub fn workspaces(g: Option<Geometry>, training: bool, max_batch: usize) -> Vec<Scratch> {
    let Some(g) = g else { return Vec::new() };
    let ws = workspace(&g, max_batch);
    if training {
        vec![Scratch::Fixed(ws), Scratch::Fixed(ws)]
    } else {
        vec![Scratch::Fixed(ws)]
    }
}

/// Output `[oh, ow, filters]` of a window layer over `[h, w, d]`, by the notes' formula.
pub fn window_shape(
    cx: &ShapeCx,
    kind: &str,
    filters: usize,
    size: usize,
    stride: usize,
    pad: usize,
) -> Result<([usize; 3], usize), Vec<super::rule::ShapeError>> {
    let [h, w, d] = volume(cx.id, &cx.one(), kind)?;
    let (oh, ow) = both_extents(cx.id, kind, (h, w), |dim, n| window_extent(dim, n, size, stride, pad))?;
    Ok(([oh, ow, filters], d))
}

impl Rules for Conv {
    /// Only the batch splits it (its kernel walks whole examples); a fused activation's kinks
    /// read off the output.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Kink, Share, StepFacts};
        let kink = match step {
            Step::Conv { f, y, .. } => Kink::of(*f, *y, true),
            _ => None,
        };
        StepFacts { share: Share::Batch, kink, meeting: 0 }
    }
    /// `Conv` (channels first), then the fused activation.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let src = cx.input()?;
        let depth = g.shape(src)?.last().ok_or_else(|| format!("`{}`: its input has no fixed depth", cx.name))?;
        let x = g.value(src, super::onnx::Layout::ChannelsFirst)?;
        let w = super::onnx::param_tensor(g, cx.id, "weight", &[self.filters, depth, self.size, self.size])?;
        let b = super::onnx::param_tensor(g, cx.id, "bias", &[self.filters])?;
        let (k, s, p) = (self.size as i64, self.stride as i64, self.pad as i64);
        let act = self.activation.unwrap_or(Activation::Identity);
        let pre = if act == Activation::Identity { cx.name.to_string() } else { format!("{}/linear", cx.name) };
        let attrs = vec![
            super::onnx::Attr::Ints("kernel_shape", vec![k, k]),
            super::onnx::Attr::Ints("strides", vec![s, s]),
            super::onnx::Attr::Ints("pads", vec![p, p, p, p]),
        ];
        let y = g.node("Conv", &[&x, &w, &b], attrs, &pre);
        let y = super::onnx::activation(g, &act, &y, cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsFirst);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let depth = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let init = c.init(format!(
            "nn.Conv2d({depth}, {}, {}, stride={}, padding={})",
            self.filters, self.size, self.stride, self.pad
        ));
        let x = format!("{}({}.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)", c.module, c.x);
        Some(super::PyLayer::with(init, activation::pytorch(&self.activation.unwrap_or(Activation::Identity), &x)))
    }
    fn kind(&self) -> &'static str {
        "conv"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("filters", self.filters.to_string()),
            ("size", self.size.to_string()),
            ("stride", self.stride.to_string()),
            ("pad", self.pad.to_string()),
        ];
        if let Some(f) = &self.activation {
            v.push(("activation", activation::text(f)));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let (out, d) = window_shape(cx, "conv", self.filters, self.size, self.stride, self.pad)?;
        let f = self.size;
        let params = vec![
            weight(cx.name, "weight", &[self.filters, d, f, f], d * f * f, self.filters * f * f),
            bias(cx.name, "bias", &[self.filters]),
        ];
        Ok((super::tensor::Shape::fixed(&out), params))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.output.elements().scale(2 * (self.size as u64).pow(2) * cx.input_last())
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    fn scratch(&self, c: &StepCx, max_batch: usize) -> Vec<Scratch> {
        workspaces(self.geometry(c), c.training, max_batch)
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let Some(g) = self.geometry(c) else { return Vec::new() };
        let f = self.activation.unwrap_or(Act::Identity);
        vec![Step::Conv { g, f, x: c.inputs[0], w: c.params[0], b: c.params[1], y: c.value, ws: c.scratch[0] }]
    }
    // Forward was y = f(conv(x) + b), so now dz = dy·f'(y) (over dy), dW = Σ dzᵀ·patches,
    // db = Σ dz, dx (+)= col2im(dz·W).
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some(g) = self.geometry(c) else { return Vec::new() };
        let f = self.activation.unwrap_or(Act::Identity);
        let d = dx(0, false).into_opt();
        let (x, y, w, ws) = (c.inputs[0], c.value, c.params[0], c.scratch[1]);
        vec![Step::ConvBackward { g, f, x, y, w, dy, dw: grads[0], db: grads[1], dx: d, ws }]
    }
    fn backward_reads(&self) -> Reads {
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
        false
    }
}

impl Conv {
    fn geometry(&self, c: &StepCx) -> Option<Geometry> {
        c.geometry(self.size, self.stride, self.pad, Some(self.filters))
    }
}
