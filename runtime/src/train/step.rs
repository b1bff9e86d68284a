//! One training step — forward, loss, backward, update — on one thread, or data-parallel
//! over several: each worker runs the plan on its share of the batch's rows in its own
//! arena, the gradients are averaged (weighted by rows), and one update is applied.
//! A fixed thread count gives the same result on every run.

use super::optim::Optimizer;
use super::Options;
use crate::interp::{Exec, ExecError, Updater};
use crate::plan::Plan;

/// The interpreter's training step, on one thread or data-parallel.
pub struct Stepper<'p> {
    plan: &'p Plan,
    master: Exec<f32>,
    workers: Vec<Exec<f32>>,
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// The optimizer.
    pub opt: Optimizer<f32>,
}

/// Below this many rows per worker, splitting a batch costs more than it saves.
const MIN_ROWS_PER_WORKER: usize = 16;

impl<'p> Stepper<'p> {
    /// `params` must be initialized; `threads` ≥ 1.
    pub fn new(plan: &'p Plan, params: Vec<f32>, opts: &Options, threads: usize) -> Self {
        let mut master = Exec::<f32>::new(plan, opts.seed.wrapping_add(1));
        master.params = params;
        let threads = threads.max(1);
        let workers: Vec<Exec<f32>> = if threads > 1 {
            // Workers read the master's parameters; they need no copy of their own.
            (0..threads)
                .map(|i| {
                    let mut w = Exec::<f32>::new(plan, opts.seed.wrapping_add(2 + i as u64));
                    w.params = Vec::new();
                    w
                })
                .collect()
        } else {
            Vec::new()
        };
        let pool = (threads > 1)
            .then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok())
            .flatten()
            .map(std::sync::Arc::new);
        let mut opt = Optimizer::new(&plan.params, opts.optimizer, opts.l1, opts.l2, opts.max_norm, opts.ema);
        opt.clip = opts.clip;
        opt.pool = pool.clone();
        Stepper { plan, master, workers, pool, opt }
    }

    /// Where every dropout generator is (the master's, then each worker's).
    pub fn rng_positions(&self) -> Vec<u128> {
        std::iter::once(&self.master).chain(&self.workers).map(Exec::rng_position).collect()
    }

    /// Moves the dropout generators to positions from [`Stepper::rng_positions`] (of a
    /// stepper with as many workers).
    pub fn set_rng_positions(&mut self, pos: &[u128]) -> bool {
        if pos.len() != 1 + self.workers.len() {
            return false;
        }
        for (e, &p) in std::iter::once(&mut self.master).chain(&mut self.workers).zip(pos) {
            e.set_rng_position(p);
        }
        true
    }

    /// Starts new streams: every carried recurrent state becomes zero (in every worker).
    pub fn reset_state(&mut self) {
        self.master.reset_state(self.plan);
        for w in &mut self.workers {
            w.reset_state(self.plan);
        }
    }

    /// The gradients of the last step (averaged over the workers).
    pub fn grads(&self) -> &[f32] {
        &self.master.grads
    }

    /// The current weights.
    pub fn params(&self) -> &[f32] {
        &self.master.params
    }

    /// The weights, giving up the stepper.
    pub fn into_params(self) -> Vec<f32> {
        self.master.params
    }

    /// One step on `rows` examples (`x` row-major, `y` the targets). Returns the mean loss.
    pub fn step(&mut self, x: &[f32], y: &[f32], rows: usize) -> Result<f64, ExecError> {
        self.step_sequences(x, y, &[], rows)
    }

    /// One step on `rows` sequences of the given lengths (empty: every sequence as long as
    /// the plan's). The mean loss is over the rows that count: the examples, or for an output
    /// at every step, the steps inside the sequences.
    pub fn step_sequences(&mut self, x: &[f32], y: &[f32], lengths: &[usize], rows: usize) -> Result<f64, ExecError> {
        let plan = self.plan;
        let workers = self.workers.len().min(rows / MIN_ROWS_PER_WORKER);
        let (Some(pool), true) = (&self.pool, workers >= 2) else {
            self.master.set_lengths(lengths);
            return Ok(self.master.run_on(plan, rows, &[x], y, Some(&mut self.opt))?.unwrap_or(0.0));
        };
        let x_cols = plan.inputs[0].cols;
        let y_cols = plan.target.map_or(0, |(t, _)| t.cols);
        let share = rows.div_ceil(workers);
        // What each worker's mean loss is a mean over: its examples, or its steps.
        let per_step = plan.sequence.is_some_and(|s| s.per_step_output) && !lengths.is_empty();
        let weight = |start: usize, n: usize| if per_step { lengths[start..start + n].iter().sum() } else { n };
        let total = weight(0, rows).max(1);
        let master_params = &self.master.params;
        let results: Vec<Result<(usize, f64), ExecError>> = pool.install(|| {
            use rayon::prelude::*;
            self.workers[..workers]
                .par_iter_mut()
                .enumerate()
                .map(|(i, w)| {
                    let start = (i * share).min(rows);
                    let n = share.min(rows - start);
                    if n == 0 {
                        w.grads.fill(0.0);
                        return Ok((0, 0.0));
                    }
                    let (xs, ys) = (&x[start * x_cols..(start + n) * x_cols], &y[start * y_cols..(start + n) * y_cols]);
                    w.set_lengths(lengths.get(start..start + n).unwrap_or(&[]));
                    let l = w.run_shared(plan, n, master_params, &[xs], ys).map_err(|e| e.shifted(start))?;
                    Ok((weight(start, n), l.unwrap_or(0.0)))
                })
                .collect()
        });
        let mut loss = 0.0;
        let mut shares = Vec::with_capacity(workers);
        for r in results {
            let (n, l) = r?;
            loss += l * n as f64 / total as f64;
            shares.push(n as f32 / total as f32);
        }
        // The mean gradient, Σ (countᵢ/count)·gradᵢ.
        let worker_grads: Vec<&[f32]> = self.workers[..workers].iter().map(|w| w.grads.as_slice()).collect();
        super::parallel::average_gradients(pool, &mut self.master.grads, &worker_grads, &shares);
        let (params, grads) = (&mut self.master.params, &self.master.grads);
        self.opt.update(params, grads);
        Ok(loss)
    }
}
