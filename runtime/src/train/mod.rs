//! Training: initialization, the optimizers and what they apply with the update
//! (regularization, max-norm, the weight average), learning-rate schedules, and the loop
//! over epochs and batches with validation and tracking.

pub mod arrays;
pub mod cluster;
mod fit;
mod optim;
mod parallel;
pub mod peers;
mod schedule;
mod step;
mod team;
mod watch;

pub use cluster::{Cluster, Collective};
pub use fit::{
    evaluate, evaluate_watched, fit, Best, Data, EpochStats, Evaluation, Observer, Outcome, Resume, Scores, Stream,
    TrainError,
};
pub use optim::{max_norm, regularization, OptState, Optimizer, UpdateRatio};
pub use parallel::{DataParallel, Worker};
pub use schedule::{scheduled_lr, Rates};
pub use step::worker_rows;
pub use step::Stepper;
pub use team::Team;
pub use watch::{gradient_norms, LayerStats, LayerWatch};

use crate::plan::{Plan, Role, Share};
use crate::Float;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// The optimizer and its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// Stochastic gradient descent, with momentum (Nesterov's if asked).
    Sgd {
        /// The learning rate.
        lr: f64,
        /// The velocity's decay (0: plain SGD).
        momentum: f64,
        /// Nesterov's look-ahead form.
        nesterov: bool,
    },
    /// Adam.
    Adam {
        /// The learning rate.
        lr: f64,
        /// The first moment's decay.
        beta1: f64,
        /// The second moment's decay.
        beta2: f64,
        /// Added to the second moment's root.
        eps: f64,
        /// Decoupled weight decay (AdamW, Loshchilov and Hutter): before each step every
        /// weight is multiplied by `1 − lr·weight_decay`; biases, gains and state are not
        /// decayed. 0: Adam.
        weight_decay: f64,
    },
}

impl OptimizerKind {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerKind::Sgd { lr, .. } | OptimizerKind::Adam { lr, .. } => *lr,
        }
    }
}

/// How weights start (biases start at zero).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, 1/fan_in), as the notes define it.
    Xavier,
    /// N(0, 2/fan_in), for ReLU units.
    He,
    /// N(0, std²).
    Normal {
        /// The standard deviation.
        std: f64,
    },
    /// Uniform in `-a..a`.
    Uniform {
        /// The bound.
        a: f64,
    },
}

/// How the learning rate changes between epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// It does not.
    Constant,
    /// `lr · factor^⌊epoch / every⌋`
    Step {
        /// Epochs between drops.
        every: usize,
        /// What each drop multiplies by.
        factor: f64,
    },
    /// `lr · decay^epoch`
    Exponential {
        /// What each epoch multiplies by.
        decay: f64,
    },
    /// Multiply by `factor` when the validation loss has not improved for `patience` epochs.
    Plateau {
        /// What each drop multiplies by.
        factor: f64,
        /// Epochs without improvement before a drop.
        patience: usize,
    },
    /// Step by step, down along half a cosine from the base rate (after any warm-up) to
    /// `min·lr` at the last step of the run.
    Cosine {
        /// The last rate, as a fraction of the base rate.
        min: f64,
    },
}

/// Everything a training run is told, after the recipe is checked. Built by the compiler
/// from a typed recipe (`nnlang::spec::TrainRecipe::options`), where every default lives.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The optimizer and its settings.
    pub optimizer: OptimizerKind,
    /// The weights' initialization.
    pub init: Init,
    /// L1 regularization strength.
    pub l1: f64,
    /// L2 regularization strength.
    pub l2: f64,
    /// The largest norm of a unit's incoming weights, if constrained.
    pub max_norm: Option<f64>,
    /// Examples per step.
    pub batch: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Epochs of linear warm-up before it, step by step (0: none).
    pub warmup: usize,
    /// The fraction of the training set held out for validation (0 for none).
    pub validate: f64,
    /// Decay of the exponential moving average of the weights used to evaluate, if any.
    pub ema: Option<f64>,
    /// Gradient clipping by global norm, if any.
    pub clip: Option<f64>,
    /// Batches per update (gradient accumulation; 1: every batch updates).
    pub accumulate: usize,
    /// Early stopping: training stops after this many epochs without a lower validation
    /// loss, and the weights kept are the best epoch's.
    pub patience: Option<usize>,
    /// Random crops, shifts and flips of the training images (never of what is evaluated).
    pub augment: Option<crate::data::augment::Augment>,
    /// Truncated backpropagation through time: the training rows are windows of streams,
    /// in order (batch after batch, each row continuing its stream), never shuffled; the
    /// carried states start from zero every epoch.
    pub bptt: Option<usize>,
    /// Seeds initialization, shuffling and dropout.
    pub seed: u64,
    /// Threads of the training step (1: single-threaded); in a distributed run, each
    /// process's threads.
    pub threads: usize,
    /// How the threads share a step.
    pub split: Split,
    /// The processes of a distributed run (none: this process alone). Each computes its
    /// share of every batch; see [`cluster`].
    pub cluster: Option<cluster::Cluster>,
    /// The training plan again, planned for [`worker_rows`] rows: the memory of each worker
    /// of a batch-splitting step, which never runs more (none: each worker plans for the
    /// whole batch). Used by a single process only.
    pub worker_plan: Option<std::sync::Arc<Plan>>,
}

/// How the threads of a training step share it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Split {
    /// `Products` where that moves less data between cores than `Batch` would: for a model
    /// whose weights are all dense layers, at batches whose activations are smaller than its
    /// weights ([`Split::products`]); `Batch` otherwise (convolutions, recurrent layers,
    /// large batches). A distributed run always splits batches.
    #[default]
    Auto,
    /// Each thread takes a share of the batch's rows with the whole model and the gradients
    /// are averaged: a given thread count repeats exactly (and N processes with one thread
    /// each train as N threads do). The weights, their gradients and the optimizer's state
    /// cross between cores every step (twice the weights' size).
    Batch,
    /// Each large dense product is shared: a thread computes its share of the outputs (and
    /// updates those rows of the weights) for every row of the batch. Nothing is averaged,
    /// so the results are one thread's, bit for bit, whatever the count; only activations
    /// cross between cores.
    Products,
}

impl Split {
    /// Whether a step of `plan` on `threads` threads (of one process) splits its products.
    /// `Auto` does for a plan with no convolution or recurrent layer whose activations
    /// (every dense layer's input and output, `max_batch` rows) are fewer values than its
    /// weights: what crosses between cores is then smaller than with `Batch`.
    pub fn products(self, plan: &Plan, threads: usize) -> bool {
        threads > 1
            && match self {
                Split::Auto => {
                    let mut activations = 0;
                    for f in &plan.facts {
                        match f.share {
                            Share::Products(values) => activations += values,
                            Share::Batch => return false,
                            Share::Either => {}
                        }
                    }
                    activations > 0 && activations * plan.max_batch < plan.params_len
                }
                Split::Batch => false,
                Split::Products => true,
            }
    }
}

impl Options {
    /// Whether this run's `threads` split the products of `plan` ([`Split::products`]): never
    /// in a distributed run (of more than one process), whose threads split each process's
    /// share of the batch. The one rule the step, the resume check and the CLI's report use.
    pub fn splits_products(&self, plan: &Plan, threads: usize) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.size() < 2) && self.split.products(plan, threads)
    }
}

/// Initializes every parameter of `plan` in `params`: weights by `init` from their fan-in,
/// embedding tables from N(0, 1), biases to zero, gains to one, state to its declared start.
/// The same seed gives the same weights.
pub fn initialize<T: Float>(plan: &Plan, params: &mut [T], init: Init, seed: u64) {
    initialize_table(&plan.params, params, init, seed)
}

/// [`initialize`] for a parameter table (what generated code holds instead of a plan).
pub fn initialize_table<T: Float>(table: &[crate::plan::Param], params: &mut [T], init: Init, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_1417);
    for p in table {
        let slot = &mut params[p.buf.range()];
        let fan_in = match p.role {
            Role::Weight { fan_in, .. } => fan_in.max(1) as f64,
            Role::Embedding { .. } => {
                // PyTorch's `nn.Embedding`: N(0, 1).
                let d = Normal::new(0.0, 1.0).unwrap_or_else(|_| Normal::new(0.0, 0.0).expect("valid"));
                slot.iter_mut().for_each(|v| *v = T::from_f64(d.sample(&mut rng)));
                continue;
            }
            Role::Bias => {
                slot.fill(T::ZERO);
                continue;
            }
            Role::GateBias { from, len, init } => {
                slot.fill(T::ZERO);
                let end = from.saturating_add(len).min(slot.len());
                slot[from.min(end)..end].fill(T::from_f64(init));
                continue;
            }
            Role::Gain => {
                slot.fill(T::ONE);
                continue;
            }
            Role::State { init, .. } => {
                slot.fill(T::from_f64(init));
                continue;
            }
            Role::Count => {
                slot.fill(T::ZERO);
                continue;
            }
        };
        match init {
            Init::Uniform { a } => {
                let d =
                    Uniform::new_inclusive(-a, a).unwrap_or_else(|_| Uniform::new_inclusive(0.0, 0.0).expect("valid"));
                slot.iter_mut().for_each(|v| *v = T::from_f64(d.sample(&mut rng)));
            }
            other => {
                let std = match other {
                    Init::Xavier => (1.0 / fan_in).sqrt(),
                    Init::He => (2.0 / fan_in).sqrt(),
                    Init::Normal { std } => std,
                    Init::Uniform { .. } => 0.0,
                };
                let d = Normal::new(0.0, std).unwrap_or_else(|_| Normal::new(0.0, 0.0).expect("valid"));
                slot.iter_mut().for_each(|v| *v = T::from_f64(d.sample(&mut rng)));
            }
        }
    }
}
