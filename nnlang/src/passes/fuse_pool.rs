//! `fuse-pool` (training): a batch norm (with or without the ReLU `fuse-dense` gave it) whose
//! only reader is a max pooling of `f × f` windows at stride `f` that tile its map exactly is
//! computed with that pooling as one step (`batchnorm(…, pool = maxpool(size = f))`): the
//! normalized map — the largest value of a ConvNet's first stage — is neither written by the
//! forward step nor read back by the pooling, and the backward step takes the pooled map's
//! gradient, its sums over one tap a window. The pooling's readers read the batch norm; the
//! pooling is left without readers, for `dce`.
//!
//! Inference plans fold the batch norm into the layer before it instead (`fold-batchnorm`).

use crate::ir::{Graph, NodeId, Op};
use crate::ops::pool::PoolKind;
use crate::ops::tensor::Dim;

/// Fuses each max pooling into the batch norm before it, where the windows tile its map.
pub fn fuse_pool(graph: &Graph) -> Graph {
    // The activations `fuse-dense` took in go first: they still read the batch norm.
    let mut g = super::dce(graph);
    let users = g.users();
    let (shapes, _) = crate::shape::infer(&g);
    for p in 0..g.nodes.len() {
        let Op::Pool(pool) = &g.nodes[p].op else { continue };
        let f = pool.size;
        if pool.kind != PoolKind::Max || pool.stride != f || f == 0 {
            continue;
        }
        let Some(&b) = g.nodes[p].inputs.first() else { continue };
        if users[b.index()].len() != 1 || g.output == Some(b) {
            continue;
        }
        // Windows that tile the map: every value is in exactly one of them.
        let tiles = match shapes.shapes[b.index()].as_ref().map(|s| s.0.as_slice()) {
            Some(&[Dim::Fixed(h), Dim::Fixed(w), Dim::Fixed(_)]) => h % f == 0 && w % f == 0,
            _ => false,
        };
        if !tiles {
            continue;
        }
        match &mut g.nodes[b.index()].op {
            Op::BatchNorm(bn) if bn.pool.is_none() => bn.pool = Some(f),
            _ => continue,
        }
        g.redirect(NodeId(p as u32), b, &users[p]);
    }
    g
}
