//! The small MNIST ConvNet of PERFORMANCE.md (conv3×3×16 p1 → relu → maxpool2 →
//! conv3×3×32 p1 → relu → maxpool2 → fc128 → relu → fc10; softmax cross-entropy; SGD with
//! Nesterov momentum) — generated code and interpreter, at batch 64 on 1 and 2 threads.
//! `bench/pytorch_cnn.py` runs the same model in PyTorch; `bench/cnn.sh` runs both.
//!
//!     cargo bench -p nnlang-macros --bench cnn_step

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::train::{self, Init, OptimizerKind, Stepper};
use rand::{RngExt, SeedableRng};
mod common;

use common::rate;

const SRC: &str = "
model SmallCnn {
    input image: [28, 28, 1]
    image -> conv(filters = 16, size = 3, pad = 1) -> relu -> maxpool(size = 2)
          -> conv(filters = 32, size = 3, pad = 1) -> relu -> maxpool(size = 2)
          -> dense(128) -> relu -> dense(10) -> softmax
}
train SmallCnn on d { optimizer = sgd(lr = 0.05, momentum = 0.9, nesterov = true), init = he, batch = 64 }
data d { train = idx(\"a\", \"b\") }
";

nnlang_macros::nn! {
    model SmallCnn {
        input image: [28, 28, 1]
        image -> conv(filters = 16, size = 3, pad = 1) -> relu -> maxpool(size = 2)
              -> conv(filters = 32, size = 3, pad = 1) -> relu -> maxpool(size = 2)
              -> dense(128) -> relu -> dense(10) -> softmax
    }
    train SmallCnn on d { optimizer = sgd(lr = 0.05, momentum = 0.9, nesterov = true), init = he, batch = 64 }
    data d { train = idx("a", "b") }
}

fn main() {
    let batch = 64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..batch * 784).map(|_| rng.random::<f32>()).collect();
    let y: Vec<f32> = (0..batch).map(|_| rng.random_range(0..10) as f32).collect();
    let c = compile(SRC, &Options::default()).expect("compiles");
    let plan = build(&c.models[0], Mode::Training(Loss::CrossEntropy), batch).expect("plan");
    for threads in [1, 2] {
        let mut net = SmallCnn::new(7);
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
            optimizer: OptimizerKind::Sgd { lr: 0.05, momentum: 0.9, nesterov: true },
            batch,
            seed: 7,
            ..nnlang::spec::TrainRecipe::default().options(1)
        };
        let mut params = vec![0f32; plan.params_len];
        train::initialize(&plan, &mut params, Init::He, 7);
        let mut s = Stepper::new(&plan, params, &o, threads);
        let interp = rate(batch, 5, 40, || {
            s.step(&x, &y, batch).expect("step");
        });
        println!("interpreter threads={threads} batch={batch} samples/s={interp:.0}");
    }
}
