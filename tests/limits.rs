//! Sizes checked before anything is allocated, tools that cannot report a pass they did not
//! earn, and preprocessing that is never silently dropped (the third hostile round).

mod common;

use common::{s, temp_dir, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn base(dir: &Path, extra: &str) -> PathBuf {
    common::digits_net(dir, 1, extra)
}

fn nnlangc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnlangc")).args(args).current_dir(dir).output().expect("nnlangc runs")
}

fn refused(dir: &Path, args: &[&str], code: i32, says: &[&str]) {
    let o = nnlangc(dir, args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    for s in says {
        assert!(err.contains(s), "{args:?} should say {s:?}: {err}");
    }
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{err}");
}

#[test]
fn a_batch_larger_than_the_data_is_the_whole_data_set() {
    let dir = temp_dir("limits-batch");
    let model = base(&dir, "");
    for batch in ["15000000", "100000000"] {
        let o =
            nnlangc(&dir, &["train", s(&model), "--set", &format!("batch={batch}"), "--limit", "300", "--out", "r"]);
        let out = text(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert!(out.contains("on 270 examples (30 held out for validation), batch 300"), "{out}");
    }
}

#[test]
fn counts_beyond_any_machine_are_refused_before_allocating() {
    let dir = temp_dir("limits-counts");
    let model = base(&dir, "");
    let o = nnlangc(&dir, &["train", s(&model), "--out", "r", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    refused(
        &dir,
        &["sample", "base.nn", "--weights", "r/weights.safetensors", "--length", "1000000000000"],
        2,
        &["--length 1000000000000: at most 10000000 characters"],
    );
    refused(&dir, &["gradcheck", "base.nn", "--examples", "1000000000"], 2, &["at most 4096 examples"]);
    refused(&dir, &["gradcheck", "base.nn", "--step", "1e-12"], 2, &["--step 1e-12", "between 1e-8 and 1e-1"]);
    refused(&dir, &["gradcheck", "base.nn", "--step", "1e-300"], 2, &["--step 1e-300"]);
    refused(
        &dir,
        &["sanity", "base.nn", "--limit", "1"],
        2,
        &["overfits 20 training examples", "leave 1 for training"],
    );
    let big = base(&dir, "search Base { trials = 1000000000 }\nensemble Base { members = 1000000 }\n");
    refused(
        &dir,
        &["check", s(&big)],
        1,
        &[
            "`trials` must be an integer from 1 to 100,000",
            "`members` must be an integer from 1 to 1,000",
            "out of range",
        ],
    );
    std::fs::write(
        dir.join("bins.nn"),
        std::fs::read_to_string(&big).expect("src").replace("loss = cross_entropy,", "loss = cross_entropy(bins = 1),"),
    )
    .expect("bins");
    refused(&dir, &["check", "bins.nn"], 1, &["`bins` must be an integer from 2 to 65,536, found the integer 1"]);
    base(&dir, "");
    // An ensemble manifest of 100,000 members.
    std::fs::create_dir_all(dir.join("ens")).expect("dir");
    let members: Vec<String> = (0..100_000)
        .map(|i| format!("{{\"source\": \"m{i}/model.nn\", \"weights\": \"m{i}/w.safetensors\"}}"))
        .collect();
    std::fs::write(
        dir.join("ens/ensemble.json"),
        format!("{{\"format\": \"nnlang-ensemble\", \"members\": [{}]}}", members.join(",")),
    )
    .expect("manifest");
    refused(
        &dir,
        &["eval", "base.nn", "--ensemble", "ens"],
        1,
        &["ens/ensemble.json", "not an ensemble manifest (at most 1 MiB)"],
    );
}

#[test]
fn preprocessing_is_required_where_the_model_has_it_and_read_strictly() {
    let dir = temp_dir("limits-preprocess");
    let model = base(&dir, "");
    let o = nnlangc(&dir, &["train", s(&model), "--out", "r", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let npy = common::npy("<f4", false, &[1, 64], &[0u8; 64 * 4]);
    std::fs::write(dir.join("a.npy"), &npy).expect("npy");
    let run = ["run", "base.nn", "--weights", "r/weights.safetensors", "--input", "a.npy", "--output", "p.npy"];
    let pre = std::fs::read_to_string(dir.join("r/preprocess.json")).expect("preprocess");
    for bad in ["\"0.0625\"", "\"NaN\"", "0", "-1e30", "1e300"] {
        let changed = pre.replacen("0.0625", bad, 1);
        assert_ne!(changed, pre);
        std::fs::write(dir.join("r/preprocess.json"), changed).expect("write");
        refused(&dir, &run, 1, &["r/preprocess.json", "`scale` must be"]);
    }
    std::fs::write(dir.join("r/preprocess.json"), pre.replacen("\"scale\"", "\"scael\"", 1)).expect("write");
    refused(&dir, &run, 1, &["r/preprocess.json", "unknown entry `scael`"]);
    std::fs::remove_file(dir.join("r/preprocess.json")).expect("remove");
    let says = ["r/weights.safetensors: no preprocess.json beside these weights", "`scale = 0.0625`", "--raw"];
    refused(&dir, &run, 1, &says);
    refused(&dir, &["export", "--onnx", "base.nn", "--weights", "r/weights.safetensors"], 1, &says);
    refused(&dir, &["export", "--pytorch", "base.nn", "--weights", "r/weights.safetensors"], 1, &says);
    assert!(!dir.join("p.npy").exists() && !dir.join("r/model.onnx").exists(), "nothing written");
    let mut raw = run.to_vec();
    raw.push("--raw");
    let o = nnlangc(&dir, &raw);
    assert_eq!(o.status.code(), Some(0), "--raw uses the inputs as they are: {}", text(&o.stderr));
}
