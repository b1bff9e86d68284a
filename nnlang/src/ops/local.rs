//! `local(filters, size, stride, pad)`: the geometry of a convolution with a separate filter
//! at every output position (a locally-connected layer).

use super::args::Args;
use super::conv::{window_args, window_shape, workspaces, WINDOW_ARGS};
use super::rule::{bias, weight, RuleResult};
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, Act, Geometry, PBuf, Step};
use serde::Serialize;

/// `local(filters, size, stride, pad)`: a locally-connected layer (a filter per output position).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Local {
    /// Output channels.
    pub filters: usize,
    /// The filters' height and width.
    pub size: usize,
    /// The step between windows.
    pub stride: usize,
    /// Zeros added on every side.
    pub pad: usize,
}

impl Local {
    /// `local`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "local",
        args: WINDOW_ARGS,
        example: "`local(filters = 32, size = 3, stride = 1, pad = 0)`",
        merge: false,
        positional_error: None,
        build,
    }];

    fn geometry(&self, c: &StepCx) -> Option<Geometry> {
        c.geometry(self.size, self.stride, self.pad, Some(self.filters))
    }
}

fn build(a: &Args) -> Result<Op, Diagnostic> {
    let (filters, size, stride, pad) = window_args(a)?;
    Ok(Op::Local(Local { filters, size, stride, pad }))
}

impl Rules for Local {
    /// Only the batch splits it (its kernel walks whole examples).
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Kink, Share, StepFacts};
        let kink = match step {
            Step::Local { f, y, .. } => Kink::of(*f, *y, true),
            _ => None,
        };
        StepFacts { share: Share::Batch, kink, meeting: 0 }
    }
    /// Its patches by a convolution with one-hot filters, then at every position a product
    /// with that position's filters (`MatMul` over `[oh, ow]`).
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        use super::onnx::Attr;
        let (src, name) = (cx.input()?, cx.name);
        let (i, o) = (g.shape(src)?, g.shape(cx.id)?);
        let (Some([_, _, d]), Some([oh, ow, f])) = (fixed3(&i), fixed3(&o)) else {
            return Err(format!("`{name}`: a locally-connected layer reads and makes volumes of fixed size"));
        };
        let k = self.size;
        let patch = d * k * k;
        // Patches: a convolution whose filter p picks input (channel, y, x) = p.
        let mut onehot = vec![0f32; patch * patch];
        for p in 0..patch {
            onehot[p * patch + p] = 1.0;
        }
        let e = g.tensor(&format!("{name}/patch_filters"), &[patch, d, k, k], &onehot);
        let x = g.value(src, super::onnx::Layout::ChannelsFirst)?;
        let (kk, s, pd) = (k as i64, self.stride as i64, self.pad as i64);
        let attrs = vec![
            Attr::Ints("kernel_shape", vec![kk, kk]),
            Attr::Ints("strides", vec![s, s]),
            Attr::Ints("pads", vec![pd, pd, pd, pd]),
        ];
        let cols = g.node("Conv", &[&x, &e], attrs, &format!("{name}/patches"));
        let cols =
            g.node("Transpose", &[&cols], vec![Attr::Ints("perm", vec![0, 2, 3, 1])], &format!("{name}/patches_nhwc"));
        let s5 = g.ints(&format!("{name}/rows_shape"), &[0, oh as i64, ow as i64, 1, patch as i64]);
        let rows = g.node("Reshape", &[&cols, &s5], vec![], &format!("{name}/rows"));
        // nnlang's weight [oh, ow, f, d, k, k] as [oh, ow, d·k·k, f].
        let w = g.param(cx.id, "weight")?;
        let mut wt = vec![0f32; w.len()];
        for pos in 0..oh * ow {
            for fi in 0..f {
                for p in 0..patch {
                    wt[(pos * patch + p) * f + fi] = w[(pos * f + fi) * patch + p];
                }
            }
        }
        let wt = g.tensor(&format!("{name}.weight/positions"), &[oh, ow, patch, f], &wt);
        let b = super::onnx::param_tensor(g, cx.id, "bias", &[oh, ow, f])?;
        let prod = g.node("MatMul", &[&rows, &wt], vec![], &format!("{name}/matmul"));
        let s4 = g.ints(&format!("{name}/out_shape"), &[0, oh as i64, ow as i64, f as i64]);
        let flat = g.node("Reshape", &[&prod, &s4], vec![], &format!("{name}/products"));
        let y = g.node("Add", &[&flat, &b], vec![], name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    /// The exported file's `Local` module (a filter per output position).
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let (i, o) = (c.in_shape?, c.out_shape?);
        let dims: Vec<String> = i.0.iter().chain(o.0.iter()).map(|d| d.to_string()).collect();
        let dim = |k: usize| dims.get(k).cloned().unwrap_or_default();
        let init = c.init(format!(
            "Local({}, {}, {}, {}, {}, {}, {}, None)",
            dim(2),
            self.filters,
            self.size,
            self.stride,
            self.pad,
            dim(3),
            dim(4)
        ));
        Some(super::PyLayer::with(init, format!("{}({})", c.module, c.x)))
    }
    fn kind(&self) -> &'static str {
        "local"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("filters", self.filters.to_string()),
            ("size", self.size.to_string()),
            ("stride", self.stride.to_string()),
            ("pad", self.pad.to_string()),
        ]
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let win = super::geometry::Window::plain(self.size, self.stride, self.pad);
        let ([oh, ow, k], d) = window_shape(cx, "local", self.filters, win)?;
        let f = self.size;
        // Each output (position and filter) reads a d·f² patch, whatever the positions.
        let params = vec![
            weight(cx.name, "weight", &[oh, ow, k, d, f, f], d * f * f, k * f * f),
            bias(cx.name, "bias", &[oh, ow, k]),
        ];
        Ok((super::tensor::Shape::fixed(&[oh, ow, k]), params))
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
        let (x, w, b, y, ws) = (c.inputs[0], c.params[0], c.params[1], c.value, c.scratch[0]);
        vec![Step::Local { g, f: Act::Identity, x, w, b, y, ws }]
    }
    // Forward was y = local(x) + b, so now dW = dyᵀ·patches at each position, db = dy,
    // dx (+)= col2im(dy·W).
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let Some(g) = self.geometry(c) else { return Vec::new() };
        let d = dx(0, false).into_opt();
        let (x, y, w, ws) = (c.inputs[0], c.value, c.params[0], c.scratch[1]);
        vec![Step::LocalBackward { g, f: Act::Identity, x, y, w, dy, dw: grads[0], db: grads[1], dx: d, ws }]
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
        false
    }
}

/// The three dimensions of a volume, when they are fixed.
fn fixed3(s: &super::tensor::Shape) -> Option<[usize; 3]> {
    match s.0.as_slice() {
        [super::tensor::Dim::Fixed(a), super::tensor::Dim::Fixed(b), super::tensor::Dim::Fixed(c)] => {
            Some([*a, *b, *c])
        }
        _ => None,
    }
}
