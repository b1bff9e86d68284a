//! What an op's ONNX lowering ([`super::Rules::onnx`]) writes with: the graph being built
//! ([`OnnxGraph`], implemented by `back::onnx`, which owns the protobuf, the names and the
//! layouts), and the pieces several ops share (an activation's nodes, an affine map, an
//! elementwise op on whichever layout its input has). Values travel channels last (nnlang's
//! layout) or channels first (after a convolution or pooling); the graph makes the other
//! layout with a `Transpose` the first time it is asked for it.

use super::tensor::{NodeId, Shape};
use super::Activation;
use nnlang_runtime::act;

/// The layout of a value in the ONNX graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// nnlang's: `[batch, height, width, depth]`, `[batch, steps, features]`, `[batch, n]`.
    ChannelsLast,
    /// ONNX's `Conv` and `*Pool`: `[batch, depth, height, width]`.
    ChannelsFirst,
}

/// A node attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// An integer.
    Int(&'static str, i64),
    /// A float.
    Float(&'static str, f32),
    /// Integers.
    Ints(&'static str, Vec<i64>),
    /// Floats.
    Floats(&'static str, Vec<f32>),
    /// A string.
    Str(&'static str, String),
    /// Strings.
    Strs(&'static str, Vec<String>),
}

/// The ONNX graph under construction, as the ops see it. Names given for new values are
/// made unique; the names returned are the ones to use.
pub trait OnnxGraph {
    /// The inferred shape of a node of the model.
    fn shape(&self, id: NodeId) -> Result<Shape, String>;
    /// The value of a node in `layout` (made with a `Transpose` if it exists only in the other).
    fn value(&mut self, id: NodeId, layout: Layout) -> Result<String, String>;
    /// The layout a node's value was made in.
    fn layout(&self, id: NodeId) -> Result<Layout, String>;
    /// Records the ONNX value that holds node `id`'s value, in `layout`.
    fn set(&mut self, id: NodeId, value: String, layout: Layout);
    /// Node `id` has node `of`'s value (in every layout it has).
    fn alias(&mut self, id: NodeId, of: NodeId) -> Result<(), String>;
    /// Adds a node with one output named `out`; returns the output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, out: &str) -> String;
    /// Adds a node with several outputs (named `outs`), the node itself named `name`.
    fn node_outputs(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, outs: &[&str], name: &str) -> Vec<String>;
    /// A float initializer.
    fn tensor(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String;
    /// An int64 initializer of one dimension (shapes, axes).
    fn ints(&mut self, name: &str, v: &[i64]) -> String;
    /// A parameter tensor of node `id` (`weight`, `bias`, …) from the weights, checked
    /// against the shape the model gives it.
    fn param(&self, id: NodeId, which: &str) -> Result<Vec<f32>, String>;
    /// The graph input holding each sequence's length (int32 `[batch]`), if the export has
    /// one: a recurrent node's `sequence_lens`.
    fn lengths(&self) -> Option<String>;
    /// The name of node `id` in the model.
    fn name(&self, id: NodeId) -> String;
    /// The batch norm folded into the convolution or dense layer `layer`, if one is: the
    /// layer's `weight` and `bias` from [`OnnxGraph::param`] are then the folded ones (a bias
    /// even for a convolution without one).
    fn fold_of(&self, layer: NodeId) -> Option<NodeId>;
    /// The layer a batch norm is folded into, if it is: it writes no node of its own.
    fn folded_into(&self, bn: NodeId) -> Option<NodeId>;
}

/// What an op's lowering sees besides the graph: the node, its name and its inputs.
pub struct OnnxCx<'a> {
    /// The node.
    pub id: NodeId,
    /// Its name (the name of its output value, where free).
    pub name: &'a str,
    /// The nodes it reads.
    pub inputs: &'a [NodeId],
}

impl OnnxCx<'_> {
    /// The first input (every op but an input has one).
    pub fn input(&self) -> Result<NodeId, String> {
        self.inputs.first().copied().ok_or_else(|| format!("`{}` has no input", self.name))
    }
}

/// A float scalar initializer.
pub fn scalar(g: &mut dyn OnnxGraph, name: &str, v: f32) -> String {
    g.tensor(name, &[], &[v])
}

/// A parameter of node `id` as an initializer of shape `dims`, named as in the weights.
pub fn param_tensor(g: &mut dyn OnnxGraph, id: NodeId, which: &str, dims: &[usize]) -> Result<String, String> {
    let v = g.param(id, which)?;
    let name = format!("{}.{which}", g.name(id));
    Ok(g.tensor(&name, dims, &v))
}

/// The activation's nodes (the runtime's table writes them) over `x`, the last named `out`.
pub fn activation(g: &mut dyn OnnxGraph, a: &Activation, x: &str, out: &str) -> String {
    expr(g, &a.desc().onnx, x, out)
}

/// The nodes of `e` over `x`; the value named `out` (inner values `out/1`, `out/2`, …).
fn expr(g: &mut dyn OnnxGraph, e: &act::Onnx, x: &str, out: &str) -> String {
    match e {
        act::Onnx::X => x.to_string(),
        act::Onnx::Const(v) => scalar(g, &format!("{out}/c"), *v),
        act::Onnx::Op { op, args, alpha } => {
            let ins: Vec<String> =
                args.iter().enumerate().map(|(i, a)| expr(g, a, x, &format!("{out}/{}", i + 1))).collect();
            let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
            let attrs = alpha.map(|a| vec![Attr::Float("alpha", a)]).unwrap_or_default();
            g.node(op, &refs, attrs, out)
        }
    }
}

/// An elementwise op on whichever layout the input has: `f(graph, x, out)` makes it.
pub fn elementwise(
    g: &mut dyn OnnxGraph,
    cx: &OnnxCx,
    f: impl FnOnce(&mut dyn OnnxGraph, &str, &str) -> String,
) -> Result<(), String> {
    let input = cx.input()?;
    let layout = g.layout(input)?;
    let x = g.value(input, layout)?;
    let y = f(g, &x, cx.name);
    g.set(cx.id, y, layout);
    Ok(())
}

/// `x · Wᵀ + b` for node `id`'s weight `[units, fan_in]`: a `Gemm` on a batch of vectors (a
/// volume flattened in nnlang's order first), a `MatMul` and an `Add` at every step of a
/// sequence.
pub fn affine(
    g: &mut dyn OnnxGraph,
    id: NodeId,
    x: &str,
    in_shape: &Shape,
    units: usize,
    out: &str,
) -> Result<String, String> {
    let weight = g.param(id, "weight")?;
    let fan_in = weight.len() / units.max(1);
    let bias = param_tensor(g, id, "bias", &[units])?;
    if in_shape.is_sequence() {
        let mut t = vec![0f32; weight.len()];
        for (u, row) in weight.chunks_exact(fan_in.max(1)).enumerate() {
            for (i, &w) in row.iter().enumerate() {
                t[i * units + u] = w;
            }
        }
        let layer = g.name(id);
        let wt = g.tensor(&format!("{layer}.weight/transposed"), &[fan_in, units], &t);
        let prod = g.node("MatMul", &[x, &wt], vec![], &format!("{out}/matmul"));
        Ok(g.node("Add", &[&prod, &bias], vec![], out))
    } else {
        let flat = if in_shape.rank() > 1 {
            g.node("Flatten", &[x], vec![Attr::Int("axis", 1)], &format!("{out}/flat"))
        } else {
            x.to_string()
        };
        let w = param_tensor(g, id, "weight", &[units, fan_in])?;
        Ok(g.node("Gemm", &[&flat, &w, &bias], vec![Attr::Int("transB", 1)], out))
    }
}

/// `ReduceMax` over groups of `pieces` consecutive values of the last dimension of `x`
/// (a value of `rank` dimensions besides the batch): maxout.
pub fn max_over_pieces(g: &mut dyn OnnxGraph, x: &str, shape: Vec<i64>, name: &str) -> String {
    let s = g.ints(&format!("{name}/pieces_shape"), &shape);
    let r = g.node("Reshape", &[x, &s], vec![], &format!("{name}/pieces"));
    g.node("ReduceMax", &[&r], vec![Attr::Ints("axes", vec![-1]), Attr::Int("keepdims", 0)], name)
}
