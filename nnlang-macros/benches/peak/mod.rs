//! The processor's FMA peak on one thread, measured: what the benchmarks' GFLOP/s are held
//! against.

/// Twelve independent chains of fused multiply-adds on registers: enough in flight to keep
/// every FMA unit busy, so their rate is the processor's peak. Returns a sum (so the work is
/// not optimized away) and the f32 lanes of the instruction set it ran with.
pub struct Peak(pub usize);

impl pulp::WithSimd for Peak {
    type Output = (f32, usize);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> (f32, usize) {
        let (a, b) = (simd.splat_f32s(0.999_999), simd.splat_f32s(1e-7));
        let mut acc = [simd.splat_f32s(1.0); 12];
        for _ in 0..self.0 {
            for v in acc.iter_mut() {
                *v = simd.mul_add_f32s(*v, a, b);
            }
        }
        (acc.iter().map(|v| simd.reduce_sum_f32s(*v)).sum(), std::mem::size_of::<S::f32s>() / 4)
    }
}

/// GFLOP/s of [`Peak`] as `run` runs it (with the instruction set it chooses), the best of
/// five runs.
pub fn fma_peak(run: impl Fn(Peak) -> (f32, usize)) -> f64 {
    let iters = 20_000_000;
    (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            let (sum, lanes) = run(Peak(iters));
            std::hint::black_box(sum);
            (iters * 12 * lanes * 2) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}
