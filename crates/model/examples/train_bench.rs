//! Training speed of the CPU trainer on real pairs: `pair tokens/s` (the prompt and target of
//! every pair, as PyTorch's trainers count them), rows/s actually computed, and peak memory.
//!
//! ```sh
//! cargo run --release -p seal-model --example train_bench -- \
//!     --gguf ~/.cache/seal/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf --pairs pairs.jsonl \
//!     --layers 30 --steps 6 --batch 32 [--supervised-only] [--shared false]
//! ```
//! Batches are drawn as `seal train` draws them (shuffled trees of pairs that share a prompt,
//! closed at `--batch` pairs). With `--layers` below the model's depth the frozen bottom runs
//! once per tree: the first pass over the timed batches includes it ("cold"), the second pass
//! over the same batches reads it from the cache ("cached"). `--shared false` puts every pair
//! in its own sequence (no shared prompts), for comparison.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use seal_model::tokenizer::Tokenizer;
use seal_model::train::batch::{plan_batches, trees, Example, PackedBatch, Tree};
use seal_model::train::{AdamW, AdamWSettings, Network};

fn arg(args: &HashMap<String, String>, key: &str, default: &str) -> String {
    args.get(key).cloned().unwrap_or_else(|| default.to_string())
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = HashMap::new();
    let mut i = 0;
    while i < raw.len() {
        let key = raw[i].trim_start_matches("--").to_string();
        if key == "supervised-only" {
            args.insert(key, "true".into());
            i += 1;
        } else {
            args.insert(key, raw.get(i + 1).cloned().unwrap_or_default());
            i += 2;
        }
    }
    let gguf = PathBuf::from(arg(&args, "gguf", ""));
    let pairs = PathBuf::from(arg(&args, "pairs", ""));
    let layers: usize = arg(&args, "layers", "30").parse().unwrap();
    let steps: usize = arg(&args, "steps", "6").parse().unwrap();
    let batch: f64 = arg(&args, "batch", "32").parse().unwrap();
    let supervised_only = args.contains_key("supervised-only");
    let shared = arg(&args, "shared", "true") == "true";

    let tokenizer = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let mut examples = Vec::new();
    for line in std::fs::read_to_string(&pairs).expect("pairs").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let kind = v["kind"].as_str().unwrap_or("");
        if supervised_only && !kind.starts_with("query") {
            continue;
        }
        let (p, t) = (v["prompt"].as_str().unwrap(), v["target"].as_str().unwrap());
        examples.push(Example::tokenize(&tokenizer, p, t).unwrap());
    }
    let all: Vec<Tree> = if shared {
        trees(&examples)
    } else {
        examples
            .iter()
            .map(|e| Tree { prompt: e.prompt.clone(), branches: vec![(e.target.clone(), 1.0)] })
            .collect()
    };
    let mut order: Vec<usize> = (0..all.len()).collect();
    // A fixed shuffle (the bench needs variety, not a particular order).
    let mut s = 0x1234_5678u64;
    for i in (1..order.len()).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        order.swap(i, (s >> 33) as usize % (i + 1));
    }
    let batches = plan_batches(&all, &order, batch);
    let load = Instant::now();
    let mut net = Network::<f32>::from_gguf(&gguf, layers).expect("model");
    eprintln!(
        "loaded in {:.1} s; {} trainable parameters",
        load.elapsed().as_secs_f64(),
        net.params().len()
    );
    let mut opt = AdamW::new(net.params().len(), AdamWSettings::default());
    let mut cache: HashMap<usize, Vec<f32>> = HashMap::new();
    // One warm-up step, then the timed ones, twice (cold, then cached bottom).
    for pass in ["warm-up", "cold", "cached"] {
        let range = if pass == "warm-up" { 0..1 } else { 1..1 + steps };
        let t0 = Instant::now();
        let (mut pair_tokens, mut rows, mut loss) = (0.0, 0, 0.0);
        for b in &batches[range.clone()] {
            let chosen: Vec<&Tree> = b.iter().map(|&t| &all[t]).collect();
            let packed = PackedBatch::pack(chosen.iter().copied());
            let bottom = (net.first_trained() > 0).then(|| {
                for &t in b {
                    cache
                        .entry(t)
                        .or_insert_with(|| net.bottom(&PackedBatch::pack([&all[t]])).unwrap());
                }
                b.iter().flat_map(|t| cache[t].iter().copied()).collect::<Vec<f32>>()
            });
            // As `seal train` runs a step: on a pool thread, the main thread asleep.
            let mut result = None;
            rayon::scope(|scope| {
                scope.spawn(|_| {
                    let mut g = vec![0f32; net.params().len()];
                    let loss = net.loss_and_grad(&packed, bottom, &mut g).unwrap();
                    opt.update(net.params_mut(), &g);
                    result = Some(loss);
                })
            });
            let (sum, w) = result.unwrap();
            loss = sum / w;
            rows += packed.rows();
            pair_tokens += chosen
                .iter()
                .map(|t| {
                    t.branches
                        .iter()
                        .map(|(x, w)| w * (t.prompt.len() + x.len()) as f64)
                        .sum::<f64>()
                })
                .sum::<f64>();
        }
        let dt = t0.elapsed().as_secs_f64();
        if pass != "warm-up" && (pass == "cold" || net.first_trained() > 0) {
            println!(
                "layers {layers}, batch {batch} pairs, shared {shared}, {pass}: {steps} steps, {:.2} s/step, \
                 {:.0} pair tokens/s, {:.0} rows/s, last loss {loss:.3}, threads {}",
                dt / steps as f64,
                pair_tokens / dt,
                rows as f64 / dt,
                rayon::current_num_threads()
            );
        }
        let _ = range;
    }
    println!("peak RSS {:.0} MB", peak_rss_mb());
}
