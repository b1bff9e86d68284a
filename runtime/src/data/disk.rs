//! Inputs left in their file: a `.npy` array larger than [`in_memory_limit`] is not read into
//! memory; its rows are read when a batch gathers them (positioned reads through the
//! operating system's page cache, which the process's resident memory does not count), and
//! converted to f32 — scaled and standardized as the data block says — on the way. Splits,
//! `--limit` and selections are lists of the file's row numbers, so nothing is copied.
//!
//! A read that fails mid-training (the file truncated or its disk gone) is remembered and
//! reported by [`OnDisk::failure`]; the rows it could not read are NaN, which the training
//! loop's check stops on — and then names the failure rather than the NaN.

use super::DataError;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Arrays whose inputs take more bytes than this stay in their file (`NNLANG_IN_MEMORY_MAX`
/// overrides it, in bytes): 1 GiB.
pub const IN_MEMORY_MAX: u64 = 1 << 30;

/// The size above which a `.npy` array's inputs stay in their file.
pub fn in_memory_limit() -> u64 {
    std::env::var("NNLANG_IN_MEMORY_MAX").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(IN_MEMORY_MAX)
}

/// How the file stores each value (little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `|u1`
    U8,
    /// `<i4`
    I32,
    /// `<i8`
    I64,
}

impl Element {
    /// The element of a `.npy` type string (`<f4`, `|u1`, …); big-endian types are read into
    /// memory instead.
    pub fn of(descr: &str) -> Option<Element> {
        match descr {
            "<f4" => Some(Element::F32),
            "<f8" => Some(Element::F64),
            "|u1" | "<u1" => Some(Element::U8),
            "<i4" => Some(Element::I32),
            "<i8" => Some(Element::I64),
            _ => None,
        }
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Element::U8 => 1,
            Element::F32 | Element::I32 => 4,
            Element::F64 | Element::I64 => 8,
        }
    }

    fn value(self, b: &[u8]) -> f32 {
        let a = |n: usize| -> [u8; 8] {
            let mut x = [0u8; 8];
            x[..n].copy_from_slice(&b[..n]);
            x
        };
        match self {
            Element::U8 => f32::from(b[0]),
            Element::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Element::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Element::F64 => f64::from_le_bytes(a(8)) as f32,
            Element::I64 => i64::from_le_bytes(a(8)) as f32,
        }
    }
}

/// A table's inputs in their file: which of the file's rows, in what order, and what is done
/// to each value when it is read.
#[derive(Clone)]
pub struct OnDisk {
    path: PathBuf,
    file: Arc<File>,
    /// Where the first value is.
    offset: u64,
    element: Element,
    cols: usize,
    /// The table's rows, as row numbers of the file.
    pub rows: Vec<usize>,
    /// Multiplies every value, in order, as the data block's `scale` does in memory.
    scales: Vec<f32>,
    /// `(v − mean)/std` per column, after the scales.
    standardize: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    failure: Arc<Mutex<Option<String>>>,
    /// Every value is known to be finite (bytes, or values checked as they were written), so
    /// loading need not read the file once more to look for NaN.
    finite: bool,
    /// A temporary file to remove when the last view of it goes (where an open file cannot
    /// lose its name: not on Unix).
    temp: Option<Arc<Remove>>,
}

/// Removes a file when dropped.
#[derive(Debug)]
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::fmt::Debug for OnDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnDisk({}, {} rows of {} {:?})", self.path.display(), self.rows.len(), self.cols, self.element)
    }
}

impl PartialEq for OnDisk {
    fn eq(&self, o: &Self) -> bool {
        self.path == o.path
            && self.offset == o.offset
            && self.element == o.element
            && self.cols == o.cols
            && self.rows == o.rows
            && self.scales == o.scales
            && self.standardize == o.standardize
    }
}

impl OnDisk {
    /// The first `rows` rows (all when `None`) of `total` rows of `cols` values stored from
    /// byte `offset` of an open `file` (named `path` in messages).
    pub fn from_file(
        file: File,
        path: &Path,
        offset: u64,
        element: Element,
        cols: usize,
        total: usize,
        rows: Option<usize>,
    ) -> Result<OnDisk, DataError> {
        let len = file.metadata().map_err(|e| DataError::new(path, format!("cannot read: {e}")))?.len();
        let needed = (total as u64).saturating_mul(cols as u64).saturating_mul(element.size() as u64);
        if len < offset.saturating_add(needed) {
            return Err(DataError::new(
                path,
                format!("the file ends before the {total} rows of {cols} values its header promises ({len} bytes)"),
            ));
        }
        Ok(OnDisk {
            path: path.to_path_buf(),
            file: Arc::new(file),
            offset,
            element,
            cols,
            rows: (0..rows.map_or(total, |r| r.min(total))).collect(),
            scales: Vec::new(),
            standardize: None,
            failure: Arc::new(Mutex::new(None)),
            finite: element == Element::U8,
            temp: None,
        })
    }

    /// Whether every value is known to be finite without reading the file: bytes (the data
    /// block's scale and statistics are finite), or values checked when they were written.
    pub fn known_finite(&self) -> bool {
        self.finite
    }

    /// Marks the values as checked finite (by whoever wrote the file).
    pub fn checked_finite(mut self) -> OnDisk {
        self.finite = true;
        self
    }

    /// Removes the temporary file `temp` when the last view of these rows goes.
    pub fn remove_when_dropped(mut self, temp: &Path) -> OnDisk {
        self.temp = Some(Arc::new(Remove(temp.to_path_buf())));
        self
    }

    /// The same file, with other rows.
    pub fn with_rows(&self, rows: Vec<usize>) -> OnDisk {
        OnDisk { rows, ..self.clone() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Every value times `s` from now on.
    pub fn scale(&mut self, s: f32) {
        self.scales.push(s);
    }

    /// Every value standardized with these per-column statistics from now on.
    pub fn standardize(&mut self, mean: &[f32], std: &[f32]) {
        self.standardize = Some(Arc::new((mean.to_vec(), std.to_vec())));
    }

    /// The first read that failed, if one did: the file and what went wrong.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Row `r` of the table as f32 into `dst` (`cols` values); NaN, and the failure
    /// remembered, when it cannot be read.
    pub fn read_row(&self, r: usize, dst: &mut [f32]) {
        thread_local! {
            static RAW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let size = self.element.size();
        let at = self.offset + (self.rows[r] as u64) * (self.cols * size) as u64;
        let read = RAW.with_borrow_mut(|raw| {
            raw.resize(self.cols * size, 0);
            read_at(&self.file, raw, at)?;
            for (d, b) in dst.iter_mut().zip(raw.chunks_exact(size)) {
                let mut v = self.element.value(b);
                for s in &self.scales {
                    v *= s;
                }
                *d = v;
            }
            Ok::<(), std::io::Error>(())
        });
        if let Err(e) = read {
            if let Ok(mut f) = self.failure.lock() {
                f.get_or_insert_with(|| format!("{}: cannot read row {} ({e})", self.path.display(), self.rows[r]));
            }
            dst.fill(f32::NAN);
            return;
        }
        if let Some(st) = &self.standardize {
            for ((v, m), s) in dst.iter_mut().zip(&st.0).zip(&st.1) {
                *v = (*v - m) / s;
            }
        }
    }

    /// Values `from..from + dst.len()` of the table (row-major) into `dst`.
    pub fn write(&self, from: usize, dst: &mut [f32]) {
        let cols = self.cols.max(1);
        // Scratch for a row only partly wanted (whole rows are read in place: the common case,
        // a batch's rows one at a time).
        let mut row = Vec::new();
        let mut at = from;
        let mut out = 0;
        while out < dst.len() {
            let (r, c) = (at / cols, at % cols);
            let n = (cols - c).min(dst.len() - out);
            if c == 0 && n == cols {
                self.read_row(r, &mut dst[out..out + cols]);
            } else {
                row.resize(cols, 0.0);
                self.read_row(r, &mut row);
                dst[out..out + n].copy_from_slice(&row[c..c + n]);
            }
            out += n;
            at += n;
        }
    }

    /// Every row in turn, as f32, a few thousand at a time (for statistics and checks).
    pub fn for_each_row(&self, mut f: impl FnMut(usize, &[f32])) {
        let cols = self.cols.max(1);
        let per = (1 << 20) / cols.max(1) + 1;
        let mut buf = vec![0f32; per * cols];
        let mut start = 0;
        while start < self.rows.len() {
            let n = per.min(self.rows.len() - start);
            self.write(start * cols, &mut buf[..n * cols]);
            for (i, row) in buf[..n * cols].chunks_exact(cols).enumerate() {
                f(start + i, row);
            }
            start += n;
        }
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

/// Elsewhere (WebAssembly) there is no file to read from: a file never opens there, so this
/// is never reached with one; it answers as a failed read would.
#[cfg(not(any(unix, windows)))]
fn read_at(_: &File, _: &mut [u8], _: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, at) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
