//! The library session: everything between a checked file and a trained, evaluated or run
//! model, for the command line, searches, ensembles and Rust programs alike.
//!
//! ```text
//! Session::open(file) ─▶ Job (model, TrainRecipe, DataSpec) ─▶ load_data ─▶ prepare ─▶ fit ─▶ write_run
//!                                                                └─▶ evaluate, confusion
//! Session::predict_npy (run a model on an array file)
//! ```
//!
//! It prints nothing and installs no signal handler: progress goes to a
//! [`nnlang_runtime::train::Observer`], problems come back as [`Error`]s that name the file.

pub mod artifacts;
pub mod data;
pub mod ensemble;
pub mod gradcheck;
pub mod resume;
pub mod sample;
pub mod sanity;
pub mod search;

pub use data::{Expect, Loaded};
pub use sample::SampleSpec;

use crate::diag::render_all;
use crate::ir::Dim;
use crate::plan::{build, Mode, MEMORY_LIMIT};
use crate::spec::{DataSpec, TrainRecipe};
use crate::syntax::ast::BlockKind;
use crate::{compile, Compiled, Model};
use nnlang_runtime::data::Table;
use nnlang_runtime::interp::{argmax_rows, Exec};
use nnlang_runtime::plan::{Loss, Plan};
use nnlang_runtime::train::{self, Data, Evaluation, Observer, Outcome};
use std::path::{Path, PathBuf};

/// Why a session could not go on.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The source has errors: every diagnostic, rendered with the source.
    Diagnostics(String),
    /// A problem in an input (the source, a data file, a weights file), naming the file.
    Input(String),
    /// A mistake in how nnlang was asked (a flag, an output location).
    Usage(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Diagnostics(text) => f.write_str(text.trim_end()),
            Error::Input(m) | Error::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A compiled source file.
pub struct Session {
    /// The source file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// What compiling it gave.
    pub compiled: Compiled,
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "it is a directory".to_string(),
        _ => e.to_string(),
    }
}

/// Reads a source file as UTF-8; a byte that is not names its line and column.
pub fn read_source(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    const MAX_SOURCE: u64 = 64 << 20;
    let cannot = |e: std::io::Error| Error::Usage(format!("cannot read {}: {}", path.display(), io_reason(&e)));
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.is_dir() {
        return Err(Error::Usage(format!("cannot read {}: it is a directory", path.display())));
    }
    if !meta.is_file() {
        return Err(Error::Usage(format!("cannot read {}: not a regular file (a pipe or a device)", path.display())));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_SOURCE + 1).read_to_end(&mut bytes)).map_err(cannot)?;
    if bytes.len() as u64 > MAX_SOURCE {
        return Err(Error::Input(format!("{}: larger than the 64 MiB a model source may be", path.display())));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let (line, col) = nnlang_runtime::data::place(e.as_bytes(), at);
        Error::Input(format!(
            "{}:{line}:{col}: the file is not valid UTF-8 (byte 0x{:02x} at offset {at})",
            path.display(),
            e.as_bytes()[at]
        ))
    })
}

impl Session {
    /// Reads and compiles `path`. Warnings are kept ([`Session::warnings`]); errors end the
    /// session with every diagnostic rendered.
    pub fn open(path: &Path, opts: &crate::Options) -> Result<Session, Error> {
        let source = read_source(path)?;
        Session::from_source(path.to_path_buf(), source, opts)
    }

    /// Compiles `source` as if read from `path` (for names in messages and relative data paths).
    pub fn from_source(path: PathBuf, source: String, opts: &crate::Options) -> Result<Session, Error> {
        let source = crate::settings::override_source(&source, &opts.recipe, opts.model.as_deref())
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        let compiled = compile(&source, opts).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        let session = Session { path, source, compiled };
        if session.compiled.has_errors() {
            return Err(Error::Diagnostics(session.render(&session.compiled.diagnostics)));
        }
        Ok(session)
    }

    /// The warnings of the compilation, rendered; empty when there are none.
    pub fn warnings(&self) -> String {
        if self.compiled.diagnostics.is_empty() {
            String::new()
        } else {
            self.render(&self.compiled.diagnostics)
        }
    }

    fn render(&self, diags: &[crate::diag::Diagnostic]) -> String {
        render_all(diags, &self.path.display().to_string(), &self.source)
    }

    fn input_error(&self, msg: impl std::fmt::Display) -> Error {
        Error::Input(format!("{}: {msg}", self.path.display()))
    }

    /// The directory relative data paths start from.
    pub fn base(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// The model named `name`, or the file's only model.
    pub fn model(&self, name: Option<&str>) -> Result<&Model, Error> {
        let name = match (name, self.compiled.models.as_slice()) {
            (Some(m), _) => m.to_string(),
            (None, [one]) => one.graph.name.clone(),
            (None, _) => {
                return Err(Error::Usage(format!(
                    "{}: the file has several models; choose one with --model",
                    self.path.display()
                )))
            }
        };
        self.compiled
            .models
            .iter()
            .find(|m| m.graph.name == name)
            .ok_or_else(|| Error::Usage(format!("no model `{name}`")))
    }

    /// The model a command works on, as `train` and `eval` choose it: the one named, the
    /// file's only model, or the model of its first `train` block.
    pub fn main_model(&self, name: Option<&str>) -> Result<&Model, Error> {
        if name.is_some() || self.compiled.models.len() == 1 {
            return self.model(name);
        }
        match self.compiled.train_recipe(None) {
            Some(r) => self.model(Some(&r.model)),
            None => self.model(None),
        }
    }

    /// The plan of `model` for `mode` at batches of up to `batch` rows, refused above
    /// [`MEMORY_LIMIT`].
    pub fn plan(&self, model: &Model, mode: Mode, batch: usize) -> Result<Plan, Error> {
        self.plan_with(model, mode, batch, false)
    }

    /// [`Session::plan`]; with `carry`, recurrent layers carry their state from one run to
    /// the next (truncated BPTT over a stream).
    pub fn plan_with(&self, model: &Model, mode: Mode, batch: usize, carry: bool) -> Result<Plan, Error> {
        let plan = if carry { crate::plan::build_carrying(model, mode, batch) } else { build(model, mode, batch) }
            .map_err(|d| Error::Diagnostics(self.render(&d)))?;
        let bytes = (plan.arena_len as u64).saturating_add(2 * plan.params_len as u64).saturating_mul(4);
        if bytes > MEMORY_LIMIT {
            return Err(self.input_error(format!(
                "model `{}` at batch {batch} needs {} for its buffers and parameters, more than the {} nnlangc allows; lower `batch` or the layer sizes",
                model.graph.name,
                crate::summary::bytes(bytes),
                crate::summary::bytes(MEMORY_LIMIT)
            )));
        }
        Ok(plan)
    }

    /// The training job of `model` (default: the first `train` block's model).
    pub fn job(&self, model: Option<&str>) -> Result<Job<'_>, Error> {
        let recipe = self.compiled.train_recipe(model).ok_or_else(|| {
            let which = model.map_or(String::new(), |m| format!(" for model `{m}`"));
            self.input_error(format!(
                "no `train` block{which}: the recipe (loss, optimizer, data, …) says how to train"
            ))
        })?;
        let model = self
            .compiled
            .models
            .iter()
            .find(|m| m.graph.name == recipe.model)
            .ok_or_else(|| self.input_error(format!("model `{}` was not compiled", recipe.model)))?;
        Ok(Job { session: self, model, recipe })
    }

    /// Runs `model` with the weights in `weights` on the `.npy` array in `input` and writes
    /// its outputs to `output` as `.npy`.
    pub fn predict_npy(&self, model: &Model, weights: &Path, input: &Path, output: &Path) -> Result<Predicted, Error> {
        // Refused now, not after the work: an output that is a device, a pipe, a link or a
        // directory.
        nnlang_runtime::io::check_replaceable(output).map_err(Error::Usage)?;
        let x = nnlang_runtime::data::npy::read(input).map_err(|e| Error::Input(e.to_string()))?;
        let raw = self.predict_array(model, weights, &x, input)?;
        let written = self.finish_prediction(model, raw);
        nnlang_runtime::data::npy::write(output, &written.predicted.shape, &written.y)
            .map_err(|e| Error::Usage(e.to_string()))?;
        Ok(written.predicted)
    }

    /// What a prediction writes: a binned regression's values (the centre of each row's
    /// likeliest bin), a regression's outputs as values, a classifier's probabilities.
    pub fn finish_prediction(&self, model: &Model, raw: RawPrediction) -> Finished {
        let RawPrediction { y, shape, preprocess } = raw;
        let rows = shape.first().copied().unwrap_or(0);
        let per_row = y.len() / rows.max(1);
        let classes = argmax_rows(shape.last().copied().unwrap_or(per_row).max(1), &y);
        let (out, shape, values) = match preprocess.bins {
            Some(b) => {
                let v: Vec<f32> = classes.iter().map(|&c| b.centre(c)).collect();
                (v.clone(), vec![rows, 1], Some(v))
            }
            None => {
                let loss = self.compiled.recipe_or_implied(model).loss;
                let values = (loss == Loss::MeanSquaredError).then(|| y.clone());
                (y, shape, values)
            }
        };
        Finished { y: out, predicted: Predicted { rows, shape, classes, values } }
    }

    /// The outputs of `model` with the weights in `weights` on the raw array `x` (read from
    /// `input`, named in errors): what `train` did to the data (`preprocess.json` beside the
    /// weights) done first; sequences shorter than the plan's padded, per-step outputs cut
    /// back to the array's steps.
    pub fn predict_array(
        &self,
        model: &Model,
        weights: &Path,
        x: &nnlang_runtime::data::npy::Array,
        input: &Path,
    ) -> Result<RawPrediction, Error> {
        const BATCH: usize = 256;
        let plan = self.plan(model, Mode::Inference, BATCH)?;
        let mut exec = load_weights(&plan, weights)?;
        let in_id = model.graph.inputs[0];
        let dims = fixed_dims(model, in_id);
        // A sequence model reads `[batch, steps, features]`: every sequence of the array's
        // steps, padded to the plan's when it accepts shorter ones.
        let sequence = plan.sequence;
        let steps_ok =
            |l: usize| sequence.is_some_and(|s| if s.variable { (1..=s.steps).contains(&l) } else { l == s.steps });
        let fits = x.shape.len() == dims.len() + 1
            && match sequence {
                Some(_) => steps_ok(x.shape[1]) && x.shape[2..] == dims[1..],
                None => x.shape[1..] == dims[..],
            };
        if !fits {
            let want = match sequence {
                Some(s) if s.variable => format!(
                    "[batch, steps, {}] with 1 to {} steps",
                    dims[1..].iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                    s.steps
                ),
                _ => format!("[batch, {}]", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
            };
            return Err(Error::Input(format!(
                "{}: array of shape {:?}; the model's input `{}` needs {want}",
                input.display(),
                x.shape,
                model.graph.node(in_id).name,
            )));
        }
        let cols = plan.inputs[0].cols;
        let rows = x.shape[0];
        let given = x.data.len() / rows.max(1);
        if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "{}: row {}, element {} is NaN or infinite",
                input.display(),
                i / given.max(1),
                i % given.max(1)
            )));
        }
        let length = sequence.map(|_| x.shape[1]);
        // What `train` did to the data, done to the raw array (saved beside the weights).
        let pre_path = weights.with_file_name("preprocess.json");
        let pre = if pre_path.exists() {
            data::Preprocess::read(&pre_path).map_err(|e| Error::Input(e.to_string()))?
        } else {
            data::Preprocess::default()
        };
        if let Some((m, _)) = &pre.standardize {
            let per = given / length.unwrap_or(1).max(1);
            if m.is_empty() || (m.len() != given && m.len() != per) {
                return Err(Error::Input(format!(
                    "{}: statistics of {} features, but the model reads {given} values per example",
                    pre_path.display(),
                    m.len()
                )));
            }
        }
        let mut raw = x.data.clone();
        pre.apply(&mut raw);
        let padded: Vec<f32> = if given == cols {
            raw
        } else {
            let mut p = vec![0f32; rows * cols];
            for (dst, src) in p.chunks_exact_mut(cols).zip(raw.chunks_exact(given.max(1))) {
                dst[..given].copy_from_slice(src);
            }
            p
        };
        if let Some(l) = length {
            exec.set_lengths(&vec![l; plan.max_batch]);
        }
        let y = infer(&plan, &mut exec, &padded, cols, rows).map_err(|e| Error::Input(e.to_string()))?;
        let out_id = model.graph.output.unwrap_or(in_id);
        let mut shape = vec![rows];
        shape.extend(fixed_dims(model, out_id));
        // An output at every step: the array's steps, not the padding.
        let y = match (sequence, length) {
            (Some(s), Some(l)) if s.per_step_output && l < s.steps => {
                let per = plan.output.cols / s.steps;
                shape[1] = l;
                y.chunks_exact(plan.output.cols).flat_map(|r| r[..l * per].iter().copied()).collect()
            }
            (Some(s), Some(_)) if s.per_step_output => {
                shape[1] = s.steps;
                y
            }
            _ => y,
        };
        Ok(RawPrediction { y, shape, preprocess: pre })
    }
}

/// A model's outputs on an array, before [`Session::finish_prediction`].
pub struct RawPrediction {
    /// The outputs, row-major.
    pub y: Vec<f32>,
    /// Their shape, batch first.
    pub shape: Vec<usize>,
    /// What was done to the inputs (and says what to do to a binned regression's outputs).
    pub preprocess: data::Preprocess,
}

/// What a prediction writes, and what to report about it.
pub struct Finished {
    /// The array written.
    pub y: Vec<f32>,
    /// The report (with the array's shape).
    pub predicted: Predicted,
}

/// The model's parameter tensors laid end to end in declaration order, without a plan: names
/// and shapes as checkpoints hold them, and each tensor's role ([`crate::shape::param_table`],
/// the table every plan of the model holds too).
pub fn param_table(model: &Model) -> Vec<nnlang_runtime::plan::Param> {
    crate::shape::param_table(&model.shapes).0
}

/// The weights in the safetensors file `path`, by parameter name, checked against the
/// model's parameters (every one present with its shape, finite, no other tensor).
pub fn read_params(model: &Model, path: &Path) -> Result<std::collections::HashMap<String, Vec<f32>>, Error> {
    let table = param_table(model);
    let mut flat = vec![0f32; table.iter().map(|p| p.buf.len).sum()];
    nnlang_runtime::io::load(path, &table, &mut flat).map_err(|e| Error::Input(e.to_string()))?;
    Ok(table.into_iter().map(|p| (p.name, flat[p.buf.range()].to_vec())).collect())
}

/// What [`Session::predict_npy`] wrote.
pub struct Predicted {
    /// Rows predicted.
    pub rows: usize,
    /// The output array's shape, batch first.
    pub shape: Vec<usize>,
    /// The index of each row's largest output.
    pub classes: Vec<usize>,
    /// For a regression (a binned one included), the values written.
    pub values: Option<Vec<f32>>,
}

/// The dimensions of a node's shape; a sequence's steps count at their longest (0 when
/// unbounded).
fn fixed_dims(model: &Model, id: crate::ir::NodeId) -> Vec<usize> {
    model.shapes.shapes[id.index()]
        .as_ref()
        .map(|s| {
            s.0.iter()
                .map(|d| match d {
                    Dim::Fixed(n) | Dim::Steps { len: n, .. } | Dim::Seq { max: Some(n), .. } => *n,
                    Dim::Seq { max: None, .. } => 0,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An executor of `plan` with the weights read from `path` (checked against the plan's
/// parameter table).
pub fn load_weights(plan: &Plan, path: &Path) -> Result<Exec<f32>, Error> {
    let mut exec = Exec::<f32>::new(plan, 0);
    nnlang_runtime::io::load(path, &plan.params, &mut exec.params).map_err(|e| Error::Input(e.to_string()))?;
    Ok(exec)
}

/// The outputs of an inference plan for `rows` rows of `cols` inputs, in batches.
pub fn infer(
    plan: &Plan,
    exec: &mut Exec<f32>,
    x: &[f32],
    cols: usize,
    rows: usize,
) -> Result<Vec<f32>, nnlang_runtime::interp::ExecError> {
    let batch = plan.max_batch;
    let mut y = Vec::with_capacity(rows * plan.output.cols);
    for start in (0..rows).step_by(batch) {
        let n = batch.min(rows - start);
        exec.run_on(plan, n, &[&x[start * cols..(start + n) * cols]], &[], None)?;
        y.extend_from_slice(exec.output(plan, n));
    }
    Ok(y)
}

impl Compiled {
    /// The `train` block of `model` (or the file's first).
    pub fn train_recipe(&self, model: Option<&str>) -> Option<TrainRecipe> {
        let mut blocks = self.recipes.iter().filter(|r| r.kind == BlockKind::Train);
        let block = match model {
            Some(m) => blocks.find(|r| r.target == m),
            None => blocks.next(),
        }?;
        Some(TrainRecipe::from_block(block))
    }

    /// The `data` block named `name`.
    pub fn data_spec(&self, name: &str) -> Option<DataSpec> {
        self.recipes.iter().find(|r| r.kind == BlockKind::Data && r.target == name).map(DataSpec::from_block)
    }

    /// What `model` is trained with: its `train` block, or what its last layer implies.
    pub fn recipe_or_implied(&self, model: &Model) -> TrainRecipe {
        self.train_recipe(Some(&model.graph.name)).unwrap_or_else(|| TrainRecipe::implied(model))
    }
}

/// A model, its training recipe and the session it came from.
pub struct Job<'s> {
    /// The compiled file.
    pub session: &'s Session,
    /// The model trained.
    pub model: &'s Model,
    /// The recipe; a caller may change it (`--epochs`) before preparing.
    pub recipe: TrainRecipe,
}

/// `result`, computed over `set`, unless a row of `set` could not be read from its file.
fn read_whole<T>(set: &Table, result: T) -> Result<T, Error> {
    match set.inputs().failure() {
        Some(e) => Err(Error::Input(e)),
        None => Ok(result),
    }
}

/// The views of a table the training loop reads.
pub fn view(t: &Table) -> Data<'_> {
    Data { x: t.inputs(), x_cols: t.cols, y: &t.y, y_cols: t.y_cols, lengths: &t.lengths }
}

impl<'s> Job<'s> {
    /// Reads and checks the recipe's data set; `limit` keeps the first rows of each split.
    pub fn load_data(&self, limit: Option<usize>) -> Result<Loaded, Error> {
        let on = self.recipe.data.clone().unwrap_or_default();
        let spec = self
            .session
            .compiled
            .data_spec(&on)
            .ok_or_else(|| self.session.input_error(format!("no data set `{on}`")))?;
        // `bins` and `classes` against the outputs were checked when the file was compiled.
        let expect = data::expect(self.model, self.recipe.loss, self.recipe.bins);
        data::load(&spec, self.session.base(), &expect, limit).map_err(|e| Error::Input(e.to_string()))
    }

    /// The inference plan used to evaluate (batches of at least 256 rows).
    pub fn eval_plan(&self) -> Result<Plan, Error> {
        self.session.plan_with(self.model, Mode::Inference, self.recipe.batch.max(256), self.recipe.bptt.is_some())
    }

    /// Everything up to the first step: plans, the validation split (drawn with the
    /// recipe's seed) and the initial weights.
    pub fn prepare(&self, loaded: &Loaded, threads: usize) -> Result<Prepared, Error> {
        self.prepare_split(loaded, threads, None)
    }

    /// `prepare`, with the training and validation examples given when already split.
    fn prepare_split(&self, loaded: &Loaded, threads: usize, split: Option<(Table, Table)>) -> Result<Prepared, Error> {
        let options = self.recipe.options(threads);
        let carry = options.bptt.is_some();
        let train_plan = self.session.plan_with(self.model, Mode::Training(self.recipe.loss), options.batch, carry)?;
        let eval_plan = self.eval_plan()?;
        if train_plan.inputs.len() != 1 {
            return Err(self.session.input_error("training from a data set needs a model with exactly one input"));
        }
        let mut params = vec![0f32; train_plan.params_len];
        train::initialize(&train_plan, &mut params, options.init, options.seed);
        let (fit, val, vocab) = match (&loaded.text, split) {
            (_, Some((fit, val))) => (fit, val, None),
            (Some(text), None) => {
                let (fit, val) = self.text_windows(text, &train_plan, &options)?;
                (fit, val, Some(text.vocab.clone()))
            }
            (None, None) if carry => {
                return Err(self
                    .session
                    .input_error("`bptt` trains on a stream in windows: the data set's `train` must be a `text(…)`"))
            }
            (None, None) => {
                let (fit_rows, val_rows) =
                    train::arrays::validation_split(loaded.train.rows(), options.validate, options.seed);
                let (fit, val) = (loaded.train.select(&fit_rows), loaded.train.select(&val_rows));
                if fit.rows() == 0 {
                    return Err(self.session.input_error(
                        "no training examples are left to train on (check the data, `--limit` and `validate`)",
                    ));
                }
                (fit, val, None)
            }
        };
        Ok(Prepared {
            train_plan,
            eval_plan,
            options,
            fit,
            val,
            params,
            vocab,
            resume: None,
            preprocess: loaded.preprocess.clone(),
        })
    }

    /// [`Job::prepare`], taking the training set out of `loaded` when its test split (or the
    /// text) makes it unneeded afterwards: the split into the examples trained on and the
    /// validation examples is then made in place, not by a copy (the data is held once).
    pub fn prepare_taking(&self, loaded: &mut Loaded, threads: usize) -> Result<Prepared, Error> {
        if loaded.text.is_some() || loaded.test.is_none() {
            return self.prepare(loaded, threads);
        }
        let options = self.recipe.options(threads);
        let (fit_rows, val_rows) = train::arrays::validation_split(loaded.train.rows(), options.validate, options.seed);
        if fit_rows.is_empty() {
            return self.prepare(loaded, threads);
        }
        let table = std::mem::take(&mut loaded.train);
        let (fit, val) = table.into_split(&fit_rows, &val_rows);
        self.prepare_split(loaded, threads, Some((fit, val)))
    }

    /// What a run of this job must share with a saved state to continue it.
    pub fn identity(&self, p: &Prepared) -> resume::Identity {
        resume::Identity {
            model: self.model.graph.name.clone(),
            seed: p.options.seed,
            batch: p.options.batch,
            threads: p.options.threads,
            processes: p.options.cluster.as_ref().map_or(1, |c| c.size()),
            products: p.options.splits_products(&p.train_plan, p.options.threads),
            params: p.train_plan.params_len,
        }
    }

    /// Continue the run whose directory is `dir` from its last completed epoch.
    pub fn resume_from(&self, p: &mut Prepared, dir: &Path) -> Result<usize, Error> {
        let state = resume::read(dir, &self.identity(p))?;
        let done = state.epochs_done;
        p.resume = Some(state);
        Ok(done)
    }

    /// Start from the weights in `path` (a checkpoint of this model) instead of the
    /// initialization.
    pub fn init_from(&self, p: &mut Prepared, path: &Path) -> Result<(), Error> {
        nnlang_runtime::io::load(path, &p.train_plan.params, &mut p.params).map_err(|e| Error::Input(e.to_string()))
    }

    /// A text cut into windows of `bptt` characters over `batch` streams: the training part,
    /// and its last `validate` fraction (in the same layout) for validation.
    fn text_windows(
        &self,
        text: &data::TextStream,
        plan: &Plan,
        options: &train::Options,
    ) -> Result<(Table, Table), Error> {
        let at = |m: String| Error::Input(format!("{}: {m}", text.file.display()));
        let Some(n) = options.bptt else {
            return Err(self.session.input_error(
                "a text is trained in windows, each starting from the state the previous one ended with: set `bptt = 100` (or another window) in the `train` block",
            ));
        };
        let Some(seq) = plan.sequence else { return Err(at("the model's input is not a sequence".into())) };
        if n > seq.steps {
            return Err(self.session.input_error(format!(
                "`bptt = {n}` is longer than the {} steps the model's input holds: give it `[seq <= {n}, …]`",
                seq.steps
            )));
        }
        if text.test.is_some() {
            return Err(at(
                "a text data set is validated on its last part (`validate = 10%`); a separate `test = text(…)` is not read yet"
                    .into(),
            ));
        }
        let ids = &text.ids;
        let n_val = ((ids.len() as f64) * options.validate).round() as usize;
        let (fit_ids, val_ids) = ids.split_at(ids.len() - n_val.min(ids.len()));
        let streams = options.batch.min(plan.max_batch).max(1);
        let v = text.vocab.len();
        let fit = data::windows(fit_ids, v, streams, n, seq.steps, !seq.variable);
        let val = data::windows(val_ids, v, streams, n, seq.steps, !seq.variable);
        if fit.rows() == 0 {
            return Err(at(format!(
                "{} characters are too few for {streams} streams of windows of {n}: lower `batch` or `bptt`",
                fit_ids.len()
            )));
        }
        Ok((fit, val))
    }

    /// Trains a prepared job to the end (or until the observer stops it).
    pub fn fit(&self, p: &mut Prepared, observer: &mut dyn Observer) -> Result<Outcome, Error> {
        let val = (p.val.rows() > 0).then(|| view(&p.val));
        train::fit(
            &p.train_plan,
            &p.eval_plan,
            self.recipe.loss,
            &mut p.params,
            view(&p.fit),
            val,
            &p.options,
            observer,
            p.resume.take(),
        )
        .map_err(|e| self.session.input_error(e))
    }

    /// Loss, accuracy and predictions of `weights` on `set`, with the inference plan `plan`;
    /// an error when `set` is left in its file and a row cannot be read.
    pub fn evaluate(&self, plan: &Plan, weights: &[f32], set: &Table) -> Result<Evaluation, Error> {
        let mut exec = Exec::<f32>::new(plan, 0);
        exec.params.copy_from_slice(weights);
        read_whole(set, train::evaluate(plan, &mut exec, self.recipe.loss, view(set), 256))
    }

    /// Evaluates the weights file `path` on `set`.
    pub fn evaluate_file(&self, path: &Path, set: &Table) -> Result<Evaluation, Error> {
        let plan = self.session.plan(self.model, Mode::Inference, 256)?;
        let mut exec = load_weights(&plan, path)?;
        read_whole(set, train::evaluate(&plan, &mut exec, self.recipe.loss, view(set), 256))
    }

    /// The confusion matrix of a classification (rows: true class, columns: predicted);
    /// `None` for a regression.
    pub fn confusion(&self, e: &Evaluation, set: &Table) -> Option<Vec<Vec<usize>>> {
        if self.recipe.loss != Loss::CrossEntropy {
            return None;
        }
        let k = self.model.graph.output.map_or(0, |o| fixed_dims(self.model, o).iter().product());
        let mut m = vec![vec![0usize; k]; k];
        for (&p, &l) in e.predictions.iter().zip(&set.y) {
            if let Some(cell) = m.get_mut(l as usize).and_then(|row| row.get_mut(p)) {
                *cell += 1;
            }
        }
        Some(m)
    }

    /// What renders the files of the run directory `dir`, for the observer to write after
    /// each epoch. Its `model.nn` is the file as trained — parameters, recipe settings and
    /// epochs — with data paths that resolve from `dir`.
    pub fn recorder(&self, p: &Prepared, dir: &Path) -> Recorder {
        let note = format!("resolved by nnlangc train: parameters as trained, {} epochs", p.options.epochs);
        let s = self.session;
        let resolved = artifacts::resolved_source(&s.source, &s.compiled, self.model, &note);
        let trained = crate::settings::override_source(
            &resolved,
            &[("epochs".to_string(), p.options.epochs.to_string())],
            Some(&self.model.graph.name),
        )
        .unwrap_or(resolved);
        let source = artifacts::relocate_data_paths(&trained, s.base(), dir);
        Recorder {
            model: self.model.graph.name.clone(),
            table: p.train_plan.params.clone(),
            input_dims: self.model.graph.inputs.first().map_or(Vec::new(), |&i| fixed_dims(self.model, i)),
            source,
            epochs: p.options.epochs,
            vocab: p.vocab.as_ref().map(|v| v.to_json()),
            preprocess: (!p.preprocess.is_empty()).then(|| p.preprocess.to_json()),
            state: Vec::new(),
            checkpoints: std::collections::VecDeque::new(),
            raw: None,
            keep: KEEP_CHECKPOINTS,
            identity: self.identity(p),
        }
    }
}

/// Renders a run's files from the history and the weights.
pub struct Recorder {
    /// The model's name.
    pub model: String,
    /// The parameter tensors, in the order of the model's layers.
    pub table: Vec<nnlang_runtime::plan::Param>,
    /// The dimensions of the model's (first) input.
    pub input_dims: Vec<usize>,
    source: String,
    epochs: usize,
    /// A character model's vocabulary (`vocab.json`).
    vocab: Option<String>,
    /// What was done to the data (`preprocess.json`).
    preprocess: Option<String>,
    /// The resume state of the last completed epoch (`state.safetensors`, `state.json`).
    state: Vec<(&'static str, Vec<u8>)>,
    /// The weights of the last `keep` completed epochs, by epoch.
    checkpoints: std::collections::VecDeque<(usize, Vec<u8>)>,
    /// With a weight average: the raw (not averaged) weights (`weights.raw.safetensors`).
    raw: Option<Vec<u8>>,
    /// How many epochs' weights to keep (0: none).
    pub keep: usize,
    identity: resume::Identity,
}

/// The file of epoch `n`'s weights in a run directory (`epoch-3.safetensors`).
fn checkpoint_name(n: usize) -> String {
    format!("epoch-{n}.safetensors")
}

/// How many epochs' weights a run directory keeps (`epoch-N.safetensors`) unless told.
pub const KEEP_CHECKPOINTS: usize = 3;

impl Recorder {
    /// For a resumed run: keeps what its directory holds of the epochs done (the resume
    /// state, the last epochs' weights), so that every write still has them.
    pub fn adopt(&mut self, dir: &Path, done: usize) -> Result<(), Error> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| Error::Input(format!("{}: {e}", dir.join(name).display())))
        };
        self.state = vec![("state.safetensors", read("state.safetensors")?), ("state.json", read("state.json")?)];
        self.raw = read("weights.raw.safetensors").ok();
        for n in done.saturating_sub(self.keep.saturating_sub(1)).max(1)..=done {
            if let Ok(bytes) = read(&checkpoint_name(n)) {
                self.checkpoints.push_back((n, bytes));
            }
        }
        Ok(())
    }

    /// Keeps an epoch's resume state and weights for the files written from now on.
    pub fn remember(&mut self, weights: &[f32], state: &train::Resume) -> Result<(), Error> {
        self.state = resume::to_files(state, &self.identity)?;
        let bytes = nnlang_runtime::io::to_bytes(&self.table, weights).map_err(|e| Error::Usage(e.to_string()))?;
        self.checkpoints.push_back((state.epochs_done, bytes));
        if state.opt.average.is_some() {
            let raw =
                nnlang_runtime::io::to_bytes(&self.table, &state.params).map_err(|e| Error::Usage(e.to_string()))?;
            self.raw = Some(raw);
        }
        while self.checkpoints.len() > self.keep {
            self.checkpoints.pop_front();
        }
        Ok(())
    }

    /// `weights.safetensors`, `metrics.csv`, `model.nn` and the manifest `run.json`
    /// (`complete`: the run ended normally, rather than after an epoch or an interruption).
    pub fn files(
        &self,
        history: &[nnlang_runtime::train::EpochStats],
        weights: &[f32],
        complete: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let checkpoint = nnlang_runtime::io::to_bytes(&self.table, weights).map_err(|e| Error::Usage(e.to_string()))?;
        let mut files = vec![
            ("weights.safetensors".to_string(), checkpoint),
            ("metrics.csv".to_string(), artifacts::metrics_csv(history).into_bytes()),
            ("layers.csv".to_string(), artifacts::layers_csv(history).into_bytes()),
            ("model.nn".to_string(), self.source.clone().into_bytes()),
        ];
        if let Some(v) = &self.vocab {
            files.push(("vocab.json".to_string(), v.clone().into_bytes()));
        }
        if let Some(p) = &self.preprocess {
            files.push(("preprocess.json".to_string(), p.clone().into_bytes()));
        }
        files.extend(self.state.iter().map(|(n, b)| (n.to_string(), b.clone())));
        if let Some(raw) = &self.raw {
            files.push(("weights.raw.safetensors".to_string(), raw.clone()));
        }
        for (epoch, bytes) in &self.checkpoints {
            files.push((checkpoint_name(*epoch), bytes.clone()));
        }
        let manifest = serde_json::json!({
            "format": "nnlang-run",
            "version": 1,
            "model": self.model,
            "epochs": self.epochs,
            "epochs_done": history.len(),
            "complete": complete,
            "files": files.iter().map(|(n, _)| n.as_str()).chain(["curves.svg", "layers.svg"]).collect::<Vec<_>>(),
        });
        files.push((artifacts::MANIFEST.to_string(), format!("{manifest:#}\n").into_bytes()));
        Ok(files)
    }
}

/// A job ready to train.
pub struct Prepared {
    /// The training step's plan.
    pub train_plan: Plan,
    /// The inference plan that scores validation and test sets.
    pub eval_plan: Plan,
    /// The run's settings.
    pub options: train::Options,
    /// The examples trained on, and those held out for validation.
    pub fit: Table,
    /// The validation split (empty for none).
    pub val: Table,
    /// The weights: initial, then as trained.
    pub params: Vec<f32>,
    /// A character model's vocabulary, saved beside its weights.
    pub vocab: Option<nnlang_runtime::data::text::Vocabulary>,
    /// The saved state a resumed run continues from ([`Job::resume_from`]).
    pub resume: Option<train::Resume>,
    /// What was done to the data, saved with the weights.
    pub preprocess: data::Preprocess,
}
