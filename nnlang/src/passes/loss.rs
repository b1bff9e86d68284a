//! `loss`: appends the training loss to the model's output; the loss node becomes the
//! graph's output.

use crate::ir::{Graph, LossKind, Op};

/// Appends the training loss `loss` to the model's output.
pub fn add_loss(graph: &Graph, loss: LossKind) -> Graph {
    let mut g = graph.clone();
    if let Some(out) = g.output {
        let span = g.node(out).span;
        let id = g.add(Op::Loss(crate::ops::loss::Loss { loss }), vec![out], "loss".to_string(), span);
        g.output = Some(id);
    }
    g
}
