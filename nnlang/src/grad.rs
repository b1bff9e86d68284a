//! The forward and backward steps of each op, side by side: one forward rule and one
//! vector-Jacobian rule per op. The backward pass is derived from these at compile time.

use crate::ir::{Activation, Node, Op};
use nnlang_runtime::plan::{ABuf, Act, PBuf, Step, Write};

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

/// The forward step of one op, or `None` for an alias (flatten; dropout outside training)
/// or the loss (built by the planner).
pub fn forward(c: &Ctx) -> Option<Step> {
    let x = c.inputs.first().copied();
    let in_place = c.node.in_place;
    match &c.node.op {
        Op::Input { .. } | Op::Flatten | Op::Loss { .. } => None,
        Op::Dense { .. } => Some(Step::Dense { x: x?, w: c.params[0], b: c.params[1], y: c.value }),
        Op::FusedDense { activation, .. } => {
            Some(Step::DenseAct { f: act(activation), x: x?, w: c.params[0], b: c.params[1], y: c.value })
        }
        Op::Activation { function } if in_place => Some(Step::ActivationInPlace { f: act(function), y: c.value }),
        Op::Activation { function } => Some(Step::Activation { f: act(function), x: x?, y: c.value }),
        Op::Dropout { keep } => c.mask.map(|mask| {
            if in_place {
                Step::DropoutInPlace { keep: *keep, mask, y: c.value }
            } else {
                Step::Dropout { keep: *keep, x: c.inputs[0], mask, y: c.value }
            }
        }),
        Op::Softmax => Some(Step::Softmax { x: x?, y: c.value }),
        Op::Add => Some(Step::Add { xs: c.inputs.clone(), y: c.value }),
        Op::Concat => Some(Step::Concat { xs: c.inputs.clone(), y: c.value }),
        Op::Conv { .. }
        | Op::Local { .. }
        | Op::Pool { .. }
        | Op::Maxout { .. }
        | Op::Rnn { .. }
        | Op::Bidirectional { .. } => None,
    }
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
        // Aliases have no steps of their own; the loss's gradient is made by its step.
        Op::Input { .. } | Op::Flatten | Op::Loss { .. } => Vec::new(),
        Op::Conv { .. }
        | Op::Local { .. }
        | Op::Pool { .. }
        | Op::Maxout { .. }
        | Op::Rnn { .. }
        | Op::Bidirectional { .. } => Vec::new(),
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
    )
}
