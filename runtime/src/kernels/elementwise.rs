//! Activations, dropout, softmax, sums and copies: one pass over the data each.

use crate::plan::Act;
use crate::Float;

fn sigmoid<T: Float>(v: T) -> T {
    // Stable for large |v|: never exponentiates a large positive number.
    if v >= T::ZERO {
        T::ONE / (T::ONE + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::ONE + e)
    }
}

pub fn activation<T: Float>(f: Act, x: &[T], y: &mut [T]) {
    match f {
        Act::Relu => y.iter_mut().zip(x).for_each(|(y, &v)| *y = if v > T::ZERO { v } else { T::ZERO }),
        Act::LeakyRelu(a) => {
            let a = T::from_f64(a);
            y.iter_mut().zip(x).for_each(|(y, &v)| *y = if v > T::ZERO { v } else { a * v })
        }
        Act::Sigmoid => y.iter_mut().zip(x).for_each(|(y, &v)| *y = sigmoid(v)),
        Act::Tanh => y.iter_mut().zip(x).for_each(|(y, &v)| *y = v.tanh()),
        Act::Identity => y.copy_from_slice(x),
    }
}

/// Forward was `y = f(x)`, so now `dx (+)= dy · f'(x)`.
pub fn activation_backward<T: Float>(f: Act, x: &[T], y: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
    let grad = |i: usize| -> T {
        match f {
            Act::Relu => {
                if x[i] > T::ZERO {
                    dy[i]
                } else {
                    T::ZERO
                }
            }
            Act::LeakyRelu(a) => {
                if x[i] > T::ZERO {
                    dy[i]
                } else {
                    T::from_f64(a) * dy[i]
                }
            }
            Act::Sigmoid => dy[i] * y[i] * (T::ONE - y[i]),
            Act::Tanh => dy[i] * (T::ONE - y[i] * y[i]),
            Act::Identity => dy[i],
        }
    };
    if accumulate {
        for (i, d) in dx.iter_mut().enumerate() {
            *d += grad(i);
        }
    } else {
        for (i, d) in dx.iter_mut().enumerate() {
            *d = grad(i);
        }
    }
}

/// Inverted dropout: each mask entry is 1/keep with probability `keep`, else 0.
pub fn dropout<T: Float>(keep: f64, uniform: impl FnMut() -> f64, x: &[T], mask: &mut [T], y: &mut [T]) {
    let mut uniform = uniform;
    let scale = T::from_f64(1.0 / keep);
    for ((m, y), &v) in mask.iter_mut().zip(y.iter_mut()).zip(x) {
        *m = if uniform() < keep { scale } else { T::ZERO };
        *y = v * *m;
    }
}

pub fn mul_backward<T: Float>(mask: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
    if accumulate {
        dx.iter_mut().zip(mask).zip(dy).for_each(|((d, &m), &g)| *d += m * g);
    } else {
        dx.iter_mut().zip(mask).zip(dy).for_each(|((d, &m), &g)| *d = m * g);
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

/// Copies (or adds) `x` into columns `col..col + x.cols` of every row of `y`, or the other
/// way round when `into_y` is false (the backward of a concatenation).
#[allow(clippy::too_many_arguments)]
pub fn copy_cols<T: Float>(
    rows: usize,
    x_cols: usize,
    y_cols: usize,
    col: usize,
    x: &mut [T],
    y: &mut [T],
    into_y: bool,
    accumulate: bool,
) {
    for r in 0..rows {
        let xs = &mut x[r * x_cols..(r + 1) * x_cols];
        let ys = &mut y[r * y_cols + col..r * y_cols + col + x_cols];
        let (src, dst): (&[T], &mut [T]) = if into_y { (xs, ys) } else { (ys, xs) };
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}
