//! `nnlangc export --onnx` checked by an independent ONNX implementation (tract): for every
//! runnable example, the exported file run by tract agrees with `nnlangc run` on the same
//! random inputs within 1e-5, at two batch sizes (the batch is dynamic) and, for a model that
//! reads sequences of any length, at a length shorter than the longest.

mod common;

use common::{nnlangc, s, temp_dir, text};
use nnlang::ir::Dim;
use nnlang_runtime::plan::{PBuf, Param};
use rand::{RngExt, SeedableRng};
use std::path::Path;
use tract_onnx::prelude::*;

/// The model's input dimensions (a variable length at `steps`) and a parameter table.
fn model_info(file: &Path, steps: impl Fn(usize) -> usize) -> (Vec<usize>, Vec<Param>) {
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
    let mut table = Vec::new();
    let mut offset = 0;
    for p in model.shapes.params.iter().flatten() {
        let len = p.count() as usize;
        let fan_in = if p.shape.len() > 1 { len / p.shape[0] } else { 0 };
        table.push(Param {
            name: p.name.clone(),
            shape: p.shape.clone(),
            buf: PBuf { offset, len },
            fan_in,
            is_bias: fan_in == 0,
        });
        offset += len;
    }
    (dims, table)
}

/// Random weights of PyTorch's default scale (uniform ±1/√fan_in; biases ±0.1).
fn random_weights(table: &[Param], path: &Path) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let len = table.iter().map(|p| p.buf.offset + p.buf.len).max().unwrap_or(0);
    let mut flat = vec![0f32; len];
    for p in table {
        let a = if p.fan_in > 0 { 1.0 / (p.fan_in as f32).sqrt() } else { 0.1 };
        for v in &mut flat[p.buf.range()] {
            *v = rng.random_range(-a..a);
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
    let o = nnlangc(&["run", s(file), "--weights", s(weights), "--input", s(&input), "--output", s(&out)]);
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
    let o = nnlangc(&["export", "--onnx", s(file), "--weights", s(weights), "--output", s(&onnx)]);
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
        let (dims, table) = model_info(&file, |max| (2 * max / 3).max(1));
        let weights = d.join("w.safetensors");
        random_weights(&table, &weights);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let n: usize = 5 * dims.iter().product::<usize>();
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let diff = compare(&file, &weights, &d, &dims, &x);
        eprintln!("{stem}: largest difference {diff:.2e}");
        assert!(diff <= 1e-5, "{stem}: tract and nnlangc run differ by {diff}");
        checked.push(stem);
        let _ = std::fs::remove_dir_all(&d);
    }
    assert!(checked.len() >= 10, "{checked:?}");
}
