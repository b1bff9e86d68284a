//! The compiled backward pass against centred finite differences, in f64: for every op and
//! every loss, each parameter's gradient agrees with (L(θ + h) − L(θ − h)) / 2h to a relative
//! error below 1e-6.

use nnlang::plan::{build_at, Level, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::interp::Exec;
use nnlang_runtime::plan::{Plan, Step, TargetKind};
use nnlang_runtime::train::regularization;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROWS: usize = 5;

fn plan(src: &str, loss: Loss, level: Level) -> Plan {
    let c = compile(src, &Options::default()).expect("no usage error");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    build_at(&c.models[0], Mode::Training(loss), ROWS, level).expect("plan builds")
}

/// The data loss plus the regularization penalty `λ₂/2‖w‖² + λ₁|w|`.
fn loss_at(plan: &Plan, exec: &mut Exec<f64>, l1: f64, l2: f64) -> f64 {
    exec.reseed(11);
    let data = exec.run(plan, ROWS, None).expect("runs").expect("has a loss");
    data + regularization(&plan.params, &exec.params, l1, l2, None)
}

fn check(src: &str, loss: Loss) {
    check_with(src, loss, 0.0, 0.0);
}

/// Sequences of different lengths in one batch (one length per row; `[seq <= 5, …]`).
const LENGTHS: [usize; ROWS] = [5, 2, 4, 1, 3];

/// [`check`] on a batch of sequences of the lengths [`LENGTHS`], padded to the plan's steps.
fn check_ragged(src: &str, loss: Loss) {
    check_plan_with(src, loss, 0.0, 0.0, Level::None, &LENGTHS);
    check_plan_with(src, loss, 0.0, 0.0, Level::Full, &LENGTHS);
}

/// Checks the unoptimised plan (every op separate, no buffer shared in place) and the
/// optimised one (fused, in place).
fn check_with(src: &str, loss: Loss, l1: f64, l2: f64) {
    check_plan(src, loss, l1, l2, Level::None);
    check_plan(src, loss, l1, l2, Level::Full);
}

/// Checks every parameter of the plan (every element of small tensors, a sample of large).
fn check_plan(src: &str, loss: Loss, l1: f64, l2: f64, level: Level) {
    check_plan_with(src, loss, l1, l2, level, &[]);
}

fn check_plan_with(src: &str, loss: Loss, l1: f64, l2: f64, level: Level, lengths: &[usize]) {
    let plan = plan(src, loss, level);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut exec = Exec::<f64>::new(&plan, 0);
    exec.set_lengths(lengths);
    for p in exec.params.iter_mut() {
        *p = rng.random_range(-0.8..0.8);
    }
    // Normalizations' gains around 1, as they start: a gain near 0 (or negative, with a
    // negative shift) would leave a normalized channel before a ReLU without a gradient.
    for p in plan.params.iter().filter(|p| matches!(p.role, nnlang_runtime::plan::Role::Gain)) {
        for v in &mut exec.params[p.buf.range()] {
            *v = rng.random_range(0.5..1.5);
        }
    }
    for i in 0..plan.inputs.len() {
        let cols = plan.inputs[i].cols;
        // Token ids for an input that holds them (each id used several times in the batch).
        let x: Vec<f64> = match plan.input_ids[i] {
            Some(vocab) => (0..ROWS * cols).map(|_| rng.random_range(0..vocab) as f64).collect(),
            None => (0..ROWS * cols).map(|_| rng.random_range(-1.0..1.0)).collect(),
        };
        exec.set_input(&plan, i, ROWS, &x);
    }
    let (t, kind) = plan.target.expect("training plan");
    let target: Vec<f64> = match kind {
        // Labels spread over the classes, whether the loss is fused with the softmax
        // (optimised plan) or reads its probabilities (unoptimised plan).
        TargetKind::Class => {
            let classes = plan
                .steps
                .iter()
                .find_map(|s| match s {
                    Step::SoftmaxCrossEntropy { logits: b, .. } | Step::CrossEntropy { probs: b, .. } => Some(b.cols),
                    _ => None,
                })
                .expect("a class target has a cross-entropy step");
            let labels: Vec<f64> = (0..ROWS * t.cols).map(|r| ((r * 7 + 3) % classes) as f64).collect();
            let distinct = labels.iter().map(|l| *l as usize).collect::<std::collections::BTreeSet<_>>().len();
            assert!(distinct > 1 || classes == 1, "labels {labels:?} cover several classes");
            labels
        }
        TargetKind::Values => (0..ROWS * t.cols).map(|_| rng.random_range(0.0..1.0)).collect(),
    };
    exec.set_target(&plan, ROWS, &target);
    loss_at(&plan, &mut exec, l1, l2);
    let mut analytic = exec.grads.clone();
    regularization(&plan.params, &exec.params, l1, l2, Some(&mut analytic));
    let h = 1e-5;
    let mut checked = 0;
    let mut nonzero = 0;
    // A batch norm's running averages and count are state, not trained: their gradient slots
    // hold the batch's statistics for the update, not a derivative.
    for p in plan.params.iter().filter(|p| p.trained()) {
        let stride = (p.buf.len / 40).max(1);
        for i in (p.buf.offset..p.buf.offset + p.buf.len).step_by(stride) {
            let orig = exec.params[i];
            exec.params[i] = orig + h;
            let up = loss_at(&plan, &mut exec, l1, l2);
            exec.params[i] = orig - h;
            let down = loss_at(&plan, &mut exec, l1, l2);
            exec.params[i] = orig;
            let numeric = (up - down) / (2.0 * h);
            let a = analytic[i];
            let scale = a.abs().max(numeric.abs());
            let rel = if scale < 1e-10 { 0.0 } else { (a - numeric).abs() / scale };
            // Relative error, except for gradients so small that the difference quotient's own
            // rounding (about 1e-16·L/h ≈ 1e-11) dominates it.
            assert!(
                rel < 1e-6 || (a - numeric).abs() < 1e-10,
                "{} [{}]: analytic {a:e}, numeric {numeric:e}, relative error {rel:e}\n{src}",
                p.name,
                i - p.buf.offset
            );
            checked += 1;
            if scale > 1e-6 {
                nonzero += 1;
            }
        }
    }
    assert!(nonzero * 2 > checked, "most gradients are non-trivial ({nonzero} of {checked})");
}

#[test]
fn dense_with_softmax_cross_entropy() {
    check("model M { input x: [6]\n x -> dense(4) -> softmax }", Loss::CROSS_ENTROPY);
}

/// Label smoothing, fused with the softmax (optimised plan) and on probabilities (not), and
/// on a ragged sequence's steps.
#[test]
fn cross_entropy_with_label_smoothing() {
    let smoothed = Loss::CrossEntropy(nnlang_runtime::plan::Smoothing::new(0.1));
    check("model M { input x: [6]\n x -> dense(5) -> tanh -> dense(4) -> softmax }", smoothed);
    let heavy = Loss::CrossEntropy(nnlang_runtime::plan::Smoothing::new(0.7));
    check("model M { input x: [6]\n x -> dense(3) -> softmax }", heavy);
    check_ragged("model M { input x: [seq <= 5, 3]\n x -> rnn(4) -> dense(3) -> softmax }", smoothed);
}

#[test]
fn every_activation() {
    for act in [
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu(alpha = 0.1)",
        "identity",
        "hard_tanh",
        "gelu",
        "gelu(approximate = tanh)",
    ] {
        check(
            &format!("model M {{ input x: [6]\n x -> dense(5) -> {act} -> dense(3) -> softmax }}"),
            Loss::CROSS_ENTROPY,
        );
    }
}

/// GELU's derivative reads its input: kept from in-place overwriting and from fusion, on
/// dense layers, convolutions, chains of activations and every step of a sequence.
#[test]
fn gelu_and_hard_tanh_where_their_inputs_must_be_kept() {
    check("model M { input x: [6]\n x -> dense(8) -> gelu -> hard_tanh -> dense(5) -> gelu(approximate = tanh) -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    check("model M { input x: [6]\n x -> gelu -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    check("model M { input x: [5, 5, 2]\n x -> conv(filters = 3, size = 3) -> gelu -> maxpool(size = 3) -> dense(2) -> hard_tanh }", Loss::MeanSquaredError);
    check("model M { input x: [seq = 4, 3]\n x -> dense(5) -> gelu -> rnn(hidden = 4, output = last) -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
}

#[test]
fn softplus() {
    check("model M { input x: [6]\n x -> dense(5) -> softplus -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    // Its own input is the model input (no input gradient), then a volume.
    check("model M { input x: [6]\n x -> softplus -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    check("model M { input x: [5, 5, 2]\n x -> conv(filters = 3, size = 3) -> softplus -> maxpool(size = 3) -> dense(2) -> sigmoid }", Loss::BinaryCrossEntropy);
}

#[test]
fn elman_rnn_every_activation_sequence_and_last() {
    for act in ["tanh", "relu", "sigmoid", "identity", "leaky_relu(alpha = 0.1)"] {
        for output in ["sequence", "last"] {
            check(
                &format!("model M {{ input x: [5, 3]\n x -> rnn(4, activation = {act}, output = {output}) -> dense(3) -> softmax }}"),
                Loss::CROSS_ENTROPY,
            );
        }
    }
}

#[test]
fn stacked_rnns_one_step_and_rnn_after_a_layer() {
    // Stacked: the second reads every state of the first.
    check(
        "model M { input x: [4, 3]\n x -> rnn(5) -> rnn(3, output = last) -> dense(2) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    // One step: no recurrent product at all (W_hh gets no gradient).
    check("model M { input x: [1, 3]\n x -> rnn(4, output = last) -> dense(2) -> softmax }", Loss::CROSS_ENTROPY);
    // The rnn's input has a gradient of its own (an rnn fed by an rnn, with an activation
    // between); regression loss.
    check(
        "model M { input x: [3, 2]\n x -> rnn(4, activation = relu) -> tanh -> rnn(2, output = last) }",
        Loss::MeanSquaredError,
    );
}

#[test]
fn bidirectional_every_merge_sequence_and_last() {
    for merge in ["concat", "add", "mul"] {
        for output in ["sequence", "last"] {
            check(
                &format!("model M {{ input x: [4, 3]\n x -> bidirectional(rnn(3, output = {output}), merge = {merge}) -> dense(2) -> softmax }}"),
                Loss::CROSS_ENTROPY,
            );
        }
    }
    // Fed by an rnn (the input gradient adds both directions'), relu, one step.
    check("model M { input x: [5, 2]\n x -> rnn(3) -> bidirectional(rnn(4, activation = relu, output = last)) -> dense(2) -> softmax }", Loss::CROSS_ENTROPY);
    check(
        "model M { input x: [1, 3]\n x -> bidirectional(rnn(2, output = last), merge = add) -> dense(2) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

#[test]
fn stacked_dense_layers_and_flatten() {
    check(
        "model M { input x: [2, 3, 2]\n x -> flatten -> dense(7) -> tanh -> dense(5) -> relu -> dense(4) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

#[test]
fn dropout_with_a_fixed_mask() {
    check(
        "model M { input x: [6]\n x -> dense(8) -> tanh -> dropout(keep = 0.6) -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

#[test]
fn add_and_concat_and_a_value_used_twice() {
    check(
        "model M { input x: [5]\n let h = x -> dense(6) -> tanh\n let a = add(h, h -> dense(6) -> sigmoid)\n concat(a, h) -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

#[test]
fn in_place_chains_and_dropout_after_dense() {
    check("model M { input x: [6]\n x -> dense(8) -> dropout(keep = 0.7) -> relu -> dense(5) -> leaky_relu -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
}

#[test]
fn binary_cross_entropy_with_sigmoid() {
    check("model M { input x: [6]\n x -> dense(4) -> tanh -> dense(2) -> sigmoid }", Loss::BinaryCrossEntropy);
}

#[test]
fn mean_squared_error() {
    check("model M { input x: [6]\n x -> dense(4) -> sigmoid -> dense(3) }", Loss::MeanSquaredError);
    check("model M { input x: [6]\n x -> dense(4) -> relu -> dense(1) -> identity }", Loss::MeanSquaredError);
}

#[test]
fn two_inputs() {
    check(
        "model M { input a: [3]\n input b: [4]\n concat(a -> dense(5), b) -> tanh -> dense(2) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

#[test]
fn regularization_terms_off_then_on() {
    let src = "model M { input x: [6]\n x -> dense(5) -> tanh -> dense(3) -> softmax }";
    check_with(src, Loss::CROSS_ENTROPY, 0.0, 0.0);
    check_with(src, Loss::CROSS_ENTROPY, 0.0, 0.3);
    check_with(src, Loss::CROSS_ENTROPY, 0.05, 0.0);
    check_with(src, Loss::CROSS_ENTROPY, 0.05, 0.3); // elastic net
}

#[test]
fn convolutions_over_strides_and_paddings() {
    for (side, size, stride, pad) in
        [(7, 3, 1, 1), (7, 3, 2, 0), (8, 2, 2, 0), (7, 5, 1, 2), (7, 3, 1, 0), (7, 1, 1, 0), (9, 3, 2, 1)]
    {
        check(
            &format!("model M {{ input x: [{side}, {side}, 2]\n x -> conv(filters = 3, size = {size}, stride = {stride}, pad = {pad}) -> tanh -> dense(4) -> softmax }}"),
            Loss::CROSS_ENTROPY,
        );
    }
    // Two convolutions: the first one's input gradient flows through col2im.
    check("model M { input x: [6, 6, 2]\n x -> conv(filters = 3, size = 3, pad = same) -> relu -> conv(filters = 2, size = 3, stride = 1) -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
}

#[test]
fn pooling_variants() {
    for (side, pool) in [
        (6, "maxpool(size = 2)"),
        (7, "maxpool(size = 3, stride = 2)"),
        (6, "avgpool(size = 2)"),
        (7, "avgpool(size = 3, stride = 2)"),
        (6, "l2pool(size = 2)"),
        (7, "l2pool(size = 3, stride = 2)"),
    ] {
        check(
            &format!("model M {{ input x: [{side}, {side}, 2]\n x -> conv(filters = 3, size = 3, pad = same) -> sigmoid -> {pool} -> dense(3) -> softmax }}"),
            Loss::CROSS_ENTROPY,
        );
    }
}

/// A batch norm (with and without its ReLU) fused with the max pooling after it (`fuse-pool`,
/// in the optimised plan): the pooled map's gradient through one tap a window, the sums over
/// those taps; with its input read by another layer too (its `dx` added to), and right after
/// the model's input (no `dx`).
#[test]
fn batch_norm_fused_with_max_pooling() {
    let fused = |src: &str| {
        let p = plan(src, Loss::CROSS_ENTROPY, Level::Full);
        assert!(p.steps.iter().any(|s| matches!(s, Step::BatchNormPoolBackward { .. })), "fused:\n{src}");
        check(src, Loss::CROSS_ENTROPY);
    };
    fused(
        "model M { input x: [6, 6, 2]\n x -> conv(filters = 3, size = 3, pad = same, bias = false) -> batchnorm -> relu -> maxpool(size = 2)\n\
         -> conv(filters = 4, size = 1, bias = false) -> batchnorm -> maxpool(size = 3) -> dense(3) -> softmax }",
    );
    fused(
        "model M { input x: [4, 4, 3]\n let a = x -> conv(filters = 5, size = 3, pad = same)\n\
         let b = a -> batchnorm(momentum = 0.3) -> relu -> maxpool(size = 2)\n\
         let c = a -> maxpool(size = 2)\n add(b, c) -> dense(3) -> softmax }",
    );
    fused("model M { input x: [4, 6, 3]\n x -> batchnorm -> relu -> maxpool(size = 2) -> dense(3) -> softmax }");
}

/// A first convolution of short patches computed again for the batch norm after it instead
/// of stored (`ConvBatchNorm`, `ConvBatchNormBackward`, in the optimised plan): with its ReLU
/// and the max pooling after it, and without either.
#[test]
fn short_convolutions_computed_again_for_their_batch_norms() {
    let fused = |src: &str| {
        let p = plan(src, Loss::CROSS_ENTROPY, Level::Full);
        assert!(p.steps.iter().any(|s| matches!(s, Step::ConvBatchNormBackward { .. })), "fused:\n{src}");
        check(src, Loss::CROSS_ENTROPY);
    };
    fused(
        "model M { input x: [6, 6, 1]\n x -> conv(filters = 3, size = 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)\n\
         -> dense(3) -> softmax }",
    );
    fused("model M { input x: [5, 4, 2]\n x -> conv(filters = 4, size = 2, bias = false) -> batchnorm -> dense(3) -> softmax }");
}

#[test]
fn locally_connected_layers() {
    check(
        "model M { input x: [5, 5, 2]\n x -> local(filters = 2, size = 3, stride = 1) -> tanh -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    check("model M { input x: [6, 6, 1]\n x -> conv(filters = 2, size = 3, pad = same) -> local(filters = 3, size = 2, stride = 2) -> dense(2) -> softmax }", Loss::CROSS_ENTROPY);
}

#[test]
fn maxout_over_dense_and_over_channels() {
    check("model M { input x: [6]\n x -> maxout(units = 4, pieces = 3) -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    check("model M { input x: [5, 5, 1]\n x -> conv(filters = 6, size = 3) -> maxout(pieces = 2) -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
}

#[test]
fn dropout_inside_a_conv_net() {
    check("model M { input x: [6, 6, 1]\n x -> conv(filters = 4, size = 3, pad = same) -> relu -> dropout(keep = 0.7) -> maxpool(size = 2) -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
}

#[test]
fn per_step_layers_and_losses_on_sequences() {
    // Dense, an activation and softmax at every step of a fixed-length sequence, with a loss
    // at every step: classes and squared error.
    check("model M { input x: [seq = 4, 3]\n x -> dense(5) -> tanh -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    check(
        "model M { input x: [4, 3]\n x -> rnn(4) -> dense(3) -> sigmoid -> maxout(units = 2, pieces = 2) }",
        Loss::MeanSquaredError,
    );
    check("model M { input x: [4, 3]\n x -> rnn(4) -> dense(3) -> sigmoid }", Loss::BinaryCrossEntropy);
}

#[test]
fn ragged_batches_every_activation_sequence_and_last() {
    for act in ["tanh", "relu", "sigmoid", "identity", "leaky_relu(alpha = 0.1)"] {
        check_ragged(
            &format!("model M {{ input x: [seq <= 5, 3]\n x -> rnn(4, activation = {act}, output = last) -> dense(3) -> softmax }}"),
            Loss::CROSS_ENTROPY,
        );
        check_ragged(
            &format!("model M {{ input x: [seq <= 5, 3]\n x -> rnn(4, activation = {act}) -> dense(3) -> softmax }}"),
            Loss::CROSS_ENTROPY,
        );
    }
}

#[test]
fn ragged_batches_stacked_bidirectional_and_per_step_losses() {
    for merge in ["concat", "add", "mul"] {
        for output in ["sequence", "last"] {
            check_ragged(
                &format!("model M {{ input x: [seq <= 5, 3]\n x -> bidirectional(rnn(3, output = {output}), merge = {merge}) -> dense(2) -> softmax }}"),
                Loss::CROSS_ENTROPY,
            );
        }
    }
    check_ragged(
        "model M { input x: [seq <= 5, 2]\n x -> dense(3) -> relu -> rnn(4) -> dropout(keep = 0.7) -> bidirectional(rnn(3), merge = add) -> rnn(2, output = last) -> dense(2) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    check_ragged("model M { input x: [seq <= 5, 2]\n x -> rnn(4) -> dense(2) }", Loss::MeanSquaredError);
    check_ragged("model M { input x: [seq <= 5, 2]\n x -> rnn(3) -> dense(2) -> sigmoid }", Loss::BinaryCrossEntropy);
}

#[test]
fn lstm_and_gru_fixed_ragged_stacked_sequence_and_last() {
    for cell in ["lstm", "gru"] {
        for output in ["sequence", "last"] {
            check(
                &format!("model M {{ input x: [4, 3]\n x -> {cell}(4, output = {output}) -> dense(3) -> softmax }}"),
                Loss::CROSS_ENTROPY,
            );
            check_ragged(
                &format!(
                    "model M {{ input x: [seq <= 5, 3]\n x -> {cell}(4, output = {output}) -> dense(3) -> softmax }}"
                ),
                Loss::CROSS_ENTROPY,
            );
        }
        // Both directions, each from its own end of each sequence, every merge.
        for (merge, output) in [("concat", "sequence"), ("add", "last"), ("mul", "sequence"), ("concat", "last")] {
            check_ragged(
                &format!("model M {{ input x: [seq <= 5, 3]\n x -> bidirectional({cell}(3, output = {output}), merge = {merge}) -> dense(2) -> softmax }}"),
                Loss::CROSS_ENTROPY,
            );
        }
        // Stacked, beside the other recurrences, with per-step squared error.
        check_ragged(
            &format!("model M {{ input x: [seq <= 5, 2]\n x -> dense(3) -> tanh -> {cell}(4) -> rnn(3) -> {cell}(2) -> dense(2) }}"),
            Loss::MeanSquaredError,
        );
    }
}

/// Embeddings: the table's gradient sums the rows each id is used at (several uses of one id
/// in a batch), on fixed and ragged sequences (padding gives no gradient), on a fixed count of
/// ids, and on a grid of ids (a volume after).
#[test]
fn embeddings_of_token_ids() {
    check(
        "model M { input x: [4] ids < 5\n x -> embedding(5, 3) -> flatten -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    check(
        "model M { input x: [seq = 4] ids < 6\n x -> embedding(6, 3) -> lstm(4, output = last) -> dense(2) }",
        Loss::MeanSquaredError,
    );
    check_ragged(
        "model M { input x: [seq <= 5] ids < 7\n x -> embedding(7, 4) -> gru(3) -> dense(5) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    // A grid of ids: a volume of vectors, read by a convolution.
    check(
        "model M { input x: [3, 4] ids < 4\n x -> embedding(4, 2) -> conv(filters = 3, size = 2) -> flatten -> dense(2) }",
        Loss::MeanSquaredError,
    );
    // A table larger than the ids need: the unused rows get a zero gradient.
    check(
        "model M { input x: [3] ids < 2\n x -> embedding(4, 2) -> flatten -> dense(2) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

/// Layer and RMS normalization after a dense layer, at every step of ragged sequences (padding left
/// out), and at every position of a volume.
#[test]
fn layer_normalization() {
    check("model M { input x: [6]\n x -> dense(5) -> layernorm -> tanh -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    check_ragged(
        "model M { input x: [seq <= 5, 3]\n x -> dense(4) -> layernorm(eps = 1e-3) -> gru(3) -> layernorm -> dense(2) }",
        Loss::MeanSquaredError,
    );
    check(
        "model M { input x: [4, 4, 2]\n x -> conv(filters = 3, size = 3, pad = same) -> layernorm -> sigmoid -> flatten -> dense(2) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    // RMS normalization likewise.
    check("model M { input x: [6]\n x -> dense(5) -> rmsnorm -> tanh -> dense(3) -> softmax }", Loss::CROSS_ENTROPY);
    check_ragged(
        "model M { input x: [seq <= 5, 3]\n x -> dense(4) -> rmsnorm(eps = 1e-3) -> lstm(3) -> rmsnorm -> dense(2) }",
        Loss::MeanSquaredError,
    );
}

/// Multi-head self-attention, causal and not, on sequences of one length and on ragged ones
/// (padding is never a key: a layer before it gets no gradient through a padding step), with
/// learned and sinusoidal positions, and the pre-norm block of a transformer with its residual
/// sums; the gradients reach the layers before the attention through its input.
#[test]
fn attention_and_positions() {
    check(
        "model M { input x: [seq = 4, 6]\n x -> dense(6) -> attention(2) -> tanh -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    check_ragged(
        "model M { input x: [seq <= 5, 3]\n x -> dense(4) -> positions(5) -> attention(2, causal = true) -> dense(2) }",
        Loss::MeanSquaredError,
    );
    check_ragged(
        "model M { input x: [seq <= 5, 3]\n x -> dense(4) -> positions(6, sinusoidal = true) -> attention(4) -> gru(3) -> dense(2) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    check_ragged(
        "block B(w) { input x\n let a = x -> layernorm -> attention(2, causal = true)\n let h = add(x, a)\n let m = h -> layernorm -> dense(2 * w) -> gelu -> dense(w)\n add(h, m) }
         model M { input t: [seq <= 5] ids < 7\n t -> embedding(7, 4) -> positions(5) -> [B(4)] * 2 -> layernorm -> dense(6) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

/// Truncated BPTT: each `rnn` starts from a carried state (random here, restored before every
/// run since the plan saves the new one at its end); the gradients include the carried
/// state's term in `dW_hh`, and stop there.
#[test]
fn carried_states_of_truncated_bptt() {
    for (src, loss) in [
        (
            "model M { input x: [seq = 4, 3]\n x -> rnn(4) -> rnn(3, activation = relu) -> dense(3) -> softmax }",
            Loss::CROSS_ENTROPY,
        ),
        ("model M { input x: [seq <= 4, 3]\n x -> rnn(5, output = last) -> dense(2) }", Loss::MeanSquaredError),
        // The LSTM carries its hidden and its cell state, the GRU its hidden state.
        ("model M { input x: [seq = 4, 3]\n x -> lstm(4) -> gru(3) -> dense(3) -> softmax }", Loss::CROSS_ENTROPY),
        ("model M { input x: [seq <= 4, 3]\n x -> lstm(5, output = last) -> dense(2) }", Loss::MeanSquaredError),
    ] {
        let c = compile(src, &Options::default()).expect("no usage error");
        let plan = nnlang::plan::build_carrying(&c.models[0], Mode::Training(loss), ROWS).expect("plan builds");
        assert!(!plan.carried.is_empty(), "{src}: carries states");
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut exec = Exec::<f64>::new(&plan, 0);
        for p in exec.params.iter_mut() {
            *p = rng.random_range(-0.8..0.8);
        }
        let lengths = if src.contains("<=") { vec![4, 2, 3, 1, 4] } else { Vec::new() };
        exec.set_lengths(&lengths);
        let x: Vec<f64> = (0..ROWS * plan.inputs[0].cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        exec.set_input(&plan, 0, ROWS, &x);
        let (t, kind) = plan.target.expect("target");
        let y: Vec<f64> = match kind {
            TargetKind::Class => (0..ROWS * t.cols).map(|i| (i % 3) as f64).collect(),
            TargetKind::Values => (0..ROWS * t.cols).map(|_| rng.random_range(0.0..1.0)).collect(),
        };
        exec.set_target(&plan, ROWS, &y);
        let state: Vec<(std::ops::Range<usize>, Vec<f64>)> = plan
            .carried
            .iter()
            .map(|b| (b.range(ROWS), (0..ROWS * b.cols).map(|_| rng.random_range(-0.9..0.9)).collect()))
            .collect();
        let loss_at = |exec: &mut Exec<f64>| {
            for (r, v) in &state {
                exec.arena[r.clone()].copy_from_slice(v);
            }
            exec.run(&plan, ROWS, None).expect("runs").expect("a loss")
        };
        loss_at(&mut exec);
        let analytic = exec.grads.clone();
        // The carried states were replaced by this run's last ones.
        assert!(state.iter().any(|(r, v)| exec.arena[r.clone()] != v[..]), "{src}: the state moves on");
        let h = 1e-5;
        for p in &plan.params {
            for (i, &a) in analytic.iter().enumerate().skip(p.buf.offset).take(p.buf.len) {
                let orig = exec.params[i];
                exec.params[i] = orig + h;
                let up = loss_at(&mut exec);
                exec.params[i] = orig - h;
                let down = loss_at(&mut exec);
                exec.params[i] = orig;
                let numeric = (up - down) / (2.0 * h);
                let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1e-10);
                assert!(
                    rel < 1e-6 || (a - numeric).abs() < 1e-10,
                    "{src}: {} analytic {a:e}, numeric {numeric:e}",
                    p.name
                );
            }
        }
    }
}
