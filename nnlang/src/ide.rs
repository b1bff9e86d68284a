//! What an editor asks of a source, answered from what the compiler knows: diagnostics,
//! hover (a layer's row of `nnlangc check`, its parameters and output-size arithmetic; a
//! name's uses), completion, definitions and references of names, renaming, symbols.
//! Places are byte offsets; `nnlangc lsp` turns them into an editor's lines and columns.

use crate::diag::{Diagnostic, Span};
use crate::ir::{NodeId, Op};
use crate::summary;
use crate::syntax::ast::{self, Expr, ExprKind};
use crate::{compile, Compiled, Options};

/// A checked source and its names.
pub struct Analysis {
    source: String,
    compiled: Compiled,
    names: Vec<Name>,
}

/// What a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// `model Name`.
    Model,
    /// `block Name`.
    Block,
    /// `data name`.
    Data,
    /// A model's or block's parameter.
    Param,
    /// A model's or block's input.
    Input,
    /// `let name = …`.
    Let,
}

impl NameKind {
    /// The word for it.
    pub fn word(self) -> &'static str {
        match self {
            NameKind::Model => "model",
            NameKind::Block => "block",
            NameKind::Data => "data set",
            NameKind::Param => "parameter",
            NameKind::Input => "input",
            NameKind::Let => "binding",
        }
    }
}

/// A declared name and every use of it.
#[derive(Clone, Debug)]
pub struct Name {
    /// What it names.
    pub kind: NameKind,
    /// The name.
    pub name: String,
    /// Where it is declared.
    pub decl: Span,
    /// Where it is used.
    pub uses: Vec<Span>,
    /// The model or block it belongs to (its index in the file's models then defs), for
    /// names inside one.
    pub owner: Option<(bool, usize)>,
}

/// What hovering over a place shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Hover {
    /// The text hovered.
    pub span: Span,
    /// Markdown.
    pub text: String,
}

/// What kind of thing a completion is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionKind {
    /// A layer or a block.
    Layer,
    /// A name in scope (`let`, input, parameter).
    Variable,
    /// An argument of a call (`filters = `).
    Argument,
    /// A recipe setting's key.
    Key,
    /// A setting's value.
    Value,
    /// A keyword (`model`, `train`…).
    Keyword,
}

/// One completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// What is shown and inserted.
    pub label: String,
    /// Its kind.
    pub kind: CompletionKind,
    /// A signature or a short description.
    pub detail: String,
}

/// A symbol of the file's outline.
#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    /// Its name (`model Mlp`, `train Mlp`, `h`).
    pub name: String,
    /// What it is.
    pub kind: SymbolKind,
    /// The whole construct.
    pub span: Span,
    /// Its name's place.
    pub name_span: Span,
    /// What it holds.
    pub children: Vec<Symbol>,
}

/// The kinds of outline symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolKind {
    /// A model.
    Model,
    /// A block definition.
    Block,
    /// A `train`, `data`, `search` or `ensemble` block.
    Recipe,
    /// An input, a `let` or a parameter.
    Variable,
    /// A recipe setting.
    Setting,
}

impl Analysis {
    /// Checks `source` and indexes its names.
    pub fn new(source: &str) -> Analysis {
        let compiled = compile(source, &Options::default()).unwrap_or_default();
        let names = index(&compiled.file);
        Analysis { source: source.to_string(), compiled, names }
    }

    /// The source analysed.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every error and warning.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.compiled.diagnostics
    }

    /// The compilation.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Every declared name.
    pub fn names(&self) -> &[Name] {
        &self.names
    }

    /// The name declared or used at `offset`.
    pub fn name_at(&self, offset: usize) -> Option<(&Name, Span)> {
        self.names.iter().find_map(|n| {
            std::iter::once(n.decl).chain(n.uses.iter().copied()).find(|s| contains(*s, offset)).map(|s| (n, s))
        })
    }

    /// Where the name at `offset` is declared.
    pub fn definition(&self, offset: usize) -> Option<Span> {
        self.name_at(offset).map(|(n, _)| n.decl)
    }

    /// Every place the name at `offset` is used (and declared, with `declaration`), in order.
    pub fn references(&self, offset: usize, declaration: bool) -> Vec<Span> {
        let Some((n, _)) = self.name_at(offset) else { return Vec::new() };
        let mut v: Vec<Span> = n.uses.clone();
        if declaration {
            v.push(n.decl);
        }
        v.sort();
        v.dedup();
        v
    }

    /// The places to rewrite to rename the name at `offset` to `new_name`, or why it cannot
    /// be.
    pub fn rename(&self, offset: usize, new_name: &str) -> Result<Vec<Span>, String> {
        let Some((n, _)) = self.name_at(offset) else {
            return Err(
                "there is no name here to rename (a `let`, a parameter, an input, a model, a block or a data set)"
                    .into(),
            );
        };
        if !is_identifier(new_name) {
            return Err(format!("`{new_name}` is not a name: a letter or `_`, then letters, digits or `_`"));
        }
        if KEYWORDS.contains(&new_name) {
            return Err(format!("`{new_name}` is a keyword"));
        }
        if new_name == n.name {
            return Ok(Vec::new());
        }
        let clash = self
            .names
            .iter()
            .find(|m| m.name == new_name && (m.owner == n.owner || m.owner.is_none() || n.owner.is_none()));
        if let Some(m) = clash {
            let word = m.kind.word();
            let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            return Err(format!("`{new_name}` already names {article} {word} here"));
        }
        if crate::ops::layer(new_name).is_some() {
            return Err(format!("`{new_name}` is a layer"));
        }
        Ok(self.references(offset, true))
    }

    /// The outline: models, blocks and recipe blocks, with what they hold.
    pub fn symbols(&self) -> Vec<Symbol> {
        let f = &self.compiled.file;
        let mut out: Vec<Symbol> = Vec::new();
        for m in f.models.iter().chain(&f.defs) {
            let mut children = Vec::new();
            for p in &m.params {
                children.push(Symbol {
                    name: p.name.name.clone(),
                    kind: SymbolKind::Variable,
                    span: p.span,
                    name_span: p.name.span,
                    children: Vec::new(),
                });
            }
            for i in &m.inputs {
                children.push(Symbol {
                    name: i.name.name.clone(),
                    kind: SymbolKind::Variable,
                    span: i.span,
                    name_span: i.name.span,
                    children: Vec::new(),
                });
            }
            for l in &m.lets {
                children.push(Symbol {
                    name: l.name.name.clone(),
                    kind: SymbolKind::Variable,
                    span: l.span,
                    name_span: l.name.span,
                    children: Vec::new(),
                });
            }
            children.sort_by_key(|s| s.span);
            out.push(Symbol {
                name: format!("{} {}", if m.is_block { "block" } else { "model" }, m.name),
                kind: if m.is_block { SymbolKind::Block } else { SymbolKind::Model },
                span: m.span,
                name_span: m.name.span,
                children,
            });
        }
        for b in &f.blocks {
            out.push(Symbol {
                name: format!("{} {}", b.kind.keyword(), b.target),
                kind: SymbolKind::Recipe,
                span: b.span,
                name_span: b.target.span,
                children: settings(&b.entries),
            });
        }
        out.sort_by_key(|s| s.span);
        out
    }

    /// What hovering at `offset` shows: for a layer, its rows of `nnlangc check` (one per
    /// copy a repetition or a block made), its parameters and, for a window, the output-size
    /// arithmetic; for a name, what it is and where it is used.
    pub fn hover(&self, offset: usize) -> Option<Hover> {
        if let Some((n, span)) = self.name_at(offset) {
            // A block's name at its use is the layer: its rows say more.
            if !(n.kind == NameKind::Block && span != n.decl) {
                let mut text = self.name_hover(n);
                // An input is a layer too: its row of `check`.
                if n.kind == NameKind::Input {
                    if let Some(row) = self.layer_hover(n.decl.start) {
                        text.push('\n');
                        text.push_str(&row.text);
                    }
                }
                return Some(Hover { span, text });
            }
        }
        self.layer_hover(offset)
    }

    fn name_hover(&self, n: &Name) -> String {
        let mut text = String::new();
        let owner = n.owner.and_then(|(def, i)| {
            let f = &self.compiled.file;
            if def {
                f.defs.get(i)
            } else {
                f.models.get(i)
            }
        });
        let of = owner.map(|m| format!(" of `{}`", m.name)).unwrap_or_default();
        match n.kind {
            NameKind::Param => {
                let value = owner.and_then(|m| {
                    self.compiled
                        .models
                        .iter()
                        .find(|c| c.graph.name == m.name.name)
                        .and_then(|c| c.graph.params.iter().find(|(k, _)| *k == n.name))
                        .map(|(_, v)| v.to_string())
                });
                text.push_str(&format!("**parameter** `{}`{of}", n.name));
                if let Some(v) = value {
                    text.push_str(&format!(" = `{v}`"));
                }
                text.push('\n');
            }
            NameKind::Input | NameKind::Let => {
                text.push_str(&format!("**{}** `{}`{of}", n.kind.word(), n.name));
                if let Some(shape) = self.shape_of_name(n) {
                    text.push_str(&format!(": `{shape}`"));
                }
                text.push('\n');
            }
            NameKind::Model => {
                text.push_str(&format!("**model** `{}`\n", n.name));
                if let Some(m) = self.compiled.models.iter().find(|m| m.graph.name == n.name) {
                    let s = summary::summarize(m);
                    text.push_str(&format!(
                        "\n{} parameters ({}), {} FLOPs and {} of activations per example\n",
                        summary::thousands(s.totals.params),
                        summary::bytes(s.totals.param_bytes),
                        summary::flops_text(s.totals.flops),
                        summary::elems_bytes(s.totals.activation_bytes)
                    ));
                }
            }
            NameKind::Block | NameKind::Data => {
                text.push_str(&format!("**{}** `{}`\n", n.kind.word(), n.name));
            }
        }
        let uses: Vec<Span> = n.uses.iter().copied().filter(|s| *s != n.decl).collect();
        if uses.is_empty() {
            text.push_str("\nnot used\n");
        } else {
            let s = if uses.len() == 1 { "" } else { "s" };
            text.push_str(&format!("\nused {} time{s}:\n", uses.len()));
            for u in uses.iter().take(20) {
                let (line, _) = nnlang_runtime::data::place(self.source.as_bytes(), u.start);
                text.push_str(&format!("- line {line}: `{}`\n", line_text(&self.source, u.start).trim()));
            }
            if uses.len() > 20 {
                text.push_str(&format!("- and {} more\n", uses.len() - 20));
            }
        }
        text
    }

    /// The shape of what an input or a `let` names, in the first model that has it.
    fn shape_of_name(&self, n: &Name) -> Option<String> {
        for m in &self.compiled.models {
            let g = &m.graph;
            let id = match n.kind {
                NameKind::Input => g.ids().find(|&id| {
                    matches!(g.node(id).op, Op::Input(_))
                        && g.node(id).span.start <= n.decl.start
                        && n.decl.end <= g.node(id).span.end
                }),
                _ => {
                    let value = self
                        .compiled
                        .file
                        .models
                        .iter()
                        .chain(&self.compiled.file.defs)
                        .flat_map(|m| &m.lets)
                        .find(|l| l.name.span == n.decl)?
                        .value
                        .span;
                    g.ids().rev().find(|&id| within(g.node(id).span, value))
                }
            };
            if let Some(Some(shape)) = id.and_then(|id| m.shapes.shapes.get(id.index())) {
                return Some(shape.to_string());
            }
        }
        None
    }

    fn layer_hover(&self, offset: usize) -> Option<Hover> {
        // The innermost layer written here (nodes made by the same text share its span).
        let mut best: Option<Span> = None;
        for m in &self.compiled.models {
            for n in &m.graph.nodes {
                if contains(n.span, offset) && best.is_none_or(|b| n.span.end - n.span.start < b.end - b.start) {
                    best = Some(n.span);
                }
            }
        }
        // A use of a block: the layers it made.
        let block_use = self.block_use_at(offset);
        let span = match (best, block_use) {
            (Some(b), Some(u)) if within(b, u) => b,
            (_, Some(u)) => u,
            (Some(b), None) => b,
            (None, None) => return None,
        };
        let mut text = String::new();
        for m in &self.compiled.models {
            let g = &m.graph;
            let ids: Vec<NodeId> = g
                .ids()
                .filter(|&id| {
                    g.node(id).span == span || (Some(span) == block_use && g.uses(id).iter().any(|(s, _)| *s == span))
                })
                .collect();
            if ids.is_empty() {
                continue;
            }
            let s = summary::summarize(m);
            let table = summary::to_text(&s);
            let lines: Vec<&str> = table.lines().collect();
            if !text.is_empty() {
                text.push('\n');
            }
            let first = g.node(ids[0]);
            if Some(span) == block_use {
                text.push_str(&format!(
                    "**{}** in `{}`\n\n",
                    self.source.get(span.start..span.end).unwrap_or("").lines().next().unwrap_or(""),
                    g.name
                ));
            } else {
                text.push_str(&format!("**{}** in `{}`\n\n", first.op.kind(), g.name));
            }
            text.push_str("```text\n");
            text.push_str(lines.get(1).copied().unwrap_or(""));
            text.push('\n');
            text.push_str(lines.get(2).copied().unwrap_or(""));
            text.push('\n');
            let mut params = Vec::new();
            let mut arithmetic = Vec::new();
            // What flows in (the table shows what comes out).
            let shape_of = |i: NodeId| m.shapes.shapes.get(i.index()).and_then(|s| s.as_ref()).map(|s| s.to_string());
            let inputs: Vec<String> = first
                .inputs
                .iter()
                .map(|&i| format!("`{}` {}", g.node(i).name, shape_of(i).unwrap_or_else(|| "(unknown)".into())))
                .collect();
            for &id in &ids {
                let node = g.node(id);
                if let Some(i) = s.layers.iter().position(|l| l.name == node.name) {
                    text.push_str(lines.get(3 + i).copied().unwrap_or(""));
                    text.push('\n');
                }
                for p in &m.shapes.params[id.index()] {
                    params.push(format!("`{}` {:?} ({})", p.name, p.shape, summary::thousands(p.count())));
                }
                if arithmetic.is_empty() {
                    arithmetic = window_arithmetic(m, id);
                }
            }
            text.push_str("```\n");
            if !inputs.is_empty() && Some(span) != block_use {
                text.push_str(&format!("\nreads {}\n", inputs.join(", ")));
            }
            if !params.is_empty() {
                text.push_str("\nparameters:\n");
                for p in params.iter().take(24) {
                    text.push_str(&format!("- {p}\n"));
                }
                if params.len() > 24 {
                    text.push_str(&format!("- and {} more\n", params.len() - 24));
                }
            }
            if !arithmetic.is_empty() {
                text.push_str("\noutput size, (W − F + 2P)/S + 1:\n");
                for a in arithmetic {
                    text.push_str(&format!("- {a}\n"));
                }
            }
        }
        (!text.is_empty()).then_some(Hover { span, text })
    }

    /// The call of a block at `offset`, if there is one.
    fn block_use_at(&self, offset: usize) -> Option<Span> {
        let mut best: Option<Span> = None;
        for m in &self.compiled.models {
            for sc in &m.graph.scopes {
                let s = sc.span;
                if !sc.block.is_empty() && contains(s, offset) && best.is_none_or(|b| s.end - s.start < b.end - b.start)
                {
                    best = Some(s);
                }
            }
        }
        best
    }

    /// What may be written at `offset`: layers and names in a model, arguments inside a
    /// call, keys and values in a recipe block, keywords between items.
    pub fn completions(&self, offset: usize) -> Vec<Completion> {
        let offset = floor_char_boundary(&self.source, offset.min(self.source.len()));
        let ctx = context(&self.source[..offset]);
        match ctx {
            Context::Top => ["model", "block", "train", "data", "search", "ensemble"]
                .iter()
                .map(|k| Completion {
                    label: k.to_string(),
                    kind: CompletionKind::Keyword,
                    detail: keyword_detail(k).to_string(),
                })
                .collect(),
            Context::Model { call: Some(callee) } => {
                let mut v = Vec::new();
                if let Some(l) = crate::ops::layer(&callee) {
                    for (a, required) in l.args {
                        v.push(Completion {
                            label: format!("{a} = "),
                            kind: CompletionKind::Argument,
                            detail: format!(
                                "{} argument of `{}`",
                                if *required { "a required" } else { "an optional" },
                                l.name
                            ),
                        });
                    }
                } else if let Some(def) = self.compiled.file.defs.iter().find(|d| d.name.name == callee) {
                    for p in &def.params {
                        v.push(Completion {
                            label: format!("{} = ", p.name),
                            kind: CompletionKind::Argument,
                            detail: format!("a parameter of block `{}`", def.name),
                        });
                    }
                }
                v.extend(self.scope_names(offset));
                v
            }
            Context::Model { call: None } => {
                let mut v: Vec<Completion> = crate::ops::layers()
                    .map(|l| Completion {
                        label: l.name.to_string(),
                        kind: CompletionKind::Layer,
                        detail: format!("{} — {}", signature(l), l.example.trim_matches('`')),
                    })
                    .collect();
                for d in &self.compiled.file.defs {
                    let params: Vec<&str> = d.params.iter().map(|p| p.name.name.as_str()).collect();
                    v.push(Completion {
                        label: d.name.name.clone(),
                        kind: CompletionKind::Layer,
                        detail: format!("block {}({})", d.name, params.join(", ")),
                    });
                }
                v.extend(self.scope_names(offset));
                v.extend(["input", "let"].iter().map(|k| Completion {
                    label: k.to_string(),
                    kind: CompletionKind::Keyword,
                    detail: keyword_detail(k).to_string(),
                }));
                v
            }
            Context::Recipe { kind, path, entry } => recipe_completions(&kind, &path, &entry),
        }
    }

    /// The names usable at `offset`: the enclosing model's parameters, inputs and `let`s.
    fn scope_names(&self, offset: usize) -> Vec<Completion> {
        let f = &self.compiled.file;
        let Some(m) = f.models.iter().chain(&f.defs).find(|m| contains(m.span, offset)) else { return Vec::new() };
        let mut v = Vec::new();
        for p in &m.params {
            v.push(Completion {
                label: p.name.name.clone(),
                kind: CompletionKind::Variable,
                detail: "parameter".into(),
            });
        }
        for i in &m.inputs {
            v.push(Completion { label: i.name.name.clone(), kind: CompletionKind::Variable, detail: "input".into() });
        }
        for l in m.lets.iter().filter(|l| l.span.end <= offset) {
            v.push(Completion { label: l.name.name.clone(), kind: CompletionKind::Variable, detail: "let".into() });
        }
        v
    }
}

const KEYWORDS: &[&str] = &["model", "input", "let", "as", "true", "false"];

fn keyword_detail(k: &str) -> &'static str {
    match k {
        "model" => "model Name(params) { input x: [dims]  x -> layer -> … }",
        "block" => "block Name(params) { input x  … } — a sub-network used like a layer",
        "train" => "train Model on data { loss = …, optimizer = …, … }",
        "data" => "data name { train = …, test = … }",
        "search" => "search Model { trials = …, key ~ distribution }",
        "ensemble" => "ensemble Model { members = …, from = … }",
        "input" => "input name: [dims]",
        "let" => "let name = pipeline",
        _ => "",
    }
}

/// `conv(filters, size, stride = …, pad = …)`.
pub fn signature(l: &crate::ops::Layer) -> String {
    let args: Vec<String> =
        l.args.iter().map(|(a, required)| if *required { a.to_string() } else { format!("{a} = …") }).collect();
    format!("{}({})", l.name, args.join(", "))
}

fn recipe_completions(header: &str, path: &[String], entry: &str) -> Vec<Completion> {
    let kind = header.split_whitespace().next().unwrap_or("");
    let Some(block) = crate::recipe::block_kind(kind) else { return Vec::new() };
    let keys = crate::recipe::keys(block, path);
    let entry = entry.trim_start();
    if entry.contains('~') {
        return crate::recipe::DISTRIBUTION_FORMS
            .iter()
            .map(|(d, sig)| Completion { label: d.to_string(), kind: CompletionKind::Value, detail: sig.to_string() })
            .collect();
    }
    if let Some((key, _)) = entry.split_once('=') {
        let key = key.trim();
        return keys
            .iter()
            .filter(|k| k.key == key)
            .flat_map(|k| k.values.iter())
            .map(|(v, sig)| Completion { label: v.clone(), kind: CompletionKind::Value, detail: sig.clone() })
            .collect();
    }
    keys.into_iter()
        .map(|k| Completion { label: k.key.to_string(), kind: CompletionKind::Key, detail: k.describe })
        .collect()
}

/// Where a place is, read from the text before it (which may not parse).
#[derive(Clone, Debug, PartialEq)]
enum Context {
    /// Between items.
    Top,
    /// In a model's or block's body; inside the parentheses of a call to `call`.
    Model { call: Option<String> },
    /// In a recipe block (`train …`), inside the sub-blocks `path`, with the current entry's
    /// text before the place.
    Recipe { kind: String, path: Vec<String>, entry: String },
}

/// Reads the brackets left open before the end of `text`, skipping comments and strings.
fn context(text: &str) -> Context {
    let b = text.as_bytes();
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut i = 0;
    let mut entry_start = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(b.len(), |k| i + k);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..].find("*/").map_or(b.len(), |k| i + 2 + k + 2);
                continue;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' && b[j] != b'\n' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                i = j + 1;
                continue;
            }
            c @ (b'{' | b'(' | b'[') => {
                open.push((c, i));
                if c == b'{' {
                    entry_start = i + 1;
                }
            }
            b'}' | b')' | b']' => {
                open.pop();
                if b[i] == b'}' {
                    entry_start = i + 1;
                }
            }
            b'\n' | b',' | b';' if open.last().is_some_and(|(c, _)| *c == b'{') => entry_start = i + 1,
            _ => {}
        }
        i += 1;
    }
    let braces: Vec<usize> = open.iter().filter(|(c, _)| *c == b'{').map(|(_, at)| *at).collect();
    let Some(&outer) = braces.first() else { return Context::Top };
    let header = header_before(text, outer);
    let first = header.split_whitespace().next().unwrap_or("");
    if first == "model" || first == "block" {
        let call = match open.last() {
            Some((b'(', at)) => {
                let before = text[..*at].trim_end();
                // (After the last character that is not part of a name, whatever its width.)
                let start = before
                    .char_indices()
                    .rev()
                    .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |(k, c)| k + c.len_utf8());
                Some(before[start..].to_string()).filter(|s| !s.is_empty())
            }
            _ => None,
        };
        return Context::Model { call };
    }
    let path: Vec<String> = braces[1..]
        .iter()
        .filter_map(|&at| header_before(text, at).split_whitespace().next().map(str::to_string))
        .collect();
    let entry = if matches!(open.last(), Some((b'{', _))) {
        text[entry_start.min(text.len())..].to_string()
    } else {
        // Inside a call's parentheses in a recipe: the value being written.
        text[entry_start.min(text.len())..].to_string()
    };
    Context::Recipe { kind: header, path, entry }
}

/// The words before the `{` at `at` on its line (a model's parameter list skipped).
fn header_before(text: &str, at: usize) -> String {
    let before = text[..at].trim_end();
    let mut end = before.len();
    if before.ends_with(')') {
        let mut depth = 0i32;
        for (i, c) in before.char_indices().rev() {
            match c {
                ')' => depth += 1,
                '(' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    let head = &before[..end];
    let start = head.rfind(['\n', '{', '}', ',', ';']).map_or(0, |k| k + 1);
    head[start..].trim().to_string()
}

fn settings(entries: &[ast::Entry]) -> Vec<Symbol> {
    entries
        .iter()
        .map(|e| match &e.kind {
            ast::EntryKind::Assign(path, _) | ast::EntryKind::Sample(path, _) => Symbol {
                name: path.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("."),
                kind: SymbolKind::Setting,
                span: e.span,
                name_span: path.first().map(|p| p.span.to(path[path.len() - 1].span)).unwrap_or(e.span),
                children: Vec::new(),
            },
            ast::EntryKind::Block { key, name, entries } => Symbol {
                name: match name {
                    Some(n) => format!("{key} {n}"),
                    None => key.name.clone(),
                },
                kind: SymbolKind::Setting,
                span: e.span,
                name_span: key.span,
                children: settings(entries),
            },
        })
        .collect()
}

/// The output-size arithmetic of a convolution, a locally-connected layer or a pooling.
fn window_arithmetic(m: &crate::Model, id: NodeId) -> Vec<String> {
    let g = &m.graph;
    let node = g.node(id);
    let (f, s, p, dil, how) = match &node.op {
        Op::Conv(c) => (c.size, c.stride, c.pad, c.dilation, if c.floor { "floor" } else { "" }),
        Op::Local(l) => (l.size, l.stride, l.pad, 1, ""),
        Op::Pool(pl) => (
            pl.size,
            pl.stride,
            0,
            1,
            if pl.floor {
                "floor"
            } else if pl.ceil {
                "ceil"
            } else {
                ""
            },
        ),
        _ => return Vec::new(),
    };
    let shape = |i: NodeId| {
        m.shapes.shapes.get(i.index()).and_then(|s| s.as_ref()).map(|s| {
            s.0.iter()
                .map(|d| match d {
                    crate::ir::Dim::Fixed(n) | crate::ir::Dim::Steps { len: n, .. } => *n,
                    crate::ir::Dim::Seq { .. } => 0,
                })
                .collect::<Vec<usize>>()
        })
    };
    let (Some(input), Some(output)) = (node.inputs.first().and_then(|&i| shape(i)), shape(id)) else {
        return Vec::new();
    };
    let eff = dil * (f.max(1) - 1) + 1;
    let mut out = Vec::new();
    for (k, dim) in ["height", "width"].iter().enumerate() {
        let (Some(&w), Some(&o)) = (input.get(k), output.get(k)) else { continue };
        let pad = if p > 0 { format!(" + 2·{p}") } else { String::new() };
        let inner = format!("({w} − {eff}{pad})/{s}");
        let text = match how {
            "floor" => format!("{dim}: ⌊{inner}⌋ + 1 = {o}"),
            "ceil" => format!("{dim}: ⌈{inner}⌉ + 1 = {o}"),
            _ => format!("{dim}: {inner} + 1 = {o}"),
        };
        out.push(if dil > 1 { format!("{text} (F = {dil}·({f} − 1) + 1 = {eff}, dilated)") } else { text });
    }
    out
}

/// Indexes every name of the file: declarations and uses.
fn index(f: &ast::File) -> Vec<Name> {
    let mut names = Vec::new();
    let top =
        |kind, id: &ast::Ident| Name { kind, name: id.name.clone(), decl: id.span, uses: Vec::new(), owner: None };
    for m in &f.models {
        names.push(top(NameKind::Model, &m.name));
    }
    for d in &f.defs {
        names.push(top(NameKind::Block, &d.name));
    }
    for b in f.blocks.iter().filter(|b| b.kind == ast::BlockKind::Data) {
        names.push(top(NameKind::Data, &b.target));
    }
    // Recipe blocks name models and data sets; a search samples a model's parameters.
    for b in &f.blocks {
        if b.kind != ast::BlockKind::Data {
            if let Some(n) = names.iter_mut().find(|n| n.kind == NameKind::Model && n.name == b.target.name) {
                n.uses.push(b.target.span);
            }
        }
        if let Some(on) = &b.on {
            if let Some(n) = names.iter_mut().find(|n| n.kind == NameKind::Data && n.name == on.name) {
                n.uses.push(on.span);
            }
        }
    }
    let blocks: Vec<String> = f.defs.iter().map(|d| d.name.name.clone()).collect();
    for (def, list) in [(false, &f.models), (true, &f.defs)] {
        for (i, m) in list.iter().enumerate() {
            let owner = Some((def, i));
            let mut local: Vec<Name> = Vec::new();
            let own =
                |kind, id: &ast::Ident| Name { kind, name: id.name.clone(), decl: id.span, uses: Vec::new(), owner };
            for p in &m.params {
                local.push(own(NameKind::Param, &p.name));
            }
            for inp in &m.inputs {
                local.push(own(NameKind::Input, &inp.name));
            }
            for l in &m.lets {
                local.push(own(NameKind::Let, &l.name));
            }
            let mut exprs: Vec<&Expr> = Vec::new();
            exprs.extend(m.params.iter().filter_map(|p| p.default.as_ref()));
            for inp in &m.inputs {
                exprs.extend(&inp.dims);
                exprs.extend(&inp.ids);
            }
            exprs.extend(m.lets.iter().map(|l| &l.value));
            exprs.extend(&m.outputs);
            let mut block_uses: Vec<(String, Span)> = Vec::new();
            for e in exprs {
                walk(e, &mut |name, span, call| {
                    if call {
                        if blocks.iter().any(|b| b == name) && !local.iter().any(|n| n.name == name) {
                            block_uses.push((name.to_string(), span));
                        }
                        return;
                    }
                    if let Some(n) = local.iter_mut().find(|n| n.name == name) {
                        n.uses.push(span);
                    } else if blocks.iter().any(|b| b == name) {
                        block_uses.push((name.to_string(), span));
                    }
                });
            }
            if !def {
                for b in f.blocks.iter().filter(|b| b.kind == ast::BlockKind::Search && b.target.name == m.name.name) {
                    for e in &b.entries {
                        if let ast::EntryKind::Sample(path, _) = &e.kind {
                            if let [key] = path.as_slice() {
                                if let Some(n) =
                                    local.iter_mut().find(|n| n.kind == NameKind::Param && n.name == key.name)
                                {
                                    n.uses.push(key.span);
                                }
                            }
                        }
                    }
                }
            }
            for (name, span) in block_uses {
                if let Some(n) = names.iter_mut().find(|n| n.kind == NameKind::Block && n.name == name) {
                    n.uses.push(span);
                }
            }
            names.extend(local);
        }
    }
    names
}

/// Calls `f(name, span, is_call)` for every name read in `e`: bare names, `?name`, and the
/// names of calls.
fn walk(e: &Expr, f: &mut dyn FnMut(&str, Span, bool)) {
    match &e.kind {
        ExprKind::Pipeline(v) => v.iter().for_each(|x| walk(x, f)),
        ExprKind::Named(x, _) | ExprKind::Neg(x) | ExprKind::Group(x) => walk(x, f),
        ExprKind::Binary(_, a, b) => {
            walk(a, f);
            walk(b, f);
        }
        ExprKind::Optional(x, name) => {
            walk(x, f);
            if let Some(n) = name {
                f(&n.name, n.span, false);
            }
        }
        ExprKind::Ident(n) => f(n, e.span, false),
        ExprKind::Call { name, args } => {
            f(&name.name, name.span, true);
            for a in args {
                walk(&a.value, f);
            }
        }
        ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Percent(_) | ExprKind::Bool(_) | ExprKind::Str(_) => {}
    }
}

fn contains(s: Span, offset: usize) -> bool {
    s.start <= offset && offset <= s.end && s.end > s.start
}

fn within(inner: Span, outer: Span) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn line_text(source: &str, offset: usize) -> &str {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let start = source[..offset].rfind('\n').map_or(0, |k| k + 1);
    let end = source[offset..].find('\n').map_or(source.len(), |k| offset + k);
    &source[start..end]
}
