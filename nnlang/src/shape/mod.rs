//! Shape inference: one rule per op, each returning the output shape and the parameter
//! tensors the op owns. Results live in a side table indexed by node id; errors name the
//! node, and [`ShapeError::to_diagnostic`] attaches the user's span at the boundary.
//!
//! The output-size formulas are the notes': a convolution (or locally-connected layer) gives
//! `(W − F + 2P)/S + 1`, a pooling layer `(W − F)/S + 1`. Either must be a positive integer.

mod geometry;

use crate::diag::Diagnostic;
use crate::ir::{Dim, Graph, Merge, NodeId, Op, RnnOutput, Shape};
use geometry::{pool_extent, window_extent};
use serde::Serialize;

/// One parameter tensor, named and laid out as PyTorch names and lays it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ParamSpec {
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
    pub params: Vec<Vec<ParamSpec>>,
}

/// A shape error at a node, with the text to show.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeError {
    pub node: NodeId,
    pub message: String,
    pub label: String,
    /// Other nodes to point at, with what to say there.
    pub related: Vec<(NodeId, String)>,
    pub notes: Vec<String>,
    pub help: Vec<String>,
}

impl ShapeError {
    fn new(node: NodeId, message: impl Into<String>, label: impl Into<String>) -> Self {
        ShapeError {
            node,
            message: message.into(),
            label: label.into(),
            related: Vec::new(),
            notes: Vec::new(),
            help: Vec::new(),
        }
    }
    fn note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }
    fn help(mut self, h: impl Into<String>) -> Self {
        self.help.push(h.into());
        self
    }

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
    for id in graph.ids() {
        let node = graph.node(id);
        let ins: Option<Vec<&Shape>> =
            node.inputs.iter().map(|i| out.shapes.get(i.index()).and_then(|s| s.as_ref())).collect();
        let Some(ins) = ins else { continue };
        match rule(graph, id, &ins).and_then(|r| within_limits(id, r)) {
            Ok((shape, params)) => {
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

type RuleResult = Result<(Shape, Vec<ParamSpec>), Vec<ShapeError>>;

fn param(layer: &str, name: &str, shape: &[usize]) -> ParamSpec {
    ParamSpec { name: format!("{layer}.{name}"), shape: shape.to_vec() }
}

/// The shape rule of one op.
fn rule(graph: &Graph, id: NodeId, ins: &[&Shape]) -> RuleResult {
    let node = graph.node(id);
    let name = node.name.as_str();
    let one = || ins.first().copied().cloned().unwrap_or(Shape(Vec::new()));
    match &node.op {
        Op::Input { dims } => Ok((Shape(dims.clone()), Vec::new())),
        Op::Dense { units } | Op::FusedDense { units, .. } => {
            let (fan_in, out) = affine_in(id, &one(), *units, "dense")?;
            Ok((out, vec![param(name, "weight", &[*units, fan_in]), param(name, "bias", &[*units])]))
        }
        Op::Maxout { units, pieces } => {
            let (fan_in, out) = affine_in(id, &one(), *units, "maxout")?;
            let rows = units * pieces;
            Ok((out, vec![param(name, "weight", &[rows, fan_in]), param(name, "bias", &[rows])]))
        }
        Op::MaxoutChannels { pieces } => {
            let s = one();
            match s.last() {
                Some(d) if d % pieces == 0 => {
                    let mut dims = s.0.clone();
                    if let Some(last) = dims.last_mut() {
                        *last = Dim::Fixed(d / pieces);
                    }
                    Ok((Shape(dims), Vec::new()))
                }
                Some(d) => Err(vec![ShapeError::new(
                    id,
                    format!("`maxout(pieces = {pieces})` needs a depth divisible by {pieces}, found {d}"),
                    format!("{d} is not a multiple of {pieces}"),
                )
                .help(format!(
                    "give the layer before it a multiple of {pieces} filters, e.g. {}",
                    (d / pieces + 1) * pieces
                ))]),
                None => Err(vec![ShapeError::new(
                    id,
                    format!("`maxout` needs a fixed last dimension, found {s}"),
                    "variable",
                )]),
            }
        }
        Op::Conv { filters, size, stride, pad }
        | Op::FusedConv { filters, size, stride, pad, .. }
        | Op::Local { filters, size, stride, pad } => {
            let kind = node.op.kind();
            let [h, w, d] = volume(id, &one(), kind)?;
            let (oh, ow) = both_extents(id, kind, (h, w), |dim, n| window_extent(dim, n, *size, *stride, *pad))?;
            let params = if matches!(node.op, Op::Conv { .. } | Op::FusedConv { .. }) {
                vec![param(name, "weight", &[*filters, d, *size, *size]), param(name, "bias", &[*filters])]
            } else {
                vec![
                    param(name, "weight", &[oh, ow, *filters, d, *size, *size]),
                    param(name, "bias", &[oh, ow, *filters]),
                ]
            };
            Ok((Shape::fixed(&[oh, ow, *filters]), params))
        }
        Op::Pool { kind, size, stride } => {
            let [h, w, d] = volume(id, &one(), kind.name())?;
            let (oh, ow) = both_extents(id, kind.name(), (h, w), |dim, n| pool_extent(dim, n, *size, *stride))?;
            Ok((Shape::fixed(&[oh, ow, d]), Vec::new()))
        }
        Op::Flatten => {
            let s = one();
            if s.seq().is_some() {
                return Err(vec![ShapeError::new(
                    id,
                    format!("cannot flatten a sequence of variable length {s}"),
                    "variable length",
                )
                .help("reduce the sequence first, e.g. `rnn(64, output = last)`")]);
            }
            let n = s.elements().fixed as usize;
            Ok((Shape::fixed(&[n]), Vec::new()))
        }
        Op::Dropout { .. } | Op::Activation { .. } | Op::Softmax => Ok((one(), Vec::new())),
        Op::Loss { .. } => Ok((Shape(Vec::new()), Vec::new())),
        Op::Rnn { hidden, output, .. } => {
            let (steps, features) = sequence(id, &one(), "rnn")?;
            let h = *hidden;
            let params = rnn_params(name, "", features, h);
            let out = match output {
                RnnOutput::Sequence => Shape(vec![steps, Dim::Fixed(h)]),
                RnnOutput::Last => Shape::fixed(&[h]),
            };
            Ok((out, params))
        }
        Op::Bidirectional { hidden, output, merge, .. } => {
            let (steps, features) = sequence(id, &one(), "bidirectional")?;
            let h = *hidden;
            let mut params = rnn_params(name, "", features, h);
            params.extend(rnn_params(name, "_reverse", features, h));
            let width = if *merge == Merge::Concat { 2 * h } else { h };
            let out = match output {
                RnnOutput::Sequence => Shape(vec![steps, Dim::Fixed(width)]),
                RnnOutput::Last => Shape::fixed(&[width]),
            };
            Ok((out, params))
        }
        Op::Add => {
            let first = ins[0];
            if ins.iter().all(|s| *s == first) {
                return Ok((first.clone(), Vec::new()));
            }
            let shapes: Vec<String> = ins.iter().map(|s| s.to_string()).collect();
            let mut e = ShapeError::new(
                id,
                format!("`add` needs values of one shape, found {}", shapes.join(" and ")),
                "shapes differ",
            );
            for (i, s) in node.inputs.iter().zip(ins) {
                e.related.push((*i, format!("{s}")));
            }
            Err(vec![e.help("bring them to one shape first, e.g. with `dense(…)`, or use `concat(…)`")])
        }
        Op::Concat => {
            let first = ins[0];
            let rank_ok = ins.iter().all(|s| s.rank() == first.rank());
            let lead_ok = rank_ok && ins.iter().all(|s| s.0[..s.rank() - 1] == first.0[..first.rank() - 1]);
            let last: Option<usize> = ins.iter().try_fold(0usize, |acc, s| s.last().and_then(|l| acc.checked_add(l)));
            match (lead_ok, last) {
                (true, Some(total)) => {
                    let mut dims = first.0[..first.rank() - 1].to_vec();
                    dims.push(Dim::Fixed(total));
                    Ok((Shape(dims), Vec::new()))
                }
                _ => {
                    let shapes: Vec<String> = ins.iter().map(|s| s.to_string()).collect();
                    let mut e = ShapeError::new(
                        id,
                        format!(
                            "`concat` joins along the last dimension; the others must agree, found {}",
                            shapes.join(" and ")
                        ),
                        "cannot be joined",
                    );
                    for (i, s) in node.inputs.iter().zip(ins) {
                        e.related.push((*i, format!("{s}")));
                    }
                    Err(vec![e])
                }
            }
        }
    }
}

fn rnn_params(layer: &str, suffix: &str, features: usize, h: usize) -> Vec<ParamSpec> {
    vec![
        param(layer, &format!("weight_ih_l0{suffix}"), &[h, features]),
        param(layer, &format!("weight_hh_l0{suffix}"), &[h, h]),
        param(layer, &format!("bias_ih_l0{suffix}"), &[h]),
        param(layer, &format!("bias_hh_l0{suffix}"), &[h]),
    ]
}

/// Fan-in and output shape of an affine layer: the whole input flattened, or, on a sequence,
/// its last dimension at every step.
fn affine_in(id: NodeId, s: &Shape, units: usize, kind: &str) -> Result<(usize, Shape), Vec<ShapeError>> {
    match s.seq() {
        Some(seq) => match s.0.as_slice() {
            [_, Dim::Fixed(d)] => Ok((*d, Shape(vec![Dim::Seq(seq.to_string()), Dim::Fixed(units)]))),
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
fn volume(id: NodeId, s: &Shape, kind: &str) -> Result<[usize; 3], Vec<ShapeError>> {
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

fn sequence(id: NodeId, s: &Shape, kind: &str) -> Result<(Dim, usize), Vec<ShapeError>> {
    match s.0.as_slice() {
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
fn both_extents(
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
