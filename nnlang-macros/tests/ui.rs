//! A mistake in a model inside `nn!` is a compile error carrying nnlang's diagnostic, at the
//! place in the Rust source where the mistake is; the macro never panics.

#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
