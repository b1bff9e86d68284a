//! `softplus`: `y = ln(1 + eˣ)` elementwise (PyTorch's `nn.Softplus` with β = 1), a smooth
//! ReLU whose derivative is the logistic sigmoid. The kernel and its two step functions.

use crate::mem::Cx;
use crate::ops::Done;
use crate::plan::{ABuf, Write};
use crate::Float;

/// `y = ln(1 + eˣ)`, as `max(x, 0) + ln(1 + e^(−|x|))`: no large number is exponentiated.
pub fn forward<T: Float>(x: &[T], y: &mut [T]) {
    for (y, &v) in y.iter_mut().zip(x) {
        *y = v.max(T::ZERO) + (T::ONE + (-v.abs()).exp()).ln();
    }
}

/// `σ(x) = 1/(1 + e^(−x))`, exponentiating only `−|x|`.
fn logistic<T: Float>(v: T) -> T {
    let e = (-v.abs()).exp();
    if v >= T::ZERO {
        T::ONE / (T::ONE + e)
    } else {
        e / (T::ONE + e)
    }
}

/// Forward was `y = ln(1 + eˣ)`, so now `dx (+)= dy · σ(x)`.
pub fn backward<T: Float>(x: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
    for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
        let grad = g * logistic(v);
        *d = if accumulate { *d + grad } else { grad };
    }
}

/// The step `Softplus { x, y }`.
pub fn step<T: Float>(cx: &mut Cx<'_, T>, x: ABuf, y: ABuf) -> Done {
    let rows = cx.rows;
    let (out, r) = cx.mem.split(y, rows);
    forward(r.get(x, rows), out);
    Ok(())
}

/// The step `SoftplusBackward { x, dy, dx, write }`.
pub fn backward_step<T: Float>(cx: &mut Cx<'_, T>, x: ABuf, dy: ABuf, dx: ABuf, write: Write) -> Done {
    let rows = cx.rows;
    let (d, r) = cx.mem.split(dx, rows);
    backward(r.get(x, rows), r.get(dy, rows), d, write == Write::Accumulate);
    Ok(())
}
