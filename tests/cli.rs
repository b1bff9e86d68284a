//! `nnlangc` as a user runs it: output, and exit codes 0 (well-formed), 1 (errors in the
//! model), 2 (usage errors).

mod common;

use common::{nnlangc, text};

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nnlangc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write temp file");
    p
}

#[test]
fn check_prints_the_summary_and_exits_0() {
    let out = nnlangc(&["check", "examples/mnist_mlp.nn"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("dense_0    dense    [256]   200,960"), "{stdout}");
    assert!(stdout.contains("parameters: 235,146 (918.5 KiB as f32) in 6 tensors"), "{stdout}");
    assert!(out.stderr.is_empty());
}

#[test]
fn check_json_is_machine_readable() {
    let out = nnlangc(&["check", "--json", "examples/convnet.nn", "--set", "width=16"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["model"], "ConvNet");
    assert_eq!(v["params_values"]["width"], 16);
    assert_eq!(v["layers"][1]["output_shape"], serde_json::json!([32, 32, 16]));
    assert_eq!(v["parameters"][0]["name"], "conv_0.weight");
    assert_eq!(v["parameters"][0]["shape"], serde_json::json!([16, 3, 3, 3]));
}

#[test]
fn model_errors_exit_1_with_the_rendered_diagnostic() {
    let out = nnlangc(&["check", "nnlang/tests/errors/conv_non_integer.nn"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--> nnlang/tests/errors/conv_non_integer.nn:4:14"), "{stderr}");
    assert!(stderr.contains("(28 − 5)/2 + 1 = 12.5 is not an integer"), "{stderr}");
    assert!(out.stdout.is_empty(), "no summary for a broken model");
}

#[test]
fn a_set_that_breaks_the_shapes_is_a_model_error() {
    // width = 30 gives 30 → conv → 30 → pool(2) → 15 → pool(2): (15 − 2)/2 + 1 = 7.5.
    let src =
        "model Net(w = 28) { input image: [w, w, 1]\n image -> maxpool(size = 2) -> maxpool(size = 2) -> dense(10) }\n";
    let p = temp_file("net.nn", src.as_bytes());
    let ok = nnlangc(&["check", p.to_str().expect("utf-8 path")]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let bad = nnlangc(&["check", p.to_str().expect("utf-8 path"), "--set", "w=30"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("(15 − 2)/2 + 1 = 7.5 is not an integer"), "{}", text(&bad.stderr));
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &["check"],
        &["check", "--no-such-flag", "examples/mnist_mlp.nn"],
        &["check", "examples/does_not_exist.nn"],
        &["check", "examples"],
        &["check", "examples/mnist_mlp.nn", "--model", "Mpl"],
        &["check", "examples/mnist_mlp.nn", "--set", "hiden=3"],
        &["check", "examples/mnist_mlp.nn", "--set", "hidden=true"],
        &["check", "examples/mnist_mlp.nn", "--set", "hidden"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = nnlangc(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    let out = nnlangc(&["check", "examples/mnist_mlp.nn", "--model", "Mpl"]);
    assert_eq!(
        text(&out.stderr),
        "error: examples/mnist_mlp.nn: --model Mpl: no model `Mpl` in this file (did you mean `Mlp`?)\n"
    );
    let out = nnlangc(&["check", "examples/mnist_mlp.nn", "--set", "hiden=3"]);
    assert_eq!(
        text(&out.stderr),
        "error: examples/mnist_mlp.nn: --set hiden: no model in this file has a parameter `hiden` (did you mean `hidden`?)\n"
    );
    let out = nnlangc(&["check", "examples/does_not_exist.nn"]);
    assert_eq!(text(&out.stderr), "error: cannot read examples/does_not_exist.nn: no such file\n");
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_not_a_panic() {
    let p = temp_file("latin1.nn", b"model M {\n  input x: [4] // caf\xe9\n  x -> dense(1)\n}\n");
    let out = nnlangc(&["check", p.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(":2:22: the file is not valid UTF-8 (byte 0xe9 at offset 31)"), "{stderr}");
}

#[test]
fn emit_ir_and_dot() {
    let out = nnlangc(&["emit", "--ir", "examples/mnist_mlp.nn"]);
    assert_eq!(out.status.code(), Some(0));
    let ir = text(&out.stdout);
    assert!(ir.starts_with("model Mlp(hidden = 256) {\n  %0 x = input(dims = [784]) : [784]\n  %1 dense_0 = dense(units = 256)(%0) : [256]\n"), "{ir}");
    let out = nnlangc(&["emit", "--dot", "examples/residual.nn"]);
    assert_eq!(out.status.code(), Some(0));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"Residual\" {"), "{dot}");
    // The residual connection: n6 (the sum) reads both n2 and n5.
    for edge in ["  n2 -> n6;\n", "  n5 -> n6;\n", "  n6 -> n7;\n"] {
        assert!(dot.contains(edge), "{edge}in {dot}");
    }
}

/// `nnlangc gradcheck` passes every shipped example: a line per parameter tensor, the
/// verdict last, exit 0. The widest examples are checked narrower (`--set`, as a user would):
/// the same layers, blocks and repetitions, a fraction of the arithmetic — at full width the
/// transformer's check alone took minutes of this test's unoptimised build.
#[test]
fn gradcheck_passes_every_example() {
    let root = common::root();
    let narrower = |stem: &str| -> &[&str] {
        match stem {
            "shakespeare_transformer" => &["--set", "width=32", "--set", "blocks=2"],
            "resnet" => &["--set", "width=8", "--set", "blocks=1"],
            "convnet" | "fashion_bn" | "mnist_bn" => &["--set", "width=8"],
            "shakespeare" | "shakespeare_lstm" => &["--set", "hidden=48"],
            "local_faces" => &["--set", "filters=4"],
            _ => &[],
        }
    };
    for (stem, rel, _) in common::nn_files(&root.join("examples"), &root) {
        let mut args = vec!["gradcheck", rel.as_str(), "--examples", "2", "--coordinates", "4"];
        args.extend_from_slice(narrower(&stem));
        let out = nnlangc(&args);
        let o = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stem}: {o}{}", text(&out.stderr));
        let last = o.lines().last().unwrap_or_default();
        assert!(last == "verdict: good" || last == "verdict: fine (the model has kinks)", "{stem}: {o}");
        assert!(o.lines().any(|l| l.contains(".weight") && l.contains("good")), "{stem}: {o}");
    }
}

/// `--set` reaches the recipe: values replace what the `train` block says or are added to it,
/// are checked as if written there, and the saved `model.nn` says what was trained.
#[test]
fn set_overrides_recipe_values() {
    let dir = common::temp_dir("set-recipe");
    let out = dir.join("run");
    let o = nnlangc(&[
        "train",
        "examples/japanese_vowels.nn",
        "--set",
        "optimizer.lr=0.01",
        "--set",
        "seed=3",
        "--set",
        "epochs=1",
        "--set",
        "regularize.l2=1e-4",
        "--set",
        "schedule=step(every = 5, factor = 0.5)",
        "--limit",
        "40",
        "--quiet",
        "--out",
        common::s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let saved = std::fs::read_to_string(out.join("model.nn")).expect("saved source");
    for want in [
        "optimizer = adam(lr = 0.01)",
        "seed      = 3",
        "epochs    = 1",
        "regularize { l2 = 1e-4 }",
        "schedule = step(every = 5, factor = 0.5)",
    ] {
        assert!(saved.contains(want), "{want}\n{saved}");
    }
    let run = std::fs::read_to_string(out.join("run.json")).expect("manifest");
    assert!(run.contains("\"epochs\": 1"), "{run}");
    // Checked by the file's schema, applied to the checked recipe (the source is never
    // edited): a bad value, or a path the recipe cannot take, is a usage error naming the
    // `--set` argument, a bad value with its diagnostic.
    let bad = nnlangc(&[
        "train",
        "examples/japanese_vowels.nn",
        "--set",
        "optimizer.lr=-1",
        "--out",
        common::s(&dir.join("bad")),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains("--set optimizer.lr=-1: `lr` must be a number > 0, found the integer -1")
            && err.contains("--> --set optimizer.lr:1:1"),
        "{err}"
    );
    assert!(!dir.join("bad").exists());
    for (set, want) in [
        ("schedule.factor=0.5", "--set schedule.factor: the `train` block sets no `schedule`"),
        ("seed=1 } model X {", "a value is one expression"),
    ] {
        let bad = nnlangc(&["train", "examples/japanese_vowels.nn", "--set", set]);
        assert_eq!(bad.status.code(), Some(2), "{set}");
        assert!(text(&bad.stderr).contains(want), "{set}: {}", text(&bad.stderr));
    }
    for (set, want) in [
        ("regularize=3", "--set regularize: `regularize` is a block of settings; set one of them"),
        (
            "optimizer.momentum=0.5",
            "--set optimizer.momentum: `adam` has no argument `momentum` (it takes: lr, beta1, beta2, eps)",
        ),
        ("optimizer=adagrad", "--set optimizer=adagrad: unknown optimizer `adagrad`"),
        ("regularize.l3=1", "--set regularize.l3: `regularize` has no setting `l3`; it has: l1, l2, max_norm"),
        ("data.scale=0.5", "--set data.scale: --set reaches the `train` block (and the model's parameters); `data` settings are changed in the file's `data` block"),
        ("search.trials=3", "`search` settings are changed in the file's `search` block"),
        ("optimizer.lr=1 beta1 = 0.5", "--set optimizer.lr=1 beta1 = 0.5: `1 beta1 = 0.5` is more than one value"),
    ] {
        let bad = nnlangc(&["train", "examples/japanese_vowels.nn", "--set", set]);
        assert_eq!(bad.status.code(), Some(2), "{set}");
        assert!(text(&bad.stderr).contains(want), "{set}: {}", text(&bad.stderr));
    }
}

/// The notes' sanity checks pass on the examples and fail, with a clear line and exit 1, on
/// a broken recipe.
#[test]
fn sanity_checks_pass_and_catch_broken_recipes() {
    for file in ["examples/mnist_mlp.nn", "examples/japanese_vowels.nn"] {
        let o = nnlangc(&["sanity", file, "--limit", "500"]);
        let out = text(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{file}: {out}{}", text(&o.stderr));
        assert_eq!(out.lines().filter(|l| l.starts_with("pass  ")).count(), 3, "{file}: {out}");
        assert!(out.contains("chance ln ") && out.contains("100.0% accuracy on 20 examples"), "{file}: {out}");
    }
    // Weights far too large: the initial loss is nowhere near chance.
    let o = nnlangc(&["sanity", "examples/japanese_vowels.nn", "--set", "init=normal(std = 3)"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("FAIL  loss at initialization is chance: initial loss ")), "{out}");
    // A learning rate far too small: 20 examples cannot be fitted.
    let o = nnlangc(&["sanity", "examples/japanese_vowels.nn", "--set", "optimizer.lr=1e-9"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(out.contains("FAIL  overfits 20 examples: ") && out.contains("after 1000 epochs"), "{out}");
}

/// `export --pytorch` writes a module for every example (checked against `run` by
/// `bench/pytorch_export_check.py`, where PyTorch is); a bad destination is refused.
#[test]
fn export_pytorch_writes_every_example() {
    let root = common::root();
    for (stem, rel, _) in common::nn_files(&root.join("examples"), &root) {
        let o = nnlangc(&["export", "--pytorch", &rel]);
        let py = text(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{stem}: {}", text(&o.stderr));
        assert!(
            py.contains("import torch")
                && py.contains("(nn.Module):\n    def __init__(self):")
                && py.contains("        return v"),
            "{stem}: {py}"
        );
    }
    let o = nnlangc(&["export", "--pytorch", "examples/mnist_convnet.nn"]);
    let py = text(&o.stdout);
    assert!(
        py.contains("self.conv_0 = nn.Conv2d(1, 32, 3, stride=1, padding=1)")
            && py.contains("self.dense_0 = nn.Linear(1568, 128)"),
        "{py}"
    );
    let dir = common::temp_dir("export");
    let o = nnlangc(&["export", "--pytorch", "examples/mnist_mlp.nn", "--output", common::s(&dir)]);
    assert_eq!(o.status.code(), Some(2));
    let o = nnlangc(&["export", "examples/mnist_mlp.nn"]);
    assert_eq!(o.status.code(), Some(2), "a format is required");
}

/// Launched as one of several processes (as `mpirun -n 2` tells them) by an nnlangc built
/// without MPI: refused, rather than two trainings writing the same run directory.
#[cfg(not(feature = "mpi"))]
#[test]
fn several_processes_without_mpi_are_refused() {
    let dir = common::temp_dir("no-mpi");
    for cmd in ["train", "search"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .args([cmd, "examples/mnist_mlp.nn", "--out", common::s(&dir.join("run"))])
            .current_dir(common::root())
            .env("OMPI_COMM_WORLD_SIZE", "2")
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(2));
        assert_eq!(
            text(&o.stderr),
            format!("error: launched as one of 2 processes (mpirun), but this nnlangc was built without MPI: each process would run `{cmd}` alone over the same files. Build it with `--features mpi` (docs/scaling.md)\n")
        );
    }
    assert!(!dir.join("run").exists());
    // Other commands do not share work: refused with or without MPI.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["ensemble", "examples/mnist_mlp.nn", "--out", common::s(&dir.join("run"))])
        .current_dir(common::root())
        .env("OMPI_COMM_WORLD_SIZE", "3")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: launched as one of 3 processes (mpirun): only `train` and `search` share their work among processes; run this command alone\n"
    );
    assert!(!dir.join("run").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--set` values apply one after the other: the last setting of a key wins, whether it is
/// written whole (`optimizer=…`) or by argument (`optimizer.lr=…`), and `model.nn` says so.
#[test]
fn the_last_set_of_a_key_wins_whole_or_by_argument() {
    let dir = common::temp_dir("set-order");
    let trained = |sets: &[&str], out: &str| -> String {
        let out = dir.join(out);
        let mut args = vec!["train", "examples/logistic_regression.nn", "--epochs", "1", "--limit", "200", "--quiet"];
        for s in sets {
            args.extend(["--set", s]);
        }
        args.extend(["--out", common::s(&out)]);
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        std::fs::read_to_string(out.join("model.nn")).expect("model.nn")
    };
    // The rate the run trained at (metrics.csv's `lr` column), not only what the record says.
    let rate = |out: &str| -> String {
        let m = std::fs::read_to_string(dir.join(out).join("metrics.csv")).expect("metrics");
        let header: Vec<&str> = m.lines().next().expect("header").split(',').collect();
        let col = header.iter().position(|h| *h == "lr").expect("an lr column");
        m.lines().nth(1).expect("epoch 1").split(',').nth(col).expect("lr").to_string()
    };
    let whole_then_field = trained(&["optimizer=sgd(lr = 0.2, momentum = 0.1)", "optimizer.lr=0.5"], "a");
    assert!(whole_then_field.contains("optimizer = sgd(lr = 0.5, momentum = 0.1)"), "{whole_then_field}");
    assert_eq!(rate("a"), "0.5");
    let field_then_whole = trained(&["optimizer.lr=0.5", "optimizer=sgd(lr = 0.2, momentum = 0.1)"], "b");
    assert!(field_then_whole.contains("optimizer = sgd(lr = 0.2, momentum = 0.1)"), "{field_then_whole}");
    assert_eq!(rate("b"), "0.2");
    let twice = trained(&["seed=1", "seed=2"], "c");
    assert!(twice.contains("seed = 2") && !twice.contains("seed = 1"), "{twice}");
}
