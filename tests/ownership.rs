//! What is not nnlang's stays as it is, two runs never mix, and a command stops when asked:
//! foreign manifests and user files in run directories, two `train`s into one directory,
//! outputs that are inputs, and signals between an ensemble's members.

mod common;

use common::{s, temp_dir, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The issue's net: 64 → 16 → 10 on the bundled digits, `scale = 1/16`.
fn base(dir: &Path, epochs: usize) -> PathBuf {
    common::digits_net(dir, epochs, "")
}

fn nnlangc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnlangc")).args(args).current_dir(dir).output().expect("nnlangc runs")
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readable") {
        let p = e.expect("entry").path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if p.is_dir() {
            for (n, b) in listing(&p) {
                out.push((format!("{name}/{n}"), b));
            }
        } else {
            out.push((name, std::fs::read(&p).expect("readable file")));
        }
    }
    out.sort();
    out
}

#[test]
fn a_directory_with_a_foreign_run_json_is_refused_and_left_as_it_is() {
    let dir = temp_dir("own-foreign");
    let model = base(&dir, 1);
    for manifest in ["{\"experiment\":\"mine\"}", "{}", "[1, 2]", "not json at all"] {
        let mine = dir.join("mine");
        let _ = std::fs::remove_dir_all(&mine);
        std::fs::create_dir_all(mine.join("sub")).expect("dirs");
        std::fs::write(mine.join("run.json"), manifest).expect("manifest");
        std::fs::write(mine.join("notes.txt"), "my notes").expect("notes");
        std::fs::write(mine.join("sub/file.bin"), [1u8, 2, 3]).expect("file");
        let before = listing(&mine);
        let o = nnlangc(&dir, &["train", s(&model), "--out", "mine", "--quiet"]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{manifest}: {err}");
        assert!(
            err.contains("refusing to write a run in mine") && err.contains("not a manifest nnlang wrote"),
            "{err}"
        );
        assert!(err.contains("mine/run.json"), "names the manifest: {err}");
        assert_eq!(listing(&mine), before, "{manifest}: the directory is untouched");
    }
}

#[test]
fn the_users_files_in_a_run_directory_survive_a_retrain_and_a_resume() {
    let dir = temp_dir("own-notes");
    let model = base(&dir, 2);
    let o = nnlangc(&dir, &["train", s(&model), "--out", "runs/base", "--quiet", "--epochs", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    std::fs::write(dir.join("runs/base/NOTES.md"), "what I tried").expect("notes");
    std::fs::create_dir_all(dir.join("runs/base/plots")).expect("dir");
    std::fs::write(dir.join("runs/base/plots/a.svg"), "<svg/>").expect("plot");
    let o = nnlangc(&dir, &["train", s(&model), "--resume", "runs/base", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = nnlangc(&dir, &["train", s(&model), "--out", "runs/base", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("runs/base/NOTES.md")).expect("kept"), "what I tried");
    assert_eq!(std::fs::read_to_string(dir.join("runs/base/plots/a.svg")).expect("kept"), "<svg/>");
    let manifest = std::fs::read_to_string(dir.join("runs/base/run.json")).expect("manifest");
    assert!(!manifest.contains("NOTES.md"), "the user's file is not the run's: {manifest}");
    assert!(manifest.contains("\"epochs_done\": 2") && manifest.contains("\"complete\": true"), "{manifest}");
}

#[test]
fn two_trains_into_one_directory_one_refused_at_once() {
    let dir = temp_dir("own-dual");
    let model = base(&dir, 30);
    let spawn = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .args(["train", s(&model), "--out", "runs/dual", "--quiet", "--set", &format!("seed={seed}")])
            .current_dir(&*dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts")
    };
    let first = spawn("1");
    // The first holds the directory once it exists.
    common::wait_for(&dir.join("runs/dual/.nnlang.lock"), 60, "the first train takes the directory");
    let second = spawn("2").wait_with_output().expect("second ends");
    let first = first.wait_with_output().expect("first ends");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains("runs/dual: in use by process") && err.contains("another `nnlangc train`"), "{err}");
    assert!(text(&second.stdout).is_empty(), "the refused one claims nothing: {}", text(&second.stdout));
    let manifest = std::fs::read_to_string(dir.join("runs/dual/run.json")).expect("manifest");
    assert!(manifest.contains("\"epochs_done\": 30"), "{manifest}");
    let trained = std::fs::read_to_string(dir.join("runs/dual/model.nn")).expect("model");
    assert!(trained.contains("seed = 1"), "the run is the first one's: {trained}");
}

#[test]
fn an_output_over_an_input_is_refused_before_any_work() {
    let dir = temp_dir("own-overlap");
    let model = base(&dir, 1);
    let o = nnlangc(&dir, &["train", s(&model), "--out", "r", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let weights = std::fs::read(dir.join("r/weights.safetensors")).expect("weights");
    let source = std::fs::read(&model).expect("source");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "export",
                "--onnx",
                "base.nn",
                "--weights",
                "r/weights.safetensors",
                "--output",
                "r/weights.safetensors",
            ],
            "r/weights.safetensors: refusing to write the output over this command's weights",
        ),
        (
            vec!["export", "--pytorch", "base.nn", "--output", "base.nn"],
            "base.nn: refusing to write the output over this command's source",
        ),
        (
            vec!["export", "--pytorch", "base.nn", "--weights", "r/weights.safetensors", "--output", "./r/../base.nn"],
            "refusing to write the output over this command's source",
        ),
        (
            vec!["export", "--onnx", "base.nn", "--weights", "r/weights.safetensors", "--output", "r/preprocess.json"],
            "over this command's preprocessing",
        ),
    ];
    for (args, says) in cases {
        let o = nnlangc(&dir, &args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(dir.join("r/weights.safetensors")).expect("weights"), weights);
    assert_eq!(std::fs::read(&model).expect("source"), source);
    // `run --input a.npy --output a.npy`, and the same file through a hard link.
    let npy = common::npy("<f4", false, &[1, 64], &[0u8; 64 * 4]);
    std::fs::write(dir.join("a.npy"), &npy).expect("npy");
    std::fs::hard_link(dir.join("a.npy"), dir.join("b.npy")).expect("link");
    for out in ["a.npy", "b.npy"] {
        let o = nnlangc(
            &dir,
            &["run", "base.nn", "--weights", "r/weights.safetensors", "--input", "a.npy", "--output", out],
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("{out}: refusing to write the output over this command's input (a.npy)")),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.join("a.npy")).expect("input"), npy);
    }
}

#[test]
fn sigterm_between_ensemble_members_stops_it() {
    let dir = temp_dir("own-ensemble");
    let model = base(&dir, 1);
    let mut text_of = std::fs::read_to_string(&model).expect("model");
    text_of.push_str("ensemble Base { members = 1000 }\n");
    std::fs::write(&model, text_of).expect("model");
    let child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["ensemble", s(&model), "--out", "ens", "--quiet", "--limit", "200"])
        .current_dir(&*dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // Let a few members finish, then ask it to stop.
    common::wait_for(&dir.join("ens/member-2/run.json"), 120, "members are trained");
    let asked = Instant::now();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("ends");
    assert!(asked.elapsed() < Duration::from_secs(20), "stopped {:?} after the signal", asked.elapsed());
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let members = std::fs::read_dir(dir.join("ens"))
        .expect("dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert!(members < 20, "{members} member directories");
    assert!(!dir.join("ens/ensemble.json").exists());
}

/// A search asked to stop stops within seconds, with every row of its table whole; run again,
/// it resumes from the table and finishes, every row a trial it draws.
#[test]
fn sigterm_stops_a_search_whose_table_then_resumes() {
    let dir = temp_dir("own-search");
    let file = common::search_example(&dir);
    // Long enough to be interrupted: 300 coarse trials.
    let src =
        std::fs::read_to_string(&file).expect("source").replace("trials = 10, epochs = 1", "trials = 300, epochs = 1");
    std::fs::write(&file, src).expect("source");
    let child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["search", s(&file), "--out", "srch"])
        .current_dir(&*dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // Let a trial or two finish, then ask it to stop.
    let table = dir.join("srch/trials.csv");
    let start = Instant::now();
    while std::fs::read_to_string(&table).map_or(0, |t| t.lines().count()) < 3
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let asked = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().expect("ends");
    assert!(asked.elapsed() < Duration::from_secs(20), "stopped {:?} after the signal", asked.elapsed());
    assert_eq!(out.status.code(), Some(130), "{:?}: {}", out.status, text(&out.stderr));
    let partial = std::fs::read_to_string(&table).expect("table");
    assert!(partial.lines().count() < 1 + 300, "stopped before the end:\n{partial}");
    assert!(partial.ends_with('\n'), "every row whole:\n{partial}");
    // Resumed: the rows it has are trials it draws (the table is checked row by row), and it ends.
    let o = nnlangc(&dir, &["search", s(&file), "--out", "srch"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let whole = std::fs::read_to_string(&table).expect("table");
    assert_eq!(whole.lines().count(), 1 + 300 + 3, "{whole}");
    assert!(whole.starts_with(&partial), "the first rows are kept:\n{partial}\n---\n{whole}");
}

/// An export asked to stop leaves no temporary file beside its output: the output is whole
/// or absent.
#[test]
fn sigterm_during_an_export_leaves_no_temporary_file() {
    let dir = temp_dir("own-export");
    let model = base(&dir, 1);
    let o = nnlangc(&dir, &["train", s(&model), "--out", "run", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    for delay in [0u64, 2, 5, 10, 20] {
        let _ = std::fs::remove_file(dir.join("m.onnx"));
        let child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .args(["export", "--onnx", s(&model), "--weights", "run/weights.safetensors", "--output", "m.onnx"])
            .current_dir(&*dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let out = child.wait_with_output().expect("ends");
        let strays: Vec<String> = std::fs::read_dir(&*dir)
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(strays.is_empty(), "after {delay} ms: {strays:?} ({:?})", out.status);
        if out.status.success() {
            let bytes = std::fs::read(dir.join("m.onnx")).expect("a finished export wrote its file");
            assert!(bytes.len() > 1000, "a whole file");
        }
    }
}
