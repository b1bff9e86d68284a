//! A trained model as an ONNX file (`nnlangc export --onnx`): one self-contained graph with
//! its weights, the preprocessing `train` did to the data, a dynamic batch size and, for a
//! model that reads sequences of any length, a dynamic number of steps.
//!
//! The graph keeps nnlang's layout at its edges: inputs and outputs are channels last
//! (`[batch, height, width, depth]`, `[batch, steps, features]`), so an array `nnlangc run`
//! reads is what the ONNX model reads, and its output is what `run` writes. Inside, a
//! convolution or a pooling layer works channels first (ONNX's `Conv` and `*Pool`), with a
//! `Transpose` only where the layout changes, so every flatten and dense layer reads the
//! order nnlang's weights were trained on. Opset [`OPSET`] of the default domain only:
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
//! | `dropout` | nothing (inference) |
//! | `scale`, `standardize` | `Mul`, `Sub`, `Div` at the input |
//! | `cross_entropy(bins = n)` | `ArgMax` and the bin's centre at the output |

mod proto;

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::ops::{Activation, Merge, PoolKind, RnnOutput};
use crate::session::data::Preprocess;
use crate::Model;
use nnlang_runtime::act;
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
}

/// The ONNX file of `model` with the weights `params` (by nnlang's parameter names,
/// `<layer>.weight`, …, each of its shape's number of elements).
///
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
    for id in g.ids() {
        b.lower(id)?;
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
        Builder { model, params, nodes: Vec::new(), inits: Vec::new(), names, vals: HashMap::new() }
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

    fn param_tensor(&mut self, node: NodeId, which: &str, dims: &[usize]) -> Result<String, String> {
        let v = self.param(node, which)?;
        let name = format!("{}.{which}", self.graph().node(node).name);
        Ok(self.tensor(&name, dims, v))
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

    /// The activation's nodes (the runtime's table writes them) over `x`, the last named `out`.
    fn activation(&mut self, a: &Activation, x: &str, out: &str) -> String {
        self.expr(&a.desc().onnx, x, out)
    }

    /// The nodes of `e` over `x`; the value named `out` (inner values `out/1`, `out/2`, …).
    fn expr(&mut self, e: &act::Onnx, x: &str, out: &str) -> String {
        match e {
            act::Onnx::X => x.to_string(),
            act::Onnx::Const(v) => self.scalar(&format!("{out}/c"), *v),
            act::Onnx::Op { op, args, alpha } => {
                let ins: Vec<String> =
                    args.iter().enumerate().map(|(i, a)| self.expr(a, x, &format!("{out}/{}", i + 1))).collect();
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let attrs = alpha.map(|a| vec![attr_f("alpha", a)]).unwrap_or_default();
                self.node(op, &refs, attrs, out)
            }
        }
    }

    /// An elementwise op on whichever layout the input has.
    fn elementwise(
        &mut self,
        id: NodeId,
        input: NodeId,
        f: impl FnOnce(&mut Self, &str, &str) -> String,
    ) -> Result<(), String> {
        let name = self.graph().node(id).name.clone();
        let val = self.vals.get(&input).cloned().ok_or("a value used before it was made")?;
        let v = match (val.nhwc, val.nchw) {
            (Some(x), _) => Val::nhwc(f(self, &x, &name)),
            (None, Some(c)) => Val { nhwc: None, nchw: Some(f(self, &c, &name)) },
            (None, None) => return Err("a value with no layout".into()),
        };
        self.vals.insert(id, v);
        Ok(())
    }

    /// `x · Wᵀ + b` for a weight `[units, fan_in]`: a `Gemm` on a batch of vectors (a volume
    /// flattened in nnlang's order first), a `MatMul` and an `Add` at every step of a sequence.
    fn affine(&mut self, id: NodeId, x: &str, in_shape: &Shape, units: usize, out: &str) -> Result<String, String> {
        let weight = self.param(id, "weight")?;
        let fan_in = weight.len() / units.max(1);
        let bias = self.param_tensor(id, "bias", &[units])?;
        if in_shape.is_sequence() {
            let mut t = vec![0f32; weight.len()];
            for (u, row) in weight.chunks_exact(fan_in.max(1)).enumerate() {
                for (i, &w) in row.iter().enumerate() {
                    t[i * units + u] = w;
                }
            }
            let layer = self.graph().node(id).name.clone();
            let wt = self.tensor(&format!("{layer}.weight/transposed"), &[fan_in, units], &t);
            let prod = self.node("MatMul", &[x, &wt], vec![], &format!("{out}/matmul"));
            Ok(self.node("Add", &[&prod, &bias], vec![], out))
        } else {
            let flat = if in_shape.rank() > 1 {
                self.node("Flatten", &[x], vec![attr_i("axis", 1)], &format!("{out}/flat"))
            } else {
                x.to_string()
            };
            let w = self.param_tensor(id, "weight", &[units, fan_in])?;
            Ok(self.node("Gemm", &[&flat, &w, &bias], vec![attr_i("transB", 1)], out))
        }
    }

    /// A locally-connected layer: its patches by a convolution with one-hot filters, then at
    /// every position a product with that position's filters (`MatMul` over `[oh, ow]`).
    fn local(&mut self, id: NodeId, l: &crate::ops::local::Local, src: NodeId) -> Result<(), String> {
        let name = self.graph().node(id).name.clone();
        let (in_shape, out_shape) = (self.shape(src)?, self.shape(id)?);
        let fixed = |s: &Shape| -> Result<Vec<usize>, String> {
            s.0.iter().map(|d| size(d).ok_or_else(|| format!("`{name}` needs fixed dimensions"))).collect()
        };
        let (i, o) = (fixed(&in_shape)?, fixed(&out_shape)?);
        let (&[_, _, d], &[oh, ow, f]) = (i.as_slice(), o.as_slice()) else {
            return Err(format!("`{name}`: a locally-connected layer reads and makes volumes"));
        };
        let k = l.size;
        let patch = d * k * k;
        // Patches: a convolution whose filter p picks input (channel, y, x) = p.
        let mut onehot = vec![0f32; patch * patch];
        for p in 0..patch {
            onehot[p * patch + p] = 1.0;
        }
        let e = self.tensor(&format!("{name}/patch_filters"), &[patch, d, k, k], &onehot);
        let x = self.nchw(src)?;
        let (kk, s, pd) = (k as i64, l.stride as i64, l.pad as i64);
        let attrs = vec![
            attr_ints("kernel_shape", &[kk, kk]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[pd, pd, pd, pd]),
        ];
        let cols = self.node("Conv", &[&x, &e], attrs, &format!("{name}/patches"));
        let cols =
            self.node("Transpose", &[&cols], vec![attr_ints("perm", &[0, 2, 3, 1])], &format!("{name}/patches_nhwc"));
        let s5 = self.ints(&format!("{name}/rows_shape"), &[0, oh as i64, ow as i64, 1, patch as i64]);
        let rows = self.node("Reshape", &[&cols, &s5], vec![], &format!("{name}/rows"));
        // nnlang's weight [oh, ow, f, d, k, k] as [oh, ow, d·k·k, f].
        let w = self.param(id, "weight")?;
        let mut wt = vec![0f32; w.len()];
        for pos in 0..oh * ow {
            for fi in 0..f {
                for p in 0..patch {
                    wt[(pos * patch + p) * f + fi] = w[(pos * f + fi) * patch + p];
                }
            }
        }
        let wt = self.tensor(&format!("{name}.weight/positions"), &[oh, ow, patch, f], &wt);
        let b = self.param_tensor(id, "bias", &[oh, ow, f])?;
        let prod = self.node("MatMul", &[&rows, &wt], vec![], &format!("{name}/matmul"));
        let s4 = self.ints(&format!("{name}/out_shape"), &[0, oh as i64, ow as i64, f as i64]);
        let flat = self.node("Reshape", &[&prod, &s4], vec![], &format!("{name}/products"));
        let y = self.node("Add", &[&flat, &b], vec![], &name);
        self.vals.insert(id, Val::nhwc(y));
        Ok(())
    }

    /// ONNX's `BatchNormalization` (with the running averages) over channel axis 1: an
    /// image's channels first, a sequence's features before its steps.
    fn batchnorm(&mut self, id: NodeId, src: NodeId, eps: f64, name: &str) -> Result<(), String> {
        let shape = self.shape(src)?;
        let c = shape.last().ok_or_else(|| format!("`{name}`: its input has no fixed features"))?;
        let params: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|w| self.param_tensor(id, w, &[c]))
            .collect::<Result<_, _>>()?;
        let args = |x: &str| -> Vec<String> { std::iter::once(x.to_string()).chain(params.iter().cloned()).collect() };
        let attrs = || vec![attr_f("epsilon", eps as f32)];
        if shape.rank() == 3 {
            let x = self.nchw(src)?;
            let a = args(&x);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let y = self.node("BatchNormalization", &refs, attrs(), name);
            self.vals.insert(id, Val { nhwc: None, nchw: Some(y) });
        } else if shape.rank() == 2 {
            let x = self.nhwc(src)?;
            let t =
                self.node("Transpose", &[&x], vec![attr_ints("perm", &[0, 2, 1])], &format!("{name}/features_first"));
            let a = args(&t);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let n = self.node("BatchNormalization", &refs, attrs(), &format!("{name}/normalized"));
            let y = self.node("Transpose", &[&n], vec![attr_ints("perm", &[0, 2, 1])], name);
            self.vals.insert(id, Val::nhwc(y));
        } else {
            let x = self.nhwc(src)?;
            let a = args(&x);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let y = self.node("BatchNormalization", &refs, attrs(), name);
            self.vals.insert(id, Val::nhwc(y));
        }
        Ok(())
    }

    fn lower(&mut self, id: NodeId) -> Result<(), String> {
        let g = self.graph();
        let node = g.node(id);
        let name = node.name.clone();
        let first = node.inputs.first().copied();
        let input = || first.ok_or_else(|| format!("`{name}` has no input"));
        match &node.op {
            Op::Input(_) | Op::Loss(_) => {}
            Op::Dropout(_) => {
                let v = self.vals.get(&input()?).cloned().unwrap_or_default();
                self.vals.insert(id, v);
            }
            Op::Dense(d) => {
                let src = input()?;
                let in_shape = self.shape(src)?;
                let x = self.nhwc(src)?;
                let act = d.activation.unwrap_or(Activation::Identity);
                let pre = if act == Activation::Identity { name.clone() } else { format!("{name}/linear") };
                let y = self.affine(id, &x, &in_shape, d.units, &pre)?;
                let y = self.activation(&act, &y, &name);
                self.vals.insert(id, Val::nhwc(y));
            }
            Op::Maxout(m) => {
                let src = input()?;
                let in_shape = self.shape(src)?;
                let x = self.nhwc(src)?;
                let y = self.affine(id, &x, &in_shape, m.units * m.pieces, &format!("{name}/linear"))?;
                let shape: Vec<i64> = if in_shape.is_sequence() {
                    vec![0, 0, m.units as i64, m.pieces as i64]
                } else {
                    vec![0, m.units as i64, m.pieces as i64]
                };
                let s = self.ints(&format!("{name}/pieces_shape"), &shape);
                let r = self.node("Reshape", &[&y, &s], vec![], &format!("{name}/pieces"));
                let y = self.node("ReduceMax", &[&r], vec![attr_ints("axes", &[-1]), attr_i("keepdims", 0)], &name);
                self.vals.insert(id, Val::nhwc(y));
            }
            Op::MaxoutChannels(m) => {
                let src = input()?;
                let in_shape = self.shape(src)?;
                let x = self.nhwc(src)?;
                let depth = in_shape.last().ok_or_else(|| format!("`{name}`: its input has no fixed depth"))?;
                let mut shape = vec![0i64; in_shape.rank()];
                shape.push((depth / m.pieces.max(1)) as i64);
                shape.push(m.pieces as i64);
                let s = self.ints(&format!("{name}/pieces_shape"), &shape);
                let r = self.node("Reshape", &[&x, &s], vec![], &format!("{name}/pieces"));
                let y = self.node("ReduceMax", &[&r], vec![attr_ints("axes", &[-1]), attr_i("keepdims", 0)], &name);
                self.vals.insert(id, Val::nhwc(y));
            }
            Op::Conv(c) => {
                let src = input()?;
                let depth = self.shape(src)?.last().ok_or_else(|| format!("`{name}`: its input has no fixed depth"))?;
                let x = self.nchw(src)?;
                let w = self.param_tensor(id, "weight", &[c.filters, depth, c.size, c.size])?;
                let b = self.param_tensor(id, "bias", &[c.filters])?;
                let (k, s, p) = (c.size as i64, c.stride as i64, c.pad as i64);
                let act = c.activation.unwrap_or(Activation::Identity);
                let pre = if act == Activation::Identity { name.clone() } else { format!("{name}/linear") };
                let attrs = vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[s, s]),
                    attr_ints("pads", &[p, p, p, p]),
                ];
                let y = self.node("Conv", &[&x, &w, &b], attrs, &pre);
                let y = self.activation(&act, &y, &name);
                self.vals.insert(id, Val { nhwc: None, nchw: Some(y) });
            }
            Op::Pool(p) => {
                let x = self.nchw(input()?)?;
                let (k, s) = (p.size as i64, p.stride as i64);
                let attrs = || vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[s, s])];
                let y = match p.kind {
                    PoolKind::Max => self.node("MaxPool", &[&x], attrs(), &name),
                    PoolKind::Avg => self.node("AveragePool", &[&x], attrs(), &name),
                    PoolKind::L2 => {
                        // sqrt(Σ x²) over each window (ONNX's LpPool, which not every runtime has).
                        let sq = self.node("Mul", &[&x, &x], vec![], &format!("{name}/square"));
                        let mean = self.node("AveragePool", &[&sq], attrs(), &format!("{name}/mean"));
                        let n = self.scalar(&format!("{name}/window"), (p.size * p.size) as f32);
                        let sum = self.node("Mul", &[&mean, &n], vec![], &format!("{name}/sum"));
                        self.node("Sqrt", &[&sum], vec![], &name)
                    }
                };
                self.vals.insert(id, Val { nhwc: None, nchw: Some(y) });
            }
            Op::Local(l) => self.local(id, l, input()?)?,
            Op::Flatten(_) => {
                let x = self.nhwc(input()?)?;
                let y = self.node("Flatten", &[&x], vec![attr_i("axis", 1)], &name);
                self.vals.insert(id, Val::nhwc(y));
            }
            Op::Activation(a) => {
                let f = a.function;
                self.elementwise(id, input()?, |b, x, out| match f {
                    Activation::Identity => b.node("Identity", &[x], vec![], out),
                    f => b.activation(&f, x, out),
                })?;
            }
            Op::Softplus(_) => self.elementwise(id, input()?, |b, x, out| b.node("Softplus", &[x], vec![], out))?,
            Op::BatchNorm(bn) => self.batchnorm(id, input()?, bn.eps, &name)?,
            Op::Softmax(_) => {
                let x = self.nhwc(input()?)?;
                let y = self.node("Softmax", &[&x], vec![attr_i("axis", -1)], &name);
                self.vals.insert(id, Val::nhwc(y));
            }
            Op::Add(_) | Op::Concat(_) => {
                let mut xs = Vec::new();
                for &i in &node.inputs {
                    xs.push(self.nhwc(i)?);
                }
                let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
                let y = match &node.op {
                    Op::Add(_) => self.node("Sum", &refs, vec![], &name),
                    _ => self.node("Concat", &refs, vec![attr_i("axis", -1)], &name),
                };
                self.vals.insert(id, Val::nhwc(y));
            }
            Op::Rnn(r) => {
                let y = self.rnn(id, input()?, r.hidden, &r.activation, r.output, None)?;
                self.vals.insert(id, Val::nhwc(y));
            }
            Op::Bidirectional(b) => {
                let y = self.rnn(id, input()?, b.hidden, &b.activation, b.output, Some(b.merge))?;
                self.vals.insert(id, Val::nhwc(y));
            }
        }
        Ok(())
    }

    /// An ONNX `RNN` over `[batch, steps, features]` (time-major inside), its output back in
    /// nnlang's layout: every step's state, or the last (the backward direction's last is its
    /// state at the first step), the two directions merged as `merge` says.
    fn rnn(
        &mut self,
        id: NodeId,
        src: NodeId,
        hidden: usize,
        act: &Activation,
        output: RnnOutput,
        merge: Option<Merge>,
    ) -> Result<String, String> {
        let name = self.graph().node(id).name.clone();
        let features = self.shape(src)?.last().ok_or_else(|| format!("`{name}`: its input has no fixed width"))?;
        let x = self.nhwc(src)?;
        let dirs: &[&str] = if merge.is_some() { &["", "_reverse"] } else { &[""] };
        let (mut w, mut r, mut bias) = (Vec::new(), Vec::new(), Vec::new());
        for sfx in dirs {
            w.extend_from_slice(self.param(id, &format!("weight_ih_l0{sfx}"))?);
            r.extend_from_slice(self.param(id, &format!("weight_hh_l0{sfx}"))?);
            bias.extend_from_slice(self.param(id, &format!("bias_ih_l0{sfx}"))?);
            bias.extend_from_slice(self.param(id, &format!("bias_hh_l0{sfx}"))?);
        }
        let d = dirs.len();
        let w = self.tensor(&format!("{name}.W"), &[d, hidden, features], &w);
        let r = self.tensor(&format!("{name}.R"), &[d, hidden, hidden], &r);
        let bias = self.tensor(&format!("{name}.B"), &[d, 2 * hidden], &bias);
        let xt = self.node("Transpose", &[&x], vec![attr_ints("perm", &[1, 0, 2])], &format!("{name}/time_major"));
        let (f, ab) = act.desc().onnx_rnn.ok_or_else(|| format!("`{name}`: ONNX's RNN has no `{}`", act.name()))?;
        let mut attrs = vec![
            attr_i("hidden_size", hidden as i64),
            attr_s("direction", if d == 2 { "bidirectional" } else { "forward" }),
            attr_strings("activations", &vec![f; d]),
        ];
        if let Some((alpha, beta)) = ab {
            attrs.push(attr_floats("activation_alpha", &vec![alpha; d]));
            if f == "Affine" {
                attrs.push(attr_floats("activation_beta", &vec![beta; d]));
            }
        }
        let ys = self.fresh(&format!("{name}/Y"));
        let yh = self.fresh(&format!("{name}/Y_h"));
        self.nodes.push(NodeProto {
            input: vec![xt, w, r, bias],
            output: vec![ys.clone(), yh.clone()],
            name: Some(format!("{name}/rnn")),
            op_type: Some("RNN".into()),
            domain: None,
            attribute: attrs,
            doc_string: None,
        });
        // [steps, dirs, batch, hidden] → [batch, steps, dirs, hidden]; [dirs, batch, hidden] →
        // [batch, dirs, hidden]: the direction axis sits just before the features.
        let (states, dir_axis) = match output {
            RnnOutput::Sequence => (
                self.node("Transpose", &[&ys], vec![attr_ints("perm", &[2, 0, 1, 3])], &format!("{name}/batch_major")),
                2,
            ),
            RnnOutput::Last => {
                (self.node("Transpose", &[&yh], vec![attr_ints("perm", &[1, 0, 2])], &format!("{name}/batch_major")), 1)
            }
        };
        match merge {
            None | Some(Merge::Concat) => {
                let shape: &[i64] = if dir_axis == 2 { &[0, 0, -1] } else { &[0, -1] };
                let s = self.ints(&format!("{name}/shape"), shape);
                Ok(self.node("Reshape", &[&states, &s], vec![], &name))
            }
            Some(Merge::Add) => {
                let axes = self.ints(&format!("{name}/dir_axis"), &[dir_axis]);
                Ok(self.node("ReduceSum", &[&states, &axes], vec![attr_i("keepdims", 0)], &name))
            }
            Some(Merge::Mul) => Ok(self.node(
                "ReduceProd",
                &[&states],
                vec![attr_ints("axes", &[dir_axis]), attr_i("keepdims", 0)],
                &name,
            )),
        }
    }
}
