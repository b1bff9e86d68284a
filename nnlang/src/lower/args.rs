//! A layer call's arguments: matched to the layer's signature ([`Args::bind`]), then read
//! with their kinds and ranges checked ([`Args::positive_int`], [`Args::number_in`], …).
//! Errors point at the argument as written. Which layers exist, and what each builds, is the
//! op modules' business (`crate::ops`); this file only knows how arguments are read.

use super::eval::{eval, fmt_num, Env, Value};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ops::{self, Activation, Layer, Op};
use crate::syntax::ast::{Arg, Expr, ExprKind, Ident, Span};

/// Arguments matched to a layer's signature.
pub struct Args<'a> {
    /// The layer's name, for messages.
    pub kind: &'a str,
    /// The whole call, for errors about what is missing.
    pub call: Span,
    args: Vec<(&'static str, &'a Expr)>,
}

/// Whether `name` is a layer.
pub fn is_layer(name: &str) -> bool {
    ops::layer(name).is_some()
}

/// Layers that combine values rather than transform one.
pub fn is_merge(name: &str) -> bool {
    ops::layer(name).is_some_and(|l| l.merge)
}

/// "did you mean" over layer names.
pub fn suggest_layer(name: &str) -> Option<&'static str> {
    did_you_mean(name, ops::layers().map(|l| l.name))
}

/// An example of the layer as a person would write it, for help lines.
pub fn example(kind: &str) -> &'static str {
    ops::layer(kind).map_or("shown in docs/language.md", |l| l.example)
}

/// Builds the op of the layer call `kind(args)`.
pub fn build(kind: &str, call: Span, args: &[Arg], env: &Env) -> Result<Op, Diagnostic> {
    let Some(layer) = ops::layer(kind) else {
        return Err(Diagnostic::error(format!("unknown layer `{kind}`"), call, "not a layer")
            .with_suggestion(kind, ops::layers().map(|l| l.name)));
    };
    let a = Args::bind(layer, call, args)?;
    (layer.build)(&a, env)
}

fn describe_signature(layer: &Layer) -> String {
    if layer.args.is_empty() {
        return String::new();
    }
    let parts: Vec<String> =
        layer.args.iter().map(|(n, req)| if *req { n.to_string() } else { format!("{n} = …") }).collect();
    format!("; it is written `{}({})`", layer.name, parts.join(", "))
}

fn too_big(span: Span) -> Diagnostic {
    Diagnostic::error("this number is too large", span, "too large")
}

/// An argument above the largest tensor nnlang allows (2^40 elements): a typo, refused
/// before any arithmetic on it can overflow.
fn too_large(name: &str, kind: &str, n: i64, span: Span) -> Diagnostic {
    Diagnostic::error(format!("`{name}` of `{kind}` is far too large: {n}"), span, "more than 2^40")
        .with_note("no dimension, count or padding of a model can exceed 2^40; the number is probably mistyped")
}

/// "did you mean `hidden`?" when a bare word is close to a model parameter.
fn with_param_suggestion(d: Diagnostic, v: &Value, env: &Env) -> Diagnostic {
    match v {
        Value::Sym(s) => d.with_suggestion(s, env.keys().map(|k| k.as_str())),
        _ => d,
    }
}

impl<'a> Args<'a> {
    /// Matches `args` to `layer`'s signature: positional in order, named by name; every
    /// required argument present, none given twice.
    pub fn bind(layer: &'static Layer, call: Span, args: &'a [Arg]) -> Result<Args<'a>, Diagnostic> {
        let (kind, sig) = (layer.name, layer.args);
        let mut bound = Args { kind, call, args: Vec::new() };
        let mut positional = 0;
        for arg in args {
            let slot = match &arg.name {
                None => {
                    if let Some(refuse) = layer.positional_error {
                        return Err(refuse(arg.value.span));
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
                        .with_note(takes + &describe_signature(layer)));
                    };
                    positional += 1;
                    name
                }
                Some(Ident { name, span }) => match sig.iter().find(|(n, _)| n == name) {
                    Some(&(n, _)) => n,
                    None => {
                        let names = sig.iter().map(|(n, _)| *n);
                        let d =
                            Diagnostic::error(format!("`{kind}` has no argument `{name}`"), *span, "unknown argument")
                                .with_suggestion(name, names);
                        let d = if sig.is_empty() {
                            d
                        } else {
                            d.with_note(describe_signature(layer).trim_start_matches("; ").to_string())
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
                return Err(Diagnostic::error(
                    format!("`{kind}` needs `{name}`"),
                    call,
                    format!("`{name}` is missing"),
                )
                .with_help(format!("write it as {}", layer.example)));
            }
        }
        Ok(bound)
    }

    /// The expression given for `name`.
    pub fn get(&self, name: &str) -> Option<&'a Expr> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }

    /// A positive integer, if given.
    pub fn positive_int(&self, name: &str, env: &Env) -> Result<Option<usize>, Diagnostic> {
        let Some(e) = self.get(name) else { return Ok(None) };
        let v = eval(e, env)?;
        match v {
            Value::Int(n) if n as u64 > crate::shape::MAX_ELEMENTS => Err(too_large(name, self.kind, n, e.span)),
            Value::Int(n) if n >= 1 => usize::try_from(n).map(Some).map_err(|_| too_big(e.span)),
            Value::Int(n) => Err(Diagnostic::error(
                format!("`{name}` of `{}` must be at least 1, found {n}", self.kind),
                e.span,
                format!("{name} = {n}"),
            )),
            other => Err(with_param_suggestion(
                Diagnostic::error(
                    format!("`{name}` of `{}` must be a positive integer, found {}", self.kind, other.describe()),
                    e.span,
                    "expected a positive integer",
                ),
                &other,
                env,
            )),
        }
    }

    /// A required positive integer ([`Args::bind`] has checked that it is there).
    pub fn required_int(&self, name: &str, env: &Env) -> Result<usize, Diagnostic> {
        Ok(self.positive_int(name, env)?.unwrap_or(1))
    }

    /// A number in `[lo, hi]` (`(lo, hi]` with `open_lo`), if given, with its span.
    pub fn number_in(
        &self,
        name: &str,
        env: &Env,
        lo: f64,
        hi: f64,
        open_lo: bool,
        range: &str,
    ) -> Result<Option<(f64, Span)>, Diagnostic> {
        let Some(e) = self.get(name) else { return Ok(None) };
        let v = eval(e, env)?;
        let Some(x) = v.as_f64() else {
            let d = Diagnostic::error(
                format!("`{name}` of `{}` must be a number, found {}", self.kind, v.describe()),
                e.span,
                "expected a number",
            );
            return Err(with_param_suggestion(d, &v, env));
        };
        let below = if open_lo { x <= lo } else { x < lo };
        if below || x > hi || x.is_nan() {
            return Err(Diagnostic::error(
                format!("`{name}` of `{}` must be in {range}, found {}", self.kind, fmt_num(x)),
                e.span,
                "out of range",
            ));
        }
        Ok(Some((x, e.span)))
    }

    /// One of `choices`, written as a bare word, if given.
    pub fn symbol<'c>(&self, name: &str, env: &Env, choices: &[&'c str]) -> Result<Option<&'c str>, Diagnostic> {
        let Some(e) = self.get(name) else { return Ok(None) };
        let v = eval(e, env)?;
        if let Value::Sym(s) = &v {
            if let Some(c) = choices.iter().find(|c| **c == s) {
                return Ok(Some(c));
            }
        }
        let list: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
        let mut d = Diagnostic::error(
            format!("`{name}` of `{}` must be one of {}, found {}", self.kind, list.join(", "), v.describe()),
            e.span,
            "not one of the choices",
        );
        if let Value::Sym(s) = &v {
            d = d.with_suggestion(s, choices.iter().copied());
        }
        Err(d)
    }

    /// `activation = tanh`, or `activation = leaky_relu(alpha = 0.1)`, if given: any of the
    /// activation layers, read as that layer reads its arguments; `allowed` says which the
    /// layer takes (`why` is said of the others).
    pub fn activation(
        &self,
        env: &Env,
        allowed: fn(Activation) -> bool,
        why: &str,
    ) -> Result<Option<Activation>, Diagnostic> {
        let Some(e) = self.get("activation") else { return Ok(None) };
        let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
        let (name, args): (&str, &[Arg]) = match &e.kind {
            ExprKind::Call { name, args } if names.contains(&name.name.as_str()) => (name.name.as_str(), args),
            _ => match self.symbol("activation", env, &names)? {
                Some(n) => (n, &[]),
                None => return Ok(None),
            },
        };
        let Some(layer) = ops::layer(name) else { return Ok(None) };
        let Op::Activation(a) = (layer.build)(&Args::bind(layer, e.span, args)?, env)? else { return Ok(None) };
        if !allowed(a.function) {
            let ok: Vec<String> =
                Activation::ALL.iter().filter(|&&f| allowed(f)).map(|f| format!("`{}`", f.name())).collect();
            return Err(Diagnostic::error(
                format!("`{}` cannot be the activation of `{}`", a.function.name(), self.kind),
                e.span,
                why.to_string(),
            )
            .with_help(format!("use one of {}", ok.join(", "))));
        }
        Ok(Some(a.function))
    }

    /// `pad = 2`, `pad = same` (P = (F − 1)/2, F odd) or `pad = valid` (P = 0); 0 if not given.
    pub fn padding(&self, env: &Env, size: usize) -> Result<usize, Diagnostic> {
        let Some(e) = self.get("pad") else { return Ok(0) };
        match eval(e, env)? {
            Value::Int(p) if p as u64 > crate::shape::MAX_ELEMENTS => Err(too_large("pad", self.kind, p, e.span)),
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
                        self.kind,
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
}
