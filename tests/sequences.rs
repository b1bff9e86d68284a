//! Sequence models end to end, as a user runs them: the Japanese Vowels classifier on its
//! long-CSV sequences, a character model trained by truncated BPTT on a text and sampled,
//! and the mistakes a user can make with either, each a located error with a non-zero exit.

mod common;

use common::{nnlangc, s, temp_dir, text};
use std::path::Path;

#[test]
fn japanese_vowels_trains_on_its_long_csv_sequences() {
    // The shipped example, shortened: its first 30 utterances, 3 epochs.
    let dir = temp_dir("vowels");
    let out = nnlangc(&[
        "train",
        "examples/japanese_vowels.nn",
        "--epochs",
        "3",
        "--limit",
        "60",
        "--quiet",
        "--out",
        s(&dir.join("run")),
    ]);
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    // 60 utterances of 7 to 26 frames, padded to 29; the test split's first 60.
    assert!(o.contains("test: loss") && o.contains("on 60 examples"), "{o}");
    // `run` on an array of sequences of one length: [batch, steps, 12].
    let x: Vec<f32> = (0..2 * 10 * 12).map(|i| (i % 7) as f32 * 0.1).collect();
    let input = dir.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[2, 10, 12], &x).expect("writes");
    let weights = dir.join("run/weights.safetensors");
    let y = dir.join("y.npy");
    let run_on_input = || {
        nnlangc(&[
            "run",
            "examples/japanese_vowels.nn",
            "--weights",
            s(&weights),
            "--input",
            s(&input),
            "--output",
            s(&y),
        ])
    };
    let run = run_on_input();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let probs = nnlang_runtime::data::npy::read(&y).expect("reads");
    assert_eq!(probs.shape, vec![2, 9]);
    // A sequence model given a flat array, and sequences longer than it accepts.
    for (shape, n) in [(vec![2usize, 120], 240usize), (vec![2, 30, 12], 720)] {
        nnlang_runtime::data::npy::write(&input, &shape, &vec![0.5f32; n]).expect("writes");
        let run = run_on_input();
        assert_eq!(run.status.code(), Some(1));
        let err = text(&run.stderr);
        assert!(
            err.contains(&format!(
                "array of shape {shape:?}; the model's input `frames` needs [batch, steps, 12] with 1 to 29 steps"
            )),
            "{err}"
        );
    }
}

/// A tiny character model of `text`'s 4 characters.
fn char_model(dir: &Path, text_body: &str, recipe: &str, input: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("text.txt"), text_body).expect("writes");
    let src = format!(
        "model Chars {{\n    input text: {input}\n    text -> rnn(16) -> dense(4) -> softmax\n}}\n\
         train Chars on t {{\n    optimizer = adam(lr = 0.01)\n    {recipe}\n    seed = 1\n}}\n\
         data t {{\n    train = text(\"text.txt\")\n}}\n"
    );
    let file = dir.join("chars.nn");
    std::fs::write(&file, src).expect("writes");
    file
}

#[test]
fn a_character_model_learns_a_text_and_samples_it() {
    let dir = temp_dir("chars");
    // A text whose next character is nearly always determined: "abc" repeated, lines of 12.
    let body: String = (0..300).map(|_| "abcabcabcabc\n").collect();
    let file = char_model(
        &dir,
        &body,
        "batch = 8\n    bptt = 20\n    clip = 5.0\n    epochs = 15\n    validate = 10%",
        "[seq <= 20, 4]",
    );
    let run = dir.join("run");
    let out = nnlangc(&["train", s(&file), "--quiet", "--out", s(&run)]);
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    assert_eq!(std::fs::read_to_string(run.join("vocab.json")).expect("vocab saved"), "{\"chars\": \"\\nabc\"}\n");
    // The last epoch's validation loss is near zero: the text is learned.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    let last = metrics.lines().last().expect("a row");
    let header: Vec<&str> = metrics.lines().next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == "val_loss").expect("val_loss column");
    let val: f64 = last.split(',').nth(col).and_then(|v| v.parse().ok()).expect("a number");
    assert!(val < 0.2, "validation loss {val} nats per character\n{metrics}");

    // Sampling continues the pattern, and the same seed gives the same text.
    let weights = run.join("weights.safetensors");
    let sample = |seed: &str, temp: &str| {
        nnlangc(&[
            "sample",
            s(&file),
            "--weights",
            s(&weights),
            "--prime",
            "ab",
            "--length",
            "40",
            "--temperature",
            temp,
            "--seed",
            seed,
        ])
    };
    let a = sample("3", "0.5");
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    let t = text(&a.stdout);
    // It continues "ab" with "c", and writes whole lines of the text.
    let lines: Vec<&str> = t.split('\n').collect();
    assert!(t.starts_with("abc") && lines[1..lines.len() - 2].iter().all(|l| *l == "abcabcabcabc"), "{t:?}");
    assert_eq!(t.chars().count(), 2 + 40 + 1, "{t:?}");
    assert_eq!(text(&sample("3", "0.5").stdout), t);

    // A character outside the vocabulary, a temperature that is not positive, a missing
    // vocabulary.
    let bad = nnlangc(&["sample", s(&file), "--weights", s(&weights), "--prime", "abz"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr)
            .contains("--prime: line 1, column 3: the character 'z' is not in the model's vocabulary of 4 characters"),
        "{}",
        text(&bad.stderr)
    );
    let bad = sample("1", "0");
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--temperature must be a positive number, found 0"), "{}", text(&bad.stderr));
    let missing = dir.join("nowhere.json");
    let bad = nnlangc(&["sample", s(&file), "--weights", s(&weights), "--vocab", s(&missing)]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains(&format!("{}: cannot read", missing.display())), "{}", text(&bad.stderr));
}

#[test]
fn text_and_sequence_mistakes_are_located() {
    let dir = temp_dir("text-mistakes");
    let body: String = (0..50).map(|_| "abcab\n").collect();
    let cases = [
        // No window: the stream cannot be trained.
        ("batch = 4\n    epochs = 1", "[seq <= 20, 4]", "set `bptt = 100` (or another window) in the `train` block"),
        // A window longer than the input holds.
        (
            "batch = 4\n    bptt = 30\n    epochs = 1",
            "[seq <= 20, 4]",
            "`bptt = 30` is longer than the 20 steps the model's input holds",
        ),
        // A vocabulary of another size than the input.
        (
            "batch = 4\n    bptt = 10\n    epochs = 1",
            "[seq <= 20, 5]",
            "the text has 4 distinct characters, but the model's input `text` [seq <= 20, 5] has 5 features per step",
        ),
    ];
    for (recipe, input, want) in cases {
        let file = char_model(&dir, &body, recipe, input);
        let out = nnlangc(&["train", s(&file), "--quiet", "--out", s(&dir.join("run"))]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{want}\n{err}");
        assert!(!dir.join("run/weights.safetensors").exists(), "nothing written");
    }
}

#[test]
fn sequence_file_mistakes_name_the_line() {
    let dir = temp_dir("sequence-mistakes");
    let model = "model V {\n    input f: [seq <= 4, 2]\n    f -> rnn(3, output = last) -> dense(2) -> softmax\n}\n\
                 train V on d {\n    epochs = 1\n    batch = 2\n}\n\
                 data d {\n    train = sequences(\"s.csv\")\n}\n";
    std::fs::write(dir.join("v.nn"), model).expect("writes");
    let good = "seq,t,label,a,b\n0,0,1,0.5,0.5\n0,1,1,0.1,0.2\n1,0,0,0.3,0.3\n";
    let cases = [
        (good.replace("0,1,1,0.1", "0,2,1,0.1"), "s.csv: line 3: sequence 0: step 2 where step 1 comes next"),
        (
            good.replace("0,1,1,0.1", "0,1,0,0.1"),
            "s.csv: line 3: sequence 0: label 0 at step 1, but the sequence began with label 1",
        ),
        (
            good.replace("1,0,0,0.3", "2,0,0,0.3"),
            "s.csv: line 4: sequence 2 follows sequence 0: sequence 1 has no rows (an empty sequence)",
        ),
        (
            good.replace("\n0,", "\n1,").replace("\n1,0,0,0.3", "\n2,0,0,0.3"),
            "s.csv: line 2: the first row is of sequence 1: sequences are numbered from 0, each after the one before",
        ),
        (
            format!("{good}1,1,0,0,0\n1,2,0,0,0\n1,3,0,0,0\n1,4,0,0,0\n"),
            "s.csv: line 8: sequence 1 is longer than the 4 steps the model accepts",
        ),
        (
            good.replace("0,0,1,0.5,0.5", "0,0,1"),
            "s.csv: line 2: 3 columns; a row is seq, t, label and at least one feature",
        ),
        (good.replace("0,1,1,0.1,0.2", "0,1,1,0.1"), "s.csv: line 3: 4 columns, the rows before it 5"),
        (
            "seq,t,label,a\n0,0,0,1\n".to_string(),
            "s.csv: 1 features per step, but the model's input `f` [seq <= 4, 2] has 2",
        ),
    ];
    for (csv, want) in cases {
        std::fs::write(dir.join("s.csv"), csv).expect("writes");
        let out = nnlangc(&["train", s(&dir.join("v.nn")), "--quiet", "--out", s(&dir.join("run"))]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{want}\n{err}");
        assert!(!err.contains("panicked") && !dir.join("run").exists(), "{err}");
    }
    // A model that is not a sequence model, given sequences.
    let flat = model.replace("[seq <= 4, 2]", "[8]").replace("rnn(3, output = last)", "dense(3)");
    std::fs::write(dir.join("v.nn"), flat).expect("writes");
    std::fs::write(dir.join("s.csv"), good).expect("writes");
    let out = nnlangc(&["train", s(&dir.join("v.nn")), "--quiet", "--out", s(&dir.join("run"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("s.csv: holds sequences, but the model's input `f` [8] is not a sequence"),
        "{}",
        text(&out.stderr)
    );
}
