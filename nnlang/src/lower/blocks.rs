//! `block`s: reusable sub-networks used like layers. A use binds the block's parameters from
//! its arguments (evaluated where the use is written), lowers the block's body in a scope of
//! its own with the value flowing in as the block's input, and returns the body's output.
//! Mistakes inside the body are reported at the line in the block with a label at each use
//! that led there; the nodes it made are named under the use (`stage1.residual_0.conv_0`).

use super::eval::{eval, Env, Value};
use super::Lowerer;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{NodeId, ParamValue, Scope};
use crate::syntax::ast::{self, Expr, ExprKind, Ident, Span};
use std::collections::HashMap;

/// The most uses of blocks one inside another (a block using a block …); only a mistake
/// reaches it, since a block may not use itself.
pub const MAX_BLOCK_DEPTH: usize = 32;

impl<'a> Lowerer<'a> {
    /// The block named `name`, if the file defines one.
    pub(super) fn def(&self, name: &str) -> Option<&'a ast::Model> {
        self.defs.iter().find(|d| d.name.name == name)
    }

    /// Whether `e` is a use of a block (`Residual(64)`, `Residual`, `Residual(64)?deep`).
    pub(super) fn is_block_use(&self, e: &Expr) -> bool {
        match &e.kind {
            ExprKind::Call { name, .. } => self.def(&name.name).is_some(),
            ExprKind::Ident(name) => {
                self.def(name).is_some()
                    && !self.inputs.contains_key(name.as_str())
                    && !self.lets.contains_key(name.as_str())
            }
            ExprKind::Optional(x, _) => self.is_block_use(x),
            _ => false,
        }
    }

    /// "did you mean" over the layers and the file's blocks.
    pub(super) fn suggest_layer(&self, name: &str) -> Option<String> {
        let layers = crate::ops::layers().map(|l| l.name);
        let blocks = self.defs.iter().map(|d| d.name.name.as_str());
        did_you_mean(name, layers.chain(blocks)).map(str::to_string)
    }

    /// A use of `def` applied to `cur`: its layers, in a new scope; the value it returns.
    pub(super) fn instantiate(
        &mut self,
        def: &'a ast::Model,
        args: &'a [ast::Arg],
        span: Span,
        cur: Option<NodeId>,
    ) -> Result<Option<NodeId>, ()> {
        let block = def.name.name.as_str();
        let pending = self.pending_name.take();
        let Some(input) = cur else {
            let mut d = Diagnostic::error(
                format!("a pipeline starts from an input or a `let` binding, not from the block `{block}`"),
                span,
                "nothing flows into this block",
            );
            if let Some(first) = self.model.inputs.first() {
                d = d.with_help(format!("start from an input, e.g. `{} -> {block}(…)`", first.name));
            }
            self.err(d);
            return Err(());
        };
        if let Some(at) = self.active.iter().position(|b| *b == block) {
            let mut chain: Vec<&str> = self.active[at..].to_vec();
            chain.push(block);
            let d = if chain.len() == 2 {
                Diagnostic::error(format!("block `{block}` uses itself"), span, "used inside its own definition")
            } else {
                Diagnostic::error(
                    format!("block `{block}` uses itself through {}", chain[1..chain.len() - 1].join(", ")),
                    span,
                    "used inside its own expansion",
                )
            };
            self.err(
                d.with_note(format!("expansion: {}", chain.join(" → ")))
                    .with_note("a block's expansion must end; repeat a block with `[ Block(…) ] * n` instead"),
            );
            return Err(());
        }
        if self.active.len() >= MAX_BLOCK_DEPTH {
            self.err(
                Diagnostic::error(
                    format!("blocks are used inside one another more than {MAX_BLOCK_DEPTH} deep"),
                    span,
                    "too deep",
                )
                .with_note(format!("expansion: {} → {block}", self.active.join(" → "))),
            );
            return Err(());
        }
        let env = self.block_env(def, args, span)?;
        let scope = self.graph.scopes.len() as u32;
        let args =
            def.params.iter().filter_map(|p| env.get(&p.name.name).map(|v| (p.name.name.clone(), v.clone()))).collect();
        self.graph.scopes.push(Scope { block: block.to_string(), name: String::new(), args, parent: self.scope, span });
        if let Some(name) = pending {
            self.scope_names.push((scope, name));
        }
        let mut child = Lowerer::new(def, self.defs, env, std::mem::take(&mut self.graph));
        child.scope = Some(scope);
        child.base_scope = Some(scope);
        child.active = self.active.clone();
        child.active.push(block);
        child.declare_block_input(input);
        if child.diags.is_empty() {
            child.body();
        }
        self.graph = std::mem::take(&mut child.graph);
        self.user_names.extend(child.user_names);
        self.scope_names.extend(child.scope_names);
        let mut failed = child.diags.iter().any(|d| d.is_error());
        let uses = [(span, block)];
        self.diags.extend(child.diags.into_iter().map(|d| d.in_uses(&uses)));
        if !failed && self.graph.nodes.len() > super::MAX_LAYERS {
            // Blocks using blocks multiply: stop at the first use that passes the limit.
            self.err(
                Diagnostic::error(
                    format!(
                        "this model would have more than {} layers",
                        crate::diag::thousands(super::MAX_LAYERS as u64)
                    ),
                    span,
                    format!("`{block}` passes the limit here"),
                )
                .with_note(
                    "nnlang compiles models of at most 1,000,000 layers; blocks that use blocks multiply their layers",
                ),
            );
            failed = true;
        }
        match child.block_output {
            Some(out) if !failed => Ok(Some(out)),
            _ => Err(()),
        }
    }

    /// The block's parameters bound for one use: the arguments given (evaluated where the
    /// use is written), then the defaults (which may read the parameters before them).
    fn block_env(&mut self, def: &'a ast::Model, args: &'a [ast::Arg], span: Span) -> Result<Env, ()> {
        let block = &def.name.name;
        let signature = || {
            let params: Vec<String> = def
                .params
                .iter()
                .map(|p| match &p.default {
                    Some(_) => format!("{} = …", p.name),
                    None => p.name.name.clone(),
                })
                .collect();
            format!("`{block}` takes ({})", params.join(", "))
        };
        let mut given: Vec<Option<&'a Expr>> = vec![None; def.params.len()];
        let mut positional = 0;
        let mut ok = true;
        for arg in args {
            let slot = match &arg.name {
                None => {
                    if positional >= def.params.len() {
                        self.err(
                            Diagnostic::error(
                                format!("too many arguments to `{block}`"),
                                arg.value.span,
                                "this argument is extra",
                            )
                            .with_label(def.name.span, "defined here")
                            .with_note(signature()),
                        );
                        ok = false;
                        continue;
                    }
                    positional += 1;
                    positional - 1
                }
                Some(n) => match def.params.iter().position(|p| p.name.name == n.name) {
                    Some(i) => i,
                    None => {
                        let names = def.params.iter().map(|p| p.name.name.as_str());
                        let mut d = Diagnostic::error(
                            format!("`{block}` has no parameter `{}`", n.name),
                            n.span,
                            "unknown parameter",
                        )
                        .with_suggestion(&n.name, names)
                        .with_label(def.name.span, "defined here");
                        if !def.params.is_empty() {
                            d = d.with_note(signature());
                        }
                        self.err(d);
                        ok = false;
                        continue;
                    }
                },
            };
            if given[slot].is_some() {
                let at = arg.name.as_ref().map_or(arg.value.span, |n| n.span);
                let p = &def.params[slot].name;
                self.err(Diagnostic::error(format!("`{p}` is given twice to `{block}`"), at, "given again here"));
                ok = false;
                continue;
            }
            given[slot] = Some(&arg.value);
        }
        let mut env = Env::new();
        for (i, p) in def.params.iter().enumerate() {
            if def.params[..i].iter().any(|q| q.name.name == p.name.name) {
                self.err(
                    Diagnostic::error(
                        format!("parameter `{}` is declared twice", p.name),
                        p.name.span,
                        "declared again",
                    )
                    .with_label(
                        def.params[..i]
                            .iter()
                            .find(|q| q.name.name == p.name.name)
                            .map_or(p.name.span, |q| q.name.span),
                        "first declared here",
                    ),
                );
                ok = false;
                continue;
            }
            let value = match (given[i], &p.default) {
                (Some(e), _) => eval(e, &self.env).map(|v| (v, e)),
                (None, Some(d)) => eval(d, &env).map(|v| (v, d)),
                (None, None) => {
                    self.err(
                        Diagnostic::error(
                            format!("`{block}` needs `{}`", p.name),
                            span,
                            format!("`{}` is missing", p.name),
                        )
                        .with_label(p.name.span, "declared here without a default")
                        .with_help(format!("write it as `{block}({} = …)`", p.name)),
                    );
                    ok = false;
                    continue;
                }
            };
            let value = match value {
                Ok((Value::Int(v), _)) => ParamValue::Int(v),
                Ok((Value::Float(v), _)) => ParamValue::Float(v),
                Ok((Value::Bool(v), _)) => ParamValue::Bool(v),
                Ok((other, e)) => {
                    let mut d = Diagnostic::error(
                        format!(
                            "parameter `{}` of `{block}` must be an integer, a number or a boolean, found {}",
                            p.name,
                            other.describe()
                        ),
                        e.span,
                        "not a parameter value",
                    );
                    if let Value::Sym(s) = &other {
                        d = d.with_suggestion(s, self.env.keys().map(|k| k.as_str()));
                    }
                    self.err(d);
                    ok = false;
                    continue;
                }
                Err(d) => {
                    self.err(d);
                    ok = false;
                    continue;
                }
            };
            env.insert(p.name.name.clone(), value);
        }
        ok.then_some(env).ok_or(())
    }

    /// A block's one `input`, bound to the value flowing into the use.
    fn declare_block_input(&mut self, value: NodeId) {
        let def = self.model;
        let block = &def.name;
        match def.inputs.as_slice() {
            [] => self.err(
                Diagnostic::error(format!("block `{block}` has no input"), block.span, "declares no `input`")
                    .with_help("name the value that flows into the block, e.g. `input x`"),
            ),
            [decl] => {
                if decl.has_dims {
                    self.err(
                        Diagnostic::error(
                            format!("the input `{}` of a block takes the shape of what flows in", decl.name),
                            decl.span,
                            "no dimensions here",
                        )
                        .with_note("each use of the block is checked with the shape of the value it is applied to")
                        .with_help(format!("write `input {}`", decl.name)),
                    );
                } else if self.env.contains_key(&decl.name.name) {
                    self.err(Diagnostic::error(
                        format!("input `{}` has the name of a parameter of `{block}`", decl.name),
                        decl.name.span,
                        "already a parameter",
                    ));
                } else {
                    self.inputs.insert(&decl.name.name, value);
                }
            }
            [_, second, ..] => self.err(
                Diagnostic::error(format!("block `{block}` has more than one input"), second.span, "a second input")
                    .with_note("a block is applied to the one value that flows into it")
                    .with_help("bring other values in through the model: combine them with `add(…)` or `concat(…)` before or after the block"),
            ),
        }
    }

    /// User names first (rejecting duplicates), then `<kind>_<k>` for the rest, numbered per
    /// kind in creation order and skipping names a user took; each block use is a namespace
    /// of its own, named in the enclosing one after its block (`Residual` → `residual_0`).
    pub(super) fn name_nodes(&mut self) {
        let slots = self.graph.scopes.len() + 1;
        let slot = |s: Option<u32>| s.map_or(0, |s| s as usize + 1);
        // Where each use starts: the first node it (or a use inside it) made.
        let mut start = vec![usize::MAX; self.graph.scopes.len()];
        for (i, n) in self.graph.nodes.iter().enumerate() {
            let mut s = n.scope;
            while let Some(k) = s {
                let k = k as usize;
                if k >= start.len() || start[k] != usize::MAX {
                    break;
                }
                start[k] = i;
                s = self.graph.scopes[k].parent;
            }
        }
        #[derive(Clone, Copy)]
        enum Who {
            Node(usize),
            Scope(usize),
        }
        let mut order: Vec<(usize, u8, Who)> = (0..self.graph.nodes.len()).map(|i| (i, 1, Who::Node(i))).collect();
        order.extend(start.iter().enumerate().map(|(k, &s)| (s, 0, Who::Scope(k))));
        order.sort_by_key(|&(s, rank, who)| {
            (
                s,
                rank,
                match who {
                    Who::Node(i) | Who::Scope(i) => i,
                },
            )
        });
        let parent_slot = |who: Who, g: &crate::ir::Graph| match who {
            Who::Node(i) => slot(g.nodes[i].scope),
            Who::Scope(k) => slot(g.scopes[k].parent),
        };

        let mut taken: Vec<HashMap<String, Span>> = vec![HashMap::new(); slots];
        let mut local: HashMap<usize, String> = HashMap::new();
        let mut scope_local: Vec<String> = vec![String::new(); self.graph.scopes.len()];
        for &id in &self.graph.inputs {
            let n = self.graph.node(id);
            taken[0].insert(n.name.clone(), n.span);
            local.insert(id.index(), n.name.clone());
        }
        // The user's names, in the order they are met.
        let mut named: Vec<(usize, Who, Ident)> =
            self.user_names.drain().map(|(id, ident)| (id.index(), Who::Node(id.index()), ident)).collect();
        named.extend(
            self.scope_names
                .drain(..)
                .map(|(k, ident)| (start.get(k as usize).copied().unwrap_or(0), Who::Scope(k as usize), ident)),
        );
        named.sort_by_key(|(at, who, _)| (*at, matches!(who, Who::Node(_))));
        for (_, who, ident) in named {
            let t = &mut taken[parent_slot(who, &self.graph)];
            if let Some(first) = t.get(&ident.name) {
                let d = if first == &ident.span {
                    Diagnostic::error(
                        format!("the name `{}` is given to every repetition of this layer", ident.name),
                        ident.span,
                        "names must be unique",
                    )
                    .with_help("name the layer outside the repetition, or remove `as`")
                } else {
                    Diagnostic::error(format!("the name `{}` is used twice", ident.name), ident.span, "used again")
                        .with_label(*first, "first used here")
                };
                self.diags.push(d);
                continue;
            }
            t.insert(ident.name.clone(), ident.span);
            match who {
                Who::Node(i) => {
                    local.insert(i, ident.name);
                }
                Who::Scope(k) => scope_local[k] = ident.name,
            }
        }
        let mut counters: Vec<HashMap<String, usize>> = vec![HashMap::new(); slots];
        for &(_, _, who) in &order {
            let kind = match who {
                Who::Node(i) if local.contains_key(&i) => continue,
                Who::Scope(k) if !scope_local[k].is_empty() => continue,
                Who::Node(i) => self.graph.nodes[i].op.kind().to_string(),
                Who::Scope(k) => snake_case(&self.graph.scopes[k].block),
            };
            let ps = parent_slot(who, &self.graph);
            let k = counters[ps].entry(kind.clone()).or_insert(0);
            let name = loop {
                let candidate = format!("{kind}_{k}");
                *k += 1;
                if !taken[ps].contains_key(&candidate) {
                    break candidate;
                }
            };
            taken[ps].insert(name.clone(), Span::default());
            match who {
                Who::Node(i) => {
                    local.insert(i, name);
                }
                Who::Scope(k) => scope_local[k] = name,
            }
        }
        // Full names: each use's path, then each node's under its use.
        for (k, own) in scope_local.into_iter().enumerate() {
            let path = match self.graph.scopes[k].parent {
                Some(p) if (p as usize) < k => format!("{}.{own}", self.graph.scopes[p as usize].name),
                _ => own,
            };
            self.graph.scopes[k].name = path;
        }
        for i in 0..self.graph.nodes.len() {
            let own = local.remove(&i).unwrap_or_default();
            self.graph.nodes[i].name = match self.graph.nodes[i].scope {
                Some(s) => format!("{}.{own}", self.graph.scopes[s as usize].name),
                None => own,
            };
        }
    }
}

/// A block's name as the prefix of its uses' names: `Residual` → `residual`,
/// `ConvBN` → `conv_bn`, `MBConv2` → `mb_conv2`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if (prev.is_lowercase() || prev.is_ascii_digit()) || (prev.is_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn block_names_become_snake_case() {
        assert_eq!(snake_case("Residual"), "residual");
        assert_eq!(snake_case("ConvBN"), "conv_bn");
        assert_eq!(snake_case("MBConv2"), "mb_conv2");
        assert_eq!(snake_case("stage"), "stage");
        assert_eq!(snake_case("Down2x"), "down2x");
    }
}
