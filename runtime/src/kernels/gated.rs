//! The gated recurrences — PyTorch's `nn.LSTM` and `nn.GRU`, one layer, one direction — over
//! sequences, and backpropagation through time, in the layout of [`super::rnn`]: a row of
//! the batch is one sequence, `steps × features` inputs, `steps × hidden` states, row-major by
//! step; a sequence shorter than `steps` (its length travels with the batch) has zero states
//! and zero gradients past its end, so that the reverse direction starts at its own last step
//! and padding changes no output and no gradient.
//!
//! PyTorch's parameters and gate orders: the LSTM's `W_ih [4h, f]`, `W_hh [4h, h]`, `b_ih`,
//! `b_hh` with the gates `i, f, g, o`:
//!
//! ```text
//! i = σ(·), f = σ(·), g = tanh(·), o = σ(·)      (each W_i· x + b_i· + W_h· h_{t−1} + b_h·)
//! c_t = f ⊙ c_{t−1} + i ⊙ g,  h_t = o ⊙ tanh(c_t)
//! ```
//!
//! and the GRU's `W_ih [3h, f]`, `W_hh [3h, h]` with `r, z, n`:
//!
//! ```text
//! r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
//! ```
//!
//! The input projections of every step are one product over `rows · steps` rows; the
//! recurrent products one `rows × gates·hidden × hidden` product per step over the batch; the
//! gate nonlinearities are the activation table's (the same bits as a `sigmoid` or `tanh`
//! layer), applied where the gates are written. The backward pass overwrites the kept gates
//! with their pre-activation gradients, so that the weight gradients are one product each
//! over every step, as in the Elman recurrence.

use super::rnn::{dims, length, Dims};
use super::vectorized;
use crate::act::sigmoid;
use crate::mem::Cx;
use crate::ops::Done;
use crate::plan::{ABuf, PBuf, Write};
use crate::Float;

/// `c[n × g] (+)= a[n × f] · wᵀ` (`w` `[g, f]`, PyTorch's layout; `β = 1`): rows of `a`
/// `rsa` apart, of `c` `rsc` apart.
#[allow(clippy::too_many_arguments)]
fn project<T: Float>(n: usize, f: usize, g: usize, a: &[T], rsa: usize, w: &[T], c: &mut [T], rsc: usize) {
    T::gemm(n, f, g, T::ONE, a, rsa as isize, 1, w, 1, f as isize, T::ONE, c, rsc as isize, 1);
}

/// `c[rows × g] (+)= h[rows × k] · wᵀ + b` for the recurrent product of one step (`w`
/// `[g, k]`; rows of `h` `rsh` apart, of `c` `rsc` apart; `add`: added to `c`, else written
/// over it): on the dense layers' register tiles, which read `w` where it lies, when they take
/// `k` (f32 with AVX2 or AVX-512, `k` a multiple of 16) — matrixmultiply would pack all of `w`
/// again at every step — the states gathered into `ws` (`rows × (k + g)`); else matrixmultiply.
fn recurrent<T: Float>(
    (rows, k, g): (usize, usize, usize),
    (h, rsh): (&[T], usize),
    w: &[T],
    (b, add): (&[T], bool),
    (c, rsc): (&mut [T], usize),
    ws: &mut [T],
) {
    if T::dense_tiles(k) && ws.len() >= rows * (k + g) {
        let (hx, y) = ws[..rows * (k + g)].split_at_mut(rows * k);
        for (r, dst) in hx.chunks_exact_mut(k).enumerate() {
            dst.copy_from_slice(&h[r * rsh..r * rsh + k]);
        }
        if T::dense_forward(rows, k, g, hx, w, b, crate::kernels::dense::Out::Matrix(y)) {
            for (r, src) in y.chunks_exact(g).enumerate() {
                let dst = &mut c[r * rsc..r * rsc + g];
                if add {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                } else {
                    dst.copy_from_slice(src);
                }
            }
            return;
        }
    }
    for r in 0..rows {
        let dst = &mut c[r * rsc..r * rsc + g];
        if add {
            dst.iter_mut().zip(&b[..g]).for_each(|(d, &v)| *d += v);
        } else {
            dst.copy_from_slice(&b[..g]);
        }
    }
    project(rows, k, g, h, rsh, w, c, rsc);
}

/// `dh[rows × k] += dz[rows × g] · w` (`w` `[g, k]`; rows of `dz` `rsz` apart, of `dh` `rsh`
/// apart): the recurrent gradient one step back, on the dense layers' tiles where they take
/// `k` (both gathered into `ws`, `rows × (g + k)`), else matrixmultiply.
fn recurrent_back<T: Float>(
    (rows, k, g): (usize, usize, usize),
    (dz, rsz): (&[T], usize),
    w: &[T],
    (dh, rsh): (&mut [T], usize),
    ws: &mut [T],
) {
    if T::dense_tiles(k) && ws.len() >= rows * (k + g) {
        let (dzx, dhx) = ws[..rows * (k + g)].split_at_mut(rows * g);
        for (r, dst) in dzx.chunks_exact_mut(g).enumerate() {
            dst.copy_from_slice(&dz[r * rsz..r * rsz + g]);
        }
        for (r, dst) in dhx.chunks_exact_mut(k).enumerate() {
            dst.copy_from_slice(&dh[r * rsh..r * rsh + k]);
        }
        if T::dense_backward(rows, k, g, &[], w, dzx, None, Some((&mut *dhx, true))) {
            for (r, src) in dhx.chunks_exact(k).enumerate() {
                dh[r * rsh..r * rsh + k].copy_from_slice(src);
            }
            return;
        }
    }
    T::gemm(rows, g, k, T::ONE, dz, rsz as isize, 1, w, k as isize, 1, T::ONE, dh, rsh as isize, 1);
}

/// The previous step's states of every row, as a product reads them: `(slice, row stride)`
/// — step `p` of `hs` (rows `steps·h` apart), or the carried ones (`h` apart), or none
/// before the first step.
fn previous<'a, T>(
    hs: &'a [T],
    p: Option<usize>,
    h0: Option<&'a [T]>,
    steps: usize,
    nh: usize,
) -> Option<(&'a [T], usize)> {
    match (p, h0) {
        (Some(p), _) => Some((&hs[p * nh..], steps * nh)),
        (None, Some(h)) => Some((h, nh)),
        (None, None) => None,
    }
}

/// Row `r`'s state before the step being computed: step `prev` of `states` (rows
/// `steps · n` apart), else the state carried in, else zeros (`n` of them).
#[inline(always)]
fn state_before<'a, T>(
    states: &'a [T],
    (prev, carried): (Option<usize>, Option<&'a [T]>),
    zeros: &'a [T],
    (r, steps, n): (usize, usize, usize),
) -> &'a [T] {
    match (prev, carried) {
        (Some(p), _) => &states[(r * steps + p) * n..][..n],
        (None, Some(c)) => &c[r * n..(r + 1) * n],
        (None, None) => &zeros[..n],
    }
}

/// A step's row of gates as its four blocks of `n` (the LSTM's `i, f, g, o`; the GRU's
/// `r, z, n` and the kept `W_hn h + b_hn`).
#[inline(always)]
fn blocks<T>(g: &mut [T], n: usize) -> (&mut [T], &mut [T], &mut [T], &mut [T]) {
    let (a, rest) = g.split_at_mut(n);
    let (b, rest) = rest.split_at_mut(n);
    let (c, d) = rest.split_at_mut(n);
    (a, b, c, &mut d[..n])
}

/// Rows `write..write + n` (mutable) and `read..read + n` of `v`, which do not overlap.
fn two_rows<T>(v: &mut [T], write: usize, read: usize, n: usize) -> (&mut [T], &[T]) {
    if read < write {
        let (a, b) = v.split_at_mut(write);
        (&mut b[..n], &a[read..read + n])
    } else {
        let (a, b) = v.split_at_mut(read);
        (&mut a[write..write + n], &b[..n])
    }
}

/// One value of a GRU step's backward pass: its activated gates `r, z, n` and kept
/// `W_hn h + b_hn` replaced by their gradients, from `h_{t−1}` and `dh_t`; returns `z`.
#[inline(always)]
fn gru_cell_backward<T: Float>((rv, zv, nv, hnv): (&mut T, &mut T, &mut T, &mut T), hp: T, dh: T) -> T {
    let (rg, z, n, hn) = (*rv, *zv, *nv, *hnv);
    let dan = dh * (T::ONE - z) * (T::ONE - n * n);
    *rv = dan * hn * rg * (T::ONE - rg);
    *zv = dh * (hp - n) * z * (T::ONE - z);
    *nv = dan;
    *hnv = dan * rg;
    z
}

/// The LSTM over every row and step: `gates` (`rows × steps × 4h`: the activated `i, f, g, o`
/// of every step), `cs` (the cell states) and `hs` (the hidden states, the layer's output).
/// `h0`, `c0` (`rows × h`): the states carried in from the previous window (truncated
/// backpropagation through time), zero when absent.
#[allow(clippy::too_many_arguments)]
pub fn lstm_forward<T: Float>(
    d: Dims,
    lengths: &[usize],
    x: &[T],
    (wih, whh, bih, bhh): (&[T], &[T], &[T], &[T]),
    gates: &mut [T],
    cs: &mut [T],
    hs: &mut [T],
    ws: &mut [T],
    (h0, c0): (Option<&[T]>, Option<&[T]>),
) {
    let Dims { rows, steps, features: nf, hidden: nh, .. } = d;
    let (n, g4) = (rows * steps, 4 * nh);
    for row in gates[..n * g4].chunks_exact_mut(g4) {
        for ((o, &a), &b) in row.iter_mut().zip(bih).zip(bhh) {
            *o = a + b;
        }
    }
    project(n, nf, g4, x, nf, wih, gates, g4);
    // Both biases are in the gates already: the recurrent product adds nothing more.
    let zeros = vec![T::ZERO; g4];
    for i in 0..steps {
        let (t, prev) = d.visit(i);
        if let Some((h, rs)) = previous(hs, prev, h0, steps, nh) {
            recurrent((rows, nh, g4), (h, rs), whh, (&zeros, true), (&mut gates[t * g4..], steps * g4), ws);
        }
        vectorized(
            #[inline(always)]
            || {
                for r in 0..rows {
                    let (at, gat) = ((r * steps + t) * nh, (r * steps + t) * g4);
                    if t >= length(lengths, r, steps) {
                        gates[gat..gat + g4].fill(T::ZERO);
                        cs[at..at + nh].fill(T::ZERO);
                        hs[at..at + nh].fill(T::ZERO);
                        continue;
                    }
                    // c_{t−1}: zero before the first step without carried states.
                    let cp = state_before(cs, (prev, c0), &zeros, (r, steps, nh));
                    let (gi, gf, gg, go) = blocks(&mut gates[gat..gat + g4], nh);
                    let hrow = &mut hs[at..at + nh];
                    // The gates activated in place, and c_t = f ⊙ c_{t−1} + i ⊙ g (into h's row).
                    let gates_and_c = gi.iter_mut().zip(gf.iter_mut()).zip(gg.iter_mut()).zip(go.iter_mut());
                    for ((((i, f), g), o), (h, &c)) in gates_and_c.zip(hrow.iter_mut().zip(cp)) {
                        let (iv, fv, gv) = (sigmoid(*i), sigmoid(*f), (*g).tanh());
                        (*i, *f, *g, *o) = (iv, fv, gv, sigmoid(*o));
                        *h = fv * c + iv * gv;
                    }
                    cs[at..at + nh].copy_from_slice(hrow);
                    // h_t = o ⊙ tanh(c_t).
                    for (h, &o) in hrow.iter_mut().zip(go.iter()) {
                        *h = o * h.tanh();
                    }
                }
            },
        );
    }
}

/// Forward was [`lstm_forward`], so now, from `dhs` (the loss's gradient with respect to
/// every hidden state; the recurrent gradients are added into it as the walk goes): through
/// time from the last step, each step's gates are replaced by their pre-activation gradients
/// `dg`; then `dW_ih = Σ dgᵀ x`, `dW_hh = Σ_t dg_tᵀ h_{t−1}`, `db_ih = db_hh = Σ dg`. `dc`
/// holds `rows × h` values (the cell state's gradient from step to step). The carried states
/// get no gradient (the truncation).
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward_params<T: Float>(
    d: Dims,
    lengths: &[usize],
    (x, whh): (&[T], &[T]),
    gates: &mut [T],
    (cs, hs): (&[T], &[T]),
    dhs: &mut [T],
    dc: &mut [T],
    (dwih, dwhh, dbih, dbhh): (&mut [T], &mut [T], &mut [T], &mut [T]),
    (h0, c0): (Option<&[T]>, Option<&[T]>),
) {
    let Dims { rows, steps, features: nf, hidden: nh, .. } = d;
    let (n, g4) = (rows * steps, 4 * nh);
    let (dc, wsg) = dc.split_at_mut(rows * nh);
    dc.fill(T::ZERO);
    let zeros = vec![T::ZERO; nh];
    for i in (0..steps).rev() {
        let (t, prev) = d.visit(i);
        vectorized(
            #[inline(always)]
            || {
                for r in 0..rows {
                    let (at, gat) = ((r * steps + t) * nh, (r * steps + t) * g4);
                    let dcr = &mut dc[r * nh..(r + 1) * nh];
                    if t >= length(lengths, r, steps) {
                        gates[gat..gat + g4].fill(T::ZERO);
                        dcr.fill(T::ZERO);
                        continue;
                    }
                    let cp = state_before(cs, (prev, c0), &zeros, (r, steps, nh));
                    let (gi, gf, gg, go) = blocks(&mut gates[gat..gat + g4], nh);
                    let gs = gi.iter_mut().zip(gf.iter_mut()).zip(gg.iter_mut()).zip(go.iter_mut());
                    let states = cs[at..at + nh].iter().zip(cp).zip(&dhs[at..at + nh]).zip(dcr.iter_mut());
                    for ((((i, f), g), o), (((&c, &cp), &dh), dcv)) in gs.zip(states) {
                        let (ig, fg, gg, og) = (*i, *f, *g, *o);
                        let tc = c.tanh();
                        let dcj = *dcv + dh * og * (T::ONE - tc * tc);
                        *i = dcj * gg * ig * (T::ONE - ig);
                        *f = dcj * cp * fg * (T::ONE - fg);
                        *g = dcj * ig * (T::ONE - gg * gg);
                        *o = dh * tc * og * (T::ONE - og);
                        *dcv = dcj * fg;
                    }
                }
            },
        );
        if let Some(p) = prev {
            // dh_{t−1} += dg_t · W_hh.
            let dz = (&gates[t * g4..], steps * g4);
            recurrent_back((rows, nh, g4), dz, whh, (&mut dhs[p * nh..], steps * nh), wsg);
        }
    }
    T::gemm(g4, n, nf, T::ONE, gates, 1, g4 as isize, x, nf as isize, 1, T::ZERO, dwih, nf as isize, 1);
    recurrent_weight_grads(d, (gates, g4, g4), hs, h0, dwhh);
    bias_grads(gates, n, (g4, g4), dbih);
    dbhh[..g4].copy_from_slice(&dbih[..g4]);
}

/// `dW_hh[w × h] = Σ_t dz_tᵀ h_{t−1}` over every row, for the `w` columns of `dz` (rows
/// `stride` apart) from its start, the states `h` wide: row `i` of the states neighbours rows
/// `i ± 1` in memory, so this is one product over all rows minus the pairs that cross from
/// one sequence into the next, plus the carried states' share at the first step.
fn recurrent_weight_grads<T: Float>(
    d: Dims,
    (dz, w, stride): (&[T], usize, usize),
    hs: &[T],
    h0: Option<&[T]>,
    dw: &mut [T],
) {
    let Dims { rows, steps, hidden: nh, reverse, .. } = d;
    let n = rows * steps;
    let (rsz, rsh) = (stride as isize, nh as isize);
    dw[..w * nh].fill(T::ZERO);
    if steps > 1 && n > 1 {
        let (dz_from, h_from) = if reverse { (0, nh) } else { (stride, 0) };
        T::gemm(w, n - 1, nh, T::ONE, &dz[dz_from..], 1, rsz, &hs[h_from..], rsh, 1, T::ZERO, dw, rsh, 1);
        if rows > 1 {
            // Forward: dz[r, 0] with h[r − 1, last], r ≥ 1; reverse: dz[r, last] with h[r + 1, 0].
            let (dz_at, h_at) =
                if reverse { ((steps - 1) * stride, steps * nh) } else { (steps * stride, steps * nh - nh) };
            let (sz, sh) = ((steps * stride) as isize, (steps * nh) as isize);
            T::gemm(w, rows - 1, nh, -T::ONE, &dz[dz_at..], 1, sz, &hs[h_at..], sh, 1, T::ONE, dw, rsh, 1);
        }
    }
    if let Some(h) = h0 {
        let sz = (steps * stride) as isize;
        T::gemm(w, rows, nh, T::ONE, dz, 1, sz, h, rsh, 1, T::ONE, dw, rsh, 1);
    }
}

/// `db = Σ dz` over the `n` rows of `dz` (`w` columns from its start, rows `stride` apart).
fn bias_grads<T: Float>(dz: &[T], n: usize, (w, stride): (usize, usize), db: &mut [T]) {
    db[..w].fill(T::ZERO);
    for row in dz.chunks(stride).take(n) {
        for (g, &v) in db[..w].iter_mut().zip(&row[..w]) {
            *g += v;
        }
    }
}

/// …and `dx (+)= dg W_ih`, every step in one product: `dg` the gates' gradients, the first
/// `width` columns of rows `stride` apart (the LSTM's `4h` of `4h`, the GRU's `3h` of `4h`).
pub fn backward_input<T: Float>(
    d: Dims,
    (width, stride): (usize, usize),
    wih: &[T],
    dg: &[T],
    dx: &mut [T],
    accumulate: bool,
) {
    let Dims { rows, steps, features: nf, .. } = d;
    let beta = if accumulate { T::ONE } else { T::ZERO };
    T::gemm(rows * steps, width, nf, T::ONE, dg, stride as isize, 1, wih, nf as isize, 1, beta, dx, nf as isize, 1);
}

/// The GRU over every row and step: `gates` (`rows × steps × 4h`: the activated `r, z, n`
/// of every step, then `W_hn h_{t−1} + b_hn`, which `n` read through `r`) and `hs` (the
/// hidden states, the layer's output). `h0` (`rows × h`): the state carried in, zero when
/// absent. `ws` holds `rows × 3h` values (one step's recurrent projections).
#[allow(clippy::too_many_arguments)]
pub fn gru_forward<T: Float>(
    d: Dims,
    lengths: &[usize],
    x: &[T],
    (wih, whh, bih, bhh): (&[T], &[T], &[T], &[T]),
    gates: &mut [T],
    hs: &mut [T],
    ws: &mut [T],
    h0: Option<&[T]>,
) {
    let Dims { rows, steps, features: nf, hidden: nh, .. } = d;
    let (n, g3, g4) = (rows * steps, 3 * nh, 4 * nh);
    for row in gates[..n * g4].chunks_exact_mut(g4) {
        row[..g3].copy_from_slice(&bih[..g3]);
    }
    project(n, nf, g3, x, nf, wih, gates, g4);
    let (gh, wsr) = ws.split_at_mut(rows * g3);
    let zeros = vec![T::ZERO; nh];
    for i in 0..steps {
        let (t, prev) = d.visit(i);
        match previous(hs, prev, h0, steps, nh) {
            Some((h, rs)) => recurrent((rows, nh, g3), (h, rs), whh, (bhh, false), (&mut *gh, g3), wsr),
            None => gh.chunks_exact_mut(g3).for_each(|row| row.copy_from_slice(&bhh[..g3])),
        }
        vectorized(
            #[inline(always)]
            || {
                for r in 0..rows {
                    let (at, gat) = ((r * steps + t) * nh, (r * steps + t) * g4);
                    if t >= length(lengths, r, steps) {
                        gates[gat..gat + g4].fill(T::ZERO);
                        hs[at..at + nh].fill(T::ZERO);
                        continue;
                    }
                    let (hrow, hp) = match (prev, h0) {
                        (Some(p), _) => two_rows(hs, at, (r * steps + p) * nh, nh),
                        (None, Some(h)) => (&mut hs[at..at + nh], &h[r * nh..(r + 1) * nh]),
                        (None, None) => (&mut hs[at..at + nh], &zeros[..nh]),
                    };
                    let (ghr, ghz, ghn) = (&gh[r * g3..][..nh], &gh[r * g3 + nh..][..nh], &gh[r * g3 + 2 * nh..][..nh]);
                    let (gr, gz, gn, ghn_kept) = blocks(&mut gates[gat..gat + g4], nh);
                    let gs = gr.iter_mut().zip(gz.iter_mut()).zip(gn.iter_mut()).zip(ghn_kept.iter_mut());
                    let ins = ghr.iter().zip(ghz).zip(ghn).zip(hrow.iter_mut().zip(hp));
                    for ((((rv, zv), nv), hn_kept), (((&hr, &hz), &hn), (h, &hp))) in gs.zip(ins) {
                        let rg = sigmoid(*rv + hr);
                        let z = sigmoid(*zv + hz);
                        let n = (*nv + rg * hn).tanh();
                        (*rv, *zv, *nv, *hn_kept) = (rg, z, n, hn);
                        *h = (T::ONE - z) * n + z * hp;
                    }
                }
            },
        );
    }
}

/// Forward was [`gru_forward`], so now, from `dhs` (the loss's gradient with respect to every
/// hidden state; the recurrent gradients are added into it as the walk goes): through time
/// from the last step, each step's `gates` become the gradients of the input projections
/// (`r, z, n`) and, in the fourth block, that of `W_hn h + b_hn`; then `dW_ih = Σ dgᵀ x`,
/// `db_ih = Σ dg`, and `dW_hh`, `db_hh` from the recurrent projections' gradients (`r`, `z`
/// as the input's; `n`'s from the fourth block). `ws` holds `rows × 3h` values.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward_params<T: Float>(
    d: Dims,
    lengths: &[usize],
    (x, whh): (&[T], &[T]),
    gates: &mut [T],
    hs: &[T],
    dhs: &mut [T],
    ws: &mut [T],
    (dwih, dwhh, dbih, dbhh): (&mut [T], &mut [T], &mut [T], &mut [T]),
    h0: Option<&[T]>,
) {
    let Dims { rows, steps, features: nf, hidden: nh, .. } = d;
    let (n, g3, g4) = (rows * steps, 3 * nh, 4 * nh);
    let (wsg, wsr) = ws.split_at_mut(rows * g3);
    let zeros = vec![T::ZERO; nh];
    for i in (0..steps).rev() {
        let (t, prev) = d.visit(i);
        vectorized(
            #[inline(always)]
            || {
                for r in 0..rows {
                    let (at, gat) = ((r * steps + t) * nh, (r * steps + t) * g4);
                    if t >= length(lengths, r, steps) {
                        gates[gat..gat + g4].fill(T::ZERO);
                        continue;
                    }
                    let hp = state_before(hs, (prev, h0), &zeros, (r, steps, nh));
                    let (gr, gz, gn, ghn) = blocks(&mut gates[gat..gat + g4], nh);
                    let gs = gr.iter_mut().zip(gz.iter_mut()).zip(gn.iter_mut()).zip(ghn.iter_mut());
                    match prev {
                        // The direct path too: h_t = … + z ⊙ h_{t−1}.
                        Some(p) => {
                            let (dprev, dh) = two_rows(dhs, (r * steps + p) * nh, at, nh);
                            for ((((rv, zv), nv), hnv), ((&hp, &dh), dp)) in gs.zip(hp.iter().zip(dh).zip(dprev)) {
                                let z = gru_cell_backward((rv, zv, nv, hnv), hp, dh);
                                *dp += dh * z;
                            }
                        }
                        None => {
                            for ((((rv, zv), nv), hnv), (&hp, &dh)) in gs.zip(hp.iter().zip(&dhs[at..at + nh])) {
                                gru_cell_backward((rv, zv, nv, hnv), hp, dh);
                            }
                        }
                    }
                }
            },
        );
        if let Some(p) = prev {
            // dh_{t−1} += [dr, dz, dn ⊙ r]_t · W_hh.
            for (row, dst) in wsg.chunks_exact_mut(g3).enumerate() {
                let gat = (row * steps + t) * g4;
                dst[..2 * nh].copy_from_slice(&gates[gat..gat + 2 * nh]);
                dst[2 * nh..].copy_from_slice(&gates[gat + g3..gat + g4]);
            }
            recurrent_back((rows, nh, g3), (&*wsg, g3), whh, (&mut dhs[p * nh..], steps * nh), wsr);
        }
    }
    T::gemm(g3, n, nf, T::ONE, gates, 1, g4 as isize, x, nf as isize, 1, T::ZERO, dwih, nf as isize, 1);
    bias_grads(gates, n, (g3, g4), dbih);
    // The recurrent projections' gradients: r and z as the input's, n's in the fourth block.
    let (dw_rz, dw_n) = dwhh[..g3 * nh].split_at_mut(2 * nh * nh);
    recurrent_weight_grads(d, (gates, 2 * nh, g4), hs, h0, dw_rz);
    recurrent_weight_grads(d, (&gates[g3..], nh, g4), hs, h0, dw_n);
    dbhh[..2 * nh].copy_from_slice(&dbih[..2 * nh]);
    bias_grads(&gates[g3..], n, (nh, g4), &mut dbhh[2 * nh..g3]);
}

/// The step `Lstm`: every state of every sequence into `hs`, the gates and cell states kept
/// (`gates`, `cs`) for the backward step; `h0`, `c0` the carried states.
#[allow(clippy::too_many_arguments)]
pub fn lstm_step<T: Float>(
    cx: &mut Cx<'_, T>,
    steps: usize,
    reverse: bool,
    x: ABuf,
    wih: PBuf,
    whh: PBuf,
    bih: PBuf,
    bhh: PBuf,
    gates: ABuf,
    cs: ABuf,
    hs: ABuf,
    h0: Option<ABuf>,
    c0: Option<ABuf>,
) -> Done {
    let rows = cx.rows;
    let d = dims(rows, steps, reverse, x, hs);
    let p = cx.params;
    let (out, g, c, r) = cx.mem.split3(hs, gates, cs, rows, true);
    let params = (&p[wih.range()], &p[whh.range()], &p[bih.range()], &p[bhh.range()]);
    let carried = (h0.map(|h| r.get(h, rows)), c0.map(|c| r.get(c, rows)));
    // The cell states, then (the buffer's tail) the recurrent product's workspace.
    let (c, ws) = c.split_at_mut(rows * steps * d.hidden);
    lstm_forward(d, cx.lengths, r.get(x, rows), params, g, c, out, ws, carried);
    Ok(())
}

/// The step `LstmBackward`: from `dhs` (every state's gradient; added into as the walk
/// goes), the gates' gradients over the kept gates, the parameters' gradients, and (unless the
/// input is the model's) `dx`. `ws`: `max_batch × h`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    steps: usize,
    reverse: bool,
    x: ABuf,
    wih: PBuf,
    whh: PBuf,
    gates: ABuf,
    cs: ABuf,
    hs: ABuf,
    dhs: ABuf,
    ws: ABuf,
    dwih: PBuf,
    dwhh: PBuf,
    dbih: PBuf,
    dbhh: PBuf,
    dx: Option<(ABuf, Write)>,
    h0: Option<ABuf>,
    c0: Option<ABuf>,
) -> Done {
    let rows = cx.rows;
    let d = dims(rows, steps, reverse, x, hs);
    let p = cx.params;
    let grads = super::rnn::four(cx.grads, dwih, dwhh, dbih, dbhh);
    let (dh, g, work, r) = cx.mem.split3(dhs, gates, ws, rows, false);
    let carried = (h0.map(|h| r.get(h, rows)), c0.map(|c| r.get(c, rows)));
    let (cs, hs) = (r.get(cs, rows), r.get(hs, rows));
    lstm_backward_params(d, cx.lengths, (r.get(x, rows), &p[whh.range()]), g, (cs, hs), dh, work, grads, carried);
    if let Some((dx, write)) = dx {
        let (out, r) = cx.mem.split(dx, rows);
        let g4 = 4 * d.hidden;
        backward_input(d, (g4, g4), &p[wih.range()], r.get(gates, rows), out, write == Write::Accumulate);
    }
    Ok(())
}

/// The step `Gru`: every state of every sequence into `hs`, the gates kept (`gates`) for the
/// backward step; `h0` the carried state. `ws`: `max_batch × 3h`.
#[allow(clippy::too_many_arguments)]
pub fn gru_step<T: Float>(
    cx: &mut Cx<'_, T>,
    steps: usize,
    reverse: bool,
    x: ABuf,
    wih: PBuf,
    whh: PBuf,
    bih: PBuf,
    bhh: PBuf,
    gates: ABuf,
    hs: ABuf,
    ws: ABuf,
    h0: Option<ABuf>,
) -> Done {
    let rows = cx.rows;
    let d = dims(rows, steps, reverse, x, hs);
    let p = cx.params;
    let (out, g, work, r) = cx.mem.split3(hs, gates, ws, rows, false);
    let params = (&p[wih.range()], &p[whh.range()], &p[bih.range()], &p[bhh.range()]);
    gru_forward(d, cx.lengths, r.get(x, rows), params, g, out, work, h0.map(|h| r.get(h, rows)));
    Ok(())
}

/// The step `GruBackward`: as [`lstm_backward_step`] for the GRU. `ws`: `max_batch × 3h`.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    steps: usize,
    reverse: bool,
    x: ABuf,
    wih: PBuf,
    whh: PBuf,
    gates: ABuf,
    hs: ABuf,
    dhs: ABuf,
    ws: ABuf,
    dwih: PBuf,
    dwhh: PBuf,
    dbih: PBuf,
    dbhh: PBuf,
    dx: Option<(ABuf, Write)>,
    h0: Option<ABuf>,
) -> Done {
    let rows = cx.rows;
    let d = dims(rows, steps, reverse, x, hs);
    let p = cx.params;
    let grads = super::rnn::four(cx.grads, dwih, dwhh, dbih, dbhh);
    let (dh, g, work, r) = cx.mem.split3(dhs, gates, ws, rows, false);
    let (xs, hs, h0) = (r.get(x, rows), r.get(hs, rows), h0.map(|h| r.get(h, rows)));
    gru_backward_params(d, cx.lengths, (xs, &p[whh.range()]), g, hs, dh, work, grads, h0);
    if let Some((dx, write)) = dx {
        let (out, r) = cx.mem.split(dx, rows);
        let (g3, g4) = (3 * d.hidden, 4 * d.hidden);
        backward_input(d, (g3, g4), &p[wih.range()], r.get(gates, rows), out, write == Write::Accumulate);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// A gated layer's parameters and inputs for a test, and the loss `Σ c ⊙ h` over every
    /// state (`c` fixed weights).
    #[derive(Clone)]
    struct Case {
        d: Dims,
        lengths: Vec<usize>,
        x: Vec<f64>,
        w: [Vec<f64>; 4],
        c: Vec<f64>,
        h0: Option<Vec<f64>>,
        c0: Option<Vec<f64>>,
    }

    fn case(gates: usize, reverse: bool, lengths: &[usize], carried: bool, seed: u64) -> Case {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (rows, steps, nf, nh) = (lengths.len(), 4, 3, 5);
        let d = Dims { rows, steps, features: nf, hidden: nh, reverse };
        let mut v = |n: usize| (0..n).map(|_| rng.random_range(-0.8..0.8)).collect::<Vec<f64>>();
        let gh = gates * nh;
        Case {
            d,
            lengths: lengths.to_vec(),
            x: v(rows * steps * nf),
            w: [v(gh * nf), v(gh * nh), v(gh), v(gh)],
            c: v(rows * steps * nh),
            h0: carried.then(|| v(rows * nh)),
            c0: carried.then(|| v(rows * nh)),
        }
    }

    /// The states of the LSTM (`gates` 4) or GRU (3) on `k`, and the loss.
    fn run(k: &Case, gates: usize) -> (Vec<f64>, f64) {
        let Dims { rows, steps, hidden: nh, .. } = k.d;
        let n = rows * steps;
        let (mut g, mut hs, mut cs) = (vec![0.0; n * 4 * nh], vec![0.0; n * nh], vec![0.0; n * nh]);
        let mut ws = vec![0.0; rows * 3 * nh];
        let w = (&k.w[0][..], &k.w[1][..], &k.w[2][..], &k.w[3][..]);
        if gates == 4 {
            lstm_forward(
                k.d,
                &k.lengths,
                &k.x,
                w,
                &mut g,
                &mut cs,
                &mut hs,
                &mut ws,
                (k.h0.as_deref(), k.c0.as_deref()),
            );
        } else {
            gru_forward(k.d, &k.lengths, &k.x, w, &mut g, &mut hs, &mut ws, k.h0.as_deref());
        }
        let loss = hs.iter().zip(&k.c).map(|(h, c)| h * c).sum();
        (hs, loss)
    }

    /// The analytic gradients: `[dW_ih, dW_hh, db_ih, db_hh, dx]`.
    fn grads(k: &Case, gates: usize) -> [Vec<f64>; 5] {
        let Dims { rows, steps, features: nf, hidden: nh, .. } = k.d;
        let (n, gh) = (rows * steps, gates * nh);
        let (mut g, mut hs, mut cs) = (vec![0.0; n * 4 * nh], vec![0.0; n * nh], vec![0.0; n * nh]);
        let mut ws = vec![0.0; rows * 3 * nh];
        let w = (&k.w[0][..], &k.w[1][..], &k.w[2][..], &k.w[3][..]);
        let mut out = [vec![0.0; gh * nf], vec![0.0; gh * nh], vec![0.0; gh], vec![0.0; gh], vec![0.0; n * nf]];
        let [dwih, dwhh, dbih, dbhh, dx] = &mut out;
        let mut dhs = k.c.clone();
        let p = (&mut dwih[..], &mut dwhh[..], &mut dbih[..], &mut dbhh[..]);
        if gates == 4 {
            let carried = (k.h0.as_deref(), k.c0.as_deref());
            lstm_forward(k.d, &k.lengths, &k.x, w, &mut g, &mut cs, &mut hs, &mut ws, carried);
            let xw = (&k.x[..], &k.w[1][..]);
            lstm_backward_params(k.d, &k.lengths, xw, &mut g, (&cs, &hs), &mut dhs, &mut ws, p, carried);
        } else {
            gru_forward(k.d, &k.lengths, &k.x, w, &mut g, &mut hs, &mut ws, k.h0.as_deref());
            let xw = (&k.x[..], &k.w[1][..]);
            gru_backward_params(k.d, &k.lengths, xw, &mut g, &hs, &mut dhs, &mut ws, p, k.h0.as_deref());
        }
        backward_input(k.d, (gh, 4 * nh), &k.w[0], &g, dx, false);
        out
    }

    /// Central differences of the loss in every parameter and input.
    fn numeric(k: &Case, gates: usize) -> [Vec<f64>; 5] {
        let eps = 1e-6;
        let mut out: [Vec<f64>; 5] = Default::default();
        for (slot, o) in out.iter_mut().enumerate() {
            let len = if slot < 4 { k.w[slot].len() } else { k.x.len() };
            for i in 0..len {
                let at = |delta: f64| {
                    let mut m = k.clone();
                    if slot < 4 {
                        m.w[slot][i] += delta;
                    } else {
                        m.x[i] += delta;
                    }
                    run(&m, gates).1
                };
                o.push((at(eps) - at(-eps)) / (2.0 * eps));
            }
        }
        out
    }

    #[test]
    fn lstm_and_gru_gradients_are_the_finite_differences() {
        for gates in [4, 3] {
            for reverse in [false, true] {
                for (lengths, carried) in [(&[4, 4][..], false), (&[4, 2, 3, 1][..], false), (&[4, 3][..], true)] {
                    // Carried states only go forward (a bidirectional layer cannot carry).
                    if carried && reverse {
                        continue;
                    }
                    let k = case(gates, reverse, lengths, carried, 5 + gates as u64);
                    let (got, want) = (grads(&k, gates), numeric(&k, gates));
                    for (name, (g, w)) in ["dW_ih", "dW_hh", "db_ih", "db_hh", "dx"].iter().zip(got.iter().zip(&want)) {
                        let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                        assert!(
                            worst < 1e-7,
                            "gates {gates} reverse {reverse} lengths {lengths:?} carried {carried}: {name} off by {worst:e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn padding_changes_nothing_and_its_states_are_zero() {
        for gates in [4, 3] {
            for reverse in [false, true] {
                let k = case(gates, reverse, &[4, 2, 3], false, 9);
                let (hs, _) = run(&k, gates);
                let nh = k.d.hidden;
                // Past each sequence's end: zero states.
                for (r, &len) in k.lengths.iter().enumerate() {
                    for t in len..k.d.steps {
                        assert!(hs[(r * k.d.steps + t) * nh..][..nh].iter().all(|&v| v == 0.0));
                    }
                }
                // Other values in the padding: the same states, bit for bit.
                let mut m = k.clone();
                let nf = k.d.features;
                for (r, &len) in k.lengths.iter().enumerate() {
                    for t in len..k.d.steps {
                        m.x[(r * k.d.steps + t) * nf..][..nf].iter_mut().for_each(|v| *v = 7.0);
                    }
                }
                assert_eq!(run(&m, gates).0, hs, "gates {gates} reverse {reverse}");
                // The reverse direction starts at each sequence's own end: a sequence of 2
                // gives what the same two steps give alone.
                let alone = Case {
                    d: Dims { rows: 1, ..k.d },
                    lengths: vec![2],
                    x: k.x[k.d.steps * nf..2 * k.d.steps * nf].to_vec(),
                    c: k.c[k.d.steps * nh..2 * k.d.steps * nh].to_vec(),
                    w: k.w.clone(),
                    h0: None,
                    c0: None,
                };
                assert_eq!(run(&alone, gates).0[..], hs[k.d.steps * nh..2 * k.d.steps * nh]);
            }
        }
    }

    /// One LSTM step by hand for one row, one unit: the formulas of PyTorch's documentation.
    #[test]
    fn one_lstm_and_one_gru_step_by_hand() {
        let d = Dims { rows: 1, steps: 1, features: 1, hidden: 1, reverse: false };
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (x, h0, c0) = (0.5, 0.2, -0.3);
        // LSTM: W_ih = [i f g o] = [0.1, 0.2, 0.3, 0.4], W_hh = [0.5, 0.6, 0.7, 0.8], b_ih = 0.01·k, b_hh = 0.
        let (wih, whh, bih, bhh) = ([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.01, 0.02, 0.03, 0.04], [0.0; 4]);
        let pre = |k: usize| wih[k] * x + bih[k] + whh[k] * h0;
        let (i, f, g, o) = (s(pre(0)), s(pre(1)), pre(2).tanh(), s(pre(3)));
        let c = f * c0 + i * g;
        let want = o * c.tanh();
        let (mut gs, mut cs, mut hs, mut ws) = (vec![0.0; 4], vec![0.0; 1], vec![0.0; 1], vec![0.0; 3]);
        lstm_forward(
            d,
            &[],
            &[x],
            (&wih, &whh, &bih, &bhh),
            &mut gs,
            &mut cs,
            &mut hs,
            &mut ws,
            (Some(&[h0]), Some(&[c0])),
        );
        assert!((hs[0] - want).abs() < 1e-15 && (cs[0] - c).abs() < 1e-15, "{} vs {want}", hs[0]);
        // GRU: W_ih = [r z n] = [0.1, 0.2, 0.3], W_hh = [0.4, 0.5, 0.6], b_ih = [0.01, 0.02, 0.03],
        // b_hh = [0.04, 0.05, 0.06].
        let (wih, whh, bih, bhh) = ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.01, 0.02, 0.03], [0.04, 0.05, 0.06]);
        let r = s(wih[0] * x + bih[0] + whh[0] * h0 + bhh[0]);
        let z = s(wih[1] * x + bih[1] + whh[1] * h0 + bhh[1]);
        let n = (wih[2] * x + bih[2] + r * (whh[2] * h0 + bhh[2])).tanh();
        let want = (1.0 - z) * n + z * h0;
        let (mut gs, mut hs) = (vec![0.0; 4], vec![0.0; 1]);
        gru_forward(d, &[], &[x], (&wih, &whh, &bih, &bhh), &mut gs, &mut hs, &mut ws, Some(&[h0]));
        assert!((hs[0] - want).abs() < 1e-15, "{} vs {want}", hs[0]);
    }
}
