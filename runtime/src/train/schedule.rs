//! The learning rate epoch by epoch: the one implementation that `nnlangc train`
//! ([`super::fit`]) and a generated model's `fit` ([`super::arrays::fit`]) share, a plateau
//! schedule's watch of the loss included.

use super::Schedule;

/// The learning rate of `epoch` (0-based) under a schedule without state (all but plateau,
/// which [`Rates`] tracks).
pub fn scheduled_lr(base: f64, schedule: Schedule, epoch: usize) -> f64 {
    match schedule {
        Schedule::Constant | Schedule::Plateau { .. } => base,
        // Its first step's rate (the rate changes step by step: [`Rates::at_step`]).
        Schedule::Cosine { .. } => base,
        Schedule::Step { every, factor } => base * factor.powi((epoch / every.max(1)) as i32),
        Schedule::Exponential { decay } => base * decay.powi(epoch as i32),
    }
}

/// A schedule's rates as training goes: [`Rates::at`] before an epoch, [`Rates::observe`]
/// with the loss it watched after (the validation loss, else the training loss).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    base: f64,
    schedule: Schedule,
    /// Epochs of linear warm-up, step by step, before the schedule.
    warmup: usize,
    /// A plateau schedule's rate, best watched loss and epochs without improvement.
    plateau: (f64, f64, usize),
}

impl Rates {
    /// The rates of `schedule` from `base`.
    pub fn new(base: f64, schedule: Schedule) -> Self {
        Rates { base, schedule, warmup: 0, plateau: (base, f64::INFINITY, 0) }
    }

    /// The same rates after `epochs` of linear warm-up: step `i` of the `w` warm-up steps runs
    /// at `(i + 1)/w` of the schedule's rate; the schedule then goes on as it would have (a
    /// cosine decays over the steps after the warm-up).
    pub fn with_warmup(self, epochs: usize) -> Self {
        Rates { warmup: epochs, ..self }
    }

    /// The rate of `epoch` (0-based).
    pub fn at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Plateau { .. } => self.plateau.0,
            s => scheduled_lr(self.base, s, epoch),
        }
    }

    /// The rate of step `step` (0-based) of the `steps` of epoch `epoch`, in a run of `epochs`
    /// epochs: the warm-up's, then a cosine's step by step; every other schedule's rate is its
    /// epoch's ([`Rates::at`]).
    pub fn at_step(&self, epoch: usize, step: usize, steps: usize, epochs: usize) -> f64 {
        let steps = steps.max(1);
        let i = (epoch * steps + step) as f64;
        let warm = (self.warmup * steps) as f64;
        let rate = match self.schedule {
            Schedule::Cosine { min } => {
                let span = ((epochs.max(1) * steps) as f64 - warm - 1.0).max(1.0);
                let progress = ((i - warm).max(0.0) / span).min(1.0);
                let low = min * self.base;
                low + (self.base - low) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            _ => self.at(epoch),
        };
        if i < warm {
            rate * (i + 1.0) / warm
        } else {
            rate
        }
    }

    /// An epoch ended with `watched` as its loss: a plateau schedule multiplies its rate by
    /// `factor` after `patience` epochs without a new best.
    pub fn observe(&mut self, watched: f64) {
        let Schedule::Plateau { factor, patience } = self.schedule else { return };
        let (lr, best, stale) = &mut self.plateau;
        if watched < *best - 1e-12 {
            *best = watched;
            *stale = 0;
        } else {
            *stale += 1;
            if *stale >= patience.max(1) {
                *lr *= factor;
                *stale = 0;
            }
        }
    }

    /// The plateau state (rate, best loss, stale epochs), for a resumable run.
    pub fn state(&self) -> (f64, f64, usize) {
        self.plateau
    }

    /// Continues from a saved [`Rates::state`].
    pub fn restore(&mut self, state: (f64, f64, usize)) {
        self.plateau = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_linearly_then_falls_to_its_minimum_step_by_step() {
        let r = Rates::new(1.0, Schedule::Cosine { min: 0.1 }).with_warmup(1);
        // 3 epochs of 4 steps: steps 0..4 warm up, 4..12 fall.
        let at: Vec<f64> =
            (0..3).flat_map(|e| (0..4).map(move |s| (e, s))).map(|(e, s)| r.at_step(e, s, 4, 3)).collect();
        assert_eq!(&at[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert!((at[4] - 1.0).abs() < 1e-15, "the fall starts at the base rate: {at:?}");
        assert!(at[4..].windows(2).all(|w| w[1] < w[0]), "{at:?}");
        assert!((at[11] - 0.1).abs() < 1e-15, "it ends at min: {at:?}");
        // Halfway through the fall, halfway between the base and min.
        let mid = r.at_step(2, 0, 4, 3); // step 8 of the fall's 4..=11: progress 4/7
        let want = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 4.0 / 7.0).cos());
        assert!((mid - want).abs() < 1e-15);
        // Without warm-up it starts at the base rate.
        let r = Rates::new(2.0, Schedule::Cosine { min: 0.0 });
        assert_eq!(r.at_step(0, 0, 10, 5), 2.0);
        assert!(r.at_step(4, 9, 10, 5).abs() < 1e-15);
        // A warm-up before a step schedule: a ramp to the schedule's rate, which then drops.
        let r = Rates::new(1.0, Schedule::Step { every: 2, factor: 0.5 }).with_warmup(1);
        let at: Vec<f64> =
            (0..3).flat_map(|e| (0..2).map(move |s| (e, s))).map(|(e, s)| r.at_step(e, s, 2, 3)).collect();
        assert_eq!(at, [0.5, 1.0, 1.0, 1.0, 0.5, 0.5]);
    }
}
