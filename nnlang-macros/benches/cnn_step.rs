//! The small MNIST ConvNet of PERFORMANCE.md (conv3×3×16 p1 → relu → maxpool2 →
//! conv3×3×32 p1 → relu → maxpool2 → fc128 → relu → fc10; softmax cross-entropy; SGD with
//! Nesterov momentum) — generated code and interpreter, at batch 64 on 1 and 2 threads.
//! `bench/pytorch_cnn.py` runs the same model in PyTorch; `bench/cnn.sh` runs both.
//!
//!     cargo bench -p nnlang-macros --bench cnn_step

#[macro_use]
mod common;

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
    for threads in [1, 2] {
        let g = generated!(SmallCnn, batch, 784, threads, 5, 40);
        println!("generated threads={threads} batch={batch} samples/s={g:.0}");
        let i = common::interpreted(SRC, batch, threads, 5, 40);
        println!("interpreter threads={threads} batch={batch} samples/s={i:.0}");
    }
}
