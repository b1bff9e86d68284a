//! `fuse-dense`: a dense or convolution layer whose only reader is an activation becomes one
//! `dense(…, activation = f)` or `conv(…, activation = f)` node, computed as one step
//! (product, bias, activation while the output is hot). The activation's readers read the fused node; the activation is left
//! without readers, for `dce`.

use crate::ir::{Graph, Op};

pub fn fuse_dense(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    let users = g.users();
    for a in 0..g.nodes.len() {
        let Op::Activation { function } = g.nodes[a].op else { continue };
        let d = g.nodes[a].inputs[0];
        let fused = match g.node(d).op {
            Op::Dense { units } => Op::FusedDense { units, activation: function },
            Op::Conv { filters, size, stride, pad } => {
                Op::FusedConv { filters, size, stride, pad, activation: function }
            }
            _ => continue,
        };
        if users[d.index()].len() != 1 || g.output == Some(d) {
            continue;
        }
        g.nodes[d.index()].op = fused;
        let act = crate::ir::NodeId(a as u32);
        for u in &users[a] {
            for i in g.nodes[u.index()].inputs.iter_mut() {
                if *i == act {
                    *i = d;
                }
            }
        }
        if g.output == Some(act) {
            g.output = Some(d);
        }
    }
    g
}
