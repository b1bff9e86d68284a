//! Joining the other processes of `mpirun -n N nnlangc train|search` (built with the `mpi`
//! feature): the runtime's [`Collective`](nnlang_runtime::train::Collective) over MPI's world
//! communicator. Without the feature, a launch over several processes is refused rather than
//! run N times side by side.

use crate::Failure;
use nnlang_runtime::train::Cluster;
#[cfg(feature = "mpi")]
use nnlang_runtime::train::Collective;

/// How many processes the launcher started, as it tells them (Open MPI, or an MPICH/Slurm
/// style PMI).
pub fn launched() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// This process's place in a distributed run, when it is one (MPI stays open until it is
/// dropped, after every [`Cluster`] handle).
pub struct Joined {
    /// The handle the training and the search share.
    pub cluster: Cluster,
    #[cfg(feature = "mpi")]
    mpi: std::sync::Arc<Mpi>,
}

impl Joined {
    /// Ends every process of the run at once with `code` (after an error on this one, the
    /// others may be waiting on it in a collective call: finalizing would hang).
    pub fn abort(&self, code: u8) -> ! {
        #[cfg(feature = "mpi")]
        {
            use mpi::traits::Communicator;
            self.mpi.universe.world().abort(i32::from(code))
        }
        #[cfg(not(feature = "mpi"))]
        std::process::exit(i32::from(code))
    }
}

/// Joins the run when launched over several processes; `None` when this process runs alone.
pub fn join(command: &str) -> Result<Option<Joined>, Failure> {
    let Some(n) = launched().filter(|&n| n > 1) else { return Ok(None) };
    #[cfg(feature = "mpi")]
    {
        let _ = command;
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or_else(|| {
            Failure::Usage(format!("launched as one of {n} processes, but MPI could not be initialized"))
        })?;
        let mpi = std::sync::Arc::new(Mpi::new(universe));
        crate::say::set_process(mpi.rank, mpi.size);
        Ok(Some(Joined { cluster: Cluster(mpi.clone()), mpi }))
    }
    #[cfg(not(feature = "mpi"))]
    Err(Failure::Usage(format!(
        "launched as one of {n} processes (mpirun), but this nnlangc was built without MPI: each process would run `{command}` alone over the same files. Build it with `--features mpi` (docs/scaling.md)"
    )))
}

/// Values per message of the chained sum (256 KiB).
#[cfg(feature = "mpi")]
const CHUNK: usize = 1 << 18;

/// MPI's world, the runtime's collectives over it.
#[cfg(feature = "mpi")]
struct Mpi {
    universe: mpi::environment::Universe,
    rank: usize,
    size: usize,
}

#[cfg(feature = "mpi")]
impl Mpi {
    fn new(universe: mpi::environment::Universe) -> Mpi {
        use mpi::traits::Communicator;
        let world = universe.world();
        let (rank, size) = (world.rank().max(0) as usize, world.size().max(1) as usize);
        Mpi { universe, rank, size }
    }
}

#[cfg(feature = "mpi")]
impl Mpi {
    fn chain_sum<T>(&self, send: &[T], recv: &mut [T])
    where
        T: mpi::datatype::Equivalence + Copy + Default + std::ops::AddAssign,
        [T]: mpi::datatype::Buffer + mpi::datatype::BufferMut,
    {
        use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
        use mpi::point_to_point::{Destination, Source};
        use mpi::traits::Communicator;
        let world = self.universe.world();
        if self.size == 2 {
            world.all_reduce_into(send, recv, SystemOperation::sum());
            return;
        }
        let (rank, last) = (self.rank, self.size - 1);
        let n = send.len().min(recv.len());
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            let (mine, partial) = (&send[start..end], &mut recv[start..end]);
            if rank == 0 {
                // 0 + x, as the threads' sum starts from zero.
                partial.iter_mut().zip(mine).for_each(|(p, &x)| {
                    *p = T::default();
                    *p += x;
                });
            } else {
                world.process_at_rank((rank - 1) as i32).receive_into(partial);
                partial.iter_mut().zip(mine).for_each(|(p, &x)| *p += x);
            }
            if rank < last {
                world.process_at_rank((rank + 1) as i32).send(&*partial);
            }
            start = end;
        }
        world.process_at_rank(last as i32).broadcast_into(&mut recv[..n]);
    }
}

#[cfg(feature = "mpi")]
impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    /// The sum in rank order, as `--threads` forms it, whatever MPI's own reduction
    /// algorithms would choose (over three or more processes they may regroup the terms, and a
    /// last-bit difference grows over a training run). Two processes: MPI's all-reduce (a sum
    /// of two terms is the same either way round). More: a chain — each process receives the
    /// partial sums of the processes before it, adds its own and passes them on, a chunk at a
    /// time so that the processes work at once — then a broadcast of the total from the last
    /// process: about 2 × the gradient's bytes per process, where a ring all-reduce moves
    /// 2 (N − 1)/N ×.
    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        self.chain_sum(send, recv);
    }

    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) {
        self.chain_sum(send, recv);
    }

    fn all_gather(&self, local: &[u64]) -> Vec<u64> {
        use mpi::collective::CommunicatorCollectives;
        let mut out = vec![0u64; local.len() * self.size];
        self.universe.world().all_gather_into(local, &mut out[..]);
        out
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        use mpi::collective::CommunicatorCollectives;
        use mpi::datatype::PartitionMut;
        let world = self.universe.world();
        let mut counts = vec![0i32; self.size];
        let mine = i32::try_from(local.len()).unwrap_or(i32::MAX);
        world.all_gather_into(&mine, &mut counts[..]);
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |at, &c| {
                let d = *at;
                *at = at.saturating_add(c);
                Some(d)
            })
            .collect();
        let total: usize = counts.iter().map(|&c| c.max(0) as usize).sum();
        let mut buf = vec![0u8; total];
        // (Nothing to send anywhere: every process knows it, and MPI refuses empty buffers.)
        if total > 0 {
            let mut partition = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            world.all_gather_varcount_into(local, &mut partition);
        }
        let mut out = Vec::with_capacity(self.size);
        let mut at = 0;
        for &c in &counts {
            let c = c.max(0) as usize;
            out.push(buf[at..at + c].to_vec());
            at += c;
        }
        out
    }
}
