//! Issue 26's transformer training step: character ids (65) → embedding(65, 128) + learned
//! positions (128) → 4 pre-norm blocks (x + attention(layernorm(x)), causal, 4 heads;
//! x + mlp(layernorm(x)), 128 → 512 → GELU → 128) → layernorm → dense(65) at every step,
//! cross-entropy at every step, AdamW; 128 steps, batch 32, no dropout — generated code and
//! interpreter, on 1 and 2 threads. `bench/pytorch_transformer.py` runs the same model in
//! PyTorch; `bench/transformer.sh` runs both.
//!
//!     cargo bench -p nnlang-macros --bench transformer_step

// Its own data (token ids) and loops: not every helper of `common` is used.
#[allow(dead_code)]
#[macro_use]
mod common;

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::train::{self, Stepper};
use rand::{RngExt, SeedableRng};

const SRC: &str = "
block Block(width, heads) {
    input x
    let h = add(x, x -> layernorm -> attention(heads, causal = true))
    add(h, h -> layernorm -> dense(4 * width) -> gelu -> dense(width))
}
model Transformer {
    input text: [seq = 128] ids < 65
    text -> embedding(65, 128) -> positions(128) -> [Block(128, 4)] * 4 -> layernorm -> dense(65) -> softmax
}
train Transformer on d { optimizer = adamw(lr = 1e-3, weight_decay = 0.01), batch = 32 }
data d { train = idx(\"a\", \"b\") }
";

nnlang_macros::nn! {
    block Block(width, heads) {
        input x
        let h = add(x, x -> layernorm -> attention(heads, causal = true))
        add(h, h -> layernorm -> dense(4 * width) -> gelu -> dense(width))
    }
    model Transformer {
        input text: [seq = 128] ids < 65
        text -> embedding(65, 128) -> positions(128) -> [Block(128, 4)] * 4 -> layernorm -> dense(65) -> softmax
    }
    train Transformer on d { optimizer = adamw(lr = 1e-3, weight_decay = 0.01), batch = 32 }
    data d { train = idx("a", "b") }
}

/// Random ids and a label at every step, the same for every run.
fn ids(batch: usize) -> (nnlang_runtime::aligned_vec::AVec<f32>, Vec<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    (
        nnlang_runtime::aligned_vec::AVec::from_iter(64, (0..batch * 128).map(|_| rng.random_range(0..65) as f32)),
        (0..batch * 128).map(|_| rng.random_range(0..65) as f32).collect(),
    )
}

fn interpreted(batch: usize, threads: usize) -> f64 {
    let c = compile(SRC, &Options::default()).expect("compiles");
    let recipe = c.train_recipe(None).expect("a train block");
    let plan = build(&c.models[0], Mode::Training(Loss::CROSS_ENTROPY), batch).expect("plan");
    let opts = train::Options { batch, seed: 7, split: common::split(), ..recipe.options(threads) };
    let mut params = vec![0f32; plan.params_len];
    train::initialize(&plan, &mut params, opts.init, 7);
    let mut s = Stepper::new(&plan, params, &opts, threads);
    let (x, y) = ids(batch);
    common::rate(batch, 2, 5, || {
        s.step(&x, &y, batch).expect("step");
    })
}

fn generated(batch: usize, threads: usize) -> f64 {
    use nnlang_runtime::model::Model as _;
    let (x, y) = ids(batch);
    let mut net = Transformer::new(7);
    let mut opt = net.optimizer();
    if threads == 1 {
        common::rate(batch, 2, 5, || {
            net.train_step(&x, &y, batch, &mut opt).expect("step");
        })
    } else {
        let mut par = net.parallel(threads, 7).expect("pool");
        opt.team = Some(par.team());
        common::rate(batch, 2, 5, || {
            net.train_step_parallel(&mut par, &x, &y, batch, &mut opt).expect("step");
        })
    }
}

fn main() {
    let batch = 32;
    for threads in [1, 2] {
        println!("generated threads={threads} batch={batch} samples/s={:.1}", generated(batch, threads));
        println!("interpreter threads={threads} batch={batch} samples/s={:.1}", interpreted(batch, threads));
    }
}
