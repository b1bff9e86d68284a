//! `nnlangc ensemble`: the file's `ensemble` block run for real — its members trained (from
//! different seeds, from the best trials of the model's search, or as the last checkpoints
//! of one run), their averaged probabilities scored beside each member's — and `eval`/`run`
//! of an ensemble's directory.

use crate::say::{errln, outln};
use crate::train::{train, TrainArgs};
use crate::{open, Failure, ModelArgs, Set};
use nnlang::session::ensemble::{self, Member};
use nnlang::session::search::{self, Search};
use nnlang::spec::{EnsembleSpec, Members};
use nnlang::syntax::ast::BlockKind;
use std::path::{Path, PathBuf};

pub struct EnsembleArgs {
    pub out: Option<PathBuf>,
    pub threads: usize,
    pub limit: Option<usize>,
    /// The search whose best trials are the members (`from = top(search)`).
    pub search: Option<PathBuf>,
    pub quiet: bool,
}

/// Whether `dir` holds a run that completed.
fn complete(dir: &Path) -> bool {
    nnlang::session::rundir::read_manifest(dir).is_ok_and(|m| m.is_some_and(|m| m.complete))
}

/// Trains `file` (with `sets`) into `dir`, unless a complete run is there already.
fn member_run(
    file: &Path,
    model: &str,
    sets: Vec<Set>,
    dir: &Path,
    a: &EnsembleArgs,
    keep: usize,
) -> Result<Member, Failure> {
    if crate::stop::requested() {
        errln!("interrupted: the members trained so far are kept in their directories; run the same command to go on");
        return Err(Failure::Exit(crate::stop::INTERRUPTED));
    }
    if !complete(dir) {
        let args = ModelArgs { file: file.to_path_buf(), model: Some(model.to_string()), set: sets };
        train(
            &args,
            TrainArgs {
                epochs: None,
                out: Some(dir.to_path_buf()),
                limit: a.limit,
                quiet: a.quiet,
                threads: a.threads,
                split: nnlang_runtime::train::Split::Auto,
                resume: None,
                init: None,
                notes: false,
                keep,
                cluster: None,
            },
        )?;
    }
    Ok(Member { source: dir.join("model.nn"), weights: dir.join("weights.safetensors") })
}

pub fn run(args: &ModelArgs, a: EnsembleArgs) -> Result<(), Failure> {
    let session = open(args)?;
    let block = session
        .compiled
        .recipes
        .iter()
        .find(|r| r.kind == BlockKind::Ensemble && args.model.as_deref().is_none_or(|m| r.target == m))
        .ok_or_else(|| Failure::Usage(format!("{}: no `ensemble` block", args.file.display())))?;
    let spec = EnsembleSpec::from_block(block).map_err(|e| {
        Failure::Usage(format!("{}: internal compiler error in the `ensemble` block: {e}", args.file.display()))
    })?;
    // A signal stops the ensemble between members, or inside one (which keeps its last
    // completed epoch, as `train` does).
    crate::stop::cooperate();
    let model = spec.model.clone();
    let k = spec.members.unwrap_or(5);
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("{model}-ensemble")));
    std::fs::create_dir_all(&out).map_err(|e| Failure::Usage(format!("{}: cannot create: {e}", out.display())))?;
    // One process at a time writes an ensemble's directory.
    let _lock = nnlang::session::rundir::DirLock::take(&out, "ensemble").map_err(Failure::Usage)?;
    let recipe = session
        .compiled
        .train_recipe(Some(&model))
        .ok_or_else(|| Failure::Usage(format!("{}: no `train` block for `{model}`", args.file.display())))?;
    let mut members = Vec::new();
    match &spec.from {
        Members::Seeds => {
            for i in 0..k {
                let seed = recipe.seed.wrapping_add(i as u64);
                outln!("member {} of {k}: seed {seed}", i + 1);
                let mut sets = args.set.clone();
                sets.push(Set::Recipe("seed".into(), seed.to_string()));
                members.push(member_run(
                    &args.file,
                    &model,
                    sets,
                    &out.join(format!("member-{i}")),
                    &a,
                    nnlang::session::KEEP_CHECKPOINTS,
                )?);
            }
        }
        Members::TopOfSearch => {
            let s = Search::new(&session, Some(&model))?;
            let dir = a.search.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("{model}-search")));
            let done = search::read_table(&dir.join("trials.csv"), &s.names())?;
            let last = done.iter().filter(|(_, o)| o.score().is_some()).map(|((st, _), _)| *st).max();
            let mut best: Vec<&search::Done> =
                done.iter().filter(|((st, _), o)| Some(*st) == last && o.score().is_some()).collect();
            best.sort_by(|x, y| {
                let (p, q) = (x.1.rank(), y.1.rank());
                q.0.total_cmp(&p.0).then(q.1.total_cmp(&p.1))
            });
            if best.len() < k {
                return Err(Failure::Usage(format!(
                    "{}: the search has {} trained trials in its last stage, the ensemble wants {k}; run `nnlangc search` first",
                    dir.join("trials.csv").display(),
                    best.len()
                )));
            }
            // The trials are redrawn from their stage plans, as the search drew them.
            let mut plan = s.first_stage();
            let stage = last.unwrap_or(0);
            for st in 1..=stage {
                let prev: Vec<(search::Trial, search::Outcome)> = s
                    .trials(st - 1, &plan)
                    .into_iter()
                    .filter_map(|t| {
                        done.iter().find(|((a, b), _)| *a == st - 1 && *b == t.number).map(|(_, o)| (t, o.clone()))
                    })
                    .collect();
                plan = s
                    .next_stage(st, &plan, &prev)
                    .ok_or_else(|| Failure::Usage("the search's stages changed".into()))?;
            }
            let trials = s.trials(stage, &plan);
            for (i, ((_, n), _)) in best.iter().take(k).enumerate() {
                let t = trials
                    .iter()
                    .find(|t| t.number == *n)
                    .ok_or_else(|| Failure::Usage("the search's trials changed".into()))?;
                let file = out.join(format!("member-{i}.nn"));
                std::fs::write(&file, s.best_source(t, &out)?)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
                outln!("member {} of {k}: trial {} of stage {}", i + 1, t.number, stage + 1);
                members.push(member_run(
                    &file,
                    &model,
                    Vec::new(),
                    &out.join(format!("member-{i}")),
                    &a,
                    nnlang::session::KEEP_CHECKPOINTS,
                )?);
            }
        }
        Members::Checkpoints { last } => {
            // The run keeps as many epochs' weights as the ensemble takes.
            let dir = out.join("run");
            let m = member_run(&args.file, &model, args.set.clone(), &dir, &a, (*last).max(1))?;
            let manifest = nnlang::session::rundir::read_manifest(&dir).map_err(Failure::Usage)?;
            let epochs = manifest.map_or(0, |m| m.epochs_done);
            for e in epochs.saturating_sub(*last - 1).max(1)..=epochs {
                members.push(Member { source: m.source.clone(), weights: dir.join(format!("epoch-{e}.safetensors")) });
            }
        }
    }
    if crate::stop::requested() {
        errln!("interrupted: every member is trained; run the same command to write the ensemble");
        return Err(Failure::Exit(crate::stop::INTERRUPTED));
    }
    ensemble::write_manifest(&out, &model, &members)?;
    report(&session, &model, &members, a.limit)?;
    outln!("wrote {}/{}", out.display(), ensemble::MANIFEST);
    Ok(())
}

/// Each member's test score, the ensemble's, and its gain over the best member.
fn report(
    session: &nnlang::session::Session,
    model: &str,
    members: &[Member],
    limit: Option<usize>,
) -> Result<(), Failure> {
    let job = session.job(Some(model))?;
    let loaded = job.load_data(limit)?;
    let (set, which) = match &loaded.test {
        Some(t) => (t, "test"),
        None => (&loaded.train, "training (no test split)"),
    };
    let s = ensemble::evaluate(members, set, job.recipe.loss, Some(model))?;
    let acc = |e: &nnlang_runtime::train::Evaluation| {
        e.accuracy.map_or(format!("loss {:.4}", e.loss), |a| format!("accuracy {:.2}%  loss {:.4}", 100.0 * a, e.loss))
    };
    outln!("on the {which} set ({} examples):", set.rows());
    for (i, e) in s.members.iter().enumerate() {
        outln!("  member {}  {}", i + 1, acc(e));
    }
    outln!("  ensemble  {}  (mean of {} members' probabilities)", acc(&s.ensemble), members.len());
    if let (Some(best), Some(ens)) = (s.members.iter().filter_map(|e| e.accuracy).reduce(f64::max), s.ensemble.accuracy)
    {
        outln!("  the ensemble is {:+.2} points from the best member", 100.0 * (ens - best));
    }
    Ok(())
}

/// `eval --ensemble DIR`.
pub fn eval(args: &ModelArgs, dir: &Path, limit: Option<usize>) -> Result<(), Failure> {
    let session = open(args)?;
    let members = ensemble::read_manifest(dir)?;
    let model = session.job(args.model.as_deref())?.model.graph.name.clone();
    report(&session, &model, &members, limit)
}

/// `run --ensemble DIR`: the mean of the members' outputs for every row of a raw array, each
/// member doing to it what its training did (its `preprocess.json`); sequences of any length
/// the members accept.
pub fn predict(args: &ModelArgs, dir: &Path, input: &Path, output: &Path) -> Result<(), Failure> {
    let session = open(args)?;
    let members = ensemble::read_manifest(dir)?;
    nnlang_runtime::io::check_replaceable(output).map_err(Failure::Usage)?;
    let manifest = dir.join(ensemble::MANIFEST);
    let mut inputs: Vec<(&str, &Path)> =
        vec![("source", &args.file), ("input", input), ("ensemble manifest", &manifest)];
    for m in &members {
        inputs.push(("member's source", &m.source));
        inputs.push(("member's weights", &m.weights));
    }
    nnlang_runtime::io::check_not_input(output, &inputs).map_err(Failure::Usage)?;
    let x = nnlang_runtime::data::npy::read(input).map_err(|e| Failure::Usage(e.to_string()))?;
    let name = session.model(args.model.as_deref())?.graph.name.clone();
    let mut sum: Vec<f64> = Vec::new();
    let mut first: Option<(nnlang::session::RawPrediction, nnlang::session::Session)> = None;
    for m in &members {
        let s = nnlang::session::Session::open(&m.source, &nnlang::Options::default())?;
        let model = s.model(Some(&name))?;
        let raw = s.predict_array(model, &m.weights, &x, input)?;
        match &first {
            Some((f, _)) if f.shape != raw.shape => {
                return Err(Failure::Usage(format!(
                    "{}: outputs of shape {:?}, the other members' {:?}",
                    m.source.display(),
                    raw.shape,
                    f.shape
                )))
            }
            Some(_) => sum.iter_mut().zip(&raw.y).for_each(|(a, &b)| *a += f64::from(b)),
            None => {
                sum = raw.y.iter().map(|&v| f64::from(v)).collect();
                first = Some((raw, s));
            }
        }
    }
    let Some((mut mean, s)) = first else { return Err(Failure::Usage(format!("{}: no members", dir.display()))) };
    let n = members.len() as f64;
    mean.y = sum.iter().map(|v| (v / n) as f32).collect();
    // A binned regression's bins are its first member's (members of one data set agree).
    let done = s.finish_prediction(s.model(Some(&name))?, mean);
    nnlang_runtime::data::npy::write(output, &done.predicted.shape, &done.y)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let dims: Vec<String> = done.predicted.shape[1..].iter().map(|d| d.to_string()).collect();
    outln!(
        "wrote {} rows of [{}] to {} (the mean of {} members)",
        done.predicted.rows,
        dims.join(", "),
        output.display(),
        members.len()
    );
    Ok(())
}
