//! Typed recipes: what the checked `train`, `data`, `search` and `ensemble` blocks say, as
//! values the rest of the program reads without looking at settings by name. Every default a
//! recipe can leave out is here, once ([`TrainRecipe::default`] and the constants below);
//! the runtime's training options are built from a [`TrainRecipe`] ([`TrainRecipe::options`]).
//!
//! Blocks are checked against their schema first (`recipe.rs`) and decoded here once, when
//! the file is compiled ([`crate::Compiled`] keeps the typed `train` and `data` blocks): a
//! value the schema let through has the kind read here, and a name it accepts but this
//! decoder does not know is reported as a compiler bug, never read as a default.

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
/// `adamw()` without a weight decay: PyTorch's.
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.01;
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
    /// Epochs of linear warm-up before the schedule, step by step (0: none).
    pub warmup: usize,
    /// The fraction of the training set held out for validation (0 for none).
    pub validate: f64,
    /// `average = ema(decay)`.
    pub ema: Option<f64>,
    /// `clip = c`: gradient clipping by global norm.
    pub clip: Option<f64>,
    /// `accumulate = k`: batches per update.
    pub accumulate: usize,
    /// `stop = patience(k)`: early stopping after k epochs without a lower validation loss.
    pub patience: Option<usize>,
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
            loss: UserLoss::CROSS_ENTROPY,
            bins: None,
            optimizer: OptimizerKind::Sgd { lr: DEFAULT_SGD_LR, momentum: 0.0, nesterov: false },
            init: Init::Xavier,
            l1: 0.0,
            l2: 0.0,
            max_norm: None,
            batch: DEFAULT_BATCH,
            epochs: DEFAULT_EPOCHS,
            schedule: Schedule::Constant,
            warmup: 0,
            validate: 0.0,
            ema: None,
            clip: None,
            accumulate: 1,
            patience: None,
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

fn string(s: &BTreeMap<String, Value>, key: &str) -> Result<String, String> {
    match s.get(key) {
        Some(Value::Str(v)) => Ok(v.clone()),
        _ => Err(format!("no `{key}` string")),
    }
}

/// A required argument of a checked call (the schema made sure it is there).
fn need(a: &BTreeMap<String, Value>, key: &str, of: &str) -> Result<f64, String> {
    num(a.get(key)).ok_or_else(|| format!("`{of}` without its `{key}`"))
}

/// A name the schema lets through but this decoder does not know: a compiler bug, reported
/// as one rather than read as some default.
fn unknown<T>(key: &str, name: &str) -> Result<T, String> {
    Err(format!("`{key} = {name}` passed the recipe's checks but has no meaning here"))
}

impl TrainRecipe {
    /// The typed form of a checked `train` block. Every name the schema accepts is decoded
    /// here by name; nothing falls back to a default for a name it does not know (that would
    /// be a compiler bug, and is reported as one).
    pub fn from_block(recipe: &Recipe) -> Result<TrainRecipe, String> {
        let s = &recipe.settings;
        let d = TrainRecipe::default();
        let (loss, bins) = match call(s, "loss") {
            None => (d.loss, None),
            Some((name, a)) => match loss::from_user_name(name) {
                Some(UserLoss::CrossEntropy(_)) => {
                    let smoothing = nnlang_runtime::plan::Smoothing::new(num(a.get("smoothing")).unwrap_or(0.0));
                    (UserLoss::CrossEntropy(smoothing), num(a.get("bins")).map(|b| b as usize))
                }
                Some(l) => (l, num(a.get("bins")).map(|b| b as usize)),
                None => return unknown("loss", name),
            },
        };
        let optimizer = match call(s, "optimizer") {
            None => d.optimizer,
            Some((name @ ("adam" | "adamw"), a)) => {
                let (lr, beta1, beta2, eps) = DEFAULT_ADAM;
                let decay = if name == "adamw" { DEFAULT_WEIGHT_DECAY } else { 0.0 };
                OptimizerKind::Adam {
                    lr: num(a.get("lr")).unwrap_or(lr),
                    beta1: num(a.get("beta1")).unwrap_or(beta1),
                    beta2: num(a.get("beta2")).unwrap_or(beta2),
                    eps: num(a.get("eps")).unwrap_or(eps),
                    weight_decay: num(a.get("weight_decay")).unwrap_or(decay),
                }
            }
            Some(("sgd", a)) => OptimizerKind::Sgd {
                lr: num(a.get("lr")).unwrap_or(DEFAULT_SGD_LR),
                momentum: num(a.get("momentum")).unwrap_or(0.0),
                nesterov: matches!(a.get("nesterov"), Some(Value::Bool(true))),
            },
            Some((other, _)) => return unknown("optimizer", other),
        };
        let init = match call(s, "init") {
            None => d.init,
            Some(("xavier", _)) => Init::Xavier,
            Some(("he", _)) => Init::He,
            Some(("normal", a)) => Init::Normal { std: need(a, "std", "normal")? },
            Some(("uniform", a)) => Init::Uniform { a: need(a, "a", "uniform")? },
            Some((other, _)) => return unknown("init", other),
        };
        let reg = match s.get("regularize") {
            Some(Setting::Block(b)) => b.clone(),
            _ => Settings::new(),
        };
        let schedule = match call(s, "schedule") {
            None => d.schedule,
            Some(("constant", _)) => Schedule::Constant,
            Some(("step", a)) => {
                Schedule::Step { every: need(a, "every", "step")? as usize, factor: need(a, "factor", "step")? }
            }
            Some(("exponential", a)) => Schedule::Exponential { decay: need(a, "decay", "exponential")? },
            Some(("cosine", a)) => Schedule::Cosine { min: num(a.get("min")).unwrap_or(0.0) },
            Some(("plateau", a)) => Schedule::Plateau {
                factor: need(a, "factor", "plateau")?,
                patience: num(a.get("patience")).map_or(DEFAULT_PATIENCE, |p| p as usize),
            },
            Some((other, _)) => return unknown("schedule", other),
        };
        let validate = match value(s, "validate") {
            None => d.validate,
            Some(Value::Percent(p)) => p / 100.0,
            Some(Value::Float(f)) => *f,
            Some(other) => return Err(format!("`validate = {other}` passed the recipe's checks")),
        };
        // `clip = 5` or `clip = norm(5)`: the same clipping by global norm.
        let clip = match (value(s, "clip"), call(s, "clip")) {
            (Some(v), _) => v.as_f64(),
            (None, Some(("norm", a))) => Some(need(a, "max", "norm")?),
            (None, Some((other, _))) => return unknown("clip", other),
            (None, None) => None,
        };
        let patience = match call(s, "stop") {
            None | Some(("never", _)) => None,
            Some(("patience", a)) => Some(need(a, "epochs", "patience")? as usize),
            Some((other, _)) => return unknown("stop", other),
        };
        let ema = match call(s, "average") {
            None | Some(("none", _)) => None,
            Some(("ema", a)) => Some(need(a, "decay", "ema")?),
            Some((other, _)) => return unknown("average", other),
        };
        Ok(TrainRecipe {
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
            warmup: num(value(s, "warmup")).map_or(d.warmup, |w| w as usize),
            validate,
            ema,
            clip,
            accumulate: num(value(s, "accumulate")).map_or(d.accumulate, |k| k as usize),
            patience,
            bptt: num(value(s, "bptt")).map(|n| n as usize),
            seed: num(value(s, "seed")).map_or(d.seed, |v| v as u64),
        })
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
            warmup: self.warmup,
            validate: self.validate,
            ema: self.ema,
            clip: self.clip,
            accumulate: self.accumulate,
            patience: self.patience,
            augment: None,
            bptt: self.bptt,
            seed: self.seed,
            threads,
            split: Split::Auto,
            cluster: None,
            worker_plan: None,
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
    /// A folder of PNG and JPEG images, one subfolder per class (in name order).
    Images {
        /// The folder.
        path: PathBuf,
        /// Resize every image to `(height, width)` on load; else all must have one size.
        size: Option<(usize, usize)>,
        /// 1 (grey) or 3 (RGB): what every image is converted to.
        channels: usize,
    },
    /// Character text (UTF-8, gzipped or plain): a stream for a character model.
    Text {
        /// The file.
        path: PathBuf,
    },
}

impl Source {
    fn from_setting(setting: &Setting) -> Result<Source, String> {
        let Setting::Call { name, args } = setting else { return Err("a data source that is not a call".into()) };
        Ok(match name.as_str() {
            "idx" => Source::Idx { images: string(args, "images")?.into(), labels: string(args, "labels")?.into() },
            "npy" => Source::Npy { x: string(args, "x")?.into(), y: string(args, "y")?.into() },
            "csv" => {
                Source::Csv { path: string(args, "path")?.into(), label: num(args.get("label")).map(|l| l as usize) }
            }
            "sequences" => Source::Sequences { path: string(args, "path")?.into() },
            "text" => Source::Text { path: string(args, "path")?.into() },
            "images" => Source::Images {
                path: string(args, "path")?.into(),
                size: match (num(args.get("height")), num(args.get("width"))) {
                    (Some(h), Some(w)) => Some((h as usize, w as usize)),
                    _ => None,
                },
                channels: num(args.get("channels")).map_or(1, |c| c as usize),
            },
            other => return unknown("train", other),
        })
    }

    /// The files it reads, in order (relative paths are relative to the source file).
    pub fn files(&self) -> Vec<&PathBuf> {
        match self {
            Source::Idx { images, labels } => vec![images, labels],
            Source::Npy { x, y } => vec![x, y],
            Source::Csv { path, .. }
            | Source::Sequences { path }
            | Source::Text { path }
            | Source::Images { path, .. } => vec![path],
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
    /// `augment { crop = p, shift = s, flip = true }`: random changes to the training images.
    pub augment: Option<AugmentSpec>,
}

/// The `augment` block of a data set: what is drawn for each training image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AugmentSpec {
    /// A random crop of the image zero-padded by this many pixels (0: none).
    pub crop: usize,
    /// A random shift of up to this many pixels, the edge repeated (0: none).
    pub shift: usize,
    /// A horizontal flip half the time.
    pub flip: bool,
}

impl AugmentSpec {
    /// The runtime's augmentation of `model`'s images (`None` where its input is not
    /// `[h, w, c]`, which `check` refuses).
    pub fn for_model(self, model: &crate::Model) -> Option<nnlang_runtime::data::augment::Augment> {
        let (height, width, channels) = model.image_input()?;
        let AugmentSpec { crop, shift, flip } = self;
        Some(nnlang_runtime::data::augment::Augment { height, width, channels, crop, shift, flip })
    }
}

impl DataSpec {
    /// The typed view of a checked `data` block.
    pub fn from_block(recipe: &Recipe) -> Result<DataSpec, String> {
        let s = &recipe.settings;
        Ok(DataSpec {
            name: recipe.target.clone(),
            train: s.get("train").map(Source::from_setting).transpose()?,
            test: s.get("test").map(Source::from_setting).transpose()?,
            scale: num(value(s, "scale")),
            standardize: matches!(value(s, "standardize"), Some(Value::Bool(true))),
            classes: num(value(s, "classes")).map(|c| c as usize),
            augment: match s.get("augment") {
                Some(Setting::Block(b)) => Some(AugmentSpec {
                    crop: num(value(b, "crop")).map_or(0, |v| v as usize),
                    shift: num(value(b, "shift")).map_or(0, |v| v as usize),
                    flip: matches!(value(b, "flip"), Some(Value::Bool(true))),
                }),
                _ => None,
            },
        })
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
    pub fn from_block(recipe: &Recipe) -> Result<SearchSpec, String> {
        let count = |s: &Settings, k: &str| num(value(s, k)).map(|v| v as usize);
        let searched = recipe
            .samples
            .iter()
            .map(|s| {
                let f = |i: usize| {
                    s.args
                        .get(i)
                        .and_then(Value::as_f64)
                        .ok_or_else(|| format!("`{}` without its bounds", s.distribution))
                };
                let distribution = match s.distribution.as_str() {
                    "log_uniform" => Distribution::LogUniform { lo: f(0)?, hi: f(1)? },
                    "uniform" => Distribution::Uniform { lo: f(0)?, hi: f(1)? },
                    "int_uniform" => Distribution::IntUniform { lo: f(0)? as i64, hi: f(1)? as i64 },
                    "choice" => Distribution::Choice(s.args.clone()),
                    other => return unknown("~", other),
                };
                Ok(Searched { path: s.path.clone(), distribution })
            })
            .collect::<Result<_, String>>()?;
        Ok(SearchSpec {
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
        })
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
    pub fn from_block(recipe: &Recipe) -> Result<EnsembleSpec, String> {
        let from = match call(&recipe.settings, "from") {
            None | Some(("seeds", _)) => Members::Seeds,
            Some(("top", _)) => Members::TopOfSearch,
            Some(("checkpoints", a)) => Members::Checkpoints { last: need(a, "last", "checkpoints")? as usize },
            Some((other, _)) => return unknown("from", other),
        };
        Ok(EnsembleSpec {
            model: recipe.target.clone(),
            members: num(value(&recipe.settings, "members")).map(|v| v as usize),
            from,
        })
    }
}
