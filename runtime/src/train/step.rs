//! One training step — forward, loss, backward, update — on one thread, or over several in
//! one of two ways ([`super::Split`]): splitting each large dense product (the master runs
//! the plan with the team, `kernels::dense` gives each thread its share of every layer's
//! outputs and the optimizer the same rows to update: one thread's results, bit for bit), or
//! data-parallel: each worker runs the plan on its share of the batch's rows in its own
//! arena, the gradients are averaged (weighted by rows), and one update is applied.
//! A fixed thread count gives the same result on every run.
//!
//! Over several processes ([`super::cluster`]) the batch is shared out the same way, a share
//! per process (split further over each process's threads): each process computes the
//! weighted gradient of its share, one all-reduce sums them, and every process applies the
//! same update. Process `r` of `N` with one thread each is worker `r` of `--threads N` — the
//! same rows, the same dropout stream — so with two processes the sum, and so the whole run,
//! is the two-thread run's bit for bit; with more, MPI may add in another order (a last-bit
//! difference, within 1e-6).

use super::cluster::Cluster;
use super::optim::Optimizer;
use super::Options;
use crate::interp::{Exec, ExecError, Updater};
use crate::mem::Sum;
use crate::plan::Plan;
use std::sync::Arc;

/// The interpreter's training step, on one thread or data-parallel.
pub struct Stepper<'p> {
    plan: &'p Plan,
    /// The plan the workers run, for their share of a batch (none: `plan`).
    worker_plan: Option<std::sync::Arc<Plan>>,
    master: Exec<f32>,
    workers: Vec<Exec<f32>>,
    team: Option<std::sync::Arc<super::Team>>,
    /// The optimizer.
    pub opt: Optimizer<f32>,
    /// The processes of a distributed run, with the buffers of its all-reduce.
    cluster: Option<Distributed>,
    /// The sizes of the sums over the whole batch the plan's steps meet for, in order (empty
    /// for a plan whose every step works row by row).
    meetings: Vec<usize>,
}

/// A distributed run's state: the processes, and the all-reduce's flat buffers (the weighted
/// gradient, then the loss as two floats and the stop requests).
struct Distributed {
    cluster: Cluster,
    send: Vec<f32>,
    recv: Vec<f32>,
    /// This process asks every process to stop after the next shared step.
    stop_asked: bool,
    /// The last shared step carried a request to stop.
    stop_agreed: bool,
    /// Shared steps taken, and the time spent in their all-reduce (waiting for the slowest
    /// process included).
    shared_steps: usize,
    reduce_time: std::time::Duration,
}

/// Below this many rows per worker, splitting a batch costs more than it saves.
const MIN_ROWS_PER_WORKER: usize = 16;

/// The most rows one of `threads` workers of a batch-splitting step ever runs, for batches of
/// up to `batch` rows: what its memory must hold (a batch too small to share runs on one
/// thread, with the whole plan).
pub fn worker_rows(batch: usize, threads: usize) -> usize {
    (2 * MIN_ROWS_PER_WORKER..=batch)
        .map(|rows| rows.div_ceil(threads.min(rows / MIN_ROWS_PER_WORKER).max(1)))
        .max()
        .unwrap_or(batch)
        .max(1)
}

/// Values after the gradient in the all-reduce's buffer: the loss (high and low parts) and
/// the stop requests.
const EXTRA: usize = 3;

impl<'p> Stepper<'p> {
    /// `params` must be initialized; `threads` ≥ 1.
    ///
    /// With `opts.cluster`, this process's workers are the workers its share would have in
    /// a one-process run on `threads × processes` threads (their dropout streams too).
    pub fn new(plan: &'p Plan, params: Vec<f32>, opts: &Options, threads: usize) -> Self {
        let mut master = Exec::<f32>::new(plan, opts.seed.wrapping_add(1));
        master.params = crate::mem::Aligned::from_slice(64, &params);
        let threads = threads.max(1);
        let distributed = opts.cluster.as_ref().filter(|c| c.size() > 1);
        // The first worker's number among every process's workers.
        let first = distributed.map_or(0, |c| c.rank() * threads);
        // Threads that share each product run the master alone; threads that share the
        // batch are workers with a memory each.
        let products = opts.splits_products(plan, threads);
        // A single process's workers plan for their share of a batch only.
        let worker_plan = opts
            .worker_plan
            .clone()
            .filter(|w| distributed.is_none() && w.max_batch >= worker_rows(plan.max_batch, threads));
        let wplan = worker_plan.as_deref().unwrap_or(plan);
        let workers: Vec<Exec<f32>> = if !products && (threads > 1 || distributed.is_some()) {
            // Workers read the master's parameters; they need no copy of their own.
            (0..threads)
                .map(|i| {
                    let mut w = Exec::<f32>::new(wplan, opts.seed.wrapping_add(2 + (first + i) as u64));
                    w.params = crate::mem::aligned(0);
                    w
                })
                .collect()
        } else {
            Vec::new()
        };
        if !workers.is_empty() {
            // The workers run the batches: the master keeps the weights, and takes an arena
            // only for a batch too small to share.
            master.release_memory();
        }
        let team = (threads > 1).then(|| super::Team::new(threads).ok()).flatten().map(std::sync::Arc::new);
        if products {
            master.team = team.clone();
        }
        let mut opt = Optimizer::new(&plan.params, opts.optimizer, opts.l1, opts.l2, opts.max_norm, opts.ema);
        opt.clip = opts.clip;
        opt.accumulate = opts.accumulate.max(1);
        opt.team = team.clone();
        let cluster = distributed.map(|c| Distributed {
            cluster: c.clone(),
            send: vec![0.0; plan.params_len + EXTRA],
            recv: vec![0.0; plan.params_len + EXTRA],
            stop_asked: false,
            stop_agreed: false,
            shared_steps: 0,
            reduce_time: std::time::Duration::ZERO,
        });
        // What the ops that made the steps say (a plan built by hand has no facts: no meetings).
        let meetings = plan.facts.iter().map(|f| f.meeting).filter(|&n| n > 0).collect();
        Stepper { plan, worker_plan, master, workers, team, opt, cluster, meetings }
    }

    /// The step's threads (none: one thread).
    pub fn team(&self) -> Option<&super::Team> {
        self.team.as_deref()
    }

    /// The rows of a batch of `rows` that this process reads and computes: all of them, or
    /// in a distributed run its share (all of them when the batch is too small to share,
    /// as `--threads` does not split it either).
    pub fn local_rows(&self, rows: usize) -> std::ops::Range<usize> {
        match &self.cluster {
            Some(d) => {
                let parts = d.cluster.size().min(rows / MIN_ROWS_PER_WORKER);
                if parts < 2 {
                    return 0..rows;
                }
                let share = rows.div_ceil(parts);
                let start = (d.cluster.rank() * share).min(rows);
                start..(start + share).min(rows)
            }
            None => 0..rows,
        }
    }

    /// In a distributed run: the steps whose gradients were shared so far, and the seconds
    /// this process spent in their all-reduce (with the wait for the slowest process).
    pub fn communication(&self) -> Option<(usize, f64)> {
        self.cluster.as_ref().map(|d| (d.shared_steps, d.reduce_time.as_secs_f64()))
    }

    /// Whether the step is shared with other processes.
    pub fn is_distributed(&self) -> bool {
        self.cluster.is_some()
    }

    /// In a distributed run: asks every process to stop; they all stop after the same
    /// step, the next one whose gradients are shared ([`Stepper::stop_agreed`]).
    pub fn ask_stop(&mut self) {
        if let Some(d) = &mut self.cluster {
            d.stop_asked = true;
        }
    }

    /// In a distributed run: whether some process asked to stop at the last step (the same
    /// answer on every process). Alone: never.
    pub fn stop_agreed(&self) -> bool {
        self.cluster.as_ref().is_some_and(|d| d.stop_agreed)
    }

    /// Where every dropout generator is (the master's, then each worker's — in a
    /// distributed run, every process's workers in rank order: a collective call).
    pub fn rng_positions(&self) -> Vec<u128> {
        let local = std::iter::once(&self.master).chain(&self.workers).map(Exec::rng_position);
        let Some(d) = &self.cluster else { return local.collect() };
        // The master runs the same steps everywhere; the workers differ.
        let mine: Vec<u64> = self.workers.iter().flat_map(|w| split_u128(w.rng_position())).collect();
        let all = d.cluster.0.all_gather(&mine);
        let mut out = vec![self.master.rng_position()];
        out.extend(all.chunks_exact(2).map(|c| (u128::from(c[0]) << 64) | u128::from(c[1])));
        out
    }

    /// Moves the dropout generators to positions from [`Stepper::rng_positions`] (of a
    /// stepper with as many workers).
    pub fn set_rng_positions(&mut self, pos: &[u128]) -> bool {
        let (processes, first) = self.cluster.as_ref().map_or((1, 0), |d| (d.cluster.size(), d.cluster.rank()));
        let per = self.workers.len();
        if pos.len() != 1 + per * processes {
            return false;
        }
        self.master.set_rng_position(pos[0]);
        let mine = &pos[1 + first * per..1 + (first + 1) * per];
        for (e, &p) in self.workers.iter_mut().zip(mine) {
            e.set_rng_position(p);
        }
        true
    }

    /// Starts new streams: every carried recurrent state becomes zero (in every worker).
    pub fn reset_state(&mut self) {
        self.master.reset_state(self.plan);
        let wplan = self.worker_plan.as_deref().unwrap_or(self.plan);
        for w in &mut self.workers {
            w.reset_state(wplan);
        }
    }

    /// Updates with the batches' gradients accumulated since the last update, if any
    /// (`accumulate = k` at an epoch's end).
    pub fn flush(&mut self) {
        self.opt.flush(&mut self.master.params);
    }

    /// Starts keeping each step's time (`on`), from zero, or stops.
    pub fn profile(&mut self, on: bool) {
        let n = self.plan.steps.len();
        for e in std::iter::once(&mut self.master).chain(self.workers.iter_mut()) {
            e.timings = on.then(|| crate::profile::Timings::new(n));
        }
    }

    /// Each step's time since [`Stepper::profile`] started it, as the calling thread saw it
    /// (the first worker's share, when workers share the batch: the others run theirs at the
    /// same time), the update's slot holding the gradients' average and the optimizer's time.
    pub fn timings(&self) -> Option<&crate::profile::Timings> {
        match self.workers.first().and_then(|w| w.timings.as_ref()) {
            Some(t) if t.runs > 0 => Some(t),
            _ => self.master.timings.as_ref(),
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
        self.master.params.to_vec()
    }

    /// One step on `rows` examples (`x` row-major, `y` the targets). Returns the mean loss.
    pub fn step(&mut self, x: &[f32], y: &[f32], rows: usize) -> Result<f64, ExecError> {
        self.step_sequences(x, y, &[], rows)
    }

    /// One step on `rows` sequences of the given lengths (empty: every sequence as long as
    /// the plan's). The mean loss is over the rows that count: the examples, or for an output
    /// at every step, the steps inside the sequences.
    pub fn step_sequences(&mut self, x: &[f32], y: &[f32], lengths: &[usize], rows: usize) -> Result<f64, ExecError> {
        // What this batch's mean gradient counts for when batches accumulate.
        self.opt.weight = self.weight(lengths, 0, rows) as f64;
        if self.cluster.is_some() {
            let local = self.local_rows(rows);
            let (xc, yc) = self.cols();
            let (xs, ys) = (&x[local.start * xc..local.end * xc], &y[local.start * yc..local.end * yc]);
            return self.step_local(xs, ys, lengths, rows);
        }
        let plan = self.plan;
        let workers = self.workers.len().min(rows / MIN_ROWS_PER_WORKER);
        let (Some(team), true) = (&self.team, workers >= 2) else {
            self.master.ensure_memory(plan);
            self.master.set_lengths(lengths);
            return Ok(self.master.run_on(plan, rows, &[x], y, Some(&mut self.opt))?.unwrap_or(0.0));
        };
        let total = self.weight(lengths, 0, rows).max(1);
        let workers = &mut self.workers[..workers];
        let (master, opt) = (&mut self.master, &mut self.opt);
        let meet = (!self.meetings.is_empty()).then_some(None);
        let batch = Batch { x, y, lengths, rows, total, offset: 0, batch_total: total };
        let wplan = self.worker_plan.as_deref().unwrap_or(plan);
        let (loss, shares) = shared_gradients((plan, wplan), workers, team, &master.params, batch, meet)?;
        // The mean gradient, Σ (countᵢ/count)·gradᵢ.
        let started = workers[0].timings.is_some().then(crate::time::Instant::now);
        let worker_grads: Vec<&[f32]> = workers.iter().map(|w| w.grads.as_slice()).collect();
        super::parallel::average_gradients(team, &mut master.grads, &worker_grads, &shares);
        opt.update(&mut master.params, &master.grads);
        // (The first worker's timings are the step's: its share ran on the calling thread.)
        if let (Some(t), Some(s)) = (workers[0].timings.as_mut(), started) {
            t.add_update(s.elapsed().as_secs_f64());
        }
        Ok(loss)
    }

    /// The values per row of the input and of the target.
    fn cols(&self) -> (usize, usize) {
        (self.plan.inputs[0].cols, self.plan.target.map_or(0, |(t, _)| t.cols))
    }

    /// What rows `start..start + n` count for in the mean loss ([`weight`]).
    fn weight(&self, lengths: &[usize], start: usize, n: usize) -> usize {
        weight(self.plan, lengths, start, n)
    }

    /// A distributed step whose `x` and `y` hold only this process's rows
    /// ([`Stepper::local_rows`] of `rows`); `lengths` are the whole batch's. Every process
    /// must call it with the same `rows`.
    pub fn step_local(&mut self, x: &[f32], y: &[f32], lengths: &[usize], rows: usize) -> Result<f64, ExecError> {
        let plan = self.plan;
        let Some(size) = self.cluster.as_ref().map(|d| d.cluster.size()) else {
            return self.step_sequences(x, y, lengths, rows);
        };
        // What this batch's mean gradient counts for when batches accumulate.
        self.opt.weight = self.weight(lengths, 0, rows) as f64;
        if size.min(rows / MIN_ROWS_PER_WORKER) < 2 {
            // Too small to share: every process takes the same whole step (as one thread would).
            self.master.ensure_memory(plan);
            self.master.set_lengths(lengths);
            return Ok(self.master.run_on(plan, rows, &[x], y, Some(&mut self.opt))?.unwrap_or(0.0));
        }
        let local = self.local_rows(rows);
        let total = self.weight(lengths, 0, rows).max(1);
        let (start, n) = (local.start, local.len());
        let mine = self.weight(lengths, start, n);
        let p = self.master.params.len();
        let Some(d) = self.cluster.as_mut() else { return Ok(0.0) };
        let mut contribution = 0.0;
        if n == 0 {
            d.send[..p].fill(0.0);
            super::peers::sit_out(&d.cluster, &self.meetings);
        } else {
            // This process's share, split over its threads as `--threads` splits a batch; its
            // gradient weighted by its share of the batch, Σ (countᵢ/count)·gradᵢ as the
            // threads' average forms it (one product per worker).
            let lens = lengths.get(start..start + n).unwrap_or(&[]);
            let scale = mine as f32 / total as f32;
            let threads = self.workers.len().min(n / MIN_ROWS_PER_WORKER);
            let loss = match &self.team {
                Some(team) if threads >= 2 => {
                    let workers = &mut self.workers[..threads];
                    let (params, send) = (&self.master.params, &mut d.send[..p]);
                    let meet = (!self.meetings.is_empty()).then(|| Some(d.cluster.clone()));
                    let batch =
                        Batch { x, y, lengths: lens, rows: n, total: mine.max(1), offset: start, batch_total: total };
                    let (loss, shares) = shared_gradients((plan, plan), workers, team, params, batch, meet)?;
                    let grads: Vec<&[f32]> = workers.iter().map(|w| w.grads.as_slice()).collect();
                    let shares: Vec<f32> = shares.iter().map(|s| s * scale).collect();
                    super::parallel::average_gradients(team, send, &grads, &shares);
                    loss
                }
                _ => {
                    let w = &mut self.workers[0];
                    w.set_lengths(lens);
                    if !self.meetings.is_empty() {
                        w.peers = super::peers::seats(1, Some(d.cluster.clone())).pop().map(|s| s as Arc<dyn Sum>);
                    }
                    w.share = scale as f64;
                    let l = w.run_shared(plan, n, &self.master.params, &[x], y).map_err(|e| e.shifted(start));
                    (w.peers, w.share) = (None, 1.0);
                    let l = l?;
                    d.send[..p].iter_mut().zip(w.grads.iter()).for_each(|(s, &g)| *s = scale * g);
                    l.unwrap_or(0.0)
                }
            };
            contribution = loss * mine as f64 / total as f64;
        }
        // The loss travels as two floats (its f32 rounding and the rest), the stop requests as
        // a count.
        let hi = contribution as f32;
        d.send[p] = hi;
        d.send[p + 1] = (contribution - f64::from(hi)) as f32;
        d.send[p + 2] = f32::from(u8::from(d.stop_asked));
        let started = crate::time::Instant::now();
        d.cluster.0.all_reduce_sum(&d.send, &mut d.recv);
        d.reduce_time += started.elapsed();
        d.shared_steps += 1;
        d.stop_agreed = d.recv[p + 2] > 0.0;
        let loss = f64::from(d.recv[p]) + f64::from(d.recv[p + 1]);
        self.master.grads.copy_from_slice(&d.recv[..p]);
        self.opt.update(&mut self.master.params, &self.master.grads);
        Ok(loss)
    }
}

/// A batch (or a process's share of one) that workers share: `rows` rows of `x` and `y`,
/// their sequence lengths, their weight `total` in the mean loss, their place `offset` in
/// the whole batch (for error messages), and the whole batch's weight `batch_total`.
struct Batch<'a> {
    x: &'a [f32],
    y: &'a [f32],
    lengths: &'a [usize],
    rows: usize,
    total: usize,
    offset: usize,
    batch_total: usize,
}

/// Each of `workers` computes the gradient of its share of the batch with the weights
/// `params`; returns the mean loss (over `b.total`) and each worker's share of it, as the
/// weights of the gradients' average. With `meet`, the workers meet for the plan's sums over
/// the whole batch (then over the processes of the cluster, if one is given). The workers run
/// `wplan`: `plan` planned for their share.
fn shared_gradients(
    (plan, wplan): (&Plan, &Plan),
    workers: &mut [Exec<f32>],
    team: &super::Team,
    params: &[f32],
    b: Batch,
    meet: Option<Option<super::Cluster>>,
) -> Result<(f64, Vec<f32>), ExecError> {
    let (x, y, lengths, rows) = (b.x, b.y, b.lengths, b.rows);
    let x_cols = plan.inputs[0].cols;
    let y_cols = plan.target.map_or(0, |(t, _)| t.cols);
    let share = rows.div_ceil(workers.len().max(1));
    let seats: Vec<Option<Arc<super::peers::Seat>>> = match meet {
        Some(cluster) => super::peers::seats(workers.len(), cluster).into_iter().map(Some).collect(),
        None => vec![None; workers.len()],
    };
    // Worker i computes share i (on thread i of the team), whatever the timing.
    let mut results: Vec<Result<(usize, f64), ExecError>> = (0..workers.len()).map(|_| Ok((0, 0.0))).collect();
    let jobs: Vec<_> = workers.iter_mut().zip(results.iter_mut()).zip(seats).collect();
    team.run(jobs, |i, ((w, result), seat)| {
        let start = (i * share).min(rows);
        let n = share.min(rows - start);
        if n == 0 {
            w.grads.fill(0.0);
            if let Some(s) = &seat {
                s.leave();
            }
            return;
        }
        let (xs, ys) = (&x[start * x_cols..(start + n) * x_cols], &y[start * y_cols..(start + n) * y_cols]);
        w.set_lengths(lengths.get(start..start + n).unwrap_or(&[]));
        w.share = weight(plan, lengths, start, n) as f64 / b.batch_total.max(1) as f64;
        w.peers = seat.clone().map(|s| s as Arc<dyn Sum>);
        *result = w
            .run_shared(wplan, n, params, &[xs], ys)
            .map_err(|e| e.shifted(b.offset + start))
            .map(|l| (weight(plan, lengths, start, n), l.unwrap_or(0.0)));
        if let (Err(_), Some(s)) = (&*result, &seat) {
            s.leave();
        }
        (w.peers, w.share) = (None, 1.0);
    });
    let mut loss = 0.0;
    let mut shares = Vec::with_capacity(workers.len());
    for r in results {
        let (n, l) = r?;
        loss += l * n as f64 / b.total as f64;
        // The mean gradient is Σ (countᵢ/count)·gradᵢ.
        shares.push(n as f32 / b.total as f32);
    }
    Ok((loss, shares))
}

/// What rows `start..start + n` of a batch count for in the mean loss: the examples, or for
/// an output at every step, the steps inside their sequences.
fn weight(plan: &Plan, lengths: &[usize], start: usize, n: usize) -> usize {
    if plan.sequence.is_some_and(|s| s.per_step_output) && !lengths.is_empty() {
        lengths[start..start + n].iter().sum()
    } else {
        n
    }
}

fn split_u128(v: u128) -> [u64; 2] {
    [(v >> 64) as u64, v as u64]
}
