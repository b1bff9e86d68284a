//! Padding changes nothing: a batch of sequences of different lengths, padded with garbage
//! (huge inputs, labels outside the classes), gives the outputs, the loss and the gradients of
//! the same sequences run one by one, each at its own length with no padding at all.

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::interp::Exec;
use nnlang_runtime::plan::Plan;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LENGTHS: [usize; 4] = [5, 2, 4, 1];
const MOST: usize = 5;
const FEATURES: usize = 3;

/// The model `body` reading `x: [dims]`.
fn plan(body: &str, dims: &str, mode: Mode, rows: usize) -> Plan {
    let src = format!("model M {{ input x: [{dims}, {FEATURES}]\n x -> {body} }}");
    let c = compile(&src, &Options::default()).expect("no usage error");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    build(&c.models[0], mode, rows).expect("plan builds")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

fn same_as_one_by_one(body: &str, loss: Loss) {
    let rows = LENGTHS.len();
    let padded = plan(body, &format!("seq <= {MOST}"), Mode::Training(loss), rows);
    let seq = padded.sequence.expect("reads a sequence");
    assert!(seq.variable && seq.steps == MOST);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut exec = Exec::<f64>::new(&padded, 0);
    for p in exec.params.iter_mut() {
        *p = rng.random_range(-0.8..0.8);
    }
    let params = exec.params.clone();
    // Inputs: real values inside each sequence, garbage past its end.
    let x: Vec<f64> = (0..rows * MOST * FEATURES)
        .map(|i| if (i / FEATURES) % MOST < LENGTHS[i / (MOST * FEATURES)] { rng.random_range(-1.0..1.0) } else { 1e6 })
        .collect();
    let (t, _) = padded.target.expect("a target");
    let per_step = seq.per_step_output;
    let tcols = t.cols / if per_step { MOST } else { 1 };
    // Targets: class labels (or values) inside, garbage past the end.
    let classes = padded.output.cols / if seq.per_step_output { MOST } else { 1 };
    let y: Vec<f64> = (0..rows * t.cols)
        .map(|i| {
            let (r, step) = (i / t.cols, (i % t.cols) / tcols);
            let inside = !per_step || step < LENGTHS[r];
            match (inside, loss) {
                (false, _) => 99.0,
                (true, Loss::CrossEntropy(_)) => ((i * 7 + 3) % classes) as f64,
                (true, _) => rng.random_range(0.0..1.0),
            }
        })
        .collect();
    exec.set_input(&padded, 0, rows, &x);
    exec.set_target(&padded, rows, &y);
    exec.set_lengths(&LENGTHS);
    let loss_batch = exec.run(&padded, rows, None).expect("runs").expect("a loss");
    assert!(loss_batch.is_finite());
    let grads_batch = exec.grads.clone();

    // One by one: each sequence at its own length.
    let total: usize = if per_step { LENGTHS.iter().sum() } else { rows };
    let (mut loss_sum, mut grads_sum) = (0.0, vec![0.0; grads_batch.len()]);
    for (r, &len) in LENGTHS.iter().enumerate() {
        let one = plan(body, &format!("seq = {len}"), Mode::Training(loss), 1);
        let mut e = Exec::<f64>::new(&one, 0);
        e.params.copy_from_slice(&params);
        let xr: Vec<f64> = x[r * MOST * FEATURES..][..len * FEATURES].to_vec();
        let yr: Vec<f64> =
            if per_step { y[r * t.cols..][..len * tcols].to_vec() } else { y[r * t.cols..][..t.cols].to_vec() };
        e.set_input(&one, 0, 1, &xr);
        e.set_target(&one, 1, &yr);
        let l = e.run(&one, 1, None).expect("runs").expect("a loss");
        let w = if per_step { len as f64 / total as f64 } else { 1.0 / total as f64 };
        loss_sum += w * l;
        for (g, &v) in grads_sum.iter_mut().zip(e.grads.iter()) {
            *g += w * v;
        }
    }
    assert!(close(loss_batch, loss_sum), "{body}: loss {loss_batch} padded, {loss_sum} one by one");
    for (i, (a, b)) in grads_batch.iter().zip(&grads_sum).enumerate() {
        assert!(close(*a, *b), "{body}: gradient {i}: {a} padded, {b} one by one");
    }
    assert!(grads_batch.iter().any(|g| g.abs() > 1e-6), "{body}: the gradients are not all zero");

    // Outputs of an inference plan, step by step.
    let infer = plan(body, &format!("seq <= {MOST}"), Mode::Inference, rows);
    let mut e = Exec::<f64>::new(&infer, 0);
    e.params.copy_from_slice(&params);
    e.set_input(&infer, 0, rows, &x);
    e.set_lengths(&LENGTHS);
    e.run(&infer, rows, None).expect("runs");
    let out = e.output(&infer, rows).to_vec();
    let per = if seq.per_step_output { infer.output.cols / MOST } else { infer.output.cols };
    for (r, &len) in LENGTHS.iter().enumerate() {
        let one = plan(body, &format!("seq = {len}"), Mode::Inference, 1);
        let mut e1 = Exec::<f64>::new(&one, 0);
        e1.params.copy_from_slice(&params);
        e1.set_input(&one, 0, 1, &x[r * MOST * FEATURES..][..len * FEATURES]);
        e1.run(&one, 1, None).expect("runs");
        let want = e1.output(&one, 1);
        let got = &out[r * infer.output.cols..][..want.len()];
        assert_eq!(want.len(), if seq.per_step_output { len * per } else { per });
        for (a, b) in got.iter().zip(want) {
            assert!(close(*a, *b), "{body}: output of sequence {r}: {a} padded, {b} alone");
        }
    }
}

#[test]
fn sequence_classification_by_the_last_state() {
    same_as_one_by_one("rnn(4, output = last) -> dense(3) -> softmax", Loss::CROSS_ENTROPY);
    same_as_one_by_one("rnn(4, activation = relu) -> rnn(3, output = last) -> dense(2)", Loss::MeanSquaredError);
}

#[test]
fn bidirectional_starts_each_sequence_at_its_own_end() {
    for merge in ["concat", "add", "mul"] {
        same_as_one_by_one(
            &format!("bidirectional(rnn(4, output = last), merge = {merge}) -> dense(3) -> softmax"),
            Loss::CROSS_ENTROPY,
        );
        same_as_one_by_one(
            &format!("bidirectional(rnn(3), merge = {merge}) -> dense(3) -> softmax"),
            Loss::CROSS_ENTROPY,
        );
    }
}

#[test]
fn sequence_labelling_with_a_loss_at_every_step() {
    same_as_one_by_one("dense(4) -> tanh -> rnn(4) -> dense(3) -> softmax", Loss::CROSS_ENTROPY);
    same_as_one_by_one(
        "rnn(4) -> bidirectional(rnn(3), merge = concat) -> dense(2) -> sigmoid",
        Loss::BinaryCrossEntropy,
    );
    same_as_one_by_one("rnn(4) -> dense(2)", Loss::MeanSquaredError);
}

/// A stream cut into windows, each starting from the state the previous one ended with,
/// gives the outputs of the whole stream read at once.
#[test]
fn windows_carrying_the_state_read_like_one_stream() {
    let body = "rnn(4) -> rnn(3, activation = relu) -> dense(2) -> softmax";
    let whole = plan(body, "seq = 6", Mode::Inference, 2);
    let src = format!("model M {{ input x: [seq <= 3, {FEATURES}]\n x -> {body} }}");
    let c = compile(&src, &Options::default()).expect("compiles");
    let windows = nnlang::plan::build_carrying(&c.models[0], Mode::Inference, 2).expect("plan");
    // Each op says what it carries (`Rules::carries`): one state per rnn, in node order.
    assert_eq!(windows.carried.iter().map(|b| b.cols).collect::<Vec<_>>(), [4, 3]);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let params: Vec<f64> = (0..whole.params_len).map(|_| rng.random_range(-0.8..0.8)).collect();
    let x: Vec<f64> = (0..2 * 6 * FEATURES).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut e = Exec::<f64>::new(&whole, 0);
    e.params.copy_from_slice(&params);
    e.set_input(&whole, 0, 2, &x);
    e.run(&whole, 2, None).expect("runs");
    let want = e.output(&whole, 2).to_vec();
    let mut w = Exec::<f64>::new(&windows, 0);
    w.params.copy_from_slice(&params);
    // Windows of 3 and 3 steps, then (a new stream after a reset) of 2.
    for (from, len) in [(0, 3), (3, 3)] {
        let xs: Vec<f64> = (0..2)
            .flat_map(|r| {
                let mut v = x[(r * 6 + from) * FEATURES..(r * 6 + from + len) * FEATURES].to_vec();
                v.resize(3 * FEATURES, 0.0);
                v
            })
            .collect();
        w.set_input(&windows, 0, 2, &xs);
        w.set_lengths(&[len, len]);
        w.run(&windows, 2, None).expect("runs");
        let got = w.output(&windows, 2);
        for r in 0..2 {
            for t in 0..len {
                for k in 0..2 {
                    let (a, b) = (got[(r * 3 + t) * 2 + k], want[(r * 6 + from + t) * 2 + k]);
                    assert!(close(a, b), "row {r}, step {}: {a} in windows, {b} at once", from + t);
                }
            }
        }
    }
    // After a reset the next window starts from zero, as a stream of its own.
    w.reset_state(&windows);
    let xs: Vec<f64> = (0..2).flat_map(|r| x[r * 6 * FEATURES..(r * 6 + 3) * FEATURES].to_vec()).collect();
    w.set_input(&windows, 0, 2, &xs);
    w.set_lengths(&[3, 3]);
    w.run(&windows, 2, None).expect("runs");
    let got = w.output(&windows, 2);
    assert!(close(got[0], want[0]) && close(got[7], want[6 * 2 + 1]), "a reset starts a new stream");
}

/// Batch normalization over sequences: the statistics are those of the steps inside their
/// sequences (the mean and unbiased variance of each feature, computed here by hand), and
/// whatever the padding holds, the loss, the gradients and the statistics are the same bits.
#[test]
fn batch_statistics_skip_the_padding() {
    let rows = LENGTHS.len();
    let body = "batchnorm -> rnn(4) -> dense(3) -> softmax";
    let padded = plan(body, &format!("seq <= {MOST}"), Mode::Training(Loss::CROSS_ENTROPY), rows);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let values: Vec<f64> = (0..rows * MOST * FEATURES).map(|_| rng.random_range(-1.0..3.0)).collect();
    let inside = |i: usize| (i / FEATURES) % MOST < LENGTHS[i / (MOST * FEATURES)];
    let y: Vec<f64> = (0..rows * MOST).map(|i| (i % 3) as f64).collect();
    let run = |garbage: f64| {
        let mut e = Exec::<f64>::new(&padded, 0);
        let mut r = ChaCha8Rng::seed_from_u64(2);
        for p in e.params.iter_mut() {
            *p = r.random_range(-0.8..0.8);
        }
        let x: Vec<f64> = values.iter().enumerate().map(|(i, &v)| if inside(i) { v } else { garbage }).collect();
        e.set_input(&padded, 0, rows, &x);
        e.set_target(&padded, rows, &y);
        e.set_lengths(&LENGTHS);
        let loss = e.run(&padded, rows, None).expect("runs").expect("a loss");
        (loss, e.grads.to_vec())
    };
    let (l1, g1) = run(1e6);
    let (l2, g2) = run(-7.0);
    assert_eq!(l1.to_bits(), l2.to_bits(), "the loss does not see the padding");
    assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()), "nor do the gradients");
    let slot = |name: &str| padded.params.iter().find(|p| p.name == name).expect("a state").buf.range();
    let n: usize = LENGTHS.iter().sum();
    let (means, vars) = (&g1[slot("batchnorm_0.running_mean")], &g1[slot("batchnorm_0.running_var")]);
    for (f, (&m, &v)) in means.iter().zip(vars).enumerate() {
        let xs: Vec<f64> = (0..values.len()).filter(|&i| inside(i) && i % FEATURES == f).map(|i| values[i]).collect();
        assert_eq!(xs.len(), n);
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(close(m, mean), "feature {f}: batch mean {m}, by hand {mean}");
        assert!((v - var).abs() <= 1e-10 * var, "feature {f}: batch variance {v}, by hand {var}");
    }
}
