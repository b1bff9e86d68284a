//! The execution plan: the contract between the compiler and both executors.
//!
//! A plan is plain data. It lists steps in the order they run; every tensor a step touches
//! is an [`ABuf`] (rows of the batch, in the one arena), or a [`PBuf`] (a parameter, or the
//! gradient of one at the same offset). Offsets come from the compiler's liveness analysis,
//! so buffers whose lifetimes do not overlap share memory. A plan is built for a largest
//! batch `max_batch`; it runs any batch of `1..=max_batch` rows.

/// Activation buffer: `rows × cols` elements at `offset` in the arena (row-major; `rows` is
/// the batch size of the run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ABuf {
    pub offset: usize,
    pub cols: usize,
}

impl ABuf {
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
pub enum Step {
    /// `y = x · Wᵀ + b`, W `[out, in]` as PyTorch lays it out.
    Dense {
        x: ABuf,
        w: PBuf,
        b: PBuf,
        y: ABuf,
    },
    Activation {
        f: Act,
        x: ABuf,
        y: ABuf,
    },
    /// Inverted dropout: draws `mask` (1/keep or 0) and writes `y = x · mask`.
    Dropout {
        keep: f64,
        x: ABuf,
        mask: ABuf,
        y: ABuf,
    },
    /// Softmax over each row (inference only: training fuses it into the loss).
    Softmax {
        x: ABuf,
        y: ABuf,
    },
    /// `y = Σ xs`.
    Add {
        xs: Vec<ABuf>,
        y: ABuf,
    },
    /// Rows of `y` are the rows of `xs` side by side.
    Concat {
        xs: Vec<ABuf>,
        y: ABuf,
    },

    /// Mean softmax cross-entropy of `logits` against class indices in `target` (one per
    /// row), and its gradient `(softmax − onehot)/rows` in `dlogits`.
    SoftmaxCrossEntropy {
        logits: ABuf,
        target: ABuf,
        dlogits: ABuf,
    },
    /// Mean binary cross-entropy of `sigmoid(logits)` against targets in [0, 1], from the
    /// logits (stable), with its gradient `(sigmoid − t)/(rows·cols)`.
    SigmoidBinaryCrossEntropy {
        logits: ABuf,
        target: ABuf,
        dlogits: ABuf,
    },
    /// Mean over rows of `½‖y − t‖²`, with gradient `(y − t)/rows`.
    MeanSquaredError {
        y: ABuf,
        target: ABuf,
        dy: ABuf,
    },

    /// Forward was `y = x·Wᵀ + b`, so now `dW = dyᵀ·x`, `db = Σ_rows dy`, `dx (+)= dy·W`.
    DenseBackward {
        x: ABuf,
        w: PBuf,
        dy: ABuf,
        dw: PBuf,
        db: PBuf,
        dx: Option<(ABuf, Write)>,
    },
    /// Forward was `y = f(x)`, so now `dx (+)= dy · f'(x)`; `f'` is computed from `y` where
    /// that is cheaper (sigmoid, tanh, relu).
    ActivationBackward {
        f: Act,
        x: ABuf,
        y: ABuf,
        dy: ABuf,
        dx: ABuf,
        write: Write,
    },
    /// Forward was `y = x · mask`, so now `dx (+)= dy · mask`.
    DropoutBackward {
        mask: ABuf,
        dy: ABuf,
        dx: ABuf,
        write: Write,
    },
    /// Forward was `y = x`, so now `dx (+)= dy` (sums, and the halves of a concatenation).
    Copy {
        x: ABuf,
        x_col: usize,
        y: ABuf,
        write: Write,
    },

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
    /// Where each model input is written before a run, in declaration order.
    pub inputs: Vec<ABuf>,
    /// Where the training target is written (`None` in an inference plan).
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
            Step::Dense { x, y, .. } | Step::Activation { x, y, .. } | Step::Softmax { x, y } => vec![x, y],
            Step::Dropout { x, mask, y, .. } => vec![x, mask, y],
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
            Step::DenseBackward { x, dy, dx, .. } => {
                let mut v = vec![x, dy];
                if let Some((d, _)) = dx {
                    v.push(d);
                }
                v
            }
            Step::ActivationBackward { x, y, dy, dx, .. } => vec![x, y, dy, dx],
            Step::DropoutBackward { mask, dy, dx, .. } => vec![mask, dy, dx],
            Step::Copy { x, y, .. } => vec![x, y],
            Step::Update => Vec::new(),
        }
    }
}
