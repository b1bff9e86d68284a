//! The corpus of malformed programs in `tests/errors/`: each one's rendered diagnostics are
//! a snapshot, so their wording is reviewed like code. Every file must produce at least one
//! error, and every error must point inside the file.

mod common;

use nnlang::{compile, diag::render_all, Options};

#[test]
fn every_malformed_program_is_explained() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = common::nn_files(&crate_dir.join("tests/errors"), crate_dir);
    assert!(files.len() >= 40, "the corpus keeps at least 40 programs, found {}", files.len());
    for (stem, rel, src) in files {
        let compiled = compile(&src, &Options::default()).expect("no usage error");
        assert!(compiled.has_errors(), "{rel} should be rejected");
        for d in &compiled.diagnostics {
            for l in &d.labels {
                assert!(l.span.end <= src.len() && l.span.start <= l.span.end, "{rel}: label outside the file");
            }
        }
        insta::assert_snapshot!(stem, render_all(&compiled.diagnostics, &rel, &src));
    }
}
