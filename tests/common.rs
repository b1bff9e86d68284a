//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh temporary directory for one test (`name` keeps tests apart, the process id runs),
/// removed with everything in it when the test ends — passed or failed (set
/// `NNLANG_KEEP_TEST_DIRS=1` to keep them for a look).
pub fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("nnlang-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    TempDir(d)
}

/// A test's temporary directory: a path, removed on drop.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("NNLANG_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `nnlangc` in the workspace root.
pub fn nnlangc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnlangc")).args(args).current_dir(root()).output().expect("nnlangc runs")
}

/// A process's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `.nn` files of a folder, sorted, as (stem, path relative to `base`, source).
pub fn nn_files(dir: &Path, base: &Path) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = std::fs::read_dir(dir)
        .expect("test folder exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nn"))
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let rel = p.strip_prefix(base).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            let src = std::fs::read_to_string(&p).expect("readable test file");
            (stem, rel, src)
        })
        .collect();
    out.sort();
    out
}

/// 8×8 images of two classes (is the left half brighter?) and a model whose filter size is
/// searched beyond the image.
pub fn search_example(dir: &Path) -> PathBuf {
    let mut csv = String::new();
    for r in 0..240usize {
        let px: Vec<f64> = (0..64).map(|i| (((r * 37 + i * 11) % 101) as f64) / 101.0).collect();
        let left: f64 = (0..64).filter(|i| i % 8 < 4).map(|i| px[i]).sum();
        let right: f64 = (0..64).filter(|i| i % 8 >= 4).map(|i| px[i]).sum();
        let row: Vec<String> = px.iter().map(|v| format!("{v:.3}")).collect();
        csv.push_str(&format!("{},{}\n", row.join(","), usize::from(left > right)));
    }
    std::fs::write(dir.join("img.csv"), csv).expect("data");
    let file = dir.join("s.nn");
    std::fs::write(
        &file,
        "model S(size = 3, width = 8) {\n    input x: [8, 8, 1]\n    x -> conv(filters = width, size = size) -> relu -> dense(2) -> softmax\n}\n\
         train S on d {\n    optimizer = adam(lr = 1e-2)\n    batch = 16\n    epochs = 3\n    validate = 25%\n    seed = 4\n}\n\
         search S {\n    optimizer.lr ~ log_uniform(1e-3, 1e-1)\n    size ~ int_uniform(2, 12)\n    width ~ choice(4, 8)\n\
         \n    stage coarse { trials = 10, epochs = 1 }\n    stage fine { trials = 3, keep = 2, epochs = 2 }\n}\n\
         ensemble S { members = 2, from = top(search) }\n\
         data d { train = csv(\"img.csv\") }\n",
    )
    .expect("model");
    file
}

/// A trials table's rows, every column but the seconds a trial took, sorted.
pub fn trial_rows(table: &str) -> Vec<String> {
    let mut v: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            if f.len() > 8 {
                f.remove(f.len() - 2);
            }
            f.join(",")
        })
        .collect();
    v.sort();
    v
}

/// A `.npy` file (version 1.0) with this dtype, order and shape, then `data` as is.
pub fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_text}, }}",
        if fortran { "True" } else { "False" }
    );
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((header.len() as u16).to_le_bytes());
    v.extend(header.as_bytes());
    v.extend(data);
    v
}

/// Values as little-endian f32 bytes.
pub fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `dir/base.nn`: a 64 → 16 → 10 net on the bundled digits (`scale = 1/16`), trained for
/// `epochs` with SGD, then `extra` (more blocks).
pub fn digits_net(dir: &Path, epochs: usize, extra: &str) -> PathBuf {
    let data = root().join("examples/data/sklearn/digits.csv.gz");
    let model = dir.join("base.nn");
    std::fs::write(
        &model,
        format!(
            "model Base {{ input x: [64]\n x -> dense(16) -> relu -> dense(10) -> softmax }}\n\
             train Base on digits {{ loss = cross_entropy, optimizer = sgd(lr = 0.1), batch = 32, epochs = {epochs}, validate = 10%, seed = 1 }}\n\
             data digits {{ train = csv(\"{}\", label = 0), scale = 1/16 }}\n{extra}",
            data.display()
        ),
    )
    .expect("model");
    model
}

/// Waits until `path` exists (a process writing it), at most `seconds`; `what` names it.
pub fn wait_for(path: &Path, seconds: u64, what: &str) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < std::time::Duration::from_secs(seconds), "{what} within {seconds} s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
