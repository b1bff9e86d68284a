//! `positions(n)`: a learned vector for each step (`weight [n, d]`, PyTorch's
//! `nn.Embedding(n, d)` over the step index) added to the sequence, and `positions(n,
//! sinusoidal = true)`: the fixed sines and cosines of "Attention is all you need"
//! (`PE[t, 2i] = sin(t / 10000^(2i/d))`, `PE[t, 2i + 1] = cos(…)`), computed, not stored.

use crate::mem::Cx;
use crate::ops::Done;
use crate::plan::{ABuf, PBuf};
use crate::Float;

/// The sinusoidal encoding of step `t`, feature `c`, of `d` features (in f64, then the same
/// bits wherever it is computed).
pub fn sinusoid(t: usize, c: usize, d: usize) -> f64 {
    let i = (c / 2) as f64;
    let angle = t as f64 / 10000f64.powf(2.0 * i / d.max(1) as f64);
    if c.is_multiple_of(2) {
        angle.sin()
    } else {
        angle.cos()
    }
}

/// The step `Positions`: `y[b, t] = x[b, t] + w[t]` for every step of every row (`x` of
/// `steps × d` per row).
pub fn step<T: Float>(cx: &mut Cx<'_, T>, x: ABuf, w: PBuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let table = &cx.params[w.range()];
    let (out, r) = cx.mem.split(y, rows);
    let cols = x.cols.max(1);
    for (yr, xr) in out.chunks_exact_mut(cols).zip(r.get(x, rows).chunks_exact(cols)) {
        for ((o, &v), &p) in yr.iter_mut().zip(xr).zip(table) {
            *o = v + p;
        }
    }
    Ok(())
}

/// The step `SinusoidalPositions`: `y = x + PE` over `steps` steps.
pub fn sinusoidal_step<T: Float>(cx: &mut Cx<'_, T>, steps: usize, x: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let cols = x.cols.max(1);
    let d = cols / steps.max(1);
    let pe: Vec<T> = (0..cols).map(|k| T::from_f64(sinusoid(k / d.max(1), k % d.max(1), d))).collect();
    let (out, r) = cx.mem.split(y, rows);
    for (yr, xr) in out.chunks_exact_mut(cols).zip(r.get(x, rows).chunks_exact(cols)) {
        for ((o, &v), &p) in yr.iter_mut().zip(xr).zip(&pe) {
            *o = v + p;
        }
    }
    Ok(())
}

/// The step `PositionsBackward`: `dw[t] = Σ_b dy[b, t]` over the steps inside each row's
/// sequence (the table's rows past every length get zero).
pub fn backward_step<T: Float>(cx: &mut Cx<'_, T>, steps: usize, dy: ABuf, dw: PBuf) -> Done {
    let rows = cx.rows;
    let cols = dy.cols.max(1);
    let d = cols / steps.max(1);
    let g = &mut cx.grads[dw.range()];
    g.fill(T::ZERO);
    let r = cx.mem.all();
    for (b, dr) in r.get(dy, rows).chunks_exact(cols).enumerate() {
        let len = cx.lengths.get(b).map_or(steps, |&l| l.min(steps));
        for (o, &v) in g[..len * d].iter_mut().zip(&dr[..len * d]) {
            *o += v;
        }
    }
    Ok(())
}
