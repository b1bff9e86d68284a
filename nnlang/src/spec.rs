//! Typed recipes: what the checked `train`, `data`, `search` and `ensemble` blocks say, as
//! values the rest of the program reads without looking at settings by name. Every default a
//! recipe can leave out is here, once ([`TrainRecipe::default`] and the constants below);
//! the runtime's training options are built from a [`TrainRecipe`] ([`TrainRecipe::options`]).
//!
//! Blocks are checked against their schema first (`recipe.rs`), so reading them here cannot
//! fail: a value that the schema let through has the kind read here.

use crate::lower::eval::Value;
use crate::ops::loss::{self, UserLoss};
use crate::recipe::{Recipe, Setting, Settings};
use nnlang_runtime::train::{Init, OptimizerKind, Options, Schedule, Split};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Rows per training batch when a recipe does not say.
pub const DEFAULT_BATCH: usize = 32;
/// Rows per batch of a plan compiled without a `train` block (`nn!`, `check`'s report).
pub const DEFAULT_PLAN_BATCH: usize = 64;
/// Epochs when the recipe does not say.
pub const DEFAULT_EPOCHS: usize = 10;
/// `sgd()` without a rate.
pub const DEFAULT_SGD_LR: f64 = 0.01;
/// `adam()` without its settings: Kingma and Ba's.
pub const DEFAULT_ADAM: (f64, f64, f64, f64) = (1e-3, 0.9, 0.999, 1e-8);
/// `plateau(factor)` without a patience.
pub const DEFAULT_PATIENCE: usize = 3;

/// A `train` block.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainRecipe {
    /// The model it trains.
    pub model: String,
    /// The data set it trains on (`train M on mnist`).
    pub data: Option<String>,
    /// The loss as written.
    pub loss: UserLoss,
    /// `cross_entropy(bins = n)`: a regression target cut into n bins.
    pub bins: Option<usize>,
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
    /// The fraction of the training set held out for validation (0 for none).
    pub validate: f64,
    /// `average = ema(decay)`.
    pub ema: Option<f64>,
    /// `clip = c`: gradient clipping by global norm.
    pub clip: Option<f64>,
    /// `bptt = n`: train on a stream in windows of `n` steps, each recurrent layer starting a
    /// window from the state it ended the previous one with (truncated backpropagation
    /// through time).
    pub bptt: Option<usize>,
    /// Seeds initialization, shuffling, the validation split and dropout.
    pub seed: u64,
}

impl Default for TrainRecipe {
    /// What a `train` block that sets nothing means.
    fn default() -> Self {
        TrainRecipe {
            model: String::new(),
            data: None,
            loss: UserLoss::CrossEntropy,
            bins: None,
            optimizer: OptimizerKind::Sgd { lr: DEFAULT_SGD_LR, momentum: 0.0, nesterov: false },
            init: Init::Xavier,
            l1: 0.0,
            l2: 0.0,
            max_norm: None,
            batch: DEFAULT_BATCH,
            epochs: DEFAULT_EPOCHS,
            schedule: Schedule::Constant,
            validate: 0.0,
            ema: None,
            clip: None,
            bptt: None,
            seed: 0,
        }
    }
}

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn call<'a>(s: &'a Settings, key: &str) -> Option<(&'a str, &'a BTreeMap<String, Value>)> {
    match s.get(key) {
        Some(Setting::Call { name, args }) => Some((name.as_str(), args)),
        _ => None,
    }
}

fn value<'a>(s: &'a Settings, key: &str) -> Option<&'a Value> {
    match s.get(key) {
        Some(Setting::Value(v)) => Some(v),
        _ => None,
    }
}

fn string(s: &BTreeMap<String, Value>, key: &str) -> String {
    match s.get(key) {
        Some(Value::Str(v)) => v.clone(),
        _ => String::new(),
    }
}

impl TrainRecipe {
    /// The typed form of a checked `train` block.
    pub fn from_block(recipe: &Recipe) -> TrainRecipe {
        let s = &recipe.settings;
        let d = TrainRecipe::default();
        let loss_call = call(s, "loss");
        let loss = loss_call.and_then(|c| loss::from_user_name(c.0)).unwrap_or(d.loss);
        let bins = loss_call.and_then(|(_, a)| num(a.get("bins"))).map(|b| b as usize);
        let optimizer = match call(s, "optimizer") {
            Some(("adam", a)) => {
                let (lr, beta1, beta2, eps) = DEFAULT_ADAM;
                OptimizerKind::Adam {
                    lr: num(a.get("lr")).unwrap_or(lr),
                    beta1: num(a.get("beta1")).unwrap_or(beta1),
                    beta2: num(a.get("beta2")).unwrap_or(beta2),
                    eps: num(a.get("eps")).unwrap_or(eps),
                }
            }
            Some((_, a)) => OptimizerKind::Sgd {
                lr: num(a.get("lr")).unwrap_or(DEFAULT_SGD_LR),
                momentum: num(a.get("momentum")).unwrap_or(0.0),
                nesterov: matches!(a.get("nesterov"), Some(Value::Bool(true))),
            },
            None => d.optimizer,
        };
        // `normal(std)` and `uniform(a)` require their argument (the schema checks it).
        let init = match call(s, "init") {
            Some(("he", _)) => Init::He,
            Some(("normal", a)) => Init::Normal { std: num(a.get("std")).unwrap_or(0.01) },
            Some(("uniform", a)) => Init::Uniform { a: num(a.get("a")).unwrap_or(0.05) },
            _ => d.init,
        };
        let reg = match s.get("regularize") {
            Some(Setting::Block(b)) => b.clone(),
            _ => Settings::new(),
        };
        // `step(every, factor)`, `exponential(decay)` and `plateau(factor)` require theirs.
        let schedule = match call(s, "schedule") {
            Some(("step", a)) => Schedule::Step {
                every: num(a.get("every")).unwrap_or(1.0) as usize,
                factor: num(a.get("factor")).unwrap_or(1.0),
            },
            Some(("exponential", a)) => Schedule::Exponential { decay: num(a.get("decay")).unwrap_or(1.0) },
            Some(("plateau", a)) => Schedule::Plateau {
                factor: num(a.get("factor")).unwrap_or(0.5),
                patience: num(a.get("patience")).map_or(DEFAULT_PATIENCE, |p| p as usize),
            },
            _ => d.schedule,
        };
        let validate = match value(s, "validate") {
            Some(Value::Percent(p)) => p / 100.0,
            Some(Value::Float(f)) => *f,
            _ => d.validate,
        };
        let ema = match call(s, "average") {
            Some(("ema", a)) => num(a.get("decay")),
            _ => None,
        };
        TrainRecipe {
            model: recipe.target.clone(),
            data: recipe.on.clone(),
            loss,
            bins,
            optimizer,
            init,
            l1: num(value(&reg, "l1")).unwrap_or(d.l1),
            l2: num(value(&reg, "l2")).unwrap_or(d.l2),
            max_norm: num(value(&reg, "max_norm")),
            batch: num(value(s, "batch")).map_or(d.batch, |b| b as usize),
            epochs: num(value(s, "epochs")).map_or(d.epochs, |e| e as usize),
            schedule,
            validate,
            ema,
            clip: num(value(s, "clip")),
            bptt: num(value(s, "bptt")).map(|n| n as usize),
            seed: num(value(s, "seed")).map_or(d.seed, |v| v as u64),
        }
    }

    /// What a model without a `train` block is compiled with (`nn!`, `check`): the loss its
    /// last layer suggests, at [`DEFAULT_PLAN_BATCH`].
    pub fn implied(model: &crate::shape::Model) -> TrainRecipe {
        TrainRecipe {
            model: model.graph.name.clone(),
            loss: loss::default_for(model.graph.output_op()),
            batch: DEFAULT_PLAN_BATCH,
            ..TrainRecipe::default()
        }
    }

    /// The runtime's options for this recipe on `threads` threads.
    pub fn options(&self, threads: usize) -> Options {
        Options {
            optimizer: self.optimizer,
            init: self.init,
            l1: self.l1,
            l2: self.l2,
            max_norm: self.max_norm,
            batch: self.batch,
            epochs: self.epochs,
            schedule: self.schedule,
            validate: self.validate,
            ema: self.ema,
            clip: self.clip,
            bptt: self.bptt,
            seed: self.seed,
            threads,
            split: Split::Auto,
            cluster: None,
        }
    }
}

/// Where a data split is read from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// IDX images and labels (MNIST's format).
    Idx {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
    },
    /// Two `.npy` arrays.
    Npy {
        /// The inputs.
        x: PathBuf,
        /// The targets.
        y: PathBuf,
    },
    /// One CSV file with the label in column `label` (default: the last).
    Csv {
        /// The file.
        path: PathBuf,
        /// The label's column (default: the last).
        label: Option<usize>,
    },
    /// Sequences in long CSV form, a row per step: `seq,t,label,f0,f1,…`.
    Sequences {
        /// The file.
        path: PathBuf,
    },
    /// Character text (UTF-8, gzipped or plain): a stream for a character model.
    Text {
        /// The file.
        path: PathBuf,
    },
}

impl Source {
    fn from_setting(setting: &Setting) -> Option<Source> {
        let Setting::Call { name, args } = setting else { return None };
        Some(match name.as_str() {
            "idx" => Source::Idx { images: string(args, "images").into(), labels: string(args, "labels").into() },
            "npy" => Source::Npy { x: string(args, "x").into(), y: string(args, "y").into() },
            "csv" => {
                Source::Csv { path: string(args, "path").into(), label: num(args.get("label")).map(|l| l as usize) }
            }
            "sequences" => Source::Sequences { path: string(args, "path").into() },
            "text" => Source::Text { path: string(args, "path").into() },
            _ => return None,
        })
    }

    /// The files it reads, in order (relative paths are relative to the source file).
    pub fn files(&self) -> Vec<&PathBuf> {
        match self {
            Source::Idx { images, labels } => vec![images, labels],
            Source::Npy { x, y } => vec![x, y],
            Source::Csv { path, .. } | Source::Sequences { path } | Source::Text { path } => vec![path],
        }
    }
}

/// A `data` block.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    /// The data set's name.
    pub name: String,
    /// Where the training examples are.
    pub train: Option<Source>,
    /// Where the test examples are.
    pub test: Option<Source>,
    /// Multiply every feature by this (e.g. 1/255).
    pub scale: Option<f64>,
    /// Standardize each feature with the training set's mean and deviation.
    pub standardize: bool,
    /// The number of classes it declares.
    pub classes: Option<usize>,
}

impl DataSpec {
    /// The typed view of a checked `data` block.
    pub fn from_block(recipe: &Recipe) -> DataSpec {
        let s = &recipe.settings;
        DataSpec {
            name: recipe.target.clone(),
            train: s.get("train").and_then(Source::from_setting),
            test: s.get("test").and_then(Source::from_setting),
            scale: num(value(s, "scale")),
            standardize: matches!(value(s, "standardize"), Some(Value::Bool(true))),
            classes: num(value(s, "classes")).map(|c| c as usize),
        }
    }
}

/// How a searched value is drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    /// `exp(uniform(ln lo, ln hi))`.
    LogUniform {
        /// The smallest value.
        lo: f64,
        /// The largest value.
        hi: f64,
    },
    /// Uniform in `lo..hi`.
    Uniform {
        /// The smallest value.
        lo: f64,
        /// The largest value.
        hi: f64,
    },
    /// An integer in `lo..=hi`.
    IntUniform {
        /// The smallest value.
        lo: i64,
        /// The largest value.
        hi: i64,
    },
    /// One of the values, each as likely.
    Choice(Vec<Value>),
}

/// `path ~ distribution`.
#[derive(Clone, Debug, PartialEq)]
pub struct Searched {
    /// A model parameter (`[width]`) or a recipe setting (`[optimizer, lr]`).
    pub path: Vec<String>,
    /// How it is drawn.
    pub distribution: Distribution,
}

/// `stage name { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The stage's name.
    pub name: String,
    /// Epochs each trial trains (default: the recipe's).
    pub epochs: Option<usize>,
    /// How many of the best trials the next stage narrows around.
    pub keep: Option<usize>,
    /// Trials in the stage (default: the block's).
    pub trials: Option<usize>,
}

/// A `search` block.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpec {
    /// The model searched.
    pub model: String,
    /// Trials per stage.
    pub trials: Option<usize>,
    /// The searched values.
    pub searched: Vec<Searched>,
    /// The stages, coarse to fine.
    pub stages: Vec<Stage>,
}

impl SearchSpec {
    /// The typed view of a checked `search` block.
    pub fn from_block(recipe: &Recipe) -> SearchSpec {
        let count = |s: &Settings, k: &str| num(value(s, k)).map(|v| v as usize);
        let searched = recipe
            .samples
            .iter()
            .filter_map(|s| {
                let f = |i: usize| s.args.get(i).and_then(Value::as_f64);
                let distribution = match s.distribution.as_str() {
                    "log_uniform" => Distribution::LogUniform { lo: f(0)?, hi: f(1)? },
                    "uniform" => Distribution::Uniform { lo: f(0)?, hi: f(1)? },
                    "int_uniform" => Distribution::IntUniform { lo: f(0)? as i64, hi: f(1)? as i64 },
                    "choice" => Distribution::Choice(s.args.clone()),
                    _ => return None,
                };
                Some(Searched { path: s.path.clone(), distribution })
            })
            .collect();
        SearchSpec {
            model: recipe.target.clone(),
            trials: count(&recipe.settings, "trials"),
            searched,
            stages: recipe
                .stages
                .iter()
                .map(|(name, s)| Stage {
                    name: name.clone(),
                    epochs: count(s, "epochs"),
                    keep: count(s, "keep"),
                    trials: count(s, "trials"),
                })
                .collect(),
        }
    }
}

/// Where an ensemble's members come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Members {
    /// The best trials of the model's search.
    TopOfSearch,
    /// The recipe trained from different seeds.
    Seeds,
    /// The last `n` checkpoints of one run.
    Checkpoints {
        /// How many.
        last: usize,
    },
}

/// An `ensemble` block.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleSpec {
    /// The model.
    pub model: String,
    /// How many members.
    pub members: Option<usize>,
    /// Where the members come from.
    pub from: Members,
}

impl EnsembleSpec {
    /// The typed view of a checked `ensemble` block.
    pub fn from_block(recipe: &Recipe) -> EnsembleSpec {
        let from = match call(&recipe.settings, "from") {
            Some(("top", _)) => Members::TopOfSearch,
            Some(("checkpoints", a)) => Members::Checkpoints { last: num(a.get("last")).map_or(1, |v| v as usize) },
            _ => Members::Seeds,
        };
        EnsembleSpec {
            model: recipe.target.clone(),
            members: num(value(&recipe.settings, "members")).map(|v| v as usize),
            from,
        }
    }
}
