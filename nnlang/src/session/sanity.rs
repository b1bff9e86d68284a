//! The notes' sanity checks before a long training run (`nnlangc sanity`):
//!
//! 1. the loss at initialization is what chance predicts (`ln C` for a softmax over C
//!    classes, `ln 2` per output for a sigmoid);
//! 2. adding regularization raises the loss;
//! 3. the model can overfit a tiny subset (20 examples, no regularization, a constant rate)
//!    to 100% training accuracy, or to a hundredth of its initial loss.
//!
//! Each check gives a pass or fail and the numbers.

use super::{view, Error, Job, Loaded, Prepared};
use crate::plan::Loss;
use nnlang_runtime::interp::Exec;
use nnlang_runtime::train::{self, EpochStats, Observer, Resume};

/// One check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The check, as printed.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// The numbers behind the verdict.
    pub detail: String,
}

/// Examples the overfitting check trains on.
pub const TINY: usize = 20;
/// The most epochs it may take.
pub const TINY_EPOCHS: usize = 1000;

/// Watches the overfitting run: stops it once the training examples are fitted: 100%
/// accuracy, or a loss below a hundredth of where it started (a regression; a sequence
/// model, whose every step counts).
struct UntilFitted {
    target: f64,
    fitted_at: Option<usize>,
    last: Option<(f64, Option<f64>)>,
}

impl Observer for UntilFitted {
    fn batch(&mut self, _: usize, _: usize, _: usize, _: f64) -> bool {
        self.fitted_at.is_none()
    }
    fn epoch(&mut self, s: &EpochStats) {
        if self.fitted_at.is_some() {
            return; // the epoch the run was stopped in
        }
        self.last = Some((s.train_loss, s.train_accuracy));
        if s.train_accuracy.is_some_and(|a| a >= 1.0) || s.train_loss <= self.target {
            self.fitted_at = Some(s.epoch);
        }
    }
    fn checkpoint(&mut self, _: &[f32], _: &Resume) -> Result<(), String> {
        Ok(())
    }
}

impl Job<'_> {
    /// Runs the three checks on the prepared job's initial weights and training data.
    pub fn sanity(&self, loaded: &Loaded, threads: usize) -> Result<Vec<Check>, Error> {
        let p = self.prepare(loaded, threads)?;
        if p.fit.rows() < TINY {
            return Err(Error::Usage(format!(
                "sanity checks that the model overfits {TINY} training examples, and --limit and the validation split leave {} for training; give it more data",
                p.fit.rows()
            )));
        }
        let mut out = vec![self.initial_loss(&p)];
        out.push(self.regularization_raises_the_loss(&p));
        out.push(self.overfits_a_tiny_subset(&p)?);
        Ok(out)
    }

    /// The data loss of the initial weights on (up to 1,000 of) the training examples.
    fn loss_at_init(&self, p: &Prepared) -> f64 {
        let mut exec = Exec::<f32>::new(&p.eval_plan, 0);
        exec.params.copy_from_slice(&p.params);
        let n = p.fit.rows().min(1000);
        let mut sample = p.fit.head(n);
        if p.options.bptt.is_some() {
            sample = p.fit.head((n / p.options.batch.max(1)).max(1) * p.options.batch.max(1));
        }
        train::evaluate(&p.eval_plan, &mut exec, self.recipe.loss, view(&sample), p.options.batch).loss
    }

    fn initial_loss(&self, p: &Prepared) -> Check {
        let name = "loss at initialization is chance";
        let l0 = self.loss_at_init(p);
        let out = self.model.graph.output.and_then(|o| self.model.shapes.shapes[o.index()].as_ref());
        let classes =
            out.map_or(0, |s| if s.is_sequence() { s.last().unwrap_or(0) } else { s.elements().fixed as usize });
        let expected = match self.recipe.loss {
            Loss::CrossEntropy(_) if classes > 1 => Some(((classes as f64).ln(), format!("ln {classes}"))),
            Loss::BinaryCrossEntropy => Some((2f64.ln(), "ln 2".to_string())),
            _ => None,
        };
        match expected {
            Some((e, what)) => {
                // The notes: a loss far from chance means the initialization (or the loss) is off.
                let passed = l0.is_finite() && (l0 - e).abs() <= 0.25 * e;
                Check {
                    name,
                    passed,
                    detail: format!(
                        "initial loss {l0:.4}, chance {what} = {e:.4} ({:+.1}%; within ±25% passes)",
                        100.0 * (l0 - e) / e
                    ),
                }
            }
            None => Check {
                name,
                passed: l0.is_finite(),
                detail: format!("initial loss {l0:.4} (no chance level for mean squared error; it is finite)"),
            },
        }
    }

    fn regularization_raises_the_loss(&self, p: &Prepared) -> Check {
        let l0 = self.loss_at_init(p);
        // The recipe's strength, or a visible one when it has none.
        let (l1, l2) = if p.options.l1 > 0.0 || p.options.l2 > 0.0 { (p.options.l1, p.options.l2) } else { (0.0, 1.0) };
        let penalty = train::regularization(&p.train_plan.params, &p.params, l1, l2, None);
        let passed = l0.is_finite() && penalty > 0.0 && (l0 + penalty) > l0;
        Check {
            name: "regularization raises the loss",
            passed,
            detail: format!("loss {l0:.4} without, {:.4} with l1 = {l1}, l2 = {l2} (+{penalty:.3e})", l0 + penalty),
        }
    }

    fn overfits_a_tiny_subset(&self, p: &Prepared) -> Result<Check, Error> {
        let name = "overfits 20 examples";
        let n = TINY.min(p.fit.rows());
        let tiny = p.fit.head(n);
        let mut options = p.options.clone();
        (options.l1, options.l2, options.max_norm, options.ema) = (0.0, 0.0, None, None);
        // The notes: no augmentation (nor early stopping, nor accumulation) when overfitting
        // a handful of examples.
        (options.augment, options.patience, options.accumulate) = (None, None, 1);
        options.epochs = TINY_EPOCHS;
        options.batch = n;
        options.validate = 0.0;
        // A constant rate: a decaying schedule made for a long run would stall here.
        options.schedule = train::Schedule::Constant;
        let train_plan = self.session.plan_with(
            self.model,
            crate::plan::Mode::Training(self.recipe.loss),
            n,
            options.bptt.is_some(),
        )?;
        let mut params = p.params.clone();
        let start = self.loss_at_init(p);
        let mut watch = UntilFitted { target: 1e-2 * start.max(1e-12), fitted_at: None, last: None };
        train::fit(
            &train_plan,
            &p.eval_plan,
            self.recipe.loss,
            &mut params,
            view(&tiny),
            None,
            &options,
            &mut watch,
            None,
        )
        .map_err(|e| self.session.input_error(e))?;
        let (loss, accuracy) = watch.last.unwrap_or((f64::NAN, None));
        let what = accuracy.map_or(format!("loss {loss:.2e}"), |a| format!("{:.1}% accuracy", 100.0 * a));
        Ok(match watch.fitted_at {
            Some(epoch) => Check {
                name,
                passed: true,
                detail: format!("{what} on {n} examples after {epoch} epochs (loss {start:.4} → {loss:.4})"),
            },
            None => Check {
                name,
                passed: false,
                detail: format!(
                    "{what} on {n} examples after {TINY_EPOCHS} epochs (loss {start:.4} → {loss:.4}): a model that cannot fit {n} examples has a bug, or a learning rate far off"
                ),
            },
        })
    }
}
