//! Seeing inside training, as the notes teach: after each epoch, the activations of every
//! layer on a sample of the training set — their mean and spread, the fraction of ReLU units
//! that never fire (dead), the fraction of sigmoid and tanh outputs in their flat tails
//! (saturated) — and the norm of each parameter tensor's gradient.

use super::fit::Data;
use crate::interp::Exec;
use crate::mem::Rows;
use crate::plan::{Act, Plan, Step};

/// One layer's activations over the sample.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    /// The layer, as the model names it (`dense_0` for a dense layer with its activation).
    pub name: String,
    /// `relu`, `leaky_relu`, `tanh`, `sigmoid`.
    pub function: &'static str,
    pub mean: f64,
    pub std: f64,
    /// Of ReLU units (columns of the output): the fraction that never fired on the sample.
    pub dead: Option<f64>,
    /// Of sigmoid and tanh outputs: the fraction within 0.01 of their bounds.
    pub saturated: Option<f64>,
}

fn name(f: Act) -> Option<&'static str> {
    match f {
        Act::Relu => Some("relu"),
        Act::LeakyRelu(_) => Some("leaky_relu"),
        Act::Tanh => Some("tanh"),
        Act::Sigmoid => Some("sigmoid"),
        Act::Identity => None,
    }
}

#[derive(Default)]
struct Acc {
    n: f64,
    sum: f64,
    sq: f64,
    saturated: f64,
    /// Per unit: whether it ever fired.
    fired: Vec<bool>,
}

impl Acc {
    fn add(&mut self, f: Act, y: &[f32], cols: usize, rows: usize, valid: Rows) {
        if self.fired.len() < cols {
            self.fired.resize(cols, false);
        }
        for r in (0..rows).filter(|&r| valid.valid(r)) {
            for (c, &v) in y[r * cols..(r + 1) * cols].iter().enumerate() {
                let v64 = f64::from(v);
                self.n += 1.0;
                self.sum += v64;
                self.sq += v64 * v64;
                match f {
                    Act::Tanh if v.abs() > 0.99 => self.saturated += 1.0,
                    Act::Sigmoid if !(0.01..=0.99).contains(&v) => self.saturated += 1.0,
                    _ => {}
                }
                if v > 0.0 {
                    self.fired[c] = true;
                }
            }
        }
    }
}

/// The activation statistics of the inference plan `plan` (weights in `exec`) over `data`.
pub fn activation_stats(plan: &Plan, exec: &mut Exec<f32>, data: Data, batch: usize) -> Vec<LayerStats> {
    let rows = data.rows();
    let batch = batch.min(plan.max_batch).max(1);
    let mut accs: Vec<(usize, Act, Acc)> = Vec::new();
    exec.reset_state(plan);
    for start in (0..rows).step_by(batch) {
        let n = batch.min(rows - start);
        exec.set_input(plan, 0, n, &data.x[start * data.x_cols..(start + n) * data.x_cols]);
        let lengths = data.lengths.get(start..start + n).unwrap_or(&[]);
        exec.set_lengths(lengths);
        let mut index = 0usize;
        let mut steps_now = 1usize;
        let _ = exec.run_watched(plan, n, &mut |s, now, reads| {
            let at = index;
            index += 1;
            let (f, y, cols, rows_now, per) = match s {
                Step::PerStep { steps } => {
                    steps_now = *steps;
                    return;
                }
                Step::Activation { f, y, .. }
                | Step::ActivationInPlace { f, y }
                | Step::DenseAct { f, y, .. }
                | Step::Conv { f, y, .. }
                | Step::Local { f, y, .. } => (*f, *y, y.cols, now, steps_now),
                // Every state of a recurrence, a row per step.
                Step::Rnn { f, steps, hs, .. } => (*f, *hs, hs.cols / (*steps).max(1), now * steps, *steps),
                _ => return,
            };
            if name(f).is_none() {
                return;
            }
            let valid = Rows { steps: per, lengths };
            let i = match accs.iter().position(|(k, _, _)| *k == at) {
                Some(i) => i,
                None => {
                    accs.push((at, f, Acc::default()));
                    accs.len() - 1
                }
            };
            accs[i].2.add(f, reads.get(y, now), cols, rows_now, valid);
        });
    }
    accs.into_iter()
        .filter(|(_, _, a)| a.n > 0.0)
        .map(|(at, f, a)| {
            let mean = a.sum / a.n;
            LayerStats {
                name: plan.origins.get(at).cloned().unwrap_or_default(),
                function: name(f).unwrap_or(""),
                mean,
                std: (a.sq / a.n - mean * mean).max(0.0).sqrt(),
                dead: matches!(f, Act::Relu)
                    .then(|| a.fired.iter().filter(|&&x| !x).count() as f64 / a.fired.len().max(1) as f64),
                saturated: matches!(f, Act::Tanh | Act::Sigmoid).then(|| a.saturated / a.n),
            }
        })
        .collect()
}

/// The norm of each parameter tensor's gradient in `grads`.
pub fn gradient_norms(plan: &Plan, grads: &[f32]) -> Vec<(String, f64)> {
    plan.params
        .iter()
        .map(|p| {
            (p.name.clone(), grads[p.buf.range()].iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>().sqrt())
        })
        .collect()
}
