//! Fully-connected layers: `y = x·Wᵀ + b` and its backward pass. In f32 with AVX2/AVX-512,
//! by the register tiles of `implicit`, which read W, x and dy in their own layouts (nothing
//! to pack), where the input width is a multiple of 16; otherwise on matrixmultiply.
//!
//! Given a team of threads, a large enough layer is split inside its products, not across
//! its rows: thread `t` computes the outputs [`share`]`(out, t, n)` of every row (and their
//! rows of dW and entries of db), so that each thread reads only its own rows of W — the
//! rows whose update it also computes ([`crate::train::Optimizer`] splits every tensor by
//! the same rule) — and no weight or gradient moves between cores; `dx` is split by rows.
//! Every output is the same chain of operations as on one thread, so the results are one
//! thread's, bit for bit, whatever the number of threads.

use crate::kernels::elementwise;
use crate::plan::Act;
use crate::train::Team;
use crate::Float;
use std::ops::Range;

/// Where a dense product writes its outputs.
pub enum Out<'a, 'b, T> {
    /// The `rows × out` matrix, row-major.
    Matrix(&'a mut [T]),
    /// Each row's own slice of `out` values: a thread's share of the outputs of every row.
    Rows(&'a mut [&'b mut [T]]),
}

/// Below this many multiply–adds a layer's products run on the calling thread alone: handing
/// work to the team costs a microsecond or two.
const SPLIT_MACS: usize = 1 << 18;

/// The team to split a `rows × inp × out` layer over, where that pays and the layer runs on
/// the tiles (whose outputs do not depend on how the work is cut).
fn team_for<T: Float>(team: Option<&Team>, rows: usize, inp: usize, out: usize) -> Option<&Team> {
    team.filter(|t| t.threads() > 1 && rows * inp * out >= SPLIT_MACS && T::dense_tiles(inp))
}

/// The outputs (rows of W) that thread `t` of `n` computes: whole groups of 16, so that two
/// threads never write the same cache line of a row of `y` (the last takes the rest).
pub fn share(out: usize, t: usize, n: usize) -> Range<usize> {
    let groups = out.div_ceil(16);
    let at = |t: usize| (groups * t / n.max(1) * 16).min(out);
    at(t)..at(t + 1)
}

/// Rows `t` of `n` of a batch of `rows` (for the input gradient, which is split by rows).
fn row_share(rows: usize, t: usize, n: usize) -> Range<usize> {
    let at = |t: usize| rows * t / n.max(1);
    at(t)..at(t + 1)
}

/// `y[rows × out] = x[rows × in] · Wᵀ + b`, W `[out × in]` row-major. The bias is written
/// first and the product added onto it (β = 1), so it costs no extra pass.
pub fn forward<T: Float>(rows: usize, inp: usize, out: usize, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    // Dot products that read W where it lies (matrixmultiply packs all of W for every call,
    // whatever the rows: at 32 or 64 rows, a thread's share of a batch, that was most of the
    // cost), in one order for any number of rows, so that an example's outputs do not depend
    // on the batch it comes in.
    if T::dense_forward(rows, inp, out, x, w, b, Out::Matrix(y)) {
        return;
    }
    for r in 0..rows {
        y[r * out..(r + 1) * out].copy_from_slice(&b[..out]);
    }
    T::gemm(rows, inp, out, T::ONE, x, inp as isize, 1, w, 1, inp as isize, T::ONE, y, out as isize, 1);
}

/// `y = x·Wᵀ + b` for the rows of every step of a batch of sequences (a layer at every step,
/// the projections of attention): many rows (batch × steps) over which packing both operands
/// pays — in f32, the packed tiles (`implicit::dense_forward_packed`: a transformer's MLP layers
/// timed alone at ~75 GFLOP/s on Zen 3, ~60 inside its step, where matrixmultiply ran at ~55
/// alone and the dot-product tiles, reducing each output's lanes after 8 vectors, lower); else
/// matrixmultiply. Whatever the rows, each
/// output is the same chain of operations (the bias, then the products added in order), so an
/// example's outputs do not depend on its batch, and the tiles' equality across threads is
/// not needed: one thread.
pub fn forward_steps<T: Float>(rows: usize, inp: usize, out: usize, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    if let (Some(xs), Some(ws), Some(bs), Some(ys)) = (T::f32s(x), T::f32s(w), T::f32s(b), T::f32s_mut(&mut *y)) {
        if crate::kernels::implicit::dense_forward_packed(rows, inp, out, xs, ws, bs, ys) {
            return;
        }
    }
    for r in 0..rows {
        y[r * out..(r + 1) * out].copy_from_slice(&b[..out]);
    }
    T::gemm_any_rows(rows, inp, out, T::ONE, x, inp as isize, 1, w, 1, inp as isize, T::ONE, y, out as isize, 1);
}

/// Forward was `y = x·Wᵀ + b`, so now `dW = dyᵀ·x`, `db = Σ_rows dy`.
pub fn backward_params<T: Float>(rows: usize, inp: usize, out: usize, x: &[T], dy: &[T], dw: &mut [T], db: &mut [T]) {
    if !T::dense_backward(rows, inp, out, x, &[], dy, Some((&mut *dw, 0..out)), None) {
        T::gemm(out, rows, inp, T::ONE, dy, 1, out as isize, x, inp as isize, 1, T::ZERO, dw, inp as isize, 1);
    }
    bias_grads(rows, out, dy, 0..out, db);
}

/// `db = Σ_rows dy` for the outputs `outs` (`db` holds theirs), in the rows' order.
fn bias_grads<T: Float>(rows: usize, out: usize, dy: &[T], outs: Range<usize>, db: &mut [T]) {
    let db = &mut db[..outs.len()];
    db.fill(T::ZERO);
    for r in 0..rows {
        for (g, &d) in db.iter_mut().zip(&dy[r * out + outs.start..r * out + outs.end]) {
            *g += d;
        }
    }
}

/// …and `dx (+)= dy·W`.
pub fn backward_input<T: Float>(
    rows: usize,
    inp: usize,
    out: usize,
    w: &[T],
    dy: &[T],
    dx: &mut [T],
    accumulate: bool,
) {
    if T::dense_backward(rows, inp, out, &[], w, dy, None, Some((dx, accumulate))) {
        return;
    }
    let beta = if accumulate { T::ONE } else { T::ZERO };
    T::gemm(rows, out, inp, T::ONE, dy, out as isize, 1, w, inp as isize, 1, beta, dx, inp as isize, 1);
}

/// `y = f(x·Wᵀ + b)` (`f` when given): the product, then the activation on the same buffer
/// while it is hot; over the team's threads when given and worth it (each its [`share`] of
/// the outputs of every row).
#[allow(clippy::too_many_arguments)]
pub fn forward_act<T: Float>(
    team: Option<&Team>,
    f: Option<Act>,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
) {
    let y = &mut y[..rows * out];
    let Some(team) = team_for::<T>(team, rows, inp, out) else {
        forward(rows, inp, out, x, w, b, y);
        if let Some(f) = f {
            elementwise::activation_in_place(f, y);
        }
        return;
    };
    let n = team.threads();
    // Each thread's slice of every row.
    let mut parts: Vec<(Range<usize>, Vec<&mut [T]>)> =
        (0..n).map(|t| (share(out, t, n), Vec::with_capacity(rows))).collect();
    for row in y.chunks_exact_mut(out) {
        let mut rest = row;
        for (outs, slices) in &mut parts {
            let (mine, more) = std::mem::take(&mut rest).split_at_mut(outs.len());
            slices.push(mine);
            rest = more;
        }
    }
    team.run(parts, |_, (outs, mut slices)| {
        if outs.is_empty() {
            return;
        }
        let (w, b) = (&w[outs.start * inp..outs.end * inp], &b[outs.clone()]);
        assert!(T::dense_forward(rows, inp, outs.len(), x, w, b, Out::Rows(&mut slices)), "dense tiles");
        if let Some(f) = f {
            slices.into_iter().for_each(|s| elementwise::activation_in_place(f, s));
        }
    });
}

/// A plan's dense layer, `y = f(x·Wᵀ + b)` (`f` when given), over `steps` steps a row: at
/// every step of a sequence (`steps > 1`) by [`forward_steps`] then the activation, else by
/// [`forward_act`]. Every step of the plan that computes a dense layer's product (alone, with
/// its activation, with a batch norm folded in) goes through here, so that fusing or folding
/// never changes which kernel — and so which bits — the product gets.
#[allow(clippy::too_many_arguments)]
pub fn forward_layer<T: Float>(
    team: Option<&Team>,
    steps: usize,
    f: Option<Act>,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
) {
    if steps <= 1 {
        return forward_act(team, f, rows, inp, out, x, w, b, y);
    }
    let y = &mut y[..rows * out];
    forward_steps(rows, inp, out, x, w, b, y);
    if let Some(f) = f {
        elementwise::activation_in_place(f, y);
    }
}

/// `dz = dy · f'(y)` in place over `dy` (the gradient through a dense layer's fused
/// activation), split by rows over the team when the layer's products are.
#[allow(clippy::too_many_arguments)]
pub fn activation_backward<T: Float>(
    team: Option<&Team>,
    f: Act,
    rows: usize,
    inp: usize,
    out: usize,
    y: &[T],
    dy: &mut [T],
) {
    let (y, dy) = (&y[..rows * out], &mut dy[..rows * out]);
    let Some(team) = team_for::<T>(team, rows, inp, out) else {
        elementwise::activation_backward_in_place(f, y, dy);
        return;
    };
    let n = team.threads();
    let mut parts = Vec::with_capacity(n);
    let mut rest = dy;
    for t in 0..n {
        let r = row_share(rows, t, n);
        let (mine, more) = std::mem::take(&mut rest).split_at_mut(r.len() * out);
        parts.push((r, mine));
        rest = more;
    }
    team.run(parts, |_, (r, d)| elementwise::activation_backward_in_place(f, &y[r.start * out..r.end * out], d));
}

/// A dense layer's gradients: `dW = dyᵀ·x`, `db = Σ_rows dy` and, when asked, `dx (+)= dy·W`
/// (`true`: add). Over the team's threads when given and worth it: thread `t` computes the
/// rows of dW and entries of db of its [`share`] of the outputs, and `dx` for its share of
/// the rows.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    team: Option<&Team>,
    rows: usize,
    inp: usize,
    out: usize,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
    dx: Option<(&mut [T], bool)>,
) {
    let Some(team) = team_for::<T>(team, rows, inp, out) else {
        backward_params(rows, inp, out, x, dy, dw, db);
        if let Some((dx, accumulate)) = dx {
            backward_input(rows, inp, out, w, dy, dx, accumulate);
        }
        return;
    };
    let n = team.threads();
    let accumulate = dx.as_ref().is_some_and(|d| d.1);
    let (mut dw, mut db, mut dx) = (&mut dw[..out * inp], &mut db[..out], dx.map(|d| &mut d.0[..rows * inp]));
    let mut parts = Vec::with_capacity(n);
    for t in 0..n {
        let (outs, rs) = (share(out, t, n), row_share(rows, t, n));
        let (dwt, more) = std::mem::take(&mut dw).split_at_mut(outs.len() * inp);
        dw = more;
        let (dbt, more) = std::mem::take(&mut db).split_at_mut(outs.len());
        db = more;
        let dxt = match dx.take() {
            Some(d) => {
                let (mine, more) = d.split_at_mut(rs.len() * inp);
                dx = Some(more);
                Some(mine)
            }
            None => None,
        };
        parts.push((outs, dwt, dbt, rs, dxt));
    }
    let dy = &dy[..rows * out];
    team.run(parts, |_, (outs, dwt, dbt, rs, dxt)| {
        if !outs.is_empty() {
            assert!(T::dense_backward(rows, inp, out, x, &[], dy, Some((dwt, outs.clone())), None), "dense tiles");
            bias_grads(rows, out, dy, outs, dbt);
        }
        if let (Some(dxt), false) = (dxt, rs.is_empty()) {
            let dys = &dy[rs.start * out..rs.end * out];
            assert!(T::dense_backward(rs.len(), inp, out, &[], w, dys, None, Some((dxt, accumulate))), "dense tiles");
        }
    });
}
