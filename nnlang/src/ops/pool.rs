//! `maxpool`, `avgpool`, `l2pool(size, stride)`: a window reduction over each channel of a
//! `[height, width, depth]` volume, output `(W − F)/S + 1`.

use super::args::Args;
use super::geometry::pool_extent;
use super::rule::{both_extents, volume, RuleResult};
use super::tensor::{Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, Geometry, PBuf, Step};
use serde::{Serialize, Serializer};

/// The reduction (the runtime's table of them).
pub use nnlang_runtime::plan::PoolOp as PoolKind;

/// The layer name of a reduction.
pub fn name(k: PoolKind) -> &'static str {
    match k {
        PoolKind::Max => "maxpool",
        PoolKind::Avg => "avgpool",
        PoolKind::L2 => "l2pool",
    }
}

fn ser<S: Serializer>(k: &PoolKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        PoolKind::Max => "max",
        PoolKind::Avg => "avg",
        PoolKind::L2 => "l2",
    })
}

/// `maxpool`, `avgpool`, `l2pool`: a pooling window over each channel of a volume.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pool {
    /// The reduction over a window.
    #[serde(serialize_with = "ser")]
    pub kind: PoolKind,
    /// The window's height and width.
    pub size: usize,
    /// The step between windows.
    pub stride: usize,
    /// `round = floor`: the windows that fit, the rest of each row and column left out (as
    /// PyTorch and Keras pool by default); otherwise the windows must tile the input exactly.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub floor: bool,
    /// `round = ceil`: one more window where the last would not fit, cut at the input's edge
    /// (PyTorch's `ceil_mode`); an average divides by the values it has.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ceil: bool,
}

const ARGS: &[(&str, bool)] = &[("size", true), ("stride", false), ("round", false)];

impl Pool {
    /// `maxpool`, `avgpool` and `l2pool`.
    pub const LAYERS: &'static [Layer] = &[
        Layer {
            name: "maxpool",
            args: ARGS,
            example: "`maxpool(size = 2, stride = 2)`",
            merge: false,
            positional_error: None,
            build: max,
        },
        Layer {
            name: "avgpool",
            args: ARGS,
            example: "`avgpool(size = 2, stride = 2)`",
            merge: false,
            positional_error: None,
            build: avg,
        },
        Layer {
            name: "l2pool",
            args: ARGS,
            example: "`l2pool(size = 2, stride = 2)`",
            merge: false,
            positional_error: None,
            build: l2,
        },
    ];

    fn geometry(&self, c: &StepCx) -> Option<Geometry> {
        c.geometry(self.size, self.stride, 0, None)
    }
}

fn build(kind: PoolKind, a: &Args) -> Result<Op, Diagnostic> {
    let size = a.required_int("size")?;
    let stride = a.positive_int("stride")?.unwrap_or(size);
    let round = a.symbol("round", &["floor", "ceil", "exact"])?;
    if kind == PoolKind::L2 && round == Some("ceil") {
        let span = a.span_of("round");
        return Err(Diagnostic::error("`round = ceil` is for `maxpool` and `avgpool`", span, "not for an L2 pool")
            .with_note("a cut window's sum of squares has no counterpart in PyTorch or ONNX to export to")
            .with_help("use `round = floor`, or pad the map so that the windows fit"));
    }
    Ok(Op::Pool(Pool { kind, size, stride, floor: round == Some("floor"), ceil: round == Some("ceil") }))
}
fn max(a: &Args) -> Result<Op, Diagnostic> {
    build(PoolKind::Max, a)
}
fn avg(a: &Args) -> Result<Op, Diagnostic> {
    build(PoolKind::Avg, a)
}
fn l2(a: &Args) -> Result<Op, Diagnostic> {
    build(PoolKind::L2, a)
}

impl Rules for Pool {
    /// A max pooling's kinks: which input of each window passed.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Kink, PoolOp, Share, StepFacts};
        match step {
            Step::Pool { op: PoolOp::Max, g, x, y } => {
                StepFacts { share: Share::Either, kink: Some(Kink::Window(*g, *x, *y)), meeting: 0 }
            }
            _ => StepFacts::SMOOTH,
        }
    }
    /// `MaxPool`, `AveragePool`; an L2 pool as the square root of the windows' sums of
    /// squares (ONNX's `LpPool`, which not every runtime has).
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let x = g.value(cx.input()?, super::onnx::Layout::ChannelsFirst)?;
        let (k, s, name) = (self.size as i64, self.stride as i64, cx.name);
        let ceil = self.ceil;
        let attrs = || {
            let mut a = vec![
                super::onnx::Attr::Ints("kernel_shape", vec![k, k]),
                super::onnx::Attr::Ints("strides", vec![s, s]),
            ];
            if ceil {
                a.push(super::onnx::Attr::Int("ceil_mode", 1));
            }
            a
        };
        let y = match self.kind {
            PoolKind::Max => g.node("MaxPool", &[&x], attrs(), name),
            PoolKind::Avg => g.node("AveragePool", &[&x], attrs(), name),
            PoolKind::L2 => {
                let sq = g.node("Mul", &[&x, &x], vec![], &format!("{name}/square"));
                let mean = g.node("AveragePool", &[&sq], attrs(), &format!("{name}/mean"));
                let n = super::onnx::scalar(g, &format!("{name}/window"), (self.size * self.size) as f32);
                let sum = g.node("Mul", &[&mean, &n], vec![], &format!("{name}/sum"));
                g.node("Sqrt", &[&sum], vec![], name)
            }
        };
        g.set(cx.id, y, super::onnx::Layout::ChannelsFirst);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let nchw = format!("{}.permute(0, 3, 1, 2)", c.x);
        let (f, s) = (self.size, self.stride);
        let ceil = if self.ceil { ", ceil_mode=True" } else { "" };
        let pooled = match self.kind {
            PoolKind::Max => format!("F.max_pool2d({nchw}, {f}, {s}{ceil})"),
            PoolKind::Avg => format!("F.avg_pool2d({nchw}, {f}, {s}{ceil})"),
            PoolKind::L2 => format!("torch.sqrt(F.avg_pool2d({nchw} * {nchw}, {f}, {s}) * {})", f * f),
        };
        Some(super::PyLayer::line(format!("{pooled}.permute(0, 2, 3, 1)")))
    }
    fn kind(&self) -> &'static str {
        name(self.kind)
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("size", self.size.to_string()), ("stride", self.stride.to_string())];
        if self.floor {
            v.push(("round", "floor".to_string()));
        }
        if self.ceil {
            v.push(("round", "ceil".to_string()));
        }
        v
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let kind = name(self.kind);
        let [h, w, d] = volume(cx.id, &cx.one(), kind)?;
        let (oh, ow) = both_extents(cx.id, kind, (h, w), |dim, n| {
            pool_extent(dim, n, self.size, self.stride, self.floor, self.ceil)
        })?;
        Ok((Shape::fixed(&[oh, ow, d]), Vec::new()))
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.output.elements().scale((self.size as u64).pow(2))
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
        let Some(g) = self.geometry(c) else { return Vec::new() };
        vec![Step::Pool { op: self.kind, g, x: c.inputs[0], y: c.value }]
    }
    // Forward was y = pool(x), so now each window's x gets its share of dy.
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let (geometry, d) = (self.geometry(c), dx(0, false).into_opt());
        let (Some(g), Some((d, write))) = (geometry, d) else { return Vec::new() };
        vec![Step::PoolBackward { op: self.kind, g, x: c.inputs[0], y: c.value, dy, dx: d, write }]
    }
    fn backward_reads(&self) -> Reads {
        // The maximum (max), the norm (L2) are compared with the input.
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
        false
    }
}
