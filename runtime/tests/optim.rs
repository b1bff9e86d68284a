//! The update rules against values computed by hand, and the pieces around them: max-norm,
//! the weight average, schedules, initialization.

use nnlang_runtime::interp::Updater;
use nnlang_runtime::plan::{ABuf, PBuf, Param, Plan, Role};
use nnlang_runtime::train::{initialize, regularization, scheduled_lr, Init, Optimizer, OptimizerKind, Schedule};

/// A plan with one weight `[2, 2]` and one bias `[2]`, and no steps.
fn plan() -> Plan {
    let w = Param {
        name: "fc.weight".into(),
        shape: vec![2, 2],
        buf: PBuf { offset: 0, len: 4 },
        role: Role::Weight { fan_in: 2, fan_out: 2 },
    };
    let b = Param { name: "fc.bias".into(), shape: vec![2], buf: PBuf { offset: 4, len: 2 }, role: Role::Bias };
    Plan {
        max_batch: 1,
        arena_len: 0,
        naive_len: 0,
        steps: Vec::new(),
        inputs: Vec::new(),
        input_ids: Vec::new(),
        target: None,
        output: ABuf::NONE,
        params: vec![w, b],
        params_len: 6,
        sequence: None,
        carried: Vec::new(),
        origins: Vec::new(),
        facts: Vec::new(),
        input_grads: Vec::new(),
    }
}

fn close(a: &[f64], b: &[f64]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
    }
}

#[test]
fn sgd_with_l2_leaves_biases_alone() {
    let p = plan();
    let mut o = Optimizer::<f64>::new(
        &p.params,
        OptimizerKind::Sgd { lr: 0.1, momentum: 0.0, nesterov: false },
        0.0,
        0.5,
        None,
        None,
    );
    let mut w = vec![1.0, -2.0, 0.0, 4.0, 1.0, 1.0];
    let g = vec![0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
    o.update(&mut w, &g);
    // w − lr·(g + λw) for weights, w − lr·g for biases.
    close(&w, &[1.0 - 0.1 * (0.5 + 0.5), -2.0 - 0.1 * (0.5 - 1.0), -0.05, 4.0 - 0.1 * 2.5, 0.95, 0.95]);
}

#[test]
fn momentum_and_nesterov_follow_the_notes() {
    let p = plan();
    for nesterov in [false, true] {
        let mut o = Optimizer::<f64>::new(
            &p.params,
            OptimizerKind::Sgd { lr: 0.1, momentum: 0.9, nesterov },
            0.0,
            0.0,
            None,
            None,
        );
        let mut w = vec![1.0; 6];
        let g = vec![1.0; 6];
        o.update(&mut w, &g); // v = −0.1
        o.update(&mut w, &g); // v = 0.9·(−0.1) − 0.1 = −0.19
        let expected = if nesterov {
            // w += −μ·v_prev + (1 + μ)·v, twice: first −0 + 1.9·(−0.1), then +0.09 + 1.9·(−0.19).
            1.0 - 0.19 + 0.09 - 0.361
        } else {
            1.0 - 0.1 - 0.19
        };
        close(&w, &[expected; 6]);
    }
}

#[test]
fn adam_corrects_its_bias() {
    let p = plan();
    let mut o = Optimizer::<f64>::new(
        &p.params,
        OptimizerKind::Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        0.0,
        0.0,
        None,
        None,
    );
    let mut w = vec![0.0; 6];
    o.update(&mut w, &[2.0, -3.0, 0.5, 1.0, 1.0, 1.0]);
    // After one step m̂ = g and v̂ = g², so every weight moves by −lr·sign(g).
    for (x, s) in w.iter().zip([-1.0, 1.0, -1.0, -1.0, -1.0, -1.0]) {
        assert!((x - 0.01 * s).abs() < 1e-8, "{w:?}");
    }
}

#[test]
fn max_norm_projects_each_unit_and_the_average_follows() {
    let p = plan();
    let mut o = Optimizer::<f64>::new(
        &p.params,
        OptimizerKind::Sgd { lr: 1.0, momentum: 0.0, nesterov: false },
        0.0,
        0.0,
        Some(1.0),
        Some(0.5),
    );
    let mut w = vec![3.0, 4.0, 0.3, 0.4, 10.0, 10.0];
    o.update(&mut w, &[0.0; 6]);
    // Row 0 has norm 5 → scaled to 1; row 1 is inside; biases are never projected.
    close(&w, &[0.6, 0.8, 0.3, 0.4, 10.0, 10.0]);
    assert_eq!(o.average.as_deref(), Some(&w[..]), "the average starts at the first weights");
    o.update(&mut w, &[0.0, 0.0, 0.0, 0.0, 2.0, 2.0]);
    let avg = o.average.clone().expect("average");
    close(&avg, &[0.6, 0.8, 0.3, 0.4, 9.0, 9.0]);
    assert_eq!(o.eval_weights(&w), &avg[..]);
}

#[test]
fn regularization_penalty_and_gradient() {
    let p = plan();
    let w = vec![1.0, -2.0, 0.0, 3.0, 5.0, 5.0];
    let mut g = vec![0.0; 6];
    let penalty = regularization(&p.params, &w, 0.1, 0.2, Some(&mut g));
    // ½·0.2·(1 + 4 + 0 + 9) + 0.1·(1 + 2 + 0 + 3), biases exempt.
    assert!((penalty - (1.4 + 0.6)).abs() < 1e-12);
    close(&g, &[0.2 + 0.1, -0.4 - 0.1, 0.0, 0.6 + 0.1, 0.0, 0.0]);
}

#[test]
fn schedules() {
    assert_eq!(scheduled_lr(0.1, Schedule::Constant, 7), 0.1);
    let step = Schedule::Step { every: 5, factor: 0.5 };
    assert_eq!([0, 4, 5, 9, 10].map(|e| scheduled_lr(0.1, step, e)), [0.1, 0.1, 0.05, 0.05, 0.025]);
    assert!((scheduled_lr(1.0, Schedule::Exponential { decay: 0.9 }, 3) - 0.729).abs() < 1e-12);
}

#[test]
fn initialization_scales_and_repeats() {
    let w = Param {
        name: "big.weight".into(),
        shape: vec![200, 400],
        buf: PBuf { offset: 0, len: 80_000 },
        role: Role::Weight { fan_in: 400, fan_out: 200 },
    };
    let b =
        Param { name: "big.bias".into(), shape: vec![200], buf: PBuf { offset: 80_000, len: 200 }, role: Role::Bias };
    let mut p = plan();
    p.params = vec![w, b];
    p.params_len = 80_200;
    let std = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    for (init, expected) in [
        (Init::Xavier, (1.0f64 / 400.0).sqrt()),
        (Init::He, (2.0f64 / 400.0).sqrt()),
        (Init::Normal { std: 0.01 }, 0.01),
    ] {
        let mut v = vec![1.0f64; 80_200];
        initialize(&p, &mut v, init, 3);
        let s = std(&v[..80_000]);
        assert!((s / expected - 1.0).abs() < 0.02, "{init:?}: std {s}, expected {expected}");
        assert!(v[80_000..].iter().all(|&b| b == 0.0), "biases start at zero");
        let mut again = vec![0.0f64; 80_200];
        initialize(&p, &mut again, init, 3);
        assert_eq!(v, again, "the same seed gives the same weights");
    }
    let mut v = vec![0.0f64; 80_200];
    initialize(&p, &mut v, Init::Uniform { a: 0.05 }, 3);
    assert!(v[..80_000].iter().all(|x| x.abs() <= 0.05) && std(&v[..80_000]) > 0.025);
}

/// Clipping by global norm scales the data gradients by clip / ‖g‖ (‖g‖ over weights and
/// biases together) when above `clip`, leaves them alone below it, and adds L2 after.
#[test]
fn clipping_by_global_norm() {
    let p = plan();
    let sgd = OptimizerKind::Sgd { lr: 1.0, momentum: 0.0, nesterov: false };
    // ‖g‖ = ‖(3, 0, 0, 0, 4, 0)‖ = 5.
    let grads = [3.0, 0.0, 0.0, 0.0, 4.0, 0.0];
    let mut opt = Optimizer::<f64>::new(&p.params, sgd, 0.0, 0.5, None, None);
    opt.clip = Some(1.0);
    let mut w = vec![1.0; 6];
    opt.update(&mut w, &grads);
    // Weights: w − (g · 1/(5 + 1e-6) + 0.5 · w); the bias has no L2.
    let k = 1.0 / (5.0 + 1e-6);
    close(&w, &[1.0 - 3.0 * k - 0.5, 0.5, 0.5, 0.5, 1.0 - 4.0 * k, 1.0]);
    // Below the threshold nothing changes.
    let mut opt = Optimizer::<f64>::new(&p.params, sgd, 0.0, 0.0, None, None);
    opt.clip = Some(10.0);
    let mut w = vec![1.0; 6];
    opt.update(&mut w, &grads);
    close(&w, &[-2.0, 1.0, 1.0, 1.0, -3.0, 1.0]);
}
