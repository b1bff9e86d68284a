//! `nnlangc fmt [--check] FILES…`: nnlang's one layout (`nnlang::syntax::fmt`), written in
//! place (atomically: a file holds its old text or all of the new) or checked.

use crate::cli::Failure;
use crate::say::{err, errln, out, outln};
use nnlang::diag::render_all;
use std::io::Read;
use std::path::PathBuf;

/// Formats every file; the worst outcome decides the exit: a file that cannot be read or
/// written 2, one that does not parse 1, with `--check` one whose layout differs 1.
pub fn run(files: &[PathBuf], check: bool) -> Result<(), Failure> {
    let mut worst: Option<Failure> = None;
    let mut differ = 0usize;
    for path in files {
        let stdin = path.as_os_str() == "-";
        let name = if stdin { "<stdin>".to_string() } else { path.display().to_string() };
        let source = if stdin {
            let mut s = String::new();
            match std::io::stdin().read_to_string(&mut s) {
                Ok(_) => s,
                Err(e) => {
                    errln!("error: cannot read standard input: {e}");
                    worst = Some(Failure::Exit(2));
                    continue;
                }
            }
        } else {
            match nnlang::session::read_source(path) {
                Ok(s) => s,
                Err(nnlang::session::Error::Usage(m)) => {
                    errln!("error: {m}");
                    worst = Some(Failure::Exit(2));
                    continue;
                }
                Err(nnlang::session::Error::Input(m) | nnlang::session::Error::Diagnostics(m)) => {
                    errln!("error: {m}");
                    worst = worst.or(Some(Failure::Source));
                    continue;
                }
            }
        };
        let formatted = match nnlang::syntax::format(&source) {
            Ok(f) => f,
            Err(d) => {
                err!("{}", render_all(&[d], &name, &source));
                worst = worst.or(Some(Failure::Source));
                continue;
            }
        };
        if check {
            if formatted != source {
                differ += 1;
                let (line, old, new) = first_difference(&source, &formatted);
                outln!("{name}:{line}: not in nnlang's layout (nnlangc fmt {name})");
                outln!("  - {old}");
                outln!("  + {new}");
            }
        } else if stdin {
            out!("{formatted}");
        } else if formatted != source {
            if let Err(e) = nnlang_runtime::io::write_atomic(path, formatted.as_bytes()) {
                errln!("error: {e}");
                worst = Some(Failure::Exit(2));
            }
        }
    }
    match worst {
        Some(f) => Err(f),
        None if differ > 0 => {
            let s = if differ == 1 { "" } else { "s" };
            errln!("{differ} file{s} not in nnlang's layout");
            Err(Failure::Exit(1))
        }
        None => Ok(()),
    }
}

/// The first line (from 1) where two texts differ, and that line in each.
fn first_difference(a: &str, b: &str) -> (usize, String, String) {
    let (mut la, mut lb) = (a.lines(), b.lines());
    let mut n = 1;
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (x, y) => {
                let show = |l: Option<&str>| l.map_or("(end of file)".to_string(), str::to_string);
                // Only the line ends differ (CRLF, the last newline).
                if x.is_none() && y.is_none() {
                    return (n, "(line ends)".to_string(), "(one \\n after each line)".to_string());
                }
                return (n, show(x), show(y));
            }
        }
    }
}
