//! Numeric CSV (gzipped or plain): one example per line, one column of which is the label.
//! A first line none of whose fields is a number is a header; a first line with some numbers
//! and some not is an error (a typo, not a header). A byte-order mark at the start is skipped.

use super::{DataError, Table};
use std::path::Path;

/// Reads `path`; `label` is the label's column (default: the last).
pub fn read(path: &Path, label: Option<usize>) -> Result<Table, DataError> {
    read_rows(path, label, None)
}

/// The longest line read.
const MAX_LINE: u64 = 64 << 20;

/// Reads at most the first `rows` examples (the rest of the file is not read). Inputs of more
/// than [`super::disk::in_memory_limit`] bytes are not held: past that, the values go to a
/// temporary binary copy (f32, removed when the table is dropped — at once on Unix, where the
/// open file outlives its name), which training reads a batch's rows at a time.
pub fn read_rows(path: &Path, label: Option<usize>, rows: Option<usize>) -> Result<Table, DataError> {
    let limit = super::disk::in_memory_limit();
    let mut table = Table { y_cols: 1, ..Table::default() };
    let mut spill: Option<Spill> = None;
    let cols = parse(path, label, rows, &mut table.y, |features| {
        if let Some(s) = &mut spill {
            return s.push(features);
        }
        table.x.extend_from_slice(features);
        if (table.x.len() as u64) * 4 > limit {
            let mut s = Spill::new(path)?;
            s.push(&table.x)?;
            table.x = Vec::new();
            spill = Some(s);
        }
        Ok(())
    })?;
    table.cols = cols;
    if let Some(s) = spill {
        let rows = table.y.len();
        table.disk = Some(s.finish(cols, rows)?);
    }
    Ok(table)
}

/// Values written to a temporary f32 file as they are parsed.
struct Spill {
    csv: std::path::PathBuf,
    temp: std::path::PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl Spill {
    fn new(csv: &Path) -> Result<Spill, DataError> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = std::env::temp_dir().join(format!("nnlang-csv-{}-{n}.f32", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| DataError::new(csv, format!("cannot create its binary copy {}: {e}", temp.display())))?;
        Ok(Spill { csv: csv.to_path_buf(), temp, out: std::io::BufWriter::with_capacity(1 << 20, file) })
    }

    fn push(&mut self, values: &[f32]) -> Result<(), DataError> {
        use std::io::Write;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.out.write_all(&bytes).map_err(|e| self.failed(e))
    }

    fn failed(&self, e: std::io::Error) -> DataError {
        let _ = std::fs::remove_file(&self.temp);
        DataError::new(&self.csv, format!("cannot write its binary copy {}: {e}", self.temp.display()))
    }

    fn finish(self, cols: usize, rows: usize) -> Result<super::disk::OnDisk, DataError> {
        let file = match self.out.into_inner() {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&self.temp);
                return Err(DataError::new(
                    &self.csv,
                    format!("cannot write its binary copy {}: {}", self.temp.display(), e.error()),
                ));
            }
        };
        // Every value was checked finite as it was parsed.
        let disk = super::disk::OnDisk::from_file(file, &self.csv, 0, super::disk::Element::F32, cols, rows, None)
            .map(super::disk::OnDisk::checked_finite);
        // The open file stays readable; its name goes now (on Unix), so that nothing is left
        // behind however the process ends; elsewhere when the table goes.
        match disk {
            Ok(d) if !cfg!(unix) => Ok(d.remove_when_dropped(&self.temp)),
            other => {
                let _ = std::fs::remove_file(&self.temp);
                other
            }
        }
    }
}

/// Parses the lines: each example's label into `y`, its features to `features`; returns the
/// number of features.
fn parse(
    path: &Path,
    label: Option<usize>,
    rows: Option<usize>,
    y: &mut Vec<f32>,
    mut features: impl FnMut(&[f32]) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let mut lines = super::Lines::open(path, MAX_LINE)?;
    let mut width = None;
    let mut x = Vec::new();
    loop {
        if rows.is_some_and(|n| y.len() >= n) {
            break;
        }
        let Some((number, line)) = lines.next_line()? else { break };
        let i = number - 1;
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Result<Vec<f32>, usize> =
            fields.iter().enumerate().map(|(c, f)| f.parse::<f32>().map_err(|_| c)).collect();
        let values = match parsed {
            Ok(v) => v,
            // A header: not one field is a number.
            Err(_) if i == 0 && fields.iter().all(|f| f.parse::<f32>().is_err()) => continue,
            Err(c) => {
                return Err(DataError::new(
                    path,
                    format!("line {}, column {}: `{}` is not a number", i + 1, c + 1, fields[c]),
                ))
            }
        };
        let w = *width.get_or_insert(values.len());
        if values.len() != w {
            return Err(DataError::new(
                path,
                format!("line {} has {} columns, the lines before it {w}", i + 1, values.len()),
            ));
        }
        let col = label.unwrap_or(w - 1);
        if col >= w {
            return Err(DataError::new(
                path,
                format!("label column {col} does not exist: lines have {w} columns (0..{})", w - 1),
            ));
        }
        x.clear();
        for (c, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                let text = fields[c];
                let why = if v.is_nan() || text.to_ascii_lowercase().trim_start_matches(['+', '-']).starts_with("inf") {
                    format!("{v} is not a finite number")
                } else {
                    format!("`{text}` is beyond the range of a 32-bit float (±3.4e38)")
                };
                return Err(DataError::new(path, format!("line {}, column {}: {why}", i + 1, c + 1)));
            }
            if c == col {
                y.push(v);
            } else {
                x.push(v);
            }
        }
        features(&x)?;
    }
    if y.is_empty() {
        return Err(DataError::new(path, "no rows of data"));
    }
    Ok(width.unwrap_or(1) - 1)
}
