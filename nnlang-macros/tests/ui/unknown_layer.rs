nnlang_macros::nn! {
    model Mlp {
        input x: [784]
        x -> dense(128) -> rleu -> dense(10) -> softmax
    }
}

fn main() {}
