//! The generated Rust of every example that runs, formatted with prettyplease, as snapshots;
//! `nnlangc emit --rust` prints the same.

mod common;

use nnlang::back::rust as codegen;
use nnlang::{compile, Options};

#[test]
fn generated_code_snapshots() {
    let root = common::root();
    let mut generated = 0;
    for (stem, rel, src) in common::nn_files(&root.join("examples"), &root) {
        let c = compile(&src, &Options::default()).expect("compiles");
        assert!(!c.has_errors(), "{rel}");
        for m in &c.models {
            match codegen::generate(&c, m) {
                Ok(tokens) => {
                    let text = codegen::pretty(&tokens);
                    assert!(syn::parse_file(&text).is_ok(), "{rel}: generated code parses");
                    insta::assert_snapshot!(format!("{stem}.rs"), text);
                    generated += 1;
                }
                // Models with layers that have no kernels yet are refused, with the reason.
                Err(diags) => assert!(diags.iter().any(|d| d.message.contains("cannot run yet")), "{rel}: {diags:?}"),
            }
        }
    }
    assert!(generated >= 4, "generated {generated} models");
}

#[test]
fn emit_rust_prints_the_generated_model() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["emit", "--rust", "examples/logistic_regression.nn"])
        .current_dir(common::root())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pub struct LogReg {") && text.contains("::nnlang_runtime::ops::dense("), "{text}");
    // A sequence of variable length with no longest length cannot be planned: refused, with
    // the spelling that fixes it.
    let dir = common::temp_dir("emit-unbounded");
    let src = dir.join("tagger.nn");
    std::fs::write(&src, "model T {\n    input x: [seq, 12]\n    x -> rnn(8) -> dense(3) -> softmax\n}\n")
        .expect("writes");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["emit", "--rust"])
        .arg(&src)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`x` is a sequence of variable length with no longest length"), "{err}");
    assert!(err.contains("give the longest: `input x: [seq <= 100, 12]`"), "{err}");
}
