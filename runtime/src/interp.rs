//! Executes a [`Plan`]: walks its steps and runs each ([`Step::run`] dispatches to the
//! step's function in [`crate::ops`]). This is the living specification of what a plan
//! means; generated code makes the same calls.

use crate::mem::{Cx, Mem, Peers};
use crate::plan::{ABuf, Plan, Space, Step};
use crate::Float;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use crate::mem::ExecError;

/// Called at the plan's `Update` step with the parameters and their gradients.
pub trait Updater<T> {
    /// Updates `params` from `grads`.
    fn update(&mut self, params: &mut [T], grads: &[T]);
}

/// The memory a plan runs in: the arena, the inputs and target of the batch, the parameters
/// and their gradients.
pub struct Exec<T> {
    /// Every intermediate buffer of the plan, at its planned offset; it starts on a cache
    /// line, so that threads that write different lines of a buffer's rows never share one.
    pub arena: crate::mem::Aligned<T>,
    /// The batch's inputs, one buffer per model input (each on a cache line).
    pub inputs: Vec<crate::mem::Aligned<T>>,
    /// The batch's targets.
    pub target: Vec<T>,
    /// The parameters, at the offsets of the plan's table, starting on a cache line (the
    /// dense tiles read rows of W as vectors).
    pub params: crate::mem::Aligned<T>,
    /// Their gradients, at the same offsets, starting on a cache line.
    pub grads: crate::mem::Aligned<T>,
    /// The length of each example's sequence in the batch, for a plan that reads sequences
    /// of different lengths (empty: every sequence is as long as the plan's).
    pub lengths: Vec<usize>,
    /// Threads to split the large dense products of a run over (`None`: the calling thread
    /// alone). The results are the same bits with or without.
    pub team: Option<std::sync::Arc<crate::train::Team>>,
    /// The other workers of a data-parallel step, for steps that need sums over the whole
    /// batch (`None`: this memory holds every row of its batch).
    pub peers: Option<std::sync::Arc<dyn crate::mem::Sum>>,
    /// This worker's weight in the batch's mean loss (1: the whole batch).
    pub share: f64,
    /// When set, every run adds each step's time to it (the update's slot gets the
    /// optimizer's time): what `nnlangc bench` reports. `None` costs nothing.
    pub timings: Option<crate::profile::Timings>,
    rng: ChaCha8Rng,
}

impl<T: Float> Exec<T> {
    /// Memory for `plan` (at most [`MAX_INPUTS`] inputs), with zero parameters (see the
    /// trainer's initialization) and a dropout generator seeded with `seed`.
    pub fn new(plan: &Plan, seed: u64) -> Self {
        Exec {
            arena: crate::mem::aligned(plan.arena_len),
            inputs: plan.inputs.iter().map(|b| crate::mem::aligned(b.cols * plan.max_batch)).collect(),
            target: plan.target.map_or(Vec::new(), |(t, _)| vec![T::ZERO; t.cols * plan.max_batch]),
            params: crate::mem::aligned(plan.params_len),
            grads: crate::mem::aligned(plan.params_len),
            lengths: Vec::new(),
            team: None,
            peers: None,
            share: 1.0,
            timings: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Where the dropout generator is in its stream (to resume training exactly).
    pub fn rng_position(&self) -> u128 {
        self.rng.get_word_pos()
    }

    /// Moves the dropout generator to a position from [`Exec::rng_position`].
    pub fn set_rng_position(&mut self, pos: u128) {
        self.rng.set_word_pos(pos);
    }

    /// Restarts the dropout generator (a gradient check needs the same masks every run).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Sets one model input for a batch of `rows` (row-major, `rows × cols`).
    pub fn set_input(&mut self, plan: &Plan, index: usize, rows: usize, data: &[T]) {
        let n = rows * plan.inputs[index].cols;
        self.inputs[index][..n].copy_from_slice(&data[..n]);
    }

    /// Gives back the batch memory (arena, inputs, target) of an executor whose batches other
    /// executors run — the master of a data-parallel step, whose workers have their own —
    /// until [`Exec::ensure_memory`] takes it again.
    pub fn release_memory(&mut self) {
        self.arena = crate::mem::aligned(0);
        self.inputs.iter_mut().for_each(|b| *b = crate::mem::aligned(0));
        self.target = Vec::new();
    }

    /// The batch memory `plan` needs, allocated again if [`Exec::release_memory`] gave it
    /// back (zeroed: carried states start new streams).
    pub fn ensure_memory(&mut self, plan: &Plan) {
        if self.arena.len() < plan.arena_len {
            self.arena = crate::mem::aligned(plan.arena_len);
        }
        for (b, i) in self.inputs.iter_mut().zip(&plan.inputs) {
            if b.len() < i.cols * plan.max_batch {
                *b = crate::mem::aligned(i.cols * plan.max_batch);
            }
        }
        if let Some((t, _)) = plan.target.filter(|(t, _)| self.target.len() < t.cols * plan.max_batch) {
            self.target = vec![T::ZERO; t.cols * plan.max_batch];
        }
    }

    /// Starts new streams: the carried recurrent states of every row become zero.
    pub fn reset_state(&mut self, plan: &Plan) {
        if self.arena.len() < plan.arena_len {
            // Released: it holds no states (they start at zero when it is taken again).
            return;
        }
        for b in &plan.carried {
            self.arena[b.range(plan.max_batch)].fill(T::ZERO);
        }
    }

    /// Sets each example's sequence length for the next batches (empty: all full length).
    pub fn set_lengths(&mut self, lengths: &[usize]) {
        self.lengths.clear();
        self.lengths.extend_from_slice(lengths);
    }

    /// Copies `rows` rows of targets into the target buffer.
    pub fn set_target(&mut self, plan: &Plan, rows: usize, data: &[T]) {
        if let Some((b, _)) = plan.target {
            let n = rows * b.cols;
            self.target[..n].copy_from_slice(&data[..n]);
        }
    }

    /// The model's output for `rows` rows, after a run.
    pub fn output(&self, plan: &Plan, rows: usize) -> &[T] {
        self.buffer(plan.output, rows)
    }

    /// The first `rows` rows of the buffer `b`.
    pub fn buffer(&self, b: ABuf, rows: usize) -> &[T] {
        let r = b.range(rows);
        match b.space {
            Space::Arena => &self.arena[r],
            Space::Input(i) => &self.inputs[i][r],
            Space::Target => &self.target[r],
        }
    }

    /// Runs every step for a batch of `rows` on the inputs and target set with
    /// [`Exec::set_input`] and [`Exec::set_target`]. Returns the loss if the plan has one.
    pub fn run(
        &mut self,
        plan: &Plan,
        rows: usize,
        updater: Option<&mut dyn Updater<T>>,
    ) -> Result<Option<f64>, ExecError> {
        let inputs = std::mem::take(&mut self.inputs);
        let target = std::mem::take(&mut self.target);
        let result = {
            let mut slots: [&[T]; MAX_INPUTS] = [&[]; MAX_INPUTS];
            for (s, v) in slots.iter_mut().zip(&inputs) {
                *s = v;
            }
            self.run_on(plan, rows, &slots[..inputs.len().min(MAX_INPUTS)], &target, updater)
        };
        self.inputs = inputs;
        self.target = target;
        result
    }

    /// Runs every step on inputs and a target held by the caller (row-major, `rows` rows
    /// each): nothing is copied. Returns the loss if the plan has one.
    pub fn run_on(
        &mut self,
        plan: &Plan,
        rows: usize,
        inputs: &[&[T]],
        target: &[T],
        updater: Option<&mut dyn Updater<T>>,
    ) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        check_batch(plan, rows, inputs, target);
        // Every step but the update (which runs nothing there), then the update: it writes
        // the parameters the other steps read, and the planner puts it last.
        let loss = run_steps(
            plan,
            rows,
            Memory {
                exec_arena: &mut self.arena,
                params: &self.params,
                grads: &mut self.grads,
                rng: &mut self.rng,
                lengths: &self.lengths,
                team: self.team.as_deref(),
                peers: Peers { group: self.peers.as_deref(), share: self.share },
                timings: self.timings.as_mut(),
            },
            inputs,
            target,
            None,
        )?;
        debug_assert!(!plan.steps.iter().rev().skip(1).any(|s| matches!(s, Step::Update)), "the update is last");
        if let (Some(Step::Update), Some(u)) = (plan.steps.last(), updater) {
            let started = self.timings.is_some().then(crate::time::Instant::now);
            u.update(&mut self.params, &self.grads);
            if let (Some(t), Some(s)) = (self.timings.as_mut(), started) {
                t.add_update(s.elapsed().as_secs_f64());
            }
        }
        Ok(loss)
    }

    /// Runs every step but the update on the inputs and target set with [`Exec::set_input`]
    /// and [`Exec::set_target`], calling `after` with each step, the rows it worked on and
    /// read access to every buffer as the step left them (later steps may reuse the memory).
    pub fn run_watched(
        &mut self,
        plan: &Plan,
        rows: usize,
        after: &mut Watcher<'_, T>,
    ) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        let mut slots: [&[T]; MAX_INPUTS] = [&[]; MAX_INPUTS];
        for (s, v) in slots.iter_mut().zip(&self.inputs) {
            *s = v;
        }
        let inputs = &slots[..self.inputs.len().min(MAX_INPUTS)];
        let mem = Memory {
            exec_arena: &mut self.arena,
            params: &self.params,
            grads: &mut self.grads,
            rng: &mut self.rng,
            lengths: &self.lengths,
            team: self.team.as_deref(),
            peers: Peers { group: self.peers.as_deref(), share: self.share },
            timings: self.timings.as_mut(),
        };
        run_steps(plan, rows, mem, inputs, &self.target, Some(after))
    }

    /// An inference run on inputs held by the caller, with `after` seeing every step (as
    /// [`Exec::run_watched`]).
    pub fn run_on_watched(
        &mut self,
        plan: &Plan,
        rows: usize,
        inputs: &[&[T]],
        after: Option<&mut Watcher<'_, T>>,
    ) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        check_batch(plan, rows, inputs, &[]);
        let mem = Memory {
            exec_arena: &mut self.arena,
            params: &self.params,
            grads: &mut self.grads,
            rng: &mut self.rng,
            lengths: &self.lengths,
            team: self.team.as_deref(),
            peers: Peers { group: self.peers.as_deref(), share: self.share },
            timings: self.timings.as_mut(),
        };
        run_steps(plan, rows, mem, inputs, &[], after)
    }

    /// Runs every step but the update, with parameters, inputs and target held elsewhere (a
    /// data-parallel worker reads the master's weights and its share of the batch).
    pub fn run_shared(
        &mut self,
        plan: &Plan,
        rows: usize,
        params: &[T],
        inputs: &[&[T]],
        target: &[T],
    ) -> Result<Option<f64>, ExecError> {
        check_rows(plan, rows);
        check_batch(plan, rows, inputs, target);
        let mem = Memory {
            exec_arena: &mut self.arena,
            params,
            grads: &mut self.grads,
            rng: &mut self.rng,
            lengths: &self.lengths,
            team: self.team.as_deref(),
            peers: Peers { group: self.peers.as_deref(), share: self.share },
            timings: self.timings.as_mut(),
        };
        run_steps(plan, rows, mem, inputs, target, None)
    }
}

/// What sees each step of a watched run: the step's index in the plan and the step, the rows
/// it worked on, every buffer as it left them, and the batch's sequence lengths.
pub type Watcher<'w, T> = dyn FnMut(usize, &Step, usize, &crate::mem::Reads<'_, T>, &[usize]) + 'w;

/// What one run works in: an executor's memory, and the parameters it reads.
struct Memory<'a, T> {
    exec_arena: &'a mut [T],
    params: &'a [T],
    grads: &'a mut [T],
    rng: &'a mut ChaCha8Rng,
    lengths: &'a [usize],
    team: Option<&'a crate::train::Team>,
    peers: Peers<'a>,
    timings: Option<&'a mut crate::profile::Timings>,
}

/// Runs every step of `plan` (the update runs nothing) on `rows` rows; `after`, if given,
/// sees each step, the rows it worked on and every buffer as the step left them.
fn run_steps<T: Float>(
    plan: &Plan,
    rows: usize,
    m: Memory<'_, T>,
    inputs: &[&[T]],
    target: &[T],
    mut after: Option<&mut Watcher<'_, T>>,
) -> Result<Option<f64>, ExecError> {
    let lengths = crate::mem::batch_lengths(m.lengths, rows, plan.sequence.map_or(0, |s| s.steps));
    let mut cx = Cx {
        rows,
        batch: rows,
        steps: 1,
        lengths,
        mem: Mem { arena: m.exec_arena, inputs, target },
        params: m.params,
        grads: m.grads,
        rng: m.rng,
        loss: None,
        team: m.team,
        peers: m.peers,
    };
    let mut timings = m.timings;
    if let Some(t) = timings.as_deref_mut() {
        t.seconds.resize(plan.steps.len(), 0.0);
    }
    let mut started = timings.is_some().then(crate::time::Instant::now);
    for (i, s) in plan.steps.iter().enumerate() {
        s.run(&mut cx)?;
        if let (Some(t), Some(at)) = (timings.as_deref_mut(), started.as_mut()) {
            let now = crate::time::Instant::now();
            t.seconds[i] += now.duration_since(*at).as_secs_f64();
            *at = now;
        }
        if let Some(f) = after.as_deref_mut() {
            f(i, s, cx.rows, &cx.mem.all(), cx.lengths);
            if let Some(at) = started.as_mut() {
                *at = crate::time::Instant::now();
            }
        }
    }
    if let Some(t) = timings {
        t.runs += 1;
    }
    Ok(cx.loss)
}

/// The caller's batch must hold what the plan reads.
fn check_batch<T>(plan: &Plan, rows: usize, inputs: &[&[T]], target: &[T]) {
    assert_eq!(inputs.len(), plan.inputs.len(), "the plan reads {} inputs", plan.inputs.len());
    for (b, x) in plan.inputs.iter().zip(inputs) {
        assert!(x.len() >= rows * b.cols, "an input needs {rows} rows of {} values", b.cols);
    }
    if let Some((t, _)) = plan.target {
        assert!(target.len() >= rows * t.cols, "the target needs {rows} rows of {} values", t.cols);
    }
}

/// The most inputs a model may have.
pub const MAX_INPUTS: usize = 16;

fn check_rows(plan: &Plan, rows: usize) {
    assert!(rows >= 1 && rows <= plan.max_batch, "batch of {rows} rows for a plan of at most {}", plan.max_batch);
}

/// The class of each row: the index of its largest output.
pub fn argmax_rows<T: Float>(cols: usize, y: &[T]) -> Vec<usize> {
    y.chunks_exact(cols)
        .map(|r| {
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}
