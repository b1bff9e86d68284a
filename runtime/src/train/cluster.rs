//! Training over several processes (MPI ranks): what the training step needs of the engine
//! that connects them. The runtime knows only this trait; `nnlangc` implements it over MPI
//! when built with its `mpi` feature.
//!
//! The scheme is the threads' one, spread over processes: every process holds the whole
//! model and the same weights; a batch is cut into as many shares as there are processes
//! (as `--threads N` cuts it into N), each process reads and computes only its share, and one
//! all-reduce per step sums the weighted gradients over a flat buffer. Every process then
//! applies the same update, so the weights stay identical everywhere without being sent.

use std::sync::Arc;

/// The processes of a distributed run, and the collective operations the training step uses.
/// Every process must make the same calls in the same order (they are collective).
pub trait Collective: Send + Sync {
    /// This process's number, `0..size()`.
    fn rank(&self) -> usize;
    /// How many processes take part.
    fn size(&self) -> usize;
    /// `recv = Σ over the processes of send`, element by element, summed in rank order from
    /// zero — `((0 + send₀) + send₁) + …`, the order `--threads` sums its workers' gradients
    /// in, so that N processes train bit for bit as N threads do. `recv` is the same on every
    /// process; both slices have the same length everywhere.
    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]);
    /// [`Collective::all_reduce_sum`] in double precision (batch statistics).
    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]);
    /// Every process's `local` (of the same length everywhere), concatenated in rank order.
    fn all_gather(&self, local: &[u64]) -> Vec<u64>;
    /// Every process's bytes (of any length), in rank order.
    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>>;
}

/// A shared handle on the processes of a run (compared by identity).
#[derive(Clone)]
pub struct Cluster(pub Arc<dyn Collective>);

impl Cluster {
    /// This process's number.
    pub fn rank(&self) -> usize {
        self.0.rank()
    }

    /// How many processes take part.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// Whether this is the process that reports and writes (rank 0).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Checks that every process describes its run the same way (`what`: model, data and
    /// recipe as numbers); names the first process that differs from rank 0.
    pub fn agree(&self, what: &[u64]) -> Result<(), usize> {
        let digest = what.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &v| (h ^ v).wrapping_mul(0x0100_0000_01b3));
        let all = self.0.all_gather(&[digest]);
        match all.iter().position(|&d| d != all[0]) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(rank {} of {})", self.rank(), self.size())
    }
}

impl PartialEq for Cluster {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Processes simulated by threads of one program, for tests of the distributed step without
/// MPI: [`Local::group`] makes `n` handles that meet at each collective call.
pub struct Local {
    rank: usize,
    shared: Arc<Meeting>,
}

struct Meeting {
    size: usize,
    state: std::sync::Mutex<Round>,
    turn: std::sync::Condvar,
}

/// Where the collective calls stand.
struct Round {
    /// How many calls completed.
    done: u64,
    /// This call's contributions, by rank.
    given: Vec<Option<Vec<u8>>>,
    /// The last completed call's contributions.
    result: Vec<Vec<u8>>,
}

impl Local {
    /// `n` processes' handles (move each to its own thread).
    pub fn group(n: usize) -> Vec<Local> {
        let n = n.max(1);
        let shared = Arc::new(Meeting {
            size: n,
            state: std::sync::Mutex::new(Round { done: 0, given: vec![None; n], result: Vec::new() }),
            turn: std::sync::Condvar::new(),
        });
        (0..n).map(|rank| Local { rank, shared: shared.clone() }).collect()
    }

    /// Every process's bytes, in rank order: each call waits for all `n`.
    fn exchange(&self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        let m = &self.shared;
        let Ok(mut st) = m.state.lock() else { return Vec::new() };
        // A round's result stays until the next round completes, which needs every process
        // back, so each has read it by then.
        let round = st.done;
        st.given[self.rank] = Some(bytes);
        if st.given.iter().all(Option::is_some) {
            st.result = st.given.iter_mut().map(|b| b.take().unwrap_or_default()).collect();
            st.done += 1;
            m.turn.notify_all();
        } else {
            while st.done == round {
                st = match m.turn.wait(st) {
                    Ok(s) => s,
                    Err(_) => return Vec::new(),
                };
            }
        }
        st.result.clone()
    }
}

impl Collective for Local {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        let bytes = send.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.exchange(bytes);
        recv.fill(0.0);
        for b in &all {
            for (r, c) in recv.iter_mut().zip(b.chunks_exact(4)) {
                *r += f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }

    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) {
        let bytes = send.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.exchange(bytes);
        recv.fill(0.0);
        for b in &all {
            for (r, c) in recv.iter_mut().zip(b.chunks_exact(8)) {
                *r += f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            }
        }
    }

    fn all_gather(&self, local: &[u64]) -> Vec<u64> {
        let bytes = local.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.exchange(bytes)
            .iter()
            .flat_map(|b| {
                b.chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            })
            .collect()
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        self.exchange(local.to_vec())
    }
}
