//! Transposing a block of a matrix (`out[c·ldo + j] = src[j·ld + c]`): attention transposes
//! each head's queries, keys and values and each block of its scores so that every product
//! reads its left-hand side by columns (one pointer for a register tile's rows). In f32 with
//! AVX2, squares of 8 × 8 are transposed in registers (eight loads, 24 shuffles, eight
//! stores); elsewhere, and at the edges, one value at a time.

use crate::Float;

/// `out[c·ldo + j] = src[j·ld + c]` for `j < rows`, `c < cols`.
pub(crate) fn transpose<T: Float>(src: &[T], ld: usize, rows: usize, cols: usize, out: &mut [T], ldo: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!((rows - 1) * ld + cols <= src.len(), "transpose: source out of bounds");
    assert!((cols - 1) * ldo + rows <= out.len(), "transpose: destination out of bounds");
    #[cfg(target_arch = "x86_64")]
    if let (Some(s), Some(o), Some(simd)) = (T::f32s(src), T::f32s_mut(&mut *out), pulp::x86::V3::try_new()) {
        pulp::Simd::vectorize(simd, Squares { simd, src: s, ld, rows, cols, out: o, ldo });
        return;
    }
    plain(src, ld, 0..rows, 0..cols, out, ldo);
}

/// The values of rows `rs` and columns `cs`, one at a time.
#[inline(always)]
fn plain<T: Copy>(
    src: &[T],
    ld: usize,
    rs: std::ops::Range<usize>,
    cs: std::ops::Range<usize>,
    out: &mut [T],
    ldo: usize,
) {
    for j in rs {
        for c in cs.clone() {
            out[c * ldo + j] = src[j * ld + c];
        }
    }
}

/// The 8 × 8 squares in AVX2 registers, the edges with [`plain`].
#[cfg(target_arch = "x86_64")]
struct Squares<'a> {
    simd: pulp::x86::V3,
    src: &'a [f32],
    ld: usize,
    rows: usize,
    cols: usize,
    out: &'a mut [f32],
    ldo: usize,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for Squares<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        use std::arch::x86_64::__m256;
        let Squares { simd, src, ld, rows, cols, out, ldo } = self;
        let avx = simd.avx;
        let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        for j in (0..r8).step_by(8) {
            for c in (0..c8).step_by(8) {
                let r: [__m256; 8] = std::array::from_fn(|k| {
                    let row: [f32; 8] = src[(j + k) * ld + c..][..8].try_into().expect("eight values");
                    pulp::cast(row)
                });
                // Pairs of rows interleaved, then fours, then the halves exchanged.
                let t = [
                    avx._mm256_unpacklo_ps(r[0], r[1]),
                    avx._mm256_unpackhi_ps(r[0], r[1]),
                    avx._mm256_unpacklo_ps(r[2], r[3]),
                    avx._mm256_unpackhi_ps(r[2], r[3]),
                    avx._mm256_unpacklo_ps(r[4], r[5]),
                    avx._mm256_unpackhi_ps(r[4], r[5]),
                    avx._mm256_unpacklo_ps(r[6], r[7]),
                    avx._mm256_unpackhi_ps(r[6], r[7]),
                ];
                let u = [
                    avx._mm256_shuffle_ps::<0x44>(t[0], t[2]),
                    avx._mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                    avx._mm256_shuffle_ps::<0x44>(t[1], t[3]),
                    avx._mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                    avx._mm256_shuffle_ps::<0x44>(t[4], t[6]),
                    avx._mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                    avx._mm256_shuffle_ps::<0x44>(t[5], t[7]),
                    avx._mm256_shuffle_ps::<0xEE>(t[5], t[7]),
                ];
                let cols_out = [
                    avx._mm256_permute2f128_ps::<0x20>(u[0], u[4]),
                    avx._mm256_permute2f128_ps::<0x20>(u[1], u[5]),
                    avx._mm256_permute2f128_ps::<0x20>(u[2], u[6]),
                    avx._mm256_permute2f128_ps::<0x20>(u[3], u[7]),
                    avx._mm256_permute2f128_ps::<0x31>(u[0], u[4]),
                    avx._mm256_permute2f128_ps::<0x31>(u[1], u[5]),
                    avx._mm256_permute2f128_ps::<0x31>(u[2], u[6]),
                    avx._mm256_permute2f128_ps::<0x31>(u[3], u[7]),
                ];
                for (k, v) in cols_out.into_iter().enumerate() {
                    let o: &mut [f32; 8] = (&mut out[(c + k) * ldo + j..][..8]).try_into().expect("eight values");
                    *o = pulp::cast(v);
                }
            }
            plain(src, ld, j..j + 8, c8..cols, out, ldo);
        }
        plain(src, ld, r8..rows, 0..cols, out, ldo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape the squares cut differently (whole squares, edges of rows and columns, a
    /// single row or column), with strides wider than the block, in f32 and f64.
    #[test]
    fn every_value_lands_where_it_belongs() {
        for rows in [1, 3, 8, 9, 16, 21, 32] {
            for cols in [1, 5, 8, 13, 24, 32] {
                let (ld, ldo) = (cols + 3, rows + 5);
                let src: Vec<f32> = (0..rows * ld).map(|v| v as f32).collect();
                let mut out = vec![-1f32; cols * ldo];
                transpose(&src, ld, rows, cols, &mut out, ldo);
                let src64: Vec<f64> = src.iter().map(|&v| f64::from(v)).collect();
                let mut out64 = vec![-1f64; cols * ldo];
                transpose(&src64, ld, rows, cols, &mut out64, ldo);
                for c in 0..cols {
                    for j in 0..ldo {
                        let want = if j < rows { src[j * ld + c] } else { -1.0 };
                        assert_eq!(out[c * ldo + j], want, "{rows} × {cols}: column {c}, row {j}");
                        assert_eq!(out64[c * ldo + j], f64::from(want), "f64 {rows} × {cols}: column {c}, row {j}");
                    }
                }
            }
        }
    }
}
