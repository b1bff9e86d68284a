//! A model input (`input x: [28, 28, 1]`): the caller's array, read where it is held.

use super::rule::RuleResult;
use super::tensor::{Dim, Elems, Shape};
use super::{FlopsCx, Layer, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::Serialize;

/// A model input, `input name: [dims]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Input {
    /// Without the batch.
    pub dims: Vec<Dim>,
    /// `ids < n`: every value is a token id in `0..n` (read by `embedding`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<usize>,
}

impl Input {
    /// Declared with `input`, not written as a layer.
    pub const LAYERS: &'static [Layer] = &[];
}

impl Rules for Input {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    /// Made by the exporter (with the preprocessing).
    fn onnx(&self, _: &mut dyn super::onnx::OnnxGraph, _: &super::onnx::OnnxCx) -> Result<(), String> {
        Ok(())
    }
    fn pytorch(&self, _: &super::PyCx) -> Option<super::PyLayer> {
        None
    }
    fn kind(&self) -> &'static str {
        "input"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut a = vec![("dims", Shape(self.dims.clone()).to_string())];
        if let Some(n) = self.ids {
            a.push(("ids_below", n.to_string()));
        }
        a
    }
    fn shape(&self, _: &ShapeCx) -> RuleResult {
        Ok((Shape(self.dims.clone()), Vec::new()))
    }
    fn flops(&self, _: &FlopsCx) -> Elems {
        Elems::default()
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Caller
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
