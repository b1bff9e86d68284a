//! The element types the runtime computes in: `f32` for training and inference, `f64` for
//! gradient checks against finite differences.

use crate::plan::{Act, Geometry};
use std::fmt::{Debug, Display};
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// The element types the kernels run on: `f32` to train, `f64` to check gradients.
pub trait Float:
    Copy
    + Default
    + Debug
    + Display
    + PartialOrd
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The name used in checkpoints (`F32`, `F64`).
    const NAME: &'static str;
    /// The nearest value to `v`.
    fn from_f64(v: f64) -> Self;
    /// The value as f64.
    fn to_f64(self) -> f64;
    /// `eˣ`.
    fn exp(self) -> Self;
    /// The natural logarithm.
    fn ln(self) -> Self;
    /// The hyperbolic tangent.
    fn tanh(self) -> Self;
    /// `e⁻ˣ` for `x ≥ 0` (NaN stays NaN): in f32 without a library call, so that a loop over a
    /// slice vectorizes (the sigmoid's exponential).
    fn exp_neg(self) -> Self;
    /// The error function: in f32 a rational approximation without a library call, so that
    /// a loop over a slice vectorizes (GELU's); in f64 the library's.
    fn erf(self) -> Self;
    /// The square root.
    fn sqrt(self) -> Self;
    /// The absolute value.
    fn abs(self) -> Self;
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// The larger of the two.
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }

    /// The slice as f32 values when this type is f32 (`None` for f64): for the few loops
    /// written with the processor's own instructions.
    fn f32s_mut(s: &mut [Self]) -> Option<&mut [f32]>;
    /// As [`Float::f32s_mut`], read only.
    fn f32s(s: &[Self]) -> Option<&[f32]>;

    /// A convolution's forward pass and its activation `f` without im2col where the type and
    /// processor have one (`kernels::implicit`); `false`, nothing done, otherwise.
    fn conv_forward(g: &Geometry, f: Act, rows: usize, x: &[Self], w: &[Self], b: &[Self], y: &mut [Self]) -> bool;

    /// A convolution's backward pass without im2col, as [`Float::conv_forward`].
    #[allow(clippy::too_many_arguments)]
    fn conv_backward(
        g: &Geometry,
        rows: usize,
        x: &[Self],
        w: &[Self],
        dy: crate::kernels::conv::Dy<'_, Self>,
        dw: &mut [Self],
        db: &mut [Self],
        dx: Option<(&mut [Self], bool)>,
    ) -> bool;

    /// A dense layer's forward product without packing where the type and processor allow
    /// (`kernels::implicit::dense_forward`); `false`, nothing done, otherwise.
    #[allow(clippy::too_many_arguments)]
    fn dense_forward(
        rows: usize,
        inp: usize,
        out: usize,
        x: &[Self],
        w: &[Self],
        b: &[Self],
        y: crate::kernels::dense::Out<'_, '_, Self>,
    ) -> bool;

    /// Whether a dense layer of `inp` inputs runs on [`Float::dense_forward`] and
    /// [`Float::dense_backward`] (forward and both gradients) on this processor.
    fn dense_tiles(inp: usize) -> bool;

    /// A dense layer's backward pass without matrixmultiply's packing where the type and
    /// processor allow (`kernels::implicit::dense_backward`; `dw` holds the rows of dW of the
    /// outputs in its range); `false`, nothing done, otherwise.
    #[allow(clippy::too_many_arguments)]
    fn dense_backward(
        rows: usize,
        inp: usize,
        out: usize,
        x: &[Self],
        w: &[Self],
        dy: &[Self],
        dw: Option<(&mut [Self], std::ops::Range<usize>)>,
        dx: Option<(&mut [Self], bool)>,
    ) -> bool;

    /// `C = alpha · A·B + beta · C` for row/column strides, as matrixmultiply defines it.
    /// A is m×k, B is k×n, C is m×n.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );

    /// `C = alpha · A·B + beta · C` with B's and C's rows contiguous (rows `rsb`, `rsc`
    /// apart), A at strides `(rsa, csa)`: on the register tiles without packing where the
    /// processor has them (`kernels::gemm::unpacked`, f32: small products such as attention's
    /// per-head ones, which matrixmultiply's packing dominated), else [`Float::gemm`].
    #[allow(clippy::too_many_arguments)]
    fn gemm_unpacked(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        strides_a: (usize, usize),
        b: &[Self],
        rsb: usize,
        beta: Self,
        c: &mut [Self],
        rsc: usize,
    );

    /// [`Float::gemm`] on matrixmultiply whatever `m`: each element of C the same chain of
    /// operations for any number of rows (no path for a few rows), where an example's result
    /// must not depend on the batch it comes in.
    #[allow(clippy::too_many_arguments)]
    fn gemm_any_rows(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );
}

macro_rules! float_impl {
    ($t:ty, $name:literal, $gemm:path, $few:path, $tanh:path, $exp_neg:path, $erf:path, $conv_forward:path, $conv_backward:path, $dense_forward:path, $dense_backward:path, $dense_tiles:path, $unpacked:path, $f32s_mut:path, $f32s:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn exp_neg(self) -> Self {
                $exp_neg(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn f32s_mut(s: &mut [Self]) -> Option<&mut [f32]> {
                $f32s_mut(s)
            }
            fn f32s(s: &[Self]) -> Option<&[f32]> {
                $f32s(s)
            }
            fn conv_forward(
                g: &Geometry,
                f: Act,
                rows: usize,
                x: &[Self],
                w: &[Self],
                b: &[Self],
                y: &mut [Self],
            ) -> bool {
                $conv_forward(g, f, rows, x, w, b, y)
            }
            fn conv_backward(
                g: &Geometry,
                rows: usize,
                x: &[Self],
                w: &[Self],
                dy: crate::kernels::conv::Dy<'_, Self>,
                dw: &mut [Self],
                db: &mut [Self],
                dx: Option<(&mut [Self], bool)>,
            ) -> bool {
                $conv_backward(g, rows, x, w, dy, dw, db, dx)
            }
            fn dense_forward(
                rows: usize,
                inp: usize,
                out: usize,
                x: &[Self],
                w: &[Self],
                b: &[Self],
                y: crate::kernels::dense::Out<'_, '_, Self>,
            ) -> bool {
                $dense_forward(rows, inp, out, x, w, b, y)
            }
            fn dense_tiles(inp: usize) -> bool {
                $dense_tiles(inp)
            }
            fn dense_backward(
                rows: usize,
                inp: usize,
                out: usize,
                x: &[Self],
                w: &[Self],
                dy: &[Self],
                dw: Option<(&mut [Self], std::ops::Range<usize>)>,
                dx: Option<(&mut [Self], bool)>,
            ) -> bool {
                $dense_backward(rows, inp, out, x, w, dy, dw, dx)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                rsa: isize,
                csa: isize,
                b: &[Self],
                rsb: isize,
                csb: isize,
                beta: Self,
                c: &mut [Self],
                rsc: isize,
                csc: isize,
            ) {
                crate::kernels::gemm::checked(m, k, n, a.len(), rsa, csa, b.len(), rsb, csb, c.len(), rsc, csc);
                if m == 0 || n == 0 {
                    return;
                }
                if $few(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) {
                    return;
                }
                Self::gemm_any_rows(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
            }
            fn gemm_unpacked(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                strides_a: (usize, usize),
                b: &[Self],
                rsb: usize,
                beta: Self,
                c: &mut [Self],
                rsc: usize,
            ) {
                if !$unpacked(m, k, n, alpha, a, strides_a, b, rsb, beta, c, rsc) {
                    let (rsa, csa) = (strides_a.0 as isize, strides_a.1 as isize);
                    Self::gemm(m, k, n, alpha, a, rsa, csa, b, rsb as isize, 1, beta, c, rsc as isize, 1);
                }
            }
            fn gemm_any_rows(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                rsa: isize,
                csa: isize,
                b: &[Self],
                rsb: isize,
                csb: isize,
                beta: Self,
                c: &mut [Self],
                rsc: isize,
                csc: isize,
            ) {
                crate::kernels::gemm::checked(m, k, n, a.len(), rsa, csa, b.len(), rsb, csb, c.len(), rsc, csc);
                if m == 0 || n == 0 {
                    return;
                }
                // SAFETY: `checked` asserted that every index the product touches lies inside
                // `a`, `b` and `c`; `c` is borrowed mutably and so does not alias `a` or `b`.
                #[allow(unsafe_code)]
                unsafe {
                    $gemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc);
                }
            }
        }
    };
}

float_impl!(
    f32,
    "F32",
    matrixmultiply::sgemm,
    crate::kernels::gemm::few_rows,
    tanh_f32,
    exp_neg_f32,
    erf_f32,
    crate::kernels::implicit::forward,
    crate::kernels::implicit::backward,
    crate::kernels::implicit::dense_forward,
    crate::kernels::implicit::dense_backward,
    crate::kernels::implicit::dense_tiles,
    crate::kernels::gemm::unpacked,
    Some,
    Some
);
float_impl!(
    f64,
    "F64",
    matrixmultiply::dgemm,
    never_few,
    f64::tanh,
    exp_neg_f64,
    libm::erf,
    no_conv_forward,
    no_conv_backward,
    no_dense_forward,
    no_dense_backward,
    no_dense_tiles,
    never_unpacked,
    not_f32_mut,
    not_f32
);

/// f64 values are not f32 ([`Float::f32s_mut`]).
fn not_f32_mut(_: &mut [f64]) -> Option<&mut [f32]> {
    None
}

/// f64 values are not f32 ([`Float::f32s`]).
fn not_f32(_: &[f64]) -> Option<&[f32]> {
    None
}

/// As [`no_conv_forward`].
fn no_dense_forward(
    _: usize,
    _: usize,
    _: usize,
    _: &[f64],
    _: &[f64],
    _: &[f64],
    _: crate::kernels::dense::Out<'_, '_, f64>,
) -> bool {
    false
}

/// As [`no_conv_forward`].
fn no_dense_tiles(_: usize) -> bool {
    false
}

/// As [`no_conv_forward`].
#[allow(clippy::too_many_arguments)]
fn no_dense_backward(
    _: usize,
    _: usize,
    _: usize,
    _: &[f64],
    _: &[f64],
    _: &[f64],
    _: Option<(&mut [f64], std::ops::Range<usize>)>,
    _: Option<(&mut [f64], bool)>,
) -> bool {
    false
}

/// f64 (gradient checks) convolves by im2col and matrixmultiply.
fn no_conv_forward(_: &Geometry, _: Act, _: usize, _: &[f64], _: &[f64], _: &[f64], _: &mut [f64]) -> bool {
    false
}

/// As [`no_conv_forward`].
#[allow(clippy::too_many_arguments)]
fn no_conv_backward(
    _: &Geometry,
    _: usize,
    _: &[f64],
    _: &[f64],
    _: crate::kernels::conv::Dy<'_, f64>,
    _: &mut [f64],
    _: &mut [f64],
    _: Option<(&mut [f64], bool)>,
) -> bool {
    false
}

/// f64 (gradient checks) always goes through matrixmultiply.
#[allow(clippy::too_many_arguments)]
fn never_unpacked(
    _: usize,
    _: usize,
    _: usize,
    _: f64,
    _: &[f64],
    _: (usize, usize),
    _: &[f64],
    _: usize,
    _: f64,
    _: &mut [f64],
    _: usize,
) -> bool {
    false
}

/// f64 (gradient checks) always goes through matrixmultiply.
#[allow(clippy::too_many_arguments)]
fn never_few(
    _: usize,
    _: usize,
    _: usize,
    _: f64,
    _: &[f64],
    _: isize,
    _: isize,
    _: &[f64],
    _: isize,
    _: isize,
    _: f64,
    _: &mut [f64],
    _: isize,
    _: isize,
) -> bool {
    false
}

/// `eᵗ` for `−87 ≤ t ≤ 0` from Cephes' `expf` polynomial, without a library call or a
/// branch: `2^n · exp(r)`, `|r| ≤ ln 2 / 2`, the exponent's rounding done by adding 1.5·2²³,
/// and the power of two built from its bits (`n ≥ −126`: a normal number).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the constants as Cephes publishes them
fn exp_f32(t: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let z = t * std::f32::consts::LOG2_E + MAGIC;
    let n = z - MAGIC;
    let r = t - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    // `2ⁿ`'s bits from `z`'s: `z = 1.5·2²³ + n` exactly, so its low bits are `n` (two's
    // complement), and the shift keeps the nine that become the exponent — the bits of
    // `((n as i32 + 127) as u32) << 23`, without a float-to-integer conversion (a saturating
    // one, which the compiler did lane by lane: a third of GELU's backward).
    (p * r * r + r + 1.0) * f32::from_bits(z.to_bits().wrapping_add(127) << 23)
}

/// `e⁻ˣ` for `x ≥ 0` in f32 ([`exp_f32`]; beyond 87, where it is below 2⁻¹²⁵, as at 87: the
/// sigmoid it serves is then 0 or 1 to f32's precision either way). NaN stays NaN.
#[inline(always)]
fn exp_neg_f32(x: f32) -> f32 {
    let e = exp_f32(-x.min(87.0));
    if x.is_nan() {
        x
    } else {
        e
    }
}

/// `e⁻ˣ` in f64: the library's.
fn exp_neg_f64(x: f64) -> f64 {
    (-x).exp()
}

/// `erf` in f32 without a library call and without branches, so that a loop over a slice
/// vectorizes (libm's, through f64, was a fifth of a transformer's training step in GELU): the
/// odd-over-even rational approximation on [−4, 4] that XLA and Eigen use for f32 (beyond,
/// erf is ±1 in f32), evaluated in f64. Within 1.3e-7 (2 ulps) of f64's erf everywhere (see the test).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the constants as published
fn erf_f32(x: f32) -> f32 {
    // Evaluated in f64 (still vectorized): in f32 the rounding near |x| = 4 was 4.5e-7.
    let x = (x as f64).clamp(-4.0, 4.0);
    let z = x * x;
    let p = ((((((-2.726_142_3e-10 * z + 2.770_681_4e-8) * z - 2.101_024e-6) * z - 5.692_506_4e-5) * z
        - 7.349_906_3e-4)
        * z
        - 2.954_6e-3)
        * z
        - 1.609_603_3e-2)
        * x;
    let q = (((-1.456_607_2e-5 * z - 2.133_740_6e-4) * z - 1.682_827e-3) * z - 7.373_329_2e-3) * z - 1.426_474e-2;
    (p / q) as f32
}

/// `tanh` in f32 without a library call and without branches, so that a loop over a slice
/// vectorizes (libm's `tanhf` was most of an RNN's training step). Below |x| = 0.625 the
/// odd polynomial of Cephes' `tanhf`; above, `(1 − e)/(1 + e)` with `e = exp(−2|x|)` from
/// Cephes' `expf` polynomial (the exponent's rounding done by adding 1.5·2²³, and the power
/// of two built from its bits). Accurate to a few ulps over every f32 (see the test); f64
/// keeps the library's `tanh`.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the constants as Cephes publishes them
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs().min(9.0);
    // Small: x + x³·P(x²).
    let z = a * a;
    let small = ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
        - 3.333_328_2e-1)
        * z
        * a
        + a;
    // Large: e = exp(−2a).
    let e = exp_f32(-2.0 * a);
    let large = (1.0 - e) / (1.0 + e);
    let y = if a < 0.625 { small } else { large };
    // `min` above turned a NaN into 9: a NaN stays a NaN.
    if x.is_nan() {
        x
    } else {
        y.copysign(x)
    }
}

#[cfg(test)]
mod tests {
    /// `e⁻ˣ` against f64's on a dense grid over [0, 87] and at the edges: a few ulps at most;
    /// NaN stays NaN, and beyond 87 (below 2⁻¹²⁵) it stays tiny.
    #[test]
    fn exp_neg_f32_is_accurate() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = i as f32 * 1e-4;
            let exact = (-(x as f64)).exp();
            let err = (super::exp_neg_f32(x) as f64 - exact).abs() / exact;
            assert!(err < 4e-7, "exp(-{x}) off by {err:e}");
            worst = worst.max(err);
        }
        assert_eq!(super::exp_neg_f32(0.0), 1.0);
        assert!(super::exp_neg_f32(f32::NAN).is_nan());
        for x in [87.0f32, 100.0, 1e30, f32::INFINITY] {
            let e = super::exp_neg_f32(x);
            assert!(e > 0.0 && e < 2e-38, "exp(-{x}) = {e}");
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
    }

    /// The power of two read off the rounding's bits is the one an integer conversion gives:
    /// the same bits as before, at every `t` of a dense grid over the range and at its ends.
    #[test]
    fn exp_f32_builds_its_power_of_two_from_bits() {
        let by_conversion = |t: f32| {
            const MAGIC: f32 = 12_582_912.0;
            let n = (t * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
            let r = t - n * 0.693_359_4 - n * -2.121_944_4e-4;
            #[allow(clippy::excessive_precision)]
            let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
                + 1.666_666_5e-1)
                * r
                + 5.000_000_1e-1;
            (p * r * r + r + 1.0) * f32::from_bits(((n as i32 + 127) as u32) << 23)
        };
        let grid = (0..=870_000).map(|i| -(i as f32) * 1e-4);
        for t in grid.chain([0.0, -0.0, -87.0, -86.999_99, -1e-30, -0.346_573_6, -0.346_573_62]) {
            assert_eq!(super::exp_f32(t).to_bits(), by_conversion(t).to_bits(), "e^{t}");
        }
    }

    /// Against f64's erf on a dense grid over [−6, 6]: within 1.2e-7; NaN stays NaN.
    #[test]
    fn erf_f32_is_accurate() {
        let mut worst = 0.0f64;
        for i in -600_000..=600_000 {
            let x = i as f32 * 1e-5;
            let err = (super::erf_f32(x) as f64 - libm::erf(x as f64)).abs();
            worst = worst.max(err);
        }
        assert!(worst < 1.3e-7, "worst error {worst:e}");
        assert_eq!(super::erf_f32(0.0), 0.0);
        assert!(super::erf_f32(f32::NAN).is_nan());
    }

    /// Against f64's tanh on a dense grid and at the edges: a few ulps at most.
    #[test]
    fn tanh_f32_is_accurate() {
        let mut worst = 0.0f64;
        let mut check = |x: f32| {
            let exact = (x as f64).tanh();
            let got = super::tanh_f32(x) as f64;
            let err = (got - exact).abs() / exact.abs().max(1e-30);
            assert!(err < 4e-7 || (got - exact).abs() < 1e-12, "tanh({x}) = {got}, exactly {exact}");
            worst = worst.max(err);
        };
        for i in -200_000..=200_000 {
            check(i as f32 * 1e-4);
        }
        for x in [0.0f32, 1e-30, -1e-30, 1e-8, 0.624_999_9, 0.625, 8.999, 9.0, 20.0, 1e30, f32::MAX, -f32::MAX] {
            check(x);
        }
        assert!(super::tanh_f32(f32::NAN).is_nan());
        assert_eq!(super::tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(super::tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(worst < 4e-7, "worst relative error {worst:e}");
    }
}
