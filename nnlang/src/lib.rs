//! nnlang: a declarative language for neural networks, and its compiler.

pub mod diag;
pub mod ir;
pub mod lower;
pub mod syntax;
