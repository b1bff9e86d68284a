//! Variable-length sequences in long CSV form (gzipped or plain), one row per step:
//! `seq,t,label,f0,f1,…` — the format of the Japanese Vowels set. `seq` numbers the
//! sequences from 0 with no gaps, `t` the steps of each from 0, in order; every row of a
//! sequence carries its label. A first line with no number in it is a header.
//!
//! Every mistake names the line: a step out of order or missing, a sequence skipped, a label
//! that changes inside a sequence, a row of another width, a sequence longer than allowed.

use super::DataError;
use std::path::Path;

/// Sequences of feature vectors, one after another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequences {
    /// Every step of every sequence, in order: `steps × features` values.
    pub x: Vec<f32>,
    /// Values per step.
    pub features: usize,
    /// Each sequence's first step (an index into the steps) and its length.
    pub starts: Vec<usize>,
    /// Each sequence's length.
    pub lengths: Vec<usize>,
    /// One label per sequence.
    pub labels: Vec<f32>,
}

impl Sequences {
    /// The number of sequences.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The steps of sequence `i`: `lengths[i] × features` values.
    pub fn steps(&self, i: usize) -> &[f32] {
        let (s, n) = (self.starts[i], self.lengths[i]);
        &self.x[s * self.features..(s + n) * self.features]
    }

    /// Keeps the first `n` sequences.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            let end = self.starts[n];
            self.x.truncate(end * self.features);
            self.starts.truncate(n);
            self.lengths.truncate(n);
            self.labels.truncate(n);
        }
    }

    /// The longest sequence's length.
    pub fn longest(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }
}

/// The longest line read.
const MAX_LINE: u64 = 1 << 20;

/// Reads `path`; a sequence longer than `max_len` steps (the longest a plan accepts) is an
/// error naming it.
pub fn read(path: &Path, max_len: Option<usize>) -> Result<Sequences, DataError> {
    let mut lines = super::Lines::open(path, MAX_LINE)?;
    let mut out = Sequences::default();
    let mut width: Option<usize> = None;
    while let Some((line_no, line)) = lines.next_line()? {
        let i = line_no - 1;
        let at = |msg: String| DataError::new(path, format!("line {line_no}: {msg}"));
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let numbers: Vec<Option<f64>> = fields.iter().map(|f| f.parse::<f64>().ok()).collect();
        if i == 0 && numbers.iter().all(Option::is_none) {
            continue; // the header
        }
        if let Some(c) = numbers.iter().position(Option::is_none) {
            return Err(at(format!("column {}: `{}` is not a number", c + 1, fields[c])));
        }
        let v: Vec<f64> = numbers.into_iter().flatten().collect();
        if v.len() < 4 {
            return Err(at(format!("{} columns; a row is seq, t, label and at least one feature", v.len())));
        }
        let w = *width.get_or_insert(v.len());
        if v.len() != w {
            return Err(at(format!("{} columns, the rows before it {w}", v.len())));
        }
        let index = |name: &str, x: f64| -> Result<usize, DataError> {
            if x >= 0.0 && x.fract() == 0.0 && x < 1e15 {
                Ok(x as usize)
            } else {
                Err(at(format!("`{name}` must be a whole number from 0, found {x}")))
            }
        };
        let (seq, t) = (index("seq", v[0])?, index("t", v[1])?);
        let label = v[2];
        if let Some(c) = v[3..].iter().position(|x| !x.is_finite()) {
            return Err(at(format!("feature {c} is {} (not a finite number)", v[3 + c])));
        }
        if !label.is_finite() {
            return Err(at(format!("the label is {label} (not a finite number)")));
        }
        let current = out.len();
        if current > 0 && seq == current - 1 {
            // The next step of the current sequence.
            let expected = out.lengths[current - 1];
            if t != expected {
                return Err(at(format!(
                    "sequence {seq}: step {t} where step {expected} comes next (steps run 0, 1, 2, … in order)"
                )));
            }
            if label as f32 != out.labels[current - 1] {
                return Err(at(format!(
                    "sequence {seq}: label {label} at step {t}, but the sequence began with label {}",
                    out.labels[current - 1]
                )));
            }
            out.lengths[current - 1] += 1;
        } else if seq == current {
            // A new sequence.
            if t != 0 {
                return Err(at(format!("sequence {seq} starts at step {t}; its first step is 0")));
            }
            out.starts.push(out.x.len() / (w - 3));
            out.lengths.push(1);
            out.labels.push(label as f32);
        } else if seq < current {
            return Err(at(format!(
                "a row of sequence {seq} after sequence {}: rows are sorted by seq, then t",
                current - 1
            )));
        } else if out.is_empty() {
            return Err(at(format!(
                "the first row is of sequence {seq}: sequences are numbered from 0, each after the one before"
            )));
        } else {
            return Err(at(format!(
                "sequence {seq} follows sequence {}: sequence {current} has no rows (an empty sequence)",
                current - 1
            )));
        }
        if let Some(max) = max_len {
            let len = out.lengths[out.len() - 1];
            if len > max {
                return Err(at(format!("sequence {seq} is longer than the {max} steps the model accepts")));
            }
        }
        out.x.extend(v[3..].iter().map(|&x| x as f32));
        out.features = w - 3;
    }
    if out.is_empty() {
        return Err(DataError::new(path, "no sequences (no rows of data)"));
    }
    Ok(out)
}
