//! The Elman recurrence `h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)` (PyTorch's `nn.RNN`,
//! one layer, one direction, `h_0 = 0`) over sequences, and backpropagation through time. A
//! row of the batch is one sequence: `steps × features` inputs, `steps × hidden` states,
//! row-major by step. A sequence shorter than `steps` (its length travels with the batch)
//! has zero states past its end, so the reverse direction starts at its own last step, and
//! zero gradients there, so padding changes no output and no gradient.
//!
//! The input projection of every step is one product over `rows · steps` rows; the recurrent
//! products are one `rows × hidden × hidden` product per step, over the batch; the activation
//! is applied where the state is written. The workspace `ws` (`max_batch × hidden`, planned)
//! holds one step's states or gradients contiguously: nothing is allocated per call.

use super::elementwise::{activation_backward_in_place, activation_in_place};
use crate::mem::Cx;
use crate::ops::Done;
use crate::plan::{ABuf, Act, PBuf, Write};
use crate::Float;

/// The sizes of one recurrence over a batch.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Sequences in the batch.
    pub rows: usize,
    /// Steps of each (the longest).
    pub steps: usize,
    /// Values per step of the input.
    pub features: usize,
    /// State size.
    pub hidden: usize,
    /// Walk the steps from the last to the first (the reverse half of a bidirectional
    /// layer); the states are stored in time order either way.
    pub reverse: bool,
}

/// The length of row `r`'s sequence: `lengths[r]`, or every step when none are given.
pub(super) fn length(lengths: &[usize], r: usize, steps: usize) -> usize {
    lengths.get(r).map_or(steps, |&l| l.min(steps))
}

impl Dims {
    /// The `i`-th step the recurrence visits, and the one it visited before (None first).
    pub(super) fn visit(&self, i: usize) -> (usize, Option<usize>) {
        if self.reverse {
            let t = self.steps - 1 - i;
            (t, (i > 0).then_some(t + 1))
        } else {
            (i, i.checked_sub(1))
        }
    }
}

/// Step `t` of every row of `src` (`steps × nh` per row) into `ws`, contiguous: a product
/// cannot read one step of a buffer while writing another of the same buffer.
fn gather_step<T: Float>(src: &[T], ws: &mut [T], rows: usize, steps: usize, nh: usize, t: usize) {
    for (r, dst) in ws[..rows * nh].chunks_exact_mut(nh).enumerate() {
        let from = (r * steps + t) * nh;
        dst.copy_from_slice(&src[from..from + nh]);
    }
}

/// `hs[r, t] = f(W_ih x[r, t] + b_ih + W_hh hs[r, t-1] + b_hh)` for every row and step.
/// `wih` is `[hidden, features]`, `whh` `[hidden, hidden]`, as PyTorch lays them out.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(
    f: Act,
    d: Dims,
    lengths: &[usize],
    x: &[T],
    wih: &[T],
    whh: &[T],
    bih: &[T],
    bhh: &[T],
    hs: &mut [T],
    ws: &mut [T],
    h0: Option<&[T]>,
) {
    let Dims { rows, steps, features: nf, hidden: nh, .. } = d;
    let n = rows * steps;
    // Both biases first, then every step's input projection added in one product (β = 1).
    for row in hs[..n * nh].chunks_exact_mut(nh) {
        for ((o, &a), &b) in row.iter_mut().zip(bih).zip(bhh) {
            *o = a + b;
        }
    }
    T::gemm(n, nf, nh, T::ONE, x, nf as isize, 1, wih, 1, nf as isize, T::ONE, hs, nh as isize, 1);
    let stride = (steps * nh) as isize;
    for i in 0..steps {
        let (t, prev) = d.visit(i);
        // The previous states, contiguous (or the carried ones, already so), then W_hh h_prev
        // added onto step t.
        let prev_states: Option<&[T]> = match (prev, h0) {
            (Some(p), _) => {
                gather_step(hs, ws, rows, steps, nh, p);
                Some(ws)
            }
            (None, Some(h)) => Some(h),
            (None, None) => None,
        };
        if let Some(prev_states) = prev_states {
            T::gemm(
                rows,
                nh,
                nh,
                T::ONE,
                prev_states,
                nh as isize,
                1,
                whh,
                1,
                nh as isize,
                T::ONE,
                &mut hs[t * nh..],
                stride,
                1,
            );
        }
        for r in 0..rows {
            let at = (r * steps + t) * nh;
            if t < length(lengths, r, steps) {
                activation_in_place(f, &mut hs[at..at + nh]);
            } else {
                hs[at..at + nh].fill(T::ZERO);
            }
        }
    }
}

/// Forward was the recurrence, so now, from `dhs` (the loss's gradient with respect to every
/// state, overwritten with the pre-activation gradients `dz`): through time from the last
/// step, `dz_t = dh_t · f'(h_t)` and `dh_{t-1} += dz_t W_hh`; then `dW_ih = Σ dzᵀ x`,
/// `dW_hh = Σ_t dz_tᵀ h_{t-1}`, `db_ih = db_hh = Σ dz`.
#[allow(clippy::too_many_arguments)]
pub fn backward_params<T: Float>(
    f: Act,
    d: Dims,
    lengths: &[usize],
    x: &[T],
    whh: &[T],
    hs: &[T],
    dhs: &mut [T],
    ws: &mut [T],
    dwih: &mut [T],
    dwhh: &mut [T],
    dbih: &mut [T],
    dbhh: &mut [T],
    h0: Option<&[T]>,
) {
    let Dims { rows, steps, features: nf, hidden: nh, reverse } = d;
    let stride = (steps * nh) as isize;
    for i in (0..steps).rev() {
        let (t, prev) = d.visit(i);
        for r in 0..rows {
            let at = (r * steps + t) * nh;
            if t < length(lengths, r, steps) {
                activation_backward_in_place(f, &hs[at..at + nh], &mut dhs[at..at + nh]);
            } else {
                dhs[at..at + nh].fill(T::ZERO);
            }
        }
        if let Some(p) = prev {
            gather_step(dhs, ws, rows, steps, nh, t);
            T::gemm(
                rows,
                nh,
                nh,
                T::ONE,
                ws,
                nh as isize,
                1,
                whh,
                nh as isize,
                1,
                T::ONE,
                &mut dhs[p * nh..],
                stride,
                1,
            );
        }
    }
    let n = rows * steps;
    T::gemm(nh, n, nf, T::ONE, dhs, 1, nh as isize, x, nf as isize, 1, T::ZERO, dwih, nf as isize, 1);
    // dW_hh = Σ dz[r, t]ᵀ h[r, t − 1] (forward) or h[r, t + 1] (reverse). Row i of the
    // states neighbours rows i ± 1 in memory, so this is one product over all rows, minus the
    // pairs that cross from one sequence into the next.
    dwhh[..nh * nh].fill(T::ZERO);
    if steps > 1 && n > 1 {
        let (dz_from, h_from) = if reverse { (0, nh) } else { (nh, 0) };
        T::gemm(
            nh,
            n - 1,
            nh,
            T::ONE,
            &dhs[dz_from..],
            1,
            nh as isize,
            &hs[h_from..],
            nh as isize,
            1,
            T::ZERO,
            dwhh,
            nh as isize,
            1,
        );
        if rows > 1 {
            // Forward: dz[r, 0] with h[r − 1, last], r ≥ 1; reverse: dz[r, last] with h[r + 1, 0].
            let (dz_at, h_at) = if reverse { ((steps - 1) * nh, steps * nh) } else { (steps * nh, steps * nh - nh) };
            T::gemm(
                nh,
                rows - 1,
                nh,
                -T::ONE,
                &dhs[dz_at..],
                1,
                stride,
                &hs[h_at..],
                stride,
                1,
                T::ONE,
                dwhh,
                nh as isize,
                1,
            );
        }
    }
    if let Some(h) = h0 {
        // The carried states fed the first step: dW_hh += Σ_r dz[r, 0]ᵀ h0[r].
        T::gemm(nh, rows, nh, T::ONE, dhs, 1, stride, h, nh as isize, 1, T::ONE, dwhh, nh as isize, 1);
    }
    dbih[..nh].fill(T::ZERO);
    for row in dhs[..n * nh].chunks_exact(nh) {
        for (g, &v) in dbih[..nh].iter_mut().zip(row) {
            *g += v;
        }
    }
    dbhh[..nh].copy_from_slice(&dbih[..nh]);
}

/// …and `dx (+)= dz W_ih`, every step in one product.
pub fn backward_input<T: Float>(d: Dims, wih: &[T], dz: &[T], dx: &mut [T], accumulate: bool) {
    let Dims { rows, steps, features: nf, hidden: nh, .. } = d;
    let beta = if accumulate { T::ONE } else { T::ZERO };
    T::gemm(rows * steps, nh, nf, T::ONE, dz, nh as isize, 1, wih, nf as isize, 1, beta, dx, nf as isize, 1);
}

pub(super) fn dims(rows: usize, steps: usize, reverse: bool, x: ABuf, hs: ABuf) -> Dims {
    Dims { rows, steps, features: x.cols / steps.max(1), hidden: hs.cols / steps.max(1), reverse }
}

/// The step `Rnn`: every state of every sequence into `hs`.
#[allow(clippy::too_many_arguments)]
pub fn step<T: Float>(
    cx: &mut Cx<'_, T>,
    f: Act,
    steps: usize,
    reverse: bool,
    x: ABuf,
    wih: PBuf,
    whh: PBuf,
    bih: PBuf,
    bhh: PBuf,
    hs: ABuf,
    ws: ABuf,
    h0: Option<ABuf>,
) -> Done {
    let rows = cx.rows;
    let d = dims(rows, steps, reverse, x, hs);
    let p = cx.params;
    let (out, work, r) = cx.mem.split2(hs, rows, ws);
    let h0 = h0.map(|h| r.get(h, rows));
    forward(
        f,
        d,
        cx.lengths,
        r.get(x, rows),
        &p[wih.range()],
        &p[whh.range()],
        &p[bih.range()],
        &p[bhh.range()],
        out,
        work,
        h0,
    );
    Ok(())
}

/// The step `RnnLast`: each sequence's last state (`output = last`).
pub fn last_step<T: Float>(cx: &mut Cx<'_, T>, steps: usize, hs: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    let (all, nh) = (r.get(hs, rows), y.cols);
    for (row, o) in out.chunks_exact_mut(nh).enumerate() {
        let at = (row * steps + length(cx.lengths, row, steps) - 1) * nh;
        o.copy_from_slice(&all[at..at + nh]);
    }
    Ok(())
}

/// The step `RnnLastBackward`: forward took the last state, so the states' gradient is `dy`
/// at the last step and 0 before it.
pub fn last_backward_step<T: Float>(cx: &mut Cx<'_, T>, steps: usize, dy: ABuf, dhs: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(dhs, rows);
    let (g, nh) = (r.get(dy, rows), dy.cols);
    out.fill(T::ZERO);
    for (row, d) in g.chunks_exact(nh).enumerate() {
        let at = (row * steps + length(cx.lengths, row, steps) - 1) * nh;
        out[at..at + nh].copy_from_slice(d);
    }
    Ok(())
}

/// The step `RnnBackward`: `dhs` (overwritten with `dz`), the parameters' gradients, and
/// (unless the input is the model's) `dx`.
#[allow(clippy::too_many_arguments)]
pub fn backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    f: Act,
    steps: usize,
    reverse: bool,
    x: ABuf,
    wih: PBuf,
    whh: PBuf,
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
    let (gwih, gwhh, gbih, gbhh) = four(cx.grads, dwih, dwhh, dbih, dbhh);
    let (dz, work, r) = cx.mem.split2(dhs, rows, ws);
    backward_params(
        f,
        d,
        cx.lengths,
        r.get(x, rows),
        &p[whh.range()],
        r.get(hs, rows),
        dz,
        work,
        gwih,
        gwhh,
        gbih,
        gbhh,
        h0.map(|h| r.get(h, rows)),
    );
    if let Some((dx, write)) = dx {
        let (g, r) = cx.mem.split(dx, rows);
        backward_input(d, &p[wih.range()], r.get(dhs, rows), g, write == Write::Accumulate);
    }
    Ok(())
}

/// The four parameter gradients of one direction. The planner lays a layer's tensors out in
/// order (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`), so the weights and the biases are
/// each one contiguous stretch.
pub(super) fn four<T>(
    g: &mut [T],
    wih: PBuf,
    whh: PBuf,
    bih: PBuf,
    bhh: PBuf,
) -> (&mut [T], &mut [T], &mut [T], &mut [T]) {
    debug_assert!(whh.offset == wih.offset + wih.len && bhh.offset == bih.offset + bih.len);
    let (w, b) = crate::mem::split_pair(g, wih.offset..whh.offset + whh.len, bih.offset..bhh.offset + bhh.len);
    let (gwih, gwhh) = w.split_at_mut(wih.len);
    let (gbih, gbhh) = b.split_at_mut(bih.len);
    (gwih, gwhh, gbih, gbhh)
}

/// How a bidirectional layer combines its two directions: 0 concatenates the two states (the
/// forward's first), 1 adds them, 2 multiplies them.
pub const CONCAT: usize = 0;
/// Adds the two directions' states.
pub const ADD: usize = 1;
/// Multiplies the two directions' states.
pub const MUL: usize = 2;

/// The rows (per example) of the forward and reverse states a merged output is made of:
/// every step, or (`last`) PyTorch's `h_n`: the forward's last step (of a sequence of
/// `length` steps) and the reverse's first.
fn merge_rows(steps: usize, length: usize, last: bool) -> impl Iterator<Item = (usize, usize, usize)> {
    let every = (0..if last { 0 } else { steps }).map(|t| (t, t, t));
    every.chain(last.then_some((0, length.max(1) - 1, 0)))
}

/// The step `BiMerge`: `y` from the two directions' states `hf`, `hr` (each `steps ×
/// hidden` per row).
#[allow(clippy::too_many_arguments)]
pub fn merge_step<T: Float>(
    cx: &mut Cx<'_, T>,
    merge: usize,
    steps: usize,
    last: bool,
    hf: ABuf,
    hr: ABuf,
    y: ABuf,
) -> Done {
    let rows = cx.rows;
    let nh = hf.cols / steps.max(1);
    let (out, r) = cx.mem.split(y, rows);
    let (f, b) = (r.get(hf, rows), r.get(hr, rows));
    for row in 0..rows {
        for (o, tf, tr) in merge_rows(steps, length(cx.lengths, row, steps), last) {
            let (sf, sr) = ((row * steps + tf) * nh, (row * steps + tr) * nh);
            let (vf, vr) = (&f[sf..sf + nh], &b[sr..sr + nh]);
            let width = if merge == CONCAT { 2 * nh } else { nh };
            let dst = &mut out[row * y.cols + o * width..row * y.cols + (o + 1) * width];
            match merge {
                CONCAT => {
                    dst[..nh].copy_from_slice(vf);
                    dst[nh..].copy_from_slice(vr);
                }
                ADD => dst.iter_mut().zip(vf.iter().zip(vr)).for_each(|(d, (&a, &b))| *d = a + b),
                _ => dst.iter_mut().zip(vf.iter().zip(vr)).for_each(|(d, (&a, &b))| *d = a * b),
            }
        }
    }
    Ok(())
}

/// The step `BiMergeBackward`: forward merged the two directions, so now their states'
/// gradients `dhf`, `dhr` (zero where the output did not read them).
#[allow(clippy::too_many_arguments)]
pub fn merge_backward_step<T: Float>(
    cx: &mut Cx<'_, T>,
    merge: usize,
    steps: usize,
    last: bool,
    hf: ABuf,
    hr: ABuf,
    dy: ABuf,
    dhf: ABuf,
    dhr: ABuf,
) -> Done {
    let rows = cx.rows;
    let nh = hf.cols / steps.max(1);
    let (gf, gr, r) = cx.mem.split_rows2(dhf, dhr, rows);
    gf.fill(T::ZERO);
    gr.fill(T::ZERO);
    let (f, b, g) = (r.get(hf, rows), r.get(hr, rows), r.get(dy, rows));
    for row in 0..rows {
        for (o, tf, tr) in merge_rows(steps, length(cx.lengths, row, steps), last) {
            let (sf, sr) = ((row * steps + tf) * nh, (row * steps + tr) * nh);
            let width = if merge == CONCAT { 2 * nh } else { nh };
            let d = &g[row * dy.cols + o * width..row * dy.cols + (o + 1) * width];
            match merge {
                CONCAT => {
                    gf[sf..sf + nh].copy_from_slice(&d[..nh]);
                    gr[sr..sr + nh].copy_from_slice(&d[nh..]);
                }
                ADD => {
                    gf[sf..sf + nh].copy_from_slice(d);
                    gr[sr..sr + nh].copy_from_slice(d);
                }
                _ => {
                    // Forward was y = hf · hr, so now dhf = dy · hr, dhr = dy · hf.
                    for k in 0..nh {
                        gf[sf + k] = d[k] * b[sr + k];
                        gr[sr + k] = d[k] * f[sf + k];
                    }
                }
            }
        }
    }
    Ok(())
}
