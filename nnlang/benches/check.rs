//! How long `nnlangc check` takes on large models: parse, lower, verify, infer and
//! summarize a generated model of 1,000 layers (the target is well under 100 ms).
//!
//! Run with `cargo bench -p nnlang --bench check`.

use criterion::{criterion_main, Criterion};
use nnlang::{compile, summary, Options};
use std::fmt::Write;
use std::hint::black_box;

/// A chain of `layers` layers written out one by one (no repetition), with a `let` and an
/// `add` every 50 layers so that bindings and merges are exercised too.
pub fn generated_model(layers: usize) -> String {
    let mut s = String::from("model Deep(width = 64) {\n    input x: [256]\n    let h0 = x -> dense(width) -> relu\n");
    let mut n = 2;
    let mut block = 0;
    while n < layers - 3 {
        let mut line = format!("    let h{} = h{block}", block + 1);
        for _ in 0..48.min(layers - 3 - n) {
            let layer = if n % 2 == 0 { "dense(width)" } else { "relu" };
            let _ = write!(line, " -> {layer}");
            n += 1;
        }
        let _ = writeln!(s, "{line}");
        let _ = writeln!(s, "    let h{} = add(h{block}, h{}) -> tanh", block + 2, block + 1);
        n += 2;
        block += 2;
    }
    let _ = writeln!(s, "    h{block} -> dense(10) -> softmax\n}}");
    s
}

fn bench(c: &mut Criterion) {
    let src = generated_model(1000);
    let compiled = compile(&src, &Options::default()).expect("no usage error");
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics.first());
    let layers = compiled.models[0].graph.nodes.len();
    // Left for timing the whole command: `time nnlangc check target/tmp/deep_1000.nn`.
    let _ = std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("deep_1000.nn"), &src);
    assert!(layers >= 1000, "generated {layers} layers");
    c.bench_function(&format!("check {layers}-layer model"), |b| {
        b.iter(|| {
            let c = compile(black_box(&src), &Options::default()).expect("compiles");
            let s = summary::summarize(&c.models[0]);
            black_box(summary::to_text(&s))
        })
    });
}

// `criterion_group!` writes an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
use group::benches;
criterion_main!(benches);
