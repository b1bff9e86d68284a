//! Dense layers on the same register tiles as the convolutions: the forward product as dot
//! products of rows of x and W where they lie, `dW = dyᵀ·x` and `dx = dy·W` reading W, x and dy
//! in place. Nothing is packed.

use super::*;

/// `dx[r0 + r, i0..i0 + width] (+)= Σ_o dy[r0 + r, o] · w[o, i0..i0 + width]` for the first
/// `m` of 6 rows (the others repeat a valid one and are not stored): a dense layer's input
/// gradient, `w` read in place (`[out × inp]`, rows `inp` apart).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dense_dx_tile<S: Simd, const NV: usize>(
    simd: S,
    dy: &[f32],
    out: usize,
    rows: [usize; MR],
    m: usize,
    w: &[f32],
    inp: usize,
    i0: usize,
    keep: bool,
    dx: &mut [f32],
) {
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    let mut acc = [[simd.splat_f32s(0.0); NV]; MR];
    if keep {
        for (r, row) in acc.iter_mut().enumerate().take(m) {
            let (v, _) = S::as_simd_f32s(&dx[rows[r] * inp + i0..rows[r] * inp + i0 + width]);
            row.copy_from_slice(&v[..NV]);
        }
    }
    let at = |r: usize| &dy[rows[r] * out..(rows[r] + 1) * out];
    let (r0, r1, r2, r3, r4, r5) = (at(0), at(1), at(2), at(3), at(4), at(5));
    let ws = w[..out * inp].chunks_exact(inp);
    for ((((((a0, a1), a2), a3), a4), a5), wrow) in r0.iter().zip(r1).zip(r2).zip(r3).zip(r4).zip(r5).zip(ws) {
        let (b, _) = S::as_simd_f32s(&wrow[i0..i0 + width]);
        let b: &[S::f32s; NV] = b.try_into().expect("NV vectors of a row of w");
        for (r, &a) in [a0, a1, a2, a3, a4, a5].into_iter().enumerate() {
            let a = simd.splat_f32s(a);
            for v in 0..NV {
                acc[r][v] = simd.mul_add_f32s(a, b[v], acc[r][v]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(m) {
        let (v, _) = S::as_mut_simd_f32s(&mut dx[rows[r] * inp + i0..rows[r] * inp + i0 + width]);
        v.copy_from_slice(row);
    }
}

/// `dw[o0 + r, i0..i0 + width] (+)= Σ_rows dy[row, o0 + r] · x[row, i0..i0 + width]` for `M`
/// consecutive outputs (`keep`: add to `dw`): a dense layer's weight gradient in its own
/// layout (`[out × inp]`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dense_dw_tile<S: Simd, const M: usize, const NV: usize>(
    simd: S,
    (x, inp): (&[f32], usize),
    (dy, out): (&[f32], usize),
    (o0, first, i0): (usize, usize, usize),
    keep: bool,
    dw: &mut [f32],
) {
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    let mut acc = [[simd.splat_f32s(0.0); NV]; M];
    // `dw` holds the rows of outputs `first..`.
    let at = |r: usize| (o0 - first + r) * inp + i0;
    if keep {
        for (r, row) in acc.iter_mut().enumerate() {
            let (v, _) = S::as_simd_f32s(&dw[at(r)..at(r) + width]);
            row.copy_from_slice(&v[..NV]);
        }
    }
    for (xrow, grow) in x.chunks_exact(inp).zip(dy.chunks_exact(out)) {
        let a: &[f32; M] = grow[o0..].first_chunk().expect("M outputs of a row of dy");
        let (b, _) = S::as_simd_f32s(&xrow[i0..i0 + width]);
        let b: &[S::f32s; NV] = b.try_into().expect("NV vectors of a row of x");
        for r in 0..M {
            let a = simd.splat_f32s(a[r]);
            for v in 0..NV {
                acc[r][v] = simd.mul_add_f32s(a, b[v], acc[r][v]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let (v, _) = S::as_mut_simd_f32s(&mut dw[at(r)..at(r) + width]);
        v.copy_from_slice(row);
    }
}

/// Rows per block of a dense layer's weight gradient.
const DENSE_ROWS: usize = 64;

/// From this many rows (a layer at every step of a batch of sequences) both gradients run on
/// the packed tiles (`super::packed`), whose sums are these tiles' in the same order: packing
/// costs a pass over each operand, which pays only over many rows.
const PACKED_ROWS: usize = 512;

struct DenseBackward<'a> {
    rows: usize,
    inp: usize,
    out: usize,
    x: &'a [f32],
    w: &'a [f32],
    dy: &'a [f32],
    dw: Option<(&'a mut [f32], Range<usize>)>,
    dx: Option<(&'a mut [f32], bool)>,
}

impl pulp::WithSimd for DenseBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let DenseBackward { rows, inp, out, x, w, dy, dw, dx } = self;
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        let dy = &dy[..rows * out];
        if rows >= PACKED_ROWS {
            if let Some((dw, outs)) = dw {
                super::packed::weight_grads(simd, rows, inp, out, x, dy, outs, dw);
            }
            if let Some((dx, keep)) = dx {
                super::packed::input_grads(simd, rows, inp, out, w, dy, dx, keep);
            }
            return;
        }
        // dW, in tiles of up to 6 outputs × one panel of inputs, over blocks of rows (each
        // tile's rows of x stay in the first-level cache; a block continues the sums the
        // last one stored, so the order of the additions is the rows' order).
        if let Some((dw, outs)) = dw {
            for (b, (xb, dyb)) in x.chunks(DENSE_ROWS * inp).zip(dy.chunks(DENSE_ROWS * out)).enumerate() {
                let keep = b > 0;
                let mut i0 = 0;
                while i0 < inp {
                    let wide = inp - i0 >= 2 * lanes;
                    let mut o0 = outs.start;
                    while o0 < outs.end {
                        let m = (outs.end - o0).min(MR);
                        let args = ((xb, inp), (dyb, out), (o0, outs.start, i0), keep);
                        macro_rules! run {
                            ($nv:literal) => {
                                match m {
                                    6 => dense_dw_tile::<S, 6, $nv>(simd, args.0, args.1, args.2, args.3, dw),
                                    5 => dense_dw_tile::<S, 5, $nv>(simd, args.0, args.1, args.2, args.3, dw),
                                    4 => dense_dw_tile::<S, 4, $nv>(simd, args.0, args.1, args.2, args.3, dw),
                                    3 => dense_dw_tile::<S, 3, $nv>(simd, args.0, args.1, args.2, args.3, dw),
                                    2 => dense_dw_tile::<S, 2, $nv>(simd, args.0, args.1, args.2, args.3, dw),
                                    _ => dense_dw_tile::<S, 1, $nv>(simd, args.0, args.1, args.2, args.3, dw),
                                }
                            };
                        }
                        if wide {
                            run!(2);
                        } else {
                            run!(1);
                        }
                        o0 += m;
                    }
                    i0 += if wide { 2 * lanes } else { lanes };
                }
            }
        }
        // dx, in tiles of 6 rows × one panel of inputs, panel by panel: the panel's column of
        // W (`out` runs of one or two vectors) stays in the first-level cache while every
        // tile of rows passes over it, where rows outer would read all of W again for each
        // tile (from the third-level cache when W is larger than the second).
        if let Some((dx, keep)) = dx {
            let mut i0 = 0;
            while i0 < inp {
                let wide = inp - i0 >= 2 * lanes;
                let mut r0 = 0;
                while r0 < rows {
                    let m = (rows - r0).min(MR);
                    let rs: [usize; MR] = std::array::from_fn(|r| r0 + r.min(m - 1));
                    if wide {
                        dense_dx_tile::<S, 2>(simd, dy, out, rs, m, w, inp, i0, keep, dx);
                    } else {
                        dense_dx_tile::<S, 1>(simd, dy, out, rs, m, w, inp, i0, keep, dx);
                    }
                    r0 += m;
                }
                i0 += if wide { 2 * lanes } else { lanes };
            }
        }
    }
}

/// A dense layer's backward pass (forward was `y = x·Wᵀ + b`, W `[out × inp]`): when `dw`
/// is given, `dW = dyᵀ·x` for the outputs of its range (overwriting the slice, which holds
/// their rows of dW), and when `dx` is given, `dx (+)= dy·W` (`true`: add), both in the
/// layers' own layouts with no packing. `false` (nothing done) without AVX2/FMA or when
/// `inp` is not a whole number of vectors.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    rows: usize,
    inp: usize,
    out: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: Option<(&mut [f32], Range<usize>)>,
    dx: Option<(&mut [f32], bool)>,
) -> bool {
    dense_backward_with(lanes(), rows, inp, out, x, w, dy, dw, dx)
}

/// [`dense_backward`] with `lanes` lanes.
#[allow(clippy::too_many_arguments)]
fn dense_backward_with(
    lanes: usize,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: Option<(&mut [f32], Range<usize>)>,
    dx: Option<(&mut [f32], bool)>,
) -> bool {
    if lanes == 0 || !inp.is_multiple_of(lanes) || rows == 0 {
        return false;
    }
    run(lanes, DenseBackward { rows, inp, out, x, w, dy, dw, dx }).is_some()
}

/// The lanes of a dense layer's forward sums: each output is summed as 16 interleaved partial
/// sums (input `i` into lane `i mod 16`), whatever the processor's vector width, then the
/// lanes are added in a fixed tree — so the result does not depend on the width.
const SUM_LANES: usize = 16;

/// `y[rows[r], outs[o]] = b + Σ_i x[rows[r], i] · w[outs[o], i]` for an `R × O` tile, the
/// inputs in vectors (`V` of the processor's per 16 values).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dot_tile<S: Simd, const R: usize, const O: usize, const V: usize>(
    simd: S,
    x: &[f32],
    w: &[f32],
    inp: usize,
    rows: [usize; R],
    outs: [usize; O],
    (m, n): (usize, usize),
    b: &[f32],
    y: &mut impl Sink,
) {
    let xs: [&[S::f32s]; R] = std::array::from_fn(|r| S::as_simd_f32s(&x[rows[r] * inp..(rows[r] + 1) * inp]).0);
    let ws: [&[S::f32s]; O] = std::array::from_fn(|o| S::as_simd_f32s(&w[outs[o] * inp..(outs[o] + 1) * inp]).0);
    let mut acc = [[[simd.splat_f32s(0.0); V]; O]; R];
    for k in 0..inp / SUM_LANES {
        let xv: [[S::f32s; V]; R] = std::array::from_fn(|r| std::array::from_fn(|v| xs[r][k * V + v]));
        let wv: [[S::f32s; V]; O] = std::array::from_fn(|o| std::array::from_fn(|v| ws[o][k * V + v]));
        for r in 0..R {
            for o in 0..O {
                for v in 0..V {
                    acc[r][o][v] = simd.mul_add_f32s(xv[r][v], wv[o][v], acc[r][o][v]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(m) {
        for (o, a) in row.iter().enumerate().take(n) {
            y.set(rows[r], outs[o], b[outs[o]] + sum16(simd, a));
        }
    }
}

/// The 16 lanes of `V` vectors added in halves (lane j + lane j + 8, then + 4, + 2, + 1):
/// with two vectors of 8 the first halving is their sum, and the reduction of 8 lanes goes on
/// in the same order as that of 16; with four vectors of 4 the first two halvings are sums of
/// vectors and the last two are written out (the unit test holds the widths equal).
#[inline(always)]
fn sum16<S: Simd, const V: usize>(simd: S, a: &[S::f32s; V]) -> f32 {
    match V {
        1 => simd.reduce_sum_f32s(a[0]),
        2 => simd.reduce_sum_f32s(simd.add_f32s(a[0], a[1])),
        _ => {
            let h = simd.add_f32s(simd.add_f32s(a[0], a[2]), simd.add_f32s(a[1], a[3]));
            let mut l = [0f32; SUM_LANES];
            S::as_mut_simd_f32s(&mut l).0[0] = h;
            (l[0] + l[2]) + (l[1] + l[3])
        }
    }
}

struct DenseForward<'a, 'b, 'c> {
    rows: usize,
    inp: usize,
    out: usize,
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    y: Out<'b, 'c, f32>,
}

impl pulp::WithSimd for DenseForward<'_, '_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let DenseForward { rows, inp, out, x, w, b, y } = self;
        // One copy of the loops per kind of output, so that a store is a store.
        match y {
            Out::Matrix(y) => dense_tiles_into(simd, (rows, inp, out), x, w, b, &mut Matrix(y, out)),
            Out::Rows(y) => dense_tiles_into(simd, (rows, inp, out), x, w, b, &mut RowSlices(y)),
        }
    }
}

/// Where [`dot_tile`] stores an output.
trait Sink {
    fn set(&mut self, r: usize, o: usize, v: f32);
}

/// A row-major matrix of the given row length.
struct Matrix<'a>(&'a mut [f32], usize);

impl Sink for Matrix<'_> {
    #[inline(always)]
    fn set(&mut self, r: usize, o: usize, v: f32) {
        self.0[r * self.1 + o] = v;
    }
}

/// A slice per row.
struct RowSlices<'a, 'b>(&'a mut [&'b mut [f32]]);

impl Sink for RowSlices<'_, '_> {
    #[inline(always)]
    fn set(&mut self, r: usize, o: usize, v: f32) {
        self.0[r][o] = v;
    }
}

/// The tiles of [`dense_forward`].
#[inline(always)]
fn dense_tiles_into<S: Simd, Y: Sink>(
    simd: S,
    (rows, inp, out): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut Y,
) {
    {
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        // Tiles of rows × outputs over blocks of DOT_BLOCK rows (a block's x stays in the
        // second-level cache while W streams past it). The tile's shape changes nothing in
        // what is computed: each output is the same sums whatever the tile, the block or the
        // rows of the call — so an example gets the same bits in any batch.
        macro_rules! tiles {
            ($r:literal, $o:literal, $v:literal, $from:expr, $to:expr) => {{
                let mut o0 = 0;
                while o0 < out {
                    let n = (out - o0).min($o);
                    let outs: [usize; $o] = std::array::from_fn(|o| o0 + o.min(n - 1));
                    let mut r0 = $from;
                    while r0 < $to {
                        let m = ($to - r0).min($r);
                        let rs: [usize; $r] = std::array::from_fn(|r| r0 + r.min(m - 1));
                        dot_tile::<S, $r, $o, $v>(simd, x, w, inp, rs, outs, (m, n), b, y);
                        r0 += m;
                    }
                    o0 += n;
                }
            }};
        }
        let mut from = 0;
        while from < rows {
            let to = (from + DOT_BLOCK).min(rows);
            // Whole tiles of rows, then the rest a row at a time (a batch of one is a
            // matrix–vector product: no tile rows to waste).
            let tiled = if lanes == 16 { 4 } else { 2 };
            let split = from + (to - from) / tiled * tiled;
            match lanes {
                16 => {
                    tiles!(4, 5, 1, from, split);
                    tiles!(1, 8, 1, split, to);
                }
                // AVX2: 2 rows × 3 outputs × 2 vectors of sums (12 of the 16 registers, with
                // the rows' two vectors and one of W's). The outputs' rows of W stay in the
                // first-level cache while the block's rows of x come from the second: a
                // cache line of x per row and step serves 6 multiply–adds (2 × 2 served 4, and
                // on Zen 3 — 32 bytes a cycle from L2 — the product waited on x at ~55% of the
                // peak; 2 × 3 runs at ~85%).
                8 => {
                    tiles!(2, 3, 2, from, split);
                    tiles!(1, 4, 2, split, to);
                }
                // NEON (4 lanes, the only other width): 2 rows × 2 outputs × 4 vectors of
                // sums, with the rows' and outputs' vectors, fill its 32 registers.
                _ => {
                    tiles!(2, 2, 4, from, split);
                    tiles!(1, 3, 4, split, to);
                }
            }
            from = to;
        }
    }
}

/// Rows per block of a dense layer's forward product.
const DOT_BLOCK: usize = 64;

/// A dense layer's forward product `y = x·Wᵀ + b` (W `[out × inp]`) without packing: each
/// output a dot product of a row of x and a row of W, both read where they lie, in register
/// tiles of rows × outputs. `y` is the `rows × out` matrix, or each row's own slice of `out`
/// values (a thread's share of the outputs, [`Out::Rows`]). `false` (nothing done) without
/// AVX2/FMA or when `inp` is not a multiple of 16 ([`dense_tiles`]).
#[allow(clippy::too_many_arguments)]
pub fn dense_forward(
    rows: usize,
    inp: usize,
    out: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: Out<'_, '_, f32>,
) -> bool {
    dense_forward_with(lanes(), rows, inp, out, x, w, b, y)
}

/// Whether a dense layer of `inp` inputs runs on this module's tiles (its forward and both
/// gradients) on this processor.
pub fn dense_tiles(inp: usize) -> bool {
    let l = lanes();
    l > 0 && inp.is_multiple_of(SUM_LANES) && inp.is_multiple_of(l)
}

/// [`dense_forward`] with `lanes` lanes.
#[allow(clippy::too_many_arguments)]
fn dense_forward_with(
    lanes: usize,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: Out<'_, '_, f32>,
) -> bool {
    if lanes == 0 || !inp.is_multiple_of(SUM_LANES) || rows == 0 || out == 0 {
        return false;
    }
    run(lanes, DenseForward { rows, inp, out, x, w, b, y }).is_some()
}

#[cfg(test)]
mod tests {
    use super::super::tests::close;
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn dense_backward_is_the_two_products_at_every_width() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let widths = widths();
        for &(rows, inp, out) in &[(1, 16, 1), (7, 48, 13), (64, 784, 256), (130, 32, 10), (5, 8, 6), (3, 80, 40)] {
            let x: Vec<f32> = (0..rows * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..out * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let dy: Vec<f32> = (0..rows * out).map(|_| rng.random_range(-1.0..1.0)).collect();
            let dx0: Vec<f32> = (0..rows * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut want_dw = vec![0f64; out * inp];
            let mut want_dx: Vec<f64> = dx0.iter().map(|&v| f64::from(v)).collect();
            for r in 0..rows {
                for o in 0..out {
                    let g = f64::from(dy[r * out + o]);
                    for i in 0..inp {
                        want_dw[o * inp + i] += g * f64::from(x[r * inp + i]);
                        want_dx[r * inp + i] += g * f64::from(w[o * inp + i]);
                    }
                }
            }
            let mut results = Vec::new();
            for &l in &widths {
                if inp % l != 0 {
                    assert!(!dense_backward_with(
                        l,
                        rows,
                        inp,
                        out,
                        &x,
                        &w,
                        &dy,
                        Some((&mut vec![0.0; out * inp], 0..out)),
                        None
                    ));
                    continue;
                }
                let mut dw = vec![f32::NAN; out * inp];
                let mut dx = dx0.clone();
                assert!(dense_backward_with(
                    l,
                    rows,
                    inp,
                    out,
                    &x,
                    &w,
                    &dy,
                    Some((&mut dw, 0..out)),
                    Some((&mut dx, true))
                ));
                close(&dw, &want_dw, &format!("{rows}×{inp}×{out} lanes {l}: dW"));
                close(&dx, &want_dx, &format!("{rows}×{inp}×{out} lanes {l}: dx"));
                let mut dx2 = vec![f32::NAN; rows * inp];
                assert!(dense_backward_with(l, rows, inp, out, &x, &w, &dy, None, Some((&mut dx2, false))));
                let plain: Vec<f64> = want_dx.iter().zip(&dx0).map(|(a, &b)| a - f64::from(b)).collect();
                close(&dx2, &plain, &format!("{rows}×{inp}×{out} lanes {l}: dx overwritten"));
                results.push((dw, dx));
            }
            if let [a, rest @ ..] = &results[..] {
                assert!(rest.iter().all(|b| a == b), "{rows}×{inp}×{out}: the widths differ");
            }
        }
    }

    /// From `PACKED_ROWS` rows the gradients run on the packed tiles: each entry the same
    /// chain as the unpacked tiles' — one fused multiply–add per row (dW, from zero) or per
    /// output (dx, from zero or from dx), in order — so the bits of `f32::mul_add` chains,
    /// at every width, for a share of the outputs too, with panels and row blocks cut unevenly.
    #[test]
    fn many_rows_gradients_are_the_unpacked_tiles_chains() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        for (rows, inp, out, outs) in [(515, 24, 13, 0..13), (600, 48, 20, 3..17), (PACKED_ROWS, 8, 7, 0..7)] {
            let x: Vec<f32> = (0..rows * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..out * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let dy: Vec<f32> = (0..rows * out).map(|_| rng.random_range(-1.0..1.0)).collect();
            let dx0: Vec<f32> = (0..rows * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut want_dw = vec![0f32; outs.len() * inp];
            for (k, o) in outs.clone().enumerate() {
                for i in 0..inp {
                    want_dw[k * inp + i] = (0..rows).fold(0f32, |acc, r| dy[r * out + o].mul_add(x[r * inp + i], acc));
                }
            }
            let dx_from = |start: &[f32]| -> Vec<f32> {
                (0..rows * inp)
                    .map(|at| {
                        let (r, i) = (at / inp, at % inp);
                        (0..out).fold(start[at], |acc, o| dy[r * out + o].mul_add(w[o * inp + i], acc))
                    })
                    .collect()
            };
            let (want_added, want_set) = (dx_from(&dx0), dx_from(&vec![0.0; rows * inp]));
            for l in widths().into_iter().filter(|l| inp % l == 0) {
                let mut dw = vec![f32::NAN; outs.len() * inp];
                let mut dx = dx0.clone();
                assert!(dense_backward_with(
                    l,
                    rows,
                    inp,
                    out,
                    &x,
                    &w,
                    &dy,
                    Some((&mut dw, outs.clone())),
                    Some((&mut dx, true))
                ));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&dw), bits(&want_dw), "{rows}×{inp}×{out} lanes {l}: dW");
                assert_eq!(bits(&dx), bits(&want_added), "{rows}×{inp}×{out} lanes {l}: dx added");
                let mut dx = vec![f32::NAN; rows * inp];
                assert!(dense_backward_with(l, rows, inp, out, &x, &w, &dy, None, Some((&mut dx, false))));
                assert_eq!(bits(&dx), bits(&want_set), "{rows}×{inp}×{out} lanes {l}: dx");
            }
        }
    }

    #[test]
    fn dense_forward_is_the_product_and_the_same_bits_at_every_width() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let widths = widths();
        for &(rows, inp, out) in
            &[(1, 784, 256), (3, 16, 9), (9, 16, 1), (64, 784, 256), (13, 48, 10), (150, 256, 128), (33, 32, 7)]
        {
            let x: Vec<f32> = (0..rows * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..out * inp).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..out).map(|_| rng.random_range(-1.0..1.0)).collect();
            let want: Vec<f64> = (0..rows * out)
                .map(|at| {
                    let (r, o) = (at / out, at % out);
                    f64::from(b[o])
                        + (0..inp).map(|i| f64::from(x[r * inp + i]) * f64::from(w[o * inp + i])).sum::<f64>()
                })
                .collect();
            let mut results = Vec::new();
            for &l in &widths {
                let mut y = vec![f32::NAN; rows * out];
                assert!(dense_forward_with(l, rows, inp, out, &x, &w, &b, Out::Matrix(&mut y)));
                close(&y, &want, &format!("{rows}×{inp}×{out} lanes {l}"));
                results.push(y);
            }
            if let [a, rest @ ..] = &results[..] {
                assert!(rest.iter().all(|b| a == b), "{rows}×{inp}×{out}: the widths differ");
            }
            // Each row alone gives the same bits as in the batch.
            if let Some(all) = results.first() {
                for r in [0, rows / 2, rows - 1] {
                    let mut one = vec![f32::NAN; out];
                    assert!(dense_forward(1, inp, out, &x[r * inp..(r + 1) * inp], &w, &b, Out::Matrix(&mut one)));
                    assert!(one[..] == all[r * out..(r + 1) * out], "{rows}×{inp}×{out}: row {r} alone differs");
                }
            }
        }
        // Inputs that are not whole groups of 16 are left to matrixmultiply.
        assert!(!dense_forward_with(
            lanes().max(8),
            2,
            24,
            3,
            &[0.0; 48],
            &[0.0; 72],
            &[0.0; 3],
            Out::Matrix(&mut [0.0; 6])
        ));
    }
}
