//! Pooling per depth slice over channels-last volumes: max, average and L2 (the square root
//! of the sum of squares), forward and backward. Windows never leave the input (no padding).

use crate::plan::{Geometry, PoolOp};
use crate::Float;

pub fn forward<T: Float>(kind: PoolOp, g: &Geometry, rows: usize, x: &[T], y: &mut [T]) {
    let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
    let inv = T::from_f64(1.0 / (g.f * g.f) as f64);
    for r in 0..rows {
        let (xr, yr) = (&x[r * in_len..(r + 1) * in_len], &mut y[r * out_len..(r + 1) * out_len]);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let out = &mut yr[(oy * g.ow + ox) * d..(oy * g.ow + ox + 1) * d];
                for c in 0..d {
                    let mut acc = match kind {
                        PoolOp::Max => xr[((oy * g.s) * g.w + ox * g.s) * d + c],
                        _ => T::ZERO,
                    };
                    for fy in 0..g.f {
                        for fx in 0..g.f {
                            let v = xr[((oy * g.s + fy) * g.w + ox * g.s + fx) * d + c];
                            match kind {
                                PoolOp::Max => acc = acc.max(v),
                                PoolOp::Avg => acc += v,
                                PoolOp::L2 => acc += v * v,
                            }
                        }
                    }
                    out[c] = match kind {
                        PoolOp::Max => acc,
                        PoolOp::Avg => acc * inv,
                        PoolOp::L2 => acc.sqrt(),
                    };
                }
            }
        }
    }
}

/// Forward was `y = pool(x)`, so now `dx (+)=` the window's share of `dy`: all of it at the
/// (first) maximum; `dy/F²` everywhere for the average; `dy·x/y` for L2.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    kind: PoolOp,
    g: &Geometry,
    rows: usize,
    x: &[T],
    y: &[T],
    dy: &[T],
    dx: &mut [T],
    accumulate: bool,
) {
    let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
    if !accumulate {
        dx[..rows * in_len].fill(T::ZERO);
    }
    let inv = T::from_f64(1.0 / (g.f * g.f) as f64);
    for r in 0..rows {
        let (xr, yr, dyr) =
            (&x[r * in_len..(r + 1) * in_len], &y[r * out_len..(r + 1) * out_len], &dy[r * out_len..(r + 1) * out_len]);
        let dxr = &mut dx[r * in_len..(r + 1) * in_len];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for c in 0..d {
                    let o = (oy * g.ow + ox) * d + c;
                    let (yv, gv) = (yr[o], dyr[o]);
                    let mut done = false;
                    for fy in 0..g.f {
                        for fx in 0..g.f {
                            let i = ((oy * g.s + fy) * g.w + ox * g.s + fx) * d + c;
                            match kind {
                                PoolOp::Max => {
                                    if !done && xr[i] == yv {
                                        dxr[i] += gv;
                                        done = true;
                                    }
                                }
                                PoolOp::Avg => dxr[i] += gv * inv,
                                PoolOp::L2 => {
                                    if yv > T::ZERO {
                                        dxr[i] += gv * xr[i] / yv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Maxout's reduction: `y[…, u] = max_j z[…, u·pieces + j]` over groups of `pieces`
/// consecutive values.
pub fn maxout<T: Float>(pieces: usize, z: &[T], y: &mut [T]) {
    for (out, group) in y.iter_mut().zip(z.chunks_exact(pieces)) {
        *out = group.iter().fold(group[0], |a, &b| a.max(b));
    }
}

/// Forward was `y = max over each group of z`, so now `dz = dy` at each group's (first)
/// maximum and 0 elsewhere.
pub fn maxout_backward<T: Float>(pieces: usize, z: &[T], y: &[T], dy: &[T], dz: &mut [T], accumulate: bool) {
    for (((group, dgroup), &yv), &gv) in z.chunks_exact(pieces).zip(dz.chunks_exact_mut(pieces)).zip(y).zip(dy) {
        let mut done = false;
        for (&v, d) in group.iter().zip(dgroup.iter_mut()) {
            let g = if !done && v == yv {
                done = true;
                gv
            } else {
                T::ZERO
            };
            if accumulate {
                *d += g;
            } else {
                *d = g;
            }
        }
    }
}
