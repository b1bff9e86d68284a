//! Training for real, on a CI-sized subset of the bundled MNIST: the loss falls, the
//! accuracy passes a threshold, the same seed gives the same weights, saved weights give the
//! same outputs, and every kind of bad input stops with a clear error.

mod common;

use common::{nnlangc, s, text};
use std::path::Path;
use std::process::{Command, Output};

#[test]
fn mnist_subset_learns_and_repeats_exactly() {
    let out1 = common::temp_dir("training-run1");
    let out2 = common::temp_dir("training-run2");
    let args = |out: &Path| {
        nnlangc(&["train", "examples/mnist_mlp.nn", "--limit", "4000", "--epochs", "3", "--out", s(out), "--quiet"])
    };
    let first = args(&out1);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    // "test: loss 0.3012, accuracy 91.23% on 4000 examples"
    let acc: f64 = stdout
        .split("accuracy ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {stdout}"));
    assert!(acc > 88.0, "test accuracy {acc}% after 3 epochs on 3,600 examples");

    let csv = std::fs::read_to_string(out1.join("metrics.csv")).expect("metrics.csv");
    let losses: Vec<f64> =
        csv.lines().skip(1).map(|l| l.split(',').nth(1).and_then(|v| v.parse().ok()).expect("train_loss")).collect();
    assert_eq!(losses.len(), 3);
    assert!(losses[2] < losses[0] * 0.6, "the training loss falls: {losses:?}");
    let svg = std::fs::read_to_string(out1.join("curves.svg")).expect("curves.svg");
    assert!(svg.starts_with("<svg") && svg.contains("validation"));
    let resolved = std::fs::read_to_string(out1.join("model.nn")).expect("model.nn");
    assert!(resolved.starts_with("// resolved by nnlangc train") && resolved.contains("model Mlp(hidden = 256)"));

    let second = args(&out2);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let w1 = std::fs::read(out1.join("weights.safetensors")).expect("weights");
    let w2 = std::fs::read(out2.join("weights.safetensors")).expect("weights");
    assert!(w1 == w2, "the same seed gives the same weights");

    // The checkpoint loads for evaluation and gives the accuracy training reported.
    let eval = nnlangc(&[
        "eval",
        "examples/mnist_mlp.nn",
        "--weights",
        s(&out1.join("weights.safetensors")),
        "--limit",
        "4000",
    ]);
    assert_eq!(eval.status.code(), Some(0), "{}", text(&eval.stderr));
    let report = text(&eval.stdout);
    assert!(report.contains(&format!("accuracy  {acc:.2}%")), "{report}\nvs {stdout}");
    assert!(report.contains("confusion matrix"), "{report}");

    // A mismatched model: the checkpoint has 256 hidden units, this model 128.
    let bad = nnlangc(&[
        "eval",
        "examples/mnist_mlp.nn",
        "--set",
        "hidden=128",
        "--weights",
        s(&out1.join("weights.safetensors")),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("tensor `dense_0.weight` has shape [256, 784], the model expects [128, 784]"),
        "{}",
        text(&bad.stderr)
    );
    // A truncated checkpoint.
    let truncated = out1.join("truncated.safetensors");
    std::fs::write(&truncated, &w1[..w1.len() / 2]).expect("write");
    let bad = nnlangc(&["eval", "examples/mnist_mlp.nn", "--weights", s(&truncated)]);
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(err.contains("truncated.safetensors: not a valid safetensors file"), "{err}");

    // `run` on a few rows writes one probability vector per row.
    let x: Vec<f32> = vec![0.0; 3 * 784];
    let input = out1.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[3, 784], &x).expect("write npy");
    let output = out1.join("y.npy");
    let run = nnlangc(&[
        "run",
        "examples/mnist_mlp.nn",
        "--weights",
        s(&out1.join("weights.safetensors")),
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let y = nnlang_runtime::data::npy::read(&output).expect("read npy");
    assert_eq!(y.shape, vec![3, 10]);
    for row in y.data.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // An input of the wrong shape.
    nnlang_runtime::data::npy::write(&input, &[3, 28, 28], &x).expect("write npy");
    let run = nnlangc(&[
        "run",
        "examples/mnist_mlp.nn",
        "--weights",
        s(&out1.join("weights.safetensors")),
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stderr).contains("array of shape [3, 28, 28]; the model's input `x` needs [batch, 784]"),
        "{}",
        text(&run.stderr)
    );
}

/// Writes an IDX file of unsigned bytes.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

const TINY: &str = "model Tiny {\n    input x: [4]\n    x -> dense(3) -> softmax\n}\ntrain Tiny on tiny { batch = 2, epochs = 2 }\ndata tiny { train = idx(\"images.idx\", \"labels.idx\") }\n";

fn tiny(name: &str, images: Vec<u8>, labels: Vec<u8>) -> (common::TempDir, Output) {
    let d = common::temp_dir(&format!("training-{name}"));
    std::fs::write(d.join("tiny.nn"), TINY).expect("write");
    std::fs::write(d.join("images.idx"), images).expect("write");
    std::fs::write(d.join("labels.idx"), labels).expect("write");
    let out = nnlangc(&["train", s(&d.join("tiny.nn")), "--out", s(&d.join("out")), "--quiet"]);
    (d, out)
}

#[test]
fn bad_data_files_are_clear_errors() {
    let good_images = idx(
        &[6, 2, 2],
        &[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230],
    );
    let good_labels = idx(&[6], &[0, 1, 2, 0, 1, 2]);
    let (_, ok) = tiny("ok", good_images.clone(), good_labels.clone());
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));

    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        (
            "magic",
            b"\x1f\x00\x08\x03rest".to_vec(),
            good_labels.clone(),
            "images.idx: not an IDX file: magic number 1f 00 08 03, expected 00 00 08 <dimensions>",
        ),
        (
            "count",
            idx(&[6, 2, 2], &[1; 20]),
            good_labels.clone(),
            "images.idx: the header promises 6 × 2 × 2 = 24 bytes of data, the file has 20",
        ),
        ("labels", good_images.clone(), idx(&[5], &[0, 1, 2, 0, 1]), "labels.idx: 5 labels for 6 images"),
        (
            "class",
            good_images.clone(),
            idx(&[6], &[0, 1, 2, 7, 1, 2]),
            "example 4 (counting from 1) has label 7, outside the model's 3 classes 0..2",
        ),
        (
            "width",
            idx(&[6, 3, 1], &[0; 18]),
            good_labels.clone(),
            "3 features per example, but the model's input `x` [4] has 4",
        ),
    ];
    for (name, images, labels, expected) in cases {
        let (d, out) = tiny(name, images, labels);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(!d.join("out").exists(), "{name}: nothing is written");
    }
}

#[test]
fn nan_in_data_and_a_diverging_loss_stop_with_a_message() {
    let d = common::temp_dir("training-nan");
    std::fs::write(
        d.join("reg.nn"),
        "model Reg {\n    input x: [2]\n    x -> dense(1)\n}\ntrain Reg on pts { loss = mse, optimizer = sgd(lr = 1e30), batch = 2, epochs = 3 }\ndata pts { train = csv(\"pts.csv\") }\n",
    )
    .expect("write");
    std::fs::write(d.join("pts.csv"), "a,b,y\n1,2,3\n4,nan,6\n").expect("write");
    let out = nnlangc(&["train", s(&d.join("reg.nn")), "--out", s(&d.join("out")), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("pts.csv: line 3, column 2: NaN is not a finite number"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(d.join("pts.csv"), "a,b,y\n1,2,3\n4,5,6\n7,8,9\n10,11,12\n").expect("write");
    let out = nnlangc(&["train", s(&d.join("reg.nn")), "--out", s(&d.join("out")), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("the training loss became") && err.contains("at epoch 1, step 2; training stopped"), "{err}");
    assert!(!d.join("out").exists(), "no weights are written after a diverged run");
}

#[cfg(unix)]
#[test]
fn ctrl_c_finishes_the_batch_saves_and_exits() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let out = common::temp_dir("training-interrupt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", "examples/mnist_mlp.nn", "--limit", "6000", "--epochs", "500", "--out", s(&out)])
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nnlangc starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // Wait for the first finished epoch, then interrupt.
    let first = lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("epoch"));
    assert!(first.is_some(), "training printed an epoch line");
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("exits");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(130), "{err}");
    // The run keeps its last completed epoch; the interrupted one is not recorded as done.
    assert!(err.contains("interrupted at epoch") && err.contains("keeps the run as of epoch"), "{err}");
    assert!(err.contains("(continue it with --resume"), "{err}");
    assert!(!rest.iter().any(|l| l.starts_with("wrote ")), "nothing new is claimed: {rest:?}");
    for f in ["weights.safetensors", "metrics.csv", "curves.svg", "model.nn", "state.json"] {
        assert!(out.join(f).exists(), "{f} is written");
    }
    let manifest = std::fs::read_to_string(out.join("run.json")).expect("manifest");
    let state = std::fs::read_to_string(out.join("state.json")).expect("state");
    let done =
        |t: &str| t.split("\"epochs_done\":").nth(1).and_then(|r| r.trim_start().split(',').next().map(str::to_string));
    assert_eq!(done(&manifest), done(&state), "the manifest and the resume state agree");
}

#[test]
fn a_regression_target_binned_into_classes() {
    let d = common::temp_dir("training-bins");
    // y = a: four equal bins over [0, 1) are learnable from the first feature alone.
    let mut csv = String::from("a,b,y\n");
    for i in 0..400 {
        let a = (i * 37 % 400) as f64 / 400.0;
        let b = (i * 91 % 400) as f64 / 400.0;
        csv.push_str(&format!("{a},{b},{a}\n"));
    }
    std::fs::write(d.join("pts.csv"), csv).expect("write");
    let src = "model Bins(k = 4) {\n    input x: [2]\n    x -> dense(16) -> tanh -> dense(k) -> softmax\n}\n\
               train Bins on pts { loss = cross_entropy(bins = 4), optimizer = adam(lr = 0.02), batch = 20, epochs = 60, seed = 1 }\n\
               data pts { train = csv(\"pts.csv\"), classes = 4 }\n";
    std::fs::write(d.join("bins.nn"), src).expect("write");
    let out = nnlangc(&["train", s(&d.join("bins.nn")), "--out", s(&d.join("out")), "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let eval = nnlangc(&["eval", s(&d.join("bins.nn")), "--weights", s(&d.join("out/weights.safetensors"))]);
    let report = text(&eval.stdout);
    let acc: f64 = report
        .split("accuracy  ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse().ok())
        .expect("accuracy");
    assert!(acc > 90.0, "{report}");

    let wrong = nnlangc(&["train", s(&d.join("bins.nn")), "--set", "k=3", "--out", s(&d.join("out3")), "--quiet"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("`cross_entropy(bins = 4)` needs a model with 4 outputs, this one has 3"),
        "{}",
        text(&wrong.stderr)
    );
}

#[test]
fn plateau_lowers_the_rate_when_validation_stalls() {
    let d = common::temp_dir("training-plateau");
    let mut csv = String::from("a,b,y\n");
    for i in 0..100 {
        csv.push_str(&format!("{},{},{}\n", i % 7, i % 5, i % 2));
    }
    std::fs::write(d.join("pts.csv"), csv).expect("write");
    // A learning rate so small that the validation loss cannot improve measurably.
    let src = "model P {\n    input x: [2]\n    x -> dense(2) -> softmax\n}\n\
               train P on pts { optimizer = sgd(lr = 1e-12), schedule = plateau(factor = 0.5, patience = 1), validate = 20%, batch = 10, epochs = 4 }\n\
               data pts { train = csv(\"pts.csv\") }\n";
    std::fs::write(d.join("p.nn"), src).expect("write");
    let out = nnlangc(&["train", s(&d.join("p.nn")), "--out", s(&d.join("out")), "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(d.join("out/metrics.csv")).expect("metrics");
    let col = csv.lines().next().and_then(|h| h.split(',').position(|c| c == "lr")).expect("an lr column");
    let lrs: Vec<f64> =
        csv.lines().skip(1).map(|l| l.split(',').nth(col).and_then(|v| v.parse().ok()).expect("lr")).collect();
    assert_eq!(lrs, vec![1e-12, 1e-12, 5e-13, 2.5e-13]);
}

/// The notes' CIFAR-shaped net (32×32×3; no colour data set ships with nnlang) learns a
/// synthetic task: is the image redder than it is green?
#[test]
fn cifar_shaped_net_learns_synthetic_colour_images() {
    use nnlang::plan::{build, Loss, Mode};
    use nnlang_runtime::train::{self, Init, OptimizerKind, Stepper};
    use rand::{RngExt, SeedableRng};
    let src = std::fs::read_to_string(common::root().join("examples/convnet.nn")).expect("example");
    let mut opts = nnlang::Options::default();
    opts.overrides.insert("width".into(), nnlang::ir::ParamValue::Int(8));
    let c = nnlang::compile(&src, &opts).expect("compiles");
    let model = &c.models[0];
    let rows = 16;
    let plan = build(model, Mode::Training(Loss::CROSS_ENTROPY), rows).expect("plan");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let n = 64;
    let mut x = vec![0f32; n * 32 * 32 * 3];
    let mut y = vec![0f32; n];
    for i in 0..n {
        let label = i % 2;
        y[i] = label as f32;
        for p in 0..32 * 32 {
            let noise: f32 = rng.random_range(0.0..0.5);
            let (r, g) = if label == 1 { (0.5 + noise, noise) } else { (noise, 0.5 + noise) };
            x[(i * 1024 + p) * 3] = r;
            x[(i * 1024 + p) * 3 + 1] = g;
            x[(i * 1024 + p) * 3 + 2] = rng.random_range(0.0..1.0);
        }
    }
    let o = train::Options {
        optimizer: OptimizerKind::Sgd { lr: 0.005, momentum: 0.9, nesterov: true },
        batch: rows,
        ..nnlang::spec::TrainRecipe::default().options(1)
    };
    let mut params = vec![0f32; plan.params_len];
    train::initialize(&plan, &mut params, Init::He, 1);
    let mut s = Stepper::new(&plan, params, &o, 1);
    let mut losses = Vec::new();
    for _ in 0..12 {
        let mut total = 0.0;
        for b in 0..n / rows {
            total +=
                s.step(&x[b * rows * 3072..(b + 1) * rows * 3072], &y[b * rows..(b + 1) * rows], rows).expect("step");
        }
        losses.push(total / (n / rows) as f64);
    }
    assert!(losses[11] < 0.1 && losses[11] < losses[0] * 0.2, "the loss falls: {losses:?}");
}

#[test]
fn impossible_runs_are_refused_before_they_start() {
    let d = common::temp_dir("training-huge");
    std::fs::write(
        d.join("m.nn"),
        "model M {\n    input x: [2]\n    x -> dense(70000) -> relu -> dense(70000) -> relu -> dense(2) -> softmax\n}\ntrain M on pts { batch = 100000000 }\ndata pts { train = csv(\"pts.csv\") }\n",
    )
    .expect("write");
    std::fs::write(d.join("pts.csv"), "1,2,0\n3,4,1\n").expect("write");
    // The batch is the data's two rows (a batch beyond the data is the whole data set); the
    // model alone is beyond the memory limit.
    let out = nnlangc(&["train", s(&d.join("m.nn")), "--out", s(&d.join("out")), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!d.join("out").exists(), "nothing is left");
    assert!(
        text(&out.stderr).contains("at batch 2 needs 36.5 GiB") && text(&out.stderr).contains("lower `batch`"),
        "{}",
        text(&out.stderr)
    );
    // `--limit 0` would train and evaluate nothing: refused as a usage error, before anything.
    let out = nnlangc(&["train", "examples/mnist_mlp.nn", "--limit", "0", "--out", s(&d.join("out")), "--quiet"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid value '0' for '--limit <N>': must be at least 1"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.join("out").exists());
}

/// Every shipped example with a `train` block trains as a user runs it (one short epoch on
/// the bundled data); the CIFAR-shaped one, whose data no package ships, says which file it
/// needs.
#[test]
fn every_shipped_example_trains_as_written() {
    let d = common::temp_dir("training-examples");
    let root = common::root();
    for (stem, rel, src) in common::nn_files(&root.join("examples"), &root) {
        if !src.contains("\ntrain ") {
            continue;
        }
        let out = d.join(&stem);
        let run = nnlangc(&["train", &rel, "--epochs", "1", "--limit", "256", "--out", s(&out), "--quiet"]);
        let stderr = text(&run.stderr);
        if stem == "convnet" {
            assert_eq!(run.status.code(), Some(1), "{stem}: {stderr}");
            assert!(stderr.contains("examples/data/cifar/train-images.gz: cannot read"), "{stem}: {stderr}");
            continue;
        }
        assert_eq!(run.status.code(), Some(0), "{stem}: {stderr}");
        assert!(out.join("weights.safetensors").exists() && out.join("run.json").exists(), "{stem}");
    }
}

/// Training shows inside itself: training accuracy beside validation accuracy, the penalty
/// apart from the data loss, per-layer statistics in `layers.csv`, and a rate so high that the
/// ReLUs die is called too high (not too low).
#[test]
fn training_shows_accuracy_gap_penalty_and_dead_units() {
    let d = common::temp_dir("training-inside");
    let data = common::root().join("examples/data/mnist");
    let src = std::fs::read_to_string(common::root().join("examples/mnist_mlp.nn"))
        .expect("example")
        .replace("\"data/mnist", &format!("\"{}", data.display()));
    let file = d.join("m.nn");
    std::fs::write(&file, &src).expect("writes");
    let run = nnlangc(&["train", s(&file), "--epochs", "2", "--limit", "2000", "--out", s(&d.join("ok"))]);
    let out = text(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{out}{}", text(&run.stderr));
    let epoch1 = out.lines().find(|l| l.starts_with("epoch   1/2")).expect("an epoch line");
    assert!(epoch1.contains(" + penalty ") && epoch1.contains("train acc ") && epoch1.contains("val acc "), "{epoch1}");
    let metrics = std::fs::read_to_string(d.join("ok/metrics.csv")).expect("metrics");
    assert!(metrics.starts_with("epoch,train_loss,penalty,train_accuracy,val_loss,val_accuracy,"), "{metrics}");
    let last: Vec<&str> = metrics.lines().nth(2).expect("epoch 2").split(',').collect();
    let train_acc: f64 = last[3].parse().expect("a train accuracy");
    assert!(train_acc > 0.85, "{metrics}");
    let layers = std::fs::read_to_string(d.join("ok/layers.csv")).expect("layers");
    assert!(layers.lines().any(|l| l.starts_with("2,dense_0,relu,")), "{layers}");
    assert!(layers.lines().any(|l| l.starts_with("2,dense_2.weight,tensor,")), "{layers}");
    // The first layer's 256 units as 28×28 pictures: the first 64, in an 8×8 grid.
    let png = std::fs::File::open(d.join("ok/first_layer.png")).expect("first_layer.png");
    let info = png::Decoder::new(std::io::BufReader::new(png)).read_info().expect("a PNG").info().clone();
    assert_eq!((info.width, info.height), (8 * 30 + 2, 8 * 30 + 2));
    assert!(std::fs::read_to_string(d.join("ok/layers.svg")).expect("layers.svg").contains("dense_0 (relu)"));

    // A learning rate of 3: the ReLUs die, and the warning says why.
    std::fs::write(&file, src.replace("lr = 0.05", "lr = 3.0")).expect("writes");
    let run = nnlangc(&["train", s(&file), "--epochs", "1", "--limit", "2000", "--out", s(&d.join("hot"))]);
    let out = text(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{out}{}", text(&run.stderr));
    assert!(
        out.contains("units of dense_1 never fire on the training sample (dead): the learning rate may be too high"),
        "{out}"
    );
    assert!(!out.contains("may be too low"), "{out}");
}

/// `--init` starts from given weights: with a rate too small to move them, the run scores
/// what those weights score; weights of another model are refused, naming the tensor.
#[test]
fn init_starts_from_given_weights() {
    let d = common::temp_dir("training-init");
    let first = d.join("first");
    let o =
        nnlangc(&["train", "examples/mnist_mlp.nn", "--epochs", "2", "--limit", "2000", "--quiet", "--out", s(&first)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let trained = text(&o.stdout);
    let weights = first.join("weights.safetensors");
    let still = |init: bool, out: &str| {
        let mut args = vec!["train", "examples/mnist_mlp.nn", "--epochs", "1", "--limit", "2000", "--quiet"];
        args.extend(["--set", "optimizer.lr=1e-9", "--out", out]);
        if init {
            args.extend(["--init", s(&weights)]);
        }
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let t = text(&o.stdout);
        let acc = t.split("accuracy ").nth(1).and_then(|a| a.split('%').next()).and_then(|a| a.parse::<f64>().ok());
        acc.expect("a test accuracy")
    };
    let from_trained = still(true, s(&d.join("a")));
    let from_scratch = still(false, s(&d.join("b")));
    let want: f64 = trained
        .split("accuracy ")
        .nth(1)
        .and_then(|a| a.split('%').next())
        .and_then(|a| a.parse().ok())
        .expect("accuracy");
    assert!(
        (from_trained - want).abs() < 0.5 && from_scratch < 50.0,
        "{from_trained} vs {want}; scratch {from_scratch}"
    );
    let o = nnlangc(&[
        "train",
        "examples/logistic_regression.nn",
        "--epochs",
        "1",
        "--init",
        s(&weights),
        "--out",
        s(&d.join("c")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains(s(&weights)), "{}", text(&o.stderr));
}

/// Stopped after epoch 3 of 8 and resumed: the weights of a run that never stopped, byte for
/// byte.
#[test]
fn resumed_after_epoch_3_of_8_is_byte_identical() {
    let d = common::temp_dir("training-resume");
    let run = |out: &str, epochs: &str, resume: bool| {
        let mut args =
            vec!["train", "examples/mnist_mlp.nn", "--limit", "1500", "--quiet", "--threads", "2", "--epochs", epochs];
        if resume {
            args.extend(["--resume", out]);
        } else {
            args.extend(["--out", out]);
        }
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    };
    let (whole, part) = (d.join("whole"), d.join("part"));
    run(s(&whole), "8", false);
    run(s(&part), "3", false);
    run(s(&part), "8", true);
    for f in ["weights.safetensors", "state.safetensors", "epoch-8.safetensors"] {
        assert!(
            std::fs::read(whole.join(f)).expect("whole") == std::fs::read(part.join(f)).expect("part"),
            "{f} differs"
        );
    }
    let rows = |p: &std::path::Path| std::fs::read_to_string(p.join("metrics.csv")).expect("metrics").lines().count();
    assert_eq!(rows(&part), 9, "the resumed run's metrics continue the first 3 epochs");
}

/// A run directory is self-contained: its `model.nn` says what was trained (the epochs of
/// `--epochs`) and reads the same data from wherever it is evaluated.
#[test]
fn a_run_directory_evaluates_from_anywhere() {
    let d = common::temp_dir("training-self-contained");
    let run = d.join("run");
    let o = nnlangc(&["train", "examples/japanese_vowels.nn", "--epochs", "2", "--quiet", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let trained = text(&o.stdout);
    let acc = trained.split("accuracy ").nth(1).and_then(|a| a.split('%').next()).expect("accuracy").to_string();
    let model = std::fs::read_to_string(run.join("model.nn")).expect("model.nn");
    assert!(model.contains("epochs    = 2"), "{model}");
    // From another directory.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["eval", "model.nn", "--weights", "weights.safetensors"])
        .current_dir(&run)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("accuracy  {acc}%")), "{} vs {acc}", text(&o.stdout));
}

/// `--threads 2` on the MNIST MLP splits its products (`--split auto`): the run says so and
/// writes one thread's weights, byte for byte, and may go on with another thread count;
/// `--split batch` averages two halves and says so too.
#[test]
fn threads_that_split_products_write_one_threads_weights() {
    let d = common::temp_dir("training-split");
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train", "examples/mnist_mlp.nn", "--limit", "1500", "--out", s(out)];
        args.extend_from_slice(extra);
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let weights = |p: &Path| std::fs::read(p.join("weights.safetensors")).expect("weights");
    let (one, two, batch, resumed) = (d.join("one"), d.join("two"), d.join("batch"), d.join("resumed"));
    assert!(train(&one, &["--epochs", "2"]).contains("batch 64, 2 epochs, 1 thread\n"));
    assert!(train(&two, &["--epochs", "2", "--threads", "2"]).contains("2 threads splitting each product\n"));
    assert!(weights(&one) == weights(&two), "2 threads splitting products = 1 thread");
    assert!(train(&batch, &["--epochs", "2", "--threads", "2", "--split", "batch"])
        .contains("2 threads splitting each batch\n"));
    assert!(weights(&one) != weights(&batch), "splitting the batch averages halves");
    // One epoch on two threads, the next on three: the two-epoch run of one thread.
    train(&resumed, &["--epochs", "1", "--threads", "2", "--quiet"]);
    let o = nnlangc(&[
        "train",
        "examples/mnist_mlp.nn",
        "--limit",
        "1500",
        "--epochs",
        "2",
        "--threads",
        "3",
        "--resume",
        s(&resumed),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(weights(&one) == weights(&resumed), "resumed on 3 threads");
    // A batch-split run cannot go on splitting products: it computes something else.
    let o = nnlangc(&[
        "train",
        "examples/mnist_mlp.nn",
        "--limit",
        "1500",
        "--epochs",
        "3",
        "--threads",
        "2",
        "--resume",
        s(&batch),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("the run was trained with 2 threads splitting each batch (--threads, --split), this run 2 threads splitting each product (--threads, --split): it cannot continue exactly"),
        "{}",
        text(&o.stderr)
    );
}

/// A batch-normalized ConvNet on the digits: learns (its validation accuracy, measured with
/// the running averages, is far above chance), and a run stopped after epoch 2 and resumed
/// writes the weights and running averages of a run that never stopped, byte for byte — on
/// two threads sharing each batch, whose workers meet for the statistics.
#[test]
fn batch_normalized_convnet_learns_and_resumes_byte_identical() {
    let d = common::temp_dir("training-batchnorm");
    let data = common::root().join("examples/data/sklearn/digits.csv.gz");
    let model = d.join("bn.nn");
    std::fs::write(
        &model,
        format!(
            "model Bn {{\n  input x: [8, 8, 1]\n  x -> conv(8, 3, pad = same) -> batchnorm -> relu -> maxpool(2)\n    -> flatten -> dense(32) -> batchnorm(momentum = 0.2) -> relu -> dense(10) -> softmax\n}}\n\
             train Bn on digits {{ loss = cross_entropy, optimizer = sgd(lr = 0.05, momentum = 0.9), batch = 64, epochs = 4, validate = 20%, seed = 3 }}\n\
             data digits {{ train = csv(\"{}\", label = 0), scale = 1/16 }}\n",
            data.display()
        ),
    )
    .expect("model");
    let run = |out: &Path, epochs: &str, resume: bool| {
        let mut args = vec!["train", s(&model), "--threads", "2", "--split", "batch", "--epochs", epochs];
        args.extend(if resume { ["--resume", s(out)] } else { ["--out", s(out)] });
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let (whole, part) = (d.join("whole"), d.join("part"));
    let out = run(&whole, "4", false);
    let last = out.lines().rfind(|l| l.starts_with("epoch   4/4")).expect("epoch 4").to_string();
    let acc: f64 = last
        .split("val acc ")
        .nth(1)
        .and_then(|a| a.split('%').next())
        .and_then(|a| a.trim().parse().ok())
        .expect("val acc");
    assert!(acc > 90.0, "validation accuracy {acc}% with the running averages: {last}");
    run(&part, "2", false);
    run(&part, "4", true);
    for f in ["weights.safetensors", "state.safetensors"] {
        assert!(
            std::fs::read(whole.join(f)).expect("whole") == std::fs::read(part.join(f)).expect("part"),
            "{f} differs"
        );
    }
    // The checkpoint holds the running averages, moved from their start.
    let table = {
        let c =
            nnlang::compile(&std::fs::read_to_string(&model).expect("src"), &nnlang::Options::default()).expect("c");
        nnlang::plan::build(&c.models[0], nnlang::plan::Mode::Inference, 1).expect("plan").params
    };
    let mut w = vec![0f32; table.iter().map(|p| p.buf.offset + p.buf.len).max().unwrap_or(0)];
    nnlang_runtime::io::load(&whole.join("weights.safetensors"), &table, &mut w).expect("loads");
    let var = table.iter().find(|p| p.name == "batchnorm_1.running_var").expect("state");
    assert!(w[var.buf.range()].iter().all(|&v| v > 0.0 && (v - 1.0).abs() > 1e-3), "{:?}", &w[var.buf.range()]);
}

/// A resume checks everything that decides the run and names the setting with both values:
/// the data split (`--limit`, `validate`), the architecture (tensor names and shapes, not the
/// count: 64→11→10 and 64→9→12→10 both have 835 parameters), and the optimizer.
#[test]
fn resume_refuses_another_split_architecture_or_optimizer() {
    let d = common::temp_dir("training-resume-checks");
    let model = common::digits_net(&d, 2, "");
    let run = d.join("run");
    let o = nnlangc(&["train", s(&model), "--epochs", "1", "--limit", "400", "--quiet", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", s(&model), "--epochs", "2", "--quiet", "--resume", s(&run)];
        args.extend_from_slice(extra);
        let o = nnlangc(&args);
        (o.status.code(), text(&o.stderr))
    };
    let (code, err) = resume(&[]);
    assert_eq!(code, Some(1), "the model file's own limit is not the run's: {err}");
    assert!(
        err.contains("the run was trained with 360 training and 40 validation examples (--limit, validate), this run 1617 and 180: it cannot continue exactly"),
        "{err}"
    );
    let (code, err) = resume(&["--limit", "400", "--set", "validate=20%"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("360 training and 40 validation examples (--limit, validate), this run 320 and 80"), "{err}");
    let (code, err) = resume(&["--limit", "400", "--set", "optimizer.lr=0.05"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("optimizer sgd(lr = 0.1, momentum = 0, nesterov = false), this run sgd(lr = 0.05, momentum = 0, nesterov = false)"),
        "{err}"
    );
    // The same parameter count in other shapes.
    let a = d.join("a.nn");
    let b = d.join("b.nn");
    let data = common::root().join("examples/data/sklearn/digits.csv.gz");
    let recipe = format!(
        "train M on digits {{ loss = cross_entropy, optimizer = sgd(lr = 0.1), batch = 32, epochs = 2, seed = 1 }}\n\
         data digits {{ train = csv(\"{}\", label = 0), scale = 1/16 }}\n",
        data.display()
    );
    std::fs::write(
        &a,
        format!("model M {{ input x: [64]\n x -> dense(11) -> relu -> dense(10) -> softmax }}\n{recipe}"),
    )
    .expect("a");
    std::fs::write(&b, format!("model M {{ input x: [64]\n x -> dense(9) -> relu -> dense(12) -> relu -> dense(10) -> softmax }}\n{recipe}"))
        .expect("b");
    let run = d.join("arch");
    let o = nnlangc(&["train", s(&a), "--epochs", "1", "--quiet", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = nnlangc(&["train", s(&b), "--epochs", "2", "--quiet", "--resume", s(&run)]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "another architecture: tensor 1 is `dense_0.weight` [11, 64], in this model `dense_0.weight` [9, 64]"
        ),
        "{err}"
    );
}

/// `accumulate = k`: k batches of b rows per update train as batches of k·b rows — the
/// weighted mean of their gradients, the last partial group of an epoch included — to float
/// tolerance, with SGD and with Adam; and every run takes the same number of updates.
#[test]
fn accumulated_batches_train_as_one_larger_batch() {
    let d = common::temp_dir("training-accumulate");
    let model = common::digits_net(&d, 3, "");
    let train = |out: &str, sets: &[&str]| -> std::collections::BTreeMap<String, Vec<f32>> {
        let dir = d.join(out);
        let mut args = vec!["train", s(&model), "--out", s(&dir), "--quiet"];
        for set in sets {
            args.extend(["--set", set]);
        }
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let bytes = std::fs::read(dir.join("weights.safetensors")).expect("weights");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        st.tensors()
            .into_iter()
            .map(|(name, t)| {
                let v = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                (name, v)
            })
            .collect()
    };
    let largest = |a: &std::collections::BTreeMap<String, Vec<f32>>,
                   b: &std::collections::BTreeMap<String, Vec<f32>>| {
        a.iter().flat_map(|(k, v)| v.iter().zip(&b[k]).map(|(x, y)| (x - y).abs())).fold(0f32, f32::max)
    };
    for (tag, opt, tolerance) in
        [("sgd", "optimizer=sgd(lr = 0.1, momentum = 0.9)", 2e-5), ("adam", "optimizer=adam(lr = 0.01)", 1e-4)]
    {
        let big = train(&format!("{tag}-64"), &["batch=64", opt]);
        let accumulated = train(&format!("{tag}-16x4"), &["batch=16", "accumulate=4", opt]);
        let small = train(&format!("{tag}-16"), &["batch=16", opt]);
        let (same, other) = (largest(&big, &accumulated), largest(&big, &small));
        eprintln!("{tag}: |64 − 16×4| = {same:.2e}, |64 − 16| = {other:.2e}");
        assert!(same <= tolerance, "{tag}: 16 rows × 4 accumulated differ from 64 rows by {same}");
        assert!(other > 100.0 * same.max(1e-7), "{tag}: batches of 16 without accumulation are another run ({other})");
    }
    // `accumulate = 0` is refused at its place.
    let o = nnlangc(&["train", s(&model), "--set", "accumulate=0", "--out", s(&d.join("zero"))]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("`accumulate` must be an integer from 1 to 65,536, found the integer 0"),
        "{}",
        text(&o.stderr)
    );
}

/// `stop = patience(3)`: training stops after three epochs without a lower validation loss,
/// `weights.safetensors` is the best epoch's (byte for byte its `epoch-N.safetensors`), the
/// test score is that epoch's; and a run stopped before that and resumed stops at the same
/// epoch with the same weights.
#[test]
fn early_stopping_keeps_the_best_epoch_and_resumes_exactly() {
    let d = common::temp_dir("training-patience");
    let model = common::digits_net(&d, 60, "");
    let src = std::fs::read_to_string(&model).expect("model").replace(
        "optimizer = sgd(lr = 0.1), batch = 32, epochs = 60, validate = 10%",
        "optimizer = adam(lr = 0.01), batch = 32, epochs = 60, validate = 20%, stop = patience(3)",
    );
    assert!(src.contains("stop = patience(3)"), "{src}");
    std::fs::write(&model, src).expect("model");
    let full = d.join("full");
    let o = nnlangc(&["train", s(&model), "--out", s(&full), "--keep", "100"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("stopped early after epoch ")).unwrap_or_else(|| panic!("{out}"));
    let number = |after: &str| -> usize {
        let rest = &line[line.find(after).expect("in the line") + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).expect("a number")
    };
    let (last, best) = (number("after epoch "), number("holds epoch "));
    assert_eq!(last, best + 3, "{line}");
    assert!(last < 60, "{line}");
    let metrics = std::fs::read_to_string(full.join("metrics.csv")).expect("metrics");
    assert_eq!(metrics.lines().count(), 1 + last, "one row per epoch trained");
    // The lowest validation loss is the best epoch's.
    let header: Vec<&str> = metrics.lines().next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == "val_loss").expect("val_loss");
    let losses: Vec<f64> =
        metrics.lines().skip(1).map(|l| l.split(',').nth(col).expect("cell").parse().expect("number")).collect();
    let lowest = losses.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i + 1);
    assert_eq!(lowest, Some(best));
    let read = |p: std::path::PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(read(full.join("weights.safetensors")) == read(full.join(format!("epoch-{best}.safetensors"))));
    assert!(read(full.join("weights.safetensors")) != read(full.join(format!("epoch-{last}.safetensors"))));
    // Stopped after the best epoch's successor, then resumed: the same end.
    let part = d.join("part");
    let o = nnlangc(&["train", s(&model), "--out", s(&part), "--epochs", &(best + 1).to_string(), "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = nnlangc(&["train", s(&model), "--resume", s(&part), "--epochs", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(line), "{}", text(&o.stdout));
    assert!(
        read(full.join("weights.safetensors")) == read(part.join("weights.safetensors")),
        "resumed = uninterrupted"
    );
}

/// `augment { crop, shift, flip }` on the digits: the draws are the seed's and the epoch's
/// (two runs write the same bytes; a run stopped after epoch 2 and resumed too), the
/// augmented run is another run than the plain one, it still learns, validation sees the
/// images unchanged; the sanity checks (which overfit 20 examples) run without it.
#[test]
fn augmentation_is_drawn_by_seed_and_epoch_and_resumes_exactly() {
    let d = common::temp_dir("training-augment");
    let data = common::root().join("examples/data/sklearn/digits.csv.gz");
    let source = |augment: &str| {
        format!(
            "model Aug {{\n  input x: [8, 8, 1]\n  x -> conv(16, 3, pad = same) -> relu -> conv(16, 3, pad = same, groups = 16) -> relu -> maxpool(2) -> dense(10) -> softmax\n}}\n\
             train Aug on digits {{ loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 32, epochs = 4, validate = 20%, seed = 3 }}\n\
             data digits {{ train = csv(\"{}\", label = 0), scale = 1/16{augment} }}\n",
            data.display()
        )
    };
    let (model, plain) = (d.join("aug.nn"), d.join("plain.nn"));
    std::fs::write(&model, source("\n augment { crop = 1, shift = 1, flip = true }")).expect("model");
    std::fs::write(&plain, source("")).expect("model");
    let run = |file: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec!["train", s(file), "--quiet"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--resume") {
            args.extend(["--out", s(out)]);
        }
        let o = nnlangc(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    };
    let weights = |p: &Path| std::fs::read(p.join("weights.safetensors")).expect("weights");
    let (one, again, part, none) = (d.join("one"), d.join("again"), d.join("part"), d.join("none"));
    run(&model, &one, &[]);
    run(&model, &again, &[]);
    assert!(weights(&one) == weights(&again), "the same seed draws the same images");
    run(&model, &part, &["--epochs", "2"]);
    run(&model, &part, &["--resume", s(&part), "--epochs", "4"]);
    assert!(weights(&one) == weights(&part), "resumed after epoch 2 = uninterrupted");
    run(&plain, &none, &[]);
    assert!(weights(&one) != weights(&none), "augmented ≠ plain");
    let metrics = std::fs::read_to_string(one.join("metrics.csv")).expect("metrics");
    let header: Vec<&str> = metrics.lines().next().expect("header").split(',').collect();
    let cell = |name: &str| -> f64 {
        let col = header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}"));
        metrics.lines().last().and_then(|l| l.split(',').nth(col)).and_then(|a| a.parse().ok()).expect("a number")
    };
    let acc = cell("val_accuracy");
    assert!(acc > 0.8, "validation accuracy {acc} after 4 epochs of augmented digits");
    // Validation sees the images as they are: easier than the moved and flipped ones trained on.
    assert!(cell("val_loss") < cell("train_loss"), "{metrics}");
    let o = nnlangc(&["sanity", s(&model)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
}

/// `--split batch` on a model whose threads would split the products by default: the workers
/// plan for their share of each batch (the plan `prepare` made followed the default sharing),
/// and splitting the products again needs no such plan.
#[test]
fn an_explicit_split_plans_the_workers_for_it() {
    use nnlang_runtime::train::Split;
    let d = common::temp_dir("training-split-plan");
    let data = common::root().join("examples/data/sklearn/digits.csv.gz");
    let src = format!(
        "model M {{ input x: [64]\n x -> dense(512) -> relu -> dense(10) -> softmax }}\n\
         train M on digits {{ loss = cross_entropy, optimizer = sgd(lr = 0.1), batch = 32, epochs = 1, seed = 1 }}\n\
         data digits {{ train = csv(\"{}\", label = 0), scale = 1/16 }}\n",
        data.display()
    );
    let session =
        nnlang::session::Session::from_source(d.join("m.nn"), src, &nnlang::Options::default()).expect("compiles");
    let job = session.job(None).expect("a train block");
    let loaded = job.load_data(Some(64)).expect("data");
    let mut prepared = job.prepare(&loaded, 2).expect("prepared");
    assert!(prepared.options.splits_products(&prepared.train_plan, 2), "the default splits this MLP's products");
    assert!(prepared.options.worker_plan.is_none());
    job.share(&mut prepared, Split::Batch, None).expect("shared");
    let w = prepared.options.worker_plan.as_ref().expect("a plan for each worker's share");
    assert_eq!(w.max_batch, 16);
    assert!(w.arena_len < prepared.train_plan.arena_len, "{} vs {}", w.arena_len, prepared.train_plan.arena_len);
    job.share(&mut prepared, Split::Products, None).expect("shared");
    assert!(prepared.options.worker_plan.is_none());
}
