//! How long `nnlangc lsp` takes to answer on a 1,000-layer file: from a change sent to its
//! diagnostics received (a mistake made, then fixed, 40 times), and hover, completion and
//! formatting. Run by hand, on a quiet machine:
//!
//! ```sh
//! cargo build --release && cargo run --release --example lsp_latency
//! ```

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

struct Io {
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Io {
    fn send(&mut self, v: Value) {
        let body = v.to_string();
        let _ = write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len());
        let _ = self.stdin.flush();
    }
    fn recv(&mut self) -> Value {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if self.out.read_line(&mut line).unwrap_or(0) == 0 {
                eprintln!("the server closed its output");
                std::process::exit(1);
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0u8; len];
        let _ = self.out.read_exact(&mut buf);
        serde_json::from_slice(&buf).unwrap_or(Value::Null)
    }
    fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let m = self.recv();
            if pred(&m) {
                return m;
            }
        }
    }
}

fn stats(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!(
        "{name:<40} median {median:7.2} ms   min {:7.2}   max {:7.2}   ({} times)",
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    );
}

fn main() {
    let exe = std::env::current_exe().ok().and_then(|p| p.parent()?.parent().map(|d| d.join("nnlangc")));
    let Some(exe) = exe.filter(|p| p.exists()) else {
        eprintln!("build nnlangc first: cargo build --release");
        std::process::exit(2);
    };
    // 500 dense layers and 500 activations, one stage per line.
    let mut src = String::from("model Deep(width = 64) {\n    input x: [64]\n\n    x");
    for i in 0..500 {
        src.push_str(&format!("\n      -> dense(width) -> {}", if i % 2 == 0 { "relu" } else { "tanh" }));
    }
    src.push_str("\n      -> dense(10)\n      -> softmax\n}\n");
    let layers = 1000 + 2;
    let mut child =
        Command::new(&exe).arg("lsp").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| {
            eprintln!("cannot start {}: {e}", exe.display());
            std::process::exit(2);
        });
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let mut io = Io { stdin, out: BufReader::new(stdout) };
    io.send(json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": { "capabilities": {} } }));
    io.wait(|m| m["id"] == 0);
    io.send(json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }));
    let uri = "file:///deep.nn";
    let t = Instant::now();
    io.send(json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": { "textDocument": { "uri": uri, "languageId": "nnlang", "version": 1, "text": src } } }));
    io.wait(|m| m["method"] == "textDocument/publishDiagnostics");
    println!("{layers} layers, {} lines, {} bytes", src.lines().count(), src.len());
    stats("open → diagnostics", vec![t.elapsed().as_secs_f64() * 1e3]);

    // Line 254 holds the 250th `dense(width)`: `width` becomes `width + 0.5` (an error: not
    // an integer), then back.
    let line = 253u32;
    let col = 20u32;
    let mut change = Vec::new();
    let mut errors = 0;
    for v in 0..80 {
        let (text, end) = if v % 2 == 0 { (" + 0.5", col) } else { ("", col + 6) };
        let t = Instant::now();
        io.send(json!({ "jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": { "uri": uri, "version": v + 2 },
            "contentChanges": [{ "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": end } }, "text": text }],
        } }));
        let d = io.wait(|m| m["method"] == "textDocument/publishDiagnostics");
        change.push(t.elapsed().as_secs_f64() * 1e3);
        errors += d["params"]["diagnostics"].as_array().map_or(0, |a| a.len());
    }
    stats("change → diagnostics", change);
    println!("{:<40} {errors} (one per mistaken version: 40 expected)", "diagnostics received");
    let mut id = 1;
    let mut timed = |io: &mut Io, method: &str, params: Value| -> f64 {
        id += 1;
        let t = Instant::now();
        io.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let this = id;
        io.wait(|m| m["id"] == this);
        t.elapsed().as_secs_f64() * 1e3
    };
    let at = json!({ "textDocument": { "uri": uri }, "position": { "line": 500, "character": 12 } });
    let hover: Vec<f64> = (0..20).map(|_| timed(&mut io, "textDocument/hover", at.clone())).collect();
    stats("hover (a dense layer)", hover);
    let completion: Vec<f64> = (0..20).map(|_| timed(&mut io, "textDocument/completion", at.clone())).collect();
    stats("completion", completion);
    let fmt = json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } });
    let format: Vec<f64> = (0..10).map(|_| timed(&mut io, "textDocument/formatting", fmt.clone())).collect();
    stats("formatting", format);
    io.send(json!({ "jsonrpc": "2.0", "id": 999, "method": "shutdown", "params": null }));
    io.wait(|m| m["id"] == 999);
    io.send(json!({ "jsonrpc": "2.0", "method": "exit", "params": null }));
    let _ = child.wait();
}
