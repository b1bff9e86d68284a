//! `nnlangc`: the nnlang command line.
//!
//! Exit codes: 0 when the model is well-formed, 1 for errors in the user's source (including
//! a file that is not UTF-8), 2 for usage errors (unknown flag or model, bad `--set`,
//! missing or unreadable file).

use clap::Parser;
use nnlang::diag::render_all;
use nnlang::lower::Overrides;
use nnlang::session::{Error as SessionError, Session};
use nnlang::{summary, Options};
use std::process::ExitCode;

mod cli;
mod cluster;
mod ensemble;
mod fmt;
mod lsp;
mod report;
mod say;
mod search;
mod stop;
mod train;

use cli::*;
use say::{err, errln, out, outln};

fn main() -> ExitCode {
    let cli = Cli::parse();
    stop::install();
    // `mpirun -n N nnlangc train|search`: the processes join before anything else.
    let joined = match &cli.command {
        Command::Train { .. } | Command::Search { .. } => {
            let name = if matches!(cli.command, Command::Train { .. }) { "train" } else { "search" };
            match cluster::join(name) {
                Ok(j) => j,
                Err(Failure::Usage(msg)) => {
                    errln!("error: {msg}");
                    return ExitCode::from(2);
                }
                Err(_) => return ExitCode::from(2),
            }
        }
        _ => match cluster::launched().filter(|&n| n > 1) {
            // Other commands would run N times over, writing the same files.
            Some(n) => {
                errln!(
                    "error: launched as one of {n} processes (mpirun): only `train` and `search` share their work among processes; run this command alone"
                );
                return ExitCode::from(2);
            }
            None => None,
        },
    };
    let code = match run(cli, joined.as_ref().map(|j| &j.cluster)) {
        Ok(()) => 0,
        Err(Failure::Source) => 1,
        Err(Failure::Usage(msg)) => {
            errln!("error: {msg}");
            2
        }
        Err(Failure::Exit(code)) => code,
    };
    // A process that failed alone ends them all (the others may wait on it); an interrupted
    // run stopped everywhere after the same step and closes normally.
    if let Some(j) = &joined {
        if code != 0 && code != train::INTERRUPTED {
            errln!("error: stopping every process of the run");
            j.abort(code);
        }
    }
    drop(joined);
    if code == 0 && say::stdout_failed() {
        errln!("error: could not write everything to standard output (closed or full)");
        return ExitCode::from(1);
    }
    ExitCode::from(code)
}

fn run(cli: Cli, cluster: Option<&nnlang_runtime::train::Cluster>) -> Result<(), Failure> {
    match cli.command {
        Command::Check { model, json } => {
            let compiled = open(&model)?.compiled;
            let summaries: Vec<summary::Summary> = compiled.models.iter().map(summary::summarize).collect();
            if json {
                let text = if summaries.len() == 1 {
                    serde_json::to_string_pretty(&summaries[0])
                } else {
                    serde_json::to_string_pretty(&summaries)
                };
                outln!("{}", text.map_err(|e| Failure::Usage(e.to_string()))?);
            } else {
                let texts: Vec<String> = compiled
                    .models
                    .iter()
                    .zip(&summaries)
                    .map(|(m, s)| summary::to_text(s) + &summary::memory_report(&compiled, m))
                    .collect();
                out!("{}", texts.join("\n"));
                let checked = compiled.recipes.len();
                if checked > 0 {
                    let s = if checked == 1 { "" } else { "s" };
                    let kinds: Vec<String> =
                        compiled.recipes.iter().map(|r| format!("{} {}", r.kind.keyword(), r.target)).collect();
                    outln!("\n{checked} recipe block{s} checked: {}", kinds.join(", "));
                }
            }
            Ok(())
        }
        Command::Emit { model, ir: _, dot, after, rust } => {
            let session = open(&model)?;
            let (compiled, source) = (&session.compiled, &session.source);
            if rust {
                for m in &compiled.models {
                    let tokens = nnlang::back::rust::generate(compiled, m).map_err(|diags| {
                        err!("{}", render_all(&diags, &model.file.display().to_string(), source));
                        Failure::Source
                    })?;
                    out!("{}", nnlang::back::rust::pretty(&tokens));
                }
                return Ok(());
            }
            if let Some(pass) = &after {
                if !nnlang::passes::PASSES.contains(&pass.as_str()) {
                    return Err(Failure::Usage(format!(
                        "--after {pass}: no such pass (the passes, in order: {})",
                        nnlang::passes::PASSES.join(", ")
                    )));
                }
            }
            for m in &compiled.models {
                let graph = match &after {
                    Some(pass) => {
                        let target = match compiled.train_recipe(Some(&m.graph.name)) {
                            Some(r) => nnlang::passes::Mode::Training(r.loss),
                            None => nnlang::passes::Mode::Inference,
                        };
                        let stages = nnlang::passes::pipeline(&m.graph, target, nnlang::passes::Level::Full);
                        match stages.into_iter().find(|(name, _)| name == pass) {
                            Some((_, g)) => g,
                            None => {
                                let which = if matches!(target, nnlang::passes::Mode::Inference) {
                                    "has no `train` block, so its pipeline (inference)"
                                } else {
                                    "has a `train` block, so its pipeline (training)"
                                };
                                return Err(Failure::Usage(format!(
                                    "--after {pass}: model `{}` {which} does not run `{pass}`",
                                    m.graph.name
                                )));
                            }
                        }
                    }
                    None => m.graph.clone(),
                };
                let (shapes, _) = nnlang::shape::infer(&graph);
                if dot {
                    out!("{}", nnlang::ir::to_dot(&graph, &shapes.shapes));
                } else {
                    out!("{}", nnlang::ir::to_text(&graph, &shapes.shapes));
                }
            }
            Ok(())
        }
        Command::Train { model, epochs, out, limit, quiet, threads, split, resume, init, keep } => train::train(
            &model,
            train::TrainArgs {
                epochs,
                out,
                limit,
                quiet,
                threads: threads as usize,
                split: split.into(),
                resume,
                init,
                notes: true,
                keep,
                cluster: cluster.cloned(),
            },
        ),
        Command::Eval { model, weights, ensemble, limit } => match (weights, ensemble) {
            (_, Some(dir)) => ensemble::eval(&model, &dir, limit),
            (Some(w), None) => train::eval(&model, &w, limit),
            (None, None) => Err(Failure::Usage("give --weights or --ensemble".into())),
        },
        Command::Run { model, weights, ensemble, input, output, raw } => match (weights, ensemble) {
            (_, Some(dir)) => ensemble::predict(&model, &dir, &input, &output),
            (Some(w), None) => train::run(&model, &w, &input, &output, raw),
            (None, None) => Err(Failure::Usage("give --weights or --ensemble".into())),
        },
        Command::Ensemble { model, out, threads, limit, search, quiet } => {
            ensemble::run(&model, ensemble::EnsembleArgs { out, threads: threads as usize, limit, search, quiet })
        }
        Command::Sanity { model, limit } => train::sanity(&model, limit),
        Command::Export { model, onnx, pytorch: _, weights, output, raw, sequence_lengths } => {
            let format = if onnx { train::Format::Onnx { sequence_lengths } } else { train::Format::Pytorch };
            train::export(&model, format, weights.as_deref(), output.as_deref(), raw)
        }
        Command::Search { model, out, jobs, limit } => {
            search::search(&model, search::SearchArgs { out, jobs: jobs as usize, limit, cluster: cluster.cloned() })
        }
        Command::Gradcheck { model, step, examples, coordinates, seed } => {
            let spec = nnlang::session::gradcheck::GradcheckSpec { step, examples, coordinates, seed };
            train::gradcheck(&model, &spec)
        }
        Command::Fmt { files, check } => fmt::run(&files, check),
        Command::Lsp => lsp::serve().map_err(Failure::Usage),
        Command::Sample { model, weights, vocab, prime, length, temperature, seed } => {
            let vocab = vocab.unwrap_or_else(|| weights.with_file_name("vocab.json"));
            let spec = nnlang::session::SampleSpec {
                weights: &weights,
                vocab: &vocab,
                prime: &prime,
                length,
                temperature,
                seed,
            };
            train::sample(&model, &spec)
        }
        Command::Bench { model, batch, threads, split, seconds, json } => {
            let spec = nnlang::session::BenchSpec { batch, threads: threads as usize, split: split.into(), seconds };
            train::bench(&model, &spec, json)
        }
    }
}

/// Reads and compiles the file; prints its warnings, or every diagnostic when any is an
/// error.
pub fn open(args: &ModelArgs) -> Result<Session, Failure> {
    let mut overrides = Overrides::new();
    let mut recipe = Vec::new();
    for set in &args.set {
        match set {
            Set::Param(k, v) => {
                overrides.insert(k.clone(), v.clone());
            }
            Set::Recipe(k, v) => recipe.push((k.clone(), v.clone())),
        }
    }
    let opts = Options { model: args.model.clone(), overrides, recipe };
    let session = Session::open(&args.file, &opts)?;
    // (Said once in a distributed run.)
    if say::reports() {
        err!("{}", session.warnings());
    }
    Ok(session)
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Failure {
        match e {
            SessionError::Diagnostics(text) => {
                err!("{text}");
                Failure::Source
            }
            SessionError::Input(msg) => {
                errln!("error: {msg}");
                Failure::Source
            }
            SessionError::Usage(msg) => Failure::Usage(msg),
        }
    }
}
