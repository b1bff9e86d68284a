//! `nn!`: an nnlang model compiled into Rust at build time. A thin shell over
//! [`nnlang::back::rust::expand`]: every error — a syntax error, a shape that does not fit — is a
//! `compile_error!` carrying nnlang's rendered diagnostic, never a panic.
//!
//! ```
//! use nnlang_runtime::model::Model; // fit, predict, save, …: written once for every model
//! use nnlang_runtime::ndarray::Array2;
//!
//! nnlang_macros::nn! {
//!     model Xor(hidden = 8) {
//!         input x: [2]
//!         x -> dense(hidden) -> tanh -> dense(2) -> softmax
//!     }
//!     train Xor on points { loss = cross_entropy, optimizer = adam(lr = 0.05), epochs = 200, batch = 4, seed = 1 }
//!     data points { train = csv("points.csv") } // read by `nnlangc train`; `fit` takes arrays
//! }
//! // or: nnlang_macros::nn!(file = "models/xor.nn", model = "Xor");
//!
//! let x = Array2::from_shape_vec((4, 2), vec![0., 0., 0., 1., 1., 0., 1., 1.]).unwrap();
//! let y = Array2::from_shape_vec((4, 1), vec![0., 1., 1., 0.]).unwrap();
//! let mut net = Xor::new(Xor::SEED);
//! // The recipe's loop: shuffling, batches, schedule, validation; `false` would stop it.
//! let epochs = net.fit(x.view(), y.view(), |_report| true).unwrap();
//! assert_eq!(epochs.len(), Xor::EPOCHS);
//! let probs = net.predict(x.view()).unwrap(); // any number of rows; a wrong width is an Err
//! let classes: Vec<usize> = probs.rows().into_iter().map(|p| if p[1] > p[0] { 1 } else { 0 }).collect();
//! assert_eq!(classes, [0, 1, 1, 0]);
//! ```
//!
//! The generated code — the model's constants and straight-line steps, and an implementation
//! of `nnlang_runtime::model::Model` — depends on `nnlang-runtime` alone.

use proc_macro::TokenStream;

/// Compiles the nnlang source in the braces (or in `file = "…"`, relative to the crate's
/// `Cargo.toml`) into one struct per model.
#[proc_macro]
pub fn nn(input: TokenStream) -> TokenStream {
    nnlang::back::rust::expand(input.into()).into()
}
