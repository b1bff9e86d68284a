//! Depthwise convolutions (one filter per channel: `groups = depth = filters`) computed
//! directly on the channels-last volume, without im2col: every tap of a window is one
//! contiguous run of `D` channels of the input multiplied by the same run of the tap's
//! weights, so each loop runs over the channels, unit-stride, and vectorizes. An im2col
//! product would be `D` products of one filter each, a matrix–vector product per channel.
//!
//! Each output is `b + Σ_taps w·x` in tap order (taps outside the input skipped), the
//! gradients the same sums in position order: one chain of multiplies and adds per value
//! whatever the vector width, so the results do not depend on which instruction set runs.
//! The loops are compiled once more for each instruction set `pulp` dispatches to (the plain
//! code inlined into a function with those features on: AVX2, AVX-512, NEON).

use crate::plan::{Act, Geometry};
use crate::Float;

/// The weights `[D, 1, F, F]` (PyTorch) tap by tap: `[F·F, D]`.
fn by_tap<T: Float>(g: &Geometry, w: &[T]) -> Vec<T> {
    let (d, taps) = (g.d, g.f * g.f);
    let mut out = vec![T::ZERO; taps * d];
    for c in 0..d {
        for t in 0..taps {
            out[t * d + c] = w[c * taps + t];
        }
    }
    out
}

/// `y = f(depthwise(x) + b)` for `rows` examples.
pub fn forward<T: Float>(g: &Geometry, f: Act, rows: usize, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    let wt = by_tap(g, w);
    pulp::Arch::new().dispatch(Forward { g, rows, x, wt: &wt, b, y: &mut *y });
    super::elementwise::activation_in_place(f, &mut y[..rows * g.oh * g.ow * g.k]);
}

struct Forward<'a, T> {
    g: &'a Geometry,
    rows: usize,
    x: &'a [T],
    wt: &'a [T],
    b: &'a [T],
    y: &'a mut [T],
}

impl<T: Float> Forward<'_, T> {
    #[inline(always)]
    fn compute(self) {
        let Forward { g, rows, x, wt, b, y } = self;
        let (d, in_len, out_len) = (g.d, g.h * g.w * g.d, g.oh * g.ow * g.d);
        for r in 0..rows {
            let (x, y) = (&x[r * in_len..(r + 1) * in_len], &mut y[r * out_len..(r + 1) * out_len]);
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let out = &mut y[(oy * g.ow + ox) * d..(oy * g.ow + ox + 1) * d];
                    // No bias (`bias = false`, an empty `b`): from zero.
                    if b.is_empty() {
                        out.fill(T::ZERO);
                    } else {
                        out.copy_from_slice(&b[..d]);
                    }
                    for fy in 0..g.f {
                        let Some(iy) = g.tap(oy, fy, g.h) else { continue };
                        for fx in 0..g.f {
                            let Some(ix) = g.tap(ox, fx, g.w) else { continue };
                            let xin = &x[(iy * g.w + ix) * d..(iy * g.w + ix + 1) * d];
                            let wk = &wt[(fy * g.f + fx) * d..(fy * g.f + fx + 1) * d];
                            for ((o, &u), &v) in out.iter_mut().zip(xin).zip(wk) {
                                *o += v * u;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<T: Float> pulp::WithSimd for Forward<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.compute()
    }
}

/// Forward was `y = depthwise(x) + b`: `dW` (overwritten), `db = Σ dy` and, when `dx` is
/// given, `dx (+)= ∂/∂x` (`true`: add).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    g: &Geometry,
    rows: usize,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
    dx: Option<(&mut [T], bool)>,
) {
    let wt = by_tap(g, w);
    let mut dwt = vec![T::ZERO; wt.len()];
    pulp::Arch::new().dispatch(Backward { g, rows, x, wt: &wt, dy, dwt: &mut dwt, db, dx });
    let (d, taps) = (g.d, g.f * g.f);
    for c in 0..d {
        for t in 0..taps {
            dw[c * taps + t] = dwt[t * d + c];
        }
    }
}

struct Backward<'a, T> {
    g: &'a Geometry,
    rows: usize,
    x: &'a [T],
    wt: &'a [T],
    dy: &'a [T],
    dwt: &'a mut [T],
    db: &'a mut [T],
    dx: Option<(&'a mut [T], bool)>,
}

impl<T: Float> Backward<'_, T> {
    #[inline(always)]
    fn compute(self) {
        let Backward { g, rows, x, wt, dy, dwt, db, mut dx } = self;
        let (d, in_len, out_len) = (g.d, g.h * g.w * g.d, g.oh * g.ow * g.d);
        // An empty `db`: the convolution has no bias.
        let bias = !db.is_empty();
        if bias {
            db[..d].fill(T::ZERO);
        }
        if let Some((dx, false)) = dx.as_mut() {
            dx[..rows * in_len].fill(T::ZERO);
        }
        for r in 0..rows {
            let (x, dy) = (&x[r * in_len..(r + 1) * in_len], &dy[r * out_len..(r + 1) * out_len]);
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let g_out = &dy[(oy * g.ow + ox) * d..(oy * g.ow + ox + 1) * d];
                    if bias {
                        db[..d].iter_mut().zip(g_out).for_each(|(s, &v)| *s += v);
                    }
                    for fy in 0..g.f {
                        let Some(iy) = g.tap(oy, fy, g.h) else { continue };
                        for fx in 0..g.f {
                            let Some(ix) = g.tap(ox, fx, g.w) else { continue };
                            let (t, at) = ((fy * g.f + fx) * d, (iy * g.w + ix) * d);
                            let xin = &x[at..at + d];
                            for ((s, &u), &v) in dwt[t..t + d].iter_mut().zip(xin).zip(g_out) {
                                *s += v * u;
                            }
                            if let Some((dx, _)) = dx.as_mut() {
                                let to = &mut dx[r * in_len + at..r * in_len + at + d];
                                for ((s, &u), &v) in to.iter_mut().zip(&wt[t..t + d]).zip(g_out) {
                                    *s += v * u;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<T: Float> pulp::WithSimd for Backward<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.compute()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depthwise path equals the grouped im2col path (`groups = d` taken tap by tap) on
    /// strides, paddings and dilations, forward and backward.
    #[test]
    fn equals_the_grouped_product() {
        for &(h, w, d, f, s, p, dil) in &[
            (6, 7, 3, 3, 1, 1, 1),
            (9, 8, 5, 3, 2, 1, 1),
            (9, 9, 4, 3, 1, 2, 2),
            (7, 7, 16, 5, 2, 2, 1),
            (5, 5, 2, 1, 1, 0, 1),
        ] {
            let (oh, ow) = ((h + 2 * p - dil * (f - 1) - 1) / s + 1, (w + 2 * p - dil * (f - 1) - 1) / s + 1);
            let g = Geometry { h, w, d, k: d, f, s, p, oh, ow, dil, groups: d };
            let rows = 2;
            let x: Vec<f64> = (0..rows * h * w * d).map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5).collect();
            let wts: Vec<f64> = (0..d * f * f).map(|i| ((i * 13) % 11) as f64 / 5.0 - 1.0).collect();
            let b: Vec<f64> = (0..d).map(|i| i as f64 * 0.25).collect();
            let dy: Vec<f64> = (0..rows * oh * ow * d).map(|i| ((i * 7) % 9) as f64 / 3.0 - 1.2).collect();
            let mut y = vec![f64::NAN; dy.len()];
            forward(&g, Act::Identity, rows, &x, &wts, &b, &mut y);
            let (mut dw, mut db, mut dx) = (vec![f64::NAN; wts.len()], vec![f64::NAN; d], vec![f64::NAN; x.len()]);
            backward(&g, rows, &x, &wts, &dy, &mut dw, &mut db, Some((&mut dx, false)));
            // By definition: y[o, c] = b[c] + Σ w[c, t]·x[in(o, t), c].
            let mut want = vec![0.0; y.len()];
            let (mut dw2, mut db2, mut dx2) = (vec![0.0; wts.len()], vec![0.0; d], vec![0.0; x.len()]);
            for r in 0..rows {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for c in 0..d {
                            let o = ((r * oh + oy) * ow + ox) * d + c;
                            want[o] = b[c];
                            db2[c] += dy[o];
                            for fy in 0..f {
                                for fx in 0..f {
                                    let (Some(iy), Some(ix)) = (g.tap(oy, fy, h), g.tap(ox, fx, w)) else {
                                        continue;
                                    };
                                    let i = ((r * h + iy) * w + ix) * d + c;
                                    let t = c * f * f + fy * f + fx;
                                    want[o] += wts[t] * x[i];
                                    dw2[t] += dy[o] * x[i];
                                    dx2[i] += dy[o] * wts[t];
                                }
                            }
                        }
                    }
                }
            }
            let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(u, v)| (u - v).abs() < 1e-12);
            assert!(close(&y, &want), "{g:?}");
            assert!(close(&dw, &dw2) && close(&db, &db2) && close(&dx, &dx2), "{g:?}");
        }
    }
}
