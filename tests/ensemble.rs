//! `nnlangc ensemble` as a user runs it: members from seeds and from the last checkpoints of
//! one run, each member's score beside the ensemble's, and `eval`/`run` of the ensemble.

mod common;

use common::{nnlangc, s, temp_dir, text};

/// The MNIST MLP with an ensemble block `from`, trained briefly on a subset.
fn file_with(dir: &std::path::Path, from: &str) -> std::path::PathBuf {
    let data = common::root().join("examples/data/mnist");
    let src = std::fs::read_to_string(common::root().join("examples/mnist_mlp.nn"))
        .expect("example")
        .replace("\"data/mnist", &format!("\"{}", data.display()))
        + &format!("\nensemble Mlp {{ members = 3, from = {from} }}\n");
    let file = dir.join("m.nn");
    std::fs::write(&file, src).expect("writes");
    file
}

/// `got` is the mean of the `n` members' own `nnlangc run` outputs on `input`.
fn assert_mean_of_members(ens: &std::path::Path, input: &std::path::Path, got: &[f32], n: usize) {
    let mut sum = vec![0f64; got.len()];
    for i in 0..n {
        let member = ens.join(format!("member-{i}"));
        let y = ens.join(format!("y{i}.npy"));
        let o = nnlangc(&[
            "run",
            s(&member.join("model.nn")),
            "--weights",
            s(&member.join("weights.safetensors")),
            "--input",
            s(input),
            "--output",
            s(&y),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let p = nnlang_runtime::data::npy::read(&y).expect("reads");
        sum.iter_mut().zip(&p.data).for_each(|(a, &b)| *a += f64::from(b));
    }
    for (g, s) in got.iter().zip(&sum) {
        assert!((f64::from(*g) - s / n as f64).abs() < 1e-6, "{g} vs {}", s / n as f64);
    }
}

/// An ensemble of sequence models runs on sequences shorter than the longest.
#[test]
fn an_ensemble_runs_on_sequences() {
    let dir = temp_dir("ensemble-seq");
    let root = common::root();
    let src = std::fs::read_to_string(root.join("examples/japanese_vowels.nn"))
        .expect("example")
        .replace("\"data/", &format!("\"{}/", root.join("examples/data").display()))
        + "\nensemble BiRnnClassifier { members = 2, from = seeds }\n";
    let file = dir.join("jv.nn");
    std::fs::write(&file, src).expect("writes");
    let out = dir.join("ens");
    let o = nnlangc(&["ensemble", s(&file), "--set", "epochs=2", "--quiet", "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let x: Vec<f32> = (0..4 * 15 * 12).map(|i| ((i * 13) % 17) as f32 / 8.0 - 1.0).collect();
    let input = dir.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[4, 15, 12], &x).expect("writes");
    let y = dir.join("y.npy");
    let o = nnlangc(&["run", s(&file), "--ensemble", s(&out), "--input", s(&input), "--output", s(&y)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("wrote 4 rows of [9]"), "{}", text(&o.stdout));
    let p = nnlang_runtime::data::npy::read(&y).expect("reads");
    assert_mean_of_members(&out, &input, &p.data, 2);
}

fn accuracy(line: &str) -> f64 {
    line.split("accuracy ").nth(1).and_then(|a| a.split('%').next()).and_then(|a| a.parse().ok()).expect("an accuracy")
}

#[test]
fn an_ensemble_of_seeds_is_scored_evaluated_and_run() {
    let dir = temp_dir("ensemble-seeds");
    let file = file_with(&dir, "seeds");
    let out = dir.join("ens");
    let args = ["ensemble", s(&file), "--set", "epochs=2", "--limit", "1500", "--quiet", "--out", s(&out)];
    let o = nnlangc(&args);
    let t = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{t}{}", text(&o.stderr));
    let members: Vec<&str> =
        t.lines().filter(|l| l.trim_start().starts_with("member ") && l.contains("accuracy")).collect();
    assert_eq!(members.len(), 3, "{t}");
    let ens = t.lines().find(|l| l.trim_start().starts_with("ensemble ")).expect("the ensemble's line");
    assert!(ens.contains("(mean of 3 members' probabilities)"), "{t}");
    // Three different seeds, three different members.
    let accs: Vec<f64> = members.iter().map(|l| accuracy(l)).collect();
    assert!(accs.iter().any(|a| (a - accs[0]).abs() > 1e-9), "{accs:?}");
    let manifest = std::fs::read_to_string(out.join("ensemble.json")).expect("manifest");
    assert!(manifest.contains("member-2/weights.safetensors"), "{manifest}");
    // A second run keeps the members it finds trained.
    let again = nnlangc(&args);
    assert_eq!(text(&again.stdout).lines().find(|l| l.trim_start().starts_with("ensemble ")), Some(ens));
    // `eval --ensemble` scores the same.
    let o = nnlangc(&["eval", s(&file), "--ensemble", s(&out), "--limit", "1500"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(ens.trim()), "{}", text(&o.stdout));
    // `run --ensemble` on raw pixels: the mean of what each member's `run` gives (each
    // scales as its training did).
    let x: Vec<f32> = (0..3 * 784).map(|i| ((i * 7) % 256) as f32).collect();
    let input = dir.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[3, 784], &x).expect("writes");
    let y = dir.join("y.npy");
    let o = nnlangc(&["run", s(&file), "--ensemble", s(&out), "--input", s(&input), "--output", s(&y)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let p = nnlang_runtime::data::npy::read(&y).expect("reads");
    assert_eq!(p.shape, vec![3, 10]);
    for row in p.data.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    assert_mean_of_members(&out, &input, &p.data, 3);
    // Neither weights nor an ensemble: a usage error.
    let o = nnlangc(&["eval", s(&file)]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn an_ensemble_of_the_last_checkpoints_of_one_run() {
    let dir = temp_dir("ensemble-checkpoints");
    let file = file_with(&dir, "checkpoints(last = 3)");
    let out = dir.join("ens");
    let o = nnlangc(&["ensemble", s(&file), "--set", "epochs=4", "--limit", "1000", "--quiet", "--out", s(&out)]);
    let t = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{t}{}", text(&o.stderr));
    let manifest = std::fs::read_to_string(out.join("ensemble.json")).expect("manifest");
    for e in 2..=4 {
        assert!(manifest.contains(&format!("run/epoch-{e}.safetensors")), "{manifest}");
    }
    assert!(!manifest.contains("epoch-1.safetensors"), "{manifest}");
    // The run keeps as many epochs' weights as the ensemble takes.
    let file = file_with(&dir, "checkpoints(last = 5)");
    let out = dir.join("five");
    let o = nnlangc(&["ensemble", s(&file), "--set", "epochs=5", "--limit", "800", "--quiet", "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let manifest = std::fs::read_to_string(out.join("ensemble.json")).expect("manifest");
    assert_eq!(manifest.matches("run/epoch-").count(), 5, "{manifest}");
}
