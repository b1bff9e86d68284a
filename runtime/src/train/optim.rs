//! The update step: gradient plus regularization, then SGD (with momentum or Nesterov
//! momentum) or Adam, then the max-norm projection and the weight average.

use super::OptimizerKind;
use crate::interp::Updater;
use crate::plan::Param;
use crate::Float;

/// The regularization penalty `Σ λ₂/2 ‖w‖² + λ₁ |w|` over weights (biases exempt), and its
/// gradient added into `grads`.
pub fn regularization<T: Float>(table: &[Param], params: &[T], l1: f64, l2: f64, grads: Option<&mut [T]>) -> f64 {
    let mut total = 0.0;
    let mut grads = grads;
    for p in table.iter().filter(|p| p.regularized()) {
        for i in p.buf.range() {
            let w = params[i].to_f64();
            total += 0.5 * l2 * w * w + l1 * w.abs();
            if let Some(g) = grads.as_deref_mut() {
                let sign = if w > 0.0 {
                    1.0
                } else if w < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                g[i] += T::from_f64(l2 * w + l1 * sign);
            }
        }
    }
    total
}

/// ‖Δw‖ / ‖w‖ of one weight tensor at one update (healthy near 1e-3).
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateRatio {
    /// The weight tensor.
    pub name: String,
    /// ‖Δw‖ / ‖w‖.
    pub ratio: f64,
}

/// An optimizer's state between updates ([`Optimizer::state`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OptState<T> {
    /// Momentum velocity, or Adam's first moment.
    pub m: Vec<T>,
    /// Adam's second moment (empty for SGD).
    pub v: Vec<T>,
    /// Adam's step count.
    pub t: i32,
    /// The weight average, when one is kept and an update has run.
    pub average: Option<Vec<T>>,
}

/// The update rule, with its state, regularization, max-norm and the weight average.
pub struct Optimizer<T> {
    /// The parameter tensors, for what is done per tensor (biases exempt, max-norm per row).
    table: Vec<Param>,
    /// The rule and its settings.
    pub kind: OptimizerKind,
    /// The learning rate in force (schedules change it between epochs).
    pub lr: f64,
    l1: f64,
    l2: f64,
    max_norm: Option<f64>,
    ema: Option<f64>,
    /// Momentum velocity, or Adam's first moment.
    m: Vec<T>,
    /// Adam's second moment.
    v: Vec<T>,
    t: i32,
    segments: Vec<Segment>,
    /// The threads `segments` are cut for.
    parts: usize,
    /// Scratch for the gradient plus regularization.
    grad: Vec<T>,
    /// Spreads the update over threads, when set.
    pub team: Option<std::sync::Arc<super::Team>>,
    /// The weight average, once the first update has run.
    pub average: Option<Vec<T>>,
    /// Gradient clipping by global norm: before each update the data gradients are scaled
    /// by `min(1, clip / (‖g‖ + 1e-6))`, ‖g‖ over every parameter (PyTorch's
    /// `clip_grad_norm_`); the regularization terms are added after.
    pub clip: Option<f64>,
    /// Set before an update to measure ‖Δw‖/‖w‖ per weight tensor; measurements add up
    /// until [`Optimizer::take_ratios`] averages them.
    pub track_ratios: bool,
    ratio_sums: Vec<f64>,
    ratio_count: usize,
    /// Gradient accumulation (`accumulate = k`): every `k` calls of `update` make one update
    /// with the weighted mean of their gradients (1: every call updates).
    pub accumulate: usize,
    /// What the next gradient counts for in that mean: the rows (or sequence steps) its loss
    /// was the mean over. Set before each `update`; 1 if never set.
    pub weight: f64,
    /// The weighted sum of the gradients since the last update, their total weight and count.
    pending: Vec<T>,
    pending_weight: f64,
    pending_count: usize,
    /// The batches the update being made stands for (a layer's count of batches grows by it).
    batches: usize,
}

impl<T: Float> Optimizer<T> {
    /// An optimizer for the parameter tensors `table`.
    pub fn new(
        table: &[Param],
        kind: OptimizerKind,
        l1: f64,
        l2: f64,
        max_norm: Option<f64>,
        ema: Option<f64>,
    ) -> Self {
        let n = table.iter().map(|p| p.buf.offset + p.buf.len).max().unwrap_or(0);
        Optimizer {
            table: table.to_vec(),
            kind,
            lr: kind.lr(),
            l1,
            l2,
            max_norm,
            ema,
            m: vec![T::ZERO; n],
            v: if matches!(kind, OptimizerKind::Adam { .. }) { vec![T::ZERO; n] } else { Vec::new() },
            t: 0,
            segments: segments(table, 1),
            parts: 1,
            grad: vec![T::ZERO; n],
            team: None,
            average: None,
            clip: None,
            track_ratios: false,
            ratio_sums: Vec::new(),
            ratio_count: 0,
            accumulate: 1,
            weight: 1.0,
            pending: Vec::new(),
            pending_weight: 0.0,
            pending_count: 0,
            batches: 1,
        }
    }

    /// Updates with the gradients accumulated so far, if any (at an epoch's end, when its
    /// batches were not a multiple of `accumulate`).
    pub fn flush(&mut self, params: &mut [T]) {
        if self.pending_count > 0 {
            self.apply_pending(params);
        }
    }

    /// One update with the weighted mean of the pending gradients; nothing pending after.
    fn apply_pending(&mut self, params: &mut [T]) {
        self.batches = self.pending_count.max(1);
        let mut mean = std::mem::take(&mut self.pending);
        let inv = T::from_f64(1.0 / self.pending_weight.max(f64::MIN_POSITIVE));
        mean.iter_mut().for_each(|g| *g *= inv);
        self.step(params, &mean);
        mean.iter_mut().for_each(|g| *g = T::ZERO);
        self.pending = mean;
        (self.pending_weight, self.pending_count) = (0.0, 0);
        self.batches = 1;
    }

    /// The mean ‖Δw‖/‖w‖ per weight tensor over the tracked updates since the last call.
    pub fn take_ratios(&mut self) -> Vec<UpdateRatio> {
        let n = self.ratio_count.max(1) as f64;
        let out = self
            .table
            .iter()
            .filter(|p| p.regularized())
            .zip(&self.ratio_sums)
            .map(|(p, s)| UpdateRatio { name: p.name.clone(), ratio: s / n })
            .collect();
        self.ratio_sums.clear();
        self.ratio_count = 0;
        out
    }

    /// What the optimizer carries from one update to the next (momentum or Adam's moments,
    /// its step count, the weight average), to resume training exactly.
    pub fn state(&self) -> OptState<T> {
        OptState { m: self.m.clone(), v: self.v.clone(), t: self.t, average: self.average.clone() }
    }

    /// Restores a state from [`Optimizer::state`] of an optimizer of the same tensors;
    /// `false` when the sizes do not fit.
    pub fn set_state(&mut self, s: OptState<T>) -> bool {
        let n = self.m.len();
        let fits = s.m.len() == n
            && s.v.len() == self.v.len()
            && s.average.as_ref().is_none_or(|a| a.len() == n)
            && (s.average.is_none() || self.ema.is_some());
        if fits {
            (self.m, self.v, self.t, self.average) = (s.m, s.v, s.t, s.average);
        }
        fits
    }

    /// The weights to evaluate with: the average when one is kept, else `params`.
    pub fn eval_weights<'a>(&'a self, params: &'a [T]) -> &'a [T] {
        self.average.as_deref().unwrap_or(params)
    }
}

/// A stretch of the parameter store inside one tensor, updated as one piece of work.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: usize,
    end: usize,
    /// Weights are regularized; biases are not.
    regularized: bool,
    /// The thread (of [`Optimizer::team`]) that updates it.
    owner: usize,
}

/// Largest piece of one tensor updated as a unit.
const SEGMENT: usize = 16 * 1024;

/// The parameter store in segments, for `parts` threads: thread `t` updates, of every tensor,
/// the rows (first dimension: a dense layer's outputs, a convolution's filters)
/// [`crate::kernels::dense::share`]`(rows, t, parts)` — the rows whose products and gradients
/// it computes when a dense layer is split over the threads, so that no weight moves between
/// cores.
fn segments(table: &[Param], parts: usize) -> Vec<Segment> {
    let mut out = Vec::new();
    // State is the layer's own business: no segment, so no update.
    for p in table.iter().filter(|p| p.trained()) {
        let rows = p.shape.first().copied().unwrap_or(1).max(1);
        let row_len = if p.buf.len % rows == 0 { p.buf.len / rows } else { 0 };
        for owner in 0..parts {
            let (from, to) = if row_len == 0 {
                // Not rows of a matrix: the first thread takes it whole.
                if owner == 0 {
                    (0, p.buf.len)
                } else {
                    (0, 0)
                }
            } else {
                let r = crate::kernels::dense::share(rows, owner, parts);
                (r.start * row_len, r.end * row_len)
            };
            let mut at = p.buf.offset + from;
            while at < p.buf.offset + to {
                let end = (at + SEGMENT).min(p.buf.offset + to);
                out.push(Segment { start: at, end, regularized: p.regularized(), owner });
                at = end;
            }
        }
    }
    out
}

/// Cuts `v` into the segments' slices (segments are sorted and do not overlap).
fn cut<'a, T>(mut v: &'a mut [T], segs: &[Segment]) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(segs.len());
    let mut at = 0;
    for s in segs {
        let rest = std::mem::take(&mut v);
        let (_, rest) = rest.split_at_mut(s.start - at);
        let (mine, rest) = rest.split_at_mut(s.end - s.start);
        out.push(mine);
        v = rest;
        at = s.end;
    }
    out
}

/// The coefficients of one update, shared by every segment.
#[derive(Clone, Copy)]
struct Coeffs<T> {
    kind: OptimizerKind,
    lr: T,
    l1: T,
    l2: T,
    mu: T,
    adam: (T, T, T, T, T),
    /// AdamW's factor on every weight before the step (`1 − lr·weight_decay`; 1: none).
    keep: T,
    ema: Option<(T, T)>,
    /// The clipping factor of the data gradients (1: none).
    scale: T,
}

/// One segment's update: the gradient plus regularization, the optimizer's step, the
/// average. The gradient's L2 term is added inside the step's loop (one pass over the
/// segment: the update was a tenth of the MLP's step in three passes); a scaled (clipped) or
/// L1-regularized gradient is formed first in `g`, a scratch copy, as before — the same
/// operations in the same order either way.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn update_segment<T: Float>(
    c: &Coeffs<T>,
    reg: bool,
    w: &mut [T],
    grad: &[T],
    g: &mut [T],
    m: &mut [T],
    v: &mut [T],
    avg: &mut [T],
) {
    let l1 = reg && c.l1 != T::ZERO;
    let mut l2 = (reg && c.l2 != T::ZERO).then_some(c.l2);
    let src: &[T] = if c.scale != T::ONE || l1 {
        g.copy_from_slice(grad);
        if c.scale != T::ONE {
            g.iter_mut().for_each(|g| *g *= c.scale);
        }
        if let Some(l2) = l2.take() {
            g.iter_mut().zip(w.iter()).for_each(|(g, &w)| *g += l2 * w);
        }
        if l1 {
            g.iter_mut().zip(w.iter()).for_each(|(g, &w)| {
                if w > T::ZERO {
                    *g += c.l1
                } else if w < T::ZERO {
                    *g -= c.l1
                }
            });
        }
        g
    } else {
        grad
    };
    let (lr, mu) = (c.lr, c.mu);
    // The loop of each step, once with the L2 term and once without (each vectorized).
    macro_rules! each {
        (|$w:ident, $m:ident, $v:ident, $g:ident| $body:block) => {
            match l2 {
                Some(l2) => {
                    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(src) {
                        let g = g + l2 * *w;
                        let ($w, $m, $v, $g) = (w, m, v, g);
                        $body
                    }
                }
                None => {
                    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(src) {
                        let ($w, $m, $v, $g) = (w, m, v, g);
                        $body
                    }
                }
            }
        };
        (|$w:ident, $m:ident, $g:ident| $body:block) => {
            match l2 {
                Some(l2) => {
                    for ((w, m), &g) in w.iter_mut().zip(m.iter_mut()).zip(src) {
                        let g = g + l2 * *w;
                        let ($w, $m, $g) = (w, m, g);
                        $body
                    }
                }
                None => {
                    for ((w, m), &g) in w.iter_mut().zip(m.iter_mut()).zip(src) {
                        let ($w, $m, $g) = (w, m, g);
                        $body
                    }
                }
            }
        };
    }
    match c.kind {
        OptimizerKind::Sgd { momentum, nesterov: true, .. } if momentum > 0.0 => each!(|w, m, g| {
            let prev = *m;
            *m = mu * prev - lr * g;
            *w += (T::ONE + mu) * *m - mu * prev;
        }),
        OptimizerKind::Sgd { momentum, .. } if momentum > 0.0 => each!(|w, m, g| {
            *m = mu * *m - lr * g;
            *w += *m;
        }),
        OptimizerKind::Sgd { .. } => match l2 {
            Some(l2) => w.iter_mut().zip(src).for_each(|(w, &g)| *w -= lr * (g + l2 * *w)),
            None => w.iter_mut().zip(src).for_each(|(w, &g)| *w -= lr * g),
        },
        OptimizerKind::Adam { .. } => {
            let (b1, b2, c1, c2, eps) = c.adam;
            if reg && c.keep != T::ONE {
                w.iter_mut().for_each(|w| *w *= c.keep);
            }
            each!(|w, m, v, g| {
                *m = b1 * *m + (T::ONE - b1) * g;
                *v = b2 * *v + (T::ONE - b2) * g * g;
                *w -= lr * (*m * c1) / ((*v * c2).sqrt() + eps);
            })
        }
    }
    if let Some((d, e)) = c.ema {
        avg.iter_mut().zip(w.iter()).for_each(|(a, &w)| *a = d * *a + e * w);
    }
}

/// [`update_segment`] as `pulp` runs it: compiled again with the instruction set it
/// dispatches to.
struct SegmentUpdate<'a, T> {
    c: &'a Coeffs<T>,
    reg: bool,
    w: &'a mut [T],
    grad: &'a [T],
    g: &'a mut [T],
    m: &'a mut [T],
    v: &'a mut [T],
    a: &'a mut [T],
}

impl<T: Float> pulp::WithSimd for SegmentUpdate<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let SegmentUpdate { c, reg, w, grad, g, m, v, a } = self;
        update_segment(c, reg, w, grad, g, m, v, a);
    }
}

impl<T: Float> Updater<T> for Optimizer<T> {
    fn update(&mut self, params: &mut [T], grads: &[T]) {
        if self.accumulate <= 1 {
            return self.step(params, grads);
        }
        if self.pending.len() != grads.len() {
            self.pending = vec![T::ZERO; grads.len()];
        }
        let w = T::from_f64(self.weight);
        self.pending.iter_mut().zip(grads).for_each(|(a, &g)| *a += w * g);
        self.pending_weight += self.weight;
        self.pending_count += 1;
        if self.pending_count >= self.accumulate {
            self.apply_pending(params);
        }
    }
}

impl<T: Float> Optimizer<T> {
    /// One update with the gradients `grads`.
    fn step(&mut self, params: &mut [T], grads: &[T]) {
        let before: Option<Vec<T>> = self.track_ratios.then(|| params.to_vec());
        let mut coeffs = Coeffs {
            kind: self.kind,
            lr: T::from_f64(self.lr),
            l1: T::from_f64(self.l1),
            l2: T::from_f64(self.l2),
            mu: T::ZERO,
            adam: (T::ZERO, T::ZERO, T::ONE, T::ONE, T::ZERO),
            keep: T::ONE,
            ema: None,
            scale: T::ONE,
        };
        if let Some(clip) = self.clip {
            // Over the trained tensors: a state's slot holds a batch statistic, not a gradient.
            let norm = self
                .table
                .iter()
                .filter(|p| p.trained())
                .flat_map(|p| &grads[p.buf.range()])
                .map(|g| g.to_f64() * g.to_f64())
                .sum::<f64>()
                .sqrt();
            coeffs.scale = T::from_f64((clip / (norm + 1e-6)).min(1.0));
        }
        match self.kind {
            OptimizerKind::Sgd { momentum, .. } => coeffs.mu = T::from_f64(momentum),
            OptimizerKind::Adam { beta1, beta2, eps, weight_decay, .. } => {
                coeffs.keep = T::from_f64(1.0 - self.lr * weight_decay);
                self.t += 1;
                coeffs.adam = (
                    T::from_f64(beta1),
                    T::from_f64(beta2),
                    T::from_f64(1.0 / (1.0 - beta1.powi(self.t))),
                    T::from_f64(1.0 / (1.0 - beta2.powi(self.t))),
                    T::from_f64(eps),
                );
            }
        }
        // The average follows the weights after the max-norm projection, so with max-norm it
        // is taken in its own pass below.
        if let (Some(decay), Some(_), None) = (self.ema, &self.average, self.max_norm) {
            coeffs.ema = Some((T::from_f64(decay), T::from_f64(1.0 - decay)));
        }
        let parts = self.team.as_ref().map_or(1, |t| t.threads());
        if self.parts != parts {
            self.segments = segments(&self.table, parts);
            self.parts = parts;
        }
        let segs = &self.segments;
        let n = params.len();
        let (mut empty_v, mut empty_a) = (Vec::new(), Vec::new());
        let vs = if self.v.len() == n { &mut self.v } else { &mut empty_v };
        let avg = match &mut self.average {
            Some(a) if coeffs.ema.is_some() => a,
            _ => &mut empty_a,
        };
        type Work<'a, T> = (Segment, &'a mut [T], &'a [T], &'a mut [T], &'a mut [T], &'a mut [T], &'a mut [T]);
        let mut work: Vec<Work<T>> = Vec::with_capacity(segs.len());
        let (mut ws, mut ms) = (cut(params, segs).into_iter(), cut(&mut self.m, segs).into_iter());
        let mut gs = cut(&mut self.grad, segs).into_iter();
        let mut vv = if vs.is_empty() { Vec::new() } else { cut(vs, segs) }.into_iter();
        let mut aa = if avg.is_empty() { Vec::new() } else { cut(avg, segs) }.into_iter();
        for s in segs {
            let (Some(w), Some(m), Some(g)) = (ws.next(), ms.next(), gs.next()) else { break };
            work.push((
                *s,
                w,
                &grads[s.start..s.end],
                g,
                m,
                vv.next().unwrap_or_default(),
                aa.next().unwrap_or_default(),
            ));
        }
        // Compiled for AVX2 too, and run so where the processor has it: the update is a tenth
        // of the MLP's step, and elementwise, so every width gives the same bits.
        let run = |(s, w, grad, g, m, v, a): Work<T>| {
            crate::kernels::gemm::dispatch(SegmentUpdate { c: &coeffs, reg: s.regularized, w, grad, g, m, v, a })
        };
        match &self.team {
            Some(team) => {
                // Each thread its own segments (the rows it owns of every tensor).
                let mut bundles: Vec<Vec<Work<T>>> = (0..parts).map(|_| Vec::new()).collect();
                for w in work {
                    bundles[w.0.owner].push(w);
                }
                team.run(bundles, |_, b| b.into_iter().for_each(run));
            }
            None => work.into_iter().for_each(run),
        }
        if let Some(c) = self.max_norm {
            max_norm(&self.table, params, c);
            if let (Some(decay), Some(a)) = (self.ema, &mut self.average) {
                let (d, e) = (T::from_f64(decay), T::from_f64(1.0 - decay));
                a.iter_mut().zip(params.iter()).for_each(|(a, &w)| *a = d * *a + e * w);
            }
        }
        self.update_state(params, grads);
        if self.ema.is_some() && self.average.is_none() {
            self.average = Some(params.to_vec());
        }
        if let Some(before) = before {
            let ratios: Vec<f64> = self
                .table
                .iter()
                .filter(|p| p.regularized())
                .map(|p| {
                    let (mut dw, mut w) = (0.0, 0.0);
                    for i in p.buf.range() {
                        let d = (params[i] - before[i]).to_f64();
                        dw += d * d;
                        w += before[i].to_f64().powi(2);
                    }
                    (dw / w.max(1e-30)).sqrt()
                })
                .collect();
            self.ratio_sums.resize(ratios.len(), 0.0);
            self.ratio_sums.iter_mut().zip(ratios).for_each(|(s, r)| *s += r);
            self.ratio_count += 1;
            self.track_ratios = false;
        }
    }
}

impl<T: Float> Optimizer<T> {
    /// Moves every state toward the batch's value its layer left in the gradient slot
    /// ([`crate::plan::Role::State`]); the weight average, if kept, takes the state as it
    /// now is (running statistics are not averaged: they already are averages).
    fn update_state(&mut self, params: &mut [T], grads: &[T]) {
        for p in &self.table {
            let momentum = match p.role {
                crate::plan::Role::State { momentum, .. } => momentum,
                crate::plan::Role::Count => {
                    let n = T::from_f64(self.batches as f64);
                    params[p.buf.range()].iter_mut().for_each(|c| *c += n);
                    if let Some(a) = &mut self.average {
                        a[p.buf.range()].copy_from_slice(&params[p.buf.range()]);
                    }
                    continue;
                }
                _ => continue,
            };
            if momentum > 0.0 {
                let (m, keep) = (T::from_f64(momentum), T::from_f64(1.0 - momentum));
                for i in p.buf.range() {
                    params[i] = params[i] * keep + m * grads[i];
                }
            }
            if let Some(a) = &mut self.average {
                a[p.buf.range()].copy_from_slice(&params[p.buf.range()]);
            }
        }
    }
}

/// Scales each unit's incoming weight vector (a row of `[out, in]`) down to norm `c` when
/// it is longer.
pub fn max_norm<T: Float>(table: &[Param], params: &mut [T], c: f64) {
    for p in table {
        // Each unit's incoming weights are a contiguous run of `fan_in` values.
        let Some(cols) = p.role.fan_in().filter(|&f| f > 0 && p.buf.len % f == 0) else { continue };
        let rows = p.buf.len / cols;
        for r in 0..rows {
            let row = &mut params[p.buf.offset + r * cols..p.buf.offset + (r + 1) * cols];
            let norm = row.iter().map(|w| w.to_f64().powi(2)).sum::<f64>().sqrt();
            if norm > c {
                let s = T::from_f64(c / norm);
                row.iter_mut().for_each(|w| *w *= s);
            }
        }
    }
}
