//! Liveness and arena packing: every numbered buffer lives from the first step that touches
//! it to the last (the inference output to the end); buffers whose lifetimes do not overlap
//! share memory. Offsets replace the numbers in every step.

use super::layout::Builder;
use nnlang_runtime::plan::{ABuf, Space};

/// Gives every arena buffer of `b` (and `output`) its offset; returns the arena's length and
/// the sum of every buffer's size, as if none were shared.
pub(super) fn pack(b: &mut Builder, output: &mut ABuf, training: bool, max_batch: usize) -> (usize, usize) {
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
    if !training && output.space == Space::Arena && output.offset < n {
        last[output.offset] = b.steps.len() + 1;
        first[output.offset] = first[output.offset].min(b.steps.len() + 1);
    }
    let sizes: Vec<usize> =
        b.cols.iter().zip(&b.fixed).map(|(c, &fixed)| if fixed { *c } else { c * max_batch }).collect();
    let (offsets, arena_len) = assign_offsets(&sizes, &first, &last);
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
    relocate(output);
    (arena_len, sizes.iter().sum())
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
            .map(|&j| (offsets[j], offsets[j] + sizes[j]))
            .collect();
        conflicts.sort_unstable();
        let mut at = 0;
        for (s, e) in conflicts {
            if at + sizes[i] <= s {
                break;
            }
            at = at.max(e);
        }
        offsets[i] = at;
        total = total.max(at + sizes[i]);
        placed.push(i);
    }
    (offsets, total)
}
