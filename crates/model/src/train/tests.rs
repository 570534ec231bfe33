//! The trainer's gradients against finite differences (f64), shared-prefix trees against
//! pairs one by one, and a loss that falls to zero on a few pairs.

use super::*;
use crate::llama::LlamaConfig;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

pub(crate) fn tiny_config(adjacent_pairs: bool) -> LlamaConfig {
    LlamaConfig {
        architecture: "llama".into(),
        block_count: 3,
        embedding_length: 8,
        feed_forward_length: 12,
        head_count: 4,
        head_count_kv: 2,
        head_dim: 2,
        rope_freq_base: 10_000.0,
        rms_norm_eps: 1e-5,
        context_length: 64,
        vocab_size: 23,
        rope_adjacent_pairs: adjacent_pairs,
    }
}

/// A random network; `tied` shares the head with the embedding.
pub(crate) fn tiny_network<T: Real>(
    config: &LlamaConfig,
    trained: usize,
    seed: u64,
    tied: bool,
) -> Network<T> {
    let mut rng = Rng(seed);
    let (d, f) = (config.embedding_length, config.feed_forward_length);
    let q = config.head_count * config.head_dim;
    let kv = config.head_count_kv * config.head_dim;
    Network::from_tensors(config.clone(), trained, |name| {
        let (len, mean, std) = if name.ends_with("norm.weight") {
            (d, 1.0, 0.2)
        } else if name == "token_embd.weight" || name == "output.weight" {
            if name == "output.weight" && tied {
                return Ok(None);
            }
            (config.vocab_size * d, 0.0, 0.7)
        } else if name.contains(".bias") {
            return Ok(None);
        } else {
            let (rows, cols) = match name.split('.').nth(2).unwrap() {
                "attn_q" => (q, d),
                "attn_k" | "attn_v" => (kv, d),
                "attn_output" => (d, q),
                "ffn_gate" | "ffn_up" => (f, d),
                "ffn_down" => (d, f),
                other => panic!("unexpected {other}"),
            };
            (rows * cols, 0.0, 0.6 / (cols as f64).sqrt())
        };
        Ok(Some((0..len).map(|_| mean + std * rng.normal()).collect()))
    })
    .unwrap()
}

fn ex(prompt: &[u32], target: &[u32]) -> Example {
    Example { prompt: prompt.to_vec(), target: target.to_vec() }
}

fn examples() -> Vec<Example> {
    vec![
        ex(&[1, 5, 9, 3], &[7, 8, 2]),
        ex(&[1, 5, 9, 3], &[11, 2]),
        ex(&[1, 5, 9, 3], &[7, 8, 2]),
        ex(&[1, 5, 9, 3], &[7, 8, 2]),
        ex(&[1, 4], &[13, 14, 15, 2]),
        ex(&[1, 17, 6], &[2]),
        ex(&[1, 4], &[20, 2]),
    ]
}

fn mean_loss(net: &Network<f64>, batch: &PackedBatch) -> f64 {
    let (sum, weight) = net.loss(batch, None).unwrap();
    sum / weight
}

#[test]
fn gradients_match_finite_differences() {
    for (adjacent, tied, trained) in [(true, true, 2), (false, false, 3), (true, false, 1)] {
        let config = tiny_config(adjacent);
        let mut net = tiny_network::<f64>(&config, trained, 7, tied);
        let batch = PackedBatch::pack(&batch::trees(&examples()));
        let mut grads = vec![0.0; net.params().len()];
        let (sum, weight) = net.loss_and_grad(&batch, None, &mut grads).unwrap();
        assert!((sum / weight - mean_loss(&net, &batch)).abs() < 1e-12);
        let mut rng = Rng(3);
        let n = net.params().len();
        let mut checked = 0;
        let mut worst: f64 = 0.0;
        // Every parameter of the final norm and of the first trained layer's norms, plus a
        // random sample of the rest.
        let picks: Vec<usize> = (0..8)
            .map(|i| n - 1 - i)
            .chain(0..8)
            .chain((0..300).map(|_| (rng.next() * n as f64) as usize))
            .collect();
        for i in picks {
            let h = 1e-5;
            let orig = net.params()[i];
            net.params_mut()[i] = orig + h;
            let up = mean_loss(&net, &batch);
            net.params_mut()[i] = orig - h;
            let down = mean_loss(&net, &batch);
            net.params_mut()[i] = orig;
            let numeric = (up - down) / (2.0 * h);
            let err = (numeric - grads[i]).abs() / (1.0 + grads[i].abs());
            worst = worst.max(err);
            checked += 1;
        }
        assert!(worst < 1e-7, "worst relative error {worst:e} over {checked} parameters");
        assert!(grads.iter().any(|&g| g.abs() > 1e-3), "gradients are not trivially zero");
    }
}

#[test]
fn shared_prefix_trees_give_the_gradients_of_pairs_one_by_one() {
    let config = tiny_config(true);
    let net = tiny_network::<f64>(&config, 2, 11, true);
    let examples = examples();
    let trees = batch::trees(&examples);
    assert_eq!(trees.len(), 3, "three distinct prompts");
    let shared = PackedBatch::pack(&trees);
    let mut g_shared = vec![0.0; net.params().len()];
    let (sum, weight) = net.loss_and_grad(&shared, None, &mut g_shared).unwrap();

    // Each pair alone, its gradient weighted by its share of the target tokens.
    let total_targets: usize = examples.iter().map(|e| e.target.len()).sum();
    assert_eq!(weight, total_targets as f64);
    let mut g_single = vec![0.0; net.params().len()];
    let mut sum_single = 0.0;
    for e in &examples {
        let alone = PackedBatch::pack(&batch::trees(std::slice::from_ref(e)));
        let mut g = vec![0.0; net.params().len()];
        let (s, w) = net.loss_and_grad(&alone, None, &mut g).unwrap();
        sum_single += s;
        for (a, b) in g_single.iter_mut().zip(&g) {
            *a += b * w / total_targets as f64;
        }
    }
    assert!((sum - sum_single).abs() < 1e-10 * sum.abs());
    let scale = g_shared.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (a, b) in g_shared.iter().zip(&g_single) {
        assert!((a - b).abs() < 1e-12 * scale.max(1.0), "{a} vs {b}");
    }
    // Rows: the shared batch computes each prompt once.
    let unshared: usize = examples.iter().map(|e| e.prompt.len() + e.target.len() - 1).sum();
    assert!(shared.rows() < unshared);
}

#[test]
fn a_cached_bottom_gives_the_same_loss_and_gradients() {
    let config = tiny_config(true);
    let net = tiny_network::<f64>(&config, 1, 5, false);
    let batch = PackedBatch::pack(&batch::trees(&examples()));
    let mut g1 = vec![0.0; net.params().len()];
    let mut g2 = vec![0.0; net.params().len()];
    let l1 = net.loss_and_grad(&batch, None, &mut g1).unwrap();
    let bottom = net.bottom(&batch).unwrap();
    let l2 = net.loss_and_grad(&batch, Some(bottom), &mut g2).unwrap();
    assert_eq!(l1, l2);
    assert_eq!(g1, g2);
}

#[test]
fn loss_falls_to_near_zero_on_a_few_pairs() {
    let config = tiny_config(true);
    let mut net = tiny_network::<f32>(&config, 3, 1, true);
    let examples: Vec<Example> =
        vec![ex(&[1, 5, 9], &[7, 8, 2]), ex(&[1, 4], &[13, 14, 2]), ex(&[1, 6], &[20, 2])];
    let batch = PackedBatch::pack(&batch::trees(&examples));
    let settings = AdamWSettings { lr: 1e-2, total_steps: 300, ..Default::default() };
    let mut opt = AdamW::new(net.params().len(), settings);
    let (s0, w) = net.loss(&batch, None).unwrap();
    for _ in 0..300 {
        let mut g = vec![0.0f32; net.params().len()];
        net.loss_and_grad(&batch, None, &mut g).unwrap();
        opt.update(net.params_mut(), &g);
    }
    let (s1, _) = net.loss(&batch, None).unwrap();
    assert!(s0 / w > 1.0, "starts high: {}", s0 / w);
    assert!(s1 / w < 0.05, "ends near zero: {}", s1 / w);
}

#[test]
fn out_of_vocabulary_tokens_and_overlong_sequences_are_errors() {
    let config = tiny_config(true);
    let net = tiny_network::<f32>(&config, 1, 1, true);
    let bad = PackedBatch::pack(&batch::trees(&[ex(&[1, 99], &[2])]));
    assert!(net.loss(&bad, None).unwrap_err().to_string().contains("outside the vocabulary"));
    let long: Vec<u32> = (0..70).map(|i| i % 20).collect();
    let bad = PackedBatch::pack(&batch::trees(&[ex(&long, &[2])]));
    assert!(net.loss(&bad, None).unwrap_err().to_string().contains("context length"));
    assert!(Network::<f32>::from_tensors(config, 4, |_| Ok(None)).is_err());
}

#[test]
fn an_interrupted_run_resumes_to_the_same_parameters_bit_for_bit() {
    use std::time::Duration;
    let config = tiny_config(true);
    let examples: Vec<Example> =
        (0..24u32).map(|i| ex(&[1, 3 + i % 5, 7 + i % 3], &[10 + i % 11, 11 + i % 7, 2])).collect();
    let trees = batch::trees(&examples);
    let plan = run::Plan {
        epochs: 2.5,
        pairs_per_batch: 5.0,
        adamw: AdamWSettings { lr: 3e-3, ..Default::default() },
        checkpoint_every: Duration::from_secs(3600),
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("seal-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let no_progress = |_: &run::Progress| {};

    let mut whole = tiny_network::<f32>(&config, 2, 9, true);
    let outcome = run::run::<crate::Error>(
        &mut whole,
        &trees,
        &plan,
        &dir.join("a"),
        false,
        no_progress,
        |_, _| Ok(()),
    )
    .unwrap();
    assert!(outcome.finished && outcome.total_steps > 4);

    // Stop after the first step (a zero time limit), then resume twice.
    let stopping = run::Plan { time_limit: Some(Duration::ZERO), ..plan.clone() };
    let mut parts = tiny_network::<f32>(&config, 2, 9, true);
    let first = run::run::<crate::Error>(
        &mut parts,
        &trees,
        &stopping,
        &dir.join("b"),
        false,
        no_progress,
        |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!((first.steps, first.finished), (1, false));
    let mut parts = tiny_network::<f32>(&config, 2, 9, true);
    let second = run::run::<crate::Error>(
        &mut parts,
        &trees,
        &stopping,
        &dir.join("b"),
        true,
        no_progress,
        |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(second.steps, 2);
    let mut parts = tiny_network::<f32>(&config, 2, 9, true);
    let last = run::run::<crate::Error>(
        &mut parts,
        &trees,
        &plan,
        &dir.join("b"),
        true,
        no_progress,
        |_, _| Ok(()),
    )
    .unwrap();
    assert!(last.finished);
    assert_eq!(parts.params(), whole.params(), "resumed parameters differ");

    // Another plan cannot resume this checkpoint.
    let other = run::Plan { seed: 1, ..plan };
    let mut net = tiny_network::<f32>(&config, 2, 9, true);
    let err = run::run::<crate::Error>(
        &mut net,
        &trees,
        &other,
        &dir.join("b"),
        true,
        no_progress,
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("other pairs or settings"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn target_log_probs_agree_with_the_loss() {
    let config = tiny_config(false);
    let net = tiny_network::<f64>(&config, 2, 3, true);
    let batch = PackedBatch::pack(&batch::trees(&examples()));
    let lp = net.target_log_probs(&batch).unwrap();
    let (sum, _) = net.loss(&batch, None).unwrap();
    let weighted: f64 = lp.iter().zip(&batch.loss_weights).map(|(l, w)| -l * w).sum();
    assert!((sum - weighted).abs() < 1e-12);
    assert!(lp.iter().all(|&l| l < 0.0));
}
