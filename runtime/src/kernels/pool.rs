//! Pooling per depth slice over channels-last volumes: max, average and L2 (the square root
//! of the sum of squares), forward and backward. No padding; the last window of a pooling
//! that rounds up (`round = ceil`) is cut at the input's edge, and an average divides by the
//! values it has (PyTorch's `ceil_mode`).

use crate::plan::{Geometry, PoolOp};
use crate::Float;

/// Pools `rows` volumes of `x` into `y`. Compiled for AVX2 too and run so where the
/// processor has it (elementwise over the channels: the same bits).
pub fn forward<T: Float>(kind: PoolOp, g: &Geometry, rows: usize, x: &[T], y: &mut [T]) {
    super::gemm::dispatch(Forward { kind, g, rows, x, y })
}

struct Forward<'a, T> {
    kind: PoolOp,
    g: &'a Geometry,
    rows: usize,
    x: &'a [T],
    y: &'a mut [T],
}

impl<T: Float> pulp::WithSimd for Forward<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Forward { kind, g, rows, x, y } = self;
        forward_plain(kind, g, rows, x, y)
    }
}

#[inline(always)]
fn forward_plain<T: Float>(kind: PoolOp, g: &Geometry, rows: usize, x: &[T], y: &mut [T]) {
    let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
    let inv = T::from_f64(1.0 / (g.f * g.f) as f64);
    for r in 0..rows {
        let (xr, yr) = (&x[r * in_len..(r + 1) * in_len], &mut y[r * out_len..(r + 1) * out_len]);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let out = &mut yr[(oy * g.ow + ox) * d..(oy * g.ow + ox + 1) * d];
                // Channels innermost: each window row is a contiguous run of pixels × depth.
                let first = ((oy * g.s) * g.w + ox * g.s) * d;
                match kind {
                    PoolOp::Max => out.iter_mut().zip(&xr[first..first + d]).for_each(|(o, &v)| *o = v),
                    _ => out.fill(T::ZERO),
                }
                let (ny, nx) = (g.reach(oy, g.h), g.reach(ox, g.w));
                for fy in 0..ny {
                    for fx in 0..nx {
                        let at = ((oy * g.s + fy) * g.w + ox * g.s + fx) * d;
                        let px = &xr[at..at + d];
                        match kind {
                            PoolOp::Max => out.iter_mut().zip(px).for_each(|(o, &v)| *o = o.max(v)),
                            PoolOp::Avg => out.iter_mut().zip(px).for_each(|(o, &v)| *o += v),
                            PoolOp::L2 => out.iter_mut().zip(px).for_each(|(o, &v)| *o += v * v),
                        }
                    }
                }
                let inv = if ny * nx == g.f * g.f { inv } else { T::from_f64(1.0 / (ny * nx) as f64) };
                match kind {
                    PoolOp::Max => {}
                    PoolOp::Avg => out.iter_mut().for_each(|o| *o *= inv),
                    PoolOp::L2 => out.iter_mut().for_each(|o| *o = o.sqrt()),
                }
            }
        }
    }
}

/// Forward was `y = pool(x)`, so now `dx (+)=` the window's share of `dy`: all of it at the
/// (first) maximum; `dy/F²` everywhere for the average; `dy·x/y` for L2. Compiled for AVX2
/// too, as [`forward`].
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
    super::gemm::dispatch(Backward { kind, g, rows, x, y, dy, dx, accumulate })
}

struct Backward<'a, T> {
    kind: PoolOp,
    g: &'a Geometry,
    rows: usize,
    x: &'a [T],
    y: &'a [T],
    dy: &'a [T],
    dx: &'a mut [T],
    accumulate: bool,
}

impl<T: Float> pulp::WithSimd for Backward<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Backward { kind, g, rows, x, y, dy, dx, accumulate } = self;
        backward_plain(kind, g, rows, x, y, dy, dx, accumulate)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_plain<T: Float>(
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
    let inv = T::from_f64(1.0 / (g.f * g.f) as f64);
    // Which channels of the current window have found their maximum.
    let mut found = vec![false; d];
    for r in 0..rows {
        let (xr, yr, dyr) =
            (&x[r * in_len..(r + 1) * in_len], &y[r * out_len..(r + 1) * out_len], &dy[r * out_len..(r + 1) * out_len]);
        let dxr = &mut dx[r * in_len..(r + 1) * in_len];
        // Zeroed one example at a time, so that it is still in cache when the windows add to it.
        if !accumulate {
            dxr.fill(T::ZERO);
        }
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let o = (oy * g.ow + ox) * d;
                let (yv, gv) = (&yr[o..o + d], &dyr[o..o + d]);
                found.iter_mut().for_each(|f| *f = false);
                let (ny, nx) = (g.reach(oy, g.h), g.reach(ox, g.w));
                let inv = if ny * nx == g.f * g.f { inv } else { T::from_f64(1.0 / (ny * nx) as f64) };
                for fy in 0..ny {
                    for fx in 0..nx {
                        let at = ((oy * g.s + fy) * g.w + ox * g.s + fx) * d;
                        let (px, dpx) = (&xr[at..at + d], &mut dxr[at..at + d]);
                        match kind {
                            PoolOp::Max => {
                                // Branch-free, so that it vectorizes: the gradient goes to the
                                // first input equal to the maximum.
                                for ((dp, f), ((&p, &m), &g)) in
                                    dpx.iter_mut().zip(found.iter_mut()).zip(px.iter().zip(yv).zip(gv))
                                {
                                    let take = !*f & (p == m);
                                    *dp += if take { g } else { T::ZERO };
                                    *f |= take;
                                }
                            }
                            PoolOp::Avg => dpx.iter_mut().zip(gv).for_each(|(d, &g)| *d += g * inv),
                            PoolOp::L2 => {
                                for c in 0..d {
                                    if yv[c] > T::ZERO {
                                        dpx[c] += gv[c] * px[c] / yv[c];
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
/// consecutive values. Compiled for AVX2 too, as [`forward`].
pub fn maxout<T: Float>(pieces: usize, z: &[T], y: &mut [T]) {
    super::gemm::dispatch(Maxout { pieces, z, y })
}

struct Maxout<'a, T> {
    pieces: usize,
    z: &'a [T],
    y: &'a mut [T],
}

impl<T: Float> pulp::WithSimd for Maxout<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Maxout { pieces, z, y } = self;
        for (out, group) in y.iter_mut().zip(z.chunks_exact(pieces)) {
            *out = group.iter().fold(group[0], |a, &b| a.max(b));
        }
    }
}

/// Forward was `y = max over each group of z`, so now `dz = dy` at each group's (first)
/// maximum and 0 elsewhere (`accumulate`: added to `dz`). Branch-free, and compiled for AVX2
/// too.
pub fn maxout_backward<T: Float>(pieces: usize, z: &[T], y: &[T], dy: &[T], dz: &mut [T], accumulate: bool) {
    super::gemm::dispatch(MaxoutBackward { pieces, z, y, dy, dz, accumulate })
}

struct MaxoutBackward<'a, T> {
    pieces: usize,
    z: &'a [T],
    y: &'a [T],
    dy: &'a [T],
    dz: &'a mut [T],
    accumulate: bool,
}

impl<T: Float> pulp::WithSimd for MaxoutBackward<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let MaxoutBackward { pieces, z, y, dy, dz, accumulate } = self;
        let groups = z.chunks_exact(pieces).zip(dz.chunks_exact_mut(pieces)).zip(y).zip(dy);
        for (((group, dgroup), &yv), &gv) in groups {
            let mut found = false;
            for (&v, d) in group.iter().zip(dgroup.iter_mut()) {
                let take = !found & (v == yv);
                let g = if take { gv } else { T::ZERO };
                *d = if accumulate { *d + g } else { g };
                found |= take;
            }
        }
    }
}
