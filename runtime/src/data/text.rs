//! Character text for character-level models: a text file (gzipped or plain, UTF-8) read
//! whole, its vocabulary (the distinct characters, in code-point order), and the text as
//! indices into it. A vocabulary is saved beside a model's weights, so that sampling and new
//! text use the same indices; a character outside it is an error naming its line and column.

use super::{read_maybe_gz, DataError};
use std::path::Path;

/// The distinct characters of a text, in code-point order; a character's index is its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    /// The characters, in id order.
    pub chars: Vec<char>,
}

impl Vocabulary {
    /// The vocabulary of `text`.
    pub fn of(text: &str) -> Vocabulary {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocabulary { chars }
    }

    /// The number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<usize> {
        self.chars.binary_search(&c).ok()
    }

    /// `text` as ids; a character outside the vocabulary is an error naming its line and
    /// column (1-based) in `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let (mut line, mut col) = (1, 0);
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            col += 1;
            let Some(i) = self.id(c) else {
                let n = self.len();
                return Err(format!(
                    "line {line}, column {col}: the character {c:?} is not in the model's vocabulary of {n} characters"
                ));
            };
            out.push(i as u32);
            if c == '\n' {
                line += 1;
                col = 0;
            }
        }
        Ok(out)
    }

    /// Ids back to text; an id outside the vocabulary is `None`.
    pub fn decode(&self, ids: &[u32]) -> Option<String> {
        ids.iter().map(|&i| self.chars.get(i as usize).copied()).collect()
    }

    /// The vocabulary as saved beside the weights: JSON `{"chars": "…"}` (the characters in
    /// order, as one string).
    pub fn to_json(&self) -> String {
        let s: String = self.chars.iter().collect();
        let mut escaped = String::new();
        for c in s.chars() {
            match c {
                '"' => escaped.push_str("\\\""),
                '\\' => escaped.push_str("\\\\"),
                '\n' => escaped.push_str("\\n"),
                '\r' => escaped.push_str("\\r"),
                '\t' => escaped.push_str("\\t"),
                c if (c as u32) < 0x20 => escaped.push_str(&format!("\\u{:04x}", c as u32)),
                c => escaped.push(c),
            }
        }
        format!("{{\"chars\": \"{escaped}\"}}\n")
    }
}

/// Reads a text file whole (at most 16 GiB, decompressed when gzipped); it must be UTF-8.
pub fn read(path: &Path) -> Result<String, DataError> {
    let bytes = read_maybe_gz(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let (line, col) = super::place(e.as_bytes(), at);
        DataError::new(path, format!("line {line}, column {col}: not UTF-8 text (byte 0x{:02x})", e.as_bytes()[at]))
    })
}
