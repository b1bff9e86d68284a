//! `mpirun -n 2 nnlangc train|search` as a user runs it (built with `--features mpi`; needs
//! Open MPI's `mpirun`): two processes train MNIST exactly as two threads do and resume
//! across the two; a search over two processes writes the table one process writes; a
//! process killed mid-training ends the run within seconds with its checkpoint intact; a
//! process that cannot read its data, or is given another model, stops every process.
#![cfg(feature = "mpi")]

mod common;

use common::{root, s, temp_dir, text};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `mpirun -n 2` (more processes than cores allowed; as root too) running `nnlangc` with
/// `args`, or with each of `apps` (MPMD: one process each).
fn mpirun(apps: &[&[&str]]) -> Command {
    mpirun_n(2, apps)
}

fn mpirun_n(n: usize, apps: &[&[&str]]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "--bind-to", "none"]);
    if apps.len() == 1 {
        c.args(["-n", &n.to_string()]);
    }
    for (i, a) in apps.iter().enumerate() {
        if i > 0 {
            c.arg(":");
        }
        if apps.len() > 1 {
            c.args(["-n", "1"]);
        }
        c.arg(env!("CARGO_BIN_EXE_nnlangc")).args(*a);
    }
    c.current_dir(root()).stdin(Stdio::null());
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("mpirun runs (Open MPI installed?)")
}

fn nnlangc(args: &[&str]) -> Output {
    common::nnlangc(args)
}

/// The rows of the trials table at `path`, as `common::trial_rows` compares them.
fn rows(path: &Path) -> Vec<String> {
    common::trial_rows(&std::fs::read_to_string(path).expect("table"))
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const MLP: &str = "examples/mnist_mlp.nn";

#[test]
fn two_processes_train_mnist_bit_for_bit_as_two_threads_and_resume_across() {
    let d = temp_dir("mpi-train");
    // Threads that split each batch as processes do.
    let threads = |n: &str, rest: &[&str]| {
        let mut args = vec!["train", MLP, "--limit", "2000", "--split", "batch", "--threads", n];
        args.extend_from_slice(rest);
        nnlangc(&args)
    };
    let (p2, t2) = (d.join("p2"), d.join("t2"));
    let o = run(mpirun(&[&["train", MLP, "--limit", "2000", "--epochs", "2", "--out", s(&p2)]]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    // Rank 0 alone reports.
    assert_eq!(out.matches("training Mlp on 1800 examples").count(), 1, "{out}");
    assert!(out.contains("1 thread in each of 2 processes"), "{out}");
    let o = threads("2", &["--epochs", "2", "--out", s(&t2), "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        bytes(&p2.join("weights.safetensors")) == bytes(&t2.join("weights.safetensors")),
        "2 processes ≠ 2 threads"
    );
    assert!(bytes(&p2.join("state.safetensors")) == bytes(&t2.join("state.safetensors")), "optimizer state");
    // The run goes on with two threads from the processes' state (the same cut of every
    // batch), and with two processes from the threads' state: both end as one run of 3 epochs.
    let o = threads("2", &["--epochs", "3", "--resume", s(&p2), "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run(mpirun(&[&["train", MLP, "--limit", "2000", "--epochs", "3", "--resume", s(&t2), "--quiet"]]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let whole = d.join("whole");
    let o = threads("2", &["--epochs", "3", "--out", s(&whole), "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let w = bytes(&whole.join("weights.safetensors"));
    assert!(bytes(&p2.join("weights.safetensors")) == w, "processes, then threads");
    assert!(bytes(&t2.join("weights.safetensors")) == w, "threads, then processes");
    // Only rank 0 wrote: one metrics file, three epochs in it.
    let metrics = std::fs::read_to_string(p2.join("metrics.csv")).expect("metrics");
    assert_eq!(metrics.lines().count(), 1 + 3, "{metrics}");
    // Three processes sum in rank order too (a chain, not MPI's regrouping all-reduce).
    let (p3, t3) = (d.join("p3"), d.join("t3"));
    let o = run(mpirun_n(3, &[&["train", MLP, "--limit", "2000", "--epochs", "1", "--out", s(&p3), "--quiet"]]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = threads("3", &["--epochs", "1", "--out", s(&t3), "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        bytes(&p3.join("weights.safetensors")) == bytes(&t3.join("weights.safetensors")),
        "3 processes ≠ 3 threads"
    );
    // Threads inside each process: a run repeats exactly.
    let (a, b) = (d.join("a"), d.join("b"));
    for out in [&a, &b] {
        let o = run(mpirun(&[&["train", MLP, "--limit", "2000", "--epochs", "1", "--threads", "2", "--out", s(out)]]));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("2 threads in each of 2 processes"));
    }
    assert!(bytes(&a.join("weights.safetensors")) == bytes(&b.join("weights.safetensors")), "2 × 2 repeats");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_search_over_two_processes_writes_the_table_of_one_and_resumes() {
    let d = temp_dir("mpi-search");
    let file = common::search_example(&d);
    let (alone, two, cut) = (d.join("alone"), d.join("two"), d.join("cut"));
    let o = nnlangc(&["search", s(&file), "--out", s(&alone)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run(mpirun(&[&["search", s(&file), "--out", s(&two)]]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let table = rows(&alone.join("trials.csv"));
    assert_eq!(table.len(), 13);
    assert_eq!(rows(&two.join("trials.csv")), table);
    assert_eq!(bytes(&two.join("best.nn")), bytes(&alone.join("best.nn")));
    // Every trial reported once, by rank 0.
    let out = text(&o.stdout);
    assert_eq!(out.matches("  stage ").count(), 13, "{out}");
    // Stopped after five trials: two processes resume from the table and end the same.
    std::fs::create_dir_all(&cut).expect("dir");
    let first: Vec<String> =
        std::fs::read_to_string(alone.join("trials.csv")).expect("table").lines().take(6).map(String::from).collect();
    std::fs::write(cut.join("trials.csv"), first.join("\n") + "\n").expect("cut table");
    let o = run(mpirun(&[&["search", s(&file), "--out", s(&cut)]]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with(&format!("resuming the search in {}: 5 trials done\n", cut.display())));
    assert_eq!(rows(&cut.join("trials.csv")), table);
    let _ = std::fs::remove_dir_all(&d);
}

/// The process of the run `mpirun` started for `out` with rank `rank`.
fn process_of(out: &Path, rank: usize) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains("nnlangc") || !cmd.contains(s(out)) {
            return None;
        }
        let env = std::fs::read(e.path().join("environ")).ok()?;
        env.split(|&b| b == 0).any(|v| v == want.as_bytes()).then_some(pid)
    })
}

#[test]
fn a_process_killed_mid_training_ends_the_run_with_its_checkpoint_intact() {
    let d = temp_dir("mpi-kill");
    let out = d.join("run");
    let mut c = mpirun(&[&["train", MLP, "--limit", "6000", "--epochs", "200", "--out", s(&out), "--quiet"]]);
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("mpirun starts");
    // Wait for the second epoch's checkpoint, then kill rank 1.
    let started = Instant::now();
    while !out.join("epoch-2.safetensors").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint within 2 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = process_of(&out, 1).expect("rank 1 found");
    let killed = Instant::now();
    let k = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    assert!(k.success());
    // The run ends by itself, with an error, within seconds.
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the run did not end within 30 s of rank 1's death (a hang)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let waited = killed.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success(), "{err}");
    assert!(err.contains("rank 1") && err.contains("signal 9"), "{err}");
    assert!(waited < Duration::from_secs(10), "ended {waited:?} after the kill");
    assert!(process_of(&out, 0).is_none(), "rank 0 is gone too");
    // The last checkpoint is whole: it evaluates, and the run resumes from its state.
    let o = nnlangc(&["eval", MLP, "--weights", s(&out.join("weights.safetensors")), "--limit", "500"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let state = std::fs::read_to_string(out.join("state.json")).expect("state");
    let done = state
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"epochs_done\": "))
        .and_then(|v| v.trim_end_matches(',').parse::<usize>().ok())
        .expect("epochs_done");
    let o = nnlangc(&[
        "train",
        MLP,
        "--limit",
        "6000",
        "--epochs",
        &(done + 1).to_string(),
        "--threads",
        "2",
        "--split",
        "batch",
        "--resume",
        s(&out),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_process_that_cannot_read_its_data_or_trains_another_model_stops_every_process() {
    let d = temp_dir("mpi-data");
    let src = std::fs::read_to_string(root().join(MLP)).expect("example");
    let data = root().join("examples/data");
    // Rank 1's file names a data set that is not there.
    let good = d.join("good.nn");
    std::fs::write(&good, src.replace("\"data/", &format!("\"{}/", data.display()))).expect("write");
    let bad = d.join("bad.nn");
    std::fs::write(&bad, src.replace("\"data/", &format!("\"{}/missing/", d.display()))).expect("write");
    let out = d.join("run");
    let started = Instant::now();
    let o = run(mpirun(&[
        &["train", s(&good), "--limit", "500", "--out", s(&out)],
        &["train", s(&bad), "--limit", "500", "--out", s(&out)],
    ]));
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("[rank 1 of 2] error: ") && err.contains("missing/mnist/train-images-idx3-ubyte.gz"), "{err}");
    assert!(err.contains("[rank 1 of 2] error: stopping every process of the run"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!out.join("weights.safetensors").exists(), "nothing trained, nothing written");
    // Another model on rank 1: refused before the first step.
    let wide = d.join("wide.nn");
    std::fs::write(
        &wide,
        std::fs::read_to_string(&good).expect("good").replace("Mlp(hidden = 256)", "Mlp(hidden = 128)"),
    )
    .expect("write");
    let o = run(mpirun(&[
        &["train", s(&good), "--limit", "500", "--out", s(&out)],
        &["train", s(&wide), "--limit", "500", "--out", s(&out)],
    ]));
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("error: process 1 of the run trains another model, data set, recipe, starting point or --threads than process 0"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Processes split batches, and so do their threads: `--split products` under `mpirun` is
/// refused before any work, with the reason.
#[test]
fn a_distributed_run_refuses_threads_that_split_products() {
    let d = temp_dir("mpi-split");
    let out = d.join("run");
    let o =
        run(mpirun(&[&["train", MLP, "--limit", "500", "--threads", "2", "--split", "products", "--out", s(&out)]]));
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("error: --split products is for one process: a distributed run splits each batch among its processes (and their threads)"),
        "{err}"
    );
    assert!(!out.join("weights.safetensors").exists(), "nothing trained, nothing written");
    let _ = std::fs::remove_dir_all(&d);
}
