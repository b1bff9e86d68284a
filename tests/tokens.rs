//! Token inputs end to end, as a user runs them: a character model that reads ids through an
//! embedding learns a text and samples it; sequences, rows and arrays of ids train and run;
//! and every id outside the vocabulary, in every format, is a located error with a non-zero
//! exit and nothing written.

mod common;

use common::{nnlangc, s, temp_dir, text};
use std::path::Path;

/// The last epoch's validation loss in a run's `metrics.csv`.
fn last_val_loss(run: &Path) -> f64 {
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    let header: Vec<&str> = metrics.lines().next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == "val_loss").expect("val_loss column");
    let last = metrics.lines().last().expect("a row");
    last.split(',').nth(col).and_then(|v| v.parse().ok()).expect("a number")
}

#[test]
fn a_character_model_of_ids_learns_a_text_samples_it_and_runs_on_arrays_of_ids() {
    let dir = temp_dir("ids-chars");
    let body: String = (0..300).map(|_| "abcabcabcabc\n").collect();
    std::fs::write(dir.join("text.txt"), &body).expect("writes");
    let src = "model Chars {\n    input text: [seq <= 20] ids < 4\n    \
               text -> embedding(4, 8) -> lstm(16) -> dense(4) -> softmax\n}\n\
               train Chars on t {\n    optimizer = adam(lr = 0.02)\n    batch = 8\n    bptt = 20\n    clip = 5.0\n    \
               epochs = 15\n    validate = 10%\n    seed = 1\n}\n\
               data t {\n    train = text(\"text.txt\")\n}\n";
    let file = dir.join("chars.nn");
    std::fs::write(&file, src).expect("writes");
    let run = dir.join("run");
    let out = nnlangc(&["train", s(&file), "--quiet", "--out", s(&run)]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let val = last_val_loss(&run);
    assert!(val < 0.2, "validation loss {val} nats per character");
    // The table is PyTorch's `nn.Embedding.weight`, [vocab, dim].
    let weights = run.join("weights.safetensors");
    let bytes = std::fs::read(&weights).expect("weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert_eq!(st.tensor("embedding_0.weight").expect("the table").shape(), &[4, 8]);

    // Sampling feeds ids, and continues the pattern (at a temperature below 1: the likeliest
    // characters, which a small model's rare slips at 1 would not be).
    let out = nnlangc(&[
        "sample",
        s(&file),
        "--weights",
        s(&weights),
        "--prime",
        "ab",
        "--length",
        "30",
        "--seed",
        "2",
        "--temperature",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let lines: Vec<&str> = t.split('\n').collect();
    assert!(t.starts_with("abc") && lines[1..lines.len() - 2].iter().all(|l| *l == "abcabcabcabc"), "{t:?}");

    // `run` on an array of ids ("\nabc" are ids 0..3): after "abcab" comes "c" (id 3).
    let input = dir.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[1, 5], &[1.0, 2.0, 3.0, 1.0, 2.0]).expect("writes");
    let y = dir.join("y.npy");
    let out = nnlangc(&["run", s(&file), "--weights", s(&weights), "--input", s(&input), "--output", s(&y)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let probs = nnlang_runtime::data::npy::read(&y).expect("reads");
    assert_eq!(probs.shape, vec![1, 5, 4]);
    let last = &probs.data[16..20];
    assert!(last[3] > 0.9, "p(c | abcab) = {last:?}");

    // Ids outside the vocabulary, or not whole numbers: located, nothing written.
    for (values, want) in [
        (
            vec![1.0, 2.0, 4.0],
            "x.npy: row 0, element 2: 4 is not a token id below 4, as the model's input `text` holds",
        ),
        (vec![1.0, -1.0, 2.0], "x.npy: row 0, element 1: -1 is not a token id below 4"),
        (vec![0.5, 1.0, 2.0], "x.npy: row 0, element 0: 0.5 is not a token id below 4"),
    ] {
        let _ = std::fs::remove_file(&y);
        nnlang_runtime::data::npy::write(&input, &[1, 3], &values).expect("writes");
        let out = nnlangc(&["run", s(&file), "--weights", s(&weights), "--input", s(&input), "--output", s(&y)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{want}\n{err}");
        assert!(!y.exists(), "nothing written");
    }

    // An array of another shape: the shape the model needs, in words.
    nnlang_runtime::data::npy::write(&input, &[1, 3, 1], &[1.0, 2.0, 3.0]).expect("writes");
    let out = nnlangc(&["run", s(&file), "--weights", s(&weights), "--input", s(&input), "--output", s(&y)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "x.npy: array of shape [1, 3, 1]; the model's input `text` needs [batch, steps] with 1 to 20 steps of token ids below 4"
        ),
        "{}",
        text(&out.stderr)
    );

    // A text of another vocabulary than the ids the model reads.
    std::fs::write(&file, src.replace("ids < 4", "ids < 5").replace("embedding(4", "embedding(5")).expect("writes");
    let out = nnlangc(&["train", s(&file), "--quiet", "--out", s(&dir.join("run2"))]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("text.txt: the text has 4 distinct characters, but the model's input `text` [seq <= 20] holds ids < 5 (one per character)"),
        "{err}"
    );
    assert!(!dir.join("run2").exists());
}

/// A model over `ids < 5` reading `source`, whose input is `input`.
fn id_model(dir: &Path, input: &str, layers: &str, source: &str, extra: &str) -> std::path::PathBuf {
    let src = format!(
        "model T {{\n    input w: {input}\n    w -> embedding(5, 4) -> {layers}\n}}\n\
         train T on d {{\n    optimizer = adam(lr = 0.05)\n    batch = 4\n    epochs = 30\n    seed = 2\n}}\n\
         data d {{\n    train = {source}\n    {extra}\n}}\n"
    );
    let file = dir.join("t.nn");
    std::fs::write(&file, src).expect("writes");
    file
}

#[test]
fn rows_and_sequences_of_ids_train_and_bad_ids_are_located_in_each_format() {
    let dir = temp_dir("ids-formats");
    // Rows of three ids (CSV, label first): the class is whether id 4 appears.
    let rows: Vec<[u8; 3]> =
        (0..40).map(|i| [(i % 5) as u8, ((i * 3 + 1) % 4) as u8, ((i * 7 + 2) % 4) as u8]).collect();
    let csv: String =
        rows.iter().map(|r| format!("{},{},{},{}\n", u8::from(r.contains(&4)), r[0], r[1], r[2])).collect();
    std::fs::write(dir.join("rows.csv"), &csv).expect("writes");
    let flat = "flatten -> dense(2) -> softmax";
    let file = id_model(&dir, "[3] ids < 5", flat, "csv(\"rows.csv\", label = 0)", "");
    let out = nnlangc(&["train", s(&file), "--out", s(&dir.join("run"))]);
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{o}{}", text(&out.stderr));
    assert!(o.contains("train acc 100.00%"), "learns which rows hold id 4:\n{o}");

    // Sequences of ids (long CSV: seq, t, label, id): the class is the first id's parity.
    let mut seqs = String::from("seq,t,label,id\n");
    for q in 0..24 {
        let len = 1 + q % 4;
        for t in 0..len {
            seqs.push_str(&format!("{q},{t},{},{}\n", (q % 5) % 2, (q + t * 2) % 5));
        }
    }
    std::fs::write(dir.join("s.csv"), &seqs).expect("writes");
    let file = id_model(
        &dir,
        "[seq <= 4] ids < 5",
        "gru(8, output = last) -> dense(2) -> softmax",
        "sequences(\"s.csv\")",
        "",
    );
    let out = nnlangc(&["train", s(&file), "--out", s(&dir.join("run-seq"))]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));

    // An id out of range, in each format.
    let npy_x = dir.join("x.npy");
    let npy_y = dir.join("y.npy");
    nnlang_runtime::data::npy::write(&npy_x, &[2, 3], &[0.0, 1.0, 2.0, 3.0, 7.0, 1.0]).expect("writes");
    nnlang_runtime::data::npy::write(&npy_y, &[2], &[0.0, 1.0]).expect("writes");
    let cases = [
        (
            "[3] ids < 5",
            flat,
            "csv(\"bad.csv\", label = 0)",
            Some(("bad.csv", csv.replace("\n1,4,", "\n1,5,"))),
            "",
            "bad.csv: example 5, value 1 (counting from 1): 5 is not a token id below 5, as the model's input `w` [3] holds",
        ),
        (
            "[3] ids < 5",
            flat,
            "csv(\"bad.csv\", label = 0)",
            Some(("bad.csv", csv.replacen("0,0,1,2", "0,0,1.5,2", 1))),
            "",
            "bad.csv: example 1, value 2 (counting from 1): 1.5 is not a token id below 5",
        ),
        (
            "[3] ids < 5",
            flat,
            "npy(\"x.npy\", \"y.npy\")",
            None,
            "",
            "x.npy: example 2, value 2 (counting from 1): 7 is not a token id below 5",
        ),
        (
            "[seq <= 4] ids < 5",
            "gru(8, output = last) -> dense(2) -> softmax",
            "sequences(\"bad.csv\")",
            Some(("bad.csv", seqs.replace("\n3,3,1,4", "\n3,3,1,-3"))),
            "",
            "bad.csv: sequence 4, step 4 (counting from 1): -3 is not a token id below 5",
        ),
        (
            "[3] ids < 5",
            flat,
            "csv(\"rows.csv\", label = 0)",
            None,
            "standardize = true",
            "rows.csv: `standardize` would change token ids: the model's input `w` [3] holds ids < 5, read as they are",
        ),
    ];
    for (input, layers, source, file_body, extra, want) in cases {
        if let Some((name, body)) = file_body {
            std::fs::write(dir.join(name), body).expect("writes");
        }
        let file = id_model(&dir, input, layers, source, extra);
        let run = dir.join("bad-run");
        let out = nnlangc(&["train", s(&file), "--quiet", "--out", s(&run)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{source}: {err}");
        assert!(err.contains(want), "{want}\n{err}");
        assert!(!err.contains("panicked") && !run.exists(), "{err}");
    }
}

#[test]
fn bptt_through_a_layer_that_cannot_carry_its_state_is_a_located_error() {
    let dir = temp_dir("ids-bptt");
    std::fs::write(dir.join("text.txt"), "abcabcabc\n".repeat(20)).expect("writes");
    for layer in ["bidirectional(lstm(8))", "bidirectional(gru(8), merge = add)"] {
        let src = format!(
            "model Chars {{\n    input text: [seq <= 10] ids < 4\n    text -> embedding(4, 4)\n      -> {layer}\n      -> dense(4) -> softmax\n}}\n\
             train Chars on t {{\n    batch = 2\n    bptt = 10\n    epochs = 1\n}}\n\
             data t {{\n    train = text(\"text.txt\")\n}}\n"
        );
        let file = dir.join("chars.nn");
        std::fs::write(&file, src).expect("writes");
        let out = nnlangc(&["train", s(&file), "--quiet", "--out", s(&dir.join("run"))]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("error: a bidirectional layer cannot carry its state from one window of a stream to the next")
                && err.contains("chars.nn:4:10")
                && err.contains("reads each window backwards too"),
            "{layer}: {err}"
        );
        assert!(!dir.join("run").exists());
    }
}

/// A character LSTM over ids, trained on a stream with its states carried and the batch split
/// between two threads (each planned for its share), resumes after an epoch byte for byte.
#[test]
fn a_character_lstm_of_ids_resumes_byte_identical() {
    let dir = temp_dir("ids-resume");
    let body: String = (0..120).map(|i| ["to be or not to be\n", "that is the question\n"][i % 2]).collect();
    std::fs::write(dir.join("text.txt"), &body).expect("writes");
    let src = "model Chars {\n    input text: [seq <= 16] ids < 14\n    \
               text -> embedding(14, 8) -> lstm(16) -> dropout(keep = 0.9) -> dense(14) -> softmax\n}\n\
               train Chars on t {\n    optimizer = adamw(lr = 0.01)\n    batch = 32\n    bptt = 16\n    clip = 1.0\n    \
               epochs = 4\n    validate = 10%\n    seed = 5\n}\n\
               data t {\n    train = text(\"text.txt\")\n}\n";
    let file = dir.join("chars.nn");
    std::fs::write(&file, src).expect("writes");
    let run = |out: &Path, epochs: &str, resume: bool| {
        let flag = if resume { "--resume" } else { "--out" };
        let o = nnlangc(&["train", s(&file), "--threads", "2", "--epochs", epochs, "--quiet", flag, s(out)]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let (whole, part) = (dir.join("whole"), dir.join("part"));
    let said = run(&whole, "4", false);
    run(&part, "2", false);
    run(&part, "4", true);
    for f in ["weights.safetensors", "state.safetensors"] {
        assert!(
            std::fs::read(whole.join(f)).expect("whole") == std::fs::read(part.join(f)).expect("part"),
            "{f} differs"
        );
    }
    assert!(last_val_loss(&whole) < 2.0, "{said}");
}

/// A character transformer (pre-norm blocks of causal attention over learned positions)
/// learns a text whose next character depends on one ten steps back — what attention over the
/// window must look up — samples it with the window sliding forward past its 16 steps, and,
/// with its windows shuffled as independent examples over two threads, resumes after an
/// epoch byte for byte.
#[test]
fn a_character_transformer_learns_samples_with_a_sliding_window_and_resumes() {
    let dir = temp_dir("ids-transformer");
    let body: String = (0..400).map(|i| ["abcdefghi\n", "jbcdefghk\n"][i % 2]).collect();
    std::fs::write(dir.join("text.txt"), &body).expect("writes");
    let src = "block B(w) {\n    input x\n    let h = add(x, x -> layernorm -> attention(2, causal = true))\n    \
               add(h, h -> layernorm -> dense(2 * w) -> gelu -> dense(w))\n}\n\
               model Chars {\n    input text: [seq <= 16] ids < 12\n    \
               text -> embedding(12, 16) -> positions(16) -> [B(16)] * 2 -> layernorm -> dense(12) -> softmax\n}\n\
               train Chars on t {\n    optimizer = adamw(lr = 0.005)\n    batch = 16\n    bptt = 16\n    \
               epochs = 20\n    validate = 10%\n    seed = 3\n}\n\
               data t {\n    train = text(\"text.txt\")\n}\n";
    let file = dir.join("chars.nn");
    std::fs::write(&file, src).expect("writes");
    let run = |out: &Path, epochs: &str, resume: bool| {
        let flag = if resume { "--resume" } else { "--out" };
        let o = nnlangc(&["train", s(&file), "--threads", "2", "--epochs", epochs, "--quiet", flag, s(out)]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    };
    let (whole, part) = (dir.join("whole"), dir.join("part"));
    run(&whole, "20", false);
    run(&part, "10", false);
    run(&part, "20", true);
    for f in ["weights.safetensors", "state.safetensors"] {
        assert!(
            std::fs::read(whole.join(f)).expect("whole") == std::fs::read(part.join(f)).expect("part"),
            "{f} differs"
        );
    }
    // Every character but the line's first is certain given the one ten steps back (which
    // line this is); only the first of each line is a guess between two.
    let val = last_val_loss(&whole);
    assert!(val < 0.2, "validation loss {val} nats per character");

    // Sampling slides the window: 60 characters, far past its 16 steps, keep both lines'
    // patterns, and the same seed gives the same text.
    let weights = whole.join("weights.safetensors");
    let sample = || {
        let out =
            nnlangc(&["sample", s(&file), "--weights", s(&weights), "--prime", "abc", "--length", "60", "--seed", "4"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let t = sample();
    assert_eq!(t, sample());
    let lines: Vec<&str> = t.split('\n').collect();
    assert!(lines.len() >= 6, "{t:?}");
    for l in &lines[1..lines.len() - 2] {
        assert!(*l == "abcdefghi" || *l == "jbcdefghk", "{l:?} in {t:?}");
    }
}
