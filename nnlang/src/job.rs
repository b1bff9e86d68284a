//! From a checked file to a training job: the recipe's settings as runtime options, the
//! data block's files read and checked against the model, and the resolved model source.

use crate::lower::eval::Value;
use crate::plan::Loss;
use crate::recipe::{Recipe, Setting, Settings};
use crate::syntax::ast::BlockKind;
use crate::{Compiled, Model};
use nnlang_runtime::data::{self, DataError, Table};
use nnlang_runtime::train::{Init, OptimizerKind, Options, Schedule};
use std::path::Path;

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn call<'a>(s: &'a Settings, key: &str) -> Option<(&'a str, &'a std::collections::BTreeMap<String, Value>)> {
    match s.get(key) {
        Some(Setting::Call { name, args }) => Some((name.as_str(), args)),
        _ => None,
    }
}

fn value<'a>(s: &'a Settings, key: &str) -> Option<&'a Value> {
    match s.get(key) {
        Some(Setting::Value(v)) => Some(v),
        _ => None,
    }
}

/// The loss and the training options a `train` block asks for, with the documented defaults
/// for what it leaves out.
pub fn options(recipe: &Recipe) -> (Loss, Options) {
    let s = &recipe.settings;
    let d = Options::default();
    let loss = call(s, "loss").and_then(|c| crate::ops::loss::from_user_name(c.0)).unwrap_or(Loss::CrossEntropy);
    let optimizer = match call(s, "optimizer") {
        Some(("adam", a)) => OptimizerKind::Adam {
            lr: num(a.get("lr")).unwrap_or(1e-3),
            beta1: num(a.get("beta1")).unwrap_or(0.9),
            beta2: num(a.get("beta2")).unwrap_or(0.999),
            eps: num(a.get("eps")).unwrap_or(1e-8),
        },
        Some((_, a)) => OptimizerKind::Sgd {
            lr: num(a.get("lr")).unwrap_or(0.01),
            momentum: num(a.get("momentum")).unwrap_or(0.0),
            nesterov: matches!(a.get("nesterov"), Some(Value::Bool(true))),
        },
        None => d.optimizer,
    };
    let init = match call(s, "init") {
        Some(("he", _)) => Init::He,
        Some(("normal", a)) => Init::Normal { std: num(a.get("std")).unwrap_or(0.01) },
        Some(("uniform", a)) => Init::Uniform { a: num(a.get("a")).unwrap_or(0.05) },
        _ => Init::Xavier,
    };
    let reg = match s.get("regularize") {
        Some(Setting::Block(b)) => b.clone(),
        _ => Settings::new(),
    };
    let schedule = match call(s, "schedule") {
        Some(("step", a)) => Schedule::Step {
            every: num(a.get("every")).unwrap_or(1.0) as usize,
            factor: num(a.get("factor")).unwrap_or(1.0),
        },
        Some(("exponential", a)) => Schedule::Exponential { decay: num(a.get("decay")).unwrap_or(1.0) },
        Some(("plateau", a)) => Schedule::Plateau {
            factor: num(a.get("factor")).unwrap_or(0.5),
            patience: num(a.get("patience")).unwrap_or(3.0) as usize,
        },
        _ => Schedule::Constant,
    };
    let validate = match value(s, "validate") {
        Some(Value::Percent(p)) => p / 100.0,
        Some(Value::Float(f)) => *f,
        _ => 0.0,
    };
    let ema = match call(s, "average") {
        Some(("ema", a)) => num(a.get("decay")),
        _ => None,
    };
    let options = Options {
        optimizer,
        init,
        l1: num(value(&reg, "l1")).unwrap_or(0.0),
        l2: num(value(&reg, "l2")).unwrap_or(0.0),
        max_norm: num(value(&reg, "max_norm")),
        batch: num(value(s, "batch")).map_or(d.batch, |b| b as usize),
        epochs: num(value(s, "epochs")).map_or(d.epochs, |e| e as usize),
        schedule,
        validate,
        ema,
        seed: num(value(s, "seed")).map_or(0, |v| v as u64),
        threads: 1,
    };
    (loss, options)
}

/// `n` of `loss = cross_entropy(bins = n)`.
pub fn bins(recipe: &Recipe) -> Option<usize> {
    call(&recipe.settings, "loss").and_then(|(_, a)| num(a.get("bins"))).map(|b| b as usize)
}

/// The `train` block for `model` (or the only one in the file).
pub fn train_block<'a>(compiled: &'a Compiled, model: Option<&str>) -> Option<&'a Recipe> {
    let mut blocks = compiled.recipes.iter().filter(|r| r.kind == BlockKind::Train);
    match model {
        Some(m) => blocks.find(|r| r.target == m),
        None => blocks.next(),
    }
}

pub fn data_block<'a>(compiled: &'a Compiled, name: &str) -> Option<&'a Recipe> {
    compiled.recipes.iter().find(|r| r.kind == BlockKind::Data && r.target == name)
}

/// A data set read from a `data` block, ready for the model.
pub struct Loaded {
    pub train: Table,
    pub test: Option<Table>,
}

/// What the data must fit: the model's input width and, for classification, its classes.
pub struct Expect {
    /// `cross_entropy(bins = n)`: a regression target cut into n equal-width bins over the
    /// training targets' range, trained as classification.
    pub bins: Option<usize>,
    pub input_cols: usize,
    pub input_desc: String,
    /// `Some(k)`: labels are class indices below k; `None`: targets are `target_cols` values.
    pub classes: Option<usize>,
    pub target_cols: usize,
}

fn source(setting: &Setting, base: &Path) -> Result<(String, Vec<std::path::PathBuf>, Option<usize>), String> {
    let Setting::Call { name, args } = setting else {
        return Err("a data source is idx(…), npy(…) or csv(…)".into());
    };
    let path = |k: &str| match args.get(k) {
        Some(Value::Str(s)) => Some(base.join(s)),
        _ => None,
    };
    let files: Vec<_> = ["images", "labels", "x", "y", "path"].iter().filter_map(|k| path(k)).collect();
    let label = num(args.get("label")).map(|v| v as usize);
    Ok((name.clone(), files, label))
}

fn read_source(setting: &Setting, base: &Path) -> Result<Table, DataError> {
    let (kind, files, label) = source(setting, base).map_err(|m| DataError::new(base, m))?;
    match (kind.as_str(), files.as_slice()) {
        ("idx", [images, labels]) => {
            let x = data::idx::read(images)?;
            let y = data::idx::read(labels)?;
            if y.dims.len() != 1 {
                return Err(DataError::new(
                    labels,
                    format!("labels must be one-dimensional, found {} dimensions", y.dims.len()),
                ));
            }
            if x.dims[0] != y.dims[0] {
                return Err(DataError::new(
                    labels,
                    format!("{} labels for {} images in {}", y.dims[0], x.dims[0], images.display()),
                ));
            }
            let cols = x.dims[1..].iter().product::<usize>();
            Ok(Table {
                x: x.data.iter().map(|&b| f32::from(b)).collect(),
                cols,
                y: y.data.iter().map(|&b| f32::from(b)).collect(),
                y_cols: 1,
            })
        }
        ("npy", [xp, yp]) => {
            let x = data::npy::read(xp)?;
            let y = data::npy::read(yp)?;
            if x.shape.first() != y.shape.first() {
                return Err(DataError::new(
                    yp,
                    format!("{:?} targets for {:?} examples in {}", y.shape.first(), x.shape.first(), xp.display()),
                ));
            }
            let rows = x.shape.first().copied().unwrap_or(0).max(1);
            Ok(Table { cols: x.data.len() / rows, x: x.data, y_cols: y.data.len() / rows, y: y.data })
        }
        ("csv", [p]) => data::csv::read(p, label),
        _ => Err(DataError::new(base, format!("`{kind}` data source with {} files", files.len()))),
    }
}

/// Reads and checks the data of a `data` block; paths are relative to `base`.
pub fn load(block: &Recipe, base: &Path, expect: &Expect) -> Result<Loaded, DataError> {
    let s = &block.settings;
    let Some(train_src) = s.get("train") else {
        return Err(DataError::new(base, format!("data set `{}` has no `train = …` source", block.target)));
    };
    let describe = |setting: &Setting| {
        source(setting, base).ok().and_then(|(_, f, _)| f.first().cloned()).unwrap_or_else(|| base.to_path_buf())
    };
    let mut train = read_source(train_src, base)?;
    let mut test = s.get("test").map(|t| read_source(t, base)).transpose()?;
    if let (Some(declared), Some(k)) = (num(value(s, "classes")), expect.classes) {
        if declared as usize != k {
            return Err(DataError::new(
                base,
                format!("data set `{}` declares {declared} classes, but the model outputs {k}", block.target),
            ));
        }
    }
    if let Some(bins) = expect.bins {
        let file = describe(train_src);
        if train.y_cols != 1 {
            return Err(DataError::new(&file, format!("binning needs one target per example, found {}", train.y_cols)));
        }
        let lo = train.y.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = train.y.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(DataError::new(&file, "the targets are not finite numbers"));
        }
        let width = ((hi - lo) / bins as f32).max(f32::MIN_POSITIVE);
        let bin = |v: f32| (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1) as f32;
        train.y.iter_mut().for_each(|v| *v = bin(*v));
        if let Some(t) = &mut test {
            t.y.iter_mut().for_each(|v| *v = if v.is_finite() { bin(*v) } else { *v });
        }
    }
    let scale = num(value(s, "scale"));
    let standardize = matches!(value(s, "standardize"), Some(Value::Bool(true)));
    let stats = standardize.then(|| train.moments());
    for (table, setting) in std::iter::once((&mut train, train_src)).chain(test.as_mut().zip(s.get("test"))) {
        let file = describe(setting);
        if table.cols != expect.input_cols {
            return Err(DataError::new(
                &file,
                format!(
                    "{} features per example, but the model's input {} has {}",
                    table.cols, expect.input_desc, expect.input_cols
                ),
            ));
        }
        if let Some(k) = expect.classes {
            if let Some((row, label)) = table.first_bad_label(k) {
                return Err(DataError::new(
                    &file,
                    format!("example {row} has label {label}, outside the model's {k} classes 0..{}", k - 1),
                ));
            }
        } else if table.y_cols != expect.target_cols {
            return Err(DataError::new(
                &file,
                format!("{} target values per example, the model outputs {}", table.y_cols, expect.target_cols),
            ));
        }
        if let Some(sc) = scale {
            table.scale(sc as f32);
        }
        if let Some((m, sd)) = &stats {
            table.standardize(m, sd);
        }
        if let Some((row, col, target)) = table.first_non_finite() {
            let what = if target { "target" } else { "feature" };
            return Err(DataError::new(&file, format!("example {row}, {what} {col} is NaN or infinite")));
        }
    }
    Ok(Loaded { train, test })
}

/// What the data of `model` must look like for `loss` (`bins` from `cross_entropy(bins = n)`).
pub fn expect(model: &Model, loss: Loss, bins: Option<usize>) -> Expect {
    let g = &model.graph;
    let input = g.inputs.first().copied();
    let shape = input.and_then(|i| model.shapes.shapes[i.index()].clone());
    let out_cols =
        g.output.and_then(|o| model.shapes.shapes[o.index()].as_ref()).map_or(0, |s| s.elements().fixed as usize);
    Expect {
        bins,
        input_cols: shape.as_ref().map_or(0, |s| s.elements().fixed as usize),
        input_desc: match (input, &shape) {
            (Some(i), Some(s)) => format!("`{}` {s}", g.node(i).name),
            _ => "?".into(),
        },
        classes: (loss == Loss::CrossEntropy).then_some(out_cols),
        target_cols: out_cols,
    }
}

/// The model's source with each parameter's default replaced by the value it was trained
/// with, under a header saying so.
pub fn resolved_source(source: &str, compiled: &Compiled, model: &Model, note: &str) -> String {
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    if let Some(m) = compiled.file.models.iter().find(|m| m.name.name == model.graph.name) {
        for p in &m.params {
            if let (Some(default), Some((_, v))) =
                (&p.default, model.graph.params.iter().find(|(k, _)| *k == p.name.name))
            {
                edits.push((default.span.start, default.span.end, v.to_string()));
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = source.to_string();
    for (s, e, text) in edits {
        if s <= e && e <= out.len() && out.is_char_boundary(s) && out.is_char_boundary(e) {
            out.replace_range(s..e, &text);
        }
    }
    format!("// {note}\n{out}")
}

/// The memory of one training step, for `nnlangc check`: the planned arena beside the naive
/// sum of every buffer of the unoptimised plan. The loss and batch are the `train` block's,
/// or, without one, what the model's last layer suggests at batch 64.
pub fn memory_report(compiled: &Compiled, model: &Model) -> String {
    use crate::plan::{build_at, Level, Mode};
    use crate::summary::bytes;
    let (loss, batch, from) = match train_block(compiled, Some(&model.graph.name)) {
        Some(r) => {
            let (l, o) = options(r);
            (l, o.batch, "its `train` block")
        }
        None => (crate::ops::loss::default_for(&model.graph), 64, "no `train` block; assumed"),
    };
    let name = crate::ops::loss::user_name(loss);
    let optimized = build_at(model, Mode::Training(loss), batch, Level::Full);
    let naive = build_at(model, Mode::Training(loss), batch, Level::None);
    match (optimized, naive) {
        (Ok(p), Ok(n)) => {
            let (planned, naive) = (4 * p.arena_len as u64, 4 * n.naive_len as u64);
            let saved = if naive > 0 { 100.0 * (1.0 - planned as f64 / naive as f64) } else { 0.0 };
            format!(
                "  training step (batch {batch}, {name}; {from}): arena {} planned, {} if every buffer of the unoptimised plan had its own ({saved:.0}% less); {} steps\n",
                bytes(planned),
                bytes(naive),
                p.steps.len()
            )
        }
        _ => "  training step: not planned (the model has layers that cannot run yet)\n".to_string(),
    }
}
