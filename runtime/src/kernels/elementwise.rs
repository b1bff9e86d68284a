//! Activations, dropout, softmax, sums and copies: one pass over the data each.

pub use crate::act::{
    activation, activation_backward, activation_backward_in_place, activation_in_place, activation_with_slope,
    activation_with_slope_in_place,
};
use crate::Float;

/// `y (+)= mask · x`: dropout's forward (`accumulate` false) and backward.
pub fn mul<T: Float>(mask: &[T], x: &[T], y: &mut [T], accumulate: bool) {
    if accumulate {
        y.iter_mut().zip(mask).zip(x).for_each(|((d, &m), &g)| *d += m * g);
    } else {
        y.iter_mut().zip(mask).zip(x).for_each(|((d, &m), &g)| *d = m * g);
    }
}

/// Row-wise softmax, shifted by the row maximum.
pub fn softmax<T: Float>(cols: usize, x: &[T], y: &mut [T]) {
    for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let m = xr.iter().fold(xr[0], |a, &b| a.max(b));
        let mut sum = T::ZERO;
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (v - m).exp();
            sum += *o;
        }
        for o in yr.iter_mut() {
            *o = *o / sum;
        }
    }
}

/// Writes `x` (rows × x_cols) into columns `col..col + x_cols` of `y` (rows × y_cols): the
/// forward of a concatenation.
pub fn scatter_cols<T: Float>(rows: usize, x_cols: usize, y_cols: usize, col: usize, x: &[T], y: &mut [T]) {
    for r in 0..rows {
        y[r * y_cols + col..r * y_cols + col + x_cols].copy_from_slice(&x[r * x_cols..(r + 1) * x_cols]);
    }
}

/// `x (+)=` columns `col..col + x_cols` of `y`: the backward of a concatenation (and, with
/// all columns, of a sum).
pub fn gather_cols<T: Float>(
    rows: usize,
    x_cols: usize,
    y_cols: usize,
    col: usize,
    y: &[T],
    x: &mut [T],
    accumulate: bool,
) {
    for r in 0..rows {
        let src = &y[r * y_cols + col..r * y_cols + col + x_cols];
        let dst = &mut x[r * x_cols..(r + 1) * x_cols];
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// `d = d · mask` in place.
pub fn mul_in_place<T: Float>(mask: &[T], d: &mut [T]) {
    d.iter_mut().zip(mask).for_each(|(d, &m)| *d *= m);
}

/// Forward was `y = softmax(x)` row-wise, so now `dx (+)= y · (dy − Σⱼ dyⱼ·yⱼ)`.
pub fn softmax_backward<T: Float>(cols: usize, y: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
    for ((yr, dyr), dxr) in y.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(dx.chunks_exact_mut(cols)) {
        let dot = yr.iter().zip(dyr).fold(T::ZERO, |s, (&a, &b)| s + a * b);
        for ((d, &yv), &g) in dxr.iter_mut().zip(yr).zip(dyr) {
            let v = yv * (g - dot);
            if accumulate {
                *d += v;
            } else {
                *d = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Act;

    /// Out of place and in place agree on every value, NaN included: a NaN reaching a ReLU
    /// stays NaN (as in PyTorch) so that the loss check stops on it, not a silent zero.
    #[test]
    fn activations_in_and_out_of_place_agree_and_keep_nan() {
        let x = [-2.0f32, -0.0, 0.0, 1.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        for f in [Act::Relu, Act::LeakyRelu(0.1), Act::Sigmoid, Act::Tanh, Act::Identity] {
            let mut y = [0f32; 7];
            activation(f, &x, &mut y);
            let mut z = x;
            activation_in_place(f, &mut z);
            for (a, b) in y.iter().zip(&z) {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{f:?}: {y:?} vs {z:?}");
            }
            assert!(y[4].is_nan(), "{f:?} keeps NaN");
        }
        let mut y = [0f32; 7];
        activation(Act::Relu, &x, &mut y);
        assert_eq!(&y[..4], &[0.0, -0.0, 0.0, 1.5]);
        assert_eq!((y[5], y[6]), (f32::INFINITY, 0.0));
    }
}
