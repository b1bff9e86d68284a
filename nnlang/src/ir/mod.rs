//! The IR graph: an arena of nodes addressed by typed ids, one closed [`Op`] per node.
//!
//! A graph is the lowered form of one model with all of its parameters fixed: repetitions
//! are unrolled, optional elements that are switched off are gone, `let` bindings are edges.
//! Analyses (shapes, parameter counts) live in side tables indexed by [`NodeId`]; they never
//! write into nodes. Nodes are stored in a topological order: every input of node `i` has an
//! id below `i`, which [`verify`] checks.

mod print;
mod verify;

pub use print::{to_dot, to_text};
pub use verify::verify;

use crate::syntax::ast::Span;
use serde::Serialize;
use std::fmt;

/// The index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One dimension of a declared input: a number, or the symbolic length of a sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Seq(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Seq(s) => f.write_str(s),
        }
    }
}

/// A shape without the batch dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// The symbolic sequence dimension, if the first dimension is one.
    pub fn seq(&self) -> Option<&str> {
        match self.0.first() {
            Some(Dim::Seq(s)) => Some(s),
            _ => None,
        }
    }
    /// The number of elements, as `fixed` for a fixed shape or `per_step · seq` for a
    /// sequence.
    pub fn elements(&self) -> Elems {
        let mut n: u64 = 1;
        let mut seq = false;
        for d in &self.0 {
            match d {
                Dim::Fixed(k) => n = n.saturating_mul(*k as u64),
                Dim::Seq(_) => seq = true,
            }
        }
        if seq {
            Elems { fixed: 0, per_step: n }
        } else {
            Elems { fixed: n, per_step: 0 }
        }
    }
    /// The dimensions after the first, when all of them are fixed.
    pub fn last(&self) -> Option<usize> {
        match self.0.last() {
            Some(Dim::Fixed(n)) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// A count of elements (or bytes) that may grow with the sequence length:
/// `fixed + per_step · seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Elems {
    pub fixed: u64,
    pub per_step: u64,
}

impl Elems {
    pub fn scale(self, k: u64) -> Elems {
        Elems { fixed: self.fixed.saturating_mul(k), per_step: self.per_step.saturating_mul(k) }
    }
}

impl std::ops::Add for Elems {
    type Output = Elems;
    fn add(self, o: Elems) -> Elems {
        Elems { fixed: self.fixed.saturating_add(o.fixed), per_step: self.per_step.saturating_add(o.per_step) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu { alpha: f64 },
    Identity,
}

impl Activation {
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Identity => "identity",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Max,
    Avg,
    L2,
}

impl PoolKind {
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "maxpool",
            PoolKind::Avg => "avgpool",
            PoolKind::L2 => "l2pool",
        }
    }
}

/// What an RNN layer returns: every step's state, or only the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnOutput {
    Sequence,
    Last,
}

/// How a bidirectional layer combines its two directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    Concat,
    Add,
    Mul,
}

/// The closed set of operations. Every pass matches on it exhaustively, so a new op is
/// handled everywhere or the build fails.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A model input; `dims` exclude the batch.
    Input {
        dims: Vec<Dim>,
    },
    /// `W x + b`, over the flattened input (or per step of a sequence).
    Dense {
        units: usize,
    },
    /// 2-D convolution over a `[height, width, depth]` volume; `pad` is resolved.
    Conv {
        filters: usize,
        size: usize,
        stride: usize,
        pad: usize,
    },
    /// Convolution geometry with a separate filter at every output position.
    Local {
        filters: usize,
        size: usize,
        stride: usize,
        pad: usize,
    },
    Pool {
        kind: PoolKind,
        size: usize,
        stride: usize,
    },
    /// Row-major over height, width, depth.
    Flatten,
    /// Inverted dropout; `keep` is the probability of keeping a unit.
    Dropout {
        keep: f64,
    },
    Activation {
        function: Activation,
    },
    Softmax,
    /// The maximum over `pieces` affine maps of the flattened input.
    Maxout {
        units: usize,
        pieces: usize,
    },
    /// Elman RNN, `h_t = g(W x_t + U h_{t-1} + b)`.
    Rnn {
        hidden: usize,
        activation: Activation,
        output: RnnOutput,
    },
    Bidirectional {
        hidden: usize,
        activation: Activation,
        output: RnnOutput,
        merge: Merge,
    },
    /// Elementwise sum of inputs of one shape.
    Add,
    /// Concatenation along the last axis.
    Concat,
    /// `activation(W x + b)` in one step: made by the `fuse-dense` pass.
    FusedDense {
        units: usize,
        activation: Activation,
    },
    /// A convolution and its activation in one step: made by the `fuse-dense` pass.
    FusedConv {
        filters: usize,
        size: usize,
        stride: usize,
        pad: usize,
        activation: Activation,
    },
    /// `maxout(pieces = p)` on a volume: the maximum over each group of `p` consecutive
    /// channels (the maxout of a convolution with `units · p` filters).
    MaxoutChannels {
        pieces: usize,
    },
    /// The training loss of its input against the target: added by the `loss` pass, fused
    /// with a final softmax or sigmoid by `fuse-softmax-ce`.
    Loss {
        loss: LossKind,
    },
}

/// The loss a training graph ends in.
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
    MeanSquaredError,
}

impl LossKind {
    pub fn name(self) -> &'static str {
        match self {
            LossKind::CrossEntropy => "cross_entropy",
            LossKind::SoftmaxCrossEntropy => "softmax_cross_entropy",
            LossKind::BinaryCrossEntropy => "binary_cross_entropy",
            LossKind::SigmoidBinaryCrossEntropy => "sigmoid_binary_cross_entropy",
            LossKind::MeanSquaredError => "mse",
        }
    }
}

impl Op {
    /// The kind as written in source (and used for derived names).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Dense { .. } => "dense",
            Op::Conv { .. } => "conv",
            Op::Local { .. } => "local",
            Op::Pool { kind, .. } => kind.name(),
            Op::Flatten => "flatten",
            Op::Dropout { .. } => "dropout",
            Op::Activation { function } => function.name(),
            Op::Softmax => "softmax",
            Op::Maxout { .. } => "maxout",
            Op::Rnn { .. } => "rnn",
            Op::Bidirectional { .. } => "bidirectional",
            Op::Add => "add",
            Op::Concat => "concat",
            Op::FusedDense { .. } => "dense",
            Op::FusedConv { .. } => "conv",
            Op::MaxoutChannels { .. } => "maxout",
            Op::Loss { .. } => "loss",
        }
    }

    /// Attributes as `(name, value)` text pairs, in a fixed order, for printers.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        match self {
            Op::Input { dims } => vec![("dims", Shape(dims.clone()).to_string())],
            Op::Dense { units } => vec![("units", units.to_string())],
            Op::Conv { filters, size, stride, pad } | Op::Local { filters, size, stride, pad } => vec![
                ("filters", filters.to_string()),
                ("size", size.to_string()),
                ("stride", stride.to_string()),
                ("pad", pad.to_string()),
            ],
            Op::Pool { size, stride, .. } => {
                vec![("size", size.to_string()), ("stride", stride.to_string())]
            }
            Op::Dropout { keep } => vec![("keep", fmt_f64(*keep))],
            Op::Activation { function: Activation::LeakyRelu { alpha } } => {
                vec![("alpha", fmt_f64(*alpha))]
            }
            Op::Maxout { units, pieces } => {
                vec![("units", units.to_string()), ("pieces", pieces.to_string())]
            }
            Op::Rnn { hidden, activation, output } => vec![
                ("hidden", hidden.to_string()),
                ("activation", activation_text(activation)),
                ("output", rnn_output_name(*output).to_string()),
            ],
            Op::Bidirectional { hidden, activation, output, merge } => vec![
                ("hidden", hidden.to_string()),
                ("activation", activation_text(activation)),
                ("output", rnn_output_name(*output).to_string()),
                ("merge", merge_name(*merge).to_string()),
            ],
            Op::FusedDense { units, activation } => {
                vec![("units", units.to_string()), ("activation", activation_text(activation))]
            }
            Op::Loss { loss } => vec![("loss", loss.name().to_string())],
            Op::FusedConv { filters, size, stride, pad, activation } => vec![
                ("filters", filters.to_string()),
                ("size", size.to_string()),
                ("stride", stride.to_string()),
                ("pad", pad.to_string()),
                ("activation", activation_text(activation)),
            ],
            Op::MaxoutChannels { pieces } => vec![("pieces", pieces.to_string())],
            Op::Activation { .. } | Op::Flatten | Op::Softmax | Op::Add | Op::Concat => Vec::new(),
        }
    }
}

fn activation_text(a: &Activation) -> String {
    match a {
        Activation::LeakyRelu { alpha } => format!("leaky_relu({})", fmt_f64(*alpha)),
        other => other.name().to_string(),
    }
}

pub fn rnn_output_name(o: RnnOutput) -> &'static str {
    match o {
        RnnOutput::Sequence => "sequence",
        RnnOutput::Last => "last",
    }
}

pub fn merge_name(m: Merge) -> &'static str {
    match m {
        Merge::Concat => "concat",
        Merge::Add => "add",
        Merge::Mul => "mul",
    }
}

/// Shortest text that reads back as the same f64.
pub fn fmt_f64(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// The user's name (`as fc1`) or the derived one (`dense_0`); unique in the graph.
    pub name: String,
    /// Where the layer was written.
    #[serde(skip)]
    pub span: Span,
    /// Set by the `inplace` pass: the node overwrites its input's buffer.
    #[serde(skip)]
    pub in_place: bool,
}

/// A model parameter's resolved value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => f.write_str(&fmt_f64(*v)),
            ParamValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// One model, lowered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Graph {
    pub name: String,
    /// The model's parameters after defaults and overrides, in declaration order.
    pub params: Vec<(String, ParamValue)>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<NodeId>,
    pub output: Option<NodeId>,
}

impl Graph {
    pub fn add(&mut self, op: Op, inputs: Vec<NodeId>, name: String, span: Span) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node { op, inputs, name, span, in_place: false });
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn ids(&self) -> impl DoubleEndedIterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// For each node, the nodes that read it.
    pub fn users(&self) -> Vec<Vec<NodeId>> {
        let mut users = vec![Vec::new(); self.nodes.len()];
        for id in self.ids() {
            for &i in &self.node(id).inputs {
                if let Some(u) = users.get_mut(i.index()) {
                    u.push(id);
                }
            }
        }
        users
    }
}
