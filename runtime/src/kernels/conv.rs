//! Convolutions over channels-last volumes (`[height, width, depth]` per example) by im2col
//! and one matrix product per chunk of examples; locally-connected layers the same way with
//! one product per output position. Weights are in PyTorch's layout: conv `[K, D, F, F]`,
//! so an im2col column is ordered (depth, filter row, filter column).

use super::implicit;
use crate::plan::{Act, Geometry};
use crate::Float;

/// Fills `p` (`(outH·outW) × (F·F·D)`, row-major) with the patches of one example `x`
/// (`H × W × D`); outside the input (padding) is zero. A patch is ordered (filter row,
/// filter column, depth), so each tap is one contiguous run of `D` values of the input.
pub fn im2col<T: Float>(g: &Geometry, x: &[T], p: &mut [T]) {
    let (f, d, s, pad) = (g.f, g.d, g.s, g.p as isize);
    let cols = d * f * f;
    // One filter row of a patch is `f` taps of `d` values: inside the input they are one
    // contiguous run of it, copied at once (element by element: the runs are short, and a
    // `memcpy` call per run cost more than the copy).
    let run = f * d;
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let row = &mut p[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
            // The window's first input column, and its columns `lo..hi` inside the input.
            let x0 = (ox * s) as isize - pad;
            let lo = (-x0).clamp(0, f as isize) as usize;
            let hi = (g.w as isize - x0).clamp(0, f as isize) as usize;
            for fy in 0..f {
                let iy = (oy * s + fy) as isize - pad;
                let dst = &mut row[fy * run..(fy + 1) * run];
                if iy < 0 || iy as usize >= g.h || lo >= hi {
                    dst.iter_mut().for_each(|v| *v = T::ZERO);
                    continue;
                }
                let first = (iy as usize * g.w) as isize + x0 + lo as isize;
                let src = &x[first as usize * d..(first as usize + hi - lo) * d];
                dst[..lo * d].iter_mut().for_each(|v| *v = T::ZERO);
                dst[lo * d..hi * d].iter_mut().zip(src).for_each(|(v, &u)| *v = u);
                dst[hi * d..].iter_mut().for_each(|v| *v = T::ZERO);
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every patch entry of `p` back into `dx` (`H × W × D`).
pub fn col2im<T: Float>(g: &Geometry, p: &[T], dx: &mut [T]) {
    let (f, d, s, pad) = (g.f, g.d, g.s, g.p as isize);
    let cols = d * f * f;
    let run = f * d;
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let row = &p[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
            // As in `im2col`: the window's columns `lo..hi` inside the input, one run each row.
            let x0 = (ox * s) as isize - pad;
            let lo = (-x0).clamp(0, f as isize) as usize;
            let hi = (g.w as isize - x0).clamp(0, f as isize) as usize;
            if lo >= hi {
                continue;
            }
            for fy in 0..f {
                let iy = (oy * s + fy) as isize - pad;
                if iy < 0 || iy as usize >= g.h {
                    continue;
                }
                let first = ((iy as usize * g.w) as isize + x0 + lo as isize) as usize;
                let src = &row[fy * run + lo * d..fy * run + hi * d];
                dx[first * d..(first + hi - lo) * d].iter_mut().zip(src).for_each(|(a, &v)| *a += v);
            }
        }
    }
}

/// Weights `[n, D, F, F]` (PyTorch) reordered to patch order `[n, F, F, D]`; borrowed as
/// they are when the two orders agree (one channel, or 1×1 filters).
fn to_patch_order<'a, T: Float>(g: &Geometry, n: usize, w: &'a [T]) -> std::borrow::Cow<'a, [T]> {
    let (f, d) = (g.f, g.d);
    let cols = d * f * f;
    if d == 1 || f == 1 {
        return std::borrow::Cow::Borrowed(&w[..n * cols]);
    }
    let mut out = vec![T::ZERO; n * cols];
    for i in 0..n {
        for c in 0..d {
            for t in 0..f * f {
                out[i * cols + t * d + c] = w[i * cols + c * f * f + t];
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Patch order back to PyTorch's: `dw[i, c, t] (=|+=) src[i, t, c]`.
fn from_patch_order<T: Float>(g: &Geometry, n: usize, src: &[T], dw: &mut [T]) {
    let (f, d) = (g.f, g.d);
    let cols = d * f * f;
    if d == 1 || f == 1 {
        dw[..n * cols].copy_from_slice(&src[..n * cols]);
        return;
    }
    for i in 0..n {
        for c in 0..d {
            for t in 0..f * f {
                dw[i * cols + c * f * f + t] = src[i * cols + t * d + c];
            }
        }
    }
}

/// The patches of examples `r0..r0 + n` of `x` into `ws`, one example after another.
fn patches<T: Float>(g: &Geometry, x: &[T], r0: usize, n: usize, ws: &mut [T]) {
    let (in_len, per) = (g.h * g.w * g.d, g.oh * g.ow * g.d * g.f * g.f);
    for i in 0..n {
        im2col(g, &x[(r0 + i) * in_len..(r0 + i + 1) * in_len], &mut ws[i * per..(i + 1) * per]);
    }
}

/// The adjoint of [`patches`]: adds the patch gradients in `ws` into examples `r0..r0 + n`
/// of `dx`.
fn unpatch<T: Float>(g: &Geometry, ws: &[T], r0: usize, n: usize, dx: &mut [T]) {
    let (in_len, per) = (g.h * g.w * g.d, g.oh * g.ow * g.d * g.f * g.f);
    for i in 0..n {
        col2im(g, &ws[i * per..(i + 1) * per], &mut dx[(r0 + i) * in_len..(r0 + i + 1) * in_len]);
    }
}

/// Examples per im2col chunk: as many as fit the workspace `ws_len`.
pub fn chunk(g: &Geometry, ws_len: usize) -> usize {
    (ws_len / (g.oh * g.ow * g.d * g.f * g.f).max(1)).max(1)
}

/// `y = f(conv(x) + b)` for `rows` examples; `ws` is the im2col workspace.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(g: &Geometry, f: Act, rows: usize, x: &[T], w: &[T], b: &[T], y: &mut [T], ws: &mut [T]) {
    if T::conv_forward(g, f, rows, x, w, b, y) {
        return;
    }
    let (cols, k, positions) = (g.d * g.f * g.f, g.k, g.oh * g.ow);
    let out_len = positions * k;
    let w = &to_patch_order(g, k, w)[..];
    for out in y[..rows * out_len].chunks_exact_mut(k) {
        // Element by element: a `memcpy` call per output position cost more than the copy.
        out.iter_mut().zip(&b[..k]).for_each(|(o, &v)| *o = v);
    }
    let per = chunk(g, ws.len());
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        patches(g, x, r0, n, ws);
        // Y[n·P × K] += P[n·P × cols] · Wᵀ[cols × K]
        let out = &mut y[r0 * out_len..];
        T::gemm(n * positions, cols, k, T::ONE, ws, cols as isize, 1, w, 1, cols as isize, T::ONE, out, k as isize, 1);
        r0 += n;
    }
    super::elementwise::activation_in_place(f, &mut y[..rows * out_len]);
}

/// Forward was `y = conv(x) + b`, so now `dW = Σ dyᵀ·patches`, `db = Σ dy`, and, when `dx`
/// is given, `dx (+)= col2im(dy·W)`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    g: &Geometry,
    rows: usize,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
    mut dx: Option<(&mut [T], bool)>,
    ws: &mut [T],
) {
    // Without im2col where the processor allows (see `implicit`); `dx` by im2col when its
    // convolution would be mostly padding or the stride is above 1.
    let direct_dx = dx.is_some() && implicit::input_grads(g);
    let reborrowed = if direct_dx { dx.as_mut().map(|(d, keep)| (&mut **d, *keep)) } else { None };
    if T::conv_backward(g, rows, x, w, dy, dw, db, reborrowed) {
        if let Some((d, keep)) = dx.filter(|_| !direct_dx) {
            input_grads(g, rows, w, dy, d, keep, ws);
        }
        return;
    }
    let (cols, k, positions) = (g.d * g.f * g.f, g.k, g.oh * g.ow);
    let (in_len, out_len) = (g.h * g.w * g.d, positions * k);
    let w = &to_patch_order(g, k, w)[..];
    let mut dw_patch = vec![T::ZERO; k * cols];
    db[..k].fill(T::ZERO);
    for row in dy[..rows * out_len].chunks_exact(k) {
        db[..k].iter_mut().zip(row).for_each(|(g, &v)| *g += v);
    }
    let per = chunk(g, ws.len());
    if let Some((d, false)) = dx.as_mut() {
        d[..rows * in_len].fill(T::ZERO);
    }
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        patches(g, x, r0, n, ws);
        let dyc = &dy[r0 * out_len..];
        // dW[K × cols] (+)= dYᵀ[K × n·P] · P[n·P × cols]
        let beta = if r0 == 0 { T::ZERO } else { T::ONE };
        T::gemm(
            k,
            n * positions,
            cols,
            T::ONE,
            dyc,
            1,
            k as isize,
            ws,
            cols as isize,
            1,
            beta,
            &mut dw_patch,
            cols as isize,
            1,
        );
        if let Some((d, _)) = dx.as_mut() {
            // dP[n·P × cols] = dY[n·P × K] · W[K × cols], then back to the volume.
            T::gemm(
                n * positions,
                k,
                cols,
                T::ONE,
                dyc,
                k as isize,
                1,
                w,
                cols as isize,
                1,
                T::ZERO,
                ws,
                cols as isize,
                1,
            );
            unpatch(g, ws, r0, n, d);
        }
        r0 += n;
    }
    from_patch_order(g, k, &dw_patch, dw);
}

/// `dx (+)= col2im(dy·W)` by im2col alone (`keep`: add to `dx`), for the geometries whose
/// input gradient [`implicit`] leaves.
#[allow(clippy::too_many_arguments)]
fn input_grads<T: Float>(g: &Geometry, rows: usize, w: &[T], dy: &[T], dx: &mut [T], keep: bool, ws: &mut [T]) {
    let (cols, k, positions) = (g.d * g.f * g.f, g.k, g.oh * g.ow);
    let (in_len, out_len) = (g.h * g.w * g.d, positions * k);
    let w = &to_patch_order(g, k, w)[..];
    if !keep {
        dx[..rows * in_len].fill(T::ZERO);
    }
    let per = chunk(g, ws.len());
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        // dP[n·P × cols] = dY[n·P × K] · W[K × cols], then back to the volume.
        let dyc = &dy[r0 * out_len..];
        T::gemm(n * positions, k, cols, T::ONE, dyc, k as isize, 1, w, cols as isize, 1, T::ZERO, ws, cols as isize, 1);
        unpatch(g, ws, r0, n, dx);
        r0 += n;
    }
}

/// Locally-connected: `y[p, k] = W[p, k] · patch_p + b[p, k]` with a filter per position `p`;
/// W `[outH, outW, K, D, F, F]`, b `[outH, outW, K]`.
#[allow(clippy::too_many_arguments)]
pub fn local_forward<T: Float>(g: &Geometry, rows: usize, x: &[T], w: &[T], b: &[T], y: &mut [T], ws: &mut [T]) {
    let (cols, k, positions) = (g.d * g.f * g.f, g.k, g.oh * g.ow);
    let w = &to_patch_order(g, positions * k, w)[..];
    let out_len = positions * k;
    for r in 0..rows {
        y[r * out_len..(r + 1) * out_len].copy_from_slice(&b[..out_len]);
    }
    let per = chunk(g, ws.len());
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        patches(g, x, r0, n, ws);
        for pos in 0..positions {
            // Y_p[n × K] += P_p[n × cols] · W_pᵀ[cols × K]
            T::gemm(
                n,
                cols,
                k,
                T::ONE,
                &ws[pos * cols..],
                (positions * cols) as isize,
                1,
                &w[pos * k * cols..],
                1,
                cols as isize,
                T::ONE,
                &mut y[r0 * out_len + pos * k..],
                out_len as isize,
                1,
            );
        }
        r0 += n;
    }
}

/// Forward was the locally-connected map, so now per position `dW_p = dY_pᵀ·P_p`,
/// `db_p = Σ dY_p`, `dP_p = dY_p·W_p`, and `dx (+)= col2im(dP)`.
#[allow(clippy::too_many_arguments)]
pub fn local_backward<T: Float>(
    g: &Geometry,
    rows: usize,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
    dx: Option<(&mut [T], bool)>,
    ws: &mut [T],
) {
    let (cols, k, positions) = (g.d * g.f * g.f, g.k, g.oh * g.ow);
    let (in_len, out_len) = (g.h * g.w * g.d, positions * k);
    let w = &to_patch_order(g, positions * k, w)[..];
    let mut dw_patch = vec![T::ZERO; positions * k * cols];
    let (final_dw, dw) = (dw, &mut dw_patch[..]);
    db[..out_len].fill(T::ZERO);
    for row in dy[..rows * out_len].chunks_exact(out_len) {
        db[..out_len].iter_mut().zip(row).for_each(|(g, &v)| *g += v);
    }
    let per = chunk(g, ws.len());
    let mut dx = dx;
    if let Some((d, false)) = dx.as_mut() {
        d[..rows * in_len].fill(T::ZERO);
    }
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        patches(g, x, r0, n, ws);
        let beta = if r0 == 0 { T::ZERO } else { T::ONE };
        for pos in 0..positions {
            T::gemm(
                k,
                n,
                cols,
                T::ONE,
                &dy[r0 * out_len + pos * k..],
                1,
                out_len as isize,
                &ws[pos * cols..],
                (positions * cols) as isize,
                1,
                beta,
                &mut dw[pos * k * cols..],
                cols as isize,
                1,
            );
        }
        if let Some((d, _)) = dx.as_mut() {
            for pos in 0..positions {
                T::gemm(
                    n,
                    k,
                    cols,
                    T::ONE,
                    &dy[r0 * out_len + pos * k..],
                    out_len as isize,
                    1,
                    &w[pos * k * cols..],
                    cols as isize,
                    1,
                    T::ZERO,
                    &mut ws[pos * cols..],
                    (positions * cols) as isize,
                    1,
                );
            }
            unpatch(g, ws, r0, n, d);
        }
        r0 += n;
    }
    from_patch_order(g, positions * k, dw, final_dw);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patches by their definition: input (y·s + fy − p, x·s + fx − p, c), zero outside.
    fn naive(g: &Geometry, x: &[f32]) -> Vec<f32> {
        let cols = g.d * g.f * g.f;
        let mut p = vec![f32::NAN; g.oh * g.ow * cols];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for fy in 0..g.f {
                    for fx in 0..g.f {
                        for c in 0..g.d {
                            let (iy, ix) =
                                ((oy * g.s + fy) as isize - g.p as isize, (ox * g.s + fx) as isize - g.p as isize);
                            let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w;
                            p[(oy * g.ow + ox) * cols + (fy * g.f + fx) * g.d + c] =
                                if inside { x[(iy as usize * g.w + ix as usize) * g.d + c] } else { 0.0 };
                        }
                    }
                }
            }
        }
        p
    }

    #[test]
    fn im2col_is_the_patches_for_every_stride_and_padding() {
        for &(h, w, d, f, s, p) in &[
            (5, 7, 1, 3, 1, 1),
            (6, 6, 3, 3, 2, 1),
            (4, 9, 2, 5, 1, 2),
            (7, 5, 4, 2, 3, 0),
            (3, 3, 1, 5, 1, 3),
            (8, 8, 16, 3, 1, 1),
        ] {
            let (oh, ow) = ((h + 2 * p - f) / s + 1, (w + 2 * p - f) / s + 1);
            let g = Geometry { h, w, d, k: 1, f, s, p, oh, ow };
            let x: Vec<f32> = (0..h * w * d).map(|i| i as f32 + 1.0).collect();
            let mut got = vec![f32::NAN; oh * ow * d * f * f];
            im2col(&g, &x, &mut got);
            assert_eq!(got, naive(&g, &x), "{g:?}");
            // col2im is its adjoint: <im2col(x), q> = <x, col2im(q)>, here with integers (exact).
            let q: Vec<f32> = (0..got.len()).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let mut back = vec![0f32; x.len()];
            col2im(&g, &q, &mut back);
            let lhs: f32 = got.iter().zip(&q).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{g:?}");
        }
    }
}
