//! The training network on the real SmolLM2 GGUF gives the inference model's log-probabilities:
//! what is trained is what is searched with.

mod common;

use candle_core::{DType, Device, D};
use seal::model::llama::LlamaModel;
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

    let model = LlamaModel::load(&gguf, &Device::Cpu).unwrap();
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
    assert!(worst < 2e-3, "training forward is {worst} nats from the inference model");
}
