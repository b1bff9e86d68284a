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
    /// The arena.
    Arena,
    /// Model input `i`.
    Input(usize),
    /// The training target.
    Target,
}

pub use crate::kernels::Step;
pub use crate::step::Lit;

/// Batch buffer: `rows × cols` elements, row-major, at `offset` in its space (`rows` is the
/// batch size of the run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ABuf {
    /// Where its first row starts.
    pub offset: usize,
    /// Values per row.
    pub cols: usize,
    /// Which memory it is in.
    pub space: Space,
}

impl ABuf {
    /// No buffer.
    pub const NONE: ABuf = ABuf { offset: 0, cols: 0, space: Space::Arena };

    /// A buffer of the arena.
    pub fn arena(offset: usize, cols: usize) -> ABuf {
        ABuf { offset, cols, space: Space::Arena }
    }

    /// The elements of its first `rows` rows.
    pub fn range(&self, rows: usize) -> std::ops::Range<usize> {
        self.offset..self.offset + rows * self.cols
    }
}

/// A parameter tensor's place in the parameter store (and of its gradient in the gradient
/// store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PBuf {
    /// Where it starts in the parameter store.
    pub offset: usize,
    /// Its number of values.
    pub len: usize,
}

impl PBuf {
    /// Its elements in the parameter store.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The geometry of a convolution, locally-connected layer or pooling window over
/// channels-last volumes: input `h × w × d`, `k` filters (the depth for pooling) of size
/// `f × f`, stride `s`, padding `p`, output `oh × ow`; a convolution's taps `dil` apart
/// (dilation) and its channels in `groups` groups (1 and 1 for every other window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input depth (channels).
    pub d: usize,
    /// Filters (the depth, for pooling).
    pub k: usize,
    /// Window height and width.
    pub f: usize,
    /// Stride.
    pub s: usize,
    /// Zero padding on every side.
    pub p: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// The distance between a filter's taps (1: adjacent).
    pub dil: usize,
    /// Channel groups: filter `i` of `k` sees channels `(i / (k/groups))·d/groups ..` of `d`.
    pub groups: usize,
}

impl Geometry {
    /// Input channels each filter sees.
    pub fn dg(&self) -> usize {
        self.d / self.groups.max(1)
    }
    /// Filters per group.
    pub fn kg(&self) -> usize {
        self.k / self.groups.max(1)
    }
    /// The window's extent over the input: `dil·(f − 1) + 1`.
    pub fn span(&self) -> usize {
        self.dil * (self.f.max(1) - 1) + 1
    }
    /// Dilation 1, one group: the plain window every fast path takes.
    pub fn plain(&self) -> bool {
        self.dil == 1 && self.groups == 1
    }
    /// The input position of tap `t` (`0..f`) of the window at output row or column `o`,
    /// when inside an input extent of `n` (taps `dil` apart, `p` of padding before).
    #[inline(always)]
    pub fn tap(&self, o: usize, t: usize, n: usize) -> Option<usize> {
        let i = (o * self.s + t * self.dil) as isize - self.p as isize;
        (i >= 0 && (i as usize) < n).then_some(i as usize)
    }
    /// The taps of window `o` (an output row or column) inside an input extent `n`: `f`, or
    /// fewer for the last window of a pooling that rounds up (PyTorch's `ceil_mode`).
    pub fn reach(&self, o: usize, n: usize) -> usize {
        self.f.min(n.saturating_sub(o * self.s))
    }
    /// One filter per input channel (`groups = d = k`, `d > 1`): a depthwise convolution.
    pub fn depthwise(&self) -> bool {
        self.groups == self.d && self.k == self.d && self.d > 1
    }
}

/// A pooling window's reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolOp {
    /// The largest value.
    Max,
    /// The mean.
    Avg,
    /// The square root of the sum of squares.
    L2,
}

/// An elementwise activation: the table is [`crate::act`].
pub use crate::act::Act;

/// How a step writes its result: overwrite, or add to what is there (a gradient with
/// several contributions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Overwrite.
    Assign,
    /// Add to what is there.
    Accumulate,
}

/// A cross-entropy's label smoothing `ε` (0: none): the target puts `1 − ε` on the label and
/// `ε/K` on each of the `K` classes. Kept as the number's bits, so that a loss compares and
/// hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Smoothing(u64);

impl Smoothing {
    /// No smoothing.
    pub const NONE: Smoothing = Smoothing(0);
    /// `ε`, in `[0, 1)` (the recipe checks it).
    pub const fn new(eps: f64) -> Smoothing {
        if eps == 0.0 {
            Smoothing::NONE
        } else {
            Smoothing(eps.to_bits())
        }
    }
    /// `ε`.
    pub fn value(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Fused with the model's final softmax; with label smoothing.
    CrossEntropy(Smoothing),
    /// Fused with the model's final sigmoid.
    BinaryCrossEntropy,
    /// Half the mean squared error.
    MeanSquaredError,
}

impl Loss {
    /// Cross-entropy without label smoothing.
    pub const CROSS_ENTROPY: Loss = Loss::CrossEntropy(Smoothing::NONE);

    /// Its label smoothing (0 for every loss but a smoothed cross-entropy).
    pub fn smoothing(self) -> f64 {
        match self {
            Loss::CrossEntropy(s) => s.value(),
            Loss::BinaryCrossEntropy | Loss::MeanSquaredError => 0.0,
        }
    }
}

/// What the training loss compares the model's output with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// One class index per row.
    Class,
    /// `cols` numbers per row.
    Values,
}

/// One parameter tensor of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// `<layer>.weight`, `<layer>.bias`, as PyTorch names them.
    pub name: String,
    /// Its dimensions, in PyTorch's layout.
    pub shape: Vec<usize>,
    /// Where it is in the parameter store.
    pub buf: PBuf,
    /// What the tensor is to training: how it starts, whether it is trained and regularized.
    pub role: Role,
}

impl Param {
    /// Whether the optimizer updates it (everything but [`Role::State`]).
    pub fn trained(&self) -> bool {
        self.role.trained()
    }
    /// Whether regularization (L1, L2), max-norm and the update-ratio report apply: weights only.
    pub fn regularized(&self) -> bool {
        self.role.regularized()
    }
}

/// What a parameter tensor is to training, declared by the op that owns it: the one answer
/// to how it is initialized, whether the optimizer updates it and whether regularization
/// applies. Nothing guesses a role from a tensor's name or rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// A weight: initialized by the recipe's `init` from its fan-in, regularized (L1, L2,
    /// max-norm on each unit's `fan_in` incoming weights), trained. The tensor holds
    /// `len / fan_in` units, each a contiguous run of `fan_in` values.
    Weight {
        /// Inputs per unit: what each output reads (`d·f²` for a convolution's or a
        /// locally-connected layer's filter, whatever the positions).
        fan_in: usize,
        /// Outputs each input feeds.
        fan_out: usize,
    },
    /// An additive bias: starts at zero, trained, never regularized.
    Bias,
    /// An additive bias, trained, never regularized, that starts at `init` on the `len` values
    /// from `from` and at zero elsewhere: an LSTM's `bias_ih` with its forget gate's block
    /// set (`forget_bias`).
    GateBias {
        /// The first value of the block.
        from: usize,
        /// Its length.
        len: usize,
        /// Where it starts.
        init: f64,
    },
    /// A multiplicative gain (a normalization's scale): starts at one, trained, never
    /// regularized.
    Gain,
    /// State a layer keeps for itself (running statistics): starts at `init`, never trained
    /// or regularized; saved in checkpoints with the weights. After each training step it
    /// moves toward the batch's value, which the layer's forward step leaves in the state's
    /// gradient slot: `s ← (1 − momentum)·s + momentum·b` (PyTorch's running averages). The
    /// slot is averaged over the workers of a data-parallel step like a gradient, so every
    /// worker and process keeps the same state.
    State {
        /// Every value's starting value.
        init: f64,
        /// How far each step moves it toward the batch's value (0: never).
        momentum: f64,
    },
    /// A table of token embeddings, `[vocab, dim]` (PyTorch's `nn.Embedding.weight`): starts
    /// as PyTorch's, each value drawn from N(0, 1) whatever the recipe's `init` (a table has
    /// no fan-in); trained, and regularized as a weight whose units are its rows of `dim`
    /// values (max-norm caps each token's vector, as `nn.Embedding(max_norm = …)`).
    Embedding {
        /// Values per token.
        dim: usize,
    },
    /// A count a layer keeps of the batches that updated its state (PyTorch's
    /// `num_batches_tracked`, one value): starts at 0, grows by the number of batches in each
    /// update; never trained or regularized, saved with the weights.
    Count,
}

impl Role {
    /// Whether the optimizer updates it.
    pub fn trained(self) -> bool {
        !matches!(self, Role::State { .. } | Role::Count)
    }
    /// Whether regularization, max-norm and update ratios apply (weights only).
    pub fn regularized(self) -> bool {
        matches!(self, Role::Weight { .. } | Role::Embedding { .. })
    }
    /// A weight's inputs per unit.
    pub fn fan_in(self) -> Option<usize> {
        match self {
            Role::Weight { fan_in, .. } => Some(fan_in),
            Role::Embedding { dim } => Some(dim),
            Role::Bias | Role::GateBias { .. } | Role::Gain | Role::State { .. } | Role::Count => None,
        }
    }
    /// The role's name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Role::Weight { .. } => "weight",
            Role::Embedding { .. } => "embedding",
            Role::Bias | Role::GateBias { .. } => "bias",
            Role::Gain => "gain",
            Role::State { .. } => "state",
            Role::Count => "count",
        }
    }
}

/// Where the derivative of a step's function jumps: a gradient check must not score a finite
/// difference whose two runs sit on different sides of one. Declared by the op that made the
/// step.
#[derive(Clone, Debug, PartialEq)]
pub enum Kink {
    /// Which side of each threshold every value of the buffer is on.
    Past(ABuf, Vec<f64>),
    /// The largest of each group of `pieces` consecutive values of the buffer.
    Winner(ABuf, usize),
    /// Which input of each window a max pooling (input, output) passed on.
    Window(Geometry, ABuf, ABuf),
    /// Which position holds the largest value of each channel (the buffer's rows hold
    /// positions × channels, channels last): a global max pooling.
    Across(ABuf, usize),
}

impl Kink {
    /// Where `f` jumps, seen from its input `b` or, when only the output is kept (an
    /// activation fused into a product, in place, or a recurrence), from its output: a
    /// monotone function's output is past f(k) exactly where its input is past k. `None`
    /// for a smooth function.
    pub fn of(f: Act, b: ABuf, output: bool) -> Option<Kink> {
        let kinks = f.kinks();
        (!kinks.is_empty())
            .then(|| Kink::Past(b, if output { kinks.iter().map(|&k| f.f(k)).collect() } else { kinks.to_vec() }))
    }

    /// The arena buffers it reads (for the planner's relocation).
    pub fn bufs_mut(&mut self) -> Vec<&mut ABuf> {
        match self {
            Kink::Past(b, _) | Kink::Winner(b, _) | Kink::Across(b, _) => vec![b],
            Kink::Window(_, x, y) => vec![x, y],
        }
    }
}

/// How the threads of a training step may share a step, declared by the op that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// Its product splits by outputs (`kernels::dense`); this many activation values per row
    /// cross between the threads.
    Products(usize),
    /// Only the batch splits it (its kernel walks whole examples: convolutions, recurrences).
    Batch,
    /// Cheap either way (elementwise, losses, the update).
    Either,
}

/// What the op that made a step says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepFacts {
    /// How threads may share it.
    pub share: Share,
    /// Where its function's derivative jumps, if anywhere.
    pub kink: Option<Kink>,
    /// The length of the sum over the whole batch the step meets the other workers of a
    /// shared batch for (`Cx.peers`), or 0: it works row by row.
    pub meeting: usize,
}

impl StepFacts {
    /// A step that is smooth, cheap either way, and works row by row.
    pub const SMOOTH: StepFacts = StepFacts { share: Share::Either, kink: None, meeting: 0 };
}

/// An execution plan: the steps of a forward (and backward) pass over one planned arena, with the parameter table.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The largest batch the arena holds.
    pub max_batch: usize,
    /// Elements of the arena.
    pub arena_len: usize,
    /// The sum of every buffer's size, as if none were shared (for reports).
    pub naive_len: usize,
    /// The steps, in the order they run.
    pub steps: Vec<Step>,
    /// The model inputs (in `Space::Input(i)`), in declaration order.
    pub inputs: Vec<ABuf>,
    /// For each input, `Some(n)` when it holds token ids in `0..n` (`ids < n`).
    pub input_ids: Vec<Option<usize>>,
    /// The training target (in `Space::Target`; `None` in an inference plan).
    pub target: Option<(ABuf, TargetKind)>,
    /// The model's output (inference plans).
    pub output: ABuf,
    /// The parameter tensors.
    pub params: Vec<Param>,
    /// Elements of the parameter (and gradient) store.
    pub params_len: usize,
    /// For a model that reads a sequence: its steps, and where the steps show.
    pub sequence: Option<Sequence>,
    /// The recurrent states carried from one window of a stream to the next (truncated
    /// backpropagation through time): arena buffers no other buffer shares, which keep their
    /// values between runs. Zero them to start new streams.
    pub carried: Vec<ABuf>,
    /// The model layer each step comes from, by name (parallel to `steps`; empty for the
    /// update and the carried-state steps), for reports.
    pub origins: Vec<String>,
    /// What the op that made each step says about it (parallel to `steps`; a plan built by
    /// hand may leave it empty: every step smooth and cheap either way).
    pub facts: Vec<StepFacts>,
    /// The loss's gradient with respect to each model input, in a plan built to compute it
    /// (a gradient check of the inputs); empty otherwise.
    pub input_grads: Vec<ABuf>,
}

/// How a plan reads sequences: every buffer with a step dimension holds `steps` steps per
/// example; shorter sequences (their lengths travel with the batch) are padded, and the
/// padding changes no output, loss or gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// The steps of the longest sequence the plan accepts.
    pub steps: usize,
    /// Whether the sequences may be shorter (`seq <= n`), rather than all of `steps` steps.
    pub variable: bool,
    /// Whether the output (and the target) has a row per step: the loss and the accuracy
    /// then count the steps inside each sequence.
    pub per_step_output: bool,
}

impl Plan {
    /// The same inference plan, computing the output of a batch of one example only at the
    /// last of the plan's steps (a full sequence), where that saves work: the layers after
    /// the last one whose steps meet (attention, a recurrence, …) work at each step alone
    /// (dense layers, activations, sums, layer norms, the softmax), so at the last step they
    /// read and write only the last row of each of their buffers. What that row holds is the
    /// same bits as in the whole run; the other rows of those layers' outputs are left as they
    /// were. `None` when nothing would be saved: a training plan, a plan that does not end in
    /// layers at every step of a sequence, or one that ends in a layer that is not one of those.
    ///
    /// `nnlangc sample` runs a transformer's window so: a character is drawn from the last
    /// step's prediction only.
    pub fn last_step_only(&self) -> Option<Plan> {
        let seq = self.sequence.filter(|s| s.per_step_output && s.steps > 1)?;
        if self.max_batch != 1 || self.steps.iter().any(|s| matches!(s, Step::Update)) {
            return None;
        }
        let rowwise = |s: &Step| match s {
            Step::Dense { .. }
            | Step::DenseAct { .. }
            | Step::Activation { .. }
            | Step::ActivationInPlace { .. }
            | Step::Add { .. }
            | Step::Softmax { .. }
            | Step::PerStep { .. } => true,
            // At inference (no statistics kept).
            Step::LayerNorm { stats, .. } | Step::RmsNorm { stats, .. } => stats.is_none(),
            _ => false,
        };
        let tail = self.steps.iter().rev().take_while(|s| rowwise(s)).count();
        let start = self.steps.len() - tail;
        // The steps before the tail must leave the rows at the batch's (each layer of the
        // tail then names its own rows: `PerStep` markers around it).
        let prefix = self.steps[..start].iter().fold(false, |every, s| match s {
            Step::PerStep { steps } => *steps > 1,
            _ => every,
        });
        if prefix {
            return None;
        }
        let (mut steps, mut at_every_step, mut saved) = (self.steps.clone(), false, false);
        for s in &mut steps[start..] {
            match *s {
                Step::PerStep { steps } if steps > 1 => {
                    if steps != seq.steps {
                        return None;
                    }
                    // Computed as at every step (the same kernels), on the last step's row.
                    *s = Step::LastStep { steps };
                    at_every_step = true;
                }
                Step::PerStep { .. } => at_every_step = false,
                _ if at_every_step => {
                    for b in s.bufs_mut() {
                        b.offset += (seq.steps - 1) * b.cols;
                    }
                    saved = true;
                }
                // A layer over each example's whole sequence in the tail: leave it be.
                _ => return None,
            }
        }
        saved.then(|| Plan { steps, ..self.clone() })
    }
}
