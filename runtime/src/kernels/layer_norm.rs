//! `layernorm(eps)`: each vector of `c` features (the last dimension: a dense layer's
//! outputs, a sequence's step, a volume's position) normalized by its own mean and variance
//! (biased, as PyTorch's `nn.LayerNorm`), then scaled by `γ` and shifted by `β`:
//! `y = γ·(x − μ)/√(σ² + ε) + β`. Nothing depends on the batch, so it is the same in training
//! and inference and however threads share the rows. The kernels and their step functions.

use crate::mem::{Cx, Rows};
use crate::ops::Done;
use crate::plan::{ABuf, PBuf, Write};
use crate::Float;

/// Each vector's mean and `1/√(σ² + ε)`, accumulated in f64 (then the same bits whatever the
/// vector width); without `center` (`rmsnorm`) the mean is taken as zero, and σ² is the mean
/// square.
#[inline(always)]
fn moments<T: Float>(v: &[T], eps: f64, center: bool) -> (T, T) {
    let n = v.len().max(1) as f64;
    let mean = if center { lane_sum(v, |x| x) / n } else { 0.0 };
    let var = lane_sum(v, |x| (x - mean) * (x - mean)) / n;
    (T::from_f64(mean), T::from_f64(1.0 / (var + eps).sqrt()))
}

/// `Σ f(v)` in f64 over eight partial sums (the vector's lanes) added in a fixed order: the
/// same bits whatever the vector width, without one long chain of dependent additions.
#[inline(always)]
fn lane_sum<T: Float>(v: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += f(x.to_f64());
        }
    }
    for (l, x) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += f(x.to_f64());
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// `y = γ·x̂ + β` for every vector of `c` values in `x` (rows of `cols`; a row outside its
/// sequence is zero and its statistics are not kept); `stats` gets each vector's `[μ, 1/σ]`.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(
    x: &[T],
    cols: usize,
    (gamma, beta): (&[T], Option<&[T]>),
    (eps, center): (f64, bool),
    y: &mut [T],
    stats: Option<&mut [T]>,
    valid: Rows,
) {
    super::vectorized(
        #[inline(always)]
        || forward_plain(x, cols, (gamma, beta), (eps, center), y, stats, valid),
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_plain<T: Float>(
    x: &[T],
    cols: usize,
    (gamma, beta): (&[T], Option<&[T]>),
    (eps, center): (f64, bool),
    y: &mut [T],
    mut stats: Option<&mut [T]>,
    valid: Rows,
) {
    let c = gamma.len().max(1);
    let per = cols / c;
    for (r, (xr, yr)) in x.chunks_exact(cols.max(1)).zip(y.chunks_exact_mut(cols.max(1))).enumerate() {
        if !valid.valid(r) {
            yr.fill(T::ZERO);
            continue;
        }
        for (p, (xv, yv)) in xr.chunks_exact(c).zip(yr.chunks_exact_mut(c)).enumerate() {
            let (mu, s) = moments(xv, eps, center);
            if let Some(st) = stats.as_deref_mut() {
                st[2 * (r * per + p)] = mu;
                st[2 * (r * per + p) + 1] = s;
            }
            match beta {
                Some(beta) => {
                    for (((o, &v), &g), &b) in yv.iter_mut().zip(xv).zip(gamma).zip(beta) {
                        *o = g * ((v - mu) * s) + b;
                    }
                }
                None => {
                    for ((o, &v), &g) in yv.iter_mut().zip(xv).zip(gamma) {
                        *o = g * ((v - mu) * s);
                    }
                }
            }
        }
    }
}

/// Forward was [`forward`], so now, with `g = dy·γ` and `x̂ = (x − μ)/σ`: `dx (+)= (g −
/// mean(g) − x̂·mean(g·x̂))/σ` per vector (without `center`, no `mean(g)` term: the mean was
/// not subtracted), `dγ = Σ dy·x̂`, `dβ = Σ dy` over every vector that counts.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    x: &[T],
    cols: usize,
    dy: &[T],
    (gamma, center): (&[T], bool),
    stats: &[T],
    (dgamma, dbeta): (&mut [T], Option<&mut [T]>),
    dx: Option<(&mut [T], bool)>,
    valid: Rows,
) {
    super::vectorized(
        #[inline(always)]
        || backward_plain(x, cols, dy, (gamma, center), stats, (dgamma, dbeta), dx, valid),
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_plain<T: Float>(
    x: &[T],
    cols: usize,
    dy: &[T],
    (gamma, center): (&[T], bool),
    stats: &[T],
    (dgamma, dbeta): (&mut [T], Option<&mut [T]>),
    mut dx: Option<(&mut [T], bool)>,
    valid: Rows,
) {
    let c = gamma.len().max(1);
    let per = cols / c;
    let (mut sg, mut sb) = (vec![0f64; c], vec![0f64; c]);
    // Per vector: x̂, g = dy·γ and g·x̂.
    let (mut xh, mut gs, mut gx) = (vec![T::ZERO; c], vec![T::ZERO; c], vec![T::ZERO; c]);
    for (r, (xr, dyr)) in x.chunks_exact(cols.max(1)).zip(dy.chunks_exact(cols.max(1))).enumerate() {
        let dxr = dx.as_mut().map(|(d, acc)| (&mut d[r * cols..(r + 1) * cols], *acc));
        if !valid.valid(r) {
            if let Some((d, false)) = dxr {
                d.fill(T::ZERO);
            }
            continue;
        }
        let mut dxr = dxr;
        for p in 0..per {
            let (xv, dyv) = (&xr[p * c..(p + 1) * c], &dyr[p * c..(p + 1) * c]);
            let (mu, s) = (stats[2 * (r * per + p)], stats[2 * (r * per + p) + 1]);
            for j in 0..c {
                xh[j] = (xv[j] - mu) * s;
                sg[j] += (dyv[j] * xh[j]).to_f64();
                sb[j] += dyv[j].to_f64();
                gs[j] = dyv[j] * gamma[j];
                gx[j] = gs[j] * xh[j];
            }
            let Some((d, acc)) = dxr.as_mut() else { continue };
            // The means over the vector in eight lanes (as the forward pass's moments): one
            // chain of dependent additions per vector was most of this step's time.
            let mg = if center { lane_sum(&gs, |v| v) } else { 0.0 };
            let (mg, mgx) = (T::from_f64(mg / c as f64), T::from_f64(lane_sum(&gx, |v| v) / c as f64));
            let d = &mut d[p * c..(p + 1) * c];
            if *acc {
                for j in 0..c {
                    d[j] += (gs[j] - mg - xh[j] * mgx) * s;
                }
            } else {
                for j in 0..c {
                    d[j] = (gs[j] - mg - xh[j] * mgx) * s;
                }
            }
        }
    }
    for j in 0..c {
        dgamma[j] = T::from_f64(sg[j]);
    }
    if let Some(dbeta) = dbeta {
        for j in 0..c {
            dbeta[j] = T::from_f64(sb[j]);
        }
    }
}

/// [`forward`] from the arena: `x` into `y`, the statistics into `stats` when training.
fn normalize<T: Float>(
    mem: &mut crate::mem::Mem<'_, T>,
    (x, y, stats): (ABuf, ABuf, Option<ABuf>),
    (g, b): (&[T], Option<&[T]>),
    how: (f64, bool),
    (rows, valid): (usize, Rows),
) {
    match stats {
        Some(st) => {
            let (out, st, r) = mem.split_rows2(y, st, rows);
            forward(r.get(x, rows), x.cols, (g, b), how, out, Some(st), valid);
        }
        None => {
            let (out, r) = mem.split(y, rows);
            forward(r.get(x, rows), x.cols, (g, b), how, out, None, valid);
        }
    }
}

/// The step `LayerNorm { x, y, gamma, beta, stats, eps }` (`stats` absent: inference).
#[allow(clippy::too_many_arguments)]
pub fn step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    y: ABuf,
    gamma: PBuf,
    beta: PBuf,
    stats: Option<ABuf>,
    eps: f64,
) -> Done {
    let (rows, valid) = (cx.rows, Rows { steps: cx.steps, lengths: cx.lengths });
    let (g, b) = (&cx.params[gamma.range()], &cx.params[beta.range()]);
    normalize(&mut cx.mem, (x, y, stats), (g, Some(b)), (eps, true), (rows, valid));
    Ok(())
}

/// The step `RmsNorm { x, y, gamma, stats, eps }` (`stats` absent: inference).
pub fn rms_step<T: Float>(cx: &mut Cx<'_, T>, x: ABuf, y: ABuf, gamma: PBuf, stats: Option<ABuf>, eps: f64) -> Done {
    let (rows, valid) = (cx.rows, Rows { steps: cx.steps, lengths: cx.lengths });
    let g = &cx.params[gamma.range()];
    normalize(&mut cx.mem, (x, y, stats), (g, None), (eps, false), (rows, valid));
    Ok(())
}

/// The step `LayerNormBackward { x, dy, gamma, dgamma, dbeta, stats, dx }`.
#[allow(clippy::too_many_arguments)]
pub fn backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    dy: ABuf,
    gamma: PBuf,
    dgamma: PBuf,
    dbeta: PBuf,
    stats: ABuf,
    dx: Option<(ABuf, Write)>,
) -> Done {
    gradients(cx, (x, dy, stats, dx), (gamma, true), (dgamma, Some(dbeta)))
}

/// The step `RmsNormBackward { x, dy, gamma, dgamma, stats, dx }`.
pub fn rms_backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    dy: ABuf,
    gamma: PBuf,
    dgamma: PBuf,
    stats: ABuf,
    dx: Option<(ABuf, Write)>,
) -> Done {
    gradients(cx, (x, dy, stats, dx), (gamma, false), (dgamma, None))
}

/// [`backward`] from the arena and the parameter store.
#[allow(clippy::type_complexity)]
fn gradients<T: Float>(
    cx: &mut Cx<'_, T>,
    (x, dy, stats, dx): (ABuf, ABuf, ABuf, Option<(ABuf, Write)>),
    (gamma, center): (PBuf, bool),
    (dgamma, dbeta): (PBuf, Option<PBuf>),
) -> Done {
    let (rows, valid) = (cx.rows, Rows { steps: cx.steps, lengths: cx.lengths });
    let g = &cx.params[gamma.range()];
    let (dg, db) = match dbeta {
        Some(dbeta) => {
            let (a, b) = cx.grads.split_at_mut(dbeta.offset.max(dgamma.offset));
            if dgamma.offset < dbeta.offset {
                (&mut a[dgamma.range()], Some(&mut b[..dbeta.len]))
            } else {
                (&mut b[..dgamma.len], Some(&mut a[dbeta.range()]))
            }
        }
        None => (&mut cx.grads[dgamma.range()], None),
    };
    match dx {
        Some((d, write)) => {
            let (dxs, r) = cx.mem.split(d, rows);
            let acc = write == Write::Accumulate;
            let (xs, dys, st) = (r.get(x, rows), r.get(dy, rows), r.get(stats, rows));
            backward(xs, x.cols, dys, (g, center), st, (dg, db), Some((dxs, acc)), valid);
        }
        None => {
            let r = cx.mem.all();
            let (xs, dys, st) = (r.get(x, rows), r.get(dy, rows), r.get(stats, rows));
            backward(xs, x.cols, dys, (g, center), st, (dg, db), None, valid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Rows<'static> = Rows { steps: 1, lengths: &[] };

    /// PyTorch's `F.layer_norm(x, (3,), γ, β)` on two vectors, and the gradients of
    /// `Σ y·w` against central differences.
    #[test]
    fn normalizes_each_vector_and_its_gradients_match_differences() {
        let x = [1.0f64, 2.0, 4.0, -1.0, 0.5, 3.0];
        let (g, b) = ([1.5, -0.5, 2.0], [0.1, 0.2, -0.3]);
        let mut y = [0.0; 6];
        let mut st = [0.0; 4];
        forward(&x, 3, (&g, Some(&b[..])), (1e-5, true), &mut y, Some(&mut st), ALL);
        // First vector: μ = 7/3, σ² = 14/9.
        let s = 1.0 / (14.0f64 / 9.0 + 1e-5).sqrt();
        assert!((y[0] - (1.5 * (1.0 - 7.0 / 3.0) * s + 0.1)).abs() < 1e-12, "{y:?}");
        let w = [0.3, -1.2, 0.7, 2.0, 0.4, -0.9];
        let loss = |x: &[f64], g: &[f64], b: &[f64]| {
            let mut y = [0.0; 6];
            forward(x, 3, (g, Some(b)), (1e-5, true), &mut y, None, ALL);
            y.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let (mut dg, mut db, mut dx) = ([0.0; 3], [0.0; 3], [0.0; 6]);
        backward(&x, 3, &w, (&g, true), &st, (&mut dg, Some(&mut db[..])), Some((&mut dx, false)), ALL);
        let h = 1e-6;
        for i in 0..6 {
            let (mut a, mut c) = (x, x);
            a[i] += h;
            c[i] -= h;
            let num = (loss(&a, &g, &b) - loss(&c, &g, &b)) / (2.0 * h);
            assert!((num - dx[i]).abs() < 1e-6, "dx[{i}]: {num} vs {}", dx[i]);
        }
        for j in 0..3 {
            let (mut a, mut c) = (g, g);
            a[j] += h;
            c[j] -= h;
            let num = (loss(&x, &a, &b) - loss(&x, &c, &b)) / (2.0 * h);
            assert!((num - dg[j]).abs() < 1e-6, "dγ[{j}]: {num} vs {}", dg[j]);
            assert!((db[j] - (w[j] + w[j + 3])).abs() < 1e-12, "dβ[{j}]");
        }
    }

    /// Without centring (`rmsnorm`): `y = γ·x/√(mean(x²) + ε)`, and its gradients.
    #[test]
    fn rms_normalizes_by_the_mean_square_and_its_gradients_match_differences() {
        let x = [1.0f64, 2.0, 4.0, -1.0, 0.5, 3.0];
        let g = [1.5, -0.5, 2.0];
        let mut y = [0.0; 6];
        let mut st = [0.0; 4];
        forward(&x, 3, (&g, None), (1e-6, false), &mut y, Some(&mut st), ALL);
        let s = 1.0 / (21.0f64 / 3.0 + 1e-6).sqrt();
        assert!((y[2] - 2.0 * 4.0 * s).abs() < 1e-12, "{y:?}");
        let w = [0.3, -1.2, 0.7, 2.0, 0.4, -0.9];
        let loss = |x: &[f64], g: &[f64]| {
            let mut y = [0.0; 6];
            forward(x, 3, (g, None), (1e-6, false), &mut y, None, ALL);
            y.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let (mut dg, mut dx) = ([0.0; 3], [0.0; 6]);
        backward(&x, 3, &w, (&g, false), &st, (&mut dg, None), Some((&mut dx, false)), ALL);
        let h = 1e-6;
        for i in 0..6 {
            let (mut a, mut c) = (x, x);
            a[i] += h;
            c[i] -= h;
            let num = (loss(&a, &g) - loss(&c, &g)) / (2.0 * h);
            assert!((num - dx[i]).abs() < 1e-6, "dx[{i}]: {num} vs {}", dx[i]);
        }
        for j in 0..3 {
            let (mut a, mut c) = (g, g);
            a[j] += h;
            c[j] -= h;
            let num = (loss(&x, &a) - loss(&x, &c)) / (2.0 * h);
            assert!((num - dg[j]).abs() < 1e-6, "dγ[{j}]: {num} vs {}", dg[j]);
        }
    }
}
