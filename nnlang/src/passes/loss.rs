//! `loss`: appends the training loss to the model's output; the loss node becomes the
//! graph's output.

use crate::ir::{Graph, LossKind, Op};

/// Appends the training loss `loss` (label smoothing `smoothing`) to the model's output.
pub fn add_loss(graph: &Graph, loss: LossKind, smoothing: f64) -> Graph {
    let mut g = graph.clone();
    if let Some(out) = g.output {
        let span = g.node(out).span;
        let op = Op::Loss(crate::ops::loss::Loss { loss, smoothing });
        let id = g.add(op, vec![out], "loss".to_string(), span);
        g.output = Some(id);
    }
    g
}
