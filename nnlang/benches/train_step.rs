//! Training-step throughput of the MNIST MLP (examples/mnist_mlp.nn: 784-256-128-10, ReLU,
//! softmax cross-entropy, SGD with Nesterov momentum 0.9, L2 1e-4), at batch 64 and 256, on
//! 1 and 2 threads: forward, loss, backward and update, on random data, float32.
//! `bench/pytorch_mlp.py` runs the same model in PyTorch; `bench/mlp.sh` runs both.
//!
//! Run with `cargo bench -p nnlang --bench train_step [-- --threads 1 2 --batch 64 256]`.
//! Prints one line per (threads, batch): the median samples/s of 5 runs of 300 steps.

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::train::{self, Init, OptimizerKind, Stepper};
use rand::{RngExt, SeedableRng};
use std::time::Instant;

fn list(args: &[String], flag: &str, default: &[usize]) -> Vec<usize> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1..].iter().take_while(|a| !a.starts_with("--")).filter_map(|a| a.parse().ok()).collect(),
        None => default.to_vec(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = list(&args, "--threads", &[1, 2]);
    let batches = list(&args, "--batch", &[64, 256]);
    let src = include_str!("../../examples/mnist_mlp.nn");
    let compiled = compile(src, &Options::default()).expect("compiles");
    let model = &compiled.models[0];
    println!("# nnlang {} (interpreter)", env!("CARGO_PKG_VERSION"));
    for &t in &threads {
        for &batch in &batches {
            let plan = build(model, Mode::Training(Loss::CROSS_ENTROPY), batch).expect("plan");
            let opts = train::Options {
                optimizer: OptimizerKind::Sgd { lr: 0.05, momentum: 0.9, nesterov: true },
                l2: 1e-4,
                batch,
                seed: 7,
                ..nnlang::spec::TrainRecipe::default().options(1)
            };
            let mut params = vec![0f32; plan.params_len];
            train::initialize(&plan, &mut params, Init::He, 7);
            let mut stepper = Stepper::new(&plan, params, &opts, t);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let x: Vec<f32> = (0..batch * 784).map(|_| rng.random::<f32>()).collect();
            let y: Vec<f32> = (0..batch).map(|_| rng.random_range(0..10) as f32).collect();
            for _ in 0..50 {
                stepper.step(&x, &y, batch).expect("step");
            }
            let steps = 300;
            let mut rates = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                for _ in 0..steps {
                    stepper.step(&x, &y, batch).expect("step");
                }
                rates.push((batch * steps) as f64 / start.elapsed().as_secs_f64());
            }
            rates.sort_by(f64::total_cmp);
            println!("nnlang threads={t} batch={batch} samples/s={:.0}", rates[rates.len() / 2]);
        }
    }
    println!("arena: {} floats planned, {} if no buffer were shared", plan_sizes(model).0, plan_sizes(model).1);
}

fn plan_sizes(model: &nnlang::Model) -> (usize, usize) {
    let p = build(model, Mode::Training(Loss::CROSS_ENTROPY), 64).expect("plan");
    (p.arena_len, p.naive_len)
}
