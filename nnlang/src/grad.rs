//! The backward pass, derived at compile time: one vector-Jacobian rule per op, each
//! emitting the plan steps that turn the gradient of a node's output into gradients of its
//! inputs and parameters. Forward steps are emitted by [`forward`] beside them, so that each
//! op's two halves are read together.

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

/// The forward step of one op, or `None` when the op is an alias (flatten; dropout outside
/// training) or fused into the loss.
pub fn forward(c: &Ctx) -> Option<Step> {
    let x = c.inputs.first().copied();
    match &c.node.op {
        Op::Input { .. } | Op::Flatten => None,
        Op::Dense { .. } => Some(Step::Dense { x: x?, w: c.params[0], b: c.params[1], y: c.value }),
        Op::Activation { function } => Some(Step::Activation { f: act(function), x: x?, y: c.value }),
        Op::Dropout { keep } => c.mask.map(|mask| Step::Dropout { keep: *keep, x: c.inputs[0], mask, y: c.value }),
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

/// The backward steps of one op given `dy`, the gradient of its output. `dx(i)` gives the
/// gradient buffer of input `i` and whether to assign or accumulate into it (`None` for an
/// input of the model, whose gradient nobody needs).
pub fn backward(c: &Ctx, dy: ABuf, grads: &[PBuf], dx: &mut dyn FnMut(usize) -> Option<(ABuf, Write)>) -> Vec<Step> {
    match &c.node.op {
        // Forward was y = x·Wᵀ + b, so now dW = dyᵀ·x, db = Σ dy, dx (+)= dy·W.
        Op::Dense { .. } => {
            vec![Step::DenseBackward { x: c.inputs[0], w: c.params[0], dy, dw: grads[0], db: grads[1], dx: dx(0) }]
        }
        // Forward was y = f(x), so now dx (+)= dy · f'(x).
        Op::Activation { function } => match dx(0) {
            Some((d, write)) => {
                vec![Step::ActivationBackward { f: act(function), x: c.inputs[0], y: c.value, dy, dx: d, write }]
            }
            None => Vec::new(),
        },
        // Forward was y = x · mask, so now dx (+)= dy · mask.
        Op::Dropout { .. } => match (c.mask, dx(0)) {
            (Some(mask), Some((d, write))) => vec![Step::DropoutBackward { mask, dy, dx: d, write }],
            _ => Vec::new(),
        },
        // Forward was y = Σ xᵢ, so now every dxᵢ (+)= dy.
        Op::Add => (0..c.inputs.len())
            .filter_map(|i| dx(i).map(|(d, write)| Step::Copy { x: d, x_col: 0, y: dy, write }))
            .collect(),
        // Forward put xᵢ in columns [colᵢ, colᵢ + colsᵢ) of y, so now dxᵢ (+)= those columns of dy.
        Op::Concat => {
            let mut col = 0;
            let mut steps = Vec::new();
            for (i, x) in c.inputs.iter().enumerate() {
                if let Some((d, write)) = dx(i) {
                    steps.push(Step::Copy { x: d, x_col: col, y: dy, write });
                }
                col += x.cols;
            }
            steps
        }
        // Aliases and the fused softmax have no steps of their own.
        Op::Input { .. } | Op::Flatten | Op::Softmax => Vec::new(),
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
            | Op::Activation { .. }
            | Op::Dropout { .. }
            | Op::Softmax
            | Op::Flatten
            | Op::Add
            | Op::Concat
    )
}
