//! Activations: `sigmoid`, `tanh`, `relu`, `leaky_relu(alpha)`, `identity`, `hard_tanh`,
//! `gelu(approximate)`, elementwise.
//! The functions themselves are the runtime's [`Act`](nnlang_runtime::plan::Act); this module names them, reads them from
//! source and writes them in IR text and JSON.

use super::args::Args;
use super::rule::RuleResult;
use super::tensor::Elems;
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use crate::diag::Diagnostic;
use nnlang_runtime::act;
use nnlang_runtime::plan::{ABuf, PBuf, Step};
use serde::{Serialize, Serializer};

/// An activation function (the runtime's table of them).
pub use nnlang_runtime::plan::Act as Activation;

/// The name as written in source.
pub fn name(a: &Activation) -> &'static str {
    a.name()
}

/// The name with its argument: `leaky_relu(alpha = 0.1)`.
pub fn text(a: &Activation) -> String {
    a.text()
}

/// `leaky_relu`'s slope below zero when none is given.
pub const DEFAULT_ALPHA: f64 = nnlang_runtime::act::LEAKY_RELU_ALPHA;

/// The activation applied to the Python expression `x`, as the runtime's table writes it.
pub fn pytorch(a: &Activation, x: &str) -> String {
    a.desc().pytorch.replace("{x}", x)
}

/// JSON of an activation: `"relu"`, `{"leaky_relu": {"alpha": 0.1}}`,
/// `{"gelu": {"approximate": "tanh"}}`.
pub fn ser<S: Serializer>(a: &Activation, s: S) -> Result<S::Ok, S::Error> {
    let attrs = a.desc().attrs;
    if attrs.is_empty() {
        return s.serialize_str(a.name());
    }
    let args: serde_json::Map<String, serde_json::Value> = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mut m = serde_json::Map::new();
    m.insert(a.name().to_string(), serde_json::Value::Object(args));
    m.serialize(s)
}

/// Serializes an optional fused activation by its name.
pub fn ser_opt<S: Serializer>(a: &Option<Activation>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => ser(a, s),
        None => s.serialize_none(),
    }
}

/// An activation as a layer of its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActivationOp {
    /// The function applied to every element.
    #[serde(serialize_with = "ser")]
    pub function: Activation,
}

impl ActivationOp {
    /// One layer per activation of the runtime's table, each written by its name.
    pub const LAYERS: &'static [Layer] = &[
        plain("sigmoid", "`sigmoid`", |_| op(Activation::Sigmoid)),
        plain("tanh", "`tanh`", |_| op(Activation::Tanh)),
        plain("relu", "`relu`", |_| op(Activation::Relu)),
        Layer {
            name: "leaky_relu",
            args: &[("alpha", false)],
            example: "`leaky_relu(alpha = 0.01)`",
            merge: false,
            positional_error: None,
            build: leaky_relu,
        },
        plain("identity", "`identity`", |_| op(Activation::Identity)),
        plain("hard_tanh", "`hard_tanh`", |_| op(Activation::HardTanh)),
        Layer {
            name: "gelu",
            args: &[("approximate", false)],
            example: "`gelu` or `gelu(approximate = tanh)`",
            merge: false,
            positional_error: None,
            build: gelu,
        },
    ];
}

const fn plain(name: &'static str, example: &'static str, build: fn(&Args) -> Result<Op, Diagnostic>) -> Layer {
    Layer { name, args: &[], example, merge: false, positional_error: None, build }
}

fn op(function: Activation) -> Result<Op, Diagnostic> {
    Ok(Op::Activation(ActivationOp { function }))
}
fn leaky_relu(a: &Args) -> Result<Op, Diagnostic> {
    let alpha = a.number_in("alpha", 0.0, 1.0, false, "[0, 1]")?.map_or(DEFAULT_ALPHA, |(v, _)| v);
    op(Activation::LeakyRelu(alpha))
}
fn gelu(a: &Args) -> Result<Op, Diagnostic> {
    let tanh = a.symbol("approximate", &["none", "tanh"])? == Some("tanh");
    op(Activation::Gelu { tanh })
}

impl Rules for ActivationOp {
    /// The function's kinks (from the runtime's table), read off the input, or off the output
    /// when the function runs in place.
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts {
        use nnlang_runtime::plan::{Kink, Share, StepFacts};
        let kink = match step {
            Step::Activation { f, x, .. } | Step::ActivationSlope { f, x, .. } => Kink::of(*f, *x, false),
            Step::ActivationInPlace { f, y } | Step::ActivationSlopeInPlace { f, y, .. } => Kink::of(*f, *y, true),
            _ => None,
        };
        StepFacts { share: Share::Either, kink, meeting: 0 }
    }
    /// The function's nodes from the runtime's table, on whichever layout the input has.
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let f = self.function;
        super::onnx::elementwise(g, cx, |g, x, out| match f {
            Activation::Identity => g.node("Identity", &[x], vec![], out),
            f => super::onnx::activation(g, &f, x, out),
        })
    }
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        Some(super::PyLayer::line(pytorch(&self.function, c.x)))
    }
    fn kind(&self) -> &'static str {
        name(&self.function)
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        self.function.desc().attrs.into_iter().map(|(k, v)| (k, nnlang_runtime::act::attr_text(&v))).collect()
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
    /// In training, a function whose derivative is read off its input (GELU) keeps its
    /// derivative (`slope`) from the forward pass, computed while the input is at hand: the
    /// backward pass is then one product, and the input need not be kept.
    fn scratch(&self, c: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        if c.training && self.function.reads() == act::Reads::Input {
            vec![Scratch::PerRow(c.value.cols)]
        } else {
            Vec::new()
        }
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        let f = self.function;
        vec![match (c.scratch.first(), c.in_place) {
            (Some(&slope), true) => Step::ActivationSlopeInPlace { f, y: c.value, slope },
            (Some(&slope), false) => Step::ActivationSlope { f, x: c.inputs[0], y: c.value, slope },
            (None, true) => Step::ActivationInPlace { f, y: c.value },
            (None, false) => Step::Activation { f, x: c.inputs[0], y: c.value },
        }]
    }
    // Forward was y = f(x), so now dx (+)= dy · f'(x), with f' read off y (or kept by the
    // forward pass, for the functions whose derivative reads x: GELU).
    fn backward(&self, c: &StepCx, dy: ABuf, _grads: &[PBuf], dx: &mut super::DxFn) -> Vec<Step> {
        let f = self.function;
        if let Some(&slope) = c.scratch.first() {
            return match dx(0, true) {
                super::Dx::None => Vec::new(),
                super::Dx::New => vec![Step::SlopeBackwardInPlace { slope, d: dy }],
                super::Dx::Into(d, write) => vec![Step::SlopeBackward { slope, dy, dx: d, write }],
            };
        }
        let off = match f.reads() {
            act::Reads::Output => c.value,
            act::Reads::Input => c.inputs[0],
        };
        match dx(0, true) {
            super::Dx::None => Vec::new(),
            super::Dx::New => vec![Step::ActivationBackwardInPlace { f, y: off, d: dy }],
            super::Dx::Into(d, write) => {
                vec![Step::ActivationBackward { f, x: c.inputs[0], y: c.value, dy, dx: d, write }]
            }
        }
    }
    fn backward_reads(&self) -> Reads {
        // Where f' is read off the output, the input may be overwritten in place; where it
        // is read off the input, the forward pass kept it (`scratch`): neither is read.
        Reads { input: false, output: self.function.reads() == act::Reads::Output }
    }
    fn elementwise(&self) -> bool {
        true
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
