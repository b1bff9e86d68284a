//! Data readers (IDX, NPY, CSV; gzipped or plain), checked as they are read: a wrong magic
//! number, a short file, a count that does not match, a value that is NaN or infinite, a
//! label outside the classes — each is an error naming the file and the place.

pub mod augment;
pub mod csv;
pub mod disk;
pub mod idx;
pub mod npy;
pub mod preprocess;
pub mod sequences;
pub mod text;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A data file that cannot be read as the model needs, with where and why.
#[derive(Clone, Debug, PartialEq)]
pub struct DataError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, and where in it.
    pub message: String,
}

impl DataError {
    /// An error about `path`.
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        DataError { path: path.to_path_buf(), message: message.into() }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for DataError {}

/// The most bytes nnlang reads from one input file, or inflates one gzip stream to.
pub const MAX_INPUT_BYTES: u64 = 16 << 30;

/// Files held in memory by [`provide`], by path.
type MemoryFiles = std::collections::BTreeMap<PathBuf, std::sync::Arc<[u8]>>;

static MEMORY_FILES: std::sync::Mutex<MemoryFiles> = std::sync::Mutex::new(MemoryFiles::new());

/// Holds `bytes` in memory as the file `path`: every reader that goes through [`open`] (CSV,
/// IDX, sequences, text; gzipped or plain) reads them instead of the file system's file of
/// that path, written exactly as the data block's path joined to its `.nn` file's folder.
/// For hosts without a file system (the browser playground, `nnlang-wasm`) and tests.
pub fn provide(path: impl Into<PathBuf>, bytes: impl Into<std::sync::Arc<[u8]>>) {
    let mut files = MEMORY_FILES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    files.insert(path.into(), bytes.into());
}

/// Lets go of the file [`provide`] holds as `path` (the file system's is read again).
pub fn release(path: &Path) {
    let mut files = MEMORY_FILES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    files.remove(path);
}

/// The bytes [`provide`] holds as `path`.
pub(crate) fn provided(path: &Path) -> Option<std::sync::Arc<[u8]>> {
    let files = MEMORY_FILES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    files.get(path).cloned()
}

/// The bytes of a file held in memory, as a reader.
struct Held(std::sync::Arc<[u8]>, usize);

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.0[self.1.min(self.0.len())..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.1 += n;
        Ok(n)
    }
}

/// Opens `path` for reading if it is a regular file: a pipe with no writer would block
/// forever, and a device such as `/dev/zero` never ends. The content is decompressed when it
/// starts with the gzip magic number. A file held by [`provide`] is read from memory.
pub fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    if let Some(bytes) = provided(path) {
        let gz = bytes.starts_with(&[0x1f, 0x8b]);
        let held = Held(bytes, 0);
        return Ok(if gz { Box::new(Gz(flate2::read::MultiGzDecoder::new(held))) } else { Box::new(held) });
    }
    let meta = std::fs::metadata(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file (a pipe, a device or a socket)" };
        return Err(DataError::new(
            path,
            format!("cannot read: it is {what}; data, weights and inputs are read from files"),
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    let mut buf = std::io::BufReader::new(file);
    let gz = std::io::BufRead::fill_buf(&mut buf)
        .map_err(|e| DataError::new(path, format!("cannot read: {e}")))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz { Box::new(Gz(flate2::read::MultiGzDecoder::new(buf))) } else { Box::new(buf) })
}

/// A gzip stream whose every error (a bad header, a truncated stream) is corrupt data.
struct Gz<R>(R);

impl<R: Read> Read for Gz<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}

/// Reads up to `n` bytes from `r`; fewer only at the end of the stream.
pub fn read_up_to(path: &Path, r: &mut dyn Read, n: u64) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    r.take(n).read_to_end(&mut out).map_err(|e| stream_error(path, e))?;
    Ok(out)
}

/// A read error in words: a broken gzip stream, or the system's message.
pub fn stream_error(path: &Path, e: std::io::Error) -> DataError {
    match e.kind() {
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            DataError::new(path, format!("broken gzip stream: {e}"))
        }
        std::io::ErrorKind::UnexpectedEof => DataError::new(path, "the file ends early"),
        _ => DataError::new(path, format!("cannot read: {e}")),
    }
}

/// The line and column (1-based, in bytes) of byte `at` of `bytes`: where a UTF-8 error is.
pub fn place(bytes: &[u8], at: usize) -> (usize, usize) {
    let good = &bytes[..at.min(bytes.len())];
    let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

/// The lines of a text file (gzipped or plain, at most [`MAX_INPUT_BYTES`]), each at most
/// `max_line` bytes and UTF-8, trimmed; a byte-order mark before the first is skipped.
/// Errors name the file and the line.
pub struct Lines<'p> {
    path: &'p Path,
    reader: std::io::BufReader<std::io::Take<Box<dyn Read>>>,
    max_line: u64,
    number: usize,
    raw: Vec<u8>,
}

impl<'p> Lines<'p> {
    /// Opens `path`, refusing lines longer than `max_line` bytes.
    pub fn open(path: &'p Path, max_line: u64) -> Result<Self, DataError> {
        let reader = std::io::BufReader::new(open(path)?.take(MAX_INPUT_BYTES));
        Ok(Lines { path, reader, max_line, number: 0, raw: Vec::new() })
    }

    /// The next line and its number (1-based), or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<(usize, &str)>, DataError> {
        use std::io::BufRead;
        self.raw.clear();
        let n = (&mut self.reader)
            .take(self.max_line + 1)
            .read_until(b'\n', &mut self.raw)
            .map_err(|e| stream_error(self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        let number = self.number;
        if self.raw.len() as u64 > self.max_line {
            let limit = self.max_line >> 20;
            return Err(DataError::new(self.path, format!("line {number} is longer than {limit} MiB")));
        }
        let text = std::str::from_utf8(&self.raw).map_err(|e| {
            DataError::new(self.path, format!("line {number}: not UTF-8 text (byte {})", e.valid_up_to()))
        })?;
        let text = if number == 1 { text.strip_prefix('\u{feff}').unwrap_or(text) } else { text };
        let text = text.trim();
        if text.contains('\r') {
            return Err(DataError::new(
                self.path,
                format!("line {number}: a carriage return inside the line: the file's lines end in CR alone (old Mac style); convert them to LF or CRLF"),
            ));
        }
        Ok(Some((number, text)))
    }
}

/// Reads a whole file (decompressed when gzipped), at most [`MAX_INPUT_BYTES`].
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = open(path)?;
    let out = read_up_to(path, &mut r, MAX_INPUT_BYTES + 1)?;
    if out.len() as u64 > MAX_INPUT_BYTES {
        return Err(DataError::new(path, "larger than the 16 GiB nnlang reads from one file"));
    }
    Ok(out)
}

/// Examples as rows: `x` is `rows × cols` features, `y` one value per row (a class index)
/// or `y_cols` values per row. Sequences of different lengths are rows of `steps` steps
/// (`cols = steps × features`), each padded with zeros past its length (`lengths`, one per
/// row; empty when the rows are not such sequences).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Inputs, `rows × cols` (empty when they are kept as [`Table::bytes`]).
    pub x: Vec<f32>,
    /// Inputs kept as the file stores them (IDX images: a byte per value, a quarter of the
    /// memory), turned into f32 a batch at a time; `x` is then empty.
    pub bytes: Option<Bytes>,
    /// Inputs left in their file (a `.npy` array too large to hold), read a row at a time;
    /// `x` is then empty.
    pub disk: Option<disk::OnDisk>,
    /// Values per example.
    pub cols: usize,
    /// Targets, `rows × y_cols`.
    pub y: Vec<f32>,
    /// Values per target row (1 for a class index).
    pub y_cols: usize,
    /// Each example's sequence length (empty: not sequences, or all full length).
    pub lengths: Vec<usize>,
    /// Steps per row of padded sequences (0 when `lengths` is empty).
    pub steps: usize,
}

/// Input values stored as bytes: value `i` is `f32::from(data[i])`, times `scale` when set —
/// the same f32 as converting first and scaling after.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bytes {
    /// The values, row-major.
    pub data: Vec<u8>,
    /// `scale = s` of the data block, applied on conversion.
    pub scale: Option<f32>,
}

/// A view of a table's inputs, whichever way they are stored.
#[derive(Clone, Copy, Debug)]
pub enum Inputs<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// Bytes, and the scale applied on conversion.
    Bytes(&'a [u8], Option<f32>),
    /// Values `from..from + len` of a table whose inputs are in their file.
    Disk(&'a disk::OnDisk, usize, usize),
}

impl<'a> Inputs<'a> {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Inputs::F32(x) => x.len(),
            Inputs::Bytes(b, _) => b.len(),
            Inputs::Disk(_, _, len) => *len,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values `from..to`.
    pub fn range(&self, from: usize, to: usize) -> Inputs<'a> {
        match *self {
            Inputs::F32(x) => Inputs::F32(&x[from..to]),
            Inputs::Bytes(b, s) => Inputs::Bytes(&b[from..to], s),
            Inputs::Disk(d, start, len) => {
                assert!(from <= to && to <= len, "inputs {from}..{to} of {len}");
                Inputs::Disk(d, start + from, to - from)
            }
        }
    }

    /// Writes values `from..from + dst.len()` into `dst` as f32.
    pub fn write(&self, from: usize, dst: &mut [f32]) {
        let to = from + dst.len();
        match *self {
            Inputs::F32(x) => dst.copy_from_slice(&x[from..to]),
            Inputs::Bytes(b, scale) => crate::kernels::gemm::dispatch(Widen { src: &b[from..to], scale, dst }),
            Inputs::Disk(d, start, len) => {
                assert!(to <= len, "inputs {from}..{to} of {len}");
                d.write(start + from, dst)
            }
        }
    }

    /// Rows `rows` (of `cols` values each) as f32, one after another in `dst`.
    ///
    /// Rows picked at random from a large table are rarely in any cache, and converting them
    /// one at a time waits on memory row after row. So every cache line of every row is first
    /// read once (loads the processor keeps in flight together), and the rows converted after:
    /// a shuffled batch of 64 MNIST images (50 KB of a 47 MB table) comes in half the time.
    pub fn gather(&self, rows: &[usize], cols: usize, dst: &mut [f32]) {
        assert_eq!(dst.len(), rows.len() * cols, "{} rows of {cols} values", rows.len());
        match *self {
            Inputs::Bytes(b, _) => touch_lines(b, rows, cols, u32::from),
            Inputs::F32(x) => touch_lines(x, rows, cols, f32::to_bits),
            Inputs::Disk(..) => {}
        }
        for (&r, d) in rows.iter().zip(dst.chunks_exact_mut(cols.max(1))) {
            self.write(r * cols, d);
        }
    }

    /// Where inputs read from their file could not be read (the file and what went wrong),
    /// if they could not.
    pub fn failure(&self) -> Option<String> {
        match self {
            Inputs::Disk(d, _, _) => d.failure(),
            _ => None,
        }
    }

    /// Values `from..to` as f32: borrowed when stored so and starting on a cache line, else
    /// converted or copied into `buf` (which starts on one: the kernels load rows as vectors,
    /// and a vector across two lines costs two loads).
    pub fn f32s<'b>(&self, from: usize, to: usize, buf: &'b mut crate::mem::Aligned<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        match *self {
            Inputs::F32(x) if x[from..to].as_ptr().align_offset(64) == 0 => &x[from..to],
            other => {
                buf.resize(to - from, 0.0);
                other.write(from, buf);
                &buf[..]
            }
        }
    }
}

/// Reads one value of every cache line of the given rows (and each row's last), so that the
/// loads are in flight together before the rows are used.
fn touch_lines<T: Copy>(v: &[T], rows: &[usize], cols: usize, bits: impl Fn(T) -> u32) {
    let step = (64 / std::mem::size_of::<T>()).max(1);
    let mut seen = 0;
    for &r in rows {
        let row = &v[r * cols..(r + 1) * cols];
        seen = row.iter().step_by(step).chain(row.last()).fold(seen, |a, &x| a ^ bits(x));
    }
    std::hint::black_box(seen);
}

/// Bytes to f32, times the scale when there is one: compiled for AVX2 where the processor
/// has it (a batch of MNIST images is 50,000 of these a step).
struct Widen<'a> {
    src: &'a [u8],
    scale: Option<f32>,
    dst: &'a mut [f32],
}

impl pulp::WithSimd for Widen<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Widen { src, scale, dst } = self;
        match scale {
            None => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = f32::from(v)),
            Some(s) => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = f32::from(v) * s),
        }
    }
}

impl Table {
    /// Plain rows.
    pub fn new(x: Vec<f32>, cols: usize, y: Vec<f32>, y_cols: usize) -> Table {
        Table { x, bytes: None, disk: None, cols, y, y_cols, lengths: Vec::new(), steps: 0 }
    }

    /// Plain rows whose inputs stay in their file.
    pub fn on_disk(disk: disk::OnDisk, y: Vec<f32>, y_cols: usize) -> Table {
        Table {
            cols: disk.cols(),
            disk: Some(disk),
            x: Vec::new(),
            bytes: None,
            y,
            y_cols,
            lengths: Vec::new(),
            steps: 0,
        }
    }

    /// Plain rows whose inputs are bytes (IDX images), kept as bytes.
    pub fn from_bytes(data: Vec<u8>, cols: usize, y: Vec<f32>, y_cols: usize) -> Table {
        Table {
            x: Vec::new(),
            bytes: Some(Bytes { data, scale: None }),
            disk: None,
            cols,
            y,
            y_cols,
            lengths: Vec::new(),
            steps: 0,
        }
    }

    /// The inputs, however stored.
    pub fn inputs(&self) -> Inputs<'_> {
        match (&self.bytes, &self.disk) {
            (Some(b), _) => Inputs::Bytes(&b.data, b.scale),
            (None, Some(d)) => Inputs::Disk(d, 0, d.rows.len() * self.cols),
            (None, None) => Inputs::F32(&self.x),
        }
    }

    /// The inputs as f32 (converted when kept as bytes).
    pub fn x_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self.inputs() {
            Inputs::F32(x) => std::borrow::Cow::Borrowed(x),
            other => {
                let mut v = vec![0f32; other.len()];
                other.write(0, &mut v);
                std::borrow::Cow::Owned(v)
            }
        }
    }

    /// Converts inputs kept as bytes to f32 (for what works on the values in place).
    fn materialize(&mut self) {
        if self.bytes.is_some() {
            self.x = self.x_f32().into_owned();
            self.bytes = None;
        }
    }

    /// Sequences padded to `steps` steps each (every sequence at most that long).
    pub fn padded(seqs: &sequences::Sequences, steps: usize) -> Table {
        let f = seqs.features;
        let mut x = vec![0f32; seqs.len() * steps * f];
        for (i, row) in x.chunks_exact_mut((steps * f).max(1)).enumerate().take(seqs.len()) {
            let s = seqs.steps(i);
            row[..s.len()].copy_from_slice(s);
        }
        Table {
            x,
            bytes: None,
            disk: None,
            cols: steps * f,
            y: seqs.labels.clone(),
            y_cols: 1,
            lengths: seqs.lengths.clone(),
            steps,
        }
    }

    /// The number of examples.
    pub fn rows(&self) -> usize {
        self.inputs().len().checked_div(self.cols).unwrap_or(0)
    }

    /// The first `n` rows.
    pub fn head(&self, n: usize) -> Table {
        self.slice(0, n.min(self.rows()))
    }

    /// Rows `[from, to)`.
    pub fn slice(&self, from: usize, to: usize) -> Table {
        Table {
            x: match (&self.bytes, &self.disk) {
                (None, None) => self.x[from * self.cols..to * self.cols].to_vec(),
                _ => Vec::new(),
            },
            disk: self.disk.as_ref().map(|d| d.with_rows(d.rows[from..to].to_vec())),
            bytes: self
                .bytes
                .as_ref()
                .map(|b| Bytes { data: b.data[from * self.cols..to * self.cols].to_vec(), scale: b.scale }),
            cols: self.cols,
            y: self.y[from * self.y_cols..to * self.y_cols].to_vec(),
            y_cols: self.y_cols,
            lengths: self.lengths.get(from..to).map_or(Vec::new(), <[usize]>::to_vec),
            steps: self.steps,
        }
    }

    /// The rows in the given order.
    pub fn select(&self, rows: &[usize]) -> Table {
        let mut t = Table {
            x: Vec::with_capacity(if self.bytes.is_some() || self.disk.is_some() { 0 } else { rows.len() * self.cols }),
            disk: self.disk.as_ref().map(|d| d.with_rows(rows.iter().map(|&r| d.rows[r]).collect())),
            bytes: self
                .bytes
                .as_ref()
                .map(|b| Bytes { data: Vec::with_capacity(rows.len() * self.cols), scale: b.scale }),
            cols: self.cols,
            y: Vec::new(),
            y_cols: self.y_cols,
            lengths: Vec::new(),
            steps: self.steps,
        };
        for &r in rows {
            match (&self.bytes, &mut t.bytes) {
                (Some(from), Some(to)) => to.data.extend_from_slice(&from.data[r * self.cols..(r + 1) * self.cols]),
                _ if self.disk.is_some() => {}
                _ => t.x.extend_from_slice(&self.x[r * self.cols..(r + 1) * self.cols]),
            }
            t.y.extend_from_slice(&self.y[r * self.y_cols..(r + 1) * self.y_cols]);
            if let Some(&l) = self.lengths.get(r) {
                t.lengths.push(l);
            }
        }
        t
    }

    /// The rows `first`, then the rows `second` (together every row once), as two tables:
    /// the rows are reordered in place and only `second` is copied out, so that splitting a
    /// large training set never holds it twice.
    pub fn into_split(mut self, first: &[usize], second: &[usize]) -> (Table, Table) {
        let perm: Vec<usize> = first.iter().chain(second).copied().collect();
        let rows = self.rows();
        assert_eq!(perm.len(), rows, "a split takes every row once");
        let cols = self.cols;
        match (&mut self.bytes, &mut self.disk) {
            (Some(b), _) => permute_rows(&mut b.data, cols, &perm),
            (None, Some(d)) => d.rows = perm.iter().map(|&r| d.rows[r]).collect(),
            (None, None) => permute_rows(&mut self.x, cols, &perm),
        }
        permute_rows(&mut self.y, self.y_cols, &perm);
        if !self.lengths.is_empty() {
            permute_rows(&mut self.lengths, 1, &perm);
        }
        let rest = self.slice(first.len(), rows);
        let keep = first.len();
        match (&mut self.bytes, &mut self.disk) {
            (Some(b), _) => b.data.truncate(keep * cols),
            (None, Some(d)) => d.rows.truncate(keep),
            (None, None) => self.x.truncate(keep * cols),
        }
        self.y.truncate(keep * self.y_cols);
        self.lengths.truncate(if self.lengths.is_empty() { 0 } else { keep });
        (self, rest)
    }

    /// Multiplies every input value by `s`.
    pub fn scale(&mut self, s: f32) {
        if let Some(d) = &mut self.disk {
            // Applied when a row is read: the same product.
            d.scale(s);
            return;
        }
        match &mut self.bytes {
            // Applied when the bytes become f32: the same single product.
            Some(b) if b.scale.is_none() => b.scale = Some(s),
            _ => {
                self.materialize();
                self.x.iter_mut().for_each(|v| *v *= s);
            }
        }
    }

    /// The feature vectors statistics are taken over: every row, or every step inside a
    /// sequence (not the padding).
    fn vectors<'a>(&'a self, x: &'a [f32]) -> impl Iterator<Item = &'a [f32]> {
        let padded = !self.lengths.is_empty() && self.steps > 0;
        let width = if padded { self.cols / self.steps } else { self.cols };
        let (steps, lengths) = (self.steps.max(1), &self.lengths);
        x.chunks_exact(width.max(1))
            .enumerate()
            .filter(move |(i, _)| !padded || i % steps < lengths[i / steps])
            .map(|(_, v)| v)
    }

    /// Per-column mean and standard deviation (1 where a column is constant); for padded
    /// sequences, per feature over the steps inside the sequences.
    pub fn moments(&self) -> (Vec<f32>, Vec<f32>) {
        let width = if !self.lengths.is_empty() && self.steps > 0 { self.cols / self.steps } else { self.cols };
        if let Some(d) = &self.disk {
            // Streamed: the rows are never all in memory (and are plain rows, not sequences).
            let mut m = preprocess::Moments::new(width, 1.0);
            d.for_each_row(|_, row| m.add(row));
            return m.finish();
        }
        let x = self.x_f32();
        preprocess::moments(self.vectors(&x), width)
    }

    /// `(x − mean)/std` per column (per feature at every step inside a sequence; the
    /// padding stays zero).
    pub fn standardize(&mut self, mean: &[f32], std: &[f32]) {
        if let Some(d) = &mut self.disk {
            d.standardize(mean, std);
            return;
        }
        self.materialize();
        let width = mean.len().max(1);
        let padded = !self.lengths.is_empty() && self.steps > 0;
        let (steps, lengths) = (self.steps.max(1), &self.lengths);
        for (i, row) in self.x.chunks_exact_mut(width).enumerate() {
            if padded && i % steps >= lengths[i / steps] {
                continue;
            }
            for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
                *v = (*v - m) / s;
            }
        }
    }

    /// The first NaN or infinite feature or target, as (row, column, is_target).
    pub fn first_non_finite(&self) -> Option<(usize, usize, bool)> {
        // Bytes (times a finite scale) are always finite.
        if let Some(i) = self.x.iter().position(|v| !v.is_finite()) {
            return Some((i / self.cols.max(1), i % self.cols.max(1), false));
        }
        if let Some(d) = self.disk.as_ref().filter(|d| !d.known_finite()) {
            let mut first = None;
            d.for_each_row(|r, row| {
                if first.is_none() {
                    first = row.iter().position(|v| !v.is_finite()).map(|c| (r, c, false));
                }
            });
            if first.is_some() {
                return first;
            }
        }
        self.y.iter().position(|v| !v.is_finite()).map(|i| (i / self.y_cols.max(1), i % self.y_cols.max(1), true))
    }

    /// The first row whose label is not a class index in `0..classes`.
    pub fn first_bad_label(&self, classes: usize) -> Option<(usize, f32)> {
        self.y
            .iter()
            .enumerate()
            .find(|(_, &l)| !(l >= 0.0 && (l as usize) < classes && l.fract() == 0.0))
            .map(|(i, &l)| (i, l))
    }
}

/// Reorders the rows (of `width` values) of `v` in place so that row `j` becomes old row
/// `perm[j]`, following each cycle of the permutation with one row of scratch.
fn permute_rows<T: Copy>(v: &mut [T], width: usize, perm: &[usize]) {
    let mut done = vec![false; perm.len()];
    let mut first = Vec::with_capacity(width);
    for start in 0..perm.len() {
        if done[start] {
            continue;
        }
        if perm[start] == start || width == 0 {
            done[start] = true;
            continue;
        }
        first.clear();
        first.extend_from_slice(&v[start * width..(start + 1) * width]);
        let mut j = start;
        loop {
            done[j] = true;
            let src = perm[j];
            if src == start {
                v[j * width..(j + 1) * width].copy_from_slice(&first);
                break;
            }
            v.copy_within(src * width..(src + 1) * width, j * width);
            j = src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Inputs;

    #[test]
    fn a_gathered_batch_is_its_rows_in_order_as_f32() {
        let (rows, cols) = (300, 97);
        let bytes: Vec<u8> = (0..rows * cols).map(|i| (i * 31 % 251) as u8).collect();
        let floats: Vec<f32> = bytes.iter().map(|&b| f32::from(b) - 0.5).collect();
        let picked = [299, 0, 17, 17, 150, 1, 298];
        for inputs in [Inputs::Bytes(&bytes, None), Inputs::Bytes(&bytes, Some(1.0 / 255.0)), Inputs::F32(&floats)] {
            let mut got = vec![f32::NAN; picked.len() * cols];
            inputs.gather(&picked, cols, &mut got);
            for (k, &r) in picked.iter().enumerate() {
                let want: Vec<f32> = (0..cols)
                    .map(|c| match inputs {
                        Inputs::Bytes(b, s) => f32::from(b[r * cols + c]) * s.unwrap_or(1.0),
                        Inputs::F32(x) => x[r * cols + c],
                        Inputs::Disk(..) => unreachable!(),
                    })
                    .collect();
                assert_eq!(got[k * cols..(k + 1) * cols], want[..], "row {r} at {k}");
            }
        }
    }
}
