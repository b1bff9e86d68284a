//! `inplace`: an activation or dropout overwrites its input's buffer when nothing else reads
//! that value afterwards — it is the input's only reader, and (when training) the input's
//! own backward rule does not need it. Chains of in-place nodes share one buffer. Activations' backward rules read their output, so the
//! input being gone does not matter to them.

use crate::ir::{Graph, Op};

pub fn inplace(graph: &Graph, training: bool) -> Graph {
    let mut g = graph.clone();
    let users = g.users();
    for n in 0..g.nodes.len() {
        if !matches!(g.nodes[n].op, Op::Activation { .. } | Op::Dropout { .. }) {
            continue;
        }
        let i = g.nodes[n].inputs[0];
        if users[i.index()].len() != 1 {
            continue;
        }
        let input = g.node(i);
        // The value is needed later by the input's own backward rule: an activation (its
        // output), a fused dense layer (the output, for f'), a softmax. Inputs belong to the
        // caller and are never overwritten; an in-place input already shares a buffer.
        let keeps_value = match input.op {
            Op::Input { .. } | Op::Flatten => true,
            Op::Activation { .. }
            | Op::FusedDense { .. }
            | Op::FusedConv { .. }
            | Op::Softmax
            | Op::Pool { .. }
            | Op::Maxout { .. }
            | Op::MaxoutChannels { .. } => training,
            _ => false,
        };
        if !keeps_value {
            g.nodes[n].in_place = true;
        }
    }
    g
}
