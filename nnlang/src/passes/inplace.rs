//! `inplace`: an elementwise op (an activation, dropout) overwrites its input's buffer when
//! nothing else reads that value afterwards: it is the input's only reader, the input is
//! not the caller's array nor an alias of another value, and (when training) the input's own
//! backward rule does not read it. Chains of in-place nodes share one buffer. The facts come
//! from each op's rules ([`crate::ops::Rules::elementwise`], `value`, `backward_reads`).

use crate::ir::Graph;
use crate::ops::Value;

/// Marks the elementwise ops that may write over their input's buffer.
pub fn inplace(graph: &Graph, training: bool) -> Graph {
    let mut g = graph.clone();
    let users = g.users();
    for n in 0..g.nodes.len() {
        let rules = g.nodes[n].op.rules();
        if !rules.elementwise() || (training && rules.backward_reads().input) {
            continue;
        }
        let i = g.nodes[n].inputs[0];
        if users[i.index()].len() != 1 {
            continue;
        }
        let input = g.node(i).op.rules();
        let keeps_value = match input.value(training) {
            Value::Caller | Value::Alias | Value::Loss => true,
            Value::Computed => training && input.backward_reads().output,
        };
        if !keeps_value {
            g.nodes[n].in_place = true;
        }
    }
    g
}
