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

/// Reads at most the first `rows` examples (the rest of the file is not read).
pub fn read_rows(path: &Path, label: Option<usize>, rows: Option<usize>) -> Result<Table, DataError> {
    let mut lines = super::Lines::open(path, MAX_LINE)?;
    let mut table = Table { y_cols: 1, ..Table::default() };
    let mut width = None;
    loop {
        if rows.is_some_and(|n| table.y.len() >= n) {
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
        for (c, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                return Err(DataError::new(
                    path,
                    format!("line {}, column {}: {v} is not a finite number", i + 1, c + 1),
                ));
            }
            if c == col {
                table.y.push(v);
            } else {
                table.x.push(v);
            }
        }
        table.cols = w - 1;
    }
    if table.y.is_empty() {
        return Err(DataError::new(path, "no rows of data"));
    }
    Ok(table)
}
