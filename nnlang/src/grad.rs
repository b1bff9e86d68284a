//! The forward and backward steps of each op, side by side: one forward rule and one
//! vector-Jacobian rule per op. The backward pass is derived from these at compile time.

use crate::ir::{Activation, Node, Op, PoolKind};
use nnlang_runtime::plan::{ABuf, Act, Geometry, PBuf, PoolOp, Step, Write};

pub fn act(a: &Activation) -> Act {
    match a {
        Activation::Sigmoid => Act::Sigmoid,
        Activation::Tanh => Act::Tanh,
        Activation::Relu => Act::Relu,
        Activation::LeakyRelu { alpha } => Act::LeakyRelu(*alpha),
        Activation::Identity => Act::Identity,
    }
}

/// What a rule needs to know about the buffers around a node.
pub struct Ctx<'a> {
    pub node: &'a Node,
    /// The values of the node's inputs, and of the node itself.
    pub inputs: Vec<ABuf>,
    pub value: ABuf,
    /// The node's parameters (weight, bias) in the parameter store.
    pub params: Vec<PBuf>,
    /// The dropout mask, for dropout in a training plan.
    pub mask: Option<ABuf>,
    /// The window geometry of a convolution, locally-connected layer or pooling.
    pub geometry: Option<Geometry>,
    /// Buffers the op needs besides its value, allocated by the planner ([`scratch`]).
    pub scratch: Vec<ABuf>,
}

/// What scratch buffers an op needs: (columns per example, or a fixed length), in order.
pub enum Scratch {
    /// Scaled by the batch.
    PerRow(usize),
    /// An im2col workspace of this many elements.
    Fixed(usize),
}

/// Elements of an im2col workspace: whole examples' patches up to about 1 MiB.
pub fn workspace(g: &Geometry, max_batch: usize) -> usize {
    let per = g.oh * g.ow * g.d * g.f * g.f;
    let examples = (WORKSPACE / per.max(1)).clamp(1, max_batch.max(1));
    examples * per
}

const WORKSPACE: usize = 256 * 1024;

/// The scratch buffers of an op: conv and local need a forward and (training) a backward
/// workspace; dense maxout its pre-maximum values and (training) their gradient.
pub fn scratch(op: &Op, g: Option<&Geometry>, training: bool, max_batch: usize) -> Vec<Scratch> {
    match (op, g) {
        (Op::Conv { .. } | Op::FusedConv { .. } | Op::Local { .. }, Some(g)) => {
            let ws = workspace(g, max_batch);
            if training {
                vec![Scratch::Fixed(ws), Scratch::Fixed(ws)]
            } else {
                vec![Scratch::Fixed(ws)]
            }
        }
        (Op::Maxout { units, pieces }, _) => {
            if training {
                vec![Scratch::PerRow(units * pieces), Scratch::PerRow(units * pieces)]
            } else {
                vec![Scratch::PerRow(units * pieces)]
            }
        }
        _ => Vec::new(),
    }
}

fn pool_op(k: PoolKind) -> PoolOp {
    match k {
        PoolKind::Max => PoolOp::Max,
        PoolKind::Avg => PoolOp::Avg,
        PoolKind::L2 => PoolOp::L2,
    }
}

/// The gradient buffer for input `i` of a node, and how to write it. `New` offers the
/// node's own `dy` buffer for an in-place rule; the caller decides whether it may be used.
pub enum Dx {
    /// The input needs no gradient (a model input).
    None,
    /// Write into this buffer (`Assign` if first, `Accumulate` after).
    Into(ABuf, Write),
    /// The input has no gradient yet: it may take over `dy`'s buffer (the rule then
    /// computes in place), or get a buffer of its own.
    New,
}

/// The forward steps of one op; none for an alias (flatten; dropout outside training) or
/// the loss (built by the planner).
pub fn forward(c: &Ctx) -> Vec<Step> {
    let Some(&x) = c.inputs.first() else { return Vec::new() };
    let in_place = c.node.in_place;
    let g = c.geometry;
    let step = match (&c.node.op, g) {
        (Op::Input { .. } | Op::Flatten | Op::Loss { .. }, _) => return Vec::new(),
        (Op::Dense { .. }, _) => Step::Dense { x, w: c.params[0], b: c.params[1], y: c.value },
        (Op::FusedDense { activation, .. }, _) => {
            Step::DenseAct { f: act(activation), x, w: c.params[0], b: c.params[1], y: c.value }
        }
        (Op::Activation { function }, _) if in_place => Step::ActivationInPlace { f: act(function), y: c.value },
        (Op::Activation { function }, _) => Step::Activation { f: act(function), x, y: c.value },
        (Op::Dropout { keep }, _) => match c.mask {
            Some(mask) if in_place => Step::DropoutInPlace { keep: *keep, mask, y: c.value },
            Some(mask) => Step::Dropout { keep: *keep, x, mask, y: c.value },
            None => return Vec::new(),
        },
        (Op::Softmax, _) => Step::Softmax { x, y: c.value },
        (Op::Add, _) => Step::Add { xs: c.inputs.clone(), y: c.value },
        (Op::Concat, _) => Step::Concat { xs: c.inputs.clone(), y: c.value },
        (Op::Conv { .. }, Some(g)) => {
            Step::Conv { g, f: Act::Identity, x, w: c.params[0], b: c.params[1], y: c.value, ws: c.scratch[0] }
        }
        (Op::FusedConv { activation, .. }, Some(g)) => {
            Step::Conv { g, f: act(activation), x, w: c.params[0], b: c.params[1], y: c.value, ws: c.scratch[0] }
        }
        (Op::Local { .. }, Some(g)) => {
            Step::Local { g, f: Act::Identity, x, w: c.params[0], b: c.params[1], y: c.value, ws: c.scratch[0] }
        }
        (Op::Pool { kind, .. }, Some(g)) => Step::Pool { op: pool_op(*kind), g, x, y: c.value },
        (Op::Maxout { pieces, .. }, _) => {
            let z = c.scratch[0];
            return vec![
                Step::Dense { x, w: c.params[0], b: c.params[1], y: z },
                Step::Maxout { pieces: *pieces, z, y: c.value },
            ];
        }
        (Op::MaxoutChannels { pieces }, _) => Step::Maxout { pieces: *pieces, z: x, y: c.value },
        (Op::Conv { .. } | Op::FusedConv { .. } | Op::Local { .. } | Op::Pool { .. }, None)
        | (Op::Rnn { .. } | Op::Bidirectional { .. }, _) => return Vec::new(),
    };
    vec![step]
}

/// The backward steps of one op given `dy`, the gradient of its output. `dx(i, may_reuse)`
/// resolves the gradient buffer of input `i`; with `may_reuse` the node's `dy` buffer is
/// handed over when the input has none yet, and the rule computes in place.
pub fn backward(c: &Ctx, dy: ABuf, grads: &[PBuf], dx: &mut dyn FnMut(usize, bool) -> Dx) -> Vec<Step> {
    let to_opt = |d: Dx| match d {
        Dx::Into(b, w) => Some((b, w)),
        _ => None,
    };
    match &c.node.op {
        // Forward was y = x·Wᵀ + b, so now dW = dyᵀ·x, db = Σ dy, dx (+)= dy·W.
        Op::Dense { .. } => {
            let d = to_opt(dx(0, false));
            vec![Step::DenseBackward { x: c.inputs[0], w: c.params[0], dy, dw: grads[0], db: grads[1], dx: d }]
        }
        // Forward was y = f(x·Wᵀ + b), so now dz = dy·f'(y) (over dy), then as dense.
        Op::FusedDense { activation, .. } => {
            let d = to_opt(dx(0, false));
            vec![Step::DenseActBackward {
                f: act(activation),
                x: c.inputs[0],
                y: c.value,
                w: c.params[0],
                dy,
                dw: grads[0],
                db: grads[1],
                dx: d,
            }]
        }
        // Forward was y = f(x), so now dx (+)= dy · f'(x), with f' read off y.
        Op::Activation { function } => match dx(0, true) {
            Dx::None => Vec::new(),
            Dx::New => vec![Step::ActivationBackwardInPlace { f: act(function), y: c.value, d: dy }],
            Dx::Into(d, write) => {
                vec![Step::ActivationBackward { f: act(function), x: c.inputs[0], y: c.value, dy, dx: d, write }]
            }
        },
        // Forward was y = x · mask, so now dx (+)= dy · mask.
        Op::Dropout { .. } => match (c.mask, dx(0, true)) {
            (Some(mask), Dx::New) => vec![Step::DropoutBackwardInPlace { mask, d: dy }],
            (Some(mask), Dx::Into(d, write)) => vec![Step::DropoutBackward { mask, dy, dx: d, write }],
            _ => Vec::new(),
        },
        // Forward was y = softmax(x), so now dx (+)= y·(dy − Σ dy·y).
        Op::Softmax => match to_opt(dx(0, false)) {
            Some((d, write)) => vec![Step::SoftmaxBackward { y: c.value, dy, dx: d, write }],
            None => Vec::new(),
        },
        // Forward was y = Σ xᵢ, so now every dxᵢ (+)= dy.
        Op::Add => (0..c.inputs.len())
            .filter_map(|i| to_opt(dx(i, false)).map(|(d, write)| Step::Copy { x: d, x_col: 0, y: dy, write }))
            .collect(),
        // Forward put xᵢ in columns [colᵢ, colᵢ + colsᵢ) of y, so now dxᵢ (+)= those columns of dy.
        Op::Concat => {
            let mut col = 0;
            let mut steps = Vec::new();
            for (i, x) in c.inputs.iter().enumerate() {
                if let Some((d, write)) = to_opt(dx(i, false)) {
                    steps.push(Step::Copy { x: d, x_col: col, y: dy, write });
                }
                col += x.cols;
            }
            steps
        }
        // Forward was y = f(conv(x) + b), so now dz = dy·f'(y) (over dy), dW = Σ dzᵀ·patches,
        // db = Σ dz, dx (+)= col2im(dz·W).
        Op::Conv { .. } | Op::FusedConv { .. } | Op::Local { .. } => {
            let Some(g) = c.geometry else { return Vec::new() };
            let f = match &c.node.op {
                Op::FusedConv { activation, .. } => act(activation),
                _ => Act::Identity,
            };
            let d = to_opt(dx(0, false));
            let (x, y, w, ws) = (c.inputs[0], c.value, c.params[0], c.scratch[1]);
            if matches!(c.node.op, Op::Local { .. }) {
                vec![Step::LocalBackward { g, f, x, y, w, dy, dw: grads[0], db: grads[1], dx: d, ws }]
            } else {
                vec![Step::ConvBackward { g, f, x, y, w, dy, dw: grads[0], db: grads[1], dx: d, ws }]
            }
        }
        // Forward was y = pool(x), so now each window's x gets its share of dy.
        Op::Pool { kind, .. } => match (c.geometry, to_opt(dx(0, false))) {
            (Some(g), Some((d, write))) => {
                vec![Step::PoolBackward { op: pool_op(*kind), g, x: c.inputs[0], y: c.value, dy, dx: d, write }]
            }
            _ => Vec::new(),
        },
        // Forward was z = x·Wᵀ + b, y = max over groups of z, so now dz = dy at the maxima,
        // then as dense.
        Op::Maxout { pieces, .. } => {
            let (z, dz) = (c.scratch[0], c.scratch[1]);
            vec![
                Step::MaxoutBackward { pieces: *pieces, z, y: c.value, dy, dz, write: Write::Assign },
                Step::DenseBackward {
                    x: c.inputs[0],
                    w: c.params[0],
                    dy: dz,
                    dw: grads[0],
                    db: grads[1],
                    dx: to_opt(dx(0, false)),
                },
            ]
        }
        // Forward was y = max over groups of channels of x, so now dx (+)= dy at the maxima.
        Op::MaxoutChannels { pieces } => match to_opt(dx(0, false)) {
            Some((d, write)) => {
                vec![Step::MaxoutBackward { pieces: *pieces, z: c.inputs[0], y: c.value, dy, dz: d, write }]
            }
            None => Vec::new(),
        },
        // Aliases have no steps of their own; the loss's gradient is made by its step.
        Op::Input { .. } | Op::Flatten | Op::Loss { .. } => Vec::new(),
        Op::Rnn { .. } | Op::Bidirectional { .. } => Vec::new(),
    }
}

/// Whether the plan builder can run this op yet.
pub fn supported(op: &Op) -> bool {
    matches!(
        op,
        Op::Input { .. }
            | Op::Dense { .. }
            | Op::FusedDense { .. }
            | Op::Activation { .. }
            | Op::Dropout { .. }
            | Op::Softmax
            | Op::Flatten
            | Op::Add
            | Op::Concat
            | Op::Loss { .. }
            | Op::Conv { .. }
            | Op::FusedConv { .. }
            | Op::Local { .. }
            | Op::Pool { .. }
            | Op::Maxout { .. }
            | Op::MaxoutChannels { .. }
    )
}
