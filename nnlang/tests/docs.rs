//! The examples in docs/language.md are real: every `nn` code block parses, and every block
//! that defines a model compiles without errors.

mod common;

use nnlang::{compile, diag::render_all, syntax, Options};

#[test]
fn every_code_block_in_the_language_reference_is_valid() {
    let doc = std::fs::read_to_string(common::root().join("docs/language.md")).expect("docs/language.md exists");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```nn") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 11, "found {} nn blocks", blocks.len());
    for src in &blocks {
        let file = syntax::parse(src).map_err(|d| d.render("doc.nn", src));
        assert!(file.is_ok(), "{}", file.err().unwrap_or_default());
        if src.contains("model ") {
            let c = compile(src, &Options::default()).expect("no usage error");
            assert!(!c.has_errors(), "{}\n{}", src, render_all(&c.diagnostics, "doc.nn", src));
        }
    }
}
