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
mod images;
mod job;
mod predict;
pub mod profile;
mod recorder;
pub mod resume;
pub mod rundir;
pub mod sample;
pub mod sanity;
pub mod search;

pub use data::{Expect, Loaded};
pub use job::{view, Job, Prepared};
use predict::fixed_dims;
pub use predict::{infer, load_weights, param_table, read_params, Finished, Predicted, RawPrediction};
pub use profile::{BenchSpec, Profile};
pub use recorder::{Recorder, KEEP_CHECKPOINTS};
pub use sample::SampleSpec;

use crate::diag::render_all;
use crate::ir::Dim;
use crate::plan::{build, Mode, MEMORY_LIMIT};
use crate::spec::{DataSpec, TrainRecipe};
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
    /// Feed raw inputs to weights that have no `preprocess.json` beside them even where the
    /// source preprocesses its data (`run --raw`, `export --raw`).
    pub raw_inputs: bool,
    /// The `--set` recipe settings it was compiled with (applied to the checked recipe, not
    /// to `source`), for the record a run writes of what it trained.
    pub sets: Vec<(String, String)>,
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
    /// The weights' preprocessing is missing (`pre` does not exist) where the source has one:
    /// an error unless raw inputs were asked for.
    pub fn require_preprocessing(&self, model: &Model, weights: &Path, pre: &Path) -> Result<(), Error> {
        if self.raw_inputs || pre.exists() {
            return Ok(());
        }
        match self.compiled.preprocessing_of(model) {
            Some(what) => Err(Error::Input(format!(
                "{}: no preprocess.json beside these weights, but {} trains `{}` with {what}: the inputs would be used unprocessed. Put the run's preprocess.json beside the weights, or give --raw to use the inputs as they are",
                weights.display(),
                self.path.display(),
                model.graph.name
            ))),
            None => Ok(()),
        }
    }

    /// Reads and compiles `path`. Warnings are kept ([`Session::warnings`]); errors end the
    /// session with every diagnostic rendered.
    pub fn open(path: &Path, opts: &crate::Options) -> Result<Session, Error> {
        let source = read_source(path)?;
        Session::from_source(path.to_path_buf(), source, opts)
    }

    /// Compiles `source` as if read from `path` (for names in messages and relative data paths).
    pub fn from_source(path: PathBuf, source: String, opts: &crate::Options) -> Result<Session, Error> {
        let compiled = compile(&source, opts).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        let sets = opts.recipe.clone();
        let session = Session { path, source, compiled, raw_inputs: false, sets };
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
}

impl Compiled {
    /// What the source's training does to `model`'s data that a prediction must do too
    /// (`scale = 0.0625`, `standardize = true`, `cross_entropy(bins = 4)`), if anything.
    pub fn preprocessing_of(&self, model: &Model) -> Option<String> {
        let recipe = self.train_recipe(Some(&model.graph.name))?;
        let mut what = Vec::new();
        if let Some(spec) = recipe.data.as_deref().and_then(|d| self.data_spec(d)) {
            if let Some(s) = spec.scale {
                what.push(format!("`scale = {}`", crate::diag::fmt_num(s)));
            }
            if spec.standardize {
                what.push("`standardize = true`".to_string());
            }
        }
        if let Some(b) = recipe.bins {
            what.push(format!("`cross_entropy(bins = {b})`"));
        }
        (!what.is_empty()).then(|| what.join(" and "))
    }

    /// The `train` block of `model` (or the file's first).
    pub fn train_recipe(&self, model: Option<&str>) -> Option<TrainRecipe> {
        match model {
            Some(m) => self.trains.iter().find(|r| r.model == m),
            None => self.trains.first(),
        }
        .cloned()
    }

    /// The `data` block named `name`.
    pub fn data_spec(&self, name: &str) -> Option<DataSpec> {
        self.datas.iter().find(|d| d.name == name).cloned()
    }

    /// What `model` is trained with: its `train` block, or what its last layer implies.
    pub fn recipe_or_implied(&self, model: &Model) -> TrainRecipe {
        self.train_recipe(Some(&model.graph.name)).unwrap_or_else(|| TrainRecipe::implied(model))
    }
}
