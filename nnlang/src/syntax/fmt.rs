//! `nnlangc fmt`: the one layout of nnlang source.
//!
//! The layout, as the shipped examples write it:
//!
//! - four spaces per level; one item after another with one blank line between; inside a
//!   body, the blank lines the author left (at most one in a row), none after `{` or before
//!   `}`;
//! - one statement (`input`, `let`, the output) and one recipe setting per line, without `;`
//!   or `,` between them; `=` of consecutive one-line `let`s and of consecutive one-line
//!   settings of a block aligned (a blank line or a setting that spans lines starts a new
//!   run), `~` of consecutive samples likewise, and the `{` of consecutive one-line
//!   sub-blocks (`stage coarse { … }`);
//! - a sub-block stays on one line when it was written on one line and fits;
//! - spaces around `->`, `=`, `~` and the operators, after `,` and `:`; none inside brackets;
//! - a chain keeps the line breaks its author put between stages (always before the `->`);
//!   a line of a chain longer than 100 columns is broken before each of its `->`. A broken
//!   chain's `->` lines up under its first `->` (or two columns in, when the first stage is
//!   alone on its line); inside `[…]`, under the chain's first stage;
//! - comments stay where they were: a comment after code on its line stays at the end of that
//!   line — the comments of one statement, and of consecutive lines, lined up from column 41
//!   on (or two spaces after the longest code); after a header or a `}`, two spaces after
//!   it — and one on its own line keeps its own line. A statement with a comment inside it where a line cannot end (within a call's
//!   arguments, say) is left exactly as written.
//!
//! Formatting never changes what a program means: the formatted text parses to the same AST
//! (spans aside), and `fmt(fmt(x)) == fmt(x)`; both are tested on every example and on the
//! fuzz corpus.

use super::parse::{Grammar, Rule};
use crate::diag::{Diagnostic, Span};
use pest::iterators::Pair;
use pest::Parser;

/// Lines are broken to stay within this many columns where the layout allows.
pub const WIDTH: usize = 100;
/// A comment after code starts at this column (counted from 0) at the earliest.
const COMMENT_COLUMN: usize = 40;
const INDENT: usize = 4;

/// The source in nnlang's one layout; a source that does not parse gets the parser's
/// diagnostic (the same as `check` gives).
pub fn format(source: &str) -> Result<String, Diagnostic> {
    super::parse(source)?;
    let mut pairs = Grammar::parse(Rule::file, source)
        .map_err(|_| Diagnostic::error("the file does not parse", Span::new(0, 0), "here"))?;
    let Some(root) = pairs.next() else { return Ok(String::new()) };
    let f = Fmt { src: source, groups: std::cell::Cell::new(0) };
    let lines = f.file(root);
    Ok(render(&lines))
}

/// A construct holds a comment where no line can end: it is written as it was.
struct Raw;

/// One output line: its text (indentation included, except for the first line of a piece
/// that continues a line) and the comment at its end.
#[derive(Clone, Debug, Default)]
struct Line {
    text: String,
    comment: Option<String>,
    /// The statement it belongs to (0: none): the comments at the ends of one statement's
    /// lines line up.
    group: u32,
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn code_width(l: &Line) -> usize {
    let text = l.text.trim_end();
    width(text.rsplit('\n').next().unwrap_or(text))
}

fn render(lines: &[Line]) -> String {
    // The column of each comment after code: one column for a run of consecutive lines with
    // comments, and for all the comments of one statement; from COMMENT_COLUMN on.
    let mut column = vec![0usize; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        if lines[i].comment.is_none() || lines[i].text.trim().is_empty() {
            i += 1;
            continue;
        }
        // A header's or a closing brace's comment: two spaces after it.
        if lines[i].group == 0 {
            column[i] = code_width(&lines[i]) + 2;
            i += 1;
            continue;
        }
        let mut run = vec![i];
        let mut j = i + 1;
        while j < lines.len() {
            let l = &lines[j];
            let same = l.group != 0 && l.group == lines[i].group;
            if l.comment.is_some()
                && l.group != 0
                && !l.text.trim().is_empty()
                && (same || run.last() == Some(&(j - 1)))
            {
                run.push(j);
            } else if !same {
                break;
            }
            j += 1;
        }
        let col = run.iter().map(|&k| code_width(&lines[k]) + 2).max().unwrap_or(0).max(COMMENT_COLUMN);
        for &k in &run {
            column[k] = col;
        }
        i = run.last().map_or(j, |&k| k + 1);
    }
    let mut out = String::new();
    for (l, col) in lines.iter().zip(column) {
        let text = l.text.trim_end();
        out.push_str(text);
        if let Some(c) = &l.comment {
            if text.trim().is_empty() {
                out.push_str(c);
            } else {
                out.push_str(&" ".repeat(col.saturating_sub(code_width(l)).max(2)));
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    // One newline at the end; none for an empty file.
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed);
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// A comment in the text between two pieces of code.
#[derive(Clone, Debug)]
struct Comment {
    text: String,
    /// It follows code on the same line.
    trailing: bool,
    /// A blank line comes before it.
    blank_before: bool,
}

/// What lies between two pieces of code: comments, and the line breaks after the last one.
#[derive(Clone, Debug, Default)]
struct Gap {
    comments: Vec<Comment>,
    /// Line breaks after the last comment (or in the whole gap when it has none).
    newlines_after: usize,
    /// Where the last punctuation (`)`, `,`, `{`…) ends, if there is any.
    code_end: Option<usize>,
    /// Where the first punctuation ends.
    first_code_end: Option<usize>,
}

impl Gap {
    fn has_break(&self) -> bool {
        self.newlines_after > 0 || !self.comments.is_empty()
    }
}

/// A piece of formatted text: its first line continues the line it is put on.
#[derive(Clone, Debug, Default)]
struct Piece {
    lines: Vec<Line>,
}

impl Piece {
    fn text(s: impl Into<String>) -> Self {
        Piece { lines: vec![Line { text: s.into(), comment: None, group: 0 }] }
    }
    fn push(&mut self, s: &str) {
        match self.lines.last_mut() {
            Some(l) => l.text.push_str(s),
            None => self.lines.push(Line { text: s.to_string(), comment: None, group: 0 }),
        }
    }
    fn append(&mut self, mut other: Piece) {
        if other.lines.is_empty() {
            return;
        }
        let first = other.lines.remove(0);
        self.push(&first.text);
        if let Some(l) = self.lines.last_mut() {
            l.comment = first.comment;
        }
        self.lines.extend(other.lines);
    }
    fn single(&self) -> bool {
        self.lines.len() <= 1 && self.lines.iter().all(|l| l.comment.is_none() && !l.text.contains('\n'))
    }
    /// The column after the last character, the piece having started at `col`.
    fn end_col(&self, col: usize) -> usize {
        match self.lines.len() {
            0 => col,
            1 => col + width(&self.lines[0].text),
            _ => self.lines.last().map_or(col, |l| width(&l.text)),
        }
    }
    /// The widest line, the piece having started at `col`.
    fn max_width(&self, col: usize) -> usize {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 { col + width(&l.text) } else { width(&l.text) })
            .max()
            .unwrap_or(col)
    }
}

const ATOMIC: &[Rule] = &[
    Rule::ident,
    Rule::keyword,
    Rule::kw_model,
    Rule::kw_input,
    Rule::kw_let,
    Rule::kw_as,
    Rule::kw_train,
    Rule::kw_on,
    Rule::kw_data,
    Rule::kw_search,
    Rule::kw_ensemble,
    Rule::kw_block,
    Rule::kw_ids,
    Rule::boolean,
    Rule::number,
    Rule::string,
    Rule::string_body,
];

struct Fmt<'s> {
    src: &'s str,
    /// The last statement's group number.
    groups: std::cell::Cell<u32>,
}

fn children<'a>(p: &Pair<'a, Rule>) -> Vec<Pair<'a, Rule>> {
    p.clone().into_inner().filter(|c| c.as_rule() != Rule::EOI).collect()
}

impl<'s> Fmt<'s> {
    // ---- positions and gaps ------------------------------------------------------------

    fn start(&self, p: &Pair<Rule>) -> usize {
        p.as_span().start()
    }

    /// Where the code of `p` ends: pest's spans of rules ending in an optional part take the
    /// white space and comments after them too.
    fn end(&self, p: &Pair<Rule>) -> usize {
        let sp = p.as_span();
        if ATOMIC.contains(&p.as_rule()) {
            return sp.end();
        }
        let from = children(p).last().map_or(sp.start(), |c| self.end(c));
        self.gap(from, sp.end()).code_end.unwrap_or(from)
    }

    /// Reads the text between two pieces of code: white space, punctuation and comments.
    fn gap(&self, a: usize, b: usize) -> Gap {
        let bytes = self.src.as_bytes();
        let mut g = Gap::default();
        // Line breaks since the last comment (or the gap's start), and since the last code.
        let (mut i, mut newlines, mut since_code) = (a, 0usize, 0usize);
        while i < b {
            let c = bytes[i];
            if c == b'\n' {
                newlines += 1;
                since_code += 1;
                i += 1;
            } else if c == b'/' && i + 1 < b && (bytes[i + 1] == b'/' || bytes[i + 1] == b'*') {
                let end = if bytes[i + 1] == b'/' {
                    self.src[i..b].find('\n').map_or(b, |k| i + k)
                } else {
                    self.src[i + 2..b].find("*/").map_or(b, |k| i + 2 + k + 2)
                };
                g.comments.push(Comment {
                    text: self.src[i..end].trim_end().to_string(),
                    trailing: since_code == 0 && !(g.comments.is_empty() && g.code_end.is_none() && a == 0),
                    blank_before: newlines >= 2,
                });
                newlines = 0;
                // A comment is no code: the next one is on its own line unless the
                // comment was a block comment followed by more on its line.
                since_code = usize::from(bytes[i + 1] == b'/');
                i = end;
            } else if c.is_ascii_whitespace() {
                i += 1;
            } else if self.src[i..].starts_with('\u{FEFF}') {
                i += '\u{FEFF}'.len_utf8();
            } else {
                // Punctuation: `(`, `,`, `{`, `->`, …
                i += self.src[i..].chars().next().map_or(1, char::len_utf8);
                g.code_end = Some(i);
                g.first_code_end = g.first_code_end.or(Some(i));
                since_code = 0;
            }
        }
        g.newlines_after = newlines;
        g
    }

    /// Whether any comment lies inside `p` (between its pieces of code).
    fn has_comment(&self, p: &Pair<Rule>) -> bool {
        if ATOMIC.contains(&p.as_rule()) {
            return false;
        }
        let kids = children(p);
        let mut at = self.start(p);
        for k in &kids {
            if !self.gap(at, self.start(k)).comments.is_empty() || self.has_comment(k) {
                return true;
            }
            at = self.end(k);
        }
        !self.gap(at, self.end(p)).comments.is_empty()
    }

    /// The text of `p` exactly as written.
    fn verbatim(&self, p: &Pair<Rule>) -> String {
        self.src[self.start(p)..self.end(p)].to_string()
    }

    // ---- expressions on one line -------------------------------------------------------

    fn inline(&self, p: &Pair<Rule>) -> Result<String, Raw> {
        if self.has_comment(p) {
            return Err(Raw);
        }
        Ok(self.flat(p))
    }

    /// `p` on one line (comments already ruled out).
    fn flat(&self, p: &Pair<Rule>) -> String {
        if ATOMIC.contains(&p.as_rule()) {
            return p.as_str().to_string();
        }
        let kids = children(p);
        let join = |sep: &str| kids.iter().map(|k| self.flat(k)).collect::<Vec<_>>().join(sep);
        match p.as_rule() {
            Rule::pipeline => join(" -> "),
            Rule::stage => {
                let mut s = kids.first().map(|k| self.flat(k)).unwrap_or_default();
                if let Some(name) = kids.iter().find(|k| k.as_rule() == Rule::ident) {
                    s.push_str(" as ");
                    s.push_str(name.as_str());
                }
                s
            }
            Rule::sum | Rule::product => join(" "),
            Rule::unary | Rule::postfix => join(""),
            Rule::percent => format!("{}%", join("")),
            Rule::optional => format!("?{}", join("")),
            Rule::call => {
                let name = kids.first().map(|k| k.as_str()).unwrap_or_default();
                let args: Vec<String> = kids.iter().skip(1).map(|k| self.flat(k)).collect();
                format!("{name}({})", args.join(", "))
            }
            Rule::arg => match kids.as_slice() {
                [name, value] => format!("{} = {}", name.as_str(), self.flat(value)),
                _ => join(""),
            },
            Rule::group => format!("[{}]", join("")),
            Rule::paren => format!("({})", join("")),
            Rule::key_path => join("."),
            Rule::params => format!("({})", join(", ")),
            Rule::param => match kids.as_slice() {
                [name, value] => format!("{} = {}", name.as_str(), self.flat(value)),
                _ => join(""),
            },
            Rule::dims => {
                let parts: Vec<String> = kids.iter().map(|k| self.flat(k)).collect();
                format!(": [{}]", parts.join(", "))
            }
            Rule::seq_dim => join(" "),
            Rule::ids_bound => {
                let bound = kids.iter().find(|k| k.as_rule() == Rule::sum).map(|k| self.flat(k)).unwrap_or_default();
                format!(" ids < {bound}")
            }
            Rule::neg => "-".to_string(),
            _ => {
                if kids.is_empty() {
                    self.verbatim(p)
                } else {
                    join(" ")
                }
            }
        }
    }

    // ---- expressions over lines --------------------------------------------------------

    /// `p` starting at column `col`: chains (at the top of a statement or inside `[…]`) may
    /// span lines; everything else is on one line.
    fn piece(&self, p: &Pair<Rule>, col: usize) -> Result<Piece, Raw> {
        match p.as_rule() {
            Rule::pipeline => self.chain(p, col, false),
            Rule::group => {
                let kids = children(p);
                let [inner] = kids.as_slice() else { return self.inline(p).map(Piece::text) };
                if !self.gap(self.start(p), self.start(inner)).comments.is_empty()
                    || !self.gap(self.end(inner), self.end(p)).comments.is_empty()
                {
                    return Err(Raw);
                }
                let mut out = Piece::text("[");
                out.append(self.chain(inner, col + 1, true)?);
                out.push("]");
                Ok(out)
            }
            Rule::stage | Rule::sum | Rule::product | Rule::unary | Rule::postfix => {
                let kids = children(p);
                let mut at = self.start(p);
                for k in &kids {
                    if !self.gap(at, self.start(k)).comments.is_empty() {
                        return Err(Raw);
                    }
                    at = self.end(k);
                }
                if !self.gap(at, self.end(p)).comments.is_empty() {
                    return Err(Raw);
                }
                let mut out = Piece::default();
                for (i, k) in kids.iter().enumerate() {
                    let sep = match (p.as_rule(), k.as_rule()) {
                        (Rule::stage, Rule::kw_as) => continue,
                        (Rule::stage, Rule::ident) => {
                            out.push(" as ");
                            out.push(k.as_str());
                            continue;
                        }
                        (Rule::sum | Rule::product, _) if i > 0 => " ",
                        _ => "",
                    };
                    out.push(sep);
                    if k.as_rule() == Rule::optional {
                        out.push(&self.inline(k)?);
                        continue;
                    }
                    let at = out.end_col(col);
                    out.append(self.piece(k, at)?);
                }
                Ok(out)
            }
            _ => self.inline(p).map(Piece::text),
        }
    }

    /// A chain of stages starting at column `col`.
    fn chain(&self, p: &Pair<Rule>, col: usize, in_group: bool) -> Result<Piece, Raw> {
        let stages = children(p);
        if stages.len() <= 1 {
            return match stages.first() {
                Some(s) => {
                    if !self.gap(self.end(s), self.end(p)).comments.is_empty() {
                        return Err(Raw);
                    }
                    self.piece(s, col)
                }
                None => Ok(Piece::text(self.verbatim(p))),
            };
        }
        let gaps: Vec<Gap> = stages.windows(2).map(|w| self.gap(self.end(&w[0]), self.start(&w[1]))).collect();
        if !self.gap(self.end(&stages[stages.len() - 1]), self.end(p)).comments.is_empty() {
            return Err(Raw);
        }
        let mut breaks: Vec<bool> = gaps.iter().map(Gap::has_break).collect();
        let written = self.chain_with(&stages, &gaps, &breaks, col, in_group)?;
        if written.max_width(col) <= WIDTH {
            return Ok(written);
        }
        // A line of the chain too wide: a break before each of its `->`. (Breaking the first
        // line can only move the others left: they still fit.)
        let first = self.piece(&stages[0], col)?;
        let cont = self.cont(&first, col, in_group, breaks[0] || !first.single());
        let mut start = 0;
        let mut changed = false;
        while start < stages.len() {
            let end = (start..breaks.len()).find(|&i| breaks[i]).map_or(stages.len(), |i| i + 1);
            let at = if start == 0 { col } else { cont + 3 };
            let line = self.chain_with(
                &stages[start..end],
                &gaps[start..end - 1],
                &vec![false; end - start - 1],
                at,
                in_group,
            )?;
            if end - start > 1 && line.max_width(at) > WIDTH {
                breaks[start..end - 1].iter_mut().for_each(|b| *b = true);
                changed = true;
            }
            start = end;
        }
        if !changed {
            return Ok(written);
        }
        self.chain_with(&stages, &gaps, &breaks, col, in_group)
    }

    /// The column of a broken chain's `->`: under the first `->` when the first line holds
    /// more than the first stage, two columns in otherwise; under the first stage inside `[…]`.
    fn cont(&self, first: &Piece, col: usize, in_group: bool, first_broken: bool) -> usize {
        if in_group {
            col
        } else if !first_broken && first.lines.len() == 1 {
            col + width(&first.lines[0].text) + 1
        } else {
            col + 2
        }
    }

    fn chain_with(
        &self,
        stages: &[Pair<Rule>],
        gaps: &[Gap],
        breaks: &[bool],
        col: usize,
        in_group: bool,
    ) -> Result<Piece, Raw> {
        let mut out = self.piece(&stages[0], col)?;
        let first_broken = breaks.first().copied().unwrap_or(true);
        let cont = self.cont(&out, col, in_group, first_broken || !out.single());
        for (i, stage) in stages.iter().enumerate().skip(1) {
            let gap = &gaps[i - 1];
            if breaks[i - 1] {
                let mut own = gap.comments.iter().peekable();
                if let Some(c) = own.next_if(|c| c.trailing) {
                    if let Some(l) = out.lines.last_mut() {
                        l.comment = Some(c.text.clone());
                    }
                }
                for c in own {
                    if c.blank_before {
                        out.lines.push(Line::default());
                    }
                    out.lines.push(Line { text: format!("{}{}", " ".repeat(cont), c.text), comment: None, group: 0 });
                }
                out.lines.push(Line { text: format!("{}-> ", " ".repeat(cont)), comment: None, group: 0 });
                out.append(self.piece(stage, cont + 3)?);
            } else {
                out.push(" -> ");
                let at = out.end_col(col);
                out.append(self.piece(stage, at)?);
            }
        }
        Ok(out)
    }

    // ---- items -------------------------------------------------------------------------

    fn file(&self, root: Pair<Rule>) -> Vec<Line> {
        let items = children(&root);
        let mut lines = Vec::new();
        let mut at = 0;
        for (i, item) in items.iter().enumerate() {
            let gap = self.gap(at, self.start(item));
            let mut comments = gap.comments.iter().peekable();
            if i > 0 {
                if let Some(c) = comments.next_if(|c| c.trailing) {
                    attach(&mut lines, c);
                }
                lines.push(Line::default());
            }
            let mut first = true;
            for c in comments {
                if c.blank_before && !first {
                    lines.push(Line::default());
                }
                first = false;
                lines.push(Line { text: c.text.clone(), comment: None, group: 0 });
            }
            if !gap.comments.is_empty() && gap.newlines_after >= 2 && !(i == 0 && lines.is_empty()) {
                lines.push(Line::default());
            }
            lines.extend(self.item(item));
            at = self.end(item);
        }
        let gap = self.gap(at, self.src.len());
        let mut comments = gap.comments.iter().peekable();
        if !items.is_empty() {
            if let Some(c) = comments.next_if(|c| c.trailing) {
                attach(&mut lines, c);
            }
        }
        for c in comments {
            if c.blank_before && !lines.is_empty() {
                lines.push(Line::default());
            }
            lines.push(Line { text: c.text.clone(), comment: None, group: 0 });
        }
        lines
    }

    /// A whole item; an item with a comment inside its header is written as it was.
    fn item(&self, p: &Pair<Rule>) -> Vec<Line> {
        let out = match p.as_rule() {
            Rule::model | Rule::layer_block => self.model(p),
            _ => self.recipe(p),
        };
        out.unwrap_or_else(|Raw| vec![Line { text: self.verbatim(p), comment: None, group: 0 }])
    }

    /// `model Name(params) { statements }` or `block Name(params) { … }`.
    fn model(&self, p: &Pair<Rule>) -> Result<Vec<Line>, Raw> {
        let kids = children(p);
        let head_len = kids
            .iter()
            .take_while(|k| matches!(k.as_rule(), Rule::kw_model | Rule::kw_block | Rule::ident | Rule::params))
            .count();
        let (head, stmts) = kids.split_at(head_len);
        let mut header = String::new();
        let mut at = self.start(p);
        for k in head {
            if !self.gap(at, self.start(k)).comments.is_empty() {
                return Err(Raw);
            }
            match k.as_rule() {
                Rule::ident => {
                    header.push(' ');
                    header.push_str(k.as_str());
                }
                Rule::params => header.push_str(&self.inline(k)?),
                _ => header.push_str(k.as_str()),
            }
            at = self.end(k);
        }
        // The `{` after the header: comments before it cannot be kept in place.
        let open = self.gap(at, stmts.first().map_or(self.end(p), |s| self.start(s))).first_code_end.unwrap_or(at);
        if !self.gap(at, open).comments.is_empty() {
            return Err(Raw);
        }
        header.push_str(" {");
        let body = self.body(open, stmts, self.end(p), INDENT, Body::Model);
        Ok(close(header, body, 0))
    }

    /// `train M on d { … }`, `data d { … }`, `search M { … }`, `ensemble M { … }`.
    fn recipe(&self, p: &Pair<Rule>) -> Result<Vec<Line>, Raw> {
        let kids = children(p);
        let mut header = String::new();
        let mut at = self.start(p);
        let mut block = None;
        for k in &kids {
            if !self.gap(at, self.start(k)).comments.is_empty() {
                return Err(Raw);
            }
            match k.as_rule() {
                Rule::block => {
                    block = Some(k.clone());
                    break;
                }
                Rule::ident | Rule::kw_on if !header.is_empty() => {
                    header.push(' ');
                    header.push_str(k.as_str());
                }
                _ => header.push_str(k.as_str()),
            }
            at = self.end(k);
        }
        let Some(block) = block else { return Err(Raw) };
        header.push_str(" {");
        let entries = children(&block);
        let open = self.start(&block) + 1;
        let body = self.body(open, &entries, self.end(&block), INDENT, Body::Recipe);
        Ok(close(header, body, 0))
    }

    /// The lines of a body: statements or settings after the `{` that ends at `open`, up to
    /// `close` (just past the `}`), at `indent`.
    fn body(&self, open: usize, stmts: &[Pair<Rule>], close: usize, indent: usize, kind: Body) -> BodyLines {
        let pad = " ".repeat(indent);
        let mut out = BodyLines::default();
        let mut at = open;
        // First every statement on its own, to find the runs whose `=` line up.
        let mut rendered: Vec<Entry> = stmts.iter().map(|s| self.entry(s, indent, kind, 0)).collect();
        let mut blank_before: Vec<bool> = Vec::new();
        let mut gaps = Vec::new();
        for s in stmts {
            let g = self.gap(at, self.start(s));
            blank_before.push(g.newlines_after >= 2 || g.comments.iter().any(|c| c.blank_before));
            gaps.push(g);
            at = self.end(s);
        }
        self.align(stmts, &mut rendered, &blank_before, indent, kind);
        for (i, e) in rendered.into_iter().enumerate() {
            let gap = &gaps[i];
            out.place_comments(gap, &pad);
            if gap.newlines_after >= 2 && !out.lines.is_empty() && !out.lines.last().is_some_and(|l| l.text.is_empty())
            {
                out.lines.push(Line::default());
            }
            let mut lines = e.lines;
            if let Some(first) = lines.first_mut() {
                first.text = format!("{pad}{}", first.text);
            }
            // A statement that begins with `(` or `-` would continue the one before it
            // without the `;` between them.
            let next = stmts.get(i + 1).map(|n| self.src[self.start(n)..].trim_start());
            if kind == Body::Model && next.is_some_and(|t| t.starts_with('(') || t.starts_with('-')) {
                if let Some(last) = lines.last_mut() {
                    last.text.push(';');
                }
            }
            let group = self.groups.get() + 1;
            self.groups.set(group);
            for l in &mut lines {
                if l.group == 0 {
                    l.group = group;
                }
            }
            out.lines.extend(lines);
        }
        out.place_comments(&self.gap(at, close.saturating_sub(1).max(at)), &pad);
        out
    }

    /// One statement or setting, at `indent`, its key padded to `key_width` columns.
    fn entry(&self, p: &Pair<Rule>, indent: usize, kind: Body, key_width: usize) -> Entry {
        let text = match kind {
            Body::Model => self.statement(p, indent, key_width),
            Body::Recipe => self.setting(p, indent, key_width),
        };
        match text {
            Ok(lines) => Entry { lines, raw: false },
            Err(Raw) => Entry { lines: vec![Line { text: self.verbatim(p), comment: None, group: 0 }], raw: true },
        }
    }

    fn statement(&self, p: &Pair<Rule>, indent: usize, key_width: usize) -> Result<Vec<Line>, Raw> {
        let kids = children(p);
        match p.as_rule() {
            Rule::input_decl => {
                let mut s = String::from("input");
                let mut at = self.start(p);
                for k in kids.iter().filter(|k| k.as_rule() != Rule::kw_input) {
                    if !self.gap(at, self.start(k)).comments.is_empty() {
                        return Err(Raw);
                    }
                    if k.as_rule() == Rule::ident {
                        s.push(' ');
                    }
                    s.push_str(&self.inline(k)?);
                    at = self.end(k);
                }
                Ok(vec![Line { text: s, comment: None, group: 0 }])
            }
            Rule::let_stmt => {
                let [_, name, value] = kids.as_slice() else { return Err(Raw) };
                if !self.gap(self.end(name), self.start(value)).comments.is_empty()
                    || !self.gap(self.end(&kids[0]), self.start(name)).comments.is_empty()
                {
                    return Err(Raw);
                }
                let pad = key_width.saturating_sub(width(name.as_str()));
                let head = format!("let {}{} = ", name.as_str(), " ".repeat(pad));
                let mut out = Piece::text(head.clone());
                out.append(self.chain(value, indent + width(&head), false)?);
                Ok(out.lines)
            }
            _ => {
                let [value] = kids.as_slice() else { return Err(Raw) };
                Ok(self.chain(value, indent, false)?.lines)
            }
        }
    }

    fn setting(&self, p: &Pair<Rule>, indent: usize, key_width: usize) -> Result<Vec<Line>, Raw> {
        let kids = children(p);
        match p.as_rule() {
            Rule::assign | Rule::sample => {
                let [key, value] = kids.as_slice() else { return Err(Raw) };
                if !self.gap(self.end(key), self.start(value)).comments.is_empty() {
                    return Err(Raw);
                }
                let key = self.inline(key)?;
                let op = if p.as_rule() == Rule::assign { "=" } else { "~" };
                let head = format!("{key}{} {op} ", " ".repeat(key_width.saturating_sub(width(&key))));
                let mut out = Piece::text(head.clone());
                out.append(self.chain(value, indent + width(&head), false)?);
                Ok(out.lines)
            }
            _ => {
                // `key name? { … }`
                let mut head = String::new();
                let mut at = self.start(p);
                let mut block = None;
                for k in &kids {
                    if !self.gap(at, self.start(k)).comments.is_empty() {
                        return Err(Raw);
                    }
                    if k.as_rule() == Rule::block {
                        block = Some(k.clone());
                        break;
                    }
                    if !head.is_empty() {
                        head.push(' ');
                    }
                    head.push_str(k.as_str());
                    at = self.end(k);
                }
                let Some(block) = block else { return Err(Raw) };
                head.push_str(&" ".repeat(key_width.saturating_sub(width(&head))));
                let entries = children(&block);
                let (open, close_at) = (self.start(&block) + 1, self.end(&block));
                // On one line when written on one line, without comments, and it fits.
                let one_line = !self.src[open..close_at].contains('\n') && !self.has_comment(&block);
                if one_line {
                    let parts: Result<Vec<String>, Raw> = entries.iter().map(|e| self.flat_setting(e)).collect();
                    if let Ok(parts) = parts {
                        let text = if parts.is_empty() {
                            format!("{head} {{}}")
                        } else {
                            format!("{head} {{ {} }}", parts.join(", "))
                        };
                        if indent + width(&text) <= WIDTH {
                            return Ok(vec![Line { text, comment: None, group: 0 }]);
                        }
                    }
                }
                let body = self.body(open, &entries, close_at, indent + INDENT, Body::Recipe);
                Ok(close(format!("{head} {{"), body, indent))
            }
        }
    }

    /// A setting of a one-line sub-block.
    fn flat_setting(&self, p: &Pair<Rule>) -> Result<String, Raw> {
        let kids = children(p);
        match (p.as_rule(), kids.as_slice()) {
            (Rule::assign, [k, v]) => Ok(format!("{} = {}", self.inline(k)?, self.inline(v)?)),
            (Rule::sample, [k, v]) => Ok(format!("{} ~ {}", self.inline(k)?, self.inline(v)?)),
            _ => Err(Raw),
        }
    }

    /// Lines up the `=` (and `~`, and sub-blocks' `{`) of runs of one-line statements.
    fn align(&self, stmts: &[Pair<Rule>], rendered: &mut [Entry], blank_before: &[bool], indent: usize, kind: Body) {
        // Which alignment class each statement is in, if it is a one-line one.
        let class = |i: usize| -> Option<u8> {
            let e = &rendered[i];
            if e.raw || e.lines.len() != 1 || e.lines[0].text.contains('\n') {
                return None;
            }
            match stmts[i].as_rule() {
                Rule::let_stmt => Some(0),
                Rule::assign => Some(1),
                Rule::sample => Some(2),
                Rule::sub_block => Some(3),
                _ => None,
            }
        };
        let classes: Vec<Option<u8>> = (0..stmts.len()).map(class).collect();
        let mut start = 0;
        while start < stmts.len() {
            // A run: no blank line inside, and every statement of it on one line (for a
            // model's `let`s, only `let`s).
            let mut end = start + 1;
            while end < stmts.len()
                && !blank_before[end]
                && classes[end].is_some()
                && classes[end - 1].is_some()
                && (kind == Body::Recipe || classes[end] == classes[start])
            {
                end += 1;
            }
            for c in 0u8..4 {
                let members: Vec<usize> = (start..end).filter(|&i| classes[i] == Some(c)).collect();
                if members.len() < 2 {
                    continue;
                }
                let key = |i: usize| -> usize { self.key_width(&stmts[i]) };
                let w = members.iter().map(|&i| key(i)).max().unwrap_or(0);
                let padded: Vec<Entry> = members.iter().map(|&i| self.entry(&stmts[i], indent, kind, w)).collect();
                // (Padding may take a line past the width: alignment wins, as gofmt's does,
                // unless it would make a chain break differently.)
                if padded.iter().all(|e| !e.raw && e.lines.len() == 1) {
                    for (&i, e) in members.iter().zip(padded) {
                        rendered[i] = e;
                    }
                }
            }
            start = end;
        }
    }

    /// The width of what is aligned: a `let`'s name, a setting's key, a sub-block's header.
    fn key_width(&self, p: &Pair<Rule>) -> usize {
        let kids = children(p);
        match p.as_rule() {
            Rule::let_stmt => kids.get(1).map_or(0, |k| width(k.as_str())),
            Rule::assign | Rule::sample => kids.first().map_or(0, |k| width(&self.flat(k))),
            _ => {
                let words: Vec<&str> =
                    kids.iter().take_while(|k| k.as_rule() == Rule::ident).map(|k| k.as_str()).collect();
                width(&words.join(" "))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Model,
    Recipe,
}

/// A statement's lines, and whether it was left as written.
struct Entry {
    lines: Vec<Line>,
    raw: bool,
}

#[derive(Default)]
struct BodyLines {
    /// A comment after the `{` on its line.
    header_comment: Option<String>,
    lines: Vec<Line>,
}

impl BodyLines {
    /// The comments of a gap in a body: one after code at the end of the line before (or of
    /// the header), the others on lines of their own at `pad`.
    fn place_comments(&mut self, gap: &Gap, pad: &str) {
        let mut comments = gap.comments.iter().peekable();
        if let Some(c) = comments.next_if(|c| c.trailing) {
            match self.lines.last_mut() {
                Some(l) => l.comment = Some(c.text.clone()),
                None => self.header_comment = Some(c.text.clone()),
            }
        }
        for c in comments {
            if c.blank_before && !self.lines.is_empty() {
                self.lines.push(Line::default());
            }
            self.lines.push(Line { text: format!("{pad}{}", c.text), comment: None, group: 0 });
        }
    }
}

/// `header {`, the body, `}` at `indent` (or `header {}` when there is nothing inside).
fn close(header: String, body: BodyLines, indent: usize) -> Vec<Line> {
    let pad = " ".repeat(indent);
    if body.lines.is_empty() && body.header_comment.is_none() {
        return vec![Line { text: format!("{}}}", header), comment: None, group: 0 }];
    }
    let mut out = vec![Line { text: header, comment: body.header_comment, group: 0 }];
    out.extend(body.lines);
    out.push(Line { text: format!("{pad}}}"), comment: None, group: 0 });
    out
}

fn attach(lines: &mut [Line], c: &Comment) {
    if let Some(l) = lines.last_mut() {
        match &mut l.comment {
            Some(existing) => {
                existing.push(' ');
                existing.push_str(&c.text);
            }
            None => l.comment = Some(c.text.clone()),
        }
    }
}
