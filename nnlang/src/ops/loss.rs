//! The training loss, appended to a model's output by the `loss` pass and fused with a final
//! softmax or sigmoid by `fuse-softmax-ce`. Its step is built by the planner, which owns the
//! target ([`Loss::step`]). Every loss name is spelled here once.

use super::rule::RuleResult;
use super::tensor::{Elems, Shape};
use super::{FlopsCx, Layer, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use nnlang_runtime::plan::{ABuf, PBuf, Step, TargetKind};
use serde::Serialize;

/// The loss a user picks (`loss = …` in a `train` block): the runtime's table of them.
pub use nnlang_runtime::plan::Loss as UserLoss;

/// The loss a training graph ends in, fused or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Of probabilities (the model's softmax output).
    CrossEntropy,
    /// Of logits, with the softmax folded in.
    SoftmaxCrossEntropy,
    /// Of probabilities (the model's sigmoid output).
    BinaryCrossEntropy,
    /// Of logits, with the sigmoid folded in.
    SigmoidBinaryCrossEntropy,
    /// `mse`: half the squared error, averaged over rows.
    MeanSquaredError,
}

impl LossKind {
    /// The loss's name in source.
    pub const fn name(self) -> &'static str {
        match self {
            LossKind::CrossEntropy => "cross_entropy",
            LossKind::SoftmaxCrossEntropy => "softmax_cross_entropy",
            LossKind::BinaryCrossEntropy => "binary_cross_entropy",
            LossKind::SigmoidBinaryCrossEntropy => "sigmoid_binary_cross_entropy",
            LossKind::MeanSquaredError => "mse",
        }
    }

    /// The unfused loss of a user's choice.
    pub fn of(loss: UserLoss) -> LossKind {
        match loss {
            UserLoss::CrossEntropy(_) => LossKind::CrossEntropy,
            UserLoss::BinaryCrossEntropy => LossKind::BinaryCrossEntropy,
            UserLoss::MeanSquaredError => LossKind::MeanSquaredError,
        }
    }

    /// Whether the target is one class index per row.
    pub fn classes(self) -> bool {
        match self {
            LossKind::CrossEntropy | LossKind::SoftmaxCrossEntropy => true,
            LossKind::BinaryCrossEntropy | LossKind::SigmoidBinaryCrossEntropy | LossKind::MeanSquaredError => false,
        }
    }
}

/// The name a user writes for a loss (`loss = …`).
pub fn user_name(loss: UserLoss) -> &'static str {
    LossKind::of(loss).name()
}

/// The loss written `name` in a `train` block.
pub fn from_user_name(name: &str) -> Option<UserLoss> {
    [UserLoss::CROSS_ENTROPY, UserLoss::BinaryCrossEntropy, UserLoss::MeanSquaredError]
        .into_iter()
        .find(|l| user_name(*l) == name)
}

/// The loss a model without a `train` block is trained with: what its last layer suggests
/// (cross-entropy after a softmax, binary cross-entropy after a sigmoid, else squared error),
/// given the op of its output.
pub fn default_for(last: Option<&super::Op>) -> UserLoss {
    match last {
        Some(super::Op::Softmax(_)) => UserLoss::CROSS_ENTROPY,
        Some(super::Op::Activation(a)) if a.function == super::Activation::Sigmoid => UserLoss::BinaryCrossEntropy,
        _ => UserLoss::MeanSquaredError,
    }
}

/// The training loss appended to a model's output for training.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Loss {
    /// Which loss.
    pub loss: LossKind,
    /// A cross-entropy's label smoothing (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub smoothing: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Loss {
    /// Added by a pass, never written as a layer.
    pub const LAYERS: &'static [Layer] = &[];

    /// The target buffer's columns and kind for a prediction of `cols` columns.
    pub fn target(&self, cols: usize) -> (usize, TargetKind) {
        if self.loss.classes() {
            (1, TargetKind::Class)
        } else {
            (cols, TargetKind::Values)
        }
    }

    /// The loss step: the mean loss of prediction `p` against target `t`, and its gradient
    /// in `dp`.
    pub fn step(&self, p: ABuf, t: ABuf, dp: ABuf) -> Step {
        match self.loss {
            LossKind::SoftmaxCrossEntropy => {
                Step::SoftmaxCrossEntropy { logits: p, target: t, dlogits: dp, smoothing: self.smoothing }
            }
            LossKind::CrossEntropy => Step::CrossEntropy { probs: p, target: t, dprobs: dp, smoothing: self.smoothing },
            LossKind::SigmoidBinaryCrossEntropy => {
                Step::SigmoidBinaryCrossEntropy { logits: p, target: t, dlogits: dp }
            }
            LossKind::BinaryCrossEntropy => Step::BinaryCrossEntropy { probs: p, target: t, dprobs: dp },
            LossKind::MeanSquaredError => Step::MeanSquaredError { y: p, target: t, dy: dp },
        }
    }
}

impl Rules for Loss {
    /// Smooth, and cheap however threads share it.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    /// Not in an inference graph.
    fn onnx(&self, _: &mut dyn super::onnx::OnnxGraph, _: &super::onnx::OnnxCx) -> Result<(), String> {
        Ok(())
    }
    fn pytorch(&self, _: &super::PyCx) -> Option<super::PyLayer> {
        None
    }
    fn kind(&self) -> &'static str {
        "loss"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("loss", self.loss.name().to_string())];
        if self.smoothing != 0.0 {
            v.push(("smoothing", crate::diag::fmt_num(self.smoothing)));
        }
        v
    }
    fn shape(&self, _: &ShapeCx) -> RuleResult {
        Ok((Shape(Vec::new()), Vec::new()))
    }
    fn flops(&self, _: &FlopsCx) -> Elems {
        Elems::default()
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Loss
    }
    fn scratch(&self, _: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        Vec::new()
    }
    /// Built by the planner ([`Loss::step`]).
    fn forward(&self, _: &StepCx) -> Vec<Step> {
        Vec::new()
    }
    /// The loss step writes the prediction's gradient itself.
    fn backward(&self, _: &StepCx, _: ABuf, _: &[PBuf], _: &mut super::DxFn) -> Vec<Step> {
        Vec::new()
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
        true
    }
}
