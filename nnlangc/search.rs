//! `nnlangc search`: the `search` block run for real (the library's [`Search`]), its trials
//! spread over `--jobs` threads, a line per finished trial, the trials table, the best
//! configuration as a `.nn` file and a plot of the scores against each searched setting.

use crate::say::{errln, outln};
use crate::{open, Failure, ModelArgs};
use nnlang::session::search::{self, Outcome, Range, Search, StagePlan, Trial};
use plotters::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct SearchArgs {
    pub out: Option<PathBuf>,
    pub jobs: usize,
    pub limit: Option<usize>,
    /// The processes of `mpirun -n N nnlangc search` (none: this process alone).
    pub cluster: Option<nnlang_runtime::train::Cluster>,
}

pub fn search(args: &ModelArgs, a: SearchArgs) -> Result<(), Failure> {
    let session = open(args)?;
    let s = Search::new(&session, args.model.as_deref())?;
    let model = s.spec.model.clone();
    let job = session.job(Some(&model))?;
    let loaded = job.load_data(a.limit)?;
    let out = a.out.unwrap_or_else(|| PathBuf::from("runs").join(format!("{model}-search")));
    let names = s.names();
    let table = out.join("trials.csv");
    // Over several processes (`mpirun -n N`), rank 0 alone keeps the directory, the table and
    // the report; the others run their trials and send back the table's rows.
    let cluster = a.cluster.as_ref();
    let root = cluster.is_none_or(|c| c.is_root());
    let mut done = Vec::new();
    let mut rows: Vec<search::TableRow> = Vec::new();
    let mut file = None;
    let mut lock = None;
    if root {
        if out.exists() && !out.is_dir() {
            return Err(Failure::Usage(format!("{}: not a directory", out.display())));
        }
        std::fs::create_dir_all(&out).map_err(|e| Failure::Usage(format!("{}: cannot create: {e}", out.display())))?;
        // One process at a time writes a search's directory.
        lock = Some(nnlang::session::rundir::DirLock::take(&out, "search").map_err(Failure::Usage)?);
        rows = search::read_rows(&table, &names)?;
        done = rows.iter().map(|r| r.done.clone()).collect();
        if done.is_empty() {
            std::fs::write(&table, search::header(&names))
                .map_err(|e| Failure::Usage(format!("{}: cannot write: {e}", table.display())))?;
        } else {
            outln!("resuming the search in {}: {} trials done", out.display(), done.len());
        }
        file = Some(Mutex::new(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&table)
                .map_err(|e| Failure::Usage(format!("{}: cannot write: {e}", table.display())))?,
        ));
    }
    if let Some(c) = cluster {
        // Every process resumes from rank 0's table.
        let text =
            if root && !done.is_empty() { std::fs::read_to_string(&table).unwrap_or_default() } else { String::new() };
        let all = c.0.all_gather_bytes(text.as_bytes());
        let text = all.first().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        done = text.lines().skip(1).filter_map(|l| search::parse_row(l, names.len())).collect();
    }
    let write_row = |t: &Trial, o: &Outcome| {
        if let Some(Ok(mut f)) = file.as_ref().map(Mutex::lock) {
            // A signal waits for the row to be written whole.
            let _whole = crate::stop::writing();
            let _ = f.write_all(search::row(t, o).as_bytes()).and_then(|_| f.flush());
        }
    };
    let stages = s.spec.stages.len().max(1);
    if let Some(r) = rows.iter().find(|r| r.done.0 .0 >= stages) {
        return Err(foreign(&table, r, format!("stage {}, but the search has {stages}", r.done.0 .0 + 1)));
    }
    let mut plan: StagePlan = s.first_stage();
    let mut all: Vec<(Trial, Outcome)> = Vec::new();
    let mut ranges_of_first = plan.ranges.clone();
    for k in 0..stages {
        if k > 0 {
            let previous: Vec<(Trial, Outcome)> = all.iter().filter(|(t, _)| t.stage == k - 1).cloned().collect();
            match s.next_stage(k, &plan, &previous) {
                Some(p) => plan = p,
                None => break,
            }
        } else {
            ranges_of_first = plan.ranges.clone();
        }
        outln!(
            "stage {} `{}`: {} trials of {} epoch{}, {}",
            k + 1,
            plan.name,
            plan.trials,
            plan.epochs,
            if plan.epochs == 1 { "" } else { "s" },
            names
                .iter()
                .zip(&plan.ranges)
                .map(|(n, r)| format!("{n} in {}", describe(r)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let trials = s.trials(k, &plan);
        let todo: Vec<&Trial> =
            trials.iter().filter(|t| !done.iter().any(|((st, n), _)| *st == k && *n == t.number)).collect();
        for t in &trials {
            if let Some((_, o)) = done.iter().find(|((st, n), _)| *st == k && *n == t.number) {
                all.push((t.clone(), o.clone()));
            }
        }
        // A row of the table must be a trial this search draws, with the values it draws.
        for r in rows.iter().filter(|r| r.done.0 .0 == k) {
            let Some(t) = trials.iter().find(|t| t.number == r.done.0 .1) else {
                let why = format!("trial {} of stage {}, which draws {} trials", r.done.0 .1, k + 1, trials.len());
                return Err(foreign(&table, r, why));
            };
            let drawn: Vec<String> = t.values.iter().map(search::text).collect();
            if drawn != r.values {
                let why = format!(
                    "trial {} of stage {} with {}, where this search draws {}",
                    t.number,
                    k + 1,
                    r.values.join(", "),
                    drawn.join(", ")
                );
                return Err(foreign(&table, r, why));
            }
        }
        // This process's trials: every N-th of those left (a static schedule; a trial's
        // result does not depend on where it runs).
        let (rank, size) = cluster.map_or((0, 1), |c| (c.rank(), c.size()));
        let mine: Vec<&Trial> = todo.iter().enumerate().filter(|(i, _)| i % size == rank).map(|(_, t)| *t).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let finished = Mutex::new(Vec::new());
        let epochs = plan.epochs;
        std::thread::scope(|scope| {
            for _ in 0..a.jobs.max(1).min(mine.len().max(1)) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(t) = mine.get(i) else { break };
                    let o = s.run(t, epochs, &loaded);
                    write_row(t, &o);
                    outln!("  {}", line(&names, t, &o));
                    if let Ok(mut v) = finished.lock() {
                        v.push(((*t).clone(), o));
                    }
                });
            }
        });
        let mut got = finished.into_inner().unwrap_or_default();
        if let Some(c) = cluster {
            // Every process learns every result (the next stage draws around the best);
            // rank 0 adds the others' to the table.
            let rows: String = got.iter().map(|(t, o)| search::row(t, o)).collect();
            for (r, bytes) in c.0.all_gather_bytes(rows.as_bytes()).iter().enumerate() {
                if r == rank {
                    continue;
                }
                for ((st, n), o) in
                    String::from_utf8_lossy(bytes).lines().filter_map(|l| search::parse_row(l, names.len()))
                {
                    if let Some(t) = trials.iter().find(|t| st == k && t.number == n) {
                        write_row(t, &o);
                        outln!("  {}", line(&names, t, &o));
                        got.push((t.clone(), o));
                    }
                }
            }
        }
        got.sort_by_key(|(t, _)| t.number);
        all.extend(got);
    }
    if !root {
        return Ok(());
    }
    let _held = lock;
    finish(&s, &model, &names, &ranges_of_first, &all, &out)
}

fn describe(r: &Range) -> String {
    match r {
        Range::Log(l, h) => format!("[{l:.3e}, {h:.3e}] (log)"),
        Range::Linear(l, h) => format!("[{l:.4}, {h:.4}]"),
        Range::Int(l, h) => format!("{l}..={h}"),
        Range::Choice(v) => format!("{{{}}}", v.iter().map(search::text).collect::<Vec<_>>().join(", ")),
    }
}

fn line(names: &[String], t: &Trial, o: &Outcome) -> String {
    let vals: Vec<String> = names.iter().zip(&t.values).map(|(n, v)| format!("{n} = {}", search::text(v))).collect();
    let result = match o {
        Outcome::Scored { val_loss, val_accuracy: Some(a), seconds } => {
            format!("val acc {:.2}%  val loss {val_loss:.4}  ({seconds:.1} s)", 100.0 * a)
        }
        Outcome::Scored { val_loss, seconds, .. } => format!("val loss {val_loss:.4}  ({seconds:.1} s)"),
        Outcome::Rejected(why) => format!("rejected: {why}"),
        Outcome::Failed(why) => format!("failed: {why}"),
    };
    format!("stage {} trial {:>3}  {}  →  {result}", t.stage + 1, t.number, vals.join(", "))
}

/// Validation score against each searched setting (log axes where the search drew in log
/// space), a colour per stage: where the best values lie.
fn plot_svg(model: &str, names: &[String], ranges: &[Range], all: &[(Trial, Outcome)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let w = 420 * names.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (w, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, names.len().max(1)));
        let scores: Vec<f64> = all.iter().filter_map(|(_, o)| o.score()).collect();
        let (lo, hi) = scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let (lo, hi) =
            if lo.is_finite() { (lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9)) } else { (0.0, 1.0) };
        let accuracy = all.iter().any(|(_, o)| matches!(o, Outcome::Scored { val_accuracy: Some(_), .. }));
        let colours = [BLUE, RED, GREEN, MAGENTA, CYAN];
        for (i, (panel, name)) in panels.iter().zip(names).enumerate() {
            let pts: Vec<(f64, f64, usize)> =
                all.iter().filter_map(|(t, o)| Some((t.values[i].as_f64()?, o.score()?, t.stage))).collect();
            let (xl, xh) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
            if !xl.is_finite() {
                continue;
            }
            let y_desc = if accuracy { "validation accuracy" } else { "−validation loss" };
            let caption = format!("{model}: {name}");
            if ranges[i].is_log() {
                let mut chart = ChartBuilder::on(panel)
                    .caption(caption, ("sans-serif", 16))
                    .margin(10)
                    .x_label_area_size(30)
                    .y_label_area_size(50)
                    .build_cartesian_2d((xl * 0.8..xh * 1.25).log_scale(), lo..hi)
                    .map_err(|e| e.to_string())?;
                chart.configure_mesh().x_desc(name.as_str()).y_desc(y_desc).draw().map_err(|e| e.to_string())?;
                chart
                    .draw_series(
                        pts.iter().map(|&(x, y, s)| Circle::new((x, y), 3, colours[s % colours.len()].filled())),
                    )
                    .map_err(|e| e.to_string())?;
            } else {
                let pad = 0.05 * (xh - xl).max(1e-9);
                let mut chart = ChartBuilder::on(panel)
                    .caption(caption, ("sans-serif", 16))
                    .margin(10)
                    .x_label_area_size(30)
                    .y_label_area_size(50)
                    .build_cartesian_2d(xl - pad..xh + pad, lo..hi)
                    .map_err(|e| e.to_string())?;
                chart.configure_mesh().x_desc(name.as_str()).y_desc(y_desc).draw().map_err(|e| e.to_string())?;
                chart
                    .draw_series(
                        pts.iter().map(|&(x, y, s)| Circle::new((x, y), 3, colours[s % colours.len()].filled())),
                    )
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The end of a search (rank 0): the counts, the best trial of the last stage that trained
/// any, warnings for a best value at the edge of its range, `best.nn` and the plot.
fn finish(
    s: &Search,
    model: &str,
    names: &[String],
    ranges_of_first: &[Range],
    all: &[(Trial, Outcome)],
    out: &std::path::Path,
) -> Result<(), Failure> {
    let rejected = all.iter().filter(|(_, o)| matches!(o, Outcome::Rejected(_))).count();
    let failed = all.iter().filter(|(_, o)| matches!(o, Outcome::Failed(_))).count();
    outln!(
        "{} trials: {} trained, {rejected} rejected before training, {failed} failed",
        all.len(),
        all.len() - rejected - failed
    );
    // The best of the last stage that trained any (its trials trained longest).
    let last = all.iter().filter(|(_, o)| o.score().is_some()).map(|(t, _)| t.stage).max();
    let best = all.iter().filter(|(t, o)| Some(t.stage) == last && o.score().is_some()).max_by(|a, b| {
        let (x, y) = (a.1.rank(), b.1.rank());
        x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1))
    });
    let Some((bt, bo)) = best else {
        errln!("error: no trial trained: nothing to choose from");
        return Err(Failure::Exit(1));
    };
    outln!("best: {}", line(names, bt, bo));
    for (i, n) in names.iter().enumerate() {
        if let Some(p) = ranges_of_first[i].position(&bt.values[i]) {
            if !(0.05..=0.95).contains(&p) {
                let end = if p < 0.5 { "low" } else { "high" };
                outln!(
                    "  warning: the best {n} = {} lies at the {end} edge of its range {}: widen the range and search again",
                    search::text(&bt.values[i]),
                    describe(&ranges_of_first[i])
                );
            }
        }
    }
    let best_nn = out.join("best.nn");
    std::fs::write(&best_nn, s.best_source(bt, out)?)
        .map_err(|e| Failure::Usage(format!("{}: {e}", best_nn.display())))?;
    let plot = out.join("search.svg");
    match plot_svg(model, names, ranges_of_first, all) {
        Ok(svg) => std::fs::write(&plot, svg).map_err(|e| Failure::Usage(format!("{}: {e}", plot.display())))?,
        Err(e) => errln!("warning: no plot: {e}"),
    }
    outln!("wrote {}/{{trials.csv, best.nn, search.svg}}", out.display());
    Ok(())
}

/// A row of an earlier table that this search did not write.
fn foreign(table: &std::path::Path, r: &search::TableRow, why: String) -> Failure {
    errln!(
        "error: {}:{}: {why}: this table was not written by this search; choose another --out",
        table.display(),
        r.line
    );
    Failure::Exit(1)
}
