//! The training loop: shuffled batches, the compiled step, per-epoch validation, schedules,
//! the update-ratio check, and a clean stop on request or on a non-finite loss.

use super::{Options, Rates, Stepper};
use crate::data::Inputs;
use crate::interp::{argmax_rows, Exec, ExecError};
use crate::plan::{Loss, Plan};
use crate::time::Instant;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How many of an epoch's last updates the update/weight ratio is averaged over.
const RATIO_STEPS: usize = 10;

/// Rows of examples: `x` is `rows × x_cols`, `y` is `rows × y_cols` (one class index per row
/// for classification); for padded sequences, each row's length (else empty).
#[derive(Clone, Copy, Debug)]
pub struct Data<'a> {
    /// Inputs, `rows × x_cols`.
    pub x: crate::data::Inputs<'a>,
    /// Values per input row.
    pub x_cols: usize,
    /// Targets, `rows × y_cols`.
    pub y: &'a [f32],
    /// Values per target row.
    pub y_cols: usize,
    /// Each row's sequence length (empty: all full length).
    pub lengths: &'a [usize],
    /// For the windows of a text read by a model that carries nothing from one to the next:
    /// the text, to cut every epoch's windows at a new offset (row `k · streams + r` is
    /// window `k` of part `r`, as the rows of `x` and `y` are at offset 0).
    pub stream: Option<Stream<'a>>,
}

/// A text cut into `streams` parts, each read in windows of `window` characters.
#[derive(Clone, Copy, Debug)]
pub struct Stream<'a> {
    /// The text's ids.
    pub ids: &'a [u32],
    /// Parts read side by side.
    pub streams: usize,
    /// Characters per window.
    pub window: usize,
    /// The input's steps (at least `window`; the rest is padding).
    pub steps: usize,
    /// `Some(v)`: each character one-hot over a vocabulary of `v`; `None`: its id.
    pub one_hot: Option<usize>,
}

impl Stream<'_> {
    /// The offset of epoch `epoch`'s windows, `0..window`, drawn from the seed (the same on
    /// every process and after a resume).
    pub fn offset(&self, seed: u64, epoch: usize) -> usize {
        use rand::RngExt;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            seed ^ 0x5EED_0FF5_E700_0000 ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        rng.random_range(0..self.window.max(1))
    }

    /// Rows `rows` at `offset`: each window's characters into `x` (ids or one-hot, padding
    /// zero) and the next characters into `y`.
    fn gather(
        &self,
        rows: &[usize],
        offset: usize,
        (x, x_cols): (&mut [f32], usize),
        (y, y_cols): (&mut [f32], usize),
    ) {
        let part = self.ids.len().saturating_sub(1) / self.streams.max(1);
        let n = self.window;
        for (j, &i) in rows.iter().enumerate() {
            let (k, r) = (i / self.streams.max(1), i % self.streams.max(1));
            // The last windows of the text, shifted past its end, read its last `n + 1`.
            let start = (r * part + k * n + offset).min(self.ids.len().saturating_sub(n + 1));
            let (xr, yr) = (&mut x[j * x_cols..(j + 1) * x_cols], &mut y[j * y_cols..(j + 1) * y_cols]);
            xr.fill(0.0);
            yr.fill(0.0);
            for t in 0..n.min(self.steps) {
                let (id, next) = (self.ids[start + t], self.ids[start + t + 1]);
                match self.one_hot {
                    Some(v) => xr[t * v + id as usize] = 1.0,
                    None => xr[t] = id as f32,
                }
                yr[t] = next as f32;
            }
        }
    }
}

impl Data<'_> {
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.x.len().checked_div(self.x_cols).unwrap_or(0)
    }
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// The mean data loss of the epoch's batches (without the regularization penalty).
    pub train_loss: f64,
    /// The regularization penalty `λ₂/2‖w‖² + λ₁|w|` of the weights at the epoch's end.
    pub penalty: f64,
    /// The accuracy on a sample of the training set at the epoch's end (as big as the
    /// validation split, at least 1,000 examples), beside the validation accuracy: the gap
    /// the notes watch for overfitting.
    pub train_accuracy: Option<f64>,
    /// The validation loss, if a split is held out.
    pub val_loss: Option<f64>,
    /// The validation accuracy, for a classifier.
    pub val_accuracy: Option<f64>,
    /// The learning rate of the epoch.
    pub lr: f64,
    /// Training speed.
    pub samples_per_sec: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// ‖Δw‖/‖w‖ per weight tensor at the epoch's last update.
    pub ratios: Vec<super::UpdateRatio>,
    /// Every layer's activations on the training sample.
    pub layers: Vec<super::LayerStats>,
    /// ‖g‖ per parameter tensor, of the epoch's last batch.
    pub grad_norms: Vec<(String, f64)>,
}

/// Why training stopped before its last epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    NonFinite {
        /// The epoch (1-based).
        epoch: usize,
        /// The step within it.
        step: usize,
        /// The loss.
        loss: f64,
    },
    /// A batch the model cannot take (a class label out of range).
    Data(ExecError),
    /// The observer could not save the epoch's checkpoint.
    Checkpoint(String),
    /// A saved state that does not fit the run.
    Resume(String),
    /// Inputs left in their file could not be read (the file and what went wrong).
    Read(String),
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::NonFinite { epoch, step, loss } => write!(
                f,
                "the training loss became {loss} at epoch {epoch}, step {step}; training stopped (try a lower learning rate, or check the data for extreme values)"
            ),
            TrainError::Data(e) => write!(f, "{e}"),
            TrainError::Checkpoint(e) => write!(f, "{e}; training stopped"),
            TrainError::Resume(e) => write!(f, "cannot resume: {e}"),
            TrainError::Read(e) => write!(f, "{e}; training stopped"),
        }
    }
}

/// Told about progress; returns `false` from `batch` to stop after that batch.
pub trait Observer {
    /// After step `step` of `steps` of epoch `epoch`, with its loss.
    fn batch(&mut self, epoch: usize, step: usize, steps: usize, loss: f64) -> bool;
    /// After each epoch.
    fn epoch(&mut self, stats: &EpochStats);
    /// After each completed epoch: the weights to keep (the average when one is kept), and
    /// everything needed to resume from here (the history is `state.history`). An error
    /// stops training.
    fn checkpoint(&mut self, weights: &[f32], state: &Resume) -> Result<(), String> {
        let _ = (weights, state);
        Ok(())
    }
}

/// Everything a run needs to continue after a completed epoch exactly as if it had never
/// stopped: the raw weights, the optimizer's state, the schedule's, the random streams'
/// positions and the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Resume {
    /// Epochs completed.
    pub epochs_done: usize,
    /// The raw weights (not the average).
    pub params: Vec<f32>,
    /// The optimizer's state.
    pub opt: super::OptState<f32>,
    /// A plateau schedule's rate, best watched loss and epochs without improvement.
    pub plateau: (f64, f64, usize),
    /// The dropout generators' positions (the master's, then each worker's).
    pub rngs: Vec<u128>,
    /// Every completed epoch.
    pub history: Vec<EpochStats>,
    /// With early stopping: the epoch of the lowest validation loss so far, and its weights.
    pub best: Option<Best>,
}

/// The epoch of early stopping's lowest validation loss so far, and its weights (the ones
/// evaluated: the average when one is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Its validation loss.
    pub loss: f64,
    /// Its weights.
    pub weights: Vec<f32>,
}

/// What training left behind.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Every completed epoch.
    pub history: Vec<EpochStats>,
    /// The weights to keep: the average when one is kept, else the trained weights; with
    /// early stopping, the best epoch's.
    pub weights: Vec<f32>,
    /// Where training was stopped early at the observer's request: (epoch, step).
    pub interrupted: Option<(usize, usize)>,
    /// With early stopping: the best epoch, and whether the run stopped before its last
    /// epoch for want of a better one.
    pub stopped: Option<(usize, bool)>,
    /// In a distributed run: the steps whose gradients were shared, and the seconds this
    /// process spent in their all-reduce (with the wait for the slowest process).
    pub communication: Option<(usize, f64)>,
}

/// The loss and accuracy of a model on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The mean loss.
    pub loss: f64,
    /// The fraction classified right, for a classifier.
    pub accuracy: Option<f64>,
    /// The predicted class of each row (classification only).
    pub predictions: Vec<usize>,
}

/// Trains `params` (already initialized) on `train`, validating on `val` after each epoch;
/// or, with `resume`, continues a run from where its state was saved (`params` is then
/// ignored).
#[allow(clippy::too_many_arguments)]
pub fn fit(
    train_plan: &Plan,
    eval_plan: &Plan,
    loss: Loss,
    params: &mut Vec<f32>,
    train: Data,
    val: Option<Data>,
    opts: &Options,
    observer: &mut dyn Observer,
    resume: Option<Resume>,
) -> Result<Outcome, TrainError> {
    // A stream read in windows that carry states from one to the next is read in order.
    let in_order = opts.bptt.is_some() && !train_plan.carried.is_empty();
    let start_params = match &resume {
        Some(r) => r.params.clone(),
        None => std::mem::take(params),
    };
    let mut stepper = Stepper::new(train_plan, start_params, opts, opts.threads);
    let mut eval_exec = Exec::<f32>::new(eval_plan, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let rows = train.rows();
    let batch = opts.batch.min(train_plan.max_batch).max(1);
    let steps = rows.div_ceil(batch);
    let mut order: Vec<usize> = (0..rows).collect();
    // The batch starts on a cache line: the dense tiles load whole rows of it as vectors, and
    // a vector that straddles two lines costs two loads (measured: 7–10% of the MLP's step).
    let mut xb = crate::mem::aligned(batch * train.x_cols);
    let mut yb = vec![0f32; batch * train.y_cols];
    let mut lb: Vec<usize> = Vec::with_capacity(batch);
    let mut history = Vec::new();
    let mut rates = Rates::new(opts.optimizer.lr(), opts.schedule).with_warmup(opts.warmup);
    let mut interrupted = None;
    let mut first = 0;
    let mut best: Option<Best> = None;
    if let Some(r) = resume {
        if !stepper.opt.set_state(r.opt) || !stepper.set_rng_positions(&r.rngs) {
            return Err(TrainError::Resume("the saved state is of another model, optimizer or thread count".into()));
        }
        // The shuffles of the epochs done, replayed: the generator and the order as they were.
        if !in_order {
            for _ in 0..r.epochs_done {
                order.shuffle(&mut rng);
            }
        }
        rates.restore(r.plateau);
        history = r.history;
        first = r.epochs_done;
        best = r.best;
    }
    // Independent windows of a text are cut at a new offset every epoch, so that no window
    // (and no character's place in one) is seen twice.
    let stream = train.stream.filter(|_| !in_order);
    let mut stopped_early = false;
    let (mut draws, mut scratch) = (Vec::new(), Vec::new());
    for epoch in first..opts.epochs {
        let mut augment_rng = crate::data::augment::Augment::generator(opts.seed, epoch);
        // Early stopping: enough epochs without a better validation loss (also when resumed
        // after they passed).
        if let (Some(p), Some(b)) = (opts.patience, &best) {
            if epoch - b.epoch >= p {
                stopped_early = true;
                break;
            }
        }
        // Windows of streams stay in order (each batch continues the previous one's streams)
        // and start from zero states every epoch; examples are shuffled — and so are the
        // windows of a model that carries nothing from one to the next (a transformer's are
        // independent examples).
        if in_order {
            stepper.reset_state();
        } else {
            order.shuffle(&mut rng);
        }
        let offset = stream.map(|st| st.offset(opts.seed, epoch));
        let start = Instant::now();
        let (mut total, mut seen) = (0.0, 0usize);
        for step in 0..steps {
            let idx = &order[step * batch..((step + 1) * batch).min(rows)];
            let n = idx.len();
            lb.clear();
            lb.extend(idx.iter().filter_map(|&i| train.lengths.get(i)));
            // The rows this process computes: the batch, or in a distributed run its share.
            let local = stepper.local_rows(n);
            let rows_here = &idx[local.clone()];
            match (stream, offset) {
                (Some(st), Some(o)) => st.gather(rows_here, o, (&mut xb, train.x_cols), (&mut yb, train.y_cols)),
                _ => gather_batch(&train, rows_here, stepper.team(), &mut xb, &mut yb),
            }
            if let Some(e) = train.x.failure() {
                return Err(TrainError::Read(e));
            }
            if let Some(a) = &opts.augment {
                // Drawn for the whole batch (every process alike), applied to this share.
                a.draw(&mut augment_rng, n, &mut draws);
                for (d, x) in draws[local.clone()].iter().zip(xb.chunks_exact_mut(train.x_cols)) {
                    a.apply(*d, x, &mut scratch);
                }
            }
            stepper.opt.lr = rates.at_step(epoch, step, steps, opts.epochs);
            // ‖Δw‖/‖w‖ is averaged over the epoch's last updates (one alone is noisy).
            stepper.opt.track_ratios = step + RATIO_STEPS >= steps;
            let (xs, ys) = (&xb[..local.len() * train.x_cols], &yb[..local.len() * train.y_cols]);
            let l = stepper.step_local(xs, ys, &lb, n).map_err(TrainError::Data)?;
            if !l.is_finite() {
                return Err(TrainError::NonFinite { epoch: epoch + 1, step: step + 1, loss: l });
            }
            total += l * n as f64;
            seen += n;
            // A distributed run stops where every process agrees: after the next shared step.
            if !observer.batch(epoch + 1, step + 1, steps, l) {
                stepper.ask_stop();
                if !stepper.is_distributed() {
                    interrupted = Some((epoch + 1, step + 1));
                    break;
                }
            }
            if stepper.stop_agreed() {
                interrupted = Some((epoch + 1, step + 1));
                break;
            }
        }
        stepper.flush();
        let seconds = start.elapsed().as_secs_f64();
        let weights = stepper.opt.eval_weights(stepper.params());
        eval_exec.params.copy_from_slice(weights);
        let penalty = super::regularization(&train_plan.params, weights, opts.l1, opts.l2, None);
        let evaluation = match val {
            Some(v) if v.rows() > 0 => Some(evaluate(eval_plan, &mut eval_exec, loss, v, batch)),
            _ => None,
        };
        let (train_eval, layers) = watch_sample(eval_plan, &mut eval_exec, loss, &train, val, opts, batch);
        if let Some(e) = train.x.failure().or_else(|| val.and_then(|v| v.x.failure())) {
            return Err(TrainError::Read(e));
        }
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss: total / seen.max(1) as f64,
            penalty,
            train_accuracy: train_eval.accuracy,
            layers,
            grad_norms: super::gradient_norms(train_plan, stepper.grads()),
            val_loss: evaluation.as_ref().map(|e| e.loss),
            val_accuracy: evaluation.as_ref().and_then(|e| e.accuracy),
            lr: stepper.opt.lr,
            samples_per_sec: seen as f64 / seconds.max(1e-9),
            seconds,
            ratios: stepper.opt.take_ratios(),
        };
        rates.observe(stats.val_loss.unwrap_or(stats.train_loss));
        if opts.patience.is_some() {
            // The watched loss: validation's (the recipe requires a split), else training's.
            let watched = stats.val_loss.unwrap_or(stats.train_loss);
            if best.as_ref().is_none_or(|b| watched < b.loss) {
                let weights = stepper.opt.eval_weights(stepper.params()).to_vec();
                best = Some(Best { epoch: epoch + 1, loss: watched, weights });
            }
        }
        observer.epoch(&stats);
        history.push(stats);
        if interrupted.is_some() {
            break;
        }
        let state = Resume {
            epochs_done: epoch + 1,
            params: stepper.params().to_vec(),
            opt: stepper.opt.state(),
            plateau: rates.state(),
            rngs: stepper.rng_positions(),
            history: history.clone(),
            best: best.clone(),
        };
        observer.checkpoint(stepper.opt.eval_weights(stepper.params()), &state).map_err(TrainError::Checkpoint)?;
    }
    let stopped = best.as_ref().map(|b| (b.epoch, stopped_early));
    let weights = match best {
        Some(b) => b.weights,
        None => stepper.opt.eval_weights(stepper.params()).to_vec(),
    };
    let communication = stepper.communication();
    *params = stepper.into_params();
    Ok(Outcome { history, weights, interrupted, stopped, communication })
}

/// Copies the rows `rows` of `train` into the batch buffers: the inputs gathered by the
/// step's threads where it has some (each the rows a batch-splitting worker of the same number
/// computes, so they are in its cache, and in half the time), the targets.
fn gather_batch(train: &Data, rows: &[usize], team: Option<&super::Team>, xb: &mut [f32], yb: &mut [f32]) {
    let (cols, xs) = (train.x_cols, &mut xb[..rows.len() * train.x_cols]);
    match (team, train.x) {
        (Some(team), Inputs::Bytes(..) | Inputs::F32(_)) if cols > 0 && rows.len() >= 2 * team.threads() => {
            let per = rows.len().div_ceil(team.threads());
            let jobs: Vec<_> = rows.chunks(per).zip(xs.chunks_mut(per * cols)).collect();
            team.run(jobs, |_, (r, d)| train.x.gather(r, cols, d));
        }
        _ => train.x.gather(rows, cols, xs),
    }
    for (r, &i) in rows.iter().enumerate() {
        yb[r * train.y_cols..(r + 1) * train.y_cols]
            .copy_from_slice(&train.y[i * train.y_cols..(i + 1) * train.y_cols]);
    }
}

/// One pass over a sample of the training set as large as the validation split (at least
/// 1,000 examples; whole windows of every stream for a stream): its accuracy, and what every
/// layer does.
fn watch_sample(
    eval_plan: &Plan,
    exec: &mut Exec<f32>,
    loss: Loss,
    train: &Data,
    val: Option<Data>,
    opts: &Options,
    batch: usize,
) -> (Evaluation, Vec<super::LayerStats>) {
    let rows = train.rows();
    let mut sample = val.map_or(0, |v| v.rows()).max(1000).min(rows);
    if opts.bptt.is_some() {
        sample = (sample / batch).max(1) * batch;
    }
    let sample = sample.min(rows);
    let prefix = Data {
        stream: None,
        x: train.x.range(0, sample * train.x_cols),
        y: &train.y[..sample * train.y_cols],
        lengths: train.lengths.get(..sample).unwrap_or(&[]),
        ..*train
    };
    let mut watch = super::LayerWatch::default();
    let e = evaluate_watched(eval_plan, exec, loss, prefix, batch, &mut |i, s, n, r, l| watch.see(i, s, n, r, l));
    (e, watch.finish(eval_plan))
}

/// Running totals for scoring a model's outputs batch by batch.
#[derive(Clone, Debug, Default)]
pub struct Scores {
    total: f64,
    correct: usize,
    rows: usize,
    cols: usize,
    predictions: Vec<usize>,
}

impl Scores {
    /// Adds one batch: `out` is `rows × cols` model outputs (probabilities for the
    /// cross-entropies), `y` the targets.
    pub fn add(&mut self, loss: Loss, cols: usize, out: &[f32], y: &[f32]) {
        let rows = out.len() / cols.max(1);
        self.rows += rows;
        self.cols = cols;
        match loss {
            Loss::CrossEntropy(_) => {
                for (r, &label) in y.iter().enumerate().take(rows) {
                    let p = out.get(r * cols + label as usize).copied().unwrap_or(0.0) as f64;
                    self.total -= p.max(1e-12).ln();
                }
                let pred = argmax_rows(cols, out);
                self.correct += pred.iter().zip(y).filter(|(p, &l)| **p == l as usize).count();
                self.predictions.extend(pred);
            }
            Loss::BinaryCrossEntropy => {
                for (&p, &t) in out.iter().zip(y) {
                    let p = (p as f64).clamp(1e-12, 1.0 - 1e-12);
                    let t = t as f64;
                    self.total -= (t * p.ln() + (1.0 - t) * (1.0 - p).ln()) / cols as f64;
                    self.correct += usize::from((p >= 0.5) == (t >= 0.5));
                }
            }
            Loss::MeanSquaredError => {
                for (&p, &t) in out.iter().zip(y) {
                    self.total += 0.5 * ((p - t) as f64).powi(2);
                }
            }
        }
    }

    /// The mean loss and the accuracy of everything scored.
    pub fn finish(self, loss: Loss) -> Evaluation {
        let denom = match loss {
            Loss::BinaryCrossEntropy => (self.rows * self.cols).max(1),
            _ => self.rows.max(1),
        };
        Evaluation {
            loss: self.total / self.rows.max(1) as f64,
            accuracy: match loss {
                Loss::MeanSquaredError => None,
                _ => Some(self.correct as f64 / denom as f64),
            },
            predictions: self.predictions,
        }
    }
}

/// Runs the inference plan over `data` in batches and scores its outputs with `loss`; an
/// output at every step is scored at the steps inside each sequence.
pub fn evaluate(plan: &Plan, exec: &mut Exec<f32>, loss: Loss, data: Data, batch: usize) -> Evaluation {
    evaluate_watched(plan, exec, loss, data, batch, &mut |_, _, _, _, _| {})
}

/// [`evaluate`], with `watch` seeing every step of every batch.
pub fn evaluate_watched(
    plan: &Plan,
    exec: &mut Exec<f32>,
    loss: Loss,
    data: Data,
    batch: usize,
    watch: &mut crate::interp::Watcher<'_, f32>,
) -> Evaluation {
    let rows = data.rows();
    let batch = batch.min(plan.max_batch).max(1);
    let mut scores = Scores::default();
    let steps = plan.sequence.filter(|s| s.per_step_output).map_or(1, |s| s.steps);
    let (mut out, mut y, mut xbuf) = (Vec::new(), Vec::new(), crate::mem::aligned(0));
    // Streams (a plan that carries states) are read from their start.
    exec.reset_state(plan);
    for start in (0..rows).step_by(batch) {
        let n = batch.min(rows - start);
        let lengths = data.lengths.get(start..start + n).unwrap_or(&[]);
        exec.set_lengths(lengths);
        // An inference plan has no loss step and no data-dependent failure.
        let xs = data.x.f32s(start * data.x_cols, (start + n) * data.x_cols, &mut xbuf);
        let _ = exec.run_on_watched(plan, n, &[xs], Some(&mut *watch));
        let (o, t) = (exec.output(plan, n), &data.y[start * data.y_cols..(start + n) * data.y_cols]);
        if steps == 1 {
            scores.add(loss, plan.output.cols, o, t);
            continue;
        }
        // A row per step: keep the steps inside the sequences.
        let (oc, tc) = (plan.output.cols / steps, data.y_cols / steps);
        out.clear();
        y.clear();
        for r in 0..n * steps {
            if r % steps < lengths.get(r / steps).copied().unwrap_or(steps) {
                out.extend_from_slice(&o[r * oc..(r + 1) * oc]);
                y.extend_from_slice(&t[r * tc..(r + 1) * tc]);
            }
        }
        scores.add(loss, oc, &out, &y);
    }
    scores.finish(loss)
}
