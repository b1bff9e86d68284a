//! One function per plan step: what the interpreter dispatches to, and what generated code
//! calls directly with every shape and offset a constant. Both executors therefore run the
//! same code and agree bit for bit.

use crate::interp::{draw_mask, split, split2, split_pair, ExecError, Mem, Reads};
use crate::kernels::{conv, dense, elementwise, loss, pool};
use crate::plan::{ABuf, Act, Geometry, PBuf, PoolOp, Write};
use crate::Float;
use rand_chacha::ChaCha8Rng;

fn acc(w: Write) -> bool {
    w == Write::Accumulate
}

fn all<'a, T>(mem: &'a Mem<'a, T>) -> Reads<'a, T> {
    Reads::all(mem.arena, mem.inputs, mem.target)
}

pub fn dense<T: Float>(rows: usize, mem: Mem<'_, T>, params: &[T], x: ABuf, w: PBuf, b: PBuf, y: ABuf) {
    let (out, r) = mem.split(y, rows);
    dense::forward(rows, x.cols, y.cols, r.get(x, rows), &params[w.range()], &params[b.range()], out);
}

#[allow(clippy::too_many_arguments)]
pub fn dense_act<T: Float>(rows: usize, mem: Mem<'_, T>, params: &[T], f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf) {
    let (out, r) = mem.split(y, rows);
    dense::forward_act(f, rows, x.cols, y.cols, r.get(x, rows), &params[w.range()], &params[b.range()], out);
}

pub fn activation<T: Float>(rows: usize, mem: Mem<'_, T>, f: Act, x: ABuf, y: ABuf) {
    let (out, r) = mem.split(y, rows);
    elementwise::activation(f, r.get(x, rows), out);
}

pub fn activation_in_place<T: Float>(rows: usize, mem: Mem<'_, T>, f: Act, y: ABuf) {
    let (out, _) = mem.split(y, rows);
    elementwise::activation_in_place(f, out);
}

pub fn dropout<T: Float>(rows: usize, mem: Mem<'_, T>, rng: &mut ChaCha8Rng, keep: f64, x: ABuf, mask: ABuf, y: ABuf) {
    let Mem { arena, inputs, target } = mem;
    draw_mask(keep, rng, &mut arena[mask.range(rows)]);
    let (out, r) = split(arena, y, rows, inputs, target);
    elementwise::mul(r.get(mask, rows), r.get(x, rows), out, false);
}

pub fn dropout_in_place<T: Float>(rows: usize, mem: Mem<'_, T>, rng: &mut ChaCha8Rng, keep: f64, mask: ABuf, y: ABuf) {
    let Mem { arena, inputs, target } = mem;
    draw_mask(keep, rng, &mut arena[mask.range(rows)]);
    let (out, r) = split(arena, y, rows, inputs, target);
    elementwise::mul_in_place(r.get(mask, rows), out);
}

pub fn softmax<T: Float>(rows: usize, mem: Mem<'_, T>, x: ABuf, y: ABuf) {
    let (out, r) = mem.split(y, rows);
    elementwise::softmax(x.cols, r.get(x, rows), out);
}

pub fn add<T: Float>(rows: usize, mem: Mem<'_, T>, xs: &[ABuf], y: ABuf) {
    let (out, r) = mem.split(y, rows);
    out.copy_from_slice(r.get(xs[0], rows));
    for x in &xs[1..] {
        out.iter_mut().zip(r.get(*x, rows)).for_each(|(o, &v)| *o += v);
    }
}

pub fn concat<T: Float>(rows: usize, mem: Mem<'_, T>, xs: &[ABuf], y: ABuf) {
    let (out, r) = mem.split(y, rows);
    let mut col = 0;
    for x in xs {
        elementwise::scatter_cols(rows, x.cols, y.cols, col, r.get(*x, rows), out);
        col += x.cols;
    }
}

pub fn softmax_cross_entropy<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    logits: ABuf,
    target: ABuf,
    dlogits: ABuf,
) -> Result<f64, ExecError> {
    let (d, r) = mem.split(dlogits, rows);
    let t = r.get(target, rows);
    loss::softmax_cross_entropy(rows, logits.cols, r.get(logits, rows), t, d)
        .map_err(|row| ExecError::LabelOutOfRange { row, label: t[row].to_f64(), classes: logits.cols })
}

pub fn cross_entropy<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    probs: ABuf,
    target: ABuf,
    dprobs: ABuf,
) -> Result<f64, ExecError> {
    let (d, r) = mem.split(dprobs, rows);
    let t = r.get(target, rows);
    loss::cross_entropy(rows, probs.cols, r.get(probs, rows), t, d).map_err(|row| ExecError::LabelOutOfRange {
        row,
        label: t[row].to_f64(),
        classes: probs.cols,
    })
}

pub fn sigmoid_binary_cross_entropy<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    logits: ABuf,
    target: ABuf,
    dlogits: ABuf,
) -> f64 {
    let (d, r) = mem.split(dlogits, rows);
    loss::sigmoid_binary_cross_entropy(rows, logits.cols, r.get(logits, rows), r.get(target, rows), d)
}

pub fn binary_cross_entropy<T: Float>(rows: usize, mem: Mem<'_, T>, probs: ABuf, target: ABuf, dprobs: ABuf) -> f64 {
    let (d, r) = mem.split(dprobs, rows);
    loss::binary_cross_entropy(rows, probs.cols, r.get(probs, rows), r.get(target, rows), d)
}

pub fn mean_squared_error<T: Float>(rows: usize, mem: Mem<'_, T>, y: ABuf, target: ABuf, dy: ABuf) -> f64 {
    let (d, r) = mem.split(dy, rows);
    loss::mean_squared_error(rows, y.cols, r.get(y, rows), r.get(target, rows), d)
}

#[allow(clippy::too_many_arguments)]
pub fn dense_backward<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    grads: &mut [T],
    x: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
) {
    let (inp, out) = (x.cols, dy.cols);
    let (gw, gb) = split_pair(grads, dw.range(), db.range());
    match dx {
        Some((dx, write)) => {
            let (g, r) = mem.split(dx, rows);
            dense::backward_params(rows, inp, out, r.get(x, rows), r.get(dy, rows), gw, gb);
            dense::backward_input(rows, inp, out, &params[w.range()], r.get(dy, rows), g, acc(write));
        }
        None => {
            let r = all(&mem);
            dense::backward_params(rows, inp, out, r.get(x, rows), r.get(dy, rows), gw, gb);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn dense_act_backward<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    grads: &mut [T],
    f: Act,
    x: ABuf,
    y: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
) {
    let Mem { arena, inputs, target } = mem;
    {
        // dz = dy · f'(z), in place over dy.
        let (d, r) = split(arena, dy, rows, inputs, target);
        elementwise::activation_backward_in_place(f, r.get(y, rows), d);
    }
    dense_backward(rows, Mem { arena, inputs, target }, params, grads, x, w, dy, dw, db, dx);
}

#[allow(clippy::too_many_arguments)]
pub fn activation_backward<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    f: Act,
    x: ABuf,
    y: ABuf,
    dy: ABuf,
    dx: ABuf,
    write: Write,
) {
    let (g, r) = mem.split(dx, rows);
    elementwise::activation_backward(f, r.get(x, rows), r.get(y, rows), r.get(dy, rows), g, acc(write));
}

pub fn activation_backward_in_place<T: Float>(rows: usize, mem: Mem<'_, T>, f: Act, y: ABuf, d: ABuf) {
    let (g, r) = mem.split(d, rows);
    elementwise::activation_backward_in_place(f, r.get(y, rows), g);
}

pub fn dropout_backward<T: Float>(rows: usize, mem: Mem<'_, T>, mask: ABuf, dy: ABuf, dx: ABuf, write: Write) {
    let (g, r) = mem.split(dx, rows);
    elementwise::mul(r.get(mask, rows), r.get(dy, rows), g, acc(write));
}

pub fn dropout_backward_in_place<T: Float>(rows: usize, mem: Mem<'_, T>, mask: ABuf, d: ABuf) {
    let (g, r) = mem.split(d, rows);
    elementwise::mul_in_place(r.get(mask, rows), g);
}

pub fn softmax_backward<T: Float>(rows: usize, mem: Mem<'_, T>, y: ABuf, dy: ABuf, dx: ABuf, write: Write) {
    let (g, r) = mem.split(dx, rows);
    elementwise::softmax_backward(y.cols, r.get(y, rows), r.get(dy, rows), g, acc(write));
}

/// `dx (+)= dy[:, x_col .. x_col + x.cols]`
pub fn copy<T: Float>(rows: usize, mem: Mem<'_, T>, x: ABuf, x_col: usize, y: ABuf, write: Write) {
    let (g, r) = mem.split(x, rows);
    elementwise::gather_cols(rows, x.cols, y.cols, x_col, r.get(y, rows), g, acc(write));
}

/// `y = f(conv(x) + b)`.
#[allow(clippy::too_many_arguments)]
pub fn conv<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    g: Geometry,
    f: Act,
    x: ABuf,
    w: PBuf,
    b: PBuf,
    y: ABuf,
    ws: ABuf,
) {
    let (out, work, r) = split2(mem.arena, y, rows, ws, mem.inputs, mem.target);
    conv::forward(&g, rows, r.get(x, rows), &params[w.range()], &params[b.range()], out, work);
    elementwise::activation_in_place(f, out);
}

/// `y = f(local(x) + b)`.
#[allow(clippy::too_many_arguments)]
pub fn local<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    g: Geometry,
    f: Act,
    x: ABuf,
    w: PBuf,
    b: PBuf,
    y: ABuf,
    ws: ABuf,
) {
    let (out, work, r) = split2(mem.arena, y, rows, ws, mem.inputs, mem.target);
    conv::local_forward(&g, rows, r.get(x, rows), &params[w.range()], &params[b.range()], out, work);
    elementwise::activation_in_place(f, out);
}

pub fn pool<T: Float>(rows: usize, mem: Mem<'_, T>, op: PoolOp, g: Geometry, x: ABuf, y: ABuf) {
    let (out, r) = mem.split(y, rows);
    pool::forward(op, &g, rows, r.get(x, rows), out);
}

pub fn maxout<T: Float>(rows: usize, mem: Mem<'_, T>, pieces: usize, z: ABuf, y: ABuf) {
    let (out, r) = mem.split(y, rows);
    pool::maxout(pieces, r.get(z, rows), out);
}

#[allow(clippy::too_many_arguments)]
fn window_backward<T: Float>(
    local: bool,
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    grads: &mut [T],
    g: Geometry,
    f: Act,
    x: ABuf,
    y: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
    ws: ABuf,
) {
    let Mem { arena, inputs, target } = mem;
    {
        // dz = dy · f'(y), in place over dy.
        let (d, r) = split(arena, dy, rows, inputs, target);
        elementwise::activation_backward_in_place(f, r.get(y, rows), d);
    }
    let (gw, gb) = split_pair(grads, dw.range(), db.range());
    let wv = &params[w.range()];
    let run = if local { conv::local_backward::<T> } else { conv::backward::<T> };
    match dx {
        Some((dx, write)) => {
            let (d, work, r) = split2(arena, dx, rows, ws, inputs, target);
            run(&g, rows, r.get(x, rows), wv, r.get(dy, rows), gw, gb, Some((d, acc(write))), work);
        }
        None => {
            let (work, r) = split(arena, ABuf { offset: ws.offset, cols: ws.cols, space: ws.space }, 1, inputs, target);
            run(&g, rows, r.get(x, rows), wv, r.get(dy, rows), gw, gb, None, work);
        }
    }
}

/// Forward was `y = f(conv(x) + b)`, so now `dz = dy·f'(y)` (over dy), `dW`, `db`, `dx`.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    grads: &mut [T],
    g: Geometry,
    f: Act,
    x: ABuf,
    y: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
    ws: ABuf,
) {
    window_backward(false, rows, mem, params, grads, g, f, x, y, w, dy, dw, db, dx, ws)
}

/// Forward was `y = f(local(x) + b)`, so now `dz = dy·f'(y)` (over dy), `dW`, `db`, `dx`.
#[allow(clippy::too_many_arguments)]
pub fn local_backward<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    grads: &mut [T],
    g: Geometry,
    f: Act,
    x: ABuf,
    y: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
    ws: ABuf,
) {
    window_backward(true, rows, mem, params, grads, g, f, x, y, w, dy, dw, db, dx, ws)
}

#[allow(clippy::too_many_arguments)]
pub fn pool_backward<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    op: PoolOp,
    g: Geometry,
    x: ABuf,
    y: ABuf,
    dy: ABuf,
    dx: ABuf,
    write: Write,
) {
    let (d, r) = mem.split(dx, rows);
    pool::backward(op, &g, rows, r.get(x, rows), r.get(y, rows), r.get(dy, rows), d, acc(write));
}

#[allow(clippy::too_many_arguments)]
pub fn maxout_backward<T: Float>(
    rows: usize,
    mem: Mem<'_, T>,
    pieces: usize,
    z: ABuf,
    y: ABuf,
    dy: ABuf,
    dz: ABuf,
    write: Write,
) {
    let (d, r) = mem.split(dz, rows);
    pool::maxout_backward(pieces, r.get(z, rows), r.get(y, rows), r.get(dy, rows), d, acc(write));
}
