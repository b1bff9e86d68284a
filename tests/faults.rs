//! Faults during training: a kill -9 at any moment leaves the run directory consistent (one
//! complete epoch's files, or no directory yet) with a loadable checkpoint; SIGTERM saves the
//! run and exits 130; nothing staged is left behind by the next run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A small classification set and a model that trains through many short epochs, so that a
/// kill lands at every kind of moment: loading, mid-epoch, while a checkpoint is written.
fn setup(dir: &Path) -> PathBuf {
    let mut csv = String::new();
    for r in 0..600 {
        let x: Vec<f64> = (0..8).map(|c| (((r * 31 + c * 17) % 97) as f64) / 97.0).collect();
        let label = (x[0] + x[3] > 1.0) as usize + (x[5] > 0.5) as usize;
        csv.push_str(&format!("{},{label}\n", x.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(",")));
    }
    std::fs::write(dir.join("train.csv"), csv).expect("csv");
    let model = dir.join("f.nn");
    std::fs::write(
        &model,
        "model F { input x: [8]\n x -> dense(32) -> relu -> dense(3) -> softmax }\n\
         train F on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 16, epochs = 400, validate = 10%, seed = 1 }\n\
         data d { train = csv(\"train.csv\") }\n",
    )
    .expect("model");
    model
}

fn spawn(model: &Path, out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", model.to_str().expect("utf-8"), "--out", out.to_str().expect("utf-8"), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nnlangc starts")
}

/// The run directory, if there is one, is one epoch's complete run: the six files and
/// nothing else, a manifest whose epoch count matches the metrics, and a checkpoint that
/// loads into the model.
fn assert_consistent(model: &Path, out: &Path) -> Option<usize> {
    if !out.exists() {
        return None;
    }
    // The run's files; the directory's lock (`.nnlang.lock`) is not one of them.
    let mut names: Vec<String> = std::fs::read_dir(out)
        .expect("readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".nnlang"))
        .collect();
    if names.is_empty() {
        // Killed before its first save: an empty directory that the next run takes.
        return None;
    }
    names.sort();
    // The last epochs' weights (at most three), beside the run's files and resume state.
    let epochs: Vec<usize> =
        names.iter().filter_map(|n| n.strip_prefix("epoch-")?.strip_suffix(".safetensors")?.parse().ok()).collect();
    names.retain(|n| !n.starts_with("epoch-"));
    assert_eq!(
        names,
        [
            "curves.svg",
            "layers.csv",
            "layers.svg",
            "metrics.csv",
            "model.nn",
            "run.json",
            "state.json",
            "state.safetensors",
            "weights.safetensors"
        ],
        "{}",
        out.display()
    );
    assert!(!epochs.is_empty() && epochs.len() <= 3, "{epochs:?}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("manifest"))
            .expect("manifest parses");
    let done = manifest["epochs_done"].as_u64().expect("epochs_done") as usize;
    // The newest completed epoch's weights are kept, and the manifest counts the completed
    // epochs only (an interrupted epoch is not recorded as done).
    let newest = epochs.iter().max().copied().unwrap_or(0);
    assert_eq!(newest, done, "newest kept epoch {newest}, {done} epochs done");
    let rows = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics").lines().count() - 1;
    assert_eq!(rows, done, "metrics.csv has one row per epoch of the manifest");
    let eval = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["eval", model.to_str().expect("utf-8"), "--weights"])
        .arg(out.join("weights.safetensors"))
        .output()
        .expect("eval runs");
    assert_eq!(eval.status.code(), Some(0), "{}", String::from_utf8_lossy(&eval.stderr));
    Some(done)
}

#[test]
fn kill_9_at_any_moment_leaves_a_consistent_run() {
    let dir = common::temp_dir("faults-kill");
    let model = setup(&dir);
    let out = dir.join("run");
    let mut epochs_seen = Vec::new();
    // Four kills right after the start, each into a fresh directory (no run yet, or a whole
    // one), then twenty spread over training, each replacing the run the one before left.
    for (i, ms) in [1u64, 3, 6, 10].into_iter().enumerate() {
        let fresh = dir.join(format!("early{i}"));
        let mut child = spawn(&model, &fresh);
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        epochs_seen.push(assert_consistent(&model, &fresh));
    }
    for i in 0..20u64 {
        let mut child = spawn(&model, &out);
        std::thread::sleep(Duration::from_millis(5 + i * 27));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        epochs_seen.push(assert_consistent(&model, &out));
    }
    eprintln!("epochs in the run directory after each kill: {epochs_seen:?}");
    let reached: Vec<usize> = epochs_seen.iter().flatten().copied().collect();
    assert!(!reached.is_empty(), "some kills came after a checkpoint: {epochs_seen:?}");
    // The next run finishes or drops what the killed ones left staged beside the run directory.
    let mut child = spawn(&model, &out);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let mut last = spawn(&model, &out);
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill").args(["-TERM", &last.id().to_string()]).status();
    let _ = last.wait();
    assert_consistent(&model, &out);
    let strays: Vec<String> = std::fs::read_dir(&dir)
        .expect("readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".run."))
        .collect();
    // (The fresh directories of the early kills are never written again, so a stage a kill
    // left beside one of them stays until the next command on it, which recovers it.)
    assert!(strays.len() <= 1, "at most the last kill's stage is left beside the run: {strays:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_saves_the_run_and_exits_130() {
    let dir = common::temp_dir("faults-term");
    let model = setup(&dir);
    let out = dir.join("run");
    let child = spawn(&model, &out);
    // Wait for the first checkpoint, then ask politely.
    common::wait_for(&out.join("run.json"), 60, "a first epoch is written");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted at epoch") && stderr.contains("keeps the run as of epoch"), "{stderr}");
    let done = assert_consistent(&model, &out).expect("the run is there");
    assert!(done >= 1);
    // The resume state agrees with the manifest.
    let state = std::fs::read_to_string(out.join("state.json")).expect("state");
    assert!(state.contains(&format!("\"epochs_done\": {done}")), "{state}");
    let manifest = std::fs::read_to_string(out.join("run.json")).expect("manifest");
    assert!(manifest.contains("\"complete\": false"), "{manifest}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run stopped by SIGTERM and resumed writes the weights of one that never stopped — with
/// dropout, Adam, a weight average, a plateau schedule and two threads that split each batch,
/// whose states and random streams all carry over.
#[test]
fn a_stopped_run_resumes_exactly() {
    let dir = common::temp_dir("faults-resume");
    setup(&dir);
    let model = dir.join("r.nn");
    std::fs::write(
        &model,
        "model R { input x: [8]\n x -> dense(32) -> relu -> dropout(keep = 0.8) -> dense(3) -> softmax }\n\
         train R on d { optimizer = adam(lr = 0.01), batch = 32, epochs = 40, validate = 10%, average = ema(decay = 0.9), schedule = plateau(factor = 0.5, patience = 2), seed = 5 }\n\
         data d { train = csv(\"train.csv\") }\n",
    )
    .expect("model");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .args(["train", model.to_str().expect("utf-8"), "--threads", "2", "--split", "batch", "--quiet"])
            .args(args)
            .output()
            .expect("runs")
    };
    let whole = dir.join("whole");
    let o = run(&["--out", whole.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // Stopped somewhere after its first epoch, then resumed (until it completes).
    let part = dir.join("part");
    let child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", model.to_str().expect("utf-8"), "--threads", "2", "--split", "batch", "--quiet", "--out"])
        .arg(&part)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    common::wait_for(&part.join("run.json"), 60, "a first epoch is written");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let stopped = child.wait_with_output().expect("exits");
    let manifest = std::fs::read_to_string(part.join("run.json")).expect("manifest");
    if stopped.status.code() == Some(130) {
        assert!(manifest.contains("\"complete\": false"), "{manifest}");
    }
    let o = run(&["--resume", part.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["weights.safetensors", "state.safetensors", "epoch-40.safetensors"] {
        let (a, b) = (std::fs::read(whole.join(f)).expect("whole"), std::fs::read(part.join(f)).expect("resumed"));
        assert!(a == b, "{f} differs between the uninterrupted and the resumed run");
    }
    // A run cannot continue under another seed or thread count.
    let o = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", model.to_str().expect("utf-8"), "--threads", "1", "--epochs", "41", "--resume"])
        .arg(&part)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "state.json: the run was trained with 2 threads splitting each batch (--threads, --split), this run 1 thread (--threads): it cannot continue exactly"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
