//! Convolutions as the im2col product without the im2col matrix: each example is copied once
//! into a zero-padded volume, and the product reads a patch straight from it — a patch is
//! `F` runs of `F·D` contiguous values, one per filter row — instead of from a matrix `F²`
//! times the input's size that matrixmultiply would then copy again into its packed panels.
//!
//! The product is register-tiled: a tile of `MR` output positions × two vectors of filters
//! lives in registers while the patch runs stream past it (each value broadcast, each row of
//! weights loaded once per tile). f32 only, compiled for AVX-512 (16 lanes) or AVX2 and FMA
//! (8 lanes) through `pulp`'s runtime dispatch, by name: every output is the same chain of
//! fused multiply–adds (bias first, then the patch in order) whatever the width, so the
//! results do not depend on which one runs. Where neither is present the functions return
//! `false` and the caller takes the im2col path (as f64 always does).
//!
//! The weights are used in kernel order — panels of filters, each `[(fy, fx, c), width]` —
//! converted from PyTorch's `[K, D, F, F]` once per call (`K·D·F²` values, small next to the
//! product). The backward pass: `dW` is the product of the patches (read in place again) and
//! `dy`, tiled over the weights; `dx`, for stride 1, is itself a convolution — of `dy` padded
//! by `F − 1 − p` with the filters flipped and their depth and count swapped — and runs
//! through the same forward tiles.
//!
//! The same tiles serve a dense layer's backward pass (`dense_backward`): `dx = dy·W` reads
//! the rows of W in place as the tile's vectors, and `dW = dyᵀ·x` the rows of x, so neither
//! product packs anything (matrixmultiply packed both operands of both, every step: a
//! quarter of the MNIST MLP's step).

use super::conv::Dy;
use super::dense::Out;

mod dense;
mod packed;
use crate::plan::{Act, Geometry};
pub use dense::{dense_backward, dense_forward, dense_tiles};
pub use packed::forward as dense_forward_packed;
use pulp::Simd;
use std::ops::Range;

/// Output positions per register tile.
const MR: usize = 6;

/// Weight rows per register tile of the weight gradient, at most: with AVX-512, 12 rows of
/// two vectors of sums fill 24 of its 32 registers, and each vector of `dy` loaded serves 12
/// of them; AVX2 has 16 registers, and takes 6 rows.
const GR: usize = 12;

/// How a tile's sums start.
#[derive(Clone, Copy)]
enum Init<'a> {
    /// From a value per filter (the bias).
    Bias(&'a [f32]),
    /// From the output's current values (`+=`).
    Keep,
    /// From zero.
    Zero,
}

/// The instruction set the tiles run with, by its lanes: 16 (AVX-512), 8 (AVX2 and FMA), 4
/// (NEON on aarch64), or 0 where the processor has none of them (and on wasm32: see
/// [`widths`]). `NNLANG_IM2COL` set also gives 0, turning every tile off
/// (convolutions by im2col, dense layers on matrixmultiply), to compare.
pub fn lanes() -> usize {
    static LANES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LANES.get_or_init(|| {
        if std::env::var_os("NNLANG_IM2COL").is_some() {
            return 0;
        }
        widths().last().copied().unwrap_or(0)
    })
}

/// Every width the tiles can run with on this processor, narrowest first (the tests run each
/// and hold their results equal).
pub fn widths() -> Vec<usize> {
    #[allow(unused_mut)] // nothing is pushed on wasm32
    let mut out = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if pulp::x86::V3::try_new().is_some() {
            out.push(8);
        }
        if pulp::x86::V4::try_new().is_some() {
            out.push(16);
        }
    }
    #[cfg(target_arch = "aarch64")]
    if pulp::aarch64::Neon::try_new().is_some() {
        out.push(4);
    }
    // Not on wasm32: SIMD128 has no fused multiply–add, and pulp computes the tiles' exactly
    // (as the other widths do) with a software `fma` per lane — measured in the playground,
    // the digits MLP trained 10× slower on the tiles than on matrixmultiply (2.3 s against
    // 0.2 s). The compiler vectorizes the elementwise loops for SIMD128 instead.
    out
}

/// Whether tiles of `lanes` lanes have 32 vector registers to hold their sums (AVX-512 and
/// NEON) rather than 16 (AVX2).
#[inline(always)]
pub(crate) fn many_registers(lanes: usize) -> bool {
    lanes == 16 || (lanes == 4 && cfg!(target_arch = "aarch64"))
}

/// Runs `op` with `lanes` lanes (see [`lanes`]); `None` where that set is missing.
pub(crate) fn run<Op: pulp::WithSimd>(lanes: usize, op: Op) -> Option<Op::Output> {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if lanes == 16 {
            if let Some(simd) = pulp::x86::V4::try_new() {
                return Some(Simd::vectorize(simd, op));
            }
        } else if lanes == 8 {
            if let Some(simd) = pulp::x86::V3::try_new() {
                return Some(Simd::vectorize(simd, op));
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    if lanes == 4 {
        if let Some(simd) = pulp::aarch64::Neon::try_new() {
            return Some(Simd::vectorize(simd, op));
        }
    }
    let _ = (lanes, op);
    None
}

/// `n` rounded up to a multiple of `lanes`.
fn round_up(n: usize, lanes: usize) -> usize {
    n.div_ceil(lanes) * lanes
}

/// Width of the panel of filters that starts at `j0` of `kp`: four vectors with 32 registers
/// (six positions × four vectors of sums: 24 of them, each patch value broadcast once for
/// four vectors of filters), else two, or one for the last.
#[inline(always)]
fn panel_width(lanes: usize, kp: usize, j0: usize) -> usize {
    if many_registers(lanes) && kp - j0 >= 4 * lanes {
        4 * lanes
    } else if kp - j0 >= 2 * lanes {
        2 * lanes
    } else {
        lanes
    }
}

/// The panel that holds filter `col`: its first filter and its width.
fn panel_of(lanes: usize, kp: usize, col: usize) -> (usize, usize) {
    let mut j0 = 0;
    loop {
        let nr = panel_width(lanes, kp, j0);
        if col < j0 + nr {
            return (j0, nr);
        }
        j0 += nr;
    }
}

/// `w[i][c][t]` (`[n, d, taps]`, PyTorch's layout with `n` filters of depth `d`, `taps`
/// positions of a filter by rows: `f²`) in kernel order: panels of filters as
/// [`panel_width`] cuts them (zeros beyond `n`), each `[(t, c), width]` — the panel of filter
/// `j0` starts at `j0 · taps·d`. `flip` reverses the taps and swaps the roles of `n` and `d`
/// (the filters of `dx`'s convolution: `[(t', i), c]` with `t' = taps − 1 − t`).
fn panels(lanes: usize, n: usize, d: usize, taps: usize, w: &[f32], flip: bool) -> Vec<f32> {
    // Rows of the product (`t·depth + channel`) and its columns (filters).
    let (depth, filters) = if flip { (n, d) } else { (d, n) };
    let (cols, fp) = (taps * depth, round_up(filters, lanes));
    let mut out = vec![0.0; cols * fp];
    // Panel by panel, each row written in order (the filters past `filters` stay zero).
    let mut j0 = 0;
    while j0 < fp {
        let nr = panel_width(lanes, fp, j0);
        let valid = nr.min(filters.saturating_sub(j0));
        for (row, dst) in out[j0 * cols..(j0 + nr) * cols].chunks_exact_mut(nr).enumerate() {
            let (t, ch) = (row / depth, row % depth);
            for (j, o) in dst[..valid].iter_mut().enumerate() {
                let col = j0 + j;
                // Flipped: row `(f² − 1 − t)·n + i` and column `c` hold `w[i][c][t]`.
                *o = if flip { w[(ch * d + col) * taps + taps - 1 - t] } else { w[(col * d + ch) * taps + t] };
            }
        }
        j0 += nr;
    }
    out
}

/// The `h × w × d` volume `x` with `p` zeros around: `x` itself when `p` is 0, else a copy
/// into the middle of `xp` (`(h + 2p) × (w + 2p) × d`, zeroed at its first use; the border
/// stays zero from one example to the next).
#[inline(always)]
fn padded<'a>(h: usize, w: usize, d: usize, p: usize, x: &'a [f32], xp: &'a mut Vec<f32>) -> &'a [f32] {
    if p == 0 {
        return &x[..h * w * d];
    }
    let wp = w + 2 * p;
    xp.resize((h + 2 * p) * wp * d, 0.0);
    for (y, row) in x[..h * w * d].chunks_exact(w * d).enumerate() {
        let at = ((y + p) * wp + p) * d;
        xp[at..at + w * d].copy_from_slice(row);
    }
    xp
}

/// A volume read as convolution patches: `wp × d` rows of a padded input, filters of `f`
/// rows and `fw` columns (`f × f` but in the strided input gradient's parts, see
/// [`strided_input_grads`]) at stride `s`, over an `oh × ow` output.
#[derive(Clone, Copy)]
struct Patches<'a> {
    src: &'a [f32],
    wp: usize,
    d: usize,
    f: usize,
    fw: usize,
    s: usize,
    oh: usize,
    ow: usize,
    /// A short patch (`f > 1`, `f·fw·d` of 4, 8, 9 or 12 taps), which [`tile_taps`] and
    /// [`grad_tile_taps`] take whole, and where its taps are from the patch's start (`offs[t]`,
    /// `t = fy·fw·d + u`).
    short: bool,
    offs: [usize; 12],
}

impl<'a> Patches<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(src: &'a [f32], wp: usize, d: usize, (f, fw): (usize, usize), s: usize, oh: usize, ow: usize) -> Self {
        let (run, taps) = (fw * d, f * fw * d);
        let short = f > 1 && matches!(taps, 4 | 8 | 9 | 12);
        let offs = std::array::from_fn(|t| if t < taps { (t / run) * wp * d + t % run } else { 0 });
        Patches { src, wp, d, f, fw, s, oh, ow, short, offs }
    }
}

/// `row = src[..valid]`, zeros after (`row` is `NV` vectors).
#[inline(always)]
fn load<S: Simd, const NV: usize>(row: &mut [S::f32s; NV], src: &[f32], valid: usize) {
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    if valid == width {
        // A whole row: vector loads (a copy of a run-time length is a library call).
        let (v, _) = S::as_simd_f32s(&src[..width]);
        row.copy_from_slice(&v[..NV]);
        return;
    }
    let mut tmp = [0f32; 64];
    tmp[..valid].copy_from_slice(&src[..valid]);
    let (v, _) = S::as_simd_f32s(&tmp);
    row.copy_from_slice(&v[..NV]);
}

/// `dst[..valid] = row[..valid]`.
#[inline(always)]
fn store<S: Simd, const NV: usize>(row: &[S::f32s; NV], dst: &mut [f32], valid: usize) {
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    if valid == width {
        let (v, _) = S::as_mut_simd_f32s(&mut dst[..width]);
        v[..NV].copy_from_slice(row);
        return;
    }
    let mut tmp = [0f32; 64];
    let (v, _) = S::as_mut_simd_f32s(&mut tmp);
    v[..NV].copy_from_slice(row);
    dst[..valid].copy_from_slice(&tmp[..valid]);
}

/// Where a tile's sums go: `out` (rows `ldo` apart) from position `p0` and filter `j0`, the
/// first `valid` filters of the tile's vectors.
#[derive(Clone, Copy)]
struct Dest {
    ldo: usize,
    p0: usize,
    j0: usize,
    valid: usize,
}

/// A tile's `M` rows of sums as `init` starts them (`Keep`: the first `m` from `out`).
#[inline(always)]
fn start<S: Simd, const NV: usize, const M: usize>(
    simd: S,
    init: Init<'_>,
    m: usize,
    out: &[f32],
    at: Dest,
) -> [[S::f32s; NV]; M] {
    let mut acc = [[simd.splat_f32s(0.0); NV]; M];
    match init {
        Init::Bias(b) => {
            for row in acc.iter_mut() {
                load::<S, NV>(row, &b[at.j0..], at.valid);
            }
        }
        Init::Keep => {
            for (r, row) in acc.iter_mut().enumerate().take(m) {
                load::<S, NV>(row, &out[(at.p0 + r) * at.ldo + at.j0..], at.valid);
            }
        }
        Init::Zero => {}
    }
    acc
}

/// The first `m` rows of a tile's sums into `out`.
#[inline(always)]
fn finish<S: Simd, const NV: usize, const M: usize>(acc: &[[S::f32s; NV]; M], m: usize, out: &mut [f32], at: Dest) {
    for (r, row) in acc.iter().enumerate().take(m) {
        store::<S, NV>(row, &mut out[(at.p0 + r) * at.ldo + at.j0..], at.valid);
    }
}

/// `out[p0 + r, j0 + j] = init + Σ_t patch(bases[r])[t] · panel[t, j]` for the `MR`
/// positions and the first `valid` of the panel's `NV` vectors of filters (fewer positions:
/// [`tile_few`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Simd, const NV: usize>(
    simd: S,
    x: &Patches<'_>,
    bases: &[usize; MR],
    panel: &[f32],
    j0: usize,
    valid: usize,
    init: Init<'_>,
    out: &mut [f32],
    ldo: usize,
    p0: usize,
) {
    let run = x.fw * x.d;
    let seg = x.wp * x.d;
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    let at = Dest { ldo, p0, j0, valid };
    let mut acc = start::<S, NV, MR>(simd, init, MR, out, at);
    for fy in 0..x.f {
        let at = |r: usize| &x.src[bases[r] + fy * seg..bases[r] + fy * seg + run];
        let (r0, r1, r2, r3, r4, r5) = (at(0), at(1), at(2), at(3), at(4), at(5));
        let (w, _) = S::as_simd_f32s(&panel[fy * run * width..(fy + 1) * run * width]);
        let rows = r0.iter().zip(r1).zip(r2).zip(r3).zip(r4).zip(r5).zip(w.chunks_exact(NV));
        for ((((((a0, a1), a2), a3), a4), a5), b) in rows {
            let b: &[S::f32s; NV] = b.try_into().expect("a panel row is NV vectors");
            for (r, &a) in [a0, a1, a2, a3, a4, a5].into_iter().enumerate() {
                let a = simd.splat_f32s(a);
                for v in 0..NV {
                    acc[r][v] = simd.mul_add_f32s(a, b[v], acc[r][v]);
                }
            }
        }
    }
    finish::<S, NV, MR>(&acc, MR, out, at);
}

/// [`tile`] over every tap of a short patch at once (`T = f·fw·d` taps: a filter over one or
/// two channels), the taps' offsets computed once: [`tile`] takes a filter row's run at a
/// time, and over one channel a run is three values — the loop about them cost more than
/// their multiply–adds. Each output is the same chain of multiply–adds (bias, then the taps in
/// order) as there: the same bits.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_taps<S: Simd, const NV: usize, const T: usize>(
    simd: S,
    x: &Patches<'_>,
    bases: &[usize; MR],
    panel: &[f32],
    j0: usize,
    valid: usize,
    init: Init<'_>,
    out: &mut [f32],
    ldo: usize,
    p0: usize,
) {
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    let offs: &[usize; T] = x.offs.first_chunk().expect("a short patch's offsets");
    let reach = offs[T - 1] + 1;
    let at = Dest { ldo, p0, j0, valid };
    let mut acc = start::<S, NV, MR>(simd, init, MR, out, at);
    let src = x.src;
    let patches = [
        &src[bases[0]..bases[0] + reach],
        &src[bases[1]..bases[1] + reach],
        &src[bases[2]..bases[2] + reach],
        &src[bases[3]..bases[3] + reach],
        &src[bases[4]..bases[4] + reach],
        &src[bases[5]..bases[5] + reach],
    ];
    let (w, _) = S::as_simd_f32s(&panel[..T * width]);
    for (t, b) in w.chunks_exact(NV).enumerate().take(T) {
        let b: &[S::f32s; NV] = b.try_into().expect("a panel row is NV vectors");
        for r in 0..MR {
            let a = simd.splat_f32s(patches[r][offs[t]]);
            for v in 0..NV {
                acc[r][v] = simd.mul_add_f32s(a, b[v], acc[r][v]);
            }
        }
    }
    finish::<S, NV, MR>(&acc, MR, out, at);
}

/// [`tile`] for the last `M < MR` positions of a map (`M` a constant: a map of 7 × 7 = 49
/// positions ends in a tile of one, which [`tile`] would compute six times over — a ninth of
/// the layer). Each output is the same chain of multiply–adds as there: the same bits.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_few<S: Simd, const NV: usize, const M: usize>(
    simd: S,
    x: &Patches<'_>,
    bases: &[usize; MR],
    panel: &[f32],
    j0: usize,
    valid: usize,
    init: Init<'_>,
    out: &mut [f32],
    ldo: usize,
    p0: usize,
) {
    let run = x.fw * x.d;
    let seg = x.wp * x.d;
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    let at = Dest { ldo, p0, j0, valid };
    let mut acc = start::<S, NV, M>(simd, init, M, out, at);
    for fy in 0..x.f {
        let rows: [&[f32]; M] = std::array::from_fn(|r| &x.src[bases[r] + fy * seg..bases[r] + fy * seg + run]);
        let (w, _) = S::as_simd_f32s(&panel[fy * run * width..(fy + 1) * run * width]);
        for (k, b) in w.chunks_exact(NV).enumerate() {
            let b: &[S::f32s; NV] = b.try_into().expect("a panel row is NV vectors");
            for r in 0..M {
                let a = simd.splat_f32s(rows[r][k]);
                for v in 0..NV {
                    acc[r][v] = simd.mul_add_f32s(a, b[v], acc[r][v]);
                }
            }
        }
    }
    finish::<S, NV, M>(&acc, M, out, at);
}

/// [`tile`], or [`tile_few`] for the `m < MR` positions left at the end of a map.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_m<S: Simd, const NV: usize>(
    simd: S,
    x: &Patches<'_>,
    bases: &[usize; MR],
    m: usize,
    panel: &[f32],
    j0: usize,
    valid: usize,
    init: Init<'_>,
    out: &mut [f32],
    ldo: usize,
    p0: usize,
) {
    if m == MR && x.short {
        // A short patch's taps all at once (see `tile_taps`).
        match x.f * x.fw * x.d {
            4 => return tile_taps::<S, NV, 4>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
            8 => return tile_taps::<S, NV, 8>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
            9 => return tile_taps::<S, NV, 9>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
            12 => return tile_taps::<S, NV, 12>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
            _ => {}
        }
    }
    match m {
        1 => tile_few::<S, NV, 1>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
        2 => tile_few::<S, NV, 2>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
        3 => tile_few::<S, NV, 3>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
        4 => tile_few::<S, NV, 4>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
        5 => tile_few::<S, NV, 5>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
        _ => tile::<S, NV>(simd, x, bases, panel, j0, valid, init, out, ldo, p0),
    }
}

/// `out[p, j] (init)+= Σ_t patch_p[t] · w[t, j]` for every output position `p` and the `k`
/// filters (`out` is `oh·ow × k`; `wk` in panels, see [`panels`]).
#[inline(always)]
fn conv_rows<S: Simd>(simd: S, x: &Patches<'_>, wk: &[f32], k: usize, init: Init<'_>, out: &mut [f32]) {
    let lanes = std::mem::size_of::<S::f32s>() / 4;
    let (kp, cols) = (round_up(k, lanes), x.f * x.fw * x.d);
    let positions = x.oh * x.ow;
    // The tile's positions' patches, found by stepping along the rows of the map (a division
    // per position cost more than a short patch's multiply–adds).
    let (mut oy, mut ox) = (0, 0);
    let mut next = || {
        let at = (oy * x.s * x.wp + ox * x.s) * x.d;
        ox += 1;
        if ox == x.ow {
            (oy, ox) = (oy + 1, 0);
        }
        at
    };
    let mut p0 = 0;
    while p0 < positions {
        let m = (positions - p0).min(MR);
        let mut bases = [0; MR];
        for r in 0..MR {
            bases[r] = if r < m { next() } else { bases[m - 1] };
        }
        let mut j0 = 0;
        while j0 < k {
            let panel = &wk[j0 * cols..];
            let nr = panel_width(lanes, kp, j0);
            let valid = (k - j0).min(nr);
            if nr == 4 * lanes {
                tile_m::<S, 4>(simd, x, &bases, m, panel, j0, valid, init, out, k, p0);
            } else if nr == 2 * lanes {
                tile_m::<S, 2>(simd, x, &bases, m, panel, j0, valid, init, out, k, p0);
            } else {
                tile_m::<S, 1>(simd, x, &bases, m, panel, j0, valid, init, out, k, p0);
            }
            j0 += nr;
        }
        p0 += m;
    }
}

/// `dwk[t0 + r, j] += Σ_p patch_p[t0 + r] · dy[p, j0 + j]` over the output rows `oy0..oy1`,
/// for `M` weight rows inside one filter row's run (`t0 = fy·run + u0`) and `NV` vectors of
/// filters from `j0` (`dy` rows `kp` long), in `panel`: rows `pw` wide, of which these
/// filters are the columns from `c0` (a panel is the whole row, or half of a wider one).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tile<S: Simd, const M: usize, const NV: usize>(
    simd: S,
    x: &Patches<'_>,
    fy: usize,
    u0: usize,
    dy: &[f32],
    kp: usize,
    j0: usize,
    (oy0, oy1): (usize, usize),
    (panel, pw, c0): (&mut [f32], usize, usize),
) {
    let lanes = std::mem::size_of::<S::f32s>() / 4;
    let width = lanes * NV;
    let run = x.fw * x.d;
    let t0 = fy * run + u0;
    let at = |r: usize| (t0 + r) * pw + c0..(t0 + r) * pw + c0 + width;
    let mut acc = [[simd.splat_f32s(0.0); NV]; M];
    for (r, row) in acc.iter_mut().enumerate() {
        let (v, _) = S::as_simd_f32s(&panel[at(r)]);
        row.copy_from_slice(&v[..NV]);
    }
    let step = x.s * x.d;
    for oy in oy0..oy1 {
        let base = oy * x.s * x.wp * x.d + fy * x.wp * x.d + u0;
        let dys = &dy[oy * x.ow * kp..(oy + 1) * x.ow * kp];
        for (ox, g) in dys.chunks_exact(kp).enumerate() {
            let a: &[f32; M] = x.src[base + ox * step..].first_chunk().expect("a patch run inside the volume");
            let (b, _) = S::as_simd_f32s(&g[j0..j0 + width]);
            let b: &[S::f32s; NV] = b.try_into().expect("NV vectors of dy");
            for r in 0..M {
                let a = simd.splat_f32s(a[r]);
                for v in 0..NV {
                    acc[r][v] = simd.mul_add_f32s(a, b[v], acc[r][v]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let (v, _) = S::as_mut_simd_f32s(&mut panel[at(r)]);
        v.copy_from_slice(row);
    }
}

/// [`grad_tile`] over every tap of the patch at once (`M = f·f·d` rows: a patch of few
/// values, an input of one or two channels), so that each vector of `dy` loaded serves all of
/// them — [`grad_tile`] takes one filter row's run at a time, `f·d` rows, and a filter of 3 × 3
/// over one channel would keep 3 rows of sums and read `dy` three times. Each sum is the same
/// chain of multiply–adds over the positions in order as there: the same bits.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tile_taps<S: Simd, const M: usize, const NV: usize>(
    simd: S,
    x: &Patches<'_>,
    dy: &[f32],
    kp: usize,
    j0: usize,
    (oy0, oy1): (usize, usize),
    (panel, pw, c0): (&mut [f32], usize, usize),
) {
    let lanes = std::mem::size_of::<S::f32s>() / 4;
    let width = lanes * NV;
    let seg = x.wp * x.d;
    // Where tap `r` (`fy·run + u`) is from its patch's start.
    let offs: &[usize; M] = x.offs.first_chunk().expect("a short patch's offsets");
    let reach = offs[M - 1] + 1;
    let at = |r: usize| r * pw + c0..r * pw + c0 + width;
    let mut acc = [[simd.splat_f32s(0.0); NV]; M];
    for (r, row) in acc.iter_mut().enumerate() {
        let (v, _) = S::as_simd_f32s(&panel[at(r)]);
        row.copy_from_slice(&v[..NV]);
    }
    let step = x.s * x.d;
    for oy in oy0..oy1 {
        let base = oy * x.s * seg;
        let dys = &dy[oy * x.ow * kp..(oy + 1) * x.ow * kp];
        for (ox, g) in dys.chunks_exact(kp).enumerate() {
            let patch = &x.src[base + ox * step..base + ox * step + reach];
            let (b, _) = S::as_simd_f32s(&g[j0..j0 + width]);
            let b: &[S::f32s; NV] = b.try_into().expect("NV vectors of dy");
            for r in 0..M {
                let a = simd.splat_f32s(patch[offs[r]]);
                for v in 0..NV {
                    acc[r][v] = simd.mul_add_f32s(a, b[v], acc[r][v]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let (v, _) = S::as_mut_simd_f32s(&mut panel[at(r)]);
        v.copy_from_slice(row);
    }
}

/// [`grad_tile_taps`] for the `m` taps of a patch (`f > 1`, `f·f·d ≤ GR`), chosen at run time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tile_taps_m<S: Simd, const NV: usize>(
    simd: S,
    m: usize,
    x: &Patches<'_>,
    dy: &[f32],
    kp: usize,
    j0: usize,
    span: (usize, usize),
    panel: (&mut [f32], usize, usize),
) {
    match m {
        12 => grad_tile_taps::<S, 12, NV>(simd, x, dy, kp, j0, span, panel),
        9 => grad_tile_taps::<S, 9, NV>(simd, x, dy, kp, j0, span, panel),
        8 => grad_tile_taps::<S, 8, NV>(simd, x, dy, kp, j0, span, panel),
        _ => grad_tile_taps::<S, 4, NV>(simd, x, dy, kp, j0, span, panel),
    }
}

/// [`grad_tile`] for `m ≤ GR` rows, the count chosen at run time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tile_m<S: Simd, const NV: usize>(
    simd: S,
    m: usize,
    x: &Patches<'_>,
    fy: usize,
    u0: usize,
    dy: &[f32],
    kp: usize,
    j0: usize,
    span: (usize, usize),
    panel: (&mut [f32], usize, usize),
) {
    match m {
        12 => grad_tile::<S, 12, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        11 => grad_tile::<S, 11, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        10 => grad_tile::<S, 10, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        9 => grad_tile::<S, 9, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        8 => grad_tile::<S, 8, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        7 => grad_tile::<S, 7, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        6 => grad_tile::<S, 6, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        5 => grad_tile::<S, 5, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        4 => grad_tile::<S, 4, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        3 => grad_tile::<S, 3, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        2 => grad_tile::<S, 2, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
        _ => grad_tile::<S, 1, NV>(simd, x, fy, u0, dy, kp, j0, span, panel),
    }
}

/// `db[j] += Σ_p dy[p, j]` over the positions of one example, each sum in order of the
/// positions (the bits of a plain loop over the rows). Held in registers where the filters
/// are a whole number of up to four vectors: added to `db` in memory row by row, each row
/// waited for the store of the one before (~40% of a one-channel convolution's `dW` step).
#[inline(always)]
fn bias_grads<S: Simd>(simd: S, dy: &[f32], k: usize, db: &mut [f32]) {
    let lanes = std::mem::size_of::<S::f32s>() / 4;
    match (k % lanes, k / lanes) {
        (0, 1) => bias_grads_nv::<S, 1>(simd, dy, db),
        (0, 2) => bias_grads_nv::<S, 2>(simd, dy, db),
        (0, 3) => bias_grads_nv::<S, 3>(simd, dy, db),
        (0, 4) => bias_grads_nv::<S, 4>(simd, dy, db),
        _ => {
            for row in dy.chunks_exact(k.max(1)) {
                db[..k].iter_mut().zip(row).for_each(|(g, &v)| *g += v);
            }
        }
    }
}

/// [`bias_grads`] for `NV` vectors of filters.
#[inline(always)]
fn bias_grads_nv<S: Simd, const NV: usize>(simd: S, dy: &[f32], db: &mut [f32]) {
    let width = std::mem::size_of::<S::f32s>() / 4 * NV;
    let mut acc = [simd.splat_f32s(0.0); NV];
    load::<S, NV>(&mut acc, db, width);
    for row in dy.chunks_exact(width) {
        let (v, _) = S::as_simd_f32s(row);
        for j in 0..NV {
            acc[j] = simd.add_f32s(acc[j], v[j]);
        }
    }
    store::<S, NV>(&acc, db, width);
}

/// Output positions per block of the weight gradient (whole output rows, at least one): the
/// block's `dy` rows and patches stay in cache while every tile of `dW` passes over them.
const GRAD_BLOCK: usize = 128;

/// `dwk[t, j] += Σ_p patch_p[t] · dy[p, j]` over every position (`dy` rows `kp` long, `dwk`
/// in panels).
#[inline(always)]
fn weight_grads<S: Simd>(simd: S, x: &Patches<'_>, dy: &[f32], kp: usize, dwk: &mut [f32]) {
    let lanes = std::mem::size_of::<S::f32s>() / 4;
    let run = x.fw * x.d;
    let cols = x.f * run;
    let block = (GRAD_BLOCK / x.ow).max(1);
    let gr = if many_registers(lanes) { GR } else { MR };
    // Every tap of a patch in one tile, where they fit and a filter row's run alone is short
    // (3 × 3 and 2 × 2 over one channel, 2 × 2 over two or three).
    let all_taps = x.short && cols <= gr;
    let mut oy0 = 0;
    while oy0 < x.oh {
        let oy1 = (oy0 + block).min(x.oh);
        let mut j0 = 0;
        while j0 < kp {
            let nr = panel_width(lanes, kp, j0);
            let panel = &mut dwk[j0 * cols..(j0 + nr) * cols];
            if all_taps {
                let span = (oy0, oy1);
                if nr == 4 * lanes {
                    for c0 in [0, 2 * lanes] {
                        grad_tile_taps_m::<S, 2>(simd, cols, x, dy, kp, j0 + c0, span, (&mut *panel, nr, c0));
                    }
                } else if nr == 2 * lanes {
                    grad_tile_taps_m::<S, 2>(simd, cols, x, dy, kp, j0, span, (&mut *panel, nr, 0));
                } else {
                    grad_tile_taps_m::<S, 1>(simd, cols, x, dy, kp, j0, span, (&mut *panel, nr, 0));
                }
                j0 += nr;
                continue;
            }
            for fy in 0..x.f {
                let mut u0 = 0;
                while u0 < run {
                    let m = (run - u0).min(gr);
                    let span = (oy0, oy1);
                    if nr == 4 * lanes {
                        // Two vectors of filters at a time (12 rows × two vectors of sums).
                        for c0 in [0, 2 * lanes] {
                            let cols = (&mut *panel, nr, c0);
                            grad_tile_m::<S, 2>(simd, m, x, fy, u0, dy, kp, j0 + c0, span, cols);
                        }
                    } else if nr == 2 * lanes {
                        grad_tile_m::<S, 2>(simd, m, x, fy, u0, dy, kp, j0, span, (&mut *panel, nr, 0));
                    } else {
                        grad_tile_m::<S, 1>(simd, m, x, fy, u0, dy, kp, j0, span, (&mut *panel, nr, 0));
                    }
                    u0 += m;
                }
            }
            j0 += nr;
        }
        oy0 = oy1;
    }
}

struct Forward<'a> {
    g: &'a Geometry,
    f: Act,
    rows: usize,
    x: &'a [f32],
    wk: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
}

impl pulp::WithSimd for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Forward { g, f, rows, x, wk, b, y } = self;
        let wp = g.w + 2 * g.p;
        let (in_len, out_len) = (g.h * g.w * g.d, g.oh * g.ow * g.k);
        let mut xp = Vec::new();
        for r in 0..rows {
            let src = padded(g.h, g.w, g.d, g.p, &x[r * in_len..(r + 1) * in_len], &mut xp);
            let patches = Patches::new(src, wp, g.d, (g.f, g.f), g.s, g.oh, g.ow);
            let out = &mut y[r * out_len..(r + 1) * out_len];
            // No bias (`bias = false`): the sums start from zero.
            let init = if b.is_empty() { Init::Zero } else { Init::Bias(b) };
            conv_rows(simd, &patches, wk, g.k, init, out);
            // The activation on the example just written, while it is in cache.
            super::elementwise::activation_in_place(f, out);
        }
    }
}

/// `y = f(conv(x) + b)` for `rows` examples; `false` (nothing done) without AVX2/FMA.
pub fn forward(g: &Geometry, f: Act, rows: usize, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) -> bool {
    forward_with(lanes(), g, f, rows, x, w, b, y)
}

/// [`forward`] with `lanes` lanes.
#[allow(clippy::too_many_arguments)]
fn forward_with(
    lanes: usize,
    g: &Geometry,
    f: Act,
    rows: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
) -> bool {
    if lanes == 0 || !g.plain() {
        return false;
    }
    let wk = panels(lanes, g.k, g.d, g.f * g.f, w, false);
    run(lanes, Forward { g, f, rows, x, wk: &wk, b, y }).is_some()
}

struct Backward<'a, 'd> {
    lanes: usize,
    g: &'a Geometry,
    rows: usize,
    x: &'a [f32],
    w: &'a [f32],
    dy: Dy<'d, f32>,
    dwk: &'a mut [f32],
    db: &'a mut [f32],
    dx: Option<(&'a mut [f32], bool)>,
}

impl pulp::WithSimd for Backward<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Backward { lanes, g, rows, x, w, dy, dwk, db, dx } = self;
        let (k, kp) = (g.k, round_up(g.k, lanes));
        let wp = g.w + 2 * g.p;
        let positions = g.oh * g.ow;
        let (in_len, out_len) = (g.h * g.w * g.d, positions * k);
        let mut xp = Vec::new();
        // dy with rows padded to `kp` filters, when `k` is not a multiple of the lanes.
        let mut dy_padded = if kp == k { Vec::new() } else { vec![0.0; positions * kp] };
        // dx is the convolution of dy padded by q = f − 1 − p with the flipped filters.
        let q = g.f - 1 - g.p;
        let dwp = g.ow + 2 * q;
        let mut dyp = Vec::new();
        let strided = g.s > 1;
        let wf = if dx.is_some() && !strided { panels(lanes, g.k, g.d, g.f * g.f, w, true) } else { Vec::new() };
        let parts = (dx.is_some() && strided).then(|| StridedDx::of(lanes, g, w));
        let mut part_out = Vec::new();
        let mut dx = dx;
        let mut dy = dy;
        // One example's dy when it is made example by example (in cache for every pass below).
        let mut made = if matches!(dy, Dy::Made(_)) { vec![0.0; out_len] } else { Vec::new() };
        if !db.is_empty() {
            db[..k].fill(0.0);
        }
        for r in 0..rows {
            let src = padded(g.h, g.w, g.d, g.p, &x[r * in_len..(r + 1) * in_len], &mut xp);
            let patches = Patches::new(src, wp, g.d, (g.f, g.f), g.s, g.oh, g.ow);
            let dyr = match &mut dy {
                Dy::Given(dy) => &dy[r * out_len..(r + 1) * out_len],
                Dy::Made(make) => {
                    make(r, &mut made);
                    &made[..]
                }
            };
            // `db = Σ dy`, one example at a time while its `dy` is in cache (the same order
            // of additions as one pass over the batch).
            if !db.is_empty() {
                bias_grads(simd, dyr, k, db);
            }
            if kp == k {
                weight_grads(simd, &patches, dyr, kp, dwk);
            } else {
                for (to, from) in dy_padded.chunks_exact_mut(kp).zip(dyr.chunks_exact(k)) {
                    to[..k].copy_from_slice(from);
                }
                weight_grads(simd, &patches, &dy_padded, kp, dwk);
            }
            if let (Some((d, keep)), Some(parts)) = (dx.as_mut(), &parts) {
                let dxr = &mut d[r * in_len..(r + 1) * in_len];
                strided_input_grads(simd, g, parts, dyr, &mut dyp, &mut part_out, dxr, *keep);
            } else if let Some((d, keep)) = dx.as_mut() {
                let src = padded(g.oh, g.ow, k, q, dyr, &mut dyp);
                let grads = Patches::new(src, dwp, k, (g.f, g.f), 1, g.h, g.w);
                let init = if *keep { Init::Keep } else { Init::Zero };
                conv_rows(simd, &grads, &wf, g.d, init, &mut d[r * in_len..(r + 1) * in_len]);
            }
        }
    }
}

/// Whether [`backward`] computes `dx` for this geometry: an input of at least 8 channels
/// (`dx`'s convolution has `D` filters, rounded up to a whole vector: for fewer, most of its
/// work would be padding), padding below `F`; at stride 1 the windows covering the input
/// exactly (not a floored output that leaves its last rows or columns out: `dx`'s
/// convolution is then `h × w` again), at a stride up to `F` any output size (the gradient
/// computed part by part: each of the `s²` interleaved grids of input positions a stride-1
/// convolution of `dy` with the taps that reach it).
pub fn input_grads(g: &Geometry) -> bool {
    let exact = |n: usize, o: usize| n + 2 * g.p + 1 == o + g.f;
    let shape = match g.s {
        1 => exact(g.h, g.oh) && exact(g.w, g.ow),
        s => s <= g.f,
    };
    g.plain() && g.p < g.f && g.d >= 8 && shape
}

/// One of the `s²` parts of a strided convolution's input gradient: the input positions
/// `(s·u + a, s·v + b)`, which only the filter taps `fy ≡ a + p`, `fx ≡ b + p` (mod `s`)
/// reach — `nh × nw` of them, `s` apart. Over those positions `dx` is a convolution at stride
/// 1 of `dy` with that part of the filters (flipped, filters and channels swapped): `dx[u, v]
/// = Σ_{m, n} dy[u − qy + m, v − qx + n] · w'[m, n]`.
struct Strided {
    a: usize,
    b: usize,
    /// Rows and columns of the part's filters (0: nothing reaches these positions).
    nh: usize,
    nw: usize,
    /// Where the part's windows start in `dy`: `qy` rows and `qx` columns before its row and
    /// column 0 (after them where negative).
    qy: isize,
    qx: isize,
    /// Its positions (`hu × wv`).
    hu: usize,
    wv: usize,
    /// Its filters in panels ([`panels`], flipped).
    panels: Vec<f32>,
}

/// A strided convolution's input gradient, laid out once per call: its parts, and `dy`
/// padded for all of them at once — `top` rows and `left` columns of zeros before it, in a
/// volume of `rows × cols` positions (enough after it for every part's last windows).
struct StridedDx {
    parts: Vec<Strided>,
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
    /// Where each part's windows start in the padded `dy` (values from its start).
    starts: Vec<usize>,
    /// The most positions × channels of a part.
    largest: usize,
}

impl StridedDx {
    fn of(lanes: usize, g: &Geometry, w: &[f32]) -> StridedDx {
        let parts = Strided::of(lanes, g, w);
        let top = parts.iter().map(|t| t.qy).max().unwrap_or(0).max(0);
        let left = parts.iter().map(|t| t.qx).max().unwrap_or(0).max(0);
        // Where each part's source starts (`top − qy`, `left − qx`: never negative).
        let (r0, c0) = (|t: &Strided| (top - t.qy) as usize, |t: &Strided| (left - t.qx) as usize);
        let (top, left) = (top as usize, left as usize);
        let rows = parts.iter().map(|t| r0(t) + t.hu + t.nh.max(1) - 1).max().unwrap_or(0).max(top + g.oh);
        let cols = parts.iter().map(|t| c0(t) + t.wv + t.nw.max(1) - 1).max().unwrap_or(0).max(left + g.ow);
        let starts = parts.iter().map(|t| (r0(t) * cols + c0(t)) * g.k).collect();
        let largest = parts.iter().map(|t| t.hu * t.wv * g.d).max().unwrap_or(0);
        StridedDx { parts, top, left, rows, cols, starts, largest }
    }
}

impl Strided {
    /// The `s²` parts of `g`'s input gradient (its filters `w`, PyTorch's layout).
    fn of(lanes: usize, g: &Geometry, w: &[f32]) -> Vec<Strided> {
        let (s, f, p) = (g.s, g.f, g.p);
        let mut out = Vec::with_capacity(s * s);
        for a in 0..s {
            for b in 0..s {
                let (fy0, fx0) = ((a + p) % s, (b + p) % s);
                let (nh, nw) = ((f + s - 1 - fy0) / s, (f + s - 1 - fx0) / s);
                // dy's row for part row u and filter row m is u + (a + p − fy0)/s − (nh − 1 − m).
                let (cy, cx) = ((a + p - fy0) / s, (b + p - fx0) / s);
                let (hu, wv) = ((g.h + s - 1 - a) / s, (g.w + s - 1 - b) / s);
                let taps = nh * nw;
                // The part's filters, `[k][c][m·nw + n]` = w[k][c][fy0 + s·m][fx0 + s·n].
                let mut sub = vec![0.0; g.k * g.d * taps];
                for (i, t) in sub.chunks_exact_mut(taps.max(1)).enumerate().take(g.k * g.d) {
                    for m in 0..nh {
                        for n in 0..nw {
                            t[m * nw + n] = w[i * f * f + (fy0 + s * m) * f + fx0 + s * n];
                        }
                    }
                }
                let panels = if taps > 0 { panels(lanes, g.k, g.d, taps, &sub, true) } else { Vec::new() };
                let (qy, qx) = (nh as isize - 1 - cy as isize, nw as isize - 1 - cx as isize);
                out.push(Strided { a, b, nh, nw, qy, qx, hu, wv, panels });
            }
        }
        out
    }
}

/// `dx (+)= ∂/∂x` of one example of a convolution at stride `s > 1` (`dy` its output
/// gradient), part by part ([`Strided`]): each part's convolution into `part` (from `dx`'s
/// values there when adding), then into its positions of `dx`. `dyp` holds `dy` padded for
/// every part at once (zeroed at its first use: the border stays zero from one example to the
/// next, as [`padded`]'s).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn strided_input_grads<S: Simd>(
    simd: S,
    g: &Geometry,
    l: &StridedDx,
    dy: &[f32],
    dyp: &mut Vec<f32>,
    part: &mut Vec<f32>,
    dx: &mut [f32],
    keep: bool,
) {
    let (s, k, d) = (g.s, g.k, g.d);
    dyp.resize(l.rows * l.cols * k, 0.0);
    for (y, row) in dy.chunks_exact(g.ow * k).enumerate() {
        let at = ((l.top + y) * l.cols + l.left) * k;
        dyp[at..at + g.ow * k].copy_from_slice(row);
    }
    part.resize(l.largest, 0.0);
    for (t, &start) in l.parts.iter().zip(&l.starts) {
        let n = t.hu * t.wv;
        if n == 0 {
            // An input narrower than the stride: no position of this grid.
            continue;
        }
        let part = &mut part[..n * d];
        let at = |u: usize, v: usize| ((s * u + t.a) * g.w + s * v + t.b) * d;
        if t.nh == 0 || t.nw == 0 {
            // No tap reaches these positions: their gradient is 0.
            if !keep {
                for u in 0..t.hu {
                    for v in 0..t.wv {
                        dx[at(u, v)..at(u, v) + d].fill(0.0);
                    }
                }
            }
            continue;
        }
        if keep {
            for u in 0..t.hu {
                for v in 0..t.wv {
                    part[(u * t.wv + v) * d..(u * t.wv + v + 1) * d].copy_from_slice(&dx[at(u, v)..at(u, v) + d]);
                }
            }
        }
        let patches = Patches::new(&dyp[start..], l.cols, k, (t.nh, t.nw), 1, t.hu, t.wv);
        conv_rows(simd, &patches, &t.panels, d, if keep { Init::Keep } else { Init::Zero }, part);
        for u in 0..t.hu {
            for v in 0..t.wv {
                dx[at(u, v)..at(u, v) + d].copy_from_slice(&part[(u * t.wv + v) * d..(u * t.wv + v + 1) * d]);
            }
        }
    }
}

/// Forward was `y = conv(x) + b`: `dW = Σ dyᵀ·patches` (overwriting `dw`), `db = Σ dy`, and
/// when `dx` is given, `dx (+)= ∂/∂x` (`true`: add). `false` (nothing done) without AVX2/FMA,
/// or when `dx` is asked where [`input_grads`] is false. A `dy` made example by example
/// ([`Dy::Made`]) is made once per example, into a buffer of one example.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &Geometry,
    rows: usize,
    x: &[f32],
    w: &[f32],
    dy: Dy<'_, f32>,
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<(&mut [f32], bool)>,
) -> bool {
    backward_with(lanes(), g, rows, x, w, dy, dw, db, dx)
}

/// [`backward`] with `lanes` lanes.
#[allow(clippy::too_many_arguments)]
fn backward_with(
    lanes: usize,
    g: &Geometry,
    rows: usize,
    x: &[f32],
    w: &[f32],
    dy: Dy<'_, f32>,
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<(&mut [f32], bool)>,
) -> bool {
    if lanes == 0 || !g.plain() || (dx.is_some() && !input_grads(g)) {
        return false;
    }
    let (f, d, k) = (g.f, g.d, g.k);
    let kp = round_up(k, lanes);
    let cols = f * f * d;
    let mut dwk = vec![0.0; cols * kp];
    if run(lanes, Backward { lanes, g, rows, x, w, dy, dwk: &mut dwk, db, dx }).is_none() {
        return false;
    }
    for i in 0..k {
        let (j0, nr) = panel_of(lanes, kp, i);
        for c in 0..d {
            for t in 0..f * f {
                dw[(i * d + c) * f * f + t] = dwk[j0 * cols + (t * d + c) * nr + i - j0];
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// The convolution and its gradients by their definitions, in f64, for one example: `y`,
    /// and for `c = ∂L/∂y`: `dW`, `db`, `dx`.
    #[allow(clippy::type_complexity)]
    fn naive(g: &Geometry, x: &[f32], w: &[f32], b: &[f32], c: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; g.oh * g.ow * g.k];
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; g.k], vec![0.0; x.len()]);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for k in 0..g.k {
                    let at = (oy * g.ow + ox) * g.k + k;
                    let ck = f64::from(c[at]);
                    let mut s = f64::from(b[k]);
                    db[k] += ck;
                    for fy in 0..g.f {
                        for fx in 0..g.f {
                            let (iy, ix) =
                                ((oy * g.s + fy) as isize - g.p as isize, (ox * g.s + fx) as isize - g.p as isize);
                            if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
                                continue;
                            }
                            for ch in 0..g.d {
                                let xi = (iy as usize * g.w + ix as usize) * g.d + ch;
                                let wi = ((k * g.d + ch) * g.f + fy) * g.f + fx;
                                s += f64::from(x[xi]) * f64::from(w[wi]);
                                dw[wi] += ck * f64::from(x[xi]);
                                dx[xi] += ck * f64::from(w[wi]);
                            }
                        }
                    }
                    y[at] = s;
                }
            }
        }
        (y, dw, db, dx)
    }

    pub(super) fn close(got: &[f32], want: &[f64], what: &str) {
        for (i, (a, e)) in got.iter().zip(want).enumerate() {
            assert!((f64::from(*a) - e).abs() < 1e-4 * (1.0 + e.abs()), "{what}[{i}]: {a} vs {e}");
        }
    }

    /// A short patch's tile (`tile_taps`: every tap at once) computes each output as the same
    /// chain of fused multiply–adds as the other tiles — the bias, then the padded patch's taps
    /// by rows, each `x·w + sum` rounded once — bit for bit, at every width.
    #[test]
    fn short_patches_are_the_chain_of_multiply_adds_in_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for &(h, w, d, k, f, s, p) in &[
            (28, 28, 1, 32, 3, 1, 1),
            (9, 8, 1, 16, 3, 2, 1),
            (6, 7, 2, 24, 2, 1, 1),
            (5, 5, 3, 64, 2, 1, 0),
            (7, 6, 1, 8, 2, 1, 0),
        ] {
            let (oh, ow) = ((h + 2 * p - f) / s + 1, (w + 2 * p - f) / s + 1);
            let g = Geometry { h, w, d, k, f, s, p, oh, ow, dil: 1, groups: 1 };
            let rows = 2;
            let x: Vec<f32> = (0..rows * h * w * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let wt: Vec<f32> = (0..k * d * f * f).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let at = |r: usize, iy: isize, ix: isize, c: usize| {
                let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                if inside {
                    x[((r * h + iy as usize) * w + ix as usize) * d + c]
                } else {
                    0.0
                }
            };
            let mut want = Vec::new();
            for r in 0..rows {
                for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                    for j in 0..k {
                        let mut acc = b[j];
                        for (fy, fx, c) in
                            (0..f).flat_map(|fy| (0..f).flat_map(move |fx| (0..d).map(move |c| (fy, fx, c))))
                        {
                            let (iy, ix) = ((oy * s + fy) as isize - p as isize, (ox * s + fx) as isize - p as isize);
                            acc = at(r, iy, ix, c).mul_add(wt[((j * d + c) * f + fy) * f + fx], acc);
                        }
                        want.push(acc);
                    }
                }
            }
            for l in widths() {
                let mut y = vec![f32::NAN; rows * oh * ow * k];
                assert!(forward_with(l, &g, Act::Identity, rows, &x, &wt, &b, &mut y));
                let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{g:?} lanes {l}: not the chain of multiply-adds");
            }
        }
    }

    #[test]
    fn forward_and_backward_are_the_convolution_and_its_gradients_at_every_width() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let widths = widths();
        for &(h, w, d, k, f, s, p) in &[
            (5, 7, 1, 8, 3, 1, 1),
            (6, 6, 3, 16, 3, 2, 1),
            (4, 9, 8, 5, 5, 1, 2),
            (7, 5, 4, 24, 2, 3, 0),
            (3, 3, 9, 3, 3, 1, 2),
            (8, 8, 16, 32, 3, 1, 1),
            (9, 7, 10, 13, 3, 1, 0),
            (6, 5, 8, 40, 1, 1, 0),
            (7, 7, 12, 48, 3, 1, 1),
            // Panels of four vectors (AVX-512), alone and beside narrower ones, in `y`, `dW`
            // and (64 input channels: four-vector panels of flipped filters) `dx`.
            (5, 6, 64, 70, 3, 1, 1),
            (6, 6, 8, 64, 3, 2, 1),
            (4, 5, 9, 100, 3, 1, 1),
            // Every tap of a patch in one weight-gradient tile (f·f·d of 4, 8, 9 and 12 — the
            // 8-lane tiles take them a filter row at a time: the same bits), at stride 1 and 2.
            (6, 6, 2, 20, 2, 1, 0),
            (9, 9, 1, 32, 3, 2, 1),
            (5, 6, 3, 64, 2, 1, 1),
            (4, 7, 1, 16, 2, 1, 0),
            // Strided input gradients, part by part: 3 × 3 at stride 2 over a floored output
            // (bench/convnets/bn.nn's), padding 2 (parts whose windows start after their
            // first row), 2 × 2 and 3 × 3 at their own stride (parts of one tap), 4 × 4 at
            // stride 3, 5 × 5 at stride 2, a stride above the filter (not taken).
            (14, 14, 32, 64, 3, 2, 1),
            (9, 8, 8, 16, 3, 2, 2),
            (8, 7, 16, 8, 2, 2, 0),
            (9, 9, 8, 20, 3, 3, 0),
            (11, 10, 12, 16, 4, 3, 1),
            (10, 9, 8, 24, 5, 2, 2),
            (7, 7, 8, 16, 1, 2, 0),
            // Inputs narrower than the stride in a dimension: grids without positions.
            (1, 5, 8, 8, 3, 2, 1),
            (2, 3, 8, 16, 3, 3, 1),
        ] {
            let g = Geometry {
                h,
                w,
                d,
                k,
                f,
                s,
                p,
                oh: (h + 2 * p - f) / s + 1,
                ow: (w + 2 * p - f) / s + 1,
                dil: 1,
                groups: 1,
            };
            let rows = 3;
            let (in_len, out_len) = (h * w * d, g.oh * g.ow * k);
            let x: Vec<f32> = (0..rows * in_len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let wt: Vec<f32> = (0..k * d * f * f).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let c: Vec<f32> = (0..rows * out_len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (mut want_dw, mut want_db) = (vec![0.0; wt.len()], vec![0.0; k]);
            let mut want_y = Vec::new();
            let mut want_dx = Vec::new();
            for r in 0..rows {
                let (y, dw, db, dx) =
                    naive(&g, &x[r * in_len..(r + 1) * in_len], &wt, &b, &c[r * out_len..(r + 1) * out_len]);
                want_y.extend(y);
                want_dx.extend(dx.iter().map(|v| v + 0.5));
                want_dw.iter_mut().zip(&dw).for_each(|(a, v)| *a += v);
                want_db.iter_mut().zip(&db).for_each(|(a, v)| *a += v);
            }
            let mut results = Vec::new();
            for &l in &widths {
                let mut y = vec![f32::NAN; rows * out_len];
                assert!(forward_with(l, &g, Act::Identity, rows, &x, &wt, &b, &mut y));
                close(&y, &want_y, &format!("{g:?} lanes {l}: y"));
                // With a fused ReLU: the same values, negatives zeroed.
                let mut yr = vec![f32::NAN; rows * out_len];
                assert!(forward_with(l, &g, Act::Relu, rows, &x, &wt, &b, &mut yr));
                assert!(yr.iter().zip(&y).all(|(r, v)| *r == v.max(0.0)), "{g:?} lanes {l}: relu");
                let (mut dw, mut db) = (vec![f32::NAN; wt.len()], vec![f32::NAN; k]);
                let mut dx = vec![0.5; rows * in_len];
                let with_dx = input_grads(&g);
                if !with_dx {
                    assert!(!backward_with(
                        l,
                        &g,
                        rows,
                        &x,
                        &wt,
                        Dy::Given(&c),
                        &mut dw,
                        &mut db,
                        Some((&mut dx[..], true))
                    ));
                }
                assert!(backward_with(
                    l,
                    &g,
                    rows,
                    &x,
                    &wt,
                    Dy::Given(&c),
                    &mut dw,
                    &mut db,
                    with_dx.then_some((&mut dx[..], true))
                ));
                close(&dw, &want_dw, &format!("{g:?} lanes {l}: dW"));
                close(&db, &want_db, &format!("{g:?} lanes {l}: db"));
                if with_dx {
                    close(&dx, &want_dx, &format!("{g:?} lanes {l}: dx"));
                    // Overwriting instead of adding.
                    let mut dx2 = vec![f32::NAN; rows * in_len];
                    assert!(backward_with(
                        l,
                        &g,
                        rows,
                        &x,
                        &wt,
                        Dy::Given(&c),
                        &mut dw,
                        &mut db,
                        Some((&mut dx2[..], false))
                    ));
                    let want: Vec<f64> = want_dx.iter().map(|v| v - 0.5).collect();
                    close(&dx2, &want, &format!("{g:?} lanes {l}: dx overwritten"));
                }
                // dy made example by example: the same bits, each example made once, in order.
                let (mut dw3, mut db3) = (vec![f32::NAN; wt.len()], vec![f32::NAN; k]);
                let mut dx3 = vec![0.5; rows * in_len];
                let mut asked = Vec::new();
                let mut make = |r: usize, out: &mut [f32]| {
                    asked.push(r);
                    out.copy_from_slice(&c[r * out_len..(r + 1) * out_len]);
                };
                assert!(backward_with(
                    l,
                    &g,
                    rows,
                    &x,
                    &wt,
                    Dy::Made(&mut make),
                    &mut dw3,
                    &mut db3,
                    with_dx.then_some((&mut dx3[..], true))
                ));
                assert_eq!(asked, (0..rows).collect::<Vec<_>>(), "{g:?} lanes {l}: examples made");
                assert!(dw3 == dw && db3 == db, "{g:?} lanes {l}: made dy, dW and db");
                if with_dx {
                    assert!(dx3 == dx, "{g:?} lanes {l}: made dy, dx");
                }
                results.push((y, dw, dx));
            }
            // The same bits whatever the width: each output is the same chain of operations.
            if let [a, rest @ ..] = &results[..] {
                assert!(rest.iter().all(|b| a == b), "{g:?}: the widths differ");
            }
        }
    }
}
