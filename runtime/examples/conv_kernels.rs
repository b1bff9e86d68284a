//! The implicit-convolution kernels alone, on the layer shapes of `bench/convnets/bn.nn`
//! (batch 128): GFLOP/s of the forward pass, the weight gradient and the input gradient,
//! one thread, the best of 15 rounds. `cargo run --release -p nnlang-runtime --example conv_kernels`
use nnlang_runtime::act::Act;
use nnlang_runtime::kernels::conv::Dy;
use nnlang_runtime::kernels::implicit;
use nnlang_runtime::plan::Geometry;
use std::time::Instant;

fn geometry(h: usize, d: usize, k: usize, s: usize, p: usize) -> Geometry {
    let o = (h + 2 * p - 3) / s + 1;
    Geometry { h, w: h, d, k, f: 3, s, p, oh: o, ow: o, dil: 1, groups: 1 }
}

fn main() {
    let rows = 128;
    let layers = [
        ("28×28×1 → 32", geometry(28, 1, 32, 1, 1)),
        ("14×14×32 → 32", geometry(14, 32, 32, 1, 1)),
        ("14×14×32 → 64 /2", geometry(14, 32, 64, 2, 1)),
        ("7×7×64 → 64", geometry(7, 64, 64, 1, 1)),
    ];
    println!("| layer | forward GFLOP/s | dW GFLOP/s | dW + dx GFLOP/s |");
    println!("|---|---|---|---|");
    for (name, g) in layers {
        let x: Vec<f32> = (0..rows * g.h * g.w * g.d).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let w: Vec<f32> = (0..g.k * g.d * 9).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b = vec![0.1f32; g.k];
        let mut y = vec![0f32; rows * g.oh * g.ow * g.k];
        let flops = 2.0 * (rows * g.oh * g.ow * g.k * g.d * 9) as f64;
        // The best of 15 rounds of 4 calls: the machine's neighbours only ever slow it down.
        let time = |f: &mut dyn FnMut()| {
            f();
            (0..15)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..4 {
                        f();
                    }
                    t.elapsed().as_secs_f64() / 4.0
                })
                .fold(f64::INFINITY, f64::min)
        };
        let tf = time(&mut || {
            assert!(implicit::forward(&g, Act::Identity, rows, &x, &w, &b, &mut y));
        });
        let dy = y.clone();
        let (mut dw, mut db) = (vec![0f32; w.len()], vec![0f32; g.k]);
        let tw = time(&mut || {
            assert!(implicit::backward(&g, rows, &x, &w, Dy::Given(&dy), &mut dw, &mut db, None));
        });
        let mut dx = vec![0f32; x.len()];
        let txw = if implicit::input_grads(&g) {
            let t = time(&mut || {
                assert!(implicit::backward(&g, rows, &x, &w, Dy::Given(&dy), &mut dw, &mut db, Some((&mut dx, false))));
            });
            format!("{:.1}", 2.0 * flops / t / 1e9)
        } else {
            "—".into()
        };
        println!("| {name} | {:.1} | {:.1} | {txw} |", flops / tf / 1e9, flops / tw / 1e9);
    }
}
