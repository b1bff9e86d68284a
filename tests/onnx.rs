//! `nnlangc export --onnx` checked by an independent ONNX implementation (tract): for every
//! runnable example, the exported file run by tract agrees with `nnlangc run` on the same
//! random inputs within 1e-5, at two batch sizes (the batch is dynamic) and, for a model that
//! reads sequences of any length, at a length shorter than the longest.
#![cfg(not(nnlang_no_onnx_tests))]

mod common;

use common::{nnlangc, s, temp_dir, text};
use nnlang::ir::Dim;
use nnlang_runtime::plan::Param;
use rand::{RngExt, SeedableRng};
use std::path::Path;
use tract_onnx::prelude::*;

/// The model's input dimensions (a variable length at `steps`), a parameter table, and the
/// input's `ids < n` when it holds token ids.
fn model_info(file: &Path, steps: impl Fn(usize) -> usize) -> (Vec<usize>, Vec<Param>, Option<usize>) {
    let session = nnlang::session::Session::open(file, &nnlang::Options::default()).expect("compiles");
    let model = session.main_model(None).expect("a model");
    let input = model.graph.inputs[0];
    let shape = model.shapes.shapes[input.index()].clone().expect("input shape");
    let dims = shape
        .0
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) | Dim::Steps { len: n, .. } => *n,
            Dim::Seq { max, .. } => steps(max.expect("a bounded length")),
        })
        .collect();
    (dims, nnlang::session::param_table(model), nnlang::shape::ids_bound(&model.graph, input))
}

/// `n` random inputs: values in (-1, 1), or token ids below `ids`.
fn random_inputs(rng: &mut rand_chacha::ChaCha8Rng, n: usize, ids: Option<usize>) -> Vec<f32> {
    match ids {
        Some(v) => (0..n).map(|_| rng.random_range(0..v) as f32).collect(),
        None => (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    }
}

/// Random weights of PyTorch's default scale (uniform ±1/√fan_in; biases ±0.1).
fn random_weights(table: &[Param], path: &Path) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let len = table.iter().map(|p| p.buf.offset + p.buf.len).max().unwrap_or(0);
    let mut flat = vec![0f32; len];
    for p in table {
        let a = p.role.fan_in().map_or(0.1, |f| 1.0 / (f.max(1) as f32).sqrt());
        // A variance is positive.
        let (lo, hi) = if p.name.ends_with("running_var") { (0.5, 2.0) } else { (-a, a) };
        for v in &mut flat[p.buf.range()] {
            *v = rng.random_range(lo..hi);
        }
    }
    nnlang_runtime::io::save(path, table, &flat).expect("saves weights");
}

/// `nnlangc run` on `x` (`[rows, dims…]`): the output array.
fn run(file: &Path, weights: &Path, dir: &Path, dims: &[usize], x: &[f32]) -> nnlang_runtime::data::npy::Array {
    let rows = x.len() / dims.iter().product::<usize>();
    let mut shape = vec![rows];
    shape.extend_from_slice(dims);
    let input = dir.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &shape, x).expect("writes");
    let out = dir.join("y.npy");
    let o = nnlangc(&["run", s(file), "--weights", s(weights), "--raw", "--input", s(&input), "--output", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}: {}", file.display(), text(&o.stderr));
    nnlang_runtime::data::npy::read(&out).expect("reads")
}

/// tract on the ONNX file at the shape of `x`. The file leaves the batch (and a variable
/// number of steps) symbolic, which the first check here asserts; tract's `RNN` cannot be
/// optimized with a symbolic batch, so the shape is made concrete before running.
fn tract(onnx: &Path, dims: &[usize], x: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let rows = x.len() / dims.iter().product::<usize>();
    let mut shape = vec![rows];
    shape.extend_from_slice(dims);
    let fail = |e: TractError| -> ! { panic!("{}: tract: {e:?}", onnx.display()) };
    let model = tract_onnx::onnx().model_for_path(onnx).unwrap_or_else(|e| fail(e));
    let declared = format!("{:?}", model.input_fact(0).unwrap_or_else(|e| fail(e)));
    assert!(declared.contains("batch"), "{}: the batch is not dynamic: {declared}", onnx.display());
    let model = model
        .with_input_fact(0, f32::fact(&shape).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| fail(e));
    let input = Tensor::from_shape(&shape, x).expect("tensor");
    let out = model.run(tvec!(input.into())).unwrap_or_else(|e| fail(e));
    let y = out[0].to_plain_array_view::<f32>().expect("f32 output");
    (y.shape().to_vec(), y.iter().copied().collect())
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / x.abs().max(1.0)).fold(0.0, f32::max)
}

/// Exports `file` with `weights` and compares tract with `nnlangc run` on `x`, then on its
/// first two rows; returns the largest difference.
fn compare(file: &Path, weights: &Path, dir: &Path, dims: &[usize], x: &[f32]) -> f32 {
    let onnx = dir.join("model.onnx");
    let o = nnlangc(&["export", "--onnx", s(file), "--weights", s(weights), "--raw", "--output", s(&onnx)]);
    assert_eq!(o.status.code(), Some(0), "{}: {}", file.display(), text(&o.stderr));
    let ours = run(file, weights, dir, dims, x);
    let (shape, theirs) = tract(&onnx, dims, x);
    assert_eq!(shape, ours.shape, "{}: output shapes", file.display());
    let mut worst = largest_difference(&ours.data, &theirs);
    let per_row = dims.iter().product::<usize>();
    let (_, two) = tract(&onnx, dims, &x[..2 * per_row]);
    worst = worst.max(largest_difference(&ours.data[..two.len()], &two));
    worst
}

#[test]
fn every_example_exports_to_onnx_that_tract_runs_as_nnlangc_run() {
    let root = common::root();
    let mut checked = Vec::new();
    for (stem, rel, _) in common::nn_files(&root.join("examples"), &root) {
        let file = root.join(&rel);
        let d = temp_dir(&format!("onnx-{stem}"));
        // A variable length at two thirds of its longest: the ONNX model's steps are dynamic.
        let (dims, table, ids) = model_info(&file, |max| (2 * max / 3).max(1));
        let weights = d.join("w.safetensors");
        random_weights(&table, &weights);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let n: usize = 5 * dims.iter().product::<usize>();
        let x = random_inputs(&mut rng, n, ids);
        let diff = compare(&file, &weights, &d, &dims, &x);
        eprintln!("{stem}: largest difference {diff:.2e}");
        assert!(diff <= 1e-5, "{stem}: tract and nnlangc run differ by {diff}");
        checked.push(stem);
        let _ = std::fs::remove_dir_all(&d);
    }
    assert!(checked.len() >= 10, "{checked:?}");
}

/// Every layer of the language reference, and recurrent layers in every merge and output, at
/// random weights.
#[test]
fn every_layer_and_merge_exports_to_onnx() {
    let d = temp_dir("onnx-layers");
    let models = [
        (
            "image",
            "model EveryImageLayer(width = 8) {
    input image: [28, 28, 1]
    image
      -> conv(filters = width, size = 3, stride = 1, pad = same) -> relu
      -> conv(filters = 2 * width, size = 1) -> maxout(pieces = 2)
      -> maxpool(size = 2)
      -> local(filters = width, size = 3) -> leaky_relu(alpha = 0.1)
      -> avgpool(size = 2, stride = 2)
      -> l2pool(size = 3, stride = 1) -> sigmoid
      -> flatten
      -> dropout(keep = 0.8)
      -> maxout(units = 32, pieces = 3) -> tanh
      -> fc(16) -> identity -> dropout(drop = 0.1) -> softplus
      -> dense(10) -> softmax
}",
            None,
        ),
        (
            "strided",
            "model Strided {
    input image: [11, 9, 2]
    let a = image -> conv(4, size = 3, stride = 2, pad = 1) -> relu
    let b = image -> local(4, size = 3, stride = 2, pad = 1)
    add(a, b) -> maxpool(size = 2, stride = 1) -> dense(3)
}",
            None,
        ),
        (
            "recurrent",
            "model Recurrent {
    input frames: [seq <= 15, 6]
    let a = frames -> dense(8) -> tanh -> bidirectional(rnn(5, output = sequence), merge = add)
    let b = a -> bidirectional(rnn(4, output = sequence), merge = mul) -> maxout(units = 3, pieces = 2)
    let c = b -> bidirectional(rnn(4, output = last), merge = add)
    let d = a -> bidirectional(rnn(3, output = last), merge = mul)
    let e = a -> bidirectional(rnn(3, output = last), merge = concat)
    concat(c, d, e) -> dense(4) -> softmax
}",
            Some(9),
        ),
        (
            "clamped",
            "model Clamped {
    input image: [6, 6, 2]
    image -> conv(filters = 4, size = 3, pad = same) -> hard_tanh -> flatten
      -> dense(16) -> hard_tanh -> dense(3) -> softmax
}",
            None,
        ),
        (
            "smooth",
            "model Smooth {
    input image: [6, 6, 2]
    image -> conv(filters = 4, size = 3, pad = same) -> gelu -> flatten
      -> dense(16) -> hard_tanh -> dense(8) -> gelu(approximate = tanh) -> dense(3) -> softmax
}",
            None,
        ),
        (
            "normalized",
            "model Normalized {
    input image: [6, 6, 2]
    let a = image -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu -> flatten
      -> dense(16) -> batchnorm(eps = 1e-3) -> dense(3)
    let b = image -> flatten -> dense(5) -> batchnorm -> dense(3)
    add(a, b) -> softmax
}",
            None,
        ),
        (
            "floored",
            "model Floored {
    input image: [13, 13, 1]
    image -> conv(filters = 4, size = 3) -> relu -> maxpool(size = 2, round = floor)
      -> avgpool(size = 3, stride = 2, round = floor) -> dense(3) -> softmax
}",
            None,
        ),
        (
            "global_pools",
            "model GlobalPools {
    input image: [7, 5, 2]
    let a = image -> conv(filters = 4, size = 3, pad = same) -> relu -> globalavgpool
    let b = image -> conv(filters = 3, size = 3) -> globalmaxpool
    concat(a, b) -> dense(3) -> softmax
}",
            None,
        ),
        (
            "ceiled",
            "model Ceiled {
    input image: [11, 10, 2]
    image -> conv(filters = 4, size = 3, pad = same) -> relu -> maxpool(size = 2, round = ceil)
      -> avgpool(size = 3, stride = 2, round = ceil) -> dense(3) -> softmax
}",
            None,
        ),
        (
            "separable",
            "model Separable {
    input image: [12, 11, 4]
    image -> conv(filters = 8, size = 3, pad = same, groups = 2, bias = false) -> relu
      -> conv(filters = 8, size = 3, pad = same, groups = 8) -> batchnorm -> relu
      -> conv(filters = 16, size = 3, dilation = 2, pad = 2, groups = 8)
      -> conv(filters = 16, size = 3, stride = 2, dilation = 2, round = floor, groups = 16)
      -> conv(filters = 8, size = 1) -> globalavgpool -> dense(3) -> softmax
}",
            None,
        ),
        (
            "normalized_steps",
            "model NormalizedSteps {
    input frames: [seq <= 8, 3]
    frames -> dense(5) -> batchnorm -> tanh -> rnn(4, output = last) -> dense(2)
}",
            Some(6),
        ),
        (
            "gated",
            "model Gated {
    input frames: [seq = 7, 3]
    frames -> lstm(6) -> gru(5) -> lstm(4, output = last) -> dense(2) -> softmax
}",
            None,
        ),
        (
            "gated_steps",
            "model GatedSteps {
    input frames: [seq <= 8, 3]
    frames -> gru(5) -> bidirectional(lstm(4), merge = concat) -> bidirectional(gru(3, output = last), merge = mul)
      -> dense(2) -> sigmoid
}",
            Some(6),
        ),
        (
            "embedded_steps",
            "model EmbeddedSteps {
    input chars: [seq <= 8] ids < 9
    chars -> embedding(9, 4) -> lstm(5) -> dense(9) -> softmax
}",
            Some(6),
        ),
        (
            "layer_normed",
            "model LayerNormed {
    input x: [seq <= 8, 3]
    x -> dense(6) -> layernorm -> relu -> gru(4) -> rmsnorm(eps = 1e-3) -> dense(2)
}",
            Some(5),
        ),
        (
            "attending",
            "block B(w) {
    input x
    let a = x -> layernorm -> attention(2, causal = true)
    let h = add(x, a)
    add(h, h -> layernorm -> dense(2 * w) -> gelu -> dense(w))
}
model Attending {
    input text: [seq <= 8] ids < 7
    text -> embedding(7, 6) -> positions(8) -> [B(6)] * 2 -> layernorm -> dense(7) -> softmax
}",
            Some(6),
        ),
        (
            "attending_sinusoids",
            "model AttendingSinusoids {
    input x: [seq = 5, 3]
    x -> dense(8) -> positions(5, sinusoidal = true) -> attention(4) -> relu -> dense(2)
}",
            None,
        ),
        (
            "layer_normed_volume",
            "model LayerNormedVolume {
    input x: [5, 5, 2]
    x -> conv(filters = 4, size = 3) -> layernorm -> relu -> flatten -> dense(3) -> softmax
}",
            None,
        ),
        (
            "embedded_grid",
            "model EmbeddedGrid {
    input cells: [4, 5] ids < 6
    cells -> embedding(6, 3) -> conv(filters = 4, size = 3) -> relu -> flatten -> dense(2)
}",
            None,
        ),
        (
            "tagger",
            "model Tagger {
    input frames: [seq = 7, 3]
    frames -> rnn(6) -> bidirectional(rnn(5), merge = concat) -> dense(2) -> sigmoid
}",
            None,
        ),
    ];
    for (stem, src, steps) in models {
        let file = d.join(format!("{stem}.nn"));
        std::fs::write(&file, src).expect("writes the model");
        let (dims, table, ids) = model_info(&file, |max| steps.unwrap_or(max));
        let weights = d.join(format!("{stem}.safetensors"));
        random_weights(&table, &weights);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n: usize = 4 * dims.iter().product::<usize>();
        let x = random_inputs(&mut rng, n, ids);
        let diff = compare(&file, &weights, &d, &dims, &x);
        eprintln!("{stem}: largest difference {diff:.2e}");
        assert!(diff <= 1e-5, "{stem}: tract and nnlangc run differ by {diff}");
    }
}

/// The RNN node says which activation each direction uses (tract reads every RNN as tanh, so
/// these are checked in the file here and by onnxruntime in bench/onnx_check.py).
#[test]
fn rnn_activations_are_written_into_the_node() {
    use tract_onnx::pb::ModelProto;
    let d = temp_dir("onnx-acts");
    let file = d.join("acts.nn");
    std::fs::write(
        &file,
        "model Acts {
    input x: [seq = 4, 3]
    x -> rnn(5, activation = relu) -> bidirectional(rnn(4, activation = leaky_relu(0.2)), merge = add)
      -> rnn(3, activation = sigmoid) -> rnn(2, activation = identity, output = last)
}",
    )
    .expect("writes");
    let (_, table, _) = model_info(&file, |m| m);
    let weights = d.join("w.safetensors");
    random_weights(&table, &weights);
    let onnx = d.join("acts.onnx");
    let o = nnlangc(&["export", "--onnx", s(&file), "--weights", s(&weights), "--raw", "--output", s(&onnx)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let bytes = std::fs::read(&onnx).expect("written");
    let model = <ModelProto as prost::Message>::decode(bytes.as_slice()).expect("a ModelProto");
    assert_eq!(model.opset_import.iter().map(|o| (o.domain.as_str(), o.version)).collect::<Vec<_>>(), [("", 17)]);
    let graph = model.graph.expect("a graph");
    let rnns: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "RNN")
        .map(|n| {
            let attr = |k: &str| n.attribute.iter().find(|a| a.name == k);
            let acts = attr("activations").map(|a| {
                a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join("+")
            });
            let alpha = attr("activation_alpha").map(|a| format!("{:?}", a.floats));
            let dir = attr("direction").map(|a| String::from_utf8_lossy(&a.s).into_owned());
            format!("{} {} {}", dir.unwrap_or_default(), acts.unwrap_or_default(), alpha.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        rnns,
        ["forward Relu ", "bidirectional LeakyRelu+LeakyRelu [0.2, 0.2]", "forward Sigmoid ", "forward Affine [1.0]"]
    );
}

/// A trained model's preprocessing goes inside the file: raw inputs give what `run` gives
/// (MNIST scaled by 1/255, standardized Iris features, standardized sequence steps, a binned
/// regression's values).
#[test]
fn trained_models_carry_their_preprocessing_into_onnx() {
    let root = common::root();
    let d = temp_dir("onnx-trained");
    std::fs::write(
        d.join("pts.csv"),
        (0..200).fold(String::from("a,b,y\n"), |mut c, i| {
            let (a, b) = ((i % 20) as f64 / 2.0, (i % 7) as f64);
            c.push_str(&format!("{a},{b},{}\n", 3.0 * a + 1.0));
            c
        }),
    )
    .expect("data");
    std::fs::write(
        d.join("bins.nn"),
        "model B { input x: [2]\n x -> dense(16) -> relu -> dense(4) -> softmax }\n\
         train B on pts { loss = cross_entropy(bins = 4), optimizer = adam(lr = 0.02), epochs = 5, batch = 20, seed = 1 }\n\
         data pts { train = csv(\"pts.csv\"), standardize = true }\n",
    )
    .expect("model");
    // (file, training flags, the range of the raw inputs, the preprocessing train saved)
    let cases: [(std::path::PathBuf, &[&str], f32, &str); 4] = [
        (root.join("examples/mnist_mlp.nn"), &["--epochs", "1", "--limit", "300"], 255.0, "\"scale\""),
        (root.join("examples/projection_pursuit.nn"), &["--epochs", "3"], 8.0, "\"mean\""),
        (root.join("examples/japanese_vowels.nn"), &["--epochs", "1"], 2.0, "\"mean\""),
        (d.join("bins.nn"), &[], 10.0, "\"bins\""),
    ];
    for (file, flags, range, saved) in cases {
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let run_dir = d.join(&stem);
        let mut args = vec!["train", s(&file), "--quiet", "--out", s(&run_dir)];
        args.extend_from_slice(flags);
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{stem}: {}", text(&o.stderr));
        let pre = std::fs::read_to_string(run_dir.join("preprocess.json")).expect("preprocess.json");
        assert!(pre.contains(saved), "{stem}: {pre}");
        let (dims, _, _) = model_info(&file, |max| max / 2);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 6 * dims.iter().product::<usize>();
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..range)).collect();
        let diff = compare(&file, &run_dir.join("weights.safetensors"), &d, &dims, &x);
        eprintln!("{stem}: largest difference {diff:.2e}");
        assert!(diff <= 1e-5, "{stem}: tract and nnlangc run differ by {diff}");
    }
}

/// A request that cannot be met is a clear error and writes nothing.
#[test]
fn bad_onnx_requests_are_clear_errors() {
    let d = temp_dir("onnx-bad");
    let (_, table, _) = model_info(&common::root().join("examples/logistic_regression.nn"), |m| m);
    let small = d.join("small.safetensors");
    random_weights(&table, &small);
    let out = d.join("out.onnx");
    let cases: [(&[&str], i32, &str); 5] = [
        (&["export", "--onnx", "examples/mnist_mlp.nn", "--output", s(&out)], 2, "--onnx needs --weights"),
        (
            &["export", "--onnx", "examples/mnist_mlp.nn", "--weights", s(&small), "--raw", "--output", s(&out)],
            1,
            "small.safetensors: tensor `dense_0.weight` is missing",
        ),
        (
            &[
                "export",
                "--onnx",
                "examples/logistic_regression.nn",
                "--weights",
                s(&small),
                "--raw",
                "--output",
                s(&d),
            ],
            2,
            "not a regular file",
        ),
        (&["export", "--onnx", "--pytorch", "examples/mnist_mlp.nn"], 2, "cannot be used with"),
        (&["export", "examples/mnist_mlp.nn"], 2, "--onnx"),
    ];
    for (args, code, want) in cases {
        let o = nnlangc(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(want), "{args:?}: {}", text(&o.stderr));
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(&d).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    // Default output: beside the weights.
    let o = nnlangc(&["export", "--onnx", "examples/logistic_regression.nn", "--weights", s(&small), "--raw"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(d.join("model.onnx").is_file());
}

/// `--sequence-lengths`: a second input `lengths` (int32, one per row) that every recurrent
/// node takes as its `sequence_lens` (tract cannot run a graph whose lengths vary;
/// `bench/onnx_check.py` runs ragged batches through onnxruntime against `nnlangc run` on
/// each sequence alone); refused for a model without sequences of variable length.
#[test]
fn sequence_lengths_are_an_input_of_every_recurrent_node() {
    let d = temp_dir("onnx-lengths");
    let file = d.join("m.nn");
    std::fs::write(
        &file,
        "model M {\n    input chars: [seq <= 8] ids < 9\n    chars -> embedding(9, 4) -> lstm(5) -> bidirectional(gru(3, output = last)) -> dense(2)\n}\n",
    )
    .expect("writes");
    let (_, table, _) = model_info(&file, |m| m);
    let weights = d.join("w.safetensors");
    random_weights(&table, &weights);
    let onnx = d.join("m.onnx");
    let export = |file: &Path| {
        nnlangc(&[
            "export",
            "--onnx",
            "--sequence-lengths",
            s(file),
            "--weights",
            s(&weights),
            "--raw",
            "--output",
            s(&onnx),
        ])
    };
    let o = export(&file);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let proto = tract_onnx::onnx().proto_model_for_path(&onnx).expect("an ONNX file");
    let graph = proto.graph.expect("a graph");
    let inputs: Vec<(&str, i32)> = graph
        .input
        .iter()
        .map(|i| {
            let t = i.r#type.as_ref().and_then(|t| t.value.as_ref());
            let elem = match t {
                Some(tract_onnx::pb::type_proto::Value::TensorType(t)) => t.elem_type,
                _ => -1,
            };
            (i.name.as_str(), elem)
        })
        .collect();
    // float ids, int32 lengths
    assert_eq!(inputs, vec![("chars", 1), ("lengths", 6)]);
    let recurrent: Vec<_> = graph.node.iter().filter(|n| n.op_type == "LSTM" || n.op_type == "GRU").collect();
    assert_eq!(recurrent.len(), 2);
    for n in recurrent {
        assert_eq!(n.input.get(4).map(String::as_str), Some("lengths"), "{}: {:?}", n.op_type, n.input);
    }
    // A model whose sequences all have one length has no lengths to take.
    std::fs::write(&file, "model M {\n    input x: [seq = 8, 3]\n    x -> lstm(5, output = last) -> dense(2)\n}\n")
        .expect("writes");
    let (_, table, _) = model_info(&file, |m| m);
    random_weights(&table, &weights);
    let o = export(&file);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("sequence lengths are an input of a model that reads sequences of variable length"),
        "{}",
        text(&o.stderr)
    );
}
