//! The hostile-input corpus: every malformed program of `nnlang/tests/errors/`, data files
//! of every format gone wrong, broken checkpoints, bad flags and outputs that must not be
//! written. For each case: the exit code, the file (and the place in it) named in the
//! message, no panic text, and nothing half-written left behind.

mod common;

use common::{f32s, npy};
use std::path::Path;
use std::process::Command;

/// One hostile case: files to lay out, the command, what it must answer.
struct Case {
    name: String,
    files: Vec<(&'static str, Vec<u8>)>,
    args: Vec<String>,
    exit: i32,
    /// Fragments the standard error must hold (the file, the place, the reason).
    says: Vec<String>,
}

fn case(name: &str, files: Vec<(&'static str, Vec<u8>)>, args: &[&str], exit: i32, says: &[&str]) -> Case {
    Case {
        name: name.to_string(),
        files,
        args: args.iter().map(|s| s.to_string()).collect(),
        exit,
        says: says.iter().map(|s| s.to_string()).collect(),
    }
}

const CSV_MODEL: &str = "model M { input x: [4]\n x -> dense(3) -> softmax }\n\
    train M on d { loss = cross_entropy, batch = 2, epochs = 1 }\n\
    data d { train = csv(\"train.csv\") }\n";
const BCE_MODEL: &str = "model M { input x: [4]\n x -> dense(1) -> sigmoid }\n\
    train M on d { loss = binary_cross_entropy, batch = 2, epochs = 1 }\n\
    data d { train = csv(\"train.csv\") }\n";
const IDX_MODEL: &str = "model M { input x: [2, 2, 1]\n x -> flatten -> dense(3) -> softmax }\n\
    train M on d { loss = cross_entropy, batch = 2, epochs = 1 }\n\
    data d { train = idx(\"img.idx\", \"lab.idx\") }\n";
const NPY_MODEL: &str = "model M { input x: [4]\n x -> dense(3) -> softmax }\n\
    train M on d { loss = cross_entropy, batch = 2, epochs = 1 }\n\
    data d { train = npy(\"x.npy\", \"y.npy\") }\n";

fn csv(rows: &str) -> Vec<u8> {
    rows.as_bytes().to_vec()
}

const GOOD_CSV: &str = "0.1,0.2,0.3,0.4,0\n0.5,0.6,0.7,0.8,1\n0.9,0.1,0.2,0.3,2\n0.4,0.5,0.6,0.7,1\n";

/// An IDX file of unsigned bytes: magic, dimensions, data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

fn good_images() -> Vec<u8> {
    idx(&[4, 2, 2], &[1; 16])
}

fn good_labels() -> Vec<u8> {
    idx(&[4], &[0, 1, 2, 1])
}

fn good_x() -> Vec<u8> {
    npy("<f4", false, &[4, 4], &f32s(&[0.5; 16]))
}

fn good_y() -> Vec<u8> {
    npy("<f4", false, &[4], &f32s(&[0.0, 1.0, 2.0, 1.0]))
}

/// `nnlangc train` of the case's model into `out/` (which must not appear on failure).
const TRAIN: &[&str] = &["train", "m.nn", "--out", "out", "--quiet"];

/// Every malformed program of the compiler's error corpus, through `nnlangc check`.
fn source_cases() -> Vec<Case> {
    let root = common::root();
    let dir = root.join("nnlang/tests/errors");
    let mut out = Vec::new();
    for (stem, _, src) in common::nn_files(&dir, &dir) {
        out.push(Case {
            name: format!("source/{stem}"),
            files: vec![("m.nn", src.into_bytes())],
            args: vec!["check".into(), "m.nn".into()],
            exit: 1,
            // Every diagnostic points at a line and column of the file.
            says: vec!["error: ".into(), "--> m.nn:".into()],
        });
    }
    out
}

fn data_cases() -> Vec<Case> {
    let m = |s: &'static str| ("m.nn", s.as_bytes().to_vec());
    let t = TRAIN;
    vec![
        // CSV
        case(
            "csv/ragged",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,0\n1,2,3,0\n"))],
            t,
            1,
            &["train.csv: line 2 has 4 columns, the lines before it 5"],
        ),
        case(
            "csv/not-a-number",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,0\n1,x,3,4,0\n"))],
            t,
            1,
            &["train.csv: line 2, column 2: `x` is not a number"],
        ),
        case(
            "csv/typo-in-first-row",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4o,0\n1,2,3,4,0\n"))],
            t,
            1,
            &["train.csv: line 1, column 4: `4o` is not a number"],
        ),
        case(
            "csv/nan",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,0\n1,NaN,3,4,0\n"))],
            t,
            1,
            &["train.csv: line 2, column 2: NaN is not a finite number"],
        ),
        case(
            "csv/inf",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,inf,4,0\n"))],
            t,
            1,
            &["train.csv: line 1, column 3: inf is not a finite number"],
        ),
        case("csv/empty", vec![m(CSV_MODEL), ("train.csv", csv(""))], t, 1, &["train.csv: no rows of data"]),
        case(
            "csv/header-only",
            vec![m(CSV_MODEL), ("train.csv", csv("a,b,c,d,y\n"))],
            t,
            1,
            &["train.csv: no rows of data"],
        ),
        case(
            "csv/label-out-of-range",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,0\n1,2,3,4,7\n"))],
            t,
            1,
            &["train.csv: example 2 (counting from 1) has label 7, outside the model's 3 classes 0..2"],
        ),
        case(
            "csv/label-fraction",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,0.5\n"))],
            t,
            1,
            &["train.csv: example 1 (counting from 1) has label 0.5"],
        ),
        case(
            "csv/negative-label",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,-1\n"))],
            t,
            1,
            &["train.csv: example 1 (counting from 1) has label -1"],
        ),
        case(
            "csv/too-few-features",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,0\n"))],
            t,
            1,
            &["train.csv: 3 features per example, but the model's input `x` [4] has 4"],
        ),
        case(
            "csv/too-many-features",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,5,0\n"))],
            t,
            1,
            &["train.csv: 5 features per example"],
        ),
        case(
            "csv/not-utf8",
            vec![m(CSV_MODEL), ("train.csv", vec![b'1', b',', 0xff, b'\n'])],
            t,
            1,
            &["train.csv: line 1: not UTF-8 text"],
        ),
        case("csv/missing", vec![m(CSV_MODEL)], t, 1, &["train.csv: cannot read"]),
        case(
            "csv/bce-target-not-probability",
            vec![m(BCE_MODEL), ("train.csv", csv("1,2,3,4,0\n1,2,3,4,9\n"))],
            t,
            1,
            &["train.csv: example 1, target 0: 9 is not a probability in [0, 1]"],
        ),
        case(
            "csv/broken-gzip",
            vec![m(CSV_MODEL), ("train.csv", vec![0x1f, 0x8b, 8, 0, 1, 2, 3])],
            t,
            1,
            &["train.csv: broken gzip stream"],
        ),
        case(
            "csv/label-column",
            vec![
                m(&*Box::leak(
                    CSV_MODEL.replace("csv(\"train.csv\")", "csv(\"train.csv\", label = 9)").into_boxed_str(),
                )),
                ("train.csv", csv(GOOD_CSV)),
            ],
            t,
            1,
            &["train.csv: label column 9 does not exist: lines have 5 columns"],
        ),
        // IDX
        case(
            "idx/bad-magic",
            vec![m(IDX_MODEL), ("img.idx", vec![1, 2, 3, 4, 5]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: not an IDX file: magic number 01 02 03 04"],
        ),
        case(
            "idx/short",
            vec![m(IDX_MODEL), ("img.idx", vec![0, 0]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: not an IDX file: 2 bytes"],
        ),
        case(
            "idx/empty",
            vec![m(IDX_MODEL), ("img.idx", vec![]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: not an IDX file: 0 bytes"],
        ),
        case(
            "idx/float-type",
            vec![m(IDX_MODEL), ("img.idx", vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: IDX element type 0x0d is not supported"],
        ),
        case(
            "idx/zero-dims",
            vec![m(IDX_MODEL), ("img.idx", vec![0, 0, 8, 0]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: IDX file with 0 dimensions"],
        ),
        case(
            "idx/five-dims",
            vec![m(IDX_MODEL), ("img.idx", vec![0, 0, 8, 5]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: IDX file with 5 dimensions"],
        ),
        case(
            "idx/truncated-header",
            vec![m(IDX_MODEL), ("img.idx", vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: truncated IDX header"],
        ),
        case(
            "idx/truncated-data",
            vec![m(IDX_MODEL), ("img.idx", idx(&[4, 2, 2], &[1; 10])), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: the header promises 4 × 2 × 2 = 16 bytes of data, the file has 10"],
        ),
        case(
            "idx/extra-data",
            vec![m(IDX_MODEL), ("img.idx", idx(&[4, 2, 2], &[1; 20])), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: the header promises 16 bytes of data, the file has more"],
        ),
        case(
            "idx/huge-header",
            vec![m(IDX_MODEL), ("img.idx", idx(&[u32::MAX, u32::MAX, u32::MAX], &[1; 4])), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: the header promises more than the 16 GiB"],
        ),
        case(
            "idx/label-count",
            vec![m(IDX_MODEL), ("img.idx", good_images()), ("lab.idx", idx(&[3], &[0, 1, 2]))],
            t,
            1,
            &["lab.idx: 3 labels for 4 images in"],
        ),
        case(
            "idx/labels-2d",
            vec![m(IDX_MODEL), ("img.idx", good_images()), ("lab.idx", idx(&[4, 1], &[0, 1, 2, 1]))],
            t,
            1,
            &["lab.idx: labels must be one-dimensional, found 2 dimensions"],
        ),
        case(
            "idx/label-out-of-range",
            vec![m(IDX_MODEL), ("img.idx", good_images()), ("lab.idx", idx(&[4], &[0, 1, 9, 1]))],
            t,
            1,
            &["lab.idx: example 3 (counting from 1) has label 9, outside the model's 3 classes 0..2"],
        ),
        case(
            "idx/wrong-image-size",
            vec![m(IDX_MODEL), ("img.idx", idx(&[4, 3, 3], &[1; 36])), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: 9 features per example, but the model's input `x` [2, 2, 1] has 4"],
        ),
        case("idx/missing-labels", vec![m(IDX_MODEL), ("img.idx", good_images())], t, 1, &["lab.idx: cannot read"]),
        case(
            "idx/broken-gzip",
            vec![m(IDX_MODEL), ("img.idx", vec![0x1f, 0x8b, 8, 0, 9, 9]), ("lab.idx", good_labels())],
            t,
            1,
            &["img.idx: broken gzip stream"],
        ),
        case(
            "idx/dev-zero",
            vec![
                m(&*Box::leak(IDX_MODEL.replace("img.idx", "/dev/zero").into_boxed_str())),
                ("lab.idx", good_labels()),
            ],
            t,
            1,
            &["/dev/zero: cannot read: it is not a regular file"],
        ),
        case(
            "idx/directory",
            vec![m(&*Box::leak(IDX_MODEL.replace("img.idx", ".").into_boxed_str())), ("lab.idx", good_labels())],
            t,
            1,
            &[".: cannot read: it is a directory"],
        ),
        // NPY
        case(
            "npy/not-npy",
            vec![m(NPY_MODEL), ("x.npy", b"hello".to_vec()), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: not a .npy file"],
        ),
        case(
            "npy/empty",
            vec![m(NPY_MODEL), ("x.npy", vec![]), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: not a .npy file"],
        ),
        case(
            "npy/fortran",
            vec![m(NPY_MODEL), ("x.npy", npy("<f4", true, &[4, 4], &f32s(&[0.5; 16]))), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: Fortran-ordered arrays are not supported"],
        ),
        case(
            "npy/complex",
            vec![m(NPY_MODEL), ("x.npy", npy("<c8", false, &[4, 4], &[0; 128])), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: element type `c8` is not supported"],
        ),
        case(
            "npy/truncated",
            vec![m(NPY_MODEL), ("x.npy", npy("<f4", false, &[4, 4], &f32s(&[0.5; 10]))), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: the file ends before the 16 elements of its [4, 4] array"],
        ),
        case(
            "npy/huge-header",
            vec![m(NPY_MODEL), ("x.npy", npy("<f4", false, &[1 << 40, 1 << 20], &[])), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: the header promises a [1099511627776, 1048576] array, more than the 16 GiB"],
        ),
        case(
            "npy/row-mismatch",
            vec![m(NPY_MODEL), ("x.npy", good_x()), ("y.npy", npy("<f4", false, &[3], &f32s(&[0.0, 1.0, 2.0])))],
            t,
            1,
            &["y.npy: 3 targets for 4 examples in"],
        ),
        case(
            "npy/no-rows",
            vec![m(NPY_MODEL), ("x.npy", npy("<f4", false, &[0, 4], &[])), ("y.npy", npy("<f4", false, &[0], &[]))],
            t,
            1,
            &["x.npy: no examples: the array's shape is [0, 4]"],
        ),
        case(
            "npy/empty-path",
            vec![m(NPY_MODEL.replace("npy(\"x.npy\"", "npy(\"\"").leak()), ("y.npy", good_y())],
            t,
            1,
            &[
                "error: `x` must be a file's path in double quotes, not empty, found the string \"\"",
                "--> m.nn:4:22",
                "^^ empty",
            ],
        ),
        case(
            "csv/cr-line-endings",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,0\r1,2,3,4,1\r"))],
            t,
            1,
            &["train.csv: line 1: a carriage return inside the line: the file's lines end in CR alone (old Mac style); convert them to LF or CRLF"],
        ),
        case(
            "csv/beyond-f32",
            vec![m(CSV_MODEL), ("train.csv", csv("1,2,3,4,0\n1,2,1e39,4,0\n"))],
            t,
            1,
            &["train.csv: line 2, column 3: `1e39` is beyond the range of a 32-bit float (±3.4e38)"],
        ),
        case(
            "source/bptt-beyond-steps",
            vec![m("model M { input x: [seq <= 10, 5]\n x -> rnn(4) -> dense(5) -> softmax }\n\
                    train M on d { loss = cross_entropy, bptt = 50 }\n\
                    data d { train = text(\"t.txt\") }\n")],
            &["check", "m.nn"],
            1,
            &["error: `bptt = 50` is longer than the 10 steps the model's input holds", "--> m.nn:3:", "give the input `[seq <= 50, …]`, or set `bptt = 10`"],
        ),
        case(
            "source/batchnorm-batch-of-one",
            vec![m("model M { input x: [4]\n x -> dense(3) -> batchnorm -> softmax }\n\
                    train M on d { loss = cross_entropy, batch = 1 }\n\
                    data d { train = csv(\"t.csv\") }\n")],
            &["check", "m.nn"],
            1,
            &["error: `batchnorm_0` normalizes each feature over the batch: a batch of 1 has no variance", "--> m.nn:3:", "use a batch of at least 2"],
        ),
        case(
            "source/negative-units",
            vec![m("model M { input x: [4]\n x -> dense(-3) -> softmax }\n")],
            &["check", "m.nn"],
            1,
            &["error: `units` of `dense` must be at least 1, found -3", "--> m.nn:2:13"],
        ),
        case(
            "npy/scalar",
            vec![m(NPY_MODEL), ("x.npy", npy("<f4", false, &[], &f32s(&[1.0]))), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: a single number (shape [])"],
        ),
        case(
            "npy/nan-feature",
            vec![
                m(NPY_MODEL),
                (
                    "x.npy",
                    npy(
                        "<f4",
                        false,
                        &[4, 4],
                        &f32s(&[0.5, f32::NAN, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
                    ),
                ),
                ("y.npy", good_y()),
            ],
            t,
            1,
            &["x.npy: example 0, feature 1 is NaN or infinite"],
        ),
        case(
            "npy/wrong-width",
            vec![m(NPY_MODEL), ("x.npy", npy("<f4", false, &[4, 5], &f32s(&[0.5; 20]))), ("y.npy", good_y())],
            t,
            1,
            &["x.npy: 5 features per example"],
        ),
        case(
            "npy/label-out-of-range",
            vec![m(NPY_MODEL), ("x.npy", good_x()), ("y.npy", npy("<f4", false, &[4], &f32s(&[0.0, 1.0, 5.0, 1.0])))],
            t,
            1,
            &["y.npy: example 3 (counting from 1) has label 5"],
        ),
        case(
            "npy/f8-ok-but-labels-i8-bad",
            vec![
                m(NPY_MODEL),
                ("x.npy", npy("<f8", false, &[4, 4], &[0; 128])),
                ("y.npy", npy("<i8", false, &[4], &[255; 32])),
            ],
            t,
            1,
            &["y.npy: example 1 (counting from 1) has label -1"],
        ),
        case("npy/missing", vec![m(NPY_MODEL), ("y.npy", good_y())], t, 1, &["x.npy: cannot read"]),
    ]
}

/// Writes a good run first (checkpoints are made by training), then the broken variants.
fn checkpoint_cases() -> Vec<Case> {
    let m = ("m.nn", CSV_MODEL.as_bytes().to_vec());
    let d = ("train.csv", csv(GOOD_CSV));
    let eval = |w: &str| -> Vec<String> { ["eval", "m.nn", "--weights", w].iter().map(|s| s.to_string()).collect() };
    let mut out = Vec::new();
    let mut add = |name: &str, file: Vec<u8>, says: &[&str]| {
        let mut c = case(name, vec![m.clone(), d.clone(), ("w.safetensors", file)], &[], 1, says);
        c.args = eval("w.safetensors");
        out.push(c);
    };
    let st = |header: &str, data: &[u8]| {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend(header.as_bytes());
        v.extend(data);
        v
    };
    let tensor = |name: &str, dtype: &str, shape: &str, start: usize, end: usize| {
        format!("\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{start},{end}]}}")
    };
    let good_header = format!(
        "{{{},{}}}",
        tensor("dense_0.weight", "F32", "[3,4]", 0, 48),
        tensor("dense_0.bias", "F32", "[3]", 48, 60)
    );
    add("checkpoint/empty", vec![], &["w.safetensors: not a valid safetensors file"]);
    add("checkpoint/garbage", b"not a checkpoint at all".to_vec(), &["w.safetensors: not a valid safetensors file"]);
    add("checkpoint/truncated", st(&good_header, &[0; 30]), &["w.safetensors: not a valid safetensors file"]);
    add(
        "checkpoint/missing-tensor",
        st(&format!("{{{}}}", tensor("dense_0.weight", "F32", "[3,4]", 0, 48)), &[0; 48]),
        &["w.safetensors: tensor `dense_0.bias` is missing"],
    );
    add(
        "checkpoint/wrong-shape",
        st(
            &format!(
                "{{{},{}}}",
                tensor("dense_0.weight", "F32", "[4,3]", 0, 48),
                tensor("dense_0.bias", "F32", "[3]", 48, 60)
            ),
            &[0; 60],
        ),
        &["w.safetensors: tensor `dense_0.weight` has shape [4, 3], the model expects [3, 4]"],
    );
    add(
        "checkpoint/wrong-dtype",
        st(
            &format!(
                "{{{},{}}}",
                tensor("dense_0.weight", "F64", "[3,4]", 0, 96),
                tensor("dense_0.bias", "F32", "[3]", 96, 108)
            ),
            &[0; 108],
        ),
        &["w.safetensors: tensor `dense_0.weight` is F64, expected F32"],
    );
    add(
        "checkpoint/extra-tensor",
        st(
            &format!(
                "{{{},{},{}}}",
                tensor("dense_0.weight", "F32", "[3,4]", 0, 48),
                tensor("dense_0.bias", "F32", "[3]", 48, 60),
                tensor("dense_9.bias", "F32", "[1]", 60, 64)
            ),
            &[0; 64],
        ),
        &["w.safetensors: tensors the model does not have: dense_9.bias"],
    );
    let mut nan = vec![0u8; 60];
    nan[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    add(
        "checkpoint/nan",
        st(&good_header, &nan),
        &["w.safetensors: tensor `dense_0.weight` holds a non-finite value at element 2"],
    );
    add(
        "checkpoint/huge-header-length",
        u64::MAX.to_le_bytes().to_vec(),
        &["w.safetensors: not a valid safetensors file"],
    );
    let mut c = case(
        "checkpoint/dev-zero",
        vec![m.clone(), d.clone()],
        &[],
        1,
        &["/dev/zero: cannot read: it is not a regular file"],
    );
    c.args = eval("/dev/zero");
    out.push(c);
    let mut c =
        case("checkpoint/directory", vec![m.clone(), d.clone()], &[], 1, &[".: cannot read: it is a directory"]);
    c.args = eval(".");
    out.push(c);
    let mut c = case("checkpoint/missing", vec![m, d], &[], 1, &["nope.safetensors: cannot read"]);
    c.args = eval("nope.safetensors");
    out.push(c);
    out
}

fn flag_cases() -> Vec<Case> {
    let m = || ("m.nn", CSV_MODEL.as_bytes().to_vec());
    let d = || ("train.csv", csv(GOOD_CSV));
    let x = || ("in.npy", npy("<f4", false, &[2, 4], &f32s(&[0.5; 8])));
    let base = || vec![m(), d()];
    vec![
        case("flags/unknown-flag", base(), &["train", "m.nn", "--fast"], 2, &["unexpected argument '--fast'"]),
        case("flags/no-command", base(), &[], 2, &["Usage: nnlangc"]),
        case("flags/unknown-command", base(), &["fly", "m.nn"], 2, &["unrecognized subcommand 'fly'"]),
        case("flags/limit-zero", base(), &["train", "m.nn", "--limit", "0"], 2, &["invalid value '0' for '--limit <N>': must be at least 1"]),
        case("flags/limit-word", base(), &["train", "m.nn", "--limit", "many"], 2, &["`many` is not a whole number"]),
        case("flags/epochs-zero", base(), &["train", "m.nn", "--epochs", "0"], 2, &["invalid value '0' for '--epochs"]),
        case("flags/threads-zero", base(), &["train", "m.nn", "--threads", "0"], 2, &["invalid value '0' for '--threads"]),
        case("flags/threads-huge", base(), &["train", "m.nn", "--threads", "100000"], 2, &["invalid value '100000' for '--threads"]),
        case("flags/split-unknown", base(), &["train", "m.nn", "--split", "rows"], 2, &["invalid value 'rows' for '--split"]),
        case("flags/eval-limit-zero", base(), &["eval", "m.nn", "--weights", "w", "--limit", "0"], 2, &["must be at least 1"]),
        case("flags/set-no-equals", base(), &["check", "m.nn", "--set", "width"], 2, &["`width` is not KEY=VALUE"]),
        case("flags/set-bad-value", base(), &["check", "m.nn", "--set", "width=wide"], 2, &["`wide` is not an integer, a number or true/false"]),
        case("flags/set-beyond-i64", base(), &["check", "m.nn", "--set", "width=99999999999999999999"], 2, &["`99999999999999999999` is beyond the largest integer (9223372036854775807)"]),
        case("flags/set-other-block", base(), &["check", "m.nn", "--set", "data.scale=0.5"], 2, &["--set data.scale: --set reaches the `train` block (and the model's parameters); `data` settings are changed in the file's `data` block"]),
        case("flags/set-unknown", base(), &["check", "m.nn", "--set", "depth=3"], 2, &["--set depth: no model in this file has a parameter `depth`"]),
        case("flags/set-smuggled-settings", base(), &["train", "m.nn", "--out", "out", "--set", "epochs=1 clip = 0.001 average = ema(decay = 0.5)"], 2, &["--set epochs=1 clip = 0.001 average = ema(decay = 0.5): `1 clip = 0.001 average = ema(decay = 0.5)` is more than one value: `clip = 0.001 average = ema(decay = 0.5)` follows `1`; a value is one expression"]),
        case("flags/set-smuggled-field", base(), &["train", "m.nn", "--out", "out", "--set", "regularize.l2=1e-3 l1 = 5"], 2, &["--set regularize.l2=1e-3 l1 = 5: `1e-3 l1 = 5` is more than one value: `l1 = 5` follows `1e-3`"]),
        case("flags/set-unbalanced", base(), &["train", "m.nn", "--out", "out", "--set", "optimizer=adam(lr = 1e-3) beta1 = 0.5)"], 2, &["`beta1 = 0.5)` follows `adam(lr = 1e-3)`"]),
        case("flags/set-not-a-value", base(), &["train", "m.nn", "--out", "out", "--set", "optimizer=)"], 2, &["--set optimizer=): `)` is not a value"]),
        case("flags/model-unknown", base(), &["check", "m.nn", "--model", "N"], 2, &["--model N: no model `N` in this file"]),
        case("flags/after-unknown", base(), &["emit", "--ir", "m.nn", "--after", "fuse"], 2, &["--after fuse: no such pass"]),
        case("flags/missing-file", vec![], &["check", "nope.nn"], 2, &["cannot read nope.nn: no such file"]),
        case("flags/directory-file", vec![], &["check", "."], 2, &["cannot read .: it is a directory"]),
        case("flags/dev-zero-file", vec![], &["check", "/dev/zero"], 2, &["cannot read /dev/zero: not a regular file"]),
        case("flags/not-utf8", vec![("m.nn", b"model M {\n input x: [4]\xff\n}".to_vec())], &["check", "m.nn"], 1, &["m.nn:2:14: the file is not valid UTF-8 (byte 0xff at offset 23)"]),
        case("flags/huge-source", vec![("m.nn", vec![b' '; (64 << 20) + 1])], &["check", "m.nn"], 1, &["m.nn: larger than the 64 MiB"]),
        case("out/is-a-file", vec![m(), d(), ("afile", b"x".to_vec())], &["train", "m.nn", "--out", "afile"], 2, &["afile: refusing to write a run here: it exists and is not a directory"]),
        case("out/dev-null", base(), &["train", "m.nn", "--out", "/dev/null"], 2, &["/dev/null: refusing to write a run here: it exists and is not a directory"]),
        case("out/users-directory", base(), &["train", "m.nn", "--out", "."], 2, &[".: refusing to write a run here: the directory holds files that are not an nnlang run (no run.json)"]),
        case("run/output-device", vec![m(), d(), x()], &["run", "m.nn", "--weights", "w", "--input", "in.npy", "--output", "/dev/null"], 2, &["/dev/null: refusing to replace it: it is a device, not a regular file"]),
        case("run/output-directory", vec![m(), d(), x()], &["run", "m.nn", "--weights", "w", "--input", "in.npy", "--output", "."], 2, &[".: refusing to replace it: it is a directory"]),
        case("run/missing-weights", vec![m(), d(), x()], &["run", "m.nn", "--weights", "w", "--input", "in.npy", "--output", "o.npy"], 1, &["w: cannot read"]),
        case("recipe/ce-without-softmax", vec![("m.nn", CSV_MODEL.replace("-> softmax", "").into_bytes()), d()], &["check", "m.nn"], 1, &["`loss = cross_entropy` needs the model to end in `softmax`", "--> m.nn:2:7"]),
        case("recipe/bins-vs-outputs", vec![("m.nn", CSV_MODEL.replace("loss = cross_entropy", "loss = cross_entropy(bins = 5)").into_bytes()), d()], &["check", "m.nn"], 1, &["`cross_entropy(bins = 5)` needs a model with 5 outputs, this one has 3", "--> m.nn:3:"]),
        case("recipe/classes-vs-outputs", vec![("m.nn", CSV_MODEL.replace("csv(\"train.csv\")", "csv(\"train.csv\"), classes = 7").into_bytes()), d()], &["check", "m.nn"], 1, &["data set `d` declares 7 classes, but the model outputs 3", "--> m.nn:4:"]),
        case("recipe/bce-without-sigmoid", vec![("m.nn", BCE_MODEL.replace("-> sigmoid", "").into_bytes()), d()], &["check", "m.nn"], 1, &["`loss = binary_cross_entropy` needs the model to end in `sigmoid`"]),
        case("limits/repetition", vec![("m.nn", b"model M { input x: [4]\n x -> [relu] * 1000000000 -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["a repetition count must be at most 1,000,000, found 1000000000", "--> m.nn:2:16"]),
        case("limits/layers", vec![("m.nn", b"model M { input x: [4]\n x -> [[relu] * 1000] * 2000 -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["this model would have more than 1,000,000 layers", "--> m.nn:2:"]),
        case("limits/pad", vec![("m.nn", b"model M { input x: [8, 8, 1]\n x -> conv(filters = 2, size = 3, pad = 9223372036854775807) -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["`pad` of `conv` is far too large", "--> m.nn:2:"]),
        case("limits/stride", vec![("m.nn", b"model M { input x: [28, 28, 1]\n x -> conv(filters = 2, size = 5, stride = 9223372036854775000) -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["`stride` of `conv` is far too large"]),
        case("limits/maxout", vec![("m.nn", b"model M { input x: [4]\n x -> maxout(units = 4294967296, pieces = 4294967296) -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["needs more than 2^40 affine maps", "--> m.nn:2:7"]),
        case("limits/min-div", vec![("m.nn", b"model M(N = (-9223372036854775807 - 1) / -1) { input x: [4]\n x -> dense(N) }".to_vec())], &["check", "m.nn"], 1, &["integer overflow in constant expression", "--> m.nn:1:13"]),
        case("limits/comment", vec![("m.nn", b"model M { input x: [4]\n /* never closed\n x -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["this comment is never closed", "--> m.nn:2:2"]),
        case("limits/long-sum", vec![("m.nn", format!("model M(N = {}) {{ input x: [4]\n x -> dense(N) }}", vec!["1"; 100_000].join(" + ")).into_bytes())], &["check", "m.nn"], 1, &["this expression has 99999 operators; at most 256 are allowed", "--> m.nn:1:13"]),
        case("limits/many-negations", vec![("m.nn", format!("model M(N = {}1) {{ input x: [4]\n x -> dense(N) }}", "-".repeat(100_000)).into_bytes())], &["check", "m.nn"], 1, &["this expression has 100000 `-` signs; at most 8 are allowed"]),
        case("limits/total-parameters", vec![("m.nn", b"model M { input x: [1000000]\n x -> [dense(1000000)] * 1000 -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["with this layer the model has more than 2^40 parameters", "--> m.nn:2:8"]),
        case("limits/total-flops", vec![("m.nn", b"model M { input x: [1024, 1024, 64]\n x -> [conv(filters = 64, size = 9, pad = same)] * 2000 -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["with this layer one example needs more than 2^50 FLOPs", "--> m.nn:2:8"]),
        case("limits/let-cycle", vec![("m.nn", b"model M { input x: [4]\n let a = b -> relu\n let b = a -> relu\n a -> dense(2) }".to_vec())], &["check", "m.nn"], 1, &["depend on each other in a cycle"]),
    ]
}

fn run_case(base: &Path, c: &Case) {
    let dir = base.join(c.name.replace('/', "-"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("case dir");
    for (name, bytes) in &c.files {
        std::fs::write(dir.join(name), bytes).expect("case file");
    }
    let before = listing(&dir);
    let out =
        Command::new(env!("CARGO_BIN_EXE_nnlangc")).args(&c.args).current_dir(&dir).output().expect("nnlangc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(c.exit), "{}: exit code\n{stderr}", c.name);
    for s in &c.says {
        assert!(stderr.contains(s.as_str()), "{}: expected `{s}` in\n{stderr}", c.name);
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{}: panic\n{stderr}", c.name);
    // Nothing half-written: the folder holds exactly what it held before.
    assert_eq!(listing(&dir), before, "{}: files left behind", c.name);
    let _ = std::fs::remove_dir_all(&dir);
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_hostile_input_is_a_clear_located_error() {
    let base = common::temp_dir("hostile-all");
    let cases: Vec<Case> =
        source_cases().into_iter().chain(data_cases()).chain(checkpoint_cases()).chain(flag_cases()).collect();
    assert!(cases.len() >= 150, "the corpus has {} cases", cases.len());
    for c in &cases {
        run_case(&base, c);
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A FIFO with no writer is refused at once, not waited on.
#[test]
fn a_fifo_is_refused_not_waited_on() {
    let dir = common::temp_dir("hostile-fifo");
    let status = Command::new("mkfifo").arg(dir.join("pipe.nn")).status().expect("mkfifo runs");
    assert!(status.success());
    let start = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["check", "pipe.nn"])
        .current_dir(&dir)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read pipe.nn: not a regular file"));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A full device or a closed pipe on standard output: no panic; training keeps its run.
#[test]
fn a_full_or_closed_stdout_never_panics() {
    let dir = common::temp_dir("hostile-stdout");
    std::fs::write(dir.join("m.nn"), CSV_MODEL.replace("epochs = 1", "epochs = 3")).expect("model");
    std::fs::write(dir.join("train.csv"), GOOD_CSV).expect("data");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["check", "m.nn"])
        .current_dir(&dir)
        .stdout(full)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not write everything to standard output") && !stderr.contains("panicked"),
        "{stderr}"
    );

    // `nnlangc train … | head -0`: the reader is gone before the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", "m.nn", "--out", "run"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let manifest = std::fs::read_to_string(dir.join("run/run.json")).expect("the run is saved");
    assert!(manifest.contains("\"complete\": true"), "{manifest}");
    let _ = std::fs::remove_dir_all(&dir);
}
