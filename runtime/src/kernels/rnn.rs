//! The Elman recurrence `h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)` (PyTorch's `nn.RNN`,
//! one layer, one direction, `h_0 = 0`) over fixed-length sequences, and backpropagation
//! through time. A row of the batch is one sequence: `steps × features` inputs, `steps ×
//! hidden` states, row-major by step.
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
    pub rows: usize,
    pub steps: usize,
    pub features: usize,
    pub hidden: usize,
}

/// `hs[r, t] = f(W_ih x[r, t] + b_ih + W_hh hs[r, t-1] + b_hh)` for every row and step.
/// `wih` is `[hidden, features]`, `whh` `[hidden, hidden]`, as PyTorch lays them out.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(
    f: Act,
    d: Dims,
    x: &[T],
    wih: &[T],
    whh: &[T],
    bih: &[T],
    bhh: &[T],
    hs: &mut [T],
    ws: &mut [T],
) {
    let Dims { rows, steps, features: nf, hidden: nh } = d;
    let n = rows * steps;
    // Both biases first, then every step's input projection added in one product (β = 1).
    for row in hs[..n * nh].chunks_exact_mut(nh) {
        for ((o, &a), &b) in row.iter_mut().zip(bih).zip(bhh) {
            *o = a + b;
        }
    }
    T::gemm(n, nf, nh, T::ONE, x, nf as isize, 1, wih, 1, nf as isize, T::ONE, hs, nh as isize, 1);
    let stride = (steps * nh) as isize;
    for t in 0..steps {
        if t > 0 {
            // The previous states, contiguous, then W_hh h_{t-1} added onto step t.
            for r in 0..rows {
                let from = (r * steps + t - 1) * nh;
                ws[r * nh..(r + 1) * nh].copy_from_slice(&hs[from..from + nh]);
            }
            T::gemm(
                rows,
                nh,
                nh,
                T::ONE,
                ws,
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
            activation_in_place(f, &mut hs[at..at + nh]);
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
    x: &[T],
    whh: &[T],
    hs: &[T],
    dhs: &mut [T],
    ws: &mut [T],
    dwih: &mut [T],
    dwhh: &mut [T],
    dbih: &mut [T],
    dbhh: &mut [T],
) {
    let Dims { rows, steps, features: nf, hidden: nh } = d;
    let stride = (steps * nh) as isize;
    for t in (0..steps).rev() {
        for r in 0..rows {
            let at = (r * steps + t) * nh;
            activation_backward_in_place(f, &hs[at..at + nh], &mut dhs[at..at + nh]);
        }
        if t > 0 {
            for r in 0..rows {
                let from = (r * steps + t) * nh;
                ws[r * nh..(r + 1) * nh].copy_from_slice(&dhs[from..from + nh]);
            }
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
                &mut dhs[(t - 1) * nh..],
                stride,
                1,
            );
        }
    }
    let n = rows * steps;
    T::gemm(nh, n, nf, T::ONE, dhs, 1, nh as isize, x, nf as isize, 1, T::ZERO, dwih, nf as isize, 1);
    // dW_hh = Σ over rows and t ≥ 1 of dz[r, t]ᵀ h[r, t-1]. Row i of the states follows row
    // i − 1 in memory, so this is one product of dz rows 1.. with h rows ..n−1, minus the
    // pairs that cross from one sequence into the next (dz[r, 0] with h[r − 1, last]).
    dwhh[..nh * nh].fill(T::ZERO);
    if steps > 1 && n > 1 {
        T::gemm(nh, n - 1, nh, T::ONE, &dhs[nh..], 1, nh as isize, hs, nh as isize, 1, T::ZERO, dwhh, nh as isize, 1);
        if rows > 1 {
            let first = steps * nh;
            T::gemm(
                nh,
                rows - 1,
                nh,
                -T::ONE,
                &dhs[first..],
                1,
                stride,
                &hs[first - nh..],
                stride,
                1,
                T::ONE,
                dwhh,
                nh as isize,
                1,
            );
        }
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
    let Dims { rows, steps, features: nf, hidden: nh } = d;
    let beta = if accumulate { T::ONE } else { T::ZERO };
    T::gemm(rows * steps, nh, nf, T::ONE, dz, nh as isize, 1, wih, nf as isize, 1, beta, dx, nf as isize, 1);
}

fn dims(rows: usize, steps: usize, x: ABuf, hs: ABuf) -> Dims {
    Dims { rows, steps, features: x.cols / steps.max(1), hidden: hs.cols / steps.max(1) }
}

/// The step `Rnn`: every state of every sequence into `hs`.
#[allow(clippy::too_many_arguments)]
pub fn step<T: Float>(
    cx: &mut Cx<'_, T>,
    f: Act,
    steps: usize,
    x: ABuf,
    wih: PBuf,
    whh: PBuf,
    bih: PBuf,
    bhh: PBuf,
    hs: ABuf,
    ws: ABuf,
) -> Done {
    let rows = cx.rows;
    let d = dims(rows, steps, x, hs);
    let p = cx.params;
    let (out, work, r) = cx.mem.split2(hs, rows, ws);
    forward(f, d, r.get(x, rows), &p[wih.range()], &p[whh.range()], &p[bih.range()], &p[bhh.range()], out, work);
    Ok(())
}

/// The step `RnnLast`: each sequence's last state (`output = last`).
pub fn last_step<T: Float>(cx: &mut Cx<'_, T>, steps: usize, hs: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    let (all, nh) = (r.get(hs, rows), y.cols);
    for (row, o) in out.chunks_exact_mut(nh).enumerate() {
        let at = (row * steps + steps - 1) * nh;
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
        let at = (row * steps + steps - 1) * nh;
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
) -> Done {
    let rows = cx.rows;
    let d = dims(rows, steps, x, hs);
    let p = cx.params;
    let (gwih, gwhh, gbih, gbhh) = four(cx.grads, dwih, dwhh, dbih, dbhh);
    let (dz, work, r) = cx.mem.split2(dhs, rows, ws);
    backward_params(f, d, r.get(x, rows), &p[whh.range()], r.get(hs, rows), dz, work, gwih, gwhh, gbih, gbhh);
    if let Some((dx, write)) = dx {
        let (g, r) = cx.mem.split(dx, rows);
        backward_input(d, &p[wih.range()], r.get(dhs, rows), g, write == Write::Accumulate);
    }
    Ok(())
}

/// Four disjoint parameter-gradient ranges of the store, in the order asked.
fn four<T>(g: &mut [T], a: PBuf, b: PBuf, c: PBuf, d: PBuf) -> (&mut [T], &mut [T], &mut [T], &mut [T]) {
    let (ab, cd) = if a.offset.max(b.offset) <= c.offset.min(d.offset) {
        g.split_at_mut(c.offset.min(d.offset))
    } else {
        // The planner lays a layer's tensors out in order, so this does not happen.
        panic!("rnn parameter gradients out of order");
    };
    let base = c.offset.min(d.offset);
    let (ga, gb) = crate::mem::split_pair(ab, a.range(), b.range());
    let cr = c.offset - base..c.offset - base + c.len;
    let dr = d.offset - base..d.offset - base + d.len;
    let (gc, gd) = crate::mem::split_pair(cd, cr, dr);
    (ga, gb, gc, gd)
}
