//! `attention(heads, causal)`: multi-head scaled dot-product self-attention over a sequence,
//! as PyTorch's `nn.MultiheadAttention(d, heads, batch_first = True)` computes it with a
//! `key_padding_mask` (and, causal, an upper-triangular `attn_mask`):
//!
//! ```text
//! [Q K V] = X·W_inᵀ + b_in          (W_in [3d, d]: PyTorch's in_proj_weight)
//! O_h     = softmax(Q_h K_hᵀ/√d_h + mask) · V_h      for each head h (d_h = d/heads)
//! Y       = [O_1 … O_heads]·W_outᵀ + b_out
//! ```
//!
//! Each example works on its own length `L` only: padding steps are never keys (their scores
//! are not computed, so nothing of theirs — not even a NaN — reaches a real step), and as
//! queries their output is `b_out` (their `O` is zero). The softmax subtracts each row's
//! largest score (a masked score is left out, never `−∞` arithmetic).
//!
//! Memory: the scores of **one head of one example** at a time (`L × L`, in a workspace of
//! `3·steps² + 3·steps·d + steps·d_h` values for the whole batch, see [`workspace`]: the
//! products read their left-hand side by columns and their right-hand side by rows, the
//! register tiles' layout without packing; the example's `Q K V` are transposed in one pass
//! over its rows, rather than a head at a time, whose strided reads waited on memory); per
//! example the step keeps `Q K V` and `O` (`4·steps·d`) and, for training, each query's
//! log-sum-exp per head (`heads·steps`): the backward step recomputes the probabilities from
//! them (`p = exp(s − lse)`), as flash attention does, rather than keeping `heads·steps²`.

use super::transpose::transpose;
use crate::mem::Cx;
use crate::ops::Done;
use crate::plan::{ABuf, PBuf, Write};
use crate::Float;

/// The sizes of one attention step.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Examples in the batch.
    pub batch: usize,
    /// Steps per example (the plan's longest).
    pub steps: usize,
    /// Features per step (`d`).
    pub width: usize,
    /// Heads (each of `width / heads` features).
    pub heads: usize,
    /// Whether a step attends only to itself and the steps before it.
    pub causal: bool,
}

impl Dims {
    fn head(&self) -> usize {
        self.width / self.heads.max(1)
    }
    fn scale(&self) -> f64 {
        1.0 / (self.head().max(1) as f64).sqrt()
    }
    /// The keys query `i` of a sequence of `len` steps sees.
    fn keys(&self, i: usize, len: usize) -> usize {
        if self.causal {
            (i + 1).min(len)
        } else {
            len
        }
    }
}

/// Query `i`'s softmax over its `n` keys in the row `s` (of `len` scores, the rest zeroed),
/// in place; returns the log-sum-exp `max + ln Σ exp(s − max)`.
#[inline(always)]
fn softmax_row<T: Float>(s: &mut [T], n: usize) -> T {
    let (seen, hidden) = s.split_at_mut(n);
    hidden.fill(T::ZERO);
    // The largest score over sixteen lanes, then across them: the same value as one pass
    // (a maximum does not depend on the order), but vectorized — a chain of one comparison
    // after another was half the forward pass's softmax.
    let mut top = [seen[0]; 16];
    let mut chunks = seen.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in top.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    for (l, &v) in top.iter_mut().zip(chunks.remainder()) {
        *l = l.max(v);
    }
    let m = top.iter().fold(top[0], |a, &b| a.max(b));
    for v in seen.iter_mut() {
        *v = (m - *v).exp_neg();
    }
    // Sixteen partial sums (the vector's lanes), added in a fixed order: the same bits for any
    // width.
    let mut lanes = [T::ZERO; 16];
    let mut chunks = seen.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += v;
    }
    let sum = lanes.iter().fold(T::ZERO, |a, &b| a + b);
    let inv = T::ONE / sum;
    for v in seen.iter_mut() {
        *v *= inv;
    }
    m + sum.ln()
}

/// Queries per block of a causal attention: each block's scores reach only the keys up to
/// its last query, so the products skip the masked triangle but for the blocks' diagonal
/// squares (at 128 steps, 62.5% of the full products).
const CAUSAL_BLOCK: usize = 32;

/// The blocks of queries `[i0, i1)` of a sequence of `len` steps, last first, each with the
/// number of keys its queries reach (`kend`): one block of every query when not causal.
fn query_blocks(d: &Dims, len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let size = if d.causal { CAUSAL_BLOCK } else { len.max(1) };
    let causal = d.causal;
    (0..len.div_ceil(size)).rev().map(move |blk| {
        let (i0, i1) = (blk * size, ((blk + 1) * size).min(len));
        (i0, i1, if causal { i1 } else { len })
    })
}

/// The workspace of an attention step, in values (shared by the batch's examples, one at a
/// time): one head's scores, their gradient and one of them transposed (`3·steps²`), one
/// example's `Q K V` transposed (`3·steps·d`: each feature's steps in a row, read in one pass
/// over the example's rows) and a block of one head's output gradient transposed
/// (`steps·d_h`), so that every product of the heads reads its left-hand side by columns and
/// its right-hand side by rows (the register tiles' fast layout: one pointer for a tile's
/// rows, no packing).
pub fn workspace(steps: usize, width: usize, heads: usize) -> usize {
    3 * steps * steps + 3 * steps * width + steps * (width / heads.max(1))
}

/// The scores `S = Q_h·K_hᵀ/√d_h` of queries `i0..i1` against keys `0..kend` (`(i1 − i0) ×
/// kend`, row-major, into `s`), from the head's queries and keys transposed (`qt`, `kt`: `d_h`
/// rows of `len`).
fn scores<T: Float>(d: &Dims, qt: &[T], kt: &[T], len: usize, (i0, i1, kend): (usize, usize, usize), s: &mut [T]) {
    T::gemm_unpacked(i1 - i0, d.head(), kend, T::from_f64(d.scale()), &qt[i0..], (1, len), kt, len, T::ZERO, s, kend);
}

/// Forward for the whole batch: `o` (each example's heads side by side, zero past its
/// length) from `qkv`, with each query's log-sum-exp per head into `lse` when given.
pub fn forward<T: Float>(d: &Dims, lengths: &[usize], qkv: &[T], o: &mut [T], mut lse: Option<&mut [T]>, ws: &mut [T]) {
    let (t, w, dh) = (d.steps, d.width, d.head());
    let (s, rest) = ws.split_at_mut(t * t);
    let (pt, rest) = rest.split_at_mut(t * t);
    let qkt = &mut rest[..2 * w * t];
    for b in 0..d.batch {
        let len = lengths.get(b).map_or(t, |&l| l.min(t));
        let qkv = &qkv[b * t * 3 * w..(b + 1) * t * 3 * w];
        let ob = &mut o[b * t * w..(b + 1) * t * w];
        ob[len * w..].fill(T::ZERO);
        // The example's queries and keys transposed (each feature's `len` steps in a row).
        transpose(qkv, 3 * w, len, 2 * w, qkt, len);
        for h in 0..d.heads {
            let head = |part: usize| &qkt[(part * w + h * dh) * len..(part * w + (h + 1) * dh) * len];
            let (qt, kt) = (head(0), head(1));
            for (i0, i1, kend) in query_blocks(d, len) {
                let m = i1 - i0;
                let s = &mut s[..m * kend];
                scores(d, qt, kt, len, (i0, i1, kend), s);
                let pt = &mut pt[..kend * m];
                super::vectorized(
                    #[inline(always)]
                    || {
                        for i in i0..i1 {
                            let row = &mut s[(i - i0) * kend..(i - i0 + 1) * kend];
                            let l = softmax_row(row, d.keys(i, len));
                            if let Some(lse) = lse.as_deref_mut() {
                                lse[b * d.heads * t + h * t + i] = l;
                            }
                        }
                        transpose(s, kend, m, kend, pt, m);
                    },
                );
                // O = P·V, P read by columns (its transpose's rows).
                let v = &qkv[2 * w + h * dh..];
                T::gemm_unpacked(m, kend, dh, T::ONE, pt, (1, m), v, 3 * w, T::ZERO, &mut ob[i0 * w + h * dh..], w);
            }
        }
    }
}

/// Backward for the whole batch: from `d_o` (the gradient of `o`), `dqkv` (zero past each
/// example's length). Per example, head and block of queries (the last first, whose keys
/// reach furthest: `dV` and `dK` are written by it and added to by the others), with `P`
/// recomputed from the scores and `lse`: `dV += Pᵀ·dO`, `dP = dO·Vᵀ`,
/// `dS = P ⊙ (dP − rowsum(dO ⊙ O))`, `dQ = dS·K/√d_h`, `dK += dSᵀ·Q/√d_h`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    d: &Dims,
    lengths: &[usize],
    qkv: &[T],
    o: &[T],
    lse: &[T],
    d_o: &[T],
    dqkv: &mut [T],
    ws: &mut [T],
) {
    let (t, w, dh) = (d.steps, d.width, d.head());
    let scale = T::from_f64(d.scale());
    let (p, rest) = ws.split_at_mut(t * t);
    let (dp, rest) = rest.split_at_mut(t * t);
    let (dst, rest) = rest.split_at_mut(t * t);
    let (qkvt, rest) = rest.split_at_mut(3 * w * t);
    let dot = &mut rest[..dh * t];
    for b in 0..d.batch {
        let len = lengths.get(b).map_or(t, |&l| l.min(t));
        let qkv = &qkv[b * t * 3 * w..(b + 1) * t * 3 * w];
        let (ob, dob) = (&o[b * t * w..(b + 1) * t * w], &d_o[b * t * w..(b + 1) * t * w]);
        let dq = &mut dqkv[b * t * 3 * w..(b + 1) * t * 3 * w];
        dq[len * 3 * w..].fill(T::ZERO);
        // The example's queries, keys and values transposed (each feature's steps in a row).
        let qkvt = &mut qkvt[..3 * w * len];
        transpose(qkv, 3 * w, len, 3 * w, qkvt, len);
        for h in 0..d.heads {
            let head = |part: usize| &qkvt[(part * w + h * dh) * len..(part * w + (h + 1) * dh) * len];
            let (qt, kt, vt) = (head(0), head(1), head(2));
            for (first, (i0, i1, kend)) in query_blocks(d, len).enumerate() {
                // The first block (the last queries) reaches every key: it writes dV and dK.
                let beta = if first == 0 { T::ZERO } else { T::ONE };
                let m = i1 - i0;
                let (p, dp, dst, dot) =
                    (&mut p[..m * kend], &mut dp[..m * kend], &mut dst[..kend * m], &mut dot[..dh * m]);
                scores(d, qt, kt, len, (i0, i1, kend), p);
                super::vectorized(
                    #[inline(always)]
                    || {
                        for i in i0..i1 {
                            let l = lse[b * d.heads * t + h * t + i];
                            let n = d.keys(i, len);
                            let row = &mut p[(i - i0) * kend..(i - i0 + 1) * kend];
                            for v in &mut row[..n] {
                                // l ≥ max ≥ v: e^(v − l) without a library call in f32.
                                *v = (l - *v).exp_neg();
                            }
                            row[n..].fill(T::ZERO);
                        }
                        transpose(&dob[i0 * w + h * dh..], w, m, dh, dot, m);
                    },
                );
                let q = &qkv[i0 * 3 * w + h * dh..];
                let dout = &dob[i0 * w + h * dh..];
                // dV += Pᵀ·dO.
                T::gemm_unpacked(kend, m, dh, T::ONE, p, (1, kend), dout, w, beta, &mut dq[2 * w + h * dh..], 3 * w);
                // dP = dO·Vᵀ, dO read by columns.
                T::gemm_unpacked(m, dh, kend, T::ONE, dot, (1, m), vt, len, T::ZERO, dp, kend);
                super::vectorized(
                    #[inline(always)]
                    || {
                        for i in i0..i1 {
                            let r = i * w + h * dh;
                            let dot = ob[r..r + dh].iter().zip(&dob[r..r + dh]).fold(T::ZERO, |a, (&x, &y)| a + x * y);
                            let at = (i - i0) * kend;
                            for (g, &pv) in dp[at..at + kend].iter_mut().zip(&p[at..at + kend]) {
                                *g = pv * (*g - dot);
                            }
                        }
                        transpose(dp, kend, m, kend, dst, m);
                    },
                );
                // dQ = dS·K/√d_h (these queries' rows whole; dS read by columns), dK += dSᵀ·Q/√d_h.
                let k = &qkv[w + h * dh..];
                T::gemm_unpacked(
                    m,
                    kend,
                    dh,
                    scale,
                    dst,
                    (1, m),
                    k,
                    3 * w,
                    T::ZERO,
                    &mut dq[i0 * 3 * w + h * dh..],
                    3 * w,
                );
                T::gemm_unpacked(kend, m, dh, scale, dp, (1, kend), q, 3 * w, beta, &mut dq[w + h * dh..], 3 * w);
            }
        }
    }
}

fn dims<T>(cx: &Cx<'_, T>, heads: usize, causal: bool, steps: usize, x: ABuf) -> Dims {
    Dims { batch: cx.rows, steps: steps.max(1), width: x.cols / steps.max(1), heads, causal }
}

/// The step `Attention`: `qkv`, then `o` (and, training, `lse`) in the workspace `ws`, then `y`.
#[allow(clippy::too_many_arguments)]
pub fn step<T: Float>(
    cx: &mut Cx<'_, T>,
    heads: usize,
    causal: bool,
    steps: usize,
    x: ABuf,
    w_in: PBuf,
    b_in: PBuf,
    w_out: PBuf,
    b_out: PBuf,
    qkv: ABuf,
    o: ABuf,
    lse: Option<ABuf>,
    ws: ABuf,
    y: ABuf,
) -> Done {
    let d = dims(cx, heads, causal, steps, x);
    let (rows, n, w) = (cx.rows, d.batch * d.steps, d.width);
    let p = cx.params;
    {
        let (out, r) = cx.mem.split(qkv, rows);
        super::dense::forward_steps(n, w, 3 * w, r.get(x, rows), &p[w_in.range()], &p[b_in.range()], out);
    }
    match lse {
        Some(lse) => {
            let (ob, l, work, r) = cx.mem.split3(o, lse, ws, rows, false);
            forward(&d, cx.lengths, r.get(qkv, rows), ob, Some(l), work);
        }
        None => {
            let (ob, work, r) = cx.mem.split2(o, rows, ws);
            forward(&d, cx.lengths, r.get(qkv, rows), ob, None, work);
        }
    }
    let (out, r) = cx.mem.split(y, rows);
    super::dense::forward_steps(n, w, w, r.get(o, rows), &p[w_out.range()], &p[b_out.range()], out);
    Ok(())
}

/// The step `AttentionBackward`: the output projection's gradients and `dO`, then `dqkv`,
/// then the input projection's gradients and (unless the input is the model's) `dx`.
#[allow(clippy::too_many_arguments)]
pub fn backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    heads: usize,
    causal: bool,
    steps: usize,
    x: ABuf,
    w_in: PBuf,
    w_out: PBuf,
    qkv: ABuf,
    o: ABuf,
    lse: ABuf,
    ws: ABuf,
    dy: ABuf,
    d_o: ABuf,
    dqkv: ABuf,
    dw_in: PBuf,
    db_in: PBuf,
    dw_out: PBuf,
    db_out: PBuf,
    dx: Option<(ABuf, Write)>,
) -> Done {
    let d = dims(cx, heads, causal, steps, x);
    let (rows, n, w) = (cx.rows, d.batch * d.steps, d.width);
    let p = cx.params;
    {
        let (g, r) = cx.mem.split(d_o, rows);
        let (dwo, dbo) = crate::mem::split_pair(cx.grads, dw_out.range(), db_out.range());
        super::dense::backward_params(n, w, w, r.get(o, rows), r.get(dy, rows), dwo, dbo);
        super::dense::backward_input(n, w, w, &p[w_out.range()], r.get(dy, rows), g, false);
    }
    {
        let (g, work, r) = cx.mem.split2(dqkv, rows, ws);
        backward(&d, cx.lengths, r.get(qkv, rows), r.get(o, rows), r.get(lse, rows), r.get(d_o, rows), g, work);
    }
    {
        let (dwi, dbi) = crate::mem::split_pair(cx.grads, dw_in.range(), db_in.range());
        let r = cx.mem.all();
        super::dense::backward_params(n, w, 3 * w, r.get(x, rows), r.get(dqkv, rows), dwi, dbi);
    }
    if let Some((dx, write)) = dx {
        let (out, r) = cx.mem.split(dx, rows);
        super::dense::backward_input(n, w, 3 * w, &p[w_in.range()], r.get(dqkv, rows), out, write == Write::Accumulate);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In f32 (the unpacked tiles, the vectorized softmax): forward and backward agree with
    /// the f64 path (matrixmultiply; the test below holds it to the definition) to f32's
    /// precision, causal or not, ragged, over several blocks of queries.
    #[test]
    fn f32_on_the_tiles_agrees_with_f64() {
        let mut seed = 3u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        // Heads of 32 features (whole vectors), and of 3 (partial ones, one head per few
        // lanes); an example of no steps beside a full one.
        for (causal, steps, lengths, width, heads) in [
            (true, 64, [64usize, 37], 64, 2),
            (true, 70, [70, 48], 64, 2),
            (false, 48, [48, 32], 64, 2),
            (false, 40, [40, 21], 64, 2),
            (true, 37, [37, 0], 12, 4),
            (false, 19, [0, 19], 12, 4),
        ] {
            let d = Dims { batch: 2, steps, width, heads, causal };
            let n = d.batch * steps * 3 * d.width;
            let qkv: Vec<f64> = (0..n).map(|_| 2.0 * rnd()).collect();
            let g: Vec<f64> = (0..d.batch * steps * d.width).map(|_| rnd()).collect();
            let run64 = || {
                let (mut o, mut lse) = (vec![0.0; g.len()], vec![0.0; d.batch * d.heads * steps]);
                let mut ws = vec![0.0; workspace(steps, d.width, d.heads)];
                forward(&d, &lengths, &qkv, &mut o, Some(&mut lse), &mut ws);
                let mut dq = vec![f64::NAN; n];
                backward(&d, &lengths, &qkv, &o, &lse, &g, &mut dq, &mut ws);
                (o, dq)
            };
            let run32 = || {
                let (q, g): (Vec<f32>, Vec<f32>) =
                    (qkv.iter().map(|&v| v as f32).collect(), g.iter().map(|&v| v as f32).collect());
                let (mut o, mut lse) = (vec![0.0; g.len()], vec![0.0; d.batch * d.heads * steps]);
                let mut ws = vec![0.0; workspace(steps, d.width, d.heads)];
                forward(&d, &lengths, &q, &mut o, Some(&mut lse), &mut ws);
                let mut dq = vec![f32::NAN; n];
                backward(&d, &lengths, &q, &o, &lse, &g, &mut dq, &mut ws);
                (o, dq)
            };
            let ((o64, d64), (o32, d32)) = (run64(), run32());
            for (what, a, b) in [("o", &o64, &o32), ("dqkv", &d64, &d32)] {
                for (k, (&x, &y)) in a.iter().zip(b.iter()).enumerate() {
                    assert!(
                        (x - f64::from(y)).abs() < 2e-5 * (1.0 + x.abs()),
                        "causal {causal}, {steps} steps, {what}[{k}]: {x} vs {y}"
                    );
                }
            }
        }
    }

    /// The attention of one example, written out the long way in f64 (every score, every
    /// mask, a plain softmax), against [`forward`]; and [`backward`] against centred
    /// differences of `Σ o·g` for a fixed `g`.
    #[test]
    fn forward_and_backward_match_the_definition() {
        // Short sequences (one block of queries), and long enough for causal attention's
        // blocks: three of them, the last partial, one example's length inside its second.
        let long = 2 * CAUSAL_BLOCK + 5;
        let cases = [
            (false, 5, [5usize, 3]),
            (true, 5, [5, 3]),
            (true, long, [long, CAUSAL_BLOCK + 7]),
            (false, long, [long, 9]),
        ];
        for (causal, steps, lengths) in cases {
            let d = Dims { batch: 2, steps, width: 6, heads: 2, causal };
            let n = d.batch * d.steps * 3 * d.width;
            let mut seed = 7u64;
            let mut rnd = || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
            };
            let qkv: Vec<f64> = (0..n).map(|_| 2.0 * rnd()).collect();
            let g: Vec<f64> = (0..d.batch * d.steps * d.width).map(|_| rnd()).collect();
            let run = |qkv: &[f64], lse: Option<&mut [f64]>| {
                let mut o = vec![f64::NAN; d.batch * d.steps * d.width];
                let mut ws = vec![0.0; workspace(d.steps, d.width, d.heads)];
                forward(&d, &lengths, qkv, &mut o, lse, &mut ws);
                o
            };
            let mut lse = vec![0.0; d.batch * d.heads * d.steps];
            let o = run(&qkv, Some(&mut lse));
            // The definition.
            let (t, w, dh) = (d.steps, d.width, d.head());
            for b in 0..d.batch {
                for i in 0..t {
                    for h in 0..d.heads {
                        for c in 0..dh {
                            let got = o[(b * t + i) * w + h * dh + c];
                            if i >= lengths[b] {
                                assert_eq!(got, 0.0);
                                continue;
                            }
                            let at = |j: usize, part: usize, c: usize| qkv[(b * t + j) * 3 * w + part * w + h * dh + c];
                            let keys: Vec<usize> = (0..lengths[b]).filter(|&j| !causal || j <= i).collect();
                            let s: Vec<f64> = keys
                                .iter()
                                .map(|&j| (0..dh).map(|e| at(i, 0, e) * at(j, 1, e)).sum::<f64>() / (dh as f64).sqrt())
                                .collect();
                            let z: f64 = s.iter().map(|v| v.exp()).sum();
                            let want: f64 = keys.iter().zip(&s).map(|(&j, v)| v.exp() / z * at(j, 2, c)).sum();
                            assert!((got - want).abs() < 1e-12, "b{b} i{i} h{h} c{c}: {got} vs {want}");
                        }
                    }
                }
            }
            // Backward against differences (only real steps move).
            let mut dqkv = vec![f64::NAN; n];
            let mut ws = vec![0.0; workspace(t, d.width, d.heads)];
            backward(&d, &lengths, &qkv, &o, &lse, &g, &mut dqkv, &mut ws);
            let loss = |q: &[f64]| run(q, None).iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
            for k in 0..n {
                let row = k / (3 * w);
                let (b, i) = (row / t, row % t);
                if i >= lengths[b] {
                    assert_eq!(dqkv[k], 0.0, "padding gets no gradient");
                    continue;
                }
                let (mut up, mut down) = (qkv.clone(), qkv.clone());
                up[k] += 1e-6;
                down[k] -= 1e-6;
                let num = (loss(&up) - loss(&down)) / 2e-6;
                assert!((num - dqkv[k]).abs() < 1e-7, "causal {causal}, element {k}: {} vs {num}", dqkv[k]);
            }
        }
    }
}
