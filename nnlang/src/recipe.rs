//! The `train`, `data`, `search` and `ensemble` blocks: checked against a schema of known
//! keys and value kinds, then kept as plain [`Settings`] for the stages that use them.
//! Every key, argument and value is checked here, so that a typo in a training recipe is
//! found before anything runs.

use crate::diag::{did_you_mean, Diagnostic};
use crate::lower::eval::{eval, fmt_num, Env, Value};
use crate::ops::LossKind;
use crate::syntax::ast::{Block, BlockKind, Entry, EntryKind, Expr, ExprKind, File, Ident, Span};
use std::collections::BTreeMap;

/// A checked setting.
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    /// A single value (`batch = 64`).
    Value(Value),
    /// `sgd(lr = 0.1, momentum = 0.9)`, arguments by name.
    Call {
        /// The call's name.
        name: String,
        /// Its arguments by name.
        args: BTreeMap<String, Value>,
    },
    /// A nested block (`data { … }`).
    Block(Settings),
}

/// Settings by key.
pub type Settings = BTreeMap<String, Setting>;

/// `path ~ distribution` in a search block.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The searched key (`[optimizer, lr]`).
    pub path: Vec<String>,
    /// The distribution's name (`log_uniform`).
    pub distribution: String,
    /// Its arguments, in order.
    pub args: Vec<Value>,
}

/// A checked recipe block.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// `train`, `data`, `search` or `ensemble`.
    pub kind: BlockKind,
    /// The model (or, for `data`, the data set's name).
    pub target: String,
    /// The data set of `train … on …`.
    pub on: Option<String>,
    /// Its settings.
    pub settings: Settings,
    /// A search block's `path ~ distribution` lines.
    pub samples: Vec<Sample>,
    /// `stage name { … }` in a search block, in order.
    pub stages: Vec<(String, Settings)>,
}

#[derive(Clone, Copy)]
enum Spec {
    PosInt,
    /// An integer in `[lo, hi]`: a count with a limit (`bins`, `trials`, `members`).
    Count(i64, i64),
    NonNegInt,
    PosNum,
    NonNegNum,
    /// [0, 1)
    Unit,
    /// (0, 1]
    Factor,
    Bool,
    Str,
    /// `10%` or a fraction in (0, 1)
    Fraction,
    Choice(&'static [Form]),
    Block(&'static [(&'static str, Spec)]),
    /// One of these bare words.
    Word(&'static [&'static str]),
    /// A number > 0, or one of these calls spelling the same thing (`clip = 5`,
    /// `clip = norm(5)`).
    NumberOr(&'static [Form]),
}

#[derive(Clone, Copy)]
struct Form {
    name: &'static str,
    /// `(name, spec, required)` in positional order.
    args: &'static [(&'static str, Spec, bool)],
}

const fn form(name: &'static str, args: &'static [(&'static str, Spec, bool)]) -> Form {
    Form { name, args }
}

const SOURCE: &[Form] = &[
    form("idx", &[("images", Spec::Str, true), ("labels", Spec::Str, true)]),
    form("npy", &[("x", Spec::Str, true), ("y", Spec::Str, true)]),
    form("csv", &[("path", Spec::Str, true), ("label", Spec::NonNegInt, false)]),
    form("sequences", &[("path", Spec::Str, true)]),
    form("text", &[("path", Spec::Str, true)]),
    form(
        "images",
        &[
            ("path", Spec::Str, true),
            ("height", Spec::Count(1, 1 << 16), false),
            ("width", Spec::Count(1, 1 << 16), false),
            ("channels", Spec::Count(1, 3), false),
        ],
    ),
];

const TRAIN: &[(&str, Spec)] = &[
    (
        "loss",
        Spec::Choice(&[
            form(
                LossKind::CrossEntropy.name(),
                &[("bins", Spec::Count(2, 1 << 16), false), ("smoothing", Spec::Unit, false)],
            ),
            form(LossKind::BinaryCrossEntropy.name(), &[]),
            form(LossKind::MeanSquaredError.name(), &[]),
        ]),
    ),
    (
        "optimizer",
        Spec::Choice(&[
            form(
                "sgd",
                &[("lr", Spec::PosNum, false), ("momentum", Spec::Unit, false), ("nesterov", Spec::Bool, false)],
            ),
            form(
                "adam",
                &[
                    ("lr", Spec::PosNum, false),
                    ("beta1", Spec::Unit, false),
                    ("beta2", Spec::Unit, false),
                    ("eps", Spec::PosNum, false),
                ],
            ),
            form(
                "adamw",
                &[
                    ("lr", Spec::PosNum, false),
                    ("beta1", Spec::Unit, false),
                    ("beta2", Spec::Unit, false),
                    ("eps", Spec::PosNum, false),
                    ("weight_decay", Spec::Unit, false),
                ],
            ),
        ]),
    ),
    (
        "init",
        Spec::Choice(&[
            form("xavier", &[]),
            form("he", &[]),
            form("normal", &[("std", Spec::PosNum, true)]),
            form("uniform", &[("a", Spec::PosNum, true)]),
        ]),
    ),
    ("regularize", Spec::Block(&[("l1", Spec::NonNegNum), ("l2", Spec::NonNegNum), ("max_norm", Spec::PosNum)])),
    ("batch", Spec::PosInt),
    ("epochs", Spec::PosInt),
    (
        "schedule",
        Spec::Choice(&[
            form("constant", &[]),
            form("step", &[("every", Spec::PosInt, true), ("factor", Spec::Factor, true)]),
            form("exponential", &[("decay", Spec::Factor, true)]),
            form("plateau", &[("factor", Spec::Factor, true), ("patience", Spec::PosInt, false)]),
            form("cosine", &[("min", Spec::Unit, false)]),
        ]),
    ),
    ("warmup", Spec::NonNegInt),
    ("validate", Spec::Fraction),
    ("average", Spec::Choice(&[form("none", &[]), form("ema", &[("decay", Spec::Unit, true)])])),
    ("clip", Spec::NumberOr(&[form("norm", &[("max", Spec::PosNum, true)])])),
    ("accumulate", Spec::Count(1, 1 << 16)),
    ("stop", Spec::Choice(&[form("patience", &[("epochs", Spec::PosInt, true)]), form("never", &[])])),
    ("bptt", Spec::PosInt),
    ("seed", Spec::NonNegInt),
];

const DATA: &[(&str, Spec)] = &[
    ("train", Spec::Choice(SOURCE)),
    ("test", Spec::Choice(SOURCE)),
    ("scale", Spec::PosNum),
    ("standardize", Spec::Bool),
    ("classes", Spec::PosInt),
    ("augment", Spec::Block(&[("crop", Spec::NonNegInt), ("shift", Spec::NonNegInt), ("flip", Spec::Bool)])),
];

/// The most trials a search (or one of its stages) may run, and members an ensemble may have:
/// beyond them a typo, refused before anything is allocated or trained.
pub const MAX_TRIALS: i64 = 100_000;
/// See [`MAX_TRIALS`].
pub const MAX_MEMBERS: i64 = 1_000;

const SEARCH: &[(&str, Spec)] = &[("trials", Spec::Count(1, MAX_TRIALS))];

const STAGE: &[(&str, Spec)] =
    &[("epochs", Spec::PosInt), ("keep", Spec::PosInt), ("trials", Spec::Count(1, MAX_TRIALS))];

const ENSEMBLE: &[(&str, Spec)] = &[
    ("members", Spec::Count(1, MAX_MEMBERS)),
    (
        "from",
        Spec::Choice(&[
            form("top", &[("source", Spec::Word(&["search"]), true)]),
            form("seeds", &[]),
            form("checkpoints", &[("last", Spec::PosInt, true)]),
        ]),
    ),
];

const DISTRIBUTIONS: &[&str] = &["log_uniform", "uniform", "int_uniform", "choice"];

/// Checks every recipe block of a file, and the names they refer to.
pub fn check_blocks(file: &File) -> (Vec<Recipe>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut recipes = Vec::new();
    let models: Vec<&str> = file.models.iter().map(|m| m.name.name.as_str()).collect();
    let datas: Vec<&Ident> = file.blocks.iter().filter(|b| b.kind == BlockKind::Data).map(|b| &b.target).collect();
    let mut seen_data: BTreeMap<&str, Span> = BTreeMap::new();
    for d in &datas {
        if let Some(first) = seen_data.insert(&d.name, d.span) {
            diags.push(
                Diagnostic::error(format!("data set `{}` is defined twice", d.name), d.span, "defined again")
                    .with_label(first, "first defined here"),
            );
        }
    }
    for block in &file.blocks {
        if block.kind != BlockKind::Data && !models.contains(&block.target.name.as_str()) {
            let d = Diagnostic::error(
                format!("`{}` names no model in this file", block.target),
                block.target.span,
                format!("{} what?", block.kind.keyword()),
            );
            diags.push(d.with_suggestion(&block.target.name, models.iter().copied()));
        }
        if block.kind == BlockKind::Train {
            match &block.on {
                None => diags.push(
                    Diagnostic::error(
                        format!("`train {}` does not say which data to train on", block.target),
                        block.target.span,
                        "trained on what?",
                    )
                    .with_help(format!(
                        "write `train {} on mnist {{ … }}` and define `data mnist {{ … }}`",
                        block.target
                    )),
                ),
                Some(on) if !seen_data.contains_key(on.name.as_str()) => {
                    let d = Diagnostic::error(
                        format!("no data set `{}` is defined in this file", on.name),
                        on.span,
                        "unknown data set",
                    )
                    .with_suggestion(&on.name, datas.iter().map(|d| d.name.as_str()));
                    diags.push(d.with_help(format!("define it: `data {} {{ train = idx(\"…\", \"…\") }}`", on.name)));
                }
                Some(_) => {}
            }
        }
        let mut c = Checker { diags: &mut diags };
        let recipe = c.block(block, file);
        recipes.push(recipe);
    }
    // `from = top(search)` needs a search of the same model.
    for r in &recipes {
        if r.kind != BlockKind::Ensemble {
            continue;
        }
        if let Some(Setting::Call { name, .. }) = r.settings.get("from") {
            let has_search = recipes.iter().any(|s| s.kind == BlockKind::Search && s.target == r.target);
            if name == "top" && !has_search {
                if let Some(b) = file.blocks.iter().find(|b| b.kind == BlockKind::Ensemble && b.target.name == r.target)
                {
                    diags.push(
                        Diagnostic::error(
                            format!("`from = top(search)` needs a `search {}` block", r.target),
                            b.target.span,
                            "no search to take members from",
                        )
                        .with_help("add a `search` block for this model, or use `from = seeds`"),
                    );
                }
            }
        }
    }
    (recipes, diags)
}

struct Checker<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn block(&mut self, block: &Block, file: &File) -> Recipe {
        let schema = match block.kind {
            BlockKind::Train => TRAIN,
            BlockKind::Data => DATA,
            BlockKind::Search => SEARCH,
            BlockKind::Ensemble => ENSEMBLE,
        };
        let mut recipe = Recipe {
            kind: block.kind,
            target: block.target.name.clone(),
            on: block.on.as_ref().map(|o| o.name.clone()),
            settings: Settings::new(),
            samples: Vec::new(),
            stages: Vec::new(),
        };
        let what = format!("a `{}` block", block.kind.keyword());
        let mut rest = Vec::new();
        for e in &block.entries {
            match &e.kind {
                EntryKind::Sample(path, value) if block.kind == BlockKind::Search => {
                    if let Some(s) = self.sample(path, value, block, file) {
                        recipe.samples.push(s);
                    }
                }
                EntryKind::Block { key, name, entries } if block.kind == BlockKind::Search && key.name == "stage" => {
                    match name {
                        Some(n) => {
                            if recipe.stages.iter().any(|(s, _)| *s == n.name) {
                                self.diags.push(Diagnostic::error(
                                    format!("stage `{}` is defined twice", n.name),
                                    n.span,
                                    "defined again",
                                ));
                            }
                            let s = self.entries(entries, STAGE, "a search stage");
                            recipe.stages.push((n.name.clone(), s));
                        }
                        None => self.diags.push(
                            Diagnostic::error("a search stage needs a name", key.span, "stage what?")
                                .with_help("write `stage coarse { epochs = 2 }`"),
                        ),
                    }
                }
                _ => rest.push(e.clone()),
            }
        }
        recipe.settings = self.entries(&rest, schema, &what);
        if block.kind == BlockKind::Train {
            self.diags.extend(nesterov_without_momentum(block));
        }
        recipe
    }

    fn entries(&mut self, entries: &[Entry], schema: &[(&'static str, Spec)], what: &str) -> Settings {
        let mut out = Settings::new();
        let mut spans: BTreeMap<String, Span> = BTreeMap::new();
        for e in entries {
            let (key, span) = match &e.kind {
                EntryKind::Assign(path, _) | EntryKind::Sample(path, _) => {
                    let k: Vec<&str> = path.iter().map(|p| p.name.as_str()).collect();
                    let span = path.first().map_or(e.span, |f| f.span.to(path.last().map_or(f.span, |l| l.span)));
                    (k.join("."), span)
                }
                EntryKind::Block { key, .. } => (key.name.clone(), key.span),
            };
            let Some(&(_, spec)) = schema.iter().find(|(k, _)| *k == key) else {
                let keys: Vec<&str> = schema.iter().map(|(k, _)| *k).collect();
                let d = Diagnostic::error(format!("unknown key `{key}` in {what}"), span, "unknown key")
                    .with_suggestion(&key, keys.iter().copied())
                    .with_note(format!("the keys of {what} are: {}", keys.join(", ")));
                self.diags.push(d);
                continue;
            };
            if let Some(first) = spans.get(&key) {
                self.diags.push(
                    Diagnostic::error(format!("`{key}` is set twice"), span, "set again")
                        .with_label(*first, "first set here"),
                );
                continue;
            }
            spans.insert(key.clone(), span);
            let setting = match (&e.kind, spec) {
                (EntryKind::Block { entries, name, .. }, Spec::Block(sub)) => {
                    if let Some(n) = name {
                        self.diags.push(Diagnostic::error(format!("`{key}` takes no name"), n.span, "unexpected name"));
                    }
                    Some(Setting::Block(self.entries(entries, sub, &format!("`{key}`"))))
                }
                (EntryKind::Assign(_, value), Spec::Block(_)) => {
                    self.diags.push(
                        Diagnostic::error(format!("`{key}` is a block of settings"), value.span, "expected `{ … }`")
                            .with_help(format!("write `{key} {{ l2 = 5e-4 }}`")),
                    );
                    None
                }
                (EntryKind::Assign(_, value), spec) => self.value(&key, value, spec),
                (EntryKind::Sample(_, value), _) => {
                    self.diags.push(
                        Diagnostic::error(
                            format!("`~` samples a value in a `search` block; here `{key}` needs `=`"),
                            value.span,
                            "not in a search",
                        )
                        .with_help(format!("write `{key} = …`")),
                    );
                    None
                }
                (EntryKind::Block { .. }, _) => {
                    self.diags.push(
                        Diagnostic::error(format!("`{key}` is a single setting, not a block"), span, "not a block")
                            .with_help(format!("write `{key} = …`")),
                    );
                    None
                }
            };
            if let Some(s) = setting {
                out.insert(key, s);
            }
        }
        out
    }

    fn value(&mut self, key: &str, e: &Expr, spec: Spec) -> Option<Setting> {
        match spec {
            Spec::Choice(forms) => {
                let (name, args): (&Ident, &[crate::syntax::ast::Arg]) = match &e.kind {
                    ExprKind::Call { name, args } => (name, args),
                    ExprKind::Ident(n) => {
                        let id = Ident { name: n.clone(), span: e.span };
                        return self.call(key, &id, &[], forms, e.span);
                    }
                    _ => {
                        let names: Vec<String> = forms.iter().map(|f| format!("`{}`", f.name)).collect();
                        self.diags.push(Diagnostic::error(
                            format!("`{key}` must be one of {}", names.join(", ")),
                            e.span,
                            "not one of the choices",
                        ));
                        return None;
                    }
                };
                self.call(key, name, args, forms, e.span)
            }
            Spec::Block(_) => None,
            Spec::NumberOr(forms) => match &e.kind {
                ExprKind::Call { .. } | ExprKind::Ident(_) => self.value(key, e, Spec::Choice(forms)),
                _ => self.scalar(key, e, Spec::PosNum).map(Setting::Value),
            },
            simple => self.scalar(key, e, simple).map(Setting::Value),
        }
    }

    fn call(
        &mut self,
        key: &str,
        name: &Ident,
        args: &[crate::syntax::ast::Arg],
        forms: &[Form],
        span: Span,
    ) -> Option<Setting> {
        let Some(form) = forms.iter().find(|f| f.name == name.name) else {
            let names: Vec<&str> = forms.iter().map(|f| f.name).collect();
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            self.diags.push(
                Diagnostic::error(
                    format!("unknown {key} `{}`", name.name),
                    name.span,
                    format!("not {} {key}", article(key)),
                )
                .with_suggestion(&name.name, names.iter().copied())
                .with_note(format!("`{key}` is one of {}", quoted.join(", "))),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (i, arg) in args.iter().enumerate() {
            let slot = match &arg.name {
                Some(n) => form.args.iter().find(|(a, _, _)| *a == n.name).copied().ok_or_else(|| {
                    let names = form.args.iter().map(|(a, _, _)| *a);
                    Diagnostic::error(
                        format!("`{}` has no argument `{}`", form.name, n.name),
                        n.span,
                        "unknown argument",
                    )
                    .with_suggestion(&n.name, names)
                }),
                None => form.args.get(i).copied().ok_or_else(|| {
                    Diagnostic::error(
                        format!("too many arguments to `{}`", form.name),
                        arg.value.span,
                        "extra argument",
                    )
                }),
            };
            match slot {
                Ok((a, spec, _)) => {
                    if out.contains_key(a) {
                        self.diags.push(Diagnostic::error(
                            format!("`{a}` is given twice"),
                            arg.value.span,
                            "given again",
                        ));
                        ok = false;
                    } else if let Some(v) = self.scalar(a, &arg.value, spec) {
                        out.insert(a.to_string(), v);
                    } else {
                        ok = false;
                    }
                }
                Err(d) => {
                    self.diags.push(d);
                    ok = false;
                }
            }
        }
        for (a, _, required) in form.args {
            if *required && !out.contains_key(*a) && ok {
                self.diags.push(
                    Diagnostic::error(format!("`{}` needs `{a}`", form.name), span, format!("`{a}` is missing"))
                        .with_help(format!("write `{}({a} = …)`", form.name)),
                );
                ok = false;
            }
        }
        // An image folder's size is resized to whole or not at all.
        if ok && form.name == "images" && out.contains_key("height") != out.contains_key("width") {
            let (given, missing) = if out.contains_key("height") { ("height", "width") } else { ("width", "height") };
            self.diags.push(
                Diagnostic::error(
                    format!("`images` resizes to a `height` and a `width`: `{given}` is given without `{missing}`"),
                    span,
                    format!("`{missing}` is missing"),
                )
                .with_help("give both (`height = …, width = …`), or neither to keep the images' own size"),
            );
            ok = false;
        }
        ok.then(|| Setting::Call { name: form.name.to_string(), args: out })
    }

    fn scalar(&mut self, key: &str, e: &Expr, spec: Spec) -> Option<Value> {
        let v = match eval(e, &Env::new()) {
            Ok(v) => v,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        let num = v.as_f64();
        let (ok, expected) = match spec {
            Spec::PosInt => (matches!(v, Value::Int(n) if n >= 1), "a positive integer".to_string()),
            Spec::Count(lo, hi) => (
                matches!(v, Value::Int(n) if (lo..=hi).contains(&n)),
                format!("an integer from {lo} to {}", crate::diag::thousands(hi as u64)),
            ),
            Spec::NonNegInt => (matches!(v, Value::Int(n) if n >= 0), "an integer ≥ 0".to_string()),
            Spec::PosNum => (num.is_some_and(|x| x > 0.0 && x.is_finite()), "a number > 0".to_string()),
            Spec::NonNegNum => (num.is_some_and(|x| x >= 0.0 && x.is_finite()), "a number ≥ 0".to_string()),
            Spec::Unit => (num.is_some_and(|x| (0.0..1.0).contains(&x)), "a number in [0, 1)".to_string()),
            Spec::Factor => (num.is_some_and(|x| x > 0.0 && x <= 1.0), "a number in (0, 1]".to_string()),
            Spec::Bool => (matches!(v, Value::Bool(_)), "`true` or `false`".to_string()),
            Spec::Str => {
                (matches!(&v, Value::Str(s) if !s.is_empty()), "a file's path in double quotes, not empty".to_string())
            }
            Spec::Fraction => (
                match v {
                    Value::Percent(p) => p > 0.0 && p < 100.0,
                    Value::Float(f) => f > 0.0 && f < 1.0,
                    _ => false,
                },
                "a percentage such as `10%` (or a fraction in (0, 1))".to_string(),
            ),
            Spec::Word(words) => (
                matches!(&v, Value::Sym(s) if words.contains(&s.as_str())),
                words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(" or "),
            ),
            Spec::NumberOr(_) => (num.is_some_and(|x| x > 0.0 && x.is_finite()), "a number > 0".to_string()),
            Spec::Choice(_) | Spec::Block(_) => (false, "a value".to_string()),
        };
        if ok {
            return Some(v);
        }
        // The right kind (a number), outside the range; or another kind altogether.
        let in_kind = match spec {
            Spec::PosInt | Spec::NonNegInt | Spec::Count(..) => matches!(v, Value::Int(_)),
            Spec::PosNum | Spec::NonNegNum | Spec::Unit | Spec::Factor | Spec::Fraction | Spec::NumberOr(_) => {
                num.is_some()
            }
            _ => false,
        };
        let mut d = Diagnostic::error(
            format!("`{key}` must be {expected}, found {}", v.describe()),
            e.span,
            match (&v, in_kind) {
                (Value::Str(s), _) if s.is_empty() => "empty",
                (_, true) => "out of range",
                _ => "wrong kind of value",
            },
        );
        if let (Spec::Fraction, Some(x)) = (spec, num) {
            if (1.0..100.0).contains(&x) {
                d = d.with_help(format!("for {} percent write `{}%`", fmt_num(x), fmt_num(x)));
            }
        }
        self.diags.push(d);
        None
    }

    fn sample(&mut self, path: &[Ident], value: &Expr, block: &Block, file: &File) -> Option<Sample> {
        let key: Vec<String> = path.iter().map(|p| p.name.clone()).collect();
        let span = path.first().map_or(value.span, |f| f.span.to(path.last().map_or(f.span, |l| l.span)));
        let model = file.models.iter().find(|m| m.name.name == block.target.name);
        let is_param = key.len() == 1 && model.is_some_and(|m| m.params.iter().any(|p| p.name.name == key[0]));
        if !is_param && !searchable(&key) {
            let mut candidates: Vec<String> = searchable_paths();
            if let Some(m) = model {
                candidates.extend(m.params.iter().map(|p| p.name.name.clone()));
            }
            let joined = key.join(".");
            let mut d = Diagnostic::error(
                format!("`{joined}` is neither a parameter of `{}` nor a training setting", block.target),
                span,
                "cannot be searched",
            );
            if let Some(best) = did_you_mean(&joined, candidates.iter().map(|s| s.as_str())) {
                d = d.with_help(format!("did you mean `{best}`?"));
            }
            self.diags.push(d);
            return None;
        }
        if !is_param {
            if let Some(d) = not_applying(&key, span, block, file) {
                self.diags.push(d);
                return None;
            }
        }
        let ExprKind::Call { name, args } = &value.kind else {
            self.diags.push(
                Diagnostic::error("a searched value needs a distribution", value.span, "not a distribution").with_help(
                    "write `log_uniform(1e-5, 1e-1)`, `uniform(0, 1)`, `int_uniform(1, 4)` or `choice(16, 32, 64)`",
                ),
            );
            return None;
        };
        if !DISTRIBUTIONS.contains(&name.name.as_str()) {
            self.diags.push(
                Diagnostic::error(format!("unknown distribution `{}`", name.name), name.span, "not a distribution")
                    .with_suggestion(&name.name, DISTRIBUTIONS.iter().copied())
                    .with_note(
                        "distributions: log_uniform(lo, hi), uniform(lo, hi), int_uniform(lo, hi), choice(a, b, …)",
                    ),
            );
            return None;
        }
        let mut vals = Vec::new();
        for a in args {
            if let Some(n) = &a.name {
                self.diags.push(Diagnostic::error(
                    format!("`{}` takes values, not named arguments", name.name),
                    n.span,
                    "unexpected name",
                ));
                return None;
            }
            match eval(&a.value, &Env::new()) {
                Ok(v) => vals.push((v, a.value.span)),
                Err(d) => {
                    self.diags.push(d);
                    return None;
                }
            }
        }
        let dist = name.name.as_str();
        // An integer (a parameter with an integer default, a count such as `batch`) takes
        // integers: `uniform` and `log_uniform` draw fractions.
        let integer = if is_param {
            model
                .and_then(|m| m.params.iter().find(|p| p.name.name == key[0]))
                .and_then(|p| p.default.as_ref())
                .is_some_and(|d| matches!(eval(d, &Env::new()), Ok(Value::Int(_))))
        } else {
            spec_of(&key).is_some_and(|s| matches!(s, Spec::PosInt | Spec::NonNegInt | Spec::Count(..)))
        };
        if integer && matches!(dist, "uniform" | "log_uniform") {
            self.diags.push(
                Diagnostic::error(
                    format!("`{}` is an integer, but `{dist}` draws fractions", key.join(".")),
                    name.span,
                    "draws non-integers",
                )
                .with_help("write `int_uniform(lo, hi)` or `choice(a, b, …)`"),
            );
            return None;
        }
        if dist == "choice" {
            if vals.is_empty() {
                self.diags.push(Diagnostic::error(
                    "`choice` needs at least one value",
                    value.span,
                    "nothing to choose from",
                ));
                return None;
            }
        } else {
            let [(lo, lo_span), (hi, _)] = vals.as_slice() else {
                self.diags.push(
                    Diagnostic::error(
                        format!("`{dist}` takes two bounds, found {}", vals.len()),
                        value.span,
                        "expected (lo, hi)",
                    )
                    .with_help(format!("write `{dist}(lo, hi)`")),
                );
                return None;
            };
            let ints = matches!((lo, hi), (Value::Int(_), Value::Int(_)));
            let (Some(l), Some(h)) = (lo.as_f64(), hi.as_f64()) else {
                self.diags.push(Diagnostic::error(
                    format!("the bounds of `{dist}` must be numbers"),
                    value.span,
                    "not numbers",
                ));
                return None;
            };
            if dist == "int_uniform" && !ints {
                self.diags.push(Diagnostic::error(
                    "the bounds of `int_uniform` must be integers",
                    value.span,
                    "not integers",
                ));
                return None;
            }
            if l >= h {
                self.diags.push(Diagnostic::error(
                    format!(
                        "the lower bound of `{dist}` must be below the upper, found {} ≥ {}",
                        fmt_num(l),
                        fmt_num(h)
                    ),
                    value.span,
                    "empty range",
                ));
                return None;
            }
            if dist == "log_uniform" && l <= 0.0 {
                self.diags.push(
                    Diagnostic::error(
                        format!("`log_uniform` needs bounds above 0, found {}", fmt_num(l)),
                        *lo_span,
                        "not positive",
                    )
                    .with_note("it samples 10 ** uniform(log10(lo), log10(hi))"),
                );
                return None;
            }
        }
        Some(Sample { path: key, distribution: dist.to_string(), args: vals.into_iter().map(|(v, _)| v).collect() })
    }
}

/// `sgd(nesterov = true)` with no momentum: Nesterov's look-ahead is a momentum method, so
/// the setting would do nothing.
fn nesterov_without_momentum(block: &Block) -> Option<Diagnostic> {
    block.entries.iter().find_map(|e| {
        let EntryKind::Assign(p, v) = &e.kind else { return None };
        let ExprKind::Call { name, args } = &v.kind else { return None };
        if p.len() != 1 || p[0].name != "optimizer" || name.name != "sgd" {
            return None;
        }
        let arg = |n: &str| args.iter().find(|a| a.name.as_ref().is_some_and(|x| x.name == n));
        let nesterov = arg("nesterov").filter(|a| matches!(a.value.kind, ExprKind::Bool(true)))?;
        let momentum = arg("momentum").and_then(|a| eval(&a.value, &Env::new()).ok()).and_then(|v| v.as_f64());
        (momentum.unwrap_or(0.0) == 0.0).then(|| {
            Diagnostic::error("`nesterov = true` without momentum does nothing", nesterov.value.span, "needs momentum")
                .with_note("Nesterov's update looks ahead along the momentum; with none it is plain SGD")
                .with_help("give it momentum, e.g. `sgd(lr = 0.01, momentum = 0.9, nesterov = true)`")
        })
    })
}

/// The spec of a `train` setting or of an argument of one of its choices.
fn spec_of(key: &[String]) -> Option<Spec> {
    let (_, spec) = TRAIN.iter().find(|(k, _)| Some(*k) == key.first().map(String::as_str))?;
    match (spec, key.get(1)) {
        (s, None) => Some(*s),
        (Spec::Choice(forms), Some(arg)) => {
            forms.iter().flat_map(|f| f.args.iter()).find(|(a, _, _)| a == arg).map(|(_, s, _)| *s)
        }
        (Spec::Block(sub), Some(arg)) => sub.iter().find(|(a, _)| a == arg).map(|(_, s)| *s),
        _ => None,
    }
}

/// What a `train` block chooses when it leaves a choice out.
fn default_form(key: &str) -> &'static str {
    match key {
        "optimizer" => "sgd",
        "schedule" => "constant",
        "init" => "xavier",
        "average" => "none",
        _ => "cross_entropy",
    }
}

/// A searched `key.argument` that the model's `train` block does not use: an argument of
/// another choice than the block's (`optimizer.beta1` under `sgd`, `schedule.factor` under a
/// constant schedule).
fn not_applying(key: &[String], span: Span, search: &Block, file: &File) -> Option<Diagnostic> {
    let [k, arg] = key else { return None };
    let Some((_, Spec::Choice(forms))) = TRAIN.iter().find(|(t, _)| t == k) else { return None };
    let train = file.blocks.iter().find(|b| b.kind == BlockKind::Train && b.target.name == search.target.name)?;
    let chosen = train
        .entries
        .iter()
        .find_map(|e| match &e.kind {
            EntryKind::Assign(p, v) if p.len() == 1 && &p[0].name == k => match &v.kind {
                ExprKind::Call { name, .. } => Some(name.name.clone()),
                ExprKind::Ident(w) => Some(w.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_else(|| default_form(k).to_string());
    let form = forms.iter().find(|f| f.name == chosen)?;
    if form.args.iter().any(|(a, _, _)| a == arg) {
        return None;
    }
    let takes: Vec<&str> = form.args.iter().map(|(a, _, _)| *a).collect();
    let what = if takes.is_empty() { "no arguments".to_string() } else { takes.join(", ") };
    Some(
        Diagnostic::error(
            format!("`{k}.{arg}` does not apply: the `train` block's {k} is `{chosen}`, which takes {what}"),
            span,
            "never used",
        )
        .with_label(train.target.span, format!("the `train` block of `{}`", train.target))
        .with_help(format!("search what `{chosen}` takes, or choose another {k} in the `train` block")),
    )
}

/// The keys a `train` block takes.
pub fn train_keys() -> Vec<&'static str> {
    TRAIN.iter().map(|(k, _)| *k).collect()
}

/// What `--set` of a `train` setting can run into: a path the recipe cannot take (a usage
/// error, said in words), or a value the schema refuses (diagnostics located in the value's
/// own text).
#[derive(Debug)]
pub enum SetError {
    /// The path is wrong for this recipe.
    Path(String),
    /// The value is wrong for the setting.
    Value(Vec<Diagnostic>),
}

/// Sets `path` (`seed`, `optimizer`, `optimizer.lr`, `regularize.l2`) of a checked `train`
/// block's settings to `value`, checked by the same schema as a value written in the file:
/// a whole setting is replaced; an argument of a choice (`optimizer.lr`) or a setting of a
/// block (`regularize.l2`) is replaced or added, the rest kept.
pub fn apply_set(settings: &mut Settings, path: &[&str], value: &Expr) -> Result<(), SetError> {
    let mut diags = Vec::new();
    let mut c = Checker { diags: &mut diags };
    let spec_of = |k: &str| TRAIN.iter().find(|(key, _)| *key == k).map(|(_, s)| *s);
    let unknown = |k: &str| {
        if matches!(k, "data" | "search" | "ensemble" | "stage" | "train") {
            return SetError::Path(format!(
                "--set reaches the `train` block (and the model's parameters); `{k}` settings are changed in the file's `{k}` block"
            ));
        }
        let keys = train_keys();
        let near = did_you_mean(k, keys.iter().copied()).map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
        SetError::Path(format!("unknown key `{k}` in a `train` block{near}; its keys are: {}", keys.join(", ")))
    };
    let result = match path {
        [k] => match spec_of(k) {
            None => return Err(unknown(k)),
            Some(Spec::Block(_)) => {
                return Err(SetError::Path(format!(
                    "`{k}` is a block of settings; set one of them, e.g. --set {k}.l2=1e-4"
                )))
            }
            Some(spec) => c.value(k, value, spec).map(|v| {
                settings.insert(k.to_string(), v);
            }),
        },
        [k, arg] => match spec_of(k) {
            None => return Err(unknown(k)),
            Some(Spec::Block(sub)) => {
                let Some(&(_, spec)) = sub.iter().find(|(a, _)| a == arg) else {
                    let names: Vec<&str> = sub.iter().map(|(a, _)| *a).collect();
                    return Err(SetError::Path(format!("`{k}` has no setting `{arg}`; it has: {}", names.join(", "))));
                };
                c.scalar(arg, value, spec).map(|v| {
                    let slot = settings.entry(k.to_string()).or_insert_with(|| Setting::Block(Settings::new()));
                    if let Setting::Block(b) = slot {
                        b.insert(arg.to_string(), Setting::Value(v));
                    }
                })
            }
            Some(Spec::Choice(forms)) => {
                let Some(Setting::Call { name, args }) = settings.get_mut(*k) else {
                    return Err(SetError::Path(format!(
                        "the `train` block sets no `{k}`; set it whole, e.g. --set \"{k}=…(…)\""
                    )));
                };
                let form = forms.iter().find(|f| f.name == name.as_str());
                let Some(&(_, spec, _)) = form.and_then(|f| f.args.iter().find(|(a, _, _)| a == arg)) else {
                    let names: Vec<&str> = form.map_or(Vec::new(), |f| f.args.iter().map(|(a, _, _)| *a).collect());
                    let has = if names.is_empty() { "no arguments".to_string() } else { names.join(", ") };
                    return Err(SetError::Path(format!("`{name}` has no argument `{arg}` (it takes: {has})")));
                };
                c.scalar(arg, value, spec).map(|v| {
                    args.insert(arg.to_string(), v);
                })
            }
            Some(_) => return Err(SetError::Path(format!("`{k}` is a single value, not a call: --set {k}=…"))),
        },
        _ => return Err(SetError::Path("a recipe path is `key` or `key.argument`, e.g. seed or optimizer.lr".into())),
    };
    match result {
        Some(()) if diags.is_empty() => Ok(()),
        _ => Err(SetError::Value(diags)),
    }
}

/// Whether a `train` key is a block of settings (`regularize { … }`).
pub fn is_block_key(key: &str) -> bool {
    TRAIN.iter().any(|(k, s)| *k == key && matches!(s, Spec::Block(_)))
}

/// Training settings a search may sample: numeric keys and numeric arguments of choices.
fn searchable_paths() -> Vec<String> {
    let mut out = Vec::new();
    for (k, spec) in TRAIN {
        match spec {
            Spec::PosInt
            | Spec::Count(..)
            | Spec::NonNegInt
            | Spec::PosNum
            | Spec::NonNegNum
            | Spec::Unit
            | Spec::Factor
            | Spec::Fraction
            | Spec::NumberOr(_) => out.push(k.to_string()),
            Spec::Choice(forms) => {
                for f in *forms {
                    for (a, s, _) in f.args {
                        if !matches!(s, Spec::Bool | Spec::Str | Spec::Word(_)) && !out.contains(&format!("{k}.{a}")) {
                            out.push(format!("{k}.{a}"));
                        }
                    }
                }
            }
            Spec::Block(sub) => out.extend(sub.iter().map(|(s, _)| format!("{k}.{s}"))),
            _ => {}
        }
    }
    out
}

fn searchable(path: &[String]) -> bool {
    searchable_paths().contains(&path.join("."))
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The block a recipe keyword opens (`train`, `data`, `search`, `ensemble`).
pub fn block_kind(word: &str) -> Option<BlockKind> {
    [BlockKind::Train, BlockKind::Data, BlockKind::Search, BlockKind::Ensemble]
        .into_iter()
        .find(|k| k.keyword() == word)
}

/// A key of a recipe block as an editor offers it: what its value is, and the values (calls
/// with their arguments, or words) it can take.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyDoc {
    /// The key.
    pub key: &'static str,
    /// What its value is, in words.
    pub describe: String,
    /// Its values: `(name, signature)`.
    pub values: Vec<(String, String)>,
}

/// The sampling distributions of a `search` block, with their arguments.
pub const DISTRIBUTION_FORMS: &[(&str, &str)] = &[
    ("log_uniform", "log_uniform(low, high): log-uniform between two positive numbers"),
    ("uniform", "uniform(low, high)"),
    ("int_uniform", "int_uniform(low, high): an integer from low to high"),
    ("choice", "choice(a, b, …): one of the values"),
];

/// The keys of a block of `kind`, inside the sub-blocks `path` (`["regularize"]`, a search's
/// `["stage"]`).
pub fn keys(kind: BlockKind, path: &[String]) -> Vec<KeyDoc> {
    let mut schema: &[(&'static str, Spec)] = match kind {
        BlockKind::Train => TRAIN,
        BlockKind::Data => DATA,
        BlockKind::Search => SEARCH,
        BlockKind::Ensemble => ENSEMBLE,
    };
    let mut extra: Vec<KeyDoc> = Vec::new();
    if kind == BlockKind::Search && path.is_empty() {
        extra.push(KeyDoc {
            key: "stage",
            describe: "a stage of the search: `stage name { trials = …, epochs = …, keep = … }`".into(),
            values: Vec::new(),
        });
    }
    for p in path {
        if kind == BlockKind::Search && p == "stage" {
            schema = STAGE;
            continue;
        }
        match schema.iter().find(|(k, _)| k == p) {
            Some((_, Spec::Block(inner))) => schema = inner,
            _ => return Vec::new(),
        }
    }
    let mut out: Vec<KeyDoc> =
        schema.iter().map(|(k, spec)| KeyDoc { key: k, describe: describe(spec), values: values(spec) }).collect();
    out.extend(extra);
    out
}

fn form_signature(f: &Form) -> String {
    if f.args.is_empty() {
        return f.name.to_string();
    }
    let args: Vec<String> =
        f.args.iter().map(|(a, _, required)| if *required { a.to_string() } else { format!("{a} = …") }).collect();
    format!("{}({})", f.name, args.join(", "))
}

fn values(spec: &Spec) -> Vec<(String, String)> {
    match spec {
        Spec::Choice(forms) | Spec::NumberOr(forms) => {
            forms.iter().map(|f| (f.name.to_string(), form_signature(f))).collect()
        }
        Spec::Word(words) => words.iter().map(|w| (w.to_string(), w.to_string())).collect(),
        Spec::Bool => vec![("true".into(), "true".into()), ("false".into(), "false".into())],
        _ => Vec::new(),
    }
}

fn describe(spec: &Spec) -> String {
    match spec {
        Spec::PosInt => "a positive integer".into(),
        Spec::Count(lo, hi) => format!("an integer from {lo} to {hi}"),
        Spec::NonNegInt => "an integer, 0 or more".into(),
        Spec::PosNum => "a number above 0".into(),
        Spec::NonNegNum => "a number, 0 or more".into(),
        Spec::Unit => "a number from 0 up to (not including) 1".into(),
        Spec::Factor => "a number above 0, at most 1".into(),
        Spec::Bool => "true or false".into(),
        Spec::Str => "a string".into(),
        Spec::Fraction => "a percentage (`10%`) or a fraction between 0 and 1".into(),
        Spec::Choice(forms) => {
            let f: Vec<String> = forms.iter().map(form_signature).collect();
            format!("one of {}", f.join(", "))
        }
        Spec::Block(inner) => {
            let k: Vec<&str> = inner.iter().map(|(k, _)| *k).collect();
            format!("a block: {{ {} }}", k.join(", "))
        }
        Spec::Word(words) => format!("one of {}", words.join(", ")),
        Spec::NumberOr(forms) => {
            let f: Vec<String> = forms.iter().map(form_signature).collect();
            format!("a number above 0, or {}", f.join(", "))
        }
    }
}
