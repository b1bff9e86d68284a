//! The gradient check a user runs (`nnlangc gradcheck`, `Session::gradcheck`): it passes the
//! compiled gradients, and catches a broken one with the notes' "wrong" verdict.

use nnlang::session::gradcheck::{GradcheckSpec, Verdict};
use nnlang::session::Session;
use nnlang_runtime::plan::{Plan, Step};
use std::path::PathBuf;

fn session(name: &str, src: &str) -> Session {
    let dir = std::env::temp_dir().join(format!("nnlang-gradcheck-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file: PathBuf = dir.join("m.nn");
    std::fs::write(&file, src).expect("writes");
    Session::open(&file, &nnlang::Options::default()).expect("compiles")
}

const SMOOTH: &str = "model M {\n input x: [6]\n x -> dense(5) -> tanh -> dense(4) -> tanh -> dense(3) -> softmax\n}\n";

/// The classic mistake: the activation's derivative forgotten (its gradient passed through
/// as if it were the identity).
fn forget_activation_derivative(plan: &mut Plan) {
    let at = plan.steps.iter().position(|s| matches!(s, Step::ActivationBackward { .. })).expect("an activation");
    if let Step::ActivationBackward { dy, dx, write, .. } = plan.steps[at] {
        plan.steps[at] = Step::Copy { x: dx, x_col: 0, y: dy, write };
    }
}

#[test]
fn a_correct_gradient_is_good_and_a_broken_one_is_wrong() {
    let s = session("smooth", SMOOTH);
    let m = s.model(None).expect("model");
    let spec = GradcheckSpec::default();
    let good = s.gradcheck(m, &spec, None).expect("runs");
    assert!(!good.kinky);
    // Six parameter tensors, and the input.
    assert_eq!(good.tensors.len(), 7);
    assert_eq!(good.tensors[6].name, "input x");
    for t in &good.tensors {
        assert_eq!(t.verdict, Verdict::Good, "{t:?}");
        assert!(t.checked >= 3 && t.kinks == 0, "{t:?}");
    }
    let broken = s.gradcheck(m, &spec, Some(&forget_activation_derivative)).expect("runs");
    assert_eq!(broken.worst(), Verdict::Wrong);
    // The layers before the broken step get wrong gradients; the last layer's stay right.
    let by_name = |n: &str| broken.tensors.iter().find(|t| t.name == n).expect("tensor").verdict;
    assert_eq!(by_name("dense_2.weight"), Verdict::Good);
    assert_eq!(by_name("dense_0.weight"), Verdict::Wrong);
    assert_eq!(by_name("input x"), Verdict::Wrong);
}

#[test]
fn kinks_crossed_by_the_difference_are_reported_not_scored() {
    // A large step over ReLUs and max pooling crosses kinks; they are counted apart, and what
    // is scored stays within the notes' bands for a model with kinks.
    let s = session(
        "kinks",
        "model M {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> relu -> maxpool(size = 2) -> dense(8) -> relu -> dense(3) -> softmax\n}\n",
    );
    let m = s.model(None).expect("model");
    let g =
        s.gradcheck(m, &GradcheckSpec { step: 1e-2, coordinates: 40, ..GradcheckSpec::default() }, None).expect("runs");
    assert!(g.kinky);
    let kinks: usize = g.tensors.iter().map(|t| t.kinks).sum();
    assert!(kinks > 0, "a step of 1e-2 crosses some kink: {:?}", g.tensors);
    assert!(g.worst() <= Verdict::Uncomfortable, "{:?}", g.tensors);
    // With the default step, the same model is good.
    let fine = s.gradcheck(m, &GradcheckSpec::default(), None).expect("runs");
    assert!(fine.worst() <= Verdict::FineWithKinks, "{:?}", fine.tensors);
}

#[test]
fn hard_tanh_kinks_are_found_at_both_corners() {
    // Hard tanh's derivative jumps at −1 and at 1: a large step crosses them, and they are
    // counted apart rather than scored.
    let s = session("hard_tanh", "model M {\n input x: [6]\n x -> dense(16) -> hard_tanh -> dense(3) -> softmax\n}\n");
    let m = s.model(None).expect("model");
    let g =
        s.gradcheck(m, &GradcheckSpec { step: 5e-2, coordinates: 60, ..GradcheckSpec::default() }, None).expect("runs");
    assert!(g.kinky, "hard_tanh has kinks");
    let kinks: usize = g.tensors.iter().map(|t| t.kinks).sum();
    assert!(kinks > 0, "a step of 5e-2 crosses some corner: {:?}", g.tensors);
    assert!(g.worst() <= Verdict::Uncomfortable, "{:?}", g.tensors);
    let fine = s.gradcheck(m, &GradcheckSpec::default(), None).expect("runs");
    assert!(fine.worst() <= Verdict::FineWithKinks, "{:?}", fine.tensors);
}

#[test]
fn gelu_is_smooth() {
    // GELU has no kink: the check is a smooth model's, and good.
    let s = session(
        "gelu",
        "model M {\n input x: [6]\n x -> dense(5) -> gelu -> dense(4) -> gelu(approximate = tanh) -> dense(3) -> softmax\n}\n",
    );
    let m = s.model(None).expect("model");
    let g = s.gradcheck(m, &GradcheckSpec::default(), None).expect("runs");
    assert!(!g.kinky);
    assert_eq!(g.worst(), Verdict::Good, "{:?}", g.tensors);
}

#[test]
fn bad_settings_are_usage_errors() {
    let s = session("settings", SMOOTH);
    let m = s.model(None).expect("model");
    for spec in [
        GradcheckSpec { step: 0.0, ..GradcheckSpec::default() },
        GradcheckSpec { step: f64::NAN, ..GradcheckSpec::default() },
        GradcheckSpec { examples: 0, ..GradcheckSpec::default() },
    ] {
        let e = s.gradcheck(m, &spec, None).expect_err("refused");
        assert!(matches!(e, nnlang::session::Error::Usage(_)), "{e:?}");
    }
}

#[test]
fn dropout_is_off() {
    // The same model with and without dropout: the same loss, the same verdicts.
    let with = session(
        "dropout",
        "model M {\n input x: [6]\n x -> dense(5) -> tanh -> dropout(keep = 0.5) -> dense(3) -> softmax\n}\n",
    );
    let without = session("no-dropout", "model M {\n input x: [6]\n x -> dense(5) -> tanh -> dense(3) -> softmax\n}\n");
    let spec = GradcheckSpec::default();
    let a = with.gradcheck(with.model(None).expect("model"), &spec, None).expect("runs");
    let b = without.gradcheck(without.model(None).expect("model"), &spec, None).expect("runs");
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert_eq!(a.worst(), Verdict::Good);
}
