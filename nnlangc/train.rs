//! `nnlangc train`, `eval` and `run`: argument handling, progress display and signals over
//! the library's session ([`nnlang::session`]), which does the work.

use crate::say::{errln, out, outln};
use crate::{open, Failure, ModelArgs};
use indicatif::{ProgressBar, ProgressStyle};
use nnlang::session::artifacts::RunDir;
use nnlang::session::{Job, Recorder};
use nnlang_runtime::train::{Cluster, EpochStats, Observer, Resume};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code after Ctrl-C or SIGTERM (128 + SIGINT), once the run is saved.
pub use crate::stop::INTERRUPTED;

struct Progress {
    bar: Option<ProgressBar>,
    stop: &'static AtomicBool,
    epochs: usize,
    quiet: bool,
    run: RunDir,
    recorder: Recorder,
}

impl Progress {
    /// Writes the whole run directory: the weights, metrics, model, manifest and curves.
    fn save(&self, history: &[EpochStats], weights: &[f32], complete: bool) -> Result<(), String> {
        let mut files = self.recorder.files(history, weights).map_err(|e| e.to_string())?;
        let svg = |s: String| std::borrow::Cow::Owned(s.into_bytes());
        files.push(("curves.svg".to_string(), svg(crate::report::curves_svg(&self.recorder.model, history)?)));
        files.push(("layers.svg".to_string(), svg(crate::report::layers_svg(&self.recorder.model, history)?)));
        if let Some(png) = crate::report::first_layer_png(&self.recorder.table, weights, &self.recorder.input_dims) {
            files.push(("first_layer.png".to_string(), std::borrow::Cow::Owned(png)));
        }
        self.run.write(&files, self.recorder.manifest(history, complete))
    }
}

impl Observer for Progress {
    fn batch(&mut self, epoch: usize, step: usize, steps: usize, loss: f64) -> bool {
        if let Some(bar) = &self.bar {
            if step == 1 {
                bar.reset();
                bar.set_length(steps as u64);
                bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
            }
            if step.is_multiple_of(16) || step == steps {
                bar.set_position(step as u64);
                bar.set_message(format!("loss {loss:.4}"));
            }
        }
        !self.stop.load(Ordering::SeqCst)
    }

    /// After every epoch the run directory holds that epoch's weights (with early stopping,
    /// `weights.safetensors` the best epoch's so far; `epoch-N.safetensors` each epoch's): a
    /// kill loses at most one epoch.
    fn checkpoint(&mut self, weights: &[f32], state: &Resume) -> Result<(), String> {
        self.recorder.remember(weights, state).map_err(|e| e.to_string())?;
        self.save(&state.history, state.best.as_ref().map_or(weights, |b| &b.weights), false)
    }

    fn epoch(&mut self, s: &EpochStats) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let mut line = format!("epoch {:>3}/{}  train loss {:.4}", s.epoch, self.epochs, s.train_loss);
        if s.penalty > 0.0 {
            line.push_str(&format!(" + penalty {:.4}", s.penalty));
        }
        if let Some(a) = s.train_accuracy {
            line.push_str(&format!("  train acc {:.2}%", 100.0 * a));
        }
        if let Some(v) = s.val_loss {
            line.push_str(&format!("  val loss {v:.4}"));
        }
        if let Some(a) = s.val_accuracy {
            line.push_str(&format!("  val acc {:.2}%", 100.0 * a));
        }
        line.push_str(&format!(
            "  lr {:.3e}  {} samples/s",
            s.lr,
            nnlang::summary::thousands(s.samples_per_sec as u64)
        ));
        let lo = s.ratios.iter().min_by(|a, b| a.ratio.total_cmp(&b.ratio));
        let hi = s.ratios.iter().max_by(|a, b| a.ratio.total_cmp(&b.ratio));
        if let (Some(lo), Some(hi)) = (lo, hi) {
            line.push_str(&format!("  update/weight {:.1e} ({}) … {:.1e} ({})", lo.ratio, lo.name, hi.ratio, hi.name));
        }
        outln!("{line}");
        for w in epoch_warnings(s) {
            outln!("  warning: {w}");
        }
    }
}

/// What an epoch's numbers suggest, in the notes' words: the update/weight ratio far from
/// 1e-3, ReLU units that died, tanh and sigmoid units stuck in their flat tails.
fn epoch_warnings(s: &EpochStats) -> Vec<String> {
    let mut out = Vec::new();
    // A layer is `dense_0` for the tensor `dense_0.weight`.
    let layer_of = |tensor: &str| tensor.rsplit_once('.').map_or(tensor, |(l, _)| l).to_string();
    let dead_in = |layer: &str| s.layers.iter().find(|l| l.name == layer).and_then(|l| l.dead).filter(|&d| d > 0.5);
    for l in &s.layers {
        if let Some(d) = l.dead.filter(|&d| d > 0.5) {
            out.push(format!(
                "{:.0}% of the {} units of {} never fire on the training sample (dead): the learning rate may be too high (a large update kills ReLUs), or the biases start too negative",
                100.0 * d,
                l.function,
                l.name
            ));
        }
        if let Some(f) = l.saturated.filter(|&f| f > 0.5) {
            out.push(format!(
                "{:.0}% of the {} outputs of {} are saturated (within 0.01 of their bounds): their gradients vanish; lower the learning rate or the initial weights",
                100.0 * f,
                l.function,
                l.name
            ));
        }
    }
    for r in &s.ratios {
        if r.ratio > 1e-2 {
            out.push(format!(
                "update/weight ratio of {} is {:.1e}, far above 1e-3: the learning rate may be too high",
                r.name, r.ratio
            ));
        } else if r.ratio < 1e-4 {
            let why = match dead_in(&layer_of(&r.name)) {
                Some(d) => format!(
                    "but {:.0}% of its units are dead, so the rate was more likely too high: dead units get no gradient",
                    100.0 * d
                ),
                None => "the learning rate may be too low".to_string(),
            };
            out.push(format!("update/weight ratio of {} is {:.1e}, far below 1e-3: {why}", r.name, r.ratio));
        }
    }
    out
}

pub struct TrainArgs {
    pub epochs: Option<usize>,
    pub out: Option<PathBuf>,
    pub limit: Option<usize>,
    pub quiet: bool,
    pub threads: usize,
    /// How the threads share a step.
    pub split: nnlang_runtime::train::Split,
    pub resume: Option<PathBuf>,
    pub init: Option<PathBuf>,
    /// Say when the file's `search`/`ensemble` blocks are not what `train` runs (not for a
    /// member an ensemble trains).
    pub notes: bool,
    /// How many epochs' weights the run keeps.
    pub keep: usize,
    /// The processes of `mpirun -n N nnlangc train` (none: this process alone).
    pub cluster: Option<Cluster>,
}

/// Another process of a distributed run than rank 0: it trains its share and writes nothing.
struct Follower {
    stop: &'static AtomicBool,
}

impl Observer for Follower {
    fn batch(&mut self, _: usize, _: usize, _: usize, _: f64) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }
    fn epoch(&mut self, _: &EpochStats) {}
}

/// What the file says that `train` does not do: its `search` and `ensemble` blocks.
fn note_other_blocks(session: &nnlang::session::Session, name: &str) {
    use nnlang::syntax::ast::BlockKind;
    for r in session.compiled.recipes.iter().filter(|r| r.target == name) {
        if matches!(r.kind, BlockKind::Search | BlockKind::Ensemble) {
            errln!(
                "note: `train` runs the `train` block alone; the file's `{} {name}` block is run by `nnlangc {}`",
                r.kind.keyword(),
                r.kind.keyword()
            );
        }
    }
}

/// Every process must train the same model on the same data with the same recipe from the
/// same weights: a process that differs from rank 0 stops them all before the first step.
fn agree(
    c: &Cluster,
    prepared: &nnlang::session::Prepared,
    done: usize,
    file: &std::path::Path,
) -> Result<(), Failure> {
    c.agree(&prepared.agreement(done)).map_err(|r| {
        errln!(
            "error: process {r} of the run trains another model, data set, recipe, starting point or --threads than process 0 ({}): every process must be given the same command and files",
            file.display()
        );
        Failure::Exit(2)
    })
}

pub fn train(args: &ModelArgs, t: TrainArgs) -> Result<(), Failure> {
    let session = open(args)?;
    let mut job = session.job(args.model.as_deref())?;
    if let Some(e) = t.epochs {
        if job.recipe.warmup > e {
            return Err(Failure::Usage(format!(
                "--epochs {e} is shorter than the recipe's `warmup = {}`: the rate would never reach its base value",
                job.recipe.warmup
            )));
        }
        job.recipe.epochs = e;
    }
    // Everything that can fail is checked before the first step: where the run goes, the
    // data, the plans.
    let name = job.model.graph.name.clone();
    if let (Some(r), Some(o)) = (&t.resume, &t.out) {
        if r != o {
            return Err(Failure::Usage(format!(
                "--resume {} continues that run in its directory; --out {} names another",
                r.display(),
                o.display()
            )));
        }
    }
    let out = t.resume.clone().or_else(|| t.out.clone()).unwrap_or_else(|| PathBuf::from("runs").join(&name));
    // In a distributed run, rank 0 alone writes the run directory and reports.
    let root = t.cluster.as_ref().is_none_or(Cluster::is_root);
    let run = if root { Some(RunDir::prepare(&out).map_err(Failure::Usage)?) } else { None };
    let mut loaded = job.load_data(t.limit)?;
    let splits = std::iter::once(("training", &loaded.train)).chain(loaded.test.as_ref().map(|t| ("test", t)));
    for (split, d) in splits.filter_map(|(s, t)| Some((s, t.disk.as_ref()?))) {
        if !t.quiet {
            outln!(
                "{} ({split} set): {} rows kept in the file (above the {} MiB held in memory), read a batch at a time",
                d.path().display(),
                d.rows.len(),
                nnlang_runtime::data::disk::in_memory_limit() >> 20
            );
        }
    }
    let mut prepared = job.prepare_taking(&mut loaded, t.threads)?;
    job.share(&mut prepared, t.split, t.cluster.clone())?;
    if t.cluster.as_ref().is_some_and(|c| c.size() > 1) && t.split == nnlang_runtime::train::Split::Products {
        return Err(Failure::Usage(
            "--split products is for one process: a distributed run splits each batch among its processes (and their threads)"
                .into(),
        ));
    }
    let opts = prepared.options.clone();
    if !t.quiet && t.notes && root {
        note_other_blocks(&session, &name);
    }
    let mut done = 0;
    if let Some(dir) = &t.resume {
        done = job.resume_from(&mut prepared, dir)?;
        if done >= opts.epochs {
            outln!(
                "{name} has trained {done} of {} epochs: nothing to resume (give --epochs to train further)",
                opts.epochs
            );
            return Ok(());
        }
    }
    if let Some(w) = &t.init {
        job.init_from(&mut prepared, w)?;
    }
    if let Some(c) = &t.cluster {
        agree(c, &prepared, done, &args.file)?;
    }

    // Ctrl-C, SIGTERM (timeout, schedulers, `docker stop`) and SIGHUP stop after the current
    // batch, and the run keeps its last completed epoch; a second signal exits at once.
    crate::stop::cooperate();
    let stop = crate::stop::flag();
    let bar = (!t.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let Some(run) = run else {
        // Another process than rank 0: its share of every step, nothing written.
        let outcome = job.fit(&mut prepared, &mut Follower { stop })?;
        return if outcome.interrupted.is_some() { Err(Failure::Exit(INTERRUPTED)) } else { Ok(()) };
    };
    let mut recorder = job.recorder(&prepared, &out);
    recorder.keep = t.keep;
    if t.resume.is_some() {
        recorder.adopt(&out, done)?;
    }
    let mut progress = Progress { bar, stop, epochs: opts.epochs, quiet: t.quiet, run, recorder };
    if !t.quiet && done > 0 {
        outln!("resuming {name} after epoch {done} of {}", opts.epochs);
    }
    if !t.quiet {
        let processes = match &t.cluster {
            Some(c) => format!(" in each of {} processes", c.size()),
            None if opts.threads < 2 => String::new(),
            None if opts.splits_products(&prepared.train_plan, opts.threads) => " splitting each product".into(),
            None => " splitting each batch".into(),
        };
        outln!(
            "training {name} on {} examples ({} held out for validation), batch {}, {} epoch{}, {} thread{}{processes}",
            prepared.fit.rows(),
            prepared.val.rows(),
            opts.batch,
            opts.epochs,
            if opts.epochs == 1 { "" } else { "s" },
            opts.threads,
            if opts.threads == 1 { "" } else { "s" }
        );
    }
    let outcome = job.fit(&mut prepared, &mut progress)?;
    if let (Some((steps, seconds)), false) = (outcome.communication, t.quiet) {
        let training: f64 = outcome.history.iter().skip(done).map(|h| h.seconds).sum();
        outln!(
            "all-reduce: {steps} shared steps, {:.3} ms per step ({:.1}% of the training time, the wait for the slowest process included)",
            1e3 * seconds / steps.max(1) as f64,
            100.0 * seconds / training.max(1e-9)
        );
    }
    if let Some((epoch, step)) = outcome.interrupted {
        // The run directory keeps the last completed epoch's save (weights, metrics, resume
        // state and manifest agree); the interrupted epoch is not recorded as done.
        let kept = progress.recorder.epochs_saved();
        if kept == 0 {
            errln!("interrupted at epoch {epoch}, step {step}, before any epoch completed: nothing was saved");
        } else {
            errln!(
                "interrupted at epoch {epoch}, step {step}: {} keeps the run as of epoch {kept} (continue it with --resume {})",
                out.display(),
                out.display()
            );
        }
        return Err(Failure::Exit(INTERRUPTED));
    }
    progress.save(&outcome.history, &outcome.weights, true).map_err(Failure::Usage)?;
    if let (Some((epoch, early)), false) = (outcome.stopped, t.quiet) {
        let loss = outcome.history.get(epoch - 1).and_then(|h| h.val_loss.or(Some(h.train_loss))).unwrap_or(f64::NAN);
        let patience = opts.patience.unwrap_or(0);
        if early {
            outln!(
                "stopped early after epoch {}: no lower validation loss in {patience} epochs; weights.safetensors holds epoch {epoch}'s (validation loss {loss:.4})",
                outcome.history.len()
            );
        } else {
            outln!("best epoch: {epoch} (validation loss {loss:.4}); weights.safetensors holds its weights");
        }
    }

    if let Some(test) = &loaded.test {
        let e = job.evaluate(&prepared.eval_plan, &outcome.weights, test)?;
        let acc = e.accuracy.map_or(String::new(), |a| format!(", accuracy {:.2}%", 100.0 * a));
        outln!("test: loss {:.4}{acc} on {} examples", e.loss, test.rows());
    }
    let vocab = if prepared.vocab.is_some() { ", vocab.json" } else { "" };
    let picture = if out.join("first_layer.png").exists() { ", first_layer.png" } else { "" };
    outln!(
        "wrote {}/{{weights.safetensors, metrics.csv, layers.csv, curves.svg, layers.svg{picture}, model.nn{vocab}, run.json}}",
        out.display()
    );
    Ok(())
}

pub fn eval(args: &ModelArgs, weights: &Path, limit: Option<usize>) -> Result<(), Failure> {
    let session = open(args)?;
    let job: Job = session.job(args.model.as_deref())?;
    let loaded = job.load_data(limit)?;
    let (set, which) = match &loaded.test {
        Some(t) => (t, "test"),
        None => (&loaded.train, "training (the data set has no test split)"),
    };
    let e = job.evaluate_file(weights, set)?;
    outln!("{which} set: {} examples", set.rows());
    outln!("loss      {:.4}", e.loss);
    if let Some(a) = e.accuracy {
        outln!("accuracy  {:.2}%", 100.0 * a);
    }
    if let Some(m) = job.confusion(&e, set) {
        outln!("confusion matrix (rows: true class, columns: predicted)");
        let w = set.rows().to_string().len().max(3);
        out!("{:>4} ", "");
        (0..m.len()).for_each(|c| out!(" {c:>w$}"));
        outln!();
        for (r, row) in m.iter().enumerate() {
            out!("{r:>4} ");
            row.iter().for_each(|v| out!(" {v:>w$}"));
            outln!();
        }
    }
    Ok(())
}

/// Prints each parameter tensor's worst relative error and the notes' verdict; a wrong
/// gradient exits with 1.
pub fn gradcheck(args: &ModelArgs, spec: &nnlang::session::gradcheck::GradcheckSpec) -> Result<(), Failure> {
    use nnlang::session::gradcheck::Verdict;
    let session = open(args)?;
    let model = session.model(args.model.as_deref())?;
    let g = session.gradcheck(model, spec, None)?;
    outln!(
        "gradient check of {}: h = {:e}, {} examples, up to {} coordinates per tensor, seed {}; loss {:.6}",
        model.graph.name,
        spec.step,
        spec.examples,
        spec.coordinates,
        spec.seed,
        g.loss
    );
    let w = g.tensors.iter().map(|t| t.name.len()).max().unwrap_or(6).max(6);
    outln!("{:w$}  checked  kinks  worst rel. error  (analytic, numeric)       verdict", "tensor");
    for t in &g.tensors {
        outln!(
            "{:w$}  {:>7}  {:>5}  {:>16.1e}  ({:>10.3e}, {:>10.3e})  {}",
            t.name,
            t.checked,
            t.kinks,
            t.worst,
            t.analytic,
            t.numeric,
            t.verdict.text()
        );
    }
    let kinks: usize = g.tensors.iter().map(|t| t.kinks).sum();
    if kinks > 0 {
        outln!("{kinks} coordinate(s) crossed a kink (a ReLU input changed sign or a maximum changed winner between θ+h and θ−h): not scored");
    }
    match g.worst() {
        Verdict::Wrong => {
            outln!("verdict: WRONG — a relative error above 1e-2 means the gradient is probably wrong");
            Err(Failure::Exit(1))
        }
        Verdict::Uncomfortable => {
            outln!("verdict: uncomfortable — errors between 1e-4 and 1e-2; try another --step or --seed");
            Ok(())
        }
        v => {
            outln!("verdict: {}", v.text());
            Ok(())
        }
    }
}

/// What `export` writes.
pub enum Format {
    /// An ONNX file; with `sequence_lengths`, an input of each sequence's length too.
    Onnx {
        /// `--sequence-lengths`.
        sequence_lengths: bool,
    },
    /// A PyTorch module.
    Pytorch,
}

/// `nnlangc export`: the model as an ONNX file or a PyTorch module, with the preprocessing
/// saved beside the weights inside; written whole or not at all.
pub fn export(
    args: &ModelArgs,
    format: Format,
    weights: Option<&Path>,
    output: Option<&Path>,
    raw: bool,
) -> Result<(), Failure> {
    let mut session = open(args)?;
    session.raw_inputs = raw;
    let model = session.main_model(args.model.as_deref())?;
    // What the weights carry beside them, read into the export.
    let beside = |name: &str| weights.map(|w| w.with_file_name(name));
    let (pre_path, vocab_path) = (beside("preprocess.json"), beside("vocab.json"));
    // Refused before any work: an output that is one of the inputs.
    let mut inputs: Vec<(&str, &Path)> = vec![("source", args.file.as_path())];
    inputs.extend(weights.map(|w| ("weights", w)));
    inputs.extend(pre_path.as_deref().map(|p| ("preprocessing", p)));
    inputs.extend(vocab_path.as_deref().map(|p| ("vocabulary", p)));
    let output_path = match (&format, output) {
        (_, Some(p)) => Some(p.to_path_buf()),
        (Format::Onnx { .. }, None) => beside("model.onnx"),
        (Format::Pytorch, None) => None,
    };
    if let Some(o) = &output_path {
        nnlang_runtime::io::check_not_input(o, &inputs).map_err(Failure::Usage)?;
    }
    let pre = match (weights, &pre_path) {
        (Some(w), Some(p)) => {
            session.require_preprocessing(model, w, p)?;
            let read = p.exists().then(|| nnlang::session::data::Preprocess::read(p)).transpose();
            read.map_err(|e| nnlang::session::Error::Input(e.to_string()))?
        }
        _ => None,
    };
    let write = |path: &Path, bytes: &[u8]| -> Result<(), Failure> {
        nnlang_runtime::io::write_atomic(path, bytes).map_err(Failure::Usage)?;
        outln!("wrote {}", path.display());
        Ok(())
    };
    match format {
        Format::Pytorch => {
            let text = nnlang::back::pytorch::generate(model, pre.as_ref()).map_err(Failure::Usage)?;
            match output {
                Some(path) => write(path, text.as_bytes())?,
                None => out!("{text}"),
            }
        }
        Format::Onnx { sequence_lengths } => {
            let weights = weights.ok_or_else(|| {
                Failure::Usage("--onnx needs --weights: an ONNX file carries the trained weights inside".into())
            })?;
            let path = output_path.unwrap_or_else(|| weights.with_file_name("model.onnx"));
            // Refused before any work: an output that is a directory, a device or a link.
            nnlang_runtime::io::check_replaceable(&path).map_err(Failure::Usage)?;
            let params = nnlang::session::read_params(model, weights)?;
            let mut extras =
                nnlang::back::onnx::Extras { preprocess: pre.as_ref(), metadata: Vec::new(), sequence_lengths };
            let vocab = vocab_path.unwrap_or_else(|| weights.with_file_name("vocab.json"));
            if vocab.exists() {
                let text = std::fs::read_to_string(&vocab)
                    .map_err(|e| Failure::Usage(format!("{}: cannot read: {e}", vocab.display())))?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| Failure::Usage(format!("{}: not JSON: {e}", vocab.display())))?;
                extras.metadata.push(("nnlang.vocabulary".into(), text));
            }
            let bytes = nnlang::back::onnx::export(model, &params, &extras).map_err(|e| {
                errln!("error: {}: cannot export `{}` to ONNX: {e}", args.file.display(), model.graph.name);
                Failure::Exit(1)
            })?;
            write(&path, &bytes)?;
        }
    }
    Ok(())
}

/// Prints a pass or fail line per sanity check; a failure exits with 1.
pub fn sanity(args: &ModelArgs, limit: Option<usize>) -> Result<(), Failure> {
    let session = open(args)?;
    let job = session.job(args.model.as_deref())?;
    let loaded = job.load_data(limit)?;
    let checks = job.sanity(&loaded, 1)?;
    for c in &checks {
        outln!("{}  {}: {}", if c.passed { "pass" } else { "FAIL" }, c.name, c.detail);
    }
    if checks.iter().all(|c| c.passed) {
        Ok(())
    } else {
        Err(Failure::Exit(1))
    }
}

/// Prints the priming text and its continuation.
pub fn sample(args: &ModelArgs, spec: &nnlang::session::SampleSpec) -> Result<(), Failure> {
    let session = open(args)?;
    let model = session.model(args.model.as_deref())?;
    let text = session.sample(model, spec)?;
    outln!("{}{text}", spec.prime);
    Ok(())
}

pub fn run(args: &ModelArgs, weights: &Path, input: &Path, output: &Path, raw: bool) -> Result<(), Failure> {
    let mut session = open(args)?;
    session.raw_inputs = raw;
    let model = session.main_model(args.model.as_deref())?;
    let p = session.predict_npy(model, weights, input, output)?;
    let first = match &p.values {
        Some(v) => {
            format!("first values: [{}]", v.iter().take(10).map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", "))
        }
        None => format!("first classes: {:?}", &p.classes[..p.classes.len().min(10)]),
    };
    outln!("wrote {} rows of {:?} to {} ({first})", p.rows, &p.shape[1..], output.display());
    Ok(())
}

/// `nnlangc bench`: the model's training step and inference timed layer by layer.
pub fn bench(args: &ModelArgs, spec: &nnlang::session::BenchSpec, json: bool) -> Result<(), Failure> {
    let session = open(args)?;
    let model = session.main_model(args.model.as_deref())?;
    let recipe = session.compiled.recipe_or_implied(model);
    let job = nnlang::session::Job { session: &session, model, recipe };
    let profile = job.bench(spec)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&profile).map_err(|e| Failure::Usage(e.to_string()))?);
    } else {
        out!("{}", profile.to_text());
    }
    Ok(())
}
