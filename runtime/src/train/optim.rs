//! The update step: gradient plus regularization, then SGD (with momentum or Nesterov
//! momentum) or Adam, then the max-norm projection and the weight average.

use super::OptimizerKind;
use crate::interp::Updater;
use crate::plan::Plan;
use crate::Float;

/// The regularization penalty `Σ λ₂/2 ‖w‖² + λ₁ |w|` over weights (biases exempt), and its
/// gradient added into `grads`.
pub fn regularization<T: Float>(plan: &Plan, params: &[T], l1: f64, l2: f64, grads: Option<&mut [T]>) -> f64 {
    let mut total = 0.0;
    let mut grads = grads;
    for p in plan.params.iter().filter(|p| !p.is_bias) {
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
    pub name: String,
    pub ratio: f64,
}

pub struct Optimizer<'p, T> {
    plan: &'p Plan,
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
    grad: Vec<T>,
    /// The weight average, once the first update has run.
    pub average: Option<Vec<T>>,
    /// Set before an update to measure ‖Δw‖/‖w‖ per weight tensor; measurements add up
    /// until [`Optimizer::take_ratios`] averages them.
    pub track_ratios: bool,
    ratio_sums: Vec<f64>,
    ratio_count: usize,
}

impl<'p, T: Float> Optimizer<'p, T> {
    pub fn new(plan: &'p Plan, kind: OptimizerKind, l1: f64, l2: f64, max_norm: Option<f64>, ema: Option<f64>) -> Self {
        let n = plan.params_len;
        Optimizer {
            plan,
            kind,
            lr: kind.lr(),
            l1,
            l2,
            max_norm,
            ema,
            m: vec![T::ZERO; n],
            v: if matches!(kind, OptimizerKind::Adam { .. }) { vec![T::ZERO; n] } else { Vec::new() },
            t: 0,
            grad: vec![T::ZERO; n],
            average: None,
            track_ratios: false,
            ratio_sums: Vec::new(),
            ratio_count: 0,
        }
    }

    /// The mean ‖Δw‖/‖w‖ per weight tensor over the tracked updates since the last call.
    pub fn take_ratios(&mut self) -> Vec<UpdateRatio> {
        let n = self.ratio_count.max(1) as f64;
        let out = self
            .plan
            .params
            .iter()
            .filter(|p| !p.is_bias)
            .zip(&self.ratio_sums)
            .map(|(p, s)| UpdateRatio { name: p.name.clone(), ratio: s / n })
            .collect();
        self.ratio_sums.clear();
        self.ratio_count = 0;
        out
    }

    /// The weights to evaluate with: the average when one is kept, else `params`.
    pub fn eval_weights<'a>(&'a self, params: &'a [T]) -> &'a [T] {
        self.average.as_deref().unwrap_or(params)
    }
}

impl<T: Float> Updater<T> for Optimizer<'_, T> {
    fn update(&mut self, params: &mut [T], grads: &[T]) {
        let before: Option<Vec<T>> = self.track_ratios.then(|| params.to_vec());
        self.grad.copy_from_slice(grads);
        if self.l1 > 0.0 || self.l2 > 0.0 {
            regularization(self.plan, params, self.l1, self.l2, Some(&mut self.grad));
        }
        let lr = T::from_f64(self.lr);
        match self.kind {
            OptimizerKind::Sgd { momentum, nesterov, .. } if momentum > 0.0 => {
                let mu = T::from_f64(momentum);
                for ((w, v), &g) in params.iter_mut().zip(self.m.iter_mut()).zip(&self.grad) {
                    let prev = *v;
                    *v = mu * *v - lr * g;
                    if nesterov {
                        *w += -mu * prev + (T::ONE + mu) * *v;
                    } else {
                        *w += *v;
                    }
                }
            }
            OptimizerKind::Sgd { .. } => {
                for (w, &g) in params.iter_mut().zip(&self.grad) {
                    *w -= lr * g;
                }
            }
            OptimizerKind::Adam { beta1, beta2, eps, .. } => {
                self.t += 1;
                let (b1, b2) = (T::from_f64(beta1), T::from_f64(beta2));
                let c1 = T::from_f64(1.0 / (1.0 - beta1.powi(self.t)));
                let c2 = T::from_f64(1.0 / (1.0 - beta2.powi(self.t)));
                let eps = T::from_f64(eps);
                for (((w, m), v), &g) in params.iter_mut().zip(self.m.iter_mut()).zip(self.v.iter_mut()).zip(&self.grad)
                {
                    *m = b1 * *m + (T::ONE - b1) * g;
                    *v = b2 * *v + (T::ONE - b2) * g * g;
                    *w -= lr * (*m * c1) / ((*v * c2).sqrt() + eps);
                }
            }
        }
        if let Some(c) = self.max_norm {
            max_norm(self.plan, params, c);
        }
        if let Some(decay) = self.ema {
            match &mut self.average {
                Some(avg) => {
                    let (d, e) = (T::from_f64(decay), T::from_f64(1.0 - decay));
                    avg.iter_mut().zip(params.iter()).for_each(|(a, &w)| *a = d * *a + e * w);
                }
                None => self.average = Some(params.to_vec()),
            }
        }
        if let Some(before) = before {
            let ratios: Vec<f64> = self
                .plan
                .params
                .iter()
                .filter(|p| !p.is_bias)
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

/// Scales each unit's incoming weight vector (a row of `[out, in]`) down to norm `c` when
/// it is longer.
pub fn max_norm<T: Float>(plan: &Plan, params: &mut [T], c: f64) {
    for p in plan.params.iter().filter(|p| !p.is_bias && p.shape.len() >= 2) {
        let rows = p.shape[0].max(1);
        let cols = p.buf.len / rows;
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
