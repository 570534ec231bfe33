//! Tests of the trainer on a tiny random llama: gradients against finite differences,
//! overfitting, exact resume, and agreement with the inference model (plain, with an adapter
//! merged in memory, and merged into a GGUF file).

use super::data::SplitMix64;
use super::net::{random_weights, Batch, LoraSettings, Projection, TrainMode, TrainNet, WeightMap};
use super::optim::{AdamW, OptimSettings};
use super::trainer::{self, Example, TrainSettings};
use crate::model::adapter::{self, BaseModel, MergeFormat};
use crate::model::llama::LlamaConfig;
use crate::prompt::PromptStyle;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, D};
use std::path::{Path, PathBuf};

fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        architecture: "llama".into(),
        block_count: 2,
        embedding_length: 32,
        feed_forward_length: 64,
        head_count: 4,
        head_count_kv: 2,
        head_dim: 8,
        rope_freq_base: 10_000.0,
        rms_norm_eps: 1e-5,
        context_length: 64,
        vocab_size: 48,
        rope_adjacent_pairs: true,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seal-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn net(mode: &TrainMode, dtype: DType, seed: u64) -> TrainNet {
    TrainNet::new(tiny_config(), random_weights(&tiny_config(), seed, dtype).unwrap(), mode, 7)
        .unwrap()
}

fn examples(n: usize, seed: u64) -> Vec<Example> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| Example {
            prompt: (0..3 + rng.below(4)).map(|_| rng.below(48) as u32).collect(),
            target: (0..2 + rng.below(4)).map(|_| rng.below(48) as u32).collect(),
        })
        .collect()
}

fn batch_of(ex: &[Example]) -> Batch {
    let refs: Vec<(&[u32], &[u32])> =
        ex.iter().map(|e| (e.prompt.as_slice(), e.target.as_slice())).collect();
    Batch::from_examples(&refs, 0)
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn lora(top_layers: Option<usize>) -> TrainMode {
    TrainMode::Lora(LoraSettings {
        rank: 4,
        alpha: 8.0,
        projections: Projection::ALL.to_vec(),
        top_layers,
    })
}

/// Gives every LoRA `B` random values, so that gradients of `A` are not zero.
fn randomize_lora_b(net: &TrainNet, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for (name, v) in net.params() {
        if name.ends_with("lora_b") {
            let data: Vec<f64> = (0..v.elem_count()).map(|_| 0.1 * rng.normal()).collect();
            let t = Tensor::from_vec(data, v.dims(), &Device::Cpu)
                .unwrap()
                .to_dtype(v.dtype())
                .unwrap();
            v.set(&t).unwrap();
        }
    }
}

fn check_gradients(mode: &TrainMode) {
    let net = net(mode, DType::F64, 1);
    randomize_lora_b(&net, 3);
    let batch = batch_of(&examples(3, 5));
    let loss = net.loss(&batch).unwrap();
    let grads = loss.backward().unwrap();
    let mut rng = SplitMix64::new(11);
    let mut checked = 0;
    for (name, v) in net.params() {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
        let original: Vec<f64> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for _ in 0..3 {
            let i = rng.below(original.len());
            let eps = 1e-5;
            let at = |delta: f64| {
                let mut w = original.clone();
                w[i] += delta;
                v.set(&Tensor::from_vec(w, v.dims(), &Device::Cpu).unwrap()).unwrap();
                scalar(&net.loss(&batch).unwrap())
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            v.set(&Tensor::from_vec(original.clone(), v.dims(), &Device::Cpu).unwrap()).unwrap();
            let err = (numeric - g[i]).abs();
            assert!(
                err <= 1e-6 + 1e-5 * numeric.abs().max(g[i].abs()),
                "{name}[{i}]: backprop {} vs finite difference {numeric}",
                g[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 9, "too few parameters checked: {checked}");
}

#[test]
fn full_fine_tuning_gradients_match_finite_differences() {
    check_gradients(&TrainMode::Full);
}

#[test]
fn lora_gradients_match_finite_differences() {
    check_gradients(&lora(None));
    // Only the top layer adapted: only its adapters are trainable, and still exact.
    let top = net(&lora(Some(1)), DType::F64, 1);
    assert!(top.params().iter().all(|(n, _)| n.starts_with("blk.1.")));
    check_gradients(&lora(Some(1)));
}

fn settings(steps: usize, lr: f64, batch_size: usize) -> TrainSettings {
    TrainSettings {
        batch_size,
        steps,
        optim: OptimSettings { lr, warmup_steps: 5, total_steps: steps, ..Default::default() },
        seed: 3,
        eval_every: 0,
        checkpoint_every: 0,
    }
}

fn run(
    net: &TrainNet,
    opt: &mut AdamW,
    ex: &[Example],
    s: &TrainSettings,
    ckpt: Option<&Path>,
) -> Vec<f64> {
    let mut losses = Vec::new();
    trainer::train(net, opt, ex, &[], s, ckpt, &mut |p| losses.push(p.loss), &|| false).unwrap();
    losses
}

#[test]
fn overfitting_a_handful_of_pairs_drives_the_loss_to_zero() {
    let ex = examples(4, 9);
    for (mode, lr) in [(TrainMode::Full, 1e-2), (lora(None), 2e-2)] {
        let net = net(&mode, DType::F32, 2);
        let s = settings(150, lr, 4);
        let mut opt = AdamW::new(net.params(), s.optim.clone()).unwrap();
        let losses = run(&net, &mut opt, &ex, &s, None);
        let held = trainer::held_out_loss(&net, &ex, 4).unwrap();
        assert!(losses[0] > 2.0, "{mode:?}: starts at {}", losses[0]);
        assert!(held < 0.05, "{mode:?}: final loss {held} (first {})", losses[0]);
    }
}

#[test]
fn a_checkpoint_resumes_to_the_same_state() {
    let ex = examples(10, 4);
    for mode in [TrainMode::Full, lora(Some(1))] {
        let s = settings(6, 1e-2, 3);
        let straight = net(&mode, DType::F32, 2);
        let mut opt = AdamW::new(straight.params(), s.optim.clone()).unwrap();
        let losses_straight = run(&straight, &mut opt, &ex, &s, None);

        let dir = temp_dir("resume");
        let first = net(&mode, DType::F32, 2);
        let mut opt = AdamW::new(first.params(), s.optim.clone()).unwrap();
        let mut losses =
            run(&first, &mut opt, &ex, &TrainSettings { steps: 4, ..s.clone() }, Some(&dir));
        drop(first);
        let resumed = net(&mode, DType::F32, 2);
        let mut opt = AdamW::new(resumed.params(), s.optim.clone()).unwrap();
        let info = trainer::load_checkpoint(&dir, &resumed, &mut opt).unwrap();
        assert_eq!(info.step, 4);
        losses.extend(run(&resumed, &mut opt, &ex, &s, Some(&dir)));
        assert_eq!(losses, losses_straight, "{mode:?}");
        for ((name, a), (_, b)) in straight.params().iter().zip(resumed.params()) {
            let diff = (a.as_tensor() - b.as_tensor()).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(scalar(&diff), 0.0, "{mode:?}: {name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Writes `weights` as a llama GGUF with f32 tensors.
fn write_tiny_gguf(path: &Path, weights: &WeightMap) {
    let cfg = tiny_config();
    let u = |v: usize| gguf_file::Value::U32(v as u32);
    let meta: Vec<(&str, gguf_file::Value)> = vec![
        ("general.architecture", gguf_file::Value::String("llama".into())),
        ("llama.block_count", u(cfg.block_count)),
        ("llama.embedding_length", u(cfg.embedding_length)),
        ("llama.feed_forward_length", u(cfg.feed_forward_length)),
        ("llama.attention.head_count", u(cfg.head_count)),
        ("llama.attention.head_count_kv", u(cfg.head_count_kv)),
        ("llama.rope.dimension_count", u(cfg.head_dim)),
        ("llama.rope.freq_base", gguf_file::Value::F32(cfg.rope_freq_base)),
        ("llama.attention.layer_norm_rms_epsilon", gguf_file::Value::F32(cfg.rms_norm_eps)),
        ("llama.context_length", u(cfg.context_length)),
        ("llama.vocab_size", u(cfg.vocab_size)),
    ];
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let tensors: Vec<(&str, QTensor)> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                QTensor::quantize(&weights[*n].to_dtype(DType::F32).unwrap(), GgmlDType::F32)
                    .unwrap(),
            )
        })
        .collect();
    let meta_refs: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &meta_refs, &tensor_refs).unwrap();
}

/// Log-softmax rows of the training network for one sequence.
fn train_log_probs(net: &TrainNet, tokens: &[u32]) -> Vec<Vec<f32>> {
    let batch = Batch {
        tokens: tokens.to_vec(),
        batch: 1,
        len: tokens.len(),
        loss_positions: vec![],
        loss_targets: vec![],
    };
    let hidden = net.hidden(&batch).unwrap();
    let logits = net.logits(&hidden).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    lp.to_dtype(DType::F32).unwrap().to_vec2().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn the_training_network_equals_the_inference_model_before_and_after_merging() {
    let dir = temp_dir("merge");
    let gguf = dir.join("tiny.gguf");
    let weights = random_weights(&tiny_config(), 5, DType::F32).unwrap();
    write_tiny_gguf(&gguf, &weights);
    let tokens: Vec<u32> = vec![1, 7, 30, 2, 47, 11, 5, 0, 9];

    // Same network, two implementations.
    let (config, loaded) = super::net::load_gguf_weights(&gguf, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(config, tiny_config());
    let base = TrainNet::new(config.clone(), loaded.clone(), &TrainMode::Full, 0).unwrap();
    let model = crate::model::load(&gguf).unwrap();
    let want = model.prompt_log_probs(&tokens).unwrap();
    assert!(max_diff(&train_log_probs(&base, &tokens), &want) < 1e-4);

    // A LoRA adapter with non-zero B changes the outputs; merged, the inference model agrees.
    let mode = lora(None);
    let adapted = TrainNet::new(config, loaded, &mode, 0).unwrap();
    randomize_lora_b(&adapted, 8);
    let unmerged = train_log_probs(&adapted, &tokens);
    assert!(max_diff(&unmerged, &want) > 1e-2, "the adapter should change the model");
    let adapter_dir = dir.join("adapter");
    let fingerprint = crate::model::hub::fingerprint(&gguf).unwrap();
    super::trainer::save_adapter(
        &adapter_dir,
        &adapted,
        &mode,
        BaseModel { name: "tiny".into(), fingerprint: fingerprint.clone() },
        PromptStyle::Plain,
        serde_json::json!({}),
    )
    .unwrap();
    let (merged, manifest) =
        adapter::load_model_with_adapter(&gguf, &adapter_dir, MergeFormat::F32).unwrap();
    assert_eq!(manifest.prompt_style, "plain");
    assert!(max_diff(&merged.prompt_log_probs(&tokens).unwrap(), &unmerged) < 1e-4);
    // Requantized to Q8_0: close, far closer than the base model is.
    let (q8, _) = adapter::load_model_with_adapter(&gguf, &adapter_dir, MergeFormat::Q8_0).unwrap();
    let q8_diff = max_diff(&q8.prompt_log_probs(&tokens).unwrap(), &unmerged);
    let base_diff = max_diff(&unmerged, &want);
    assert!(
        q8_diff < 0.05 * base_diff,
        "Q8_0 merge is {q8_diff} off; the adapter moves {base_diff}"
    );

    // Merged into a GGUF file: loads like any model, records its base and prompt style.
    let out = dir.join("merged.gguf");
    adapter::write_merged_gguf(&gguf, &adapter_dir, &out, MergeFormat::F32).unwrap();
    let from_file = crate::model::load(&out).unwrap();
    assert!(max_diff(&from_file.prompt_log_probs(&tokens).unwrap(), &unmerged) < 1e-4);
    assert_eq!(adapter::base_fingerprint_of(&out), Some(fingerprint));
    assert_eq!(adapter::prompt_style_of(&out).as_deref(), Some("plain"));
    assert_eq!(adapter::base_fingerprint_of(&gguf), None);

    // An adapter for another model is refused.
    let other = dir.join("other.gguf");
    write_tiny_gguf(&other, &random_weights(&tiny_config(), 6, DType::F32).unwrap());
    let err =
        adapter::load_model_with_adapter(&other, &adapter_dir, MergeFormat::F32).err().unwrap();
    assert!(err.to_string().contains("trained on"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The CPU trainer (`seal_model::train`) against this candle network, both in f64 on the same
/// random weights: the same loss, and the same gradient for every tensor it trains.
#[test]
fn the_cpu_trainer_matches_the_candle_network_in_f64() {
    use crate::model::train::{batch, Network, PackedBatch};
    let config = tiny_config();
    let weights = random_weights(&config, 4, DType::F64).unwrap();
    let candle = TrainNet::new(config.clone(), weights.clone(), &TrainMode::Full, 7).unwrap();
    let ex = examples(5, 9);
    let loss = candle.loss(&batch_of(&ex)).unwrap();
    let grads = loss.backward().unwrap();
    for trained in [config.block_count, 1] {
        let net = Network::<f64>::from_tensors(config.clone(), trained, |name| {
            Ok(weights.get(name).map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap()))
        })
        .unwrap();
        let pairs: Vec<batch::Example> = ex
            .iter()
            .map(|e| batch::Example { prompt: e.prompt.clone(), target: e.target.clone() })
            .collect();
        let packed = PackedBatch::pack(&batch::trees(&pairs));
        let mut g = vec![0.0; net.params().len()];
        let (sum, weight) = net.loss_and_grad(&packed, None, &mut g).unwrap();
        assert!(
            (sum / weight - scalar(&loss)).abs() < 1e-12,
            "{} vs {}",
            sum / weight,
            scalar(&loss)
        );
        let layout = net.layout();
        assert_eq!(layout.len(), 9 * trained + 1);
        for (name, _, range) in layout {
            let var = candle.params().iter().find(|(n, _)| *n == name).unwrap().1.as_tensor();
            let want: Vec<f64> = grads.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let scale = want.iter().fold(1e-3f64, |m, g| m.max(g.abs()));
            for (a, b) in g[range].iter().zip(&want) {
                assert!((a - b).abs() < 1e-10 * scale, "{name}: {a} vs {b}");
            }
        }
    }
}

/// The CPU trainer's network equals the inference model on the same GGUF; after a few training
/// steps, its full-weights adapter merged into the inference model (f32, Q8_0, a merged GGUF)
/// gives the trained network's log-probabilities.
#[test]
fn cpu_trained_weights_merge_into_the_inference_model() {
    use crate::model::train::{batch, AdamW, AdamWSettings, Network, PackedBatch};
    let dir = temp_dir("cpu-merge");
    let gguf = dir.join("tiny.gguf");
    write_tiny_gguf(&gguf, &random_weights(&tiny_config(), 5, DType::F32).unwrap());
    let tokens: Vec<u32> = vec![1, 7, 30, 2, 47, 11, 5, 0, 9];
    let as_batch = |tokens: &[u32]| {
        PackedBatch::pack(&batch::trees(&[batch::Example {
            prompt: tokens[..1].to_vec(),
            target: tokens[1..].to_vec(),
        }]))
    };
    // Log-probs of each next token from the inference model's full distributions.
    let pick = |rows: Vec<Vec<f32>>| -> Vec<f64> {
        rows.iter().zip(&tokens[1..]).map(|(row, &t)| row[t as usize] as f64).collect()
    };
    let diff =
        |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);

    let mut net = Network::<f32>::from_gguf(&gguf, 1).unwrap();
    let model = crate::model::load(&gguf).unwrap();
    let base = pick(model.prompt_log_probs(&tokens).unwrap());
    let before = net.target_log_probs(&as_batch(&tokens)).unwrap();
    assert!(diff(&before, &base) < 1e-4, "the trainer's forward pass is the model's");

    let pairs: Vec<batch::Example> = examples(6, 3)
        .into_iter()
        .map(|e| batch::Example { prompt: e.prompt, target: e.target })
        .collect();
    let train = PackedBatch::pack(&batch::trees(&pairs));
    let mut opt = AdamW::new(net.params().len(), AdamWSettings { lr: 1e-2, ..Default::default() });
    for _ in 0..5 {
        let mut g = vec![0f32; net.params().len()];
        net.loss_and_grad(&train, None, &mut g).unwrap();
        opt.update(net.params_mut(), &g);
    }
    let trained = net.target_log_probs(&as_batch(&tokens)).unwrap();
    let moved = diff(&trained, &base);
    assert!(moved > 1e-2, "training should change the model ({moved})");

    let adapter_dir = dir.join("adapter");
    let fingerprint = crate::model::hub::fingerprint(&gguf).unwrap();
    super::cpu::save_full_adapter(
        &adapter_dir,
        net.trained_tensors(),
        BaseModel { name: "tiny".into(), fingerprint },
        serde_json::json!({}),
    )
    .unwrap();
    let (merged, manifest) =
        adapter::load_model_with_adapter(&gguf, &adapter_dir, MergeFormat::F32).unwrap();
    assert_eq!((manifest.kind.as_str(), manifest.prompt_style.as_str()), ("full", "plain"));
    assert!(diff(&pick(merged.prompt_log_probs(&tokens).unwrap()), &trained) < 1e-4);
    let (q8, _) = adapter::load_model_with_adapter(&gguf, &adapter_dir, MergeFormat::Q8_0).unwrap();
    let q8_diff = diff(&pick(q8.prompt_log_probs(&tokens).unwrap()), &trained);
    assert!(q8_diff < 0.05 * moved, "Q8_0 merge is {q8_diff} off; training moved {moved}");
    let out = dir.join("merged.gguf");
    adapter::write_merged_gguf(&gguf, &adapter_dir, &out, MergeFormat::F32).unwrap();
    let from_file = crate::model::load(&out).unwrap();
    assert!(diff(&pick(from_file.prompt_log_probs(&tokens).unwrap()), &trained) < 1e-4);
    std::fs::remove_dir_all(&dir).unwrap();
}
