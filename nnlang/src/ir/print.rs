//! Stable text and Graphviz forms of a graph. The text form is what snapshot tests and
//! `nnlangc emit --ir` show; it changes only when the IR really changes.

use super::{Graph, Shape};
use std::fmt::Write;

/// ```text
/// model Mlp(hidden = 256) {
///   %0 x = input(dims = [784]) : [784]
///   %1 dense_0 = dense(units = 256)(%0) : [256]
///   output %1
/// }
/// ```
pub fn to_text(graph: &Graph, shapes: &[Option<Shape>]) -> String {
    let mut out = String::new();
    let params: Vec<String> = graph.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let _ = writeln!(out, "model {}({}) {{", graph.name, params.join(", "));
    // The uses of blocks open around their nodes: `stage1 = Stage(width = 32) { … }`.
    let mut open: Vec<u32> = Vec::new();
    for id in graph.ids() {
        let node = graph.node(id);
        let mut chain: Vec<u32> = Vec::new();
        let mut s = node.scope;
        while let Some(k) = s {
            chain.push(k);
            s = graph.scopes.get(k as usize).and_then(|sc| sc.parent).filter(|&p| p < k);
        }
        chain.reverse();
        let common = open.iter().zip(&chain).take_while(|(a, b)| a == b).count();
        while open.len() > common {
            open.pop();
            let _ = writeln!(out, "{}}}", "  ".repeat(open.len() + 1));
        }
        for &k in &chain[common..] {
            let sc = &graph.scopes[k as usize];
            let args: Vec<String> = sc.args.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            let indent = "  ".repeat(open.len() + 1);
            let _ = match sc.block.as_str() {
                "" => writeln!(out, "{indent}{} {{", sc.name),
                block => writeln!(out, "{indent}{} = {block}({}) {{", sc.name, args.join(", ")),
            };
            open.push(k);
        }
        let indent = "  ".repeat(open.len() + 1);
        let attrs: Vec<String> = node.op.attributes().into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let mut line = format!("{indent}{id} {} = {}", node.name, node.op.kind());
        if !attrs.is_empty() {
            let _ = write!(line, "({})", attrs.join(", "));
        }
        if !node.inputs.is_empty() {
            let ins: Vec<String> = node.inputs.iter().map(|i| i.to_string()).collect();
            let _ = write!(line, "({})", ins.join(", "));
        }
        if node.in_place {
            line.push_str(" in-place");
        }
        match shapes.get(id.index()) {
            Some(Some(s)) => {
                let _ = write!(line, " : {s}");
            }
            _ => line.push_str(" : ?"),
        }
        let _ = writeln!(out, "{line}");
    }
    while open.pop().is_some() {
        let _ = writeln!(out, "{}}}", "  ".repeat(open.len() + 1));
    }
    if let Some(o) = graph.output {
        let _ = writeln!(out, "  output {o}");
    }
    out.push_str("}\n");
    out
}

/// The graph as Graphviz `dot`, one box per node labelled with its name, kind and shape.
pub fn to_dot(graph: &Graph, shapes: &[Option<Shape>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&graph.name));
    out.push_str("  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
    for id in graph.ids() {
        let node = graph.node(id);
        let shape = match shapes.get(id.index()) {
            Some(Some(s)) => s.to_string(),
            _ => "?".to_string(),
        };
        let attrs: Vec<String> = node.op.attributes().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut label = format!("{}\\n{}", escape(&node.name), node.op.kind());
        if !attrs.is_empty() {
            let _ = write!(label, "({})", escape(&attrs.join(", ")));
        }
        let _ = write!(label, "\\n{}", escape(&shape));
        let _ = writeln!(out, "  n{} [label=\"{label}\"];", id.0);
        for i in &node.inputs {
            let _ = writeln!(out, "  n{} -> n{};", i.0, id.0);
        }
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
