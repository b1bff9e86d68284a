//! The IR graph: an arena of nodes addressed by typed ids, one closed [`Op`] per node.
//!
//! A graph is the lowered form of one model with all of its parameters fixed: repetitions
//! are unrolled, optional elements that are switched off are gone, `let` bindings are edges.
//! Analyses (shapes, parameter counts) live in side tables indexed by [`NodeId`]; they never
//! write into nodes. Nodes are stored in a topological order: every input of node `i` has an
//! id below `i`, which [`verify`] checks.

mod print;
mod verify;

pub use print::{to_dot, to_svg, to_text};
pub use verify::verify;

pub use crate::ops::tensor::{Dim, Elems, NodeId, Shape};
pub use crate::ops::{Activation, LossKind, Merge, Op, PoolKind, RnnOutput};

pub use crate::diag::fmt_f64;
use crate::diag::Span;
use serde::Serialize;
use std::fmt;

/// One operation of a model, with its inputs, name and source span.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// The nodes whose values it reads, in order.
    pub inputs: Vec<NodeId>,
    /// The user's name (`as fc1`) or the derived one (`dense_0`); unique in the graph.
    pub name: String,
    /// Where the layer was written.
    #[serde(skip)]
    pub span: Span,
    /// Set by the `inplace` pass: the node overwrites its input's buffer.
    #[serde(skip)]
    pub in_place: bool,
    /// The use of a `block` it was made by (an index into [`Graph::scopes`]); `None` for the
    /// model's own layers.
    #[serde(skip)]
    pub scope: Option<u32>,
}

/// One use of a `block` in a model: the nodes it made carry its index, and their names
/// start with its path (`stage1.residual_0.conv_0`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scope {
    /// The block's name (`Residual`); empty for a named group (`[…] * 2 as stage1`).
    pub block: String,
    /// The use's full name (`stage1.residual_0`: the user's `as` name, or the block's in
    /// snake case numbered in the enclosing scope).
    pub name: String,
    /// The block's parameters as this use bound them, in declaration order.
    pub args: Vec<(String, ParamValue)>,
    /// The enclosing use, if this one is inside another block.
    pub parent: Option<u32>,
    /// Where the block is used (`Residual(width = 64)`).
    #[serde(skip)]
    pub span: Span,
}

/// A model parameter's resolved value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integer parameter.
    Int(i64),
    /// A real parameter.
    Float(f64),
    /// A boolean parameter.
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
    /// The model's name.
    pub name: String,
    /// The model's parameters after defaults and overrides, in declaration order.
    pub params: Vec<(String, ParamValue)>,
    /// Every node, in topological order (inputs before their users).
    pub nodes: Vec<Node>,
    /// The `input` nodes, in declaration order.
    pub inputs: Vec<NodeId>,
    /// The node whose value the model returns (none when lowering failed early).
    pub output: Option<NodeId>,
    /// Every use of a `block`, in the order they were met.
    pub scopes: Vec<Scope>,
}

impl Graph {
    /// Appends a node and returns its id.
    pub fn add(&mut self, op: Op, inputs: Vec<NodeId>, name: String, span: Span) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node { op, inputs, name, span, in_place: false, scope: None });
        id
    }

    /// The uses of blocks that made node `id`, innermost first, each as (its span, the
    /// block's name).
    pub fn uses(&self, id: NodeId) -> Vec<(Span, &str)> {
        let mut out = Vec::new();
        let mut s = self.node(id).scope;
        while let Some(i) = s {
            let Some(scope) = self.scopes.get(i as usize) else { break };
            // A named group (`[…] * 2 as stage1`) is no use of a block.
            if !scope.block.is_empty() {
                out.push((scope.span, scope.block.as_str()));
            }
            s = scope.parent;
        }
        out
    }

    /// The op of the model's output node, if it has one.
    pub fn output_op(&self) -> Option<&Op> {
        self.output.map(|o| &self.node(o).op)
    }
    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// Every node's id, in topological order.
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

    /// Makes `readers` (the nodes that read `from`, as [`Graph::users`] gave them) read `to`
    /// instead, and the output too where it was `from`: a fused node taking the place of
    /// the one it absorbed, which is left without readers for `dce`.
    pub fn redirect(&mut self, from: NodeId, to: NodeId, readers: &[NodeId]) {
        for u in readers {
            for i in self.nodes[u.index()].inputs.iter_mut() {
                if *i == from {
                    *i = to;
                }
            }
        }
        if self.output == Some(from) {
            self.output = Some(to);
        }
    }
}
