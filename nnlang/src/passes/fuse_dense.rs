//! `fuse-dense`: a dense or convolution layer whose only reader is an activation takes that
//! activation as its own (`dense(…, activation = f)`, `conv(…, activation = f)`) and is
//! computed as one step (product, bias, activation while the output is hot); so does a batch
//! norm whose only reader is a ReLU (`batchnorm(…, activation = relu)`). The
//! activation's readers read the fused node; the activation is left without readers, for
//! `dce`.

use crate::ir::{Graph, NodeId, Op};

/// Fuses an activation into the dense or conv layer before it.
pub fn fuse_dense(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    let users = g.users();
    for a in 0..g.nodes.len() {
        let Op::Activation(act) = &g.nodes[a].op else { continue };
        let function = act.function;
        // The fused backward reads the derivative off the output: not for GELU's kind.
        if function.reads() != nnlang_runtime::act::Reads::Output {
            continue;
        }
        let d = g.nodes[a].inputs[0];
        if users[d.index()].len() != 1 || g.output == Some(d) {
            continue;
        }
        match &mut g.nodes[d.index()].op {
            Op::Dense(dense) if dense.activation.is_none() => dense.activation = Some(function),
            Op::Conv(conv) if conv.activation.is_none() => conv.activation = Some(function),
            // A batch norm takes a ReLU (the common `conv -> batchnorm -> relu`).
            Op::BatchNorm(bn) if !bn.relu && function == crate::ir::Activation::Relu => bn.relu = true,
            _ => continue,
        }
        g.redirect(NodeId(a as u32), d, &users[a]);
    }
    g
}
