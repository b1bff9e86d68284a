//! Data sets larger than memory: a `.npy` array above the in-memory limit (1 GiB; here
//! lowered with `NNLANG_IN_MEMORY_MAX`) stays in its file and is read a batch's rows at a
//! time. Training from the file is training from memory, bit for bit — scaled, standardized,
//! split for validation, limited — and a file cut short is a clear error.

mod common;

use common::{s, temp_dir, text};
use nnlang_runtime::data::npy;
use std::path::Path;
use std::process::{Command, Output};

fn train(dir: &Path, file: &str, out: &str, limit_bytes: Option<&str>, extra: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nnlangc"));
    c.args(["train", s(&dir.join(file)), "--out", s(&dir.join(out))]).args(extra).current_dir(dir);
    if !extra.contains(&"--epochs") {
        c.arg("--quiet");
    }
    match limit_bytes {
        Some(b) => c.env("NNLANG_IN_MEMORY_MAX", b),
        None => c.env_remove("NNLANG_IN_MEMORY_MAX"),
    };
    c.output().expect("nnlangc runs")
}

/// 700 examples of 12 features (each feature on its own scale) in 3 classes.
fn setup(dir: &Path) {
    let (rows, cols) = (700usize, 12usize);
    let mut x = vec![0f32; rows * cols];
    let mut y = vec![0f32; rows];
    for r in 0..rows {
        let class = r % 3;
        y[r] = class as f32;
        for c in 0..cols {
            let noise = (((r * 7919 + c * 104_729) % 1000) as f32) / 1000.0 - 0.5;
            let signal = if c % 3 == class { 1.5 } else { 0.0 };
            x[r * cols + c] = (signal + noise) * (1.0 + c as f32) + 10.0 * c as f32;
        }
    }
    npy::write(&dir.join("x.npy"), &[rows, 3, 4], &x).expect("x");
    npy::write(&dir.join("y.npy"), &[rows], &y).expect("y");
    let model = "model M {\n    input x: [3, 4]\n    x -> flatten -> dense(16) -> relu -> dropout(drop = 0.1) -> dense(3) -> softmax\n}\n";
    let recipe = "train M on d {\n    optimizer = adam(lr = 1e-2)\n    batch = 32\n    epochs = 3\n    validate = 20%\n    seed = 3\n}\n";
    std::fs::write(
        dir.join("m.nn"),
        format!("{model}{recipe}data d {{\n    train = npy(\"x.npy\", \"y.npy\")\n    test = npy(\"x.npy\", \"y.npy\")\n    scale = 0.5\n    standardize = true\n}}\n"),
    )
    .expect("model");
}

#[test]
fn training_from_the_file_is_training_from_memory() {
    let d = temp_dir("ondisk");
    setup(&d);
    for (extra, name) in [(&[][..], "all"), (&["--limit", "450", "--threads", "2"][..], "limited")] {
        let mem = train(&d, "m.nn", &format!("mem-{name}"), None, extra);
        assert_eq!(mem.status.code(), Some(0), "{}", text(&mem.stderr));
        // Every array above 0 bytes stays in its file.
        let disk = train(&d, "m.nn", &format!("disk-{name}"), Some("0"), extra);
        assert_eq!(disk.status.code(), Some(0), "{}", text(&disk.stderr));
        let read = |run: &str, f: &str| std::fs::read(d.join(run).join(f)).expect("written");
        for f in ["weights.safetensors", "state.safetensors", "preprocess.json"] {
            assert!(read(&format!("mem-{name}"), f) == read(&format!("disk-{name}"), f), "{name}: {f} differs");
        }
        // The same test accuracy, read from the file.
        let first = |o: &Output| text(&o.stdout).lines().next().unwrap_or("").to_string();
        assert_eq!(first(&mem), first(&disk));
        assert!(first(&mem).starts_with("test: loss "), "{}", first(&mem));
    }
    // What a user is told.
    let o = train(&d, "m.nn", "told", Some("0"), &["--epochs", "1"]);
    let out = text(&o.stdout);
    for split in ["training", "test"] {
        let line = format!(
            "x.npy ({split} set): 700 rows kept in the file (above the 0 MiB held in memory), read a batch at a time"
        );
        assert!(out.contains(&line), "{out}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_file_cut_short_is_a_clear_error() {
    let d = temp_dir("ondisk-cut");
    setup(&d);
    let bytes = std::fs::read(d.join("x.npy")).expect("x");
    std::fs::write(d.join("x.npy"), &bytes[..bytes.len() - 100]).expect("cut");
    let o = train(&d, "m.nn", "run", Some("0"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("x.npy: the file ends before the 700 rows of 12 values its header promises"), "{err}");
    assert!(!d.join("run/weights.safetensors").exists());
    // Cut short while training: the run stops with the file named, its last epoch saved.
    std::fs::write(d.join("x.npy"), &bytes).expect("whole again");
    let child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", s(&d.join("m.nn")), "--out", s(&d.join("long")), "--quiet", "--epochs", "100000"])
        .current_dir(&d)
        .env("NNLANG_IN_MEMORY_MAX", "0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let started = std::time::Instant::now();
    while !d.join("long/weights.safetensors").exists() {
        assert!(started.elapsed().as_secs() < 60, "no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(d.join("x.npy"), &bytes[..200]).expect("cut");
    let o = child.wait_with_output().expect("ends");
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("x.npy: cannot read row") && err.contains("training stopped"), "{err}");
    let o =
        common::nnlangc(&["eval", s(&d.join("long/model.nn")), "--weights", s(&d.join("long/weights.safetensors"))]);
    assert_eq!(o.status.code(), Some(1), "the data is cut: eval says so");
    let _ = std::fs::remove_dir_all(&d);
}

/// A CSV file whose inputs pass the limit is parsed once into a temporary binary copy (gone
/// when training ends) and trained from it, bit for bit as from memory.
#[test]
fn a_large_csv_streams_to_a_binary_copy() {
    let d = temp_dir("ondisk-csv");
    setup(&d);
    let x = npy::read(&d.join("x.npy")).expect("x");
    let y = npy::read(&d.join("y.npy")).expect("y");
    let mut csv = String::from("f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,f10,f11,label\n");
    for (row, label) in x.data.chunks(12).zip(&y.data) {
        let vals: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        csv.push_str(&format!("{},{label}\n", vals.join(",")));
    }
    std::fs::write(d.join("xy.csv"), csv).expect("csv");
    let src = std::fs::read_to_string(d.join("m.nn")).expect("model");
    let src = src.replace("input x: [3, 4]", "input x: [12]").replace("x -> flatten ->", "x ->");
    let src = src.replace("npy(\"x.npy\", \"y.npy\")", "csv(\"xy.csv\")");
    std::fs::write(d.join("c.nn"), src).expect("model");
    let temps = || {
        std::fs::read_dir(std::env::temp_dir())
            .map(|r| {
                r.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("nnlang-csv-")).count()
            })
            .unwrap_or(0)
    };
    let before = temps();
    let mem = train(&d, "c.nn", "mem", None, &[]);
    assert_eq!(mem.status.code(), Some(0), "{}", text(&mem.stderr));
    // 12 features × 4 bytes = 48 bytes a row: past 1000 bytes, the rows go to the copy.
    let disk = train(&d, "c.nn", "disk", Some("1000"), &["--epochs", "3"]);
    assert_eq!(disk.status.code(), Some(0), "{}", text(&disk.stderr));
    assert!(text(&disk.stdout).contains("xy.csv (training set): 700 rows kept in the file"), "{}", text(&disk.stdout));
    let read = |run: &str| std::fs::read(d.join(run).join("weights.safetensors")).expect("weights");
    assert!(read("mem") == read("disk"), "from the copy ≠ from memory");
    assert_eq!(temps(), before, "the binary copy is gone");
}

/// A NaN in an array is found when the data is loaded, at its example, whether the array is
/// left in its file or held in memory.
#[test]
fn a_nan_in_a_file_left_on_disk_is_found_at_load() {
    let d = temp_dir("ondisk-nan");
    setup(&d);
    let mut x = npy::read(&d.join("x.npy")).expect("x");
    x.data[5 * 12 + 7] = f32::NAN;
    npy::write(&d.join("x.npy"), &x.shape, &x.data).expect("x");
    // Found where it is (the data block standardizes: checked before that), from the file and
    // from memory alike.
    for limit in [Some("0"), None] {
        let o = train(&d, "m.nn", "run", limit, &[]);
        assert_eq!(o.status.code(), Some(1));
        let err = text(&o.stderr);
        assert!(err.contains("x.npy: example 5, feature 7 is NaN or infinite"), "{limit:?}: {err}");
        assert!(!d.join("run/weights.safetensors").exists());
    }
}
