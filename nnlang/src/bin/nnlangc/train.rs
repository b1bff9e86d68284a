//! `nnlangc train`, `eval` and `run`.

use crate::{load, Failure, ModelArgs};
use indicatif::{ProgressBar, ProgressStyle};
use nnlang::diag::render_all;
use nnlang::plan::{build, Loss, Mode};
use nnlang::{job, Compiled, Model};
use nnlang_runtime::data::{self, Table};
use nnlang_runtime::interp::{argmax_rows, Exec};
use nnlang_runtime::plan::Plan;
use nnlang_runtime::train::{self, Data, EpochStats, Observer};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit code after Ctrl-C (128 + SIGINT), once the weights are saved.
pub const INTERRUPTED: u8 = 130;

fn source_error(file: &Path, msg: impl std::fmt::Display) -> Failure {
    eprintln!("error: {}: {msg}", file.display());
    Failure::Source
}

/// The model to train or run, its recipe and its data block.
struct Setup<'a> {
    model: &'a Model,
    recipe: &'a nnlang::recipe::Recipe,
    loss: Loss,
    options: train::Options,
}

fn setup<'a>(args: &ModelArgs, compiled: &'a Compiled) -> Result<Setup<'a>, Failure> {
    let recipe = job::train_block(compiled, args.model.as_deref()).ok_or_else(|| {
        let which = args.model.as_deref().map_or(String::new(), |m| format!(" for model `{m}`"));
        source_error(
            &args.file,
            format!("no `train` block{which}: the recipe (loss, optimizer, data, …) says how to train"),
        )
    })?;
    let model = compiled
        .models
        .iter()
        .find(|m| m.graph.name == recipe.target)
        .ok_or_else(|| source_error(&args.file, format!("model `{}` was not compiled", recipe.target)))?;
    let (loss, options) = job::options(recipe);
    Ok(Setup { model, recipe, loss, options })
}

/// The most memory a run may plan for its buffers before it is refused as a mistake.
use nnlang::plan::MEMORY_LIMIT;

fn plan(args: &ModelArgs, source: &str, model: &Model, mode: Mode, batch: usize) -> Result<Plan, Failure> {
    let plan = build(model, mode, batch).map_err(|diags| {
        eprint!("{}", render_all(&diags, &args.file.display().to_string(), source));
        Failure::Source
    })?;
    let bytes = 4 * (plan.arena_len as u64 + 2 * plan.params_len as u64);
    if bytes > MEMORY_LIMIT {
        return Err(source_error(
            &args.file,
            format!(
                "model `{}` at batch {batch} needs {} for its buffers and parameters, more than the {} nnlangc allows; lower `batch` or the layer sizes",
                model.graph.name,
                nnlang::summary::bytes(bytes),
                nnlang::summary::bytes(MEMORY_LIMIT)
            ),
        ));
    }
    Ok(plan)
}

fn load_data(args: &ModelArgs, compiled: &Compiled, s: &Setup, limit: Option<usize>) -> Result<job::Loaded, Failure> {
    let on = s.recipe.on.clone().unwrap_or_default();
    let block =
        job::data_block(compiled, &on).ok_or_else(|| source_error(&args.file, format!("no data set `{on}`")))?;
    let base = args.file.parent().unwrap_or(Path::new("."));
    let expect = job::expect(s.model, s.loss, job::bins(s.recipe));
    if let (Some(b), Some(k)) = (expect.bins, expect.classes) {
        if b != k {
            return Err(source_error(
                &args.file,
                format!("`cross_entropy(bins = {b})` needs a model with {b} outputs, this one has {k}"),
            ));
        }
    }
    let mut loaded = job::load(block, base, &expect).map_err(|e| {
        eprintln!("error: {e}");
        Failure::Source
    })?;
    if let Some(n) = limit {
        loaded.train = loaded.train.head(n);
        loaded.test = loaded.test.map(|t| t.head(n));
    }
    Ok(loaded)
}

fn data(t: &Table) -> Data<'_> {
    Data { x: &t.x, x_cols: t.cols, y: &t.y, y_cols: t.y_cols }
}

struct Progress {
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
    epochs: usize,
    quiet: bool,
}

impl Observer for Progress {
    fn batch(&mut self, epoch: usize, step: usize, steps: usize, loss: f64) -> bool {
        if let Some(bar) = &self.bar {
            if step == 1 {
                bar.reset();
                bar.set_length(steps as u64);
                bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
            }
            if step % 16 == 0 || step == steps {
                bar.set_position(step as u64);
                bar.set_message(format!("loss {loss:.4}"));
            }
        }
        !self.stop.load(Ordering::SeqCst)
    }

    fn epoch(&mut self, s: &EpochStats) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let mut line = format!("epoch {:>3}/{}  train loss {:.4}", s.epoch, self.epochs, s.train_loss);
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
        println!("{line}");
        for r in &s.ratios {
            if r.ratio > 1e-2 {
                println!(
                    "  warning: update/weight ratio of {} is {:.1e}, far above 1e-3: the learning rate may be too high",
                    r.name, r.ratio
                );
            } else if r.ratio < 1e-4 {
                println!(
                    "  warning: update/weight ratio of {} is {:.1e}, far below 1e-3: the learning rate may be too low",
                    r.name, r.ratio
                );
            }
        }
    }
}

pub struct TrainArgs {
    pub epochs: Option<usize>,
    pub out: Option<PathBuf>,
    pub limit: Option<usize>,
    pub quiet: bool,
    pub threads: usize,
}

pub fn train(args: &ModelArgs, t: TrainArgs) -> Result<(), Failure> {
    let (compiled, source) = load(args)?;
    let mut s = setup(args, &compiled)?;
    if let Some(e) = t.epochs {
        s.options.epochs = e;
    }
    s.options.threads = t.threads;
    let opts = s.options.clone();
    let loaded = load_data(args, &compiled, &s, t.limit)?;
    let train_plan = plan(args, &source, s.model, Mode::Training(s.loss), opts.batch)?;
    let eval_plan = plan(args, &source, s.model, Mode::Inference, opts.batch.max(256))?;
    if train_plan.inputs.len() != 1 {
        return Err(source_error(&args.file, "training from a data set needs a model with exactly one input"));
    }

    // One held-out validation split, drawn with the run's seed.
    let rows = loaded.train.rows();
    let mut order: Vec<usize> = (0..rows).collect();
    {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed ^ 0x00da_7a5e));
    }
    let n_val = ((rows as f64) * opts.validate).round() as usize;
    let (fit_rows, val_rows) = order.split_at(rows - n_val.min(rows.saturating_sub(1)));
    let (fit_set, val_set) = (loaded.train.select(fit_rows), loaded.train.select(val_rows));
    if fit_set.rows() == 0 {
        return Err(source_error(
            &args.file,
            "no training examples are left to train on (check the data, `--limit` and `validate`)",
        ));
    }

    let mut params = vec![0f32; train_plan.params_len];
    train::initialize(&train_plan, &mut params, opts.init, opts.seed);

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second handler cannot be installed (tests call this twice); training then just
        // cannot be interrupted, which is safe.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let bar = (!t.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let mut progress = Progress { bar, stop, epochs: opts.epochs, quiet: t.quiet };
    let name = s.model.graph.name.clone();
    if !t.quiet {
        println!(
            "training {name} on {} examples ({} held out for validation), batch {}, {} epochs, {} thread{}",
            fit_set.rows(),
            val_set.rows(),
            opts.batch,
            opts.epochs,
            opts.threads,
            if opts.threads == 1 { "" } else { "s" }
        );
    }
    let val = (val_set.rows() > 0).then(|| data(&val_set));
    let outcome = train::fit(&train_plan, &eval_plan, s.loss, &mut params, data(&fit_set), val, &opts, &mut progress)
        .map_err(|e| source_error(&args.file, e))?;

    let out = t.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&name));
    std::fs::create_dir_all(&out).map_err(|e| Failure::Usage(format!("cannot create {}: {e}", out.display())))?;
    nnlang_runtime::io::save(&out.join("weights.safetensors"), &train_plan.params, &outcome.weights)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    crate::report::write_atomic(&out.join("metrics.csv"), crate::report::metrics_csv(&outcome.history).as_bytes())
        .map_err(Failure::Usage)?;
    let svg = crate::report::curves_svg(&name, &outcome.history).map_err(Failure::Usage)?;
    crate::report::write_atomic(&out.join("curves.svg"), svg.as_bytes()).map_err(Failure::Usage)?;
    let note = format!("resolved by nnlangc train: parameters as trained, {} epochs", opts.epochs);
    let resolved = job::resolved_source(&source, &compiled, s.model, &note);
    crate::report::write_atomic(&out.join("model.nn"), resolved.as_bytes()).map_err(Failure::Usage)?;

    if let Some(test) = &loaded.test {
        let mut exec = Exec::<f32>::new(&eval_plan, 0);
        exec.params.copy_from_slice(&outcome.weights);
        let e = train::evaluate(&eval_plan, &mut exec, s.loss, data(test), 256);
        let acc = e.accuracy.map_or(String::new(), |a| format!(", accuracy {:.2}%", 100.0 * a));
        println!("test: loss {:.4}{acc} on {} examples", e.loss, test.rows());
    }
    println!("wrote {}/{{weights.safetensors, metrics.csv, curves.svg, model.nn}}", out.display());
    if let Some((epoch, step)) = outcome.interrupted {
        eprintln!("interrupted at epoch {epoch}, step {step}: the weights so far are saved");
        return Err(Failure::Exit(INTERRUPTED));
    }
    Ok(())
}

pub fn eval(args: &ModelArgs, weights: &Path, limit: Option<usize>) -> Result<(), Failure> {
    let (compiled, source) = load(args)?;
    let s = setup(args, &compiled)?;
    let loaded = load_data(args, &compiled, &s, limit)?;
    let plan = plan(args, &source, s.model, Mode::Inference, 256)?;
    let mut exec = Exec::<f32>::new(&plan, 0);
    nnlang_runtime::io::load(weights, &plan.params, &mut exec.params).map_err(|e| {
        eprintln!("error: {e}");
        Failure::Source
    })?;
    let (set, which) = match &loaded.test {
        Some(t) => (t, "test"),
        None => (&loaded.train, "training (the data set has no test split)"),
    };
    let e = train::evaluate(&plan, &mut exec, s.loss, data(set), 256);
    println!("{which} set: {} examples", set.rows());
    println!("loss      {:.4}", e.loss);
    if let Some(a) = e.accuracy {
        println!("accuracy  {:.2}%", 100.0 * a);
    }
    if s.loss == Loss::CrossEntropy {
        let k = plan.output.cols;
        let mut m = vec![vec![0usize; k]; k];
        for (&p, &l) in e.predictions.iter().zip(&set.y) {
            m[l as usize][p] += 1;
        }
        println!("confusion matrix (rows: true class, columns: predicted)");
        let w = set.rows().to_string().len().max(3);
        print!("{:>4} ", "");
        (0..k).for_each(|c| print!(" {c:>w$}"));
        println!();
        for (r, row) in m.iter().enumerate() {
            print!("{r:>4} ");
            row.iter().for_each(|v| print!(" {v:>w$}"));
            println!();
        }
    }
    Ok(())
}

pub fn run(args: &ModelArgs, weights: &Path, input: &Path, output: &Path) -> Result<(), Failure> {
    let (compiled, source) = load(args)?;
    let name = match (&args.model, compiled.models.as_slice()) {
        (Some(m), _) => m.clone(),
        (None, [one]) => one.graph.name.clone(),
        (None, _) => {
            return Err(Failure::Usage(format!(
                "{}: the file has several models; choose one with --model",
                args.file.display()
            )))
        }
    };
    let model = compiled
        .models
        .iter()
        .find(|m| m.graph.name == name)
        .ok_or_else(|| Failure::Usage(format!("no model `{name}`")))?;
    let batch = 256;
    let plan = plan(args, &source, model, Mode::Inference, batch)?;
    let mut exec = Exec::<f32>::new(&plan, 0);
    nnlang_runtime::io::load(weights, &plan.params, &mut exec.params).map_err(|e| {
        eprintln!("error: {e}");
        Failure::Source
    })?;
    let x = data::npy::read(input).map_err(|e| {
        eprintln!("error: {e}");
        Failure::Source
    })?;
    let in_id = model.graph.inputs[0];
    let shape = model.shapes.shapes[in_id.index()].clone().unwrap_or(nnlang::ir::Shape(Vec::new()));
    let dims: Vec<usize> = shape.0.iter().map(|d| if let nnlang::ir::Dim::Fixed(n) = d { *n } else { 0 }).collect();
    if x.shape.len() != dims.len() + 1 || x.shape[1..] != dims[..] {
        return Err(source_error(
            input,
            format!(
                "array of shape {:?}; the model's input `{}` needs [batch, {}]",
                x.shape,
                model.graph.node(in_id).name,
                dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        let cols = plan.inputs[0].cols;
        return Err(source_error(input, format!("row {}, element {} is NaN or infinite", i / cols, i % cols)));
    }
    let rows = x.shape[0];
    let cols = plan.inputs[0].cols;
    let out_cols = plan.output.cols;
    let mut y = Vec::with_capacity(rows * out_cols);
    for start in (0..rows).step_by(batch) {
        let n = batch.min(rows - start);
        let _ = exec.run_on(&plan, n, &[&x.data[start * cols..(start + n) * cols]], &[], None);
        y.extend_from_slice(exec.output(&plan, n));
    }
    let out_id = model.graph.output.unwrap_or(in_id);
    let mut out_shape = vec![rows];
    if let Some(s) = &model.shapes.shapes[out_id.index()] {
        out_shape.extend(s.0.iter().map(|d| if let nnlang::ir::Dim::Fixed(n) = d { *n } else { 0 }));
    }
    data::npy::write(output, &out_shape, &y).map_err(|e| Failure::Usage(e.to_string()))?;
    let classes = argmax_rows(out_cols, &y);
    println!(
        "wrote {} rows of {:?} to {} (first predictions: {:?})",
        rows,
        &out_shape[1..],
        output.display(),
        &classes[..classes.len().min(10)]
    );
    Ok(())
}
