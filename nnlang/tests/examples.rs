//! Every example model compiles cleanly; its IR and summary are snapshots, and the numbers
//! in them are checked against the notes' formulas where they are easy to state.

mod common;

use nnlang::{compile, ir, summary, Options};

#[test]
fn every_example_compiles_and_matches_its_snapshots() {
    let root = common::root();
    let files = common::nn_files(&root.join("examples"), &root);
    assert!(files.len() >= 8, "the examples folder holds the models the docs promise");
    for (stem, rel, src) in files {
        let compiled = compile(&src, &Options::default()).expect("no usage error");
        let rendered = nnlang::diag::render_all(&compiled.diagnostics, &rel, &src);
        assert!(!compiled.has_errors(), "{rel} has errors:\n{rendered}");
        assert!(!compiled.models.is_empty(), "{rel} defines a model");
        let mut ir_text = String::new();
        let mut summary_text = String::new();
        for m in &compiled.models {
            ir::verify(&m.graph).expect("lowered IR verifies");
            ir_text.push_str(&ir::to_text(&m.graph, &m.shapes.shapes));
            summary_text.push_str(&summary::to_text(&summary::summarize(m)));
        }
        insta::assert_snapshot!(format!("{stem}.ir"), ir_text);
        insta::assert_snapshot!(format!("{stem}.summary"), summary_text);
    }
}

fn model(src: &str, opts: &Options) -> nnlang::Model {
    let c = compile(src, opts).expect("no usage error");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    c.models.into_iter().next().expect("one model")
}

fn example(name: &str) -> String {
    std::fs::read_to_string(common::root().join("examples").join(name)).expect("example exists")
}

#[test]
fn mlp_parameter_count_is_the_sum_of_weights_and_biases() {
    let m = model(&example("mnist_mlp.nn"), &Options::default());
    let s = summary::summarize(&m);
    assert_eq!(s.totals.params, 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
    let names: Vec<(&str, &[usize])> = s.parameters.iter().map(|p| (p.name.as_str(), p.shape.as_slice())).collect();
    assert_eq!(names[0], ("dense_0.weight", &[256, 784][..]), "PyTorch layout: [out, in]");
    assert_eq!(names[1], ("dense_0.bias", &[256][..]));
}

#[test]
fn conv_parameters_follow_the_notes_formula() {
    // F·F·D1 weights per filter and K biases: 3·3·3·32 + 32 = 896 for the first layer.
    let m = model(&example("convnet.nn"), &Options::default());
    let s = summary::summarize(&m);
    let conv0 = s.layers.iter().find(|l| l.name == "conv_0").expect("conv_0");
    assert_eq!(conv0.params, 3 * 3 * 3 * 32 + 32);
    let w = s.parameters.iter().find(|p| p.name == "conv_0.weight").expect("weight");
    assert_eq!(w.shape, vec![32, 3, 3, 3], "PyTorch layout: [filters, depth, F, F]");
    // 32×32 positions × 32 filters × (3·3·3 multiply-adds of 2 FLOPs).
    assert_eq!(conv0.flops.fixed, 32 * 32 * 32 * 3 * 3 * 3 * 2);
    let pool = s.layers.iter().find(|l| l.name == "maxpool_0").expect("pool");
    assert_eq!(pool.flops.fixed, 16 * 16 * 32 * 4, "one comparison per window value");
}

#[test]
fn overrides_change_repetitions_and_switch_optionals_off() {
    let src = example("convnet.nn");
    let mut opts = Options::default();
    opts.overrides.insert("N".into(), ir::ParamValue::Int(0));
    opts.overrides.insert("M".into(), ir::ParamValue::Int(2));
    opts.overrides.insert("pool".into(), ir::ParamValue::Bool(false));
    let m = model(&src, &opts);
    let kinds: Vec<&str> = m.graph.nodes.iter().map(|n| n.op.kind()).collect();
    assert_eq!(kinds, ["input", "dense", "relu", "dense", "softmax"], "N = 0 and pool = false leave no conv or pool");

    let mut opts = Options::default();
    opts.overrides.insert("N".into(), ir::ParamValue::Int(3));
    let m = model(&src, &opts);
    let convs = m.graph.nodes.iter().filter(|n| n.op.kind() == "conv").count();
    assert_eq!(convs, 9, "[[conv -> relu] * 3 -> pool] * 3");
}

#[test]
fn derived_names_count_per_kind_and_skip_user_names() {
    let src = "model M { input x: [4]\n x -> dense(3) -> dense(3) as dense_1 -> dense(2) -> relu }";
    let m = model(src, &Options::default());
    let names: Vec<&str> = m.graph.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["x", "dense_0", "dense_1", "dense_2", "relu_0"]);
}

#[test]
fn lets_lower_in_source_order_wherever_they_are_used() {
    let src = "model M { input x: [4]\n let a = x -> dense(3)\n let b = x -> dense(5)\n concat(b, a) -> dense(2) }";
    let m = model(src, &Options::default());
    let dense: Vec<(&str, &ir::Op)> =
        m.graph.nodes.iter().filter(|n| n.op.kind() == "dense").map(|n| (n.name.as_str(), &n.op)).collect();
    assert_eq!(
        dense[0],
        ("dense_0", &ir::Op::Dense(nnlang::ops::dense::Dense { units: 3, activation: None, fold: None }))
    );
    assert_eq!(
        dense[1],
        ("dense_1", &ir::Op::Dense(nnlang::ops::dense::Dense { units: 5, activation: None, fold: None }))
    );
    let out = m.graph.output.expect("output");
    assert_eq!(m.shapes.shapes[out.index()], Some(ir::Shape::fixed(&[2])));
}

#[test]
fn sequence_shapes_stay_symbolic() {
    let m = model(&example("rnn_tagger.nn"), &Options::default());
    let out = m.graph.output.expect("output");
    let shape = m.shapes.shapes[out.index()].clone().expect("shape");
    assert_eq!(shape.to_string(), "[seq <= 100, 9]");
    let s = summary::summarize(&m);
    // weight_ih [64, 12] + weight_hh [64, 64] + two biases [64]
    assert_eq!(s.layers[1].params, 64 * 12 + 64 * 64 + 2 * 64);
    assert_eq!(s.totals.activation_bytes.fixed, 0);
    assert_eq!(s.totals.activation_bytes.per_step, 4 * (12 + 64 + 64 + 9 + 9));
}

#[test]
fn json_summary_lists_inputs_layers_and_parameters() {
    let m = model(&example("mnist_mlp.nn"), &Options::default());
    let json = serde_json::to_value(summary::summarize(&m)).expect("serializes");
    assert_eq!(json["inputs"][0]["name"], "x");
    assert_eq!(json["inputs"][0]["shape"], serde_json::json!([784]));
    assert_eq!(json["layers"][1]["kind"], "dense");
    assert_eq!(json["layers"][1]["attributes"]["units"], 256);
    assert_eq!(json["parameters"][0]["shape"], serde_json::json!([256, 784]));
    assert_eq!(json["totals"]["params"], 235_146);
}

#[test]
fn emit_dot_draws_every_edge() {
    let m = model(&example("residual.nn"), &Options::default());
    let dot = ir::to_dot(&m.graph, &m.shapes.shapes);
    let edges = dot.lines().filter(|l| l.contains("->")).count();
    let expected: usize = m.graph.nodes.iter().map(|n| n.inputs.len()).sum();
    assert_eq!(edges, expected);
    insta::assert_snapshot!("residual.dot", dot);
}
