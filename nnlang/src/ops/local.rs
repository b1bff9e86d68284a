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
    /// The exported file's `Local` module (a filter per output position).
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let (i, o) = (c.in_shape?, c.out_shape?);
        let dims: Vec<String> = i.0.iter().chain(o.0.iter()).map(|d| d.to_string()).collect();
        let dim = |k: usize| dims.get(k).cloned().unwrap_or_default();
        let init = format!(
            "self.{} = Local({}, {}, {}, {}, {}, {}, {}, None)",
            c.name,
            dim(2),
            self.filters,
            self.size,
            self.stride,
            self.pad,
            dim(3),
            dim(4)
        );
        Some(super::PyLayer::with(init, format!("self.{}({})", c.name, c.x)))
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
        let ([oh, ow, k], d) = window_shape(cx, "local", self.filters, self.size, self.stride, self.pad)?;
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
