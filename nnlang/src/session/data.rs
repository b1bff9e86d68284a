//! The data of a training job: a `data` block's files read ([`read_source`]), checked against
//! the model ([`Expect`]), binned, scaled and standardized as the block says ([`load`]).

use crate::ir::Dim;
use crate::ops::loss::UserLoss;
use crate::spec::{DataSpec, Source};
use crate::Model;
use nnlang_runtime::data::{self, DataError, Table};
use std::path::Path;

/// A data set read from a `data` block, ready for the model.
pub struct Loaded {
    /// The training examples.
    pub train: Table,
    /// The test examples, when the data block names a test set.
    pub test: Option<Table>,
    /// A text stream for a character model (then `train` is empty until the job cuts the
    /// stream into windows).
    pub text: Option<TextStream>,
    /// What was done to the data, which the model needs done to raw data too.
    pub preprocess: Preprocess,
}

pub use nnlang_runtime::data::preprocess::{Bins, Preprocess};

/// Character text as ids into its vocabulary.
pub struct TextStream {
    /// The text file.
    pub file: std::path::PathBuf,
    /// Its characters, as the model's classes.
    pub vocab: data::text::Vocabulary,
    /// The training text as ids.
    pub ids: Vec<u32>,
    /// A test text, in the same vocabulary.
    pub test: Option<Vec<u32>>,
}

/// The stream `ids` as rows of windows for truncated BPTT: `streams` contiguous parts, each
/// cut into windows of `window` steps; row `k · streams + r` is window `k` of part `r`, so
/// consecutive batches of `streams` rows continue every part. A window's input is each
/// character one-hot (`vocab` features per step, padded to `steps`) or, for a model that reads
/// ids (`as_ids`), the character's id (kept as a byte when the vocabulary fits in one: the
/// text's size in memory, not `vocab` times it); its target is the next character.
/// `exact`: every window has `window` steps (a partial last one is dropped).
pub fn windows(
    ids: &[u32],
    vocab: usize,
    streams: usize,
    window: usize,
    steps: usize,
    exact: bool,
    as_ids: bool,
) -> Table {
    let streams = streams.max(1);
    let part = ids.len().saturating_sub(1) / streams;
    let count = if exact { part / window.max(1) } else { part.div_ceil(window.max(1)) };
    let rows = count * streams;
    let width = if as_ids { 1 } else { vocab };
    let bytes = as_ids && vocab <= 256;
    let mut t = Table {
        bytes: bytes.then(|| data::Bytes { data: vec![0u8; rows * steps], scale: None }),
        disk: None,
        x: if bytes { Vec::new() } else { vec![0f32; rows * steps * width] },
        cols: steps * width,
        y: vec![0f32; rows * steps],
        y_cols: steps,
        lengths: vec![0; rows],
        steps,
    };
    for k in 0..count {
        let len = window.min(part - k * window);
        for r in 0..streams {
            let row = k * streams + r;
            let start = r * part + k * window;
            t.lengths[row] = len;
            for s in 0..len {
                let (id, at) = (ids[start + s], row * steps + s);
                match (&mut t.bytes, as_ids) {
                    (Some(b), _) => b.data[at] = id as u8,
                    (None, true) => t.x[at] = id as f32,
                    (None, false) => t.x[at * vocab + id as usize] = 1.0,
                }
                t.y[at] = ids[start + s + 1] as f32;
            }
        }
    }
    t
}

/// What the data must fit: the model's input width and, for classification, its classes.
pub struct Expect {
    /// `cross_entropy(bins = n)`: a regression target cut into n equal-width bins over the
    /// training targets' range, trained as classification.
    pub bins: Option<usize>,
    /// Values per example the model reads.
    pub input_cols: usize,
    /// The input's shape, for messages.
    pub input_desc: String,
    /// `Some(k)`: labels are class indices below k; `None`: targets are `target_cols` values.
    pub classes: Option<usize>,
    /// Values per target row.
    pub target_cols: usize,
    /// Binary cross-entropy: every target is a probability in [0, 1].
    pub unit_targets: bool,
    /// A sequence input's steps, and whether shorter sequences are allowed (`seq <= n`).
    pub steps: Option<(usize, bool)>,
    /// The output has a row per step (`classes` and `target_cols` are per step).
    pub per_step_output: bool,
    /// The input holds token ids below this (`ids < n`).
    pub ids: Option<usize>,
}

/// What the data of `model` must look like for `loss` (`bins` from `cross_entropy(bins = n)`).
pub fn expect(model: &Model, loss: UserLoss, bins: Option<usize>) -> Expect {
    let g = &model.graph;
    let input = g.inputs.first().copied();
    let shape = input.and_then(|i| model.shapes.shapes[i.index()].clone());
    let out_shape = g.output.and_then(|o| model.shapes.shapes[o.index()].as_ref());
    // An output at every step of a sequence: classes (or values) per step.
    let per_step_output = out_shape.is_some_and(|s| s.is_sequence());
    let out_cols =
        out_shape.map_or(0, |s| if per_step_output { s.last().unwrap_or(0) } else { s.elements().fixed as usize });
    Expect {
        bins,
        // A sequence of variable length counts at its longest (its rows are padded to it).
        input_cols: shape.as_ref().map_or(0, |s| {
            let e = s.elements();
            match s.0.first() {
                Some(Dim::Seq { max: Some(m), .. }) => (e.per_step as usize).saturating_mul(*m),
                _ => e.fixed as usize,
            }
        }),
        input_desc: match (input, &shape) {
            (Some(i), Some(s)) => format!("`{}` {s}", g.node(i).name),
            _ => "?".into(),
        },
        classes: matches!(loss, UserLoss::CrossEntropy(_)).then_some(out_cols),
        target_cols: out_cols,
        unit_targets: loss == UserLoss::BinaryCrossEntropy,
        per_step_output,
        ids: input.and_then(|i| crate::shape::ids_bound(g, i)),
        steps: shape.as_ref().and_then(|s| match s.0.first() {
            Some(Dim::Steps { len, .. }) => Some((*len, false)),
            Some(Dim::Seq { max: Some(m), .. }) => Some((*m, true)),
            _ => None,
        }),
    }
}

/// Reads one split (at most its first `rows` examples); relative paths are relative to
/// `base`.
pub fn read_source(source: &Source, base: &Path, rows: Option<usize>, expect: &Expect) -> Result<Table, DataError> {
    match source {
        Source::Sequences { path } => {
            let path = base.join(path);
            let Some((steps, variable)) = expect.steps else {
                return Err(DataError::new(
                    &path,
                    format!("holds sequences, but the model's input {} is not a sequence", expect.input_desc),
                ));
            };
            let mut seqs = data::sequences::read(&path, Some(steps))?;
            if let Some(n) = rows {
                seqs.truncate(n);
            }
            if seqs.features * steps != expect.input_cols {
                return Err(DataError::new(
                    &path,
                    format!(
                        "{} features per step, but the model's input {} has {}",
                        seqs.features,
                        expect.input_desc,
                        expect.input_cols / steps.max(1)
                    ),
                ));
            }
            if !variable {
                if let Some(i) = seqs.lengths.iter().position(|&l| l != steps) {
                    return Err(DataError::new(
                        &path,
                        format!(
                            "sequence {i} has {} steps, but the model's input {} has exactly {steps}",
                            seqs.lengths[i], expect.input_desc
                        ),
                    ));
                }
            }
            Ok(Table::padded(&seqs, steps))
        }
        Source::Idx { images, labels } => {
            let (images, labels) = (base.join(images), base.join(labels));
            let x = data::idx::read_rows(&images, rows)?;
            let y = data::idx::read_rows(&labels, rows)?;
            if y.dims.len() != 1 {
                return Err(DataError::new(
                    &labels,
                    format!("labels must be one-dimensional, found {} dimensions", y.dims.len()),
                ));
            }
            if x.dims[0] != y.dims[0] {
                return Err(DataError::new(
                    &labels,
                    format!("{} labels for {} images in {}", y.dims[0], x.dims[0], images.display()),
                ));
            }
            let cols = x.dims[1..].iter().product::<usize>();
            // The images stay bytes (a quarter of the memory), converted a batch at a time.
            Ok(Table::from_bytes(x.data, cols, y.data.iter().map(|&b| f32::from(b)).collect(), 1))
        }
        Source::Npy { x: xp, y: yp } => {
            let (xp, yp) = (base.join(xp), base.join(yp));
            // An array too large to hold stays in its file, read a batch's rows at a time.
            if let Some(disk) = data::npy::on_disk(&xp, rows, data::disk::in_memory_limit())? {
                let y = data::npy::read_rows(&yp, rows)?;
                let xr = disk.rows.len();
                let yr = y.shape.first().copied().unwrap_or(0);
                if xr != yr || y.shape.is_empty() {
                    return Err(DataError::new(&yp, format!("{yr} targets for {xr} examples in {}", xp.display())));
                }
                let y_cols = y.data.len() / yr.max(1);
                return Ok(Table::on_disk(disk, y.data, y_cols));
            }
            let x = data::npy::read_rows(&xp, rows)?;
            let y = data::npy::read_rows(&yp, rows)?;
            let (Some(&xr), Some(&yr)) = (x.shape.first(), y.shape.first()) else {
                let (p, a) = if x.shape.is_empty() { (&xp, &x) } else { (&yp, &y) };
                return Err(DataError::new(
                    p,
                    format!("a single number (shape {:?}); expected one row per example", a.shape),
                ));
            };
            if xr != yr {
                return Err(DataError::new(&yp, format!("{yr} targets for {xr} examples in {}", xp.display())));
            }
            if xr == 0 {
                return Err(DataError::new(&xp, format!("no examples: the array's shape is {:?}", x.shape)));
            }
            let rows = x.shape.first().copied().unwrap_or(0).max(1);
            let (cols, y_cols) = (x.data.len() / rows, y.data.len() / rows);
            Ok(Table::new(x.data, cols, y.data, y_cols))
        }
        Source::Csv { path, label } => data::csv::read_rows(&base.join(path), *label, rows),
        Source::Images { path, size, channels } => super::images::read(&base.join(path), *size, *channels, rows),
        Source::Text { path } => Err(DataError::new(
            &base.join(path),
            "text is read as the training stream of a character model (`train = text(…)`)",
        )),
    }
}

/// Reads and checks the data of a `data` block; paths are relative to `base`; `rows` keeps
/// (and reads) only the first examples of each split. The recipe's own consistency (`bins`
/// and `classes` against the model's outputs) is checked when the file is compiled.
pub fn load(spec: &DataSpec, base: &Path, expect: &Expect, rows: Option<usize>) -> Result<Loaded, DataError> {
    // Errors about the data set as a whole name its folder ("." rather than nothing).
    let folder = if base.as_os_str().is_empty() { Path::new(".") } else { base };
    let Some(train_src) = &spec.train else {
        return Err(DataError::new(folder, format!("data set `{}` has no `train = …` source", spec.name)));
    };
    let describe = |source: &Source| source.files().first().map_or_else(|| base.to_path_buf(), |f| base.join(f));
    if let Source::Text { path } = train_src {
        return load_text(&base.join(path), spec.test.as_ref(), base, expect, rows);
    }
    let mut train = read_source(train_src, base, rows, expect)?;
    let mut test = spec.test.as_ref().map(|t| read_source(t, base, rows, expect)).transpose()?;
    let labels_of = |source: &Source| source.files().last().map_or_else(|| base.to_path_buf(), |f| base.join(f));
    // NaN and infinities are looked for as stored, before anything is computed from them: a
    // NaN standardized would spread over its whole column and be reported at example 0.
    for (table, source) in std::iter::once((&train, train_src)).chain(test.as_ref().zip(spec.test.as_ref())) {
        if let Some((row, col, target)) = table.first_non_finite() {
            let (file, what) = if target { (labels_of(source), "target") } else { (describe(source), "feature") };
            return Err(DataError::new(&file, format!("example {row}, {what} {col} is NaN or infinite")));
        }
    }
    let mut bin_edges = None;
    if let Some(bins) = expect.bins {
        let file = describe(train_src);
        if train.y_cols != 1 {
            return Err(DataError::new(&file, format!("binning needs one target per example, found {}", train.y_cols)));
        }
        let b =
            Bins::over(&train.y, bins).ok_or_else(|| DataError::new(&file, "the targets are not finite numbers"))?;
        bin_edges = Some((b.lo, b.width));
        let bin = |v: f32| b.index(v) as f32;
        train.y.iter_mut().for_each(|v| *v = bin(*v));
        if let Some(t) = &mut test {
            t.y.iter_mut().for_each(|v| *v = if v.is_finite() { bin(*v) } else { *v });
        }
    }
    if let Some(n) = expect.ids {
        if spec.scale.is_some() || spec.standardize {
            let what = if spec.standardize { "`standardize`" } else { "`scale`" };
            return Err(DataError::new(
                &describe(train_src),
                format!(
                    "{what} would change token ids: the model's input {} holds ids < {n}, read as they are",
                    expect.input_desc
                ),
            ));
        }
        for (table, source) in std::iter::once((&train, train_src)).chain(test.as_ref().zip(spec.test.as_ref())) {
            if let Some((row, col, v)) = first_bad_id(table, n) {
                let at = match (table.steps, &table.lengths) {
                    (steps, l) if steps > 0 && !l.is_empty() => {
                        let per = table.cols / steps;
                        let place = if per > 1 { format!(", id {}", col % per + 1) } else { String::new() };
                        format!("sequence {}, step {}{place}", row + 1, col / per.max(1) + 1)
                    }
                    _ => format!("example {}, value {}", row + 1, col + 1),
                };
                return Err(DataError::new(
                    &describe(source),
                    format!(
                        "{at} (counting from 1): {v} is not a token id below {n}, as the model's input {} holds",
                        expect.input_desc
                    ),
                ));
            }
        }
    }
    // Scaled first, then standardized with the scaled training set's statistics.
    if let Some(sc) = spec.scale {
        train.scale(sc as f32);
        if let Some(t) = &mut test {
            t.scale(sc as f32);
        }
    }
    let stats = spec.standardize.then(|| train.moments());
    let preprocess = Preprocess {
        scale: spec.scale.map(|s| s as f32),
        standardize: stats.clone(),
        bins: expect.bins.and_then(|n| bin_edges.map(|(lo, width)| Bins { lo, width, n })),
    };
    for (table, source) in std::iter::once((&mut train, train_src)).chain(test.as_mut().zip(spec.test.as_ref())) {
        let file = describe(source);
        // Labels and targets are named by the file that holds them (IDX labels, NPY y).
        let labels = labels_of(source);
        if table.cols != expect.input_cols {
            return Err(DataError::new(
                &file,
                format!(
                    "{} features per example, but the model's input {} has {}",
                    table.cols, expect.input_desc, expect.input_cols
                ),
            ));
        }
        let steps = if expect.per_step_output { expect.steps.map_or(1, |s| s.0) } else { 1 };
        let want_y = expect.classes.map_or(expect.target_cols, |_| 1) * steps;
        if table.y_cols != want_y {
            let what = if expect.classes.is_some() { "class labels" } else { "target values" };
            let per = if steps > 1 { format!(" ({} at each of {steps} steps)", want_y / steps) } else { String::new() };
            return Err(DataError::new(
                &labels,
                format!("{} {what} per example, but the model needs {want_y}{per}", table.y_cols),
            ));
        }
        if let Some(k) = expect.classes {
            if let Some((row, label)) = table.first_bad_label(k) {
                return Err(DataError::new(
                    &labels,
                    format!(
                        "example {} (counting from 1) has label {label}, outside the model's {k} classes 0..{}",
                        row + 1,
                        k - 1
                    ),
                ));
            }
        } else if table.y_cols != expect.target_cols {
            return Err(DataError::new(
                &labels,
                format!("{} target values per example, the model outputs {}", table.y_cols, expect.target_cols),
            ));
        }
        if expect.unit_targets {
            if let Some((i, v)) = table.y.iter().enumerate().find(|(_, v)| !(0.0..=1.0).contains(*v)) {
                return Err(DataError::new(
                    &labels,
                    format!(
                        "example {}, target {}: {v} is not a probability in [0, 1], which `binary_cross_entropy` needs",
                        i / table.y_cols.max(1),
                        i % table.y_cols.max(1)
                    ),
                ));
            }
        }
        if let Some((m, sd)) = &stats {
            table.standardize(m, sd);
        }
        // Scaling and standardizing finite values can still overflow; in memory that is
        // checked again here (a table left in its file is not read a second time: an overflow
        // there stops training at its first non-finite loss).
        if table.disk.is_none() {
            if let Some((row, col, _)) = table.first_non_finite() {
                return Err(DataError::new(
                    &file,
                    format!("example {row}, feature {col} is not finite after scaling and standardizing"),
                ));
            }
        }
    }
    Ok(Loaded { train, test, text: None, preprocess })
}

/// The first input value of `table` (row, column, value) that is not a whole number in
/// `0..n`; the padding of sequences is not looked at.
fn first_bad_id(table: &Table, n: usize) -> Option<(usize, usize, f32)> {
    // What the embedding kernel accepts as an id: one rule for the data, `run` and the kernel.
    let bad = |v: f32| nnlang_runtime::kernels::embedding::id(v, n).is_none();
    let cols = table.cols.max(1);
    let per = if table.steps > 0 && !table.lengths.is_empty() { cols / table.steps } else { cols };
    let in_seq = |r: usize, c: usize| table.lengths.get(r).is_none_or(|&l| c / per.max(1) < l);
    if let Some(d) = &table.disk {
        let mut first = None;
        d.for_each_row(|r, row| {
            if first.is_none() {
                first = row.iter().position(|&v| bad(v)).map(|c| (r, c, row[c]));
            }
        });
        return first;
    }
    let x = table.x_f32();
    x.iter().enumerate().find(|&(i, &v)| bad(v) && in_seq(i / cols, i % cols)).map(|(i, &v)| (i / cols, i % cols, v))
}

/// A text data set: the training text's vocabulary, checked against the model (a one-hot
/// character at every step in, a distribution over the next character at every step out);
/// `rows` keeps the first characters.
fn load_text(
    file: &Path,
    test: Option<&Source>,
    base: &Path,
    expect: &Expect,
    rows: Option<usize>,
) -> Result<Loaded, DataError> {
    // The vocabulary is the whole file's, even when `rows` keeps only its beginning.
    let text = data::text::read(file)?;
    let vocab = data::text::Vocabulary::of(&text);
    let Some((steps, _)) = expect.steps else {
        return Err(DataError::new(
            file,
            format!(
                "a text is read as a sequence of characters, but the model's input {} is not a sequence",
                expect.input_desc
            ),
        ));
    };
    let features = expect.input_cols / steps.max(1);
    if let Some(n) = expect.ids {
        if n != vocab.len() {
            return Err(DataError::new(
                file,
                format!(
                    "the text has {} distinct characters, but the model's input {} holds ids < {n} (one per character)",
                    vocab.len(),
                    expect.input_desc
                ),
            ));
        }
    } else if features != vocab.len() {
        return Err(DataError::new(
            file,
            format!(
                "the text has {} distinct characters, but the model's input {} has {features} features per step (one per character)",
                vocab.len(),
                expect.input_desc
            ),
        ));
    }
    if !expect.per_step_output || expect.classes != Some(vocab.len()) {
        return Err(DataError::new(
            file,
            format!(
                "a character model predicts the next of the text's {} characters at every step: it ends in `dense({}) -> softmax` over the sequence, trained with `cross_entropy`",
                vocab.len(),
                vocab.len()
            ),
        ));
    }
    let mut ids = vocab.encode(&text).map_err(|e| DataError::new(file, e))?;
    if let Some(n) = rows {
        ids.truncate(n);
    }
    let test = match test {
        Some(Source::Text { path }) => {
            let p = base.join(path);
            let t = data::text::read(&p)?;
            Some(vocab.encode(&t).map_err(|e| DataError::new(&p, e))?)
        }
        Some(other) => {
            let p = other.files().first().map_or_else(|| base.to_path_buf(), |f| base.join(f));
            return Err(DataError::new(&p, "the training data is text, so the test data must be `text(…)` too"));
        }
        None => None,
    };
    if ids.len() < 2 {
        return Err(DataError::new(file, "the text has fewer than two characters: nothing to predict"));
    }
    Ok(Loaded {
        train: Table::default(),
        test: None,
        text: Some(TextStream { file: file.to_path_buf(), vocab, ids, test }),
        preprocess: Preprocess::default(),
    })
}
