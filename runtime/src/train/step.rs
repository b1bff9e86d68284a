//! One training step — forward, loss, backward, update — on one thread, or data-parallel
//! over several: each worker runs the plan on its share of the batch's rows in its own
//! arena, the gradients are averaged (weighted by rows), and one update is applied.
//! A fixed thread count gives the same result on every run.

use super::optim::Optimizer;
use super::Options;
use crate::interp::{Exec, ExecError, Updater};
use crate::plan::Plan;

pub struct Stepper<'p> {
    plan: &'p Plan,
    master: Exec<f32>,
    workers: Vec<Exec<f32>>,
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
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

    pub fn params(&self) -> &[f32] {
        &self.master.params
    }

    pub fn into_params(self) -> Vec<f32> {
        self.master.params
    }

    /// One step on `rows` examples (`x` row-major, `y` the targets). Returns the mean loss.
    pub fn step(&mut self, x: &[f32], y: &[f32], rows: usize) -> Result<f64, ExecError> {
        let plan = self.plan;
        let workers = self.workers.len().min(rows / MIN_ROWS_PER_WORKER);
        let (Some(pool), true) = (&self.pool, workers >= 2) else {
            return Ok(self.master.run_on(plan, rows, &[x], y, Some(&mut self.opt))?.unwrap_or(0.0));
        };
        let x_cols = plan.inputs[0].cols;
        let y_cols = plan.target.map_or(0, |(t, _)| t.cols);
        let share = rows.div_ceil(workers);
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
                    let l = w.run_shared(plan, n, master_params, &[xs], ys)?.unwrap_or(0.0);
                    Ok((n, l))
                })
                .collect()
        });
        let mut loss = 0.0;
        let mut shares = Vec::with_capacity(workers);
        for r in results {
            let (n, l) = r?;
            loss += l * n as f64 / rows as f64;
            shares.push(n as f32 / rows as f32);
        }
        // The mean gradient, Σ (rowsᵢ/rows)·gradᵢ.
        let worker_grads: Vec<&[f32]> = self.workers[..workers].iter().map(|w| w.grads.as_slice()).collect();
        super::parallel::average_gradients(pool, &mut self.master.grads, &worker_grads, &shares);
        let (params, grads) = (&mut self.master.params, &self.master.grads);
        self.opt.update(params, grads);
        Ok(loss)
    }
}
