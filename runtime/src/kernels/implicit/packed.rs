//! Large dense products with both operands packed: the layers applied at every step of a
//! sequence (batch × steps rows: a transformer's MLP and attention's projections). Each
//! operand is copied, a block of the reduction at a time, into the order the register tiles
//! read it — B in panels of two vectors of columns, A in groups of six rows with their six
//! values of each step side by side — so that a tile's inner loop is two vector loads, six
//! broadcasts from one pointer and twelve fused multiply–adds, with no bounds checks, no
//! spilled row pointers and no strided reads. Reading the operands where they lie instead
//! (the other tiles of this module, matrixmultiply for the forward pass) held these products,
//! timed alone on a 2-core AMD EPYC (Zen 3), at ~45–65% of the FMA peak; packed, ~70–85%
//! (inside a transformer's step, whose maps are not in cache, ~60%).
//!
//! Every entry of C is one chain of multiply–adds over the reduction in order, started from
//! zero, from C or from the bias, however the rows and columns are cut and whatever the
//! vector width: the input and weight gradients are the same chains (and so the same bits)
//! as [`super::dense_backward`]'s unpacked tiles, and an example's forward outputs do not
//! depend on the batch it comes in.

use pulp::Simd;
use std::ops::Range;

/// Rows per tile.
const MR: usize = 6;

/// Steps of the reduction per packed block (the forward pass and `dx`): B's block is
/// `KC × columns`, at most 512 × 512 floats here.
const KC: usize = 512;

/// Rows of the batch per block of the weight gradient (its reduction).
const KC_DW: usize = 256;

/// Where a tile's sums start.
#[derive(Clone, Copy)]
enum Init<'a> {
    /// From zero.
    Zero,
    /// From C (continuing its chain, or adding onto it).
    Keep,
    /// From a row vector (the bias), the tile's columns of it.
    Row(&'a [f32]),
}

/// Up to `2 × lanes` values of `src` into two vectors, the rest zero.
#[inline(always)]
fn load2<S: Simd>(src: &[f32], valid: usize, full: usize) -> [S::f32s; 2] {
    if valid == full {
        let (v, _) = S::as_simd_f32s(&src[..full]);
        [v[0], v[1]]
    } else {
        let mut tmp = [0f32; 64];
        tmp[..valid].copy_from_slice(&src[..valid]);
        let (v, _) = S::as_simd_f32s(&tmp[..full]);
        [v[0], v[1]]
    }
}

/// `C[r, 0..valid] = init + Σ_t ap[t][r] · bp[t][..]` for the first `m` of six rows (rows
/// `rsc` apart): `ap` is `kc` groups of six values, `bp` `kc` rows of two vectors.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Simd>(
    simd: S,
    kc: usize,
    ap: &[f32],
    bp: &[f32],
    c: &mut [f32],
    rsc: usize,
    m: usize,
    valid: usize,
    init: Init,
) {
    let full = 2 * (std::mem::size_of::<S::f32s>() / 4);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; 2]; MR];
    match init {
        Init::Zero => {}
        Init::Keep => {
            for (r, row) in acc.iter_mut().enumerate().take(m) {
                *row = load2::<S>(&c[r * rsc..], valid, full);
            }
        }
        Init::Row(b) => acc = [load2::<S>(b, valid, full); MR],
    }
    let (bv, _) = S::as_simd_f32s(&bp[..kc * full]);
    for (a, b) in ap[..kc * MR].chunks_exact(MR).zip(bv.chunks_exact(2)) {
        for r in 0..MR {
            let x = simd.splat_f32s(a[r]);
            acc[r][0] = simd.mul_add_f32s(x, b[0], acc[r][0]);
            acc[r][1] = simd.mul_add_f32s(x, b[1], acc[r][1]);
        }
    }
    for (r, row) in acc.iter().enumerate().take(m) {
        let out = &mut c[r * rsc..];
        if valid == full {
            let (v, _) = S::as_mut_simd_f32s(&mut out[..full]);
            v[..2].copy_from_slice(row);
        } else {
            let mut tmp = [0f32; 64];
            let (v, _) = S::as_mut_simd_f32s(&mut tmp[..full]);
            v[..2].copy_from_slice(row);
            out[..valid].copy_from_slice(&tmp[..valid]);
        }
    }
}

/// Packs the block `k0..k0 + kl` of B's reduction (`n` columns; entry `(t, j)` at
/// `b[t·rsb + j·csb]`, one of the strides 1) into panels of `w` columns, each `kl` rows of
/// `w` values (the last panel's missing columns zero).
#[allow(clippy::too_many_arguments)]
fn pack_b(b: &[f32], (rsb, csb): (usize, usize), k0: usize, kl: usize, n: usize, w: usize, bp: &mut Vec<f32>) {
    bp.clear();
    bp.resize(n.div_ceil(w) * kl * w, 0.0);
    for (p, dst) in bp.chunks_exact_mut(kl * w).enumerate() {
        let (j0, cols) = (p * w, (n - p * w).min(w));
        if csb == 1 {
            for (t, d) in dst.chunks_exact_mut(w).enumerate() {
                let at = (k0 + t) * rsb + j0;
                d[..cols].copy_from_slice(&b[at..at + cols]);
            }
        } else {
            // B's columns are contiguous (Wᵀ: the rows of W): read each along the reduction.
            for j in 0..cols {
                let src = &b[(j0 + j) * csb + k0 * rsb..];
                for (t, d) in dst.chunks_exact_mut(w).enumerate() {
                    d[j] = src[t * rsb];
                }
            }
        }
    }
}

/// `C[m × n] = init + A·B` with A's rows contiguous (`rsa` apart) and C's rows `n` apart:
/// the forward pass (`y = b + x·Wᵀ`, B = Wᵀ read from W's rows) and the input gradient
/// (`dx (+)= dy·W`).
struct RowsTimes<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: &'a [f32],
    rsa: usize,
    b: &'a [f32],
    strides_b: (usize, usize),
    c: &'a mut [f32],
    init: Init<'a>,
}

impl pulp::WithSimd for RowsTimes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let RowsTimes { m, k, n, a, rsa, b, strides_b, c, init } = self;
        let w = 2 * (std::mem::size_of::<S::f32s>() / 4);
        let (mut bp, mut ap) = (Vec::new(), vec![0f32; KC.min(k) * MR]);
        let panels = n.div_ceil(w);
        let mut k0 = 0;
        loop {
            let kl = (k - k0).min(KC);
            pack_b(b, strides_b, k0, kl, n, w, &mut bp);
            let first = k0 == 0;
            for i0 in (0..m).step_by(MR) {
                let rows = (m - i0).min(MR);
                // The group's rows side by side (the last rows repeat the last: not stored).
                let src: [&[f32]; MR] = std::array::from_fn(|r| {
                    let at = (i0 + r.min(rows - 1)) * rsa + k0;
                    &a[at..at + kl]
                });
                for (t, d) in ap[..kl * MR].chunks_exact_mut(MR).enumerate() {
                    for r in 0..MR {
                        d[r] = src[r][t];
                    }
                }
                for p in 0..panels {
                    let (j0, valid) = (p * w, (n - p * w).min(w));
                    let init = match (first, init) {
                        (true, Init::Row(bias)) => Init::Row(&bias[j0..]),
                        (true, i) => i,
                        (false, _) => Init::Keep,
                    };
                    let bp = &bp[p * kl * w..(p + 1) * kl * w];
                    tile(simd, kl, &ap, bp, &mut c[i0 * n + j0..], n, rows, valid, init);
                }
            }
            k0 += kl;
            if k0 >= k {
                break;
            }
        }
    }
}

/// `dW[outs] = dyᵀ·x` over `rows` (dW's rows of the outputs `outs`, `[outs × inp]`), each
/// entry summed from zero in the rows' order, a block of rows at a time.
struct WeightGrads<'a> {
    rows: usize,
    inp: usize,
    out: usize,
    x: &'a [f32],
    dy: &'a [f32],
    outs: Range<usize>,
    dw: &'a mut [f32],
}

impl pulp::WithSimd for WeightGrads<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let WeightGrads { rows, inp, out, x, dy, outs, dw } = self;
        let w = 2 * (std::mem::size_of::<S::f32s>() / 4);
        let (nout, panels) = (outs.len(), inp.div_ceil(w));
        let groups = nout.div_ceil(MR);
        let (mut bp, mut ap) = (Vec::new(), vec![0f32; groups * KC_DW.min(rows) * MR]);
        for k0 in (0..rows).step_by(KC_DW) {
            let kl = (rows - k0).min(KC_DW);
            pack_b(x, (inp, 1), k0, kl, inp, w, &mut bp);
            // dy's rows of the block, each group's six outputs side by side: `[g][t][6]`.
            for t in 0..kl {
                let row = &dy[(k0 + t) * out + outs.start..(k0 + t) * out + outs.end];
                for (g, vals) in row.chunks(MR).enumerate() {
                    let d = &mut ap[(g * kl + t) * MR..(g * kl + t + 1) * MR];
                    match (<&[f32; MR]>::try_from(vals), <&mut [f32; MR]>::try_from(&mut *d)) {
                        (Ok(v), Ok(d)) => *d = *v,
                        _ => d[..vals.len()].copy_from_slice(vals),
                    }
                }
            }
            let init = if k0 == 0 { Init::Zero } else { Init::Keep };
            macro_rules! one {
                ($g:expr, $p:expr) => {{
                    let (g, p): (usize, usize) = ($g, $p);
                    let (j0, valid) = (p * w, (inp - p * w).min(w));
                    let ap = &ap[g * kl * MR..(g + 1) * kl * MR];
                    let bp = &bp[p * kl * w..(p + 1) * kl * w];
                    let m = (nout - g * MR).min(MR);
                    tile(simd, kl, ap, bp, &mut dw[g * MR * inp + j0..], inp, m, valid, init);
                }};
            }
            // The larger of the packed operands streams from the second-level cache while a
            // piece of the other stays in the first.
            if inp > nout {
                for p in 0..panels {
                    for g in 0..groups {
                        one!(g, p);
                    }
                }
            } else {
                for g in 0..groups {
                    for p in 0..panels {
                        one!(g, p);
                    }
                }
            }
        }
    }
}

/// `y[rows × out] = b + x·Wᵀ` (W `[out × inp]`, the bias as each sum's start) on the packed
/// tiles; `false` (nothing done) where the processor has none.
pub fn forward(rows: usize, inp: usize, out: usize, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) -> bool {
    forward_with(super::lanes(), rows, inp, out, x, w, b, y)
}

/// [`forward`] with `lanes` lanes.
#[allow(clippy::too_many_arguments)]
fn forward_with(
    lanes: usize,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
) -> bool {
    if lanes == 0 {
        return false;
    }
    if rows == 0 || out == 0 {
        return true;
    }
    let (x, w, b, y) = (&x[..rows * inp], &w[..out * inp], &b[..out], &mut y[..rows * out]);
    if inp == 0 {
        y.chunks_exact_mut(out).for_each(|r| r.copy_from_slice(b));
        return true;
    }
    let op = RowsTimes { m: rows, k: inp, n: out, a: x, rsa: inp, b: w, strides_b: (1, inp), c: y, init: Init::Row(b) };
    super::run(lanes, op).is_some()
}

/// `dx (+)= dy·W` (`keep`: add) on the packed tiles: the same sums, in the same order, as
/// the unpacked tiles'.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn input_grads<S: Simd>(
    simd: S,
    rows: usize,
    inp: usize,
    out: usize,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    keep: bool,
) {
    let init = if keep { Init::Keep } else { Init::Zero };
    let (dy, dx) = (&dy[..rows * out], &mut dx[..rows * inp]);
    if out == 0 {
        if !keep {
            dx.fill(0.0);
        }
        return;
    }
    pulp::WithSimd::with_simd(
        RowsTimes { m: rows, k: out, n: inp, a: dy, rsa: out, b: &w[..out * inp], strides_b: (inp, 1), c: dx, init },
        simd,
    );
}

/// `dW = dyᵀ·x` for the outputs `outs` (`dw` holds their rows) on the packed tiles: the same
/// sums, in the same order, as the unpacked tiles'.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_grads<S: Simd>(
    simd: S,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[f32],
    dy: &[f32],
    outs: Range<usize>,
    dw: &mut [f32],
) {
    let dw = &mut dw[..outs.len() * inp];
    if rows == 0 {
        dw.fill(0.0);
        return;
    }
    pulp::WithSimd::with_simd(WeightGrads { rows, inp, out, x, dy, outs, dw }, simd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// The forward product against f64 sums and, bit for bit, against the chain it promises
    /// (the bias, then a fused multiply–add per input in order), at every width the processor
    /// has, for shapes that cut the tiles, panels and reduction blocks unevenly; and each
    /// row's outputs the same bits whatever the rows around it.
    #[test]
    fn forward_is_bias_plus_product_and_one_rows_outputs_whatever_the_batch() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for &(rows, inp, out) in &[(1, 1, 1), (7, 5, 3), (13, 16, 17), (64, 128, 96), (9, 600, 40), (25, 48, 530)] {
            let x: Vec<f32> = (0..rows * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..out * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..out).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut first: Option<Vec<f32>> = None;
            for lanes in super::super::widths() {
                let mut y = vec![f32::NAN; rows * out];
                assert!(forward_with(lanes, rows, inp, out, &x, &w, &b, &mut y));
                for r in 0..rows {
                    for o in 0..out {
                        let s: f64 = f64::from(b[o])
                            + (0..inp).map(|i| f64::from(x[r * inp + i]) * f64::from(w[o * inp + i])).sum::<f64>();
                        let got = f64::from(y[r * out + o]);
                        assert!((got - s).abs() < 1e-4 * (1.0 + s.abs()), "{rows}×{inp}×{out} [{r},{o}]: {got} vs {s}");
                        // Exactly the chain: the bias, then one fused multiply–add per input.
                        let chain = (0..inp).fold(b[o], |acc, i| x[r * inp + i].mul_add(w[o * inp + i], acc));
                        assert_eq!(chain.to_bits(), y[r * out + o].to_bits(), "{rows}×{inp}×{out} [{r},{o}]");
                    }
                }
                // The last row alone gives the same bits as within the batch.
                let mut one = vec![0f32; out];
                assert!(forward_with(lanes, 1, inp, out, &x[(rows - 1) * inp..], &w, &b, &mut one));
                assert!(one.iter().zip(&y[(rows - 1) * out..]).all(|(p, q)| p.to_bits() == q.to_bits()));
                match &first {
                    None => first = Some(y),
                    Some(f) => assert!(f.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "{lanes} lanes"),
                }
            }
        }
        assert!(!forward_with(0, 1, 1, 1, &[1.0], &[1.0], &[0.0], &mut [0.0]));
    }
}
