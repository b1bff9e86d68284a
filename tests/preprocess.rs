//! What `train` did to the data travels with the weights (`preprocess.json`): `run` on raw
//! data gives what `eval` computed — for MNIST's scaled pixels, a standardized CSV
//! regression, and a binned regression, whose outputs are values.

mod common;

use common::{nnlangc, s, temp_dir, text};

fn number_after(t: &str, key: &str) -> f64 {
    t.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l[key.len()..].trim().trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` in {t}"))
}

#[test]
fn run_on_raw_pixels_agrees_with_eval() {
    let d = temp_dir("pre-mnist");
    let run = d.join("run");
    let o =
        nnlangc(&["train", "examples/mnist_mlp.nn", "--epochs", "1", "--limit", "2000", "--quiet", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pre = std::fs::read_to_string(run.join("preprocess.json")).expect("preprocess.json");
    assert!(pre.contains("\"scale\": 0.003921568"), "{pre}");
    let w = run.join("weights.safetensors");
    let o = nnlangc(&["eval", "examples/mnist_mlp.nn", "--weights", s(&w), "--limit", "500"]);
    let acc = number_after(&text(&o.stdout), "accuracy");
    // The raw test images, 0…255, as a user has them.
    let data = common::root().join("examples/data/mnist");
    let x = nnlang_runtime::data::idx::read_rows(&data.join("t10k-images-idx3-ubyte.gz"), Some(500)).expect("images");
    let y = nnlang_runtime::data::idx::read_rows(&data.join("t10k-labels-idx1-ubyte.gz"), Some(500)).expect("labels");
    let raw: Vec<f32> = x.data.iter().map(|&b| f32::from(b)).collect();
    let input = d.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[500, 784], &raw).expect("writes");
    let out = d.join("y.npy");
    let o = nnlangc(&["run", "examples/mnist_mlp.nn", "--weights", s(&w), "--input", s(&input), "--output", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("first classes: ["), "{}", text(&o.stdout));
    let p = nnlang_runtime::data::npy::read(&out).expect("reads");
    let pred = nnlang_runtime::interp::argmax_rows(10, &p.data);
    let right = pred.iter().zip(&y.data).filter(|(p, l)| **p == usize::from(**l)).count();
    assert!((100.0 * right as f64 / 500.0 - acc).abs() < 1e-9, "run {right}/500, eval {acc}%");
    // A preprocessing file that does not fit the model (or is not one) is refused, named.
    for (bad, want) in [
        (
            "{\"format\": \"nnlang-preprocess\", \"mean\": [1, 2], \"std\": [1, 1]}",
            "statistics of 2 features, but the model reads 784",
        ),
        ("{\"format\": \"nnlang-preprocess\", \"mean\": [1], \"std\": [0]}", "`std` positive"),
        ("not json", "not a preprocessing file"),
    ] {
        std::fs::write(run.join("preprocess.json"), bad).expect("writes");
        let o =
            nnlangc(&["run", "examples/mnist_mlp.nn", "--weights", s(&w), "--input", s(&input), "--output", s(&out)]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(text(&o.stderr).contains("preprocess.json: ") && text(&o.stderr).contains(want), "{}", text(&o.stderr));
    }
}

#[test]
fn a_standardized_regression_runs_on_raw_features() {
    let d = temp_dir("pre-iris");
    let run = d.join("run");
    let o = nnlangc(&["train", "examples/projection_pursuit.nn", "--epochs", "5", "--quiet", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let w = run.join("weights.safetensors");
    let o = nnlangc(&["eval", "examples/projection_pursuit.nn", "--weights", s(&w)]);
    let loss = number_after(&text(&o.stdout), "loss");
    let t =
        nnlang_runtime::data::csv::read_rows(&common::root().join("examples/data/sklearn/iris.csv.gz"), Some(4), None)
            .expect("iris");
    let input = d.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[t.rows(), t.cols], &t.x).expect("writes");
    let out = d.join("y.npy");
    let o = nnlangc(&[
        "run",
        "examples/projection_pursuit.nn",
        "--weights",
        s(&w),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("first values: ["), "{}", text(&o.stdout));
    let p = nnlang_runtime::data::npy::read(&out).expect("reads");
    let mse: f64 = p.data.iter().zip(&t.y).map(|(a, b)| 0.5 * f64::from(a - b).powi(2)).sum::<f64>() / t.rows() as f64;
    assert!((mse - loss).abs() <= 1e-4 * loss.max(1e-3), "run {mse}, eval {loss}");
}

#[test]
fn a_binned_regression_predicts_values() {
    let d = temp_dir("pre-bins");
    let mut csv = String::from("a,b,y\n");
    for i in 0..200 {
        let (a, b) = ((i % 20) as f64 / 2.0, (i % 7) as f64);
        csv.push_str(&format!("{a},{b},{}\n", 3.0 * a + 1.0));
    }
    std::fs::write(d.join("pts.csv"), csv).expect("data");
    let file = d.join("b.nn");
    std::fs::write(
        &file,
        "model B { input x: [2]\n x -> dense(16) -> relu -> dense(4) -> softmax }\n\
         train B on pts { loss = cross_entropy(bins = 4), optimizer = adam(lr = 0.02), epochs = 30, batch = 20, seed = 1 }\n\
         data pts { train = csv(\"pts.csv\"), standardize = true }\n",
    )
    .expect("model");
    let run = d.join("run");
    let o = nnlangc(&["train", s(&file), "--quiet", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pre = std::fs::read_to_string(run.join("preprocess.json")).expect("preprocess.json");
    assert!(pre.contains("\"bins\"") && pre.contains("\"n\": 4"), "{pre}");
    let x: Vec<f32> = vec![0.0, 0.0, 9.5, 6.0];
    let input = d.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[2, 2], &x).expect("writes");
    let out = d.join("y.npy");
    let o = nnlangc(&[
        "run",
        s(&file),
        "--weights",
        s(&run.join("weights.safetensors")),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let p = nnlang_runtime::data::npy::read(&out).expect("reads");
    assert_eq!(p.shape, vec![2, 1]);
    // Targets 1 … 29.5 in 4 bins of 7.125: centres 4.5625, …, 25.9375.
    let (lo, width) = (1.0f32, (29.5f32 - 1.0) / 4.0);
    assert!((p.data[0] - (lo + 0.5 * width)).abs() < 1e-4, "{:?}", p.data);
    assert!((p.data[1] - (lo + 3.5 * width)).abs() < 1e-4, "{:?}", p.data);
}
