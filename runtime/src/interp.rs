//! Executes a [`Plan`]: walks its steps and dispatches each to a kernel. This is the living
//! specification of what a plan means; generated code must make the same kernel calls.

use crate::kernels::{dense, elementwise, loss};
use crate::plan::{ABuf, Plan, Step, TargetKind, Write};
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
                write!(f, "row {row} of the batch has label {label}, outside the {classes} classes 0..{}", classes - 1)
            }
        }
    }
}

/// Called at the plan's `Update` step with the parameters and their gradients.
pub trait Updater<T> {
    fn update(&mut self, params: &mut [T], grads: &[T]);
}

/// The memory a plan runs in: the arena, the parameters and their gradients.
pub struct Exec<T> {
    pub arena: Vec<T>,
    pub params: Vec<T>,
    pub grads: Vec<T>,
    rng: ChaCha8Rng,
}

/// The arena split around one written range, so that a step can read other buffers while
/// writing that one.
struct Reads<'a, T> {
    left: &'a [T],
    right: &'a [T],
    right_start: usize,
}

impl<T> Reads<'_, T> {
    fn get(&self, r: Range<usize>) -> &[T] {
        if r.end <= self.left.len() {
            &self.left[r]
        } else {
            assert!(r.start >= self.right_start, "a step reads the buffer it writes");
            &self.right[r.start - self.right_start..r.end - self.right_start]
        }
    }
}

fn split<T>(arena: &mut [T], w: Range<usize>) -> (&mut [T], Reads<'_, T>) {
    let (left, rest) = arena.split_at_mut(w.start);
    let (mid, right) = rest.split_at_mut(w.end - w.start);
    (mid, Reads { left, right, right_start: w.end })
}

impl<T: Float> Exec<T> {
    /// Memory for `plan`, with zero parameters (see the trainer's initialization) and a
    /// dropout generator seeded with `seed`.
    pub fn new(plan: &Plan, seed: u64) -> Self {
        Exec {
            arena: vec![T::ZERO; plan.arena_len],
            params: vec![T::ZERO; plan.params_len],
            grads: vec![T::ZERO; plan.params_len],
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Restarts the dropout generator (a gradient check needs the same masks every run).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Writes one model input for a batch of `rows` (row-major, `rows × cols`).
    pub fn set_input(&mut self, plan: &Plan, index: usize, rows: usize, data: &[T]) {
        let b = plan.inputs[index];
        self.arena[b.range(rows)].copy_from_slice(&data[..rows * b.cols]);
    }

    pub fn set_target(&mut self, plan: &Plan, rows: usize, data: &[T]) {
        if let Some((b, _)) = plan.target {
            self.arena[b.range(rows)].copy_from_slice(&data[..rows * b.cols]);
        }
    }

    pub fn output(&self, plan: &Plan, rows: usize) -> &[T] {
        &self.arena[plan.output.range(rows)]
    }

    pub fn buffer(&self, b: ABuf, rows: usize) -> &[T] {
        &self.arena[b.range(rows)]
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
                    if let Some(l) = step(other, rows, &mut self.arena, &self.params, &mut self.grads, &mut self.rng)? {
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
            if let Some(l) = step(s, rows, &mut self.arena, params, &mut self.grads, &mut self.rng)? {
                loss_value = Some(l);
            }
        }
        Ok(loss_value)
    }
}

fn check_rows(plan: &Plan, rows: usize) {
    assert!(rows >= 1 && rows <= plan.max_batch, "batch of {rows} rows for a plan of at most {}", plan.max_batch);
}

/// One step of a plan; returns the loss if the step computes one.
fn step<T: Float>(
    s: &Step,
    rows: usize,
    arena: &mut [T],
    params: &[T],
    grads: &mut [T],
    rng: &mut ChaCha8Rng,
) -> Result<Option<f64>, ExecError> {
    let mut loss_value = None;
    match s {
        Step::Dense { x, w, b, y } => {
            let (out, reads) = split(arena, y.range(rows));
            let p = params;
            dense::forward(rows, x.cols, y.cols, reads.get(x.range(rows)), &p[w.range()], &p[b.range()], out);
        }
        Step::Activation { f, x, y } => {
            let (out, reads) = split(arena, y.range(rows));
            elementwise::activation(*f, reads.get(x.range(rows)), out);
        }
        Step::Dropout { keep, x, mask, y } => {
            let (m, _) = split(arena, mask.range(rows));
            let mut draw = || rng.random::<f64>();
            let keep_t = T::from_f64(1.0 / keep);
            for v in m.iter_mut() {
                *v = if draw() < *keep { keep_t } else { T::ZERO };
            }
            let (out, reads) = split(arena, y.range(rows));
            elementwise::mul(reads.get(mask.range(rows)), reads.get(x.range(rows)), out, false);
        }
        Step::Softmax { x, y } => {
            let (out, reads) = split(arena, y.range(rows));
            elementwise::softmax(x.cols, reads.get(x.range(rows)), out);
        }
        Step::Add { xs, y } => {
            let (out, reads) = split(arena, y.range(rows));
            out.copy_from_slice(reads.get(xs[0].range(rows)));
            for x in &xs[1..] {
                out.iter_mut().zip(reads.get(x.range(rows))).for_each(|(o, &v)| *o += v);
            }
        }
        Step::Concat { xs, y } => {
            let mut col = 0;
            for x in xs {
                let (out, reads) = split(arena, y.range(rows));
                elementwise::scatter_cols(rows, x.cols, y.cols, col, reads.get(x.range(rows)), out);
                col += x.cols;
            }
        }
        Step::SoftmaxCrossEntropy { logits, target, dlogits } => {
            let (d, reads) = split(arena, dlogits.range(rows));
            let t = reads.get(target.range(rows));
            let l = loss::softmax_cross_entropy(rows, logits.cols, reads.get(logits.range(rows)), t, d)
                .map_err(|row| ExecError::LabelOutOfRange { row, label: t[row].to_f64(), classes: logits.cols })?;
            loss_value = Some(l);
        }
        Step::SigmoidBinaryCrossEntropy { logits, target, dlogits } => {
            let (d, reads) = split(arena, dlogits.range(rows));
            let l = loss::sigmoid_binary_cross_entropy(
                rows,
                logits.cols,
                reads.get(logits.range(rows)),
                reads.get(target.range(rows)),
                d,
            );
            loss_value = Some(l);
        }
        Step::MeanSquaredError { y, target, dy } => {
            let (d, reads) = split(arena, dy.range(rows));
            let l = loss::mean_squared_error(rows, y.cols, reads.get(y.range(rows)), reads.get(target.range(rows)), d);
            loss_value = Some(l);
        }
        Step::DenseBackward { x, w, dy, dw, db, dx } => {
            let (inp, out) = (x.cols, dy.cols);
            let (gw, gb) = split_pair(grads, dw.range(), db.range());
            dense::backward_params(rows, inp, out, &arena[x.range(rows)], &arena[dy.range(rows)], gw, gb);
            if let Some((dx, write)) = dx {
                let (g, reads) = split(arena, dx.range(rows));
                let acc = *write == Write::Accumulate;
                dense::backward_input(rows, inp, out, &params[w.range()], reads.get(dy.range(rows)), g, acc);
            }
        }
        Step::ActivationBackward { f, x, y, dy, dx, write } => {
            let (g, reads) = split(arena, dx.range(rows));
            let acc = *write == Write::Accumulate;
            elementwise::activation_backward(
                *f,
                reads.get(x.range(rows)),
                reads.get(y.range(rows)),
                reads.get(dy.range(rows)),
                g,
                acc,
            );
        }
        Step::DropoutBackward { mask, dy, dx, write } => {
            let (g, reads) = split(arena, dx.range(rows));
            let acc = *write == Write::Accumulate;
            elementwise::mul(reads.get(mask.range(rows)), reads.get(dy.range(rows)), g, acc);
        }
        Step::Copy { x, x_col, y, write } => {
            // dx (+)= dy[:, x_col .. x_col + x.cols]
            let (g, reads) = split(arena, x.range(rows));
            elementwise::gather_cols(
                rows,
                x.cols,
                y.cols,
                *x_col,
                reads.get(y.range(rows)),
                g,
                *write == Write::Accumulate,
            );
        }
        Step::Update => {}
    }
    Ok(loss_value)
}

/// Two disjoint mutable ranges of one slice.
fn split_pair<T>(v: &mut [T], a: Range<usize>, b: Range<usize>) -> (&mut [T], &mut [T]) {
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
