//! `fuse-softmax-ce`: `softmax → cross_entropy` becomes one stable `softmax_cross_entropy` of
//! the logits, and `sigmoid → binary_cross_entropy` one `sigmoid_binary_cross_entropy`. The
//! softmax or sigmoid is left without readers, for `dce`.

use crate::ir::{Activation, Graph, LossKind, Op};

/// Fuses a final softmax (sigmoid) with the cross-entropy loss after it.
pub fn fuse_softmax_ce(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    let users = g.users();
    for i in 0..g.nodes.len() {
        let Op::Loss(loss) = &g.nodes[i].op else { continue };
        let kind = loss.loss;
        let pred = g.nodes[i].inputs[0];
        if users[pred.index()].len() != 1 {
            continue;
        }
        let fused = match (kind, &g.node(pred).op) {
            (LossKind::CrossEntropy, Op::Softmax(_)) => LossKind::SoftmaxCrossEntropy,
            (LossKind::BinaryCrossEntropy, Op::Activation(a)) if a.function == Activation::Sigmoid => {
                LossKind::SigmoidBinaryCrossEntropy
            }
            _ => continue,
        };
        let logits = g.node(pred).inputs[0];
        g.nodes[i].op = Op::Loss(crate::ops::loss::Loss { loss: fused, smoothing: loss.smoothing });
        g.nodes[i].inputs = vec![logits];
    }
    g
}
