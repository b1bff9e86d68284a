//! The convolution kernels alone, on the layers of the benchmarked ConvNets (3×3, padding 1,
//! batch 64, one thread): time and GFLOP/s of the forward pass, of `dW` (with `db`), and of
//! `dx`, beside the processor's FMA peak at the widths the kernels use.
//!
//!     cargo bench -p nnlang-macros --bench conv                     # the kernels in use
//!     NNLANG_IM2COL=1 cargo bench -p nnlang-macros --bench conv     # im2col + matrixmultiply

use nnlang_runtime::kernels::conv;
use nnlang_runtime::plan::{Act, Geometry};
use std::time::Instant;

use nnlang_runtime::profile::fma_peak_with;

/// Seconds per call of `f`, the best of five means of `reps` calls.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if let Some(simd) = pulp::x86::V4::try_new() {
            println!(
                "FMA peak, AVX-512: {:.0} GFLOP/s",
                fma_peak_with(20_000_000, |p| pulp::Simd::vectorize(simd, p)).0
            );
        }
        if let Some(simd) = pulp::x86::V3::try_new() {
            println!("FMA peak, AVX2: {:.0} GFLOP/s", fma_peak_with(20_000_000, |p| pulp::Simd::vectorize(simd, p)).0);
        }
    }
    let path = if std::env::var_os("NNLANG_IM2COL").is_some() { "im2col + matrixmultiply" } else { "in use" };
    println!("kernels: {path}");
    let rows = 64;
    for &(h, d, k) in &[(28usize, 1usize, 16usize), (14, 16, 32), (32, 3, 32), (32, 32, 32), (16, 32, 32)] {
        let g = Geometry { h, w: h, d, k, f: 3, s: 1, p: 1, oh: h, ow: h, dil: 1, groups: 1 };
        let x: Vec<f32> = (0..rows * h * h * d).map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6).collect();
        let w: Vec<f32> = (0..k * d * 9).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
        let b = vec![0.1f32; k];
        let mut y = vec![0f32; rows * h * h * k];
        // The plan's im2col workspace: about 1 MiB, at least one example's patches.
        let mut ws = vec![0f32; (256 * 1024).max(h * h * d * 9)];
        let (mut dw, mut db, mut dx) = (vec![0f32; w.len()], vec![0f32; k], vec![0f32; x.len()]);
        let flop = 2.0 * (rows * h * h * k * d * 9) as f64;
        let reps = 10;
        let fwd = time(reps, || conv::forward(&g, Act::Identity, rows, &x, &w, &b, &mut y, &mut ws));
        let dwt = time(reps, || conv::backward(&g, rows, &x, &w, &y, &mut dw, &mut db, None, &mut ws));
        let both =
            time(reps, || conv::backward(&g, rows, &x, &w, &y, &mut dw, &mut db, Some((&mut dx, false)), &mut ws));
        let dxt = (both - dwt).max(1e-9);
        println!(
            "{h}×{h}×{d} → {k}: forward {:.0} µs ({:.0} GFLOP/s), dW {:.0} µs ({:.0}), dx {:.0} µs ({:.0})",
            fwd * 1e6,
            flop / fwd / 1e9,
            dwt * 1e6,
            flop / dwt / 1e9,
            dxt * 1e6,
            flop / dxt / 1e9
        );
    }
}
