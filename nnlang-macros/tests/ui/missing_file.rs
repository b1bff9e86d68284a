nnlang_macros::nn!(file = "models/does_not_exist.nn", model = "Mlp");

fn main() {}
