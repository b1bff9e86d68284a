//! `globalavgpool`, `globalmaxpool`: each channel of a `[height, width, depth]` volume
//! reduced over every position, `[H, W, D] → [D]` (PyTorch's `AdaptiveAvgPool2d(1)` and
//! `AdaptiveMaxPool2d(1)` then a flatten). The kernels and their step functions.

use crate::mem::Cx;
use crate::ops::Done;
use crate::plan::{ABuf, Write};
use crate::Float;

/// Each row's `positions × c` values (channels last) reduced to `c`: the mean, or the maximum.
pub fn forward<T: Float>(max: bool, positions: usize, c: usize, x: &[T], y: &mut [T]) {
    if c == 0 {
        return;
    }
    let scale = T::from_f64(1.0 / positions.max(1) as f64);
    for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(positions * c)) {
        yr.copy_from_slice(&xr[..c]);
        for p in xr.chunks_exact(c).skip(1) {
            for (o, &v) in yr.iter_mut().zip(p) {
                *o = if max { o.max(v) } else { *o + v };
            }
        }
        if !max {
            yr.iter_mut().for_each(|o| *o *= scale);
        }
    }
}

/// The gradient: the mean's `dy/positions` to every position, or the maximum's `dy` to the
/// first position that holds the maximum (`y`); `c` channels.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    max: bool,
    positions: usize,
    c: usize,
    x: &[T],
    y: &[T],
    dy: &[T],
    dx: &mut [T],
    accumulate: bool,
) {
    let scale = T::from_f64(1.0 / positions.max(1) as f64);
    let per = positions * c;
    let rows = dy.len() / c.max(1);
    let mut share = vec![T::ZERO; c];
    for r in 0..rows {
        let (xr, dxr) = (&x[r * per..(r + 1) * per], &mut dx[r * per..(r + 1) * per]);
        let (yr, dyr) = (&y[r * c..(r + 1) * c], &dy[r * c..(r + 1) * c]);
        if !max {
            // Each position's share, written position by position (0 + g: the bits of adding
            // to a zeroed gradient).
            share.iter_mut().zip(dyr).for_each(|(s, &g)| *s = g * scale);
            for pos in dxr.chunks_exact_mut(c.max(1)) {
                if accumulate {
                    pos.iter_mut().zip(&share).for_each(|(d, &g)| *d += g);
                } else {
                    pos.iter_mut().zip(&share).for_each(|(d, &g)| *d = T::ZERO + g);
                }
            }
            continue;
        }
        if !accumulate {
            dxr.fill(T::ZERO);
        }
        for ch in 0..c {
            if let Some(p) = (0..positions).find(|&p| xr[p * c + ch] == yr[ch]) {
                dxr[p * c + ch] += dyr[ch];
            }
        }
    }
}

/// The step `GlobalPool { max, positions, x, y }`.
pub fn step<T: Float>(cx: &mut Cx<'_, T>, max: bool, positions: usize, x: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    forward(max, positions, y.cols, r.get(x, rows), out);
    Ok(())
}

/// The step `GlobalPoolBackward { max, positions, x, y, dy, dx, write }`.
#[allow(clippy::too_many_arguments)]
pub fn backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    max: bool,
    positions: usize,
    x: ABuf,
    y: ABuf,
    dy: ABuf,
    dx: ABuf,
    write: Write,
) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dx, rows);
    let c = y.cols;
    backward(max, positions, c, r.get(x, rows), r.get(y, rows), r.get(dy, rows), d, write == Write::Accumulate);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_maximum_over_positions_with_their_gradients() {
        // Two rows, 3 positions, 2 channels.
        let x = [1.0f64, 10.0, 3.0, -1.0, 2.0, 4.0, 0.0, 0.0, 5.0, 5.0, -2.0, 1.0];
        let (mut avg, mut max) = ([0.0; 4], [0.0; 4]);
        forward(false, 3, 2, &x, &mut avg);
        forward(true, 3, 2, &x, &mut max);
        assert_eq!(avg, [2.0, 13.0 / 3.0, 1.0, 2.0]);
        assert_eq!(max, [3.0, 10.0, 5.0, 5.0]);
        let dy = [1.0, 2.0, 3.0, 4.0];
        let mut dx = [0.0; 12];
        backward(true, 3, 2, &x, &max, &dy, &mut dx, false);
        assert_eq!(dx, [0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0]);
        backward(false, 3, 2, &x, &avg, &dy, &mut dx, false);
        let third = 1.0 / 3.0;
        let want = [
            third,
            2.0 * third,
            third,
            2.0 * third,
            third,
            2.0 * third,
            1.0,
            4.0 * third,
            1.0,
            4.0 * third,
            1.0,
            4.0 * third,
        ];
        assert!(dx.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-15), "{dx:?}");
    }
}
