//! `conv(filters, size, stride, pad, dilation, groups, round)`: 2-D convolution over a
//! `[height, width, depth]` volume, by im2col into a planned workspace and one product per
//! chunk of examples and group (depthwise ones directly, see the kernel). The `fuse-dense`
//! pass sets `activation` when an activation is its only reader.

use super::activation::{self, Activation};
use super::args::Args;
use super::geometry::{window_extent, Window};
use super::rule::{bias, both_extents, volume, weight, RuleResult};
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, Act, Geometry, PBuf, Step};
use serde::Serialize;

/// `conv(filters, size, stride, pad, dilation, groups, round)`: a 2-D convolution over a
/// channels-last volume.
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
    /// The distance between a filter's taps (1: adjacent).
    #[serde(skip_serializing_if = "is_one")]
    pub dilation: usize,
    /// Channel groups: each filter sees `depth / groups` channels (depthwise: `groups = depth`).
    #[serde(skip_serializing_if = "is_one")]
    pub groups: usize,
    /// `round = floor`: the windows that fit, the rest of each row and column left out (as
    /// PyTorch and Keras do); otherwise the windows must tile the padded input exactly.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub floor: bool,
    /// Set by `fold-batchnorm` (inference): the batch norm after it, computed in its weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<Fold>,
    /// Whether the convolution adds a bias (`bias = false`: none, as before a batch norm,
    /// which cancels any shift; PyTorch's `bias=False`).
    #[serde(skip_serializing_if = "is_true")]
    pub bias: bool,
    /// Set by `fuse-dense`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "activation::ser_opt")]
    pub activation: Option<Activation>,
}

/// The arguments of a window layer (conv, local).
pub const WINDOW_ARGS: &[(&str, bool)] = &[("filters", true), ("size", true), ("stride", false), ("pad", false)];

/// A convolution's: a window layer's, and its dilation, groups and rounding.
const CONV_ARGS: &[(&str, bool)] = &[
    ("filters", true),
    ("size", true),
    ("stride", false),
    ("pad", false),
    ("dilation", false),
    ("groups", false),
    ("round", false),
    ("bias", false),
];

/// A batch norm folded into the convolution before it (`fold-batchnorm`): its settings and
/// its name, which its parameters keep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fold {
    /// The batch norm's ε.
    pub eps: f64,
    /// Its momentum (for its parameters' roles; inference does not use it).
    #[serde(skip)]
    pub momentum: f64,
    /// Its node's name: its parameters are `name.weight`, `name.bias`, `name.running_mean`,
    /// `name.running_var`.
    pub name: String,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_true(b: &bool) -> bool {
    *b
}

/// No bias: an empty parameter buffer (the kernels start the sums from zero and leave `db` out).
const NO_BIAS: PBuf = PBuf { offset: 0, len: 0 };

impl Conv {
    /// `conv`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "conv",
        args: CONV_ARGS,
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
    let pad = a.padding(size, 1)?;
    Ok((filters, size, stride, pad))
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    let filters = a.required_int("filters")?;
    let size = a.required_int("size")?;
    let stride = a.positive_int("stride")?.unwrap_or(1);
    let dilation = a.positive_int("dilation")?.unwrap_or(1);
    let groups = a.positive_int("groups")?.unwrap_or(1);
    let pad = a.padding(size, dilation)?;
    let floor = a.symbol("round", &["floor", "exact"])? == Some("floor");
    let bias = a.boolean("bias")?.unwrap_or(true);
    Ok(Op::Conv(Conv { filters, size, stride, pad, dilation, groups, floor, bias, fold: None, activation: None }))
}

/// Elements of an im2col workspace: whole examples' patches (over one group) up to about
/// 1 MiB.
pub fn workspace(g: &Geometry, max_batch: usize) -> usize {
    let per = g.oh * g.ow * g.dg() * g.f * g.f;
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
    win: Window,
) -> Result<([usize; 3], usize), Vec<super::rule::ShapeError>> {
    let [h, w, d] = volume(cx.id, &cx.one(), kind)?;
    let (oh, ow) = both_extents(cx.id, kind, (h, w), |dim, n| window_extent(dim, n, win))?;
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
        let w =
            super::onnx::param_tensor(g, cx.id, "weight", &[self.filters, depth / self.groups, self.size, self.size])?;
        // A batch norm folded into it (inference, as `run` does) brings a bias.
        let with_bias = self.bias || g.fold_of(cx.id).is_some();
        let b = if with_bias { Some(super::onnx::param_tensor(g, cx.id, "bias", &[self.filters])?) } else { None };
        let (k, s, p) = (self.size as i64, self.stride as i64, self.pad as i64);
        let act = self.activation.unwrap_or(Activation::Identity);
        let pre = if act == Activation::Identity { cx.name.to_string() } else { format!("{}/linear", cx.name) };
        let attrs = vec![
            super::onnx::Attr::Ints("kernel_shape", vec![k, k]),
            super::onnx::Attr::Ints("strides", vec![s, s]),
            super::onnx::Attr::Ints("pads", vec![p, p, p, p]),
            super::onnx::Attr::Ints("dilations", vec![self.dilation as i64; 2]),
            super::onnx::Attr::Int("group", self.groups as i64),
        ];
        let y = match &b {
            Some(b) => g.node("Conv", &[&x, &w, b], attrs, &pre),
            None => g.node("Conv", &[&x, &w], attrs, &pre),
        };
        let y = super::onnx::activation(g, &act, &y, cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsFirst);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let depth = c.in_shape.and_then(|s| s.last()).unwrap_or(0);
        let mut extra = String::new();
        if self.dilation != 1 {
            extra += &format!(", dilation={}", self.dilation);
        }
        if self.groups != 1 {
            extra += &format!(", groups={}", self.groups);
        }
        if !self.bias {
            extra += ", bias=False";
        }
        let init = c.init(format!(
            "nn.Conv2d({depth}, {}, {}, stride={}, padding={}{extra})",
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
        if self.dilation != 1 {
            v.push(("dilation", self.dilation.to_string()));
        }
        if self.groups != 1 {
            v.push(("groups", self.groups.to_string()));
        }
        if self.floor {
            v.push(("round", "floor".to_string()));
        }
        if !self.bias {
            v.push(("bias", "false".to_string()));
        }
        if let Some(fold) = &self.fold {
            v.push(("fold", fold.name.clone()));
        }
        if let Some(f) = &self.activation {
            v.push(("activation", activation::text(f)));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let win = Window { f: self.size, s: self.stride, p: self.pad, dil: self.dilation, floor: self.floor };
        let (out, d) = window_shape(cx, "conv", self.filters, win)?;
        self.check_groups(cx, d)?;
        let (f, dg) = (self.size, d / self.groups);
        let mut params = vec![weight(cx.name, "weight", &[self.filters, dg, f, f], dg * f * f, self.filters * f * f)];
        if self.bias {
            params.push(bias(cx.name, "bias", &[self.filters]));
        }
        if let Some(fold) = &self.fold {
            params.extend(super::norm::params(&fold.name, self.filters, fold.momentum));
        }
        Ok((super::tensor::Shape::fixed(&out), params))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.output.elements().scale(2 * (self.size as u64).pow(2) * (cx.input_last() / self.groups as u64).max(1))
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    fn scratch(&self, c: &StepCx, max_batch: usize) -> Vec<Scratch> {
        let mut s = workspaces(self.geometry(c), c.training, max_batch);
        if let (Some(_), Some(g), Some(Scratch::Fixed(n))) = (&self.fold, self.geometry(c), s.first_mut()) {
            // The folded weights and bias, after the im2col workspace.
            *n += g.k * g.dg() * g.f * g.f + g.k;
        }
        s
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let Some(g) = self.geometry(c) else { return Vec::new() };
        let f = self.activation.unwrap_or(Act::Identity);
        let b = if self.bias { c.params.get(1).copied().unwrap_or(NO_BIAS) } else { NO_BIAS };
        let (x, w, y, ws) = (c.inputs[0], c.params[0], c.value, c.scratch[0]);
        match &self.fold {
            Some(fold) => {
                // The batch norm's four tensors follow the convolution's own.
                let at = if self.bias { 2 } else { 1 };
                let [gamma, beta, mean, var] = [0, 1, 2, 3].map(|i| c.params[at + i]);
                let eps = fold.eps;
                vec![Step::ConvFolded { g, f, x, w, b, gamma, beta, mean, var, eps, y, ws }]
            }
            None => vec![Step::Conv { g, f, x, w, b, y, ws }],
        }
    }
    // Forward was y = f(conv(x) + b), so now dz = dy·f'(y) (over dy), dW = Σ dzᵀ·patches,
    // db = Σ dz, dx (+)= col2im(dz·W).
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some(g) = self.geometry(c) else { return Vec::new() };
        let f = self.activation.unwrap_or(Act::Identity);
        let d = dx(0, false).into_opt();
        let (x, y, w, ws) = (c.inputs[0], c.value, c.params[0], c.scratch[1]);
        let db = grads.get(1).copied().unwrap_or(NO_BIAS);
        vec![Step::ConvBackward { g, f, x, y, w, dy, dw: grads[0], db, dx: d, ws }]
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
        let g = c.geometry(self.size, self.stride, self.pad, Some(self.filters))?;
        Some(Geometry { dil: self.dilation, groups: self.groups, ..g })
    }

    /// `groups` divides the input's depth and the filters.
    fn check_groups(&self, cx: &ShapeCx, d: usize) -> Result<(), Vec<super::rule::ShapeError>> {
        let g = self.groups;
        let what = match (d % g, self.filters % g) {
            (0, 0) => return Ok(()),
            (r, _) if r != 0 => format!("the {d} input channels"),
            _ => format!("the {} filters", self.filters),
        };
        let mut help = Vec::new();
        // The common divisors of the depth and the filters divide their gcd (trial division up
        // to its square root: bounded for any depth).
        let (mut a, mut b) = (d, self.filters);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let mut near: Option<usize> = None;
        let mut q = 1usize;
        while q.saturating_mul(q) <= a {
            if a.is_multiple_of(q) {
                for c in [q, a / q] {
                    if near.is_none_or(|n| (c.abs_diff(g), c) < (n.abs_diff(g), n)) {
                        near = Some(c);
                    }
                }
            }
            q += 1;
        }
        if let Some(q) = near {
            help.push(format!("groups = {q} divides both the depth {d} and the {} filters", self.filters));
        }
        if self.filters.is_multiple_of(d) && g != d && near != Some(d) {
            help.push(format!("or groups = {d} for a depthwise convolution (one group per input channel)"));
        }
        let mut e = super::rule::ShapeError::new(
            cx.id,
            format!("`groups = {g}` of this `conv` does not divide {what}"),
            format!("{what} do not split into {g} equal groups"),
        )
        .note(format!(
            "each of the {g} groups sees depth/groups = {d}/{g} input channels and makes filters/groups = {}/{g} outputs; both must be whole",
            self.filters
        ));
        for h in help {
            e = e.help(h);
        }
        Err(vec![e])
    }
}
