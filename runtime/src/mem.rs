//! The memory one step sees while it runs ([`Cx`]), and the helpers that hand a step the
//! buffer it writes beside read access to everything else ([`Mem::split`], [`Mem::split2`]).
//!
//! This module knows nothing of steps or kernels: the interpreter, [`crate::ops`] and
//! generated code all build on it, and it imports none of them.

use crate::plan::{ABuf, Space};
use crate::Float;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// A run that could not complete: a problem in the data, not in the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecError {
    /// Row `row` of the batch (at step `step` of its sequence, for a loss at every step) has
    /// a class label outside `0..classes`.
    LabelOutOfRange {
        /// The row of the batch.
        row: usize,
        /// The step of its sequence, for a loss at every step.
        step: Option<usize>,
        /// The label found.
        label: f64,
        /// The model's number of classes.
        classes: usize,
    },
    /// Row `row` of the batch (at step `step` of its sequence, at place `place` of the row's
    /// ids) holds a token id that is not a whole number in `0..vocab`.
    IdOutOfRange {
        /// The row of the batch.
        row: usize,
        /// The step of its sequence, for an embedding at every step.
        step: Option<usize>,
        /// The place among the row's ids, when it holds several.
        place: Option<usize>,
        /// The value found.
        id: f64,
        /// The embedding's vocabulary.
        vocab: usize,
    },
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::LabelOutOfRange { row, step, label, classes } => {
                let at = step.map_or(String::new(), |t| format!(" at step {}", t + 1));
                write!(
                    f,
                    "row {row} of the batch has label {label}{at}, outside the {classes} classes 0..{}",
                    classes.saturating_sub(1)
                )
            }
            ExecError::IdOutOfRange { row, step, place, id, vocab } => {
                let step = step.map_or(String::new(), |t| format!(" at step {}", t + 1));
                let place = place.map_or(String::new(), |k| format!(" at place {}", k + 1));
                write!(
                    f,
                    "row {row} of the batch has token id {id}{step}{place}, outside the vocabulary of {vocab} ids 0..{}",
                    vocab.saturating_sub(1)
                )
            }
        }
    }
}

impl std::error::Error for ExecError {}

impl ExecError {
    /// The same error for a batch that starts `rows` rows later (a worker's share).
    pub fn shifted(self, rows: usize) -> ExecError {
        match self {
            ExecError::LabelOutOfRange { row, step, label, classes } => {
                ExecError::LabelOutOfRange { row: row + rows, step, label, classes }
            }
            ExecError::IdOutOfRange { row, step, place, id, vocab } => {
                ExecError::IdOutOfRange { row: row + rows, step, place, id, vocab }
            }
        }
    }
}

/// Which rows of a step's batch count: every row, or, where a layer works at every step of
/// sequences of different lengths, the rows of steps inside their sequence (the others are
/// padding, whose values nothing reads and whose gradients are zero).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// Rows per example: a sequence's steps, or 1.
    pub steps: usize,
    /// Each example's length (empty: every example has `steps`).
    pub lengths: &'a [usize],
}

impl Rows<'_> {
    /// Whether row `r` (example `r / steps`, step `r % steps`) is inside its sequence.
    pub fn valid(&self, r: usize) -> bool {
        self.steps <= 1 || self.lengths.is_empty() || r % self.steps < self.lengths[r / self.steps]
    }
    /// The rows that count among the first `rows`.
    pub fn count(&self, rows: usize) -> usize {
        if self.steps <= 1 || self.lengths.is_empty() {
            rows
        } else {
            (0..rows).filter(|&r| self.valid(r)).count()
        }
    }
    /// Where row `r` is: its example, and its step when the rows are steps.
    pub fn place(&self, r: usize) -> (usize, Option<usize>) {
        if self.steps <= 1 {
            (r, None)
        } else {
            (r / self.steps, Some(r % self.steps))
        }
    }
}

/// The batch memory: the arena, the model inputs and the target (the last two read only,
/// where the caller holds them).
pub struct Mem<'a, T> {
    /// The arena.
    pub arena: &'a mut [T],
    /// The batch's inputs.
    pub inputs: &'a [&'a [T]],
    /// The batch's targets.
    pub target: &'a [T],
}

/// Memory that starts on a cache line (64 bytes): where the kernels read rows as vectors, a
/// vector that straddles two lines costs two loads.
pub type Aligned<T> = aligned_vec::AVec<T, aligned_vec::ConstAlign<64>>;

/// `len` zeros, starting on a cache line.
pub fn aligned<T: Copy + Default>(len: usize) -> Aligned<T> {
    aligned_vec::AVec::from_iter(64, std::iter::repeat_n(T::default(), len))
}

/// Everything one step may touch: the batch size, the batch memory, the parameters and
/// their gradients, the dropout generator, and where a loss step leaves the loss.
pub struct Cx<'a, T> {
    /// Rows the next step works on: the batch, or, for a layer that works at every step of
    /// a sequence, `batch × steps` (set by the step `PerStep`).
    pub rows: usize,
    /// Examples in the batch (1..=the plan's `max_batch`).
    pub batch: usize,
    /// Rows per example for the next step (1, or a sequence's steps).
    pub steps: usize,
    /// The length of each example's sequence, for a plan that reads sequences of different
    /// lengths; empty when every sequence has the plan's length.
    pub lengths: &'a [usize],
    /// The batch memory.
    pub mem: Mem<'a, T>,
    /// The parameters.
    pub params: &'a [T],
    /// Parameter gradients (empty for an inference plan).
    pub grads: &'a mut [T],
    /// Draws dropout masks.
    pub rng: &'a mut ChaCha8Rng,
    /// Set by the loss step.
    pub loss: Option<f64>,
    /// Threads to split large dense products over (`None`: the calling thread alone); the
    /// results are the same bits either way ([`crate::kernels::dense`]).
    pub team: Option<&'a crate::train::Team>,
    /// The other workers computing shares of the same batch, for a step whose values depend
    /// on the whole batch (batch normalization's statistics); [`Peers::ALONE`] otherwise.
    pub peers: Peers<'a>,
}

/// A sum over every worker of a data-parallel step (threads of this process, and the
/// processes of a distributed run), in worker order from zero: every worker calls it with a
/// vector of the same length at the same point of the same step, and each gets the same
/// total back.
pub trait Sum: Send + Sync {
    /// Replaces `v` by the sum of every worker's `v`.
    fn sum(&self, v: &mut [f64]);
}

/// The workers a step's batch is shared with, and this worker's part of the batch.
#[derive(Clone, Copy)]
pub struct Peers<'a> {
    /// The meeting of the workers (`None`: this worker holds the whole batch).
    pub group: Option<&'a dyn Sum>,
    /// This worker's weight in the batch's mean loss (its rows, or steps, over the whole
    /// batch's): its gradients are of its own mean, `1/share` times its part of the batch's.
    pub share: f64,
}

impl Peers<'_> {
    /// A worker that holds the whole batch.
    pub const ALONE: Peers<'static> = Peers { group: None, share: 1.0 };

    /// Replaces `v` by its sum over the batch's workers (unchanged alone).
    pub fn sum(&self, v: &mut [f64]) {
        if let Some(g) = self.group {
            g.sum(v);
        }
    }
}

impl<T> Cx<'_, T> {
    /// Which of the rows count (all but the padding of shorter sequences).
    pub fn valid_rows(&self) -> Rows<'_> {
        Rows { steps: self.steps, lengths: self.lengths }
    }
    /// The length of example `r`'s sequence, of a plan of `steps` steps.
    pub fn length(&self, r: usize, steps: usize) -> usize {
        self.lengths.get(r).map_or(steps, |&l| l.min(steps))
    }
}

/// Three buffers a step writes, and read access to everything else ([`Mem::split3`]).
pub type Split3<'a, T> = (&'a mut [T], &'a mut [T], &'a mut [T], Reads<'a, T>);

/// Read access to everything but the one, two or three arena ranges a step writes.
pub struct Reads<'a, T> {
    /// Readable stretches of the arena: (start offset, slice).
    segs: [(usize, &'a [T]); 4],
    inputs: &'a [&'a [T]],
    target: &'a [T],
}

impl<'a, T> Reads<'a, T> {
    /// The first `rows` rows of buffer `b`.
    pub fn get(&self, b: ABuf, rows: usize) -> &'a [T] {
        let r = b.range(rows);
        match b.space {
            Space::Input(i) => &self.inputs[i][r],
            Space::Target => &self.target[r],
            Space::Arena => {
                for &(start, seg) in &self.segs {
                    if start <= r.start && r.end <= start.saturating_add(seg.len()) {
                        return &seg[r.start - start..r.end - start];
                    }
                }
                panic!("a step reads a buffer it writes");
            }
        }
    }
}

impl<'a, T> Mem<'a, T> {
    /// Read access to everything (for a step that writes only parameter gradients).
    pub fn all(&self) -> Reads<'_, T> {
        Reads {
            segs: [(0, &*self.arena), (usize::MAX, &[]), (usize::MAX, &[]), (usize::MAX, &[])],
            inputs: self.inputs,
            target: self.target,
        }
    }

    /// The arena range `w` (`rows` rows, which the step writes) and read access to
    /// everything else.
    pub fn split(&mut self, w: ABuf, rows: usize) -> (&mut [T], Reads<'_, T>) {
        assert_eq!(w.space, Space::Arena, "steps write only the arena");
        let w = w.range(rows);
        let (left, rest) = self.arena.split_at_mut(w.start);
        let (mid, right) = rest.split_at_mut(w.end - w.start);
        (
            mid,
            Reads {
                segs: [(0, left), (w.end, right), (usize::MAX, &[]), (usize::MAX, &[])],
                inputs: self.inputs,
                target: self.target,
            },
        )
    }

    /// Two disjoint arena ranges `a` (`rows` rows) and `b` (all of it: a workspace), and
    /// read access to everything else.
    pub fn split2(&mut self, a: ABuf, rows: usize, b: ABuf) -> (&mut [T], &mut [T], Reads<'_, T>) {
        self.split_ranges(a, a.range(rows), b, b.offset..b.offset + b.cols)
    }

    /// Two disjoint buffers of `rows` rows each, and read access to everything else.
    pub fn split_rows2(&mut self, a: ABuf, b: ABuf, rows: usize) -> (&mut [T], &mut [T], Reads<'_, T>) {
        self.split_ranges(a, a.range(rows), b, b.range(rows))
    }

    fn split_ranges(
        &mut self,
        a: ABuf,
        ra: std::ops::Range<usize>,
        b: ABuf,
        rb: std::ops::Range<usize>,
    ) -> (&mut [T], &mut [T], Reads<'_, T>) {
        assert!(a.space == Space::Arena && b.space == Space::Arena, "steps write only the arena");
        assert!(ra.end <= rb.start || rb.end <= ra.start, "two written buffers overlap");
        let (first, second, swap) = if ra.start <= rb.start { (ra, rb, false) } else { (rb, ra, true) };
        let (l, rest) = self.arena.split_at_mut(first.start);
        let (m1, rest) = rest.split_at_mut(first.end - first.start);
        let (between, rest) = rest.split_at_mut(second.start - first.end);
        let (m2, right) = rest.split_at_mut(second.end - second.start);
        let reads = Reads {
            segs: [(0, l), (first.end, between), (second.end, right), (usize::MAX, &[])],
            inputs: self.inputs,
            target: self.target,
        };
        if swap {
            (m2, m1, reads)
        } else {
            (m1, m2, reads)
        }
    }

    /// Three disjoint arena buffers — `a` and `b` of `rows` rows, `c` whole (a workspace: its
    /// length is `c.cols`; or of `rows` rows too when `c_rows`) — and read access to
    /// everything else.
    pub fn split3(&mut self, a: ABuf, b: ABuf, c: ABuf, rows: usize, c_rows: bool) -> Split3<'_, T> {
        let rc = if c_rows { c.range(rows) } else { c.offset..c.offset + c.cols };
        let mut ranges = [(a.range(rows), 0usize), (b.range(rows), 1), (rc, 2)];
        assert!([a, b, c].iter().all(|x| x.space == Space::Arena), "steps write only the arena");
        ranges.sort_by_key(|(r, _)| r.start);
        assert!(
            ranges[0].0.end <= ranges[1].0.start && ranges[1].0.end <= ranges[2].0.start,
            "three written buffers overlap"
        );
        let [(r0, i0), (r1, i1), (r2, i2)] = ranges;
        let (l, rest) = self.arena.split_at_mut(r0.start);
        let (m0, rest) = rest.split_at_mut(r0.end - r0.start);
        let (g0, rest) = rest.split_at_mut(r1.start - r0.end);
        let (m1, rest) = rest.split_at_mut(r1.end - r1.start);
        let (g1, rest) = rest.split_at_mut(r2.start - r1.end);
        let (m2, right) = rest.split_at_mut(r2.end - r2.start);
        let reads = Reads {
            segs: [(0, l), (r0.end, g0), (r1.end, g1), (r2.end, right)],
            inputs: self.inputs,
            target: self.target,
        };
        let mut out: [Option<&mut [T]>; 3] = [None, None, None];
        out[i0] = Some(m0);
        out[i1] = Some(m1);
        out[i2] = Some(m2);
        let [Some(x), Some(y), Some(z)] = out else { unreachable!("each of the three is placed once") };
        (x, y, z, reads)
    }

    /// A whole workspace `ws` (its length is `ws.cols`, whatever the batch) and read access
    /// to everything else.
    pub fn workspace(&mut self, ws: ABuf) -> (&mut [T], Reads<'_, T>) {
        self.split(ws, 1)
    }
}

/// The first `rows` of `lengths`, each checked to be within `1..=steps` (a sequence the
/// plan holds), or none when `lengths` is empty.
pub fn batch_lengths(lengths: &[usize], rows: usize, steps: usize) -> &[usize] {
    if lengths.is_empty() {
        return &[];
    }
    assert!(lengths.len() >= rows, "{rows} rows but {} sequence lengths", lengths.len());
    let lengths = &lengths[..rows];
    assert!(lengths.iter().all(|&l| l >= 1 && l <= steps), "a sequence length outside 1..={steps}");
    lengths
}

/// Inverted dropout's mask: 1/keep with probability `keep`, else 0. Each value is kept when
/// a uniform draw `u` in [0, 1) — `rng.random::<f64>()`, the top 53 bits of the next 64 —
/// is below `keep`; the 64-bit words are drawn a block at a time (the generator's wide
/// refill) and compared as integers (`u < keep` exactly when those 53 bits are below
/// `⌈keep·2⁵³⌉`), which vectorizes: the same mask, and the generator left in the same state,
/// as one `random::<f64>()` per value.
pub fn draw_mask<T: Float>(keep: f64, rng: &mut ChaCha8Rng, mask: &mut [T]) {
    let scale = T::from_f64(1.0 / keep);
    let below = (keep * (1u64 << 53) as f64).ceil() as u64;
    let mut words = [0u64; 256];
    // One dispatch for the whole mask, not one per block of words.
    crate::kernels::vectorized(
        #[inline(always)]
        || {
            for chunk in mask.chunks_mut(words.len()) {
                let words = &mut words[..chunk.len()];
                rng.fill(words);
                for (m, &w) in chunk.iter_mut().zip(words.iter()) {
                    *m = if (w >> 11) < below { scale } else { T::ZERO };
                }
            }
        },
    );
}

/// Two disjoint mutable ranges of one slice.
pub fn split_pair<T>(v: &mut [T], a: Range<usize>, b: Range<usize>) -> (&mut [T], &mut [T]) {
    if a.start < b.start {
        let (l, r) = v.split_at_mut(b.start);
        (&mut l[a], &mut r[..b.end - b.start])
    } else {
        let (l, r) = v.split_at_mut(a.start);
        (&mut r[..a.end - a.start], &mut l[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The mask drawn a block at a time is the one of a draw per value, and leaves the
    /// generator where a draw per value does: at lengths around the block's, from an even or an
    /// odd word of the generator's block, with keep
    /// probabilities at and between the thresholds' edges.
    #[test]
    fn dropout_masks_equal_one_draw_per_value() {
        for keep in [0.5, 0.9, 0.8, 1.0 / 3.0, 0.999_999, 1e-9] {
            for len in [0, 1, 7, 255, 256, 257, 1000, 4099] {
                let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(len as u64), ChaCha8Rng::seed_from_u64(len as u64));
                // From an odd word too (a 32-bit draw before: the 64-bit words straddle).
                if len % 2 == 1 {
                    assert_eq!(a.random::<u32>(), b.random::<u32>());
                }
                let mut mask = vec![f32::NAN; len];
                draw_mask(keep, &mut a, &mut mask);
                let scale = (1.0 / keep) as f32;
                let want: Vec<f32> = (0..len).map(|_| if b.random::<f64>() < keep { scale } else { 0.0 }).collect();
                assert_eq!(mask, want, "keep {keep}, {len} values");
                assert_eq!(a.random::<u64>(), b.random::<u64>(), "the generator's state after {len} values");
            }
        }
    }
}
