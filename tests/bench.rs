//! `nnlangc bench`: the per-layer profile of a model as written — what it counts (each
//! layer's products, exactly), what it times, how it reads, and its refusals.

mod common;
use common::*;

fn json(args: &[&str]) -> serde_json::Value {
    let out = nnlangc(args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench --json prints JSON")
}

fn layer<'a>(phase: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    phase["layers"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["layer"] == name))
        .unwrap_or_else(|| panic!("no layer {name} in {phase}"))
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

#[test]
fn the_mlp_profile_counts_each_layers_products_and_times_every_step() {
    let p = json(&["bench", "examples/mnist_mlp.nn", "--seconds", "0.2", "--batch", "32", "--json"]);
    assert_eq!((p["model"].as_str(), p["batch"].as_u64(), p["threads"].as_u64()), (Some("Mlp"), Some(32), Some(1)));
    assert!(f(&p["peak_gflops"]) > 0.5, "{p}");
    let t = &p["training"];
    // 784 → 256 → 128 → 10: a multiply–add per weight per example, forward; backward, the
    // weights' gradient and (but for the first layer, whose input needs none) the input's.
    for (name, inputs, outputs, backward_products) in
        [("dense_0", 784.0, 256.0, 1.0), ("dense_1", 256.0, 128.0, 2.0), ("dense_2", 128.0, 10.0, 2.0)]
    {
        let l = layer(t, name);
        let forward = 2.0 * 32.0 * inputs * outputs;
        assert_eq!(f(&l["forward_flops"]), forward, "{name}");
        assert_eq!(f(&l["backward_flops"]), backward_products * forward, "{name}");
        assert!(f(&l["forward_ms"]) > 0.0 && f(&l["backward_ms"]) > 0.0, "{l}");
        // Its weights, bias and activations, at least.
        assert!(f(&l["bytes"]) >= 4.0 * (inputs * outputs + 32.0 * (inputs + outputs)), "{l}");
    }
    let total: f64 = t["layers"]
        .as_array()
        .map_or(0.0, |ls| ls.iter().map(|l| f(&l["forward_flops"]) + f(&l["backward_flops"])).sum());
    assert_eq!(f(&t["flops"]), total);
    assert_eq!(
        f(&t["flops"]),
        3.0 * 2.0 * 32.0 * (784.0 * 256.0 + 256.0 * 128.0 + 128.0 * 10.0) - 2.0 * 32.0 * 784.0 * 256.0
    );
    // The loss and the optimizer have rows of their own, in the backward column.
    assert!(f(&layer(t, "(update)")["backward_ms"]) > 0.0 && f(&layer(t, "(update)")["forward_ms"]) == 0.0);
    assert!(f(&layer(t, "(loss)")["backward_ms"]) > 0.0);
    let [median, least, most] = [0, 1, 2].map(|i| f(&t["ms"][i]));
    assert!(least <= median && median <= most && least > 0.0, "{t}");
    assert!(t["runs"].as_u64().is_some_and(|n| n >= 3));
    // Inference: the same products, forward only, with the softmax; no loss, no update.
    let i = &p["inference"];
    assert_eq!(f(&layer(i, "dense_1")["forward_flops"]), 2.0 * 32.0 * 256.0 * 128.0);
    assert_eq!(f(&layer(i, "dense_1")["backward_ms"]), 0.0);
    let names: Vec<&str> =
        i["layers"].as_array().map_or(vec![], |ls| ls.iter().filter_map(|l| l["layer"].as_str()).collect());
    assert_eq!(names, ["dense_0", "dense_1", "dense_2", "softmax_0"]);
}

#[test]
fn a_convnet_counts_its_convolutions_and_names_its_nested_layers() {
    // examples/resnet.nn: blocks, strided and 1×1 convolutions, batch norms, pooling.
    let p = json(&["bench", "examples/resnet.nn", "--seconds", "0.1", "--batch", "4", "--json"]);
    let t = &p["training"];
    // The stem: 3×3, 1 → 32 channels, same padding on 28×28: 28·28·32·9 multiply–adds an
    // example, forward; its input (the image) needs no gradient.
    let stem = layer(t, "conv_0");
    assert_eq!(f(&stem["forward_flops"]), 2.0 * 4.0 * (28 * 28 * 32 * 9) as f64);
    assert_eq!(f(&stem["backward_flops"]), f(&stem["forward_flops"]));
    let names: Vec<&str> =
        t["layers"].as_array().map_or(vec![], |ls| ls.iter().filter_map(|l| l["layer"].as_str()).collect());
    assert!(names.iter().any(|n| n.starts_with("stage1.") && n.contains(".conv_")), "{names:?}");
    // A batch norm moves memory and computes no product.
    let bn =
        t["layers"].as_array().and_then(|ls| ls.iter().find(|l| l["steps"][0] == "BatchNorm")).expect("a batch norm");
    assert_eq!((f(&bn["forward_flops"]), f(&bn["backward_flops"])), (0.0, 0.0));
    assert!(f(&bn["bytes"]) > 0.0);
}

#[test]
fn the_report_reads_as_a_table_per_phase() {
    let out = nnlangc(&["bench", "examples/mnist_mlp.nn", "--seconds", "0.1", "--batch", "16"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "model Mlp at batch 16, 1 thread; made-up inputs of the model's shapes");
    assert!(lines[1].starts_with("FMA peak: ") && lines[1].contains(" GFLOP/s per thread ("), "{t}");
    let header = |s: &str| lines.iter().position(|l| l.starts_with(s)).unwrap_or_else(|| panic!("no `{s}` in\n{t}"));
    let training = header("training step: ");
    let inference = header("inference: ");
    assert!(training < inference);
    let cols: Vec<&str> = lines[training + 1].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        cols,
        ["layer", "steps", "forward µs", "backward µs", "share", "GFLOP/s fwd", "GFLOP/s bwd", "% peak", "MB", "GB/s"]
    );
    assert!(lines[training + 2].starts_with("dense_0   DenseAct, DenseActBackward"), "{t}");
    let cols: Vec<&str> = lines[inference + 1].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cols, ["layer", "steps", "µs", "share", "GFLOP/s", "% peak", "MB", "GB/s"]);
    assert!(t.contains("\n(update)  Update "), "{t}");
}

#[test]
fn two_threads_and_models_without_a_recipe_are_profiled() {
    // No `train` block: the recipe its last layer implies; two threads splitting the batch.
    let dir = temp_dir("bench-implied");
    let file = dir.join("m.nn");
    std::fs::write(&file, "model M {\n    input x: [20]\n    x -> dense(64) -> relu -> dense(3) -> softmax\n}\n")
        .expect("write");
    let p =
        json(&["bench", s(&file), "--seconds", "0.1", "--batch", "64", "--threads", "2", "--split", "batch", "--json"]);
    assert_eq!((p["threads"].as_u64(), p["split"].as_str()), (Some(2), Some("each batch")));
    assert_eq!(f(&layer(&p["training"], "dense_0")["forward_flops"]), 2.0 * 64.0 * 20.0 * 64.0);
    assert!(p["cores"].as_u64().is_some_and(|c| c >= 1));
    // More threads than cores: the peak is the cores'.
    let out = nnlangc(&["bench", s(&file), "--seconds", "0.05", "--batch", "16", "--threads", "256"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 256 {
        assert!(
            t.lines().nth(1).is_some_and(|l| l.ends_with(&format!("on the {cores} cores the 256 threads share"))),
            "{t}"
        );
    }
}

#[test]
fn bad_requests_are_refused() {
    let out = nnlangc(&["bench", "examples/mnist_mlp.nn", "--seconds", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("must be more than 0 and at most 3600"), "{}", text(&out.stderr));
    let out = nnlangc(&["bench", "examples/mnist_mlp.nn", "--batch", "0"]);
    assert_eq!(out.status.code(), Some(2));
    // A model with a mistake is explained as `check` explains it, and not timed.
    let dir = temp_dir("bench-bad");
    let file = dir.join("bad.nn");
    std::fs::write(&file, "model M {\n    input x: [28, 28, 1]\n    x -> conv(8, 5, stride = 2) -> dense(3)\n}\n")
        .expect("write");
    let out = nnlangc(&["bench", s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("12.5"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_model_of_two_inputs_has_its_inference_timed_and_says_why_not_its_training() {
    let dir = temp_dir("bench-two-inputs");
    let file = dir.join("two.nn");
    let source = "model M {\n    input a: [3]\n    input b: [4]\n    concat(a -> dense(5), b) -> tanh -> dense(2) -> softmax\n}\n";
    std::fs::write(&file, source).expect("write");
    let p = json(&["bench", s(&file), "--seconds", "0.05", "--batch", "8", "--json"]);
    assert!(p["training"].is_null(), "{p}");
    assert_eq!(p["training_skipped"], "the training step reads one input; model `M` has 2");
    assert_eq!(f(&layer(&p["inference"], "dense_0")["forward_flops"]), 2.0 * 8.0 * 3.0 * 5.0);
    let out = nnlangc(&["bench", s(&file), "--seconds", "0.05", "--batch", "8"]);
    assert!(
        text(&out.stdout).contains("\ntraining step: not timed (the training step reads one input; model `M` has 2)\n")
    );
}

#[test]
fn recurrent_layers_count_their_input_and_state_products_at_every_step() {
    // examples/rnn_tagger.nn: 12 features → rnn(64) → rnn(64) → dense(9) at each of 100 steps.
    let p = json(&["bench", "examples/rnn_tagger.nn", "--seconds", "0.05", "--batch", "4", "--json"]);
    let t = &p["training"];
    let (rows, steps) = (4.0, 100.0);
    let input_state = |i: f64, h: f64| (2.0 * rows * steps * i * h, 2.0 * rows * steps * h * h);
    let (i0, h0) = input_state(12.0, 64.0);
    let (i1, h1) = input_state(64.0, 64.0);
    // Backward: the weights' gradients, the state's through time, and the input's but for
    // the first layer (its input is the data).
    for (name, fwd, bwd) in [("rnn_0", i0 + h0, i0 + 2.0 * h0), ("rnn_1", i1 + h1, i1 + 2.0 * h1 + i1)] {
        let l = layer(t, name);
        assert_eq!((f(&l["forward_flops"]), f(&l["backward_flops"])), (fwd, bwd), "{name}");
    }
    // The classifier at every step: rows × steps rows.
    assert_eq!(f(&layer(t, "dense_0")["forward_flops"]), 2.0 * rows * steps * 64.0 * 9.0);
    // Every row has steps (the per-step marks are no row of their own).
    assert!(t["layers"]
        .as_array()
        .is_some_and(|ls| ls.iter().all(|l| l["steps"].as_array().is_some_and(|s| !s.is_empty()))));
}

#[test]
fn causal_attention_counts_its_projections_and_the_scores_it_computes() {
    // examples/shakespeare_transformer.nn: width 128, 4 heads, causal, windows of 128 steps.
    let p = json(&["bench", "examples/shakespeare_transformer.nn", "--seconds", "0.05", "--batch", "2", "--json"]);
    let l = layer(&p["training"], "block_0.attention_0");
    let (rows, t, w) = (2.0, 128.0, 128.0);
    // q, k, v and the output projection; then q·kᵀ and the weighted values over the lower
    // triangle (t(t + 1)/2 pairs).
    let projections = 2.0 * rows * t * 4.0 * w * w;
    let scores = 2.0 * 2.0 * rows * (t * (t + 1.0) / 2.0) * w;
    assert_eq!(f(&l["forward_flops"]), projections + scores);
    // Backward: the projections' weight and input gradients, the scores recomputed and their
    // four gradient products.
    assert_eq!(f(&l["backward_flops"]), 2.0 * projections + 2.5 * scores);
    assert_eq!(f(&layer(&p["training"], "block_0.dense_0")["forward_flops"]), 2.0 * rows * t * w * 4.0 * w);
}
