//! The threads of a data-parallel step. The calling thread takes the first share of the work
//! itself and the team's threads the others, and it waits for them by spinning; between steps
//! the team's threads spin for a while instead of going to sleep.
//!
//! Why not a plain thread pool: a step hands work to the other threads two or three times
//! (the workers' gradients, their average, the update). Handing work to a pool thread that went
//! to sleep costs a wake-up, 30–50 µs on a virtual machine (the hypervisor must run the
//! sleeping virtual core again), more at times — a tenth of an MLP step at batch 64, and in
//! the slow periods of the machine this was measured on, more than the second thread saves.
//! Threads that stay awake take a share within a microsecond. They stop spinning after
//! [`AWAKE`] without work (validation, the end of training) and then sleep as usual; the
//! spinning yields the processor after a short while so that more threads than cores do not
//! starve the ones with work.
//!
//! What each share computes does not depend on the thread that runs it, and the callers sum
//! the shares in their order, so a given thread count gives the same bits every run.

use crate::time::{Duration, Instant};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How long the team's threads stay awake after a run, waiting for the next.
const AWAKE: Duration = Duration::from_millis(2);

/// Spins before each wait starts yielding the processor.
const SPINS: u32 = 2_000;

/// A team of `threads` threads: the caller and `threads − 1` of its own.
pub struct Team {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    /// Counts the runs: a thread kept awake stops spinning when it changes.
    runs: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Team({} threads)", self.threads)
    }
}

impl Team {
    /// A team of `threads` (at least 1: the caller alone).
    pub fn new(threads: usize) -> Result<Team, String> {
        let threads = threads.max(1);
        let pool = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads - 1)
                .thread_name(|i| format!("nnlang-worker-{}", i + 1))
                .build()
                .map_err(|e| format!("cannot start {} threads: {e}", threads - 1))?;
            Some(pool)
        } else {
            None
        };
        Ok(Team { pool, threads, runs: Arc::new(AtomicUsize::new(0)) })
    }

    /// The threads, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i, item)` for every item, the items cut into as many runs of consecutive items
    /// as there are threads: the first run on the calling thread, each other on a thread of
    /// the team. Returns when all are done.
    pub fn run<I: Send>(&self, items: Vec<I>, f: impl Fn(usize, I) + Sync) {
        let Some(pool) = &self.pool else {
            items.into_iter().enumerate().for_each(|(i, item)| f(i, item));
            return;
        };
        let per = items.len().div_ceil(self.threads).max(1);
        let mut groups: Vec<Vec<(usize, I)>> = Vec::with_capacity(self.threads);
        for (i, item) in items.into_iter().enumerate() {
            if i % per == 0 {
                groups.push(Vec::with_capacity(per));
            }
            if let Some(g) = groups.last_mut() {
                g.push((i, item));
            }
        }
        let others = groups.len().saturating_sub(1);
        // A thread spinning since the last run sees this and takes the work below.
        self.runs.fetch_add(1, Ordering::AcqRel);
        let done = AtomicUsize::new(0);
        let (f, done_ref) = (&f, &done);
        pool.in_place_scope(|s| {
            let mut groups = groups.into_iter();
            let first = groups.next();
            for group in groups {
                s.spawn(move |_| {
                    group.into_iter().for_each(|(i, item)| f(i, item));
                    done_ref.fetch_add(1, Ordering::AcqRel);
                });
            }
            first.into_iter().flatten().for_each(|(i, item)| f(i, item));
            // Wait awake for the others (the scope's own wait would sleep); a run that
            // panicked never counts, so the wait is bounded and the scope then reports it.
            wait_while(|| done.load(Ordering::Acquire) < others);
        });
        self.keep_awake();
    }

    /// Each thread of the team spins until the next run or for [`AWAKE`].
    fn keep_awake(&self) {
        let Some(pool) = &self.pool else { return };
        let run = self.runs.load(Ordering::Acquire);
        for _ in 1..self.threads {
            let runs = Arc::clone(&self.runs);
            pool.spawn(move || wait_while(|| runs.load(Ordering::Acquire) == run));
        }
    }
}

/// Spins while `busy()` (a short while, then yielding the processor between looks), at most
/// [`AWAKE`].
fn wait_while(busy: impl Fn() -> bool) {
    let start = Instant::now();
    let mut spins = 0u32;
    while busy() {
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else if start.elapsed() < AWAKE {
            std::thread::yield_now();
        } else {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_with_its_index_on_teams_of_every_size() {
        for threads in [1, 2, 3, 5] {
            let team = Team::new(threads).expect("a team");
            assert_eq!(team.threads(), threads);
            for n in [0, 1, 2, 3, 7] {
                let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let items: Vec<usize> = (0..n).map(|i| 10 * i).collect();
                team.run(items, |i, item| {
                    assert_eq!(item, 10 * i);
                    seen[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "{threads} threads, {n} items");
            }
        }
    }

    #[test]
    fn items_borrow_mutably_and_the_results_are_in_their_order() {
        let team = Team::new(2).expect("a team");
        let mut out = vec![0u64; 1000];
        let chunks: Vec<&mut [u64]> = out.chunks_mut(300).collect();
        team.run(chunks, |i, c| c.iter_mut().enumerate().for_each(|(j, v)| *v = (i * 300 + j) as u64));
        assert!(out.iter().enumerate().all(|(j, &v)| v == j as u64));
    }

    #[test]
    fn a_panicking_share_is_reported_not_waited_for_forever() {
        let team = Team::new(2).expect("a team");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(vec![0, 1], |i, _| assert!(i == 0, "share {i} fails"));
        }));
        assert!(caught.is_err());
        // The team still works afterwards.
        let seen = AtomicUsize::new(0);
        team.run(vec![(), ()], |_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    }
}
