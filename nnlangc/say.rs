//! Printing that never panics: `println!` panics when standard output is a closed pipe
//! (`nnlangc train … | head -1`) or a full device. These macros write, remember a failure on
//! standard output (reported once at exit, with exit code 1), and ignore one on standard
//! error (there is nowhere left to say it). Training goes on and saves its run either way.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
/// In a distributed run: only rank 0 reports on standard output.
static STDOUT_SILENT: AtomicBool = AtomicBool::new(false);
/// In a distributed run: which process says an error.
static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// This is process `rank` of `size`: standard output is rank 0's alone, and what goes to
/// standard error names the process.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub fn set_process(rank: usize, size: usize) {
    STDOUT_SILENT.store(rank != 0, Ordering::Relaxed);
    let _ = PROCESS.set(format!("[rank {rank} of {size}] "));
}

/// Whether this process reports (rank 0 of a distributed run, or a process alone).
pub fn reports() -> bool {
    !STDOUT_SILENT.load(Ordering::Relaxed)
}

pub fn write_out(args: std::fmt::Arguments) {
    if STDOUT_FAILED.load(Ordering::Relaxed) || STDOUT_SILENT.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if o.write_fmt(args).and_then(|_| o.flush()).is_err() {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
    }
}

pub fn write_err(args: std::fmt::Arguments) {
    let mut e = std::io::stderr().lock();
    match PROCESS.get() {
        Some(p) => {
            let text = args.to_string();
            if !text.is_empty() {
                let _ = e.write_all(format!("{p}{text}").as_bytes());
            }
        }
        None => {
            let _ = e.write_fmt(args);
        }
    }
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
