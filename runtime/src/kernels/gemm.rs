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
