//! `dce`: removes nodes nothing needs — not the output, nor an input of a needed node.
//! Model inputs stay: they are the graph's interface. Ids are renumbered in order.

use crate::ir::{Graph, Op};

/// Removes the nodes the output does not depend on.
pub fn dce(graph: &Graph) -> Graph {
    let n = graph.nodes.len();
    let mut live = vec![false; n];
    if let Some(o) = graph.output {
        live[o.index()] = true;
    }
    for id in graph.ids().rev() {
        if live[id.index()] {
            for &i in &graph.node(id).inputs {
                live[i.index()] = true;
            }
        }
        if matches!(graph.node(id).op, Op::Input { .. }) {
            live[id.index()] = true;
        }
    }
    let mut map = vec![None; n];
    let mut g = Graph { name: graph.name.clone(), params: graph.params.clone(), ..Graph::default() };
    for id in graph.ids() {
        if !live[id.index()] {
            continue;
        }
        let node = graph.node(id);
        let inputs = node.inputs.iter().filter_map(|i| map[i.index()]).collect();
        let new = g.add(node.op.clone(), inputs, node.name.clone(), node.span);
        g.nodes[new.index()].in_place = node.in_place;
        g.nodes[new.index()].scope = node.scope;
        map[id.index()] = Some(new);
    }
    g.inputs = graph.inputs.iter().filter_map(|i| map[i.index()]).collect();
    g.output = graph.output.and_then(|o| map[o.index()]);
    g
}
