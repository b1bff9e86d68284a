//! Shape inference: one rule per op (in the op's module, `crate::ops`), each returning the output shape and the parameter
//! tensors the op owns. Results live in a side table indexed by node id; errors name the
//! node, and [`ShapeError::to_diagnostic`] attaches the user's span at the boundary.
//!
//! The output-size formulas are the notes': a convolution (or locally-connected layer) gives
//! `(W − F + 2P)/S + 1`, a pooling layer `(W − F)/S + 1`. Either must be a positive integer.

pub(crate) mod geometry;

use crate::diag::Diagnostic;
use crate::ir::{Dim, Graph, NodeId, Shape};
use crate::ops::ShapeCx;
use nnlang_runtime::plan::{PBuf, Param, Role};
use serde::Serialize;

/// One parameter tensor, named and laid out as PyTorch names and lays it out, with its role
/// (how it starts, whether it is trained and regularized) declared by the op that owns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamSpec {
    /// `<layer>.weight`, `<layer>.bias`, as PyTorch names them.
    pub name: String,
    /// Its dimensions, in PyTorch's layout.
    pub shape: Vec<usize>,
    /// What it is to training: a weight (with its fan-in and fan-out), a bias, a gain, state.
    #[serde(serialize_with = "ser_role")]
    pub role: Role,
}

fn ser_role<S: serde::Serializer>(r: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

impl ParamSpec {
    /// The number of values (saturating).
    pub fn count(&self) -> u64 {
        self.shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
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

/// A shape error at a node, with the text to show.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeError {
    /// The node it is about.
    pub node: NodeId,
    /// The one-line summary.
    pub message: String,
    /// What is said at the node's source.
    pub label: String,
    /// Other nodes to point at, with what to say there.
    pub related: Vec<(NodeId, String)>,
    /// `note:` lines (the arithmetic).
    pub notes: Vec<String>,
    /// `help:` lines (the fix).
    pub help: Vec<String>,
}

impl ShapeError {
    pub(crate) fn new(node: NodeId, message: impl Into<String>, label: impl Into<String>) -> Self {
        ShapeError {
            node,
            message: message.into(),
            label: label.into(),
            related: Vec::new(),
            notes: Vec::new(),
            help: Vec::new(),
        }
    }
    pub(crate) fn note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }
    pub(crate) fn help(mut self, h: impl Into<String>) -> Self {
        self.help.push(h.into());
        self
    }

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
        d
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
        let cx = ShapeCx { id, name: &node.name, inputs: &node.inputs, ins: &ins };
        match node.op.rules().shape(&cx).and_then(|r| within_limits(id, r)) {
            Ok((shape, params)) => {
                let input = node.inputs.first().and_then(|i| out.shapes[i.index()].as_ref());
                let f =
                    node.op.rules().flops(&crate::ops::FlopsCx { input, output: &shape, n_inputs: node.inputs.len() });
                total_flops = total_flops.saturating_add(f.fixed).saturating_add(f.per_step);
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

/// The most elements one tensor may have (2^40, 4 TiB of f32): larger shapes are mistakes,
/// and refusing them keeps every count below overflow.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// The most forward FLOPs per example a model may need (2^50, about a petaFLOP).
pub const MAX_FLOPS: u64 = 1 << 50;

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

/// An op's shape rule's answer: the output shape and the parameter tensors, or errors.
pub type RuleResult = Result<(Shape, Vec<ParamSpec>), Vec<ShapeError>>;

/// A weight `<layer>.<name>` whose units each read `fan_in` inputs (a contiguous run of the
/// tensor) and whose inputs each feed `fan_out` outputs.
pub(crate) fn weight(layer: &str, name: &str, shape: &[usize], fan_in: usize, fan_out: usize) -> ParamSpec {
    ParamSpec { name: format!("{layer}.{name}"), shape: shape.to_vec(), role: Role::Weight { fan_in, fan_out } }
}

/// A bias `<layer>.<name>` (starts at zero, never regularized).
pub(crate) fn bias(layer: &str, name: &str, shape: &[usize]) -> ParamSpec {
    ParamSpec { name: format!("{layer}.{name}"), shape: shape.to_vec(), role: Role::Bias }
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

/// Fan-in and output shape of an affine layer: the whole input flattened, or, on a sequence,
/// its last dimension at every step.
pub(crate) fn affine_in(id: NodeId, s: &Shape, units: usize, kind: &str) -> Result<(usize, Shape), Vec<ShapeError>> {
    match s.0.first().filter(|d| d.is_steps()) {
        Some(steps) => match s.0.as_slice() {
            [_, Dim::Fixed(d)] => Ok((*d, Shape(vec![steps.clone(), Dim::Fixed(units)]))),
            _ => Err(vec![ShapeError::new(
                id,
                format!("`{kind}` on a sequence needs [steps, features], found {s}"),
                "unexpected shape",
            )]),
        },
        None => Ok((s.elements().fixed as usize, Shape::fixed(&[units]))),
    }
}

/// `[height, width, depth]`, or an error that says how to declare one.
pub(crate) fn volume(id: NodeId, s: &Shape, kind: &str) -> Result<[usize; 3], Vec<ShapeError>> {
    match s.0.as_slice() {
        [Dim::Fixed(h), Dim::Fixed(w), Dim::Fixed(d)] => Ok([*h, *w, *d]),
        dims => {
            let mut e = ShapeError::new(
                id,
                format!("`{kind}` needs a [height, width, depth] volume, found {s}"),
                format!("input is {s}"),
            );
            e = match dims {
                [Dim::Fixed(n)] => {
                    let side = (*n as f64).sqrt().round() as usize;
                    if side * side == *n {
                        e.help(format!("declare the input as an image: [{side}, {side}, 1]"))
                    } else {
                        e.note("a flat vector has no height and width to slide a window over")
                    }
                }
                [Dim::Fixed(h), Dim::Fixed(w)] => e.help(format!("give it a depth: [{h}, {w}, 1]")),
                _ => e.note("sequences are read by `rnn`, not by convolutions or pooling"),
            };
            Err(vec![e])
        }
    }
}

/// The steps and features of a sequence `[steps, features]`: an array `[28, 28]` read as a
/// sequence has 28 steps of known length.
pub(crate) fn sequence(id: NodeId, s: &Shape, kind: &str) -> Result<(Dim, usize), Vec<ShapeError>> {
    match s.0.as_slice() {
        [Dim::Fixed(n), Dim::Fixed(f)] => Ok((Dim::Steps { name: "steps".into(), len: *n }, *f)),
        [steps, Dim::Fixed(f)] => Ok((steps.clone(), *f)),
        _ => {
            let mut e = ShapeError::new(
                id,
                format!("`{kind}` reads a sequence [steps, features], found {s}"),
                format!("input is {s}"),
            );
            if let [Dim::Fixed(n)] = s.0.as_slice() {
                e = e.help(format!("declare a sequence input, e.g. `input x: [seq, {n}]`"));
            }
            Err(vec![e.note("a stacked RNN reads the previous one's `output = sequence`")])
        }
    }
}

/// Applies the extent formula to height and width; one error when both fail alike.
pub(crate) fn both_extents(
    id: NodeId,
    kind: &str,
    (h, w): (usize, usize),
    f: impl Fn(&str, usize) -> Result<usize, geometry::ExtentError>,
) -> Result<(usize, usize), Vec<ShapeError>> {
    match (f("height", h), f("width", w)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(vec![e.into_error(id, kind)]),
        (Err(eh), Err(_)) if h == w => {
            let mut e = eh;
            e.dim = "height and width".into();
            Err(vec![e.into_error(id, kind)])
        }
        (Err(eh), Err(ew)) => Err(vec![eh.into_error(id, kind), ew.into_error(id, kind)]),
    }
}
