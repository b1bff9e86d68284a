//! `--set` for a training recipe (`--set optimizer.lr=0.01 --set seed=3`): each value is
//! parsed as one expression and applied to the checked settings of the file's `train` block
//! ([`apply`]), checked by the same schema as a value written in the file — the source text is
//! never edited to compile it. What a run saves as its `model.nn` is the file with the
//! settings written into it ([`override_source`]), so that the saved source says what was
//! trained.

use crate::recipe::{Recipe, SetError};
use crate::syntax::ast::{BlockKind, EntryKind, Expr, ExprKind};
use crate::UsageError;

/// Applies every `(key, value)` of `sets`, in order, to the checked `train` blocks (of `model`
/// only, when one is chosen): a later setting of the same key — whole (`optimizer=…`) or by
/// argument (`optimizer.lr=…`) — wins. A value that is not one expression, a path the recipe
/// cannot take and a value its schema refuses are usage errors naming the `--set` argument
/// (the last with the value's diagnostic, rendered).
pub fn apply(recipes: &mut [Recipe], sets: &[(String, String)], model: Option<&str>) -> Result<(), UsageError> {
    for (key, value) in sets {
        let expr = check_value(key, value)?;
        let path: Vec<&str> = key.split('.').collect();
        if path.len() > 2 || path.iter().any(|p| p.is_empty()) {
            return Err(UsageError(format!(
                "--set {key}: a recipe path is `key` or `key.argument`, e.g. seed or optimizer.lr"
            )));
        }
        let mut any = false;
        for r in recipes.iter_mut().filter(|r| r.kind == BlockKind::Train && model.is_none_or(|m| r.target == m)) {
            any = true;
            crate::recipe::apply_set(&mut r.settings, &path, &expr).map_err(|e| match e {
                SetError::Path(why) => UsageError(format!("--set {key}: {why}")),
                SetError::Value(diags) => {
                    let shown: String = diags.iter().map(|d| d.render(&format!("--set {key}"), value.trim())).collect();
                    let shown = shown.trim_end().strip_prefix("error: ").unwrap_or(shown.trim_end()).to_string();
                    UsageError(format!("--set {key}={value}: {shown}"))
                }
            })?;
        }
        if !any {
            return Err(UsageError(format!("--set {key}: the file has no `train` block to set it in")));
        }
    }
    Ok(())
}

/// Whether `--set KEY=…` is a recipe setting: a dotted path, or a key of a `train` block.
pub fn is_recipe_key(key: &str) -> bool {
    key.contains('.') || crate::recipe::train_keys().contains(&key)
}

/// `source` with every `(key, value)` of `sets` written into its `train` blocks (the block of
/// `model` only, when one is chosen), one after the other: a later setting of the same key —
/// whole (`optimizer=…`) or by argument (`optimizer.lr=…`) — wins. This writes the record of
/// what was trained (a run's `model.nn`, a search's best configuration); compiling applies
/// settings with [`apply`]. Each value must be exactly one expression; anything else is
/// refused with the `--set` argument named.
pub fn override_source(source: &str, sets: &[(String, String)], model: Option<&str>) -> Result<String, UsageError> {
    let mut out = source.to_string();
    for (key, value) in sets {
        check_value(key, value)?;
        // A source that does not parse is left as it is: compiling it reports why.
        let Ok(file) = crate::syntax::parse(&out) else { return Ok(out) };
        let blocks: Vec<_> = file
            .blocks
            .iter()
            .filter(|b| b.kind == BlockKind::Train && model.is_none_or(|m| b.target.name == m))
            .collect();
        if blocks.is_empty() {
            return Err(UsageError(format!("--set {key}: the file has no `train` block to set it in")));
        }
        let path: Vec<&str> = key.split('.').collect();
        if path.len() > 2 || path.iter().any(|p| p.is_empty()) {
            return Err(UsageError(format!(
                "--set {key}: a recipe path is `key` or `key.argument`, e.g. seed or optimizer.lr"
            )));
        }
        let mut edits = Vec::new();
        for block in &blocks {
            edits.push(edit(&out, block, &path, value.trim(), key)?);
        }
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (start, end, text) in edits {
            out.replace_range(start..end, &text);
        }
    }
    Ok(out)
}

/// A value is one expression of the language, and nothing that would change the file around
/// it (a brace, a comment, a line break).
fn check_value(key: &str, value: &str) -> Result<Expr, UsageError> {
    let example = "e.g. 0.01, adam(lr = 1e-3) or step(every = 5)";
    let v = value.trim();
    if v.is_empty() {
        return Err(UsageError(format!("--set {key}=: no value; a value is one expression, {example}")));
    }
    if value.contains(['{', '}', ';', '\n', '\r']) || value.contains("//") || value.contains("/*") {
        return Err(UsageError(format!("--set {key}={value}: a value is one expression, {example}")));
    }
    crate::syntax::parse_setting(v).map_err(|at| {
        let (good, rest) = v.split_at(at.min(v.len()));
        let why = if good.trim().is_empty() || rest.is_empty() {
            "is not a value".to_string()
        } else {
            format!("is more than one value: `{}` follows `{}`", rest.trim(), good.trim())
        };
        UsageError(format!("--set {key}={value}: `{v}` {why}; a value is one expression, {example}"))
    })
}

/// The edit that sets `path` to `value` in one block.
fn edit(
    source: &str,
    block: &crate::syntax::ast::Block,
    path: &[&str],
    value: &str,
    key: &str,
) -> Result<(usize, usize, String), UsageError> {
    let close = |span_end: usize| span_end.saturating_sub(1);
    // A new entry goes on a line of its own when the block's brace starts a line.
    let line = |at: usize, text: String| {
        if source[..at].ends_with('\n') {
            (at, at, format!("    {}\n", text.trim()))
        } else {
            (at, at, text)
        }
    };
    let find = |entries: &[crate::syntax::ast::Entry], name: &str| {
        entries.iter().find_map(|e| match &e.kind {
            EntryKind::Assign(p, v) if p.len() == 1 && p[0].name == name => Some(Found::Value(v.clone())),
            EntryKind::Block { key, entries, .. } if key.name == name => {
                Some(Found::Block(entries.clone(), e.span.end))
            }
            _ => None,
        })
    };
    match path {
        [k] => match find(&block.entries, k) {
            Some(Found::Value(v)) => Ok((v.span.start, v.span.end, value.to_string())),
            Some(Found::Block(..)) => Err(UsageError(format!(
                "--set {key}: `{k}` is a block of settings; set one of them, e.g. --set {k}.l2=1e-4"
            ))),
            None => Ok(line(close(block.span.end), format!(" {k} = {value} "))),
        },
        [k, arg] => match find(&block.entries, k) {
            Some(Found::Value(v)) => Ok(set_argument(source, &v, arg, value)),
            Some(Found::Block(entries, end)) => match find(&entries, arg) {
                Some(Found::Value(v)) => Ok((v.span.start, v.span.end, value.to_string())),
                _ => Ok((close(end), close(end), format!(" {arg} = {value} "))),
            },
            None if crate::recipe::is_block_key(k) => {
                Ok(line(close(block.span.end), format!(" {k} {{ {arg} = {value} }} ")))
            }
            None => Err(UsageError(format!(
                "--set {key}: the `train` block sets no `{k}`; set it whole, e.g. --set \"{k}=…(…)\""
            ))),
        },
        _ => Err(UsageError(format!("--set {key}: a recipe path is `key` or `key.argument`"))),
    }
}

enum Found {
    Value(Expr),
    Block(Vec<crate::syntax::ast::Entry>, usize),
}

/// Sets argument `arg` of the call `v` (`sgd(lr = 0.1)`), or makes a bare word (`adam`) a
/// call with it.
fn set_argument(source: &str, v: &Expr, arg: &str, value: &str) -> (usize, usize, String) {
    match &v.kind {
        ExprKind::Call { args, .. } => {
            if let Some(a) = args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.name == arg)) {
                return (a.value.span.start, a.value.span.end, value.to_string());
            }
            // Before the closing parenthesis.
            let end = v.span.end.saturating_sub(1);
            let sep = if args.is_empty() { "" } else { ", " };
            (end, end, format!("{sep}{arg} = {value}"))
        }
        _ => {
            let word = &source[v.span.start..v.span.end];
            (v.span.start, v.span.end, format!("{word}({arg} = {value})"))
        }
    }
}
