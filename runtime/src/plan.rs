//! The execution plan: the contract between the compiler and both executors.
//!
//! A plan is plain data. It lists steps in the order they run; every tensor a step touches
//! is an [`ABuf`] (rows of the batch, in the one arena), or a [`PBuf`] (a parameter, or the
//! gradient of one at the same offset). Offsets come from the compiler's liveness analysis,
//! so buffers whose lifetimes do not overlap share memory. A plan is built for a largest
//! batch `max_batch`; it runs any batch of `1..=max_batch` rows.

/// Where a batch buffer lives: in the arena, or where the caller holds a model input or the
/// training target (read only, never copied into the arena).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    Arena,
    Input(usize),
    Target,
}

/// Batch buffer: `rows × cols` elements, row-major, at `offset` in its space (`rows` is the
/// batch size of the run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ABuf {
    pub offset: usize,
    pub cols: usize,
    pub space: Space,
}

impl ABuf {
    pub const NONE: ABuf = ABuf { offset: 0, cols: 0, space: Space::Arena };

    pub fn arena(offset: usize, cols: usize) -> ABuf {
        ABuf { offset, cols, space: Space::Arena }
    }

    pub fn range(&self, rows: usize) -> std::ops::Range<usize> {
        self.offset..self.offset + rows * self.cols
    }
}

/// A parameter tensor's place in the parameter store (and of its gradient in the gradient
/// store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PBuf {
    pub offset: usize,
    pub len: usize,
}

impl PBuf {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The geometry of a convolution, locally-connected layer or pooling window over
/// channels-last volumes: input `h × w × d`, `k` filters (the depth for pooling) of size
/// `f × f`, stride `s`, padding `p`, output `oh × ow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub h: usize,
    pub w: usize,
    pub d: usize,
    pub k: usize,
    pub f: usize,
    pub s: usize,
    pub p: usize,
    pub oh: usize,
    pub ow: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolOp {
    Max,
    Avg,
    L2,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu(f64),
    Identity,
}

/// How a step writes its result: overwrite, or add to what is there (a gradient with
/// several contributions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Assign,
    Accumulate,
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Fused with the model's final softmax.
    CrossEntropy,
    /// Fused with the model's final sigmoid.
    BinaryCrossEntropy,
    MeanSquaredError,
}

/// What the training loss compares the model's output with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// One class index per row.
    Class,
    /// `cols` numbers per row.
    Values,
}

#[derive(Clone, Debug, PartialEq)]
#[rustfmt::skip]
pub enum Step {
    /// `y = x · Wᵀ + b`, W `[out, in]` as PyTorch lays it out.
    Dense { x: ABuf, w: PBuf, b: PBuf, y: ABuf },
    /// `y = f(x · Wᵀ + b)`: a dense layer fused with its activation.
    DenseAct { f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf },
    Activation { f: Act, x: ABuf, y: ABuf },
    /// `y = f(y)`, overwriting its input.
    ActivationInPlace { f: Act, y: ABuf },
    /// Inverted dropout: draws `mask` (1/keep or 0) and writes `y = x · mask`.
    Dropout { keep: f64, x: ABuf, mask: ABuf, y: ABuf },
    /// Dropout overwriting its input: `y = y · mask`.
    DropoutInPlace { keep: f64, mask: ABuf, y: ABuf },
    /// Softmax over each row.
    Softmax { x: ABuf, y: ABuf },
    /// `y = f(conv(x) + b)` (`f` identity when not fused), by im2col into `ws`.
    Conv { g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf },
    /// Locally-connected `y = f(local(x) + b)`, by im2col into `ws`.
    Local { g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf },
    Pool { op: PoolOp, g: Geometry, x: ABuf, y: ABuf },
    /// `y = max over groups of `pieces` consecutive values of z`.
    Maxout { pieces: usize, z: ABuf, y: ABuf },
    /// `y = Σ xs`.
    Add { xs: Vec<ABuf>, y: ABuf },
    /// Rows of `y` are the rows of `xs` side by side.
    Concat { xs: Vec<ABuf>, y: ABuf },

    /// Mean softmax cross-entropy of `logits` against class indices in `target` (one per
    /// row), and its gradient `(softmax − onehot)/rows` in `dlogits`.
    SoftmaxCrossEntropy { logits: ABuf, target: ABuf, dlogits: ABuf },
    /// Mean binary cross-entropy of `sigmoid(logits)` against targets in [0, 1], from the
    /// logits (stable), with its gradient `(sigmoid − t)/(rows·cols)`.
    SigmoidBinaryCrossEntropy { logits: ABuf, target: ABuf, dlogits: ABuf },
    /// Mean over rows of `½‖y − t‖²`, with gradient `(y − t)/rows`.
    MeanSquaredError { y: ABuf, target: ABuf, dy: ABuf },
    /// Unfused: mean `−log p[label]` of probabilities, with gradient `−1/(rows·p[label])` at
    /// the label and 0 elsewhere.
    CrossEntropy { probs: ABuf, target: ABuf, dprobs: ABuf },
    /// Unfused: mean binary cross-entropy of probabilities in (0, 1).
    BinaryCrossEntropy { probs: ABuf, target: ABuf, dprobs: ABuf },

    /// Forward was `y = x·Wᵀ + b`, so now `dW = dyᵀ·x`, `db = Σ_rows dy`, `dx (+)= dy·W`.
    DenseBackward { x: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)> },
    /// Forward was `y = f(z)`, `z = x·Wᵀ + b`: `dy` is overwritten with `dz = dy · f'(z)`, then
    /// `dW = dzᵀ·x`, `db = Σ dz`, `dx (+)= dz·W`.
    DenseActBackward { f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)> },
    /// Forward was `y = f(x)`, so now `dx (+)= dy · f'(x)`; `f'` is computed from `y` where
    /// that is cheaper (sigmoid, tanh).
    ActivationBackward { f: Act, x: ABuf, y: ABuf, dy: ABuf, dx: ABuf, write: Write },
    /// Forward was `y = f(x)`; `d` holds dy and is overwritten with `dx = dy · f'(x)`, with
    /// `f'` computed from `y` (the input may have been overwritten in place).
    ActivationBackwardInPlace { f: Act, y: ABuf, d: ABuf },
    /// Forward was `y = x · mask`, so now `dx (+)= dy · mask`.
    DropoutBackward { mask: ABuf, dy: ABuf, dx: ABuf, write: Write },
    /// Dropout's backward overwriting `d` (dy) with `dx = dy · mask`.
    DropoutBackwardInPlace { mask: ABuf, d: ABuf },
    /// Forward was `y = softmax(x)` row-wise, so now `dx (+)= y · (dy − Σ dy·y)`.
    SoftmaxBackward { y: ABuf, dy: ABuf, dx: ABuf, write: Write },
    /// Forward was `y = f(conv(x) + b)`: `dy` becomes `dz = dy·f'(y)` in place, then `dW`,
    /// `db`, and `dx (+)= col2im(dz·W)`.
    ConvBackward { g: Geometry, f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf },
    LocalBackward { g: Geometry, f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf },
    PoolBackward { op: PoolOp, g: Geometry, x: ABuf, y: ABuf, dy: ABuf, dx: ABuf, write: Write },
    /// Forward was the maxout reduction, so now `dz = dy` at each group's maximum.
    MaxoutBackward { pieces: usize, z: ABuf, y: ABuf, dy: ABuf, dz: ABuf, write: Write },
    /// Forward was `y = x` (a sum, or one part of a concatenation), so now
    /// `dx (+)= dy[:, x_col .. x_col + x.cols]`.
    Copy { x: ABuf, x_col: usize, y: ABuf, write: Write },

    /// The optimizer's update of every parameter from its gradient (with regularization,
    /// max-norm and the weight average), done by the trainer.
    Update,
}

/// One parameter tensor of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// `<layer>.weight`, `<layer>.bias`, as PyTorch names them.
    pub name: String,
    pub shape: Vec<usize>,
    pub buf: PBuf,
    /// Inputs per unit, for initialization (N(0, 1/fan_in) is the notes' xavier).
    pub fan_in: usize,
    /// Biases get zero init and are exempt from regularization and max-norm.
    pub is_bias: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub max_batch: usize,
    /// Elements of the arena.
    pub arena_len: usize,
    /// The sum of every buffer's size, as if none were shared (for reports).
    pub naive_len: usize,
    pub steps: Vec<Step>,
    /// The model inputs (in `Space::Input(i)`), in declaration order.
    pub inputs: Vec<ABuf>,
    /// The training target (in `Space::Target`; `None` in an inference plan).
    pub target: Option<(ABuf, TargetKind)>,
    /// The model's output (inference plans).
    pub output: ABuf,
    pub params: Vec<Param>,
    /// Elements of the parameter (and gradient) store.
    pub params_len: usize,
}

impl Step {
    /// Every activation buffer the step reads or writes (for liveness and relocation).
    pub fn bufs_mut(&mut self) -> Vec<&mut ABuf> {
        match self {
            Step::Dense { x, y, .. }
            | Step::DenseAct { x, y, .. }
            | Step::Activation { x, y, .. }
            | Step::Softmax { x, y } => {
                vec![x, y]
            }
            Step::ActivationInPlace { y, .. } => vec![y],
            Step::Conv { x, y, ws, .. } | Step::Local { x, y, ws, .. } => vec![x, y, ws],
            Step::Pool { x, y, .. } => vec![x, y],
            Step::Maxout { z, y, .. } => vec![z, y],
            Step::ConvBackward { x, y, dy, dx, ws, .. } | Step::LocalBackward { x, y, dy, dx, ws, .. } => {
                let mut v = vec![x, y, dy, ws];
                if let Some((d, _)) = dx {
                    v.push(d);
                }
                v
            }
            Step::PoolBackward { x, y, dy, dx, .. } => vec![x, y, dy, dx],
            Step::MaxoutBackward { z, y, dy, dz, .. } => vec![z, y, dy, dz],
            Step::Dropout { x, mask, y, .. } => vec![x, mask, y],
            Step::DropoutInPlace { mask, y, .. } => vec![mask, y],
            Step::Add { xs, y } | Step::Concat { xs, y } => {
                let mut v: Vec<&mut ABuf> = xs.iter_mut().collect();
                v.push(y);
                v
            }
            Step::SoftmaxCrossEntropy { logits, target, dlogits }
            | Step::SigmoidBinaryCrossEntropy { logits, target, dlogits } => {
                vec![logits, target, dlogits]
            }
            Step::MeanSquaredError { y, target, dy } => vec![y, target, dy],
            Step::CrossEntropy { probs, target, dprobs } | Step::BinaryCrossEntropy { probs, target, dprobs } => {
                vec![probs, target, dprobs]
            }
            Step::DenseBackward { x, dy, dx, .. } => {
                let mut v = vec![x, dy];
                if let Some((d, _)) = dx {
                    v.push(d);
                }
                v
            }
            Step::ActivationBackward { x, y, dy, dx, .. } => vec![x, y, dy, dx],
            Step::ActivationBackwardInPlace { y, d, .. } => vec![y, d],
            Step::DenseActBackward { x, y, dy, dx, .. } => {
                let mut v = vec![x, y, dy];
                if let Some((d, _)) = dx {
                    v.push(d);
                }
                v
            }
            Step::DropoutBackward { mask, dy, dx, .. } => vec![mask, dy, dx],
            Step::DropoutBackwardInPlace { mask, d } => vec![mask, d],
            Step::SoftmaxBackward { y, dy, dx, .. } => vec![y, dy, dx],
            Step::Copy { x, y, .. } => vec![x, y],
            Step::Update => Vec::new(),
        }
    }
}
