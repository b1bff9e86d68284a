//! The Elman RNN of PERFORMANCE.md (tanh, hidden 128, input 32, 50 steps, the last state →
//! fc10; softmax cross-entropy; SGD with momentum) — generated code and interpreter, at
//! batch 32 on 1 and 2 threads. `bench/pytorch_rnn.py` runs the same model in PyTorch;
//! `bench/rnn.sh` runs both.
//!
//!     cargo bench -p nnlang-macros --bench rnn_step

#[macro_use]
mod common;

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
    for threads in [1, 2] {
        let g = generated!(Elman, batch, 50 * 32, threads, 5, 40);
        println!("generated threads={threads} batch={batch} samples/s={g:.0}");
        let i = common::interpreted(SRC, batch, threads, 5, 40);
        println!("interpreter threads={threads} batch={batch} samples/s={i:.0}");
    }
}
