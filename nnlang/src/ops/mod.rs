//! One module per op family, each holding everything the compiler knows about its ops: the
//! layers that build them (signature, argument checks, the example diagnostics show), the
//! shape rule and parameter tensors (PyTorch names and layouts), FLOPs, scratch buffers, the
//! forward steps, the gradient rule, and the in-place facts.
//!
//! [`Op`] is a closed enum over the ops' structs, made by the registry at the end of this
//! file; it dispatches every question to the op's [`Rules`] with an exhaustive match. The
//! trait has no default methods: a new op answers every question or does not compile.
//!
//! Adding an op: its module here (a struct implementing [`Rules`], with a `LAYERS` constant
//! for the names it is written with), its kernel and step in the runtime, and one line in the
//! registry.
//! `docs/architecture.md`, "Adding a layer", walks through it.

pub mod activation;
pub mod args;
pub mod attention;
pub mod conv;
pub mod dense;
pub mod dropout;
pub mod embedding;
pub mod flatten;
pub mod gated;
pub mod geometry;
pub mod global_pool;
pub mod input;
pub mod layer_norm;
pub mod local;
pub mod loss;
pub mod maxout;
pub mod merge;
pub mod norm;
pub mod onnx;
pub mod pool;
pub mod rnn;
pub mod rule;
pub mod softmax;
pub mod softplus;
pub mod tensor;

pub use activation::Activation;
pub use loss::LossKind;
pub use pool::PoolKind;
pub use rnn::{Merge, RnnOutput};

use crate::diag::Diagnostic;
use crate::diag::Span;
use args::Args;
use nnlang_runtime::plan::{ABuf, Geometry, PBuf, Step, Write};
use rule::RuleResult;
use serde::Serialize;
use tensor::{Dim, Elems, NodeId, Shape};

/// What a shape rule sees: the node, its name (for parameter names) and its inputs' shapes.
pub struct ShapeCx<'a> {
    /// The node.
    pub id: NodeId,
    /// The node's name.
    pub name: &'a str,
    /// The nodes it reads.
    pub inputs: &'a [NodeId],
    /// Their shapes, in order.
    pub ins: &'a [&'a Shape],
}

impl ShapeCx<'_> {
    /// The first input's shape (every op but a merge has exactly one).
    pub fn one(&self) -> Shape {
        self.ins.first().copied().cloned().unwrap_or(Shape(Vec::new()))
    }
}

/// What a FLOPs count sees: the first input's shape, the output shape, the number of inputs.
pub struct FlopsCx<'a> {
    /// The first input's shape (none for an input node).
    pub input: Option<&'a Shape>,
    /// The node's shape.
    pub output: &'a Shape,
    /// How many values it reads.
    pub n_inputs: usize,
}

impl FlopsCx<'_> {
    /// The input's element count (zero for none).
    pub fn input_elems(&self) -> Elems {
        self.input.map(|s| s.elements()).unwrap_or_default()
    }
    /// The input's dimensions (a sequence dimension counts 1).
    pub fn input_dims(&self) -> Vec<u64> {
        self.input
            .map(|s| s.0.iter().map(|d| if let Dim::Fixed(n) = d { *n as u64 } else { 1 }).collect())
            .unwrap_or_default()
    }
    /// The input's last dimension (0 for none).
    pub fn input_last(&self) -> u64 {
        self.input_dims().last().copied().unwrap_or(0)
    }
    /// An affine map's fan-in: the whole input, or its last dimension per sequence step.
    pub fn fan_in(&self) -> u64 {
        let e = self.input_elems();
        if e.per_step > 0 {
            self.input_last()
        } else {
            e.fixed
        }
    }
    /// `per` FLOPs per example, or per step when the input is a sequence.
    pub fn per_example_or_step(&self, per: u64) -> Elems {
        if self.input_elems().per_step > 0 {
            Elems { fixed: 0, per_step: per, per_step_sq: 0 }
        } else {
            Elems { fixed: per, per_step: 0, per_step_sq: 0 }
        }
    }
}

/// How the planner gives an op's value a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// Held by the caller (a model input): read in place, never written.
    Caller,
    /// The same tensor as the op's input (flatten; dropout outside training).
    Alias,
    /// The training loss: built by the planner from [`loss::Loss`].
    Loss,
    /// A buffer of its own (or its input's, when the `inplace` pass says so).
    Computed,
}

/// What an op's backward rule reads besides `dy` (the in-place facts): a value that a
/// later backward step reads must not be overwritten in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reads {
    /// The backward rule reads the op's input.
    pub input: bool,
    /// The backward rule reads the op's output.
    pub output: bool,
}

/// A buffer an op needs besides its value, allocated by the planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scratch {
    /// This many columns per row of the batch.
    PerRow(usize),
    /// A workspace of this many elements, whatever the batch.
    Fixed(usize),
}

/// What the forward and backward rules of one node see: its buffers and shapes.
pub struct StepCx<'a> {
    /// The values of the node's inputs, and of the node itself.
    pub inputs: Vec<ABuf>,
    /// The node's own value.
    pub value: ABuf,
    /// The node's parameters (weight, bias) in the parameter store.
    pub params: Vec<PBuf>,
    /// The buffers asked for by [`Rules::scratch`], in order.
    pub scratch: Vec<ABuf>,
    /// The dimensions of the first input and of the output, when all are fixed.
    pub in_dims: Option<&'a [usize]>,
    /// The output's dimensions, when all are fixed.
    pub out_dims: Option<&'a [usize]>,
    /// Set by the `inplace` pass: the value is in the input's buffer.
    pub in_place: bool,
    /// Whether this is a training plan (dropout draws masks).
    pub training: bool,
    /// The states the op carries from the previous run (truncated BPTT), one buffer for each
    /// width [`Rules::carries`] gave, in order; empty when the plan carries nothing.
    pub carry: Vec<ABuf>,
}

impl StepCx<'_> {
    /// The window geometry over a `[h, w, d]` input and `[oh, ow, _]` output, for a
    /// window of `f`, stride `s`, padding `p`, with `k` filters (`None`: pooling, k = d).
    pub fn geometry(&self, f: usize, s: usize, p: usize, k: Option<usize>) -> Option<Geometry> {
        let (&[h, w, d], &[oh, ow, _]) = (self.in_dims?, self.out_dims?) else { return None };
        Some(Geometry { h, w, d, k: k.unwrap_or(d), f, s, p, oh, ow, dil: 1, groups: 1 })
    }
}

/// The gradient buffer for input `i` of a node, and how to write it. `New` hands over the
/// node's own `dy` buffer for an in-place rule; the planner decides whether it may.
pub enum Dx {
    /// The input needs no gradient (a model input).
    None,
    /// Write into this buffer (`Assign` if first, `Accumulate` after).
    Into(ABuf, Write),
    /// The input has no gradient yet and takes over `dy`'s buffer: the rule computes in place.
    New,
}

impl Dx {
    /// The input gradient buffer and how to write it, if the input needs one.
    pub fn into_opt(self) -> Option<(ABuf, Write)> {
        match self {
            Dx::Into(b, w) => Some((b, w)),
            Dx::None | Dx::New => None,
        }
    }
}

/// Resolves the gradient buffer of input `i`; with `may_reuse` the node's `dy` buffer is
/// handed over when the input has none yet.
pub type DxFn<'a> = dyn FnMut(usize, bool) -> Dx + 'a;

/// Everything the compiler asks of an op. No default methods: each op answers each.
pub trait Rules {
    /// The kind as written in source (and used for derived names).
    fn kind(&self) -> &'static str;
    /// Attributes as `(name, value)` text pairs, in a fixed order, for printers.
    fn attributes(&self) -> Vec<(&'static str, String)>;
    /// The output shape and the parameter tensors the op owns.
    fn shape(&self, cx: &ShapeCx) -> RuleResult;
    /// Forward FLOPs per example, by the usual counts (a multiply-add is 2).
    fn flops(&self, cx: &FlopsCx) -> Elems;
    /// Whether `train`, `run` and generated code can run the op (its kernels exist).
    fn runnable(&self) -> bool;
    /// How the planner gives the op's value a buffer.
    fn value(&self, training: bool) -> Value;
    /// Buffers the op needs besides its value.
    fn scratch(&self, cx: &StepCx, max_batch: usize) -> Vec<Scratch>;
    /// The forward steps.
    fn forward(&self, cx: &StepCx) -> Vec<Step>;
    /// The backward steps given `dy`, the gradient of the output, and `grads`, the
    /// gradients of the parameters.
    fn backward(&self, cx: &StepCx, dy: ABuf, grads: &[PBuf], dx: &mut DxFn) -> Vec<Step>;
    /// What the backward rule reads besides `dy`.
    fn backward_reads(&self) -> Reads;
    /// Whether the op may compute its value over its (only) input's buffer.
    fn elementwise(&self) -> bool;
    /// The widths (values per row) of the states the op carries from one window of a stream
    /// to the next (truncated backpropagation through time): an Elman layer's hidden state,
    /// an LSTM's two. Empty for an op that carries nothing — which must be true, or each
    /// window would silently start from zero.
    fn carries(&self) -> Vec<usize>;
    /// The steps, run after everything else, that save the states of this run into the
    /// carried buffers `cx.carry` for the next.
    fn save_carried(&self, cx: &StepCx) -> Vec<Step>;
    /// On a sequence, whether the op works at every step alone (the planner then runs it
    /// over `rows × steps` rows of one step's features) rather than walking the steps itself
    /// (`rnn`) or never meeting a sequence.
    fn per_step(&self) -> bool;
    /// The op in the PyTorch module `nnlangc export --pytorch` writes: its line of `forward`
    /// and what `__init__` needs; `None` for what is no layer there (an input, the loss).
    fn pytorch(&self, cx: &PyCx) -> Option<PyLayer>;
    /// The op's nodes in the ONNX graph `nnlangc export --onnx` writes, from its input values
    /// (asked of `g` in the layout the op wants) to its own, recorded with `g.set`.
    fn onnx(&self, g: &mut dyn onnx::OnnxGraph, cx: &onnx::OnnxCx) -> Result<(), String>;
    /// What the op says about a step it made (forward or backward): how threads may share it
    /// (`train::Split::Auto`), and where its derivative jumps (the gradient check).
    fn step_facts(&self, step: &Step) -> nnlang_runtime::plan::StepFacts;
}

/// What an op's PyTorch text sees: its layer's name, the Python names of its inputs, and the
/// shapes around it (nnlang's layout: channels last).
pub struct PyCx<'a> {
    /// The layer's name: its module's attribute, and the prefix of its tensors' names.
    pub name: &'a str,
    /// How `forward` reaches the layer's module: `self.<name>` (`self.stage1.conv_0` inside a
    /// block's use), with `getattr(…, "<part>")` for a part Python cannot write after a dot
    /// (a keyword).
    pub module: &'a str,
    /// The module holding the layer's (`self`, or its block use's `self.stage1`).
    pub parent: &'a str,
    /// The layer's attribute in `parent` (its name's last part).
    pub attr: &'a str,
    /// The first input's Python name.
    pub x: &'a str,
    /// Every input's Python name.
    pub ins: &'a [String],
    /// The first input's shape.
    pub in_shape: Option<&'a Shape>,
    /// The op's shape.
    pub out_shape: Option<&'a Shape>,
}

impl PyCx<'_> {
    /// The `__init__` line that makes `expr` the layer's module (under its own name, so that
    /// its tensors keep nnlang's names).
    pub fn init(&self, expr: String) -> String {
        if self.module.ends_with(&format!(".{}", self.attr)) {
            format!("{} = {expr}", self.module)
        } else {
            format!("setattr({}, {:?}, {expr})", self.parent, self.attr)
        }
    }
    /// An affine layer's inputs: the last dimension on a sequence, else everything.
    pub fn fan_in(&self) -> usize {
        match self.in_shape {
            Some(s) if s.is_sequence() => s.last().unwrap_or(0),
            Some(s) => s.elements().fixed as usize,
            None => 0,
        }
    }
    /// The input as an affine layer reads it: flattened, unless it is a sequence.
    pub fn flat_x(&self) -> String {
        if self.in_shape.is_some_and(|s| s.is_sequence()) {
            self.x.to_string()
        } else {
            format!("{x}.reshape({x}.shape[0], -1)", x = self.x)
        }
    }
}

/// One op in the exported PyTorch module.
pub struct PyLayer {
    /// What `__init__` adds (a module with the op's parameters), if anything.
    pub init: Option<String>,
    /// The expression `forward` computes the op's value with.
    pub forward: String,
}

impl PyLayer {
    /// An op with a module of its own.
    pub fn with(init: String, forward: String) -> PyLayer {
        PyLayer { init: Some(init), forward }
    }
    /// An op that is one expression.
    pub fn line(forward: String) -> PyLayer {
        PyLayer { init: None, forward }
    }
}

/// A layer as written in source: its name, arguments and the op it builds.
pub struct Layer {
    /// The name written in source.
    pub name: &'static str,
    /// Arguments in positional order: `(name, required)`.
    pub args: &'static [(&'static str, bool)],
    /// The layer as a person would write it, for help lines.
    pub example: &'static str,
    /// Combines several values (`add(a, b)`) rather than transforming one.
    pub merge: bool,
    /// The error for an argument given without its name, for layers that refuse them.
    pub positional_error: Option<fn(Span) -> Diagnostic>,
    /// Builds the op from checked arguments.
    pub build: fn(&Args) -> Result<Op, Diagnostic>,
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident($module:ident :: $ty:ident) ),* $(,)?) => {
        /// The closed set of operations. Every question about an op is answered by its
        /// module through [`Rules`]; the matches here are generated and exhaustive.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Op {
            $( $(#[$doc])* $variant($module::$ty), )*
        }

        impl Op {
            /// The op's rules.
            pub fn rules(&self) -> &dyn Rules {
                match self {
                    $( Op::$variant(op) => op, )*
                }
            }
        }

        /// Every layer name the language knows, in registry order.
        pub fn layers() -> impl Iterator<Item = &'static Layer> {
            std::iter::empty() $( .chain($module::$ty::LAYERS.iter()) )*
        }
    };
}

registry! {
    /// A model input; `dims` exclude the batch.
    Input(input::Input),
    /// `dense`.
    Dense(dense::Dense),
    /// `conv`.
    Conv(conv::Conv),
    /// `local`.
    Local(local::Local),
    /// `maxpool`, `avgpool`, `l2pool`.
    Pool(pool::Pool),
    /// `flatten`.
    Flatten(flatten::Flatten),
    /// `dropout`.
    Dropout(dropout::Dropout),
    /// An activation layer.
    Activation(activation::ActivationOp),
    /// `softmax`.
    Softmax(softmax::Softmax),
    /// `maxout(units, pieces)`.
    Maxout(maxout::Maxout),
    /// `rnn`.
    Rnn(rnn::Rnn),
    /// `bidirectional(rnn(…))`.
    Bidirectional(rnn::Bidirectional),
    /// `lstm`, `gru`.
    Gated(gated::Gated),
    /// `add`.
    Add(merge::Add),
    /// `concat`.
    Concat(merge::Concat),
    /// `maxout(pieces)` over channels.
    MaxoutChannels(maxout::MaxoutChannels),
    /// `softplus`.
    Softplus(softplus::Softplus),
    /// `batchnorm`.
    BatchNorm(norm::BatchNorm),
    /// `globalavgpool`, `globalmaxpool`.
    GlobalPool(global_pool::GlobalPool),
    /// `embedding`.
    Embedding(embedding::Embedding),
    /// `layernorm`.
    LayerNorm(layer_norm::LayerNorm),
    /// `attention`.
    Attention(attention::Attention),
    /// `positions`.
    Positions(attention::Positions),
    /// The training loss (added for training plans).
    Loss(loss::Loss),
}

impl Op {
    /// The op's kind as the summary names it (`dense`, `conv`, …).
    pub fn kind(&self) -> &'static str {
        self.rules().kind()
    }
    /// The op's settings as `(name, value)` text, for summaries and printers.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        self.rules().attributes()
    }
}

/// The layer written `name`, if there is one.
pub fn layer(name: &str) -> Option<&'static Layer> {
    layers().find(|l| l.name == name)
}
