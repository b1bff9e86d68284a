//! The only place numerics live, one module per family, and the step table: which function
//! runs each step kind. Each kernel works on plain slices of the arena; the interpreter and
//! generated code call the same functions with the same arguments.
//!
//! A step's function is `crate::ops::…` for the families whose glue lives there, or a
//! function of the kernel's own module (a new op keeps its kernel and its step functions in
//! one file, registered here by a `mod` line and its table lines).

pub mod attention;
pub mod conv;
pub mod dense;
pub mod depthwise;
pub mod elementwise;
pub mod embedding;
pub mod gated;
pub mod gemm;
pub mod global_pool;
pub mod implicit;
pub mod layer_norm;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod positions;
pub mod rnn;
pub mod softplus;
mod transpose;

use crate::plan::{ABuf, Act, Geometry, PBuf, PoolOp, Write};

/// Runs `f` compiled once more for the widest instruction set `pulp` finds (AVX2, AVX-512),
/// for loops over values that the compiler vectorizes when it may: each value's arithmetic is
/// the same whatever the width, so the results are the same bits either way.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    struct Run<F>(F);
    impl<R, F: FnOnce() -> R> pulp::WithSimd for Run<F> {
        type Output = R;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) -> R {
            (self.0)()
        }
    }
    pulp::Arch::new().dispatch(Run(f))
}

/// Work over a block of `B` consecutive channels from `c0`, its per-channel values in
/// registers (`B` a constant).
pub(crate) trait Block {
    fn block<const B: usize>(&mut self, c0: usize);
}

/// Calls `f.block::<B>(c0)` over every channel, 32 at a time, then blocks of 16, 8, 4, 2 and
/// 1 for the rest: loops over a constant number of channels, whose per-channel values (sums,
/// scales, a pooling window's maxima) the compiler keeps in registers. What each channel
/// computes does not depend on the block it falls in.
#[inline(always)]
pub(crate) fn by_blocks(channels: usize, f: &mut impl Block) {
    let mut c0 = 0;
    while channels - c0 >= 32 {
        f.block::<32>(c0);
        c0 += 32;
    }
    by_blocks_from(channels, c0, f)
}

#[inline(always)]
fn by_blocks_from(channels: usize, mut c0: usize, f: &mut impl Block) {
    while channels - c0 >= 16 {
        f.block::<16>(c0);
        c0 += 16;
    }
    if channels - c0 >= 8 {
        f.block::<8>(c0);
        c0 += 8;
    }
    if channels - c0 >= 4 {
        f.block::<4>(c0);
        c0 += 4;
    }
    if channels - c0 >= 2 {
        f.block::<2>(c0);
        c0 += 2;
    }
    if channels - c0 >= 1 {
        f.block::<1>(c0);
    }
}

/// `B` values of `v` from `at`, as an array (the slice is a whole position's channels).
#[inline(always)]
pub(crate) fn block_at<T: Copy + Default, const B: usize>(v: &[T], at: usize) -> [T; B] {
    let mut out = [T::default(); B];
    out.copy_from_slice(&v[at..at + B]);
    out
}

crate::step::steps! {
    /// `y = x · Wᵀ + b`, W `[out, in]` as PyTorch lays it out.
    Dense { x: ABuf, w: PBuf, b: PBuf, y: ABuf } => ops::dense;
    /// `y = f(x · Wᵀ + b)`: a dense layer fused with its activation.
    DenseAct { f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf } => ops::dense_act;
    /// `y = f(bn(x · Wᵀ + b))` (inference): a dense layer with the batch norm after it
    /// applied to its rows as they are written, with the running averages.
    DenseFolded { f: Act, x: ABuf, w: PBuf, b: PBuf, gamma: PBuf, beta: PBuf, mean: PBuf, var: PBuf, eps: f64, y: ABuf } => ops::dense_folded;
    /// `y = f(x)`.
    Activation { f: Act, x: ABuf, y: ABuf } => ops::activation;
    /// `y = f(y)`, overwriting its input.
    ActivationInPlace { f: Act, y: ABuf } => ops::activation_in_place;
    /// `y = f(x)` and `slope = f'(x)` for the backward pass, while `x` is at hand: for the
    /// functions whose derivative is read off their input (GELU), in training.
    ActivationSlope { f: Act, x: ABuf, y: ABuf, slope: ABuf } => ops::activation_slope;
    /// `slope = f'(y)`, then `y = f(y)`, overwriting its input.
    ActivationSlopeInPlace { f: Act, y: ABuf, slope: ABuf } => ops::activation_slope_in_place;
    /// Inverted dropout: draws `mask` (1/keep or 0) and writes `y = x · mask`.
    Dropout { keep: f64, x: ABuf, mask: ABuf, y: ABuf } => ops::dropout;
    /// Dropout overwriting its input: `y = y · mask`.
    DropoutInPlace { keep: f64, mask: ABuf, y: ABuf } => ops::dropout_in_place;
    /// Softmax over each row.
    Softmax { x: ABuf, y: ABuf } => ops::softmax;
    /// `y = f(conv(x) + b)` (`f` identity when not fused), by im2col into `ws`.
    Conv { g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf } => ops::conv;
    /// `y = f(conv'(x) + b')`: a convolution with the batch norm after it folded into its
    /// weights (inference): `W' = W·s`, `b' = (b − μ)·s + β`, `s = γ/√(σ² + ε)`, computed
    /// into the tail of `ws`.
    ConvFolded { g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, gamma: PBuf, beta: PBuf, mean: PBuf, var: PBuf, eps: f64, y: ABuf, ws: ABuf } => ops::conv_folded;
    /// Locally-connected `y = f(local(x) + b)`, by im2col into `ws`.
    Local { g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf } => ops::local;
    /// A pooling window over each channel.
    Pool { op: PoolOp, g: Geometry, x: ABuf, y: ABuf } => ops::pool;
    /// `y = max over groups of `pieces` consecutive values of z`.
    Maxout { pieces: usize, z: ABuf, y: ABuf } => ops::maxout;
    /// `y = Σ xs`.
    Add { xs: Vec<ABuf>, y: ABuf } => ops::add;
    /// Rows of `y` are the rows of `xs` side by side.
    Concat { xs: Vec<ABuf>, y: ABuf } => ops::concat;

    /// Mean softmax cross-entropy of `logits` against class indices in `target` (one per
    /// row), and its gradient `(softmax − onehot)/rows` in `dlogits`.
    SoftmaxCrossEntropy { logits: ABuf, target: ABuf, dlogits: ABuf, smoothing: f64 } => ops::softmax_cross_entropy;
    /// Mean binary cross-entropy of `sigmoid(logits)` against targets in [0, 1], from the
    /// logits (stable), with its gradient `(sigmoid − t)/(rows·cols)`.
    SigmoidBinaryCrossEntropy { logits: ABuf, target: ABuf, dlogits: ABuf } => ops::sigmoid_binary_cross_entropy;
    /// Mean over rows of `½‖y − t‖²`, with gradient `(y − t)/rows`.
    MeanSquaredError { y: ABuf, target: ABuf, dy: ABuf } => ops::mean_squared_error;
    /// Unfused: mean `−log p[label]` of probabilities, with gradient `−1/(rows·p[label])` at
    /// the label and 0 elsewhere.
    CrossEntropy { probs: ABuf, target: ABuf, dprobs: ABuf, smoothing: f64 } => ops::cross_entropy;
    /// Unfused: mean binary cross-entropy of probabilities in (0, 1).
    BinaryCrossEntropy { probs: ABuf, target: ABuf, dprobs: ABuf } => ops::binary_cross_entropy;

    /// Forward was `y = x·Wᵀ + b`, so now `dW = dyᵀ·x`, `db = Σ_rows dy`, `dx (+)= dy·W`.
    DenseBackward { x: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)> } => ops::dense_backward;
    /// Forward was `y = f(z)`, `z = x·Wᵀ + b`: `dy` is overwritten with `dz = dy · f'(z)`, then
    /// `dW = dzᵀ·x`, `db = Σ dz`, `dx (+)= dz·W`.
    DenseActBackward { f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)> } => ops::dense_act_backward;
    /// Forward was `y = f(x)`, so now `dx (+)= dy · f'(x)`; `f'` is computed from `y` where
    /// that is cheaper (sigmoid, tanh).
    ActivationBackward { f: Act, x: ABuf, y: ABuf, dy: ABuf, dx: ABuf, write: Write } => ops::activation_backward;
    /// Forward was `y = f(x)`; `d` holds dy and is overwritten with `dx = dy · f'(x)`, with
    /// `f'` computed from `y` (the input may have been overwritten in place).
    ActivationBackwardInPlace { f: Act, y: ABuf, d: ABuf } => ops::activation_backward_in_place;
    /// Forward kept `slope = f'(x)`, so now `dx (+)= dy · slope`.
    SlopeBackward { slope: ABuf, dy: ABuf, dx: ABuf, write: Write } => ops::dropout_backward;
    /// Forward kept `slope = f'(x)`; `d` holds dy and is overwritten with `dy · slope`.
    SlopeBackwardInPlace { slope: ABuf, d: ABuf } => ops::dropout_backward_in_place;
    /// Forward was `y = x · mask`, so now `dx (+)= dy · mask`.
    DropoutBackward { mask: ABuf, dy: ABuf, dx: ABuf, write: Write } => ops::dropout_backward;
    /// Dropout's backward overwriting `d` (dy) with `dx = dy · mask`.
    DropoutBackwardInPlace { mask: ABuf, d: ABuf } => ops::dropout_backward_in_place;
    /// Forward was `y = softmax(x)` row-wise, so now `dx (+)= y · (dy − Σ dy·y)`.
    SoftmaxBackward { y: ABuf, dy: ABuf, dx: ABuf, write: Write } => ops::softmax_backward;
    /// Forward was `y = f(conv(x) + b)`: `dy` becomes `dz = dy·f'(y)` in place, then `dW`,
    /// `db`, and `dx (+)= col2im(dz·W)`.
    ConvBackward { g: Geometry, f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf } => ops::conv_backward;
    /// Forward was `y = f(local(x) + b)`: as [`Step::ConvBackward`] with a filter per position.
    LocalBackward { g: Geometry, f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf } => ops::local_backward;
    /// Forward was `y = pool(x)`, so now each window's `x` gets its share of `dy`.
    PoolBackward { op: PoolOp, g: Geometry, x: ABuf, y: ABuf, dy: ABuf, dx: ABuf, write: Write } => ops::pool_backward;
    /// Forward was the maxout reduction, so now `dz = dy` at each group's maximum.
    MaxoutBackward { pieces: usize, z: ABuf, y: ABuf, dy: ABuf, dz: ABuf, write: Write } => ops::maxout_backward;
    /// The Elman recurrence over sequences of up to `steps` steps: every state into `hs`
    /// (`steps × hidden` per row, zero past each sequence's length), with `ws` a `max_batch ×
    /// hidden` workspace; from the states `h0` (`hidden` per row) carried from the previous
    /// window of a stream, or from zero.
    Rnn { f: Act, steps: usize, reverse: bool, x: ABuf, wih: PBuf, whh: PBuf, bih: PBuf, bhh: PBuf, hs: ABuf, ws: ABuf, h0: Option<ABuf> } => kernels::rnn::step;
    /// Each sequence's last state (at its own length): the output of `output = last`, or
    /// the state the next window of a stream starts from (truncated BPTT, run after the
    /// backward pass, which reads the previous one).
    RnnLast { steps: usize, hs: ABuf, y: ABuf } => kernels::rnn::last_step;
    /// Forward took the last state: `dhs` is `dy` at the last step, 0 before.
    RnnLastBackward { steps: usize, dy: ABuf, dhs: ABuf } => kernels::rnn::last_backward_step;
    /// Backpropagation through time: `dhs` becomes `dz`; the four parameter gradients; `dx`.
    /// With carried states `h0`, `dW_hh` gets their term too (the gradient stops there).
    RnnBackward { f: Act, steps: usize, reverse: bool, x: ABuf, wih: PBuf, whh: PBuf, hs: ABuf, dhs: ABuf, ws: ABuf, dwih: PBuf, dwhh: PBuf, dbih: PBuf, dbhh: PBuf, dx: Option<(ABuf, Write)>, h0: Option<ABuf> } => kernels::rnn::backward_step;
    /// A bidirectional layer's output from its two directions' states (`merge`: 0 concat,
    /// 1 add, 2 mul; `last`: PyTorch's `h_n`, else every step).
    BiMerge { merge: usize, steps: usize, last: bool, hf: ABuf, hr: ABuf, y: ABuf } => kernels::rnn::merge_step;
    /// Forward merged the directions: each direction's states' gradient.
    BiMergeBackward { merge: usize, steps: usize, last: bool, hf: ABuf, hr: ABuf, dy: ABuf, dhf: ABuf, dhr: ABuf } => kernels::rnn::merge_backward_step;
    /// The steps after this one work at every step of a sequence of `steps` steps, on
    /// `batch × steps` rows (1: on the batch's rows again).
    PerStep { steps: usize } => ops::per_step;
    /// The steps after this one work at the last step only of a sequence of `steps` steps,
    /// for a batch of one ([`crate::plan::Plan::last_step_only`]): one row, read and written
    /// at that step's place in each buffer, computed as at every step.
    LastStep { steps: usize } => ops::last_step;
    /// `y = ln(1 + eˣ)`.
    Softplus { x: ABuf, y: ABuf } => kernels::softplus::step;
    /// Forward was `y = ln(1 + eˣ)`, so now `dx (+)= dy · σ(x)`.
    SoftplusBackward { x: ABuf, dy: ABuf, dx: ABuf, write: Write } => kernels::softplus::backward_step;
    /// Forward was `y = x` (a sum, or one part of a concatenation), so now
    /// `dx (+)= dy[:, x_col .. x_col + x.cols]`.
    Copy { x: ABuf, x_col: usize, y: ABuf, write: Write } => ops::copy;
    /// `globalavgpool` / `globalmaxpool`: each channel over every position.
    GlobalPool { max: bool, positions: usize, x: ABuf, y: ABuf } => kernels::global_pool::step;
    /// Their gradients.
    GlobalPoolBackward { max: bool, positions: usize, x: ABuf, y: ABuf, dy: ABuf, dx: ABuf, write: Write } => kernels::global_pool::backward_step;
    /// Batch normalization in training: the batch's statistics (summed over the workers);
    /// with `relu`, a ReLU after it fused (applied as each value is written).
    BatchNorm { x: ABuf, y: ABuf, gamma: PBuf, beta: PBuf, mean: PBuf, var: PBuf, stats: ABuf, eps: f64, relu: bool } => kernels::norm::train_step;
    /// Batch normalization outside training: the running averages (and a fused ReLU).
    BatchNormInfer { x: ABuf, y: ABuf, gamma: PBuf, beta: PBuf, mean: PBuf, var: PBuf, eps: f64, relu: bool } => kernels::norm::infer_step;
    /// Batch normalization in training (with its ReLU where `relu`) fused with the max
    /// pooling after it (windows `g.f × g.f`, stride `g.f`, tiling the map): only each
    /// window's maximum is written to `y`.
    BatchNormPool { x: ABuf, y: ABuf, g: Geometry, gamma: PBuf, beta: PBuf, mean: PBuf, var: PBuf, stats: ABuf, eps: f64, relu: bool } => kernels::norm::train_pool_step;
    /// The LSTM over sequences of up to `steps` steps (PyTorch's `nn.LSTM` layer, one
    /// direction): every hidden state into `hs`, gates and cell states kept for the backward
    /// step; `h0`, `c0` carried in from the previous window.
    Lstm { steps: usize, reverse: bool, x: ABuf, wih: PBuf, whh: PBuf, bih: PBuf, bhh: PBuf, gates: ABuf, cs: ABuf, hs: ABuf, h0: Option<ABuf>, c0: Option<ABuf> } => kernels::gated::lstm_step;
    /// Backpropagation through time of [`Step::Lstm`]: the parameters' gradients and `dx`.
    LstmBackward { steps: usize, reverse: bool, x: ABuf, wih: PBuf, whh: PBuf, gates: ABuf, cs: ABuf, hs: ABuf, dhs: ABuf, ws: ABuf, dwih: PBuf, dwhh: PBuf, dbih: PBuf, dbhh: PBuf, dx: Option<(ABuf, Write)>, h0: Option<ABuf>, c0: Option<ABuf> } => kernels::gated::lstm_backward_step;
    /// The GRU over sequences of up to `steps` steps (PyTorch's `nn.GRU` layer, one
    /// direction): every hidden state into `hs`, the gates kept for the backward step.
    Gru { steps: usize, reverse: bool, x: ABuf, wih: PBuf, whh: PBuf, bih: PBuf, bhh: PBuf, gates: ABuf, hs: ABuf, ws: ABuf, h0: Option<ABuf> } => kernels::gated::gru_step;
    /// Backpropagation through time of [`Step::Gru`].
    GruBackward { steps: usize, reverse: bool, x: ABuf, wih: PBuf, whh: PBuf, gates: ABuf, hs: ABuf, dhs: ABuf, ws: ABuf, dwih: PBuf, dwhh: PBuf, dbih: PBuf, dbhh: PBuf, dx: Option<(ABuf, Write)>, h0: Option<ABuf> } => kernels::gated::gru_backward_step;
    /// `y[r] = w[ids[r]]` for each token id of each row (`embedding`): a table of `vocab` rows.
    Embedding { ids: ABuf, w: PBuf, y: ABuf, vocab: usize } => kernels::embedding::step;
    /// Forward looked rows up, so now `dw` is zero but for the rows used, which sum their `dy`.
    EmbeddingBackward { ids: ABuf, dy: ABuf, dw: PBuf, vocab: usize } => kernels::embedding::backward_step;
    /// `layernorm`: each vector of the last dimension normalized by its own statistics, then
    /// `γ·x̂ + β`; while training, each vector's `[μ, 1/σ]` kept in `stats`.
    LayerNorm { x: ABuf, y: ABuf, gamma: PBuf, beta: PBuf, stats: Option<ABuf>, eps: f64 } => kernels::layer_norm::step;
    /// `rmsnorm`: each vector of the last dimension divided by its root mean square, then `γ·x̂`.
    RmsNorm { x: ABuf, y: ABuf, gamma: PBuf, stats: Option<ABuf>, eps: f64 } => kernels::layer_norm::rms_step;
    /// Its gradients: `dγ` and `dx`.
    RmsNormBackward { x: ABuf, dy: ABuf, gamma: PBuf, dgamma: PBuf, stats: ABuf, dx: Option<(ABuf, Write)> } => kernels::layer_norm::rms_backward_step;
    /// Its gradients: `dγ`, `dβ` over every vector, and `dx`.
    LayerNormBackward { x: ABuf, dy: ABuf, gamma: PBuf, dgamma: PBuf, dbeta: PBuf, stats: ABuf, dx: Option<(ABuf, Write)> } => kernels::layer_norm::backward_step;
    /// `attention(heads, causal)`: `qkv = x·W_inᵀ + b_in`, each head's scaled dot-product
    /// attention over each example's own steps into `o` (one head's scores at a time, in `ws`;
    /// while training each query's log-sum-exp into `lse`), `y = o·W_outᵀ + b_out`.
    Attention { heads: usize, causal: bool, steps: usize, x: ABuf, w_in: PBuf, b_in: PBuf, w_out: PBuf, b_out: PBuf, qkv: ABuf, o: ABuf, lse: Option<ABuf>, ws: ABuf, y: ABuf } => kernels::attention::step;
    /// Its gradients: the projections' and, through the scores recomputed from `lse`, `dx`.
    AttentionBackward { heads: usize, causal: bool, steps: usize, x: ABuf, w_in: PBuf, w_out: PBuf, qkv: ABuf, o: ABuf, lse: ABuf, ws: ABuf, dy: ABuf, d_o: ABuf, dqkv: ABuf, dw_in: PBuf, db_in: PBuf, dw_out: PBuf, db_out: PBuf, dx: Option<(ABuf, Write)> } => kernels::attention::backward_step;
    /// `positions(n)`: `y = x + w[step]` at every step (`w` PyTorch's `nn.Embedding(n, d)` table).
    Positions { x: ABuf, w: PBuf, y: ABuf } => kernels::positions::step;
    /// `positions(n, sinusoidal = true)`: `y = x + PE[step]`, the encoding computed, not stored.
    SinusoidalPositions { steps: usize, x: ABuf, y: ABuf } => kernels::positions::sinusoidal_step;
    /// `positions(n)`'s table gradient: each step's `dy` summed over the rows that reach it.
    PositionsBackward { steps: usize, dy: ABuf, dw: PBuf } => kernels::positions::backward_step;
    /// Batch normalization's gradients; `relu`: a ReLU is fused, its derivative (`dy` where
    /// the normalized value is positive, 0 elsewhere) recomputed from `x` on the fly. With
    /// `means` (and no `dx`), the two means `dx` is made from are kept in `stats` instead,
    /// for the convolution before it to make `dx` example by example ([`Step::ConvBnBackward`]).
    BatchNormBackward { x: ABuf, dy: ABuf, gamma: PBuf, beta: PBuf, dgamma: PBuf, dbeta: PBuf, stats: ABuf, dx: Option<(ABuf, Write)>, relu: bool, means: bool } => kernels::norm::backward_step;
    /// [`Step::BatchNormBackward`] of [`Step::BatchNormPool`], from the pooled map's `dy`.
    BatchNormPoolBackward { x: ABuf, dy: ABuf, g: Geometry, gamma: PBuf, beta: PBuf, dgamma: PBuf, dbeta: PBuf, stats: ABuf, dx: Option<(ABuf, Write)>, relu: bool, means: bool } => kernels::norm::pool_backward_step;
    /// [`Step::ConvBackward`] (no activation) of a convolution whose output only a batch norm
    /// reads, from the batch norm's output gradient `dy` (pooled `pool × pool` where it is
    /// fused with a max pooling: [`Step::BatchNormPoolBackward`]): each example's `dz`, the
    /// batch norm's input gradient, is made from the means its backward step kept in `stats`
    /// just before the convolution's passes read it — the whole batch's is never written.
    ConvBnBackward { g: Geometry, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf, gamma: PBuf, beta: PBuf, stats: ABuf, relu: bool, pool: usize } => kernels::norm::conv_backward_step;
    /// Training: a convolution of short patches ([`crate::kernels::norm::recomputed`], no activation)
    /// whose output only a batch norm reads (with its ReLU where `relu`, and the max pooling
    /// after it where `pool > 0`), fused: the convolution computed again a few examples at a time
    /// for the batch's statistics and then for the normalized (pooled) output `y`, never
    /// written whole. With the pooling, `peaks` (laid out as `y`) keeps each window's
    /// convolution value at the tap that takes its gradient.
    ConvBatchNorm { g: Geometry, x: ABuf, w: PBuf, b: PBuf, y: ABuf, gamma: PBuf, beta: PBuf, mean: PBuf, var: PBuf, stats: ABuf, eps: f64, relu: bool, pool: usize, peaks: Option<ABuf> } => kernels::norm::conv_train_step;
    /// Its backward pass from the batch norm's output gradient `dy`: the batch norm's sums
    /// (from `peaks` where the forward step kept them, else from the convolution computed
    /// again) and [`Step::ConvBnBackward`], the convolution computed again for it.
    ConvBatchNormBackward { g: Geometry, x: ABuf, w: PBuf, b: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf, gamma: PBuf, beta: PBuf, dgamma: PBuf, dbeta: PBuf, stats: ABuf, relu: bool, pool: usize, peaks: Option<ABuf> } => kernels::norm::conv_backward_recomputed_step;
}
