//! `nn!`: an nnlang model compiled into Rust at build time. A thin shell over
//! [`nnlang::back::rust::expand`]: every error — a syntax error, a shape that does not fit — is a
//! `compile_error!` carrying nnlang's rendered diagnostic, never a panic.
//!
//! ```ignore
//! nnlang_macros::nn! {
//!     model Mlp(hidden = 256) {
//!         input x: [784]
//!         x -> [dense(hidden) -> relu] * 2 -> dense(10) -> softmax
//!     }
//! }
//! // or: nnlang_macros::nn!(file = "models/mlp.nn", model = "Mlp");
//!
//! let mut net = Mlp::new(7);
//! let probs = net.forward(&batch, rows);
//! ```
//!
//! The generated code depends on `nnlang-runtime` alone.

use proc_macro::TokenStream;

/// Compiles the nnlang source in the braces (or in `file = "…"`, relative to the crate's
/// `Cargo.toml`) into one struct per model.
#[proc_macro]
pub fn nn(input: TokenStream) -> TokenStream {
    nnlang::back::rust::expand(input.into()).into()
}
