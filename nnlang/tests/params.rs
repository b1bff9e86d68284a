//! Parameters with roles: every tensor an op declares says what it is (a weight with its true
//! fan-in and fan-out, a bias, a gain, state), and initialization, regularization and
//! max-norm follow that one answer.

use nnlang::plan::{build, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::plan::{Param, Plan, Role};
use nnlang_runtime::train::{initialize, max_norm, regularization, Init};

fn training_plan(src: &str) -> Plan {
    let c = compile(src, &Options::default()).expect("no usage error");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    build(&c.models[0], Mode::Training(Loss::CROSS_ENTROPY), 8).expect("plan builds")
}

fn param<'a>(plan: &'a Plan, name: &str) -> &'a Param {
    plan.params.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no {name}"))
}

fn std_dev(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    (v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n).sqrt()
}

const LOCAL: &str = "model M {
    input x: [12, 12, 3]
    x -> local(filters = 16, size = 3) as loc -> relu -> dense(10) as out -> softmax
}";

#[test]
fn every_tensor_says_what_it_is() {
    let plan = training_plan(LOCAL);
    // A locally-connected filter reads a d·f² patch, wherever it is.
    assert_eq!(param(&plan, "loc.weight").shape, vec![10, 10, 16, 3, 3, 3]);
    assert_eq!(param(&plan, "loc.weight").role, Role::Weight { fan_in: 27, fan_out: 144 });
    assert_eq!(param(&plan, "loc.bias").role, Role::Bias);
    assert_eq!(param(&plan, "out.weight").role, Role::Weight { fan_in: 1600, fan_out: 10 });
    assert_eq!(param(&plan, "out.bias").role, Role::Bias);
    let conv = training_plan(
        "model C { input x: [8, 8, 2]  x -> conv(filters = 4, size = 3) as c -> flatten -> dense(3) -> softmax }",
    );
    assert_eq!(param(&conv, "c.weight").role, Role::Weight { fan_in: 18, fan_out: 36 });
    let rnn = training_plan(
        "model R { input x: [seq <= 5, 3]  x -> rnn(hidden = 7, output = last) as r -> dense(2) -> softmax }",
    );
    assert_eq!(param(&rnn, "r.weight_ih_l0").role, Role::Weight { fan_in: 3, fan_out: 7 });
    assert_eq!(param(&rnn, "r.weight_hh_l0").role, Role::Weight { fan_in: 7, fan_out: 7 });
    assert_eq!(param(&rnn, "r.bias_ih_l0").role, Role::Bias);
    assert_eq!(param(&rnn, "r.bias_hh_l0").role, Role::Bias);
}

/// `lstm(…, forget_bias = b)` starts the forget gate's block of `bias_ih` (PyTorch's gate
/// order i, f, g, o: values h..2h) at b, everything else of the biases at zero; in both
/// directions of a bidirectional layer.
#[test]
fn an_lstms_forget_bias_starts_its_forget_gate_block() {
    let plan = training_plan(
        "model L { input x: [seq <= 5, 3]\n let a = x -> lstm(4, forget_bias = 1) as f\n\
         a -> bidirectional(lstm(2, output = last, forget_bias = 0.5)) as b -> dense(2) -> softmax }",
    );
    assert_eq!(param(&plan, "f.bias_ih_l0").role, Role::GateBias { from: 4, len: 4, init: 1.0 });
    assert_eq!(param(&plan, "f.bias_hh_l0").role, Role::Bias);
    let mut params = vec![7f32; plan.params_len];
    initialize(&plan, &mut params, Init::He, 5);
    let values = |name: &str| params[param(&plan, name).buf.range()].to_vec();
    assert_eq!(values("f.bias_ih_l0"), [[0f32; 4], [1.0; 4], [0.0; 4], [0.0; 4]].concat());
    assert_eq!(values("f.bias_hh_l0"), [0f32; 16]);
    for b in ["b.bias_ih_l0", "b.bias_ih_l0_reverse"] {
        assert_eq!(values(b), [&[0f32; 2][..], &[0.5; 2], &[0.0; 4]].concat(), "{b}");
    }
    // Without it, PyTorch's names with plain biases.
    let plain = training_plan("model P { input x: [seq <= 5, 3]\n x -> gru(4) as g -> dense(2) -> softmax }");
    assert_eq!(param(&plain, "g.bias_ih_l0").role, Role::Bias);
    assert_eq!(param(&plain, "g.weight_hh_l0").role, Role::Weight { fan_in: 4, fan_out: 12 });
}

#[test]
fn a_fresh_local_weight_has_hes_standard_deviation_for_its_patch() {
    let plan = training_plan(LOCAL);
    let mut params = vec![0f32; plan.params_len];
    initialize(&plan, &mut params, Init::He, 5);
    let w = param(&plan, "loc.weight");
    // He: N(0, 2/fan_in) with fan_in = d·f² = 3·3² = 27 (not ow·k·d·f² = 4,320).
    let want = (2.0f64 / 27.0).sqrt();
    let got = std_dev(&params[w.buf.range()]);
    assert!((got / want - 1.0).abs() < 0.02, "std {got}, He for 27 inputs {want}");
    // Biases start at zero, the dense weight at Xavier's... He's scale for its 1,600 inputs.
    assert!(params[param(&plan, "loc.bias").buf.range()].iter().all(|&b| b == 0.0));
    let d = param(&plan, "out.weight");
    let want = (2.0f64 / 1600.0).sqrt();
    let got = std_dev(&params[d.buf.range()]);
    assert!((got / want - 1.0).abs() < 0.05, "std {got}, He for 1,600 inputs {want}");
}

#[test]
fn regularization_and_max_norm_reach_weights_only_and_each_unit_alone() {
    let plan = training_plan(LOCAL);
    let mut params = vec![1f32; plan.params_len];
    // Only weights pay the L2 penalty: 1/2 · (16,200 + 16,000) ones.
    let weights: usize = plan.params.iter().filter(|p| p.regularized()).map(|p| p.buf.len).sum();
    assert_eq!(weights, 10 * 10 * 16 * 27 + 10 * 1600);
    assert_eq!(regularization(&plan.params, &params, 0.0, 1.0, None), 0.5 * weights as f64);
    // Max-norm scales each unit's incoming weights: a local unit's 27, a dense unit's 1,600.
    max_norm(&plan.params, &mut params, 1.0);
    let w = &params[param(&plan, "loc.weight").buf.range()];
    for unit in w.chunks(27) {
        let norm = unit.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "a local unit's norm is {norm}");
    }
    assert!((w[0] - 1.0 / 27f32.sqrt()).abs() < 1e-6);
    assert!(params[param(&plan, "loc.bias").buf.range()].iter().all(|&b| b == 1.0), "biases untouched");
}

#[test]
fn gains_start_at_one_and_state_at_its_value_and_neither_is_regularized() {
    use nnlang_runtime::plan::PBuf;
    let table = vec![
        Param { name: "n.weight".into(), shape: vec![4], buf: PBuf { offset: 0, len: 4 }, role: Role::Gain },
        Param {
            name: "n.running_var".into(),
            shape: vec![4],
            buf: PBuf { offset: 4, len: 4 },
            role: Role::State { init: 1.0, momentum: 0.1 },
        },
        Param {
            name: "n.running_mean".into(),
            shape: vec![4],
            buf: PBuf { offset: 8, len: 4 },
            role: Role::State { init: 0.0, momentum: 0.1 },
        },
    ];
    let mut params = vec![7f32; 12];
    nnlang_runtime::train::initialize_table(&table, &mut params, Init::He, 1);
    assert_eq!(params, [1., 1., 1., 1., 1., 1., 1., 1., 0., 0., 0., 0.]);
    assert_eq!(regularization(&table, &params, 1.0, 1.0, None), 0.0);
    assert!(table[0].trained() && !table[1].trained() && !table[2].trained());
}

#[test]
fn the_optimizer_trains_no_state_and_moves_it_only_by_its_running_average() {
    use nnlang_runtime::interp::Updater;
    use nnlang_runtime::plan::PBuf;
    use nnlang_runtime::train::{Optimizer, OptimizerKind};
    let table = |momentum: f64| {
        vec![
            Param {
                name: "n.weight".into(),
                shape: vec![2, 2],
                buf: PBuf { offset: 0, len: 4 },
                role: Role::Weight { fan_in: 2, fan_out: 2 },
            },
            Param {
                name: "n.running_mean".into(),
                shape: vec![2],
                buf: PBuf { offset: 4, len: 2 },
                role: Role::State { init: 0.0, momentum },
            },
        ]
    };
    for kind in [
        OptimizerKind::Sgd { lr: 0.1, momentum: 0.9, nesterov: false },
        OptimizerKind::Adam { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
    ] {
        // No momentum: never moved, whatever the regularization, max-norm or clipping.
        let mut o = Optimizer::<f64>::new(&table(0.0), kind, 0.1, 0.1, Some(0.5), None);
        o.clip = Some(1e-3);
        let mut w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        o.update(&mut w, &[1.0; 6]);
        assert_eq!(&w[4..], &[5.0, 6.0], "{kind:?}");
        assert!(w[..4].iter().zip([1.0, 2.0, 3.0, 4.0]).all(|(a, b)| *a != b), "{kind:?}");
        // A running average: (1 − m)·s + m·b with b the batch's value in the slot, however
        // large (it is no gradient: clipping does not scale it, nor does the rate).
        let mut o = Optimizer::<f64>::new(&table(0.25), kind, 0.1, 0.1, None, Some(0.5));
        o.clip = Some(1e-3);
        let mut w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        o.update(&mut w, &[1.0, 1.0, 1.0, 1.0, 100.0, -100.0]);
        assert_eq!(&w[4..], &[0.75 * 5.0 + 25.0, 0.75 * 6.0 - 25.0], "{kind:?}");
        // The clipped step of the weights saw only their gradients' norm (2, clipped to 1e-3).
        let moved: f64 = w[..4].iter().zip([1.0, 2.0, 3.0, 4.0]).map(|(a, b)| (a - b).abs()).sum();
        assert!(moved < 1.0, "{kind:?}: the weights moved by {moved}");
        // The weight average takes the state as it is.
        let avg = o.eval_weights(&w).to_vec();
        assert_eq!(&avg[4..], &w[4..], "{kind:?}");
    }
}

/// AdamW decays the weights alone, by `1 − lr·weight_decay` before the step: with a zero
/// gradient (Adam's step is then zero) a weight becomes exactly `w·(1 − lr·wd)`, and a bias
/// and a state are left as they are.
#[test]
fn adamw_decays_the_weights_alone() {
    use nnlang_runtime::interp::Updater;
    use nnlang_runtime::plan::PBuf;
    use nnlang_runtime::train::{Optimizer, OptimizerKind};
    let table = vec![
        Param {
            name: "n.weight".into(),
            shape: vec![2, 2],
            buf: PBuf { offset: 0, len: 4 },
            role: Role::Weight { fan_in: 2, fan_out: 2 },
        },
        Param { name: "n.bias".into(), shape: vec![2], buf: PBuf { offset: 4, len: 2 }, role: Role::Bias },
        Param { name: "g.weight".into(), shape: vec![2], buf: PBuf { offset: 6, len: 2 }, role: Role::Gain },
    ];
    let kind = OptimizerKind::Adam { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.5 };
    let mut o = Optimizer::<f64>::new(&table, kind, 0.0, 0.0, None, None);
    let mut w = vec![1.0, -2.0, 3.0, -4.0, 5.0, 6.0, 7.0, 8.0];
    o.update(&mut w, &[0.0; 8]);
    let keep = 1.0 - 0.1 * 0.5;
    assert_eq!(&w[..4], &[keep, -2.0 * keep, 3.0 * keep, -4.0 * keep], "weights times 1 − 0.1·0.5");
    assert_eq!(&w[4..], &[5.0, 6.0, 7.0, 8.0], "biases and gains untouched");
}

/// A batch norm that sees one value per channel (one example after a dense layer: the last
/// batch of an epoch can be that small) normalizes it to its shift and leaves the running
/// averages where they are, rather than pulling the variance toward zero.
#[test]
fn a_batch_of_one_leaves_the_running_averages_as_they_are() {
    use nnlang_runtime::interp::Exec;
    let src = "model M { input x: [3]\n x -> dense(4) -> batchnorm(momentum = 0.5) -> dense(2) -> softmax }";
    let plan = training_plan(src);
    let mut e = Exec::<f64>::new(&plan, 0);
    initialize(&plan, &mut e.params, Init::He, 1);
    let (mean, var) = (param(&plan, "batchnorm_0.running_mean").buf, param(&plan, "batchnorm_0.running_var").buf);
    e.params[mean.range()].copy_from_slice(&[0.5, -0.5, 1.0, 2.0]);
    e.params[var.range()].copy_from_slice(&[1.5, 2.5, 0.5, 3.0]);
    e.set_input(&plan, 0, 1, &[0.3, -0.7, 1.1]);
    e.set_target(&plan, 1, &[1.0]);
    e.run(&plan, 1, None).expect("runs");
    assert_eq!(&e.grads[mean.range()], &e.params[mean.range()], "the mean's slot holds the running mean");
    assert_eq!(&e.grads[var.range()], &e.params[var.range()], "the variance's slot holds the running variance");
}
