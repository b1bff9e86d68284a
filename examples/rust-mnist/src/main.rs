//! Trains the MNIST MLP of `examples/mnist_mlp.nn` through code generated at build time by
//! `nn!` — no interpreter, no parser, no compiler in this binary — and reports the test
//! accuracy after each epoch.
//!
//!     cargo run --release -p nnlang-example-mnist [EPOCHS]

use nnlang_runtime::data::idx;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::Path;
use std::time::Instant;

nnlang_macros::nn!(file = "../mnist_mlp.nn", model = "Mlp");

/// Images scaled to [0, 1] (the recipe's `scale = 1 / 255`) and labels.
fn load(dir: &Path, images: &str, labels: &str) -> Result<(Vec<f32>, Vec<f32>), String> {
    let x = idx::read(&dir.join(images)).map_err(|e| e.to_string())?;
    let y = idx::read(&dir.join(labels)).map_err(|e| e.to_string())?;
    if x.dims[0] != y.dims[0] || x.dims[1..].iter().product::<usize>() != Mlp::INPUTS[0] {
        return Err(format!("{images} and {labels} do not hold MNIST"));
    }
    Ok((x.data.iter().map(|&b| f32::from(b) / 255.0).collect(), y.data.iter().map(|&b| f32::from(b)).collect()))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let epochs: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|_| format!("`{a}` is not a number of epochs"))?,
        None => 10,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let (x, y) = load(&dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")?;
    let (tx, ty) = load(&dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")?;
    let cols = Mlp::INPUTS[0];
    let rows = y.len();

    let mut net = Mlp::new(7);
    let mut optimizer = net.optimizer();
    let mut rng = rand_chacha_rng(7);
    let mut order: Vec<usize> = (0..rows).collect();
    let (mut xb, mut yb) = (vec![0f32; Mlp::MAX_BATCH * cols], vec![0f32; Mlp::MAX_BATCH]);
    for epoch in 0..epochs {
        optimizer.lr = Mlp::learning_rate(epoch);
        order.shuffle(&mut rng);
        let start = Instant::now();
        let mut total = 0.0;
        for batch in order.chunks(Mlp::MAX_BATCH) {
            for (r, &i) in batch.iter().enumerate() {
                xb[r * cols..(r + 1) * cols].copy_from_slice(&x[i * cols..(i + 1) * cols]);
                yb[r] = y[i];
            }
            total +=
                net.train_step(&xb, &yb, batch.len(), &mut optimizer).map_err(|e| e.to_string())? * batch.len() as f64;
        }
        let seconds = start.elapsed().as_secs_f64();
        let test = net.evaluate(&tx, &ty);
        println!(
            "epoch {:>2}/{epochs}  train loss {:.4}  test loss {:.4}  test acc {:.2}%  {:.0} samples/s",
            epoch + 1,
            total / rows as f64,
            test.loss,
            100.0 * test.accuracy.unwrap_or(0.0),
            rows as f64 / seconds
        );
    }
    net.save("mnist_mlp.safetensors").map_err(|e| e.to_string())?;
    println!("wrote mnist_mlp.safetensors");
    Ok(())
}

fn rand_chacha_rng(seed: u64) -> nnlang_runtime::rand_chacha::ChaCha8Rng {
    nnlang_runtime::rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}
