//! One function per step kind, all of one form: `fn(&mut Cx<T>, fields…) -> Result<(),
//! ExecError>`, with the fields in the order of the step table (`step.rs`). The interpreter
//! dispatches to them through [`crate::plan::Step::run`]; generated code calls them directly
//! with every shape and offset a constant. Both executors therefore run the same code and
//! agree bit for bit.

use crate::kernels::{conv, dense, elementwise, loss, pool};
use crate::mem::{draw_mask, split_pair, Cx, ExecError, Rows};
use crate::plan::{ABuf, Act, Geometry, PBuf, PoolOp, Write};
use crate::Float;

/// What every step function returns: only a loss step can fail (on a label out of range).
pub type Done = Result<(), ExecError>;

fn acc(w: Write) -> bool {
    w == Write::Accumulate
}

/// A dense layer: `y = x·Wᵀ + b`.
pub fn dense<T: Float>(cx: &mut Cx<'_, T>, x: ABuf, w: PBuf, b: PBuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    let (w, b) = (&cx.params[w.range()], &cx.params[b.range()]);
    dense::forward_layer(cx.team, cx.steps, None, rows, x.cols, y.cols, r.get(x, rows), w, b, out);
    Ok(())
}

/// A dense layer with its activation fused: `y = f(x·Wᵀ + b)`.
pub fn dense_act<T: Float>(cx: &mut Cx<'_, T>, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    let (w, b) = (&cx.params[w.range()], &cx.params[b.range()]);
    dense::forward_layer(cx.team, cx.steps, Some(f), rows, x.cols, y.cols, r.get(x, rows), w, b, out);
    Ok(())
}

/// `y = f(bn(x·Wᵀ + b))` with the running averages: the product, then each row normalized
/// as the batch norm's own inference step would (the same arithmetic, so the same bits),
/// then the activation, in one step and one buffer.
#[allow(clippy::too_many_arguments)]
pub fn dense_folded<T: Float>(
    cx: &mut Cx<'_, T>,
    f: Act,
    x: ABuf,
    w: PBuf,
    b: PBuf,
    gamma: PBuf,
    beta: PBuf,
    mean: PBuf,
    var: PBuf,
    eps: f64,
    y: ABuf,
) -> Done {
    let (rows, steps, lengths) = (cx.rows, cx.steps, cx.lengths);
    let (out, r) = cx.mem.split(y, rows);
    let p = cx.params;
    // The product as the unfolded dense step computes it, so that folding changes no bit.
    let (w, b) = (&p[w.range()], &p[b.range()]);
    dense::forward_layer(cx.team, steps, None, rows, x.cols, y.cols, r.get(x, rows), w, b, out);
    let norm = crate::kernels::norm::Stats {
        gamma: &p[gamma.range()],
        beta: &p[beta.range()],
        mean: &p[mean.range()],
        var: &p[var.range()],
        eps,
    };
    crate::kernels::norm::infer_in_place(out, rows, steps, lengths, &norm);
    if f != Act::Identity {
        elementwise::activation_in_place(f, out);
    }
    Ok(())
}

/// `y = f(x)`.
pub fn activation<T: Float>(cx: &mut Cx<'_, T>, f: Act, x: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    elementwise::activation(f, r.get(x, rows), out);
    Ok(())
}

/// `y = f(y)` in place.
pub fn activation_in_place<T: Float>(cx: &mut Cx<'_, T>, f: Act, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, _) = cx.mem.split(y, rows);
    elementwise::activation_in_place(f, out);
    Ok(())
}

/// Inverted dropout: keeps each value with probability `keep`, scaled by `1/keep`; the mask is kept for the backward pass.
pub fn dropout<T: Float>(cx: &mut Cx<'_, T>, keep: f64, x: ABuf, mask: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    draw_mask(keep, cx.rng, &mut cx.mem.arena[mask.range(rows)]);
    let (out, r) = cx.mem.split(y, rows);
    elementwise::mul(r.get(mask, rows), r.get(x, rows), out, false);
    Ok(())
}

/// Inverted dropout in place.
pub fn dropout_in_place<T: Float>(cx: &mut Cx<'_, T>, keep: f64, mask: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    draw_mask(keep, cx.rng, &mut cx.mem.arena[mask.range(rows)]);
    let (out, r) = cx.mem.split(y, rows);
    elementwise::mul_in_place(r.get(mask, rows), out);
    Ok(())
}

/// Softmax over each row.
pub fn softmax<T: Float>(cx: &mut Cx<'_, T>, x: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    elementwise::softmax(x.cols, r.get(x, rows), out);
    Ok(())
}

/// The sum of `xs`.
pub fn add<T: Float>(cx: &mut Cx<'_, T>, xs: &[ABuf], y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    out.copy_from_slice(r.get(xs[0], rows));
    for x in &xs[1..] {
        out.iter_mut().zip(r.get(*x, rows)).for_each(|(o, &v)| *o += v);
    }
    Ok(())
}

/// `xs` side by side in each row.
pub fn concat<T: Float>(cx: &mut Cx<'_, T>, xs: &[ABuf], y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    let mut col = 0;
    for x in xs {
        elementwise::scatter_cols(rows, x.cols, y.cols, col, r.get(*x, rows), out);
        col += x.cols;
    }
    Ok(())
}

/// The step `PerStep`: the following steps work on `batch × steps` rows of one step's
/// features (a layer at every step of a sequence), or, with `steps` 1, on the batch again.
pub fn per_step<T>(cx: &mut Cx<'_, T>, steps: usize) -> Done {
    cx.steps = steps.max(1);
    cx.rows = cx.batch * cx.steps;
    Ok(())
}

/// The step `LastStep`: one row (a batch of one), at a sequence of `steps` steps.
pub fn last_step<T>(cx: &mut Cx<'_, T>, steps: usize) -> Done {
    cx.steps = steps.max(1);
    cx.rows = cx.batch;
    Ok(())
}

/// A label outside the classes at row `at` of a loss step's rows.
fn label_error(valid: Rows, at: usize, label: f64, classes: usize) -> ExecError {
    let (row, step) = valid.place(at);
    ExecError::LabelOutOfRange { row, step, label, classes }
}

/// Softmax and cross-entropy fused: the mean loss, and its gradient with respect to the logits.
pub fn softmax_cross_entropy<T: Float>(
    cx: &mut Cx<'_, T>,
    logits: ABuf,
    target: ABuf,
    dlogits: ABuf,
    smoothing: f64,
) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dlogits, rows);
    let t = r.get(target, rows);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let l = loss::softmax_cross_entropy(rows, logits.cols, r.get(logits, rows), t, d, valid, smoothing)
        .map_err(|at| label_error(valid, at, t[at].to_f64(), logits.cols))?;
    cx.loss = Some(l);
    Ok(())
}

/// Cross-entropy of probabilities: the mean loss and its gradient.
pub fn cross_entropy<T: Float>(cx: &mut Cx<'_, T>, probs: ABuf, target: ABuf, dprobs: ABuf, smoothing: f64) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dprobs, rows);
    let t = r.get(target, rows);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let l = loss::cross_entropy(rows, probs.cols, r.get(probs, rows), t, d, valid, smoothing)
        .map_err(|at| label_error(valid, at, t[at].to_f64(), probs.cols))?;
    cx.loss = Some(l);
    Ok(())
}

/// Sigmoid and binary cross-entropy fused: the mean loss and its gradient with respect to the logits.
pub fn sigmoid_binary_cross_entropy<T: Float>(cx: &mut Cx<'_, T>, logits: ABuf, target: ABuf, dlogits: ABuf) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dlogits, rows);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let l = loss::sigmoid_binary_cross_entropy(rows, logits.cols, r.get(logits, rows), r.get(target, rows), d, valid);
    cx.loss = Some(l);
    Ok(())
}

/// Binary cross-entropy of probabilities: the mean loss and its gradient.
pub fn binary_cross_entropy<T: Float>(cx: &mut Cx<'_, T>, probs: ABuf, target: ABuf, dprobs: ABuf) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dprobs, rows);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let l = loss::binary_cross_entropy(rows, probs.cols, r.get(probs, rows), r.get(target, rows), d, valid);
    cx.loss = Some(l);
    Ok(())
}

/// Half the mean squared error, and its gradient.
pub fn mean_squared_error<T: Float>(cx: &mut Cx<'_, T>, y: ABuf, target: ABuf, dy: ABuf) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dy, rows);
    let valid = Rows { steps: cx.steps, lengths: cx.lengths };
    let l = loss::mean_squared_error(rows, y.cols, r.get(y, rows), r.get(target, rows), d, valid);
    cx.loss = Some(l);
    Ok(())
}

/// The gradients of a dense layer: `dx`, `dW`, `db`.
pub fn dense_backward<T: Float>(
    cx: &mut Cx<'_, T>,
    x: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
) -> Done {
    let rows = cx.rows;
    let (inp, out) = (x.cols, dy.cols);
    let (gw, gb) = split_pair(cx.grads, dw.range(), db.range());
    let w = &cx.params[w.range()];
    match dx {
        Some((dx, write)) => {
            let (g, r) = cx.mem.split(dx, rows);
            dense::backward(cx.team, rows, inp, out, r.get(x, rows), w, r.get(dy, rows), gw, gb, Some((g, acc(write))));
        }
        None => {
            let r = cx.mem.all();
            dense::backward(cx.team, rows, inp, out, r.get(x, rows), w, r.get(dy, rows), gw, gb, None);
        }
    }
    Ok(())
}

/// The gradients of a dense layer with a fused activation.
#[allow(clippy::too_many_arguments)]
pub fn dense_act_backward<T: Float>(
    cx: &mut Cx<'_, T>,
    f: Act,
    x: ABuf,
    y: ABuf,
    w: PBuf,
    dy: ABuf,
    dw: PBuf,
    db: PBuf,
    dx: Option<(ABuf, Write)>,
) -> Done {
    {
        // dz = dy · f'(z), in place over dy.
        let rows = cx.rows;
        let (d, r) = cx.mem.split(dy, rows);
        dense::activation_backward(cx.team, f, rows, x.cols, dy.cols, r.get(y, rows), d);
    }
    dense_backward(cx, x, w, dy, dw, db, dx)
}

/// The gradient through an activation.
pub fn activation_backward<T: Float>(
    cx: &mut Cx<'_, T>,
    f: Act,
    x: ABuf,
    y: ABuf,
    dy: ABuf,
    dx: ABuf,
    write: Write,
) -> Done {
    let rows = cx.rows;
    let (g, r) = cx.mem.split(dx, rows);
    elementwise::activation_backward(f, r.get(x, rows), r.get(y, rows), r.get(dy, rows), g, acc(write));
    Ok(())
}

/// `y = f(x)` and `slope = f'(x)`.
pub fn activation_slope<T: Float>(cx: &mut Cx<'_, T>, f: Act, x: ABuf, y: ABuf, slope: ABuf) -> Done {
    let rows = cx.rows;
    let (out, s, r) = cx.mem.split_rows2(y, slope, rows);
    elementwise::activation_with_slope(f, r.get(x, rows), out, s);
    Ok(())
}

/// `slope = f'(y)`, then `y = f(y)`.
pub fn activation_slope_in_place<T: Float>(cx: &mut Cx<'_, T>, f: Act, y: ABuf, slope: ABuf) -> Done {
    let rows = cx.rows;
    let (out, s, _) = cx.mem.split_rows2(y, slope, rows);
    elementwise::activation_with_slope_in_place(f, out, s);
    Ok(())
}

/// The gradient through an activation, in place.
pub fn activation_backward_in_place<T: Float>(cx: &mut Cx<'_, T>, f: Act, y: ABuf, d: ABuf) -> Done {
    let rows = cx.rows;
    let (g, r) = cx.mem.split(d, rows);
    elementwise::activation_backward_in_place(f, r.get(y, rows), g);
    Ok(())
}

/// The gradient through dropout (the kept mask).
pub fn dropout_backward<T: Float>(cx: &mut Cx<'_, T>, mask: ABuf, dy: ABuf, dx: ABuf, write: Write) -> Done {
    let rows = cx.rows;
    let (g, r) = cx.mem.split(dx, rows);
    elementwise::mul(r.get(mask, rows), r.get(dy, rows), g, acc(write));
    Ok(())
}

/// The gradient through dropout, in place.
pub fn dropout_backward_in_place<T: Float>(cx: &mut Cx<'_, T>, mask: ABuf, d: ABuf) -> Done {
    let rows = cx.rows;
    let (g, r) = cx.mem.split(d, rows);
    elementwise::mul_in_place(r.get(mask, rows), g);
    Ok(())
}

/// The gradient through softmax.
pub fn softmax_backward<T: Float>(cx: &mut Cx<'_, T>, y: ABuf, dy: ABuf, dx: ABuf, write: Write) -> Done {
    let rows = cx.rows;
    let (g, r) = cx.mem.split(dx, rows);
    elementwise::softmax_backward(y.cols, r.get(y, rows), r.get(dy, rows), g, acc(write));
    Ok(())
}

/// `dx (+)= dy[:, x_col .. x_col + x.cols]`
pub fn copy<T: Float>(cx: &mut Cx<'_, T>, x: ABuf, x_col: usize, y: ABuf, write: Write) -> Done {
    let rows = cx.rows;
    let (g, r) = cx.mem.split(x, rows);
    elementwise::gather_cols(rows, x.cols, y.cols, x_col, r.get(y, rows), g, acc(write));
    Ok(())
}

/// `y = f(conv(x) + b)`.
#[allow(clippy::too_many_arguments)]
pub fn conv<T: Float>(cx: &mut Cx<'_, T>, g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf) -> Done {
    let rows = cx.rows;
    let (out, work, r) = cx.mem.split2(y, rows, ws);
    // (Without a bias, `bias = false`, `b` is empty and the kernels start from zero.)
    conv::forward(&g, f, rows, r.get(x, rows), &cx.params[w.range()], &cx.params[b.range()], out, work);
    Ok(())
}

/// `y = f(conv'(x) + b')` with a batch norm folded into the weights: `W'` and `b'` computed
/// into the tail of the workspace first (a multiply per weight: `K·D·F²`, against `oh·ow`
/// times that per example for the product), then the convolution with them.
#[allow(clippy::too_many_arguments)]
pub fn conv_folded<T: Float>(
    cx: &mut Cx<'_, T>,
    g: Geometry,
    f: Act,
    x: ABuf,
    w: PBuf,
    b: PBuf,
    gamma: PBuf,
    beta: PBuf,
    mean: PBuf,
    var: PBuf,
    eps: f64,
    y: ABuf,
    ws: ABuf,
) -> Done {
    let (rows, p) = (cx.rows, cx.params);
    let (out, work, r) = cx.mem.split2(y, rows, ws);
    let (work, fold) = work.split_at_mut(work.len() - (w.len + g.k));
    let per = w.len / g.k.max(1);
    for k in 0..g.k {
        let s = p[gamma.offset + k].to_f64() / (p[var.offset + k].to_f64() + eps).sqrt();
        let st = T::from_f64(s);
        let from = &p[w.offset + k * per..w.offset + (k + 1) * per];
        fold[k * per..(k + 1) * per].iter_mut().zip(from).for_each(|(o, &v)| *o = v * st);
        let bias = if b.len == 0 { 0.0 } else { p[b.offset + k].to_f64() };
        fold[w.len + k] = T::from_f64((bias - p[mean.offset + k].to_f64()) * s + p[beta.offset + k].to_f64());
    }
    let (wf, bf) = fold.split_at(w.len);
    conv::forward(&g, f, rows, r.get(x, rows), wf, bf, out, work);
    Ok(())
}

/// `y = f(local(x) + b)`.
#[allow(clippy::too_many_arguments)]
pub fn local<T: Float>(cx: &mut Cx<'_, T>, g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf) -> Done {
    let rows = cx.rows;
    let (out, work, r) = cx.mem.split2(y, rows, ws);
    conv::local_forward(&g, rows, r.get(x, rows), &cx.params[w.range()], &cx.params[b.range()], out, work);
    elementwise::activation_in_place(f, out);
    Ok(())
}

/// A pooling layer.
pub fn pool<T: Float>(cx: &mut Cx<'_, T>, op: PoolOp, g: Geometry, x: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    pool::forward(op, &g, rows, r.get(x, rows), out);
    Ok(())
}

/// Maxout: the largest of each group of `pieces` consecutive values.
pub fn maxout<T: Float>(cx: &mut Cx<'_, T>, pieces: usize, z: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    pool::maxout(pieces, r.get(z, rows), out);
    Ok(())
}

/// The backward pass of a convolution (`local` false) or a locally-connected layer.
#[allow(clippy::too_many_arguments)]
fn window_backward<T: Float>(
    local: bool,
    cx: &mut Cx<'_, T>,
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
) -> Done {
    let rows = cx.rows;
    {
        // dz = dy · f'(y), in place over dy.
        let (d, r) = cx.mem.split(dy, rows);
        elementwise::activation_backward_in_place(f, r.get(y, rows), d);
    }
    let params = cx.params;
    let wv = &params[w.range()];
    let run = if local { conv::local_backward::<T> } else { conv::backward::<T> };
    let b = conv_grads(cx, (dw, db), dx, ws);
    run(&g, rows, b.reads.get(x, rows), wv, b.reads.get(dy, rows), b.dw, b.db, b.dx, b.ws);
    Ok(())
}

/// What a convolution's backward step writes, and read access to the rest.
pub(crate) struct ConvGrads<'a, T> {
    /// `dW`, and `db` (empty without a bias: `bias = false`; the kernels skip it).
    pub dw: &'a mut [T],
    pub db: &'a mut [T],
    /// `dx`, and whether the step adds to it.
    pub dx: Option<(&'a mut [T], bool)>,
    /// The im2col workspace.
    pub ws: &'a mut [T],
    pub reads: crate::mem::Reads<'a, T>,
}

/// A convolution's backward buffers: `dW` and `db` in the gradients, `dx` (the step's rows)
/// and the workspace in the arena.
pub(crate) fn conv_grads<'a, T: Float>(
    cx: &'a mut Cx<'_, T>,
    (dw, db): (PBuf, PBuf),
    dx: Option<(ABuf, Write)>,
    ws: ABuf,
) -> ConvGrads<'a, T> {
    let (gw, gb): (&mut [T], &mut [T]) =
        if db.len == 0 { (&mut cx.grads[dw.range()], &mut []) } else { split_pair(cx.grads, dw.range(), db.range()) };
    let rows = cx.rows;
    match dx {
        Some((dx, write)) => {
            let (d, work, reads) = cx.mem.split2(dx, rows, ws);
            ConvGrads { dw: gw, db: gb, dx: Some((d, acc(write))), ws: work, reads }
        }
        None => {
            let (work, reads) = cx.mem.workspace(ws);
            ConvGrads { dw: gw, db: gb, dx: None, ws: work, reads }
        }
    }
}

/// Forward was `y = f(conv(x) + b)`, so now `dz = dy·f'(y)` (over dy), `dW`, `db`, `dx`.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward<T: Float>(
    cx: &mut Cx<'_, T>,
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
) -> Done {
    window_backward(false, cx, g, f, x, y, w, dy, dw, db, dx, ws)
}

/// Forward was `y = f(local(x) + b)`, so now `dz = dy·f'(y)` (over dy), `dW`, `db`, `dx`.
#[allow(clippy::too_many_arguments)]
pub fn local_backward<T: Float>(
    cx: &mut Cx<'_, T>,
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
) -> Done {
    window_backward(true, cx, g, f, x, y, w, dy, dw, db, dx, ws)
}

/// The gradient through a pooling layer.
#[allow(clippy::too_many_arguments)]
pub fn pool_backward<T: Float>(
    cx: &mut Cx<'_, T>,
    op: PoolOp,
    g: Geometry,
    x: ABuf,
    y: ABuf,
    dy: ABuf,
    dx: ABuf,
    write: Write,
) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dx, rows);
    pool::backward(op, &g, rows, r.get(x, rows), r.get(y, rows), r.get(dy, rows), d, acc(write));
    Ok(())
}

/// The gradient through maxout (to each group's largest).
#[allow(clippy::too_many_arguments)]
pub fn maxout_backward<T: Float>(
    cx: &mut Cx<'_, T>,
    pieces: usize,
    z: ABuf,
    y: ABuf,
    dy: ABuf,
    dz: ABuf,
    write: Write,
) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dz, rows);
    pool::maxout_backward(pieces, r.get(z, rows), r.get(y, rows), r.get(dy, rows), d, acc(write));
    Ok(())
}
