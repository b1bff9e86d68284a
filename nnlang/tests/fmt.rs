//! `nnlangc fmt`'s layout: every shipped example is in it; formatting is idempotent and never
//! changes what a program means (the same AST, spans aside, and the same IR); comments stay
//! where they were; the layout of an untidy file is a snapshot.

mod common;

use common::meaning;
use nnlang::syntax::{format, parse};
use nnlang::{compile, ir, Options};

fn ir_of(src: &str) -> Vec<String> {
    let c = compile(src, &Options::default()).expect("no usage error");
    c.models
        .iter()
        .map(|m| {
            format!(
                "{}\n{}",
                ir::to_text(&m.graph, &m.shapes.shapes),
                serde_json::to_string(&m.graph).unwrap_or_default()
            )
        })
        .collect()
}

/// The `//` comments of a text, in order (a `//` inside a string is none).
fn comments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in s.lines() {
        let mut in_string = false;
        let mut prev = ' ';
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_string = !in_string;
            }
            if !in_string && c == '/' && line[i + 1..].starts_with('/') {
                out.push(line[i..].trim_end().to_string());
                break;
            }
            prev = c;
        }
    }
    out
}

/// Formats `src` and checks the three promises; returns the formatted text.
fn check(name: &str, src: &str) -> String {
    let once = format(src).unwrap_or_else(|d| panic!("{name} does not format: {}", d.message));
    let twice =
        format(&once).unwrap_or_else(|d| panic!("{name}: the formatted text does not parse: {}\n{once}", d.message));
    assert_eq!(once, twice, "{name}: formatting is not idempotent:\n{once}");
    assert_eq!(meaning(src), meaning(&once), "{name}: formatting changed the AST:\n{once}");
    assert_eq!(ir_of(src), ir_of(&once), "{name}: formatting changed the IR");
    // Every comment is still there, in order.
    assert_eq!(comments(src), comments(&once), "{name}: comments moved or went missing:\n{once}");
    once
}

#[test]
fn every_example_is_in_the_layout() {
    let root = common::root();
    let files = common::nn_files(&root.join("examples"), &root);
    assert!(files.len() >= 10);
    for (_, rel, src) in files {
        let formatted = check(&rel, &src);
        if formatted != src {
            let diff: Vec<String> = src
                .lines()
                .zip(formatted.lines())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(5)
                .map(|(i, (a, b))| format!("line {}:\n  - {a}\n  + {b}", i + 1))
                .collect();
            panic!("{rel} is not in nnlang's layout (run `nnlangc fmt {rel}`):\n{}", diff.join("\n"));
        }
    }
}

#[test]
fn the_error_corpus_formats_without_changing_meaning() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (_, rel, src) in common::nn_files(&dir.join("tests/errors"), dir) {
        if parse(&src).is_ok() {
            check(&rel, &src);
        }
    }
}

const UNTIDY: &str = "// A header comment.


model   Net( hidden=256 , depth = 2,){
  input x:[784]   // flattened
  let h=x->dense(hidden)->relu;let  skip = x -> dense( hidden ) // a projection
  let longer_name = add(h,skip)


  // the output
  longer_name->[dense(hidden)->relu]*depth   ->dense(10) -> softmax
}
train Net on digits{loss=cross_entropy, optimizer=sgd(lr=0.1,momentum=0.9)
 regularize{l2=1e-4,max_norm=3}
  batch=64 // rows per step
  epochs=3;validate=10 %
}
data digits { train = csv(\"data/digits.csv\", label = 64) , scale = 1/16 }
search Net {
    trials = 4
    hidden ~ choice(64,128)
    optimizer.lr ~ log_uniform(1e-3,1e-1)
    stage coarse{epochs=1}
    stage fine{epochs=3,keep=2}
}
/* the end */
";

#[test]
fn an_untidy_file_takes_the_layout() {
    insta::assert_snapshot!(check("untidy", UNTIDY));
}

#[test]
fn long_chains_break_before_their_arrows() {
    let src = "model M(w = 64) {
    input image: [32, 32, 3]
    image -> conv(filters = w, size = 3, pad = same) -> relu -> conv(filters = w, size = 3, pad = same) -> relu -> maxpool(size = 2) -> flatten -> dense(10) -> softmax
}
";
    let out = check("long", src);
    insta::assert_snapshot!(out);
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");
    // A chain broken by its author keeps its breaks; one that fits stays on its line.
    let kept = "model M {\n    input x: [4]\n\n    x -> dense(8) -> relu\n      -> dense(2)\n}\n";
    assert_eq!(check("kept", kept), kept);
    let joined = "model M {\n    input x: [4]\n\n    x -> dense(8) -> relu -> dense(2)\n}\n";
    assert_eq!(check("joined", joined), joined);
}

#[test]
fn comments_where_a_line_cannot_end_leave_the_statement_as_written() {
    let src = "model M {\n    input x: [4]\n    x -> dense(8, /* units */ bias = true)  ->  relu\n}\n";
    let out = check("inside", src);
    assert!(out.contains("    x -> dense(8, /* units */ bias = true)  ->  relu\n"), "{out}");
    let between = "model M {\n    input x: [4]\n    x -> dense(8) // wide\n      // then\n      -> relu\n}\n";
    let out = check("between", between);
    assert!(out.contains("// wide") && out.contains("      // then\n      -> relu"), "{out}");
}

#[test]
fn line_ends_and_byte_order_marks_are_normalised() {
    let src = "\u{FEFF}model M {\r\n\tinput x: [4]\r\n\tx -> dense(2)\r\n}\r\n";
    assert_eq!(check("crlf", src), "model M {\n    input x: [4]\n    x -> dense(2)\n}\n");
    assert_eq!(format("").ok().as_deref(), Some(""));
    assert_eq!(format("// only a comment").ok().as_deref(), Some("// only a comment\n"));
}

#[test]
fn a_file_that_does_not_parse_gets_the_parsers_diagnostic() {
    let e = format("model M {\n    input x: [4]\n    x -> \n}\n").expect_err("does not parse");
    let d = parse("model M {\n    input x: [4]\n    x -> \n}\n").expect_err("does not parse");
    assert_eq!(e, d);
}
