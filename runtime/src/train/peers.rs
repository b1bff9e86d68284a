//! Where the workers of a data-parallel step meet when a step needs a sum over the whole
//! batch (batch normalization's statistics in the forward pass, and the sums its backward
//! pass needs): each worker brings its part, the parts are added in worker order from zero,
//! and every worker leaves with the same total. In a distributed run the total of this
//! process's workers is then summed over the processes (rank order), so that N processes of
//! one thread each meet as N threads do.
//!
//! A meeting is made for one step's workers. A worker that fails (a label outside the
//! classes) leaves it ([`Seat::leave`]): the others then stop waiting, and the step reports
//! the failure.

use super::cluster::Cluster;
use crate::mem::Sum;
use crate::time::{Duration, Instant};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Spins before a waiting worker starts yielding, then sleeping.
const SPINS: u32 = 4_000;
/// How long a waiting worker yields the processor before it sleeps.
const AWAKE: Duration = Duration::from_millis(1);

struct Meeting {
    /// Completed sums.
    done: AtomicU64,
    /// A worker left: nobody waits any more.
    broken: AtomicBool,
    table: Mutex<Table>,
    turn: Condvar,
    cluster: Option<Cluster>,
}

struct Table {
    /// This sum's parts, by worker.
    given: Vec<Option<Vec<f64>>>,
    /// The last completed sum (kept until the next completes, which needs every worker back,
    /// so each has read it by then).
    total: Vec<f64>,
}

/// One worker's place at a meeting.
pub struct Seat {
    meeting: Arc<Meeting>,
    index: usize,
}

/// Seats for `n` workers of one step of this process; with `cluster`, each total is then
/// summed over its processes.
pub fn seats(n: usize, cluster: Option<Cluster>) -> Vec<Arc<Seat>> {
    let n = n.max(1);
    let meeting = Arc::new(Meeting {
        done: AtomicU64::new(0),
        broken: AtomicBool::new(false),
        table: Mutex::new(Table { given: vec![None; n], total: Vec::new() }),
        turn: Condvar::new(),
        cluster,
    });
    (0..n).map(|index| Arc::new(Seat { meeting: meeting.clone(), index })).collect()
}

impl Seat {
    /// Whether a worker left the meeting (it can no longer sum).
    pub fn is_broken(&self) -> bool {
        self.meeting.broken.load(Ordering::Acquire)
    }

    /// This worker will not come to the meeting's next sums: nobody waits for it.
    pub fn leave(&self) {
        let m = &self.meeting;
        m.broken.store(true, Ordering::Release);
        let _guard = m.table.lock();
        m.turn.notify_all();
    }
}

impl Sum for Seat {
    fn sum(&self, v: &mut [f64]) {
        let m = &self.meeting;
        if m.broken.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut t) = m.table.lock() else { return };
        let round = m.done.load(Ordering::Acquire);
        t.given[self.index] = Some(v.to_vec());
        if t.given.iter().all(Option::is_some) {
            let mut total = vec![0.0; v.len()];
            for part in t.given.iter_mut() {
                let part = part.take().unwrap_or_default();
                total.iter_mut().zip(&part).for_each(|(s, &x)| *s += x);
            }
            if let Some(c) = &m.cluster {
                let mut all = vec![0.0; total.len()];
                c.0.all_reduce_sum_f64(&total, &mut all);
                total = all;
            }
            t.total = total;
            m.done.store(round + 1, Ordering::Release);
            m.turn.notify_all();
        } else {
            drop(t);
            let (start, mut spins) = (Instant::now(), 0u32);
            let waiting = || m.done.load(Ordering::Acquire) == round && !m.broken.load(Ordering::Acquire);
            while waiting() {
                if spins < SPINS {
                    spins += 1;
                    std::hint::spin_loop();
                } else if start.elapsed() < AWAKE {
                    std::thread::yield_now();
                } else {
                    break;
                }
            }
            t = match m.table.lock() {
                Ok(t) => t,
                Err(_) => return,
            };
            while waiting() {
                t = match m.turn.wait(t) {
                    Ok(t) => t,
                    Err(_) => return,
                };
            }
            if m.broken.load(Ordering::Acquire) && m.done.load(Ordering::Acquire) == round {
                return;
            }
        }
        v.iter_mut().zip(&t.total).for_each(|(x, &s)| *x = s);
    }
}

/// What a process with no rows of a shared batch does at each of the step's meetings: it
/// brings zeros (adding zero changes no total), so that the processes with rows meet it.
pub fn sit_out(cluster: &Cluster, sizes: &[usize]) {
    for &n in sizes {
        let zeros = vec![0.0; n];
        let mut total = vec![0.0; n];
        cluster.0.all_reduce_sum_f64(&zeros, &mut total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_gets_the_sum_in_worker_order_every_round() {
        for n in [1, 2, 3, 4] {
            let seats = seats(n, None);
            let team = super::super::Team::new(n).expect("a team");
            let mut got = vec![Vec::new(); n];
            let jobs: Vec<_> = seats.iter().zip(got.iter_mut()).collect();
            team.run(jobs, |i, (seat, out)| {
                for round in 0..50 {
                    let mut v = vec![(i + 1) as f64 * 0.1, round as f64];
                    seat.sum(&mut v);
                    out.push(v);
                }
            });
            let expect0 = (1..=n).fold(0.0, |s, i| s + i as f64 * 0.1);
            for g in &got {
                for (round, v) in g.iter().enumerate() {
                    assert_eq!(v[0].to_bits(), expect0.to_bits());
                    assert_eq!(v[1], (round * n) as f64);
                }
            }
        }
    }

    #[test]
    fn a_worker_that_leaves_releases_the_others() {
        let seats = seats(2, None);
        let team = super::super::Team::new(2).expect("a team");
        team.run(vec![0, 1], |i, _| {
            if i == 0 {
                std::thread::sleep(Duration::from_millis(20));
                seats[0].leave();
            } else {
                let mut v = vec![1.0];
                seats[1].sum(&mut v);
                assert_eq!(v, vec![1.0]);
            }
        });
    }
}
