//! Liveness and arena packing: every numbered buffer lives from the first step that touches
//! it to the last (the inference output to the end); buffers whose lifetimes do not overlap
//! share memory. Offsets replace the numbers in every step.

use super::layout::Builder;
use nnlang_runtime::plan::{ABuf, Space};

/// Gives every arena buffer of `b` (and `output`) its offset; returns the arena's length and
/// the sum of every buffer's size, as if none were shared.
pub(super) fn pack(
    b: &mut Builder,
    output: &mut ABuf,
    extra: &mut [ABuf],
    training: bool,
    max_batch: usize,
) -> (usize, usize) {
    // Liveness of arena buffers: from the first step that touches one to the last; the
    // inference output until after the last step.
    let n = b.cols.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (i, step) in b.steps.iter_mut().enumerate() {
        for buf in step.bufs_mut() {
            if buf.space == Space::Arena {
                first[buf.offset] = first[buf.offset].min(i + 1);
                last[buf.offset] = last[buf.offset].max(i + 1);
            }
        }
    }
    // A carried state lives through every run, and between runs.
    for (i, _) in b.pinned.iter().enumerate().filter(|(_, &p)| p) {
        first[i] = 0;
        last[i] = b.steps.len() + 1;
    }
    if !training && output.space == Space::Arena && output.offset < n {
        last[output.offset] = b.steps.len() + 1;
        first[output.offset] = first[output.offset].min(b.steps.len() + 1);
    }
    let sizes: Vec<usize> =
        b.cols.iter().zip(&b.fixed).map(|(c, &fixed)| if fixed { *c } else { c.saturating_mul(max_batch) }).collect();
    let (offsets, arena_len) = if sizes.len() <= GREEDY_LIMIT {
        assign_offsets(&sizes, &first, &last)
    } else {
        assign_in_order(&sizes, &first, &last)
    };
    let relocate = |buf: &mut ABuf| {
        if buf.space == Space::Arena {
            buf.offset = offsets.get(buf.offset).copied().unwrap_or(0);
        }
    };
    for step in &mut b.steps {
        for buf in step.bufs_mut() {
            relocate(buf);
        }
    }
    // A kink reads buffers of its own step: they live as the step's do.
    for kink in b.facts.values_mut().filter_map(|f| f.kink.as_mut()) {
        kink.bufs_mut().into_iter().for_each(relocate);
    }
    relocate(output);
    extra.iter_mut().for_each(relocate);
    (arena_len, sizes.iter().fold(0usize, |a, &b| a.saturating_add(b)))
}

/// Plans with at most this many buffers are packed by the greedy of [`assign_offsets`]
/// (quadratic, tightest); larger ones by [`assign_in_order`] (n log n).
const GREEDY_LIMIT: usize = 4096;

/// A free list of the arena: blocks by offset (to merge neighbours) and by (length, offset)
/// (to find the best fit).
#[derive(Default)]
struct FreeList {
    by_offset: std::collections::BTreeMap<usize, usize>,
    by_size: std::collections::BTreeSet<(usize, usize)>,
}

impl FreeList {
    fn insert(&mut self, mut at: usize, mut len: usize) {
        // Merge with the block before and the block after.
        if let Some((&o, &l)) = self.by_offset.range(..at).next_back() {
            if o + l == at {
                self.remove(o, l);
                at = o;
                len += l;
            }
        }
        if let Some(&l) = self.by_offset.get(&(at + len)) {
            self.remove(at + len, l);
            len += l;
        }
        self.by_offset.insert(at, len);
        self.by_size.insert((len, at));
    }

    fn remove(&mut self, at: usize, len: usize) {
        self.by_offset.remove(&at);
        self.by_size.remove(&(len, at));
    }

    /// The smallest free block of at least `len`, split off at its start.
    fn take(&mut self, len: usize) -> Option<usize> {
        let &(l, at) = self.by_size.range((len, 0)..).next()?;
        self.remove(at, l);
        if l > len {
            self.insert(at + len, l - len);
        }
        Some(at)
    }
}

/// Packing in step order: at each step the buffers first used there take the best-fitting
/// free block (or grow the arena), then those last used there are freed. Buffers alive at
/// the same step never share memory. O(n log n).
fn assign_in_order(sizes: &[usize], first: &[usize], last: &[usize]) -> (Vec<usize>, usize) {
    let live: Vec<usize> = (0..sizes.len()).filter(|&i| first[i] != usize::MAX).collect();
    let mut by_first = live.clone();
    by_first.sort_by_key(|&i| (first[i], std::cmp::Reverse(sizes[i]), i));
    let mut by_last = live;
    by_last.sort_by_key(|&i| (last[i], i));
    let mut offsets = vec![0usize; sizes.len()];
    let (mut free, mut total) = (FreeList::default(), 0usize);
    let (mut a, mut f) = (0, 0);
    while a < by_first.len() || f < by_last.len() {
        let t = match (by_first.get(a), by_last.get(f)) {
            (Some(&i), Some(&j)) => first[i].min(last[j]),
            (Some(&i), None) => first[i],
            (None, Some(&j)) => last[j],
            (None, None) => break,
        };
        while let Some(&i) = by_first.get(a).filter(|&&i| first[i] == t) {
            offsets[i] = match free.take(sizes[i]) {
                Some(at) => at,
                None => {
                    total = total.saturating_add(sizes[i]);
                    total.saturating_sub(sizes[i])
                }
            };
            a += 1;
        }
        while let Some(&j) = by_last.get(f).filter(|&&j| last[j] == t) {
            if sizes[j] > 0 {
                free.insert(offsets[j], sizes[j]);
            }
            f += 1;
        }
    }
    (offsets, total)
}

/// Greedy interval packing: largest buffers first, each at the lowest offset where it does
/// not overlap (in address) any placed buffer that is alive at the same time.
fn assign_offsets(sizes: &[usize], first: &[usize], last: &[usize]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..sizes.len()).filter(|&i| first[i] != usize::MAX).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), first[i], i));
    let mut offsets = vec![0usize; sizes.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut total = 0;
    for &i in &order {
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| first[j] <= last[i] && first[i] <= last[j])
            .map(|&j| (offsets[j], offsets[j].saturating_add(sizes[j])))
            .collect();
        conflicts.sort_unstable();
        let mut at = 0usize;
        for (s, e) in conflicts {
            if at.saturating_add(sizes[i]) <= s {
                break;
            }
            at = at.max(e);
        }
        offsets[i] = at;
        total = total.max(at.saturating_add(sizes[i]));
        placed.push(i);
    }
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No two buffers alive at one step overlap in the arena, for both packers, on random
    /// lifetimes and sizes.
    #[test]
    fn packers_never_overlap_live_buffers() {
        let mut seed = 7u64;
        let mut next = |m: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % m
        };
        for _ in 0..50 {
            let n = 1 + next(300);
            let sizes: Vec<usize> = (0..n).map(|_| next(64)).collect();
            let first: Vec<usize> = (0..n).map(|_| 1 + next(100)).collect();
            let last: Vec<usize> = first.iter().map(|&f| f + next(40)).collect();
            for (offsets, total) in [assign_offsets(&sizes, &first, &last), assign_in_order(&sizes, &first, &last)] {
                for i in 0..n {
                    assert!(offsets[i] + sizes[i] <= total);
                    for j in 0..i {
                        let alive = first[i] <= last[j] && first[j] <= last[i];
                        let apart = offsets[i] + sizes[i] <= offsets[j] || offsets[j] + sizes[j] <= offsets[i];
                        assert!(!alive || apart || sizes[i] == 0 || sizes[j] == 0, "{i} and {j} overlap");
                    }
                }
            }
        }
    }
}
