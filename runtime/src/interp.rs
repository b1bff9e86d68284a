//! Executes a [`Plan`]: walks its steps and dispatches each to a kernel. This is the living
//! specification of what a plan means; generated code makes the same kernel calls.

use crate::plan::{ABuf, Plan, Space, Step};
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

/// Everything a step may read while it writes one or two arena ranges.
pub struct Reads<'a, T> {
    /// Readable stretches of the arena: (start offset, slice).
    segs: [(usize, &'a [T]); 3],
    inputs: &'a [&'a [T]],
    target: &'a [T],
}

impl<'a, T> Reads<'a, T> {
    /// Read access to everything (for a step that writes only parameter gradients).
    pub fn all(arena: &'a [T], inputs: &'a [&'a [T]], target: &'a [T]) -> Self {
        Reads { segs: [(0, arena), (usize::MAX, &[]), (usize::MAX, &[])], inputs, target }
    }

    /// The first `rows` rows of buffer `b`.
    pub fn get(&self, b: ABuf, rows: usize) -> &'a [T] {
        let r = b.range(rows);
        match b.space {
            Space::Input(i) => &self.inputs[i][r],
            Space::Target => &self.target[r],
            Space::Arena => {
                for &(start, seg) in &self.segs {
                    if start <= r.start && r.end <= start.saturating_add(seg.len()) {
                        return &seg[r.start - start..r.end - start];
                    }
                }
                panic!("a step reads a buffer it writes");
            }
        }
    }
}

/// The arena range `w` (which a step writes) and read access to everything else.
pub fn split<'a, T>(
    arena: &'a mut [T],
    w: ABuf,
    rows: usize,
    inputs: &'a [&'a [T]],
    target: &'a [T],
) -> (&'a mut [T], Reads<'a, T>) {
    assert_eq!(w.space, Space::Arena, "steps write only the arena");
    let w = w.range(rows);
    let (left, rest) = arena.split_at_mut(w.start);
    let (mid, right) = rest.split_at_mut(w.end - w.start);
    (mid, Reads { segs: [(0, left), (w.end, right), (usize::MAX, &[])], inputs, target })
}

/// Two disjoint arena ranges `a` (`rows` rows) and `b` (all of it: a workspace), and read
/// access to everything else.
pub fn split2<'a, T>(
    arena: &'a mut [T],
    a: ABuf,
    rows: usize,
    b: ABuf,
    inputs: &'a [&'a [T]],
    target: &'a [T],
) -> (&'a mut [T], &'a mut [T], Reads<'a, T>) {
    assert!(a.space == Space::Arena && b.space == Space::Arena, "steps write only the arena");
    let (ra, rb) = (a.range(rows), b.offset..b.offset + b.cols);
    assert!(ra.end <= rb.start || rb.end <= ra.start, "two written buffers overlap");
    let (first, second, swap) = if ra.start <= rb.start { (ra, rb, false) } else { (rb, ra, true) };
    let (l, rest) = arena.split_at_mut(first.start);
    let (m1, rest) = rest.split_at_mut(first.end - first.start);
    let (between, rest) = rest.split_at_mut(second.start - first.end);
    let (m2, right) = rest.split_at_mut(second.end - second.start);
    let reads = Reads { segs: [(0, l), (first.end, between), (second.end, right)], inputs, target };
    if swap {
        (m2, m1, reads)
    } else {
        (m1, m2, reads)
    }
}

impl<T: Float> Exec<T> {
    /// Memory for `plan` (at most [`MAX_INPUTS`] inputs), with zero parameters (see the trainer's initialization) and a
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

    /// Runs every step for a batch of `rows` on the inputs and target set with
    /// [`Exec::set_input`] and [`Exec::set_target`]. Returns the loss if the plan has one.
    pub fn run(
        &mut self,
        plan: &Plan,
        rows: usize,
        updater: Option<&mut dyn Updater<T>>,
    ) -> Result<Option<f64>, ExecError> {
        let inputs = std::mem::take(&mut self.inputs);
        let target = std::mem::take(&mut self.target);
        let result = {
            let mut slots: [&[T]; MAX_INPUTS] = [&[]; MAX_INPUTS];
            for (s, v) in slots.iter_mut().zip(&inputs) {
                *s = v;
            }
            self.run_on(plan, rows, &slots[..inputs.len().min(MAX_INPUTS)], &target, updater)
        };
        self.inputs = inputs;
        self.target = target;
        result
    }

    /// Runs every step on inputs and a target held by the caller (row-major, `rows` rows
    /// each): nothing is copied. Returns the loss if the plan has one.
    pub fn run_on(
        &mut self,
        plan: &Plan,
        rows: usize,
        inputs: &[&[T]],
        target: &[T],
        mut updater: Option<&mut dyn Updater<T>>,
    ) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        check_batch(plan, rows, inputs, target);
        let mut loss_value = None;
        for s in &plan.steps {
            match s {
                Step::Update => {
                    if let Some(u) = updater.as_deref_mut() {
                        u.update(&mut self.params, &self.grads);
                    }
                }
                other => {
                    let mem = Mem { arena: &mut self.arena, inputs, target };
                    if let Some(l) = step(other, rows, mem, &self.params, &mut self.grads, &mut self.rng)? {
                        loss_value = Some(l);
                    }
                }
            }
        }
        Ok(loss_value)
    }

    /// Runs every step but the update, with parameters, inputs and target held elsewhere (a
    /// data-parallel worker reads the master's weights and its share of the batch).
    pub fn run_shared(
        &mut self,
        plan: &Plan,
        rows: usize,
        params: &[T],
        inputs: &[&[T]],
        target: &[T],
    ) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        check_batch(plan, rows, inputs, target);
        let mut loss_value = None;
        for s in plan.steps.iter().filter(|s| !matches!(s, Step::Update)) {
            let mem = Mem { arena: &mut self.arena, inputs, target };
            if let Some(l) = step(s, rows, mem, params, &mut self.grads, &mut self.rng)? {
                loss_value = Some(l);
            }
        }
        Ok(loss_value)
    }
}

/// The caller's batch must hold what the plan reads.
fn check_batch<T>(plan: &Plan, rows: usize, inputs: &[&[T]], target: &[T]) {
    assert_eq!(inputs.len(), plan.inputs.len(), "the plan reads {} inputs", plan.inputs.len());
    for (b, x) in plan.inputs.iter().zip(inputs) {
        assert!(x.len() >= rows * b.cols, "an input needs {rows} rows of {} values", b.cols);
    }
    if let Some((t, _)) = plan.target {
        assert!(target.len() >= rows * t.cols, "the target needs {rows} rows of {} values", t.cols);
    }
}

/// The most inputs a model may have.
pub const MAX_INPUTS: usize = 16;

fn check_rows(plan: &Plan, rows: usize) {
    assert!(rows >= 1 && rows <= plan.max_batch, "batch of {rows} rows for a plan of at most {}", plan.max_batch);
}

/// The batch memory one step sees: the arena, the model inputs and the target.
pub struct Mem<'a, T> {
    pub arena: &'a mut [T],
    pub inputs: &'a [&'a [T]],
    pub target: &'a [T],
}

impl<'a, T> Mem<'a, T> {
    /// The buffer `w` (which the step writes), and read access to everything else.
    pub fn split(self, w: ABuf, rows: usize) -> (&'a mut [T], Reads<'a, T>) {
        split(self.arena, w, rows, self.inputs, self.target)
    }
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
    use crate::ops;
    match s {
        Step::Dense { x, w, b, y } => ops::dense(rows, mem, params, *x, *w, *b, *y),
        Step::DenseAct { f, x, w, b, y } => ops::dense_act(rows, mem, params, *f, *x, *w, *b, *y),
        Step::Activation { f, x, y } => ops::activation(rows, mem, *f, *x, *y),
        Step::ActivationInPlace { f, y } => ops::activation_in_place(rows, mem, *f, *y),
        Step::Dropout { keep, x, mask, y } => ops::dropout(rows, mem, rng, *keep, *x, *mask, *y),
        Step::DropoutInPlace { keep, mask, y } => ops::dropout_in_place(rows, mem, rng, *keep, *mask, *y),
        Step::Softmax { x, y } => ops::softmax(rows, mem, *x, *y),
        Step::Add { xs, y } => ops::add(rows, mem, xs, *y),
        Step::Concat { xs, y } => ops::concat(rows, mem, xs, *y),
        Step::SoftmaxCrossEntropy { logits, target, dlogits } => {
            return ops::softmax_cross_entropy(rows, mem, *logits, *target, *dlogits).map(Some)
        }
        Step::CrossEntropy { probs, target, dprobs } => {
            return ops::cross_entropy(rows, mem, *probs, *target, *dprobs).map(Some)
        }
        Step::SigmoidBinaryCrossEntropy { logits, target, dlogits } => {
            return Ok(Some(ops::sigmoid_binary_cross_entropy(rows, mem, *logits, *target, *dlogits)))
        }
        Step::BinaryCrossEntropy { probs, target, dprobs } => {
            return Ok(Some(ops::binary_cross_entropy(rows, mem, *probs, *target, *dprobs)))
        }
        Step::MeanSquaredError { y, target, dy } => {
            return Ok(Some(ops::mean_squared_error(rows, mem, *y, *target, *dy)))
        }
        Step::DenseBackward { x, w, dy, dw, db, dx } => {
            ops::dense_backward(rows, mem, params, grads, *x, *w, *dy, *dw, *db, *dx)
        }
        Step::DenseActBackward { f, x, y, w, dy, dw, db, dx } => {
            ops::dense_act_backward(rows, mem, params, grads, *f, *x, *y, *w, *dy, *dw, *db, *dx)
        }
        Step::ActivationBackward { f, x, y, dy, dx, write } => {
            ops::activation_backward(rows, mem, *f, *x, *y, *dy, *dx, *write)
        }
        Step::ActivationBackwardInPlace { f, y, d } => ops::activation_backward_in_place(rows, mem, *f, *y, *d),
        Step::DropoutBackward { mask, dy, dx, write } => ops::dropout_backward(rows, mem, *mask, *dy, *dx, *write),
        Step::DropoutBackwardInPlace { mask, d } => ops::dropout_backward_in_place(rows, mem, *mask, *d),
        Step::SoftmaxBackward { y, dy, dx, write } => ops::softmax_backward(rows, mem, *y, *dy, *dx, *write),
        Step::Copy { x, x_col, y, write } => ops::copy(rows, mem, *x, *x_col, *y, *write),
        Step::Conv { g, f, x, w, b, y, ws } => ops::conv(rows, mem, params, *g, *f, *x, *w, *b, *y, *ws),
        Step::Local { g, f, x, w, b, y, ws } => ops::local(rows, mem, params, *g, *f, *x, *w, *b, *y, *ws),
        Step::Pool { op, g, x, y } => ops::pool(rows, mem, *op, *g, *x, *y),
        Step::Maxout { pieces, z, y } => ops::maxout(rows, mem, *pieces, *z, *y),
        Step::ConvBackward { g, f, x, y, w, dy, dw, db, dx, ws } => {
            ops::conv_backward(rows, mem, params, grads, *g, *f, *x, *y, *w, *dy, *dw, *db, *dx, *ws)
        }
        Step::LocalBackward { g, f, x, y, w, dy, dw, db, dx, ws } => {
            ops::local_backward(rows, mem, params, grads, *g, *f, *x, *y, *w, *dy, *dw, *db, *dx, *ws)
        }
        Step::PoolBackward { op, g, x, y, dy, dx, write } => {
            ops::pool_backward(rows, mem, *op, *g, *x, *y, *dy, *dx, *write)
        }
        Step::MaxoutBackward { pieces, z, y, dy, dz, write } => {
            ops::maxout_backward(rows, mem, *pieces, *z, *y, *dy, *dz, *write)
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
