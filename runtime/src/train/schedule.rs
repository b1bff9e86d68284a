//! The learning rate epoch by epoch: the one implementation that `nnlangc train`
//! ([`super::fit`]) and a generated model's `fit` ([`super::arrays::fit`]) share, a plateau
//! schedule's watch of the loss included.

use super::Schedule;

/// The learning rate of `epoch` (0-based) under a schedule without state (all but plateau,
/// which [`Rates`] tracks).
pub fn scheduled_lr(base: f64, schedule: Schedule, epoch: usize) -> f64 {
    match schedule {
        Schedule::Constant | Schedule::Plateau { .. } => base,
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
    /// A plateau schedule's rate, best watched loss and epochs without improvement.
    plateau: (f64, f64, usize),
}

impl Rates {
    /// The rates of `schedule` from `base`.
    pub fn new(base: f64, schedule: Schedule) -> Self {
        Rates { base, schedule, plateau: (base, f64::INFINITY, 0) }
    }

    /// The rate of `epoch` (0-based).
    pub fn at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Plateau { .. } => self.plateau.0,
            s => scheduled_lr(self.base, s, epoch),
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
