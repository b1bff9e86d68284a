//! `block`s: a use is the block's body written in place (same ops, shapes and parameters),
//! with its parameters bound from the arguments; every use is a namespace of its own in the
//! layers' and parameters' names; a gradient flows through blocks as through any layer.

use nnlang::session::gradcheck::{GradcheckSpec, Verdict};
use nnlang::session::Session;
use nnlang::{compile, ir, summary, Options};

fn model(src: &str) -> nnlang::Model {
    let c = compile(src, &Options::default()).expect("no usage error");
    let text = nnlang::diag::render_all(&c.diagnostics, "m.nn", src);
    assert!(!c.has_errors(), "{text}");
    c.models.into_iter().next().expect("one model")
}

fn errors(src: &str) -> String {
    let c = compile(src, &Options::default()).expect("no usage error");
    assert!(c.has_errors(), "should be refused:\n{src}");
    nnlang::diag::render_all(&c.diagnostics, "m.nn", src)
}

/// (name, kind, shape) of every node.
type Nodes = Vec<(String, &'static str, String)>;

/// Every node's (name, kind, shape), and the parameters' (name, shape).
fn outline(m: &nnlang::Model) -> (Nodes, Vec<(String, Vec<usize>)>) {
    let nodes = m
        .graph
        .ids()
        .map(|id| {
            let n = m.graph.node(id);
            let shape = m.shapes.shapes[id.index()].as_ref().map_or("?".into(), |s| s.to_string());
            (n.name.clone(), n.op.kind(), shape)
        })
        .collect();
    let params = summary::summarize(m).parameters.into_iter().map(|p| (p.name, p.shape)).collect();
    (nodes, params)
}

const RESIDUAL: &str = "block Residual(width, deep = true, k = width / 8) {
    input x
    let y = x -> conv(width, 3, pad = same) -> relu -> [conv(width, 3, pad = same) -> relu] * k -> conv(width, 1)?deep
    add(x, y)
}
";

#[test]
fn a_use_is_its_body_written_in_place() {
    let with_block = model(&format!(
        "{RESIDUAL}model M(w = 8) {{\n input image: [6, 6, 8]\n image -> Residual(w) -> Residual(width = w, deep = false) -> flatten -> dense(3)\n}}\n"
    ));
    let inline = model(
        "model M(w = 8) {
    input image: [6, 6, 8]
    let a = image -> conv(w, 3, pad = same) -> relu -> conv(w, 3, pad = same) -> relu -> conv(w, 1)
    let b = add(image, a) -> conv(w, 3, pad = same) -> relu -> conv(w, 3, pad = same) -> relu
    add(image, a, b)
}
",
    );
    let (nodes, params) = outline(&with_block);
    let kinds: Vec<&str> = nodes.iter().map(|n| n.1).collect();
    assert_eq!(
        kinds,
        [
            "input", "conv", "relu", "conv", "relu", "conv", "add", "conv", "relu", "conv", "relu", "add", "flatten",
            "dense"
        ]
    );
    // The same shapes as the layers written out.
    let (inline_nodes, _) = outline(&inline);
    assert_eq!(
        nodes[1..6].iter().map(|n| &n.2).collect::<Vec<_>>(),
        inline_nodes[1..6].iter().map(|n| &n.2).collect::<Vec<_>>()
    );
    let names: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "image",
            "residual_0.conv_0",
            "residual_0.relu_0",
            "residual_0.conv_1",
            "residual_0.relu_1",
            "residual_0.conv_2",
            "residual_0.add_0",
            "residual_1.conv_0",
            "residual_1.relu_0",
            "residual_1.conv_1",
            "residual_1.relu_1",
            "residual_1.add_0",
            "flatten_0",
            "dense_0"
        ],
        "each use numbers its own layers; the model's keep theirs"
    );
    assert_eq!(params[0], ("residual_0.conv_0.weight".to_string(), vec![8, 8, 3, 3]));
    assert_eq!(params.last().map(|p| p.0.as_str()), Some("dense_0.bias"));
    assert_eq!(params.len(), 2 * 3 + 2 * 2 + 2, "three layers with weights in the first use, two in the second");
}

#[test]
fn named_uses_and_named_groups_nest_in_the_names() {
    let m = model(&format!(
        "{RESIDUAL}block Stage(width, blocks = 2) {{
    input x
    x -> conv(width, 1) -> [Residual(width, deep = false)] * blocks
}}
model M {{
    input image: [4, 4, 2]
    image -> Stage(8) as stage1 -> [Stage(16, blocks = 1)] * 2 as tail -> Residual(16) as last -> globalavgpool -> dense(2)
}}
"
    ));
    let (nodes, params) = outline(&m);
    let names: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
    assert!(names.contains(&"stage1.conv_0"), "{names:?}");
    assert!(names.contains(&"stage1.residual_1.add_0"), "{names:?}");
    assert!(names.contains(&"tail.stage_0.residual_0.conv_1"), "{names:?}");
    assert!(names.contains(&"tail.stage_1.conv_0"), "{names:?}");
    assert!(names.contains(&"last.conv_3"), "{names:?}");
    assert!(params.iter().any(|p| p.0 == "stage1.residual_0.conv_0.weight"));
    let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "names stay unique");
    // The printed IR opens each use around its layers, with the values it bound.
    let text = ir::to_text(&m.graph, &m.shapes.shapes);
    assert!(text.contains("  stage1 = Stage(width = 8, blocks = 2) {\n"), "{text}");
    assert!(text.contains("    stage1.residual_0 = Residual(width = 8, deep = false, k = 1) {\n"), "{text}");
    assert!(text.contains("  tail {\n    tail.stage_0 = Stage(width = 16, blocks = 1) {\n"), "{text}");
}

#[test]
fn arguments_bind_by_position_by_name_and_by_default() {
    let src = |args: &str| {
        format!("{RESIDUAL}model M(w = 16) {{\n input image: [4, 4, 16]\n image -> Residual({args}) -> flatten -> dense(2)\n}}\n")
    };
    let convs = |m: &nnlang::Model| m.graph.nodes.iter().filter(|n| n.op.kind() == "conv").count();
    // k defaults to width / 8: two more convolutions; `deep` switches the 1×1 one on.
    assert_eq!(convs(&model(&src("w"))), 4);
    assert_eq!(convs(&model(&src("w, false, 0"))), 1);
    assert_eq!(convs(&model(&src("k = 3, width = w"))), 5);
    let text = errors(&src("w, deep = 1"));
    assert!(text.contains("`deep` switches an optional element, so it must be a boolean, found 1"), "{text}");
    assert!(text.contains("in this use of `Residual`"), "{text}");
    let text = errors(&src("w, w, w, w"));
    assert!(text.contains("too many arguments to `Residual`"), "{text}");
    assert!(text.contains("`Residual` takes (width, deep = …, k = …)"), "{text}");
    let text = errors(&src("\"wide\""));
    assert!(text.contains("parameter `width` of `Residual` must be an integer, a number or a boolean"), "{text}");
    let text = errors(&src("w, width = 8"));
    assert!(text.contains("`width` is given twice to `Residual`"), "{text}");
}

#[test]
fn a_mistake_in_a_block_names_the_line_and_every_use() {
    // The same shape error in two parallel uses: one error, at the line in the block, with
    // both uses labelled; a use on another shape is its own error.
    let src = "block Head(units) {
    input x
    x -> conv(units, 3, stride = 2)
}
model M {
    input image: [8, 8, 1]
    let a = image -> Head(4)
    let b = image -> Head(units = 4)
    let c = image -> conv(2, 3, pad = 2) -> Head(4)
    concat(a, b, c) -> flatten -> dense(2)
}
";
    let text = errors(src);
    assert_eq!(
        text.matches("error: the output height and width of this `conv` are not whole numbers").count(),
        2,
        "{text}"
    );
    assert!(text.contains("(8 − 3)/2 + 1 = 3.5 is not an integer"), "{text}");
    assert!(text.contains("(10 − 3)/2 + 1 = 4.5 is not an integer"), "{text}");
    assert_eq!(text.matches("in this use of `Head`").count(), 3, "{text}");
    assert!(text.contains("m.nn:3:10"), "the error points into the block:\n{text}");
}

#[test]
fn blocks_check_their_own_definition() {
    let text = errors("block B {\n input x\n input y\n add(x, y)\n}\nmodel M {\n input x: [4]\n x -> B\n}\n");
    assert!(text.contains("block `B` has more than one input"), "{text}");
    let text = errors("block B(n) {\n input n\n n -> dense(2)\n}\nmodel M {\n input x: [4]\n x -> B(1)\n}\n");
    assert!(text.contains("input `n` has the name of a parameter of `B`"), "{text}");
    let text = errors("block B {\n input x\n x\n}\nmodel M {\n input x: [4]\n x -> B -> dense(2)\n}\n");
    assert!(text.contains("the block's output is its input unchanged"), "{text}");
    let text = errors(
        "block A {\n input x\n x -> B\n}\nblock B {\n input x\n x -> A\n}\nmodel M {\n input x: [4]\n x -> A\n}\n",
    );
    assert!(text.contains("block `A` uses itself through B"), "{text}");
    assert!(text.contains("expansion: A → B → A"), "{text}");
    let text =
        errors("block B {\n input x\n x -> dense(2)\n}\nmodel M {\n input x: [4]\n let B = x -> relu\n B -> B\n}\n");
    assert!(text.contains("`let B` hides a block of the same name"), "{text}");
    let text = errors("block Head {\n input x\n x -> dense(2)\n}\nmodel M {\n input x: [4]\n x -> Haed\n}\n");
    assert!(text.contains("did you mean `Head`?"), "{text}");
    let text = errors("block M {\n input x\n x -> dense(2)\n}\nmodel M {\n input x: [4]\n x -> dense(2)\n}\n");
    assert!(text.contains("block `M` has the name of a model"), "{text}");
}

#[test]
fn gradients_flow_through_blocks() {
    let dir = std::env::temp_dir().join(format!("nnlang-blocks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("m.nn");
    std::fs::write(
        &file,
        "block Residual(width) {
    input x
    let y = x -> conv(width, 3, pad = same, bias = false) -> batchnorm -> tanh -> conv(width, 3, pad = same)
    add(x, y) -> tanh
}
block Down(width) {
    input x
    let y = x -> conv(width, 3, stride = 2, pad = 1, round = floor) -> tanh
    add(x -> conv(width, 1, stride = 2, round = floor), y)
}
model M {
    input image: [5, 5, 2]
    image -> [Residual(2)] * 2 as stage1 -> Down(3) -> globalavgpool -> dense(3) -> softmax
}
",
    )
    .expect("writes");
    let s = Session::open(&file, &Options::default()).expect("compiles");
    let m = s.model(None).expect("model");
    let report = s.gradcheck(m, &GradcheckSpec::default(), None).expect("runs");
    let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"stage1.residual_1.conv_0.weight"), "{names:?}");
    assert!(names.contains(&"down_0.conv_1.bias"), "{names:?}");
    for t in &report.tensors {
        assert_eq!(t.verdict, Verdict::Good, "{t:?}");
    }
}

#[test]
fn blocks_that_multiply_stop_at_the_layer_limit() {
    // Each block uses the next one twice: 2^24 dense layers if nothing stopped it.
    let mut src = String::new();
    for i in 0..24 {
        src.push_str(&format!("block B{i} {{\n input x\n x -> B{} -> B{}\n}}\n", i + 1, i + 1));
    }
    src.push_str("block B24 {\n input x\n x -> dense(2)\n}\nmodel M {\n input x: [2]\n x -> B0\n}\n");
    let text = errors(&src);
    assert!(text.contains("this model would have more than 1,000,000 layers"), "{text}");
    assert_eq!(text.matches("error: ").count(), 2, "one error, and the count:\n{text}");
}

#[test]
fn a_model_input_used_after_a_block_is_not_called_unused() {
    let m = model(
        "block B {\n input x\n x -> dense(4)\n}\nmodel M {\n input a: [4]\n input b: [4]\n let h = a -> B\n add(h, b) -> dense(2)\n}\n",
    );
    assert_eq!(m.graph.inputs.len(), 2);
}
