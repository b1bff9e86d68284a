//! The `nn!` macro's work, as an ordinary function (testable without a compiler): read the
//! model from the macro's tokens or from a file, compile it, generate its code — or turn the
//! first error into a `compile_error!` at the right place, carrying the rendered nnlang
//! diagnostic.

use crate::diag::render_all;
use crate::{compile, Options};
use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::quote;
use std::path::Path;

/// Source text rebuilt from tokens, with where each token came from.
struct Text {
    text: String,
    /// (start, end, span) of each token in `text`.
    spans: Vec<(usize, usize, Span)>,
}

impl Text {
    fn push(&mut self, s: &str, span: Span, space_after: bool) {
        let start = self.text.len();
        self.text.push_str(s);
        self.spans.push((start, self.text.len(), span));
        if space_after {
            self.text.push(' ');
        }
    }

    fn walk(&mut self, tokens: TokenStream) {
        for t in tokens {
            match t {
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::None => ("", ""),
                    };
                    self.push(open, g.span_open(), true);
                    self.walk(g.stream());
                    self.push(close, g.span_close(), true);
                }
                TokenTree::Punct(p) => {
                    let joint = p.spacing() == proc_macro2::Spacing::Joint;
                    self.push(&p.as_char().to_string(), p.span(), !joint);
                }
                TokenTree::Ident(i) => self.push(&i.to_string(), i.span(), true),
                TokenTree::Literal(l) => {
                    // `10%` must stay one token for the grammar's percentages.
                    self.push(&l.to_string(), l.span(), true);
                }
            }
        }
    }

    /// The span of the token at (or last before) byte `at`.
    fn span_at(&self, at: usize) -> Span {
        self.spans.iter().rev().find(|(s, _, _)| *s <= at).map(|(_, _, sp)| *sp).unwrap_or_else(Span::call_site)
    }
}

/// `file = "models/mlp.nn"` (relative to the crate's manifest directory) and optionally
/// `model = "Mlp"`.
fn file_form(tokens: &TokenStream) -> Option<(String, Span, Option<String>)> {
    let parts: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let string = |t: &TokenTree| match t {
        TokenTree::Literal(l) => {
            let s = l.to_string();
            (s.starts_with('"') && s.ends_with('"') && s.len() >= 2).then(|| (s[1..s.len() - 1].to_string(), l.span()))
        }
        _ => None,
    };
    let key = |t: &TokenTree, k: &str| matches!(t, TokenTree::Ident(i) if i == k);
    let eq = |t: &TokenTree| matches!(t, TokenTree::Punct(p) if p.as_char() == '=');
    match parts.as_slice() {
        [f, e, path] if key(f, "file") && eq(e) => string(path).map(|(p, sp)| (p, sp, None)),
        [f, e, path, TokenTree::Punct(c), m, e2, name]
            if key(f, "file") && eq(e) && c.as_char() == ',' && key(m, "model") && eq(e2) =>
        {
            let (p, sp) = string(path)?;
            Some((p, sp, string(name).map(|n| n.0)))
        }
        _ => None,
    }
}

/// Expands `nn! { … }` or `nn!(file = "…", model = "…")`.
pub fn expand(input: TokenStream) -> TokenStream {
    let (source, name, anchor, model, include, text) = match file_form(&input) {
        Some((path, span, model)) => {
            let base = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
            let full = Path::new(&base).join(&path);
            // The same reading as `nnlangc`: a regular file (a pipe would block the
            // compiler), at most 64 MiB, UTF-8 (a bad byte named by line and column).
            match crate::session::read_source(&full) {
                Ok(src) => {
                    let shown = full.display().to_string();
                    (src, path.clone(), span, model, Some(shown), None)
                }
                Err(e) => {
                    let msg = format!("nn!: {e}");
                    return syn::Error::new(span, msg).to_compile_error();
                }
            }
        }
        None => {
            let mut t = Text { text: String::new(), spans: Vec::new() };
            t.walk(input);
            (t.text.clone(), "nn!".to_string(), Span::call_site(), None, None, Some(t))
        }
    };
    let opts = Options { model: model.clone(), ..Options::default() };
    let compiled = match compile(&source, &opts) {
        Ok(c) => c,
        Err(e) => return syn::Error::new(anchor, format!("nn!: {e}")).to_compile_error(),
    };
    let error_at = |diags: &[crate::diag::Diagnostic]| {
        let rendered = render_all(diags, &name, &source);
        let span = match (&text, diags.iter().find(|d| d.is_error()).and_then(|d| d.labels.first())) {
            (Some(t), Some(label)) => t.span_at(label.span.start),
            _ => anchor,
        };
        syn::Error::new(span, format!("nnlang found errors in this model:\n{rendered}")).to_compile_error()
    };
    if compiled.has_errors() {
        return error_at(&compiled.diagnostics);
    }
    if compiled.models.is_empty() {
        return syn::Error::new(anchor, "nn!: the source defines no model").to_compile_error();
    }
    let mut out = TokenStream::new();
    if let Some(path) = include {
        // Makes Cargo rebuild the crate when the model file changes.
        out.extend(quote! { const _: &str = ::core::include_str!(#path); });
    }
    for m in &compiled.models {
        match super::generate(&compiled, m) {
            Ok(tokens) => out.extend(tokens),
            Err(diags) => return error_at(&diags),
        }
    }
    out
}
