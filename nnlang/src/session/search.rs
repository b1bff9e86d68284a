//! Random search (`nnlangc search`), the notes' way: values drawn at random (never on a
//! grid) from each searched setting's distribution; stages from coarse to fine, each later
//! stage drawing in the ranges the best trials of the stage before span; candidates the
//! compiler rejects (shapes that do not fit, a plan over the memory budget) counted before
//! any training; every trial deterministic from its stage and number; the trials table
//! written as trials finish, and read back to resume an interrupted search.
//!
//! A trial is the file compiled with its values set (model parameters as `--set NAME=…`,
//! recipe settings written into the `train` block), trained on the job's data with the
//! stage's epochs on one thread, and scored on the validation split.

use super::{view, Error, Loaded, Session};
use crate::lower::eval::{fmt_num, Value};
use crate::lower::{parse_param_value, Overrides};
use crate::spec::{Distribution, SearchSpec};
use nnlang_runtime::train::{self, EpochStats, Observer, Resume};
use rand::{RngExt, SeedableRng};
use std::path::Path;

/// Where a stage draws a setting from.
#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    /// Log-uniform between the bounds.
    Log(f64, f64),
    /// Uniform between the bounds.
    Linear(f64, f64),
    /// An integer between the bounds, inclusive.
    Int(i64, i64),
    /// One of the values.
    Choice(Vec<Value>),
}

impl Range {
    fn of(d: &Distribution) -> Range {
        match d {
            Distribution::LogUniform { lo, hi } => Range::Log(*lo, *hi),
            Distribution::Uniform { lo, hi } => Range::Linear(*lo, *hi),
            Distribution::IntUniform { lo, hi } => Range::Int(*lo, *hi),
            Distribution::Choice(v) => Range::Choice(v.clone()),
        }
    }

    fn draw(&self, rng: &mut rand_chacha::ChaCha8Rng) -> Value {
        match self {
            Range::Log(lo, hi) => Value::Float(10f64.powf(rng.random_range(lo.log10()..=hi.log10()))),
            Range::Linear(lo, hi) => Value::Float(rng.random_range(*lo..=*hi)),
            Range::Int(lo, hi) => Value::Int(rng.random_range(*lo..=*hi)),
            Range::Choice(v) => v[rng.random_range(0..v.len())].clone(),
        }
    }

    /// The range the values `best` span (in log space for a log range), widened by a tenth
    /// of the original on each side and kept inside it; a choice keeps the values chosen.
    fn around(&self, best: &[Value]) -> Range {
        let nums: Vec<f64> = best.iter().filter_map(Value::as_f64).collect();
        let (lo, hi) = nums.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        match self {
            Range::Log(l, h) if lo.is_finite() => {
                let m = 0.1 * (h.log10() - l.log10());
                Range::Log(10f64.powf((lo.log10() - m).max(l.log10())), 10f64.powf((hi.log10() + m).min(h.log10())))
            }
            Range::Linear(l, h) if lo.is_finite() => {
                let m = 0.1 * (h - l);
                Range::Linear((lo - m).max(*l), (hi + m).min(*h))
            }
            Range::Int(l, h) if lo.is_finite() => {
                let m = ((0.1 * (h - l) as f64).ceil() as i64).max(1);
                Range::Int((lo as i64 - m).max(*l), (hi as i64 + m).min(*h))
            }
            Range::Choice(all) => {
                let kept: Vec<Value> = all.iter().filter(|v| best.contains(v)).cloned().collect();
                Range::Choice(if kept.is_empty() { all.clone() } else { kept })
            }
            other => other.clone(),
        }
    }

    /// Where `v` sits in the range, from 0 (its low end) to 1 (its high end); `None` for a
    /// choice.
    pub fn position(&self, v: &Value) -> Option<f64> {
        let x = v.as_f64()?;
        match self {
            Range::Log(l, h) => Some((x.log10() - l.log10()) / (h.log10() - l.log10())),
            Range::Linear(l, h) => Some((x - l) / (h - l)),
            Range::Int(l, h) if h > l => Some((x - *l as f64) / (*h - *l) as f64),
            _ => None,
        }
    }

    /// Whether the range is drawn on a log scale.
    pub fn is_log(&self) -> bool {
        matches!(self, Range::Log(..))
    }
}

/// A searched value as it is written into the source.
pub fn text(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:.6e}").parse::<f64>().map_or_else(|_| fmt_num(*f), fmt_num),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => format!("{s:?}"),
        Value::Percent(p) => format!("{}%", fmt_num(*p)),
        Value::Sym(s) => s.clone(),
    }
}

/// One candidate: its stage and number, and a value per searched setting (in the search
/// block's order).
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// The stage (0-based).
    pub stage: usize,
    /// The trial's number in the whole search (1-based).
    pub number: usize,
    /// The drawn values, in the block's order.
    pub values: Vec<Value>,
}

/// How a trial ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Trained: the validation loss and accuracy after its last epoch.
    Scored {
        /// The validation loss.
        val_loss: f64,
        /// The validation accuracy, for a classifier.
        val_accuracy: Option<f64>,
        /// Wall time of the trial.
        seconds: f64,
    },
    /// Refused before any training (the reason, e.g. a shape that does not fit).
    Rejected(String),
    /// Training stopped (a loss that became NaN, …).
    Failed(String),
}

impl Outcome {
    /// Orders trials, best last: by score, then (accuracies tied) by the lower loss.
    pub fn rank(&self) -> (f64, f64) {
        match self {
            Outcome::Scored { val_loss, .. } => (self.score().unwrap_or(f64::MIN), -val_loss),
            _ => (f64::MIN, f64::MIN),
        }
    }

    /// Higher is better: the validation accuracy, or minus the validation loss.
    pub fn score(&self) -> Option<f64> {
        match self {
            Outcome::Scored { val_loss, val_accuracy, .. } => {
                Some(val_accuracy.unwrap_or(-val_loss)).filter(|s| s.is_finite())
            }
            _ => None,
        }
    }
}

/// What every trial of a stage draws from, and for how long it trains.
#[derive(Clone, Debug)]
pub struct StagePlan {
    /// The stage's name.
    pub name: String,
    /// Epochs each trial trains.
    pub epochs: usize,
    /// Trials in the stage.
    pub trials: usize,
    /// Where each searched value is drawn from.
    pub ranges: Vec<Range>,
}

/// The search of one model: the block, and what each trial shares.
pub struct Search<'s> {
    /// The compiled file.
    pub session: &'s Session,
    /// The `search` block.
    pub spec: SearchSpec,
    /// Seeds the draws.
    pub seed: u64,
    /// The validation split every trial is scored on.
    pub validate: f64,
}

struct Quiet;

impl Observer for Quiet {
    fn batch(&mut self, _: usize, _: usize, _: usize, _: f64) -> bool {
        true
    }
    fn epoch(&mut self, _: &EpochStats) {}
    fn checkpoint(&mut self, _: &[f32], _: &Resume) -> Result<(), String> {
        Ok(())
    }
}

/// Trials of the first stage when neither the block nor the stage says.
pub const DEFAULT_TRIALS: usize = 20;

impl<'s> Search<'s> {
    /// The search block of the session's model (`model`, or the file's first search).
    pub fn new(session: &'s Session, model: Option<&str>) -> Result<Search<'s>, Error> {
        let block = session
            .compiled
            .recipes
            .iter()
            .find(|r| r.kind == crate::syntax::ast::BlockKind::Search && model.is_none_or(|m| r.target == m))
            .ok_or_else(|| session.input_error("no `search` block: it says which settings to search and how"))?;
        let spec = SearchSpec::from_block(block)
            .map_err(|e| session.input_error(format!("internal compiler error in the `search` block: {e}")))?;
        if spec.searched.is_empty() {
            return Err(session
                .input_error(format!("the `search {}` block searches nothing (`path ~ distribution`)", spec.model)));
        }
        let recipe = session.compiled.train_recipe(Some(&spec.model)).ok_or_else(|| {
            session.input_error(format!("no `train` block for `{}`: a search varies its recipe", spec.model))
        })?;
        let validate = if recipe.validate > 0.0 { recipe.validate } else { 0.1 };
        Ok(Search { session, spec, seed: recipe.seed, validate })
    }

    /// The names of the searched settings (`optimizer.lr`, `width`).
    pub fn names(&self) -> Vec<String> {
        self.spec.searched.iter().map(|s| s.path.join(".")).collect()
    }

    /// The first stage's plan; later ones come from [`Search::next_stage`].
    pub fn first_stage(&self) -> StagePlan {
        let recipe_epochs = self.session.compiled.train_recipe(Some(&self.spec.model)).map_or(10, |r| r.epochs);
        let st = self.spec.stages.first();
        StagePlan {
            name: st.map_or("search".into(), |s| s.name.clone()),
            epochs: st.and_then(|s| s.epochs).unwrap_or(recipe_epochs),
            trials: st.and_then(|s| s.trials).or(self.spec.trials).unwrap_or(DEFAULT_TRIALS),
            ranges: self.spec.searched.iter().map(|s| Range::of(&s.distribution)).collect(),
        }
    }

    /// Stage `k` (from 1) after the results of the stage before: ranges narrowed around its
    /// best `keep` trials; as many trials as the stage says (twice `keep` by default).
    pub fn next_stage(&self, k: usize, previous: &StagePlan, results: &[(Trial, Outcome)]) -> Option<StagePlan> {
        let st = self.spec.stages.get(k)?;
        let keep = st.keep.unwrap_or(3).max(1);
        let mut scored: Vec<&(Trial, Outcome)> = results.iter().filter(|(_, o)| o.score().is_some()).collect();
        scored.sort_by(|a, b| {
            let (x, y) = (a.1.rank(), b.1.rank());
            y.0.total_cmp(&x.0).then(y.1.total_cmp(&x.1))
        });
        let best: Vec<&Trial> = scored.iter().take(keep).map(|(t, _)| t).collect();
        let ranges = previous
            .ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let vals: Vec<Value> = best.iter().map(|t| t.values[i].clone()).collect();
                if vals.is_empty() {
                    r.clone()
                } else {
                    r.around(&vals)
                }
            })
            .collect();
        Some(StagePlan {
            name: st.name.clone(),
            epochs: st.epochs.unwrap_or(previous.epochs),
            trials: st.trials.unwrap_or(2 * keep),
            ranges,
        })
    }

    /// The trials of stage `k`: each drawn from its own generator (seed, stage, number), so
    /// that a trial is the same however the search is split, resumed or run in parallel.
    pub fn trials(&self, k: usize, plan: &StagePlan) -> Vec<Trial> {
        (0..plan.trials)
            .map(|n| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                    self.seed ^ 0x5ea2_c400_0000_0000 ^ ((k as u64) << 32) ^ n as u64,
                );
                Trial { stage: k, number: n, values: plan.ranges.iter().map(|r| r.draw(&mut rng)).collect() }
            })
            .collect()
    }

    /// The settings of `trial`: model parameters, and recipe settings as source text.
    fn sets(&self, trial: &Trial, epochs: usize) -> Result<(Overrides, Vec<(String, String)>), Error> {
        let model = self.session.compiled.file.models.iter().find(|m| m.name.name == self.spec.model);
        let mut params = Overrides::new();
        let mut recipe = vec![("epochs".to_string(), epochs.to_string())];
        for (s, v) in self.spec.searched.iter().zip(&trial.values) {
            let is_param =
                s.path.len() == 1 && model.is_some_and(|m| m.params.iter().any(|p| p.name.name == s.path[0]));
            if is_param {
                let pv = parse_param_value(&text(v))
                    .ok_or_else(|| Error::Usage(format!("{}: {} is not a parameter value", s.path[0], text(v))))?;
                params.insert(s.path[0].clone(), pv);
            } else {
                recipe.push((s.path.join("."), text(v)));
            }
        }
        if self.session.compiled.train_recipe(Some(&self.spec.model)).is_some_and(|r| r.validate <= 0.0) {
            recipe.push(("validate".into(), fmt_num(self.validate)));
        }
        Ok((params, recipe))
    }

    /// The session of `trial`: the file compiled with its settings (`epochs` of its stage).
    pub fn compile(&self, trial: &Trial, epochs: usize) -> Result<Session, Error> {
        let (overrides, recipe) = self.sets(trial, epochs)?;
        let opts = crate::Options { model: Some(self.spec.model.clone()), overrides, recipe };
        Session::from_source(self.session.path.clone(), self.session.source.clone(), &opts)
    }

    /// Compiles, plans and trains one trial on `loaded` (the base job's data).
    pub fn run(&self, trial: &Trial, epochs: usize, loaded: &Loaded) -> Outcome {
        let start = nnlang_runtime::time::Instant::now();
        let s = match self.compile(trial, epochs) {
            Ok(s) => s,
            Err(e) => return Outcome::Rejected(first_line(&e.to_string())),
        };
        let job = match s.job(Some(&self.spec.model)) {
            Ok(j) => j,
            Err(e) => return Outcome::Rejected(first_line(&e.to_string())),
        };
        let base = self.session.job(Some(&self.spec.model)).ok();
        let same_data = base.is_some_and(|b| {
            let (a, c) = (
                super::data::expect(b.model, b.recipe.loss, b.recipe.bins),
                super::data::expect(job.model, job.recipe.loss, job.recipe.bins),
            );
            a.input_cols == c.input_cols && a.classes == c.classes && a.target_cols == c.target_cols
        });
        if !same_data {
            return Outcome::Rejected("its model reads or predicts another shape than the data set has".into());
        }
        let mut p = match job.prepare(loaded, 1) {
            Ok(p) => p,
            Err(e) => return Outcome::Rejected(first_line(&e.to_string())),
        };
        let val = (p.val.rows() > 0).then(|| view(&p.val));
        let fitted = train::fit(
            &p.train_plan,
            &p.eval_plan,
            job.recipe.loss,
            &mut p.params,
            view(&p.fit),
            val,
            &p.options,
            &mut Quiet,
            None,
        );
        match fitted {
            Ok(o) => match o.history.last() {
                Some(h) if h.val_loss.is_some() => Outcome::Scored {
                    val_loss: h.val_loss.unwrap_or(f64::NAN),
                    val_accuracy: h.val_accuracy,
                    seconds: start.elapsed().as_secs_f64(),
                },
                _ => Outcome::Failed("no validation score (the validation split is empty)".into()),
            },
            Err(e) => Outcome::Failed(first_line(&e.to_string())),
        }
    }

    /// The best trial's configuration as a complete `.nn` file to be written in `dir`: its
    /// parameters as the defaults, its settings in the `train` block (with the block's own
    /// epochs), its data paths relative to `dir`.
    pub fn best_source(&self, trial: &Trial, dir: &Path) -> Result<String, Error> {
        let recipe_epochs = self.session.compiled.train_recipe(Some(&self.spec.model)).map_or(10, |r| r.epochs);
        let (overrides, mut recipe) = self.sets(trial, recipe_epochs)?;
        recipe.retain(|(k, _)| k != "epochs");
        let relocated = super::artifacts::relocate_data_paths(&self.session.source, self.session.base(), dir);
        let source = crate::settings::override_source(&relocated, &recipe, Some(&self.spec.model))
            .map_err(|e| Error::Usage(e.to_string()))?;
        let opts = crate::Options { model: Some(self.spec.model.clone()), overrides, recipe: Vec::new() };
        let s = Session::from_source(self.session.path.clone(), source.clone(), &opts)?;
        let m = s.model(Some(&self.spec.model))?;
        let values: Vec<String> =
            self.names().iter().zip(&trial.values).map(|(n, v)| format!("{n} = {}", text(v))).collect();
        let note = format!(
            "the best configuration of `nnlangc search` (stage {}, trial {}): {}",
            trial.stage + 1,
            trial.number,
            values.join(", ")
        );
        Ok(super::artifacts::resolved_source(&source, &s.compiled, m, &note))
    }
}

fn first_line(s: &str) -> String {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// The trials table: a header, then one row per finished trial.
pub fn header(names: &[String]) -> String {
    format!("stage,trial,{},status,val_loss,val_accuracy,seconds,detail\n", names.join(","))
}

/// A trial's line of `trials.csv`.
pub fn row(t: &Trial, o: &Outcome) -> String {
    let vals: Vec<String> = t.values.iter().map(text).collect();
    let (status, loss, acc, secs, detail) = match o {
        Outcome::Scored { val_loss, val_accuracy, seconds } => (
            "ok",
            val_loss.to_string(),
            val_accuracy.map_or(String::new(), |a| a.to_string()),
            format!("{seconds:.2}"),
            String::new(),
        ),
        Outcome::Rejected(why) => ("rejected", String::new(), String::new(), String::new(), why.clone()),
        Outcome::Failed(why) => ("failed", String::new(), String::new(), String::new(), why.clone()),
    };
    let detail = detail.replace(['"', '\n'], "'");
    format!("{},{},{},{status},{loss},{acc},{secs},\"{detail}\"\n", t.stage + 1, t.number, vals.join(","))
}

/// A finished trial read back from a table: (stage, number) and how it ended.
pub type Done = ((usize, usize), Outcome);

/// The rows of an earlier run's table (`trials.csv`) with the same header: (stage, number)
/// → outcome. A table of another search is an error.
pub fn read_table(path: &Path, names: &[String]) -> Result<Vec<Done>, Error> {
    Ok(read_rows(path, names)?.into_iter().map(|r| r.done).collect())
}

/// A row of an earlier run's table, with its values as written and its line.
#[derive(Clone, Debug)]
pub struct TableRow {
    /// (stage, number) and how the trial ended.
    pub done: Done,
    /// The trial's values as the table writes them, one per searched setting.
    pub values: Vec<String>,
    /// Its line in the file (from 1).
    pub line: usize,
}

/// The rows of an earlier run's table, each checked: a stage and a trial number, one value per
/// searched setting, a status of `ok` (with a finite loss, an accuracy in [0, 1] or none, and
/// seconds), `rejected` or `failed`, and no trial twice. Only a last line without its newline
/// (a row cut short by a kill) is dropped — that trial runs again; any other row that is not
/// one is an error naming the file and line: the table was not written by this search.
pub fn read_rows(path: &Path, names: &[String]) -> Result<Vec<TableRow>, Error> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    let mut lines = text.lines();
    if lines.next().map(|h| format!("{h}\n")) != Some(header(names)) {
        return Err(Error::Input(format!(
            "{}: a trials table of another search (its header differs); choose another --out",
            path.display()
        )));
    }
    let whole = text.ends_with('\n');
    let count = text.lines().count();
    let mut rows: Vec<TableRow> = Vec::new();
    for (i, l) in lines.enumerate() {
        let line = i + 2;
        match strict_row(l, names.len()) {
            Ok((done, values)) => {
                if let Some(first) = rows.iter().find(|r| r.done.0 == done.0) {
                    return Err(Error::Input(format!(
                        "{}:{line}: trial {} of stage {} is already on line {}: this table was not written by this search; choose another --out",
                        path.display(),
                        done.0 .1,
                        done.0 .0 + 1,
                        first.line
                    )));
                }
                rows.push(TableRow { done, values, line });
            }
            Err(_) if line == count && !whole => {}
            Err(why) => {
                return Err(Error::Input(format!(
                    "{}:{line}: {why}: this table was not written by this search; choose another --out",
                    path.display()
                )))
            }
        }
    }
    Ok(rows)
}

/// A row checked field by field, or what is wrong with it.
fn strict_row(line: &str, n: usize) -> Result<(Done, Vec<String>), String> {
    let f: Vec<&str> = line.splitn(n + 7, ',').collect();
    if f.len() < n + 7 {
        return Err(format!("{} fields where a row has {}", f.len(), n + 7));
    }
    let stage = f[0].parse::<usize>().ok().filter(|&s| s >= 1).ok_or_else(|| format!("`{}` is not a stage", f[0]))?;
    let number = f[1].parse::<usize>().map_err(|_| format!("`{}` is not a trial number", f[1]))?;
    let detail = f[n + 6];
    if !(detail.len() >= 2
        && detail.starts_with('"')
        && detail.ends_with('"')
        && !detail[1..detail.len() - 1].contains('"'))
    {
        return Err(format!("the last field `{detail}` is not a quoted detail (extra fields?)"));
    }
    let num = |k: usize, what: &str| {
        f[k].parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("`{}` is not a {what}", f[k]))
    };
    let o = match f[n + 2] {
        "ok" => Outcome::Scored {
            val_loss: num(n + 3, "validation loss")?,
            val_accuracy: match f[n + 4] {
                "" => None,
                _ => Some(num(n + 4, "validation accuracy")?)
                    .filter(|a| (0.0..=1.0).contains(a))
                    .map(Some)
                    .ok_or_else(|| format!("`{}` is not an accuracy in [0, 1]", f[n + 4]))?,
            },
            seconds: num(n + 5, "number of seconds")?,
        },
        "rejected" => Outcome::Rejected(detail.trim_matches('"').to_string()),
        "failed" => Outcome::Failed(detail.trim_matches('"').to_string()),
        other => return Err(format!("`{other}` is not a status (ok, rejected or failed)")),
    };
    Ok((((stage - 1, number), o), f[2..2 + n].iter().map(|v| v.to_string()).collect()))
}

/// A line of the table (without its header) back as (stage, number) and outcome, for a search
/// of `n` settings; `None` for a row cut short by an interruption (the trial runs again).
pub fn parse_row(line: &str, n: usize) -> Option<Done> {
    strict_row(line, n).ok().map(|(done, _)| done)
}
