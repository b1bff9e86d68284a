//! Trains the MNIST MLP of `examples/mnist_mlp.nn` through code generated at build time by
//! `nn!` — no interpreter, no parser, no compiler in this binary — with the model's own
//! recipe (`fit`), and reports its test accuracy.
//!
//!     cargo run --release -p nnlang-example-mnist

use nnlang_runtime::data::idx;
use nnlang_runtime::model::Model;
use nnlang_runtime::ndarray::Array2;
use std::path::Path;
use std::time::Instant;

nnlang_macros::nn!(file = "../mnist_mlp.nn", model = "Mlp");

/// Raw pixels (0–255) and labels as a column: `fit` and `predict` scale them as the recipe
/// says (`scale = 1 / 255`), as `nnlangc train` and `run` do.
fn load(dir: &Path, images: &str, labels: &str) -> Result<(Array2<f32>, Array2<f32>), String> {
    let x = idx::read(&dir.join(images)).map_err(|e| e.to_string())?;
    let y = idx::read(&dir.join(labels)).map_err(|e| e.to_string())?;
    let rows = y.data.len();
    let pixels = x.data.iter().map(|&b| f32::from(b)).collect();
    let x =
        Array2::from_shape_vec((rows, Mlp::INPUTS[0]), pixels).map_err(|_| format!("{images} does not hold MNIST"))?;
    let y =
        Array2::from_shape_vec((rows, 1), y.data.iter().map(|&b| f32::from(b)).collect()).map_err(|e| e.to_string())?;
    Ok((x, y))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let (x, y) = load(&dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")?;
    let (tx, ty) = load(&dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")?;
    let mut net = Mlp::new(Mlp::SEED);
    let start = Instant::now();
    net.fit(x.view(), y.view(), |e| {
        println!(
            "epoch {:>2}/{}  train loss {:.4}  val loss {:.4}  val acc {:.2}%  {:.0} samples/s",
            e.epoch,
            Mlp::EPOCHS,
            e.train_loss,
            e.val_loss.unwrap_or(f64::NAN),
            100.0 * e.val_accuracy.unwrap_or(0.0),
            e.samples_per_sec
        );
        true
    })
    .map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    // The test set's predicted classes, from an array of all of it.
    let probs = net.predict(tx.view()).map_err(|e| e.to_string())?;
    let right = probs
        .rows()
        .into_iter()
        .zip(ty.column(0))
        .filter(|(p, &l)| p.iter().enumerate().fold(0, |b, (i, v)| if *v > p[b] { i } else { b }) == l as usize)
        .count();
    println!("test accuracy {:.2}% after {seconds:.1} s of training", 100.0 * right as f64 / ty.nrows() as f64);
    net.save("mnist_mlp.safetensors").map_err(|e| e.to_string())?;
    println!("wrote mnist_mlp.safetensors (and preprocess.json beside it)");
    Ok(())
}
