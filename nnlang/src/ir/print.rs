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

/// The graph as a standalone SVG drawing (no Graphviz needed: the playground draws it in the
/// page). Nodes are laid out in layers, each a node's longest path from an input, top to
/// bottom, in the graph's order within a layer; a box shows the node's name, kind and shape,
/// an edge runs from each input's box to its user's (curved when it skips layers).
pub fn to_svg(graph: &Graph, shapes: &[Option<Shape>]) -> String {
    const CHAR_W: usize = 7; // 12px monospace: ~7.2px a character
    const BOX_H: usize = 46;
    const GAP_X: usize = 16;
    const GAP_Y: usize = 30;
    const MARGIN: usize = 10;
    let ids: Vec<_> = graph.ids().collect();
    // Longest path from an input: nodes come in topological order.
    let mut layer = vec![0usize; graph.nodes.len()];
    for &id in &ids {
        let l = graph.node(id).inputs.iter().map(|i| layer[i.index()] + 1).max().unwrap_or(0);
        layer[id.index()] = l;
    }
    let layers = ids.iter().map(|id| layer[id.index()] + 1).max().unwrap_or(0);
    let lines = |id: super::NodeId| {
        let node = graph.node(id);
        let attrs: Vec<String> = node.op.attributes().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let kind = if attrs.is_empty() {
            node.op.kind().to_string()
        } else {
            format!("{}({})", node.op.kind(), attrs.join(", "))
        };
        let shape = match shapes.get(id.index()) {
            Some(Some(s)) => s.to_string(),
            _ => "?".to_string(),
        };
        [node.name.clone(), kind, shape]
    };
    let width_of = |id| lines(id).iter().map(|l| l.chars().count()).max().unwrap_or(1) * CHAR_W + 16;
    // Each layer's boxes side by side; the drawing as wide as its widest layer, layers centred.
    let mut rows: Vec<Vec<super::NodeId>> = vec![Vec::new(); layers];
    for &id in &ids {
        rows[layer[id.index()]].push(id);
    }
    let row_width =
        |row: &[super::NodeId]| row.iter().map(|&id| width_of(id)).sum::<usize>() + GAP_X * row.len().saturating_sub(1);
    let total_w = rows.iter().map(|r| row_width(r)).max().unwrap_or(0) + 2 * MARGIN;
    let total_h = layers * (BOX_H + GAP_Y) - GAP_Y.min(layers * (BOX_H + GAP_Y)) + 2 * MARGIN;
    let mut at = vec![(0usize, 0usize, 0usize); graph.nodes.len()]; // x, y, width
    for (l, row) in rows.iter().enumerate() {
        let mut x = (total_w - row_width(row)) / 2;
        for &id in row {
            let w = width_of(id);
            at[id.index()] = (x, MARGIN + l * (BOX_H + GAP_Y), w);
            x += w + GAP_X;
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total_w}\" height=\"{total_h}\" viewBox=\"0 0 {total_w} {total_h}\" font-family=\"monospace\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<title>{}</title>", xml(&graph.name));
    let _ = writeln!(
        out,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>"
    );
    for &id in &ids {
        let (x, y, w) = at[id.index()];
        for i in &graph.node(id).inputs {
            let (ix, iy, iw) = at[i.index()];
            let (x1, y1, x2, y2) = (ix + iw / 2, iy + BOX_H, x + w / 2, y);
            let _ = if layer[id.index()] == layer[i.index()] + 1 {
                writeln!(
                    out,
                    "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#555\" marker-end=\"url(#arrow)\"/>"
                )
            } else {
                // A skip over layers bows out to the right of the boxes it passes.
                let bow = total_w.saturating_sub(MARGIN / 2).min(x1.max(x2) + 60);
                writeln!(
                    out,
                    "<path d=\"M{x1},{y1} C{bow},{y1} {bow},{y2} {x2},{y2}\" fill=\"none\" stroke=\"#555\" marker-end=\"url(#arrow)\"/>"
                )
            };
        }
    }
    for &id in &ids {
        let (x, y, w) = at[id.index()];
        let [name, kind, shape] = lines(id);
        let _ = writeln!(
            out,
            "<g class=\"node\" data-node=\"{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{BOX_H}\" rx=\"4\" fill=\"#f4f6fb\" stroke=\"#3b5b92\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text></g>",
            xml(&name),
            x + w / 2,
            y + 14,
            xml(&name),
            x + w / 2,
            y + 28,
            xml(&kind),
            x + w / 2,
            y + 42,
            xml(&shape)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// `s` with XML's special characters escaped.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
