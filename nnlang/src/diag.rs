//! Diagnostics: what every stage reports, and how it is shown to a person.
//!
//! Stages build [`Diagnostic`]s from spans they own (the parser, lowering) or from node ids
//! that the driver maps to spans (shape inference). Rendering is done once, here, with
//! `codespan-reporting`: `file:line:col`, the source line, a caret under the span, then notes
//! and help. The rendered text is part of the interface and is snapshot-tested.

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;

/// A byte range in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span that covers both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Shortest text that reads back as the same f64.
pub fn fmt_f64(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// A number as a person writes it: `12.5`, `3`, `0.001`.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// `1,234,567`
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be compiled.
    Error,
    /// Compiled, but probably not what was meant.
    Warning,
}

/// A place in the source a diagnostic points at, with what to say there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// The bytes pointed at.
    pub span: Span,
    /// What is said under them.
    pub message: String,
    /// The place of the problem itself (others give context).
    pub primary: bool,
}

/// One error or warning: a message, the places it points at, notes and suggested fixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Whether it stops compilation.
    pub severity: Severity,
    /// The one-line summary (`error: …`).
    pub message: String,
    /// The places in the source, the primary one first.
    pub labels: Vec<Label>,
    /// `= note:` lines: the arithmetic or the facts behind the message.
    pub notes: Vec<String>,
    /// `= help:` lines: what would fix it.
    pub help: Vec<String>,
}

impl Diagnostic {
    /// An error pointing at `span`, with `label` written under the caret.
    pub fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            labels: vec![Label { span, message: label.into(), primary: true }],
            notes: Vec::new(),
            help: Vec::new(),
        }
    }

    /// A warning pointing at `span`, labelled `label`.
    pub fn warning(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(message, span, label) }
    }

    /// A secondary label elsewhere in the source ("defined here").
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label { span, message: message.into(), primary: false });
        self
    }

    /// Adds a `note:` line.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Adds a `help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    /// Labels each use of a block that led to this problem (innermost first, as
    /// the IR's `Graph::uses` lists them): a mistake inside a block names the line in the
    /// block and the use that instantiated it.
    pub fn in_uses(mut self, uses: &[(Span, &str)]) -> Self {
        for (span, block) in uses {
            let message = format!("in this use of `{block}`");
            if !self.labels.iter().any(|l| l.span == *span && l.message == message) {
                self.labels.push(Label { span: *span, message, primary: false });
            }
        }
        self
    }

    /// Adds "did you mean `x`?" when one of `candidates` is close to `name`.
    pub fn with_suggestion<'a>(self, name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(name, candidates) {
            Some(best) => self.with_help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn to_codespan(&self) -> cs::Diagnostic<()> {
        let severity = match self.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let labels = self
            .labels
            .iter()
            .map(|l| {
                let style = if l.primary { cs::LabelStyle::Primary } else { cs::LabelStyle::Secondary };
                cs::Label::new(style, (), l.span.start..l.span.end).with_message(&l.message)
            })
            .collect();
        let notes = self
            .notes
            .iter()
            .map(|n| format!("note: {n}"))
            .chain(self.help.iter().map(|h| format!("help: {h}")))
            .collect();
        cs::Diagnostic::new(severity).with_message(&self.message).with_labels(labels).with_notes(notes)
    }

    /// Renders the diagnostic as plain text against the source it refers to.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let file = SimpleFile::new(file_name, source);
        let config = term::Config { chars: term::Chars::ascii(), ..term::Config::default() };
        let clamp = |s: Span| {
            let end = s.end.min(source.len());
            Span::new(s.start.min(end), end)
        };
        let mut d = self.clone();
        for l in &mut d.labels {
            l.span = clamp(l.span);
        }
        match term::emit_into_string(&config, &file, &d.to_codespan()) {
            Ok(text) => text,
            // Only reachable with spans outside the file; still say what was wrong.
            Err(_) => format!("error: {}\n", self.message),
        }
    }
}

/// Folds diagnostics that say the same thing at the same place (one mistake inside a block
/// that is used several times) into one, keeping every other label (each use).
pub fn merge_repeats(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len());
    for d in diags {
        let same = |e: &Diagnostic| {
            e.severity == d.severity
                && e.message == d.message
                && e.notes == d.notes
                && e.help == d.help
                && e.labels.first() == d.labels.first()
        };
        match out.iter_mut().find(|e| same(e)) {
            Some(e) => {
                for l in d.labels.into_iter().skip(1) {
                    if !e.labels.contains(&l) {
                        e.labels.push(l);
                    }
                }
            }
            None => out.push(d),
        }
    }
    out
}

/// Renders a list of diagnostics one after another, then a closing count.
pub fn render_all(diags: &[Diagnostic], file_name: &str, source: &str) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.render(file_name, source));
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        let s = if errors == 1 { "" } else { "s" };
        out.push_str(&format!("error: {file_name}: {errors} error{s} found\n"));
    }
    out
}

/// The candidate closest to `name`, if it is close enough to be a plausible misspelling.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let score = strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase());
        let dist = strsim::damerau_levenshtein(name, c);
        let close = score >= 0.85 || dist <= 1 || (dist <= 2 && c.len() > 4);
        if close && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_names_only() {
        let layers = ["dense", "conv", "relu", "softmax", "maxpool"];
        assert_eq!(did_you_mean("rleu", layers), Some("relu"));
        assert_eq!(did_you_mean("convv", layers), Some("conv"));
        assert_eq!(did_you_mean("softmx", layers), Some("softmax"));
        assert_eq!(did_you_mean("Dense", layers), Some("dense"));
        assert_eq!(did_you_mean("lstm", layers), None);
        assert_eq!(did_you_mean("relu", layers), None, "an exact name is not a suggestion");
    }

    #[test]
    fn renders_file_line_column_caret_notes_and_help() {
        let src = "model M {\n    x -> rleu\n}\n";
        let d = Diagnostic::error("unknown layer `rleu`", Span::new(19, 23), "not a layer")
            .with_note("a note")
            .with_help("did you mean `relu`?");
        let text = d.render("m.nn", src);
        assert_eq!(
            text,
            "error: unknown layer `rleu`\n  --> m.nn:2:10\n  |\n2 |     x -> rleu\n  |          ^^^^ not a layer\n  |\n  = note: a note\n  = help: did you mean `relu`?\n\n"
        );
    }
}
