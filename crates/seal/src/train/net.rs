//! A differentiable llama-family decoder in candle, for training: the same network as
//! [`crate::model::llama::LlamaModel`] (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied or
//! separate output head), written with candle tensor ops so that `backward` gives gradients.
//!
//! Useful for: computing the training loss and its gradients, with the whole network trainable
//! ([`TrainMode::Full`]) or low-rank adapters on chosen projections of chosen layers
//! ([`TrainMode::Lora`], base frozen). Not for: search (the inference model is
//! [`crate::model::llama`], several times faster per token); decoding.
//!
//! Weights are dequantized from the GGUF to dense `f32` (or `f64`, for the gradient tests) and
//! named by their GGUF names (`blk.3.attn_q.weight`), so an adapter names the GGUF tensor it
//! changes. A LoRA projection computes `x Wᵀ + (α / r) · (x Aᵀ) Bᵀ`, `A` (`r × in`) random,
//! `B` (`out × r`) zero at the start, so training starts from the base model exactly.

use crate::model::llama::LlamaConfig;
use crate::train::data::SplitMix64;
use crate::{Error, ErrorKind, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;
use std::path::Path;

pub(crate) fn train_err(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
    let context = context.into();
    move |e| Error::new(ErrorKind::Model, context).with_source(e)
}

/// A projection that LoRA can adapt, by its GGUF tensor name (`blk.N.<name>.weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    /// Query projection.
    AttnQ,
    /// Key projection.
    AttnK,
    /// Value projection.
    AttnV,
    /// Attention output projection.
    AttnOutput,
    /// SwiGLU gate projection.
    FfnGate,
    /// SwiGLU up projection.
    FfnUp,
    /// SwiGLU down projection.
    FfnDown,
}

impl Projection {
    /// Every projection, in layer order.
    pub const ALL: [Projection; 7] = [
        Projection::AttnQ,
        Projection::AttnK,
        Projection::AttnV,
        Projection::AttnOutput,
        Projection::FfnGate,
        Projection::FfnUp,
        Projection::FfnDown,
    ];
    /// The attention projections.
    pub const ATTENTION: [Projection; 4] =
        [Projection::AttnQ, Projection::AttnK, Projection::AttnV, Projection::AttnOutput];
    /// The MLP projections.
    pub const MLP: [Projection; 3] = [Projection::FfnGate, Projection::FfnUp, Projection::FfnDown];

    /// The GGUF name part (`attn_q`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Projection::AttnQ => "attn_q",
            Projection::AttnK => "attn_k",
            Projection::AttnV => "attn_v",
            Projection::AttnOutput => "attn_output",
            Projection::FfnGate => "ffn_gate",
            Projection::FfnUp => "ffn_up",
            Projection::FfnDown => "ffn_down",
        }
    }

    /// The inverse of [`Self::gguf_name`].
    pub fn from_gguf_name(name: &str) -> Option<Projection> {
        Projection::ALL.into_iter().find(|p| p.gguf_name() == name)
    }
}

/// Low-rank adapter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSettings {
    /// Rank `r`.
    pub rank: usize,
    /// Scale numerator: the update is `(alpha / rank) · B A`.
    pub alpha: f64,
    /// Which projections get an adapter.
    pub projections: Vec<Projection>,
    /// Adapt only the top `n` layers (the ones closest to the output); `None`: all layers.
    /// Gradients then stop below the lowest adapted layer, which makes a step cheaper.
    pub top_layers: Option<usize>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        LoraSettings {
            rank: 16,
            alpha: 32.0,
            projections: Projection::ALL.to_vec(),
            top_layers: None,
        }
    }
}

/// What training changes.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainMode {
    /// Every weight (embeddings, norms, projections).
    Full,
    /// Adapters only; the base weights are frozen.
    Lora(LoraSettings),
}

impl TrainMode {
    /// The first layer that has trainable parameters (gradients need not flow below it).
    fn first_trained_layer(&self, layers: usize) -> usize {
        match self {
            TrainMode::Full => 0,
            TrainMode::Lora(s) => layers - s.top_layers.unwrap_or(layers).min(layers),
        }
    }
}

struct Lora {
    a: Var,
    b: Var,
    scale: f64,
}

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<Lora>,
}

impl Linear {
    /// `x` is `[n, in]`; returns `[n, out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.matmul(&self.weight.t()?)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        if let Some(lora) = &self.lora {
            let low = x.matmul(&lora.a.as_tensor().t()?)?;
            let up = low.matmul(&lora.b.as_tensor().t()?)?;
            y = (y + (up * lora.scale)?)?;
        }
        Ok(y)
    }
}

struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A batch of token sequences, right-padded to one length, with the positions whose next token
/// is a target (the loss is computed there only).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[batch, len]` token ids, row-major, padded with any valid id.
    pub tokens: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Padded length.
    pub len: usize,
    /// Flat indices (`row * len + position`) of the positions that predict a target token.
    pub loss_positions: Vec<u32>,
    /// The target token predicted at each loss position.
    pub loss_targets: Vec<u32>,
}

impl Batch {
    /// Builds a batch from `(prompt, target)` token sequences: the loss covers every target
    /// token (each predicted from the prompt and the target tokens before it).
    pub fn from_examples(examples: &[(&[u32], &[u32])], pad: u32) -> Batch {
        let len = examples.iter().map(|(p, t)| p.len() + t.len()).max().unwrap_or(0);
        let mut tokens = Vec::with_capacity(examples.len() * len);
        let mut loss_positions = Vec::new();
        let mut loss_targets = Vec::new();
        for (row, (prompt, target)) in examples.iter().enumerate() {
            let start = tokens.len();
            tokens.extend_from_slice(prompt);
            tokens.extend_from_slice(target);
            tokens.resize(start + len, pad);
            for (j, &t) in target.iter().enumerate() {
                let position = prompt.len() + j;
                if position == 0 {
                    continue; // nothing predicts the very first token
                }
                loss_positions.push((row * len + position - 1) as u32);
                loss_targets.push(t);
            }
        }
        Batch { tokens, batch: examples.len(), len, loss_positions, loss_targets }
    }

    /// Number of tokens in the loss.
    pub fn target_tokens(&self) -> usize {
        self.loss_targets.len()
    }
}

/// The differentiable network with its trainable parameters.
pub struct TrainNet {
    config: LlamaConfig,
    dtype: DType,
    device: Device,
    token_embd: Tensor,
    output: Option<Tensor>,
    output_norm: Tensor,
    blocks: Vec<Block>,
    first_trained_layer: usize,
    /// Trainable parameters by name, in a fixed order (GGUF order; adapters as
    /// `blk.N.<proj>.lora_a` / `lora_b`).
    params: Vec<(String, Var)>,
}

/// Dense weights by GGUF name.
pub type WeightMap = HashMap<String, Tensor>;

/// Reads and dequantizes every tensor of a GGUF file to dense `dtype` tensors on `device`,
/// with the model's configuration.
///
/// # Errors
/// The file cannot be read or is not a llama-family GGUF.
pub fn load_gguf_weights(
    gguf: &Path,
    dtype: DType,
    device: &Device,
) -> Result<(LlamaConfig, WeightMap)> {
    let mut file = std::fs::File::open(gguf).map_err(|e| {
        Error::new(ErrorKind::Model, format!("cannot open model file {}", gguf.display()))
            .with_source(e)
    })?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(train_err(format!("{} is not a readable GGUF file", gguf.display())))?;
    let config = crate::model::llama::read_config(&content, gguf)?;
    let mut weights = HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let t = content
            .tensor(&mut file, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|t| t.to_dtype(dtype))
            .and_then(|t| t.to_device(device))
            .map_err(train_err(format!("{}: cannot read tensor `{name}`", gguf.display())))?;
        weights.insert(name.clone(), t);
    }
    Ok((config, weights))
}

/// Random weights for `config` (normal, std 0.02 for matrices, 1 ± 0.1 for norms), named as in
/// a GGUF file; for tests and benchmarks.
pub fn random_weights(config: &LlamaConfig, seed: u64, dtype: DType) -> Result<WeightMap> {
    let mut rng = SplitMix64::new(seed);
    let mut weights = HashMap::new();
    let mut matrix = |rows: usize, cols: usize, std: f64, mean: f64| -> Result<Tensor> {
        let data: Vec<f64> = (0..rows * cols).map(|_| mean + std * rng.normal()).collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(train_err("cannot build a random tensor"))
    };
    let (d, ff) = (config.embedding_length, config.feed_forward_length);
    let q_dim = config.head_count * config.head_dim;
    let kv_dim = config.head_count_kv * config.head_dim;
    weights.insert("token_embd.weight".into(), matrix(config.vocab_size, d, 0.5, 0.0)?);
    weights.insert("output_norm.weight".into(), matrix(1, d, 0.1, 1.0)?.flatten_all().unwrap());
    for i in 0..config.block_count {
        let p = format!("blk.{i}");
        for (name, rows, cols) in [
            ("attn_q", q_dim, d),
            ("attn_k", kv_dim, d),
            ("attn_v", kv_dim, d),
            ("attn_output", d, q_dim),
            ("ffn_gate", ff, d),
            ("ffn_up", ff, d),
            ("ffn_down", d, ff),
        ] {
            let std = 1.0 / (cols as f64).sqrt();
            weights.insert(format!("{p}.{name}.weight"), matrix(rows, cols, std, 0.0)?);
        }
        for name in ["attn_norm", "ffn_norm"] {
            let norm = matrix(1, d, 0.1, 1.0)?.flatten_all().unwrap();
            weights.insert(format!("{p}.{name}.weight"), norm);
        }
    }
    Ok(weights)
}

impl TrainNet {
    /// Builds the network from dense weights; `seed` initializes the adapters.
    ///
    /// # Errors
    /// A tensor is missing or has the wrong shape, or the LoRA settings are invalid.
    pub fn new(
        config: LlamaConfig,
        mut weights: WeightMap,
        mode: &TrainMode,
        seed: u64,
    ) -> Result<TrainNet> {
        fn take(weights: &mut WeightMap, name: &str) -> Result<Tensor> {
            weights.remove(name).ok_or_else(|| {
                Error::new(ErrorKind::Model, format!("the model has no tensor `{name}`"))
            })
        }
        let embd = take(&mut weights, "token_embd.weight")?;
        let dtype = embd.dtype();
        let device = embd.device().clone();
        if let TrainMode::Lora(s) = mode {
            if s.rank == 0 || s.projections.is_empty() || s.top_layers == Some(0) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "LoRA needs a rank ≥ 1, at least one projection and at least one layer",
                ));
            }
        }
        let first_trained_layer = mode.first_trained_layer(config.block_count);
        let full = matches!(mode, TrainMode::Full);
        let mut params: Vec<(String, Var)> = Vec::new();
        let mut rng = SplitMix64::new(seed ^ 0x10_4A);
        let param = |name: String, t: Tensor, params: &mut Vec<(String, Var)>| -> Result<Tensor> {
            if full {
                let v = Var::from_tensor(&t)
                    .map_err(train_err(format!("cannot make `{name}` trainable")))?;
                let t = v.as_tensor().clone();
                params.push((name, v));
                Ok(t)
            } else {
                Ok(t)
            }
        };
        let token_embd = param("token_embd.weight".into(), embd, &mut params)?;
        let mut blocks = Vec::with_capacity(config.block_count);
        for i in 0..config.block_count {
            let p = format!("blk.{i}");
            let mut linear = |proj: Projection,
                              weights: &mut WeightMap,
                              params: &mut Vec<(String, Var)>|
             -> Result<Linear> {
                let name = format!("{p}.{}.weight", proj.gguf_name());
                let w = take(weights, &name)?;
                let bias_name = format!("{p}.{}.bias", proj.gguf_name());
                let bias = weights.remove(&bias_name);
                let weight = param(name, w, params)?;
                let bias = match bias {
                    Some(b) => Some(param(bias_name, b, params)?),
                    None => None,
                };
                let lora = match mode {
                    TrainMode::Lora(s)
                        if i >= first_trained_layer && s.projections.contains(&proj) =>
                    {
                        let (out, inp) =
                            weight.dims2().map_err(train_err(format!("`{p}` is not a matrix")))?;
                        // Kaiming-uniform-like A (std 1/sqrt(in)), zero B.
                        let bound = 1.0 / (inp as f64).sqrt();
                        let a: Vec<f64> = (0..s.rank * inp)
                            .map(|_| bound * (2.0 * rng.next_f64() - 1.0) * 3f64.sqrt())
                            .collect();
                        let a = Tensor::from_vec(a, (s.rank, inp), &Device::Cpu)
                            .and_then(|t| t.to_dtype(dtype))
                            .and_then(|t| t.to_device(&device))
                            .and_then(|t| Var::from_tensor(&t))
                            .map_err(train_err("cannot build a LoRA matrix"))?;
                        let b = Var::zeros((out, s.rank), dtype, &device)
                            .map_err(train_err("cannot build a LoRA matrix"))?;
                        params.push((format!("{p}.{}.lora_a", proj.gguf_name()), a.clone()));
                        params.push((format!("{p}.{}.lora_b", proj.gguf_name()), b.clone()));
                        Some(Lora { a, b, scale: s.alpha / s.rank as f64 })
                    }
                    _ => None,
                };
                Ok(Linear { weight, bias, lora })
            };
            let attn_norm = take(&mut weights, &format!("{p}.attn_norm.weight"))?;
            let attn_norm = param(format!("{p}.attn_norm.weight"), attn_norm, &mut params)?;
            let q = linear(Projection::AttnQ, &mut weights, &mut params)?;
            let k = linear(Projection::AttnK, &mut weights, &mut params)?;
            let v = linear(Projection::AttnV, &mut weights, &mut params)?;
            let o = linear(Projection::AttnOutput, &mut weights, &mut params)?;
            let ffn_norm = take(&mut weights, &format!("{p}.ffn_norm.weight"))?;
            let ffn_norm = param(format!("{p}.ffn_norm.weight"), ffn_norm, &mut params)?;
            let gate = linear(Projection::FfnGate, &mut weights, &mut params)?;
            let up = linear(Projection::FfnUp, &mut weights, &mut params)?;
            let down = linear(Projection::FfnDown, &mut weights, &mut params)?;
            blocks.push(Block { attn_norm, q, k, v, o, ffn_norm, gate, up, down });
        }
        let output_norm = take(&mut weights, "output_norm.weight")?;
        let output_norm = param("output_norm.weight".into(), output_norm, &mut params)?;
        let output = match weights.remove("output.weight") {
            Some(w) => Some(param("output.weight".into(), w, &mut params)?),
            None => None,
        };
        Ok(TrainNet {
            config,
            dtype,
            device,
            token_embd,
            output,
            output_norm,
            blocks,
            first_trained_layer,
            params,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The trainable parameters, in a fixed order.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The element type of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn rope_tables(&self, len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let half = self.config.head_dim / 2;
        let base = self.config.rope_freq_base as f64;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in 0..len {
            for i in 0..half {
                let theta = p as f64 * base.powf(-2.0 * i as f64 / self.config.head_dim as f64);
                cos.push(theta.cos());
                sin.push(theta.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (len, half), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, (len, half), &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// RoPE on `[b, heads, len, head_dim]`.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (b, h, t, hd) = x.dims4()?;
        let half = hd / 2;
        if self.config.rope_adjacent_pairs {
            let pairs = x.reshape((b, h, t, half, 2))?;
            let x0 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
            let x1 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
            let o0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
            let o1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
            Tensor::stack(&[o0, o1], 4)?.reshape((b, h, t, hd))
        } else {
            let x0 = x.narrow(3, 0, half)?;
            let x1 = x.narrow(3, half, half)?;
            let o0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
            let o1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
            Tensor::cat(&[o0, o1], 3)
        }
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (ms + self.config.rms_norm_eps as f64)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(weight)
    }

    /// The final-normed hidden states `[batch · len, d]` of a batch.
    ///
    /// # Errors
    /// A token outside the vocabulary, or a candle failure.
    pub fn hidden(&self, batch: &Batch) -> Result<Tensor> {
        if let Some(&t) = batch.tokens.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("token id {t} is outside the vocabulary of {}", self.config.vocab_size),
            ));
        }
        if batch.len > self.config.context_length {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a training sequence of {} tokens exceeds the context length of {}",
                    batch.len, self.config.context_length
                ),
            ));
        }
        self.hidden_inner(batch).map_err(train_err("the training forward pass failed"))
    }

    fn hidden_inner(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let cfg = &self.config;
        let (b, t) = (batch.batch, batch.len);
        let (d, hd, nh, nkv) =
            (cfg.embedding_length, cfg.head_dim, cfg.head_count, cfg.head_count_kv);
        let ids = Tensor::from_slice(&batch.tokens, b * t, &self.device)?;
        let mut x = self.token_embd.index_select(&ids, 0)?; // [b*t, d]
        if self.first_trained_layer > 0 {
            x = x.detach();
        }
        let (cos, sin) = self.rope_tables(t)?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &self.device)?.to_dtype(self.dtype)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let group = nh / nkv;
        for (l, block) in self.blocks.iter().enumerate() {
            if l == self.first_trained_layer && l > 0 {
                x = x.detach();
            }
            let h = self.rms_norm(&x, &block.attn_norm)?;
            let q = block.q.forward(&h)?.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
            let k = block.k.forward(&h)?.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let v = block.v.forward(&h)?.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let q = self.rope(&q, &cos, &sin)?;
            let k = self.rope(&k, &cos, &sin)?;
            let (k, v) = if group > 1 {
                let expand = |x: Tensor| -> candle_core::Result<Tensor> {
                    x.unsqueeze(2)?.expand((b, nkv, group, t, hd))?.reshape((b, nh, t, hd))
                };
                (expand(k)?, expand(v)?)
            } else {
                (k, v)
            };
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let att = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, nh * hd))?;
            x = (x + block.o.forward(&att)?)?;
            let h = self.rms_norm(&x, &block.ffn_norm)?;
            let g = block.gate.forward(&h)?;
            let u = block.up.forward(&h)?;
            let m = (candle_nn::ops::silu(&g)? * u)?;
            x = (x + block.down.forward(&m)?)?;
        }
        let _ = d;
        self.rms_norm(&x, &self.output_norm)
    }

    fn head(&self) -> &Tensor {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Logits `[n, vocab]` of hidden rows `[n, d]`.
    ///
    /// # Errors
    /// A candle failure.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden
            .matmul(&self.head().t().map_err(train_err("head"))?)
            .map_err(train_err("the output head failed"))
    }

    /// Mean cross-entropy (nats per target token) of the batch's targets; the output head runs
    /// on the loss positions only.
    ///
    /// # Errors
    /// An empty loss, a token outside the vocabulary, or a candle failure.
    pub fn loss(&self, batch: &Batch) -> Result<Tensor> {
        if batch.loss_positions.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, "the batch has no target tokens"));
        }
        let hidden = self.hidden(batch)?;
        let inner = || -> candle_core::Result<Tensor> {
            let rows = Tensor::from_slice(
                &batch.loss_positions,
                batch.loss_positions.len(),
                &self.device,
            )?;
            let selected = hidden.index_select(&rows, 0)?;
            let logits = selected.matmul(&self.head().t()?)?;
            let targets =
                Tensor::from_slice(&batch.loss_targets, batch.loss_targets.len(), &self.device)?;
            candle_nn::loss::cross_entropy(&logits, &targets)
        };
        inner().map_err(train_err("the loss computation failed"))
    }
}
