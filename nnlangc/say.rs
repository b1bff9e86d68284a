//! Printing that never panics: `println!` panics when standard output is a closed pipe
//! (`nnlangc train … | head -1`) or a full device. These macros write, remember a failure on
//! standard output (reported once at exit, with exit code 1), and ignore one on standard
//! error (there is nowhere left to say it). Training goes on and saves its run either way.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

pub fn write_out(args: std::fmt::Arguments) {
    if STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if o.write_fmt(args).and_then(|_| o.flush()).is_err() {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
    }
}

pub fn write_err(args: std::fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Whether some output could not be written to standard output.
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed) || std::io::stdout().flush().is_err()
}

macro_rules! out {
    ($($t:tt)*) => { $crate::say::write_out(format_args!($($t)*)) };
}
macro_rules! outln {
    () => { $crate::say::write_out(format_args!("\n")) };
    ($($t:tt)*) => { $crate::say::write_out(format_args!("{}\n", format_args!($($t)*))) };
}
macro_rules! err {
    ($($t:tt)*) => { $crate::say::write_err(format_args!($($t)*)) };
}
macro_rules! errln {
    ($($t:tt)*) => { $crate::say::write_err(format_args!("{}\n", format_args!($($t)*))) };
}
pub(crate) use {err, errln, out, outln};
