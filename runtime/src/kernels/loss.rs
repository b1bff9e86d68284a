//! Losses and their gradients with respect to the model's last pre-activation. Each returns
//! the mean loss over the rows that count ([`Rows`]: every row, or the steps inside their
//! sequences); the others get a zero gradient. A label outside the classes is reported,
//! never indexed.

use crate::mem::Rows;
use crate::Float;

/// Softmax followed by cross-entropy, as one stable operation:
/// `loss = −log softmax(z)[label] = log Σ exp(z − m) − (z[label] − m)`, and
/// `dz = (softmax(z) − onehot(label)) / rows`.
pub fn softmax_cross_entropy<T: Float>(
    rows: usize,
    cols: usize,
    z: &[T],
    labels: &[T],
    dz: &mut [T],
    valid: Rows,
) -> Result<f64, usize> {
    let mut total = 0.0f64;
    let n = valid.count(rows).max(1);
    let inv = T::from_f64(1.0 / n as f64);
    for r in 0..rows {
        let zr = &z[r * cols..(r + 1) * cols];
        let dr = &mut dz[r * cols..(r + 1) * cols];
        if !valid.valid(r) {
            dr.fill(T::ZERO);
            continue;
        }
        let label = labels[r].to_f64();
        if !(label >= 0.0 && label < cols as f64 && label.fract() == 0.0) {
            return Err(r);
        }
        let label = label as usize;
        let m = zr.iter().fold(zr[0], |a, &b| a.max(b));
        let mut sum = T::ZERO;
        for (d, &v) in dr.iter_mut().zip(zr) {
            *d = (v - m).exp();
            sum += *d;
        }
        total += sum.ln().to_f64() - (zr[label] - m).to_f64();
        for d in dr.iter_mut() {
            *d = *d / sum * inv;
        }
        dr[label] -= inv;
    }
    Ok(total / n as f64)
}

/// Sigmoid followed by binary cross-entropy, from the logits:
/// `loss = max(z, 0) − z·t + log(1 + exp(−|z|))`, `dz = (sigmoid(z) − t)/(rows·cols)`.
pub fn sigmoid_binary_cross_entropy<T: Float>(
    rows: usize,
    cols: usize,
    z: &[T],
    t: &[T],
    dz: &mut [T],
    valid: Rows,
) -> f64 {
    let n = valid.count(rows).max(1) * cols;
    let inv = T::from_f64(1.0 / n as f64);
    let mut total = 0.0f64;
    for i in 0..rows * cols {
        if !valid.valid(i / cols.max(1)) {
            dz[i] = T::ZERO;
            continue;
        }
        let (zi, ti) = (z[i], t[i]);
        let relu = if zi > T::ZERO { zi } else { T::ZERO };
        total += (relu - zi * ti + (T::ONE + (-zi.abs()).exp()).ln()).to_f64();
        let s = if zi >= T::ZERO { T::ONE / (T::ONE + (-zi).exp()) } else { zi.exp() / (T::ONE + zi.exp()) };
        dz[i] = (s - ti) * inv;
    }
    total / n as f64
}

/// `loss = mean over rows of ½‖y − t‖²`, `dy = (y − t)/rows`.
pub fn mean_squared_error<T: Float>(rows: usize, cols: usize, y: &[T], t: &[T], dy: &mut [T], valid: Rows) -> f64 {
    let n = valid.count(rows).max(1);
    let inv = T::from_f64(1.0 / n as f64);
    let mut total = 0.0f64;
    for i in 0..rows * cols {
        if !valid.valid(i / cols.max(1)) {
            dy[i] = T::ZERO;
            continue;
        }
        let d = y[i] - t[i];
        total += 0.5 * (d * d).to_f64();
        dy[i] = d * inv;
    }
    total / n as f64
}

/// Cross-entropy of probabilities (unfused): `loss = −log p[label]`, `dp[label] = −1/(rows·p)`.
pub fn cross_entropy<T: Float>(
    rows: usize,
    cols: usize,
    p: &[T],
    labels: &[T],
    dp: &mut [T],
    valid: Rows,
) -> Result<f64, usize> {
    let mut total = 0.0f64;
    let n = valid.count(rows).max(1);
    dp[..rows * cols].fill(T::ZERO);
    for (r, l) in labels.iter().enumerate().take(rows) {
        if !valid.valid(r) {
            continue;
        }
        let label = l.to_f64();
        if !(label >= 0.0 && label < cols as f64 && label.fract() == 0.0) {
            return Err(r);
        }
        let i = r * cols + label as usize;
        let pi = p[i].max(T::from_f64(1e-30));
        total -= pi.ln().to_f64();
        dp[i] = -T::ONE / (pi * T::from_f64(n as f64));
    }
    Ok(total / n as f64)
}

/// Binary cross-entropy of probabilities (unfused): `−t·log p − (1 − t)·log(1 − p)`, mean over
/// all elements, with `dp = (p − t) / (p·(1 − p)·rows·cols)`.
pub fn binary_cross_entropy<T: Float>(rows: usize, cols: usize, p: &[T], t: &[T], dp: &mut [T], valid: Rows) -> f64 {
    let n = valid.count(rows).max(1) * cols;
    let eps = T::from_f64(1e-30);
    let mut total = 0.0f64;
    for i in 0..rows * cols {
        if !valid.valid(i / cols.max(1)) {
            dp[i] = T::ZERO;
            continue;
        }
        let (pi, ti) = (p[i].max(eps), t[i]);
        let qi = (T::ONE - p[i]).max(eps);
        total -= (ti * pi.ln() + (T::ONE - ti) * qi.ln()).to_f64();
        dp[i] = (pi - ti) / (pi * qi * T::from_f64(n as f64));
    }
    total / n as f64
}
