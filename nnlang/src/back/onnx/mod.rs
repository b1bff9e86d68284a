//! A trained model as an ONNX file (`nnlangc export --onnx`): one self-contained graph with
//! its weights, the preprocessing `train` did to the data, a dynamic batch size and, for a
//! model that reads sequences of any length, a dynamic number of steps.
//!
//! The graph keeps nnlang's layout at its edges: inputs and outputs are channels last
//! (`[batch, height, width, depth]`, `[batch, steps, features]`), so an array `nnlangc run`
//! reads is what the ONNX model reads, and its output is what `run` writes. Inside, a
//! convolution or a pooling layer works channels first (ONNX's `Conv` and `*Pool`), with a
//! `Transpose` only where the layout changes, so every flatten and dense layer reads the
//! order nnlang's weights were trained on. Each op writes its own nodes (`ops::Rules::onnx`,
//! through [`crate::ops::onnx::OnnxGraph`]); this module owns the file: the protobuf, unique
//! names, the layouts of values, the inputs with their preprocessing and the output. Opset
//! [`OPSET`] of the default domain only:
//!
//! | nnlang | ONNX |
//! |---|---|
//! | `dense`, `maxout(units)` | `Gemm` (`MatMul` + `Add` at every step of a sequence); maxout `Reshape` + `ReduceMax` |
//! | `conv` | `Conv` |
//! | `pool(max)`, `pool(avg)` | `MaxPool`, `AveragePool` |
//! | `pool(l2)` | `Mul` (square), `AveragePool`, `Mul` (window size), `Sqrt` |
//! | `local` | patches by a `Conv` with one-hot filters, then a batched `MatMul` with each position's filters |
//! | `maxout(pieces)` on a volume | `Reshape` + `ReduceMax` |
//! | activations, `softmax`, `softplus` | `Sigmoid`, `Tanh`, `Relu`, `LeakyRelu`, `Softmax`, `Softplus` |
//! | `add`, `concat`, `flatten` | `Sum`, `Concat`, `Flatten` |
//! | `rnn`, `bidirectional` | `RNN` (one or both directions), then `Transpose`/`Reshape`/`ReduceSum`/`ReduceProd` for the output and the merge |
//! | `batchnorm` | `BatchNormalization` with the running averages (channels on axis 1: an image's channels first, a sequence's features before its steps) |
//! | `dropout` | nothing (inference) |
//! | `scale`, `standardize` | `Mul`, `Sub`, `Div` at the input |
//! | `cross_entropy(bins = n)` | `ArgMax` and the bin's centre at the output |

mod proto;

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::ops::onnx::{Attr, Layout, OnnxCx, OnnxGraph};
use crate::session::data::Preprocess;
use crate::Model;
use proto::*;

/// The operator set version of the default domain the graph is written for.
pub const OPSET: i64 = 17;
/// The ONNX IR version of that opset's release (1.12).
pub const IR_VERSION: i64 = 8;

/// What goes into the file besides the model.
#[derive(Default)]
pub struct Extras<'a> {
    /// The preprocessing `train` saved with the weights (done inside the graph).
    pub preprocess: Option<&'a Preprocess>,
    /// `key`, `value` pairs for the file's `metadata_props` (a text model's vocabulary, …).
    pub metadata: Vec<(String, String)>,
    /// A second graph input `lengths` (int32 `[batch]`, each sequence's steps) for a model
    /// that reads sequences of variable length, given to every recurrent node as its
    /// `sequence_lens`: a ragged batch then runs as `nnlangc run` runs each sequence alone.
    pub sequence_lengths: bool,
}

/// The ONNX file of `model` with the weights `params` (by nnlang's parameter names,
/// `<layer>.weight`, …, each of its shape's number of elements).
///
/// The batch norms the export folds (as `run` does): each one whose input is a convolution
/// or dense layer read by nothing else, by that layer.
fn folds(model: &Model) -> HashMap<NodeId, NodeId> {
    let g = &model.graph;
    let users = g.users();
    let mut out = HashMap::new();
    for id in g.ids() {
        if !matches!(g.node(id).op, Op::BatchNorm(_)) {
            continue;
        }
        let Some(&layer) = g.node(id).inputs.first() else { continue };
        let foldable = matches!(g.node(layer).op, Op::Conv(_) | Op::Dense(_));
        if foldable && users[layer.index()].len() == 1 && g.output != Some(layer) {
            out.insert(layer, id);
        }
    }
    out
}

/// ```
/// use std::collections::HashMap;
/// let source = "model Tiny { input x: [3]\n x -> dense(2) -> softmax }";
/// let compiled = nnlang::compile(source, &nnlang::Options::default()).unwrap();
/// let model = &compiled.models[0];
/// let params: HashMap<String, Vec<f32>> = HashMap::from([
///     ("dense_0.weight".to_string(), vec![0.1; 6]),
///     ("dense_0.bias".to_string(), vec![0.0; 2]),
/// ]);
/// let bytes = nnlang::back::onnx::export(model, &params, &Default::default()).unwrap();
/// std::fs::write(std::env::temp_dir().join("tiny.onnx"), bytes).unwrap();
///
/// // Weights that do not fit are an error, not a broken file.
/// let short = HashMap::from([("dense_0.weight".to_string(), vec![0.1; 5])]);
/// let err = nnlang::back::onnx::export(model, &short, &Default::default()).unwrap_err();
/// assert!(err.contains("dense_0.weight"), "{err}");
/// ```
pub fn export(model: &Model, params: &HashMap<String, Vec<f32>>, extras: &Extras) -> Result<Vec<u8>, String> {
    let mut b = Builder::new(model, params);
    let g = &model.graph;
    let mut inputs = Vec::new();
    for &id in &g.inputs {
        let node = g.node(id);
        let shape = b.shape(id)?;
        inputs.push(value_info(&node.name, &shape.0));
        let x = match extras.preprocess {
            Some(pre) => b.preprocess(&node.name, &shape, pre)?,
            None => node.name.clone(),
        };
        b.vals.insert(id, Val::nhwc(x));
    }
    if extras.sequence_lengths {
        let variable =
            g.inputs.iter().any(|&i| matches!(b.shape(i).map(|s| s.0.first().cloned()), Ok(Some(Dim::Seq { .. }))));
        if !variable {
            return Err("sequence lengths are an input of a model that reads sequences of variable length (`[seq <= n, …]`); this one does not".into());
        }
        let lengths = "lengths".to_string();
        if b.names.contains(&lengths) {
            return Err(
                "the model has a layer or input named `lengths`, the name of the sequence lengths' input".into()
            );
        }
        inputs.push(int_value_info(&lengths));
        b.lengths = Some(lengths);
    }
    for id in g.ids() {
        let node = b.graph().node(id);
        let cx = OnnxCx { id, name: &node.name, inputs: &node.inputs };
        // Each op writes its own nodes (`ops::Rules::onnx`).
        node.op.rules().onnx(&mut b, &cx)?;
    }
    let out = g.output.ok_or("the model has no output")?;
    let out_shape = b.shape(out)?;
    let mut y = b.nhwc(out)?;
    let mut out_dims = out_shape.0.clone();
    if let Some(bins) = extras.preprocess.and_then(|p| p.bins) {
        // What `run` writes for a binned regression: the centre of the likeliest bin.
        let i = b.node("ArgMax", &[&y], vec![attr_i("axis", -1), attr_i("keepdims", 1)], "bin");
        let f = b.node("Cast", &[&i], vec![attr_i("to", data_type::FLOAT as i64)], "bin/float");
        let half = b.scalar("bin/half", 0.5);
        let width = b.scalar("bin/width", bins.width);
        let lo = b.scalar("bin/lo", bins.lo);
        let mid = b.node("Add", &[&f, &half], vec![], "bin/mid");
        let scaled = b.node("Mul", &[&mid, &width], vec![], "bin/scaled");
        y = b.node("Add", &[&scaled, &lo], vec![], "value");
        out_dims = vec![Dim::Fixed(1)];
    }
    let graph = GraphProto {
        node: b.nodes,
        name: Some(g.name.clone()),
        initializer: b.inits,
        doc_string: Some(format!("nnlang model `{}`", g.name)),
        input: inputs,
        output: vec![value_info(&y, &out_dims)],
        value_info: Vec::new(),
    };
    let mut metadata = Vec::new();
    if let Some(pre) = extras.preprocess.filter(|p| !p.is_empty()) {
        metadata.push(("nnlang.preprocess".to_string(), pre.to_json()));
    }
    metadata.extend(extras.metadata.iter().cloned());
    let file = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("nnlang".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: Some(1),
        doc_string: Some(
            "Written by `nnlangc export --onnx`. Inputs and outputs are channels last, as nnlang's; \
             the preprocessing of training is inside."
                .into(),
        ),
        graph: Some(graph),
        metadata_props: metadata
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) })
            .collect(),
    };
    Ok(file.encode_to_vec())
}

/// A value of the nnlang graph in the ONNX graph: channels last (nnlang's layout), channels
/// first (after a convolution or pooling), or both; the other is made when first needed.
#[derive(Clone, Default)]
struct Val {
    nhwc: Option<String>,
    nchw: Option<String>,
}

impl Val {
    fn nhwc(name: String) -> Val {
        Val { nhwc: Some(name), nchw: None }
    }
}

struct Builder<'a> {
    model: &'a Model,
    params: &'a HashMap<String, Vec<f32>>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    names: HashSet<String>,
    vals: HashMap<NodeId, Val>,
    /// Batch norms folded into the convolution or dense layer before them (by that layer).
    folds: HashMap<NodeId, NodeId>,
    /// The same pairs by batch norm.
    folded: HashMap<NodeId, NodeId>,
    /// The sequence lengths' graph input, when the export has one.
    lengths: Option<String>,
}

fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(i),
        ..Default::default()
    }
}

fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(f),
        ..Default::default()
    }
}

fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(s.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Floats as i32),
        floats: v.to_vec(),
        ..Default::default()
    }
}

fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Strings as i32),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A graph input's or output's type: float, batch first, a variable number of steps named.
fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let mut dim = vec![Dimension { value: Some(DimensionValue::DimParam("batch".into())), denotation: None }];
    for d in dims {
        let value = match d {
            Dim::Fixed(n) | Dim::Steps { len: n, .. } => DimensionValue::DimValue(*n as i64),
            Dim::Seq { name, .. } => DimensionValue::DimParam(name.clone()),
        };
        dim.push(Dimension { value: Some(value), denotation: None });
    }
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType { elem_type: Some(data_type::FLOAT), shape: Some(TensorShapeProto { dim }) }),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// The sequence lengths' input: int32, one per row of the batch.
fn int_value_info(name: &str) -> ValueInfoProto {
    let dim = vec![Dimension { value: Some(DimensionValue::DimParam("batch".into())), denotation: None }];
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType { elem_type: Some(data_type::INT32), shape: Some(TensorShapeProto { dim }) }),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// A dimension's size, unless it varies from example to example.
fn size(d: &Dim) -> Option<usize> {
    match d {
        Dim::Fixed(n) | Dim::Steps { len: n, .. } => Some(*n),
        Dim::Seq { .. } => None,
    }
}

impl<'a> Builder<'a> {
    fn new(model: &'a Model, params: &'a HashMap<String, Vec<f32>>) -> Self {
        let mut names = HashSet::new();
        for id in model.graph.ids() {
            names.insert(model.graph.node(id).name.clone());
        }
        let folds = folds(model);
        let folded = folds.iter().map(|(&layer, &bn)| (bn, layer)).collect();
        Builder {
            model,
            params,
            nodes: Vec::new(),
            inits: Vec::new(),
            names,
            vals: HashMap::new(),
            folds,
            folded,
            lengths: None,
        }
    }

    /// A parameter of `node` with the batch norm folded into it, if one is: the weights'
    /// row `k` times `s_k = γ_k/√(σ²_k + ε)`, the bias `(b_k − μ_k)·s_k + β_k` (`b = 0`
    /// without one); `None` for a parameter of a layer without a fold.
    fn folded(&self, node: NodeId, which: &str) -> Option<Result<Vec<f32>, String>> {
        let &bn = self.folds.get(&node)?;
        if which != "weight" && which != "bias" {
            return None;
        }
        let Op::BatchNorm(norm) = &self.graph().node(bn).op else { return None };
        let eps = norm.eps;
        let stats = || -> Result<Vec<Vec<f32>>, String> {
            ["weight", "bias", "running_mean", "running_var"]
                .iter()
                .map(|w| self.param(bn, w).map(<[f32]>::to_vec))
                .collect()
        };
        Some(stats().and_then(|t| {
            let (gamma, beta, mean, var) = (&t[0], &t[1], &t[2], &t[3]);
            let scale: Vec<f64> =
                gamma.iter().zip(var).map(|(&g, &v)| f64::from(g) / (f64::from(v) + eps).sqrt()).collect();
            if which == "weight" {
                let w = self.param(node, "weight")?;
                let per = w.len() / scale.len().max(1);
                Ok(w.iter().enumerate().map(|(i, &x)| (f64::from(x) * scale[i / per.max(1)]) as f32).collect())
            } else {
                let b = match self.graph().node(node).op {
                    Op::Conv(ref c) if !c.bias => vec![0.0; scale.len()],
                    _ => self.param(node, "bias")?.to_vec(),
                };
                Ok((0..scale.len())
                    .map(|k| ((f64::from(b[k]) - f64::from(mean[k])) * scale[k] + f64::from(beta[k])) as f32)
                    .collect())
            }
        }))
    }

    fn graph(&self) -> &'a Graph {
        &self.model.graph
    }

    fn shape(&self, id: NodeId) -> Result<Shape, String> {
        self.model.shapes.shapes[id.index()]
            .clone()
            .ok_or_else(|| format!("`{}` has no inferred shape", self.graph().node(id).name))
    }

    /// A value name not used yet, `base` if free.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.names.insert(name.clone());
        name
    }

    /// Adds a node with one output, named `out` (made unique); returns the output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>, out: &str) -> String {
        let out = self.fresh(out);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(out.clone()),
            op_type: Some(op.into()),
            domain: None,
            attribute,
            doc_string: None,
        });
        out
    }

    fn tensor(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(name);
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type::FLOAT),
            name: Some(name.clone()),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        name
    }

    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.tensor(name, &[], &[v])
    }

    fn ints(&mut self, name: &str, v: &[i64]) -> String {
        let name = self.fresh(name);
        self.inits.push(TensorProto {
            dims: vec![v.len() as i64],
            data_type: Some(data_type::INT64),
            name: Some(name.clone()),
            raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..Default::default()
        });
        name
    }

    /// A parameter of the weights, checked against the shape the model gives it.
    fn param(&self, node: NodeId, which: &str) -> Result<&'a [f32], String> {
        let layer = &self.graph().node(node).name;
        let name = format!("{layer}.{which}");
        let spec = self.model.shapes.params[node.index()]
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("layer `{layer}` has no parameter `{name}`"))?;
        let v = self.params.get(&name).ok_or_else(|| format!("the weights have no tensor `{name}`"))?;
        if v.len() as u64 != spec.count() {
            return Err(format!(
                "`{name}` holds {} values; the model's {:?} needs {}",
                v.len(),
                spec.shape,
                spec.count()
            ));
        }
        Ok(v)
    }

    /// The value of `id` channels last.
    fn nhwc(&mut self, id: NodeId) -> Result<String, String> {
        let val = self.vals.get(&id).cloned().ok_or("a value used before it was made")?;
        if let Some(x) = val.nhwc {
            return Ok(x);
        }
        let c = val.nchw.ok_or("a value with no layout")?;
        let x = self.node("Transpose", &[&c], vec![attr_ints("perm", &[0, 2, 3, 1])], &format!("{c}/nhwc"));
        self.vals.entry(id).or_default().nhwc = Some(x.clone());
        Ok(x)
    }

    /// The value of `id` channels first (a volume).
    fn nchw(&mut self, id: NodeId) -> Result<String, String> {
        let val = self.vals.get(&id).cloned().ok_or("a value used before it was made")?;
        if let Some(c) = val.nchw {
            return Ok(c);
        }
        let x = val.nhwc.ok_or("a value with no layout")?;
        let c = self.node("Transpose", &[&x], vec![attr_ints("perm", &[0, 3, 1, 2])], &format!("{x}/nchw"));
        self.vals.entry(id).or_default().nchw = Some(c.clone());
        Ok(c)
    }

    /// `scale` then `standardize`, as `train` did and `run` does.
    fn preprocess(&mut self, input: &str, shape: &Shape, pre: &Preprocess) -> Result<String, String> {
        let mut x = input.to_string();
        if let Some(s) = pre.scale {
            let k = self.scalar(&format!("{input}/scale"), s);
            x = self.node("Mul", &[&x, &k], vec![], &format!("{input}/scaled"));
        }
        if let Some((mean, std)) = &pre.standardize {
            // Statistics per value of an example, or (for a sequence) per value of a step.
            let dims: Vec<Option<usize>> = shape.0.iter().map(size).collect();
            let of = |d: &[Option<usize>]| -> Option<Vec<usize>> { d.iter().copied().collect() };
            let step = if shape.is_sequence() { of(&dims[1..]) } else { None };
            let stat_dims = match (step, of(&dims)) {
                (Some(s), _) if s.iter().product::<usize>() == mean.len() => s,
                (_, Some(a)) if a.iter().product::<usize>() == mean.len() => a,
                _ => {
                    return Err(format!(
                        "the saved statistics cover {} features, but input `{input}` is {shape}",
                        mean.len()
                    ))
                }
            };
            if std.len() != mean.len() {
                return Err(format!("the saved statistics have {} means but {} deviations", mean.len(), std.len()));
            }
            let m = self.tensor(&format!("{input}/mean"), &stat_dims, mean);
            let s = self.tensor(&format!("{input}/std"), &stat_dims, std);
            let centred = self.node("Sub", &[&x, &m], vec![], &format!("{input}/centred"));
            x = self.node("Div", &[&centred, &s], vec![], &format!("{input}/standardized"));
        }
        Ok(x)
    }
}

fn attribute(a: Attr) -> AttributeProto {
    match a {
        Attr::Int(n, v) => attr_i(n, v),
        Attr::Float(n, v) => attr_f(n, v),
        Attr::Ints(n, v) => attr_ints(n, &v),
        Attr::Floats(n, v) => attr_floats(n, &v),
        Attr::Str(n, v) => attr_s(n, &v),
        Attr::Strs(n, v) => attr_strings(n, &v.iter().map(String::as_str).collect::<Vec<_>>()),
    }
}

/// The graph as the ops' lowerings see it (`ops::Rules::onnx`).
impl OnnxGraph for Builder<'_> {
    fn shape(&self, id: NodeId) -> Result<Shape, String> {
        Builder::shape(self, id)
    }
    fn value(&mut self, id: NodeId, layout: Layout) -> Result<String, String> {
        match layout {
            Layout::ChannelsLast => self.nhwc(id),
            Layout::ChannelsFirst => self.nchw(id),
        }
    }
    fn layout(&self, id: NodeId) -> Result<Layout, String> {
        match self.vals.get(&id) {
            Some(Val { nhwc: Some(_), .. }) => Ok(Layout::ChannelsLast),
            Some(Val { nchw: Some(_), .. }) => Ok(Layout::ChannelsFirst),
            _ => Err("a value used before it was made".into()),
        }
    }
    fn set(&mut self, id: NodeId, value: String, layout: Layout) {
        let v = match layout {
            Layout::ChannelsLast => Val::nhwc(value),
            Layout::ChannelsFirst => Val { nhwc: None, nchw: Some(value) },
        };
        self.vals.insert(id, v);
    }
    fn alias(&mut self, id: NodeId, of: NodeId) -> Result<(), String> {
        let v = self.vals.get(&of).cloned().ok_or("a value used before it was made")?;
        self.vals.insert(id, v);
        Ok(())
    }
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, out: &str) -> String {
        Builder::node(self, op, inputs, attrs.into_iter().map(attribute).collect(), out)
    }
    fn node_outputs(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, outs: &[&str], name: &str) -> Vec<String> {
        let output: Vec<String> = outs.iter().map(|o| self.fresh(o)).collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name: Some(name.to_string()),
            op_type: Some(op.into()),
            domain: None,
            attribute: attrs.into_iter().map(attribute).collect(),
            doc_string: None,
        });
        output
    }
    fn tensor(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        Builder::tensor(self, name, dims, data)
    }
    fn ints(&mut self, name: &str, v: &[i64]) -> String {
        Builder::ints(self, name, v)
    }
    fn param(&self, id: NodeId, which: &str) -> Result<Vec<f32>, String> {
        match self.folded(id, which) {
            Some(v) => v,
            None => Builder::param(self, id, which).map(<[f32]>::to_vec),
        }
    }
    fn fold_of(&self, layer: NodeId) -> Option<NodeId> {
        self.folds.get(&layer).copied()
    }
    fn folded_into(&self, bn: NodeId) -> Option<NodeId> {
        self.folded.get(&bn).copied()
    }
    fn lengths(&self) -> Option<String> {
        self.lengths.clone()
    }
    fn name(&self, id: NodeId) -> String {
        self.graph().node(id).name.clone()
    }
}
