//! The only place numerics live. Each kernel works on plain slices of the arena; the
//! interpreter and generated code call the same functions with the same arguments.

pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod pool;
