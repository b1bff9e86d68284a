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
}

impl Graph {
    /// Appends a node and returns its id.
    pub fn add(&mut self, op: Op, inputs: Vec<NodeId>, name: String, span: Span) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node { op, inputs, name, span, in_place: false });
        id
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
}
