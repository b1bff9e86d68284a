//! `Plan::last_step_only`, what `nnlangc sample` runs on a full window: the layers after the
//! last one that mixes steps computed at the last step alone give that step's output, bit for
//! bit, as the whole plan does, and their dense layers work on one row instead of every
//! step's; plans where that would be wrong or save nothing get no such plan.

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::interp::Exec;
use nnlang_runtime::plan::{Plan, Step};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn plan(src: &str, mode: Mode, rows: usize) -> Plan {
    let c = compile(src, &Options::default()).expect("no usage error");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    build(&c.models[0], mode, rows).expect("plan builds")
}

const TRANSFORMER: &str = "block B(w) {\n input x\n let h = add(x, x -> layernorm -> attention(2, causal = true))\n \
                           add(h, h -> layernorm -> dense(2 * w) -> gelu -> dense(w))\n}\n\
                           model M { input text: [seq <= 12] ids < 9\n \
                           text -> embedding(9, 8) -> positions(12) -> [B(8)] * 2 -> layernorm -> dense(9) -> softmax }";

/// Runs `plan` (the whole one, or its last step only), returning the output and the rows
/// its dense layers worked on, all told.
fn run(plan: &Plan, params: &[f32], x: &[f32], length: usize) -> (Vec<f32>, usize) {
    let mut exec = Exec::<f32>::new(plan, 0);
    exec.params.copy_from_slice(params);
    exec.set_input(plan, 0, 1, x);
    exec.set_lengths(&[length]);
    let mut dense_rows = 0;
    exec.run_watched(plan, 1, &mut |_, s, rows, _, _| {
        if matches!(s, Step::Dense { .. } | Step::DenseAct { .. }) {
            dense_rows += rows;
        }
    })
    .expect("runs");
    (exec.output(plan, 1).to_vec(), dense_rows)
}

fn check_same_last_step(src: &str, ids: usize) {
    let whole = plan(src, Mode::Inference, 1);
    let last = whole.last_step_only().expect("a tail of layers at every step");
    let steps = whole.sequence.expect("a sequence").steps;
    let classes = whole.output.cols / steps;
    assert!(last.steps.iter().any(|s| matches!(s, Step::LastStep { .. })));
    assert_eq!(last.arena_len, whole.arena_len);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let params: Vec<f32> = (0..whole.params_len).map(|_| rng.random_range(-0.7..0.7)).collect();
    for _ in 0..3 {
        let width = whole.inputs[0].cols / steps;
        let x: Vec<f32> = (0..steps * width)
            .map(|_| if ids > 0 { rng.random_range(0..ids) as f32 } else { rng.random_range(-1.0..1.0) })
            .collect();
        let ((a, whole_rows), (b, last_rows)) = (run(&whole, &params, &x, steps), run(&last, &params, &x, steps));
        // The dense layers of the tail work on one row instead of every step's.
        assert!(last_rows < whole_rows && (whole_rows - last_rows) % (steps - 1) == 0, "{last_rows} {whole_rows}");
        let at = (steps - 1) * classes;
        assert!(a[at..].iter().all(|v| v.is_finite() && *v > 0.0), "{:?}", &a[at..]);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a[at..]), bits(&b[at..]), "the last step's output");
    }
}

#[test]
fn a_transformers_last_step_alone_is_the_whole_runs_last_step() {
    check_same_last_step(TRANSFORMER, 9);
}

#[test]
fn a_recurrent_models_per_step_head_alone_is_the_whole_runs_last_step() {
    check_same_last_step(
        "model M { input x: [seq = 7, 3]\n x -> rnn(5) -> dense(4) -> relu -> dense(3) -> softmax }",
        0,
    );
}

#[test]
fn no_last_step_plan_where_it_would_be_wrong_or_save_nothing() {
    // Training: every step's loss is needed.
    assert!(plan(TRANSFORMER, Mode::Training(Loss::CROSS_ENTROPY), 1).last_step_only().is_none());
    // A batch of several examples: their last rows are not one block.
    assert!(plan(TRANSFORMER, Mode::Inference, 4).last_step_only().is_none());
    // One output per sequence (the last state): nothing at every step to skip.
    let last_state = "model M { input x: [seq = 6, 3]\n x -> rnn(5, output = last) -> dense(3) -> softmax }";
    assert!(plan(last_state, Mode::Inference, 1).last_step_only().is_none());
    // Not a sequence.
    assert!(plan("model M { input x: [4]\n x -> dense(3) -> softmax }", Mode::Inference, 1).last_step_only().is_none());
}
