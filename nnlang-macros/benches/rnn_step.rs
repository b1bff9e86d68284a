//! The Elman RNN of PERFORMANCE.md (tanh, hidden 128, input 32, 50 steps, the last state →
//! fc10; softmax cross-entropy; SGD with momentum) — generated code and interpreter, at
//! batch 32 on 1 and 2 threads. `bench/pytorch_rnn.py` runs the same model in PyTorch;
//! `bench/rnn.sh` runs both.
//!
//!     cargo bench -p nnlang-macros --bench rnn_step

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::train::{self, Init, OptimizerKind, Stepper};
use rand::{RngExt, SeedableRng};
mod common;

use common::rate;

const SRC: &str = "
model Elman {
    input x: [50, 32]
    x -> rnn(128, activation = tanh, output = last) -> dense(10) -> softmax
}
train Elman on d { optimizer = sgd(lr = 0.01, momentum = 0.9), batch = 32 }
data d { train = idx(\"a\", \"b\") }
";

nnlang_macros::nn! {
    model Elman {
        input x: [50, 32]
        x -> rnn(128, activation = tanh, output = last) -> dense(10) -> softmax
    }
    train Elman on d { optimizer = sgd(lr = 0.01, momentum = 0.9), batch = 32 }
    data d { train = idx("a", "b") }
}

fn main() {
    let batch = 32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..batch * 50 * 32).map(|_| rng.random::<f32>()).collect();
    let y: Vec<f32> = (0..batch).map(|_| rng.random_range(0..10) as f32).collect();
    let c = compile(SRC, &Options::default()).expect("compiles");
    let plan = build(&c.models[0], Mode::Training(Loss::CrossEntropy), batch).expect("plan");
    for threads in [1, 2] {
        let mut net = Elman::new(7);
        let mut opt = net.optimizer();
        let generated = if threads == 1 {
            rate(batch, 5, 40, || {
                net.train_step(&x, &y, batch, &mut opt).expect("step");
            })
        } else {
            let mut par = net.parallel(threads, 7).expect("pool");
            opt.pool = Some(par.pool());
            rate(batch, 5, 40, || {
                net.train_step_parallel(&mut par, &x, &y, batch, &mut opt).expect("step");
            })
        };
        println!("generated threads={threads} batch={batch} samples/s={generated:.0}");
        let o = train::Options {
            optimizer: OptimizerKind::Sgd { lr: 0.01, momentum: 0.9, nesterov: false },
            batch,
            seed: 7,
            ..nnlang::spec::TrainRecipe::default().options(1)
        };
        let mut params = vec![0f32; plan.params_len];
        train::initialize(&plan, &mut params, Init::Xavier, 7);
        let mut s = Stepper::new(&plan, params, &o, threads);
        let interp = rate(batch, 5, 40, || {
            s.step(&x, &y, batch).expect("step");
        });
        println!("interpreter threads={threads} batch={batch} samples/s={interp:.0}");
    }
}
