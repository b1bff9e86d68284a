//! nnlang: a declarative language for neural networks, and its compiler.
//!
//! The pipeline, one function per stage:
//!
//! ```text
//!  compile  source ─ syntax::parse ─ lower::lower_model ─ ir::verify ─ shape::infer ─▶ Model
//!                      └─ recipe::check_blocks ─▶ spec (TrainRecipe, DataSpec, …) ─┘
//!  plan     Model ─ passes::optimize (loss, fuse, dce, in place) ─ plan::build ─▶ Plan
//!  back     Plan ─▶ nnlang_runtime::interp (driven by session: train, eval, run)
//!                ─▶ back::rust (nn!, nnlangc emit --rust)
//! ```
//!
//! [`compile`] is the front end; [`plan()`] the middle; the back ends live in [`back`]. Every
//! fact about an op (its layers, shape rule, FLOPs, steps, gradient, in-place facts) is in its
//! module under [`ops`]; [`session`] orchestrates training and inference for the command line,
//! searches and Rust programs.

pub mod back;
pub mod diag;
pub mod ide;
pub mod ir;
pub mod lower;
pub mod ops;
pub mod passes;
pub mod plan;
pub mod recipe;
pub mod session;
pub mod settings;
pub mod shape;
pub mod spec;
pub mod summary;
pub mod syntax;

use diag::Diagnostic;
use lower::Overrides;
use recipe::Recipe;
pub use shape::Model;
use syntax::ast;

/// What to compile: one model or all, parameter overrides, and settings of the `train`
/// blocks set from outside ([`settings::apply`]).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Compile only this model (default: every model of the file).
    pub model: Option<String>,
    /// Model parameters set from outside (`--set N=3`), checked as if written in the file.
    pub overrides: Overrides,
    /// `(path, value)` of `--set` for the `train` blocks, applied in order to the checked
    /// settings: `("optimizer.lr", "0.01")`.
    pub recipe: Vec<(String, String)>,
}

/// A mistake in how the compiler was asked, not in the source (an unknown `--model`,
/// `--set` of a parameter that does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The result of compiling a file: the checked models and recipes, and everything wrong.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// The parsed source.
    pub file: ast::File,
    /// The models that lowered and checked without errors.
    pub models: Vec<Model>,
    /// The checked `train`, `data`, `search` and `ensemble` blocks.
    pub recipes: Vec<Recipe>,
    /// The `train` blocks, typed once (with `--set` applied), in file order.
    pub trains: Vec<spec::TrainRecipe>,
    /// The `data` blocks, typed once, in file order.
    pub datas: Vec<spec::DataSpec>,
    /// Every error and warning, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }
}

/// The middle of the pipeline for one model: its graph for `mode` after the passes, laid out
/// as one plan for batches of up to `max_batch` rows.
pub fn plan(model: &Model, mode: plan::Mode, max_batch: usize) -> Result<nnlang_runtime::plan::Plan, Vec<Diagnostic>> {
    plan::build(model, mode, max_batch)
}

/// Parses and checks a source file: every model's shapes inferred, every recipe checked, and
/// every mistake a [`Diagnostic`] that shows the source and the arithmetic.
///
/// ```
/// let source = "model Net {
///     input image: [28, 28, 1]
///     image -> conv(filters = 8, size = 5, stride = 2) -> relu -> flatten -> dense(10) -> softmax
/// }";
/// let compiled = nnlang::compile(source, &nnlang::Options::default()).unwrap();
/// assert!(compiled.has_errors());
/// let text = nnlang::diag::render_all(&compiled.diagnostics, "net.nn", source);
/// assert!(text.contains("(28 − 5)/2 + 1 = 12.5"), "{text}");
///
/// let fixed = source.replace("stride = 2", "stride = 1");
/// let compiled = nnlang::compile(&fixed, &nnlang::Options::default()).unwrap();
/// let net = &compiled.models[0];
/// let out = net.graph.output.unwrap();
/// assert_eq!(net.shapes.shapes[out.index()].as_ref().unwrap().to_string(), "[10]");
/// ```
pub fn compile(source: &str, opts: &Options) -> Result<Compiled, UsageError> {
    let file = match syntax::parse(source) {
        Ok(f) => f,
        Err(d) => return Ok(Compiled { diagnostics: vec![d], ..Compiled::default() }),
    };
    let mut diagnostics = duplicate_models(&file);
    diagnostics.extend(check_defs(&file));
    let (mut recipes, recipe_diags) = recipe::check_blocks(&file);
    diagnostics.extend(recipe_diags);
    settings::apply(&mut recipes, &opts.recipe, opts.model.as_deref())?;
    let (trains, datas) = typed(&file, &recipes, &mut diagnostics);

    let selected = select(&file, opts)?;
    let mut models = Vec::new();
    for (model, overrides) in selected {
        let lowered = lower::lower_model(model, &file.defs, &overrides);
        let lowering_failed = lowered.diagnostics.iter().any(|d| d.is_error());
        diagnostics.extend(lowered.diagnostics);
        if lowering_failed {
            continue;
        }
        if let Err(problems) = ir::verify(&lowered.graph) {
            diagnostics.push(Diagnostic::error(
                format!("internal compiler error: the IR of `{}` is malformed: {}", model.name, problems.join("; ")),
                model.name.span,
                "while lowering this model",
            ));
            continue;
        }
        let (shapes, errors) = shape::infer(&lowered.graph);
        diagnostics.extend(errors.iter().map(|e| e.to_diagnostic(&lowered.graph)));
        if errors.is_empty() {
            models.push(Model { graph: lowered.graph, shapes });
        }
    }
    diagnostics.extend(recipe_fits(&file, &trains, &datas, &models));
    let mut diagnostics = diag::merge_repeats(diagnostics);
    diagnostics.sort_by_key(|d| d.labels.first().map(|l| l.span.start).unwrap_or(0));
    Ok(Compiled { file, models, recipes, trains, datas, diagnostics })
}

/// The `train` and `data` blocks decoded into their typed forms, once. A block the schema
/// passed but the decoder cannot read is a compiler bug, reported as one at the block.
fn typed(
    file: &ast::File,
    recipes: &[Recipe],
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<spec::TrainRecipe>, Vec<spec::DataSpec>) {
    let (mut trains, mut datas) = (Vec::new(), Vec::new());
    let mut bug = |r: &Recipe, e: String| {
        let at = file.blocks.iter().find(|b| b.kind == r.kind && b.target.name == r.target).map(|b| b.target.span);
        diagnostics.push(Diagnostic::error(
            format!(
                "internal compiler error: the checked `{} {}` block cannot be read: {e}",
                r.kind.keyword(),
                r.target
            ),
            at.unwrap_or_default(),
            "while reading this block",
        ));
    };
    for r in recipes {
        match r.kind {
            ast::BlockKind::Train => match spec::TrainRecipe::from_block(r) {
                Ok(t) => trains.push(t),
                Err(e) => bug(r, e),
            },
            ast::BlockKind::Data => match spec::DataSpec::from_block(r) {
                Ok(d) => datas.push(d),
                Err(e) => bug(r, e),
            },
            ast::BlockKind::Search | ast::BlockKind::Ensemble => {}
        }
    }
    (trains, datas)
}

/// What `train` would refuse about a recipe and its model, found by `check` too: the loss
/// against the last layer, `bins` and a data set's `classes` against the outputs.
fn recipe_fits(
    file: &ast::File,
    trains: &[spec::TrainRecipe],
    datas: &[spec::DataSpec],
    models: &[Model],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let value_span = |block: &ast::Block, key: &str| {
        block.entries.iter().find_map(|e| match &e.kind {
            ast::EntryKind::Assign(path, v) if path.len() == 1 && path[0].name == key => Some(v.span),
            _ => None,
        })
    };
    // Where a number the recipe holds is written: at its value when the file says it, else
    // (a `--set`) at the block, saying so.
    let number_at = |block: &ast::Block, key: &str, value: f64| -> (ast::Span, String) {
        let written = block.entries.iter().find_map(|e| match &e.kind {
            ast::EntryKind::Assign(path, v) if path.len() == 1 && path[0].name == key => Some(v),
            _ => None,
        });
        match written {
            Some(v) if lower::eval::eval(v, &lower::eval::Env::new()).ok().and_then(|x| x.as_f64()) == Some(value) => {
                (v.span, String::new())
            }
            _ => (block.target.span, format!(" (`{key} = {}` from --set)", diag::fmt_num(value))),
        }
    };
    for train in trains {
        let Some(model) = models.iter().find(|m| m.graph.name == train.model) else { continue };
        out.extend(plan::loss_fits(model, train.loss));
        // A window of the stream must fit the sequence the model reads.
        let steps =
            model.graph.inputs.first().and_then(|&i| match model.shapes.shapes[i.index()].as_ref()?.0.first()? {
                ir::Dim::Steps { len, .. } => Some(*len),
                ir::Dim::Seq { max, .. } => *max,
                ir::Dim::Fixed(_) => None,
            });
        let block = file.blocks.iter().find(|b| b.kind == ast::BlockKind::Train && b.target.name == train.model);
        if let (Some(n), Some(steps), Some(block)) = (train.bptt, steps, block) {
            if n > steps {
                let (at, set) = number_at(block, "bptt", n as f64);
                out.push(
                    Diagnostic::error(
                        format!("`bptt = {n}` is longer than the {steps} steps the model's input holds"),
                        at,
                        format!("windows of {n} steps{set}"),
                    )
                    .with_help(format!("give the input `[seq <= {n}, …]`, or set `bptt = {steps}`")),
                );
            }
        }
        // Early stopping watches the validation loss: there must be one.
        if let (Some(k), true, Some(block)) = (train.patience, train.validate == 0.0, block) {
            let at = value_span(block, "stop").unwrap_or(block.target.span);
            out.push(
                Diagnostic::error(
                    format!("`stop = patience({k})` watches the validation loss, and this recipe holds none out"),
                    at,
                    "stops on what?",
                )
                .with_help("add `validate = 10%` to the `train` block"),
            );
        }
        // A warm-up longer than the run never reaches the rate it warms up to.
        if let (true, Some(block)) = (train.warmup > train.epochs, block) {
            let (w, e) = (train.warmup, train.epochs);
            let (at, set) = number_at(block, "warmup", w as f64);
            out.push(
                Diagnostic::error(
                    format!("`warmup = {w}` is longer than the run's {e} epochs"),
                    at,
                    format!("{w} epochs of warm-up{set}"),
                )
                .with_note(format!(
                    "the rate would rise for {w} epochs and stop at {}/{w} of the base rate, never reaching it",
                    e
                ))
                .with_help(format!("warm up for a part of the run, e.g. `warmup = {}`", (e / 5).max(1).min(e))),
            );
        }
        // A batch norm over one value per example and channel (after a dense layer) has no
        // variance in a batch of one.
        let per_example = model.graph.ids().find(|&id| {
            let node = model.graph.node(id);
            matches!(node.op, ops::Op::BatchNorm(_))
                && node
                    .inputs
                    .first()
                    .and_then(|&i| model.shapes.shapes[i.index()].as_ref())
                    .is_some_and(|s| s.rank() == 1)
        });
        if let (Some(bn), 1, Some(block)) = (per_example, train.batch, block) {
            let (at, set) = number_at(block, "batch", 1.0);
            out.push(
                Diagnostic::error(
                    format!(
                        "`{}` normalizes each feature over the batch: a batch of 1 has no variance",
                        model.graph.node(bn).name
                    ),
                    at,
                    format!("one example per batch{set}"),
                )
                .with_help("use a batch of at least 2 (PyTorch refuses a batch of 1 too)"),
            );
        }
        let outputs =
            model.graph.output.and_then(|o| model.shapes.shapes[o.index()].as_ref()).map(|s| s.elements().fixed);
        let Some(outputs) = outputs else { continue };
        let block = file.blocks.iter().find(|b| b.kind == ast::BlockKind::Train && b.target.name == train.model);
        if let (Some(bins), Some(block)) = (train.bins, block) {
            if bins as u64 != outputs {
                let at = value_span(block, "loss").unwrap_or(block.target.span);
                out.push(
                    Diagnostic::error(
                        format!(
                            "`cross_entropy(bins = {bins})` needs a model with {bins} outputs, this one has {outputs}"
                        ),
                        at,
                        format!("{bins} bins"),
                    )
                    .with_help(format!("end the model in `dense({bins}) -> softmax`, or set `bins = {outputs}`")),
                );
            }
        }
        // A data set's declared classes against a classifier's outputs.
        let block = train.data.as_deref().and_then(|d| {
            let block = file.blocks.iter().find(|b| b.kind == ast::BlockKind::Data && b.target.name == d)?;
            Some((block, datas.iter().find(|s| s.name == d)?))
        });
        if let Some((block, spec)) = block {
            out.extend(augment_fits(model, block, spec));
        }
        if let Some((block, spec)) = block.filter(|_| matches!(train.loss, plan::Loss::CrossEntropy(_))) {
            if let Some(k) = spec.classes {
                if k as u64 != outputs {
                    let at = value_span(block, "classes").unwrap_or(block.target.span);
                    out.push(
                        Diagnostic::error(
                            format!("data set `{}` declares {k} classes, but the model outputs {outputs}", spec.name),
                            at,
                            format!("{k} classes"),
                        )
                        .with_help(format!("end the model in `dense({k}) -> softmax`")),
                    );
                }
            }
        }
    }
    out
}

/// A data set's `augment` block against the model it trains: images (`[height, width,
/// channels]`) only, crops and shifts smaller than the image.
fn augment_fits(model: &Model, block: &ast::Block, spec: &spec::DataSpec) -> Vec<Diagnostic> {
    let Some(a) = spec.augment else { return Vec::new() };
    let (at, entries) = block
        .entries
        .iter()
        .find_map(|e| match &e.kind {
            ast::EntryKind::Block { key, entries, .. } if key.name == "augment" => Some((key.span, &entries[..])),
            _ => None,
        })
        .unwrap_or((block.target.span, &[]));
    let input =
        model.graph.inputs.first().and_then(|&i| Some((model.graph.node(i), model.shapes.shapes[i.index()].as_ref()?)));
    let Some((node, shape)) = input else { return Vec::new() };
    let Some((h, w, _)) = model.image_input() else {
        return vec![Diagnostic::error(
            format!("`augment` crops, shifts and flips images, and `{}` reads {shape}", node.name),
            at,
            "not images",
        )
        .with_label(node.span, format!("`{}` is {shape}", node.name))
        .with_help("augmentation needs an input declared `[height, width, channels]`; remove the `augment` block for other data")];
    };
    let mut out = Vec::new();
    for (key, n) in [("crop", a.crop), ("shift", a.shift)] {
        if n > 0 && n >= h.min(w) {
            let span = entries
                .iter()
                .find_map(|e| match &e.kind {
                    ast::EntryKind::Assign(p, v) if p.len() == 1 && p[0].name == key => Some(v.span),
                    _ => None,
                })
                .unwrap_or(at);
            out.push(
                Diagnostic::error(
                    format!("`{key} = {n}` moves the {h}×{w} images by as much as they measure"),
                    span,
                    format!("up to {n} pixels each way"),
                )
                .with_help(format!("a few pixels are usual: e.g. `{key} = {}`", (h.min(w) / 8).max(1))),
            );
        }
    }
    out
}

fn duplicate_models(file: &ast::File) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, m) in file.models.iter().enumerate() {
        if let Some(first) = file.models[..i].iter().find(|o| o.name.name == m.name.name) {
            out.push(
                Diagnostic::error(format!("model `{}` is defined twice", m.name), m.name.span, "defined again")
                    .with_label(first.name.span, "first defined here"),
            );
        }
    }
    out
}

/// What is wrong with a `block` definition whatever its uses: its name taken twice, or by a
/// layer or a model.
fn check_defs(file: &ast::File) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, b) in file.defs.iter().enumerate() {
        let name = &b.name.name;
        if let Some(first) = file.defs[..i].iter().find(|o| &o.name.name == name) {
            out.push(
                Diagnostic::error(format!("block `{name}` is defined twice"), b.name.span, "defined again")
                    .with_label(first.name.span, "first defined here"),
            );
        } else if ops::args::is_layer(name) {
            out.push(
                Diagnostic::error(format!("block `{name}` has the name of a layer"), b.name.span, "already a layer")
                    .with_help(format!("blocks are usually capitalised: `{}`", capitalised(name))),
            );
        } else if let Some(m) = file.models.iter().find(|m| &m.name.name == name) {
            out.push(
                Diagnostic::error(format!("block `{name}` has the name of a model"), b.name.span, "already a model")
                    .with_label(m.name.span, "the model"),
            );
        }
    }
    out
}

fn capitalised(name: &str) -> String {
    let mut c = name.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The models to compile with the overrides each one gets.
fn select<'a>(file: &'a ast::File, opts: &Options) -> Result<Vec<(&'a ast::Model, Overrides)>, UsageError> {
    let names: Vec<&str> = file.models.iter().map(|m| m.name.name.as_str()).collect();
    if let Some(want) = &opts.model {
        let Some(m) = file.models.iter().find(|m| &m.name.name == want) else {
            let mut msg = format!("--model {want}: no model `{want}` in this file");
            match diag::did_you_mean(want, names.iter().copied()) {
                Some(best) => msg.push_str(&format!(" (did you mean `{best}`?)")),
                None if names.is_empty() => msg.push_str(" (it defines no model)"),
                None => msg.push_str(&format!(" (it defines: {})", names.join(", "))),
            }
            return Err(UsageError(msg));
        };
        lower::check_overrides(m, &opts.overrides).map_err(UsageError)?;
        return Ok(vec![(m, opts.overrides.clone())]);
    }
    for key in opts.overrides.keys() {
        if !file.models.iter().any(|m| m.params.iter().any(|p| &p.name.name == key)) {
            let all: Vec<&str> =
                file.models.iter().flat_map(|m| m.params.iter().map(|p| p.name.name.as_str())).collect();
            let mut msg = format!("--set {key}: no model in this file has a parameter `{key}`");
            if let Some(best) = diag::did_you_mean(key, all.iter().copied()) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            return Err(UsageError(msg));
        }
    }
    let mut out = Vec::new();
    for (i, m) in file.models.iter().enumerate() {
        if file.models[..i].iter().any(|o| o.name.name == m.name.name) {
            continue;
        }
        let mine: Overrides = opts
            .overrides
            .iter()
            .filter(|(k, _)| m.params.iter().any(|p| &p.name.name == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        lower::check_overrides(m, &mine).map_err(UsageError)?;
        out.push((m, mine));
    }
    Ok(out)
}
