//! The notes' numerical gradient check (`nnlangc gradcheck`): the compiled backward pass of a
//! model against centred differences `(L(θ + h) − L(θ − h)) / 2h`, in double precision, on a
//! few examples drawn with a fixed seed, for a sample of coordinates of every parameter tensor.
//!
//! Each coordinate's relative error `|a − n| / max(|a|, |n|)` is read with the notes' bands:
//! above 1e-2 the gradient is wrong, 1e-4…1e-2 is uncomfortable, below 1e-4 is fine for a
//! model with kinks (ReLU, max pooling, maxout) and suspect without, and 1e-7 or less is good.
//! An error within ten times what rounding alone leaves in the quotient (`ε·|L| / (h·|g|)`,
//! for a small gradient `g`) counts as good: double precision cannot tell it apart.
//! A coordinate whose difference crosses a kink — a ReLU input changes sign, a maximum changes
//! winner between `θ + h` and `θ − h` — is reported and not scored: the difference quotient
//! does not estimate the gradient there.
//!
//! The inputs are checked too: the plan computes the loss's gradient with respect to each
//! model input, compared with differences of sampled input values.
//!
//! The check runs the unoptimised plan (every op separate, so every kink's input is kept), with
//! no regularization (the penalty is not part of the plan's loss) and dropout off.

use super::{Error, Session};
use crate::plan::build_checking_inputs;
use crate::Model;
use nnlang_runtime::interp::Exec;
use nnlang_runtime::mem::Reads;
use nnlang_runtime::plan::{Kink, Plan, TargetKind};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to check.
#[derive(Clone, Debug)]
pub struct GradcheckSpec {
    /// The difference step (the notes: 1e-6 … 1e-4).
    pub step: f64,
    /// Examples in the batch.
    pub examples: usize,
    /// Coordinates sampled per parameter tensor (every one of a smaller tensor).
    pub coordinates: usize,
    /// Seeds the example batch and the coordinates.
    pub seed: u64,
}

impl GradcheckSpec {
    /// Refuses a check that cannot mean anything (a step outside the range where centred
    /// differences work in f64) or that no machine could run.
    pub fn check(&self) -> Result<(), Error> {
        if !(MIN_STEP..=MAX_STEP).contains(&self.step) {
            return Err(Error::Usage(format!(
                "--step {:e}: centred differences in double precision need a step between {MIN_STEP:e} and {MAX_STEP:e} (the notes use 1e-6 to 1e-4): below, rounding swamps the difference; above, the curvature does",
                self.step
            )));
        }
        if self.examples == 0 || self.coordinates == 0 {
            return Err(Error::Usage("--examples and --coordinates must be at least 1".into()));
        }
        if self.examples > MAX_EXAMPLES || self.coordinates > MAX_COORDINATES {
            return Err(Error::Usage(format!(
                "--examples {} --coordinates {}: at most {MAX_EXAMPLES} examples and {MAX_COORDINATES} coordinates per tensor (each coordinate runs the model twice on every example)",
                self.examples, self.coordinates
            )));
        }
        Ok(())
    }
}

impl Default for GradcheckSpec {
    fn default() -> Self {
        GradcheckSpec { step: 1e-5, examples: 4, coordinates: 20, seed: 0 }
    }
}

/// The notes' reading of a relative error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// ≤ 1e-7.
    Good,
    /// ≤ 1e-4 in a model with kinks.
    FineWithKinks,
    /// ≤ 1e-4 in a model without kinks: too high for smooth functions.
    Suspect,
    /// 1e-4 … 1e-2.
    Uncomfortable,
    /// > 1e-2: the gradient is probably wrong.
    Wrong,
}

impl Verdict {
    /// The verdict for a relative error `rel` (looser where the model has kinks).
    pub fn of(rel: f64, kinky: bool) -> Verdict {
        if rel <= 1e-7 {
            Verdict::Good
        } else if rel <= 1e-4 {
            if kinky {
                Verdict::FineWithKinks
            } else {
                Verdict::Suspect
            }
        } else if rel <= 1e-2 {
            Verdict::Uncomfortable
        } else {
            Verdict::Wrong
        }
    }

    /// The verdict as printed.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::FineWithKinks => "fine (the model has kinks)",
            Verdict::Suspect => "suspect (too high for a model without kinks)",
            Verdict::Uncomfortable => "uncomfortable",
            Verdict::Wrong => "WRONG",
        }
    }
}

/// One parameter tensor's result.
#[derive(Clone, Debug)]
pub struct TensorCheck {
    /// The tensor's name.
    pub name: String,
    /// Coordinates compared (not counting those across a kink).
    pub checked: usize,
    /// Coordinates whose difference crossed a kink.
    pub kinks: usize,
    /// The largest relative error, its coordinate, and the two gradients there.
    pub worst: f64,
    /// The coordinate of the largest error.
    pub worst_at: usize,
    /// The derived gradient there.
    pub analytic: f64,
    /// The finite difference there.
    pub numeric: f64,
    /// Good, acceptable or wrong.
    pub verdict: Verdict,
}

/// The whole check.
#[derive(Clone, Debug)]
pub struct Gradcheck {
    /// Every parameter tensor's result (and the inputs').
    pub tensors: Vec<TensorCheck>,
    /// Whether the model has kinks (ReLU, leaky ReLU, max pooling, maxout).
    pub kinky: bool,
    /// The loss at the checked weights.
    pub loss: f64,
}

impl Gradcheck {
    /// The worst verdict of any tensor.
    pub fn worst(&self) -> Verdict {
        self.tensors.iter().map(|t| t.verdict).max().unwrap_or(Verdict::Good)
    }
}

/// The smallest difference step accepted: below it rounding swamps the difference in f64.
pub const MIN_STEP: f64 = 1e-8;
/// The largest difference step accepted: above it the curvature does (a step this large is
/// for probing kinks on purpose).
pub const MAX_STEP: f64 = 1e-1;
/// The most examples a check runs on.
pub const MAX_EXAMPLES: usize = 4096;
/// The most coordinates sampled per tensor.
pub const MAX_COORDINATES: usize = 100_000;

/// Adds to `h` which side of its kink a step left its values on (it ran on `rows` rows): the
/// side of every kink of every activation, the winner of every maximum. The op that made the
/// step declared the kink (`ops::Rules::step_facts`).
fn kink_signature(h: &mut u64, kink: Option<&Kink>, rows: usize, reads: &Reads<'_, f64>) {
    let mut mix = |bit: u64| {
        *h ^= bit;
        *h = h.wrapping_mul(0x0100_0000_01b3);
    };
    match kink {
        Some(Kink::Past(b, at)) => {
            reads.get(*b, rows).iter().for_each(|v| at.iter().for_each(|k| mix(u64::from(*v > *k))));
        }
        Some(Kink::Winner(z, pieces)) => {
            for group in reads.get(*z, rows).chunks_exact((*pieces).max(1)) {
                let best = group.iter().enumerate().fold(0, |b, (i, v)| if *v > group[b] { i } else { b });
                mix(best as u64);
            }
        }
        Some(Kink::Window(g, x, y)) => {
            let (xs, ys) = (reads.get(*x, rows), reads.get(*y, rows));
            let (in_len, out_len, d) = (g.h * g.w * g.d, g.oh * g.ow * g.d, g.d);
            for r in 0..rows {
                for o in 0..g.oh * g.ow {
                    let (oy, ox) = (o / g.ow, o % g.ow);
                    for c in 0..d {
                        let best = ys[r * out_len + o * d + c];
                        let mut at = 0;
                        'win: for fy in 0..g.reach(oy, g.h) {
                            for fx in 0..g.reach(ox, g.w) {
                                let i = ((oy * g.s + fy) * g.w + ox * g.s + fx) * d + c;
                                if xs[r * in_len + i] == best {
                                    at = fy * g.f + fx;
                                    break 'win;
                                }
                            }
                        }
                        mix(at as u64);
                    }
                }
            }
        }
        Some(Kink::Across(x, channels)) => {
            let c = (*channels).max(1);
            for row in reads.get(*x, rows).chunks_exact(reads.get(*x, 1).len().max(1)) {
                for ch in 0..c {
                    let best = row.iter().skip(ch).step_by(c).enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &v)| {
                        if v > b.1 {
                            (i, v)
                        } else {
                            b
                        }
                    });
                    mix(best.0 as u64);
                }
            }
        }
        None => {}
    }
}

fn has_kinks(plan: &Plan) -> bool {
    plan.facts.iter().any(|f| f.kink.is_some())
}

impl Session {
    /// Checks `model`'s gradients as the recipe trains it (its loss); `tamper` may change the
    /// plan first (a test breaks a backward step to see the check catch it).
    pub fn gradcheck(
        &self,
        model: &Model,
        spec: &GradcheckSpec,
        tamper: Option<&dyn Fn(&mut Plan)>,
    ) -> Result<Gradcheck, Error> {
        spec.check()?;
        let loss = self.compiled.recipe_or_implied(model).loss;
        let rows = spec.examples;
        let mut plan = build_checking_inputs(model, loss, rows).map_err(|d| Error::Diagnostics(self.render(&d)))?;
        if let Some(t) = tamper {
            t(&mut plan);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let mut exec = Exec::<f64>::new(&plan, spec.seed);
        nnlang_runtime::train::initialize(&plan, &mut exec.params, nnlang_runtime::train::Init::Xavier, spec.seed);
        // Biases start at zero and gains at one; small random moves exercise them too.
        for p in &plan.params {
            let at = match p.role {
                nnlang_runtime::plan::Role::Bias | nnlang_runtime::plan::Role::GateBias { .. } => 0.0,
                nnlang_runtime::plan::Role::Gain => 1.0,
                nnlang_runtime::plan::Role::Weight { .. }
                | nnlang_runtime::plan::Role::Embedding { .. }
                | nnlang_runtime::plan::Role::State { .. }
                | nnlang_runtime::plan::Role::Count => continue,
            };
            exec.params[p.buf.range()].iter_mut().for_each(|v| *v = at + rng.random_range(-0.1..0.1));
        }
        for i in 0..plan.inputs.len() {
            let n = rows * plan.inputs[i].cols;
            let x: Vec<f64> = match plan.input_ids.get(i).copied().flatten() {
                Some(vocab) => (0..n).map(|_| rng.random_range(0..vocab) as f64).collect(),
                None => (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
            };
            exec.set_input(&plan, i, rows, &x);
        }
        let mut lengths: Vec<usize> = Vec::new();
        if let Some(seq) = plan.sequence.filter(|s| s.variable) {
            lengths = (0..rows).map(|_| rng.random_range(1..=seq.steps)).collect();
            exec.set_lengths(&lengths);
        }
        if let Some((t, kind)) = plan.target {
            let y: Vec<f64> = match kind {
                TargetKind::Class => {
                    let per = plan.sequence.filter(|s| s.per_step_output).map_or(1, |s| s.steps);
                    let classes = (plan.output.cols / per).max(1);
                    (0..rows * t.cols).map(|_| rng.random_range(0..classes) as f64).collect()
                }
                TargetKind::Values => (0..rows * t.cols).map(|_| rng.random_range(0.0..1.0)).collect(),
            };
            exec.set_target(&plan, rows, &y);
        }
        let carried: Vec<(std::ops::Range<usize>, Vec<f64>)> =
            plan.carried.iter().map(|b| (b.range(rows), exec.arena[b.range(rows)].to_vec())).collect();
        // The loss, and which side of every kink the run's values sat on.
        let run = |exec: &mut Exec<f64>| -> Result<(f64, u64), Error> {
            for (r, v) in &carried {
                exec.arena[r.clone()].copy_from_slice(v);
            }
            let mut sig: u64 = 0xcbf2_9ce4_8422_2325;
            let l = exec
                .run_watched(&plan, rows, &mut |i, _, n, reads, _| {
                    kink_signature(&mut sig, plan.facts.get(i).and_then(|f| f.kink.as_ref()), n, reads)
                })
                .map_err(|e| Error::Input(e.to_string()))?;
            Ok((l.unwrap_or(0.0), sig))
        };
        let (loss_value, _) = run(&mut exec)?;
        let analytic = exec.grads.clone();
        let input_grads: Vec<Vec<f64>> = plan.input_grads.iter().map(|&b| exec.buffer(b, rows).to_vec()).collect();
        let kinky = has_kinks(&plan);
        let h = spec.step;
        // The model's largest gradient: a coordinate whose analytic and numeric gradients are
        // both below 1e-7 of it is zero for the comparison (a bias that a batch norm cancels
        // has a true gradient of 0, and its numeric one is the loss's rounding over h, which a
        // normalized loss carries more of than ε·|L|).
        let largest = analytic.iter().chain(input_grads.iter().flatten()).fold(0f64, |m, g| m.max(g.abs()));
        // One tensor's check: each picked coordinate `k` (its analytic gradient `a[k]`) moved
        // by ±h through `value`, scored unless the two runs sit on different sides of a kink.
        let check = |name: String,
                     picks: Vec<usize>,
                     a: &[f64],
                     exec: &mut Exec<f64>,
                     value: &dyn Fn(&mut Exec<f64>, usize) -> &mut f64|
         -> Result<TensorCheck, Error> {
            let mut t = TensorCheck {
                name,
                checked: 0,
                kinks: 0,
                worst: 0.0,
                worst_at: 0,
                analytic: 0.0,
                numeric: 0.0,
                verdict: Verdict::Good,
            };
            let mut worst_scored = 0f64;
            for k in picks {
                let orig = *value(exec, k);
                *value(exec, k) = orig + h;
                let (up, sig_up) = run(exec)?;
                *value(exec, k) = orig - h;
                let (down, sig_down) = run(exec)?;
                *value(exec, k) = orig;
                if sig_up != sig_down {
                    t.kinks += 1;
                    continue;
                }
                let num = (up - down) / (2.0 * h);
                let scale = a[k].abs().max(num.abs());
                // Both zero (an unused weight, a dead unit, a bias that a normalization
                // cancels): nothing to compare. A numeric gradient is zero when it is within
                // what rounding the loss leaves in the quotient (ε·|L|/h, a few times over), or
                // both are negligible next to the model's largest gradient.
                let zero = (4.0 * f64::EPSILON * loss_value.abs().max(1.0) / h).max(1e-7 * largest);
                let rel = if scale < 1e-12 || scale <= zero { 0.0 } else { (a[k] - num).abs() / scale };
                // What rounding alone leaves in the quotient: ε·|L|/h, relative to the
                // gradient. An error within ten times that is as good as f64 can tell.
                let floor = f64::EPSILON * loss_value.abs().max(1.0) / (h * scale.max(1e-300));
                // Forgiven only where rounding could explain it and the comparison still means
                // something (a numeric gradient of zero against a real one never is).
                let forgiven = rel <= 10.0 * floor && floor < 1e-4 && (num != 0.0 || a[k].abs() < 1e-12);
                worst_scored = worst_scored.max(if forgiven { rel.min(1e-7) } else { rel });
                t.checked += 1;
                if rel >= t.worst {
                    (t.worst, t.worst_at, t.analytic, t.numeric) = (rel, k, a[k], num);
                }
            }
            t.verdict = Verdict::of(worst_scored, kinky);
            Ok(t)
        };
        let mut tensors = Vec::new();
        // Trained tensors only: a state's slot holds a batch statistic, not a gradient.
        for p in plan.params.iter().filter(|p| p.trained()) {
            let n = p.buf.len;
            let picks: Vec<usize> = if n <= spec.coordinates {
                (0..n).collect()
            } else {
                (0..spec.coordinates).map(|_| rng.random_range(0..n)).collect()
            };
            let at = p.buf.offset;
            tensors.push(check(p.name.clone(), picks, &analytic[at..], &mut exec, &|e, k| &mut e.params[at + k])?);
        }
        // The inputs: the loss's gradient with respect to sampled input values (inside the
        // sequences, for sequences of different lengths).
        let names: Vec<String> = model.graph.inputs.iter().map(|&i| model.graph.node(i).name.clone()).collect();
        for (i, a) in input_grads.iter().enumerate() {
            let cols = plan.inputs[i].cols;
            let per_step = plan.sequence.map_or(cols, |q| cols / q.steps.max(1));
            let inside = |k: usize| lengths.is_empty() || (k % cols) / per_step.max(1) < lengths[k / cols];
            let candidates: Vec<usize> = (0..rows * cols).filter(|&k| inside(k)).collect();
            let picks: Vec<usize> = if candidates.len() <= spec.coordinates {
                candidates
            } else {
                (0..spec.coordinates).map(|_| candidates[rng.random_range(0..candidates.len())]).collect()
            };
            let name = format!("input {}", names.get(i).map_or("?", |n| n.as_str()));
            tensors.push(check(name, picks, a, &mut exec, &|e, k| &mut e.inputs[i][k])?);
        }
        Ok(Gradcheck { tensors, kinky, loss: loss_value })
    }
}
