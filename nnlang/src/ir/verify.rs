//! Structural invariants of a graph, checked after lowering and after every pass.
//! A failure here is a compiler bug, never the user's mistake.

use super::{Graph, Op};
use std::collections::HashSet;

/// Checks that inputs precede their users, that arities fit the ops, that names are unique
/// and that the output exists. Returns every violation found.
pub fn verify(graph: &Graph) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for id in graph.ids() {
        let node = graph.node(id);
        for &i in &node.inputs {
            if i >= id {
                problems.push(format!("{id} ({}) reads {i}, which does not precede it", node.name));
            }
        }
        let arity_ok = match node.op {
            Op::Input(_) => node.inputs.is_empty(),
            Op::Add(_) | Op::Concat(_) => node.inputs.len() >= 2,
            Op::Loss(_) => node.inputs.len() == 1 && graph.output == Some(id),
            // Every other op reads one value; a new op that reads more fails here, loudly.
            _ => node.inputs.len() == 1,
        };
        if !arity_ok {
            problems.push(format!("{id} ({}) is a {} with {} inputs", node.name, node.op.kind(), node.inputs.len()));
        }
        if !names.insert(node.name.as_str()) {
            problems.push(format!("{id}: the name `{}` is used twice", node.name));
        }
    }
    match graph.output {
        Some(o) if o.index() < graph.nodes.len() => {}
        Some(o) => problems.push(format!("the output {o} is not a node")),
        None => problems.push("the graph has no output".to_string()),
    }
    if node_in_place_ok(graph).is_err() {
        problems.push("an in-place node shares its input with another reader".to_string());
    }
    for &i in &graph.inputs {
        if !matches!(graph.nodes.get(i.index()).map(|n| &n.op), Some(Op::Input(_))) {
            problems.push(format!("{i} is listed as an input but is not one"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// An in-place node must be its input's only reader.
fn node_in_place_ok(graph: &Graph) -> Result<(), ()> {
    let users = graph.users();
    for id in graph.ids() {
        let n = graph.node(id);
        if n.in_place && (n.inputs.len() != 1 || users[n.inputs[0].index()].len() != 1) {
            return Err(());
        }
    }
    Ok(())
}
