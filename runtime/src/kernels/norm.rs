//! `batchnorm`: each channel (the last dimension of a value: a dense layer's features, a
//! convolution's channels, a sequence's features at every step) normalized by the batch's
//! mean and variance while training, by the running averages otherwise, then scaled and
//! shifted: `y = γ·(x − μ)/√(σ² + ε) + β` (PyTorch's `BatchNorm1d`/`BatchNorm2d`).
//!
//! The batch's statistics are over every row that counts (the padding of shorter sequences
//! does not) and every position of a row; on a batch shared among workers (threads or
//! processes) they are summed over all of them ([`crate::mem::Peers`]), so that each worker
//! normalizes with the whole batch's statistics, as one thread would. The sums are taken in
//! double precision.
//!
//! The training step leaves the batch's mean and unbiased variance in the gradient slots of
//! the running averages; the optimizer moves the averages toward them after the step
//! ([`crate::plan::Role::State`]).

use super::{block_at, by_blocks, vectorized, Block};
use crate::mem::{Cx, Rows};
use crate::ops::Done;
use crate::plan::{ABuf, Geometry, PBuf, Write};
use crate::Float;

/// Each channel's sum and sum of squares over the rows that count, and how many values
/// that is per channel: `[Σx (C), Σx² (C), n]`.
fn moments<T: Float>(x: &[T], rows: usize, channels: usize, valid: Rows) -> Vec<f64> {
    vectorized(
        #[inline(always)]
        || moments_plain(x, rows, channels, valid),
    )
}

#[inline(always)]
fn moments_plain<T: Float>(x: &[T], rows: usize, channels: usize, valid: Rows) -> Vec<f64> {
    let mut out = vec![0.0f64; 2 * channels + 1];
    add_moments(x, rows, channels, valid, &mut out);
    out
}

/// [`moments`] of `x` added to those in `out` (the sums continue: each channel's in the order
/// of the rows, as one pass over all of them).
#[inline(always)]
fn add_moments<T: Float>(x: &[T], rows: usize, channels: usize, valid: Rows, out: &mut [f64]) {
    let cols = x.len() / rows.max(1);
    let n = valid.count(rows) * (cols / channels.max(1));
    for span in row_spans(rows, cols) {
        by_blocks(channels, &mut Moments { x, span, cols, channels, valid, out: &mut *out });
    }
    out[2 * channels] += n as f64;
}

/// Rows a block of channels sweeps before the next block takes its turn: about 128 KiB of
/// values, so that each block's pass finds the rows in cache (a block of channels reads only
/// its part of every position; over a whole tensor of many channels, each block's pass would
/// stream it from memory again).
fn row_spans(rows: usize, cols: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    spans(rows, rows_within(128 * 1024, cols))
}

/// Rows of `cols` values that make about `bytes` (at least one).
fn rows_within(bytes: usize, cols: usize) -> usize {
    (bytes / 4 / cols.max(1)).max(1)
}

/// `0..rows` in spans of `per` rows (the last may be shorter).
fn spans(rows: usize, per: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let per = per.max(1);
    (0..rows).step_by(per).map(move |r| r..(r + per).min(rows))
}

/// Each channel's `Σx` and `Σx²` into `out` (`[Σx (C), Σx² (C)]`).
struct Moments<'a, 'o, T> {
    x: &'a [T],
    /// The rows summed now (the sums in `out` continue those of the rows before).
    span: std::ops::Range<usize>,
    cols: usize,
    channels: usize,
    valid: Rows<'a>,
    out: &'o mut [f64],
}

impl<T: Float> Block for Moments<'_, '_, T> {
    #[inline(always)]
    fn block<const B: usize>(&mut self, c0: usize) {
        let c = self.channels;
        let (mut sum, mut squares): ([f64; B], [f64; B]) = (block_at(self.out, c0), block_at(self.out, c + c0));
        let cols = self.cols.max(1);
        let rows = self.x[self.span.start * cols..self.span.end * cols].chunks_exact(cols);
        for (r, row) in rows.enumerate() {
            if !self.valid.valid(self.span.start + r) {
                continue;
            }
            for pos in row.chunks_exact(self.channels) {
                let v: [T; B] = block_at(pos, c0);
                for j in 0..B {
                    let v = v[j].to_f64();
                    sum[j] += v;
                    squares[j] += v * v;
                }
            }
        }
        self.out[c0..c0 + B].copy_from_slice(&sum);
        self.out[self.channels + c0..self.channels + c0 + B].copy_from_slice(&squares);
    }
}

/// The step `BatchNorm { x, y, gamma, beta, mean, var, stats, eps }` of a training plan:
/// normalizes with the batch's statistics, keeps them in `stats` (`[μ (C), 1/√(σ² + ε) (C),
/// n]`) for the backward step, and leaves μ and the unbiased σ² in the gradient slots of the
/// running averages `mean` and `var`.
#[allow(clippy::too_many_arguments)]
pub fn train_step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    y: ABuf,
    gamma: PBuf,
    beta: PBuf,
    mean: PBuf,
    var: PBuf,
    stats: ABuf,
    eps: f64,
    relu: bool,
) -> Done {
    let (rows, c) = (cx.rows, gamma.len);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let (out, st, r) = cx.mem.split2(y, rows, stats);
    let xs = r.get(x, rows);
    batch_stats(xs, rows, valid, &cx.peers, st, (cx.params, &mut *cx.grads), (mean, var), eps);
    let (g, b) = (&cx.params[gamma.range()], &cx.params[beta.range()]);
    normalize(xs, out, rows, valid, &st[..c], &st[c..2 * c], g, b, relu);
    Ok(())
}

/// The batch's statistics of `xs` (its channels those of `st`: `2C + 1` values), summed over
/// the workers, into `st` (`[μ (C), 1/√(σ² + ε) (C), n]`); μ and the unbiased σ² into the
/// gradient slots of the running averages.
#[allow(clippy::too_many_arguments)]
fn batch_stats<T: Float>(
    xs: &[T],
    rows: usize,
    valid: Rows,
    peers: &crate::mem::Peers<'_>,
    st: &mut [T],
    (params, grads): (&[T], &mut [T]),
    (mean, var): (PBuf, PBuf),
    eps: f64,
) {
    finish_stats(moments(xs, rows, mean.len, valid), peers, st, (params, grads), (mean, var), eps);
}

/// [`batch_stats`] from this worker's moments `m` (`[Σx (C), Σx² (C), n]`): summed over the
/// workers, then the statistics into `st` and the running averages' gradient slots.
fn finish_stats<T: Float>(
    mut m: Vec<f64>,
    peers: &crate::mem::Peers<'_>,
    st: &mut [T],
    (params, grads): (&[T], &mut [T]),
    (mean, var): (PBuf, PBuf),
    eps: f64,
) {
    let c = mean.len;
    peers.sum(&mut m);
    let n = m[2 * c].max(1.0);
    for ch in 0..c {
        let mu = m[ch] / n;
        let biased = (m[c + ch] / n - mu * mu).max(0.0);
        st[ch] = T::from_f64(mu);
        st[c + ch] = T::from_f64(1.0 / (biased + eps).sqrt());
        if n > 1.0 {
            grads[mean.offset + ch] = T::from_f64(mu);
            grads[var.offset + ch] = T::from_f64(biased * n / (n - 1.0));
        } else {
            // One value per channel has no variance: the running averages stay as they are
            // (their update moves them to themselves).
            grads[mean.offset + ch] = params[mean.offset + ch];
            grads[var.offset + ch] = params[var.offset + ch];
        }
    }
    st[2 * c] = T::from_f64(n);
}

/// `y = (x − μ)·(γ·s) + β` per channel for the rows that count (zero for padding), then
/// the ReLU when one is fused.
#[allow(clippy::too_many_arguments)]
fn normalize<T: Float>(
    xs: &[T],
    out: &mut [T],
    rows: usize,
    valid: Rows,
    mu: &[T],
    s: &[T],
    g: &[T],
    b: &[T],
    relu: bool,
) {
    // Two loops, each compiled for its case: the ReLU's test costs nothing where it is not.
    match relu {
        true => vectorized(
            #[inline(always)]
            || normalize_plain::<T, true>(xs, out, rows, valid, mu, s, g, b),
        ),
        false => vectorized(
            #[inline(always)]
            || normalize_plain::<T, false>(xs, out, rows, valid, mu, s, g, b),
        ),
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn normalize_plain<T: Float, const RELU: bool>(
    xs: &[T],
    out: &mut [T],
    rows: usize,
    valid: Rows,
    mu: &[T],
    s: &[T],
    g: &[T],
    b: &[T],
) {
    let c = mu.len();
    let cols = xs.len() / rows.max(1);
    let scale: Vec<T> = g.iter().zip(s).map(|(&g, &s)| g * s).collect();
    for (r, (yr, xr)) in out.chunks_exact_mut(cols.max(1)).zip(xs.chunks_exact(cols.max(1))).enumerate() {
        if !valid.valid(r) {
            yr.fill(T::ZERO);
            continue;
        }
        for (yp, xp) in yr.chunks_exact_mut(c).zip(xr.chunks_exact(c)) {
            for ((((y, &x), &m), &k), &b) in yp.iter_mut().zip(xp).zip(&mu[..c]).zip(&scale[..c]).zip(&b[..c]) {
                *y = normalized::<T, RELU>(x - m, k, b);
            }
        }
    }
}

/// The step `BatchNormInfer { x, y, gamma, beta, mean, var, eps }` of an inference plan:
/// normalizes with the running averages.
#[allow(clippy::too_many_arguments)]
pub fn infer_step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    y: ABuf,
    gamma: PBuf,
    beta: PBuf,
    mean: PBuf,
    var: PBuf,
    eps: f64,
    relu: bool,
) -> Done {
    let rows = cx.rows;
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let (out, r) = cx.mem.split(y, rows);
    let p = cx.params;
    let s = inverse_std(&p[var.range()], eps);
    normalize(r.get(x, rows), out, rows, valid, &p[mean.range()], &s, &p[gamma.range()], &p[beta.range()], relu);
    Ok(())
}

/// `1/√(σ² + ε)` per channel from the running variances (in f64, as both inference paths
/// compute it, so that they agree bit for bit).
fn inverse_std<T: Float>(var: &[T], eps: f64) -> Vec<T> {
    var.iter().map(|&v| T::from_f64(1.0 / (v.to_f64() + eps).sqrt())).collect()
}

/// A batch norm's parameters and running averages, as inference reads them.
pub struct Stats<'a, T> {
    /// γ.
    pub gamma: &'a [T],
    /// β.
    pub beta: &'a [T],
    /// The running mean.
    pub mean: &'a [T],
    /// The running variance.
    pub var: &'a [T],
    /// ε.
    pub eps: f64,
}

/// Normalizes `ys` in place with the running averages (what [`infer_step`] computes, bit for
/// bit): a batch norm folded into the layer that wrote `ys`.
pub fn infer_in_place<T: Float>(ys: &mut [T], rows: usize, steps: usize, lengths: &[usize], n: &Stats<'_, T>) {
    let valid = Rows { steps, lengths };
    let s = inverse_std(n.var, n.eps);
    let scale: Vec<T> = n.gamma.iter().zip(&s).map(|(&g, &s)| g * s).collect();
    let (c, mu, b) = (n.mean.len(), n.mean, n.beta);
    let cols = ys.len() / rows.max(1);
    vectorized(
        #[inline(always)]
        || {
            for (r, yr) in ys.chunks_exact_mut(cols.max(1)).enumerate() {
                if !valid.valid(r) {
                    yr.fill(T::ZERO);
                    continue;
                }
                for yp in yr.chunks_exact_mut(c.max(1)) {
                    for (((y, &m), &k), &b) in yp.iter_mut().zip(&mu[..c]).zip(&scale[..c]).zip(&b[..c]) {
                        *y = (*y - m) * k + b;
                    }
                }
            }
        },
    )
}

/// The step `BatchNormBackward { x, dy, gamma, beta, dgamma, dbeta, stats, dx, relu }`. With
/// `x̂ = (x − μ)·s`: `dβ = Σ dy`, `dγ = Σ dy·x̂` (this worker's rows), and over the whole
/// batch of `n` values per channel, `dx = γ·s·(dy − mean(dy) − x̂·mean(dy·x̂))` — the means
/// taken over every worker's rows, each worker's sums weighted by its share of the loss. A
/// fused ReLU's derivative is recomputed from `x` (the normalized value `(x − μ)·(γ·s) + β`,
/// the same bits as the forward step's, positive), so that the output is not read again.
#[allow(clippy::too_many_arguments)]
pub fn backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    dy: ABuf,
    gamma: PBuf,
    beta: PBuf,
    dgamma: PBuf,
    dbeta: PBuf,
    stats: ABuf,
    dx: Option<(ABuf, Write)>,
    relu: bool,
    means: bool,
) -> Done {
    backward(cx, x, dy, gamma, beta, (dgamma, dbeta), stats, dx, (relu, means), None)
}

/// [`backward_step`], or with `pool` [`pool_backward_step`].
#[allow(clippy::too_many_arguments)]
fn backward<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    dy: ABuf,
    gamma: PBuf,
    beta: PBuf,
    (dgamma, dbeta): (PBuf, PBuf),
    stats: ABuf,
    dx: Option<(ABuf, Write)>,
    (relu, keep_means): (bool, bool),
    pool: Option<&Geometry>,
) -> Done {
    let (rows, c) = (cx.rows, gamma.len);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let r = cx.mem.all();
    let (xs, dys, st) = (r.get(x, rows), r.get(dy, rows), r.get(stats, 1));
    let cols = xs.len() / rows.max(1);
    let (mu, s, n) = (&st[..c], &st[c..2 * c], st[2 * c].to_f64().max(1.0));
    // γ·s and β: the forward step's scale and shift (the ReLU's mask), and `dx`'s scale.
    let gs: Vec<T> = (0..c).map(|ch| cx.params[gamma.offset + ch] * s[ch]).collect();
    let b = &cx.params[beta.range()];
    let mut sums = vec![0.0f64; 2 * c];
    let shape = Shape { cols, c, valid };
    let fwd = Forward { mu, s, gs: &gs, b };
    let windows = pool.map(|g| Windows::of(g, c));
    grad_sums((relu, windows), shape, (xs, dys), &fwd, &mut sums);
    let means = dx.is_some() || keep_means;
    let Some((m1, m2)) = grads_and_means(cx.grads, &cx.peers, sums, (dgamma, dbeta), n, means) else {
        return Ok(());
    };
    let Some((dx, write)) = dx else {
        // For the convolution before: `[.., m1 (C), m2 (C)]` after the forward statistics.
        let (st, _) = cx.mem.split(stats, 1);
        st[2 * c + 1..3 * c + 1].copy_from_slice(&m1);
        st[3 * c + 1..4 * c + 1].copy_from_slice(&m2);
        return Ok(());
    };
    let (mu, s) = (mu.to_vec(), s.to_vec());
    let b = b.to_vec();
    let fwd = Forward { mu: &mu, s: &s, gs: &gs, b: &b };
    let (d, r) = cx.mem.split(dx, rows);
    let (xs, dys) = (r.get(x, rows), r.get(dy, rows));
    let accumulate = write == Write::Accumulate;
    input_grads((relu, windows), shape, (xs, dys), &fwd, (&m1[..], &m2[..]), d, accumulate);
    Ok(())
}

/// Per channel, `Σ dy` and `Σ dy·x̂` over the rows of `xs` that count, added to `sums` —
/// [`backward_sums`], or with a fused max pooling's `windows` [`pool_sums`] from the pooled
/// `dys` — through the ReLU where `relu`.
fn grad_sums<T: Float>(
    (relu, windows): (bool, Option<Windows>),
    shape: Shape,
    (xs, dys): (&[T], &[T]),
    fwd: &Forward<T>,
    sums: &mut [f64],
) {
    match (relu, windows) {
        (true, None) => vectorized(
            #[inline(always)]
            || backward_sums::<T, true>(shape, xs, dys, fwd, sums),
        ),
        (false, None) => vectorized(
            #[inline(always)]
            || backward_sums::<T, false>(shape, xs, dys, fwd, sums),
        ),
        (true, Some(w)) => vectorized(
            #[inline(always)]
            || pool_sums::<T, true>(w, shape, xs, dys, fwd, sums),
        ),
        (false, Some(w)) => vectorized(
            #[inline(always)]
            || pool_sums::<T, false>(w, shape, xs, dys, fwd, sums),
        ),
    }
}

/// From this worker's sums `[Σ dy (C), Σ dy·x̂ (C)]`: `dβ` and `dγ`; then, where `means` (an
/// input gradient to make), the batch's sums in the batch's loss (this worker's loss is
/// 1/share of its part), met with the other workers', and per channel `mean(dy)` and
/// `mean(dy·x̂)` over the batch's `n` values.
#[allow(clippy::type_complexity)]
fn grads_and_means<T: Float>(
    grads: &mut [T],
    peers: &crate::mem::Peers<'_>,
    mut sums: Vec<f64>,
    (dgamma, dbeta): (PBuf, PBuf),
    n: f64,
    means: bool,
) -> Option<(Vec<T>, Vec<T>)> {
    let c = dgamma.len;
    for ch in 0..c {
        grads[dbeta.offset + ch] = T::from_f64(sums[ch]);
        grads[dgamma.offset + ch] = T::from_f64(sums[c + ch]);
    }
    if !means {
        return None;
    }
    let w = peers.share;
    sums.iter_mut().for_each(|v| *v *= w);
    peers.sum(&mut sums);
    let m1: Vec<T> = sums[..c].iter().map(|v| T::from_f64(v / (w * n))).collect();
    let m2: Vec<T> = sums[c..].iter().map(|v| T::from_f64(v / (w * n))).collect();
    Some((m1, m2))
}

/// `dx (+)= γ·s·(dy − mean(dy) − x̂·mean(dy·x̂))` over the rows of `xs` — [`backward_dx`], or
/// with a fused max pooling's `windows` [`pool_dx`] from the pooled `dys` — through the ReLU
/// where `relu`; what [`backward_step`], [`pool_backward_step`] and [`conv_backward_step`]
/// (an example at a time) write.
#[allow(clippy::too_many_arguments)]
fn input_grads<T: Float>(
    (relu, windows): (bool, Option<Windows>),
    shape: Shape,
    (xs, dys): (&[T], &[T]),
    fwd: &Forward<T>,
    means: (&[T], &[T]),
    d: &mut [T],
    accumulate: bool,
) {
    match (relu, windows) {
        (true, None) => vectorized(
            #[inline(always)]
            || backward_dx::<T, true>(shape, xs, dys, fwd, means, d, accumulate),
        ),
        (false, None) => vectorized(
            #[inline(always)]
            || backward_dx::<T, false>(shape, xs, dys, fwd, means, d, accumulate),
        ),
        (true, Some(w)) => vectorized(
            #[inline(always)]
            || pool_dx::<T, true>(w, shape, xs, dys, fwd, means, d, accumulate),
        ),
        (false, Some(w)) => vectorized(
            #[inline(always)]
            || pool_dx::<T, false>(w, shape, xs, dys, fwd, means, d, accumulate),
        ),
    }
}

/// The layout of a batch norm's values: `cols` per row, channels of `c`, the rows that count.
#[derive(Clone, Copy)]
struct Shape<'a> {
    cols: usize,
    c: usize,
    valid: Rows<'a>,
}

/// What the forward step computed with, per channel: μ, s = 1/σ, γ·s, β.
struct Forward<'a, T> {
    mu: &'a [T],
    s: &'a [T],
    gs: &'a [T],
    b: &'a [T],
}

/// `dy` where a fused ReLU's output was positive — where the normalized value `(x − μ)·γs + β`
/// (computed as the forward step did: the same bits) is above 0, as the activation table's
/// derivative reads it off the output — and 0 elsewhere; `dy` itself without one.
#[inline(always)]
fn masked<T: Float, const RELU: bool>(d: T, centred: T, gs: T, b: T) -> T {
    if !RELU || centred * gs + b > T::ZERO {
        d
    } else {
        T::ZERO
    }
}

/// Per channel, `Σ dy` and `Σ dy·x̂` (in f64) over the rows that count, into `sums`.
#[inline(always)]
fn backward_sums<T: Float, const RELU: bool>(sh: Shape, xs: &[T], dys: &[T], f: &Forward<T>, sums: &mut [f64]) {
    let rows = xs.len() / sh.cols.max(1);
    for span in row_spans(rows, sh.cols) {
        by_blocks(sh.c, &mut BackwardSums::<T, RELU> { sh, span, xs, dys, f, sums: &mut *sums });
    }
}

struct BackwardSums<'a, 'o, T, const RELU: bool> {
    sh: Shape<'a>,
    /// The rows summed now (the sums continue those of the rows before).
    span: std::ops::Range<usize>,
    xs: &'a [T],
    dys: &'a [T],
    f: &'a Forward<'a, T>,
    sums: &'o mut [f64],
}

impl<T: Float, const RELU: bool> Block for BackwardSums<'_, '_, T, RELU> {
    #[inline(always)]
    fn block<const B: usize>(&mut self, c0: usize) {
        let (cols, c) = (self.sh.cols.max(1), self.sh.c);
        let (mu, k, gs, b): ([T; B], [T; B], [T; B], [T; B]) =
            (block_at(self.f.mu, c0), block_at(self.f.s, c0), block_at(self.f.gs, c0), block_at(self.f.b, c0));
        let (mut sd, mut sdx): ([f64; B], [f64; B]) = (block_at(self.sums, c0), block_at(self.sums, c + c0));
        let at = self.span.start * cols..self.span.end * cols;
        for (row, (xr, dr)) in self.xs[at.clone()].chunks_exact(cols).zip(self.dys[at].chunks_exact(cols)).enumerate() {
            if !self.sh.valid.valid(self.span.start + row) {
                continue;
            }
            for (xp, dp) in xr.chunks_exact(c).zip(dr.chunks_exact(c)) {
                let (x, d): ([T; B], [T; B]) = (block_at(xp, c0), block_at(dp, c0));
                for j in 0..B {
                    let centred = x[j] - mu[j];
                    let d64 = masked::<T, RELU>(d[j], centred, gs[j], b[j]).to_f64();
                    sd[j] += d64;
                    sdx[j] += d64 * (centred * k[j]).to_f64();
                }
            }
        }
        self.sums[c0..c0 + B].copy_from_slice(&sd);
        self.sums[c + c0..c + c0 + B].copy_from_slice(&sdx);
    }
}

/// `dx (+)= γ·s·(dy − mean(dy) − x̂·mean(dy·x̂))` (`m1`, `m2`: the two means); rows that do
/// not count get 0.
#[inline(always)]
fn backward_dx<T: Float, const RELU: bool>(
    sh: Shape,
    xs: &[T],
    dys: &[T],
    f: &Forward<T>,
    (m1, m2): (&[T], &[T]),
    d: &mut [T],
    accumulate: bool,
) {
    let (cols, c) = (sh.cols.max(1), sh.c);
    let rows = d.chunks_exact_mut(cols).zip(xs.chunks_exact(cols)).zip(dys.chunks_exact(cols));
    for (row, ((dxr, xr), dr)) in rows.enumerate() {
        if !sh.valid.valid(row) {
            if !accumulate {
                dxr.fill(T::ZERO);
            }
            continue;
        }
        for ((dxp, xp), dp) in dxr.chunks_exact_mut(c).zip(xr.chunks_exact(c)).zip(dr.chunks_exact(c)) {
            let per = dxp.iter_mut().zip(xp).zip(dp).zip(m1[..c].iter().zip(&m2[..c]));
            let chan = f.mu[..c].iter().zip(&f.s[..c]).zip(f.gs[..c].iter().zip(&f.b[..c]));
            for ((((o, &x), &d), (&a, &bm)), ((&m, &k), (&gs, &b))) in per.zip(chan) {
                let centred = x - m;
                let v = gs * (masked::<T, RELU>(d, centred, gs, b) - a - centred * k * bm);
                *o = if accumulate { *o + v } else { v };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A batch norm (and its ReLU) fused with the max pooling after it.

/// The step `BatchNormPool { x, y, g, gamma, beta, mean, var, stats, eps, relu }` of a training
/// plan: a batch norm (with its ReLU where `relu`) whose only reader is a max pooling of
/// windows `g.f × g.f` that neither overlap nor leave anything out (stride `g.f`, the map an
/// exact multiple of it). The statistics are the batch norm's ([`train_step`]); then each
/// window's normalized values are computed and only their maximum is written to `y` (the
/// pooled map), the same bits as the two steps apart: the normalized map is never written.
#[allow(clippy::too_many_arguments)]
pub fn train_pool_step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    y: ABuf,
    g: Geometry,
    gamma: PBuf,
    beta: PBuf,
    mean: PBuf,
    var: PBuf,
    stats: ABuf,
    eps: f64,
    relu: bool,
) -> Done {
    let (rows, c) = (cx.rows, gamma.len);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let (out, st, r) = cx.mem.split2(y, rows, stats);
    let xs = r.get(x, rows);
    batch_stats(xs, rows, valid, &cx.peers, st, (cx.params, &mut *cx.grads), (mean, var), eps);
    let (gm, b) = (&cx.params[gamma.range()], &cx.params[beta.range()]);
    let s = &st[c..2 * c];
    let gs: Vec<T> = gm.iter().zip(s).map(|(&g, &s)| g * s).collect();
    let f = Forward { mu: &st[..c], s, gs: &gs, b };
    let w = Windows::of(&g, c);
    match relu {
        true => vectorized(
            #[inline(always)]
            || pool_forward::<T, true>(w, xs, out, rows, valid, &f),
        ),
        false => vectorized(
            #[inline(always)]
            || pool_forward::<T, false>(w, xs, out, rows, valid, &f),
        ),
    }
    Ok(())
}

/// The windows of a fused max pooling over one example's `[h, w, c]` map: `f × f`, stride `f`,
/// `oh × ow` of them tiling it.
#[derive(Clone, Copy)]
struct Windows {
    f: usize,
    /// Values in a row of the map (`w·c`).
    line: usize,
    c: usize,
    oh: usize,
    ow: usize,
    /// Values of an example's map, and of its pooled map.
    in_len: usize,
    out_len: usize,
}

impl Windows {
    fn of(g: &Geometry, c: usize) -> Windows {
        debug_assert!(g.s == g.f && g.oh * g.f == g.h && g.ow * g.f == g.w && g.d == c, "{g:?}");
        Windows::over(g.h, g.w, c, g.f)
    }
    /// The `f × f` windows of an `h × w × c` map (`f` dividing `h` and `w`).
    fn over(h: usize, w: usize, c: usize, f: usize) -> Windows {
        let f = f.max(1);
        let (oh, ow) = (h / f, w / f);
        Windows { f, line: w * c, c, oh, ow, in_len: h * w * c, out_len: oh * ow * c }
    }
    /// Where window `(oy, ox)`'s first tap starts in the example's map.
    #[inline(always)]
    fn base(&self, oy: usize, ox: usize) -> usize {
        (oy * self.line + ox * self.c) * self.f
    }
    /// Calls `each(t, at)` for each tap `t` (of `f²`, by rows) of the window at `base`, `at`
    /// where its channels start; last to first with `REV`. `F`: the window's size when known
    /// when compiling (its loops unrolled, the window's values in registers), or 0.
    #[inline(always)]
    fn taps<const F: usize, const REV: bool>(&self, base: usize, mut each: impl FnMut(usize, usize)) {
        let f = if F > 0 { F } else { self.f };
        for i in 0..f {
            let fy = if REV { f - 1 - i } else { i };
            for k in 0..f {
                let fx = if REV { f - 1 - k } else { k };
                each(fy * f + fx, base + fy * self.line + fx * self.c);
            }
        }
    }
}

/// A normalized value: `(x − μ)·γs + β`, then the ReLU where fused (the activation table's:
/// `v < 0 → 0`, a NaN passes through) — what [`normalize`] writes and the fused pooling
/// compares.
#[inline(always)]
fn normalized<T: Float, const RELU: bool>(centred: T, gs: T, b: T) -> T {
    let v = centred * gs + b;
    if RELU && v < T::ZERO {
        T::ZERO
    } else {
        v
    }
}

/// The per-channel values of the forward step for the block of channels at `c0`.
struct Consts<T, const B: usize> {
    mu: [T; B],
    s: [T; B],
    gs: [T; B],
    b: [T; B],
}

impl<T: Float, const B: usize> Consts<T, B> {
    #[inline(always)]
    fn at(f: &Forward<T>, c0: usize) -> Self {
        Consts { mu: block_at(f.mu, c0), s: block_at(f.s, c0), gs: block_at(f.gs, c0), b: block_at(f.b, c0) }
    }
    /// A window's maximum of the normalized values, from its first tap on (the max pooling's
    /// fold: the same bits).
    #[inline(always)]
    fn window_max<const RELU: bool, const F: usize>(&self, w: Windows, xr: &[T], base: usize) -> [T; B] {
        let v: [T; B] = block_at(xr, base);
        let mut m = [T::ZERO; B];
        for j in 0..B {
            m[j] = normalized::<T, RELU>(v[j] - self.mu[j], self.gs[j], self.b[j]);
        }
        w.taps::<F, false>(base, |t, at| {
            if t > 0 {
                let v: [T; B] = block_at(xr, at);
                for j in 0..B {
                    m[j] = m[j].max(normalized::<T, RELU>(v[j] - self.mu[j], self.gs[j], self.b[j]));
                }
            }
        });
        m
    }
    /// [`Consts::window_max`], and the window's values at the tap that takes its gradient —
    /// the first to reach the maximum of the normalized values (each tap above the maximum so
    /// far takes over), as [`PoolSums`] and [`PoolDx`] find it.
    #[inline(always)]
    fn window_max_peak<const RELU: bool, const F: usize>(&self, w: Windows, xr: &[T], base: usize) -> ([T; B], [T; B]) {
        let (mut max, mut m, mut z) = ([T::ZERO; B], [T::ZERO; B], [T::ZERO; B]);
        w.taps::<F, false>(base, |t, at| {
            let v: [T; B] = block_at(xr, at);
            for j in 0..B {
                let y = normalized::<T, RELU>(v[j] - self.mu[j], self.gs[j], self.b[j]);
                max[j] = if t == 0 { y } else { max[j].max(y) };
                let take = t == 0 || y > m[j];
                m[j] = if take { y } else { m[j] };
                z[j] = if take { v[j] } else { z[j] };
            }
        });
        (max, z)
    }
}

/// The pooled map of the normalized values: each window's maximum. Windows of 2 × 2 (nearly
/// every max pooling) with their size a constant.
#[inline(always)]
fn pool_forward<T: Float, const RELU: bool>(
    w: Windows,
    xs: &[T],
    out: &mut [T],
    rows: usize,
    valid: Rows,
    f: &Forward<T>,
) {
    match w.f {
        2 => pool_forward_f::<T, RELU, 2, false>(w, xs, (out, &mut []), rows, valid, f),
        _ => pool_forward_f::<T, RELU, 0, false>(w, xs, (out, &mut []), rows, valid, f),
    }
}

/// [`pool_forward`] of whole examples, and into `peaks` (laid out as the pooled map) each
/// window's input value at the tap that takes its gradient ([`Consts::window_max_peak`]): what
/// the backward pass's sums need of the window, without its map.
#[inline(always)]
fn pool_forward_peaks<T: Float, const RELU: bool>(
    w: Windows,
    xs: &[T],
    out: &mut [T],
    peaks: &mut [T],
    rows: usize,
    f: &Forward<T>,
) {
    let all = Rows { steps: 1, lengths: &[] };
    match w.f {
        2 => pool_forward_f::<T, RELU, 2, true>(w, xs, (out, peaks), rows, all, f),
        _ => pool_forward_f::<T, RELU, 0, true>(w, xs, (out, peaks), rows, all, f),
    }
}

/// `out` (and `peaks` where `PEAKS`) of `rows` rows.
#[inline(always)]
fn pool_forward_f<T: Float, const RELU: bool, const F: usize, const PEAKS: bool>(
    w: Windows,
    xs: &[T],
    (out, peaks): (&mut [T], &mut [T]),
    rows: usize,
    valid: Rows,
    f: &Forward<T>,
) {
    for r in 0..rows {
        let yr = &mut out[r * w.out_len..(r + 1) * w.out_len];
        if !valid.valid(r) {
            yr.fill(T::ZERO);
            continue;
        }
        let pr: &mut [T] = if PEAKS { &mut peaks[r * w.out_len..(r + 1) * w.out_len] } else { &mut [] };
        let xr = &xs[r * w.in_len..(r + 1) * w.in_len];
        for oy in 0..w.oh {
            for ox in 0..w.ow {
                let o = (oy * w.ow + ox) * w.c;
                let peaks: &mut [T] = if PEAKS { &mut pr[o..o + w.c] } else { &mut [] };
                let out = &mut yr[o..o + w.c];
                let mut p = PoolForward::<T, RELU, F, PEAKS> { w, xr, base: w.base(oy, ox), out, peaks, f };
                by_blocks(w.c, &mut p);
            }
        }
    }
}

struct PoolForward<'a, T, const RELU: bool, const F: usize, const PEAKS: bool> {
    w: Windows,
    xr: &'a [T],
    base: usize,
    out: &'a mut [T],
    /// The window's values at the tap that takes its gradient, where `PEAKS`.
    peaks: &'a mut [T],
    f: &'a Forward<'a, T>,
}

impl<T: Float, const RELU: bool, const F: usize, const PEAKS: bool> Block for PoolForward<'_, T, RELU, F, PEAKS> {
    #[inline(always)]
    fn block<const B: usize>(&mut self, c0: usize) {
        let k = Consts::<T, B>::at(self.f, c0);
        if PEAKS {
            let (m, z) = k.window_max_peak::<RELU, F>(self.w, self.xr, self.base + c0);
            self.out[c0..c0 + B].copy_from_slice(&m);
            self.peaks[c0..c0 + B].copy_from_slice(&z);
        } else {
            let m = k.window_max::<RELU, F>(self.w, self.xr, self.base + c0);
            self.out[c0..c0 + B].copy_from_slice(&m);
        }
    }
}

/// The step `BatchNormPoolBackward { x, dy, g, gamma, beta, dgamma, dbeta, stats, dx, relu }`:
/// [`backward_step`] of a batch norm fused with the max pooling after it
/// ([`train_pool_step`]), from the pooled map's `dy`. Each window's maximum is found again
/// from `x` (the forward step's bits); its `dy` goes to the first tap that reached it, as the
/// max pooling's gradient gives it, and through the ReLU where that tap's value was positive;
/// the other taps' `dy` is 0. The sums `Σ dy`, `Σ dy·x̂` are taken over those taps alone (one
/// a window), window by window; `dx` as the batch norm's, at every tap. The pooling's `dx`
/// (the full map's `dy`) is never written.
#[allow(clippy::too_many_arguments)]
pub fn pool_backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    dy: ABuf,
    g: Geometry,
    gamma: PBuf,
    beta: PBuf,
    dgamma: PBuf,
    dbeta: PBuf,
    stats: ABuf,
    dx: Option<(ABuf, Write)>,
    relu: bool,
    means: bool,
) -> Done {
    backward(cx, x, dy, gamma, beta, (dgamma, dbeta), stats, dx, (relu, means), Some(&g))
}

/// Per channel, `Σ dy` and `Σ dy·x̂` (in f64) over the taps that took each window's `dy`, into
/// `sums`; rows that do not count are left out.
#[inline(always)]
fn pool_sums<T: Float, const RELU: bool>(w: Windows, sh: Shape, xs: &[T], dys: &[T], f: &Forward<T>, sums: &mut [f64]) {
    match w.f {
        2 => pool_sums_f::<T, RELU, 2>(w, sh, xs, dys, f, sums),
        _ => pool_sums_f::<T, RELU, 0>(w, sh, xs, dys, f, sums),
    }
}

#[inline(always)]
fn pool_sums_f<T: Float, const RELU: bool, const F: usize>(
    w: Windows,
    sh: Shape,
    xs: &[T],
    dys: &[T],
    f: &Forward<T>,
    sums: &mut [f64],
) {
    let rows = xs.len() / w.in_len.max(1);
    for span in row_spans(rows, w.in_len) {
        by_blocks(sh.c, &mut PoolSums::<T, RELU, F> { w, sh, span, xs, dys, f, sums: &mut *sums });
    }
}

struct PoolSums<'a, 'o, T, const RELU: bool, const F: usize> {
    w: Windows,
    sh: Shape<'a>,
    span: std::ops::Range<usize>,
    xs: &'a [T],
    dys: &'a [T],
    f: &'a Forward<'a, T>,
    sums: &'o mut [f64],
}

impl<T: Float, const RELU: bool, const F: usize> Block for PoolSums<'_, '_, T, RELU, F> {
    #[inline(always)]
    fn block<const B: usize>(&mut self, c0: usize) {
        let (w, c) = (self.w, self.sh.c);
        let k = Consts::<T, B>::at(self.f, c0);
        let (mut sd, mut sdx): ([f64; B], [f64; B]) = (block_at(self.sums, c0), block_at(self.sums, c + c0));
        for r in self.span.clone() {
            if !self.sh.valid.valid(r) {
                continue;
            }
            let xr = &self.xs[r * w.in_len..(r + 1) * w.in_len];
            let dr = &self.dys[r * w.out_len..(r + 1) * w.out_len];
            for oy in 0..w.oh {
                for ox in 0..w.ow {
                    let base = w.base(oy, ox) + c0;
                    let g: [T; B] = block_at(dr, (oy * w.ow + ox) * c + c0);
                    // The tap that took the window's dy — the first to reach the maximum: each
                    // tap above the maximum so far takes over — its dy through the ReLU, and
                    // x − μ there.
                    let (mut m, mut d, mut centred) = ([T::ZERO; B], [T::ZERO; B], [T::ZERO; B]);
                    w.taps::<F, false>(base, |t, at| {
                        let v: [T; B] = block_at(xr, at);
                        for j in 0..B {
                            let cj = v[j] - k.mu[j];
                            let y = normalized::<T, RELU>(cj, k.gs[j], k.b[j]);
                            // (Selects, not a conditional store: the window's values stay
                            // in registers.)
                            let take = t == 0 || y > m[j];
                            let dj = masked::<T, RELU>(T::ZERO + g[j], cj, k.gs[j], k.b[j]);
                            m[j] = if take { y } else { m[j] };
                            d[j] = if take { dj } else { d[j] };
                            centred[j] = if take { cj } else { centred[j] };
                        }
                    });
                    for j in 0..B {
                        let d64 = d[j].to_f64();
                        sd[j] += d64;
                        sdx[j] += d64 * (centred[j] * k.s[j]).to_f64();
                    }
                }
            }
        }
        self.sums[c0..c0 + B].copy_from_slice(&sd);
        self.sums[c + c0..c + c0 + B].copy_from_slice(&sdx);
    }
}

/// `dx (+)= γ·s·(dy − mean(dy) − x̂·mean(dy·x̂))` at every tap of every window, `dy` the
/// window's at the tap that took it (through the ReLU) and 0 at the others; rows that do not
/// count get 0.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pool_dx<T: Float, const RELU: bool>(
    w: Windows,
    sh: Shape,
    xs: &[T],
    dys: &[T],
    f: &Forward<T>,
    means: (&[T], &[T]),
    d: &mut [T],
    accumulate: bool,
) {
    match w.f {
        2 => pool_dx_f::<T, RELU, 2>(w, sh, xs, dys, f, means, d, accumulate),
        _ => pool_dx_f::<T, RELU, 0>(w, sh, xs, dys, f, means, d, accumulate),
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pool_dx_f<T: Float, const RELU: bool, const F: usize>(
    w: Windows,
    sh: Shape,
    xs: &[T],
    dys: &[T],
    f: &Forward<T>,
    (m1, m2): (&[T], &[T]),
    d: &mut [T],
    accumulate: bool,
) {
    let rows = xs.len() / w.in_len.max(1);
    for r in 0..rows {
        let dxr = &mut d[r * w.in_len..(r + 1) * w.in_len];
        if !sh.valid.valid(r) {
            if !accumulate {
                dxr.fill(T::ZERO);
            }
            continue;
        }
        let xr = &xs[r * w.in_len..(r + 1) * w.in_len];
        let dr = &dys[r * w.out_len..(r + 1) * w.out_len];
        for oy in 0..w.oh {
            for ox in 0..w.ow {
                let o = (oy * w.ow + ox) * w.c;
                let base = w.base(oy, ox);
                by_blocks(
                    w.c,
                    &mut PoolDx::<T, RELU, F> {
                        w,
                        xr,
                        dy: &dr[o..o + w.c],
                        base,
                        f,
                        m1,
                        m2,
                        dxr: &mut *dxr,
                        accumulate,
                    },
                );
            }
        }
    }
}

struct PoolDx<'a, T, const RELU: bool, const F: usize> {
    w: Windows,
    xr: &'a [T],
    /// The window's pooled `dy`.
    dy: &'a [T],
    base: usize,
    f: &'a Forward<'a, T>,
    m1: &'a [T],
    m2: &'a [T],
    dxr: &'a mut [T],
    accumulate: bool,
}

impl<T: Float, const RELU: bool, const F: usize> Block for PoolDx<'_, T, RELU, F> {
    #[inline(always)]
    fn block<const B: usize>(&mut self, c0: usize) {
        let w = self.w;
        let k = Consts::<T, B>::at(self.f, c0);
        let (a, bm, g): ([T; B], [T; B], [T; B]) =
            (block_at(self.m1, c0), block_at(self.m2, c0), block_at(self.dy, c0));
        let base = self.base + c0;
        // The tap that took the window's dy: the first to reach the maximum (each tap above
        // the maximum so far takes over).
        let (mut m, mut first) = ([T::ZERO; B], [T::ZERO; B]);
        let xr = self.xr;
        w.taps::<F, false>(base, |t, at| {
            let v: [T; B] = block_at(xr, at);
            let tf = T::from_f64(t as f64);
            for j in 0..B {
                let y = normalized::<T, RELU>(v[j] - k.mu[j], k.gs[j], k.b[j]);
                let take = t == 0 || y > m[j];
                m[j] = if take { y } else { m[j] };
                first[j] = if take { tf } else { first[j] };
            }
        });
        let (dxr, accumulate) = (&mut *self.dxr, self.accumulate);
        w.taps::<F, false>(base, |t, at| {
            let v: [T; B] = block_at(xr, at);
            let tf = T::from_f64(t as f64);
            let dst = &mut dxr[at..at + B];
            for j in 0..B {
                let centred = v[j] - k.mu[j];
                // What the max pooling's gradient wrote here (`0 + dy` or 0), then the batch
                // norm's: the bits of the two steps apart.
                let dp = T::ZERO + if first[j] == tf { g[j] } else { T::ZERO };
                let val = k.gs[j] * (masked::<T, RELU>(dp, centred, k.gs[j], k.b[j]) - a[j] - centred * k.s[j] * bm[j]);
                dst[j] = if accumulate { dst[j] + val } else { val };
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// A convolution's backward pass from the batch norm after it.

/// The step `ConvBnBackward { g, x, y, w, dy, dw, db, dx, ws, gamma, beta, stats, relu, pool }`:
/// the backward pass of a convolution (no activation of its own: `y = conv(x) + b`) whose
/// output `y` only a batch norm reads, from that batch norm's output gradient `dy`. The batch
/// norm's backward step ran first with `means` (its sums taken and met with the other workers',
/// `mean(dy)` and `mean(dy·x̂)` kept in `stats`); here each example's `dz` — the batch norm's
/// input gradient, [`backward_step`]'s `dx` (with `pool > 0`, [`pool_backward_step`]'s from the
/// pooled map) — is made into a buffer of one example just before the convolution's passes
/// read it ([`super::conv::backward_made`]): the same values as the two steps apart, without writing
/// the whole batch's and reading it back.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    g: Geometry,
    x: ABuf,
    y: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
    ws: ABuf,
    gamma: PBuf,
    beta: PBuf,
    stats: ABuf,
    relu: bool,
    pool: usize,
) -> Done {
    let (rows, c) = (cx.rows, g.k);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let out_len = g.oh * g.ow * c;
    let params = cx.params;
    let wv = &params[w.range()];
    let b = crate::ops::conv_grads(cx, (dw, db), dx, ws);
    let r = &b.reads;
    let (xs, ys, dys, st) = (r.get(x, rows), r.get(y, rows), r.get(dy, rows), r.get(stats, 1));
    let (mu, s) = (&st[..c], &st[c..2 * c]);
    let means = (&st[2 * c + 1..3 * c + 1], &st[3 * c + 1..4 * c + 1]);
    // γ·s and β as the batch norm's steps compute them (the same bits).
    let gs: Vec<T> = (0..c).map(|ch| params[gamma.offset + ch] * s[ch]).collect();
    let f = Forward { mu, s, gs: &gs, b: &params[beta.range()] };
    // One example's `dz` (the whole example counts: a row of a sequence never reaches here).
    let one = Shape { cols: out_len, c, valid: Rows { steps: 1, lengths: &[] } };
    let windows = (pool > 0).then(|| Windows::over(g.oh, g.ow, c, pool));
    let dy_len = windows.map_or(out_len, |w| w.out_len);
    let mut make = |e: usize, out: &mut [T]| {
        if !valid.valid(e) {
            out.fill(T::ZERO);
            return;
        }
        let (xe, de) = (&ys[e * out_len..(e + 1) * out_len], &dys[e * dy_len..(e + 1) * dy_len]);
        input_grads((relu, windows), one, (xe, de), &f, means, out, false);
    };
    super::conv::backward_made(&g, rows, xs, wv, &mut make, b.dw, b.db, b.dx, b.ws);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A convolution of short patches computed again instead of stored, for the batch norm after it.

/// Whether a convolution is cheap enough to compute again instead of keeping its output for
/// the batch norm after it ([`Step::ConvBatchNorm`](crate::plan::Step::ConvBatchNorm)): one
/// group, no dilation, at most 12 multiply–adds an output (3 × 3 over one channel, 2 × 2 over
/// three). Its output — as many values as the input times the filters — would be written
/// once and read four times from memory; each pass of the product costs less than one of
/// those reads.
pub fn recomputed(g: &Geometry) -> bool {
    g.plain() && g.d * g.f * g.f <= 12
}

/// Examples whose recomputed convolution is held at once: about 512 KiB of it (in the
/// second-level cache), so that the weights are packed for the tiles once per chunk, not
/// once per example.
fn chunk_rows(out_len: usize, rows: usize) -> usize {
    rows_within(512 * 1024, out_len).min(rows.max(1))
}

/// The convolution (no activation) of the examples `chunk` of `xs` into the start of `buf`;
/// `fws` the im2col workspace of one example, sized at its first use, where the register
/// tiles do not take it. A convolution's rows are whole examples (it never runs at every step
/// of a sequence): each counts.
fn conv_chunk<T: Float>(
    g: &Geometry,
    xs: &[T],
    chunk: std::ops::Range<usize>,
    (w, b): (&[T], &[T]),
    buf: &mut [T],
    fws: &mut Vec<T>,
) {
    let (in_len, out_len, n) = (g.h * g.w * g.d, g.oh * g.ow * g.k, chunk.len());
    let (x, y) = (&xs[chunk.start * in_len..chunk.end * in_len], &mut buf[..n * out_len]);
    if T::conv_forward(g, crate::plan::Act::Identity, n, x, w, b, y) {
        return;
    }
    fws.resize(super::conv::per_example(g), T::ZERO);
    super::conv::forward(g, crate::plan::Act::Identity, n, x, w, b, y, fws);
}

/// The step `ConvBatchNorm { g, x, w, b, y, gamma, beta, mean, var, stats, eps, relu, pool,
/// peaks }` of a training plan: a convolution ([`recomputed`]: short patches, no activation) whose
/// output only a batch norm reads — with its ReLU where `relu`, and the max pooling after it
/// where `pool > 0` (windows `pool × pool` tiling the map) — computed a few examples at a time
/// into a buffer that stays in cache (about 512 KiB), twice: once for the batch norm's
/// statistics (the sums continued chunk after chunk: the same order as over the stored batch),
/// once, after they are met with the other workers', for the normalized output `y`. The same
/// bits as the convolution, [`train_step`] or [`train_pool_step`] apart; the convolution's
/// output is never written. With the pooling and `peaks`, each window's convolution value at
/// the tap that takes its gradient is kept there (the pooled map's layout) for the backward
/// pass's sums.
#[allow(clippy::too_many_arguments)]
pub fn conv_train_step<T: Float>(
    cx: &mut Cx<'_, T>,
    g: Geometry,
    x: ABuf,
    w: PBuf,
    b: PBuf,
    y: ABuf,
    gamma: PBuf,
    beta: PBuf,
    mean: PBuf,
    var: PBuf,
    stats: ABuf,
    eps: f64,
    relu: bool,
    pool: usize,
    peaks: Option<ABuf>,
) -> Done {
    let (rows, c) = (cx.rows, g.k);
    debug_assert!(cx.steps <= 1, "a convolution's rows are whole examples");
    let all = Rows { steps: 1, lengths: &[] };
    let out_len = g.oh * g.ow * c;
    let p = cx.params;
    let (wv, bv) = (&p[w.range()], &p[b.range()]);
    let (out, st, mut peaks, r) = match peaks.filter(|_| pool > 0) {
        Some(pb) => {
            let (out, pk, st, r) = cx.mem.split3(y, pb, stats, rows, false);
            (out, st, Some(pk), r)
        }
        None => {
            let (out, st, r) = cx.mem.split2(y, rows, stats);
            (out, st, None, r)
        }
    };
    let xs = r.get(x, rows);
    let per = chunk_rows(out_len, rows);
    let (mut buf, mut fws) = (vec![T::ZERO; per * out_len], Vec::new());
    let mut m = vec![0.0f64; 2 * c + 1];
    for chunk in spans(rows, per) {
        let n = chunk.len();
        conv_chunk(&g, xs, chunk, (wv, bv), &mut buf, &mut fws);
        vectorized(
            #[inline(always)]
            || add_moments(&buf[..n * out_len], n, c, all, &mut m),
        );
    }
    finish_stats(m, &cx.peers, st, (p, &mut *cx.grads), (mean, var), eps);
    let s = &st[c..2 * c];
    let gs: Vec<T> = p[gamma.range()].iter().zip(s).map(|(&g, &s)| g * s).collect();
    let f = Forward { mu: &st[..c], s, gs: &gs, b: &p[beta.range()] };
    let windows = (pool > 0).then(|| Windows::over(g.oh, g.ow, c, pool));
    let y_len = windows.map_or(out_len, |w| w.out_len);
    for chunk in spans(rows, per) {
        let (n, there) = (chunk.len(), chunk.start * y_len..chunk.end * y_len);
        conv_chunk(&g, xs, chunk, (wv, bv), &mut buf, &mut fws);
        let (zs, ys) = (&buf[..n * out_len], &mut out[there.clone()]);
        let pk = peaks.as_deref_mut().map(|pk| &mut pk[there]);
        match (relu, windows, pk) {
            (true, Some(w), Some(pk)) => vectorized(
                #[inline(always)]
                || pool_forward_peaks::<T, true>(w, zs, ys, pk, n, &f),
            ),
            (false, Some(w), Some(pk)) => vectorized(
                #[inline(always)]
                || pool_forward_peaks::<T, false>(w, zs, ys, pk, n, &f),
            ),
            (true, Some(w), None) => vectorized(
                #[inline(always)]
                || pool_forward::<T, true>(w, zs, ys, n, all, &f),
            ),
            (false, Some(w), None) => vectorized(
                #[inline(always)]
                || pool_forward::<T, false>(w, zs, ys, n, all, &f),
            ),
            (_, None, _) => normalize(zs, ys, n, all, f.mu, s, &p[gamma.range()], f.b, relu),
        }
    }
    Ok(())
}

/// The step `ConvBatchNormBackward { g, x, w, b, dy, dw, db, dx, ws, gamma, beta, dgamma,
/// dbeta, stats, relu, pool, peaks }`: the backward pass of [`conv_train_step`] from the batch norm's
/// output gradient `dy` (the pooled map's where `pool > 0`). The batch norm's sums (`dβ`, `dγ`,
/// and met with the other workers' the means `dz` is made from) are taken from the windows'
/// `peaks` where the forward step kept them, else from the convolution computed again a chunk
/// of examples at a time; then the convolution is computed again (a chunk at a time) for each
/// example's `dz`, made into a buffer of one example just before the convolution's passes
/// (`dW`, `db`, `dx`) read it, as [`conv_backward_step`] makes it. The same bits as the batch
/// norm's backward step and [`conv_backward_step`] apart.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward_recomputed_step<T: Float>(
    cx: &mut Cx<'_, T>,
    g: Geometry,
    x: ABuf,
    w: PBuf,
    b: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
    ws: ABuf,
    gamma: PBuf,
    beta: PBuf,
    dgamma: PBuf,
    dbeta: PBuf,
    stats: ABuf,
    relu: bool,
    pool: usize,
    peaks: Option<ABuf>,
) -> Done {
    let (rows, c) = (cx.rows, g.k);
    debug_assert!(cx.steps <= 1, "a convolution's rows are whole examples");
    let out_len = g.oh * g.ow * c;
    let params = cx.params;
    let (wv, bv) = (&params[w.range()], &params[b.range()]);
    let windows = (pool > 0).then(|| Windows::over(g.oh, g.ow, c, pool));
    let dy_len = windows.map_or(out_len, |w| w.out_len);
    // The convolution's outputs, every example counting.
    let shape = Shape { cols: out_len, c, valid: Rows { steps: 1, lengths: &[] } };
    let per = chunk_rows(out_len, rows);
    let (mut buf, mut fws) = (vec![T::ZERO; per * out_len], Vec::new());
    let r = cx.mem.all();
    let (xs, dys, st) = (r.get(x, rows), r.get(dy, rows), r.get(stats, 1));
    let (mu, s, n) = (st[..c].to_vec(), st[c..2 * c].to_vec(), st[2 * c].to_f64().max(1.0));
    // γ·s and β as the batch norm's steps compute them (the same bits).
    let gs: Vec<T> = (0..c).map(|ch| params[gamma.offset + ch] * s[ch]).collect();
    let f = Forward { mu: &mu, s: &s, gs: &gs, b: &params[beta.range()] };
    let mut sums = vec![0.0f64; 2 * c];
    match peaks.filter(|_| pool > 0) {
        // The windows' peaks kept by the forward step: the taps that took the pooled `dy`,
        // alone in the sums (window by window, as over the map).
        Some(pk) => {
            let pooled = Shape { cols: dy_len, c, valid: shape.valid };
            grad_sums((relu, None), pooled, (r.get(pk, rows), dys), &f, &mut sums);
        }
        None => {
            for chunk in spans(rows, per) {
                let (n, there) = (chunk.len(), chunk.start * dy_len..chunk.end * dy_len);
                conv_chunk(&g, xs, chunk, (wv, bv), &mut buf, &mut fws);
                let (zs, ds) = (&buf[..n * out_len], &dys[there]);
                grad_sums((relu, windows), shape, (zs, ds), &f, &mut sums);
            }
        }
    }
    let Some((m1, m2)) = grads_and_means(cx.grads, &cx.peers, sums, (dgamma, dbeta), n, true) else {
        return Ok(());
    };
    let cg = crate::ops::conv_grads(cx, (dw, db), dx, ws);
    let r = &cg.reads;
    let (xs, dys) = (r.get(x, rows), r.get(dy, rows));
    // Each example's `dz` from its chunk's convolution, computed when the chunk's first
    // example is asked for (the passes ask in order; any other order recomputes its chunk).
    let mut held: Option<usize> = None;
    let mut make = |e: usize, out: &mut [T]| {
        let e0 = e - e % per;
        if held != Some(e0) {
            conv_chunk(&g, xs, e0..(e0 + per).min(rows), (wv, bv), &mut buf, &mut fws);
            held = Some(e0);
        }
        let (z, de) = (&buf[(e - e0) * out_len..(e - e0 + 1) * out_len], &dys[e * dy_len..(e + 1) * dy_len]);
        input_grads((relu, windows), shape, (z, de), &f, (&m1, &m2), out, false);
    };
    super::conv::backward_made(&g, rows, xs, wv, &mut make, cg.dw, cg.db, cg.dx, cg.ws);
    Ok(())
}
