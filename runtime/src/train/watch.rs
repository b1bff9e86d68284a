//! Seeing inside training, as the notes teach: after each epoch, the activations of every
//! layer on a sample of the training set — their mean and spread, the fraction of ReLU units
//! that never fire (dead), the fraction of sigmoid and tanh outputs in their flat tails
//! (saturated) — and the norm of each parameter tensor's gradient.

use crate::act::Watch;
use crate::mem::{Reads, Rows};
use crate::plan::{Act, Plan, Step};

/// One layer's activations over the sample.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    /// The layer, as the model names it (`dense_0` for a dense layer with its activation).
    pub name: String,
    /// `relu`, `leaky_relu`, `tanh`, `sigmoid`.
    pub function: &'static str,
    /// The mean of its activations.
    pub mean: f64,
    /// Their standard deviation.
    pub std: f64,
    /// Of ReLU units (columns of the output): the fraction that never fired on the sample.
    pub dead: Option<f64>,
    /// Of sigmoid and tanh outputs: the fraction within 0.01 of their bounds.
    pub saturated: Option<f64>,
}

/// The activation's name, unless it is the identity (nothing to watch).
fn name(f: Act) -> Option<&'static str> {
    (f != Act::Identity).then(|| f.name())
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
    fn add(&mut self, watch: Watch, y: &[f32], cols: usize, rows: usize, valid: Rows) {
        if self.fired.len() < cols {
            self.fired.resize(cols, false);
        }
        const LANES: usize = 8;
        for r in (0..rows).filter(|&r| valid.valid(r)) {
            let row = &y[r * cols..(r + 1) * cols];
            // Sums in independent lanes (f64), so that the loop is not one chain of additions.
            let (mut sum, mut sq) = ([0f64; LANES], [0f64; LANES]);
            let chunks = row.chunks_exact(LANES);
            let rest = chunks.remainder();
            for c in chunks {
                for l in 0..LANES {
                    let v = f64::from(c[l]);
                    sum[l] += v;
                    sq[l] += v * v;
                }
            }
            for (l, &v) in rest.iter().enumerate() {
                let v = f64::from(v);
                sum[l] += v;
                sq[l] += v * v;
            }
            self.n += cols as f64;
            self.sum += sum.iter().sum::<f64>();
            self.sq += sq.iter().sum::<f64>();
            if let Some((lo, hi)) = watch.live {
                self.saturated += row.iter().filter(|&&v| !(lo..=hi).contains(&v)).count() as f64;
            }
            if watch.dead {
                self.fired.iter_mut().zip(row).for_each(|(d, &v)| *d |= v > 0.0);
            }
        }
    }
}

/// Collects every layer's activations while an inference plan runs (a [`crate::interp::Watcher`]
/// over the batches of an evaluation): see [`LayerWatch::see`], then [`LayerWatch::finish`].
#[derive(Default)]
pub struct LayerWatch {
    /// By step index: the activation and what was seen.
    accs: Vec<(usize, Act, Acc)>,
    /// Rows per example of the steps now running (a layer at every step of a sequence).
    steps_now: usize,
}

impl LayerWatch {
    /// Step `at` has run on `rows` rows; `lengths` are the batch's sequence lengths.
    pub fn see(&mut self, at: usize, s: &Step, rows: usize, reads: &Reads<'_, f32>, lengths: &[usize]) {
        let (f, y, cols, rows_now, per) = match s {
            Step::PerStep { steps } => {
                self.steps_now = *steps;
                return;
            }
            Step::Activation { f, y, .. }
            | Step::ActivationInPlace { f, y }
            | Step::DenseAct { f, y, .. }
            | Step::DenseFolded { f, y, .. }
            | Step::Conv { f, y, .. }
            | Step::ConvFolded { f, y, .. }
            | Step::Local { f, y, .. } => (*f, *y, y.cols, rows, self.steps_now.max(1)),
            Step::BatchNormInfer { y, relu: true, .. } | Step::BatchNorm { y, relu: true, .. } => {
                (Act::Relu, *y, y.cols, rows, self.steps_now.max(1))
            }
            // Every state of a recurrence, a row per step.
            Step::Rnn { f, steps, hs, .. } => (*f, *hs, hs.cols / (*steps).max(1), rows * steps, *steps),
            _ => return,
        };
        if name(f).is_none() {
            return;
        }
        let valid = Rows { steps: per, lengths };
        let i = match self.accs.iter().position(|(k, _, _)| *k == at) {
            Some(i) => i,
            None => {
                self.accs.push((at, f, Acc::default()));
                self.accs.len() - 1
            }
        };
        self.accs[i].2.add(f.watch(), reads.get(y, rows), cols, rows_now, valid);
    }

    /// The statistics of every layer seen, named as `plan`'s steps' layers.
    pub fn finish(self, plan: &Plan) -> Vec<LayerStats> {
        self.accs
            .into_iter()
            .filter(|(_, _, a)| a.n > 0.0)
            .map(|(at, f, a)| {
                let mean = a.sum / a.n;
                LayerStats {
                    name: plan.origins.get(at).cloned().unwrap_or_default(),
                    function: name(f).unwrap_or(""),
                    mean,
                    std: (a.sq / a.n - mean * mean).max(0.0).sqrt(),
                    dead: f
                        .watch()
                        .dead
                        .then(|| a.fired.iter().filter(|&&x| !x).count() as f64 / a.fired.len().max(1) as f64),
                    saturated: f.watch().live.map(|_| a.saturated / a.n),
                }
            })
            .collect()
    }
}

/// The norm of each trained tensor's gradient in `grads` (a state's slot holds a batch
/// statistic, not a gradient).
pub fn gradient_norms(plan: &Plan, grads: &[f32]) -> Vec<(String, f64)> {
    plan.params
        .iter()
        .filter(|p| p.trained())
        .map(|p| {
            (p.name.clone(), grads[p.buf.range()].iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>().sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane sums give the statistics a plain loop gives: mean, spread, dead units,
    /// saturated outputs — over the rows inside the sequences only.
    #[test]
    fn statistics_are_the_plain_loops() {
        let (cols, rows) = (21, 12);
        let y: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * if i % cols == 3 { 0.0 } else { 1.0 })
            .collect();
        let lengths = [2usize, 3, 1, 3];
        let valid = Rows { steps: 3, lengths: &lengths };
        for f in [Act::Relu, Act::Tanh, Act::Sigmoid] {
            let mut acc = Acc::default();
            acc.add(f.watch(), &y, cols, rows, Rows { steps: 3, lengths: &lengths });
            let kept: Vec<f32> =
                (0..rows).filter(|&r| valid.valid(r)).flat_map(|r| y[r * cols..(r + 1) * cols].to_vec()).collect();
            let n = kept.len() as f64;
            let mean = kept.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let sq = kept.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n;
            assert_eq!(acc.n, n);
            assert!((acc.sum / acc.n - mean).abs() < 1e-12 && (acc.sq / acc.n - sq).abs() < 1e-12, "{f:?}");
            let saturated = match f {
                Act::Tanh => kept.iter().filter(|v| v.abs() > 0.99).count(),
                Act::Sigmoid => kept.iter().filter(|&&v| !(0.01..=0.99).contains(&v)).count(),
                _ => 0,
            };
            assert_eq!(acc.saturated, saturated as f64, "{f:?}");
            if f == Act::Relu {
                let fired: Vec<bool> = (0..cols).map(|c| kept.chunks(cols).any(|r| r[c] > 0.0)).collect();
                assert_eq!(acc.fired, fired);
                assert!(!fired[3], "column 3 never fires");
            }
        }
    }
}
