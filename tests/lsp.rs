//! `nnlangc lsp` driven over standard input and output as an editor drives it: initialize,
//! open a file with a mistake, fix it, hover, complete, go to a definition, find
//! references, rename, format, list symbols, shut down — each response snapshotted.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A JSON value as a snapshot, pretty-printed.
macro_rules! snap {
    ($name:expr, $value:expr $(,)?) => {
        insta::assert_snapshot!($name, serde_json::to_string_pretty(&$value).unwrap_or_default())
    };
}

struct Client {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    next: i64,
    /// Notifications received while waiting for a response.
    pending: Vec<Value>,
    /// The answer to `initialize`.
    init: Option<Value>,
}

impl Client {
    fn start(utf8: bool) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nnlangc starts");
        let stdin = child.stdin.take().expect("stdin");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut c = Client { child, stdin, out, next: 1, pending: Vec::new(), init: None };
        let encodings = if utf8 { json!(["utf-8", "utf-16"]) } else { json!(["utf-16"]) };
        let init = c.request(
            "initialize",
            json!({ "processId": null, "rootUri": null, "capabilities": { "general": { "positionEncodings": encodings } } }),
        );
        assert!(init.get("result").is_some(), "{init}");
        c.notify("initialized", json!({}));
        c.init = Some(init);
        c
    }

    fn send(&mut self, v: Value) {
        let body = v.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn recv(&mut self) -> Value {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            let n = self.out.read_line(&mut line).expect("read");
            assert!(n > 0, "the server closed its output");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.parse().expect("a length");
            }
        }
        let mut buf = vec![0u8; len];
        self.out.read_exact(&mut buf).expect("a body");
        serde_json::from_slice(&buf).expect("JSON")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let m = self.recv();
            if m.get("id") == Some(&json!(id)) {
                return m;
            }
            self.pending.push(m);
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// The next diagnostics published.
    fn diagnostics(&mut self) -> Value {
        if let Some(i) = self.pending.iter().position(|m| m["method"] == "textDocument/publishDiagnostics") {
            return self.pending.remove(i)["params"].clone();
        }
        loop {
            let m = self.recv();
            if m["method"] == "textDocument/publishDiagnostics" {
                return m["params"].clone();
            }
        }
    }

    fn at(&mut self, method: &str, line: u32, character: u32) -> Value {
        self.request(
            method,
            json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": character } }),
        )
    }

    fn close(mut self) {
        let r = self.request("shutdown", Value::Null);
        assert_eq!(r["result"], Value::Null, "{r}");
        self.notify("exit", Value::Null);
        let status = self.child.wait().expect("exits");
        assert!(status.success(), "{status}");
    }
}

const URI: &str = "file:///work/net.nn";

const WRONG: &str = "model Net(width = 8) {
    input image: [28, 28, 1]

    let features = image -> conv(filters = width, size = 5, stride = 2) -> relu
    features -> flatten -> dense(10) -> softmax
}
";

/// The places of `needle`'s `nth` occurrence (line and column from 0).
fn place(src: &str, needle: &str, nth: usize) -> (u32, u32) {
    let at = src.match_indices(needle).nth(nth).map(|(i, _)| i).expect("in the source");
    let before = &src[..at];
    let line = before.matches('\n').count() as u32;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32;
    (line, col)
}

#[test]
fn an_editor_session() {
    let mut c = Client::start(false);
    snap!("lsp_initialize", c.init.clone());
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "nnlang", "version": 1, "text": WRONG } }),
    );
    // The mistake, with the arithmetic.
    snap!("lsp_diagnostics_mistake", c.diagnostics());

    // The fix: `stride = 2` becomes `stride = 1` (an incremental change).
    let (line, col) = place(WRONG, "2)", 0);
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": URI, "version": 2 },
            "contentChanges": [{ "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col + 1 } }, "text": "1" }],
        }),
    );
    let fixed = WRONG.replace("stride = 2", "stride = 1");
    snap!("lsp_diagnostics_fixed", c.diagnostics());

    let (line, col) = place(&fixed, "conv", 0);
    snap!("lsp_hover_conv", c.at("textDocument/hover", line, col + 1));
    let (line, col) = place(&fixed, "width", 1);
    snap!("lsp_hover_parameter", c.at("textDocument/hover", line, col + 2));

    // Completion: layers with their signatures in a chain, arguments inside a call.
    let (line, col) = place(&fixed, "flatten", 0);
    let layers = c.at("textDocument/completion", line, col);
    let labels: Vec<&str> =
        layers["result"]["items"].as_array().expect("items").iter().filter_map(|i| i["label"].as_str()).collect();
    for want in ["conv", "dense", "attention", "lstm", "batchnorm", "features", "width", "image"] {
        assert!(labels.contains(&want), "{want} is offered: {labels:?}");
    }
    snap!("lsp_completion_layers", layers);
    let (line, col) = place(&fixed, "size", 0);
    snap!("lsp_completion_arguments", c.at("textDocument/completion", line, col));

    // `features` used on the last line: its definition, references, a rename.
    let (line, col) = place(&fixed, "features", 1);
    snap!("lsp_definition", c.at("textDocument/definition", line, col + 3));
    let refs = c.request(
        "textDocument/references",
        json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": col + 3 }, "context": { "includeDeclaration": true } }),
    );
    snap!("lsp_references", refs);
    let rename = c.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": col }, "newName": "maps" }),
    );
    snap!("lsp_rename", rename);
    let refused = c.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": col }, "newName": "let" }),
    );
    assert_eq!(refused["error"]["message"], "`let` is a keyword", "{refused}");

    snap!("lsp_symbols", c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": URI } })));
    // An untidy version of the file, sent whole, then formatted.
    let untidy =
        fixed.replace("    let features = image", "  let   features=image").replace(" -> softmax", "->softmax");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 3 }, "contentChanges": [{ "text": untidy }] }),
    );
    assert_eq!(c.diagnostics()["diagnostics"], json!([]));
    snap!(
        "lsp_formatting",
        c.request(
            "textDocument/formatting",
            json!({ "textDocument": { "uri": URI }, "options": { "tabSize": 4, "insertSpaces": true } })
        )
    );
    let unknown = c.request("textDocument/unknownThing", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    c.close();
}

/// Columns count UTF-16 code units unless the client takes UTF-8: a comment with `×` and
/// `→` before a mistake moves it by their lengths in each.
#[test]
fn columns_in_either_encoding() {
    let src = "model M {\n    input x: [4]  /* 2×2 → */ let h = x -> dense(3) -> whatever\n    h\n}\n";
    for (utf8, expected) in [(false, 55u64), (true, 58u64)] {
        let mut c = Client::start(utf8);
        c.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": URI, "languageId": "nnlang", "version": 1, "text": src } }),
        );
        let d = c.diagnostics();
        let start = &d["diagnostics"][0]["range"]["start"];
        assert_eq!(start["line"], 1, "{d}");
        assert_eq!(start["character"], expected, "utf8 = {utf8}: {d}");
        c.close();
    }
}

/// Hovering over each layer of examples/convnet.nn shows exactly its rows of `nnlangc check`;
/// together the hovers show every row.
#[test]
fn hover_on_every_layer_of_the_convnet_equals_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/examples/convnet.nn");
    let src = std::fs::read_to_string(&path).expect("example");
    let check = Command::new(env!("CARGO_BIN_EXE_nnlangc")).args(["check", &path]).output().expect("check runs");
    let table = String::from_utf8_lossy(&check.stdout).to_string();
    // The rows: after the header and the rule, up to the totals.
    let rows: Vec<&str> = table.lines().skip(3).take_while(|l| !l.trim_start().starts_with("parameters:")).collect();
    assert!(rows.len() >= 20, "{table}");
    let mut c = Client::start(true);
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "nnlang", "version": 1, "text": src } }),
    );
    let mut seen: Vec<String> = Vec::new();
    let layers = [
        ("image", 0),
        ("conv(", 0),
        ("relu", 0),
        ("maxpool", 0),
        ("dense(256)", 0),
        ("relu", 1),
        ("dense(10)", 0),
        ("softmax", 0),
    ];
    for (needle, nth) in layers {
        let (line, col) = place(&src, needle, nth);
        let h = c.at("textDocument/hover", line, col + 1);
        let text = h["result"]["contents"]["value"].as_str().unwrap_or_default().to_string();
        let shown: Vec<&str> = text.lines().filter(|l| rows.contains(l)).collect();
        assert!(!shown.is_empty(), "{needle}: no row of check in\n{text}");
        for l in text.lines().filter(|l| l.starts_with("  ") && !l.contains("---") && !l.contains("layer ")) {
            assert!(rows.contains(&l), "{needle}: `{l}` is not a row of check:\n{table}");
        }
        seen.extend(shown.iter().map(|s| s.to_string()));
    }
    for r in &rows {
        assert!(seen.iter().any(|s| s == r), "no hover shows `{r}`");
    }
    c.close();
}

/// The VS Code grammar highlights every layer the language has.
#[test]
fn the_editor_grammar_knows_every_layer() {
    let path = format!("{}/editors/vscode/syntaxes/nnlang.tmLanguage.json", env!("CARGO_MANIFEST_DIR"));
    let grammar: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("grammar")).expect("JSON");
    let pattern = grammar["repository"]["layers"]["match"].as_str().expect("a layers pattern");
    let listed: Vec<&str> = pattern.trim_start_matches("\\b(").trim_end_matches(")\\b").split('|').collect();
    let missing: Vec<&str> = nnlang::ops::layers().map(|l| l.name).filter(|n| !listed.contains(n)).collect();
    assert!(missing.is_empty(), "not highlighted: {}", missing.join("|"));
}
