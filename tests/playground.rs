//! The playground's crate (`nnlang-wasm`), run natively: the page shows what `nnlangc check`
//! prints (one renderer), places the editor can underline, and a `Trainer` on files held in
//! memory that trains as `nnlangc train --threads 1` does, bit for bit. The page itself is
//! tested in Chromium by `playground/tests/browser.mjs` (.ci/run).

mod common;

use nnlang_wasm::{check_source, Trainer};
use std::process::Command;

#[test]
fn every_error_of_the_corpus_reads_as_nnlangc_check_prints_it() {
    let dir = common::temp_dir("playground-check");
    let mut files: Vec<_> = std::fs::read_dir(common::root().join("nnlang/tests/errors"))
        .expect("the error corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    assert!(files.len() > 50, "the corpus is there");
    let mut compared = 0;
    for path in &files {
        let source = std::fs::read_to_string(path).expect("source");
        std::fs::write(dir.join(nnlang_wasm::FILE), &source).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .args(["check", nnlang_wasm::FILE])
            .current_dir(&*dir)
            .output()
            .expect("nnlangc runs");
        let report = check_source(&source);
        let name = path.display();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if report.diagnostics.iter().any(|d| d.severity == "error") {
            assert_eq!(out.status.code(), Some(1), "{name}");
            assert!(!report.ok, "{name}");
            // Character for character, the count line included.
            assert_eq!(stderr, report.text, "{name}");
            compared += 1;
        } else {
            // Files whose mistake only training finds (a data file, a recipe against data).
            assert!(report.ok, "{name}: {}", report.text);
        }
        // Each diagnostic alone is part of the whole, and has a place to underline.
        for d in &report.diagnostics {
            assert!(report.text.contains(&d.rendered), "{name}");
            if let Some(p) = &d.place {
                assert!(p.start <= p.end && p.end <= source.len(), "{name}");
                assert!(d.rendered.contains(&format!("{}:{}:{}", nnlang_wasm::FILE, p.line, p.column)), "{name}");
            }
        }
    }
    assert!(compared > 50, "{compared} files compared");
}

#[test]
fn places_count_utf16_units_for_the_editor() {
    // Characters outside ASCII before the mistake: a 3-byte arrow, a 4-byte emoji (two UTF-16 units).
    let source = "// x → y 🙂\nmodel Net {\n    input image: [28, 28, 1]\n    image -> conv(filters = 8, size = 5, stride = 2) -> relu -> flatten -> dense(10) -> softmax\n}\n";
    let report = check_source(source);
    assert!(!report.ok);
    let d = &report.diagnostics[0];
    let p = d.place.as_ref().expect("a place");
    assert_eq!(&source[p.start..p.end], "conv(filters = 8, size = 5, stride = 2)");
    let utf16: Vec<u16> = source.encode_utf16().collect();
    assert_eq!(String::from_utf16_lossy(&utf16[p.start_utf16..p.end_utf16]), "conv(filters = 8, size = 5, stride = 2)");
    assert_eq!((p.line, p.column, p.end_line), (4, 14, 4));
    assert!(d.notes.iter().any(|n| n.contains("W = 28")), "{:?}", d.notes);
    assert!(d.rendered.contains("(28 − 5)/2 + 1 = 12.5 is not an integer"), "{}", d.rendered);
}

#[test]
fn a_checked_model_comes_with_its_table_and_graph() {
    let source = std::fs::read_to_string(common::root().join("examples/mnist_convnet.nn")).expect("example");
    let report = check_source(&source);
    assert!(report.ok, "{}", report.text);
    let m = &report.models[0];
    // The table is the one `nnlangc check` prints.
    let out = common::nnlangc(&["check", "examples/mnist_convnet.nn"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&m.table), "{}", m.table);
    assert_eq!(m.summary["model"], m.name.as_str());
    // Every node of the graph is drawn, once, and the drawing is one SVG element.
    let compiled = nnlang::compile(&source, &nnlang::Options::default()).expect("compiles");
    let nodes = compiled.models[0].graph.nodes.len();
    assert_eq!(m.svg.matches("<g class=\"node\"").count(), nodes);
    assert!(m.svg.starts_with("<svg ") && m.svg.trim_end().ends_with("</svg>"));
    assert_eq!(m.svg.matches("<svg").count(), 1);
    assert!(m.svg.contains("[28, 28, 1]") && m.dot.starts_with("digraph"));
    assert!(report.recipes.iter().any(|r| r.starts_with("train ")), "{:?}", report.recipes);
}

#[test]
fn the_trainer_on_held_files_trains_as_nnlangc_train_and_scores_arrays() {
    // The page's files, held in memory under the paths the data block names (relative to
    // the playground's file, which has no folder).
    let data = common::root().join("examples/data/sklearn");
    for f in ["digits-train.csv.gz", "digits-test.csv.gz"] {
        nnlang_runtime::data::provide(format!("data/sklearn/{f}"), std::fs::read(data.join(f)).expect("data"));
    }
    let source = std::fs::read_to_string(common::root().join("examples/digits_mlp.nn")).expect("example");
    let source = source.replace("epochs    = 30", "epochs    = 4");
    let mut t = Trainer::open(&source).expect("opens");
    let mut told = Vec::new();
    let trained = t.run(&mut |m| told.push(m)).expect("trains");
    let epochs: Vec<serde_json::Value> = told
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m).expect("JSON"))
        .filter(|v| v["kind"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 4);
    assert_eq!(epochs[3]["epochs"], 4);
    assert!(told.iter().any(|m| m.contains("\"kind\":\"batch\"")));
    let test = trained.test.clone().expect("a test score");
    assert_eq!(test.examples, 360);
    assert!(test.accuracy.expect("accuracy") > 0.8, "{test:?}");
    let confusion = test.confusion.clone().expect("confusion");
    assert_eq!(confusion.iter().flatten().sum::<usize>(), 360);

    // `nnlangc train --threads 1` on the same file writes the same weights, bit for bit.
    let dir = common::temp_dir("playground-train");
    std::fs::write(dir.join("digits.nn"), &source).expect("write");
    std::fs::create_dir_all(dir.join("data/sklearn")).expect("dir");
    for f in ["digits-train.csv.gz", "digits-test.csv.gz"] {
        std::fs::copy(data.join(f), dir.join("data/sklearn").join(f)).expect("copy");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", "digits.nn", "--threads", "1", "--quiet", "--out", "run"])
        .current_dir(&*dir)
        .output()
        .expect("nnlangc runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let cli = std::fs::read(dir.join("run/weights.safetensors")).expect("weights");
    assert!(t.weights_bytes().expect("weights") == cli, "the playground's weights are nnlangc train's");
    let pre = std::fs::read_to_string(dir.join("run/preprocess.json")).expect("preprocess.json");
    assert_eq!(pre.trim_end(), t.preprocess().expect("scaled").trim_end());

    // Arrays: raw pixels (0–16) and labels, scored and predicted as the test set was.
    let table = nnlang_runtime::data::csv::read(&data.join("digits-test.csv.gz"), Some(0)).expect("csv");
    let score = t.score_rows(&table.x, &table.y).expect("scores");
    assert_eq!(score, test);
    let probs = t.predict_rows(&table.x[..3 * 64]).expect("predicts");
    assert_eq!(probs.len(), 3 * 10);
    for row in probs.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    // Bad arrays are errors that say what is wrong.
    let e = t.predict_rows(&table.x[..65]).expect_err("a partial example");
    assert_eq!(e.to_string(), "65 values are not whole examples of 64 values (the model's input `pixels` [64])");
    let mut nan = table.x[..64].to_vec();
    nan[5] = f32::NAN;
    let e = t.predict_rows(&nan).expect_err("NaN");
    assert_eq!(e.to_string(), "example 0, feature 5: NaN is not a finite number");
    let e = t.score_rows(&table.x[..128], &[3.0, 12.0]).expect_err("a label outside");
    assert_eq!(e.to_string(), "example 1 has label 12, outside the model's 10 classes");

    // The same examples given as arrays (raw pixels and labels) train the same weights: they
    // take the data block's scaling, the same validation split and the same batches.
    let train = nnlang_runtime::data::csv::read(&data.join("digits-train.csv.gz"), Some(0)).expect("csv");
    let mut a = Trainer::on_arrays(&source, &train.x, &train.y, Some((&table.x, &table.y))).expect("arrays");
    let trained_a = a.run(&mut |_| {}).expect("trains");
    assert!(a.weights_bytes().expect("weights") == cli, "arrays train as files do");
    assert_eq!(trained_a.test, trained.test);
    // Bad arrays are refused with what is wrong, and where.
    let bad = |x: &[f32], y: &[f32]| Trainer::on_arrays(&source, x, y, None).err().expect("refused").to_string();
    assert_eq!(
        bad(&train.x[..100], &train.y[..1]),
        "train: 100 values are not whole examples of 64 values (the model's input `pixels` [64])"
    );
    assert_eq!(bad(&train.x[..128], &train.y[..3]), "train: 3 targets for 2 examples");
    assert_eq!(
        bad(&train.x[..128], &[1.0, 10.0]),
        "<arrays>/train_y.npy: example 2 (counting from 1) has label 10, outside the model's 10 classes 0..9"
    );
    let mut nan = train.x[..128].to_vec();
    nan[70] = f32::NAN;
    assert_eq!(bad(&nan, &[1.0, 2.0]), "<arrays>/train_x.npy: example 1, feature 6 is NaN or infinite");
    let rnn = std::fs::read_to_string(common::root().join("examples/japanese_vowels.nn")).expect("example");
    let e = Trainer::on_arrays(&rnn, &[0.0; 8], &[0.0; 1], None).err().expect("a sequence model");
    assert!(e.to_string().contains("is a sequence: give sequences as files"), "{e}");
}

#[test]
fn a_trainer_says_what_is_missing() {
    // A file nobody provided, named as nnlangc names it.
    let source = std::fs::read_to_string(common::root().join("examples/mnist_mlp.nn")).expect("example");
    let e = Trainer::open(&source).err().expect("no MNIST here");
    assert!(e.to_string().contains("data/mnist/train-images-idx3-ubyte.gz: cannot read"), "{e}");
    // A source with errors: the rendered diagnostics.
    let e = Trainer::open("model M { input x: [4]\n x -> dense(0) }").err().expect("errors");
    assert!(e.to_string().contains("playground.nn:2:"), "{e}");
    // No train block.
    let e = Trainer::open("model M { input x: [4]\n x -> dense(3) -> softmax }").err().expect("no recipe");
    assert!(e.to_string().contains("no `train` block"), "{e}");
}
