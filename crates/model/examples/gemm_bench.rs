//! GFLOP/s of the trainer's GEMM (`train::mat::matmul_into`) on the shapes one SmolLM2 layer
//! multiplies in a batch: forward `x·Wᵀ`, the input gradient `dy·W` and the weight gradient
//! `dyᵀ·x`, for the attention and feed-forward projections.
//!
//! ```sh
//! cargo run --release -p seal-model --example gemm_bench -- [ROWS] [REPEATS]
//! ```
//! Threads follow rayon (`RAYON_NUM_THREADS`). This is the trainer's speed limit: about 70 % of
//! a training step is these products (BENCHMARKS.md, "The CPU trainer").

use std::time::Instant;

use seal_model::train::mat::{matmul_into, View};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1360);
    let repeats: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    // SmolLM2-135M: d = 576, q/k/v = 576 + 2·192, feed-forward 2·1536 then 1536.
    let shapes = [("qkv", 576, 960), ("wo", 576, 576), ("gate+up", 576, 3072), ("down", 1536, 576)];
    let mut total_flops = 0.0;
    let mut total_seconds = 0.0;
    println!("rows {rows}, threads {}", rayon::current_num_threads());
    for (name, k, n) in shapes {
        let x = filled(rows * k, 1);
        let w = filled(n * k, 2);
        let dy = filled(rows * n, 3);
        let mut y = vec![0f32; rows * n];
        let mut dx = vec![0f32; rows * k];
        let mut dw = vec![0f32; n * k];
        let mut run = || {
            matmul_into(&mut y, n, View::rows(&x, rows, k), View::rows(&w, n, k).t(), false, true);
            matmul_into(&mut dx, k, View::rows(&dy, rows, n), View::rows(&w, n, k), false, true);
            matmul_into(
                &mut dw,
                k,
                View::rows(&dy, rows, n).t(),
                View::rows(&x, rows, k),
                true,
                true,
            );
        };
        run();
        let start = Instant::now();
        for _ in 0..repeats {
            run();
        }
        let seconds = start.elapsed().as_secs_f64();
        let flops = 3.0 * 2.0 * (rows * k * n) as f64 * repeats as f64;
        total_flops += flops;
        total_seconds += seconds;
        println!("{name:>8}: {k:>5} x {n:>5}: {:7.1} GFLOP/s", flops / seconds / 1e9);
    }
    println!("   total: {:7.1} GFLOP/s", total_flops / total_seconds / 1e9);
}

/// Deterministic values in [-0.5, 0.5).
fn filled(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}
