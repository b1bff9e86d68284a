//! What an op's shape rule returns — the output shape and the parameter tensors it owns,
//! each with its role — or the errors to show, and the helpers rules share (volumes,
//! sequences, window extents with the notes' arithmetic).

use super::geometry;
use super::tensor::{Dim, NodeId, Shape};
use nnlang_runtime::plan::Role;
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
    /// An error at `node`: the summary, and what is said at its source.
    pub fn new(node: NodeId, message: impl Into<String>, label: impl Into<String>) -> Self {
        ShapeError {
            node,
            message: message.into(),
            label: label.into(),
            related: Vec::new(),
            notes: Vec::new(),
            help: Vec::new(),
        }
    }
    /// With a `note:` line.
    pub fn note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }
    /// Pointing at another node too, with what to say there.
    pub fn related(mut self, node: NodeId, text: impl Into<String>) -> Self {
        self.related.push((node, text.into()));
        self
    }
    /// With a `help:` line.
    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help.push(h.into());
        self
    }
}

/// The most elements one tensor may have (2^40, 4 TiB of f32): larger shapes are mistakes,
/// and refusing them keeps every count below overflow.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// The most forward FLOPs per example a model may need (2^50, about a petaFLOP).
pub const MAX_FLOPS: u64 = 1 << 50;

/// An op's shape rule's answer: the output shape and the parameter tensors, or errors.
pub type RuleResult = Result<(Shape, Vec<ParamSpec>), Vec<ShapeError>>;

/// A weight `<layer>.<name>` whose units each read `fan_in` inputs (a contiguous run of the
/// tensor) and whose inputs each feed `fan_out` outputs.
pub fn weight(layer: &str, name: &str, shape: &[usize], fan_in: usize, fan_out: usize) -> ParamSpec {
    ParamSpec { name: format!("{layer}.{name}"), shape: shape.to_vec(), role: Role::Weight { fan_in, fan_out } }
}

/// A bias `<layer>.<name>` (starts at zero, never regularized).
pub fn bias(layer: &str, name: &str, shape: &[usize]) -> ParamSpec {
    ParamSpec { name: format!("{layer}.{name}"), shape: shape.to_vec(), role: Role::Bias }
}

/// Fan-in and output shape of an affine layer: the whole input flattened, or, on a sequence,
/// its last dimension at every step.
pub fn affine_in(id: NodeId, s: &Shape, units: usize, kind: &str) -> Result<(usize, Shape), Vec<ShapeError>> {
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
pub fn volume(id: NodeId, s: &Shape, kind: &str) -> Result<[usize; 3], Vec<ShapeError>> {
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
pub fn sequence(id: NodeId, s: &Shape, kind: &str) -> Result<(Dim, usize), Vec<ShapeError>> {
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
pub fn both_extents(
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
