//! Back ends: what a plan becomes besides being interpreted. Each reads the plans built by
//! [`crate::plan`](mod@crate::plan) and the typed recipe; none changes what the model computes.
//!
//! - [`rust`]: Rust source with constant shapes over `nnlang_runtime` (`nn!`, `nnlangc emit
//!   --rust`), bit-identical to the interpreter.
//! - [`pytorch`]: a Python file with the model as an `nn.Module` that loads nnlang's weights
//!   (`nnlangc export --pytorch`); it reads the model's IR, not a plan.
//! - [`onnx`]: an ONNX file with the weights and the preprocessing inside (`nnlangc export
//!   --onnx`); it reads the model's IR too.

pub mod onnx;
pub mod pytorch;
pub mod rust;
