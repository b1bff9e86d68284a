nnlang_macros::nn! {
    model Net {
        input image: [28, 28, 1]
        image -> conv(filters = 16, size = 5, stride = 2) -> relu -> dense(10) -> softmax
    }
}

fn main() {}
