//! A layer call's arguments, evaluated: matched to the layer's signature ([`Args::bind`]),
//! then read with their kinds and ranges checked ([`Args::positive_int`],
//! [`Args::number_in`], …). Errors point at the argument as written. The front end hands
//! over values, never syntax: an argument is a [`Value`] (or the error evaluating it), or a
//! call to a layer (`leaky_relu(alpha = 0.1)`, `rnn(64)`) with arguments of its own.

use super::{Activation, Layer, Op};
use crate::diag::{did_you_mean, fmt_f64, fmt_num, Diagnostic, Span};
use std::fmt;

/// The value of a constant expression (a layer argument or a model parameter).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string or a bare word (`same`, `relu`).
    Str(String),
    /// `10%`, as written.
    Percent(f64),
    /// A bare name that is not a parameter: `same`, `tanh`, `seq`, `cross_entropy`.
    Sym(String),
}

impl Value {
    /// The value with its kind, for messages (`the integer 3`).
    pub fn describe(&self) -> String {
        match self {
            Value::Int(v) => format!("the integer {v}"),
            Value::Float(v) => format!("the number {}", fmt_f64(*v)),
            Value::Bool(v) => format!("the boolean `{v}`"),
            Value::Str(s) => format!("the string \"{s}\""),
            Value::Percent(p) => format!("the percentage {}%", fmt_num(*p)),
            Value::Sym(s) => format!("the name `{s}`"),
        }
    }
    /// The value as a real number, for an integer or a real.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => f.write_str(&fmt_num(*v)),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "\"{s}\""),
            Value::Percent(p) => write!(f, "{}%", fmt_num(*p)),
            Value::Sym(s) => f.write_str(s),
        }
    }
}

/// An argument's value as given.
#[derive(Clone, Debug, PartialEq)]
pub enum Given {
    /// A constant expression's value, or why it has none.
    Value(Result<Value, Diagnostic>),
    /// A call: `leaky_relu(alpha = 0.1)` as an activation, `rnn(64)` inside `bidirectional`.
    Call(Call),
}

/// A call written as an argument (or a layer call itself): its name and arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The name called.
    pub name: String,
    /// Where the name is written.
    pub name_span: Span,
    /// Its arguments, in order.
    pub args: Vec<GivenArg>,
}

/// One argument as written: its name, if given, its value and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct GivenArg {
    /// `name = …`, with where the name is written.
    pub name: Option<(String, Span)>,
    /// The value.
    pub value: Given,
    /// Where the value is written.
    pub span: Span,
}

impl Given {
    /// The value, or why there is none: a call is not a value.
    fn value(&self, span: Span) -> Result<&Value, Diagnostic> {
        match self {
            Given::Value(Ok(v)) => Ok(v),
            Given::Value(Err(d)) => Err(d.clone()),
            Given::Call(_) => Err(not_a_value(span)),
        }
    }
}

/// The error for a layer expression where a value is expected.
pub fn not_a_value(span: Span) -> Diagnostic {
    Diagnostic::error("expected a value, found a layer expression", span, "a value is expected here")
}

/// Arguments matched to a layer's signature.
pub struct Args<'a> {
    /// The layer's name, for messages.
    pub kind: &'a str,
    /// The whole call, for errors about what is missing.
    pub call: Span,
    args: Vec<(&'static str, &'a GivenArg)>,
    /// The model's parameter names, for "did you mean" on a bare word.
    params: &'a [String],
}

/// Whether `name` is a layer.
pub fn is_layer(name: &str) -> bool {
    super::layer(name).is_some()
}

/// Layers that combine values rather than transform one.
pub fn is_merge(name: &str) -> bool {
    super::layer(name).is_some_and(|l| l.merge)
}

/// "did you mean" over layer names.
pub fn suggest_layer(name: &str) -> Option<&'static str> {
    did_you_mean(name, super::layers().map(|l| l.name))
}

/// An example of the layer as a person would write it, for help lines.
pub fn example(kind: &str) -> &'static str {
    super::layer(kind).map_or("shown in docs/language.md", |l| l.example)
}

/// Builds the op of the layer call `kind(args)` written at `call`; `params` are the model's
/// parameter names (for suggestions).
pub fn build(kind: &str, call: Span, args: &[GivenArg], params: &[String]) -> Result<Op, Diagnostic> {
    let Some(layer) = super::layer(kind) else {
        return Err(Diagnostic::error(format!("unknown layer `{kind}`"), call, "not a layer")
            .with_suggestion(kind, super::layers().map(|l| l.name)));
    };
    let a = Args::bind(layer, call, args, params)?;
    (layer.build)(&a)
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
fn with_param_suggestion(d: Diagnostic, v: &Value, params: &[String]) -> Diagnostic {
    match v {
        Value::Sym(s) => d.with_suggestion(s, params.iter().map(|k| k.as_str())),
        _ => d,
    }
}

impl<'a> Args<'a> {
    /// Matches `args` to `layer`'s signature: positional in order, named by name; every
    /// required argument present, none given twice.
    pub fn bind(
        layer: &'static Layer,
        call: Span,
        args: &'a [GivenArg],
        params: &'a [String],
    ) -> Result<Args<'a>, Diagnostic> {
        let (kind, sig) = (layer.name, layer.args);
        let mut bound = Args { kind, call, args: Vec::new(), params };
        let mut positional = 0;
        for arg in args {
            let slot = match &arg.name {
                None => {
                    if let Some(refuse) = layer.positional_error {
                        return Err(refuse(arg.span));
                    }
                    let Some(&(name, _)) = sig.get(positional) else {
                        let takes = match sig.len() {
                            0 => format!("`{kind}` takes no arguments"),
                            1 => format!("`{kind}` takes 1 argument"),
                            n => format!("`{kind}` takes at most {n} arguments"),
                        };
                        return Err(Diagnostic::error(
                            format!("too many arguments to `{kind}`"),
                            arg.span,
                            "this argument is extra",
                        )
                        .with_note(takes + &describe_signature(layer)));
                    };
                    positional += 1;
                    name
                }
                Some((name, span)) => match sig.iter().find(|(n, _)| n == name) {
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
                let at = arg.name.as_ref().map_or(arg.span, |n| n.1);
                return Err(Diagnostic::error(format!("`{slot}` is given twice to `{kind}`"), at, "given again here"));
            }
            bound.args.push((slot, arg));
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

    /// A call given as an argument (`rnn(64)` in `bidirectional`), bound to `layer`'s
    /// signature; `span` is the whole call.
    pub fn nested(&self, layer: &'static Layer, span: Span, args: &'a [GivenArg]) -> Result<Args<'a>, Diagnostic> {
        Args::bind(layer, span, args, self.params)
    }

    /// The argument given for `name`.
    pub fn get(&self, name: &str) -> Option<&'a GivenArg> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// The value given for `name` (an error if it has none), with where it is written.
    /// Where argument `name`'s value is written (the call when it is not given).
    pub fn span_of(&self, name: &str) -> Span {
        self.value(name).ok().flatten().map_or(self.call, |(_, s)| s)
    }

    fn value(&self, name: &str) -> Result<Option<(&'a Value, Span)>, Diagnostic> {
        let Some(a) = self.get(name) else { return Ok(None) };
        Ok(Some((a.value.value(a.span)?, a.span)))
    }

    /// A positive integer, if given.
    pub fn positive_int(&self, name: &str) -> Result<Option<usize>, Diagnostic> {
        let Some((v, span)) = self.value(name)? else { return Ok(None) };
        match *v {
            Value::Int(n) if n >= 1 && n as u64 > super::rule::MAX_ELEMENTS => Err(too_large(name, self.kind, n, span)),
            Value::Int(n) if n >= 1 => usize::try_from(n).map(Some).map_err(|_| too_big(span)),
            Value::Int(n) => Err(Diagnostic::error(
                format!("`{name}` of `{}` must be at least 1, found {n}", self.kind),
                span,
                format!("{name} = {n}"),
            )),
            _ => Err(with_param_suggestion(
                Diagnostic::error(
                    format!("`{name}` of `{}` must be a positive integer, found {}", self.kind, v.describe()),
                    span,
                    "expected a positive integer",
                ),
                v,
                self.params,
            )),
        }
    }

    /// `true` or `false`, if given.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, Diagnostic> {
        let Some((v, span)) = self.value(name)? else { return Ok(None) };
        match *v {
            Value::Bool(b) => Ok(Some(b)),
            _ => Err(with_param_suggestion(
                Diagnostic::error(
                    format!("`{name}` of `{}` must be `true` or `false`, found {}", self.kind, v.describe()),
                    span,
                    "expected `true` or `false`",
                ),
                v,
                self.params,
            )),
        }
    }

    /// A required positive integer ([`Args::bind`] has checked that it is there).
    pub fn required_int(&self, name: &str) -> Result<usize, Diagnostic> {
        Ok(self.positive_int(name)?.unwrap_or(1))
    }

    /// A number in `[lo, hi]` (`(lo, hi]` with `open_lo`), if given, with its span.
    pub fn number_in(
        &self,
        name: &str,
        lo: f64,
        hi: f64,
        open_lo: bool,
        range: &str,
    ) -> Result<Option<(f64, Span)>, Diagnostic> {
        let Some((v, span)) = self.value(name)? else { return Ok(None) };
        let Some(x) = v.as_f64() else {
            let d = Diagnostic::error(
                format!("`{name}` of `{}` must be a number, found {}", self.kind, v.describe()),
                span,
                "expected a number",
            );
            return Err(with_param_suggestion(d, v, self.params));
        };
        let below = if open_lo { x <= lo } else { x < lo };
        if below || x > hi || x.is_nan() {
            return Err(Diagnostic::error(
                format!("`{name}` of `{}` must be in {range}, found {}", self.kind, fmt_num(x)),
                span,
                "out of range",
            ));
        }
        Ok(Some((x, span)))
    }

    /// One of `choices`, written as a bare word, if given.
    pub fn symbol<'c>(&self, name: &str, choices: &[&'c str]) -> Result<Option<&'c str>, Diagnostic> {
        let Some((v, span)) = self.value(name)? else { return Ok(None) };
        if let Value::Sym(s) = v {
            if let Some(c) = choices.iter().find(|c| **c == s) {
                return Ok(Some(c));
            }
        }
        let list: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
        let mut d = Diagnostic::error(
            format!("`{name}` of `{}` must be one of {}, found {}", self.kind, list.join(", "), v.describe()),
            span,
            "not one of the choices",
        );
        if let Value::Sym(s) = v {
            d = d.with_suggestion(s, choices.iter().copied());
        }
        Err(d)
    }

    /// `activation = tanh`, or `activation = leaky_relu(alpha = 0.1)`, if given: any of the
    /// activation layers, read as that layer reads its arguments; `allowed` says which the
    /// layer takes (`why` is said of the others).
    pub fn activation(&self, allowed: fn(Activation) -> bool, why: &str) -> Result<Option<Activation>, Diagnostic> {
        let Some(e) = self.get("activation") else { return Ok(None) };
        let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
        let (name, args): (&str, &[GivenArg]) = match &e.value {
            Given::Call(c) if names.contains(&c.name.as_str()) => (c.name.as_str(), &c.args),
            _ => match self.symbol("activation", &names)? {
                Some(n) => (n, &[]),
                None => return Ok(None),
            },
        };
        let Some(layer) = super::layer(name) else { return Ok(None) };
        let Op::Activation(a) = (layer.build)(&Args::bind(layer, e.span, args, self.params)?)? else {
            return Ok(None);
        };
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

    /// `pad = 2`, `pad = same` (P = d·(F − 1)/2, which must be whole: F odd without
    /// dilation) or `pad = valid` (P = 0); 0 if not given. `dil` is the dilation.
    pub fn padding(&self, size: usize, dil: usize) -> Result<usize, Diagnostic> {
        let Some((v, span)) = self.value("pad")? else { return Ok(0) };
        match *v {
            Value::Int(p) if p as u64 > super::rule::MAX_ELEMENTS => Err(too_large("pad", self.kind, p, span)),
            Value::Int(p) if p >= 0 => usize::try_from(p).map_err(|_| too_big(span)),
            Value::Sym(ref s) if s == "valid" => Ok(0),
            Value::Sym(ref s) if s == "same" => {
                let reach = dil as u128 * size.saturating_sub(1) as u128;
                if reach.is_multiple_of(2) && reach / 2 > super::rule::MAX_ELEMENTS as u128 {
                    Err(Diagnostic::error(
                        format!("`pad = same` of `{}` is far too large: {}·({size} − 1)/2 = {}", self.kind, dil, reach / 2),
                        span,
                        "more than 2^40",
                    )
                    .with_note("no dimension, count or padding of a model can exceed 2^40; the size or the dilation is probably mistyped"))
                } else if !reach.is_multiple_of(2) && dil == 1 {
                    Err(Diagnostic::error(
                        format!("`pad = same` needs an odd filter size, found size = {size}"),
                        span,
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
                } else if !reach.is_multiple_of(2) {
                    Err(Diagnostic::error(
                        format!("`pad = same` needs an odd filter size or an even dilation, found size = {size} and dilation = {dil}"),
                        span,
                        "no whole padding keeps the size",
                    )
                    .with_note(format!(
                        "same padding is P = d·(F − 1)/2 = {dil}·({size} − 1)/2 = {}",
                        fmt_num(reach as f64 / 2.0)
                    ))
                    .with_help(format!(
                        "use size = {} or size = {}, or dilation = {}, or give `pad` as a number",
                        size - 1,
                        size + 1,
                        dil + 1
                    )))
                } else {
                    Ok((reach / 2) as usize)
                }
            }
            _ => {
                let mut d = Diagnostic::error(
                    format!(
                        "`pad` of `{}` must be a non-negative integer, `same` or `valid`, found {}",
                        self.kind,
                        v.describe()
                    ),
                    span,
                    "not a padding",
                );
                if let Value::Sym(s) = v {
                    d = d.with_suggestion(s, ["same", "valid"]);
                }
                Err(d)
            }
        }
    }
}
