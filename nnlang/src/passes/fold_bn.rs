//! `fold-batchnorm` (inference): a batch norm whose input is a convolution or a dense layer
//! read by nothing else is folded into it, the batch norm's pass over the activations (and
//! its buffer) gone. With the running averages, `bn(conv(x)) = conv'(x)` for the weights
//! `W' = W·s` and bias `b' = (b − μ)·s + β`, `s = γ/√(σ² + ε)` per filter: the convolution
//! takes the batch norm's parameters (by their names, so checkpoints load as they are) and
//! computes `W'` and `b'` before its product. A dense layer instead normalizes its rows as it
//! writes them (recomputing `W·s` at each call would cost as much as its product at batch 1).
//! The batch norm's readers read the layer; it is left for `dce`.

use crate::ir::{Graph, NodeId, Op};
use crate::ops::conv::Fold;

/// Folds each batch norm into the convolution or dense layer before it, where that is its
/// only reader.
pub fn fold_batchnorm(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    let users = g.users();
    for b in 0..g.nodes.len() {
        let Op::BatchNorm(bn) = &g.nodes[b].op else { continue };
        let fold = Fold { eps: bn.eps, momentum: bn.momentum, name: g.nodes[b].name.clone() };
        let Some(&c) = g.nodes[b].inputs.first() else { continue };
        if users[c.index()].len() != 1 || g.output == Some(c) {
            continue;
        }
        match &mut g.nodes[c.index()].op {
            Op::Conv(conv) if conv.activation.is_none() && conv.fold.is_none() => conv.fold = Some(fold),
            Op::Dense(dense) if dense.activation.is_none() && dense.fold.is_none() => dense.fold = Some(fold),
            _ => continue,
        }
        g.redirect(NodeId(b as u32), c, &users[b]);
    }
    // The folded batch norms go now: `fuse-dense` sees the convolution's one reader left.
    super::dce(&g)
}
