//! nnlang's side of `bench/pytorch_rnn_check.py`: for a model file, weights, a batch and its
//! labels (and, for sequences of different lengths, each one's length), writes the model's
//! outputs (`outputs.npy`), the mean loss (printed) and the gradient of every parameter
//! (`gradients.safetensors`, PyTorch's names and layouts).
//!
//!     cargo run --release --example rnn_gradients -- MODEL.nn WEIGHTS X.npy Y.npy OUT_DIR [LENGTHS.npy]

use nnlang::plan::{build, Mode};
use nnlang::session::Session;
use nnlang_runtime::interp::Exec;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (model, weights, x, y, out, lengths) = match args.as_slice() {
        [m, w, x, y, o] => (m, w, x, y, o, None),
        [m, w, x, y, o, l] => (m, w, x, y, o, Some(l)),
        _ => return Err("usage: rnn_gradients MODEL.nn WEIGHTS X.npy Y.npy OUT_DIR [LENGTHS.npy]".into()),
    };
    let lengths: Vec<usize> = match lengths {
        Some(l) => nnlang_runtime::data::npy::read(l)?.data.iter().map(|&v| v as usize).collect(),
        None => Vec::new(),
    };
    let session = Session::open(model, &nnlang::Options::default())?;
    let m = session.model(None)?;
    let loss = session.compiled.recipe_or_implied(m).loss;
    let x = nnlang_runtime::data::npy::read(x)?;
    let y = nnlang_runtime::data::npy::read(y)?;
    let rows = x.shape[0];

    let infer = build(m, Mode::Inference, rows).map_err(|_| "inference plan")?;
    let mut exec = nnlang::session::load_weights(&infer, weights)?;
    exec.set_lengths(&lengths);
    exec.run_on(&infer, rows, &[&x.data], &[], None)?;
    let out_shape = [rows, infer.output.cols];
    nnlang_runtime::data::npy::write(&out.join("outputs.npy"), &out_shape, exec.output(&infer, rows))?;

    let train = build(m, Mode::Training(loss), rows).map_err(|_| "training plan")?;
    let mut exec = Exec::<f32>::new(&train, 0);
    nnlang_runtime::io::load(weights, &train.params, &mut exec.params)?;
    exec.set_lengths(&lengths);
    let l = exec.run_on(&train, rows, &[&x.data], &y.data, None)?.ok_or("no loss")?;
    println!("loss {l:.9}");
    nnlang_runtime::io::save(&out.join("gradients.safetensors"), &train.params, &exec.grads)?;
    Ok(())
}
