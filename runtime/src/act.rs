//! The activation functions: one table. Each function's entry says everything about it —
//! its name as written in source, its forward and derivative kernels (in and out of place),
//! which value its derivative is read off (the output, or the input it needs kept), where its
//! derivative jumps (kinks, for the gradient check), what the per-layer statistics watch,
//! and how PyTorch and ONNX write it. The compiler, the back ends and the gradient check read
//! it from here: adding an activation is its variant and arms in this file, its layer entry in
//! the compiler's `ops/activation.rs`, and its row in the language reference.

use crate::Float;

/// An elementwise activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// `1/(1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `max(0, x)`.
    Relu,
    /// `x` above zero, `alpha·x` below.
    LeakyRelu(f64),
    /// `x`.
    Identity,
    /// `x` clamped to `[−1, 1]` (PyTorch's `Hardtanh`).
    HardTanh,
    /// `x·Φ(x)`, Φ the standard normal's distribution function: exactly through erf, or
    /// (`tanh`) through PyTorch's `approximate='tanh'` form.
    Gelu {
        /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` instead of the erf form.
        tanh: bool,
    },
}

/// Which value an activation's derivative is read off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// The output `y` (so the input may be overwritten, and the function may be fused into
    /// the product before it).
    Output,
    /// The input `x`, which must then be kept until the backward pass.
    Input,
}

/// An activation written as ONNX nodes (opset 17) over its input.
#[derive(Clone, Debug, PartialEq)]
pub enum Onnx {
    /// The input itself.
    X,
    /// A scalar constant.
    Const(f32),
    /// A node of type `op` over `args`, with the float attribute `alpha` if given.
    Op {
        /// The ONNX operator.
        op: &'static str,
        /// Its inputs.
        args: Vec<Onnx>,
        /// Its `alpha` attribute.
        alpha: Option<f32>,
    },
}

fn node(op: &'static str, args: Vec<Onnx>) -> Onnx {
    Onnx::Op { op, args, alpha: None }
}

/// What the per-layer statistics of training watch in an activation's outputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Watch {
    /// A unit is dead when it never fires (`y > 0`) over an epoch (ReLU).
    pub dead: bool,
    /// A value is saturated outside this closed range (tanh, sigmoid).
    pub live: Option<(f32, f32)>,
}

/// How an activation is written in source, PyTorch and ONNX (what the exporters and printers
/// need; the facts planning and training need are [`Act::reads`], [`Act::kinks`] and
/// [`Act::watch`], which allocate nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Desc {
    /// Its arguments as written in source (`alpha` of `leaky_relu(alpha = 0.1)`, `approximate`
    /// of `gelu(approximate = tanh)`), with their values; none when it has its defaults only.
    pub attrs: Vec<(&'static str, serde_json::Value)>,
    /// The PyTorch expression over `{x}` (`torch.relu({x})`).
    pub pytorch: String,
    /// The PyTorch module (`nn.ReLU()`).
    pub pytorch_module: String,
    /// The ONNX nodes over the input.
    pub onnx: Onnx,
    /// The name (and `alpha`, `beta`) of ONNX's `RNN` activation, where it has one: only
    /// these can be the activation of a recurrent layer.
    pub onnx_rnn: Option<(&'static str, Option<(f32, f32)>)>,
}

/// √(2/π), of the tanh form of GELU.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic's coefficient in the tanh form of GELU.
const GELU_CUBIC: f64 = 0.044_715;
/// 1/√(2π), the standard normal density's scale.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `$body` with `$g` bound to the scalar function of `$f` (one arm per function, each with its
/// function inlined): the one list of what each activation computes, which `Act::f` and the
/// loops below expand, so that each loop is compiled (and vectorized) per function.
macro_rules! with_scalar {
    ($f:expr, $t:ty, |$g:ident| $body:expr) => {
        match $f {
            // A NaN passes through (as in PyTorch), for the loss check to see.
            Act::Relu => {
                let $g = relu::<$t>;
                $body
            }
            Act::LeakyRelu(a) => {
                let a = <$t>::from_f64(a);
                let $g = move |v: $t| leaky(a, v);
                $body
            }
            Act::Sigmoid => {
                let $g = sigmoid::<$t>;
                $body
            }
            Act::Tanh => {
                let $g = |v: $t| v.tanh();
                $body
            }
            Act::Identity => {
                let $g = |v: $t| v;
                $body
            }
            Act::HardTanh => {
                let $g = hard_tanh::<$t>;
                $body
            }
            Act::Gelu { tanh: false } => {
                let $g = gelu::<$t>;
                $body
            }
            Act::Gelu { tanh: true } => {
                let $g = gelu_tanh::<$t>;
                $body
            }
        }
    };
}

/// `leaky_relu`'s slope below zero when none is given (PyTorch's default).
pub const LEAKY_RELU_ALPHA: f64 = 0.01;

impl Act {
    /// Every activation, with its default argument, in the order the language lists them.
    pub const ALL: &'static [Act] = &[
        Act::Sigmoid,
        Act::Tanh,
        Act::Relu,
        Act::LeakyRelu(LEAKY_RELU_ALPHA),
        Act::Identity,
        Act::HardTanh,
        Act::Gelu { tanh: false },
    ];

    /// The name written in source.
    pub fn name(self) -> &'static str {
        match self {
            Act::Sigmoid => "sigmoid",
            Act::Tanh => "tanh",
            Act::Relu => "relu",
            Act::LeakyRelu(_) => "leaky_relu",
            Act::Identity => "identity",
            Act::HardTanh => "hard_tanh",
            Act::Gelu { .. } => "gelu",
        }
    }

    /// Which value the derivative is read off: the output, unless it needs the input.
    pub fn reads(self) -> Reads {
        match self {
            Act::Gelu { .. } => Reads::Input,
            Act::Sigmoid | Act::Tanh | Act::Relu | Act::LeakyRelu(_) | Act::Identity | Act::HardTanh => Reads::Output,
        }
    }

    /// The inputs at which the derivative jumps (the gradient check's kinks).
    pub fn kinks(self) -> &'static [f64] {
        match self {
            Act::Relu | Act::LeakyRelu(_) => &[0.0],
            Act::HardTanh => &[-1.0, 1.0],
            Act::Sigmoid | Act::Tanh | Act::Identity | Act::Gelu { .. } => &[],
        }
    }

    /// What the per-layer statistics watch in its outputs.
    pub fn watch(self) -> Watch {
        let live = |r| Watch { dead: false, live: Some(r) };
        match self {
            Act::Relu => Watch { dead: true, live: None },
            Act::Sigmoid => live((0.01, 0.99)),
            Act::Tanh => live((-0.99, 0.99)),
            Act::HardTanh => live((-0.999_999_9, 0.999_999_9)),
            Act::LeakyRelu(_) | Act::Identity | Act::Gelu { .. } => Watch { dead: false, live: None },
        }
    }

    /// How source, PyTorch and ONNX write it.
    pub fn desc(self) -> Desc {
        // Most are one PyTorch call, one PyTorch module and one ONNX operator of the same name
        // in ONNX's RNN.
        let plain = |pytorch: &str, module: &str, op| Desc {
            attrs: Vec::new(),
            pytorch: pytorch.to_string(),
            pytorch_module: module.to_string(),
            onnx: node(op, vec![Onnx::X]),
            onnx_rnn: Some((op, None)),
        };
        match self {
            Act::Sigmoid => plain("torch.sigmoid({x})", "nn.Sigmoid()", "Sigmoid"),
            Act::Tanh => plain("torch.tanh({x})", "nn.Tanh()", "Tanh"),
            Act::Relu => plain("torch.relu({x})", "nn.ReLU()", "Relu"),
            Act::LeakyRelu(alpha) => Desc {
                attrs: vec![("alpha", serde_json::json!(alpha))],
                pytorch: format!("F.leaky_relu({{x}}, {alpha:?})"),
                pytorch_module: format!("nn.LeakyReLU({alpha:?})"),
                onnx: Onnx::Op { op: "LeakyRelu", args: vec![Onnx::X], alpha: Some(alpha as f32) },
                onnx_rnn: Some(("LeakyRelu", Some((alpha as f32, 0.0)))),
            },
            Act::Identity => Desc {
                onnx: Onnx::X,
                onnx_rnn: Some(("Affine", Some((1.0, 0.0)))),
                ..plain("{x}", "nn.Identity()", "Identity")
            },
            Act::HardTanh => Desc {
                onnx: node("Clip", vec![Onnx::X, Onnx::Const(-1.0), Onnx::Const(1.0)]),
                // ONNX's RNN has no clamp among its activations.
                onnx_rnn: None,
                ..plain("F.hardtanh({x})", "nn.Hardtanh()", "Clip")
            },
            Act::Gelu { tanh } => {
                let half_x = |inner| node("Mul", vec![Onnx::Const(0.5), node("Mul", vec![Onnx::X, inner])]);
                let one_plus = |v| node("Add", vec![Onnx::Const(1.0), v]);
                // ONNX opset 17 has no Gelu: 0.5·x·(1 + erf(x/√2)), or the tanh form.
                let onnx = if tanh {
                    let cube = node("Mul", vec![node("Mul", vec![Onnx::X, Onnx::X]), Onnx::X]);
                    let inner = node("Add", vec![Onnx::X, node("Mul", vec![Onnx::Const(GELU_CUBIC as f32), cube])]);
                    let u = node("Mul", vec![Onnx::Const(SQRT_2_OVER_PI as f32), inner]);
                    half_x(one_plus(node("Tanh", vec![u])))
                } else {
                    let scaled = node("Div", vec![Onnx::X, Onnx::Const(std::f32::consts::SQRT_2)]);
                    half_x(one_plus(node("Erf", vec![scaled])))
                };
                let (pytorch, module) = if tanh {
                    ("F.gelu({x}, approximate='tanh')", "nn.GELU(approximate='tanh')")
                } else {
                    ("F.gelu({x})", "nn.GELU()")
                };
                Desc {
                    attrs: if tanh { vec![("approximate", serde_json::json!("tanh"))] } else { Vec::new() },
                    pytorch: pytorch.to_string(),
                    pytorch_module: module.to_string(),
                    onnx,
                    onnx_rnn: None,
                }
            }
        }
    }

    /// The name with its arguments, as source writes it: `leaky_relu(alpha = 0.1)`,
    /// `gelu(approximate = tanh)`, `relu`.
    pub fn text(self) -> String {
        let attrs = self.desc().attrs;
        if attrs.is_empty() {
            return self.name().to_string();
        }
        let args: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} = {}", attr_text(v))).collect();
        format!("{}({})", self.name(), args.join(", "))
    }

    /// The Rust expression of this value, after `Act::` (what generated code writes).
    pub fn rust(self) -> String {
        // The derived Debug form is the constructor's syntax: `LeakyRelu(0.01)`,
        // `Gelu { tanh: true }` (a finite f64's Debug form is a Rust literal).
        format!("{self:?}")
    }

    /// `f(x)` for one value.
    #[inline(always)]
    pub fn f<T: Float>(self, v: T) -> T {
        with_scalar!(self, T, |g| g(v))
    }

    /// `f'` at one value, read off the output `y` or the input `x` as [`Act::reads`] says.
    #[inline(always)]
    pub fn df<T: Float>(self, x: T, y: T) -> T {
        match self {
            Act::Relu => step(x > T::ZERO, T::ZERO),
            Act::LeakyRelu(a) => step(x > T::ZERO, T::from_f64(a)),
            Act::Sigmoid => y * (T::ONE - y),
            Act::Tanh => T::ONE - y * y,
            Act::Identity => T::ONE,
            Act::HardTanh => step(x > -T::ONE && x < T::ONE, T::ZERO),
            Act::Gelu { tanh: false } => gelu_df(x),
            Act::Gelu { tanh: true } => gelu_tanh_df(x),
        }
    }
}

/// An argument's value as source writes it: a number as printed IR writes it (`1.0`, `0.01`),
/// a word bare (`tanh`).
pub fn attr_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => {
            let s = n.as_f64().map_or_else(|| n.to_string(), |f| format!("{f}"));
            if s.contains('.') || s.contains('e') {
                s
            } else {
                format!("{s}.0")
            }
        }
        other => other.to_string(),
    }
}

#[inline(always)]
fn step<T: Float>(on: bool, off: T) -> T {
    if on {
        T::ONE
    } else {
        off
    }
}

#[inline(always)]
fn relu<T: Float>(v: T) -> T {
    if v < T::ZERO {
        T::ZERO
    } else {
        v
    }
}

#[inline(always)]
fn leaky<T: Float>(a: T, v: T) -> T {
    if v < T::ZERO {
        a * v
    } else {
        v
    }
}

#[inline(always)]
fn hard_tanh<T: Float>(v: T) -> T {
    // NaN passes through: neither comparison holds.
    if v < -T::ONE {
        -T::ONE
    } else if v > T::ONE {
        T::ONE
    } else {
        v
    }
}

/// The logistic function, as the `sigmoid` activation computes it (the same bits).
#[inline(always)]
pub(crate) fn sigmoid<T: Float>(v: T) -> T {
    // Stable for large |v|: never exponentiates a large positive number. `e⁻|ᵛ|` without a
    // library call in f32, so that a loop over a slice vectorizes.
    let e = v.abs().exp_neg();
    if v >= T::ZERO {
        T::ONE / (T::ONE + e)
    } else {
        e / (T::ONE + e)
    }
}

/// The error function: [`Float::erf`] (vectorizable in f32, the library's in f64).
#[inline(always)]
fn erf<T: Float>(v: T) -> T {
    v.erf()
}

#[inline(always)]
fn gelu<T: Float>(v: T) -> T {
    T::from_f64(0.5) * v * (T::ONE + erf(v * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)))
}

#[inline(always)]
fn gelu_df<T: Float>(x: T) -> T {
    // Φ(x) + x·φ(x).
    let cdf = T::from_f64(0.5) * (T::ONE + erf(x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)));
    cdf + x * T::from_f64(INV_SQRT_2PI) * (T::from_f64(0.5) * x * x).exp_neg()
}

/// [`gelu`] and [`gelu_df`] of one value, the same bits as each, from one `erf`.
#[inline(always)]
fn gelu_and_df<T: Float>(x: T) -> (T, T) {
    let e = erf(x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2));
    let y = T::from_f64(0.5) * x * (T::ONE + e);
    let cdf = T::from_f64(0.5) * (T::ONE + e);
    (y, cdf + x * T::from_f64(INV_SQRT_2PI) * (T::from_f64(0.5) * x * x).exp_neg())
}

#[inline(always)]
fn gelu_tanh<T: Float>(v: T) -> T {
    let u = T::from_f64(SQRT_2_OVER_PI) * (v + T::from_f64(GELU_CUBIC) * v * v * v);
    T::from_f64(0.5) * v * (T::ONE + u.tanh())
}

#[inline(always)]
fn gelu_tanh_df<T: Float>(x: T) -> T {
    let u = T::from_f64(SQRT_2_OVER_PI) * (x + T::from_f64(GELU_CUBIC) * x * x * x);
    let t = u.tanh();
    let du = T::from_f64(SQRT_2_OVER_PI) * (T::ONE + T::from_f64(3.0 * GELU_CUBIC) * x * x);
    T::from_f64(0.5) * (T::ONE + t) + T::from_f64(0.5) * x * (T::ONE - t * t) * du
}

/// `y = f(x)` elementwise.
pub fn activation<T: Float>(f: Act, x: &[T], y: &mut [T]) {
    if f == Act::Identity {
        return y.copy_from_slice(x);
    }
    // Compiled for the widest vectors the processor has (elementwise: the same bits).
    crate::kernels::vectorized(
        #[inline(always)]
        || {
            let n = y.len().min(x.len());
            let (y, x) = (&mut y[..n], &x[..n]);
            // Counted loops: an iterator's `fold` may stay out of line, compiled without the
            // wide instruction set (seen with GELU's erf).
            with_scalar!(f, T, |g| {
                for i in 0..n {
                    y[i] = g(x[i]);
                }
            })
        },
    )
}

/// `y = f(y)` in place.
pub fn activation_in_place<T: Float>(f: Act, y: &mut [T]) {
    if f == Act::Identity {
        // Nothing to do: not even a pass over the values (a convolution without an
        // activation calls this on its whole output).
        return;
    }
    if f == Act::Relu && T::f32s_mut(y).is_some_and(relu_in_place_by_max) {
        return;
    }
    // A select stored every time, not a store under a branch: it vectorizes, and NaN stays
    // NaN (it is not below zero).
    crate::kernels::vectorized(
        #[inline(always)]
        || {
            with_scalar!(f, T, |g| {
                for v in y.iter_mut() {
                    *v = g(*v);
                }
            })
        },
    )
}

/// ReLU in place over f32 by the processor's vector maximum, `max(0, v)` (x86 with AVX2, see
/// [`on_avx2`]), which gives its second operand where either is NaN or both are zero: `v < 0 ? 0
/// : v` exactly, NaN and −0 included. Written as that select, the loop stores each vector
/// back under a mask (`vmaskmovps`, the compiler's reading of "store 0 where v < 0"), which
/// AMD's Zen 3 runs an order of magnitude slower than a plain store: 95% of the loop's time
/// there. `false`, nothing done, on other processors (NEON's maximum orders −0 below +0).
fn relu_in_place_by_max(y: &mut [f32]) -> bool {
    struct ByMax<'a>(&'a mut [f32]);
    impl pulp::WithSimd for ByMax<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, simd: S) {
            let zero = simd.splat_f32s(0.0);
            let (vectors, rest) = S::as_mut_simd_f32s(self.0);
            for v in vectors {
                *v = simd.max_f32s(zero, *v);
            }
            for v in rest {
                *v = relu(*v);
            }
        }
    }
    on_avx2(ByMax(y))
}

/// ReLU's backward pass in place over f32 (`d = 0` where `y ≤ 0`, else `d`; NaN in `y` keeps
/// `d`) as `d & !(y ≤ 0)` on the bits, on x86-64 with AVX2 or AVX-512: the select would be
/// stored under a mask, as in [`relu_in_place_by_max`]. `false`, nothing done, elsewhere.
fn relu_backward_by_mask(y: &[f32], d: &mut [f32]) -> bool {
    struct ByMask<'a>(&'a [f32], &'a mut [f32]);
    impl pulp::WithSimd for ByMask<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, simd: S) {
            let ByMask(y, d) = self;
            let n = y.len().min(d.len());
            let zero = simd.splat_f32s(0.0);
            let (ys, y_rest) = S::as_simd_f32s(&y[..n]);
            let (ds, d_rest) = S::as_mut_simd_f32s(&mut d[..n]);
            for (dv, &yv) in ds.iter_mut().zip(ys) {
                let dead: S::u32s = pulp::cast(simd.less_than_or_equal_f32s(yv, zero));
                let kept = simd.and_u32s(simd.not_u32s(dead), simd.transmute_u32s_f32s(*dv));
                *dv = simd.transmute_f32s_u32s(kept);
            }
            for (dv, &yv) in d_rest.iter_mut().zip(y_rest) {
                if yv <= 0.0 {
                    *dv = 0.0;
                }
            }
        }
    }
    on_avx2(ByMask(y, d))
}

/// Runs `op` with AVX2 (pulp's V3) on x86 — also where AVX-512 is present: the loops above
/// are bound by memory, not by the width, and the mask above is a vector (AVX-512 keeps its
/// masks in mask registers) — and says whether it ran: not on other processors, nor with the
/// tiles turned off (`NNLANG_IM2COL`).
fn on_avx2(op: impl pulp::WithSimd<Output = ()>) -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if crate::kernels::implicit::lanes() != 0 {
        if let Some(simd) = pulp::x86::V3::try_new() {
            pulp::Simd::vectorize(simd, op);
            return true;
        }
    }
    let _ = op;
    false
}

/// `y = f(x)` and `s = f'(x)`, each the same bits as [`activation`] and the derivative of
/// [`activation_backward_in_place`] (for the functions whose derivative reads the input:
/// computed while it is at hand, the backward pass is one product).
pub fn activation_with_slope<T: Float>(f: Act, x: &[T], y: &mut [T], s: &mut [T]) {
    crate::kernels::vectorized(
        #[inline(always)]
        || {
            let n = x.len().min(y.len()).min(s.len());
            let (x, y, s) = (&x[..n], &mut y[..n], &mut s[..n]);
            match f {
                Act::Gelu { tanh: false } => {
                    for i in 0..n {
                        (y[i], s[i]) = gelu_and_df(x[i]);
                    }
                }
                Act::Gelu { tanh: true } => {
                    for i in 0..n {
                        (y[i], s[i]) = (gelu_tanh(x[i]), gelu_tanh_df(x[i]));
                    }
                }
                f => {
                    for i in 0..n {
                        y[i] = f.f(x[i]);
                        s[i] = f.df(x[i], y[i]);
                    }
                }
            }
        },
    )
}

/// [`activation_with_slope`] overwriting its input: `s = f'(y)`, then `y = f(y)`.
pub fn activation_with_slope_in_place<T: Float>(f: Act, y: &mut [T], s: &mut [T]) {
    crate::kernels::vectorized(
        #[inline(always)]
        || {
            let n = y.len().min(s.len());
            let (y, s) = (&mut y[..n], &mut s[..n]);
            match f {
                Act::Gelu { tanh: false } => {
                    for i in 0..n {
                        (y[i], s[i]) = gelu_and_df(y[i]);
                    }
                }
                Act::Gelu { tanh: true } => {
                    for i in 0..n {
                        (y[i], s[i]) = (gelu_tanh(y[i]), gelu_tanh_df(y[i]));
                    }
                }
                f => {
                    for i in 0..n {
                        let x = y[i];
                        y[i] = f.f(x);
                        s[i] = f.df(x, y[i]);
                    }
                }
            }
        },
    )
}

/// Forward was `y = f(x)`, so now `dx (+)= dy · f'(x)`.
pub fn activation_backward<T: Float>(f: Act, x: &[T], y: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
    let grad = |i: usize| -> T {
        match f {
            // dy itself where the slope is one: the same bits as before the table.
            Act::Relu => {
                if x[i] > T::ZERO {
                    dy[i]
                } else {
                    T::ZERO
                }
            }
            Act::LeakyRelu(a) => {
                if x[i] > T::ZERO {
                    dy[i]
                } else {
                    T::from_f64(a) * dy[i]
                }
            }
            Act::Sigmoid => dy[i] * y[i] * (T::ONE - y[i]),
            Act::Tanh => dy[i] * (T::ONE - y[i] * y[i]),
            Act::Identity => dy[i],
            Act::HardTanh | Act::Gelu { .. } => dy[i] * f.df(x[i], y[i]),
        }
    };
    if accumulate {
        for (i, d) in dx.iter_mut().enumerate() {
            *d += grad(i);
        }
    } else {
        for (i, d) in dx.iter_mut().enumerate() {
            *d = grad(i);
        }
    }
}

/// `d = d · f'` in place, with `f'` read off `v`: the output `y` when [`Act::reads`] says
/// [`Reads::Output`] (for ReLU and leaky ReLU with α ≥ 0, `x > 0` exactly when `y > 0`; for
/// hard tanh, `−1 < x < 1` exactly when `−1 < y < 1`), else the input `x`. Compiled for the
/// widest vectors the processor has (elementwise, and no product is fused: the same bits).
pub fn activation_backward_in_place<T: Float>(f: Act, v: &[T], d: &mut [T]) {
    if f == Act::Relu {
        if let (Some(y), Some(d)) = (T::f32s(v), T::f32s_mut(d)) {
            if relu_backward_by_mask(y, d) {
                return;
            }
        }
    }
    crate::kernels::vectorized(
        #[inline(always)]
        || backward_in_place_plain(f, v, d),
    )
}

#[inline(always)]
fn backward_in_place_plain<T: Float>(f: Act, v: &[T], d: &mut [T]) {
    let n = d.len().min(v.len());
    let (v, d) = (&v[..n], &mut d[..n]);
    let y = v;
    match f {
        // Selects, not stores under a branch: they vectorize (on x86 a mask instead, see
        // `relu_backward_by_mask`).
        Act::Relu => d.iter_mut().zip(y).for_each(|(d, &y)| *d = if y <= T::ZERO { T::ZERO } else { *d }),
        Act::LeakyRelu(a) => {
            let a = T::from_f64(a);
            d.iter_mut().zip(y).for_each(|(d, &y)| *d = if y <= T::ZERO { a * *d } else { *d })
        }
        Act::Sigmoid => d.iter_mut().zip(y).for_each(|(d, &y)| *d = *d * y * (T::ONE - y)),
        Act::Tanh => d.iter_mut().zip(y).for_each(|(d, &y)| *d *= T::ONE - y * y),
        Act::Identity => {}
        Act::HardTanh => {
            d.iter_mut().zip(y).for_each(|(d, &y)| *d = if y > -T::ONE && y < T::ONE { *d } else { T::ZERO })
        }
        // Read off the input.
        // Counted loops: `Zip::fold` over these stayed out of line, without the wide
        // instruction set (GELU's backward ran as scalar code).
        Act::Gelu { tanh: false } => {
            for i in 0..n {
                d[i] *= gelu_df(v[i]);
            }
        }
        Act::Gelu { tanh: true } => {
            for i in 0..n {
                d[i] *= gelu_tanh_df(v[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ReLU in place by the vector maximum (and its backward pass by a mask) gives the
    /// select's bits on every kind of value:
    /// −0 stays −0, NaN stays NaN (its payload too), infinities, subnormals, and a tail
    /// shorter than a vector.
    #[test]
    fn relu_in_place_by_max_is_the_select() {
        let special = [
            -0.0f32,
            0.0,
            -1.5,
            2.5,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE / 4.0,
            -f32::MIN_POSITIVE / 4.0,
            f32::MAX,
            f32::MIN,
        ];
        for n in [0, 1, 7, 8, 13, 16, 37] {
            let y: Vec<f32> = (0..n).map(|i| special[(i * 5) % special.len()]).collect();
            let want: Vec<u32> = y.iter().map(|&v| relu(v).to_bits()).collect();
            let mut got = y.clone();
            activation_in_place(Act::Relu, &mut got);
            assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "{n} values");
            let mut direct = y.clone();
            if relu_in_place_by_max(&mut direct) {
                assert_eq!(direct.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "{n} values");
            }
        }
        // The backward pass by the mask: `d` where `y > 0` or NaN, +0 where `y ≤ 0` (−0
        // included), the same bits as the select.
        for n in [0, 1, 7, 8, 13, 16, 37] {
            let y: Vec<f32> = (0..n).map(|i| relu(special[(i * 3) % special.len()])).collect();
            let d: Vec<f32> = (0..n).map(|i| special[(i * 7 + 2) % special.len()]).collect();
            let want: Vec<u32> = y.iter().zip(&d).map(|(&y, &d)| if y <= 0.0 { 0.0f32 } else { d }.to_bits()).collect();
            let mut got = d.clone();
            activation_backward_in_place(Act::Relu, &y, &mut got);
            assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "backward, {n} values");
        }
        // f64 keeps the loop.
        let mut d = vec![-1.0f64, f64::NAN, -0.0, 3.0];
        activation_in_place(Act::Relu, &mut d);
        assert_eq!(d[0].to_bits(), 0);
        assert!(d[1].is_nan());
        assert_eq!(d[2].to_bits(), (-0.0f64).to_bits());
        assert_eq!(d[3], 3.0);
    }

    /// Every derivative against centred differences in f64, away from kinks.
    #[test]
    fn derivatives_match_finite_differences() {
        let mut all = Act::ALL.to_vec();
        all.push(Act::Gelu { tanh: true });
        all.push(Act::LeakyRelu(0.2));
        for &f in &all {
            for i in 0..=80 {
                let x = -4.0 + 0.1 * f64::from(i) + 0.0123;
                if f.kinks().iter().any(|k| (x - k).abs() < 1e-3) {
                    continue;
                }
                let h = 1e-6;
                let num = (f.f(x + h) - f.f(x - h)) / (2.0 * h);
                let ana = f.df(x, f.f(x));
                assert!((num - ana).abs() < 1e-7 * (1.0 + num.abs()), "{f:?} at {x}: {ana} vs {num}");
                // The in-place backward reads what the table says.
                let v = if f.reads() == Reads::Output { f.f(x) } else { x };
                let mut d = [1.5];
                activation_backward_in_place(f, &[v], &mut d);
                assert!((d[0] - 1.5 * ana).abs() < 1e-12, "{f:?} in place at {x}");
                let mut dx = [0.0];
                activation_backward(f, &[x], &[f.f(x)], &[1.5], &mut dx, false);
                assert!((dx[0] - 1.5 * ana).abs() < 1e-12, "{f:?} at {x}");
            }
        }
    }

    /// Known values: PyTorch's `F.gelu` (both forms) and `F.hardtanh`.
    #[test]
    fn known_values() {
        let g = Act::Gelu { tanh: false };
        // torch.nn.functional.gelu(torch.tensor([1.0, -0.5], dtype=torch.float64)), and with
        // approximate='tanh' (torch 2.15).
        assert!((g.f(1.0f64) - 0.841_344_746_068_543).abs() < 1e-15);
        assert!((g.f(-0.5f64) - -0.154_268_769_362_993_44).abs() < 1e-15);
        let t = Act::Gelu { tanh: true };
        assert!((t.f(1.0f64) - 0.841_191_990_608_276_8).abs() < 1e-15);
        assert!((t.f(-0.5f64) - -0.154_285_990_174_856_06).abs() < 1e-15);
        assert_eq!(Act::HardTanh.f(-3.0f32), -1.0);
        assert_eq!(Act::HardTanh.f(0.25f32), 0.25);
        assert_eq!(Act::HardTanh.f(7.0f32), 1.0);
        assert!(Act::HardTanh.f(f32::NAN).is_nan() && g.f(f32::NAN).is_nan());
        // f32 agrees with f64 to f32's precision.
        for i in -40..=40 {
            let x = 0.1 * i as f32;
            assert!((f64::from(g.f(x)) - g.f(f64::from(x))).abs() < 1e-6, "gelu({x})");
            assert!((f64::from(t.f(x)) - t.f(f64::from(x))).abs() < 1e-6, "gelu tanh({x})");
        }
    }

    #[test]
    fn text_and_rust_forms() {
        assert_eq!(Act::LeakyRelu(0.1).text(), "leaky_relu(alpha = 0.1)");
        assert_eq!(Act::LeakyRelu(1.0).text(), "leaky_relu(alpha = 1.0)");
        assert_eq!(Act::Gelu { tanh: true }.text(), "gelu(approximate = tanh)");
        assert_eq!(Act::Gelu { tanh: false }.text(), "gelu");
        assert_eq!(Act::HardTanh.text(), "hard_tanh");
        assert_eq!(Act::LeakyRelu(0.01).rust(), "LeakyRelu(0.01)");
        assert_eq!(Act::Gelu { tanh: true }.rust(), "Gelu { tanh: true }");
        assert_eq!(Act::LeakyRelu(1.0).rust(), "LeakyRelu(1.0)");
    }
}
