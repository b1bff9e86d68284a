//! The layer vocabulary: each layer's arguments, their defaults and ranges, and the
//! construction of its [`Op`]. Argument errors point at the argument as written.

use super::eval::{eval, fmt_num, Env, Value};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{Activation, Merge, Op, PoolKind, RnnOutput};
use crate::syntax::ast::{Arg, Expr, ExprKind, Ident, Span};

/// Every layer name the language knows, for "did you mean" and documentation.
pub const LAYER_NAMES: &[&str] = &[
    "dense",
    "fc",
    "conv",
    "local",
    "maxpool",
    "avgpool",
    "l2pool",
    "flatten",
    "dropout",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "softmax",
    "identity",
    "maxout",
    "rnn",
    "bidirectional",
    "add",
    "concat",
];

/// Layers that combine values rather than transform one.
pub fn is_merge(name: &str) -> bool {
    matches!(name, "add" | "concat")
}

pub fn is_layer(name: &str) -> bool {
    LAYER_NAMES.contains(&name)
}

/// A layer's arguments in positional order: `(name, required)`.
fn signature(kind: &str) -> &'static [(&'static str, bool)] {
    match kind {
        "dense" | "fc" => &[("units", true)],
        "conv" | "local" => &[("filters", true), ("size", true), ("stride", false), ("pad", false)],
        "maxpool" | "avgpool" | "l2pool" => &[("size", true), ("stride", false)],
        "dropout" => &[("keep", false), ("drop", false)],
        "leaky_relu" => &[("alpha", false)],
        "maxout" => &[("units", false), ("pieces", true)],
        "rnn" => &[("hidden", true), ("activation", false), ("output", false)],
        "bidirectional" => &[("layer", true), ("merge", false)],
        _ => &[],
    }
}

/// Arguments matched to a signature.
struct Bound<'a> {
    kind: &'a str,
    args: Vec<(&'static str, &'a Expr)>,
}

impl<'a> Bound<'a> {
    fn get(&self, name: &str) -> Option<&'a Expr> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }
}

fn bind<'a>(kind: &'a str, call: Span, args: &'a [Arg]) -> Result<Bound<'a>, Diagnostic> {
    let sig = signature(kind);
    let mut bound = Bound { kind, args: Vec::new() };
    let mut positional = 0;
    for arg in args {
        let slot = match &arg.name {
            None => {
                if kind == "dropout" {
                    return Err(dropout_positional(arg.value.span));
                }
                let Some(&(name, _)) = sig.get(positional) else {
                    let takes = match sig.len() {
                        0 => format!("`{kind}` takes no arguments"),
                        1 => format!("`{kind}` takes 1 argument"),
                        n => format!("`{kind}` takes at most {n} arguments"),
                    };
                    return Err(Diagnostic::error(
                        format!("too many arguments to `{kind}`"),
                        arg.value.span,
                        "this argument is extra",
                    )
                    .with_note(takes + &describe_signature(kind)));
                };
                positional += 1;
                name
            }
            Some(Ident { name, span }) => match sig.iter().find(|(n, _)| n == name) {
                Some(&(n, _)) => n,
                None => {
                    let names = sig.iter().map(|(n, _)| *n);
                    let d = Diagnostic::error(format!("`{kind}` has no argument `{name}`"), *span, "unknown argument")
                        .with_suggestion(name, names);
                    let d = if sig.is_empty() {
                        d
                    } else {
                        d.with_note(describe_signature(kind).trim_start_matches("; ").to_string())
                    };
                    return Err(d);
                }
            },
        };
        if bound.get(slot).is_some() {
            let at = arg.name.as_ref().map_or(arg.value.span, |n| n.span);
            return Err(Diagnostic::error(format!("`{slot}` is given twice to `{kind}`"), at, "given again here"));
        }
        bound.args.push((slot, &arg.value));
    }
    for &(name, required) in sig {
        if required && bound.get(name).is_none() {
            return Err(Diagnostic::error(format!("`{kind}` needs `{name}`"), call, format!("`{name}` is missing"))
                .with_help(format!("write it as {}", example(kind))));
        }
    }
    Ok(bound)
}

fn describe_signature(kind: &str) -> String {
    let sig = signature(kind);
    if sig.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = sig.iter().map(|(n, req)| if *req { n.to_string() } else { format!("{n} = …") }).collect();
    format!("; it is written `{kind}({})`", parts.join(", "))
}

/// An example of the layer as a person would write it, for help lines.
pub fn example(kind: &str) -> &'static str {
    match kind {
        "dense" => "`dense(128)`",
        "fc" => "`fc(128)`",
        "conv" => "`conv(filters = 32, size = 3, stride = 1, pad = same)`",
        "local" => "`local(filters = 32, size = 3, stride = 1, pad = 0)`",
        "maxpool" => "`maxpool(size = 2, stride = 2)`",
        "avgpool" => "`avgpool(size = 2, stride = 2)`",
        "l2pool" => "`l2pool(size = 2, stride = 2)`",
        "maxout" => "`maxout(units = 128, pieces = 2)` (or `maxout(pieces = 2)` after a convolution)",
        "rnn" => "`rnn(hidden = 64, activation = tanh, output = sequence)`",
        "bidirectional" => "`bidirectional(rnn(64), merge = concat)`",
        "dropout" => "`dropout(keep = 0.5)`",
        _ => "shown in docs/language.md",
    }
}

fn dropout_positional(span: Span) -> Diagnostic {
    Diagnostic::error("`dropout` needs `keep = p` or `drop = q`, not a bare number", span, "keep or drop?")
        .with_note(
            "the notes define p as the probability of KEEPING a unit; PyTorch and Keras take the \
             probability of DROPPING it, so a bare `dropout(0.5)` reads differently to each",
        )
        .with_help("write `dropout(keep = 0.5)` (keep half the units) or `dropout(drop = 0.2)` (drop a fifth)")
}

fn value_of(e: &Expr, env: &Env) -> Result<Value, Diagnostic> {
    eval(e, env)
}

fn positive_int(b: &Bound, name: &str, env: &Env) -> Result<Option<usize>, Diagnostic> {
    let Some(e) = b.get(name) else { return Ok(None) };
    let v = value_of(e, env)?;
    match v {
        Value::Int(n) if n >= 1 => usize::try_from(n).map(Some).map_err(|_| too_big(e.span)),
        Value::Int(n) => Err(Diagnostic::error(
            format!("`{name}` of `{}` must be at least 1, found {n}", b.kind),
            e.span,
            format!("{name} = {n}"),
        )),
        other => Err(with_param_suggestion(
            Diagnostic::error(
                format!("`{name}` of `{}` must be a positive integer, found {}", b.kind, other.describe()),
                e.span,
                "expected a positive integer",
            ),
            &other,
            env,
        )),
    }
}

/// "did you mean `hidden`?" when a bare word is close to a model parameter.
fn with_param_suggestion(d: Diagnostic, v: &Value, env: &Env) -> Diagnostic {
    match v {
        Value::Sym(s) => d.with_suggestion(s, env.keys().map(|k| k.as_str())),
        _ => d,
    }
}

fn too_big(span: Span) -> Diagnostic {
    Diagnostic::error("this number is too large", span, "too large")
}

fn number_in(
    b: &Bound,
    name: &str,
    env: &Env,
    lo: f64,
    hi: f64,
    open_lo: bool,
    range: &str,
) -> Result<Option<(f64, Span)>, Diagnostic> {
    let Some(e) = b.get(name) else { return Ok(None) };
    let v = value_of(e, env)?;
    let Some(x) = v.as_f64() else {
        let d = Diagnostic::error(
            format!("`{name}` of `{}` must be a number, found {}", b.kind, v.describe()),
            e.span,
            "expected a number",
        );
        return Err(with_param_suggestion(d, &v, env));
    };
    let below = if open_lo { x <= lo } else { x < lo };
    if below || x > hi || x.is_nan() {
        return Err(Diagnostic::error(
            format!("`{name}` of `{}` must be in {range}, found {}", b.kind, fmt_num(x)),
            e.span,
            "out of range",
        ));
    }
    Ok(Some((x, e.span)))
}

fn symbol<'a>(b: &Bound, name: &str, env: &Env, choices: &[&'a str]) -> Result<Option<&'a str>, Diagnostic> {
    let Some(e) = b.get(name) else { return Ok(None) };
    let v = value_of(e, env)?;
    if let Value::Sym(s) = &v {
        if let Some(c) = choices.iter().find(|c| **c == s) {
            return Ok(Some(c));
        }
    }
    let list: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
    let mut d = Diagnostic::error(
        format!("`{name}` of `{}` must be one of {}, found {}", b.kind, list.join(", "), v.describe()),
        e.span,
        "not one of the choices",
    );
    if let Value::Sym(s) = &v {
        d = d.with_suggestion(s, choices.iter().copied());
    }
    Err(d)
}

fn activation(b: &Bound, env: &Env) -> Result<Option<Activation>, Diagnostic> {
    let Some(e) = b.get("activation") else { return Ok(None) };
    if let ExprKind::Call { name, args } = &e.kind {
        if name.name == "leaky_relu" {
            let inner = bind("leaky_relu", e.span, args)?;
            let alpha = number_in(&inner, "alpha", env, 0.0, 1.0, false, "[0, 1]")?.map_or(0.01, |(a, _)| a);
            return Ok(Some(Activation::LeakyRelu { alpha }));
        }
    }
    Ok(symbol(b, "activation", env, &["tanh", "relu", "sigmoid", "identity", "leaky_relu"])?.map(|s| match s {
        "relu" => Activation::Relu,
        "sigmoid" => Activation::Sigmoid,
        "identity" => Activation::Identity,
        "leaky_relu" => Activation::LeakyRelu { alpha: 0.01 },
        _ => Activation::Tanh,
    }))
}

/// Builds the op for a non-merge layer `kind(args)`.
pub fn build(kind: &str, call: Span, args: &[Arg], env: &Env) -> Result<Op, Diagnostic> {
    let b = bind(kind, call, args)?;
    let req = |v: Option<usize>| v.unwrap_or(1);
    Ok(match kind {
        "dense" | "fc" => Op::Dense { units: req(positive_int(&b, "units", env)?) },
        "conv" | "local" => {
            let filters = req(positive_int(&b, "filters", env)?);
            let size = req(positive_int(&b, "size", env)?);
            let stride = positive_int(&b, "stride", env)?.unwrap_or(1);
            let pad = padding(&b, env, size)?;
            if kind == "conv" {
                Op::Conv { filters, size, stride, pad }
            } else {
                Op::Local { filters, size, stride, pad }
            }
        }
        "maxpool" | "avgpool" | "l2pool" => {
            let size = req(positive_int(&b, "size", env)?);
            let stride = positive_int(&b, "stride", env)?.unwrap_or(size);
            let kind = match kind {
                "maxpool" => PoolKind::Max,
                "avgpool" => PoolKind::Avg,
                _ => PoolKind::L2,
            };
            Op::Pool { kind, size, stride }
        }
        "dropout" => {
            let keep = number_in(&b, "keep", env, 0.0, 1.0, true, "(0, 1]")?;
            let drop = number_in(&b, "drop", env, 0.0, 1.0, false, "[0, 1)")?;
            match (keep, drop) {
                (Some(_), Some((_, s))) => {
                    return Err(Diagnostic::error("`dropout` takes `keep` or `drop`, not both", s, "given both")
                        .with_note("keep = 1 − drop: one of them says everything"))
                }
                (Some((k, _)), None) => Op::Dropout { keep: k },
                (None, Some((d, s))) => {
                    if d >= 1.0 {
                        return Err(Diagnostic::error("`drop` of `dropout` must be below 1", s, "drops every unit"));
                    }
                    Op::Dropout { keep: 1.0 - d }
                }
                (None, None) => return Err(dropout_positional(call)),
            }
        }
        "sigmoid" => Op::Activation { function: Activation::Sigmoid },
        "tanh" => Op::Activation { function: Activation::Tanh },
        "relu" => Op::Activation { function: Activation::Relu },
        "identity" => Op::Activation { function: Activation::Identity },
        "leaky_relu" => {
            let alpha = number_in(&b, "alpha", env, 0.0, 1.0, false, "[0, 1]")?.map_or(0.01, |(a, _)| a);
            Op::Activation { function: Activation::LeakyRelu { alpha } }
        }
        "softmax" => Op::Softmax,
        "flatten" => Op::Flatten,
        "maxout" => {
            let pieces = req(positive_int(&b, "pieces", env)?);
            match positive_int(&b, "units", env)? {
                Some(units) => Op::Maxout { units, pieces },
                // Without units: the maximum over groups of channels (after a convolution).
                None => Op::MaxoutChannels { pieces },
            }
        }
        "rnn" => {
            let hidden = req(positive_int(&b, "hidden", env)?);
            let activation = activation(&b, env)?.unwrap_or(Activation::Tanh);
            let output = match symbol(&b, "output", env, &["sequence", "last"])? {
                Some("last") => RnnOutput::Last,
                _ => RnnOutput::Sequence,
            };
            Op::Rnn { hidden, activation, output }
        }
        "bidirectional" => {
            let layer =
                b.get("layer").ok_or_else(|| Diagnostic::error("`bidirectional` needs an rnn", call, "missing"))?;
            let (name, args): (&Ident, &[Arg]) = match &layer.kind {
                ExprKind::Call { name, args } => (name, args),
                _ => {
                    return Err(Diagnostic::error(
                        "`bidirectional` wraps an `rnn(…)` layer",
                        layer.span,
                        "expected `rnn(…)` here",
                    )
                    .with_help("write `bidirectional(rnn(64), merge = concat)`"))
                }
            };
            if name.name != "rnn" {
                return Err(Diagnostic::error(
                    format!("`bidirectional` wraps an `rnn(…)` layer, found `{}`", name.name),
                    name.span,
                    "expected `rnn`",
                ));
            }
            let Op::Rnn { hidden, activation, output } = build("rnn", layer.span, args, env)? else {
                return Err(Diagnostic::error(
                    "`bidirectional` wraps an `rnn(…)` layer",
                    layer.span,
                    "expected `rnn(…)`",
                ));
            };
            let merge = match symbol(&b, "merge", env, &["concat", "add", "mul"])? {
                Some("add") => Merge::Add,
                Some("mul") => Merge::Mul,
                _ => Merge::Concat,
            };
            Op::Bidirectional { hidden, activation, output, merge }
        }
        other => {
            return Err(Diagnostic::error(format!("unknown layer `{other}`"), call, "not a layer")
                .with_suggestion(other, LAYER_NAMES.iter().copied()))
        }
    })
}

/// `pad = 2`, `pad = same` (P = (F − 1)/2, F odd) or `pad = valid` (P = 0).
fn padding(b: &Bound, env: &Env, size: usize) -> Result<usize, Diagnostic> {
    let Some(e) = b.get("pad") else { return Ok(0) };
    match value_of(e, env)? {
        Value::Int(p) if p >= 0 => usize::try_from(p).map_err(|_| too_big(e.span)),
        Value::Sym(s) if s == "valid" => Ok(0),
        Value::Sym(s) if s == "same" => {
            if size % 2 == 0 {
                Err(Diagnostic::error(
                    format!("`pad = same` needs an odd filter size, found size = {size}"),
                    e.span,
                    "no whole padding keeps the size",
                )
                .with_note(format!(
                    "same padding is P = (F − 1)/2 = ({size} − 1)/2 = {}",
                    fmt_num((size as f64 - 1.0) / 2.0)
                ))
                .with_help(format!(
                    "use size = {} or size = {}, or give `pad` as a number",
                    size - 1,
                    size + 1
                )))
            } else {
                Ok((size - 1) / 2)
            }
        }
        other => {
            let mut d = Diagnostic::error(
                format!(
                    "`pad` of `{}` must be a non-negative integer, `same` or `valid`, found {}",
                    b.kind,
                    other.describe()
                ),
                e.span,
                "not a padding",
            );
            if let Value::Sym(s) = &other {
                d = d.with_suggestion(s, ["same", "valid"]);
            }
            Err(d)
        }
    }
}

/// "did you mean" over layer names.
pub fn suggest_layer(name: &str) -> Option<&'static str> {
    did_you_mean(name, LAYER_NAMES.iter().copied())
}
