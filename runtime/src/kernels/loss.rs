//! Losses and their gradients with respect to the model's last pre-activation. Each returns
//! the mean loss over the rows that count ([`Rows`]: every row, or the steps inside their
//! sequences); the others get a zero gradient. A label outside the classes is reported,
//! never indexed.

use crate::mem::Rows;
use crate::Float;

/// Softmax followed by cross-entropy, as one stable operation:
/// `loss = −log softmax(z)[label] = log Σ exp(z − m) − (z[label] − m)`, and
/// `dz = (softmax(z) − onehot(label)) / rows`. With label smoothing `ε` the target is
/// `q = (1 − ε)·onehot(label) + ε/K` (PyTorch's `label_smoothing`): `loss = log Σ exp(z − m)
/// − Σ q·(z − m)`, `dz = (softmax(z) − q) / rows`.
pub fn softmax_cross_entropy<T: Float>(
    rows: usize,
    cols: usize,
    z: &[T],
    labels: &[T],
    dz: &mut [T],
    valid: Rows,
    smoothing: f64,
) -> Result<f64, usize> {
    let mut total = 0.0f64;
    let n = valid.count(rows).max(1);
    let inv = T::from_f64(1.0 / n as f64);
    // Without smoothing the arithmetic is the plain form's, operation for operation.
    let spread = (smoothing != 0.0).then(|| (T::from_f64(smoothing / cols as f64), 1.0 - smoothing));
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
        match spread {
            None => {
                total += sum.ln().to_f64() - (zr[label] - m).to_f64();
                for d in dr.iter_mut() {
                    *d = *d / sum * inv;
                }
                dr[label] -= inv;
            }
            Some((each, on_label)) => {
                let mean: f64 = zr.iter().map(|&v| (v - m).to_f64()).sum::<f64>() / cols as f64;
                total += sum.ln().to_f64() - on_label * (zr[label] - m).to_f64() - smoothing * mean;
                for d in dr.iter_mut() {
                    *d = (*d / sum - each) * inv;
                }
                dr[label] -= T::from_f64(on_label) * inv;
            }
        }
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

/// Cross-entropy of probabilities (unfused): `loss = −log p[label]`, `dp[label] = −1/(rows·p)`;
/// with label smoothing `ε`, `loss = −Σ q·log p` and `dp = −q/(rows·p)` for the smoothed
/// target `q = (1 − ε)·onehot(label) + ε/K`.
pub fn cross_entropy<T: Float>(
    rows: usize,
    cols: usize,
    p: &[T],
    labels: &[T],
    dp: &mut [T],
    valid: Rows,
    smoothing: f64,
) -> Result<f64, usize> {
    let mut total = 0.0f64;
    let n = valid.count(rows).max(1);
    dp[..rows * cols].fill(T::ZERO);
    let tiny = T::from_f64(1e-30);
    for (r, l) in labels.iter().enumerate().take(rows) {
        if !valid.valid(r) {
            continue;
        }
        let label = l.to_f64();
        if !(label >= 0.0 && label < cols as f64 && label.fract() == 0.0) {
            return Err(r);
        }
        if smoothing == 0.0 {
            let i = r * cols + label as usize;
            let pi = p[i].max(tiny);
            total -= pi.ln().to_f64();
            dp[i] = -T::ONE / (pi * T::from_f64(n as f64));
            continue;
        }
        for c in 0..cols {
            let q = smoothing / cols as f64 + if c == label as usize { 1.0 - smoothing } else { 0.0 };
            let i = r * cols + c;
            let pi = p[i].max(tiny);
            total -= q * pi.ln().to_f64();
            dp[i] = -T::from_f64(q) / (pi * T::from_f64(n as f64));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Label smoothing is PyTorch's: `(1 − ε)·NLL + ε·mean_k(−log p_k)`, fused or on
    /// probabilities; ε = 0 is the plain loss.
    #[test]
    fn smoothed_cross_entropy_is_pytorchs_definition() {
        let (rows, cols) = (3, 4);
        let z: Vec<f64> = vec![0.5, -1.0, 2.0, 0.1, 3.0, 0.0, -0.5, 1.5, -2.0, -2.5, 0.25, 0.0];
        let labels = [2.0, 0.0, 3.0];
        let all = Rows { steps: 1, lengths: &[] };
        for eps in [0.0, 0.1, 0.4] {
            let mut want = 0.0;
            let mut probs = vec![0.0; z.len()];
            for r in 0..rows {
                let zr = &z[r * cols..(r + 1) * cols];
                let lse = zr.iter().map(|v| v.exp()).sum::<f64>().ln();
                let logp: Vec<f64> = zr.iter().map(|v| v - lse).collect();
                let nll = -logp[labels[r] as usize];
                let uniform = -logp.iter().sum::<f64>() / cols as f64;
                want += ((1.0 - eps) * nll + eps * uniform) / rows as f64;
                for c in 0..cols {
                    probs[r * cols + c] = logp[c].exp();
                }
            }
            let mut dz = vec![0.0; z.len()];
            let fused = softmax_cross_entropy(rows, cols, &z, &labels, &mut dz, all, eps).expect("labels fit");
            let mut dp = vec![0.0; z.len()];
            let plain = cross_entropy(rows, cols, &probs, &labels, &mut dp, all, eps).expect("labels fit");
            assert!((fused - want).abs() < 1e-12 && (plain - want).abs() < 1e-12, "ε = {eps}: {fused} {plain} {want}");
            // dz = (p − q)/rows: each row's gradient sums to zero.
            for r in 0..rows {
                assert!(dz[r * cols..(r + 1) * cols].iter().sum::<f64>().abs() < 1e-12);
            }
        }
    }
}
