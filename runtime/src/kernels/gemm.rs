//! Bounds checks for the strided matrix products of matrixmultiply: the only unsafe calls of
//! the runtime go through [`crate::Float::gemm`], which checks with [`checked`] first. And
//! the products of a few rows ([`few_rows`]), where matrixmultiply would spend more time
//! packing the other operand than multiplying: a layer at batch 1 is a matrix–vector product.

/// The largest index a strided `rows × cols` matrix touches, plus one.
fn extent(rows: usize, cols: usize, rs: isize, cs: isize) -> usize {
    if rows == 0 || cols == 0 {
        return 0;
    }
    assert!(rs >= 0 && cs >= 0, "negative strides are not used by the runtime");
    (rows - 1) * rs as usize + (cols - 1) * cs as usize + 1
}

/// Panics (a bug in the plan, never in user input) unless the product fits its slices.
#[allow(clippy::too_many_arguments)]
pub fn checked(
    m: usize,
    k: usize,
    n: usize,
    a_len: usize,
    rsa: isize,
    csa: isize,
    b_len: usize,
    rsb: isize,
    csb: isize,
    c_len: usize,
    rsc: isize,
    csc: isize,
) {
    assert!(extent(m, k, rsa, csa) <= a_len, "gemm: A out of bounds");
    assert!(extent(k, n, rsb, csb) <= b_len, "gemm: B out of bounds");
    assert!(extent(m, n, rsc, csc) <= c_len, "gemm: C out of bounds");
}

/// Products of at most this many rows go through [`few_rows`] (when the layouts allow).
pub const FEW_ROWS: usize = 8;

/// `alpha · A·B + beta · C` for rows of A and columns of B that are slices: a dot product per
/// output, four vector accumulators in flight.
struct Dots<'a> {
    m: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    a: &'a [f32],
    rsa: usize,
    b: &'a [f32],
    csb: usize,
    c: &'a mut [f32],
    rsc: usize,
    n: usize,
}

impl pulp::WithSimd for Dots<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Dots { m, k, alpha, beta, a, rsa, b, csb, c, rsc, n } = self;
        for r in 0..m {
            let (xh, xt) = S::as_simd_f32s(&a[r * rsa..r * rsa + k]);
            for j in 0..n {
                let (yh, yt) = S::as_simd_f32s(&b[j * csb..j * csb + k]);
                let zero = simd.splat_f32s(0.0);
                let mut acc = [zero; 4];
                let (xq, yq) = (xh.chunks_exact(4), yh.chunks_exact(4));
                let (xr, yr) = (xq.remainder(), yq.remainder());
                for (x, y) in xq.zip(yq) {
                    for l in 0..4 {
                        acc[l] = simd.mul_add_f32s(x[l], y[l], acc[l]);
                    }
                }
                for (l, (x, y)) in xr.iter().zip(yr).enumerate() {
                    acc[l] = simd.mul_add_f32s(*x, *y, acc[l]);
                }
                let v = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
                let mut sum = simd.reduce_sum_f32s(v);
                for (x, y) in xt.iter().zip(yt) {
                    sum += x * y;
                }
                let o = &mut c[r * rsc + j];
                *o = if beta == 0.0 { alpha * sum } else { alpha * sum + beta * *o };
            }
        }
    }
}

/// `alpha · A·B + beta · C` for rows of B and C that are slices: each row of C (a few KB,
/// in L1) accumulates the rows of B scaled by A's entries, B read once per row of C in order.
struct Axpys<'a> {
    m: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    a: &'a [f32],
    rsa: usize,
    b: &'a [f32],
    rsb: usize,
    c: &'a mut [f32],
    rsc: usize,
    n: usize,
}

impl pulp::WithSimd for Axpys<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Axpys { m, k, alpha, beta, a, rsa, b, rsb, c, rsc, n } = self;
        for r in 0..m {
            let out = &mut c[r * rsc..r * rsc + n];
            if beta == 0.0 {
                out.fill(0.0);
            } else if beta != 1.0 {
                out.iter_mut().for_each(|o| *o *= beta);
            }
            let (oh, ot) = S::as_mut_simd_f32s(out);
            for i in 0..k {
                let s = alpha * a[r * rsa + i];
                let sv = simd.splat_f32s(s);
                let (bh, bt) = S::as_simd_f32s(&b[i * rsb..i * rsb + n]);
                for (o, v) in oh.iter_mut().zip(bh) {
                    *o = simd.mul_add_f32s(sv, *v, *o);
                }
                for (o, v) in ot.iter_mut().zip(bt) {
                    *o += s * v;
                }
            }
        }
    }
}

/// Runs `op` with AVX2 and FMA when the processor has them (`pulp`'s V3), NEON on aarch64,
/// else scalar. The runtime names V3 rather than taking the widest set available, so that
/// what it computes does not change with the `pulp` features another crate of the build
/// turns on (AVX-512 was no faster here: these products are bound by reading B).
pub(crate) fn dispatch<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return pulp::Simd::vectorize(simd, op);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(simd) = pulp::aarch64::Neon::try_new() {
        return pulp::Simd::vectorize(simd, op);
    }
    pulp::Simd::vectorize(pulp::Scalar::new(), op)
}

/// `C = alpha · A·B + beta · C` in f32 without matrixmultiply's packing where that costs more
/// than the product, when A's and C's rows are contiguous: `m ≤ FEW_ROWS` rows with B
/// contiguous along k (each column a slice: a dot product per output) or along n (each row a
/// slice: C's rows accumulate scaled rows of B). Returns `false`, doing nothing, for any
/// other case. `beta = 0` overwrites C without reading it,
/// as matrixmultiply does. Runs with AVX2 and FMA where the processor has them.
#[allow(clippy::too_many_arguments)]
pub fn few_rows(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    beta: f32,
    c: &mut [f32],
    rsc: isize,
    csc: isize,
) -> bool {
    // WebAssembly has no fused multiply–add: each would be a software `fma` (see
    // `implicit::widths`), slower than matrixmultiply's products.
    if k == 0 || csa != 1 || csc != 1 || cfg!(target_arch = "wasm32") {
        return false;
    }
    let (rsa, rsc) = (rsa as usize, rsc as usize);
    if m > FEW_ROWS || (rsb != 1 && csb != 1) {
        return false;
    }
    if rsb == 1 {
        dispatch(Dots { m, k, alpha, beta, a, rsa, b, csb: csb as usize, c, rsc, n });
    } else {
        dispatch(Axpys { m, k, alpha, beta, a, rsa, b, rsb: rsb as usize, c, rsc, n });
    }
    true
}

/// `C = alpha · A·B + beta · C` with B's and C's rows contiguous, A at any strides, for the
/// small products of attention's heads (a block of 32 queries against ≤ 128 keys, 32
/// features), where matrixmultiply spent more time packing both operands (and allocating
/// their buffers) than multiplying: on register tiles of `R` rows × one, two or four vectors
/// of columns, each entry of A broadcast (read where it lies: A's rows or its columns are
/// contiguous in every product here), each row of B loaded once per tile.
struct Unpacked<'a> {
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &'a [f32],
    rsa: usize,
    csa: usize,
    b: &'a [f32],
    rsb: usize,
    beta: f32,
    c: &'a mut [f32],
    rsc: usize,
}

impl Unpacked<'_> {
    /// The tile of rows `i0..i0 + R` (those below `m`) and columns `j..j + valid`, `NV`
    /// vectors wide (`valid` ≤ their lanes; all of them when `FULL`); `a(t)` gives the tile's
    /// `R` entries of A's column `t` (read from A's columns directly when `COLS`: `rsa = 1`,
    /// `csa ≥ R`, `k ≥ 1`).
    #[inline(always)]
    fn tile<S: pulp::Simd, const R: usize, const NV: usize, const FULL: bool, const COLS: bool>(
        &mut self,
        simd: S,
        a: impl Fn(usize) -> [f32; R],
        i0: usize,
        j: usize,
        valid: usize,
    ) {
        let width = std::mem::size_of::<S::f32s>() / 4 * NV;
        let zero = simd.splat_f32s(0.0);
        let load = |src: &[f32]| -> [S::f32s; NV] {
            let mut out = [zero; NV];
            if FULL {
                let (v, _) = S::as_simd_f32s(&src[..width]);
                out.copy_from_slice(&v[..NV]);
            } else {
                let mut tmp = [0f32; 64];
                tmp[..valid].copy_from_slice(&src[..valid]);
                let (v, _) = S::as_simd_f32s(&tmp);
                out.copy_from_slice(&v[..NV]);
            }
            out
        };
        let mut acc = [[zero; NV]; R];
        if COLS {
            // A's columns contiguous: the tile's `R` values of step `t` at `csa·t` from its
            // first row, walked in step with B's rows as chunks of constant lengths (the
            // lengths checked once for the loop, pointers in registers); the last step apart
            // (A's and B's last rows may be shorter than their strides). `k ≥ 1` here.
            let (csa, rsb) = (self.csa, self.rsb.max(1));
            let steps = self.k - 1;
            let (a, b) = (&self.a[i0..], &self.b[j..]);
            macro_rules! step {
                ($ac:expr, $bc:expr) => {{
                    let x: &[f32; R] = $ac[..R].try_into().expect("R values");
                    let bv = load($bc);
                    for (row, &x) in acc.iter_mut().zip(x) {
                        let x = simd.splat_f32s(x);
                        for v in 0..NV {
                            row[v] = simd.mul_add_f32s(x, bv[v], row[v]);
                        }
                    }
                }};
            }
            for (ac, bc) in a[..steps * csa].chunks_exact(csa).zip(b[..steps * rsb].chunks_exact(rsb)) {
                step!(ac, bc);
            }
            step!(&a[steps * csa..], &b[steps * rsb..]);
        } else {
            for t in 0..self.k {
                let bv = load(&self.b[t * self.rsb + j..]);
                for (row, x) in acc.iter_mut().zip(a(t)) {
                    let x = simd.splat_f32s(x);
                    for v in 0..NV {
                        row[v] = simd.mul_add_f32s(x, bv[v], row[v]);
                    }
                }
            }
        }
        let (alpha, beta) = (simd.splat_f32s(self.alpha), simd.splat_f32s(self.beta));
        for (r, row) in acc.iter().enumerate().take(self.m - i0) {
            let out = &mut self.c[(i0 + r) * self.rsc + j..];
            let mut vals = [zero; NV];
            if self.beta == 0.0 {
                // C is not read: it may hold anything (as matrixmultiply allows).
                for v in 0..NV {
                    vals[v] = simd.mul_f32s(alpha, row[v]);
                }
            } else {
                let old = load(out);
                for v in 0..NV {
                    vals[v] = simd.mul_add_f32s(beta, old[v], simd.mul_f32s(alpha, row[v]));
                }
            }
            if FULL {
                let (o, _) = S::as_mut_simd_f32s(&mut out[..width]);
                o[..NV].copy_from_slice(&vals);
            } else {
                let mut tmp = [0f32; 64];
                let (t, _) = S::as_mut_simd_f32s(&mut tmp);
                t[..NV].copy_from_slice(&vals);
                out[..valid].copy_from_slice(&tmp[..valid]);
            }
        }
    }

    /// Every tile of the rows `i0..i0 + R`, reading A as `a` does (see [`Unpacked::tile`]).
    #[inline(always)]
    fn rows<S: pulp::Simd, const R: usize, const COLS: bool>(
        &mut self,
        simd: S,
        a: impl Fn(usize) -> [f32; R] + Copy,
        i0: usize,
    ) {
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        let wide = R == 6 && super::implicit::many_registers(lanes);
        let mut j = 0;
        while j < self.n {
            let rest = self.n - j;
            if wide && rest >= 4 * lanes {
                self.tile::<S, R, 4, true, COLS>(simd, a, i0, j, 4 * lanes);
                j += 4 * lanes;
            } else if rest >= 2 * lanes {
                self.tile::<S, R, 2, true, COLS>(simd, a, i0, j, 2 * lanes);
                j += 2 * lanes;
            } else if rest > lanes {
                self.tile::<S, R, 2, false, COLS>(simd, a, i0, j, rest);
                j += 2 * lanes;
            } else if rest == lanes {
                self.tile::<S, R, 1, true, COLS>(simd, a, i0, j, lanes);
                j += lanes;
            } else {
                self.tile::<S, R, 1, false, COLS>(simd, a, i0, j, rest);
                j += lanes;
            }
        }
    }

    /// Every row, `R` at a time: A's entries from its rows when they are contiguous, from its
    /// columns when those are (the transposed operands: `Pᵀ`, `dSᵀ`), gathered otherwise and
    /// for the last rows (which repeat the last: their sums are not stored).
    #[inline(always)]
    fn all<S: pulp::Simd, const R: usize>(&mut self, simd: S) {
        let (m, k, a, rsa, csa) = (self.m, self.k, self.a, self.rsa, self.csa);
        for i0 in (0..m).step_by(R) {
            if i0 + R <= m && csa == 1 {
                let rows: [&[f32]; R] = std::array::from_fn(|r| &a[(i0 + r) * rsa..(i0 + r) * rsa + k]);
                self.rows::<S, R, false>(simd, |t| std::array::from_fn(|r| rows[r][t]), i0);
            } else if i0 + R <= m && rsa == 1 && csa >= R && k > 0 {
                self.rows::<S, R, true>(simd, |t| a[t * csa + i0..t * csa + i0 + R].try_into().expect("R values"), i0);
            } else {
                let at: [usize; R] = std::array::from_fn(|r| (i0 + r).min(m - 1) * rsa);
                self.rows::<S, R, false>(simd, |t| std::array::from_fn(|r| a[at[r] + t * csa]), i0);
            }
        }
    }
}

impl pulp::WithSimd for Unpacked<'_> {
    type Output = ();

    /// Eight rows a tile where the columns fit two vectors and there are 32 registers (16
    /// sums; 32 rows, a block of queries, in four tiles), else six (24 sums over four vectors
    /// with 32 registers, 12 over two with AVX2's 16).
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(mut self, simd: S) {
        let lanes = std::mem::size_of::<S::f32s>() / 4;
        if super::implicit::many_registers(lanes) && self.n <= 2 * lanes {
            self.all::<S, 8>(simd);
        } else {
            self.all::<S, 6>(simd);
        }
    }
}

/// `C = alpha · A·B + beta · C` (A `m × k` at strides `rsa`, `csa`; B `k × n` and C `m × n`
/// with rows `rsb`, `rsc` apart and contiguous columns) on the register tiles of the widest
/// instruction set [`super::implicit::lanes`] names, packing nothing. Each entry of C is one
/// chain of fused multiply–adds over k in order, then `alpha·sum (+ beta·C)`, whatever the
/// width. `beta = 0` overwrites C without reading it. Returns `false`, doing nothing, where
/// the processor has no tiles (the caller then uses [`crate::Float::gemm`]).
#[allow(clippy::too_many_arguments)]
pub fn unpacked(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    rsb: usize,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) -> bool {
    unpacked_with(super::implicit::lanes(), m, k, n, alpha, a, (rsa, csa), b, rsb, beta, c, rsc)
}

/// [`unpacked`] with `lanes` lanes (one of [`super::implicit::widths`]; 0: none).
#[allow(clippy::too_many_arguments)]
fn unpacked_with(
    lanes: usize,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    rsb: usize,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) -> bool {
    if lanes == 0 {
        return false;
    }
    checked(m, k, n, a.len(), rsa as isize, csa as isize, b.len(), rsb as isize, 1, c.len(), rsc as isize, 1);
    if m == 0 || n == 0 {
        return true;
    }
    super::implicit::run(lanes, Unpacked { m, k, n, alpha, a, rsa, csa, b, rsb, beta, c, rsc }).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// `C = alpha·A·B + beta·C` in f64, the plain way.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: &[f32],
        b: &[f32],
        rsb: usize,
        csb: usize,
        beta: f32,
        c: &[f32],
    ) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for r in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|i| f64::from(a[r * k + i]) * f64::from(b[i * rsb + j * csb])).sum();
                out[r * n + j] =
                    f64::from(alpha) * s + if beta == 0.0 { 0.0 } else { f64::from(beta) * f64::from(c[r * n + j]) };
            }
        }
        out
    }

    /// Every shape the tiles cut differently (rows a multiple of the tile's or not, columns
    /// in whole and partial vectors, one to four vectors a tile), A by rows, by columns and
    /// at other strides, C with a wider stride than its columns: the product to f32's
    /// precision, and the same bits at every width the processor has.
    #[test]
    fn unpacked_is_the_product_at_every_width_and_layout() {
        let widths = crate::kernels::implicit::widths();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 3, 7),
            (8, 32, 32),
            (13, 70, 33),
            (32, 32, 128),
            (32, 96, 100),
            (6, 0, 16),
            (13, 0, 16),
            (40, 17, 65),
        ] {
            let a0: Vec<f32> = (0..2 * m * k + 2).map(|_| rng.random_range(-1.0..1.0)).collect();
            let rsb = n + 3;
            let b: Vec<f32> = (0..k * rsb).map(|_| rng.random_range(-1.0..1.0)).collect();
            // (rsa, csa): rows contiguous, columns contiguous, every other value.
            for (rsa, csa) in [(k, 1), (1, m), (2 * k, 2)] {
                for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)] {
                    let rsc = n + 2;
                    let c0: Vec<f32> = (0..m * rsc)
                        .map(|_| if beta == 0.0 { f32::NAN } else { rng.random_range(-1.0..1.0) })
                        .collect();
                    let mut first: Option<Vec<f32>> = None;
                    for &lanes in &widths {
                        let mut c = c0.clone();
                        assert!(unpacked_with(lanes, m, k, n, alpha, &a0, (rsa, csa), &b, rsb, beta, &mut c, rsc));
                        for r in 0..m {
                            for j in 0..n {
                                let s: f64 =
                                    (0..k).map(|t| f64::from(a0[r * rsa + t * csa]) * f64::from(b[t * rsb + j])).sum();
                                let old = if beta == 0.0 { 0.0 } else { f64::from(beta) * f64::from(c0[r * rsc + j]) };
                                let want = f64::from(alpha) * s + old;
                                let got = f64::from(c[r * rsc + j]);
                                assert!(
                                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                                    "{m}×{k}×{n} A({rsa},{csa}) α={alpha} β={beta} {lanes} lanes [{r},{j}]: {got} vs {want}"
                                );
                            }
                            // Past the columns, C is left alone.
                            for j in n..rsc {
                                assert_eq!(c[r * rsc + j].to_bits(), c0[r * rsc + j].to_bits());
                            }
                        }
                        match &first {
                            None => first = Some(c),
                            Some(f) => assert!(
                                f.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()),
                                "{m}×{k}×{n}: {lanes} lanes differ from {}",
                                widths[0]
                            ),
                        }
                    }
                }
            }
        }
        assert!(!unpacked_with(0, 1, 1, 1, 1.0, &[1.0], (1, 1), &[1.0], 1, 0.0, &mut [0.0], 1));
    }

    #[test]
    fn few_rows_is_the_product_for_both_layouts_of_b() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for &(m, k, n) in &[(1, 784, 256), (3, 70, 5), (4, 1, 9), (2, 129, 130), (1, 64, 1), (8, 33, 17)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)] {
                // B stored k×n (rows contiguous) and n×k (columns contiguous).
                for (rsb, csb) in [(n, 1), (1, k)] {
                    let c0: Vec<f32> =
                        (0..m * n).map(|_| if beta == 0.0 { f32::NAN } else { rng.random_range(-1.0..1.0) }).collect();
                    let mut c = c0.clone();
                    let done = few_rows(
                        m,
                        k,
                        n,
                        alpha,
                        &a,
                        k as isize,
                        1,
                        &b,
                        rsb as isize,
                        csb as isize,
                        beta,
                        &mut c,
                        n as isize,
                        1,
                    );
                    assert!(done);
                    let want = reference(m, k, n, alpha, &a, &b, rsb, csb, beta, &c0);
                    for (g, w) in c.iter().zip(&want) {
                        assert!(
                            (f64::from(*g) - w).abs() < 1e-4 * (1.0 + w.abs()),
                            "{m}×{k}×{n} ({rsb},{csb}) α={alpha} β={beta}: {g} vs {w}"
                        );
                    }
                }
            }
        }
        // Other layouts and more rows are left to matrixmultiply.
        let mut c = vec![0f32; 10];
        assert!(!few_rows(9, 2, 2, 1.0, &[0.0; 18], 2, 1, &[0.0; 4], 2, 1, 0.0, &mut [0.0; 18], 2, 1));
        assert!(!few_rows(1, 2, 2, 1.0, &[0.0; 2], 1, 2, &[0.0; 4], 2, 1, 0.0, &mut c, 2, 1));
    }
}
