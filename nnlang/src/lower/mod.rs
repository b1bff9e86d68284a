//! AST → IR: fixes the model's parameters, unrolls repetitions, drops switched-off optional
//! elements, resolves `let` bindings (in any order, rejecting cycles), builds each layer's
//! op from its arguments and names every node. Shapes are not looked at here.

pub mod args;
mod blocks;
pub mod eval;

use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{Dim, Graph, NodeId, Op, ParamValue};
use crate::syntax::ast::{self, BinOp, Expr, ExprKind, Ident, Span};
use eval::{eval, Env, Value};
use std::collections::{BTreeMap, HashMap};

/// The most layers (IR nodes) a model may have after repetitions are unrolled.
pub const MAX_LAYERS: usize = 1_000_000;

/// The deepest chain of bindings met while one is resolved (only a cycle or a pathological
/// order can reach it: bindings are resolved in dependency order).
const MAX_LET_DEPTH: usize = 200;

/// The `let` bindings an expression names, in the order lowering meets them.
fn references(e: &Expr, index: &HashMap<&str, usize>) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        // Children are pushed last-first, so they are popped in source order.
        match &e.kind {
            ExprKind::Ident(name) => {
                if let Some(&j) = index.get(name.as_str()) {
                    out.push(j);
                }
            }
            ExprKind::Pipeline(v) => stack.extend(v.iter().rev()),
            ExprKind::Named(x, _) | ExprKind::Neg(x) | ExprKind::Optional(x, _) | ExprKind::Group(x) => stack.push(x),
            ExprKind::Binary(_, a, b) => stack.extend([&**b, &**a]),
            ExprKind::Call { args, .. } => stack.extend(args.iter().rev().map(|a| &a.value)),
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Percent(_) | ExprKind::Bool(_) | ExprKind::Str(_) => {}
        }
    }
    out
}

/// The bindings to resolve first, in order: the depth-first post-order of their references
/// from each binding in source order — the order recursive resolution would take, so nodes
/// are numbered as written — computed without recursion, so that resolving along it never
/// nests (each binding's references are done before it). Bindings in a cycle, or that need
/// one, are left out: the source-order pass after it resolves them, and reports the cycle
/// (those nest at most [`MAX_LET_DEPTH`] deep).
fn dependency_order(model: &ast::Model) -> Vec<usize> {
    let index: HashMap<&str, usize> = model.lets.iter().enumerate().map(|(i, l)| (l.name.name.as_str(), i)).collect();
    let refs: Vec<Vec<usize>> = model.lets.iter().map(|l| references(&l.value, &index)).collect();
    let n = model.lets.len();
    // 0: not met; 1: open (on the stack); 2: done.
    let mut state = vec![0u8; n];
    let mut tainted = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            if let Some(&j) = refs[i].get(*next) {
                *next += 1;
                match state[j] {
                    0 => {
                        state[j] = 1;
                        stack.push((j, 0));
                    }
                    // A reference back to an open binding: a cycle.
                    1 => tainted[i] = true,
                    _ => tainted[i] |= tainted[j],
                }
            } else {
                state[i] = 2;
                stack.pop();
                if let Some(&(parent, _)) = stack.last() {
                    tainted[parent] |= tainted[i];
                }
                if !tainted[i] {
                    order.push(i);
                }
            }
        }
    }
    order
}

/// Values given on the command line (`--set KEY=VALUE`) or by a search, by parameter name.
pub type Overrides = BTreeMap<String, ParamValue>;

/// Parses the text of one `--set` value: `true`, `false`, an integer or a float.
pub fn parse_param_value(text: &str) -> Option<ParamValue> {
    let t = text.trim();
    match t {
        "true" => Some(ParamValue::Bool(true)),
        "false" => Some(ParamValue::Bool(false)),
        _ => t
            .parse::<i64>()
            .map(ParamValue::Int)
            .ok()
            .or_else(|| t.parse::<f64>().ok().filter(|v| v.is_finite()).map(ParamValue::Float)),
    }
}

/// Checks overrides against a model's parameters: every key must be a parameter and every
/// value of its kind. The message is for a usage error (the flags are wrong, not the file).
pub fn check_overrides(model: &ast::Model, overrides: &Overrides) -> Result<(), String> {
    for (key, value) in overrides {
        let Some(param) = model.params.iter().find(|p| p.name.name == *key) else {
            let names: Vec<&str> = model.params.iter().map(|p| p.name.name.as_str()).collect();
            let mut msg = format!("--set {key}: model `{}` has no parameter `{key}`", model.name);
            if let Some(best) = did_you_mean(key, names.iter().copied()) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            } else if names.is_empty() {
                msg.push_str(" (it takes no parameters)");
            } else {
                msg.push_str(&format!(" (its parameters: {})", names.join(", ")));
            }
            return Err(msg);
        };
        let default = param.default.as_ref().and_then(|e| eval(e, &Env::new()).ok());
        let fits = matches!(
            (&default, value),
            (Some(Value::Int(_)), ParamValue::Int(_))
                | (Some(Value::Float(_)), ParamValue::Int(_) | ParamValue::Float(_))
                | (Some(Value::Bool(_)), ParamValue::Bool(_))
                | (None, _)
        );
        if !fits {
            let kind = match default {
                Some(Value::Int(_)) => "an integer",
                Some(Value::Float(_)) => "a number",
                Some(Value::Bool(_)) => "a boolean (true or false)",
                _ => "a number",
            };
            // A whole number beyond 64 bits was read as a float: say so, not its float form.
            let shown = match value {
                ParamValue::Float(f) if f.fract() == 0.0 && f.abs() >= 9.2e18 => format!(
                    "{}: `{key}` is {kind}, and that is beyond the largest one ({})",
                    crate::diag::fmt_num(*f),
                    i64::MAX
                ),
                _ => format!("{value}: `{key}` is {kind}"),
            };
            return Err(format!("--set {key}={shown}"));
        }
    }
    Ok(())
}

/// The result of lowering one model: the graph (when lowering got far enough to build one)
/// and every problem found on the way.
pub struct Lowered {
    /// The lowered graph.
    pub graph: Graph,
    /// Every problem found while lowering.
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Clone, Copy, PartialEq)]
enum LetState {
    Pending,
    InProgress,
    /// `None`: the binding failed and was reported; its users stay silent.
    Done(Option<NodeId>),
}

struct Lowerer<'a> {
    model: &'a ast::Model,
    env: Env,
    graph: Graph,
    diags: Vec<Diagnostic>,
    inputs: HashMap<&'a str, NodeId>,
    /// Inputs whose declaration failed (reported); references to them stay silent.
    failed_inputs: Vec<&'a str>,
    lets: HashMap<&'a str, (usize, LetState)>,
    let_stack: Vec<&'a str>,
    used_lets: Vec<bool>,
    /// User names given with `as`, per node.
    user_names: HashMap<NodeId, Ident>,
    /// Every `block` of the file, by which uses are expanded.
    defs: &'a [ast::Model],
    /// The use of a block (or named group) being lowered (`None` for the model itself).
    scope: Option<u32>,
    /// The use of the block being lowered, where its bindings' layers go.
    base_scope: Option<u32>,
    /// The blocks being expanded, outermost first (a block may not use itself).
    active: Vec<&'a str>,
    /// User names given with `as` to uses of blocks, per scope.
    scope_names: Vec<(u32, Ident)>,
    /// An `as` name waiting for the block use it is written after.
    pending_name: Option<Ident>,
    /// A block's output, once lowered.
    block_output: Option<NodeId>,
}

/// Lowers one model with the given parameter overrides (already checked with
/// [`check_overrides`]); `defs` are the file's `block`s, which the model may use as layers.
pub fn lower_model(model: &ast::Model, defs: &[ast::Model], overrides: &Overrides) -> Lowered {
    let mut l = Lowerer::new(model, defs, Env::new(), Graph { name: model.name.name.clone(), ..Graph::default() });
    l.params(overrides);
    if !l.diags.is_empty() {
        // Without every parameter's value, the body would only report consequences.
        return Lowered { graph: l.graph, diagnostics: l.diags };
    }
    l.declare_inputs();
    l.body();
    l.misplaced_softmax();
    if !l.diags.iter().any(|d| d.is_error()) {
        // (A graph with errors goes no further: its layers need no names.)
        l.name_nodes();
    }
    let mut diagnostics = crate::diag::merge_repeats(l.diags);
    diagnostics.sort_by_key(|d| d.labels.first().map(|l| l.span.start).unwrap_or(0));
    Lowered { graph: l.graph, diagnostics }
}

impl<'a> Lowerer<'a> {
    fn new(model: &'a ast::Model, defs: &'a [ast::Model], env: Env, graph: Graph) -> Self {
        Lowerer {
            model,
            env,
            graph,
            diags: Vec::new(),
            inputs: HashMap::new(),
            failed_inputs: Vec::new(),
            lets: HashMap::new(),
            let_stack: Vec::new(),
            used_lets: vec![false; model.lets.len()],
            user_names: HashMap::new(),
            defs,
            scope: None,
            base_scope: None,
            active: Vec::new(),
            scope_names: Vec::new(),
            pending_name: None,
            block_output: None,
        }
    }

    /// The bindings and the output pipeline, once the inputs are declared; the unused ones
    /// reported.
    fn body(&mut self) {
        let model = self.model;
        self.declare_lets();
        // Bindings are resolved in dependency order first, so a chain of them written in any
        // order never nests the resolution deeply; then the rest (cycles) in source order.
        for i in dependency_order(model).into_iter().chain(0..model.lets.len()) {
            let name = model.lets[i].name.name.as_str();
            if matches!(self.lets.get(name), Some((idx, LetState::Pending)) if *idx == i) {
                let _ = self.resolve_let(name, false);
            }
        }
        self.output();
        self.unused();
    }

    /// `model` or `block`, for messages.
    fn what(&self) -> &'static str {
        if self.model.is_block {
            "block"
        } else {
            "model"
        }
    }

    /// Appends a node made by the layer written at `span`, in the current block use.
    fn add(&mut self, op: Op, inputs: Vec<NodeId>, span: Span) -> NodeId {
        let id = self.graph.add(op, inputs, String::new(), span);
        self.graph.nodes[id.index()].scope = self.scope;
        id
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn params(&mut self, overrides: &Overrides) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for p in &self.model.params {
            if let Some(first) = seen.insert(&p.name.name, p.name.span) {
                self.err(
                    Diagnostic::error(
                        format!("parameter `{}` is declared twice", p.name),
                        p.name.span,
                        "declared again",
                    )
                    .with_label(first, "first declared here"),
                );
                continue;
            }
            let value = match &p.default {
                None => {
                    self.err(
                        Diagnostic::error(
                            format!("parameter `{}` has no default value", p.name),
                            p.name.span,
                            "needs `= value`",
                        )
                        .with_note("every model parameter has a default; `--set` or a search can replace it")
                        .with_help(format!("write `{} = 1` (or the value the model should have)", p.name)),
                    );
                    continue;
                }
                Some(e) => match eval(e, &self.env) {
                    Ok(Value::Int(v)) => ParamValue::Int(v),
                    Ok(Value::Float(v)) => ParamValue::Float(v),
                    Ok(Value::Bool(v)) => ParamValue::Bool(v),
                    Ok(other) => {
                        self.err(Diagnostic::error(
                            format!(
                                "parameter `{}` must be an integer, a number or a boolean, found {}",
                                p.name,
                                other.describe()
                            ),
                            e.span,
                            "not a parameter value",
                        ));
                        continue;
                    }
                    Err(d) => {
                        self.err(d);
                        continue;
                    }
                },
            };
            let value = overrides.get(&p.name.name).cloned().map_or(value.clone(), |o| match (&value, o) {
                (ParamValue::Float(_), ParamValue::Int(i)) => ParamValue::Float(i as f64),
                (_, o) => o,
            });
            self.env.insert(p.name.name.clone(), value.clone());
            self.graph.params.push((p.name.name.clone(), value));
        }
    }

    fn declare_inputs(&mut self) {
        let model = self.model;
        if model.inputs.is_empty() {
            self.err(
                Diagnostic::error(
                    format!("model `{}` has no input", model.name),
                    model.name.span,
                    "declares no `input`",
                )
                .with_help("declare what the model reads, e.g. `input x: [784]` or `input image: [28, 28, 1]`"),
            );
        }
        for decl in &model.inputs {
            if let Some(&prev) = self.inputs.get(decl.name.name.as_str()) {
                let first = self.graph.node(prev).span;
                self.err(
                    Diagnostic::error(
                        format!("input `{}` is declared twice", decl.name),
                        decl.name.span,
                        "declared again",
                    )
                    .with_label(first, "first declared here"),
                );
                continue;
            }
            if self.env.contains_key(&decl.name.name) {
                self.err(Diagnostic::error(
                    format!("input `{}` has the name of a model parameter", decl.name),
                    decl.name.span,
                    "already a parameter",
                ));
                continue;
            }
            let ids = match &decl.ids {
                Some(bound) => match self.ids_bound(decl, bound) {
                    Some(n) => Some(n),
                    None => {
                        self.failed_inputs.push(&decl.name.name);
                        continue;
                    }
                },
                None => None,
            };
            let Some(dims) = self.dims(decl) else {
                self.failed_inputs.push(&decl.name.name);
                continue;
            };
            let id = self.graph.add(
                Op::Input(crate::ops::input::Input { dims, ids }),
                Vec::new(),
                decl.name.name.clone(),
                decl.name.span,
            );
            self.graph.inputs.push(id);
            self.inputs.insert(&decl.name.name, id);
        }
    }

    /// The `n` of `ids < n`: a whole number from 1 to 2^24 (every id is then exact in f32,
    /// as the ids travel with the other inputs' values).
    fn ids_bound(&mut self, decl: &ast::InputDecl, bound: &ast::Expr) -> Option<usize> {
        match eval(bound, &self.env) {
            Ok(Value::Int(n)) if (1..=1 << 24).contains(&n) => Some(n as usize),
            Ok(Value::Int(n)) if n >= 1 => {
                self.err(
                    Diagnostic::error(
                        format!(
                            "input `{}` holds ids below {n}, more than the 2^24 = 16777216 nnlang reads",
                            decl.name
                        ),
                        bound.span,
                        "too many ids",
                    )
                    .with_note("ids travel as exact whole numbers in f32, which holds every integer up to 2^24"),
                );
                None
            }
            Ok(other) => {
                self.err(
                    Diagnostic::error(
                        format!("the bound of `ids < n` must be a positive integer, found {}", other.describe()),
                        bound.span,
                        "not a positive integer",
                    )
                    .with_help(format!(
                        "the number of distinct ids, e.g. `input {}: [seq <= 100] ids < 65`",
                        decl.name
                    )),
                );
                None
            }
            Err(diag) => {
                self.err(diag);
                None
            }
        }
    }

    fn dims(&mut self, decl: &ast::InputDecl) -> Option<Vec<Dim>> {
        if !decl.has_dims {
            self.err(
                Diagnostic::error(
                    format!("input `{}` has no dimensions", decl.name),
                    decl.span,
                    "a model's input needs its shape",
                )
                .with_note("only a `block`'s input is written without one: it takes the shape of what flows in")
                .with_help(format!(
                    "write its shape, e.g. `input {}: [784]` or `input {}: [28, 28, 1]`",
                    decl.name, decl.name
                )),
            );
            return None;
        }
        if decl.ids.is_some() && decl.dims.len() > 2 {
            let n = decl.dims.len();
            self.err(
                Diagnostic::error(
                    format!("input `{}` of token ids has {n} dimensions; ids have 1 or 2", decl.name),
                    decl.span,
                    format!("{n} dimensions"),
                )
                .with_note("an embedding adds a dimension to its ids: [steps] or [n] ids, or [steps, n]")
                .with_help(format!("one id per step: `input {}: [seq <= 100] ids < 65`", decl.name)),
            );
            return None;
        }
        if decl.ids.is_some() && decl.steps.is_some() && decl.dims.len() > 1 {
            let at = decl.dims.get(1).map_or(decl.span, |d| d.span);
            self.err(
                Diagnostic::error(
                    format!("input `{}` is a sequence of several ids per step", decl.name),
                    at,
                    "a second dimension of ids",
                )
                .with_note("an embedding of a sequence of ids gives [steps, dim], one vector per step")
                .with_help(
                    "declare one id per step (`[seq <= n] ids < V`), or a grid of ids without steps (`[n, m] ids < V`)",
                ),
            );
            return None;
        }
        if decl.dims.is_empty() || decl.dims.len() > 3 {
            let n = decl.dims.len();
            self.err(
                Diagnostic::error(
                    format!("input `{}` has {n} dimensions; inputs have 1 to 3", decl.name),
                    decl.span,
                    format!("{n} dimensions"),
                )
                .with_note("dimensions exclude the batch: [features], [sequence, features] or [height, width, depth]"),
            );
            return None;
        }
        let mut dims = Vec::new();
        let mut ok = true;
        for (i, d) in decl.dims.iter().enumerate() {
            let steps = decl.steps.as_ref().filter(|_| i == 0);
            match eval(d, &self.env) {
                Ok(Value::Int(n)) if n >= 1 && (decl.dims.len() >= 2 || decl.ids.is_some()) && steps.is_some() => {
                    let (name, len) = (steps.map_or(String::new(), |s| s.name.name.clone()), n as usize);
                    dims.push(if steps.is_some_and(|s| s.at_most) {
                        Dim::Seq { name, max: Some(len) }
                    } else {
                        Dim::Steps { name, len }
                    });
                }
                Ok(Value::Int(_)) if steps.is_some() && decl.dims.len() < 2 => {
                    let at = steps.map_or(decl.span, |s| s.span);
                    self.err(
                        Diagnostic::error(
                            format!("input `{}` is a sequence of steps with no features", decl.name),
                            at,
                            "the steps need a feature dimension after them",
                        )
                        .with_help("a sequence is [steps, features]: `input x: [seq <= 30, 12]`"),
                    );
                    ok = false;
                }
                Ok(Value::Int(n)) if n >= 1 => dims.push(Dim::Fixed(n as usize)),
                Ok(Value::Sym(s)) if i == 0 && decl.dims.len() >= 2 => dims.push(Dim::seq(s)),
                Ok(Value::Sym(s)) => {
                    let at = if i == 0 { "a one-dimensional input" } else { "any dimension but the first" };
                    let mut diag = Diagnostic::error(
                        format!("`{s}` is not a model parameter, and a sequence length cannot be {at}"),
                        d.span,
                        "unknown size",
                    )
                    .with_note("a sequence input has a variable first dimension: `input tokens: [seq, 32]`");
                    let names: Vec<&str> = self.env.keys().map(|k| k.as_str()).collect();
                    diag = diag.with_suggestion(&s, names);
                    self.err(diag);
                    ok = false;
                }
                Ok(other) => {
                    self.err(Diagnostic::error(
                        format!("an input dimension must be a positive integer, found {}", other.describe()),
                        d.span,
                        "not a positive integer",
                    ));
                    ok = false;
                }
                Err(diag) => {
                    self.err(diag);
                    ok = false;
                }
            }
        }
        ok.then_some(dims)
    }

    fn declare_lets(&mut self) {
        for (i, l) in self.model.lets.iter().enumerate() {
            let name = l.name.name.as_str();
            if let Some(&(prev, _)) = self.lets.get(name) {
                let first = self.model.lets[prev].name.span;
                self.err(
                    Diagnostic::error(format!("`{name}` is bound twice"), l.name.span, "bound again")
                        .with_label(first, "first bound here"),
                );
                self.used_lets[i] = true;
                continue;
            }
            if self.inputs.contains_key(name)
                || self.env.contains_key(name)
                || args::is_layer(name)
                || self.def(name).is_some()
            {
                let what = if self.inputs.contains_key(name) {
                    "an input"
                } else if args::is_layer(name) {
                    "a layer"
                } else if self.def(name).is_some() {
                    "a block"
                } else {
                    "a model parameter"
                };
                self.err(Diagnostic::error(
                    format!("`let {name}` hides {what} of the same name"),
                    l.name.span,
                    format!("already {what}"),
                ));
                self.used_lets[i] = true;
                continue;
            }
            self.lets.insert(name, (i, LetState::Pending));
        }
    }

    /// Lowers a binding on first use; `Err` when it failed (already reported) or is cyclic.
    fn resolve_let(&mut self, name: &'a str, used: bool) -> Result<NodeId, ()> {
        let Some(&(idx, state)) = self.lets.get(name) else { return Err(()) };
        if used {
            self.used_lets[idx] = true;
        }
        match state {
            LetState::Done(Some(id)) => Ok(id),
            LetState::Done(None) => Err(()),
            LetState::InProgress => {
                let start = self.let_stack.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<&str> = self.let_stack[start..].to_vec();
                cycle.push(name);
                let binding = &self.model.lets[idx];
                let d = if cycle.len() == 2 {
                    Diagnostic::error(
                        format!("`{name}` is defined in terms of itself"),
                        binding.name.span,
                        "uses itself",
                    )
                } else {
                    Diagnostic::error(
                        format!(
                            "the bindings {} depend on each other in a cycle",
                            list_names(&cycle[..cycle.len() - 1])
                        ),
                        binding.name.span,
                        "this binding is part of the cycle",
                    )
                };
                self.err(
                    d.with_note(format!("cycle: {}", cycle.join(" → "))).with_note(
                        "a model's layers form a graph without cycles; for a recurrence over time use `rnn`",
                    ),
                );
                for n in &self.let_stack[start..] {
                    if let Some(entry) = self.lets.get_mut(n) {
                        entry.1 = LetState::Done(None);
                    }
                }
                Err(())
            }
            LetState::Pending if self.let_stack.len() >= MAX_LET_DEPTH => {
                let binding = &self.model.lets[idx];
                self.err(
                    Diagnostic::error(
                        format!("bindings refer to one another more than {MAX_LET_DEPTH} deep"),
                        binding.name.span,
                        "too deep",
                    )
                    .with_note(format!(
                        "`{}` needs `{name}` through {MAX_LET_DEPTH} bindings that each need the next",
                        self.let_stack.first().copied().unwrap_or(name)
                    )),
                );
                Err(())
            }
            LetState::Pending => {
                if let Some(entry) = self.lets.get_mut(name) {
                    entry.1 = LetState::InProgress;
                }
                self.let_stack.push(name);
                let value = &self.model.lets[idx].value;
                // A binding's layers belong to the model (or block use) it is written in,
                // wherever it is first needed.
                let here = std::mem::replace(&mut self.scope, self.base_scope);
                let result = self.lower(value, None);
                self.scope = here;
                self.let_stack.pop();
                let result = match result {
                    Ok(Some(id)) => Some(id),
                    Ok(None) => {
                        self.err(Diagnostic::error(
                            format!("`{name}` is bound to an empty pipeline"),
                            value.span,
                            "produces no value",
                        ));
                        None
                    }
                    Err(()) => None,
                };
                // A cycle found inside may already have poisoned this binding.
                if let Some(entry) = self.lets.get_mut(name) {
                    if entry.1 == LetState::InProgress {
                        entry.1 = LetState::Done(result);
                    }
                    if let LetState::Done(Some(id)) = entry.1 {
                        return Ok(id);
                    }
                }
                Err(())
            }
        }
    }

    fn output(&mut self) {
        let model = self.model;
        match model.outputs.as_slice() {
            [] => {
                let mut d = Diagnostic::error(
                    format!("{} `{}` has no output", self.what(), model.name),
                    model.name.span,
                    "nothing is computed",
                );
                d = match model.lets.last() {
                    Some(l) => d.with_help(format!(
                        "end the model with the pipeline that is its output, e.g. `{} -> …`",
                        l.name
                    )),
                    None => d.with_help("end the model with a pipeline, e.g. `x -> dense(10) -> softmax`"),
                };
                self.err(d);
            }
            [out, rest @ ..] => {
                for extra in rest {
                    self.err(
                        Diagnostic::error(format!("a {} has exactly one output pipeline", self.what()), extra.span, "a second output")
                            .with_label(out.span, "the output is already this pipeline")
                            .with_help("bind intermediate results with `let name = …` and combine them with `add(…)` or `concat(…)`"),
                    );
                }
                if let Ok(Some(id)) = self.lower(out, None) {
                    let unchanged = match model.is_block {
                        true => self.inputs.values().any(|&i| i == id),
                        false => matches!(self.graph.node(id).op, Op::Input(_)),
                    };
                    if unchanged {
                        self.err(Diagnostic::error(
                            format!("the {}'s output is its input unchanged", self.what()),
                            out.span,
                            "no layer is applied",
                        ));
                    }
                    if model.is_block {
                        self.block_output = Some(id);
                    } else {
                        self.graph.output = Some(id);
                    }
                }
            }
        }
    }

    /// Unused bindings and inputs, reported only when nothing else went wrong: after an
    /// error they are usually its consequence.
    fn unused(&mut self) {
        if self.diags.iter().any(|d| d.is_error()) {
            return;
        }
        for (i, l) in self.model.lets.iter().enumerate() {
            if !self.used_lets[i] {
                self.err(
                    Diagnostic::error(format!("`{}` is bound but never used", l.name), l.name.span, "dangling binding")
                        .with_help("use it in the output pipeline, or remove the `let`"),
                );
            }
        }
        if self.model.is_block {
            // A block's one input is where all of its pipelines start (and the model's inputs
            // are the model's to check, once its output is lowered).
            return;
        }
        let users = self.graph.users();
        for &id in &self.graph.inputs {
            if users[id.index()].is_empty() && self.graph.output != Some(id) {
                let n = self.graph.node(id);
                self.diags.push(Diagnostic::error(format!("input `{}` is never used", n.name), n.span, "unused input"));
            }
        }
    }

    fn misplaced_softmax(&mut self) {
        let users = self.graph.users();
        for id in self.graph.ids() {
            if !matches!(self.graph.node(id).op, Op::Softmax(_)) {
                continue;
            }
            if let Some(&user) = users[id.index()].first() {
                let (s, u) = (self.graph.node(id), self.graph.node(user));
                self.diags.push(
                    Diagnostic::error("`softmax` must be the model's last layer", s.span, "softmax here")
                        .with_label(u.span, format!("but its output feeds this `{}`", u.op.kind()))
                        .with_note("softmax turns scores into class probabilities; training fuses it with the cross-entropy loss, which needs it last")
                        .with_help("move `softmax` to the end of the output pipeline, or remove it"),
                );
            }
        }
    }

    /// Lowers one pipeline element applied to `cur` (the value flowing in, `None` at the
    /// head of a pipeline). Returns the value flowing out; `Err` means reported.
    fn lower(&mut self, e: &'a Expr, cur: Option<NodeId>) -> Result<Option<NodeId>, ()> {
        match &e.kind {
            ExprKind::Pipeline(stages) => {
                let mut c = cur;
                for s in stages {
                    c = self.lower(s, c)?;
                }
                Ok(c)
            }
            ExprKind::Group(inner) => self.lower(inner, cur),
            ExprKind::Binary(BinOp::Mul, a, b) if is_group(a) || is_group(b) => {
                let (body, count) = if is_group(a) { (a, b) } else { (b, a) };
                let n = self.repeat_count(count)?;
                let mut c = cur;
                for i in 0..n {
                    let before = self.graph.nodes.len();
                    c = self.lower(body, c)?;
                    if self.graph.nodes.len() == before {
                        // An empty body (every element switched off): so are the others.
                        break;
                    }
                    if self.graph.nodes.len() > MAX_LAYERS {
                        self.err(
                            Diagnostic::error(
                                format!(
                                    "this model would have more than {} layers",
                                    crate::diag::thousands(MAX_LAYERS as u64)
                                ),
                                count.span,
                                format!("stopped after {} of {n} repetitions", i + 1),
                            )
                            .with_note(
                                "nnlang compiles models of at most 1,000,000 layers; a count is probably mistyped",
                            ),
                        );
                        return Err(());
                    }
                }
                Ok(c)
            }
            ExprKind::Optional(inner, param) => {
                if self.switch(inner, param.as_ref(), e.span)? {
                    self.lower(inner, cur)
                } else {
                    Ok(cur)
                }
            }
            ExprKind::Named(inner, name) => {
                if is_group(inner)
                    || matches!(&inner.kind, ExprKind::Binary(BinOp::Mul, a, b) if is_group(a) || is_group(b))
                {
                    // `[Residual(64)] * 2 as stage1`: the group's layers become `stage1.…`.
                    let scope = self.graph.scopes.len() as u32;
                    self.graph.scopes.push(crate::ir::Scope {
                        block: String::new(),
                        name: String::new(),
                        args: Vec::new(),
                        parent: self.scope,
                        span: inner.span,
                    });
                    self.scope_names.push((scope, name.clone()));
                    let outer = self.scope.replace(scope);
                    let out = self.lower(inner, cur);
                    self.scope = outer;
                    return out;
                }
                let layer_like = match &inner.kind {
                    ExprKind::Call { .. } | ExprKind::Ident(_) => true,
                    ExprKind::Optional(x, _) => matches!(x.kind, ExprKind::Call { .. } | ExprKind::Ident(_)),
                    _ => false,
                };
                if !layer_like {
                    self.err(
                        Diagnostic::error("`as` names one layer", name.span, "cannot name this")
                            .with_label(inner.span, "this is not a single layer")
                            .with_help("put `as name` right after the layer it names, or bracket a group of layers: `[…] as name`"),
                    );
                    return Err(());
                }
                if self.is_block_use(inner) {
                    // `Residual(64) as stage1` names the use: its layers become `stage1.…`.
                    self.pending_name = Some(name.clone());
                    let out = self.lower(inner, cur);
                    self.pending_name = None;
                    return out;
                }
                let before = self.graph.nodes.len();
                let out = self.lower(inner, cur)?;
                if let Some(id) = out {
                    if id.index() >= before {
                        self.user_names.insert(id, name.clone());
                    } else if matches!(inner.kind, ExprKind::Ident(_)) && cur.is_none() {
                        self.err(
                            Diagnostic::error(
                                "`as` names a layer, not an input or binding",
                                name.span,
                                "cannot name this",
                            )
                            .with_label(inner.span, "this is a value, not a layer"),
                        );
                        return Err(());
                    }
                }
                Ok(out)
            }
            ExprKind::Ident(name) => self.ident(name, e.span, cur),
            ExprKind::Call { name, args } => self.call(name, args, e.span, cur),
            ExprKind::Binary(BinOp::Mul, _, _) => {
                self.err(
                    Diagnostic::error("only a bracketed sub-pipeline can be repeated", e.span, "not a layer")
                        .with_help("write the repetition as `[dense(64) -> relu] * 2`"),
                );
                Err(())
            }
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Percent(_)
            | ExprKind::Bool(_)
            | ExprKind::Str(_)
            | ExprKind::Neg(_)
            | ExprKind::Binary(..) => {
                let found = match eval(e, &self.env) {
                    Ok(v) => v.describe(),
                    Err(_) => "an expression".to_string(),
                };
                let where_ = if cur.is_some() { "a layer" } else { "an input, a `let` binding or a layer" };
                self.err(Diagnostic::error(format!("expected {where_}, found {found}"), e.span, "not a layer"));
                Err(())
            }
        }
    }

    fn repeat_count(&mut self, count: &Expr) -> Result<usize, ()> {
        match eval(count, &self.env) {
            Ok(Value::Int(n)) if n > MAX_LAYERS as i64 => {
                self.err(
                    Diagnostic::error(
                        format!(
                            "a repetition count must be at most {}, found {n}",
                            crate::diag::thousands(MAX_LAYERS as u64)
                        ),
                        count.span,
                        "far too many",
                    )
                    .with_note("nnlang compiles models of at most 1,000,000 layers; a count is probably mistyped"),
                );
                Err(())
            }
            Ok(Value::Int(n)) if n >= 0 => usize::try_from(n).map_err(|_| ()),
            Ok(Value::Int(n)) => {
                self.err(
                    Diagnostic::error(
                        format!("a repetition count must be 0 or more, found {n}"),
                        count.span,
                        "negative count",
                    )
                    .with_note("`[ … ] * 0` removes the group; a negative count means nothing"),
                );
                Err(())
            }
            Ok(other) => {
                let mut d = Diagnostic::error(
                    format!("a repetition count must be an integer, found {}", other.describe()),
                    count.span,
                    "not an integer",
                );
                if let Value::Sym(s) = &other {
                    d = d.with_suggestion(s, self.env.keys().map(|k| k.as_str()));
                }
                self.err(d);
                Err(())
            }
            Err(d) => {
                self.err(d);
                Err(())
            }
        }
    }

    /// Whether an optional element is switched on by its boolean parameter.
    fn switch(&mut self, inner: &Expr, param: Option<&Ident>, span: Span) -> Result<bool, ()> {
        let Some(p) = param else {
            self.err(
                Diagnostic::error(
                    "an optional element must name the boolean parameter that switches it",
                    span,
                    "switched by what?",
                )
                .with_help("declare `pool = true` among the model's parameters and write `maxpool(2)?pool`"),
            );
            return Err(());
        };
        match self.env.get(&p.name) {
            Some(ParamValue::Bool(b)) => Ok(*b),
            Some(other) => {
                self.err(
                    Diagnostic::error(
                        format!("`{}` switches an optional element, so it must be a boolean, found {other}", p.name),
                        p.span,
                        "not a boolean",
                    )
                    .with_label(inner.span, "switched by it"),
                );
                Err(())
            }
            None => {
                let names: Vec<&str> = self.env.keys().map(|k| k.as_str()).collect();
                self.err(
                    Diagnostic::error(
                        format!("unknown parameter `{}`", p.name),
                        p.span,
                        "not a parameter of this model",
                    )
                    .with_suggestion(&p.name, names)
                    .with_help(format!(
                        "declare it: `{} {}({} = true, …)`",
                        self.what(),
                        self.model.name,
                        p.name
                    )),
                );
                Err(())
            }
        }
    }

    fn ident(&mut self, name: &'a str, span: Span, cur: Option<NodeId>) -> Result<Option<NodeId>, ()> {
        if self.failed_inputs.contains(&name) {
            return Err(());
        }
        let is_value = self.inputs.contains_key(name) || self.lets.contains_key(name);
        if !is_value {
            if let Some(def) = self.def(name) {
                return self.instantiate(def, &[], span, cur);
            }
        }
        match cur {
            None if is_value => {
                if let Some(&id) = self.inputs.get(name) {
                    return Ok(Some(id));
                }
                self.resolve_let(name, true).map(Some)
            }
            None if args::is_layer(name) => {
                let ins = self.input_names().join("`, `");
                let mut d = Diagnostic::error(
                    format!("a pipeline starts from an input or a `let` binding, not from the layer `{name}`"),
                    span,
                    "nothing flows into this layer",
                );
                if !ins.is_empty() {
                    d = d.with_help(format!("start from an input: `{ins}`"));
                }
                self.err(d);
                Err(())
            }
            Some(_) if is_value => {
                self.err(
                    Diagnostic::error(
                        format!("`{name}` is a value, not a layer"),
                        span,
                        "cannot be applied to what flows in",
                    )
                    .with_help("to combine two values write `add(a, b)` or `concat(a, b)`"),
                );
                Err(())
            }
            Some(input) if args::is_layer(name) => self.call_layer(name, &[], span, input),
            _ => {
                let d = if cur.is_none() {
                    let candidates = self.value_names();
                    Diagnostic::error(format!("unknown name `{name}`"), span, "not an input or binding")
                        .with_suggestion(name, candidates.iter().map(|s| s.as_str()))
                } else {
                    let mut d = Diagnostic::error(format!("unknown layer `{name}`"), span, "not a layer");
                    if let Some(best) = self.suggest_layer(name) {
                        d = d.with_help(format!("did you mean `{best}`?"));
                    }
                    d
                };
                self.err(d);
                Err(())
            }
        }
    }

    fn input_names(&self) -> Vec<String> {
        self.model.inputs.iter().map(|i| i.name.name.clone()).collect()
    }

    fn value_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.model.inputs.iter().map(|i| i.name.name.clone()).collect();
        v.extend(self.model.lets.iter().map(|l| l.name.name.clone()));
        v
    }

    fn call(
        &mut self,
        name: &'a Ident,
        args: &'a [ast::Arg],
        span: Span,
        cur: Option<NodeId>,
    ) -> Result<Option<NodeId>, ()> {
        if let Some(def) = self.def(&name.name) {
            return self.instantiate(def, args, span, cur);
        }
        if args::is_merge(&name.name) {
            return self.merge(name, args, span, cur);
        }
        if !args::is_layer(&name.name) {
            let mut d = Diagnostic::error(format!("unknown layer `{}`", name.name), name.span, "not a layer");
            if let Some(best) = self.suggest_layer(&name.name) {
                d = d.with_help(format!("did you mean `{best}`?"));
            }
            self.err(d);
            return Err(());
        }
        match cur {
            Some(input) => self.call_layer(&name.name, args, span, input),
            None => {
                let inputs = self.input_names();
                let mut d = Diagnostic::error(
                    format!("a pipeline starts from an input or a `let` binding, not from the layer `{}`", name.name),
                    span,
                    "nothing flows into this layer",
                );
                if let Some(first) = inputs.first() {
                    d = d.with_help(format!("start from an input, e.g. `{first} -> {}(…)`", name.name));
                }
                self.err(d);
                Err(())
            }
        }
    }

    fn call_layer(&mut self, kind: &str, args: &[ast::Arg], span: Span, input: NodeId) -> Result<Option<NodeId>, ()> {
        match args::build(kind, span, args, &self.env) {
            Ok(op) => Ok(Some(self.add(op, vec![input], span))),
            Err(d) => {
                self.err(d);
                Err(())
            }
        }
    }

    /// `add(a, b, …)` / `concat(a, b, …)`; in a pipeline the value flowing in comes first.
    fn merge(
        &mut self,
        name: &Ident,
        args: &'a [ast::Arg],
        span: Span,
        cur: Option<NodeId>,
    ) -> Result<Option<NodeId>, ()> {
        let mut operands: Vec<NodeId> = cur.into_iter().collect();
        let mut failed = false;
        for arg in args {
            if let Some(n) = &arg.name {
                self.err(Diagnostic::error(
                    format!("`{}` takes values, not named arguments", name.name),
                    n.span,
                    "unexpected name",
                ));
                failed = true;
                continue;
            }
            match self.lower(&arg.value, None) {
                Ok(Some(id)) => operands.push(id),
                Ok(None) => failed = true,
                Err(()) => failed = true,
            }
        }
        if failed {
            return Err(());
        }
        if operands.len() < 2 {
            self.err(
                Diagnostic::error(
                    format!("`{}` combines two or more values, found {}", name.name, operands.len()),
                    span,
                    "too few values",
                )
                .with_help(format!("write `{}(a, b)`", name.name)),
            );
            return Err(());
        }
        let op = match args::build(&name.name, span, &[], &self.env) {
            Ok(op) => op,
            Err(d) => {
                self.err(d);
                return Err(());
            }
        };
        Ok(Some(self.add(op, operands, span)))
    }
}

fn is_group(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Group(_))
}

fn list_names(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
