//! Ctrl-C, SIGTERM and SIGHUP, for every command: one handler for the whole process.
//!
//! A command that stops cleanly when asked (`train` after the current batch, `ensemble`
//! between and inside members) says so with [`cooperate`] and checks [`requested`]; it ends
//! with exit code 130 once its state is saved, and a second signal ends it at once. Any other
//! command ends at the first signal, after the writes in flight: a section that must not be
//! cut short holds [`writing`], and the temporary files of atomic writes are removed. Either
//! way nothing half-written is left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Exit code after Ctrl-C or SIGTERM (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

static STOP: AtomicBool = AtomicBool::new(false);
static COOPERATIVE: AtomicBool = AtomicBool::new(false);
static WRITING: Mutex<()> = Mutex::new(());

/// Installs the handler (once, at start).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        let again = STOP.swap(true, Ordering::SeqCst);
        if again || !COOPERATIVE.load(Ordering::SeqCst) {
            // Wait for a write in flight to finish, then leave nothing temporary behind.
            let _held = WRITING.lock();
            nnlang_runtime::io::remove_temporaries();
            crate::say::errln!("interrupted");
            std::process::exit(i32::from(INTERRUPTED));
        }
    });
}

/// The command checks [`requested`] and stops cleanly: a first signal only asks.
pub fn cooperate() {
    COOPERATIVE.store(true, Ordering::SeqCst);
}

/// Whether a signal asked the process to stop.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The flag a signal sets, for observers that poll it.
pub fn flag() -> &'static AtomicBool {
    &STOP
}

/// Held while writing something a signal must not cut in half (a row of a table, a manifest).
pub fn writing() -> MutexGuard<'static, ()> {
    WRITING.lock().unwrap_or_else(|e| e.into_inner())
}
