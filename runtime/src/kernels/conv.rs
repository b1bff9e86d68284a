//! Convolutions over channels-last volumes (`[height, width, depth]` per example) by im2col
//! and one matrix product per chunk of examples; locally-connected layers the same way with
//! one product per output position. Weights are in PyTorch's layout: conv `[K, D, F, F]`,
//! so an im2col column is ordered (depth, filter row, filter column).

use super::implicit;
use crate::plan::{Act, Geometry};
use crate::Float;

/// A convolution's output gradient for its backward pass: given whole, or made one example
/// at a time (`make(r, out)` writes example `r`'s into `out`, `oh·ow·k` values) just before
/// the pass reads it, so that it never exists for the whole batch
/// ([`crate::plan::Step::ConvBnBackward`]: a batch norm's input gradient).
pub enum Dy<'a, T> {
    /// Every example's, `rows · oh·ow·k` values.
    Given(&'a [T]),
    /// Made by the function for each example in turn.
    Made(&'a mut dyn FnMut(usize, &mut [T])),
}

/// Fills `p` (`(outH·outW) × (F·F·Dg)`, row-major) with the patches of one example `x`
/// (`H × W × D`) over the channels of `group` (`Dg = D / groups` of them); outside the input
/// (padding) is zero. A patch is ordered (filter row, filter column, channel), so with one
/// group and no dilation each filter row is one contiguous run of the input.
pub fn im2col<T: Float>(g: &Geometry, x: &[T], p: &mut [T], group: usize) {
    if !g.plain() {
        return im2col_taps(g, x, p, group);
    }
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

/// [`im2col`] tap by tap: `Dg` channels of the input per tap, taps `dil` apart.
fn im2col_taps<T: Float>(g: &Geometry, x: &[T], p: &mut [T], group: usize) {
    let (f, d, dg) = (g.f, g.d, g.dg());
    let (cols, c0) = (dg * f * f, group * dg);
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let row = &mut p[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
            for fy in 0..f {
                for fx in 0..f {
                    let dst = &mut row[(fy * f + fx) * dg..(fy * f + fx + 1) * dg];
                    match (g.tap(oy, fy, g.h), g.tap(ox, fx, g.w)) {
                        (Some(iy), Some(ix)) => {
                            let at = (iy * g.w + ix) * d + c0;
                            dst.iter_mut().zip(&x[at..at + dg]).for_each(|(v, &u)| *v = u);
                        }
                        _ => dst.iter_mut().for_each(|v| *v = T::ZERO),
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every patch entry of `p` back into `dx` (`H × W × D`).
pub fn col2im<T: Float>(g: &Geometry, p: &[T], dx: &mut [T], group: usize) {
    if !g.plain() {
        return col2im_taps(g, p, dx, group);
    }
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

/// [`col2im`] tap by tap, the adjoint of [`im2col_taps`].
fn col2im_taps<T: Float>(g: &Geometry, p: &[T], dx: &mut [T], group: usize) {
    let (f, d, dg) = (g.f, g.d, g.dg());
    let (cols, c0) = (dg * f * f, group * dg);
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let row = &p[(oy * g.ow + ox) * cols..(oy * g.ow + ox + 1) * cols];
            for fy in 0..f {
                let Some(iy) = g.tap(oy, fy, g.h) else { continue };
                for fx in 0..f {
                    let Some(ix) = g.tap(ox, fx, g.w) else { continue };
                    let at = (iy * g.w + ix) * d + c0;
                    let src = &row[(fy * f + fx) * dg..(fy * f + fx + 1) * dg];
                    dx[at..at + dg].iter_mut().zip(src).for_each(|(a, &v)| *a += v);
                }
            }
        }
    }
}

/// Weights `[n, Dg, F, F]` (PyTorch) reordered to patch order `[n, F, F, Dg]`; borrowed as
/// they are when the two orders agree (one channel per filter, or 1×1 filters).
fn to_patch_order<'a, T: Float>(g: &Geometry, n: usize, w: &'a [T]) -> std::borrow::Cow<'a, [T]> {
    let (f, d) = (g.f, g.dg());
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

/// Patch order back to PyTorch's: `dw[i, c, t] = src[i, t, c]`.
fn from_patch_order<T: Float>(g: &Geometry, n: usize, src: &[T], dw: &mut [T]) {
    let (f, d) = (g.f, g.dg());
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

/// Elements of one example's patches over one group.
pub(crate) fn per_example(g: &Geometry) -> usize {
    g.oh * g.ow * g.dg() * g.f * g.f
}

/// The patches of examples `r0..r0 + n` of `x` over `group` into `ws`, one example after
/// another.
fn patches<T: Float>(g: &Geometry, x: &[T], r0: usize, n: usize, ws: &mut [T], group: usize) {
    let (in_len, per) = (g.h * g.w * g.d, per_example(g));
    for i in 0..n {
        im2col(g, &x[(r0 + i) * in_len..(r0 + i + 1) * in_len], &mut ws[i * per..(i + 1) * per], group);
    }
}

/// The adjoint of [`patches`]: adds the patch gradients in `ws` into examples `r0..r0 + n`
/// of `dx`.
fn unpatch<T: Float>(g: &Geometry, ws: &[T], r0: usize, n: usize, dx: &mut [T], group: usize) {
    let (in_len, per) = (g.h * g.w * g.d, per_example(g));
    for i in 0..n {
        col2im(g, &ws[i * per..(i + 1) * per], &mut dx[(r0 + i) * in_len..(r0 + i + 1) * in_len], group);
    }
}

/// Examples per im2col chunk: as many as fit the workspace `ws_len`.
pub fn chunk(g: &Geometry, ws_len: usize) -> usize {
    (ws_len / per_example(g).max(1)).max(1)
}

/// `y = f(conv(x) + b)` for `rows` examples; `ws` is the im2col workspace. Group `j`'s
/// filters (`kg` of them, from `j·kg`) see its channels alone: one product per group.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(g: &Geometry, f: Act, rows: usize, x: &[T], w: &[T], b: &[T], y: &mut [T], ws: &mut [T]) {
    if g.depthwise() {
        return super::depthwise::forward(g, f, rows, x, w, b, y);
    }
    if T::conv_forward(g, f, rows, x, w, b, y) {
        return;
    }
    let (cols, k, kg, positions) = (g.dg() * g.f * g.f, g.k, g.kg(), g.oh * g.ow);
    let out_len = positions * k;
    let w = &to_patch_order(g, k, w)[..];
    if b.is_empty() {
        // No bias (`bias = false`).
        y[..rows * out_len].fill(T::ZERO);
    } else {
        for out in y[..rows * out_len].chunks_exact_mut(k) {
            // Element by element: a `memcpy` call per output position cost more than the copy.
            out.iter_mut().zip(&b[..k]).for_each(|(o, &v)| *o = v);
        }
    }
    let per = chunk(g, ws.len());
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        for j in 0..g.groups {
            patches(g, x, r0, n, ws, j);
            // Y_j[n·P × Kg] += P_j[n·P × cols] · W_jᵀ[cols × Kg]
            let out = &mut y[r0 * out_len + j * kg..];
            let wj = &w[j * kg * cols..];
            T::gemm(
                n * positions,
                cols,
                kg,
                T::ONE,
                ws,
                cols as isize,
                1,
                wj,
                1,
                cols as isize,
                T::ONE,
                out,
                k as isize,
                1,
            );
        }
        r0 += n;
    }
    super::elementwise::activation_in_place(f, &mut y[..rows * out_len]);
}

/// Forward was `y = conv(x) + b`, so now `dW = Σ dyᵀ·patches`, `db = Σ dy`, and, when `dx`
/// is given, `dx (+)= col2im(dy·W)` — group by group.
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
    if g.depthwise() {
        return super::depthwise::backward(g, rows, x, w, dy, dw, db, dx);
    }
    // Without im2col where the processor allows (see `implicit`); `dx` by im2col when its
    // convolution would be mostly padding (few input channels) or the stride is above the
    // filter's size (`implicit::input_grads`).
    let direct_dx = dx.is_some() && implicit::input_grads(g);
    let reborrowed = if direct_dx { dx.as_mut().map(|(d, keep)| (&mut **d, *keep)) } else { None };
    if T::conv_backward(g, rows, x, w, Dy::Given(dy), dw, db, reborrowed) {
        if let Some((d, keep)) = dx.filter(|_| !direct_dx) {
            input_grads(g, rows, w, dy, d, keep, ws);
        }
        return;
    }
    let (cols, k, kg, positions) = (g.dg() * g.f * g.f, g.k, g.kg(), g.oh * g.ow);
    let (in_len, out_len) = (g.h * g.w * g.d, positions * k);
    let w = &to_patch_order(g, k, w)[..];
    let mut dw_patch = vec![T::ZERO; k * cols];
    // (An empty `db`: the convolution has no bias.)
    if !db.is_empty() {
        db[..k].fill(T::ZERO);
        for row in dy[..rows * out_len].chunks_exact(k) {
            db[..k].iter_mut().zip(row).for_each(|(g, &v)| *g += v);
        }
    }
    let per = chunk(g, ws.len());
    if let Some((d, false)) = dx.as_mut() {
        d[..rows * in_len].fill(T::ZERO);
    }
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        for j in 0..g.groups {
            patches(g, x, r0, n, ws, j);
            let dyc = &dy[r0 * out_len + j * kg..];
            // dW_j[Kg × cols] (+)= dY_jᵀ[Kg × n·P] · P_j[n·P × cols]
            let beta = if r0 == 0 { T::ZERO } else { T::ONE };
            let dwj = &mut dw_patch[j * kg * cols..];
            T::gemm(
                kg,
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
                dwj,
                cols as isize,
                1,
            );
            if let Some((d, _)) = dx.as_mut() {
                group_input_grads(g, w, dyc, (r0, n, j), ws, d);
            }
        }
        r0 += n;
    }
    from_patch_order(g, k, &dw_patch, dw);
}

/// [`backward`] from an output gradient made one example at a time ([`Dy::Made`]): read
/// straight from a buffer of one example by the register tiles where they take the whole
/// pass (a plain geometry, and `dx` not asked for or direct); elsewhere every example's is
/// made into one buffer first and [`backward`] runs on it — the same results either way.
#[allow(clippy::too_many_arguments)]
pub fn backward_made<T: Float>(
    g: &Geometry,
    rows: usize,
    x: &[T],
    w: &[T],
    make: &mut dyn FnMut(usize, &mut [T]),
    dw: &mut [T],
    db: &mut [T],
    mut dx: Option<(&mut [T], bool)>,
    ws: &mut [T],
) {
    let tiles = g.plain() && (dx.is_none() || implicit::input_grads(g));
    let reborrowed = dx.as_mut().map(|(d, keep)| (&mut **d, *keep));
    if tiles && T::conv_backward(g, rows, x, w, Dy::Made(&mut *make), dw, db, reborrowed) {
        return;
    }
    let out_len = g.oh * g.ow * g.k;
    let mut dy = vec![T::ZERO; rows * out_len];
    for (r, row) in dy.chunks_exact_mut(out_len.max(1)).enumerate() {
        make(r, row);
    }
    backward(g, rows, x, w, &dy, dw, db, dx, ws);
}

/// Group `j`'s share of `dx` for examples `r0..r0 + n`: `dP_j[n·P × cols] = dY_j[n·P × Kg] ·
/// W_j[Kg × cols]` (`w` in patch order, `dyc` from the chunk's first row and the group's
/// first filter), added back into the volume.
fn group_input_grads<T: Float>(
    g: &Geometry,
    w: &[T],
    dyc: &[T],
    (r0, n, j): (usize, usize, usize),
    ws: &mut [T],
    dx: &mut [T],
) {
    let (cols, k, kg, positions) = (g.dg() * g.f * g.f, g.k, g.kg(), g.oh * g.ow);
    let wj = &w[j * kg * cols..];
    T::gemm(n * positions, kg, cols, T::ONE, dyc, k as isize, 1, wj, cols as isize, 1, T::ZERO, ws, cols as isize, 1);
    unpatch(g, ws, r0, n, dx, j);
}

/// `dx (+)= col2im(dy·W)` by im2col alone (`keep`: add to `dx`), for the geometries whose
/// input gradient [`implicit`] leaves.
#[allow(clippy::too_many_arguments)]
fn input_grads<T: Float>(g: &Geometry, rows: usize, w: &[T], dy: &[T], dx: &mut [T], keep: bool, ws: &mut [T]) {
    let (k, kg, positions) = (g.k, g.kg(), g.oh * g.ow);
    let (in_len, out_len) = (g.h * g.w * g.d, positions * k);
    let w = &to_patch_order(g, k, w)[..];
    if !keep {
        dx[..rows * in_len].fill(T::ZERO);
    }
    let per = chunk(g, ws.len());
    let mut r0 = 0;
    while r0 < rows {
        let n = per.min(rows - r0);
        for j in 0..g.groups {
            group_input_grads(g, w, &dy[r0 * out_len + j * kg..], (r0, n, j), ws, dx);
        }
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
        patches(g, x, r0, n, ws, 0);
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
        patches(g, x, r0, n, ws, 0);
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
            unpatch(g, ws, r0, n, d, 0);
        }
        r0 += n;
    }
    from_patch_order(g, positions * k, dw, final_dw);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patches of `group` by their definition: input (y·s + fy·dil − p, x·s + fx·dil − p,
    /// group·Dg + c), zero outside.
    fn naive(g: &Geometry, x: &[f32], group: usize) -> Vec<f32> {
        let dg = g.dg();
        let cols = dg * g.f * g.f;
        let mut p = vec![f32::NAN; g.oh * g.ow * cols];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for fy in 0..g.f {
                    for fx in 0..g.f {
                        for c in 0..dg {
                            let at = |o: usize, t: usize| (o * g.s + t * g.dil) as isize - g.p as isize;
                            let (iy, ix) = (at(oy, fy), at(ox, fx));
                            let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w;
                            p[(oy * g.ow + ox) * cols + (fy * g.f + fx) * dg + c] =
                                if inside { x[(iy as usize * g.w + ix as usize) * g.d + group * dg + c] } else { 0.0 };
                        }
                    }
                }
            }
        }
        p
    }

    #[test]
    fn im2col_is_the_patches_for_every_stride_padding_dilation_and_group() {
        for &(h, w, d, f, s, p, dil, groups) in &[
            (5, 7, 1, 3, 1, 1, 1, 1),
            (6, 6, 3, 3, 2, 1, 1, 1),
            (4, 9, 2, 5, 1, 2, 1, 1),
            (7, 5, 4, 2, 3, 0, 1, 1),
            (3, 3, 1, 5, 1, 3, 1, 1),
            (8, 8, 16, 3, 1, 1, 1, 1),
            (9, 9, 4, 3, 1, 2, 2, 1),
            (10, 8, 6, 3, 2, 1, 3, 3),
            (6, 6, 4, 3, 1, 1, 1, 2),
            (7, 7, 4, 2, 1, 0, 2, 4),
        ] {
            let span = dil * (f - 1) + 1;
            let (oh, ow) = ((h + 2 * p - span) / s + 1, (w + 2 * p - span) / s + 1);
            let g = Geometry { h, w, d, k: groups, f, s, p, oh, ow, dil, groups };
            let x: Vec<f32> = (0..h * w * d).map(|i| i as f32 + 1.0).collect();
            for group in 0..groups {
                let mut got = vec![f32::NAN; oh * ow * g.dg() * f * f];
                im2col(&g, &x, &mut got, group);
                assert_eq!(got, naive(&g, &x, group), "{g:?} group {group}");
                // col2im is its adjoint: <im2col(x), q> = <x, col2im(q)>, with integers (exact).
                let q: Vec<f32> = (0..got.len()).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
                let mut back = vec![0f32; x.len()];
                col2im(&g, &q, &mut back, group);
                let lhs: f32 = got.iter().zip(&q).map(|(a, b)| a * b).sum();
                let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
                assert_eq!(lhs, rhs, "{g:?} group {group}");
            }
        }
    }
}
