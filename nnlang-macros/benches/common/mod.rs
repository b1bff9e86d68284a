//! What the step benchmarks share: samples per second of a step, as the median of five
//! timed runs after a warm-up.

use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Samples per second of `step` (which trains on `batch` rows): `warmup` untimed steps, then
/// the median of five runs of `steps` steps.
pub fn rate(batch: usize, warmup: usize, steps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
    }
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..steps {
                    step();
                }
                (batch * steps) as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}
