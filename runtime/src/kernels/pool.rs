//! Pooling per depth slice over channels-last volumes: max, average and L2 (the square root
//! of the sum of squares), forward and backward. No padding; the last window of a pooling
//! that rounds up (`round = ceil`) is cut at the input's edge, and an average divides by the
//! values it has (PyTorch's `ceil_mode`).

use super::{block_at, by_blocks, Block};
use crate::plan::{Geometry, PoolOp};
use crate::Float;

/// Pools `rows` volumes of `x` into `y`. Compiled for the widest instruction set `pulp` finds
/// too, and run so (elementwise over the channels: the same bits at every width).
pub fn forward<T: Float>(kind: PoolOp, g: &Geometry, rows: usize, x: &[T], y: &mut [T]) {
    pulp::Arch::new().dispatch(Forward { kind, g, rows, x, y })
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
    match kind {
        PoolOp::Max => forward_windows::<T, true>(g, rows, x, y),
        PoolOp::Avg => forward_windows::<T, false>(g, rows, x, y),
        PoolOp::L2 => forward_l2(g, rows, x, y),
    }
}

/// L2 pooling: the square root of each window's sum of squares, channel by channel.
#[inline(always)]
fn forward_l2<T: Float>(g: &Geometry, rows: usize, x: &[T], y: &mut [T]) {
    let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
    for r in 0..rows {
        let (xr, yr) = (&x[r * in_len..(r + 1) * in_len], &mut y[r * out_len..(r + 1) * out_len]);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let out = &mut yr[(oy * g.ow + ox) * d..(oy * g.ow + ox + 1) * d];
                out.fill(T::ZERO);
                let at = Taps { g, oy, ox, ny: g.reach(oy, g.h), nx: g.reach(ox, g.w) };
                for fy in 0..at.ny {
                    for fx in 0..at.nx {
                        let px = &xr[at.at(fy, fx)..at.at(fy, fx) + d];
                        out.iter_mut().zip(px).for_each(|(o, &v)| *o += v * v);
                    }
                }
                out.iter_mut().for_each(|o| *o = o.sqrt());
            }
        }
    }
}

/// Max (`MAX`) or average pooling, a window at a time, its channels in blocks held in
/// registers: each channel's value is its window's maximum (starting from the first tap) or
/// the sum of its taps in order times `1/taps` — the same whatever block it falls in.
#[inline(always)]
fn forward_windows<T: Float, const MAX: bool>(g: &Geometry, rows: usize, x: &[T], y: &mut [T]) {
    let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
    let inv = T::from_f64(1.0 / (g.f * g.f) as f64);
    for r in 0..rows {
        let (xr, yr) = (&x[r * in_len..(r + 1) * in_len], &mut y[r * out_len..(r + 1) * out_len]);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let o = (oy * g.ow + ox) * d;
                let (ny, nx) = (g.reach(oy, g.h), g.reach(ox, g.w));
                let inv = if ny * nx == g.f * g.f { inv } else { T::from_f64(1.0 / (ny * nx) as f64) };
                let at = Taps { g, oy, ox, ny, nx };
                by_blocks(d, &mut WindowForward::<T, MAX> { at, xr, out: &mut yr[o..o + d], inv });
            }
        }
    }
}

/// The taps of one pooling window: output position `(oy, ox)`, `ny × nx` taps inside the input.
#[derive(Clone, Copy)]
struct Taps<'g> {
    g: &'g Geometry,
    oy: usize,
    ox: usize,
    ny: usize,
    nx: usize,
}

impl Taps<'_> {
    /// Where tap `(fy, fx)`'s channels start in an example's input.
    #[inline(always)]
    fn at(&self, fy: usize, fx: usize) -> usize {
        let g = self.g;
        ((self.oy * g.s + fy) * g.w + self.ox * g.s + fx) * g.d
    }
}

struct WindowForward<'a, T, const MAX: bool> {
    at: Taps<'a>,
    xr: &'a [T],
    out: &'a mut [T],
    inv: T,
}

impl<T: Float, const MAX: bool> Block for WindowForward<'_, T, MAX> {
    #[inline(always)]
    fn block<const B: usize>(&mut self, c0: usize) {
        let mut acc: [T; B] = if MAX { block_at(self.xr, self.at.at(0, 0) + c0) } else { [T::ZERO; B] };
        for fy in 0..self.at.ny {
            for fx in 0..self.at.nx {
                let v: [T; B] = block_at(self.xr, self.at.at(fy, fx) + c0);
                for j in 0..B {
                    acc[j] = if MAX { acc[j].max(v[j]) } else { acc[j] + v[j] };
                }
            }
        }
        if !MAX {
            acc.iter_mut().for_each(|a| *a *= self.inv);
        }
        self.out[c0..c0 + B].copy_from_slice(&acc);
    }
}

/// Max (`MAX`) or average pooling's gradient, a window at a time, its channels in blocks held
/// in registers: each window's `dy` to its first maximum, or `dy/taps` to every tap, added in
/// window order. `ASSIGN`: the windows do not
/// overlap and `dx` is not accumulated into, so each window writes its inputs' gradients
/// (`0 + v`, the bits of adding to a zeroed `dx`) without reading them first.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_windows<T: Float, const MAX: bool, const ASSIGN: bool>(
    g: &Geometry,
    rows: usize,
    x: &[T],
    y: &[T],
    dy: &[T],
    dx: &mut [T],
    zero_first: bool,
) {
    let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
    let inv = T::from_f64(1.0 / (g.f * g.f) as f64);
    for r in 0..rows {
        let (xr, yr, dyr) =
            (&x[r * in_len..(r + 1) * in_len], &y[r * out_len..(r + 1) * out_len], &dy[r * out_len..(r + 1) * out_len]);
        let dxr = &mut dx[r * in_len..(r + 1) * in_len];
        // Zeroed one example at a time, so that it is still in cache when the windows add to it.
        if zero_first {
            dxr.fill(T::ZERO);
        }
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let o = (oy * g.ow + ox) * d;
                let (ny, nx) = (g.reach(oy, g.h), g.reach(ox, g.w));
                let inv = if ny * nx == g.f * g.f { inv } else { T::from_f64(1.0 / (ny * nx) as f64) };
                let at = Taps { g, oy, ox, ny, nx };
                let w = WindowBackward::<T, MAX, ASSIGN> { at, xr, y: &yr[o..o + d], dy: &dyr[o..o + d], dxr, inv };
                by_blocks(d, &mut { w });
            }
        }
    }
}

struct WindowBackward<'a, T, const MAX: bool, const ASSIGN: bool> {
    at: Taps<'a>,
    xr: &'a [T],
    y: &'a [T],
    dy: &'a [T],
    dxr: &'a mut [T],
    inv: T,
}

impl<T: Float, const MAX: bool, const ASSIGN: bool> Block for WindowBackward<'_, T, MAX, ASSIGN> {
    #[inline(always)]
    fn block<const B: usize>(&mut self, c0: usize) {
        let (m, gv): ([T; B], [T; B]) = (block_at(self.y, c0), block_at(self.dy, c0));
        let mut found = [false; B];
        for fy in 0..self.at.ny {
            for fx in 0..self.at.nx {
                let at = self.at.at(fy, fx) + c0;
                let p: [T; B] = if MAX { block_at(self.xr, at) } else { [T::ZERO; B] };
                let dst = &mut self.dxr[at..at + B];
                for j in 0..B {
                    let v = if MAX {
                        // The gradient goes to the first input equal to the maximum.
                        let take = !found[j] & (p[j] == m[j]);
                        found[j] |= take;
                        if take {
                            gv[j]
                        } else {
                            T::ZERO
                        }
                    } else {
                        gv[j] * self.inv
                    };
                    dst[j] = if ASSIGN { T::ZERO + v } else { dst[j] + v };
                }
            }
        }
    }
}

/// Forward was `y = pool(x)`, so now `dx (+)=` the window's share of `dy`: all of it at the
/// (first) maximum; `dy/F²` everywhere for the average; `dy·x/y` for L2. Compiled for the
/// widest instruction set too, as [`forward`].
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
    pulp::Arch::new().dispatch(Backward { kind, g, rows, x, y, dy, dx, accumulate })
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
    // Windows that do not overlap write each input's gradient once; when they also cover
    // the whole input, `dx` needs no zeroing first.
    let apart = g.s >= g.f;
    let covered = g.s == g.f && g.oh * g.s >= g.h && g.ow * g.s >= g.w;
    let zero_first = !accumulate && !covered;
    match (kind, apart && !accumulate) {
        (PoolOp::Max, true) => backward_windows::<T, true, true>(g, rows, x, y, dy, dx, zero_first),
        (PoolOp::Max, false) => backward_windows::<T, true, false>(g, rows, x, y, dy, dx, zero_first),
        (PoolOp::Avg, true) => backward_windows::<T, false, true>(g, rows, x, y, dy, dx, zero_first),
        (PoolOp::Avg, false) => backward_windows::<T, false, false>(g, rows, x, y, dy, dx, zero_first),
        (PoolOp::L2, _) => backward_l2(g, rows, x, y, dy, dx, accumulate),
    }
}

/// L2 pooling's gradient: `dy·x/y` to every tap of a window whose `y` is positive.
#[inline(always)]
fn backward_l2<T: Float>(g: &Geometry, rows: usize, x: &[T], y: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
    let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
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
                let at = Taps { g, oy, ox, ny: g.reach(oy, g.h), nx: g.reach(ox, g.w) };
                for fy in 0..at.ny {
                    for fx in 0..at.nx {
                        let p = at.at(fy, fx);
                        let (px, dpx) = (&xr[p..p + d], &mut dxr[p..p + d]);
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

/// Maxout's reduction: `y[…, u] = max_j z[…, u·pieces + j]` over groups of `pieces`
/// consecutive values. Compiled for AVX2 too (elementwise: the same bits).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Pooling one channel at a time, as the definition reads: the reference.
    fn reference(kind: PoolOp, g: &Geometry, rows: usize, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Vec<f32> {
        let (h, w, d) = (g.h, g.w, g.d);
        let mut y = vec![0f32; rows * g.oh * g.ow * d];
        for r in 0..rows {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (ny, nx) = (g.reach(oy, h), g.reach(ox, w));
                    for c in 0..d {
                        let tap = |fy: usize, fx: usize| r * h * w * d + ((oy * g.s + fy) * w + ox * g.s + fx) * d + c;
                        let taps: Vec<usize> =
                            (0..ny).flat_map(|fy| (0..nx).map(move |fx| (fy, fx))).map(|(a, b)| tap(a, b)).collect();
                        let o = ((r * g.oh + oy) * g.ow + ox) * d + c;
                        match kind {
                            PoolOp::Max => {
                                let m = taps.iter().fold(x[taps[0]], |m, &i| m.max(x[i]));
                                y[o] = m;
                                let first = taps.iter().find(|&&i| x[i] == m).copied();
                                if let Some(i) = first {
                                    dx[i] += dy[o];
                                }
                            }
                            PoolOp::L2 => {
                                let v = taps.iter().fold(0.0f32, |s, &i| s + x[i] * x[i]).sqrt();
                                y[o] = v;
                                if v > 0.0 {
                                    taps.iter().for_each(|&i| dx[i] += dy[o] * x[i] / v);
                                }
                            }
                            PoolOp::Avg => {
                                let inv = 1.0 / (ny * nx) as f32;
                                y[o] = taps.iter().fold(0.0, |s, &i| s + x[i]) * inv;
                                taps.iter().for_each(|&i| dx[i] += dy[o] * inv);
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn same_bits(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
            panic!("{what}: value {i} is {} where {} was expected", got[i], want[i]);
        }
    }

    #[test]
    fn pooling_equals_its_definition_one_channel_at_a_time() {
        // Channels in every block size (37 = 32 + 4 + 1, 19 = 16 + 2 + 1), windows apart,
        // overlapping, cut at the edge (ceil), an input the windows do not cover (floor).
        let cases = [
            (8, 8, 37, 2, 2, 4, 4),
            (7, 7, 19, 3, 2, 3, 3),
            (11, 11, 5, 2, 2, 5, 5),
            (5, 5, 3, 2, 2, 3, 3),
            (9, 6, 8, 3, 3, 3, 2),
        ];
        for (h, w, d, f, s, oh, ow) in cases {
            let g = Geometry { h, w, d, k: d, f, s, p: 0, oh, ow, dil: 1, groups: 1 };
            let rows = 2;
            // Ties on purpose (values on a coarse grid): the gradient goes to the first maximum.
            let x: Vec<f32> = (0..rows * h * w * d).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
            let dy: Vec<f32> = (0..rows * oh * ow * d).map(|i| ((i * 13) % 7) as f32 * 0.25 - 0.5).collect();
            for kind in [PoolOp::Max, PoolOp::Avg, PoolOp::L2] {
                let what = format!("{kind:?} {h}×{w}×{d} f{f} s{s}");
                let mut want_dx = vec![0f32; x.len()];
                let want = reference(kind, &g, rows, &x, &dy, &mut want_dx);
                let mut y = vec![f32::NAN; want.len()];
                forward(kind, &g, rows, &x, &mut y);
                same_bits(&y, &want, &format!("forward {what}"));
                let mut dx = vec![f32::NAN; x.len()];
                backward(kind, &g, rows, &x, &y, &dy, &mut dx, false);
                same_bits(&dx, &want_dx, &format!("backward {what}"));
                // Accumulating adds each window's share to what is there, in window order.
                let mut want_acc = vec![1.0f32; x.len()];
                reference(kind, &g, rows, &x, &dy, &mut want_acc);
                let mut acc = vec![1.0f32; x.len()];
                backward(kind, &g, rows, &x, &y, &dy, &mut acc, true);
                same_bits(&acc, &want_acc, &format!("accumulated {what}"));
            }
        }
    }
}
