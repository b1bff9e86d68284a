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

/// `x · Wᵀ + b` at every step of a sequence `x` for node `id`'s weight `which_w`
/// `[units, fan_in]` and bias `which_b`: a `MatMul` by the transposed weight and an `Add`.
fn seq_affine(
    g: &mut dyn OnnxGraph,
    id: NodeId,
    (which_w, which_b): (&str, &str),
    x: &str,
    units: usize,
    out: &str,
) -> Result<String, String> {
    let weight = g.param(id, which_w)?;
    let fan_in = weight.len() / units.max(1);
    let bias = param_tensor(g, id, which_b, &[units])?;
    let mut t = vec![0f32; weight.len()];
    for (u, row) in weight.chunks_exact(fan_in.max(1)).enumerate() {
        for (i, &w) in row.iter().enumerate() {
            t[i * units + u] = w;
        }
    }
    let layer = g.name(id);
    let wt = g.tensor(&format!("{layer}.{which_w}/transposed"), &[fan_in, units], &t);
    let prod = g.node("MatMul", &[x, &wt], vec![], &format!("{out}/matmul"));
    Ok(g.node("Add", &[&prod, &bias], vec![], out))
}

/// The number of steps of `x` (`[batch, steps, …]`) as an int64 tensor of one element.
fn steps_of(g: &mut dyn OnnxGraph, x: &str, name: &str) -> String {
    let shape = g.node("Shape", &[x], vec![], &format!("{name}/shape"));
    let one = g.ints(&format!("{name}/axis1"), &[1]);
    g.node("Gather", &[&shape, &one], vec![Attr::Int("axis", 0)], &format!("{name}/steps"))
}

/// `attention(heads, causal)` decomposed (opset 17 has no attention node): the packed
/// projection, `Split` into Q, K, V, the heads by `Reshape` and `Transpose`, `MatMul` for the
/// scores, the masks (each sequence's padding from the `lengths` input when the export has
/// one; the future when causal) by `Where` with −1e30, `Softmax`, `MatMul` by V, the heads
/// back side by side, and the output projection.
pub fn attention(g: &mut dyn OnnxGraph, cx: &OnnxCx, heads: usize, causal: bool) -> Result<(), String> {
    let src = cx.input()?;
    let d = g.shape(src)?.last().ok_or_else(|| format!("`{}`: its input has no fixed features", cx.name))?;
    let (n, dh) = (cx.name, d / heads.max(1));
    let x = g.value(src, Layout::ChannelsLast)?;
    let qkv = seq_affine(g, cx.id, ("in_proj_weight", "in_proj_bias"), &x, 3 * d, &format!("{n}/qkv"))?;
    let split = g.ints(&format!("{n}/split_sizes"), &[d as i64; 3]);
    let outs = g.node_outputs(
        "Split",
        &[&qkv, &split],
        vec![Attr::Int("axis", -1)],
        &[&format!("{n}/q"), &format!("{n}/k"), &format!("{n}/v")],
        &format!("{n}/split"),
    );
    let per_head = g.ints(&format!("{n}/per_head"), &[0, 0, heads as i64, dh as i64]);
    let mut parts = Vec::new();
    for (v, perm) in outs.iter().zip([[0i64, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]]) {
        let r = g.node("Reshape", &[v, &per_head], vec![], &format!("{v}/heads"));
        parts.push(g.node("Transpose", &[&r], vec![Attr::Ints("perm", perm.to_vec())], &format!("{v}/t")));
    }
    let raw = g.node("MatMul", &[&parts[0], &parts[1]], vec![], &format!("{n}/qk"));
    let scale = scalar(g, &format!("{n}/scale"), (1.0 / (dh.max(1) as f64).sqrt()) as f32);
    let mut s = g.node("Mul", &[&raw, &scale], vec![], &format!("{n}/scores"));
    // Masks: `true` where a key is hidden from a query (none: no mask computed).
    let lengths = g.lengths();
    let mut hidden: Option<String> = None;
    if causal || lengths.is_some() {
        let t = steps_of(g, &x, n);
        let t0 = g.node("Squeeze", &[&t], vec![], &format!("{n}/t"));
        let zero = g.ints(&format!("{n}/zero"), &[0]);
        let step = g.ints(&format!("{n}/one"), &[1]);
        let z0 = g.node("Squeeze", &[&zero], vec![], &format!("{n}/z"));
        let s0 = g.node("Squeeze", &[&step], vec![], &format!("{n}/s"));
        let range = g.node("Range", &[&z0, &t0, &s0], vec![], &format!("{n}/range"));
        let ax0 = g.ints(&format!("{n}/ax0"), &[0]);
        let ax1 = g.ints(&format!("{n}/ax1"), &[1]);
        let keys = g.node("Unsqueeze", &[&range, &ax0], vec![], &format!("{n}/keys")); // [1, T]
        if causal {
            let queries = g.node("Unsqueeze", &[&range, &ax1], vec![], &format!("{n}/queries")); // [T, 1]
            hidden = Some(g.node("Greater", &[&keys, &queries], vec![], &format!("{n}/future")));
        }
        if let Some(lengths) = lengths {
            let to = Attr::Int("to", 7); // INT64
            let l = g.node("Cast", &[&lengths], vec![to], &format!("{n}/lengths"));
            let l = g.node("Unsqueeze", &[&l, &ax1], vec![], &format!("{n}/lengths_col")); // [B, 1]
            let pad = g.node("GreaterOrEqual", &[&keys, &l], vec![], &format!("{n}/padding_keys")); // [B, T]
            let axes = g.ints(&format!("{n}/ax12"), &[1, 2]);
            let pad = g.node("Unsqueeze", &[&pad, &axes], vec![], &format!("{n}/padding")); // [B, 1, 1, T]
            hidden = Some(match hidden {
                Some(f) => g.node("Or", &[&pad, &f], vec![], &format!("{n}/hidden")),
                None => pad,
            });
        }
    }
    if let Some(h) = hidden {
        let neg = scalar(g, &format!("{n}/neg"), -1e30);
        s = g.node("Where", &[&h, &neg, &s], vec![], &format!("{n}/masked"));
    }
    let p = g.node("Softmax", &[&s], vec![Attr::Int("axis", -1)], &format!("{n}/probs"));
    let o = g.node("MatMul", &[&p, &parts[2]], vec![], &format!("{n}/o_heads"));
    let o = g.node("Transpose", &[&o], vec![Attr::Ints("perm", vec![0, 2, 1, 3])], &format!("{n}/o_steps"));
    let flat = g.ints(&format!("{n}/flat"), &[0, 0, d as i64]);
    let o = g.node("Reshape", &[&o, &flat], vec![], &format!("{n}/o"));
    let y = seq_affine(g, cx.id, ("out_proj.weight", "out_proj.bias"), &o, d, n)?;
    g.set(cx.id, y, Layout::ChannelsLast);
    Ok(())
}

/// `positions(n)`: the table's first `steps` rows (`Slice`) added to the sequence; the
/// sinusoids as an initializer of their values.
pub fn positions(g: &mut dyn OnnxGraph, cx: &OnnxCx, n: usize, sinusoidal: bool) -> Result<(), String> {
    let src = cx.input()?;
    let d = g.shape(src)?.last().ok_or_else(|| format!("`{}`: its input has no fixed features", cx.name))?;
    let name = cx.name;
    let x = g.value(src, Layout::ChannelsLast)?;
    let table = if sinusoidal {
        let v: Vec<f32> = (0..n * d)
            .map(|k| nnlang_runtime::kernels::positions::sinusoid(k / d.max(1), k % d.max(1), d) as f32)
            .collect();
        g.tensor(&format!("{name}.sinusoids"), &[n, d], &v)
    } else {
        param_tensor(g, cx.id, "weight", &[n, d])?
    };
    let t = steps_of(g, &x, name);
    let zero = g.ints(&format!("{name}/start"), &[0]);
    let axes = g.ints(&format!("{name}/axes"), &[0]);
    let rows = g.node("Slice", &[&table, &zero, &t, &axes], vec![], &format!("{name}/rows"));
    let y = g.node("Add", &[&x, &rows], vec![], name);
    g.set(cx.id, y, Layout::ChannelsLast);
    Ok(())
}
