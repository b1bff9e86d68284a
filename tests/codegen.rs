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

/// Every keyword of Rust (strict, reserved, of later editions) and every name that would
/// shadow a primitive or prelude type, as a model's name: the generated code parses, and its
/// type is the raw identifier (`r#fn`) or the name with a suffix (`Self_`, `f32_`), said in
/// its documentation. (`tests/generated.rs` compiles and runs a few of them through `nn!`.)
#[test]
fn models_named_like_rust_keywords_generate_code_that_parses() {
    // Keywords: raw identifiers.
    let raw = [
        "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "fn", "for", "if", "impl",
        "in", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "trait", "type",
        "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro", "override",
        "priv", "try", "typeof", "unsized", "virtual", "yield",
    ];
    // Names a raw identifier cannot take, primitive types and prelude names: a suffix.
    let suffixed = [
        "self", "Self", "super", "crate", "_", "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8",
        "i16", "i32", "i64", "i128", "isize", "f32", "f64", "Option", "Some", "None", "Result", "Ok", "Err", "String",
        "Vec", "Box",
    ];
    for name in raw.iter().chain(&suffixed) {
        let src = format!("model {name} {{ input x: [3]\n x -> dense(2) as fn -> softmax }}");
        let c = compile(&src, &Options::default()).expect("compiles");
        assert!(!c.has_errors(), "{name}: {:?}", c.diagnostics);
        let text = codegen::pretty(&codegen::generate(&c, &c.models[0]).expect("generates"));
        assert!(syn::parse_file(&text).is_ok(), "model `{name}`: the generated code does not parse:\n{text}");
        let want = if suffixed.contains(name) { format!("{name}_") } else { format!("r#{name}") };
        assert!(text.contains(&format!("pub struct {want} {{")), "model `{name}` should be `{want}`:\n{text}");
        assert!(text.contains(&format!("In Rust it is `{want}`")), "model `{name}`: the rename is documented");
    }
    // An ordinary name is kept as it is.
    let c = compile("model Net { input x: [3]\n x -> dense(2) }", &Options::default()).expect("compiles");
    let text = codegen::pretty(&codegen::generate(&c, &c.models[0]).expect("generates"));
    assert!(text.contains("pub struct Net {") && !text.contains("In Rust it is"), "{text}");
}

/// Every keyword of Python as a model's and a layer's name, and the names the exported file
/// itself uses (`torch`, `nn`, `F`, `Elman`, `Local`): the module is valid Python (checked by
/// `python3`'s parser where the machine has one), the class takes a suffix, and a layer keeps
/// its name (so that the weights load unchanged) through `setattr`/`getattr`.
#[test]
fn models_and_layers_named_like_python_keywords_export_valid_python() {
    let keywords = [
        "False", "None", "True", "and", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
        "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not",
        "or", "pass", "raise", "return", "try", "while", "with", "yield",
    ];
    let taken = ["torch", "nn", "F", "Elman", "Local", "load_file"];
    let python = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    for name in keywords.iter().chain(&taken) {
        let src = format!(
            "model {name} {{ input x: [4, 4, 1]\n x -> conv(2, 3, pad = same) as {name} -> flatten -> dense(3) -> softmax }}"
        );
        let c = compile(&src, &Options::default()).expect("compiles");
        assert!(!c.has_errors(), "{name}: {:?}", c.diagnostics);
        let py = nnlang::back::pytorch::generate(&c.models[0], None).expect("exports");
        assert!(py.contains(&format!("class {name}_(nn.Module):")), "model `{name}`:\n{py}");
        if keywords.contains(name) {
            assert!(py.contains(&format!("setattr(self, \"{name}\", nn.Conv2d(")), "layer `{name}`:\n{py}");
            assert!(py.contains(&format!("getattr(self, \"{name}\")(")), "layer `{name}`:\n{py}");
            assert!(!py.contains(&format!("self.{name}")), "layer `{name}` after a dot:\n{py}");
        } else {
            assert!(py.contains(&format!("self.{name} = nn.Conv2d(")), "layer `{name}`:\n{py}");
        }
        if python {
            let mut child = std::process::Command::new("python3")
                .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs");
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(py.as_bytes()).expect("writes");
            let out = child.wait_with_output().expect("python3 ends");
            assert!(out.status.success(), "`{name}`: {}\n{py}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
