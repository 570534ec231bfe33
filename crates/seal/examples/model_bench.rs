//! Benchmark of any supported model (SmolLM2, Gemma 3, … through [`seal::model::LanguageModel`])
//! for beam search: prompt throughput, a continued prefill, one decoding step at B beams sharing a
//! prompt (full head and subset head), a whole SEAL query's model work, teacher-forced scoring,
//! and the matrix kernels that were chosen between.
//!
//! ```text
//! cargo run --release -p seal --example model_bench -- [MODEL.gguf] [--quick] [--no-kernels] [--int8]
//! ```
//! `--int8` loads with `Precision::Int8Activations` (llama.cpp's arithmetic).
//! The model path defaults to `$SEAL_TEST_SMOLLM2`. Threads: candle's pool, sized by
//! `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` (default: the physical cores); run with
//! `RAYON_NUM_THREADS=2` to compare with llama.cpp's `-t 2`.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use seal::model::kernels::{quantize_row, ActBlock, Matrix, BLOCK};
use seal::model::llama::Precision;

fn tokens(n: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            1000 + ((s >> 33) % 20000) as u32
        })
        .collect()
}

/// CPU time of the calling thread in ms (`/proc/thread-self/schedstat`, first field: ns on a
/// CPU), 0 where unavailable. At 1 thread all work runs on the calling thread, so this leaves out
/// the time a loaded machine keeps it waiting for a core.
fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e6)
}

/// Median of `runs` timings of `f`, in milliseconds (wall clock, or the calling thread's CPU
/// time with `SEAL_BENCH_CPU=1`).
fn time_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let cpu = std::env::var("SEAL_BENCH_CPU").is_ok_and(|v| v == "1");
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_cpu_ms());
            f();
            if cpu {
                thread_cpu_ms() - c
            } else {
                t.elapsed().as_secs_f64() * 1e3
            }
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let path = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .or_else(|| std::env::var("SEAL_TEST_SMOLLM2").ok())
        .unwrap_or_default();
    let runs = if quick { 3 } else { 7 };
    if args.iter().any(|a| a == "--kernels") {
        kernels(quick);
        return;
    }
    if path.is_empty() {
        eprintln!("give the GGUF path as argument or set SEAL_TEST_SMOLLM2");
        std::process::exit(2);
    }
    let threads = candle_core::utils::get_num_threads();
    let clock = if std::env::var("SEAL_BENCH_CPU").is_ok_and(|v| v == "1") {
        "thread CPU time"
    } else {
        "wall clock"
    };
    println!("model {path}, threads (RAYON_NUM_THREADS) {threads}, timing by {clock}");
    let t = Instant::now();
    let precision = if args.iter().any(|a| a == "--int8") {
        Precision::Int8Activations
    } else {
        Precision::Exact
    };
    let model =
        seal::model::load_with_precision(std::path::Path::new(&path), precision).expect("load");
    println!(
        "load: {:.0} ms ({}, {precision:?})",
        t.elapsed().as_secs_f64() * 1e3,
        model.architecture()
    );

    let prompt = tokens(48, 1);
    if let Some(beams) = args.iter().find_map(|a| a.strip_prefix("--profile-steps=")) {
        // Only steps at one batch size, for a profiler: 40 steps from a 48-token prompt.
        let beams: usize = beams.parse().expect("--profile-steps=B");
        let (mut state, _) = model.prefill(&prompt).unwrap();
        let mut parents = vec![0usize; beams];
        let ms = time_ms(1, || {
            for s in 0..40 {
                model.step(&mut state, &parents, &tokens(beams, 1000 + s as u64)).unwrap();
                parents = (0..beams).map(|b| (b * 7 + s) % beams).collect();
            }
        });
        println!("40 steps at B={beams}: {:.1} ms per step", ms / 40.0);
        return;
    }
    let ms = time_ms(runs, || {
        model.prefill(&prompt).unwrap();
    });
    println!("prefill 48 tokens: {ms:.1} ms = {:.0} tokens/s", 48.0 * 1e3 / ms);
    let (prefix, _) = model.prefill(&prompt[..40]).unwrap();
    let ms = time_ms(runs, || {
        model.prefill_continue(&prefix, &prompt[40..]).unwrap();
    });
    println!("prefill_continue: 8 tokens after a cached 40-token prefix: {ms:.1} ms");

    let steps = 10;
    for beams in [1usize, 5, 15] {
        for subset in [false, true] {
            let (mut state, _) = model.prefill(&prompt).unwrap();
            let allowed: Vec<Vec<u32>> = (0..beams).map(|b| tokens(50, 100 + b as u64)).collect();
            let allowed_refs: Vec<&[u32]> = allowed.iter().map(|v| v.as_slice()).collect();
            let mut parents = vec![0usize; beams];
            let mut times = Vec::new();
            for s in 0..steps {
                let toks = tokens(beams, 1000 + s as u64);
                times.push(time_ms(1, || {
                    if subset {
                        model.step_subset(&mut state, &parents, &toks, &allowed_refs).unwrap();
                    } else {
                        model.step(&mut state, &parents, &toks).unwrap();
                    }
                }));
                // Beams fork and reorder like after a top-k selection.
                parents = (0..beams).map(|b| (b * 7 + s) % beams).collect();
            }
            times.sort_by(f64::total_cmp);
            println!(
                "step B={beams:>2} {}: median {:.1} ms (min {:.1}) over {steps} steps after a 48-token prompt",
                if subset { "subset head (50 ids)" } else { "full head           " },
                times[times.len() / 2],
                times[0]
            );
        }
    }

    // A SEAL query: prompt, 10 passage steps and 15 title steps at 15 beams (two prefills).
    let ms = time_ms(if quick { 1 } else { 3 }, || {
        for (n, s) in [(10usize, 0u64), (15, 50)] {
            let (mut state, _) = model.prefill(&prompt).unwrap();
            let mut parents = vec![0usize; 15];
            for i in 0..n {
                model.step(&mut state, &parents, &tokens(15, s + i as u64)).unwrap();
                parents = (0..15).map(|b| (b * 7 + i) % 15).collect();
            }
        }
    });
    println!("SEAL query model work (2 × 48-token prefill, 10 + 15 steps at B=15, full head): {ms:.0} ms");
    let conts: Vec<Vec<u32>> = (0..100).map(|i| tokens(4, 5000 + i)).collect();
    let ms = time_ms(if quick { 1 } else { 3 }, || {
        model.score_continuations(&prompt, &conts).unwrap();
    });
    println!(
        "score_continuations: 100 continuations of 4 tokens after a 48-token prompt: {ms:.0} ms"
    );

    if !args.iter().any(|a| a == "--no-kernels") {
        println!("\nkernel choice (one matrix, ms per product):");
        kernels(quick);
    }
}

/// Our Q4_1 kernel vs candle's QMatMul on the same Q4_1 data vs a dequantized f32 matmul.
fn kernels(quick: bool) {
    let runs = if quick { 5 } else { 21 };
    for (rows, cols, dtype, label) in [
        (1536usize, 576usize, GgmlDType::Q4_1, "ffn_gate 1536x576 Q4_1"),
        (49152, 576, GgmlDType::Q8_0, "head 49152x576 Q8_0"),
    ] {
        let w = Tensor::randn(0f32, 0.05, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let ours = Matrix::from_qtensor(&q, true).unwrap();
        let exact = Matrix::from_qtensor(&q, false).unwrap();
        let qmm = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap().t().unwrap().contiguous().unwrap();
        for m in [1usize, 5, 15, 48] {
            let x = Tensor::randn(0f32, 1.0, (m, cols), &Device::Cpu).unwrap();
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let kb = cols / BLOCK;
            let mut xq = vec![ActBlock::default(); m * kb];
            let mut out = vec![0f32; m * rows];
            let t_ours = time_ms(runs, || {
                for i in 0..m {
                    quantize_row(&xv[i * cols..(i + 1) * cols], &mut xq[i * kb..(i + 1) * kb]);
                }
                ours.matmul_rows(&xq, &xv, m, 0..rows, &mut out, rows);
            });
            let t_exact = time_ms(runs, || {
                exact.matmul_rows(&[], &xv, m, 0..rows, &mut out, rows);
            });
            let t_candle = time_ms(runs, || {
                qmm.forward(&x).unwrap();
            });
            let t_f32 = time_ms(runs, || {
                x.matmul(&dense).unwrap();
            });
            println!(
                "  {label} M={m:>2}: ours exact {t_exact:.2}  ours int8 {t_ours:.2}  candle QMatMul {t_candle:.2}  candle f32 (dequantized) {t_f32:.2}"
            );
        }
    }
}
