//! The memory one step sees while it runs ([`Cx`]), and the helpers that hand a step the
//! buffer it writes beside read access to everything else ([`Mem::split`], [`split2`]).
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
    /// Row `row` of the batch has a class label outside `0..classes`.
    LabelOutOfRange { row: usize, label: f64, classes: usize },
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::LabelOutOfRange { row, label, classes } => {
                write!(
                    f,
                    "row {row} of the batch has label {label}, outside the {classes} classes 0..{}",
                    classes.saturating_sub(1)
                )
            }
        }
    }
}

impl std::error::Error for ExecError {}

/// The batch memory: the arena, the model inputs and the target (the last two read only,
/// where the caller holds them).
pub struct Mem<'a, T> {
    pub arena: &'a mut [T],
    pub inputs: &'a [&'a [T]],
    pub target: &'a [T],
}

/// Everything one step may touch: the batch size, the batch memory, the parameters and
/// their gradients, the dropout generator, and where a loss step leaves the loss.
pub struct Cx<'a, T> {
    /// Rows of the batch (1..=the plan's `max_batch`).
    pub rows: usize,
    pub mem: Mem<'a, T>,
    pub params: &'a [T],
    /// Parameter gradients (empty for an inference plan).
    pub grads: &'a mut [T],
    pub rng: &'a mut ChaCha8Rng,
    /// Set by the loss step.
    pub loss: Option<f64>,
}

/// Read access to everything but the one or two arena ranges a step writes.
pub struct Reads<'a, T> {
    /// Readable stretches of the arena: (start offset, slice).
    segs: [(usize, &'a [T]); 3],
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
            segs: [(0, &*self.arena), (usize::MAX, &[]), (usize::MAX, &[])],
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
        (mid, Reads { segs: [(0, left), (w.end, right), (usize::MAX, &[])], inputs: self.inputs, target: self.target })
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
            segs: [(0, l), (first.end, between), (second.end, right)],
            inputs: self.inputs,
            target: self.target,
        };
        if swap {
            (m2, m1, reads)
        } else {
            (m1, m2, reads)
        }
    }

    /// A whole workspace `ws` (its length is `ws.cols`, whatever the batch) and read access
    /// to everything else.
    pub fn workspace(&mut self, ws: ABuf) -> (&mut [T], Reads<'_, T>) {
        self.split(ws, 1)
    }
}

/// Inverted dropout's mask: 1/keep with probability `keep`, else 0.
pub fn draw_mask<T: Float>(keep: f64, rng: &mut ChaCha8Rng, mask: &mut [T]) {
    let scale = T::from_f64(1.0 / keep);
    for m in mask.iter_mut() {
        *m = if rng.random::<f64>() < keep { scale } else { T::ZERO };
    }
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
