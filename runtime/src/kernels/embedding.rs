//! `embedding(vocab, dim)`: each token id of the input replaced by its row of the table
//! `W [vocab, dim]` (PyTorch's `nn.Embedding`). Ids arrive as the values of the input
//! buffer (exact integers: every id below 2^24 is one in f32); an id that is not a whole
//! number in `0..vocab` is an error naming its row, never a wrong row read. The gradient
//! adds each used token's `dy` into its row of `dW`: only the rows used are touched besides
//! the zeroing (PyTorch's dense gradient, which every optimizer here reads whole).

use crate::mem::{Cx, ExecError, Rows};
use crate::ops::Done;
use crate::plan::{ABuf, PBuf};
use crate::Float;

/// The id `v` as a row of a table of `vocab`, if it is one.
pub fn id<T: Float>(v: T, vocab: usize) -> Option<usize> {
    let f = v.to_f64();
    (f >= 0.0 && f < vocab as f64 && f.fract() == 0.0).then_some(f as usize)
}

/// `y[r, k, :] = w[ids[r, k], :]` for each of the `per` ids of each row; rows outside their
/// sequence (`valid`) get zeros and their ids are not read. The error names the first bad id
/// (its row, and its place in the row).
pub fn forward<T: Float>(ids: &[T], per: usize, vocab: usize, w: &[T], y: &mut [T], valid: Rows) -> Done {
    let dim = w.len() / vocab.max(1);
    for (r, (row, out)) in ids.chunks_exact(per.max(1)).zip(y.chunks_exact_mut((per * dim).max(1))).enumerate() {
        if !valid.valid(r) {
            out.fill(T::ZERO);
            continue;
        }
        for (k, (&v, o)) in row.iter().zip(out.chunks_exact_mut(dim.max(1))).enumerate() {
            let Some(i) = id(v, vocab) else { return Err(bad_id(r, k, per, v.to_f64(), vocab, valid)) };
            o.copy_from_slice(&w[i * dim..(i + 1) * dim]);
        }
    }
    Ok(())
}

/// `dw = Σ` over the (valid) uses of each id of `dy`'s row there; every other row zero.
pub fn backward<T: Float>(ids: &[T], per: usize, vocab: usize, dy: &[T], dw: &mut [T], valid: Rows) -> Done {
    let dim = dw.len() / vocab.max(1);
    dw.fill(T::ZERO);
    for (r, (row, d)) in ids.chunks_exact(per.max(1)).zip(dy.chunks_exact((per * dim).max(1))).enumerate() {
        if !valid.valid(r) {
            continue;
        }
        for (k, (&v, g)) in row.iter().zip(d.chunks_exact(dim.max(1))).enumerate() {
            let Some(i) = id(v, vocab) else { return Err(bad_id(r, k, per, v.to_f64(), vocab, valid)) };
            dw[i * dim..(i + 1) * dim].iter_mut().zip(g).for_each(|(a, &b)| *a += b);
        }
    }
    Ok(())
}

/// The error for id `v` at place `k` of row `r` (a step's row when `valid.steps > 1`).
fn bad_id(r: usize, k: usize, per: usize, v: f64, vocab: usize, valid: Rows) -> ExecError {
    let steps = valid.steps.max(1);
    let (row, step) = if steps > 1 { (r / steps, Some(r % steps)) } else { (r, None) };
    let place = (per > 1).then_some(k);
    ExecError::IdOutOfRange { row, step, place, id: v, vocab }
}

/// The step `Embedding { ids, w, y, vocab }`.
pub fn step<T: Float>(cx: &mut Cx<'_, T>, ids: ABuf, w: PBuf, y: ABuf, vocab: usize) -> Done {
    let (rows, valid) = (cx.rows, Rows { steps: cx.steps, lengths: cx.lengths });
    let (out, r) = cx.mem.split(y, rows);
    forward(r.get(ids, rows), ids.cols, vocab, &cx.params[w.range()], out, valid)
}

/// The step `EmbeddingBackward { ids, dy, dw, vocab }`.
pub fn backward_step<T: Float>(cx: &mut Cx<'_, T>, ids: ABuf, dy: ABuf, dw: PBuf, vocab: usize) -> Done {
    let (rows, valid) = (cx.rows, Rows { steps: cx.steps, lengths: cx.lengths });
    let r = cx.mem.all();
    backward(r.get(ids, rows), ids.cols, vocab, r.get(dy, rows), &mut cx.grads[dw.range()], valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Rows<'static> = Rows { steps: 1, lengths: &[] };

    #[test]
    fn rows_of_the_table_and_their_gradient_only_where_used() {
        // vocab 4, dim 2; two rows of three ids.
        let w = [0.0f64, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0];
        let ids = [3.0, 1.0, 3.0, 0.0, 0.0, 2.0];
        let mut y = [f64::NAN; 12];
        forward(&ids, 3, 4, &w, &mut y, ALL).expect("ids in range");
        assert_eq!(y, [30.0, 31.0, 10.0, 11.0, 30.0, 31.0, 0.0, 1.0, 0.0, 1.0, 20.0, 21.0]);
        let dy: Vec<f64> = (1..=12).map(f64::from).collect();
        let mut dw = [f64::NAN; 8];
        backward(&ids, 3, 4, &dy, &mut dw, ALL).expect("ids in range");
        // id 3 at (0,0) and (0,2): 1+5, 2+6; id 1: 3, 4; id 0 at (1,0), (1,1): 7+9, 8+10; id 2: 11, 12.
        assert_eq!(dw, [16.0, 18.0, 3.0, 4.0, 11.0, 12.0, 6.0, 8.0]);
    }

    #[test]
    fn padding_is_neither_read_nor_given_a_gradient() {
        // Two sequences of up to 3 steps (one id each), lengths 2 and 1; padding holds junk.
        let w = [1.0f32, 2.0, 3.0, 4.0];
        let ids = [1.0, 0.0, f32::NAN, 1.0, 7.0, -1.0];
        let valid = Rows { steps: 3, lengths: &[2, 1] };
        let mut y = [f32::NAN; 12];
        forward(&ids, 1, 2, &w, &mut y, valid).expect("padding is not read");
        assert_eq!(y, [3.0, 4.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        let dy = [1.0f32; 12];
        let mut dw = [f32::NAN; 4];
        backward(&ids, 1, 2, &dy, &mut dw, valid).expect("padding is not read");
        assert_eq!(dw, [1.0, 1.0, 2.0, 2.0]);
    }

    #[test]
    fn an_id_outside_the_table_is_an_error_naming_its_place() {
        let w = [0.0f32; 6];
        let mut y = [0.0f32; 8];
        let err = forward(&[0.0, 1.0, 2.0, 3.0], 2, 3, &w, &mut y, ALL).expect_err("3 is outside 0..3");
        assert_eq!(
            err.to_string(),
            "row 1 of the batch has token id 3 at place 2, outside the vocabulary of 3 ids 0..2"
        );
        let steps = Rows { steps: 2, lengths: &[] };
        let err = forward(&[0.0, 0.5, 2.0, 1.0], 1, 3, &w, &mut y, steps).expect_err("0.5 is no id");
        assert_eq!(
            err.to_string(),
            "row 0 of the batch has token id 0.5 at step 2, outside the vocabulary of 3 ids 0..2"
        );
        let err = forward(&[-1.0], 1, 3, &w, &mut y[..2], ALL).expect_err("negative");
        assert_eq!(err.to_string(), "row 0 of the batch has token id -1, outside the vocabulary of 3 ids 0..2");
    }
}
