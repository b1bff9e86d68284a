// Checks, but a sequence of variable length with no longest length cannot be planned: the generated code cannot be built.
nnlang_macros::nn! {
    model Tagger {
        input frames: [seq, 12]
        frames -> bidirectional(rnn(32)) -> dense(9) -> softmax
    }
}

fn main() {}
