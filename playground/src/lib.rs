//! nnlang in the browser: the compiler and the interpreter built for `wasm32-unknown-unknown`
//! behind a small [`wasm-bindgen`](mod@wasm_bindgen) API, for the playground (`playground/www`).
//!
//! - [`check`] compiles a source and answers with JSON: every diagnostic rendered exactly as
//!   `nnlangc check` renders it (the same [`nnlang::diag::render_all`]) with its place in the
//!   text (byte and UTF-16 offsets, lines and columns) for the editor to underline, and for
//!   each model the table `nnlangc check` prints, its summary as `check --json` gives it, and
//!   its graph as SVG and as Graphviz DOT.
//! - [`provide_file`] holds a data file in memory under the path a `data` block names (the
//!   page has no file system), gzipped or plain.
//! - [`Trainer`] trains a source's `train` block on its data, as `nnlangc train --threads 1`
//!   does (the same loop, the same weights), telling a callback after every epoch and every
//!   few batches; then scores the test set (loss, accuracy, confusion matrix), gives the
//!   weights as safetensors and the preprocessing as `preprocess.json` (what `nnlangc eval`
//!   reads beside them), and predicts and evaluates on arrays.
//!
//! Every function is plain Rust underneath ([`check_source`], [`Trainer::open`], …): the
//! tests run them natively.

use nnlang::session::Prepared;
use nnlang::session::{infer, Session};
use nnlang_runtime::data::Table;
use nnlang_runtime::plan::Plan;
use nnlang_runtime::train::{EpochStats, Observer};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// The name the page's source is compiled under: diagnostics show it, and the paths of its
/// `data` block are relative to it (so `data/x.csv` is the file provided as `data/x.csv`).
pub const FILE: &str = "playground.nn";

/// Installs the panic hook that prints a Rust panic's message in the console.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// A place in the source, in the units each side needs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Place {
    /// Byte offsets (Rust's).
    pub start: usize,
    /// End, exclusive.
    pub end: usize,
    /// UTF-16 offsets (JavaScript strings').
    pub start_utf16: usize,
    /// End, exclusive.
    pub end_utf16: usize,
    /// 1-based line of the start.
    pub line: usize,
    /// 1-based column of the start, in characters.
    pub column: usize,
    /// 1-based line of the end.
    pub end_line: usize,
    /// 1-based column of the end, in characters.
    pub end_column: usize,
}

impl Place {
    fn of(source: &str, start: usize, end: usize) -> Place {
        let clamp = |at: usize| {
            let mut at = at.min(source.len());
            while !source.is_char_boundary(at) {
                at -= 1;
            }
            at
        };
        let (start, end) = (clamp(start), clamp(end.max(start)));
        let utf16 = |at: usize| source[..at].encode_utf16().count();
        let line_col = |at: usize| {
            let before = &source[..at];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, col)
        };
        let ((line, column), (end_line, end_column)) = (line_col(start), line_col(end));
        Place { start, end, start_utf16: utf16(start), end_utf16: utf16(end), line, column, end_line, end_column }
    }
}

/// One label of a diagnostic: a place and what is said there.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Label {
    /// Where.
    pub place: Place,
    /// What is said under it.
    pub message: String,
    /// The problem itself (others give context).
    pub primary: bool,
}

/// One error or warning.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Diagnostic {
    /// `"error"` or `"warning"`.
    pub severity: &'static str,
    /// The one-line summary.
    pub message: String,
    /// The primary place (the first label's), if any.
    pub place: Option<Place>,
    /// Every label.
    pub labels: Vec<Label>,
    /// `= note:` lines.
    pub notes: Vec<String>,
    /// `= help:` lines.
    pub help: Vec<String>,
    /// The whole diagnostic as `nnlangc check` prints it.
    pub rendered: String,
}

/// A model that checked.
#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    /// Its name.
    pub name: String,
    /// The table `nnlangc check` prints: layers, shapes, parameters, FLOPs, memory.
    pub table: String,
    /// The same as data (`nnlangc check --json`).
    pub summary: serde_json::Value,
    /// The graph, drawn.
    pub svg: String,
    /// The graph as Graphviz DOT (`nnlangc emit --dot`).
    pub dot: String,
}

/// What [`check`] answers.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// No errors.
    pub ok: bool,
    /// Every diagnostic rendered, as `nnlangc check` writes them to standard error.
    pub text: String,
    /// Each diagnostic.
    pub diagnostics: Vec<Diagnostic>,
    /// The models that checked.
    pub models: Vec<ModelReport>,
    /// The recipe blocks checked (`train Mlp`, `data digits`, …).
    pub recipes: Vec<String>,
}

/// Checks `source` ([`FILE`]): its diagnostics and, for each model that checked, its table
/// and graph.
pub fn check_source(source: &str) -> Report {
    let compiled = match nnlang::compile(source, &nnlang::Options::default()) {
        Ok(c) => c,
        Err(e) => {
            return Report {
                ok: false,
                text: format!("error: {e}\n"),
                diagnostics: Vec::new(),
                models: Vec::new(),
                recipes: Vec::new(),
            }
        }
    };
    let diagnostics = compiled
        .diagnostics
        .iter()
        .map(|d| {
            let labels: Vec<Label> = d
                .labels
                .iter()
                .map(|l| Label {
                    place: Place::of(source, l.span.start, l.span.end),
                    message: l.message.clone(),
                    primary: l.primary,
                })
                .collect();
            Diagnostic {
                severity: if d.is_error() { "error" } else { "warning" },
                message: d.message.clone(),
                place: labels.iter().find(|l| l.primary).or(labels.first()).map(|l| l.place.clone()),
                labels,
                notes: d.notes.clone(),
                help: d.help.clone(),
                rendered: d.render(FILE, source),
            }
        })
        .collect();
    let models = compiled
        .models
        .iter()
        .map(|m| {
            let s = nnlang::summary::summarize(m);
            ModelReport {
                name: m.graph.name.clone(),
                table: nnlang::summary::to_text(&s) + &nnlang::summary::memory_report(&compiled, m),
                summary: serde_json::to_value(&s).unwrap_or(serde_json::Value::Null),
                svg: nnlang::ir::to_svg(&m.graph, &m.shapes.shapes),
                dot: nnlang::ir::to_dot(&m.graph, &m.shapes.shapes),
            }
        })
        .collect();
    let recipes = compiled.recipes.iter().map(|r| format!("{} {}", r.kind.keyword(), r.target)).collect();
    Report {
        ok: !compiled.has_errors(),
        text: nnlang::diag::render_all(&compiled.diagnostics, FILE, source),
        diagnostics,
        models,
        recipes,
    }
}

/// [`check_source`] as JSON, for the page.
#[wasm_bindgen]
pub fn check(source: &str) -> String {
    serde_json::to_string(&check_source(source)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Holds `bytes` as the data file `path` (relative paths as the `data` block writes them;
/// gzipped or plain), for every later [`Trainer`].
#[wasm_bindgen(js_name = provideFile)]
pub fn provide_file(path: &str, bytes: &[u8]) {
    nnlang_runtime::data::provide(path, bytes.to_vec());
}

/// One epoch, as the callback of [`Trainer::train`] sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Epoch {
    /// `"epoch"`.
    pub kind: &'static str,
    /// 1-based.
    pub epoch: usize,
    /// The epochs the recipe trains.
    pub epochs: usize,
    /// The mean loss of its batches.
    pub train_loss: f64,
    /// Accuracy on a sample of the training set.
    pub train_accuracy: Option<f64>,
    /// Loss on the validation split.
    pub val_loss: Option<f64>,
    /// Accuracy on it.
    pub val_accuracy: Option<f64>,
    /// The learning rate.
    pub lr: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// A batch, every few (at most ~20 a second reach the page).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Batch {
    /// `"batch"`.
    pub kind: &'static str,
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based step in it.
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// The batch's loss.
    pub loss: f64,
}

/// A score of weights on a data set.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Score {
    /// Examples scored.
    pub examples: usize,
    /// Mean loss.
    pub loss: f64,
    /// Fraction right, for a classifier.
    pub accuracy: Option<f64>,
    /// Rows: true class; columns: predicted (classification only).
    pub confusion: Option<Vec<Vec<usize>>>,
}

/// What [`Trainer::train`] answers at the end.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Trained {
    /// Epochs completed.
    pub epochs: usize,
    /// The last epoch's validation accuracy, if any.
    pub val_accuracy: Option<f64>,
    /// The test set's score, when the data block has one.
    pub test: Option<Score>,
    /// Seconds spent training.
    pub seconds: f64,
}

/// Passes epochs and some batches to a callback.
struct Watch<'a> {
    tell: &'a mut dyn FnMut(String),
    epochs: usize,
    last: f64,
    clock: nnlang_runtime::time::Instant,
}

impl Observer for Watch<'_> {
    fn batch(&mut self, epoch: usize, step: usize, steps: usize, loss: f64) -> bool {
        let now = self.clock.elapsed().as_secs_f64();
        if now - self.last >= 0.05 || step + 1 == steps {
            self.last = now;
            let b = Batch { kind: "batch", epoch: epoch + 1, step: step + 1, steps, loss };
            (self.tell)(serde_json::to_string(&b).unwrap_or_default());
        }
        true
    }

    fn epoch(&mut self, s: &EpochStats) {
        let e = Epoch {
            kind: "epoch",
            epoch: s.epoch,
            epochs: self.epochs,
            train_loss: s.train_loss,
            train_accuracy: s.train_accuracy,
            val_loss: s.val_loss,
            val_accuracy: s.val_accuracy,
            lr: s.lr,
            seconds: s.seconds,
        };
        (self.tell)(serde_json::to_string(&e).unwrap_or_default());
    }
}

/// A source's model and its training job, on one thread.
#[wasm_bindgen]
pub struct Trainer {
    session: Session,
    prepared: Prepared,
    test: Option<Table>,
    /// The weights to keep (after training: the recipe's average when it keeps one).
    weights: Vec<f32>,
    eval_plan: Plan,
}

/// The number of whole examples of `cols` values in `len` values, or the error that says
/// they are not (`input`: the model's input, as messages name it).
fn whole_examples(len: usize, cols: usize, input: &str) -> Result<usize, nnlang::session::Error> {
    if cols == 0 || len == 0 || !len.is_multiple_of(cols) {
        return Err(nnlang::session::Error::Input(format!(
            "{len} values are not whole examples of {cols} values (the model's input {input})"
        )));
    }
    Ok(len / cols)
}

/// Errors as JavaScript sees them: `Error` objects with the message.
fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

impl Trainer {
    /// Compiles `source` and reads the data of its `train` block (files held by
    /// [`provide_file`], or the file system's where there is one): errors are the messages
    /// `nnlangc train` gives.
    pub fn open(source: &str) -> Result<Trainer, nnlang::session::Error> {
        let session = Session::from_source(FILE.into(), source.to_string(), &nnlang::Options::default())?;
        let (prepared, test, eval_plan) = {
            let job = session.job(None)?;
            let mut loaded = job.load_data(None)?;
            if loaded.text.is_some() {
                return Err(nnlang::session::Error::Input(
                    "character models read from text are not trained in the playground: use nnlangc train".into(),
                ));
            }
            let prepared = job.prepare_taking(&mut loaded, 1)?;
            (prepared, loaded.test.take(), job.eval_plan()?)
        };
        let weights = prepared.params.clone();
        Ok(Trainer { session, prepared, test, weights, eval_plan })
    }

    /// Compiles `source` and takes its `train` block's examples from arrays instead of files:
    /// `x` holds the examples' raw inputs row after row (the model's one input, not a
    /// sequence), `y` their targets (a class index each for a classifier), and `test` the
    /// same for a test set. They go through every check and every step of the recipe's data
    /// block (`scale`, `standardize`, `bins`, augmentation) as files would; without a data
    /// block, as they are.
    pub fn on_arrays(
        source: &str,
        x: &[f32],
        y: &[f32],
        test: Option<(&[f32], &[f32])>,
    ) -> Result<Trainer, nnlang::session::Error> {
        use nnlang::session::data;
        use nnlang::spec::{DataSpec, Source};
        let input = |m: String| nnlang::session::Error::Input(m);
        let session = Session::from_source(FILE.into(), source.to_string(), &nnlang::Options::default())?;
        let (prepared, test, eval_plan) = {
            let job = session.job(None)?;
            let expect = data::expect(job.model, job.recipe.loss, job.recipe.bins);
            if expect.steps.is_some() {
                return Err(input(format!(
                    "the model's input {} is a sequence: give sequences as files (`sequences(…)`, `text(…)`); arrays hold one example per row",
                    expect.input_desc
                )));
            }
            let cols = expect.input_cols.max(1);
            // Each array held as an .npy file under a name no data block can write.
            let mut held = Vec::new();
            let mut hold = |name: &str, x: &[f32], y: &[f32]| -> Result<Source, nnlang::session::Error> {
                let rows =
                    whole_examples(x.len(), cols, &expect.input_desc).map_err(|e| input(format!("{name}: {e}")))?;
                if y.is_empty() || !y.len().is_multiple_of(rows) {
                    return Err(input(format!("{name}: {} targets for {rows} examples", y.len())));
                }
                let npy = |shape: &[usize], v: &[f32]| {
                    nnlang_runtime::data::npy::to_bytes(shape, v).map_err(|e| input(e.to_string()))
                };
                let (xp, yp) = (format!("<arrays>/{name}_x.npy"), format!("<arrays>/{name}_y.npy"));
                nnlang_runtime::data::provide(xp.as_str(), npy(&[rows, cols], x)?);
                nnlang_runtime::data::provide(yp.as_str(), npy(&[rows, y.len() / rows], y)?);
                held.push(xp.clone());
                held.push(yp.clone());
                Ok(Source::Npy { x: xp.into(), y: yp.into() })
            };
            let train = hold("train", x, y);
            let test_source = match (&train, test) {
                (Ok(_), Some((tx, ty))) => Some(hold("test", tx, ty)).transpose(),
                _ => Ok(None),
            };
            let block = job.recipe.data.as_deref().and_then(|d| session.compiled.data_spec(d));
            let spec = DataSpec {
                name: block.as_ref().map_or_else(|| "arrays".to_string(), |b| b.name.clone()),
                train: Some(train?),
                test: test_source?,
                scale: block.as_ref().and_then(|b| b.scale),
                standardize: block.as_ref().is_some_and(|b| b.standardize),
                classes: block.as_ref().and_then(|b| b.classes),
                augment: block.as_ref().and_then(|b| b.augment),
            };
            let loaded = data::load(&spec, std::path::Path::new(""), &expect, None);
            for p in &held {
                nnlang_runtime::data::release(std::path::Path::new(p));
            }
            let mut loaded = loaded.map_err(|e| input(e.to_string()))?;
            let prepared = job.prepare_taking(&mut loaded, 1)?;
            (prepared, loaded.test.take(), job.eval_plan()?)
        };
        let weights = prepared.params.clone();
        Ok(Trainer { session, prepared, test, weights, eval_plan })
    }

    /// Trains to the end of the recipe, telling `tell` each epoch and some batches as JSON
    /// ([`Epoch`], [`Batch`]); then scores the test set.
    pub fn run(&mut self, tell: &mut dyn FnMut(String)) -> Result<Trained, nnlang::session::Error> {
        let job = self.session.job(None)?;
        let clock = nnlang_runtime::time::Instant::now();
        let epochs = self.prepared.options.epochs;
        let mut watch = Watch { tell, epochs, last: f64::NEG_INFINITY, clock };
        let outcome = job.fit(&mut self.prepared, &mut watch)?;
        let seconds = clock.elapsed().as_secs_f64();
        self.weights = outcome.weights;
        let test = match &self.test {
            Some(t) => Some(self.score_table(t)?),
            None => None,
        };
        Ok(Trained {
            epochs: outcome.history.len(),
            val_accuracy: outcome.history.last().and_then(|h| h.val_accuracy),
            test,
            seconds,
        })
    }

    /// The current weights scored on `set` (already preprocessed).
    fn score_table(&self, set: &Table) -> Result<Score, nnlang::session::Error> {
        let job = self.session.job(None)?;
        let e = job.evaluate(&self.eval_plan, &self.weights, set)?;
        Ok(Score { examples: set.rows(), loss: e.loss, confusion: job.confusion(&e, set), accuracy: e.accuracy })
    }

    /// Values per example of the model's one input.
    fn input_cols(&self) -> Result<usize, nnlang::session::Error> {
        let plan = &self.eval_plan;
        if plan.inputs.len() != 1 || plan.sequence.is_some() {
            return Err(nnlang::session::Error::Input(
                "arrays are taken by models with one input that is not a sequence".into(),
            ));
        }
        Ok(plan.inputs[0].cols)
    }

    /// `x` (raw, as the data files hold it: the training's preprocessing is applied) as rows.
    fn rows_of(&self, x: &[f32]) -> Result<(Vec<f32>, usize, usize), nnlang::session::Error> {
        let cols = self.input_cols()?;
        let job = self.session.job(None)?;
        let desc = nnlang::session::data::expect(job.model, job.recipe.loss, job.recipe.bins).input_desc;
        let rows = whole_examples(x.len(), cols, &desc)?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(nnlang::session::Error::Input(format!(
                "example {}, feature {}: {} is not a finite number",
                i / cols,
                i % cols,
                x[i]
            )));
        }
        let mut x = x.to_vec();
        self.prepared.preprocess.apply(&mut x);
        Ok((x, rows, cols))
    }

    /// The model's outputs for `x`: rows of inputs as the data files hold them.
    pub fn predict_rows(&self, x: &[f32]) -> Result<Vec<f32>, nnlang::session::Error> {
        let (x, rows, cols) = self.rows_of(x)?;
        let plan = &self.eval_plan;
        let mut exec = nnlang_runtime::interp::Exec::<f32>::new(plan, 0);
        exec.params.copy_from_slice(&self.weights);
        infer(plan, &mut exec, &x, cols, rows).map_err(|e| nnlang::session::Error::Input(e.to_string()))
    }

    /// The weights scored on `x` against `y` (one target row per example: a class index for
    /// a classifier).
    pub fn score_rows(&self, x: &[f32], y: &[f32]) -> Result<Score, nnlang::session::Error> {
        let (x, rows, cols) = self.rows_of(x)?;
        if !y.len().is_multiple_of(rows) {
            return Err(nnlang::session::Error::Input(format!(
                "{} targets for {rows} examples: give the same number of target rows",
                y.len()
            )));
        }
        let mut y = y.to_vec();
        if let Some(b) = &self.prepared.preprocess.bins {
            y.iter_mut().for_each(|v| *v = b.index(*v) as f32);
        }
        let y_cols = y.len() / rows;
        let table = Table::new(x, cols, y, y_cols);
        let job = self.session.job(None)?;
        let expect = nnlang::session::data::expect(job.model, job.recipe.loss, job.recipe.bins);
        if let Some(k) = expect.classes {
            if let Some((row, label)) = table.first_bad_label(k) {
                return Err(nnlang::session::Error::Input(format!(
                    "example {row} has label {label}, outside the model's {k} classes"
                )));
            }
        }
        if table.y_cols != expect.classes.map_or(expect.target_cols, |_| 1) {
            return Err(nnlang::session::Error::Input(format!(
                "{} target values per example; the model needs {}",
                table.y_cols,
                expect.classes.map_or(expect.target_cols, |_| 1)
            )));
        }
        self.score_table(&table)
    }

    /// The weights as `nnlangc train` writes `weights.safetensors`.
    pub fn weights_bytes(&self) -> Result<Vec<u8>, nnlang::session::Error> {
        nnlang_runtime::io::to_bytes(&self.prepared.train_plan.params, &self.weights)
            .map_err(|e| nnlang::session::Error::Input(e.to_string()))
    }
}

#[wasm_bindgen]
impl Trainer {
    /// [`Trainer::open`] for JavaScript: `new Trainer(source)`.
    #[wasm_bindgen(constructor)]
    pub fn new(source: &str) -> Result<Trainer, JsError> {
        Trainer::open(source).map_err(js)
    }

    /// [`Trainer::on_arrays`] for JavaScript: `Trainer.onArrays(source, x, y, testX, testY)`
    /// (the test arrays may be left out).
    #[wasm_bindgen(js_name = onArrays)]
    pub fn on_arrays_js(
        source: &str,
        x: &[f32],
        y: &[f32],
        test_x: Option<Vec<f32>>,
        test_y: Option<Vec<f32>>,
    ) -> Result<Trainer, JsError> {
        let test = match (&test_x, &test_y) {
            (Some(tx), Some(ty)) => Some((tx.as_slice(), ty.as_slice())),
            (None, None) => None,
            _ => return Err(JsError::new("give both test arrays, or neither")),
        };
        Trainer::on_arrays(source, x, y, test).map_err(js)
    }

    /// Trains to the end, calling `on_progress(json)` after each epoch and some batches;
    /// answers the final [`Trained`] as JSON.
    pub fn train(&mut self, on_progress: &js_sys::Function) -> Result<String, JsError> {
        let mut tell = |msg: String| {
            let _ = on_progress.call1(&JsValue::NULL, &JsValue::from_str(&msg));
        };
        let trained = self.run(&mut tell).map_err(js)?;
        serde_json::to_string(&trained).map_err(js)
    }

    /// The model's outputs for `x` (examples of raw inputs, row after row).
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f32>, JsError> {
        self.predict_rows(x).map_err(js)
    }

    /// The weights scored on `x` against targets `y`, as JSON ([`Score`]).
    pub fn evaluate(&self, x: &[f32], y: &[f32]) -> Result<String, JsError> {
        let s = self.score_rows(x, y).map_err(js)?;
        serde_json::to_string(&s).map_err(js)
    }

    /// The weights as a `.safetensors` file.
    pub fn weights(&self) -> Result<Vec<u8>, JsError> {
        self.weights_bytes().map_err(js)
    }

    /// What training does to the data, as `preprocess.json` (`nnlangc eval` needs it beside
    /// the weights); `undefined` when nothing is done.
    pub fn preprocess(&self) -> Option<String> {
        (!self.prepared.preprocess.is_empty()).then(|| self.prepared.preprocess.to_json())
    }

    /// The number of parameters.
    #[wasm_bindgen(js_name = parameterCount)]
    pub fn parameter_count(&self) -> usize {
        self.weights.len()
    }
}
