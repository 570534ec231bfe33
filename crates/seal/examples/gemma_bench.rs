//! Benchmark of any supported model through [`seal::model::LanguageModel`] (written for
//! Gemma-3-270M): prompt throughput, one decoding step at B beams sharing a 48-token prompt (full
//! head and subset head), a whole SEAL query's model work, and a continued prefill.
//!
//! ```text
//! cargo run --release -p seal --example gemma_bench -- MODEL.gguf [--quick] [--int8]
//! ```
//! Threads: candle's pool (`CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS`, default the physical
//! cores). `--int8` loads with `Precision::Int8Activations` (llama.cpp's arithmetic).

use std::time::Instant;

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

/// Median of `runs` timings of `f`, in milliseconds.
fn time_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let precision = if args.iter().any(|a| a == "--int8") {
        Precision::Int8Activations
    } else {
        Precision::Exact
    };
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("give the GGUF path as argument");
        std::process::exit(2);
    };
    let runs = if quick { 3 } else { 7 };
    let threads = candle_core::utils::get_num_threads();
    println!("model {path}, precision {precision:?}, threads {threads}");
    let t = Instant::now();
    let model =
        seal::model::language_model::load_with_precision(std::path::Path::new(path), precision)
            .expect("load");
    println!("load: {:.0} ms ({})", t.elapsed().as_secs_f64() * 1e3, model.architecture());

    let mut prompt = vec![2u32];
    prompt.extend(tokens(47, 1));
    let ms = time_ms(runs, || {
        model.prefill(&prompt).unwrap();
    });
    println!("prefill 48 tokens: {ms:.1} ms = {:.0} tokens/s", 48.0 * 1e3 / ms);
    let (prefix, _) = model.prefill(&prompt[..40]).unwrap();
    if let seal::model::LanguageModel::Gemma(g) = &model {
        let ms = time_ms(runs, || {
            g.prefill_continue(&prefix, &prompt[40..]).unwrap();
        });
        println!("prefill_continue: 8 tokens after a cached 40-token prefix: {ms:.1} ms");
    }

    let steps = if quick { 5 } else { 10 };
    for beams in [1usize, 5, 15] {
        for subset in [false, true] {
            let (mut state, _) = model.prefill(&prompt).unwrap();
            let allowed: Vec<Vec<u32>> = (0..beams).map(|b| tokens(50, 100 + b as u64)).collect();
            let allowed_refs: Vec<&[u32]> = allowed.iter().map(|v| v.as_slice()).collect();
            let mut parents = vec![0usize; beams];
            let mut times = Vec::new();
            for s in 0..steps {
                let toks = tokens(beams, 1000 + s as u64);
                let t = Instant::now();
                if subset {
                    model.step_subset(&mut state, &parents, &toks, &allowed_refs).unwrap();
                } else {
                    model.step(&mut state, &parents, &toks).unwrap();
                }
                times.push(t.elapsed().as_secs_f64() * 1e3);
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

    let ms = time_ms(1, || {
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
}
