//! The gated recurrences' training step (issue 25's sizes: hidden 256, input 64, 50 steps, the
//! last state → fc10; softmax cross-entropy; SGD with momentum) — generated code and
//! interpreter, at batch 32 on 1 and 2 threads. `bench/pytorch_rnn.py --cell lstm|gru` runs
//! the same model in PyTorch; `bench/gated.sh` runs both.
//!
//!     cargo bench -p nnlang-macros --bench gated_step -- --cell lstm

#[macro_use]
mod common;

const LSTM: &str = "
model Lstm {
    input x: [50, 64]
    x -> lstm(256, output = last) -> dense(10) -> softmax
}
train Lstm on d { optimizer = sgd(lr = 0.01, momentum = 0.9), batch = 32 }
data d { train = idx(\"a\", \"b\") }
";

const GRU: &str = "
model Gru {
    input x: [50, 64]
    x -> gru(256, output = last) -> dense(10) -> softmax
}
train Gru on d { optimizer = sgd(lr = 0.01, momentum = 0.9), batch = 32 }
data d { train = idx(\"a\", \"b\") }
";

nnlang_macros::nn! {
    model Lstm {
        input x: [50, 64]
        x -> lstm(256, output = last) -> dense(10) -> softmax
    }
    train Lstm on d { optimizer = sgd(lr = 0.01, momentum = 0.9), batch = 32 }
    data d { train = idx("a", "b") }
}

nnlang_macros::nn! {
    model Gru {
        input x: [50, 64]
        x -> gru(256, output = last) -> dense(10) -> softmax
    }
    train Gru on d { optimizer = sgd(lr = 0.01, momentum = 0.9), batch = 32 }
    data d { train = idx("a", "b") }
}

fn main() {
    // `--cell lstm|gru` (both when absent); other arguments (the side-by-side script's) are
    // PyTorch's.
    let args: Vec<String> = std::env::args().collect();
    let cell = args.iter().position(|a| a == "--cell").and_then(|i| args.get(i + 1)).map(String::as_str);
    let batch = 32;
    for threads in [1, 2] {
        if cell != Some("gru") {
            let g = generated!(Lstm, batch, 50 * 64, threads, 3, 20);
            println!("generated threads={threads} batch={batch} samples/s={g:.0}");
            let i = common::interpreted(LSTM, batch, threads, 3, 20);
            println!("interpreter threads={threads} batch={batch} samples/s={i:.0}");
        }
        if cell != Some("lstm") {
            let g = generated!(Gru, batch, 50 * 64, threads, 3, 20);
            println!("generated threads={threads} batch={batch} samples/s={g:.0}");
            let i = common::interpreted(GRU, batch, threads, 3, 20);
            println!("interpreter threads={threads} batch={batch} samples/s={i:.0}");
        }
    }
}
