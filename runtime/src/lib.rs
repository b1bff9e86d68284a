//! nnlang-runtime: what a compiled or interpreted nnlang model needs at run time — the
//! [`plan::Plan`] (the contract with the compiler), the kernels, the interpreter, training,
//! data readers and checkpoints. It never parses source or depends on the compiler.

pub mod array;
pub mod data;
mod float;
pub mod interp;
pub mod io;
pub mod kernels;
pub mod mem;
pub mod ops;
pub mod plan;
pub mod step;
pub mod train;

pub use float::Float;
/// Re-exported for generated code's array methods (`predict`) and their callers.
pub use ndarray;
/// Re-exported for generated code, which seeds its dropout generator the way the
/// interpreter does.
pub use rand_chacha;
