//! `nnlangc lsp`: the language server, over standard input and output. Every question is
//! answered by `nnlang::ide` from a fresh check of the document (a check of a 1,000-layer
//! file takes milliseconds, see `benches/lsp.rs`); changes that arrive together are applied
//! together and checked once.

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _, PublishDiagnostics,
};
use lsp_types::request::{
    Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest, PrepareRenameRequest, References,
    Rename, Request as _,
};
use lsp_types::{
    CompletionItemKind, CompletionOptions, DiagnosticSeverity, HoverProviderCapability, OneOf, Position,
    PositionEncodingKind, Range, RenameOptions, ServerCapabilities, SymbolKind, TextDocumentSyncCapability,
    TextDocumentSyncKind,
};
use nnlang::ide::{self, Analysis};
use serde_json::{json, Value};
use std::collections::HashMap;

/// How columns are counted: UTF-16 code units (the protocol's default) or bytes (UTF-8),
/// as the client and server agree at initialization.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf16,
}

struct Doc {
    text: String,
    version: i32,
    analysis: Option<Analysis>,
    /// The version whose diagnostics the client has.
    published: Option<i32>,
}

impl Doc {
    fn analysis(&mut self) -> &Analysis {
        self.analysis.get_or_insert_with(|| Analysis::new(&self.text))
    }
}

struct Server {
    conn: Connection,
    docs: HashMap<String, Doc>,
    enc: Encoding,
}

/// Serves until the client says `exit` (after `shutdown`) or closes the stream.
pub fn serve() -> Result<(), String> {
    let (conn, io) = Connection::stdio();
    let (id, params) = conn.initialize_start().map_err(|e| format!("lsp: {e}"))?;
    let utf8 = params
        .pointer("/capabilities/general/positionEncodings")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|e| e == "utf-8"));
    let enc = if utf8 { Encoding::Utf8 } else { Encoding::Utf16 };
    let caps = ServerCapabilities {
        position_encoding: Some(if utf8 { PositionEncodingKind::UTF8 } else { PositionEncodingKind::UTF16 }),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::INCREMENTAL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["(".into(), ">".into(), "=".into(), "~".into()]),
            ..Default::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        ..Default::default()
    };
    let result = json!({
        "capabilities": caps,
        "serverInfo": { "name": "nnlangc", "version": env!("CARGO_PKG_VERSION") },
    });
    conn.initialize_finish(id, result).map_err(|e| format!("lsp: {e}"))?;
    let mut server = Server { conn, docs: HashMap::new(), enc };
    let outcome = server.run();
    drop(server);
    io.join().map_err(|e| format!("lsp: {e}"))?;
    outcome
}

impl Server {
    fn run(&mut self) -> Result<(), String> {
        loop {
            let Ok(first) = self.conn.receiver.recv() else { return Ok(()) };
            let mut batch = vec![first];
            while let Ok(m) = self.conn.receiver.try_recv() {
                batch.push(m);
            }
            for msg in batch {
                match msg {
                    Message::Request(req) => {
                        if self.conn.handle_shutdown(&req).map_err(|e| format!("lsp: {e}"))? {
                            return Ok(());
                        }
                        let resp = self.request(req);
                        self.send(Message::Response(resp));
                    }
                    Message::Notification(n) => {
                        if n.method == "exit" {
                            return Ok(());
                        }
                        self.notification(n);
                    }
                    Message::Response(_) => {}
                }
            }
            self.publish();
        }
    }

    fn send(&self, m: Message) {
        let _ = self.conn.sender.send(m);
    }

    fn notification(&mut self, n: Notification) {
        match n.method.as_str() {
            m if m == DidOpenTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params) {
                    let doc = Doc {
                        text: p.text_document.text,
                        version: p.text_document.version,
                        analysis: None,
                        published: None,
                    };
                    self.docs.insert(p.text_document.uri.as_str().to_string(), doc);
                }
            }
            m if m == DidChangeTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params) {
                    let enc = self.enc;
                    if let Some(doc) = self.docs.get_mut(p.text_document.uri.as_str()) {
                        for c in p.content_changes {
                            match c.range {
                                Some(r) => {
                                    let a = offset(&doc.text, r.start, enc);
                                    let b = offset(&doc.text, r.end, enc).max(a);
                                    doc.text.replace_range(a..b, &c.text);
                                }
                                None => doc.text = c.text,
                            }
                        }
                        doc.version = p.text_document.version;
                        doc.analysis = None;
                    }
                }
            }
            m if m == DidCloseTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params) {
                    let uri = p.text_document.uri.as_str().to_string();
                    if self.docs.remove(&uri).is_some() {
                        // Its diagnostics go with it.
                        let params = json!({ "uri": uri, "diagnostics": [] });
                        self.send(Message::Notification(Notification::new(PublishDiagnostics::METHOD.into(), params)));
                    }
                }
            }
            _ => {}
        }
    }

    /// Sends the diagnostics of every document changed since they were last sent.
    fn publish(&mut self) {
        let enc = self.enc;
        let mut out = Vec::new();
        let mut uris: Vec<&String> = self.docs.keys().collect();
        uris.sort();
        let uris: Vec<String> = uris.into_iter().cloned().collect();
        for uri in uris {
            let Some(doc) = self.docs.get_mut(&uri) else { continue };
            if doc.published == Some(doc.version) && doc.analysis.is_some() {
                continue;
            }
            let version = doc.version;
            let a = doc.analysis();
            let diags: Vec<Value> = a.diagnostics().iter().map(|d| diagnostic(&uri, a.source(), d, enc)).collect();
            doc.published = Some(version);
            out.push(json!({ "uri": uri, "version": version, "diagnostics": diags }));
        }
        for params in out {
            self.send(Message::Notification(Notification::new(PublishDiagnostics::METHOD.into(), params)));
        }
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        match self.answer(req) {
            Ok(v) => Response::new_ok(id, v),
            Err((code, msg)) => Response::new_err(id, code, msg),
        }
    }

    /// The document and the byte offset a request's `textDocument` and `position` name.
    fn at(&mut self, params: &Value) -> Result<(String, &mut Doc, usize), (i32, String)> {
        let uri = params.pointer("/textDocument/uri").and_then(Value::as_str).unwrap_or_default().to_string();
        let enc = self.enc;
        let doc = self.docs.get_mut(&uri).ok_or((ErrorCode::InvalidParams as i32, format!("{uri} is not open")))?;
        let pos: Position = params
            .get("position")
            .cloned()
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or(Position { line: 0, character: 0 });
        let off = offset(&doc.text, pos, enc);
        Ok((uri, doc, off))
    }

    fn answer(&mut self, req: Request) -> Result<Value, (i32, String)> {
        let enc = self.enc;
        let p = req.params;
        match req.method.as_str() {
            m if m == HoverRequest::METHOD => {
                let (_, doc, off) = self.at(&p)?;
                let a = doc.analysis();
                Ok(match a.hover(off) {
                    Some(h) => json!({
                        "contents": { "kind": "markdown", "value": h.text },
                        "range": range(a.source(), h.span, enc),
                    }),
                    None => Value::Null,
                })
            }
            m if m == Completion::METHOD => {
                let (_, doc, off) = self.at(&p)?;
                let items: Vec<Value> = doc
                    .analysis()
                    .completions(off)
                    .into_iter()
                    .map(|c| {
                        let kind = match c.kind {
                            ide::CompletionKind::Layer => CompletionItemKind::FUNCTION,
                            ide::CompletionKind::Variable => CompletionItemKind::VARIABLE,
                            ide::CompletionKind::Argument => CompletionItemKind::FIELD,
                            ide::CompletionKind::Key => CompletionItemKind::PROPERTY,
                            ide::CompletionKind::Value => CompletionItemKind::VALUE,
                            ide::CompletionKind::Keyword => CompletionItemKind::KEYWORD,
                        };
                        json!({ "label": c.label, "kind": kind, "detail": c.detail })
                    })
                    .collect();
                Ok(json!({ "isIncomplete": false, "items": items }))
            }
            m if m == GotoDefinition::METHOD => {
                let (uri, doc, off) = self.at(&p)?;
                let a = doc.analysis();
                Ok(match a.definition(off) {
                    Some(s) => json!({ "uri": uri, "range": range(a.source(), s, enc) }),
                    None => Value::Null,
                })
            }
            m if m == References::METHOD => {
                let declaration = p.pointer("/context/includeDeclaration").and_then(Value::as_bool).unwrap_or(true);
                let (uri, doc, off) = self.at(&p)?;
                let a = doc.analysis();
                let locs: Vec<Value> = a
                    .references(off, declaration)
                    .into_iter()
                    .map(|s| json!({ "uri": uri, "range": range(a.source(), s, enc) }))
                    .collect();
                Ok(Value::Array(locs))
            }
            m if m == PrepareRenameRequest::METHOD => {
                let (_, doc, off) = self.at(&p)?;
                let a = doc.analysis();
                Ok(match a.name_at(off) {
                    Some((n, s)) => json!({ "range": range(a.source(), s, enc), "placeholder": n.name }),
                    None => Value::Null,
                })
            }
            m if m == Rename::METHOD => {
                let new_name = p.get("newName").and_then(Value::as_str).unwrap_or_default().to_string();
                let (uri, doc, off) = self.at(&p)?;
                let a = doc.analysis();
                let spans = a.rename(off, &new_name).map_err(|e| (ErrorCode::RequestFailed as i32, e))?;
                let edits: Vec<Value> = spans
                    .into_iter()
                    .map(|s| json!({ "range": range(a.source(), s, enc), "newText": new_name }))
                    .collect();
                Ok(json!({ "changes": { uri: edits } }))
            }
            m if m == DocumentSymbolRequest::METHOD => {
                let (_, doc, _) = self.at(&p)?;
                let a = doc.analysis();
                let syms: Vec<Value> = a.symbols().iter().map(|s| symbol(a.source(), s, enc)).collect();
                Ok(Value::Array(syms))
            }
            m if m == Formatting::METHOD => {
                let (_, doc, _) = self.at(&p)?;
                Ok(match nnlang::syntax::format(&doc.text) {
                    Ok(f) if f != doc.text => {
                        let all = nnlang::diag::Span::new(0, doc.text.len());
                        json!([{ "range": range(&doc.text, all, enc), "newText": f }])
                    }
                    // In its layout already, or it does not parse (its diagnostics say why).
                    _ => json!([]),
                })
            }
            m => Err((ErrorCode::MethodNotFound as i32, format!("nnlangc lsp does not answer {m}"))),
        }
    }
}

/// The byte offset of a position (clamped to the text).
fn offset(text: &str, pos: Position, enc: Encoding) -> usize {
    let mut start = 0;
    for _ in 0..pos.line {
        match text[start..].find('\n') {
            Some(k) => start += k + 1,
            None => return text.len(),
        }
    }
    let line_end = text[start..].find('\n').map_or(text.len(), |k| start + k);
    let line = &text[start..line_end];
    let want = pos.character as usize;
    let mut units = 0;
    for (i, c) in line.char_indices() {
        if units >= want {
            return start + i;
        }
        units += match enc {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
        };
    }
    line_end
}

fn position(text: &str, off: usize, enc: Encoding) -> Position {
    let mut off = off.min(text.len());
    while off > 0 && !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |k| k + 1);
    let col: usize = text[line_start..off]
        .chars()
        .map(|c| match enc {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
        })
        .sum();
    Position { line: line as u32, character: col as u32 }
}

fn range(text: &str, s: nnlang::diag::Span, enc: Encoding) -> Range {
    Range { start: position(text, s.start, enc), end: position(text, s.end, enc) }
}

/// A diagnostic as the protocol has it: at its primary label, the label's text, notes and
/// help in the message (as `nnlangc check` prints them), the other labels as related places.
fn diagnostic(uri: &str, text: &str, d: &nnlang::diag::Diagnostic, enc: Encoding) -> Value {
    let primary = d.labels.iter().find(|l| l.primary).or(d.labels.first());
    let span = primary.map_or(nnlang::diag::Span::new(0, 0), |l| l.span);
    let mut message = d.message.clone();
    if let Some(l) = primary.filter(|l| !l.message.is_empty()) {
        message.push_str(&format!("\n{}", l.message));
    }
    for n in &d.notes {
        message.push_str(&format!("\n= note: {n}"));
    }
    for h in &d.help {
        message.push_str(&format!("\n= help: {h}"));
    }
    let related: Vec<Value> = d
        .labels
        .iter()
        .filter(|l| !l.primary)
        .map(|l| json!({ "location": { "uri": uri, "range": range(text, l.span, enc) }, "message": l.message }))
        .collect();
    let severity = if d.is_error() { DiagnosticSeverity::ERROR } else { DiagnosticSeverity::WARNING };
    let mut v = json!({
        "range": range(text, span, enc),
        "severity": severity,
        "source": "nnlang",
        "message": message,
    });
    if !related.is_empty() {
        v["relatedInformation"] = Value::Array(related);
    }
    v
}

fn symbol(text: &str, s: &ide::Symbol, enc: Encoding) -> Value {
    let kind = match s.kind {
        ide::SymbolKind::Model => SymbolKind::CLASS,
        ide::SymbolKind::Block => SymbolKind::FUNCTION,
        ide::SymbolKind::Recipe => SymbolKind::MODULE,
        ide::SymbolKind::Variable => SymbolKind::VARIABLE,
        ide::SymbolKind::Setting => SymbolKind::PROPERTY,
    };
    let children: Vec<Value> = s.children.iter().map(|c| symbol(text, c, enc)).collect();
    json!({
        "name": s.name,
        "kind": kind,
        "range": range(text, s.span, enc),
        "selectionRange": range(text, s.name_span, enc),
        "children": children,
    })
}
