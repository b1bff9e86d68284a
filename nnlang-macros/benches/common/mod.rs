//! What the step benchmarks share: the same random batch, samples per second of a step as
//! the median of five timed runs after a warm-up, and the two sides (generated code, plan
//! interpreter) timed the same way.

use std::time::Instant;

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::train::{self, Stepper};
use rand::{RngExt, SeedableRng};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Timed runs per figure: `NNLANG_BENCH_RUNS` (default 5; `bench/side_by_side.sh` asks
/// for 1 per invocation and interleaves invocations with PyTorch's).
pub fn runs() -> usize {
    std::env::var("NNLANG_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(5)
}

/// Samples per second of `step` (which trains on `batch` rows): `warmup` untimed steps, then
/// the median of [`runs`] runs of `steps` steps.
pub fn rate(batch: usize, warmup: usize, steps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
    }
    median(
        (0..runs())
            .map(|_| {
                let t = Instant::now();
                for _ in 0..steps {
                    step();
                }
                (batch * steps) as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Random inputs (`batch` rows of `cols`) and class labels (0..10), the same for every run.
pub fn data(batch: usize, cols: usize) -> (nnlang_runtime::aligned_vec::AVec<f32>, Vec<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    (
        nnlang_runtime::aligned_vec::AVec::from_iter(64, (0..batch * cols).map(|_| rng.random::<f32>())),
        (0..batch).map(|_| rng.random_range(0..10) as f32).collect(),
    )
}

/// Samples per second of the plan interpreter's training step for the first model of `src`,
/// trained as its own `train` block says (optimizer, init, regularization), seed 7; its threads
/// share the step as `nnlangc train --split` does by default, or as the environment's
/// `NNLANG_SPLIT` (`batch`, `products`) says.
pub fn interpreted(src: &str, batch: usize, threads: usize, warmup: usize, steps: usize) -> f64 {
    let c = compile(src, &Options::default()).expect("compiles");
    let recipe = c.train_recipe(None).expect("a train block");
    let plan = build(&c.models[0], Mode::Training(Loss::CROSS_ENTROPY), batch).expect("plan");
    let opts = train::Options { batch, seed: 7, split: split(), ..recipe.options(threads) };
    let mut params = vec![0f32; plan.params_len];
    train::initialize(&plan, &mut params, opts.init, 7);
    let mut s = Stepper::new(&plan, params, &opts, threads);
    let (x, y) = data(batch, plan.inputs[0].cols);
    rate(batch, warmup, steps, || {
        s.step(&x, &y, batch).expect("step");
    })
}

/// How threads share a step: as the environment's `NNLANG_SPLIT` (`batch`, `products`) says,
/// else as `nnlangc train --split auto` would.
pub fn split() -> train::Split {
    match std::env::var("NNLANG_SPLIT").as_deref() {
        Ok("batch") => train::Split::Batch,
        Ok("products") => train::Split::Products,
        _ => train::Split::Auto,
    }
}

/// Whether generated code's threads split products ([`split`]; `auto`: what the type's
/// `SPLITS_PRODUCTS` says).
pub fn split_products(auto: bool) -> bool {
    match split() {
        train::Split::Batch => false,
        train::Split::Products => true,
        train::Split::Auto => auto,
    }
}

/// Samples per second of the training step of the `nn!`-generated type `$ty` (seed 7) on
/// `$threads` threads (above 1: splitting products where `--split auto` would, or as
/// `NNLANG_SPLIT` says; else data-parallel), timed like [`interpreted`].
#[macro_export]
macro_rules! generated {
    ($ty:ident, $batch:expr, $cols:expr, $threads:expr, $warmup:expr, $steps:expr) => {{
        use nnlang_runtime::model::Model as _;
        let (x, y) = common::data($batch, $cols);
        let mut net = $ty::new(7);
        let mut opt = net.optimizer();
        if $threads > 1 && common::split_products($ty::SPLITS_PRODUCTS) {
            net.split_products($threads, &mut opt).expect("threads");
            common::rate($batch, $warmup, $steps, || {
                net.train_step(&x, &y, $batch, &mut opt).expect("step");
            })
        } else if $threads == 1 {
            common::rate($batch, $warmup, $steps, || {
                net.train_step(&x, &y, $batch, &mut opt).expect("step");
            })
        } else {
            let mut par = net.parallel($threads, 7).expect("pool");
            opt.team = Some(par.team());
            common::rate($batch, $warmup, $steps, || {
                net.train_step_parallel(&mut par, &x, &y, $batch, &mut opt).expect("step");
            })
        }
    }};
}
