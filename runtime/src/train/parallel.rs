//! Data parallelism for generated models: several copies of a model (workers) each compute
//! the gradients of their share of a batch with the shared weights; the gradients are
//! averaged (weighted by rows) and one update is applied. A fixed worker count gives the same
//! result on every run.

use super::Team;
use crate::interp::{ExecError, Updater};
use std::sync::Arc;

/// What a generated model offers a data-parallel step.
pub trait Worker: Send {
    /// Forward, loss and backward of `rows` rows with the weights `params`; returns the mean
    /// loss and leaves the gradients in [`Worker::worker_gradients`].
    fn loss_and_gradients_with(&mut self, params: &[f32], x: &[f32], y: &[f32], rows: usize) -> Result<f64, ExecError>;
    /// The gradients of the last call.
    fn worker_gradients(&self) -> &[f32];
    /// Sets each example's sequence length for the next calls (empty: all full length).
    fn set_lengths(&mut self, lengths: &[usize]);
    /// Sets the workers this one shares the next call's batch with (`None`: alone) and its
    /// weight in the batch's mean loss, for steps that sum over the whole batch.
    fn set_peers(&mut self, peers: Option<Arc<dyn crate::mem::Sum>>, share: f64);
    /// Whether the model's output has a row per step (its mean loss is over steps).
    fn per_step_output(&self) -> bool;
}

/// The data-parallel step: the batch split among workers, their gradients summed in a fixed order (the same result for a given thread count every time).
pub struct DataParallel<W> {
    workers: Vec<W>,
    /// The workers' meeting, kept from step to step while its size fits and no one left it.
    seats: Vec<Arc<super::peers::Seat>>,
    grads: Vec<f32>,
    team: Arc<Team>,
    x_cols: usize,
    y_cols: usize,
}

/// Below this many rows per worker, a batch is not split further.
const MIN_ROWS: usize = 16;

impl<W: Worker> DataParallel<W> {
    /// `workers` copies of the model (one per thread); `x_cols` and `y_cols` are the values
    /// per row of the input and the target.
    pub fn new(workers: Vec<W>, params: usize, x_cols: usize, y_cols: usize) -> Result<Self, String> {
        let threads = workers.len().max(1);
        let team = Arc::new(Team::new(threads)?);
        Ok(DataParallel { workers, seats: Vec::new(), grads: vec![0.0; params], team, x_cols, y_cols })
    }

    /// The threads, to spread the optimizer's update over them too.
    pub fn team(&self) -> Arc<Team> {
        self.team.clone()
    }

    /// One step on `rows` rows: gradients in parallel, averaged, then `optimizer`'s update of
    /// `params`. Returns the mean loss.
    pub fn step(
        &mut self,
        params: &mut [f32],
        optimizer: &mut (impl Updater<f32> + Send),
        x: &[f32],
        y: &[f32],
        rows: usize,
    ) -> Result<f64, ExecError> {
        self.step_sequences(params, optimizer, x, y, &[], rows)
    }

    /// [`DataParallel::step`] on sequences of the given lengths (empty: all full length).
    pub fn step_sequences(
        &mut self,
        params: &mut [f32],
        optimizer: &mut (impl Updater<f32> + Send),
        x: &[f32],
        y: &[f32],
        lengths: &[usize],
        rows: usize,
    ) -> Result<f64, ExecError> {
        let used = self.workers.len().min((rows / MIN_ROWS).max(1));
        let share = rows.div_ceil(used);
        let (x_cols, y_cols) = (self.x_cols, self.y_cols);
        let per_step = !lengths.is_empty() && self.workers.first().is_some_and(|w| w.per_step_output());
        let weight = |start: usize, n: usize| if per_step { lengths[start..start + n].iter().sum() } else { n };
        let total = weight(0, rows).max(1);
        let (workers, team, out) = (&mut self.workers[..used], &*self.team, &mut self.grads);
        let shared: &[f32] = params;
        // Worker i computes share i (on thread i of the team), whatever the timing.
        let mut results: Vec<Result<(usize, f64), ExecError>> = (0..used).map(|_| Ok((0, 0.0))).collect();
        // Every worker has rows (a share is at least `MIN_ROWS`), so each comes to every
        // meeting of the step; the meeting is made again only for another count of workers
        // or after a worker left it.
        if self.seats.len() != used || self.seats.iter().any(|s| s.is_broken()) {
            self.seats = super::peers::seats(used, None);
        }
        let seats = &self.seats;
        let jobs: Vec<_> = workers.iter_mut().zip(results.iter_mut()).zip(seats).collect();
        team.run(jobs, |i, ((w, result), seat)| {
            let start = (i * share).min(rows);
            let n = share.min(rows - start);
            if n == 0 {
                seat.leave();
                return;
            }
            let xs = &x[start * x_cols..(start + n) * x_cols];
            let ys = &y[start * y_cols..(start + n) * y_cols];
            w.set_lengths(lengths.get(start..start + n).unwrap_or(&[]));
            let part = if used > 1 { Some(seat.clone() as Arc<dyn crate::mem::Sum>) } else { None };
            w.set_peers(part, weight(start, n) as f64 / total as f64);
            *result = w
                .loss_and_gradients_with(shared, xs, ys, n)
                .map_err(|e| e.shifted(start))
                .map(|l| (weight(start, n), l));
            if result.is_err() {
                seat.leave();
            }
            w.set_peers(None, 1.0);
        });
        let mut loss = 0.0;
        let mut weights = Vec::with_capacity(used);
        for r in results {
            let (n, l) = r?;
            loss += l * n as f64 / total as f64;
            weights.push(n as f32 / total as f32);
        }
        let grads: Vec<&[f32]> = workers.iter().map(|w| w.worker_gradients()).collect();
        average_gradients(team, out, &grads, &weights);
        optimizer.update(params, out);
        Ok(loss)
    }
}

/// `out = Σ weightsᵢ · gradsᵢ`, summed in parallel over chunks of the parameters, in a fixed
/// order (so a given worker count always gives the same bits).
pub fn average_gradients(team: &Team, out: &mut [f32], grads: &[&[f32]], weights: &[f32]) {
    let chunk = out.len().div_ceil(team.threads()).max(1);
    let chunks: Vec<&mut [f32]> = out.chunks_mut(chunk).collect();
    team.run(chunks, |c, g| crate::kernels::gemm::dispatch(WeightedSum { out: g, at: c * chunk, grads, weights }));
}

/// One chunk of [`average_gradients`], compiled for AVX2 too (elementwise, so the same bits).
struct WeightedSum<'a> {
    out: &'a mut [f32],
    at: usize,
    grads: &'a [&'a [f32]],
    weights: &'a [f32],
}

impl pulp::WithSimd for WeightedSum<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let WeightedSum { out, at, grads, weights } = self;
        let len = out.len();
        out.fill(0.0);
        for (wg, &s) in grads.iter().zip(weights) {
            if s > 0.0 {
                out.iter_mut().zip(&wg[at..at + len]).for_each(|(g, &v)| *g += s * v);
            }
        }
    }
}
