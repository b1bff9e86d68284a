//! Fully-connected layers: `y = x·Wᵀ + b` and its backward pass. In f32 with AVX2/AVX-512,
//! by the register tiles of `implicit`, which read W, x and dy in their own layouts (nothing
//! to pack), where the input width is a multiple of 16; otherwise on matrixmultiply.

use crate::Float;

/// `y[rows × out] = x[rows × in] · Wᵀ + b`, W `[out × in]` row-major. The bias is written
/// first and the product added onto it (β = 1), so it costs no extra pass.
pub fn forward<T: Float>(rows: usize, inp: usize, out: usize, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    // Dot products that read W where it lies (matrixmultiply packs all of W for every call,
    // whatever the rows: at 32 or 64 rows, a thread's share of a batch, that was most of the
    // cost), in one order for any number of rows, so that an example's outputs do not depend
    // on the batch it comes in.
    if T::dense_forward(rows, inp, out, x, w, b, y) {
        return;
    }
    for r in 0..rows {
        y[r * out..(r + 1) * out].copy_from_slice(&b[..out]);
    }
    T::gemm(rows, inp, out, T::ONE, x, inp as isize, 1, w, 1, inp as isize, T::ONE, y, out as isize, 1);
}

/// Forward was `y = x·Wᵀ + b`, so now `dW = dyᵀ·x`, `db = Σ_rows dy`.
pub fn backward_params<T: Float>(rows: usize, inp: usize, out: usize, x: &[T], dy: &[T], dw: &mut [T], db: &mut [T]) {
    if !T::dense_backward(rows, inp, out, x, &[], dy, Some(&mut *dw), None) {
        T::gemm(out, rows, inp, T::ONE, dy, 1, out as isize, x, inp as isize, 1, T::ZERO, dw, inp as isize, 1);
    }
    db[..out].fill(T::ZERO);
    for r in 0..rows {
        for (g, &d) in db[..out].iter_mut().zip(&dy[r * out..(r + 1) * out]) {
            *g += d;
        }
    }
}

/// …and `dx (+)= dy·W`.
pub fn backward_input<T: Float>(
    rows: usize,
    inp: usize,
    out: usize,
    w: &[T],
    dy: &[T],
    dx: &mut [T],
    accumulate: bool,
) {
    if T::dense_backward(rows, inp, out, &[], w, dy, None, Some((dx, accumulate))) {
        return;
    }
    let beta = if accumulate { T::ONE } else { T::ZERO };
    T::gemm(rows, out, inp, T::ONE, dy, out as isize, 1, w, inp as isize, 1, beta, dx, inp as isize, 1);
}

/// `y = f(x·Wᵀ + b)`: the product, then the activation on the same buffer while it is hot.
#[allow(clippy::too_many_arguments)]
pub fn forward_act<T: Float>(
    f: crate::plan::Act,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
) {
    forward(rows, inp, out, x, w, b, y);
    super::elementwise::activation_in_place(f, &mut y[..rows * out]);
}
