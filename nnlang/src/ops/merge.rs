//! `add(a, b, …)`: the elementwise sum of values of one shape; `concat(a, b, …)`: their
//! concatenation along the last dimension.

use super::args::Args;
use super::rule::{RuleResult, ShapeError};
use super::tensor::{Dim, Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::Serialize;

/// `add(a, b, …)`: the elementwise sum of values of one shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Add;

/// `concat(a, b, …)`: values joined along their last dimension.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Concat;

impl Add {
    /// `add`.
    pub const LAYERS: &'static [Layer] =
        &[Layer { name: "add", args: &[], example: "`add(a, b)`", merge: true, positional_error: None, build: add }];
}

impl Concat {
    /// `concat`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "concat",
        args: &[],
        example: "`concat(a, b)`",
        merge: true,
        positional_error: None,
        build: concat,
    }];
}

fn add(_: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::Add(Add))
}
fn concat(_: &Args) -> Result<Op, Diagnostic> {
    Ok(Op::Concat(Concat))
}

/// The error of a merge whose operands do not fit, pointing at each.
fn mismatch(cx: &ShapeCx, message: String, label: &str) -> ShapeError {
    let mut e = ShapeError::new(cx.id, message, label);
    for (i, s) in cx.inputs.iter().zip(cx.ins) {
        e.related.push((*i, format!("{s}")));
    }
    e
}

fn shapes_text(ins: &[&Shape]) -> String {
    ins.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" and ")
}

impl Rules for Add {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    /// `Sum`, in the layout of its first operand (a residual block's sum stays channels
    /// first between convolutions: no `Transpose` around it).
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let layout = g.layout(cx.input()?)?;
        let xs = cx.inputs.iter().map(|&i| g.value(i, layout)).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
        let y = g.node("Sum", &refs, vec![], cx.name);
        g.set(cx.id, y, layout);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(c.ins.join(" + ")))
    }
    fn kind(&self) -> &'static str {
        "add"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let first = cx.ins[0];
        if cx.ins.iter().all(|s| *s == first) {
            return Ok((first.clone(), Vec::new()));
        }
        let e =
            mismatch(cx, format!("`add` needs values of one shape, found {}", shapes_text(cx.ins)), "shapes differ");
        Err(vec![e.help("bring them to one shape first, e.g. with `dense(…)`, or use `concat(…)`")])
    }
    fn flops(&self, cx: &FlopsCx) -> Elems {
        cx.output.elements().scale(cx.n_inputs.saturating_sub(1) as u64)
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
        vec![Step::Add { xs: c.inputs.clone(), y: c.value }]
    }
    // Forward was y = Σ xᵢ, so now every dxᵢ (+)= dy. The first input's gradient, when it has
    // none yet, may be `dy` itself (the planner hands the buffer over: no copy), unless the
    // same value is also another input (its second share would read and write one buffer).
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let first_alone = c.inputs.iter().skip(1).all(|&x| x != c.inputs[0]);
        (0..c.inputs.len())
            .filter_map(|i| {
                dx(i, i == 0 && first_alone).into_opt().map(|(d, write)| Step::Copy { x: d, x_col: 0, y: dy, write })
            })
            .collect()
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
        true
    }
}

impl Rules for Concat {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    /// `Concat` over the last axis.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let xs =
            cx.inputs.iter().map(|&i| g.value(i, super::onnx::Layout::ChannelsLast)).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
        let y = g.node("Concat", &refs, vec![super::onnx::Attr::Int("axis", -1)], cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(format!("torch.cat([{}], dim=-1)", c.ins.join(", "))))
    }
    fn kind(&self) -> &'static str {
        "concat"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let ins = cx.ins;
        let first = ins[0];
        let rank_ok = ins.iter().all(|s| s.rank() == first.rank());
        let lead_ok = rank_ok && ins.iter().all(|s| s.0[..s.rank() - 1] == first.0[..first.rank() - 1]);
        let last: Option<usize> = ins.iter().try_fold(0usize, |acc, s| s.last().and_then(|l| acc.checked_add(l)));
        match (lead_ok, last) {
            (true, Some(total)) => {
                let mut dims = first.0[..first.rank() - 1].to_vec();
                dims.push(Dim::Fixed(total));
                Ok((Shape(dims), Vec::new()))
            }
            _ => Err(vec![mismatch(
                cx,
                format!("`concat` joins along the last dimension; the others must agree, found {}", shapes_text(ins)),
                "cannot be joined",
            )]),
        }
    }
    fn flops(&self, _: &FlopsCx) -> Elems {
        Elems::default()
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
        vec![Step::Concat { xs: c.inputs.clone(), y: c.value }]
    }
    // Forward put xᵢ in columns [colᵢ, colᵢ + colsᵢ) of y, so now dxᵢ (+)= those columns of dy.
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let mut col = 0;
        let mut steps = Vec::new();
        for (i, x) in c.inputs.iter().enumerate() {
            if let Some((d, write)) = dx(i, false).into_opt() {
                steps.push(Step::Copy { x: d, x_col: col, y: dy, write });
            }
            col += x.cols;
        }
        steps
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
        true
    }
}
