//! The training network on the real SmolLM2 GGUF gives the inference model's log-probabilities:
//! what is trained is what is searched with.

use crate::common;

use candle_core::{DType, Device, D};
use seal::model::tokenizer::Tokenizer;
use seal::prompt::{prompt, PromptKind, PromptStyle};
use seal::train::net::{load_gguf_weights, Batch, LoraSettings, TrainMode, TrainNet};

#[test]
fn training_forward_matches_the_inference_model_on_smollm2() {
    let gguf = common::smollm2_path();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let mut tokens: Vec<u32> =
        tokenizer.bos_id().filter(|_| tokenizer.add_bos()).into_iter().collect();
    tokens.extend(
        tokenizer.encode(&prompt(PromptStyle::Plain, PromptKind::Body, "what is dna")).unwrap(),
    );
    tokens.extend(tokenizer.encode(" deoxyribonucleic acid").unwrap());

    let model = seal::model::load(&gguf).unwrap();
    let want = model.prompt_log_probs(&tokens).unwrap();
    drop(model);

    let (config, weights) = load_gguf_weights(&gguf, DType::F32, &Device::Cpu).unwrap();
    let net = TrainNet::new(config, weights, &TrainMode::Lora(LoraSettings::default()), 0).unwrap();
    let batch = Batch {
        tokens: tokens.clone(),
        batch: 1,
        len: tokens.len(),
        loss_positions: vec![],
        loss_targets: vec![],
    };
    let logits = net.logits(&net.hidden(&batch).unwrap()).unwrap();
    let got: Vec<Vec<f32>> =
        candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec2().unwrap();

    let mut worst = 0f32;
    for (g, w) in got.iter().zip(&want) {
        // Compare where it matters: the 100 most likely tokens of each position.
        let mut order: Vec<usize> = (0..w.len()).collect();
        order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
        for &i in &order[..100] {
            worst = worst.max((g[i] - w[i]).abs());
        }
        let argmax = |r: &[f32]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        assert_eq!(argmax(g), argmax(w));
    }
    // The exact kernels compute the inference model in f32 like the training network (2e-3 covers
    // the f32 summation orders). The int16 kernel (default on AVX-512 VNNI CPUs) rounds the
    // activations of every product to 16 bits: 0.004 nats from float64 on the golden prompts'
    // top-20, 0.005 here over the top-100 (measured), so it gets 1e-2.
    #[cfg(target_arch = "x86_64")]
    let int16 = seal::model::kernels::Kernel::detect() == seal::model::kernels::Kernel::Avx512Int16;
    #[cfg(not(target_arch = "x86_64"))]
    let int16 = false;
    let tolerance = if int16 { 1e-2 } else { 2e-3 };
    assert!(worst < tolerance, "training forward is {worst} nats from the inference model");
}

/// `--budget-minutes`: the run trains the plan the budget fitted (the steps it announced, its
/// learning-rate schedule), and `--resume` continues that same plan to its end.
#[test]
fn a_budget_fitted_run_trains_the_plan_it_announced_and_resumes_it() {
    use seal::model::train::{run::Plan, AdamWSettings};
    use seal::train::cpu::{self, CpuPlan};
    use seal::train::data::{PairKind, TrainingPair};
    use std::time::Duration;

    let out = std::env::temp_dir().join(format!("seal-budget-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let words = ["cell", "gene", "protein", "virus", "enzyme", "tumor", "brain", "heart"];
    let pairs: Vec<TrainingPair> = (0..320)
        .map(|i| TrainingPair {
            prompt: prompt(
                PromptStyle::Plain,
                PromptKind::Body,
                &format!("what is {} {}", words[i % 8], i % 5),
            ),
            target: format!(" the {} of the {}", words[(i / 8) % 8], words[(i + 3) % 8]),
            kind: PairKind::QuerySpan,
        })
        .collect();
    let plan = |budget: Duration, resume: bool| CpuPlan {
        gguf: common::smollm2_path(),
        model_name: "smollm2-135m".into(),
        out: out.clone(),
        layers: Some(1),
        run: Plan {
            epochs: 10_000.0,
            pairs_per_batch: 8.0,
            adamw: AdamWSettings::default(),
            warmup_fraction: 0.05,
            seed: 1,
            checkpoint_every: Duration::from_secs(3600),
            // Only a safety net: the budget's own limit is shorter.
            time_limit: Some(Duration::from_secs(60)),
        },
        max_len: 64,
        resume,
        budget: Some(budget),
    };
    // 10,000 epochs never fit in 3 seconds: the epochs shrink to what the probe says fits.
    let mut announced = None;
    let first = cpu::run(
        &plan(Duration::from_secs(3), false),
        &pairs,
        |p| announced = Some((p.epochs, p.total_steps)),
        |_| {},
        |_, _| Ok(()),
    )
    .unwrap();
    let (epochs, total_steps) = announced.unwrap();
    assert!(epochs < 10_000.0, "the budget fitted {epochs} epochs");
    assert_eq!(first.total_steps, total_steps, "the run trains the plan it announced");
    // Resuming with a budget continues the fitted plan (finished or not), not the asked one.
    let second = cpu::run(
        &plan(Duration::from_secs(600), true),
        &pairs,
        |p| assert_eq!((p.epochs, p.total_steps), (epochs, total_steps)),
        |_| {},
        |_, _| Ok(()),
    )
    .unwrap();
    assert!(second.finished);
    assert_eq!(second.steps, total_steps);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["training"]["total_steps"], total_steps);
    assert_eq!(manifest["training"]["epochs"], epochs);
    std::fs::remove_dir_all(&out).unwrap();
}
