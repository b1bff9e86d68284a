//! Passes over the IR. Each is a plain function from graph to graph, in a file of its own;
//! [`pipeline`] runs them in order and verifies the graph after each one, so that a pass that
//! breaks an invariant is caught where it did.

mod dce;
mod fold_bn;
mod fuse_dense;
mod fuse_pool;
mod fuse_softmax_ce;
mod inplace;
mod loss;

pub use dce::dce;
pub use fold_bn::fold_batchnorm;
pub use fuse_dense::fuse_dense;
pub use fuse_pool::fuse_pool;
pub use fuse_softmax_ce::fuse_softmax_ce;
pub use inplace::inplace;
pub use loss::add_loss;

use crate::ir::{verify, Graph, LossKind};
use nnlang_runtime::plan::Loss;

/// What the graph is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward only, dropout off, softmax computed.
    Inference,
    /// Forward with dropout, the loss, the backward pass and the update.
    Training(Loss),
}

/// Whether to run the optimizing passes (the loss is always added for training).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Lowering only (the loss is still added for training).
    None,
    /// Every optimizing pass.
    Full,
}

/// The passes, by the names `nnlangc emit --ir --after NAME` takes.
pub const PASSES: &[&str] = &["loss", "fuse-softmax-ce", "fold-batchnorm", "fuse-dense", "fuse-pool", "dce", "inplace"];

/// Runs the passes for `target` and returns the graph after each one that ran, by name.
/// Panics only if a pass breaks the IR's invariants (a compiler bug).
pub fn pipeline(graph: &Graph, mode: Mode, level: Level) -> Vec<(&'static str, Graph)> {
    let mut out: Vec<(&'static str, Graph)> = Vec::new();
    let mut g = graph.clone();
    let run = |name: &'static str, g2: Graph, out: &mut Vec<(&'static str, Graph)>| {
        if let Err(problems) = verify(&g2) {
            panic!("the `{name}` pass broke the IR: {}", problems.join("; "));
        }
        out.push((name, g2.clone()));
        g2
    };
    let training = matches!(mode, Mode::Training(_));
    if let Mode::Training(loss) = mode {
        g = run("loss", add_loss(&g, LossKind::of(loss), loss.smoothing()), &mut out);
    }
    if level == Level::Full {
        if training {
            g = run("fuse-softmax-ce", fuse_softmax_ce(&g), &mut out);
        } else {
            g = run("fold-batchnorm", fold_batchnorm(&g), &mut out);
        }
        g = run("fuse-dense", fuse_dense(&g), &mut out);
        if training {
            g = run("fuse-pool", fuse_pool(&g), &mut out);
        }
        g = run("dce", dce(&g), &mut out);
        let _ = run("inplace", inplace(&g, training), &mut out);
    }
    out
}

/// The graph after the whole pipeline.
pub fn optimize(graph: &Graph, mode: Mode, level: Level) -> Graph {
    pipeline(graph, mode, level).pop().map_or_else(|| graph.clone(), |(_, g)| g)
}
