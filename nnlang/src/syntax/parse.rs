//! pest pairs → AST, and pest errors → diagnostics.

use super::ast::*;
use crate::diag::Diagnostic;
use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "syntax/nnlang.pest"]
pub(crate) struct Grammar;

/// Parses `text` as exactly one value (`0.01`, `adam(lr = 1e-3)`, `step(every = 5)`); if it
/// is not one, the byte where it stops being one.
pub fn parse_setting(text: &str) -> Result<Expr, usize> {
    if too_deep(text).is_some() {
        return Err(0);
    }
    match Grammar::parse(Rule::setting, text) {
        Ok(mut pairs) => {
            let inner = pairs.next().and_then(|p| p.into_inner().find(|p| p.as_rule() != Rule::EOI));
            inner.map(expr).ok_or(0)
        }
        Err(e) => Err(match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((s, _)) => s,
        }),
    }
}

/// Parses a whole file. A syntax error stops the parse: the diagnostic names the place and
/// what was expected there.
pub fn parse(source: &str) -> Result<File, Diagnostic> {
    // Record every token tried at the furthest position, for "expected …" messages. It is
    // left on: switching it per call would race with parses on other threads.
    pest::set_error_detail(true);
    if let Some(d) = too_deep(source) {
        return Err(d);
    }
    let mut pairs = Grammar::parse(Rule::file, source).map_err(|e| syntax_error(source, e))?;
    if let Some(d) = too_long(pairs.clone()) {
        return Err(d);
    }
    let mut file = File::default();
    let Some(root) = pairs.next() else {
        return Ok(file);
    };
    for item in root.into_inner() {
        match item.as_rule() {
            Rule::model => file.models.push(model(item)),
            Rule::layer_block => file.defs.push(model(item)),
            Rule::train => file.blocks.push(block(item, BlockKind::Train)),
            Rule::data => file.blocks.push(block(item, BlockKind::Data)),
            Rule::search => file.blocks.push(block(item, BlockKind::Search)),
            Rule::ensemble => file.blocks.push(block(item, BlockKind::Ensemble)),
            _ => {}
        }
    }
    Ok(file)
}

/// The span of a pair without the whitespace and comments that pest's implicit skipping
/// leaves at its end, so that carets end where the user's text does.
fn span(p: &Pair<Rule>) -> Span {
    let s = p.as_span();
    Span::new(s.start(), s.start() + trimmed_len(s.as_str()))
}

fn trimmed_len(text: &str) -> usize {
    let mut t = text;
    loop {
        let before = t.len();
        t = t.trim_end();
        if t.ends_with("*/") {
            if let Some(open) = t.rfind("/*") {
                t = &t[..open];
            }
        }
        let line_start = t.rfind('\n').map_or(0, |i| i + 1);
        if let Some(c) = t[line_start..].find("//") {
            if !t[line_start + c..].contains('"') {
                t = &t[..line_start + c];
            }
        }
        if t.len() == before {
            return t.len();
        }
    }
}

fn ident(p: Pair<Rule>) -> Ident {
    Ident { name: p.as_str().to_string(), span: span(&p) }
}

fn model(p: Pair<Rule>) -> Model {
    let sp = span(&p);
    let is_block = p.as_rule() == Rule::layer_block;
    let mut inner = p.into_inner().filter(|p| !matches!(p.as_rule(), Rule::kw_model | Rule::kw_block));
    let name = inner.next().map(ident).unwrap_or(Ident { name: String::new(), span: sp });
    let mut m = Model {
        is_block,
        name,
        params: Vec::new(),
        inputs: Vec::new(),
        lets: Vec::new(),
        outputs: Vec::new(),
        span: sp,
    };
    for stmt in inner {
        match stmt.as_rule() {
            Rule::params => {
                for param in stmt.into_inner() {
                    let psp = span(&param);
                    let mut it = param.into_inner();
                    if let Some(n) = it.next() {
                        m.params.push(Param { name: ident(n), default: it.next().map(expr), span: psp });
                    }
                }
            }
            Rule::input_decl => {
                let isp = span(&stmt);
                let mut it = stmt.into_inner().filter(|p| p.as_rule() != Rule::kw_input);
                if let Some(n) = it.next() {
                    let mut steps = None;
                    let mut dims = Vec::new();
                    let dims_pair = it.next().filter(|p| p.as_rule() == Rule::dims);
                    let has_dims = dims_pair.is_some();
                    let ids = it
                        .next()
                        .filter(|p| p.as_rule() == Rule::ids_bound)
                        .and_then(|b| b.into_inner().find(|p| p.as_rule() == Rule::sum))
                        .map(expr);
                    for d in dims_pair.into_iter().flat_map(|d| d.into_inner()) {
                        if d.as_rule() == Rule::seq_dim {
                            let dsp = span(&d);
                            let mut parts = d.into_inner();
                            if let (Some(name), Some(rel), Some(len)) = (parts.next(), parts.next(), parts.next()) {
                                let len = expr(len);
                                steps = Some(StepsDecl { name: ident(name), at_most: rel.as_str() == "<=", span: dsp });
                                dims.push(len);
                            }
                        } else {
                            dims.push(expr(d));
                        }
                    }
                    m.inputs.push(InputDecl { name: ident(n), dims, steps, has_dims, ids, span: isp });
                }
            }
            Rule::let_stmt => {
                let lsp = span(&stmt);
                let mut it = stmt.into_inner().filter(|p| p.as_rule() != Rule::kw_let);
                if let (Some(n), Some(v)) = (it.next(), it.next()) {
                    m.lets.push(Let { name: ident(n), value: expr(v), span: lsp });
                }
            }
            Rule::output_stmt => {
                if let Some(e) = stmt.into_inner().next() {
                    m.outputs.push(expr(e));
                }
            }
            _ => {}
        }
    }
    m
}

/// Any expression rule to an [`Expr`]; single-child wrappers collapse.
fn expr(p: Pair<Rule>) -> Expr {
    let sp = span(&p);
    let rule = p.as_rule();
    let kind = match rule {
        Rule::pipeline => {
            let mut stages: Vec<Expr> = p.into_inner().map(expr).collect();
            if stages.len() == 1 {
                return stages.remove(0);
            }
            ExprKind::Pipeline(stages)
        }
        Rule::stage => {
            let mut it = p.into_inner();
            let Some(first) = it.next() else {
                return invalid(sp);
            };
            let value = expr(first);
            match it.find(|p| p.as_rule() == Rule::ident) {
                Some(n) => ExprKind::Named(Box::new(value), ident(n)),
                None => return value,
            }
        }
        Rule::sum | Rule::product => {
            let mut it = p.into_inner();
            let Some(first) = it.next() else {
                return invalid(sp);
            };
            let mut acc = expr(first);
            while let (Some(op), Some(rhs)) = (it.next(), it.next()) {
                let op = match op.as_str().trim() {
                    "+" => BinOp::Add,
                    "-" => BinOp::Sub,
                    "*" => BinOp::Mul,
                    _ => BinOp::Div,
                };
                let rhs = expr(rhs);
                let s = acc.span.to(rhs.span);
                acc = Expr { kind: ExprKind::Binary(op, Box::new(acc), Box::new(rhs)), span: s };
            }
            return acc;
        }
        Rule::unary => {
            let parts: Vec<Pair<Rule>> = p.into_inner().collect();
            let negs = parts.iter().filter(|p| p.as_rule() == Rule::neg).count();
            let Some(last) = parts.into_iter().last() else {
                return invalid(sp);
            };
            let mut e = expr(last);
            for _ in 0..negs {
                e = Expr { kind: ExprKind::Neg(Box::new(e)), span: sp };
            }
            return e;
        }
        Rule::postfix => {
            let mut it = p.into_inner();
            let Some(first) = it.next() else {
                return invalid(sp);
            };
            let value = expr(first);
            match it.next() {
                Some(opt) => {
                    let name = opt.into_inner().next().map(ident);
                    ExprKind::Optional(Box::new(value), name)
                }
                None => return value,
            }
        }
        Rule::number => {
            let s = p.as_str();
            if s.bytes().all(|b| b.is_ascii_digit()) {
                match s.parse::<i64>() {
                    Ok(v) => ExprKind::Int(v),
                    Err(_) => ExprKind::Float(s.parse().unwrap_or(f64::INFINITY)),
                }
            } else {
                ExprKind::Float(s.parse().unwrap_or(f64::NAN))
            }
        }
        Rule::percent => {
            let v = p.into_inner().next().and_then(|n| n.as_str().parse().ok()).unwrap_or(f64::NAN);
            ExprKind::Percent(v)
        }
        Rule::boolean => ExprKind::Bool(p.as_str() == "true"),
        Rule::string => {
            let body = p.into_inner().next().map(|b| b.as_str()).unwrap_or("");
            ExprKind::Str(unescape(body))
        }
        Rule::ident => ExprKind::Ident(p.as_str().to_string()),
        Rule::call => {
            let mut it = p.into_inner();
            let Some(n) = it.next() else {
                return invalid(sp);
            };
            let args = it
                .map(|a| {
                    let parts: Vec<Pair<Rule>> = a.into_inner().collect();
                    let mut parts = parts.into_iter();
                    if parts.len() == 2 {
                        let name = parts.next().map(ident);
                        let value = parts.next().map(expr).unwrap_or_else(|| invalid(sp));
                        Arg { name, value }
                    } else {
                        let value = parts.next().map(expr).unwrap_or_else(|| invalid(sp));
                        Arg { name: None, value }
                    }
                })
                .collect();
            ExprKind::Call { name: ident(n), args }
        }
        Rule::group => match p.into_inner().next() {
            Some(inner) => ExprKind::Group(Box::new(expr(inner))),
            None => return invalid(sp),
        },
        Rule::paren => match p.into_inner().next() {
            Some(inner) => {
                let mut e = expr(inner);
                e.span = sp;
                return e;
            }
            None => return invalid(sp),
        },
        _ => return invalid(sp),
    };
    Expr { kind, span: sp }
}

/// Only reachable if the grammar and this file disagree; lowering reports it as an error
/// instead of panicking.
fn invalid(span: Span) -> Expr {
    Expr { kind: ExprKind::Ident(String::from("<invalid>")), span }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn block(p: Pair<Rule>, kind: BlockKind) -> Block {
    let sp = span(&p);
    let mut target = None;
    let mut on = None;
    let mut entries = Vec::new();
    let mut after_on = false;
    for part in p.into_inner() {
        match part.as_rule() {
            Rule::kw_on => after_on = true,
            Rule::ident if after_on => on = Some(ident(part)),
            Rule::ident => target = Some(ident(part)),
            Rule::block => entries = block_entries(part),
            _ => {}
        }
    }
    Block { kind, target: target.unwrap_or(Ident { name: String::new(), span: sp }), on, entries, span: sp }
}

fn block_entries(p: Pair<Rule>) -> Vec<Entry> {
    p.into_inner().filter_map(entry).collect()
}

fn entry(p: Pair<Rule>) -> Option<Entry> {
    let sp = span(&p);
    let rule = p.as_rule();
    let mut it = p.into_inner();
    let kind = match rule {
        Rule::assign | Rule::sample => {
            let path: Vec<Ident> = it.next()?.into_inner().map(ident).collect();
            let value = expr(it.next()?);
            if rule == Rule::assign {
                EntryKind::Assign(path, value)
            } else {
                EntryKind::Sample(path, value)
            }
        }
        Rule::sub_block => {
            let key = ident(it.next()?);
            let mut name = None;
            let mut entries = Vec::new();
            for part in it {
                match part.as_rule() {
                    Rule::ident => name = Some(ident(part)),
                    Rule::block => entries = block_entries(part),
                    _ => {}
                }
            }
            EntryKind::Block { key, name, entries }
        }
        _ => return None,
    };
    Some(Entry { kind, span: sp })
}

/// Literal tokens worth naming in "expected …" (letters and digits tried inside numbers
/// and keywords are not).
const PUNCTUATION: &[&str] = &["->", ":", "=", ",", ")", "]", "{", "}", "?", "~", "%"];
/// Tokens that begin a value; listed together as "a value".
const VALUE_STARTS: &[&str] = &["\"", "(", "[", "-"];
const KEYWORDS: &[&str] = &["model", "block", "train", "data", "search", "ensemble", "input", "let", "on"];

/// Brackets nested deeper than this are refused before parsing, so that no recursion in the
/// parser or the later stages can exhaust the stack.
pub const MAX_NESTING: usize = 32;

/// Calls `f` with the offset of every byte of `source` outside strings and comments, until
/// it returns `true`; `Err(at)` when the `/*` at `at` is never closed. A string ends at its
/// closing quote or at the end of the line.
fn scan_code(source: &str, mut f: impl FnMut(usize, u8) -> bool) -> Result<(), usize> {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => match source[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 1,
                None => return Err(i),
            },
            b => {
                if f(i, b) {
                    return Ok(());
                }
            }
        }
        i += 1;
    }
    Ok(())
}

/// A lexical pass before parsing: brackets nested too deep, and a `/*` comment never closed
/// (pest would report it at the end of the file).
fn too_deep(source: &str) -> Option<Diagnostic> {
    let (mut depth, mut deepest) = (0usize, None);
    let scanned = scan_code(source, |i, b| {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    deepest = Some(i);
                    return true;
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        false
    });
    if let Err(at) = scanned {
        return Some(
            Diagnostic::error("this comment is never closed", Span::new(at, at + 2), "opened here")
                .with_help("close it with `*/`"),
        );
    }
    deepest.map(|i| {
        Diagnostic::error(format!("brackets are nested more than {MAX_NESTING} deep"), Span::new(i, i + 1), "too deep")
            .with_note("no model needs this; use a repetition `[ … ] * n` instead")
    })
}

/// The most operators one sum or product may chain, and the most `-` signs one value may
/// carry: the syntax tree nests one level per operator, and every later stage walks it.
pub const MAX_OPERATORS: usize = 256;
const MAX_NEGATIONS: usize = 8;

/// An expression too long to nest, found by an iterative walk of the parse (pest's pairs are
/// flat here: `1 + 1 + …` is one `sum` with many children).
fn too_long(pairs: pest::iterators::Pairs<Rule>) -> Option<Diagnostic> {
    for p in pairs.flatten() {
        let (count, limit, what) = match p.as_rule() {
            Rule::sum | Rule::product => (p.clone().into_inner().count() / 2, MAX_OPERATORS, "operators"),
            Rule::unary => {
                (p.clone().into_inner().filter(|q| q.as_rule() == Rule::neg).count(), MAX_NEGATIONS, "`-` signs")
            }
            _ => continue,
        };
        if count > limit {
            let sp = p.as_span();
            return Some(
                Diagnostic::error(
                    format!("this expression has {count} {what}; at most {limit} are allowed"),
                    Span::new(sp.start(), sp.end()),
                    "too long",
                )
                .with_note("no model needs this; compute the value and write it, or split it into parameters"),
            );
        }
    }
    None
}

/// The last `{` without its `}`, skipping strings and comments.
fn unclosed_brace(source: &str) -> Option<usize> {
    let mut open = Vec::new();
    let _ = scan_code(source, |i, b| {
        match b {
            b'{' => open.push(i),
            b'}' => {
                open.pop();
            }
            _ => {}
        }
        false
    });
    open.pop()
}

/// What a grammar rule is called in an "expected …" message.
fn describe(rule: &Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::model | Rule::kw_model => "`model`",
        Rule::layer_block | Rule::kw_block => "`block`",
        Rule::dims => "`:`",
        Rule::train | Rule::kw_train => "`train`",
        Rule::data | Rule::kw_data => "`data`",
        Rule::search | Rule::kw_search => "`search`",
        Rule::ensemble | Rule::kw_ensemble => "`ensemble`",
        Rule::kw_on => "`on`",
        Rule::kw_as => "`as`",
        Rule::ident | Rule::key_path => "a name",
        Rule::params => "a parameter list `(…)`",
        Rule::param => "a parameter",
        Rule::input_decl | Rule::kw_input => "`input`",
        Rule::ids_bound | Rule::kw_ids => "`ids < n`",
        Rule::let_stmt | Rule::kw_let => "`let`",
        Rule::output_stmt | Rule::pipeline | Rule::stage => "a layer or value",
        Rule::sum | Rule::product | Rule::unary | Rule::postfix => "a value",
        Rule::add_op => "an operator",
        Rule::mul_op => "an operator",
        Rule::neg => "`-`",
        Rule::optional => "`?`",
        Rule::call => "a call",
        Rule::arg => "an argument",
        Rule::group => "`[`",
        Rule::paren => "`(`",
        Rule::number | Rule::percent => "a number",
        Rule::boolean => "`true` or `false`",
        Rule::string | Rule::string_body => "a string",
        Rule::block => "`{`",
        Rule::sub_block | Rule::assign | Rule::sample => "a setting `key = value`",
        _ => return None,
    })
}

fn syntax_error(source: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let mut pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let attempts = e.parse_attempts();
    if let Some(a) = &attempts {
        if a.max_position >= pos {
            pos = a.max_position;
        }
    }
    // Point at the whole offending token, not one byte of it.
    let rest = &source[pos.min(source.len())..];
    let token_len = rest
        .char_indices()
        .find(|&(i, c)| {
            let word = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
            i > 0 && (!word(c) || !rest.starts_with(|f: char| word(f)))
        })
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let span = Span::new(pos, pos + token_len);
    let found = if rest.is_empty() { "end of file".to_string() } else { format!("`{}`", &rest[..token_len]) };
    let mut expected: Vec<String> = Vec::new();
    let mut value = false;
    match &attempts {
        Some(a) if a.max_position == pos => {
            for t in a.expected_tokens() {
                let token = t.to_string();
                if VALUE_STARTS.contains(&token.as_str()) {
                    value = true;
                } else if PUNCTUATION.contains(&token.as_str()) || KEYWORDS.contains(&token.as_str()) {
                    expected.push(format!("`{token}`"));
                }
            }
        }
        _ => {
            if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
                expected.extend(positives.iter().filter_map(describe).map(String::from));
            }
        }
    }
    expected.sort_unstable();
    expected.dedup();
    if value {
        expected.push("a value".to_string());
    }
    let expected: Vec<&str> = expected.iter().map(|s| s.as_str()).collect();
    let message = if expected.is_empty() {
        format!("syntax error: unexpected {found}")
    } else {
        format!("syntax error: expected {}, found {found}", join_or(&expected))
    };
    let mut d = Diagnostic::error(message, span, "unexpected here");
    if let Some(word) = rest.get(..token_len).filter(|w| w.chars().all(|c| c.is_alphanumeric() || c == '_')) {
        let keywords = expected.iter().filter_map(|e| e.strip_prefix('`').and_then(|e| e.strip_suffix('`')));
        if let Some(best) = crate::diag::did_you_mean(word, keywords) {
            d = d.with_help(format!("did you mean `{best}`?"));
        }
    }
    if source[..pos.min(source.len())].ends_with('"') && !rest.is_empty() {
        d = d.with_help("a string ends just before this; is a closing `\"` missing earlier?");
    }
    if rest.starts_with("=>") {
        d = d.with_help("layers are joined with `->`");
    }
    if rest.is_empty() {
        if let Some(open) = unclosed_brace(source) {
            d = d.with_label(Span::new(open, open + 1), "this `{` is never closed");
        }
    }
    d
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
