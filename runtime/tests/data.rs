//! The readers refuse bad files with messages that name the problem, and read good ones
//! exactly; checkpoints round-trip bit for bit.

use nnlang_runtime::data::{csv, idx, npy, Table};
use nnlang_runtime::plan::{ABuf, PBuf, Param, Plan, Role};
use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nnlang-runtime-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn idx_headers_are_checked() {
    let p = Path::new("x.idx");
    let ok = idx::parse(p, &[0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]).expect("valid");
    assert_eq!(ok.dims, vec![2, 3]);
    assert_eq!(ok.data, vec![1, 2, 3, 4, 5, 6]);
    let err = |b: &[u8]| idx::parse(p, b).expect_err("invalid").to_string();
    assert_eq!(err(&[0, 0]), "x.idx: not an IDX file: 2 bytes, shorter than the 4-byte magic number");
    assert_eq!(
        err(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
        "x.idx: IDX element type 0x0d is not supported; only unsigned bytes (0x08) are"
    );
    assert_eq!(err(&[0, 0, 8, 2, 0, 0, 0, 2]), "x.idx: truncated IDX header: 8 bytes, expected 12");
    assert_eq!(err(&[0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "x.idx: the header promises 5 = 5 bytes of data, the file has 2");
}

#[test]
fn gzipped_idx_reads_like_plain() {
    use std::io::Write;
    let d = dir("gz");
    let raw = [0u8, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).expect("compress");
    std::fs::write(d.join("a.idx.gz"), gz.finish().expect("compress")).expect("write");
    std::fs::write(d.join("a.idx"), raw).expect("write");
    assert_eq!(idx::read(&d.join("a.idx.gz")).expect("gz"), idx::read(&d.join("a.idx")).expect("plain"));
    std::fs::write(d.join("broken.gz"), [0x1f, 0x8b, 8, 0, 1, 2]).expect("write");
    assert!(idx::read(&d.join("broken.gz")).expect_err("broken").to_string().contains("broken gzip stream"));
}

#[test]
fn csv_headers_labels_and_mistakes() {
    let d = dir("csv");
    std::fs::write(d.join("ok.csv"), "a,b,label\n1,2,0\n3,4,1\n").expect("write");
    let t = csv::read(&d.join("ok.csv"), None).expect("valid");
    assert_eq!((t.x.clone(), t.cols, t.y.clone()), (vec![1.0, 2.0, 3.0, 4.0], 2, vec![0.0, 1.0]));
    let t = csv::read(&d.join("ok.csv"), Some(0)).expect("valid");
    assert_eq!((t.x, t.y), (vec![2.0, 0.0, 4.0, 1.0], vec![1.0, 3.0]));
    std::fs::write(d.join("bad.csv"), "1,2,0\n3,x,1\n").expect("write");
    assert!(csv::read(&d.join("bad.csv"), None)
        .expect_err("bad")
        .to_string()
        .ends_with("bad.csv: line 2, column 2: `x` is not a number"));
    std::fs::write(d.join("ragged.csv"), "1,2,0\n3,1\n").expect("write");
    assert!(csv::read(&d.join("ragged.csv"), None)
        .expect_err("bad")
        .to_string()
        .ends_with("line 2 has 2 columns, the lines before it 3"));
    std::fs::write(d.join("inf.csv"), "1,2,0\n3,inf,1\n").expect("write");
    assert!(csv::read(&d.join("inf.csv"), None)
        .expect_err("bad")
        .to_string()
        .ends_with("line 2, column 2: inf is not a finite number"));
}

#[test]
fn npy_round_trip_and_types() {
    let d = dir("npy");
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    npy::write(&d.join("a.npy"), &[3, 4], &data).expect("write");
    let back = npy::read(&d.join("a.npy")).expect("read");
    assert_eq!(back.shape, vec![3, 4]);
    assert_eq!(back.data, data);
    assert!(!d.join("a.npy.partial").exists());
    std::fs::write(d.join("junk.npy"), b"not numpy").expect("write");
    assert!(npy::read(&d.join("junk.npy")).expect_err("junk").to_string().contains("not a .npy file"));
}

#[test]
fn standardize_and_checks() {
    let mut t = Table::new(vec![1.0, 10.0, 3.0, 10.0], 2, vec![0.0, 4.0], 1);
    let (m, s) = t.moments();
    assert_eq!((m.clone(), s.clone()), (vec![2.0, 10.0], vec![1.0, 1.0]), "a constant column keeps std 1");
    t.standardize(&m, &s);
    assert_eq!(t.x, vec![-1.0, 0.0, 1.0, 0.0]);
    assert_eq!(t.first_bad_label(3), Some((1, 4.0)));
    t.x[3] = f32::NAN;
    assert_eq!(t.first_non_finite(), Some((1, 1, false)));
}

#[test]
fn checkpoints_round_trip_exactly_and_refuse_mismatches() {
    let param = |name: &str, shape: Vec<usize>, offset: usize| {
        let len = shape.iter().product();
        Param {
            name: name.into(),
            shape,
            buf: PBuf { offset, len },
            role: if name.ends_with("bias") { Role::Bias } else { Role::Weight { fan_in: 1, fan_out: 1 } },
        }
    };
    let plan = Plan {
        max_batch: 1,
        arena_len: 0,
        naive_len: 0,
        steps: Vec::new(),
        inputs: Vec::new(),
        input_ids: Vec::new(),
        target: None,
        output: ABuf::NONE,
        params: vec![param("fc.weight", vec![2, 3], 0), param("fc.bias", vec![2], 6)],
        params_len: 8,
        sequence: None,
        carried: Vec::new(),
        origins: Vec::new(),
        facts: Vec::new(),
        input_grads: Vec::new(),
    };
    let w: Vec<f32> = vec![0.1, -0.2, 1e-30, f32::MIN_POSITIVE, 3.5, -7.25, 0.0, 1.0 / 3.0];
    let bytes = nnlang_runtime::io::to_bytes(&plan.params, &w).expect("serialize");
    assert_eq!(bytes, nnlang_runtime::io::to_bytes(&plan.params, &w).expect("serialize"), "deterministic bytes");
    let mut back = vec![0f32; 8];
    nnlang_runtime::io::from_bytes(&bytes, &plan.params, &mut back).expect("load");
    assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), w.iter().map(|v| v.to_bits()).collect::<Vec<_>>());

    let mut other = plan.clone();
    other.params[0].shape = vec![3, 2];
    let mut untouched = vec![9f32; 8];
    let e = nnlang_runtime::io::from_bytes(&bytes, &other.params, &mut untouched).expect_err("mismatch");
    assert_eq!(e.to_string(), "tensor `fc.weight` has shape [2, 3], the model expects [3, 2]");
    assert!(untouched.iter().all(|&v| v == 9.0), "nothing is loaded from a mismatched file");
    let e =
        nnlang_runtime::io::from_bytes(&bytes[..bytes.len() - 3], &plan.params, &mut untouched).expect_err("truncated");
    assert!(e.to_string().starts_with("not a valid safetensors file"), "{e}");
    other.params[0].name = "fc1.weight".into();
    other.params[0].shape = vec![2, 3];
    let e = nnlang_runtime::io::from_bytes(&bytes, &other.params, &mut untouched).expect_err("renamed");
    assert!(e.to_string().starts_with("tensor `fc1.weight` is missing (the file has:"), "{e}");
}

mod sequences {
    use nnlang_runtime::data::sequences::read;
    use std::path::{Path, PathBuf};

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/japanese-vowels")
    }

    /// The bundled Japanese Vowels files read as the data set's documentation describes them.
    #[test]
    fn japanese_vowels_as_documented() {
        let train = read(&examples().join("train.csv.gz"), None).expect("train");
        assert_eq!((train.len(), train.lengths.iter().sum::<usize>(), train.features), (270, 4274, 12));
        assert_eq!((*train.lengths.iter().min().expect("some"), train.longest()), (7, 26));
        let mut per_label = [0usize; 9];
        train.labels.iter().for_each(|&l| per_label[l as usize] += 1);
        assert_eq!(per_label, [30; 9]);
        assert_eq!(train.steps(0)[..2], [1.860936, -0.207383]);
        let test = read(&examples().join("test.csv.gz"), None).expect("test");
        assert_eq!((test.len(), test.lengths.iter().sum::<usize>()), (370, 5687));
        assert_eq!((*test.lengths.iter().min().expect("some"), test.longest()), (7, 29));
        let mut per_label = [0usize; 9];
        test.labels.iter().for_each(|&l| per_label[l as usize] += 1);
        assert_eq!(per_label, [31, 35, 88, 44, 29, 24, 40, 50, 29]);
        // A plan that accepts at most 28 steps refuses the test set, naming the sequence.
        let e = read(&examples().join("test.csv.gz"), Some(28)).expect_err("too long").to_string();
        assert!(e.contains("is longer than the 28 steps the model accepts"), "{e}");
    }

    fn err(text: &str) -> String {
        let d = std::env::temp_dir().join(format!("nnlang-seq-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        let p = d.join("s.csv");
        std::fs::write(&p, text).expect("write");
        let e = read(&p, Some(3)).expect_err("refused").to_string();
        let _ = std::fs::remove_file(&p);
        e.replace(&p.display().to_string(), "s.csv")
    }

    #[test]
    fn every_mistake_names_its_line() {
        let h = "seq,t,label,a,b\n";
        assert_eq!(
            err(&format!("{h}0,0,1,0.1,0.2\n0,2,1,0.1,0.2\n")),
            "s.csv: line 3: sequence 0: step 2 where step 1 comes next (steps run 0, 1, 2, … in order)"
        );
        assert_eq!(
            err(&format!("{h}0,0,1,0.1,0.2\n0,0,1,0.1,0.2\n")),
            "s.csv: line 3: sequence 0: step 0 where step 1 comes next (steps run 0, 1, 2, … in order)"
        );
        assert_eq!(
            err(&format!("{h}0,0,1,0.1,0.2\n0,1,2,0.1,0.2\n")),
            "s.csv: line 3: sequence 0: label 2 at step 1, but the sequence began with label 1"
        );
        assert_eq!(
            err(&format!("{h}0,0,1,0.1,0.2\n2,0,1,0.1,0.2\n")),
            "s.csv: line 3: sequence 2 follows sequence 0: sequence 1 has no rows (an empty sequence)"
        );
        assert_eq!(
            err(&format!("{h}0,0,1,0.1,0.2\n1,0,1,0.1,0.2\n0,1,1,0.1,0.2\n")),
            "s.csv: line 4: a row of sequence 0 after sequence 1: rows are sorted by seq, then t"
        );
        assert_eq!(
            err(&format!("{h}0,1,1,0.1,0.2\n")),
            "s.csv: line 2: sequence 0 starts at step 1; its first step is 0"
        );
        assert_eq!(
            err(&format!("{h}0,0,1,0.1,0.2\n0,1,1,0.1,0.2\n0,2,1,0.1,0.2\n0,3,1,0.1,0.2\n")),
            "s.csv: line 5: sequence 0 is longer than the 3 steps the model accepts"
        );
        assert_eq!(err(&format!("{h}0,0,1,0.1,0.2\n0,1,1,0.1\n")), "s.csv: line 3: 4 columns, the rows before it 5");
        assert_eq!(err(&format!("{h}0,0,1,0.1,x\n")), "s.csv: line 2: column 5: `x` is not a number");
        assert_eq!(err(&format!("{h}0,0,1,0.1,NaN\n")), "s.csv: line 2: feature 1 is NaN (not a finite number)");
        assert_eq!(
            err(&format!("{h}0.5,0,1,0.1,0.2\n")),
            "s.csv: line 2: `seq` must be a whole number from 0, found 0.5"
        );
        assert_eq!(
            err(&format!("{h}0,0,1\n")),
            "s.csv: line 2: 3 columns; a row is seq, t, label and at least one feature"
        );
        assert_eq!(err(h), "s.csv: no sequences (no rows of data)");
    }
}

mod text {
    use nnlang_runtime::data::text::{read, Vocabulary};
    use std::path::Path;

    /// The bundled tragedies read as their documentation describes them: 1,158,247 ASCII
    /// bytes, 46,309 line breaks, 73 distinct characters; ids round-trip.
    #[test]
    fn shakespeare_as_documented() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/shakespeare/tragedies.txt.gz");
        let text = read(&p).expect("reads");
        assert_eq!(text.len(), 1_158_247);
        assert_eq!(text.matches('\n').count(), 46_309);
        let v = Vocabulary::of(&text);
        assert_eq!(v.len(), 73);
        assert_eq!(v.chars[0], '\n');
        let ids = v.encode(&text[..5000]).expect("in the vocabulary");
        assert_eq!(v.decode(&ids).as_deref(), Some(&text[..5000]));
    }

    #[test]
    fn a_character_outside_the_vocabulary_is_named_with_its_place() {
        let v = Vocabulary::of("abc\nd");
        assert_eq!(v.id('c'), Some(3)); // '\n' sorts first
        assert_eq!(
            v.encode("ab\ncaz"),
            Err("line 2, column 3: the character 'z' is not in the model's vocabulary of 5 characters".to_string())
        );
        assert_eq!(v.decode(&[9]), None);
        assert_eq!(v.to_json(), "{\"chars\": \"\\nabcd\"}\n");
        let d = std::env::temp_dir().join(format!("nnlang-text-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join("bad.txt"), b"ok\nno\xff").expect("write");
        let e = read(&d.join("bad.txt")).expect_err("not utf-8").to_string();
        assert!(e.ends_with("bad.txt: line 2, column 3: not UTF-8 text (byte 0xff)"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Splitting in place gives the tables `select` gives, for bytes and for f32, sequences too.
#[test]
fn a_split_in_place_is_two_selections() {
    use nnlang_runtime::data::Table;
    let rows = 23;
    let order: Vec<usize> = (0..rows).map(|i| (i * 7 + 3) % rows).collect();
    let (first, second) = order.split_at(17);
    let bytes = Table::from_bytes(
        (0..rows * 3).map(|i| (i % 251) as u8).collect(),
        3,
        (0..rows).map(|i| i as f32).collect(),
        1,
    );
    let mut floats =
        Table::new((0..rows * 3).map(|i| i as f32 * 0.5).collect(), 3, (0..rows * 2).map(|i| -(i as f32)).collect(), 2);
    floats.lengths = (0..rows).map(|i| 1 + i % 3).collect();
    floats.steps = 3;
    for mut t in [bytes, floats] {
        if t.bytes.is_some() {
            t.scale(0.25);
        }
        let want = (t.select(first), t.select(second));
        let got = t.into_split(first, second);
        assert_eq!(got, want);
        assert_eq!(got.0.x_f32().len(), 17 * 3);
    }
}
