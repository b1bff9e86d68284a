//! nnlang-runtime: what a compiled or interpreted nnlang model needs at run time — the
//! [`plan::Plan`] (the contract with the compiler), the kernels, the interpreter, training,
//! data readers and checkpoints. It never parses source or depends on the compiler.
//!
//! Arrays go in and out of `nnlangc run` as `.npy` files, batch first:
//!
//! ```
//! use nnlang_runtime::data::npy;
//! let path = std::env::temp_dir().join("nnlang-doc-batch.npy");
//! npy::write(&path, &[2, 3], &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5]).unwrap();
//! let back = npy::read(&path).unwrap();
//! assert_eq!((back.shape, back.data[4]), (vec![2, 3], 2.0));
//! ```

pub mod act;
pub mod array;
pub mod data;
mod float;
pub mod interp;
pub mod io;
pub mod kernels;
pub mod mem;
pub mod model;
pub mod ops;
pub mod plan;
pub mod profile;
pub mod step;
pub mod train;

/// Clocks: the standard library's, or on WebAssembly in a browser (where `std`'s panics) the
/// page's `performance.now()` through `web-time`, the same API.
pub mod time {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub use std::time::{Duration, Instant};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    pub use web_time::{Duration, Instant};
}

/// Re-exported for generated code, whose arenas start on a cache line.
pub use aligned_vec;
pub use float::Float;
/// Re-exported for generated code's array methods (`predict`) and their callers.
pub use ndarray;
/// Re-exported for generated code, which seeds its dropout generator the way the
/// interpreter does.
pub use rand_chacha;
