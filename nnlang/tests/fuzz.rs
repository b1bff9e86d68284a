//! No input makes the compiler panic: random text, random token soups and mutations of the
//! examples go through parse, lower, infer, the recipe checks, and (for what compiles) the
//! passes and the training and inference plans.
//!
//! CI runs 400 inputs per property. The long run (over a million inputs) is
//! `NNLANG_FUZZ_CASES=340000 cargo test --release -p nnlang --test fuzz` (three properties).

mod common;

use nnlang::{compile, diag::render_all, Options};
use proptest::prelude::*;

fn run(src: &str) {
    // A file that parses formats, idempotently, to the same program.
    if nnlang::syntax::parse(src).is_ok() {
        let once = nnlang::syntax::format(src).expect("a file that parses formats");
        let twice = nnlang::syntax::format(&once).expect("the formatted text parses");
        assert_eq!(once, twice, "formatting is not idempotent on:\n{src}");
        assert_eq!(common::meaning(src), common::meaning(&once), "formatting changed the meaning of:\n{src}");
    }
    // An editor's questions, anywhere in the text.
    let a = nnlang::ide::Analysis::new(src);
    for off in (0..=src.len()).step_by(src.len() / 6 + 1) {
        let _ = a.hover(off);
        let _ = a.completions(off);
        let _ = a.references(off, true);
        let _ = a.rename(off, "renamed");
    }
    let _ = a.symbols();
    if let Ok(c) = compile(src, &Options::default()) {
        // Rendering must cope with every span the stages produce.
        let _ = render_all(&c.diagnostics, "fuzz.nn", src);
        for m in &c.models {
            let _ = nnlang::summary::to_text(&nnlang::summary::summarize(m));
            let loss = c.recipe_or_implied(m).loss;
            let _ = nnlang::plan(m, nnlang::plan::Mode::Training(loss), 4);
            let _ = nnlang::plan(m, nnlang::plan::Mode::Inference, 4);
        }
    }
}

/// Inputs per property: 400 in CI, more with `NNLANG_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("NNLANG_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

fn examples() -> &'static [String] {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ALL.get_or_init(read_examples)
}

fn read_examples() -> Vec<String> {
    let root = common::root();
    let mut v: Vec<String> = common::nn_files(&root.join("examples"), &root).into_iter().map(|(_, _, s)| s).collect();
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    v.extend(common::nn_files(&crate_dir.join("tests/errors"), crate_dir).into_iter().map(|(_, _, s)| s));
    v
}

const TOKENS: &[&str] = &[
    "model",
    "M",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "input",
    "x",
    ":",
    ",",
    "let",
    "h",
    "=",
    "->",
    "*",
    "/",
    "+",
    "-",
    "?",
    "as",
    "dense",
    "conv",
    "relu",
    "softmax",
    "maxpool",
    "rnn",
    "bidirectional",
    "add",
    "concat",
    "flatten",
    "dropout",
    "keep",
    "0",
    "1",
    "3",
    "28",
    "0.5",
    "1e9",
    "99999999999999999999",
    "true",
    "pool",
    "seq",
    "same",
    "train",
    "on",
    "data",
    "d",
    "search",
    "ensemble",
    "~",
    "log_uniform",
    "stage",
    "10%",
    "\"s\"",
    "\n",
    " ",
    "//c\n",
    "local",
    "maxout",
    "size",
    "stride",
    "pad",
    "// a comment\n",
    "/* a comment */",
    "\n",
    ";",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        run(&s);
    }

    #[test]
    fn token_soup_never_panics(toks in proptest::collection::vec(0..TOKENS.len(), 0..80)) {
        let src: Vec<&str> = toks.into_iter().map(|i| TOKENS[i]).collect();
        run(&src.join(" "));
    }

    #[test]
    fn mutated_examples_never_panic(which in 0usize..1000, edits in proptest::collection::vec((0usize..10_000, 0usize..4, 0..TOKENS.len()), 1..6)) {
        let all = examples();
        let mut src = all[which % all.len()].clone();
        for (at, kind, tok) in edits {
            let mut at = at % (src.len() + 1);
            while !src.is_char_boundary(at) { at -= 1; }
            match kind {
                0 => src.insert_str(at, TOKENS[tok]),
                1 => { let mut end = (at + 1 + tok % 7).min(src.len()); while !src.is_char_boundary(end) { end += 1; } src.replace_range(at..end, ""); }
                2 => { let mut end = (at + 3).min(src.len()); while !src.is_char_boundary(end) { end += 1; } src.replace_range(at..end, TOKENS[tok]); }
                _ => { let n = src.len(); src.truncate(at.min(n)); }
            }
        }
        run(&src);
    }
}

/// `src` is refused with an error whose message contains `message`, located at a place in
/// the source (a line and column of `fuzz.nn`).
fn located_error(src: &str, message: &str) {
    let c = compile(src, &Options::default()).expect("a source error, not a usage error");
    let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(!errors.is_empty(), "no error for:\n{src}");
    let first = errors[0];
    assert!(first.message.contains(message), "expected `{message}`, found `{}`", first.message);
    let label = first.labels.first().expect("the error points somewhere");
    assert!(label.span.start <= label.span.end && label.span.end <= src.len(), "span {:?} in the source", label.span);
    let text = render_all(&c.diagnostics, "fuzz.nn", src);
    assert!(text.contains("--> fuzz.nn:"), "rendered with its place:\n{text}");
}

/// `src` is a legal model: it compiles with no error and its summary renders.
fn accepted(src: &str) {
    let c = compile(src, &Options::default()).expect("compiles");
    assert!(!c.has_errors(), "{}", render_all(&c.diagnostics, "fuzz.nn", src));
    for m in &c.models {
        assert!(nnlang::summary::to_text(&nnlang::summary::summarize(m)).contains("model"));
    }
}

#[test]
fn huge_numbers_and_deep_nesting_are_errors_not_panics() {
    located_error(
        "model M(N = 99999999999999999999) { input x: [4]\n x -> [dense(1)] * N }",
        "a repetition count must be an integer",
    );
    located_error(
        "model M(N = 9223372036854775807) { input x: [4]\n x -> dense(N * N) }",
        "integer overflow in constant expression",
    );
    located_error(
        "model M { input x: [4000000000, 4000000000, 4000000000]\n x -> dense(1) }",
        "this layer needs a tensor of more than 2^40 elements",
    );
    located_error(
        "model M { input x: [100000, 100000, 3]\n x -> dense(100000) }",
        "this layer needs a tensor of more than 2^40 elements",
    );
    // 4·10⁹ × 4 weights each: large, but below the 2^40 limit on one tensor.
    accepted("model M { input x: [4]\n let a = x -> dense(4000000000)\n let b = x -> dense(4000000000)\n concat(a, b, a, b, a) }");
    // A byte-order mark at the start is white space; brackets inside comments do not nest.
    accepted("\u{feff}model M { input x: [4]\n x -> dense(2) }");
    accepted(&format!("model M {{ input x: [4]\n /* {} */ x -> dense(2) }}", "[".repeat(100)));
    const DEEP: &str = "brackets are nested more than 32 deep";
    for depth in [31, 32, 33, 100_000] {
        let deep = format!("model M {{ input x: [4]\n x -> {}dense(1){} }}", "[".repeat(depth), "]".repeat(depth));
        // `{`, the brackets and `dense(`: depth + 2 levels.
        located_error(&deep, DEEP);
        let parens =
            format!("model M(N = {}1{}) {{ input x: [4]\n x -> dense(N) }}", "(".repeat(depth), ")".repeat(depth));
        let calls = format!("model M {{ input x: [4]\n {}x{} }}", "add(x, ".repeat(depth), ")".repeat(depth));
        let mixed =
            format!("model M {{ input x: [4]\n x -> {}relu{} }}", "[(".repeat(depth / 2), ")]".repeat(depth / 2));
        for src in [parens, calls, mixed] {
            if depth <= 31 {
                accepted(&src);
            } else {
                located_error(&src, DEEP);
            }
        }
    }
}
