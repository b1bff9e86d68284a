//! Shape inference: one rule per op (in the op's module, `crate::ops`), each returning the output shape and the parameter
//! tensors the op owns. Results live in a side table indexed by node id; errors name the
//! node, and [`ShapeError::to_diagnostic`] attaches the user's span at the boundary.
//!
//! The output-size formulas are the notes': a convolution (or locally-connected layer) gives
//! `(W − F + 2P)/S + 1`, a pooling layer `(W − F)/S + 1`. Either must be a positive integer.

pub use crate::ops::geometry;
pub use crate::ops::rule::{
    affine_in, bias, both_extents, sequence, volume, weight, ParamSpec, RuleResult, ShapeError, MAX_ELEMENTS, MAX_FLOPS,
};

use crate::diag::Diagnostic;
use crate::ir::{Dim, Graph, NodeId, Shape};
use crate::ops::ShapeCx;
use nnlang_runtime::plan::{PBuf, Param};

/// One model, lowered and with every shape inferred.
#[derive(Clone, Debug)]
pub struct Model {
    /// The lowered, checked graph.
    pub graph: Graph,
    /// Every node's inferred shape and parameters.
    pub shapes: Shapes,
}

impl Model {
    /// The model's first input as images, `(height, width, channels)`, when it is declared
    /// `[h, w, c]` with fixed sizes: what augmentation and image files read.
    pub fn image_input(&self) -> Option<(usize, usize, usize)> {
        let input = *self.graph.inputs.first()?;
        let fixed: Option<Vec<usize>> = self.shapes.shapes[input.index()]
            .as_ref()?
            .0
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Some(*n),
                _ => None,
            })
            .collect();
        match fixed?.as_slice() {
            &[h, w, c] => Some((h, w, c)),
            _ => None,
        }
    }
}

/// What inference learned, per node.
#[derive(Clone, Debug, Default)]
pub struct Shapes {
    /// `None` where the node's shape could not be inferred (an error was reported, or one of
    /// its inputs failed).
    pub shapes: Vec<Option<Shape>>,
    /// Every node's parameters.
    pub params: Vec<Vec<ParamSpec>>,
}

impl ShapeError {
    /// The error as a diagnostic pointing at the node's source.
    pub fn to_diagnostic(&self, graph: &Graph) -> Diagnostic {
        let node = graph.node(self.node);
        let mut d = Diagnostic::error(self.message.clone(), node.span, self.label.clone());
        for (id, text) in &self.related {
            d = d.with_label(graph.node(*id).span, text.clone());
        }
        for n in &self.notes {
            d = d.with_note(n.clone());
        }
        for h in &self.help {
            d = d.with_help(h.clone());
        }
        d.in_uses(&graph.uses(self.node))
    }
}

/// Infers every node's shape. All independent errors are returned; a node whose input failed
/// is skipped silently, so one mistake gives one error.
pub fn infer(graph: &Graph) -> (Shapes, Vec<ShapeError>) {
    let mut out = Shapes { shapes: vec![None; graph.nodes.len()], params: vec![Vec::new(); graph.nodes.len()] };
    let mut errors = Vec::new();
    let (mut total_params, mut total_flops) = (0u64, 0u64);
    for id in graph.ids() {
        let node = graph.node(id);
        let ins: Option<Vec<&Shape>> =
            node.inputs.iter().map(|i| out.shapes.get(i.index()).and_then(|s| s.as_ref())).collect();
        let Some(ins) = ins else { continue };
        // Token ids go into an embedding, and an embedding reads nothing else.
        let bounds: Vec<Option<usize>> = node.inputs.iter().map(|&i| ids_bound(graph, i)).collect();
        if bounds.iter().any(Option::is_some) || matches!(node.op, crate::ops::Op::Embedding(_)) {
            let names: Vec<&str> = node.inputs.iter().map(|&i| graph.node(i).name.as_str()).collect();
            let e = crate::ops::embedding::check_ids(id, &node.op, &node.inputs, &bounds, &names);
            if !e.is_empty() {
                errors.extend(e);
                continue;
            }
        }
        // A causal attention after a layer that has seen each step's future.
        if matches!(&node.op, crate::ops::Op::Attention(a) if a.causal) {
            let above = upstream(graph, id);
            let seen = above.iter().map(|&u| (u, &graph.node(u).op, graph.node(u).name.as_str()));
            if let Some(e) = crate::ops::attention::check_causal(id, &node.op, seen) {
                errors.push(e);
                continue;
            }
        }
        let cx = ShapeCx { id, name: &node.name, inputs: &node.inputs, ins: &ins };
        match node.op.rules().shape(&cx).and_then(|r| within_limits(id, r)) {
            Ok((shape, params)) => {
                let input = node.inputs.first().and_then(|i| out.shapes[i.index()].as_ref());
                let f =
                    node.op.rules().flops(&crate::ops::FlopsCx { input, output: &shape, n_inputs: node.inputs.len() });
                total_flops =
                    total_flops.saturating_add(f.fixed).saturating_add(f.per_step).saturating_add(f.per_step_sq);
                total_params = params.iter().fold(total_params, |n, p| n.saturating_add(p.count()));
                if let Some(e) = over_budget(id, total_params, total_flops) {
                    errors.push(e);
                    // One report: the totals only grow from here.
                    return (out, errors);
                }
                out.shapes[id.index()] = Some(shape);
                out.params[id.index()] = params;
            }
            Err(e) => errors.extend(e),
        }
    }
    (out, errors)
}

/// The `n` of node `id` when it is a model input declared `ids < n`.
pub fn ids_bound(graph: &Graph, id: NodeId) -> Option<usize> {
    match &graph.node(id).op {
        crate::ops::Op::Input(i) => i.ids,
        _ => None,
    }
}

/// The model's totals so far, against the limits: parameters (2^40) and FLOPs.
fn over_budget(id: NodeId, params: u64, flops: u64) -> Option<ShapeError> {
    if params > MAX_ELEMENTS {
        Some(
            ShapeError::new(
                id,
                "with this layer the model has more than 2^40 parameters",
                "the total passes 2^40 here",
            )
            .note("no machine trains that; a unit count or a repetition is probably mistyped"),
        )
    } else if flops > MAX_FLOPS {
        Some(
            ShapeError::new(id, "with this layer one example needs more than 2^50 FLOPs", "the total passes 2^50 here")
                .note("no machine runs that; a size or a repetition is probably mistyped"),
        )
    } else {
        None
    }
}

fn within_limits(id: NodeId, (shape, params): (Shape, Vec<ParamSpec>)) -> RuleResult {
    let e = shape.elements();
    let biggest = params.iter().map(ParamSpec::count).max().unwrap_or(0).max(e.fixed).max(e.per_step);
    let dims_ok = shape.0.iter().all(|d| !matches!(d, Dim::Fixed(n) if *n as u64 > MAX_ELEMENTS));
    if biggest > MAX_ELEMENTS || !dims_ok {
        return Err(vec![ShapeError::new(
            id,
            format!("this layer needs a tensor of more than 2^40 elements (output {shape})"),
            "far too large",
        )
        .note("no machine holds that; a dimension or unit count is probably mistyped")]);
    }
    Ok((shape, params))
}

/// The parameter table of a model: every node's tensors in node order, each at its place in
/// the parameter (and gradient) store, with its role. The one table the planner, the
/// session, checkpoints, resume, the exporters and generated code read; returns it with
/// each node's buffers and the store's length.
pub fn param_table(shapes: &Shapes) -> (Vec<Param>, Vec<Vec<PBuf>>, usize) {
    let mut table = Vec::new();
    let mut by_node = vec![Vec::new(); shapes.params.len()];
    let mut len = 0;
    for (node, specs) in shapes.params.iter().enumerate() {
        for spec in specs {
            let buf = PBuf { offset: len, len: spec.count() as usize };
            len += buf.len;
            by_node[node].push(buf);
            table.push(Param { name: spec.name.clone(), shape: spec.shape.clone(), buf, role: spec.role });
        }
    }
    (table, by_node, len)
}

/// Every node `id` depends on, nearest first (breadth first through the inputs).
fn upstream(graph: &Graph, id: NodeId) -> Vec<NodeId> {
    let mut seen = vec![false; graph.nodes.len()];
    let mut order = Vec::new();
    let mut queue: std::collections::VecDeque<NodeId> = graph.node(id).inputs.iter().copied().collect();
    while let Some(n) = queue.pop_front() {
        if std::mem::replace(&mut seen[n.index()], true) {
            continue;
        }
        order.push(n);
        queue.extend(graph.node(n).inputs.iter().copied());
    }
    order
}
