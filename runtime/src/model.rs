//! What every model compiled into Rust (`nn!`, `nnlangc emit --rust`) does, written once: a
//! generated model is its constants ([`Constants`]), its straight-line steps and its recipe's
//! optimizer; [`Model`]'s provided methods — `fit`, `predict`, `evaluate`, `save`, `load`,
//! the forward pass, the training step, the gradient check in f64, data-parallel and
//! product-splitting threads — are this file's, the same for every model.
//!
//! Bring the trait into scope to call them: `use nnlang_runtime::model::Model;`.

use crate::aligned_vec::{AVec, ConstAlign};
use crate::array::ArrayError;
use crate::data::preprocess::{Preprocess, PreprocessRecipe};
use crate::interp::Updater;
use crate::io::CheckpointError;
use crate::mem::{batch_lengths, Cx, ExecError, Mem, Peers};
use crate::ops::Done;
use crate::plan::{Loss, Param};
use crate::train::arrays::{EpochReport, FitError, FitOptions, Trainable};
use crate::train::{DataParallel, Evaluation, Init, Optimizer, Rates, Scores, Team, Worker};
use crate::Float;
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;

/// A model's sizes and recipe, as generated code states them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constants {
    /// The most rows one call takes.
    pub max_batch: usize,
    /// Values per row of each input.
    pub inputs: &'static [usize],
    /// Values per row of the output.
    pub output: usize,
    /// Values per row of the training target (1: a class index).
    pub target_cols: usize,
    /// Parameters, all tensors together.
    pub params: usize,
    /// Steps of the longest sequence the model reads (0: none).
    pub steps: usize,
    /// Whether the output (and the target) has a row per step.
    pub per_step_output: bool,
    /// The recipe's loss.
    pub loss: Loss,
    /// Where the inference plan leaves its output in its arena.
    pub output_offset: usize,
    /// Floats of the training step's arena.
    pub train_arena: usize,
    /// Floats of the inference arena.
    pub infer_arena: usize,
    /// The carried recurrent states of the training plan: (offset, length) in its arena.
    pub train_carried: &'static [(usize, usize)],
    /// The same of the inference plan.
    pub infer_carried: &'static [(usize, usize)],
    /// The recipe's epochs.
    pub epochs: usize,
    /// The fraction of rows `fit` holds out for validation.
    pub validate: f64,
    /// The recipe's early stopping (`stop = patience(k)`), if any.
    pub patience: Option<usize>,
    /// The data block's augmentation of training images, if any.
    pub augment: Option<crate::data::augment::Augment>,
    /// The recipe's seed.
    pub seed: u64,
    /// How weights start.
    pub init: Init,
    /// What the data block does to raw inputs (and targets).
    pub preprocess: PreprocessRecipe,
}

/// What every generated model holds: weights, gradients, the two planned arenas (each on a
/// cache line), the dropout generator, threads, the parameter table, sequence lengths and
/// what is done to raw data.
pub struct Core {
    /// Every parameter, all tensors together (on a cache line: the dense tiles read rows of W
    /// as vectors).
    pub params: AVec<f32, ConstAlign<64>>,
    /// Their gradients after a training step.
    pub grads: AVec<f32, ConstAlign<64>>,
    /// The training step's arena.
    pub train_arena: AVec<f32, ConstAlign<64>>,
    /// The inference arena.
    pub infer_arena: AVec<f32, ConstAlign<64>>,
    /// Threads that split each large dense product, if any.
    pub team: Option<Arc<Team>>,
    /// The other workers of a data-parallel step, for steps that sum over the whole batch
    /// (`None`: this model holds every row of its batch).
    pub peers: Option<Arc<dyn crate::mem::Sum>>,
    /// This worker's weight in the batch's mean loss (1: the whole batch).
    pub share: f64,
    /// Draws dropout masks.
    pub rng: ChaCha8Rng,
    /// The parameter tensors.
    pub table: Vec<Param>,
    /// Each example's sequence length for the next calls (empty: all full length).
    pub lengths: Vec<usize>,
    /// What `predict` does to raw inputs (and outputs).
    pub preprocess: Preprocess,
}

impl Core {
    /// A model of constants `c` and parameter tensors `table`, weights initialized from
    /// `seed` as the recipe says (the weights `nnlangc train` starts from).
    pub fn new(c: &Constants, table: Vec<Param>, seed: u64) -> Core {
        let zeros = |n: usize| AVec::from_iter(64, std::iter::repeat_n(0.0f32, n));
        let mut params = zeros(c.params);
        crate::train::initialize_table(&table, &mut params, c.init, seed);
        Core {
            params,
            grads: zeros(c.params),
            train_arena: zeros(c.train_arena.max(1)),
            infer_arena: zeros(c.infer_arena.max(1)),
            team: None,
            peers: None,
            share: 1.0,
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
            table,
            lengths: Vec::new(),
            preprocess: Preprocess { scale: c.preprocess.scale, standardize: None, bins: None },
        }
    }
}

/// The inputs of a call, checked against the model's widths.
fn check_inputs<T>(c: &Constants, inputs: &[&[T]], rows: usize) {
    assert!(rows >= 1 && rows <= c.max_batch, "a batch has 1 to {} rows", c.max_batch);
    assert_eq!(inputs.len(), c.inputs.len(), "the model has {} inputs", c.inputs.len());
    for (i, (x, &cols)) in inputs.iter().zip(c.inputs).enumerate() {
        assert!(x.len() >= rows * cols, "input {i} needs {rows} rows of {cols} values");
    }
}

/// A model compiled into Rust. Generated code implements the four required items; every
/// other method is provided here.
pub trait Model: Sized + Send {
    /// The model's sizes and recipe.
    const CONSTANTS: Constants;

    /// The model's buffers.
    fn core(&self) -> &Core;
    /// The model's buffers, to change.
    fn core_mut(&mut self) -> &mut Core;
    /// The inference plan's steps, in order, with constant shapes and offsets.
    fn forward_steps(cx: &mut Cx<'_, f32>) -> Done;
    /// The training plan's steps (forward, loss, backward), in f32 or f64.
    fn train_steps<T: Float>(cx: &mut Cx<'_, T>) -> Done;
    /// The optimizer of the recipe (learning rate, momentum, regularization, max-norm,
    /// weight average, clipping).
    fn optimizer(&self) -> Optimizer<f32>;
    /// The recipe's learning rates, epoch by epoch.
    fn rates() -> Rates;
    /// A fresh model with weights from `seed`.
    fn with_seed(seed: u64) -> Self;

    /// The outputs for `rows` rows of each input (row-major, preprocessed); dropout is off.
    fn forward_inputs(&mut self, inputs: &[&[f32]], rows: usize) -> &[f32] {
        let c = Self::CONSTANTS;
        check_inputs(&c, inputs, rows);
        let Core { params, infer_arena, rng, team, lengths, .. } = self.core_mut();
        let mut cx = Cx {
            rows,
            batch: rows,
            steps: 1,
            lengths: batch_lengths(lengths, rows, c.steps),
            mem: Mem { arena: &mut infer_arena[..], inputs, target: &[] },
            params,
            grads: &mut [],
            rng,
            loss: None,
            team: team.as_deref(),
            peers: Peers::ALONE,
        };
        if let Err(e) = Self::forward_steps(&mut cx) {
            unreachable!("an inference plan has no loss step, so no step fails: {e}");
        }
        &self.core().infer_arena[c.output_offset..c.output_offset + rows * c.output]
    }

    /// Forward, loss and backward of one batch with the weights `params` (held elsewhere: a
    /// data-parallel worker reads the master's): the mean loss, the gradients left in
    /// [`Model::gradients`].
    fn loss_and_gradients_with_inputs(
        &mut self,
        params: &[f32],
        inputs: &[&[f32]],
        y: &[f32],
        rows: usize,
    ) -> Result<f64, ExecError> {
        let c = Self::CONSTANTS;
        check_inputs(&c, inputs, rows);
        assert!(y.len() >= rows * c.target_cols, "the target needs {rows} rows of {} values", c.target_cols);
        let Core { grads, train_arena, rng, team, lengths, peers, share, .. } = self.core_mut();
        let mut cx = Cx {
            rows,
            batch: rows,
            steps: 1,
            lengths: batch_lengths(lengths, rows, c.steps),
            mem: Mem { arena: &mut train_arena[..], inputs, target: y },
            params,
            grads: &mut grads[..],
            rng,
            loss: None,
            team: team.as_deref(),
            peers: Peers { group: peers.as_deref(), share: *share },
        };
        Self::train_steps(&mut cx)?;
        Ok(cx.loss.unwrap_or(0.0))
    }

    /// [`Model::loss_and_gradients_with_inputs`] with the model's own weights.
    fn loss_and_gradients_inputs(&mut self, inputs: &[&[f32]], y: &[f32], rows: usize) -> Result<f64, ExecError> {
        let params = std::mem::replace(&mut self.core_mut().params, AVec::new(64));
        let result = self.loss_and_gradients_with_inputs(&params, inputs, y, rows);
        self.core_mut().params = params;
        result
    }

    /// The loss and every parameter's gradient in double precision with the weights `params`:
    /// the same straight-line steps on f64, for a gradient check of the generated code.
    /// Dropout draws from a generator seeded with `seed`; a carried state starts at zero.
    fn loss_and_gradients_f64_inputs(
        &self,
        params: &[f64],
        inputs: &[&[f64]],
        y: &[f64],
        rows: usize,
        seed: u64,
    ) -> Result<(f64, Vec<f64>), ExecError> {
        let c = Self::CONSTANTS;
        check_inputs(&c, inputs, rows);
        assert!(params.len() == c.params, "{} parameters", c.params);
        assert!(y.len() >= rows * c.target_cols, "the target needs {rows} rows of {} values", c.target_cols);
        let mut arena = vec![0.0f64; c.train_arena.max(1)];
        let mut grads = vec![0.0f64; c.params];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut cx = Cx {
            rows,
            batch: rows,
            steps: 1,
            lengths: batch_lengths(&self.core().lengths, rows, c.steps),
            mem: Mem { arena: &mut arena[..], inputs, target: y },
            params,
            grads: &mut grads[..],
            rng: &mut rng,
            loss: None,
            team: None,
            peers: Peers::ALONE,
        };
        Self::train_steps(&mut cx)?;
        let loss = cx.loss.unwrap_or(0.0);
        Ok((loss, grads))
    }

    /// One training step: forward, loss, backward, then `optimizer`'s update.
    fn train_step_inputs(
        &mut self,
        inputs: &[&[f32]],
        y: &[f32],
        rows: usize,
        optimizer: &mut impl Updater<f32>,
    ) -> Result<f64, ExecError> {
        let loss = self.loss_and_gradients_inputs(inputs, y, rows)?;
        let Core { params, grads, .. } = self.core_mut();
        optimizer.update(params, grads);
        Ok(loss)
    }

    /// The outputs for raw inputs, one array per model input (`rows × INPUTS[i]`, the same
    /// rows in each), each preprocessed, in batches of `MAX_BATCH`: an owned array
    /// `rows × OUTPUT` (`rows × 1` values for a binned regression). Arrays of another width
    /// or of different row counts are an error, never a panic.
    fn predict_inputs(&mut self, xs: &[ArrayView2<'_, f32>]) -> Result<Array2<f32>, ArrayError> {
        let c = Self::CONSTANTS;
        if xs.len() != c.inputs.len() {
            return Err(ArrayError::Inputs { expected: c.inputs.len(), found: xs.len() });
        }
        let rows = xs.first().map_or(0, |x| x.nrows());
        let mut data: Vec<Vec<f32>> = Vec::with_capacity(xs.len());
        for (x, &cols) in xs.iter().zip(c.inputs) {
            if x.ncols() != cols {
                return Err(ArrayError::Width { expected: cols, found: x.ncols() });
            }
            if x.nrows() != rows {
                return Err(ArrayError::Rows { expected: rows, found: x.nrows() });
            }
            let mut v: Vec<f32> = x.iter().copied().collect();
            self.core().preprocess.apply(&mut v);
            data.push(v);
        }
        let mut out = Vec::with_capacity(rows * c.output);
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(c.max_batch);
            let batch: Vec<&[f32]> =
                data.iter().zip(c.inputs).map(|(d, &cols)| &d[start * cols..(start + n) * cols]).collect();
            out.extend_from_slice(self.forward_inputs(&batch, n));
            start += n;
        }
        if let Some(b) = self.core().preprocess.bins {
            // Each row's value: the centre of its likeliest bin, as `nnlangc run` writes.
            let values: Vec<f32> =
                crate::interp::argmax_rows(c.output.max(1), &out).into_iter().map(|k| b.centre(k)).collect();
            return Ok(Array2::from_shape_vec((rows, 1), values).expect("a value per row, by construction"));
        }
        Ok(Array2::from_shape_vec((rows, c.output), out).expect("rows × OUTPUT values, by construction"))
    }

    /// The outputs for raw `x` (`rows × INPUTS[0]`) of a one-input model, as
    /// [`Model::predict_inputs`].
    fn predict(&mut self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, ArrayError> {
        self.predict_inputs(&[x])
    }

    /// The loss (and accuracy, for classification) over every row of `x` against `y` (a
    /// one-input model), with the current weights, in batches of `MAX_BATCH`.
    fn evaluate(&mut self, x: &[f32], y: &[f32]) -> Evaluation {
        let c = Self::CONSTANTS;
        let (xc, yc) = (c.inputs.first().copied().unwrap_or(0).max(1), c.target_cols);
        let rows = x.len() / xc;
        let mut scores = Scores::default();
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(c.max_batch);
            let out = self.forward_inputs(&[&x[start * xc..(start + n) * xc]], n);
            scores.add(c.loss, c.output, out, &y[start * yc..(start + n) * yc]);
            start += n;
        }
        scores.finish(c.loss)
    }

    /// Trains a one-input model on raw `x` (`rows × INPUTS[0]`) and `y` (`rows ×
    /// TARGET_COLS`: class indices, or values) as its recipe says — the data block's scale
    /// and standardization (learned from these rows, kept for [`Model::predict`] and
    /// [`Model::save`]), binned targets, the validation split, a shuffled order every epoch,
    /// batches, the schedule (a plateau watched as `nnlangc train` watches it), a stop on a
    /// loss that is not finite — the weights `nnlangc train` writes on one thread.
    /// `progress` sees each epoch and returns `false` to stop.
    fn fit(
        &mut self,
        x: ArrayView2<'_, f32>,
        y: ArrayView2<'_, f32>,
        mut progress: impl FnMut(&EpochReport) -> bool,
    ) -> Result<Vec<EpochReport>, FitError> {
        let c = Self::CONSTANTS;
        if c.inputs.len() != 1 {
            return Err(FitError::Shape(ArrayError::Inputs { expected: c.inputs.len(), found: 1 }));
        }
        let o = FitOptions {
            epochs: c.epochs,
            batch: c.max_batch,
            validate: c.validate,
            seed: c.seed,
            patience: c.patience,
            augment: c.augment,
        };
        crate::train::arrays::fit(&mut Fitting(self), x, y, o, &mut progress)
    }

    /// A data-parallel trainer of a one-input model over `threads` workers (each a copy of
    /// the model's buffers, with its own dropout generator), for
    /// [`Model::train_step_parallel`]. Where `SPLITS_PRODUCTS` is true,
    /// [`Model::split_products`] is faster.
    fn parallel(&self, threads: usize, seed: u64) -> Result<DataParallel<Parallel<Self>>, String> {
        let c = Self::CONSTANTS;
        if c.inputs.len() != 1 {
            return Err(format!("a data-parallel step takes one input; the model has {}", c.inputs.len()));
        }
        let workers =
            (0..threads.max(1)).map(|i| Parallel(Self::with_seed(seed.wrapping_add(1000 + i as u64)))).collect();
        DataParallel::new(workers, c.params, c.inputs[0], c.target_cols)
    }

    /// One training step split over the workers of `parallel`.
    fn train_step_parallel(
        &mut self,
        parallel: &mut DataParallel<Parallel<Self>>,
        x: &[f32],
        y: &[f32],
        rows: usize,
        optimizer: &mut (impl Updater<f32> + Send),
    ) -> Result<f64, ExecError> {
        let Core { params, lengths, .. } = self.core_mut();
        parallel.step_sequences(params, optimizer, x, y, lengths, rows)
    }

    /// Shares each large dense product of the training step and the forward pass among
    /// `threads` threads (1: the calling thread alone again): each computes its share of the
    /// outputs of every row, and `optimizer` (this model's) updates the rows of the weights
    /// each thread computes on that thread. The results are one thread's, bit for bit.
    fn split_products(&mut self, threads: usize, optimizer: &mut Optimizer<f32>) -> Result<(), String> {
        let team = if threads > 1 { Some(Arc::new(Team::new(threads)?)) } else { None };
        optimizer.team = team.clone();
        self.core_mut().team = team;
        Ok(())
    }

    /// Starts new streams: the recurrent states carried from one call to the next (a model
    /// trained with `bptt`) become zero.
    fn reset_state(&mut self) {
        let c = Self::CONSTANTS;
        let core = self.core_mut();
        for &(at, len) in c.train_carried {
            core.train_arena[at..at + len].fill(0.0);
        }
        for &(at, len) in c.infer_carried {
            core.infer_arena[at..at + len].fill(0.0);
        }
    }

    /// For a model that reads sequences: each example's length (1 to `STEPS`) for the
    /// following calls, which then treat the steps past it as padding; empty (the default)
    /// when every sequence has `STEPS` steps.
    fn set_lengths(&mut self, lengths: &[usize]) {
        let steps = Self::CONSTANTS.steps;
        assert!(lengths.iter().all(|&l| l >= 1 && l <= steps), "a sequence has 1 to {steps} steps");
        let core = self.core_mut();
        core.lengths.clear();
        core.lengths.extend_from_slice(lengths);
    }

    /// What [`Model::predict`] does to raw inputs (and to its outputs, for a binned
    /// regression): the recipe's scale, and what [`Model::fit`] learned or [`Model::load`]
    /// read (`preprocess.json`).
    fn preprocess(&self) -> &Preprocess {
        &self.core().preprocess
    }

    /// Replaces what is done to raw data (statistics computed elsewhere).
    fn set_preprocess(&mut self, preprocess: Preprocess) {
        self.core_mut().preprocess = preprocess;
    }

    /// Every parameter, all tensors together ([`Model::parameters`] says where each is).
    fn weights(&self) -> &[f32] {
        &self.core().params
    }

    /// Every parameter, to change in place.
    fn weights_mut(&mut self) -> &mut [f32] {
        &mut self.core_mut().params
    }

    /// The gradients of the last training step, laid out as the weights.
    fn gradients(&self) -> &[f32] {
        &self.core().grads
    }

    /// The parameter tensors: PyTorch names, shapes, roles and places in the weights.
    fn parameters(&self) -> &[Param] {
        &self.core().table
    }

    /// One parameter tensor by name (`dense_0.weight`).
    fn param(&self, name: &str) -> Option<&[f32]> {
        let core = self.core();
        let p = core.table.iter().find(|p| p.name == name)?;
        Some(&core.params[p.buf.range()])
    }

    /// One parameter tensor by name, to change in place.
    fn param_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let core = self.core_mut();
        let p = core.table.iter().find(|p| p.name == name)?.buf;
        Some(&mut core.params[p.range()])
    }

    /// Saves the weights as safetensors, and what is done to raw data as `preprocess.json`
    /// beside them, as `nnlangc train` does.
    fn save(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let (path, core) = (path.as_ref(), self.core());
        crate::io::save(path, &core.table, &core.params)?;
        if !core.preprocess.is_empty() {
            let beside = path.with_file_name("preprocess.json");
            crate::io::write_atomic(&beside, core.preprocess.to_json().as_bytes()).map_err(CheckpointError)?;
        }
        Ok(())
    }

    /// Loads weights saved by [`Model::save`] or `nnlangc train`, with the `preprocess.json`
    /// beside them when there is one; refuses a file whose tensors do not match, and changes
    /// nothing then.
    fn load(&mut self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let path = path.as_ref();
        let beside = path.with_file_name("preprocess.json");
        let preprocess = if beside.exists() {
            Some(Preprocess::read(&beside).map_err(|e| CheckpointError(e.to_string()))?)
        } else {
            None
        };
        let Core { table, params, .. } = self.core_mut();
        crate::io::load(path, table, params)?;
        if let Some(p) = preprocess {
            self.core_mut().preprocess = p;
        }
        Ok(())
    }
}

/// A model as [`crate::train::arrays::fit`] trains it.
struct Fitting<'a, M>(&'a mut M);

impl<M: Model> Trainable for Fitting<'_, M> {
    fn widths(&self) -> (usize, usize) {
        (M::CONSTANTS.inputs[0], M::CONSTANTS.target_cols)
    }
    fn max_batch(&self) -> usize {
        M::CONSTANTS.max_batch
    }
    fn recipe_optimizer(&self) -> Optimizer<f32> {
        self.0.optimizer()
    }
    fn rates(&self) -> Rates {
        M::rates()
    }
    fn step(&mut self, x: &[f32], y: &[f32], rows: usize, opt: &mut Optimizer<f32>) -> Result<f64, ExecError> {
        self.0.train_step_inputs(&[x], y, rows, opt)
    }
    fn score(&mut self, x: &[f32], y: &[f32]) -> Evaluation {
        self.0.evaluate(x, y)
    }
    fn weights_mut(&mut self) -> &mut [f32] {
        self.0.weights_mut()
    }
    fn preprocessing(&self) -> PreprocessRecipe {
        M::CONSTANTS.preprocess
    }
    fn set_preprocess(&mut self, preprocess: Preprocess) {
        self.0.set_preprocess(preprocess);
    }
}

/// A worker of a data-parallel step: a copy of a one-input model.
pub struct Parallel<M>(pub M);

impl<M: Model> Worker for Parallel<M> {
    fn loss_and_gradients_with(&mut self, params: &[f32], x: &[f32], y: &[f32], rows: usize) -> Result<f64, ExecError> {
        self.0.loss_and_gradients_with_inputs(params, &[x], y, rows)
    }
    fn worker_gradients(&self) -> &[f32] {
        self.0.gradients()
    }
    fn set_lengths(&mut self, lengths: &[usize]) {
        self.0.set_lengths(lengths);
    }
    fn set_peers(&mut self, peers: Option<Arc<dyn crate::mem::Sum>>, share: f64) {
        let core = self.0.core_mut();
        (core.peers, core.share) = (peers, share);
    }
    fn per_step_output(&self) -> bool {
        M::CONSTANTS.per_step_output
    }
}
