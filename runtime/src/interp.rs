//! Executes a [`Plan`]: walks its steps and dispatches each to a kernel. This is the living
//! specification of what a plan means; generated code makes the same kernel calls.

use crate::kernels::{dense, elementwise, loss};
use crate::plan::{ABuf, Plan, Space, Step, TargetKind, Write};
use crate::Float;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// A run that could not complete: a problem in the data, not in the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecError {
    /// Row `row` of the batch has a class label outside `0..classes`.
    LabelOutOfRange { row: usize, label: f64, classes: usize },
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::LabelOutOfRange { row, label, classes } => {
                write!(
                    f,
                    "row {row} of the batch has label {label}, outside the {classes} classes 0..{}",
                    classes.saturating_sub(1)
                )
            }
        }
    }
}

/// Called at the plan's `Update` step with the parameters and their gradients.
pub trait Updater<T> {
    fn update(&mut self, params: &mut [T], grads: &[T]);
}

/// The memory a plan runs in: the arena, the inputs and target of the batch, the parameters
/// and their gradients.
pub struct Exec<T> {
    pub arena: Vec<T>,
    pub inputs: Vec<Vec<T>>,
    pub target: Vec<T>,
    pub params: Vec<T>,
    pub grads: Vec<T>,
    rng: ChaCha8Rng,
}

/// Everything a step may read while it writes one arena range.
pub struct Reads<'a, T> {
    left: &'a [T],
    right: &'a [T],
    right_start: usize,
    inputs: &'a [Vec<T>],
    target: &'a [T],
}

impl<'a, T> Reads<'a, T> {
    /// The first `rows` rows of buffer `b`.
    pub fn get(&self, b: ABuf, rows: usize) -> &'a [T] {
        let r = b.range(rows);
        match b.space {
            Space::Input(i) => &self.inputs[i][r],
            Space::Target => &self.target[r],
            Space::Arena if r.end <= self.left.len() => &self.left[r],
            Space::Arena => {
                assert!(r.start >= self.right_start, "a step reads the buffer it writes");
                &self.right[r.start - self.right_start..r.end - self.right_start]
            }
        }
    }
}

/// The arena range `w` (which a step writes) and read access to everything else.
pub fn split<'a, T>(
    arena: &'a mut [T],
    w: ABuf,
    rows: usize,
    inputs: &'a [Vec<T>],
    target: &'a [T],
) -> (&'a mut [T], Reads<'a, T>) {
    assert_eq!(w.space, Space::Arena, "steps write only the arena");
    let w = w.range(rows);
    let (left, rest) = arena.split_at_mut(w.start);
    let (mid, right) = rest.split_at_mut(w.end - w.start);
    (mid, Reads { left, right, right_start: w.end, inputs, target })
}

impl<T: Float> Exec<T> {
    /// Memory for `plan`, with zero parameters (see the trainer's initialization) and a
    /// dropout generator seeded with `seed`.
    pub fn new(plan: &Plan, seed: u64) -> Self {
        Exec {
            arena: vec![T::ZERO; plan.arena_len],
            inputs: plan.inputs.iter().map(|b| vec![T::ZERO; b.cols * plan.max_batch]).collect(),
            target: plan.target.map_or(Vec::new(), |(t, _)| vec![T::ZERO; t.cols * plan.max_batch]),
            params: vec![T::ZERO; plan.params_len],
            grads: vec![T::ZERO; plan.params_len],
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Restarts the dropout generator (a gradient check needs the same masks every run).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Sets one model input for a batch of `rows` (row-major, `rows × cols`).
    pub fn set_input(&mut self, plan: &Plan, index: usize, rows: usize, data: &[T]) {
        let n = rows * plan.inputs[index].cols;
        self.inputs[index][..n].copy_from_slice(&data[..n]);
    }

    pub fn set_target(&mut self, plan: &Plan, rows: usize, data: &[T]) {
        if let Some((b, _)) = plan.target {
            let n = rows * b.cols;
            self.target[..n].copy_from_slice(&data[..n]);
        }
    }

    pub fn output(&self, plan: &Plan, rows: usize) -> &[T] {
        self.buffer(plan.output, rows)
    }

    pub fn buffer(&self, b: ABuf, rows: usize) -> &[T] {
        let r = b.range(rows);
        match b.space {
            Space::Arena => &self.arena[r],
            Space::Input(i) => &self.inputs[i][r],
            Space::Target => &self.target[r],
        }
    }

    /// Runs every step for a batch of `rows`. Returns the loss if the plan has one.
    pub fn run(
        &mut self,
        plan: &Plan,
        rows: usize,
        mut updater: Option<&mut dyn Updater<T>>,
    ) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        let mut loss_value = None;
        for s in &plan.steps {
            match s {
                Step::Update => {
                    if let Some(u) = updater.as_deref_mut() {
                        u.update(&mut self.params, &self.grads);
                    }
                }
                other => {
                    let mem = Mem { arena: &mut self.arena, inputs: &self.inputs, target: &self.target };
                    if let Some(l) = step(other, rows, mem, &self.params, &mut self.grads, &mut self.rng)? {
                        loss_value = Some(l);
                    }
                }
            }
        }
        Ok(loss_value)
    }

    /// Runs every step but the update with parameters held elsewhere (a data-parallel
    /// worker reads the master copy). Returns the loss if the plan has one.
    pub fn run_shared(&mut self, plan: &Plan, rows: usize, params: &[T]) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        let mut loss_value = None;
        for s in plan.steps.iter().filter(|s| !matches!(s, Step::Update)) {
            let mem = Mem { arena: &mut self.arena, inputs: &self.inputs, target: &self.target };
            if let Some(l) = step(s, rows, mem, params, &mut self.grads, &mut self.rng)? {
                loss_value = Some(l);
            }
        }
        Ok(loss_value)
    }
}

fn check_rows(plan: &Plan, rows: usize) {
    assert!(rows >= 1 && rows <= plan.max_batch, "batch of {rows} rows for a plan of at most {}", plan.max_batch);
}

/// The batch memory one step sees.
pub struct Mem<'a, T> {
    pub arena: &'a mut [T],
    pub inputs: &'a [Vec<T>],
    pub target: &'a [T],
}

impl<'a, T> Mem<'a, T> {
    fn split(self, w: ABuf, rows: usize) -> (&'a mut [T], Reads<'a, T>) {
        split(self.arena, w, rows, self.inputs, self.target)
    }
}

fn acc(w: &Write) -> bool {
    *w == Write::Accumulate
}

/// One step of a plan; returns the loss if the step computes one.
pub fn step<T: Float>(
    s: &Step,
    rows: usize,
    mem: Mem<'_, T>,
    params: &[T],
    grads: &mut [T],
    rng: &mut ChaCha8Rng,
) -> Result<Option<f64>, ExecError> {
    match s {
        Step::Dense { x, w, b, y } => {
            let (out, r) = mem.split(*y, rows);
            dense::forward(rows, x.cols, y.cols, r.get(*x, rows), &params[w.range()], &params[b.range()], out);
        }
        Step::DenseAct { f, x, w, b, y } => {
            let (out, r) = mem.split(*y, rows);
            dense::forward_act(*f, rows, x.cols, y.cols, r.get(*x, rows), &params[w.range()], &params[b.range()], out);
        }
        Step::Activation { f, x, y } => {
            let (out, r) = mem.split(*y, rows);
            elementwise::activation(*f, r.get(*x, rows), out);
        }
        Step::ActivationInPlace { f, y } => {
            let (out, _) = mem.split(*y, rows);
            elementwise::activation_in_place(*f, out);
        }
        Step::Dropout { keep, x, mask, y } => {
            let Mem { arena, inputs, target } = mem;
            draw_mask(*keep, rng, &mut arena[mask.range(rows)]);
            let (out, r) = split(arena, *y, rows, inputs, target);
            elementwise::mul(r.get(*mask, rows), r.get(*x, rows), out, false);
        }
        Step::DropoutInPlace { keep, mask, y } => {
            let Mem { arena, inputs, target } = mem;
            draw_mask(*keep, rng, &mut arena[mask.range(rows)]);
            let (out, r) = split(arena, *y, rows, inputs, target);
            elementwise::mul_in_place(r.get(*mask, rows), out);
        }
        Step::Softmax { x, y } => {
            let (out, r) = mem.split(*y, rows);
            elementwise::softmax(x.cols, r.get(*x, rows), out);
        }
        Step::Add { xs, y } => {
            let (out, r) = mem.split(*y, rows);
            out.copy_from_slice(r.get(xs[0], rows));
            for x in &xs[1..] {
                out.iter_mut().zip(r.get(*x, rows)).for_each(|(o, &v)| *o += v);
            }
        }
        Step::Concat { xs, y } => {
            let (out, r) = mem.split(*y, rows);
            let mut col = 0;
            for x in xs {
                elementwise::scatter_cols(rows, x.cols, y.cols, col, r.get(*x, rows), out);
                col += x.cols;
            }
        }
        Step::SoftmaxCrossEntropy { logits, target, dlogits } => {
            let (d, r) = mem.split(*dlogits, rows);
            let t = r.get(*target, rows);
            let l = loss::softmax_cross_entropy(rows, logits.cols, r.get(*logits, rows), t, d)
                .map_err(|row| ExecError::LabelOutOfRange { row, label: t[row].to_f64(), classes: logits.cols })?;
            return Ok(Some(l));
        }
        Step::CrossEntropy { probs, target, dprobs } => {
            let (d, r) = mem.split(*dprobs, rows);
            let t = r.get(*target, rows);
            let l = loss::cross_entropy(rows, probs.cols, r.get(*probs, rows), t, d)
                .map_err(|row| ExecError::LabelOutOfRange { row, label: t[row].to_f64(), classes: probs.cols })?;
            return Ok(Some(l));
        }
        Step::SigmoidBinaryCrossEntropy { logits, target, dlogits } => {
            let (d, r) = mem.split(*dlogits, rows);
            return Ok(Some(loss::sigmoid_binary_cross_entropy(
                rows,
                logits.cols,
                r.get(*logits, rows),
                r.get(*target, rows),
                d,
            )));
        }
        Step::BinaryCrossEntropy { probs, target, dprobs } => {
            let (d, r) = mem.split(*dprobs, rows);
            return Ok(Some(loss::binary_cross_entropy(
                rows,
                probs.cols,
                r.get(*probs, rows),
                r.get(*target, rows),
                d,
            )));
        }
        Step::MeanSquaredError { y, target, dy } => {
            let (d, r) = mem.split(*dy, rows);
            return Ok(Some(loss::mean_squared_error(rows, y.cols, r.get(*y, rows), r.get(*target, rows), d)));
        }
        Step::DenseBackward { x, w, dy, dw, db, dx } => {
            let (inp, out) = (x.cols, dy.cols);
            let (gw, gb) = split_pair(grads, dw.range(), db.range());
            match dx {
                Some((dx, write)) => {
                    let (g, r) = mem.split(*dx, rows);
                    dense::backward_params(rows, inp, out, r.get(*x, rows), r.get(*dy, rows), gw, gb);
                    dense::backward_input(rows, inp, out, &params[w.range()], r.get(*dy, rows), g, acc(write));
                }
                None => {
                    let r = Reads {
                        left: &*mem.arena,
                        right: &[],
                        right_start: usize::MAX,
                        inputs: mem.inputs,
                        target: mem.target,
                    };
                    dense::backward_params(rows, inp, out, r.get(*x, rows), r.get(*dy, rows), gw, gb);
                }
            }
        }
        Step::DenseActBackward { f, x, y, w, dy, dw, db, dx } => {
            let Mem { arena, inputs, target } = mem;
            {
                // dz = dy · f'(z), in place over dy.
                let (d, r) = split(arena, *dy, rows, inputs, target);
                elementwise::activation_backward_in_place(*f, r.get(*y, rows), d);
            }
            let (inp, out) = (x.cols, dy.cols);
            let (gw, gb) = split_pair(grads, dw.range(), db.range());
            match dx {
                Some((dx, write)) => {
                    let (g, r) = split(arena, *dx, rows, inputs, target);
                    dense::backward_params(rows, inp, out, r.get(*x, rows), r.get(*dy, rows), gw, gb);
                    dense::backward_input(rows, inp, out, &params[w.range()], r.get(*dy, rows), g, acc(write));
                }
                None => {
                    let r = Reads { left: &*arena, right: &[], right_start: usize::MAX, inputs, target };
                    dense::backward_params(rows, inp, out, r.get(*x, rows), r.get(*dy, rows), gw, gb);
                }
            }
        }
        Step::ActivationBackward { f, x, y, dy, dx, write } => {
            let (g, r) = mem.split(*dx, rows);
            elementwise::activation_backward(*f, r.get(*x, rows), r.get(*y, rows), r.get(*dy, rows), g, acc(write));
        }
        Step::ActivationBackwardInPlace { f, y, d } => {
            let (g, r) = mem.split(*d, rows);
            elementwise::activation_backward_in_place(*f, r.get(*y, rows), g);
        }
        Step::DropoutBackward { mask, dy, dx, write } => {
            let (g, r) = mem.split(*dx, rows);
            elementwise::mul(r.get(*mask, rows), r.get(*dy, rows), g, acc(write));
        }
        Step::DropoutBackwardInPlace { mask, d } => {
            let (g, r) = mem.split(*d, rows);
            elementwise::mul_in_place(r.get(*mask, rows), g);
        }
        Step::SoftmaxBackward { y, dy, dx, write } => {
            let (g, r) = mem.split(*dx, rows);
            elementwise::softmax_backward(y.cols, r.get(*y, rows), r.get(*dy, rows), g, acc(write));
        }
        Step::Copy { x, x_col, y, write } => {
            // dx (+)= dy[:, x_col .. x_col + x.cols]
            let (g, r) = mem.split(*x, rows);
            elementwise::gather_cols(rows, x.cols, y.cols, *x_col, r.get(*y, rows), g, acc(write));
        }
        Step::Update => {}
    }
    Ok(None)
}

/// Inverted dropout's mask: 1/keep with probability `keep`, else 0.
pub fn draw_mask<T: Float>(keep: f64, rng: &mut ChaCha8Rng, mask: &mut [T]) {
    let scale = T::from_f64(1.0 / keep);
    for m in mask.iter_mut() {
        *m = if rng.random::<f64>() < keep { scale } else { T::ZERO };
    }
}

/// Two disjoint mutable ranges of one slice.
pub fn split_pair<T>(v: &mut [T], a: Range<usize>, b: Range<usize>) -> (&mut [T], &mut [T]) {
    if a.start < b.start {
        let (l, r) = v.split_at_mut(b.start);
        (&mut l[a], &mut r[..b.end - b.start])
    } else {
        let (l, r) = v.split_at_mut(a.start);
        (&mut r[..a.end - a.start], &mut l[b])
    }
}

/// The class of each row: the index of its largest output.
pub fn argmax_rows<T: Float>(cols: usize, y: &[T]) -> Vec<usize> {
    y.chunks_exact(cols)
        .map(|r| {
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Whether a plan's target holds class labels.
pub fn classifies(plan: &Plan) -> bool {
    matches!(plan.target, Some((_, TargetKind::Class)))
}
