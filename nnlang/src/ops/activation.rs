//! Activations: `sigmoid`, `tanh`, `relu`, `leaky_relu(alpha)`, `identity`, elementwise.
//! The functions themselves are the runtime's [`Act`](nnlang_runtime::plan::Act); this module names them, reads them from
//! source and writes them in IR text and JSON.

use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use crate::ir::{fmt_f64, Elems};
use crate::lower::args::Args;
use crate::lower::eval::Env;
use crate::shape::RuleResult;
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::{Serialize, Serializer};

/// An activation function (the runtime's table of them).
pub use nnlang_runtime::plan::Act as Activation;

/// The name as written in source.
pub fn name(a: &Activation) -> &'static str {
    match a {
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
        Activation::Relu => "relu",
        Activation::LeakyRelu(_) => "leaky_relu",
        Activation::Identity => "identity",
    }
}

/// The name with its argument: `leaky_relu(0.1)`.
pub fn text(a: &Activation) -> String {
    match a {
        Activation::LeakyRelu(alpha) => format!("leaky_relu({})", fmt_f64(*alpha)),
        other => name(other).to_string(),
    }
}

/// The names `activation = …` accepts.
pub const NAMES: &[&str] = &["tanh", "relu", "sigmoid", "identity", "leaky_relu"];

/// The activation of a bare name (`leaky_relu` with its default slope).
pub fn from_name(s: &str) -> Option<Activation> {
    Some(match s {
        "relu" => Activation::Relu,
        "sigmoid" => Activation::Sigmoid,
        "identity" => Activation::Identity,
        "leaky_relu" => Activation::LeakyRelu(DEFAULT_ALPHA),
        "tanh" => Activation::Tanh,
        _ => return None,
    })
}

/// `leaky_relu`'s slope below zero when none is given.
pub const DEFAULT_ALPHA: f64 = 0.01;

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Json {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu { alpha: f64 },
    Identity,
}

fn json(a: &Activation) -> Json {
    match *a {
        Activation::Sigmoid => Json::Sigmoid,
        Activation::Tanh => Json::Tanh,
        Activation::Relu => Json::Relu,
        Activation::LeakyRelu(alpha) => Json::LeakyRelu { alpha },
        Activation::Identity => Json::Identity,
    }
}

/// JSON of an activation: `"relu"`, `{"leaky_relu": {"alpha": 0.1}}`.
pub fn ser<S: Serializer>(a: &Activation, s: S) -> Result<S::Ok, S::Error> {
    json(a).serialize(s)
}

/// Serializes an optional fused activation by its name.
pub fn ser_opt<S: Serializer>(a: &Option<Activation>, s: S) -> Result<S::Ok, S::Error> {
    a.as_ref().map(json).serialize(s)
}

/// An activation as a layer of its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActivationOp {
    /// The function applied to every element.
    #[serde(serialize_with = "ser")]
    pub function: Activation,
}

impl ActivationOp {
    /// `sigmoid`, `tanh`, `relu`, `identity` and `leaky_relu(alpha)`.
    pub const LAYERS: &'static [Layer] = &[
        Layer {
            name: "sigmoid",
            args: &[],
            example: "`sigmoid`",
            merge: false,
            positional_error: None,
            build: sigmoid,
        },
        Layer { name: "tanh", args: &[], example: "`tanh`", merge: false, positional_error: None, build: tanh },
        Layer { name: "relu", args: &[], example: "`relu`", merge: false, positional_error: None, build: relu },
        Layer {
            name: "leaky_relu",
            args: &[("alpha", false)],
            example: "`leaky_relu(alpha = 0.01)`",
            merge: false,
            positional_error: None,
            build: leaky_relu,
        },
        Layer {
            name: "identity",
            args: &[],
            example: "`identity`",
            merge: false,
            positional_error: None,
            build: identity,
        },
    ];
}

fn op(function: Activation) -> Result<Op, Diagnostic> {
    Ok(Op::Activation(ActivationOp { function }))
}
fn sigmoid(_: &Args, _: &Env) -> Result<Op, Diagnostic> {
    op(Activation::Sigmoid)
}
fn tanh(_: &Args, _: &Env) -> Result<Op, Diagnostic> {
    op(Activation::Tanh)
}
fn relu(_: &Args, _: &Env) -> Result<Op, Diagnostic> {
    op(Activation::Relu)
}
fn identity(_: &Args, _: &Env) -> Result<Op, Diagnostic> {
    op(Activation::Identity)
}
fn leaky_relu(a: &Args, env: &Env) -> Result<Op, Diagnostic> {
    let alpha = a.number_in("alpha", env, 0.0, 1.0, false, "[0, 1]")?.map_or(DEFAULT_ALPHA, |(v, _)| v);
    op(Activation::LeakyRelu(alpha))
}

impl Rules for ActivationOp {
    fn kind(&self) -> &'static str {
        name(&self.function)
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        match self.function {
            Activation::LeakyRelu(alpha) => vec![("alpha", fmt_f64(alpha))],
            Activation::Sigmoid | Activation::Tanh | Activation::Relu | Activation::Identity => Vec::new(),
        }
    }
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        Ok((cx.one(), Vec::new()))
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
        let f = self.function;
        vec![if c.in_place {
            Step::ActivationInPlace { f, y: c.value }
        } else {
            Step::Activation { f, x: c.inputs[0], y: c.value }
        }]
    }
    // Forward was y = f(x), so now dx (+)= dy · f'(x), with f' read off y.
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let f = self.function;
        match dx(0, true) {
            super::Dx::None => Vec::new(),
            super::Dx::New => vec![Step::ActivationBackwardInPlace { f, y: c.value, d: dy }],
            super::Dx::Into(d, write) => {
                vec![Step::ActivationBackward { f, x: c.inputs[0], y: c.value, dy, dx: d, write }]
            }
        }
    }
    fn backward_reads(&self) -> Reads {
        // f' is read off the output, so the input may be overwritten in place.
        Reads { input: false, output: true }
    }
    fn elementwise(&self) -> bool {
        true
    }
    fn per_step(&self) -> bool {
        true
    }
}
