//! What an editor asks (`nnlang::ide`, behind `nnlangc lsp`): names resolved to their
//! declarations and uses across models, blocks and recipes; renames refused where they would
//! break the program; completion by place, including in text that does not parse; hover on
//! block uses, names and windows.

use nnlang::ide::{Analysis, CompletionKind, NameKind};

const SRC: &str = "block Residual(width) {
    input x
    let y = x -> dense(width) -> relu -> dense(width)
    add(x, y)
}

model Net(width = 32, blocks = 2) {
    input image: [28, 28, 1]

    let features = image -> conv(filters = width, size = 3, pad = same) -> relu -> maxpool(size = 2)
    features -> flatten -> dense(width) -> [Residual(width)] * blocks -> dense(10) -> softmax
}

train Net on digits {
    loss      = cross_entropy
    optimizer = adam(lr = 1e-3)
    regularize { l2 = 1e-4 }
    epochs    = 2
}

data digits {
    train = csv(\"digits.csv\", label = 0)
}

search Net {
    trials = 4
    width ~ choice(16, 32)
}
";

fn at(src: &str, needle: &str, nth: usize) -> usize {
    src.match_indices(needle).nth(nth).map(|(i, _)| i).expect("in the source")
}

fn text(src: &str, s: nnlang::diag::Span) -> &str {
    &src[s.start..s.end]
}

#[test]
fn names_resolve_across_models_blocks_and_recipes() {
    let a = Analysis::new(SRC);
    assert!(a.diagnostics().is_empty(), "{:?}", a.diagnostics());
    // A `let`: declared once, used once.
    let refs = a.references(at(SRC, "features", 1), true);
    assert_eq!(refs.len(), 2);
    assert!(refs.iter().all(|s| text(SRC, *s) == "features"));
    assert_eq!(a.definition(at(SRC, "features", 1)), Some(refs[0]));
    // A block: its definition from its use.
    let def = a.definition(at(SRC, "Residual(width)]", 0)).expect("the block");
    assert_eq!(def.start, at(SRC, "Residual", 0));
    // A model: used by train and search; a data set by train.
    let model_refs = a.references(at(SRC, "Net", 0), false);
    assert_eq!(model_refs.len(), 2, "train Net, search Net");
    assert_eq!(a.definition(at(SRC, "digits", 0)).map(|s| s.start), Some(at(SRC, "digits", 1)));
    // A model parameter: used in conv, dense, the block's argument, and sampled by search.
    let width = a.references(at(SRC, "width = 32", 0), false);
    assert_eq!(width.len(), 4, "{width:?}");
    // The block's own `width` is another name.
    let inner = a.references(at(SRC, "width", 0), false);
    assert_eq!(inner.len(), 2);
    let kinds: Vec<NameKind> = a.names().iter().map(|n| n.kind).collect();
    for k in [NameKind::Model, NameKind::Block, NameKind::Data, NameKind::Param, NameKind::Input, NameKind::Let] {
        assert!(kinds.contains(&k), "{k:?}");
    }
}

#[test]
fn renames_rewrite_every_use_or_say_why_not() {
    let a = Analysis::new(SRC);
    let spans = a.rename(at(SRC, "features", 0), "maps").expect("renamed");
    let mut out = SRC.to_string();
    for s in spans.iter().rev() {
        out.replace_range(s.start..s.end, "maps");
    }
    let b = Analysis::new(&out);
    assert!(b.diagnostics().is_empty(), "{:?}", b.diagnostics());
    assert!(!out.contains("features"));
    // A model parameter renamed everywhere, the search's sample included.
    let spans = a.rename(at(SRC, "width = 32", 0), "size_").expect("renamed");
    assert_eq!(spans.len(), 5);
    assert_eq!(a.rename(at(SRC, "features", 0), "image").err().as_deref(), Some("`image` already names an input here"));
    assert_eq!(
        a.rename(at(SRC, "features", 0), "2x").err().as_deref(),
        Some("`2x` is not a name: a letter or `_`, then letters, digits or `_`")
    );
    assert_eq!(a.rename(at(SRC, "features", 0), "dense").err().as_deref(), Some("`dense` is a layer"));
    assert!(a.rename(at(SRC, "->", 0), "z").is_err());
}

#[test]
fn completion_by_place() {
    let a = Analysis::new(SRC);
    let labels = |off: usize| -> Vec<(String, CompletionKind)> {
        a.completions(off).into_iter().map(|c| (c.label, c.kind)).collect()
    };
    // In a chain: layers and blocks, and the names in scope.
    let chain = labels(at(SRC, "flatten", 0));
    for want in ["conv", "lstm", "attention", "Residual", "features", "width", "image"] {
        assert!(chain.iter().any(|(l, _)| l == want), "{want}: {chain:?}");
    }
    // In a recipe: keys, then values after `=`.
    let keys = labels(at(SRC, "epochs", 0));
    for want in ["loss", "optimizer", "schedule", "warmup", "bptt", "stop"] {
        assert!(keys.iter().any(|(l, k)| l == want && *k == CompletionKind::Key), "{want}: {keys:?}");
    }
    let values = labels(at(SRC, "adam(", 0));
    assert_eq!(values.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), ["sgd", "adam", "adamw"]);
    // A sub-block's keys; a sample's distributions; keywords between items.
    let sub = labels(at(SRC, "l2", 0));
    assert_eq!(sub.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), ["l1", "l2", "max_norm"]);
    let dist = labels(at(SRC, "choice", 0));
    assert!(dist.iter().any(|(l, _)| l == "log_uniform"), "{dist:?}");
    let top = labels(at(SRC, "train Net", 0));
    assert!(top.iter().all(|(_, k)| *k == CompletionKind::Keyword) && top.len() == 6, "{top:?}");
    // Text that does not parse yet: `conv(` just typed.
    let typing = "model M {\n    input x: [8, 8, 1]\n    x -> conv(";
    let b = Analysis::new(typing);
    let args: Vec<String> = b.completions(typing.len()).into_iter().map(|c| c.label).collect();
    assert!(args.contains(&"filters = ".to_string()) && args.contains(&"dilation = ".to_string()), "{args:?}");
    // A bracket right after a character of several bytes (a dash, a Greek letter): no layer to
    // complete the arguments of, and no panic (found by the fuzz test on a mutated example).
    for typing in ["model M {\n    input x: [8]\n    x -> –(", "model M {\n    input x: [8]\n    x -> denseα("] {
        let c = Analysis::new(typing);
        let got: Vec<String> = c.completions(typing.len()).into_iter().map(|c| c.label).collect();
        assert!(!got.contains(&"filters = ".to_string()), "{typing:?}: {got:?}");
    }
}

#[test]
fn hover_on_a_block_use_shows_the_layers_it_made() {
    let a = Analysis::new(SRC);
    let h = a.hover(at(SRC, "Residual(width)]", 0) + 2).expect("a hover");
    // Two uses (blocks = 2), each a dense, relu, dense and add.
    for row in ["residual_0.dense_0", "residual_1.add_0"] {
        assert!(h.text.contains(row), "{row}:\n{}", h.text);
    }
    let pool = a.hover(at(SRC, "maxpool", 0) + 1).expect("a hover");
    assert!(pool.text.contains("height: (28 − 2)/2 + 1 = 14"), "{}", pool.text);
    // Its input's shape beside the output the row shows.
    assert!(pool.text.contains("reads `relu_0` [28, 28, 32]"), "{}", pool.text);
    let model = a.hover(at(SRC, "Net", 0)).expect("a hover");
    assert!(model.text.starts_with("**model** `Net`") && model.text.contains("parameters"), "{}", model.text);
}
