//! What a profile of a plan needs from the runtime: each step's time (kept by the interpreter
//! when asked: [`Timings`] in [`crate::interp::Exec`]), the arithmetic each step does and the
//! memory it touches, and the processor's FMA peak, measured, to hold them against.

use crate::plan::{ABuf, Geometry, Lit, Plan, Step};

/// Seconds spent in each step of a plan (parallel to its steps; the update's slot holds the
/// optimizer's time), summed over `runs` runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Seconds per step, summed over the runs.
    pub seconds: Vec<f64>,
    /// The runs timed.
    pub runs: usize,
}

impl Timings {
    /// No time yet for a plan of `steps` steps.
    pub fn new(steps: usize) -> Timings {
        Timings { seconds: vec![0.0; steps], runs: 0 }
    }

    /// Adds the optimizer's time to the last slot (the plan's update is its last step).
    pub fn add_update(&mut self, seconds: f64) {
        if let Some(last) = self.seconds.last_mut() {
            *last += seconds;
        }
    }
}

/// The rows each step of `plan` works on in a batch of `batch` examples: the examples, or
/// after a [`Step::PerStep`], the examples times the sequence's steps.
pub fn rows(plan: &Plan, batch: usize) -> Vec<usize> {
    let mut rows = batch;
    plan.steps
        .iter()
        .map(|s| {
            if let Step::PerStep { steps } = s {
                rows = batch * (*steps).max(1);
            }
            rows
        })
        .collect()
}

/// Whether the step is a loss (it computes the loss and its gradient at the output).
pub fn is_loss(step: &Step) -> bool {
    matches!(
        step,
        Step::SoftmaxCrossEntropy { .. }
            | Step::SigmoidBinaryCrossEntropy { .. }
            | Step::MeanSquaredError { .. }
            | Step::CrossEntropy { .. }
            | Step::BinaryCrossEntropy { .. }
    )
}

/// Where the plan's backward pass starts: its first loss step (or the update), every step
/// from there on computing gradients (the gradients' copies and sums included, whatever
/// their kind); the plan's length for a plan without one (inference).
pub fn backward_from(plan: &Plan) -> usize {
    plan.steps.iter().position(|s| is_loss(s) || matches!(s, Step::Update)).unwrap_or(plan.steps.len())
}

/// The floating-point operations of the step's products (a multiply–add counts two) on
/// `rows` rows; 0 for the steps that only move values (elementwise, pooling, norms, losses),
/// whose measure is the memory they touch ([`bytes`]). Causal attention counts the scores it
/// computes (the lower triangle).
pub fn flops(step: &Step, rows: usize) -> f64 {
    let r = rows as f64;
    let conv = |g: &Geometry| 2.0 * r * (g.oh * g.ow * g.k * g.dg() * g.f * g.f) as f64;
    let twice_if = |dx: bool| if dx { 2.0 } else { 1.0 };
    // A recurrent layer with `gates` products per step: the input's and the state's.
    let recurrent = |gates: usize, steps: usize, x: &ABuf, hs: &ABuf| {
        let t = steps.max(1);
        let (input, hidden) = ((x.cols / t) as f64, (hs.cols / t) as f64);
        let g = gates as f64;
        (2.0 * r * t as f64 * g * input * hidden, 2.0 * r * t as f64 * g * hidden * hidden)
    };
    // Attention: the projections, and the scores with the weighted values.
    let attention = |causal: bool, steps: usize, x: &ABuf| {
        let t = steps.max(1) as f64;
        let w = (x.cols / steps.max(1)) as f64;
        let pairs = if causal { t * (t + 1.0) / 2.0 } else { t * t };
        (2.0 * r * t * 4.0 * w * w, 2.0 * 2.0 * r * pairs * w, 2.0 * r * t * 3.0 * w * w)
    };
    match step {
        Step::Dense { x, y, .. } | Step::DenseAct { x, y, .. } | Step::DenseFolded { x, y, .. } => {
            2.0 * r * (x.cols * y.cols) as f64
        }
        Step::DenseBackward { x, dy, dx, .. } | Step::DenseActBackward { x, dy, dx, .. } => {
            2.0 * r * (x.cols * dy.cols) as f64 * twice_if(dx.is_some())
        }
        // (A convolution computed again for its batch norm counts once: the model's product.)
        Step::Conv { g, .. } | Step::ConvFolded { g, .. } | Step::Local { g, .. } | Step::ConvBatchNorm { g, .. } => {
            conv(g)
        }
        Step::ConvBackward { g, dx, .. }
        | Step::LocalBackward { g, dx, .. }
        | Step::ConvBnBackward { g, dx, .. }
        | Step::ConvBatchNormBackward { g, dx, .. } => conv(g) * twice_if(dx.is_some()),
        Step::Rnn { steps, x, hs, .. } => {
            let (i, h) = recurrent(1, *steps, x, hs);
            i + h
        }
        Step::Lstm { steps, x, hs, .. } => {
            let (i, h) = recurrent(4, *steps, x, hs);
            i + h
        }
        Step::Gru { steps, x, hs, .. } => {
            let (i, h) = recurrent(3, *steps, x, hs);
            i + h
        }
        // The weights' gradients, the state's, and the input's when asked for.
        Step::RnnBackward { steps, x, hs, dx, .. } => {
            let (i, h) = recurrent(1, *steps, x, hs);
            i + 2.0 * h + if dx.is_some() { i } else { 0.0 }
        }
        Step::LstmBackward { steps, x, hs, dx, .. } => {
            let (i, h) = recurrent(4, *steps, x, hs);
            i + 2.0 * h + if dx.is_some() { i } else { 0.0 }
        }
        Step::GruBackward { steps, x, hs, dx, .. } => {
            let (i, h) = recurrent(3, *steps, x, hs);
            i + 2.0 * h + if dx.is_some() { i } else { 0.0 }
        }
        Step::Attention { causal, steps, x, .. } => {
            let (projections, scores, _) = attention(*causal, *steps, x);
            projections + scores
        }
        // The projections' weight and input gradients (twice their forward products, less
        // the input's when not asked for); the scores recomputed, and the four products of
        // their gradients (2.5 times the forward's two).
        Step::AttentionBackward { causal, steps, x, dx, .. } => {
            let (projections, scores, input) = attention(*causal, *steps, x);
            2.0 * projections - if dx.is_some() { 0.0 } else { input } + 2.5 * scores
        }
        _ => 0.0,
    }
}

/// The bytes the step reads and writes (f32 values), each buffer counted once: every arena
/// buffer at `rows` rows (a workspace, and batch norm's statistics, at their size), every
/// parameter tensor (or its gradient) whole. What the step must move at the least, if none
/// of it were in cache.
pub fn bytes(step: &Step, rows: usize) -> f64 {
    let Some((_, lits)) = step.call() else { return 0.0 };
    let whole = |name: &str| {
        name == "ws"
            || (name == "stats"
                && matches!(
                    step,
                    Step::BatchNorm { .. }
                        | Step::BatchNormBackward { .. }
                        | Step::BatchNormPool { .. }
                        | Step::BatchNormPoolBackward { .. }
                        | Step::ConvBnBackward { .. }
                        | Step::ConvBatchNorm { .. }
                        | Step::ConvBatchNormBackward { .. }
                ))
    };
    let abuf = |b: &ABuf, name: &str| if whole(name) { b.cols } else { rows * b.cols };
    let values: usize = step
        .field_names()
        .iter()
        .zip(&lits)
        .map(|(name, lit)| match lit {
            Lit::ABuf(b) => abuf(b, name),
            Lit::PBuf(p) => p.len,
            Lit::ABufs(bs) => bs.iter().map(|b| abuf(b, name)).sum(),
            Lit::Dx(Some((b, _))) | Lit::MaybeABuf(Some(b)) => abuf(b, name),
            _ => 0,
        })
        .sum();
    (values * std::mem::size_of::<f32>()) as f64
}

/// Twelve independent chains of fused multiply–adds on registers, `.0` times over: enough in
/// flight to keep every FMA unit busy, so that their rate is the processor's peak. Returns a
/// sum (so that the work is not optimized away) and the f32 lanes of the instruction set it
/// ran with.
pub struct FmaChains(pub usize);

impl pulp::WithSimd for FmaChains {
    type Output = (f32, usize);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> (f32, usize) {
        let (a, b) = (simd.splat_f32s(0.999_999), simd.splat_f32s(1e-7));
        let mut acc = [simd.splat_f32s(1.0); 12];
        for _ in 0..self.0 {
            for v in acc.iter_mut() {
                *v = simd.mul_add_f32s(*v, a, b);
            }
        }
        (acc.iter().map(|v| simd.reduce_sum_f32s(*v)).sum(), std::mem::size_of::<S::f32s>() / 4)
    }
}

/// GFLOP/s of [`FmaChains`] on this thread as `run` runs it (with the instruction set it
/// chooses), the best of five runs of `iters` iterations; and the lanes it ran with.
pub fn fma_peak_with(iters: usize, run: impl Fn(FmaChains) -> (f32, usize)) -> (f64, usize) {
    let mut best = (0.0f64, 1);
    for _ in 0..5 {
        let t = crate::time::Instant::now();
        let (sum, lanes) = run(FmaChains(iters));
        std::hint::black_box(sum);
        let rate = (iters * 12 * lanes * 2) as f64 / t.elapsed().as_secs_f64().max(1e-9) / 1e9;
        if rate > best.0 {
            best = (rate, lanes);
        }
    }
    best
}

/// The FMA peak of one thread in GFLOP/s at the widest instruction set the kernels use here
/// (what `pulp` dispatches to), measured in about a quarter of a second; and its f32 lanes.
pub fn fma_peak() -> (f64, usize) {
    fma_peak_with(10_000_000, |c| pulp::Arch::new().dispatch(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Act, PBuf, Write};

    #[test]
    fn a_convolution_counts_its_multiply_adds_and_its_gradients_add_one_product_each() {
        let g = Geometry { h: 8, w: 8, d: 4, k: 6, f: 3, s: 1, p: 1, oh: 8, ow: 8, dil: 1, groups: 1 };
        let x = ABuf::arena(0, 8 * 8 * 4);
        let y = ABuf::arena(1000, 8 * 8 * 6);
        let (w, b) = (PBuf { offset: 0, len: 6 * 4 * 9 }, PBuf { offset: 216, len: 6 });
        let ws = ABuf::arena(5000, 100);
        let fwd = Step::Conv { g, f: Act::Relu, x, w, b, y, ws };
        // 8·8 outputs × 6 filters × 4·9 taps, a multiply and an add each, over 3 rows.
        assert_eq!(flops(&fwd, 3), 2.0 * 3.0 * (64 * 6 * 36) as f64);
        let back = |dx| Step::ConvBackward { g, f: Act::Relu, x, y, w, dy: y, dw: w, db: b, dx, ws };
        assert_eq!(flops(&back(None), 3), flops(&fwd, 3));
        assert_eq!(flops(&back(Some((x, Write::Assign))), 3), 2.0 * flops(&fwd, 3));
        // Depthwise: each filter sees one channel.
        let dw = Geometry { k: 4, groups: 4, ..g };
        assert_eq!(flops(&Step::Conv { g: dw, f: Act::Relu, x, w, b, y, ws }, 1), 2.0 * (64 * 4 * 9) as f64);
        // Bytes: x and y at 3 rows, the weights and bias whole, the workspace at its size.
        assert_eq!(bytes(&fwd, 3), 4.0 * (3 * 256 + 3 * 384 + 216 + 6 + 100) as f64);
    }

    #[test]
    fn rows_follow_the_per_step_marks() {
        let plan = Plan {
            max_batch: 4,
            arena_len: 0,
            naive_len: 0,
            steps: vec![
                Step::Activation { f: Act::Relu, x: ABuf::NONE, y: ABuf::NONE },
                Step::PerStep { steps: 5 },
                Step::Activation { f: Act::Relu, x: ABuf::NONE, y: ABuf::NONE },
                Step::PerStep { steps: 1 },
                Step::Update,
            ],
            inputs: vec![],
            input_ids: vec![],
            target: None,
            output: ABuf::NONE,
            params: vec![],
            params_len: 0,
            sequence: None,
            carried: vec![],
            origins: vec![],
            facts: vec![],
            input_grads: vec![],
        };
        assert_eq!(rows(&plan, 4), vec![4, 20, 20, 4, 4]);
        assert_eq!(backward_from(&plan), 4, "the update ends the training step");
        let inference = Plan { steps: plan.steps[..4].to_vec(), ..plan };
        assert_eq!(backward_from(&inference), 4, "no loss, no update: all forward");
    }

    #[test]
    fn the_fma_peak_is_a_positive_rate() {
        let (gflops, lanes) = fma_peak_with(100_000, |c| pulp::Arch::new().dispatch(c));
        assert!(gflops > 0.1 && gflops.is_finite(), "{gflops}");
        assert!([1, 2, 4, 8, 16].contains(&lanes), "{lanes}");
    }
}
