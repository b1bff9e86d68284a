//! The passes, IR text in and IR text out: every stage of the training and inference
//! pipelines of the runnable examples is a snapshot, and the optimised plan computes what
//! the unoptimised one does.

mod common;

use nnlang::ir::to_text;
use nnlang::passes::{pipeline, Level};
use nnlang::plan::{build_at, Level as PlanLevel, Loss, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::plan::TargetKind;
use rand::{RngExt, SeedableRng};

fn stages(src: &str, target: Mode) -> String {
    let c = compile(src, &Options::default()).expect("compiles");
    let m = &c.models[0];
    let mut out = String::new();
    for (name, g) in pipeline(&m.graph, target, Level::Full) {
        let (shapes, errors) = nnlang::shape::infer(&g);
        assert!(errors.is_empty(), "{name}: shapes still infer");
        out.push_str(&format!("# after {name}\n{}", to_text(&g, &shapes.shapes)));
    }
    out
}

fn example(name: &str) -> String {
    std::fs::read_to_string(common::root().join("examples").join(name)).expect("example")
}

#[test]
fn pipeline_snapshots() {
    insta::assert_snapshot!(
        "mnist_mlp.training",
        stages(&example("mnist_mlp.nn"), Mode::Training(Loss::CROSS_ENTROPY))
    );
    insta::assert_snapshot!("mnist_mlp.inference", stages(&example("mnist_mlp.nn"), Mode::Inference));
    insta::assert_snapshot!("residual.training", stages(&example("residual.nn"), Mode::Training(Loss::CROSS_ENTROPY)));
    insta::assert_snapshot!("dropout_bce.training", stages(
        "model D { input x: [20]\n x -> dropout(keep = 0.8) -> dense(16) -> tanh -> dropout(keep = 0.5) -> dense(1) -> sigmoid }",
        Mode::Training(Loss::BinaryCrossEntropy)
    ));
}

#[test]
fn the_mlp_training_arena_is_at_least_40_percent_below_the_naive_sum() {
    let c = compile(&example("mnist_mlp.nn"), &Options::default()).expect("compiles");
    let m = &c.models[0];
    let opt = build_at(m, Mode::Training(Loss::CROSS_ENTROPY), 64, PlanLevel::Full).expect("plan");
    let naive = build_at(m, Mode::Training(Loss::CROSS_ENTROPY), 64, PlanLevel::None).expect("plan");
    // Every buffer of the unoptimised plan on its own: 2·256 + 2·128 + 4·10 + 2·128 + 2·256
    // columns per example (pre-activations, activations, logits, probabilities, their
    // gradients).
    assert_eq!(naive.naive_len, 64 * (2 * 256 + 2 * 128 + 4 * 10 + 2 * 128 + 2 * 256));
    let saved = 1.0 - opt.arena_len as f64 / naive.naive_len as f64;
    assert!(saved >= 0.40, "planned {} floats, naive {} ({:.0}% less)", opt.arena_len, naive.naive_len, 100.0 * saved);
}

/// Runs a few training steps of both plans from the same weights and data; the losses and
/// the weights agree within 1e-5.
fn unoptimised_and_optimised_agree(src: &str, loss: Loss) {
    let c = compile(src, &Options::default()).expect("compiles");
    let m = &c.models[0];
    let rows = 8;
    let plans = [PlanLevel::None, PlanLevel::Full].map(|l| build_at(m, Mode::Training(loss), rows, l).expect("plan"));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut params = vec![0f32; plans[0].params_len];
    nnlang_runtime::train::initialize(&plans[0], &mut params, nnlang_runtime::train::Init::Xavier, 1);
    let x: Vec<f32> = (0..rows * plans[0].inputs[0].cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (t, kind) = plans[0].target.expect("target");
    let y: Vec<f32> = match kind {
        TargetKind::Class => (0..rows).map(|r| (r % 3) as f32).collect(),
        TargetKind::Values => (0..rows * t.cols).map(|_| rng.random_range(0.0..1.0)).collect(),
    };
    let mut results = Vec::new();
    for plan in &plans {
        let opts = nnlang_runtime::train::Options {
            optimizer: nnlang_runtime::train::OptimizerKind::Sgd { lr: 0.1, momentum: 0.9, nesterov: true },
            ..nnlang::spec::TrainRecipe::default().options(1)
        };
        let mut s = nnlang_runtime::train::Stepper::new(plan, params.clone(), &opts, 1);
        let losses: Vec<f64> = (0..5).map(|_| s.step(&x, &y, rows).expect("step")).collect();
        results.push((losses, s.into_params()));
    }
    for (a, b) in results[0].0.iter().zip(&results[1].0) {
        assert!((a - b).abs() < 1e-5, "losses {:?} vs {:?}", results[0].0, results[1].0);
    }
    for (a, b) in results[0].1.iter().zip(&results[1].1) {
        assert!((a - b).abs() < 1e-5, "weights differ: {a} vs {b}");
    }
}

#[test]
fn optimised_plans_agree_with_unoptimised_ones() {
    unoptimised_and_optimised_agree(&example("mnist_mlp.nn"), Loss::CROSS_ENTROPY);
    unoptimised_and_optimised_agree(&example("residual.nn"), Loss::CROSS_ENTROPY);
    unoptimised_and_optimised_agree(&example("logistic_regression.nn"), Loss::CROSS_ENTROPY);
    unoptimised_and_optimised_agree(&example("projection_pursuit.nn"), Loss::MeanSquaredError);
    unoptimised_and_optimised_agree(
        "model B { input x: [6]\n x -> dense(4) -> tanh -> dense(3) -> sigmoid }",
        Loss::BinaryCrossEntropy,
    );
    // Batch norms with their ReLUs fused (forward and backward), after a convolution and a
    // dense layer.
    unoptimised_and_optimised_agree(
        "model N { input x: [6, 6, 2]\n x -> conv(4, 3, pad = same) -> batchnorm -> relu -> flatten\n\
         -> dense(8) -> batchnorm -> relu -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    // Batch norms fused with the max pooling after them (`fuse-pool`), with and without a
    // ReLU, after a convolution and after the input; and where the windows would not tile the
    // map (not fused).
    unoptimised_and_optimised_agree(
        "model P { input x: [8, 8, 2]\n x -> conv(6, 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)\n\
         -> conv(4, 3, pad = same) -> batchnorm -> maxpool(size = 2) -> flatten -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
    unoptimised_and_optimised_agree(
        "model Q { input x: [6, 6, 3]\n x -> batchnorm -> relu -> maxpool(size = 3)\n\
         -> conv(4, 1) -> batchnorm -> relu -> maxpool(size = 2, round = floor) -> flatten -> dense(3) -> softmax }",
        Loss::CROSS_ENTROPY,
    );
}

/// A convolution whose output only a batch norm reads makes the batch norm's input gradient
/// one example at a time in its own backward step (`ConvBnBackward`, the batch norm's step
/// keeping only its sums' means): the same losses and weights, bit for bit, as the plan with
/// the two steps apart (the whole gradient written, then read) — with the batch norm's ReLU
/// and without, fused with a max pooling and not, the convolution's input gradient asked for
/// and not, its filters a whole number of vectors and not, with and without a bias, at
/// stride 1 and 2. Where the convolution's input gradient is not its register tiles' (fewer
/// than 8 channels in) the steps stay apart.
#[test]
fn convolutions_make_their_batch_norms_input_gradients_as_the_two_steps_did() {
    use nnlang_runtime::plan::{ABuf, Act, Step, Write};
    let src = "model F { input x: [8, 8, 3]\n\
               x -> conv(8, 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)\n\
               -> conv(12, 3, pad = same) -> batchnorm -> relu\n\
               -> conv(16, 3, pad = same, bias = false) -> batchnorm -> maxpool(size = 2)\n\
               -> conv(16, 3, pad = same) -> batchnorm\n\
               -> conv(4, 3, stride = 2, pad = 1, round = floor) -> batchnorm -> relu\n\
               -> conv(4, 1) -> batchnorm -> globalavgpool -> dense(3) -> softmax }";
    let c = compile(src, &Options::default()).expect("compiles");
    let m = &c.models[0];
    let rows = 6;
    let fused = build_at(m, Mode::Training(Loss::CROSS_ENTROPY), rows, PlanLevel::Full).expect("plan");
    let kinds =
        |p: &nnlang_runtime::plan::Plan| p.steps.iter().filter(|s| matches!(s, Step::ConvBnBackward { .. })).count();
    // conv_0 (no input gradient), conv_1, conv_2, conv_3 and conv_4 (stride 2: its input
    // gradient part by part); not conv_5 (4 channels in).
    assert_eq!(kinds(&fused), 5, "{:#?}", fused.steps);
    // The same plan with the steps apart again: each batch norm writes its input gradient
    // into a buffer of its own at the end of the arena, which the convolution reads.
    let mut apart = fused.clone();
    for i in 1..apart.steps.len() {
        let Step::ConvBnBackward { g, x, y, w, dx, dw, db, ws, .. } = apart.steps[i] else { continue };
        let d = ABuf::arena(apart.arena_len, g.oh * g.ow * g.k);
        apart.arena_len += rows * d.cols;
        match &mut apart.steps[i - 1] {
            Step::BatchNormBackward { dx, means, .. } | Step::BatchNormPoolBackward { dx, means, .. } => {
                assert!(dx.is_none() && *means);
                (*dx, *means) = (Some((d, Write::Assign)), false);
            }
            other => panic!("before a ConvBnBackward: {other:?}"),
        }
        apart.steps[i] = Step::ConvBackward { g, f: Act::Identity, x, y, w, dy: d, dw, db, dx, ws };
    }
    assert_eq!(kinds(&apart), 0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut params = vec![0f32; fused.params_len];
    nnlang_runtime::train::initialize(&fused, &mut params, nnlang_runtime::train::Init::He, 3);
    let x: Vec<f32> = (0..rows * fused.inputs[0].cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<f32> = (0..rows).map(|r| (r % 3) as f32).collect();
    let run = |plan: &nnlang_runtime::plan::Plan| {
        let opts = nnlang_runtime::train::Options {
            optimizer: nnlang_runtime::train::OptimizerKind::Sgd { lr: 0.05, momentum: 0.9, nesterov: false },
            ..nnlang::spec::TrainRecipe::default().options(1)
        };
        let mut s = nnlang_runtime::train::Stepper::new(plan, params.clone(), &opts, 1);
        let losses: Vec<u64> = (0..3).map(|_| s.step(&x, &y, rows).expect("step").to_bits()).collect();
        (losses, s.into_params().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    let (a, b) = (run(&fused), run(&apart));
    assert_eq!(a.0, b.0, "losses");
    assert!(a.1 == b.1, "the weights differ after three steps");
    // And they moved: the steps did something.
    assert!(a.1.iter().zip(&params).any(|(v, p)| *v != p.to_bits()));
}

/// A first convolution of short patches (one to three input channels, at most 12 taps a
/// filter) whose output only a batch norm reads is computed again example by example where
/// the batch norm's passes need it (`ConvBatchNorm`, `ConvBatchNormBackward`): the same
/// losses, running statistics and weights, bit for bit, as the plan with the convolution's
/// output stored and the steps apart — with the batch norm's ReLU and fused max pooling and
/// without, with and without a bias, filters a whole number of vectors and not, stride 1 and
/// 2, a map recomputed a few examples at a time, on one thread and on two sharing the batch;
/// and with the pooling, the backward pass's sums from the windows' peaks the forward step
/// kept as from the convolution computed again. A convolution of 18 taps stays apart.
#[test]
fn short_convolutions_computed_again_for_batch_norms_as_stored() {
    use nnlang_runtime::plan::{ABuf, Act, Geometry, Share, Step, StepFacts};
    // A max pooling's `f × f` windows tiling the convolution's output.
    let windows = |g: &Geometry, f: usize| {
        let (h, w) = (g.oh, g.ow);
        Geometry { h, w, d: g.k, k: g.k, f, s: f, p: 0, oh: h / f, ow: w / f, dil: 1, groups: 1 }
    };
    let models = [
        "model A { input x: [10, 10, 1]\n x -> conv(16, 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)\n\
         -> conv(8, 3, pad = same) -> batchnorm -> relu -> globalavgpool -> dense(3) -> softmax }",
        "model B { input x: [9, 7, 2]\n x -> conv(12, 2, bias = false) -> batchnorm -> flatten -> dense(3) -> softmax }",
        "model C { input x: [8, 8, 3]\n x -> conv(40, 2, stride = 2) -> batchnorm -> relu -> flatten -> dense(3) -> softmax }",
        // A map of 51,200 values an example: the convolution recomputed two examples at a time.
        "model E { input x: [40, 40, 1]\n x -> conv(32, 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)\n\
         -> globalavgpool -> dense(3) -> softmax }",
        // Pooled without a ReLU: 2 × 2 over two channels, 10 filters.
        "model F { input x: [13, 13, 2]\n x -> conv(10, 2) -> batchnorm -> maxpool(size = 2) -> flatten -> dense(3) -> softmax }",
        "model D { input x: [8, 8, 2]\n x -> conv(8, 3, pad = same) -> batchnorm -> relu -> flatten -> dense(3) -> softmax }",
    ];
    for (i, src) in models.iter().enumerate() {
        let c = compile(src, &Options::default()).expect("compiles");
        let rows = 6;
        let fused = build_at(&c.models[0], Mode::Training(Loss::CROSS_ENTROPY), rows, PlanLevel::Full).expect("plan");
        let count = fused.steps.iter().filter(|s| matches!(s, Step::ConvBatchNorm { .. })).count();
        assert_eq!(count, usize::from(i < 5), "{src}");
        // The steps apart again: the convolution's output stored at the end of the arena.
        let mut apart = fused.clone();
        let mut i = 0;
        let mut stored = Vec::new();
        while i < apart.steps.len() {
            match apart.steps[i].clone() {
                Step::ConvBatchNorm { g, x, w, b, y, gamma, beta, mean, var, stats, eps, relu, pool, .. } => {
                    let z = ABuf::arena(apart.arena_len, g.oh * g.ow * g.k);
                    apart.arena_len += rows * z.cols;
                    let ws = ABuf::arena(apart.arena_len, g.oh * g.ow * g.d * g.f * g.f * rows);
                    apart.arena_len += ws.cols;
                    stored.push(z);
                    let bn = match pool {
                        0 => Step::BatchNorm { x: z, y, gamma, beta, mean, var, stats, eps, relu },
                        f => {
                            let pg = windows(&g, f);
                            Step::BatchNormPool { x: z, y, g: pg, gamma, beta, mean, var, stats, eps, relu }
                        }
                    };
                    apart.steps[i] = Step::Conv { g, f: Act::Identity, x, w, b, y: z, ws };
                    apart.steps.insert(i + 1, bn);
                    let meets = apart.facts[i].clone();
                    apart.facts[i] = StepFacts { share: Share::Batch, kink: None, meeting: 0 };
                    apart.facts.insert(i + 1, meets);
                    apart.origins.insert(i + 1, apart.origins[i].clone());
                    i += 2;
                }
                Step::ConvBatchNormBackward {
                    g,
                    x,
                    w,
                    dy,
                    dw,
                    db,
                    dx,
                    ws,
                    gamma,
                    beta,
                    dgamma,
                    dbeta,
                    stats,
                    relu,
                    pool,
                    ..
                } => {
                    let z = stored.pop().expect("the forward step came first");
                    let bn = match pool {
                        0 => Step::BatchNormBackward {
                            x: z,
                            dy,
                            gamma,
                            beta,
                            dgamma,
                            dbeta,
                            stats,
                            dx: None,
                            relu,
                            means: true,
                        },
                        f => {
                            let pg = windows(&g, f);
                            Step::BatchNormPoolBackward {
                                x: z,
                                dy,
                                g: pg,
                                gamma,
                                beta,
                                dgamma,
                                dbeta,
                                stats,
                                dx: None,
                                relu,
                                means: true,
                            }
                        }
                    };
                    apart.steps[i] =
                        Step::ConvBnBackward { g, x, y: z, w, dy, dw, db, dx, ws, gamma, beta, stats, relu, pool };
                    apart.steps.insert(i, bn);
                    let meets = apart.facts[i].clone();
                    apart.facts[i] = StepFacts { share: Share::Batch, kink: None, meeting: 0 };
                    apart.facts.insert(i, meets);
                    apart.origins.insert(i, apart.origins[i].clone());
                    i += 2;
                }
                _ => i += 1,
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut params = vec![0f32; fused.params_len];
        nnlang_runtime::train::initialize(&fused, &mut params, nnlang_runtime::train::Init::He, 3);
        let x: Vec<f32> = (0..rows * fused.inputs[0].cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y: Vec<f32> = (0..rows).map(|r| (r % 3) as f32).collect();
        let run = |plan: &nnlang_runtime::plan::Plan, threads: usize| {
            let opts = nnlang_runtime::train::Options {
                optimizer: nnlang_runtime::train::OptimizerKind::Sgd { lr: 0.05, momentum: 0.9, nesterov: false },
                ..nnlang::spec::TrainRecipe::default().options(threads)
            };
            let mut s = nnlang_runtime::train::Stepper::new(plan, params.clone(), &opts, threads);
            let losses: Vec<u64> = (0..3).map(|_| s.step(&x, &y, rows).expect("step").to_bits()).collect();
            (losses, s.into_params().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        let one = run(&fused, 1);
        assert_eq!(one, run(&apart, 1), "{src}: one thread, the steps apart");
        // The backward step's sums from the convolution computed again, where the forward
        // step kept no windows' peaks.
        let mut no_peaks = fused.clone();
        let mut kept = 0;
        for s in &mut no_peaks.steps {
            if let Step::ConvBatchNorm { peaks, .. } | Step::ConvBatchNormBackward { peaks, .. } = s {
                kept += usize::from(peaks.take().is_some());
            }
        }
        assert_eq!(kept, 2 * count * usize::from(src.contains("maxpool")), "{src}: peaks kept with the pooling");
        assert_eq!(one, run(&no_peaks, 1), "{src}: one thread, no peaks kept");
        assert_eq!(run(&no_peaks, 2), run(&apart, 2), "{src}: two threads, no peaks kept");
        // Two threads sharing the batch meet for the batch norm's sums in the fused steps as
        // in the steps apart.
        assert_eq!(run(&fused, 2), run(&apart, 2), "{src}: two threads, the steps apart");
        assert!(one.1.iter().zip(&params).any(|(v, p)| *v != p.to_bits()), "the steps did something");
    }
}

/// `fuse-pool` fuses a max pooling into the batch norm before it only where its windows tile
/// the map: not overlapping windows, not a map they do not divide, not a batch norm read twice,
/// and never in inference (the batch norm folds into the convolution there).
#[test]
fn fuse_pool_only_where_windows_tile_the_map() {
    let fused = |src: &str, mode: Mode| {
        let c = compile(src, &Options::default()).expect("compiles");
        let plan = build_at(&c.models[0], mode, 4, PlanLevel::Full).expect("plan");
        plan.steps.iter().filter(|s| matches!(s, nnlang_runtime::plan::Step::BatchNormPool { .. })).count()
    };
    let training = Mode::Training(Loss::CROSS_ENTROPY);
    let model = |body: &str| {
        format!("model M {{ input x: [8, 8, 2]\n x -> conv(4, 3, pad = same) -> {body} -> flatten -> dense(3) -> softmax }}")
    };
    assert_eq!(fused(&model("batchnorm -> relu -> maxpool(size = 2)"), training), 1);
    assert_eq!(fused(&model("batchnorm -> maxpool(size = 4)"), training), 1);
    assert_eq!(fused(&model("batchnorm -> relu -> maxpool(size = 2)"), Mode::Inference), 0);
    assert_eq!(fused(&model("batchnorm -> relu -> maxpool(size = 2, stride = 1)"), training), 0);
    assert_eq!(fused(&model("batchnorm -> relu -> maxpool(size = 3, round = floor)"), training), 0);
    assert_eq!(fused(&model("batchnorm -> relu -> avgpool(size = 2)"), training), 0);
    assert_eq!(fused(&model("batchnorm -> tanh -> maxpool(size = 2)"), training), 0);
    let twice = "model M { input x: [8, 8, 2]\n let a = x -> conv(4, 3, pad = same) -> batchnorm -> relu\n\
                 add(a -> maxpool(size = 2), a -> avgpool(size = 2)) -> flatten -> dense(3) -> softmax }";
    assert_eq!(fused(twice, training), 0);
}

/// `fold-batchnorm`: in inference, a batch norm after a convolution (with or without a bias,
/// grouped, depthwise or not, before a fused ReLU or at the output) is computed in the
/// convolution's weights, through four folded layers.
#[test]
fn folded_batch_norms_compute_what_unfolded_ones_do() {
    folds_agree(
        "model F {\n input x: [10, 9, 3]\n\
         x -> conv(filters = 8, size = 3, pad = same) -> batchnorm -> relu\n\
         -> conv(filters = 8, size = 3, pad = same, groups = 8, bias = false) -> batchnorm(eps = 1e-3) -> relu\n\
         -> conv(filters = 12, size = 1, groups = 4) -> batchnorm -> maxpool(size = 2, round = floor)\n\
         -> conv(filters = 6, size = 3, dilation = 2, pad = 2) -> batchnorm\n\
         -> dense(5) -> softmax\n}",
        4,
        1e-6,
    );
}

/// After dense layers (on vectors, on every step of a sequence, before a fused activation,
/// at the output), the batch norm is applied to the layer's rows as they are written.
#[test]
fn batch_norms_fold_into_dense_layers() {
    folds_agree(
        "model D {\n input x: [12]\n x -> dense(16) -> batchnorm -> relu -> dense(8) -> batchnorm(eps = 1e-3)\n\
         -> dense(3) -> batchnorm -> softmax\n}",
        3,
        0.0,
    );
    folds_agree(
        "model S {\n input x: [seq = 5, 4]\n x -> dense(6) -> batchnorm -> tanh -> rnn(4, output = last)\n\
         -> dense(2) -> batchnorm\n}",
        2,
        0.0,
    );
}

/// The folded plan's outputs equal the unfolded one's within `tolerance` (1e-6; 0 after dense
/// layers) with running averages away from 0 and 1 (a convolution's two round differently in f32: `(x·W)·s` against `x·(W·s)`;
/// a dense layer's are the same bits), and the parameter tables (names, shapes, order) are the
/// same, so one checkpoint serves both.
fn folds_agree(src: &str, expected: usize, tolerance: f32) {
    let c = compile(src, &Options::default()).expect("compiles");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let m = &c.models[0];
    let rows = 7;
    let [plain, folded] =
        [PlanLevel::None, PlanLevel::Full].map(|l| build_at(m, Mode::Inference, rows, l).expect("plan"));
    let steps = |p: &nnlang_runtime::plan::Plan| {
        use nnlang_runtime::plan::Step;
        let folded = p.steps.iter().filter(|s| matches!(s, Step::ConvFolded { .. } | Step::DenseFolded { .. }));
        let norms = p.steps.iter().filter(|s| matches!(s, Step::BatchNormInfer { .. }));
        (folded.count(), norms.count())
    };
    assert_eq!((steps(&plain), steps(&folded)), ((0, expected), (expected, 0)), "every batch norm folded");
    let names =
        |p: &nnlang_runtime::plan::Plan| p.params.iter().map(|q| (q.name.clone(), q.shape.clone())).collect::<Vec<_>>();
    assert_eq!(names(&plain), names(&folded));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut params: Vec<f32> = (0..plain.params_len).map(|_| rng.random_range(-0.5..0.5)).collect();
    for q in &plain.params {
        let r = q.buf.range();
        if q.name.ends_with("running_var") {
            params[r].iter_mut().for_each(|v| *v = rng.random_range(0.5..2.0));
        } else if q.name.ends_with("running_mean") {
            params[r].iter_mut().for_each(|v| *v = rng.random_range(-1.0..1.0));
        } else if q.name.starts_with("batchnorm") && q.name.ends_with(".weight") {
            params[r].iter_mut().for_each(|v| *v = rng.random_range(0.8..1.25));
        }
    }
    let x: Vec<f32> = (0..rows * plain.inputs[0].cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    let out = |p: &nnlang_runtime::plan::Plan| {
        let mut e = nnlang_runtime::interp::Exec::<f32>::new(p, 0);
        e.params.copy_from_slice(&params);
        e.run_on(p, rows, &[&x], &[], None).expect("runs");
        e.buffer(p.output, rows).to_vec()
    };
    let (a, b) = (out(&plain), out(&folded));
    let worst = a.iter().zip(&b).map(|(u, v)| (u - v).abs()).fold(0f32, f32::max);
    eprintln!("folded vs unfolded: largest difference {worst:.2e}");
    assert!(worst <= tolerance, "folded and unfolded differ by {worst} (at most {tolerance})");
}
