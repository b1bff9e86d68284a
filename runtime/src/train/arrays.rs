//! Training a generated model on arrays (its `fit`): the recipe's loop — the validation
//! split, a shuffled order every epoch, batches, the schedule's rate, a stop on a loss that is
//! not finite, an evaluation after each epoch and a progress callback — the same as
//! `nnlangc train` on one thread, so that the same recipe gives the same weights.

use super::{Evaluation, Optimizer};
use crate::array::ArrayError;
use crate::data::preprocess::{Preprocess, PreprocessRecipe};
use crate::interp::ExecError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The rows trained on and the rows held out for validation, as every trainer draws them
/// from the recipe's seed: the last `fraction` of an order shuffled once (at least one row
/// is trained on).
pub fn validation_split(rows: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x00da_7a5e));
    let n_val = ((rows as f64) * fraction).round() as usize;
    let val = order.split_off(rows - n_val.min(rows.saturating_sub(1)));
    (order, val)
}

/// What a generated model offers its training loop.
pub trait Trainable {
    /// Values per row of the input and of the target.
    fn widths(&self) -> (usize, usize);
    /// The largest batch.
    fn max_batch(&self) -> usize;
    /// The recipe's optimizer.
    fn recipe_optimizer(&self) -> Optimizer<f32>;
    /// The recipe's learning rates under its schedule, fresh (what `nnlangc train` uses).
    fn rates(&self) -> super::Rates;
    /// One step on `rows` rows: the mean loss.
    fn step(&mut self, x: &[f32], y: &[f32], rows: usize, opt: &mut Optimizer<f32>) -> Result<f64, ExecError>;
    /// Loss and accuracy of the current weights on `x` against `y`.
    fn score(&mut self, x: &[f32], y: &[f32]) -> Evaluation;
    /// The weights, to take the optimizer's average at the end.
    fn weights_mut(&mut self) -> &mut [f32];
    /// What the recipe does to the data (`scale`, `standardize`, `bins`): `fit` learns the
    /// statistics from the rows it is given and hands them to [`Trainable::set_preprocess`].
    fn preprocessing(&self) -> PreprocessRecipe {
        PreprocessRecipe::default()
    }
    /// Keeps what `fit` did to the data, for predictions on raw data.
    fn set_preprocess(&mut self, preprocess: Preprocess) {
        let _ = preprocess;
    }
}

/// The recipe's loop settings.
#[derive(Clone, Copy, Debug)]
pub struct FitOptions {
    /// Passes over the training rows.
    pub epochs: usize,
    /// Rows per step.
    pub batch: usize,
    /// The fraction held out for validation.
    pub validate: f64,
    /// Seeds the validation split and the shuffling.
    pub seed: u64,
    /// Early stopping: stop after this many epochs without a lower validation loss, keeping
    /// the best epoch's weights.
    pub patience: Option<usize>,
    /// Random crops, shifts and flips of the training images, drawn as `nnlangc train` draws
    /// them (per epoch, from the seed).
    pub augment: Option<crate::data::augment::Augment>,
}

/// One epoch, as `fit` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// The mean loss of the epoch's batches.
    pub train_loss: f64,
    /// The loss on the validation rows, if any are held out.
    pub val_loss: Option<f64>,
    /// The accuracy on them, for a classifier.
    pub val_accuracy: Option<f64>,
    /// The learning rate the epoch trained at.
    pub lr: f64,
    /// Training speed.
    pub samples_per_sec: f64,
}

/// Why `fit` stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum FitError {
    /// `x` does not fit the model's input.
    Shape(ArrayError),
    /// `y` has another number of rows than `x`, or of values per row than the model wants.
    Target {
        /// Rows of `y`.
        rows: usize,
        /// Rows of `x`.
        expected_rows: usize,
        /// Values per row of `y`.
        cols: usize,
        /// Values per row the model's target has.
        expected_cols: usize,
    },
    /// A target the model cannot take (a class label out of range).
    Data(ExecError),
    /// The loss became NaN or infinite.
    NonFinite {
        /// The epoch (1-based).
        epoch: usize,
        /// The step within it.
        step: usize,
        /// The loss.
        loss: f64,
    },
    /// Targets the recipe cannot preprocess (binning targets that are not finite).
    Targets(String),
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::Shape(e) => write!(f, "{e}"),
            FitError::Target { rows, expected_rows, cols, expected_cols } => write!(
                f,
                "a target of {rows} rows of {cols} values, but {expected_rows} rows of {expected_cols} are needed"
            ),
            FitError::Data(e) => write!(f, "{e}"),
            FitError::NonFinite { epoch, step, loss } => {
                write!(f, "the loss became {loss} at epoch {epoch}, step {step}: lower the learning rate")
            }
            FitError::Targets(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FitError {}

/// Trains `m` on `x` (rows × inputs) and `y` (rows × target values) as its recipe says;
/// `progress` sees each epoch and returns `false` to stop. The weights kept are the
/// optimizer's average when the recipe keeps one.
pub fn fit(
    m: &mut dyn Trainable,
    x: ndarray::ArrayView2<'_, f32>,
    y: ndarray::ArrayView2<'_, f32>,
    o: FitOptions,
    progress: &mut dyn FnMut(&EpochReport) -> bool,
) -> Result<Vec<EpochReport>, FitError> {
    let (xc, yc) = m.widths();
    let (rows, cols) = x.dim();
    if cols != xc {
        return Err(FitError::Shape(ArrayError::Width { expected: xc, found: cols }));
    }
    if y.dim() != (rows, yc) {
        return Err(FitError::Target { rows: y.nrows(), expected_rows: rows, cols: y.ncols(), expected_cols: yc });
    }
    let (mut x, mut y): (Vec<f32>, Vec<f32>) = (x.iter().copied().collect(), y.iter().copied().collect());
    // As `nnlangc train` reads its data: targets binned, inputs scaled, then standardized with
    // the statistics of every row given (before the validation split).
    let pre = Preprocess::learn(&m.preprocessing(), &x, &y, yc).map_err(FitError::Targets)?;
    pre.bin_targets(&mut y);
    pre.apply(&mut x);
    m.set_preprocess(pre);
    let (fit_rows, val_rows) = validation_split(rows, o.validate, o.seed);
    let (fit_rows, val_rows) = (&fit_rows[..], &val_rows[..]);
    let gather = |idx: &[usize], v: &[f32], c: usize| -> Vec<f32> {
        idx.iter().flat_map(|&i| v[i * c..(i + 1) * c].iter().copied()).collect()
    };
    let (tx, ty) = (gather(fit_rows, &x, xc), gather(fit_rows, &y, yc));
    let (vx, vy) = (gather(val_rows, &x, xc), gather(val_rows, &y, yc));
    let n = fit_rows.len();
    let batch = o.batch.min(m.max_batch()).max(1);
    let mut opt = m.recipe_optimizer();
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let (mut xb, mut yb) = (crate::mem::aligned(batch * xc), vec![0f32; batch * yc]);
    let mut history = Vec::new();
    let mut rates = m.rates();
    // Early stopping's best epoch: its number, validation loss and (evaluated) weights.
    let mut best: Option<(usize, f64, Vec<f32>)> = None;
    let (mut draws, mut scratch) = (Vec::new(), Vec::new());
    for epoch in 0..o.epochs {
        if let (Some(p), Some((at, _, _))) = (o.patience, &best) {
            if epoch - at >= p {
                break;
            }
        }
        order.shuffle(&mut rng);
        let start = crate::time::Instant::now();
        let mut total = 0.0;
        let steps = n.div_ceil(batch);
        let mut augment_rng = crate::data::augment::Augment::generator(o.seed, epoch);
        for (step, idx) in order.chunks(batch).enumerate() {
            opt.lr = rates.at_step(epoch, step, steps, o.epochs);
            for (r, &i) in idx.iter().enumerate() {
                xb[r * xc..(r + 1) * xc].copy_from_slice(&tx[i * xc..(i + 1) * xc]);
                yb[r * yc..(r + 1) * yc].copy_from_slice(&ty[i * yc..(i + 1) * yc]);
            }
            if let Some(a) = &o.augment {
                a.draw(&mut augment_rng, idx.len(), &mut draws);
                for (d, x) in draws.iter().zip(xb.chunks_exact_mut(xc)) {
                    a.apply(*d, x, &mut scratch);
                }
            }
            opt.weight = idx.len() as f64;
            let l = m.step(&xb, &yb, idx.len(), &mut opt).map_err(FitError::Data)?;
            if !l.is_finite() {
                return Err(FitError::NonFinite { epoch: epoch + 1, step: step + 1, loss: l });
            }
            total += l * idx.len() as f64;
        }
        opt.flush(m.weights_mut());
        let seconds = start.elapsed().as_secs_f64();
        let val = (!vx.is_empty()).then(|| {
            // Scored with the weights `nnlangc train` scores with: the average, when kept.
            let w = m.weights_mut().to_vec();
            if let Some(avg) = &opt.average {
                m.weights_mut().copy_from_slice(avg);
            }
            let e = m.score(&vx, &vy);
            m.weights_mut().copy_from_slice(&w);
            e
        });
        let report = EpochReport {
            epoch: epoch + 1,
            train_loss: total / n.max(1) as f64,
            val_loss: val.as_ref().map(|e| e.loss),
            val_accuracy: val.as_ref().and_then(|e| e.accuracy),
            lr: opt.lr,
            samples_per_sec: n as f64 / seconds.max(1e-9),
        };
        // The loss a plateau schedule watches, as `nnlangc train` watches it.
        let watched = report.val_loss.unwrap_or(report.train_loss);
        rates.observe(watched);
        if o.patience.is_some() && best.as_ref().is_none_or(|(_, l, _)| watched < *l) {
            let w = opt.average.clone().unwrap_or_else(|| m.weights_mut().to_vec());
            best = Some((epoch + 1, watched, w));
        }
        let go_on = progress(&report);
        history.push(report);
        if !go_on {
            break;
        }
    }
    if let Some((_, _, w)) = &best {
        m.weights_mut().copy_from_slice(w);
    } else if let Some(avg) = &opt.average {
        m.weights_mut().copy_from_slice(avg);
    }
    Ok(history)
}
