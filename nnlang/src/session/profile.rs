//! `nnlangc bench`: the user's model as written, timed layer by layer — the training step
//! (forward, backward, the optimizer's update) and inference — with the arithmetic of each
//! layer's products against this machine's measured FMA peak, and the memory each layer
//! touches, so that one sees where the time goes and how far each layer is from the limit.
//!
//! The model runs on made-up inputs of the right shape (uniform in [0, 1), token ids in
//! their range, classes drawn uniformly): the time of every kernel here depends on the
//! shapes, not on the values, so no data set is read.

use super::{Error, Job};
use crate::plan::Mode;
use nnlang_runtime::interp::Exec;
use nnlang_runtime::plan::{Plan, Step, TargetKind};
use nnlang_runtime::profile::{self, Timings};
use nnlang_runtime::time::Instant;
use nnlang_runtime::train::{self, Split, Stepper};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// What to time.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    /// Examples per batch (default: the recipe's batch).
    pub batch: Option<usize>,
    /// Threads of the training step and of inference's products.
    pub threads: usize,
    /// How the threads share a training step.
    pub split: Split,
    /// Time each phase for at least this long (after two warm-up runs).
    pub seconds: f64,
}

/// A profile of a model's training step and inference.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// The model.
    pub model: String,
    /// Examples per batch.
    pub batch: usize,
    /// Threads used.
    pub threads: usize,
    /// How they shared the training step (`one thread`, `each product`, `each batch`).
    pub split: String,
    /// This machine's FMA peak on one thread, in GFLOP/s, measured.
    pub peak_gflops: f64,
    /// The f32 lanes of the instruction set that peak was measured (and the kernels run) with.
    pub lanes: usize,
    /// The cores this process may run on (the peak counts no more threads than these).
    pub cores: usize,
    /// The training step, unless the model cannot be trained here (`training_skipped`).
    pub training: Option<Phase>,
    /// Why the training step was not timed.
    pub training_skipped: Option<String>,
    /// Inference (the plan `run` and `eval` use) at the same batch.
    pub inference: Phase,
}

/// One phase (a training step, or an inference run) timed.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// Runs timed (after two warm-up runs), once without the per-step clock and once with.
    pub runs: usize,
    /// Milliseconds per run without the per-step clock: the median, least and most.
    pub ms: [f64; 3],
    /// Examples per second at the median.
    pub samples_per_s: f64,
    /// Milliseconds per run, on average, of the runs with the per-step clock (the runs the
    /// layers' times come from).
    pub clocked_ms: f64,
    /// Floating-point operations of the products per run.
    pub flops: f64,
    /// Each layer's share, in the order the forward pass meets them; the optimizer's update
    /// last, as the layer `(update)`.
    pub layers: Vec<LayerTime>,
}

/// One layer's steps, timed.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTime {
    /// The layer's name (as in the parameter names), `(loss)`, `(update)`, or `(other)` for
    /// steps no layer made.
    pub layer: String,
    /// Its step kinds, in order (`Conv`, `ConvBackward`).
    pub steps: Vec<String>,
    /// Milliseconds per run in the forward steps.
    pub forward_ms: f64,
    /// Milliseconds per run in the backward steps (the loss, the gradients, the update).
    pub backward_ms: f64,
    /// Floating-point operations of its products per run (forward).
    pub forward_flops: f64,
    /// Floating-point operations of its products per run (backward).
    pub backward_flops: f64,
    /// Bytes its steps read and write per run, each buffer once.
    pub bytes: f64,
}

impl LayerTime {
    fn ms(&self) -> f64 {
        self.forward_ms + self.backward_ms
    }
}

/// Warm-up runs before any timing.
const WARM_UP: usize = 2;
/// The fewest runs timed in a phase.
const MIN_RUNS: usize = 3;
/// The most runs timed in a phase.
const MAX_RUNS: usize = 10_000;

impl Job<'_> {
    /// Times the model's training step and its inference (see the module's documentation).
    pub fn bench(&self, spec: &BenchSpec) -> Result<Profile, Error> {
        let session = self.session;
        let threads = spec.threads.max(1);
        let batch = spec.batch.unwrap_or(self.recipe.batch).max(1);
        let (peak, lanes) = profile::fma_peak();
        let mut rng = ChaCha8Rng::seed_from_u64(self.recipe.seed);

        // The training step, as `nnlangc train` takes it.
        let carry = self.recipe.bptt.is_some();
        let plan = session.plan_with(self.model, Mode::Training(self.recipe.loss), batch, carry)?;
        let mut options = self.recipe.options(threads);
        options.batch = batch;
        options.split = spec.split;
        let products = options.splits_products(&plan, threads);
        options.worker_plan = self.worker_plan(&plan, &options, carry)?;
        let split = match (threads, products) {
            (1, _) => "one thread",
            (_, true) => "each product",
            _ => "each batch",
        };
        let (training, training_skipped) = if plan.inputs.len() == 1 {
            let mut params = vec![0f32; plan.params_len];
            train::initialize(&plan, &mut params, options.init, options.seed);
            let mut stepper = Stepper::new(&plan, params, &options, threads);
            let x = made_up_input(&plan, 0, batch, &mut rng);
            let y = made_up_target(&plan, batch, &mut rng);
            let step = |stepper: &mut Stepper| -> Result<(), Error> {
                let loss = stepper.step(&x, &y, batch).map_err(|e| session.input_error(e.to_string()))?;
                if !loss.is_finite() {
                    return Err(session.input_error(format!(
                        "the loss became {loss} on the made-up batch (the recipe's learning rate may be too high for it)"
                    )));
                }
                Ok(())
            };
            let (runs, ms) = time_runs(spec.seconds, || step(&mut stepper))?;
            stepper.profile(true);
            let started = Instant::now();
            for _ in 0..runs {
                step(&mut stepper)?;
            }
            let clocked = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
            let timings = stepper.timings().cloned().unwrap_or_default();
            (Some(phase(&plan, batch, (runs, ms, clocked), &timings)), None)
        } else {
            let why = format!(
                "the training step reads one input; model `{}` has {}",
                self.model.graph.name,
                plan.inputs.len()
            );
            (None, Some(why))
        };

        // Inference, as `run` and `eval` take it.
        let plan = session.plan(self.model, Mode::Inference, batch)?;
        let mut exec = Exec::<f32>::new(&plan, self.recipe.seed);
        train::initialize(&plan, &mut exec.params, self.recipe.init, self.recipe.seed);
        if threads > 1 {
            let team = train::Team::new(threads).map_err(Error::Usage)?;
            exec.team = Some(std::sync::Arc::new(team));
        }
        let inputs: Vec<Vec<f32>> = (0..plan.inputs.len()).map(|i| made_up_input(&plan, i, batch, &mut rng)).collect();
        let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let infer = |exec: &mut Exec<f32>| -> Result<(), Error> {
            exec.run_on(&plan, batch, &slices, &[], None).map_err(|e| session.input_error(e.to_string()))?;
            Ok(())
        };
        let (runs, ms) = time_runs(spec.seconds, || infer(&mut exec))?;
        exec.timings = Some(Timings::new(plan.steps.len()));
        let started = Instant::now();
        for _ in 0..runs {
            infer(&mut exec)?;
        }
        let clocked = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
        let timings = exec.timings.take().unwrap_or_default();
        let inference = phase(&plan, batch, (runs, ms, clocked), &timings);
        Ok(Profile {
            model: self.model.graph.name.clone(),
            batch,
            threads,
            split: split.to_string(),
            peak_gflops: peak,
            lanes,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            training,
            training_skipped,
            inference,
        })
    }
}

/// Runs `run` twice to warm up, then until `seconds` have passed (at least [`MIN_RUNS`]
/// times); returns the runs timed and the milliseconds per run: median, least and most.
fn time_runs(seconds: f64, mut run: impl FnMut() -> Result<(), Error>) -> Result<(usize, [f64; 3]), Error> {
    for _ in 0..WARM_UP {
        run()?;
    }
    let started = Instant::now();
    let mut ms = Vec::new();
    while ms.len() < MIN_RUNS || (started.elapsed().as_secs_f64() < seconds && ms.len() < MAX_RUNS) {
        let t = Instant::now();
        run()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    Ok((ms.len(), [median, ms[0], ms[ms.len() - 1]]))
}

/// Input `i` of `plan` for `rows` examples: token ids drawn from their range, other values
/// uniform in [0, 1).
fn made_up_input(plan: &Plan, i: usize, rows: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = rows * plan.inputs[i].cols;
    match plan.input_ids.get(i).copied().flatten() {
        Some(vocab) => (0..n).map(|_| rng.random_range(0..vocab.max(1)) as f32).collect(),
        None => (0..n).map(|_| rng.random::<f32>()).collect(),
    }
}

/// The target of a training plan for `rows` examples: classes drawn uniformly among the
/// loss's, or values uniform in [0, 1).
fn made_up_target(plan: &Plan, rows: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let Some((t, kind)) = plan.target else { return Vec::new() };
    let n = rows * t.cols;
    match kind {
        TargetKind::Class => {
            let classes = plan
                .steps
                .iter()
                .find_map(|s| match s {
                    Step::SoftmaxCrossEntropy { logits, .. } => Some(logits.cols),
                    Step::CrossEntropy { probs, .. } => Some(probs.cols),
                    _ => None,
                })
                .unwrap_or(1)
                .max(1);
            (0..n).map(|_| rng.random_range(0..classes) as f32).collect()
        }
        TargetKind::Values => (0..n).map(|_| rng.random::<f32>()).collect(),
    }
}

/// The layers of a timed plan: each step's time per run, its products' operations and the
/// bytes it touches, gathered by the layer that made it.
fn phase(plan: &Plan, batch: usize, (runs, ms, clocked_ms): (usize, [f64; 3], f64), timings: &Timings) -> Phase {
    let rows = profile::rows(plan, batch);
    let per_run = 1e3 / timings.runs.max(1) as f64;
    let mut layers: Vec<LayerTime> = Vec::new();
    // Each layer's row, by name (a model may have many thousands of layers).
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut flops = 0.0;
    let backward_from = profile::backward_from(plan);
    for (i, step) in plan.steps.iter().enumerate() {
        let origin = plan.origins.get(i).map(String::as_str).unwrap_or("");
        let name = match step {
            Step::Update => "(update)".to_string(),
            _ if profile::is_loss(step) => "(loss)".to_string(),
            _ if origin.is_empty() => "(other)".to_string(),
            _ => origin.to_string(),
        };
        let t = timings.seconds.get(i).copied().unwrap_or(0.0) * per_run;
        let (f, b) = (profile::flops(step, rows[i]), profile::bytes(step, rows[i]));
        flops += f;
        let at = match index.get(&name) {
            Some(&at) => at,
            None => {
                index.insert(name.clone(), layers.len());
                layers.push(LayerTime {
                    layer: name,
                    steps: Vec::new(),
                    forward_ms: 0.0,
                    backward_ms: 0.0,
                    forward_flops: 0.0,
                    backward_flops: 0.0,
                    bytes: 0.0,
                });
                layers.len() - 1
            }
        };
        let l = &mut layers[at];
        if !matches!(step, Step::PerStep { .. }) {
            l.steps.push(step.kind().to_string());
        }
        if i >= backward_from {
            (l.backward_ms, l.backward_flops) = (l.backward_ms + t, l.backward_flops + f);
        } else {
            (l.forward_ms, l.forward_flops) = (l.forward_ms + t, l.forward_flops + f);
        }
        l.bytes += b;
    }
    // Steps that mark where a sequence's steps start take no time worth a row of their own.
    layers.retain(|l| !l.steps.is_empty());
    Phase { runs, ms, samples_per_s: batch as f64 / (ms[0] / 1e3), clocked_ms, flops, layers }
}

impl Profile {
    /// The profile as a report: the machine, then each phase's table.
    pub fn to_text(&self) -> String {
        let isa = match (self.lanes, cfg!(any(target_arch = "x86", target_arch = "x86_64"))) {
            (16, _) => "AVX-512",
            (8, true) => "AVX2",
            (4, false) => "NEON/SIMD128",
            (4, true) => "SSE",
            _ => "scalar",
        };
        let threads = if self.threads == 1 { "1 thread".to_string() } else { format!("{} threads", self.threads) };
        // Threads beyond the cores share them: the peak is the cores'.
        let running = self.threads.min(self.cores.max(1));
        let peak = self.peak_gflops * running as f64;
        let on = if running < self.threads {
            format!("on the {running} cores the {threads} share")
        } else {
            format!("on {threads}")
        };
        let mut out = format!(
            "model {} at batch {}, {threads}{}; made-up inputs of the model's shapes\n\
             FMA peak: {:.0} GFLOP/s per thread ({isa}, {} f32 lanes, measured), {:.0} GFLOP/s {on}\n",
            self.model,
            self.batch,
            if self.threads > 1 { format!(" (training: {} split among them)", self.split) } else { String::new() },
            self.peak_gflops,
            self.lanes,
            peak,
        );
        match (&self.training, &self.training_skipped) {
            (Some(t), _) => out += &t.to_text("training step", peak, true),
            (None, Some(why)) => out += &format!("\ntraining step: not timed ({why})\n"),
            (None, None) => {}
        }
        out += &self.inference.to_text("inference", peak, false);
        out += "\nforward and backward: time per run, each step timed on the calling thread (the\n\
                first share of a batch split among threads); GFLOP/s and % of peak: the products of\n\
                dense, convolution, recurrent and attention layers; GB/s: what the layer's steps read\n\
                and write, each buffer once, over their time (memory-bound steps show only this)\n";
        out
    }
}

impl Phase {
    /// The phase's line and its table of layers; `backward`: a training step (forward and
    /// backward columns). Runs under 10 ms are tabled in microseconds.
    fn to_text(&self, what: &str, peak: f64, backward: bool) -> String {
        let timed: f64 = self.layers.iter().map(LayerTime::ms).sum();
        let rate = |flops: f64, ms: f64| if ms > 0.0 && flops > 0.0 { flops / (ms * 1e-3) / 1e9 } else { 0.0 };
        let whole = rate(self.flops, self.ms[0]);
        let mut out = format!(
            "\n{what}: {:.3} ms (median of {} runs, {:.3}–{:.3}), {} samples/s; {:.3} GFLOP, {:.1} GFLOP/s = {:.0}% of peak\n",
            self.ms[0],
            self.runs,
            self.ms[1],
            self.ms[2],
            crate::diag::thousands(self.samples_per_s.round().max(0.0) as u64),
            self.flops / 1e9,
            whole,
            100.0 * whole / peak.max(1e-9),
        );
        let (unit, scale, digits) = if self.ms[0] < 10.0 { ("µs", 1e3, 1) } else { ("ms", 1.0, 3) };
        let time = |ms: f64| format!("{:.digits$}", ms * scale);
        let mut headers = vec!["layer".to_string(), "steps".to_string()];
        if backward {
            headers.extend([format!("forward {unit}"), format!("backward {unit}")]);
        } else {
            headers.push(unit.to_string());
        }
        headers.push("share".into());
        if backward {
            headers.extend(["GFLOP/s fwd".into(), "GFLOP/s bwd".into()]);
        } else {
            headers.push("GFLOP/s".into());
        }
        headers.extend(["% peak".into(), "MB".into(), "GB/s".into()]);
        let mut rows: Vec<Vec<String>> = vec![headers];
        let num = |v: f64, digits: usize| if v > 0.0 { format!("{v:.digits$}") } else { String::new() };
        for l in &self.layers {
            let ms = l.ms();
            let flops = l.forward_flops + l.backward_flops;
            let pct =
                if flops > 0.0 { format!("{:.0}%", 100.0 * rate(flops, ms) / peak.max(1e-9)) } else { String::new() };
            let gbs = num(if ms > 0.0 { l.bytes / (ms * 1e-3) / 1e9 } else { 0.0 }, 1);
            let share = format!("{:.1}%", 100.0 * ms / timed.max(1e-12));
            let mut row = vec![l.layer.clone(), summarize_steps(&l.steps)];
            if backward {
                row.extend([
                    time(l.forward_ms),
                    time(l.backward_ms),
                    share,
                    num(rate(l.forward_flops, l.forward_ms), 1),
                    num(rate(l.backward_flops, l.backward_ms), 1),
                ]);
            } else {
                row.extend([time(l.forward_ms), share, num(rate(l.forward_flops, l.forward_ms), 1)]);
            }
            row.extend([pct, num(l.bytes / 1e6, 2), gbs]);
            rows.push(row);
        }
        let mut total = vec!["total".to_string(), String::new()];
        if backward {
            let (f, b) = self.layers.iter().fold((0.0, 0.0), |(f, b), l| (f + l.forward_ms, b + l.backward_ms));
            total.extend([time(f), time(b)]);
        } else {
            total.push(time(timed));
        }
        total.push("100%".into());
        rows.push(total);
        out += &table(&rows);
        let rest = if backward { "bookkeeping, the batch's hand-over to the threads" } else { "bookkeeping" };
        out += &format!(
            "(the steps' own times add up to {timed:.3} ms of the {:.3} ms those runs took on average; the rest is the run's {rest} and the per-step clock)\n",
            self.clocked_ms
        );
        out
    }
}

/// `Conv, ConvBackward` for a layer's steps, repeats counted (`Add ×3`).
fn summarize_steps(steps: &[String]) -> String {
    let mut out: Vec<(String, usize)> = Vec::new();
    for s in steps {
        match out.iter_mut().find(|(k, _)| k == s) {
            Some((_, n)) => *n += 1,
            None => out.push((s.clone(), 1)),
        }
    }
    out.iter().map(|(k, n)| if *n > 1 { format!("{k} ×{n}") } else { k.clone() }).collect::<Vec<_>>().join(", ")
}

/// Columns aligned: the first two to the left, the others to the right.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| if c < 2 { format!("{s:<w$}", w = width[c]) } else { format!("{s:>w$}", w = width[c]) })
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}
